"""The right to erasure: a student's consents, and every derived trace ingest holds, removed.

One transaction: the student's pseudonym under every term key the tenant has, the
student's consents deleted, the tenant's alert tasks about one of those pseudonyms purged
(tasks the decision service submits on the intake topic carry ``metadata.subject`` = the
pseudonym; they are found through ListTasks' keyed metadata hashes and stripped the way
``switchyard purge`` strips a task, and lose the ``subject`` entry and its hash as well), a ``signal_erasures`` row, an audit entry (counts and a
keyed hash of the reference, never the reference), and a :class:`SubjectErasure` on
``subject-erasures`` so the other services remove what they hold. The event is published
before the commit: if the commit then fails the request fails, and repeating it publishes
again (consumers delete idempotently).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
from google.protobuf.timestamp_pb2 import Timestamp

from services.ingest.listing import metadata_hashes
from services.ingest.signals.consent import subject_hash
from services.ingest.signals.pseudonyms import TermKeys, pseudonym
from switchyard.audit import append as audit_append
from switchyard.documents import BlobStore
from switchyard.messaging import SUBJECT_ERASURES, TENANT_HEADER, Producer
from switchyard.storage import (
    PayloadCodec,
    delete_blobs,
    forget_metadata,
    forget_raw_letters,
    strip_tasks,
)
from switchyard.v1 import SubjectErasure

__all__ = ["ALERT_SUBJECT_KEY", "Erased", "erase_subject"]

#: The metadata key alert tasks name their student's pseudonym under.
ALERT_SUBJECT_KEY = "subject"


@dataclass(frozen=True)
class Erased:
    erasure_id: str
    pseudonyms: list[str]
    consents_removed: int
    tasks_purged: int


async def _forget_subject(conn: asyncpg.Connection, codec: PayloadCodec, task_ids: list[Any],
                          hashes: list[str]) -> None:
    """Purge keeps a task's metadata (redacted) and its keyed hashes; an erasure also removes
    the pseudonym: the ``subject`` entry of the envelope and of the review items' copies of
    it, and its hash."""
    await forget_metadata(conn, codec, task_ids, ALERT_SUBJECT_KEY)
    await conn.execute(
        "UPDATE tasks SET metadata_hashes = ARRAY(SELECT h FROM unnest(metadata_hashes) h "
        "WHERE h <> ALL($2::text[])) WHERE task_id = ANY($1::uuid[])", task_ids, hashes)


async def erase_subject(pool: asyncpg.Pool, producer: Producer, codec: PayloadCodec,
                        keys: TermKeys, hash_key: bytes, blobs: BlobStore, tenant_id: str,
                        subject_ref: str, actor: str) -> Erased:
    """Erase one student of ``tenant_id`` (see the module's docstring)."""
    erasure_id = uuid.uuid4()
    hashed = subject_hash(hash_key, tenant_id, subject_ref)
    async with pool.acquire() as conn, conn.transaction():
        # one erasure of a student at a time (a concurrent grant waits on the row locks)
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('erasure:' || $1))", hashed)
        term_keys = await keys.all_of(conn, tenant_id)
        pseudonyms = sorted(pseudonym(key, tenant_id, subject_ref)
                            for key in term_keys.values())
        removed = await conn.fetchval(
            "WITH gone AS (DELETE FROM signal_consents WHERE tenant_id = $1 "
            "AND subject_hash = $2 RETURNING 1) SELECT count(*) FROM gone", tenant_id, hashed)
        wanted = [metadata_hashes(hash_key, tenant_id, [(ALERT_SUBJECT_KEY, p)])[0]
                  for p in pseudonyms]
        task_ids = [row["task_id"] for row in await conn.fetch(
            "SELECT task_id FROM tasks WHERE tenant_id = $1 AND metadata_hashes && $2::text[]",
            tenant_id, wanted)] if wanted else []
        stripped = await strip_tasks(conn, codec, tenant_id, task_ids)
        await _forget_subject(conn, codec, task_ids, wanted)
        # refused frames kept in dead letters may name the student: the tenant's go
        letters = await forget_raw_letters(conn, tenant_id)
        await conn.execute(
            "INSERT INTO signal_erasures (erasure_id, tenant_id, subject_hash, pseudonyms, "
            "consents_removed, tasks_purged, requested_by) VALUES ($1,$2,$3,$4,$5,$6,$7)",
            erasure_id, tenant_id, hashed, len(pseudonyms), removed, stripped.tasks, actor)
        await audit_append(conn, tenant_id, actor, "subject.erased", {
            "erasure_id": str(erasure_id), "subject_hash": hashed,
            "terms": sorted(term_keys), "pseudonyms": len(pseudonyms),
            "consents_removed": removed, "tasks_purged": stripped.tasks,
            "raw_letters_purged": letters,
            "task_ids": [str(t) for t in task_ids]}, writer="ingest")
        requested_at = Timestamp()
        requested_at.GetCurrentTime()
        await producer.send(SUBJECT_ERASURES, tenant_id, SubjectErasure(
            erasure_id=str(erasure_id), tenant_id=tenant_id, pseudonyms=pseudonyms,
            requested_at=requested_at), {TENANT_HEADER: tenant_id})
    await delete_blobs(blobs, stripped.blobs)
    return Erased(str(erasure_id), pseudonyms, removed, stripped.tasks)
