"""Consent and erasure across the whole classroom pipeline, as the stack runs it.

The four services run as real processes on the real broker, PostgreSQL and Triton. Guardians'
consents go through ingest's ConsentService; room cameras' SignalFrames go onto
``classroom-signals``; ingest admits and pseudonymises them, the decision service windows,
scores and stores them and raises alerts, which become review items.

* A guardian who withdraws class-analytics consent mid-session: from the next window on, the
  student's signals are dropped at ingest (counted in the class windows' dropped signals) and
  no per-student row is derived for the student any more.
* A right-to-erasure request at ingest: the student's consents, per-student windows and
  alerts (decision) and the alert task with its review item (ingest's purge path) are all
  gone, and the audit trail says so without naming the student.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from switchyard import Settings
from switchyard.messaging import CLASSROOM_SIGNALS, Producer
from switchyard.rpc import create_channel
from switchyard.signals import SIGNALS_PER_SEAT
from switchyard.storage import connect
from switchyard.v1 import (
    ConsentPurpose,
    ConsentServiceStub,
    EraseSubjectRequest,
    GetItemRequest,
    ListConsentsRequest,
    Posture,
    ReviewServiceStub,
    SeatSignal,
    SetConsentRequest,
    SignalFrame,
)
from tests.polling import eventually

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("pipeline")]
OPS_KEY = "ops-key"
TENANT = "school"
CLASSROOM = "room-9"
SESSION = "tue-3"
WINDOW_S = 2
WAIT_S = 120
#: event time of the session: a whole number of hopping windows, an hour in the past
T0 = (int(time.time()) // 4) * 4 - 3600
CA, IS = (ConsentPurpose.CONSENT_PURPOSE_CLASS_ANALYTICS,
          ConsentPurpose.CONSENT_PURPOSE_INDIVIDUAL_SUPPORT)
#: student -> seat; every one consents to class analytics and individual support
SEATS = {"kid-1": "a1", "kid-2": "a2", "kid-3": "b1", "kid-4": "b2", "kid-5": "c1"}
WITHDRAWN = "kid-1"   # withdraws class analytics after the first part of the session
ERASED = "kid-2"      # disengaged all along (an alert), then erased
#: the second the withdrawal happens before (event time), a window boundary
SPLIT = 6


@pytest.fixture(scope="module")
def settings(settings: Settings) -> Settings:
    return settings.replace(
        api_keys=f"{OPS_KEY}:*:admin", signal_window_s=WINDOW_S, signal_hopping_window_s=4,
        signal_hopping_step_s=2, signal_allowed_lateness_s=1, signal_idle_close_s=3,
        signal_k_anonymity=3, signal_disengaged_below=0.35, signal_disengaged_windows=2,
        signal_attendance_below=0.1, signal_consent_refresh_s=0.5)


def frame(second: int) -> SignalFrame:
    seats = []
    for name, seat in SEATS.items():
        engaged = name != ERASED
        seats.append(SeatSignal(
            seat_id=seat, occupied=True, subject_ref=name, face_forward=engaged,
            head_down=not engaged, hand_raised=engaged and second % 3 == 0,
            posture=Posture.POSTURE_UPRIGHT if engaged else Posture.POSTURE_SLOUCHED))
    f = SignalFrame(tenant_id=TENANT, classroom_id=CLASSROOM, session_id=SESSION,
                    device_id="cam-9", seats=seats, expected_students=len(SEATS))
    f.observed_at.FromSeconds(T0 + second)
    return f


async def send(settings: Settings, seconds: range) -> None:
    producer = Producer(settings)
    await producer.start()
    try:
        for second in seconds:
            f = frame(second)
            await producer.send(CLASSROOM_SIGNALS, f.classroom_id, f)
    finally:
        await producer.stop()


@pytest.fixture(scope="module")
async def consent(settings: Settings) -> AsyncIterator[Any]:
    channel = create_channel(f"127.0.0.1:{settings.ingest_grpc_port}", OPS_KEY)
    try:
        yield ConsentServiceStub(channel)
    finally:
        await channel.close()


@pytest.fixture(scope="module")
async def db(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    conn = await connect(settings)
    try:
        yield conn
    finally:
        await conn.close()


async def settle(settings: Settings) -> None:
    """Long enough for every ingest replica to reload the consents."""
    await asyncio.sleep(3 * settings.signal_consent_refresh_s + 1)


async def pseudonym_of(db: asyncpg.Connection, seat: str) -> str:
    row = await eventually(lambda: db.fetchrow(
        "SELECT subject FROM engagement_subject_windows WHERE classroom_id = $1 AND "
        "seat_id = $2 LIMIT 1", CLASSROOM, seat), f"a per-student window of seat {seat}",
        WAIT_S, 0.5)
    return row["subject"]


async def test_withdrawal_mid_session_and_erasure_reach_every_service(
        settings: Settings, consent: Any, db: asyncpg.Connection) -> None:
    for name in SEATS:
        for purpose in (CA, IS):
            await consent.SetConsent(SetConsentRequest(
                tenant_id=TENANT, subject_ref=name, purpose=purpose, granted=True,
                guardian_ref=f"guardian-of-{name}"))
    await settle(settings)

    # the first part of the session, everybody consenting
    await send(settings, range(0, SPLIT))
    withdrawn = await pseudonym_of(db, SEATS[WITHDRAWN])
    erased = await pseudonym_of(db, SEATS[ERASED])

    await consent.SetConsent(SetConsentRequest(
        tenant_id=TENANT, subject_ref=WITHDRAWN, purpose=CA, granted=False,
        guardian_ref=f"guardian-of-{WITHDRAWN}"))
    await settle(settings)
    await send(settings, range(SPLIT, SPLIT + 8))

    last = T0 + SPLIT + 8 - WINDOW_S
    windows = await eventually(lambda: db.fetch(
        "SELECT * FROM engagement_windows WHERE classroom_id = $1 AND kind = 1 AND "
        "window_start >= to_timestamp($2) ORDER BY window_start", CLASSROOM, T0 + SPLIT),
        "the windows after the withdrawal", WAIT_S, 0.5)
    windows = await eventually(lambda: _all_closed(db, last), "the session's last window",
                               WAIT_S, 0.5)
    after = [w for w in windows if w["window_start"].timestamp() >= T0 + SPLIT]
    assert len(after) == 4
    for w in after:  # the withdrawn student's seat is dropped and counted, every second
        assert w["students"] == len(SEATS) - 1
        assert w["dropped_no_consent"] == WINDOW_S * SIGNALS_PER_SEAT
    rows = await db.fetch("SELECT window_start, kind FROM engagement_subject_windows WHERE "
                          "subject = $1", withdrawn)
    assert rows, "the student was counted before the withdrawal"
    assert all(r["window_start"].timestamp() < T0 + SPLIT for r in rows), rows

    # the disengaged student raised an alert, which became a review item
    alert = await eventually(lambda: db.fetchrow(
        "SELECT * FROM engagement_alerts WHERE subject = $1 AND NOT suppressed", erased),
        "the disengaged student's alert", WAIT_S, 0.5)
    item = await eventually(lambda: db.fetchrow(
        "SELECT r.task_id, r.purged_at FROM review_items r JOIN tasks t USING (task_id) "
        "WHERE t.idempotency_key = $1", alert["alert_id"]), "the alert's review item",
        WAIT_S, 0.5)
    assert item["purged_at"] is None

    erasure = await consent.EraseSubject(EraseSubjectRequest(tenant_id=TENANT,
                                                             subject_ref=ERASED))
    assert erasure.consents_removed == 2 and erasure.pseudonyms >= 1
    listed = await consent.ListConsents(ListConsentsRequest(tenant_id=TENANT,
                                                            subject_ref=ERASED))
    assert not listed.consents

    async def gone() -> bool:
        left = await db.fetchval(
            "SELECT (SELECT count(*) FROM engagement_subject_windows WHERE subject = $1) + "
            "(SELECT count(*) FROM engagement_alerts WHERE subject = $1)", erased)
        return left == 0
    await eventually(gone, "the erased student's derived rows gone", WAIT_S, 0.5)
    task = await db.fetchrow("SELECT purged_at FROM tasks WHERE task_id = $1", item["task_id"])
    review = await db.fetchrow("SELECT item_id, purged_at FROM review_items WHERE task_id = $1",
                               item["task_id"])
    assert task["purged_at"] is not None and review["purged_at"] is not None
    # the item's reviewers do not read the erased pseudonym either (an outside data-protection
    # admin saw it in clear under `subject` once the erasure had stripped the item)
    channel = create_channel(f"127.0.0.1:{settings.review_grpc_port}", OPS_KEY)
    try:
        shown = (await ReviewServiceStub(channel).GetItem(GetItemRequest(
            item_id=str(review["item_id"])))).item
    finally:
        await channel.close()
    assert "subject" not in shown.escalation.task.metadata
    assert erased not in str(shown), shown.escalation.task.metadata
    # the others keep their rows; the audit names counts and hashes, never the student
    assert await db.fetchval("SELECT count(*) FROM engagement_subject_windows WHERE "
                             "classroom_id = $1", CLASSROOM) > 0
    audit = await db.fetch("SELECT action, detail::text AS detail FROM audit_log WHERE "
                           "tenant_id = $1 AND action IN ('subject.erased', "
                           "'engagement.erased')", TENANT)
    assert {r["action"] for r in audit} == {"subject.erased", "engagement.erased"}
    assert not any(ERASED in r["detail"] or erased in r["detail"] for r in audit)


async def _all_closed(db: asyncpg.Connection, last_start: int) -> list[asyncpg.Record] | None:
    rows = await db.fetch("SELECT * FROM engagement_windows WHERE classroom_id = $1 AND "
                          "kind = 1 ORDER BY window_start", CLASSROOM)
    return rows if rows and rows[-1]["window_start"].timestamp() >= last_start else None
