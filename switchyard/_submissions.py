"""What makes a submitted document acceptable: one set of rules for every way work comes in.

Ingest (gRPC and the Kafka intake) checks a ``Submission`` with :func:`validate`; the
decision service's ``Decide`` checks the ``TaskEnvelope`` it is given with
:func:`validate_task`, so a document ingest would refuse (a PNG, a PDF, bytes that are not
UTF-8 text) is refused there too, with the same field violations, instead of being decoded
as text and routed. Pure functions, no I/O.
"""

from __future__ import annotations

import json
import re

from switchyard._grpc import FieldViolation
from switchyard._priority import priority_problems
from switchyard.v1 import Document, Submission, TaskEnvelope

#: A task kind: a document type's name, as packs name them (``switchyard.packs``). Which kinds
#: are automated is the decision service's business (the tenant's packs), not ingest's: an
#: unknown one is escalated there, never refused here.
KIND = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
TEXT_TYPES = ("text/plain", "application/json")
MAX_JSON_DEPTH = 64
_TENANT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_MAX_KEY_CHARS = 128
_MAX_METADATA_ENTRIES = 64


def validate(submission: Submission, max_payload_bytes: int) -> list[FieldViolation]:
    """Every problem with a submission at once, each naming its field."""
    problems = tenant_problems(submission.tenant_id, "tenant_id")
    key = submission.idempotency_key.strip()
    if not key:
        problems.append(FieldViolation("idempotency_key", "required"))
    elif len(key) > _MAX_KEY_CHARS:
        problems.append(FieldViolation("idempotency_key", f"at most {_MAX_KEY_CHARS} characters"))
    problems += _content_problems(submission.kind, submission.document, submission.metadata,
                                  submission, max_payload_bytes, "")
    return problems


def validate_task(task: TaskEnvelope, max_payload_bytes: int,
                  prefix: str = "task.") -> list[FieldViolation]:
    """The same rules for a task handed over whole (``Decide``); fields named ``prefix`` +
    the envelope's field. Ids a task gets at ingest (task_id, idempotency key) are optional."""
    problems = tenant_problems(task.tenant_id, f"{prefix}tenant_id")
    problems += _content_problems(task.kind, task.document, task.metadata, task,
                                  max_payload_bytes, prefix)
    return problems


def tenant_problems(tenant_id: str, field: str) -> list[FieldViolation]:
    tenant = tenant_id.strip()
    if not tenant:
        return [FieldViolation(field, "required")]
    if not _TENANT.match(tenant):
        return [FieldViolation(
            field, "must be 1-63 chars of a-z, 0-9, '_' or '-', starting alphanumeric")]
    return []


def _content_problems(kind_value: str, document: Document, metadata: object,
                      prioritised: Submission | TaskEnvelope, max_payload_bytes: int,
                      prefix: str) -> list[FieldViolation]:
    problems: list[FieldViolation] = []
    kind = kind_value.strip().lower()
    if kind and not KIND.match(kind):
        problems.append(FieldViolation(
            f"{prefix}kind", f"not a task kind {kind_value[:80]!r}: a document type name is 1-63 "
                             "lower-case letters, digits or '_', starting with a letter"))
    content_type = document.content_type.strip().lower() or "text/plain"
    if content_type not in TEXT_TYPES:
        problems.append(FieldViolation(
            f"{prefix}document.content_type", f"unsupported {document.content_type!r}; one of "
            f"{', '.join(TEXT_TYPES)}"))
    body_field = f"{prefix}document.body"
    if not document.body:
        problems.append(FieldViolation(body_field, "required (empty document)"))
    elif len(document.body) > max_payload_bytes:
        problems.append(FieldViolation(
            body_field, f"{len(document.body)} bytes exceeds the limit of "
            f"{max_payload_bytes} bytes"))
    else:
        try:
            text = document.body.decode("utf-8")
        except UnicodeDecodeError as exc:
            problems.append(FieldViolation(body_field, f"not valid UTF-8 ({exc.reason} "
                                                       f"at byte {exc.start})"))
        else:
            if content_type == "application/json":
                problem = json_problem(text)
                if problem:
                    problems.append(FieldViolation(body_field, problem))
    if len(metadata) > _MAX_METADATA_ENTRIES:  # type: ignore[arg-type]
        problems.append(FieldViolation(f"{prefix}metadata",
                                       f"at most {_MAX_METADATA_ENTRIES} entries"))
    problems.extend(FieldViolation(f"{prefix}{name}", why)
                    for name, why in priority_problems(prioritised))
    return problems


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


__all__ = ["KIND", "MAX_JSON_DEPTH", "TEXT_TYPES", "json_problem", "tenant_problems",
           "validate", "validate_task"]
