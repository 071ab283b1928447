"""The review service takes the task-status and escalations topics a batch at a time, on a
real process.

Twelve tasks wait for reviewers; then their endings arrive together on the task-status topic,
mixed with non-terminal events, a second ending of one task and a record that is not a status
event. In one batch the review service closes every open item (``withdrawn:<status>``, one
audit entry each, the chain intact), remembers each ending once, dead-letters the bad record
and lets the rest through. Escalations arriving together are stored in one transaction, each
once; one that names no task and one that is no escalation go to the dead-letter topic.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
from switchyard import Settings
from switchyard.audit import verify
from switchyard.messaging import ESCALATIONS, TASK_STATUS, Producer
from switchyard.runtime import service_specs
from switchyard.stack import EmbeddedStack
from switchyard.storage import create_pool
from switchyard.v1 import Escalation, StatusEvent, TaskEnvelope, TaskStage, TaskStatus
from tests.observed import dead_letters, metric_sum
from tests.polling import eventually
from tests.review.helpers import escalation, insert_tasks

pytestmark = pytest.mark.integration
TASKS = 12


@pytest.fixture(scope="module")
def services(settings: Settings, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[EmbeddedStack]:
    started = EmbeddedStack(settings, tmp_path_factory.mktemp("endings"), components=(),
                            services=service_specs(settings, ("review",)))
    started.start(timeout_s=90)
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(settings)
    yield pool
    await pool.close()


def status(task_id: str, tenant: str, value: int, sequence: int) -> StatusEvent:
    return StatusEvent(task_id=task_id, tenant_id=tenant, status=value,
                       stage=TaskStage.TASK_STAGE_DONE, sequence=sequence, service="test")


async def test_endings_in_one_batch_withdraw_every_item_once(
        settings: Settings, services: EmbeddedStack, db: asyncpg.Pool) -> None:
    tenant = f"endings-{uuid.uuid4().hex[:8]}"
    async with db.acquire() as conn:
        tasks = await insert_tasks(conn, tenant, TASKS)
    producer = Producer(settings)
    await producer.start()
    try:
        for task in tasks:
            await producer.send(ESCALATIONS, task.task_id, escalation(task, "default", 2))
        ids = [uuid.UUID(t.task_id) for t in tasks]

        async def all_pending() -> bool:
            return await db.fetchval(
                "SELECT count(*) FROM review_items WHERE task_id = ANY($1::uuid[]) "
                "AND state = 'PENDING'", ids) == TASKS
        await eventually(all_pending, "every item waiting for a reviewer", 60)

        ended = {t.task_id: (TaskStatus.TASK_STATUS_CANCELLED if i % 2 else
                             TaskStatus.TASK_STATUS_FAILED) for i, t in enumerate(tasks)}
        futures = []
        for task in tasks:  # a non-terminal event, then the ending
            futures.append(await producer.send_nowait(TASK_STATUS, task.task_id, status(
                task.task_id, tenant, TaskStatus.TASK_STATUS_IN_PROGRESS, 2)))
            futures.append(await producer.send_nowait(TASK_STATUS, task.task_id, status(
                task.task_id, tenant, ended[task.task_id], 3)))
        first = tasks[0].task_id  # ended again: a redelivery says nothing new
        futures.append(await producer.send_nowait(TASK_STATUS, first, status(
            first, tenant, ended[first], 3)))
        await producer.send_raw(TASK_STATUS.full_name(settings), b"not-a-status", b"\x00junk",
                                {"content-type": "application/json"})
        for future in futures:
            await future
    finally:
        await producer.stop()

    async def all_withdrawn() -> list[asyncpg.Record] | None:
        rows = await db.fetch(
            "SELECT task_id, state, resolution FROM review_items WHERE task_id = ANY($1::uuid[])",
            ids)
        return rows if all(r["state"] == "WITHDRAWN" for r in rows) else None
    rows = await eventually(all_withdrawn, "every item withdrawn", 60)
    assert {str(r["task_id"]): r["resolution"] for r in rows} == {
        task_id: "withdrawn:" + TaskStatus.Name(value).removeprefix("TASK_STATUS_").lower()
        for task_id, value in ended.items()}
    remembered = await db.fetch(
        "SELECT task_id, status FROM review_ended_tasks WHERE task_id = ANY($1::uuid[])", ids)
    # only cancellations are kept: no escalation can follow another ending (endings.py)
    assert {str(r["task_id"]): r["status"] for r in remembered} == {
        task_id: "CANCELLED" for task_id, value in ended.items()
        if value == TaskStatus.TASK_STATUS_CANCELLED}
    letter = (await dead_letters(settings, {b"not-a-status"}))[b"not-a-status"]
    assert (letter.reason_code, letter.service) == ("unsupported_content_type", "review")

    async with db.acquire() as conn:
        withdrawals = await conn.fetchval(
            "SELECT count(*) FROM audit_log WHERE tenant_id = $1 AND action = "
            "'review.withdrawn'", tenant)
        checked = await verify(conn, tenant)
    assert withdrawals == TASKS  # one per item, the second ending added none
    assert checked.broken is None
    topic = f'topic="{TASK_STATUS.full_name(settings)}"'
    port = settings.review_metrics_port
    batches = metric_sum(port, "switchyard_stream_batch_records_count", topic)
    records = metric_sum(port, "switchyard_stream_batch_records_sum", topic)
    assert 0 < batches < records  # taken in batches, not one call per record


async def test_escalations_in_one_batch_are_stored_once_and_bad_ones_set_aside(
        settings: Settings, services: EmbeddedStack, db: asyncpg.Pool) -> None:
    tenant = f"intake-{uuid.uuid4().hex[:8]}"
    async with db.acquire() as conn:
        tasks = await insert_tasks(conn, tenant, TASKS)
    escalations = [escalation(task, "default", 2) for task in tasks]
    ghost = escalation(TaskEnvelope(task_id=str(uuid.uuid4()), tenant_id=tenant),
                       "default", 2)  # a task the system of record does not have
    producer = Producer(settings)
    await producer.start()
    try:
        futures = [await producer.send_nowait(ESCALATIONS, e.task_id, e)
                   for e in [*escalations, ghost, escalations[0]]]  # the first one twice
        await producer.send_raw(ESCALATIONS.full_name(settings), b"not-an-escalation",
                                b"\x00junk", {"content-type": "application/json"})
        for future in futures:
            await future
    finally:
        await producer.stop()

    ids = [uuid.UUID(e.escalation_id) for e in escalations]

    async def all_stored() -> bool:
        return await db.fetchval(
            "SELECT count(*) FROM review_items WHERE escalation_id = ANY($1::uuid[])",
            ids) == TASKS
    await eventually(all_stored, "every escalation stored", 60)
    letters = await dead_letters(settings, {ghost.task_id.encode(), b"not-an-escalation"})
    unknown = letters[ghost.task_id.encode()]
    assert (unknown.reason_code, unknown.service) == ("unknown_task", "review")
    assert Escalation.FromString(unknown.original_value) == ghost
    junk = letters[b"not-an-escalation"]
    assert junk.reason_code == "unsupported_content_type"
    rows = await db.fetch(
        "SELECT escalation_id, count(*) AS n FROM review_items WHERE tenant_id = $1 "
        "GROUP BY escalation_id", tenant)
    assert sorted(r["escalation_id"] for r in rows) == sorted(ids)
    assert all(r["n"] == 1 for r in rows)
    topic = f'topic="{ESCALATIONS.full_name(settings)}"'
    port = settings.review_metrics_port
    batches = metric_sum(port, "switchyard_stream_batch_records_count", topic)
    records = metric_sum(port, "switchyard_stream_batch_records_sum", topic)
    assert 0 < batches < records
