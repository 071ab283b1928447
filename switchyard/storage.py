"""PostgreSQL, the system of record: connections and migrations, group commit, payload
columns sealed at rest (and the keys that seal them), and retention.

Re-exported from ``_db``, ``_groupcommit``, ``_payloads``, ``_crypto`` and ``_retention``.
"""

from __future__ import annotations

from switchyard._db import (
    Migration,
    MigrationError,
    connect,
    create_pool,
    load_migrations,
    migrate,
    resolve_dsn,
)
from switchyard._groupcommit import (
    GroupCommit,
)
from switchyard._payloads import (
    APPROVAL,
    COLUMNS,
    CONSENT_GROUP,
    CONSENT_GUARDIAN,
    CONSENT_SUBJECT,
    DEAD_LETTER_HEADERS,
    DEAD_LETTER_KEY,
    DEAD_LETTER_VALUE,
    DECISION,
    EXECUTION_OUTPUT,
    HOLD_ENVELOPE,
    INVOICE_FIELDS,
    JOB_DECISION,
    LABEL_CORRECTIONS,
    LABEL_EXAMPLE,
    PLAINTEXT,
    PayloadCodec,
    PayloadError,
    PURCHASE_ORDER,
    REVIEW_DECISION,
    REVIEW_ESCALATION,
    TASK_ENVELOPE,
    TERM_KEY,
    VERDICT,
    codec_for,
    rewrap_stale,
)
from switchyard._crypto import (
    CryptoError,
    Keyring,
    MAGIC,
    is_encrypted,
    key_id,
)
from switchyard._retention import (
    delete_blobs,
    forget_metadata,
    pack_retention_days,
    purge,
    strip_tasks,
)

__all__ = [
    "APPROVAL",
    "COLUMNS",
    "CONSENT_GROUP",
    "CONSENT_GUARDIAN",
    "CONSENT_SUBJECT",
    "CryptoError",
    "DEAD_LETTER_HEADERS",
    "DEAD_LETTER_KEY",
    "DEAD_LETTER_VALUE",
    "DECISION",
    "EXECUTION_OUTPUT",
    "GroupCommit",
    "HOLD_ENVELOPE",
    "INVOICE_FIELDS",
    "JOB_DECISION",
    "Keyring",
    "LABEL_CORRECTIONS",
    "LABEL_EXAMPLE",
    "MAGIC",
    "Migration",
    "MigrationError",
    "PLAINTEXT",
    "PURCHASE_ORDER",
    "PayloadCodec",
    "PayloadError",
    "REVIEW_DECISION",
    "REVIEW_ESCALATION",
    "TASK_ENVELOPE",
    "TERM_KEY",
    "VERDICT",
    "codec_for",
    "connect",
    "create_pool",
    "delete_blobs",
    "forget_metadata",
    "is_encrypted",
    "key_id",
    "load_migrations",
    "migrate",
    "pack_retention_days",
    "purge",
    "resolve_dsn",
    "rewrap_stale",
    "strip_tasks",
]
