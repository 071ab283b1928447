"""Ingest's domain: validate a submission, normalise it into a task envelope, hash its payload.

Validation itself lives in ``switchyard._submissions`` (re-exported here), because the
decision service's ``Decide`` applies the same rules.

Pure functions, no I/O: the gRPC handler and the intake stream processor both call these, and
unit tests drive them directly.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime, timezone

from google.protobuf.timestamp_pb2 import Timestamp

# The acceptance rules are shared with the decision service's Decide: one copy, there.
from switchyard.tasks import (
    KIND,
    MAX_JSON_DEPTH,
    UNSUCCESSFUL,
    check,
    json_problem,
    level_of,
    requested_bucket,
    stored_document,
    validate,
)
from switchyard.v1 import Document, Submission, TaskEnvelope, TaskSource


def payload_sha256(submission: Submission) -> str:
    """Identity of what was submitted: a repeated key with another payload is a conflict.
    Metadata counts as normalisation leaves it (keys and values trimmed), so a retry that
    differs only in padding is the same submission, as its envelope is the same."""
    return _payload_sha256(submission, {k.strip(): v.strip()
                                        for k, v in submission.metadata.items()})


def earlier_payload_sha256(submission: Submission) -> str:
    """:func:`payload_sha256` as tasks accepted before metadata was trimmed in it were stored:
    a retry of such a task is still the same submission."""
    return _payload_sha256(submission, dict(submission.metadata))


def _payload_sha256(submission: Submission, metadata: dict[str, str]) -> str:
    canonical = json.dumps(
        {
            "kind": submission.kind.strip().lower(),
            "content_type": submission.document.content_type.strip().lower() or "text/plain",
            "body": hashlib.sha256(submission.document.body).hexdigest(),
            "metadata": dict(sorted(metadata.items())),
            "priority": submission.priority,  # type: ignore[deprecated]
            # only when set, so tasks accepted before priority_level existed keep their hash
            **({"priority_level": int(submission.priority_level)}
               if submission.priority_level else {}),
        },
        sort_keys=True,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def new_task_id() -> str:
    return str(uuid.uuid4())


def build_envelope(submission: Submission, task_id: str, source: int,
                   received_at: datetime | None = None, page_count: int = 0) -> TaskEnvelope:
    """Normalise a valid submission into the envelope every later stage reads;
    ``page_count`` is what ``inspect`` counted (0 for text)."""
    received = Timestamp()
    received.FromDatetime(received_at or datetime.now(timezone.utc))
    # text in a declared charset is stored as UTF-8, under its bare media type; an e-mail as
    # the document it carries, its headers in the metadata
    document, metadata = stored_document(
        submission.document, {k.strip(): v.strip() for k, v in submission.metadata.items()})
    kind = submission.kind.strip().lower()
    hint = submission.document.kind_hint.strip().lower()
    if not hint:
        # ingest knows no document types (packs do, in the decision service): an empty hint
        # leaves the type to the router
        hint = kind
    bucket = requested_bucket(submission.priority_level,
                              submission.priority)  # type: ignore[deprecated]
    envelope = TaskEnvelope(
        task_id=task_id,
        tenant_id=submission.tenant_id.strip(),
        idempotency_key=submission.idempotency_key.strip(),
        kind=kind or "",
        document=Document(
            content_type=document.content_type,
            body=document.body,
            filename=document.filename.strip(),
            kind_hint=hint,
            page_count=page_count,
        ),
        metadata=metadata,
        # resolved once here (unset -> normal); the deprecated int carries the same urgency
        # for consumers that predate priority_level
        priority=bucket, priority_level=level_of(bucket),
        received_at=received,
        correlation_id=task_id,
        attempt=1,
        source=source,  # type: ignore[arg-type]
    )
    if submission.HasField("deadline"):
        envelope.deadline.CopyFrom(submission.deadline)
    return envelope


#: Statuses a task may be retried from (RetryTask); SUCCEEDED work is never redone.
RETRYABLE_STATUSES = UNSUCCESSFUL  # terminal without success: RetryTask may start it over
RETRY_OF_KEY = "retry_of"


def retry_key(task_id: str, attempt: int) -> str:
    """The idempotency key of the ``attempt``-th retry of ``task_id``: a repeated RetryTask
    with the same attempt names the same new task instead of creating a second one."""
    return f"retry:{task_id}:{attempt}"


def retry_submission(envelope: TaskEnvelope, attempt: int) -> Submission:
    """A new submission of ``envelope``'s work: the same tenant, document, kind, priority and
    metadata, plus ``retry_of`` naming the task it retries (replacing an older ``retry_of``,
    so it always points one step back). The deadline and callback are not carried over: the
    old deadline has usually passed, and the new task is watched under its own id."""
    submission = Submission(
        tenant_id=envelope.tenant_id,
        idempotency_key=retry_key(envelope.task_id, attempt),
        kind=envelope.kind,
        document=envelope.document,
        metadata={**envelope.metadata, RETRY_OF_KEY: envelope.task_id},
        priority_level=envelope.priority_level,
    )
    return submission


__all__ = ["KIND", "MAX_JSON_DEPTH", "RETRYABLE_STATUSES", "RETRY_OF_KEY", "TaskSource",
           "build_envelope", "check", "earlier_payload_sha256", "json_problem", "new_task_id",
           "payload_sha256", "retry_key", "retry_submission", "validate"]
