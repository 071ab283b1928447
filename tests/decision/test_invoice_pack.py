"""The shipped invoice pack reproduces the invoice rules the engine had before packs.

The same table of cases the old policy code was tested with, now through the invoice pack's
decision table (its CEL rules with the tenant's parameters), the engine's table evaluation and
the pack's Python (extractor, vendor-history keys, risk features). No Triton: the rule context
is built from real extractions, a vendor history and a given P(auto).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

import pytest

from services.decision.engine import table_outcome
from services.decision.policy import Policy
from switchyard.packs import Pack, builtin_packs, resolve_parameters, typed_fields
from switchyard_packs.invoice.extension import history_context
from switchyard_packs.invoice.extraction import extract_invoice
from switchyard_packs.invoice.history import VendorHistory, risk_factors, risk_inputs
from tests.decision.documents import invoice

KNOWN = VendorHistory(known=True, invoice_count=24, mean_amount=380.0, currency="USD")
RECEIVED = dt.date(2026, 11, 22)
#: What the old tests called the strict tenant, as invoice pack parameters.
STRICT = {"max_auto_amount": 1000, "allowed_currencies": ["USD"], "reject_amount_over": 100000,
          "min_extraction_confidence": 0.75, "vendors_allow": ["Northwind Supplies Ltd"],
          "vendors_block": ["Shady Parts"], "require_allow_list": True}


@pytest.fixture(scope="module")
def pack() -> Pack:
    return builtin_packs()["invoice"]


def context(pack: Pack, text: str, history: VendorHistory = KNOWN, p_auto: float = 0.95,
            overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    ex = extract_invoice(text)
    params = resolve_parameters(pack, STRICT if overrides is None else overrides)
    return {
        "fields": typed_fields({n: f.value for n, f in ex.fields.items()}, pack.field_types),
        "metadata": {}, "task": {"task_id": "t-1", "tenant_id": "acme", "kind": "invoice"},
        "params": params, "route": {"label": "invoice", "confidence": 0.97},
        "scores": {"invoice_risk": p_auto},
        "extraction": {"confidence": ex.confidence, "issues": list(ex.issues)},
        "history": history_context(ex, history, params, RECEIVED),
    }


CASES = [
    ("clean", invoice(), KNOWN, 0.95, "auto_execute", "straight_through_invoice"),
    ("blocked", invoice(vendor="Shady Parts Ltd"), KNOWN, 0.95, "reject", "vendor_blocked"),
    ("far too large", invoice(items=(("Plant", 1, 200000.0),)), KNOWN, 0.95, "reject",
     "amount_over_reject_limit"),
    ("no number", invoice(number=""), KNOWN, 0.95, "escalate", "missing_fields"),
    ("not allowed", invoice(vendor="Kestrel Foods AG"), KNOWN, 0.95, "escalate",
     "vendor_not_allowed"),
    ("currency", invoice(currency="EUR"), KNOWN, 0.95, "escalate", "currency_not_allowed"),
    ("over limit", invoice(items=(("Desks", 4, 500.0),)), KNOWN, 0.95, "escalate",
     "amount_over_limit"),
    ("duplicate", invoice(), replace(KNOWN, duplicate=True), 0.95, "escalate",
     "duplicate_invoice"),
    # a changed bank account goes to a person however sure the risk model is
    ("bank changed", invoice(), replace(KNOWN, bank_changed=True), 0.99, "escalate",
     "bank_details_changed"),
    # a vendor's first account (none confirmed yet) is confirmed by a person
    ("first account", invoice(), replace(KNOWN, bank_unconfirmed=True), 0.99, "escalate",
     "bank_account_unconfirmed"),
    ("unreadable", "Northwind Supplies Ltd\nInvoice No: X-1\nTOTAL: USD 10.00\n", KNOWN, 0.95,
     "escalate", "low_extraction_confidence"),
    ("risky", invoice(), KNOWN, 0.42, "escalate", "invoice_risk"),
]


@pytest.mark.parametrize(("name", "text", "history", "p_auto", "action", "rule"), CASES,
                         ids=[c[0] for c in CASES])
def test_invoice_rules(pack: Pack, name: str, text: str, history: VendorHistory,
                       p_auto: float, action: str, rule: str) -> None:
    outcome = table_outcome(pack, context(pack, text, history, p_auto), Policy())
    assert (outcome.action, outcome.rule) == (action, rule), outcome.explanation
    assert outcome.explanation.startswith("Invoice "), outcome.explanation
    assert "Northwind" not in outcome.explanation  # the vendor's name is personal data
    if rule in ("amount_over_limit", "duplicate_invoice", "bank_details_changed"):
        assert outcome.priority == 1  # high: before the normal work


def test_the_risk_rule_explains_in_words(pack: Pack) -> None:
    outcome = table_outcome(pack, context(pack, invoice(po=None), VendorHistory(), 0.3, {}),
                            Policy())
    assert outcome.rule == "invoice_risk"
    assert "vendor not seen before" in outcome.explanation
    assert "no PO number" in outcome.explanation


def test_defaults_are_the_old_defaults(pack: Pack) -> None:
    assert resolve_parameters(pack, {}) == {
        "min_p_auto": 0.8, "min_extraction_confidence": 0.6, "max_auto_amount": 50000,
        "reject_amount_over": 0, "required_fields": ["vendor", "invoice_number", "total",
                                                        "currency"],
        "allowed_currencies": [], "escalate_duplicates": True, "vendors_allow": [],
        "vendors_block": [], "require_allow_list": False, "po_matching": True,
        "po_price_tolerance": 0.02, "po_goods_receipt_required": True,
        "po_line_similarity": 0.5}
    # a tenant may let duplicates through
    quiet = table_outcome(pack, context(pack, invoice(), replace(KNOWN, duplicate=True), 0.95,
                                        {"escalate_duplicates": False}), Policy())
    assert quiet.rule == "straight_through_invoice"


def test_risk_inputs_come_from_fields_and_history() -> None:
    ex = extract_invoice(invoice())
    x = risk_inputs(ex, KNOWN, RECEIVED)
    assert x["amount"] == 360.0 and x["vendor_known"] == 1.0
    assert x["vendor_mean_amount"] == 380.0 and x["days_until_due"] == 28.0
    assert x["has_po_number"] == 1.0 and x["bank_details_changed"] == 0.0
    assert x["line_items_total_mismatch"] == 0.0 and x["line_item_count"] == 2.0
    # the account comparison itself runs on keyed hashes in HistoryStore.lookup
    moved = risk_inputs(extract_invoice(invoice(iban="DE89 3704 0044 0532 0130 00",
                                                currency="EUR")),
                        replace(KNOWN, bank_changed=True), RECEIVED)
    assert moved["bank_details_changed"] == 1.0 and moved["currency_mismatch"] == 1.0
    assert "bank details changed" in risk_factors(moved)


def _with_match(ctx: dict[str, Any], match: Any) -> dict[str, Any]:
    return {**ctx, "history": {**ctx["history"], **match.context()}}


def test_a_purchase_order_match_decides_before_the_risk_model(pack: Pack) -> None:
    """A matched invoice of a vendor never paid runs straight through however unsure the risk
    model is; a mismatch goes to a person with every difference named; no order found: the
    risk model and the rest decide as before. The checks above the match still come first."""
    from switchyard_packs.invoice.purchasing import (
        MATCHED,
        NOT_MATCHED,
        Discrepancy,
        LineMatch,
        Match,
        unknown_order,
    )

    fresh = context(pack, invoice(), VendorHistory(), 0.3, {})
    matched = Match(MATCHED, "PO-55120", "number", "three_way",
                    (LineMatch(0, 1, 0.9, 4), LineMatch(1, 2, 0.8, 10)))
    outcome = table_outcome(pack, _with_match(fresh, matched), Policy())
    assert (outcome.action, outcome.rule) == ("auto_execute", "purchase_order_matched")
    assert "matches purchase order PO-55120" in outcome.explanation
    assert "three-way (the order and its goods receipts) on 2 line(s)" in outcome.explanation
    price = Match("mismatch", "PO-55120", "number", "three_way", (), (
        Discrepancy("unit_price", "69.9", "62.5", "invoice line 1 charges 69.9 a unit"),
        Discrepancy("quantity", "12", "10", "invoice line 2 bills 12")))
    outcome = table_outcome(pack, _with_match(fresh, price), Policy())
    assert (outcome.action, outcome.rule) == ("escalate", "purchase_order_mismatch")
    assert ("does not match purchase order PO-55120 (unit_price: invoice line 1 charges 69.9 "
            "a unit; quantity: invoice line 2 bills 12)") in outcome.explanation
    # the reviewer gets them field by field too (Escalation.discrepancies)
    assert [(d.field, d.submitted, d.found, d.source) for d in outcome.discrepancies] == [
        ("unit_price", "69.9", "62.5", "purchase order PO-55120"),
        ("quantity", "12", "10", "purchase order PO-55120")]
    assert outcome.discrepancies[0].note == "invoice line 1 charges 69.9 a unit"
    unknown = table_outcome(pack, _with_match(fresh, unknown_order("PO-1")), Policy())
    assert "po_number: no purchase order with this number" in unknown.explanation
    assert table_outcome(pack, _with_match(fresh, NOT_MATCHED), Policy()).rule == "invoice_risk"
    duplicate = context(pack, invoice(), replace(VendorHistory(), duplicate=True), 0.3, {})
    assert table_outcome(pack, _with_match(duplicate, matched), Policy()).rule == \
        "duplicate_invoice"
