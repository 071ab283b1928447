"""A pack nobody shipped, applied to a running stack, drives every plan feature end to end.

The pack (expense claims) is written here, in the test: applied through PackService to the
running decision service (no restart), it decides tasks submitted over gRPC with its own
decision table, and the executor runs its plan against the demo downstream on the real broker,
PostgreSQL and Triton: payload mapping, a `when` condition, two steps in parallel, a human
approval in the middle of the plan, a durable timer, a callback wait, and a compensation when a
later step fails permanently.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from google.protobuf.struct_pb2 import Struct

from switchyard import Settings
from switchyard.rpc import create_channel, field_violations
from switchyard.storage import connect
from switchyard.v1 import (
    ApplyPackRequest,
    ApplyTenantSettingsRequest,
    ClaimRequest,
    CompleteWaitRequest,
    DataClass,
    DecideRequest,
    DecisionServiceStub,
    Document,
    EscalationReason,
    ExecutorServiceStub,
    GetTaskRequest,
    IngestServiceStub,
    ListQueueRequest,
    PackFile,
    PackServiceStub,
    PackSource,
    ReviewServiceStub,
    ReviewVerdict,
    Submission,
    SubmitTaskRequest,
    SubmitVerdictRequest,
    Task,
    TaskEnvelope,
    TaskStatus,
    Verdict,
)
from tests.terminal import TERMINAL_STATUSES

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("pipeline")]
TENANT = "globex"

PACK = """\
pack: expense_claim
version: 1.0.0
description: Employee expense claims, paid out after a manager's approval
content_types: [text/plain]
fields:
  employee: {type: string, required: true, data_class: personal, labels: [Employee]}
  amount:   {type: money, required: true, data_class: derived, labels: [Total]}
  category: {type: enum, values: [travel, meals, lodging], data_class: derived,
             labels: [Category]}
  reply_by: {type: enum, values: [mail, phone], data_class: personal, labels: [Reply by]}
parameters:
  approval_over: {type: number, default: 100, minimum: 0}
  reject_over:   {type: number, default: 5000, minimum: 0}
decision:
  hit_policy: first
  rules:
    - name: too_large
      when: fields.amount > params.reject_over
      outcome: reject
      explain: "A claim of ${fields.amount} is above ${params.reject_over}."
    - name: accept_claim
      when: "true"
      outcome: auto_execute
      explain: "A ${fields.category} claim of ${fields.amount} from ${fields.employee}
        (reply by ${fields.reply_by}); receipts came by mail."
plan:
  - name: record_claim
    target: http://erp/claims
    operation: POST
    payload:
      employee: ${fields.employee}
      amount: ${fields.amount}
      reference: "claim ${metadata.ref} of ${task.tenant_id}"
    compensate:
      target: "http://erp/claims/{idempotency_key}"
      operation: DELETE
  - approval:
      name: manager_ok
      when: fields.amount > params.approval_over
      group: managers
      instructions: "Approve the payout of ${fields.amount}"
  - parallel:
      - {name: notify_employee, target: http://helpdesk/notes,
         payload: {text: "Your claim ${metadata.ref} is approved"}}
      - {name: book_expense, target: http://erp/ledger,
         payload: {amount: "${fields.amount}", category: "${fields.category}"},
         compensate: {target: "http://erp/ledger/{idempotency_key}", operation: DELETE}}
  - wait: {name: cooling_off, duration: 2s}
  - name: payout
    target: http://erp/payouts
    payload: {amount: "${fields.amount}", booked: "${steps.book_expense.status}"}
    retry: {max_attempts: 2, backoff: 50ms, max_backoff: 200ms}
    timeout: 5s
  - wait: {name: bank_confirmation, callback: bank, timeout: 1h}
tests:
  - name: a small claim runs straight through
    document: {text: "Employee: Ann Lee\\nCategory: meals\\nTotal: 42.50 EUR"}
    expect: {outcome: auto_execute, rule: accept_claim, fields: {amount: "42.50"}}
"""


def struct(values: dict[str, Any]) -> Struct:
    message = Struct()
    message.update(values)
    return message


def claim(employee: str, amount: str, category: str = "travel") -> bytes:
    return (f"Expense claim\nEmployee: {employee}\nCategory: {category}\nTotal: {amount} EUR\n"
            "Reply by: mail\n").encode()


@pytest.fixture(scope="module")
def api_keys() -> dict[str, str]:
    return {"admin": "k-admin-" + uuid.uuid4().hex, "submitter": "k-sub-" + uuid.uuid4().hex,
            "manager": "k-mgr-" + uuid.uuid4().hex}


class Stubs:
    def __init__(self, settings: Settings) -> None:
        self.channels = {name: create_channel(f"127.0.0.1:{port}") for name, port in {
            "ingest": settings.ingest_grpc_port, "decision": settings.decision_grpc_port,
            "executor": settings.executor_grpc_port, "review": settings.review_grpc_port,
        }.items()}
        self.ingest = IngestServiceStub(self.channels["ingest"])
        self.packs = PackServiceStub(self.channels["decision"])
        self.decision = DecisionServiceStub(self.channels["decision"])
        self.executor = ExecutorServiceStub(self.channels["executor"])
        self.review = ReviewServiceStub(self.channels["review"])

    async def close(self) -> None:
        for channel in self.channels.values():
            await channel.close()


@pytest.fixture
async def stubs(settings: Settings) -> AsyncIterator[Stubs]:
    s = Stubs(settings)
    yield s
    await s.close()


async def apply(stubs: Stubs, text: str = PACK, tenant: str = TENANT) -> None:
    await stubs.packs.ApplyPack(ApplyPackRequest(
        tenant_id=tenant, source=PackSource(files=[PackFile(path="pack.yaml",
                                                            content=text.encode())])))


async def submit(stubs: Stubs, body: bytes, ref: str, tenant: str = TENANT) -> str:
    reply = await stubs.ingest.SubmitTask(SubmitTaskRequest(submission=Submission(
        tenant_id=tenant, idempotency_key=uuid.uuid4().hex, kind="expense_claim",
        metadata={"ref": ref}, document=Document(content_type="text/plain", body=body))))
    return reply.task_id


async def wait_task(stubs: Stubs, task_id: str, predicate: Any, timeout_s: float = 90) -> Task:
    deadline = time.monotonic() + timeout_s
    while True:
        task = (await stubs.ingest.GetTask(GetTaskRequest(task_id=task_id))).task
        if predicate(task):
            return task
        if time.monotonic() > deadline:
            raise AssertionError(f"{task_id}: {TaskStatus.Name(task.status)} {task.reason}")
        await asyncio.sleep(0.2)


async def effects(settings: Settings, task_id: str) -> dict[str, dict[str, Any]]:
    conn = await connect(settings)
    try:
        rows = await conn.fetch(
            f'SELECT idempotency_key, system, collection, status, body FROM '
            f'"{settings.postgres_schema}_downstream".effects WHERE task_id = $1', task_id)
    finally:
        await conn.close()
    return {r["idempotency_key"].split(":", 1)[1]: {
        "where": f"{r['system']}/{r['collection']}", "status": r["status"],
        "body": json.loads(r["body"]) if isinstance(r["body"], str) else r["body"]}
        for r in rows}


async def executions(settings: Settings, task_id: str) -> dict[str, str]:
    conn = await connect(settings)
    try:
        rows = await conn.fetch("SELECT step_id, outcome FROM executions WHERE task_id = $1",
                                uuid.UUID(task_id))
    finally:
        await conn.close()
    return {r["step_id"]: r["outcome"] for r in rows}


async def until(probe: Any, what: str, timeout_s: float = 90) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def review_item(stubs: Stubs, task_id: str, tenant: str = TENANT) -> Any:
    async def find() -> Any:
        page = await stubs.review.ListQueue(ListQueueRequest(page_size=500, tenant_id=tenant))
        return next((i for i in page.items if i.escalation.task_id == task_id), None)
    return await until(find, f"the review item of {task_id}")


async def set_fault(settings: Settings, path: str, profile: dict[str, Any] | None) -> None:
    url = f"http://127.0.0.1:{settings.downstream_http_port}/_/faults/{path}"
    async with aiohttp.ClientSession() as http:
        if profile is None:
            async with http.delete(url) as reply:
                assert reply.status < 300, await reply.text()
        else:
            async with http.put(url, json=profile) as reply:
                assert reply.status < 300, await reply.text()


def done(task: Task) -> bool:
    return task.status in TERMINAL_STATUSES


def cli(settings: Settings, *args: str) -> str:
    """``switchyard ...`` as a person runs it, against this module's services."""
    done = subprocess.run([sys.executable, "-m", "switchyard", *args],
                          env={**os.environ, **settings.to_env()}, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_a_pack_written_here_runs_every_plan_feature(stubs: Stubs, settings: Settings,
                                                           tmp_path: Path) -> None:
    await apply(stubs)
    # the pack decides at once, with its own table: no restart, no code
    decided = (await stubs.decision.Decide(DecideRequest(task=TaskEnvelope(
        task_id=str(uuid.uuid4()), tenant_id=TENANT, kind="expense_claim",
        document=Document(content_type="text/plain", body=claim("Ann Lee", "42.50")))))
    ).decision
    assert (decided.pack, decided.pack_version, decided.rule) == \
        ("expense_claim", "1.0.0", "accept_claim")
    assert decided.extracted_fields["amount"] in ("42.5", "42.50")
    # the explanation (stored in plaintext, published on task-status) quotes the personal
    # fields as their labels and keeps its own words: its "mail" is not the field's "mail"
    assert decided.explanation.endswith("A travel claim of 42.5 from [EMPLOYEE REDACTED] "
                                        "(reply by [REPLY_BY REDACTED]); receipts came by "
                                        "mail."), decided.explanation
    classes = {f.name: f.data_class for f in decided.fields}
    assert classes["employee"] == DataClass.DATA_CLASS_PERSONAL
    assert classes["amount"] == DataClass.DATA_CLASS_DERIVED

    # -- a large claim: mapping, a person's approval mid-plan, parallel steps, a timer, a
    # step reading an earlier step's status, a callback
    # submitted the way a person does, from a file with the CLI (metadata included)
    claim_file = tmp_path / "claim-r1.txt"
    claim_file.write_bytes(claim("Ann Lee", "250.00", "travel"))
    submitted = cli(settings, "submit", str(claim_file), "--tenant", TENANT, "--kind",
                    "expense_claim", "--metadata", "ref=R-1", "--json")
    big = json.loads(submitted)[0]["task_id"]
    item = await review_item(stubs, big)
    assert item.escalation.reason == EscalationReason.ESCALATION_REASON_APPROVAL_STEP
    assert item.escalation.step_id == "2-manager_ok"
    assert item.escalation.reviewer_group == "managers"
    assert item.escalation.instructions.startswith("Approve the payout of 250")
    before = await effects(settings, big)
    assert set(before) == {"1-record_claim"}, before  # nothing after the approval ran yet
    assert before["1-record_claim"]["body"] == {
        "employee": "Ann Lee", "amount": 250.0, "reference": f"claim R-1 of {TENANT}"}

    # a new version is applied while the task waits: the task finishes on 1.0.0
    await apply(stubs, PACK.replace("version: 1.0.0", "version: 1.1.0")
                .replace("Your claim ${metadata.ref} is approved",
                         "v1.1: claim ${metadata.ref} approved"))

    await stubs.review.Claim(ClaimRequest(item_id=item.item_id, reviewer_id="maria"))
    # the amount went to the ERP before this approval: a corrected amount would reach the
    # payout but not the recorded claim, so it is refused; the category goes out after it
    with pytest.raises(grpc.aio.AioRpcError) as sent:
        await stubs.review.SubmitVerdict(SubmitVerdictRequest(verdict=ReviewVerdict(
            item_id=item.item_id, reviewer_id="maria", verdict=Verdict.VERDICT_MODIFY,
            modified_fields={"amount": "205.00", "category": "lodging"})))
    assert sent.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(sent.value)["verdict.modified_fields['amount']"].startswith(
        "step record_claim already sent this field before this approval")
    await stubs.review.SubmitVerdict(SubmitVerdictRequest(verdict=ReviewVerdict(
        item_id=item.item_id, reviewer_id="maria", verdict=Verdict.VERDICT_MODIFY,
        modified_fields={"category": "lodging"})))

    async def waiting_for_bank() -> bool:
        return (await executions(settings, big)).get("7-bank_confirmation") == \
            "STEP_OUTCOME_WAITING"
    await until(waiting_for_bank, "the callback wait")
    task = (await stubs.ingest.GetTask(GetTaskRequest(task_id=big))).task
    assert task.status not in TERMINAL_STATUSES  # durably waiting for the bank
    # the bank's callback, through the CLI (ExecutorService.CompleteWait)
    answered = json.loads(cli(settings, "tasks", "complete-wait", f"{big}:7-bank_confirmation",
                              "--output", '{"confirmation": "BANK-77"}', "--json"))
    assert answered == {"task_id": big, "step_id": "7-bank_confirmation"}
    with pytest.raises(grpc.aio.AioRpcError) as late:  # the step is not waiting any more
        await stubs.executor.CompleteWait(CompleteWaitRequest(
            token=f"{big}:7-bank_confirmation", output=struct({"confirmation": "again"})))
    assert late.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    task = await wait_task(stubs, big, done)
    assert TaskStatus.Name(task.status) == "TASK_STATUS_SUCCEEDED", task.reason

    after = await effects(settings, big)
    assert set(after) == {"1-record_claim", "3-notify_employee", "4-book_expense",
                          "6-payout"}, after
    assert after["3-notify_employee"]["body"] == {"text": "Your claim R-1 is approved"}
    assert after["4-book_expense"]["body"] == {"amount": 250.0, "category": "lodging"}
    assert after["6-payout"]["body"] == {"amount": 250.0, "booked": "succeeded"}
    steps = await executions(settings, big)
    assert steps["2-manager_ok"] == steps["5-cooling_off"] == \
        steps["7-bank_confirmation"] == "STEP_OUTCOME_SUCCEEDED", steps
    conn = await connect(settings)
    try:
        times = {r["key"].split(":", 1)[1]: r["created_at"] for r in await conn.fetch(
            f'SELECT idempotency_key AS key, created_at FROM '
            f'"{settings.postgres_schema}_downstream".effects WHERE task_id = $1', big)}
    finally:
        await conn.close()
    # the timer held the plan between the booking and the payout
    assert (times["6-payout"] - times["4-book_expense"]).total_seconds() >= 1.9

    # -- a small claim: the approval's condition is false (skipped); the payout fails
    # permanently, so the finished steps are compensated in reverse order
    await set_fault(settings, "erp/payouts", {"error_rate": 1.0, "error_status": 422})
    try:
        small = await submit(stubs, claim("Bo Chen", "40.00", "meals"), "R-2")
        task = await wait_task(stubs, small, done)
    finally:
        await set_fault(settings, "erp/payouts", None)
    assert TaskStatus.Name(task.status) == "TASK_STATUS_FAILED", task.reason
    steps = await executions(settings, small)
    assert steps["2-manager_ok"] == "STEP_OUTCOME_SKIPPED_CONDITION", steps
    assert steps["6-payout"] == "STEP_OUTCOME_FAILED_PERMANENT", steps
    undone = await effects(settings, small)
    assert undone["1-record_claim"]["status"] == "reversed"
    assert undone["4-book_expense"]["status"] == "reversed"
    assert undone["3-notify_employee"]["status"] == "active"  # nothing undoes a message
    # the new version's plan for tasks decided after it was applied
    assert undone["3-notify_employee"]["body"] == {"text": "v1.1: claim R-2 approved"}


#: The claims pack with escalating rules before its plan: large claims go to finance (two
#: approvals), lodging to any reviewer. Applied for a tenant of its own (the newest version
#: of a pack is the one in effect).
CHECKED_TENANT = "initech"
CHECKED_PACK = PACK.replace("version: 1.0.0", "version: 2.0.0").replace(
    "labels: [Reply by]}", "labels: [Reply by], aliases: {post: mail}}").replace(
    """    - name: accept_claim
""", """    - name: finance_review
      when: fields.amount > 1000.0
      outcome: escalate
      explain: "A claim of ${fields.amount} needs finance."
      review: {group: finance, four_eyes: true}
    - name: lodging_receipt
      when: fields.category == 'lodging'
      outcome: escalate
      explain: "Lodging needs its receipt checked."
    - name: accept_claim
""")


async def test_a_reviewers_edits_are_put_to_the_packs_rules(stubs: Stubs,
                                                            settings: Settings) -> None:
    """An approval with edits is refused where the pack's rules, run on the edited fields,
    reject the task or send it to other reviewers; edits the rules allow run the plan. (The
    claim writes its withheld reply channel by an alias, ``post`` for ``mail``: the
    reviewer's copy of the text masks it after its label.)"""
    await apply(stubs, CHECKED_PACK, tenant=CHECKED_TENANT)
    body = claim("Ann Lee", "80.00", "lodging").replace(b"Reply by: mail", b"Reply by: post")
    task_id = await submit(stubs, body, "R-9", tenant=CHECKED_TENANT)
    item = await review_item(stubs, task_id, tenant=CHECKED_TENANT)
    assert item.escalation.proposed_decision.rule == "lodging_receipt"
    text = item.escalation.task.document.body.decode()
    assert "Reply by: [REPLY_BY REDACTED]" in text and "post" not in text, text
    reply_by = {f.name: f for f in item.escalation.proposed_decision.fields}["reply_by"]
    assert reply_by.value == "[REPLY_BY REDACTED]" and not reply_by.HasField("written")
    await stubs.review.Claim(ClaimRequest(item_id=item.item_id, reviewer_id="maria"))

    async def refused(amount: str) -> str:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stubs.review.SubmitVerdict(SubmitVerdictRequest(verdict=ReviewVerdict(
                item_id=item.item_id, reviewer_id="maria", verdict=Verdict.VERDICT_MODIFY,
                modified_fields={"amount": amount})))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value
        return field_violations(caught.value)["verdict.modified_fields"]
    # past the pack's reject limit (5000): no approval carries it through
    assert await refused("9,000") == (
        "with the edits to amount, rule too_large of pack expense_claim rejects the task "
        "(A claim of 9000 is above 5000.): reject it, or change the edits")
    # above 1000: finance's rule, two approvals, which this item does not have
    assert await refused("2000") == (
        "with the edits to amount, rule finance_review of pack expense_claim asks for two "
        "approvals (four eyes) and this item has one and goes to reviewer group 'finance' "
        "(this item's: none): reject it with the reason (the document can be submitted "
        "again), or change the edits")
    # the item is still claimed and undecided; an edit the rules allow is carried out
    await stubs.review.SubmitVerdict(SubmitVerdictRequest(verdict=ReviewVerdict(
        item_id=item.item_id, reviewer_id="maria", verdict=Verdict.VERDICT_MODIFY,
        modified_fields={"amount": "90.00"}, reason="the receipt says 90")))

    async def recorded() -> dict[str, Any] | None:
        return (await effects(settings, task_id)).get("1-record_claim")
    claimed = await until(recorded, "the claim to be recorded")
    assert claimed["body"]["amount"] == 90.0
    conn = await connect(settings)
    try:
        detail = await conn.fetchval(
            "SELECT detail FROM audit_log WHERE action = 'review.verdict' "
            "AND task_id = $1", uuid.UUID(task_id))
    finally:
        await conn.close()
    detail = json.loads(detail) if isinstance(detail, str) else detail
    assert detail["rule_with_edits"] == "lodging_receipt", detail


async def test_a_withheld_answer_that_does_not_parse_is_masked_for_the_reviewer(
        stubs: Stubs) -> None:
    """A claim answers its withheld reply channel with words the pack's enum does not list:
    the field stays empty, and the reviewer's copy of the claim masks the answer after its
    label all the same (it is the employee's data whatever its type)."""
    await apply(stubs, CHECKED_PACK, tenant=CHECKED_TENANT)
    body = claim("Ann Lee", "70.00", "lodging").replace(
        b"Reply by: mail", b"Reply by: courier to 12 Elm Street, flat 3")
    task_id = await submit(stubs, body, "R-11", tenant=CHECKED_TENANT)
    item = await review_item(stubs, task_id, tenant=CHECKED_TENANT)
    text = item.escalation.task.document.body.decode()
    assert "Reply by: [REPLY_BY REDACTED]\n" in text and "Elm" not in text, text
    reply_by = {f.name: f for f in item.escalation.proposed_decision.fields}["reply_by"]
    assert reply_by.value == "" and not reply_by.HasField("written")


async def test_tenant_settings_change_decisions_without_a_restart(stubs: Stubs) -> None:
    await apply(stubs)

    async def rule_for(amount: str) -> str:
        reply = await stubs.decision.Decide(DecideRequest(task=TaskEnvelope(
            task_id=str(uuid.uuid4()), tenant_id=TENANT, kind="expense_claim",
            document=Document(content_type="text/plain", body=claim("Ann Lee", amount)))))
        return reply.decision.rule
    assert await rule_for("2000.00") == "accept_claim"
    await stubs.packs.ApplyTenantSettings(ApplyTenantSettingsRequest(
        tenant_id=TENANT,
        document=b"packs:\n  expense_claim:\n    parameters: {reject_over: 1000}\n"))

    async def rejected() -> bool:
        return await rule_for("2000.00") == "too_large"
    await until(rejected, "the tenant's override to apply")
    # a mistake is refused with one line per problem, and the running settings stay
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stubs.packs.ApplyTenantSettings(ApplyTenantSettingsRequest(
            tenant_id=TENANT, document=b"packs:\n  expense_claim:\n    parameters:\n"
                                       b"      reject_over: -5\n      no_such: 1\n"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    problems = field_violations(caught.value)
    assert len(problems) == 2, problems
    assert await rule_for("2000.00") == "too_large"
    await stubs.packs.ApplyTenantSettings(ApplyTenantSettingsRequest(
        tenant_id=TENANT, document=b"packs: {}\n"))
