"""FairDispatcher (switchyard/_dispatch.py): read-ahead, weighted fair batches, per-key order,
window backpressure and failures, without Kafka."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from switchyard._dispatch import FairDispatcher

Item = tuple[str, int]  # (tenant, n)


class Recorder:
    """A ``work`` that records each batch; ``gate`` (when set up) holds every batch until
    released, so a test can see what runs at once."""

    def __init__(self, hold: bool = False) -> None:
        self.batches: list[list[Item]] = []
        self.running: list[list[Item]] = []
        self.gate = asyncio.Event()
        if not hold:
            self.gate.set()

    async def __call__(self, batch: list[Item]) -> None:
        self.batches.append(batch)
        self.running.append(batch)
        try:
            await self.gate.wait()
        finally:
            self.running.remove(batch)


@contextlib.asynccontextmanager
async def dispatching(dispatcher: FairDispatcher[Item]) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(dispatcher.run())
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def settle(dispatcher: FairDispatcher[Item]) -> None:
    for _ in range(1000):
        if not dispatcher.in_hand:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{dispatcher.in_hand} items never finished")


async def submit(dispatcher: FairDispatcher[Item], tenant: str, count: int,
                 priority: int = 2, start: int = 0) -> None:
    for n in range(start, start + count):
        await dispatcher.submit((tenant, n), tenant=tenant, priority=priority,
                                key=f"{tenant}-{n}")


async def test_a_tenant_behind_a_burst_is_in_the_next_batch() -> None:
    work = Recorder()
    dispatcher = FairDispatcher(work, window=10_000, batch_size=10, concurrency=1)
    async with dispatching(dispatcher):
        await submit(dispatcher, "burst", 1000)
        await submit(dispatcher, "steady", 3)
        await settle(dispatcher)
    first = work.batches[0]
    assert [n for tenant, n in first if tenant == "steady"] == [0, 1, 2]
    assert sum(len(b) for b in work.batches) == 1003


async def test_weights_set_the_shares_while_both_have_work() -> None:
    work = Recorder()
    dispatcher = FairDispatcher(work, window=10_000, batch_size=8, concurrency=1,
                                weights={"gold": 3.0})
    async with dispatching(dispatcher):
        await submit(dispatcher, "gold", 300)
        await submit(dispatcher, "plain", 300)
        await settle(dispatcher)
    served = [tenant for batch in work.batches for tenant, _ in batch][:200]
    assert served.count("gold") == pytest.approx(150, abs=2)
    assert served.count("plain") == pytest.approx(50, abs=2)


async def test_priority_orders_a_tenants_own_items() -> None:
    work = Recorder()
    dispatcher = FairDispatcher(work, window=100, batch_size=3, concurrency=1)
    async with dispatching(dispatcher):
        await submit(dispatcher, "t", 5, priority=3)
        await submit(dispatcher, "t", 2, priority=0, start=100)
        await settle(dispatcher)
    assert work.batches[0] == [("t", 100), ("t", 101), ("t", 0)]


async def test_a_keys_records_never_run_at_once_nor_out_of_order() -> None:
    work = Recorder(hold=True)
    dispatcher = FairDispatcher(work, window=100, batch_size=1, concurrency=4)
    async with dispatching(dispatcher):
        for n in range(3):  # one task's three records, then another task's
            await dispatcher.submit(("t", n), tenant="t", priority=2, key="task-1")
        await dispatcher.submit(("t", 9), tenant="t", priority=2, key="task-2")
        for _ in range(20):
            await asyncio.sleep(0)
        # task-1's later records wait for its first; task-2 runs beside it
        assert sorted(map(tuple, work.running)) == [(("t", 0),), (("t", 9),)]
        work.gate.set()
        await settle(dispatcher)
    order = [item for batch in work.batches for item in batch if item[1] < 9]
    assert order == [("t", 0), ("t", 1), ("t", 2)]


async def test_a_full_window_holds_the_reader_until_a_batch_ends() -> None:
    work = Recorder(hold=True)
    dispatcher = FairDispatcher(work, window=4, batch_size=2, concurrency=2)
    async with dispatching(dispatcher):
        await submit(dispatcher, "t", 4)
        fifth = asyncio.create_task(submit(dispatcher, "t", 1, start=4))
        for _ in range(20):
            await asyncio.sleep(0)
        assert not fifth.done() and dispatcher.in_hand == 4
        work.gate.set()
        await asyncio.wait_for(fifth, 1)
        await settle(dispatcher)
    assert sorted(n for batch in work.batches for _, n in batch) == [0, 1, 2, 3, 4]


async def test_a_failed_batch_ends_the_run_with_its_error() -> None:
    async def failing(batch: list[Item]) -> None:
        raise RuntimeError("handler bug")

    dispatcher: FairDispatcher[Item] = FairDispatcher(failing, window=10, batch_size=2,
                                                      concurrency=2)
    async with dispatching(dispatcher) as run:
        await submit(dispatcher, "t", 3)
        with pytest.raises(RuntimeError, match="handler bug"):
            await asyncio.wait_for(run, 1)


def test_sizes_must_be_positive() -> None:
    async def work(batch: list[Item]) -> None:
        return None

    with pytest.raises(ValueError, match="at least 1"):
        FairDispatcher(work, window=0, batch_size=1, concurrency=1)


async def test_a_part_batch_lingers_for_more_then_goes() -> None:
    work = Recorder()
    dispatcher = FairDispatcher(work, window=100, batch_size=10, concurrency=1,
                                linger_s=0.05)
    async with dispatching(dispatcher):
        await submit(dispatcher, "t", 2)
        await asyncio.sleep(0.01)
        assert work.batches == []  # two of ten: waits for more
        await submit(dispatcher, "t", 3, start=2)
        await asyncio.sleep(0.1)
        assert [len(b) for b in work.batches] == [5]  # gone once the first waited 50 ms
        await submit(dispatcher, "t", 10, start=5)
        await settle(dispatcher)
    assert [len(b) for b in work.batches] == [5, 10]  # a full batch goes at once


async def test_a_sparse_tenant_runs_beside_a_busy_slot_and_a_burst_never_does() -> None:
    work = Recorder(hold=True)
    dispatcher = FairDispatcher(work, window=10_000, batch_size=10, concurrency=1,
                                sparse_limit=4)
    async with dispatching(dispatcher):
        await submit(dispatcher, "burst", 500)
        for _ in range(20):
            await asyncio.sleep(0)
        assert len(work.running) == 1  # the one slot; the burst is not sparse
        await submit(dispatcher, "steady", 3)
        await submit(dispatcher, "heavy", 6)  # more than sparse_limit waiting
        for _ in range(20):
            await asyncio.sleep(0)
        # the extra batch: the sparse tenant's records only, while the slot is busy
        assert [b for b in work.running if b[0][0] != "burst"] == [
            [("steady", 0), ("steady", 1), ("steady", 2)]]
        await submit(dispatcher, "steady", 2, start=3)
        for _ in range(20):
            await asyncio.sleep(0)
        assert len(work.running) == 2  # one extra batch at a time
        work.gate.set()
        await settle(dispatcher)
    assert sum(len(b) for b in work.batches) == 511


async def test_without_a_sparse_limit_no_batch_runs_beside_a_busy_slot() -> None:
    work = Recorder(hold=True)
    dispatcher = FairDispatcher(work, window=10_000, batch_size=10, concurrency=1)
    async with dispatching(dispatcher):
        await submit(dispatcher, "burst", 50)
        await submit(dispatcher, "steady", 1)
        for _ in range(20):
            await asyncio.sleep(0)
        assert len(work.running) == 1
        work.gate.set()
        await settle(dispatcher)
