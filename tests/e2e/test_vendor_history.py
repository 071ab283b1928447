"""Vendor history cannot be poisoned: it learns only what a person or a payment confirmed.

The attack, end to end on the four service processes: a fraudster sends the first invoice of
a vendor the tenant has never paid, with the fraudster's bank account. It is escalated and a
person rejects it. The vendor's real invoice, with the legitimate account, must then not be
treated as a bank change against the fraudulent one; once a person approves it and it is
executed, the legitimate account is the reference and the fraudulent one is a bank change
that always goes to a person. An escalated invoice nobody reviewed teaches nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from switchyard_packs.invoice.extraction import vendor_key
from switchyard import Settings
from switchyard.privacy import matching_hash, matching_key
from switchyard.rpc import create_channel
from switchyard.v1 import (
    Document,
    IngestServiceStub,
    ReviewServiceStub,
    Submission,
    SubmitTaskRequest,
    TaskStatus,
    Verdict,
)
from tests.decision.documents import invoice
from tests.e2e.helpers import give_verdict, task_in
from tests.polling import eventually
from tests.terminal import TERMINAL_STATUSES

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("pipeline")]
TENANT = "acme"
VENDOR = "Halcyon Tooling Ltd"
LEGIT = "GB29 NWBK 6016 1331 9268 19"
FRAUD = "DE89 3704 0044 0532 0130 00"
RECEIVED = {"received_date": "2026-11-22"}


@pytest.fixture
async def clients(settings: Settings
                  ) -> AsyncIterator[tuple[IngestServiceStub, ReviewServiceStub]]:
    ingest = create_channel(f"127.0.0.1:{settings.ingest_grpc_port}")
    review = create_channel(f"127.0.0.1:{settings.review_grpc_port}")
    yield IngestServiceStub(ingest), ReviewServiceStub(review)
    await ingest.close()
    await review.close()


def hashed(settings: Settings, kind: str, value: str) -> str:
    return matching_hash(matching_key(settings), TENANT, kind, value)


async def submit(ingest: IngestServiceStub, text: str) -> str:
    return (await ingest.SubmitTask(SubmitTaskRequest(submission=Submission(
        tenant_id=TENANT, idempotency_key=uuid.uuid4().hex, kind="invoice", metadata=RECEIVED,
        document=Document(content_type="text/plain", body=text.encode()))))).task_id


async def verdict(review: ReviewServiceStub, task_id: str, kind: int) -> None:
    await give_verdict(review, task_id, kind, reason="checked with the vendor")


async def vendor_row(db: asyncpg.Connection, settings: Settings,
                     vendor: str = VENDOR) -> asyncpg.Record | None:
    return await db.fetchrow(
        "SELECT invoice_count, bank_hash FROM decision_vendors WHERE tenant_id = $1 "
        "AND vendor_hash = $2", TENANT, hashed(settings, "vendor", vendor_key(vendor)))


async def model_decision(db: asyncpg.Connection, task_id: str) -> asyncpg.Record:
    """The rule and explanation the decision service stored for the task."""
    return await db.fetchrow("SELECT rule, explanation FROM decisions WHERE task_id = $1 "
                             "AND source = 'MODEL'", uuid.UUID(task_id))


async def invoice_state(db: asyncpg.Connection, task_id: str) -> str | None:
    return await db.fetchval("SELECT state FROM decision_invoices WHERE task_id = $1",
                             uuid.UUID(task_id))


async def test_a_rejected_fraudulent_first_invoice_teaches_nothing(
        settings: Settings, clients: tuple[IngestServiceStub, ReviewServiceStub],
        db: asyncpg.Connection) -> None:
    ingest, review = clients
    blocked = {TaskStatus.TASK_STATUS_BLOCKED}

    # 1. the fraudster's invoice: a vendor never paid, the fraudster's account -> a person
    fraud = await submit(ingest, invoice(vendor=VENDOR, number="HT-9001", iban=FRAUD))
    task = await task_in(ingest, fraud, blocked | TERMINAL_STATUSES)
    assert task.status == TaskStatus.TASK_STATUS_BLOCKED, task.reason
    assert await vendor_row(db, settings) is None  # escalated, unreviewed: nothing learned
    await verdict(review, fraud, Verdict.VERDICT_REJECT)
    await task_in(ingest, fraud, TERMINAL_STATUSES)
    # the decision service learns the rejection from the decisions topic
    async def rejected() -> bool:
        return await invoice_state(db, fraud) == "rejected"
    await eventually(rejected, timeout_s=60, what="the rejection reached the vendor history")

    # 2. the vendor's real invoice, legitimate account: not a bank change against the fraud
    real = await submit(ingest, invoice(vendor=VENDOR, number="HT-1001", iban=LEGIT))
    task = await task_in(ingest, real, blocked | TERMINAL_STATUSES)
    proposed = await model_decision(db, real)
    assert proposed["rule"] != "bank_details_changed", proposed["explanation"]
    assert "bank details changed" not in proposed["explanation"]
    row = await vendor_row(db, settings)
    assert row is None or row["bank_hash"] != hashed(settings, "bank_account",
                                                     FRAUD.replace(" ", ""))
    if task.status == TaskStatus.TASK_STATUS_BLOCKED:  # a new vendor: a person approves it
        await verdict(review, real, Verdict.VERDICT_APPROVE)
    done = await task_in(ingest, real, TERMINAL_STATUSES)
    assert done.status == TaskStatus.TASK_STATUS_SUCCEEDED, done.reason

    # after a person's approval and a successful execution the vendor and its account are known
    async def learned() -> asyncpg.Record | None:
        row = await vendor_row(db, settings)
        return row if row is not None and row["invoice_count"] == 1 else None
    row = await eventually(learned, timeout_s=60, what="the approved invoice taught history")
    assert row["bank_hash"] == hashed(settings, "bank_account", LEGIT.replace(" ", ""))

    # 3. the fraudulent account again: a bank change, which always goes to a person
    again = await submit(ingest, invoice(vendor=VENDOR, number="HT-9002", iban=FRAUD))
    task = await task_in(ingest, again, blocked | TERMINAL_STATUSES)
    assert task.status == TaskStatus.TASK_STATUS_BLOCKED
    proposed = await model_decision(db, again)
    assert proposed["rule"] == "bank_details_changed", proposed["explanation"]
    assert "Halcyon" not in proposed["explanation"]  # names are personal data
    row = await vendor_row(db, settings)
    assert row is not None and row["invoice_count"] == 1  # still only what was confirmed


async def test_an_unreviewed_escalation_teaches_nothing(
        settings: Settings, clients: tuple[IngestServiceStub, ReviewServiceStub],
        db: asyncpg.Connection) -> None:
    ingest, _ = clients
    vendor = "Quillon Fasteners Ltd"
    first = await submit(ingest, invoice(vendor=vendor, number="QF-1", iban=FRAUD))
    await task_in(ingest, first, {TaskStatus.TASK_STATUS_BLOCKED})
    second = await submit(ingest, invoice(vendor=vendor, number="QF-2", iban=LEGIT))
    await task_in(ingest, second, {TaskStatus.TASK_STATUS_BLOCKED})
    proposed = await model_decision(db, second)
    assert proposed["rule"] != "bank_details_changed", proposed["explanation"]
    assert "bank details changed" not in proposed["explanation"]
    assert await invoice_state(db, first) == "pending"
    assert await vendor_row(db, settings, vendor) is None
