"""The purchase orders the tenants' ERPs publish, as the decision service keeps them.

ERPs write the latest state of each order to the compacted ``purchase-orders`` topic (key
``<tenant_id>/<po_number>``, a ``switchyard.v1.PurchaseOrder`` as protobuf or proto3 JSON; no
value removes the order). :meth:`OrderBook.apply` takes a batch of those records: a good one
replaces the stored state unless the stored one is newer (its ``updated_at``), a tombstone
deletes it, and one that cannot be used is refused with its reason (the dead-letter topic keeps
it with its bytes). Orders are stored in ``decision_purchase_orders`` (migration 0030): the
vendor as a keyed hash, the order sealed with the payload codec.

What each invoice matched is recorded with its decision (``decision_invoice_matches``), so
what an invoice billed counts against its order lines before the ERP has counted it; a
person's rejection of the invoice removes it.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Sequence

import asyncpg
from google.protobuf import json_format

from switchyard.messaging import Record, RejectRecord, decode_record
from switchyard.privacy import matching_hash
from switchyard.storage import PLAINTEXT, PURCHASE_ORDER, PayloadCodec
from switchyard.v1 import PurchaseOrder, PurchaseOrderStatus
from switchyard_packs.invoice.extraction import vendor_key
from switchyard_packs.invoice.purchasing import Match, Order, check_order, order_of, po_key

#: Larger records are refused before parsing (an order of 500 lines is about 100 KiB of JSON).
MAX_RECORD_BYTES = 1024 * 1024
_STATUS = {
    PurchaseOrderStatus.PURCHASE_ORDER_STATUS_UNSPECIFIED: "open",
    PurchaseOrderStatus.PURCHASE_ORDER_STATUS_OPEN: "open",
    PurchaseOrderStatus.PURCHASE_ORDER_STATUS_CLOSED: "closed",
    PurchaseOrderStatus.PURCHASE_ORDER_STATUS_CANCELLED: "cancelled",
}
_ORDER_NAMESPACE = uuid.UUID("6f0c1d6e-2b9a-5c51-9a43-7d1c0f5b8e21")


def order_id(tenant_id: str, key: str) -> uuid.UUID:
    """The row id an order is stored (and sealed) under."""
    return uuid.uuid5(_ORDER_NAMESPACE, f"{tenant_id}\x00{key}")


def _from_json(value: bytes) -> PurchaseOrder:
    try:
        data = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RejectRecord("malformed_json", f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise RejectRecord("schema_violation", "a purchase order is a JSON object")
    try:
        return json_format.ParseDict(data, PurchaseOrder())
    except json_format.ParseError as exc:
        raise RejectRecord("schema_violation", str(exc)[:500]) from None


def _key(record: Record) -> tuple[str, str]:
    raw = (record.key or b"").decode("utf-8", "replace")
    tenant, sep, number = raw.partition("/")
    if not sep or not tenant or not po_key(number):
        raise RejectRecord("bad_key", f"the key must be '<tenant_id>/<po_number>', got "
                                      f"{raw[:80]!r}")
    return tenant, number


def parse_record(record: Record) -> tuple[str, str, PurchaseOrder | None]:
    """(tenant, PO number, the order or None for a tombstone) of one topic record;
    :class:`RejectRecord` says why it cannot be used."""
    tenant, number = _key(record)
    if record.value is None:
        return tenant, number, None
    if len(record.value) > MAX_RECORD_BYTES:
        raise RejectRecord("too_large", f"{len(record.value)} bytes; at most {MAX_RECORD_BYTES}")
    po = decode_record(record, PurchaseOrder, _from_json)
    problems = check_order(po)
    if po.tenant_id and po.tenant_id != tenant:
        problems.append("tenant_id is not the key's tenant")
    if po.po_number and po_key(po.po_number) != po_key(number):
        problems.append("po_number is not the key's PO number")
    if problems:
        raise RejectRecord("schema_violation", "; ".join(problems)[:1000])
    return tenant, number, po


class OrderBook:
    """Purchase orders in PostgreSQL: written from the topic, read to match invoices."""

    def __init__(self, pool: asyncpg.Pool, key: bytes, codec: PayloadCodec = PLAINTEXT) -> None:
        self.pool = pool
        self.key = key
        self.codec = codec

    def vendor_hash(self, tenant_id: str, vendor: str) -> str:
        return matching_hash(self.key, tenant_id, "vendor", vendor_key(vendor))

    async def apply(self, records: Sequence[Record]) -> list[tuple[Record, RejectRecord]]:
        """A batch of topic records, in one transaction (the last state of an order in the
        batch wins); returns the records refused, each with why."""
        refused: list[tuple[Record, RejectRecord]] = []
        latest: dict[tuple[str, str], PurchaseOrder | None] = {}
        for record in records:
            try:
                tenant, number, po = parse_record(record)
            except RejectRecord as exc:
                refused.append((record, exc))
                continue
            latest[(tenant, po_key(number))] = po
        upserts, deletes = [], []
        for (tenant, key), po in latest.items():
            row_id = order_id(tenant, key)
            if po is None:
                deletes.append(row_id)
                continue
            updated = (po.updated_at.ToDatetime(dt.timezone.utc) if po.HasField("updated_at")
                       else dt.datetime.now(dt.timezone.utc))
            upserts.append((row_id, tenant, key, self.vendor_hash(tenant, po.vendor),
                            po.currency,
                            sum(ln.quantity * ln.unit_price for ln in po.lines),
                            _STATUS.get(po.status, "open"),
                            self.codec.seal(row_id, po.SerializeToString(), PURCHASE_ORDER),
                            updated))
        if not upserts and not deletes:
            return refused
        async with self.pool.acquire() as conn, conn.transaction():
            if deletes:
                await conn.execute("DELETE FROM decision_purchase_orders "
                                   "WHERE order_id = ANY($1::uuid[])", deletes)
            if upserts:
                await conn.executemany(
                    """
                    INSERT INTO decision_purchase_orders AS o (order_id, tenant_id, po_key,
                        vendor_hash, currency, amount, status, body, updated_at)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                    ON CONFLICT (order_id) DO UPDATE SET
                        vendor_hash = EXCLUDED.vendor_hash, currency = EXCLUDED.currency,
                        amount = EXCLUDED.amount, status = EXCLUDED.status,
                        body = EXCLUDED.body, updated_at = EXCLUDED.updated_at
                    WHERE o.updated_at <= EXCLUDED.updated_at
                    """, upserts)
        return refused

    async def _orders(self, rows: Sequence[asyncpg.Record], task_id: str) -> list[Order]:
        if not rows:
            return []
        try:
            this_task = uuid.UUID(task_id)
        except ValueError:
            this_task = uuid.UUID(int=0)   # a Decide call about an item not (yet) a task
        billed = await self.pool.fetch(
            "SELECT po_key, line, sum(quantity) AS quantity FROM decision_invoice_matches "
            "WHERE tenant_id = $1 AND po_key = ANY($2::text[]) AND task_id <> $3 "
            "GROUP BY po_key, line",
            rows[0]["tenant_id"], [r["po_key"] for r in rows], this_task)
        by_order: dict[str, dict[int, float]] = {}
        for row in billed:
            by_order.setdefault(row["po_key"], {})[row["line"]] = row["quantity"]
        orders = []
        for row in rows:
            po = PurchaseOrder.FromString(self.codec.open(row["order_id"], row["body"],
                                                          PURCHASE_ORDER))
            orders.append(order_of(po, by_order.get(row["po_key"], {})))
        return orders

    async def by_number(self, tenant_id: str, po_number: str, task_id: str
                        ) -> tuple[Order | None, bool]:
        """The order an invoice quotes, with what other invoices matched of it, and whether
        the tenant's ERP published any order at all (an unknown number is news only from a
        tenant that does): one round trip when the order is not there."""
        rows = await self.pool.fetch(
            "SELECT o.order_id, o.tenant_id, o.po_key, o.body, EXISTS (SELECT 1 FROM "
            "decision_purchase_orders WHERE tenant_id = $1) AS publishes FROM (SELECT 1) one "
            "LEFT JOIN decision_purchase_orders o ON o.tenant_id = $1 AND o.po_key = $2",
            tenant_id, po_key(po_number))
        found = [row for row in rows if row["order_id"] is not None]
        orders = await self._orders(found, task_id)
        return (orders[0] if orders else None), bool(rows[0]["publishes"])

    async def open_orders(self, tenant_id: str, vendor: str, currency: str, task_id: str,
                          limit: int = 20) -> list[Order]:
        """The vendor's open orders in the currency (the newest ``limit``), for an invoice
        that quotes none."""
        vendor_hash = self.vendor_hash(tenant_id, vendor)
        if not vendor_hash:
            return []
        rows = await self.pool.fetch(
            "SELECT order_id, tenant_id, po_key, body FROM decision_purchase_orders "
            "WHERE tenant_id = $1 AND vendor_hash = $2 AND status = 'open' AND currency = $3 "
            "ORDER BY updated_at DESC LIMIT $4", tenant_id, vendor_hash, currency, limit)
        return await self._orders(rows, task_id)

    @staticmethod
    async def record(conn: asyncpg.Connection, tenant_id: str, task_id: str,
                     match: Match) -> None:
        """What a decided invoice billed of its order, in the decision's transaction (a
        redelivered task writes the same rows again: nothing changes)."""
        if not match.po_number or not match.lines:
            return
        key = po_key(match.po_number)
        await conn.executemany(
            "INSERT INTO decision_invoice_matches (task_id, tenant_id, po_key, line, quantity) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (task_id, po_key, line) DO NOTHING",
            [(uuid.UUID(task_id), tenant_id, key, m.order_line, m.quantity)
             for m in match.lines])

    async def forget(self, tenant_id: str, task_id: str) -> bool:
        """A person rejected the invoice: what it billed counts no more."""
        status = await self.pool.execute(
            "DELETE FROM decision_invoice_matches WHERE tenant_id = $1 AND task_id = $2",
            tenant_id, uuid.UUID(task_id))
        return status != "DELETE 0"


__all__ = ["MAX_RECORD_BYTES", "OrderBook", "order_id", "parse_record"]
