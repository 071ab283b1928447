"""CancelTask: cancel outright while nothing has been executed; otherwise ask the executor.

A task may be cancelled by ingest itself only while no downstream effect can have happened:
it is queued, being decided, or waiting for a reviewer the decision service asked for. A task
the executor handed to a person (an approval step of its plan, or an escalation after steps
ran) may have effects already, so it is the executor's to stop, like an executing one. The
check and the status change happen under the task's row lock, so a concurrent move to
EXECUTING either happens before (and the cancel becomes a request) or waits and then finds
the task CANCELLED (``transition`` refuses to move a terminal task, so the executor sees no
change and must not run it).

Once executing, stopping means undoing finished steps, which only the executor can do
(saga compensation). Ingest records a cancellation request in PostgreSQL and publishes a
``CancellationRequest`` to the ``cancellations`` topic (key task_id); the caller is told
FAILED_PRECONDITION with what happened, and the outcome arrives as a status event.

Both are operator actions on the task, so each appends an audit entry (``task.cancelled`` or
``task.cancel_requested``, actor: the caller's API key id, the reason as a hash) in the
transaction that makes the change. The caller's reason is free text that may name a person:
a cancelled task's status event does not carry it, and a request for the executor carries it
through the PII detectors (as a reviewer's reason travels), since the executor writes it into
the step it stops and the status it ends on.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

from switchyard.audit import append as audit_append, digest
from switchyard.privacy import Redactor
from switchyard.tasks import TERMINAL, Transition, timestamp, transition
from switchyard.v1 import CancellationRequest

_DETECTORS = Redactor()

#: Stages in which downstream effects may already exist.
EXECUTING_STAGES = frozenset({"EXECUTING", "COMPENSATING"})


@dataclass(frozen=True)
class Cancelled:
    change: Transition


@dataclass(frozen=True)
class AlreadyFinished:
    status: str


@dataclass(frozen=True)
class Requested:
    """The task is executing; a cancellation request was recorded (``new``: by this call)."""

    request: CancellationRequest
    new: bool


Outcome = Cancelled | AlreadyFinished | Requested


def cancellation_from_row(row: asyncpg.Record) -> CancellationRequest:
    return CancellationRequest(
        request_id=str(row["request_id"]), task_id=str(row["task_id"]),
        tenant_id=row["tenant_id"], reason=row["reason"], requested_by=row["requested_by"],
        requested_at=timestamp(row["requested_at"]),
    )


async def cancel(conn: asyncpg.Connection, task_id: str, reason: str, requested_by: str
                 ) -> Outcome | None:
    """Cancel or request cancellation; None when the task does not exist."""
    async with conn.transaction():
        row = await conn.fetchrow(
            "SELECT tenant_id, status, stage FROM tasks WHERE task_id = $1 FOR UPDATE",
            uuid.UUID(task_id),
        )
        if row is None:
            return None
        if row["status"] in TERMINAL:
            return AlreadyFinished(row["status"])
        if row["stage"] not in EXECUTING_STAGES and not await _with_the_executor(conn, task_id):
            change = await transition(conn, task_id, "CANCELLED", "DONE", "ingest",
                                      "cancelled", "cancelled at a client's request")
            assert change is not None, "row is locked and not terminal"
            await _audit(conn, row["tenant_id"], task_id, requested_by, "task.cancelled",
                         reason, row["status"])
            return Cancelled(change)
        request_id = uuid.uuid4()
        inserted = await conn.fetchrow(
            "INSERT INTO cancellation_requests (request_id, task_id, tenant_id, reason, "
            "requested_by) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (task_id) DO NOTHING "
            "RETURNING request_id",
            request_id, uuid.UUID(task_id), row["tenant_id"], _DETECTORS.text(reason),
            requested_by,
        )
        if inserted is not None:
            await _audit(conn, row["tenant_id"], task_id, requested_by, "task.cancel_requested",
                         reason, row["status"])
        stored = await conn.fetchrow(
            "SELECT request_id, task_id, tenant_id, reason, requested_by, requested_at "
            "FROM cancellation_requests WHERE task_id = $1", uuid.UUID(task_id),
        )
    return Requested(cancellation_from_row(stored), new=inserted is not None)


async def _with_the_executor(conn: asyncpg.Connection, task_id: str) -> bool:
    """Whether the executor made the task's last status change (so it ran the plan up to a
    person's hand-over; the caller holds the task's row lock, so that change is the last)."""
    return await conn.fetchval(
        "SELECT service = 'executor' FROM task_status_history WHERE task_id = $1 "
        "ORDER BY seq DESC LIMIT 1", uuid.UUID(task_id)) is True


async def _audit(conn: asyncpg.Connection, tenant_id: str, task_id: str, requested_by: str,
                 action: str, reason: str, from_status: str) -> None:
    """The caller's action in the tenant's chain; free text enters it as a hash only."""
    await audit_append(conn, tenant_id, requested_by, action,
                       {"from_status": from_status,
                        "reason_sha256": digest(reason) if reason else ""},
                       task_id=task_id, writer="ingest")


__all__ = ["AlreadyFinished", "Cancelled", "EXECUTING_STAGES", "Outcome", "Requested",
           "cancel", "cancellation_from_row"]
