"""A task's life in terms every service shares: what makes a submission acceptable, how
urgent it is, how its status moves (and is mirrored on the status topic), and how it is
handed to a person.

Re-exported from ``_submissions``, ``_priority``, ``_taskstore`` and ``_escalations``.
"""

from __future__ import annotations

from switchyard._submissions import (
    DocumentViolation,
    KIND,
    MAX_IDEMPOTENCY_KEY_CHARS,
    MAX_JSON_DEPTH,
    MAX_METADATA_KEY_CHARS,
    MAX_METADATA_VALUE_CHARS,
    check,
    json_problem,
    stored_document,
    tenant_problems,
    validate,
    validate_task,
)
from switchyard._priority import (
    HIGH,
    LOW,
    NORMAL,
    URGENT,
    level_of,
    requested_bucket,
    task_bucket,
)
from switchyard._taskstore import (
    Move,
    TERMINAL,
    TERMINAL_SQL,
    Transition,
    UNSUCCESSFUL,
    is_terminal,
    publish_status,
    rejected,
    stage_name,
    stage_value,
    status_name,
    status_value,
    timestamp,
    transition,
    transition_many,
)
from switchyard._escalations import (
    DEFAULT_REVIEW_QUEUE,
    SLA_BY_PRIORITY,
    build_escalation,
    document_hidden,
)

__all__ = [
    "DEFAULT_REVIEW_QUEUE",
    "DocumentViolation",
    "HIGH",
    "KIND",
    "LOW",
    "MAX_IDEMPOTENCY_KEY_CHARS",
    "MAX_JSON_DEPTH",
    "MAX_METADATA_KEY_CHARS",
    "MAX_METADATA_VALUE_CHARS",
    "Move",
    "NORMAL",
    "SLA_BY_PRIORITY",
    "TERMINAL",
    "TERMINAL_SQL",
    "Transition",
    "UNSUCCESSFUL",
    "URGENT",
    "build_escalation",
    "document_hidden",
    "check",
    "is_terminal",
    "json_problem",
    "level_of",
    "publish_status",
    "rejected",
    "requested_bucket",
    "stage_name",
    "stored_document",
    "stage_value",
    "status_name",
    "status_value",
    "task_bucket",
    "tenant_problems",
    "timestamp",
    "transition",
    "transition_many",
    "validate",
    "validate_task",
]
