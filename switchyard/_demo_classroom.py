"""The demo's classroom section: simulated classrooms through the signals pipeline, then an
engagement summary read back from the decision service's AnalyticsService.

A school (tenant ``northwind-edu``) has a few classrooms of 24 seats; guardians of about 90% of
the students consented to class analytics (most of those to individual support too). Twenty
minutes of class are replayed in about half a minute (the device clocks are in the past, so
ingest takes every frame): students drift in and out of engagement, some disengage for
minutes, one classroom has an attendance problem and, with three classrooms or more, the last
one has a faulty camera flooding the stream with noise (its alerts are rate-limited). A few
frames arrive twice or late, as they do from real devices. The section then waits for the
engagement windows to close and prints, per class session, what the analytics service keeps:
windows, mean engagement, attendance, and the alerts raised and held back.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import grpc
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from switchyard._grpc import client_channel
from switchyard._settings import Settings
from switchyard.signals import (
    ClassroomSimulator,
    SignalProducer,
    SimulationConfig,
    consent_plan,
    grant_consents,
    prepare,
)
from switchyard.v1 import (
    AlertKind,
    AnalyticsServiceStub,
    ConsentPurpose,
    GetSessionEngagementRequest,
    GetSessionEngagementResponse,
    ListSessionsRequest,
    SessionSummary,
)

CLASS_TENANT = "northwind-edu"
SEATS = 24
CLASS_MINUTES = 20
#: Wall-clock seconds the twenty minutes of class are sent in.
REPLAY_S = 30.0
#: How long to wait for the windows to close after the last frame was sent.
SETTLE_S = 60.0


@dataclass
class ClassroomResult:
    """What the section sent and what the analytics service kept of it."""

    frames: int = 0
    signals: int = 0
    duplicates: int = 0
    late: int = 0
    flood: int = 0
    students: int = 0
    consented: int = 0
    individual: int = 0
    send_s: float = 0.0
    sessions: list[tuple[SessionSummary, GetSessionEngagementResponse]] = \
        field(default_factory=list)
    skipped: str = ""
    config: SimulationConfig | None = None


def demo_config(classrooms: int, seed: int, minutes: int = CLASS_MINUTES) -> SimulationConfig:
    seconds = minutes * 60
    start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(seconds=seconds + 60)
    return SimulationConfig(
        classrooms=classrooms, seats=SEATS, seconds=seconds, tenant_id=CLASS_TENANT,
        seed=seed, start=start, anomalous_classrooms=1,
        flooding_classrooms=1 if classrooms >= 3 else 0, flood_factor=4,
        duplicate_rate=0.02, late_rate=0.01, late_by_s=(5, 40), disengage_per_hour=2.0)


async def wait_for_windows(analytics: AnalyticsServiceStub, sessions: set[str],
                           expected_windows: int, deadline: float
                           ) -> dict[str, SessionSummary]:
    """The sessions' summaries once each has ``expected_windows`` tumbling windows (or at
    the deadline, as they are)."""
    found: dict[str, SessionSummary] = {}
    while True:
        try:
            page = await analytics.ListSessions(ListSessionsRequest(
                tenant_id=CLASS_TENANT, page_size=500), timeout=10)
        except grpc.aio.AioRpcError:   # the decision service restarting: ask again shortly
            page = None
        if page is not None:
            found = {s.session_id: s for s in page.sessions if s.session_id in sessions}
            if len(found) == len(sessions) and all(
                    s.windows >= expected_windows for s in found.values()):
                return found
        if time.monotonic() > deadline:
            return found
        await asyncio.sleep(1.0)


async def run_classrooms(settings: Settings, classrooms: int, seed: int,
                         progress: Console | None = None, minutes: int = CLASS_MINUTES,
                         replay_s: float = REPLAY_S) -> ClassroomResult:
    config = demo_config(classrooms, seed, minutes)
    result = ClassroomResult(config=config)
    simulator = ClassroomSimulator(config)
    grants = consent_plan(config, class_analytics=0.9)
    result.students = classrooms * SEATS
    result.consented = sum(g.purpose == ConsentPurpose.CONSENT_PURPOSE_CLASS_ANALYTICS
                           for g in grants)
    result.individual = sum(g.purpose == ConsentPurpose.CONSENT_PURPOSE_INDIVIDUAL_SUPPORT
                            for g in grants)
    try:
        await grant_consents(settings, grants)
    except grpc.aio.AioRpcError as exc:   # e.g. a stack without the consent registry
        result.skipped = f"ingest refused the consents ({exc.code().name}: {exc.details()})"
        return result
    await asyncio.sleep(2 * settings.signal_consent_refresh_s)   # ingest reloads consents
    frames = [prepare(e) for e in simulator.emissions()]
    if progress is not None:
        progress.print(f"classrooms: sending {minutes} minutes of class from "
                       f"{classrooms} classrooms ({len(frames)} frames) in about "
                       f"{replay_s:.0f}s ...")
    async with SignalProducer(settings) as producer:
        report = await producer.produce(frames, rate=len(frames) / replay_s)
    result.frames, result.signals, result.send_s = report.frames, report.signals, report.seconds
    result.duplicates, result.late, result.flood = report.duplicates, report.late, report.flood
    sessions = {room.session_id for room in simulator.classrooms}
    channel = client_channel(settings, f"127.0.0.1:{settings.decision_grpc_port}")
    try:
        analytics = AnalyticsServiceStub(channel)
        # every tumbling window but the last closes as later frames arrive; the last one
        # when the classroom has been quiet for signal_idle_close_s
        expected = int(config.seconds // settings.signal_window_s)
        summaries = await wait_for_windows(analytics, sessions, expected,
                                           time.monotonic() + SETTLE_S
                                           + settings.signal_idle_close_s)
        for room in simulator.classrooms:
            summary = summaries.get(room.session_id)
            if summary is None:
                continue
            detail = await analytics.GetSessionEngagement(GetSessionEngagementRequest(
                tenant_id=CLASS_TENANT, classroom_id=room.id, session_id=room.session_id),
                timeout=10)
            result.sessions.append((summary, detail))
    finally:
        await channel.close()
    if not result.sessions:
        result.skipped = "no engagement windows came back from the decision service"
    return result


def classroom_table(result: ClassroomResult) -> Table:
    config = result.config or demo_config(1, 0)
    table = Table(title="Classrooms: engagement per class session (derived data only)",
                  title_justify="left")
    for column in ("classroom", "windows", "engagement", "attendance",
                   "disengagement alerts", "attendance alerts", "held back"):
        table.add_column(column, justify="left" if column == "classroom" else "right")
    flooding = {f"room-{i + 1:03d}" for i in range(config.classrooms
                                                  - config.flooding_classrooms,
                                                  config.classrooms)}
    raised: Counter[int] = Counter()
    held = 0
    for summary, detail in result.sessions:
        kinds = Counter(a.kind for a in detail.alerts)
        raised.update(kinds)
        held_here = sum(a.suppressed_before for a in detail.alerts)
        held += held_here
        note = " (attendance problem)" if summary.classroom_id == "room-001" else \
            " (flooding camera)" if summary.classroom_id in flooding else ""
        table.add_row(
            escape(summary.classroom_id + note), str(summary.windows),
            f"{summary.engagement:.0%}" if summary.HasField("engagement") else "withheld",
            f"{summary.attendance}/{summary.expected_students}",
            str(kinds[AlertKind.ALERT_KIND_SUSTAINED_DISENGAGEMENT]),
            str(kinds[AlertKind.ALERT_KIND_ATTENDANCE_ANOMALY]), str(held_here))
    table.caption = (
        f"{result.frames} frames ({result.signals:,} signals; {result.duplicates} sent twice, "
        f"{result.late} late, {result.flood} from the flooding camera) sent in "
        f"{result.send_s:.0f}s; consent: class analytics {result.consented} of "
        f"{result.students} students, individual support {result.individual}. Alerts raised: "
        f"{raised[AlertKind.ALERT_KIND_SUSTAINED_DISENGAGEMENT]} sustained disengagement, "
        f"{raised[AlertKind.ALERT_KIND_ATTENDANCE_ANOMALY]} attendance anomaly; {held} held "
        f"back by the per-class rate limit before them"
    )
    return table


def classroom_section(settings: Settings, console: Console, classrooms: int, seed: int
                      ) -> ClassroomResult:
    """Run the section and print its table (or why it was left out)."""
    result = asyncio.run(run_classrooms(settings, classrooms, seed, console))
    if result.skipped:
        console.print(f"classrooms left out: {escape(result.skipped)}")
    else:
        console.print(classroom_table(result))
    return result
