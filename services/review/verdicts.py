"""Decisions the review service hands the executor.

A reviewer's verdict becomes a decision with source=HUMAN and the reviewer's id; a default
action taken by the storm or expiry policy becomes one with source=POLICY. Either way the
executor runs it like any other decision: approve runs the proposed plan, reject ends the task.

Two kinds of escalation shape the decision further:

- four eyes: the decision follows the second approval and names both reviewers (its
  ``reviewer_id`` is ``first,second``; the edits of both apply, the second's winning);
- an approval step of a plan (``Escalation.step_id``): the decision answers that step
  (``approves_step_id``) and carries the plan for reject too, so the executor can compensate
  the steps that already ran before the task ends.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone

from google.protobuf.timestamp_pb2 import Timestamp

from switchyard.packs import typed_value
from switchyard.privacy import withheld_from_reviewers
from switchyard.v1 import (
    Decision,
    DecisionOutcome,
    DecisionSource,
    Escalation,
    FieldExtraction,
    ReviewVerdict,
    Verdict,
)


#: Fields a verdict may not edit: what the decision service computed, not what it read.
_COMPUTED_FIELDS = frozenset({"extraction_confidence"})
#: What a value of each checked type must read as, for a reviewer's message.
_TYPE_FORMS = {"money": "an amount (1234.50)", "number": "a number", "integer": "a whole number",
               "boolean": "true or false", "table": "a JSON list of rows",
               "date": "a date as YYYY-MM-DD"}


def edit_problems(escalation: Escalation, edits: Mapping[str, str], withholding: bool
                  ) -> list[tuple[str, str]]:
    """What is wrong with a verdict's field edits, each as (field path, why): an edit must
    name one of the fields the proposal declares (its pack's, when it has one), read as that
    field's type (a value that does not parse would reach the downstream as null), be one of
    an enum field's values (another would reach the downstream as a value it does not
    know), and not
    change a value the reviewer was not shown (``withholding``: personal and health values
    are withheld on this desk unless the item reveals them)."""
    proposed = escalation.proposed_decision
    declared = {f.name: f for f in proposed.fields if f.name not in _COMPUTED_FIELDS}
    problems = []
    for name, value in sorted(edits.items()):
        where = f"verdict.modified_fields[{name[:64]!r}]"
        field = declared.get(name.strip())
        if declared and field is None:
            problems.append((where, f"not a field of this {proposed.label or 'document'}; "
                                    f"its fields: {', '.join(sorted(declared))}"))
            continue
        if name.strip() in _COMPUTED_FIELDS:
            problems.append((where, "computed by the decision service, not read: not editable"))
            continue
        if field is None:
            continue  # (a proposal without declared fields: nothing to check against)
        if withholding and withheld_from_reviewers(field.name, field.value, field.data_class,
                                                   escalation.revealed_fields):
            problems.append((where, "withheld from this item's reviewers: a value nobody here "
                                    "was shown cannot be edited or cleared (the pack may "
                                    "reveal it)"))
        elif value.strip() and field.type in _TYPE_FORMS and not _reads_as(value, field.type):
            problems.append((where, f"{value.strip()[:40]!r} is not {_TYPE_FORMS[field.type]}"))
        elif value.strip() and field.allowed_values and \
                value.strip() not in field.allowed_values:
            problems.append((where, f"{value.strip()[:40]!r} is not one of "
                                    f"{', '.join(field.allowed_values)}"))
    return problems


def _reads_as(value: str, type_: str) -> bool:
    if type_ == "date":
        try:
            dt.date.fromisoformat(value.strip())
        except ValueError:
            return False
        return True
    return typed_value(value, type_) is not None


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


def _answer_step(decision: Decision, escalation: Escalation) -> None:
    """Tie the decision to the plan it came from: the pack version, and for an approval
    step, the step it answers; a reject then carries the plan too (for compensation). The
    pack's revealed fields go on with it: a later approval step's reviewers see the same."""
    proposed = escalation.proposed_decision
    decision.pack, decision.pack_version = proposed.pack, proposed.pack_version
    decision.revealed_fields[:] = proposed.revealed_fields
    if escalation.step_id:
        decision.approves_step_id = escalation.step_id
        if decision.outcome == DecisionOutcome.DECISION_OUTCOME_REJECT:
            decision.plan.CopyFrom(proposed.plan)


def combined_approval(first: ReviewVerdict, second: ReviewVerdict) -> ReviewVerdict:
    """Four eyes: the verdict two approvals make together. The edits of both apply (the
    second's win on the same field), so it is MODIFY when either edited; the reviewer is
    ``first,second`` and the reasons are joined."""
    out = ReviewVerdict(item_id=second.item_id, task_id=second.task_id,
                        reviewer_id=f"{first.reviewer_id},{second.reviewer_id}",
                        reason=" / ".join(r for r in (first.reason, second.reason) if r))
    out.modified_fields.update(first.modified_fields)
    out.modified_fields.update(second.modified_fields)
    out.verdict = Verdict.VERDICT_MODIFY if out.modified_fields else Verdict.VERDICT_APPROVE
    if second.HasField("decided_at"):
        out.decided_at.CopyFrom(second.decided_at)
    return out


def verdict_decision(escalation: Escalation, verdict: ReviewVerdict,
                     first_approval: ReviewVerdict | None = None) -> Decision:
    """Approve runs the proposed plan; modify runs it with the edited fields; reject ends it.

    ``first_approval``: the recorded first approval of a four-eyes item; an approval now is
    the second, and the decision is both together (:func:`combined_approval`)."""
    proposed = escalation.proposed_decision
    approved_by = ""
    if first_approval is not None and verdict.verdict != Verdict.VERDICT_REJECT:
        verdict = combined_approval(first_approval, verdict)
        approved_by = (f"{first_approval.reviewer_id} and "
                       f"{verdict.reviewer_id.split(',', 1)[1]} (four eyes)")
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
    approved_by = approved_by or verdict.reviewer_id
    if verdict.verdict == Verdict.VERDICT_REJECT:
        decision.outcome = DecisionOutcome.DECISION_OUTCOME_REJECT
        after = (f" (after {first_approval.reviewer_id}'s approval)"
                 if first_approval is not None else "")
        retyped = ""
        if verdict.document_type:  # the person says what the document really is
            decision.label = verdict.document_type
            retyped = f" as {verdict.document_type}, not {proposed.label or 'unknown'}"
        decision.explanation = f"Rejected by {verdict.reviewer_id}{retyped}{after}{reason}"
        _answer_step(decision, escalation)
        return _fill_field_map(decision, proposed)
    decision.outcome = DecisionOutcome.DECISION_OUTCOME_AUTO_EXECUTE
    decision.plan.CopyFrom(proposed.plan)
    _answer_step(decision, escalation)
    if verdict.verdict == Verdict.VERDICT_MODIFY:
        # the edits reach the downstream calls through the plan's payload templates
        # (``${fields.total}`` renders the corrected value); a step's body stays what the
        # pack declares, so a downstream that refuses unknown keys accepts edited tasks too
        existing = {f.name: f for f in decision.fields}
        for field_name, value in verdict.modified_fields.items():
            if field_name in existing:
                existing[field_name].value = value
                existing[field_name].confidence = 1.0
            else:
                decision.fields.append(FieldExtraction(name=field_name, value=value,
                                                       confidence=1.0))
        decision.explanation = (f"Approved by {approved_by} with edits to "
                                f"{', '.join(sorted(verdict.modified_fields))}{reason}")
    else:
        decision.explanation = f"Approved by {approved_by}{reason}"
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
    _answer_step(decision, escalation)
    return _fill_field_map(decision, proposed)
