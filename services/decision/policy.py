"""A tenant's routing policy: is the router sure enough, and does the tenant automate this type?

Pure domain code (no I/O). A tenant's :class:`Policy` comes from its YAML file (see
:mod:`services.decision.policies`); :func:`route` applies its routing rules, in a fixed order,
before any pack's decision table: a type the tenant refuses is rejected, a document submitted
as another type or read with too little confidence goes to a person. What happens to a
document the router is sure about is its pack's business (:mod:`services.decision.engine`).
Every outcome names its rule and explains itself in a sentence a reviewer can read.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from services.decision.triton import Prediction
from switchyard.tasks import DEFAULT_REVIEW_QUEUE
from switchyard.v1 import Discrepancy

ON_MODEL_UNAVAILABLE = ("escalate", "hold")


@dataclass(frozen=True)
class Policy:
    """A tenant's policy. Defaults are what a tenant without its own policy gets."""

    auto_execute_threshold: float = 0.80
    reject_labels: frozenset[str] = frozenset({"other"})
    reject_threshold: float = 0.90
    review_queue: str = DEFAULT_REVIEW_QUEUE
    label_thresholds: dict[str, float] = field(default_factory=dict)
    on_model_unavailable: str = "escalate"  # or "hold": BLOCKED until the models answer
    #: The file's ``packs:`` mapping (tenant pack settings), as YAML; empty: none. Settings
    #: applied through PackService win over it.
    packs_document: bytes = b""
    name: str = "built-in default"

    def threshold_for(self, label: str, pack_min_confidence: float | None = None) -> float:
        """The router confidence ``label`` needs: the tenant's ``label_thresholds`` entry,
        else the pack's ``models.router.min_confidence``, else ``auto_execute_threshold``."""
        if label in self.label_thresholds:
            return self.label_thresholds[label]
        if pack_min_confidence is not None:
            return pack_min_confidence
        return self.auto_execute_threshold


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
    # an escalation's review routing, from the pack rule that escalated (empty: the tenant's)
    queue: str = ""
    reviewer_group: str = ""
    four_eyes: bool = False
    review_sla_s: float | None = None
    #: what the escalating rule's ``discrepancies`` gave: each field a check disagrees on
    discrepancies: tuple[Discrepancy, ...] = ()


def unavailable(kind: str, reason: str, requested_priority: int = 2) -> Outcome:
    return Outcome(
        "escalate", "model_unavailable",
        f"The models could not be reached ({reason or 'unavailable'}); a person decides instead.",
        0.0, kind or "", "MODEL_UNAVAILABLE", priority=min(requested_priority, 1),
    )


def route(kind: str, prediction: Prediction, policy: Policy, requested_priority: int = 2,
          pack_min_confidence: float | None = None, look_alike: str | None = None,
          titled: str | None = None) -> Outcome | None:
    """The routing rules: an Outcome when one of them decides, None when the document goes on
    to its pack's decision table. ``look_alike``: the title of a document that resembles the
    router's type but is not it, which heads the document (``Pack.look_alike_title``); a
    person confirms the type however sure the router is, unless the submitter named it.
    ``titled``: the document's own title names the router's type (``Pack.own_title``): an
    unsure router's best guess, so confirmed, goes on to the pack when no kind was submitted."""
    label, confidence = prediction.label, prediction.confidence
    pct = f"{confidence:.0%}"
    threshold = policy.threshold_for(label, pack_min_confidence)
    if label in policy.reject_labels and confidence >= policy.reject_threshold:
        return Outcome("reject", "out_of_scope",
                       f"The router is {pct} sure this is '{label}', which this tenant does not "
                       "automate.", confidence, label)
    if kind and kind != label and confidence >= threshold:
        return Outcome("escalate", "kind_mismatch",
                       f"Submitted as '{kind}' but the router is {pct} sure it is '{label}'.",
                       confidence, label, "POLICY", priority=requested_priority)
    if look_alike and not kind and confidence >= threshold:
        return Outcome("escalate", "look_alike_title",
                       f"The router is {pct} sure this is '{label}', but the document is titled "
                       f"'{look_alike}', a look-alike of it.", confidence, label,
                       "POLICY", priority=requested_priority)
    if confidence < threshold and not (titled and not kind):
        return Outcome("escalate", "low_confidence",
                       f"The router's best guess is '{label}' at {pct}, below the "
                       f"{threshold:.0%} needed to act alone.",
                       confidence, label, "LOW_CONFIDENCE", priority=requested_priority)
    return None


def no_plan(label: str, confidence: float, requested_priority: int = 2) -> Outcome:
    """The router is sure, but the tenant has no enabled pack for the type."""
    return Outcome("escalate", "no_plan", f"No automated action is configured for '{label}'.",
                   confidence, label, "POLICY", priority=requested_priority)


__all__ = ["ON_MODEL_UNAVAILABLE", "Outcome", "Policy", "no_plan", "route", "unavailable"]
