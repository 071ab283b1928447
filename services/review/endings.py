"""Tasks that ended, learned from the task-status topic: their review items close, and an
escalation that arrives later is never admitted.

The review service does not read ingest's tables to find out whether a task is still alive:
every status change is produced to the compacted ``task-status`` topic after its commit, and
this agent keeps the cancellations in ``review_ended_tasks``. Only a cancelled task can have
an escalation still to come: an escalation is sent after its task moved to awaiting review
(a move refused once the task ended), and from there a task ends either through a decision
on the escalation's own item (admitted already: a redelivery of it is the same escalation
and is dropped) or by a client's cancellation. So the tasks that succeed or fail, nearly
all of them, cost no row here. An event lost between the commit
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
from switchyard.audit import Entry, append_many
from switchyard.messaging import Record, RejectRecord, decode_batch
from switchyard.tasks import TERMINAL, status_name
from switchyard.telemetry import task_context
from switchyard.v1 import StatusEvent

log = logging.getLogger(__name__)


async def lock_task(conn: asyncpg.Connection, task_id: uuid.UUID) -> None:
    """Serialise the review service's view of one task (its ending vs. its escalations)."""
    await lock_tasks(conn, [task_id])


async def lock_tasks(conn: asyncpg.Connection, task_ids: list[uuid.UUID]) -> None:
    """:func:`lock_task` for many tasks, in task id order (two batches cannot deadlock)."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtext('switchyard-review-task:' || t::text)) "
        "FROM unnest($1::uuid[]) t", sorted(task_ids))


def withdrawn_resolution(status: str) -> str:
    return f"withdrawn:{status.lower()}"


async def withdraw(conn: asyncpg.Connection, endings: list[StatusEvent]
                   ) -> list[asyncpg.Record]:
    """Close the open items of the tasks these terminal events end (caller's transaction,
    the tasks' locks held), each with an audit record; returns the items closed (item_id,
    queue). One task appears once in ``endings``."""
    rows = await conn.fetch(
        "UPDATE review_items i SET state = 'WITHDRAWN', resolution = e.resolution, "
        "resolved_at = now(), updated_at = now(), claimed_by = NULL, lease_expires_at = NULL "
        "FROM unnest($1::uuid[], $2::text[]) e(task_id, resolution) "
        "WHERE i.task_id = e.task_id AND i.state IN ('BACKLOGGED', 'PENDING', 'CLAIMED') "
        "RETURNING i.item_id, i.queue, i.task_id",
        [uuid.UUID(e.task_id) for e in endings],
        [withdrawn_resolution(status_name(e.status)) for e in endings])
    by_task = {e.task_id: e for e in endings}
    await append_many(conn, [
        Entry(by_task[str(row["task_id"])].tenant_id, "review", "review.withdrawn",
              {"item_id": str(row["item_id"]),
               "task_status": status_name(by_task[str(row["task_id"])].status)},
              str(row["task_id"]))
        for row in sorted(rows, key=lambda r: (str(r["task_id"]), str(r["item_id"])))],
        writer="review")
    return list(rows)


class TaskEndings:
    """The task-status agent of the review service: a whole batch of status events at a
    time, one transaction for every task of the batch that ended."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def handle_batch(self, records: list[Record]) -> list[tuple[Record, RejectRecord]]:
        decoded, rejected = decode_batch(records, StatusEvent)
        endings: dict[uuid.UUID, StatusEvent] = {}
        for _, event in decoded:
            if (status_name(event.status) if event.status else "") not in TERMINAL:
                continue
            try:
                task_id = uuid.UUID(event.task_id)
            except ValueError:
                log.warning("status event with a task id that is not a UUID: %r",
                            event.task_id)
                continue
            endings.setdefault(task_id, event)  # a task ends once: its first ending counts
        if not endings:
            return rejected
        events = [endings[task_id] for task_id in sorted(endings)]
        async with self.pool.acquire() as conn, conn.transaction():
            await lock_tasks(conn, list(endings))
            cancelled = [e for e in events if status_name(e.status) == "CANCELLED"]
            if cancelled:
                await conn.execute(
                    "INSERT INTO review_ended_tasks (task_id, tenant_id, status, ended_at) "
                    "SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], "
                    "$4::timestamptz[]) ON CONFLICT (task_id) DO NOTHING",
                    [uuid.UUID(e.task_id) for e in cancelled], [e.tenant_id for e in cancelled],
                    [status_name(e.status) for e in cancelled],
                    [e.occurred_at.ToDatetime(timezone.utc) for e in cancelled])
            closed = await withdraw(conn, events)
        for row in closed:
            WITHDRAWN.labels(row["queue"]).inc()
            with task_context(str(row["task_id"])):
                log.info("task ended: open review item withdrawn from %s", row["queue"])
        return rejected


__all__ = ["TaskEndings", "lock_task", "lock_tasks", "withdraw", "withdrawn_resolution"]
