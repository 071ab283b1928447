"""Generic gRPC connector: any unary method of any server that offers reflection.

A target ``grpc://alias/package.Service/Method`` is resolved to host:port; the method's
request and response types come from the server's reflection service (fetched once per
address and cached), the step's payload is parsed into the request as proto3 JSON, and the
call carries ``idempotency-key`` plus task/tenant/step metadata. No generated stubs are needed,
so a new downstream only needs a plan, not a new executor release.

Classification: UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED, INTERNAL and
UNKNOWN are retryable; everything else (INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION, ...)
is permanent, as is a payload that does not fit the request type.

Of the response and of error details, only :func:`switchyard._dataclass.downstream_excerpt`
is kept: a response may echo the extracted fields the request carried.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.message import Message
from grpc_reflection.v1alpha.reflection_pb2 import ServerReflectionRequest
from grpc_reflection.v1alpha.reflection_pb2_grpc import ServerReflectionStub

from services.executor.connectors import (
    Answer,
    StepCall,
    StepError,
    StepOutcome,
    answer_output,
    permanent,
    retryable,
)
from switchyard.privacy import downstream_excerpt
from switchyard.rpc import create_channel

RETRYABLE_CODES = frozenset({
    grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ABORTED, grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
})


def is_retryable_code(code: grpc.StatusCode) -> bool:
    return code in RETRYABLE_CODES


class _Method:
    def __init__(self, request: type[Message], response: type[Message]) -> None:
        self.request = request
        self.response = response


class _Server:
    """One downstream address: its channel and the descriptors learned by reflection."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.channel = create_channel(address)
        self.pool = descriptor_pool.DescriptorPool()
        self.files: set[str] = set()
        self.methods: dict[str, _Method] = {}

    async def _reflect(self, requests: list[ServerReflectionRequest], timeout_s: float
                       ) -> list[bytes]:
        async def stream() -> AsyncIterator[ServerReflectionRequest]:
            for request in requests:
                yield request

        out: list[bytes] = []
        call = ServerReflectionStub(self.channel).ServerReflectionInfo(stream(),
                                                                         timeout=timeout_s)
        async for response in call:
            if response.HasField("error_response"):
                raise permanent(f"grpc://{self.address}: reflection: "
                                f"{response.error_response.error_message}")
            out.extend(response.file_descriptor_response.file_descriptor_proto)
        return out

    async def _load(self, symbol: str, timeout_s: float) -> None:
        protos = {}
        pending = await self._reflect([ServerReflectionRequest(file_containing_symbol=symbol)],
                                      timeout_s)
        while pending:
            for raw in pending:
                proto = descriptor_pb2.FileDescriptorProto.FromString(raw)
                protos.setdefault(proto.name, proto)
            missing = {dep for p in protos.values() for dep in p.dependency
                       if dep not in protos and dep not in self.files}
            pending = await self._reflect(
                [ServerReflectionRequest(file_by_filename=name) for name in sorted(missing)],
                timeout_s) if missing else []
        added: set[str] = set()

        def add(name: str) -> None:
            if name in added or name in self.files:
                return
            for dep in protos[name].dependency:
                if dep in protos:
                    add(dep)
            self.pool.AddSerializedFile(protos[name].SerializeToString())
            added.add(name)

        for name in protos:
            add(name)
        self.files |= added

    async def method(self, path: str, timeout_s: float) -> _Method:
        known = self.methods.get(path)
        if known is not None:
            return known
        service, _, name = path.strip("/").partition("/")
        try:
            self.pool.FindServiceByName(service)
        except KeyError:
            await self._load(service, timeout_s)
        try:
            descriptor = self.pool.FindServiceByName(service).FindMethodByName(name)
        except KeyError:
            descriptor = None
        if descriptor is None:
            raise permanent(f"grpc://{self.address}: no method {path}")
        if descriptor.client_streaming or descriptor.server_streaming:
            raise permanent(f"grpc://{self.address}: {path} is streaming; only unary methods "
                            "are supported")
        method = _Method(message_factory.GetMessageClass(descriptor.input_type),
                         message_factory.GetMessageClass(descriptor.output_type))
        self.methods[path] = method
        return method


class GrpcConnector:
    def __init__(self) -> None:
        self._servers: dict[str, _Server] = {}

    def _server(self, address: str) -> _Server:
        server = self._servers.get(address)
        if server is None:
            server = self._servers[address] = _Server(address)
        return server

    async def call(self, step: StepCall) -> StepOutcome:
        server = self._server(step.address)
        where = f"{step.target}"
        try:
            method = await server.method(step.method, step.timeout_s)
        except StepError:
            raise
        except grpc.aio.AioRpcError as exc:
            raise self._classify(where + " (reflection)", exc, step) from None
        try:
            request = json_format.ParseDict(step.payload, method.request())
        except json_format.ParseError as exc:
            raise permanent(f"{where}: payload does not fit "
                            f"{method.request.DESCRIPTOR.full_name}: "
                            f"{downstream_excerpt(str(exc), withheld=step.withheld)}") from None
        metadata = (("idempotency-key", step.idempotency_key),
                    ("x-switchyard-task-id", step.task_id),
                    ("x-switchyard-tenant-id", step.tenant_id),
                    ("x-switchyard-step-id", step.step_id),
                    ("x-switchyard-operation", step.operation))
        stub = server.channel.unary_unary(step.method,
                                          request_serializer=method.request.SerializeToString,
                                          response_deserializer=method.response.FromString)
        try:
            call = stub(request, metadata=metadata, timeout=step.timeout_s)
            response: Any = await call
            trailing = await call.trailing_metadata() or ()
        except grpc.aio.AioRpcError as exc:
            raise self._classify(where, exc, step) from None
        replayed = any(k == "idempotent-replayed" and v == "true" for k, v in trailing)
        answer = json_format.MessageToJson(response, indent=None)
        output = answer_output(answer)
        return StepOutcome(summary=f"OK {downstream_excerpt(answer, withheld=step.withheld)}",
                           duplicate=replayed, output=output,
                           answer=Answer(grpc.StatusCode.OK.value[0], output or {}))

    @staticmethod
    def _classify(where: str, exc: grpc.aio.AioRpcError, step: StepCall) -> StepError:
        details = downstream_excerpt(exc.details() or "", withheld=step.withheld)
        message = f"{where}: {exc.code().name} {details}".strip()
        if is_retryable_code(exc.code()):
            return retryable(message)
        return permanent(message, Answer(exc.code().value[0]))

    async def close(self) -> None:
        for server in self._servers.values():
            await server.channel.close()
        self._servers.clear()
