"""Per-tenant YAML policies: loading, inheritance, and errors that name file, key and value;
the invoice business rules as a table (no Triton: assessments built from real extractions)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml

from services.decision.extraction import extract_invoice, vendor_key
from services.decision.invoices import InvoiceAssessment, VendorHistory, risk_inputs
from services.decision.policies import PolicyError, load_policies, parse_policy
from services.decision.engine import build_plan
from services.decision.policy import DEFAULT_PLANS, PlanStep, Policy, decide
from services.decision.triton import Prediction
from switchyard.v1 import TaskEnvelope
from tests.decision.documents import ROOT, invoice


def write(directory: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def test_empty_setting_means_built_in_defaults() -> None:
    policies = load_policies("", Policy(auto_execute_threshold=0.7))
    assert policies.for_tenant("anyone").auto_execute_threshold == 0.7


def test_tenants_inherit_from_default_yaml(tmp_path: Path) -> None:
    write(tmp_path, {
        "default.yaml": "auto_execute_threshold: 0.9\ninvoice: {max_auto_amount: 5000}\n",
        "acme.yaml": "review_queue: finance\ninvoice: {min_p_auto: 0.95}\n"
                     "vendors: {block: [Shady Parts Ltd.]}\n",
        "notes.txt": "ignored",
    })
    policies = load_policies(tmp_path)
    acme, other = policies.for_tenant("acme"), policies.for_tenant("beta")
    assert (acme.auto_execute_threshold, acme.review_queue) == (0.9, "finance")
    assert (acme.invoice.max_auto_amount, acme.invoice.min_p_auto) == (5000, 0.95)
    assert acme.vendors.block == {vendor_key("Shady Parts")}
    assert (other.review_queue, other.invoice.min_p_auto) == ("default", 0.8)
    assert acme.plans["invoice"] == DEFAULT_PLANS["invoice"]


def test_the_shipped_invoice_plan_is_a_saga_of_two_steps() -> None:
    """Post the invoice, then schedule its payment; the posted invoice is what gets undone
    (HTTP DELETE of the effect its idempotency key names) when the payment fails for good or
    the task is cancelled in between."""
    plan = build_plan(TaskEnvelope(task_id="t-1", kind="invoice"), DEFAULT_PLANS["invoice"])
    assert [(s.step_id, s.target) for s in plan.steps] == [
        ("1-post_invoice", "http://erp/invoices"), ("2-schedule_payment", "http://erp/payments")]
    post, pay = plan.steps
    assert (post.compensation.target, post.compensation.operation) == (
        "http://erp/invoices/{idempotency_key}", "DELETE")
    assert not pay.HasField("compensation")


def test_a_tenant_plan_can_name_a_compensation(tmp_path: Path) -> None:
    write(tmp_path, {"acme.yaml": (
        "plans:\n  admission_form:\n"
        "    - {name: create_applicant, target: 'http://sis/applicants',\n"
        "       compensate: 'http://sis/applicants/{idempotency_key}'}\n"
        "    - {name: open_ticket, target: 'http://helpdesk/tickets'}\n")})
    acme = load_policies(tmp_path).for_tenant("acme")
    assert acme.plans["admission_form"] == (
        PlanStep("create_applicant", "http://sis/applicants",
                 "http://sis/applicants/{idempotency_key}"),
        PlanStep("open_ticket", "http://helpdesk/tickets"))
    assert acme.plans["invoice"] == DEFAULT_PLANS["invoice"]


def test_the_helm_charts_default_policy_is_valid() -> None:
    values = yaml.safe_load((ROOT / "deploy" / "helm" / "values.yaml").read_text())
    for tenant, document in values["policies"].items():
        policy = parse_policy(document, f"values.yaml policies.{tenant}")
        assert policy.reject_labels == {"other"}


@pytest.mark.parametrize(("text", "message"), [
    ("auto_execute_threshold: 1.5", "auto_execute_threshold: must be a number between 0 and 1, got 1.5"),
    ("auto_execute_treshold: 0.9", "auto_execute_treshold: unknown key (allowed: auto_execute_threshold"),
    ("reject_labels: [spam]", "reject_labels: unknown value(s) 'spam' (allowed: invoice"),
    ("label_thresholds: {memo: 0.5}", "label_thresholds.memo: unknown key"),
    ("on_model_unavailable: wait", "on_model_unavailable: must be one of escalate, hold, got 'wait'"),
    ("plans: {invoice: [{name: post}]}", "plans.invoice[0].target: must be a non-empty string"),
    ("plans: {invoice: [{name: post, target: erp.invoices, compensate: ''}]}",
     "plans.invoice[0].compensate: must be a non-empty string"),
    ("plans: {invoice: [{name: post, target: erp.invoices, undo: x}]}",
     "plans.invoice[0].undo: unknown key (allowed: name, target, compensate)"),
    ("invoice: {max_auto_amount: -1}", "invoice.max_auto_amount: must be a non-negative number or null"),
    ("invoice: {required_fields: [iban]}", "invoice.required_fields: unknown value(s) 'iban'"),
    ("invoice: {allowed_currencies: [dollars]}", "invoice.allowed_currencies: ISO 4217 codes"),
    ("vendors: {require_allow_list: yes please}", "vendors.require_allow_list: must be true or false"),
    ("- a list", "(top level): must be a mapping"),
])
def test_mistakes_are_named(text: str, message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(yaml.safe_load(text), "acme.yaml")
    assert f"acme.yaml: {message}" in str(caught.value)


def test_a_directory_with_mistakes_is_refused_whole(tmp_path: Path) -> None:
    write(tmp_path, {"good.yaml": "review_queue: ok\n", "bad.yaml": "reject_threshold: high\n",
                     "broken.yaml": "invoice: [\n", "bad name!.yaml": "{}\n"})
    with pytest.raises(PolicyError) as caught:
        load_policies(tmp_path)
    text = str(caught.value)
    assert "bad.yaml: reject_threshold: must be a number between 0 and 1, got 'high'" in text
    assert "broken.yaml: not valid YAML" in text
    assert "bad name!.yaml: file name must be <tenant>.yaml" in text
    with pytest.raises(PolicyError, match="does not exist"):
        load_policies(tmp_path / "missing")


# -- invoice rules -----------------------------------------------------------------------------

ROUTED = Prediction("document_router", "1.0.0", "invoice", 0.97, {"invoice": 0.97})
KNOWN = VendorHistory(known=True, invoice_count=24, mean_amount=380.0, currency="USD")


def assess(text: str, history: VendorHistory = KNOWN, p_auto: float = 0.95
           ) -> InvoiceAssessment:
    ex = extract_invoice(text)
    inputs = risk_inputs(ex, history, dt.date(2026, 11, 22))
    return InvoiceAssessment(ex, history, inputs,
                             Prediction("invoice_risk", "1.0.0", "auto", p_auto,
                                        {"p_auto": p_auto}), vendor_key(ex.get("vendor") or ""))


STRICT = parse_policy({"invoice": {"max_auto_amount": 1000, "allowed_currencies": ["USD"],
                                   "reject_amount_over": 100000,
                                   "min_extraction_confidence": 0.75},
                       "vendors": {"allow": ["Northwind Supplies Ltd"], "block": ["Shady Parts"],
                                   "require_allow_list": True}}, "strict.yaml")


@pytest.mark.parametrize(("name", "assessment", "action", "rule"), [
    ("clean", assess(invoice()), "auto_execute", "straight_through_invoice"),
    ("blocked", assess(invoice(vendor="Shady Parts Ltd")), "reject", "vendor_blocked"),
    ("far too large", assess(invoice(items=(("Plant", 1, 200000.0),))), "reject",
     "amount_over_reject_limit"),
    ("no number", assess(invoice(number="")), "escalate", "missing_fields"),
    ("not allowed", assess(invoice(vendor="Kestrel Foods AG")), "escalate", "vendor_not_allowed"),
    ("currency", assess(invoice(currency="EUR")), "escalate", "currency_not_allowed"),
    ("over limit", assess(invoice(items=(("Desks", 4, 500.0),))), "escalate", "amount_over_limit"),
    ("duplicate", assess(invoice(), VendorHistory(**{**KNOWN.__dict__, "duplicate": True})),
     "escalate", "duplicate_invoice"),
    # a changed bank account goes to a person however sure the risk model is
    ("bank changed", assess(invoice(), VendorHistory(**{**KNOWN.__dict__,
                                                        "bank_changed": True}), p_auto=0.99),
     "escalate", "bank_details_changed"),
    # a vendor's first account (none confirmed yet) is confirmed by a person
    ("first account", assess(invoice(), VendorHistory(**{**KNOWN.__dict__,
                                                         "bank_unconfirmed": True}), p_auto=0.99),
     "escalate", "bank_account_unconfirmed"),
    ("unreadable", assess("Northwind Supplies Ltd\nInvoice No: X-1\nTOTAL: USD 10.00\n"),
     "escalate", "low_extraction_confidence"),
    ("risky", assess(invoice(), p_auto=0.42), "escalate", "invoice_risk"),
])
def test_invoice_rules(name: str, assessment: InvoiceAssessment, action: str, rule: str) -> None:
    outcome = decide("invoice", ROUTED, STRICT, invoice=assessment)
    assert (outcome.action, outcome.rule) == (action, rule), outcome.explanation
    assert outcome.explanation.startswith("Invoice ")
    if action == "auto_execute":
        assert outcome.steps == DEFAULT_PLANS["invoice"]
    assert "Northwind" not in outcome.explanation  # the vendor's name is personal data
    if rule in ("amount_over_limit", "duplicate_invoice", "bank_details_changed"):
        assert outcome.priority == 1


def test_risk_inputs_come_from_fields_and_history() -> None:
    a = assess(invoice())
    assert a.inputs["amount"] == 360.0 and a.inputs["vendor_known"] == 1.0
    assert a.inputs["vendor_mean_amount"] == 380.0 and a.inputs["days_until_due"] == 28.0
    assert a.inputs["has_po_number"] == 1.0 and a.inputs["bank_details_changed"] == 0.0
    assert a.inputs["line_items_total_mismatch"] == 0.0 and a.inputs["line_item_count"] == 2.0
    # the account comparison itself runs on keyed hashes in HistoryStore.lookup
    moved = assess(invoice(iban="DE89 3704 0044 0532 0130 00", currency="EUR"),
                   VendorHistory(**{**KNOWN.__dict__, "bank_changed": True}))
    assert moved.inputs["bank_details_changed"] == 1.0 and moved.inputs["currency_mismatch"] == 1.0
    assert "bank details changed" in moved.risk_factors()
