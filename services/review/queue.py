"""Review items in PostgreSQL: enqueue escalations, lease them to reviewers, close them.

An escalation enters as BACKLOGGED; the admitter (``admission``) makes it PENDING when the
throttles allow. Leases are enforced by single UPDATE statements with the state and lease in
their WHERE clause, so two reviewers racing for one item cannot both win, and an expired
lease is simply claimable again.
"""

from __future__ import annotations

import base64
import binascii
import json

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import asyncpg

from services.review.endings import lock_tasks, withdrawn_resolution
from services.review.metrics import WITHDRAWN
from switchyard.audit import Entry, append_many
from switchyard.storage import PLAINTEXT, REVIEW_ESCALATION, PayloadCodec
from switchyard.tasks import timestamp
from switchyard.telemetry import current_trace_context
from switchyard.v1 import Escalation, EscalationReason, ReviewItem, ReviewPriority, ReviewState

OPEN_STATES = ("BACKLOGGED", "PENDING", "CLAIMED")
_COLUMNS = ("item_id, escalation, state, claimed_by, lease_expires_at, created_at, updated_at, "
            "priority, admitted_at, sla_deadline, resolution, expiries, tenant_id, "
            "reviewer_group, approvals_required, approved_by, claimed_at, "
            # the verdict that closed it, if one did (one per item, by primary key)
            "(SELECT v.reviewer_id FROM review_verdicts v "
            " WHERE v.item_id = review_items.item_id) AS decided_by, "
            "(SELECT v.decided_at FROM review_verdicts v "
            " WHERE v.item_id = review_items.item_id) AS decided_at")
#: Four eyes: two different reviewers must approve.
FOUR_EYES_APPROVALS = 2
#: Escalations that name no priority are treated as P2 (normal), not as the most urgent.
UNSPECIFIED_PRIORITY = 2


class ReviewError(Exception):
    """A reviewer action that cannot happen; ``code`` maps onto a gRPC/HTTP status."""

    def __init__(self, code: str, message: str,
                 violations: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.code = code  # "not_found" | "conflict" | "invalid" | "forbidden" | "unavailable"
        self.violations = violations or []


def invalid(problems: list[tuple[str, str]]) -> ReviewError:
    """The refusal of a request with these problems, each (field path, why): INVALID_ARGUMENT
    with field violations on gRPC, HTTP 400 on the console."""
    return ReviewError("invalid", "; ".join(f"{f}: {d}" for f, d in problems), problems)


def priority_value(priority: int) -> int:
    """ReviewPriority enum -> bucket 0 (P0) .. 3 (P3)."""
    return UNSPECIFIED_PRIORITY if priority == ReviewPriority.REVIEW_PRIORITY_UNSPECIFIED \
        else max(0, min(3, priority - 1))


def reason_name(reason: int) -> str:
    return EscalationReason.Name(reason).removeprefix("ESCALATION_REASON_")


def effective_state(row: asyncpg.Record, now: datetime) -> str:
    state: str = row["state"]
    if state == "CLAIMED" and row["lease_expires_at"] and row["lease_expires_at"] <= now:
        return "PENDING"  # an expired lease returns the item to the queue
    return state


def open_escalation(codec: PayloadCodec, row: asyncpg.Record) -> Escalation:
    """The escalation of a ``review_items`` row; sealed at rest (it embeds the document)."""
    return Escalation.FromString(codec.open(row["item_id"], row["escalation"], REVIEW_ESCALATION))


def item_from_row(row: asyncpg.Record, codec: PayloadCodec = PLAINTEXT) -> ReviewItem:
    state = effective_state(row, datetime.now(timezone.utc))
    item = ReviewItem(
        item_id=str(row["item_id"]), escalation=open_escalation(codec, row),
        state=ReviewState.Value(f"REVIEW_STATE_{state}"),
        claimed_by=(row["claimed_by"] or "") if state == "CLAIMED" else "",
        created_at=timestamp(row["created_at"]), updated_at=timestamp(row["updated_at"]),
        priority=row["priority"] + 1,  # type: ignore[arg-type]  # REVIEW_PRIORITY_P0 == 1
        resolution=row["resolution"] or "", expiries=row["expiries"],
        approved_by=row["approved_by"], approvals_required=row["approvals_required"],
    )
    if state == "CLAIMED" and row["lease_expires_at"]:
        item.lease_expires_at.CopyFrom(timestamp(row["lease_expires_at"]))
    if row["admitted_at"]:
        item.admitted_at.CopyFrom(timestamp(row["admitted_at"]))
    if row["sla_deadline"]:
        item.sla_deadline.CopyFrom(timestamp(row["sla_deadline"]))
    if row.get("decided_by"):
        item.decided_by = row["decided_by"]
        item.decided_at.CopyFrom(timestamp(row["decided_at"]))
    return item


def item_uuid(item_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(item_id)
    except ValueError:
        raise ReviewError("not_found", f"review item {item_id!r} not found") from None


@dataclass(frozen=True)
class Filters:
    """ListQueue filters; empty means no filter."""

    queue: str = ""
    tenant_id: str | None = None
    states: tuple[str, ...] = ("PENDING", "CLAIMED")
    priorities: tuple[int, ...] = ()  # buckets 0..3
    reasons: tuple[str, ...] = ()     # EscalationReason short names
    #: The caller's reviewer groups: items of other groups are left out. None: every group
    #: (admins, operators, auth off).
    groups: tuple[str, ...] | None = None


def _token_after(row: asyncpg.Record) -> str:
    """A ListQueue token: the order's key of the last item of a page (whether it is on
    time, its priority, SLA deadline, creation, id)."""
    sla = row["sla_deadline"]
    key = [row["expiries"] == 0, row["priority"],
           sla.isoformat() if sla is not None else "infinity",
           row["created_at"].isoformat(), str(row["item_id"])]
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


def _after(token: str) -> tuple[bool, int, str, str, uuid.UUID]:
    """The key a ListQueue token holds, or ``invalid`` naming ``page_token``."""
    try:
        if len(token) > 512:
            raise ValueError("too long")
        on_time, priority, sla, created, item_id = json.loads(
            base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if not isinstance(on_time, bool):
            raise ValueError("not a flag")
        key = (on_time, int(priority), str(sla), str(created), uuid.UUID(str(item_id)))
        if not 0 <= key[1] <= 3:
            raise ValueError("no such priority")
        if sla != "infinity":
            datetime.fromisoformat(sla)
        datetime.fromisoformat(created)
        return key
    except (ValueError, TypeError, UnicodeDecodeError, binascii.Error):
        raise invalid([("page_token", "not a token returned by ListQueue")]) from None


@dataclass(frozen=True)
class Page:
    items: list[ReviewItem]
    next_token: str


@dataclass(frozen=True)
class Arrival:
    """An escalation to enqueue, with the trace context its record arrived in (the item keeps
    it: the verdict's decision continues the task's trace)."""

    escalation: Escalation
    trace_context: dict[str, str]


class ReviewQueue:
    def __init__(self, pool: asyncpg.Pool, codec: PayloadCodec = PLAINTEXT) -> None:
        self.pool = pool
        self.codec = codec

    async def enqueue(self, escalation: Escalation) -> bool:
        """Add an escalation to the admission backlog; False if it was already there."""
        return (await self.enqueue_many([Arrival(escalation, current_trace_context())]))[0]

    async def enqueue_many(self, arrivals: Sequence[Arrival]) -> list[bool]:
        """Add escalations to the admission backlog in one transaction; for each, False if it
        was already there.

        If its task was cancelled already (``review_ended_tasks``, fed by the task-status
        topic: see ``endings`` for why only cancellations) the item is stored WITHDRAWN
        instead, for the record, and is never admitted. The tasks' locks order this against
        the endings' own withdrawal (see ``endings``). Raises
        ``asyncpg.ForeignKeyViolationError`` when one names no task (nothing is stored)."""
        task_ids = [uuid.UUID(a.escalation.task_id) for a in arrivals]
        item_ids = [uuid.uuid4() for _ in arrivals]
        async with self.pool.acquire() as conn, conn.transaction():
            await lock_tasks(conn, task_ids)
            ended = {row["task_id"]: row["status"] for row in await conn.fetch(
                "SELECT task_id, status FROM review_ended_tasks WHERE task_id = ANY($1::uuid[])",
                task_ids)}
            rows = [(item_id, task_id, ended.get(task_id), arrival)
                    for item_id, task_id, arrival in zip(item_ids, task_ids, arrivals)]
            added = {row["item_id"]: row["queue"] for row in await conn.fetch(
                "INSERT INTO review_items (item_id, escalation_id, task_id, tenant_id, queue, "
                "priority, base_priority, reason, state, sla_deadline, escalation, "
                "trace_context, resolution, resolved_at, reviewer_group, approvals_required) "
                "SELECT item_id, escalation_id, task_id, tenant_id, queue, priority, priority, "
                "reason, state, sla_deadline, escalation, trace_context::jsonb, resolution, "
                "CASE WHEN state = 'WITHDRAWN' THEN now() END, reviewer_group, approvals "
                "FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], "
                "$6::smallint[], $7::text[], $8::text[], $9::timestamptz[], $10::bytea[], "
                "$11::text[], $12::text[], $13::text[], $14::int[]) AS e(item_id, "
                "escalation_id, task_id, tenant_id, queue, priority, reason, state, "
                "sla_deadline, escalation, trace_context, resolution, reviewer_group, approvals) "
                "ON CONFLICT (escalation_id) DO NOTHING RETURNING item_id, queue",
                *self._columns(rows))}
            await append_many(conn, [
                Entry(arrival.escalation.tenant_id, "review", "review.withdrawn",
                      {"item_id": str(item_id), "task_status": status, "never_admitted": True},
                      arrival.escalation.task_id)
                for item_id, _, status, arrival in rows if status and item_id in added],
                writer="review")
        for item_id, _, status, _ in rows:
            if status and item_id in added:
                WITHDRAWN.labels(added[item_id]).inc()
        return [item_id in added for item_id in item_ids]

    def _columns(self, rows: list[tuple[uuid.UUID, uuid.UUID, str | None, Arrival]]
                 ) -> list[list[object]]:
        """The ``review_items`` rows of :meth:`enqueue_many`, as column arrays."""
        values = []
        for item_id, task_id, ended, arrival in rows:
            escalation = arrival.escalation
            values.append((
                item_id, uuid.UUID(escalation.escalation_id), task_id, escalation.tenant_id,
                escalation.queue or "default", priority_value(escalation.priority),
                reason_name(escalation.reason), "WITHDRAWN" if ended else "BACKLOGGED",
                escalation.sla_deadline.ToDatetime(timezone.utc)
                if escalation.HasField("sla_deadline") else None,
                self.codec.seal(item_id, escalation.SerializeToString(), REVIEW_ESCALATION),
                json.dumps(arrival.trace_context),
                withdrawn_resolution(ended) if ended else None,
                escalation.reviewer_group, FOUR_EYES_APPROVALS if escalation.four_eyes else 1,
            ))
        return [list(column) for column in zip(*values)]

    async def list(self, filters: Filters, page_size: int, page_token: str) -> Page:
        """A page of the items ``filters`` select, most urgent first. The token is where the
        last page ended in that order (keyset), not a count of rows: an item resolved while
        a reviewer pages through moves no other item out of reach."""
        size = min(max(page_size or 50, 1), 500)
        after = _after(page_token) if page_token else None
        rows = await self.pool.fetch(
            f"""SELECT {_COLUMNS} FROM review_items
                 WHERE ($1 = '' OR queue = $1) AND ($2::text IS NULL OR tenant_id = $2)
                   AND (CASE WHEN state = 'CLAIMED' AND lease_expires_at <= now()
                             THEN 'PENDING' ELSE state END) = ANY($3::text[])
                   AND (cardinality($4::smallint[]) = 0 OR priority = ANY($4::smallint[]))
                   AND (cardinality($5::text[]) = 0 OR reason = ANY($5::text[]))
                   AND ($7::text[] IS NULL OR reviewer_group = ''
                        OR reviewer_group = ANY($7::text[]))
                   AND ($9::smallint IS NULL OR
                        (expiries = 0, priority, COALESCE(sla_deadline, 'infinity'),
                         created_at, item_id)
                        > ($8::boolean, $9::smallint, $10::text::timestamptz,
                           $11::text::timestamptz, $12::uuid))
                 ORDER BY expiries = 0, priority, COALESCE(sla_deadline, 'infinity'),
                          created_at, item_id
                 LIMIT $6""",
            filters.queue, filters.tenant_id, list(filters.states), list(filters.priorities),
            list(filters.reasons), size + 1,
            None if filters.groups is None else list(filters.groups),
            *(after if after is not None else (None, None, None, None, None)),
        )
        items = [item_from_row(r, self.codec) for r in rows[:size]]
        return Page(items, _token_after(rows[size - 1]) if len(rows) > size else "")

    async def get(self, item_id: str) -> tuple[ReviewItem, str]:
        row = await self.pool.fetchrow(
            f"SELECT {_COLUMNS} FROM review_items WHERE item_id = $1", item_uuid(item_id))
        if row is None:
            raise ReviewError("not_found", f"review item {item_id!r} not found")
        return item_from_row(row, self.codec), row["tenant_id"]

    async def claim(self, item_id: str, reviewer_id: str, lease: timedelta) -> ReviewItem:
        row = await self.pool.fetchrow(
            f"""UPDATE review_items
                   SET state = 'CLAIMED', claimed_by = $2,
                       -- a claim again by its live holder is a renewal: the claim began then
                       claimed_at = CASE WHEN state = 'CLAIMED' AND claimed_by = $2
                                          AND lease_expires_at > now()
                                         THEN claimed_at ELSE now() END,
                       lease_expires_at = now() + $3::interval, updated_at = now()
                 WHERE item_id = $1 AND NOT $2 = ANY(approved_by)
                   AND (state = 'PENDING'
                        OR (state = 'CLAIMED' AND (lease_expires_at <= now() OR claimed_by = $2)))
             RETURNING {_COLUMNS}""",
            item_uuid(item_id), reviewer_id, lease,
        )
        if row is None:
            await self._explain(item_id, reviewer_id)
        return item_from_row(row, self.codec)

    async def renew(self, item_id: str, reviewer_id: str, lease: timedelta) -> ReviewItem:
        row = await self.pool.fetchrow(
            f"""UPDATE review_items
                   SET lease_expires_at = now() + $3::interval, updated_at = now()
                 WHERE item_id = $1 AND state = 'CLAIMED' AND claimed_by = $2
                   AND lease_expires_at > now()
             RETURNING {_COLUMNS}""",
            item_uuid(item_id), reviewer_id, lease,
        )
        if row is None:
            await self._explain(item_id, reviewer_id)
        return item_from_row(row, self.codec)

    async def release(self, item_id: str, reviewer_id: str) -> ReviewItem:
        row = await self.pool.fetchrow(
            f"""UPDATE review_items SET state = 'PENDING', claimed_by = NULL,
                       lease_expires_at = NULL, updated_at = now()
                 WHERE item_id = $1 AND state = 'CLAIMED' AND claimed_by = $2
                   AND lease_expires_at > now()
             RETURNING {_COLUMNS}""",
            item_uuid(item_id), reviewer_id,
        )
        if row is None:
            await self._explain(item_id, reviewer_id)
        return item_from_row(row, self.codec)

    async def close_claimed(self, conn: asyncpg.Connection, item_id: str, reviewer_id: str,
                            resolution: str, decision_id: str) -> asyncpg.Record:
        """RESOLVE an item the reviewer holds a live lease on (caller's transaction). A
        four-eyes item's approving verdict adds its reviewer to ``approved_by``, so the item
        names both approvers."""
        row = await conn.fetchrow(
            f"""UPDATE review_items SET state = 'RESOLVED', resolved_at = now(),
                       updated_at = now(), resolution = $3, decision_id = $4,
                       approved_by = CASE WHEN approvals_required > 1
                           AND $3 IN ('verdict:approve', 'verdict:modify')
                           THEN approved_by || $2::text ELSE approved_by END
                 WHERE item_id = $1 AND state = 'CLAIMED' AND claimed_by = $2
                   AND lease_expires_at > now()
             RETURNING {_COLUMNS}, task_id""",
            item_uuid(item_id), reviewer_id, resolution, uuid.UUID(decision_id),
        )
        if row is None:
            await self._explain(item_id, reviewer_id)
        return row

    async def record_first_approval(self, conn: asyncpg.Connection, item_id: str,
                                    reviewer_id: str) -> asyncpg.Record:
        """Four eyes: note the first approval of an item the reviewer holds a live lease on
        and hand the item back to the queue (PENDING, unclaimed) for a different reviewer
        (caller's transaction). Nothing is decided yet."""
        row = await conn.fetchrow(
            f"""UPDATE review_items SET state = 'PENDING', claimed_by = NULL,
                       lease_expires_at = NULL, approved_by = approved_by || $2::text,
                       updated_at = now()
                 WHERE item_id = $1 AND state = 'CLAIMED' AND claimed_by = $2
                   AND lease_expires_at > now() AND NOT $2 = ANY(approved_by)
                   AND cardinality(approved_by) + 1 < approvals_required
             RETURNING {_COLUMNS}, task_id""",
            item_uuid(item_id), reviewer_id,
        )
        if row is None:
            await self._explain(item_id, reviewer_id)
        return row

    async def _explain(self, item_id: str, reviewer_id: str | None = None) -> None:
        """Raise the specific reason a lease operation did not apply."""
        row = await self.pool.fetchrow(
            "SELECT state, claimed_by, lease_expires_at <= now() AS expired, resolution, "
            "approved_by, approvals_required FROM review_items WHERE item_id = $1",
            item_uuid(item_id))
        if row is None:
            raise ReviewError("not_found", f"review item {item_id!r} not found")
        state = row["state"]
        if state in ("PENDING", "CLAIMED") and reviewer_id in row["approved_by"]:
            raise ReviewError("forbidden", f"review item {item_id}: {reviewer_id} already gave "
                                           f"the first of {row['approvals_required']} "
                                           "approvals; four eyes needs a different reviewer")
        if state == "WITHDRAWN":
            raise ReviewError("conflict", f"review item {item_id} was withdrawn: its task "
                                          f"ended ({row['resolution']}) before a verdict")
        if state in ("RESOLVED", "EXPIRED"):
            raise ReviewError("conflict", f"review item {item_id} is already closed "
                                          f"({row['resolution'] or state.lower()})")
        if state == "BACKLOGGED":
            raise ReviewError("conflict", f"review item {item_id} is waiting for admission "
                                          "(backlogged) and cannot be claimed yet")
        if state == "CLAIMED" and not row["expired"] and row["claimed_by"] != reviewer_id:
            raise ReviewError("conflict", f"review item {item_id} is claimed by "
                                          f"{row['claimed_by']}")
        raise ReviewError("conflict", f"review item {item_id} is not claimed by "
                                      f"{reviewer_id or 'you'} (lease missing or expired)")
