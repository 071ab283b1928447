"""Fuzzing the frame parser: whatever bytes and headers arrive on ``classroom-signals``, the
answer is a checked SignalFrame or a RejectRecord with one of the documented reason codes,
never another exception (one bad device must not stop a classroom's stream).

SIGNAL_FUZZ_EXAMPLES=2000 runs each property longer (the default keeps `make test` quick)."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.ingest.signals import MAX_SEATS, REASON_CODES, parse_frame
from switchyard.messaging import Record, RejectRecord, encode
from switchyard.v1 import SignalFrame

FUZZ = settings(max_examples=int(os.environ.get("SIGNAL_FUZZ_EXAMPLES", "200")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
NOW = datetime(2026, 9, 14, 9, 0, 0, tzinfo=UTC)
PROTO_HEADERS = encode(SignalFrame())[1]
HEADERS = st.sampled_from([{}, {"content-type": "application/json"}, PROTO_HEADERS,
                           {"content-type": "text/plain"}, {"x-tenant-id": "acme"},
                           {**PROTO_HEADERS, "x-tenant-id": "globex"}])


def check(value: bytes, headers: dict[str, str]) -> None:
    record = Record("classroom-signals", 0, 0, None, value, headers, 0.0)
    try:
        frame = parse_frame(record, NOW, 300)
    except RejectRecord as exc:
        assert exc.code in REASON_CODES, exc.code
        assert isinstance(exc.reason, str) and exc.reason
        return
    assert isinstance(frame, SignalFrame)
    assert frame.tenant_id and frame.classroom_id and frame.session_id and frame.device_id
    assert len(frame.seats) <= MAX_SEATS
    assert len({s.seat_id for s in frame.seats}) == len(frame.seats)
    assert not frame.HasField("audio_level") or 0 <= frame.audio_level <= 1


@FUZZ
@given(st.binary(max_size=2048), HEADERS)
def test_any_bytes_give_a_frame_or_a_reason(value: bytes, headers: dict[str, str]) -> None:
    check(value, headers)


_TEXT = st.text(max_size=12)
_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                    st.floats(allow_nan=False), _TEXT)
_JSON = st.recursive(_SCALAR, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(_TEXT, inner, max_size=4)), max_leaves=12)
_SEAT = st.fixed_dictionaries({}, optional={
    "seat_id": st.one_of(_TEXT, _JSON), "occupied": st.one_of(st.booleans(), _JSON),
    "subject_ref": st.one_of(_TEXT, _JSON), "face_forward": st.booleans(),
    "hand_raised": st.booleans(), "head_down": st.booleans(),
    "posture": st.one_of(st.sampled_from(["upright", "SLOUCHED", "posture_leaning_forward",
                                          "lying"]), _JSON)})
_FRAME = st.fixed_dictionaries({}, optional={
    "tenant_id": st.one_of(st.sampled_from(["acme", "Acme!", ""]), _JSON),
    "classroom_id": st.one_of(st.just("room-1"), _TEXT, _JSON),
    "session_id": st.one_of(st.just("s-1"), _TEXT), "device_id": st.one_of(st.just("d"), _TEXT),
    "observed_at": st.one_of(
        st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()),
        st.sampled_from(["2026-09-14T09:00:00Z", "2026-09-14T09:00:00", "0001-01-01T00:00:00-01:00",
                         "9999-12-31T23:59:59+00:00"]), _JSON),
    "seats": st.one_of(st.lists(_SEAT, max_size=6), _JSON),
    "audio_level": st.one_of(st.floats(), _JSON),
    "check_ins": st.one_of(st.lists(st.fixed_dictionaries(
        {"subject_ref": st.one_of(_TEXT, _JSON)},
        optional={"source": st.one_of(st.sampled_from(["badge", "LMS", "x"]), _JSON)}),
        max_size=4), _JSON),
    "expected_students": st.one_of(st.integers(-5, 2**40), _JSON),
    "unknown": _JSON})


def _dumps(data: Any) -> bytes:
    return json.dumps(data, allow_nan=True).encode()


@FUZZ
@given(_FRAME, HEADERS)
def test_near_valid_json_frames_give_a_frame_or_a_reason(data: dict[str, Any],
                                                         headers: dict[str, str]) -> None:
    check(_dumps(data), {k: v for k, v in headers.items() if k != "content-type"})


@FUZZ
@given(st.binary(max_size=512), st.integers(0, 200), st.binary(max_size=8))
def test_mutated_protobuf_frames_give_a_frame_or_a_reason(noise: bytes, at: int,
                                                         insert: bytes) -> None:
    frame = SignalFrame(tenant_id="acme", classroom_id="room-1", session_id="s",
                        device_id="d", audio_level=0.5)
    frame.observed_at.FromDatetime(NOW)
    frame.seats.add(seat_id="A1", subject_ref="stu-1", occupied=True)
    value, headers = encode(frame)
    at = min(at, len(value))
    check(value[:at] + insert + value[at:] + noise, headers)
