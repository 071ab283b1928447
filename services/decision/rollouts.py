"""Model rollouts: shadow, canary, promote and roll back any model the decision service consults.

A model's rollout (``decision_model_rollouts``, one row per model) names the version that acts
on tasks (``live``) and, while one is being tried, a ``candidate``:

* ``SHADOW``: the candidate also scores the sampled tasks (``SWITCHYARD_ROUTER_SHADOW_SAMPLE``)
  after the live answer is in; the comparison is recorded (``decision_shadow_results``), nothing
  it says is used;
* ``CANARY``: the candidate *decides* ``canary_share`` of the named tenants' tasks, chosen by
  the task id's hash, so a task redelivered or decided on another replica gets the same
  version. A candidate that fails a request is counted as an error and that task is decided
  by the live version.

While a canary runs, each side's decisions, escalations and errors are counted (in memory,
added to ``decision_rollout_evidence`` by every replica's judge), and reviewers' verdicts judge
each version as they do for live accuracy (``decision_labels``). :func:`judge` turns the two
sides' evidence into promote, roll back or wait; :class:`RolloutJudge` applies it. An admin may
start, promote or roll back at any time (``DecisionService.StartRollout`` / ``PromoteModel`` /
``RollbackModel``, ``switchyard models canary|shadow|promote|rollback``). Every change is a
conditional update, so two replicas never both apply one, and an audit-log entry.

A model without a row follows the settings: the router's ``SWITCHYARD_ROUTER_VERSION`` with
``SWITCHYARD_ROUTER_SHADOW_VERSION`` as its shadow, a scorer's ``SWITCHYARD_<MODEL>_VERSION``
(empty: Triton's latest).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from services.decision.health import agreement_since
from services.decision.shadow import shadow_sampled
from switchyard.audit import append as audit_append

__all__ = ["CANARY", "NONE", "SHADOW", "STAGES", "Evidence", "Rollout", "RolloutBook",
           "RolloutError", "RolloutJudge", "Thresholds", "judge", "promote", "rollback",
           "start", "with_default_shadow"]

log = logging.getLogger(__name__)

NONE, SHADOW, CANARY = "NONE", "SHADOW", "CANARY"
STAGES = (NONE, SHADOW, CANARY)
#: The most of a tenant's traffic a canary may take: past half it is no longer a canary.
MAX_CANARY_SHARE = 0.5
JUDGE = "rollout-judge"
#: Audit entries of model-wide changes go to the operators' chain.
AUDIT_TENANT = "*"


class RolloutError(Exception):
    """A change the rollout's state does not allow (the message says why)."""


@dataclass(frozen=True)
class Rollout:
    """A model's rollout, as the decision service acts on it."""

    model: str
    live: str
    candidate: str = ""
    stage: str = NONE
    share: float = 0.0
    tenants: tuple[str, ...] = ()
    started_at: datetime | None = None
    updated_at: datetime | None = None
    updated_by: str = ""
    note: str = ""
    stored: bool = False  # a row of decision_model_rollouts (else: from the settings)

    def canary_takes(self, tenant_id: str, task_id: str) -> bool:
        """Whether the candidate decides this task (the same answer on every replica)."""
        return (self.stage == CANARY and bool(self.candidate) and self.in_scope(tenant_id)
                and shadow_sampled(f"{self.model}:{task_id}", self.share))

    def in_scope(self, tenant_id: str) -> bool:
        return not self.tenants or tenant_id in self.tenants

    @classmethod
    def from_row(cls, row: Mapping[str, object]) -> Rollout:
        return cls(str(row["model_name"]), str(row["live_version"]),
                   str(row["candidate_version"]), str(row["stage"]),
                   float(row["canary_share"]),  # type: ignore[arg-type]
                   tuple(row["tenants"] or ()),  # type: ignore[call-overload]
                   row["started_at"], row["updated_at"],  # type: ignore[arg-type]
                   str(row["updated_by"]), str(row["note"]), True)


@dataclass
class Evidence:
    """What one side of a canary did: decisions, escalations, errors; reviewers' verdicts."""

    decisions: int = 0
    escalated: int = 0
    errors: int = 0
    judged: int = 0
    agreed: int = 0

    @property
    def escalation_rate(self) -> float:
        return self.escalated / self.decisions if self.decisions else 0.0

    @property
    def error_rate(self) -> float:
        tried = self.decisions + self.errors
        return self.errors / tried if tried else 0.0

    @property
    def agreement(self) -> float:
        return self.agreed / self.judged if self.judged else 0.0


@dataclass(frozen=True)
class Thresholds:
    """When the judge acts (the ``SWITCHYARD_ROLLOUT_*`` settings)."""

    min_decisions: int = 200
    min_verdicts: int = 20
    max_error_rate: float = 0.02
    max_escalation_increase: float = 0.05
    max_agreement_drop: float = 0.05

    @classmethod
    def from_settings(cls, settings: object) -> Thresholds:
        return cls(*(getattr(settings, f"rollout_{name}") for name in (
            "min_decisions", "min_verdicts", "max_error_rate", "max_escalation_increase",
            "max_agreement_drop")))


#: Errors are judged once the candidate was asked this many times (a few early failures of a
#: version still loading are no verdict).
MIN_TRIES_FOR_ERRORS = 20


def judge(live: Evidence, candidate: Evidence, t: Thresholds) -> tuple[str, str]:
    """``("rollback" | "promote" | "wait", why)``: roll back as soon as the candidate errs,
    escalates or disagrees with reviewers past a threshold; promote once it decided
    ``min_decisions`` tasks and was judged by ``min_verdicts`` reviewers' verdicts with
    neither rate worse than the live version's by more than the thresholds allow."""
    if candidate.decisions + candidate.errors >= MIN_TRIES_FOR_ERRORS and \
            candidate.error_rate > t.max_error_rate:
        return "rollback", (f"error rate {candidate.error_rate:.1%} above "
                            f"{t.max_error_rate:.1%} ({candidate.errors} errors)")
    enough = min(live.decisions, candidate.decisions) >= t.min_decisions
    if enough and candidate.escalation_rate > live.escalation_rate + t.max_escalation_increase:
        return "rollback", (f"escalation rate {candidate.escalation_rate:.1%} against the live "
                            f"version's {live.escalation_rate:.1%} (allowed "
                            f"+{t.max_escalation_increase:.1%})")
    judged = min(live.judged, candidate.judged) >= t.min_verdicts
    if judged and candidate.agreement < live.agreement - t.max_agreement_drop:
        return "rollback", (f"agreement with reviewers {candidate.agreement:.1%} against the "
                            f"live version's {live.agreement:.1%} (allowed "
                            f"-{t.max_agreement_drop:.1%})")
    if enough and judged:
        return "promote", (f"{candidate.decisions} decisions, escalation rate "
                           f"{candidate.escalation_rate:.1%} (live {live.escalation_rate:.1%}), "
                           f"agreement with reviewers {candidate.agreement:.1%} "
                           f"(live {live.agreement:.1%}), error rate "
                           f"{candidate.error_rate:.1%}")
    return "wait", (f"{candidate.decisions} of {t.min_decisions} decisions, "
                    f"{candidate.judged} of {t.min_verdicts} verdicts")


_COLUMNS = ("model_name, live_version, candidate_version, stage, canary_share, tenants, "
            "started_at, updated_at, updated_by, note")


async def _audit(conn: asyncpg.Connection, actor: str, action: str, rollout: Rollout,
                 detail: Mapping[str, object]) -> None:
    await audit_append(conn, AUDIT_TENANT, actor, action, {
        "model": rollout.model, "live_version": rollout.live,
        "candidate_version": rollout.candidate, "stage": rollout.stage,
        "canary_share": rollout.share, "tenants": list(rollout.tenants), **detail},
        writer="decision")


async def start(conn: asyncpg.Connection, current: Rollout, candidate: str, stage: str,
                share: float, tenants: Iterable[str], actor: str) -> Rollout:
    """Shadow or canary ``candidate`` (in the caller's transaction; audited)."""
    if stage not in (SHADOW, CANARY):
        raise RolloutError("stage must be SHADOW or CANARY")
    if candidate == current.live:
        raise RolloutError(f"version {candidate} is the live version")
    row = await conn.fetchrow(
        f"INSERT INTO decision_model_rollouts ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, "
        "now(), now(), $7, '') ON CONFLICT (model_name) DO UPDATE SET candidate_version = $3, "
        "stage = $4, canary_share = $5, tenants = $6, started_at = now(), updated_at = now(), "
        f"updated_by = $7, note = '' RETURNING {_COLUMNS}",
        current.model, current.live, candidate, stage, share if stage == CANARY else 0.0,
        sorted(set(tenants)), actor)
    started = Rollout.from_row(row)
    if current.candidate and current.stage != NONE:
        await _audit(conn, actor, "model.rollout_replaced", current, {})
    await _audit(conn, actor, "model.rollout_started", started, {})
    return started


async def _finish(conn: asyncpg.Connection, current: Rollout, promote_it: bool, actor: str,
                  note: str, expected: Rollout | None) -> Rollout | None:
    """Promote or roll back the candidate; None when ``expected`` is no longer the state (an
    automatic change that another replica or an admin made first)."""
    guard = ("" if expected is None else
             "AND candidate_version = $5 AND started_at IS NOT DISTINCT FROM $6")
    params: list[object] = [current.model, actor, note, promote_it]
    if expected is not None:
        params += [expected.candidate, expected.started_at]
    row = await conn.fetchrow(
        "UPDATE decision_model_rollouts SET live_version = CASE WHEN $4 THEN "
        "candidate_version ELSE live_version END, candidate_version = '', stage = 'NONE', "
        "canary_share = 0, tenants = '{}', updated_at = now(), updated_by = $2, note = $3 "
        f"WHERE model_name = $1 AND candidate_version <> '' {guard} RETURNING {_COLUMNS}",
        *params)
    if row is None:
        return None
    action = "model.promoted" if promote_it else "model.rolled_back"
    await _audit(conn, actor, action, current, {"note": note, "automatic": actor == JUDGE})
    return Rollout.from_row(row)


async def promote(conn: asyncpg.Connection, current: Rollout, actor: str, note: str,
                  expected: Rollout | None = None) -> Rollout | None:
    """The candidate becomes the live version (audited)."""
    if not current.candidate or current.stage == NONE:
        raise RolloutError(f"{current.model} has no candidate to promote")
    if not current.stored:  # the settings' shadow: store the state it is promoted from
        await _store(conn, current, actor)
    return await _finish(conn, current, True, actor, note, expected)


async def rollback(conn: asyncpg.Connection, current: Rollout, actor: str, note: str,
                   expected: Rollout | None = None) -> Rollout | None:
    """The candidate is withdrawn; the live version decides alone (audited)."""
    if not current.candidate or current.stage == NONE:
        raise RolloutError(f"{current.model} has no candidate to roll back")
    if not current.stored:
        await _store(conn, current, actor)
    return await _finish(conn, current, False, actor, note, expected)


async def _store(conn: asyncpg.Connection, rollout: Rollout, actor: str) -> None:
    await conn.execute(
        f"INSERT INTO decision_model_rollouts ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, "
        "now(), now(), $7, 'from the settings') ON CONFLICT (model_name) DO NOTHING",
        rollout.model, rollout.live, rollout.candidate, rollout.stage, rollout.share,
        list(rollout.tenants), actor)


Key = tuple[str, str, datetime, str]  # model, candidate, started_at, role


@dataclass
class RolloutBook:
    """Every model's rollout as this replica acts on it (refreshed from PostgreSQL), and what
    its canaries decided since the last flush."""

    defaults: dict[str, Rollout] = field(default_factory=dict)
    stored: dict[str, Rollout] = field(default_factory=dict)
    _counts: dict[Key, list[int]] = field(default_factory=dict)

    def get(self, model: str, default_live: str = "") -> Rollout:
        """The model's rollout: its row, else the settings' default, else ``default_live``
        alone."""
        return self.stored.get(model) or self.defaults.get(model) or Rollout(model, default_live)

    def all(self) -> list[Rollout]:
        return sorted({**self.defaults, **self.stored}.values(), key=lambda r: r.model)

    async def refresh(self, conn: asyncpg.Connection | asyncpg.Pool) -> None:
        rows = await conn.fetch(f"SELECT {_COLUMNS} FROM decision_model_rollouts")
        self.stored = {str(r["model_name"]): Rollout.from_row(r) for r in rows}

    def put(self, rollout: Rollout) -> None:
        """A change this replica made: acted on at once, before the next refresh."""
        self.stored[rollout.model] = rollout

    def count(self, rollout: Rollout, role: str, escalated: bool = False,
              error: bool = False) -> None:
        """One decision (or failed request) of a canary's side."""
        if rollout.stage != CANARY or rollout.started_at is None:
            return
        counts = self._counts.setdefault(
            (rollout.model, rollout.candidate, rollout.started_at, role), [0, 0, 0])
        if error:
            counts[2] += 1
        else:
            counts[0] += 1
            counts[1] += int(escalated)

    async def flush(self, conn: asyncpg.Connection | asyncpg.Pool) -> None:
        """Add the counts to ``decision_rollout_evidence`` (kept for the next flush when
        PostgreSQL refuses)."""
        counts, self._counts = self._counts, {}
        if not counts:
            return
        try:
            await conn.executemany(
                "INSERT INTO decision_rollout_evidence (model_name, candidate_version, "
                "started_at, role, decisions, escalated, errors) VALUES ($1, $2, $3, $4, $5, "
                "$6, $7) ON CONFLICT (model_name, candidate_version, started_at, role) DO "
                "UPDATE SET decisions = decision_rollout_evidence.decisions + "
                "excluded.decisions, escalated = decision_rollout_evidence.escalated + "
                "excluded.escalated, errors = decision_rollout_evidence.errors + "
                "excluded.errors", [(*key, *values) for key, values in counts.items()])
        except BaseException:
            for key, values in counts.items():  # not lost: the next flush adds them
                mine = self._counts.setdefault(key, [0, 0, 0])
                for i, value in enumerate(values):
                    mine[i] += value
            raise


async def evidence(conn: asyncpg.Connection | asyncpg.Pool, rollout: Rollout,
                   reported: Mapping[str, str]) -> tuple[Evidence, Evidence]:
    """The live side's and the candidate's evidence since the rollout started; ``reported``
    maps version directories to the version names decisions carry (labels count by those)."""
    live, candidate = Evidence(), Evidence()
    if rollout.started_at is None or not rollout.candidate:
        return live, candidate
    for row in await conn.fetch(
            "SELECT role, decisions, escalated, errors FROM decision_rollout_evidence WHERE "
            "model_name = $1 AND candidate_version = $2 AND started_at = $3",
            rollout.model, rollout.candidate, rollout.started_at):
        side = candidate if row["role"] == "candidate" else live
        side.decisions, side.escalated, side.errors = (row["decisions"], row["escalated"],
                                                       row["errors"])
    names = {side: reported.get(version, version) for side, version in
             (("live", rollout.live), ("candidate", rollout.candidate))}
    agreement = await agreement_since(conn, rollout.model, list(names.values()),
                                      rollout.started_at, tenants=list(rollout.tenants))
    for side, box in (("live", live), ("candidate", candidate)):
        box.judged, box.agreed = agreement.get(names[side], (0, 0))
    return live, candidate


class RolloutJudge:
    """The decision service's loop over its canaries: every ``every_s`` it adds this
    replica's counts, refreshes the rollouts, and rolls back each canary that fails the
    fairness ``gate`` (services/decision/fairness.py), then promotes or rolls back each other
    canary the evidence decides (:func:`judge`); a replica that finds the change already made does
    nothing."""

    def __init__(self, pool: asyncpg.Pool, book: RolloutBook, thresholds: Thresholds,
                 reported: Callable[[str], Mapping[str, str]], every_s: float,
                 gate: Callable[[asyncpg.Pool, Rollout], Awaitable[str | None]] | None = None
                 ) -> None:
        self.pool, self.book, self.thresholds = pool, book, thresholds
        self.reported = reported  # model -> {version dir: the version name decisions carry}
        self.every_s = every_s
        self.gate = gate  # why a candidate fails the fairness gate, or None

    async def round(self) -> list[tuple[str, str, str]]:
        """One pass; returns what was done: (model, action, why)."""
        await self.book.flush(self.pool)
        await self.book.refresh(self.pool)
        done = []
        for rollout in list(self.book.stored.values()):
            if rollout.stage != CANARY:
                continue
            breach = await self.gate(self.pool, rollout) if self.gate is not None else None
            if breach:
                action, why = "rollback", f"fairness: {breach}"
            else:
                live, candidate = await evidence(self.pool, rollout,
                                                 self.reported(rollout.model))
                action, why = judge(live, candidate, self.thresholds)
            if action == "wait":
                continue
            async with self.pool.acquire() as conn, conn.transaction():
                change = promote if action == "promote" else rollback
                after = await change(conn, rollout, JUDGE, why, expected=rollout)
            if after is not None:
                self.book.put(after)
                log.warning("%s version %s %s automatically: %s", rollout.model,
                            rollout.candidate, "promoted" if action == "promote"
                            else "rolled back", why)
                done.append((rollout.model, action, why))
        return done

    async def run(self) -> None:
        """Judge forever (a supervised background loop of the decision service)."""
        while True:
            await asyncio.sleep(self.every_s)
            await self.round()


def with_default_shadow(book: RolloutBook, model: str, live: str, shadow: str) -> None:
    """The settings' rollout of ``model``: ``live``, shadowed by ``shadow`` when set."""
    book.defaults[model] = Rollout(model, live, shadow if shadow != live else "",
                                   SHADOW if shadow and shadow != live else NONE)
