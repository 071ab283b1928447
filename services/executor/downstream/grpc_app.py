"""The demo downstream's gRPC face: ``erpsim.v1.LedgerService`` over the same ledger.

Served with health and reflection, and without generated stubs on the client side: the
executor's generic gRPC connector reads the types through reflection. The idempotency key
comes from the ``idempotency-key`` metadata (required); a repeat answers the stored entry with
``replayed`` set and ``idempotent-replayed: true`` in the trailing metadata.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from google.protobuf import json_format
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.executor.downstream import ledger_pb2 as pb
from services.executor.downstream.faults import FaultBoard
from services.executor.downstream.store import KeyReused, Ledger, validate_body

SERVICE = "erpsim.v1.LedgerService"


class LedgerServicer:
    def __init__(self, ledger: Ledger, faults: FaultBoard) -> None:
        self.ledger = ledger
        self.faults = faults

    async def _fault(self, system: str, method: str, key: str,
                     context: grpc.aio.ServicerContext) -> bool:
        """Apply the fault profile; True when the call must fail after storing."""
        fate = self.faults.fate(system)
        if fate.delay_s:
            await asyncio.sleep(fate.delay_s)
        if fate.fail_before:
            await self.ledger.log("grpc", method, system, key, "fault", fate.fail_before)
            code = grpc.StatusCode.RESOURCE_EXHAUSTED if fate.fail_before == 429 \
                else grpc.StatusCode.UNAVAILABLE
            await context.abort(code, "injected failure")
        return bool(fate.fail_after)

    @staticmethod
    def _metadata(context: grpc.aio.ServicerContext) -> dict[str, str]:
        return {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}

    async def Post(self, request: pb.PostRequest, context: grpc.aio.ServicerContext
                   ) -> pb.PostResponse:
        metadata = self._metadata(context)
        key = metadata.get("idempotency-key", "")
        if not key:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "idempotency-key metadata required")
        if not request.system or not request.collection:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "system and collection are required")
        fail_after = await self._fault(request.system, "Post", key, context)
        body = json_format.MessageToDict(request.data)
        problem = validate_body(body)
        if problem:
            await self.ledger.log("grpc", "Post", request.system, key, "invalid", 3)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        try:
            effect, created = await self.ledger.record(
                key, request.system, request.collection,
                metadata.get("x-switchyard-operation", ""),
                metadata.get("x-switchyard-task-id", ""),
                metadata.get("x-switchyard-tenant-id", ""), body)
        except KeyReused:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                "idempotency key used before with a different payload")
        await self.ledger.log("grpc", "Post", request.system, key,
                              "created" if created else "replayed", 14 if fail_after else 0)
        if fail_after:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "injected failure after the write")
        if not created:
            context.set_trailing_metadata((("idempotent-replayed", "true"),))
        return pb.PostResponse(id=effect.id, idempotency_key=effect.idempotency_key,
                               status=effect.status, replayed=not created)

    async def Reverse(self, request: pb.ReverseRequest, context: grpc.aio.ServicerContext
                      ) -> pb.ReverseResponse:
        by = self._metadata(context).get("idempotency-key", "")
        fail_after = await self._fault(request.system, "Reverse", by, context)
        result = await self.ledger.reverse(request.idempotency_key, request.system,
                                           request.collection, by)
        if result is None:
            await self.ledger.log("grpc", "Reverse", request.system, by, "not_found", 5)
            await context.abort(grpc.StatusCode.NOT_FOUND,
                                f"no entry {request.idempotency_key!r}")
        assert result is not None
        effect, reversed_now = result
        await self.ledger.log("grpc", "Reverse", request.system, by,
                              "reversed" if reversed_now else "replayed", 14 if fail_after else 0)
        if fail_after:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "injected failure after the write")
        return pb.ReverseResponse(id=effect.id, status=effect.status, replayed=not reversed_now)


def _handlers(servicer: LedgerServicer) -> grpc.GenericRpcHandler:
    def unary(fn: Any, request: Any, response: Any) -> grpc.RpcMethodHandler:
        return grpc.unary_unary_rpc_method_handler(
            fn, request_deserializer=request.FromString,
            response_serializer=response.SerializeToString)

    return grpc.method_handlers_generic_handler(SERVICE, {
        "Post": unary(servicer.Post, pb.PostRequest, pb.PostResponse),
        "Reverse": unary(servicer.Reverse, pb.ReverseRequest, pb.ReverseResponse),
    })


async def start_grpc(ledger: Ledger, faults: FaultBoard, host: str, port: int
                     ) -> grpc.aio.Server:
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers((_handlers(LedgerServicer(ledger, faults)),))
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection([SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME],
                                        server)
    if server.add_insecure_port(f"{host}:{port}") == 0:
        raise RuntimeError(f"downstream: cannot bind gRPC port {host}:{port}")
    await server.start()
    for name in ("", SERVICE):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server
