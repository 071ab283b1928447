"""The frame parser, the admit step and the pseudonyms, as pure functions: every refusal
has its specific reason code, consent decides which signals stay, and pseudonyms follow the
documented formula."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime

import pytest

from services.ingest.signals import (
    StudentConsent,
    admit,
    parse_frame,
    parse_term_starts,
    pseudonym,
    pseudonymiser,
    term_of,
)
from switchyard.messaging import Record, RejectRecord, encode
from switchyard.v1 import CheckIn, Posture, SeatSignal, SignalFrame

NOW = datetime(2026, 9, 14, 9, 0, 0, tzinfo=UTC)


def record(value: bytes, headers: dict[str, str] | None = None) -> Record:
    return Record("classroom-signals", 0, 0, b"room-12", value,
                  {"content-type": "application/json", **(headers or {})}, 0.0)


def frame_json(**changes: object) -> dict:
    frame = {"tenant_id": "acme", "classroom_id": "room-12", "session_id": "s-1",
             "device_id": "cam-1", "observed_at": "2026-09-14T09:00:00Z",
             "seats": [{"seat_id": "A1", "occupied": True, "subject_ref": "stu-1",
                        "face_forward": True, "posture": "upright"}],
             "audio_level": 0.4, "check_ins": [{"subject_ref": "stu-1", "source": "BADGE"}],
             "expected_students": 20}
    frame.update(changes)
    return {k: v for k, v in frame.items() if v is not None}


def refused(value: bytes, headers: dict[str, str] | None = None) -> RejectRecord:
    with pytest.raises(RejectRecord) as caught:
        parse_frame(record(value, headers), NOW, 300)
    return caught.value


def test_json_and_protobuf_give_the_same_frame() -> None:
    from_json = parse_frame(record(json.dumps(frame_json()).encode()), NOW, 300)
    value, headers = encode(from_json)
    from_proto = parse_frame(record(value, headers), NOW, 300)
    assert from_json == from_proto
    assert from_json.seats[0].posture == Posture.POSTURE_UPRIGHT
    assert from_json.audio_level == pytest.approx(0.4)


@pytest.mark.parametrize(("changes", "code", "names"), [
    ({"classroom_id": None}, "missing_field", "classroom_id"),
    ({"session_id": " "}, "missing_field", "session_id"),
    ({"device_id": None}, "missing_field", "device_id"),
    ({"observed_at": None}, "missing_field", "observed_at"),
    ({"observed_at": "2026-09-14T09:10:00Z"}, "observed_at_in_future", "observed_at"),
    ({"observed_at": "yesterday"}, "schema_violation", "observed_at"),
    ({"seats": [{"seat_id": "A1"}, {"seat_id": "A1"}]}, "duplicate_seat_id", "seats[1]"),
    ({"seats": [{"occupied": True}]}, "missing_field", "seats[0].seat_id"),
    ({"audio_level": 1.5}, "audio_level_out_of_range", "audio_level"),
    ({"audio_level": -0.1}, "audio_level_out_of_range", "audio_level"),
    ({"seats": [{"seat_id": f"S{i}"} for i in range(501)]}, "too_many_seats", "seats"),
    ({"check_ins": [{"subject_ref": "x"}] * 501}, "too_many_check_ins", "check_ins"),
    ({"camera": "on"}, "unknown_field", "camera"),
    ({"seats": [{"seat_id": "A1", "gaze": 0.3}]}, "unknown_field", "gaze"),
    ({"seats": [{"seat_id": "A1", "posture": "lying"}]}, "schema_violation", "posture"),
    ({"check_ins": [{"subject_ref": ""}]}, "missing_field", "check_ins[0].subject_ref"),
    ({"tenant_id": None}, "missing_tenant", "tenant_id"),
    ({"expected_students": -1}, "schema_violation", "expected_students"),
    ({"classroom_id": "r" * 129}, "field_too_long", "classroom_id"),
])
def test_each_bad_frame_has_its_specific_reason(changes: dict, code: str, names: str) -> None:
    problem = refused(json.dumps(frame_json(**changes)).encode())
    assert problem.code == code and names in problem.reason


def test_malformed_json_and_the_tenant_header() -> None:
    assert refused(b'{"classroom_id": ').code == "malformed_json"
    assert refused(b'{"audio_level": NaN}').code == "malformed_json"
    assert refused(b"[" * 100_000).code == "malformed_json"
    assert refused(b"").code == "empty_record"
    # the tenant from the header, or refused when the two disagree
    body = json.dumps(frame_json(tenant_id=None)).encode()
    assert parse_frame(record(body, {"x-tenant-id": "acme"}), NOW, 300).tenant_id == "acme"
    assert refused(json.dumps(frame_json()).encode(),
                   {"x-tenant-id": "globex"}).code == "tenant_mismatch"
    # a student's reference is never quoted in a reason (reasons are stored in plaintext)
    problem = refused(json.dumps(frame_json(seats=[
        {"seat_id": "A1", "subject_ref": "stu-secret-77"},
        {"seat_id": "A1", "subject_ref": "stu-secret-77"}])).encode())
    assert "stu-secret-77" not in problem.reason


def test_protobuf_problems_are_named() -> None:
    assert refused(b"\xff\xff", {"content-type": "application/x-protobuf; "
                                 "messageType=switchyard.v1.SignalFrame"}).code \
        == "malformed_protobuf"
    value, headers = encode(SignalFrame(tenant_id="acme", classroom_id="r", session_id="s",
                                        device_id="d"))
    assert refused(value, headers).code == "missing_field"


class Consents:
    def __init__(self, table: dict[str, StudentConsent]) -> None:
        self.table = table

    def of(self, tenant_id: str, subject_ref: str) -> StudentConsent | None:
        return self.table.get(subject_ref) if tenant_id == "acme" else None


def test_admit_drops_and_counts_students_without_consent() -> None:
    frame = SignalFrame(tenant_id="acme", classroom_id="room-12", session_id="s-1",
                        device_id="cam-1", audio_level=0.5, expected_students=3, seats=[
                            SeatSignal(seat_id="A1", occupied=True, subject_ref="ann",
                                       face_forward=True),
                            SeatSignal(seat_id="A2", occupied=True, subject_ref="bob"),
                            SeatSignal(seat_id="A3", occupied=True, subject_ref="cy"),
                            SeatSignal(seat_id="A4", occupied=False)],
                        check_ins=[CheckIn(subject_ref="ann"), CheckIn(subject_ref="bob")])
    frame.observed_at.FromDatetime(NOW)
    consents = Consents({
        "ann": StudentConsent(class_analytics=True, individual=True, group="g1"),
        "cy": StudentConsent(class_analytics=False, individual=True)})
    key = b"k" * 32
    admission = admit(frame, consents, pseudonymiser(key, "acme"), "2026-09-01")
    out = admission.frame
    assert out.signals == 4 * 5 + 2 + 1
    assert out.dropped_no_consent == admission.dropped_no_consent == 5 + 5 + 1  # bob, cy
    assert admission.admitted == out.signals - out.dropped_no_consent
    assert [s.seat.seat_id for s in out.seats] == ["A1", "A4"]
    ann = pseudonym(key, "acme", "ann")
    assert out.seats[0].seat.subject_ref == ann and out.seats[0].individual
    assert out.seats[0].group == "g1" and out.seats[0].seat.face_forward
    assert out.seats[1].seat.subject_ref == "" and not out.seats[1].individual
    assert list(out.checked_in) == [ann]
    assert out.term == "2026-09-01" and out.audio_level == pytest.approx(0.5)
    assert "ann" not in str(out) and "bob" not in str(out)


def test_pseudonyms_and_terms_follow_the_documented_formula() -> None:
    key = bytes(range(32))
    expected = "s_" + hmac.new(key, b"acme\x00stu-1", hashlib.sha256).hexdigest()[:32]
    assert pseudonym(key, "acme", "stu-1") == expected
    assert pseudonym(key, "globex", "stu-1") != expected
    starts = parse_term_starts("09-01, 01-01")
    assert term_of(datetime(2026, 9, 14, tzinfo=UTC), starts) == "2026-09-01"
    assert term_of(datetime(2026, 8, 31, 23, 59, tzinfo=UTC), starts) == "2026-01-01"
    assert term_of(datetime(2026, 1, 1, tzinfo=UTC), starts) == "2026-01-01"
    assert term_of(datetime(2027, 3, 1, tzinfo=UTC), parse_term_starts("09-01")) \
        == "2026-09-01"
    for bad in ("", "13-01", "02-29", "9/1"):
        with pytest.raises(ValueError):
            parse_term_starts(bad)


def test_the_documentation_lists_every_reason_code() -> None:
    from pathlib import Path

    from services.ingest.signals import REASON_CODES

    doc = (Path(__file__).resolve().parents[2] / "docs" / "signals.md").read_text()
    assert all(f"`{code}`" in doc for code in REASON_CODES + ("processing_failed",))


def test_proto3_json_as_json_format_writes_it_is_accepted() -> None:
    """lowerCamelCase names, full enum names and nanosecond times: what a device using the
    protobuf library's JSON printer sends."""
    from google.protobuf import json_format

    original = SignalFrame(tenant_id="acme", classroom_id="room-12", session_id="s-1",
                           device_id="cam-1", audio_level=0.25, expected_students=3,
                           seats=[SeatSignal(seat_id="A1", subject_ref="stu-1", occupied=True,
                                             posture=Posture.POSTURE_LEANING_FORWARD,
                                             hand_raised=True)],
                           check_ins=[CheckIn(subject_ref="stu-1", source=2)])
    original.observed_at.FromDatetime(NOW)
    text = json_format.MessageToJson(original)
    assert "classroomId" in text and "POSTURE_LEANING_FORWARD" in text
    assert parse_frame(record(text.encode()), NOW, 300) == original
    twice = json.dumps({**frame_json(), "classroomId": "room-13"}).encode()
    assert refused(twice).code == "schema_violation"
    numbered = json.dumps(frame_json(seats=[{"seat_id": "A1", "posture": 2}])).encode()
    assert parse_frame(record(numbered), NOW, 300).seats[0].posture == Posture.POSTURE_SLOUCHED


def test_every_frame_the_simulator_sends_is_accepted_as_it_was_sent() -> None:
    """The device side (switchyard.signals) and ingest agree on both forms: each frame of a
    simulated session with duplicates, late frames and a flooding sensor, written as protobuf
    and as JSON, parses back to the same frame."""
    from datetime import timedelta

    from switchyard.signals import SimulationConfig, frame_record, simulate

    config = SimulationConfig(classrooms=3, seats=12, seconds=20, duplicate_rate=0.1,
                              late_rate=0.1, start=NOW - timedelta(minutes=5))
    emissions = list(simulate(config))
    assert emissions
    for emission in emissions[:300]:
        for as_json in (False, True):
            value, headers = frame_record(emission.frame, as_json)
            parsed = parse_frame(Record("classroom-signals", 0, 0, emission.key.encode(), value,
                                        headers, 0.0), NOW, 300)
            assert parsed == emission.frame, (emission.kind, as_json)
