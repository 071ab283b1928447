"""The executor process: the decisions-topic agent; thin glue over ``runner``."""

from __future__ import annotations

import logging

from services.executor.connectors import SqlConnector
from services.executor.runner import PlanRunner
from switchyard._serde import decode
from switchyard._service import ServiceContext, run_service
from switchyard._settings import Settings
from switchyard._streams import Record
from switchyard._taskstore import publish_status, transition
from switchyard._telemetry import TASKS_TERMINAL, task_context
from switchyard._topics import DECISIONS, EXECUTIONS
from switchyard.v1 import Connector, Decision, DecisionOutcome, DecisionSource

log = logging.getLogger(__name__)


class DecisionExecutor:
    def __init__(self, ctx: ServiceContext, runner: PlanRunner) -> None:
        self.ctx = ctx
        self.runner = runner

    async def handle(self, record: Record) -> None:
        decision = decode(record.value, record.headers, Decision)
        with task_context(decision.task_id):
            if decision.outcome == DecisionOutcome.DECISION_OUTCOME_REJECT:
                by_human = decision.source == DecisionSource.DECISION_SOURCE_HUMAN
                await self._finish(decision, "CANCELLED" if by_human else "FAILED",
                                   f"rejected:{decision.rule}", decision.explanation)
                return
            if decision.outcome != DecisionOutcome.DECISION_OUTCOME_AUTO_EXECUTE:
                log.warning("ignoring decision %s with outcome %s", decision.decision_id,
                            DecisionOutcome.Name(decision.outcome))
                return
            await self._move(decision, "IN_PROGRESS", "EXECUTING", "executing")
            result = await self.runner.run(decision)
            for execution in result.results:
                await self.ctx.producer.send(EXECUTIONS, decision.task_id, execution)
            if result.succeeded:
                await self._finish(decision, "SUCCEEDED", "executed",
                                   f"{len(result.results)} step(s) done")
            else:
                await self._finish(decision, "FAILED", "execution_failed", result.failure)

    async def _move(self, decision: Decision, status: str, stage: str, reason: str,
                    detail: str = "") -> bool:
        async with self.ctx.pool.acquire() as conn:
            change = await transition(conn, decision.task_id, status, stage, "executor",
                                      reason, detail)
        if change is not None:
            await publish_status(self.ctx.producer, change.event)
        return change is not None

    async def _finish(self, decision: Decision, status: str, reason: str, detail: str) -> None:
        if await self._move(decision, status, "DONE", reason, detail):
            TASKS_TERMINAL.labels("executor", status).inc()


async def setup(ctx: ServiceContext) -> None:
    runner = PlanRunner(ctx.pool, {Connector.CONNECTOR_SQL: SqlConnector(ctx.pool)})
    ctx.consume(DECISIONS, DecisionExecutor(ctx, runner).handle)


async def main(settings: Settings, apply_migrations: bool = False) -> None:
    await run_service("executor", settings, settings.executor_grpc_port,
                      settings.executor_metrics_port, setup, apply_migrations=apply_migrations)
