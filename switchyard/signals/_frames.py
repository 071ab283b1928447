"""What a SignalFrame is worth and how it travels: the signal count, and the record bytes
and headers for protobuf and for JSON.

One signal is one observation, as ``signals.proto`` counts them: each of a seat's five
observations (occupied, face_forward, hand_raised, posture, head_down), each check-in, and the
room audio level when the frame has one. A 30-seat frame with a microphone is 151 signals, so
signals/s and frames/s differ by two orders of magnitude: every rate the simulator and the
benchmark print names its unit.
"""

from __future__ import annotations

from google.protobuf import json_format

from switchyard._kafka import TENANT_HEADER
from switchyard._serde import CONTENT_TYPE_HEADER, JSON_MEDIA_TYPE, encode
from switchyard.v1 import SignalFrame

#: Observations a seat carries (occupied, face_forward, hand_raised, posture, head_down).
SIGNALS_PER_SEAT = 5


def count_signals(frame: SignalFrame) -> int:
    """The raw signals a frame carries (the unit of the 20,000 signals/s goal)."""
    return (SIGNALS_PER_SEAT * len(frame.seats) + len(frame.check_ins)
            + (1 if frame.HasField("audio_level") else 0))


def frame_to_json(frame: SignalFrame) -> bytes:
    """The frame as JSON: the proto's field names, enums by name, ``observed_at`` as an
    RFC 3339 string (what ``json_format.Parse`` reads back into the same message)."""
    return json_format.MessageToJson(frame, preserving_proto_field_name=True,
                                     indent=None).encode()


def frame_from_json(body: bytes | str) -> SignalFrame:
    """The inverse of :func:`frame_to_json` (also accepts the camelCase JSON names)."""
    return json_format.Parse(body, SignalFrame())


def frame_record(frame: SignalFrame, as_json: bool = False) -> tuple[bytes, dict[str, str]]:
    """The record value and headers a device writes: protobuf (content-type naming the
    message type) or JSON (``application/json``), with the tenant header."""
    if as_json:
        value, headers = frame_to_json(frame), {CONTENT_TYPE_HEADER: JSON_MEDIA_TYPE}
    else:
        value, headers = encode(frame)
    headers[TENANT_HEADER] = frame.tenant_id
    return value, headers
