"""The audit trail: append-only entries, hash-chained per tenant and writing service.

Re-exported from ``_audit``.
"""

from __future__ import annotations

from switchyard._audit import (
    Broken,
    Entry,
    GENESIS,
    Verification,
    WRITERS,
    append,
    append_many,
    canonical,
    chain_hash,
    digest,
    task_story,
    verify,
)

__all__ = [
    "Broken",
    "Entry",
    "GENESIS",
    "Verification",
    "WRITERS",
    "append",
    "append_many",
    "canonical",
    "chain_hash",
    "digest",
    "task_story",
    "verify",
]
