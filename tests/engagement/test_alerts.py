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
from switchyard.access import IntakeSigner
from switchyard.messaging import Record, RejectRecord

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


def test_drivers_are_the_largest_contributions_to_the_log_odds() -> None:
    from services.decision.engagement.features import FEATURE_NAMES
    from services.decision.engagement.processor import DriverWeights

    coef = [0.0] * 8
    coef[1], coef[3], coef[7] = 2.0, -1.0, 0.5
    weights = DriverWeights(coef, [0.5] * 8, [0.25] * 8)
    vector = [0.5, 0.0, 0.5, 1.0, 0.5, 0.5, 0.5, 1.0]
    drivers = weights.drivers(vector)
    assert [d["feature"] for d in drivers] == [FEATURE_NAMES[1], FEATURE_NAMES[3],
                                               FEATURE_NAMES[7]]
    assert [d["contribution"] for d in drivers] == [-4.0, -2.0, 1.0]
    assert drivers[0]["value"] == 0.0
    # without weights: values in FEATURE_NAMES order, contribution 0
    assert [d["contribution"] for d in DriverWeights().drivers(vector)] == [0.0] * 3
