"""The classroom_event pack on engagement alerts (docs/classroom.md), offline: the real
extractor reads the alert JSON the engagement processor submits, and the engine's decision
table sends a sustained disengagement to the counsellors and an attendance anomaly to the
teachers, with a check-in SLA and an explanation that names what to check and why (the
drivers). Other classroom events keep their rules and plan (the golden cases run them through
the real engine and Triton: tests/decision/test_packs_service.py)."""

from __future__ import annotations

import json
from typing import Any

from services.decision.engine import table_outcome
from services.decision.policy import Policy
from switchyard.packs import (
    builtin_packs,
    extract_fields,
    plan_to_proto,
    resolve_parameters,
    typed_fields,
)

PACK = builtin_packs()["classroom_event"]
TENANT = Policy(review_queue="acme-review")

DISENGAGED = {
    "event": "sustained_disengagement", "alert_id": "al_7f3a", "class_id": "MATH-7B",
    "session": "MATH-7B-2026-12-02-p3", "room": "B204",
    "subject": "s_0123456789abcdef0123456789abcdef", "seat": "r2c3", "score": 0.18,
    "windows": 4, "window_start": "2026-12-02T09:20:00Z", "window_end": "2026-12-02T09:25:00Z",
    "model_version": "1.0.0",
    "detail": "The student in seat r2c3 scored below 0.35 for 4 windows in a row.",
    "drivers": [{"feature": "head_down_share", "value": 0.82, "contribution": -1.4},
                {"feature": "face_forward_share", "value": 0.1, "contribution": -0.9}],
    "suppressed_before": 0,
}
ABSENT = {
    "event": "attendance_anomaly", "alert_id": "al_91c0", "class_id": "BIO-101",
    "session": "BIO-101-2026-12-02-p1", "room": "Lab 3", "subject": "", "seat": "",
    "score": 0.4, "attendance_rate": 0.4, "windows": 1,
    "window_start": "2026-12-02T08:00:00Z", "window_end": "2026-12-02T08:01:00Z",
    "model_version": "1.0.0", "detail": "12 of 30 expected students were present.",
    "drivers": [{"feature": "present_share", "value": 0.4, "contribution": -0.3}],
    "suppressed_before": 3,
}


def decide(document: dict[str, Any], **overrides: Any) -> Any:
    extraction = extract_fields(PACK, json.dumps(document))
    raw = {name: f.value for name, f in extraction.fields.items()}
    context = {"fields": typed_fields(raw, PACK.field_types), "metadata": {},
               "task": {"task_id": "t-1", "tenant_id": "acme", "kind": "classroom_event"},
               "params": resolve_parameters(PACK, overrides),
               "route": {"label": "classroom_event", "confidence": 0.97}, "scores": {},
               "extraction": {"confidence": extraction.confidence,
                              "issues": list(extraction.issues)}, "history": {}}
    return raw, table_outcome(PACK, context, TENANT)


def test_the_alert_fields_and_their_data_classes() -> None:
    raw, _ = decide(DISENGAGED)
    assert raw["alert_kind"] == "sustained_disengagement"
    assert (raw["subject"], raw["seat"], raw["windows"]) == (
        "s_0123456789abcdef0123456789abcdef", "r2c3", "4")
    assert json.loads(raw["drivers"]) == DISENGAGED["drivers"]
    classes = {name: spec.data_class for name, spec in PACK.fields.items()}
    # a pseudonym is still personal data: withheld from reviewers (not revealed)
    assert classes["subject"] == "personal"
    assert "subject" not in PACK.review.reveal
    assert {classes[n] for n in ("seat", "score", "windows", "detail", "drivers")} == {"derived"}
    # an event that is no alert has no alert kind
    raw, _ = decide({"event": "attendance_recorded", "class_id": "ECON-201",
                     "attendance_rate": 0.73})
    assert "alert_kind" not in raw


def test_sustained_disengagement_goes_to_the_counsellors_with_the_drivers() -> None:
    _, out = decide(DISENGAGED)
    assert (out.action, out.rule, out.escalation_reason) == (
        "escalate", "sustained_disengagement", "POLICY")
    assert (out.queue, out.review_sla_s) == ("counsellors", 24 * 3600)
    assert out.explanation.startswith(
        "Check in with the student in seat r2c3 of class MATH-7B (session "
        "MATH-7B-2026-12-02-p3, room B204): the engagement model 1.0.0 scored them disengaged "
        "in 4 windows in a row (engagement probability 18%), the last ending "
        "2026-12-02T09:25:00Z. The student in seat r2c3 scored below 0.35 for 4 windows in a "
        "row. Drivers (feature, value, contribution): ")
    assert '"feature": "head_down_share", "value": 0.82, "contribution": -1.4' in out.explanation
    # the pseudonym is not spelled out in the explanation (reviewers read it)
    assert DISENGAGED["subject"] not in out.explanation
    assert "held back" not in out.explanation
    assert out.explanation.endswith("Approve once you have checked in; reject if no check-in "
                                    "is needed.")


def test_attendance_anomaly_goes_to_the_teachers_and_says_what_was_held_back() -> None:
    _, out = decide(ABSENT)
    assert (out.action, out.rule, out.queue, out.review_sla_s) == (
        "escalate", "attendance_anomaly", "teachers", 4 * 3600)
    assert out.priority == 1  # high
    assert "class BIO-101 (session BIO-101-2026-12-02-p1, room Lab 3): 40% of the expected " \
        "students were present in the window ending 2026-12-02T08:01:00Z." in out.explanation
    assert "3 more alerts of this class were held back by the rate limit before this one." \
        in out.explanation
    # the tenant's own attendance level does not take the alert from the teachers
    _, out = decide(ABSENT, alert_attendance_below=0.8)
    assert out.rule == "attendance_anomaly"


def test_other_classroom_events_keep_their_rules() -> None:
    record = {"event": "attendance_recorded", "class_id": "ECON-201", "attendance_rate": 0.73}
    _, out = decide(record)
    assert (out.action, out.rule) == ("auto_execute", "confident_route")
    _, out = decide(record, alert_attendance_below=0.8)
    assert (out.action, out.rule, out.queue) == ("escalate", "attendance_drop", "counsellors")


def test_the_plan_records_an_event_or_an_alerts_check_in() -> None:
    plan = plan_to_proto(PACK)
    assert [(s.step_id, s.target) for s in plan.steps] == [
        ("1-record_event", "http://analytics/events"),
        ("2-record_checkin", "http://analytics/checkins")]
    # one or the other: an alert's pseudonym never goes to the events collection, and the
    # check-in names the alert, not the student
    assert [s.name for s in PACK.plan] == ["record_event", "record_checkin"]
    assert [s.when for s in PACK.plan] == ["fields.alert_kind == null",
                                           "fields.alert_kind != null"]
    checkin = PACK.plan[1]
    assert "subject" not in json.dumps(checkin.payload) and "seat" not in json.dumps(
        checkin.payload)
