"""What packs' enrichers learn from: outcomes other services report as events.

An enricher that keeps history (the invoice pack's ``vendor_history``) learns only from
confirmed outcomes. The decision service never reads another service's tables to find out how
a task ended; it consumes two topics and hands each outcome to every enricher that learns
(one with ``confirm`` / ``reject``, see :mod:`services.decision.extensions`):

* ``decisions``: a decision with source HUMAN is a person's verdict -- approve or modify
  confirms the task (with the fields as the person left them), reject removes it and what it
  taught. Model and POLICY decisions (default actions taken without a person) teach nothing.
* ``task-status``: SUCCEEDED means the task's plan was carried out -- it confirms a task the
  model ran straight through (every rule passed); an escalated one is confirmed by a person
  only, so one executed on a review default action teaches nothing (the enricher knows which
  tasks the model ran itself).

Both are idempotent for the shipped enricher, so redelivered or replayed events change nothing.
A person's verdict also labels the task's example for retraining (:mod:`services.decision.labels`;
only the first verdict counts, so replays change nothing there either).
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg

from services.decision.extensions import Enrichers
from services.decision.labels import record_verdicts
from switchyard.messaging import (
    Record,
    RejectRecord,
    decode_batch,
    record_context,
    run_by_key,
    run_each,
)
from switchyard.storage import PLAINTEXT, PayloadCodec
from switchyard.v1 import Decision, DecisionOutcome, DecisionSource, StatusEvent, TaskStatus

log = logging.getLogger(__name__)


class HistoryLearner:
    """Handlers for the ``decisions`` and ``task-status`` agents of the decision service,
    each a whole batch at a time: every record is read, and only the few that teach (a
    person's verdict, a success) reach the enrichers, each in its record's context."""

    def __init__(self, enrichers: Enrichers, pool: asyncpg.Pool | None = None,
                 codec: PayloadCodec = PLAINTEXT) -> None:
        self.enrichers = enrichers
        self.pool, self.codec = pool, codec

    def _learners(self, method: str) -> list[object]:
        return [e for e in self.enrichers.all() if callable(getattr(e, method, None))]

    async def on_decisions(self, records: list[Record]) -> list[tuple[Record, RejectRecord]]:
        decoded, rejected = decode_batch(records, Decision)
        if self.pool is not None:  # one transaction for the batch's verdicts
            await record_verdicts(self.pool, [decision for _, decision in decoded], self.codec)
        # a task's verdicts in the order they were given, different tasks' concurrently
        rejected += await run_by_key(
            (decision.task_id, record, lambda d=decision: self._verdict(d))
            for record, decision in decoded
            if decision.source == DecisionSource.DECISION_SOURCE_HUMAN and decision.task_id)
        return rejected

    async def _verdict(self, decision: Decision) -> None:
        if decision.outcome == DecisionOutcome.DECISION_OUTCOME_REJECT:
            for enricher in self._learners("reject"):
                if await enricher.reject(decision.tenant_id, decision.task_id):
                    log.info("%s: task rejected by %s, forgotten", enricher.name,
                             decision.reviewer_id)
        elif decision.outcome == DecisionOutcome.DECISION_OUTCOME_AUTO_EXECUTE:
            corrected = {f.name: f.value for f in decision.fields}
            for enricher in self._learners("confirm"):
                if await enricher.confirm(decision.tenant_id, decision.task_id, corrected,
                                          True):
                    log.info("%s: task confirmed by %s", enricher.name, decision.reviewer_id)

    async def on_statuses(self, records: list[Record]) -> list[tuple[Record, RejectRecord]]:
        decoded, rejected = decode_batch(records, StatusEvent)
        succeeded: dict[str, tuple[StatusEvent, Record]] = {}
        for record, event in decoded:
            if event.status == TaskStatus.TASK_STATUS_SUCCEEDED and event.task_id:
                succeeded.setdefault(event.task_id, (event, record))
        for enricher in self._learners("confirm"):
            outcomes = list(succeeded.values())
            if outcomes and callable(getattr(enricher, "pending", None)):
                # one question for the batch: most successes are nothing this enricher keeps
                teach = await enricher.pending(
                    [(event.tenant_id, event.task_id) for event, _ in outcomes], False)
                outcomes = [(event, record) for event, record in outcomes
                            if event.task_id in teach]
            await run_each((record_context(record, event.task_id),
                            self._succeeded(enricher, event)) for event, record in outcomes)
        return rejected

    @staticmethod
    async def _succeeded(enricher: Any, event: StatusEvent) -> None:
        if await enricher.confirm(event.tenant_id, event.task_id, {}, False):
            log.info("%s: task confirmed by its successful execution", enricher.name)


__all__ = ["HistoryLearner"]
