"""End to end with the four services: verdicts given in the browser and on the command line
reach the executor, and the tasks end SUCCEEDED (approve) or FAILED (reject, "rejected:<rule>").

Tasks are submitted over gRPC as invoices claiming to be admission forms, so the real router
on Triton disagrees and the policy escalates them to review.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from PIL import Image
from playwright.async_api import Page, expect

from switchyard import Settings
from switchyard.rpc import create_channel
from switchyard.storage import create_pool
from switchyard.v1 import (
    Document,
    GetTaskRequest,
    IngestServiceStub,
    Submission,
    SubmitTaskRequest,
    Task,
    TaskStatus,
)
from services.review.pages import MASK_COLOUR, PAGE_DPI
from tests.document_samples import text_pdf
from tests.polling import eventually
from tests.review.helpers import artifact, switchyard
from tests.terminal import TERMINAL_STATUSES

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("pipeline")]
HELDOUT = Path(__file__).resolve().parents[2] / "models" / "data" / "router_heldout.jsonl"


@pytest.fixture(scope="module")
def settings(settings: Settings) -> Settings:
    # key ids by position: rev is key-1 (the reviewer the service records), rev2 key-2
    return settings.replace(api_keys="sub:acme:submitter,rev:acme:reviewer,rev2:acme:reviewer",
                            client_api_key="rev")


@pytest.fixture(scope="module")
async def db(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(settings)
    yield pool
    await pool.close()


@pytest.fixture
async def ingest(settings: Settings) -> AsyncIterator[IngestServiceStub]:
    channel = create_channel(f"127.0.0.1:{settings.ingest_grpc_port}", "sub")
    yield IngestServiceStub(channel)
    await channel.close()


def invoices(count: int) -> list[str]:
    rows = [json.loads(line) for line in HELDOUT.read_text().splitlines()]
    return [r["text"] for r in rows if r["label"] == "invoice" and len(r["text"]) > 200][:count]


async def escalated_tasks(ingest: IngestServiceStub, db: asyncpg.Pool,
                          count: int) -> list[tuple[str, str]]:
    """(task id, review item id) of ``count`` tasks that the pipeline sent to review."""
    out = []
    for text in invoices(count):
        response = await ingest.SubmitTask(SubmitTaskRequest(submission=Submission(
            tenant_id="acme", idempotency_key=uuid.uuid4().hex, kind="admission_form",
            document=Document(content_type="text/plain", body=text.encode()))))
        out.append(response.task_id)

    async def items() -> list[tuple[str, str]] | None:
        rows = await db.fetch("SELECT task_id::text, item_id::text FROM review_items WHERE "
                              "task_id = ANY($1::uuid[]) AND state = 'PENDING'", out)
        found = {r["task_id"]: r["item_id"] for r in rows}
        return [(t, found[t]) for t in out] if len(found) == len(out) else None
    return await eventually(items, "review items for the escalated tasks", 120, 0.2)


async def final(ingest: IngestServiceStub, task_id: str) -> Task:
    async def done() -> Task | None:
        task = (await ingest.GetTask(GetTaskRequest(task_id=task_id))).task
        return task if task.status in TERMINAL_STATUSES else None
    return await eventually(done, f"task {task_id} to finish", 120, 0.2)


async def sign_in(page: Page, settings: Settings, reviewer: str) -> None:
    await page.goto(f"http://127.0.0.1:{settings.review_web_port}/")
    await page.fill("#api-key", "rev")
    await page.fill("#reviewer", reviewer)
    await page.click("#login-form button[type=submit]")


async def test_verdicts_from_the_browser_reach_the_executor(
        settings: Settings, db: asyncpg.Pool, ingest: IngestServiceStub, browser: object) -> None:
    (approve_task, approve_item), (reject_task, reject_item) = \
        await escalated_tasks(ingest, db, 2)
    page = await browser.new_page(viewport={"width": 1280, "height": 900})  # type: ignore
    expect.set_options(timeout=30_000)
    try:
        await sign_in(page, settings, "rita")  # a typed name: the key is the reviewer
        await expect(page.locator("#who")).to_contain_text("key-1")
        rows = page.locator("#queue tbody tr")
        await expect(page.locator(f'tr[data-item-id="{approve_item}"]')).to_be_visible()
        await expect(page.locator(f'tr[data-item-id="{reject_item}"]')).to_be_visible()
        assert await rows.count() == 2
        await page.screenshot(path=str(artifact("review-console-queue.png")), full_page=True)
        # the queue's keys: ? lists them, j / k move the selection, / goes to the filter
        await page.keyboard.press("?")
        await expect(page.locator("#help")).to_be_visible()
        await page.keyboard.press("Escape")
        await expect(page.locator("#help")).to_be_hidden()
        first = await rows.nth(0).get_attribute("data-item-id")
        second = await rows.nth(1).get_attribute("data-item-id")
        await page.keyboard.press("j")
        await expect(page.locator("#queue tbody tr.selected")).to_have_attribute(
            "data-item-id", second)
        await page.keyboard.press("k")
        await expect(page.locator("#queue tbody tr.selected")).to_have_attribute(
            "data-item-id", first)
        await page.keyboard.press("/")
        await expect(page.locator("#f-queue")).to_be_focused()
        await page.keyboard.press("Escape")

        await page.click(f'tr[data-item-id="{approve_item}"]')
        await expect(page.locator("#i-task")).to_have_text(approve_task)
        # the extractor's own confidence is shown, not offered for correction
        await expect(page.locator(
            '#i-fields tr[data-field="extraction_confidence"] .field-edit')).to_be_disabled()
        await page.keyboard.press("c")
        await expect(page.locator("#status")).to_have_text("Claimed by key-1.")
        await page.keyboard.press("u")  # release, and claim again
        await expect(page.locator("#status")).to_have_text("Released to the queue.")
        await page.keyboard.press("c")
        await expect(page.locator("#status")).to_have_text("Claimed by key-1.")
        # approved with a corrected invoice number: the console's key goes on to the
        # decision service, which runs the invoice pack's rules on the edited fields
        number = page.locator('#i-fields tr[data-field="invoice_number"] .field-edit')
        await number.fill("INV-EDITED-1")
        await number.press("Control+Enter")
        await expect(page.locator("#status")).to_contain_text("Approved with edits")

        await page.keyboard.press("Escape")
        await page.click(f'tr[data-item-id="{reject_item}"]')
        await expect(page.locator("#i-task")).to_have_text(reject_task)
        # rejected without claiming first: the Reason box takes what is typed next (its
        # a, c, m and u are no shortcuts: an outside reviewer's typed reason once approved
        # an unclaimed item), and Enter claims the item, then rejects it
        await page.keyboard.press("r")  # no reason yet: the console asks for one
        await expect(page.locator("#reason")).to_be_focused()
        await expect(page.locator("#status")).to_contain_text("the item is claimed first")
        await page.keyboard.type("wrong document, a claim; resubmit a clean copy")
        await page.keyboard.press("Enter")
        await expect(page.locator("#status")).to_contain_text("Rejected: decision")
        await page.screenshot(path=str(artifact("review-console-rejected.png")), full_page=True)
    finally:
        await page.close()

    approved = await final(ingest, approve_task)
    assert approved.status == TaskStatus.TASK_STATUS_SUCCEEDED, approved.reason
    rejected = await final(ingest, reject_task)
    assert rejected.status == TaskStatus.TASK_STATUS_FAILED  # the one rule: REJECT -> FAILED
    assert rejected.reason == "rejected:reviewer_reject"
    executed = await db.fetchval("SELECT count(*) FROM executions WHERE task_id = $1::uuid",
                                 approve_task)
    assert executed >= 1
    verdicts = {r["task_id"]: (r["actor"], r["override"]) for r in await db.fetch(
        "SELECT task_id::text, actor, (detail->>'override')::bool AS override FROM audit_log "
        "WHERE action = 'review.verdict' AND task_id = ANY($1::uuid[])",
        [approve_task, reject_task])}
    assert verdicts == {approve_task: ("reviewer:key-1", True),   # edited: an override
                        reject_task: ("reviewer:key-1", True)}
    rule = await db.fetchval("SELECT detail->>'rule_with_edits' FROM audit_log WHERE action = "
                             "'review.verdict' AND task_id = $1::uuid", approve_task)
    assert rule, "the edits were not put to the pack's rules"


async def test_the_command_line_lists_claims_renews_approves_and_rejects(
        settings: Settings, db: asyncpg.Pool, ingest: IngestServiceStub) -> None:
    (approve_task, approve_item), (reject_task, reject_item) = \
        await escalated_tasks(ingest, db, 2)
    code, out = await switchyard(settings, "review", "list", "--json")
    assert code == 0, out
    listed = {json.loads(line)["item_id"]: json.loads(line) for line in out.splitlines()}
    assert {approve_item, reject_item} <= set(listed)
    assert listed[approve_item]["task_id"] == approve_task

    code, out = await switchyard(settings, "review", "list")
    assert code == 0 and approve_item in out and "group" in out, out
    # withdrawn items (their tasks ended) are never listed: the CLI says so before asking
    code, out = await switchyard(settings, "review", "list", "--state", "withdrawn")
    assert code == 2 and "--state is one of pending, claimed, backlogged, resolved, " \
        "expired;" in out, out
    code, out = await switchyard(settings, "review", "--reviewer", "carl", "claim", reject_item)
    assert code == 1 and "PERMISSION_DENIED" in out, out  # the key is the reviewer, not carl
    code, out = await switchyard(settings, "review", "claim", reject_item)
    assert code == 0 and "claimed" in out, out
    claimed_until = out.split(" until ")[1].strip()
    # a long look: the claim is extended from now, for the holder only
    code, out = await switchyard(settings, "review", "renew", reject_item, "--lease-s", "3600")
    assert code == 0 and f"renewed {reject_item} for key-1 until " in out, out
    assert out.split(" until ")[1].strip() > claimed_until, (claimed_until, out)
    code, out = await switchyard(settings.replace(client_api_key="rev2"), "review", "renew",
                                 reject_item)
    assert code == 1 and "key-1" in out, out  # someone else's claim is not renewed
    code, out = await switchyard(settings, "review", "renew", reject_item, "--lease-s", "-5")
    assert code == 2 and "0 or more" in out, out
    code, out = await switchyard(settings.replace(client_api_key="rev2"), "review", "approve",
                                 reject_item)
    assert code == 1 and "claimed by key-1" in out, out  # someone else holds it

    code, out = await switchyard(settings, "review", "approve", approve_item,
                                 "--reason", "checked the PO")
    assert code == 0 and "approved" in out, out
    code, out = await switchyard(settings, "review", "reject", reject_item,
                                 "--reason", "duplicate")
    assert code == 0 and "rejected" in out, out

    assert (await final(ingest, approve_task)).status == TaskStatus.TASK_STATUS_SUCCEEDED
    assert (await final(ingest, reject_task)).status == TaskStatus.TASK_STATUS_FAILED
    # a lead's day: the resolved items name who decided each, and when
    code, out = await switchyard(settings, "review", "list", "--state", "resolved", "--json")
    assert code == 0, out
    resolved = {json.loads(line)["item_id"]: json.loads(line) for line in out.splitlines()}
    assert resolved[approve_item]["decided_by"] == resolved[reject_item]["decided_by"] \
        == "key-1", resolved[approve_item]
    assert resolved[approve_item]["decided_at"] and resolved[approve_item]["claimed_by"] is None
    code, out = await switchyard(settings, "review", "list", "--state", "resolved")
    assert code == 0 and "resolved by key-1" in out, out
    code, out = await switchyard(settings.replace(client_api_key="wrong"), "review", "list")
    assert code == 1 and "UNAUTHENTICATED" in out, out
    # --api-key, as the other commands take it, wins over the environment's key
    code, out = await switchyard(settings.replace(client_api_key="wrong"), "review",
                                 "--api-key", settings.client_api_key, "list")
    assert code == 0, out
    # ... after the action too, as the other commands take it (an outside reviewer's
    # `review list --api-key K` was "unrecognized arguments")
    code, out = await switchyard(settings.replace(client_api_key="wrong"), "review", "list",
                                 "--api-key", settings.client_api_key)
    assert code == 0, out


async def test_a_pdf_reaches_the_reviewer_as_its_words_and_masked_pages(
        settings: Settings, db: asyncpg.Pool, ingest: IngestServiceStub) -> None:
    # a real PDF through the four services: ingest checks it over gRPC, the decision service
    # reads its text layer (the router is not sure of so short an invoice, so a person
    # decides) and escalates with the layout; the reviewer gets its words (the e-mail
    # redacted) and page 1 rendered from the file, the e-mail painted over
    size = (420.0, 300.0)
    body = text_pdf(lines=("Invoice INV-5150", "Contact billing@roe-trading.example",
                           "Total 64,000.00 EUR"), size=size)
    task_id = (await ingest.SubmitTask(SubmitTaskRequest(submission=Submission(
        tenant_id="acme", idempotency_key=uuid.uuid4().hex, kind="invoice",
        document=Document(content_type="application/pdf", body=body,
                          filename="inv-5150.pdf"))))).task_id

    async def pending() -> str | None:
        return await db.fetchval("SELECT item_id::text FROM review_items WHERE task_id = "
                                 "$1::uuid AND state = 'PENDING'", task_id)
    item_id = await eventually(pending, "a review item for the PDF", 120, 0.2)
    base = f"http://127.0.0.1:{settings.review_web_port}/api/items/{item_id}"
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer rev"}) as http:
        async with http.get(base) as resp:
            assert resp.status == 200
            item = (await resp.json())["item"]
        async with http.get(f"{base}/pages/1") as resp:
            assert resp.status == 200 and resp.content_type == "image/png"
            png = await resp.read()

    document = item["document"]
    assert (document["content_type"], document["page_count"]) == ("application/pdf", 1)
    (page,) = document["layout"]
    assert page["source"] == "TEXT_LAYER"
    words = {w["text"]: w["box"] for w in page["words"]}
    # the e-mail is masked: by the detectors, or (the router unsure, the invoice pack's
    # fields read for the reviewer) as the field it was read into
    masked = [text for text in words if text.startswith("[") and text.endswith(" REDACTED]")]
    assert "INV-5150" in words and masked, words
    assert "roe-trading" not in json.dumps(item)

    image = Image.open(io.BytesIO(png)).convert("RGB")
    for pixels, points in zip(image.size, size):   # rendered at the console's resolution
        assert abs(pixels - points * PAGE_DPI / 72) <= 1

    def region(box: list[float]) -> set[tuple[int, int, int]]:
        crop = image.crop((round(box[0] * image.width) + 1, round(box[1] * image.height) + 1,
                           round(box[2] * image.width) - 1, round(box[3] * image.height) - 1))
        return {crop.getpixel((x, y)) for x in range(crop.width) for y in range(crop.height)}
    assert region(words[masked[-1]]) == {MASK_COLOUR}
    number = region(words["INV-5150"])
    assert (255, 255, 255) in number and len(number) > 2   # the invoice number is legible


async def test_the_command_line_decides_several_items_and_says_which_it_could_not(
        settings: Settings, db: asyncpg.Pool, ingest: IngestServiceStub) -> None:
    """A lead clears a list: `review approve A B C` decides each in turn; the one another
    reviewer holds is refused on its own line and the others are still decided (exit 1)."""
    (first_task, first), (second_task, second), (_, held) = \
        await escalated_tasks(ingest, db, 3)
    code, out = await switchyard(settings.replace(client_api_key="rev2"), "review", "claim",
                                 held)
    assert code == 0, out
    code, out = await switchyard(settings, "review", "approve", first, held, second,
                                 "--reason", "checked the batch")
    assert code == 1, out
    assert f"approved {first}: decision" in out and f"approved {second}: decision" in out, out
    assert f"switchyard review approve {held}: FAILED_PRECONDITION: " in out, out
    for task in (first_task, second_task):
        assert (await final(ingest, task)).status == TaskStatus.TASK_STATUS_SUCCEEDED
    code, out = await switchyard(settings, "review", "approve", first, second, "--set",
                                 "total=1.00")
    assert code == 2 and "--set corrects one item's fields" in out, out
