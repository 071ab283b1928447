"""Review items in PostgreSQL: enqueue escalations, lease them to reviewers, record verdicts.

Leases are enforced by single UPDATE statements with the state and lease in their WHERE
clause, so two reviewers racing for one item cannot both win, and an expired lease is simply
claimable again.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import asyncpg

from switchyard._taskstore import timestamp
from switchyard.v1 import Escalation, ReviewItem, ReviewState, ReviewVerdict

DEFAULT_LEASE = timedelta(minutes=5)
_COLUMNS = ("item_id, escalation, state, claimed_by, lease_expires_at, created_at, updated_at")


class ReviewError(Exception):
    """A reviewer action that cannot happen; ``code`` maps onto a gRPC status."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code  # "not_found" | "conflict"


def item_from_row(row: asyncpg.Record) -> ReviewItem:
    now = datetime.now(timezone.utc)
    state = row["state"]
    if state == "CLAIMED" and row["lease_expires_at"] and row["lease_expires_at"] <= now:
        state = "PENDING"  # an expired lease returns the item to the queue
    item = ReviewItem(
        item_id=str(row["item_id"]), escalation=Escalation.FromString(row["escalation"]),
        state=ReviewState.Value(f"REVIEW_STATE_{state}"),
        claimed_by=(row["claimed_by"] or "") if state == "CLAIMED" else "",
        created_at=timestamp(row["created_at"]), updated_at=timestamp(row["updated_at"]),
    )
    if state == "CLAIMED" and row["lease_expires_at"]:
        item.lease_expires_at.CopyFrom(timestamp(row["lease_expires_at"]))
    return item


def item_uuid(item_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(item_id)
    except ValueError:
        raise ReviewError("not_found", f"review item {item_id!r} not found") from None


@dataclass(frozen=True)
class Page:
    items: list[ReviewItem]
    next_token: str


class ReviewQueue:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def enqueue(self, escalation: Escalation) -> bool:
        """Add an escalation as a PENDING item; False if it was already there (redelivery)."""
        row = await self.pool.fetchrow(
            "INSERT INTO review_items (item_id, escalation_id, task_id, tenant_id, queue, "
            "priority, reason, state, sla_deadline, escalation) VALUES ($1,$2,$3,$4,$5,$6,$7,"
            "'PENDING',$8,$9) ON CONFLICT (escalation_id) DO NOTHING RETURNING item_id",
            uuid.uuid4(), uuid.UUID(escalation.escalation_id), uuid.UUID(escalation.task_id),
            escalation.tenant_id, escalation.queue or "default",
            max(0, escalation.priority - 1), str(escalation.reason),
            escalation.sla_deadline.ToDatetime(timezone.utc)
            if escalation.HasField("sla_deadline") else None,
            escalation.SerializeToString(),
        )
        return row is not None

    async def list(self, queue: str, tenant_id: str | None, states: list[str],
                   page_size: int, page_token: str) -> Page:
        size = min(max(page_size or 50, 1), 500)
        offset = int(page_token) if page_token.isdigit() else 0
        rows = await self.pool.fetch(
            f"""SELECT {_COLUMNS} FROM review_items
                 WHERE ($1 = '' OR queue = $1) AND ($2::text IS NULL OR tenant_id = $2)
                   AND (CASE WHEN state = 'CLAIMED' AND lease_expires_at <= now()
                             THEN 'PENDING' ELSE state END) = ANY($3::text[])
                 ORDER BY priority, sla_deadline NULLS LAST, created_at
                 LIMIT $4 OFFSET $5""",
            queue, tenant_id, states, size + 1, offset,
        )
        items = [item_from_row(r) for r in rows[:size]]
        return Page(items, str(offset + size) if len(rows) > size else "")

    async def get(self, item_id: str) -> tuple[ReviewItem, str]:
        row = await self.pool.fetchrow(
            f"SELECT {_COLUMNS}, tenant_id FROM review_items WHERE item_id = $1",
            item_uuid(item_id))
        if row is None:
            raise ReviewError("not_found", f"review item {item_id!r} not found")
        return item_from_row(row), row["tenant_id"]

    async def claim(self, item_id: str, reviewer_id: str, lease: timedelta) -> ReviewItem:
        row = await self.pool.fetchrow(
            f"""UPDATE review_items
                   SET state = 'CLAIMED', claimed_by = $2, lease_expires_at = now() + $3,
                       updated_at = now()
                 WHERE item_id = $1
                   AND (state = 'PENDING'
                        OR (state = 'CLAIMED' AND (lease_expires_at <= now() OR claimed_by = $2)))
             RETURNING {_COLUMNS}""",
            item_uuid(item_id), reviewer_id, lease,
        )
        if row is None:
            await self._explain(item_id)
        return item_from_row(row)

    async def renew(self, item_id: str, reviewer_id: str, lease: timedelta) -> ReviewItem:
        row = await self.pool.fetchrow(
            f"""UPDATE review_items SET lease_expires_at = now() + $3, updated_at = now()
                 WHERE item_id = $1 AND state = 'CLAIMED' AND claimed_by = $2
                   AND lease_expires_at > now()
             RETURNING {_COLUMNS}""",
            item_uuid(item_id), reviewer_id, lease,
        )
        if row is None:
            await self._explain(item_id, reviewer_id)
        return item_from_row(row)

    async def release(self, item_id: str, reviewer_id: str) -> ReviewItem:
        row = await self.pool.fetchrow(
            f"""UPDATE review_items SET state = 'PENDING', claimed_by = NULL,
                       lease_expires_at = NULL, updated_at = now()
                 WHERE item_id = $1 AND state = 'CLAIMED' AND claimed_by = $2
             RETURNING {_COLUMNS}""",
            item_uuid(item_id), reviewer_id,
        )
        if row is None:
            await self._explain(item_id, reviewer_id)
        return item_from_row(row)

    async def resolve(self, verdict: ReviewVerdict,
                      conn: asyncpg.Connection) -> ReviewItem:
        """Mark the item RESOLVED and store the verdict (caller's transaction)."""
        row = await conn.fetchrow(
            f"""UPDATE review_items SET state = 'RESOLVED', resolved_at = now(),
                       updated_at = now()
                 WHERE item_id = $1 AND state = 'CLAIMED' AND claimed_by = $2
                   AND lease_expires_at > now()
             RETURNING {_COLUMNS}, task_id""",
            item_uuid(verdict.item_id), verdict.reviewer_id,
        )
        if row is None:
            await self._explain(verdict.item_id, verdict.reviewer_id)
        await conn.execute(
            "INSERT INTO review_verdicts (item_id, task_id, reviewer_id, verdict, reason, "
            "verdict_pb) VALUES ($1,$2,$3,$4,$5,$6)",
            row["item_id"], row["task_id"], verdict.reviewer_id, str(verdict.verdict),
            verdict.reason, verdict.SerializeToString(),
        )
        return item_from_row(row)

    async def _explain(self, item_id: str, reviewer_id: str | None = None) -> None:
        """Raise the specific reason a lease operation did not apply."""
        row = await self.pool.fetchrow(
            "SELECT state, claimed_by, lease_expires_at <= now() AS expired FROM review_items "
            "WHERE item_id = $1", item_uuid(item_id))
        if row is None:
            raise ReviewError("not_found", f"review item {item_id!r} not found")
        if row["state"] == "RESOLVED":
            raise ReviewError("conflict", f"review item {item_id} is already resolved")
        if row["state"] == "CLAIMED" and not row["expired"] and row["claimed_by"] != reviewer_id:
            raise ReviewError("conflict", f"review item {item_id} is claimed by "
                                          f"{row['claimed_by']}")
        raise ReviewError("conflict", f"review item {item_id} is not claimed by "
                                      f"{reviewer_id or 'you'} (lease missing or expired)")
