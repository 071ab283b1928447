"""What makes a submitted document acceptable: one set of rules for every way work comes in.

Ingest (gRPC and the Kafka intake) checks a ``Submission`` with :func:`validate`; the
decision service's ``Decide`` checks the ``TaskEnvelope`` it is given with
:func:`validate_task`, so a document ingest would refuse (bytes that are not UTF-8 text, a
PDF that is not one, a decompression bomb) is refused there too, with the same violations.
The document itself is checked by :func:`switchyard.documents.inspect` (type, limits, whether
it opens). Pure functions, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from switchyard._grpc import FieldViolation
from switchyard._priority import priority_problems
from switchyard.documents._email import EMAIL
from switchyard.documents._files import (
    EMAIL_METADATA_CHARS,
    MAX_JSON_DEPTH,
    TEXT_TYPES,
    DocumentError,
    DocumentInfo,
    DocumentLimits,
    as_stored,
    inspect,
    json_problem,
    normalise_content_type,
    unpack_email,
)
from switchyard.v1 import Document, Submission, TaskEnvelope

#: A task kind: a document type's name, as packs name them (``switchyard.packs``). Which kinds
#: are automated is the decision service's business (the tenant's packs), not ingest's: an
#: unknown one is escalated there, never refused here.
KIND = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_TENANT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
MAX_IDEMPOTENCY_KEY_CHARS = 128
_MAX_METADATA_ENTRIES = 64
#: A metadata key's and value's length (trimmed): small attributes to find a task by
#: (ListTasks' filter takes the same), not a place for a document.
MAX_METADATA_KEY_CHARS = 128
MAX_METADATA_VALUE_CHARS = 1024
assert EMAIL_METADATA_CHARS <= MAX_METADATA_VALUE_CHARS


Limits = DocumentLimits | int


def _limits(limits: Limits) -> DocumentLimits:
    """``limits``; a bare int is one byte limit for every document, the other limits at
    their defaults."""
    if isinstance(limits, int):
        return DocumentLimits(max_text_bytes=limits, max_bytes=limits)
    return limits


class DocumentViolation(FieldViolation):
    """A violation :func:`switchyard.documents.inspect` found in a file document; ``code`` is
    the :class:`~switchyard.documents.DocumentError` code (the Kafka intake's dead-letter
    reason)."""

    def __init__(self, field: str, code: str, description: str) -> None:
        super().__init__(field, description)
        self.code = code


def validate(submission: Submission, limits: Limits) -> list[FieldViolation]:
    """Every problem with a submission at once, each naming its field."""
    return check(submission, limits)[0]


def check(submission: Submission, limits: Limits
          ) -> tuple[list[FieldViolation], DocumentInfo | None]:
    """:func:`validate`, and what :func:`~switchyard.documents.inspect` found in the document
    (None when it was refused)."""
    problems = tenant_problems(submission.tenant_id, "tenant_id")
    problems += nul_problems(submission)
    key = submission.idempotency_key.strip()
    if not key:
        problems.append(FieldViolation("idempotency_key", "required"))
    elif len(key) > MAX_IDEMPOTENCY_KEY_CHARS:
        problems.append(FieldViolation("idempotency_key",
                                       f"at most {MAX_IDEMPOTENCY_KEY_CHARS} characters"))
    more, info = _content_problems(submission.kind, submission.document, submission.metadata,
                                   submission, _limits(limits), "")
    return problems + more, info


def validate_task(task: TaskEnvelope, limits: Limits,
                  prefix: str = "task.") -> list[FieldViolation]:
    """The same rules for a task handed over whole (``Decide``); fields named ``prefix`` +
    the envelope's field. Ids a task gets at ingest (task_id, idempotency key) are optional."""
    problems = tenant_problems(task.tenant_id, f"{prefix}tenant_id")
    problems += nul_problems(task, prefix)
    problems += _content_problems(task.kind, task.document, task.metadata, task,
                                  _limits(limits), prefix)[0]
    return problems


def nul_problems(message: Message, prefix: str = "") -> list[FieldViolation]:
    """Every text field of ``message`` (nested messages, lists and maps too) that holds a NUL
    character, by its path: PostgreSQL text cannot store one, so it is refused here, with
    the field named, rather than failing the write (and a whole batch with it)."""
    problems = []
    for field, value in message.ListFields():
        where = f"{prefix}{field.name}"
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            for key, item in value.items():
                text_item = isinstance(item, str) and "\x00" in item
                if "\x00" in key or text_item:
                    problems.append(FieldViolation(f"{where}[{key[:40]!r}]", _NUL))
                elif isinstance(item, Message):
                    problems += nul_problems(item, f"{where}[{key[:40]!r}].")
        elif field.type == FieldDescriptor.TYPE_STRING:
            items = value if field.label == FieldDescriptor.LABEL_REPEATED else [value]
            if any("\x00" in item for item in items):
                problems.append(FieldViolation(where, _NUL))
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            items = value if field.label == FieldDescriptor.LABEL_REPEATED else [value]
            for index, item in enumerate(items):
                at = f"{where}[{index}]." if field.label == FieldDescriptor.LABEL_REPEATED \
                    else f"{where}."
                problems += nul_problems(item, at)
    return problems


_NUL = "must not contain NUL characters"


def tenant_problems(tenant_id: str, field: str) -> list[FieldViolation]:
    tenant = tenant_id.strip()
    if not tenant:
        return [FieldViolation(field, "required")]
    if not _TENANT.match(tenant):
        return [FieldViolation(
            field, "must be 1-63 chars of a-z, 0-9, '_' or '-', starting alphanumeric")]
    return []


def _content_problems(kind_value: str, document: Document, metadata: object,
                      prioritised: Submission | TaskEnvelope, limits: DocumentLimits,
                      prefix: str) -> tuple[list[FieldViolation], DocumentInfo | None]:
    problems: list[FieldViolation] = []
    kind = kind_value.strip().lower()
    if kind and not KIND.match(kind):
        problems.append(FieldViolation(
            f"{prefix}kind", f"not a task kind {kind_value[:80]!r}: a document type name is 1-63 "
                             "lower-case letters, digits or '_', starting with a letter"))
    info = None
    if document.HasField("blob"):
        # the claim check is ingest's: a reference from outside names bytes nobody checked
        problems.append(FieldViolation(
            f"{prefix}document.blob", "set by ingest only (claim check); send the document's "
                                      "bytes in body"))
    else:
        try:
            info = inspect(document.content_type, document.body, limits)
        except DocumentError as exc:
            field = f"{prefix}document.{exc.field}"
            text = normalise_content_type(document.content_type) in TEXT_TYPES
            if exc.code == "unsupported_type" or (text and exc.code != "type_mismatch"):
                problems.append(FieldViolation(field, exc.message))  # as before files came
            else:  # a file's refusal names its code: a client can tell a bomb from a typo
                problems.append(DocumentViolation(field, exc.code, f"{exc.code}: {exc.message}"))
    if len(metadata) > _MAX_METADATA_ENTRIES:  # type: ignore[arg-type]
        problems.append(FieldViolation(f"{prefix}metadata",
                                       f"at most {_MAX_METADATA_ENTRIES} entries"))
    else:
        problems.extend(_metadata_problems(metadata, prefix))
    problems.extend(FieldViolation(f"{prefix}{name}", why)
                    for name, why in priority_problems(prioritised))
    return problems, info


def _metadata_problems(metadata: Any, prefix: str) -> list[FieldViolation]:
    """Each metadata entry too long to keep, named by its key (cut short)."""
    problems = []
    for key, value in sorted(metadata.items()):
        where = f"{prefix}metadata[{key[:MAX_METADATA_KEY_CHARS]!r}]"
        if len(key.strip()) > MAX_METADATA_KEY_CHARS:
            problems.append(FieldViolation(where, f"keys are at most {MAX_METADATA_KEY_CHARS} "
                                                  f"characters"))
        elif len(value.strip()) > MAX_METADATA_VALUE_CHARS:
            problems.append(FieldViolation(where, f"values are at most "
                                                  f"{MAX_METADATA_VALUE_CHARS} characters, "
                                                  f"not {len(value.strip())}"))
    return problems


def stored_document(document: Document, metadata: Mapping[str, str]
                    ) -> tuple[Document, dict[str, str]]:
    """A checked document as a task stores it, and the task's metadata.

    The stored form is :func:`switchyard.documents.as_stored`'s: the bare media type, text as
    UTF-8, and an e-mail as the document it carries (named as its attachment when it carries
    one file). What is kept of the e-mail, its headers and, when an attachment is the
    document, its own text (``email_*``, :class:`switchyard.documents.UnpackedEmail`), joins
    the metadata where the submitter's keys leave room; a submitter's own key wins."""
    stored = Document()
    stored.CopyFrom(document)
    merged = dict(metadata)
    if normalise_content_type(document.content_type) == EMAIL:
        unpacked = unpack_email(document.body)
        stored.content_type, stored.body = unpacked.content_type, unpacked.body
        stored.filename = unpacked.filename or document.filename
        for key, value in unpacked.metadata.items():
            if key not in merged and len(merged) < _MAX_METADATA_ENTRIES:
                merged[key] = value
    else:
        stored.content_type, stored.body = as_stored(document.content_type, document.body)
    return stored, merged


__all__ = ["KIND", "MAX_IDEMPOTENCY_KEY_CHARS", "MAX_JSON_DEPTH", "MAX_METADATA_KEY_CHARS",
           "MAX_METADATA_VALUE_CHARS", "TEXT_TYPES", "DocumentViolation", "Limits", "check", "json_problem",
           "stored_document", "tenant_problems", "validate", "validate_task"]
