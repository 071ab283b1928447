"""Task priority: unset means normal, the deprecated int is honoured for 1..3, one rule from
submission to envelope to review bucket, through gRPC validation and the JSON intake alike."""

from __future__ import annotations

import json

import pytest

from services.ingest import domain, intake
from switchyard.access import IntakeSigner
from switchyard.messaging import Record, RejectRecord
from switchyard.tasks import HIGH, LOW, NORMAL, URGENT, requested_bucket, task_bucket
from switchyard.v1 import Document, Submission, TaskEnvelope, TaskPriority, TaskSource

P = TaskPriority


def submission(**changes: object) -> Submission:
    return Submission(tenant_id="acme", idempotency_key="k-1", kind="invoice",
                      document=Document(content_type="text/plain", body=b"Invoice 42, $10"),
                      **changes)  # type: ignore[arg-type]


def envelope_of(sub: Submission) -> TaskEnvelope:
    return domain.build_envelope(sub, "task-1", TaskSource.TASK_SOURCE_GRPC)


def test_a_submission_without_priority_is_normal_not_most_urgent() -> None:
    envelope = envelope_of(submission())
    assert envelope.priority_level == P.TASK_PRIORITY_NORMAL
    assert envelope.priority == NORMAL  # what consumers predating priority_level read
    assert task_bucket(envelope) == NORMAL


@pytest.mark.parametrize(("changes", "bucket"), [
    ({"priority_level": P.TASK_PRIORITY_URGENT}, URGENT),
    ({"priority_level": P.TASK_PRIORITY_HIGH}, HIGH),
    ({"priority_level": P.TASK_PRIORITY_LOW}, LOW),
    ({"priority": 1}, HIGH),        # the deprecated field, still honoured for 1..3
    ({"priority": 3}, LOW),
    ({"priority": 0}, NORMAL),      # indistinguishable from unset in proto3
    ({"priority": 3, "priority_level": P.TASK_PRIORITY_LOW}, LOW),
    ({"priority": 0, "priority_level": P.TASK_PRIORITY_URGENT}, URGENT),
])
def test_requested_priority_resolves_to_one_bucket(changes: dict[str, int], bucket: int) -> None:
    sub = submission(**changes)
    assert domain.validate(sub, 1024) == []
    envelope = envelope_of(sub)
    assert task_bucket(envelope) == bucket
    assert (envelope.priority, envelope.priority_level) == (bucket, bucket + 1)


def test_envelopes_stored_before_priority_level_read_as_before_except_the_default() -> None:
    assert task_bucket(TaskEnvelope(priority=0)) == NORMAL  # the old default was P0
    assert task_bucket(TaskEnvelope(priority=1)) == HIGH
    assert requested_bucket(P.TASK_PRIORITY_UNSPECIFIED, 0) == NORMAL


def test_bad_and_contradicting_priorities_are_refused_with_the_field() -> None:
    problems = {v.field: v.description for v in domain.validate(submission(priority=7), 1024)}
    assert "priority" in problems
    problems = {v.field: v.description for v in domain.validate(
        submission(priority=1, priority_level=P.TASK_PRIORITY_LOW), 1024)}
    assert "disagrees" in problems["priority_level"]
    problems = {v.field: v.description for v in domain.validate(
        submission(priority_level=9), 1024)}  # type: ignore[arg-type]
    assert "unknown TaskPriority" in problems["priority_level"]


def test_payload_hash_of_old_submissions_is_unchanged() -> None:
    """A retry of a submission accepted before priority_level existed must still match."""
    old = submission(priority=2)
    assert domain.payload_sha256(old) == domain.payload_sha256(submission(priority=2))
    assert domain.payload_sha256(submission()) != domain.payload_sha256(
        submission(priority_level=P.TASK_PRIORITY_URGENT))


def record(value: bytes) -> Record:
    return Record(topic="intake", partition=0, offset=0, key=b"k", value=value, headers={},
                  timestamp=0.0)


def parse(**fields: object) -> Submission:
    base: dict[str, object] = {"tenant_id": "acme", "idempotency_key": "po-1",
                               "document": {"body": "Invoice 7, amount due $10"}}
    return intake.parse_record(record(json.dumps({**base, **fields}).encode()), 1024,
                               IntakeSigner(""))


def test_intake_json_takes_priority_level_by_name_and_defaults_to_normal() -> None:
    assert task_bucket(envelope_of(parse())) == NORMAL
    assert parse(priority_level="urgent").priority_level == P.TASK_PRIORITY_URGENT
    assert parse(priority_level="TASK_PRIORITY_LOW").priority_level == P.TASK_PRIORITY_LOW
    assert parse(priority_level=None).priority_level == P.TASK_PRIORITY_UNSPECIFIED
    for bad in ("asap", 1, True):
        with pytest.raises(RejectRecord) as caught:
            parse(priority_level=bad)
        assert caught.value.code == "schema_violation"
        assert caught.value.reason.startswith("priority_level:")
