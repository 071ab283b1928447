"""The ingest process: IngestService over gRPC. Handlers delegate to ``domain`` and ``store``."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
import grpc

from services.ingest import domain, store
from switchyard._auth import Role, principal_var
from switchyard._grpc import abort_invalid
from switchyard._kafka import Producer
from switchyard._service import ServiceContext, run_service
from switchyard._settings import Settings
from switchyard._taskstore import publish_status, stage_value, status_value, timestamp
from switchyard._telemetry import task_context
from switchyard._topics import TASKS
from switchyard.v1 import (
    GetTaskRequest,
    GetTaskResponse,
    IngestServiceServicer,
    StatusEvent,
    SubmitTaskRequest,
    SubmitTaskResponse,
    Task,
    TaskEnvelope,
    TaskSource,
    add_IngestServiceServicer_to_server,
)

log = logging.getLogger(__name__)
SERVICE_NAME = "switchyard.v1.IngestService"
_SUBMITTERS = frozenset({Role.SUBMITTER})
_READERS = frozenset({Role.SUBMITTER, Role.REVIEWER, Role.AUDITOR})
POLICY = {
    f"/{SERVICE_NAME}/SubmitTask": _SUBMITTERS,
    f"/{SERVICE_NAME}/SubmitTasks": _SUBMITTERS,
    f"/{SERVICE_NAME}/CancelTask": _SUBMITTERS,
    f"/{SERVICE_NAME}/GetTask": _READERS,
    f"/{SERVICE_NAME}/ListTasks": _READERS,
    f"/{SERVICE_NAME}/WatchTask": _READERS,
    f"/{SERVICE_NAME}/WatchTenant": _READERS,
}


class Intake:
    """Accept a submission once and hand it to the pipeline: PostgreSQL first, then Kafka."""

    def __init__(self, settings: Settings, pool: asyncpg.Pool, producer: Producer) -> None:
        self.settings = settings
        self.pool = pool
        self.producer = producer

    async def accept(self, envelope: TaskEnvelope, payload_sha256: str) -> store.Accepted:
        async with self.pool.acquire() as conn:
            accepted = await store.accept(conn, envelope, payload_sha256)
        if accepted.created:
            await self.publish(envelope, accepted)
        return accepted

    async def publish(self, envelope: TaskEnvelope, accepted: store.Accepted) -> None:
        """Send the envelope and its first status event; mark it published once acknowledged."""
        event = StatusEvent(
            task_id=envelope.task_id, tenant_id=envelope.tenant_id,
            status=status_value("QUEUED"), stage=stage_value("INGESTED"),
            occurred_at=timestamp(accepted.created_at), sequence=1, service="ingest",
        )
        await asyncio.gather(
            self.producer.send(TASKS, envelope.task_id, envelope),
            publish_status(self.producer, event),
        )
        await store.mark_published(self.pool, envelope.task_id)


def task_from_row(row: asyncpg.Record) -> Task:
    return Task(
        envelope=TaskEnvelope.FromString(row["envelope"]),
        status=status_value(row["status"]), stage=stage_value(row["stage"]),
        reason=row["reason"], created_at=timestamp(row["created_at"]),
        updated_at=timestamp(row["updated_at"]), sequence=row["status_seq"],
    )


class IngestServicer(IngestServiceServicer):
    def __init__(self, intake: Intake) -> None:
        self.intake = intake

    async def SubmitTask(self, request: SubmitTaskRequest,
                         context: grpc.aio.ServicerContext) -> SubmitTaskResponse:
        submission = request.submission
        problems = domain.validate(submission, self.intake.settings.max_payload_bytes)
        if problems:
            await abort_invalid(context, problems)
        principal = principal_var.get()
        if not principal.may_access(submission.tenant_id.strip()):
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                f"credentials do not allow tenant {submission.tenant_id!r}")
        task_id = domain.new_task_id()
        envelope = domain.build_envelope(submission, task_id, TaskSource.TASK_SOURCE_GRPC)
        with task_context(task_id):
            try:
                accepted = await self.intake.accept(envelope, domain.payload_sha256(submission))
            except store.IdempotencyConflict as exc:
                await context.abort(grpc.StatusCode.ALREADY_EXISTS, str(exc))
        return SubmitTaskResponse(
            task_id=accepted.task_id, status=status_value(accepted.status),
            stage=stage_value(accepted.stage), created=accepted.created,
        )

    async def GetTask(self, request: GetTaskRequest,
                      context: grpc.aio.ServicerContext) -> GetTaskResponse:
        row = await store.load_task(self.intake.pool, request.task_id)
        # Another tenant's task is reported as absent, never as forbidden: no existence leak.
        if row is None or not principal_var.get().may_access(row["tenant_id"]):
            await context.abort(grpc.StatusCode.NOT_FOUND, f"task {request.task_id!r} not found")
        return GetTaskResponse(task=task_from_row(row))


async def setup(ctx: ServiceContext) -> None:
    intake = Intake(ctx.settings, ctx.pool, ctx.producer)
    ctx.serve((add_IngestServiceServicer_to_server, IngestServicer(intake), SERVICE_NAME), POLICY)


async def main(settings: Settings, apply_migrations: bool = False) -> None:
    await run_service("ingest", settings, settings.ingest_grpc_port,
                      settings.ingest_metrics_port, setup, apply_migrations=apply_migrations)
