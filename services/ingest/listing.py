"""ListTasks: a tenant's tasks newest first, filtered, keyset-paginated.

Keyset (``(created_at, task_id) < last seen``) rather than OFFSET: pages stay cheap deep into a
large tenant and do not shift when new tasks arrive while a client pages. The page token
binds the filters it was issued for, so a token replayed with other filters is refused
instead of silently returning a mixed listing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

import asyncpg

from switchyard._grpc import FieldViolation
from switchyard._taskstore import status_name
from switchyard.v1 import ListTasksRequest

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


@dataclass(frozen=True)
class Query:
    tenant_id: str
    statuses: tuple[str, ...]
    created_after: datetime | None
    created_before: datetime | None
    page_size: int
    after: tuple[datetime, uuid.UUID] | None

    def fingerprint(self) -> str:
        return _fingerprint(self.tenant_id, self.statuses, self.created_after,
                            self.created_before)


def _fingerprint(tenant_id: str, statuses: tuple[str, ...], after: datetime | None,
                 before: datetime | None) -> str:
    canonical = json.dumps([tenant_id, sorted(statuses), after and after.isoformat(),
                            before and before.isoformat()])
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
    size = request.page_size or DEFAULT_PAGE_SIZE
    if not 1 <= size <= MAX_PAGE_SIZE:
        problems.append(FieldViolation("page_size", f"must be 1 to {MAX_PAGE_SIZE} "
                                                    f"(0 means {DEFAULT_PAGE_SIZE})"))
    keyset = None
    if request.page_token:
        fingerprint = _fingerprint(tenant_id, tuple(statuses), after, before)
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
    return Query(tenant_id, tuple(statuses), after, before, size, keyset)


async def fetch_page(conn: asyncpg.Connection | asyncpg.Pool, query: Query
                     ) -> tuple[list[asyncpg.Record], str]:
    """One page of task rows and the token for the next one ('' on the last page)."""
    params: list[object] = [query.tenant_id]
    where = ["tenant_id = $1"]
    if query.statuses:
        params.append(list(query.statuses))
        where.append(f"status = ANY(${len(params)}::text[])")
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


__all__ = ["DEFAULT_PAGE_SIZE", "MAX_PAGE_SIZE", "Query", "fetch_page", "parse"]
