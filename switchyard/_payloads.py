"""Payload columns at rest: the one place services seal and open raw documents in PostgreSQL.

Every column that holds a copy of a submitted document or values read out of one (the
personal columns :data:`switchyard._dataclass.STORED` marks sealed: ``tasks.envelope``,
``decision_holds.envelope``, ``review_items.escalation``, ``dead_letters.original_value``,
``decisions.decision``, ``executor_jobs.decision``, ``review_verdicts.verdict_pb``,
``review_approvals.verdict_pb``, ``decision_invoices.fields``, ``blobs.body``,
``executions.output``, and the consent registry's ``signal_consents.subject_ref``,
``guardian_ref``, ``group_label`` and ``signal_term_keys.key``) goes through :class:`PayloadCodec`. With ``SWITCHYARD_ENCRYPTION_KEYS`` set, a blob is sealed with
the active key (:mod:`switchyard._crypto`) and bound to its column and row id as associated
data, so a blob copied onto another row, or into another column, fails to open. With no keys
it passes plaintext through. Opening accepts plaintext rows written before encryption was
switched on, so turning it on needs no migration.

Key rotation is lazy: readers call :func:`rewrap_stale` on the rows they just read, which
re-wraps (32-byte data key only) blobs sealed under a non-active key and writes them back with
a compare-and-set; ``switchyard keys rewrap`` walks whole tables for operators retiring a key.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

import asyncpg

from switchyard._crypto import CryptoError, Keyring, header_prefix, is_encrypted, key_id
from switchyard._settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Column:
    """A payload column and the row id its blobs are bound to.

    A blob is sealed with the column's name and its row id as context, so it opens only
    there; ``sealed_as`` names another context for a column whose rows moved from the column
    they were sealed in (REVIEW_DECISION)."""

    table: str
    id_column: str
    column: str
    sealed_as: str = ""

    @property
    def name(self) -> str:
        return f"{self.table}.{self.column}"


TASK_ENVELOPE = Column("tasks", "task_id", "envelope")
HOLD_ENVELOPE = Column("decision_holds", "task_id", "envelope")
REVIEW_ESCALATION = Column("review_items", "item_id", "escalation")
DEAD_LETTER_VALUE = Column("dead_letters", "dead_letter_id", "original_value")
#: The key and headers of that record (a JSON object), kept to replay it.
DEAD_LETTER_KEY = Column("dead_letters", "dead_letter_id", "original_key")
DEAD_LETTER_HEADERS = Column("dead_letters", "dead_letter_id", "original_headers")
DECISION = Column("decisions", "decision_id", "decision")
#: A person's (or a review policy's) decision, the review service's record. Migration 0025
#: moved these rows from ``decisions``; they keep that column's context so they still open.
REVIEW_DECISION = Column("review_decisions", "decision_id", "decision",
                         sealed_as="decisions.decision")
JOB_DECISION = Column("executor_jobs", "decision_id", "decision")
VERDICT = Column("review_verdicts", "item_id", "verdict_pb")
#: The first of two approvals of a four-eyes review item (the same shape as VERDICT).
APPROVAL = Column("review_approvals", "item_id", "verdict_pb")
INVOICE_FIELDS = Column("decision_invoices", "task_id", "fields")
#: A purchase order as an ERP published it (the invoice pack's matching), bound to its
#: ``order_id`` (uuid5 of tenant and PO number).
PURCHASE_ORDER = Column("decision_purchase_orders", "order_id", "body")
#: A labelled example (services/decision/labels.py): the text the models read and the fields
#: they proposed, and the fields a person corrected (what each was and is).
LABEL_EXAMPLE = Column("decision_labels", "task_id", "example")
LABEL_CORRECTIONS = Column("decision_labels", "task_id", "corrections")
#: A plan step's full output (its result in ``executions.result`` keeps it redacted), bound
#: to ``output_id`` (uuid5 of task and step id: the row's key is two columns).
EXECUTION_OUTPUT = Column("executions", "output_id", "output")
#: A document's bytes above the claim-check threshold (switchyard.documents._blobs): the
#: ``blobs`` table, and objects in an S3 store sealed with the same context.
BLOB_BODY = Column("blobs", "blob_id", "body")
#: The consent registry's personal values (services/ingest/signals/consent.py): the school's
#: reference of the student, the guardian's, and the fairness-monitoring group.
CONSENT_SUBJECT = Column("signal_consents", "consent_id", "subject_ref")
CONSENT_GUARDIAN = Column("signal_consents", "consent_id", "guardian_ref")
CONSENT_GROUP = Column("signal_consents", "consent_id", "group_label")
#: The pseudonymisation key of one (tenant, term) (services/ingest/signals/pseudonyms.py).
TERM_KEY = Column("signal_term_keys", "key_id", "key")
#: Every sealed column (switchyard._dataclass.STORED says why each one is).
COLUMNS = (TASK_ENVELOPE, HOLD_ENVELOPE, REVIEW_ESCALATION, DEAD_LETTER_VALUE, DEAD_LETTER_KEY,
           DEAD_LETTER_HEADERS, DECISION, REVIEW_DECISION, JOB_DECISION, VERDICT, APPROVAL,
           INVOICE_FIELDS, PURCHASE_ORDER, LABEL_EXAMPLE, LABEL_CORRECTIONS, BLOB_BODY, EXECUTION_OUTPUT, CONSENT_SUBJECT, CONSENT_GUARDIAN,
           CONSENT_GROUP, TERM_KEY)

RowId = str | uuid.UUID


class PayloadError(CryptoError):
    """A stored payload cannot be opened: names the column and row, never the content."""


def _canonical(row_id: RowId) -> str:
    if isinstance(row_id, uuid.UUID):
        return str(row_id)
    try:
        return str(uuid.UUID(row_id))
    except ValueError:
        return row_id


def _context(column: Column, row_id: RowId) -> bytes:
    return f"{column.sealed_as or column.name}:{_canonical(row_id)}".encode()


@dataclass(frozen=True)
class PayloadCodec:
    """Seal/open payload blobs of one deployment; ``keyring`` None means encryption is off."""

    keyring: Keyring | None

    @property
    def enabled(self) -> bool:
        return self.keyring is not None

    def seal(self, row_id: RowId, plaintext: bytes, column: Column = TASK_ENVELOPE) -> bytes:
        if self.keyring is None:
            return plaintext
        return self.keyring.encrypt(plaintext, _context(column, row_id))

    def open(self, row_id: RowId, blob: bytes, column: Column = TASK_ENVELOPE) -> bytes:
        """The plaintext of a stored blob; plaintext rows (written before encryption was on)
        come back as they are."""
        blob = bytes(blob)
        if not is_encrypted(blob):
            return blob
        if self.keyring is None:
            raise PayloadError(f"{column.name} of {_canonical(row_id)} is encrypted but "
                               "SWITCHYARD_ENCRYPTION_KEYS is empty")
        try:
            return self.keyring.decrypt(blob, _context(column, row_id))
        except CryptoError as exc:
            raise PayloadError(f"cannot open {column.name} of {_canonical(row_id)}: {exc}"
                               ) from exc

    def stale(self, blob: bytes) -> bool:
        """True when ``blob`` is sealed under a key other than the active one."""
        return (self.keyring is not None and is_encrypted(blob)
                and self.keyring.needs_rewrap(bytes(blob)))

    def refresh(self, row_id: RowId, blob: bytes, column: Column = TASK_ENVELOPE
                ) -> bytes | None:
        """``blob`` as it should be stored now, or None when it already is: sealed under an
        old key -> re-wrapped; plaintext while encryption is on -> sealed."""
        if self.keyring is None:
            return None
        blob = bytes(blob)
        if not is_encrypted(blob):
            return self.seal(row_id, blob, column)
        if not self.keyring.needs_rewrap(blob):
            return None
        try:
            self.open(row_id, blob, column)  # never re-key a blob that belongs elsewhere
            return self.keyring.rewrap(blob)
        except CryptoError as exc:
            raise PayloadError(f"cannot re-wrap {column.name} of {_canonical(row_id)}: {exc}"
                               ) from exc

    def current_prefix(self) -> bytes:
        """Header prefix of blobs sealed under the active key."""
        assert self.keyring is not None
        return header_prefix(self.keyring.active)


PLAINTEXT = PayloadCodec(None)


@lru_cache(maxsize=8)
def _codec(spec: str, active: str) -> PayloadCodec:
    return PayloadCodec(Keyring.from_setting(spec, active))


def codec_for(settings: Settings) -> PayloadCodec:
    """The deployment's codec, parsed once per key configuration (raises CryptoError on a
    bad ``SWITCHYARD_ENCRYPTION_KEYS``, so a service refuses to start misconfigured)."""
    return _codec(settings.encryption_keys, settings.encryption_active_key)


async def rewrap_stale(conn: asyncpg.Connection | asyncpg.Pool, codec: PayloadCodec,
                       column: Column, rows: Iterable[tuple[RowId, bytes | None]]) -> int:
    """Lazy rotation: write back, re-wrapped, the blobs just read under a non-active key.

    Compare-and-set on the old blob, so a concurrent writer (retention purge) always wins;
    never raises (reads must not fail for this); returns how many rows were re-wrapped.
    """
    updates = []
    for row_id, blob in rows:
        if blob is None or not codec.stale(blob):
            continue
        try:
            fresh = codec.refresh(row_id, blob, column)
        except CryptoError as exc:
            log.warning("lazy re-wrap skipped: %s", exc)
            continue
        if fresh is not None:
            updates.append((row_id if isinstance(row_id, uuid.UUID) else uuid.UUID(row_id),
                            bytes(blob), fresh))
    if not updates:
        return 0
    try:
        await conn.executemany(
            f"UPDATE {column.table} SET {column.column} = $3 "
            f"WHERE {column.id_column} = $1 AND {column.column} = $2", updates)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        log.warning("lazy re-wrap of %d %s row(s) failed (retried on a later read): %r",
                    len(updates), column.name, exc)
        return 0
    return len(updates)


@dataclass
class RewrapReport:
    column: str
    rewrapped: int = 0
    failed: int = 0


async def rewrap_column(conn: asyncpg.Connection, codec: PayloadCodec, column: Column,
                        batch: int = 500, dry_run: bool = False) -> RewrapReport:
    """Walk ``column`` in id order, re-wrapping blobs under old keys and sealing plaintext.

    SQL selects only rows whose header is not the active key's, so a finished table costs one
    index-ordered scan; a row that cannot be opened (unknown key, wrong row) is counted and
    logged, never skipped silently.
    """
    report = RewrapReport(column.name)
    prefix = codec.current_prefix()
    last = uuid.UUID(int=0)
    while True:
        rows = await conn.fetch(
            f"SELECT {column.id_column} AS id, {column.column} AS blob FROM {column.table} "
            f"WHERE {column.column} IS NOT NULL AND {column.id_column} > $1 "
            f"AND substring({column.column} from 1 for $2) <> $3 "
            f"ORDER BY {column.id_column} LIMIT $4", last, len(prefix), prefix, batch)
        if not rows:
            return report
        last = rows[-1]["id"]
        updates = []
        for row in rows:
            try:
                fresh = codec.refresh(row["id"], row["blob"], column)
            except CryptoError as exc:
                report.failed += 1
                log.error("%s", exc)
                continue
            if fresh is not None:
                updates.append((row["id"], bytes(row["blob"]), fresh))
        if updates and not dry_run:
            await conn.executemany(
                f"UPDATE {column.table} SET {column.column} = $3 "
                f"WHERE {column.id_column} = $1 AND {column.column} = $2", updates)
        report.rewrapped += len(updates)


async def key_usage(conn: asyncpg.Connection, column: Column) -> dict[str, int]:
    """Rows per key id in ``column`` ('(plaintext)' for unencrypted rows): what still needs a
    key before it can be removed from the configuration."""
    rows = await conn.fetch(
        f"SELECT CASE WHEN length({column.column}) > 4 "
        f"AND substring({column.column} from 1 for 4) = '\\x53594531'::bytea "
        f"THEN encode(substring({column.column} from 6 for get_byte({column.column}, 4)), "
        f"'escape') ELSE '(plaintext)' END AS kid, count(*) AS n FROM {column.table} "
        f"WHERE {column.column} IS NOT NULL GROUP BY 1 ORDER BY 1")
    return {row["kid"]: row["n"] for row in rows}


__all__ = ["APPROVAL", "BLOB_BODY", "COLUMNS", "CONSENT_GROUP", "CONSENT_GUARDIAN",
           "CONSENT_SUBJECT", "DEAD_LETTER_HEADERS", "DEAD_LETTER_KEY", "DEAD_LETTER_VALUE",
           "DECISION", "EXECUTION_OUTPUT", "HOLD_ENVELOPE", "INVOICE_FIELDS", "JOB_DECISION",
           "LABEL_CORRECTIONS", "LABEL_EXAMPLE",
           "PLAINTEXT", "PURCHASE_ORDER", "REVIEW_DECISION", "REVIEW_ESCALATION",
           "TASK_ENVELOPE", "TERM_KEY", "VERDICT", "Column", "PayloadCodec", "PayloadError", "RewrapReport", "RowId",
           "codec_for", "key_id", "key_usage", "rewrap_column", "rewrap_stale"]
