"""Ingest's writes to the system of record: accept a task exactly once per idempotency key."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from switchyard._taskstore import stage_name, status_name
from switchyard.v1 import TaskEnvelope, TaskSource


class IdempotencyConflict(Exception):
    """The (tenant, key) already names a task with a different payload."""

    def __init__(self, task_id: str) -> None:
        super().__init__(
            f"idempotency key already used for task {task_id} with a different payload; "
            "use a new key for new work"
        )
        self.task_id = task_id


@dataclass(frozen=True)
class Accepted:
    task_id: str
    status: str
    stage: str
    created: bool
    published: bool
    created_at: datetime


async def accept(conn: asyncpg.Connection, envelope: TaskEnvelope, payload_sha256: str,
                 service: str = "ingest", callback_url: str = "") -> Accepted:
    """Insert the task or return the one that owns its idempotency key.

    Concurrent duplicates are safe: the unique (tenant_id, idempotency_key) constraint makes
    the second INSERT wait for the first and then do nothing, and the follow-up SELECT sees
    the winner's row.
    """
    async with conn.transaction():
        row = await conn.fetchrow(
            """
            INSERT INTO tasks (task_id, tenant_id, idempotency_key, payload_sha256, kind, source,
                               envelope, status, stage, callback_url)
            VALUES ($1, $2, $3, $4, $5, $6, $7, 'QUEUED', 'INGESTED', NULLIF($8, ''))
            ON CONFLICT (tenant_id, idempotency_key) DO NOTHING
            RETURNING task_id, created_at
            """,
            uuid.UUID(envelope.task_id), envelope.tenant_id, envelope.idempotency_key,
            payload_sha256, envelope.kind or envelope.document.kind_hint,
            TaskSource.Name(envelope.source), envelope.SerializeToString(), callback_url,
        )
        if row is not None:
            await conn.execute(
                "INSERT INTO task_status_history (task_id, seq, status, stage, service, "
                "occurred_at) VALUES ($1, 1, 'QUEUED', 'INGESTED', $2, $3)",
                row["task_id"], service, row["created_at"],
            )
            return Accepted(envelope.task_id, "QUEUED", "INGESTED", True, False,
                            row["created_at"])
    existing = await conn.fetchrow(
        "SELECT task_id, payload_sha256, status, stage, published_at, created_at FROM tasks "
        "WHERE tenant_id = $1 AND idempotency_key = $2",
        envelope.tenant_id, envelope.idempotency_key,
    )
    assert existing is not None, "conflicting row vanished"
    task_id = str(existing["task_id"])
    if existing["payload_sha256"] != payload_sha256:
        raise IdempotencyConflict(task_id)
    return Accepted(task_id, existing["status"], existing["stage"], False,
                    existing["published_at"] is not None, existing["created_at"])


async def mark_published(pool: asyncpg.Pool, task_ids: Sequence[str]) -> None:
    """Record that the broker acknowledged these envelopes; the reconciler skips them now."""
    if task_ids:
        await pool.execute(
            "UPDATE tasks SET published_at = now() "
            "WHERE task_id = ANY($1::uuid[]) AND published_at IS NULL",
            [uuid.UUID(t) for t in task_ids],
        )


async def find_by_key(pool: asyncpg.Pool, tenant_id: str, idempotency_key: str,
                      payload_sha256: str) -> Accepted | None:
    """The task a repeated submission names, read-only (used while refusing new work)."""
    row = await pool.fetchrow(
        "SELECT task_id, payload_sha256, status, stage, published_at, created_at FROM tasks "
        "WHERE tenant_id = $1 AND idempotency_key = $2", tenant_id, idempotency_key,
    )
    if row is None:
        return None
    if row["payload_sha256"] != payload_sha256:
        raise IdempotencyConflict(str(row["task_id"]))
    return Accepted(str(row["task_id"]), row["status"], row["stage"], False,
                    row["published_at"] is not None, row["created_at"])


async def load_task(conn: asyncpg.Connection | asyncpg.Pool, task_id: str) -> asyncpg.Record | None:
    try:
        key = uuid.UUID(task_id)
    except ValueError:
        return None
    return await conn.fetchrow(
        "SELECT task_id, tenant_id, envelope, status, stage, reason, status_seq, created_at, "
        "updated_at FROM tasks WHERE task_id = $1", key,
    )


__all__ = ["Accepted", "IdempotencyConflict", "accept", "find_by_key", "load_task",
           "mark_published", "stage_name", "status_name"]
