"""The review service's policies, parsed once from settings: admission limits per tenant and
per queue, what happens when an SLA runs out, and each tenant's default action.

Parsing happens at start-up so a typo in an override stops the process with a message naming
the setting, instead of surfacing later as an escalation storm nobody throttled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import timedelta

from switchyard import Settings

EXPIRY_POLICIES = ("reassign", "default_action", "fail")
DEFAULT_ACTIONS = ("approve", "reject")
ANY_TENANT = "*"


class PolicyError(ValueError):
    """A review setting cannot be parsed; the message names the environment variable."""


@dataclass(frozen=True)
class Limit:
    """A token bucket: ``rate`` tokens a second up to ``burst``; rate 0 means no limit."""

    rate: float
    burst: int

    @property
    def unlimited(self) -> bool:
        return self.rate <= 0


@dataclass(frozen=True)
class QueueLimits:
    bucket: Limit
    max_open: int  # pending + claimed items the queue may hold; 0: no cap


@dataclass(frozen=True)
class ReviewPolicy:
    tenant_limit: Limit
    queue_default: QueueLimits
    expiry_default: str
    reassign_extension: timedelta
    sla_bump: timedelta
    storm_after: timedelta | None
    storm_priority: int
    default_lease: timedelta
    queue_overrides: dict[str, QueueLimits] = field(default_factory=dict)
    expiry_overrides: dict[str, str] = field(default_factory=dict)
    default_actions: dict[str, str] = field(default_factory=dict)

    def queue(self, name: str) -> QueueLimits:
        return self.queue_overrides.get(name, self.queue_default)

    def expiry(self, queue: str) -> str:
        return self.expiry_overrides.get(queue, self.expiry_default)

    def default_action(self, tenant_id: str) -> str | None:
        """'approve', 'reject', or None when the tenant has no default action."""
        return self.default_actions.get(tenant_id, self.default_actions.get(ANY_TENANT))

    @classmethod
    def from_settings(cls, settings: Settings) -> ReviewPolicy:
        tenant_limit = _limit("SWITCHYARD_REVIEW_TENANT_RATE", settings.review_tenant_rate,
                              settings.review_tenant_burst)
        queue_default = QueueLimits(
            _limit("SWITCHYARD_REVIEW_QUEUE_RATE", settings.review_queue_rate,
                   settings.review_queue_burst),
            _non_negative("SWITCHYARD_REVIEW_QUEUE_MAX_OPEN", settings.review_queue_max_open))
        if settings.review_expiry_policy not in EXPIRY_POLICIES:
            raise PolicyError(f"SWITCHYARD_REVIEW_EXPIRY_POLICY must be one of "
                              f"{', '.join(EXPIRY_POLICIES)}, not "
                              f"{settings.review_expiry_policy!r}")
        if not 0 <= settings.review_storm_priority <= 3:
            raise PolicyError("SWITCHYARD_REVIEW_STORM_PRIORITY must be 0..3")
        return cls(
            tenant_limit=tenant_limit,
            queue_default=queue_default,
            expiry_default=settings.review_expiry_policy,
            reassign_extension=_duration("SWITCHYARD_REVIEW_REASSIGN_EXTENSION_S",
                                         settings.review_reassign_extension_s),
            sla_bump=_duration("SWITCHYARD_REVIEW_SLA_BUMP_S", settings.review_sla_bump_s),
            storm_after=(_duration("SWITCHYARD_REVIEW_STORM_AFTER_S",
                                   settings.review_storm_after_s)
                         if settings.review_storm_after_s > 0 else None),
            storm_priority=settings.review_storm_priority,
            default_lease=_duration("SWITCHYARD_REVIEW_DEFAULT_LEASE_S",
                                    settings.review_default_lease_s),
            queue_overrides=parse_queue_overrides(settings.review_queue_overrides),
            expiry_overrides=parse_pairs("SWITCHYARD_REVIEW_QUEUE_EXPIRY",
                                         settings.review_queue_expiry, EXPIRY_POLICIES),
            default_actions=parse_pairs("SWITCHYARD_REVIEW_DEFAULT_ACTIONS",
                                        settings.review_default_actions, DEFAULT_ACTIONS),
        )


def _entries(spec: str) -> list[str]:
    return [e.strip() for e in spec.split(",") if e.strip()]


def _non_negative(var: str, value: int) -> int:
    if value < 0:
        raise PolicyError(f"{var} must be >= 0, not {value}")
    return value


#: Ten years: any longer duration is a typo (and timedelta overflows not far beyond).
MAX_DURATION_S = 10 * 365 * 24 * 3600


def _duration(var: str, seconds: float) -> timedelta:
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_DURATION_S:
        raise PolicyError(f"{var} must be 0 to {MAX_DURATION_S} seconds, not {seconds}")
    return timedelta(seconds=seconds)


def _limit(var: str, rate: float, burst: int) -> Limit:
    if not math.isfinite(rate):
        raise PolicyError(f"{var} must be a finite number (0: no limit), not {rate}")
    if rate < 0:
        raise PolicyError(f"{var} must be >= 0 (0: no limit), not {rate}")
    if rate > 0 and burst < 1:
        raise PolicyError(f"{var.replace('_RATE', '_BURST')} must be >= 1 when a rate is set")
    return Limit(rate, burst)


def parse_queue_overrides(spec: str) -> dict[str, QueueLimits]:
    """``queue:rate:burst:max_open`` entries, comma separated."""
    var = "SWITCHYARD_REVIEW_QUEUE_OVERRIDES"
    out: dict[str, QueueLimits] = {}
    for entry in _entries(spec):
        parts = entry.split(":")
        if len(parts) != 4 or not parts[0]:
            raise PolicyError(f"{var} entry {entry!r} must be 'queue:rate:burst:max_open'")
        try:
            rate, burst, max_open = float(parts[1]), int(parts[2]), int(parts[3])
        except ValueError:
            raise PolicyError(f"{var} entry {entry!r}: rate is a number, burst and max_open "
                              "are integers") from None
        out[parts[0]] = QueueLimits(_limit(f"{var} ({parts[0]}) rate", rate, burst),
                                    _non_negative(f"{var} ({parts[0]}) max_open", max_open))
    return out


def parse_pairs(var: str, spec: str, allowed: tuple[str, ...]) -> dict[str, str]:
    """``name:value`` entries whose value is one of ``allowed``."""
    out: dict[str, str] = {}
    for entry in _entries(spec):
        name, sep, value = entry.partition(":")
        if not sep or not name or value not in allowed:
            raise PolicyError(f"{var} entry {entry!r} must be 'name:{'|'.join(allowed)}'")
        out[name] = value
    return out
