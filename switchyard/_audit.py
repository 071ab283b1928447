"""The audit trail: append-only entries in PostgreSQL, hash-chained per tenant and writer.

Every decision, executed step, compensation, human verdict (and review expiry, default action
or withdrawal), operator action (a cancellation, a re-drive, a breaker reset) and retention
purge is appended with :func:`append` (a stream processor's whole batch with
:func:`append_many`) inside the transaction that makes the change, so the trail and the system
of record cannot disagree. Configuration is not audited here: it comes from settings and the
policy file, which change with a deployment. :func:`verify` recomputes every chain and names
the first entry whose content or link no longer matches.

Each tenant has one chain per writer (``ingest``, ``decision``, ``executor``, ``review``,
``retention``; :data:`WRITERS`), not one for all: a service appends a batch while holding its
own chain's lock, so the four services never queue behind each other's transactions for one
tenant, and replicas of one service queue only behind each other. A writer's chain is as
tamper-evident as a single chain was; entries of one task across writers are ordered by time
(:func:`task_story`). Entries written before chains were split (migration 0024) form each
tenant's chain ``""`` and verify as they did.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

GENESIS = "0" * 64
WRITERS = ("ingest", "decision", "executor", "review", "retention")
"""The chains of a tenant: who may append (a writer not listed is refused)."""


def canonical(tenant_id: str, seq: int, occurred_at: datetime, actor: str, action: str,
              task_id: str | None, detail: Mapping[str, Any], writer: str = "") -> bytes:
    """The bytes an entry's hash covers: stable key order, UTC microsecond timestamp. The
    writer is covered too (moving an entry to another chain breaks it), except in the chains
    written before there were writers (``""``), whose hashes did not cover one."""
    content: dict[str, Any] = {
        "tenant_id": tenant_id, "seq": seq, "occurred_at": occurred_at.isoformat(),
        "actor": actor, "action": action, "task_id": task_id, "detail": detail}
    if writer:
        content["writer"] = writer
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str).encode()


def chain_hash(prev_hash: str, content: bytes) -> str:
    return hashlib.sha256(prev_hash.encode() + b"\n" + content).hexdigest()


def digest(data: bytes | str) -> str:
    """What the trail keeps of raw input: its hash, never the data itself."""
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


@dataclass(frozen=True)
class Entry:
    """One entry for :func:`append_many`."""

    tenant_id: str
    actor: str
    action: str
    detail: Mapping[str, Any]
    task_id: str | None = None


async def append(conn: asyncpg.Connection, tenant_id: str, actor: str, action: str,
                 detail: Mapping[str, Any], task_id: str | None = None, *,
                 writer: str) -> str:
    """Append one entry to the tenant's chain of ``writer`` (caller's transaction); returns
    its hash."""
    return (await append_many(conn, [Entry(tenant_id, actor, action, detail, task_id)],
                              writer=writer))[0]


async def append_many(conn: asyncpg.Connection, entries: Sequence[Entry], *,
                      writer: str) -> list[str]:
    """Append ``entries`` in their order, each to its tenant's chain of ``writer``, in three
    statements whatever their number: lock the chains, read their heads, insert every entry.
    Returns the entries' hashes in the same order.

    A stream processor appends a whole batch's entries at once, so a chain is locked once per
    batch, not once per task. The locks are per tenant and writer (other tenants and other
    services append in parallel), taken in tenant order (two batches cannot deadlock on them)
    and held to the end of the caller's transaction: append last, just before it commits.
    Inside the caller's transaction no savepoint is added (a failure aborts that transaction
    anyway); called outside one, it opens its own.
    """
    if writer not in WRITERS:
        raise ValueError(f"unknown audit writer {writer!r}; one of {', '.join(WRITERS)}")
    if not entries:
        return []
    if not conn.is_in_transaction():
        async with conn.transaction():
            return await _append_many(conn, entries, writer)
    return await _append_many(conn, entries, writer)


async def _append_many(conn: asyncpg.Connection, entries: Sequence[Entry],
                       writer: str) -> list[str]:
    tenants = sorted({e.tenant_id for e in entries})
    # The lock is a statement of its own: the read below needs a snapshot taken after every
    # lock is held. unnest yields the sorted array in order, so the locks follow it.
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtext('audit:' || $2 || ':' || t)) "
        "FROM unnest($1::text[]) t", tenants, writer)
    heads = {row["tenant_id"]: row for row in await conn.fetch(
        "SELECT t.tenant_id, l.seq, l.entry_hash, "
        "date_trunc('microseconds', clock_timestamp()) AS now "
        "FROM unnest($1::text[]) t(tenant_id) LEFT JOIN LATERAL (SELECT seq, entry_hash "
        "FROM audit_log WHERE tenant_id = t.tenant_id AND writer = $2 "
        "ORDER BY seq DESC LIMIT 1) l ON true",
        tenants, writer)}
    chain = {tenant: ((row["seq"] or 0), row["entry_hash"] or GENESIS)
             for tenant, row in heads.items()}
    columns: tuple[list[Any], ...] = ([], [], [], [], [], [], [], [], [])
    hashes: list[str] = []
    for entry in entries:
        head_seq, prev_hash = chain[entry.tenant_id]
        seq, occurred_at = head_seq + 1, heads[entry.tenant_id]["now"]
        detail_json = json.loads(json.dumps(dict(entry.detail), default=str))
        entry_hash = chain_hash(prev_hash, canonical(
            entry.tenant_id, seq, occurred_at, entry.actor, entry.action, entry.task_id,
            detail_json, writer))
        chain[entry.tenant_id] = (seq, entry_hash)
        hashes.append(entry_hash)
        for column, value in zip(columns, (
                entry.tenant_id, seq, occurred_at, entry.actor, entry.action,
                uuid.UUID(entry.task_id) if entry.task_id else None, json.dumps(detail_json),
                prev_hash, entry_hash)):
            column.append(value)
    await conn.execute(
        "INSERT INTO audit_log (tenant_id, writer, seq, occurred_at, actor, action, task_id, "
        "detail, prev_hash, entry_hash) SELECT tenant_id, $10, seq, occurred_at, actor, action, "
        "task_id, detail::jsonb, prev_hash, entry_hash FROM unnest($1::text[], $2::bigint[], "
        "$3::timestamptz[], $4::text[], $5::text[], $6::uuid[], $7::text[], $8::text[], "
        "$9::text[]) AS e(tenant_id, seq, occurred_at, actor, action, task_id, detail, "
        "prev_hash, entry_hash)", *columns, writer)
    return hashes


@dataclass(frozen=True)
class Broken:
    entry_id: int
    tenant_id: str
    writer: str
    seq: int
    problem: str


@dataclass(frozen=True)
class Verification:
    entries: int
    tenants: int
    chains: int
    broken: Broken | None


async def verify(conn: asyncpg.Connection, tenant_id: str | None = None) -> Verification:
    """Walk each chain (tenant and writer) in order; stop at the first entry that does not
    check out."""
    chains = [(r["tenant_id"], r["writer"]) for r in await conn.fetch(
        "SELECT DISTINCT tenant_id, writer FROM audit_log "
        "WHERE $1::text IS NULL OR tenant_id = $1 ORDER BY tenant_id, writer", tenant_id)]
    tenants = len({tenant for tenant, _ in chains})
    checked = 0
    for tenant, writer in chains:
        prev_hash, expected_seq = GENESIS, 1
        async with conn.transaction():
            cursor = conn.cursor(
                "SELECT entry_id, seq, occurred_at, actor, action, task_id, detail, prev_hash, "
                "entry_hash FROM audit_log WHERE tenant_id = $1 AND writer = $2 ORDER BY seq",
                tenant, writer)
            async for row in cursor:
                checked += 1
                problem = ""
                if row["seq"] != expected_seq:
                    problem = f"sequence gap: expected {expected_seq}, found {row['seq']}"
                elif row["prev_hash"] != prev_hash:
                    problem = "link broken: prev_hash does not match the previous entry"
                else:
                    task_id = str(row["task_id"]) if row["task_id"] else None
                    recomputed = chain_hash(prev_hash, canonical(
                        tenant, row["seq"], row["occurred_at"], row["actor"], row["action"],
                        task_id, json.loads(row["detail"]), writer))
                    if recomputed != row["entry_hash"]:
                        problem = "content changed: hash does not match the entry"
                if problem:
                    return Verification(checked, tenants, len(chains), Broken(
                        row["entry_id"], tenant, writer, row["seq"], problem))
                prev_hash, expected_seq = row["entry_hash"], expected_seq + 1
    return Verification(checked, tenants, len(chains), None)


async def task_story(conn: asyncpg.Connection, task_id: str) -> list[asyncpg.Record]:
    """The task's entries, oldest first (``switchyard audit show``, GetTaskTimeline)."""
    return await conn.fetch(
        "SELECT entry_id, seq, occurred_at, actor, action, detail, entry_hash FROM audit_log "
        "WHERE task_id = $1 ORDER BY occurred_at, entry_id", uuid.UUID(task_id))
