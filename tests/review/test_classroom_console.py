"""The classroom analytics page in headless chromium, on derived data the real pipeline made.

The four services run as real processes on the real broker, PostgreSQL and Triton (the
``engagement`` model scores the windows). AdmittedFrames are written to
``classroom-signals-admitted`` as ingest's signal processor writes them, with short windows
(2 s tumbling, 4 s hopping every 2 s, k = 3): a session whose middle windows have only two
students (withheld: fewer than k), one student disengaged at the end, and a second session of
the same classroom. The decision service windows, scores and stores them and raises the
session's alerts, which become review items in the counsellors' and teachers' queues through
ingest, decision and review. In the browser an admin picks the session and reads the
engagement plot (the withheld windows as gaps with their reason), the windows table, the
classroom's attendance per session, the session's alerts and the model's fairness table; every
number is checked against what the decision service stored. No student pseudonym reaches the
page. Screenshots land in test-artifacts/.
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

from services.decision.engagement.windows import SEAT_SIGNALS
from switchyard import Settings
from switchyard._db import connect
from switchyard._grpc import create_channel
from switchyard._kafka import Producer
from switchyard._topics import SIGNALS_ADMITTED
from switchyard.v1 import (
    AdmittedFrame,
    AdmittedSeat,
    ListQueueRequest,
    Posture,
    ReviewServiceStub,
    SeatSignal,
)
from tests.polling import eventually
from tests.review.helpers import artifact

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("pipeline")]
OPS_KEY = "ops-key"
KEYS = f"{OPS_KEY}:*:admin,aud:school:auditor,rev:school:reviewer"
AXE_RULES = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa"]}}
TENANT = "school"
CLASSROOM = "room-7"
K = 3
WINDOW_S = 2
WAIT_S = 120
#: event time of the sessions: a whole number of hopping windows, an hour in the past
T0 = (int(time.time()) // 4) * 4 - 3600
#: pseudonym -> (seat, individual-support consent, group)
STUDENTS = {"s_" + "a1" * 16: ("r1c1", True, "g1"), "s_" + "b2" * 16: ("r1c2", True, "g2"),
            "s_" + "c3" * 16: ("r2c1", False, "g1"), "s_" + "d4" * 16: ("r2c2", False, "g2"),
            "s_" + "e5" * 16: ("r3c1", False, "g1"), "s_" + "f6" * 16: ("r3c2", False, "g2")}
NAMES = list(STUDENTS)


@pytest.fixture(scope="module")
def settings(settings: Settings) -> Settings:
    return settings.replace(
        api_keys=KEYS, signal_window_s=WINDOW_S, signal_hopping_window_s=4,
        signal_hopping_step_s=2, signal_allowed_lateness_s=1, signal_idle_close_s=3,
        signal_k_anonymity=K, signal_disengaged_below=0.35, signal_disengaged_windows=2,
        signal_attendance_below=0.5, signal_alerts_per_class_per_hour=4)


def frame(session: str, second: int, present: list[str], disengaged: frozenset[str] = frozenset(),
          expected: int = 8) -> AdmittedFrame:
    """One classroom-second as ingest admits it (pseudonyms, consent marks)."""
    seats = []
    for name in present:
        seat, individual, group = STUDENTS[name]
        engaged = name not in disengaged
        seats.append(AdmittedSeat(seat=SeatSignal(
            seat_id=seat, occupied=True, subject_ref=name, face_forward=engaged,
            head_down=not engaged, hand_raised=engaged and second % 3 == 0,
            posture=Posture.POSTURE_UPRIGHT if engaged else Posture.POSTURE_SLOUCHED),
            individual=individual, group=group))
    f = AdmittedFrame(tenant_id=TENANT, classroom_id=CLASSROOM, session_id=session,
                      device_id="cam-1", seats=seats, expected_students=expected,
                      term="2026-09-01", audio_level=0.3, signals=SEAT_SIGNALS * len(seats))
    f.observed_at.FromSeconds(T0 + second)
    return f


#: seconds -> who is there: 4 students, then 2 (below k), then 4 with the first disengaged
FIRST = [(s, NAMES[:4], frozenset()) for s in range(4)] + \
    [(s, NAMES[2:4], frozenset()) for s in range(4, 8)] + \
    [(s, NAMES[:4], frozenset(NAMES[:1])) for s in range(8, 16)]
#: the students present in each 2 s tumbling window of the first session
PRESENT = [4, 4, 2, 2, 4, 4, 4, 4]


@dataclass(frozen=True)
class Derived:
    windows: list[asyncpg.Record]      # the first session's tumbling windows, as stored
    alerts: list[asyncpg.Record]       # its alerts
    groups: list[asyncpg.Record]       # fairness counts per model version and group


async def _rows(conn: asyncpg.Connection, sql: str, *args: Any, count: int
                ) -> list[asyncpg.Record] | None:
    rows = await conn.fetch(sql, *args)
    return rows if len(rows) >= count else None


@pytest.fixture(scope="module")
async def derived(settings: Settings) -> AsyncIterator[Derived]:
    producer = Producer(settings)
    await producer.start()
    try:
        frames = [frame("mon-1", s, present, off) for s, present, off in FIRST]
        # the second session, a minute later: 6 of 8 students, engaged
        frames += [frame("mon-2", 60 + s, NAMES) for s in range(6)]
        for f in frames:
            await producer.send(SIGNALS_ADMITTED, f.classroom_id, f)
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
        yield Derived(windows, alerts, groups)
    finally:
        await conn.close()


def pct(value: float) -> str:
    """As the page writes a share (analytics.js: one decimal)."""
    return f"{value * 100:.1f}%"


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

        await page.click('#sessions tr[data-session="mon-1"] button')
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
            assert stored["signals"] == WINDOW_S * stored["students"] * SEAT_SIGNALS
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
        assert not any(name in html for name in STUDENTS)
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


async def test_the_sessions_alerts_wait_for_a_check_in(settings: Settings,
                                                       derived: Derived) -> None:
    """Raised by the engagement processor, submitted to intake, decided by the pack: each
    alert is a review item in its queue."""
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
        assert not any(name in explanation for name in STUDENTS), explanation
        assert "Drivers (feature, value, contribution): [" in explanation, explanation
        if esc.queue == "counsellors":
            assert explanation.startswith(
                f"Check in with the student in seat r1c1 of class {CLASSROOM} (session mon-1"
            ), explanation


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
    assert not any(name in json.dumps(body) for name in STUDENTS)  # no pseudonym
    status, body = await call(settings, "/api/analytics/sessions", "rev")
    assert status == 403 and "reviewer" in body["detail"], body
    status, body = await call(settings, "/api/analytics/engagement?classroom=x", "aud")
    assert status == 400 and body["errors"] == [{"field": "session", "detail": "required"}]
    # decision refuses another tenant's data to a tenant's auditor
    status, body = await call(settings, "/api/analytics/sessions?tenant=other", "aud")
    assert status == 403, body
