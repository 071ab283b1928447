"""Right to erasure and retention of the engagement tables.

Erasure: a ``SubjectErasure`` on ``subject-erasures`` names a student's pseudonyms (one per
term); their per-student windows and their alerts are deleted with an audit entry per erasure
(counts only: the audit trail does not keep the pseudonyms), a batch of erasures in one
transaction of two deletes and one audit append. Class-level windows never name a student and
stay.

Retention: per-student windows and alerts are deleted after ``signal_subject_retention_days``;
class-level windows (and the marks of sessions that old) after
``signal_class_retention_days``. The decision service runs :func:`purge_engagement` in a
supervised loop; ``switchyard purge`` runs it too.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import asyncpg

from switchyard.audit import Entry, append_many
from switchyard.messaging import Record, RejectRecord, decode_batch
from switchyard.v1 import SubjectErasure

log = logging.getLogger(__name__)
#: How often the decision service applies the engagement retention.
RETENTION_INTERVAL_S = 3600.0


async def erase_subjects(conn: asyncpg.Connection, erasures: Sequence[SubjectErasure]
                         ) -> list[dict[str, int]]:
    """Delete the erasures' per-student rows and alerts, in one transaction; each erasure
    audited with what it deleted (a pseudonym named twice counts for its first erasure).
    Idempotent. Returns each erasure's counts, in order."""
    pairs = sorted({(e.tenant_id, p) for e in erasures for p in e.pseudonyms})
    tenants, subjects = [t for t, _ in pairs], [s for _, s in pairs]
    deleted: dict[str, Counter[tuple[str, str]]] = {}
    async with conn.transaction():
        for table, key in (("engagement_subject_windows", "subject_windows"),
                           ("engagement_alerts", "alerts")):
            deleted[key] = Counter((r["tenant_id"], r["subject"]) for r in await conn.fetch(
                f"DELETE FROM {table} d USING unnest($1::text[], $2::text[]) AS x(t, s) "
                "WHERE d.tenant_id = x.t AND d.subject = x.s RETURNING d.tenant_id, d.subject",
                tenants, subjects))
        counted: set[tuple[str, str]] = set()
        all_counts = []
        for erasure in erasures:
            own = {(erasure.tenant_id, p) for p in erasure.pseudonyms} - counted
            counted |= own
            all_counts.append({key: sum(rows[pair] for pair in own)
                               for key, rows in deleted.items()})
        await append_many(conn, [
            Entry(e.tenant_id, "decision", "engagement.erased",
                  {"erasure_id": e.erasure_id, "pseudonyms": len(set(e.pseudonyms)), **counts})
            for e, counts in zip(erasures, all_counts)], writer="decision")
    return all_counts


class ErasureConsumer:
    """The ``subject-erasures`` agent of the decision service: a batch at a time."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def handle_batch(self, records: list[Record]) -> list[tuple[Record, RejectRecord]]:
        decoded, rejected = decode_batch(records, SubjectErasure)
        if decoded:
            erasures = [erasure for _, erasure in decoded]
            async with self.pool.acquire() as conn:
                counts = await erase_subjects(conn, erasures)
            for erasure, erased in zip(erasures, counts):
                log.info("erasure %s: %s", erasure.erasure_id, erased)
        return rejected


@dataclass(frozen=True)
class EngagementPurge:
    subject_windows: int
    alerts: int
    windows: int
    marks: int


async def purge_engagement(conn: asyncpg.Connection, subject_days: int,
                           class_days: int) -> EngagementPurge:
    """Delete what is past its retention (by when it was stored)."""
    subject, klass = timedelta(days=subject_days), timedelta(days=class_days)
    counts = []
    for sql, age in (
            ("DELETE FROM engagement_subject_windows WHERE created_at < now() - $1::interval",
             subject),
            ("DELETE FROM engagement_alerts WHERE raised_at < now() - $1::interval", subject),
            ("DELETE FROM engagement_windows WHERE created_at < now() - $1::interval", klass),
            ("DELETE FROM engagement_marks WHERE updated_at < now() - $1::interval", klass)):
        counts.append(int((await conn.execute(sql, age)).split()[-1]))
    return EngagementPurge(*counts)


async def retention_loop(pool: asyncpg.Pool, subject_days: int, class_days: int,
                         interval_s: float = RETENTION_INTERVAL_S) -> None:
    while True:
        async with pool.acquire() as conn:
            report = await purge_engagement(conn, subject_days, class_days)
        if any(vars(report).values()):
            log.info("engagement retention: %s", report)
        await asyncio.sleep(interval_s)


__all__ = ["RETENTION_INTERVAL_S", "EngagementPurge", "ErasureConsumer", "erase_subjects",
           "purge_engagement", "retention_loop"]
