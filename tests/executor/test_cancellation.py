"""Cancelling a task that is already executing: the executor stops before the next step,
compensates what took effect, and ends the task CANCELLED; a finished task stays finished.

The request is made the way ingest's CancelTask makes it (``services.ingest.cancel``: a row
in ``cancellation_requests``, then a ``CancellationRequest`` on the cancellations topic).
"""

from __future__ import annotations

import pytest

from services.ingest.cancel import Requested, cancel
from switchyard.messaging import CANCELLATIONS
from tests.executor.harness import Harness, decision, http_step

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("executor")]


async def request_cancellation(harness: Harness, task_id: str) -> None:
    assert harness.pool and harness.producer
    async with harness.pool.acquire() as conn:
        outcome = await cancel(conn, task_id, "customer withdrew", "tester")
    assert isinstance(outcome, Requested), outcome
    await harness.producer.send(CANCELLATIONS, task_id, outcome.request)


async def test_cancel_while_blocked_compensates_and_cancels(harness: Harness) -> None:
    await harness.faults("erp", outage=True)
    try:
        (task_id,) = await harness.seed(1)
        await harness.send([decision(task_id, "acme", [
            http_step("1-reserve", "http://sis/reservations", {"seats": 1},
                      undo="http://sis/reservations/{idempotency_key}"),
            http_step("2-book", "http://erp/bookings", {"amount": 40},
                      undo="http://erp/bookings/{idempotency_key}"),
        ])])
        # step 1 took effect; step 2 waits for the ERP, visibly
        await harness.wait([task_id], lambda status, stage, reason: status == "BLOCKED",
                           what="blocked on the ERP")
        await request_cancellation(harness, task_id)
        # not when the ERP comes back: now
        final = await harness.wait([task_id], timeout_s=60)
    finally:
        await harness.clear_faults()
    assert final[task_id][:2] == ("CANCELLED", "DONE"), final
    assert final[task_id][2] == "cancelled"
    steps = await harness.executions(task_id)
    assert steps["1-reserve"][0] == "COMPENSATED", steps
    assert steps["compensate:1-reserve"][0] == "SUCCEEDED", steps
    assert "2-book" not in steps or steps["2-book"][0] != "SUCCEEDED", steps
    effects = await harness.effects([task_id])
    assert [(e["collection"], e["status"]) for e in effects] == [("reservations", "reversed")]
    job = await harness.job(task_id)
    assert job["state"] == "cancelled"


async def test_cancel_before_the_decision_arrives_runs_nothing(harness: Harness) -> None:
    (task_id,) = await harness.seed(1)
    await request_cancellation(harness, task_id)
    await harness.send([decision(task_id, "acme", [
        http_step("1-post", "http://erp/invoices", {"n": 1})])])
    final = await harness.wait([task_id])
    assert final[task_id][:2] == ("CANCELLED", "DONE"), final
    assert await harness.effects([task_id]) == []


async def test_cancelling_a_finished_task_changes_nothing(harness: Harness) -> None:
    (task_id,) = await harness.seed(1)
    await harness.send([decision(task_id, "acme", [
        http_step("1-post", "http://erp/invoices", {"n": 2})])])
    assert (await harness.wait([task_id]))[task_id][0] == "SUCCEEDED"
    assert harness.pool
    async with harness.pool.acquire() as conn:
        outcome = await cancel(conn, task_id, "too late", "tester")
    assert type(outcome).__name__ == "AlreadyFinished"
    assert [e["status"] for e in await harness.effects([task_id])] == ["active"]
