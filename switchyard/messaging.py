"""Kafka as the services use it: the topic registry, the producer and its headers, the
record serde, and the stream-processing helpers every consumer goes through.

Re-exported from ``_topics``, ``_kafka``, ``_serde`` and ``_streams``.
"""

from __future__ import annotations

from switchyard._topics import (
    ALL_TOPICS,
    BROKER_MARKER,
    CANCELLATIONS,
    CLASSROOM_SIGNALS,
    DEAD_LETTER,
    DECISIONS,
    ENGAGEMENT_WINDOWS,
    ESCALATIONS,
    EXECUTIONS,
    INTAKE,
    SIGNALS_ADMITTED,
    SUBJECT_ERASURES,
    TASKS,
    TASK_STATUS,
    Topic,
)
from switchyard._kafka import (
    Producer,
    TENANT_HEADER,
    client_options,
    correlation_id_var,
    headers_to_dict,
    headers_to_kafka,
    producer_options,
)
from switchyard._serde import (
    CONTENT_TYPE_HEADER,
    JSON_MEDIA_TYPE,
    SerdeError,
    decode,
    encode,
)
from switchyard._streams import (
    MAX_HANDLER_ATTEMPTS,
    Record,
    RejectRecord,
    TRANSIENT_ERRORS,
    create_app,
    decode_batch,
    decode_record,
    process_record_batch,
    record_context,
    run_by_key,
    run_each,
)

__all__ = [
    "ALL_TOPICS",
    "BROKER_MARKER",
    "CANCELLATIONS",
    "CLASSROOM_SIGNALS",
    "CONTENT_TYPE_HEADER",
    "DEAD_LETTER",
    "DECISIONS",
    "ENGAGEMENT_WINDOWS",
    "ESCALATIONS",
    "EXECUTIONS",
    "INTAKE",
    "JSON_MEDIA_TYPE",
    "MAX_HANDLER_ATTEMPTS",
    "Producer",
    "Record",
    "RejectRecord",
    "SIGNALS_ADMITTED",
    "SUBJECT_ERASURES",
    "SerdeError",
    "TASKS",
    "TASK_STATUS",
    "TENANT_HEADER",
    "TRANSIENT_ERRORS",
    "Topic",
    "client_options",
    "correlation_id_var",
    "create_app",
    "decode",
    "decode_batch",
    "decode_record",
    "encode",
    "headers_to_dict",
    "headers_to_kafka",
    "process_record_batch",
    "producer_options",
    "record_context",
    "run_by_key",
    "run_each",
]
