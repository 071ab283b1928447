"""Decisions the review service hands the executor.

A reviewer's verdict becomes a decision with source=HUMAN and the reviewer's id; a default
action taken by the storm or expiry policy becomes one with source=POLICY. Either way the
executor runs it like any other decision: approve runs the proposed plan, reject ends the task.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

from google.protobuf.timestamp_pb2 import Timestamp

from switchyard.v1 import (
    Decision,
    DecisionOutcome,
    DecisionSource,
    Escalation,
    FieldExtraction,
    ReviewVerdict,
    Verdict,
)


def _now() -> Timestamp:
    now = Timestamp()
    now.FromDatetime(datetime.now(timezone.utc))
    return now


def _fill_field_map(decision: Decision, proposed: Decision) -> Decision:
    """``extracted_fields`` as the contract says: the proposed decision's map, overlaid with
    ``fields`` as this decision carries them (so a reviewer's modifications win)."""
    decision.extracted_fields.update(proposed.extracted_fields)
    decision.extracted_fields.update({f.name: f.value for f in decision.fields})
    return decision


def verdict_decision(escalation: Escalation, verdict: ReviewVerdict) -> Decision:
    """Approve runs the proposed plan; modify runs it with the edited fields; reject ends it."""
    proposed = escalation.proposed_decision
    decision = Decision(
        decision_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"verdict:{verdict.item_id}")),
        task_id=escalation.task_id, tenant_id=escalation.tenant_id,
        source=DecisionSource.DECISION_SOURCE_HUMAN, reviewer_id=verdict.reviewer_id,
        decided_at=_now(), confidence=1.0, label=proposed.label,
        review_queue=escalation.queue or proposed.review_queue,
    )
    decision.models.extend(proposed.models)
    decision.fields.extend(proposed.fields)
    name = Verdict.Name(verdict.verdict).removeprefix("VERDICT_").lower()
    decision.rule = f"reviewer_{name}"
    reason = f": {verdict.reason}" if verdict.reason else ""
    if verdict.verdict == Verdict.VERDICT_REJECT:
        decision.outcome = DecisionOutcome.DECISION_OUTCOME_REJECT
        decision.explanation = f"Rejected by {verdict.reviewer_id}{reason}"
        return _fill_field_map(decision, proposed)
    decision.outcome = DecisionOutcome.DECISION_OUTCOME_AUTO_EXECUTE
    decision.plan.CopyFrom(proposed.plan)
    if verdict.verdict == Verdict.VERDICT_MODIFY:
        for step in decision.plan.steps:
            step.payload.update({"modified_fields": dict(verdict.modified_fields)})
        existing = {f.name: f for f in decision.fields}
        for field_name, value in verdict.modified_fields.items():
            if field_name in existing:
                existing[field_name].value = value
                existing[field_name].confidence = 1.0
            else:
                decision.fields.append(FieldExtraction(name=field_name, value=value,
                                                       confidence=1.0))
        decision.explanation = (f"Approved by {verdict.reviewer_id} with edits to "
                                f"{', '.join(sorted(verdict.modified_fields))}{reason}")
    else:
        decision.explanation = f"Approved by {verdict.reviewer_id}{reason}"
    return _fill_field_map(decision, proposed)


def policy_decision(item_id: str, escalation: Escalation, action: str, rule: str,
                    explanation: str) -> Decision:
    """A default action ('approve' or 'reject') taken without a person (source=POLICY)."""
    proposed = escalation.proposed_decision
    decision = Decision(
        decision_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"review-policy:{item_id}")),
        task_id=escalation.task_id, tenant_id=escalation.tenant_id,
        source=DecisionSource.DECISION_SOURCE_POLICY, decided_at=_now(),
        confidence=proposed.confidence, label=proposed.label, rule=rule,
        explanation=explanation, review_queue=escalation.queue or proposed.review_queue,
    )
    decision.models.extend(proposed.models)
    decision.fields.extend(proposed.fields)
    if action == "approve":
        decision.outcome = DecisionOutcome.DECISION_OUTCOME_AUTO_EXECUTE
        decision.plan.CopyFrom(proposed.plan)
    else:
        decision.outcome = DecisionOutcome.DECISION_OUTCOME_REJECT
    return _fill_field_map(decision, proposed)
