"""Escalations from Kafka into the admission backlog, checked and redacted first.

A record that can never become a review item (no ids, an unknown task) is rejected to the
dead-letter topic with the reason; everything else is stored, once per escalation id, with
personal data in the document redacted, because reviewers need the content, not the PII.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import asyncpg

from services.review.queue import Arrival, ReviewQueue
from services.review.resolutions import DecisionPublisher
from switchyard.messaging import Record, RejectRecord, decode_batch, record_context, run_each
from switchyard.privacy import Redactor, redact_task
from switchyard.telemetry import current_trace_context
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
    """The escalations agent: a whole batch enqueued in one transaction."""

    def __init__(self, queue: ReviewQueue, redactor: Redactor | None,
                 publisher: DecisionPublisher | None = None,
                 on_backlogged: Callable[[], None] | None = None) -> None:
        self.queue = queue
        self.redactor = redactor
        self.publisher = publisher
        #: called when the batch put items in the admission backlog (wakes the admitter)
        self.on_backlogged = on_backlogged

    async def handle_batch(self, records: list[Record]) -> list[tuple[Record, RejectRecord]]:
        decoded, rejected = decode_batch(records, Escalation, check)
        arrivals: dict[str, tuple[Record, Arrival]] = {}
        for record, escalation in decoded:
            if self.redactor is not None:
                escalation = redact(escalation, self.redactor)
            # the item keeps the trace its escalation arrived in
            trace = record_context(record).run(current_trace_context)
            arrivals.setdefault(escalation.escalation_id,
                                (record, Arrival(escalation, trace)))  # a redelivery: once
        if not arrivals:
            return rejected
        batch = list(arrivals.values())
        try:
            added = await self.queue.enqueue_many([arrival for _, arrival in batch])
        except asyncpg.ForeignKeyViolationError:
            # an escalation names a task the system of record does not have: find it
            added = []
            for record, arrival in batch:
                try:
                    (new,) = await self.queue.enqueue_many([arrival])
                except asyncpg.ForeignKeyViolationError:
                    rejected.append((record, RejectRecord(
                        "unknown_task", f"task {arrival.escalation.task_id} does not exist "
                                        "in the system of record")))
                    new = True  # nothing stored, nothing to send again
                added.append(new)
        if self.on_backlogged is not None and any(added):
            self.on_backlogged()
        if self.publisher is not None:
            # a redelivery; if a person already decided, the task is being re-driven
            await run_each(
                (record_context(record, arrival.escalation.task_id),
                 self.publisher.republish_resolved(arrival.escalation.escalation_id))
                for (record, arrival), new in zip(batch, added) if not new)
        return rejected
