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

from switchyard._grpc import create_channel

__all__ = ["check", "run"]


async def check(target: str, *, timeout_s: float = 5.0, ca_file: str = "", cert_file: str = "",
                key_file: str = "", server_name: str = "") -> str:
    """The overall health status of ``target`` (``SERVING``, ``NOT_SERVING``, ...), or the
    gRPC error that prevented an answer (``UNAVAILABLE: ...``)."""
    channel = create_channel(target, ca_file=ca_file, cert_file=cert_file, key_file=key_file,
                             server_name=server_name)
    try:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout_s)
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
    except grpc.aio.AioRpcError as exc:
        return f"{exc.code().name}: {exc.details()}"
    finally:
        await channel.close()


def run(targets: Sequence[str], *, timeout_s: float = 5.0, ca_file: str = "",
        cert_file: str = "", key_file: str = "", server_name: str = "") -> int:
    async def all_targets() -> list[str]:
        return list(await asyncio.gather(*(
            check(t, timeout_s=timeout_s, ca_file=ca_file, cert_file=cert_file,
                  key_file=key_file, server_name=server_name) for t in targets)))

    statuses = asyncio.run(all_targets())
    for target, status in zip(targets, statuses, strict=True):
        print(f"{target} {status}", file=sys.stdout if status == "SERVING" else sys.stderr)
    return 0 if all(s == "SERVING" for s in statuses) else 1
