"""Webhook deliveries do not wait on each other: a receiver slow to answer holds only its own.

An outside helpdesk integrator watched a healthy receiver (another tenant's) get its events
seconds late while one receiver was slow: each delivery round waited for its slowest POST
before the next round started. Here one receiver holds its request until the test lets it go
(the module's ingest waits up to a minute for an answer); another tenant's receiver must get
its delivery while the first is still held, its attempt not yet recorded.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from aiohttp import web

from switchyard import Settings
from switchyard.stack import free_port
from switchyard.v1 import IngestServiceStub, RegisterWebhookRequest, SubmitTaskRequest
from tests.ingest.helpers import submission
from tests.polling import eventually

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ingest_process")]


@pytest.fixture(scope="module")
def settings(settings: Settings) -> Settings:
    """A long answer timeout: the held request stays in flight while the test looks."""
    return settings.replace(webhook_timeout_s=60.0, webhook_backoff_s=0.2)


class Receivers:
    """Two loopback receivers: ``/slow`` holds each request until ``release`` is set."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.holding = asyncio.Event()
        self.fast: list[dict[str, object]] = []
        self.slow: list[dict[str, object]] = []

    async def slow_handler(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        self.holding.set()
        await asyncio.wait_for(self.release.wait(), 120)
        self.slow.append(body)
        return web.Response(status=204)

    async def fast_handler(self, request: web.Request) -> web.Response:
        self.fast.append(json.loads(await request.read()))
        return web.Response(status=204)


@pytest.fixture
async def receivers() -> AsyncIterator[tuple[Receivers, str]]:
    hooks = Receivers()
    app = web.Application()
    app.router.add_post("/slow", hooks.slow_handler)
    app.router.add_post("/fast", hooks.fast_handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield hooks, f"http://127.0.0.1:{port}"
    finally:
        hooks.release.set()
        await runner.cleanup()


async def test_a_slow_receiver_holds_only_its_own_deliveries(
        ingest: IngestServiceStub, db: asyncpg.Connection,
        receivers: tuple[Receivers, str]) -> None:
    hooks, base = receivers
    slow_tenant, fast_tenant = f"slow{uuid.uuid4().hex[:6]}", f"fast{uuid.uuid4().hex[:6]}"
    await ingest.RegisterWebhook(RegisterWebhookRequest(tenant_id=slow_tenant,
                                                        url=f"{base}/slow"))
    await ingest.RegisterWebhook(RegisterWebhookRequest(tenant_id=fast_tenant,
                                                        url=f"{base}/fast"))
    slow_task = (await ingest.SubmitTask(SubmitTaskRequest(
        submission=submission(slow_tenant)))).task_id
    await asyncio.wait_for(hooks.holding.wait(), 60)   # its delivery is in flight, held

    fast_task = (await ingest.SubmitTask(SubmitTaskRequest(
        submission=submission(fast_tenant)))).task_id

    async def fast_delivered() -> bool:
        return any(b["event"]["task_id"] == fast_task for b in hooks.fast)  # type: ignore
    await eventually(fast_delivered, "the other tenant's delivery", 50)
    # ... while the slow receiver still holds its request: that attempt is not over
    assert not hooks.release.is_set() and not hooks.slow
    held = await db.fetchrow("SELECT state, attempts, last_error FROM webhook_deliveries "
                             "WHERE task_id = $1", uuid.UUID(slow_task))
    assert (held["state"], held["attempts"], held["last_error"]) == ("pending", 1, ""), held

    hooks.release.set()

    async def slow_delivered() -> bool:
        row = await db.fetchrow("SELECT state FROM webhook_deliveries WHERE task_id = $1",
                                uuid.UUID(slow_task))
        return row is not None and row["state"] == "delivered"
    await eventually(slow_delivered, "the held delivery, once answered", 60)
