"""HistoryStore on real PostgreSQL: what teaches the vendor history and what undoes it.

The end-to-end attack runs in tests/e2e/test_vendor_history.py; this covers the rules one by
one: pending invoices count for duplicates only, a person's confirmation (with the person's
corrections) or the success of a straight-through invoice teaches, the success of an
escalated one does not, and a rejection removes what the invoice taught.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest

from services.decision.extensions import EnricherResources, Enrichers
from services.decision.learning import HistoryLearner
from switchyard import Settings
from switchyard.messaging import Record, encode
from switchyard.storage import codec_for, create_pool
from switchyard.v1 import StatusEvent, TaskStatus
from switchyard_packs.invoice.extraction import extract_invoice
from switchyard_packs.invoice.history import HistoryStore, VendorHistory, risk_inputs
from tests.decision.documents import invoice

pytestmark = pytest.mark.integration
TENANT = "history"
LEGIT, OTHER = "GB29 NWBK 6016 1331 9268 19", "DE89 3704 0044 0532 0130 00"


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[HistoryStore]:
    pool = await create_pool(settings.replace(postgres_pool_min=1, postgres_pool_max=2))
    sealed = settings.replace(encryption_keys=f"h1:{base64.b64encode(os.urandom(32)).decode()}",
                              encryption_active_key="h1")
    yield HistoryStore(pool, b"history-test-key", codec_for(sealed))
    await pool.close()


@dataclass(frozen=True)
class Scored:
    history: VendorHistory
    inputs: dict[str, float]


async def scored(store: HistoryStore, text: str, auto: bool) -> tuple[str, Scored]:
    """Score an invoice the way the engine does and record it with its decision."""
    task_id = str(uuid.uuid4())
    ex = extract_invoice(text)
    history = await store.lookup(TENANT, ex, task_id)
    async with store.pool.acquire() as conn:
        await store.record(conn, TENANT, task_id, ex, 0.9, auto)
    return task_id, Scored(history, risk_inputs(ex, history, dt.date(2026, 11, 22)))


async def summary(store: HistoryStore, vendor: str) -> asyncpg.Record | None:
    ex = extract_invoice(invoice(vendor=vendor))
    return await store.pool.fetchrow(
        "SELECT invoice_count, amount_sum, currency FROM decision_vendors "
        "WHERE tenant_id = $1 AND vendor_hash = $2", TENANT, store.hashes(TENANT, ex)[0])


async def test_only_confirmed_outcomes_teach_and_rejections_undo(store: HistoryStore) -> None:
    vendor = "Larkspur Supplies Ltd"
    first, a = await scored(store, invoice(vendor=vendor, number="L-1", iban=LEGIT), False)
    assert not a.history.known and a.history.bank_unconfirmed
    # pending: a duplicate of it is noticed, but the vendor is still unknown
    _, dup = await scored(store, invoice(vendor=vendor, number="L-1", iban=LEGIT), False)
    assert dup.history.duplicate and not dup.history.known
    # the execution of an escalated invoice (a review default action) confirms nothing
    assert not await store.confirm(TENANT, first, by_person=False)
    assert await summary(store, vendor) is None
    # a person approves it, correcting the total: the vendor is known with that amount
    assert await store.confirm(TENANT, first, {"total": "1,500.00", "bank_account": LEGIT})
    row = await summary(store, vendor)
    assert (row["invoice_count"], row["amount_sum"], row["currency"]) == (1, 1500.0, "USD")
    _, known = await scored(store, invoice(vendor=vendor, number="L-2", iban=LEGIT), True)
    assert known.history.known and not known.history.bank_changed
    _, moved = await scored(store, invoice(vendor=vendor, number="L-3", iban=OTHER), False)
    assert moved.history.bank_changed and moved.inputs["bank_details_changed"] == 1.0
    # a straight-through invoice is confirmed by its success; a later rejection undoes it
    auto, _ = await scored(store, invoice(vendor=vendor, number="L-4", iban=LEGIT), True)
    assert await store.confirm(TENANT, auto, by_person=False)
    assert (await summary(store, vendor))["invoice_count"] == 2
    assert await store.reject(TENANT, auto)
    assert (await summary(store, vendor))["invoice_count"] == 1
    assert not await store.confirm(TENANT, auto)  # rejected stays rejected
    # a rejected invoice is no longer a duplicate of anything
    _, again = await scored(store, invoice(vendor=vendor, number="L-4", iban=LEGIT), True)
    assert not again.history.duplicate
    # values are stored as keyed hashes and sealed fields only
    text = str([dict(r) for r in await store.pool.fetch(
        "SELECT * FROM decision_invoices WHERE tenant_id = $1", TENANT)])
    assert "Larkspur" not in text and "L-1" not in text and "NWBK" not in text


async def test_pending_names_only_the_outcomes_a_confirm_could_change(
        store: HistoryStore) -> None:
    """The learner asks once per batch of successes; only invoices still pending (and, for a
    success, ones the model ran straight through) are worth a confirm."""
    vendor = "Quillon Parts GmbH"
    auto, _ = await scored(store, invoice(vendor=vendor, number="Q-1", iban=LEGIT), True)
    escalated, _ = await scored(store, invoice(vendor=vendor, number="Q-2", iban=LEGIT), False)
    taught, _ = await scored(store, invoice(vendor=vendor, number="Q-3", iban=LEGIT), True)
    assert await store.confirm(TENANT, taught, by_person=False)
    no_invoice = str(uuid.uuid4())
    asked = [(TENANT, t) for t in (auto, escalated, taught, no_invoice)]
    asked.append(("another-tenant", auto))  # the same task id under another tenant: not its
    assert await store.pending(asked, by_person=False) == {auto}
    assert await store.pending(asked, by_person=True) == {auto, escalated}
    assert await store.pending([], by_person=True) == set()


async def test_successes_teach_through_the_learner_only_what_ran_straight_through(
        store: HistoryStore) -> None:
    """The decision service's learner on a batch of task-status records, with the invoice
    pack's enricher on this database: the straight-through invoice's success confirms it, the
    escalated one's does not, and neither does a success of a task that is no invoice."""
    enrichers = Enrichers(EnricherResources(store.pool, store.key, store.codec))
    enrichers.prepare(["vendor_history"])
    vendor = "Ormond Fixtures Ltd"
    auto, _ = await scored(store, invoice(vendor=vendor, number="O-1", iban=LEGIT), True)
    escalated, _ = await scored(store, invoice(vendor=vendor, number="O-2", iban=LEGIT), False)
    records = []
    for offset, task_id in enumerate((auto, escalated, str(uuid.uuid4()))):
        value, headers = encode(StatusEvent(task_id=task_id, tenant_id=TENANT,
                                            status=TaskStatus.TASK_STATUS_SUCCEEDED))
        records.append(Record("task-status", 0, offset, task_id.encode(), value, headers, 0.0))
    assert await HistoryLearner(enrichers).on_statuses(records) == []
    states = {str(r["task_id"]): r["state"] for r in await store.pool.fetch(
        "SELECT task_id, state FROM decision_invoices WHERE task_id = ANY($1::uuid[])",
        [uuid.UUID(auto), uuid.UUID(escalated)])}
    assert states == {auto: "confirmed", escalated: "pending"}
    assert (await summary(store, vendor))["invoice_count"] == 1
