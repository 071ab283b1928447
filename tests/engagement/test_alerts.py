"""Alerts as intake records: ingest's own parser accepts them, signed when intake is signed."""

from __future__ import annotations

import json

import pytest

from services.decision.engagement.alerts import (
    SUSTAINED,
    Alert,
    attendance_alert,
    intake_headers,
)
from services.ingest.intake import parse_record
from switchyard._auth import IntakeSigner
from switchyard._streams import Record, RejectRecord

T0 = 1_800_000_000


def sustained() -> Alert:
    return Alert("al_1", "school", "room-1", "mon-1", SUSTAINED, T0, T0 + 300, 3, 0.12,
                 "1.0.0", "below for 3 windows", subject="s_abc", seat_id="seat-4",
                 drivers=[{"feature": "face_forward_share", "value": 0.1,
                           "contribution": -2.0}], suppressed_before=2)


def record(value: bytes, headers: dict[str, str]) -> Record:
    return Record("intake", 0, 0, b"al_1", value, headers, 0.0)


def test_an_alert_is_a_classroom_event_submission_ingest_accepts() -> None:
    alert = sustained()
    value = alert.submission()
    submission = parse_record(record(value, intake_headers(alert, value, "")), 10_000_000,
                              IntakeSigner(""))
    assert submission.kind == "classroom_event" and submission.idempotency_key == "al_1"
    assert dict(submission.metadata) == {"subject": "s_abc", "classroom": "room-1",
                                         "session": "mon-1",
                                         "alert_kind": "sustained_disengagement"}
    document = json.loads(submission.document.body)
    assert document == alert.document()
    assert set(document) == {"event", "alert_id", "class_id", "session", "room", "subject",
                             "seat", "score", "windows", "window_start", "window_end",
                             "model_version", "detail", "drivers", "suppressed_before"}
    assert document["suppressed_before"] == 2


def test_alerts_are_signed_when_the_tenant_has_an_intake_key() -> None:
    alert = sustained()
    value = alert.submission()
    signer = IntakeSigner("school:s3cret,other:x")
    submission = parse_record(record(value, intake_headers(alert, value, "school:s3cret")),
                              10_000_000, signer)
    assert submission.tenant_id == "school"
    with pytest.raises(RejectRecord):  # unsigned: refused by a signing ingest
        parse_record(record(value, intake_headers(alert, value, "")), 10_000_000, signer)


def test_attendance_anomaly_below_the_rate_only() -> None:
    assert attendance_alert("t", "r", "s", T0, T0 + 60, 7, 10, 0.7, "1") is None
    assert attendance_alert("t", "r", "s", T0, T0 + 60, 5, 0, 0.7, "1") is None
    alert = attendance_alert("t", "r", "s", T0, T0 + 60, 6, 10, 0.7, "1")
    assert alert is not None and alert.document()["attendance_rate"] == pytest.approx(0.6)
    again = attendance_alert("t", "r", "s", T0 + 60, T0 + 120, 5, 10, 0.7, "1")
    assert again is not None and again.alert_id == alert.alert_id  # once per session
