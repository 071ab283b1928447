"""The reviewer is the credentials, not a typed name; every queue item is reachable.

On the real review service (a process) with API keys: claims, verdicts, ``review_verdicts``
and the audit log record the caller's key id; a ``reviewer_id`` naming someone else is
refused on gRPC (PERMISSION_DENIED) and in the console (403). With more items than one page
(230 > the console's 200), ``ListQueue`` page tokens, the console's "Show more" and
``switchyard review list --limit 0`` each reach every one.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import grpc
import pytest
from playwright.async_api import expect

from switchyard import Settings
from switchyard.messaging import ESCALATIONS, Producer
from switchyard.rpc import create_channel
from switchyard.storage import create_pool
from switchyard.v1 import (
    ClaimRequest,
    ListQueueRequest,
    ReleaseRequest,
    ReviewServiceStub,
    ReviewVerdict,
    SubmitVerdictRequest,
    Verdict,
)
from tests.polling import eventually
from tests.review.helpers import artifact, escalation, insert_tasks

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("review_process")]
# key ids follow the order: rev-acme is key-0, rev-two key-1
KEYS = "rev-acme:acme:reviewer,rev-two:acme:reviewer"
COUNT = 230   # more than one console page (200)


@pytest.fixture(scope="module")
def settings(settings: Settings) -> Settings:
    return settings.replace(api_keys=KEYS, client_api_key="rev-acme", review_tenant_rate=0.0,
                            review_queue_overrides="bulk:1000:1000:0,churn:1000:1000:0",
                            review_admission_interval_ms=50.0)


@pytest.fixture(scope="module")
async def db(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(settings)
    yield pool
    await pool.close()


async def pending_items(settings: Settings, db: asyncpg.Pool, queue: str,
                        count: int) -> list[str]:
    """``count`` new items escalated to ``queue``, once all are PENDING (the queue's only)."""
    async with db.acquire() as conn:
        tasks = await insert_tasks(conn, "acme", count)
    producer = Producer(settings)
    await producer.start()
    try:
        for task in tasks:
            esc = escalation(task, queue, 2)
            await producer.send(ESCALATIONS, esc.task_id, esc)
    finally:
        await producer.stop()

    async def pending() -> list[str] | None:
        rows = await db.fetch("SELECT item_id::text FROM review_items WHERE queue = $1 "
                              "AND state = 'PENDING'", queue)
        return [r["item_id"] for r in rows] if len(rows) == count else None
    return await eventually(pending, f"{count} pending items in {queue}", 180, 0.3)


@pytest.fixture(scope="module")
async def item_ids(settings: Settings, db: asyncpg.Pool) -> list[str]:
    """COUNT items PENDING in the 'bulk' queue."""
    return await pending_items(settings, db, "bulk", COUNT)


@pytest.fixture
async def stubs(settings: Settings) -> AsyncIterator[dict[str, ReviewServiceStub]]:
    target = f"127.0.0.1:{settings.review_grpc_port}"
    channels = {key: create_channel(target, key) for key in ("rev-acme", "rev-two")}
    yield {key: ReviewServiceStub(channel) for key, channel in channels.items()}
    for channel in channels.values():
        await channel.close()


async def test_list_queue_page_tokens_reach_every_item(
        item_ids: list[str], stubs: dict[str, ReviewServiceStub]) -> None:
    seen: list[str] = []
    request = ListQueueRequest(queue="bulk", page_size=100)
    while True:
        page = await stubs["rev-acme"].ListQueue(request)
        seen += [i.item_id for i in page.items]
        if not page.next_page_token:
            break
        request.page_token = page.next_page_token
    assert len(seen) == len(set(seen)) == COUNT and set(seen) == set(item_ids)


async def test_items_resolved_between_pages_move_no_other_item_out_of_reach(
        settings: Settings, db: asyncpg.Pool, stubs: dict[str, ReviewServiceStub]) -> None:
    """Another reviewer decides items of the pages already read while one pages through: the
    token says where the last page ended, so every item still waiting is reached."""
    everything = set(await pending_items(settings, db, "churn", 9))
    seen: list[str] = []
    decided: set[str] = set()
    request = ListQueueRequest(queue="churn", page_size=3)
    while True:
        page = await stubs["rev-acme"].ListQueue(request)
        seen += [i.item_id for i in page.items]
        if not page.next_page_token:
            break
        for item in page.items[:2]:   # the other reviewer takes two of the page just read
            await stubs["rev-two"].Claim(ClaimRequest(item_id=item.item_id))
            await stubs["rev-two"].SubmitVerdict(SubmitVerdictRequest(verdict=ReviewVerdict(
                item_id=item.item_id, verdict=Verdict.VERDICT_APPROVE)))
            decided.add(item.item_id)
        request.page_token = page.next_page_token
    assert len(seen) == len(set(seen)) and set(seen) == everything, (
        sorted(everything - set(seen)), sorted(decided))
    assert decided
    for bad in ("3", "bm90IGpzb24", "W10", "x" * 600):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stubs["rev-acme"].ListQueue(ListQueueRequest(queue="churn", page_token=bad))
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, bad


async def test_the_command_line_follows_every_page(settings: Settings,
                                                   item_ids: list[str]) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "switchyard", "review", "list", "--queue", "bulk", "--limit", "0",
        "--json", env={**os.environ, **settings.to_env()}, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    out, _ = await process.communicate()
    assert process.returncode == 0, out.decode()
    listed = [json.loads(line)["item_id"] for line in out.decode().splitlines()]
    assert sorted(listed) == sorted(item_ids)


async def test_the_console_shows_more_than_one_page(settings: Settings, item_ids: list[str],
                                                    browser: object) -> None:
    page = await browser.new_page(viewport={"width": 1280, "height": 900})  # type: ignore
    expect.set_options(timeout=30_000)
    try:
        await page.goto(f"http://127.0.0.1:{settings.review_web_port}/")
        await page.fill("#api-key", "rev-acme")
        await page.click("#login-form button[type=submit]")
        await expect(page.locator("#who")).to_contain_text("key-0")
        await page.fill("#f-queue", "bulk")
        rows = page.locator("#queue tbody tr")
        await expect(rows).to_have_count(200)
        more = page.locator("#more")
        await expect(more).to_be_visible()
        await more.focus()
        await page.keyboard.press("Enter")   # keyboard reachable
        await expect(rows).to_have_count(COUNT)
        await expect(more).to_be_hidden()
        shown = await rows.evaluate_all("rows => rows.map(r => r.dataset.itemId)")
        assert sorted(shown) == sorted(item_ids)
        await page.screenshot(path=str(artifact("review-console-more.png")), full_page=False)
    finally:
        await page.close()


async def test_the_reviewer_is_the_api_key_on_grpc(
        db: asyncpg.Pool, item_ids: list[str], stubs: dict[str, ReviewServiceStub]) -> None:
    item_id = item_ids[0]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stubs["rev-acme"].Claim(ClaimRequest(item_id=item_id, reviewer_id="mallory"))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "key-0" in (caught.value.details() or "")

    claimed = await stubs["rev-acme"].Claim(ClaimRequest(item_id=item_id))   # empty: me
    assert claimed.item.claimed_by == "key-0"
    again = await stubs["rev-acme"].Claim(ClaimRequest(item_id=item_id, reviewer_id="key-0"))
    assert again.item.claimed_by == "key-0"
    with pytest.raises(grpc.aio.AioRpcError) as caught:   # another key is another reviewer
        await stubs["rev-two"].Claim(ClaimRequest(item_id=item_id))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "claimed by key-0" in (caught.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as caught:   # nor can it pose as key-0
        await stubs["rev-two"].SubmitVerdict(SubmitVerdictRequest(verdict=ReviewVerdict(
            item_id=item_id, reviewer_id="key-0", verdict=Verdict.VERDICT_APPROVE)))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED

    done = await stubs["rev-acme"].SubmitVerdict(SubmitVerdictRequest(verdict=ReviewVerdict(
        item_id=item_id, verdict=Verdict.VERDICT_APPROVE, reason="checked")))
    assert done.item.resolution == "verdict:approve"
    row = await db.fetchrow("SELECT reviewer_id, verdict_pb FROM review_verdicts "
                            "WHERE item_id = $1", uuid.UUID(item_id))
    assert row["reviewer_id"] == "key-0"
    assert ReviewVerdict.FromString(row["verdict_pb"]).reviewer_id == "key-0"
    actor = await db.fetchval("SELECT actor FROM audit_log WHERE action = 'review.verdict' "
                              "AND detail->>'item_id' = $1", item_id)
    assert actor == "reviewer:key-0"


async def test_the_reviewer_is_the_api_key_in_the_console(
        settings: Settings, item_ids: list[str], stubs: dict[str, ReviewServiceStub]) -> None:
    item_id = item_ids[1]
    base = f"http://127.0.0.1:{settings.review_web_port}"

    async def call(method: str, path: str, key: str, body: object = None
                   ) -> tuple[int, dict[str, object]]:
        async with aiohttp.ClientSession() as session, session.request(
                method, base + path, headers={"Authorization": f"Bearer {key}"},
                json=body) as response:
            return response.status, await response.json()

    status, session = await call("GET", "/api/session", "rev-two")
    assert (status, session["reviewer"]) == (200, "key-1")
    status, body = await call("POST", f"/api/items/{item_id}/claim", "rev-two",
                              {"reviewer_id": "ana"})
    assert status == 403 and "key-1" in str(body["error"])
    status, body = await call("POST", f"/api/items/{item_id}/claim", "rev-two", {})
    assert status == 200 and body["item"]["claimed_by"] == "key-1"  # type: ignore[index]
    status, body = await call("POST", f"/api/items/{item_id}/release", "rev-acme", {})
    assert status == 409 and "claimed by key-1" in str(body["error"])
    await stubs["rev-two"].Release(ReleaseRequest(item_id=item_id))
