"""Shared test data for the review tests: tasks in the system of record and escalations.

Tasks are inserted the way ingest stores them, because review items reference real tasks;
escalations are the protobuf the decision service publishes.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import asyncpg

from switchyard import Settings
from switchyard.tasks import timestamp
from switchyard.v1 import (
    ActionPlan,
    ActionStep,
    BoundingBox,
    Connector,
    Decision,
    DecisionOutcome,
    DecisionSource,
    Document,
    DocumentLayout,
    Escalation,
    EscalationReason,
    FieldExtraction,
    LayoutPage,
    LayoutSource,
    LayoutWord,
    ModelOutput,
    Provenance,
    StepKind,
    TaskEnvelope,
)

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def artifact(name: str) -> Path:
    """Where a test leaves files for people to look at (screenshots)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / name


async def insert_tasks(conn: asyncpg.Connection, tenant: str, count: int,
                       text: str = "Invoice INV-1 total 10.00",
                       document: Document | None = None) -> list[TaskEnvelope]:
    """Tasks as ingest stores them, BLOCKED awaiting review (what an escalation follows);
    ``document`` instead of ``text`` for a PDF or an image."""
    envelopes = []
    for _ in range(count):
        task_id = str(uuid.uuid4())
        envelope = TaskEnvelope(
            task_id=task_id, tenant_id=tenant, idempotency_key=task_id, kind="invoice",
            document=document or Document(content_type="text/plain", body=text.encode()),
            received_at=timestamp(datetime.now(timezone.utc)))
        envelopes.append(envelope)
    await conn.executemany(
        "INSERT INTO tasks (task_id, tenant_id, idempotency_key, payload_sha256, kind, source, "
        "envelope, status, stage) VALUES ($1,$2,$3,$4,'invoice','TASK_SOURCE_GRPC',$5,"
        "'BLOCKED','AWAITING_REVIEW')",
        [(uuid.UUID(e.task_id), tenant, e.idempotency_key,
          hashlib.sha256(e.document.body).hexdigest(), e.SerializeToString())
         for e in envelopes])
    return envelopes


def escalation(task: TaskEnvelope, queue: str, priority: int, *,
               sla: datetime | None = None,
               fields: Sequence[tuple[str, str, float] | FieldExtraction] = (),
               reason: int = EscalationReason.ESCALATION_REASON_LOW_CONFIDENCE,
               explanation: str = "Router is unsure: invoice 0.55, support_ticket 0.40.",
               reviewer_group: str = "", four_eyes: bool = False, step_id: str = "",
               instructions: str = "",
               ) -> Escalation:
    """An escalation of ``task`` at priority bucket ``priority`` (0 = P0); with ``step_id``
    one of an approval step (the plan has that step too)."""
    proposed = Decision(
        decision_id=str(uuid.uuid4()), task_id=task.task_id, tenant_id=task.tenant_id,
        outcome=DecisionOutcome.DECISION_OUTCOME_ESCALATE, confidence=0.55,
        rule="low_confidence", explanation=explanation, label="invoice",
        source=DecisionSource.DECISION_SOURCE_MODEL,
        plan=ActionPlan(steps=[ActionStep(step_id="1-post_invoice", name="post_invoice",
                                          connector=Connector.CONNECTOR_SQL,
                                          target="erp.invoices", operation="post_invoice")]),
        models=[ModelOutput(model_name="document_router", model_version="1", label="invoice",
                            confidence=0.55, scores={"invoice": 0.55, "support_ticket": 0.4})],
        fields=[f if isinstance(f, FieldExtraction) else
                FieldExtraction(name=f[0], value=f[1], confidence=f[2]) for f in fields],
    )
    if step_id:
        proposed.plan.steps.append(ActionStep(step_id=step_id, name=step_id.split("-", 1)[-1],
                                              kind=StepKind.STEP_KIND_APPROVAL))
        proposed.pack, proposed.pack_version = "expense_claim", "1.0.0"
    out = Escalation(
        escalation_id=str(uuid.uuid4()), task_id=task.task_id, tenant_id=task.tenant_id,
        queue=queue, priority=priority + 1,  # type: ignore[arg-type]
        reason=reason,  # type: ignore[arg-type]
        reason_detail=explanation, proposed_decision=proposed, task=task, service="decision",
        reviewer_group=reviewer_group, four_eyes=four_eyes, step_id=step_id,
        instructions=instructions)
    if sla is not None:
        out.sla_deadline.CopyFrom(timestamp(sla))
    return out


async def switchyard(settings: Settings, *args: str) -> tuple[int, str]:
    """Run the real command line with the test's settings in its environment."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "switchyard", *args, env={**os.environ, **settings.to_env()},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await process.communicate()
    return process.returncode or 0, out.decode()


@dataclass(frozen=True)
class ScannedInvoice:
    """A one-page invoice image and the layout OCR would read from it."""

    png: bytes
    layout: DocumentLayout
    # field name -> (value, where it was read)
    fields: dict[str, tuple[str, Provenance]]


SCANNED_LINES = ["Invoice INV-4711", "Vendor Jane Roe", "Phone +44 20 7946 0958",
                 "Total 1,250.00 EUR"]
# field -> (line, first word, last word) in SCANNED_LINES
SCANNED_FIELDS = {"invoice_number": (0, 1, 1), "vendor": (1, 1, 2), "total": (3, 1, 1)}


def scanned_invoice(width: int = 850, height: int = 1100) -> ScannedInvoice:
    """Black text on white drawn with Pillow, its words' boxes measured by Pillow: what a
    scan and its OCR layout look like to the review service."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=28)
    words: list[LayoutWord] = []
    line_words: list[list[int]] = []
    for row, line in enumerate(SCANNED_LINES):
        x, y = 80, 120 + row * 90
        line_words.append([])
        for text in line.split():
            x0, y0, x1, y1 = draw.textbbox((x, y), text, font=font)
            draw.text((x, y), text, font=font, fill=(0, 0, 0))
            line_words[-1].append(len(words))
            words.append(LayoutWord(text=text, confidence=0.93, box=BoundingBox(
                x0=x0 / width, y0=y0 / height, x1=x1 / width, y1=y1 / height)))
            x = x1 + 18
    fields = {}
    for name, (row, first, last) in SCANNED_FIELDS.items():
        chosen = [words[i] for i in line_words[row][first:last + 1]]
        box = BoundingBox(x0=min(w.box.x0 for w in chosen), y0=min(w.box.y0 for w in chosen),
                          x1=max(w.box.x1 for w in chosen), y1=max(w.box.y1 for w in chosen))
        fields[name] = (" ".join(w.text for w in chosen), Provenance(
            page=1, box=box, word_boxes=[w.box for w in chosen],
            source=LayoutSource.LAYOUT_SOURCE_OCR, ocr_confidence=0.93))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    layout = DocumentLayout(pages=[LayoutPage(number=1, width=width, height=height,
                                              source=LayoutSource.LAYOUT_SOURCE_OCR,
                                              words=words)])
    return ScannedInvoice(buffer.getvalue(), layout, fields)
