"""The demo downstream's ERP purchasing against the real process, PostgreSQL and broker.

What the invoice pack's matching relies on: an order and its goods receipts are stored as the
operator API was told, a receipt posted twice counts once, replacing an order keeps what was
received, and every change is on the compacted ``purchase-orders`` topic (key
``<tenant>/<po>``, the order as proto3 JSON) before the write answers, a deletion as a
tombstone. A body the ERP cannot take is refused with each problem named; without a broker a
write answers 503 at once and stores nothing.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer
from google.protobuf.json_format import Parse
from hypothesis import given
from hypothesis import strategies as st

from services.executor.downstream.faults import FaultBoard
from services.executor.downstream.http_app import build_app
from services.executor.downstream.hospital._common import Refused
from services.executor.downstream.purchasing import OrderPublisher, order_message, order_record
from services.executor.downstream.store import Ledger
from switchyard import Settings
from switchyard.messaging import PURCHASE_ORDERS
from switchyard.stack import free_port
from switchyard.storage import resolve_dsn
from switchyard.v1 import PurchaseOrder, PurchaseOrderStatus
from switchyard_packs.invoice.purchasing import check_order
from tests.executor.harness import Harness
from tests.executor.test_hospital_downstream import call
from tests.ingest.helpers import read_topic

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("downstream")]
BASE = "/_/erp/purchase_orders"
ORDER = {"vendor": "Paperline Office Supplies Ltd",
         "vendor_bank_account": "GB82 WEST 1234 5698 7654 32", "currency": "gbp",
         "lines": [{"line": 1, "description": "A4 copy paper 80gsm, box of 5 reams",
                    "quantity": 10, "unit_price": 24.9},
                   {"line": 2, "description": "Stapler, full strip, black", "quantity": 4,
                    "unit_price": 11.5}]}


def tenant() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


def value_of(record: Any) -> PurchaseOrder:
    """A record's order, read the way the decision service reads it (proto3 JSON)."""
    assert dict(record.headers)["content-type"] == b"application/json"
    return Parse(record.value, PurchaseOrder())


async def records_for(settings: Settings, keys: set[str], count: int) -> list[Any]:
    """This test's records on the topic (by key, in topic order), once ``count`` are there."""
    wanted = {k.encode() for k in keys}

    def mine(records: list[Any]) -> list[Any]:
        return [r for r in records if r.key in wanted]

    return mine(await read_topic(settings, PURCHASE_ORDERS,
                                 lambda records: len(mine(records)) >= count, timeout_s=30))


async def test_an_order_its_receipts_and_its_deletion_are_on_the_topic(
        harness: Harness, exec_settings: Settings) -> None:
    who, po = tenant(), "4500012345"
    path = f"{BASE}/{who}/{po}"
    status, stored, _ = await call(harness, "PUT", path, ORDER)
    assert status == 200, stored
    assert (stored["tenant_id"], stored["po_number"], stored["currency"], stored["status"]) \
        == (who, po, "GBP", "open")
    assert stored["vendor_bank_account"] == "GB82WEST12345698765432"
    assert stored["receipts"] == [] and [ln["line"] for ln in stored["lines"]] == [1, 2]
    assert await call(harness, "GET", path) == (200, stored, False)

    receipt = {"receipt_id": "GR-1", "line": 1, "quantity": 10,
               "received_at": "2026-11-03T09:30:00+00:00"}
    status, received, _ = await call(harness, "POST", f"{path}/receipts", receipt)
    assert status == 200 and received["receipts"] == [{**receipt, "quantity": 10.0}]
    # the same receipt again: no change (not even its time); other values under its id: 409
    assert await call(harness, "POST", f"{path}/receipts", receipt) == (200, received, False)
    assert (await call(harness, "POST", f"{path}/receipts", {**receipt, "quantity": 9}))[0] \
        == 409
    status, partial, _ = await call(harness, "POST", f"{path}/receipts",
                                    {"receipt_id": "GR-2", "line": 2, "quantity": 3})
    assert status == 200 and len(partial["receipts"]) == 2   # received_at: now
    status, answer, _ = await call(harness, "POST", f"{path}/receipts",
                                   {"receipt_id": "GR-3", "line": 9, "quantity": 1})
    assert status == 422 and "line: order 4500012345 has no line 9" in answer["error"]
    assert (await call(harness, "POST", f"{BASE}/{who}/4500099999/receipts", receipt))[0] == 404

    # replaced (a price agreed again, closed): the receipts stay; a received line cannot go
    replaced = {**ORDER, "status": "closed",
                "lines": [ORDER["lines"][0], {**ORDER["lines"][1], "unit_price": 10.75}]}
    status, again, _ = await call(harness, "PUT", path, replaced)
    assert status == 200 and again["receipts"] == partial["receipts"]
    assert again["lines"][1]["unit_price"] == 10.75 and again["status"] == "closed"
    status, answer, _ = await call(harness, "PUT", path, {**ORDER, "lines": ORDER["lines"][:1]})
    assert status == 422 and "line(s) 2 have goods receipts" in answer["error"]

    assert await call(harness, "DELETE", path) == (200, {"deleted": 1}, False)
    assert (await call(harness, "GET", path))[0] == 404
    assert (await call(harness, "DELETE", path))[0] == 404

    # on the topic, in order: created, two receipts, replaced, deleted (nothing for the
    # replay, the refusals or the conflict)
    records = await records_for(exec_settings, {f"{who}/{po}"}, 5)
    assert len(records) == 5 and records[-1].value is None
    orders = [value_of(r) for r in records[:-1]]
    assert [len(o.receipts) for o in orders] == [0, 1, 2, 2]
    last = orders[-1]
    assert (last.tenant_id, last.po_number, last.vendor, last.currency) == (
        who, po, ORDER["vendor"], "GBP")
    assert last.vendor_bank_account == "GB82WEST12345698765432"
    assert last.status == PurchaseOrderStatus.PURCHASE_ORDER_STATUS_CLOSED
    assert [(ln.line, ln.description, ln.quantity, ln.unit_price) for ln in last.lines] == [
        (1, "A4 copy paper 80gsm, box of 5 reams", 10, 24.9),
        (2, "Stapler, full strip, black", 4, 10.75)]
    first_receipt = last.receipts[0]
    assert (first_receipt.receipt_id, first_receipt.line, first_receipt.quantity) == (
        "GR-1", 1, 10)
    assert first_receipt.received_at.ToJsonString() == "2026-11-03T09:30:00Z"
    assert last.updated_at.ToJsonString() == again["updated_at"].replace("+00:00", "Z")


async def test_deleting_every_order_leaves_a_tombstone_each(harness: Harness,
                                                            exec_settings: Settings) -> None:
    who = tenant()
    for po in ("PO-1", "PO-2"):
        assert (await call(harness, "PUT", f"{BASE}/{who}/{po}", ORDER))[0] == 200
    status, answer, _ = await call(harness, "DELETE", BASE)
    assert status == 200 and answer["deleted"] >= 2
    assert (await call(harness, "GET", f"{BASE}/{who}/PO-1"))[0] == 404
    records = await records_for(exec_settings, {f"{who}/PO-1", f"{who}/PO-2"}, 4)
    last = {r.key: r.value for r in records}
    assert last == {f"{who}/PO-1".encode(): None, f"{who}/PO-2".encode(): None}


def line(**changes: Any) -> dict[str, Any]:
    return {"line": 1, "description": "Toner cartridge HP 305A", "quantity": 2,
            "unit_price": 62.5, **changes}


BAD_ORDERS: list[tuple[Any, str]] = [
    ({**ORDER, "colour": "red"}, "colour: unknown field"),
    ({k: v for k, v in ORDER.items() if k != "vendor"}, "vendor: required"),
    ({k: v for k, v in ORDER.items() if k != "currency"}, "currency: required"),
    ({**ORDER, "currency": "EURO"}, "currency: required, an ISO 4217 code"),
    ({k: v for k, v in ORDER.items() if k != "lines"}, "lines: required"),
    ({**ORDER, "lines": []}, "lines: required"),
    ({**ORDER, "lines": [line()] * 2}, "lines[1].line: line 1 is also lines[0]"),
    ({**ORDER, "lines": [line(line=0)]}, "lines[0].line: a whole number > 0"),
    ({**ORDER, "lines": [line(quantity=0)]}, "lines[0].quantity: a number > 0"),
    ({**ORDER, "lines": [line(unit_price=-0.01)]}, "lines[0].unit_price: a number >= 0"),
    ({**ORDER, "lines": [line(unit_price="12")]}, "lines[0].unit_price: a number >= 0"),
    ({**ORDER, "lines": [line(description=" ")]}, "lines[0].description: required"),
    ({**ORDER, "lines": [line(sku="HP305A")]}, "lines[0].sku: unknown field"),
    ({**ORDER, "lines": [line(line=n) for n in range(1, 502)]},
     "lines: required, a list of 1 to 500 order lines (got 501)"),
    ({**ORDER, "status": "paid"}, "status: one of open, closed, cancelled"),
    ({**ORDER, "vendor_bank_account": "GB82-WEST"}, "vendor_bank_account: letters and digits"),
    (["not", "an", "object"], "the body: a JSON object"),
]


async def test_each_problem_of_a_body_is_named(harness: Harness) -> None:
    who = tenant()
    path = f"{BASE}/{who}/PO-9"
    for body, problem in BAD_ORDERS:
        status, answer, _ = await call(harness, "PUT", path, body)
        assert status == 422 and problem in answer["error"], (problem, answer)
        assert problem in " ".join(answer["problems"])
    # all of them at once, each named
    status, answer, _ = await call(harness, "PUT", path, {"lines": [line(quantity=-1)],
                                                          "x": 1})
    assert status == 422 and {p.split(":")[0] for p in answer["problems"]} == {
        "x", "vendor", "currency", "lines[0].quantity"}
    assert (await call(harness, "GET", path))[0] == 404    # none of them stored anything
    assert (await call(harness, "PUT", f"{BASE}/{who}/bad%20po", ORDER))[1]["problems"] == [
        "po_number: 1-128 letters, digits and . _ : - (starting with a letter or digit)"]
    big = {**ORDER, "lines": [line(line=n, description=f"Item {n} " + "x" * 100)
                              for n in range(1, 501)]}
    assert (await call(harness, "PUT", path, big))[0] == 200   # 500 lines, about 70 KB

    for body, problem in [({"line": 1, "quantity": 1}, "receipt_id: required"),
                          ({"receipt_id": "R", "line": 1, "quantity": 0}, "quantity: a number > 0"),
                          ({"receipt_id": "R", "line": "one", "quantity": 1}, "line: a whole"),
                          ({"receipt_id": "R", "line": 1, "quantity": 1, "received_at": "soon"},
                           "received_at: an ISO 8601 date"),
                          ({"receipt_id": "R", "line": 1, "quantity": 1, "by": "me"},
                           "by: unknown field")]:
        status, answer, _ = await call(harness, "POST", f"{path}/receipts", body)
        assert status == 422 and problem in answer["error"], (problem, answer)


async def test_without_a_broker_a_write_answers_503_and_stores_nothing(
        harness: Harness, exec_settings: Settings) -> None:
    """The ERP's app in this process, on the downstream's schema, with a broker address where
    nothing listens: the downstream still starts, and a write says why it failed, quickly."""
    nowhere = exec_settings.replace(kafka_bootstrap_servers=f"127.0.0.1:{free_port()}")
    publisher = OrderPublisher(nowhere, timeout_s=3.0)
    await publisher.start()
    assert await publisher.wait_started() is False
    pool = await asyncpg.create_pool(resolve_dsn(exec_settings), min_size=1, max_size=2,
                                     server_settings={"search_path": harness.downstream_schema})
    assert pool is not None
    client = TestClient(TestServer(build_app(Ledger(pool), FaultBoard(), publisher)))
    await client.start_server()
    try:
        path = f"{BASE}/{tenant()}/PO-503"
        started = time.monotonic()
        response = await client.put(path, json=ORDER)
        answer = await response.json()
        assert response.status == 503 and time.monotonic() - started < 10
        assert "purchase-orders" in answer["error"] and "nothing was stored" in answer["error"]
        assert (await client.get(path)).status == 404
        assert (await client.get("/_/health")).status == 200   # the rest serves on
    finally:
        await client.close()
        await publisher.stop()
        await pool.close()


async def test_the_demo_seeds_its_orders_and_a_second_run_replaces_them(
        harness: Harness) -> None:
    """``switchyard demo``'s seeding over the operator API: every order of the workload with
    its receipts; a second run (another batch of numbers) leaves only its own orders."""
    from switchyard.demo import seed_purchasing
    from switchyard_packs.invoice.samples import workload

    assert harness.http is not None
    first, second = workload(8, 5), workload(8, 5, batch=1)
    await seed_purchasing(harness.http, first)
    for order in first.orders:
        status, stored, _ = await call(harness, "GET", order.path)
        assert status == 200 and len(stored["receipts"]) == len(order.receipts)
        assert [ln["description"] for ln in stored["lines"]] == [
            ln["description"] for ln in order.body["lines"]]
    await seed_purchasing(harness.http, second)
    assert (await call(harness, "GET", first.orders[0].path))[0] == 404
    assert {(await call(harness, "GET", o.path))[0] for o in second.orders} == {200}


_JSON = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                               max_size=5),
    max_leaves=20)
_ORDERISH = st.fixed_dictionaries({}, optional={
    "vendor": _JSON | st.text(max_size=30), "currency": _JSON | st.sampled_from(["EUR", "usd"]),
    "vendor_bank_account": _JSON, "status": _JSON | st.sampled_from(["open", "closed"]),
    "lines": st.lists(st.fixed_dictionaries({}, optional={
        "line": _JSON | st.integers(-2, 3), "description": _JSON | st.text(max_size=20),
        "quantity": _JSON | st.floats(-1, 5), "unit_price": _JSON | st.floats(-1, 5),
        "invoiced_quantity": _JSON}), max_size=4) | _JSON})


@given(_ORDERISH | _JSON)
def test_any_order_body_is_stored_as_a_valid_order_or_refused_with_its_problems(
        body: Any) -> None:
    """Fuzz of the operator API's order body: a body either becomes an order the topic's
    reader accepts (``switchyard_packs.invoice.purchasing.check_order``) or is refused (422)
    naming at least one problem; nothing else escapes."""
    try:
        record = order_record("acme", "PO-1", body, [])
    except Refused as refused:
        assert refused.status == 422 and refused.answer["problems"]
        return
    record = {**record, "updated_at": "2026-12-01T00:00:00+00:00"}
    assert check_order(order_message(record)) == []
