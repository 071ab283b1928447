"""Retention purge on real PostgreSQL: payloads go, derived signals and the audit chain stay."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from pathlib import Path

import asyncpg
import pytest

from services.decision.labels import labelled_examples, record_pending, record_verdicts
from services.executor.jobs import JobStore
from services.executor.runner import output_id
from services.ingest.domain import build_envelope, payload_sha256
from services.ingest.store import accept
from services.review.queue import ReviewQueue
from services.review.resolutions import store_decision
from switchyard import Settings
from switchyard.audit import append, digest
from switchyard.storage import (
    APPROVAL,
    DECISION,
    EXECUTION_OUTPUT,
    INVOICE_FIELDS,
    JOB_DECISION,
    REVIEW_DECISION,
    REVIEW_ESCALATION,
    TASK_ENVELOPE,
    VERDICT,
    PayloadCodec,
    codec_for,
    connect,
    create_pool,
    purge,
)
from switchyard.v1 import (
    Decision,
    DecisionOutcome,
    DecisionSource,
    Document,
    Escalation,
    ExecutionResult,
    FieldExtraction,
    ReviewVerdict,
    StepOutcome,
    Submission,
    TaskEnvelope,
    TaskSource,
    Verdict,
)
from tests.document_samples import text_pdf

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SECRET = "Card 4111 1111 1111 1111, patient Jane Roe"
IBAN = "DE89370400440532013000"
MEMBER_REF = "s_4f1c9e2ab07d"   # a pseudonym: nothing a PII detector finds
REASON = "New account confirmed by phone with Jane Roe"  # no detector finds a name
ANSWER = '{"data": {"payee": "Jane Roe Consulting"}}'


async def seed(settings: Settings) -> dict[str, str]:
    conn = await connect(settings)
    ids = {}
    try:
        for tenant, age_days, status in (("short", 3, "SUCCEEDED"), ("long", 3, "FAILED"),
                                         ("short", 3, "IN_PROGRESS")):
            sub = Submission(tenant_id=tenant, idempotency_key=uuid.uuid4().hex, kind="other",
                             document=Document(body=SECRET.encode()))
            envelope = build_envelope(sub, str(uuid.uuid4()), TaskSource.TASK_SOURCE_GRPC)
            await accept(conn, envelope, payload_sha256(sub))
            await conn.execute(
                "UPDATE tasks SET status = $2, updated_at = now() - $3::interval "
                "WHERE task_id = $1", uuid.UUID(envelope.task_id), status,
                timedelta(days=age_days))
            await append(conn, tenant, "ingest", "task.accepted",
                         {"input_sha256": digest(SECRET)}, envelope.task_id, writer="ingest")
            ids[f"{tenant}-{status}"] = envelope.task_id
    finally:
        await conn.close()
    return ids


def run_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **settings.to_env(), "SWITCHYARD_RETENTION_DAYS": "30",
           "SWITCHYARD_RETENTION_OVERRIDES": "short:1"}
    return subprocess.run([sys.executable, "-m", "switchyard", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_purge_keeps_derived_data_and_the_audit_chain(settings: Settings) -> None:
    ids = asyncio.run(seed(settings))
    dry = run_cli(settings, "purge", "--dry-run")
    assert "would purge payloads of 1 task(s)" in dry.stdout, dry.stdout + dry.stderr
    done = run_cli(settings, "purge")
    assert "purged payloads of 1 task(s)" in done.stdout, done.stdout + done.stderr

    async def rows() -> dict[str, tuple[str, bytes, bool]]:
        conn = await connect(settings)
        try:
            out = {}
            for name, task_id in ids.items():
                row = await conn.fetchrow("SELECT status, envelope, purged_at IS NOT NULL AS p "
                                          "FROM tasks WHERE task_id = $1", uuid.UUID(task_id))
                out[name] = (row["status"], TaskEnvelope.FromString(row["envelope"])
                             .document.body, row["p"])
            return out
        finally:
            await conn.close()

    state = asyncio.run(rows())
    assert state["short-SUCCEEDED"] == ("SUCCEEDED", b"", True)       # past 1-day retention
    assert state["long-FAILED"] == ("FAILED", SECRET.encode(), False)  # 30 days: kept
    assert state["short-IN_PROGRESS"][2] is False                       # never while open
    verified = run_cli(settings, "audit", "verify")
    assert verified.returncode == 0, verified.stdout


def test_purge_removes_what_the_metadata_kept_of_an_e_mails_content(settings: Settings
                                                                    ) -> None:
    """An e-mail is stored as the document it carries, its headers and cover text in the
    task's metadata: purge takes its subject, text and attachments' names with the document,
    and passes the rest through the PII detectors like any metadata."""
    message = EmailMessage()
    message["From"], message["To"] = "jane.roe@example.org", "ap@acme.example"
    message["Subject"] = "Invoice for Jane Roe"
    message.set_content(f"Please pay to {IBAN}.")
    message.add_attachment(text_pdf(), maintype="application", subtype="pdf",
                           filename="jane-roe.pdf")

    async def seed_and_read(purged: bool) -> dict[str, str]:
        conn = await connect(settings)
        try:
            if not purged:
                sub = Submission(tenant_id="mailer", idempotency_key=uuid.uuid4().hex,
                                 document=Document(content_type="message/rfc822",
                                                   body=bytes(message)))
                envelope = build_envelope(sub, str(uuid.uuid4()), TaskSource.TASK_SOURCE_GRPC)
                await accept(conn, envelope, payload_sha256(sub))
                await conn.execute("UPDATE tasks SET status = 'SUCCEEDED', updated_at = now() - "
                                   "interval '3 days' WHERE task_id = $1",
                                   uuid.UUID(envelope.task_id))
                return dict(envelope.metadata)
            row = await conn.fetchval("SELECT envelope FROM tasks WHERE tenant_id = 'mailer'")
            return dict(TaskEnvelope.FromString(row).metadata)
        finally:
            await conn.close()

    kept = asyncio.run(seed_and_read(False))
    assert kept["email_subject"] == "Invoice for Jane Roe" and IBAN in kept["email_text"]
    assert kept["email_attachments"] == "jane-roe.pdf"
    env = {**os.environ, **settings.to_env(), "SWITCHYARD_RETENTION_DAYS": "30",
           "SWITCHYARD_RETENTION_OVERRIDES": "mailer:1"}
    done = subprocess.run([sys.executable, "-m", "switchyard", "purge"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    after = asyncio.run(seed_and_read(True))
    assert not {"email_subject", "email_text", "email_attachments"} & set(after), after
    assert after["email_to"] == "ap@acme.example" or "REDACTED" in after["email_to"]
    assert "jane.roe@example.org" not in after["email_from"], after


def sealed_settings(settings: Settings) -> Settings:
    key = base64.b64encode(os.urandom(32)).decode()
    return settings.replace(encryption_keys=f"r1:{key}", encryption_active_key="r1")


async def store_model_decision(conn: asyncpg.Connection, decision: Decision,
                               codec: PayloadCodec) -> None:
    """The decision service's row for a model decision, as it stores one."""
    await conn.execute(
        "INSERT INTO decisions (decision_id, task_id, tenant_id, source, outcome, confidence, "
        "rule, explanation, decision, pack) VALUES ($1, $2, $3, 'MODEL', 'ESCALATE', 0.5, $4, "
        "$5, $6, $7)", uuid.UUID(decision.decision_id), uuid.UUID(decision.task_id),
        decision.tenant_id, decision.rule, decision.explanation,
        codec.seal(decision.decision_id, decision.SerializeToString(), DECISION), decision.pack)


async def seed_decided_invoice(settings: Settings) -> dict[str, str]:
    """A terminal invoice task as the services leave it: model decision, executor job,
    review item with the proposal, a reviewer's edit and reason, the step's execution with
    what was kept of the ERP's answer, the invoice's sealed fields."""
    codec = codec_for(settings)
    pool = await create_pool(settings.replace(postgres_pool_min=1, postgres_pool_max=2))
    try:
        async with pool.acquire() as conn:
            sub = Submission(tenant_id="pii", idempotency_key=uuid.uuid4().hex, kind="invoice",
                             metadata={"contact": "jane.roe@example.org", "po": "PO-1",
                                       "member": MEMBER_REF},
                             document=Document(content_type="text/plain",
                                               body=f"IBAN {IBAN}".encode()))
            envelope = build_envelope(sub, str(uuid.uuid4()), TaskSource.TASK_SOURCE_GRPC)
            await accept(conn, envelope, payload_sha256(sub), codec=codec)
            decision = Decision(
                decision_id=str(uuid.uuid4()), task_id=envelope.task_id, tenant_id="pii",
                outcome=DecisionOutcome.DECISION_OUTCOME_ESCALATE, rule="invoice_risk",
                explanation="Invoice INV-77 for EUR 10.00: needs a person",
                fields=[FieldExtraction(name="bank_account", value=IBAN),
                        FieldExtraction(name="member", value=MEMBER_REF)],
                extracted_fields={"bank_account": IBAN})
            decision.plan.steps.add(step_id="1-post_invoice", name="post_invoice").payload.update(
                {"fields": {"bank_account": IBAN}})
            await store_model_decision(conn, decision, codec)
            jobs = JobStore(pool, "retention-test", 30, codec)
            await jobs.start(decision, datetime.now(timezone.utc) + timedelta(hours=1))
            escalation = Escalation(escalation_id=str(uuid.uuid4()), task_id=envelope.task_id,
                                    tenant_id="pii", queue="default", task=envelope,
                                    reason_detail=decision.explanation)
            escalation.proposed_decision.CopyFrom(decision)
            queue = ReviewQueue(pool, codec)
            await queue.enqueue(escalation)
            item_id = await conn.fetchval("SELECT item_id FROM review_items WHERE task_id = $1",
                                          uuid.UUID(envelope.task_id))
            verdict = ReviewVerdict(item_id=str(item_id), reviewer_id="rita",
                                    verdict=Verdict.VERDICT_MODIFY, reason=REASON,
                                    modified_fields={"bank_account": IBAN})
            await conn.execute(
                "INSERT INTO review_verdicts (item_id, task_id, reviewer_id, verdict, reason, "
                "verdict_pb) VALUES ($1, $2, 'rita', 'MODIFY', $3, $4)", item_id,
                uuid.UUID(envelope.task_id), verdict.reason,
                codec.seal(item_id, verdict.SerializeToString(), VERDICT))
            # the decision the reviewer's edit became: the review service's own record
            human = Decision()
            human.CopyFrom(decision)
            human.decision_id, human.reviewer_id = str(uuid.uuid4()), "rita"
            human.source = DecisionSource.DECISION_SOURCE_HUMAN
            human.explanation = f"Reviewer rita: {decision.explanation}"
            await store_decision(conn, item_id, human, codec)
            # the labelled example the escalation kept, settled by the reviewer's edit
            await record_pending(conn, [(decision, f"Invoice INV-77 IBAN {IBAN}")], codec)
            human.rule = "reviewer_modify"
            human.fields[0].value = IBAN.replace("0", "1")
            assert await record_verdicts(pool, [human], codec) == 1
            # four eyes: the first approval is kept apart, shaped like the verdict
            await conn.execute(
                "INSERT INTO review_approvals (item_id, task_id, reviewer_id, verdict, reason, "
                "verdict_pb) VALUES ($1, $2, 'ann', 'MODIFY', $3, $4)", item_id,
                uuid.UUID(envelope.task_id), verdict.reason,
                codec.seal(item_id, verdict.SerializeToString(), APPROVAL))
            # what the executor kept of the ERP's answer (names pass the PII detectors)
            result = ExecutionResult(task_id=envelope.task_id, step_id="1-post_invoice",
                                     outcome=StepOutcome.STEP_OUTCOME_SUCCEEDED,
                                     response_summary=f"HTTP 201 {ANSWER}", error=ANSWER)
            result.output.update({"data": {"answer": ANSWER}})
            # ... and the whole answer, sealed, for later steps' templates
            full_id = output_id(envelope.task_id, "1-post_invoice")
            await conn.execute(
                "INSERT INTO executions (task_id, step_id, idempotency_key, outcome, attempts, "
                "error, result, output_id, output) VALUES ($1, '1-post_invoice', 'k1', "
                "'STEP_OUTCOME_SUCCEEDED', 1, $2, $3, $4, $5)", uuid.UUID(envelope.task_id),
                ANSWER, result.SerializeToString(), full_id,
                codec.seal(full_id, json.dumps({"bank_account": IBAN}).encode(),
                           EXECUTION_OUTPUT))
            await conn.execute("UPDATE executor_jobs SET reason = $2 WHERE task_id = $1",
                               uuid.UUID(envelope.task_id), f"failed: {ANSWER}")
            await conn.execute(
                "INSERT INTO decision_invoices (task_id, tenant_id, vendor_hash, number_hash, "
                "bank_hash, amount, currency, fields, p_auto, auto) VALUES "
                "($1, 'pii', 'v', 'n', 'b', 10, 'EUR', $2, 0.4, false)",
                uuid.UUID(envelope.task_id),
                codec.seal(envelope.task_id, json.dumps({"bank_account": IBAN}).encode(),
                           INVOICE_FIELDS))
            # the status event that told of the verdict, with the reviewer's reason (a name
            # stays in it), kept in the history and posted to a webhook
            detail = f"Approved by rita with edits to bank_account: {REASON}"
            await conn.execute(
                "INSERT INTO task_status_history (task_id, seq, status, stage, service, "
                "detail) VALUES ($1, 90, 'EXECUTING', 'review', 'review', $2)",
                uuid.UUID(envelope.task_id), detail)
            await conn.execute(
                "INSERT INTO webhook_deliveries (delivery_id, tenant_id, task_id, seq, url, "
                "body, state) VALUES ($1, 'pii', $2, 90, 'http://127.0.0.1:9/hook', $3, "
                "'delivered')", uuid.uuid4(), uuid.UUID(envelope.task_id), json.dumps(
                    {"delivery_id": "d", "webhook_id": None, "event": {
                        "task_id": envelope.task_id, "status": "TASK_STATUS_EXECUTING",
                        "detail": detail}}, sort_keys=True).encode())
            await conn.execute("UPDATE tasks SET status = 'SUCCEEDED', updated_at = now() - "
                               "interval '3 days' WHERE task_id = $1",
                               uuid.UUID(envelope.task_id))
            return {"task_id": envelope.task_id, "decision_id": decision.decision_id,
                    "item_id": str(item_id)}
    finally:
        await pool.close()


def test_purge_strips_extracted_fields_from_every_column_that_holds_them(
        settings: Settings) -> None:
    sealed = sealed_settings(settings)
    ids = asyncio.run(seed_decided_invoice(sealed))
    codec = codec_for(sealed)

    async def purge_and_read() -> dict[str, object]:
        conn = await connect(sealed)
        try:
            # the dry run counts what the purge then does, row for row (it counted the tasks
            # only: an outside operator saw 0 review items and decisions, then 2 and 4)
            dry = await purge(conn, 1, {"long": 30}, codec=codec, dry_run=True)
            report = await purge(conn, 1, {"long": 30}, codec=codec)
            assert dry == report
            task = uuid.UUID(ids["task_id"])
            decision_row = await conn.fetchrow(
                "SELECT decision_id, decision, explanation FROM decisions WHERE task_id = $1",
                task)
            human = await conn.fetchrow("SELECT decision_id, decision, explanation "
                                        "FROM review_decisions WHERE task_id = $1", task)
            job = await conn.fetchrow("SELECT decision_id, decision FROM executor_jobs "
                                      "WHERE task_id = $1", task)
            item = await conn.fetchrow("SELECT item_id, escalation FROM review_items "
                                       "WHERE task_id = $1", task)
            verdict = await conn.fetchrow("SELECT item_id, verdict_pb, reason "
                                          "FROM review_verdicts WHERE task_id = $1", task)
            approval = await conn.fetchrow("SELECT item_id, verdict_pb, reason "
                                           "FROM review_approvals WHERE task_id = $1", task)
            execution = await conn.fetchrow("SELECT error, result, output FROM executions "
                                            "WHERE task_id = $1", task)
            job_reason = await conn.fetchval("SELECT reason FROM executor_jobs "
                                             "WHERE task_id = $1", task)
            fields = await conn.fetchval("SELECT fields FROM decision_invoices "
                                         "WHERE task_id = $1", task)
            envelope = await conn.fetchval("SELECT envelope FROM tasks WHERE task_id = $1",
                                           task)
            label = await conn.fetchrow("SELECT example, corrections, verdict, "
                                        "corrected_fields, purged_at FROM decision_labels "
                                        "WHERE task_id = $1", task)
            examples = await labelled_examples(conn, codec)
            details = await conn.fetch("SELECT detail FROM task_status_history "
                                       "WHERE task_id = $1 AND seq = 90", task)
            bodies = await conn.fetch("SELECT body FROM webhook_deliveries WHERE task_id = $1",
                                      task)
            return {
                "status_details": [r["detail"] for r in details],
                "webhook_events": [json.loads(r["body"])["event"] for r in bodies],
                "label": label, "examples": [e for e in examples if e.task_id == str(task)],
                "report": report,
                "decision": Decision.FromString(codec.open(
                    decision_row["decision_id"], decision_row["decision"], DECISION)),
                "explanation": decision_row["explanation"],
                "human": Decision.FromString(codec.open(
                    human["decision_id"], human["decision"], REVIEW_DECISION)),
                "human_explanation": human["explanation"],
                "job": Decision.FromString(codec.open(job["decision_id"], job["decision"],
                                                      JOB_DECISION)),
                "escalation": Escalation.FromString(codec.open(
                    item["item_id"], item["escalation"], REVIEW_ESCALATION)),
                "verdict": ReviewVerdict.FromString(codec.open(
                    verdict["item_id"], verdict["verdict_pb"], VERDICT)),
                "verdict_reason": verdict["reason"],
                "approval": ReviewVerdict.FromString(codec.open(
                    approval["item_id"], approval["verdict_pb"], APPROVAL)),
                "approval_reason": approval["reason"],
                "execution_error": execution["error"],
                "execution": ExecutionResult.FromString(execution["result"]),
                "execution_output": execution["output"],
                "job_reason": job_reason,
                "invoice_fields": fields,
                "task": TaskEnvelope.FromString(codec.open(task, envelope, TASK_ENVELOPE)),
            }
        finally:
            await conn.close()

    after = asyncio.run(purge_and_read())
    assert after["report"].decisions >= 2  # type: ignore[attr-defined]
    for name in ("decision", "human", "job"):
        decision = after[name]
        assert IBAN not in str(decision), name
        assert decision.rule == "invoice_risk" and decision.plan.steps[0].name == "post_invoice"  # type: ignore[attr-defined]
    assert after["explanation"] == "" and after["human_explanation"] == ""
    assert after["human"].explanation == ""  # type: ignore[attr-defined]
    assert IBAN not in str(after["escalation"]) and IBAN not in str(after["verdict"])
    # a personal field's value its metadata repeated (one no PII detector knows, as a
    # student's pseudonym): masked for good, where the unpurged item masked it through the
    # decision the purge takes away (an outside data-protection admin saw it in clear)
    assert after["escalation"].task.metadata["member"] == "[MEMBER REDACTED]"  # type: ignore[attr-defined]
    assert list(after["verdict"].modified_fields) == ["bank_account"]  # type: ignore[attr-defined]
    # free text that may quote the document: the reviewer's reason, the downstream's answer
    assert after["verdict"].reason == "" and after["verdict_reason"] == ""  # type: ignore[attr-defined]
    assert IBAN not in str(after["approval"]) and after["approval_reason"] == ""
    assert list(after["approval"].modified_fields) == ["bank_account"]  # type: ignore[attr-defined]
    assert after["approval"].reason == ""  # type: ignore[attr-defined]
    assert after["execution_error"] == "" and after["job_reason"] == ""
    # ... and as the status event told it: in the history and the webhook's delivery
    assert after["status_details"] == [""]
    [event] = after["webhook_events"]  # type: ignore[misc]
    assert event["detail"] == "" and event["status"] == "TASK_STATUS_EXECUTING"
    assert after["execution_output"] is None  # the sealed full answer: gone
    execution = after["execution"]
    assert execution.response_summary == "" and execution.error == ""  # type: ignore[attr-defined]
    assert not execution.HasField("output")  # type: ignore[attr-defined]
    assert execution.outcome == StepOutcome.STEP_OUTCOME_SUCCEEDED  # type: ignore[attr-defined]
    assert after["invoice_fields"] is None
    # the labelled example: text and values gone, the verdict and the field's name kept
    label = after["label"]
    assert label["example"] is None and label["corrections"] is None  # type: ignore[index]
    assert label["verdict"] == "MODIFY" and label["purged_at"] is not None  # type: ignore[index]
    assert label["corrected_fields"] == ["bank_account"]  # type: ignore[index]
    [example] = after["examples"]  # type: ignore[misc]
    assert example.text is None and example.corrections == {} and example.verdict == "MODIFY"
    task = after["task"]
    assert task.document.body == b""  # type: ignore[attr-defined]
    # the task's own metadata goes through the PII detectors (its readers, submitters and
    # admins, see it whole anyway); the review item's copy masked the withheld value above
    assert dict(task.metadata) == {"contact": "[EMAIL REDACTED]", "po": "PO-1",  # type: ignore[attr-defined]
                                   "member": MEMBER_REF}


def test_one_run_purges_every_batch_and_the_dry_run_counts_them_all(
        settings: Settings) -> None:
    """More due tasks than one batch: one run purges them all (it purged one batch a run,
    so a busy tenant's backlog outgrew a daily purge), and the dry run counts them all."""
    async def seed_and_purge() -> tuple[object, object, int]:
        conn = await connect(settings)
        try:
            for _ in range(7):
                sub = Submission(tenant_id="bulk", idempotency_key=uuid.uuid4().hex,
                                 kind="other", document=Document(body=SECRET.encode()))
                envelope = build_envelope(sub, str(uuid.uuid4()), TaskSource.TASK_SOURCE_GRPC)
                await accept(conn, envelope, payload_sha256(sub))
                await conn.execute(
                    "UPDATE tasks SET status = 'SUCCEEDED', updated_at = now() - "
                    "interval '3 days' WHERE task_id = $1", uuid.UUID(envelope.task_id))
            dry = await purge(conn, 1, {}, batch=3, dry_run=True)
            done = await purge(conn, 1, {}, batch=3)
            left = await conn.fetchval("SELECT count(*) FROM tasks WHERE tenant_id = 'bulk' "
                                       "AND purged_at IS NULL")
            return dry, done, left
        finally:
            await conn.close()

    dry, done, left = asyncio.run(seed_and_purge())
    # (other tests' tasks of this module's schema may be due too: counted alike)
    assert done.tasks >= 7 and left == 0, (done, left)  # type: ignore[attr-defined]
    assert dry == done


SHORT_LIVED_PACK = b"""\
pack: expense_claim
version: 1.0.0
description: Expense claims, kept one day
fields:
  employee: {type: string, labels: [Employee]}
decision:
  rules:
    - {name: claim_ok, when: "true", outcome: auto_execute}
plan:
  - {name: create_claim, target: "http://erp/claims"}
retention: {days: 1}
"""


def test_a_packs_shorter_retention_purges_its_tasks_first(settings: Settings) -> None:
    """A pack's ``retention.days`` below the tenant's: its tasks (decided with it, or
    submitted as its kind) are purged after the pack's days; the tenant's others are kept."""
    from services.decision.packs import encode_files
    from switchyard.packs import load_pack_files

    async def seed_packs() -> dict[str, str]:
        conn = await connect(settings)
        ids = {}
        try:
            pack = load_pack_files({"pack.yaml": SHORT_LIVED_PACK})
            await conn.execute(
                "INSERT INTO packs (tenant_id, name, version, digest, files, applied_by) "
                "VALUES ('', $1, $2, $3, $4::jsonb, 'test')", pack.name, pack.version,
                pack.digest, encode_files(pack.files))
            for name, kind in (("by_kind", "expense_claim"), ("by_decision", ""),
                               ("other", "other")):
                sub = Submission(tenant_id="claims", idempotency_key=uuid.uuid4().hex,
                                 kind=kind, document=Document(body=SECRET.encode()))
                envelope = build_envelope(sub, str(uuid.uuid4()), TaskSource.TASK_SOURCE_GRPC)
                await accept(conn, envelope, payload_sha256(sub))
                await conn.execute(
                    "UPDATE tasks SET status = 'SUCCEEDED', updated_at = now() - "
                    "interval '3 days' WHERE task_id = $1", uuid.UUID(envelope.task_id))
                if name == "by_decision":  # routed to the pack by the router, not the kind
                    decision = Decision(decision_id=str(uuid.uuid4()), task_id=envelope.task_id,
                                        tenant_id="claims", pack="expense_claim",
                                        explanation="Claim of 42.50")
                    await conn.execute(
                        "INSERT INTO decisions (decision_id, task_id, tenant_id, source, "
                        "outcome, confidence, rule, explanation, decision, pack) VALUES "
                        "($1, $2, 'claims', 'MODEL', 'AUTO_EXECUTE', 0.9, 'claim_ok', $3, $4, "
                        "'expense_claim')", uuid.UUID(decision.decision_id),
                        uuid.UUID(envelope.task_id), decision.explanation,
                        decision.SerializeToString())
                ids[name] = envelope.task_id
        finally:
            await conn.close()
        return ids

    ids = asyncio.run(seed_packs())
    done = run_cli(settings, "purge")
    assert done.returncode == 0, done.stdout + done.stderr

    async def purged() -> dict[str, bool]:
        conn = await connect(settings)
        try:
            return {name: await conn.fetchval(
                "SELECT purged_at IS NOT NULL FROM tasks WHERE task_id = $1", uuid.UUID(task_id))
                for name, task_id in ids.items()}
        finally:
            await conn.close()

    assert asyncio.run(purged()) == {"by_kind": True, "by_decision": True, "other": False}


def test_purge_deletes_drift_samples_older_than_30_days(settings: Settings) -> None:
    """GetModelHealth answers at most 30 days back; older drift samples are deleted, newer
    ones kept (a dry run deletes nothing)."""
    async def seed_samples() -> None:
        conn = await connect(settings)
        try:
            await conn.executemany(
                "INSERT INTO decision_drift_samples (model, version, feature, psi, measured_at) "
                "VALUES ('document_router', '1.0.0', $1, 0.05, now() - $2::interval)",
                [("old", timedelta(days=31)), ("older", timedelta(days=90)),
                 ("recent", timedelta(days=29))])
        finally:
            await conn.close()

    async def features() -> set[str]:
        conn = await connect(settings)
        try:
            return {r["feature"] for r in await conn.fetch(
                "SELECT feature FROM decision_drift_samples")}
        finally:
            await conn.close()

    asyncio.run(seed_samples())
    dry = run_cli(settings, "purge", "--dry-run")
    assert dry.returncode == 0 and asyncio.run(features()) >= {"old", "older", "recent"}
    done = run_cli(settings, "purge")
    assert done.returncode == 0, done.stderr
    assert "deleted 2 drift sample(s) older than 30 days" in done.stdout, done.stdout
    left = asyncio.run(features())
    assert "recent" in left and not {"old", "older"} & left


WARD_PACK = b"""\
pack: ward_notes
version: 1.0.0
description: Ward notes of one tenant, kept two days (health data)
fields:
  patient: {type: string, data_class: personal, labels: [Patient]}
  diagnosis: {type: string, data_class: health, labels: [Diagnosis]}
decision:
  rules:
    - {name: note_ok, when: "true", outcome: auto_execute}
review: {reveal: [patient]}
plan:
  - {name: file_note, target: "http://erp/notes"}
retention: {days: 2}
"""
DIAGNOSIS = "Acute lymphoblastic leukaemia"


async def seed_ward_task(settings: Settings, kind: str) -> str:
    """A terminal task of tenant ``ward`` as the services leave it, the diagnosis in every
    table that holds a task's data: the document (claim-checked into ``blobs``), the decision,
    the executor job and its reason, the step's execution, a review item (proposal, layout,
    discrepancies, instructions), a reviewer's verdict and a first approval."""
    from switchyard.documents import PostgresBlobStore
    from switchyard.v1 import BoundingBox, DocumentLayout, LayoutPage, LayoutWord

    codec = codec_for(settings)
    pool = await create_pool(settings.replace(postgres_pool_min=1, postgres_pool_max=2))
    try:
        async with pool.acquire() as conn:
            note = f"Patient: Ann Lee\nDiagnosis: {DIAGNOSIS}".encode()
            task_id = str(uuid.uuid4())
            sub = Submission(tenant_id="ward", idempotency_key=uuid.uuid4().hex, kind=kind,
                             document=Document(content_type="text/plain", body=note))
            envelope = build_envelope(sub, task_id, TaskSource.TASK_SOURCE_GRPC)
            ref = await PostgresBlobStore(conn, codec).put(note, "ward", task_id)
            envelope.document.ClearField("body")
            envelope.document.blob.CopyFrom(ref)
            await accept(conn, envelope, payload_sha256(sub), codec=codec)
            decision = Decision(
                decision_id=str(uuid.uuid4()), task_id=task_id, tenant_id="ward",
                outcome=DecisionOutcome.DECISION_OUTCOME_ESCALATE, rule="note_ok",
                pack=kind, explanation=f"Note about {DIAGNOSIS}",
                fields=[FieldExtraction(name="diagnosis", value=DIAGNOSIS, data_class=4)],
                extracted_fields={"diagnosis": DIAGNOSIS}, revealed_fields=["patient"])
            decision.plan.steps.add(step_id="1-file_note", name="file_note").payload.update(
                {"fields": {"diagnosis": DIAGNOSIS}})
            await store_model_decision(conn, decision, codec)
            await JobStore(pool, "retention-test", 30, codec).start(
                decision, datetime.now(timezone.utc) + timedelta(hours=1))
            escalation = Escalation(escalation_id=str(uuid.uuid4()), task_id=task_id,
                                    tenant_id="ward", queue="default", task=envelope,
                                    reason_detail=decision.explanation,
                                    instructions=f"Check the {DIAGNOSIS} cover")
            escalation.proposed_decision.CopyFrom(decision)
            escalation.layout.CopyFrom(DocumentLayout(pages=[LayoutPage(number=1, words=[
                LayoutWord(text=DIAGNOSIS, box=BoundingBox(x0=.1, y0=.1, x1=.5, y1=.12))])]))
            escalation.discrepancies.add(field="diagnosis", submitted=DIAGNOSIS,
                                         found="", source="payer", note="not covered")
            await ReviewQueue(pool, codec).enqueue(escalation)
            item_id = await conn.fetchval("SELECT item_id FROM review_items WHERE task_id = $1",
                                          uuid.UUID(task_id))
            verdict = ReviewVerdict(item_id=str(item_id), reviewer_id="rita",
                                    verdict=Verdict.VERDICT_MODIFY, reason=f"is {DIAGNOSIS}",
                                    modified_fields={"diagnosis": DIAGNOSIS})
            for table, column in (("review_verdicts", VERDICT), ("review_approvals", APPROVAL)):
                await conn.execute(
                    f"INSERT INTO {table} (item_id, task_id, reviewer_id, verdict, reason, "
                    "verdict_pb) VALUES ($1, $2, 'rita', 'MODIFY', $3, $4)", item_id,
                    uuid.UUID(task_id), verdict.reason,
                    codec.seal(item_id, verdict.SerializeToString(), column))
            answer = json.dumps({"note": DIAGNOSIS})
            result = ExecutionResult(task_id=task_id, step_id="1-file_note",
                                     outcome=StepOutcome.STEP_OUTCOME_SUCCEEDED,
                                     response_summary=f"HTTP 201 {answer}", error=answer)
            result.output.update({"note": DIAGNOSIS})
            await conn.execute(
                "INSERT INTO executions (task_id, step_id, idempotency_key, outcome, attempts, "
                "error, result) VALUES ($1, '1-file_note', $2, 'STEP_OUTCOME_SUCCEEDED', "
                "1, $3, $4)", uuid.UUID(task_id), f"k-{task_id}", answer,
                result.SerializeToString())
            await conn.execute("UPDATE executor_jobs SET reason = $2 WHERE task_id = $1",
                               uuid.UUID(task_id), f"failed: {answer}")
            await conn.execute("UPDATE tasks SET status = 'SUCCEEDED', updated_at = now() - "
                               "interval '3 days' WHERE task_id = $1", uuid.UUID(task_id))
            return task_id
    finally:
        await pool.close()


async def columns_holding(settings: Settings, task_id: str, value: str) -> set[str]:
    """Every ``table.column`` of the data-class registry (sealed ones opened) whose rows of
    ``task_id`` hold ``value``."""
    from switchyard.privacy import STORED
    from switchyard.storage import COLUMNS

    codec = codec_for(settings)
    sealed = {c.name: c for c in COLUMNS}
    conn = await connect(settings)
    try:
        found = set()
        for stored in STORED:
            name = f"{stored.table}.{stored.column}"
            has_task = await conn.fetchval(
                "SELECT count(*) FROM information_schema.columns WHERE table_name = $1 "
                "AND column_name = 'task_id'", stored.table)
            if not has_task:
                continue
            column = sealed.get(name)
            id_column = column.id_column if column is not None else "task_id"
            for row in await conn.fetch(
                    f"SELECT {id_column} AS id, {stored.column} AS value FROM {stored.table} "
                    "WHERE task_id = $1", uuid.UUID(task_id)):
                data = row["value"]
                if data is None:
                    continue
                if column is not None:
                    data = codec.open(row["id"], data, column)
                text = data.decode("utf-8", "replace") if isinstance(data, bytes) \
                    else str(data)
                if value in text:
                    found.add(name)
        return found
    finally:
        await conn.close()


def test_a_tenants_short_lived_health_pack_is_purged_from_every_table(
        settings: Settings) -> None:
    """Retention of a type is its own setting: tenant ``ward``'s own pack keeps its tasks two
    days (the tenant keeps others thirty). Three days on, purge removes the diagnosis from
    every table that held it (the blob of the document is deleted), while a task of the same
    tenant and age of another type keeps its document."""
    from services.decision.packs import encode_files
    from switchyard.packs import load_pack_files

    sealed = sealed_settings(settings)

    async def seed() -> tuple[str, str]:
        conn = await connect(sealed)
        try:
            pack = load_pack_files({"pack.yaml": WARD_PACK})
            await conn.execute(
                "INSERT INTO packs (tenant_id, name, version, digest, files, applied_by) "
                "VALUES ('ward', $1, $2, $3, $4::jsonb, 'test')", pack.name, pack.version,
                pack.digest, encode_files(pack.files))
        finally:
            await conn.close()
        return (await seed_ward_task(sealed, "ward_notes"),
                await seed_ward_task(sealed, "other"))

    ward, other = asyncio.run(seed())
    before = asyncio.run(columns_holding(sealed, ward, DIAGNOSIS))
    assert before >= {"blobs.body", "decisions.decision",
                      "decisions.explanation", "executor_jobs.decision", "executor_jobs.reason",
                      "review_items.escalation", "review_verdicts.verdict_pb",
                      "review_verdicts.reason", "review_approvals.verdict_pb",
                      "review_approvals.reason", "executions.error", "executions.result"}, before
    done = run_cli(sealed, "purge")
    assert done.returncode == 0, done.stdout + done.stderr
    assert asyncio.run(columns_holding(sealed, ward, DIAGNOSIS)) == set()
    kept = asyncio.run(columns_holding(sealed, other, DIAGNOSIS))
    assert {"blobs.body", "review_items.escalation", "decisions.decision"} <= kept, kept

    async def blobs_and_items() -> tuple[int, Escalation]:
        conn = await connect(sealed)
        try:
            count = await conn.fetchval("SELECT count(*) FROM blobs WHERE task_id = $1",
                                        uuid.UUID(ward))
            row = await conn.fetchrow("SELECT item_id, escalation FROM review_items "
                                      "WHERE task_id = $1", uuid.UUID(ward))
            return count, Escalation.FromString(codec_for(sealed).open(
                row["item_id"], row["escalation"], REVIEW_ESCALATION))
        finally:
            await conn.close()

    blob_count, item = asyncio.run(blobs_and_items())
    assert blob_count == 0
    assert not item.layout.pages and not item.discrepancies and item.instructions == ""
    assert item.proposed_decision.rule == "note_ok"  # what was decided stays


def test_dead_letters_follow_their_tenants_retention(settings: Settings) -> None:
    """A refused record has no pack yet: it is purged after its tenant's retention
    (``short``: 1 day), others after the default (30 days)."""
    async def seed() -> dict[str, uuid.UUID]:
        conn = await connect(settings)
        try:
            ids = {}
            for tenant in ("short", "elsewhere"):
                ids[tenant] = uuid.uuid4()
                await conn.execute(
                    "INSERT INTO dead_letters (dead_letter_id, service, source_topic, "
                    "reason_code, reason, original_value, tenant_id, failed_at) VALUES "
                    "($1, 'decision', 'tasks', 'invalid', 'test', $2, $3, "
                    "now() - interval '3 days')", ids[tenant], SECRET.encode(), tenant)
            return ids
        finally:
            await conn.close()

    ids = asyncio.run(seed())
    done = run_cli(settings, "purge")
    assert done.returncode == 0, done.stdout + done.stderr

    async def kept() -> dict[str, bool]:
        conn = await connect(settings)
        try:
            return {tenant: await conn.fetchval(
                "SELECT original_value IS NOT NULL FROM dead_letters "
                "WHERE dead_letter_id = $1", dead_letter_id)
                for tenant, dead_letter_id in ids.items()}
        finally:
            await conn.close()

    assert asyncio.run(kept()) == {"short": False, "elsewhere": True}


def test_a_tenants_settings_set_its_own_retention_of_a_pack(settings: Settings) -> None:
    """``retention_days`` for a pack in a tenant's settings document: that tenant's tasks of
    the pack are purged after those days; the same pack's tasks of another tenant, and the
    tenant's tasks of other types, keep the tenant retention (30 days)."""
    from switchyard.storage import pack_retention_days
    from switchyard.packs import builtin_packs, parse_tenant_settings

    document = b"packs:\n  support_ticket: {retention_days: 2}\n"
    parsed = parse_tenant_settings(document, builtin_packs())
    assert parsed.for_pack("support_ticket").retention_days == 2

    async def seed() -> dict[str, str]:
        conn = await connect(settings)
        try:
            await conn.execute(
                "INSERT INTO tenant_pack_settings (tenant_id, version, document, applied_by) "
                "VALUES ('clinic', 1, $1, 'test')", document)
            ids = {}
            for name, tenant, kind in (("clinic_ticket", "clinic", "support_ticket"),
                                       ("clinic_invoice", "clinic", "invoice"),
                                       ("other_ticket", "elsewhere", "support_ticket")):
                sub = Submission(tenant_id=tenant, idempotency_key=uuid.uuid4().hex,
                                 kind=kind, document=Document(body=SECRET.encode()))
                envelope = build_envelope(sub, str(uuid.uuid4()), TaskSource.TASK_SOURCE_GRPC)
                await accept(conn, envelope, payload_sha256(sub))
                await conn.execute(
                    "UPDATE tasks SET status = 'SUCCEEDED', updated_at = now() - "
                    "interval '3 days' WHERE task_id = $1", uuid.UUID(envelope.task_id))
                ids[name] = envelope.task_id
            assert (await pack_retention_days(conn))["clinic"]["support_ticket"] == 2
            return ids
        finally:
            await conn.close()

    ids = asyncio.run(seed())
    done = run_cli(settings, "purge")
    assert done.returncode == 0, done.stdout + done.stderr

    async def purged() -> dict[str, bool]:
        conn = await connect(settings)
        try:
            return {name: await conn.fetchval(
                "SELECT purged_at IS NOT NULL FROM tasks WHERE task_id = $1", uuid.UUID(task_id))
                for name, task_id in ids.items()}
        finally:
            await conn.close()

    assert asyncio.run(purged()) == {"clinic_ticket": True, "clinic_invoice": False,
                                     "other_ticket": False}


def test_a_refused_classroom_frame_keeps_its_bytes_an_hour_not_its_schools_retention(
        settings: Settings) -> None:
    """A raw frame names students and lives an hour on its topic; a refused one's letter
    keeps it no longer (an outside data-protection admin found such letters kept for the
    school's whole retention), where an intake record's letter keeps its tenant's."""
    async def seed_and_purge() -> dict[str, object]:
        conn = await connect(settings)
        try:
            ids = {}
            for topic in ("classroom-signals", "intake"):
                ids[topic] = uuid.uuid4()
                await conn.execute(
                    "INSERT INTO dead_letters (dead_letter_id, service, source_topic, "
                    "reason_code, reason, original_value, tenant_id, failed_at) VALUES "
                    "($1, 'ingest', $2, 'schema_violation', 'x', $3, 'school', "
                    "now() - interval '2 hours')", ids[topic],
                    f"{settings.kafka_topic_prefix}{topic}", b'{"subject_ref": "stu-1"}')
            await purge(conn, 30, {})
            return {topic: await conn.fetchval(
                "SELECT original_value FROM dead_letters WHERE dead_letter_id = $1", letter)
                for topic, letter in ids.items()}
        finally:
            await conn.close()

    kept = asyncio.run(seed_and_purge())
    assert kept["classroom-signals"] is None
    assert kept["intake"] == b'{"subject_ref": "stu-1"}'
