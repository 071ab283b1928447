"""Fair dispatch of a stream's records: read ahead, serve tenants by weight, keep each key's
order.

A stream processor that handles its topic one batch at a time in log order makes every record
wait behind every record ahead of it in the partition, so one tenant's burst becomes every
tenant's wait. :class:`FairDispatcher` reads up to ``window`` records ahead of the ones that
have finished, holds them in a :class:`~switchyard._fairness.FairQueue` by tenant and
priority, and starts a micro-batch whenever one of its ``concurrency`` slots is free: up to
``batch_size`` records, taken in weighted fair order. A part batch waits up to ``linger_s``
from its oldest record's arrival for more: each batch costs its handler a transaction. A
steady tenant's record that arrives behind a thousand of a bursting tenant's, all in hand, is
in the next batch, not after the thousand; the bursting tenant still gets every slot nobody
else wants.

The next batch is still a wait: under a burst every batch is full, and a light tenant's record
that arrives just after one started waits for it to end, then for its own. So, as FQ-CoDel
serves sparse flows first, a tenant with no more than ``sparse_limit`` records waiting is
*sparse*: while every slot is busy, one more batch may run, made of sparse tenants' records
only. A tenant that sends more than it is served stops being sparse, so the extra batch never
carries a burst, and with every tenant busy it does not run at all.

Per key (a task id) the order of the log is kept: a record whose key has an earlier record in
a running batch, or held, waits until those are done and then goes before anything else, so
a task's decisions never overtake one another.

The dispatcher knows nothing of Kafka: the faust glue (``switchyard._streams``) feeds it
events and acknowledges each when its batch is done. The consumer commits the longest run of
acknowledged offsets, so a record finished out of order is committed only once everything
before it is, and a crash redelivers whatever had not finished, as with one batch at a time.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Generic, TypeVar

from switchyard._fairness import FairQueue

T = TypeVar("T")


class FairDispatcher(Generic[T]):
    """Runs ``work`` on micro-batches of submitted items, fairly across tenants.

    ``submit`` waits while ``window`` items are in hand (queued, held or running): that is
    the backpressure on the reader. ``run`` is the dispatch loop; it raises the first failure
    of ``work`` (the caller's stream stops, as it would on a failed batch), after cancelling
    the other running batches.
    """

    def __init__(self, work: Callable[[list[T]], Awaitable[None]], *, window: int,
                 batch_size: int, concurrency: int,
                 weights: Mapping[str, float] | None = None, linger_s: float = 0.0,
                 sparse_limit: int = 0,
                 on_sparse_batch: Callable[[int], object] | None = None) -> None:
        if min(window, batch_size, concurrency) < 1:
            raise ValueError("window, batch_size and concurrency must be at least 1")
        self.work = work
        self.window = window
        self.batch_size = batch_size
        self.concurrency = concurrency
        #: how long a part batch waits for more (from its oldest item's arrival): a batch
        #: costs a transaction, so one item a batch would cap the throughput
        self.linger_s = linger_s
        #: a tenant with at most this many items waiting is sparse: while every slot is
        #: busy, one more batch may run, of sparse tenants' items only (0: no such batch)
        self.sparse_limit = sparse_limit
        self._sparse_batch: asyncio.Task[None] | None = None
        #: told the size of each sparse batch started (the stream's metric)
        self.on_sparse_batch = on_sparse_batch
        self._since = 0.0  # loop time the oldest item waiting for a slot arrived
        self._timer: asyncio.TimerHandle | None = None
        self._queue: FairQueue[tuple[Hashable, T]] = FairQueue(weights)
        self._held: dict[Hashable, deque[T]] = {}  # key -> items behind its running ones
        self._ready: deque[tuple[Hashable, T]] = deque()  # released from _held: go first
        self._busy: Counter[Hashable] = Counter()  # key -> its items running or ready
        self._in_hand = 0
        self._running: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._failure: BaseException | None = None

    @property
    def in_hand(self) -> int:
        """Items submitted and not yet done."""
        return self._in_hand

    async def submit(self, item: T, *, tenant: str, priority: int, key: Hashable) -> None:
        """Hand ``item`` over; waits while the window is full."""
        while self._in_hand >= self.window:
            self._room.clear()
            await self._room.wait()
        self._in_hand += 1
        if not self._queue:
            self._since = asyncio.get_running_loop().time()
        self._queue.put(tenant, priority, (key, item))
        self._wake.set()

    async def run(self) -> None:
        """Start batches as slots free up, until cancelled or a batch fails."""
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                if self._failure is not None:
                    raise self._failure
                while not self._lingering():
                    among: dict[str, int] | None = None  # any tenant's items
                    if len(self._running) - (self._sparse_batch is not None) >= \
                            self.concurrency:
                        if not self.sparse_limit or self._sparse_batch is not None:
                            break
                        among = self._sparse_tenants()
                    batch = self._take(among)
                    if not batch:
                        break
                    task = asyncio.create_task(self._run_batch(batch))
                    self._running.add(task)
                    if among is not None:
                        self._sparse_batch = task
                        if self.on_sparse_batch is not None:
                            self.on_sparse_batch(len(batch))
        finally:
            if self._timer is not None:
                self._timer.cancel()
            for task in self._running:
                task.cancel()
            await asyncio.gather(*self._running, return_exceptions=True)

    def _lingering(self) -> bool:
        """Whether a part batch should wait a little longer for more items (a wake-up is
        then set for when it has waited ``linger_s``)."""
        if self._ready or len(self._queue) >= self.batch_size or not self._queue:
            return False
        loop = asyncio.get_running_loop()
        wait = self._since + self.linger_s - loop.time()
        if wait <= 0:
            return False
        timer = self._timer
        if timer is None or timer.cancelled() or not loop.time() < timer.when() <= \
                loop.time() + wait:
            if timer is not None:
                timer.cancel()
            self._timer = loop.call_later(wait, self._wake.set)
        return True

    def _sparse_tenants(self) -> dict[str, int]:
        """The tenants with items waiting but no more than ``sparse_limit``: how many each."""
        waiting = ((tenant, self._queue.waiting(tenant)) for tenant in self._queue.tenants())
        return {tenant: count for tenant, count in waiting if count <= self.sparse_limit}

    def _take(self, among: dict[str, int] | None = None) -> list[tuple[Hashable, T]]:
        """The next batch: released items first, then the fair queue's order; an item whose
        key is busy in another batch (or has items held) is held behind them. With
        ``among`` (tenant -> items waiting), only those tenants' queued items."""
        batch: list[tuple[Hashable, T]] = []
        keys: set[Hashable] = set()
        while among is None and self._ready and len(batch) < self.batch_size:
            key, item = self._ready.popleft()  # its key was reserved when it was released
            batch.append((key, item))
            keys.add(key)
        left = len(self._queue) if among is None else sum(among.values())
        while left and len(batch) < self.batch_size:
            key, item = self._queue.take(among)
            left -= 1
            if key in self._held or (self._busy[key] and key not in keys):
                self._held.setdefault(key, deque()).append(item)
                continue
            if key not in keys:
                self._busy[key] += 1
                keys.add(key)
            batch.append((key, item))
        return batch

    async def _run_batch(self, batch: list[tuple[Hashable, T]]) -> None:
        try:
            await self.work([item for _, item in batch])
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._failure = self._failure or exc
            self._wake.set()
            return
        finally:
            self._running.discard(asyncio.current_task())  # type: ignore[arg-type]
            if self._sparse_batch is asyncio.current_task():
                self._sparse_batch = None
        self._done(batch)

    def _done(self, batch: list[tuple[Hashable, T]]) -> None:
        for key in {key for key, _ in batch}:
            self._busy[key] -= 1
            if self._busy[key] <= 0:
                del self._busy[key]
                held = self._held.get(key)
                if held:
                    self._ready.append((key, held.popleft()))
                    self._busy[key] += 1
                    if not held:
                        del self._held[key]
        self._in_hand -= len(batch)
        self._room.set()
        self._wake.set()


__all__ = ["FairDispatcher"]
