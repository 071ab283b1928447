"""Two Triton pools: a primary (GPUs in production) and an optional spill-over (CPUs).

Why: GPUs are provisioned for the baseline load; a spike beyond them would otherwise wait in
the primary's queue until requests time out, while cheaper CPU capacity sits idle. The
decision service measures each pool's *queue delay* (Triton's own statistics: how long the
requests of the last poll waited in the server's queue, per request) and, while the primary's
delay is above ``triton_spill_after_ms``, sends ``triton_spill_share`` of its batches to the
spill-over pool. It returns to the primary alone once the primary's delay has stayed at or
below half the threshold for ``triton_spill_cooldown_s`` (a stabilisation window, as an
autoscaler keeps one: a spike arrives in bursts, and one quiet poll between two bursts is not
the end of it).

A pool that is down is skipped: every pool has its own circuit breaker per breaker family
(the router's, OCR's, a scorer's), and a batch that fails on one pool is tried on the other,
so while either pool answers no task meets the "model unavailable" policy.

The breakers are pybreaker's: one opens after consecutive failures so a down or slow pool
costs one fast failure per batch instead of a timeout each.

A pool is one address that may stand for several Triton pods (a headless Kubernetes
Service: one DNS record per ready pod). Every model client shares the pool's one gRPC
channel, which spreads requests over the pool's addresses (``round_robin``) rather than
sending all of them down the first connection, and which is replaced every
``triton_reconnect_s`` so that pods added since (an autoscaler scaling the pool out) are
resolved and used; a replaced channel is closed one interval later, after its calls.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone

import pybreaker
import tritonclient.grpc.aio as triton
from prometheus_client import Counter, Gauge
from tritonclient.utils import InferenceServerException

from switchyard import Settings

log = logging.getLogger(__name__)

#: One connection per address, requests spread over them; reconnect quickly once Triton is
#: back (gRPC's default backoff grows to two minutes).
CHANNEL_ARGS = [
    ("grpc.max_send_message_length", 2**31 - 1),
    ("grpc.max_receive_message_length", 2**31 - 1),
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.min_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 2000),
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.lb_policy_name", "round_robin"),
]

PRIMARY = "primary"
SPILL = "spill"

POOL_BATCHES = Counter(
    "switchyard_inference_pool_batches_total",
    "Triton requests (batches) each pool answered.", ["model", "pool"],
)
POOL_ROWS = Counter(
    "switchyard_inference_pool_rows_total",
    "Items (batch rows) each pool answered.", ["model", "pool"],
)
POOL_FAILURES = Counter(
    "switchyard_inference_pool_failures_total",
    "Triton requests a pool failed or refused (its breaker open); the batch went on to the "
    "other pool when there is one.", ["model", "pool"],
)
QUEUE_DELAY = Gauge(
    "switchyard_triton_queue_delay_seconds",
    "Mean time the requests of the last poll waited in the pool's Triton queue "
    "(-1: the pool could not be measured).", ["pool"],
)
SPILLING = Gauge(
    "switchyard_triton_spilling",
    "1 while a share of batches goes to the spill-over pool (the primary's queue delay is "
    "over triton_spill_after_ms).",
)


class _LogStateChanges(pybreaker.CircuitBreakerListener):
    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: object,
                     new_state: pybreaker.CircuitBreakerState) -> None:
        level = logging.WARNING if new_state.name == pybreaker.STATE_OPEN else logging.INFO
        log.log(level, "circuit breaker %s: %s -> %s", cb.name,
                getattr(old_state, "name", old_state), new_state.name)


def new_breaker(name: str, fail_max: int, reset_s: float) -> pybreaker.CircuitBreaker:
    return pybreaker.CircuitBreaker(fail_max=fail_max, reset_timeout=reset_s, name=name,
                                    listeners=[_LogStateChanges()])


def breaker_open(breaker: pybreaker.CircuitBreaker) -> bool:
    """True while the breaker refuses calls: open and its reset timeout not over yet.

    pybreaker leaves the state "open" until the next call finds the timeout elapsed and turns
    it half-open, so the state alone would keep a caller that waits for "not open" waiting
    forever.
    """
    if breaker.current_state != pybreaker.STATE_OPEN:
        return False
    opened_at = breaker._state_storage.opened_at  # noqa: SLF001 - no public accessor
    if opened_at is None:
        return True
    elapsed = (datetime.now(timezone.utc) - opened_at).total_seconds()
    return elapsed < breaker.reset_timeout



class Pool:
    """One Triton deployment: its address and channel, its last measured queue delay, its
    breakers."""

    def __init__(self, name: str, url: str, reconnect_s: float = 0.0) -> None:
        self.name = name
        self.url = url
        self.reconnect_s = reconnect_s  # 0: keep the first channel
        self._client: triton.InferenceServerClient | None = None
        self._opened_at = 0.0
        self._retired: triton.InferenceServerClient | None = None
        self._closing: set[asyncio.Task[None]] = set()
        #: mean queue delay per request over the last poll; None until measured or while
        #: the pool does not answer
        self.queue_delay_s: float | None = None
        self._breakers: dict[str, pybreaker.CircuitBreaker] = {}
        self._totals: tuple[int, int] | None = None  # Triton's cumulative (queue ns, count)

    def client(self) -> triton.InferenceServerClient:
        """The pool's channel for inference, renewed every ``reconnect_s`` (call from the
        event loop: a replaced channel is closed by a task)."""
        now = time.monotonic()
        if self._client is None or (self.reconnect_s and
                                    now - self._opened_at >= self.reconnect_s):
            if self._client is not None:
                self._retire(self._client)
            self._client = triton.InferenceServerClient(self.url, channel_args=CHANNEL_ARGS)
            self._opened_at = now
        return self._client

    def _retire(self, replaced: triton.InferenceServerClient) -> None:
        # the channel replaced the time before has had a whole interval to finish its calls
        previous, self._retired = self._retired, replaced
        if previous is not None:
            task = asyncio.get_running_loop().create_task(previous.close())
            self._closing.add(task)
            task.add_done_callback(self._closed)

    def _closed(self, task: asyncio.Task[None]) -> None:
        self._closing.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("closing a replaced channel to Triton pool %s failed: %r", self.name,
                        task.exception())

    async def close(self) -> None:
        clients = [c for c in (self._client, self._retired) if c is not None]
        self._client = self._retired = None
        await asyncio.gather(*(c.close() for c in clients), *self._closing,
                             return_exceptions=True)

    def breaker(self, family: pybreaker.CircuitBreaker) -> pybreaker.CircuitBreaker:
        """This pool's breaker of ``family``: the family's own for the primary (so callers
        that watch it, such as the hold retrier, keep seeing the primary), a twin with the
        same limits for the spill-over (a down spill-over never opens the primary's)."""
        if self.name == PRIMARY:
            return family
        twin = self._breakers.get(family.name)
        if twin is None:
            twin = new_breaker(f"{family.name}@{self.name}", family.fail_max,
                               family.reset_timeout)
            self._breakers[family.name] = twin
        return twin

    def observe(self, queue_ns: int, count: int) -> None:
        """Record Triton's cumulative queue statistics; sets :attr:`queue_delay_s` from the
        change since the last call (0 when no request came: an idle pool has no queue)."""
        last, self._totals = self._totals, (queue_ns, count)
        if last is None or count < last[1] or queue_ns < last[0]:
            return  # first look, or the server restarted (its counters began again)
        requests = count - last[1]
        self.queue_delay_s = (queue_ns - last[0]) / requests / 1e9 if requests else 0.0

    def unmeasured(self) -> None:
        self.queue_delay_s = None
        self._totals = None


class TritonPools:
    """The pools a decision service's model clients send to, and which one gets a batch.

    With no spill-over URL there is one pool and nothing to decide. With one, :meth:`order`
    puts the spill-over first for ``spill_share`` of the batches while spilling (counted, not
    random: a share of 0.5 is every other batch), and the primary first otherwise; the
    client tries the second when the first fails or its breaker is open.
    """

    def __init__(self, primary_url: str, spill_url: str = "", *, spill_after_s: float = 0.05,
                 spill_share: float = 0.5, poll_s: float = 1.0, cooldown_s: float = 5.0,
                 reconnect_s: float = 0.0, deadline_retries: int = 0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.primary = Pool(PRIMARY, primary_url, reconnect_s)
        self.spill = Pool(SPILL, spill_url, reconnect_s) if spill_url else None
        self.spill_after_s = spill_after_s
        self.spill_share = spill_share
        self.poll_s = poll_s
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._busy_at = 0.0  # when the primary's delay was last over the threshold
        self.spilling = False
        self._credit = 0.0
        #: how often a client sends a batch again that ran past its deadline (triton.py)
        self.deadline_retries = deadline_retries
        SPILLING.set(0)

    @classmethod
    def from_settings(cls, settings: Settings) -> TritonPools:
        return cls(settings.triton_url, settings.triton_spill_url,
                   spill_after_s=settings.triton_spill_after_ms / 1000,
                   spill_share=settings.triton_spill_share,
                   poll_s=settings.triton_pool_poll_ms / 1000,
                   cooldown_s=settings.triton_spill_cooldown_s,
                   reconnect_s=settings.triton_reconnect_s,
                   deadline_retries=settings.triton_deadline_retries)

    @property
    def pools(self) -> list[Pool]:
        return [self.primary] if self.spill is None else [self.primary, self.spill]

    def order(self) -> Sequence[Pool]:
        """The pools to try for the next batch, first choice first."""
        if self.spill is None:
            return (self.primary,)
        if self.spilling:
            self._credit += self.spill_share
            if self._credit >= 1.0:
                self._credit -= 1.0
                return (self.spill, self.primary)
        return (self.primary, self.spill)

    async def close(self) -> None:
        await asyncio.gather(*(pool.close() for pool in self.pools))

    def away(self, family: pybreaker.CircuitBreaker) -> bool:
        """True while every pool's breaker of ``family`` refuses calls (no pool to try)."""
        return all(breaker_open(pool.breaker(family)) for pool in self.pools)

    def decide(self) -> None:
        """Start or stop spilling from the primary's last measured queue delay (an
        unmeasurable primary changes nothing: its breaker already steers batches away)."""
        delay = self.primary.queue_delay_s
        if self.spill is None or delay is None:
            return
        now = self._clock()
        if delay > self.spill_after_s:
            self._busy_at = now
            if not self.spilling:
                self.spilling = True
                log.warning("Triton primary queue delay %.1f ms > %.1f ms: spilling %.0f%% of "
                            "batches to %s", delay * 1000, self.spill_after_s * 1000,
                            self.spill_share * 100, self.spill.url)
        elif (self.spilling and delay <= self.spill_after_s / 2
              and now - self._busy_at >= self.cooldown_s):
            self.spilling = False
            self._credit = 0.0
            log.info("Triton primary queue delay %.1f ms: back to the primary alone",
                     delay * 1000)
        SPILLING.set(1 if self.spilling else 0)

    async def watch(self) -> None:
        """Background loop (supervised): poll each pool's statistics every ``poll_s`` and
        decide. Runs only when there is a spill-over to decide about.

        Each poll reads one Triton of a pool (a channel of its own, on its first address):
        the inference channels spread requests evenly over the pool's pods, so one pod's
        queue stands for the pool's."""
        clients = {pool.name: triton.InferenceServerClient(pool.url) for pool in self.pools}
        try:
            while True:
                await asyncio.gather(*(self._measure(pool, clients[pool.name])
                                       for pool in self.pools))
                self.decide()
                await asyncio.sleep(self.poll_s)
        finally:
            await asyncio.gather(*(c.close() for c in clients.values()),
                                 return_exceptions=True)

    async def _measure(self, pool: Pool, client: triton.InferenceServerClient) -> None:
        try:
            stats = await client.get_inference_statistics(
                client_timeout=max(self.poll_s, 1.0))
        except (InferenceServerException, asyncio.TimeoutError, OSError) as exc:
            if pool.queue_delay_s is not None:
                log.warning("Triton pool %s (%s) statistics unavailable: %s", pool.name,
                            pool.url, exc)
            pool.unmeasured()
            QUEUE_DELAY.labels(pool.name).set(-1)
            return
        queue_ns = sum(m.inference_stats.queue.ns for m in stats.model_stats)
        count = sum(m.inference_stats.queue.count for m in stats.model_stats)
        pool.observe(queue_ns, count)
        if pool.queue_delay_s is not None:
            QUEUE_DELAY.labels(pool.name).set(pool.queue_delay_s)


__all__ = ["CHANNEL_ARGS", "POOL_BATCHES", "POOL_FAILURES", "POOL_ROWS", "PRIMARY", "SPILL", "Pool",
           "TritonPools", "breaker_open", "new_breaker"]
