"""Turn a task into a Decision protobuf: route with the model, then apply the tenant's policy.

Shared by the Kafka path and the sync Decide RPC; both reach Triton through one batcher.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

from google.protobuf.timestamp_pb2 import Timestamp

from services.decision.batcher import MicroBatcher, Overloaded
from services.decision.policy import Outcome, Policy, decide, step_payload
from services.decision.triton import ModelUnavailable, Prediction
from switchyard.v1 import (
    ActionPlan,
    ActionStep,
    Connector,
    Decision,
    DecisionOutcome,
    DecisionSource,
    ModelOutput,
    TaskEnvelope,
)

_OUTCOMES = {
    "auto_execute": DecisionOutcome.DECISION_OUTCOME_AUTO_EXECUTE,
    "escalate": DecisionOutcome.DECISION_OUTCOME_ESCALATE,
    "reject": DecisionOutcome.DECISION_OUTCOME_REJECT,
}
MAX_TEXT_CHARS = 20_000  # the router reads the head of long documents


def document_text(task: TaskEnvelope) -> str:
    return task.document.body.decode("utf-8", errors="replace")[:MAX_TEXT_CHARS]


def build_plan(task: TaskEnvelope, steps: tuple[tuple[str, str], ...]) -> ActionPlan:
    return ActionPlan(steps=[
        ActionStep(
            step_id=f"{index}-{name}", name=name, connector=Connector.CONNECTOR_SQL,
            target=target, operation=name,
            payload=step_payload({"task_id": task.task_id, "kind": task.kind,
                                  "metadata": dict(task.metadata)}),
        )
        for index, (name, target) in enumerate(steps, start=1)
    ])


def to_decision(task: TaskEnvelope, outcome: Outcome, prediction: Prediction | None,
                policy: Policy) -> Decision:
    now = Timestamp()
    now.FromDatetime(datetime.now(timezone.utc))
    # Escalations carry the plan the label would run, so an approving reviewer runs it.
    steps = outcome.steps or policy.plans.get(outcome.label, ())
    decision = Decision(
        decision_id=str(uuid.uuid4()), task_id=task.task_id, tenant_id=task.tenant_id,
        outcome=_OUTCOMES[outcome.action], confidence=outcome.confidence, rule=outcome.rule,
        explanation=outcome.explanation, plan=build_plan(task, steps),
        source=DecisionSource.DECISION_SOURCE_MODEL, decided_at=now, label=outcome.label,
    )
    if prediction is not None:
        decision.models.append(ModelOutput(
            model_name=prediction.model_name, model_version=prediction.model_version,
            label=prediction.label, confidence=prediction.confidence,
            scores=prediction.scores,
        ))
    return decision


class DecisionEngine:
    def __init__(self, router: MicroBatcher[str, Prediction], policy: Policy) -> None:
        self.router = router
        self.policy = policy

    async def decide(self, task: TaskEnvelope) -> tuple[Decision, Outcome]:
        """Raises ``Overloaded`` when the batcher is full (callers push back)."""
        prediction: Prediction | None
        try:
            prediction = await self.router.submit(document_text(task))
            unavailable = ""
        except ModelUnavailable as exc:
            prediction, unavailable = None, str(exc)
        outcome = decide(task.kind, prediction, self.policy, task.priority, unavailable)
        return to_decision(task, outcome, prediction, self.policy), outcome


__all__ = ["DecisionEngine", "Overloaded", "build_plan", "to_decision"]
