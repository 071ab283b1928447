"""Tasks that ended, learned from the task-status topic: their review items close, and an
escalation that arrives later is never admitted.

The review service does not read ingest's tables to find out whether a task is still alive:
every status change is produced to the compacted ``task-status`` topic after its commit, and
this agent keeps the terminal ones in ``review_ended_tasks``. An event lost between the commit
and the produce (a crash, a broker error) is produced again by ingest's reconciler while the
task still has an open item here (``services/ingest/reconciler.py:EndingMirror``), so
an item never waits for good on a task that ended; duplicates change nothing. A terminal event closes every open item of its
task as ``WITHDRAWN`` (resolution ``withdrawn:<status>``, one audit record per item), whether
a client cancelled it or it ended some other way. Escalations and status events travel on
different topics, so either may come first; both sides take the same per-task advisory lock,
so an escalation is either enqueued before the ending (and then withdrawn by it) or sees the
ending and is stored already withdrawn (:meth:`ReviewQueue.enqueue`).
"""

from __future__ import annotations

import logging
import uuid
from datetime import timezone

import asyncpg

from services.review.metrics import WITHDRAWN
from services.review.resolutions import audit
from switchyard._serde import decode
from switchyard._streams import Record
from switchyard._taskstore import TERMINAL, status_name
from switchyard._telemetry import task_context
from switchyard.v1 import StatusEvent

log = logging.getLogger(__name__)


async def lock_task(conn: asyncpg.Connection, task_id: uuid.UUID) -> None:
    """Serialise the review service's view of one task (its ending vs. its escalations)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('switchyard-review-task:' || $1::text))",
                       str(task_id))


def withdrawn_resolution(status: str) -> str:
    return f"withdrawn:{status.lower()}"


async def withdraw(conn: asyncpg.Connection, task_id: uuid.UUID, tenant_id: str, status: str
                   ) -> list[asyncpg.Record]:
    """Close the task's open items (caller's transaction, task lock held), each with an
    audit record; returns the items closed (item_id, queue)."""
    rows = await conn.fetch(
        "UPDATE review_items SET state = 'WITHDRAWN', resolution = $2, resolved_at = now(), "
        "updated_at = now(), claimed_by = NULL, lease_expires_at = NULL "
        "WHERE task_id = $1 AND state IN ('BACKLOGGED', 'PENDING', 'CLAIMED') "
        "RETURNING item_id, queue", task_id, withdrawn_resolution(status))
    for row in rows:
        await audit(conn, tenant_id, "review", "review.withdrawn", str(task_id),
                    {"item_id": str(row["item_id"]), "task_status": status})
    return list(rows)


class TaskEndings:
    """The task-status agent of the review service."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def handle(self, record: Record) -> None:
        event = decode(record.value, record.headers, StatusEvent)
        status = status_name(event.status) if event.status else ""
        if status not in TERMINAL:
            return
        try:
            task_id = uuid.UUID(event.task_id)
        except ValueError:
            log.warning("status event with a task id that is not a UUID: %r", event.task_id)
            return
        with task_context(event.task_id):
            async with self.pool.acquire() as conn, conn.transaction():
                await lock_task(conn, task_id)
                await conn.execute(
                    "INSERT INTO review_ended_tasks (task_id, tenant_id, status, ended_at) "
                    "VALUES ($1, $2, $3, $4) ON CONFLICT (task_id) DO NOTHING",
                    task_id, event.tenant_id, status,
                    event.occurred_at.ToDatetime(timezone.utc))
                closed = await withdraw(conn, task_id, event.tenant_id, status)
            for row in closed:
                WITHDRAWN.labels(row["queue"]).inc()
            if closed:
                log.info("task %s: %d open review item(s) withdrawn", status, len(closed))


__all__ = ["TaskEndings", "lock_task", "withdraw", "withdrawn_resolution"]
