"""The ERP's purchasing (system ``erp``): purchase orders, the goods received against them,
and the change feed an upstream ERP writes to Kafka.

The invoice pack matches a supplier invoice against the order it bills (two- and three-way
match), so the demo ERP holds orders and goods receipts and publishes each order's new state
to the compacted ``purchase-orders`` topic the way an ERP's change-data capture would: key
``<tenant_id>/<po_number>``, value the order as proto3 JSON (``switchyard.v1.PurchaseOrder``,
``content-type: application/json``), a tombstone when the order is deleted. A write answers
only once its record is acknowledged by the broker, inside the database transaction that
stores it: the caller knows the state is on the topic, a write the broker refused stores
nothing (503, try again), and two writes of one order reach the topic in the order they were
stored.

Operator API (how a test or the demo seeds an ERP; JSON answers, 422 names every problem of a
body):

* ``PUT /_/erp/purchase_orders/{tenant_id}/{po_number}``: create or replace the order
  (``vendor``, ``vendor_bank_account``, ``currency``, ``lines``, ``status``); its goods
  receipts are kept (a line that has receipts cannot be dropped).
* ``POST /_/erp/purchase_orders/{tenant_id}/{po_number}/receipts``: post a goods receipt
  (``receipt_id``, ``line``, ``quantity``, ``received_at``); 200 with the order, without a
  change when the receipt was posted before (the same ``receipt_id``; 409 when with other
  values). 404: no such order; 422: no such line.
* ``GET`` / ``DELETE /_/erp/purchase_orders/{tenant_id}/{po_number}``: the order; delete it.
* ``DELETE /_/erp/purchase_orders``: every order (a tombstone each).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
import re
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiohttp import web
from google.protobuf.json_format import MessageToJson

from services.executor.downstream.hospital._common import (
    LEDGER,
    Refused,
    handled,
    json_response,
    read_json,
    text,
)
from switchyard import Settings
from switchyard.messaging import (
    CONTENT_TYPE_HEADER,
    JSON_MEDIA_TYPE,
    PURCHASE_ORDERS,
    producer_options,
)
from switchyard.v1 import GoodsReceipt, PurchaseOrder, PurchaseOrderLine, PurchaseOrderStatus
# the limits of switchyard.v1.PurchaseOrder, as the decision service's reader enforces them
from switchyard_packs.invoice.purchasing import MAX_LINES, MAX_RECEIPTS, MAX_TEXT_CHARS

log = logging.getLogger(__name__)

SYSTEM = "erp"
DDL = """
CREATE TABLE IF NOT EXISTS erp_purchase_orders (
    tenant_id   text        NOT NULL,
    po_number   text        NOT NULL,
    record      jsonb       NOT NULL,   -- the order as the operator API answers it
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, po_number)
);
"""
#: The largest order body read (500 long lines; the app's other routes take 64 KiB).
MAX_ORDER_BYTES = 512 * 1024
STATUSES = ("open", "closed", "cancelled")
ORDER_FIELDS = frozenset({"vendor", "vendor_bank_account", "currency", "lines", "status"})
LINE_FIELDS = frozenset({"line", "description", "quantity", "unit_price", "invoiced_quantity"})
RECEIPT_FIELDS = frozenset({"receipt_id", "line", "quantity", "received_at"})
#: How long a write waits for the broker (connecting included) before it answers 503.
PUBLISH_TIMEOUT_S = 10.0
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$")
_CURRENCY = re.compile(r"^[A-Za-z]{3}$")
_ACCOUNT = re.compile(r"^[A-Z0-9]{1,34}$")
_INT32_MAX = 2**31 - 1
_STATUS_ENUM = {"open": PurchaseOrderStatus.PURCHASE_ORDER_STATUS_OPEN,
                "closed": PurchaseOrderStatus.PURCHASE_ORDER_STATUS_CLOSED,
                "cancelled": PurchaseOrderStatus.PURCHASE_ORDER_STATUS_CANCELLED}


# -- the change feed ---------------------------------------------------------------------------

class PublishUnavailable(Exception):
    """The broker did not take the record in time (or cannot be reached): nothing is stored."""


class OrderPublisher:
    """The ERP's producer to the ``purchase-orders`` topic.

    It connects in the background when the downstream starts, so the downstream serves its
    other systems even without a broker; a write that finds no connection tries once more
    (bounded by ``timeout_s``) and otherwise fails with :class:`PublishUnavailable`, never
    hanging. Once connected, aiokafka reconnects by itself after a broker restart."""

    def __init__(self, settings: Settings, timeout_s: float = PUBLISH_TIMEOUT_S) -> None:
        self.settings = settings
        self.timeout_s = timeout_s
        self.topic = PURCHASE_ORDERS.full_name(settings)
        self._producer: Any = None
        self._problem = "not started"
        self._lock = asyncio.Lock()
        self._connecting: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start connecting; returns at once (see :meth:`wait_started`)."""
        self._connecting = asyncio.create_task(self._connect(), name="erp-publisher-connect")

    async def wait_started(self) -> bool:
        """Wait for the first connection attempt; whether the producer is connected."""
        if self._connecting is not None:
            await asyncio.shield(self._connecting)
        return self._producer is not None

    async def _connect(self) -> None:
        async with self._lock:
            if self._producer is not None:
                return
            from aiokafka import AIOKafkaProducer

            producer = AIOKafkaProducer(**producer_options(self.settings),
                                        request_timeout_ms=int(self.timeout_s * 1000))
            try:
                await asyncio.wait_for(producer.start(), self.timeout_s)
                self._producer = producer
            except Exception as exc:   # noqa: BLE001 - whatever the cause, say it
                self._problem = _describe(exc)
                log.warning("the ERP cannot publish purchase orders to %s at %s (%s); "
                            "its writes answer 503 until the broker is reachable",
                            self.topic, self.settings.kafka_bootstrap_servers, self._problem)
                return
            finally:
                if self._producer is not producer:   # failed or cancelled: close it
                    await _quietly_stop(producer)
            log.info("the ERP publishes purchase orders to %s", self.topic)

    async def publish(self, records: Sequence[tuple[str, bytes | None]]) -> None:
        """Write ``(key, value)`` records (value None: a tombstone) and wait until the broker
        has acknowledged every one; :class:`PublishUnavailable` after ``timeout_s``."""
        if self._producer is None:
            if self._connecting is not None and not self._connecting.done():
                await asyncio.shield(self._connecting)   # the attempt under way
            else:
                await self._connect()                    # the broker may be back
            if self._producer is None:
                raise PublishUnavailable(self._why())
        headers = [(CONTENT_TYPE_HEADER, JSON_MEDIA_TYPE.encode())]

        async def send_all() -> None:
            futures = [await self._producer.send(
                self.topic, key=key.encode(), value=value,
                headers=headers if value is not None else []) for key, value in records]
            await asyncio.gather(*futures)

        try:
            await asyncio.wait_for(send_all(), self.timeout_s)
        except Exception as exc:   # noqa: BLE001 - whatever the cause, say it
            self._problem = _describe(exc)
            raise PublishUnavailable(self._why()) from exc

    def _why(self) -> str:
        return (f"the purchase-orders topic ({self.topic} at "
                f"{self.settings.kafka_bootstrap_servers}) did not take the record within "
                f"{self.timeout_s:g}s ({self._problem}); nothing was stored, try again")

    async def stop(self) -> None:
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
            await asyncio.gather(self._connecting, return_exceptions=True)
        if self._producer is not None:
            await _quietly_stop(self._producer)
            self._producer = None


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def _quietly_stop(producer: Any) -> None:
    try:
        await asyncio.wait_for(producer.stop(), 10.0)
    except Exception:   # noqa: BLE001 - closing: nothing left to do about it
        log.debug("ERP producer did not stop cleanly", exc_info=True)


PUBLISHER = web.AppKey("erp_publisher", OrderPublisher)


def record_key(tenant_id: str, po_number: str) -> str:
    """The order's record key on the topic."""
    return f"{tenant_id}/{po_number}"


def _timestamp(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def order_message(order: dict[str, Any]) -> PurchaseOrder:
    """The stored order as ``switchyard.v1.PurchaseOrder``."""
    message = PurchaseOrder(
        tenant_id=order["tenant_id"], po_number=order["po_number"], vendor=order["vendor"],
        vendor_bank_account=order["vendor_bank_account"], currency=order["currency"],
        status=_STATUS_ENUM[order["status"]],  # type: ignore[arg-type]
        lines=[PurchaseOrderLine(line=ln["line"], description=ln["description"],
                                 quantity=ln["quantity"], unit_price=ln["unit_price"],
                                 invoiced_quantity=ln["invoiced_quantity"])
               for ln in order["lines"]])
    for receipt in order["receipts"]:
        entry = GoodsReceipt(receipt_id=receipt["receipt_id"], line=receipt["line"],
                             quantity=receipt["quantity"])
        entry.received_at.FromDatetime(_timestamp(receipt["received_at"]))
        message.receipts.append(entry)
    message.updated_at.FromDatetime(_timestamp(order["updated_at"]))
    return message


def order_value(order: dict[str, Any]) -> bytes:
    """The record value: the order as proto3 JSON (field names as in the .proto)."""
    return MessageToJson(order_message(order), preserving_proto_field_name=True,
                         indent=None).encode()


# -- validation --------------------------------------------------------------------------------

def _number(value: Any) -> float | None:
    """A finite JSON number (not a boolean); None otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
            value):
        return None
    return float(value)


def _whole(value: Any) -> int | None:
    """A whole number 1..2^31-1 (1.0 accepted); None otherwise."""
    number = _number(value)
    if number is None or not number.is_integer() or not 0 < number <= _INT32_MAX:
        return None
    return int(number)


def _unknown(body: dict[str, Any], known: frozenset[str], where: str) -> list[str]:
    return [f"{where}{name}: unknown field (known: {', '.join(sorted(known))})"
            for name in sorted(set(body) - known)]


def _refuse(problems: list[str]) -> Refused:
    return Refused(422, {"error": "; ".join(problems), "problems": problems})


def _path_ids(request: web.Request) -> tuple[str, str]:
    """The order's tenant and number from the path; 422 when either is not an id."""
    tenant_id, po_number = request.match_info["tenant_id"], request.match_info["po_number"]
    problems = [f"{name}: 1-128 letters, digits and . _ : - (starting with a letter or digit)"
                for name, value in (("tenant_id", tenant_id), ("po_number", po_number))
                if not _ID.match(value)]
    if problems:
        raise _refuse(problems)
    return tenant_id, po_number


def _order_line(index: int, raw: Any, problems: list[str]) -> dict[str, Any] | None:
    """One order line of a PUT body; None (and its problems added) when it is not valid."""
    where = f"lines[{index}]"
    if not isinstance(raw, dict):
        problems.append(f"{where}: an object with line, description, quantity, unit_price")
        return None
    found = _unknown(raw, LINE_FIELDS, f"{where}.")
    line, quantity = _whole(raw.get("line")), _number(raw.get("quantity"))
    unit_price = _number(raw.get("unit_price"))
    invoiced = _number(raw.get("invoiced_quantity") or 0)
    description = text(raw.get("description"))
    if line is None:
        found.append(f"{where}.line: a whole number > 0")
    if not description or len(description) > MAX_TEXT_CHARS:
        found.append(f"{where}.description: required (what was ordered), at most "
                     f"{MAX_TEXT_CHARS} characters")
    if quantity is None or quantity <= 0:
        found.append(f"{where}.quantity: a number > 0")
    if unit_price is None or unit_price < 0:
        found.append(f"{where}.unit_price: a number >= 0")
    if invoiced is None or invoiced < 0:
        found.append(f"{where}.invoiced_quantity: a number >= 0")
    problems += found
    if found:
        return None
    return {"line": line, "description": description, "quantity": quantity,
            "unit_price": unit_price, "invoiced_quantity": invoiced}


def _order_lines(raw: Any, problems: list[str]) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_LINES:
        problems.append(f"lines: required, a list of 1 to {MAX_LINES} order lines"
                        + (f" (got {len(raw)})" if isinstance(raw, list) else ""))
        return []
    lines = [_order_line(index, item, problems) for index, item in enumerate(raw)]
    first: dict[int, int] = {}
    for index, item in enumerate(raw):
        number = _whole(item.get("line")) if isinstance(item, dict) else None
        if number is None:
            continue
        if number in first:
            problems.append(f"lines[{index}].line: line {number} is also lines[{first[number]}]"
                            " (line numbers are unique within an order)")
        else:
            first[number] = index
    return [ln for ln in lines if ln is not None]


def order_record(tenant_id: str, po_number: str, body: Any,
                 receipts: list[dict[str, Any]]) -> dict[str, Any]:
    """The order a PUT body describes, with the receipts it keeps; :class:`Refused` (422)
    naming every problem. Plain: a unit test can show each rule."""
    if not isinstance(body, dict):
        raise _refuse(["the body: a JSON object with vendor, currency and lines"])
    problems = _unknown(body, ORDER_FIELDS, "")
    vendor = text(body.get("vendor"))
    if not vendor:
        problems.append("vendor: required (the supplier's name on the vendor master)")
    currency = body.get("currency")
    if not isinstance(currency, str) or not _CURRENCY.match(currency.strip()):
        problems.append("currency: required, an ISO 4217 code (3 letters)")
    account = "".join(text(body.get("vendor_bank_account")).split()).upper()
    if body.get("vendor_bank_account") not in (None, "") and not _ACCOUNT.match(account):
        problems.append("vendor_bank_account: letters and digits, at most 34 (an IBAN; "
                        "spaces ignored)")
    status = body.get("status", "open")
    if status not in STATUSES:
        problems.append(f"status: one of {', '.join(STATUSES)}")
    lines = _order_lines(body.get("lines"), problems)
    numbers = {ln["line"] for ln in lines}
    orphaned = sorted({r["line"] for r in receipts} - numbers)
    if lines and orphaned:
        problems.append(f"lines: line(s) {', '.join(map(str, orphaned))} have goods receipts "
                        "and cannot be removed from the order")
    if problems:
        raise _refuse(problems)
    return {"tenant_id": tenant_id, "po_number": po_number, "vendor": vendor,
            "vendor_bank_account": account, "currency": currency.strip().upper(),
            "status": status, "lines": lines, "receipts": receipts}


def receipt_record(body: Any, order: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The goods receipt a POST body describes, against ``order``; :class:`Refused` (422)
    naming every problem."""
    if not isinstance(body, dict):
        raise _refuse(["the body: a JSON object with receipt_id, line and quantity"])
    problems = _unknown(body, RECEIPT_FIELDS, "")
    receipt_id = text(body.get("receipt_id"))
    if not receipt_id or len(receipt_id) > 128:
        problems.append("receipt_id: required (the receipt's number, at most 128 characters)")
    line, quantity = _whole(body.get("line")), _number(body.get("quantity"))
    if line is None:
        problems.append("line: a whole number > 0 (the order line received against)")
    elif line not in {ln["line"] for ln in order["lines"]}:
        problems.append(f"line: order {order['po_number']} has no line {line}")
    if quantity is None or quantity <= 0:
        problems.append("quantity: a number > 0")
    received_at = now
    if body.get("received_at") not in (None, ""):
        try:
            received_at = _timestamp(str(body["received_at"]).strip())
        except ValueError:
            problems.append("received_at: an ISO 8601 date or date and time")
    if problems:
        raise _refuse(problems)
    return {"receipt_id": receipt_id, "line": line, "quantity": quantity,
            "received_at": received_at.isoformat()}


# -- storage -----------------------------------------------------------------------------------

async def _locked_order(conn: asyncpg.Connection, tenant_id: str,
                        po_number: str) -> dict[str, Any] | None:
    """The stored order, with the order's lock held to the end of the transaction (so its
    writes are stored and published one at a time); None when there is none."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))",
                       "erp-po:" + record_key(tenant_id, po_number))
    row = await conn.fetchrow("SELECT record FROM erp_purchase_orders WHERE tenant_id = $1 "
                              "AND po_number = $2", tenant_id, po_number)
    return json.loads(row["record"]) if row is not None else None


async def _store_and_publish(request: web.Request, conn: asyncpg.Connection,
                             order: dict[str, Any]) -> dict[str, Any]:
    """Store the order's new state and put it on the topic (in the caller's transaction: a
    record the broker does not take rolls the write back)."""
    now = datetime.now(UTC)
    order = {**order, "updated_at": now.isoformat()}
    await conn.execute(
        "INSERT INTO erp_purchase_orders (tenant_id, po_number, record, updated_at) "
        "VALUES ($1, $2, $3::jsonb, $4) ON CONFLICT (tenant_id, po_number) DO UPDATE SET "
        "record = EXCLUDED.record, updated_at = EXCLUDED.updated_at",
        order["tenant_id"], order["po_number"], json.dumps(order), now)
    await request.app[PUBLISHER].publish([(record_key(order["tenant_id"], order["po_number"]),
                                           order_value(order))])
    return order


Handler = Callable[[web.Request], Awaitable[web.Response]]


def _published(handler: Handler) -> Handler:
    """A write's handler that answers a record the broker did not take with 503 and why
    (the write rolled back), and a :class:`Refused` with its answer."""
    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.Response:
        try:
            return await handler(request)
        except PublishUnavailable as exc:
            return json_response({"error": str(exc)}, status=503)
    return handled(wrapper)


# -- handlers ----------------------------------------------------------------------------------

@_published
async def put_order(request: web.Request) -> web.Response:
    """Create or replace an order; its goods receipts are kept."""
    tenant_id, po_number = _path_ids(request)
    body = await read_json(request.clone(client_max_size=MAX_ORDER_BYTES))
    async with request.app[LEDGER].pool.acquire() as conn, conn.transaction():
        existing = await _locked_order(conn, tenant_id, po_number)
        order = order_record(tenant_id, po_number, body,
                             existing["receipts"] if existing else [])
        return json_response(await _store_and_publish(request, conn, order))


@_published
async def post_receipt(request: web.Request) -> web.Response:
    """Post a goods receipt against an order line (once per receipt id)."""
    tenant_id, po_number = _path_ids(request)
    body = await read_json(request)
    async with request.app[LEDGER].pool.acquire() as conn, conn.transaction():
        order = await _locked_order(conn, tenant_id, po_number)
        if order is None:
            raise Refused(404, {"error": f"no purchase order {po_number!r} for tenant "
                                         f"{tenant_id!r}"})
        receipt = receipt_record(body, order, datetime.now(UTC))
        earlier = next((r for r in order["receipts"]
                        if r["receipt_id"] == receipt["receipt_id"]), None)
        if earlier is not None:
            if (earlier["line"], earlier["quantity"]) != (receipt["line"],
                                                          receipt["quantity"]):
                raise Refused(409, {"error": f"receipt {receipt['receipt_id']!r} was posted "
                                             f"before for line {earlier['line']}, quantity "
                                             f"{earlier['quantity']:g}"})
            return json_response(order)   # the same receipt again: no change
        if len(order["receipts"]) >= MAX_RECEIPTS:
            raise _refuse([f"receipts: an order holds at most {MAX_RECEIPTS}"])
        order["receipts"] = [*order["receipts"], receipt]
        return json_response(await _store_and_publish(request, conn, order))


@handled
async def get_order(request: web.Request) -> web.Response:
    tenant_id, po_number = _path_ids(request)
    row = await request.app[LEDGER].pool.fetchrow(
        "SELECT record FROM erp_purchase_orders WHERE tenant_id = $1 AND po_number = $2",
        tenant_id, po_number)
    if row is None:
        raise Refused(404, {"error": f"no purchase order {po_number!r} for tenant "
                                     f"{tenant_id!r}"})
    return json_response(json.loads(row["record"]))


@_published
async def delete_order(request: web.Request) -> web.Response:
    """Delete an order: a tombstone on the topic."""
    tenant_id, po_number = _path_ids(request)
    async with request.app[LEDGER].pool.acquire() as conn, conn.transaction():
        if await _locked_order(conn, tenant_id, po_number) is None:
            raise Refused(404, {"error": f"no purchase order {po_number!r} for tenant "
                                         f"{tenant_id!r}"})
        await conn.execute("DELETE FROM erp_purchase_orders WHERE tenant_id = $1 AND "
                           "po_number = $2", tenant_id, po_number)
        await request.app[PUBLISHER].publish([(record_key(tenant_id, po_number), None)])
    return json_response({"deleted": 1})


@_published
async def delete_orders(request: web.Request) -> web.Response:
    """Delete every order (of every tenant): a tombstone each."""
    async with request.app[LEDGER].pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch("DELETE FROM erp_purchase_orders RETURNING tenant_id, "
                                "po_number")
        if rows:
            await request.app[PUBLISHER].publish(
                [(record_key(r["tenant_id"], r["po_number"]), None) for r in rows])
    return json_response({"deleted": len(rows)})


def add_routes(app: web.Application, publisher: OrderPublisher) -> None:
    app[PUBLISHER] = publisher
    base = "/_/erp/purchase_orders"
    app.router.add_put(base + "/{tenant_id}/{po_number}", put_order)
    app.router.add_get(base + "/{tenant_id}/{po_number}", get_order)
    app.router.add_delete(base + "/{tenant_id}/{po_number}", delete_order)
    app.router.add_post(base + "/{tenant_id}/{po_number}/receipts", post_receipt)
    app.router.add_delete(base, delete_orders)


__all__ = ["DDL", "PUBLISHER", "STATUSES", "SYSTEM",
           "OrderPublisher", "PublishUnavailable", "add_routes", "order_message",
           "order_record", "order_value", "receipt_record", "record_key"]
