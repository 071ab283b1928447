"""Ingest's writes to the system of record: accept a task exactly once per idempotency key."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from switchyard.storage import PLAINTEXT, TASK_ENVELOPE, PayloadCodec
from switchyard.tasks import stage_name, status_name
from switchyard.telemetry import stored_trace_context
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
                 service: str = "ingest", callback_url: str = "",
                 codec: PayloadCodec = PLAINTEXT,
                 metadata_hashes: Sequence[str] = (), earlier_sha256: str = "") -> Accepted:
    """Insert the task or return the one that owns its idempotency key (the same payload:
    ``payload_sha256``, or ``earlier_sha256`` as an older rule hashed it).

    The envelope is stored sealed by ``codec`` (encryption at rest when keys are configured);
    ``metadata_hashes`` (``listing.metadata_hashes``) are what ListTasks' metadata filter
    matches.

    Concurrent duplicates are safe: the unique (tenant_id, idempotency_key) constraint makes
    the second INSERT wait for the first and then do nothing, and the follow-up SELECT sees
    the winner's row.
    """
    async with conn.transaction():
        row = await conn.fetchrow(
            """
            INSERT INTO tasks (task_id, tenant_id, idempotency_key, payload_sha256, kind, source,
                               envelope, status, stage, callback_url, trace_context,
                               metadata_hashes)
            VALUES ($1, $2, $3, $4, $5, $6, $7, 'QUEUED', 'INGESTED', NULLIF($8, ''), $9::jsonb,
                    $10::text[])
            ON CONFLICT (tenant_id, idempotency_key) DO NOTHING
            RETURNING task_id, created_at
            """,
            uuid.UUID(envelope.task_id), envelope.tenant_id, envelope.idempotency_key,
            payload_sha256, envelope.kind or envelope.document.kind_hint,
            TaskSource.Name(envelope.source),
            codec.seal(envelope.task_id, envelope.SerializeToString(), TASK_ENVELOPE),
            callback_url, stored_trace_context(), list(metadata_hashes),
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
    if not _same_payload(existing["payload_sha256"], payload_sha256, earlier_sha256):
        raise IdempotencyConflict(task_id)
    return Accepted(task_id, existing["status"], existing["stage"], False,
                    existing["published_at"] is not None, existing["created_at"])


def _same_payload(stored: str, payload_sha256: str, earlier_sha256: str) -> bool:
    """Whether the task that owns a key holds this submission: its stored hash is the
    submission's, by the current rule or (``earlier_sha256``, when given) the earlier one."""
    return stored == payload_sha256 or bool(earlier_sha256) and stored == earlier_sha256


@dataclass(frozen=True)
class NewTask:
    """One submission for :func:`accept_many`."""

    envelope: TaskEnvelope
    payload_sha256: str
    callback_url: str = ""
    #: ``listing.metadata_hashes`` of the envelope's metadata (ListTasks' metadata filter).
    metadata_hashes: Sequence[str] = ()
    #: The trace the submission arrived in, as ``stored_trace_context`` gives it (a batch of
    #: intake records: each its own); empty: the caller's current one.
    trace_context: str = ""
    #: The payload hash as an older rule computed it (``domain.earlier_payload_sha256``): a
    #: task stored under it is the same submission too.
    earlier_sha256: str = ""


async def accept_many(conn: asyncpg.Connection | asyncpg.Pool, tasks: Sequence[NewTask],
                      service: str = "ingest", codec: PayloadCodec = PLAINTEXT
                      ) -> list[Accepted | IdempotencyConflict]:
    """:func:`accept` for a batch in two statements instead of four per task; one result per
    task, conflicts returned rather than raised.

    The tasks and their first history rows go in one statement (atomic, like ``accept``'s
    transaction); rows are inserted in (tenant, key) order so concurrent batches take the
    unique index's locks in the same order and cannot deadlock. A key already taken (by
    another call, or earlier in this batch) is answered from the row that owns it, exactly
    as ``accept`` does.
    """
    if not tasks:
        return []
    rows = await conn.fetch(
        """
        WITH input AS (
            SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
                                 $6::text[], $7::bytea[], $8::text[], $11::text[], $12::text[])
                   WITH ORDINALITY AS i(task_id, tenant_id, idempotency_key, payload_sha256,
                                        kind, source, envelope, callback_url, metadata_hashes,
                                        trace_context, ord)),
        created AS (
            INSERT INTO tasks (task_id, tenant_id, idempotency_key, payload_sha256, kind,
                               source, envelope, status, stage, callback_url, trace_context,
                               metadata_hashes)
            SELECT task_id, tenant_id, idempotency_key, payload_sha256, kind, source, envelope,
                   'QUEUED', 'INGESTED', NULLIF(callback_url, ''),
                   COALESCE(NULLIF(trace_context, ''), $10)::jsonb,
                   string_to_array(metadata_hashes, ' ')
              FROM input ORDER BY tenant_id, idempotency_key, ord
            ON CONFLICT (tenant_id, idempotency_key) DO NOTHING
            RETURNING task_id, created_at),
        history AS (
            INSERT INTO task_status_history (task_id, seq, status, stage, service, occurred_at)
            SELECT task_id, 1, 'QUEUED', 'INGESTED', $9, created_at FROM created)
        SELECT task_id, created_at FROM created
        """,
        [uuid.UUID(t.envelope.task_id) for t in tasks],
        [t.envelope.tenant_id for t in tasks],
        [t.envelope.idempotency_key for t in tasks],
        [t.payload_sha256 for t in tasks],
        [t.envelope.kind or t.envelope.document.kind_hint for t in tasks],
        [TaskSource.Name(t.envelope.source) for t in tasks],
        [codec.seal(t.envelope.task_id, t.envelope.SerializeToString(), TASK_ENVELOPE)
         for t in tasks],
        [t.callback_url for t in tasks],
        service, stored_trace_context(),  # one request: one trace (unless a task has its own)
        # one text per task (unnest cannot take an array per row): hex hashes, space-joined
        [" ".join(t.metadata_hashes) for t in tasks],
        [t.trace_context for t in tasks],
    )
    created = {str(r["task_id"]): r["created_at"] for r in rows}
    results: list[Accepted | IdempotencyConflict | None] = [
        Accepted(t.envelope.task_id, "QUEUED", "INGESTED", True, False,
                 created[t.envelope.task_id]) if t.envelope.task_id in created else None
        for t in tasks]
    taken = [t for t, r in zip(tasks, results) if r is None]
    if taken:
        owners = {(r["tenant_id"], r["idempotency_key"]): r for r in await conn.fetch(
            "SELECT t.task_id, t.tenant_id, t.idempotency_key, t.payload_sha256, t.status, "
            "t.stage, t.published_at, t.created_at FROM tasks t "
            "JOIN unnest($1::text[], $2::text[]) AS k(tenant_id, idempotency_key) "
            "USING (tenant_id, idempotency_key)",
            [t.envelope.tenant_id for t in taken], [t.envelope.idempotency_key for t in taken])}
        for index, (task, result) in enumerate(zip(tasks, results)):
            if result is not None:
                continue
            owner = owners.get((task.envelope.tenant_id, task.envelope.idempotency_key))
            assert owner is not None, "conflicting row vanished"
            if not _same_payload(owner["payload_sha256"], task.payload_sha256,
                                 task.earlier_sha256):
                results[index] = IdempotencyConflict(str(owner["task_id"]))
            else:
                results[index] = Accepted(str(owner["task_id"]), owner["status"],
                                          owner["stage"], False,
                                          owner["published_at"] is not None,
                                          owner["created_at"])
    return [r for r in results if r is not None]


async def mark_published(pool: asyncpg.Pool, task_ids: Sequence[str]) -> None:
    """Record that the broker acknowledged these envelopes; the reconciler skips them now."""
    if task_ids:
        await pool.execute(
            "UPDATE tasks SET published_at = now() "
            "WHERE task_id = ANY($1::uuid[]) AND published_at IS NULL",
            [uuid.UUID(t) for t in task_ids],
        )


async def find_by_key(pool: asyncpg.Pool, tenant_id: str, idempotency_key: str,
                      payload_sha256: str, earlier_sha256: str = "") -> Accepted | None:
    """The task a repeated submission names, read-only (used while refusing new work)."""
    row = await pool.fetchrow(
        "SELECT task_id, payload_sha256, status, stage, published_at, created_at FROM tasks "
        "WHERE tenant_id = $1 AND idempotency_key = $2", tenant_id, idempotency_key,
    )
    if row is None:
        return None
    if not _same_payload(row["payload_sha256"], payload_sha256, earlier_sha256):
        raise IdempotencyConflict(str(row["task_id"]))
    return Accepted(str(row["task_id"]), row["status"], row["stage"], False,
                    row["published_at"] is not None, row["created_at"])


#: What :func:`load_task` and :func:`load_queued` read of a task.
_TASK_ROW = ("SELECT task_id, tenant_id, envelope, status, stage, reason, status_seq, "
             "created_at, updated_at FROM tasks")


async def load_task(conn: asyncpg.Connection | asyncpg.Pool, task_id: str) -> asyncpg.Record | None:
    """The task's row; ``envelope`` is as stored (sealed): open it with
    :func:`open_envelope`."""
    try:
        key = uuid.UUID(task_id)
    except ValueError:
        return None
    return await conn.fetchrow(f"{_TASK_ROW} WHERE task_id = $1", key)


async def load_queued(conn: asyncpg.Connection | asyncpg.Pool, task_ids: Sequence[str]
                      ) -> dict[str, asyncpg.Record]:
    """The rows of those of ``task_ids`` still QUEUED, by task id, in one statement (what
    :func:`load_task` reads of each); ``envelope`` as stored (sealed)."""
    rows = await conn.fetch(f"{_TASK_ROW} WHERE task_id = ANY($1::uuid[]) AND status = 'QUEUED'",
                            [uuid.UUID(t) for t in task_ids])
    return {str(row["task_id"]): row for row in rows}


def open_envelope(codec: PayloadCodec, row: asyncpg.Record) -> TaskEnvelope:
    """The task envelope of a ``tasks`` row (with ``task_id`` and ``envelope`` columns)."""
    return TaskEnvelope.FromString(codec.open(row["task_id"], row["envelope"], TASK_ENVELOPE))


__all__ = ["Accepted", "IdempotencyConflict", "NewTask", "accept", "accept_many",
           "find_by_key", "load_queued", "load_task",
           "mark_published", "open_envelope", "stage_name", "status_name"]
