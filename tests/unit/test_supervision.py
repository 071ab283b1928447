"""The supervision rule for background loops: a loop that dies is logged, counted, restarted
with backoff and reported unhealthy until it runs again; a critical loop, or one that keeps
failing, stops the process; helper tasks are observed; cancellation is not a failure."""

from __future__ import annotations

import asyncio
import logging
import uuid

import asyncpg
import pytest
from prometheus_client import REGISTRY

from switchyard import Settings
from switchyard.runtime import EXIT_BACKGROUND_FAILED, Backoff, Idle, Supervisor, periodic
from tests.polling import eventually

FAST = Backoff(initial_s=0.01, max_s=0.02, failure_limit=0, healthy_after_s=0.05)


def failures(service: str, loop: str) -> float:
    return REGISTRY.get_sample_value("switchyard_background_failures_total",
                                     {"service": service, "loop": loop}) or 0.0


def loop_up(service: str, loop: str) -> float | None:
    return REGISTRY.get_sample_value("switchyard_background_loop_up",
                                     {"service": service, "loop": loop})


class Recorder:
    """The hooks a service gives its supervisor: health changes and fatal exits, recorded."""

    def __init__(self) -> None:
        self.health: list[bool] = []
        self.exits: list[int] = []

    async def on_health(self, healthy: bool) -> None:
        self.health.append(healthy)

    def on_fatal(self, code: int) -> None:
        self.exits.append(code)


def supervisor(backoff: Backoff = FAST) -> tuple[Supervisor, Recorder, str]:
    service = f"svc-{uuid.uuid4().hex[:8]}"
    recorder = Recorder()
    return (Supervisor(service, backoff, on_health=recorder.on_health,
                       on_fatal=recorder.on_fatal), recorder, service)


async def test_a_dying_loop_is_logged_counted_restarted_and_unhealthy_meanwhile(
        caplog: pytest.LogCaptureFixture) -> None:
    sup, seen, service = supervisor()
    broken = asyncio.Event()
    broken.set()
    runs = 0
    running_again = asyncio.Event()

    async def loop() -> None:
        nonlocal runs
        runs += 1
        if broken.is_set():
            raise RuntimeError(f"relation does not exist (run {runs})")
        running_again.set()
        await asyncio.Event().wait()  # a healthy loop runs forever

    with caplog.at_level(logging.ERROR, logger="switchyard._supervision"):
        sup.start("reader", loop)
        await eventually(lambda: _ready(failures(service, "reader") >= 3), "three failures")
    assert not sup.healthy and sup.down == ["reader"]
    assert seen.health and seen.health[0] is False
    assert loop_up(service, "reader") == 0
    assert "background loop reader failed" in caplog.text
    assert "RuntimeError: relation does not exist" in caplog.text  # the traceback is logged
    assert seen.exits == []  # not critical, no limit: restarted, never fatal

    broken.clear()  # the fault is removed: the next restart runs and stays up
    await asyncio.wait_for(running_again.wait(), 10)
    await eventually(lambda: _ready(sup.healthy), "the loop to count as up again")
    assert seen.health[-1] is True
    assert loop_up(service, "reader") == 1
    await sup.stop()
    assert seen.exits == []


async def test_a_critical_loop_stops_the_process_on_its_first_failure() -> None:
    sup, seen, service = supervisor()

    async def watch() -> None:
        raise ValueError("cannot watch")

    task = sup.start("watch", watch, critical=True)
    await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 10)
    assert seen.exits == [EXIT_BACKGROUND_FAILED] and EXIT_BACKGROUND_FAILED != 0
    assert failures(service, "watch") == 1


async def test_a_loop_that_keeps_failing_stops_the_process_at_the_limit() -> None:
    sup, seen, service = supervisor(Backoff(initial_s=0.01, max_s=0.01, failure_limit=3,
                                            healthy_after_s=5))
    runs = 0

    async def loop() -> None:
        nonlocal runs
        runs += 1
        raise ValueError("always")

    task = sup.start("stubborn", loop)
    await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 10)
    assert (runs, failures(service, "stubborn")) == (3, 3)
    assert seen.exits == [EXIT_BACKGROUND_FAILED]


async def test_a_loop_that_recovers_in_between_starts_its_count_again() -> None:
    sup, seen, service = supervisor(Backoff(initial_s=0.01, max_s=0.01, failure_limit=2,
                                            healthy_after_s=0.05))
    runs = 0
    fail_now = asyncio.Event()

    async def loop() -> None:
        nonlocal runs
        runs += 1
        if runs == 2:  # runs long enough to count as up again, then fails
            await fail_now.wait()
        raise ValueError(f"failure in run {runs}")

    task = sup.start("flaky", loop)
    await eventually(lambda: _ready(runs == 2 and sup.healthy), "the restarted loop to be up")
    fail_now.set()
    await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 10)
    # without the recovery the second failure would have been the second in a row
    assert (runs, failures(service, "flaky")) == (3, 3)
    assert seen.exits == [EXIT_BACKGROUND_FAILED]
    assert seen.health == [False, True, False]


async def test_cancellation_at_shutdown_is_not_a_failure() -> None:
    sup, seen, service = supervisor()
    started = asyncio.Event()

    async def loop() -> None:
        started.set()
        await asyncio.Event().wait()

    sup.start("idle", loop)
    await asyncio.wait_for(started.wait(), 10)
    await sup.stop()
    assert failures(service, "idle") == 0
    assert seen.health == [] and seen.exits == []
    assert loop_up(service, "idle") is None  # a stopped loop leaves no series behind


async def test_a_long_running_loop_that_returns_is_a_failure_and_restarted(
        caplog: pytest.LogCaptureFixture) -> None:
    sup, seen, service = supervisor()
    runs = 0
    running_again = asyncio.Event()

    async def loop() -> None:
        nonlocal runs
        runs += 1
        if runs <= 2:
            return  # a bug: the loop's `while` ended, nothing raised
        running_again.set()
        await asyncio.Event().wait()

    with caplog.at_level(logging.WARNING, logger="switchyard._supervision"):
        task = sup.start("quiet", loop)
        await asyncio.wait_for(running_again.wait(), 10)
    assert not task.done()  # restarted, not "finished"
    assert failures(service, "quiet") == 2
    assert seen.health and seen.health[0] is False  # NOT_SERVING while it was down
    assert "background loop quiet returned, but it is long-running" in caplog.text
    assert [r.levelno for r in caplog.records if "returned" in r.getMessage()] == \
        [logging.WARNING, logging.WARNING]
    await eventually(lambda: _ready(sup.healthy), "the loop to count as up again")
    assert seen.health[-1] is True and seen.exits == []
    await sup.stop()


async def test_a_critical_loop_that_returns_stops_the_process() -> None:
    sup, seen, service = supervisor()

    async def watch() -> None:
        return None

    task = sup.start("watch", watch, critical=True)
    await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 10)
    assert seen.exits == [EXIT_BACKGROUND_FAILED]
    assert failures(service, "watch") == 1


async def test_a_one_shot_job_that_returns_has_finished() -> None:
    sup, seen, service = supervisor()

    async def once() -> None:
        return None

    await asyncio.wait_for(sup.start("once", once, one_shot=True), 10)
    assert failures(service, "once") == 0 and sup.healthy and seen.exits == []


async def test_a_one_shot_job_is_restarted_after_a_failure_and_then_finishes() -> None:
    sup, seen, service = supervisor()
    runs = 0

    async def load() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise TimeoutError("model not loaded yet")

    await asyncio.wait_for(sup.start("load", load, one_shot=True), 10)
    assert runs == 2 and failures(service, "load") == 1
    assert sup.healthy and seen.health == [False, True] and seen.exits == []


async def test_a_loop_that_returns_at_shutdown_is_not_a_failure() -> None:
    sup, seen, service = supervisor()
    stopping = asyncio.Event()

    async def loop() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            stopping.set()
            return  # swallows the cancellation, as `while not self._stopping` loops may

    sup.start("polite", loop)
    await asyncio.sleep(0)
    await asyncio.wait_for(sup.stop(), 10)
    assert stopping.is_set() and failures(service, "polite") == 0 and seen.exits == []


async def test_helper_tasks_are_observed_not_restarted(caplog: pytest.LogCaptureFixture) -> None:
    sup, seen, service = supervisor()

    async def boom() -> None:
        raise KeyError("lost item")

    with caplog.at_level(logging.ERROR, logger="switchyard._supervision"):
        task = sup.spawn("send", boom())
        with pytest.raises(KeyError):
            await task
        await asyncio.sleep(0)  # done callbacks run on the next loop iteration
    assert failures(service, "send") == 1
    assert "send task failed" in caplog.text and "KeyError: 'lost item'" in caplog.text

    cancelled = sup.spawn("send", asyncio.Event().wait())
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.gather(cancelled, return_exceptions=True)
    await asyncio.sleep(0)
    assert failures(service, "send") == 1  # a cancelled helper is not a failure
    assert sup.healthy and seen.health == [] and seen.exits == []


async def test_periodic_rides_out_transient_errors_and_hands_others_to_the_supervisor() -> None:
    rounds: list[str] = []

    async def job() -> None:
        rounds.append("round")
        if len(rounds) == 1:
            raise ConnectionRefusedError("database restarting")  # transient: next round
        raise asyncpg.UndefinedTableError("relation \"tasks\" does not exist")

    with pytest.raises(asyncpg.UndefinedTableError):
        await asyncio.wait_for(periodic("job", 0.01, job)(), 10)
    assert len(rounds) == 2


async def test_an_idle_periodic_loop_waits_for_work_instead_of_polling() -> None:
    """A round that finds nothing to do makes the loop wait for ``wake`` (or ``after_s``),
    not its interval; a busy round comes back at the interval."""
    rounds: list[float] = []
    busy = [True, True, False]
    idle = Idle(after_s=30.0)

    async def job() -> bool:
        rounds.append(asyncio.get_running_loop().time())
        return busy.pop(0) if busy else False

    loop = asyncio.create_task(periodic("work", 0.01, job, idle)())
    try:
        await eventually(lambda: asyncio.sleep(0, len(rounds) == 3), "three rounds")
        await asyncio.sleep(0.3)
        assert len(rounds) == 3  # idle: no round at the 10 ms interval
        idle.wake()
        await eventually(lambda: asyncio.sleep(0, len(rounds) == 4), "a round on wake")
        idle.wake()  # woken before the next wait: not lost
        await eventually(lambda: asyncio.sleep(0, len(rounds) == 5), "the next round")
    finally:
        loop.cancel()
        with pytest.raises(asyncio.CancelledError):
            await loop
    short = Idle(after_s=0.05)
    count = 0

    async def nothing() -> bool:
        nonlocal count
        count += 1
        return False

    waiting = asyncio.create_task(periodic("quiet", 0.001, nothing, short)())
    await asyncio.sleep(0.5)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert 1 <= count <= 20  # every after_s (50 ms), not every millisecond


def test_backoff_doubles_up_to_its_cap_and_is_declared_in_settings() -> None:
    backoff = Backoff(initial_s=1, max_s=5, failure_limit=3, healthy_after_s=2)
    assert [backoff.delay_s(n) for n in range(1, 6)] == [1, 2, 4, 5, 5]
    assert backoff.delay_s(10_000) == 5
    settings = Settings.from_env({"SWITCHYARD_BACKGROUND_BACKOFF_INITIAL_S": "0.5",
                                  "SWITCHYARD_BACKGROUND_BACKOFF_MAX_S": "30",
                                  "SWITCHYARD_BACKGROUND_FAILURE_LIMIT": "4",
                                  "SWITCHYARD_BACKGROUND_HEALTHY_AFTER_S": "3"})
    assert Backoff.from_settings(settings) == Backoff(0.5, 30, 4, 3)


@pytest.mark.parametrize("kwargs", [dict(initial_s=0), dict(initial_s=10, max_s=1),
                                    dict(failure_limit=-1), dict(healthy_after_s=0)])
def test_backoff_refuses_values_out_of_range(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="backoff"):
        Backoff(**kwargs)  # type: ignore[arg-type]


async def _ready(value: bool) -> bool | None:
    return value or None
