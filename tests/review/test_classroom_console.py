"""The classroom analytics page in headless chromium, on derived data the real pipeline made.

The four services run as real processes on the real broker, PostgreSQL and Triton (the
``engagement`` model scores the windows). Guardians' consents are recorded through ingest's
ConsentService, and devices' SignalFrames are written to ``classroom-signals``: ingest drops
the signals of the student without consent, pseudonymises the others and admits the frames;
the decision service windows them (2 s tumbling, 4 s hopping every 2 s, k = 3), scores,
stores and raises the session's alerts, which become review items in the counsellors' and
teachers' queues through ingest, decision and review. The first session's middle windows have
only two consenting students (withheld: fewer than k) and one student is disengaged at the
end; a second session of the same classroom follows. In the browser an admin picks the
session and reads the engagement plot (the withheld windows as gaps with their reason), the
windows table, the classroom's attendance per session, the session's alerts and the model's
fairness table; every number is checked against what the decision service stored. Neither a
student's reference nor a pseudonym reaches the page. Screenshots land in test-artifacts/.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
import pytest
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Page, expect

from switchyard import Settings
from switchyard.messaging import CLASSROOM_SIGNALS, Producer
from switchyard.rpc import create_channel
from switchyard.signals import SIGNALS_PER_SEAT
from switchyard.storage import connect
from switchyard.v1 import (
    ConsentPurpose,
    ConsentServiceStub,
    ListQueueRequest,
    Posture,
    ReviewServiceStub,
    SeatSignal,
    SetConsentRequest,
    SignalFrame,
)
from tests.polling import eventually
from tests.review.helpers import artifact

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("pipeline")]
OPS_KEY = "ops-key"
KEYS = (f"{OPS_KEY}:*:admin,aud:school:auditor,rev:school:reviewer:counsellors,"
        "tea:school:reviewer:teachers")
AXE_RULES = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa"]}}
TENANT = "school"
CLASSROOM = "room-7"
K = 3
WINDOW_S = 2
WAIT_S = 120
#: event time of the sessions: a whole number of hopping windows, an hour in the past
T0 = (int(time.time()) // 4) * 4 - 3600
CA, IS, FM = (ConsentPurpose.CONSENT_PURPOSE_CLASS_ANALYTICS,
              ConsentPurpose.CONSENT_PURPOSE_INDIVIDUAL_SUPPORT,
              ConsentPurpose.CONSENT_PURPOSE_FAIRNESS_MONITORING)
#: the school's student reference -> (seat, consents, group)
STUDENTS = {"stu-1": ("r1c1", (CA, IS, FM), "g1"), "stu-2": ("r1c2", (CA, IS, FM), "g2"),
            "stu-3": ("r2c1", (CA, FM), "g1"), "stu-4": ("r2c2", (CA, FM), "g2"),
            "stu-5": ("r3c1", (CA, FM), "g1"), "stu-6": ("r3c2", (CA, FM), "g2"),
            "stu-7": ("r4c1", (), "")}  # no consent: dropped at ingest
NAMES = list(STUDENTS)


@pytest.fixture(scope="module")
def settings(settings: Settings) -> Settings:
    return settings.replace(
        api_keys=KEYS, signal_window_s=WINDOW_S, signal_hopping_window_s=4,
        signal_hopping_step_s=2, signal_allowed_lateness_s=1, signal_idle_close_s=3,
        signal_k_anonymity=K, signal_disengaged_below=0.35, signal_disengaged_windows=2,
        signal_attendance_below=0.5, signal_alerts_per_class_per_hour=4)


def frame(session: str, second: int, present: list[str],
          disengaged: frozenset[str] = frozenset(), expected: int = 8) -> SignalFrame:
    """One classroom-second as the room camera reports it."""
    seats = []
    for name in present:
        engaged = name not in disengaged
        seats.append(SeatSignal(
            seat_id=STUDENTS[name][0], occupied=True, subject_ref=name, face_forward=engaged,
            head_down=not engaged, hand_raised=engaged and second % 3 == 0,
            posture=Posture.POSTURE_UPRIGHT if engaged else Posture.POSTURE_SLOUCHED))
    f = SignalFrame(tenant_id=TENANT, classroom_id=CLASSROOM, session_id=session,
                    device_id="cam-1", seats=seats, expected_students=expected)
    f.observed_at.FromSeconds(T0 + second)
    return f


#: seconds -> who is there: 4 consenting students and the one without consent, then 2
#: (below k), then the 4 with the first one disengaged
FIRST = [(s, NAMES[:4] + ["stu-7"], frozenset()) for s in range(4)] + \
    [(s, NAMES[2:4], frozenset()) for s in range(4, 8)] + \
    [(s, NAMES[:4], frozenset(NAMES[:1])) for s in range(8, 16)]
#: the consenting students present in each 2 s tumbling window of the first session
PRESENT = [4, 4, 2, 2, 4, 4, 4, 4]
#: the signals dropped for want of consent in each window: stu-7's seat, 2 seconds
DROPPED = [2 * SIGNALS_PER_SEAT, 2 * SIGNALS_PER_SEAT, 0, 0, 0, 0, 0, 0]


@dataclass(frozen=True)
class Derived:
    windows: list[asyncpg.Record]      # the first session's tumbling windows, as stored
    alerts: list[asyncpg.Record]       # its alerts
    groups: list[asyncpg.Record]       # fairness counts per model version and group
    pseudonyms: set[str]               # every pseudonym the decision service stored


async def _rows(conn: asyncpg.Connection, sql: str, *args: Any, count: int
                ) -> list[asyncpg.Record] | None:
    rows = await conn.fetch(sql, *args)
    return rows if len(rows) >= count else None


async def give_consents(settings: Settings) -> None:
    channel = create_channel(f"127.0.0.1:{settings.ingest_grpc_port}", OPS_KEY)
    consent = ConsentServiceStub(channel)
    try:
        for name, (_, purposes, group) in STUDENTS.items():
            for purpose in purposes:
                await consent.SetConsent(SetConsentRequest(
                    tenant_id=TENANT, subject_ref=name, purpose=purpose, granted=True,
                    guardian_ref=f"guardian-of-{name}", group=group if purpose == FM else ""))
    finally:
        await channel.close()
    # every ingest replica reloads consents every signal_consent_refresh_s
    await asyncio.sleep(3 * settings.signal_consent_refresh_s + 1)


@pytest.fixture(scope="module")
async def derived(settings: Settings) -> AsyncIterator[Derived]:
    await give_consents(settings)
    producer = Producer(settings)
    await producer.start()
    try:
        frames = [frame("mon-1", s, present, off) for s, present, off in FIRST]
        # the second session, a minute later: 6 of 8 students, engaged
        frames += [frame("mon-2", 60 + s, NAMES[:6]) for s in range(6)]
        for f in frames:
            await producer.send(CLASSROOM_SIGNALS, f.classroom_id, f)
    finally:
        await producer.stop()
    conn = await connect(settings)
    try:
        windows = await eventually(lambda: _rows(
            conn, "SELECT * FROM engagement_windows WHERE classroom_id = $1 AND session_id = "
            "'mon-1' AND kind = 1 ORDER BY window_start", CLASSROOM, count=len(PRESENT)),
            "the first session's windows", WAIT_S, 0.5)
        await eventually(lambda: _rows(
            conn, "SELECT * FROM engagement_windows WHERE classroom_id = $1 AND session_id = "
            "'mon-2' AND kind = 1", CLASSROOM, count=3), "the second session's windows",
            WAIT_S, 0.5)
        alerts = await eventually(lambda: _rows(
            conn, "SELECT * FROM engagement_alerts WHERE classroom_id = $1 AND session_id = "
            "'mon-1' ORDER BY kind", CLASSROOM, count=2), "the first session's alerts",
            WAIT_S, 0.5)
        await asyncio.sleep(2)  # nothing more comes (the sessions are closed by now)
        groups = await conn.fetch("SELECT * FROM engagement_group_counts WHERE tenant_id = $1 "
                                  "ORDER BY model_version, group_name", TENANT)
        pseudonyms = {r["subject"] for r in await conn.fetch(
            "SELECT subject FROM engagement_subject_windows WHERE tenant_id = $1 UNION "
            "SELECT subject FROM engagement_alerts WHERE tenant_id = $1", TENANT) if r["subject"]}
        yield Derived(windows, alerts, groups, pseudonyms)
    finally:
        await conn.close()


def pct(value: float) -> str:
    """As the page writes a share (analytics.js: one decimal)."""
    return f"{value * 100:.1f}%"


async def tab_to(page: Page, selector: str, presses: int = 60) -> None:
    """Press Tab until ``selector`` has the focus (keyboard only); the focus must be visible."""
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


async def test_the_page_plots_the_sessions_derived_data(settings: Settings, derived: Derived,
                                                        browser: object) -> None:
    windows = derived.windows
    assert [w["students"] for w in windows] == PRESENT  # the data is what was sent
    assert [w["suppressed"] for w in windows] == [n < K for n in PRESENT]
    assert [w["dropped_no_consent"] for w in windows] == DROPPED
    # per-student rows of the two students with individual-support consent only
    assert len(derived.pseudonyms) == 2
    page = await browser.new_page(viewport={"width": 1400, "height": 1000})  # type: ignore
    expect.set_options(timeout=30_000)
    try:
        await page.goto(f"http://127.0.0.1:{settings.review_web_port}/analytics")
        await page.fill("#api-key", OPS_KEY)
        await page.press("#api-key", "Enter")
        await expect(page.locator("#who")).to_contain_text("admin")
        await page.fill("#a-tenant", TENANT)
        await page.fill("#a-classroom", CLASSROOM)
        await page.click("#sessions-go")
        sessions = page.locator("#sessions tbody tr")
        await expect(sessions).to_have_count(2)
        # newest first
        assert [await r.get_attribute("data-session") for r in await sessions.all()] == [
            "mon-2", "mon-1"]
        first = page.locator('#sessions tr[data-session="mon-1"] td')
        await expect(first.nth(3)).to_have_text(str(len(PRESENT)))
        shown = [w["engagement"] for w in windows if not w["suppressed"]]
        await expect(first.nth(4)).to_have_text(pct(sum(shown) / len(shown)))
        await expect(first.nth(5)).to_have_text("4 of 8")
        await expect(first.nth(6)).to_have_text(str(len(derived.alerts)))
        await check_wcag(page, "sessions")
        await page.screenshot(path=str(artifact("analytics-sessions.png")), full_page=True)

        # keyboard only: Tab to the session's Show button, Enter
        await tab_to(page, '#sessions tr[data-session="mon-1"] button')
        await page.keyboard.press("Enter")
        await expect(page.locator("#se-id")).to_have_text("mon-1")
        await expect(page.locator("#h-session")).to_be_focused()
        await expect(page.locator("#se-k")).to_have_text(f"{K} students")
        await expect(page.locator("#se-windows")).to_have_text(str(len(PRESENT)))

        # -- the plot: a point per window with k students or more, the others gaps with
        # their reason, and the line broken there
        chart = page.locator("#engagement-chart figure")
        await expect(chart.locator("svg circle")).to_have_count(sum(n >= K for n in PRESENT))
        gaps = chart.locator("rect.gap-band")
        await expect(gaps).to_have_count(sum(n < K for n in PRESENT))
        for gap in await gaps.all():
            assert await gap.get_attribute("data-gap") == f"fewer than {K} students"
        path = await chart.locator("svg path").get_attribute("d") or ""
        assert path.count("M") == 2, path  # before and after the gap
        tips = [await t.text_content() for t in await chart.locator("circle title").all()]
        assert [tip.rsplit(": ", 1)[1] for tip in tips] == [pct(v) for v in shown]
        await expect(page.locator("#suppressed-note")).to_have_text(
            f"2 windows of {len(PRESENT)} shown as gaps: fewer than {K} students "
            "(engagement withheld).")

        # -- the windows table: every number as stored
        rows = page.locator("#windows tbody tr")
        await expect(rows).to_have_count(len(PRESENT))
        for row, stored in zip(await rows.all(), windows, strict=True):
            cells = [c.strip() for c in await row.locator("td").all_text_contents()]
            engagement = (f"withheld: fewer than {K} students" if stored["suppressed"]
                          else pct(stored["engagement"]))
            assert cells[2:9] == [
                str(stored["students"]), engagement,
                f"{stored['attendance']} of {stored['expected_students']}",
                str(stored["signals"]), str(stored["late_signals"]),
                str(stored["duplicate_signals"]), str(stored["dropped_no_consent"])], cells
            assert stored["signals"] == WINDOW_S * stored["students"] * SIGNALS_PER_SEAT
            if stored["suppressed"]:
                assert cells[9] == ""  # no drivers for a withheld window
            else:
                top = json.loads(stored["drivers"])[0]["feature"]
                assert cells[9].startswith(top), cells[9]

        # -- the classroom's attendance per session
        trend = page.locator("#attendance tbody tr")
        await expect(trend).to_have_count(2)
        await expect(page.locator('#attendance tr[data-session="mon-1"] td').nth(4)
                     ).to_have_text(pct(4 / 8))
        await expect(page.locator('#attendance tr[data-session="mon-2"] td').nth(4)
                     ).to_have_text(pct(6 / 8))
        await expect(page.locator("#attendance-chart svg circle")).to_have_count(2)

        # -- the session's alerts: kind, seat, score; never the pseudonym
        alerts = page.locator("#alerts tbody tr")
        await expect(alerts).to_have_count(len(derived.alerts))
        disengaged = next(a for a in derived.alerts if a["subject"])
        row = page.locator('#alerts tr[data-kind="SUSTAINED_DISENGAGEMENT"] td')
        await expect(row.nth(2)).to_have_text("r1c1")
        await expect(row.nth(3)).to_have_text(pct(disengaged["score"]))
        await expect(row.nth(4)).to_have_text(str(disengaged["windows"]))
        await expect(page.locator('#alerts tr[data-kind="ATTENDANCE_ANOMALY"] td').nth(3)
                     ).to_have_text(pct(2 / 8))
        html = await page.content()
        assert not any(name in html for name in [*STUDENTS, *derived.pseudonyms])
        await check_wcag(page, "session")
        await page.screenshot(path=str(artifact("analytics-session.png")), full_page=True)

        # -- fairness per model version and group, as counted
        await page.click("#fairness-go")
        fair = page.locator("#fairness tbody tr")
        await expect(fair).to_have_count(len(derived.groups))
        for stored in derived.groups:
            cells = page.locator(f'#fairness tr[data-group="{stored["group_name"]}"] td')
            await expect(cells.nth(2)).to_have_text(str(stored["windows"]))
            await expect(cells.nth(3)).to_have_text(str(stored["flagged"]))
        await expect(page.locator("#fairness-status")).to_have_text("1 model version.")
        # each group's alert rate is flagged / windows; the parity difference is the largest
        # rate minus the smallest, against the configured limit
        rates = [s["flagged"] / s["windows"] for s in derived.groups]
        for stored, rate in zip(derived.groups, rates, strict=True):
            cells = page.locator(f'#fairness tr[data-group="{stored["group_name"]}"] td')
            await expect(cells.nth(4)).to_have_text(pct(rate))
        limit = settings.engagement_max_parity_difference
        parity = max(rates) - min(rates)
        await expect(fair.first.locator("td").nth(5)).to_have_text(
            f"{pct(parity)} (limit {pct(limit)})" + (": over the limit" if parity > limit
                                                     else ""))
        await page.set_viewport_size({"width": 800, "height": 1000})
        assert await page.evaluate("document.scrollingElement.scrollWidth") <= 800
        await page.set_viewport_size({"width": 1400, "height": 1000})
        await check_wcag(page, "fairness")
        await page.screenshot(path=str(artifact("analytics-fairness.png")), full_page=True)
    finally:
        await page.close()


async def test_the_sessions_alerts_wait_for_a_check_in(settings: Settings, derived: Derived,
                                                       browser: object) -> None:
    """Raised by the engagement processor, submitted to intake, decided by the pack: each
    alert is a review item in its queue. A counsellor opens the disengagement alert in the
    review console (the pseudonym withheld), checks in and approves: the check-in is recorded
    in the analytics system."""
    channel = create_channel(f"127.0.0.1:{settings.review_grpc_port}", OPS_KEY)
    review = ReviewServiceStub(channel)
    wanted = {a["alert_id"]: ("counsellors" if a["subject"] else "teachers")
              for a in derived.alerts if not a["suppressed"]}
    assert len(wanted) == 2
    try:
        async def queued() -> dict[str, Any] | None:
            items = (await review.ListQueue(ListQueueRequest(page_size=500))).items
            found = {i.escalation.task.idempotency_key: i.escalation
                     for i in items if i.escalation.task.idempotency_key in wanted}
            return found if len(found) == len(wanted) else None
        found = await eventually(queued, "the alerts' review items", WAIT_S, 0.5)
    finally:
        await channel.close()
    assert {alert_id: (esc.queue, esc.proposed_decision.rule)
            for alert_id, esc in found.items()} == {
        alert_id: (queue, "sustained_disengagement" if queue == "counsellors"
                   else "attendance_anomaly") for alert_id, queue in wanted.items()}
    for esc in found.values():
        explanation = esc.proposed_decision.explanation
        assert not any(name in explanation for name in [*STUDENTS, *derived.pseudonyms]), \
            explanation
        assert "Drivers (feature, value, contribution): [" in explanation, explanation
        if esc.queue == "counsellors":
            assert explanation.startswith(
                f"Check in with the student in seat r1c1 of class {CLASSROOM} (session mon-1"
            ), explanation
    checkin = next(esc for esc in found.values() if esc.queue == "counsellors")
    # each queue is its item's reviewer group: a teacher never sees a counsellor's item
    # about one student (an outside data-protection admin's teacher key saw and approved one)
    assert all(esc.reviewer_group == esc.queue for esc in found.values()), found
    channel = create_channel(f"127.0.0.1:{settings.review_grpc_port}", "tea")
    try:
        seen = {i.escalation.task_id for i in (await ReviewServiceStub(channel).ListQueue(
            ListQueueRequest(page_size=500))).items}
    finally:
        await channel.close()
    assert checkin.task_id not in seen
    assert {esc.task_id for esc in found.values() if esc.queue == "teachers"} <= seen

    page = await browser.new_page(viewport={"width": 1280, "height": 1000})  # type: ignore
    expect.set_options(timeout=30_000)
    try:
        await page.goto(f"http://127.0.0.1:{settings.review_web_port}/")
        await page.fill("#api-key", "rev")
        await page.click("#login-form button[type=submit]")
        await expect(page.locator("#who")).to_contain_text("key-2")
        await page.fill("#f-queue", "counsellors")
        await page.press("#f-queue", "Enter")
        row = page.locator(f'#queue tr[data-task-id="{checkin.task_id}"]')
        await row.click()
        await expect(page.locator("#i-task")).to_have_text(checkin.task_id)
        await expect(page.locator("#i-queue")).to_have_text("counsellors")
        await expect(page.locator("#i-explanation")).to_contain_text(
            "Check in with the student in seat r1c1")
        await expect(page.locator('#i-fields tr[data-field="seat"]')).to_contain_text("r1c1")
        html = await page.content()
        assert not any(name in html for name in [*STUDENTS, *derived.pseudonyms])
        await page.screenshot(path=str(artifact("analytics-checkin-review.png")),
                              full_page=True)
        await page.keyboard.press("c")
        await expect(page.locator("#status")).to_have_text("Claimed by key-2.")
        await page.keyboard.press("a")
        await expect(page.locator("#status")).to_contain_text("Approved: decision")
    finally:
        await page.close()

    conn = await connect(settings)
    try:
        effect = await eventually(lambda: conn.fetchrow(
            f'SELECT system, collection, body FROM "{settings.postgres_schema}_downstream".'
            "effects WHERE task_id = $1", checkin.task_id), "the recorded check-in", WAIT_S, 0.5)
    finally:
        await conn.close()
    body = json.loads(effect["body"]) if isinstance(effect["body"], str) else effect["body"]
    assert (effect["system"], effect["collection"]) == ("analytics", "checkins")
    assert body["alert_id"] == checkin.task.idempotency_key and body["checked_in"] is True
    assert not any(name in json.dumps(body) for name in [*STUDENTS, *derived.pseudonyms])


async def call(settings: Settings, path: str, key: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.get(
            f"http://127.0.0.1:{settings.review_web_port}{path}",
            headers={"Authorization": f"Bearer {key}"}) as response:
        return response.status, await response.json(content_type=None)


async def test_auditors_read_and_reviewers_are_refused(settings: Settings,
                                                       derived: Derived) -> None:
    status, body = await call(settings, f"/api/analytics/sessions?classroom={CLASSROOM}", "aud")
    assert status == 200 and {s["session_id"] for s in body["sessions"]} == {"mon-1", "mon-2"}
    status, body = await call(
        settings, f"/api/analytics/engagement?classroom={CLASSROOM}&session=mon-1", "aud")
    assert status == 200 and len(body["windows"]) == len(PRESENT)
    # neither a student's reference nor a pseudonym
    assert not any(name in json.dumps(body) for name in [*STUDENTS, *derived.pseudonyms])
    status, body = await call(settings, "/api/analytics/sessions", "rev")
    assert status == 403 and "reviewer" in body["detail"], body
    status, body = await call(settings, "/api/analytics/engagement?classroom=x", "aud")
    assert status == 400 and body["errors"] == [{"field": "session", "detail": "required"}]
    # decision refuses another tenant's data to a tenant's auditor
    status, body = await call(settings, "/api/analytics/sessions?tenant=other", "aud")
    assert status == 403, body
