"""Shares of ingest's backlog limit per tenant (services/ingest/backpressure.py), without a
database: the counts are set as a recount would set them."""

from __future__ import annotations

import pytest

from services.ingest.backpressure import Backlog
from switchyard.runtime import parse_weights


def backlog(limit: int, weights: str = "", **waiting: int) -> Backlog:
    counted = Backlog(None, limit, 1.0, 500, parse_weights(weights))  # type: ignore[arg-type]
    counted.by_tenant = dict(waiting)
    counted.value = sum(waiting.values())
    return counted


def test_a_tenant_alone_may_fill_the_limit_and_shares_split_by_weight() -> None:
    assert backlog(100).share("a") == 100
    assert backlog(100, a=5).share("a") == 100
    assert backlog(100, a=5).share("b") == 50  # arriving: its share at once
    assert backlog(100, "b:3", a=5, b=1).share("a") == 25
    assert backlog(100, "b:3", a=5, b=1).share("b") == 75
    assert backlog(10, a=1, b=1, c=1).share("a") == 4  # rounded up: shares never below need
    assert backlog(1, a=1, b=1).share("a") == 1


def test_refusals_name_the_tenant_or_the_whole_backlog() -> None:
    assert backlog(100, a=49, b=1).refusal("a") is None
    refused = backlog(100, a=50, b=1).refusal("a")
    assert refused is not None and "to tenant 'a': 50 of its tasks" in str(refused)
    assert "(50 of 100, split by weight among the 2 tenants" in str(refused)
    assert backlog(100, a=50, b=1).refusal("b") is None
    full = backlog(100, a=99, b=1).refusal("b")
    assert full is not None
    assert "100 tasks are still to be decided or carried out (limit 100)" in str(full)
    assert backlog(0, a=10**6).refusal("a") is None  # no limit


def test_accepted_tasks_count_until_the_next_recount() -> None:
    counted = backlog(10, a=0, b=0)
    counted.accepted("a", 4)
    assert counted.refusal("a") is None
    counted.accepted("a", 1)
    assert counted.refusal("a") is not None and counted.value == 5


@pytest.mark.parametrize("text", ["a", "a:0", "a:-1", ":2", "a:x", "a:inf", "a:nan"])
def test_bad_weights_are_refused_naming_the_entry(text: str) -> None:
    with pytest.raises(ValueError, match="tenant_weights: .* is not 'tenant:weight'"):
        parse_weights(text)


def test_weights_parse() -> None:
    assert parse_weights(" a:2, b:0.5 ,") == {"a": 2.0, "b": 0.5}
