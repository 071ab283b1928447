"""The reconciler: accepted work that never reached Kafka is published after a timeout.

A task is committed to PostgreSQL before its envelope is produced (see ``publisher``). If the
process dies in between, or the broker is down when the produce happens, the task sits with
``published_at IS NULL``. This loop finds such tasks once they are older than
``reconcile_after_s`` (so it does not race a produce still in flight) and publishes them with
``source = TASK_SOURCE_REPLAY`` and ``attempt + 1``. Consumers downstream dedupe per task, so
publishing a task twice (a produce that did land but was not yet marked) is harmless.
Cancellation requests recorded by CancelTask but not yet published get the same treatment.

Replicas coordinate with a PostgreSQL advisory lock: one reconciles, the others skip a round.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

import asyncpg
from prometheus_client import Counter

from services.ingest import store
from services.ingest.cancel import cancellation_from_row
from services.ingest.publisher import Publisher
from switchyard._streams import TRANSIENT_ERRORS
from switchyard._taskstore import TERMINAL, stage_value, status_value, timestamp
from switchyard._topics import CANCELLATIONS
from switchyard.v1 import CancellationRequest, StatusEvent, TaskEnvelope, TaskSource

log = logging.getLogger(__name__)
_LOCK_KEY = 0x5357_5243  # "SWRC": one reconciler at a time, cluster-wide
BATCH = 500

REPUBLISHED = Counter(
    "switchyard_ingest_republished_total",
    "Accepted records the reconciler published after they were found missing from Kafka.",
    ["kind"],
)


def replay_event(row: asyncpg.Record) -> StatusEvent:
    """The task's latest status, as the compacted status topic should show it."""
    return StatusEvent(
        task_id=str(row["task_id"]), tenant_id=row["tenant_id"],
        status=status_value(row["status"]), stage=stage_value(row["stage"]),
        reason=row["reason"], occurred_at=timestamp(row["updated_at"]),
        sequence=row["status_seq"], service="ingest",
    )


async def reconcile_tasks(conn: asyncpg.Connection, publisher: Publisher,
                          after_s: float) -> int:
    rows = await conn.fetch(
        "SELECT task_id, tenant_id, envelope, status, stage, reason, status_seq, updated_at "
        "FROM tasks WHERE published_at IS NULL "
        "AND created_at < now() - make_interval(secs => $1) ORDER BY created_at LIMIT $2",
        after_s, BATCH,
    )
    finished = [str(r["task_id"]) for r in rows if r["status"] in TERMINAL]
    if finished:
        # Cancelled before it ever reached Kafka: nothing downstream must see it now.
        await store.mark_published(publisher.pool, finished)
    replay = []
    for row in rows:
        if row["status"] in TERMINAL:
            continue
        envelope = TaskEnvelope.FromString(row["envelope"])
        envelope.attempt += 1
        envelope.source = TaskSource.TASK_SOURCE_REPLAY
        replay.append((envelope, replay_event(row)))
    if replay:
        await publisher.publish(replay)
        REPUBLISHED.labels("task").inc(len(replay))
        log.warning("reconciler re-published %d task(s) missing from Kafka", len(replay),
                    extra={"task_ids": [e.task_id for e, _ in replay][:20]})
    return len(replay)


async def reconcile_cancellations(conn: asyncpg.Connection, publisher: Publisher,
                                  after_s: float) -> int:
    rows = await conn.fetch(
        "SELECT request_id, task_id, tenant_id, reason, requested_by, requested_at "
        "FROM cancellation_requests WHERE published_at IS NULL "
        "AND requested_at < now() - make_interval(secs => $1) LIMIT $2", after_s, BATCH,
    )
    for row in rows:
        await publish_cancellation(publisher, cancellation_from_row(row))
        REPUBLISHED.labels("cancellation").inc()
    return len(rows)


async def publish_cancellation(publisher: Publisher, request: CancellationRequest) -> None:
    await publisher.producer.send(CANCELLATIONS, request.task_id, request)
    await publisher.pool.execute(
        "UPDATE cancellation_requests SET published_at = now() WHERE request_id = $1",
        uuid.UUID(request.request_id),
    )


async def reconcile_once(publisher: Publisher, after_s: float) -> int:
    """One round; returns how many records were published (0 when another replica holds it)."""
    async with publisher.pool.acquire() as conn:
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", _LOCK_KEY):
            return 0
        try:
            return (await reconcile_tasks(conn, publisher, after_s)
                    + await reconcile_cancellations(conn, publisher, after_s))
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)


async def run(publisher: Publisher, interval_s: float, after_s: float) -> None:
    """Reconcile forever: at start (a restart after a crash is when it matters), then every
    ``interval_s``; a full batch goes again at once."""
    while True:
        try:
            published = await reconcile_once(publisher, after_s)
        except TRANSIENT_ERRORS as exc:
            log.warning("reconciler round failed, retrying: %r", exc)
            published = 0
        if published < BATCH:
            await asyncio.sleep(interval_s)


__all__ = ["REPUBLISHED", "publish_cancellation", "reconcile_once", "run"]
