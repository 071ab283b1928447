"""The engagement processor through the real stack: the broker, PostgreSQL, Triton's
``engagement`` model and the decision service as a real process.

AdmittedFrames are written straight to ``classroom-signals-admitted`` (as ingest's signal
processor would) with short windows (2 s tumbling, 4 s hopping every 2 s), then what the
decision service stored, published and serves is read back.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import asyncpg
import grpc
import pytest
from aiokafka import AIOKafkaConsumer

from services.decision.engagement.alerts import utc
from services.decision.engagement.erasure import purge_engagement
from switchyard import Settings
from switchyard.messaging import (
    ENGAGEMENT_WINDOWS,
    INTAKE,
    SIGNALS_ADMITTED,
    SUBJECT_ERASURES,
    Producer,
)
from switchyard.rpc import create_channel
from switchyard.signals import SIGNALS_PER_SEAT
from switchyard.storage import connect
from switchyard.v1 import (
    AdmittedFrame,
    AdmittedSeat,
    AnalyticsServiceStub,
    EngagementWindow,
    GetAttendanceTrendRequest,
    GetFairnessReportRequest,
    GetSessionEngagementRequest,
    ListSessionsRequest,
    Posture,
    SeatSignal,
    SubjectErasure,
    WindowKind,
)
from tests.executor.harness import Service
from tests.observed import dead_letters, metric_sum
from tests.polling import eventually

WINDOW_S = 2
K = 3
ALERTS_PER_HOUR = 2
TENANT = "school"
KEYS = "ops:*:admin,aud:school:auditor,adm:school:admin,rev:school:reviewer,oth:elsewhere:admin"
#: event time of the tests' sessions: a whole number of hopping windows in the past
T0 = (int(time.time()) // 4) * 4 - 3600


@pytest.fixture(scope="module")
def engagement_settings(settings: Settings) -> Settings:
    return settings.replace(
        signal_window_s=WINDOW_S, signal_hopping_window_s=4, signal_hopping_step_s=2,
        signal_allowed_lateness_s=1, signal_idle_close_s=3, signal_k_anonymity=K,
        signal_disengaged_below=0.35, signal_disengaged_windows=2,
        signal_attendance_below=0.5, signal_alerts_per_class_per_hour=ALERTS_PER_HOUR,
        signal_batch_window_ms=20, log_format="text", api_keys=KEYS)


@pytest.fixture(scope="module")
def decision(engagement_settings: Settings, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[Service]:
    service = Service("decision", engagement_settings, tmp_path_factory.mktemp("decision"))
    service.start()
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture
async def db(engagement_settings: Settings, decision: Service
             ) -> AsyncIterator[asyncpg.Connection]:
    conn = await connect(engagement_settings)
    yield conn
    await conn.close()


@pytest.fixture
async def producer(engagement_settings: Settings) -> AsyncIterator[Producer]:
    p = Producer(engagement_settings)
    await p.start()
    yield p
    await p.stop()


@pytest.fixture
async def analytics(engagement_settings: Settings, decision: Service
                    ) -> AsyncIterator[AnalyticsServiceStub]:
    channel = create_channel(f"127.0.0.1:{engagement_settings.decision_grpc_port}", "aud")
    yield AnalyticsServiceStub(channel)
    await channel.close()


@pytest.fixture
async def stub_for(engagement_settings: Settings, decision: Service
                   ) -> AsyncIterator[Callable[[str], AnalyticsServiceStub]]:
    channels: list[grpc.aio.Channel] = []

    def make(key: str) -> AnalyticsServiceStub:
        channels.append(create_channel(f"127.0.0.1:{engagement_settings.decision_grpc_port}",
                                       key))
        return AnalyticsServiceStub(channels[-1])
    yield make
    for channel in channels:
        await channel.close()


def frame(classroom: str, session: str, second: int, students: dict[str, tuple[bool, str]],
          engaged: bool = True, expected: int = 0, checked_in: tuple[str, ...] = ()
          ) -> AdmittedFrame:
    """One classroom-second: ``students`` maps a pseudonym to (individual consent, group)."""
    seats = [AdmittedSeat(
        seat=SeatSignal(seat_id=f"seat-{name}", occupied=True, subject_ref=name,
                        face_forward=engaged, head_down=not engaged,
                        posture=(Posture.POSTURE_UPRIGHT if engaged
                                 else Posture.POSTURE_SLOUCHED)),
        individual=individual, group=group) for name, (individual, group) in students.items()]
    f = AdmittedFrame(tenant_id=TENANT, classroom_id=classroom, session_id=session,
                      device_id="cam-1", seats=seats, expected_students=expected,
                      checked_in=list(checked_in), term="2026-09-01", audio_level=0.4,
                      signals=SIGNALS_PER_SEAT * len(seats) + len(checked_in))
    f.observed_at.FromSeconds(T0 + second)
    return f


async def send(producer: Producer, frames: list[AdmittedFrame], copies: int = 1) -> None:
    futures = [await producer.send_nowait(SIGNALS_ADMITTED, f.classroom_id, f)
               for f in frames for _ in range(copies)]
    for future in futures:
        await future


async def tumbling_rows(db: asyncpg.Connection, classroom: str, session: str,
                        count: int) -> list[asyncpg.Record]:
    async def rows() -> list[asyncpg.Record] | None:
        got = await db.fetch(
            "SELECT * FROM engagement_windows WHERE classroom_id = $1 AND session_id = $2 "
            "AND kind = 1 ORDER BY window_start", classroom, session)
        return got if len(got) >= count else None
    return await eventually(rows, f"{count} tumbling windows of {session}", 90, 0.3)


STUDENTS = {"s_a": (True, "g1"), "s_b": (True, "g2"), "s_c": (False, "g1"),
            "s_d": (False, "g2")}


async def test_closed_windows_are_scored_stored_published_and_served(
        engagement_settings: Settings, db: asyncpg.Connection, producer: Producer,
        analytics: AnalyticsServiceStub) -> None:
    # 10 seconds of 4 students (2 with individual-support consent), 5 of 8 expected
    await send(producer, [frame("room-1", "mon-1", s, STUDENTS, expected=8)
                          for s in range(10)])
    rows = await tumbling_rows(db, "room-1", "mon-1", 5)
    assert len(rows) == 5  # closed by the watermark, then the last by the idle close
    for row in rows:
        assert row["students"] == 4 and not row["suppressed"]
        assert row["signals"] == WINDOW_S * 4 * SIGNALS_PER_SEAT and row["duplicate_signals"] == 0
        assert row["engagement"] > 0.5 and row["model_version"] == "1.0.0"
        assert json.loads(row["drivers"])  # the class-mean features that moved the score
        assert (row["window_end"] - row["window_start"]).total_seconds() == WINDOW_S
    # per-student rows only for the students with individual-support consent
    subjects = await db.fetch("SELECT DISTINCT subject FROM engagement_subject_windows "
                              "WHERE session_id = 'mon-1'")
    assert {r["subject"] for r in subjects} == {"s_a", "s_b"}
    # fairness: each student tumbling window counted once per group (2 students per group)
    counts = {r["group_name"]: r["windows"] for r in await db.fetch(
        "SELECT group_name, windows FROM engagement_group_counts WHERE tenant_id = $1", TENANT)}
    assert counts == {"g1": 10, "g2": 10}

    # the windows were published on the compacted topic
    consumer = AIOKafkaConsumer(ENGAGEMENT_WINDOWS.full_name(engagement_settings),
                                bootstrap_servers=engagement_settings.kafka_bootstrap_servers,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        published: dict[tuple[int, int], EngagementWindow] = {}
        deadline = time.monotonic() + 30
        while len([k for k in published if k[0] == 1]) < 5 and time.monotonic() < deadline:
            for part in (await consumer.getmany(timeout_ms=500)).values():
                for record in part:
                    m = EngagementWindow.FromString(record.value)
                    if m.session_id == "mon-1":
                        published[(m.kind, m.start.seconds)] = m
    finally:
        await consumer.stop()
    tumbling = [m for (kind, _), m in sorted(published.items()) if kind == 1]
    assert [m.start.seconds for m in tumbling] == [T0 + 2 * i for i in range(5)]
    assert all(m.students == 4 and m.HasField("engagement") for m in tumbling)

    # AnalyticsService answers from these tables
    sessions = await analytics.ListSessions(ListSessionsRequest(tenant_id=TENANT))
    summary = next(s for s in sessions.sessions if s.session_id == "mon-1")
    assert summary.windows == 5 and summary.attendance == 4 and summary.expected_students == 8
    engagement = await analytics.GetSessionEngagement(GetSessionEngagementRequest(
        tenant_id=TENANT, classroom_id="room-1", session_id="mon-1"))
    assert len(engagement.windows) == 5 and engagement.k_anonymity == K
    hopping = await analytics.GetSessionEngagement(GetSessionEngagementRequest(
        tenant_id=TENANT, classroom_id="room-1", session_id="mon-1",
        kind=WindowKind.WINDOW_KIND_HOPPING))
    assert all(w.kind == WindowKind.WINDOW_KIND_HOPPING for w in hopping.windows)
    assert len(hopping.windows) == 6  # starts T0-2 .. T0+8
    trend = await analytics.GetAttendanceTrend(GetAttendanceTrendRequest(
        tenant_id=TENANT, classroom_id="room-1"))
    point = next(p for p in trend.points if p.session_id == "mon-1")
    assert point.rate == pytest.approx(0.5) and not point.anomaly
    report = await analytics.GetFairnessReport(GetFairnessReportRequest(tenant_id=TENANT))
    (model,) = report.models
    assert model.model_version == "1.0.0" and {g.group for g in model.groups} == {"g1", "g2"}
    assert all(g.windows == 10 and g.HasField("rate") for g in model.groups)
    assert model.HasField("parity_difference")
    assert model.limit == engagement_settings.engagement_max_parity_difference
    # the same fairness figures as Prometheus gauges
    url = f"http://127.0.0.1:{engagement_settings.decision_metrics_port}/metrics"
    metrics = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=10).read())
    text = metrics.decode()
    for group in model.groups:
        assert (f'switchyard_engagement_alert_rate{{group="{group.group}",'
                f'model_version="1.0.0"}} {float(group.rate)}') in text
    assert (f'switchyard_engagement_parity_difference{{model_version="1.0.0"}} '
            f'{float(model.parity_difference)}') in text


@pytest.mark.parametrize("students", [K - 1, K])
async def test_k_anonymity_at_the_boundary(db: asyncpg.Connection, producer: Producer,
                                           students: int) -> None:
    session = f"k-{students}"
    group = {f"s_k{i}": (False, "") for i in range(students)}
    await send(producer, [frame("room-k", session, s, group) for s in range(4)])
    rows = await tumbling_rows(db, "room-k", session, 2)
    for row in rows:
        assert row["students"] == students
        assert row["suppressed"] is (students < K)
        assert (row["engagement"] is None) is (students < K)
        assert (row["drivers"] is None) is (students < K)
        assert row["attendance"] == students  # counts stay; only the scores are withheld


async def test_a_restart_mid_window_neither_double_counts_nor_loses(
        db: asyncpg.Connection, producer: Producer, decision: Service) -> None:
    three = {"s_r1": (True, "g-restart"), "s_r2": (True, "g-restart"), "s_r3": (False, "")}
    # 7 seconds: [0,2) and [2,4) close, [4,6) too once second 7 arrives; [6,8) is open
    await send(producer, [frame("room-r", "tue-1", s, three) for s in range(7)])
    await tumbling_rows(db, "room-r", "tue-1", 2)
    decision.kill()  # SIGKILL mid-window
    # as if the killed process had stored a window but not published it yet
    await db.execute("UPDATE engagement_windows SET published_at = NULL WHERE session_id = "
                     "'tue-1' AND kind = 1 AND window_start = $1", utc(T0))
    # a per-student row past its retention: the retention loop deletes it when it starts
    await db.execute(
        "INSERT INTO engagement_subject_windows (tenant_id, classroom_id, session_id, kind, "
        "window_start, window_end, subject, p_engaged, features, created_at) VALUES ($1, "
        "'room-old', 'old-1', 1, $2, $3, 's_old', 0.5, '{}', now() - interval '40 days')",
        TENANT, utc(T0), utc(T0 + 2))
    await send(producer, [frame("room-r", "tue-1", s, three) for s in range(7, 14)])
    decision.start()
    rows = await tumbling_rows(db, "room-r", "tue-1", 7)
    await asyncio.sleep(4)  # anything counted twice would arrive by now
    rows = await db.fetch("SELECT * FROM engagement_windows WHERE session_id = 'tue-1' "
                          "ORDER BY kind, window_start")
    tumbling = [r for r in rows if r["kind"] == 1]
    assert [int(r["window_start"].timestamp()) - T0 for r in tumbling] == list(range(0, 14, 2))
    for row in tumbling:  # each window: 2 s x 3 students, once
        assert row["signals"] == WINDOW_S * 3 * SIGNALS_PER_SEAT, dict(row)
        assert row["students"] == 3 and row["late_signals"] == 0
        assert row["duplicate_signals"] == 0
    hopping = [r for r in rows if r["kind"] == 2]
    # 4 s windows every 2 s: the edges hold 2 s of data, the rest 4 s
    assert [r["signals"] for r in hopping] == [30] + [60] * 6 + [30]
    present = await db.fetch(
        "SELECT subject, features FROM engagement_subject_windows WHERE session_id = 'tue-1' "
        "AND kind = 1")
    assert len(present) == 14  # 7 windows x the 2 individual students
    assert all(json.loads(r["features"])["present"] == WINDOW_S for r in present)
    assert all(r["published_at"] is not None for r in rows)  # re-sent by the new process
    # fairness counts are added, not upserted: a window closed twice would count twice
    assert await db.fetchval("SELECT windows FROM engagement_group_counts "
                             "WHERE group_name = 'g-restart'") == 14
    assert await db.fetchval("SELECT count(*) FROM engagement_subject_windows "
                             "WHERE session_id = 'old-1'") == 0


async def test_a_flooding_sensor_counts_each_second_once_and_alerts_stay_limited(
        engagement_settings: Settings, db: asyncpg.Connection, producer: Producer) -> None:
    flood = {f"s_f{i}": (True, "") for i in range(4)}
    # disengaged students, 4 of 10 expected, every frame sent 15 times
    frames = [frame("room-f", "wed-1", s, flood, engaged=False, expected=10)
              for s in range(12)]
    await send(producer, frames, copies=15)
    rows = await tumbling_rows(db, "room-f", "wed-1", 6)
    for row in rows:
        assert row["signals"] == WINDOW_S * 4 * SIGNALS_PER_SEAT
        assert row["duplicate_signals"] == 14 * WINDOW_S * 4 * SIGNALS_PER_SEAT
        assert row["engagement"] < 0.35

    async def alerts() -> list[asyncpg.Record] | None:
        got = await db.fetch("SELECT * FROM engagement_alerts WHERE classroom_id = 'room-f'")
        # 1 attendance anomaly + 1 sustained disengagement per student
        return got if len(got) >= 5 else None
    stored = await eventually(alerts, "the flood's alerts", 60, 0.3)
    raised = [a for a in stored if not a["suppressed"]]
    assert len(raised) == ALERTS_PER_HOUR and len(stored) - len(raised) == 3
    # raised ones became classroom_event submissions on intake, keyed by the alert id
    consumer = AIOKafkaConsumer(INTAKE.full_name(engagement_settings),
                                bootstrap_servers=engagement_settings.kafka_bootstrap_servers,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    submissions = {}
    try:
        deadline = time.monotonic() + 30
        while len(submissions) < ALERTS_PER_HOUR and time.monotonic() < deadline:
            for part in (await consumer.getmany(timeout_ms=500)).values():
                for record in part:
                    body = json.loads(record.value)
                    if body["metadata"]["classroom"] == "room-f":
                        submissions[body["idempotency_key"]] = body
    finally:
        await consumer.stop()
    assert set(submissions) == {a["alert_id"] for a in raised}
    for body in submissions.values():
        assert body["kind"] == "classroom_event" and body["tenant_id"] == TENANT
        doc = body["document"]["body"]
        assert doc["event"] in {"sustained_disengagement", "attendance_anomaly"}
        assert doc["alert_id"] == body["idempotency_key"] and doc["class_id"] == "room-f"
        assert body["metadata"]["alert_kind"] == doc["event"]
        if doc["event"] == "attendance_anomaly":
            assert doc["attendance_rate"] == pytest.approx(0.4)
        else:
            assert body["metadata"]["subject"] == doc["subject"] and doc["windows"] == 2
            assert doc["score"] < 0.35 and doc["drivers"]


async def test_the_next_raised_alert_counts_the_held_back_ones(db: asyncpg.Connection
                                                               ) -> None:
    """The rate limit, on the stored alerts: once an hour has passed since the raised ones,
    the next alert of the class is raised and says how many were held back."""
    from services.decision.engagement.alerts import attendance_alert, store_alerts
    async with db.transaction():
        await db.execute("UPDATE engagement_alerts SET raised_at = raised_at - interval '2 "
                         "hours' WHERE classroom_id = 'room-f' AND NOT suppressed")
        alert = attendance_alert(TENANT, "room-f", "wed-2", T0, T0 + 2, 1, 10, 0.5, "1.0.0")
        assert alert is not None
        raised = await store_alerts(db, [alert], ALERTS_PER_HOUR)
    assert [a.suppressed_before for a in raised] == [3]
    assert raised[0].document()["suppressed_before"] == 3


async def test_erasure_removes_a_students_rows_and_alerts(
        engagement_settings: Settings, db: asyncpg.Connection, producer: Producer) -> None:
    before = await db.fetchval("SELECT count(*) FROM engagement_subject_windows "
                               "WHERE subject = 's_f0'")
    assert before > 0
    erasure = SubjectErasure(erasure_id=uuid.uuid4().hex, tenant_id=TENANT,
                             pseudonyms=["s_f0", "s_a"])
    # the same student again, and a record that is no erasure, right behind it: the batch
    # erases once, audits both, and dead-letters the bad record alone
    again = SubjectErasure(erasure_id=uuid.uuid4().hex, tenant_id=TENANT, pseudonyms=["s_f0"])
    await producer.send(SUBJECT_ERASURES, TENANT, erasure)
    await producer.send_raw(SUBJECT_ERASURES.full_name(engagement_settings), b"not-an-erasure",
                            b"\xff\x00garbage", {})
    await producer.send(SUBJECT_ERASURES, TENANT, again)

    async def gone() -> bool:
        left = await db.fetchval(
            "SELECT (SELECT count(*) FROM engagement_subject_windows WHERE subject = ANY($1)) "
            "+ (SELECT count(*) FROM engagement_alerts WHERE subject = ANY($1))",
            ["s_f0", "s_a"])
        return left == 0
    await eventually(gone, "the erased students' rows gone", 60, 0.3)

    async def audited() -> list[dict[str, object]] | None:
        rows = await db.fetch("SELECT detail FROM audit_log WHERE action = 'engagement.erased' "
                              "ORDER BY entry_id")
        details = [json.loads(r["detail"]) if isinstance(r["detail"], str) else r["detail"]
                   for r in rows]
        return details if len(details) == 2 else None

    first, second = await eventually(audited, "an audit entry per erasure", 30)
    assert first["erasure_id"] == erasure.erasure_id and first["subject_windows"] > 0
    assert (second["erasure_id"], second["subject_windows"], second["alerts"]) == (
        again.erasure_id, 0, 0)  # erased already: nothing left to delete
    assert "s_f0" not in json.dumps([first, second])
    letter = (await dead_letters(engagement_settings, {b"not-an-erasure"}))[b"not-an-erasure"]
    assert letter.service == "decision" and letter.reason_code
    assert metric_sum(engagement_settings.decision_metrics_port,
                      "switchyard_stream_batch_records_count",
                      f'topic="{SUBJECT_ERASURES.full_name(engagement_settings)}"') >= 1
    # others' rows and the class-level windows stay
    assert await db.fetchval("SELECT count(*) FROM engagement_subject_windows "
                             "WHERE subject = 's_b'") > 0
    assert await db.fetchval("SELECT count(*) FROM engagement_windows "
                             "WHERE session_id = 'wed-1'") > 0


async def test_retention_deletes_per_student_then_class_rows(db: asyncpg.Connection) -> None:
    await db.execute("UPDATE engagement_subject_windows SET created_at = now() - interval "
                     "'31 days' WHERE session_id = 'mon-1'")
    await db.execute("UPDATE engagement_windows SET created_at = now() - interval '31 days' "
                     "WHERE session_id = 'mon-1'")
    report = await purge_engagement(db, subject_days=30, class_days=365)
    assert report.subject_windows > 0 and report.windows == 0
    assert await db.fetchval("SELECT count(*) FROM engagement_subject_windows "
                             "WHERE session_id = 'mon-1'") == 0
    assert await db.fetchval("SELECT count(*) FROM engagement_windows "
                             "WHERE session_id = 'mon-1'") > 0
    assert await db.fetchval("SELECT count(*) FROM engagement_subject_windows "
                             "WHERE session_id = 'tue-1'") > 0
    await db.execute("UPDATE engagement_windows SET created_at = now() - interval '366 days' "
                     "WHERE session_id = 'mon-1'")
    await db.execute("UPDATE engagement_marks SET updated_at = now() - interval '366 days' "
                     "WHERE session_id = 'mon-1'")
    report = await purge_engagement(db, subject_days=30, class_days=365)
    assert report.windows > 0 and report.marks == 2  # tumbling and hopping
    assert await db.fetchval("SELECT count(*) FROM engagement_windows "
                             "WHERE session_id = 'mon-1'") == 0



def test_switchyard_purge_applies_the_engagement_retention(engagement_settings: Settings
                                                           ) -> None:
    async def age_and_count(age: bool) -> int:
        conn = await connect(engagement_settings)
        try:
            if age:
                await conn.execute("UPDATE engagement_subject_windows SET created_at = now() - "
                                   "interval '31 days' WHERE session_id = 'tue-1'")
            return await conn.fetchval("SELECT count(*) FROM engagement_subject_windows "
                                       "WHERE session_id = 'tue-1'")
        finally:
            await conn.close()

    aged = asyncio.run(age_and_count(True))
    assert aged > 0
    done = subprocess.run([sys.executable, "-m", "switchyard", "purge"],
                          env={**os.environ, **engagement_settings.to_env()},
                          capture_output=True, text=True, timeout=120)
    assert f"deleted {aged} per-student engagement window(s)" in done.stdout, \
        done.stdout + done.stderr
    assert asyncio.run(age_and_count(False)) == 0


async def test_analytics_is_for_admins_and_auditors_of_the_tenant(
        db: asyncpg.Connection, stub_for: Callable[[str], AnalyticsServiceStub]) -> None:
    request = ListSessionsRequest(tenant_id=TENANT)
    assert (await stub_for("adm").ListSessions(request)).sessions
    for key, code in (("rev", grpc.StatusCode.PERMISSION_DENIED),
                      ("oth", grpc.StatusCode.PERMISSION_DENIED)):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub_for(key).ListSessions(request)
        assert refused.value.code() == code, key
    # another tenant's admin sees its own (empty) analytics, not this school's
    assert not (await stub_for("oth").ListSessions(ListSessionsRequest())).sessions
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub_for("aud").GetFairnessReport(GetFairnessReportRequest(tenant_id="*"))
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # operators may ask for every tenant; a group under k scored windows is withheld
    await db.execute("INSERT INTO engagement_group_counts VALUES ('elsewhere', '1.0.0', "
                     "'g3', $1, 0)", K - 1)
    every = await stub_for("ops").GetFairnessReport(GetFairnessReportRequest(tenant_id="*"))
    (model,) = every.models
    g3 = next(g for g in model.groups if g.group == "g3")
    assert g3.windows == K - 1 and not g3.HasField("rate")
    shown = [g.rate for g in model.groups if g.HasField("rate")]
    assert model.parity_difference == pytest.approx(max(shown) - min(shown))


async def test_sessions_are_paged_and_anomalies_show_in_the_trend(
        analytics: AnalyticsServiceStub, db: asyncpg.Connection) -> None:
    raised = {r["alert_id"] for r in await db.fetch(
        "SELECT alert_id FROM engagement_alerts WHERE session_id = 'wed-1' AND NOT suppressed")}
    assert raised
    session = await analytics.GetSessionEngagement(GetSessionEngagementRequest(
        tenant_id=TENANT, classroom_id="room-f", session_id="wed-1"))
    assert {a.alert_id for a in session.alerts} == raised  # held-back ones are not shown
    assert session.session.alerts == len(raised)
    assert all(a.detail and a.model_version == "1.0.0" for a in session.alerts)
    first = await analytics.ListSessions(ListSessionsRequest(tenant_id=TENANT, page_size=2))
    assert len(first.sessions) == 2 and first.next_page_token
    rest = await analytics.ListSessions(ListSessionsRequest(
        tenant_id=TENANT, page_size=500, page_token=first.next_page_token))
    ids = [s.session_id for s in (*first.sessions, *rest.sessions)]
    assert len(ids) == len(set(ids)) and {"tue-1", "wed-1"} <= set(ids)
    assert not rest.next_page_token
    trend = await analytics.GetAttendanceTrend(GetAttendanceTrendRequest(
        tenant_id=TENANT, classroom_id="room-f"))
    (point,) = [p for p in trend.points if p.session_id == "wed-1"]
    assert point.anomaly and point.rate == pytest.approx(0.4)


async def test_more_rows_than_the_models_batch_limit_are_scored_in_chunks(
        engagement_settings: Settings, decision: Service) -> None:
    from services.decision.engagement.processor import EngagementProcessor
    from services.decision.pools import new_breaker
    from services.decision.triton import ScorerClient

    scorer = ScorerClient("engagement", engagement_settings.triton_url, 30,
                          new_breaker("test-engagement", 5, 5), triton_version="",
                          output_class="engaged")
    try:
        processor = EngagementProcessor(engagement_settings, None, None, scorer)  # type: ignore[arg-type]
        await processor._refresh_model()
        limit = scorer.config["max_batch_size"]
        engaged, disengaged = [1, 1, 0, 0, 0, 0, 1, 0.5], [1, 0, 0, 1, 1, 0, 0, 0.5]
        rows = [engaged if i % 2 else disengaged for i in range(limit + 7)]
        probabilities = await processor._predict(rows)
        assert len(probabilities) == limit + 7
        assert all((p > 0.5) is bool(i % 2) for i, p in enumerate(probabilities))
        assert processor.model_version == "1.0.0"
    finally:
        await scorer.close()


async def test_the_lessons_first_partial_window_raises_no_attendance_alert(
        db: asyncpg.Connection, producer: Producer) -> None:
    """The lesson begins mid-window, one student seated yet: that window is stored, but says
    nothing about attendance (an outside data-protection admin saw an attendance anomaly
    raised in every lesson's first minute, 20 of 20 students present afterwards)."""
    everyone = {f"s_p{i}": (True, "") for i in range(4)}
    first = {"s_p0": everyone["s_p0"]}
    frames = [frame("room-p", "thu-1", WINDOW_S - 1, first, expected=4)]
    frames += [frame("room-p", "thu-1", s, everyone, expected=4)
               for s in range(WINDOW_S, WINDOW_S * 5)]
    await send(producer, frames)
    rows = await tumbling_rows(db, "room-p", "thu-1", 4)
    assert (rows[0]["attendance"], rows[0]["expected_students"]) == (1, 4)  # stored as seen
    alerts = await db.fetch("SELECT kind FROM engagement_alerts WHERE classroom_id = 'room-p'")
    assert alerts == [], alerts
