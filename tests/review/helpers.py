"""Shared test data for the review tests: tasks in the system of record and escalations.

Tasks are inserted the way ingest stores them, because review items reference real tasks;
escalations are the protobuf the decision service publishes.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
import uuid
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import asyncpg

from switchyard import Settings
from switchyard._taskstore import timestamp
from switchyard.v1 import (
    ActionPlan,
    ActionStep,
    Connector,
    Decision,
    DecisionOutcome,
    DecisionSource,
    Document,
    Escalation,
    EscalationReason,
    FieldExtraction,
    ModelOutput,
    StepKind,
    TaskEnvelope,
)

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def artifact(name: str) -> Path:
    """Where a test leaves files for people to look at (screenshots)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / name


async def insert_tasks(conn: asyncpg.Connection, tenant: str, count: int,
                       text: str = "Invoice INV-1 total 10.00") -> list[TaskEnvelope]:
    """Tasks as ingest stores them, BLOCKED awaiting review (what an escalation follows)."""
    envelopes = []
    for _ in range(count):
        task_id = str(uuid.uuid4())
        envelope = TaskEnvelope(
            task_id=task_id, tenant_id=tenant, idempotency_key=task_id, kind="invoice",
            document=Document(content_type="text/plain", body=text.encode()),
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
               fields: Sequence[tuple[str, str, float]] = (),
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
        fields=[FieldExtraction(name=n, value=v, confidence=c) for n, v, c in fields],
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
