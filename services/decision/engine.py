"""Turn a task into a Decision protobuf: route, assess invoices, apply the tenant's policy.

Shared by the Kafka path and the sync Decide RPC; both reach Triton through the same
micro-batchers (one per model). For a document the router calls an invoice, the fields are
extracted, the vendor's history is read and the invoice_risk model scores them; the shadow
router (if configured) sees the document too, off the critical path.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timezone

from google.protobuf.timestamp_pb2 import Timestamp

from services.decision.batcher import MicroBatcher, Overloaded
from services.decision.drift import DriftMonitor
from services.decision.extraction import extract_invoice, vendor_key
from services.decision.invoices import (
    UNKNOWN,
    HistoryStore,
    InvoiceAssessment,
    received_date,
    risk_inputs,
)
from services.decision.policies import PolicySet
from services.decision.policy import (
    Outcome,
    PlanStep,
    Policy,
    decide,
    step_payload,
    unavailable,
)
from services.decision.shadow import ShadowRunner
from services.decision.triton import ModelUnavailable, Prediction
from switchyard._priority import task_bucket
from switchyard.v1 import (
    ActionPlan,
    CompensationStep,
    Connector,
    Decision,
    DecisionOutcome,
    DecisionSource,
    FieldExtraction,
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


def build_plan(task: TaskEnvelope, steps: tuple[PlanStep, ...],
               fields: dict[str, str] | None = None) -> ActionPlan:
    values: dict[str, object] = {"task_id": task.task_id, "kind": task.kind,
                                 "metadata": dict(task.metadata)}
    if fields:
        values["fields"] = fields
    plan = ActionPlan()
    for index, step in enumerate(steps, start=1):
        action = plan.steps.add(
            step_id=f"{index}-{step.name}", name=step.name, connector=Connector.CONNECTOR_SQL,
            target=step.target, operation=step.name, payload=step_payload(values))
        if step.compensate:
            action.compensation.CopyFrom(CompensationStep(
                name=f"undo_{step.name}", connector=Connector.CONNECTOR_SQL,
                target=step.compensate, operation="DELETE",
                payload=step_payload({"task_id": task.task_id, "undoes": step.name})))
    return plan


def _model_output(p: Prediction) -> ModelOutput:
    return ModelOutput(model_name=p.model_name, model_version=p.model_version, label=p.label,
                       confidence=p.confidence, scores=p.scores)


def to_decision(task: TaskEnvelope, outcome: Outcome, prediction: Prediction | None,
                policy: Policy, assessment: InvoiceAssessment | None = None) -> Decision:
    now = Timestamp()
    now.GetCurrentTime()
    # Escalations carry the plan the label would run, so an approving reviewer runs it.
    steps = outcome.steps or policy.plans.get(outcome.label, ())
    fields = ({name: f.value for name, f in assessment.extraction.fields.items()}
              if assessment is not None else None)
    decision = Decision(
        decision_id=str(uuid.uuid4()), task_id=task.task_id, tenant_id=task.tenant_id,
        outcome=_OUTCOMES[outcome.action], confidence=outcome.confidence, rule=outcome.rule,
        explanation=outcome.explanation, plan=build_plan(task, steps, fields),
        source=DecisionSource.DECISION_SOURCE_MODEL, decided_at=now, label=outcome.label,
        review_queue=policy.review_queue,
    )
    if prediction is not None:
        decision.models.append(_model_output(prediction))
    if assessment is not None:
        decision.models.append(_model_output(assessment.risk))
        decision.fields.extend(FieldExtraction(name=f.name, value=f.value,
                                               confidence=f.confidence)
                               for f in assessment.extraction.fields.values())
        decision.fields.append(FieldExtraction(name="extraction_confidence",
                                               value=f"{assessment.extraction.confidence:.3f}",
                                               confidence=assessment.extraction.confidence))
        decision.extracted_fields.update(fields or {})
    return decision


@dataclass(frozen=True)
class Decided:
    decision: Decision
    outcome: Outcome
    policy: Policy
    assessment: InvoiceAssessment | None = None

    @property
    def model_unavailable(self) -> bool:
        return self.outcome.rule == "model_unavailable"


class DecisionEngine:
    def __init__(self, router: MicroBatcher[str, Prediction], policies: PolicySet | Policy,
                 risk: MicroBatcher[list[float], Prediction] | None = None,
                 history: HistoryStore | None = None, shadow: ShadowRunner | None = None,
                 router_drift: DriftMonitor | None = None,
                 risk_drift: DriftMonitor | None = None) -> None:
        self.router = router
        self.policies = policies if isinstance(policies, PolicySet) else PolicySet(policies)
        self.risk = risk
        self.history = history
        self.shadow = shadow
        self.router_drift = router_drift
        self.risk_drift = risk_drift

    @property
    def policy(self) -> Policy:
        """The default policy (tenants without their own)."""
        return self.policies.default

    async def decide(self, task: TaskEnvelope, persist: bool = False) -> tuple[Decision, Outcome]:
        """Raises ``Overloaded`` when a batcher is full (callers push back)."""
        result = await self.assess(task, persist)
        return result.decision, result.outcome

    async def assess(self, task: TaskEnvelope, persist: bool = False) -> Decided:
        """Decide ``task``; ``persist`` marks tasks of the system of record (Kafka path)."""
        policy = self.policies.for_tenant(task.tenant_id)
        text = document_text(task)
        try:
            prediction = await self.router.submit(text)
        except ModelUnavailable as exc:
            return self._unavailable(task, policy, str(exc))
        if self.shadow is not None:
            self.shadow.observe(task.task_id, task.tenant_id, text, prediction, persist)
        if self.router_drift is not None:
            self.router_drift.observe({"text_length_chars": len(text),
                                       "predicted_class": prediction.label,
                                       "max_prob": prediction.confidence})
        assessment = None
        if prediction.label == "invoice" and self.risk is not None:
            try:
                assessment = await self._assess_invoice(task, text)
            except ModelUnavailable as exc:
                return self._unavailable(task, policy, str(exc), prediction)
        outcome = decide(task.kind, prediction, policy, task_bucket(task), invoice=assessment)
        return Decided(to_decision(task, outcome, prediction, policy, assessment), outcome,
                       policy, assessment)

    async def _assess_invoice(self, task: TaskEnvelope, text: str) -> InvoiceAssessment:
        assert self.risk is not None
        extraction = extract_invoice(text)
        history = (await self.history.lookup(task.tenant_id, extraction, task.task_id)
                   if self.history is not None else UNKNOWN)
        received = task.received_at.ToDatetime(timezone.utc) if task.HasField("received_at") \
            else None
        inputs = risk_inputs(extraction, history, received_date(received, task.metadata))
        risk = await self.risk.submit(list(inputs.values()))
        if self.risk_drift is not None:
            self.risk_drift.observe({**inputs, "p_auto": risk.confidence})
        return InvoiceAssessment(extraction, history, inputs, risk,
                                 vendor_key(extraction.get("vendor") or ""))

    def _unavailable(self, task: TaskEnvelope, policy: Policy, reason: str,
                     prediction: Prediction | None = None) -> Decided:
        outcome = unavailable(task.kind, reason, task_bucket(task))
        return Decided(to_decision(task, outcome, prediction, policy), outcome, policy)


__all__ = ["Decided", "DecisionEngine", "Overloaded", "build_plan", "to_decision"]
