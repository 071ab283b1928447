"""How a review item ends: the decision is stored (``review_decisions``, the review
service's own record of what people and review policies decided), the item closed and the
audit trail appended in one transaction; the decision is published to Kafka only after that
commit.

If the process dies between the commit and the broker's acknowledgement, the item keeps
``decision_published_at`` unset and :meth:`DecisionPublisher.sweep` publishes it again later,
so an accepted verdict is never lost; the executor dedupes by task and step, so publishing
twice has one effect.
"""

from __future__ import annotations

import json

import logging
import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import asyncpg

from switchyard.audit import append, digest
from switchyard.messaging import DECISIONS, Producer, scheduling_headers
from switchyard.storage import PLAINTEXT, REVIEW_DECISION, PayloadCodec
from switchyard.tasks import NORMAL
from switchyard.telemetry import continue_trace, task_context
from switchyard.v1 import Decision, DecisionOutcome, DecisionSource

log = logging.getLogger(__name__)


async def store_decision(conn: asyncpg.Connection, item_id: uuid.UUID, decision: Decision,
                         codec: PayloadCodec = PLAINTEXT) -> None:
    """The decision an item ended with (idempotent per decision id); it carries the extracted
    fields, so it is sealed at rest."""
    await conn.execute(
        "INSERT INTO review_decisions (decision_id, item_id, task_id, tenant_id, source, "
        "outcome, rule, explanation, decision) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9) "
        "ON CONFLICT DO NOTHING",
        uuid.UUID(decision.decision_id), item_id, uuid.UUID(decision.task_id),
        decision.tenant_id, DecisionSource.Name(decision.source).removeprefix("DECISION_SOURCE_"),
        DecisionOutcome.Name(decision.outcome).removeprefix("DECISION_OUTCOME_"),
        decision.rule, decision.explanation,
        codec.seal(decision.decision_id, decision.SerializeToString(), REVIEW_DECISION),
    )


async def audit(conn: asyncpg.Connection, tenant_id: str, actor: str, action: str,
                task_id: str, detail: Mapping[str, Any]) -> None:
    """Append to the tenant's hash-chained audit trail (inside the caller's transaction)."""
    await append(conn, tenant_id, actor, action, detail, task_id=task_id, writer="review")


def text_digest(text: str) -> str:
    """Free text (reasons, edited values) enters the audit trail as a hash, never verbatim."""
    return digest(text) if text else ""


class DecisionPublisher:
    def __init__(self, pool: asyncpg.Pool, producer: Producer,
                 codec: PayloadCodec = PLAINTEXT) -> None:
        self.pool = pool
        self.producer = producer
        self.codec = codec

    def _open(self, row: asyncpg.Record) -> Decision:
        return Decision.FromString(self.codec.open(row["decision_id"], row["decision"],
                                                   REVIEW_DECISION))

    async def publish(self, item_id: uuid.UUID, decision: Decision) -> None:
        """Publish in the task's own trace, linked to the reviewer's request, so one trace
        runs from submission to the terminal state with the human step in between."""
        item = await self.pool.fetchrow(
            "SELECT trace_context, base_priority FROM review_items WHERE item_id = $1", item_id)
        carrier = item["trace_context"] if item is not None else None
        # the executor schedules the verdict at the item's priority (its tenant's share first)
        priority = item["base_priority"] if item is not None else NORMAL
        with task_context(decision.task_id), continue_trace(
                "review verdict", json.loads(carrier) if carrier else None,
                {"task.id": decision.task_id, "review.item_id": str(item_id),
                 "review.reviewer_id": decision.reviewer_id}):
            await self.producer.send(DECISIONS, decision.task_id, decision,
                                     scheduling_headers(decision.tenant_id, priority))
        await self.pool.execute(
            "UPDATE review_items SET decision_published_at = now() WHERE item_id = $1", item_id)

    async def republish_resolved(self, escalation_id: str) -> bool:
        """An escalation arrived again for an item already decided: the task is being
        re-driven because the decision's record was lost, so send the decision again."""
        row = await self.pool.fetchrow(
            "SELECT r.item_id, d.decision_id, d.decision FROM review_items r "
            "JOIN review_decisions d ON d.decision_id = r.decision_id "
            "WHERE r.escalation_id = $1",
            uuid.UUID(escalation_id))
        if row is None:
            return False
        await self.publish(row["item_id"], self._open(row))
        return True

    async def sweep(self, older_than: timedelta = timedelta(seconds=10)) -> int:
        """Publish decisions whose item closed a while ago without a broker acknowledgement."""
        rows = await self.pool.fetch(
            "SELECT r.item_id, d.decision_id, d.decision FROM review_items r "
            "JOIN review_decisions d ON d.decision_id = r.decision_id "
            "WHERE r.decision_id IS NOT NULL "
            "AND r.decision_published_at IS NULL AND r.resolved_at < now() - $1::interval "
            "ORDER BY r.resolved_at LIMIT 500", older_than)
        for row in rows:
            decision = self._open(row)
            log.warning("re-publishing decision %s of review item %s", decision.decision_id,
                        row["item_id"])
            await self.publish(row["item_id"], decision)
        return len(rows)
