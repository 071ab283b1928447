"""The resumer: every replica's background loop that brings parked tasks back.

Once per ``executor_poll_s`` (sooner when woken) it beats (so other replicas know this one is
alive), adopts the shared breaker state, escalates parked tasks that would pass their deadline
(not those on a wait step of their plan: the plan asked for that wait), sends at most one probe
per open breaker whose reset time has passed, and resumes parked tasks that are due (a retry
time, a timer, a callback's timeout, or woken by CompleteWait or a cancellation) plus running
tasks of replicas that died, each in the task's own trace (stored
with its job). Parked tasks cost nothing while they wait: no retry loop spins, and the Kafka
partitions they came from have long moved on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

from prometheus_client import Gauge

from services.executor.breakers import BreakerBoard
from services.executor.jobs import Job, JobStore
from services.executor.orchestrator import Executor
from switchyard.messaging import TRANSIENT_ERRORS
from switchyard.runtime import Supervisor
from switchyard.telemetry import continue_trace
from switchyard.v1 import EscalationReason

log = logging.getLogger(__name__)

PARKED = Gauge("switchyard_executor_parked_tasks",
               "Tasks parked in the executor (breaker open, waiting to retry, or on a "
               "wait step of their plan).")


class Resumer:
    def __init__(self, executor: Executor, jobs: JobStore, breakers: BreakerBoard,
                 poll_s: float, concurrency: int, supervisor: Supervisor) -> None:
        self.executor = executor
        self.jobs = jobs
        self.breakers = breakers
        self.poll_s = poll_s
        self.concurrency = concurrency
        self.supervisor = supervisor
        self.wakeup = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False

    async def loop(self) -> None:
        while not self._stopping:
            try:
                await self.tick()
            except TRANSIENT_ERRORS as exc:  # a database blip must not end the loop
                log.warning("resumer tick failed, the next one retries: %r", exc)
            # anything else ends the loop: the supervisor logs, counts and restarts it
            try:
                await asyncio.wait_for(self.wakeup.wait(), timeout=self.poll_s)
            except asyncio.TimeoutError:
                pass
            self.wakeup.clear()

    async def tick(self) -> None:
        await self.jobs.heartbeat()
        await self.breakers.sync()
        for job in await self.jobs.overdue(self._room()):
            self._spawn(job, "executor sla escalation", self.executor.escalate(
                job, EscalationReason.ESCALATION_REASON_SLA_AT_RISK, "sla_at_risk",
                f"blocked ({job.endpoint or 'retry'}) past its deadline "
                f"{job.deadline.isoformat()}"))
        for endpoint in await self.breakers.claim_probes():
            job = await self.jobs.claim_probe(endpoint) if self._room() else None
            if job is None:
                await self.breakers.release_probe(endpoint)
                continue
            log.info("probing %s with one parked task", endpoint)
            self._spawn(job, "executor probe", self.executor.run(job, probe=endpoint))
        for job in await self.jobs.claim_due(self._room(), set(self.executor.active)):
            self._spawn(job, "executor resume", self.executor.run(job))
        PARKED.set(await self.jobs.parked_count())

    def _room(self) -> int:
        return 0 if self._stopping else max(0, self.concurrency - len(self._tasks))

    def _spawn(self, job: Job, span: str, work: Awaitable[None]) -> None:
        async def guarded() -> None:
            # On failure the job stays claimed by us; a restart or a peer takes it over. The
            # supervisor logs and counts the failure. The work runs in the task's trace (the
            # context stored with the job), not in a new one.
            try:
                with continue_trace(span, job.trace_context, {"task.id": job.task_id}):
                    await work
            finally:
                self.wakeup.set()  # a finished probe may have closed a breaker

        task = self.supervisor.spawn("resume", guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self, grace_s: float = 5.0) -> None:
        """Stop claiming, let running resumptions finish (briefly), then hand over the rest."""
        self._stopping = True
        self.wakeup.set()
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
