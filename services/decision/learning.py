"""What the vendor history learns from: outcomes other services report as events.

The decision service never reads another service's tables to find out how an invoice ended.
It consumes two topics instead:

* ``decisions``: a decision with source HUMAN is a person's verdict -- approve or modify
  confirms the invoice (with the fields as the person left them), reject removes it and
  what it taught. Model and POLICY decisions (default actions taken without a person) teach
  nothing.
* ``task-status``: SUCCEEDED means the invoice's plan was carried out -- it confirms an
  invoice the model ran straight through (every rule passed, its bank account included); an
  escalated invoice is confirmed by a person only, so one executed on a review default
  action teaches nothing.

Both are idempotent, so redelivered or replayed events change nothing.
"""

from __future__ import annotations

import logging

from services.decision.invoices import HistoryStore
from switchyard._serde import decode
from switchyard._streams import Record
from switchyard._telemetry import task_context
from switchyard.v1 import Decision, DecisionOutcome, DecisionSource, StatusEvent, TaskStatus

log = logging.getLogger(__name__)


class HistoryLearner:
    """Handlers for the ``decisions`` and ``task-status`` agents of the decision service."""

    def __init__(self, history: HistoryStore) -> None:
        self.history = history

    async def on_decision(self, record: Record) -> None:
        decision = decode(record.value, record.headers, Decision)
        if decision.source != DecisionSource.DECISION_SOURCE_HUMAN or not decision.task_id:
            return
        with task_context(decision.task_id):
            if decision.outcome == DecisionOutcome.DECISION_OUTCOME_REJECT:
                if await self.history.reject(decision.tenant_id, decision.task_id):
                    log.info("vendor history: invoice rejected by %s, forgotten",
                             decision.reviewer_id)
            elif decision.outcome == DecisionOutcome.DECISION_OUTCOME_AUTO_EXECUTE:
                corrected = {f.name: f.value for f in decision.fields}
                if await self.history.confirm(decision.tenant_id, decision.task_id, corrected):
                    log.info("vendor history: invoice confirmed by %s", decision.reviewer_id)

    async def on_status(self, record: Record) -> None:
        event = decode(record.value, record.headers, StatusEvent)
        if event.status != TaskStatus.TASK_STATUS_SUCCEEDED or not event.task_id:
            return
        with task_context(event.task_id):
            if await self.history.confirm(event.tenant_id, event.task_id, by_person=False):
                log.info("vendor history: invoice confirmed by its successful execution")


__all__ = ["HistoryLearner"]
