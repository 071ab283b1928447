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
import re
import uuid
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone

from google.protobuf.struct_pb2 import Struct, Value
from google.protobuf.timestamp_pb2 import Timestamp

from switchyard.packs import template_parts, typed_value
from switchyard.privacy import withheld_from_reviewers
from switchyard.v1 import (
    ActionPlan,
    Decision,
    DecisionOutcome,
    DecisionSource,
    Escalation,
    FieldExtraction,
    ReviewVerdict,
    StepKind,
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


#: ``fields.total`` in a step's template: the field it sends; ``fields`` alone (the whole
#: map, ``${fields}``) or indexed (``fields[f]``) sends every field.
_FIELD_REFERENCE = re.compile(r"\bfields\.([A-Za-z_][A-Za-z0-9_]*)")
_ALL_FIELDS = re.compile(r"\bfields\b(?!\s*\.\s*[A-Za-z_])")
#: What :func:`fields_sent_before` maps a field to when a step sends the whole map.
EVERY_FIELD = "*"


def _strings(value: Value | Struct) -> Iterator[str]:
    """Every string in a step's payload (its templates), never its keys."""
    if isinstance(value, Struct):
        for item in value.fields.values():
            yield from _strings(item)
        return
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        yield value.string_value
    elif kind == "struct_value":
        yield from _strings(value.struct_value)
    elif kind == "list_value":
        for item in value.list_value.values:
            yield from _strings(item)


def _template_expressions(text: str) -> list[str]:
    """The expressions of a template's ``${...}`` parts (:func:`switchyard.packs.
    template_parts`); literal text around them is not read. A template that does not parse
    (which the pack loader refuses anyway) is read whole, so nothing it may send is missed."""
    parts = template_parts(text)
    return [text] if parts is None else [part for is_expr, part in parts if is_expr]


def fields_sent_before(plan: ActionPlan, step_id: str) -> dict[str, str]:
    """The fields the call steps before approval step ``step_id`` send (in their target,
    condition or payload templates), each with the first such step's name; a step that sends
    the whole map (``${fields}``) is under :data:`EVERY_FIELD`. Those steps ran (or were
    skipped on their condition) before the task reached the approval."""
    sent: dict[str, str] = {}
    for step in plan.steps:
        if step.step_id == step_id:
            return sent
        if step.kind in (StepKind.STEP_KIND_APPROVAL, StepKind.STEP_KIND_WAIT):
            continue
        templates = (step.target, *_strings(step.payload))
        for text in (step.when, *(e for t in templates for e in _template_expressions(t))):
            for name in _FIELD_REFERENCE.findall(text):
                sent.setdefault(name, step.name)
            if _ALL_FIELDS.search(text):
                sent.setdefault(EVERY_FIELD, step.name)
    return {}   # (not this plan's step: nothing is known to have run)


def sent_edit_problems(escalation: Escalation, edits: Mapping[str, str]
                       ) -> list[tuple[str, str]]:
    """An approval step's edits of fields the steps before it already sent: the later steps
    would act on a value the earlier ones never saw (a patient registered under a date of
    birth the payer never checked), so such a correction is refused; the reviewer rejects
    the step and the document is submitted again corrected."""
    if not escalation.step_id:
        return []
    sent = fields_sent_before(escalation.proposed_decision.plan, escalation.step_id)
    problems = []
    for name in sorted(edits):
        step = sent.get(name.strip()) or sent.get(EVERY_FIELD)
        if step:
            problems.append((f"verdict.modified_fields[{name[:64]!r}]",
                             f"step {step} already sent this field before this approval: a "
                             "changed value would reach only the steps after it; reject, and "
                             "submit the document again corrected"))
    return problems


def reconsidered_problems(escalation: Escalation, approvals_required: int,
                          reconsidered: Decision, edits: Mapping[str, str]
                          ) -> list[tuple[str, str]]:
    """What the pack's rules say against an approval with ``edits`` (``reconsidered``: what
    DecisionService.ReconsiderEdits answered). A person answers escalations, so an edited
    task that still escalates may be approved here, except where the escalating rule asks for
    more than this item has: two approvals (four eyes) where it has one, or another reviewer
    group. A rule that rejects the edited task cannot be approved past at all. An approval
    step's item (``step_id``) has its reviewers from the plan: only a rejecting rule counts."""
    where = "verdict.modified_fields"
    edited = ", ".join(sorted(name.strip() for name in edits))
    rule = f"rule {reconsidered.rule} of pack {reconsidered.pack or reconsidered.label}"
    if reconsidered.outcome == DecisionOutcome.DECISION_OUTCOME_REJECT:
        return [(where, f"with the edits to {edited}, {rule} rejects the task "
                        f"({reconsidered.explanation.strip()}): reject it, or change the "
                        "edits")]
    if reconsidered.outcome != DecisionOutcome.DECISION_OUTCOME_ESCALATE or escalation.step_id:
        return []
    more = []
    if reconsidered.four_eyes and approvals_required < 2:
        more.append("asks for two approvals (four eyes) and this item has one")
    group = reconsidered.reviewer_group
    if group and group != escalation.reviewer_group:
        mine = repr(escalation.reviewer_group) if escalation.reviewer_group else "none"
        more.append(f"goes to reviewer group {group!r} (this item's: {mine})")
    if not more:
        return []
    return [(where, f"with the edits to {edited}, {rule} {' and '.join(more)}: reject it "
                    "with the reason (the document can be submitted again), or change the "
                    "edits")]


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
                     first_approval: ReviewVerdict | None = None,
                     rule_with_edits: str = "") -> Decision:
    """Approve runs the proposed plan; modify runs it with the edited fields; reject ends it.

    ``first_approval``: the recorded first approval of a four-eyes item; an approval now is
    the second, and the decision is both together (:func:`combined_approval`).
    ``rule_with_edits``: the pack's rule the edited fields meet (ReconsiderEdits), said in
    the explanation."""
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
        # who takes the task should the executor escalate it again
        reviewer_group=proposed.reviewer_group, four_eyes=proposed.four_eyes,
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
        meets = f" (with them the pack's rules give {rule_with_edits})" \
            if rule_with_edits else ""
        decision.explanation = (f"Approved by {approved_by} with edits to "
                                f"{', '.join(sorted(verdict.modified_fields))}{meets}{reason}")
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
        reviewer_group=proposed.reviewer_group, four_eyes=proposed.four_eyes,
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
