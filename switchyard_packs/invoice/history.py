"""The invoice pack's vendor history, and the invoice_risk features built from it.

The invoice_risk model was trained on the raw vector ``features.INVOICE_FEATURES``; this
module builds exactly that vector (through ``features.invoice_raw_features``, the code the
model card's metrics were computed with) from what the extractor read and what PostgreSQL
remembers about the vendor: how many invoices it sent, their mean amount and currency, the
bank account it uses, and whether this invoice number was seen before.

History is kept per tenant in ``decision_invoices`` / ``decision_vendors`` (migration 0011).
A scored invoice is recorded in the same transaction as its decision, so a redelivered task
never counts twice; it teaches the vendor's history only once a person confirmed it or it was
executed successfully, both learned from events (the decision service's learner calls
:meth:`HistoryStore.confirm` / :meth:`HistoryStore.reject`), and a
person's rejection removes what it taught. Only keyed hashes of the vendor, invoice number
and bank account are kept (:mod:`switchyard._dataclass`).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import asyncpg

from services.decision.training.features import INVOICE_FEATURES, invoice_raw_features
from switchyard.privacy import matching_hash
from switchyard.storage import INVOICE_FIELDS, PLAINTEXT, PayloadCodec
from switchyard_packs.invoice.extraction import (
    InvoiceExtraction,
    account_key,
    find_money,
    vendor_key,
)


@dataclass(frozen=True)
class VendorHistory:
    """What the tenant's records say about an invoice's vendor."""

    known: bool = False
    invoice_count: int = 0
    mean_amount: float = 0.0
    currency: str = ""
    bank_changed: bool = False  # the invoice's account is not the vendor's confirmed one
    bank_unconfirmed: bool = False  # the invoice names an account; none is confirmed yet
    duplicate: bool = False  # (vendor, invoice number) seen on another, unrejected task


UNKNOWN = VendorHistory()


def received_date(received_at: dt.datetime | None, metadata: Mapping[str, str]) -> dt.date:
    """When the invoice arrived: the upstream system's ``received_date`` metadata, else when
    Switchyard accepted the task."""
    raw = metadata.get("received_date", "")
    if raw:
        try:
            return dt.date.fromisoformat(raw[:10])
        except ValueError:
            pass
    return (received_at or dt.datetime.now(dt.timezone.utc)).date()


def risk_inputs(ex: InvoiceExtraction, history: VendorHistory, received: dt.date
                ) -> dict[str, float]:
    """The invoice_risk FEATURES (by name) for an extraction and its vendor's history."""
    tax = ex.amount("tax") or 0.0
    record = {
        "amount": ex.amount("total") or 0.0,
        "currency": ex.get("currency") or "",
        "vendor_currency": history.currency if history.known else "",
        "po_number": ex.get("po_number"),
        "received_date": received.isoformat(),
        "due_date": ex.get("due_date"),
        "line_items_total": (sum(ex.line_items) + tax) if ex.line_items else None,
        "line_item_count": len(ex.line_items) or int(ex.get("line_item_count") or 0),
        "extraction_confidence": ex.confidence,
        "bank_details_changed": history.bank_changed,
        "duplicate_invoice_number": history.duplicate,
        "vendor_known": history.known,
        "vendor_mean_amount": history.mean_amount,
        "vendor_invoice_count": history.invoice_count,
    }
    return dict(zip(INVOICE_FEATURES, invoice_raw_features(record)))



def risk_factors(x: Mapping[str, float]) -> str:
    """The risk inputs (:func:`risk_inputs`) that usually make invoices need a person, in
    words: what a reviewer reads in an ``invoice_risk`` escalation."""
    factors = []
    if not x["vendor_known"]:
        factors.append("vendor not seen before")
    elif x["vendor_mean_amount"] > 0 and not 0.5 <= x["amount"] / x["vendor_mean_amount"] <= 2:
        factors.append("amount far from the vendor's usual")
    if not x["has_po_number"]:
        factors.append("no PO number")
    if x["days_until_due"] < 0:
        factors.append("already overdue")
    if x["currency_mismatch"]:
        factors.append("not the vendor's usual currency")
    if x["line_items_total_mismatch"]:
        factors.append("line items do not add up")
    if x["bank_details_changed"]:
        factors.append("bank details changed")
    if x["duplicate_invoice_number"]:
        factors.append("invoice number seen before")
    return ", ".join(factors)


class HistoryStore:
    """Vendor history in PostgreSQL: read before scoring, taught only by confirmed outcomes.

    Every scored invoice is recorded with its model decision as ``pending``: it counts for
    duplicate detection but teaches nothing about the vendor. It is ``confirmed`` when a
    person approves it (HUMAN decision) or its task SUCCEEDED, ``rejected`` when a person
    rejects it; either way the vendor's summary is recomputed from its confirmed invoices,
    so a rejection removes what the invoice taught. Vendor, invoice number and bank account
    are stored as keyed hashes (:func:`switchyard._dataclass.matching_hash`), the extracted
    fields sealed with the payload codec.
    """

    def __init__(self, pool: asyncpg.Pool, key: bytes, codec: PayloadCodec = PLAINTEXT) -> None:
        self.pool = pool
        self.key = key
        self.codec = codec

    def hashes(self, tenant_id: str, ex: InvoiceExtraction) -> tuple[str, str, str]:
        """(vendor, invoice number, bank account) of an extraction, as keyed hashes."""
        return (matching_hash(self.key, tenant_id, "vendor", vendor_key(ex.get("vendor") or "")),
                matching_hash(self.key, tenant_id, "invoice_number",
                              ex.get("invoice_number") or ""),
                matching_hash(self.key, tenant_id, "bank_account",
                              account_key(ex.get("bank_account") or "")))

    async def lookup(self, tenant_id: str, ex: InvoiceExtraction, task_id: str) -> VendorHistory:
        vendor, number, bank = self.hashes(tenant_id, ex)
        if not vendor:
            return VendorHistory(bank_unconfirmed=bool(bank))
        try:
            task_uuid = uuid.UUID(task_id)
        except ValueError:
            task_uuid = uuid.UUID(int=0)  # a Decide call about an item not (yet) a task
        row = await self.pool.fetchrow(
            """
            SELECT v.invoice_count, v.amount_sum, v.currency, v.bank_hash,
                   EXISTS (SELECT 1 FROM decision_invoices i
                            WHERE i.tenant_id = $1 AND i.vendor_hash = $2
                              AND i.number_hash = $3 AND $3 <> '' AND i.task_id <> $4
                              AND i.state <> 'rejected')
                       AS duplicate
              FROM (SELECT 1) one
              LEFT JOIN decision_vendors v ON v.tenant_id = $1 AND v.vendor_hash = $2
            """,
            tenant_id, vendor, number, task_uuid,
        )
        count = row["invoice_count"] or 0
        reference = row["bank_hash"] or ""
        return VendorHistory(
            known=count > 0, invoice_count=count,
            mean_amount=(row["amount_sum"] / count) if count else 0.0,
            currency=row["currency"] or "",
            bank_changed=bool(reference and bank and bank != reference),
            bank_unconfirmed=bool(bank and not reference),
            duplicate=bool(row["duplicate"]),
        )

    async def record(self, conn: asyncpg.Connection, tenant_id: str, task_id: str,
                     ex: InvoiceExtraction, p_auto: float, auto: bool) -> None:
        """Remember the scored invoice as pending (duplicate checks only); ``p_auto`` is the
        invoice_risk model's P(auto), ``auto`` says the model decided to run it without a
        person. Runs in the caller's transaction, beside the decision row."""
        vendor, number, bank = self.hashes(tenant_id, ex)
        fields = json.dumps({name: f.value for name, f in ex.fields.items()}).encode()
        await conn.execute(
            "INSERT INTO decision_invoices (task_id, tenant_id, vendor_hash, number_hash, "
            "bank_hash, amount, currency, fields, p_auto, auto) "
            "VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10) ON CONFLICT (task_id) DO NOTHING",
            uuid.UUID(task_id), tenant_id, vendor, number, bank, ex.amount("total"),
            ex.get("currency") or "", self.codec.seal(task_id, fields, INVOICE_FIELDS),
            p_auto, auto,
        )

    async def pending(self, tasks: Sequence[tuple[str, str]], by_person: bool) -> set[str]:
        """Of these (tenant, task id) pairs, the tasks a :meth:`confirm` could change (an
        invoice of this store still pending, and straight through unless ``by_person``): one
        statement for a whole batch of outcomes, most of which are no invoice at all."""
        rows = await self.pool.fetch(
            "SELECT d.task_id FROM decision_invoices d JOIN unnest($1::text[], $2::uuid[]) "
            "AS x(tenant_id, task_id) ON d.tenant_id = x.tenant_id AND d.task_id = x.task_id "
            "WHERE d.state = 'pending' AND ($3 OR d.auto)",
            [tenant for tenant, _ in tasks], [uuid.UUID(task) for _, task in tasks], by_person)
        return {str(row["task_id"]) for row in rows}

    async def confirm(self, tenant_id: str, task_id: str,
                      corrected: Mapping[str, str] | None = None,
                      by_person: bool = True) -> bool:
        """A person approved the invoice (``by_person``), or the execution of an invoice the
        model ran straight through succeeded: it teaches the vendor's history from now on.
        An escalated invoice is confirmed by a person only, never by its execution (a review
        default action is no person). ``corrected`` holds the fields as the person left them
        (a MODIFY verdict), which replace what the extractor read. A rejected invoice stays
        rejected. Returns whether anything changed."""
        corrected = corrected or {}
        # most tasks that succeed are no invoice of this store, or taught already: one round
        # trip says so, without a transaction
        if not await self.pool.fetchval(
                "SELECT EXISTS (SELECT 1 FROM decision_invoices WHERE task_id = $1 AND "
                "tenant_id = $2 AND state = 'pending' AND ($3 OR auto))",
                uuid.UUID(task_id), tenant_id, by_person):
            return False
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT vendor_hash, state, auto FROM decision_invoices WHERE task_id = $1 "
                "AND tenant_id = $2 FOR UPDATE", uuid.UUID(task_id), tenant_id)
            if row is None or row["state"] != "pending" or not (by_person or row["auto"]):
                return False
            updates: dict[str, object] = {}
            money = find_money(corrected.get("total", ""))
            if money:
                updates["amount"] = money[0].amount
            if corrected.get("currency"):
                updates["currency"] = corrected["currency"].strip().upper()
            if corrected.get("bank_account"):
                updates["bank_hash"] = matching_hash(self.key, tenant_id, "bank_account",
                                                     account_key(corrected["bank_account"]))
            sets = "".join(f", {name} = ${i}" for i, name in enumerate(updates, start=2))
            await conn.execute(
                f"UPDATE decision_invoices SET state = 'confirmed', settled_at = now(){sets} "
                "WHERE task_id = $1", uuid.UUID(task_id), *updates.values())
            await self._summarise(conn, tenant_id, row["vendor_hash"])
        return True

    async def reject(self, tenant_id: str, task_id: str) -> bool:
        """A person rejected the invoice: it no longer counts anywhere (history, duplicates),
        and whatever it taught is recomputed away."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "UPDATE decision_invoices SET state = 'rejected', settled_at = now() "
                "WHERE task_id = $1 AND tenant_id = $2 AND state <> 'rejected' "
                "RETURNING vendor_hash", uuid.UUID(task_id), tenant_id)
            if row is None:
                return False
            await self._summarise(conn, tenant_id, row["vendor_hash"])
        return True

    @staticmethod
    async def _summarise(conn: asyncpg.Connection, tenant_id: str, vendor: str) -> None:
        """Recompute the vendor's summary from its confirmed invoices: the currency of the
        first, count and sum of those in that currency, the bank account of the latest."""
        if not vendor:
            return
        await conn.execute(
            """
            WITH confirmed AS (
                SELECT amount, currency, bank_hash, settled_at, task_id FROM decision_invoices
                 WHERE tenant_id = $1 AND vendor_hash = $2 AND state = 'confirmed'
                   AND amount IS NOT NULL),
            usual AS (SELECT currency FROM confirmed ORDER BY settled_at, task_id LIMIT 1)
            INSERT INTO decision_vendors AS v (tenant_id, vendor_hash, currency, invoice_count,
                                               amount_sum, bank_hash, updated_at)
            SELECT $1, $2, coalesce((SELECT currency FROM usual), ''),
                   (SELECT count(*) FROM confirmed
                     WHERE currency = coalesce((SELECT currency FROM usual), '')),
                   coalesce((SELECT sum(amount) FROM confirmed
                              WHERE currency = coalesce((SELECT currency FROM usual), '')), 0),
                   coalesce((SELECT bank_hash FROM confirmed WHERE bank_hash <> ''
                              ORDER BY settled_at DESC, task_id LIMIT 1), ''),
                   now()
            ON CONFLICT (tenant_id, vendor_hash) DO UPDATE SET
                currency = EXCLUDED.currency, invoice_count = EXCLUDED.invoice_count,
                amount_sum = EXCLUDED.amount_sum, bank_hash = EXCLUDED.bank_hash,
                updated_at = now()
            """, tenant_id, vendor)


__all__ = ["UNKNOWN", "HistoryStore", "VendorHistory", "received_date", "risk_factors",
           "risk_inputs"]
