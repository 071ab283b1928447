"""The decision process: the tasks-topic agent and the sync Decide RPC over one batcher."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta, timezone

import grpc
import pybreaker

from services.decision.batcher import MicroBatcher, Overloaded
from services.decision.engine import DecisionEngine
from services.decision.policy import Outcome, Policy
from services.decision.triton import RouterClient
from switchyard._auth import Role
from switchyard._serde import decode
from switchyard._service import ServiceContext, run_service
from switchyard._settings import Settings
from switchyard._streams import Record
from switchyard._taskstore import publish_status, timestamp, transition
from switchyard._telemetry import task_context
from switchyard._topics import DECISIONS, ESCALATIONS, TASKS
from switchyard.v1 import (
    DecideRequest,
    DecideResponse,
    Decision,
    DecisionOutcome,
    DecisionServiceServicer,
    Escalation,
    EscalationReason,
    TaskEnvelope,
    add_DecisionServiceServicer_to_server,
)

log = logging.getLogger(__name__)
SERVICE_NAME = "switchyard.v1.DecisionService"
POLICY = {f"/{SERVICE_NAME}/Decide": frozenset({Role.SUBMITTER})}
SLA_BY_PRIORITY = {0: timedelta(minutes=15), 1: timedelta(hours=1), 2: timedelta(hours=4),
                   3: timedelta(hours=24)}


def escalation_for(task: TaskEnvelope, decision: Decision, outcome: Outcome,
                   queue: str) -> Escalation:
    priority = max(0, min(3, outcome.priority))
    sla = datetime.now(timezone.utc) + SLA_BY_PRIORITY[priority]
    if task.HasField("deadline"):
        sla = min(sla, task.deadline.ToDatetime(timezone.utc))
    return Escalation(
        escalation_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"escalation:{decision.decision_id}")),
        task_id=task.task_id, tenant_id=task.tenant_id, queue=queue,
        priority=priority + 1,  # type: ignore[arg-type]  # REVIEW_PRIORITY_P0 == 1
        reason=EscalationReason.Value(f"ESCALATION_REASON_{outcome.escalation_reason}"),
        reason_detail=decision.explanation, proposed_decision=decision,
        sla_deadline=timestamp(sla), task=task, service="decision",
    )


class TaskDecider:
    """Kafka path: decide each task once, persist the decision, hand it on."""

    def __init__(self, ctx: ServiceContext, engine: DecisionEngine) -> None:
        self.ctx = ctx
        self.engine = engine

    async def handle(self, record: Record) -> None:
        task = decode(record.value, record.headers, TaskEnvelope)
        with task_context(task.task_id):
            existing = await self.ctx.pool.fetchrow(
                "SELECT decision FROM decisions WHERE task_id = $1 AND source = 'MODEL'",
                uuid.UUID(task.task_id),
            )
            if existing is not None:
                # Redelivered after the decision was stored: re-send it (consumers dedupe),
                # never decide twice.
                decision = Decision.FromString(existing["decision"])
                outcome = None
            else:
                decision, outcome = await self.engine.decide(task)
            await self._commit_and_publish(task, decision, outcome)

    async def _commit_and_publish(self, task: TaskEnvelope, decision: Decision,
                                  outcome: Outcome | None) -> None:
        outcome_name = DecisionOutcome.Name(decision.outcome).removeprefix("DECISION_OUTCOME_")
        status, stage, reason = {
            "AUTO_EXECUTE": ("IN_PROGRESS", "EXECUTING", decision.rule),
            "ESCALATE": ("BLOCKED", "AWAITING_REVIEW", decision.rule),
            "REJECT": ("FAILED", "DONE", f"rejected:{decision.rule}"),
        }[outcome_name]
        change = None
        if outcome is not None:
            async with self.ctx.pool.acquire() as conn, conn.transaction():
                inserted = await conn.fetchrow(
                    "INSERT INTO decisions (decision_id, task_id, tenant_id, source, outcome, "
                    "confidence, rule, explanation, decision) VALUES ($1,$2,$3,'MODEL',$4,$5,$6,"
                    "$7,$8) ON CONFLICT DO NOTHING RETURNING decision_id",
                    uuid.UUID(decision.decision_id), uuid.UUID(task.task_id), task.tenant_id,
                    outcome_name, decision.confidence, decision.rule, decision.explanation,
                    decision.SerializeToString(),
                )
                if inserted is not None:
                    change = await transition(conn, task.task_id, status, stage, "decision",
                                              reason, decision.explanation)
        if outcome_name == "AUTO_EXECUTE":
            await self.ctx.producer.send(DECISIONS, task.task_id, decision)
        elif outcome_name == "ESCALATE":
            queue = self.engine.policy.review_queue
            if outcome is None:
                outcome = Outcome("escalate", decision.rule, decision.explanation,
                                  decision.confidence, decision.label, "OTHER", task.priority)
            await self.ctx.producer.send(ESCALATIONS, task.task_id,
                                         escalation_for(task, decision, outcome, queue))
        if change is not None:
            await publish_status(self.ctx.producer, change.event)


class DecisionServicer(DecisionServiceServicer):
    def __init__(self, engine: DecisionEngine) -> None:
        self.engine = engine

    async def Decide(self, request: DecideRequest,
                     context: grpc.aio.ServicerContext) -> DecideResponse:
        if not request.task.document.body:
            from switchyard._grpc import FieldViolation, abort_invalid

            await abort_invalid(context, [FieldViolation("task.document.body", "required")])
        try:
            decision, _ = await self.engine.decide(request.task)
        except Overloaded as exc:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"{exc}; retry shortly",
                                trailing_metadata=(("retry-after-ms", "200"),))
        return DecideResponse(decision=decision)


async def setup(ctx: ServiceContext) -> None:
    settings = ctx.settings
    breaker = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=10, name="triton")
    router = RouterClient(settings.triton_url, settings.triton_timeout_s, breaker)
    await router.load_metadata()
    batcher: MicroBatcher = MicroBatcher(
        "document_router", router.predict, settings.batch_max_size,
        settings.batch_max_delay_ms / 1000, settings.batch_queue_limit,
    )
    await batcher.start()
    engine = DecisionEngine(batcher, Policy(auto_execute_threshold=settings.auto_execute_threshold))
    ctx.consume(TASKS, TaskDecider(ctx, engine).handle, batch_size=settings.batch_max_size)
    ctx.serve((add_DecisionServiceServicer_to_server, DecisionServicer(engine), SERVICE_NAME),
              POLICY)
    ctx.on_stop.append(router.close)  # hooks run in reverse: the batcher drains first
    ctx.on_stop.append(batcher.stop)


async def main(settings: Settings, apply_migrations: bool = False) -> None:
    await run_service("decision", settings, settings.decision_grpc_port,
                      settings.decision_metrics_port, setup, apply_migrations=apply_migrations)
