"""Serving tenants fairly (switchyard/_fairness.py) and the micro-batcher that uses it
(services/decision/batcher.py), without Triton: the order items are served in, by tenant
weight and priority, and each tenant's share of a bounded queue."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from services.decision.batcher import MicroBatcher, Overloaded
from switchyard.runtime import FairQueue, weighted_share


def drain(queue: FairQueue[str]) -> list[str]:
    return [queue.take() for _ in range(len(queue))]


def test_equal_tenants_take_turns_whoever_queued_first() -> None:
    queue: FairQueue[str] = FairQueue()
    for i in range(4):
        queue.put("noisy", 2, f"n{i}")
    queue.put("steady", 2, "s0")
    queue.put("steady", 2, "s1")
    assert drain(queue) == ["n0", "s0", "n1", "s1", "n2", "n3"]


def test_a_tenant_arriving_late_is_served_next_not_after_the_backlog() -> None:
    queue: FairQueue[str] = FairQueue()
    for i in range(100):
        queue.put("noisy", 2, f"n{i}")
    assert [queue.take() for _ in range(10)] == [f"n{i}" for i in range(10)]
    queue.put("steady", 2, "s0")  # no credit for having waited nothing so far
    assert [queue.take() for _ in range(2)] in (["s0", "n10"], ["n10", "s0"])
    assert len(queue) == 89 and queue.tenants() == ["noisy"]


def test_weights_set_each_tenants_share_of_the_turns() -> None:
    queue: FairQueue[str] = FairQueue({"gold": 3})
    for i in range(12):
        queue.put("gold", 2, f"g{i}")
        queue.put("basic", 2, f"b{i}")
    first = drain(queue)[:8]
    assert sum(x.startswith("g") for x in first) == 6 and sum(x.startswith("b") for x in first) == 2


def test_within_a_tenant_the_most_urgent_first_then_arrival() -> None:
    queue: FairQueue[str] = FairQueue()
    queue.put("a", 3, "low")
    queue.put("a", 2, "normal-1")
    queue.put("a", 0, "urgent")
    queue.put("a", 2, "normal-2")
    assert drain(queue) == ["urgent", "normal-1", "normal-2", "low"]
    with pytest.raises(IndexError):
        queue.take()


def test_shares_of_a_limit() -> None:
    assert weighted_share(100, "a", {}, []) == 100
    assert weighted_share(100, "a", {}, ["a", "b"]) == 50
    assert weighted_share(100, "a", {"b": 3}, ["b"]) == 25


async def test_the_batcher_fills_batches_in_fair_order() -> None:
    batches: list[list[str]] = []
    gate = asyncio.Event()

    async def infer(items: Sequence[str]) -> list[str]:
        batches.append(list(items))
        await gate.wait()
        return list(items)

    batcher: MicroBatcher[str, str] = MicroBatcher("t", infer, max_batch=4, max_delay_s=0.0,
                                                   queue_limit=1000, max_in_flight=1)
    await batcher.start()
    try:
        first = asyncio.create_task(batcher.submit("n-first", "noisy"))
        while not batches:  # the first batch is out and holds the only request slot
            await asyncio.sleep(0)
        noisy = [asyncio.create_task(batcher.submit(f"n{i}", "noisy")) for i in range(40)]
        await asyncio.sleep(0)
        steady = asyncio.create_task(batcher.submit("s-urgent", "steady", priority=0))
        await asyncio.sleep(0)
        gate.set()
        await asyncio.wait_for(asyncio.gather(first, steady, *noisy), 10)
    finally:
        await batcher.stop()
    # the steady tenant's one item went out in the first batch cut after it arrived, not
    # after the forty the noisy tenant had queued before it
    assert "s-urgent" in batches[1]


async def test_a_tenant_at_its_share_of_the_queue_is_pushed_back_alone() -> None:
    release = asyncio.Event()

    async def slow(items: Sequence[int]) -> list[int]:
        await release.wait()
        return list(items)

    batcher: MicroBatcher[int, int] = MicroBatcher("t", slow, max_batch=1, max_delay_s=0.0,
                                                   queue_limit=10, max_in_flight=1)
    await batcher.start()
    try:
        busy = asyncio.create_task(batcher.submit(0, "noisy"))  # in flight
        await asyncio.sleep(0.01)
        waiting = [asyncio.create_task(batcher.submit(i, "noisy")) for i in range(10)]
        await asyncio.sleep(0.01)
        assert batcher.depth == 10
        with pytest.raises(Overloaded, match="10 items already waiting"):
            await batcher.submit(99, "steady")
        release.set()
        await asyncio.wait_for(asyncio.gather(busy, *waiting), 10)
        release.clear()
        held = asyncio.create_task(batcher.submit(0, "noisy"))
        await asyncio.sleep(0.01)
        steady = asyncio.create_task(batcher.submit(1, "steady"))
        noisy = [asyncio.create_task(batcher.submit(i, "noisy")) for i in range(5)]
        await asyncio.sleep(0.01)
        # two tenants waiting: each may hold half of the ten places
        with pytest.raises(Overloaded, match="tenant 'noisy' has 5 items waiting"):
            await batcher.submit(6, "noisy")
        release.set()
        await asyncio.wait_for(asyncio.gather(held, steady, *noisy), 10)
    finally:
        release.set()
        await batcher.stop()


def test_taking_among_some_tenants_leaves_the_others_turns() -> None:
    queue: FairQueue[str] = FairQueue()
    for i in range(3):
        queue.put("noisy", 2, f"n{i}")
    queue.put("steady", 2, "s0")
    assert queue.take(among={"steady"}) == "s0"
    with pytest.raises(IndexError):
        queue.take(among={"steady"})
    assert drain(queue) == ["n0", "n1", "n2"]
