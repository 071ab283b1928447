"""The review service as a real process, fed escalations through the real broker.

Covers the issue's first two "done when" items (an escalation storm admitted at the
configured rate in priority order with every item accounted for; concurrent claims with one
winner and expired leases reclaimable), authorization on gRPC and on the console's API, and
the console's item view driven in a real browser.
"""

from __future__ import annotations

import asyncio
import io
import json
import math
import re
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone

import aiohttp
import asyncpg
import grpc
import pytest
from axe_playwright_python.async_playwright import Axe
from google.protobuf.duration_pb2 import Duration
from PIL import Image
from playwright.async_api import expect

from services.review.pages import MASK_COLOUR
from switchyard import Settings
from switchyard.documents import blob_store_for, find_words, lines, provenance_of, read_text_layer
from switchyard.messaging import ESCALATIONS, Producer
from switchyard.rpc import create_channel, field_violations
from switchyard.stack import EmbeddedStack, ManagedProcess
from switchyard.storage import create_pool
from switchyard.v1 import (
    BoundingBox,
    ClaimRequest,
    ClaimResponse,
    Decision,
    DecisionSource,
    Document,
    DocumentLayout,
    Escalation,
    GetItemRequest,
    ListQueueRequest,
    RenewRequest,
    ReleaseRequest,
    ReviewServiceStub,
    ReviewState,
    ReviewVerdict,
    SubmitVerdictRequest,
    Verdict,
)
from tests.polling import eventually
from tests.review.helpers import artifact, escalation, insert_tasks, scanned_invoice

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("review_process")]
# The reviewer is the key (its id, key-<position>): rev-acme is key-0, rev-late key-4,
# rev-c0..rev-c7 (key-5..key-12) are eight reviewers racing for one item, adm-acme (key-13)
# is acme's admin (a review lead).
KEY_NAMES = ["rev-acme", "rev-other", "sub-acme", "aud-acme", "rev-late",
             *(f"rev-c{i}" for i in range(8)), "adm-acme"]
_NOT_ACME_REVIEWERS = {"rev-other": "other:reviewer", "sub-acme": "acme:submitter",
                      "aud-acme": "acme:auditor", "adm-acme": "acme:admin"}
KEYS = ",".join(f"{name}:{_NOT_ACME_REVIEWERS.get(name, 'acme:reviewer')}"
                for name in KEY_NAMES)
KEY_IDS = {name: f"key-{index}" for index, name in enumerate(KEY_NAMES)}
STORM_RATE, STORM_BURST = 5.0, 10
AXE_RULES = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa"]}}


@pytest.fixture(scope="module")
def settings(settings: Settings) -> Settings:
    """The module's isolated settings plus review policies: a throttled 'storm' queue and an
    all but paused one; tenants unthrottled so each test's queue is the only limit."""
    return settings.replace(
        api_keys=KEYS, client_api_key="rev-acme", review_tenant_rate=0.0,
        review_queue_overrides=f"storm:{STORM_RATE}:{STORM_BURST}:0,paused:0.001:1:0",
        review_admission_interval_ms=50.0, review_sla_interval_s=0.5)


@pytest.fixture(scope="module")
async def db(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(settings)
    yield pool
    await pool.close()


@pytest.fixture(scope="module")
async def producer(settings: Settings) -> AsyncIterator[Producer]:
    producer = Producer(settings)
    await producer.start()
    yield producer
    await producer.stop()


@pytest.fixture
async def channels(settings: Settings) -> AsyncIterator[dict[str, ReviewServiceStub]]:
    """A ReviewService stub per API key ('none': no key at all)."""
    target = f"127.0.0.1:{settings.review_grpc_port}"
    opened = {key: create_channel(target, None if key == "none" else key)
              for key in (*KEY_NAMES, "none")}
    yield {key: ReviewServiceStub(channel) for key, channel in opened.items()}
    for channel in opened.values():
        await channel.close()


async def escalate(db: asyncpg.Pool, producer: Producer, tenant: str, queue: str,
                   priority: int, **kwargs: object) -> Escalation:
    async with db.acquire() as conn:
        (task,) = await insert_tasks(conn, tenant, 1, **({"text": kwargs.pop("text")}
                                                          if "text" in kwargs else {}))
    esc = escalation(task, queue, priority, **kwargs)  # type: ignore[arg-type]
    await producer.send(ESCALATIONS, esc.task_id, esc)
    return esc


async def item_of(db: asyncpg.Pool, esc: Escalation, state: str = "PENDING") -> str:
    async def find() -> str | None:
        return await db.fetchval("SELECT item_id::text FROM review_items WHERE escalation_id = "
                                 "$1 AND state = $2", uuid.UUID(esc.escalation_id), state)
    return await eventually(find, f"review item of {esc.task_id} in state {state}")


# -- done when: a storm is admitted at the configured rate, in priority order -------------

async def test_storm_is_admitted_at_the_configured_rate_in_priority_order(
        settings: Settings, db: asyncpg.Pool, producer: Producer) -> None:
    sent = 100
    async with db.acquire() as conn:
        tasks = await insert_tasks(conn, "acme", sent)
    # Least urgent first, so the order of admission is not the order of arrival.
    priorities = sorted((i % 4 for i in range(sent)), reverse=True)
    storm = [escalation(task, "storm", p) for task, p in zip(tasks, priorities)]
    interval = 1 / (10 * STORM_RATE)  # ten times the admission rate
    started = time.monotonic()
    for index, esc in enumerate(storm):
        await producer.send(ESCALATIONS, esc.task_id, esc)
        await asyncio.sleep(max(0.0, started + (index + 1) * interval - time.monotonic()))

    async def count(where: str) -> int:
        return await db.fetchval(f"SELECT count(*) FROM review_items WHERE queue = 'storm' "
                                 f"AND {where}")
    await eventually(lambda: _ge(count("true"), sent), "every escalation stored", 120)
    target = STORM_BURST + 35  # ~7 s of steady admission at 5/s after the burst
    await eventually(lambda: _ge(count("admitted_at IS NOT NULL"), target),
                     f"{target} admissions", 180, 0.5)
    metrics = await scrape(settings.review_metrics_port)
    rows = await db.fetch("SELECT item_id, priority, state, created_at, admitted_at "
                          "FROM review_items WHERE queue = 'storm'")

    admitted = [r for r in rows if r["admitted_at"] is not None]
    backlog = [r for r in rows if r["state"] == "BACKLOGGED"]
    assert len(admitted) + len(backlog) == sent == len(rows)  # every item accounted for
    assert {r["state"] for r in admitted} == {"PENDING"} and backlog

    times = sorted(r["admitted_at"] for r in admitted)[STORM_BURST:]  # after the burst
    rate = (len(times) - 1) / (times[-1] - times[0]).total_seconds()
    assert rate == pytest.approx(STORM_RATE, rel=0.10), f"admitted at {rate:.2f}/s"

    # Once the whole storm is in the backlog, admission follows priority, then age, and
    # nothing admitted outranks what is still waiting.
    landed = max(r["created_at"] for r in rows) + timedelta(seconds=0.5)
    after = sorted((r for r in admitted if r["admitted_at"] > landed),
                   key=lambda r: (r["admitted_at"], r["priority"], r["created_at"]))
    order = [(r["priority"], r["created_at"]) for r in after]
    assert len(order) >= 10 and order == sorted(order)
    assert order[-1] <= min((r["priority"], r["created_at"]) for r in backlog)
    assert order[0][0] == 0  # the P0s, sent last, went first
    print(f"storm: {sent} sent at {10 * STORM_RATE:.0f}/s, {len(admitted)} admitted, "
          f"{len(backlog)} in backlog, steady admission {rate:.2f}/s")

    assert metrics["switchyard_review_backlog_depth"]["storm"] > 0
    assert metrics["switchyard_review_backlog_oldest_age_seconds"]["storm"] > 0
    assert len(admitted) >= metrics["switchyard_review_admitted_total"]["storm"] >= target


async def _ge(value: asyncio.Future[int] | object, minimum: int) -> bool:
    return await value >= minimum  # type: ignore[misc, operator]


async def scrape(port: int) -> dict[str, dict[str, float]]:
    """Prometheus text -> {metric: {queue: value summed over other labels}}."""
    async with aiohttp.ClientSession() as session, \
            session.get(f"http://127.0.0.1:{port}/metrics") as response:
        text = await response.text()
    out: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        if not line.startswith("switchyard_review_") or 'queue="' not in line:
            continue
        name, rest = line.split("{", 1)
        queue = rest.split('queue="', 1)[1].split('"', 1)[0]
        out.setdefault(name, {}).setdefault(queue, 0.0)
        out[name][queue] += float(line.rsplit(" ", 1)[1])
    return out


# -- done when: two claims, one winner; an expired lease is reclaimable -------------------

async def test_concurrent_claims_have_one_winner_and_an_expired_lease_returns(
        db: asyncpg.Pool, producer: Producer, channels: dict[str, ReviewServiceStub]) -> None:
    review = channels["rev-acme"]
    esc = await escalate(db, producer, "acme", "claims", 1)
    item_id = await item_of(db, esc)
    reviewers = [f"rev-c{i}" for i in range(8)]
    results = await asyncio.gather(*(channels[r].Claim(ClaimRequest(
        item_id=item_id, lease=Duration(seconds=2))) for r in reviewers),
        return_exceptions=True)
    winners = [r for r in results if isinstance(r, ClaimResponse)]
    losers = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(winners) == 1 and len(losers) == len(reviewers) - 1
    holder = winners[0].item.claimed_by
    assert holder in {KEY_IDS[r] for r in reviewers}
    holder_key = next(r for r in reviewers if KEY_IDS[r] == holder)
    assert all(e.code() == grpc.StatusCode.FAILED_PRECONDITION
               and f"claimed by {holder}" in (e.details() or "") for e in losers)

    async def lease_ran_out() -> bool:
        item = (await review.GetItem(GetItemRequest(item_id=item_id))).item
        return item.state == ReviewState.REVIEW_STATE_PENDING and not item.claimed_by
    await eventually(lease_ran_out, "the lease to expire", 60, 0.2)
    late = await channels["rev-late"].Claim(ClaimRequest(item_id=item_id))
    assert late.item.claimed_by == KEY_IDS["rev-late"]

    stale_key = channels[holder_key]
    for stale in (stale_key.Renew(RenewRequest(item_id=item_id)),
                  stale_key.SubmitVerdict(SubmitVerdictRequest(verdict=ReviewVerdict(
                      item_id=item_id, verdict=Verdict.VERDICT_APPROVE)))):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stale
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    done = await channels["rev-late"].SubmitVerdict(SubmitVerdictRequest(verdict=ReviewVerdict(
        item_id=item_id, verdict=Verdict.VERDICT_REJECT,
        reason="duplicate of INV-1")))
    assert done.item.state == ReviewState.REVIEW_STATE_RESOLVED
    assert done.item.resolution == "verdict:reject"
    decision = Decision.FromString(await db.fetchval(
        "SELECT decision FROM review_decisions WHERE decision_id = $1",
        uuid.UUID(done.decision_id)))
    assert (decision.source, decision.reviewer_id) == (DecisionSource.DECISION_SOURCE_HUMAN,
                                                        KEY_IDS["rev-late"])
    audit = await db.fetchval("SELECT detail::text FROM audit_log WHERE task_id = $1 AND "
                              "action = 'review.verdict'", uuid.UUID(esc.task_id))
    assert '"override": true' in audit and "duplicate" not in audit  # reason only hashed


async def test_backlogged_items_are_visible_but_not_claimable(
        db: asyncpg.Pool, producer: Producer, channels: dict[str, ReviewServiceStub]) -> None:
    review = channels["rev-acme"]
    first = await escalate(db, producer, "acme", "paused", 2)
    await item_of(db, first)  # the paused queue's single token
    second = await escalate(db, producer, "acme", "paused", 2)
    waiting = await item_of(db, second, "BACKLOGGED")
    listed = await review.ListQueue(ListQueueRequest(
        queue="paused", states=[ReviewState.REVIEW_STATE_BACKLOGGED]))
    assert [i.item_id for i in listed.items] == [waiting]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await review.Claim(ClaimRequest(item_id=waiting))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "waiting for admission" in (caught.value.details() or "")


async def test_unknown_enum_values_a_bad_page_size_and_another_tasks_id_are_refused(
        db: asyncpg.Pool, producer: Producer, channels: dict[str, ReviewServiceStub]) -> None:
    """A client built against another contract, or one that mixed up its items, is told
    which field is wrong (INVALID_ARGUMENT), never answered with an internal error or
    obeyed."""
    review = channels["rev-acme"]
    for request, field in ((ListQueueRequest(states=[42]), "states[0]"),
                           (ListQueueRequest(reasons=[1, 42]), "reasons[1]"),
                           (ListQueueRequest(priorities=[42]), "priorities[0]"),
                           (ListQueueRequest(page_size=1000), "page_size"),
                           (ListQueueRequest(page_size=-1), "page_size")):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await review.ListQueue(request)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, request
        assert field in field_violations(refused.value), field_violations(refused.value)
    esc = await escalate(db, producer, "acme", "default", 2)
    item_id = await item_of(db, esc)
    await review.Claim(ClaimRequest(item_id=item_id))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await review.SubmitVerdict(SubmitVerdictRequest(verdict=ReviewVerdict(
            item_id=item_id, verdict=9)))  # type: ignore[arg-type]
    assert field_violations(refused.value)["verdict.verdict"] == "unknown Verdict value 9"
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await review.SubmitVerdict(SubmitVerdictRequest(verdict=ReviewVerdict(
            item_id=item_id, task_id=str(uuid.uuid4()), verdict=Verdict.VERDICT_APPROVE)))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert esc.task_id in field_violations(refused.value)["verdict.task_id"]
    done = await review.SubmitVerdict(SubmitVerdictRequest(verdict=ReviewVerdict(
        item_id=item_id, task_id=esc.task_id, verdict=Verdict.VERDICT_APPROVE)))
    assert done.decision_id


# -- authorization, the same on gRPC and in the console -----------------------------------

async def test_a_lead_takes_back_an_item_a_reviewer_left_claimed(
        settings: Settings, db: asyncpg.Pool, producer: Producer,
        channels: dict[str, ReviewServiceStub], browser: object) -> None:
    """A reviewer went home with an item claimed (an open console renews the lease for as
    long as it is open): the tenant's admin releases it back to the queue, audited with both
    names; another reviewer still may not, and the former holder's verdict is refused."""
    esc = await escalate(db, producer, "acme", "takeback", 2)
    item_id = await item_of(db, esc)
    await channels["rev-acme"].Claim(ClaimRequest(item_id=item_id,
                                                   lease=Duration(seconds=3600)))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await channels["rev-late"].Release(ReleaseRequest(item_id=item_id))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "claimed by key-0" in caught.value.details()

    released = (await channels["adm-acme"].Release(ReleaseRequest(item_id=item_id))).item
    assert (released.state, released.claimed_by) == (ReviewState.REVIEW_STATE_PENDING, "")
    detail = await db.fetchval(
        "SELECT detail FROM audit_log WHERE action = 'review.taken_back' AND task_id = $1",
        uuid.UUID(esc.task_id))
    detail = json.loads(detail) if isinstance(detail, str) else detail
    assert detail == {"item_id": item_id, "from": "key-0"}
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await channels["rev-acme"].SubmitVerdict(SubmitVerdictRequest(verdict=ReviewVerdict(
            item_id=item_id, verdict=Verdict.VERDICT_APPROVE)))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    # anyone may claim it now
    assert (await channels["rev-late"].Claim(ClaimRequest(item_id=item_id))).item.claimed_by \
        == "key-4"

    # the same from the console: the lead opens the item and releases it
    queue = f"takeback-{uuid.uuid4().hex[:6]}"
    second = await item_of(db, await escalate(db, producer, "acme", queue, 2))
    await channels["rev-acme"].Claim(ClaimRequest(item_id=second))
    page = await browser.new_page(viewport={"width": 1280, "height": 900})  # type: ignore
    expect.set_options(timeout=30_000)
    try:
        await page.goto(f"http://127.0.0.1:{settings.review_web_port}/")
        await page.fill("#api-key", "adm-acme")
        await page.click("#login-form button[type=submit]")
        await page.fill("#f-queue", queue)
        await expect(page.locator("#queue tbody tr")).to_have_count(1)  # filter applied
        await expect(page.locator(f'#queue tbody tr[data-item-id="{second}"]')) \
            .to_contain_text("claimed by key-0")
        await page.keyboard.press("Escape")
        await page.keyboard.press("Enter")
        await expect(page.locator("#i-state")).to_have_text("claimed by key-0")  # it is open
        await expect(page.locator("#release")).to_be_enabled()
        await page.keyboard.press("u")
        await expect(page.locator("#status")).to_have_text(
            "Taken back from key-0; back in the queue.")
        await expect(page.locator("#i-state")).to_have_text("pending")
    finally:
        await page.close()


async def test_roles_and_tenants_are_enforced_on_grpc_and_http(
        settings: Settings, db: asyncpg.Pool, producer: Producer,
        channels: dict[str, ReviewServiceStub]) -> None:
    esc = await escalate(db, producer, "acme", "authz", 2)
    item_id = await item_of(db, esc)
    expectations = {
        "none": grpc.StatusCode.UNAUTHENTICATED, "sub-acme": grpc.StatusCode.PERMISSION_DENIED,
        "rev-other": grpc.StatusCode.NOT_FOUND,
    }
    for key, code in expectations.items():
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await channels[key].GetItem(GetItemRequest(item_id=item_id))
        assert caught.value.code() == code, key
    assert not (await channels["rev-other"].ListQueue(ListQueueRequest(
        queue="authz", tenant_id="acme"))).items
    assert (await channels["aud-acme"].GetItem(GetItemRequest(item_id=item_id))).item.item_id
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await channels["aud-acme"].Claim(ClaimRequest(item_id=item_id, reviewer_id="aud"))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await channels["rev-acme"].SubmitVerdict(SubmitVerdictRequest(verdict=ReviewVerdict(
            item_id=item_id, verdict=Verdict.VERDICT_MODIFY)))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # no reviewer_id needed: with API keys the key is the reviewer
    assert set(field_violations(caught.value)) == {"verdict.modified_fields"}
    # a reviewer names the document's real type only when rejecting, and only as a type name
    for verdict, document_type in ((Verdict.VERDICT_APPROVE, "receipt"),
                                   (Verdict.VERDICT_REJECT, "Not A Type!"),
                                   (Verdict.VERDICT_REJECT, "invoice")):  # the proposed type
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await channels["rev-acme"].SubmitVerdict(SubmitVerdictRequest(verdict=ReviewVerdict(
                item_id=item_id, verdict=verdict, reason="r", document_type=document_type)))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, document_type
        assert set(field_violations(caught.value)) == {"verdict.document_type"}
    # a refusal says why: a REJECT without a reason (or with blanks only) is refused
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await channels["rev-acme"].SubmitVerdict(SubmitVerdictRequest(verdict=ReviewVerdict(
            item_id=item_id, verdict=Verdict.VERDICT_REJECT, reason="  ")))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(field_violations(caught.value)) == {"verdict.reason"}

    base = f"http://127.0.0.1:{settings.review_web_port}"

    async def call(method: str, path: str, key: str | None, body: object = None
                   ) -> tuple[int, dict[str, object]]:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        async with aiohttp.ClientSession() as session, session.request(
                method, base + path, headers=headers, json=body) as response:
            return response.status, await response.json()

    assert (await call("GET", "/api/items", None))[0] == 401
    assert (await call("GET", "/api/items", "nonsense"))[0] == 401
    assert (await call("GET", "/api/items", "sub-acme"))[0] == 403
    assert (await call("GET", f"/api/items/{item_id}", "rev-other"))[0] == 404
    assert (await call("POST", f"/api/items/{item_id}/claim", "aud-acme",
                       {"reviewer_id": "aud"}))[0] == 403
    status, body = await call("GET", "/api/items?queue=authz", "rev-acme")
    assert status == 200 and [i["item_id"] for i in body["items"]] == [item_id]  # type: ignore
    status, body = await call("POST", f"/api/items/{item_id}/verdict", "rev-acme",
                              {"verdict": "reject", "document_type": 7})
    assert status == 400 and "document_type" in body["field_violations"]  # type: ignore
    status, body = await call("GET", "/api/items?priority=P7", "rev-acme")
    assert status == 400 and "priority" in body["field_violations"]  # type: ignore[operator]
    status, body = await call("POST", f"/api/items/{item_id}/claim", "rev-acme",
                              {"reviewer_id": "ana"})   # a name that is not the key
    assert status == 403 and "key-0" in str(body["error"])
    status, body = await call("POST", f"/api/items/{item_id}/claim", "rev-acme", {})
    assert status == 200 and body["item"]["claimed_by"] == "key-0"  # type: ignore[index]
    status, body = await call("POST", f"/api/items/{item_id}/claim", "rev-late", {})
    assert status == 409 and "claimed by key-0" in str(body["error"])
    async with aiohttp.ClientSession() as session, session.get(base + "/") as page:
        assert page.status == 200
        assert "script-src 'self'" in page.headers["Content-Security-Policy"]


# -- the console in a real browser ------------------------------------------------------------

async def test_console_shows_the_item_and_modifies_it_from_the_keyboard(
        settings: Settings, db: asyncpg.Pool, producer: Producer, browser: object) -> None:
    explanation = "Total does not match the line items; extractor unsure about the total."
    esc = await escalate(
        db, producer, "acme", "console", 1, sla=datetime.now(timezone.utc) + timedelta(hours=2),
        fields=[("invoice_number", "INV-77", 0.97), ("total", "120.00", 0.42)],
        explanation=explanation,
        text="Invoice INV-77\nBill to: jane.doe@example.com\nTotal: 120.00 EUR")
    item_id = await item_of(db, esc)
    page = await browser.new_page(viewport={"width": 1280, "height": 900})  # type: ignore
    expect.set_options(timeout=30_000)
    try:
        await page.goto(f"http://127.0.0.1:{settings.review_web_port}/")
        await page.fill("#api-key", "rev-acme")
        await page.fill("#reviewer", "rita")  # ignored: the key is the reviewer
        await page.click("#login-form button[type=submit]")
        await page.fill("#f-queue", "console")
        await expect(page.locator("#queue tbody tr")).to_have_count(1)  # filter applied
        row = page.locator(f'#queue tbody tr[data-item-id="{item_id}"]')
        await expect(row).to_contain_text("P1")
        await expect(row.locator(".sla")).to_contain_text("left")
        await page.keyboard.press("Escape")  # leave the filter box; shortcuts apply again
        await page.keyboard.press("Enter")   # open the selected (only) item

        await expect(page.locator("#i-document")).to_contain_text("[EMAIL REDACTED]")
        assert "jane.doe" not in await page.inner_text("#i-document")
        await expect(page.locator("#i-explanation")).to_have_text(explanation)
        total = page.locator('#i-fields tr[data-field="total"]')
        await expect(total).to_contain_text("42.0%")
        await expect(page.locator('#i-fields tr[data-field="invoice_number"]')) \
            .to_contain_text("INV-77")
        await expect(page.locator("#i-sla")).to_contain_text("SLA: 1h")

        await page.keyboard.press("c")
        await expect(page.locator("#status")).to_have_text("Claimed by key-0.")
        await expect(page.locator("#i-state")).to_have_text("claimed by key-0")
        await total.locator(".field-edit").fill("121.00")
        await page.keyboard.press("Escape")  # leave the box: m approves with the edits
        await page.keyboard.press("m")
        await expect(page.locator("#status")).to_contain_text("Approved with edits")
        await expect(page.locator("#i-state")).to_contain_text("verdict:modify")
        await page.screenshot(path=str(artifact("review-console-item.png")), full_page=True)
    finally:
        await page.close()

    verdict = await db.fetchrow("SELECT reviewer_id, verdict FROM review_verdicts "
                                "WHERE item_id = $1::uuid", item_id)
    assert dict(verdict) == {"reviewer_id": "key-0", "verdict": "MODIFY"}
    decision = Decision.FromString(await db.fetchval(
        "SELECT decision FROM review_decisions WHERE task_id = $1 AND source = 'HUMAN'",
        uuid.UUID(esc.task_id)))
    fields = {f.name: (f.value, f.confidence) for f in decision.fields}
    assert fields == {"invoice_number": ("INV-77", 0.97), "total": ("121.00", 1.0)}
    assert dict(decision.extracted_fields) == {"invoice_number": "INV-77", "total": "121.00"}


async def test_the_console_marks_an_item_that_breached_its_sla_late(
        settings: Settings, db: asyncpg.Pool, producer: Producer, browser: object) -> None:
    """An item that passed its SLA and was given a new deadline (expiry policy reassign) reads
    "breached, now ... left" in red, in the queue and in the item, not just "55m left" (an
    outside review lead could not tell it had breached)."""
    queue = f"late-{uuid.uuid4().hex[:6]}"
    esc = await escalate(db, producer, "acme", queue, 0,
                         sla=datetime.now(timezone.utc) + timedelta(hours=1))
    item_id = await item_of(db, esc)
    # as the SLA keeper leaves a reassigned item (tests/review/test_review_policies_service.py
    # drives the keeper itself)
    await db.execute("UPDATE review_items SET expiries = 1, expired_at = now() "
                     "WHERE item_id = $1::uuid", item_id)
    page = await browser.new_page(viewport={"width": 1280, "height": 900})  # type: ignore
    expect.set_options(timeout=30_000)
    try:
        await page.goto(f"http://127.0.0.1:{settings.review_web_port}/")
        await page.fill("#api-key", "rev-acme")
        await page.click("#login-form button[type=submit]")
        await page.fill("#f-queue", queue)
        await expect(page.locator("#queue tbody tr")).to_have_count(1)  # filter applied
        sla = page.locator(f'#queue tbody tr[data-item-id="{item_id}"] .sla')
        await expect(sla).to_have_text(re.compile(r"^breached, now (\d+h )?\d+m \d+s left$"))
        await expect(sla).to_have_class(re.compile(r"\boverdue\b"))
        await page.keyboard.press("Escape")
        await page.keyboard.press("Enter")
        await expect(page.locator("#i-sla")).to_have_text(
            re.compile(r"^SLA: breached, now (\d+h )?\d+m \d+s left$"))
    finally:
        await page.close()


async def test_the_console_renews_an_open_claim_before_its_lease_runs_out(
        settings: Settings, db: asyncpg.Pool, producer: Producer, browser: object) -> None:
    """While a claimed item is open, the page renews the lease once half of what is left has
    passed: the page's clock is moved on past that point (no real wait) and the page asks
    the server to renew; the lease is then counted again from the server's now."""
    esc = await escalate(db, producer, "acme", "renewals", 2,
                         fields=[("total", "88.00", 0.5)], text="Invoice INV-88\nTotal: 88.00")
    item_id = await item_of(db, esc)
    page = await browser.new_page(viewport={"width": 1280, "height": 900})  # type: ignore
    expect.set_options(timeout=30_000)
    try:
        await page.clock.install()
        await page.goto(f"http://127.0.0.1:{settings.review_web_port}/#item={item_id}")
        await page.fill("#api-key", "rev-acme")
        await page.click("#login-form button[type=submit]")
        await expect(page.locator("#i-document")).to_contain_text("INV-88")
        await page.keyboard.press("c")
        await expect(page.locator("#i-state")).to_have_text("claimed by key-0")
        claimed_until = await db.fetchval(
            "SELECT lease_expires_at FROM review_items WHERE item_id = $1::uuid", item_id)
        lease_s = settings.review_default_lease_s
        async with page.expect_response(
                lambda r: r.url.endswith(f"/api/items/{item_id}/renew")) as renewal:
            await page.clock.fast_forward(int(lease_s / 2 * 1000) + 1_000)
        assert (await renewal.value).status == 200
        renewed_until = await db.fetchval(
            "SELECT lease_expires_at FROM review_items WHERE item_id = $1::uuid", item_id)
        assert renewed_until > claimed_until
        await expect(page.locator("#i-state")).to_have_text("claimed by key-0")
    finally:
        await page.close()


async def _no_sideways_scroll(page: object, where: str) -> None:
    widths = await page.evaluate(  # type: ignore[attr-defined]
        "() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"{where}: the page scrolls sideways ({widths})"


async def _in_view(page: object, selector: str) -> None:
    """The element is drawn inside the window as it stands (no scrolling needed)."""
    box = await page.locator(selector).bounding_box()  # type: ignore[attr-defined]
    size = await page.evaluate("() => [window.innerWidth, window.innerHeight]")  # type: ignore
    assert box is not None, selector
    assert box["x"] >= 0 and box["x"] + box["width"] <= size[0], (selector, box, size)
    assert box["y"] >= 0 and box["y"] + box["height"] <= size[1], (selector, box, size)


@pytest.mark.parametrize("screen", ["phone", "desktop at 200%"])
async def test_the_console_fits_a_phone_and_a_zoomed_desktop(
        settings: Settings, db: asyncpg.Pool, producer: Producer, browser: object,
        screen: str) -> None:
    """WCAG 1.4.10 (reflow): at 320-375 CSS pixels wide nothing scrolls sideways, rows are
    cards, and the verdict buttons with what they did stay on the screen while one reads."""
    part = "PART-" + "7Q" * 40   # one unbroken word wider than a phone
    esc = await escalate(
        db, producer, "acme", f"reflow-{screen[:5]}", 1,
        fields=[("invoice_number", "INV-5150", 0.97), ("total", "1,980.00", 0.41)],
        text=f"Invoice INV-5150\nPart {part}\n" + "Line item 1 x 20.00\n" * 60)
    item_id = await item_of(db, esc)
    phone = screen == "phone"
    context = await browser.new_context(  # type: ignore[attr-defined]
        viewport={"width": 375, "height": 667} if phone else {"width": 640, "height": 450},
        device_scale_factor=2, is_mobile=phone, has_touch=phone)
    page = await context.new_page()
    expect.set_options(timeout=30_000)
    try:
        await page.goto(f"http://127.0.0.1:{settings.review_web_port}/")
        await _no_sideways_scroll(page, "sign-in")
        await page.fill("#api-key", "rev-acme")
        await page.click("#login-form button[type=submit]")
        await page.fill("#f-queue", esc.queue)
        row = page.locator(f'#queue tbody tr[data-item-id="{item_id}"]')
        await expect(page.locator("#queue tbody tr")).to_have_count(1)
        await _no_sideways_scroll(page, "queue")
        # a card: each value under its column's name
        await expect(row.locator("td").nth(0)).to_have_attribute("data-label", "Priority")
        assert await row.locator("td").nth(2).evaluate(
            "td => getComputedStyle(td, '::before').content") == '"Tenant"'
        await row.locator("a.open-item").click()
        await expect(page.locator("#i-task")).to_have_text(esc.task_id)
        await expect(page.locator("#i-document")).to_contain_text(part)   # wrapped, not cut
        await _no_sideways_scroll(page, "item")
        await _in_view(page, "#claim")
        await _in_view(page, "#reject")
        if phone:   # a finger's target
            assert (await page.locator("#claim").bounding_box())["height"] >= 44
        await page.click("#claim")
        await expect(page.locator("#status")).to_have_text("Claimed by key-0.")
        await _in_view(page, "#status")
        await page.locator('#i-fields tr[data-field="total"] .field-edit').fill("1,890.00")
        await page.click("#modify")
        await expect(page.locator("#status")).to_contain_text("Approved with edits")
        await _in_view(page, "#status")
        await _no_sideways_scroll(page, "item after the verdict")
        results = await Axe().run(page, options=AXE_RULES)
        assert results.violations_count == 0, results.generate_snapshot()
        await page.screenshot(path=str(artifact(f"review-console-{screen[:5]}.png")),
                              full_page=True)
    finally:
        await context.close()
    assert await db.fetchval("SELECT verdict FROM review_verdicts WHERE item_id = $1::uuid",
                             item_id) == "MODIFY"


async def test_the_queue_and_items_are_reached_with_tab_and_shortcuts_can_be_turned_off(
        settings: Settings, db: asyncpg.Pool, producer: Producer, browser: object) -> None:
    """Every row is a link Tab reaches; j/k move the focus; an opened item takes the focus at
    its title and Esc gives it back to its row; single-key shortcuts can be turned off
    (WCAG 2.1.4), remembered by the browser; the sign-in form names its fields for
    password managers."""
    # a line that reads "approved by CFO NOT approved." where the bytes say otherwise
    tricked = "approved by CFO \u202e.devorppa TON\u202c"
    escs = [await escalate(db, producer, "acme", "keys", 2, fields=[("total", f"{n}.00", 0.5)],
                           text=f"Invoice INV-90{n}\nTotal: {n}.00\n{tricked}") for n in (1, 2)]
    items = [await item_of(db, esc) for esc in escs]
    async with db.acquire() as conn:   # a proposal with no plan (no pack knew the type)
        (planless_task,) = await insert_tasks(conn, "acme", 1, text="A letter of no known type")
    planless = escalation(planless_task, "planless", 1)
    planless.proposed_decision.ClearField("plan")
    await producer.send(ESCALATIONS, planless.task_id, planless)
    planless_item = await item_of(db, planless)
    page = await browser.new_page(viewport={"width": 1280, "height": 900})  # type: ignore
    expect.set_options(timeout=30_000)
    claims: list[str] = []
    page.on("request", lambda r: claims.append(r.url) if r.url.endswith("/claim") else None)
    focused = "() => document.activeElement.closest('tr') ? " \
        "document.activeElement.closest('tr').dataset.itemId : document.activeElement.id"
    try:
        await page.goto(f"http://127.0.0.1:{settings.review_web_port}/")
        await expect(page.locator("#api-key")).to_have_attribute("autocomplete",
                                                                "current-password")
        await expect(page.locator("#reviewer")).to_have_attribute("autocomplete", "username")
        await page.fill("#api-key", "rev-acme")
        await page.click("#login-form button[type=submit]")
        await page.fill("#f-queue", "keys")
        await expect(page.locator("#queue tbody tr")).to_have_count(2)
        order = await page.locator("#queue tbody tr").evaluate_all(
            "rows => rows.map(r => r.dataset.itemId)")
        assert sorted(order) == sorted(items)
        await page.focus("#f-reason")
        await page.keyboard.press("Tab")            # from the last filter to the first row
        assert await page.evaluate(focused) == order[0]
        await page.keyboard.press("Tab")
        assert await page.evaluate(focused) == order[1]
        await page.keyboard.press("k")              # the focus moves with the selection
        assert await page.evaluate(focused) == order[0]
        await page.keyboard.press("j")
        assert await page.evaluate(focused) == order[1]
        await expect(page.locator("#queue tbody tr.selected")).to_have_attribute(
            "data-item-id", order[1])
        await page.keyboard.press("Enter")
        await expect(page.locator("#i-title")).to_be_focused()
        await expect(page.locator("#i-title")).to_contain_text("P2 ")
        # bidi overrides are shown as marks: the line reads as it is stored
        shown = await page.inner_text("#i-document")
        assert "approved by CFO \u27e6U+202E\u27e7.devorppa TON\u27e6U+202C\u27e7" in shown
        assert "\u202e" not in shown
        # what an approval runs is said before it is given
        await expect(page.locator("#i-plan")).to_have_text(
            "On approval: post_invoice (erp.invoices).")
        await page.keyboard.press("Escape")
        await expect(page.locator("#queue-view")).to_be_visible()
        await page.wait_for_function(f"() => ({focused})() === {order[1]!r}")

        # single-key shortcuts off: letters do nothing, Enter, Esc and the buttons still work
        await page.uncheck("#shortcuts-on")
        await page.reload()
        await expect(page.locator("#shortcuts-on")).not_to_be_checked()
        await page.fill("#f-queue", "keys")
        await expect(page.locator("#queue tbody tr")).to_have_count(2)
        await page.locator("#queue tbody tr a.open-item").first.focus()
        await page.keyboard.press("j")
        assert await page.evaluate(focused) == order[0]
        await page.keyboard.press("Enter")
        await expect(page.locator("#i-title")).to_be_focused()
        await page.keyboard.press("c")              # no claim
        await page.keyboard.press("?")              # no dialog
        await page.click("#claim")                  # the button claims
        await expect(page.locator("#status")).to_have_text("Claimed by key-0.")
        assert len(claims) == 1, claims
        assert not await page.locator("#help").evaluate("d => d.open")
        await page.click("#help-open")              # the shortcuts list has a button too
        await expect(page.locator("#help")).to_be_visible()
        await page.keyboard.press("Escape")
        await page.goto(f"http://127.0.0.1:{settings.review_web_port}/#item={planless_item}")
        await expect(page.locator("#i-plan")).to_contain_text("On approval nothing runs")
        await expect(page.locator("#i-plan")).to_have_class("warning")
    finally:
        await page.close()
    assert await db.fetchval("SELECT claimed_by FROM review_items WHERE item_id = $1::uuid",
                             order[0]) == "key-0"


# -- documents: page images masked on the server, fields drawn where read, picked words -----

def _region(image: Image.Image, box: BoundingBox) -> list[tuple[int, int, int]]:
    width, height = image.size
    crop = image.crop((math.ceil(box.x0 * width), math.ceil(box.y0 * height),
                       math.floor(box.x1 * width), math.floor(box.y1 * height)))
    return [crop.getpixel((x, y)) for x in range(crop.width) for y in range(crop.height)]


async def test_console_shows_masked_pages_and_corrects_fields_by_picking_words(
        settings: Settings, db: asyncpg.Pool, producer: Producer, browser: object) -> None:
    scan = scanned_invoice()
    document = Document(content_type="image/png", body=scan.png, page_count=1,
                        filename="scan-4711.png")
    async with db.acquire() as conn:
        (task,) = await insert_tasks(conn, "acme", 1, document=document)
    esc = escalation(task, "pages", 1)
    for name, (value, where) in scan.fields.items():
        esc.proposed_decision.fields.add(name=name, value=value, provenance=where,
                                         confidence=0.55 if name == "total" else 0.95)
    esc.layout.CopyFrom(scan.layout)
    await producer.send(ESCALATIONS, esc.task_id, esc)
    item_id = await item_of(db, esc)

    # the API: the layout's personal words redacted, the page image masked where they are
    base = f"http://127.0.0.1:{settings.review_web_port}/api/items/{item_id}"
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer rev-acme"}) as http:
        async with http.get(base) as resp:
            assert resp.status == 200
            item = (await resp.json())["item"]
        async with http.get(f"{base}/pages/1") as resp:
            assert resp.status == 200 and resp.content_type == "image/png"
            png = await resp.read()
        async with http.get(f"{base}/pages/2") as resp:
            assert resp.status == 404 and "1 page" in (await resp.json())["error"]
        async with http.get(f"{base}/pages/first") as resp:
            assert resp.status == 400 and "page" in (await resp.json())["field_violations"]
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer rev-other"}) as http:
        async with http.get(f"{base}/pages/1") as resp:
            assert resp.status == 404   # another tenant's document: not found
    channel = create_channel(f"127.0.0.1:{settings.review_grpc_port}", "rev-acme")
    try:   # gRPC hands out the same redacted copy, without the file's own bytes
        got = (await ReviewServiceStub(channel).GetItem(GetItemRequest(item_id=item_id))).item
    finally:
        await channel.close()
    assert got.escalation.task.document.body == b"" and got.escalation.layout.pages
    assert "Jane" not in str(got.escalation.layout) and "7946" not in str(got.escalation)
    words = [w["text"] for w in item["document"]["layout"][0]["words"]]
    assert "Jane" not in words and "7946" not in words and "Jane" not in item["document"]["text"]
    assert words.count("[VENDOR REDACTED]") == 2 and words.count("[PHONE REDACTED]") == 4
    assert "INV-4711" in words and "1,250.00" in words
    total = next(f for f in item["proposal"]["fields"] if f["name"] == "total")
    assert total["provenance"]["page"] == 1 and total["provenance"]["source"] == "OCR"

    shown = Image.open(io.BytesIO(png)).convert("RGB")
    original = Image.open(io.BytesIO(scan.png)).convert("RGB")
    layout_words = scan.layout.pages[0].words
    for masked in ("Jane", "Roe", "+44", "7946"):
        box = next(w.box for w in layout_words if w.text == masked)
        assert set(_region(original, box)) != {MASK_COLOUR}  # the text is there...
        assert set(_region(shown, box)) == {MASK_COLOUR}     # ...and painted over
    for visible in ("INV-4711", "1,250.00"):
        region = _region(shown, next(w.box for w in layout_words if w.text == visible))
        assert max(region) > (200, 200, 200) and min(region) < (100, 100, 100)  # still text

    # the browser: page beside the fields, boxes where read, words picked by mouse and keys
    page = await browser.new_page(viewport={"width": 1400, "height": 1000})  # type: ignore
    expect.set_options(timeout=30_000)
    try:
        await page.goto(f"http://127.0.0.1:{settings.review_web_port}/")
        await page.fill("#api-key", "rev-acme")
        await page.click("#login-form button[type=submit]")
        await page.fill("#f-queue", "pages")
        await expect(page.locator("#queue tbody tr")).to_have_count(1)
        await page.keyboard.press("Escape")
        await page.keyboard.press("Enter")
        await expect(page.locator("#i-pages")).to_be_visible()
        await expect(page.locator("#page-label")).to_have_text("Page 1 of 1")
        await page.wait_for_function(
            "() => document.getElementById('page-img').naturalWidth > 0")
        await expect(page.locator("#page-overlay rect.hl")).to_have_count(3)
        await expect(page.locator('#i-fields tr[data-field="total"] td.where')) \
            .to_contain_text("p. 1 · OCR 93%")
        await page.screenshot(path=str(artifact("review-console-pages.png")), full_page=True)
        results = await Axe().run(page, options=AXE_RULES)
        assert results.violations_count == 0, results.generate_snapshot()

        # the mouse: pick the total's words on the page
        # the button's accessible name starts with its visible label (WCAG 2.5.3)
        await expect(page.get_by_role("button", name="Pick words for total on the page")
                     ).to_have_count(1)
        await page.click('#i-fields tr[data-field="total"] button.pick')
        word_rects = page.locator("#page-overlay rect.word")
        await expect(word_rects).to_have_count(len(layout_words))
        texts = [w.text for w in layout_words]
        await word_rects.nth(texts.index("1,250.00")).click()
        await word_rects.nth(texts.index("EUR")).click()
        await word_rects.nth(texts.index("Jane")).click()   # redacted: cannot be picked
        await expect(page.locator("#pick-status")).to_contain_text("redacted")
        total_edit = page.locator('#i-fields tr[data-field="total"] .field-edit')
        await expect(total_edit).to_have_value("1,250.00 EUR")
        await page.keyboard.press("Enter")
        await expect(page.locator("#page-overlay rect.word")).to_have_count(0)
        await expect(total_edit).to_be_focused()
        await total_edit.press("Escape")
        await page.keyboard.press("c")   # claiming re-reads the item; the pick stays
        await expect(page.locator("#i-state")).to_have_text("claimed by key-0")
        await expect(total_edit).to_have_value("1,250.00 EUR")
        # the keyboard alone: the invoice number, one line down and back up, then a word
        pick = page.locator('#i-fields tr[data-field="invoice_number"] button.pick')
        await pick.focus()
        await page.keyboard.press("Enter")
        await expect(page.locator("#page-frame")).to_be_focused()
        await page.keyboard.press("ArrowDown")
        await expect(page.locator("#pick-status")).to_contain_text('"Vendor"')
        await page.keyboard.press("ArrowUp")
        await page.keyboard.press("ArrowRight")
        await page.keyboard.press("Space")
        await expect(page.locator("#pick-status")).to_contain_text('"INV-4711", picked')
        await page.keyboard.press("Enter")
        number_edit = page.locator('#i-fields tr[data-field="invoice_number"] .field-edit')
        await expect(number_edit).to_have_value("INV-4711")
        await page.screenshot(path=str(artifact("review-console-pages-picked.png")),
                              full_page=True)
        await number_edit.press("Control+Enter")
        await expect(page.locator("#status")).to_contain_text("Approved with edits")
    finally:
        await page.close()

    decision = Decision.FromString(await db.fetchval(
        "SELECT decision FROM review_decisions WHERE task_id = $1 AND source = 'HUMAN'",
        uuid.UUID(esc.task_id)))
    assert dict(decision.extracted_fields)["total"] == "1,250.00 EUR"
    assert dict(decision.extracted_fields)["invoice_number"] == "INV-4711"


def two_page_pdf() -> bytes:
    """An invoice whose number is on page 1 and whose total is on page 2 (a text layer)."""
    from reportlab.pdfgen import canvas

    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=(360, 240))
    for lines in (("Invoice INV-8800", "Date 2026-11-30"), ("Carried over", "Total 999.00 EUR")):
        for row, line in enumerate(lines):
            pdf.drawString(40, 190 - 30 * row, line)
        pdf.showPage()
    pdf.save()
    return buffer.getvalue()


async def test_console_turns_the_pages_and_picks_a_field_where_it_was_read(
        settings: Settings, db: asyncpg.Pool, producer: Producer, browser: object) -> None:
    body = two_page_pdf()
    layout = DocumentLayout(pages=[p for p in read_text_layer(body) if p is not None])
    assert len(layout.pages) == 2
    async with db.acquire() as conn:
        (task,) = await insert_tasks(conn, "acme", 1, document=Document(
            content_type="application/pdf", page_count=2, filename="inv-8800.pdf"))
    # the file travels by reference (claim check): the review service reads the blob store
    store = blob_store_for(settings, db)
    ref = await store.put(body, "acme", task.task_id)
    task.document.blob.CopyFrom(ref)
    esc = escalation(task, "pages2", 1)
    for name, value in (("invoice_number", "INV-8800"), ("total", "999.00")):
        esc.proposed_decision.fields.add(
            name=name, value=value, confidence=0.7,
            provenance=provenance_of(find_words(lines(layout), value)))
    esc.layout.CopyFrom(layout)
    await producer.send(ESCALATIONS, esc.task_id, esc)
    item_id = await item_of(db, esc)

    page = await browser.new_page(viewport={"width": 1400, "height": 1000})  # type: ignore
    expect.set_options(timeout=30_000)
    image = page.locator("#page-img")
    boxes = page.locator("#page-overlay rect.hl")
    try:
        await page.goto(f"http://127.0.0.1:{settings.review_web_port}/")
        await page.fill("#api-key", "rev-acme")
        await page.click("#login-form button[type=submit]")
        await page.fill("#f-queue", "pages2")
        await expect(page.locator("#queue tbody tr")).to_have_count(1)
        await page.keyboard.press("Escape")
        await page.keyboard.press("Enter")
        await expect(page.locator("#page-label")).to_have_text("Page 1 of 2")
        await expect(image).to_have_attribute("data-key", re.compile("/1$"))
        await expect(boxes).to_have_count(1)     # the invoice number, read on page 1
        await expect(page.locator('#i-fields tr[data-field="total"] td.where')) \
            .to_contain_text("p. 2")
        await expect(page.locator("#page-prev")).to_be_disabled()
        await page.keyboard.press("]")
        await expect(page.locator("#page-label")).to_have_text("Page 2 of 2")
        await expect(image).to_have_attribute("data-key", re.compile("/2$"))
        await page.wait_for_function(
            "() => document.getElementById('page-img').naturalWidth > 0")
        await expect(boxes).to_have_count(1)     # now the total's
        await page.keyboard.press("[")
        await expect(page.locator("#page-label")).to_have_text("Page 1 of 2")
        # picking the total (read on page 2) turns to its page
        await page.click('#i-fields tr[data-field="total"] button.pick')
        await expect(page.locator("#page-label")).to_have_text("Page 2 of 2")
        words = [w.text for w in layout.pages[1].words]
        await page.locator("#page-overlay rect.word").nth(words.index("999.00")).click()
        await page.keyboard.press("Enter")
        await expect(page.locator('#i-fields tr[data-field="total"] .field-edit')) \
            .to_have_value("999.00")
        await page.screenshot(path=str(artifact("review-console-pdf-page-2.png")),
                              full_page=True)
    finally:
        await page.close()

    # bytes purged from the blob store: a specific answer, not a broken image or a 500
    assert await store.delete(ref)
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer rev-acme"}) as http:
        async with http.get(f"http://127.0.0.1:{settings.review_web_port}/api/items/"
                            f"{item_id}/pages/1") as resp:
            assert resp.status == 410 and "blob" in (await resp.json())["error"]


# -- live updates, and a clean stop with a console still listening (runs last) -------------

async def test_console_streams_changes_and_sigterm_ends_the_stream_cleanly(
        settings: Settings, db: asyncpg.Pool, producer: Producer,
        review_process: EmbeddedStack) -> None:
    async with aiohttp.ClientSession() as session, session.get(
            f"http://127.0.0.1:{settings.review_web_port}/api/events",
            headers={"Authorization": "Bearer rev-acme"}) as stream, session.get(
            f"http://127.0.0.1:{settings.review_web_port}/api/events",
            headers={"Authorization": "Bearer rev-other"}) as other_stream:
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        assert "event: hello" in (await stream.content.readuntil(b"\n\n")).decode()
        assert "event: hello" in (await other_stream.content.readuntil(b"\n\n")).decode()
        await escalate(db, producer, "acme", "live", 2)
        while "event: change" not in (await stream.content.readuntil(b"\n\n")).decode():
            pass
        # another tenant's listener hears nothing of acme's work: the first change it is
        # told of is one of its own tenant's, made after acme's
        theirs = await item_of(db, await escalate(db, producer, "other", "live", 2))
        created = await db.fetchval("SELECT created_at FROM review_items WHERE item_id = "
                                    "$1::uuid", theirs)
        while "event: change" not in (event := (
                await other_stream.content.readuntil(b"\n\n")).decode()):
            pass
        told = datetime.fromisoformat(json.loads(event.split("data: ", 1)[1]))
        assert told >= created, (told, created)
        # SIGTERM while the browser's stream is open: the service ends it and exits cleanly.
        await asyncio.to_thread(review_process.stop)
        # what is left ends at a message boundary: only whole keepalives or change events
        # (acme's item changed again after the one read above, e.g. when it was admitted)
        rest = (await stream.content.read()).decode()
        assert rest == "" or rest.endswith("\n\n"), rest
        assert all(m == ": keepalive" or re.fullmatch(r'event: change\ndata: "[^"]+"', m)
                   for m in rest.split("\n\n")[:-1]), rest
    log = ManagedProcess.log_path_for(review_process.state_dir, "review").read_text()
    assert "review stopped" in log
