"""Limit configuration, the refusal decided locally, and what a request costs (no database: the
shared buckets are proven against PostgreSQL and the running services in
tests/security/test_rate_limits.py)."""

from __future__ import annotations

import time

import pytest

from switchyard.access import Limit, TenantLimiter, parse_limits
from switchyard.rpc import charges
from switchyard.v1 import (
    DecideBatchRequest,
    DecideRequest,
    ReviewVerdict,
    Submission,
    SubmitTaskRequest,
    SubmitTasksRequest,
    SubmitVerdictRequest,
    TaskEnvelope,
)


def test_limits_per_tenant() -> None:
    default, overrides = parse_limits("100/200", "acme:5/5, globex:1000/2000")
    assert default == Limit(100, 200) and overrides["acme"] == Limit(5, 5)
    limiter = TenantLimiter(None, default, overrides)  # type: ignore[arg-type]  # no I/O here
    assert limiter.enabled and limiter.limit_of("initech") == Limit(100, 200)
    assert limiter.limit_of("acme") == Limit(5, 5)
    assert parse_limits("", "") == (None, {})
    assert not TenantLimiter(None, None, {}).enabled  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'tenant:rate/burst'"):
        parse_limits("", "acme")
    with pytest.raises(ValueError, match="not 'rate/burst'"):
        parse_limits("fast", "")
    with pytest.raises(ValueError, match="rate > 0"):
        parse_limits("nan/5", "")
    with pytest.raises(ValueError, match="TENANT_RATE_LEASE_S"):
        TenantLimiter(None, default, {}, lease_s=0)  # type: ignore[arg-type]


def test_a_lease_is_a_quarter_second_of_rate_within_one_and_the_burst() -> None:
    limiter = TenantLimiter(None, None, {}, lease_s=0.25)  # type: ignore[arg-type]
    assert limiter._chunk(Limit(2, 10)) == 1        # never less than one token
    assert limiter._chunk(Limit(400, 1000)) == 100  # 0.25 s of the rate
    assert limiter._chunk(Limit(400, 20)) == 20     # never more than the bucket holds


async def test_a_request_the_known_level_cannot_cover_is_refused_without_a_statement() -> None:
    # no pool at all: a refusal decided from the last answer never reaches PostgreSQL
    limiter = TenantLimiter(None, Limit(2, 10), {})  # type: ignore[arg-type]
    limiter._known["acme"] = (0.0, time.monotonic())  # the bucket was empty just now
    assert 0 < await limiter.check("acme") <= 0.5    # one token comes back in 0.5 s
    assert 0 < await limiter.check("acme", cost=4) <= 2.0
    assert await TenantLimiter(None, None, {}).check("acme", 100) == 0.0  # type: ignore


def test_a_request_costs_one_token_per_item_charged_to_the_callers_tenant() -> None:
    bulk = SubmitTasksRequest(submissions=[Submission(tenant_id="acme"),
                                           Submission(tenant_id="globex"),
                                           Submission(tenant_id="acme")])
    assert charges("acme", bulk) == {"acme": 3}     # a tenant key pays for all of it
    assert charges("*", bulk) == {"acme": 2, "globex": 1}  # an operator: per tenant named
    one = SubmitTaskRequest(submission=Submission(tenant_id="globex"))
    assert charges("acme", one) == {"acme": 1} and charges("*", one) == {"globex": 1}
    decide = DecideRequest(task=TaskEnvelope(tenant_id="initech"))
    assert charges("*", decide) == {"initech": 1} and charges("acme", decide) == {"acme": 1}
    verdict = SubmitVerdictRequest(verdict=ReviewVerdict(item_id="i"))
    assert charges("acme", verdict) == {"acme": 1} and charges("*", verdict) == {"*": 1}
    assert charges("*", DecideRequest()) == {"*": 1}
    batch = DecideBatchRequest(tasks=[TaskEnvelope(tenant_id="acme"), TaskEnvelope()])
    assert charges("acme", batch) == {"acme": 2} and charges("*", batch) == {"acme": 1, "*": 1}
