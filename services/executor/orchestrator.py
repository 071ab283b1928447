"""Carry out one decision end to end: job bookkeeping, status changes, saga, parking, escalation.

Both entry points end here: the decisions agent (a record from Kafka) and the resumer (a
parked or orphaned job from PostgreSQL). Everything the task's fate depends on is written to
PostgreSQL before the call returns, so the Kafka offset can be committed right after.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

import asyncpg

from services.executor.breakers import BreakerBoard
from services.executor.jobs import CANCELLED, ESCALATED, FAILED, SUCCEEDED, Job, JobStore
from services.executor.plan_context import TaskFacts, step_name
from services.executor.runner import PlanResult, PlanRunner
from services.executor.sla import SlaPolicy, at_risk
from switchyard.messaging import (
    ESCALATIONS,
    EXECUTIONS,
    Producer,
    Record,
    RejectRecord,
    decode_batch,
    run_by_key,
)
from switchyard.storage import (
    PLAINTEXT,
    TASK_ENVELOPE,
    GroupCommit,
    PayloadCodec,
    PayloadError,
    rewrap_stale,
)
from switchyard.tasks import (
    DEFAULT_REVIEW_QUEUE,
    HIGH,
    NORMAL,
    TERMINAL,
    URGENT,
    Move,
    Transition,
    build_escalation,
    publish_status,
    rejected,
    task_bucket,
    transition,
    transition_many,
)
from switchyard.telemetry import TASKS_TERMINAL, task_context
from switchyard.v1 import (
    ActionStep,
    CancellationRequest,
    Decision,
    DecisionOutcome,
    DecisionSource,
    Discrepancy,
    Escalation,
    EscalationReason,
    TaskEnvelope,
)

log = logging.getLogger(__name__)
SERVICE = "executor"
#: Why the executor hands a task to a person, by the code its job keeps.
ESCALATION_REASONS = {
    "sla_at_risk": EscalationReason.ESCALATION_REASON_SLA_AT_RISK,
    "compensation_failed": EscalationReason.ESCALATION_REASON_COMPENSATION_FAILED,
}
#: An approval step's escalation code is this plus the step id.
APPROVAL_CODE = "approval:"
APPROVAL_STEP = EscalationReason.ESCALATION_REASON_APPROVAL_STEP
#: What a reviewer's verdict does to a task whose compensation failed (a step's effect is
#: still in the downstream and the task cannot succeed any more).
COMPENSATION_FAILED_INSTRUCTIONS = (
    "A later step failed and undoing an earlier one failed too, so its effect is still in the "
    "downstream (see the reason). Approve: the undo is tried again (fix the downstream "
    "first); the task then ends FAILED with the effect undone. Reject: nothing more is "
    "undone; the task ends FAILED and the effect stays, to be put right in the downstream "
    "by hand.")


def _ids(decision: Decision) -> None:
    """A decision whose ids are no UUIDs can never be carried out (RejectRecord)."""
    _uuid(decision.decision_id, "decision_id")
    _uuid(decision.task_id, "task_id")


def _person_decided_at(decision: Decision) -> datetime | None:
    """When a person decided (a reviewer's verdict), else None (the models decided)."""
    if decision.source != DecisionSource.DECISION_SOURCE_HUMAN:
        return None
    if decision.HasField("decided_at"):
        return decision.decided_at.ToDatetime(timezone.utc)
    return datetime.now(timezone.utc)


def _uuid(value: str, field: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise RejectRecord("invalid_decision", f"{field} is not a UUID: {value!r}") from None


@dataclass(frozen=True)
class Ending:
    """A run's end: the task's last status change and its job's final state."""

    move: Move
    decision_id: str
    job_state: str
    job_reason: str


class Executor:
    def __init__(self, pool: asyncpg.Pool, producer: Producer, runner: PlanRunner,
                 jobs: JobStore, breakers: BreakerBoard, sla: SlaPolicy,
                 codec: PayloadCodec = PLAINTEXT) -> None:
        self.pool = pool
        self.codec = codec  # opens tasks.envelope (encryption at rest)
        self.producer = producer
        self.runner = runner
        self.jobs = jobs
        self.breakers = breakers
        self.sla = sla
        self.active: set[str] = set()  # decision ids running in this process
        # the runs that end at the same time end in one transaction
        self.endings: GroupCommit[Ending, Transition | None] = GroupCommit(
            "task_endings", pool, self._write_endings, key=lambda e: e.move.task_id)

    # -- entry: the decisions topic -----------------------------------------------------------
    async def on_decisions(self, records: list[Record]) -> list[tuple[Record, RejectRecord]]:
        """A batch of the decisions topic: the tasks it names are read in one statement, then
        each task's decisions run in order, different tasks' concurrently (the steps they
        record go to PostgreSQL together: ``PlanRunner.records``). Returns the records refused
        (not a decision, an unknown task, a task that cannot be opened); the rest of the batch
        runs."""
        decoded, rejected = decode_batch(records, Decision, _ids)
        rows = {str(row["task_id"]): row for row in await self.pool.fetch(
            "SELECT task_id, status, stage, created_at, envelope FROM tasks "
            "WHERE task_id = ANY($1::uuid[])",
            list({uuid.UUID(decision.task_id) for _, decision in decoded}))}
        # a task's first decision in the batch gets the row just read; a later one reads it
        # afresh (the first changed it)
        rejected += await run_by_key(
            (decision.task_id, record,
             lambda d=decision: self.on_decision(d, rows.pop(d.task_id, None)))
            for record, decision in decoded)
        return rejected

    async def on_decision(self, decision: Decision, task: asyncpg.Record | None = None
                          ) -> None:
        """Act on one decision; ``task`` is its task's row when the caller read it already."""
        _ids(decision)
        with task_context(decision.task_id):
            if decision.outcome == DecisionOutcome.DECISION_OUTCOME_REJECT and not (
                    decision.approves_step_id and decision.plan.steps):
                handed = None
                if decision.source != DecisionSource.DECISION_SOURCE_MODEL:
                    # a person rejected what this service handed over after steps ran: they
                    # are undone (the plan is the handed-over job's) before the task ends
                    handed = await self.jobs.handed_over(decision.task_id)
                if handed is None:
                    # one rule whoever rejected (a reviewer, a review queue's default action)
                    status, _, reason = rejected(decision.rule)
                    await self._finish(decision, status, reason, decision.explanation)
                    return
                decision.plan.CopyFrom(handed.decision.plan)
            # a rejected approval step is a job too: its finished steps are compensated
            if decision.outcome not in (DecisionOutcome.DECISION_OUTCOME_AUTO_EXECUTE,
                                        DecisionOutcome.DECISION_OUTCOME_REJECT):
                log.warning("ignoring decision %s with outcome %s", decision.decision_id,
                            DecisionOutcome.Name(decision.outcome))
                return
            task = task or await self._task(decision.task_id)
            if task is None:
                raise RejectRecord("unknown_task", f"no task {decision.task_id} in the system "
                                                   "of record")
            if task["status"] in TERMINAL or decision.decision_id in self.active:
                return
            try:
                envelope = self._envelope(decision.task_id, task)
            except PayloadError as exc:
                raise RejectRecord("undecryptable_task", str(exc)) from None
            await rewrap_stale(self.pool, self.codec, TASK_ENVELOPE,
                               [(decision.task_id, task["envelope"])])
            deadline = self.sla.deadline(decision.tenant_id, task["created_at"], envelope,
                                         _person_decided_at(decision))
            job = await self.jobs.start(decision, deadline, task_bucket(envelope))
            if job is None:  # parked, finished, with a person, or running on a live replica
                escalated = await self.jobs.escalated(decision.decision_id)
                if escalated is not None:
                    await self.resend_escalation(escalated)
                return
            await self.run(job, task=task)

    # -- entry: the cancellations topic -------------------------------------------------------
    async def on_cancellations(self, records: list[Record]
                               ) -> list[tuple[Record, RejectRecord]]:
        """A batch of the cancellations topic. Ingest recorded these cancellations of
        executing tasks (the requests themselves live in PostgreSQL, which the runner checks
        before every group of steps): their parked jobs are made due now, in one statement, so
        they are compensated and cancelled now, not when their endpoints recover; so is a job
        that handed its task to a person after steps ran (an approval step), which a reviewer
        would otherwise have to answer first. A running job sees its request before its next
        group of steps; a finished one is past cancelling. Returns the records refused (not
        a cancellation, no task id)."""
        decoded, rejected = decode_batch(records, CancellationRequest,
                                         lambda request: _uuid(request.task_id, "task_id"))
        woken = await self.jobs.wake_for_cancellation(
            [request.task_id for _, request in decoded])
        for _, request in decoded:
            with task_context(request.task_id):
                log.info("cancellation requested by %s (%d job(s) made due)",
                         request.requested_by or "?", woken.get(request.task_id, 0))
        return rejected

    # -- entry: the resumer -------------------------------------------------------------------
    async def run(self, job: Job, probe: str = "", task: asyncpg.Record | None = None
                  ) -> None:
        """Run (or resume) a job this replica holds; ``task`` is its task's row when the
        caller has just read it (it is read here otherwise)."""
        decision = job.decision
        if job.decision_id in self.active:
            return  # already running in this process (a redelivery raced the resumer)
        self.active.add(job.decision_id)
        try:
            with task_context(decision.task_id):
                await self._run(job, probe, task)
        finally:
            self.active.discard(job.decision_id)
            if probe:
                self.breakers.end_probe(probe)
                await self.breakers.flush()
                await self.breakers.release_probe(probe)

    async def _run(self, job: Job, probe: str, task: asyncpg.Record | None) -> None:
        decision = job.decision
        task = task or await self._task(decision.task_id)
        if task is None or task["status"] in TERMINAL:
            await self.jobs.finish(job, SUCCEEDED if task and task["status"] == "SUCCEEDED"
                                   else FAILED, "task already terminal")
            return
        problems = self.runner.validate(decision)
        if problems:  # e.g. an alias SWITCHYARD_EXECUTOR_ENDPOINTS lacks: nothing is called
            detail = "; ".join(problems)
            await self._end(job, "FAILED", "invalid_plan", detail, FAILED,
                            f"invalid_plan: {detail}"[:500])
            return
        facts = self._facts(decision.task_id, task)
        if decision.outcome == DecisionOutcome.DECISION_OUTCOME_REJECT:
            await self._rejected(job, facts, probe)
            return
        if (task["status"], task["stage"]) != ("IN_PROGRESS", "EXECUTING"):
            await self._move(decision, "IN_PROGRESS", "EXECUTING",
                             "resumed" if job.parks else "executing")
        result = await self.runner.run(decision, probe, job.parks, facts)
        if result.outcome == "needs_compensation":
            await self._publish(result)
            await self._move(decision, "IN_PROGRESS", "COMPENSATING", "compensating",
                             result.cause)
            result = await self.runner.compensate(decision, result.cause, probe, job.parks,
                                                  facts)
        await self._publish(result)
        if result.outcome == "approval":
            assert result.approval is not None
            await self.escalate_approval(job, result.approval, result.discrepancies)
        elif result.outcome == "succeeded":
            await self._end(job, "SUCCEEDED", "executed",
                            f"{len(decision.plan.steps)} step(s) done", SUCCEEDED)
        elif result.outcome == "failed":
            # compensated; a cancellation (asked now or before a resumed saga) ends it as such
            cancelled = await self.runner.cancellation(decision.task_id)
            if cancelled is not None:
                await self._end(job, "CANCELLED", "cancelled", result.cause, CANCELLED,
                                cancelled[:500])
            else:
                await self._end(job, "FAILED", "execution_failed", result.cause, FAILED,
                                result.cause[:500])
        elif result.outcome == "compensation_failed":
            await self.escalate(job, EscalationReason.ESCALATION_REASON_COMPENSATION_FAILED,
                                "compensation_failed", result.cause)
        else:
            await self._park(job, result)

    async def _rejected(self, job: Job, facts: TaskFacts, probe: str) -> None:
        """A person rejected an approval step (the step fails) or a task this service handed
        over after steps ran: the steps done are compensated, and the task ends FAILED
        ``rejected:<rule>`` (the one rule for a REJECT), or goes to a person when a
        compensation fails."""
        decision = job.decision
        if decision.approves_step_id:
            settled = await self.runner.reject(decision)
            if settled is not None:
                await self.producer.send(EXECUTIONS, decision.task_id, settled)
            cause = f"approval step {decision.approves_step_id} rejected"
        else:
            cause = f"rejected by {decision.reviewer_id or 'policy'}: {decision.rule}"
        await self._move(decision, "IN_PROGRESS", "COMPENSATING", "compensating", cause)
        result = await self.runner.compensate(decision, cause, probe, job.parks, facts)
        await self._publish(result)
        if result.outcome == "failed":
            status, _, reason = rejected(decision.rule)
            detail = "; ".join(filter(None, (decision.explanation, result.cause)))
            await self._end(job, status, reason, detail, FAILED,
                            f"{reason}: {result.cause}"[:500])
        elif result.outcome == "compensation_failed":
            await self.escalate(job, EscalationReason.ESCALATION_REASON_COMPENSATION_FAILED,
                                "compensation_failed", result.cause)
        else:
            await self._park(job, result)

    async def _park(self, job: Job, result: PlanResult) -> None:
        blocked = result.blocked
        assert blocked is not None
        decision = job.decision
        if blocked.waiting:  # a wait the plan asked for: its own clock, not the task's SLA
            await self._move(decision, "BLOCKED", "EXECUTING", blocked.reason, blocked.detail)
            await self.jobs.park(job, blocked.kind, "", blocked.reason, blocked.retry_at)
            if blocked.kind == "callback" and not await self.runner.waiting(
                    decision.task_id, blocked.step_id):
                await self.jobs.wake(decision.task_id)  # the callback came while we parked
            log.info("task waiting (%s)", blocked.detail)
            return
        assert blocked.retry_at is not None
        if at_risk(job.deadline, blocked.retry_at):
            await self.escalate(
                job, EscalationReason.ESCALATION_REASON_SLA_AT_RISK, "sla_at_risk",
                f"{blocked.reason}: could only resume at {blocked.retry_at.isoformat()}, past "
                f"the deadline {job.deadline.isoformat()} ({blocked.detail})")
            return
        stage = "COMPENSATING" if result.cause else "EXECUTING"
        await self._move(decision, "BLOCKED", stage, blocked.reason, blocked.detail)
        await self.jobs.park(job, blocked.kind, blocked.endpoint, blocked.reason,
                             blocked.retry_at)
        log.info("parked task on %s until %s", blocked.reason, blocked.retry_at.isoformat())

    async def escalate(self, job: Job, reason: int, code: str, detail: str) -> None:
        """Hand the task to a person (review queue), with the plan it would run."""
        decision = job.decision
        if not await self._move(decision, "BLOCKED", "AWAITING_REVIEW", code, detail):
            # the task ended meanwhile: a finished task is never handed to a reviewer
            await self.jobs.finish(job, FAILED, "task already terminal")
            return
        await self.producer.send(ESCALATIONS, decision.task_id,
                                 await self._escalation(job, reason, code, detail))
        # "code: detail", so the escalation can be sent again exactly (see on_decision)
        await self.jobs.finish(job, ESCALATED, f"{code}: {detail}"[:2000])
        log.warning("escalated task: %s", detail)

    async def escalate_approval(self, job: Job, step: ActionStep,
                                discrepancies: Sequence[Discrepancy] = ()) -> None:
        """Hand the task to a person for an approval step: the step's ApprovalSpec says the
        queue, group, four eyes, SLA, instructions, the fields its reviewers see
        (``reveal``) and, rendered, the discrepancies they check; the proposed decision is
        this one, with its plan, so the verdict (``approves_step_id``) resumes or compensates
        it."""
        decision = job.decision
        code = f"{APPROVAL_CODE}{step.step_id}"
        # the instructions travel in the escalation only: rendered, they may name a person,
        # and this detail is also the task-status event's and the job's reason
        detail = f"waiting for a person to approve step {step_name(step)}"
        if not await self._move(decision, "BLOCKED", "AWAITING_REVIEW", code, detail):
            await self.jobs.finish(job, FAILED, "task already terminal")
            return
        await self.producer.send(ESCALATIONS, decision.task_id,
                                 await self._escalation(job, APPROVAL_STEP, code, detail,
                                                        step=step,
                                                        discrepancies=discrepancies))
        await self.jobs.finish(job, ESCALATED, f"{code}: {detail}"[:2000])
        log.info("task waits for approval of step %s", step.step_id)

    async def resend_escalation(self, job: Job) -> None:
        """The task's decision came again while its job sits with a person: the task is
        being re-driven, so the escalation's record may have been lost; send it again (the
        review service dedupes it by its id)."""
        code, _, detail = job.reason.partition(": ")
        step = None
        discrepancies: list[Discrepancy] = []
        if code.startswith(APPROVAL_CODE):
            step_id = code.removeprefix(APPROVAL_CODE)
            step = next((s for s in job.decision.plan.steps if s.step_id == step_id), None)
        reason = APPROVAL_STEP if step is not None else ESCALATION_REASONS.get(code)
        task = await self._task(job.decision.task_id)
        if reason is None or task is None or task["status"] in TERMINAL:
            return
        if step is not None:  # as it was first sent: its templates rendered
            step, discrepancies = await self.runner.approval(
                job.decision, step, self._facts(job.decision.task_id, task))
        await self.producer.send(ESCALATIONS, job.decision.task_id,
                                 await self._escalation(job, reason, code, detail, task, step,
                                                        discrepancies))
        log.warning("re-sent the escalation of a re-driven task (%s)", code)

    async def _escalation(self, job: Job, reason: int, code: str, detail: str,
                          task: asyncpg.Record | None = None,
                          step: ActionStep | None = None,
                          discrepancies: Sequence[Discrepancy] = ()) -> Escalation:
        """``task``: the task's row when the caller has just read it (else read here);
        ``step``: the approval step it asks a person about, ``discrepancies`` what its
        ``discrepancies`` expression gave. Every escalation reveals the decision's
        ``revealed_fields`` (:func:`build_escalation`); an approval step's ``reveal``, when it
        names any, replaces them (minimum necessary: what that check needs)."""
        decision = job.decision
        if task is None:
            task = await self._task(decision.task_id)
        envelope = TaskEnvelope()
        if task:
            try:
                envelope = self._envelope(decision.task_id, task)
            except PayloadError as exc:  # a person still gets the task, without its body
                log.error("escalating without the document: %s", exc)
        if step is not None:
            approval = step.approval
            sla = approval.sla.ToTimedelta() if approval.HasField("sla") else None
            escalation = build_escalation(
                envelope, decision,
                queue=approval.queue or decision.review_queue or DEFAULT_REVIEW_QUEUE,
                bucket=NORMAL, reason=reason, detail=detail,  # type: ignore[arg-type]
                service=SERVICE, code=code,
                sla_deadline=datetime.now(timezone.utc) + sla if sla else None)
            escalation.reviewer_group = approval.reviewer_group
            escalation.four_eyes = approval.four_eyes
            escalation.step_id = step.step_id
            escalation.instructions = approval.instructions
            escalation.discrepancies.extend(discrepancies)
            if approval.reveal:
                del escalation.revealed_fields[:]
                escalation.revealed_fields.extend(approval.reveal)
            return escalation
        urgent = reason == EscalationReason.ESCALATION_REASON_SLA_AT_RISK
        escalation = build_escalation(
            envelope, decision, queue=decision.review_queue or DEFAULT_REVIEW_QUEUE,
            bucket=URGENT if urgent else HIGH, reason=reason,  # type: ignore[arg-type]
            detail=detail, service=SERVICE, code=code, sla_deadline=job.deadline)
        if reason == EscalationReason.ESCALATION_REASON_COMPENSATION_FAILED:
            escalation.instructions = COMPENSATION_FAILED_INSTRUCTIONS
        return escalation

    # -- helpers ------------------------------------------------------------------------------
    def _facts(self, task_id: str, task: asyncpg.Record) -> TaskFacts:
        """The task's kind and metadata for the plan's templates (none when its envelope
        cannot be opened: a template that needs them then fails the step, clearly)."""
        try:
            envelope = self._envelope(task_id, task)
        except PayloadError as exc:
            log.error("plan templates without the task's metadata: %s", exc)
            return TaskFacts()
        return TaskFacts(kind=envelope.kind, metadata=dict(envelope.metadata))

    def _envelope(self, task_id: str, task: asyncpg.Record) -> TaskEnvelope:
        return TaskEnvelope.FromString(self.codec.open(task_id, task["envelope"], TASK_ENVELOPE))

    async def _task(self, task_id: str) -> asyncpg.Record | None:
        return await self.pool.fetchrow(
            "SELECT status, stage, created_at, envelope FROM tasks WHERE task_id = $1",
            uuid.UUID(task_id))

    async def _publish(self, result: PlanResult) -> None:
        """Send the run's results, every record before any acknowledgement is awaited."""
        await asyncio.gather(*[
            await self.producer.send_nowait(EXECUTIONS, execution.task_id, execution)
            for execution in result.results])
        result.results = []

    async def _move(self, decision: Decision, status: str, stage: str, reason: str,
                    detail: str = "") -> bool:
        async with self.pool.acquire() as conn:
            change = await transition(conn, decision.task_id, status, stage, SERVICE,
                                      reason[:200], detail[:2000])
        if change is not None:
            await publish_status(self.producer, change.event)
        return change is not None

    async def _finish(self, decision: Decision, status: str, reason: str, detail: str) -> None:
        if await self._move(decision, status, "DONE", reason, detail):
            TASKS_TERMINAL.labels(SERVICE, status).inc()

    async def _end(self, job: Job, status: str, reason: str, detail: str, job_state: str,
                   job_reason: str = "") -> None:
        """End the task (``status``, stage DONE) and its job in one transaction, shared with
        the other runs ending now (``self.endings``), then publish the status change."""
        change = await self.endings.submit(Ending(
            Move(job.task_id, status, "DONE", reason[:200], detail[:2000]), job.decision_id,
            job_state, job_reason))
        if change is not None:
            TASKS_TERMINAL.labels(SERVICE, status).inc()
            await publish_status(self.producer, change.event)

    async def _write_endings(self, conn: asyncpg.Connection, endings: list[Ending]
                             ) -> list[Transition | None]:
        changes = await transition_many(conn, [e.move for e in endings], SERVICE)
        await self.jobs.finish_all(conn, [(e.decision_id, e.job_state, e.job_reason)
                                          for e in endings])
        return [changes.get(e.move.task_id) for e in endings]

