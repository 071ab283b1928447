"""Personal data: which stored values come from documents (their data class), how they are
withheld and redacted, and the PII finder behind it.

Re-exported from ``_dataclass`` and ``_pii``.
"""

from __future__ import annotations

from switchyard._dataclass import (
    AtRest,
    DataClass,
    EXTRACTED_FIELDS,
    STORED,
    TOPICS,
    Withheld,
    WithheldValues,
    downstream_excerpt,
    field_class,
    letter_reason,
    matching_hash,
    matching_key,
    page_redactions,
    redact_edits,
    redact_escalation,
    redact_free_text,
    redact_task,
    sealed_columns,
    withheld_from_reviewers,
    withheld_label,
    withheld_of,
    withheld_values,
    withhold_answer,
)
from switchyard._pii import (
    Redactor,
    iban_ok,
    luhn_ok,
)

__all__ = [
    "AtRest",
    "DataClass",
    "EXTRACTED_FIELDS",
    "Redactor",
    "STORED",
    "TOPICS",
    "Withheld",
    "WithheldValues",
    "downstream_excerpt",
    "field_class",
    "iban_ok",
    "letter_reason",
    "luhn_ok",
    "matching_hash",
    "matching_key",
    "page_redactions",
    "redact_edits",
    "redact_escalation",
    "redact_free_text",
    "redact_task",
    "sealed_columns",
    "withheld_from_reviewers",
    "withheld_label",
    "withheld_of",
    "withheld_values",
    "withhold_answer",
]
