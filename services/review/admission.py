"""Admission throttling: escalations wait in a persisted backlog until token buckets (per
tenant and per queue) and the queue's cap on open items let them in.

An escalation storm therefore reaches reviewers at the configured rate, highest priority
first, and within a priority the nearest SLA deadline first (then the oldest), and nothing is
dropped: an item is either in the
backlog or admitted. :func:`plan_admissions` is the pure rule; :class:`Admitter` applies it to
PostgreSQL in one transaction per tick under an advisory lock, so several review replicas share
the same buckets and never admit an item twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from services.review.metrics import ADMISSION_WAIT, ADMITTED
from services.review.policies import Limit, ReviewPolicy

#: Most backlog rows of one (tenant, queue) considered in a tick; bounds a tick's work.
PER_GROUP_SCAN = 500


def refill(tokens: float, elapsed_s: float, limit: Limit) -> float:
    """Tokens after ``elapsed_s`` seconds of refilling, never above the burst."""
    return min(float(limit.burst), tokens + max(0.0, elapsed_s) * limit.rate)


@dataclass(frozen=True)
class Candidate:
    item_id: uuid.UUID
    tenant_id: str
    queue: str
    priority: int
    created_at: datetime


def plan_admissions(candidates: Iterable[Candidate], tenant_tokens: dict[str, float],
                    queue_tokens: dict[str, float], open_items: Mapping[str, int],
                    policy: ReviewPolicy) -> list[Candidate]:
    """Which backlogged items to admit now; spends the tokens it uses (dicts are updated).

    ``candidates`` come highest priority first, then the nearest SLA deadline, then the
    oldest. An item whose tenant or queue has no token left, or whose queue is at its cap, is
    skipped; items of other tenants and queues behind it can still go, so one noisy tenant
    cannot hold up the rest.
    """
    admitted: list[Candidate] = []
    open_now = dict(open_items)
    for item in candidates:
        queue = policy.queue(item.queue)
        if queue.max_open and open_now.get(item.queue, 0) >= queue.max_open:
            continue
        if not policy.tenant_limit.unlimited and tenant_tokens.get(item.tenant_id, 0.0) < 1.0:
            continue
        if not queue.bucket.unlimited and queue_tokens.get(item.queue, 0.0) < 1.0:
            continue
        if not policy.tenant_limit.unlimited:
            tenant_tokens[item.tenant_id] -= 1.0
        if not queue.bucket.unlimited:
            queue_tokens[item.queue] -= 1.0
        open_now[item.queue] = open_now.get(item.queue, 0) + 1
        admitted.append(item)
    return admitted


#: With an empty backlog the admission loop looks again after this many seconds (for the
#: escalations another replica's intake backlogged) or as soon as this process's intake
#: backlogs one, instead of every ``review_admission_interval_ms``.
IDLE_WAIT_S = 1.0


class Admitter:
    def __init__(self, pool: asyncpg.Pool, policy: ReviewPolicy) -> None:
        self.pool = pool
        self.policy = policy

    async def round(self) -> bool:
        """One round for the admission loop: whether there may be more to do (the backlog
        held items), so the loop comes back at its interval; with an empty backlog it waits
        for an escalation to arrive instead."""
        backlogged, _ = await self._admit()
        return backlogged

    async def tick(self) -> list[Candidate]:
        """Admit what the buckets allow now; returns the admitted items."""
        _, admitted = await self._admit()
        return admitted

    async def _admit(self) -> tuple[bool, list[Candidate]]:
        """Whether the backlog held items, and the ones admitted."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('switchyard-review-"
                               "admission:' || current_schema()))")
            rows = await conn.fetch(
                """SELECT item_id, tenant_id, queue, priority, created_at FROM (
                       SELECT item_id, tenant_id, queue, priority, created_at, sla_deadline,
                              row_number() OVER (PARTITION BY tenant_id, queue
                                                 ORDER BY priority,
                                                          COALESCE(sla_deadline, 'infinity'),
                                                          created_at) AS rank
                         FROM review_items WHERE state = 'BACKLOGGED') backlog
                    WHERE rank <= $1
                    ORDER BY priority, COALESCE(sla_deadline, 'infinity'), created_at, item_id""",
                PER_GROUP_SCAN)
            if not rows:
                return False, []
            now: datetime = await conn.fetchval("SELECT clock_timestamp()")
            candidates = [Candidate(r["item_id"], r["tenant_id"], r["queue"], r["priority"],
                                    r["created_at"]) for r in rows]
            tenants = sorted({c.tenant_id for c in candidates})
            queues = sorted({c.queue for c in candidates})
            tenant_tokens = await self._tokens(conn, "tenant", tenants, now,
                                               lambda _: self.policy.tenant_limit)
            queue_tokens = await self._tokens(conn, "queue", queues, now,
                                              lambda q: self.policy.queue(q).bucket)
            open_items = {r["queue"]: r["n"] for r in await conn.fetch(
                "SELECT queue, count(*) AS n FROM review_items WHERE queue = ANY($1::text[]) "
                "AND state IN ('PENDING', 'CLAIMED') GROUP BY queue", queues)}
            admitted = plan_admissions(candidates, tenant_tokens, queue_tokens, open_items,
                                       self.policy)
            if admitted:
                await conn.execute(
                    "UPDATE review_items SET state = 'PENDING', admitted_at = $2, updated_at = $2 "
                    "WHERE item_id = ANY($1::uuid[]) AND state = 'BACKLOGGED'",
                    [c.item_id for c in admitted], now)
            await conn.executemany(
                "INSERT INTO review_buckets (scope, key, tokens, refilled_at) VALUES ($1,$2,$3,$4) "
                "ON CONFLICT (scope, key) DO UPDATE SET tokens = EXCLUDED.tokens, "
                "refilled_at = EXCLUDED.refilled_at",
                [("tenant", k, v, now) for k, v in tenant_tokens.items()]
                + [("queue", k, v, now) for k, v in queue_tokens.items()])
        for item in admitted:
            ADMITTED.labels(item.queue, f"P{item.priority}").inc()
            ADMISSION_WAIT.labels(item.queue).observe((now - item.created_at).total_seconds())
        return True, admitted

    async def _tokens(self, conn: asyncpg.Connection, scope: str, keys: list[str],
                      now: datetime, limit_of: Callable[[str], Limit]) -> dict[str, float]:
        """Each bucket refilled up to ``now``; a bucket seen for the first time starts full."""
        stored = {r["key"]: r for r in await conn.fetch(
            "SELECT key, tokens, refilled_at FROM review_buckets WHERE scope = $1 "
            "AND key = ANY($2::text[]) FOR UPDATE", scope, keys)}
        out = {}
        for key in keys:
            limit = limit_of(key)
            if limit.unlimited:
                continue
            row = stored.get(key)
            out[key] = (float(limit.burst) if row is None else
                        refill(row["tokens"], (now - row["refilled_at"]).total_seconds(), limit))
        return out
