"""The dead-letter queue for operators: list, read and replay the records no stage accepted.

Every service's :class:`switchyard._streams.DeadLetterSink` mirrors what it dead-letters into
the ``dead_letters`` table (original bytes sealed like other payloads, key, headers and the
tenant the record named). This module is the plain domain code behind DeadLetterService:
tenant scoping, paging, and a replay that re-publishes the original record to the topic it
came from once, marks who replayed it when, and appends an audit entry, all while the row
is locked so two operators cannot both replay it. A letter that needs no replay (its record
was sent again corrected) is resolved instead: closed with a reason, so the open letters
are the operators' queue and it empties.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from aiokafka.errors import MessageSizeTooLargeError

from services.ingest import keyset
from switchyard.access import Principal
from switchyard.audit import append as audit_append, digest
from switchyard.messaging import Producer, headers_from_json, headers_to_dict
from switchyard.privacy import Redactor
from switchyard.rpc import FieldViolation
from switchyard.storage import DEAD_LETTER_HEADERS, DEAD_LETTER_KEY, DEAD_LETTER_VALUE, PayloadCodec

__all__ = ["DEFAULT_PAGE_SIZE", "MAX_PAGE_SIZE", "MAX_RESOLUTION_CHARS", "OPERATOR_CHAIN",
           "REPLAY_HEADER", "STATES", "AlreadyReplayed", "AlreadyResolved", "Filters",
           "NotFound", "Original", "Purged", "Scope", "TooLargeToReplay", "get", "list_page",
           "original", "page_size_of", "page_token_of", "parse_id", "parse_page_token",
           "replay", "resolution_of", "resolve", "scope_for", "state_of", "text_filter"]

DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE = keyset.DEFAULT_PAGE_SIZE, keyset.MAX_PAGE_SIZE
#: Header added to a replayed record: the letter it replays, so the trail is followable.
REPLAY_HEADER = "x-switchyard-replay-of"
#: Audit chain of letters whose record named no tenant (only operators see those).
OPERATOR_CHAIN = "*"
_COLUMNS = ("dead_letter_id, service, source_topic, reason_code, reason, failed_at, "
            "tenant_id, source_partition, source_offset, replayed_at, replayed_by, "
            "replay_count, purged_at, resolved_at, resolved_by, resolution")
#: Where a letter stands, and the condition that selects the letters in each state: open
#: (the operators' queue), replayed (and not resolved since), resolved.
STATES = {
    "open": "replayed_at IS NULL AND resolved_at IS NULL",
    "replayed": "replayed_at IS NOT NULL AND resolved_at IS NULL",
    "resolved": "resolved_at IS NOT NULL",
}
MAX_RESOLUTION_CHARS = 1000
_DETECTORS = Redactor()


class NotFound(Exception):
    """No such letter for this caller (another tenant's letter is absent, not forbidden)."""


class AlreadyReplayed(Exception):
    """The letter was replayed before and the caller did not force it."""


class AlreadyResolved(Exception):
    """The letter was resolved before (by whom, when and why is in the message)."""


class Purged(Exception):
    """Retention removed the original bytes: nothing left to replay."""


class TooLargeToReplay(Exception):
    """The record is larger than the largest record the producer sends: it cannot go back on
    its topic (retrying cannot change that; the document can be submitted over gRPC or
    REST)."""


@dataclass(frozen=True)
class Scope:
    """Which tenant's letters a call sees: one tenant, or every one (``None``, operators)."""

    tenant_id: str | None


def scope_for(principal: Principal, requested_tenant: str) -> Scope:
    """The caller's tenant, or the requested one for an operator key (none, or ``*``: every
    tenant's, as ``*`` means elsewhere); another tenant named by a tenant's key is a
    PermissionError."""
    requested = requested_tenant.strip()
    if principal.tenant_id == "*":
        return Scope(None if requested in ("", "*") else requested)
    if requested and requested != principal.tenant_id:
        raise PermissionError(f"tenant {requested!r} is not the caller's")
    return Scope(principal.tenant_id)


@dataclass(frozen=True)
class Filters:
    source_topic: str = ""
    reason_code: str = ""
    since: datetime | None = None
    #: one of :data:`STATES`, or "" for every state
    state: str = ""
    #: the keyed hash of the record key wanted (:func:`record_key_hash`), or "" for any
    key_hash: str = ""


def state_of(row: Mapping[str, Any]) -> str:
    """The row's state, as :data:`STATES` selects it."""
    if row["resolved_at"] is not None:
        return "resolved"
    return "open" if row["replayed_at"] is None else "replayed"


def resolution_of(reason: str) -> str:
    """The reason an operator gave for resolving, as kept: stripped, 1 to
    :data:`MAX_RESOLUTION_CHARS` characters, with what the PII detectors find masked (it is
    shown to auditors and every admin of the tenant); a FieldViolation otherwise."""
    reason = text_filter("reason", reason)
    if not reason:
        raise FieldViolation("reason", "required: why the letter needs no replay")
    if len(reason) > MAX_RESOLUTION_CHARS:
        raise FieldViolation("reason", f"at most {MAX_RESOLUTION_CHARS} characters")
    return _DETECTORS.text(reason)


def parse_id(dead_letter_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(dead_letter_id.strip())
    except ValueError:
        raise FieldViolation("dead_letter_id", "must be a dead letter id (a UUID, as "
                                               "ListDeadLetters returns)") from None


def page_size_of(requested: int) -> int:
    return keyset.page_size(requested)


def page_token_of(row: Mapping[str, Any]) -> str:
    return keyset.encode(row["failed_at"], row["dead_letter_id"])


def parse_page_token(token: str) -> tuple[datetime, uuid.UUID]:
    return keyset.parse(token, "ListDeadLetters")


@dataclass(frozen=True)
class Original:
    """The record a letter keeps, opened: None/() once purged (or from before 0017).
    ``header_list``: every header as the record carried it; ``headers`` the same as text."""

    key: bytes | None
    value: bytes | None
    header_list: tuple[tuple[str, bytes], ...]

    @property
    def headers(self) -> dict[str, str]:
        return headers_to_dict(self.header_list)


def original(row: Mapping[str, Any], codec: PayloadCodec) -> Original:
    """Open the sealed key, value and headers of a ``dead_letters`` row."""
    letter_id = str(row["dead_letter_id"])

    def opened(column: Any) -> bytes | None:
        blob = row[column.column]
        return None if blob is None else codec.open(letter_id, blob, column)

    headers = opened(DEAD_LETTER_HEADERS)
    return Original(opened(DEAD_LETTER_KEY), opened(DEAD_LETTER_VALUE),
                    tuple(headers_from_json(headers)) if headers else ())


def text_filter(field: str, value: str) -> str:
    """A filter compared with stored text: PostgreSQL text holds no NUL, so one is a
    mistake of the caller's, named, rather than a database error."""
    if "\x00" in value:
        raise FieldViolation(field, "must not contain NUL characters")
    return value.strip()


async def list_page(pool: asyncpg.Pool, scope: Scope, filters: Filters, page_size: int,
                    page_token: str) -> tuple[list[asyncpg.Record], str]:
    """One page, newest first (ties by id), and the token of the next ('' on the last)."""
    where, args = ["true"], []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if scope.tenant_id is not None:
        where.append(f"tenant_id = {arg(scope.tenant_id)}")
    if filters.source_topic:
        where.append(f"source_topic = {arg(filters.source_topic)}")
    if filters.reason_code:
        where.append(f"reason_code = {arg(filters.reason_code)}")
    if filters.since is not None:
        where.append(f"failed_at >= {arg(filters.since)}")
    if filters.state:
        where.append(STATES[filters.state])
    if filters.key_hash:
        where.append(f"original_key_hash = {arg(filters.key_hash)}")
    if page_token:
        failed_at, letter_id = parse_page_token(page_token)
        where.append(f"(failed_at, dead_letter_id) < ({arg(failed_at)}, {arg(letter_id)})")
    rows = await pool.fetch(
        f"SELECT {_COLUMNS} FROM dead_letters WHERE {' AND '.join(where)} "
        f"ORDER BY failed_at DESC, dead_letter_id DESC LIMIT {arg(page_size + 1)}", *args)
    if len(rows) > page_size:
        return list(rows[:page_size]), page_token_of(rows[page_size - 1])
    return list(rows), ""


async def _row(conn: asyncpg.Connection, scope: Scope, letter_id: uuid.UUID,
               lock: bool = False) -> asyncpg.Record:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS}, original_key, original_value, original_headers FROM dead_letters "
        f"WHERE dead_letter_id = $1{' FOR UPDATE' if lock else ''}", letter_id)
    if row is None or (scope.tenant_id is not None and row["tenant_id"] != scope.tenant_id):
        raise NotFound(f"no dead letter {letter_id}")
    return row


async def get(pool: asyncpg.Pool, scope: Scope, letter_id: uuid.UUID,
              codec: PayloadCodec) -> tuple[asyncpg.Record, Original]:
    """The row and its original record, opened."""
    async with pool.acquire() as conn:
        row = await _row(conn, scope, letter_id)
    return row, original(row, codec)


async def replay(pool: asyncpg.Pool, producer: Producer, scope: Scope, letter_id: uuid.UUID,
                 principal: Principal, force: bool, codec: PayloadCodec) -> asyncpg.Record:
    """Re-publish the letter's record to its source topic, mark and audit it; returns the
    row as marked. The row stays locked from the check to the mark, so concurrent replays of
    one letter publish it once; if the commit fails after the send, the record was published
    but the letter is not marked, and a later replay publishes it again."""
    async with pool.acquire() as conn, conn.transaction():
        row = await _row(conn, scope, letter_id, lock=True)
        if row["resolved_at"] is not None and not force:
            raise AlreadyResolved(_resolved(letter_id, row) + "; replay it anyway with force")
        if row["replayed_at"] is not None and not force:
            raise AlreadyReplayed(
                f"dead letter {letter_id} was replayed at {row['replayed_at'].isoformat()} by "
                f"{row['replayed_by']}; replay it again with force")
        record = original(row, codec)
        if record.value is None:
            raise Purged(f"dead letter {letter_id}: its original bytes were purged by "
                         "retention; nothing to replay")
        # the record's own headers, byte for byte and in order (a repeated name each time)
        headers = [*record.header_list, (REPLAY_HEADER, str(letter_id).encode())]
        try:
            await producer.send_raw(row["source_topic"], record.key, record.value, headers)
        except MessageSizeTooLargeError as exc:
            raise TooLargeToReplay(
                f"dead letter {letter_id}: its record ({len(record.value):,} bytes) is larger "
                "than Kafka takes (the producer's max_request_size, 1 MiB, or the topic's "
                f"max.message.bytes), so it cannot go back on {row['source_topic']!r}: submit "
                "its document over gRPC or REST (same idempotency key), then resolve the "
                "letter") from exc
        marked = await conn.fetchrow(
            "UPDATE dead_letters SET replayed_at = now(), replayed_by = $2, "
            f"replay_count = replay_count + 1 WHERE dead_letter_id = $1 RETURNING {_COLUMNS}",
            letter_id, principal.key_id)
        await audit_append(conn, row["tenant_id"] or OPERATOR_CHAIN, principal.key_id,
                           "dead_letter.replayed", {
                               "dead_letter_id": str(letter_id),
                               "source_topic": row["source_topic"],
                               "reason_code": row["reason_code"], "forced": force,
                               "replay_count": marked["replay_count"],
                               "value_sha256": digest(record.value)}, writer="ingest")
    return marked


def _resolved(letter_id: uuid.UUID, row: Mapping[str, Any]) -> str:
    """What a refusal says of a resolved letter: when, by whom, why."""
    return (f"dead letter {letter_id} was resolved at {row['resolved_at'].isoformat()} by "
            f"{row['resolved_by']} ({row['resolution']})")


async def resolve(pool: asyncpg.Pool, scope: Scope, letter_id: uuid.UUID,
                  principal: Principal, resolution: str) -> asyncpg.Record:
    """Close the letter with ``resolution`` (from :func:`resolution_of`), marked with the
    caller's key id and audited (the reason as a hash, as the other operator actions keep
    theirs); returns the row as marked. Its bytes stay until retention purges them, so it
    can still be read, and replayed with force. A letter retention already purged keeps no
    note (purge clears a note with the bytes, and runs once per letter): its resolution
    is '' and the audit entry's hash is the only trace of the reason."""
    async with pool.acquire() as conn, conn.transaction():
        row = await _row(conn, scope, letter_id, lock=True)
        if row["resolved_at"] is not None:
            raise AlreadyResolved(_resolved(letter_id, row))
        marked = await conn.fetchrow(
            "UPDATE dead_letters SET resolved_at = now(), resolved_by = $2, "
            "resolution = CASE WHEN purged_at IS NULL THEN $3 ELSE '' END "
            f"WHERE dead_letter_id = $1 RETURNING {_COLUMNS}",
            letter_id, principal.key_id, resolution)
        await audit_append(conn, row["tenant_id"] or OPERATOR_CHAIN, principal.key_id,
                           "dead_letter.resolved", {
                               "dead_letter_id": str(letter_id),
                               "source_topic": row["source_topic"],
                               "reason_code": row["reason_code"],
                               "replay_count": row["replay_count"],
                               "reason_sha256": digest(resolution)},
                           writer="ingest")
    return marked
