"""Parked jobs that come due together are claimed in weighted fair order, urgent first within a
tenant (services/executor/jobs.py: JobStore.claim_due), in PostgreSQL as the executor runs it.

A breaker that closes on a thousand parked jobs of one tenant must not make another tenant's
few wait behind all of them: the resumer claims ``executor_concurrency`` jobs a tick.
"""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone

import asyncpg
import pytest

from services.executor.jobs import JobStore
from services.ingest.domain import build_envelope, payload_sha256
from services.ingest.store import accept
from switchyard import Settings
from switchyard.storage import create_pool
from switchyard.tasks import LOW, NORMAL, URGENT
from switchyard.v1 import Decision, DecisionOutcome, TaskSource
from tests.ingest.helpers import submission

pytestmark = pytest.mark.integration


async def parked(pool: asyncpg.Pool, tenant: str, count: int, due_minutes_ago: float,
                 priority: int = NORMAL) -> list[str]:
    """``count`` jobs of ``tenant`` parked for a retry that came due that long ago."""
    starter = JobStore(pool, "executor-gone", 30)
    deadline = datetime.now(timezone.utc) + timedelta(hours=1)
    ids = []
    async with pool.acquire() as conn:
        for _ in range(count):
            sub = submission(tenant)
            envelope = build_envelope(sub, str(uuid.uuid4()), TaskSource.TASK_SOURCE_GRPC)
            await accept(conn, envelope, payload_sha256(sub))
            decision = Decision(decision_id=str(uuid.uuid4()), task_id=envelope.task_id,
                                tenant_id=tenant,
                                outcome=DecisionOutcome.DECISION_OUTCOME_AUTO_EXECUTE)
            assert await starter.start(decision, deadline, priority) is not None
            ids.append(decision.decision_id)
    await pool.execute(
        "UPDATE executor_jobs SET state = 'parked', blocked_by = 'retry', "
        "retry_at = now() - make_interval(secs => $2) WHERE decision_id = ANY($1::uuid[])",
        [uuid.UUID(i) for i in ids], due_minutes_ago * 60)
    return ids


async def test_due_jobs_are_claimed_by_weight_then_priority(settings: Settings) -> None:
    pool = await create_pool(settings.replace(postgres_pool_min=1, postgres_pool_max=2))
    try:
        # the burst came due first: in due order it would fill every claim below
        await parked(pool, "burst", 60, due_minutes_ago=10)
        low = await parked(pool, "burst", 1, due_minutes_ago=20, priority=LOW)
        urgent = await parked(pool, "burst", 1, due_minutes_ago=1, priority=URGENT)
        steady = await parked(pool, "steady", 3, due_minutes_ago=1)
        gold = await parked(pool, "gold", 40, due_minutes_ago=1)
        resumer = JobStore(pool, "executor-now", 30, weights={"gold": 2.0})

        first = await resumer.claim_due(12, set())
        claimed = [job.decision_id for job in first]
        by_tenant = Counter(job.decision.tenant_id for job in first)
        assert set(steady) <= set(claimed)  # all three, though due last
        assert urgent[0] in claimed and low[0] not in claimed
        # turns: steady 1,2,3; burst 1,2,3,...; gold 0.5,1,1.5,...: gold twice the others
        assert by_tenant == {"gold": 6, "burst": 3, "steady": 3}
        assert all(job.state == "running" for job in first)

        # the rest, ten a tick: the low-priority one comes in the burst's last claim
        running, rounds = set(claimed), {}
        for tick in range(20):
            for job in await resumer.claim_due(10, running):
                running.add(job.decision_id)
                rounds[job.decision_id] = (tick, job.decision.tenant_id)
        assert len(running) == 60 + 2 + 3 + 40
        burst_ticks = [tick for tick, tenant in rounds.values() if tenant == "burst"]
        assert rounds[low[0]][0] == max(burst_ticks)
    finally:
        await pool.close()
