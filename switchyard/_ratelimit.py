"""Token buckets: per-tenant submission limits at the gRPC edge.

In-process and lock-free (one event loop): each replica enforces its share, so the chart sets
the per-replica rate as the tenant's total divided by the replica count.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class TokenBucket:
    rate: float                 # tokens added per second
    burst: float                # bucket size
    tokens: float = field(default=-1.0)
    updated: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError("a token bucket needs rate > 0 and burst >= 1")
        if self.tokens < 0:
            self.tokens = self.burst

    def take(self, cost: float = 1.0, now: float | None = None) -> float:
        """Take ``cost`` tokens: 0.0 when allowed, else the seconds until they would be."""
        now = time.monotonic() if now is None else now
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= cost:
            self.tokens -= cost
            return 0.0
        return (cost - self.tokens) / self.rate


@dataclass(frozen=True)
class Limit:
    rate: float
    burst: float


def parse_limits(default: str, overrides: str) -> tuple[Limit | None, dict[str, Limit]]:
    """``rate/burst`` default (empty or 0 = unlimited) and ``tenant:rate/burst`` overrides."""
    def one(spec: str, what: str) -> Limit | None:
        spec = spec.strip()
        if not spec or spec == "0":
            return None
        rate, sep, burst = spec.partition("/")
        try:
            limit = Limit(float(rate), float(burst) if sep else max(1.0, float(rate)))
        except ValueError:
            raise ValueError(f"{what}: {spec!r} is not 'rate/burst'") from None
        if limit.rate <= 0 or limit.burst < 1:
            raise ValueError(f"{what}: {spec!r} needs rate > 0 and burst >= 1")
        return limit

    per_tenant: dict[str, Limit] = {}
    for entry in filter(None, (e.strip() for e in overrides.split(","))):
        tenant, sep, spec = entry.partition(":")
        limit = one(spec, f"SWITCHYARD_TENANT_RATE_LIMIT_OVERRIDES[{tenant}]") if sep else None
        if not sep or limit is None:
            raise ValueError(f"SWITCHYARD_TENANT_RATE_LIMIT_OVERRIDES entry {entry!r} must be "
                             "'tenant:rate/burst'")
        per_tenant[tenant] = limit
    return one(default, "SWITCHYARD_TENANT_RATE_LIMIT"), per_tenant


class TenantLimiter:
    def __init__(self, default: Limit | None, per_tenant: dict[str, Limit]) -> None:
        self.default = default
        self.per_tenant = per_tenant
        self._buckets: dict[str, TokenBucket] = {}

    def check(self, tenant: str, cost: float = 1.0) -> float:
        """0.0 if ``tenant`` may proceed now, else seconds to wait."""
        limit = self.per_tenant.get(tenant, self.default)
        if limit is None:
            return 0.0
        bucket = self._buckets.get(tenant)
        if bucket is None:
            bucket = self._buckets[tenant] = TokenBucket(limit.rate, limit.burst)
        return bucket.take(min(cost, limit.burst))
