"""The consent registry: guardians' opt-ins per student and purpose, and ingest's view of it.

``signal_consents`` keeps one row per (tenant, student, purpose), the latest change winning.
The student's reference, the guardian's and the group are personal: sealed with the payload
codec; the reference is also kept as a keyed hash (:func:`subject_hash`) so a student's rows
are found without opening every row.

:class:`ConsentView` is the in-memory copy the signal processor consults for every frame (a
database query per frame would not keep up). :meth:`ConsentView.refresh` reads only what
changed: rows with ``updated_at`` after the last refresh (with an overlap, so a transaction
that committed late is not missed; applying a row twice is harmless) and erasures made since.
The service runs it every ``signal_consent_refresh_s`` under its supervisor, so a withdrawal
takes effect within that interval; when refreshes keep failing the processor waits
(:meth:`ConsentView.wait_fresh`) rather than admit signals under consents it can no longer
vouch for.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

import asyncpg
from prometheus_client import Gauge

from switchyard.privacy import matching_hash
from switchyard.rpc import FieldViolation
from switchyard.storage import CONSENT_GROUP, CONSENT_GUARDIAN, CONSENT_SUBJECT, PayloadCodec
from switchyard.v1 import ConsentPurpose

__all__ = ["CONSENT_COLUMNS", "MAX_GROUP_CHARS", "MAX_GUARDIAN_CHARS", "MAX_SUBJECT_CHARS",
           "ConsentChange", "ConsentView", "Purpose", "StudentConsent", "consent_row",
           "list_consents", "purpose_of", "set_consent", "set_consent_problems", "subject_hash",
           "subject_problems"]

log = logging.getLogger(__name__)

MAX_SUBJECT_CHARS = 128
MAX_GUARDIAN_CHARS = 128
MAX_GROUP_CHARS = 64
#: matching_hash's kind for a student reference.
_SUBJECT_KIND = "signal_subject"
CONSENT_COLUMNS = ("consent_id, tenant_id, subject_hash, subject_ref, purpose, granted, "
                   "guardian_ref, group_label, updated_at, updated_by")

CONSENT_AGE = Gauge(
    "switchyard_signals_consent_age_seconds",
    "Seconds since ingest's consent view last refreshed from signal_consents (a withdrawal "
    "takes effect within signal_consent_refresh_s while this stays below it).")


class Purpose(str, Enum):
    """What a guardian consents to (``ConsentPurpose`` without its prefix, as stored)."""

    CLASS_ANALYTICS = "class_analytics"
    INDIVIDUAL_SUPPORT = "individual_support"
    FAIRNESS_MONITORING = "fairness_monitoring"

    @property
    def proto(self) -> int:
        return ConsentPurpose.Value(f"CONSENT_PURPOSE_{self.name}")


def purpose_of(value: int) -> Purpose:
    """The stored purpose of a ``ConsentPurpose``; unspecified or unknown is a violation."""
    for purpose in Purpose:
        if purpose.proto == value:
            return purpose
    raise FieldViolation("purpose", "required: class_analytics, individual_support or "
                                    "fairness_monitoring")


def subject_hash(key: bytes, tenant_id: str, subject_ref: str) -> str:
    """The keyed hash a student's reference is found by (and audited as)."""
    return matching_hash(key, tenant_id, _SUBJECT_KIND, subject_ref)


@dataclass(frozen=True)
class StudentConsent:
    """What one student's guardian consented to, as the admit step needs it."""

    class_analytics: bool = False
    individual: bool = False
    group: str = ""


@dataclass
class _Entry:
    subject_ref: str
    subject_hash: str
    purposes: dict[Purpose, tuple[bool, str, datetime]] = field(default_factory=dict)

    def consent(self) -> StudentConsent:
        def granted(purpose: Purpose) -> tuple[bool, str]:
            found = self.purposes.get(purpose)
            return (found[0], found[1]) if found else (False, "")

        analytics, _ = granted(Purpose.CLASS_ANALYTICS)
        individual, _ = granted(Purpose.INDIVIDUAL_SUPPORT)
        fair, group = granted(Purpose.FAIRNESS_MONITORING)
        return StudentConsent(analytics, analytics and individual,
                              group if analytics and fair else "")


@dataclass(frozen=True)
class ConsentChange:
    """One ``signal_consents`` row, opened."""

    consent_id: uuid.UUID
    tenant_id: str
    subject_ref: str
    subject_hash: str
    purpose: Purpose
    granted: bool
    guardian_ref: str
    group: str
    updated_at: datetime
    updated_by: str


def consent_row(row: Mapping[str, Any], codec: PayloadCodec) -> ConsentChange:
    """A ``signal_consents`` row with its sealed columns opened."""
    consent_id = row["consent_id"]

    def opened(column: Any) -> str:
        blob = row[column.column]
        return "" if blob is None else codec.open(consent_id, blob, column).decode()

    return ConsentChange(consent_id, row["tenant_id"], opened(CONSENT_SUBJECT),
                         row["subject_hash"], Purpose(row["purpose"]), row["granted"],
                         opened(CONSENT_GUARDIAN), opened(CONSENT_GROUP), row["updated_at"],
                         row["updated_by"])


class ConsentView:
    """Every tenant's consents in memory, refreshed by what changed since the last read."""

    def __init__(self, pool: asyncpg.Pool, codec: PayloadCodec, refresh_s: float) -> None:
        self._pool = pool
        self._codec = codec
        self.refresh_s = refresh_s
        self._students: dict[tuple[str, str], _Entry] = {}  # (tenant, subject_ref)
        self._by_hash: dict[tuple[str, str], str] = {}      # (tenant, hash) -> subject_ref
        self._last: datetime | None = None
        self._refreshed = 0.0  # time.monotonic() of the last successful refresh
        self._fresh = asyncio.Event()
        #: A late commit's updated_at may be earlier than the last refresh's read.
        self.overlap = timedelta(seconds=max(5.0, 2 * refresh_s))
        CONSENT_AGE.set_function(self.age_s)

    def of(self, tenant_id: str, subject_ref: str) -> StudentConsent | None:
        entry = self._students.get((tenant_id, subject_ref))
        return None if entry is None else entry.consent()

    def __len__(self) -> int:
        return len(self._students)

    def apply(self, change: ConsentChange) -> None:
        key = (change.tenant_id, change.subject_ref)
        entry = self._students.get(key)
        if entry is None:
            entry = self._students[key] = _Entry(change.subject_ref, change.subject_hash)
            self._by_hash[(change.tenant_id, change.subject_hash)] = change.subject_ref
        held = entry.purposes.get(change.purpose)
        if held is None or held[2] <= change.updated_at:
            entry.purposes[change.purpose] = (change.granted, change.group, change.updated_at)

    def forget(self, tenant_id: str, hashed: str, erased_at: datetime) -> None:
        """An erasure: the student's consents made before it are gone."""
        ref = self._by_hash.get((tenant_id, hashed))
        entry = self._students.get((tenant_id, ref)) if ref is not None else None
        if entry is None:
            return
        entry.purposes = {p: held for p, held in entry.purposes.items() if held[2] > erased_at}
        if not entry.purposes:
            del self._students[(tenant_id, ref)]
            del self._by_hash[(tenant_id, hashed)]

    async def refresh(self) -> int:
        """Read the changes since the last refresh; returns how many rows were applied."""
        since = (self._last - self.overlap) if self._last is not None else None
        async with self._pool.acquire() as conn:
            now = await conn.fetchval("SELECT clock_timestamp()")
            if since is None:
                rows = await conn.fetch(f"SELECT {CONSENT_COLUMNS} FROM signal_consents")
                erasures = []
            else:
                rows = await conn.fetch(f"SELECT {CONSENT_COLUMNS} FROM signal_consents "
                                        "WHERE updated_at > $1", since)
                erasures = await conn.fetch(
                    "SELECT tenant_id, subject_hash, requested_at FROM signal_erasures "
                    "WHERE requested_at > $1", since)
        for row in rows:
            self.apply(consent_row(row, self._codec))
        for erasure in erasures:
            self.forget(erasure["tenant_id"], erasure["subject_hash"], erasure["requested_at"])
        self._last = now
        self._refreshed = time.monotonic()
        self._fresh.set()
        return len(rows)

    def age_s(self) -> float:
        return time.monotonic() - self._refreshed if self._refreshed else float("inf")

    @property
    def stale_after_s(self) -> float:
        """How old the view may grow before frames wait for a refresh."""
        return 10 * self.refresh_s + 5.0

    async def wait_fresh(self) -> None:
        """Return once the view is fresh enough to admit signals under it."""
        while self.age_s() > self.stale_after_s:
            log.warning("consent view %.0fs old: holding signals until it refreshes",
                        self.age_s())
            self._fresh.clear()
            try:
                await asyncio.wait_for(self._fresh.wait(), self.refresh_s * 5)
            except asyncio.TimeoutError:
                pass

    async def run(self) -> None:
        """Refresh every ``refresh_s`` (a supervised loop: a failure is logged, counted and
        the loop restarted)."""
        while True:
            await asyncio.sleep(self.refresh_s)
            await self.refresh()


async def set_consent(conn: asyncpg.Connection, codec: PayloadCodec, hash_key: bytes,
                      tenant_id: str, subject_ref: str, purpose: Purpose, granted: bool,
                      guardian_ref: str, group: str, actor: str) -> ConsentChange:
    """Record one change (the latest wins) in the caller's transaction; returns the row."""
    hashed = subject_hash(hash_key, tenant_id, subject_ref)
    existing = await conn.fetchval(
        "SELECT consent_id FROM signal_consents WHERE tenant_id = $1 AND subject_hash = $2 "
        "AND purpose = $3 FOR UPDATE", tenant_id, hashed, purpose.value)
    consent_id = existing or uuid.uuid4()
    sealed = (codec.seal(consent_id, subject_ref.encode(), CONSENT_SUBJECT),
              codec.seal(consent_id, guardian_ref.encode(), CONSENT_GUARDIAN)
              if guardian_ref else None,
              codec.seal(consent_id, group.encode(), CONSENT_GROUP) if group else None)
    row = await conn.fetchrow(
        "INSERT INTO signal_consents (consent_id, tenant_id, subject_hash, subject_ref, "
        "purpose, granted, guardian_ref, group_label, updated_at, updated_by) "
        "VALUES ($1,$2,$3,$4,$5,$6,$7,$8,clock_timestamp(),$9) "
        "ON CONFLICT (tenant_id, subject_hash, purpose) DO UPDATE SET "
        "granted = EXCLUDED.granted, guardian_ref = EXCLUDED.guardian_ref, "
        "group_label = EXCLUDED.group_label, updated_at = EXCLUDED.updated_at, "
        f"updated_by = EXCLUDED.updated_by RETURNING {CONSENT_COLUMNS}",
        consent_id, tenant_id, hashed, sealed[0], purpose.value, granted, sealed[1],
        sealed[2], actor)
    if row["consent_id"] != consent_id:  # a concurrent first grant won the insert
        return await set_consent(conn, codec, hash_key, tenant_id, subject_ref, purpose,
                                 granted, guardian_ref, group, actor)
    return consent_row(row, codec)


async def list_consents(pool: asyncpg.Pool, codec: PayloadCodec, hash_key: bytes,
                        tenant_id: str, subject_ref: str, page_size: int,
                        after: tuple[datetime, uuid.UUID] | None
                        ) -> tuple[list[ConsentChange], bool]:
    """One page of a tenant's consents (one student's when ``subject_ref`` is given), newest
    change first; and whether more follow."""
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    where = [f"tenant_id = {arg(tenant_id)}"]
    if subject_ref:
        where.append(f"subject_hash = {arg(subject_hash(hash_key, tenant_id, subject_ref))}")
    if after is not None:
        where.append(f"(updated_at, consent_id) < ({arg(after[0])}, {arg(after[1])})")
    rows = await pool.fetch(
        f"SELECT {CONSENT_COLUMNS} FROM signal_consents WHERE {' AND '.join(where)} "
        f"ORDER BY updated_at DESC, consent_id DESC LIMIT {arg(page_size + 1)}", *args)
    return [consent_row(row, codec) for row in rows[:page_size]], len(rows) > page_size


def _text_problems(field: str, value: str, limit: int, required: bool) -> list[FieldViolation]:
    text = value.strip()
    if required and not text:
        return [FieldViolation(field, "required")]
    if len(text) > limit:
        return [FieldViolation(field, f"at most {limit} characters")]
    if any(ord(ch) < 32 for ch in text):
        return [FieldViolation(field, "must not contain control characters")]
    return []


def subject_problems(subject_ref: str) -> list[FieldViolation]:
    """A student reference a request names: required, at most 128 printable characters."""
    return _text_problems("subject_ref", subject_ref, MAX_SUBJECT_CHARS, True)


def set_consent_problems(subject_ref: str, purpose: int, granted: bool, guardian_ref: str,
                         group: str) -> list[FieldViolation]:
    """Every problem of a SetConsent request (all of them, not the first)."""
    problems = subject_problems(subject_ref)
    try:
        chosen: Purpose | None = purpose_of(purpose)
    except FieldViolation as exc:
        problems.append(exc)
        chosen = None
    problems += _text_problems("guardian_ref", guardian_ref, MAX_GUARDIAN_CHARS, False)
    problems += _text_problems("group", group, MAX_GROUP_CHARS, False)
    if group.strip() and not (chosen is Purpose.FAIRNESS_MONITORING and granted):
        problems.append(FieldViolation("group", "only with a granted fairness_monitoring "
                                                "consent"))
    return problems
