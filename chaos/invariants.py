"""What must hold after the faults, read from PostgreSQL and the downstream's own ledger.

- none lost: every accepted submission (a gRPC acceptance, or a valid intake record the broker
  acknowledged) is a task, and every task is terminal or waiting *with an owner* that will
  move it on: an open review item (admitted or still in the admission backlog), an executor
  job (running or parked) while a live executor replica beats (any replica's resumer claims
  parked jobs and jobs whose owner died), or a decision hold. A BLOCKED or awaiting-review
  task with none of these is lost: nothing will ever touch it again;
- effects: a SUCCEEDED task holds exactly one active downstream effect per deduplicated step
  of the plan it ran that makes one (more is a duplicate, fewer is missing): a call step that
  ran, not an approval or a wait, not one its ``when`` skipped, not an inquiry (the payer's
  eligibility check stores nothing); an effect under any other step's key is a duplicate. A
  FAILED or CANCELLED task holds none of a step with a compensation (those were undone);
  the effects of steps that have none stay, by the plan's design (a patient registered in the
  EHR is not unregistered when the admission stops). This part is the demo ERP's unique key at work, so the
  report also counts the *calls* behind it: how many the downstream answered as replays (a
  repeat the executor made with the same key) and how many steps were called more than once;
- what the executor guarantees on its own, measured on the one endpoint that does not
  deduplicate (``/{system}/{collection}/append``): every step of a SUCCEEDED task landed at
  least once (none missing); calls beyond the first are counted and reported. The executor
  records the calls of a run in ``executions.attempts``; only a run cut short by a crash
  (between a call and its record) can land calls it never recorded, so calls beyond what it
  recorded are allowed only when the executor process ended during the run (killed, or its
  exit after the broker lost its state);
- every rejected input is accounted for: refused at the gRPC door with a reason, or a
  dead-letter record carrying its original bytes;
- the audit chain verifies.

The judgements are plain functions of rows (:func:`task_fate`, :func:`effect_counts`,
:func:`append_counts`), so a unit test can show each of them failing on crafted rows.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import asyncpg

from chaos.workload import ADMISSION_KIND, Item, Ledger
from services.executor.downstream.hospital.payer import INQUIRY_PATHS
from switchyard import Settings
from switchyard.audit import verify
from switchyard.messaging import INTAKE
from switchyard.storage import JOB_DECISION, codec_for, connect
from switchyard.tasks import TERMINAL, TERMINAL_SQL, UNSUCCESSFUL
from switchyard.v1 import ActionPlan, ActionStep, Decision, StepKind


@dataclass
class Report:
    sent: int = 0
    accepted: int = 0
    refused_at_door: int = 0
    dead_lettered: int = 0
    missing_dead_letters: int = 0
    terminal: dict[str, int] = field(default_factory=dict)
    blocked: int = 0
    awaiting_review: int = 0
    cancel_requests: int = 0
    cancelled_as_asked: int = 0
    unfinished_at_broker_restart: int = 0
    redriven: int = 0
    lost: int = 0
    lost_examples: list[str] = field(default_factory=list)
    lost_waiting: int = 0          # of the lost: BLOCKED / awaiting review with no owner
    effects: int = 0
    duplicates: int = 0
    missing_effects: int = 0
    orphan_effects: int = 0
    compensated_tasks: int = 0     # FAILED/CANCELLED tasks whose earlier steps were reversed
    cancelled_and_undone: int = 0  # of the cancels asked for: CANCELLED with a step reversed
    admissions: int = 0            # hospital admission forms accepted
    admissions_admitted: int = 0   # of them SUCCEEDED (the patient has a bed and an encounter)
    downstream_calls: int = 0      # writes that reached the ledger for the run's tasks
    replayed_calls: int = 0        # of them answered as a replay (same key, deduplicated)
    steps_called_again: int = 0    # deduplicated steps the executor called more than once
    append_steps: int = 0          # steps of SUCCEEDED tasks on the non-deduplicating endpoint
    append_calls: int = 0          # rows it stored for them
    append_missing: int = 0        # such steps that never landed
    append_extra_calls: int = 0    # calls beyond the first: what deduplication would absorb
    append_max_per_step: int = 0
    append_unrecorded: int = 0     # calls beyond what the executor recorded in executions
    executor_restarts: int = 0     # times the executor process ended mid-run (SIGKILL, or its
    #                                exit after the broker lost its state) and was restarted
    audit_entries: int = 0
    audit_ok: bool = False
    restarts: dict[str, int] = field(default_factory=dict)
    restarts_during_postgres_outage: dict[str, int] = field(default_factory=dict)
    faults: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return (self.lost == 0 and self.duplicates == 0 and self.missing_effects == 0
                and self.orphan_effects == 0 and self.missing_dead_letters == 0
                and self.append_missing == 0
                and (self.append_unrecorded == 0 or self.executor_restarts > 0)
                and not self.restarts_during_postgres_outage
                and self.audit_ok)

    def rows(self) -> list[tuple[str, Any]]:
        return [
            ("sent", self.sent), ("accepted", self.accepted),
            ("refused at the gRPC door", self.refused_at_door),
            ("dead-lettered (intake)", self.dead_lettered),
            ("missing dead letters", self.missing_dead_letters),
            *((f"terminal: {k}", v) for k, v in sorted(self.terminal.items())),
            ("blocked", self.blocked), ("awaiting review", self.awaiting_review),
            ("cancel requests on executing tasks", self.cancel_requests),
            ("  of which ended CANCELLED", self.cancelled_as_asked),
            ("unfinished when the broker restarted", self.unfinished_at_broker_restart),
            ("re-driven from PostgreSQL", self.redriven),
            ("downstream effects", self.effects), ("duplicates", self.duplicates),
            ("missing effects", self.missing_effects),
            ("effects of failed/cancelled tasks", self.orphan_effects),
            ("failed/cancelled tasks with steps reversed", self.compensated_tasks),
            ("  of which cancelled by a client", self.cancelled_and_undone),
            ("hospital admissions accepted", self.admissions),
            ("  of which admitted", self.admissions_admitted),
            ("downstream writes (calls that stored or replayed)", self.downstream_calls),
            ("  answered as replays (deduplicated)", self.replayed_calls),
            ("  steps called more than once", self.steps_called_again),
            ("non-deduplicating endpoint: steps", self.append_steps),
            ("  calls landed", self.append_calls),
            ("  steps missing", self.append_missing),
            ("  extra calls (would be duplicates)", self.append_extra_calls),
            ("  most calls for one step", self.append_max_per_step),
            ("  calls the executor never recorded", self.append_unrecorded),
            ("executor restarts (killed, or exited)", self.executor_restarts),
            ("audit entries verified", self.audit_entries),
            ("audit chain", "ok" if self.audit_ok else "BROKEN"),
            ("lost", self.lost),
            ("  of which waiting with no owner", self.lost_waiting),
        ]

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


async def unsettled(settings: Settings) -> tuple[int, int]:
    """(moving, waiting): the run's tasks neither terminal nor BLOCKED, and BLOCKED ones."""
    conn = await connect(settings)
    try:
        row = await conn.fetchrow(
            f"SELECT count(*) FILTER (WHERE status NOT IN {TERMINAL_SQL} AND status <> 'BLOCKED') "
            "AS moving, count(*) FILTER (WHERE status = 'BLOCKED') AS waiting "
            "FROM tasks")
        return row["moving"], row["waiting"]
    finally:
        await conn.close()


async def tasks_for(settings: Settings, keys: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    conn = await connect(settings)
    try:
        rows = await conn.fetch(
            "SELECT tenant_id, idempotency_key, task_id FROM tasks "
            "WHERE (tenant_id, idempotency_key) IN "
            "(SELECT * FROM unnest($1::text[], $2::text[]))",
            [t for t, _ in keys], [k for _, k in keys])
        return {(r["tenant_id"], r["idempotency_key"]): str(r["task_id"]) for r in rows}
    finally:
        await conn.close()


async def reversed_effects(settings: Settings) -> int:
    """How many downstream effects compensations have reversed so far."""
    conn = await connect(settings)
    try:
        return await conn.fetchval(
            f"SELECT count(*) FROM {settings.postgres_schema}_downstream.effects "
            "WHERE status = 'reversed'")
    finally:
        await conn.close()


async def blocked_executing(settings: Settings, limit: int) -> list[str]:
    conn = await connect(settings)
    try:
        return [str(r["task_id"]) for r in await conn.fetch(
            "SELECT task_id FROM tasks WHERE status = 'BLOCKED' AND stage = 'EXECUTING' "
            "ORDER BY updated_at LIMIT $1", limit)]
    finally:
        await conn.close()


@dataclass(frozen=True)
class Owners:
    """Who can move a waiting task on (see the module doc)."""

    review_item: bool = False   # an unresolved review item
    executor_job: bool = False  # an executor job running or parked
    live_executor: bool = False  # some executor replica beats (it claims parked/orphaned jobs)
    hold: bool = False          # a decision hold (models unavailable)

    def who(self) -> str:
        if self.review_item:
            return "review"
        if self.executor_job and self.live_executor:
            return "executor"
        if self.hold:
            return "hold"
        return ""


def task_fate(status: str, stage: str, owners: Owners) -> str:
    """A task's standing after the run: its terminal status, 'awaiting_review' or 'blocked'
    when it waits with an owner, or 'lost: <why>'."""
    if status in TERMINAL:
        return status
    if status == "BLOCKED" or stage == "AWAITING_REVIEW":
        who = owners.who()
        if not who:
            return f"lost: {status}/{stage} and nothing owns it (no open review item, no " \
                   "executor job with a live replica, no hold)"
        return "awaiting_review" if stage == "AWAITING_REVIEW" else "blocked"
    return f"lost: stuck {status}/{stage}"


@dataclass(frozen=True)
class StepEffects:
    """One step of a finished task, as the downstream's ledger saw it."""

    active: int = 0    # active effects under the step's key
    reversed: int = 0  # reversed (compensated) effects under the step's key


def effect_counts(status: str, steps: list[StepEffects]) -> tuple[int, int, int]:
    """(duplicates, missing, orphans) for one task: a SUCCEEDED task has exactly one active
    effect per deduplicated step; a FAILED or CANCELLED task none."""
    if status == "SUCCEEDED":
        return (sum(max(0, s.active - 1) for s in steps),
                sum(s.active == 0 for s in steps), 0)
    if status in UNSUCCESSFUL:
        return 0, 0, sum(s.active for s in steps)
    return 0, 0, 0


def append_counts(landed: int, recorded_attempts: int) -> tuple[int, int, int]:
    """(missing, extra, unrecorded) for one step of a SUCCEEDED task on the non-deduplicating
    endpoint: ``landed`` rows it stored, ``recorded_attempts`` calls the executor recorded."""
    return (int(landed == 0), max(0, landed - 1), max(0, landed - recorded_attempts))


async def check(settings: Settings, items: list[Item], ledger: Ledger,
                cancelled: list[str], executor_restarts: int = 0) -> Report:
    report = Report(sent=ledger.sent, refused_at_door=len(ledger.refused),
                    cancel_requests=len(cancelled), executor_restarts=executor_restarts)
    by_key = {item.key: item for item in items}
    kafka_valid = [(by_key[k].tenant_id, k) for k in ledger.kafka_acked if not by_key[k].invalid]
    from_kafka = await tasks_for(settings, kafka_valid)
    accepted = dict(ledger.accepted)
    for tenant, key in kafka_valid:
        if (tenant, key) in from_kafka:
            accepted[key] = from_kafka[(tenant, key)]
        else:
            report.lost += 1
            report.lost_examples.append(f"intake record {key}: acknowledged, never a task")
    report.accepted = len(accepted)

    conn = await connect(settings)
    try:
        rows = await conn.fetch(
            """SELECT t.task_id::text, t.status, t.stage,
                      EXISTS (SELECT 1 FROM review_items r WHERE r.task_id = t.task_id
                                                             AND r.resolved_at IS NULL)
                          AS review_item,
                      EXISTS (SELECT 1 FROM executor_jobs j WHERE j.task_id = t.task_id
                                                              AND j.state IN ('running',
                                                                              'parked'))
                          AS executor_job,
                      EXISTS (SELECT 1 FROM decision_holds h WHERE h.task_id = t.task_id)
                          AS hold
                 FROM tasks t WHERE t.task_id = ANY($1::uuid[])""",
            list(accepted.values()))
        live_executor = bool(await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM executor_replicas WHERE heartbeat_at > now() - "
            "make_interval(secs => $1))", settings.executor_replica_timeout_s))
        found = {r["task_id"]: r for r in rows}
        terminal: Counter[str] = Counter()
        for key, task_id in accepted.items():
            row = found.get(task_id)
            if row is None:
                report.lost += 1
                report.lost_examples.append(f"{key}: accepted as {task_id}, no task row")
                continue
            fate = task_fate(row["status"], row["stage"], Owners(
                row["review_item"], row["executor_job"], live_executor, row["hold"]))
            if fate in TERMINAL:
                terminal[fate] += 1
            elif fate == "awaiting_review":
                report.awaiting_review += 1
            elif fate == "blocked":
                report.blocked += 1
            else:
                report.lost += 1
                report.lost_waiting += row["status"] == "BLOCKED" \
                    or row["stage"] == "AWAITING_REVIEW"
                report.lost_examples.append(f"{key}: {task_id} {fate}")
        report.terminal = dict(terminal)
        admission_tasks = [task_id for key, task_id in accepted.items()
                           if key in by_key and by_key[key].kind == ADMISSION_KIND]
        report.admissions = len(admission_tasks)
        report.admissions_admitted = sum(
            found[t]["status"] == "SUCCEEDED" for t in admission_tasks if t in found)
        report.cancelled_as_asked = sum(found[t]["status"] == "CANCELLED" for t in cancelled
                                        if t in found)
        report.redriven = await conn.fetchval("SELECT count(*) FROM tasks WHERE redrives > 0")
        await _check_effects(conn, settings, found, set(cancelled), report)
        await _check_dead_letters(conn, settings, by_key, ledger, report)
        verification = await verify(conn)
        report.audit_entries = verification.entries
        report.audit_ok = verification.broken is None
    finally:
        await conn.close()
    report.lost_examples = report.lost_examples[:20]
    return report


#: Plan steps whose target is this path suffix go to the non-deduplicating endpoint.
APPEND_SUFFIX = "/append"
SKIPPED_CONDITION = "STEP_OUTCOME_SKIPPED_CONDITION"


def makes_effect(step: ActionStep, outcome: str) -> bool:
    """Whether a step of a SUCCEEDED task leaves one effect in the deduplicating ledger: a call
    that ran (``outcome``: its executions row), not on the append endpoint, not an inquiry."""
    return (step.kind in (StepKind.STEP_KIND_UNSPECIFIED, StepKind.STEP_KIND_CALL)
            and outcome != SKIPPED_CONDITION and not step.target.endswith(APPEND_SUFFIX)
            and not step.target.endswith(INQUIRY_PATHS))


def undone_steps(plan: ActionPlan | None) -> set[str] | None:
    """The steps a failed or cancelled task's compensation undoes (None: every step, when the
    plan is not known)."""
    if plan is None:
        return None
    return {s.step_id for s in plan.steps if s.HasField("compensation")}


async def _check_effects(conn: asyncpg.Connection, settings: Settings,
                         tasks: dict[str, asyncpg.Record], cancelled: set[str],
                         report: Report) -> None:
    downstream = f"{settings.postgres_schema}_downstream"
    effects: dict[str, dict[str, StepEffects]] = {}
    for r in await conn.fetch(
            f"SELECT task_id, idempotency_key, count(*) FILTER (WHERE status = 'active') AS a, "
            f"count(*) FILTER (WHERE status = 'reversed') AS r FROM {downstream}.effects "
            "GROUP BY task_id, idempotency_key"):
        step_id = r["idempotency_key"].split(":", 1)[-1]
        effects.setdefault(r["task_id"], {})[step_id] = StepEffects(r["a"], r["r"])
    report.effects = sum(e.active for steps in effects.values() for e in steps.values())
    codec = codec_for(settings)  # the job's decision is sealed when encryption is on
    plans = {str(r["task_id"]): Decision.FromString(
                 codec.open(r["decision_id"], r["decision"], JOB_DECISION)).plan
             for r in await conn.fetch(
                 "SELECT DISTINCT ON (task_id) decision_id, task_id, decision, state "
                 "FROM executor_jobs ORDER BY task_id, (state = 'succeeded') DESC, "
                 "created_at DESC")}
    executed = await conn.fetch("SELECT task_id, step_id, attempts, outcome FROM executions")
    attempts = {(str(r["task_id"]), r["step_id"]): r["attempts"] for r in executed}
    outcomes = {(str(r["task_id"]), r["step_id"]): r["outcome"] for r in executed}
    appended = {r["idempotency_key"]: r["n"] for r in await conn.fetch(
        f"SELECT idempotency_key, count(*) AS n FROM {downstream}.appends "
        "GROUP BY idempotency_key")}
    for task_id, row in tasks.items():
        have = effects.get(task_id, {})
        status = row["status"]
        if status == "SUCCEEDED":
            plan = plans.get(task_id)
            steps = [] if plan is None else [
                s for s in plan.steps
                if makes_effect(s, outcomes.get((task_id, s.step_id), ""))]
            checked = [have.get(s.step_id, StepEffects()) for s in steps]
            # an effect under a key of no step that makes one is one too many
            report.duplicates += sum(e.active for sid, e in have.items()
                                     if sid not in {s.step_id for s in steps})
            for step in [] if plan is None else plan.steps:
                # a step its condition skipped (a classroom alert records a check-in, not
                # the event) was never meant to land
                if step.target.endswith(APPEND_SUFFIX) and \
                        outcomes.get((task_id, step.step_id), "") != SKIPPED_CONDITION:
                    _count_append(report, appended.get(f"{task_id}:{step.step_id}", 0),
                                  attempts.get((task_id, step.step_id), 0))
        else:
            undone = undone_steps(plans.get(task_id))
            checked = [e for sid, e in have.items() if undone is None or sid in undone]
        duplicates, missing, orphans = effect_counts(status, checked)
        report.duplicates += duplicates
        report.missing_effects += missing
        report.orphan_effects += orphans
        if status in UNSUCCESSFUL and any(e.reversed for e in have.values()):
            report.compensated_tasks += 1
            report.cancelled_and_undone += task_id in cancelled
    calls = await conn.fetch(
        f"SELECT idempotency_key, count(*) AS n, count(*) FILTER (WHERE outcome = 'replayed') "
        f"AS replayed FROM {downstream}.calls WHERE outcome IN ('created', 'replayed') "
        "GROUP BY idempotency_key")
    ours = [c for c in calls if c["idempotency_key"].split(":", 1)[0] in tasks]
    report.downstream_calls = sum(c["n"] for c in ours)
    report.replayed_calls = sum(c["replayed"] for c in ours)
    report.steps_called_again = sum(c["n"] > 1 for c in ours)


def _count_append(report: Report, landed: int, recorded_attempts: int) -> None:
    missing, extra, unrecorded = append_counts(landed, recorded_attempts)
    report.append_steps += 1
    report.append_calls += landed
    report.append_missing += missing
    report.append_extra_calls += extra
    report.append_unrecorded += unrecorded
    report.append_max_per_step = max(report.append_max_per_step, landed)


async def _check_dead_letters(conn: asyncpg.Connection, settings: Settings,
                              by_key: dict[str, Item], ledger: Ledger, report: Report) -> None:
    """Each invalid intake record must have a dead letter holding its exact bytes."""
    letters = {bytes(r["original_value"]) for r in await conn.fetch(
        "SELECT original_value FROM dead_letters WHERE source_topic = $1 "
        "AND original_value IS NOT NULL", INTAKE.full_name(settings))}
    for key, value in ledger.kafka_acked.items():
        if by_key[key].invalid:
            if value in letters:
                report.dead_lettered += 1
            else:
                report.missing_dead_letters += 1
