"""Plan features through the real executor, broker, PostgreSQL and demo downstream: payload
templates, `when`, parallel groups, per-step retries and backoff, approval steps, durable timer
and callback waits (ExecutorService.CompleteWait) and a custom connector from an entry point.

Decisions are built by hand, as the decision service (from a pack) or the review service (a
verdict on an approval step) would publish them."""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from aiokafka import AIOKafkaConsumer
from google.protobuf import duration_pb2
from google.protobuf.json_format import MessageToDict
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from services.ingest.timeline import entries as timeline_entries
from switchyard import Settings
from switchyard.messaging import ESCALATIONS
from switchyard.rpc import create_channel
from switchyard.v1 import (
    ActionStep,
    ApprovalSpec,
    CompleteWaitRequest,
    Decision,
    DecisionOutcome,
    DecisionSource,
    Escalation,
    EscalationReason,
    ExecutionResult,
    ExecutorServiceStub,
    FieldExtraction,
    StepKind,
    WaitSpec,
)
from tests.executor.harness import Harness, Service, decision, http_step
from tests.executor.test_cancellation import request_cancellation
from tests.executor.test_saga import escalations_for
from tests.polling import eventually

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("executor")]
ROOT = Path(__file__).resolve().parents[2]
KEYS = {"acme": "sub-acme", "globex": "adm-globex"}


@pytest.fixture(scope="module")
def executor_overrides() -> dict[str, Any]:
    return {"api_keys": "sub-acme:acme:submitter,adm-globex:globex:admin,"
                        "rev-acme:acme:reviewer"}


@pytest.fixture(scope="module")
def journal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("journal") / "journal.jsonl"


@pytest.fixture(scope="module")
def executor(exec_settings: Settings, downstream: Service, journal: Path,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The executor with a custom connector installed the way a team installs one: a
    distribution whose entry point in ``switchyard.connectors`` names its class."""
    plugins = tmp_path_factory.mktemp("plugins")
    shutil.copy(Path(__file__).with_name("journal_connector.py"),
                plugins / "switchyard_test_journal.py")
    dist = plugins / "switchyard_test_journal-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: switchyard-test-journal\n"
                                   "Version: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[switchyard.connectors]\njournal = switchyard_test_journal:JournalConnector\n")
    service = Service("executor", exec_settings, tmp_path_factory.mktemp("executor"))
    service.env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(plugins), str(ROOT), service.env.get("PYTHONPATH", "")]))
    service.env["SWITCHYARD_TEST_JOURNAL"] = str(journal)
    service.start()
    try:
        yield service
    finally:
        assert service.stop() == 0, service.log()


def seconds(value: float) -> duration_pb2.Duration:
    out = duration_pb2.Duration()
    out.FromTimedelta(timedelta(seconds=value))
    return out


def with_fields(d: Decision, **values: tuple[str, str]) -> Decision:
    """The decision carrying extracted fields as a pack's decision does: value and type."""
    for name, (value, type_) in values.items():
        d.fields.append(FieldExtraction(name=name, value=value, type=type_, confidence=0.9))
        d.extracted_fields[name] = value
    return d


def approval_step(step_id: str, **spec: Any) -> ActionStep:
    return ActionStep(step_id=step_id, name=step_id.split("-", 1)[1],
                      kind=StepKind.STEP_KIND_APPROVAL, approval=ApprovalSpec(**spec))


def wait_step(step_id: str, **spec: Any) -> ActionStep:
    return ActionStep(step_id=step_id, name=step_id.split("-", 1)[1],
                      kind=StepKind.STEP_KIND_WAIT, wait=WaitSpec(**spec))


def named(step: ActionStep, name: str, **extra: Any) -> ActionStep:
    step.name = name
    for key, value in extra.items():
        if key in ("backoff_initial", "backoff_max"):
            getattr(step, key).CopyFrom(value)
        else:
            setattr(step, key, value)
    return step


async def bodies(harness: Harness, task_id: str) -> dict[str, Any]:
    """What the demo ERP stored per step (its effects by idempotency key)."""
    return {e["idempotency_key"].split(":", 1)[1]: json.loads(e["body"])
            for e in await harness.effects([task_id])}


async def result(harness: Harness, task_id: str, step_id: str) -> ExecutionResult:
    assert harness.pool is not None
    blob = await harness.pool.fetchval(
        "SELECT result FROM executions WHERE task_id = $1 AND step_id = $2",
        uuid.UUID(task_id), step_id)
    assert blob is not None, f"no execution of {step_id}"
    return ExecutionResult.FromString(blob)


def outcomes(steps: dict[str, tuple[str, int, str]]) -> dict[str, str]:
    return {step_id: row[0] for step_id, row in steps.items()}


# -- templates, when, parallel, backoff -------------------------------------------------------

async def test_templates_map_fields_metadata_params_and_earlier_outputs(
        harness: Harness) -> None:
    (task_id,) = await harness.seed(1, kind="expense_claim", metadata={"source": "scanner-7"})
    d = with_fields(decision(task_id, "acme", [
        named(http_step("1-create_claim", "http://erp/claims", {
            "amount": "${fields.amount}", "employee": "${fields.employee}",
            "note": "from ${metadata.source} for ${task.kind} ${task.task_id}",
            "centre": "${params.cost_centre}", "fixed": "as written"}), "create_claim"),
        named(http_step("2-book", "http://erp/ledger", {
            "claim_id": "${steps.create_claim.output.id}",
            "claim_status": "${steps.create_claim.status}",
            "doubled": "${fields.amount * 2.0}"}), "book"),
    ]), amount=("42.50", "money"), employee=("Ann Lee", "string"))
    d.plan.parameters.update({"cost_centre": "CC-9"})
    await harness.send([d])
    assert (await harness.wait([task_id]))[task_id][0] == "SUCCEEDED"

    stored = await bodies(harness, task_id)
    assert stored["1-create_claim"] == {
        "amount": 42.5, "employee": "Ann Lee", "centre": "CC-9", "fixed": "as written",
        "note": f"from scanner-7 for expense_claim {task_id}"}
    first = next(e for e in await harness.effects([task_id])
                 if e["idempotency_key"].endswith("1-create_claim"))
    assert stored["2-book"] == {"claim_id": first["id"], "claim_status": "succeeded",
                                "doubled": 85.0}
    # the first step's answer is its output, for later steps and on the executions topic
    output = MessageToDict((await result(harness, task_id, "1-create_claim")).output)
    assert output["id"] == first["id"] and output["status"] == "active"


async def test_when_false_skips_a_step_and_a_broken_condition_fails_the_task(
        harness: Harness) -> None:
    skipped, broken = await harness.seed(2)
    await harness.send([
        with_fields(decision(skipped, "acme", [
            named(http_step("1-big_only", "http://erp/claims", {"n": 1}), "big_only",
                  when="fields.amount > 100.0"),
            named(http_step("2-after", "http://erp/claims", {"n": 2}), "after",
                  when="steps.big_only.status == 'skipped_condition'"),
        ]), amount=("42.50", "money")),
        decision(broken, "acme", [
            named(http_step("1-first", "http://erp/claims", {"n": 1},
                            undo="http://erp/claims/{idempotency_key}"), "first"),
            named(http_step("2-odd", "http://erp/claims", {"n": 2}), "odd",
                  when="metadata.absent == 'x'"),
        ]),
    ])
    final = await harness.wait([skipped, broken])
    assert final[skipped] == ("SUCCEEDED", "DONE", "executed")
    assert outcomes(await harness.executions(skipped)) == {
        "1-big_only": "SKIPPED_CONDITION", "2-after": "SUCCEEDED"}
    assert [c["path"] for c in await harness.calls(skipped)] == ["/erp/claims"]
    assert list(await bodies(harness, skipped)) == ["2-after"]

    assert final[broken] == ("FAILED", "DONE", "execution_failed")
    steps = await harness.executions(broken)
    assert outcomes(steps) == {"1-first": "COMPENSATED", "2-odd": "FAILED_PERMANENT",
                               "compensate:1-first": "SUCCEEDED"}
    assert "absent" in steps["2-odd"][2] and "has(" in steps["2-odd"][2]
    # the operator reads why in the task's timeline (the message names the key, no value)
    assert harness.pool is not None
    async with harness.pool.acquire() as conn:
        story = [e.summary for e in await timeline_entries(conn, broken)]
    assert "step 2-odd failed: step 2-odd when: no such key 'absent' (guard it with has(...))" \
        in story, story


async def test_parallel_steps_all_run_and_a_permanent_failure_compensates_the_others(
        harness: Harness) -> None:
    ok, failing = await harness.seed(2)
    await harness.send([
        decision(ok, "acme", [
            named(http_step("1-a", "http://erp/bookings", {"n": 1}), "a", parallel_group="g"),
            named(http_step("2-b", "http://sis/bookings", {"n": 2}), "b", parallel_group="g"),
            http_step("3-after", "http://erp/notes", {"n": 3}),
        ]),
        decision(failing, "acme", [
            # the failing step comes first: run one after the other, the second never ran
            named(http_step("1-charge", "http://erp/payments", {"amount": -1}), "charge",
                  parallel_group="g"),
            named(http_step("2-reserve", "http://sis/reservations", {"seats": 2},
                            undo="http://sis/reservations/{idempotency_key}"), "reserve",
                  parallel_group="g"),
            http_step("3-after", "http://erp/notes", {"n": 3}),
        ]),
    ])
    final = await harness.wait([ok, failing])
    assert final[ok][0] == "SUCCEEDED"
    assert set(await bodies(harness, ok)) == {"1-a", "2-b", "3-after"}

    assert final[failing] == ("FAILED", "DONE", "execution_failed")
    calls = {(c["method"], c["path"], c["outcome"]) for c in await harness.calls(failing)}
    assert calls == {("POST", "/erp/payments", "invalid"),
                     ("POST", "/sis/reservations", "created"),
                     ("DELETE", f"/sis/reservations/{failing}:2-reserve", "reversed")}
    assert outcomes(await harness.executions(failing)) == {
        "1-charge": "FAILED_PERMANENT", "2-reserve": "COMPENSATED",
        "compensate:2-reserve": "SUCCEEDED"}


async def test_per_step_retries_and_backoff(harness: Harness) -> None:
    limited, throttled = await harness.seed(2)
    await harness.faults("erp/flaky", error_rate=1.0, error_status=503)
    await harness.faults("erp/throttled", throttle_rate=1.0, retry_after_s=1)
    await harness.send([
        # its own attempt count, with a tiny first backoff
        decision(limited, "acme", [named(http_step("1-flaky", "http://erp/flaky", {"n": 1}),
                                         "flaky", max_attempts=2,
                                         backoff_initial=seconds(0.01))]),
        # asked to come back in 1s, longer than the step's longest backoff (0.5s, where the
        # executor's own is 1s): parked at once instead of waiting inline
        decision(throttled, "acme", [named(http_step("1-slow", "http://erp/throttled",
                                                     {"n": 1}), "slow",
                                           backoff_max=seconds(0.5))]),
    ])
    await harness.wait([limited, throttled], lambda s, st, r: s == "BLOCKED", what="blocked")
    # why each was parked first (later parks may say breaker_open: the failures add up)
    assert harness.pool is not None
    first = {t: await harness.pool.fetchval(
        "SELECT reason FROM task_status_history WHERE task_id = $1 AND status = 'BLOCKED' "
        "ORDER BY seq LIMIT 1", uuid.UUID(t)) for t in (limited, throttled)}
    assert first == {limited: "retries_exhausted:http://erp",
                     throttled: "rate_limited:http://erp"}
    # the limited step's first run made its two calls, then parked
    detail = await harness.pool.fetchval(
        "SELECT detail FROM audit_log WHERE task_id = $1 AND action = 'step.executed' "
        "ORDER BY entry_id LIMIT 1", uuid.UUID(limited))
    assert (json.loads(detail)["outcome"], json.loads(detail)["attempts"]) == (
        "STEP_OUTCOME_FAILED_RETRYABLE", 2)
    await harness.clear_faults()
    final = await harness.wait([limited, throttled])
    assert {s for s, _, _ in final.values()} == {"SUCCEEDED"}


# -- approval steps ----------------------------------------------------------------------------

def approval_plan() -> list[ActionStep]:
    return [
        named(http_step("1-create", "http://erp/claims", {"n": 1},
                        undo="http://erp/claims/{idempotency_key}"), "create"),
        approval_step("2-manager_ok", queue="finance", reviewer_group="managers",
                      four_eyes=True, sla=seconds(3600),
                      instructions="Approve the claim of task ${task.task_id}"),
        named(http_step("3-pay", "http://erp/payments",
                        {"approved_by": "${steps.manager_ok.output.approved_by}"}), "pay"),
    ]


def verdict(proposed: Decision, outcome: int, rule: str) -> Decision:
    """What the review service publishes for a verdict on an approval step."""
    human = Decision()
    human.CopyFrom(proposed)
    human.decision_id = str(uuid.uuid4())
    human.outcome = outcome  # type: ignore[assignment]
    human.source = DecisionSource.DECISION_SOURCE_HUMAN
    human.reviewer_id = "rev-acme"
    human.rule = rule
    human.approves_step_id = "2-manager_ok"
    return human


async def test_an_approval_step_escalates_and_an_approval_resumes_the_plan(
        harness: Harness, exec_settings: Settings) -> None:
    approved, rejected = await harness.seed(2)
    await harness.send([decision(t, "acme", approval_plan()) for t in (approved, rejected)])
    waiting = await harness.wait([approved, rejected],
                                 lambda s, st, r: st == "AWAITING_REVIEW", what="in review")
    assert waiting[approved] == ("BLOCKED", "AWAITING_REVIEW", "approval:2-manager_ok")
    escalations = await escalations_for(exec_settings, {approved, rejected})
    escalation = escalations[approved]
    assert escalation.reason == EscalationReason.ESCALATION_REASON_APPROVAL_STEP
    assert (escalation.queue, escalation.reviewer_group, escalation.four_eyes,
            escalation.step_id, escalation.instructions) == (
        "finance", "managers", True, "2-manager_ok", f"Approve the claim of task {approved}")
    assert escalation.service == "executor"
    assert [s.step_id for s in escalation.proposed_decision.plan.steps] == [
        "1-create", "2-manager_ok", "3-pay"]
    assert outcomes(await harness.executions(approved)) == {
        "1-create": "SUCCEEDED", "2-manager_ok": "WAITING"}
    assert await harness.calls(f"{approved}:3-pay") == []

    await harness.send([
        verdict(escalation.proposed_decision, DecisionOutcome.DECISION_OUTCOME_AUTO_EXECUTE,
                "approved"),
        verdict(escalations[rejected].proposed_decision,
                DecisionOutcome.DECISION_OUTCOME_REJECT, "manager_rejected")])
    final = await harness.wait([approved, rejected])
    assert final[approved] == ("SUCCEEDED", "DONE", "executed")
    assert (await bodies(harness, approved))["3-pay"] == {"approved_by": "rev-acme"}
    approval = await result(harness, approved, "2-manager_ok")
    assert MessageToDict(approval.output) == {"approved_by": "rev-acme"}

    # a rejection undoes what was done before the approval; nothing after it runs
    assert final[rejected] == ("FAILED", "DONE", "rejected:manager_rejected")
    assert outcomes(await harness.executions(rejected)) == {
        "1-create": "COMPENSATED", "2-manager_ok": "FAILED_PERMANENT",
        "compensate:1-create": "SUCCEEDED"}
    assert {e["idempotency_key"]: e["status"] for e in await harness.effects([rejected])} == {
        f"{rejected}:1-create": "reversed"}


async def test_cancelling_a_task_at_an_approval_step_undoes_what_ran_before_it(
        harness: Harness) -> None:
    """The executor handed the task to a person after ``1-create`` took effect: CancelTask
    asks the executor (ingest does not end it outright, as it would a task the decision
    service escalated), which settles the approval, compensates ``1-create`` at once, with
    no verdict, and ends the task CANCELLED."""
    (task_id,) = await harness.seed(1)
    await harness.send([decision(task_id, "acme", approval_plan())])
    await harness.wait([task_id], lambda s, st, r: st == "AWAITING_REVIEW", what="in review")
    await request_cancellation(harness, task_id)   # asserts: a request, not cancelled outright
    final = await harness.wait([task_id], timeout_s=60)
    assert final[task_id] == ("CANCELLED", "DONE", "cancelled"), final
    assert outcomes(await harness.executions(task_id)) == {
        "1-create": "COMPENSATED", "2-manager_ok": "FAILED_PERMANENT",
        "compensate:1-create": "SUCCEEDED"}
    assert {e["idempotency_key"]: e["status"] for e in await harness.effects([task_id])} == {
        f"{task_id}:1-create": "reversed"}


# -- durable waits -----------------------------------------------------------------------------

async def test_a_timer_wait_survives_an_executor_restart(harness: Harness,
                                                         executor: Service) -> None:
    (task_id,) = await harness.seed(1)
    await harness.send([decision(task_id, "acme", [
        http_step("1-before", "http://erp/claims", {"n": 1}),
        wait_step("2-cooling_off", duration=seconds(4)),
        http_step("3-after", "http://erp/claims", {"n": 3}),
    ])])

    async def parked_on_timer() -> bool:
        job = await harness.job(task_id)
        return job is not None and (job["state"], job["blocked_by"]) == ("parked", "timer")

    await eventually(parked_on_timer, timeout_s=60)
    status = (await harness.statuses([task_id]))[task_id]
    assert status == ("BLOCKED", "EXECUTING", "waiting:2-cooling_off")
    assert outcomes(await harness.executions(task_id)) == {
        "1-before": "SUCCEEDED", "2-cooling_off": "WAITING"}
    executor.kill()
    executor.start()
    assert (await harness.wait([task_id]))[task_id][0] == "SUCCEEDED"
    assert outcomes(await harness.executions(task_id)) == {
        "1-before": "SUCCEEDED", "2-cooling_off": "SUCCEEDED", "3-after": "SUCCEEDED"}
    waited = await result(harness, task_id, "2-cooling_off")
    assert (waited.finished_at.ToDatetime() - waited.started_at.ToDatetime()
            ) >= timedelta(seconds=4)


def callback_plan(timeout_s: float = 3600) -> list[ActionStep]:
    return [
        named(http_step("1-order", "http://erp/orders", {"n": 1},
                        undo="http://erp/orders/{idempotency_key}"), "order"),
        wait_step("2-bank", callback="bank", timeout=seconds(timeout_s)),
        named(http_step("3-pay", "http://erp/payments",
                        {"ref": "${steps.bank.output.ref}"}), "pay"),
    ]


async def complete(exec_settings: Settings, token: str, tenant: str = "acme",
                   **fields: Any) -> Any:
    async with create_channel(f"127.0.0.1:{exec_settings.executor_grpc_port}",
                              KEYS[tenant]) as channel:
        request = CompleteWaitRequest(token=token, error=fields.get("error", ""))
        if "output" in fields:
            request.output.update(fields["output"])
        return await ExecutorServiceStub(channel).CompleteWait(request, timeout=30)


async def test_a_callback_wait_is_completed_through_complete_wait(
        harness: Harness, exec_settings: Settings, executor: Service) -> None:
    completed, failed, timed_out = await harness.seed(3)
    await harness.send([decision(completed, "acme", callback_plan()),
                        decision(failed, "acme", callback_plan()),
                        decision(timed_out, "acme", callback_plan(timeout_s=1))])
    await harness.wait([completed, failed], lambda s, st, r: r == "waiting:2-bank",
                       what="waiting for the callback")
    executor.kill()  # the waits are in PostgreSQL: a new process answers the callbacks
    executor.start()

    # someone else's task, a step that is no callback wait: NOT_FOUND, nothing changes
    for token, tenant in ((f"{completed}:2-bank", "globex"), (f"{completed}:1-order", "acme"),
                          (f"{uuid.uuid4()}:2-bank", "acme")):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await complete(exec_settings, token, tenant, output={"ref": "X"})
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND, token
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await complete(exec_settings, "not-a-token")
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    answer = await complete(exec_settings, f"{completed}:2-bank", output={"ref": "BANK-42"})
    assert (answer.task_id, answer.step_id) == (completed, "2-bank")
    await complete(exec_settings, f"{failed}:2-bank", error="the bank refused the order")
    final = await harness.wait([completed, failed, timed_out])
    assert final[completed] == ("SUCCEEDED", "DONE", "executed")
    assert (await bodies(harness, completed))["3-pay"] == {"ref": "BANK-42"}
    with pytest.raises(grpc.aio.AioRpcError) as again:
        await complete(exec_settings, f"{completed}:2-bank", output={"ref": "BANK-43"})
    assert again.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    # a failed callback and one that never came: the order is undone, nothing is paid
    for task_id, cause in ((failed, "the bank refused the order"),
                           (timed_out, "did not come within")):
        assert final[task_id] == ("FAILED", "DONE", "execution_failed"), task_id
        steps = await harness.executions(task_id)
        assert outcomes(steps) == {"1-order": "COMPENSATED", "2-bank": "FAILED_PERMANENT",
                                   "compensate:1-order": "SUCCEEDED"}, task_id
        assert cause in steps["2-bank"][2]
        assert await harness.calls(f"{task_id}:3-pay") == []


@hypothesis_settings(max_examples=60, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(token=st.one_of(st.text(max_size=300), st.binary(max_size=80).map(
    lambda b: b.decode("latin-1")), st.uuids().map(lambda u: f"{u}:{'x' * 300}"),
    st.builds(lambda u, s: f"{u}:{s}", st.uuids(), st.text(max_size=40))))
def test_complete_wait_answers_any_token_with_a_clear_status(exec_settings: Settings,
                                                            token: str) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{exec_settings.executor_grpc_port}") as channel:
        stub = ExecutorServiceStub(channel)
        try:
            stub.CompleteWait(CompleteWaitRequest(token=token), timeout=30,
                              metadata=(("authorization", "Bearer sub-acme"),))
        except grpc.RpcError as exc:
            assert exc.code() in (grpc.StatusCode.INVALID_ARGUMENT,  # type: ignore[attr-defined]
                                  grpc.StatusCode.NOT_FOUND), (token, exc)
        else:
            raise AssertionError(f"token {token!r} completed a wait")


def test_complete_wait_needs_a_submitter_or_admin_key(exec_settings: Settings) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{exec_settings.executor_grpc_port}") as channel:
        stub = ExecutorServiceStub(channel)
        for metadata, code in ((("authorization", "Bearer rev-acme"),
                                grpc.StatusCode.PERMISSION_DENIED),
                               (("authorization", "Bearer nope"),
                                grpc.StatusCode.UNAUTHENTICATED)):
            with pytest.raises(grpc.RpcError) as refused:
                stub.CompleteWait(CompleteWaitRequest(token=f"{uuid.uuid4()}:2-bank"),
                                  timeout=30, metadata=(metadata,))
            assert refused.value.code() == code  # type: ignore[attr-defined]


# -- custom connectors -------------------------------------------------------------------------

async def test_a_custom_connector_from_an_entry_point_carries_and_undoes_steps(
        harness: Harness, journal: Path) -> None:
    (task_id,) = await harness.seed(1)
    d = with_fields(decision(task_id, "acme", [
        named(http_step("1-note", "journal://book/entries", {"amount": "${fields.amount}"},
                        undo="journal://book/entries/{idempotency_key}",
                        connector=0), "note"),
        named(http_step("2-refused", "journal://book/entries", {}, connector=0,
                        operation="refuse"), "refused"),
    ]), amount=("7.25", "money"))
    await harness.send([d])
    final = await harness.wait([task_id])
    assert final[task_id] == ("FAILED", "DONE", "execution_failed")
    entries = [json.loads(line) for line in journal.read_text().splitlines()
               if json.loads(line)["idempotency_key"].startswith(task_id)]
    assert [(e["operation"], e["address"], e["payload"], e["idempotency_key"])
            for e in entries] == [
        ("create", "journal://book/entries", {"amount": 7.25}, f"{task_id}:1-note"),
        ("DELETE", f"journal://book/entries/{task_id}:1-note", {},
         f"{task_id}:1-note:compensate")]
    steps = await harness.executions(task_id)
    assert outcomes(steps) == {"1-note": "COMPENSATED", "2-refused": "FAILED_PERMANENT",
                               "compensate:1-note": "SUCCEEDED"}
    assert "refused by the journal" in steps["2-refused"][2]


async def test_cancelling_a_waiting_task_compensates_it_now(harness: Harness,
                                                           exec_settings: Settings) -> None:
    (task_id,) = await harness.seed(1)
    plan = callback_plan()
    plan[1].wait.ClearField("timeout")  # it would wait for ever
    await harness.send([decision(task_id, "acme", plan)])
    await harness.wait([task_id], lambda s, st, r: r == "waiting:2-bank",
                       what="waiting for the callback")
    await request_cancellation(harness, task_id)
    final = await harness.wait([task_id], timeout_s=60)
    assert final[task_id] == ("CANCELLED", "DONE", "cancelled")
    assert outcomes(await harness.executions(task_id)) == {
        "1-order": "COMPENSATED", "2-bank": "FAILED_PERMANENT",
        "compensate:1-order": "SUCCEEDED"}
    with pytest.raises(grpc.aio.AioRpcError) as late:
        await complete(exec_settings, f"{task_id}:2-bank", output={"ref": "BANK-44"})
    assert late.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "CANCELLED" in (late.value.details() or "")


# -- a pack's plan, as the decision service hands it over ---------------------------------------

EXPENSE_PACK = b"""
pack: expense_claim
version: 1.0.0
description: Expense claims, for the executor's tests
fields:
  employee: {type: string, required: true}
  amount: {type: money, required: true, data_class: derived}
parameters:
  approver_group: {type: string, default: managers}
decision:
  rules:
    - {name: straight_through, when: "true", outcome: auto_execute}
plan:
  - name: create_claim
    target: http://erp/claims
    payload: {employee: "${fields.employee}", amount: "${fields.amount}"}
    retry: {max_attempts: 3, backoff: 10ms, max_backoff: 100ms}
    compensate: {target: "http://erp/claims/{idempotency_key}", operation: DELETE}
  - approval: {name: manager_ok, group: "${params.approver_group}", queue: finance,
               instructions: "Approve the claim of ${fields.employee}"}
  - parallel:
      - {name: notify, target: http://sis/notices,
         payload: {claim: "${steps.create_claim.output.id}"}}
      - {name: book, target: http://erp/ledger, when: "fields.amount > 1000.0",
         payload: {amount: "${fields.amount}"}}
  - wait: {name: cooling_off, duration: 2s}
  - name: close
    target: http://erp/closed
    payload: {by: "${steps.manager_ok.output.approved_by}", booked: "${steps.book.status}"}
"""


async def all_escalations(settings: Settings, task_id: str, count: int,
                          timeout_s: float = 60) -> list[Escalation]:
    """Every escalation of the task on the topic, once ``count`` have arrived."""
    consumer = AIOKafkaConsumer(ESCALATIONS.full_name(settings),
                                bootstrap_servers=settings.kafka_bootstrap_servers,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    found: list[Escalation] = []
    try:
        deadline = time.monotonic() + timeout_s
        while len(found) < count and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                found += [e for e in map(Escalation.FromString, (r.value for r in records))
                          if e.task_id == task_id]
    finally:
        await consumer.stop()
    return found


async def test_a_pack_plan_runs_with_mapping_approval_parallel_condition_and_timer(
        harness: Harness, exec_settings: Settings) -> None:
    from switchyard.packs import load_pack_files, plan_to_proto

    pack = load_pack_files({"pack.yaml": EXPENSE_PACK})
    (task_id,) = await harness.seed(1, kind="expense_claim")
    d = decision(task_id, "acme", [])
    d.plan.CopyFrom(plan_to_proto(pack))
    d.pack, d.pack_version, d.rule = pack.name, pack.version, "straight_through"
    with_fields(d, **{name: (value, pack.fields[name].type)
                      for name, value in (("employee", "Ann Lee"), ("amount", "42.50"))})
    await harness.send([d])
    await harness.wait([task_id], lambda s, st, r: st == "AWAITING_REVIEW", what="in review")
    escalation = (await escalations_for(exec_settings, {task_id}))[task_id]
    assert (escalation.queue, escalation.reviewer_group, escalation.step_id,
            escalation.instructions) == ("finance", "managers", "2-manager_ok",
                                         "Approve the claim of Ann Lee")
    # the rendered instructions name a person: only the escalation carries them
    assert escalation.reason_detail == "waiting for a person to approve step manager_ok"
    assert "Ann Lee" not in (await harness.job(task_id))["reason"]
    # the decision re-driven while it waits: the same escalation again, rendered the same
    await harness.send([d])
    again = await all_escalations(exec_settings, task_id, 2)
    assert [(e.escalation_id, e.instructions) for e in again] == [
        (escalation.escalation_id, "Approve the claim of Ann Lee")] * 2
    approval = verdict(escalation.proposed_decision,
                       DecisionOutcome.DECISION_OUTCOME_AUTO_EXECUTE, "approved")
    await harness.send([approval])
    assert (await harness.wait([task_id]))[task_id] == ("SUCCEEDED", "DONE", "executed")
    assert outcomes(await harness.executions(task_id)) == {
        "1-create_claim": "SUCCEEDED", "2-manager_ok": "SUCCEEDED", "3-notify": "SUCCEEDED",
        "4-book": "SKIPPED_CONDITION", "5-cooling_off": "SUCCEEDED", "6-close": "SUCCEEDED"}
    stored = await bodies(harness, task_id)
    claim = next(e for e in await harness.effects([task_id])
                 if e["idempotency_key"].endswith("1-create_claim"))
    assert stored == {"1-create_claim": {"employee": "Ann Lee", "amount": 42.5},
                      "3-notify": {"claim": claim["id"]},
                      "6-close": {"by": "rev-acme", "booked": "skipped_condition"}}
