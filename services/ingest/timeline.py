"""GetTaskTimeline: a task's story from the system of record, oldest first.

Two sources, merged by time: ingest's ``task_status_history`` (every status change, with the
service that recorded it) and the task's entries in the hash-chained audit trail
(:func:`switchyard._audit.task_story`: decisions with their models, pack and rule; executed
and compensated steps; review verdicts, approvals, expiries and withdrawals; operator actions
such as a cancellation or a re-drive). A status change and the audit entry written in the
same transaction share that transaction's time or follow it (the audit entry takes the clock
when it is appended), so the change is listed first.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime

import asyncpg
from google.protobuf import json_format, struct_pb2

from switchyard._audit import task_story
from switchyard._taskstore import stage_value, status_value, timestamp
from switchyard.v1 import TimelineEntry, TimelineSource

#: The action name of a status change (audit entries carry their own).
STATUS_CHANGED = "status.changed"


async def entries(conn: asyncpg.Connection, task_id: str) -> list[TimelineEntry]:
    """Every status change and audit entry of the task, oldest first."""
    history = await conn.fetch(
        "SELECT seq, status, stage, reason, service, occurred_at FROM task_status_history "
        "WHERE task_id = $1 ORDER BY seq", uuid.UUID(task_id))
    audit = await task_story(conn, task_id)
    merged: list[tuple[datetime, int, int, TimelineEntry]] = []
    for row in history:
        merged.append((row["occurred_at"], 0, row["seq"], TimelineEntry(
            occurred_at=timestamp(row["occurred_at"]),
            source=TimelineSource.TIMELINE_SOURCE_STATUS,
            status=status_value(row["status"]), stage=stage_value(row["stage"]),
            reason=row["reason"], actor=row["service"], action=STATUS_CHANGED)))
    for row in audit:
        detail = struct_pb2.Struct()
        json_format.ParseDict(_as_object(row["detail"]), detail)
        merged.append((row["occurred_at"], 1, row["entry_id"], TimelineEntry(
            occurred_at=timestamp(row["occurred_at"]),
            source=TimelineSource.TIMELINE_SOURCE_AUDIT, actor=row["actor"],
            action=row["action"], detail=detail, entry_hash=row["entry_hash"])))
    merged.sort(key=lambda item: item[:3])
    return [entry for *_, entry in merged]


def _as_object(detail: object) -> dict[str, object]:
    """An audit entry's detail (jsonb, read as text) as a JSON object."""
    value = json.loads(detail) if isinstance(detail, str) else detail
    return value if isinstance(value, dict) else {"value": value}


__all__ = ["STATUS_CHANGED", "entries"]
