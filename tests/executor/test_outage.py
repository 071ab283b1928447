"""A downstream system fully down: its breaker opens, its tasks wait BLOCKED (parked, no
retry loop), other systems keep flowing, a tenant with a short SLA is escalated, and after
recovery every blocked task completes exactly once, still in the trace its decision arrived
in (the job row keeps the trace context; the resumer continues it)."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import uuid
from collections.abc import Iterable
from typing import Any

import grpc
import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from switchyard import Settings
from switchyard.messaging import EXECUTIONS, headers_to_dict
from switchyard.rpc import create_channel, field_violations
from switchyard.storage import connect
from switchyard.v1 import (
    BreakerStatus,
    Decision,
    DecisionOutcome,
    DecisionSource,
    EscalationReason,
    ExecutionResult,
    ExecutorAdminServiceStub,
    ListBreakersRequest,
    ResetBreakerRequest,
    StepOutcome,
)
from tests.executor.harness import Harness, decision, http_step
from tests.executor.test_saga import escalations_for
from tests.ingest.helpers import read_topic

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("executor")]
SLA_TENANT = "hurried"


@pytest.fixture(scope="module")
def executor_overrides() -> dict[str, Any]:
    return {"executor_sla_overrides": f"{SLA_TENANT}:4"}


def plan(system: str, task_id: str) -> list:
    return [http_step("1-post", f"http://{system}/records", {"task": task_id})]


async def breakers(settings: Settings) -> dict[str, Any]:
    channel = create_channel(f"127.0.0.1:{settings.executor_grpc_port}")
    try:
        response = await ExecutorAdminServiceStub(channel).ListBreakers(ListBreakersRequest())
        return {b.name: b for b in response.breakers}
    finally:
        await channel.close()


def trace_of(task_id: str) -> str:
    """The trace a test task's decision is sent in: its id's 32 hex digits."""
    return uuid.UUID(task_id).hex


async def send_traced(harness: Harness, decisions: Iterable[Decision]) -> None:
    """Send each decision in its own trace (a traceparent header), as decision does."""
    for d in decisions:
        span = NonRecordingSpan(SpanContext(
            trace_id=int(trace_of(d.task_id), 16), span_id=random.getrandbits(63) + 1,
            is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED)))
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            await harness.send([d])
        finally:
            otel_context.detach(token)


async def execution_traces(settings: Settings, task_ids: list[str]) -> dict[str, set[str]]:
    """Trace ids in the headers of every execution record of ``task_ids`` (read until each
    task's succeeded step is there)."""
    wanted = set(task_ids)

    def succeeded(records: list[Any]) -> set[str]:
        results = (ExecutionResult.FromString(record.value) for record in records)
        return {r.task_id for r in results if r.outcome == StepOutcome.STEP_OUTCOME_SUCCEEDED}

    records = await read_topic(settings, EXECUTIONS, lambda rs: wanted <= succeeded(rs))
    traces: dict[str, set[str]] = {t: set() for t in task_ids}
    for record in records:
        result = ExecutionResult.FromString(record.value)
        if result.task_id in wanted:
            parent = headers_to_dict(record.headers).get("traceparent", "")
            traces[result.task_id].add(parent.split("-")[1] if parent else "")
    return traces


def blocked_on_erp(status: str, stage: str, reason: str) -> bool:
    return status == "BLOCKED" and reason in ("breaker_open:http://erp",
                                              "retries_exhausted:http://erp")


async def test_outage_blocks_one_endpoint_and_everything_recovers(
        harness: Harness, exec_settings: Settings) -> None:
    await harness.faults("erp", outage=True)
    erp = await harness.seed(40)
    sis = await harness.seed(40)
    mixed = [d for pair in zip(erp, sis) for d in pair]
    await send_traced(harness, (decision(t, "acme", plan("erp" if t in erp else "sis", t))
                                for t in mixed))

    # other endpoints keep flowing while erp's tasks wait, visibly
    done = await harness.wait(sis)
    assert {s for s, _, _ in done.values()} == {"SUCCEEDED"}
    blocked = await harness.wait(erp, blocked_on_erp, what="blocked on erp")
    assert {stage for _, stage, _ in blocked.values()} == {"EXECUTING"}
    assert sum(r == "breaker_open:http://erp" for _, _, r in blocked.values()) >= 30

    states = await breakers(exec_settings)
    assert states["http://erp"].status in (BreakerStatus.BREAKER_STATUS_OPEN,
                                           BreakerStatus.BREAKER_STATUS_HALF_OPEN)
    assert states["http://erp"].blocked_tasks == 40
    assert states["http://erp"].HasField("opened_at")
    assert states["http://sis"].status == BreakerStatus.BREAKER_STATUS_CLOSED

    # the same view from the command line
    cli = subprocess.run(
        [sys.executable, "-m", "switchyard", "breakers", "--json",
         "--target", f"127.0.0.1:{exec_settings.executor_grpc_port}"],
        capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0, cli.stderr
    by_name = {b["name"]: b for b in json.loads(cli.stdout)}
    assert by_name["http://erp"]["status"] in ("BREAKER_STATUS_OPEN", "BREAKER_STATUS_HALF_OPEN")
    assert by_name["http://erp"]["blocked_tasks"] == 40

    # parked tasks cost nothing: while open, only the occasional probe reaches erp
    before = await harness.call_count("/erp/")
    more = await harness.seed(20)
    await send_traced(harness, (decision(t, "acme", plan("erp", t)) for t in more))
    await harness.wait(more, blocked_on_erp, what="blocked on erp")
    await asyncio.sleep(3 * exec_settings.executor_breaker_reset_s)
    probes = await harness.call_count("/erp/") - before
    assert probes <= 8, f"{probes} calls reached erp while its breaker was open"

    # a tenant whose deadline would pass while blocked goes to a person instead
    (hurried,) = await harness.seed(1, tenant=SLA_TENANT)
    await harness.send([decision(hurried, SLA_TENANT, plan("erp", hurried))])
    escalated = await harness.wait([hurried], lambda s, st, r: st == "AWAITING_REVIEW",
                                   what="escalated")
    assert escalated[hurried] == ("BLOCKED", "AWAITING_REVIEW", "sla_at_risk")
    escalation = (await escalations_for(exec_settings, {hurried}))[hurried]
    assert escalation.reason == EscalationReason.ESCALATION_REASON_SLA_AT_RISK
    assert escalation.HasField("sla_deadline")

    # recovery: the next probe succeeds, the breaker closes, every blocked task completes
    await harness.clear_faults()
    finished = await harness.wait(erp + more, timeout_s=120)
    assert {s for s, _, _ in finished.values()} == {"SUCCEEDED"}
    effects = await harness.effects(erp + more + sis)
    assert len(effects) == len({e["idempotency_key"] for e in effects}) == 100
    assert await harness.effects([hurried]) == []  # with a person now, not run
    states = await breakers(exec_settings)
    assert states["http://erp"].status == BreakerStatus.BREAKER_STATUS_CLOSED
    assert states["http://erp"].blocked_tasks == 0
    # one trace per task: the steps the resumer (or a probe) ran after the outage are in the
    # trace the task's decision arrived in, like those that ran straight away
    traces = await execution_traces(exec_settings, erp + more + sis)
    wrong = {t: found for t, found in traces.items() if found != {trace_of(t)}}
    assert not wrong, f"{len(wrong)} task(s) left their trace: {list(wrong.items())[:3]}"


async def test_reset_breaker_validates_its_input(exec_settings: Settings) -> None:
    channel = create_channel(f"127.0.0.1:{exec_settings.executor_grpc_port}")
    stub = ExecutorAdminServiceStub(channel)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await stub.ResetBreaker(ResetBreakerRequest())
        assert missing.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "name" in field_violations(missing.value)
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await stub.ResetBreaker(ResetBreakerRequest(name="http://nowhere"))
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
        reset = await stub.ResetBreaker(ResetBreakerRequest(name="http://erp"))
        assert reset.breaker.status == BreakerStatus.BREAKER_STATUS_CLOSED
    finally:
        await channel.close()
    # the operator action is audited (auth is off: the dev principal, tenant '*'), and the
    # shared row names who reset it
    conn = await connect(exec_settings)
    try:
        entries = await conn.fetch("SELECT tenant_id, actor, detail FROM audit_log "
                                   "WHERE action = 'breaker.reset'")
        updated_by = await conn.fetchval(
            "SELECT updated_by FROM executor_breakers WHERE name = 'http://erp'")
    finally:
        await conn.close()
    assert [(e["tenant_id"], e["actor"], json.loads(e["detail"])["breaker"])
            for e in entries] == [("*", "dev", "http://erp")]
    assert updated_by is None or updated_by.startswith("dev (reset on ")


async def test_a_reviewer_rejecting_a_task_escalated_after_a_step_ran_undoes_that_step(
        harness: Harness, exec_settings: Settings) -> None:
    """The hurried tenant's task booked a seat (``1-reserve``), then waited for the ERP past
    its deadline and went to a person. The reviewer rejects it (a decision without a plan,
    as the review service sends for an escalation that was no approval step): the executor
    compensates the reservation before the task ends FAILED ``rejected:<rule>``; it used to
    end the task with the seat still booked."""
    await harness.faults("erp", outage=True)
    try:
        (task_id,) = await harness.seed(1, tenant=SLA_TENANT)
        await harness.send([decision(task_id, SLA_TENANT, [
            http_step("1-reserve", "http://sis/reservations", {"seats": 1},
                      undo="http://sis/reservations/{idempotency_key}"),
            http_step("2-book", "http://erp/bookings", {"amount": 40})])])
        escalated = await harness.wait([task_id], lambda s, st, r: st == "AWAITING_REVIEW",
                                       what="escalated")
        assert escalated[task_id] == ("BLOCKED", "AWAITING_REVIEW", "sla_at_risk")
        await escalations_for(exec_settings, {task_id})
        await harness.send([Decision(
            decision_id=str(uuid.uuid4()), task_id=task_id, tenant_id=SLA_TENANT,
            outcome=DecisionOutcome.DECISION_OUTCOME_REJECT,
            source=DecisionSource.DECISION_SOURCE_HUMAN, reviewer_id="rev-1",
            rule="reviewer_reject", explanation="Rejected by rev-1: not ours")])
        final = await harness.wait([task_id], timeout_s=60)
    finally:
        await harness.clear_faults()
    assert final[task_id][:3] == ("FAILED", "DONE", "rejected:reviewer_reject"), final
    steps = await harness.executions(task_id)
    assert steps["1-reserve"][0] == "COMPENSATED", steps
    assert steps["compensate:1-reserve"][0] == "SUCCEEDED", steps
    assert "2-book" not in steps or steps["2-book"][0] != "SUCCEEDED", steps
    assert [(e["collection"], e["status"]) for e in await harness.effects([task_id])] == [
        ("reservations", "reversed")]


async def test_an_approved_sla_escalation_runs_through_a_breaker_nobody_was_left_to_probe(
        harness: Harness, exec_settings: Settings) -> None:
    """The hurried tenant's tasks all went to a person past their deadline, so no parked
    task was left to probe the endpoint's breaker, which stayed open after the endpoint came
    back. A reviewer approves one: its plan runs (it parks, becomes the probe, the breaker
    closes) where an outside integrator saw it handed straight back to review, the deadline
    it was escalated for still behind it."""
    await harness.faults("analytics", outage=True)
    try:
        tasks = await harness.seed(6, tenant=SLA_TENANT)
        await harness.send([decision(t, SLA_TENANT, plan("analytics", t)) for t in tasks])
        await harness.wait(tasks, lambda s, st, r: st == "AWAITING_REVIEW", what="escalated")
    finally:
        await harness.clear_faults()
    left = (await breakers(exec_settings))["http://analytics"]
    assert (left.status, left.blocked_tasks) == (BreakerStatus.BREAKER_STATUS_OPEN, 0), left
    approved = decision(tasks[0], SLA_TENANT, plan("analytics", tasks[0]))
    approved.source, approved.reviewer_id = DecisionSource.DECISION_SOURCE_HUMAN, "rev-1"
    approved.rule = "reviewer_approve"
    approved.decided_at.GetCurrentTime()
    await harness.send([approved])
    final = await harness.wait([tasks[0]], timeout_s=60, what="finished after the approval")
    assert final[tasks[0]][0] == "SUCCEEDED", final
    assert len(await harness.effects([tasks[0]])) == 1
    assert (await breakers(exec_settings))["http://analytics"].status == \
        BreakerStatus.BREAKER_STATUS_CLOSED


async def test_a_repeat_refused_after_a_lost_answer_is_retried_not_failed(
        harness: Harness, exec_settings: Settings) -> None:
    """The downstream stored a payment and its answer was lost; asked again with the same
    Idempotency-Key it answers 409 (as APIs that refuse a duplicate do, and as the IETF
    draft has it while the first request is held). The outcome is unknown, not refused:
    the step is retried and the task parks (an outside integrator saw it failed and the
    steps before it compensated, the payment left in place and nobody told). Once the
    downstream replays the key, the task finishes with the payment made once."""
    await harness.faults("helpdesk", lost_response_rate=1.0, error_status=503,
                         repeat_status=409)
    try:
        (task_id,) = await harness.seed(1)
        await harness.send([decision(task_id, "acme", [
            http_step("1-pay", "http://helpdesk/payments", {"amount": 12})])])
        blocked = await harness.wait(
            [task_id], lambda s, st, r: s == "BLOCKED" or s in ("FAILED", "SUCCEEDED"),
            what="blocked")
        assert blocked[task_id] == ("BLOCKED", "EXECUTING", "retries_exhausted:http://helpdesk"), \
            (blocked, await harness.executions(task_id))
        outcome, attempts, error = (await harness.executions(task_id))["1-pay"]
        assert outcome == "FAILED_RETRYABLE" and attempts >= 2, (outcome, attempts, error)
        assert "outcome is unknown" in error, error
    finally:
        await harness.clear_faults()
    final = await harness.wait([task_id], timeout_s=60)
    assert final[task_id][0] == "SUCCEEDED", final
    assert len(await harness.effects([task_id])) == 1
