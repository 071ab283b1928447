"""Right to erasure and retention of the engagement tables.

Erasure: a ``SubjectErasure`` on ``subject-erasures`` names a student's pseudonyms (one per
term); their per-student windows and their alerts are deleted in one transaction with an
audit entry (counts only: the audit trail does not keep the pseudonyms). Class-level windows
never name a student and stay.

Retention: per-student windows and alerts are deleted after ``signal_subject_retention_days``;
class-level windows (and the marks of sessions that old) after
``signal_class_retention_days``. The decision service runs :func:`purge_engagement` in a
supervised loop; ``switchyard purge`` runs it too.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import timedelta

import asyncpg

from switchyard.audit import append as audit_append
from switchyard.messaging import Record, decode
from switchyard.v1 import SubjectErasure

log = logging.getLogger(__name__)
#: How often the decision service applies the engagement retention.
RETENTION_INTERVAL_S = 3600.0


async def erase_subjects(conn: asyncpg.Connection, erasure: SubjectErasure) -> dict[str, int]:
    """Delete the pseudonyms' per-student rows and alerts; audited. Idempotent."""
    pseudonyms = sorted(set(erasure.pseudonyms))
    async with conn.transaction():
        windows = await conn.execute(
            "DELETE FROM engagement_subject_windows WHERE tenant_id = $1 "
            "AND subject = ANY($2::text[])", erasure.tenant_id, pseudonyms)
        alerts = await conn.execute(
            "DELETE FROM engagement_alerts WHERE tenant_id = $1 AND subject = ANY($2::text[])",
            erasure.tenant_id, pseudonyms)
        counts = {"subject_windows": int(windows.split()[-1]),
                  "alerts": int(alerts.split()[-1])}
        await audit_append(conn, erasure.tenant_id, "decision", "engagement.erased",
                           {"erasure_id": erasure.erasure_id, "pseudonyms": len(pseudonyms),
                            **counts}, writer="decision")
    return counts


class ErasureConsumer:
    """The ``subject-erasures`` agent of the decision service."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def handle(self, record: Record) -> None:
        erasure = decode(record.value, record.headers, SubjectErasure)
        async with self.pool.acquire() as conn:
            counts = await erase_subjects(conn, erasure)
        log.info("erasure %s: %s", erasure.erasure_id, counts)


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
