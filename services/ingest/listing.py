"""ListTasks: a tenant's tasks newest first, filtered, keyset-paginated.

Keyset (``(created_at, task_id) < last seen``) rather than OFFSET: pages stay cheap deep into a
large tenant and do not shift when new tasks arrive while a client pages. The page token
binds the filters it was issued for, so a token replayed with other filters is refused
instead of silently returning a mixed listing.

Kind and metadata filters: ``kind`` is a plain column; metadata lives only in the sealed
envelope, so each key/value pair is also stored as a keyed hash (:func:`metadata_hashes`, the
``tasks.metadata_hashes`` column, GIN-indexed) and a filter matches with ``@>`` (every
pair present). Keys and values are trimmed as submissions are, then matched exactly.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone

import asyncpg

from switchyard.privacy import matching_hash
from switchyard.rpc import FieldViolation
from switchyard.tasks import (
    KIND,
    MAX_IDEMPOTENCY_KEY_CHARS,
    MAX_METADATA_KEY_CHARS,
    MAX_METADATA_VALUE_CHARS,
    status_name,
)
from switchyard.v1 import ListTasksRequest

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
#: Limits of the kind and metadata filters (a listing is one indexed query, not a search);
#: a pair's key and value are bounded as a submission's are.
MAX_KINDS = 32
MAX_METADATA_PAIRS = 16
#: The ``kind`` of :func:`switchyard._dataclass.matching_hash` for a metadata pair.
_METADATA_HASH_KIND = "task_metadata"


def metadata_hashes(key: bytes, tenant_id: str, pairs: Iterable[tuple[str, str]]
                    ) -> list[str]:
    """The keyed hash of each (trimmed) key/value pair, as ``tasks.metadata_hashes`` keeps
    them: equality only, never the value (the metadata itself stays sealed in the envelope)."""
    return sorted({matching_hash(key, tenant_id, _METADATA_HASH_KIND,
                                 f"{name.strip()}\x00{value.strip()}")
                   for name, value in pairs})


@dataclass(frozen=True)
class Query:
    tenant_id: str
    statuses: tuple[str, ...]
    created_after: datetime | None
    created_before: datetime | None
    page_size: int
    after: tuple[datetime, uuid.UUID] | None
    kinds: tuple[str, ...] = ()
    #: The wanted metadata pairs (trimmed); matched through ``metadata_hashes``.
    metadata: tuple[tuple[str, str], ...] = ()
    #: The one idempotency key wanted (trimmed); empty: any.
    idempotency_key: str = ""

    def fingerprint(self) -> str:
        return _fingerprint(self.tenant_id, self.statuses, self.created_after,
                            self.created_before, self.kinds, self.metadata,
                            self.idempotency_key)


def _fingerprint(tenant_id: str, statuses: tuple[str, ...], after: datetime | None,
                 before: datetime | None, kinds: tuple[str, ...] = (),
                 metadata: tuple[tuple[str, str], ...] = (), idempotency_key: str = ""
                 ) -> str:
    filters: list[object] = [tenant_id, sorted(statuses), after and after.isoformat(),
                             before and before.isoformat()]
    if kinds or metadata or idempotency_key:  # tokens issued before these filters stay valid
        filters += [sorted(set(kinds)), sorted(metadata)]
    if idempotency_key:
        filters.append(idempotency_key)
    canonical = json.dumps(filters)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def encode_token(query: Query, created_at: datetime, task_id: uuid.UUID) -> str:
    raw = json.dumps({"c": created_at.isoformat(), "t": str(task_id), "f": query.fingerprint()})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def parse(request: ListTasksRequest, tenant_id: str) -> Query | list[FieldViolation]:
    """A validated query, or every problem with the request."""
    problems: list[FieldViolation] = []
    statuses: list[str] = []
    for index, value in enumerate(request.statuses):
        try:
            name = status_name(value)
        except ValueError:
            name = "UNSPECIFIED"
        if name == "UNSPECIFIED":
            problems.append(FieldViolation(f"statuses[{index}]", f"unknown status {value}"))
        statuses.append(name)
    after = (request.created_after.ToDatetime(timezone.utc)
             if request.HasField("created_after") else None)
    before = (request.created_before.ToDatetime(timezone.utc)
              if request.HasField("created_before") else None)
    if after and before and after >= before:
        problems.append(FieldViolation("created_before", "must be later than created_after"))
    kinds = _kinds(request, problems)
    metadata = _metadata(request, problems)
    key = request.idempotency_key.strip()
    if len(key) > MAX_IDEMPOTENCY_KEY_CHARS:
        problems.append(FieldViolation("idempotency_key",
                                       f"at most {MAX_IDEMPOTENCY_KEY_CHARS} characters"))
    elif "\x00" in key:
        problems.append(FieldViolation("idempotency_key", "must not contain NUL characters"))
    size = request.page_size or DEFAULT_PAGE_SIZE
    if not 1 <= size <= MAX_PAGE_SIZE:
        problems.append(FieldViolation("page_size", f"must be 1 to {MAX_PAGE_SIZE} "
                                                    f"(0 means {DEFAULT_PAGE_SIZE})"))
    keyset = None
    if request.page_token:
        fingerprint = _fingerprint(tenant_id, tuple(statuses), after, before, kinds, metadata,
                                   key)
        try:
            padded = request.page_token + "=" * (-len(request.page_token) % 4)
            data = json.loads(base64.urlsafe_b64decode(padded))
            keyset = (datetime.fromisoformat(data["c"]), uuid.UUID(data["t"]))
            if data["f"] != fingerprint:
                problems.append(FieldViolation(
                    "page_token", "issued for other filters; repeat the request that "
                    "returned it, or start without a token"))
        except (ValueError, KeyError, TypeError, binascii.Error):
            problems.append(FieldViolation("page_token", "not a token returned by ListTasks"))
    if problems:
        return problems
    return Query(tenant_id, tuple(statuses), after, before, size, keyset, kinds, metadata,
                 key)


def _kinds(request: ListTasksRequest, problems: list[FieldViolation]) -> tuple[str, ...]:
    """The kinds filter, lower-cased as submissions are; each must be a kind name."""
    if len(request.kinds) > MAX_KINDS:
        problems.append(FieldViolation("kinds", f"at most {MAX_KINDS} kinds"))
    kinds: list[str] = []
    for index, value in enumerate(request.kinds[:MAX_KINDS]):
        kind = value.strip().lower()
        if not kind:
            problems.append(FieldViolation(f"kinds[{index}]", "must not be empty"))
        elif not KIND.match(kind):
            problems.append(FieldViolation(f"kinds[{index}]", f"not a task kind "
                                           f"{value[:80]!r}: 1-63 of a-z, 0-9 and _, "
                                           "starting with a letter"))
        kinds.append(kind)
    return tuple(sorted(set(kinds)))


def _metadata(request: ListTasksRequest, problems: list[FieldViolation]
              ) -> tuple[tuple[str, str], ...]:
    """The metadata filter, trimmed as submissions are; sizes bounded."""
    if len(request.metadata) > MAX_METADATA_PAIRS:
        problems.append(FieldViolation("metadata", f"at most {MAX_METADATA_PAIRS} pairs"))
        return ()
    pairs: list[tuple[str, str]] = []
    for name, value in sorted(request.metadata.items()):
        key = name.strip()
        where = f"metadata[{name[:MAX_METADATA_KEY_CHARS]!r}]"
        if not key:
            problems.append(FieldViolation(where, "the key must not be empty"))
        elif len(key) > MAX_METADATA_KEY_CHARS:
            problems.append(FieldViolation(where, f"keys are at most {MAX_METADATA_KEY_CHARS}"
                                                  " characters"))
        elif len(value.strip()) > MAX_METADATA_VALUE_CHARS:
            problems.append(FieldViolation(where, f"values are at most "
                                                  f"{MAX_METADATA_VALUE_CHARS} characters"))
        elif "\x00" in key or "\x00" in value:
            problems.append(FieldViolation(where, "must not contain NUL characters"))
        pairs.append((key, value.strip()))
    return tuple(sorted(set(pairs)))


async def fetch_page(conn: asyncpg.Connection | asyncpg.Pool, query: Query,
                     hash_key: bytes = b"") -> tuple[list[asyncpg.Record], str]:
    """One page of task rows and the token for the next one ('' on the last page).

    ``hash_key`` is the key of :func:`metadata_hashes` (needed with a metadata filter)."""
    params: list[object] = [query.tenant_id]
    where = ["tenant_id = $1"]
    if query.statuses:
        params.append(list(query.statuses))
        where.append(f"status = ANY(${len(params)}::text[])")
    if query.idempotency_key:
        params.append(query.idempotency_key)
        where.append(f"idempotency_key = ${len(params)}")
    if query.kinds:
        params.append(list(query.kinds))
        where.append(f"kind = ANY(${len(params)}::text[])")
    if query.metadata:
        params.append(metadata_hashes(hash_key, query.tenant_id, query.metadata))
        where.append(f"metadata_hashes @> ${len(params)}::text[]")
    if query.created_after:
        params.append(query.created_after)
        where.append(f"created_at >= ${len(params)}")
    if query.created_before:
        params.append(query.created_before)
        where.append(f"created_at < ${len(params)}")
    if query.after:
        params += list(query.after)
        where.append(f"(created_at, task_id) < (${len(params) - 1}, ${len(params)})")
    params.append(query.page_size + 1)
    rows = await conn.fetch(
        "SELECT task_id, tenant_id, envelope, status, stage, reason, status_seq, created_at, "
        f"updated_at FROM tasks WHERE {' AND '.join(where)} "
        f"ORDER BY created_at DESC, task_id DESC LIMIT ${len(params)}",
        *params,
    )
    if len(rows) <= query.page_size:
        return list(rows), ""
    page = list(rows[:query.page_size])
    last = page[-1]
    return page, encode_token(query, last["created_at"], last["task_id"])


__all__ = ["DEFAULT_PAGE_SIZE", "MAX_KINDS", "MAX_METADATA_KEY_CHARS", "MAX_METADATA_PAIRS",
           "MAX_METADATA_VALUE_CHARS", "MAX_PAGE_SIZE", "Query", "fetch_page",
           "metadata_hashes", "parse"]
