"""Executor jobs in PostgreSQL: what keeps a task from being lost between Kafka and downstream.

A decision becomes a job row before its offset is committed. The row says who runs it
(``owner``, a replica that beats in ``executor_replicas``), whether it is parked (on an open
breaker, until ``retry_at``, on a call step's ``retry_later``: ``blocked_by`` 'later' until
``retry_at``, or on a wait step of its plan: 'timer' until ``retry_at``, 'callback' until
CompleteWait wakes it or its timeout ``retry_at``) and how it ended. Any replica's resumer
picks up parked jobs
when they are due and jobs whose owner stopped beating, so a partition never waits for a
downstream and a killed replica's work is finished by whoever comes next. The row keeps the
trace context the decision arrived in, so work resumed later stays in the task's trace.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from switchyard.audit import Entry, append_many
from switchyard.storage import JOB_DECISION, PLAINTEXT, GroupCommit, PayloadCodec
from switchyard.tasks import NORMAL
from switchyard.telemetry import loaded_trace_context, stored_trace_context
from switchyard.v1 import ActionStep, Decision

RUNNING, PARKED = "running", "parked"
SUCCEEDED, FAILED, ESCALATED, CANCELLED = "succeeded", "failed", "escalated", "cancelled"

#: The audit action of a job that a replica took over from one that stopped beating.
TAKEN_OVER = "task.taken_over"

_LIVE_OWNER = ("EXISTS (SELECT 1 FROM executor_replicas r WHERE r.owner = {col} "
               "AND r.heartbeat_at > now() - make_interval(secs => {secs}))")


#: A job ``j`` that handed its task to a person and is the task's newest job (nothing ran the
#: task since: no verdict's job, no later decision).
_HANDED_OVER = ("(j.state = 'escalated' AND NOT EXISTS (SELECT 1 FROM executor_jobs n "
                "WHERE n.task_id = j.task_id AND n.created_at > j.created_at))")


@dataclass(frozen=True)
class Job:
    decision: Decision
    deadline: datetime
    parks: int
    state: str
    endpoint: str = ""
    blocked_by: str = ""
    reason: str = ""  # why it ended, for finished jobs ("code: detail" when escalated)
    #: the trace the decision record arrived in: resumed work continues it
    trace_context: dict[str, str] | None = None

    @property
    def decision_id(self) -> str:
        return self.decision.decision_id

    @property
    def task_id(self) -> str:
        return self.decision.task_id


@dataclass(frozen=True)
class _Start:
    """A job to start (see :meth:`JobStore.start`)."""

    decision: Decision
    deadline: datetime
    sealed: bytes  # the decision, sealed for executor_jobs.decision
    trace_context: str  # stored_trace_context() of the run that starts it
    priority: int  # the task's priority bucket: claim_due's order within its tenant


class JobStore:
    #: What makes a job ``{alias}`` due for :meth:`claim_due` ($1 this replica, $3 the replica
    #: timeout, $4 the decision ids this process is running).
    _DUE = ("NOT ({alias}.decision_id = ANY($4::uuid[])) AND ("
            "({alias}.state = 'parked' "
            "AND {alias}.blocked_by IN ('retry', 'later', 'timer', 'callback') "
            "AND {alias}.retry_at <= now()) "
            "OR ({alias}.state = 'parked' AND {alias}.blocked_by = 'breaker' AND NOT EXISTS ("
            "SELECT 1 FROM executor_breakers b WHERE b.name = {alias}.endpoint "
            "AND b.state <> 'closed')) "
            "OR ({alias}.state = 'running' AND {alias}.owner <> $1 AND NOT "
            + _LIVE_OWNER.format(col='{alias}.owner', secs='$3') + ") "
            "OR ({alias}.state = 'running' AND {alias}.owner = $1))")

    def __init__(self, pool: asyncpg.Pool, owner: str, replica_timeout_s: float,
                 codec: PayloadCodec = PLAINTEXT,
                 weights: Mapping[str, float] | None = None) -> None:
        self.pool = pool
        self.owner = owner
        self.replica_timeout_s = replica_timeout_s
        self.weights = dict(weights or {})  # tenant_weights: the order of claim_due
        self.codec = codec  # executor_jobs.decision carries the extracted fields: sealed
        self._starts: GroupCommit[_Start, Job | None] = GroupCommit(
            "job_starts", pool, self._write_starts, key=lambda s: s.decision.decision_id)

    def _job(self, row: asyncpg.Record) -> Job:
        decision = Decision.FromString(
            self.codec.open(row["decision_id"], row["decision"], JOB_DECISION))
        return Job(decision, row["deadline"], row["parks"], row["state"], row["endpoint"],
                   row["blocked_by"], row.get("reason", ""),
                   loaded_trace_context(row["trace_context"]))

    async def heartbeat(self) -> None:
        await self.pool.execute(
            "INSERT INTO executor_replicas (owner) VALUES ($1) ON CONFLICT (owner) DO UPDATE "
            "SET heartbeat_at = now()", self.owner)

    async def retire(self) -> None:
        """Clean shutdown: hand this replica's jobs over at once instead of after a timeout."""
        await self.pool.execute("DELETE FROM executor_replicas WHERE owner = $1", self.owner)

    async def start(self, decision: Decision, deadline: datetime, priority: int = NORMAL
                    ) -> Job | None:
        """Record the decision's job as running here; None when it is not ours to run (already
        parked, finished, handed to a person, or running on a live replica). The starts of
        concurrent runs (a batch's tasks) go to PostgreSQL in one statement."""
        return await self._starts.submit(_Start(
            decision, deadline,
            self.codec.seal(decision.decision_id, decision.SerializeToString(), JOB_DECISION),
            stored_trace_context(), priority))  # the caller's trace: the record's

    async def _write_starts(self, conn: asyncpg.Connection, starts: list[_Start]
                            ) -> list[Job | None]:
        rows = await conn.fetch(
            f"""
            WITH held AS (   -- who ran the jobs that already exist (the snapshot before this)
                SELECT decision_id, owner FROM executor_jobs
                 WHERE decision_id = ANY($1::uuid[]) AND state = 'running')
            INSERT INTO executor_jobs AS j (decision_id, task_id, tenant_id, decision, state,
                                            deadline, owner, trace_context, priority)
            SELECT s.decision_id, s.task_id, s.tenant_id, s.decision, 'running', s.deadline,
                   $6, s.trace_context::jsonb, s.priority
              FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::bytea[], $5::timestamptz[],
                          $8::text[], $9::smallint[])
                   AS s(decision_id, task_id, tenant_id, decision, deadline, trace_context,
                        priority)
             ORDER BY s.decision_id
            ON CONFLICT (decision_id) DO UPDATE SET owner = EXCLUDED.owner, updated_at = now()
             WHERE j.state = 'running'
               AND (j.owner = EXCLUDED.owner OR NOT {_LIVE_OWNER.format(col='j.owner',
                                                                        secs='$7')})
            RETURNING decision_id, deadline, parks, state, endpoint, blocked_by, trace_context,
                      tenant_id, task_id, 'running' AS was_state,
                      (SELECT h.owner FROM held h WHERE h.decision_id = j.decision_id)
                      AS was_owner
            """,
            [uuid.UUID(s.decision.decision_id) for s in starts],
            [uuid.UUID(s.decision.task_id) for s in starts],
            [s.decision.tenant_id for s in starts], [s.sealed for s in starts],
            [s.deadline for s in starts], self.owner, self.replica_timeout_s,
            [s.trace_context for s in starts], [s.priority for s in starts])
        # a redelivered decision whose job a dead replica was running: taken over here
        await append_many(conn, [self._taken_over(row) for row in rows
                                 if row["was_owner"] not in (None, self.owner)],
                          writer="executor")
        started = {str(row["decision_id"]): row for row in rows}
        jobs: list[Job | None] = []
        for start in starts:
            row = started.get(start.decision.decision_id)
            # the decision in hand is the one stored under its id: not opened again
            jobs.append(None if row is None else Job(
                start.decision, row["deadline"], row["parks"], row["state"], row["endpoint"],
                row["blocked_by"], "", loaded_trace_context(row["trace_context"])))
        return jobs

    async def escalated(self, decision_id: str) -> Job | None:
        """The decision's job when it was handed to a person; None otherwise."""
        row = await self.pool.fetchrow(
            "SELECT decision_id, decision, deadline, parks, state, endpoint, blocked_by, reason, "
            "trace_context FROM executor_jobs WHERE decision_id = $1 AND state = 'escalated'",
            uuid.UUID(decision_id))
        return self._job(row) if row is not None else None

    async def claim_due(self, limit: int, exclude: set[str]) -> list[Job]:
        """Parked jobs that are due (retry time passed, or their breaker closed), running jobs
        whose owner is gone, and our own running jobs that nothing here runs any more (a run
        that died on an error); ``exclude`` lists the ones this process is running. Each
        returned job is now running here.

        When more are due than ``limit`` (a breaker closed on a thousand parked jobs of one
        tenant), they are taken in weighted fair order: each tenant's due jobs are numbered
        by priority, then due time, and the n-th counts as turn n / the tenant's weight, so a
        tenant with three due jobs is not served after another's thousand."""
        if limit <= 0:
            return []
        tenants, weights = zip(*self.weights.items()) if self.weights else ((), ())
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(self._CLAIM_DUE, self.owner, limit, self.replica_timeout_s,
                                    [uuid.UUID(d) for d in exclude], list(tenants),
                                    list(weights))
            await append_many(conn, [self._taken_over(row) for row in rows
                                     if row["was_state"] == "running"
                                     and row["was_owner"] != self.owner], writer="executor")
        return [self._job(row) for row in rows]

    #: claim_due's statement ($1 this replica, $2 how many, $3 the replica timeout, $4 the
    #: decision ids this process runs, $5/$6 tenants and their weights). It returns what each
    #: job was (state, owner) before this replica took it: a running job of another replica
    #: is a takeover, which the task's timeline tells.
    _CLAIM_DUE = f"""
            WITH due AS (
                SELECT c.decision_id, c.retry_at,
                       row_number() OVER (PARTITION BY c.tenant_id
                                          ORDER BY c.priority, c.retry_at NULLS FIRST)
                       / COALESCE(w.weight, 1.0) AS turn
                  FROM executor_jobs c
                  LEFT JOIN unnest($5::text[], $6::float8[]) AS w(tenant_id, weight)
                         ON w.tenant_id = c.tenant_id
                 WHERE {_DUE.format(alias='c')}),
            picked AS (
                SELECT c.decision_id, c.state AS was_state, c.owner AS was_owner
                  FROM executor_jobs c JOIN due USING (decision_id)
                 WHERE {_DUE.format(alias='c')}
                 ORDER BY due.turn, due.retry_at NULLS FIRST
                 LIMIT $2
                 FOR UPDATE OF c SKIP LOCKED)
            UPDATE executor_jobs j SET state = 'running', owner = $1, updated_at = now()
              FROM picked p WHERE j.decision_id = p.decision_id
            RETURNING j.decision_id, j.decision, j.deadline, j.parks, j.state, j.endpoint,
                      j.blocked_by, j.trace_context, j.tenant_id, j.task_id, p.was_state,
                      p.was_owner
            """

    def _taken_over(self, row: asyncpg.Record) -> Entry:
        """The audit entry of a job this replica took over from ``row['was_owner']``, a replica
        that stopped beating (killed, partitioned) or retired (SIGTERM) mid-run: the task's
        timeline says who ran it, who runs it now and why (steps it finished are skipped,
        the one in flight is called again with its idempotency key)."""
        return Entry(row["tenant_id"], "executor", TAKEN_OVER,
                     {"from_replica": row["was_owner"], "to_replica": self.owner,
                      "decision_id": str(row["decision_id"]),
                      "replica_timeout_s": self.replica_timeout_s},
                     task_id=str(row["task_id"]))

    async def claim_probe(self, endpoint: str) -> Job | None:
        """One job parked on ``endpoint``'s breaker, to probe it with."""
        row = await self.pool.fetchrow(
            """
            UPDATE executor_jobs j SET state = 'running', owner = $1, updated_at = now()
             WHERE j.decision_id = (
                SELECT decision_id FROM executor_jobs
                 WHERE state = 'parked' AND blocked_by = 'breaker' AND endpoint = $2
                 ORDER BY updated_at LIMIT 1 FOR UPDATE SKIP LOCKED)
            RETURNING decision_id, decision, deadline, parks, state, endpoint, blocked_by,
                      trace_context
            """, self.owner, endpoint)
        return self._job(row) if row is not None else None

    async def park(self, job: Job, blocked_by: str, endpoint: str, reason: str,
                   retry_at: datetime | None) -> None:
        """``retry_at`` None: until woken (a callback wait without a time limit)."""
        await self.pool.execute(
            "UPDATE executor_jobs SET state = 'parked', blocked_by = $2, endpoint = $3, "
            "reason = $4, retry_at = $5, parks = parks + 1, updated_at = now() "
            "WHERE decision_id = $1",
            uuid.UUID(job.decision_id), blocked_by, endpoint, reason, retry_at)

    async def wake(self, task_id: str) -> int:
        """Make the task's parked job due now (a cancellation must not wait for the retry
        time or for the breaker to close); returns how many jobs were woken."""
        return (await self.wake_many([task_id])).get(task_id, 0)

    async def wake_many(self, task_ids: Sequence[str]) -> dict[str, int]:
        """:meth:`wake` for several tasks in one statement: task id -> jobs woken."""
        rows = await self.pool.fetch(
            "UPDATE executor_jobs SET blocked_by = 'retry', retry_at = now(), updated_at = now()"
            " WHERE task_id = ANY($1::uuid[]) AND state = 'parked' RETURNING task_id",
            [uuid.UUID(t) for t in task_ids])
        return Counter(str(row["task_id"]) for row in rows)

    async def handed_over(self, task_id: str) -> Job | None:
        """The task's newest job when it handed the task to a person while steps of its plan
        may be in effect (an escalation, such as a deadline at risk while it waited); None
        otherwise, and for a hand-over after a compensation failed (the person took that
        over: a reject there ends it, nothing is tried again)."""
        row = await self.pool.fetchrow(
            "SELECT decision_id, decision, deadline, parks, state, endpoint, blocked_by, reason, "
            f"trace_context FROM executor_jobs j WHERE j.task_id = $1 AND {_HANDED_OVER} "
            "AND j.reason NOT LIKE 'compensation_failed%'", uuid.UUID(task_id))
        return self._job(row) if row is not None else None

    async def wake_for_cancellation(self, task_ids: Sequence[str]) -> dict[str, int]:
        """:meth:`wake_many`, and a task's newest job that handed it to a person (an approval
        step, or an escalation after steps ran) is made due again too: the steps before the
        hand-over may have taken effect, and only a run of the job undoes them (it meets the
        cancellation before its next group of steps, settles the step it waited on and
        compensates). Task id -> jobs made due."""
        rows = await self.pool.fetch(
            "UPDATE executor_jobs j SET state = 'parked', blocked_by = 'retry', "
            "retry_at = now(), updated_at = now() WHERE j.task_id = ANY($1::uuid[]) AND "
            f"(j.state = 'parked' OR {_HANDED_OVER}) RETURNING task_id",
            [uuid.UUID(t) for t in task_ids])
        return Counter(str(row["task_id"]) for row in rows)

    async def finish(self, job: Job, state: str, reason: str = "") -> None:
        async with self.pool.acquire() as conn:
            await self.finish_all(conn, [(job.decision_id, state, reason)])

    @staticmethod
    async def finish_all(conn: asyncpg.Connection, jobs: Sequence[tuple[str, str, str]]
                         ) -> None:
        """Set the final state (and reason) of jobs given as (decision id, state, reason)."""
        await conn.execute(
            "UPDATE executor_jobs j SET state = f.state, reason = f.reason, blocked_by = '', "
            "retry_at = NULL, updated_at = now() FROM unnest($1::uuid[], $2::text[], "
            "$3::text[]) f(decision_id, state, reason) WHERE j.decision_id = f.decision_id",
            [uuid.UUID(d) for d, _, _ in jobs], [s for _, s, _ in jobs], [r for _, _, r in jobs])

    async def overdue(self, limit: int) -> list[Job]:
        """Parked jobs that cannot run again before their deadline: claimed for escalation.
        A job parked on a wait step (timer, callback) waits as long as its plan says."""
        rows = await self.pool.fetch(
            """
            UPDATE executor_jobs j SET state = 'running', owner = $1, updated_at = now()
             WHERE j.decision_id IN (
                SELECT decision_id FROM executor_jobs
                 WHERE state = 'parked' AND blocked_by NOT IN ('timer', 'callback')
                   AND (deadline <= now() OR retry_at >= deadline)
                 LIMIT $2 FOR UPDATE SKIP LOCKED)
            RETURNING decision_id, decision, deadline, parks, state, endpoint, blocked_by,
                      trace_context
            """, self.owner, limit)
        return [self._job(row) for row in rows]

    async def plan_step(self, task_id: str, step_id: str) -> ActionStep | None:
        """The step ``step_id`` of the plan the task's latest job runs (None: no such)."""
        row = await self.pool.fetchrow(
            "SELECT decision_id, decision FROM executor_jobs WHERE task_id = $1 "
            "ORDER BY created_at DESC LIMIT 1", uuid.UUID(task_id))
        if row is None:
            return None
        decision = Decision.FromString(
            self.codec.open(row["decision_id"], row["decision"], JOB_DECISION))
        return next((s for s in decision.plan.steps if s.step_id == step_id), None)

    async def parked_count(self) -> int:
        return int(await self.pool.fetchval(
            "SELECT count(*) FROM executor_jobs WHERE state = 'parked'"))
