"""Signal frames on the ``classroom-signals`` topic: parsed (protobuf or JSON) and checked,
or refused with a reason code the dead-letter queue keeps.

The ``content-type`` header chooses the form, as on the intake topic: ``application/json``
(or no header) is the JSON form documented in docs/signals.md, ``application/x-protobuf;
messageType=switchyard.v1.SignalFrame`` a serialized :class:`SignalFrame`. Both forms go
through the same checks (:func:`check_frame`). The tenant comes from the frame's
``tenant_id`` or the record's ``x-tenant-id`` header; the two disagreeing is refused rather
than guessed between.

Reasons never quote a student's reference (a dead letter's reason is stored in plaintext);
the original bytes are kept sealed with the letter.

Pure functions: unit and fuzz tests drive them without a broker.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from switchyard.messaging import (
    TENANT_HEADER,
    Record,
    RejectRecord,
    decode_record,
    one_tenant,
)
from switchyard.tasks import tenant_problems
from switchyard.v1 import CheckIn, CheckInSource, Posture, SeatSignal, SignalFrame

__all__ = ["MAX_FRAME_BYTES", "MAX_ID_CHARS", "MAX_SEATS", "MAX_CHECK_INS", "REASON_CODES",
           "check_frame", "frame_from_json", "parse_frame"]

#: A frame of 500 seats in JSON is about 100 KiB; anything past this is not a frame.
MAX_FRAME_BYTES = 1024 * 1024
MAX_SEATS = 500
MAX_CHECK_INS = 500
#: Longest id (classroom, session, device, seat) and student reference.
MAX_ID_CHARS = 128

#: Every reason code a frame may be refused with (docs/signals.md lists them).
REASON_CODES = (
    "empty_record", "too_large", "malformed_json", "unknown_field", "schema_violation",
    "missing_field", "field_too_long", "missing_tenant", "tenant_mismatch",
    "observed_at_out_of_range", "observed_at_in_future", "duplicate_seat_id",
    "audio_level_out_of_range", "too_many_seats", "too_many_check_ins",
    # from the protobuf serde
    "unsupported_content_type", "wrong_message_type", "malformed_protobuf",
)

_FRAME_FIELDS = {"tenant_id", "classroom_id", "session_id", "device_id", "observed_at",
                 "seats", "audio_level", "check_ins", "expected_students"}
_SEAT_FIELDS = {"seat_id", "occupied", "subject_ref", "face_forward", "hand_raised",
                "posture", "head_down"}
_CHECK_IN_FIELDS = {"subject_ref", "source"}
_REQUIRED_IDS = ("classroom_id", "session_id", "device_id")
# Timestamp's range (0001-01-01 .. 9999-12-31), in seconds since the epoch.
_MIN_SECONDS, _MAX_SECONDS = -62135596800, 253402300799



def _shown(value: str) -> str:
    return repr(value[:64])


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _fields(data: dict[str, Any], allowed: set[str], where: str) -> dict[str, Any]:
    """``data`` by field name: each field as named in the proto (``classroom_id``) or in
    lowerCamelCase (``classroomId``), as proto3 JSON parsers accept (what
    ``json_format.MessageToJson`` writes); a name the schema does not have is refused."""
    aliases = {_camel(name): name for name in allowed}
    out: dict[str, Any] = {}
    unknown = []
    for name, value in data.items():
        field = name if name in allowed else aliases.get(name)
        if field is None:
            unknown.append(name)
        elif field in out:
            raise RejectRecord("schema_violation", f"{where}: {field} given twice (as "
                                                   f"{field} and {_camel(field)})")
        else:
            out[field] = value
    if unknown:
        names = ", ".join(_shown(name) for name in sorted(unknown)[:8])
        raise RejectRecord("unknown_field", f"{where}: unknown field(s) {names}; allowed: "
                                            f"{', '.join(sorted(allowed))}")
    return out


def _string(data: dict[str, Any], field: str, where: str) -> str:
    value = data.get(field)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RejectRecord("schema_violation", f"{where}{field}: must be a string, got "
                                               f"{type(value).__name__}")
    return value


def _bool(data: dict[str, Any], field: str, where: str) -> bool:
    value = data.get(field)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise RejectRecord("schema_violation", f"{where}{field}: must be true or false, got "
                                               f"{type(value).__name__}")
    return value


def _enum(data: dict[str, Any], field: str, where: str, enum: Any, prefix: str) -> int:
    """An enum given by name, short (``upright``) or full (``POSTURE_UPRIGHT``), any case,
    or by number (as proto3 JSON allows)."""
    value = data.get(field)
    if value is None:
        return 0
    allowed = {name.removeprefix(prefix).lower(): number for name, number in enum.items()}
    if isinstance(value, int) and not isinstance(value, bool) and value in allowed.values():
        return value
    if isinstance(value, str):
        name = value.strip().lower().removeprefix(prefix.lower())
        if name in allowed:
            return allowed[name]
    raise RejectRecord("schema_violation", f"{where}{field}: must be one of "
                                           f"{', '.join(allowed)}")


def _list(data: dict[str, Any], field: str, limit: int, code: str) -> list[Any]:
    value = data.get(field)
    if value is None:
        return []
    if not isinstance(value, list):
        raise RejectRecord("schema_violation", f"{field}: must be an array, got "
                                               f"{type(value).__name__}")
    if len(value) > limit:
        raise RejectRecord(code, f"{field}: {len(value)} entries, at most {limit}")
    return value


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RejectRecord("schema_violation", f"{where}: must be a JSON object, got "
                                               f"{type(value).__name__}")
    return value


def _observed_at(value: Any) -> Timestamp:
    stamp = Timestamp()
    if value is None:
        raise RejectRecord("missing_field", "observed_at: required")
    if not isinstance(value, str):
        raise RejectRecord("schema_violation", "observed_at: must be an RFC 3339 time string")
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00")
                                        .replace("z", "+00:00"))
    except ValueError:
        raise RejectRecord("schema_violation", f"observed_at: not an RFC 3339 time: "
                                               f"{_shown(value)}") from None
    if parsed.tzinfo is None:
        raise RejectRecord("schema_violation", "observed_at: needs a UTC offset (e.g. 'Z')")
    try:
        stamp.FromDatetime(parsed)
    except (OverflowError, ValueError):
        raise RejectRecord("observed_at_out_of_range", f"observed_at: out of range: "
                                                       f"{_shown(value)}") from None
    return stamp


def frame_from_json(value: bytes) -> SignalFrame:
    """The documented JSON form as a SignalFrame (shape and types only; :func:`check_frame`
    checks the values)."""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RejectRecord("malformed_json", f"not UTF-8 ({exc.reason} at byte {exc.start})") \
            from None
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise RejectRecord("malformed_json", "JSON nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise RejectRecord("malformed_json", f"malformed JSON: {exc.msg.removesuffix(' at')} "
                                             f"at line {exc.lineno} column {exc.colno}") from None
    except ValueError as exc:  # NaN/Infinity, an integer with too many digits
        raise RejectRecord("malformed_json", f"malformed JSON: {str(exc)[:120]}") from None
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise RejectRecord("malformed_json", "a string holds an unpaired UTF-16 surrogate "
                                             "escape (\\ud800-\\udfff), which is not Unicode "
                                             "text") from None
    data = _fields(_object(data, "frame"), _FRAME_FIELDS, "frame")
    frame = SignalFrame()
    for field in ("tenant_id", "classroom_id", "session_id", "device_id"):
        setattr(frame, field, _string(data, field, ""))
    frame.observed_at.CopyFrom(_observed_at(data.get("observed_at")))
    for index, raw in enumerate(_list(data, "seats", MAX_SEATS, "too_many_seats")):
        where = f"seats[{index}]"
        seat = _fields(_object(raw, where), _SEAT_FIELDS, where)
        frame.seats.append(SeatSignal(
            seat_id=_string(seat, "seat_id", where + "."),
            subject_ref=_string(seat, "subject_ref", where + "."),
            occupied=_bool(seat, "occupied", where + "."),
            face_forward=_bool(seat, "face_forward", where + "."),
            hand_raised=_bool(seat, "hand_raised", where + "."),
            head_down=_bool(seat, "head_down", where + "."),
            posture=_enum(seat, "posture", where + ".", Posture, "POSTURE_")))
    for index, raw in enumerate(_list(data, "check_ins", MAX_CHECK_INS, "too_many_check_ins")):
        where = f"check_ins[{index}]"
        check_in = _fields(_object(raw, where), _CHECK_IN_FIELDS, where)
        frame.check_ins.append(CheckIn(
            subject_ref=_string(check_in, "subject_ref", where + "."),
            source=_enum(check_in, "source", where + ".", CheckInSource,
                         "CHECK_IN_SOURCE_")))
    level = data.get("audio_level")
    if level is not None:
        if isinstance(level, bool) or not isinstance(level, (int, float)):
            raise RejectRecord("schema_violation", "audio_level: must be a number 0..1")
        if not 0.0 <= float(level) <= 1.0:
            raise RejectRecord("audio_level_out_of_range", f"audio_level: {float(level):g} is "
                                                           "outside 0..1")
        frame.audio_level = float(level)
    expected = data.get("expected_students")
    if expected is not None:
        if isinstance(expected, bool) or not isinstance(expected, int) \
                or not 0 <= expected < 2**31:
            raise RejectRecord("schema_violation", "expected_students: must be an integer "
                                                   "0 or more")
        frame.expected_students = expected
    return frame


def _resolve_tenant(frame: SignalFrame, headers: dict[str, str]) -> None:
    ours = frame.tenant_id.strip()
    from_header = headers.get(TENANT_HEADER, "").strip()
    if ours and from_header and ours != from_header:
        raise RejectRecord("tenant_mismatch", f"tenant_id: frame says {_shown(ours)}, header "
                                              f"{TENANT_HEADER} says {_shown(from_header)}")
    tenant = ours or from_header
    if not tenant:
        raise RejectRecord("missing_tenant", f"tenant_id: required (frame field or "
                                             f"{TENANT_HEADER} header)")
    problems = tenant_problems(tenant, "tenant_id")
    if problems:
        raise RejectRecord("schema_violation", f"tenant_id: {problems[0].description}")
    frame.tenant_id = tenant


def _id(frame: Any, field: str, where: str = "") -> None:
    value = getattr(frame, field).strip()
    if not value:
        raise RejectRecord("missing_field", f"{where}{field}: required")
    if len(value) > MAX_ID_CHARS:
        raise RejectRecord("field_too_long", f"{where}{field}: {len(value)} characters, at "
                                             f"most {MAX_ID_CHARS}")
    setattr(frame, field, value)


def check_frame(frame: SignalFrame, headers: dict[str, str], now: datetime,
                max_future_s: float) -> SignalFrame:
    """Check (and normalise: ids trimmed, tenant resolved) a parsed frame in place."""
    _resolve_tenant(frame, headers)
    for field in _REQUIRED_IDS:
        _id(frame, field)
    if not frame.HasField("observed_at"):
        raise RejectRecord("missing_field", "observed_at: required")
    stamp = frame.observed_at
    if not (_MIN_SECONDS <= stamp.seconds <= _MAX_SECONDS and 0 <= stamp.nanos < 10**9):
        raise RejectRecord("observed_at_out_of_range", "observed_at: not a representable time")
    observed = stamp.ToDatetime(tzinfo=UTC)
    if observed > now + timedelta(seconds=max_future_s):
        raise RejectRecord("observed_at_in_future", f"observed_at: "
                                                    f"{(observed - now).total_seconds():.0f}s "
                                                    f"ahead of ingest's clock, at most "
                                                    f"{max_future_s:g}s")
    if len(frame.seats) > MAX_SEATS:
        raise RejectRecord("too_many_seats", f"seats: {len(frame.seats)} entries, at most "
                                             f"{MAX_SEATS}")
    if len(frame.check_ins) > MAX_CHECK_INS:
        raise RejectRecord("too_many_check_ins", f"check_ins: {len(frame.check_ins)} "
                                                 f"entries, at most {MAX_CHECK_INS}")
    seen: set[str] = set()
    for index, seat in enumerate(frame.seats):
        where = f"seats[{index}]."
        _id(seat, "seat_id", where)
        if seat.seat_id in seen:
            raise RejectRecord("duplicate_seat_id", f"{where}seat_id: {_shown(seat.seat_id)} "
                                                    "appears more than once in the frame")
        seen.add(seat.seat_id)
        seat.subject_ref = seat.subject_ref.strip()
        if len(seat.subject_ref) > MAX_ID_CHARS:
            raise RejectRecord("field_too_long", f"{where}subject_ref: at most "
                                                 f"{MAX_ID_CHARS} characters")
        if seat.posture not in Posture.values():
            raise RejectRecord("schema_violation", f"{where}posture: unknown value "
                                                   f"{seat.posture}")
    for index, check_in in enumerate(frame.check_ins):
        _id(check_in, "subject_ref", f"check_ins[{index}].")
        if check_in.source not in CheckInSource.values():
            raise RejectRecord("schema_violation", f"check_ins[{index}].source: unknown value "
                                                   f"{check_in.source}")
    if frame.HasField("audio_level") and not 0.0 <= frame.audio_level <= 1.0:
        raise RejectRecord("audio_level_out_of_range", f"audio_level: {frame.audio_level:g} "
                                                       "is outside 0..1")
    if frame.expected_students < 0:
        raise RejectRecord("schema_violation", "expected_students: must be 0 or more")
    return frame


def parse_frame(record: Record, now: datetime, max_future_s: float) -> SignalFrame:
    """The frame a ``classroom-signals`` record carries, checked; :class:`RejectRecord` with
    one of :data:`REASON_CODES` otherwise."""
    value = record.value
    if not value:
        raise RejectRecord("empty_record", "record has no value")
    if len(value) > MAX_FRAME_BYTES:
        raise RejectRecord("too_large", f"record of {len(value)} bytes, a frame is at most "
                                        f"{MAX_FRAME_BYTES}")
    frame = decode_record(record, SignalFrame, frame_from_json)
    try:
        return check_frame(frame, record.headers, now, max_future_s)
    except RejectRecord as exc:
        if exc.tenant_id is None:
            # the letter is the school's the frame names, body or header (its admin reads
            # why, and an erasure there finds it); two schools named: an operator's
            exc.tenant_id = one_tenant(frame.tenant_id, record.headers)
        raise
