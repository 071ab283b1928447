"""A background loop broken on purpose in a real ingest process (``switchyard run ingest``,
started as the stack starts it): the failure is logged and counted on /metrics, gRPC health
turns NOT_SERVING while the loop is down, and once the fault is gone the loop runs again and
health is SERVING; a loop that keeps failing past the limit takes the process down (exit 70).

The fault is real: the webhook dispatcher's own table is renamed away in this module's schema,
so its query fails with a non-transient error (undefined table), and renamed back after.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable

import aiohttp
import asyncpg
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from switchyard import Settings
from switchyard.rpc import create_channel
from switchyard.runtime import EXIT_BACKGROUND_FAILED
from switchyard.stack import free_port
from switchyard.v1 import IngestServiceStub, SubmitTaskRequest
from tests.ingest.helpers import IngestProcess, submission
from tests.polling import eventually

pytestmark = pytest.mark.integration

TABLE = "webhook_feed_cursor"  # read by the webhook dispatcher loop only
AWAY = "webhook_feed_cursor_away"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def fast(settings: Settings, **changes: object) -> Settings:
    """Quick restarts so the test sees several; its own ports so processes never collide."""
    return settings.replace(background_backoff_initial_s=0.2, background_backoff_max_s=0.5,
                            background_healthy_after_s=1.0, watch_poll_ms=100,
                            ingest_grpc_port=free_port(), ingest_metrics_port=free_port(),
                            ingest_rest_port=free_port(),
                            **changes)


async def health(port: int) -> int:
    channel = create_channel(f"127.0.0.1:{port}")
    try:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=5)
        return int(reply.status)
    finally:
        await channel.close()


async def loop_failures(port: int, loop: str) -> float:
    async with aiohttp.ClientSession() as session, \
            session.get(f"http://127.0.0.1:{port}/metrics") as response:
        text = await response.text()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "switchyard_background_failures_total" and \
                    sample.labels == {"service": "ingest", "loop": loop}:
                return sample.value
    return 0.0


@pytest.fixture
async def table_restored(db: asyncpg.Connection) -> AsyncIterator[asyncpg.Connection]:
    """The fault's switch; whatever happens, the table is back afterwards."""
    yield db
    if await db.fetchval("SELECT to_regclass($1) IS NULL", TABLE):
        await db.execute(f"ALTER TABLE {AWAY} RENAME TO {TABLE}")


async def test_a_broken_loop_is_seen_and_recovers(
        settings: Settings, table_restored: asyncpg.Connection,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    db = table_restored
    s = fast(settings, background_failure_limit=0)  # restart for as long as it takes
    process = IngestProcess(s, tmp_path_factory.mktemp("supervised")).start()
    try:
        assert await health(s.ingest_grpc_port) == SERVING
        before = await loop_failures(s.ingest_metrics_port, "webhooks")

        await db.execute(f"ALTER TABLE {TABLE} RENAME TO {AWAY}")
        await eventually(lambda: _is(health(s.ingest_grpc_port), NOT_SERVING),
                         "health to turn NOT_SERVING while the webhook loop is down")
        await eventually(lambda: _above(loop_failures(s.ingest_metrics_port, "webhooks"),
                                        before + 1),
                         "switchyard_background_failures_total{loop=webhooks} to count the "
                         "failures (and the restarts that failed again)")
        log = process.log()
        assert "background loop webhooks failed" in log
        assert "UndefinedTableError" in log and "Traceback" in log
        assert process.process.returncode is None  # not critical, no limit: it keeps trying

        await db.execute(f"ALTER TABLE {AWAY} RENAME TO {TABLE}")
        await eventually(lambda: _is(health(s.ingest_grpc_port), SERVING),
                         "health to be SERVING again once the loop runs")
        # the loop really works again: the dispatcher's cursor moves past a new task's events
        # (read, or passed unread when nobody listens: services/ingest/webhooks.py)
        channel = create_channel(f"127.0.0.1:{s.ingest_grpc_port}")
        try:
            accepted = await IngestServiceStub(channel).SubmitTask(
                SubmitTaskRequest(submission=submission("loops")))
        finally:
            await channel.close()
        await eventually(lambda: db.fetchval(
            f"SELECT c.txid >= h.txid::text::bigint OR NULL FROM {TABLE} c, "
            "task_status_history h WHERE h.task_id = $1::uuid AND h.seq = 1", accepted.task_id),
            "the webhook dispatcher to move past the new task's events")
        assert "background loop webhooks is running again" in process.log()
    finally:
        process.stop()
    # only the broken loop failed; the shutdown's cancellations are not failures
    assert set(re.findall(r"background loop (\S+) failed", process.log())) == {"webhooks"}
    assert "ingest stopped" in process.log()


async def test_a_loop_failing_past_the_limit_takes_the_process_down(
        settings: Settings, table_restored: asyncpg.Connection,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    db = table_restored
    s = fast(settings, background_failure_limit=3)
    process = IngestProcess(s, tmp_path_factory.mktemp("limited")).start()
    try:
        await db.execute(f"ALTER TABLE {TABLE} RENAME TO {AWAY}")

        async def exited() -> int | None:
            return process.process.returncode
        assert await eventually(exited, "ingest to exit", 90) == EXIT_BACKGROUND_FAILED
        log = process.log()
        assert "background loop webhooks failed (3 in a row)" in log
        assert f"stopping the process with exit status {EXIT_BACKGROUND_FAILED}" in log
        assert "ingest stopped" in log  # a graceful stop: consumers committed, clients closed
    finally:
        process.stop()


async def _is(status: Awaitable[int], wanted: int) -> bool | None:
    return await status == wanted or None


async def _above(value: Awaitable[float], floor: float) -> float | None:
    got = await value
    return got if got >= floor else None
