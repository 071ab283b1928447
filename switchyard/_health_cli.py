"""``switchyard health``: ask gRPC servers whether they are SERVING (grpc.health.v1).

The chart's ``helm test`` Pod runs it against every service, and, when the servers speak TLS
(which the kubelet's own gRPC probe cannot), the service containers run it as their probe.
Exit status 0 only when every target answers SERVING; one line per target either way.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from switchyard._grpc import ClientTls, create_channel
from switchyard._settings import Settings

__all__ = ["check", "run"]


async def check(target: str, *, timeout_s: float = 5.0, tls: ClientTls | None = None,
                service: str = "") -> str:
    """The health status of ``service`` at ``target`` (``SERVING``, ``NOT_SERVING``, ...;
    ``""``, the overall status, is readiness; :data:`~switchyard.rpc.LIVENESS` liveness), or
    the gRPC error that prevented an answer (``UNAVAILABLE: ...``)."""
    channel = create_channel(target, **(tls.as_dict() if tls else {}))
    try:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
    except grpc.aio.AioRpcError as exc:
        return f"{exc.code().name}: {exc.details()}"
    finally:
        await channel.close()


def run(settings: Settings, targets: Sequence[str], *, timeout_s: float = 5.0,
        service: str = "") -> int:
    """Check every target with the client TLS of ``settings`` (``SWITCHYARD_CLIENT_TLS_*``;
    the command's ``--ca/--cert/--key/--server-name`` flags override them)."""
    try:
        tls = ClientTls.from_settings(settings)
    except ValueError as exc:
        print(f"switchyard health: client TLS: {exc}", file=sys.stderr)
        return 2

    async def all_targets() -> list[str]:
        return list(await asyncio.gather(*(check(t, timeout_s=timeout_s, tls=tls,
                                                 service=service)
                                           for t in targets)))

    statuses = asyncio.run(all_targets())
    for target, status in zip(targets, statuses, strict=True):
        print(f"{target} {status}", file=sys.stdout if status == "SERVING" else sys.stderr)
    return 0 if all(s == "SERVING" for s in statuses) else 1
