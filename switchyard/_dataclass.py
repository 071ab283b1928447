"""Data classes: the one place that says which stored values come from documents, and how
each is protected.

Every value Switchyard keeps is one of four classes:

* ``PERSONAL`` -- identifies a person or their money (the document itself, names, bank
  accounts, anything a PII detector finds): never shown to reviewers (unless the item
  reveals the field: ``Escalation.revealed_fields``), never stored in plaintext (sealed with
  :mod:`switchyard._payloads`, or replaced by a keyed hash where only equality is needed),
  removed by ``switchyard purge``;
* ``HEALTH`` -- health data about a person (a diagnosis, a chief complaint, allergies): the
  most sensitive class, protected like personal data and never logged; withheld from
  reviewers unless the item reveals the field, and its value masked wherever it appears in
  the document text, the layout's words and the page images shown to them;
* ``DERIVED`` -- read out of a document but needed to judge or count it (amounts, dates,
  currency, invoice and PO numbers): shown to reviewers after the PII detectors ran over it,
  sealed at rest when it travels with personal values, removed by ``switchyard purge``.
  Free text that may quote a document (a downstream's answer, a reviewer's reason) is
  derived too: it is passed through the PII detectors (:func:`redact_free_text`,
  :func:`downstream_excerpt`) *before* it is stored, published or logged;
* ``OPERATIONAL`` -- made by Switchyard (ids, statuses, scores, rules): kept as is.

:data:`EXTRACTED_FIELDS` classifies every field the extractor reads (an unknown name, e.g. a
field a reviewer added, counts as personal); :data:`STORED` lists every column that holds
document-derived data with its class, its protection at rest and what purge does to it;
:data:`TOPICS` does the same for Kafka topics. Reviewer redaction
(:func:`redact_escalation`), encryption at rest (the codec's ``COLUMNS`` must equal
:func:`sealed_columns`), keyed hashes (:func:`matching_hash`) and retention
(:mod:`switchyard._retention`, which implements each ``on_purge``) follow these tables;
tests/unit/test_dataclass.py checks they agree, and tests/security/test_pii_never_leaks.py
checks every listed column exists and searches every table and topic for planted PII.
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import json
import logging
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from google.protobuf import json_format, struct_pb2

from switchyard._pii import Redactor
from switchyard._settings import Settings
from switchyard.documents import page_lines
from switchyard.packs import hl7_field_around, hl7_fields, is_hl7_position, parse_date
from switchyard.v1 import (
    BoundingBox,
    Decision,
    DocumentLayout,
    Escalation,
    LayoutPage,
    TaskEnvelope,
)

log = logging.getLogger(__name__)


class DataClass(str, Enum):
    PERSONAL = "personal"
    HEALTH = "health"
    DERIVED = "derived"
    OPERATIONAL = "operational"


class AtRest(str, Enum):
    """How a column protects what it holds."""

    SEALED = "sealed"    # the payload codec (SWITCHYARD_ENCRYPTION_KEYS), bound to column+row
    HASHED = "hashed"    # a keyed hash (SWITCHYARD_MATCHING_KEY): equality only, no value
    PLAIN = "plain"      # derived numbers needed in SQL (sums, filters)


class OnPurge(str, Enum):
    """What ``switchyard purge`` does to the column of a task past its retention."""

    STRIP = "strip"      # personal and derived parts removed, operational parts kept
    NULL = "null"        # the value removed
    KEEP = "keep"        # pseudonymous (hashes) or aggregate values, kept for history
    DELETE = "delete"    # the row is deleted (holds: when decided; blobs: by the purge)


#: The classes of the invoice extractor's fields (switchyard_packs/invoice/extraction.py
#: FIELD_NAMES), for decisions made before fields carried their pack's class.
EXTRACTED_FIELDS: dict[str, DataClass] = {
    "vendor": DataClass.PERSONAL,          # a company or a person's name
    "bank_account": DataClass.PERSONAL,    # IBAN or account number
    "invoice_number": DataClass.DERIVED,
    "invoice_date": DataClass.DERIVED,
    "due_date": DataClass.DERIVED,
    "po_number": DataClass.DERIVED,
    "currency": DataClass.DERIVED,
    "subtotal": DataClass.DERIVED,
    "tax": DataClass.DERIVED,
    "total": DataClass.DERIVED,
    "line_item_count": DataClass.DERIVED,
    "extraction_confidence": DataClass.OPERATIONAL,
}


_DECLARED = {1: DataClass.PERSONAL, 2: DataClass.DERIVED, 3: DataClass.OPERATIONAL,
             4: DataClass.HEALTH}
#: The classes whose values reviewers never see unless the item reveals the field.
WITHHELD_CLASSES: frozenset[DataClass] = frozenset({DataClass.PERSONAL, DataClass.HEALTH})


def field_class(name: str, declared: int = 0) -> DataClass:
    """The class of an extracted (or reviewer-edited) field: ``declared`` is the class its
    pack gave it (``FieldExtraction.data_class``); when that is unspecified (0, a decision made
    before packs), the table above; a name in neither is personal."""
    return _DECLARED.get(declared) or EXTRACTED_FIELDS.get(name, DataClass.PERSONAL)


def declared_classes(decision: Decision) -> dict[str, int]:
    """Field name -> the class its pack declared, as the decision carries it."""
    return {f.name: f.data_class for f in decision.fields}


@dataclass(frozen=True)
class Stored:
    """One column that holds document-derived data."""

    table: str
    column: str
    data_class: DataClass
    at_rest: AtRest
    on_purge: OnPurge
    why: str


STORED: tuple[Stored, ...] = (
    Stored("tasks", "envelope", DataClass.PERSONAL, AtRest.SEALED, OnPurge.STRIP,
           "the submitted document (purge drops body and filename, redacts metadata)"),
    Stored("tasks", "metadata_hashes", DataClass.PERSONAL, AtRest.HASHED, OnPurge.KEEP,
           "finds tasks by a metadata key/value pair (ListTasks); the pairs stay sealed in "
           "the envelope"),
    Stored("decision_holds", "envelope", DataClass.PERSONAL, AtRest.SEALED, OnPurge.DELETE,
           "a copy of the task while the models are away"),
    Stored("review_items", "escalation", DataClass.PERSONAL, AtRest.SEALED, OnPurge.STRIP,
           "the task and the proposed decision a reviewer decides on, with the document's "
           "layout, the discrepancies and the instructions"),
    Stored("dead_letters", "original_value", DataClass.PERSONAL, AtRest.SEALED, OnPurge.NULL,
           "the bytes of a record no stage could accept"),
    Stored("dead_letters", "original_key", DataClass.PERSONAL, AtRest.SEALED, OnPurge.NULL,
           "that record's key, kept to replay it (a producer may key by anything)"),
    Stored("dead_letters", "original_headers", DataClass.PERSONAL, AtRest.SEALED,
           OnPurge.NULL, "that record's headers, kept to replay it"),
    Stored("decisions", "decision", DataClass.PERSONAL, AtRest.SEALED, OnPurge.STRIP,
           "extracted fields and the plan payloads built from them"),
    Stored("decisions", "explanation", DataClass.DERIVED, AtRest.PLAIN, OnPurge.STRIP,
           "quotes the invoice number and amount, never the vendor or an account; a "
           "reviewer's reason only after redact_free_text"),
    Stored("review_decisions", "decision", DataClass.PERSONAL, AtRest.SEALED, OnPurge.STRIP,
           "a person's (or a review policy's) decision: the fields as the reviewer left them "
           "and the plan payloads built from them"),
    Stored("review_decisions", "explanation", DataClass.DERIVED, AtRest.PLAIN, OnPurge.STRIP,
           "a reviewer's reason only after redact_free_text, or the policy that decided"),
    Stored("executor_jobs", "decision", DataClass.PERSONAL, AtRest.SEALED, OnPurge.STRIP,
           "the decision being carried out"),
    Stored("review_verdicts", "verdict_pb", DataClass.PERSONAL, AtRest.SEALED, OnPurge.STRIP,
           "a reviewer's edits of extracted fields (and the reason, redacted)"),
    Stored("review_verdicts", "reason", DataClass.DERIVED, AtRest.PLAIN, OnPurge.NULL,
           "a reviewer's free text, stored only after redact_free_text"),
    Stored("review_approvals", "verdict_pb", DataClass.PERSONAL, AtRest.SEALED, OnPurge.STRIP,
           "the first of two four-eyes approvals: its edits of extracted fields"),
    Stored("review_approvals", "reason", DataClass.DERIVED, AtRest.PLAIN, OnPurge.NULL,
           "the first approver's free text, stored only after redact_free_text"),
    Stored("executions", "error", DataClass.DERIVED, AtRest.PLAIN, OnPurge.NULL,
           "why a step failed; quotes the downstream's answer only as downstream_excerpt"),
    Stored("executions", "result", DataClass.DERIVED, AtRest.PLAIN, OnPurge.STRIP,
           "the step's ExecutionResult; its summary, error and output redacted as "
           "downstream_excerpt"),
    Stored("executions", "output", DataClass.PERSONAL, AtRest.SEALED, OnPurge.NULL,
           "a step's full output (the downstream's answer as it came, e.g. a patient's "
           "record): what later steps' templates read after a resume"),
    Stored("executor_jobs", "reason", DataClass.DERIVED, AtRest.PLAIN, OnPurge.NULL,
           "why a job ended or waits; may quote a step's error (downstream_excerpt)"),
    Stored("task_status_history", "detail", DataClass.DERIVED, AtRest.PLAIN, OnPurge.NULL,
           "a status change's free text: the explanation, a reviewer's reason "
           "(redact_free_text), a step's error (downstream_excerpt)"),
    Stored("webhook_deliveries", "body", DataClass.DERIVED, AtRest.PLAIN, OnPurge.STRIP,
           "the status event posted to a webhook: its detail, as the history's"),
    Stored("blobs", "body", DataClass.PERSONAL, AtRest.SEALED, OnPurge.DELETE,
           "a document's bytes above the claim-check threshold (S3 objects are sealed the "
           "same way); purge deletes the blob with its task's payload"),
    Stored("decision_invoices", "fields", DataClass.PERSONAL, AtRest.SEALED, OnPurge.NULL,
           "every field read from the invoice"),
    Stored("decision_invoices", "vendor_hash", DataClass.PERSONAL, AtRest.HASHED, OnPurge.KEEP,
           "matches invoices of one vendor"),
    Stored("decision_invoices", "number_hash", DataClass.DERIVED, AtRest.HASHED, OnPurge.KEEP,
           "duplicate-invoice detection"),
    Stored("decision_invoices", "bank_hash", DataClass.PERSONAL, AtRest.HASHED, OnPurge.KEEP,
           "the vendor's confirmed bank account"),
    Stored("decision_invoices", "amount", DataClass.DERIVED, AtRest.PLAIN, OnPurge.KEEP,
           "the vendor's usual amount (no identity: the vendor is a hash)"),
    Stored("decision_invoices", "currency", DataClass.DERIVED, AtRest.PLAIN, OnPurge.KEEP,
           "the vendor's usual currency"),
    Stored("decision_labels", "example", DataClass.PERSONAL, AtRest.SEALED, OnPurge.NULL,
           "a reviewed task's text and proposed fields, the example a model retrains on"),
    Stored("decision_labels", "corrections", DataClass.PERSONAL, AtRest.SEALED, OnPurge.NULL,
           "each field a reviewer corrected: the value proposed and the person's"),
    Stored("decision_fairness_samples", "group_hash", DataClass.PERSONAL, AtRest.HASHED,
           OnPurge.KEEP, "the group of a pack's protected attribute a task belongs to (the "
           "fairness gates compare groups' automation rates; equality only)"),
    Stored("decision_vendors", "vendor_hash", DataClass.PERSONAL, AtRest.HASHED, OnPurge.KEEP,
           "the vendor a history row is about"),
    Stored("decision_vendors", "bank_hash", DataClass.PERSONAL, AtRest.HASHED, OnPurge.KEEP,
           "the bank account last confirmed for the vendor"),
    Stored("decision_vendors", "amount_sum", DataClass.DERIVED, AtRest.PLAIN, OnPurge.KEEP,
           "aggregate of confirmed invoices"),
    Stored("decision_vendors", "currency", DataClass.DERIVED, AtRest.PLAIN, OnPurge.KEEP,
           "the vendor's usual currency"),
    Stored("decision_purchase_orders", "body", DataClass.PERSONAL, AtRest.SEALED,
           OnPurge.KEEP, "a purchase order as the ERP published it (the vendor, its bank "
           "account); replaced by the ERP's next state, deleted by its tombstone"),
    Stored("decision_purchase_orders", "vendor_hash", DataClass.PERSONAL, AtRest.HASHED,
           OnPurge.KEEP, "finds a vendor's open orders for an invoice that quotes none"),
    Stored("decision_purchase_orders", "amount", DataClass.DERIVED, AtRest.PLAIN,
           OnPurge.KEEP, "what the order is worth (no identity: the vendor is a hash)"),
    Stored("decision_invoice_matches", "quantity", DataClass.DERIVED, AtRest.PLAIN,
           OnPurge.KEEP, "how many of an order line an invoice billed"),
    Stored("signal_consents", "subject_ref", DataClass.PERSONAL, AtRest.SEALED, OnPurge.KEEP,
           "the school's reference of a student with a consent (ingest pseudonymises signals "
           "with it); removed by ConsentService.EraseSubject, not by purge"),
    Stored("signal_consents", "subject_hash", DataClass.PERSONAL, AtRest.HASHED, OnPurge.KEEP,
           "finds a student's consents by reference (equality only)"),
    Stored("signal_consents", "guardian_ref", DataClass.PERSONAL, AtRest.SEALED, OnPurge.KEEP,
           "who gave or withdrew the consent"),
    Stored("signal_consents", "group_label", DataClass.PERSONAL, AtRest.SEALED, OnPurge.KEEP,
           "the group attribute given under fairness-monitoring consent"),
    Stored("signal_term_keys", "key", DataClass.OPERATIONAL, AtRest.SEALED, OnPurge.KEEP,
           "a (tenant, term) pseudonymisation key: with a list of students it re-identifies "
           "pseudonyms, so it is sealed like personal data"),
    Stored("signal_erasures", "subject_hash", DataClass.PERSONAL, AtRest.HASHED, OnPurge.KEEP,
           "which student an erasure was for (equality only), so every consent view forgets "
           "the student"),
    # classroom engagement (decision: services/decision/engagement/, docs/engagement.md);
    # "purge" here is the engagement retention (signal_*_retention_days) and erasure
    Stored("engagement_subject_windows", "subject", DataClass.PERSONAL, AtRest.HASHED,
           OnPurge.DELETE, "the student's pseudonym (keyed hash with the term's key); rows "
           "only with individual-support consent, deleted on erasure and after "
           "signal_subject_retention_days"),
    Stored("engagement_subject_windows", "features", DataClass.DERIVED, AtRest.PLAIN,
           OnPurge.DELETE, "the student's window counts (seconds present, facing forward...)"),
    Stored("engagement_subject_windows", "p_engaged", DataClass.DERIVED, AtRest.PLAIN,
           OnPurge.DELETE, "the model's probability of engagement for the student's window"),
    Stored("engagement_alerts", "subject", DataClass.PERSONAL, AtRest.HASHED, OnPurge.DELETE,
           "the pseudonym a sustained-disengagement alert is about (deleted on erasure)"),
    Stored("engagement_alerts", "document", DataClass.DERIVED, AtRest.PLAIN, OnPurge.DELETE,
           "the alert as filed on intake (scores, drivers, the pseudonym: no raw signal)"),
    Stored("engagement_alerts", "score", DataClass.DERIVED, AtRest.PLAIN, OnPurge.DELETE,
           "probability of engagement or attendance rate that raised the alert"),
    Stored("engagement_windows", "engagement", DataClass.DERIVED, AtRest.PLAIN,
           OnPurge.DELETE, "class-mean engagement of a window (NULL under k students); "
           "deleted after signal_class_retention_days"),
    Stored("engagement_windows", "attendance", DataClass.DERIVED, AtRest.PLAIN,
           OnPurge.DELETE, "distinct students present in a window (a count)"),
    Stored("engagement_group_counts", "flagged", DataClass.DERIVED, AtRest.PLAIN,
           OnPurge.KEEP, "per group and model version: student windows flagged (aggregate)"),
)


def sealed_columns() -> set[str]:
    """``table.column`` of every column this registry says is sealed; the codec's
    ``switchyard._payloads.COLUMNS`` (what key rotation walks) must be exactly these."""
    return {f"{s.table}.{s.column}" for s in STORED if s.at_rest is AtRest.SEALED}


@dataclass(frozen=True)
class TopicData:
    """What a Kafka topic carries (Kafka payloads are not sealed; see README, Privacy)."""

    topic: str
    data_class: DataClass
    why: str


TOPICS: tuple[TopicData, ...] = (
    TopicData("intake", DataClass.PERSONAL, "submissions, as the upstream producer wrote them"),
    TopicData("tasks", DataClass.PERSONAL, "the accepted document, for the decision service"),
    TopicData("decisions", DataClass.PERSONAL,
              "the plan payloads the executor posts downstream carry the extracted fields"),
    TopicData("escalations", DataClass.PERSONAL, "the task and the proposed decision"),
    TopicData("dead-letter", DataClass.PERSONAL, "the original bytes of a refused record"),
    TopicData("task-status", DataClass.DERIVED,
              "statuses, rules and explanations (invoice number and amount, a reviewer's "
              "reason and a step's error only redacted; no personal value)"),
    TopicData("executions", DataClass.DERIVED,
              "step outcomes, downstream status and downstream_excerpt of the answer "
              "(and its output, redacted the same way)"),
    TopicData("cancellations", DataClass.OPERATIONAL, "task ids and reasons"),
    TopicData("classroom-signals", DataClass.PERSONAL,
              "raw per-second observations naming students by the school's reference; "
              "one hour retention"),
    TopicData("classroom-signals-admitted", DataClass.DERIVED,
              "consenting students' observations under per-term pseudonyms; one hour "
              "retention"),
    TopicData("engagement-windows", DataClass.DERIVED,
              "class-level, k-anonymous window aggregates; no student is named"),
    TopicData("purchase-orders", DataClass.PERSONAL,
              "purchase orders from the tenants' ERPs: the vendor and its bank account"),
    TopicData("subject-erasures", DataClass.DERIVED,
              "the pseudonyms of a student whose derived data is being erased"),
)

_DEV_MATCHING_KEY = b"switchyard-development-matching-key"


def matching_key(settings: Settings) -> bytes:
    """The key of :func:`matching_hash`; a fixed development key when none is configured
    (logged: hashes under a known key can be brute-forced from a list of candidates)."""
    if settings.matching_key:
        return settings.matching_key.encode()
    log.warning("SWITCHYARD_MATCHING_KEY is not set: vendor history hashes use the public "
                "development key")
    return _DEV_MATCHING_KEY


def matching_hash(key: bytes, tenant_id: str, kind: str, value: str) -> str:
    """A keyed hash standing in for a value that is only ever compared for equality; bound
    to the tenant and the kind of value, so equal values of two tenants never match. ''
    stays '' (nothing was read)."""
    if not value:
        return ""
    message = f"{tenant_id}\x00{kind}\x00{value}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


_DETECTORS = Redactor()
#: How much of a downstream's answer is kept (after redaction) in a step's summary or error.
DOWNSTREAM_EXCERPT_CHARS = 200


def redact_free_text(text: str) -> str:
    """Free text a person typed that may quote the document (a reviewer's verdict reason):
    every PII detector applied, so it can be stored in plaintext, copied into an explanation
    and published as derived data. Unconditional: ``SWITCHYARD_REVIEW_REDACT_PII`` governs
    what reviewers see, not what is stored."""
    return _DETECTORS.text(text) if text else text


#: a quoted literal as Python's ``repr`` (or a person) writes it, on one line
_QUOTED = re.compile(r"'[^'\n]*'|\"[^\"\n]*\"")


def _record_strings(original: bytes) -> str:
    """Everything a record says, to look a quoted piece of a reason up in: its bytes as
    text, and, for JSON, every key and string value as written after unescaping."""
    text = original.decode("utf-8", "replace")
    found = [text]
    try:
        data = json.loads(text)
    except ValueError:
        return text
    pending = [data]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            found.extend(str(key) for key in item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, str):
            found.append(item)
    return "\0".join(found)


def letter_reason(reason: str, *originals: bytes) -> str:
    """A dead letter's reason as it may be logged, stored in plaintext and listed to
    operators: every quoted piece of it that repeats the record (``kind: not a task kind
    'Call Ms Roe ...'``, a metadata key, a deadline's text) is withheld, with its length, and
    the rest goes through the PII detectors. Validation messages quote what they refuse,
    which serves the caller who sent it (gRPC and REST answer them in full); a letter's reason
    outlives the record (retention purges the sealed original, not the reason), so the bad
    value is read from the sealed original (``dead-letters show``) instead."""
    haystack = "\0".join(_record_strings(original) for original in originals if original)
    out: list[str] = []
    at = 0
    while (quoted := _QUOTED.search(reason, at)) is not None:
        inner = quoted.group(0)[1:-1]
        try:    # Python's repr escapes what it cannot print ('\n', '\x00', '\\')
            value = inner.encode("latin-1", "backslashreplace").decode("unicode_escape")
        except UnicodeDecodeError:
            value = inner
        if len(value) >= 3 and (value in haystack or inner in haystack):
            out.append(f"{reason[at:quoted.start()]}[withheld: {len(value)} characters]")
            at = quoted.end()
        else:   # an apostrophe in prose, or words of the reason's own: not a quote of it
            out.append(reason[at:quoted.start() + 1])
            at = quoted.start() + 1
    out.append(reason[at:])
    return redact_free_text("".join(out))


def downstream_excerpt(text: str, limit: int = DOWNSTREAM_EXCERPT_CHARS,
                       withheld: Withheld | None = None) -> str:
    """What Switchyard keeps of a downstream's answer (a step's summary or error: the
    ``executions`` and ``executor_jobs`` rows, the ``executions`` and ``task-status`` topics,
    logs). Downstreams echo what was posted, and the plan payloads carry the extracted fields,
    so the whole answer is redacted first (:func:`withhold_answer`): in JSON, values under a
    personal or health field's name are withheld, every other string goes through the PII
    detectors; other text goes through the detectors. ``withheld`` (the decision being run,
    :func:`withheld_of`) adds that decision's personal and health field names and values: a
    FHIR answer echoes a patient's name, birth date and diagnosis under keys of its own. Only
    then is it cut to ``limit`` characters, so a cut never leaves part of a value the
    detectors would no longer recognise."""
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):
        parsed = None
    if isinstance(parsed, (dict, list)):
        cleaned = json.dumps(withhold_answer(parsed, withheld), ensure_ascii=False)
    else:
        cleaned = _DETECTORS.text(" ".join(text.split()))
        if withheld is not None:
            cleaned = withheld.scrub(cleaned)
    return " ".join(cleaned.split())[:limit]


#: A value shorter than this (after normalising) is withheld only where a string equals it:
#: "F" or "12" inside longer text says nothing and would withhold everything.
MIN_CONTAINED_CHARS = 4
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
#: Keys of a discrepancy-like map ({"field": <name>, "submitted": .., "found": ..}) whose
#: values are the named field's values.
_VALUE_KEYS = ("submitted", "found", "value", "expected", "actual")
#: Words that say nothing about a person ("allergies: none", "sex: unknown").
_EMPTY_WORDS = frozenset({"none", "null", "true", "false", "unknown", "other", "nkda"})


def _norm(text: str) -> str:
    return " ".join(_WORD.findall(text.casefold()))


@dataclass(frozen=True)
class Withheld:
    """A decision's personal and health fields, as what a downstream's answer to its plan
    must not carry into storage, topics or logs: values under those ``names`` are withheld,
    and so is any string equal to one of the ``values`` or containing it (or one of its words
    of :data:`MIN_CONTAINED_CHARS` or more), compared case- and punctuation-insensitively."""

    names: frozenset[str] = frozenset()
    values: frozenset[str] = frozenset()   # normalised whole values
    words: frozenset[str] = frozenset()    # normalised words of those values

    def matches(self, text: str) -> bool:
        """Whether ``text`` is or contains a withheld value."""
        norm = _norm(text)
        if not norm:
            return False
        if norm in self.values:
            return True
        padded = f" {norm} "
        if any(len(v) >= MIN_CONTAINED_CHARS and f" {v} " in padded for v in self.values):
            return True
        return any(word in self.words for word in norm.split())

    def scrub(self, text: str) -> str:
        """Free text (an error message) with the whole of it withheld when it carries a
        withheld value: where the value ends inside it cannot be told reliably."""
        return "[WITHHELD]" if text and self.matches(text) else text

    def covers(self, name: str) -> bool:
        """Whether values under the key ``name`` are withheld: one of these fields, or a
        personal field of the invoice extractor's (:data:`EXTRACTED_FIELDS`)."""
        return name in self.names or EXTRACTED_FIELDS.get(name) is DataClass.PERSONAL


def sensitive_fields(decision: Decision) -> dict[str, tuple[str, list[str]]]:
    """Every personal or health field of ``decision`` (its pack's declared class, else
    :func:`field_class`): name -> (its type, the values it was read as and corrected to,
    empty ones left out). The one list both kinds of withholding start from: downstream
    answers (:func:`withheld_of`) and what reviewers see (:func:`withheld_values`)."""
    classes = declared_classes(decision)
    kinds = {f.name: f.type for f in decision.fields}
    values: dict[str, list[str]] = {}
    for name, value in [(f.name, f.value) for f in decision.fields] + list(
            decision.extracted_fields.items()):
        seen = values.setdefault(name, [])
        if value and value not in seen:
            seen.append(value)
    for name in classes:
        values.setdefault(name, [])
    return {name: (kinds.get(name, ""), found) for name, found in values.items()
            if field_class(name, classes.get(name, 0)) in WITHHELD_CLASSES}


def withheld_of(decision: Decision) -> Withheld:
    """What of ``decision``'s fields its plan's downstream answers must not reveal: every
    personal or health field (:func:`sensitive_fields`), with the values it was read (or
    corrected) as."""
    fields = sensitive_fields(decision)
    whole: set[str] = set()
    words: set[str] = set()
    for _, found in fields.values():
        for value in found:
            norm = _norm(value)
            if not norm or norm in _EMPTY_WORDS:
                continue
            whole.add(norm)
            words.update(w for w in norm.split() if len(w) >= MIN_CONTAINED_CHARS
                         and w not in _EMPTY_WORDS)
    return Withheld(frozenset(fields), frozenset(whole), frozenset(words))


def withhold_answer(value: object, withheld: Withheld | None = None) -> object:
    """A downstream's JSON answer (or a step's output) as it may be kept: values under a
    personal field name (the invoice extractor's, and ``withheld``'s names) replaced by
    ``[NAME REDACTED]``, the values of a map whose ``field`` names such a field too, strings
    carrying one of ``withheld``'s values replaced by ``[WITHHELD]``, every other string
    through the PII detectors."""
    return _withhold_personal(value, withheld or Withheld())


def _withhold_personal(value: object, withheld: Withheld) -> object:
    if isinstance(value, dict):
        about = value.get("field")
        named = isinstance(about, str) and withheld.covers(about)
        return {key: (withheld_label(key) if item not in ("", None) and (
                          withheld.covers(key) or (named and key in _VALUE_KEYS))
                      else _withhold_personal(item, withheld)) for key, item in value.items()}
    if isinstance(value, list):
        return [_withhold_personal(item, withheld) for item in value]
    if isinstance(value, str):
        return "[WITHHELD]" if withheld.matches(value) else _DETECTORS.text(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and withheld.values:
        return "[WITHHELD]" if withheld.matches(str(value)) else value
    return value


def _redact_struct(struct: struct_pb2.Struct, redactor: Redactor,
                   classes: dict[str, int] | None = None,
                   revealed: Collection[str] = (),
                   withheld: WithheldValues | None = None) -> None:
    """A plan step's payload: its ``fields``/``modified_fields`` by data class, every other
    value through the PII detectors (and the withheld fields' values masked)."""
    plain = json_format.MessageToDict(struct)
    cleaned = redactor.mapping({k: v for k, v in plain.items() if k not in _FIELD_MAPS})
    if withheld is not None:
        cleaned = withheld.mapping(cleaned)
    for key in _FIELD_MAPS:
        if isinstance(plain.get(key), dict):
            cleaned[key] = _redact_fields(plain[key], redactor, classes or {}, revealed)
    struct.Clear()
    struct.update(cleaned)


_FIELD_MAPS = ("fields", "modified_fields")


def _redact_fields(values: dict[str, object], redactor: Redactor,
                   classes: dict[str, int], revealed: Collection[str] = ()
                   ) -> dict[str, object]:
    return {name: redact_field(name, str(value), redactor, classes.get(name, 0), revealed)
            for name, value in values.items()}


def withheld_label(name: str) -> str:
    """What a reviewer sees instead of a withheld value of field ``name``."""
    return f"[{name.upper()} REDACTED]"


def redact_field(name: str, value: str, redactor: Redactor, declared: int = 0,
                 revealed: Collection[str] = ()) -> str:
    """What a reviewer sees of an extracted field: personal and health ones withheld unless
    ``revealed`` names the field (then shown as read: the item's reviewers need it), the rest
    with the PII detectors applied. ``declared``: the class its pack gave it (see
    :func:`field_class`)."""
    if not value:
        return value
    if withheld_from_reviewers(name, value, declared, revealed):
        return withheld_label(name)
    return redactor.text(value) if field_class(name, declared) is DataClass.DERIVED else value


def withheld_from_reviewers(name: str, value: str, declared: int = 0,
                            revealed: Collection[str] = ()) -> bool:
    """Whether a reviewer is shown the label instead of this field's value: a personal or
    health value the item does not reveal (an empty one is shown: there is nothing to hide,
    and a reviewer may fill it in)."""
    return bool(value) and field_class(name, declared) in WITHHELD_CLASSES and \
        name not in revealed


def redact_decision(decision: Decision, redactor: Redactor, revealed: Collection[str] = (),
                    withheld: WithheldValues | None = None) -> None:
    """Redact, in place, the document-derived values of a decision shown to a reviewer:
    extracted fields by class (``revealed`` ones shown as read), plan payloads, explanation
    (with the withheld fields' values masked where a template quoted them)."""
    classes = declared_classes(decision)
    withheld = withheld if withheld is not None else \
        withheld_values(decision, redactor, revealed)
    # (before the fields below are redacted in place: it reads their values)
    in_prose = withheld_values(decision, redactor, revealed, prose=True)
    for extracted in decision.fields:
        value = redact_field(extracted.name, extracted.value, redactor, extracted.data_class,
                             revealed)
        # how the text wrote it goes with the value (an empty field's unparsed text too)
        if value != extracted.value or (
                extracted.HasField("written") and withheld_from_reviewers(
                    extracted.name, extracted.written.value, extracted.data_class, revealed)):
            extracted.ClearField("written")
        if value != extracted.value:
            extracted.ClearField("written_elsewhere")
        extracted.value = value
    for name, value in list(decision.extracted_fields.items()):
        decision.extracted_fields[name] = redact_field(name, value, redactor,
                                                       classes.get(name, 0), revealed)
    for step in decision.plan.steps:
        _redact_struct(step.payload, redactor, classes, revealed, withheld)
    decision.explanation = in_prose.text(redactor.text(decision.explanation))


_TEXT_TYPES = ("text/", "application/json")


def redact_task(task: TaskEnvelope, redactor: Redactor) -> None:
    """Redact, in place, a task's text document and metadata values with the PII detectors
    (binary documents are left as they are: there is no text to redact)."""
    document = task.document
    if document.body and document.content_type.startswith(_TEXT_TYPES):
        document.body = redactor.text(document.body.decode("utf-8", errors="replace")).encode()
    for key, value in list(task.metadata.items()):
        task.metadata[key] = redactor.text(value)


#: Notations a date may be written in (those :func:`switchyard.packs.parse_date` reads),
#: found in text and compared by the date they mean with a withheld date field's value.
_DATE_NOTATIONS = re.compile(
    r"\b\d{4}-\d{1,2}-\d{1,2}\b|\b\d{1,2}[./]\d{1,2}[./]\d{4}\b"
    r"|\b[A-Za-z]{3,9}\.? \d{1,2},? ?\d{4}\b|\b\d{1,2} ?[A-Za-z]{3,9}\.?,? ?\d{4}\b"
    r"|\b(?:19|20)\d{6}(?:\d{4}(?:\d{2})?)?\b")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
#: What may stand between a withheld value's words where the text shows it: spaces, or HL7's
#: component separator
_BETWEEN_WORDS = r"(?:\s+|\^)"


@dataclass(frozen=True)
class WithheldSpan:
    """A span of text that shows a withheld field's value, and the label replacing it."""

    start: int
    end: int
    label: str


def _mailbox_parts(value: str) -> tuple[str, ...]:
    """A value read as a mailbox (``Hamish Drummond <hamish@example.org>``, an e-mail's From
    header): its display name and address, each also found alone (the signature and the body
    write the name without the address)."""
    if "<" not in value or "@" not in value:
        return ()
    name, address = email.utils.parseaddr(value)
    return tuple(part for part in (name.strip(), address) if len(part) > 1)


class WithheldValues:
    """The values of an item's withheld (personal and health, not revealed) fields, to be
    masked wherever they appear in free text shown to a reviewer: the document's text, its
    layout's words, metadata, explanations, discrepancy notes. A value is found as read by the
    extractor (spacing and case aside), also as the PII detectors left it in a stored body
    (an emergency contact's phone already a label), and a date in any notation the extractor
    reads that means the same day (a date with day and month in doubt in either order). A
    value the document's text writes otherwise than it was read (an enum's ``F`` read as
    ``female``: ``FieldExtraction.written``) is found where it follows its label as written
    (``Sex: F``, ``"sex": "F"``), not wherever the letter stands alone."""

    def __init__(self, values: Iterable[tuple[str, str, str]], redactor: Redactor,
                 written: Iterable[tuple[str, str, str]] = ()) -> None:
        """``values``: (field name, value, field type) of each value to mask; ``written``:
        (field name, label, value) of each value written otherwise, masked after its label
        (or, for a label that is an HL7 position, at that position)."""
        written = [(name, label, value) for name, label, value in written
                   if label.split() and value.split()]
        self.positions = {label: withheld_label(name) for name, label, _ in written
                          if is_hl7_position(label)}
        self.after_labels = [
            (re.compile(r"(?<!\w)" + r"\s+".join(map(re.escape, label.split()))
                        + r"[\s\"':=\-]{0,8}(" + r"\s+".join(map(re.escape, value.split()))
                        + r")(?!\w)", re.IGNORECASE), withheld_label(name))
            for name, label, value in written if label not in self.positions]
        self.dates: dict[str, str] = {}
        alternatives: list[tuple[str, str]] = []
        for name, value, kind in values:
            if kind == "date" and _ISO_DATE.fullmatch(value):
                self.dates.setdefault(value, withheld_label(name))
            for variant in {value, redactor.text(value), *_mailbox_parts(value)}:
                words = variant.split()
                if words:
                    # words apart by spaces, or by HL7's component separator (the subscriber
                    # read from IN1-16 is also the guarantor written Lee^Ann in GT1)
                    alternatives.append((_BETWEEN_WORDS.join(re.escape(w) for w in words),
                                         name))
        alternatives.sort(key=lambda a: -len(a[0]))
        self.labels = [withheld_label(name) for _, name in alternatives]
        self.pattern = re.compile(
            "|".join(f"(?<!\\w)({p})(?!\\w)" for p, _ in alternatives),
            re.IGNORECASE) if alternatives else None

    def __bool__(self) -> bool:
        return (self.pattern is not None or bool(self.dates) or bool(self.after_labels)
                or bool(self.positions))

    def find(self, text: str) -> list[WithheldSpan]:
        """Non-overlapping spans of ``text`` showing a withheld value, in order: a field at
        its HL7 position first (the whole field as the message writes it), then the values,
        dates and values after their labels where nothing was found before. In an HL7
        message a span is the whole field it lies in (:func:`hl7_field_around`)."""
        found: list[WithheldSpan] = []

        def add(start: int, end: int, label: str) -> None:
            if not any(f.start < end and start < f.end for f in found):
                found.append(WithheldSpan(start, end, label))

        if self.positions:
            for at in hl7_fields(text):
                if at.position in self.positions:
                    add(at.start, at.end, self.positions[at.position])
        if self.pattern is not None:
            for m in self.pattern.finditer(text):
                if m.lastindex:
                    add(m.start(), m.end(), self.labels[m.lastindex - 1])
        if self.dates:
            for m in _DATE_NOTATIONS.finditer(text):
                # either order: a field may read 03/07/1962 month first (its date_order)
                meant = {parsed[0] for order in ("day_first", "month_first")
                         if (parsed := parse_date(m.group(), order))}
                label = next((self.dates[d] for d in sorted(meant) if d in self.dates), None)
                if label:
                    add(m.start(), m.end(), label)
        for pattern, label in self.after_labels:
            for m in pattern.finditer(text):
                add(*m.span(1), label)
        found.sort(key=lambda f: f.start)
        if not text.startswith("MSH"):
            return found
        # in an HL7 message, the whole field a withheld value lies in (two values in one
        # field: one span, the first's label)
        whole: list[WithheldSpan] = []
        for span in found:
            start, end = hl7_field_around(text, span.start, span.end)
            if whole and start < whole[-1].end:
                whole[-1] = WithheldSpan(whole[-1].start, max(end, whole[-1].end),
                                         whole[-1].label)
            else:
                whole.append(WithheldSpan(start, end, span.label))
        return whole

    def text(self, text: str) -> str:
        """``text`` with every withheld value replaced by its field's label."""
        if not text or not self:
            return text
        out, last = [], 0
        for span in self.find(text):
            out.extend((text[last:span.start], span.label))
            last = span.end
        out.append(text[last:])
        return "".join(out)

    def mapping(self, value: Any) -> Any:
        """Every string inside a JSON-like structure through :meth:`text`."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.mapping(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.mapping(v) for v in value]
        return value


#: Field types whose values are words of a closed list (``no``, ``yes``, ``female``): in an
#: explanation they are ordinary words, not the field's value (see ``prose``).
CLOSED_VOCABULARY = frozenset({"enum", "boolean"})


def withheld_values(decision: Decision, redactor: Redactor,
                    revealed: Collection[str] = (), prose: bool = False) -> WithheldValues:
    """The values of ``decision``'s personal and health fields (:func:`sensitive_fields`) a
    reviewer does not see (``revealed`` aside). A value equal to a revealed field's (the
    subscriber is the patient) is not masked: the reviewer reads it in that field anyway.
    Tables are withheld as fields only (their cells are not searched for).

    ``prose``: for an explanation, whose template quotes of such fields are already their
    labels (the decision service renders it so): the values of enum and boolean fields are
    left out, so the word ``no`` of "names no policy number" stays a word when a health
    field reads ``no``."""
    fields = sensitive_fields(decision)
    shown = {" ".join(value.split()).lower()
             for name in revealed if name in fields for value in fields[name][1]}
    written = [(f.name, w.label, w.value) for f in decision.fields
               if f.name in fields and f.name not in revealed
               for w in ([f.written] if f.HasField("written") else []) + list(
                   f.written_elsewhere)]
    return WithheldValues([(name, value, kind) for name, (kind, found) in fields.items()
                           if name not in revealed and kind != "table"
                           and not (prose and kind in CLOSED_VOCABULARY) for value in found
                           if " ".join(value.split()).lower() not in shown], redactor,
                          written)


def _discrepancy_class(name: str, classes: dict[str, int]) -> DataClass:
    """A discrepancy's field: a field of the decision has its class; a name the pack does not
    declare (``coverage_status``: what the other system says about itself, not a document
    value) is derived; without pack fields (an older decision), as :func:`field_class`."""
    if name in classes or not classes:
        return field_class(name, classes.get(name, 0))
    return DataClass.DERIVED


def redact_escalation(escalation: Escalation, redactor: Redactor) -> Escalation:
    """A copy of ``escalation`` as a reviewer may see it: document body and metadata through
    the PII detectors, the proposed decision by field class, the layout's words as
    :func:`redact_layout` says (the page images are masked to match: :func:`page_redactions`).
    Personal and health fields are withheld unless ``escalation.revealed_fields`` names them;
    the values of withheld ones are masked in the document's text, metadata, explanations and
    discrepancies too (:func:`withheld_values`), and a discrepancy on a withheld field shows
    neither value. A PDF's or image's own bytes (or its blob reference) are withheld: they
    cannot be redacted, so a reviewer sees its pages only as the masked images."""
    out = Escalation()
    out.CopyFrom(escalation)
    revealed = frozenset(escalation.revealed_fields)
    withheld = withheld_values(escalation.proposed_decision, redactor, revealed)
    redact_task(out.task, redactor)
    document = out.task.document
    if not document.content_type.startswith(_TEXT_TYPES):
        document.ClearField("body")
        document.ClearField("blob")
    elif document.body and withheld:
        document.body = withheld.text(document.body.decode("utf-8", errors="replace")).encode()
    for key, value in list(out.task.metadata.items()):
        out.task.metadata[key] = withheld.text(value)
    out.reason_detail = withheld.text(redactor.text(out.reason_detail))
    out.instructions = withheld.text(out.instructions)
    redact_layout(out.layout, escalation.proposed_decision, redactor, revealed, withheld)
    redact_decision(out.proposed_decision, redactor, revealed, withheld)
    classes = declared_classes(escalation.proposed_decision)
    for item in out.discrepancies:
        if item.field in revealed:
            pass  # both values shown as read: the check is about them
        elif _discrepancy_class(item.field, classes) in WITHHELD_CLASSES:
            item.submitted = withheld_label(item.field) if item.submitted else ""
            item.found = withheld_label(item.field) if item.found else ""
        else:
            item.submitted = withheld.text(redactor.text(item.submitted))
            item.found = withheld.text(redactor.text(item.found))
        item.note = withheld.text(redactor.text(item.note))
    return out


def redact_edits(edits: Mapping[str, str], escalation: Escalation,
                 redactor: Redactor) -> dict[str, str]:
    """A four-eyes item's recorded first-approval edits as the second reviewer may see them:
    a field the item reveals as typed; a personal, health or undeclared one withheld (its
    label), as its proposed value is; any other through the detectors and the withheld
    values, as the rest of the item."""
    revealed = frozenset(escalation.revealed_fields)
    withheld = withheld_values(escalation.proposed_decision, redactor, revealed)
    classes = declared_classes(escalation.proposed_decision)
    shown = {}
    for name, value in edits.items():
        if name in revealed:
            shown[name] = value
        elif field_class(name, classes.get(name, 0)) in WITHHELD_CLASSES:
            shown[name] = withheld_label(name)
        else:
            shown[name] = withheld.text(redactor.text(value))
    return shown


#: Added around a masked box on a page image (fraction of the page), so the anti-aliased
#: edges of the glyphs are covered too.
MASK_MARGIN = 0.004


@dataclass(frozen=True)
class PageRedactions:
    """What a reviewer may not see of a document's pages: per page index (0-based, as in
    ``DocumentLayout.pages``), the words to redact (word index -> the label that replaces its
    text) and the boxes to paint over on the page image (those words' boxes and the whole
    box of every withheld personal or health field read there)."""

    words: dict[int, dict[int, str]]
    boxes: dict[int, list[BoundingBox]]

    def boxes_on(self, page_number: int) -> list[BoundingBox]:
        """The boxes to mask on 1-based ``page_number``."""
        return self.boxes.get(page_number - 1, [])


def _line_word_numbers(page: LayoutPage) -> list[list[int]]:
    """The page's lines (:func:`switchyard.documents.page_lines`, the one line grouping
    extraction uses too) as the positions of their words in ``page.words``."""
    positions: dict[tuple[str, float, float, float, float], list[int]] = {}
    for number, word in enumerate(page.words):
        b = word.box
        key = (word.text.strip(), min(b.x0, b.x1), min(b.y0, b.y1), max(b.x0, b.x1),
               max(b.y0, b.y1))
        positions.setdefault(key, []).append(number)
    return [[positions[(w.text, w.x0, w.y0, w.x1, w.y1)].pop(0) for w in line.words]
            for line in page_lines(page)]


def _inside(box: BoundingBox, area: BoundingBox) -> bool:
    """Whether ``box``'s centre lies in ``area`` (a word belongs to a field's box)."""
    x, y = (box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2
    return area.x0 <= x <= area.x1 and area.y0 <= y <= area.y1


def _padded(box: BoundingBox) -> BoundingBox:
    return BoundingBox(x0=max(0.0, box.x0 - MASK_MARGIN), y0=max(0.0, box.y0 - MASK_MARGIN),
                       x1=min(1.0, box.x1 + MASK_MARGIN), y1=min(1.0, box.y1 + MASK_MARGIN))


def page_redactions(layout: DocumentLayout, decision: Decision, redactor: Redactor,
                    revealed: Collection[str] = (),
                    withheld: WithheldValues | None = None) -> PageRedactions:
    """Which words of ``layout`` a reviewer may not read and where to mask its page images.

    Three sources, the same as for the rest of the item: the personal and health extracted
    fields of the proposed decision (by :func:`field_class`; not those ``revealed``), through
    their ``provenance`` (every word inside one of the field's word boxes, and the field's
    whole box on the image); the same fields' values wherever else a line of words shows them
    (:func:`withheld_values`: a patient's name repeated in a page header); and the PII
    detectors run over each line of words (a phone number or IBAN spans several words; every
    word a finding touches is redacted). Text on a page that is in no word (missed by OCR)
    cannot be found, so it is not masked. ``withheld``: those values, when the caller has
    them already (:func:`withheld_values` of ``decision`` and ``revealed``)."""
    words: dict[int, dict[int, str]] = {}
    boxes: dict[int, list[BoundingBox]] = {}
    areas: dict[int, list[tuple[BoundingBox, str]]] = {}
    classes = declared_classes(decision)
    if withheld is None:
        withheld = withheld_values(decision, redactor, revealed)
    for extracted in decision.fields:
        if not extracted.HasField("provenance") or not extracted.value:
            continue
        if field_class(extracted.name, classes.get(extracted.name, 0)) \
                not in WITHHELD_CLASSES or extracted.name in revealed:
            continue
        provenance = extracted.provenance
        index = provenance.page - 1
        label = withheld_label(extracted.name)
        for area in [*provenance.word_boxes, provenance.box]:
            areas.setdefault(index, []).append((area, label))
        if provenance.HasField("box"):
            boxes.setdefault(index, []).append(_padded(provenance.box))
        boxes.setdefault(index, []).extend(_padded(b) for b in provenance.word_boxes)
    for index, page in enumerate(layout.pages):
        hidden: dict[int, str] = {}
        for number, word in enumerate(page.words):
            for area, label in areas.get(index, []):
                if _inside(word.box, area):
                    hidden[number] = label
                    break
        for line in _line_word_numbers(page):
            text, spans, at = [], [], 0
            for number in line:
                word_text = page.words[number].text.strip()
                spans.append((number, at, at + len(word_text)))
                text.append(word_text)
                at += len(word_text) + 1
            line_text = " ".join(text)
            found = [(f.start, f.end, f.label) for f in withheld.find(line_text)] + [
                (f.start, f.end, redactor.replacement(f.kind))
                for f in redactor.find(line_text)]   # withheld values' labels win
            for found_start, found_end, label in found:
                for number, start, end in spans:
                    if start < found_end and found_start < end:
                        hidden.setdefault(number, label)
        if hidden:
            words[index] = hidden
            boxes.setdefault(index, []).extend(_padded(page.words[n].box) for n in hidden)
    return PageRedactions(words, boxes)


def redact_layout(layout: DocumentLayout, decision: Decision, redactor: Redactor,
                  revealed: Collection[str] = (),
                  withheld: WithheldValues | None = None) -> None:
    """Redact, in place, the words of ``layout`` a reviewer may not read (see
    :func:`page_redactions`; ``decision`` is the unredacted proposal whose fields say where
    personal and health values were read): each such word's text becomes its label."""
    redactions = page_redactions(layout, decision, redactor, revealed, withheld)
    for index, hidden in redactions.words.items():
        for number, label in hidden.items():
            layout.pages[index].words[number].text = label


__all__ = ["DOWNSTREAM_EXCERPT_CHARS", "EXTRACTED_FIELDS", "MASK_MARGIN", "STORED", "TOPICS",
           "WITHHELD_CLASSES", "AtRest", "DataClass", "OnPurge", "PageRedactions", "Stored",
           "TopicData", "Withheld", "WithheldSpan", "WithheldValues", "declared_classes",
           "downstream_excerpt", "field_class", "letter_reason", "matching_hash", "matching_key",
           "page_redactions", "redact_decision", "redact_edits", "redact_escalation",
           "redact_field", "redact_free_text", "redact_layout", "redact_task", "sealed_columns",
           "sensitive_fields", "withheld_label", "withheld_of", "withheld_values",
           "withhold_answer"]
