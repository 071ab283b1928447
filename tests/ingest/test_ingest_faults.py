"""Ingest under faults and load: a crash between the PostgreSQL commit and the Kafka produce
(the reconciler publishes the stranded task after a restart), and backpressure."""

from __future__ import annotations

import uuid

import asyncpg
import grpc
import pytest
from google.rpc import error_details_pb2

from services.ingest.publisher import CRASH_EXIT_CODE
from switchyard import Settings
from switchyard._grpc import create_channel, parse_status_details
from switchyard._topics import TASK_STATUS, TASKS
from switchyard.stack import free_port
from switchyard.v1 import (
    CancelTaskRequest,
    GetTaskRequest,
    IngestServiceStub,
    StatusEvent,
    SubmitTaskRequest,
    SubmitTasksRequest,
    TaskEnvelope,
    TaskSource,
    TaskStatus,
)
from tests.ingest.helpers import IngestProcess, read_topic, submission
from tests.polling import eventually

pytestmark = pytest.mark.integration


async def test_crash_between_commit_and_produce_is_reconciled(
        settings: Settings, db: asyncpg.Connection,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    # A short session: the restarted process's consumer group waits for the dead member's
    # session to expire before it can join.
    faulty = IngestProcess(settings.replace(fault_inject="crash_after_commit",
                                            kafka_session_timeout_ms=6000),
                           tmp_path_factory.mktemp("faulty")).start()
    try:
        channel = create_channel(f"127.0.0.1:{settings.ingest_grpc_port}")
        stub = IngestServiceStub(channel)
        sub = submission("crashco", "stranded-1")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.SubmitTask(SubmitTaskRequest(submission=sub))
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE  # the process died mid-call
        await channel.close()

        async def exited() -> int | None:
            return faulty.process.returncode
        assert await eventually(exited, "the faulty ingest to exit", 30) == CRASH_EXIT_CODE
        assert "fault injection: crash_after_commit" in faulty.log()
    finally:
        faulty.stop()

    row = await db.fetchrow("SELECT task_id, published_at FROM tasks WHERE tenant_id = "
                            "'crashco' AND idempotency_key = 'stranded-1'")
    assert row is not None and row["published_at"] is None  # committed, never produced
    task_id = str(row["task_id"])

    # restart without the fault; the reconciler finds the stranded task
    healthy = IngestProcess(settings.replace(reconcile_after_s=1.0, reconcile_interval_s=0.5),
                            tmp_path_factory.mktemp("restarted")).start()
    try:
        published = await eventually(lambda: db.fetchval(
            "SELECT published_at FROM tasks WHERE task_id = $1", row["task_id"]),
            "the reconciler to publish the stranded task", 60)
        assert published is not None
        records = await read_topic(settings, TASKS, lambda rs: any(
            TaskEnvelope.FromString(r.value).task_id == task_id for r in rs))
        envelopes = [TaskEnvelope.FromString(r.value) for r in records]
        replayed = [e for e in envelopes if e.task_id == task_id]
        assert len(replayed) == 1
        assert (replayed[0].source, replayed[0].attempt) == (TaskSource.TASK_SOURCE_REPLAY, 2)
        assert replayed[0].idempotency_key == "stranded-1"
        statuses = await read_topic(settings, TASK_STATUS, lambda rs: any(
            StatusEvent.FromString(r.value).task_id == task_id for r in rs))
        assert any(StatusEvent.FromString(r.value).task_id == task_id for r in statuses)
        # the client's retry of the same submission now answers with the same task
        channel = create_channel(f"127.0.0.1:{settings.ingest_grpc_port}")
        again = await IngestServiceStub(channel).SubmitTask(SubmitTaskRequest(submission=sub))
        await channel.close()
        assert (again.task_id, again.created) == (task_id, False)
        assert '"level": "ERROR"' not in healthy.log()
    finally:
        healthy.stop()


async def test_backpressure_refuses_with_a_retry_hint(
        settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> None:
    limited = settings.replace(ingest_max_backlog=20, ingest_backlog_check_s=0.1,
                               ingest_retry_after_ms=1500, ingest_grpc_port=free_port(),
                               ingest_metrics_port=free_port())
    process = IngestProcess(limited, tmp_path_factory.mktemp("limited")).start()
    channel = create_channel(f"127.0.0.1:{limited.ingest_grpc_port}")
    stub = IngestServiceStub(channel)
    tenant = f"bp{uuid.uuid4().hex[:6]}"
    try:
        first = await stub.SubmitTasks(SubmitTasksRequest(
            submissions=[submission(tenant, f"k-{i}") for i in range(25)]))
        assert first.accepted_count == 25

        async def refused() -> grpc.aio.AioRpcError | None:
            try:
                await stub.SubmitTask(SubmitTaskRequest(submission=submission(tenant)))
            except grpc.aio.AioRpcError as exc:
                return exc
            return None
        error = await eventually(refused, "RESOURCE_EXHAUSTED", 30)
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "backpressure" in (error.details() or "")
        assert dict(error.trailing_metadata() or ())["retry-after-ms"] == "1500"
        status = parse_status_details(error)
        retry = error_details_pb2.RetryInfo()
        assert status is not None and status.details[0].Unpack(retry)
        assert retry.retry_delay.ToMilliseconds() == 1500
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.SubmitTasks(SubmitTasksRequest(submissions=[submission(tenant)]))
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # a retry of work already accepted still gets its answer while overloaded
        again = await stub.SubmitTask(SubmitTaskRequest(submission=submission(tenant, "k-0")))
        assert again.task_id == first.results[0].accepted.task_id and not again.created

        # the backlog drains (here: cancelled) and submissions are accepted again
        for result in first.results:
            await stub.CancelTask(CancelTaskRequest(task_id=result.accepted.task_id))

        async def accepted() -> bool:
            return await refused() is None
        await eventually(accepted, "submissions to be accepted again", 30)
        task = (await stub.GetTask(GetTaskRequest(
            task_id=first.results[1].accepted.task_id))).task
        assert task.status == TaskStatus.TASK_STATUS_CANCELLED
    finally:
        await channel.close()
        process.stop()
