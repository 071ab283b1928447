"""A bare IngestService: the same proto, methods answered at once with a reply of the real
shape, on a plain ``grpc.aio`` server without interceptors, database or broker.

``python -m bench.bare_ingest PORT`` serves it (with ``grpc.health.v1`` so the stack can wait
for it). The ingest benchmark measures SubmitTask/SubmitTasks against this and against the
real ingest service in the same run: the ratio is what ingest's own work costs.
"""

from __future__ import annotations

import asyncio
import sys
import uuid

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from switchyard.tasks import stage_value, status_value
from switchyard.v1 import (
    IngestServiceServicer,
    SubmitTaskRequest,
    SubmitTaskResponse,
    SubmitTasksRequest,
    SubmitTasksResponse,
    SubmitTasksResult,
    add_IngestServiceServicer_to_server,
)

QUEUED, INGESTED = status_value("QUEUED"), stage_value("INGESTED")


def accepted() -> SubmitTaskResponse:
    return SubmitTaskResponse(task_id=str(uuid.uuid4()), status=QUEUED, stage=INGESTED,
                              created=True)


class BareIngest(IngestServiceServicer):
    async def SubmitTask(self, request: SubmitTaskRequest,
                         context: grpc.aio.ServicerContext) -> SubmitTaskResponse:
        return accepted()

    async def SubmitTasks(self, request: SubmitTasksRequest,
                          context: grpc.aio.ServicerContext) -> SubmitTasksResponse:
        results = [SubmitTasksResult(accepted=accepted()) for _ in request.submissions]
        return SubmitTasksResponse(results=results, accepted_count=len(results))


async def serve(port: int) -> None:
    server = grpc.aio.server()
    add_IngestServiceServicer_to_server(BareIngest(), server)
    checks = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checks, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await checks.set("", health_pb2.HealthCheckResponse.SERVING)
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
