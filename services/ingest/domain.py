"""Ingest's domain: validate a submission, normalise it into a task envelope, hash its payload.

Pure functions, no I/O: the gRPC handler and the intake stream processor both call these, and
unit tests drive them directly.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from datetime import datetime, timezone

from google.protobuf.timestamp_pb2 import Timestamp

from switchyard._grpc import FieldViolation
from switchyard._priority import level_of, priority_problems, requested_bucket
from switchyard.v1 import Document, Submission, TaskEnvelope, TaskSource

KNOWN_KINDS = ("invoice", "admission_form", "support_ticket", "classroom_event", "other")
TEXT_TYPES = ("text/plain", "application/json")
_TENANT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_MAX_KEY_CHARS = 128
_MAX_METADATA_ENTRIES = 64


def validate(submission: Submission, max_payload_bytes: int) -> list[FieldViolation]:
    """Every problem with a submission at once, each naming its field."""
    problems: list[FieldViolation] = []
    tenant = submission.tenant_id.strip()
    if not tenant:
        problems.append(FieldViolation("tenant_id", "required"))
    elif not _TENANT.match(tenant):
        problems.append(FieldViolation(
            "tenant_id", "must be 1-63 chars of a-z, 0-9, '_' or '-', starting alphanumeric"))
    key = submission.idempotency_key.strip()
    if not key:
        problems.append(FieldViolation("idempotency_key", "required"))
    elif len(key) > _MAX_KEY_CHARS:
        problems.append(FieldViolation("idempotency_key", f"at most {_MAX_KEY_CHARS} characters"))
    kind = submission.kind.strip().lower()
    if kind and kind not in KNOWN_KINDS:
        problems.append(FieldViolation(
            "kind", f"unknown task kind {submission.kind!r}; one of {', '.join(KNOWN_KINDS)}"))
    document = submission.document
    content_type = document.content_type.strip().lower() or "text/plain"
    if content_type not in TEXT_TYPES:
        problems.append(FieldViolation(
            "document.content_type", f"unsupported {document.content_type!r}; one of "
            f"{', '.join(TEXT_TYPES)}"))
    if not document.body:
        problems.append(FieldViolation("document.body", "required (empty document)"))
    elif len(document.body) > max_payload_bytes:
        problems.append(FieldViolation(
            "document.body", f"{len(document.body)} bytes exceeds the limit of "
            f"{max_payload_bytes} bytes"))
    else:
        try:
            text = document.body.decode("utf-8")
        except UnicodeDecodeError as exc:
            problems.append(FieldViolation("document.body", f"not valid UTF-8 ({exc.reason} "
                                                            f"at byte {exc.start})"))
        else:
            if content_type == "application/json":
                problem = json_problem(text)
                if problem:
                    problems.append(FieldViolation("document.body", problem))
    if len(submission.metadata) > _MAX_METADATA_ENTRIES:
        problems.append(FieldViolation("metadata", f"at most {_MAX_METADATA_ENTRIES} entries"))
    problems.extend(FieldViolation(name, why) for name, why in priority_problems(submission))
    return problems


MAX_JSON_DEPTH = 64


def json_problem(text: str) -> str | None:
    """Why ``text`` is not acceptable JSON, or None. Depth is checked before parsing so a
    hostile document cannot exhaust the parser's recursion."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_JSON_DEPTH:
                return f"JSON nested deeper than {MAX_JSON_DEPTH} levels"
        elif char in "]}":
            depth -= 1
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        return f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
    except ValueError as exc:  # e.g. an integer literal longer than Python converts
        return f"malformed JSON: {exc}"
    return None


def payload_sha256(submission: Submission) -> str:
    """Identity of what was submitted: a repeated key with another payload is a conflict."""
    canonical = json.dumps(
        {
            "kind": submission.kind.strip().lower(),
            "content_type": submission.document.content_type.strip().lower() or "text/plain",
            "body": hashlib.sha256(submission.document.body).hexdigest(),
            "metadata": dict(sorted(submission.metadata.items())),
            "priority": submission.priority,  # type: ignore[deprecated]
            # only when set, so tasks accepted before priority_level existed keep their hash
            **({"priority_level": int(submission.priority_level)}
               if submission.priority_level else {}),
        },
        sort_keys=True,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def guess_kind(text: str) -> str:
    """A cheap hint for documents submitted without a kind; the router model decides."""
    lowered = text[:2000].lower()
    for kind, words in (
        ("invoice", ("invoice", "amount due", "bill to", "remit")),
        ("admission_form", ("admission", "applicant", "enrol", "enroll")),
        ("support_ticket", ("ticket", "not working", "help", "error", "refund")),
        ("classroom_event", ("classroom", "attendance", "quiz", "sensor")),
    ):
        if any(word in lowered for word in words):
            return kind
    return "other"


def new_task_id() -> str:
    return str(uuid.uuid4())


def build_envelope(submission: Submission, task_id: str, source: int,
                   received_at: datetime | None = None) -> TaskEnvelope:
    """Normalise a valid submission into the envelope every later stage reads."""
    received = Timestamp()
    received.FromDatetime(received_at or datetime.now(timezone.utc))
    body = submission.document.body
    kind = submission.kind.strip().lower()
    hint = submission.document.kind_hint.strip().lower()
    if not hint:
        hint = kind or guess_kind(body.decode("utf-8", errors="replace"))
    bucket = requested_bucket(submission.priority_level,
                              submission.priority)  # type: ignore[deprecated]
    envelope = TaskEnvelope(
        task_id=task_id,
        tenant_id=submission.tenant_id.strip(),
        idempotency_key=submission.idempotency_key.strip(),
        kind=kind or "",
        document=Document(
            content_type=submission.document.content_type.strip().lower() or "text/plain",
            body=body,
            filename=submission.document.filename.strip(),
            kind_hint=hint,
        ),
        metadata={k.strip(): v.strip() for k, v in submission.metadata.items()},
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


__all__ = ["KNOWN_KINDS", "TaskSource", "build_envelope", "guess_kind", "new_task_id",
           "payload_sha256", "validate"]
