"""Token buckets and their configuration."""

from __future__ import annotations

import pytest

from switchyard._ratelimit import Limit, TenantLimiter, TokenBucket, parse_limits


def test_bucket_allows_burst_then_refills_at_rate() -> None:
    bucket = TokenBucket(rate=10, burst=5, updated=0.0)
    assert [bucket.take(now=0.0) for _ in range(5)] == [0.0] * 5
    assert bucket.take(now=0.0) == pytest.approx(0.1)
    assert bucket.take(now=0.1) == 0.0          # one token back after 100 ms
    assert bucket.take(now=0.1) == pytest.approx(0.1)


def test_limits_per_tenant() -> None:
    default, overrides = parse_limits("100/200", "acme:5/5, globex:1000/2000")
    assert default == Limit(100, 200) and overrides["acme"] == Limit(5, 5)
    limiter = TenantLimiter(default, overrides)
    waits = [limiter.check("acme") for _ in range(6)]
    assert waits[:5] == [0.0] * 5 and waits[5] > 0
    assert limiter.check("initech") == 0.0
    assert parse_limits("", "") == (None, {})
    with pytest.raises(ValueError, match="'tenant:rate/burst'"):
        parse_limits("", "acme")
    with pytest.raises(ValueError, match="not 'rate/burst'"):
        parse_limits("fast", "")
