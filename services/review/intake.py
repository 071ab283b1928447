"""Escalations from Kafka into the admission backlog, checked and redacted first.

A record that can never become a review item (no ids, an unknown task) is rejected to the
dead-letter topic with the reason; everything else is stored, once per escalation id, with
personal data in the document redacted, because reviewers need the content, not the PII.
"""

from __future__ import annotations

import uuid

import asyncpg

from services.review.queue import ReviewQueue
from services.review.resolutions import DecisionPublisher
from switchyard._dataclass import redact_task
from switchyard._pii import Redactor
from switchyard._serde import decode
from switchyard._streams import Record, RejectRecord
from switchyard._telemetry import task_context
from switchyard.v1 import Escalation


def check(escalation: Escalation) -> None:
    problems = []
    for name in ("escalation_id", "task_id"):
        try:
            uuid.UUID(getattr(escalation, name))
        except ValueError:
            problems.append(f"{name} must be a UUID, got {getattr(escalation, name)!r}")
    if not escalation.tenant_id:
        problems.append("tenant_id is required")
    if problems:
        raise RejectRecord("invalid_escalation", "; ".join(problems))


def redact(escalation: Escalation, redactor: Redactor) -> Escalation:
    """A copy whose document body and metadata values have personal data redacted before it
    is stored (the proposed decision is kept whole: an approval runs its plan; reviewers see
    it redacted by the desk; so is the layout of a PDF or image, whose words say where to
    mask the page images, which are rendered from the unredacted file: the desk redacts the
    words and the console masks the images)."""
    out = Escalation()
    out.CopyFrom(escalation)
    redact_task(out.task, redactor)
    return out


class EscalationIntake:
    def __init__(self, queue: ReviewQueue, redactor: Redactor | None,
                 publisher: DecisionPublisher | None = None) -> None:
        self.queue = queue
        self.redactor = redactor
        self.publisher = publisher

    async def handle(self, record: Record) -> None:
        escalation = decode(record.value, record.headers, Escalation)
        check(escalation)
        with task_context(escalation.task_id):
            if self.redactor is not None:
                escalation = redact(escalation, self.redactor)
            try:
                added = await self.queue.enqueue(escalation)
            except asyncpg.ForeignKeyViolationError:
                raise RejectRecord("unknown_task", f"task {escalation.task_id} does not exist "
                                                   "in the system of record") from None
            if not added and self.publisher is not None:
                # a redelivery; if a person already decided, the task is being re-driven
                await self.publisher.republish_resolved(escalation.escalation_id)
