"""The operator console in headless chromium against the four services (API keys on).

Tasks go through the real pipeline: an invoice submitted as an invoice is decided (and, when
escalated, approved) and executed; an invoice submitted as an admission form is escalated
and rejected, so it ends FAILED. In the browser an operator searches them by status, kind,
tenant and metadata, reads their timelines (decision with models and rule, executed steps,
status changes, review actions), retries the FAILED one and re-drives the new task, replays
and resolves a dead letter, resets a breaker and reads the KPI, drift, shadow and
reviewer-agreement charts; the search, a task row, retry and replay are operated with the keyboard alone. An auditor sees no action
button (and the services refuse the actions anyway); a reviewer is refused the operator
API. Every view, and the review console, passes axe-core's WCAG 2 A/AA rules. Screenshots
land in test-artifacts/.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from axe_playwright_python.async_playwright import Axe
from confluent_kafka import Producer
from playwright.async_api import Page, expect

from switchyard import Settings
from switchyard.messaging import INTAKE
from switchyard.rpc import create_channel
from switchyard.storage import connect
from switchyard.v1 import (
    Document,
    GetTaskRequest,
    IngestServiceStub,
    Submission,
    SubmitTaskRequest,
    Task,
    TaskStatus,
    Verdict,
)
from tests.client.helpers import OPS_KEY, review, sample
from tests.polling import eventually
from tests.review.helpers import artifact, switchyard
from tests.terminal import TERMINAL_STATUSES

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("pipeline")]
# key ids by position: ops-key is key-0
KEYS = f"{OPS_KEY}:*:admin,aud:acme:auditor,rev:acme:reviewer,sub:acme:submitter"
AXE_RULES = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa"]}}
WAIT_S = 120


@pytest.fixture(scope="module")
def settings(settings: Settings) -> Settings:
    # every model input updates the drift history, so the drift plot has points at once
    return settings.replace(api_keys=KEYS, drift_publish_every=1)


@dataclass(frozen=True)
class Tasks:
    marker: str      # in the metadata of every task of this module
    executed: Task   # kind invoice, SUCCEEDED with executed steps
    failed: Task     # kind admission_form, rejected by a reviewer: FAILED
    globex: str      # another tenant's task with the same metadata


async def _status(ingest: IngestServiceStub, task_id: str,
                  wanted: set[int]) -> Task | None:
    task = (await ingest.GetTask(GetTaskRequest(task_id=task_id))).task
    return task if task.status in wanted else None


@pytest.fixture(scope="module")
async def tasks(settings: Settings) -> AsyncIterator[Tasks]:
    channel = create_channel(f"127.0.0.1:{settings.ingest_grpc_port}", OPS_KEY)
    ingest = IngestServiceStub(channel)
    marker = uuid.uuid4().hex[:12]

    async def submit(tenant: str, kind: str, text: str, **metadata: str) -> str:
        response = await ingest.SubmitTask(SubmitTaskRequest(submission=Submission(
            tenant_id=tenant, idempotency_key=uuid.uuid4().hex, kind=kind,
            metadata={"batch": marker, **metadata},
            document=Document(content_type="text/plain", body=text.encode()))))
        return response.task_id

    executed_id = await submit("acme", "invoice", sample("invoice", 1), po=marker)
    failed_id = await submit("acme", "admission_form", sample("invoice", 2))
    globex_id = await submit("globex", "admission_form", sample("invoice", 3))
    wait = {TaskStatus.TASK_STATUS_BLOCKED, *TERMINAL_STATUSES}
    # the invoice ends on its own or waits for a person, who approves it
    first = await eventually(lambda: _status(ingest, executed_id, wait),
                             "the invoice to be decided", WAIT_S, 0.3)
    if first.status == TaskStatus.TASK_STATUS_BLOCKED:
        await asyncio.to_thread(review, settings, executed_id, Verdict.VERDICT_APPROVE)
    await eventually(lambda: _status(ingest, failed_id, {TaskStatus.TASK_STATUS_BLOCKED}),
                     "the admission form to wait for review", WAIT_S, 0.3)
    # the reviewer names a type (other) for the document the router took for an invoice:
    # the router's version is judged against it (a point on the reviewer-agreement chart)
    await asyncio.to_thread(review, settings, failed_id, Verdict.VERDICT_REJECT,
                            document_type="other")
    executed = await eventually(lambda: _status(ingest, executed_id, TERMINAL_STATUSES),
                                "the invoice to finish", WAIT_S, 0.3)
    assert executed.status == TaskStatus.TASK_STATUS_SUCCEEDED, executed.reason
    failed = await eventually(lambda: _status(ingest, failed_id, TERMINAL_STATUSES),
                              "the rejected task to end", WAIT_S, 0.3)
    assert failed.status == TaskStatus.TASK_STATUS_FAILED, failed.reason
    yield Tasks(marker, executed, failed, globex_id)
    await channel.close()


async def sign_in(page: Page, settings: Settings, key: str) -> None:
    await page.goto(f"http://127.0.0.1:{settings.review_web_port}/operator")
    await page.fill("#api-key", key)
    await page.press("#api-key", "Enter")


async def tab_to(page: Page, selector: str, presses: int = 80) -> None:
    """Press Tab until ``selector`` has the focus (keyboard only), and check that the focus
    is visible there."""
    target = page.locator(selector)
    for _ in range(presses):
        await page.keyboard.press("Tab")
        if await target.evaluate("node => node === document.activeElement"):
            outline = await target.evaluate(
                "node => { const s = getComputedStyle(node); "
                "return [s.outlineStyle, parseFloat(s.outlineWidth)]; }")
            assert outline[0] != "none" and outline[1] >= 2, f"no visible focus: {outline}"
            return
    raise AssertionError(f"Tab never reached {selector}")


async def check_wcag(page: Page, view: str) -> None:
    results = await Axe().run(page, options=AXE_RULES)
    assert results.violations_count == 0, f"{view}:\n{results.generate_snapshot()}\n" + \
        json.dumps([{"id": v["id"], "nodes": [n["html"] for n in v["nodes"]][:3]}
                    for v in results.response["violations"]], indent=1)


def rows(page: Page, table: str) -> object:
    return page.locator(f"#{table} tbody tr")


async def test_search_timeline_retry_and_redrive(settings: Settings, tasks: Tasks,
                                                 browser: object) -> None:
    page = await browser.new_page(viewport={"width": 1400, "height": 1000})  # type: ignore
    expect.set_options(timeout=30_000)
    try:
        await sign_in(page, settings, OPS_KEY)
        await expect(page.locator("#who")).to_contain_text("admin")
        # an operator key is bound to no tenant: the search starts at the README's tenant
        await expect(page.locator("#s-tenant")).to_have_value("default")
        # -- keyboard only: tenant, status (type-ahead in the select), metadata, Enter
        await tab_to(page, "#s-tenant")
        await page.keyboard.press("Control+A")
        await page.keyboard.type("acme")
        await tab_to(page, "#s-status")
        await page.keyboard.type("failed")
        await tab_to(page, "#s-metadata")
        await page.keyboard.type(f"batch={tasks.marker}")
        await page.keyboard.press("Enter")
        await expect(rows(page, "tasks")).to_have_count(1)
        await expect(page.locator(f'tr[data-task-id="{tasks.failed.envelope.task_id}"]')
                     ).to_be_visible()
        await check_wcag(page, "task search")
        await page.screenshot(path=str(artifact("operator-search.png")), full_page=True)

        # -- a task row with the keyboard: its timeline
        await tab_to(page, f'tr[data-task-id="{tasks.failed.envelope.task_id}"] button')
        await page.keyboard.press("Enter")
        await expect(page.locator("#t-id")).to_have_text(tasks.failed.envelope.task_id)
        # the focus moves to the task's heading, so Retry is the next Tab stop
        await expect(page.locator("#h-timeline")).to_be_focused()
        timeline = page.locator("#timeline tbody")
        decision = timeline.locator('tr[data-action="decision.made"]').first
        # ingest's summary: outcome, rule, pack and models in one line; the detail on demand
        await expect(decision.locator(".summary")).to_contain_text(" by rule ")
        await expect(decision.locator(".summary")).to_contain_text("; models document_router")
        await expect(decision.locator("details summary")).to_have_text("details")
        await expect(timeline.locator('tr[data-source="STATUS"]').last
                     ).to_contain_text("→ FAILED")
        await expect(timeline.locator('tr[data-action^="review."]').first).to_be_visible()
        # a FAILED task can be retried, not re-driven
        await expect(page.locator("#retry")).to_be_visible()
        await expect(page.locator("#redrive")).to_be_hidden()
        await check_wcag(page, "task timeline")
        await page.screenshot(path=str(artifact("operator-timeline-failed.png")),
                              full_page=True)

        # -- retry with the keyboard: a new task
        await page.keyboard.press("Tab")
        await expect(page.locator("#retry")).to_be_focused()
        await page.keyboard.press("Enter")
        await expect(page.locator("#t-status-line")).to_contain_text("Retried: new task")
        retried_id = (await page.locator("#open-retried").text_content() or "").split()[-1]
        assert retried_id and retried_id != tasks.failed.envelope.task_id
        await page.click("#open-retried")
        await expect(page.locator("#t-id")).to_have_text(retried_id)
        # the new task's timeline says where it came from
        await expect(timeline.locator('tr[data-action="task.created_as_retry"]')
                     ).to_contain_text(f"retry of task {tasks.failed.envelope.task_id}")
        # an unfinished task can be re-driven, not retried
        await expect(page.locator("#redrive")).to_be_visible()
        await expect(page.locator("#retry")).to_be_hidden()

        # -- re-drive the new (unfinished) task with Enter in its reason: audited
        await page.fill("#redrive-reason", "operator console test")
        await page.press("#redrive-reason", "Enter")
        await expect(page.locator("#t-status-line")).to_contain_text("Re-driven")
        await expect(page.locator('#timeline tr[data-action="task.redriven"]')).to_be_visible()
        await page.screenshot(path=str(artifact("operator-redriven.png")), full_page=True)
        # a second retry of the FAILED task finds the same new task; the old task's
        # timeline has the retry (once)
        await page.select_option("#s-status", "FAILED")
        await page.click("#s-go")
        await expect(page.locator("#t-status-line")).to_have_text("")  # old results go
        await page.click(f'tr[data-task-id="{tasks.failed.envelope.task_id}"] button')
        await page.click("#retry")
        await expect(page.locator("#t-status-line")).to_contain_text(
            f"Already retried: new task {retried_id}")
        await expect(timeline.locator('tr[data-action="task.retried"]')).to_have_count(1)
        await expect(timeline.locator('tr[data-action="task.retried"]')).to_contain_text(
            f"as task {retried_id} (attempt 1)")

        # -- by kind and metadata: the executed invoice, with its steps
        await page.select_option("#s-status", "")
        await page.fill("#s-kind", "invoice")
        await page.fill("#s-metadata", f"po={tasks.marker}")
        await page.click("#s-go")
        await expect(page.locator("#t-status-line")).to_have_text("")
        await expect(rows(page, "tasks")).to_have_count(1)
        await page.click(f'tr[data-task-id="{tasks.executed.envelope.task_id}"] button')
        await expect(page.locator("#t-id")).to_have_text(tasks.executed.envelope.task_id)
        await expect(timeline.locator('tr[data-action="decision.made"] .summary').first
                     ).to_contain_text("(pack invoice ")
        await expect(timeline.locator('tr[data-action="step.executed"] .summary').first
                     ).to_contain_text("succeeded")
        await expect(timeline.locator('tr[data-source="STATUS"]').last
                     ).to_contain_text("→ SUCCEEDED")
        # a SUCCEEDED task offers neither action
        await expect(page.locator("#t-actions")).to_be_hidden()
        await page.screenshot(path=str(artifact("operator-timeline-executed.png")),
                              full_page=True)
        # 800 pixels wide: the page does not scroll sideways (wide tables scroll in a box)
        await page.set_viewport_size({"width": 800, "height": 1000})
        assert await page.evaluate("document.scrollingElement.scrollWidth") <= 800
        await check_wcag(page, "task timeline, 800 px")
        await page.screenshot(path=str(artifact("operator-timeline-800px.png")), full_page=True)
        await page.set_viewport_size({"width": 1400, "height": 1000})

        # -- a task opened by its id, without a search
        await page.fill("#o-task", tasks.failed.envelope.task_id)
        await page.press("#o-task", "Enter")
        await expect(page.locator("#t-id")).to_have_text(tasks.failed.envelope.task_id)

        # -- by tenant: the same metadata in another tenant finds only that tenant's task
        await page.fill("#s-tenant", "globex")
        await page.fill("#s-kind", "")
        await page.fill("#s-metadata", f"batch={tasks.marker}")
        await page.click("#s-go")
        await expect(rows(page, "tasks")).to_have_count(1)
        await expect(page.locator(f'tr[data-task-id="{tasks.globex}"]')).to_be_visible()
        # a mistake in the form is named (once), not a crash
        await page.fill("#s-metadata", "no-equals-sign")
        await page.click("#s-go")
        await expect(page.locator("#search-status")).to_have_text(
            "HTTP 400: metadata: 'no-equals-sign' is not key=value")
    finally:
        await page.close()


TRIPPED = "http://127.0.0.1:9/operator-console-test"


async def open_breaker(settings: Settings, name: str) -> None:
    """A breaker opened the way the executor shares one (its executor_breakers row)."""
    conn = await connect(settings)
    try:
        await conn.execute(
            "INSERT INTO executor_breakers (name, state, failure_count, opened_at, updated_by) "
            "VALUES ($1, 'open', 5, now(), 'test') ON CONFLICT (name) DO UPDATE SET "
            "state = 'open', opened_at = now()", name)
    finally:
        await conn.close()


def produce_bad_record(settings: Settings, marker: str) -> None:
    """A record ingest cannot read, naming tenant acme: it becomes a dead letter."""
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers, "acks": "all"})
    producer.produce(INTAKE.full_name(settings), key=f"k-{marker}".encode(),
                     value=b"\x00 not a submission " + marker.encode(),
                     headers=[("x-tenant-id", b"acme")])
    assert producer.flush(30) == 0


async def test_dead_letters_breakers_and_charts(settings: Settings, tasks: Tasks,
                                                browser: object) -> None:
    marker = uuid.uuid4().hex
    await asyncio.to_thread(produce_bad_record, settings, marker)
    page = await browser.new_page(viewport={"width": 1400, "height": 1000})  # type: ignore
    expect.set_options(timeout=30_000)
    try:
        await sign_in(page, settings, OPS_KEY)
        await expect(page.locator("#who")).to_contain_text("admin")
        # -- dead letters: list, show, replay with the keyboard
        await tab_to(page, '.tabs button[data-view="dead-letters"]')
        await page.keyboard.press("Enter")

        async def listed() -> str | None:
            await page.click("#dl-filter button[type=submit]")
            await expect(page.locator("#dl-status")).to_contain_text("letter")
            for row in await rows(page, "dead-letters").all():
                await row.locator("button").click()
                await expect(page.locator("#dl-value")).not_to_be_empty()
                if marker in (await page.locator("#dl-value").text_content() or ""):
                    return await row.get_attribute("data-dead-letter-id")
            return None
        letter_id = await eventually(listed, "the bad record's dead letter", WAIT_S, 0.5)
        await check_wcag(page, "dead letters")
        await tab_to(page, f'tr[data-dead-letter-id="{letter_id}"] button')
        await page.keyboard.press("Enter")
        await expect(page.locator("#dl-id")).to_have_text(letter_id)
        await expect(page.locator("#dl-headers")).to_contain_text("x-tenant-id: acme")
        await tab_to(page, "#replay")
        await page.keyboard.press("Enter")
        await expect(page.locator("#dl-action-status")).to_contain_text("Replayed to")
        # the list shows open letters: the replayed one has left it, and is under "replayed"
        row = page.locator(f'tr[data-dead-letter-id="{letter_id}"]')
        await expect(row).to_have_count(0)
        await page.select_option("#dl-state", "replayed")
        await page.click("#dl-filter button[type=submit]")
        await expect(row.locator(".state")).to_contain_text("replayed 1× (last by key-0)")
        await page.screenshot(path=str(artifact("operator-dead-letters.png")), full_page=True)
        # replaying again without force is refused by the service, and the page says why
        await page.click("#replay")
        await expect(page.locator("#dl-action-status")).to_contain_text("Replay refused: HTTP 409")
        # resolving needs a reason; with one it closes the letter, the e-mail in it masked
        await page.click("#resolve")
        await expect(page.locator("#dl-action-status")).to_contain_text(
            "Resolve refused: HTTP 422: reason: required")
        await page.fill("#dl-resolution", "sent again fixed, asked ops@acme.example")
        await page.click("#resolve")
        await expect(page.locator("#dl-action-status")).to_contain_text("Resolved by key-0")
        await expect(page.locator("#dl-action-status")).not_to_contain_text("ops@acme.example")
        await page.select_option("#dl-state", "resolved")
        await page.click("#dl-filter button[type=submit]")
        await expect(row.locator(".state")).to_contain_text("resolved; by key-0: sent again")

        # -- breakers: the executor's, one of them open (as the executor records a trip),
        # reset by an admin
        await open_breaker(settings, TRIPPED)
        await page.click('.tabs button[data-view="breakers"]')
        tripped = page.locator(f'#breakers tr[data-breaker="{TRIPPED}"]')
        await expect(tripped.locator(".breaker-state")).to_have_text("open")
        await expect(rows(page, "breakers")).not_to_have_count(1)  # and the ERP's, closed
        await check_wcag(page, "breakers")
        await page.screenshot(path=str(artifact("operator-breakers.png")), full_page=True)
        await tripped.locator("button.reset").click()
        await expect(page.locator("#br-status")).to_have_text(f"Breaker {TRIPPED} is closed.")
        await expect(tripped.locator(".breaker-state")).to_have_text("closed")
        await expect(tripped).to_contain_text("key-0 (reset on")

        # -- KPI trend charts, with the tasks of this module in them
        await page.click('.tabs button[data-view="kpis"]')
        await expect(page.locator("#br-status")).to_have_text("")  # old results go
        await page.fill("#k-tenant", "acme")
        # the Bucket menu offers only what the window allows (at most 500 buckets)
        await page.select_option("#k-window", "1")
        await page.select_option("#k-bucket", "1")
        await page.select_option("#k-window", "24")
        await expect(page.locator("#k-bucket")).to_have_value("5")
        await expect(page.locator('#k-bucket option[value="1"]')).to_be_disabled()
        await expect(page.locator("#kpi-status")).to_contain_text("using 5 minutes buckets")
        await page.select_option("#k-window", "1")
        await page.select_option("#k-bucket", "5")
        await page.click("#kpi-form button[type=submit]")
        charts = page.locator("#kpi-charts figure")
        await expect(charts).to_have_count(4)
        for title in ("Automation rate", "P95 end-to-end latency",
                      "Escalations per hour by reason", "Cost per task"):
            chart = charts.filter(has_text=title)
            await expect(chart.locator("svg[role=img] circle").first).to_be_attached()
            label = await chart.locator("svg[role=img]").get_attribute("aria-labelledby")
            await expect(page.locator(f"#{label}")).to_contain_text(title)
            await expect(chart.locator("details table tbody tr")).to_have_count(12)
        # the module's escalations are counted by their reason
        await expect(charts.filter(has_text="Escalations").locator("li").first
                     ).not_to_have_text("escalations")
        await expect(charts.filter(has_text="Cost per task").locator("figcaption")
                     ).to_contain_text("SWITCHYARD_KPI_*_COST")
        await check_wcag(page, "KPIs")
        await page.screenshot(path=str(artifact("operator-kpis.png")), full_page=True)

        # -- drift and shadow agreement (the decision service records them as it decides)
        await page.click('.tabs button[data-view="models"]')
        await page.fill("#m-tenant", "acme")
        await page.select_option("#m-window", "1")
        await page.select_option("#m-bucket", "5")
        model_charts = page.locator("#model-charts figure")

        async def plotted() -> bool:
            await page.click("#model-form button[type=submit]")
            await expect(model_charts).to_have_count(3)
            return all([await model_charts.nth(i).locator("circle").count() > 0
                        for i in range(3)])
        await eventually(plotted, "drift, shadow and reviewer agreement points", WAIT_S, 1.0)
        await expect(model_charts.first).to_contain_text("Shadow agreement")
        await expect(model_charts.nth(1)).to_contain_text("population stability index")
        # the reviewer's verdict on the retyped document judged the router's version
        human = model_charts.nth(2)
        await expect(human).to_contain_text("Agreement with reviewers")
        await expect(human).to_contain_text("document_router v")
        # the drift thresholds are drawn (inside the y range), and the line counts what is
        drift = model_charts.nth(1)
        await expect(drift.locator("line.threshold")).to_have_count(2)
        assert await drift.locator("line.threshold").evaluate_all(
            "lines => lines.every(l => Number(l.getAttribute('y1')) >= 12)")
        status = await page.locator("#model-status").text_content() or ""
        shadow_points = await model_charts.first.locator("circle").count()
        drift_points = await drift.locator("circle").count()
        assert f"{shadow_points} shadow agreement point" in status, status
        assert f"{drift_points} drift point" in status, status
        human_points = await human.locator("circle").count()
        assert f"{human_points} reviewer agreement point" in status, status
        await page.set_viewport_size({"width": 800, "height": 1000})
        assert await page.evaluate("document.scrollingElement.scrollWidth") <= 800
        await page.set_viewport_size({"width": 1400, "height": 1000})
        await check_wcag(page, "models")
        await page.screenshot(path=str(artifact("operator-models.png")), full_page=True)
    finally:
        await page.close()


async def call(settings: Settings, method: str, path: str, key: str,
               body: dict | None = None) -> tuple[int, str, dict]:
    async with aiohttp.ClientSession() as session, session.request(
            method, f"http://127.0.0.1:{settings.review_web_port}{path}",
            headers={"Authorization": f"Bearer {key}"}, json=body) as response:
        return response.status, response.content_type, await response.json(content_type=None)


async def test_auditors_read_only_and_reviewers_are_refused(settings: Settings, tasks: Tasks,
                                                            browser: object) -> None:
    failed_id = tasks.failed.envelope.task_id
    page = await browser.new_page(viewport={"width": 1400, "height": 1000})  # type: ignore
    expect.set_options(timeout=30_000)
    try:
        await sign_in(page, settings, "aud")
        await expect(page.locator("#who")).to_contain_text("auditor (read-only)")
        await expect(page.locator("#s-tenant")).to_have_value("acme")
        await page.fill("#s-metadata", f"batch={tasks.marker}")
        await page.select_option("#s-status", "FAILED")
        await page.click("#s-go")
        await page.click(f'tr[data-task-id="{failed_id}"] button')
        await expect(page.locator("#t-id")).to_have_text(failed_id)
        await expect(page.locator("#timeline tbody tr").first).to_be_visible()
        await expect(page.locator("#retry")).to_be_hidden()
        await expect(page.locator("#redrive")).to_be_hidden()
        await page.screenshot(path=str(artifact("operator-auditor-timeline.png")),
                              full_page=True)
        await page.click('.tabs button[data-view="breakers"]')
        await expect(rows(page, "breakers").first).to_be_visible()
        await expect(page.locator("#breakers button.reset")).to_have_count(0)
        await page.click('.tabs button[data-view="dead-letters"]')
        await page.select_option("#dl-state", "")  # every state: the admin's test may have
        await page.click("#dl-filter button[type=submit]")  # closed the open ones
        await rows(page, "dead-letters").first.locator("button").click()
        await expect(page.locator("#dl-detail")).to_be_visible()
        await expect(page.locator("#replay")).to_be_hidden()

        # an empty key while API keys are on is answered
        await page.click("#logout")
        await page.fill("#api-key", "")
        await page.press("#api-key", "Enter")
        await expect(page.locator("#login-error")).to_contain_text("An API key is required")
        # a reviewer's key opens no operator view
        await page.fill("#api-key", "rev")
        await page.press("#api-key", "Enter")
        await expect(page.locator("#login-error")).to_contain_text(
            "may not use the operator console")
        await check_wcag(page, "operator sign-in")

        # the review console shows an auditor no action it would only be refused: no Claim,
        # Approve or Reject button, and their shortcuts do nothing (the retried admission
        # form of the first test waits for review)
        await page.goto(f"http://127.0.0.1:{settings.review_web_port}/")
        await page.fill("#api-key", "aud")
        await page.click("#login-form button[type=submit]")
        await expect(page.locator("#who")).to_contain_text("auditor (read-only)")
        await page.locator("#queue tbody tr").first.click()
        await expect(page.locator("#i-task")).not_to_be_empty()
        for button in ("#claim", "#approve", "#reject", "#modify"):
            await expect(page.locator(button)).to_be_hidden()
        await expect(page.locator("#read-only-note")).to_be_visible()
        await page.locator("body").press("c")
        await page.locator("body").press("a")
        await expect(page.locator("#status")).to_have_text("")
        await expect(page.locator("#i-state")).not_to_contain_text("claimed by")
        await check_wcag(page, "review item, auditor")
    finally:
        await page.close()

    # the services refuse the auditor's actions whatever the page shows
    status, kind, body = await call(settings, "POST", f"/api/operator/tasks/{failed_id}/retry",
                                    "aud")
    assert (status, kind, body["grpc_status"]) == (403, "application/problem+json",
                                                   "PERMISSION_DENIED"), body
    status, _, body = await call(settings, "POST", "/api/operator/breakers/reset", "aud",
                                 {"name": "anything"})
    assert status == 403, body
    # the reviewer is refused by the console itself, as problem JSON
    for path in ("/api/operator/tasks?tenant=acme", f"/api/operator/tasks/{failed_id}/timeline",
                 "/api/operator/kpis?tenant=acme"):
        status, kind, body = await call(settings, "GET", path, "rev")
        assert (status, kind) == (403, "application/problem+json"), (path, body)
        assert "reviewer" in body["detail"]
    status, _, body = await call(settings, "GET", "/api/operator/tasks?tenant=acme", "wrong")
    assert status == 401, body
    # a body nested past the parser's depth is the caller's mistake: 400, not a 500
    deep = b'{"name":' * 5000 + b"1" + b"}" * 5000
    async with aiohttp.ClientSession() as session, session.post(
            f"http://127.0.0.1:{settings.review_web_port}/api/operator/breakers/reset",
            headers={"Authorization": "Bearer aud"}, data=deep) as response:
        assert response.status == 400, await response.text()
        assert response.content_type == "application/problem+json"
    # a tenant's auditor reads only its own tenant's KPIs (read from PostgreSQL here)
    status, _, body = await call(settings, "GET", "/api/operator/kpis?tenant=globex", "aud")
    assert status == 403, body
    assert body["detail"] == "this key may not read the KPIs of tenant 'globex'", body
    status, _, body = await call(settings, "GET", "/api/operator/kpis?bucket_m=0.5", "aud")
    assert status == 400 and body["errors"][0]["field"] == "bucket", body


async def test_the_review_console_passes_wcag_aa(settings: Settings, tasks: Tasks,
                                                 browser: object) -> None:
    page = await browser.new_page(viewport={"width": 1280, "height": 900})  # type: ignore
    expect.set_options(timeout=30_000)
    try:
        await page.goto(f"http://127.0.0.1:{settings.review_web_port}/")
        await check_wcag(page, "review sign-in")
        await page.fill("#api-key", "rev")
        await page.click("#login-form button[type=submit]")
        await expect(page.locator("#who")).to_contain_text("key-2")
        await check_wcag(page, "review queue")
        # the retried admission form waits for review again
        first = page.locator("#queue tbody tr").first
        await first.click()
        await expect(page.locator("#i-task")).not_to_be_empty()
        await check_wcag(page, "review item")
        # the operator console is one link away
        await expect(page.locator('a[href="/operator"]')).to_be_visible()
    finally:
        await page.close()



async def test_stats_trend_prints_the_console_figures(settings: Settings, tasks: Tasks) -> None:
    """`switchyard stats --trend` reads the same per-bucket KPIs the console charts."""
    code, out = await switchyard(settings, "stats", "--trend", "--tenant", "acme", "--json",
                                 "--window-h", "1", "--bucket-m", "5")
    assert code == 0, out
    points = json.loads(out)
    assert len(points) == 12
    assert sum(p["tasks"] for p in points) >= 2  # the executed and the failed task at least
    assert any(p["automation_rate"] is not None for p in points)
    assert any(p["escalations_per_hour"] for p in points)
    code, out = await switchyard(settings, "stats", "--trend", "--tenant", "acme",
                                 "--bucket-m", "0.5")
    assert code == 2 and "bucket: at least 60 seconds" in out, out
