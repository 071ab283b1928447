"""One supervision rule for every long-running loop of a service process.

A loop started with ``asyncio.create_task`` and never awaited dies without a trace: the
process keeps answering, gRPC health says SERVING, and the work the loop did (reconciling,
retrying holds, delivering webhooks) silently stops. So every service starts its loops through
a :class:`Supervisor`, and the rule is the same everywhere:

* A loop that raises (anything but cancellation) is logged with its traceback and counted in
  ``switchyard_background_failures_total{service,loop}``; ``switchyard_background_loop_up``
  drops to 0 and gRPC health is NOT_SERVING while any loop is down.
* It is started again after an exponential backoff (``background_backoff_initial_s``,
  doubling, at most ``background_backoff_max_s``). Once a restarted loop has run
  ``background_healthy_after_s`` without raising it counts as up again: its run of failures
  is forgotten and health returns to SERVING (when no other loop is down).
* A loop declared critical, or one that failed ``background_failure_limit`` times in a row,
  stops the process with :data:`EXIT_BACKGROUND_FAILED` so that its supervisor (the kubelet)
  starts a fresh one.
* Per-item helper tasks (a batch sent to Triton, a shadow comparison, a resumed job) are
  started with :meth:`Supervisor.spawn`: never restarted and never a health matter, but a
  failure is logged and counted under the helper's name instead of vanishing.
* A loop is long-running by contract: one that *returns* (while the process is not stopping)
  stopped as silently as one that died, so the return is logged at warning and then handled
  exactly like a failure (counted, NOT_SERVING, restarted with backoff, fatal at the limit or
  when critical). A job meant to end, such as loading model metadata once Triton answers, is
  started with ``one_shot=True``: its return means done (a failure is still restarted).
* Cancellation (a shutdown) is not a failure, and nor is a return once the supervisor stops.

Loops handle their own *transient* errors (a database restart, a broker blip) and go on; what
reaches the supervisor is what a loop cannot handle, which is exactly what must not stay silent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from prometheus_client import Counter, Gauge

from switchyard._settings import Settings
from switchyard._streams import TRANSIENT_ERRORS

log = logging.getLogger(__name__)

T = TypeVar("T")

#: ``EX_SOFTWARE``: a background loop failed for good; the process is to be started again.
EXIT_BACKGROUND_FAILED = 70

BACKGROUND_FAILURES = Counter(
    "switchyard_background_failures_total",
    "Background loops and helper tasks that raised (each one logged with its traceback), "
    "and long-running loops that returned.",
    ["service", "loop"],
)
BACKGROUND_LOOP_UP = Gauge(
    "switchyard_background_loop_up",
    "1 while a supervised background loop runs, 0 while it is down or backing off.",
    ["service", "loop"],
)

LoopFactory = Callable[[], Awaitable[None]]
HealthHook = Callable[[bool], Awaitable[None]]
FatalHook = Callable[[int], None]


@dataclass(frozen=True)
class Backoff:
    """How a failed loop is restarted, and when the supervisor gives up on the process."""

    initial_s: float = 1.0
    max_s: float = 60.0
    failure_limit: int = 8
    healthy_after_s: float = 5.0

    def __post_init__(self) -> None:
        if not 0 < self.initial_s <= self.max_s:
            raise ValueError(f"backoff: need 0 < initial_s ({self.initial_s}) <= max_s "
                             f"({self.max_s})")
        if self.failure_limit < 0:
            raise ValueError(f"backoff: failure_limit must be >= 0, not {self.failure_limit}")
        if self.healthy_after_s <= 0:
            raise ValueError(f"backoff: healthy_after_s must be > 0, not "
                             f"{self.healthy_after_s}")

    @classmethod
    def from_settings(cls, settings: Settings) -> Backoff:
        return cls(settings.background_backoff_initial_s, settings.background_backoff_max_s,
                   settings.background_failure_limit, settings.background_healthy_after_s)

    def delay_s(self, failures: int) -> float:
        """The wait before the restart that follows the ``failures``-th failure in a row."""
        return min(self.max_s, self.initial_s * 2 ** min(max(failures - 1, 0), 32))


def exit_process(code: int) -> None:
    """The default fatal hook: exit at once (the process is broken; the kubelet restarts it)."""
    logging.shutdown()
    os._exit(code)


@dataclass
class _LoopState:
    name: str
    critical: bool
    one_shot: bool = False
    up: bool = True
    failures: int = 0


class Supervisor:
    """Starts and watches one process's background loops and helper tasks (see module doc)."""

    def __init__(self, service: str, backoff: Backoff | None = None, *,
                 on_health: HealthHook | None = None,
                 on_fatal: FatalHook = exit_process) -> None:
        self.service = service
        self.backoff = backoff or Backoff()
        self.on_health = on_health
        self.on_fatal = on_fatal
        self._loops: dict[str, _LoopState] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._health_lock = asyncio.Lock()
        self._stopping = False
        self._published = True  # loops start out up

    @property
    def healthy(self) -> bool:
        """True while every supervised loop is up (none failed and waiting to be restarted)."""
        return all(state.up for state in self._loops.values())

    @property
    def down(self) -> list[str]:
        """Names of the loops that are down or backing off."""
        return [name for name, state in self._loops.items() if not state.up]

    def start(self, name: str, loop: LoopFactory, *, critical: bool = False,
              one_shot: bool = False) -> asyncio.Task[None]:
        """Run ``loop()`` under supervision until the process stops; cancel the returned task
        to stop it early (that is not a failure). Names are unique within a process.
        ``loop()`` returning is a failure unless ``one_shot`` (a job that ends when done)."""
        if name in self._loops:
            raise ValueError(f"{self.service}: a background loop named {name!r} already runs")
        state = _LoopState(name, critical, one_shot)
        self._loops[name] = state
        BACKGROUND_LOOP_UP.labels(self.service, name).set(1)
        task = asyncio.create_task(self._supervise(state, loop),
                                   name=f"{self.service}-{name}")
        self._tasks.add(task)

        def finished(done: asyncio.Task[None]) -> None:
            self._tasks.discard(done)
            self._loops.pop(name, None)
            with contextlib.suppress(KeyError):  # a series belongs to one running loop
                BACKGROUND_LOOP_UP.remove(self.service, name)

        task.add_done_callback(finished)
        return task

    def spawn(self, name: str, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run one helper task; if it raises, log and count it under ``name``. The caller
        keeps the task (to await or cancel it); nothing restarts it."""
        task = asyncio.create_task(work, name=f"{self.service}-{name}")

        def observed(done: asyncio.Task[T]) -> None:
            if done.cancelled():
                return
            exc = done.exception()
            if exc is not None:
                BACKGROUND_FAILURES.labels(self.service, name).inc()
                log.error("%s: %s task failed", self.service, name, exc_info=exc)

        task.add_done_callback(observed)
        return task

    async def stop(self) -> None:
        """Cancel every loop (a shutdown, not a failure) and wait for them to end."""
        self._stopping = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _supervise(self, state: _LoopState, loop: LoopFactory) -> None:
        while True:
            run = asyncio.ensure_future(loop())
            try:
                if not state.up:
                    done, _ = await asyncio.wait({run}, timeout=self.backoff.healthy_after_s)
                    if not done:
                        state.failures = 0
                        log.info("%s: background loop %s is running again", self.service,
                                 state.name)
                        await self._set_up(state, True)
                await run
            except asyncio.CancelledError:
                run.cancel()
                await asyncio.gather(run, return_exceptions=True)
                raise
            except Exception as exc:  # noqa: BLE001 - the point: nothing escapes unseen
                state.failures += 1
                BACKGROUND_FAILURES.labels(self.service, state.name).inc()
                log.error("%s: background loop %s failed (%d in a row)", self.service,
                          state.name, state.failures, exc_info=exc)
            else:
                if state.one_shot or self._stopping:
                    log.info("%s: background loop %s finished", self.service, state.name)
                    if not state.up:  # a restarted one-shot job that succeeded
                        await self._set_up(state, True)
                    return
                state.failures += 1
                BACKGROUND_FAILURES.labels(self.service, state.name).inc()
                log.warning("%s: background loop %s returned, but it is long-running: "
                            "handled as a failure (%d in a row)", self.service, state.name,
                            state.failures)
            await self._set_up(state, False)
            limit = self.backoff.failure_limit
            if state.critical or (limit and state.failures >= limit):
                why = "it is critical" if state.critical else \
                    f"it failed {state.failures} times in a row"
                log.critical("%s: stopping the process with exit status %d: background "
                             "loop %s is down and %s", self.service,
                             EXIT_BACKGROUND_FAILED, state.name, why)
                self.on_fatal(EXIT_BACKGROUND_FAILED)
                return
            delay = self.backoff.delay_s(state.failures)
            log.warning("%s: restarting background loop %s in %.1fs", self.service,
                        state.name, delay)
            await asyncio.sleep(delay)

    async def _set_up(self, state: _LoopState, up: bool) -> None:
        state.up = up
        BACKGROUND_LOOP_UP.labels(self.service, state.name).set(1 if up else 0)
        if self.on_health is None or self._stopping:
            return
        async with self._health_lock:  # publish changes of the latest state, in order
            healthy = self.healthy
            if healthy == self._published:
                return
            try:
                await self.on_health(healthy)
                self._published = healthy
            except Exception:  # noqa: BLE001 - reporting health must not kill the loop
                log.exception("%s: could not publish health", self.service)


def periodic(name: str, interval_s: float, job: Callable[[], Awaitable[object]],
             idle: Idle | None = None) -> LoopFactory:
    """A loop that runs ``job`` now and then every ``interval_s``. A transient failure (the
    database or broker restarting) is logged and the next round tries again; anything else
    ends the loop, for its :class:`Supervisor` to log, count and restart.

    With ``idle``, a round whose job returns a false value found nothing to do: the next one
    waits for ``idle.wake()`` (whoever brings work calls it) or ``idle.after_s``, whichever
    comes first, instead of ``interval_s`` (a loop with no work does not poll ten times a
    second; ``after_s`` covers work another process brought)."""

    async def loop() -> None:
        while True:
            busy: object = True
            try:
                busy = await job()
            except TRANSIENT_ERRORS as exc:
                log.warning("%s: transient failure, next round retries: %r", name, exc)
            if idle is None or busy:
                await asyncio.sleep(interval_s)
            else:
                await idle.wait()

    return loop


class Idle:
    """How a :func:`periodic` loop with nothing to do waits: until :meth:`wake` or
    ``after_s`` seconds."""

    def __init__(self, after_s: float) -> None:
        self.after_s = after_s
        self._woken = asyncio.Event()

    def wake(self) -> None:
        """Work has come: the loop's next round starts now (safe from any task)."""
        self._woken.set()

    async def wait(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._woken.wait(), self.after_s)
        self._woken.clear()


__all__ = ["BACKGROUND_FAILURES", "BACKGROUND_LOOP_UP", "EXIT_BACKGROUND_FAILED", "Backoff",
           "Idle", "LoopFactory", "Supervisor", "exit_process", "periodic"]
