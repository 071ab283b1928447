"""Records on the intake topic, turned into submissions (or refused with a reason code).

Upstream producers write to the ``intake`` topic directly, as JSON or as a protobuf
``switchyard.v1.Submission``, chosen by the ``content-type`` header (no header: JSON). The
JSON schema is documented in docs/ingest.md; every refusal raises :class:`RejectRecord` with a
stable code, and the stream middleware puts the record on the dead-letter topic with the
original bytes and headers.

Where the tenant and key come from, in order: the payload's ``tenant_id`` /
``idempotency_key``; the ``x-tenant-id`` / ``x-idempotency-key`` headers; for the key, the
record key. A payload and a header that disagree are refused rather than guessed between.
With signing on, the key must be in the (signed) payload.

A PDF, an image or an e-mail (``message/rfc822``) travels in the JSON form base64-encoded
(``document.body``, as proto3 JSON encodes bytes) with its ``content_type``; a refused file
is dead-lettered with reason ``document_<code>`` (``document_encrypted``,
``document_too_many_pixels``, ...: the codes of :class:`switchyard.documents.DocumentError`).

Pure functions: unit tests drive them without a broker.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from services.ingest import domain
from switchyard.access import SIGNATURE_HEADER, IntakeSigner
from switchyard.documents import (
    FILE_TYPES,
    MESSAGE_TYPES,
    TEXT_TYPES,
    DocumentLimits,
    normalise_content_type,
)
from switchyard.messaging import (
    JSON_MEDIA_TYPE,
    TENANT_HEADER,
    Record,
    RejectRecord,
    decode_record,
    one_tenant,
)
from switchyard.tasks import DocumentViolation
from switchyard.v1 import Document, Submission, TaskPriority

KEY_HEADER = "x-idempotency-key"
#: Room for the JSON/protobuf wrapper around a document at the size limit.
WRAPPER_ALLOWANCE_BYTES = 64 * 1024

_TOP_LEVEL = {"tenant_id", "idempotency_key", "kind", "document", "metadata", "priority",
              "priority_level", "deadline", "callback_url"}
_DOCUMENT = {"content_type", "body", "filename", "kind_hint"}


#: protobuf's JSON names (what json_format writes by default: tenantId) for the snake_case
#: ones above, accepted as the REST gateway accepts both; from the messages' descriptors
_JSON_NAMES = {f.json_name: f.name
               for message in (Submission.DESCRIPTOR, Document.DESCRIPTOR)
               for f in message.fields
               if f.name in _TOP_LEVEL | _DOCUMENT and f.json_name != f.name}
_PROTO_NAMES = {proto: json_name for json_name, proto in _JSON_NAMES.items()}


def _snake_case(data: dict[str, Any], where: str) -> dict[str, Any]:
    """``data`` with protobuf's lowerCamelCase names as the snake_case ones; one field given
    under both names is refused (which value is meant?)."""
    out: dict[str, Any] = {}
    for name, value in data.items():
        proto = _JSON_NAMES.get(name, name)
        if proto in out:
            raise RejectRecord("schema_violation", f"{where}{proto}: given twice (as {proto} "
                                                   f"and {_PROTO_NAMES[proto]})")
        out[proto] = value
    return out


def _names(names: list[str]) -> str:
    """Names the record used, quoted (a dead letter's reason withholds what it quotes of the
    record: a name may be a person's) and bounded."""
    return ", ".join(repr(name[:64]) for name in names[:8])


def _string(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise RejectRecord("schema_violation", f"{field}: must be a string, got "
                                               f"{type(value).__name__}")
    return value


def _encodable(data: Any) -> bool:
    """False when a JSON value holds a lone surrogate (valid JSON escapes such as ``\\ud800``
    that no UTF-8 text can carry): protobuf string fields and ``str.encode`` would raise."""
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """One JSON object's members; a name given twice is refused (json keeps the last one, so
    one of the two values would be dropped without a word)."""
    out: dict[str, Any] = {}
    for name, value in pairs:
        if name in out:
            raise _DuplicateKey(name)
        out[name] = value
    return out


def submission_from_json(value: bytes) -> Submission:
    """Parse the documented JSON form into a Submission (shape only; values are checked by
    ``domain.validate`` afterwards, exactly as for gRPC)."""
    try:
        # a byte-order mark, as some Windows and .NET producers write, is not part of the JSON
        text = value.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise RejectRecord("malformed_json", f"not UTF-8 ({exc.reason} at byte {exc.start})") \
            from None
    problem = domain.json_problem(text)
    if problem:
        raise RejectRecord("malformed_json", problem)
    try:
        data = json.loads(text, object_pairs_hook=_unique_keys)
    except _DuplicateKey as exc:
        raise RejectRecord("malformed_json", f"the name {str(exc)!r} appears twice in one "
                                             "object: which value is meant?") from None
    if not _encodable(data):
        raise RejectRecord("malformed_json", "a string holds an unpaired UTF-16 surrogate escape "
                                             "(\\ud800-\\udfff), which is not Unicode text")
    if not isinstance(data, dict):
        raise RejectRecord("schema_violation", f"expected a JSON object, got "
                                               f"{type(data).__name__}")
    try:
        return _submission_from_object(data)
    except RejectRecord as exc:
        # the letter is the tenant's the object names, when it names one (parse_record
        # weighs it against the x-tenant-id header, as for a record that parses)
        named = {t.strip() for t in (data.get("tenant_id"), data.get("tenantId"))
                 if isinstance(t, str) and t.strip()}
        if exc.tenant_id is None and named:  # two names of two tenants: nobody's letter
            exc.tenant_id = named.pop() if len(named) == 1 else ""
        raise


def _submission_from_object(data: dict[str, Any]) -> Submission:
    data = _snake_case(data, "")
    unknown = sorted(set(data) - _TOP_LEVEL)
    if unknown:
        raise RejectRecord("schema_violation", f"unknown field(s) {_names(unknown)}; "
                                               f"allowed: {', '.join(sorted(_TOP_LEVEL))}")
    submission = Submission()
    for field in ("tenant_id", "idempotency_key", "kind", "callback_url"):
        if data.get(field) is not None:
            setattr(submission, field, _string(data[field], field))
    document = data.get("document")
    if not isinstance(document, dict):
        raise RejectRecord("schema_violation", "document: required, a JSON object with a body")
    document = _snake_case(document, "document.")
    unknown = sorted(set(document) - _DOCUMENT)
    if unknown:
        raise RejectRecord("schema_violation", f"document: unknown field(s) "
                                               f"{_names(unknown)}")
    body = document.get("body")
    content_type = document.get("content_type")
    if "blob" in document:
        raise RejectRecord("schema_violation", "document.blob: set by ingest only (claim "
                                               "check); send the document's bytes in body")
    if isinstance(body, (dict, list)):
        # A structured body is carried as the JSON text it is.
        submission.document.body = json.dumps(body, ensure_ascii=False).encode()
        content_type = content_type or JSON_MEDIA_TYPE
    elif isinstance(body, str) and isinstance(content_type, str) and \
            normalise_content_type(content_type) in FILE_TYPES + MESSAGE_TYPES:
        # a file's (or an e-mail's) bytes, base64-encoded as proto3 JSON encodes bytes
        try:
            submission.document.body = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise RejectRecord("schema_violation", f"document.body: must be base64 (standard "
                                                   f"alphabet, padded) for "
                                                   f"{content_type.strip()}") from None
    elif isinstance(body, str):
        submission.document.body = body.encode()
    elif body is not None:
        raise RejectRecord("schema_violation", "document.body: must be a string or a JSON "
                                               "object/array")
    if content_type is not None:
        submission.document.content_type = _string(content_type, "document.content_type")
        if normalise_content_type(content_type) in TEXT_TYPES:
            # the JSON form's text is characters, sent here as UTF-8: a charset it declares
            # was the JSON's, not these bytes'
            submission.document.content_type = normalise_content_type(content_type)
    for field in ("filename", "kind_hint"):
        if document.get(field) is not None:
            setattr(submission.document, field, _string(document[field], f"document.{field}"))
    metadata = data.get("metadata") or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise RejectRecord("schema_violation", "metadata: must be an object of strings")
    submission.metadata.update(metadata)
    priority = data.get("priority", 0)  # deprecated: priority_level
    if priority is None:
        priority = 0
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise RejectRecord("schema_violation", "priority: must be an integer 0-3")
    if not -2**31 <= priority < 2**31:
        raise RejectRecord("schema_violation", "priority: must be an integer 0-3")
    submission.priority = priority  # type: ignore[deprecated]
    submission.priority_level = _priority_level(data.get("priority_level"))
    if data.get("deadline") is not None:
        deadline = _string(data["deadline"], "deadline")
        try:
            parsed = datetime.fromisoformat(deadline.replace("Z", "+00:00"))
        except ValueError:
            raise RejectRecord("schema_violation", f"deadline: not an RFC 3339 time: "
                                                   f"{deadline[:64]!r}") from None
        if parsed.tzinfo is None:
            raise RejectRecord("schema_violation", "deadline: needs a UTC offset (e.g. 'Z')")
        stamp = Timestamp()
        try:
            stamp.FromDatetime(parsed)
        except (OverflowError, ValueError):  # e.g. year 1 or 9999 pushed out by the offset
            raise RejectRecord("schema_violation", f"deadline: out of range: "
                                                   f"{deadline[:64]!r}") from None
        submission.deadline.CopyFrom(stamp)
    return submission


_LEVEL_NAMES = tuple(name.removeprefix("TASK_PRIORITY_").lower()
                     for name in TaskPriority.keys() if not name.endswith("UNSPECIFIED"))


def _priority_level(value: Any) -> TaskPriority.ValueType:
    """``priority_level``: a TaskPriority name, short ("normal") or full
    ("TASK_PRIORITY_NORMAL"), any case; absent or null means normal."""
    if value is None:
        return TaskPriority.TASK_PRIORITY_UNSPECIFIED
    if not isinstance(value, str) or value.strip().lower().removeprefix("task_priority_") \
            not in _LEVEL_NAMES:
        raise RejectRecord("schema_violation", f"priority_level: must be one of "
                                               f"{', '.join(_LEVEL_NAMES)}, got "
                                               f"{str(value)[:32]!r}")
    name = value.strip().upper().removeprefix("TASK_PRIORITY_")
    return TaskPriority.Value(f"TASK_PRIORITY_{name}")


def parse_record(record: Record, limits: DocumentLimits | int, signer: IntakeSigner
                 ) -> Submission:
    """The submission an intake record carries, tenant and key resolved and authenticated.

    ``limits``: the document limits (an int: one byte limit for any document). Only sizes
    are checked here (a record cannot be larger than the largest document, base64-encoded in
    JSON, plus its wrapper); ``domain.validate`` checks the document itself afterwards."""
    if isinstance(limits, int):
        limits = DocumentLimits(max_text_bytes=limits, max_bytes=limits)
    value = record.value
    if not value:
        raise RejectRecord("empty_record", "record has no value")
    largest = max(limits.max_text_bytes, limits.max_bytes)
    if len(value) > largest * 4 // 3 + WRAPPER_ALLOWANCE_BYTES:
        raise RejectRecord("too_large", f"record of {len(value)} bytes exceeds the limit of "
                                        f"{largest} bytes for a document")
    try:
        submission = decode_record(record, Submission, submission_from_json)
    except RejectRecord as exc:
        if exc.tenant_id:   # named by a JSON object that did not parse as a submission
            exc.tenant_id = one_tenant(exc.tenant_id, record.headers)
        raise
    try:
        return _checked(submission, record, limits, signer)
    except RejectRecord as exc:
        if exc.tenant_id is None:  # the letter is the tenant's the record named, if only one
            exc.tenant_id = named_tenant(submission, record)
        raise


def named_tenant(submission: Submission, record: Record) -> str:
    """The tenant a decoded record names, payload or header; '' when they name two (its
    letter is then an operator's: neither may read what the other sent)."""
    return one_tenant(submission.tenant_id, record.headers)


def _checked(submission: Submission, record: Record, limits: DocumentLimits,
             signer: IntakeSigner) -> Submission:
    signed_key = submission.idempotency_key.strip()
    _resolve_identity(submission, record)
    if not submission.tenant_id.strip():
        raise RejectRecord("schema_violation", "tenant_id: required (payload field or "
                                               f"{TENANT_HEADER} header)")
    limit = (limits.max_text_bytes
             if normalise_content_type(submission.document.content_type) in TEXT_TYPES
             else limits.max_bytes)
    if len(submission.document.body) > limit:
        raise RejectRecord("too_large", f"document.body: {len(submission.document.body)} "
                                        f"bytes exceeds the limit of {limit} bytes")
    reason = signer.check(submission.tenant_id.strip(), record.value or b"",
                          record.headers.get(SIGNATURE_HEADER))
    if reason is not None:
        code = "unknown_tenant" if reason.startswith("unknown tenant") else "bad_signature"
        raise RejectRecord(code, reason)
    if signer.enabled and not signed_key:
        # the signature covers the value only: a key from a header or the record key could
        # be changed in flight, making one signed record several tasks
        raise RejectRecord("schema_violation", "idempotency_key: required in the payload when "
                                               "records are signed (a header or record key is "
                                               "not covered by the signature)")
    return submission


def _resolve_identity(submission: Submission, record: Record) -> None:
    for field, header in (("tenant_id", TENANT_HEADER), ("idempotency_key", KEY_HEADER)):
        from_header = record.headers.get(header, "").strip()
        ours = getattr(submission, field).strip()
        if ours and from_header and ours != from_header:
            # lengths, not values: the reason outlives the record, and a header that is not
            # UTF-8 would be quoted as its escapes (an outside integrator saw '\\xff\\xfe')
            raise RejectRecord("schema_violation", f"{field}: the payload and header {header} "
                                                   f"name different values ({len(ours)} and "
                                                   f"{len(from_header)} characters)")
        if not ours and from_header:
            setattr(submission, field, from_header)
    if not submission.idempotency_key.strip() and record.key:
        submission.idempotency_key = record.key.decode("utf-8", errors="replace")


def problems_reason(problems: list[Any]) -> tuple[str, str]:
    """Reason code and text for a submission that failed ``domain.validate``."""
    text = "; ".join(f"{p.field}: {p.description}" for p in problems)
    fields = {p.field for p in problems}
    for problem in problems:
        if isinstance(problem, DocumentViolation):  # a file refused: its own code
            return f"document_{problem.code}", text
    if fields == {"kind"} and not any("NUL" in p.description for p in problems):
        return "unknown_kind", text   # (a NUL in it is malformed text, as in any field)
    if any("malformed JSON" in p.description or "nested deeper" in p.description
           for p in problems):
        return "malformed_document_json", text
    return "schema_violation", text


__all__ = ["KEY_HEADER", "named_tenant", "parse_record", "problems_reason", "submission_from_json"]
