"""Task status in the system of record, and its mirror on the compacted status topic.

Every stage moves a task through :func:`transition` (or a batch of tasks through
:func:`transition_many`): one row update plus one history row in PostgreSQL, in the caller's
transaction, yielding the ``StatusEvent`` to publish afterwards.
Terminal tasks never move again, so a late or redelivered record cannot resurrect a task.
Consumers dedupe in the tables their effects live in (one model decision per task, one
execution row per step, one review item per escalation), so redelivery is harmless.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from google.protobuf.timestamp_pb2 import Timestamp

from switchyard._kafka import Producer
from switchyard._topics import TASK_STATUS
from switchyard.v1 import StatusEvent, TaskStage, TaskStatus

#: The one definition of "finished": a task in one of these never moves again, and is never
#: admitted to or shown in a review queue.
TERMINAL = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})

#: :data:`TERMINAL` as an SQL list literal, ``('CANCELLED', 'FAILED', 'SUCCEEDED')``, for
#: ``status IN {TERMINAL_SQL}`` / ``NOT IN``. Inlined into the query text (not a bind
#: parameter) so that PostgreSQL can prove a query's predicate implies a partial index's
#: (``tasks_unfinished``, ``tasks_purge_candidates``): it compares constant lists element by
#: element, so the order here need not match the migrations'. tests/unit/test_terminal.py
#: checks those migrations' predicates name exactly :data:`TERMINAL`.
TERMINAL_SQL = "(" + ", ".join(f"'{name}'" for name in sorted(TERMINAL)) + ")"

#: Terminal, but not a success: a task that ends here keeps no downstream effect.
UNSUCCESSFUL = TERMINAL - {"SUCCEEDED"}


def rejected(rule: str) -> tuple[str, str, str]:
    """(status, stage, reason) of a task whose decision is REJECT, whoever decided (models,
    policy, a reviewer, a review queue's default action): FAILED, "rejected:<rule>".
    CANCELLED is only ever a client's cancellation. The rule is documented with TaskStatus
    in protos/switchyard/v1/task.proto."""
    return "FAILED", "DONE", f"rejected:{rule}"


def is_terminal(status: int) -> bool:
    """Whether a ``TaskStatus`` enum value is terminal (see :data:`TERMINAL`)."""
    return status_name(status) in TERMINAL if status else False


def status_name(status: int) -> str:
    return TaskStatus.Name(status).removeprefix("TASK_STATUS_")


def stage_name(stage: int) -> str:
    return TaskStage.Name(stage).removeprefix("TASK_STAGE_")


def status_value(name: str) -> int:
    return TaskStatus.Value(f"TASK_STATUS_{name}")


def stage_value(name: str) -> int:
    return TaskStage.Value(f"TASK_STAGE_{name}")


def timestamp(dt: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(dt)
    return ts


@dataclass(frozen=True)
class Transition:
    event: StatusEvent
    previous_status: str


@dataclass(frozen=True)
class Move:
    """One task's status change in a :func:`transition_many` batch."""

    task_id: str
    status: str
    stage: str
    reason: str = ""
    detail: str = ""


async def transition(conn: asyncpg.Connection, task_id: str, status: str, stage: str,
                     service: str, reason: str = "", detail: str = "") -> Transition | None:
    """Move a task to ``status``/``stage``; None if it is terminal already (or unknown)."""
    moved = await transition_many(conn, [Move(task_id, status, stage, reason, detail)], service)
    return moved.get(task_id)


async def transition_many(conn: asyncpg.Connection, moves: Sequence[Move],
                          service: str) -> dict[str, Transition]:
    """Move many tasks in one statement (one round trip for a whole batch): every row update
    and its history row. Returns the transitions that happened, by task id; a task that is
    terminal already (or unknown) is absent. Rows are locked in task id order, so two batches
    over the same tasks cannot deadlock. A task may appear once in ``moves``."""
    if not moves:
        return {}
    ids = [uuid.UUID(m.task_id) for m in moves]
    if len(set(ids)) != len(ids):
        raise ValueError("a task may move once per batch")
    rows = await conn.fetch(
        """
        WITH wanted AS (
            SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $7::text[])
                AS w(task_id, status, stage, reason, detail)),
        prev AS (SELECT t.task_id, t.status FROM tasks t
                  WHERE t.task_id = ANY($1::uuid[]) ORDER BY t.task_id FOR UPDATE),
        moved AS (
            UPDATE tasks t
               SET status = w.status, stage = w.stage, reason = w.reason,
                   status_seq = t.status_seq + 1, updated_at = now()
              FROM wanted w JOIN prev p ON p.task_id = w.task_id
             WHERE t.task_id = w.task_id AND NOT (p.status = ANY($5::text[]))
            RETURNING t.task_id, t.tenant_id, t.idempotency_key, t.status_seq, t.updated_at,
                      w.status, w.stage, w.reason, w.detail, p.status AS previous),
        history AS (
            INSERT INTO task_status_history (task_id, seq, status, stage, reason, detail,
                                             service, occurred_at)
            SELECT task_id, status_seq, status, stage, reason, detail, $6, updated_at
              FROM moved)
        SELECT task_id, tenant_id, idempotency_key, status_seq, updated_at, previous FROM moved
        """,
        ids, [m.status for m in moves], [m.stage for m in moves], [m.reason for m in moves],
        list(TERMINAL), service, [m.detail for m in moves],
    )
    by_id = dict(zip(ids, moves))
    moved: dict[str, Transition] = {}
    for row in rows:
        move = by_id[row["task_id"]]
        event = StatusEvent(
            task_id=move.task_id, tenant_id=row["tenant_id"], status=status_value(move.status),
            stage=stage_value(move.stage), reason=move.reason, detail=move.detail,
            occurred_at=timestamp(row["updated_at"]), sequence=row["status_seq"],
            service=service, idempotency_key=row["idempotency_key"],
        )
        moved[move.task_id] = Transition(event=event, previous_status=row["previous"])
    return moved


async def publish_status(producer: Producer, event: StatusEvent) -> None:
    await producer.send(TASK_STATUS, event.task_id, event)
