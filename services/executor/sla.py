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
                 envelope: TaskEnvelope | None = None) -> datetime:
        tenant_deadline = accepted_at + timedelta(seconds=self.sla_s(tenant_id))
        if envelope is not None and envelope.HasField("deadline"):
            own = envelope.deadline.ToDatetime(timezone.utc)
            return min(own, tenant_deadline)
        return tenant_deadline


def at_risk(deadline: datetime, resume_at: datetime) -> bool:
    """A task parked until ``resume_at`` would pass ``deadline`` while blocked."""
    return resume_at >= deadline
