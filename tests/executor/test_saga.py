"""Sagas, connectors and bad input, through the real broker, PostgreSQL and downstream."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest
from aiokafka import AIOKafkaConsumer

from switchyard import Settings
from switchyard.audit import verify
from switchyard.messaging import ESCALATIONS, EXECUTIONS, headers_to_dict
from switchyard.v1 import (
    Connector,
    Decision,
    DecisionOutcome,
    DecisionSource,
    Escalation,
    EscalationReason,
    ExecutionResult,
    StepOutcome,
)
from services.ingest import timeline
from tests.executor.harness import Harness, decision, http_step

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("executor")]
LEDGER_POST = "grpc://erp/erpsim.v1.LedgerService/Post"
LEDGER_REVERSE = "grpc://erp/erpsim.v1.LedgerService/Reverse"


async def escalations_for(settings: Settings, task_ids: set[str], timeout_s: float = 60
                          ) -> dict[str, Escalation]:
    consumer = AIOKafkaConsumer(ESCALATIONS.full_name(settings),
                                bootstrap_servers=settings.kafka_bootstrap_servers,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    found: dict[str, Escalation] = {}
    try:
        deadline = time.monotonic() + timeout_s
        while set(found) != task_ids and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    assert headers_to_dict(record.headers)["content-type"].endswith(
                        "messageType=switchyard.v1.Escalation")
                    escalation = Escalation.FromString(record.value)
                    if escalation.task_id in task_ids:
                        found[escalation.task_id] = escalation
    finally:
        await consumer.stop()
    return found


async def test_third_step_fails_permanently_two_compensations_run_in_reverse(
        harness: Harness) -> None:
    (task_id,) = await harness.seed(1)
    plan = [
        http_step("1-book", "http://erp/bookings", {"amount": 120, "room": "B2"},
                  undo="http://erp/bookings/{idempotency_key}"),
        http_step("2-reserve", "http://sis/reservations", {"seats": 2},
                  undo="http://sis/reservations/{idempotency_key}"),
        http_step("3-charge", "http://erp/payments", {"amount": -120}),
    ]
    await harness.send([decision(task_id, "acme", plan)])
    final = await harness.wait([task_id])
    assert final[task_id] == ("FAILED", "DONE", "execution_failed")

    # the downstream saw: two writes, the refused charge, then the undos in reverse order
    calls = [(c["method"], c["path"], c["outcome"]) for c in await harness.calls(task_id)]
    assert calls == [
        ("POST", "/erp/bookings", "created"),
        ("POST", "/sis/reservations", "created"),
        ("POST", "/erp/payments", "invalid"),
        ("DELETE", f"/sis/reservations/{task_id}:2-reserve", "reversed"),
        ("DELETE", f"/erp/bookings/{task_id}:1-book", "reversed"),
    ]
    effects = {e["idempotency_key"]: e["status"] for e in await harness.effects([task_id])}
    assert effects == {f"{task_id}:1-book": "reversed", f"{task_id}:2-reserve": "reversed"}

    # each compensation is recorded, and the cause travels with the task's end
    steps = await harness.executions(task_id)
    assert {k: v[0] for k, v in steps.items()} == {
        "1-book": "COMPENSATED", "2-reserve": "COMPENSATED", "3-charge": "FAILED_PERMANENT",
        "compensate:2-reserve": "SUCCEEDED", "compensate:1-book": "SUCCEEDED"}
    assert steps["3-charge"][1] == 1, "a permanent error is not retried"
    assert "HTTP 422" in steps["3-charge"][2] and "amount must be" in steps["3-charge"][2]
    job = await harness.job(task_id)
    assert job["state"] == "failed"
    assert job["reason"].startswith("step 3-charge failed permanently: POST http://erp/payments")
    assert job["reason"].endswith("compensated: 2-reserve, 1-book")
    assert harness.pool is not None
    stages = [r["stage"] for r in await harness.pool.fetch(
        "SELECT stage FROM task_status_history WHERE task_id = $1 ORDER BY seq",
        uuid.UUID(task_id))]
    assert stages[-2:] == ["COMPENSATING", "DONE"]

    # every action and compensation is in the tenant's audit chain, which verifies
    trail = [(r["action"], json.loads(r["detail"])["step_id"]) for r in await harness.pool.fetch(
        "SELECT action, detail FROM audit_log WHERE task_id = $1 ORDER BY entry_id",
        uuid.UUID(task_id))]
    assert trail == [
        ("step.executed", "1-book"), ("step.executed", "2-reserve"),
        ("step.executed", "3-charge"), ("compensation.executed", "compensate:2-reserve"),
        ("step.compensated", "2-reserve"), ("compensation.executed", "compensate:1-book"),
        ("step.compensated", "1-book")]
    async with harness.pool.acquire() as conn:
        assert (await verify(conn, "acme")).broken is None


async def test_failing_compensation_escalates_to_review(harness: Harness,
                                                        exec_settings: Settings) -> None:
    (task_id,) = await harness.seed(1)
    plan = [
        # the undo points at a collection the ERP does not have: 404, permanent
        http_step("1-book", "http://erp/bookings", {"amount": 5},
                  undo="http://erp/no_such_thing/{idempotency_key}"),
        http_step("2-charge", "http://erp/payments", {"amount": -1}),
    ]
    await harness.send([decision(task_id, "acme", plan)])
    final = await harness.wait([task_id], lambda s, st, r: st == "AWAITING_REVIEW",
                               what="awaiting review")
    assert final[task_id] == ("BLOCKED", "AWAITING_REVIEW", "compensation_failed")
    found = await escalations_for(exec_settings, {task_id})
    escalation = found[task_id]
    assert escalation.reason == EscalationReason.ESCALATION_REASON_COMPENSATION_FAILED
    assert escalation.service == "executor"
    assert "compensation of step 1-book failed" in escalation.reason_detail
    assert "HTTP 404" in escalation.reason_detail
    assert len(escalation.proposed_decision.plan.steps) == 2
    steps = await harness.executions(task_id)
    assert steps["compensate:1-book"][0] == "FAILED_PERMANENT"
    assert steps["1-book"][0] == "SUCCEEDED"  # still in effect: a person decides
    # the item says what each verdict does; a reject does as it says: the task ends FAILED,
    # nothing more undone, the booking stays for a person to put right in the ERP
    assert "Reject: nothing more is undone" in escalation.instructions
    rejected = Decision()
    rejected.CopyFrom(escalation.proposed_decision)
    rejected.decision_id = str(uuid.uuid4())
    rejected.outcome = DecisionOutcome.DECISION_OUTCOME_REJECT
    rejected.source, rejected.reviewer_id = DecisionSource.DECISION_SOURCE_HUMAN, "rev-1"
    rejected.rule = "reviewer_reject"
    await harness.send([rejected])
    final = await harness.wait([task_id], lambda s, st, r: s == "FAILED", what="failed")
    assert final[task_id][2].startswith("rejected")
    steps = await harness.executions(task_id)
    assert steps["1-book"][0] == "SUCCEEDED"
    assert steps["compensate:1-book"][0] == "FAILED_PERMANENT"


async def test_grpc_connector_learns_types_by_reflection_and_compensates(
        harness: Harness) -> None:
    ok_id, saga_id, bad_id = await harness.seed(3)
    post = {"system": "erp", "collection": "journal", "data": {"amount": 42, "memo": "fee"}}
    reverse = {"system": "erp", "collection": "journal", "idempotencyKey": "{idempotency_key}"}
    await harness.send([
        decision(ok_id, "acme", [http_step("1-journal", LEDGER_POST, post,
                                           connector=Connector.CONNECTOR_GRPC)]),
        decision(saga_id, "acme", [
            http_step("1-journal", LEDGER_POST, post, undo=LEDGER_REVERSE, undo_payload=reverse,
                      connector=Connector.CONNECTOR_GRPC, undo_operation="reverse"),
            http_step("2-charge", "http://erp/payments", {"amount": -3}),
        ]),
        decision(bad_id, "acme", [http_step(
            "1-journal", LEDGER_POST, {**post, "data": {"amount": -1}},
            connector=Connector.CONNECTOR_GRPC)]),
    ])
    final = await harness.wait([ok_id, saga_id, bad_id])
    assert final[ok_id][0] == "SUCCEEDED"
    assert final[saga_id][0] == final[bad_id][0] == "FAILED"
    effects = {e["idempotency_key"]: (e["system"], e["collection"], e["status"])
               for e in await harness.effects([ok_id, saga_id, bad_id])}
    assert effects == {f"{ok_id}:1-journal": ("erp", "journal", "active"),
                       f"{saga_id}:1-journal": ("erp", "journal", "reversed")}
    bad = await harness.executions(bad_id)
    assert bad["1-journal"][0] == "FAILED_PERMANENT"
    assert "INVALID_ARGUMENT" in bad["1-journal"][2]


async def test_unrunnable_plan_fails_before_any_effect(harness: Harness) -> None:
    task_id, dup_id = await harness.seed(2)
    await harness.send([
        decision(task_id, "acme", [http_step("1-ok", "http://erp/invoices", {}),
                                   http_step("2-bad", "ftp://erp/invoices", {})]),
        decision(dup_id, "acme", [http_step("1-a", "http://erp/invoices", {}),
                                  http_step("1-a", "http://erp/invoices", {})]),
    ])
    final = await harness.wait([task_id, dup_id])
    assert final[task_id] == ("FAILED", "DONE", "invalid_plan")
    assert final[dup_id] == ("FAILED", "DONE", "invalid_plan")
    assert await harness.effects([task_id, dup_id]) == []


async def test_a_step_naming_an_unmapped_alias_fails_the_task_before_any_effect(
        harness: Harness) -> None:
    """The executor's map names erp, sis, helpdesk and analytics; ``crm`` is not in it. The
    alias is never tried as a host name: the task ends FAILED (invalid_plan) with no call
    made, and the job keeps the reason naming the alias and the setting."""
    (task_id,) = await harness.seed(1)
    await harness.send([decision(task_id, "acme", [
        http_step("1-book", "http://erp/bookings", {"amount": 5},
                  undo="http://erp/bookings/{idempotency_key}"),
        http_step("2-lead", "http://crm/leads", {"name": "x"}),
    ])])
    final = await harness.wait([task_id])
    assert final[task_id] == ("FAILED", "DONE", "invalid_plan")
    assert await harness.calls(task_id) == []
    assert await harness.executions(task_id) == {}
    job = await harness.job(task_id)
    assert job["state"] == "failed"
    assert job["reason"] == ("invalid_plan: plan.steps[1].target: alias 'crm' of target "
                             "'http://crm/leads' has no http entry in "
                             "SWITCHYARD_EXECUTOR_ENDPOINTS (add 'crm=https://host/base')")
    # and the task's story says so where a submitter or operator looks (ingest's timeline and
    # status feed read the status change with its detail)
    assert harness.pool is not None
    async with harness.pool.acquire() as conn:
        story = await timeline.entries(conn, task_id)
    (failed,) = [e for e in story if e.reason == "invalid_plan"]
    assert failed.detail["detail"] == job["reason"].removeprefix("invalid_plan: ")
    assert failed.summary.startswith("\u2192 FAILED at DONE (invalid_plan): plan.steps[1].target: "
                                     "alias 'crm'")


async def test_a_resumed_plan_publishes_the_done_step_as_skipped_duplicate(
        harness: Harness, exec_settings: Settings) -> None:
    """Step 1 takes effect, step 2 meets an outage and the task parks; resumed after the
    outage, step 1 is not called again and the run says so on ``executions``."""
    (task_id,) = await harness.seed(1)
    await harness.faults("helpdesk", outage=True)
    try:
        await harness.send([decision(task_id, "acme", [
            http_step("1-book", "http://erp/bookings", {"amount": 9}),
            http_step("2-ticket", "http://helpdesk/tickets", {"subject": "booked"}),
        ])])
        await harness.wait([task_id], lambda s, st, r: s == "BLOCKED", what="blocked")
    finally:
        await harness.clear_faults()
    final = await harness.wait([task_id])
    assert final[task_id] == ("SUCCEEDED", "DONE", "executed")
    booked = [c for c in await harness.calls(task_id) if c["path"] == "/erp/bookings"]
    assert len(booked) == 1, "the done step was called again"

    consumer = AIOKafkaConsumer(EXECUTIONS.full_name(exec_settings),
                                bootstrap_servers=exec_settings.kafka_bootstrap_servers,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    published: list[tuple[str, int]] = []
    try:
        deadline = time.monotonic() + 60
        while ("2-ticket", StepOutcome.STEP_OUTCOME_SUCCEEDED) not in published \
                and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                published += [(r.step_id, r.outcome) for r in
                              (ExecutionResult.FromString(x.value) for x in records)
                              if r.task_id == task_id]
    finally:
        await consumer.stop()
    assert published[0] == ("1-book", StepOutcome.STEP_OUTCOME_SUCCEEDED)
    assert published[-1] == ("2-ticket", StepOutcome.STEP_OUTCOME_SUCCEEDED)
    skipped = [step for step, outcome in published
               if outcome == StepOutcome.STEP_OUTCOME_SKIPPED_DUPLICATE]
    assert skipped and set(skipped) == {"1-book"}
    # the table keeps what happened: step 1 succeeded once
    assert (await harness.executions(task_id))["1-book"][:2] == ("SUCCEEDED", 1)


async def test_decision_for_unknown_task_is_dead_lettered(harness: Harness) -> None:
    ghost = str(uuid.uuid4())
    await harness.send([decision(ghost, "acme", [http_step("1-a", "http://erp/x", {})])])
    assert harness.pool is not None
    for _ in range(240):
        row = await harness.pool.fetchrow(
            "SELECT reason_code, reason FROM dead_letters WHERE service = 'executor' "
            "AND reason LIKE $1", f"%{ghost}%")
        if row is not None:
            break
        await asyncio.sleep(0.25)
    assert row is not None and row["reason_code"] == "unknown_task"


async def test_escalated_task_redriven_gets_its_escalation_again(harness: Harness,
                                                                exec_settings: Settings) -> None:
    """A re-driven task (its records lost with the broker) brings its decision back while its
    job sits with a person: the executor sends the same escalation again."""
    (task_id,) = await harness.seed(1)
    failing = decision(task_id, "acme", [
        http_step("1-book", "http://erp/bookings", {"amount": 6},
                  undo="http://erp/no_such_thing/{idempotency_key}"),
        http_step("2-charge", "http://erp/payments", {"amount": -1}),
    ])
    await harness.send([failing])
    await harness.wait([task_id], lambda s, st, r: st == "AWAITING_REVIEW",
                       what="awaiting review")
    await harness.send([failing])  # the redelivery
    consumer = AIOKafkaConsumer(ESCALATIONS.full_name(exec_settings),
                                bootstrap_servers=exec_settings.kafka_bootstrap_servers,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    sent: list[Escalation] = []
    try:
        deadline = time.monotonic() + 60
        while len(sent) < 2 and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                sent += [e for e in (Escalation.FromString(r.value) for r in records)
                         if e.task_id == task_id]
    finally:
        await consumer.stop()
    assert len(sent) == 2, sent
    assert sent[0] == sent[1]  # same id (the review service dedupes), reason and detail
    assert "compensation of step 1-book failed" in sent[1].reason_detail
    assert (await harness.statuses([task_id]))[task_id][:2] == ("BLOCKED", "AWAITING_REVIEW")


async def test_a_fault_on_one_collection_leaves_the_systems_others_alone(
        harness: Harness) -> None:
    """``PUT /_/faults/erp/payments``: the ERP refuses payments, its invoices still post; the
    posted invoice is then compensated (the shipped invoice plan's saga)."""
    (task_id,) = await harness.seed(1)
    await harness.faults("erp/payments", error_rate=1.0, error_status=422)
    try:
        await harness.send([decision(task_id, "acme", [
            http_step("1-post_invoice", "http://erp/invoices", {"amount": 10},
                      undo="http://erp/invoices/{idempotency_key}"),
            http_step("2-schedule_payment", "http://erp/payments", {"amount": 10})])])
        final = await harness.wait([task_id])
    finally:
        await harness.clear_faults()
    assert final[task_id][0] == "FAILED"
    calls = [(c["method"], c["path"], c["outcome"]) for c in await harness.calls(task_id)]
    assert calls == [
        ("POST", "/erp/invoices", "created"),
        ("POST", "/erp/payments", "fault"),
        ("DELETE", f"/erp/invoices/{task_id}:1-post_invoice", "reversed"),
    ]


async def test_without_deduplication_a_repeated_call_lands_again_and_is_counted(
        harness: Harness) -> None:
    """What the executor guarantees on its own, on the downstream endpoint that ignores
    idempotency keys: at least once, not exactly once. Calls whose answers were lost are made
    again and land again; every call it made is counted in ``executions.attempts``."""
    (task_id,) = await harness.seed(1)
    step = http_step("1-count", "http://analytics/events/append", {"n": 1})
    step.max_attempts = 2
    await harness.faults("analytics/events", lost_response_rate=1.0)
    await harness.send([decision(task_id, "acme", [step])])
    # both attempts landed, neither answer arrived: parked, not failed
    await harness.wait([task_id], lambda status, stage, reason: status == "BLOCKED",
                       what="parked")
    await harness.clear_faults()
    final = await harness.wait([task_id])
    assert final[task_id][0] == "SUCCEEDED"
    assert harness.pool is not None
    landed = await harness.pool.fetchval(
        f'SELECT count(*) FROM "{harness.downstream_schema}".appends '
        "WHERE idempotency_key = $1", f"{task_id}:1-count")
    steps = await harness.executions(task_id)
    # at least the two lost answers and the one that arrived; each landed as a row of its
    # own, and each is in the executor's record: extra calls, all reported
    assert landed >= 3
    assert steps["1-count"][:2] == ("SUCCEEDED", landed)
