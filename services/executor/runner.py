"""Run a decision's action plan: each step once, retried with backoff, compensated on failure.

Effects happen once: a step's idempotency key is ``<task_id>:<step_id>`` (a compensation's is
``<task_id>:<step_id>:compensate``), sent to the downstream, and its result is stored in
``executions`` before the decision's offset is committed; a redelivered or resumed decision
finds finished steps there and skips them, and the downstream deduplicates the one call that
may have landed without its result being recorded.

A run ends in one of four ways:

* ``succeeded``: every step done.
* ``blocked``: a step met an open breaker, ran out of inline retries, or was told to come back
  later than the inline backoff allows; the caller parks the task (nothing is retried in a
  loop here) and a resumer runs it again later.
* ``needs_compensation``: a step failed permanently; :meth:`PlanRunner.compensate` undoes the
  finished steps in reverse order (a saga) and the task ends FAILED with the cause.
* ``compensation_failed``: a compensation failed permanently; a person has to look.

A step found already done is not called again; the run publishes an ``ExecutionResult`` with
``STEP_OUTCOME_SKIPPED_DUPLICATE`` for it (each time the decision runs again), so consumers
of the ``executions`` topic see every run's view of every step.

A cancellation requested for the task (``cancellation_requests``, written by ingest's
CancelTask) is checked before each step: no further step runs, and the finished ones are
compensated like after a failure; the caller then ends the task CANCELLED.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg
from google.protobuf.json_format import MessageToDict
from prometheus_client import Counter

from services.executor.breakers import BreakerBoard, BreakerOpen
from services.executor.connectors import Connector, StepCall, StepError
from services.executor.endpoints import (
    InvalidTarget,
    Route,
    Router,
    substitute,
    substitute_all,
)
from switchyard._audit import append as audit_append
from switchyard._audit import digest
from switchyard._taskstore import timestamp
from switchyard.v1 import ActionStep, Decision, ExecutionResult, StepOutcome

SUCCEEDED_NAME = StepOutcome.Name(StepOutcome.STEP_OUTCOME_SUCCEEDED)
PERMANENT_NAME = StepOutcome.Name(StepOutcome.STEP_OUTCOME_FAILED_PERMANENT)
COMPENSATED_NAME = StepOutcome.Name(StepOutcome.STEP_OUTCOME_COMPENSATED)
COMPENSATION_PREFIX = "compensate:"
MAX_PARK_DELAY_S = 600.0

STEP_CALLS = Counter(
    "switchyard_executor_step_calls_total",
    "Downstream calls made for plan steps and compensations, by endpoint and result.",
    ["endpoint", "result"],
)


@dataclass(frozen=True)
class RetryConfig:
    max_attempts: int = 4
    backoff_base_s: float = 0.2
    backoff_cap_s: float = 5.0
    retry_park_s: float = 5.0
    timeouts: dict[int, float] = field(default_factory=dict)  # per connector
    default_timeout_s: float = 10.0


@dataclass(frozen=True)
class Blocked:
    """Why and until when a task waits: ``kind`` 'breaker' (until the endpoint's breaker
    closes) or 'retry' (until ``retry_at``)."""

    kind: str
    endpoint: str
    reason: str
    detail: str
    retry_at: datetime


@dataclass
class PlanResult:
    outcome: str  # succeeded | blocked | needs_compensation | failed | compensation_failed
    results: list[ExecutionResult] = field(default_factory=list)
    cause: str = ""
    blocked: Blocked | None = None
    compensated: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Attempted:
    outcome: int
    calls: int
    summary: str = ""
    error: str = ""
    blocked: Blocked | None = None


def idempotency_key(task_id: str, step_id: str) -> str:
    return f"{task_id}:{step_id}"


def compensation_key(task_id: str, step_id: str) -> str:
    return f"{task_id}:{step_id}:compensate"


def backoff_s(attempt: int, base_s: float = 0.2, cap_s: float = 5.0) -> float:
    """Exponential backoff with full jitter (AWS architecture blog's 'full jitter'):
    uniform in [0, min(cap, base * 2^attempt)], so retrying clients spread out."""
    return random.uniform(0, min(cap_s, base_s * 2 ** attempt))


def park_delay_s(parks: int, first_s: float) -> float:
    """How long a task whose inline retries ran out waits: doubling per park, jittered."""
    return min(MAX_PARK_DELAY_S, first_s * 2 ** min(parks, 16)) * random.uniform(0.5, 1.0)


class PlanRunner:
    def __init__(self, pool: asyncpg.Pool, router: Router, connectors: dict[int, Connector],
                 breakers: BreakerBoard, config: RetryConfig) -> None:
        self.pool = pool
        self.router = router
        self.connectors = connectors
        self.breakers = breakers
        self.config = config

    # -- validation ---------------------------------------------------------------------------
    def validate(self, decision: Decision) -> list[str]:
        """Problems that make the plan unrunnable as a whole (checked before any effect)."""
        problems: list[str] = []
        seen: set[str] = set()
        for index, step in enumerate(decision.plan.steps):
            where = f"plan.steps[{index}]"
            if not step.step_id:
                problems.append(f"{where}.step_id: required")
            elif step.step_id in seen:
                problems.append(f"{where}.step_id: duplicate {step.step_id!r}")
            elif step.step_id.startswith(COMPENSATION_PREFIX):
                problems.append(f"{where}.step_id: must not start with {COMPENSATION_PREFIX!r}")
            seen.add(step.step_id)
            try:
                self._route(step.connector, step.target)
            except InvalidTarget as exc:
                problems.append(f"{where}.target: {exc}")
            if step.HasField("compensation") and step.compensation.target:
                try:
                    self._route(step.compensation.connector,
                                self._compensation_target(decision, step))
                except InvalidTarget as exc:
                    problems.append(f"{where}.compensation.target: {exc}")
        return problems

    def _route(self, connector: int, target: str) -> Route:
        route = self.router.route(connector, target)
        if route.connector not in self.connectors:
            raise InvalidTarget(f"no connector configured for {route.endpoint}")
        return route

    @staticmethod
    def _placeholders(decision: Decision, step: ActionStep) -> dict[str, str]:
        return {"task_id": decision.task_id, "step_id": step.step_id,
                "idempotency_key": idempotency_key(decision.task_id, step.step_id)}

    def _compensation_target(self, decision: Decision, step: ActionStep) -> str:
        return substitute(step.compensation.target, self._placeholders(decision, step))

    # -- forward ------------------------------------------------------------------------------
    async def _recorded(self, task_id: str) -> dict[str, asyncpg.Record]:
        rows = await self.pool.fetch(
            "SELECT step_id, outcome, error, result FROM executions WHERE task_id = $1",
            uuid.UUID(task_id))
        return {row["step_id"]: row for row in rows}

    async def run(self, decision: Decision, probe: str = "", parks: int = 0) -> PlanResult:
        """Run the steps not yet done, in order; see the module doc for the outcomes."""
        recorded = await self._recorded(decision.task_id)
        cause = self._recorded_failure(decision, recorded)
        if cause:
            return PlanResult("needs_compensation", cause=cause)
        results: list[ExecutionResult] = []
        for step in decision.plan.steps:
            row = recorded.get(step.step_id)
            if row is not None and row["outcome"] == SUCCEEDED_NAME:
                results.append(self._skipped(decision, step.step_id, idempotency_key(
                    decision.task_id, step.step_id)))
                continue
            cancelled = await self.cancellation(decision.task_id)
            if cancelled is not None:
                return PlanResult("needs_compensation", results, cause=cancelled)
            route = self._route(step.connector, step.target)
            call = self._call(decision, step.step_id, step.name, route, step.target,
                              step.operation, MessageToDict(step.payload),
                              idempotency_key(decision.task_id, step.step_id), step)
            attempted = await self._attempt(call, route, step.max_attempts, probe, parks)
            if attempted.calls:
                results.append(await self._record(decision, step.step_id, call, attempted))
            if attempted.blocked is not None:
                return PlanResult("blocked", results, blocked=attempted.blocked)
            if attempted.outcome == StepOutcome.STEP_OUTCOME_FAILED_PERMANENT:
                return PlanResult("needs_compensation", results,
                                  cause=f"step {step.step_id} failed permanently: "
                                        f"{attempted.error}")
        return PlanResult("succeeded", results)

    async def cancellation(self, task_id: str) -> str | None:
        """Why the task is to be cancelled, when someone asked; None otherwise."""
        reason = await self.pool.fetchval(
            "SELECT reason FROM cancellation_requests WHERE task_id = $1", uuid.UUID(task_id))
        return None if reason is None else f"cancelled: {reason or 'no reason given'}"

    @staticmethod
    def _recorded_failure(decision: Decision, recorded: dict[str, asyncpg.Record]) -> str:
        for step in decision.plan.steps:
            row = recorded.get(step.step_id)
            if row is not None and row["outcome"] == PERMANENT_NAME:
                return f"step {step.step_id} failed permanently: {row['error']}"
        if any(row["outcome"] == COMPENSATED_NAME for row in recorded.values()):
            return "a saga was already under way"
        return ""

    # -- saga ---------------------------------------------------------------------------------
    async def compensate(self, decision: Decision, cause: str, probe: str = "",
                         parks: int = 0) -> PlanResult:
        """Undo the finished steps in reverse order, recording each compensation."""
        recorded = await self._recorded(decision.task_id)
        results: list[ExecutionResult] = []
        compensated: list[str] = []
        took_effect = [s for s in decision.plan.steps if (row := recorded.get(s.step_id))
                       is not None and row["outcome"] in (SUCCEEDED_NAME, COMPENSATED_NAME)]
        for step in reversed(took_effect):
            if not (step.HasField("compensation") and step.compensation.target):
                continue  # nothing to undo with (e.g. a notification)
            comp_id = f"{COMPENSATION_PREFIX}{step.step_id}"
            done = recorded.get(comp_id)
            if done is not None and done["outcome"] == SUCCEEDED_NAME:
                results.append(self._skipped(decision, comp_id, compensation_key(
                    decision.task_id, step.step_id)))
                compensated.append(step.step_id)
                continue
            comp = step.compensation
            target = self._compensation_target(decision, step)
            route = self._route(comp.connector, target)
            payload = substitute_all(MessageToDict(comp.payload),
                                     self._placeholders(decision, step))
            call = self._call(decision, comp_id, comp.name, route, target, comp.operation,
                              payload,
                              compensation_key(decision.task_id, step.step_id), step)
            attempted = await self._attempt(call, route, step.max_attempts, probe, parks)
            if attempted.calls:
                results.append(await self._record(decision, comp_id, call, attempted))
            if attempted.blocked is not None:
                return PlanResult("blocked", results, cause=cause, blocked=attempted.blocked,
                                  compensated=compensated)
            if attempted.outcome != StepOutcome.STEP_OUTCOME_SUCCEEDED:
                return PlanResult(
                    "compensation_failed", results, compensated=compensated,
                    cause=f"{cause}; compensation of step {step.step_id} failed: "
                          f"{attempted.error}")
            results.append(await self._mark_compensated(decision, step.step_id))
            compensated.append(step.step_id)
        undone = ", ".join(compensated) if compensated else "nothing to undo"
        return PlanResult("failed", results, cause=f"{cause}; compensated: {undone}",
                          compensated=compensated)

    # -- one call with retries ----------------------------------------------------------------
    def _call(self, decision: Decision, step_id: str, name: str, route: Route, target: str,
              operation: str, payload: dict[str, Any], key: str, step: ActionStep) -> StepCall:
        timeout_s = step.timeout.ToTimedelta().total_seconds() if step.HasField("timeout") \
            else 0.0
        return StepCall(
            task_id=decision.task_id, tenant_id=decision.tenant_id, step_id=step_id,
            target=target, address=route.address, method=route.method,
            operation=operation or name, payload=payload, idempotency_key=key,
            timeout_s=timeout_s or self.config.timeouts.get(route.connector,
                                                            self.config.default_timeout_s),
        )

    async def _attempt(self, call: StepCall, route: Route, step_max_attempts: int, probe: str,
                       parks: int) -> _Attempted:
        connector = self.connectors[route.connector]
        max_attempts = step_max_attempts or self.config.max_attempts
        endpoint = route.endpoint
        calls = 0
        while True:
            try:
                self.breakers.check(endpoint, probe=probe == endpoint)
                calls += 1
                try:
                    with self.breakers.calling(endpoint):
                        outcome = await connector.call(call)
                finally:
                    await self.breakers.flush()
            except BreakerOpen as exc:
                STEP_CALLS.labels(endpoint, "breaker_open").inc()
                return _Attempted(StepOutcome.STEP_OUTCOME_FAILED_RETRYABLE, calls,
                                  error=str(exc), blocked=Blocked(
                                      "breaker", endpoint, f"breaker_open:{endpoint}", str(exc),
                                      exc.retry_at))
            except StepError as exc:
                if not exc.retryable:
                    STEP_CALLS.labels(endpoint, "permanent").inc()
                    return _Attempted(StepOutcome.STEP_OUTCOME_FAILED_PERMANENT, calls,
                                      error=str(exc))
                STEP_CALLS.labels(endpoint, "retryable").inc()
                now = datetime.now(timezone.utc)
                if calls >= max_attempts:
                    return _Attempted(StepOutcome.STEP_OUTCOME_FAILED_RETRYABLE, calls,
                                      error=str(exc), blocked=Blocked(
                                          "retry", endpoint, f"retries_exhausted:{endpoint}",
                                          f"{calls} attempt(s), last: {exc}",
                                          now + timedelta(seconds=park_delay_s(
                                              parks, self.config.retry_park_s))))
                delay = exc.retry_after_s if exc.retry_after_s is not None else backoff_s(
                    calls, self.config.backoff_base_s, self.config.backoff_cap_s)
                if delay > self.config.backoff_cap_s:
                    return _Attempted(StepOutcome.STEP_OUTCOME_FAILED_RETRYABLE, calls,
                                      error=str(exc), blocked=Blocked(
                                          "retry", endpoint, f"rate_limited:{endpoint}",
                                          f"asked to retry after {delay:.0f}s: {exc}",
                                          now + timedelta(seconds=delay)))
                await asyncio.sleep(delay)
                continue
            STEP_CALLS.labels(endpoint, "duplicate" if outcome.duplicate else "ok").inc()
            return _Attempted(StepOutcome.STEP_OUTCOME_SUCCEEDED, calls, summary=outcome.summary)

    # -- records ------------------------------------------------------------------------------
    @staticmethod
    def _skipped(decision: Decision, step_id: str, key: str) -> ExecutionResult:
        """What a run publishes for a step (or compensation) it finds already done: the
        decision ran again (redelivered, resumed after parking, taken over from a dead
        replica) and the step is not called again. Published only; the ``executions`` row
        keeps the outcome of the run that did it."""
        now = timestamp(datetime.now(timezone.utc))
        return ExecutionResult(
            task_id=decision.task_id, tenant_id=decision.tenant_id, step_id=step_id,
            outcome=StepOutcome.STEP_OUTCOME_SKIPPED_DUPLICATE, attempts=0,
            response_summary="already done by an earlier run; not called again",
            started_at=now, finished_at=now, idempotency_key=key)

    async def _record(self, decision: Decision, step_id: str, call: StepCall,
                      attempted: _Attempted) -> ExecutionResult:
        now = datetime.now(timezone.utc)
        result = ExecutionResult(
            task_id=decision.task_id, tenant_id=decision.tenant_id, step_id=step_id,
            outcome=attempted.outcome, attempts=attempted.calls, error=attempted.error,  # type: ignore[arg-type]
            response_summary=attempted.summary, started_at=timestamp(now),
            finished_at=timestamp(now), idempotency_key=call.idempotency_key,
        )
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO executions (task_id, step_id, idempotency_key, outcome, attempts, "
                "error, result) VALUES ($1,$2,$3,$4,$5,$6,$7) ON CONFLICT (task_id, step_id) DO "
                "UPDATE SET outcome = EXCLUDED.outcome, attempts = executions.attempts + "
                "EXCLUDED.attempts, error = EXCLUDED.error, result = EXCLUDED.result, "
                "finished_at = now()",
                uuid.UUID(decision.task_id), step_id, call.idempotency_key,
                StepOutcome.Name(attempted.outcome), attempted.calls, attempted.error,
                result.SerializeToString(),
            )
            action = ("compensation.executed" if step_id.startswith(COMPENSATION_PREFIX)
                      else "step.executed")
            await audit_append(conn, decision.tenant_id, "executor", action, {
                "step_id": step_id, "target": call.target, "operation": call.operation,
                "outcome": StepOutcome.Name(attempted.outcome), "attempts": attempted.calls,
                "idempotency_key": call.idempotency_key, "decision_id": decision.decision_id,
                "error_sha256": digest(attempted.error) if attempted.error else "",
            }, decision.task_id)
        return result

    async def _mark_compensated(self, decision: Decision, step_id: str) -> ExecutionResult:
        row = await self.pool.fetchrow(
            "SELECT result FROM executions WHERE task_id = $1 AND step_id = $2",
            uuid.UUID(decision.task_id), step_id)
        result = ExecutionResult.FromString(row["result"]) if row else ExecutionResult(
            task_id=decision.task_id, tenant_id=decision.tenant_id, step_id=step_id)
        result.outcome = StepOutcome.STEP_OUTCOME_COMPENSATED
        result.finished_at.CopyFrom(timestamp(datetime.now(timezone.utc)))
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE executions SET outcome = $3, result = $4, finished_at = now() "
                "WHERE task_id = $1 AND step_id = $2",
                uuid.UUID(decision.task_id), step_id, COMPENSATED_NAME,
                result.SerializeToString())
            await audit_append(conn, decision.tenant_id, "executor", "step.compensated",
                               {"step_id": step_id, "decision_id": decision.decision_id},
                               decision.task_id)
        return result
