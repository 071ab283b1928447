"""The policy engine: model outputs + business rules -> auto-execute, escalate or reject.

Pure domain code (no I/O). A tenant's :class:`Policy` comes from its YAML file (see
:mod:`services.decision.policies`); :func:`decide` applies it. Rules are checked in a fixed
order and the first that fires decides; every outcome names that rule and explains itself in
a sentence a reviewer can read. Routing rules come first (is the router sure, does it agree
with the submitter, does the tenant automate this kind of document); invoices then pass the
business rules (blocked / allowed vendors, required fields, currencies, amount limits,
a bank account other than the vendor's confirmed one, duplicates) and the invoice_risk model's P(auto) before they run straight through.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from google.protobuf import struct_pb2

from services.decision.triton import Prediction
from switchyard._escalations import DEFAULT_REVIEW_QUEUE

if TYPE_CHECKING:
    from services.decision.invoices import InvoiceAssessment

@dataclass(frozen=True)
class PlanStep:
    """One step of a document type's plan: the call, and the call that undoes it.

    ``compensate`` is the target the executor calls (HTTP ``DELETE``) to undo this step when a
    later step fails permanently or the task is cancelled mid-plan; ``{idempotency_key}``,
    ``{task_id}`` and ``{step_id}`` in it are filled in by the executor. Empty: nothing to
    undo with (the step stays done).
    """

    name: str
    target: str
    compensate: str = ""


#: What an auto-executed task of each document type does downstream, in order. An invoice is
#: posted, then its payment is scheduled; when the payment cannot be scheduled (or the task is
#: cancelled before it is), the posted invoice is reversed: a saga of two steps.
DEFAULT_PLANS: dict[str, tuple[PlanStep, ...]] = {
    "invoice": (PlanStep("post_invoice", "http://erp/invoices",
                         compensate="http://erp/invoices/{idempotency_key}"),
                PlanStep("schedule_payment", "http://erp/payments")),
    "admission_form": (PlanStep("create_applicant", "http://sis/applicants"),),
    "support_ticket": (PlanStep("open_ticket", "http://helpdesk/tickets"),),
    "classroom_event": (PlanStep("record_event", "http://analytics/events"),),
}
ON_MODEL_UNAVAILABLE = ("escalate", "hold")


@dataclass(frozen=True)
class InvoicePolicy:
    """Business rules for invoices the router is sure about."""

    min_p_auto: float = 0.80  # invoice_risk P(auto) needed to run without a person
    min_extraction_confidence: float = 0.60
    max_auto_amount: float | None = 50_000.0  # larger invoices always get a person
    reject_amount_over: float | None = None  # larger invoices are refused outright
    required_fields: tuple[str, ...] = ("vendor", "invoice_number", "total", "currency")
    allowed_currencies: frozenset[str] = frozenset()  # empty: any
    escalate_duplicates: bool = True


@dataclass(frozen=True)
class VendorPolicy:
    allow: frozenset[str] = frozenset()  # vendor keys (extraction.vendor_key)
    block: frozenset[str] = frozenset()
    require_allow_list: bool = False  # True: vendors not on `allow` go to a person


@dataclass(frozen=True)
class Policy:
    """A tenant's policy. Defaults are what a tenant without its own policy gets."""

    auto_execute_threshold: float = 0.80
    reject_labels: frozenset[str] = frozenset({"other"})
    reject_threshold: float = 0.90
    review_queue: str = DEFAULT_REVIEW_QUEUE
    plans: dict[str, tuple[PlanStep, ...]] = field(default_factory=lambda: DEFAULT_PLANS)
    label_thresholds: dict[str, float] = field(default_factory=dict)
    on_model_unavailable: str = "escalate"  # or "hold": BLOCKED until the models answer
    invoice: InvoicePolicy = field(default_factory=InvoicePolicy)
    vendors: VendorPolicy = field(default_factory=VendorPolicy)
    name: str = "built-in default"

    def threshold_for(self, label: str) -> float:
        return self.label_thresholds.get(label, self.auto_execute_threshold)


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
    steps: tuple[PlanStep, ...] = ()


def unavailable(kind: str, reason: str, requested_priority: int = 2) -> Outcome:
    return Outcome(
        "escalate", "model_unavailable",
        f"The models could not be reached ({reason or 'unavailable'}); a person decides instead.",
        0.0, kind or "", "MODEL_UNAVAILABLE", priority=min(requested_priority, 1),
    )


def decide(kind: str, prediction: Prediction | None, policy: Policy,
           requested_priority: int = 2, unavailable_reason: str = "",
           invoice: InvoiceAssessment | None = None) -> Outcome:
    """Apply ``policy`` to the router's prediction (and, for invoices, their assessment)."""
    if prediction is None:
        return unavailable(kind, unavailable_reason, requested_priority)
    label, confidence = prediction.label, prediction.confidence
    pct = f"{confidence:.0%}"
    threshold = policy.threshold_for(label)
    if label in policy.reject_labels and confidence >= policy.reject_threshold:
        return Outcome("reject", "out_of_scope",
                       f"The router is {pct} sure this is '{label}', which this tenant does not "
                       "automate.", confidence, label)
    if kind and kind != label and confidence >= threshold:
        return Outcome("escalate", "kind_mismatch",
                       f"Submitted as '{kind}' but the router is {pct} sure it is '{label}'.",
                       confidence, label, "POLICY", priority=requested_priority)
    if confidence < threshold:
        return Outcome("escalate", "low_confidence",
                       f"The router's best guess is '{label}' at {pct}, below the "
                       f"{threshold:.0%} needed to act alone.",
                       confidence, label, "LOW_CONFIDENCE", priority=requested_priority)
    steps = policy.plans.get(label, ())
    if not steps:
        return Outcome("escalate", "no_plan",
                       f"No automated action is configured for '{label}'.",
                       confidence, label, "POLICY", priority=requested_priority)
    if label == "invoice" and invoice is not None:
        return _decide_invoice(invoice, policy, confidence, steps, requested_priority)
    return Outcome("auto_execute", "confident_route",
                   f"The router is {pct} sure this is '{label}'; running its plan.",
                   confidence, label, steps=steps)


def _money(amount: float | None, currency: str) -> str:
    return f"{currency or '?'} {amount:,.2f}" if amount is not None else "an unknown amount"


def _decide_invoice(a: InvoiceAssessment, policy: Policy, route_confidence: float,
                    steps: tuple[PlanStep, ...], priority: int) -> Outcome:
    rules, ex = policy.invoice, a.extraction
    key = a.vendor_key
    amount, currency = ex.amount("total"), ex.get("currency") or ""
    # the vendor's name is personal data (switchyard/_dataclass.py): explanations travel in
    # plaintext (task-status events, decisions.explanation), so they never name it
    what = f"Invoice {ex.get('invoice_number') or '(no number)'} for {_money(amount, currency)}"
    p_auto = a.risk.confidence
    conf = min(route_confidence, p_auto)

    def escalate(rule: str, why: str, reason: str = "POLICY", prio: int | None = None) -> Outcome:
        return Outcome("escalate", rule, f"{what}: {why}", conf, "invoice", reason,
                       priority=priority if prio is None else min(prio, priority))

    if key and key in policy.vendors.block:
        return Outcome("reject", "vendor_blocked",
                       f"{what}: the vendor is on this tenant's block list.", conf, "invoice")
    if amount is not None and rules.reject_amount_over is not None \
            and amount > rules.reject_amount_over:
        return Outcome("reject", "amount_over_reject_limit",
                       f"{what}: above the {rules.reject_amount_over:,.0f} this tenant accepts.",
                       conf, "invoice")
    missing = [f for f in rules.required_fields if ex.get(f) is None]
    if missing:
        return escalate("missing_fields", "could not read " + ", ".join(missing) + ".")
    if policy.vendors.require_allow_list and key not in policy.vendors.allow:
        return escalate("vendor_not_allowed", "the vendor is not on the approved vendor list.")
    if rules.allowed_currencies and currency not in rules.allowed_currencies:
        return escalate("currency_not_allowed",
                        f"{currency} is not among the currencies this tenant pays automatically.")
    if amount is not None and rules.max_auto_amount is not None \
            and amount > rules.max_auto_amount:
        return escalate("amount_over_limit",
                        f"above the {rules.max_auto_amount:,.0f} limit for straight-through "
                        "processing.", prio=1)
    if a.history.bank_changed:
        return escalate("bank_details_changed",
                        "the bank account is not the one confirmed for this vendor (by a "
                        "person or a successful payment); a changed account always needs a "
                        "person.", prio=1)
    if a.history.duplicate and rules.escalate_duplicates:
        return escalate("duplicate_invoice",
                        "this vendor's invoice number was seen before (possible duplicate).",
                        prio=1)
    if ex.confidence < rules.min_extraction_confidence:
        return escalate("low_extraction_confidence",
                        f"the fields were read with only {ex.confidence:.0%} confidence "
                        f"({', '.join(ex.issues) or 'fields missing'}).", "LOW_CONFIDENCE")
    if p_auto < rules.min_p_auto:
        return escalate("invoice_risk",
                        f"{a.risk.model_name} {a.risk.model_version} gives {p_auto:.0%} that it "
                        f"can go straight through, below the {rules.min_p_auto:.0%} required"
                        f"{'; ' + a.risk_factors() if a.risk_factors() else ''}.",
                        "LOW_CONFIDENCE")
    if a.history.bank_unconfirmed:
        return escalate("bank_account_unconfirmed",
                        "no bank account is confirmed for this vendor yet (by a person or a "
                        "successful payment); a person confirms the first one.")
    return Outcome("auto_execute", "straight_through_invoice",
                   f"{what}: {a.risk.model_name} {a.risk.model_version} gives {p_auto:.0%} that "
                   f"it can go straight through (needs {rules.min_p_auto:.0%}); posting it.",
                   conf, "invoice", steps=steps)


def step_payload(values: dict[str, object]) -> struct_pb2.Struct:
    payload = struct_pb2.Struct()
    payload.update(values)
    return payload
