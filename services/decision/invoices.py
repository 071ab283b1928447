"""Invoice assessment: extracted fields + the tenant's vendor history -> invoice_risk features.

The invoice_risk model was trained on the raw vector ``features.INVOICE_FEATURES``; this
module builds exactly that vector (through ``features.invoice_raw_features``, the code the
model card's metrics were computed with) from what the extractor read and what PostgreSQL
remembers about the vendor: how many invoices it sent, their mean amount and currency, the
bank account it uses, and whether this invoice number was seen before.

History is kept per tenant in ``decision_vendors`` / ``decision_invoices`` (migration 0006)
and written in the same transaction as the decision, so a redelivered task never counts
twice and a crash never leaves history without its decision.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

import asyncpg

from services.decision.extraction import InvoiceExtraction, vendor_key
from services.decision.training.features import INVOICE_FEATURES, invoice_raw_features
from services.decision.triton import Prediction


@dataclass(frozen=True)
class VendorHistory:
    """What the tenant's records say about an invoice's vendor."""

    known: bool = False
    invoice_count: int = 0
    mean_amount: float = 0.0
    currency: str = ""
    bank_account: str = ""
    duplicate: bool = False  # (vendor, invoice number) seen on another task


UNKNOWN = VendorHistory()


@dataclass(frozen=True)
class InvoiceAssessment:
    extraction: InvoiceExtraction
    history: VendorHistory
    inputs: dict[str, float]  # the raw FEATURES, by name, as sent to invoice_risk
    risk: Prediction
    vendor_key: str

    def risk_factors(self) -> str:
        """The inputs that usually make invoices need a person, in words."""
        x = self.inputs
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
    bank = ex.get("bank_account") or ""
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
        "bank_details_changed": bool(history.bank_account and bank and bank != history.bank_account),
        "duplicate_invoice_number": history.duplicate,
        "vendor_known": history.known,
        "vendor_mean_amount": history.mean_amount,
        "vendor_invoice_count": history.invoice_count,
    }
    return dict(zip(INVOICE_FEATURES, invoice_raw_features(record)))


class HistoryStore:
    """Vendor history in PostgreSQL: read before scoring, written with the decision."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def lookup(self, tenant_id: str, ex: InvoiceExtraction, task_id: str) -> VendorHistory:
        key = vendor_key(ex.get("vendor") or "")
        if not key:
            return UNKNOWN
        number = ex.get("invoice_number") or ""
        try:
            task_uuid = uuid.UUID(task_id)
        except ValueError:
            task_uuid = uuid.UUID(int=0)  # a Decide call about an item not (yet) a task
        row = await self.pool.fetchrow(
            """
            SELECT v.invoice_count, v.amount_sum, v.currency, v.bank_account,
                   EXISTS (SELECT 1 FROM decision_invoices i
                            WHERE i.tenant_id = $1 AND i.vendor_key = $2
                              AND i.invoice_number = $3 AND $3 <> '' AND i.task_id <> $4)
                       AS duplicate
              FROM (SELECT 1) one
              LEFT JOIN decision_vendors v ON v.tenant_id = $1 AND v.vendor_key = $2
            """,
            tenant_id, key, number, task_uuid,
        )
        count = row["invoice_count"] or 0
        return VendorHistory(
            known=count > 0, invoice_count=count,
            mean_amount=(row["amount_sum"] / count) if count else 0.0,
            currency=row["currency"] or "", bank_account=row["bank_account"] or "",
            duplicate=bool(row["duplicate"]),
        )

    @staticmethod
    async def record(conn: asyncpg.Connection, tenant_id: str, task_id: str,
                     assessment: InvoiceAssessment, count_it: bool) -> None:
        """Remember the invoice (duplicate checks) and, unless refused, add it to the vendor's
        history. Runs in the caller's transaction, beside the decision row."""
        ex = assessment.extraction
        amount, currency = ex.amount("total"), ex.get("currency") or ""
        fields = {name: f.value for name, f in ex.fields.items()}
        inserted = await conn.fetchval(
            "INSERT INTO decision_invoices (task_id, tenant_id, vendor_key, invoice_number, "
            "amount, currency, fields, p_auto) VALUES ($1,$2,$3,$4,$5,$6,$7::jsonb,$8) "
            "ON CONFLICT (task_id) DO NOTHING RETURNING 1",
            uuid.UUID(task_id), tenant_id, assessment.vendor_key,
            ex.get("invoice_number") or "", amount, currency, json.dumps(fields),
            assessment.risk.confidence,
        )
        if not inserted or not count_it or not assessment.vendor_key or amount is None:
            return
        await conn.execute(
            """
            INSERT INTO decision_vendors AS v (tenant_id, vendor_key, vendor_name, currency,
                                               invoice_count, amount_sum, bank_account)
            VALUES ($1, $2, $3, $4, 1, $5, $6)
            ON CONFLICT (tenant_id, vendor_key) DO UPDATE SET
                invoice_count = v.invoice_count
                    + CASE WHEN v.currency IN ('', EXCLUDED.currency) THEN 1 ELSE 0 END,
                amount_sum = v.amount_sum
                    + CASE WHEN v.currency IN ('', EXCLUDED.currency) THEN EXCLUDED.amount_sum
                           ELSE 0 END,
                currency = CASE WHEN v.currency = '' THEN EXCLUDED.currency ELSE v.currency END,
                bank_account = CASE WHEN v.bank_account = '' THEN EXCLUDED.bank_account
                                    ELSE v.bank_account END,
                last_seen = now()
            """,
            tenant_id, assessment.vendor_key, ex.get("vendor") or "", currency, amount,
            ex.get("bank_account") or "",
        )


__all__ = ["UNKNOWN", "HistoryStore", "InvoiceAssessment", "VendorHistory", "received_date",
           "risk_inputs"]
