"""Classroom signals through the real ingest process: frames from an independent Kafka client
(protobuf and JSON) come out on ``classroom-signals-admitted`` with pseudonyms; signals of
students without consent are dropped and counted; a withdrawal mid-stream stops a student's
signals within the refresh interval; pseudonyms are stable within a term and differ across
terms; bad frames are dead-lettered with their reason and bytes while the rest of the batch
is admitted; erasure publishes the event, removes consents and the student's alert tasks
(audited); and the ``switchyard consent`` commands work end to end."""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest
from confluent_kafka import Producer

from services.ingest.signals import pseudonym
from switchyard import Settings
from switchyard.messaging import (
    CLASSROOM_SIGNALS,
    DEAD_LETTER,
    INTAKE,
    SIGNALS_ADMITTED,
    SUBJECT_ERASURES,
    encode,
)
from switchyard.rpc import create_channel, field_violations
from switchyard.storage import TASK_ENVELOPE, TERM_KEY, codec_for, is_encrypted
from switchyard.v1 import (
    AdmittedFrame,
    ConsentPurpose,
    ConsentServiceStub,
    DeadLetter,
    EraseSubjectRequest,
    ListConsentsRequest,
    ListTasksRequest,
    SeatSignal,
    SetConsentRequest,
    SignalFrame,
    SubjectErasure,
    TaskEnvelope,
)
from tests.cli.helpers import switchyard
from tests.ingest.helpers import read_topic
from tests.polling import eventually
from tests.signals.conftest import KEYS, REFRESH_S

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ingest_process")]
DOC = Path(__file__).resolve().parents[2] / "docs" / "signals.md"
CA, IS, FM = (ConsentPurpose.CONSENT_PURPOSE_CLASS_ANALYTICS,
              ConsentPurpose.CONSENT_PURPOSE_INDIVIDUAL_SUPPORT,
              ConsentPurpose.CONSENT_PURPOSE_FAIRNESS_MONITORING)


def doc_example() -> bytes:
    """The JSON frame docs/signals.md shows, exactly as written there."""
    text = DOC.read_text()
    match = re.search(r"<!-- example: signal-frame -->\s*```json\n(.*?)```", text, re.S)
    assert match, "docs/signals.md lost its example frame"
    return match.group(1).encode()


def key_id(key: str) -> str:
    """The id the server records a key's actions under (never the key itself)."""
    return f"key-{list(KEYS).index(key)}"


def as_key(key: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {key}"),)


@pytest.fixture(scope="module")
def producer(settings: Settings) -> Iterator[Producer]:
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers,
                         "linger.ms": 5, "acks": "all"})
    yield producer
    producer.flush(30)


@pytest.fixture
async def consent(settings: Settings) -> Any:
    channel = create_channel(f"127.0.0.1:{settings.ingest_grpc_port}")
    yield ConsentServiceStub(channel)
    await channel.close()


def send(producer: Producer, settings: Settings, value: bytes, key: str = "room-12",
         headers: dict[str, str] | None = None) -> None:
    producer.produce(CLASSROOM_SIGNALS.full_name(settings), key=key.encode(), value=value,
                     headers=[(k, v.encode()) for k, v in (headers or {}).items()])


def send_frame(producer: Producer, settings: Settings, frame: SignalFrame) -> None:
    value, headers = encode(frame)
    send(producer, settings, value, frame.classroom_id, headers)


def frame(session: str, at: datetime, seats: list[tuple[str, str]],
          classroom: str = "room-7") -> SignalFrame:
    out = SignalFrame(tenant_id="acme", classroom_id=classroom, session_id=session,
                      device_id="cam-1", expected_students=len(seats),
                      seats=[SeatSignal(seat_id=seat, occupied=True, subject_ref=ref,
                                        face_forward=True) for seat, ref in seats])
    out.observed_at.FromDatetime(at)
    return out


async def grant(consent: Any, subject: str, *purposes: int, group: str = "",
                granted: bool = True) -> None:
    for purpose in purposes:
        await consent.SetConsent(SetConsentRequest(
            subject_ref=subject, purpose=purpose, granted=granted, guardian_ref="parent-1",
            group=group if purpose == FM and granted else ""), metadata=as_key("acme-admin"))


async def admitted(settings: Settings, session: str, count: int) -> list[AdmittedFrame]:
    """The admitted frames of one session (at least ``count`` of them)."""
    def ours(records: list[Any]) -> list[AdmittedFrame]:
        frames = [AdmittedFrame.FromString(r.value) for r in records]
        return [f for f in frames if f.session_id == session]

    records = await read_topic(settings, SIGNALS_ADMITTED, lambda rs: len(ours(rs)) >= count)
    return ours(records)


async def term_key(db: asyncpg.Connection, settings: Settings, term: str) -> bytes:
    row = await db.fetchrow("SELECT key_id, key FROM signal_term_keys WHERE tenant_id = 'acme' "
                            "AND term = $1", term)
    assert row is not None, f"no key for term {term}"
    assert is_encrypted(bytes(row["key"]))  # sealed, never the raw key
    return codec_for(settings).open(row["key_id"], row["key"], TERM_KEY)


def metric(settings: Settings, name: str, labels: str) -> float:
    text = urllib.request.urlopen(
        f"http://127.0.0.1:{settings.ingest_metrics_port}/metrics", timeout=10).read().decode()
    series = f"{name}{{{labels}}}" if labels else name
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


async def test_documented_json_and_protobuf_frames_are_admitted_with_pseudonyms(
        producer: Producer, settings: Settings, consent: Any, db: asyncpg.Connection) -> None:
    await grant(consent, "stu-1001", CA, IS, FM, group="g-east")
    await asyncio.sleep(REFRESH_S * 3)
    dropped_before = metric(settings, "switchyard_signals_total",
                            'outcome="dropped_no_consent"')
    send(producer, settings, doc_example(), headers={"content-type": "application/json"})
    # the same second as protobuf, tenant from the header instead of the frame
    as_proto = frame("2026-09-14-period-3", datetime(2026, 9, 14, 9, 0, 2, tzinfo=UTC),
                     [("A1", "stu-1001"), ("A2", "stu-1002")], classroom="room-12")
    as_proto.tenant_id = ""
    value, headers = encode(as_proto)
    send(producer, settings, value, headers={**headers, "x-tenant-id": "acme"})
    producer.flush(30)
    frames = sorted(await admitted(settings, "2026-09-14-period-3", 2),
                    key=lambda f: f.observed_at.seconds)
    key = await term_key(db, settings, "2026-09-01")
    ann = pseudonym(key, "acme", "stu-1001")
    from_json, from_proto = frames
    assert from_json.tenant_id == "acme" and from_json.term == "2026-09-01"
    assert [s.seat.seat_id for s in from_json.seats] == ["A1", "A3"]
    assert from_json.seats[0].seat.subject_ref == ann
    assert from_json.seats[0].individual and from_json.seats[0].group == "g-east"
    assert from_json.seats[1].seat.subject_ref == "" and not from_json.seats[1].individual
    assert list(from_json.checked_in) == [ann]
    assert from_json.signals == 3 * 5 + 1 + 1 and from_json.dropped_no_consent == 5
    assert from_json.audio_level == pytest.approx(0.42) and from_json.expected_students == 24
    assert [s.seat.subject_ref for s in from_proto.seats] == [ann]
    assert from_proto.dropped_no_consent == 5 and from_proto.tenant_id == "acme"
    for f in frames:
        assert "stu-100" not in str(f)
    assert metric(settings, "switchyard_signals_total",
                  'outcome="dropped_no_consent"') >= dropped_before + 10


async def test_pseudonyms_are_stable_within_a_term_and_differ_across_terms(
        producer: Producer, settings: Settings, consent: Any, db: asyncpg.Connection) -> None:
    await grant(consent, "stu-2001", CA)
    await asyncio.sleep(REFRESH_S * 3)
    session = f"terms-{uuid.uuid4().hex[:6]}"
    for at in (datetime(2026, 9, 14, 9, tzinfo=UTC), datetime(2026, 10, 2, 9, tzinfo=UTC),
               datetime(2026, 8, 31, 9, tzinfo=UTC)):
        send_frame(producer, settings, frame(session, at, [("B1", "stu-2001")]))
    producer.flush(30)
    frames = {f.observed_at.ToDatetime().month: f for f in await admitted(settings, session, 3)}
    sept, octo, august = (frames[m].seats[0].seat.subject_ref for m in (9, 10, 8))
    assert sept == octo and frames[9].term == frames[10].term == "2026-09-01"
    assert august != sept and frames[8].term == "2026-01-01"
    assert august == pseudonym(await term_key(db, settings, "2026-01-01"), "acme", "stu-2001")


async def test_a_withdrawal_mid_stream_stops_the_students_signals_within_the_refresh(
        producer: Producer, settings: Settings, consent: Any) -> None:
    await grant(consent, "stu-3001", CA)
    await grant(consent, "stu-3002", CA)
    await asyncio.sleep(REFRESH_S * 3)
    session = f"revoke-{uuid.uuid4().hex[:6]}"
    sent: list[datetime] = []

    async def stream(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            at = datetime.now(UTC)
            send_frame(producer, settings, frame(session, at, [("C1", "stu-3001"),
                                                               ("C2", "stu-3002")]))
            producer.poll(0)
            sent.append(at)
            await asyncio.sleep(0.1)

    await stream(2.0)
    await grant(consent, "stu-3001", CA, granted=False)
    revoked_at = datetime.now(UTC)
    await stream(REFRESH_S + 3.0)
    producer.flush(30)
    frames = await admitted(settings, session, len(sent))
    effective = revoked_at + timedelta(seconds=REFRESH_S + 0.5)
    before = [f for f in frames if f.observed_at.ToDatetime(tzinfo=UTC) < revoked_at]
    after = [f for f in frames if f.observed_at.ToDatetime(tzinfo=UTC) >= effective]
    assert before and after
    assert all(len(f.seats) == 2 and f.dropped_no_consent == 0 for f in before)
    assert all([s.seat.seat_id for s in f.seats] == ["C2"] and f.dropped_no_consent == 5
               for f in after)


async def test_bad_frames_are_dead_lettered_and_the_rest_of_the_batch_admitted(
        producer: Producer, settings: Settings, consent: Any) -> None:
    await grant(consent, "stu-4001", CA)
    await asyncio.sleep(REFRESH_S * 3)
    session = f"mixed-{uuid.uuid4().hex[:6]}"
    at = datetime(2026, 9, 20, 10, tzinfo=UTC)
    refused_before = metric(settings, "switchyard_signals_frames_total",
                            'outcome="dead_lettered"')
    admitted_before = metric(settings, "switchyard_signals_frames_total", 'outcome="admitted"')
    good = [frame(session, at + timedelta(seconds=i), [("D1", "stu-4001")]) for i in range(4)]
    duplicate = frame(session, at, [("D1", "stu-4001"), ("D1", "stu-4001")])
    future = frame(session, datetime.now(UTC) + timedelta(hours=1), [("D1", "stu-4001")])
    loud = frame(session, at, [])
    loud.audio_level = 1.7
    no_session = frame("", at, [("D1", "stu-4001")])
    malformed = f'{{"session_id": "{session}", "seats": ['.encode()
    unknown = json.dumps({"tenant_id": "acme", "classroom_id": "room-7", "session_id": session,
                          "device_id": "d", "observed_at": "2026-09-20T10:00:00Z",
                          "video": "base64..."}).encode()
    send_frame(producer, settings, good[0])
    send_frame(producer, settings, duplicate)
    send_frame(producer, settings, good[1])
    send(producer, settings, malformed, "room-7", {"content-type": "application/json"})
    send_frame(producer, settings, future)
    send_frame(producer, settings, good[2])
    send_frame(producer, settings, loud)
    send(producer, settings, unknown, "room-7")
    send_frame(producer, settings, no_session)
    send_frame(producer, settings, good[3])
    producer.flush(30)
    frames = await admitted(settings, session, 4)
    assert sorted(f.observed_at.seconds for f in frames) == \
        [int((at + timedelta(seconds=i)).timestamp()) for i in range(4)]
    expected = {"duplicate_seat_id": encode(duplicate)[0], "malformed_json": malformed,
                "observed_at_in_future": encode(future)[0],
                "audio_level_out_of_range": encode(loud)[0], "unknown_field": unknown,
                "missing_field": encode(no_session)[0]}

    def letters(records: list[Any]) -> dict[str, DeadLetter]:
        found = [DeadLetter.FromString(r.value) for r in records]
        return {d.reason_code: d for d in found
                if d.source_topic == CLASSROOM_SIGNALS.full_name(settings)
                and d.original_value in expected.values()}

    found = letters(await read_topic(settings, DEAD_LETTER,
                                     lambda rs: len(letters(rs)) >= len(expected)))
    for code, value in expected.items():
        assert found[code].original_value == value, code
        assert found[code].service == "ingest" and found[code].reason
    assert "session_id" in found["missing_field"].reason
    # the reason names what is wrong; the name the frame used is its own (a letter's reason
    # withholds what it quotes of the record)
    assert found["unknown_field"].reason.startswith(
        "frame: unknown field(s) [withheld: 5 characters]; allowed: ")

    async def counted() -> bool:
        return (metric(settings, "switchyard_signals_frames_total", 'outcome="dead_lettered"')
                == refused_before + len(expected) and
                metric(settings, "switchyard_signals_frames_total", 'outcome="admitted"')
                == admitted_before + 4)

    await eventually(counted, "the frames counted by outcome", timeout_s=20)
    assert metric(settings, "switchyard_dead_letters_total",
                  f'reason_code="duplicate_seat_id",service="ingest",'
                  f'source_topic="{CLASSROOM_SIGNALS.full_name(settings)}"') >= 1
    assert metric(settings, "switchyard_signals_consent_age_seconds", "") < REFRESH_S * 10


async def test_erasure_publishes_the_event_removes_consents_and_alert_tasks(
        producer: Producer, settings: Settings, consent: Any, db: asyncpg.Connection,
        ingest: Any) -> None:
    await grant(consent, "stu-9001", CA, IS)
    await asyncio.sleep(REFRESH_S * 3)
    session = f"erase-{uuid.uuid4().hex[:6]}"
    for at in (datetime(2026, 9, 21, 9, tzinfo=UTC), datetime(2026, 3, 3, 9, tzinfo=UTC)):
        send_frame(producer, settings, frame(session, at, [("E1", "stu-9001")]))
    producer.flush(30)
    await admitted(settings, session, 2)
    keys = {r["term"]: codec_for(settings).open(r["key_id"], r["key"], TERM_KEY)
            for r in await db.fetch("SELECT key_id, term, key FROM signal_term_keys "
                                    "WHERE tenant_id = 'acme'")}
    assert {"2026-09-01", "2026-01-01"} <= set(keys)
    pseudonyms = sorted(pseudonym(k, "acme", "stu-9001") for k in keys.values())
    # an alert task about the student, as the decision service submits it, and one about
    # somebody else
    alerts = {}
    for name, subject in (("ours", pseudonyms[0]), ("other", "s_" + "0" * 32)):
        key = f"alert-{uuid.uuid4().hex}"
        alerts[name] = key
        producer.produce(INTAKE.full_name(settings), key=key.encode(), value=json.dumps({
            "tenant_id": "acme", "idempotency_key": key, "kind": "classroom_event",
            "metadata": {"subject": subject, "classroom": "room-7", "session": session,
                         "alert_kind": "sustained_disengagement"},
            "document": {"body": {"event": "sustained_disengagement", "subject": subject}},
        }).encode(), headers=[("content-type", b"application/json")])
    producer.flush(30)

    async def tasks() -> dict[str, Any] | None:
        rows = await db.fetch("SELECT idempotency_key, task_id, purged_at FROM tasks "
                              "WHERE idempotency_key = ANY($1::text[])", list(alerts.values()))
        return {r["idempotency_key"]: r for r in rows} if len(rows) == 2 else None

    await eventually(tasks, "the alert tasks")
    # a refused frame naming the student: its letter keeps the raw bytes (an outside
    # data-protection admin found them kept, and untouched by the erasure)
    send_frame(producer, settings, frame(session, datetime(2026, 9, 21, 9, 1, tzinfo=UTC),
                                         [("E1", "stu-9001"), ("E1", "stu-9001")]))
    producer.flush(30)

    async def letter() -> Any:
        return await db.fetchrow(
            "SELECT dead_letter_id FROM dead_letters WHERE tenant_id = 'acme' AND "
            "source_topic = $1 AND reason_code = 'duplicate_seat_id' AND purged_at IS NULL",
            CLASSROOM_SIGNALS.full_name(settings))
    raw = await eventually(letter, "the refused frame's letter")
    result = switchyard(settings, "consent", "erase", "stu-9001", "--json",
                        "--api-key", "acme-admin")
    assert result.returncode == 0, result.stderr
    erased = json.loads(result.stdout)
    assert erased["consents_removed"] == 2 and erased["pseudonyms"] == len(keys)

    def ours(records: list[Any]) -> list[SubjectErasure]:
        return [e for e in (SubjectErasure.FromString(r.value) for r in records)
                if e.erasure_id == erased["erasure_id"]]

    event = ours(await read_topic(settings, SUBJECT_ERASURES, lambda rs: bool(ours(rs))))[0]
    assert event.tenant_id == "acme" and sorted(event.pseudonyms) == pseudonyms
    listed = await consent.ListConsents(ListConsentsRequest(subject_ref="stu-9001"),
                                        metadata=as_key("acme-admin"))
    assert list(listed.consents) == []
    rows = await tasks()
    assert rows is not None
    assert rows[alerts["ours"]]["purged_at"] is not None
    assert rows[alerts["other"]]["purged_at"] is None
    # the purged task keeps no trace of the pseudonym: not in its metadata, not findable
    envelope = TaskEnvelope.FromString(codec_for(settings).open(
        rows[alerts["ours"]]["task_id"], await db.fetchval(
            "SELECT envelope FROM tasks WHERE task_id = $1", rows[alerts["ours"]]["task_id"]),
        TASK_ENVELOPE))
    assert "subject" not in envelope.metadata and envelope.metadata["classroom"] == "room-7"
    assert envelope.document.body == b""
    found = await ingest.ListTasks(ListTasksRequest(metadata={"subject": pseudonyms[0]}),
                                   metadata=as_key("acme-audit"))
    assert list(found.tasks) == []
    recorded = await db.fetchrow("SELECT * FROM signal_erasures WHERE erasure_id = $1",
                                 uuid.UUID(erased["erasure_id"]))
    assert (recorded["tenant_id"], recorded["consents_removed"], recorded["tasks_purged"],
            recorded["pseudonyms"]) == ("acme", 2, 1, len(keys))
    entry = await db.fetchrow("SELECT actor, detail FROM audit_log WHERE tenant_id = 'acme' "
                              "AND action = 'subject.erased' ORDER BY entry_id DESC LIMIT 1")
    detail = json.loads(entry["detail"])
    assert entry["actor"] == key_id("acme-admin") and detail["erasure_id"] == erased["erasure_id"]
    assert detail["tasks_purged"] == 1 and detail["consents_removed"] == 2
    assert detail["raw_letters_purged"] >= 1
    kept = await db.fetchrow("SELECT original_value, original_key, purged_at FROM dead_letters "
                             "WHERE dead_letter_id = $1", raw["dead_letter_id"])
    assert kept["original_value"] is None and kept["purged_at"] is not None
    assert "stu-9001" not in entry["detail"]
    granted = await db.fetchval("SELECT count(*) FROM audit_log WHERE tenant_id = 'acme' "
                                "AND action = 'consent.granted'")
    assert granted >= 2
    assert "stu-9001" not in " ".join(r["detail"] for r in await db.fetch(
        "SELECT detail::text AS detail FROM audit_log WHERE tenant_id = 'acme'"))
    # the consent view forgets the student: a later frame drops the signals
    await asyncio.sleep(REFRESH_S * 3)
    send_frame(producer, settings, frame(session, datetime(2026, 9, 21, 9, 5, tzinfo=UTC),
                                         [("E1", "stu-9001")]))
    producer.flush(30)
    later = [f for f in await admitted(settings, session, 3) if f.observed_at.seconds ==
             int(datetime(2026, 9, 21, 9, 5, tzinfo=UTC).timestamp())]
    assert later and later[0].seats == [] and later[0].dropped_no_consent == 5


async def test_consent_commands_round_trip_with_roles_and_tenants(
        settings: Settings, db: asyncpg.Connection) -> None:
    result = switchyard(settings, "consent", "grant", "stu-5001", "class_analytics",
                        "fairness_monitoring", "--group", "g-west", "--guardian", "mum",
                        "--json", "--api-key", "acme-admin")
    assert result.returncode == 0, result.stderr
    assert [c["purpose"] for c in json.loads(result.stdout)] == ["class_analytics",
                                                                 "fairness_monitoring"]
    listed = switchyard(settings, "consent", "list", "--subject", "stu-5001", "--json",
                        "--api-key", "acme-audit")
    assert listed.returncode == 0, listed.stderr
    rows = {c["purpose"]: c for c in json.loads(listed.stdout)}
    assert rows["fairness_monitoring"]["group"] == "g-west" and rows["class_analytics"]["granted"]
    assert rows["class_analytics"]["guardian_ref"] == "mum"
    assert rows["class_analytics"]["updated_by"] == key_id("acme-admin")
    # sealed at rest: the reference is in no column as plaintext
    raw = await db.fetch("SELECT subject_ref, subject_hash, guardian_ref FROM signal_consents")
    assert raw and all(is_encrypted(bytes(r["subject_ref"])) and
                       b"stu-5001" not in bytes(r["subject_ref"]) and
                       "stu-5001" not in r["subject_hash"] for r in raw)
    revoked = switchyard(settings, "consent", "revoke", "stu-5001", "class_analytics",
                         "--api-key", "acme-admin")
    assert revoked.returncode == 0 and "class_analytics withdrawn" in revoked.stdout
    listed = switchyard(settings, "consent", "list", "--subject", "stu-5001", "--json",
                        "--api-key", "acme-admin")
    assert {c["purpose"]: c["granted"] for c in json.loads(listed.stdout)} == {
        "class_analytics": False, "fairness_monitoring": True}
    table = switchyard(settings, "consent", "list", "--api-key", "acme-admin")
    assert table.returncode == 0 and "stu-5001" in table.stdout
    # auditors read, never write; another tenant's key sees nothing of acme
    denied = switchyard(settings, "consent", "grant", "stu-5001", "class_analytics",
                        "--api-key", "acme-audit")
    assert denied.returncode == 1 and "PERMISSION_DENIED" in denied.stderr
    other = switchyard(settings, "consent", "list", "--tenant", "acme", "--api-key",
                       "globex-admin")
    assert other.returncode == 1 and "PERMISSION_DENIED" in other.stderr
    mine = switchyard(settings, "consent", "list", "--json", "--api-key", "globex-admin")
    assert mine.returncode == 0 and json.loads(mine.stdout) == []
    # an operator key names the tenant
    ops = switchyard(settings, "consent", "list", "--tenant", "acme", "--subject", "stu-5001",
                     "--json", "--api-key", "ops")
    assert ops.returncode == 0 and len(json.loads(ops.stdout)) == 2


async def test_invalid_requests_name_their_fields(consent: Any) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await consent.SetConsent(SetConsentRequest(
            subject_ref="", purpose=CA, granted=True, group="g1"),
            metadata=as_key("acme-admin"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(field_violations(caught.value)) == {"subject_ref", "group"}
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await consent.SetConsent(SetConsentRequest(subject_ref="x" * 129),
                                 metadata=as_key("acme-admin"))
    assert set(field_violations(caught.value)) == {"subject_ref", "purpose"}
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await consent.EraseSubject(EraseSubjectRequest(subject_ref="stu-1"),
                                   metadata=as_key("ops"))
    assert set(field_violations(caught.value)) == {"tenant_id"}
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await consent.ListConsents(ListConsentsRequest(page_size=501, page_token="nope"),
                                   metadata=as_key("acme-audit"))
    assert set(field_violations(caught.value)) == {"page_size", "page_token"}


async def test_frames_wait_while_the_consent_view_cannot_be_vouched_for(
        settings: Settings) -> None:
    """A view never loaded (or not refreshed for ten intervals plus 5 s) holds frames back
    until a refresh succeeds."""
    from services.ingest.signals import ConsentView
    from switchyard.storage import create_pool

    pool = await create_pool(settings)
    try:
        view = ConsentView(pool, codec_for(settings), refresh_s=0.05)
        waiting = asyncio.create_task(view.wait_fresh())
        await asyncio.sleep(0.5)
        assert not waiting.done()
        await view.refresh()
        await asyncio.wait_for(waiting, 5)
        assert view.age_s() < view.stale_after_s
    finally:
        await pool.close()


async def test_list_consents_pages_through_every_consent_once(consent: Any) -> None:
    for i in range(5):
        await grant(consent, f"stu-pg-{i}", CA)
    whole = await consent.ListConsents(ListConsentsRequest(), metadata=as_key("acme-audit"))
    assert len(whole.consents) >= 5 and whole.next_page_token == ""  # 0 means 100
    seen: list[tuple[str, int]] = []
    request = ListConsentsRequest(page_size=2)
    while True:
        page = await consent.ListConsents(request, metadata=as_key("acme-audit"))
        assert len(page.consents) <= 2
        seen += [(c.subject_ref, c.purpose) for c in page.consents]
        if not page.next_page_token:
            break
        request.page_token = page.next_page_token
    assert seen == [(c.subject_ref, c.purpose) for c in whole.consents]
    assert len(set(seen)) == len(seen)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await consent.SetConsent(SetConsentRequest(subject_ref="stu-1", purpose=CA,
                                                   granted=True, guardian_ref="a\nb"),
                                 metadata=as_key("acme-admin"))
    assert set(field_violations(caught.value)) == {"guardian_ref"}
