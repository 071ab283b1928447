"""The micro-batcher groups concurrent requests, bounds its queue and propagates failures."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from services.decision.batcher import MicroBatcher, Overloaded


async def test_concurrent_items_share_batches_and_keep_their_results() -> None:
    sizes: list[int] = []

    async def double(items: Sequence[int]) -> list[int]:
        sizes.append(len(items))
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
    assert max(sizes) == 16 and len(sizes) < 20


async def test_full_queue_pushes_back_immediately() -> None:
    release = asyncio.Event()

    async def slow(items: Sequence[int]) -> list[int]:
        await release.wait()
        return list(items)

    batcher: MicroBatcher[int, int] = MicroBatcher("t", slow, max_batch=1, max_delay_s=0,
                                                   queue_limit=2, max_in_flight=1)
    await batcher.start()
    waiting = []
    for i in range(4):  # 0 in flight, 1 taken by the runner waiting for a slot, 2 and 3 queued
        waiting.append(asyncio.create_task(batcher.submit(i)))
        await asyncio.sleep(0.01)
    with pytest.raises(Overloaded):
        await batcher.submit(99)
    release.set()
    assert await asyncio.gather(*waiting) == [0, 1, 2, 3]
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
