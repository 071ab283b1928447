"""Unit tests of the review domain: policy parsing, the admission rule, token buckets,
redaction, policy decisions and the console's request parsing. No broker, no database."""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta, timezone

import grpc
import pytest
from grpc.aio import AioRpcError, Metadata

from services.review.admission import Candidate, plan_admissions, refill
from services.review.console import BadRequest, item_json, list_request, verdict_from
from services.review.intake import check, redact
from services.review.policies import Limit, PolicyError, QueueLimits, ReviewPolicy
from services.review.queue import priority_value
from services.review.reconsider import refusal
from services.review.verdicts import (
    EVERY_FIELD,
    fields_sent_before,
    policy_decision,
    reconsidered_problems,
    sent_edit_problems,
    verdict_decision,
)
from switchyard import Settings
from switchyard.messaging import RejectRecord
from switchyard.privacy import Redactor
from switchyard.v1 import (
    ActionPlan,
    ActionStep,
    Decision,
    DecisionOutcome,
    DecisionSource,
    Document,
    Escalation,
    FieldExtraction,
    ReviewItem,
    ReviewPriority,
    ReviewState,
    ReviewVerdict,
    StepKind,
    TaskEnvelope,
    Verdict,
)

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def policy(**changes: object) -> ReviewPolicy:
    return ReviewPolicy.from_settings(Settings().replace(**changes))


def candidate(tenant: str, queue: str, priority: int, age_s: float) -> Candidate:
    return Candidate(uuid.uuid4(), tenant, queue, priority, T0 - timedelta(seconds=age_s))


def ordered(items: list[Candidate]) -> list[Candidate]:
    return sorted(items, key=lambda c: (c.priority, c.created_at))


# -- policies -------------------------------------------------------------------------------

def test_policy_reads_overrides_and_defaults() -> None:
    p = policy(review_queue_overrides="storm:5:10:0, vip:0:0:20",
               review_queue_expiry="vip:fail", review_default_actions="acme:approve,*:reject",
               review_storm_after_s=60)
    assert p.queue("storm") == QueueLimits(Limit(5.0, 10), 0)
    assert p.queue("vip").bucket.unlimited and p.queue("vip").max_open == 20
    assert p.queue("other") == p.queue_default
    assert (p.expiry("vip"), p.expiry("other")) == ("fail", "reassign")
    assert (p.default_action("acme"), p.default_action("anyone")) == ("approve", "reject")
    assert p.storm_after == timedelta(seconds=60)
    assert policy(review_default_actions="acme:approve").default_action("globex") is None
    assert policy().storm_after is None


@pytest.mark.parametrize(("changes", "names"), [
    ({"review_queue_overrides": "storm:5:10"}, "SWITCHYARD_REVIEW_QUEUE_OVERRIDES"),
    ({"review_queue_overrides": "storm:fast:10:0"}, "SWITCHYARD_REVIEW_QUEUE_OVERRIDES"),
    ({"review_queue_overrides": "storm:5:0:0"}, "SWITCHYARD_REVIEW_QUEUE_OVERRIDES"),
    ({"review_expiry_policy": "shrug"}, "SWITCHYARD_REVIEW_EXPIRY_POLICY"),
    ({"review_queue_expiry": "vip:later"}, "SWITCHYARD_REVIEW_QUEUE_EXPIRY"),
    ({"review_default_actions": "acme:maybe"}, "SWITCHYARD_REVIEW_DEFAULT_ACTIONS"),
    ({"review_tenant_rate": -1.0}, "SWITCHYARD_REVIEW_TENANT_RATE"),
    ({"review_tenant_rate": 2.0, "review_tenant_burst": 0}, "SWITCHYARD_REVIEW_TENANT_BURST"),
    ({"review_storm_priority": 4}, "SWITCHYARD_REVIEW_STORM_PRIORITY"),
])
def test_bad_policy_settings_name_the_variable(changes: dict[str, object], names: str) -> None:
    with pytest.raises(PolicyError, match=names):
        policy(**changes)


# -- the admission rule ---------------------------------------------------------------------

def test_admission_takes_highest_priority_then_oldest_within_the_buckets() -> None:
    p = policy(review_tenant_rate=1.0, review_tenant_burst=3, review_queue_rate=0.0)
    backlog = ordered([candidate("acme", "q", prio, age) for prio, age in
                       [(3, 50), (1, 10), (0, 1), (1, 40), (2, 99), (0, 5)]])
    tenants, queues = {"acme": 3.0}, {}
    admitted = plan_admissions(backlog, tenants, queues, {}, p)
    assert [(c.priority, (T0 - c.created_at).seconds) for c in admitted] == \
        [(0, 5), (0, 1), (1, 40)]
    assert tenants == {"acme": 0.0}


def test_an_exhausted_tenant_does_not_hold_up_other_tenants() -> None:
    p = policy(review_tenant_rate=1.0, review_tenant_burst=5, review_queue_rate=0.0)
    backlog = ordered([candidate("noisy", "q", 0, 100 - i) for i in range(50)]
                      + [candidate("quiet", "q", 3, 1)])
    tenants = {"noisy": 2.0, "quiet": 1.0}
    admitted = plan_admissions(backlog, tenants, {}, {}, p)
    assert [c.tenant_id for c in admitted] == ["noisy", "noisy", "quiet"]


def test_queue_bucket_and_open_cap_both_hold() -> None:
    p = policy(review_tenant_rate=0.0, review_queue_overrides="q:1:10:4,r:0:0:0")
    backlog = ordered([candidate("acme", "q", 1, 10 - i) for i in range(10)]
                      + [candidate("acme", "r", 2, 1) for _ in range(3)])
    queues = {"q": 10.0}
    admitted = plan_admissions(backlog, {}, queues, {"q": 1}, p)
    # q: cap 4 with 1 open already -> 3 admitted though 10 tokens were there; r: no limits
    assert [c.queue for c in admitted].count("q") == 3
    assert [c.queue for c in admitted].count("r") == 3
    assert queues["q"] == 7.0


def test_refill_is_continuous_and_capped_at_the_burst() -> None:
    limit = Limit(rate=5.0, burst=10)
    assert refill(0.0, 0.3, limit) == pytest.approx(1.5)
    assert refill(9.5, 60.0, limit) == 10.0
    assert refill(2.0, -1.0, limit) == 2.0  # a clock step back never removes tokens


def test_a_storm_at_ten_times_the_rate_is_admitted_at_the_rate() -> None:
    """Simulated clock: 10x arrivals, jittery ticks; admissions follow rate*t + burst."""
    rate, burst = 5.0, 10
    p = policy(review_tenant_rate=0.0, review_queue_overrides=f"q:{rate}:{burst}:0")
    rng = random.Random(3)
    now, tokens, backlog, admitted_at = 0.0, float(burst), [], []
    arrivals = [i / (10 * rate) for i in range(int(10 * rate * 4))]  # 4 s of storm
    while now < 20.0:
        step = rng.uniform(0.02, 0.3)
        tokens = refill(tokens, step, p.queue("q").bucket)
        now += step
        while arrivals and arrivals[0] <= now:
            backlog.append(candidate("acme", "q", rng.randrange(4), -arrivals.pop(0)))
        queues = {"q": tokens}
        for item in plan_admissions(ordered(backlog), {}, queues, {}, p):
            backlog.remove(item)
            admitted_at.append(now)
        tokens = queues["q"]
    steady = admitted_at[burst:]
    measured = (len(steady) - 1) / (steady[-1] - steady[0])
    assert measured == pytest.approx(rate, rel=0.10)
    assert len(admitted_at) + len(backlog) == int(10 * rate * 4)


# -- intake ------------------------------------------------------------------------------

def test_redaction_keeps_the_content_and_drops_personal_data() -> None:
    body = "Invoice INV-7 from jane.doe@example.com, card 4111 1111 1111 1111, total 10.00"
    escalation = Escalation(task=TaskEnvelope(
        document=Document(content_type="text/plain", body=body.encode()),
        metadata={"contact": "jane.doe@example.com", "po": "PO-1"}))
    out = redact(escalation, Redactor())
    text = out.task.document.body.decode()
    assert "jane.doe" not in text and "4111" not in text
    assert "INV-7" in text and "10.00" in text and "[EMAIL REDACTED]" in text
    assert out.task.metadata["contact"] == "[EMAIL REDACTED]" and out.task.metadata["po"] == "PO-1"
    assert escalation.task.document.body.decode() == body  # the original is untouched


def test_escalations_without_ids_are_rejected_with_the_reason() -> None:
    with pytest.raises(RejectRecord) as caught:
        check(Escalation(escalation_id="nope", task_id=str(uuid.uuid4())))
    assert caught.value.code == "invalid_escalation"
    assert "escalation_id must be a UUID" in caught.value.reason
    assert "tenant_id is required" in caught.value.reason


def test_unspecified_priority_is_normal_not_most_urgent() -> None:
    assert priority_value(ReviewPriority.REVIEW_PRIORITY_UNSPECIFIED) == 2
    assert priority_value(ReviewPriority.REVIEW_PRIORITY_P0) == 0
    assert priority_value(ReviewPriority.REVIEW_PRIORITY_P3) == 3


# -- decisions and the console's parsing --------------------------------------------------

def test_policy_decisions_carry_the_plan_only_when_approving() -> None:
    escalation = Escalation(task_id=str(uuid.uuid4()), tenant_id="acme", proposed_decision=Decision(
        plan=ActionPlan(steps=[ActionStep(step_id="1-post")]), label="invoice", confidence=0.6))
    item_id = str(uuid.uuid4())
    approve = policy_decision(item_id, escalation, "approve", "review_default_approve", "why")
    reject = policy_decision(item_id, escalation, "reject", "review_expired", "why")
    assert approve.source == reject.source == DecisionSource.DECISION_SOURCE_POLICY
    assert approve.outcome == DecisionOutcome.DECISION_OUTCOME_AUTO_EXECUTE
    assert [s.step_id for s in approve.plan.steps] == ["1-post"]
    assert reject.outcome == DecisionOutcome.DECISION_OUTCOME_REJECT and not reject.plan.steps
    assert approve.decision_id == reject.decision_id  # one outcome per item, whatever it is


def test_human_and_policy_decisions_carry_the_field_map_after_modifications() -> None:
    """Decision.extracted_fields is "the same fields as a name-to-value map (after a
    reviewer's modifications, if any)": on every decision review hands the executor."""
    proposed = Decision(
        label="invoice", plan=ActionPlan(steps=[ActionStep(step_id="1-post")]),
        fields=[FieldExtraction(name="total", value="120.00", confidence=0.4),
                FieldExtraction(name="vendor", value="Acme GmbH", confidence=0.9)],
        extracted_fields={"total": "120.00", "vendor": "Acme GmbH"})
    escalation = Escalation(task_id=str(uuid.uuid4()), tenant_id="acme",
                            proposed_decision=proposed)
    modified = verdict_decision(escalation, ReviewVerdict(
        item_id="i-1", reviewer_id="rita", verdict=Verdict.VERDICT_MODIFY,
        modified_fields={"total": "121.00", "currency": "EUR"}))
    assert dict(modified.extracted_fields) == {"total": "121.00", "vendor": "Acme GmbH",
                                               "currency": "EUR"}
    # the plan is the proposal's: the edits reach its bodies through their templates only
    assert modified.plan == proposed.plan
    assert dict(modified.extracted_fields) == {f.name: f.value for f in modified.fields}
    for verdict in (Verdict.VERDICT_APPROVE, Verdict.VERDICT_REJECT):
        decided = verdict_decision(escalation, ReviewVerdict(
            item_id="i-2", reviewer_id="rita", verdict=verdict))
        assert dict(decided.extracted_fields) == {"total": "120.00", "vendor": "Acme GmbH"}
    # a proposal that carried only the list (an older escalation) still yields the map
    del escalation.proposed_decision.extracted_fields["vendor"]
    approve = policy_decision("i-3", escalation, "approve", "review_default_approve", "why")
    assert dict(approve.extracted_fields) == {"total": "120.00", "vendor": "Acme GmbH"}


def test_a_person_s_decision_keeps_who_takes_the_task_s_later_escalations() -> None:
    """The executor escalates from the decision it runs (an SLA at risk, a failed
    compensation): a reviewer's or a review policy's decision keeps the proposal's queue,
    reviewer group and four eyes, so those land with the pack's reviewers."""
    proposed = Decision(label="hospital_admission", review_queue="admissions",
                        reviewer_group="admissions-intake", four_eyes=True,
                        plan=ActionPlan(steps=[ActionStep(step_id="1-check")]))
    escalation = Escalation(task_id=str(uuid.uuid4()), tenant_id="stmary",
                            proposed_decision=proposed)
    decisions = [verdict_decision(escalation, ReviewVerdict(
        item_id="i-1", reviewer_id="rita", verdict=Verdict.VERDICT_APPROVE)),
        policy_decision("i-2", escalation, "approve", "review_default_approve", "why")]
    for decided in decisions:
        assert (decided.review_queue, decided.reviewer_group, decided.four_eyes) == (
            "admissions", "admissions-intake", True)


def test_console_request_parsing_reports_every_bad_field() -> None:
    request = list_request({"state": "pending,claimed", "priority": "p0,P1",
                            "reason": "low_confidence", "page_size": "20"})
    assert len(request.states) == 2 and len(request.priorities) == 2
    with pytest.raises(BadRequest) as caught:
        list_request({"state": "sleeping", "priority": "P9", "page_size": "lots"})
    assert {f for f, _ in caught.value.violations} == {"state", "priority", "page_size"}
    verdict = verdict_from("item-1", {"reviewer_id": " rita ", "verdict": "MODIFY",
                                      "modified_fields": {"total": "12.00"}})
    assert (verdict.reviewer_id, verdict.verdict) == ("rita", Verdict.VERDICT_MODIFY)
    with pytest.raises(BadRequest) as caught:
        verdict_from("item-1", {"verdict": "shrug", "modified_fields": {"total": 12}})
    assert {f for f, _ in caught.value.violations} == {"verdict", "modified_fields"}


def test_item_json_shows_the_document_as_text() -> None:
    item = ReviewItem(item_id="i", priority=ReviewPriority.REVIEW_PRIORITY_P1,
                      escalation=Escalation(task=TaskEnvelope(document=Document(
                          content_type="text/plain", body="Grüße\nzeile 2".encode()))))
    view = item_json(item)
    assert view["document"]["text"] == "Grüße\nzeile 2"
    assert view["priority"] == "P1" and view["summary"] == "Grüße zeile 2"
    assert view["sla_deadline"] is None and view["lease_expires_at"] is None


def test_the_reviewer_comes_from_the_credentials() -> None:
    from services.review.desk import reviewer_of
    from services.review.queue import ReviewError
    from switchyard.access import DEV_PRINCIPAL, Principal, Role

    key = Principal(key_id="key-3", tenant_id="acme", role=Role.REVIEWER)
    assert reviewer_of(key, "") == reviewer_of(key, "key-3") == "key-3"
    with pytest.raises(ReviewError) as caught:
        reviewer_of(key, "ana")
    assert caught.value.code == "forbidden"
    assert reviewer_of(DEV_PRINCIPAL, "ana") == "ana"   # auth off: the typed name


def test_human_and_policy_decisions_keep_the_review_queue() -> None:
    """A task a person decided is escalated again (SLA at risk, a failed compensation) into
    the queue it came from: the executor reads it from the decision."""
    escalation = Escalation(task_id=str(uuid.uuid4()), tenant_id="acme", queue="acme-finance",
                            proposed_decision=Decision(label="invoice",
                                                       review_queue="acme-finance"))
    approved = verdict_decision(escalation, ReviewVerdict(
        item_id="i-1", reviewer_id="rita", verdict=Verdict.VERDICT_APPROVE))
    defaulted = policy_decision("i-2", escalation, "approve", "review_default_approve", "why")
    assert approved.review_queue == defaulted.review_queue == "acme-finance"


def test_four_eyes_combines_both_approvals_into_one_decision() -> None:
    proposed = Decision(label="invoice", plan=ActionPlan(steps=[ActionStep(step_id="1-post")]),
                        fields=[FieldExtraction(name="total", value="120.00", confidence=0.4),
                                FieldExtraction(name="tax", value="20.00", confidence=0.4)])
    escalation = Escalation(task_id=str(uuid.uuid4()), tenant_id="acme", four_eyes=True,
                            proposed_decision=proposed)
    first = ReviewVerdict(item_id="i-1", reviewer_id="ann", verdict=Verdict.VERDICT_MODIFY,
                          modified_fields={"total": "121.00", "tax": "21.00"}, reason="typo")
    second = ReviewVerdict(item_id="i-1", reviewer_id="bob", verdict=Verdict.VERDICT_MODIFY,
                           modified_fields={"tax": "19.00"}, reason="tax rate")
    both = verdict_decision(escalation, second, first)
    assert both.outcome == DecisionOutcome.DECISION_OUTCOME_AUTO_EXECUTE
    assert both.reviewer_id == "ann,bob" and both.rule == "reviewer_modify"
    assert both.explanation == ("Approved by ann and bob (four eyes) with edits to tax, total: "
                                "typo / tax rate")
    assert dict(both.extracted_fields) == {"total": "121.00", "tax": "19.00"}  # second wins
    plain = verdict_decision(escalation, ReviewVerdict(
        item_id="i-1", reviewer_id="bob", verdict=Verdict.VERDICT_APPROVE),
        ReviewVerdict(item_id="i-1", reviewer_id="ann", verdict=Verdict.VERDICT_APPROVE))
    assert plain.explanation == "Approved by ann and bob (four eyes)"
    assert plain.rule == "reviewer_approve"
    rejected = verdict_decision(escalation, ReviewVerdict(
        item_id="i-1", reviewer_id="bob", verdict=Verdict.VERDICT_REJECT), first)
    assert rejected.outcome == DecisionOutcome.DECISION_OUTCOME_REJECT
    assert rejected.reviewer_id == "bob" and not rejected.plan.steps
    assert rejected.explanation == "Rejected by bob (after ann's approval)"


def test_decisions_on_an_approval_step_name_it_and_carry_the_plan_even_to_reject() -> None:
    proposed = Decision(label="expense_claim", pack="expense_claim", pack_version="1.2.0",
                        plan=ActionPlan(steps=[ActionStep(step_id="0-create_claim"),
                                               ActionStep(step_id="1-manager_ok")]))
    escalation = Escalation(task_id=str(uuid.uuid4()), tenant_id="acme", step_id="1-manager_ok",
                            proposed_decision=proposed)
    decisions = [verdict_decision(escalation, ReviewVerdict(
        item_id="i", reviewer_id="rita", verdict=v)) for v in (Verdict.VERDICT_APPROVE,
                                                               Verdict.VERDICT_REJECT)]
    decisions += [policy_decision("i", escalation, a, f"review_default_{a}", "why")
                  for a in ("approve", "reject")]
    for decision in decisions:
        assert decision.approves_step_id == "1-manager_ok"
        assert [s.step_id for s in decision.plan.steps] == ["0-create_claim", "1-manager_ok"]
        assert (decision.pack, decision.pack_version) == ("expense_claim", "1.2.0")
    # an escalation that is not an approval step answers no step, and a reject has no plan
    escalation.step_id = ""
    reject = verdict_decision(escalation, ReviewVerdict(item_id="i", reviewer_id="rita",
                                                        verdict=Verdict.VERDICT_REJECT))
    assert not reject.approves_step_id and not reject.plan.steps


def _step(step_id: str, payload: dict[str, object] | None = None, when: str = "",
          kind: int = StepKind.STEP_KIND_CALL) -> ActionStep:
    step = ActionStep(step_id=step_id, name=step_id.split("-", 1)[1], when=when,
                      kind=kind)  # type: ignore[arg-type]
    step.payload.update(payload or {})
    return step


def test_the_fields_steps_sent_before_an_approval_are_read_from_their_templates() -> None:
    plan = ActionPlan(steps=[
        _step("1-check", {"member": "${fields.member_id}", "nested": {
            "list": ["${ {'dob': fields.date_of_birth} }", "fields are listed here"]}},
            when="fields.payer != null"),
        _step("2-ok", kind=StepKind.STEP_KIND_APPROVAL),
        _step("3-register", {"all": "${fields}"})])
    assert fields_sent_before(plan, "2-ok") == {"member_id": "check", "date_of_birth": "check",
                                                "payer": "check"}
    # a payload key named "fields" is not a template; the words "fields are" in a value
    # are not a reference either way (they send nothing a reviewer could change)
    assert EVERY_FIELD not in fields_sent_before(plan, "2-ok")
    assert fields_sent_before(plan, "4-later") == {}   # not this plan's step
    plan.steps.append(_step("4-again", kind=StepKind.STEP_KIND_APPROVAL))
    assert fields_sent_before(plan, "4-again")[EVERY_FIELD] == "register"
    plan.steps.insert(1, _step("1a-indexed", {"x": "${params.keys.map(k, fields[k])}"}))
    assert fields_sent_before(plan, "2-ok")[EVERY_FIELD] == "indexed"


def test_an_approval_step_refuses_edits_of_fields_already_sent() -> None:
    plan = ActionPlan(steps=[_step("1-record", {"amount": "${fields.amount}"}),
                             _step("2-manager_ok", kind=StepKind.STEP_KIND_APPROVAL),
                             _step("3-book", {"category": "${fields.category}"})])
    escalation = Escalation(step_id="2-manager_ok", proposed_decision=Decision(plan=plan))
    (problem,) = sent_edit_problems(escalation, {"amount": "90", "category": "meals"})
    assert problem[0] == "verdict.modified_fields['amount']"
    assert problem[1].startswith("step record already sent this field before this approval")
    assert sent_edit_problems(escalation, {"category": "meals"}) == []
    escalation.step_id = ""   # before the plan: nothing was sent
    assert sent_edit_problems(escalation, {"amount": "90"}) == []


def test_the_pack_rules_on_edited_fields_refuse_what_an_approval_cannot_cover() -> None:
    escalation = Escalation(reviewer_group="finance")
    edits = {"total": "2000000", " vendor ": "x"}

    def answer(outcome: int, **fields: object) -> Decision:
        return Decision(outcome=outcome, rule="r", pack="invoice",  # type: ignore[arg-type]
                        explanation="Invoice 7: above the 1000000 this tenant accepts. ",
                        **fields)  # type: ignore[arg-type]
    (rejected,) = reconsidered_problems(escalation, 1, answer(
        DecisionOutcome.DECISION_OUTCOME_REJECT), edits)
    assert rejected == ("verdict.modified_fields", "with the edits to total, vendor, rule r "
                        "of pack invoice rejects the task (Invoice 7: above the 1000000 this "
                        "tenant accepts.): reject it, or change the edits")
    # an escalation is what a person answers, unless it asks for more than this item has
    escalate = DecisionOutcome.DECISION_OUTCOME_ESCALATE
    assert reconsidered_problems(escalation, 1, answer(escalate, reviewer_group="finance"),
                                 edits) == []
    assert reconsidered_problems(escalation, 1, answer(escalate), edits) == []
    ((where, why),) = reconsidered_problems(escalation, 1, answer(
        escalate, four_eyes=True, reviewer_group="treasury"), edits)
    assert where == "verdict.modified_fields" and why == (
        "with the edits to total, vendor, rule r of pack invoice asks for two approvals (four "
        "eyes) and this item has one and goes to reviewer group 'treasury' (this item's: "
        "'finance'): reject it with the reason (the document can be submitted again), or "
        "change the edits")
    assert reconsidered_problems(escalation, 2, answer(escalate, four_eyes=True,
                                                       reviewer_group="finance"), edits) == []
    assert reconsidered_problems(escalation, 1, answer(
        DecisionOutcome.DECISION_OUTCOME_AUTO_EXECUTE), edits) == []
    # an approval step's reviewers come from the plan: only a rejection counts there
    escalation.step_id = "2-ok"
    assert reconsidered_problems(escalation, 1, answer(escalate, four_eyes=True), edits) == []
    assert len(reconsidered_problems(escalation, 1, answer(
        DecisionOutcome.DECISION_OUTCOME_REJECT), edits)) == 1


@pytest.mark.parametrize("code, kind, says", [
    (grpc.StatusCode.NOT_FOUND, "invalid", "approve without edits, or reject"),
    (grpc.StatusCode.FAILED_PRECONDITION, "invalid", "the edits cannot be checked"),
    (grpc.StatusCode.INVALID_ARGUMENT, "invalid", "the edits cannot be checked"),
    (grpc.StatusCode.PERMISSION_DENIED, "forbidden", "refused to check the edits"),
    (grpc.StatusCode.UNAVAILABLE, "unavailable", "the verdict was not recorded"),
    (grpc.StatusCode.DEADLINE_EXCEEDED, "unavailable", "submit it again shortly"),
])
def test_the_decision_services_refusals_become_the_desks_errors(
        code: grpc.StatusCode, kind: str, says: str) -> None:
    error = refusal(AioRpcError(code, Metadata(), Metadata(), details="why"))
    assert error.code == kind and says in str(error), str(error)
    assert error.code != "invalid" or error.violations[0][0] == "verdict.modified_fields"


def test_an_approval_with_edits_says_the_rule_the_edited_fields_meet() -> None:
    escalation = Escalation(task_id=str(uuid.uuid4()), tenant_id="acme",
                            proposed_decision=Decision(label="invoice", pack="invoice"))
    decision = verdict_decision(escalation, ReviewVerdict(
        item_id="i", reviewer_id="rita", verdict=Verdict.VERDICT_MODIFY,
        modified_fields={"total": "61000.00"}, reason="the scan cut a digit"),
        rule_with_edits="amount_over_limit")
    assert decision.explanation == ("Approved by rita with edits to total (with them the "
                                    "pack's rules give amount_over_limit): the scan cut a "
                                    "digit")


def test_item_json_shows_group_instructions_and_four_eyes_progress() -> None:
    item = ReviewItem(item_id="i", state=ReviewState.REVIEW_STATE_PENDING, approvals_required=2,
                      approved_by=["key-0"], approved_edits={"amount": "210.00"},
                      escalation=Escalation(
                          reviewer_group="finance", four_eyes=True, step_id="1-manager_ok",
                          instructions="Approve the claim"))
    view = item_json(item, full=False)
    assert view["reviewer_group"] == "finance" and view["instructions"] == "Approve the claim"
    assert view["step_id"] == "1-manager_ok"
    assert view["approvals"] == {"required": 2, "approved_by": ["key-0"],
                                 "text": "1 of 2 approvals", "edits": {"amount": "210.00"}}
    single = item_json(ReviewItem(item_id="j", approvals_required=1), full=False)
    assert single["approvals"]["text"] is None and single["reviewer_group"] is None


def test_an_approval_step_that_hides_the_document_says_so_to_the_console() -> None:
    """document: false: the console's item says the document is not shown (the desk has
    cleared it from the reviewer's copy), for the page to say why, not show an empty one."""
    from switchyard.v1 import ActionPlan, ActionStep, ApprovalSpec

    plan = ActionPlan(steps=[ActionStep(step_id="2-insurance_review", approval=ApprovalSpec(
        hide_document=True)), ActionStep(step_id="3-admit")])
    hidden = ReviewItem(item_id="i", escalation=Escalation(
        step_id="2-insurance_review", proposed_decision=Decision(plan=plan)))
    assert item_json(hidden)["document"]["hidden"] is True
    shown = ReviewItem(item_id="j", escalation=Escalation(
        step_id="3-admit", proposed_decision=Decision(plan=plan)))
    assert item_json(shown)["document"]["hidden"] is False


def test_escalations_carry_the_decisions_group_four_eyes_and_review_sla() -> None:
    from google.protobuf.duration_pb2 import Duration

    from switchyard.tasks import SLA_BY_PRIORITY, build_escalation
    from switchyard.v1 import EscalationReason

    task = TaskEnvelope(task_id=str(uuid.uuid4()), tenant_id="acme")
    decision = Decision(decision_id=str(uuid.uuid4()), task_id=task.task_id, tenant_id="acme",
                        reviewer_group="managers", four_eyes=True,
                        review_sla=Duration(seconds=30 * 24 * 3600))
    before = datetime.now(timezone.utc)
    esc = build_escalation(task, decision, queue="finance", bucket=2,
                           reason=EscalationReason.ESCALATION_REASON_POLICY, detail="x",
                           service="decision")
    assert (esc.reviewer_group, esc.four_eyes) == ("managers", True)
    deadline = esc.sla_deadline.ToDatetime(timezone.utc)
    assert deadline >= before + timedelta(days=30)  # the rule's SLA, not P2's 4 hours
    # without a review SLA the priority bucket's SLA applies, as before
    decision.ClearField("review_sla")
    esc = build_escalation(task, decision, queue="finance", bucket=2,
                           reason=EscalationReason.ESCALATION_REASON_POLICY, detail="x",
                           service="decision")
    assert esc.sla_deadline.ToDatetime(timezone.utc) <= datetime.now(timezone.utc) \
        + SLA_BY_PRIORITY[2]
