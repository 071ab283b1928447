"""Whether a service can reach its system of record, asked on a connection of its own.

Every service's work goes through PostgreSQL (ingest accepts into it, the executor claims its
jobs there, review keeps its items there), so a service that cannot reach it is not ready:
its gRPC readiness goes NOT_SERVING and comes back when the database answers again. The loops
that meet the outage ride it out by themselves (or fail and are restarted by the supervisor);
before this watch, whether readiness showed an outage depended on whether one of them happened
to be failing at the moment of the probe.

The check runs on its own connection, not the pool: a pool busy with real work must not read
as a database that is away, and a hung connection of the pool cannot hold the check up. The
watch itself never fails over an outage nor ends the process: liveness follows the loops
only (restarting a process does not bring PostgreSQL back).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import asyncpg
from prometheus_client import Gauge

from switchyard._db import connect
from switchyard._settings import Settings
from switchyard._transient import TRANSIENT_ERRORS

log = logging.getLogger(__name__)

DATABASE_REACHABLE = Gauge(
    "switchyard_database_reachable",
    "1 when the service's last PostgreSQL check (every SWITCHYARD_DATABASE_CHECK_INTERVAL_S) "
    "was answered, 0 when it failed (gRPC readiness is NOT_SERVING meanwhile).", ["service"])
DATABASE_LAST_ANSWER = Gauge(
    "switchyard_database_last_answer_timestamp_seconds",
    "When PostgreSQL last answered the service's check (Unix time).", ["service"])

#: What a check may meet while the database is away, restarting or hung (a check that took
#: longer than its interval is a TimeoutError, among the transient ones), or refusing new
#: sessions: any server error means this service cannot work there now.
_AWAY = (*TRANSIENT_ERRORS, asyncpg.PostgresError)

ReachableHook = Callable[[bool], Awaitable[None]]


async def _answers(conn: asyncpg.Connection | None, settings: Settings
                   ) -> asyncpg.Connection:
    """The check's connection after one ``SELECT 1`` answered on it (opened when needed);
    raises what a database that is away raises, within the check interval."""
    timeout = settings.database_check_interval_s
    if conn is None or conn.is_closed():
        conn = await asyncio.wait_for(connect(settings), timeout)
    await conn.fetchval("SELECT 1", timeout=timeout)
    return conn


async def watch_database(settings: Settings, service: str, on_change: ReachableHook) -> None:
    """Every ``database_check_interval_s``, ask PostgreSQL ``SELECT 1`` (within the same
    interval); call ``on_change(False)`` when it stops answering and ``on_change(True)`` when
    it answers again. One ERROR line per outage, one INFO line at its end; each answer, or
    its absence, is :data:`DATABASE_REACHABLE` of ``service``. Runs until cancelled."""
    if settings.database_check_interval_s <= 0:
        return
    reachable = DATABASE_REACHABLE.labels(service)
    last_answer = DATABASE_LAST_ANSWER.labels(service)
    conn: asyncpg.Connection | None = None
    answering = True  # the service started on a pool that connected
    reachable.set(1)
    last_answer.set_to_current_time()
    try:
        while True:
            await asyncio.sleep(settings.database_check_interval_s)
            try:
                conn = await _answers(conn, settings)
            except _AWAY as exc:
                if conn is not None:
                    conn.terminate()  # a hung connection is not asked again
                    conn = None
                reachable.set(0)
                if answering:
                    log.error("PostgreSQL does not answer (%r): not ready; checking again "
                              "every %g s", exc, settings.database_check_interval_s)
                    answering = False
                    await on_change(False)
                continue
            reachable.set(1)
            last_answer.set_to_current_time()
            if not answering:
                log.info("PostgreSQL answers again: ready")
                answering = True
                await on_change(True)
    finally:
        if conn is not None:
            conn.terminate()


__all__ = ["DATABASE_REACHABLE", "watch_database"]
