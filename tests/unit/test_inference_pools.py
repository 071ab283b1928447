"""Which Triton pool gets a batch: queue delay from Triton's counters, spilling with a
cool-down, the share, and breakers per pool (services/decision/pools.py, no Triton here: the
integration test is tests/decision/test_inference_pools.py)."""

from __future__ import annotations

from services.decision.pools import TritonPools, new_breaker


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_queue_delay_is_the_change_in_triton_counters_per_request() -> None:
    pools = TritonPools("a:1", "b:2")
    pool = pools.primary
    pool.observe(queue_ns=5_000_000, count=10)
    assert pool.queue_delay_s is None  # one look is no interval
    pool.observe(queue_ns=45_000_000, count=14)  # 40 ms over 4 requests
    assert pool.queue_delay_s == 0.01
    pool.observe(queue_ns=45_000_000, count=14)  # nothing came: an idle pool has no queue
    assert pool.queue_delay_s == 0.0
    pool.observe(queue_ns=1_000, count=1)  # the server restarted: its counters began again
    assert pool.queue_delay_s == 0.0
    pool.observe(queue_ns=3_001_000, count=2)
    assert pool.queue_delay_s == 0.003


def test_spilling_starts_over_the_threshold_and_stops_after_the_cool_down() -> None:
    clock = Clock()
    pools = TritonPools("a:1", "b:2", spill_after_s=0.010, spill_share=0.5, cooldown_s=5,
                        clock=clock)
    pools.primary.queue_delay_s = 0.009
    pools.decide()
    assert not pools.spilling and [p.name for p in pools.order()] == ["primary", "spill"]
    pools.primary.queue_delay_s = 0.020
    pools.decide()
    assert pools.spilling
    assert [pools.order()[0].name for _ in range(4)] == ["primary", "spill"] * 2
    clock.now = 2
    pools.primary.queue_delay_s = 0.0  # a quiet poll between two bursts
    pools.decide()
    assert pools.spilling
    clock.now = 4
    pools.primary.queue_delay_s = 0.008  # under the threshold, over half of it: still busy
    pools.decide()
    clock.now = 6
    pools.decide()
    assert pools.spilling
    pools.primary.queue_delay_s = 0.004  # low, and five seconds since it was last high
    pools.decide()
    assert not pools.spilling
    assert [pools.order()[0].name for _ in range(3)] == ["primary"] * 3


def test_a_share_is_counted_not_drawn() -> None:
    pools = TritonPools("a:1", "b:2", spill_after_s=0.01, spill_share=0.25)
    pools.primary.queue_delay_s = 1.0
    pools.decide()
    firsts = [pools.order()[0].name for _ in range(8)]
    assert firsts.count("spill") == 2 and firsts[3] == firsts[7] == "spill"


def test_an_unmeasurable_primary_changes_nothing_and_one_pool_never_spills() -> None:
    pools = TritonPools("a:1", "b:2", spill_after_s=0.01)
    pools.primary.queue_delay_s = None
    pools.decide()
    assert not pools.spilling
    single = TritonPools("a:1")
    single.primary.queue_delay_s = 1.0
    single.decide()
    assert not single.spilling and [p.name for p in single.order()] == ["primary"]


def test_each_pool_has_its_own_breaker_and_models_are_away_only_when_all_are_open() -> None:
    pools = TritonPools("a:1", "b:2")
    family = new_breaker("triton", fail_max=1, reset_s=60)
    assert pools.spill is not None
    assert pools.primary.breaker(family) is family  # watchers of the family see the primary
    twin = pools.spill.breaker(family)
    assert twin is not family and twin is pools.spill.breaker(family)
    assert (twin.name, twin.fail_max, twin.reset_timeout) == ("triton@spill", 1, 60)
    family.open()
    assert not pools.away(family)
    twin.open()
    assert pools.away(family)
