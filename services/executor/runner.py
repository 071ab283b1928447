"""Run a decision's action plan: each step once, retried with backoff, compensated on failure.

Effects happen once: a step's idempotency key is ``<task_id>:<step_id>`` (a compensation's is
``<task_id>:<step_id>:compensate``), sent to the downstream, and its result is stored in
``executions`` before the decision's offset is committed; a redelivered or resumed decision
finds finished steps there and skips them, and the downstream deduplicates the one call that
may have landed without its result being recorded.

Steps run in plan order; consecutive steps of one ``parallel_group`` run together (the run
goes on when all of them are done). Before a step runs, its ``when`` condition is evaluated
(false: recorded ``STEP_OUTCOME_SKIPPED_CONDITION``, not called) and its payload templates are
rendered (:mod:`services.executor.plan_context`); an expression that cannot be evaluated fails
the step permanently. Approval and wait steps call nothing: they are recorded
``STEP_OUTCOME_WAITING`` (with the time the wait started) until a person approves, the timer
is due, or a callback (``ExecutorService.CompleteWait``) or its timeout settles them.

A run ends in one of five ways:

* ``succeeded``: every step done.
* ``blocked``: a step met an open breaker, ran out of inline retries, or was told to come back
  later than the inline backoff allows, a call step's ``retry_later`` held for the answer it
  got (recorded WAITING, called again after ``every``), or a wait step is waiting; the caller
  parks the task
  (nothing is retried in a loop here) and a resumer runs it again later.
* ``approval``: an approval step waits for a person; the caller escalates the task.
* ``needs_compensation``: a step failed permanently; :meth:`PlanRunner.compensate` undoes the
  finished steps in reverse order (a saga) and the task ends FAILED with the cause.
* ``compensation_failed``: a compensation failed permanently; a person has to look.

A step found already done is not called again; the run publishes an ``ExecutionResult`` with
``STEP_OUTCOME_SKIPPED_DUPLICATE`` for it (each time the decision runs again), so consumers
of the ``executions`` topic see every run's view of every step.

A step's output (a downstream's JSON answer) is kept whole only sealed, in
``executions.output`` (the payload codec), where later steps' templates read it, also after a
park and resume; ``executions.result`` and the ``executions`` topic get it redacted by the
decision's personal and health fields (:func:`kept_output`), like the summary and the error.

A cancellation requested for the task (``cancellation_requests``, written by ingest's
CancelTask) is checked before each group of steps: no further step runs, and the finished
ones are compensated like after a failure; the caller then ends the task CANCELLED.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg
from google.protobuf.json_format import MessageToDict
from prometheus_client import Counter

from services.executor.breakers import BreakerBoard, BreakerOpen
from services.executor.connectors import (
    MAX_OUTPUT_CHARS,
    Answer,
    Connector,
    StepCall,
    StepError,
)
from services.executor.endpoints import (
    InvalidTarget,
    Route,
    Router,
    substitute,
    substitute_all,
)
from services.executor.plan_context import (
    ExpressionError,
    TaskFacts,
    check_retry_later,
    condition_holds,
    discrepancies,
    retry_later_holds,
    plan_context,
    render,
    render_target,
    step_name,
)
from switchyard.audit import Entry, append as audit_append, append_many, digest
from switchyard.packs import MIN_RETRY_LATER_S
from switchyard.privacy import Withheld, redact_free_text, withheld_of, withhold_answer
from switchyard.storage import EXECUTION_OUTPUT, PLAINTEXT, GroupCommit, PayloadCodec, PayloadError
from switchyard.tasks import timestamp
from switchyard.v1 import (
    ActionStep,
    Connector,
    Decision,
    DecisionOutcome,
    DecisionSource,
    Discrepancy,
    ExecutionResult,
    StepKind,
    StepOutcome,
)

SUCCEEDED_NAME = StepOutcome.Name(StepOutcome.STEP_OUTCOME_SUCCEEDED)
PERMANENT_NAME = StepOutcome.Name(StepOutcome.STEP_OUTCOME_FAILED_PERMANENT)
COMPENSATED_NAME = StepOutcome.Name(StepOutcome.STEP_OUTCOME_COMPENSATED)
WAITING_NAME = StepOutcome.Name(StepOutcome.STEP_OUTCOME_WAITING)
SKIPPED_CONDITION_NAME = StepOutcome.Name(StepOutcome.STEP_OUTCOME_SKIPPED_CONDITION)
#: A step recorded with one of these is not run again.
DONE_NAMES = frozenset({SUCCEEDED_NAME, SKIPPED_CONDITION_NAME})
#: Step kinds that pause the plan instead of calling a downstream.
PAUSES = frozenset({StepKind.STEP_KIND_APPROVAL, StepKind.STEP_KIND_WAIT})
COMPENSATION_PREFIX = "compensate:"
MAX_PARK_DELAY_S = 600.0
RETRYABLE_NAME = StepOutcome.Name(StepOutcome.STEP_OUTCOME_FAILED_RETRYABLE)
#: What a downstream answers a repeated idempotency key with while it holds the key's first
#: request (HTTP 409, as the IETF Idempotency-Key draft has it; gRPC ALREADY_EXISTS): after
#: an attempt whose answer was lost, not a refusal but "that request exists", its outcome
#: unknown, so it is retried (and parks, and goes to a person past the deadline), never
#: failed and compensated around as if it had not acted.
KEY_IN_USE: dict[int | str, int] = {Connector.CONNECTOR_HTTP: 409,
                                    Connector.CONNECTOR_GRPC: 6}   # ALREADY_EXISTS

log = logging.getLogger(__name__)

STEP_CALLS = Counter(
    "switchyard_executor_step_calls_total",
    "Downstream calls made for plan steps and compensations, by endpoint and result.",
    ["endpoint", "result"],
)


@dataclass(frozen=True)
class RetryConfig:
    max_attempts: int = 4
    backoff_base_s: float = 0.2
    backoff_cap_s: float = 5.0
    retry_park_s: float = 5.0
    timeouts: dict[int, float] = field(default_factory=dict)  # per connector
    default_timeout_s: float = 10.0


@dataclass(frozen=True)
class Blocked:
    """Why and until when a task waits: ``kind`` 'breaker' (until the endpoint's breaker
    closes), 'retry' (until ``retry_at``), 'later' (a call step's ``retry_later`` said "not
    now": until ``retry_at``), 'timer' (a wait step, until ``retry_at``) or 'callback' (a wait
    step, until CompleteWait or its timeout ``retry_at``, None: none)."""

    kind: str
    endpoint: str
    reason: str
    detail: str
    retry_at: datetime | None
    step_id: str = ""  # the wait step, for 'timer' and 'callback'

    @property
    def waiting(self) -> bool:
        """A wait the plan asked for, not a failure: no SLA escalation while it lasts."""
        return self.kind in ("timer", "callback")


@dataclass
class PlanResult:
    # succeeded | blocked | approval | needs_compensation | failed | compensation_failed
    outcome: str
    results: list[ExecutionResult] = field(default_factory=list)
    cause: str = ""
    blocked: Blocked | None = None
    compensated: list[str] = field(default_factory=list)
    approval: ActionStep | None = None  # the approval step waiting for a person
    #: what the approval step's ``discrepancies`` rendered to, for its escalation
    discrepancies: list[Discrepancy] = field(default_factory=list)


@dataclass(frozen=True)
class _Attempted:
    outcome: int
    calls: int
    summary: str = ""
    error: str = ""
    blocked: Blocked | None = None
    output: dict[str, Any] | None = None  # the full output (sealed when stored)
    answer: Answer | None = None  # what the downstream answered, when it did


@dataclass(frozen=True)
class _StepRun:
    """How one step (or a paused one) of a run went: what to publish, and why the run
    cannot go on (``failure``: compensate; ``blocked``: park; ``approval``: escalate)."""

    results: list[ExecutionResult]
    failure: str = ""
    blocked: Blocked | None = None
    approval: ActionStep | None = None
    discrepancies: list[Discrepancy] = field(default_factory=list)


def output_id(task_id: str, step_id: str) -> uuid.UUID:
    """The id ``executions.output`` is sealed to (one column, as the payload codec binds a
    blob to its row): derived from the row's key, task and step id."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"execution-output:{task_id}:{step_id}")


def kept_output(output: dict[str, Any] | None, withheld: Withheld) -> dict[str, Any] | None:
    """What of a step's full output is stored in plain ``executions.result`` and published on
    the ``executions`` topic: redacted like every answer kept (the decision's personal and
    health values withheld, other strings through the PII detectors); None when nothing is,
    or when it is longer than :data:`MAX_OUTPUT_CHARS` once redacted."""
    if not output:
        return None
    cleaned = withhold_answer(output, withheld)
    if not isinstance(cleaned, dict) or len(json.dumps(cleaned)) > MAX_OUTPUT_CHARS:
        return None
    return cleaned


def _cancelled(reason: str) -> str:
    return f"cancelled: {reason or 'no reason given'}"


def step_groups(steps: Sequence[ActionStep]) -> list[list[ActionStep]]:
    """The plan as the run sees it: consecutive steps of one non-empty ``parallel_group``
    together, every other step alone."""
    groups: list[list[ActionStep]] = []
    for step in steps:
        if step.parallel_group and groups and groups[-1][0].parallel_group == \
                step.parallel_group:
            groups[-1].append(step)
        else:
            groups.append([step])
    return groups


def uses_plan_features(decision: Decision) -> bool:
    """Whether the plan uses anything beyond plain calls (a pack's plan, a step kind, a
    condition, a parallel group or a template)."""
    if decision.plan.pack:
        return True
    for step in decision.plan.steps:
        if step.kind or step.when or step.parallel_group or "${" in step.target \
                or step.HasField("retry_later"):
            return True
        payloads = [step.payload, step.compensation.payload]
        if any("${" in json.dumps(MessageToDict(p)) for p in payloads):
            return True
    return False


def backoff_bounds(step: ActionStep, config: RetryConfig) -> tuple[float, float]:
    """(first delay, longest delay) of a step's retries: its own, else the executor's."""
    base = step.backoff_initial.ToTimedelta().total_seconds() \
        if step.HasField("backoff_initial") else 0.0
    cap = step.backoff_max.ToTimedelta().total_seconds() if step.HasField("backoff_max") \
        else 0.0
    return base or config.backoff_base_s, cap or config.backoff_cap_s


async def settle_waiting(pool: asyncpg.Pool, task_id: str, tenant_id: str, step_id: str,
                         outcome: int, *, summary: str = "", error: str = "",
                         output: dict[str, Any] | None = None,
                         decision_id: str = "", readable: bool = False
                         ) -> ExecutionResult | None:
    """Move a step from WAITING to ``outcome`` (one conditional UPDATE, so a callback and a
    timeout, or two replicas, cannot both settle it), audited; the settled result, or None
    when the step was not waiting. ``readable``: ``error`` is a :func:`plan_error`, kept in
    the audit entry as written (other errors only as a hash: a cancellation's reason is a
    person's words)."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "SELECT result FROM executions WHERE task_id = $1 AND step_id = $2 AND outcome = $3"
            " FOR UPDATE", uuid.UUID(task_id), step_id, WAITING_NAME)
        if row is None:
            return None
        result = ExecutionResult.FromString(row["result"])
        result.outcome = outcome  # type: ignore[assignment]
        result.error = error
        result.response_summary = summary
        result.finished_at.CopyFrom(timestamp(datetime.now(timezone.utc)))
        if output:
            result.output.update(output)
        await conn.execute(
            "UPDATE executions SET outcome = $3, error = $4, result = $5, finished_at = now() "
            "WHERE task_id = $1 AND step_id = $2", uuid.UUID(task_id), step_id,
            StepOutcome.Name(outcome), error, result.SerializeToString())  # type: ignore[arg-type]
        await audit_append(conn, tenant_id, "executor", "step.executed", {
            "step_id": step_id, "outcome": StepOutcome.Name(outcome), "attempts": 0,  # type: ignore[arg-type]
            "idempotency_key": result.idempotency_key, "decision_id": decision_id,
            "error_sha256": digest(error) if error else "",
            **({"error": error} if readable and error else {}),
        }, task_id, writer="executor")
    return result


def plan_error(decision: Decision, exc: BaseException) -> str:
    """A step that failed on the plan's own template, condition or target (``no such key
    'member_id'``), as operators may read it (the step's record, its audit entry and so the
    task's timeline, the task's status detail): such a message names steps and keys, not the
    document's values, but an interpreter's may quote one, so it passes the PII detectors and
    is withheld whole when it carries a personal or health value of ``decision``."""
    return withheld_of(decision).scrub(redact_free_text(str(exc)))


def idempotency_key(task_id: str, step_id: str) -> str:
    return f"{task_id}:{step_id}"


def compensation_key(task_id: str, step_id: str) -> str:
    return f"{task_id}:{step_id}:compensate"


def _sent_before(row: asyncpg.Record | None) -> bool:
    """Whether a step's record says an earlier run called it without learning the outcome
    (parked on retries: its last attempt may have acted)."""
    return row is not None and row["outcome"] == RETRYABLE_NAME


def backoff_s(attempt: int, base_s: float = 0.2, cap_s: float = 5.0) -> float:
    """Exponential backoff with full jitter (AWS architecture blog's 'full jitter'):
    uniform in [0, min(cap, base * 2^attempt)], so retrying clients spread out."""
    return random.uniform(0, min(cap_s, base_s * 2 ** attempt))


def park_delay_s(parks: int, first_s: float) -> float:
    """How long a task whose inline retries ran out waits: doubling per park, jittered."""
    return min(MAX_PARK_DELAY_S, first_s * 2 ** min(parks, 16)) * random.uniform(0.5, 1.0)


@dataclass(frozen=True)
class StepRecord:
    """One ``executions`` row (a step's outcome) and its audit entry."""

    task_id: uuid.UUID
    step_id: str
    idempotency_key: str
    outcome: str
    attempts: int
    error: str
    result: bytes
    output_id: uuid.UUID | None  # None: a step that made no call keeps the row's own
    output: bytes | None
    audit: Entry


async def write_step_records(conn: asyncpg.Connection, records: list[StepRecord]
                             ) -> list[None]:
    """Upsert the steps' rows (a step run again adds its attempts to the first run's) and
    append their audit entries: one statement each for the whole group."""
    await conn.execute(
        "INSERT INTO executions (task_id, step_id, idempotency_key, outcome, attempts, error, "
        "result, output_id, output) SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], "
        "$4::text[], $5::int[], $6::text[], $7::bytea[], $8::uuid[], $9::bytea[]) "
        "ON CONFLICT (task_id, step_id) DO UPDATE SET outcome = EXCLUDED.outcome, "
        "attempts = executions.attempts + EXCLUDED.attempts, error = EXCLUDED.error, "
        "result = EXCLUDED.result, output_id = COALESCE(EXCLUDED.output_id, "
        "executions.output_id), output = EXCLUDED.output, finished_at = now()",
        *(list(column) for column in zip(*(
            (r.task_id, r.step_id, r.idempotency_key, r.outcome, r.attempts, r.error, r.result,
             r.output_id, r.output) for r in records))))
    await append_many(conn, [r.audit for r in records], writer="executor")
    return [None] * len(records)


#: A task's recorded steps by step id, and why it is to be cancelled (None: it is not).
Progress = tuple[dict[str, asyncpg.Record], str | None]


async def read_progress(conn: asyncpg.Connection, task_ids: list[str]) -> list[Progress]:
    """:meth:`PlanRunner._progress` of several tasks in one statement."""
    rows = await conn.fetch(
        "SELECT t.task_id, e.step_id, e.outcome, e.error, e.result, e.output_id, e.output, "
        "c.reason AS cancelled FROM unnest($1::uuid[]) AS t(task_id) LEFT JOIN executions e "
        "ON e.task_id = t.task_id LEFT JOIN cancellation_requests c ON c.task_id = t.task_id",
        [uuid.UUID(t) for t in task_ids])
    steps: dict[str, dict[str, asyncpg.Record]] = {t: {} for t in task_ids}
    cancelled: dict[str, str | None] = {}
    for row in rows:
        task_id = str(row["task_id"])
        if row["step_id"] is not None:
            steps[task_id][row["step_id"]] = row
        reason = row["cancelled"]
        cancelled[task_id] = None if reason is None else _cancelled(reason)
    return [(steps[t], cancelled.get(t)) for t in task_ids]


class PlanRunner:
    def __init__(self, pool: asyncpg.Pool, router: Router,
                 connectors: dict[int | str, Connector],
                 breakers: BreakerBoard, config: RetryConfig,
                 codec: PayloadCodec = PLAINTEXT) -> None:
        self.pool = pool
        self.router = router
        self.connectors = connectors
        self.breakers = breakers
        self.config = config
        self.codec = codec  # seals and opens steps' full outputs (executions.output)
        # the steps that concurrent runs record go to PostgreSQL together
        self.records: GroupCommit[StepRecord, None] = GroupCommit(
            "executions", pool, write_step_records, key=lambda r: (r.task_id, r.step_id))
        # and what they read before each group of steps, in one statement
        self.progress: GroupCommit[str, Progress] = GroupCommit(
            "progress_reads", pool, read_progress, key=lambda task_id: task_id,
            transactional=False)

    # -- validation ---------------------------------------------------------------------------
    def validate(self, decision: Decision) -> list[str]:
        """Problems that make the plan unrunnable as a whole (checked before any effect)."""
        problems: list[str] = []
        seen: set[str] = set()
        names: set[str] = set()
        # steps.<name> must name one step; plans written before templates are not held to it
        unique_names = uses_plan_features(decision)
        for index, step in enumerate(decision.plan.steps):
            where = f"plan.steps[{index}]"
            if not step.step_id:
                problems.append(f"{where}.step_id: required")
            elif step.step_id in seen:
                problems.append(f"{where}.step_id: duplicate {step.step_id!r}")
            elif step.step_id.startswith(COMPENSATION_PREFIX):
                problems.append(f"{where}.step_id: must not start with {COMPENSATION_PREFIX!r}")
            elif unique_names and step_name(step) in names:
                problems.append(f"{where}.name: duplicate {step_name(step)!r} (steps.<name> "
                                "must name one step)")
            seen.add(step.step_id)
            names.add(step_name(step))
            if step.kind in (StepKind.STEP_KIND_APPROVAL, StepKind.STEP_KIND_WAIT):
                problems.extend(self._validate_pause(step, where))
                continue
            try:
                self._route(step.connector, step.target)
            except InvalidTarget as exc:
                problems.append(f"{where}.target: {exc}")
            if step.HasField("retry_later"):
                problems.extend(self._validate_retry_later(step, where))
            if step.HasField("compensation") and step.compensation.target:
                try:
                    self._route(step.compensation.connector,
                                self._compensation_target(decision, step))
                except InvalidTarget as exc:
                    problems.append(f"{where}.compensation.target: {exc}")
        return problems

    @staticmethod
    def _validate_pause(step: ActionStep, where: str) -> list[str]:
        """An approval or wait step: runs alone and has nothing to call or undo."""
        problems = []
        kind = "approval" if step.kind == StepKind.STEP_KIND_APPROVAL else "wait"
        if step.parallel_group:
            problems.append(f"{where}.parallel_group: {step.parallel_group!r}: an {kind} step "
                            "runs alone, not in a parallel group")
        if step.HasField("compensation"):
            problems.append(f"{where}.compensation: an {kind} step has nothing to undo")
        if step.HasField("retry_later"):
            problems.append(f"{where}.retry_later: {kind} steps call nothing to retry")
        if step.kind == StepKind.STEP_KIND_WAIT:
            wait = step.wait
            if not wait.callback and wait.duration.ToTimedelta() <= timedelta(0):
                problems.append(f"{where}.wait: needs a duration > 0 or a callback name")
            if wait.callback and wait.HasField("timeout") and \
                    wait.timeout.ToTimedelta() <= timedelta(0):
                problems.append(f"{where}.wait.timeout: must be > 0 when set")
        return problems

    @staticmethod
    def _validate_retry_later(step: ActionStep, where: str) -> list[str]:
        """A call step's ``retry_later``: a condition that compiles, and a wait of at least
        :data:`MIN_RETRY_LATER_S` between tries."""
        problems = []
        later = step.retry_later
        if not later.when.strip():
            problems.append(f"{where}.retry_later.when: required")
        else:
            try:
                check_retry_later(later.when, "retry_later.when")
            except ExpressionError as exc:
                problems.append(f"{where}.retry_later.when: {exc}")
        if later.every.ToTimedelta().total_seconds() < MIN_RETRY_LATER_S:
            problems.append(f"{where}.retry_later.every: must be at least "
                            f"{MIN_RETRY_LATER_S:g}s")
        return problems

    def _route(self, connector: int, target: str) -> Route:
        route = self.router.route(connector, target)
        if route.connector not in self.connectors:
            raise InvalidTarget(f"no connector configured for {route.endpoint}")
        return route

    @staticmethod
    def _placeholders(decision: Decision, step: ActionStep) -> dict[str, str]:
        return {"task_id": decision.task_id, "step_id": step.step_id,
                "idempotency_key": idempotency_key(decision.task_id, step.step_id)}

    def _compensation_target(self, decision: Decision, step: ActionStep) -> str:
        return substitute(step.compensation.target, self._placeholders(decision, step))

    # -- forward ------------------------------------------------------------------------------
    async def _recorded(self, task_id: str) -> dict[str, asyncpg.Record]:
        rows = await self.pool.fetch(
            "SELECT step_id, outcome, error, result, output_id, output FROM executions "
            "WHERE task_id = $1", uuid.UUID(task_id))
        return {row["step_id"]: row for row in rows}

    async def _progress(self, task_id: str) -> tuple[dict[str, asyncpg.Record], str | None]:
        """The task's recorded steps and, in the same round trip, its cancellation (see
        :meth:`cancellation`): what a run reads before each group of steps. Concurrent runs'
        reads go in one statement (``self.progress``)."""
        return await self.progress.submit(task_id)

    def _results(self, recorded: dict[str, asyncpg.Record]) -> dict[str, ExecutionResult]:
        """The recorded results as the plan's templates see them: each step's full output
        (opened from ``executions.output``) instead of the redacted one it was stored and
        published with, so a later step posts the real patient id or bed, also after a
        resume."""
        results = {}
        for step_id, row in recorded.items():
            result = ExecutionResult.FromString(row["result"])
            if row["output"] is not None:
                try:
                    full = json.loads(self.codec.open(row["output_id"], row["output"],
                                                      EXECUTION_OUTPUT))
                except (PayloadError, ValueError) as exc:  # the redacted one, then
                    log.error("step %s: full output unreadable: %s", step_id, exc)
                else:
                    result.output.Clear()
                    result.output.update(full)
            results[step_id] = result
        return results

    async def run(self, decision: Decision, probe: str = "", parks: int = 0,
                  task: TaskFacts | None = None) -> PlanResult:
        """Run the steps not yet done, in order (a parallel group's together); see the
        module doc for the outcomes."""
        task = task or TaskFacts()
        recorded, cancelled = await self._progress(decision.task_id)
        cause = self._recorded_failure(decision, recorded)
        if cause:
            return PlanResult("needs_compensation", cause=cause)
        results: list[ExecutionResult] = []
        stale = False  # whether a group ran since ``recorded`` and ``cancelled`` were read
        for group in step_groups(decision.plan.steps):
            if stale:  # the outputs of the steps just run, for this group's templates
                recorded, cancelled = await self._progress(decision.task_id)
                stale = False
            pending = []
            for step in group:
                row = recorded.get(step.step_id)
                if row is not None and row["outcome"] in DONE_NAMES:
                    results.append(self._skipped(decision, step.step_id, idempotency_key(
                        decision.task_id, step.step_id)))
                else:
                    pending.append(step)
            if not pending:
                continue
            if cancelled is not None:
                for step in pending:  # a wait or approval it was waiting on ends here
                    settled = await self._settle(decision, step.step_id,
                                                 StepOutcome.STEP_OUTCOME_FAILED_PERMANENT,
                                                 error=cancelled)
                    results.extend([settled] if settled else [])
                return PlanResult("needs_compensation", results, cause=cancelled)
            context = plan_context(decision, task, self._results(recorded))
            if len(pending) == 1 and pending[0].kind in PAUSES:
                ran = await self._pause(decision, pending[0], recorded.get(pending[0].step_id),
                                        context)
                ran_all = [ran]
            else:
                ran_all = list(await asyncio.gather(*(
                    self._step(decision, step, context, probe, parks,
                               _sent_before(recorded.get(step.step_id)))
                    for step in pending)))
            stale = True
            for ran in ran_all:
                results.extend(ran.results)
            failed = next((r for r in ran_all if r.failure), None)
            if failed is not None:  # the group's finished steps are compensated with the rest
                return PlanResult("needs_compensation", results, cause=failed.failure)
            paused = next((r for r in ran_all if r.approval is not None), None)
            if paused is not None:
                return PlanResult("approval", results, approval=paused.approval,
                                  discrepancies=paused.discrepancies)
            blocked = next((r.blocked for r in ran_all if r.blocked is not None), None)
            if blocked is not None:
                return PlanResult("blocked", results, blocked=blocked)
        return PlanResult("succeeded", results)

    async def _step(self, decision: Decision, step: ActionStep, context: dict[str, Any],
                    probe: str, parks: int, sent_before: bool = False) -> _StepRun:
        """One call step: its condition, its payload rendered, the call with retries.
        ``sent_before``: an earlier run called it and did not learn the outcome."""
        key = idempotency_key(decision.task_id, step.step_id)
        where = f"step {step.step_id}"
        try:
            if not condition_holds(step.when, context, f"{where} when"):
                return _StepRun([await self._note(
                    decision, step.step_id, key, StepOutcome.STEP_OUTCOME_SKIPPED_CONDITION,
                    summary=f"not run: when {step.when!r} is false")])
            payload = render(MessageToDict(step.payload), context, f"{where} payload")
            target = render_target(step.target, context, f"{where} target")
            route = self._route(step.connector, target)
        except (ExpressionError, InvalidTarget) as exc:
            error = plan_error(decision, exc)
            return _StepRun([await self._note(
                decision, step.step_id, key, StepOutcome.STEP_OUTCOME_FAILED_PERMANENT,
                error=error)], failure=f"step {step.step_id} failed permanently: {error}")
        call = self._call(decision, step.step_id, step.name, route, target,
                          step.operation, payload, key, step)
        attempted = await self._attempt(call, route, step, probe, parks, sent_before)
        if attempted.blocked is None and step.HasField("retry_later") \
                and attempted.answer is not None:
            try:
                later = retry_later_holds(step.retry_later.when, context, attempted.answer,
                                          f"{where} retry_later.when")
            except ExpressionError as exc:
                error = str(exc)
                attempted = _Attempted(StepOutcome.STEP_OUTCOME_FAILED_PERMANENT,
                                       attempted.calls, error=error)
            else:
                if later:
                    return await self._retry_later(decision, step, call, attempted)
        results = [await self._record(decision, step.step_id, call, attempted)] \
            if attempted.calls else []
        if attempted.blocked is not None:
            return _StepRun(results, blocked=attempted.blocked)
        if attempted.outcome == StepOutcome.STEP_OUTCOME_FAILED_PERMANENT:
            return _StepRun(results, failure=f"step {step.step_id} failed permanently: "
                                             f"{attempted.error}")
        return _StepRun(results)

    async def _retry_later(self, decision: Decision, step: ActionStep, call: StepCall,
                           attempted: _Attempted) -> _StepRun:
        """The downstream answered "not now" (the step's ``retry_later.when`` holds): the step
        is recorded WAITING with what it answered, and the task parks until
        ``retry_later.every`` from now, when the step is called again with the same
        idempotency key. The endpoint answered, so its breaker counts nothing; the SLA
        escalates the task when that next try is past its deadline."""
        every = step.retry_later.every.ToTimedelta()
        due = datetime.now(timezone.utc) + every
        said = attempted.summary or attempted.error
        waiting = _Attempted(StepOutcome.STEP_OUTCOME_WAITING, attempted.calls,
                             summary=f"retry later ({step.retry_later.when}): {said}"[:500],
                             output=attempted.output)
        result = await self._record(decision, step.step_id, call, waiting)
        return _StepRun([result], blocked=Blocked(
            "later", "", f"retry_later:{step.step_id}",
            f"step {step_name(step)} tries again at {due.isoformat()} (every {every})", due,
            step.step_id))

    async def _pause(self, decision: Decision, step: ActionStep, row: asyncpg.Record | None,
                     context: dict[str, Any]) -> _StepRun:
        """An approval or wait step: waiting (recorded WAITING), or done."""
        key = idempotency_key(decision.task_id, step.step_id)
        try:
            holds = condition_holds(step.when, context, f"step {step.step_id} when")
        except ExpressionError as exc:
            error = plan_error(decision, exc)
            return _StepRun([await self._note(
                decision, step.step_id, key, StepOutcome.STEP_OUTCOME_FAILED_PERMANENT,
                error=error)], failure=f"step {step.step_id} failed permanently: {error}")
        if not holds and row is None:
            return _StepRun([await self._note(
                decision, step.step_id, key, StepOutcome.STEP_OUTCOME_SKIPPED_CONDITION,
                summary=f"not run: when {step.when!r} is false")])
        now = datetime.now(timezone.utc)
        results: list[ExecutionResult] = []
        if row is None:
            what = (f"waiting for approval in queue {step.approval.queue or decision.review_queue!r}"
                    if step.kind == StepKind.STEP_KIND_APPROVAL else
                    f"waiting for callback {step.wait.callback!r}" if step.wait.callback else
                    f"waiting {step.wait.duration.ToTimedelta()}")
            results.append(await self._note(decision, step.step_id, key,
                                            StepOutcome.STEP_OUTCOME_WAITING, summary=what,
                                            started_at=now))
            started = now
        else:
            started = ExecutionResult.FromString(row["result"]).started_at.ToDatetime(
                timezone.utc)
        if step.kind == StepKind.STEP_KIND_APPROVAL:
            if (decision.approves_step_id == step.step_id and row is not None
                    and decision.outcome == DecisionOutcome.DECISION_OUTCOME_AUTO_EXECUTE):
                approver = decision.reviewer_id or DecisionSource.Name(decision.source)
                done = await self._settle(decision, step.step_id,
                                          StepOutcome.STEP_OUTCOME_SUCCEEDED,
                                          summary=f"approved by {approver}",
                                          output={"approved_by": approver})
                return _StepRun(results + ([done] if done else []))
            try:
                rendered, found = self._rendered_approval(step, context)
                return _StepRun(results, approval=rendered, discrepancies=found)
            except ExpressionError as exc:
                error = plan_error(decision, exc)
                settled = await self._settle(decision, step.step_id,
                                             StepOutcome.STEP_OUTCOME_FAILED_PERMANENT,
                                             error=error, readable=True)
                return _StepRun(results + ([settled] if settled else []),
                                failure=f"step {step.step_id} failed permanently: {error}")
        wait = step.wait
        if not wait.callback:
            due = started + wait.duration.ToTimedelta()
            if now >= due:
                done = await self._settle(decision, step.step_id,
                                          StepOutcome.STEP_OUTCOME_SUCCEEDED,
                                          summary=f"waited {wait.duration.ToTimedelta()}")
                return _StepRun(results + ([done] if done else []))
            return _StepRun(results, blocked=Blocked(
                "timer", "", f"waiting:{step.step_id}",
                f"timer {wait.duration.ToTimedelta()} until {due.isoformat()}", due,
                step.step_id))
        timeout_at = started + wait.timeout.ToTimedelta() if wait.HasField("timeout") else None
        if timeout_at is not None and now >= timeout_at:
            error = f"callback {wait.callback!r} did not come within {wait.timeout.ToTimedelta()}"
            settled = await self._settle(decision, step.step_id,
                                         StepOutcome.STEP_OUTCOME_FAILED_PERMANENT, error=error)
            if settled is not None:
                return _StepRun(results + [settled],
                                failure=f"step {step.step_id} failed permanently: {error}")
            # completed by CompleteWait meanwhile: the next run reads how it ended
            return _StepRun(results, blocked=Blocked("retry", "", f"waiting:{step.step_id}",
                                                     "completed meanwhile", now))
        return _StepRun(results, blocked=Blocked(
            "callback", "", f"waiting:{step.step_id}",
            f"callback {wait.callback!r}" + (f" until {timeout_at.isoformat()}" if timeout_at
                                             else " (no time limit)"), timeout_at,
            step.step_id))

    async def approval(self, decision: Decision, step: ActionStep,
                       task: TaskFacts) -> tuple[ActionStep, list[Discrepancy]]:
        """An approval step as its escalation shows it (templates rendered with the task's
        recorded steps) and its discrepancies; as written (and none) when they cannot be
        rendered any more."""
        context = plan_context(decision, task, self._results(
            await self._recorded(decision.task_id)))
        try:
            return self._rendered_approval(step, context)
        except ExpressionError:
            return step, []

    @staticmethod
    def _rendered_approval(step: ActionStep, context: dict[str, Any]
                           ) -> tuple[ActionStep, list[Discrepancy]]:
        """The approval step with templates in its queue, group and instructions filled in
        (e.g. ``"Approve ${fields.employee}'s claim"``), and what its ``discrepancies``
        expression gives."""
        rendered = ActionStep()
        rendered.CopyFrom(step)
        spec = rendered.approval
        for name in ("queue", "reviewer_group", "instructions"):
            setattr(spec, name, render_target(getattr(spec, name), context,
                                              f"step {step.step_id} approval.{name}"))
        return rendered, discrepancies(spec.discrepancies, context,
                                       f"step {step.step_id} approval.discrepancies")

    async def waiting(self, task_id: str, step_id: str) -> bool:
        """Whether the step is still recorded WAITING."""
        return await self.pool.fetchval(
            "SELECT outcome FROM executions WHERE task_id = $1 AND step_id = $2",
            uuid.UUID(task_id), step_id) == WAITING_NAME

    async def cancellation(self, task_id: str) -> str | None:
        """Why the task is to be cancelled, when someone asked; None otherwise."""
        reason = await self.pool.fetchval(
            "SELECT reason FROM cancellation_requests WHERE task_id = $1", uuid.UUID(task_id))
        return None if reason is None else _cancelled(reason)

    async def reject(self, decision: Decision) -> ExecutionResult | None:
        """A reviewer rejected the approval step ``decision.approves_step_id``: it fails
        permanently (the caller compensates the finished steps). None when it was not
        waiting (already settled by an earlier delivery of the same verdict)."""
        who = decision.reviewer_id or DecisionSource.Name(decision.source)
        return await self._settle(decision, decision.approves_step_id,
                                  StepOutcome.STEP_OUTCOME_FAILED_PERMANENT,
                                  error=f"rejected by {who}: {decision.rule}")

    @staticmethod
    def _recorded_failure(decision: Decision, recorded: dict[str, asyncpg.Record]) -> str:
        for step in decision.plan.steps:
            row = recorded.get(step.step_id)
            if row is not None and row["outcome"] == PERMANENT_NAME:
                return f"step {step.step_id} failed permanently: {row['error']}"
        if any(row["outcome"] == COMPENSATED_NAME for row in recorded.values()):
            return "a saga was already under way"
        return ""

    # -- saga ---------------------------------------------------------------------------------
    async def compensate(self, decision: Decision, cause: str, probe: str = "",
                         parks: int = 0, task: TaskFacts | None = None) -> PlanResult:
        """Undo the finished steps in reverse order, recording each compensation (its payload
        rendered like a step's, with every step's outcome so far)."""
        recorded = await self._recorded(decision.task_id)
        context = plan_context(decision, task or TaskFacts(), self._results(recorded))
        results: list[ExecutionResult] = []
        compensated: list[str] = []
        took_effect = [s for s in decision.plan.steps if (row := recorded.get(s.step_id))
                       is not None and row["outcome"] in (SUCCEEDED_NAME, COMPENSATED_NAME)]
        for step in reversed(took_effect):
            if not (step.HasField("compensation") and step.compensation.target):
                continue  # nothing to undo with (e.g. a notification)
            comp_id = f"{COMPENSATION_PREFIX}{step.step_id}"
            done = recorded.get(comp_id)
            if done is not None and done["outcome"] == SUCCEEDED_NAME:
                results.append(self._skipped(decision, comp_id, compensation_key(
                    decision.task_id, step.step_id)))
                compensated.append(step.step_id)
                continue
            comp = step.compensation
            try:
                target = render_target(self._compensation_target(decision, step), context,
                                       f"step {comp_id} target")
                route = self._route(comp.connector, target)
                payload = render(substitute_all(MessageToDict(comp.payload),
                                                self._placeholders(decision, step)),
                                 context, f"step {comp_id} payload")
            except (ExpressionError, InvalidTarget) as exc:
                return PlanResult(
                    "compensation_failed", results, compensated=compensated,
                    cause=f"{cause}; compensation of step {step.step_id} failed: {exc}")
            call = self._call(decision, comp_id, comp.name, route, target, comp.operation,
                              payload,
                              compensation_key(decision.task_id, step.step_id), step)
            attempted = await self._attempt(call, route, step, probe, parks)
            if attempted.calls:
                results.append(await self._record(decision, comp_id, call, attempted))
            if attempted.blocked is not None:
                return PlanResult("blocked", results, cause=cause, blocked=attempted.blocked,
                                  compensated=compensated)
            if attempted.outcome != StepOutcome.STEP_OUTCOME_SUCCEEDED:
                return PlanResult(
                    "compensation_failed", results, compensated=compensated,
                    cause=f"{cause}; compensation of step {step.step_id} failed: "
                          f"{attempted.error}")
            results.append(await self._mark_compensated(decision, step.step_id))
            compensated.append(step.step_id)
        undone = ", ".join(compensated) if compensated else "nothing to undo"
        return PlanResult("failed", results, cause=f"{cause}; compensated: {undone}",
                          compensated=compensated)

    # -- one call with retries ----------------------------------------------------------------
    def _call(self, decision: Decision, step_id: str, name: str, route: Route, target: str,
              operation: str, payload: dict[str, Any], key: str, step: ActionStep) -> StepCall:
        timeout_s = step.timeout.ToTimedelta().total_seconds() if step.HasField("timeout") \
            else 0.0
        return StepCall(
            task_id=decision.task_id, tenant_id=decision.tenant_id, step_id=step_id,
            target=target, address=route.address, method=route.method,
            operation=operation or name, payload=payload, idempotency_key=key,
            timeout_s=timeout_s or self.config.timeouts.get(route.connector,
                                                            self.config.default_timeout_s),
            withheld=withheld_of(decision),
        )

    async def _attempt(self, call: StepCall, route: Route, step: ActionStep, probe: str,
                       parks: int, sent_before: bool = False) -> _Attempted:
        """Call until an outcome, with retries; parks on an open breaker or when they run
        out. ``sent_before``: the key went out in an earlier run whose answer was lost, so
        the downstream's "key in use" (:data:`KEY_IN_USE`) is retried, as it is after a
        lost answer in this run."""
        connector = self.connectors[route.connector]
        max_attempts = step.max_attempts or self.config.max_attempts
        base_s, cap_s = backoff_bounds(step, self.config)
        endpoint = route.endpoint
        calls = 0
        lost = sent_before   # a call went out and its answer never came
        scrub = (call.withheld or Withheld()).scrub  # a custom connector's own words too
        while True:
            try:
                self.breakers.check(endpoint, probe=probe == endpoint)
                calls += 1
                try:
                    with self.breakers.calling(endpoint):
                        outcome = await connector.call(call)
                finally:
                    await self.breakers.flush()
            except BreakerOpen as exc:
                STEP_CALLS.labels(endpoint, "breaker_open").inc()
                return _Attempted(StepOutcome.STEP_OUTCOME_FAILED_RETRYABLE, calls,
                                  error=scrub(str(exc)), blocked=Blocked(
                                      "breaker", endpoint, f"breaker_open:{endpoint}", str(exc),
                                      exc.retry_at))
            except StepError as exc:
                in_use = lost and exc.answer is not None and \
                    exc.answer.status == KEY_IN_USE.get(route.connector)
                if not exc.retryable and not in_use:
                    STEP_CALLS.labels(endpoint, "permanent").inc()
                    return _Attempted(StepOutcome.STEP_OUTCOME_FAILED_PERMANENT, calls,
                                      error=scrub(str(exc)), answer=exc.answer)
                if in_use:
                    exc = StepError(f"{exc} (the key's earlier request, whose answer was "
                                    "lost, is held downstream: its outcome is unknown)",
                                    retryable=True, answer=exc.answer)
                lost = True
                STEP_CALLS.labels(endpoint, "retryable").inc()
                now = datetime.now(timezone.utc)
                if calls >= max_attempts:
                    return _Attempted(StepOutcome.STEP_OUTCOME_FAILED_RETRYABLE, calls,
                                      error=scrub(str(exc)), blocked=Blocked(
                                          "retry", endpoint, f"retries_exhausted:{endpoint}",
                                          f"{calls} attempt(s), last: {scrub(str(exc))}",
                                          now + timedelta(seconds=park_delay_s(
                                              parks, self.config.retry_park_s))))
                delay = exc.retry_after_s if exc.retry_after_s is not None else backoff_s(
                    calls, base_s, cap_s)
                if delay > cap_s:
                    return _Attempted(StepOutcome.STEP_OUTCOME_FAILED_RETRYABLE, calls,
                                      error=scrub(str(exc)), blocked=Blocked(
                                          "retry", endpoint, f"rate_limited:{endpoint}",
                                          f"asked to retry after {delay:.0f}s: {scrub(str(exc))}",
                                          now + timedelta(seconds=delay)))
                await asyncio.sleep(delay)
                continue
            STEP_CALLS.labels(endpoint, "duplicate" if outcome.duplicate else "ok").inc()
            return _Attempted(StepOutcome.STEP_OUTCOME_SUCCEEDED, calls, summary=outcome.summary,
                              output=outcome.output,
                              answer=outcome.answer or Answer(0, outcome.output or {}))

    # -- records ------------------------------------------------------------------------------
    @staticmethod
    def _skipped(decision: Decision, step_id: str, key: str) -> ExecutionResult:
        """What a run publishes for a step (or compensation) it finds already done: the
        decision ran again (redelivered, resumed after parking, taken over from a dead
        replica) and the step is not called again. Published only; the ``executions`` row
        keeps the outcome of the run that did it."""
        now = timestamp(datetime.now(timezone.utc))
        return ExecutionResult(
            task_id=decision.task_id, tenant_id=decision.tenant_id, step_id=step_id,
            outcome=StepOutcome.STEP_OUTCOME_SKIPPED_DUPLICATE, attempts=0,
            response_summary="already done by an earlier run; not called again",
            started_at=now, finished_at=now, idempotency_key=key)

    async def _record(self, decision: Decision, step_id: str, call: StepCall,
                      attempted: _Attempted) -> ExecutionResult:
        now = datetime.now(timezone.utc)
        withheld = call.withheld or Withheld()
        error = withheld.scrub(attempted.error)  # a custom connector's own text too
        result = ExecutionResult(
            task_id=decision.task_id, tenant_id=decision.tenant_id, step_id=step_id,
            outcome=attempted.outcome, attempts=attempted.calls, error=error,  # type: ignore[arg-type]
            response_summary=withheld.scrub(attempted.summary), started_at=timestamp(now),
            finished_at=timestamp(now), idempotency_key=call.idempotency_key,
        )
        kept = kept_output(attempted.output, withheld)
        if kept:
            result.output.update(kept)
        sealed_id = output_id(decision.task_id, step_id)
        sealed = self.codec.seal(sealed_id, json.dumps(attempted.output).encode(),
                                 EXECUTION_OUTPUT) if attempted.output else None
        action = ("compensation.executed" if step_id.startswith(COMPENSATION_PREFIX)
                  else "step.executed")
        await self.records.submit(StepRecord(
            uuid.UUID(decision.task_id), step_id, call.idempotency_key,
            StepOutcome.Name(attempted.outcome), attempted.calls, error,
            result.SerializeToString(), sealed_id, sealed,
            Entry(decision.tenant_id, "executor", action, {
                "step_id": step_id, "target": call.target, "operation": call.operation,
                "outcome": StepOutcome.Name(attempted.outcome), "attempts": attempted.calls,
                "idempotency_key": call.idempotency_key, "decision_id": decision.decision_id,
                "error_sha256": digest(attempted.error) if attempted.error else "",
            }, decision.task_id)))
        return result

    async def _note(self, decision: Decision, step_id: str, key: str, outcome: int,
                    summary: str = "", error: str = "",
                    started_at: datetime | None = None) -> ExecutionResult:
        """Record a step that made no call: skipped by its condition, waiting, or failed on
        its own expression (``error``, a :func:`plan_error`: kept readable in the audit entry
        too, so the task's timeline says why)."""
        now = datetime.now(timezone.utc)
        result = ExecutionResult(
            task_id=decision.task_id, tenant_id=decision.tenant_id, step_id=step_id,
            outcome=outcome, attempts=0, error=error, response_summary=summary,  # type: ignore[arg-type]
            started_at=timestamp(started_at or now), finished_at=timestamp(now),
            idempotency_key=key)
        await self.records.submit(StepRecord(
            uuid.UUID(decision.task_id), step_id, key, StepOutcome.Name(outcome),  # type: ignore[arg-type]
            0, error, result.SerializeToString(), None, None,
            Entry(decision.tenant_id, "executor", "step.executed", {
                "step_id": step_id, "outcome": StepOutcome.Name(outcome), "attempts": 0,  # type: ignore[arg-type]
                "idempotency_key": key, "decision_id": decision.decision_id,
                "error_sha256": digest(error) if error else "",
                **({"error": error} if error else {}),
            }, decision.task_id)))
        return result

    async def _settle(self, decision: Decision, step_id: str, outcome: int,
                      summary: str = "", error: str = "",
                      output: dict[str, Any] | None = None,
                      readable: bool = False) -> ExecutionResult | None:
        """End a WAITING step (approved, rejected, its timer or timeout reached); None when
        it was not waiting any more (another run or a callback settled it first)."""
        return await settle_waiting(self.pool, decision.task_id, decision.tenant_id, step_id,
                                    outcome, summary=summary, error=error, output=output,
                                    decision_id=decision.decision_id, readable=readable)

    async def _mark_compensated(self, decision: Decision, step_id: str) -> ExecutionResult:
        row = await self.pool.fetchrow(
            "SELECT result FROM executions WHERE task_id = $1 AND step_id = $2",
            uuid.UUID(decision.task_id), step_id)
        result = ExecutionResult.FromString(row["result"]) if row else ExecutionResult(
            task_id=decision.task_id, tenant_id=decision.tenant_id, step_id=step_id)
        result.outcome = StepOutcome.STEP_OUTCOME_COMPENSATED
        result.finished_at.CopyFrom(timestamp(datetime.now(timezone.utc)))
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE executions SET outcome = $3, result = $4, finished_at = now() "
                "WHERE task_id = $1 AND step_id = $2",
                uuid.UUID(decision.task_id), step_id, COMPENSATED_NAME,
                result.SerializeToString())
            await audit_append(conn, decision.tenant_id, "executor", "step.compensated",
                               {"step_id": step_id, "decision_id": decision.decision_id},
                               decision.task_id, writer="executor")
        return result
