"""Per-tenant submission limits, shared by every replica of every service.

A tenant's limit is one token bucket in PostgreSQL (``tenant_rate_buckets``), refilled at the
tenant's rate up to its burst on the database clock. A replica does not ask PostgreSQL per
request: it leases a small chunk of tokens (about ``lease_s`` worth of the tenant's rate, at
least one) in one statement and spends it locally; leased tokens it has not spent within
``lease_s`` are dropped, never returned. So:

- every token spent was granted by the shared bucket at most ``lease_s`` earlier, and in any
  interval of ``T`` seconds a tenant gets at most ``burst + rate * (T + lease_s)`` units of
  work accepted, however many replicas run (the replica count never enters the bound);
- the error runs the other way only: tokens one replica holds unspent (under a chunk per
  replica) can make another replica refuse slightly early, and dropped leftovers are lost.

A refusal costs no statement while the bucket's last known level plus its refill since cannot
cover the request (an upper bound: other replicas only take from it).

gRPC answers RESOURCE_EXHAUSTED with RetryInfo (see ``_grpc.CallInterceptor``); the Kafka
intake waits for tokens instead (:meth:`TenantLimiter.wait`), so a tenant over its rate is
slowed there, never refused.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass

import asyncpg
from prometheus_client import Counter

from switchyard._settings import Settings

#: Work held to a tenant's limit: gRPC calls and console verdicts refused, intake records
#: delayed.
RATE_LIMITED = Counter(
    "switchyard_tenant_rate_limited_total",
    "Work held to a tenant's submission limit: 'grpc' calls refused (RESOURCE_EXHAUSTED), "
    "'console' verdicts refused (429), 'webhook' inbound webhook POSTs refused (429), "
    "'intake' records delayed until tokens came.",
    ["path"],
)


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
        if not (limit.rate > 0 and math.isfinite(limit.rate)) or not (
                limit.burst >= 1 and math.isfinite(limit.burst)):
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


# One statement per lease: refill the tenant's bucket to now (capped at burst), then take
# between $4 (needed) and $5 (wanted) whole tokens, or none if fewer than $4 are there.
# A new tenant's bucket starts full. Returns the grant and the level before it.
_LEVEL = ("LEAST($3::float8, b.tokens + EXTRACT(EPOCH FROM now() - b.refilled_at)::float8"
          " * $2::float8)")
_GRANT = (f"CASE WHEN {_LEVEL} >= $4::float8 THEN LEAST($5::float8, FLOOR({_LEVEL})) "
          "ELSE 0 END")
_LEASE_SQL = f"""
INSERT INTO tenant_rate_buckets AS b (tenant_id, tokens, refilled_at, last_grant)
VALUES ($1::text, $3::float8 - LEAST($5::float8, FLOOR($3::float8)), now(),
        LEAST($5::float8, FLOOR($3::float8)))
ON CONFLICT (tenant_id) DO UPDATE SET
    tokens = {_LEVEL} - {_GRANT}, refilled_at = now(), last_grant = {_GRANT}
RETURNING last_grant AS granted, tokens + last_grant AS level
"""


@dataclass
class _Lease:
    tokens: float
    expires: float  # time.monotonic()


class TenantLimiter:
    """Charges work to its tenant's shared bucket; see the module docstring for the bound."""

    def __init__(self, pool: asyncpg.Pool, default: Limit | None,
                 per_tenant: dict[str, Limit], lease_s: float = 0.25) -> None:
        if not (lease_s > 0 and math.isfinite(lease_s)):
            raise ValueError(f"SWITCHYARD_TENANT_RATE_LEASE_S must be > 0, got {lease_s!r}")
        self.pool = pool
        self.default = default
        self.per_tenant = per_tenant
        self.lease_s = lease_s
        self._leases: dict[str, _Lease] = {}
        self._known: dict[str, tuple[float, float]] = {}  # (bucket level, monotonic time)
        self._locks: dict[str, asyncio.Lock] = {}

    @property
    def enabled(self) -> bool:
        return self.default is not None or bool(self.per_tenant)

    def limit_of(self, tenant: str) -> Limit | None:
        return self.per_tenant.get(tenant, self.default)

    def _chunk(self, limit: Limit) -> float:
        """Tokens one lease asks for: ``lease_s`` worth of the rate, at least 1."""
        return max(1.0, min(math.floor(limit.burst), math.floor(limit.rate * self.lease_s)))

    async def check(self, tenant: str, cost: int = 1) -> float:
        """Charge ``cost`` tokens: 0.0 when ``tenant`` may proceed now, else the seconds
        until the shared bucket would have them (nothing is charged then). A cost above the
        burst is charged as the burst (such a request could never pass otherwise)."""
        limit = self.limit_of(tenant)
        if limit is None:
            return 0.0
        need = float(min(max(1, cost), math.floor(limit.burst)))
        lock = self._locks.get(tenant)
        if lock is None:  # not setdefault: that would build a Lock on every request
            lock = self._locks[tenant] = asyncio.Lock()
        async with lock:  # one lease in flight per tenant and replica
            lease = self._leases.get(tenant)
            now = time.monotonic()  # before the statement: expiry and estimates err safe
            if lease is not None and lease.expires > now and lease.tokens >= need:
                lease.tokens -= need
                return 0.0
            known = self._known.get(tenant)
            if known is not None:
                # The shared bucket's level can only be below what it was plus its refill
                # since (other replicas only take from it): a request that cannot fit even
                # so is refused here, without a statement.
                ceiling = min(limit.burst, known[0] + (now - known[1]) * limit.rate)
                if ceiling < need:
                    return max(0.001, (need - ceiling) / limit.rate)
            # Leftovers too small for this request (or expired) are dropped, not carried:
            # that keeps every spent token within lease_s of its grant.
            want = max(need, self._chunk(limit))
            row = await self.pool.fetchrow(_LEASE_SQL, tenant, limit.rate, limit.burst,
                                           need, want)
            granted, level = float(row["granted"]), float(row["level"])
            self._known[tenant] = (level - granted, now)
            if granted < need:
                return max(0.001, (need - level) / limit.rate)
            self._leases[tenant] = _Lease(granted - need, now + self.lease_s)
            return 0.0

    async def wait(self, tenant: str, cost: int = 1) -> float:
        """Wait until ``tenant`` may proceed (the Kafka intake: slowed, never refused);
        returns the seconds waited."""
        waited = 0.0
        while (delay := await self.check(tenant, cost)) > 0:
            if waited == 0.0:
                RATE_LIMITED.labels("intake").inc()
            await asyncio.sleep(delay)
            waited += delay
        return waited


def limiter_for(settings: Settings, pool: asyncpg.Pool) -> TenantLimiter:
    """The limiter the settings describe (``tenant_rate_limit`` and its overrides)."""
    default, per_tenant = parse_limits(settings.tenant_rate_limit,
                                       settings.tenant_rate_limit_overrides)
    return TenantLimiter(pool, default, per_tenant, settings.tenant_rate_lease_s)


__all__ = ["RATE_LIMITED", "Limit", "TenantLimiter", "limiter_for",
           "parse_limits"]
