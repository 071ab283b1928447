"""A task cancelled while its item waits for a reviewer, whose CANCELLED status event is lost.

The review service learns that a task ended only from the task-status topic. Ingest and the
review service run as real processes; ingest's ``drop_cancel_status`` fault makes CancelTask
commit the cancellation without producing its event (what a broker error or a crash between
the commit and the produce does). The reconciler must notice the ended task whose review item
is still open and mirror its status again, so the item is withdrawn.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import aiohttp
import asyncpg
import pytest

from switchyard import Settings
from switchyard.messaging import ESCALATIONS, Producer
from switchyard.rpc import create_channel
from switchyard.runtime import service_specs
from switchyard.stack import EmbeddedStack, ManagedProcess
from switchyard.storage import create_pool
from switchyard.v1 import CancelTaskRequest, IngestServiceStub, TaskStatus
from tests.polling import eventually
from tests.review.helpers import escalation, insert_tasks

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def settings(settings: Settings) -> Settings:
    """Ingest loses every CANCELLED event; its reconciler looks often and soon."""
    return settings.replace(fault_inject="drop_cancel_status", reconcile_interval_s=0.5,
                            reconcile_after_s=1.0, review_admission_interval_ms=50.0)


@pytest.fixture(scope="module")
def services(settings: Settings, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[EmbeddedStack]:
    """Ingest and the review service as real processes."""
    started = EmbeddedStack(settings, tmp_path_factory.mktemp("lost-status"), components=(),
                            services=service_specs(settings, ("ingest", "review")))
    started.start(timeout_s=90)
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
async def db(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(settings)
    yield pool
    await pool.close()


async def republished_statuses(settings: Settings) -> float:
    """Ingest's count of status events its reconciler mirrored again."""
    url = f"http://127.0.0.1:{settings.ingest_metrics_port}/metrics"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        text = await response.text()
    for line in text.splitlines():
        if line.startswith('switchyard_ingest_republished_total{kind="status"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_item_of_a_cancelled_task_is_withdrawn_though_its_status_event_was_lost(
        settings: Settings, services: EmbeddedStack, db: asyncpg.Pool) -> None:
    async with db.acquire() as conn:
        (task,) = await insert_tasks(conn, "acme", 1)
    esc = escalation(task, "default", 2)
    producer = Producer(settings)
    await producer.start()
    try:
        await producer.send(ESCALATIONS, esc.task_id, esc)
    finally:
        await producer.stop()

    async def item_state() -> str | None:
        return await db.fetchval("SELECT state FROM review_items WHERE escalation_id = $1",
                                 uuid.UUID(esc.escalation_id))
    await eventually(lambda: _is(item_state, "PENDING"), "the item to wait for a reviewer")

    channel = create_channel(f"127.0.0.1:{settings.ingest_grpc_port}")
    try:
        answer = await IngestServiceStub(channel).CancelTask(
            CancelTaskRequest(task_id=task.task_id, reason="customer withdrew it"))
    finally:
        await channel.close()
    assert answer.task.status == TaskStatus.TASK_STATUS_CANCELLED

    row = await eventually(lambda: db.fetchrow(
        "SELECT state, resolution FROM review_items WHERE escalation_id = $1 "
        "AND state = 'WITHDRAWN'", uuid.UUID(esc.escalation_id)), "the item to be withdrawn")
    assert row["resolution"] == "withdrawn:cancelled"
    # It was the reconciler's copy that arrived: CancelTask never produced the event.
    ingest_log = ManagedProcess.log_path_for(services.state_dir, "ingest").read_text(
        errors="replace")
    assert "fault injection: drop_cancel_status" in ingest_log
    assert await republished_statuses(settings) >= 1
    assert await db.fetchval("SELECT status FROM review_ended_tasks WHERE task_id = $1",
                             uuid.UUID(task.task_id)) == "CANCELLED"


async def _is(read: object, expected: str) -> bool:
    return await read() == expected  # type: ignore[operator]
