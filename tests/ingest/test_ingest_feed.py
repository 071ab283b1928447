"""The status feed against the real PostgreSQL: a change that commits late is not skipped.

Two stages change two tasks; the one that started first commits last. A reader keyed on
insert order would already have moved past it; the feed holds the later change back until
the earlier transaction is finished and then delivers both.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from services.ingest import domain, store
from services.ingest.feed import StatusFeed
from switchyard import Settings
from switchyard.storage import create_pool
from switchyard.tasks import transition
from switchyard.v1 import TaskSource
from tests.ingest.helpers import submission
from tests.polling import eventually

pytestmark = pytest.mark.integration


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(settings.replace(postgres_pool_min=1, postgres_pool_max=4))
    yield pool
    await pool.close()


async def new_task(pool: asyncpg.Pool, tenant: str) -> str:
    sub = submission(tenant)
    envelope = domain.build_envelope(sub, domain.new_task_id(), TaskSource.TASK_SOURCE_GRPC)
    async with pool.acquire() as conn:
        await store.accept(conn, envelope, domain.payload_sha256(sub))
    return envelope.task_id


async def test_late_commit_is_delivered_not_skipped(pool: asyncpg.Pool) -> None:
    tenant = f"feed{uuid.uuid4().hex[:6]}"
    early, late = await new_task(pool, tenant), await new_task(pool, tenant)
    feed = StatusFeed(pool, poll_interval_s=0.05)
    await feed.start()
    watch = feed.watch_tenant(tenant, None)
    received: list[tuple[str, int]] = []

    async def read() -> None:
        async for item in watch:
            received.append((item.event.task_id, item.event.sequence))

    reader = asyncio.create_task(read())
    slow = await pool.acquire()
    fast = await pool.acquire()
    try:
        slow_tx = slow.transaction()
        await slow_tx.start()
        await transition(slow, early, "IN_PROGRESS", "DECIDING", "decision")  # txid a
        async with fast.transaction():
            await transition(fast, late, "IN_PROGRESS", "DECIDING", "decision")  # txid b > a
        for _ in range(5):  # the committed later change stays held back while `a` runs
            await feed.poll_once()
            await asyncio.sleep(0.05)
        assert (late, 2) not in received
        await slow_tx.commit()

        async def both() -> bool:
            await feed.poll_once()
            await asyncio.sleep(0.05)
            return {(early, 2), (late, 2)} <= set(received)
        await eventually(both, "both changes", 60)
        assert received.index((early, 2)) < received.index((late, 2))  # feed (txid) order
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        await pool.release(slow)
        await pool.release(fast)


async def test_resume_from_a_cursor_replays_from_postgres(pool: asyncpg.Pool) -> None:
    tenant = f"feed{uuid.uuid4().hex[:6]}"
    feed = StatusFeed(pool, poll_interval_s=0.05)
    await feed.start()
    origin = feed.position
    ids = [await new_task(pool, tenant) for _ in range(3)]

    async def caught_up() -> bool:
        await feed.poll_once()
        return feed.position is not None and origin is not None and feed.position > origin
    await eventually(caught_up, "the feed to move", 60)
    # a watch resuming from before the three tasks gets them from PostgreSQL, in order
    stream = feed.watch_tenant(tenant, origin)
    got = [(await asyncio.wait_for(stream.__anext__(), 30)).event.task_id for _ in range(3)]
    await stream.aclose()
    assert sorted(got) == sorted(ids)


async def test_the_feed_polls_only_while_someone_watches(pool: asyncpg.Pool) -> None:
    """Nobody watching: the feed reads nothing (its position stays put while tasks change).
    The first watch moves it up to now, receives what changes afterwards, and nothing made
    while nobody listened arrives through the live fan-out."""
    tenant = f"feed{uuid.uuid4().hex[:6]}"
    feed = StatusFeed(pool, poll_interval_s=0.02)
    await feed.start()
    origin = feed.position
    runner = asyncio.create_task(feed.run())
    try:
        unheard = await new_task(pool, tenant)
        await asyncio.sleep(0.5)  # 25 poll intervals
        assert feed.position == origin, "the feed polled with no watch open"

        watch = feed.watch_tenant(tenant, None)
        first = asyncio.ensure_future(watch.__anext__())

        async def moved() -> bool:
            return feed.position is not None and origin is not None and feed.position > origin
        await eventually(moved, "the first watch to move the feed", 30)
        heard = await new_task(pool, tenant)
        async with pool.acquire() as conn:
            await transition(conn, heard, "IN_PROGRESS", "DECIDING", "decision")
        item = await asyncio.wait_for(first, 30)
        assert item.event.task_id == heard  # not `unheard`, accepted while nobody listened
        await watch.aclose()
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
    assert unheard != heard
