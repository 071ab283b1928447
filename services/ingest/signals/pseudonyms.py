"""Pseudonyms: a student's reference replaced by a keyed hash whose key changes every term.

The pseudonym of a student is ``"s_"`` + the first 32 hex characters of
HMAC-SHA256(term key, tenant_id + NUL + subject_ref). Within a term the same student always
gets the same pseudonym (the engagement windows follow a student through a session); across
terms the pseudonyms of one student cannot be linked without the keys. A term is named by
the ISO date of its start: the latest ``signal_term_starts`` month-day at or before the
frame's ``observed_at`` (UTC), e.g. ``2026-09-01``.

Each (tenant, term) key is 32 random bytes in ``signal_term_keys``, sealed with the payload
codec; the first frame of a term creates it (one key however many replicas race: the unique
constraint decides, every replica then reads the winner).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import uuid
from collections.abc import Callable
from datetime import date, datetime

import asyncpg

from switchyard.storage import TERM_KEY, PayloadCodec

__all__ = ["TermKeys", "parse_term_starts", "pseudonym", "pseudonymiser", "term_of"]

KEY_BYTES = 32


def parse_term_starts(spec: str) -> tuple[tuple[int, int], ...]:
    """``signal_term_starts`` ("01-01,09-01") as sorted (month, day) pairs; a bad entry is a
    ValueError naming it (a service refuses to start rather than pseudonymise wrongly)."""
    starts = set()
    for entry in filter(None, (e.strip() for e in spec.split(","))):
        month, sep, day = entry.partition("-")
        try:
            if not sep:
                raise ValueError
            pair = (int(month), int(day))
            date(2001, *pair)  # a common year: 02-29 would name no date in most years
        except ValueError:
            raise ValueError(f"SWITCHYARD_SIGNAL_TERM_STARTS entry {entry!r}: use MM-DD "
                             "(a date of every year, e.g. 09-01)") from None
        starts.add(pair)
    if not starts:
        raise ValueError("SWITCHYARD_SIGNAL_TERM_STARTS: name at least one term start (MM-DD)")
    return tuple(sorted(starts))


def term_of(observed_at: datetime, starts: tuple[tuple[int, int], ...]) -> str:
    """The term ``observed_at`` falls in: the ISO date of the latest start at or before it."""
    day = observed_at.date()
    candidates = [date(year, month, d) for year in (day.year, day.year - 1)
                  for month, d in starts if date(year, month, d) <= day]
    return max(candidates).isoformat()


def pseudonym(key: bytes, tenant_id: str, subject_ref: str) -> str:
    """The pseudonym of ``subject_ref`` of ``tenant_id`` under a term's ``key``."""
    digest = hmac.new(key, f"{tenant_id}\x00{subject_ref}".encode(), hashlib.sha256)
    return "s_" + digest.hexdigest()[:32]


def pseudonymiser(key: bytes, tenant_id: str) -> Callable[[str], str]:
    """:func:`pseudonym` bound to one key and tenant, memoised for the frames of a batch."""
    seen: dict[str, str] = {}

    def of(subject_ref: str) -> str:
        found = seen.get(subject_ref)
        if found is None:
            found = seen[subject_ref] = pseudonym(key, tenant_id, subject_ref)
        return found

    return of


class TermKeys:
    """The (tenant, term) keys, cached once read (a key never changes once created)."""

    def __init__(self, pool: asyncpg.Pool, codec: PayloadCodec) -> None:
        self._pool = pool
        self._codec = codec
        self._keys: dict[tuple[str, str], bytes] = {}

    def cached(self, tenant_id: str, term: str) -> bytes | None:
        return self._keys.get((tenant_id, term))

    async def get(self, tenant_id: str, term: str) -> bytes:
        """The term's key, created on first use."""
        key = self._keys.get((tenant_id, term))
        if key is not None:
            return key
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow("SELECT key_id, key FROM signal_term_keys "
                                      "WHERE tenant_id = $1 AND term = $2", tenant_id, term)
            if row is None:
                key_id = uuid.uuid4()
                await conn.execute(
                    "INSERT INTO signal_term_keys (key_id, tenant_id, term, key) "
                    "VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, term) DO NOTHING",
                    key_id, tenant_id, term,
                    self._codec.seal(key_id, os.urandom(KEY_BYTES), TERM_KEY))
                row = await conn.fetchrow("SELECT key_id, key FROM signal_term_keys "
                                          "WHERE tenant_id = $1 AND term = $2", tenant_id, term)
        key = self._codec.open(row["key_id"], row["key"], TERM_KEY)
        self._keys[(tenant_id, term)] = key
        return key

    async def all_of(self, conn: asyncpg.Connection, tenant_id: str) -> dict[str, bytes]:
        """Every term key of a tenant (an erasure covers every term), by term."""
        rows = await conn.fetch("SELECT key_id, term, key FROM signal_term_keys "
                                "WHERE tenant_id = $1 ORDER BY term", tenant_id)
        return {row["term"]: self._codec.open(row["key_id"], row["key"], TERM_KEY)
                for row in rows}
