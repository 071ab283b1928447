"""PII planted in documents never reaches logs, spans, audit snapshots or reviewers.

Documents carrying an email address, a payment card, an IBAN and a phone number go through
the whole pipeline (one escalated, so it reaches review); afterwards every service's log file,
every exported span and every audit entry is searched for those values.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

import pytest

from switchyard import Settings
from switchyard._db import connect
from switchyard._grpc import create_channel
from switchyard.stack import EmbeddedStack
from switchyard.v1 import (
    ClaimRequest,
    Document,
    GetTaskRequest,
    IngestServiceStub,
    ListQueueRequest,
    ReviewServiceStub,
    ReviewVerdict,
    Submission,
    SubmitTaskRequest,
    SubmitVerdictRequest,
    TaskStatus,
    Verdict,
)

pytestmark = pytest.mark.integration
PII = ["jane.roe@example.org", "4111 1111 1111 1111", "DE89 3704 0044 0532 0130 00",
       "+44 20 7946 0958"]
DOCUMENT = ("INVOICE No. 5521\nBill to: Initech GmbH, contact jane.roe@example.org, "
            "+44 20 7946 0958\nAmount due: EUR 2,310.00\nDue date: 2026-12-15\n"
            "PO number: PO-8812\nPay by card 4111 1111 1111 1111 or to IBAN "
            "DE89 3704 0044 0532 0130 00")
TERMINAL = {TaskStatus.TASK_STATUS_SUCCEEDED, TaskStatus.TASK_STATUS_FAILED,
            TaskStatus.TASK_STATUS_CANCELLED}


@pytest.fixture(scope="module")
def settings(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    spans = tmp_path_factory.mktemp("pii-spans") / "spans.jsonl"
    return settings.replace(otel_exporter="jsonl", otel_file=str(spans), log_level="DEBUG")


async def test_planted_pii_stays_out_of_logs_spans_audit_and_review(
        settings: Settings, pipeline: EmbeddedStack) -> None:
    ingest_channel = create_channel(f"127.0.0.1:{settings.ingest_grpc_port}")
    review_channel = create_channel(f"127.0.0.1:{settings.review_grpc_port}")
    ingest, review = IngestServiceStub(ingest_channel), ReviewServiceStub(review_channel)
    try:
        ids = []
        for kind in ("invoice", "support_ticket"):  # the second one is escalated
            ids.append((await ingest.SubmitTask(SubmitTaskRequest(submission=Submission(
                tenant_id="privacy", idempotency_key=uuid.uuid4().hex, kind=kind,
                document=Document(body=DOCUMENT.encode()))))).task_id)
        reviewed_text = ""
        deadline = time.monotonic() + 120
        open_ids = set(ids)
        while open_ids:
            assert time.monotonic() < deadline, f"tasks never finished: {open_ids}"
            for item in (await review.ListQueue(ListQueueRequest(page_size=100))).items:
                if item.escalation.task_id in open_ids and not item.claimed_by:
                    reviewed_text = item.escalation.task.document.body.decode()
                    await review.Claim(ClaimRequest(item_id=item.item_id, reviewer_id="rita"))
                    await review.SubmitVerdict(SubmitVerdictRequest(verdict=ReviewVerdict(
                        item_id=item.item_id, reviewer_id="rita",
                        verdict=Verdict.VERDICT_APPROVE)))
            for task_id in list(open_ids):
                task = (await ingest.GetTask(GetTaskRequest(task_id=task_id))).task
                if task.status in TERMINAL:
                    open_ids.discard(task_id)
            await asyncio.sleep(0.3)
    finally:
        await ingest_channel.close()
        await review_channel.close()

    assert reviewed_text, "one task should have gone through review"
    for value in PII:
        assert value not in reviewed_text, f"reviewer saw {value!r}"

    await asyncio.sleep(1.5)  # span batches flush every 200 ms
    logs = "\n".join(p.read_text(errors="replace")
                     for p in Path(pipeline.state_dir, "logs").glob("*.log"))
    spans = Path(settings.otel_file).read_text()
    assert "review verdict" in spans and len(logs) > 1000, "nothing was recorded to search"
    conn = await connect(settings)
    try:
        audit = json.dumps([dict(r) for r in await conn.fetch(
            "SELECT actor, action, detail FROM audit_log WHERE tenant_id = 'privacy'")],
            default=str)
    finally:
        await conn.close()
    assert "review.verdict" in audit and "step.executed" in audit, "no audit entries to search"
    for value in PII:
        for where, text in (("logs", logs), ("spans", spans), ("audit", audit)):
            assert value not in text, f"{value!r} leaked into {where}"
