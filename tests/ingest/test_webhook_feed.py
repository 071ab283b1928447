"""The webhook dispatcher reads the status feed only while someone listens.

Driven in-process (``enqueue_once``, ``register``) against the real PostgreSQL and broker,
each test on a schema of its own, so what listens is exactly what the test made: with no
webhook registered and no task submitted with a callback, a pass moves the cursor past the
finished events without reading them, and a webhook registered afterwards is owed only the
events after it; a task with a callback is heard as before. Registration waits for a pass
holding the cursor, and is stamped with the time it got it (what makes skipping safe).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from prometheus_client import REGISTRY

from services.ingest import webhooks
from services.ingest.feed import Cursor, fetch_after, horizon
from services.ingest.publisher import Publisher
from services.ingest.service import item_for
from switchyard import Settings
from switchyard.storage import migrate
from switchyard.v1 import TaskSource
from tests.ingest.helpers import running_publisher, submission
from tests.polling import eventually

pytestmark = pytest.mark.integration


@pytest.fixture
async def publisher(settings: Settings) -> AsyncIterator[Publisher]:
    """A publisher on a schema of this test's own (the module's topics)."""
    own = settings.replace(postgres_schema=f"feed_{uuid.uuid4().hex[:8]}")
    await migrate(own)
    async with running_publisher(own) as publisher:
        yield publisher


async def submit(publisher: Publisher, tenant: str, **fields: str) -> str:
    item = item_for(submission(tenant, **fields), TaskSource.TASK_SOURCE_GRPC)
    return (await publisher.accept(item)).task_id


async def unread(pool: asyncpg.Pool) -> int:
    """Finished status events after the dispatcher's cursor."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT txid, task_id, seq FROM webhook_feed_cursor")
        cursor = Cursor(0, uuid.UUID(int=0), 0) if row is None else \
            Cursor(row["txid"], row["task_id"], row["seq"])
        return len(await fetch_after(conn, cursor, await horizon(conn), 1000))


def passed_unheard() -> float:
    return REGISTRY.get_sample_value(
        "switchyard_ingest_webhook_feed_passes_unheard_total") or 0.0


async def deliveries(pool: asyncpg.Pool) -> list[tuple[str, int]]:
    return sorted((str(r["task_id"]), r["seq"]) for r in await pool.fetch(
        "SELECT task_id, seq FROM webhook_deliveries"))


async def test_nobody_listening_the_feed_is_passed_unread_and_a_new_webhook_hears_what_follows(
        publisher: Publisher) -> None:
    pool = publisher.pool
    before = [await submit(publisher, "quiet") for _ in range(3)]
    assert await unread(pool) == 3
    passes = passed_unheard()
    assert await webhooks.enqueue_once(pool) == 0
    assert passed_unheard() == passes + 1
    assert await unread(pool) == 0 and await deliveries(pool) == []

    await webhooks.register(pool, "quiet", "http://127.0.0.1:9/hook", "")
    after = await submit(publisher, "quiet")
    assert await webhooks.enqueue_once(pool) == 1
    assert await deliveries(pool) == [(after, 1)]
    assert not set(before) & {task for task, _ in await deliveries(pool)}


async def test_a_task_with_a_callback_is_heard(publisher: Publisher) -> None:
    pool = publisher.pool
    plain = await submit(publisher, "calls")
    called = await submit(publisher, "calls", callback_url="http://127.0.0.1:9/task")
    assert await webhooks.enqueue_once(pool) == 2   # read, not passed
    assert await deliveries(pool) == [(called, 1)]   # not ``plain``'s: nobody wants it


async def test_registration_waits_for_a_pass_holding_the_cursor_and_is_stamped_after_it(
        publisher: Publisher) -> None:
    pool = publisher.pool
    await submit(publisher, "early")
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        await conn.fetchrow("INSERT INTO webhook_feed_cursor (txid, task_id, seq) VALUES "
                            "(0, $1, 0) ON CONFLICT DO NOTHING", uuid.UUID(int=0))
        await conn.fetchrow("SELECT * FROM webhook_feed_cursor FOR UPDATE")
        registering = asyncio.create_task(
            webhooks.register(pool, "early", "http://127.0.0.1:9/hook", ""))

        async def waiting() -> bool:
            return bool(await pool.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE '%webhook_feed_cursor%'"))
        await eventually(waiting, "the registration to wait for the cursor's lock", 30)
        assert not registering.done()
        released_at = await conn.fetchval("SELECT clock_timestamp()")
        await tx.commit()
    webhook_id, _ = await registering
    created_at = await pool.fetchval("SELECT created_at FROM webhooks WHERE webhook_id = $1",
                                     uuid.UUID(webhook_id))
    assert created_at > released_at
