"""Routing outcomes for a table of cases (model output x submitted kind)."""

from __future__ import annotations

import pytest

from services.decision.policy import Policy, no_plan, route, unavailable
from services.decision.triton import Prediction


def predicted(label: str, confidence: float) -> Prediction:
    return Prediction("document_router", "1.0.0", label, confidence, {label: confidence})


@pytest.mark.parametrize(
    ("kind", "label", "confidence", "action", "rule", "reason"),
    [
        ("invoice", "invoice", 0.97, None, None, None),  # on to the invoice pack
        ("", "support_ticket", 0.85, None, None, None),
        ("invoice", "invoice", 0.55, "escalate", "low_confidence", "LOW_CONFIDENCE"),
        ("invoice", "admission_form", 0.93, "escalate", "kind_mismatch", "POLICY"),
        ("", "other", 0.95, "reject", "out_of_scope", ""),
    ],
)
def test_routing_table(kind: str, label: str, confidence: float, action: str | None,
                       rule: str | None, reason: str | None) -> None:
    outcome = route(kind, predicted(label, confidence), Policy())
    if action is None:
        assert outcome is None
        return
    assert outcome is not None
    assert (outcome.action, outcome.rule, outcome.escalation_reason) == (action, rule, reason)
    assert outcome.explanation


def test_thresholds_tenant_label_over_pack_over_default() -> None:
    sure = predicted("invoice", 0.85)
    assert route("", sure, Policy()) is None  # 0.80 by default
    low = route("", sure, Policy(), pack_min_confidence=0.9)
    assert low is not None and low.rule == "low_confidence" and "90%" in low.explanation
    assert route("", sure, Policy(label_thresholds={"invoice": 0.8}),
                 pack_min_confidence=0.9) is None


def test_a_look_alike_title_asks_a_person_however_sure_the_router_is() -> None:
    sure = predicted("invoice", 0.97)
    outcome = route("", sure, Policy(), look_alike="packing list")
    assert outcome is not None
    assert (outcome.action, outcome.rule, outcome.escalation_reason, outcome.label) == (
        "escalate", "look_alike_title", "POLICY", "invoice")
    assert "packing list" in outcome.explanation and "97%" in outcome.explanation
    # a submitter who named the type is taken at its word; an unsure router asks anyway
    assert route("invoice", sure, Policy(), look_alike="packing list") is None
    unsure = route("", predicted("invoice", 0.5), Policy(), look_alike="packing list")
    assert unsure is not None and unsure.rule == "low_confidence"


def test_an_unsure_guess_the_documents_title_names_goes_on_to_its_pack() -> None:
    unsure = predicted("invoice", 0.55)
    assert route("", unsure, Policy(), titled="INVOICE") is None
    # a submitted kind is judged as before: the title confirms the router, not the submitter
    low = route("invoice", unsure, Policy(), titled="INVOICE")
    assert low is not None and low.rule == "low_confidence"
    # out of scope and a look-alike's title still decide first
    assert route("", predicted("invoice", 0.55), Policy(), titled=None) is not None


def test_a_type_without_a_pack_goes_to_a_person() -> None:
    outcome = no_plan("other", 0.85)
    assert (outcome.action, outcome.rule, outcome.escalation_reason) == (
        "escalate", "no_plan", "POLICY")


def test_model_unavailable_escalates_with_raised_priority() -> None:
    outcome = unavailable("invoice", "circuit open", requested_priority=3)
    assert (outcome.action, outcome.escalation_reason, outcome.priority) == (
        "escalate", "MODEL_UNAVAILABLE", 1)
    assert "circuit open" in outcome.explanation
