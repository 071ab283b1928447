"""Inbound webhook sources: registration, and turning a POSTed JSON body into a Submission.

A tenant registers a source (name, field mapping); the server generates its Standard Webhooks
secret and shows it once. Upstream systems POST to ``/webhooks/in/<source_id>`` on the REST
gateway (``rest``), which checks the signature (``signatures``) and submits what
:func:`to_submission` builds through the same path as SubmitTask (validation, backpressure,
idempotency). A redelivered message (same ``webhook-id``) maps to the same idempotency key, so
it returns the task the first delivery created.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
from google.protobuf import json_format

from services.ingest import signatures
from switchyard.rpc import FieldViolation
from switchyard.tasks import timestamp
from switchyard.v1 import (
    Document,
    Submission,
    TaskPriority,
    WebhookFieldMapping,
    WebhookSource,
)

MAX_NAME_CHARS = 100
MAX_PATH_CHARS = 200
MAX_METADATA_PATHS = 32
#: Prefix of the idempotency key taken from the webhook-id header.
KEY_PREFIX = "webhook:"


@dataclass(frozen=True)
class Source:
    """A registered, not deleted source with its secret (for the signature check)."""

    source_id: str
    tenant_id: str
    secret: str
    mapping: WebhookFieldMapping


class MappingError(ValueError):
    """The body does not give what the mapping asks for; ``field`` names the mapping entry."""

    def __init__(self, field: str, description: str) -> None:
        super().__init__(f"{field}: {description}")
        self.field = field
        self.description = description


#: A path ending in this is optional: nothing there (or a JSON null) leaves its field unset.
OPTIONAL = "?"
_PRIORITIES = {"urgent": TaskPriority.TASK_PRIORITY_URGENT,
               "high": TaskPriority.TASK_PRIORITY_HIGH,
               "normal": TaskPriority.TASK_PRIORITY_NORMAL,
               "low": TaskPriority.TASK_PRIORITY_LOW}


def _bare(path: str) -> tuple[str, bool]:
    """A mapping path without its optional mark, and whether it had one."""
    path = path.strip()
    return path.removesuffix(OPTIONAL), path.endswith(OPTIONAL)


def _path_problem(path: str) -> str | None:
    if len(path) > MAX_PATH_CHARS:
        return f"at most {MAX_PATH_CHARS} characters"
    steps = _steps(_bare(path)[0])
    if any(not step for step in steps):
        return f"{path!r} has an empty step (write keys separated by single dots)"
    return None


def _steps(path: str) -> list[str]:
    path = path.strip()
    if path.startswith("$."):
        path = path[2:]
    return path.split(".")


def mapping_problems(mapping: WebhookFieldMapping) -> list[FieldViolation]:
    """What is wrong with a mapping (field names as in RegisterWebhookSourceRequest)."""
    problems = []
    if not mapping.kind.strip() and not mapping.default_kind.strip():
        problems.append(FieldViolation("mapping.kind", "a kind path or a default_kind is "
                                                       "required"))
    for name in ("kind", "idempotency_key", "document", "priority_level"):
        path = getattr(mapping, name)
        problem = _path_problem(path) if path.strip() else None
        if _bare(path)[1] and name != "priority_level":
            problem = "cannot be optional (only metadata and priority_level paths can)"
        if problem:
            problems.append(FieldViolation(f"mapping.{name}", problem))
    if len(mapping.metadata) > MAX_METADATA_PATHS:
        problems.append(FieldViolation("mapping.metadata", f"at most {MAX_METADATA_PATHS} "
                                                           "entries"))
    for key, path in mapping.metadata.items():
        problem = _path_problem(path) if path.strip() else "a path is required"
        if problem:
            problems.append(FieldViolation(f"mapping.metadata[{key}]", problem))
    return problems


def registration_problems(name: str, mapping: WebhookFieldMapping) -> list[FieldViolation]:
    problems = []
    if not name.strip():
        problems.append(FieldViolation("name", "required"))
    elif len(name.strip()) > MAX_NAME_CHARS:
        problems.append(FieldViolation("name", f"at most {MAX_NAME_CHARS} characters"))
    return problems + mapping_problems(mapping)


def _lookup(body: Any, path: str, field: str) -> Any:
    """What ``path`` names in ``body``; None where an optional path (ending in "?") names
    nothing; MappingError where a required one does not."""
    path, optional = _bare(path)
    value = body
    for step in _steps(path):
        if isinstance(value, dict) and step in value:
            value = value[step]
        elif isinstance(value, list) and step.isdigit() and int(step) < len(value):
            value = value[int(step)]
        elif optional:
            return None
        else:
            raise MappingError(field, f"path {path!r} names nothing in the body (at {step!r})")
    return value


def _priority(body: Any, path: str) -> TaskPriority.ValueType:
    value = _lookup(body, path, "priority_level") if path.strip() else None
    if value is None:
        return TaskPriority.TASK_PRIORITY_UNSPECIFIED
    level = _PRIORITIES.get(_text(value).strip().lower())
    if level is None:
        raise MappingError("priority_level", f"path {_bare(path)[0]!r} "
                                             "holds no priority (urgent, high, normal or low)")
    return level


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def to_submission(source: Source, body: Any, message_id: str) -> Submission:
    """The submission a POSTed body (parsed JSON) maps to; MappingError when it cannot."""
    mapping = source.mapping
    kind = _text(_lookup(body, mapping.kind, "kind")) if mapping.kind.strip() \
        else mapping.default_kind.strip()
    key = _text(_lookup(body, mapping.idempotency_key, "idempotency_key")) \
        if mapping.idempotency_key.strip() else KEY_PREFIX + message_id
    document = _lookup(body, mapping.document, "document") if mapping.document.strip() \
        else body
    found = {name: _lookup(body, path, f"metadata[{name}]")
             for name, path in mapping.metadata.items()}
    # a JSON null is no value: left out, not stored as the text "null"
    metadata = {name: _text(value) for name, value in found.items() if value is not None}
    return Submission(tenant_id=source.tenant_id, idempotency_key=key, kind=kind,
                      document=Document(content_type="application/json",
                                        body=json.dumps(document, sort_keys=True).encode()),
                      metadata=metadata,
                      priority_level=_priority(body, mapping.priority_level))


# -- storage -----------------------------------------------------------------------------

def _source_pb(row: asyncpg.Record) -> WebhookSource:
    mapping = json_format.Parse(row["mapping"], WebhookFieldMapping())
    return WebhookSource(source_id=str(row["source_id"]), tenant_id=row["tenant_id"],
                         name=row["name"], mapping=mapping,
                         created_at=timestamp(row["created_at"]))


async def register(pool: asyncpg.Pool, tenant_id: str, name: str,
                   mapping: WebhookFieldMapping) -> tuple[WebhookSource, str]:
    """Store a source with a fresh secret; returns it and the secret (shown only now)."""
    secret = signatures.new_secret()
    row = await pool.fetchrow(
        "INSERT INTO webhook_sources (source_id, tenant_id, name, secret, mapping) "
        "VALUES ($1, $2, $3, $4, $5::jsonb) RETURNING *",
        uuid.uuid4(), tenant_id, name.strip(), secret, json_format.MessageToJson(mapping))
    return _source_pb(row), secret


async def list_sources(pool: asyncpg.Pool, tenant_id: str) -> list[WebhookSource]:
    rows = await pool.fetch("SELECT * FROM webhook_sources WHERE tenant_id = $1 "
                            "AND deleted_at IS NULL ORDER BY created_at, source_id", tenant_id)
    return [_source_pb(row) for row in rows]


async def load(pool: asyncpg.Pool, source_id: str) -> Source | None:
    """The live source ``source_id``, or None (unknown, deleted, or not a UUID)."""
    try:
        key = uuid.UUID(source_id)
    except ValueError:
        return None
    row = await pool.fetchrow("SELECT * FROM webhook_sources WHERE source_id = $1 "
                              "AND deleted_at IS NULL", key)
    if row is None:
        return None
    pb = _source_pb(row)
    return Source(pb.source_id, pb.tenant_id, row["secret"], pb.mapping)


async def delete(pool: asyncpg.Pool, source_id: str) -> bool:
    result = await pool.execute("UPDATE webhook_sources SET deleted_at = now() "
                                "WHERE source_id = $1 AND deleted_at IS NULL",
                                uuid.UUID(source_id))
    return result.endswith(" 1")


__all__ = ["KEY_PREFIX", "MappingError", "Source", "delete", "list_sources", "load",
           "mapping_problems", "register", "registration_problems", "to_submission"]
