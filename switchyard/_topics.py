"""The topic registry: every Kafka topic Switchyard uses, with its key, value type and policy.

Services, the stack launcher and the Helm hook Job all create and name topics from here, so a
topic's partitions or cleanup policy are changed in one place.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from enum import Enum

from switchyard._settings import Settings


class Cleanup(str, Enum):
    DELETE = "delete"
    COMPACT = "compact"


@dataclass(frozen=True)
class Topic:
    """One logical topic. ``name`` is the logical name; :meth:`full_name` adds the prefix."""

    name: str
    value_type: str
    key: str
    cleanup: Cleanup
    doc: str
    retention_ms: int | None = None
    #: How long a dead letter of this topic keeps the record's bytes, when shorter than its
    #: tenant's retention: raw records that name people live no longer in a letter than on
    #: the topic (``switchyard purge`` removes them).
    letter_keeps_ms: int | None = None

    def full_name(self, settings: Settings) -> str:
        return f"{settings.kafka_topic_prefix}{self.name}"

    def config(self) -> dict[str, str]:
        config = {"cleanup.policy": self.cleanup.value}
        if self.retention_ms is not None:
            config["retention.ms"] = str(self.retention_ms)
        return config


_WEEK_MS = 7 * 24 * 3600 * 1000

INTAKE = Topic(
    "intake", "switchyard.v1.Submission or JSON", "task idempotency key", Cleanup.DELETE,
    "Upstream producers write submissions here directly.", _WEEK_MS,
)
TASKS = Topic(
    "tasks", "switchyard.v1.TaskEnvelope", "task_id", Cleanup.DELETE,
    "Accepted tasks, ready for a decision.", _WEEK_MS,
)
TASK_STATUS = Topic(
    "task-status", "switchyard.v1.StatusEvent", "task_id", Cleanup.COMPACT,
    "Latest status per task (compacted view; PostgreSQL is the system of record).",
)
DECISIONS = Topic(
    "decisions", "switchyard.v1.Decision", "task_id", Cleanup.DELETE,
    "Decisions to carry out, from models and from human verdicts.", _WEEK_MS,
)
ESCALATIONS = Topic(
    "escalations", "switchyard.v1.Escalation", "task_id", Cleanup.DELETE,
    "Work that needs a person.", _WEEK_MS,
)
EXECUTIONS = Topic(
    "executions", "switchyard.v1.ExecutionResult", "task_id", Cleanup.DELETE,
    "Outcome of each executed action step.", _WEEK_MS,
)
CANCELLATIONS = Topic(
    "cancellations", "switchyard.v1.CancellationRequest", "task_id", Cleanup.DELETE,
    "Cancellation requests for tasks already executing; the executor compensates them.",
    _WEEK_MS,
)
DEAD_LETTER = Topic(
    "dead-letter", "switchyard.v1.DeadLetter", "source topic", Cleanup.DELETE,
    "Records no stage could accept, with the reason and the original bytes.", 4 * _WEEK_MS,
)

_HOUR_MS = 3600 * 1000

CLASSROOM_SIGNALS = Topic(
    "classroom-signals", "switchyard.v1.SignalFrame or JSON", "classroom_id", Cleanup.DELETE,
    "Edge devices write one frame per classroom-second here (raw signals: short retention).",
    _HOUR_MS, letter_keeps_ms=_HOUR_MS,
)
SIGNALS_ADMITTED = Topic(
    "classroom-signals-admitted", "switchyard.v1.AdmittedFrame", "classroom_id",
    Cleanup.DELETE,
    "Frames after consent and pseudonymisation, for the engagement windows (short retention).",
    _HOUR_MS,
)
ENGAGEMENT_WINDOWS = Topic(
    "engagement-windows", "switchyard.v1.EngagementWindow",
    "tenant/classroom/session/kind/window start", Cleanup.COMPACT,
    "Class-level engagement per window (derived, k-anonymous; latest per window).",
)
SUBJECT_ERASURES = Topic(
    "subject-erasures", "switchyard.v1.SubjectErasure", "tenant_id", Cleanup.DELETE,
    "Right-to-erasure requests: every service removes a student's derived data.", 4 * _WEEK_MS,
)

PURCHASE_ORDERS = Topic(
    "purchase-orders", "switchyard.v1.PurchaseOrder or JSON", "tenant_id/po_number",
    Cleanup.COMPACT,
    "ERPs write the latest state of each purchase order (lines, goods receipts) here; "
    "an empty value removes it. The invoice pack matches invoices against them.",
)

BROKER_MARKER = Topic(
    "broker-marker", "(none)", "(none)", Cleanup.DELETE,
    "Never written or read. Its retention.ms carries a random generation chosen when it was "
    "created: a service that sees it gone or changed knows the broker lost its state.",
)

ALL_TOPICS: tuple[Topic, ...] = (
    INTAKE, TASKS, TASK_STATUS, DECISIONS, ESCALATIONS, EXECUTIONS, CANCELLATIONS, DEAD_LETTER,
    CLASSROOM_SIGNALS, SIGNALS_ADMITTED, ENGAGEMENT_WINDOWS, SUBJECT_ERASURES, PURCHASE_ORDERS,
    BROKER_MARKER,
)


#: Marker generations are encoded as a retention far beyond any real one (every Kafka
#: accepts retention.ms; an unknown config key would be refused).
_GENERATION_BASE_MS = 100 * 365 * 24 * 3600 * 1000


def marker_config() -> dict[str, str]:
    generation = secrets.randbelow(10**9) + 1
    return {"cleanup.policy": "delete", "retention.ms": str(_GENERATION_BASE_MS + generation)}


def marker_generation(retention_ms: str) -> int:
    return int(retention_ms) - _GENERATION_BASE_MS


async def create_topics(settings: Settings, topics: tuple[Topic, ...] = ALL_TOPICS) -> list[str]:
    """Create missing topics; returns the full names created. Existing topics are left alone."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError, for_code

    from switchyard._kafka import client_options

    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(
                name=t.full_name(settings),
                num_partitions=1 if t is BROKER_MARKER else settings.kafka_partitions,
                replication_factor=settings.kafka_replication_factor,
                topic_configs=marker_config() if t is BROKER_MARKER else t.config(),
            )
            for t in topics
            if t.full_name(settings) not in existing
        ]
        if wanted:
            # Several services may recreate topics at once after a broker restart: a topic
            # that appeared in between is what we wanted anyway.
            response = await admin.create_topics(wanted)
            for name, code, *_ in response.topic_errors:
                if code not in (0, TopicAlreadyExistsError.errno):
                    raise for_code(code)(f"creating topic {name}")
        return [t.name for t in wanted]
    finally:
        await admin.close()
