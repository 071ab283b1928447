"""Run a decision's action plan: each step once, retried with backoff, results recorded.

Effects happen once: a step's idempotency key is ``<task_id>:<step_id>``, sent to the
downstream, and its result is stored in ``executions`` before the decision's offset is
committed; a redelivered decision finds finished steps there and skips them.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

import asyncpg
from google.protobuf.json_format import MessageToDict

from services.executor.connectors import Connector, StepCall, StepError
from switchyard._taskstore import timestamp
from switchyard.v1 import ActionStep, Decision, ExecutionResult, StepOutcome

DEFAULT_MAX_ATTEMPTS = 4
DEFAULT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class PlanResult:
    succeeded: bool
    results: list[ExecutionResult]
    failure: str = ""


def idempotency_key(task_id: str, step_id: str) -> str:
    return f"{task_id}:{step_id}"


def backoff_s(attempt: int, base_s: float = 0.1, cap_s: float = 5.0) -> float:
    """Exponential backoff with full jitter (AWS architecture blog's 'full jitter')."""
    return random.uniform(0, min(cap_s, base_s * 2 ** attempt))


class PlanRunner:
    def __init__(self, pool: asyncpg.Pool, connectors: dict[int, Connector]) -> None:
        self.pool = pool
        self.connectors = connectors

    async def run(self, decision: Decision) -> PlanResult:
        done = {
            row["step_id"]: ExecutionResult.FromString(row["result"])
            for row in await self.pool.fetch(
                "SELECT step_id, result FROM executions WHERE task_id = $1 AND outcome = $2",
                uuid.UUID(decision.task_id), StepOutcome.Name(StepOutcome.STEP_OUTCOME_SUCCEEDED),
            )
        }
        results: list[ExecutionResult] = []
        for step in decision.plan.steps:
            if step.step_id in done:
                results.append(done[step.step_id])
                continue
            result = await self._run_step(decision, step)
            await self._record(decision, result)
            results.append(result)
            if result.outcome != StepOutcome.STEP_OUTCOME_SUCCEEDED:
                return PlanResult(False, results, f"step {step.step_id}: {result.error}")
        return PlanResult(True, results)

    async def _run_step(self, decision: Decision, step: ActionStep) -> ExecutionResult:
        started = datetime.now(timezone.utc)
        key = idempotency_key(decision.task_id, step.step_id)
        connector = self.connectors.get(step.connector)
        max_attempts = step.max_attempts or DEFAULT_MAX_ATTEMPTS
        timeout_s = step.timeout.ToTimedelta().total_seconds() or DEFAULT_TIMEOUT_S
        call = StepCall(
            task_id=decision.task_id, tenant_id=decision.tenant_id, step_id=step.step_id,
            target=step.target, operation=step.operation,
            payload=MessageToDict(step.payload), idempotency_key=key, timeout_s=timeout_s,
        )
        outcome, error, summary, attempt = StepOutcome.STEP_OUTCOME_SUCCEEDED, "", "", 0
        if connector is None:
            outcome, error = StepOutcome.STEP_OUTCOME_FAILED_PERMANENT, \
                f"no connector configured for {step.connector}"
        else:
            while True:
                attempt += 1
                try:
                    summary = (await connector.call(call)).summary
                    break
                except StepError as exc:
                    error = str(exc)
                    if not exc.retryable:
                        outcome = StepOutcome.STEP_OUTCOME_FAILED_PERMANENT
                        break
                    if attempt >= max_attempts:
                        outcome = StepOutcome.STEP_OUTCOME_FAILED_RETRYABLE
                        break
                    await asyncio.sleep(backoff_s(attempt))
        return ExecutionResult(
            task_id=decision.task_id, tenant_id=decision.tenant_id, step_id=step.step_id,
            outcome=outcome, attempts=attempt, error=error, response_summary=summary,
            started_at=timestamp(started), finished_at=timestamp(datetime.now(timezone.utc)),
            idempotency_key=key,
        )

    async def _record(self, decision: Decision, result: ExecutionResult) -> None:
        await self.pool.execute(
            "INSERT INTO executions (task_id, step_id, idempotency_key, outcome, attempts, "
            "error, result) VALUES ($1,$2,$3,$4,$5,$6,$7) ON CONFLICT (task_id, step_id) DO "
            "UPDATE SET outcome = EXCLUDED.outcome, attempts = executions.attempts + "
            "EXCLUDED.attempts, error = EXCLUDED.error, result = EXCLUDED.result, "
            "finished_at = now()",
            uuid.UUID(decision.task_id), result.step_id, result.idempotency_key,
            StepOutcome.Name(result.outcome), result.attempts, result.error,
            result.SerializeToString(),
        )
