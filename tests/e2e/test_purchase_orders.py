"""Touchless invoices from the first day: invoices matched to the ERP's purchase orders.

End to end on the four service processes and the demo downstream (real broker, PostgreSQL and
Triton): the demo ERP is given a purchase order and its goods receipts through its operator
API and publishes them on the ``purchase-orders`` topic, as an ERP would; the decision service
keeps them; invoices of a vendor the tenant has never paid are then submitted:

- one that bills what was received, at the ordered prices, in the supplier's own words, runs
  straight through (``purchase_order_matched``, three-way) and is posted to the ERP, its lines
  paired through the text encoder's embeddings on Triton;
- the same goods billed again under another number, a unit price above the tolerance, an
  unknown order number: each goes to a person with the difference named;
- one that quotes no order is matched by vendor and amount to the vendor's other order;
- a record on the topic that is not an order is dead-lettered with its reason.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from switchyard import Settings
from switchyard.messaging import PURCHASE_ORDERS
from switchyard.v1 import (
    Document,
    GetTaskRequest,
    IngestServiceStub,
    ListQueueRequest,
    ReviewServiceStub,
    Submission,
    SubmitTaskRequest,
    Task,
    TaskStatus,
)
from tests.observed import dead_letters, metric_sum
from tests.polling import eventually

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("pipeline")]
TENANT = "purchasing"
VENDOR = "Larkspur Lab Supplies GmbH"
IBAN = "DE89 3704 0044 0532 0130 00"
RECEIVED = {"received_date": "2026-11-22"}
#: The buyer's words on the order; the supplier's invoices describe the same goods their way.
ORDER = {
    "vendor": VENDOR, "vendor_bank_account": IBAN.replace(" ", ""), "currency": "EUR",
    "lines": [
        {"line": 1, "description": "Nitrile examination gloves, size M, box of 100",
         "quantity": 20, "unit_price": 7.90},
        {"line": 2, "description": "Pipette tips 200 µl, racked, sterile", "quantity": 10,
         "unit_price": 34.00},
        {"line": 3, "description": "Laboratory centrifuge tubes 50 ml (pack of 25)",
         "quantity": 8, "unit_price": 12.50},
    ],
}
SECOND_ORDER = {
    "vendor": VENDOR, "vendor_bank_account": IBAN.replace(" ", ""), "currency": "EUR",
    "lines": [{"line": 1, "description": "Safety goggles, anti-fog, EN 166",
               "quantity": 12, "unit_price": 9.25}],
}


def invoice(number: str, lines: list[tuple[str, int, float]], po: str | None) -> str:
    """An invoice as this supplier writes one: aligned columns, German VAT."""
    rows = [f"{desc:<46}{qty:>5}{price:>12.2f}{qty * price:>12.2f}"
            for desc, qty, price in lines]
    net = round(sum(qty * price for _, qty, price in lines), 2)
    vat = round(net * 0.19, 2)
    return "\n".join([
        VENDOR, "Industriestrasse 7, 69115 Heidelberg", "",
        "INVOICE", "",
        f"Invoice Number: {number}", "Invoice Date: 2026-11-20", "Due Date: 2026-12-20",
        *([f"Your order ref.: {po}"] if po else []), "",
        f"{'Description':<46}{'Qty':>5}{'Unit price':>12}{'Amount':>12}", *rows, "",
        f"Subtotal: EUR {net:,.2f}", f"VAT 19%: EUR {vat:,.2f}",
        f"Total: EUR {net + vat:,.2f}", "", f"IBAN: {IBAN}"])


RECEIVED_GOODS = [("Examination gloves nitrile, medium (100 pcs)", 20, 7.90),
                  ("Sterile racked pipette tips, 200ul", 6, 34.00)]


async def discrepancies(review: ReviewServiceStub, task_id: str) -> list[tuple[str, str]]:
    """(field, source) of each discrepancy the task's review item shows the reviewer."""
    async def probe() -> list[tuple[str, str]] | None:
        items = (await review.ListQueue(ListQueueRequest(tenant_id=TENANT,
                                                         page_size=100))).items
        found = next((i for i in items if i.escalation.task_id == task_id), None)
        return None if found is None else [(d.field, d.source)
                                           for d in found.escalation.discrepancies]
    return await eventually(probe, timeout_s=60, what=f"review item of {task_id}")


@pytest.fixture
async def erp(settings: Settings) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(f"http://127.0.0.1:{settings.downstream_http_port}") as http:
        yield http


async def put_order(erp: aiohttp.ClientSession, po: str, order: dict[str, object]) -> None:
    async with erp.put(f"/_/erp/purchase_orders/{TENANT}/{po}", json=order) as answer:
        assert answer.status == 200, await answer.text()


async def receive(erp: aiohttp.ClientSession, po: str, receipt: str, line: int,
                  quantity: float) -> None:
    async with erp.post(f"/_/erp/purchase_orders/{TENANT}/{po}/receipts", json={
            "receipt_id": receipt, "line": line, "quantity": quantity}) as answer:
        assert answer.status == 200, await answer.text()


async def kept(db: asyncpg.Connection, po: str, status: str = "open") -> None:
    """Wait until the decision service has the order (it learns it from the topic)."""
    async def probe() -> bool:
        return await db.fetchval("SELECT status FROM decision_purchase_orders "
                                 "WHERE tenant_id = $1 AND po_key = $2", TENANT, po) == status
    await eventually(probe, timeout_s=60, what=f"order {po} kept by the decision service")


async def submit(ingest: IngestServiceStub, text: str) -> str:
    return (await ingest.SubmitTask(SubmitTaskRequest(submission=Submission(
        tenant_id=TENANT, idempotency_key=uuid.uuid4().hex, kind="invoice", metadata=RECEIVED,
        document=Document(content_type="text/plain", body=text.encode()))))).task_id


async def settled(ingest: IngestServiceStub, task_id: str) -> Task:
    """The task once it succeeded or waits for a person."""
    async def probe() -> Task | None:
        task = (await ingest.GetTask(GetTaskRequest(task_id=task_id))).task
        return task if task.status in (TaskStatus.TASK_STATUS_SUCCEEDED,
                                       TaskStatus.TASK_STATUS_BLOCKED,
                                       TaskStatus.TASK_STATUS_FAILED) else None
    return await eventually(probe, timeout_s=120, what=f"task {task_id} settled")


async def decided(ingest: IngestServiceStub, db: asyncpg.Connection, text: str
                  ) -> tuple[str, int, str, str]:
    """Submit an invoice; its task id, status once settled, and the rule and explanation the
    decision service stored."""
    task_id = await submit(ingest, text)
    task = await settled(ingest, task_id)
    row = await db.fetchrow("SELECT rule, explanation FROM decisions WHERE task_id = $1 "
                            "AND source = 'MODEL'", uuid.UUID(task_id))
    return task_id, task.status, row["rule"], row["explanation"]


PAID = TaskStatus.TASK_STATUS_SUCCEEDED
TO_A_PERSON = TaskStatus.TASK_STATUS_BLOCKED


async def test_invoices_are_matched_to_the_erps_purchase_orders(
        settings: Settings, ingest: IngestServiceStub, review: ReviewServiceStub,
        db: asyncpg.Connection, erp: aiohttp.ClientSession) -> None:
    po, other = f"PO-{uuid.uuid4().hex[:6].upper()}", f"PO-{uuid.uuid4().hex[:6].upper()}"
    await put_order(erp, po, ORDER)
    await receive(erp, po, "GR-1", 1, 20)
    await receive(erp, po, "GR-2", 2, 6)    # 6 of the 10 pipette tip racks arrived so far
    await receive(erp, po, "GR-3", 3, 8)
    await put_order(erp, other, SECOND_ORDER)
    await receive(erp, other, "GR-4", 1, 12)
    await kept(db, po)
    await kept(db, other)
    encoded = metric_sum(settings.decision_metrics_port, "switchyard_invoice_po_matches_total",
                         'similarity="encoder"')

    # what was received, at the ordered prices, in the supplier's words: straight through
    clean, status, rule, explanation = await decided(ingest, db, invoice("LLS-1001",
                                                                        RECEIVED_GOODS, po))
    assert (status, rule) == (PAID, "purchase_order_matched"), explanation
    assert f"matches purchase order {po}" in explanation and "three-way" in explanation
    assert VENDOR not in explanation
    async with erp.get(f"/erp/invoices/{clean}:1-post_invoice") as posted:   # it was posted
        assert posted.status == 200, await posted.text()
    # its lines were paired through the text encoder on Triton
    assert metric_sum(settings.decision_metrics_port, "switchyard_invoice_po_matches_total",
                      'similarity="encoder"') > encoded

    # the same goods billed again under another number; the tubes 11% above the order's
    # price; an order number the ERP never issued
    cases = {
        "quantity": invoice("LLS-1002", RECEIVED_GOODS, po),
        "unit_price": invoice("LLS-1003", [("Falcon tubes 50ml, 25/pack", 8, 13.90)], po),
        "po_number": invoice("LLS-1004", RECEIVED_GOODS, "PO-999999"),
    }
    for field, text in cases.items():
        task_id, status, rule, explanation = await decided(ingest, db, text)
        assert (status, rule) == (TO_A_PERSON, "purchase_order_mismatch"), (field, explanation)
        assert f"{field}:" in explanation, (field, explanation)
        assert IBAN.replace(" ", "") not in explanation and VENDOR not in explanation
        # the reviewer sees each difference field by field, with the order it is against
        shown = await discrepancies(review, task_id)
        assert (field, f"purchase order {'PO-999999' if field == 'po_number' else po}") \
            in shown, shown

    # goods billed already, no order quoted: the order they were billed on, for a person
    _, status, rule, explanation = await decided(ingest, db, invoice("LLS-1006", RECEIVED_GOODS,
                                                                     None))
    assert (status, rule) == (TO_A_PERSON, "purchase_order_mismatch"), explanation
    assert f"does not match purchase order {po}" in explanation and "quantity:" in explanation

    # no order quoted: the vendor's open order it fits, by vendor and amount
    _, status, rule, explanation = await decided(ingest, db, invoice(
        "LLS-1005", [("Anti-fog safety goggles (EN166)", 12, 9.25)], None))
    assert (status, rule) == (PAID, "purchase_order_matched"), explanation
    assert f"matches purchase order {other} (found by vendor and amount)" in explanation


async def test_a_record_that_is_no_purchase_order_is_dead_lettered(settings: Settings) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    key = f"{TENANT}/PO-BROKEN-{uuid.uuid4().hex[:6]}".encode()
    try:
        await producer.send_and_wait(
            PURCHASE_ORDERS.full_name(settings),
            json.dumps({"tenant_id": TENANT, "po_number": key.decode().split("/")[1],
                        "vendor": VENDOR, "currency": "euro", "lines": []}).encode(),
            key=key, headers=[("content-type", b"application/json")])
    finally:
        await producer.stop()
    letters = await dead_letters(settings, {key})
    letter = letters[key]
    assert letter.reason_code == "schema_violation"
    assert "currency must be an ISO 4217 code" in letter.reason
    assert "lines: at least one line is required" in letter.reason
    assert letter.service == "decision"
