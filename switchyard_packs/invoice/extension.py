"""Entry points of the invoice pack, registered in pyproject.toml.

* ``switchyard.extractors: invoice`` -> :func:`extract`: the invoice field extractor
  (:mod:`switchyard_packs.invoice.extraction`); its result has ``fields`` (name ->
  ``ExtractedField(value, confidence, provenance)``), ``confidence`` and ``issues`` like every
  extractor's, plus the line items the risk features need; it takes the document's layout
  (``layout=``) when the document has one.
* ``switchyard.features: invoice`` -> :func:`risk_features`: the ``invoice_risk`` model's input
  vector, built from the extraction and what the ``vendor_history`` enricher found.
* ``switchyard.enrichers: vendor_history`` -> :class:`VendorHistoryEnricher`: the tenant's
  history of the invoice's vendor (PostgreSQL ``decision_vendors`` / ``decision_invoices``),
  added to the rule context as ``history.*``; it records every scored invoice with its decision
  and learns from confirmed outcomes (a person's verdict, a successful execution).

The decision service calls these; nothing here knows about gRPC or Kafka.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from datetime import timezone
from typing import Any, Protocol

import asyncpg

from switchyard.storage import PLAINTEXT, PayloadCodec
from switchyard.v1 import Decision, DecisionOutcome, DocumentLayout, TaskEnvelope
from switchyard_packs.invoice.extraction import InvoiceExtraction, extract_invoice, vendor_key
from switchyard_packs.invoice.history import (
    HistoryStore,
    VendorHistory,
    received_date,
    risk_factors,
    risk_inputs,
)

#: The Triton model whose P(auto) is recorded with each scored invoice.
RISK_MODEL = "invoice_risk"


class EnricherResources(Protocol):
    """What the decision service hands an enricher it builds: its own database pool, the
    keyed-hash key for values only compared, and the codec that seals stored fields."""

    pool: asyncpg.Pool
    matching_key: bytes
    codec: PayloadCodec


def extract(text: str, layout: DocumentLayout | None = None) -> InvoiceExtraction:
    """The ``invoice`` extractor: fields of an invoice document, each with a confidence, and
    for a document with a ``layout`` (a PDF or an image) each value's provenance."""
    return extract_invoice(text, layout)


def _received(task: TaskEnvelope) -> dt.date:
    received = (task.received_at.ToDatetime(timezone.utc) if task.HasField("received_at")
                else None)
    return received_date(received, task.metadata)


def vendor_history(history: Mapping[str, Any]) -> VendorHistory:
    """The :class:`VendorHistory` behind the ``history.*`` keys :class:`VendorHistoryEnricher`
    adds (absent keys: nothing known)."""
    return VendorHistory(
        known=bool(history.get("vendor_known", False)),
        invoice_count=int(history.get("vendor_invoice_count", 0) or 0),
        mean_amount=float(history.get("vendor_mean_amount", 0.0) or 0.0),
        currency=str(history.get("vendor_currency", "") or ""),
        bank_changed=bool(history.get("bank_changed", False)),
        bank_unconfirmed=bool(history.get("bank_unconfirmed", False)),
        duplicate=bool(history.get("duplicate", False)),
    )


def risk_features(extraction: InvoiceExtraction, history: Mapping[str, Any],
                  task: TaskEnvelope) -> list[float]:
    """The ``invoice`` features: the ``invoice_risk`` input vector (``INVOICE_FEATURES``
    order) for an extraction, the rule context's ``history`` and the task (its received date)."""
    return list(risk_inputs(extraction, vendor_history(history), _received(task)).values())


def _history_keys(history: VendorHistory) -> dict[str, Any]:
    return {
        "vendor_known": history.known, "vendor_invoice_count": history.invoice_count,
        "vendor_mean_amount": history.mean_amount, "vendor_currency": history.currency,
        "bank_changed": history.bank_changed, "bank_unconfirmed": history.bank_unconfirmed,
        "duplicate": history.duplicate,
    }


def _names(value: Any) -> frozenset[str]:
    if not isinstance(value, (list, tuple, frozenset, set)):
        return frozenset()
    return frozenset(vendor_key(str(v)) for v in value)


def history_context(extraction: InvoiceExtraction, history: VendorHistory,
                    params: Mapping[str, Any], received: dt.date) -> dict[str, Any]:
    """The ``history.*`` keys for an invoice: what the vendor's history says, whether the
    vendor is on the tenant's block / allow lists, and the risk factors in words."""
    key = vendor_key(extraction.get("vendor") or "")
    inputs = risk_inputs(extraction, history, received)
    return {
        **_history_keys(history),
        "vendor_blocked": bool(key) and key in _names(params.get("vendors_block")),
        "vendor_allowed": bool(key) and key in _names(params.get("vendors_allow")),
        "risk_factors": risk_factors(inputs),
    }


class VendorHistoryEnricher:
    """The ``vendor_history`` enricher: the tenant's history of the invoice's vendor.

    ``history`` keys it adds: ``vendor_known``, ``vendor_invoice_count``,
    ``vendor_mean_amount``, ``vendor_currency``, ``bank_changed`` (the invoice's account is
    not the vendor's confirmed one), ``bank_unconfirmed`` (no account confirmed yet),
    ``duplicate`` (this vendor's invoice number seen on another, unrejected task),
    ``vendor_blocked`` / ``vendor_allowed`` (the vendor, matched without case, punctuation or
    legal suffix, is on ``params.vendors_block`` / ``params.vendors_allow``) and
    ``risk_factors`` (the inputs that usually make invoices need a person, in words).
    """

    name = "vendor_history"

    def __init__(self, resources: EnricherResources) -> None:
        self.store = HistoryStore(resources.pool, resources.matching_key,
                                  getattr(resources, "codec", PLAINTEXT))

    async def enrich(self, task: TaskEnvelope, extraction: InvoiceExtraction,
                     params: Mapping[str, Any]) -> dict[str, Any]:
        """Read the vendor's history (PostgreSQL) for the rule context."""
        history = await self.store.lookup(task.tenant_id, extraction, task.task_id)
        return history_context(extraction, history, params, _received(task))

    async def record(self, conn: asyncpg.Connection, task: TaskEnvelope,
                     extraction: InvoiceExtraction, decision: Decision) -> None:
        """Remember the decided invoice as pending (counts for duplicates, teaches nothing
        until confirmed), in the transaction that stores the decision."""
        p_auto = next((m.confidence for m in decision.models if m.model_name == RISK_MODEL),
                      0.0)
        await self.store.record(conn, task.tenant_id, task.task_id, extraction, p_auto,
                                decision.outcome == DecisionOutcome.DECISION_OUTCOME_AUTO_EXECUTE)

    async def pending(self, tasks: Sequence[tuple[str, str]], by_person: bool) -> set[str]:
        """Which of these (tenant, task id) outcomes could teach: the learner asks once per
        batch and calls :meth:`confirm` for those only."""
        return await self.store.pending(tasks, by_person)

    async def confirm(self, tenant_id: str, task_id: str, corrected: Mapping[str, str],
                      by_person: bool) -> bool:
        """A person approved the task (with ``corrected`` fields), or the execution of one the
        model ran straight through succeeded: the invoice teaches the vendor's history."""
        return await self.store.confirm(tenant_id, task_id, corrected, by_person=by_person)

    async def reject(self, tenant_id: str, task_id: str) -> bool:
        """A person rejected the task: the invoice no longer counts anywhere."""
        return await self.store.reject(tenant_id, task_id)


__all__ = ["RISK_MODEL", "EnricherResources", "VendorHistoryEnricher", "extract",
           "history_context", "risk_features", "vendor_history"]
