"""One micro-batcher in front of Triton, shared by the Kafka path and the sync Decide RPC.

Callers submit single items and await their result; a runner groups whatever is waiting into
one request of up to ``max_batch`` items, waiting at most ``max_delay_s`` for a batch to fill.
The queue is bounded: when it is full, :meth:`MicroBatcher.submit` raises :class:`Overloaded`
at once, so callers push back (RESOURCE_EXHAUSTED, or a slower consumer) instead of queueing
without limit.

Fair to tenants (``switchyard.runtime.FairQueue``): each item names its tenant and priority,
and batches are filled in weighted fair order (``tenant_weights``), the most urgent priority
first within a tenant, so a tenant that submits hundreds of documents at once does not put
another tenant's one behind them. The queue limit is shared the same way: a tenant holding
its weighted share of it is refused while the others still get in. A batch is formed only
when a request slot is free, so items wait in the fair queue, not in a batch already cut.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Generic, TypeVar

from opentelemetry import trace
from prometheus_client import Histogram

from switchyard.runtime import FairQueue, Supervisor, weighted_share
from switchyard.telemetry import spans_recorded

I = TypeVar("I")
O = TypeVar("O")

_tracer = trace.get_tracer("switchyard.decision.batcher")

BATCH_SIZE = Histogram(
    "switchyard_batch_size", "Items per model request.", ["model"],
    buckets=(1, 2, 4, 8, 16, 32, 48, 64, 96, 128, 256),
)
BATCH_WAIT = Histogram(
    "switchyard_batch_wait_seconds", "Time an item waited for its batch to be sent.", ["model"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1),
)


class Overloaded(Exception):
    """The batcher's queue is full; retry later."""


class MicroBatcher(Generic[I, O]):
    def __init__(self, name: str, infer: Callable[[Sequence[I]], Awaitable[Sequence[O]]],
                 max_batch: int, max_delay_s: float, queue_limit: int,
                 max_in_flight: int = 4, *, supervisor: Supervisor | None = None,
                 weights: Mapping[str, float] | None = None) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self.name = name
        self._infer = infer
        self._max_batch = max_batch
        self._max_delay_s = max_delay_s
        self._limit = queue_limit
        self._queue: FairQueue[tuple[I, asyncio.Future[O], float]] = FairQueue(weights)
        self._waiting = asyncio.Event()  # set while the queue holds items
        self._in_flight = asyncio.Semaphore(max_in_flight)
        self._runner: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self._stopped = False
        # the service's supervisor: the runner is a supervised loop, each send a watched task
        self.supervisor = supervisor or Supervisor("standalone")

    async def start(self) -> None:
        self._runner = self.supervisor.start(f"batcher-{self.name}", self._run)

    async def stop(self) -> None:
        self._stopped = True
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
        await asyncio.gather(*self._pending, return_exceptions=True)
        while self._queue:
            _, future, _ = self._queue.take()
            if not future.done():
                future.set_exception(Overloaded("batcher stopped"))

    async def submit(self, item: I, tenant: str = "", priority: int = 2) -> O:
        """``item``'s result; ``tenant`` and ``priority`` (0 most urgent .. 3) place it in
        the fair queue."""
        # The batch itself runs in the runner's context, shared by many tasks; this span puts
        # the wait and the Triton call into the calling task's own trace.
        if not spans_recorded():
            return await self._submit(item, tenant, priority)
        with _tracer.start_as_current_span(
                "triton request", kind=trace.SpanKind.CLIENT,
                attributes={"model.name": self.name, "batcher.queue_depth": self.depth}):
            return await self._submit(item, tenant, priority)

    async def _submit(self, item: I, tenant: str, priority: int) -> O:
        if self._stopped:
            raise Overloaded(f"{self.name}: batcher stopped")
        if len(self._queue) >= self._limit:
            raise Overloaded(f"{self.name}: {self._limit} items already waiting")
        waiting = self._queue.waiting(tenant)
        share = weighted_share(self._limit, tenant, self._queue.weights, self._queue.tenants())
        if waiting >= share:
            raise Overloaded(f"{self.name}: tenant {tenant!r} has {waiting} items waiting, its "
                             f"share of the {self._limit} the queue holds")
        future: asyncio.Future[O] = asyncio.get_running_loop().create_future()
        self._queue.put(tenant, priority, (item, future, time.perf_counter()))
        self._waiting.set()
        return await future

    @property
    def depth(self) -> int:
        return len(self._queue)

    async def _next(self, timeout_s: float | None) -> bool:
        """Wait (at most ``timeout_s``; None: as long as it takes) until an item waits."""
        if not self._queue:
            self._waiting.clear()
            try:
                await asyncio.wait_for(self._waiting.wait(), timeout_s)
            except asyncio.TimeoutError:
                return False
        return True

    async def _run(self) -> None:
        while True:
            # a free request slot first: until then items wait in the fair queue, where a
            # tenant arriving late still overtakes another's hundreds
            await self._in_flight.acquire()
            await self._next(None)
            batch = [self._queue.take()]
            deadline = time.perf_counter() + self._max_delay_s
            while len(batch) < self._max_batch:
                if not self._queue:
                    remaining = deadline - time.perf_counter()
                    if remaining <= 0 or not await self._next(remaining):
                        break
                batch.append(self._queue.take())
            task = self.supervisor.spawn(f"batch-send-{self.name}", self._send(batch))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _send(self, batch: list[tuple[I, asyncio.Future[O], float]]) -> None:
        try:
            now = time.perf_counter()
            BATCH_SIZE.labels(self.name).observe(len(batch))
            for _, _, queued_at in batch:
                BATCH_WAIT.labels(self.name).observe(now - queued_at)
            try:
                results = await self._infer([item for item, _, _ in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"{self.name}: {len(results)} results for "
                                       f"{len(batch)} items")
            except BaseException as exc:  # every waiter learns the failure
                for _, future, _ in batch:
                    if not future.done():
                        future.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                return
            for (_, future, _), result in zip(batch, results):
                if not future.done():
                    future.set_result(result)
        finally:
            self._in_flight.release()
