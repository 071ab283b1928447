"""SLA deadlines and the storm policy, checked periodically against PostgreSQL.

- An open item whose deadline is within ``sla_bump`` moves up one priority bucket (once), so
  it is admitted and listed ahead of work that can wait.
- An item past its deadline follows its queue's expiry policy: ``reassign`` (lease dropped,
  P0, a new deadline, pending: a backlogged one is admitted past its queue's cap), ``default_action`` (its tenant's approve/reject) or ``fail``. Either
  way the expiry is recorded on the item and in the audit trail.
- During an escalation storm, backlogged items at the storm priority (P3 by default) that
  waited longer than ``storm_after`` take their tenant's default action instead of waiting on.
- A four-eyes item is never approved without two people: where the default action is
  approve, an expired four-eyes item fails instead and the storm policy leaves it waiting.

Rows are taken with ``FOR UPDATE SKIP LOCKED`` so several replicas never handle one item twice.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from services.review.metrics import (
    BACKLOG_DEPTH,
    BACKLOG_OLDEST_AGE,
    DEFAULT_ACTIONS,
    EXPIRED,
    LATE_ITEMS,
    OPEN_ITEMS,
    SLA_BUMPED,
)
from services.review.policies import ReviewPolicy
from services.review.queue import open_escalation
from services.review.resolutions import DecisionPublisher, audit, store_decision
from services.review.verdicts import policy_decision
from switchyard.storage import PLAINTEXT, PayloadCodec
from switchyard.v1 import Decision

log = logging.getLogger(__name__)
BATCH = 200
FOUR_EYES_NOTE = "four eyes: a default action never approves without two reviewers"
ACTOR = "review-policy"


@dataclass
class SlaReport:
    bumped: int = 0
    reassigned: int = 0
    expired: int = 0
    stormed: int = 0
    republished: int = 0
    published: list[tuple[uuid.UUID, Decision]] = field(default_factory=list)


class SlaKeeper:
    def __init__(self, pool: asyncpg.Pool, policy: ReviewPolicy,
                 publisher: DecisionPublisher, codec: PayloadCodec = PLAINTEXT) -> None:
        self.pool = pool
        self.codec = codec  # review_items.escalation is sealed at rest
        self.policy = policy
        self.publisher = publisher
        self._queues_seen: set[str] = set()

    async def tick(self) -> SlaReport:
        report = SlaReport()
        report.bumped = await self.bump()
        await self.expire(report)
        if self.policy.storm_after is not None:
            await self.storm(report)
        for item_id, decision in report.published:
            await self.publisher.publish(item_id, decision)
        report.republished = await self.publisher.sweep()
        await self.refresh_gauges()
        return report

    async def bump(self) -> int:
        rows = await self.pool.fetch(
            """UPDATE review_items SET priority = priority - 1, sla_bumped_at = now(),
                      updated_at = now()
                WHERE state IN ('BACKLOGGED', 'PENDING', 'CLAIMED') AND sla_bumped_at IS NULL
                  AND priority > 0 AND sla_deadline IS NOT NULL
                  AND sla_deadline > now() AND sla_deadline <= now() + $1::interval
            RETURNING queue""", self.policy.sla_bump)
        for row in rows:
            SLA_BUMPED.labels(row["queue"]).inc()
        return len(rows)

    async def expire(self, report: SlaReport) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT item_id, task_id, tenant_id, queue, state, claimed_by, escalation, "
                "sla_deadline, approvals_required FROM review_items WHERE state IN ('BACKLOGGED', 'PENDING', "
                "'CLAIMED') AND sla_deadline <= now() ORDER BY sla_deadline LIMIT $1 "
                "FOR UPDATE SKIP LOCKED", BATCH)
            for row in rows:
                policy = self.policy.expiry(row["queue"])
                action = None
                if policy == "default_action":
                    action = self.policy.default_action(row["tenant_id"])
                elif policy == "fail":
                    action = "fail"
                detail = {"item_id": str(row["item_id"]), "queue": row["queue"],
                          "policy": policy, "deadline": row["sla_deadline"].isoformat(),
                          "held_by": row["claimed_by"] if row["state"] == "CLAIMED" else None}
                if policy == "reassign":
                    # back to the queue, claimable now: one still in the backlog (the
                    # throttle held it until its deadline) is admitted past the queue's cap,
                    # since it is already late and nobody has seen it
                    await conn.execute(
                        "UPDATE review_items SET state = 'PENDING', claimed_by = NULL, "
                        "admitted_at = COALESCE(admitted_at, now()), "
                        "lease_expires_at = NULL, priority = 0, "
                        "sla_deadline = now() + $2::interval, "
                        "expired_at = now(), expiries = expiries + 1, updated_at = now() "
                        "WHERE item_id = $1", row["item_id"], self.policy.reassign_extension)
                    await audit(conn, row["tenant_id"], ACTOR, "review.expired",
                                str(row["task_id"]), {**detail, "outcome": "reassigned"})
                    report.reassigned += 1
                else:
                    if action is None:  # default_action, but the tenant has none
                        action, detail["note"] = "fail", "tenant has no default action"
                    elif action == "approve" and row["approvals_required"] > 1:
                        action, detail["note"] = "fail", FOUR_EYES_NOTE
                    decision = self._decide(row, action, "expired")
                    await self._close(conn, row, "EXPIRED", f"expired:{action}", decision)
                    await audit(conn, row["tenant_id"], ACTOR, "review.expired",
                                str(row["task_id"]), {**detail, "outcome": action,
                                                      "decision_id": decision.decision_id})
                    report.published.append((row["item_id"], decision))
                    report.expired += 1
                    if action != "fail":
                        DEFAULT_ACTIONS.labels("expiry", action).inc()
                EXPIRED.labels(row["queue"], policy).inc()

    async def storm(self, report: SlaReport) -> None:
        assert self.policy.storm_after is not None
        tenants = [t for t in self.policy.default_actions if t != "*"]
        everyone = "*" in self.policy.default_actions
        if not tenants and not everyone:
            return
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT item_id, task_id, tenant_id, queue, state, escalation, created_at "
                "FROM review_items WHERE state = 'BACKLOGGED' AND priority >= $1 "
                "AND created_at <= now() - $2::interval AND ($3 OR tenant_id = ANY($4::text[])) "
                # four eyes: only a default reject may close it
                "AND (approvals_required = 1 OR tenant_id = ANY($6::text[]) "
                "     OR ($7 AND NOT tenant_id = ANY($8::text[]))) "
                "ORDER BY created_at LIMIT $5 FOR UPDATE SKIP LOCKED",
                self.policy.storm_priority, self.policy.storm_after, everyone, tenants, BATCH,
                [t for t in tenants if self.policy.default_actions[t] == "reject"],
                self.policy.default_actions.get("*") == "reject",
                [t for t in tenants if self.policy.default_actions[t] == "approve"])
            for row in rows:
                action = self.policy.default_action(row["tenant_id"])
                if action is None:
                    continue
                decision = self._decide(row, action, "storm")
                await self._close(conn, row, "RESOLVED", f"storm:{action}", decision)
                await audit(conn, row["tenant_id"], ACTOR, "review.default_action",
                            str(row["task_id"]),
                            {"item_id": str(row["item_id"]), "queue": row["queue"],
                             "trigger": "storm", "action": action,
                             "waited_s": round(self.policy.storm_after.total_seconds()),
                             "decision_id": decision.decision_id})
                report.published.append((row["item_id"], decision))
                report.stormed += 1
                DEFAULT_ACTIONS.labels("storm", action).inc()

    def _decide(self, row: asyncpg.Record, action: str, trigger: str) -> Decision:
        escalation = open_escalation(self.codec, row)
        verb = "approve" if action == "approve" else "reject"
        if trigger == "storm":
            why = (f"default action ({verb}) of tenant {row['tenant_id']}: waited more than "
                   f"{self.policy.storm_after} in the review backlog during an escalation storm")
        elif action == "fail":
            why = f"review SLA ran out in queue {row['queue']}; the queue's policy fails the task"
        else:
            why = f"review SLA ran out; default action ({verb}) of tenant {row['tenant_id']}"
        rule = "review_expired" if action == "fail" else f"review_default_{verb}"
        return policy_decision(str(row["item_id"]), escalation, verb, rule, why)

    async def _close(self, conn: asyncpg.Connection, row: asyncpg.Record, state: str,
                     resolution: str, decision: Decision) -> None:
        await store_decision(conn, row["item_id"], decision, self.codec)
        await conn.execute(
            "UPDATE review_items SET state = $2, resolution = $3, decision_id = $4, "
            "claimed_by = NULL, lease_expires_at = NULL, resolved_at = now(), "
            "expired_at = CASE WHEN $2 = 'EXPIRED' THEN now() ELSE expired_at END, "
            "expiries = expiries + CASE WHEN $2 = 'EXPIRED' THEN 1 ELSE 0 END, "
            "updated_at = now() WHERE item_id = $1",
            row["item_id"], state, resolution, uuid.UUID(decision.decision_id))

    async def refresh_gauges(self) -> None:
        """Backlog depth and age, open and late items per queue, from the system of record
        (a restart loses no breach: the item keeps its expiries)."""
        rows = await self.pool.fetch(
            "SELECT queue, count(*) FILTER (WHERE state = 'BACKLOGGED') AS backlog, "
            "count(*) FILTER (WHERE state IN ('PENDING', 'CLAIMED')) AS open, "
            "count(*) FILTER (WHERE sla_deadline < now() OR expiries > 0) AS late, "
            "min(created_at) FILTER (WHERE state = 'BACKLOGGED') AS oldest, now() AS now "
            "FROM review_items WHERE state IN ('BACKLOGGED', 'PENDING', 'CLAIMED') "
            "GROUP BY queue")
        seen = set()
        for row in rows:
            seen.add(row["queue"])
            BACKLOG_DEPTH.labels(row["queue"]).set(row["backlog"])
            OPEN_ITEMS.labels(row["queue"]).set(row["open"])
            LATE_ITEMS.labels(row["queue"]).set(row["late"])
            oldest: datetime | None = row["oldest"]
            BACKLOG_OLDEST_AGE.labels(row["queue"]).set(
                (row["now"] - oldest).total_seconds() if oldest else 0.0)
        for queue in self._queues_seen - seen:
            BACKLOG_DEPTH.labels(queue).set(0)
            OPEN_ITEMS.labels(queue).set(0)
            LATE_ITEMS.labels(queue).set(0)
            BACKLOG_OLDEST_AGE.labels(queue).set(0.0)
        self._queues_seen |= seen
