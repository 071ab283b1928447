"""Ingest under faults and load: a crash between the PostgreSQL commit and the Kafka produce
(the reconciler publishes the stranded task after a restart), and backpressure."""

from __future__ import annotations

import asyncio
import json
import uuid

import asyncpg
import grpc
import pytest
from aiokafka import AIOKafkaProducer
from google.rpc import error_details_pb2

from services.ingest.publisher import CRASH_EXIT_CODE
from switchyard import Settings
from switchyard.messaging import INTAKE, TASK_STATUS, TASKS
from switchyard.rpc import create_channel, parse_status_details
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
    # The restarted process's consumer group waits for the dead member's session to expire
    # before it can join: the module's settings keep that session short (tests/conftest.py).
    faulty = IngestProcess(settings.replace(fault_inject="crash_after_commit"),
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
                               ingest_metrics_port=free_port(), ingest_rest_port=free_port())
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
        assert dict(caught.value.trailing_metadata() or ())["retry-after-ms"] == "1500"
        # a retry of work already accepted still gets its answer while overloaded
        again = await stub.SubmitTask(SubmitTaskRequest(submission=submission(tenant, "k-0")))
        assert again.task_id == first.results[0].accepted.task_id and not again.created
        # ... through SubmitTasks too (the client lost the batch's response): the accepted
        # items get their tasks back, a new item in the same call is refused on its own
        retried = await stub.SubmitTasks(SubmitTasksRequest(
            submissions=[submission(tenant, f"k-{i}") for i in range(25)]))
        assert retried.accepted_count == 25
        assert [r.accepted.task_id for r in retried.results] == \
            [r.accepted.task_id for r in first.results]
        assert not any(r.accepted.created for r in retried.results)
        mixed = await stub.SubmitTasks(SubmitTasksRequest(
            submissions=[submission(tenant, "k-3"), submission(tenant, "brand-new")]))
        assert (mixed.accepted_count, mixed.rejected_count) == (1, 1)
        assert mixed.results[0].accepted.task_id == first.results[3].accepted.task_id
        assert mixed.results[1].error.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
        assert "backpressure" in mixed.results[1].error.message

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


async def test_intake_records_wait_in_kafka_while_the_backlog_is_over_the_limit(
        settings: Settings, db: asyncpg.Connection,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """Over the limit the intake consumer stops taking records: they stay in Kafka (not
    tasks, not dead letters) and all become tasks once the backlog drains."""
    limited = settings.replace(ingest_max_backlog=20, ingest_backlog_check_s=0.1,
                               ingest_grpc_port=free_port(), ingest_metrics_port=free_port(),
                               ingest_rest_port=free_port())
    process = IngestProcess(limited, tmp_path_factory.mktemp("intake-limited")).start()
    channel = create_channel(f"127.0.0.1:{limited.ingest_grpc_port}")
    stub = IngestServiceStub(channel)
    tenant = f"ik{uuid.uuid4().hex[:6]}"
    producer = AIOKafkaProducer(bootstrap_servers=limited.kafka_bootstrap_servers, acks="all")
    await producer.start()

    async def produce(key: str) -> None:
        value = json.dumps({"tenant_id": tenant, "idempotency_key": key,
                            "document": {"body": f"Invoice {key}: amount due 12.00 EUR"}})
        await producer.send_and_wait(INTAKE.full_name(limited), value.encode(), key=key.encode(),
                                     headers=[("content-type", b"application/json")])

    async def intake_tasks() -> dict[str, str]:
        rows = await db.fetch("SELECT idempotency_key, status FROM tasks WHERE tenant_id = $1 "
                              "AND source = 'TASK_SOURCE_KAFKA_INTAKE'", tenant)
        return {r["idempotency_key"]: r["status"] for r in rows}

    try:
        # the consumer is live: a record below the limit becomes a task
        await produce("before")
        await eventually(intake_tasks, "the first intake record to become a task", 90)
        # fill the backlog past the limit (nothing decides here, so tasks stay QUEUED)
        backlog = await stub.SubmitTasks(SubmitTasksRequest(
            submissions=[submission(tenant, f"grpc-{i}") for i in range(25)]))
        assert backlog.accepted_count == 25

        async def overloaded() -> bool:
            try:
                await stub.SubmitTask(SubmitTaskRequest(submission=submission(tenant)))
            except grpc.aio.AioRpcError as exc:
                return exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            return False
        await eventually(overloaded, "backpressure", 30)

        keys = [f"held-{i}" for i in range(10)]
        for key in keys:
            await produce(key)
        in_kafka = await read_topic(limited, INTAKE, lambda rs: {
            r.key.decode() for r in rs if r.key} >= set(keys))
        assert {r.key.decode() for r in in_kafka if r.key} >= set(keys)
        # while overloaded none of them is taken (checked over many backlog refreshes)
        for _ in range(30):
            assert set(await intake_tasks()) == {"before"}
            await asyncio.sleep(0.1)
        assert await db.fetchval("SELECT count(*) FROM dead_letters WHERE service = 'ingest' "
                                 "AND position($1::bytea in original_value) > 0",
                                 tenant.encode()) == 0

        # the backlog drains (here: cancelled) and every held record becomes a task
        for result in backlog.results:
            await stub.CancelTask(CancelTaskRequest(task_id=result.accepted.task_id))

        async def all_taken() -> dict[str, str]:
            found = await intake_tasks()
            return found if set(found) == {"before", *keys} else {}
        taken = await eventually(all_taken, "the held records to become tasks", 90)
        assert set(taken.values()) == {"QUEUED"}
        assert await db.fetchval("SELECT count(*) FROM dead_letters WHERE service = 'ingest' "
                                 "AND position($1::bytea in original_value) > 0",
                                 tenant.encode()) == 0
    finally:
        await producer.stop()
        await channel.close()
        process.stop()
