"""Holding tasks while the models are unavailable, and deciding them once Triton is back.

A tenant whose policy says ``on_model_unavailable: hold`` does not want a person to decide
what a model could: its tasks go BLOCKED (stage DECIDING, reason ``model_unavailable``) and
wait in ``decision_holds`` -- PostgreSQL, not memory, so a restart loses nothing and the
Kafka offset can move on. :class:`HoldRetrier` claims due holds with a lease
(``FOR UPDATE SKIP LOCKED``, so replicas share the work), re-decides them when a Triton pool's
circuit breaker lets calls through, and releases each hold in the transaction that stores its
decision.

``switchyard_decision_held_tasks`` is a count of ``decision_holds`` per tenant, re-read from
PostgreSQL every round (and after each hold or release), never kept by adding and
subtracting locally: a hold made by one replica is often released by another.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable

import asyncpg
from prometheus_client import Counter, Gauge

from services.decision.batcher import Overloaded
from services.decision.engine import Decided, DecisionEngine
from switchyard.messaging import TRANSIENT_ERRORS, Producer
from switchyard.storage import HOLD_ENVELOPE, PLAINTEXT, PayloadCodec
from switchyard.tasks import publish_status, transition
from switchyard.telemetry import (
    continue_trace,
    loaded_trace_context,
    stored_trace_context,
    task_context,
)
from switchyard.v1 import TaskEnvelope

log = logging.getLogger(__name__)

HOLDS = Counter("switchyard_decision_holds_total",
                "Tasks held BLOCKED because the models were unavailable.", ["tenant"])
HOLDS_RELEASED = Counter("switchyard_decision_holds_released_total",
                         "Held tasks decided after the models came back.", ["tenant"])
HELD_NOW = Gauge("switchyard_decision_held_tasks",
                 "Tasks currently held for the models, counted in PostgreSQL (every replica "
                 "reports the same figure: aggregate with max).", ["tenant"])

Commit = Callable[[TaskEnvelope, Decided, bool], Awaitable[None]]


class HoldRetrier:
    def __init__(self, pool: asyncpg.Pool, producer: Producer, engine: DecisionEngine,
                 models_away: Callable[[], bool], interval_s: float, lease_s: float = 30.0,
                 batch: int = 256, codec: PayloadCodec = PLAINTEXT) -> None:
        self.pool, self.producer, self.engine = pool, producer, engine
        self.models_away = models_away  # true while no Triton pool would take a call
        self.codec = codec  # decision_holds.envelope is a copy of the document: sealed
        self.interval_s, self.lease_s, self.batch = interval_s, lease_s, batch
        self.commit: Commit | None = None  # set by the decider: stores and publishes a decision
        self._gauge_tenants: set[str] = set()  # tenants the gauge has shown, to zero them

    async def is_held(self, task_id: str) -> bool:
        return bool(await self.pool.fetchval(
            "SELECT EXISTS (SELECT 1 FROM decision_holds WHERE task_id = $1)",
            uuid.UUID(task_id)))

    async def hold(self, task: TaskEnvelope, detail: str) -> None:
        """Park ``task``: BLOCKED until the models answer. Idempotent per task."""
        change = None
        async with self.pool.acquire() as conn, conn.transaction():
            inserted = await conn.fetchval(
                "INSERT INTO decision_holds (task_id, tenant_id, envelope, reason, "
                "next_attempt_at, trace_context) "
                "VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5), $6::jsonb) "
                "ON CONFLICT (task_id) DO NOTHING RETURNING 1",
                uuid.UUID(task.task_id), task.tenant_id,
                self.codec.seal(task.task_id, task.SerializeToString(), HOLD_ENVELOPE), detail,
                self.interval_s, stored_trace_context(),
            )
            if inserted:
                change = await transition(conn, task.task_id, "BLOCKED", "DECIDING", "decision",
                                          "model_unavailable", detail)
        if change is not None:
            HOLDS.labels(task.tenant_id).inc()
            await self.refresh_gauge()
            await publish_status(self.producer, change.event)

    async def run(self) -> None:
        """Background loop: retry due holds whenever some pool's breaker is not open."""
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.refresh_gauge()
                if self.models_away():
                    continue
                if await self.retry_due():
                    await self.refresh_gauge()
            except TRANSIENT_ERRORS as exc:  # held tasks keep their lease and retry
                log.warning("hold retry round failed, the next one retries: %r", exc)
            # anything else ends the loop: the supervisor logs, counts and restarts it

    async def retry_due(self) -> int:
        """One round: claim due holds, decide them; returns how many were released."""
        rows = await self.pool.fetch(
            """
            UPDATE decision_holds h
               SET next_attempt_at = now() + make_interval(secs => $1), attempts = attempts + 1
             WHERE task_id IN (SELECT task_id FROM decision_holds
                                WHERE next_attempt_at <= now()
                                ORDER BY held_at LIMIT $2 FOR UPDATE SKIP LOCKED)
            RETURNING h.task_id, h.envelope, h.trace_context
            """,
            self.lease_s, self.batch,
        )
        if not rows:
            return 0
        outcomes = await asyncio.gather(
            *(self._retry(row["task_id"], row["envelope"],
                          loaded_trace_context(row["trace_context"])) for row in rows),
            return_exceptions=True)
        for failure in (o for o in outcomes if isinstance(o, BaseException)):
            log.warning("retrying a held task failed (retried after its lease): %r", failure)
        count = sum(o is True for o in outcomes)
        if count:
            log.info("decided %d held tasks (%d still held)", count, len(rows) - count)
        return count

    async def _retry(self, task_id: uuid.UUID, blob: bytes,
                     carrier: dict[str, str] | None) -> bool:
        """Re-decide one held task in the task's own trace (stored with the hold), so its
        decision and everything after it stay in the trace its submission started."""
        task = TaskEnvelope.FromString(self.codec.open(task_id, blob, HOLD_ENVELOPE))
        with task_context(task.task_id), continue_trace(
                "decision hold retry", carrier, {"task.id": task.task_id}):
            try:
                result = await self.engine.assess(task, persist=True)
            except Overloaded:
                result = None
            if result is None or result.model_unavailable:
                await self.pool.execute(
                    "UPDATE decision_holds SET next_attempt_at = now() + make_interval(secs => $2)"
                    " WHERE task_id = $1", uuid.UUID(task.task_id), self.interval_s)
                return False
            assert self.commit is not None
            await self.commit(task, result, True)
            HOLDS_RELEASED.labels(task.tenant_id).inc()
            return True

    async def refresh_gauge(self) -> None:
        """Set the held-tasks gauge from PostgreSQL, per tenant; tenants with no hold left
        drop to 0."""
        counts = {row["tenant_id"]: row["n"] for row in await self.pool.fetch(
            "SELECT tenant_id, count(*) AS n FROM decision_holds GROUP BY tenant_id")}
        for tenant in self._gauge_tenants | counts.keys():
            HELD_NOW.labels(tenant).set(counts.get(tenant, 0))
        self._gauge_tenants |= counts.keys()


__all__ = ["HoldRetrier"]
