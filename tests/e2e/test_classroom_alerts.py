"""Engagement alerts become check-ins for people, through the real pipeline (ingest, decision
with the router on Triton, review, the executor and the demo downstream): an alert submitted
the way the decision service's engagement processor submits it (a JSON Submission on the
intake topic, kind classroom_event, the alert as the document) reaches the counsellors' queue
(sustained disengagement) or the teachers' queue (attendance anomaly) with its check-in SLA and
an explanation that names the seat and the drivers, the student's pseudonym withheld from the
reviewer. Approved, the check-in is recorded at http://analytics/checkins naming the alert and
never the student; rejected, nothing is recorded.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from switchyard import Settings
from switchyard.messaging import INTAKE, Producer
from switchyard.privacy import withheld_label
from switchyard.rpc import create_channel
from switchyard.storage import connect
from switchyard.v1 import (
    ClaimRequest,
    GetTaskRequest,
    IngestServiceStub,
    ListQueueRequest,
    ReviewItem,
    ReviewPriority,
    ReviewServiceStub,
    ReviewVerdict,
    SubmitVerdictRequest,
    Task,
    TaskStatus,
    Verdict,
)
from tests.polling import eventually
from tests.terminal import TERMINAL_STATUSES

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("pipeline")]
OPS_KEY = "ops-key"
KEYS = f"{OPS_KEY}:*:admin"
WAIT_S = 120
SUBJECT = "s_" + "5e1f" * 8


@pytest.fixture(scope="module")
def settings(settings: Settings) -> Settings:
    return settings.replace(api_keys=KEYS)


def alert(kind: str, marker: str) -> dict[str, Any]:
    """An alert document as the spec's "Alert JSON document" shapes it."""
    end = datetime.now(UTC).replace(microsecond=0)
    common = {"alert_id": f"al_{marker}_{kind[:4]}", "class_id": f"MATH-{marker[:4]}",
              "session": f"sess-{marker}", "room": "B204", "model_version": "1.0.0",
              "window_start": (end - timedelta(minutes=5)).isoformat().replace("+00:00", "Z"),
              "window_end": end.isoformat().replace("+00:00", "Z")}
    if kind == "sustained_disengagement":
        return {"event": kind, **common, "subject": SUBJECT, "seat": "r2c3", "score": 0.21,
                "windows": 3, "detail": "The student in seat r2c3 scored below 0.35 for 3 "
                                        "consecutive windows; head_down_share drove it most.",
                "drivers": [{"feature": "head_down_share", "value": 0.78,
                             "contribution": -1.31}], "suppressed_before": 0}
    return {"event": kind, **common, "subject": "", "seat": "", "score": 0.36,
            "attendance_rate": 0.36, "windows": 1,
            "detail": "9 of 25 expected students were present.",
            "drivers": [{"feature": "present_share", "value": 0.36, "contribution": -0.34}],
            "suppressed_before": 2}


async def submit_alert(settings: Settings, tenant: str, document: dict[str, Any]) -> None:
    """What the engagement processor does with a raised alert: a JSON Submission on intake
    (idempotency key = alert id; metadata subject, classroom, session, alert kind)."""
    submission = {
        "tenant_id": tenant, "idempotency_key": document["alert_id"], "kind": "classroom_event",
        "metadata": {"subject": document["subject"], "classroom": document["class_id"],
                     "session": document["session"], "alert_kind": document["event"]},
        "document": {"content_type": "application/json", "body": json.dumps(document)},
    }
    producer = Producer(settings)
    await producer.start()
    try:
        await producer.send_raw(INTAKE.full_name(settings), document["class_id"].encode(),
                                json.dumps(submission).encode(),
                                {"content-type": "application/json"})
    finally:
        await producer.stop()


async def item_for(review: ReviewServiceStub, alert_id: str, queue: str) -> ReviewItem | None:
    metadata = (("authorization", f"Bearer {OPS_KEY}"),)
    items = (await review.ListQueue(ListQueueRequest(queue=queue, page_size=500),
                                    metadata=metadata)).items
    found = [i for i in items if i.escalation.task.idempotency_key == alert_id]
    return found[0] if found else None


async def test_alerts_become_check_ins_in_the_right_queue(settings: Settings) -> None:
    marker = uuid.uuid4().hex[:10]
    metadata = (("authorization", f"Bearer {OPS_KEY}"),)
    review_channel = create_channel(f"127.0.0.1:{settings.review_grpc_port}", OPS_KEY)
    ingest_channel = create_channel(f"127.0.0.1:{settings.ingest_grpc_port}", OPS_KEY)
    review, ingest = ReviewServiceStub(review_channel), IngestServiceStub(ingest_channel)
    disengaged = alert("sustained_disengagement", marker)
    absent = alert("attendance_anomaly", marker)
    try:
        for document in (disengaged, absent):
            await submit_alert(settings, "acme", document)
        counsellors = await eventually(
            lambda: item_for(review, disengaged["alert_id"], "counsellors"),
            "the disengagement alert in the counsellors' queue", WAIT_S, 0.3)
        teachers = await eventually(
            lambda: item_for(review, absent["alert_id"], "teachers"),
            "the attendance alert in the teachers' queue", WAIT_S, 0.3)

        # the check-in SLA of each rule, and the explanation a person can act on
        esc = counsellors.escalation
        proposal = esc.proposed_decision
        assert (proposal.rule, proposal.pack, proposal.pack_version) == (
            "sustained_disengagement", "classroom_event", "1.2.0")
        assert esc.priority == ReviewPriority.REVIEW_PRIORITY_P2  # normal
        sla_h = (counsellors.sla_deadline.ToDatetime(UTC)
                 - counsellors.created_at.ToDatetime(UTC)).total_seconds() / 3600
        assert 23.9 < sla_h <= 24.0, sla_h
        assert proposal.explanation.startswith(
            f"Check in with the student in seat r2c3 of class {disengaged['class_id']}")
        assert "(engagement probability 21%)" in proposal.explanation
        assert '"feature": "head_down_share"' in proposal.explanation
        # the pseudonym is personal data: withheld from the reviewer, everywhere they look
        fields = {f.name: f.value for f in proposal.fields}
        assert fields["subject"] == withheld_label("subject")
        assert fields["seat"] == "r2c3"
        assert SUBJECT not in proposal.explanation
        assert SUBJECT.encode() not in esc.task.document.body
        assert SUBJECT not in esc.task.metadata.get("subject", "")

        assert teachers.escalation.proposed_decision.rule == "attendance_anomaly"
        assert teachers.escalation.priority == ReviewPriority.REVIEW_PRIORITY_P1  # high
        sla_h = (teachers.sla_deadline.ToDatetime(UTC)
                 - teachers.created_at.ToDatetime(UTC)).total_seconds() / 3600
        assert 3.9 < sla_h <= 4.0, sla_h
        assert "36% of the expected students were present" in \
            teachers.escalation.proposed_decision.explanation
        assert "2 more alerts of this class were held back by the rate limit" in \
            teachers.escalation.proposed_decision.explanation

        # the counsellor checked in: approve; the teacher finds no check-in needed: reject
        for item, verdict in ((counsellors, Verdict.VERDICT_APPROVE),
                              (teachers, Verdict.VERDICT_REJECT)):
            await review.Claim(ClaimRequest(item_id=item.item_id), metadata=metadata)
            await review.SubmitVerdict(SubmitVerdictRequest(verdict=ReviewVerdict(
                item_id=item.item_id, verdict=verdict, reason="check-in test")),
                metadata=metadata)

        async def ended(task_id: str) -> Task | None:
            task = (await ingest.GetTask(GetTaskRequest(task_id=task_id))).task
            return task if task.status in TERMINAL_STATUSES else None
        done = await eventually(lambda: ended(esc.task_id), "the check-in to be recorded",
                                WAIT_S, 0.3)
        assert done.status == TaskStatus.TASK_STATUS_SUCCEEDED, done.reason
        refused = await eventually(lambda: ended(teachers.escalation.task_id),
                                   "the rejected alert to end", WAIT_S, 0.3)
        assert (refused.status, refused.reason) == (TaskStatus.TASK_STATUS_FAILED,
                                                    "rejected:reviewer_reject")
        conn = await connect(settings)
        try:
            effects = await conn.fetch(
                f'SELECT task_id, system, collection, status, body FROM '
                f'"{settings.postgres_schema}_downstream".effects WHERE task_id = ANY($1) '
                'ORDER BY id', [esc.task_id, teachers.escalation.task_id])
        finally:
            await conn.close()
        # one check-in, for the approved alert, in analytics/checkins (no event recorded)
        assert [(r["task_id"], r["system"], r["collection"], r["status"]) for r in effects] == [
            (esc.task_id, "analytics", "checkins", "active")]
        body = effects[0]["body"]
        body = json.loads(body) if isinstance(body, str) else body
        assert body == {"alert_id": disengaged["alert_id"],
                        "alert_kind": "sustained_disengagement", "task_id": esc.task_id,
                        "class_id": disengaged["class_id"], "session": disengaged["session"],
                        "room": "B204", "window_end": disengaged["window_end"],
                        "model_version": "1.0.0", "checked_in": True}
        assert SUBJECT not in json.dumps(body) and "r2c3" not in json.dumps(body)
    finally:
        await review_channel.close()
        await ingest_channel.close()


async def test_an_ordinary_classroom_event_is_still_recorded(settings: Settings) -> None:
    """Events that are no alert (no ``alert_kind`` read) run ``record_event`` and skip the
    check-in step: the plan's conditions hold on a document without the alert's fields."""
    marker = uuid.uuid4().hex[:10]
    channel = create_channel(f"127.0.0.1:{settings.ingest_grpc_port}", OPS_KEY)
    ingest = IngestServiceStub(channel)
    body = "Grade 8: 4 students were marked absent for 3 consecutive days. Counsellor notified."
    try:
        from switchyard.v1 import Document, SubmitTaskRequest, Submission  # noqa: PLC0415
        task_id = (await ingest.SubmitTask(SubmitTaskRequest(submission=Submission(
            tenant_id="acme", idempotency_key=f"event-{marker}", kind="classroom_event",
            document=Document(content_type="text/plain", body=body.encode()))))
        ).task_id

        async def ended() -> Task | None:
            task = (await ingest.GetTask(GetTaskRequest(task_id=task_id))).task
            return task if task.status in TERMINAL_STATUSES else None
        done = await eventually(ended, "the event to be recorded", WAIT_S, 0.3)
        assert done.status == TaskStatus.TASK_STATUS_SUCCEEDED, done.reason
        conn = await connect(settings)
        try:
            effects = await conn.fetch(
                f'SELECT system, collection FROM "{settings.postgres_schema}_downstream".'
                'effects WHERE task_id = $1', task_id)
        finally:
            await conn.close()
        assert [(r["system"], r["collection"]) for r in effects] == [("analytics", "events")]
    finally:
        await channel.close()
