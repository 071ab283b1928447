"""The micro-batcher groups concurrent requests, bounds its queue and propagates failures."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from services.decision.batcher import MicroBatcher, Overloaded


async def test_concurrent_items_share_batches_and_keep_their_results() -> None:
    """Whatever the timing: no batch exceeds max_batch, every item is sent exactly once, and
    every caller gets its own item's result."""
    batches: list[list[int]] = []

    async def double(items: Sequence[int]) -> list[int]:
        batches.append(list(items))
        await asyncio.sleep(0.01)
        return [i * 2 for i in items]

    batcher: MicroBatcher[int, int] = MicroBatcher("t", double, max_batch=16,
                                                   max_delay_s=0.02, queue_limit=1000)
    await batcher.start()
    try:
        results = await asyncio.gather(*(batcher.submit(i) for i in range(100)))
    finally:
        await batcher.stop()
    assert results == [i * 2 for i in range(100)]
    assert all(1 <= len(batch) <= 16 for batch in batches)
    assert sorted(i for batch in batches for i in batch) == list(range(100))


async def test_a_backlog_goes_out_in_full_batches() -> None:
    """Items already waiting when the runner looks are grouped without waiting for the
    deadline (here zero): 100 queued items are 6 full batches of 16 and one of 4, in submission order."""
    batches: list[list[int]] = []

    async def double(items: Sequence[int]) -> list[int]:
        batches.append(list(items))
        return [i * 2 for i in items]

    batcher: MicroBatcher[int, int] = MicroBatcher("t", double, max_batch=16,
                                                   max_delay_s=0.0, queue_limit=1000)
    waiting = [asyncio.create_task(batcher.submit(i)) for i in range(100)]
    await asyncio.sleep(0)  # every submit has queued its item; no runner yet
    await batcher.start()
    try:
        results = await asyncio.wait_for(asyncio.gather(*waiting), 30)
    finally:
        await batcher.stop()
    assert results == [i * 2 for i in range(100)]
    assert [len(batch) for batch in batches] == [16] * 6 + [4]
    assert [i for batch in batches for i in batch] == list(range(100))


async def test_full_queue_pushes_back_immediately() -> None:
    release = asyncio.Event()

    async def slow(items: Sequence[int]) -> list[int]:
        await release.wait()
        return list(items)

    batcher: MicroBatcher[int, int] = MicroBatcher("t", slow, max_batch=1, max_delay_s=0,
                                                   queue_limit=2, max_in_flight=1)
    await batcher.start()
    waiting = []
    for i in range(3):  # 0 in flight; 1 and 2 queued (a batch is cut only when a slot is free)
        waiting.append(asyncio.create_task(batcher.submit(i)))
        await asyncio.sleep(0.01)
    with pytest.raises(Overloaded):
        await batcher.submit(99)
    release.set()
    assert await asyncio.gather(*waiting) == [0, 1, 2]
    await batcher.stop()


async def test_inference_failure_reaches_every_waiter() -> None:
    async def broken(items: Sequence[int]) -> list[int]:
        raise ConnectionError("triton down")

    batcher: MicroBatcher[int, int] = MicroBatcher("t", broken, 8, 0.01, 100)
    await batcher.start()
    results = await asyncio.gather(*(batcher.submit(i) for i in range(5)),
                                   return_exceptions=True)
    await batcher.stop()
    assert all(isinstance(r, ConnectionError) for r in results)
