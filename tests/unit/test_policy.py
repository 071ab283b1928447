"""Policy outcomes for a table of cases (model output x submitted kind)."""

from __future__ import annotations

import pytest

from services.decision.policy import Policy, decide
from services.decision.triton import Prediction


def predicted(label: str, confidence: float) -> Prediction:
    return Prediction("document_router", "1.0.0", label, confidence, {label: confidence})


@pytest.mark.parametrize(
    ("kind", "label", "confidence", "action", "rule", "reason"),
    [
        ("invoice", "invoice", 0.97, "auto_execute", "confident_route", ""),
        ("", "support_ticket", 0.85, "auto_execute", "confident_route", ""),
        ("invoice", "invoice", 0.55, "escalate", "low_confidence", "LOW_CONFIDENCE"),
        ("invoice", "admission_form", 0.93, "escalate", "kind_mismatch", "POLICY"),
        ("", "other", 0.95, "reject", "out_of_scope", ""),
        ("", "other", 0.85, "escalate", "no_plan", "POLICY"),
    ],
)
def test_policy_table(kind: str, label: str, confidence: float, action: str, rule: str,
                      reason: str) -> None:
    outcome = decide(kind, predicted(label, confidence), Policy())
    assert (outcome.action, outcome.rule, outcome.escalation_reason) == (action, rule, reason)
    assert outcome.explanation
    if action == "auto_execute":
        assert outcome.steps


def test_model_unavailable_escalates_with_raised_priority() -> None:
    outcome = decide("invoice", None, Policy(), requested_priority=3,
                     unavailable_reason="circuit open")
    assert (outcome.action, outcome.escalation_reason, outcome.priority) == (
        "escalate", "MODEL_UNAVAILABLE", 1)
    assert "circuit open" in outcome.explanation
