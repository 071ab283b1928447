"""End to end through the real broker, PostgreSQL and Triton, with the four service processes.

Tasks are submitted over gRPC and followed to a terminal state; escalations are worked through
the ReviewService; a record no stage can read goes to the dead-letter topic with its bytes.
Documents: a text PDF, a scan and a phone photo are decided with fields that say where on the
page they were read; a large PDF travels by blob reference; hostile files (40 pages, a
decompression bomb, corrupt, encrypted, a PNG called a PDF) each get their specific error.
Documents from outside the project (``bench/outside``: real invoices in five languages, texts
written apart from the generators) are routed and read with no kind given.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
import uuid
from datetime import date
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from aiokafka import AIOKafkaConsumer

from bench.documents_bench import summarise
from bench.evalset import (
    EvalDocument, InvoiceFacts, LineItem, Style, block_of, degrade, encode_scan, field_correct,
    load_set, rasterise, render_reportlab)
from switchyard_packs.invoice.extraction import extract_invoice
from switchyard import Settings
from switchyard.audit import task_story, verify as verify_chain
from switchyard.messaging import DEAD_LETTER, TASK_STATUS, TASKS, headers_to_dict
from switchyard.rpc import field_violations
from switchyard.storage import DECISION, codec_for, connect
from switchyard.v1 import (
    CancelTaskRequest,
    ClaimRequest,
    DeadLetter,
    Decision,
    DecisionOutcome,
    Document,
    FieldExtraction,
    GetTaskRequest,
    GetTaskTimelineRequest,
    IngestServiceStub,
    LayoutSource,
    ListQueueRequest,
    ReviewItem,
    ReviewServiceStub,
    ReviewVerdict,
    StatusEvent,
    Submission,
    SubmitTaskRequest,
    SubmitVerdictRequest,
    Task,
    TaskStage,
    TaskStatus,
    Verdict,
)
from tests import document_samples
from tests.ingest.helpers import read_topic
from tests.observed import metric_sum
from tests.polling import eventually
from tests.terminal import TERMINAL_STATUSES

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("pipeline")]
ROOT = Path(__file__).resolve().parents[2]
HELDOUT = ROOT / "models" / "data" / "router_heldout.jsonl"


def sample(label: str, index: int = 0) -> str:
    rows = [json.loads(line) for line in HELDOUT.read_text().splitlines()]
    texts = [r["text"] for r in rows if r["label"] == label and len(r["text"]) > 200]
    return texts[index]


async def wait_for(ingest: IngestServiceStub, task_id: str, statuses: set[int],
                   timeout_s: float = 60) -> Task:
    deadline = time.monotonic() + timeout_s
    while True:
        task = (await ingest.GetTask(GetTaskRequest(task_id=task_id))).task
        if task.status in statuses:
            return task
        if time.monotonic() > deadline:
            raise AssertionError(f"task {task_id} still {TaskStatus.Name(task.status)} "
                                 f"({task.reason})")
        await asyncio.sleep(0.1)


def submission(text: str, kind: str, key: str | None = None) -> Submission:
    return Submission(tenant_id="acme", idempotency_key=key or uuid.uuid4().hex, kind=kind,
                      document=Document(content_type="text/plain", body=text.encode()))


async def item_for(review: ReviewServiceStub, task_id: str) -> str:
    """The review item a task's escalation became, as a reviewer finds it in the queue."""
    for _ in range(300):
        page = await review.ListQueue(ListQueueRequest(page_size=500))
        for item in page.items:
            if item.escalation.task_id == task_id:
                return item.item_id
        await asyncio.sleep(0.1)
    raise AssertionError(f"no review item for {task_id}")


async def approve(review: ReviewServiceStub, task_id: str, reviewer: str = "ana") -> None:
    item_id = await item_for(review, task_id)
    await review.Claim(ClaimRequest(item_id=item_id, reviewer_id=reviewer))
    await review.SubmitVerdict(SubmitVerdictRequest(verdict=ReviewVerdict(
        item_id=item_id, reviewer_id=reviewer, verdict=Verdict.VERDICT_APPROVE)))


def received(text: str) -> dict[str, str]:
    """Metadata the upstream system sends: the invoice arrived on its invoice date (so the
    invoice_risk model does not see it as overdue)."""
    return {"received_date": extract_invoice(text).get("invoice_date") or ""}


def next_invoice(text: str, number: str) -> str:
    """The same vendor's next invoice: the same document under another invoice number."""
    old = extract_invoice(text).get("invoice_number")
    assert old and old in text
    return text.replace(old, number)


async def learn_vendor(ingest: IngestServiceStub, review: ReviewServiceStub,
                       text: str) -> None:
    """What a fresh tenant gets, and how it learns a vendor through the product itself: the
    first invoice from a vendor it never paid goes to a person (the invoice_risk model doubts
    an unknown vendor); the person approves it through the ReviewService and it runs, and
    from that confirmed outcome the tenant's vendor history learns the vendor."""
    sub = submission(text, "invoice")
    sub.metadata.update(received(text))
    first = await ingest.SubmitTask(SubmitTaskRequest(submission=sub))
    waiting = await wait_for(ingest, first.task_id, {TaskStatus.TASK_STATUS_BLOCKED})
    assert TaskStage.Name(waiting.stage) == "TASK_STAGE_AWAITING_REVIEW", waiting.reason
    await approve(review, first.task_id)
    done = await wait_for(ingest, first.task_id, TERMINAL_STATUSES)
    assert TaskStatus.Name(done.status) == "TASK_STATUS_SUCCEEDED", done.reason


async def test_confident_task_is_executed_once(ingest: IngestServiceStub,
                                               review: ReviewServiceStub,
                                               settings: Settings) -> None:
    """No hand-seeded history: the vendor is learned through a person's approval, and its
    next invoice then runs straight through its two-step plan."""
    first_text = sample("invoice", 22)  # no other test submits it
    await learn_vendor(ingest, review, first_text)
    text = next_invoice(first_text, "E2E-NEXT-0001")
    sub = submission(text, "invoice")
    sub.metadata.update(received(text))
    first = await ingest.SubmitTask(SubmitTaskRequest(submission=sub))
    assert first.created and first.status == TaskStatus.TASK_STATUS_QUEUED
    again = await ingest.SubmitTask(SubmitTaskRequest(submission=sub))
    assert (again.task_id, again.created) == (first.task_id, False)

    task = await wait_for(ingest, first.task_id, TERMINAL_STATUSES)
    assert TaskStatus.Name(task.status) == "TASK_STATUS_SUCCEEDED", task.reason

    conn = await connect(settings)
    try:
        # the demo plan posts the invoice to the embedded downstream ERP (its own schema),
        # then schedules its payment
        effects = await conn.fetch(
            f'SELECT idempotency_key, system, collection, status FROM '
            f'"{settings.postgres_schema}_downstream".effects WHERE task_id = $1 ORDER BY id',
            first.task_id)
        history = await conn.fetch("SELECT seq, status, stage, service FROM "
                                   "task_status_history WHERE task_id = $1 ORDER BY seq",
                                   uuid.UUID(first.task_id))
        reviewed = await conn.fetchval("SELECT count(*) FROM review_items WHERE task_id = $1",
                                       uuid.UUID(first.task_id))
        trail = await task_story(conn, first.task_id)
        chain = await verify_chain(conn)
    finally:
        await conn.close()
    # the audit trail tells the story: the decision (models, rule, input hash), then the steps
    assert [r["action"] for r in trail] == ["decision.made", "step.executed", "step.executed"]
    made = json.loads(trail[0]["detail"])
    assert made["models"][0]["name"] == "document_router"
    assert made["rule"] == "straight_through_invoice"
    assert made["input_sha256"] == hashlib.sha256(sub.document.body).hexdigest()
    assert chain.broken is None
    assert reviewed == 0, "decided without a person"
    assert [tuple(r) for r in effects] == [
        (f"{first.task_id}:1-post_invoice", "erp", "invoices", "active"),
        (f"{first.task_id}:2-schedule_payment", "erp", "payments", "active")]
    assert [r["seq"] for r in history] == list(range(1, len(history) + 1))
    assert (history[0]["status"], history[-1]["status"]) == ("QUEUED", "SUCCEEDED")
    assert {r["service"] for r in history} == {"ingest", "decision", "executor"}

    # on the task-status topic every stage's event names the key it was submitted under:
    # how a producer that got no task id back (the intake topic) finds its outcome
    def ours(records: list[Any]) -> list[StatusEvent]:
        events = [StatusEvent.FromString(r.value) for r in records]
        return [e for e in events if e.task_id == first.task_id]

    events = ours(await read_topic(settings, TASK_STATUS, lambda rs: any(
        e.status == TaskStatus.TASK_STATUS_SUCCEEDED for e in ours(rs))))
    assert {e.service for e in events} == {"ingest", "decision", "executor"}
    assert {e.idempotency_key for e in events} == {sub.idempotency_key}


async def test_same_key_with_other_payload_is_refused(ingest: IngestServiceStub) -> None:
    key = uuid.uuid4().hex
    await ingest.SubmitTask(SubmitTaskRequest(submission=submission("Invoice 1", "invoice",
                                                                     key)))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ingest.SubmitTask(SubmitTaskRequest(submission=submission("Invoice 2", "invoice",
                                                                         key)))
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "different payload" in (caught.value.details() or "")


async def test_invalid_submission_gets_field_violations(ingest: IngestServiceStub) -> None:
    bad = Submission(tenant_id="acme", idempotency_key="x", kind="invoice",
                     document=Document(content_type="application/json", body=b'{"total": }'))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ingest.SubmitTask(SubmitTaskRequest(submission=bad))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(caught.value)["document.body"].startswith("malformed JSON")


async def test_escalated_tasks_follow_the_reviewers_verdict(
        ingest: IngestServiceStub, review: ReviewServiceStub) -> None:
    # An invoice submitted as an admission form: the router disagrees, policy escalates.
    approved = await ingest.SubmitTask(SubmitTaskRequest(
        submission=submission(sample("invoice", 1), "admission_form")))
    rejected = await ingest.SubmitTask(SubmitTaskRequest(
        submission=submission(sample("invoice", 2), "admission_form")))
    for response in (approved, rejected):
        task = await wait_for(ingest, response.task_id, {TaskStatus.TASK_STATUS_BLOCKED})
        assert task.reason == "kind_mismatch"

    approve_item = await item_for(review, approved.task_id)
    claims = await asyncio.gather(
        review.Claim(ClaimRequest(item_id=approve_item, reviewer_id="ana")),
        review.Claim(ClaimRequest(item_id=approve_item, reviewer_id="ben")),
        return_exceptions=True,
    )
    winners = [c for c in claims if not isinstance(c, Exception)]
    losers = [c for c in claims if isinstance(c, grpc.aio.AioRpcError)]
    assert len(winners) == 1 and len(losers) == 1
    assert losers[0].code() == grpc.StatusCode.FAILED_PRECONDITION
    winner = winners[0].item.claimed_by
    await review.SubmitVerdict(SubmitVerdictRequest(verdict=ReviewVerdict(
        item_id=approve_item, reviewer_id=winner, verdict=Verdict.VERDICT_APPROVE)))

    reject_item = await item_for(review, rejected.task_id)
    await review.Claim(ClaimRequest(item_id=reject_item, reviewer_id="ana"))
    await review.SubmitVerdict(SubmitVerdictRequest(verdict=ReviewVerdict(
        item_id=reject_item, reviewer_id="ana", verdict=Verdict.VERDICT_REJECT,
        reason="duplicate")))

    done = await wait_for(ingest, approved.task_id, TERMINAL_STATUSES)
    assert done.status == TaskStatus.TASK_STATUS_SUCCEEDED
    ended = await wait_for(ingest, rejected.task_id, TERMINAL_STATUSES)
    # one terminal rule: a REJECT ends FAILED, whoever rejected (CANCELLED is CancelTask's)
    assert ended.status == TaskStatus.TASK_STATUS_FAILED
    assert ended.reason == "rejected:reviewer_reject"
    # the submitter reads why in the task's story: the terminal change carries the
    # decision's explanation, the reviewer's reason in it
    story = await ingest.GetTaskTimeline(GetTaskTimelineRequest(task_id=rejected.task_id))
    (last,) = [e for e in story.entries if e.reason == "rejected:reviewer_reject"]
    assert "duplicate" in last.detail["detail"] and "duplicate" in last.summary


async def test_unreadable_record_is_dead_lettered_with_its_bytes(settings: Settings) -> None:
    from confluent_kafka import Producer

    garbage = b"\x00\x01 definitely not a TaskEnvelope"
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
    producer.produce(TASKS.full_name(settings), key=b"bad-1", value=garbage,
                     headers=[("content-type", b"application/json")])
    assert producer.flush(10) == 0

    consumer = AIOKafkaConsumer(DEAD_LETTER.full_name(settings),
                                bootstrap_servers=settings.kafka_bootstrap_servers,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    letter = DeadLetter.FromString(record.value)
                    if letter.original_value == garbage:
                        assert letter.reason_code == "unsupported_content_type"
                        assert letter.original_key == b"bad-1"
                        assert letter.original_headers["content-type"] == "application/json"
                        assert letter.service == "decision"
                        assert headers_to_dict(record.headers)["content-type"].endswith(
                            "messageType=switchyard.v1.DeadLetter")
                        return
        raise AssertionError("no dead-letter record for the garbage record")
    finally:
        await consumer.stop()


async def run_until_executing(ingest: IngestServiceStub, review: ReviewServiceStub,
                              text: str) -> str:
    """Submit an invoice and let it reach the executor: a person approves it when the tenant's
    policy asks for one (a vendor it never paid)."""
    sub = submission(text, "invoice")
    sub.metadata.update(received(text))
    task_id = (await ingest.SubmitTask(SubmitTaskRequest(submission=sub))).task_id
    for _ in range(600):
        task = (await ingest.GetTask(GetTaskRequest(task_id=task_id))).task
        if TaskStage.Name(task.stage) == "TASK_STAGE_AWAITING_REVIEW":
            await approve(review, task_id)
            return task_id
        if TaskStage.Name(task.stage) in ("TASK_STAGE_EXECUTING", "TASK_STAGE_COMPENSATING",
                                          "TASK_STAGE_DONE"):
            return task_id
        await asyncio.sleep(0.1)
    raise AssertionError(f"task {task_id} never reached review or the executor: {task}")


async def ledger(settings: Settings, task_id: str) -> tuple[list[tuple[str, str, str]],
                                                            dict[str, str]]:
    """The downstream's own view of a task: its calls (method, path, outcome) in order, and
    its effects' status by idempotency key."""
    conn = await connect(settings)
    schema = f'"{settings.postgres_schema}_downstream"'
    try:
        calls = await conn.fetch(
            f"SELECT method, path, outcome FROM {schema}.calls "
            "WHERE idempotency_key LIKE $1 || ':%' ORDER BY id", task_id)
        effects = await conn.fetch(f"SELECT idempotency_key, status FROM {schema}.effects "
                                   "WHERE task_id = $1", task_id)
    finally:
        await conn.close()
    return ([(c["method"], c["path"], c["outcome"]) for c in calls],
            {e["idempotency_key"]: e["status"] for e in effects})


async def test_a_refused_payment_reverses_the_posted_invoice(
        ingest: IngestServiceStub, review: ReviewServiceStub, settings: Settings) -> None:
    """The invoice plan is a saga of two steps: when the ERP refuses the payment for good,
    the invoice the first step posted is reversed and the task FAILS holding nothing."""
    faults = f"http://127.0.0.1:{settings.downstream_http_port}/_/faults"
    async with aiohttp.ClientSession() as http:
        async with http.put(f"{faults}/erp/payments",
                            json={"error_rate": 1.0, "error_status": 422}) as response:
            assert response.status == 200
        try:
            task_id = await run_until_executing(ingest, review, sample("invoice", 27))
            done = await wait_for(ingest, task_id, TERMINAL_STATUSES)
        finally:
            async with http.delete(faults) as response:
                assert response.status == 200
    assert TaskStatus.Name(done.status) == "TASK_STATUS_FAILED", done.reason
    calls, effects = await ledger(settings, task_id)
    assert calls == [
        ("POST", "/erp/invoices", "created"),
        ("POST", "/erp/payments", "fault"),
        ("DELETE", f"/erp/invoices/{task_id}:1-post_invoice", "reversed"),
    ]
    assert effects == {f"{task_id}:1-post_invoice": "reversed"}


async def test_cancelling_an_executing_task_undoes_it(ingest: IngestServiceStub,
                                                      review: ReviewServiceStub,
                                                      settings: Settings) -> None:
    """CancelTask on a task waiting between its two steps (the invoice posted, the payment
    system down): FAILED_PRECONDITION (only the executor can stop it), then the executor
    cancels it at once, not when the payments come back, and reverses the posted invoice."""
    faults = f"http://127.0.0.1:{settings.downstream_http_port}/_/faults"
    async with aiohttp.ClientSession() as http:
        async with http.put(f"{faults}/erp/payments", json={"outage": True}) as response:
            assert response.status == 200
        try:
            task_id = await run_until_executing(ingest, review, sample("invoice", 3))
            for _ in range(600):  # parked between its steps: the payment retries ran out
                blocked = (await ingest.GetTask(GetTaskRequest(task_id=task_id))).task
                if (blocked.status, TaskStage.Name(blocked.stage)) == (
                        TaskStatus.TASK_STATUS_BLOCKED, "TASK_STAGE_EXECUTING"):
                    break
                await asyncio.sleep(0.1)
            assert TaskStage.Name(blocked.stage) == "TASK_STAGE_EXECUTING", blocked.reason
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await ingest.CancelTask(CancelTaskRequest(task_id=task_id,
                                                          reason="sent twice"))
            assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            done = await wait_for(ingest, task_id, TERMINAL_STATUSES, timeout_s=60)
        finally:
            async with http.delete(faults) as response:
                assert response.status == 200
    assert TaskStatus.Name(done.status) == "TASK_STATUS_CANCELLED", done.reason
    calls, effects = await ledger(settings, task_id)
    assert calls[0] == ("POST", "/erp/invoices", "created")
    assert {c for c in calls[1:-1]} == {("POST", "/erp/payments", "fault")}
    assert calls[-1] == ("DELETE", f"/erp/invoices/{task_id}:1-post_invoice", "reversed")
    assert effects == {f"{task_id}:1-post_invoice": "reversed"}


# -- documents: a text PDF, a scan and a photo; one by blob reference; hostile files -------

INVOICE_STYLE = Style(
    renderer="reportlab", layout="columns", font="Helvetica", date_style="iso",
    money_style="en", currency_mark="code_before",
    labels={"invoice_number": "Invoice No", "invoice_date": "Invoice Date",
            "due_date": "Due Date", "po_number": "PO Number", "subtotal": "Subtotal",
            "tax": "VAT {rate}", "total": "Total", "bank_account": "IBAN"},
    vendor_label=False, currency_line=False)


def invoice_facts(number: str) -> InvoiceFacts:
    return InvoiceFacts(
        vendor="Larkspur Catering Ltd", vendor_address="149 Market Rd, Leeds",
        customer="Acme Health Inc.", invoice_number=number,
        invoice_date=date(2026, 11, 20), due_date=date(2026, 12, 20), po_number="PO-55120",
        currency="EUR", items=(LineItem("Printer toner cartridges", 4, 62.5),
                               LineItem("A4 copy paper, 80gsm", 10, 5.0)),
        tax_rate=0.2, bank_account="GB29 NWBK 6016 1331 9268 19")


def invoice_pdf(facts: InvoiceFacts) -> bytes:
    return render_reportlab(block_of(facts, INVOICE_STYLE), INVOICE_STYLE)


def document_submission(content_type: str, body: bytes, facts: InvoiceFacts | None = None
                        ) -> Submission:
    metadata = {"received_date": facts.invoice_date.isoformat()} if facts else {}
    return Submission(tenant_id="acme", idempotency_key=uuid.uuid4().hex, kind="invoice",
                      metadata=metadata,
                      document=Document(content_type=content_type, body=body))


async def model_decision(settings: Settings, task_id: str, timeout_s: float = 180
                         ) -> Decision:
    """The decision service's stored decision for a task (opened with the payload codec)."""
    conn = await connect(settings)
    try:
        row = await eventually(lambda: conn.fetchrow(
            "SELECT decision_id, decision FROM decisions WHERE task_id = $1 AND "
            "source = 'MODEL'", uuid.UUID(task_id)), f"the decision of {task_id}",
            timeout_s=timeout_s)
    finally:
        await conn.close()
    plain = codec_for(settings).open(str(row["decision_id"]), row["decision"], DECISION)
    return Decision.FromString(plain)


def read_right(decision: Decision, facts: InvoiceFacts, names: tuple[str, ...]
               ) -> dict[str, FieldExtraction]:
    fields = {f.name: f for f in decision.fields}
    expected = facts.expected()
    wrong = {n: (expected[n], fields[n].value if n in fields else None) for n in names
             if not field_correct(n, expected[n], fields[n].value if n in fields else None)}
    assert not wrong, wrong
    return fields


async def test_a_text_pdf_a_scan_and_a_photo_are_decided_with_provenance(
        ingest: IngestServiceStub, review: ReviewServiceStub, settings: Settings) -> None:
    """The text PDF is read from its text layer; the scan (PNG, 150 dpi) and the phone photo
    (JPEG stored sideways with an EXIF orientation, uneven light) go through the OCR model on
    Triton. Each decision's fields carry where they were read; the escalation (a vendor the
    tenant never paid goes to a person) carries the layout the console draws."""
    cases = {}
    for name in ("pdf", "scan", "photo"):
        # digits (as the large-document test's): this test is about where fields were read,
        # and an OCR misreading a random letter (O/0, B/8) of the number once in a while
        # is the documents benchmark's subject, not a reason for this test to fail
        facts = invoice_facts(f"DOC-{name.upper()}-{uuid.uuid4().int % 10**8:08d}")
        pdf = invoice_pdf(facts)
        if name == "pdf":
            content_type, body = "application/pdf", pdf
        else:
            page = rasterise(pdf, 150)
            if name == "photo":
                page, _ = degrade(page, ["photo"], random.Random(4))
            content_type, _, body = encode_scan(page, "png" if name == "scan" else "jpeg",
                                                exif_rotated=name == "photo")
        accepted = await ingest.SubmitTask(SubmitTaskRequest(
            submission=document_submission(content_type, body, facts)))
        cases[name] = (facts, accepted.task_id)

    for name, (facts, task_id) in cases.items():
        decision = await model_decision(settings, task_id)
        fields = read_right(decision, facts, ("invoice_number", "total", "currency",
                                              "invoice_date"))
        source = LayoutSource.LAYOUT_SOURCE_TEXT_LAYER if name == "pdf" \
            else LayoutSource.LAYOUT_SOURCE_OCR
        for field_name in ("invoice_number", "total"):
            where = fields[field_name].provenance
            assert where.page == 1 and where.source == source, (name, where)
            assert 0 <= where.box.x0 < where.box.x1 <= 1 and 0 <= where.box.y0 < where.box.y1 <= 1
            if source == LayoutSource.LAYOUT_SOURCE_OCR:
                assert 0 < where.ocr_confidence <= 1
            assert 0 < fields[field_name].confidence <= 1
        task = (await ingest.GetTask(GetTaskRequest(task_id=task_id))).task
        assert task.envelope.document.page_count == 1
        item = await review_item(review, task_id)
        assert item.escalation.layout.pages[0].source == source
        assert any(w.text for w in item.escalation.layout.pages[0].words)


async def test_an_e_mail_is_decided_as_the_document_it_carries(
        ingest: IngestServiceStub, review: ReviewServiceStub, settings: Settings) -> None:
    """Submitted without a kind, as a mailbox forwards them: a supplier's note with its
    invoice attached is decided as that PDF (fields read from its text layer, with where),
    the note kept in the metadata; a customer's request written in the message is routed and
    decided as its own text."""
    facts = invoice_facts(f"MAIL-{uuid.uuid4().int % 10**8:08d}")
    pdf = invoice_pdf(facts)
    note = EmailMessage()
    note["From"], note["To"] = "Larkspur Billing <billing@larkspur.example>", "ap@acme.example"
    note["Subject"] = f"Invoice {facts.invoice_number}"
    note.set_content("Hello,\n\nplease find our latest invoice attached.\n\nKind regards")
    note.add_attachment(pdf, maintype="application", subtype="pdf",
                        filename=f"{facts.invoice_number}.pdf")
    request = EmailMessage()
    request["From"], request["To"] = "Rosa Diaz <rosa@example.net>", "support@acme.example"
    request["Subject"] = "Cannot log in to my account since the update"
    request.set_content("Hi support team,\n\nsince yesterday's update I cannot log in to my "
                        "account: the app says my password is wrong although I reset it "
                        "twice. Please help, I need to download my order history for a "
                        "refund.\n\nThanks, Rosa")
    accepted = {}
    for name, message in (("invoice", note), ("request", request)):
        accepted[name] = (await ingest.SubmitTask(SubmitTaskRequest(submission=Submission(
            tenant_id="acme", idempotency_key=uuid.uuid4().hex,
            document=Document(content_type="message/rfc822", body=bytes(message),
                              filename=f"{name}.eml"))))).task_id

    task = (await ingest.GetTask(GetTaskRequest(task_id=accepted["invoice"]))).task
    document = task.envelope.document
    assert (document.content_type, document.filename, document.page_count) == (
        "application/pdf", f"{facts.invoice_number}.pdf", 1)
    assert task.envelope.metadata["email_subject"] == f"Invoice {facts.invoice_number}"
    assert "please find our latest invoice attached" in task.envelope.metadata["email_text"]
    decision = await model_decision(settings, accepted["invoice"])
    assert decision.label == "invoice", decision.explanation
    fields = read_right(decision, facts, ("invoice_number", "total", "currency",
                                          "invoice_date"))
    assert fields["total"].provenance.source == LayoutSource.LAYOUT_SOURCE_TEXT_LAYER

    task = (await ingest.GetTask(GetTaskRequest(task_id=accepted["request"]))).task
    assert task.envelope.document.content_type == "text/plain"
    assert task.envelope.document.body.decode().startswith(
        "From: Rosa Diaz <rosa@example.net>\nTo: support@acme.example\n")
    decision = await model_decision(settings, accepted["request"])
    assert decision.label == "support_ticket", decision.explanation


async def review_item(review: ReviewServiceStub, task_id: str) -> ReviewItem:
    item_id = await item_for(review, task_id)
    page = await review.ListQueue(ListQueueRequest(page_size=500))
    return next(i for i in page.items if i.item_id == item_id)


async def test_a_large_document_travels_by_blob_reference(
        ingest: IngestServiceStub, settings: Settings) -> None:
    """Above blob_threshold_bytes the bytes are stored once and the task carries a BlobRef
    with their sha256; the decision service reads the document through it."""
    # invoice numbers carry digits (an all-letter one, e.g. "DOC-LARGE-BBDFED", is not
    # told from a word by the extractor)
    facts = invoice_facts(f"DOC-LARGE-{uuid.uuid4().int % 10**8:08d}")
    body = padded_pdf(facts, settings.blob_threshold_bytes + 64 * 1024)
    accepted = await ingest.SubmitTask(SubmitTaskRequest(
        submission=document_submission("application/pdf", body, facts)))
    envelope = (await ingest.GetTask(GetTaskRequest(task_id=accepted.task_id))).task.envelope
    assert envelope.document.body == b""
    assert envelope.document.blob.uri.startswith("pg:")
    assert envelope.document.blob.sha256 == hashlib.sha256(body).hexdigest()
    assert envelope.document.blob.size_bytes == len(body)
    decision = await model_decision(settings, accepted.task_id)
    read_right(decision, facts, ("invoice_number", "total"))


def padded_pdf(facts: InvoiceFacts, at_least: int) -> bytes:
    """The invoice with a logo of random pixels (which do not compress) large enough."""
    from PIL import Image

    side = int((at_least / 3) ** 0.5) + 1
    logo = Image.frombytes("RGB", (side, side), random.Random(2).randbytes(side * side * 3))
    body = render_reportlab(block_of(facts, INVOICE_STYLE), INVOICE_STYLE, logo=logo)
    assert len(body) > at_least
    return body


@pytest.mark.parametrize(("name", "content_type", "code"), [
    ("forty_pages", "application/pdf", "too_many_pages"),
    ("decompression_bomb", "image/png", "too_many_pixels"),
    ("corrupt", "application/pdf", "corrupt"),
    ("encrypted", "application/pdf", "encrypted"),
    ("png_called_pdf", "application/pdf", "type_mismatch"),
])
async def test_hostile_documents_get_their_specific_error(
        ingest: IngestServiceStub, name: str, content_type: str, code: str) -> None:
    body = {
        "forty_pages": lambda: document_samples.text_pdf(pages=40),
        "decompression_bomb": lambda: document_samples.png_bomb(8000),
        "corrupt": document_samples.corrupt_pdf,
        "encrypted": lambda: document_samples.text_pdf(password="secret"),
        "png_called_pdf": lambda: document_samples.image("PNG"),
    }[name]()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ingest.SubmitTask(SubmitTaskRequest(
            submission=document_submission(content_type, body)))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    problem = field_violations(caught.value)["document.body"]
    assert problem.startswith(f"{code}: "), problem
    # and the service is still there for the next document
    fine = await ingest.SubmitTask(SubmitTaskRequest(submission=document_submission(
        "application/pdf", invoice_pdf(invoice_facts(f"DOC-AFTER-{name}")))))
    assert fine.created


#: Outside documents in flight at once (submitted, decision not yet stored) in the
#: outside-set test.
OUTSIDE_IN_FLIGHT = 16
#: What the router cascade did with the router's unsure answers (services/decision/cascade.py).
CASCADE_RESULTS = ("pooled", "unavailable", "mismatch", "unfamiliar")


# about 220 documents, scans for OCR among them, through the four services on 2 cores: about
# 100-150 s on a quiet machine, twice that on a loaded one (the suite's 300 s is per test)
@pytest.mark.timeout(900)
async def test_documents_from_outside_are_routed_and_read_without_a_kind(
        ingest: IngestServiceStub, settings: Settings) -> None:
    """The outside set (bench/outside/README.md), submitted as an upstream system that does
    not say what it sends: no document is carried out on a type the router got wrong without
    a person confirming the type, and routing and invoice fields stay at least as good as
    measured when the set was added (docs/documents.md#documents-from-outside-the-project;
    the floors sit a document or two below the figures, so a regression fails the test)."""
    documents = load_set(ROOT / "bench" / "outside")
    cascade_before = {r: metric_sum(settings.decision_metrics_port,
                                    "switchyard_router_cascade_total", f'result="{r}"')
                      for r in CASCADE_RESULTS}

    async def decided(document: EvalDocument) -> Decision:
        task = await ingest.SubmitTask(SubmitTaskRequest(submission=Submission(
            tenant_id="acme", idempotency_key=uuid.uuid4().hex,
            document=Document(content_type=document.content_type, body=document.body,
                              filename=document.filename))))
        # an OCR batch that runs past its deadline (60 s) is sent up to twice more before
        # its documents go to a person (triton_deadline_retries): over three minutes on a
        # loaded machine
        return await model_decision(settings, task.task_id, timeout_s=300)

    # a few at a time, as a mailbox's documents arrive: all 148 at once on CI's loaded 2
    # cores pushed OCR batches past their retries, and a document whose models could not be
    # reached goes to a person untyped, which says nothing of routing; such a one is sent
    # again (a new task) once the rest are in, and the count of them is shown on failure.
    # The next goes in as soon as one is decided (not a chunk after the slowest of the last),
    # pictures first, so the OCR of the scans overlaps the text documents
    in_flight = asyncio.Semaphore(OUTSIDE_IN_FLIGHT)

    async def in_turn(document: EvalDocument) -> Decision:
        async with in_flight:
            return await decided(document)

    documents.sort(key=lambda d: not d.content_type.startswith("image/"))
    decisions = list(await asyncio.gather(*(in_turn(d) for d in documents)))
    unreached = [i for i, d in enumerate(decisions) if d.rule == "model_unavailable"]
    for i in unreached:
        decisions[i] = await decided(documents[i])
    rows = []
    for document, decision in zip(documents, decisions):
        rows.append({"document": document, "error": "", "seconds": 0.0,
                     "fields": {f.name: f.value for f in decision.fields}, "located": {},
                     "label": decision.label, "rule": decision.rule, "pack": decision.pack,
                     "outcome": DecisionOutcome.Name(decision.outcome),
                     "explanation": decision.explanation})
    summary = summarise(rows)
    routing = summary["routing"]["all"]
    cascade = {r: metric_sum(settings.decision_metrics_port, "switchyard_router_cascade_total",
                             f'result="{r}"') - cascade_before[r] for r in CASCADE_RESULTS}
    # what a failure shows: the documents named wrong (or not named: the models did not
    # answer), and what the cascade did
    misrouted = [(row["document"].doc_id, row["label"] or row["explanation"]) for row in rows
                 if row["document"].kind and row["label"] != row["document"].kind]
    why = {"routing": summary["routing"]["all"], "named wrong": misrouted, "cascade": cascade,
           "sent again, the models not reached": [documents[i].doc_id for i in unreached]}
    # one named wrong without asking: the sixteenth batch's party-ledger account, taken for
    # an invoice (which then goes to a person for its missing fields). The invoice pack's
    # look-alikes (statements of account, payment reminders, bank and card statements, learned
    # as `other`) have the router ask about the other statements and the measurement sheet;
    # the eighteenth's packing list is asked about by its title (look_alike_title)
    assert routing["routed_wrong_unasked"] <= 2, why
    # with the router cascade (text_encoder's second opinion), the packs' signatures, the
    # invoice pack's examples in real-world layouts and its look-alikes: 234 of 265 named
    # right, 76 sent to a person to confirm the type (an unsure router's answer that the
    # document's own title confirms, or an unsure `other` that it names, goes on to the pack)
    assert routing["named_right"] >= routing["documents"] - 33, why
    assert routing["asked_a_person"] <= 78, why
    # nothing decided without a person that a person would have decided otherwise
    assert routing["automated_wrongly"] == 0, why
    right = sum(c["(all fields)"]["right"] for c in summary["accuracy"].values())
    shown = sum(c["(all fields)"]["shown"] for c in summary["accuracy"].values())
    wrong = sum(c["wrong"] for c in summary["read_wrong"].values())
    # 1,291 of 1,383 invoice fields right, 36 read wrong (docs/documents.md; OCR batches
    # vary by a field or two between runs)
    assert right >= shown - 97 and wrong <= 39, (right, shown, wrong, [
        (d["id"], d["wrong"]) for d in summary["documents"] if d["wrong"]])
