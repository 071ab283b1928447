"""The policy engine: model outputs + business rules -> auto-execute, escalate or reject.

Pure domain code (no I/O). Every decision names the rule that fired and explains itself in a
sentence a reviewer can read, and carries the models' names, versions and scores.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from google.protobuf import struct_pb2

from services.decision.triton import Prediction

#: What an auto-executed task of each document type does downstream, in order.
DEFAULT_PLANS: dict[str, tuple[tuple[str, str], ...]] = {
    "invoice": (("post_invoice", "erp.invoices"),),
    "admission_form": (("create_applicant", "sis.applicants"),),
    "support_ticket": (("open_ticket", "helpdesk.tickets"),),
    "classroom_event": (("record_event", "analytics.events"),),
}


@dataclass(frozen=True)
class Policy:
    """A tenant's policy. Defaults are what a tenant without its own policy gets."""

    auto_execute_threshold: float = 0.80
    reject_labels: frozenset[str] = frozenset({"other"})
    reject_threshold: float = 0.90
    review_queue: str = "default"
    plans: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=lambda: DEFAULT_PLANS)


@dataclass(frozen=True)
class Outcome:
    """A decision before it becomes a protobuf: what to do and why."""

    action: str  # "auto_execute" | "escalate" | "reject"
    rule: str
    explanation: str
    confidence: float
    label: str
    escalation_reason: str = ""  # LOW_CONFIDENCE, POLICY, MODEL_UNAVAILABLE, ...
    priority: int = 2
    steps: tuple[tuple[str, str], ...] = ()


def decide(kind: str, prediction: Prediction | None, policy: Policy,
           requested_priority: int = 2, unavailable_reason: str = "") -> Outcome:
    """Apply ``policy`` to the router's prediction for a task submitted as ``kind``."""
    if prediction is None:
        return Outcome(
            "escalate", "model_unavailable",
            f"The models could not be reached ({unavailable_reason or 'unavailable'}); "
            "a person decides instead.",
            0.0, kind or "", "MODEL_UNAVAILABLE", priority=min(requested_priority, 1),
        )
    label, confidence = prediction.label, prediction.confidence
    pct = f"{confidence:.0%}"
    if label in policy.reject_labels and confidence >= policy.reject_threshold:
        return Outcome("reject", "out_of_scope",
                       f"The router is {pct} sure this is '{label}', which this tenant does not "
                       "automate.", confidence, label)
    if kind and kind != label and confidence >= policy.auto_execute_threshold:
        return Outcome("escalate", "kind_mismatch",
                       f"Submitted as '{kind}' but the router is {pct} sure it is '{label}'.",
                       confidence, label, "POLICY", priority=requested_priority)
    if confidence < policy.auto_execute_threshold:
        return Outcome("escalate", "low_confidence",
                       f"The router's best guess is '{label}' at {pct}, below the "
                       f"{policy.auto_execute_threshold:.0%} needed to act alone.",
                       confidence, label, "LOW_CONFIDENCE", priority=requested_priority)
    steps = policy.plans.get(label, ())
    if not steps:
        return Outcome("escalate", "no_plan",
                       f"No automated action is configured for '{label}'.",
                       confidence, label, "POLICY", priority=requested_priority)
    return Outcome("auto_execute", "confident_route",
                   f"The router is {pct} sure this is '{label}'; running its plan.",
                   confidence, label, steps=steps)


def step_payload(values: dict[str, object]) -> struct_pb2.Struct:
    payload = struct_pb2.Struct()
    payload.update(values)
    return payload
