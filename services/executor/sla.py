"""Per-tenant deadlines: when a blocked task must be handed to a person instead of waiting.

A task's deadline is the earlier of its own (``Submission.deadline``) and its tenant's SLA
(``SWITCHYARD_EXECUTOR_SLA_OVERRIDES``, else ``SWITCHYARD_EXECUTOR_SLA_S``) counted from the
moment the task was accepted. Pure functions: the executor calls them with values it read.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from switchyard.v1 import TaskEnvelope


def parse_sla_overrides(spec: str) -> dict[str, float]:
    """``'acme:3600,globex:600'`` -> {'acme': 3600.0, 'globex': 600.0}."""
    out: dict[str, float] = {}
    for index, entry in enumerate(filter(None, (e.strip() for e in spec.split(",")))):
        tenant, sep, seconds = entry.rpartition(":")
        try:
            value = float(seconds)
        except ValueError:
            value = -1.0
        if not sep or not tenant or value <= 0:
            raise ValueError(f"SWITCHYARD_EXECUTOR_SLA_OVERRIDES entry {index} must be "
                             f"'tenant:seconds' with seconds > 0, got {entry!r}")
        out[tenant] = value
    return out


class SlaPolicy:
    def __init__(self, default_s: float, overrides: dict[str, float]) -> None:
        if default_s <= 0:
            raise ValueError("SWITCHYARD_EXECUTOR_SLA_S must be > 0")
        self.default_s = default_s
        self.overrides = overrides

    def sla_s(self, tenant_id: str) -> float:
        return self.overrides.get(tenant_id, self.default_s)

    def deadline(self, tenant_id: str, accepted_at: datetime,
                 envelope: TaskEnvelope | None = None,
                 person_decided_at: datetime | None = None) -> datetime:
        """The earlier of the task's own deadline and its tenant's SLA from acceptance; for
        a person's decision (``person_decided_at``) no earlier than the tenant's SLA from
        that decision: the deadline the person was handed is behind them (an SLA-at-risk
        escalation's is past), and the plan they approved, blocked again, parks and is
        probed like any other rather than being handed straight back to them."""
        due = accepted_at + timedelta(seconds=self.sla_s(tenant_id))
        if envelope is not None and envelope.HasField("deadline"):
            due = min(envelope.deadline.ToDatetime(timezone.utc), due)
        if person_decided_at is not None:
            due = max(due, person_decided_at + timedelta(seconds=self.sla_s(tenant_id)))
        return due


def at_risk(deadline: datetime, resume_at: datetime) -> bool:
    """A task parked until ``resume_at`` would pass ``deadline`` while blocked."""
    return resume_at >= deadline
