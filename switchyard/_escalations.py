"""The one way a task is handed to a person: every service that escalates builds it here.

The decision service (low confidence, policy, models unavailable) and the executor (SLA at
risk, a compensation that failed) both call :func:`build_escalation` with the review queue
their tenant's decision policy names (``PolicySet.review_queue``; the executor reads it from
``Decision.review_queue``, where the decision service put it), so an escalation lands in the
same queue, with the same SLA rule and the same id scheme, whoever raised it.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

from switchyard._priority import clamped, review_priority
from switchyard._taskstore import timestamp
from switchyard.v1 import Decision, Escalation, EscalationReason, TaskEnvelope

#: The queue of a tenant whose policy names none (and of decisions made before decisions
#: carried their queue).
DEFAULT_REVIEW_QUEUE = "default"

#: How long a person has, by priority bucket (P0..P3), unless the task's deadline is sooner.
SLA_BY_PRIORITY = {0: timedelta(minutes=15), 1: timedelta(hours=1), 2: timedelta(hours=4),
                   3: timedelta(hours=24)}


def escalation_id(decision_id: str, code: str = "") -> str:
    """Stable per decision (and per executor cause), so a re-sent escalation is deduped by
    the review service instead of becoming a second item."""
    suffix = f":{code}" if code else ""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"escalation:{decision_id}{suffix}"))


def build_escalation(task: TaskEnvelope, decision: Decision, *, queue: str, bucket: int,
                     reason: EscalationReason.ValueType, detail: str, service: str,
                     code: str = "", sla_deadline: datetime | None = None) -> Escalation:
    """An escalation of ``task`` proposing ``decision`` to a person in ``queue``.

    ``bucket`` is the review priority 0 (P0) .. 3 (P3); the SLA deadline is ``sla_deadline``
    when the caller has one (the executor's job deadline), else the decision's
    ``review_sla`` (a pack rule's review SLA) from now, else the bucket's SLA from now, and
    never later than the task's own deadline. Who may review (``reviewer_group``), whether
    two reviewers must approve (``four_eyes``) and which personal and health fields they see
    in clear (``revealed_fields``, the pack's ``review.reveal``; an approval step's own
    ``reveal`` replaces them where the executor builds its escalation) come from the
    decision as well.
    """
    bucket = clamped(bucket)
    now = datetime.now(timezone.utc)
    review_sla = (decision.review_sla.ToTimedelta() if decision.HasField("review_sla")
                  else timedelta(0))
    sla = sla_deadline or now + (review_sla if review_sla > timedelta(0)
                                 else SLA_BY_PRIORITY[bucket])
    if task.HasField("deadline"):
        sla = min(sla, task.deadline.ToDatetime(timezone.utc))
    return Escalation(
        escalation_id=escalation_id(decision.decision_id, code),
        task_id=decision.task_id, tenant_id=decision.tenant_id, queue=queue,
        priority=review_priority(bucket), reason=reason, reason_detail=detail,
        proposed_decision=decision, sla_deadline=timestamp(sla), task=task, service=service,
        reviewer_group=decision.reviewer_group, four_eyes=decision.four_eyes,
        revealed_fields=list(decision.revealed_fields),
    )


def document_hidden(escalation: Escalation) -> bool:
    """Whether the escalation's reviewers get no document: it asks about an approval step
    whose pack says ``document: false`` (``ApprovalSpec.hide_document``; minimum necessary:
    a payer check needs what disagrees, not the clinical notes). The stored item keeps the
    document (the decision service reads it again to check a reviewer's edits)."""
    return bool(escalation.step_id) and any(
        step.step_id == escalation.step_id and step.approval.hide_document
        for step in escalation.proposed_decision.plan.steps)


__all__ = ["DEFAULT_REVIEW_QUEUE", "SLA_BY_PRIORITY", "build_escalation", "document_hidden",
           "escalation_id"]
