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
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import timezone
from typing import Any, Protocol

import asyncpg
from prometheus_client import Counter

from switchyard.messaging import Record, RejectRecord
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
from switchyard_packs.invoice.orders import OrderBook
from switchyard_packs.invoice.purchasing import (
    NOT_MATCHED,
    Match,
    Order,
    Tolerances,
    choose,
    lexical_similarity,
    match_order,
    unknown_order,
)

#: The Triton model whose P(auto) is recorded with each scored invoice.
RISK_MODEL = "invoice_risk"


#: Sentence embeddings of short texts (unit length), or None when the encoder cannot answer.
Embed = Callable[[Sequence[str]], Awaitable[list[list[float]] | None]]


class EnricherResources(Protocol):
    """What the decision service hands an enricher it builds: its own database pool, the
    keyed-hash key for values only compared, the codec that seals stored fields, and the
    text encoder's embeddings (``embed``; None when the service runs without one)."""

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


PO_MATCHES = Counter(
    "switchyard_invoice_po_matches",
    "Invoices matched against purchase orders, by result (matched, mismatch, none: no order "
    "quoted or found) and how line descriptions were compared (encoder: the text encoder's "
    "embeddings; lexical: their letters, when the encoder could not answer; none: no lines).",
    ["result", "similarity"],
)
#: Matches kept between enrich and record (the decision's transaction) per task.
_KEPT_MATCHES = 4096


def tolerances(params: Mapping[str, Any]) -> Tolerances:
    """The tenant's matching tolerances (the pack's ``po_*`` parameters)."""
    return Tolerances(price=float(params.get("po_price_tolerance", 0.02)),
                      similarity=float(params.get("po_line_similarity", 0.5)),
                      goods_receipt_required=bool(params.get("po_goods_receipt_required", True)))


class PurchaseOrderEnricher:
    """The ``purchase_orders`` enricher: the invoice against the tenant's purchase orders.

    It keeps the orders the ERP publishes on the ``purchase-orders`` topic (:attr:`topics`:
    the decision service feeds it that topic's records, :meth:`on_records`). For an invoice it
    finds the order (the number it quotes; else the vendor's open orders in its currency, the
    one it matches cleanly), pairs each invoice line with the order line it is most like (the
    text encoder's embeddings; their letters when the encoder cannot answer), and compares
    quantities and prices with what was ordered, received and billed before.

    ``history`` keys it adds: ``po_match`` (``matched``, ``mismatch``, ``none``),
    ``po_number``, ``po_found_by`` (``number``, ``vendor_and_amount``), ``po_match_kind``
    (``three_way``, ``two_way``), ``po_lines_matched``, ``po_discrepancies`` (each in words,
    naming its field, never the vendor or an account), ``po_discrepancy_fields`` and
    ``po_discrepancy_list`` (the same as maps for the rule's ``discrepancies``).
    """

    name = "purchase_orders"
    topics = ("purchase-orders",)

    def __init__(self, resources: EnricherResources) -> None:
        self.book = OrderBook(resources.pool, resources.matching_key,
                              getattr(resources, "codec", PLAINTEXT))
        self.embed: Embed | None = getattr(resources, "embed", None)
        self._matches: OrderedDict[str, Match] = OrderedDict()

    async def on_records(self, topic: str, records: list[Record]
                         ) -> list[tuple[Record, RejectRecord]]:
        """A batch of the ``purchase-orders`` topic: stored, or refused with the reason."""
        return await self.book.apply(records)

    async def _similarity(self, items: Sequence[str], lines: Sequence[str]
                          ) -> tuple[list[list[float]], str]:
        lexical = [[lexical_similarity(a, b) for b in lines] for a in items]
        if not items or not lines:
            return lexical, "none"
        vectors = await self.embed(list(items) + list(lines)) if self.embed else None
        if vectors is None:
            return lexical, "lexical"
        mine, theirs = vectors[:len(items)], vectors[len(items):]
        # the letters still count: a part number or a model name the encoder makes little of
        return [[max(lexical[i][j], sum(x * y for x, y in zip(a, b)))
                 for j, b in enumerate(theirs)] for i, a in enumerate(mine)], "encoder"

    async def _against(self, extraction: InvoiceExtraction, orders: Sequence[Order],
                       tol: Tolerances, found_by: str) -> tuple[list[Match], str]:
        descriptions = [item.description for item in extraction.items]
        lines = [line.description for order in orders for line in order.lines]
        similarity, how = await self._similarity(descriptions, lines)
        matches, start = [], 0
        for order in orders:
            end = start + len(order.lines)
            matches.append(match_order(extraction, order, [row[start:end] for row in similarity],
                                       tol, found_by))
            start = end
        return matches, how

    async def match(self, task: TaskEnvelope, extraction: InvoiceExtraction,
                    params: Mapping[str, Any]) -> tuple[Match, str]:
        """The invoice's match, and how its lines were compared."""
        tol = tolerances(params)
        quoted = extraction.get("po_number")
        if quoted:
            order, publishes = await self.book.by_number(task.tenant_id, quoted, task.task_id)
            if order is None:
                # a tenant whose ERP publishes no orders: the usual rules decide
                return (unknown_order(quoted) if publishes else NOT_MATCHED), "none"
            matches, how = await self._against(extraction, [order], tol, "number")
            return matches[0], how
        vendor, currency = extraction.get("vendor"), extraction.get("currency")
        if not vendor or not currency:
            return NOT_MATCHED, "none"
        orders = await self.book.open_orders(task.tenant_id, vendor, currency, task.task_id)
        if not orders:
            return NOT_MATCHED, "none"
        matches, how = await self._against(extraction, orders, tol, "vendor_and_amount")
        return choose(matches), how

    async def enrich(self, task: TaskEnvelope, extraction: InvoiceExtraction,
                     params: Mapping[str, Any]) -> dict[str, Any]:
        if not params.get("po_matching", True):
            return NOT_MATCHED.context()
        match, how = await self.match(task, extraction, params)
        PO_MATCHES.labels(match.status, how).inc()
        self._matches[task.task_id] = match
        while len(self._matches) > _KEPT_MATCHES:
            self._matches.popitem(last=False)
        return match.context()

    async def record(self, conn: asyncpg.Connection, task: TaskEnvelope,
                     extraction: InvoiceExtraction, decision: Decision) -> None:
        """What the invoice billed of its order counts from now on (in the decision's
        transaction), whether it runs straight through or waits for a person."""
        match = self._matches.pop(task.task_id, None)
        if match is not None:
            await self.book.record(conn, task.tenant_id, task.task_id, match)

    async def reject(self, tenant_id: str, task_id: str) -> bool:
        """A person rejected the invoice: it bills nothing."""
        return await self.book.forget(tenant_id, task_id)


__all__ = ["PO_MATCHES", "RISK_MODEL", "EnricherResources", "PurchaseOrderEnricher",
           "VendorHistoryEnricher", "extract", "history_context", "risk_features", "tolerances",
           "vendor_history"]
