"""Reviewers' verdicts become labelled examples, end to end on the four service processes.

An invoice from a vendor the tenant never paid escalates; the decision service keeps what its
models saw. A reviewer corrects a field: the example is labelled with the type the person
confirmed, the corrected field (what the model read and what the person wrote), and the model
and pack versions that decided. A rejection labels the verdict but no type, unless the person names the document's real type. The vendor's next
invoice, decided without a person, keeps no example.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import asyncpg
import pytest

from services.decision.labels import labelled_examples
from switchyard import Settings
from switchyard.storage import codec_for
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
TENANT = "labels"
REPOSITORY = Path(__file__).resolve().parents[2] / "models" / "repository"
BLOCKED = {TaskStatus.TASK_STATUS_BLOCKED}


async def submit(ingest: IngestServiceStub, text: str, kind: str = "invoice") -> str:
    return (await ingest.SubmitTask(SubmitTaskRequest(submission=Submission(
        tenant_id=TENANT, idempotency_key=uuid.uuid4().hex, kind=kind,
        metadata={"received_date": "2026-11-22"},
        document=Document(content_type="text/plain", body=text.encode()))))).task_id


async def decide(review: ReviewServiceStub, task_id: str, kind: int,
                 fields: dict[str, str] | None = None, document_type: str = "") -> None:
    await give_verdict(review, task_id, kind, modified_fields=fields or {}, reason="checked",
                       document_type=document_type)


async def label_row(db: asyncpg.Connection, task_id: str) -> asyncpg.Record | None:
    return await db.fetchrow("SELECT * FROM decision_labels WHERE task_id = $1",
                             uuid.UUID(task_id))


async def labelled(db: asyncpg.Connection, task_id: str) -> asyncpg.Record:
    async def probe() -> asyncpg.Record | None:
        row = await label_row(db, task_id)
        return row if row is not None and row["verdict"] is not None else None
    return await eventually(probe, timeout_s=60, what=f"the verdict on {task_id} labelled")


async def test_a_reviewers_verdicts_label_what_the_models_saw(
        settings: Settings, ingest: IngestServiceStub, review: ReviewServiceStub,
        db: asyncpg.Connection) -> None:
    # a vendor never paid: the invoice pack escalates it, and the example waits for a person
    corrected = await submit(ingest, invoice(vendor="Brightwater Optics GmbH",
                                             number="BWO-3310"))
    task = await task_in(ingest, corrected, BLOCKED | TERMINAL_STATUSES)
    assert task.status == TaskStatus.TASK_STATUS_BLOCKED, task.reason
    pending = await label_row(db, corrected)
    assert pending is not None and pending["verdict"] is None and pending["label"] is None
    assert pending["predicted_label"] == "invoice" and pending["pack"] == "invoice"
    models = json.loads(pending["models"])
    served = json.loads((REPOSITORY / "document_router" / settings.router_version /
                         "model_card.json").read_text())["version"]
    assert models.get("document_router") == served and "invoice_risk" in models, models
    assert pending["rule"] and pending["example"] is not None

    await decide(review, corrected, Verdict.VERDICT_MODIFY, {"invoice_number": "BWO-3311"})
    row = await labelled(db, corrected)
    row_labelled_at = row["labelled_at"]
    assert row["verdict"] == "MODIFY" and row["label"] == "invoice"
    assert row["corrected_fields"] == ["invoice_number"]

    rejected = await submit(ingest, invoice(vendor="Corvid Lantern Works", number="CLW-77"))
    await task_in(ingest, rejected, BLOCKED | TERMINAL_STATUSES)
    await decide(review, rejected, Verdict.VERDICT_REJECT)
    row = await labelled(db, rejected)
    assert row["verdict"] == "REJECT" and row["label"] is None  # a rejection names no type
    assert row["corrected_fields"] == []

    # a person who says what the document really is labels that type on a rejection
    retyped = await submit(ingest, "Thanks for the quick fix on the VPN outage yesterday. "
                           "Invoice INV-88 attached for the record.\nTotal: EUR 40.00",
                           kind="invoice")
    await task_in(ingest, retyped, BLOCKED | TERMINAL_STATUSES)
    await decide(review, retyped, Verdict.VERDICT_REJECT, document_type="support_ticket")
    row = await labelled(db, retyped)
    assert row["verdict"] == "REJECT" and row["label"] == "support_ticket"
    router_label, router_confidence, kind = json.loads(row["outputs"])["document_router"]
    assert kind == "type"   # its classes hold the types: judged on the one the person named
    assert router_label != "support_ticket" and 0 <= router_confidence <= 1  # the router erred

    # what retraining reads: the text the router read, the correction with both values
    examples = {e.task_id: e for e in await labelled_examples(db, codec_for(settings))}
    example = examples[corrected]
    assert example.text is not None and "BWO-3310" in example.text
    assert "Brightwater Optics GmbH" in example.text
    assert example.corrections == {"invoice_number": ("BWO-3310", "BWO-3311")}
    assert example.label == "invoice" and example.pack_version
    assert examples[rejected].label is None and examples[rejected].text is not None

    # the corrected invoice runs; the vendor is known now, so its next invoice is decided
    # without a person and keeps no example; the first verdict stays the label
    done = await task_in(ingest, corrected, TERMINAL_STATUSES)
    assert done.status == TaskStatus.TASK_STATUS_SUCCEEDED, done.reason

    async def vendor_known() -> bool:
        return bool(await db.fetchval(
            "SELECT count(*) FROM decision_invoices WHERE task_id = $1 AND state = 'confirmed'",
            uuid.UUID(corrected)))
    await eventually(vendor_known, timeout_s=60, what="the approved invoice taught history")
    straight = await submit(ingest, invoice(vendor="Brightwater Optics GmbH",
                                            number="BWO-3312"))
    task = await task_in(ingest, straight, BLOCKED | TERMINAL_STATUSES)
    assert task.status == TaskStatus.TASK_STATUS_SUCCEEDED, task.reason
    assert await label_row(db, straight) is None
    again = await label_row(db, corrected)
    assert again is not None and again["verdict"] == "MODIFY"
    assert again["labelled_at"] == row_labelled_at
