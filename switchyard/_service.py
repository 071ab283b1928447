"""The lifecycle of one service process, shared by all four services.

A service supplies a ``setup`` coroutine that registers its stream agents and gRPC servicers;
this module owns everything around it: logging, tracing, the metrics endpoint, the PostgreSQL
pool, the Kafka producer, the faust app, the gRPC server, readiness, the supervision of
background loops (:mod:`switchyard._supervision`: a loop that dies, or returns, is logged, counted
and restarted, health is NOT_SERVING meanwhile, and a critical loop or one that keeps failing
stops the process with exit 70), and a clean shutdown on SIGTERM/SIGINT in reverse order
(gRPC drains first, then consumers commit, then clients close).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar
from dataclasses import dataclass, field

import asyncpg
import faust

from switchyard._auth import MethodPolicy
from switchyard._brokerwatch import EXIT_BROKER_LOST, watch_broker
from switchyard._db import create_pool, migrate
from switchyard._dbwatch import watch_database
from switchyard._grpc import GrpcServer, Registration, start_server
from switchyard._kafka import Producer
from switchyard._ratelimit import TenantLimiter, limiter_for
from switchyard._settings import Settings
from switchyard._streams import (
    BatchHandler,
    DeadLetterSink,
    Handler,
    attach_agent,
    attach_batch_agent,
    attach_fair_agent,
    create_app,
    watch_streams,
)
from switchyard._supervision import Backoff, LoopFactory, Supervisor
from switchyard._telemetry import configure_logging, configure_tracing, start_metrics_endpoint
from switchyard._topics import Topic

log = logging.getLogger(__name__)
T = TypeVar("T")
#: How long closing the producer or the database pool may take at shutdown before it is
#: abandoned: a broker or database that is gone must not keep a stopping process alive.
CLOSE_TIMEOUT_S = 10.0


def _exit_by_deadline(name: str, deadline_s: float, exit_code: Callable[[], int]) -> None:
    """Once the service is stopping: exit within ``deadline_s`` whatever the shutdown still
    waits on. Each step has its own bound, but a dependency that stopped answering (a frozen
    database, a broker gone with commits pending) can hold one that has none, or the
    interpreter's own exit (a library's thread joined at exit), and a process that outlives
    its launcher's grace is killed without a word. A daemon thread, so an event loop blocked
    in the shutdown cannot hold it, and a normal exit ends it with the process."""
    def exit_now() -> None:
        log.error("%s: shutdown did not finish within %g s (SWITCHYARD_SHUTDOWN_DEADLINE_S): "
                  "exiting now; what it had not finished is re-read from its sources (outbox, "
                  "consumer positions, job leases)", name, deadline_s)
        for handler in logging.getLogger().handlers:
            with contextlib.suppress(Exception):
                handler.flush()
        sys.stderr.flush()
        os._exit(exit_code() or 0)

    timer = threading.Timer(deadline_s, exit_now)
    timer.daemon = True
    timer.start()


@dataclass
class ServiceContext:
    """What a service's setup gets to build on; filled in before ``setup`` runs."""

    name: str
    settings: Settings
    pool: asyncpg.Pool
    producer: Producer
    app: faust.App
    dead_letters: DeadLetterSink
    supervisor: Supervisor
    limiter: TenantLimiter
    registrations: list[Registration] = field(default_factory=list)
    policy: dict[str, frozenset] = field(default_factory=dict)
    loops: list[tuple[str, LoopFactory, bool, bool]] = field(default_factory=list)
    on_stop: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    has_agents: bool = False
    rate_limited: frozenset[str] = frozenset()

    def consume(self, topic: Topic, handler: Handler, batch_size: int = 64,
                batch_window_s: float = 0.01) -> None:
        attach_agent(self.app, self.settings, topic, handler, lambda: self.dead_letters,
                     self.name, batch_size, batch_window_s)
        self.has_agents = True

    def consume_batches(self, topic: Topic, handler: BatchHandler,
                        batch_size: int | None = None, window_s: float | None = None) -> None:
        """Feed ``topic`` to ``handler`` a whole batch at a time (up to ``batch_size`` records,
        waiting at most ``window_s`` to fill one; by default the ``stream_batch_*`` settings):
        one call, one transaction, per batch instead of per record. See
        :func:`switchyard._streams.process_record_batch`."""
        s = self.settings
        attach_batch_agent(
            self.app, s, topic, handler, lambda: self.dead_letters, self.name,
            s.stream_batch_max_records if batch_size is None else batch_size,
            s.stream_batch_window_ms / 1000 if window_s is None else window_s)
        self.has_agents = True

    def consume_fairly(self, topic: Topic, handler: BatchHandler) -> None:
        """Feed ``topic`` to ``handler`` in batches chosen fairly across tenants (weights,
        then priority) from records read ahead, ``stream_fair_batches`` at a time, each
        task's records in order (:func:`switchyard._streams.attach_fair_agent`): for the task path,
        where one tenant's burst must not hold up the others."""
        attach_fair_agent(self.app, self.settings, topic, handler, lambda: self.dead_letters,
                          self.name)
        self.has_agents = True

    def run_in_background(self, name: str, loop: LoopFactory, *,
                          critical: bool = False, one_shot: bool = False) -> None:
        """Run ``loop`` under the process's :class:`Supervisor` once the service is ready
        (consumers joined); ``critical`` loops stop the process on their first failure.
        Loops are long-running: a return is a failure (logged, counted, restarted) unless
        ``one_shot`` declares a job that ends when its work is done."""
        self.loops.append((name, loop, critical, one_shot))

    def serve(self, registration: Registration, policy: MethodPolicy,
              rate_limited: frozenset[str] = frozenset()) -> None:
        """Serve a gRPC service with its role policy; ``rate_limited`` methods (the RPCs
        that create work) are charged to the caller's tenant through ``limiter``."""
        self.registrations.append(registration)
        self.policy.update(policy)
        self.rate_limited |= rate_limited


Setup = Callable[[ServiceContext], Awaitable[None]]


class _StoppedWhileStarting(Exception):
    """SIGTERM/SIGINT came while a start-up step was still waiting on a dependency (a broker
    or a database that does not answer): the process stops rather than wait on."""


async def _unless_stopped(step: Awaitable[T], stop: asyncio.Event) -> T:
    """``step``'s result; :class:`_StoppedWhileStarting` (``step`` cancelled) when ``stop`` is
    set first. Start-up awaits brokers and databases that may never answer, and a signal
    handler only sets ``stop``: without this a process asked to stop while starting would
    wait on forever (an orphan once its launcher is gone)."""
    task = asyncio.ensure_future(step)
    waiter = asyncio.ensure_future(stop.wait())
    try:
        done, _ = await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # the caller itself cancelled: so is the step
        task.cancel()
        raise
    finally:
        waiter.cancel()
    if task in done:
        return task.result()
    task.cancel()
    with contextlib.suppress(BaseException):
        await task
    raise _StoppedWhileStarting


async def run_service(name: str, settings: Settings, grpc_port: int, metrics_port: int,
                      setup: Setup, stop_event: asyncio.Event | None = None,
                      apply_migrations: bool = False) -> None:
    """Run one service until SIGTERM/SIGINT (or ``stop_event``), then shut down in order. A
    signal during start-up (a dependency that does not answer) stops it too: each start-up
    step gives way to it, and what was started is closed."""
    configure_logging(settings, name)
    configure_tracing(settings, name)
    start_metrics_endpoint(settings, metrics_port)
    stop = stop_event or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    pool: asyncpg.Pool | None = None
    producer: Producer | None = None
    ctx: ServiceContext | None = None
    supervisor: Supervisor | None = None
    server: GrpcServer | None = None
    ready = False
    database_answers = True   # what the database watch last saw
    exit_code = 0

    async def publish_health(healthy: bool) -> None:
        # before readiness the start-up sequence owns the status; after stop, server.stop does.
        # Ready needs every loop up and the database; live only the loops (see LIVENESS).
        if server is not None and ready:
            await server.set_serving(healthy and database_answers, live=healthy)

    async def database_changed(answers: bool) -> None:
        nonlocal database_answers
        database_answers = answers
        if supervisor is not None:
            await publish_health(supervisor.healthy)

    def background_failed(code: int) -> None:
        # A graceful stop: unlike a lost broker, the consumers' positions are still good.
        nonlocal exit_code
        exit_code = code
        stop.set()

    def broker_lost() -> None:
        # Exit at once, like a crash: a graceful stop would commit this consumer's positions,
        # which point into the lost logs, onto the recreated topics and skip their records.
        logging.shutdown()
        os._exit(EXIT_BROKER_LOST)

    async def broker_watch() -> None:
        await watch_broker(settings, broker_lost, name)

    try:
        if apply_migrations:
            await _unless_stopped(migrate(settings), stop)
        pool = await _unless_stopped(create_pool(settings), stop)
        producer = Producer(settings)
        await _unless_stopped(producer.start(), stop)
        app = create_app(settings, name)
        supervisor = Supervisor(name, Backoff.from_settings(settings), on_health=publish_health,
                                on_fatal=background_failed)
        ctx = ServiceContext(name=name, settings=settings, pool=pool, producer=producer,
                             app=app, dead_letters=DeadLetterSink(settings, name, producer, pool),
                             supervisor=supervisor, limiter=limiter_for(settings, pool))
        await _unless_stopped(setup(ctx), stop)
        server = await _unless_stopped(
            start_server(settings, name, grpc_port, ctx.registrations, ctx.policy,
                         ctx.rate_limited, ctx.limiter), stop)
        await server.set_serving(False)  # not ready until consumers joined their group
        if ctx.has_agents:
            await _unless_stopped(app.start(), stop)
            supervisor.start("stream-consumer", lambda: watch_streams(app), critical=True)
        for loop_name, loop_factory, critical, one_shot in ctx.loops:
            supervisor.start(loop_name, loop_factory, critical=critical, one_shot=one_shot)
        # without a broker watch a lost broker would go unnoticed: critical. It runs only
        # when enabled (broker_check_interval_s > 0); disabled, it would return at once.
        if settings.broker_check_interval_s > 0:
            supervisor.start("broker-watch", broker_watch, critical=True)
        if settings.database_check_interval_s > 0:
            supervisor.start("database-watch", lambda: watch_database(settings, name,
                                                                      database_changed))
        ready = True
        await publish_health(supervisor.healthy)
        log.info("%s ready on %s", name, server.address)
        await stop.wait()
        log.info("%s stopping", name)
    except _StoppedWhileStarting:
        log.warning("%s stopping before it was ready (asked to while a start-up step was "
                    "still waiting on a dependency)", name)
    finally:
        ready = False
        _exit_by_deadline(name, settings.shutdown_deadline_s, lambda: exit_code)
        if server is not None:
            await server.stop(grace_s=3.0)
        if supervisor is not None:
            await supervisor.stop()
        if ctx is not None:
            for hook in reversed(ctx.on_stop):
                await hook()
            if ctx.has_agents:
                try:  # after a broker restart faust can wait forever on commits that cannot land
                    await asyncio.wait_for(ctx.app.stop(),
                                           settings.kafka_session_timeout_ms / 1000)
                except asyncio.TimeoutError:
                    log.warning("%s: consumers did not stop in time; offsets not committed "
                                "are re-read by the next process (consumers dedupe)", name)
        if producer is not None:
            try:  # a broker that is gone can hold unsent records' flush for minutes
                await asyncio.wait_for(producer.stop(), CLOSE_TIMEOUT_S)
            except asyncio.TimeoutError:
                log.warning("%s: the producer did not close in time; records it had not sent "
                            "are re-sent from their sources (outbox, consumer positions)", name)
        if pool is not None:
            try:  # a database that is gone can hold a graceful close as long
                await asyncio.wait_for(pool.close(), CLOSE_TIMEOUT_S)
            except asyncio.TimeoutError:
                pool.terminate()
        log.info("%s stopped", name)
    if exit_code:
        raise SystemExit(exit_code)
