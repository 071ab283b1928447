"""The task path's stream processors serve tenants fairly: a tenant's few records behind
another tenant's hundreds in the same partitions are handled within the first batches, not
after the hundreds (switchyard/_dispatch.py, ``ServiceContext.consume_fairly``).

The services run as the stack runs them, one batch at a time (``stream_fair_batches=1``) of
``BATCH`` records, so the order in which records were handled is the order of their batches.
Ingest runs throughout; the consumer under test starts only once the burst and the steady
tenant's records are all in its topic, so in log order the steady records would come last.

- decision, ``tasks``: ingest's records carry the tenant and priority headers; the burst
  tenant's one urgent task, sent last, goes before its normal ones too. A light tenant's
  tasks sent while a burst is being decided go in the extra batch for sparse tenants.
- executor, ``decisions``: reviewers' rejections sent as the review service sends them (with
  the headers); the executor ends each task, and the order of those endings is the order of
  its batches.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import asyncpg
import pytest

from switchyard import Settings
from switchyard.messaging import DECISIONS, Producer, scheduling_headers
from switchyard.rpc import create_channel
from switchyard.stack import EmbeddedStack
from switchyard.storage import connect
from switchyard.tasks import NORMAL
from switchyard.v1 import (
    Decision,
    DecisionOutcome,
    DecisionSource,
    IngestServiceStub,
    SubmitTasksRequest,
    TaskPriority,
)
from tests.ingest.helpers import submission
from tests.observed import metric_sum
from tests.polling import eventually
from tests.services import running

pytestmark = pytest.mark.integration
BURST, STEADY, BATCH = 300, 3, 20
#: how many of the burst's records may go before the last steady one: the first batches can
#: be cut before the consumer's first fetch has brought the steady records in
SLACK = 4 * BATCH


@pytest.fixture(scope="module")
def fair_settings(settings: Settings) -> Settings:
    return settings.replace(stream_fair_batches=1, stream_batch_max_records=BATCH,
                            ingest_max_backlog=0)


@pytest.fixture(scope="module")
def ingest(fair_settings: Settings, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[EmbeddedStack]:
    with running(fair_settings, tmp_path_factory.mktemp("ingest"), ("ingest",)) as stack:
        yield stack


async def submit(settings: Settings, tenant: str, count: int,
                 level: int = TaskPriority.TASK_PRIORITY_NORMAL) -> list[str]:
    channel = create_channel(f"127.0.0.1:{settings.ingest_grpc_port}")
    try:
        stub = IngestServiceStub(channel)
        ids: list[str] = []
        for start in range(0, count, 100):
            reply = await stub.SubmitTasks(SubmitTasksRequest(submissions=[
                submission(tenant, priority_level=level)
                for _ in range(min(100, count - start))]))
            assert reply.accepted_count == min(100, count - start), reply
            ids += [result.accepted.task_id for result in reply.results]
        return ids
    finally:
        await channel.close()


async def handled_before(conn: asyncpg.Connection, query: str, burst: str,
                         others: list[str]) -> int:
    """How many of ``burst``'s tasks the query's ordering puts before the last of ``others``
    (``query`` yields ``task_id, tenant_id, at``)."""
    rows = await conn.fetch(query)
    last = max(row["at"] for row in rows if str(row["task_id"]) in others)
    return sum(1 for row in rows if row["tenant_id"] == burst and row["at"] < last)


async def test_decision_serves_a_steady_tenant_and_urgent_work_before_a_burst(
        fair_settings: Settings, ingest: EmbeddedStack,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    await submit(fair_settings, "dburst", BURST)
    steady = await submit(fair_settings, "dsteady", STEADY)
    urgent = await submit(fair_settings, "dburst", 1, TaskPriority.TASK_PRIORITY_URGENT)
    conn = await connect(fair_settings)
    try:
        with running(fair_settings, tmp_path_factory.mktemp("decision"), ("decision",)):
            async def all_decided() -> bool:
                return await conn.fetchval(
                    "SELECT count(*) FROM decisions WHERE tenant_id IN ('dburst', 'dsteady')"
                ) == BURST + STEADY + 1
            await eventually(all_decided, "every task decided", timeout_s=240)
        query = ("SELECT task_id, tenant_id, created_at AS at FROM decisions "
                 "WHERE tenant_id IN ('dburst', 'dsteady')")
        assert await handled_before(conn, query, "dburst", steady) <= SLACK
        assert await handled_before(conn, query, "dburst", urgent) <= SLACK
    finally:
        await conn.close()


async def test_a_light_tenant_arriving_mid_burst_runs_beside_the_bursts_batches(
        fair_settings: Settings, ingest: EmbeddedStack,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """The extra batch for sparse tenants (``stream_fair_sparse_records``, on by default):
    a light tenant's tasks sent while the decision service works through a burst one batch
    at a time are decided in a batch of their own beside the burst's, not after them."""
    burst = 2 * BURST
    await submit(fair_settings, "sburst", burst)
    conn = await connect(fair_settings)
    try:
        with running(fair_settings, tmp_path_factory.mktemp("sparse"), ("decision",)):
            async def started() -> bool:
                return bool(await conn.fetchval(
                    "SELECT count(*) FROM decisions WHERE tenant_id = 'sburst'"))
            await eventually(started, "the burst's first batch decided", timeout_s=120)
            light = await submit(fair_settings, "slight", STEADY)

            async def all_decided() -> bool:
                return await conn.fetchval(
                    "SELECT count(*) FROM decisions WHERE tenant_id IN ('sburst', 'slight')"
                ) == burst + STEADY
            await eventually(all_decided, "every task decided", timeout_s=240)
            carried = metric_sum(fair_settings.decision_metrics_port,
                                 "switchyard_stream_sparse_records_total")
        after = await conn.fetchval(
            "SELECT count(*) FROM decisions WHERE tenant_id = 'sburst' AND created_at > "
            "(SELECT max(created_at) FROM decisions WHERE task_id = ANY($1::uuid[]))", light)
        assert carried >= STEADY  # the light tenant's tasks went in the extra batch
        assert after >= BATCH, "the light tenant's tasks waited for the burst's end"
    finally:
        await conn.close()


async def test_executor_serves_a_steady_tenant_before_a_burst(
        fair_settings: Settings, ingest: EmbeddedStack,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    tasks = {tenant: await submit(fair_settings, tenant, count)
             for tenant, count in (("xburst", BURST), ("xsteady", STEADY))}
    producer = Producer(fair_settings)
    await producer.start()
    try:
        for tenant, ids in tasks.items():
            for task_id in ids:
                await producer.send(DECISIONS, task_id, Decision(
                    decision_id=str(uuid.uuid4()), task_id=task_id, tenant_id=tenant,
                    outcome=DecisionOutcome.DECISION_OUTCOME_REJECT,
                    source=DecisionSource.DECISION_SOURCE_HUMAN, rule="reviewer_rejected",
                    reviewer_id="fairness-test"), scheduling_headers(tenant, NORMAL))
    finally:
        await producer.stop()
    conn = await connect(fair_settings)
    query = ("SELECT h.task_id, t.tenant_id, h.occurred_at AS at FROM task_status_history h "
             "JOIN tasks t USING (task_id) WHERE h.service = 'executor' "
             "AND h.status = 'FAILED' AND t.tenant_id IN ('xburst', 'xsteady')")
    try:
        with running(fair_settings, tmp_path_factory.mktemp("executor"), ("executor",)):
            async def all_ended() -> bool:
                return len(await conn.fetch(query)) == BURST + STEADY
            await eventually(all_ended, "every task ended by the executor", timeout_s=240)
        assert await handled_before(conn, query, "xburst", tasks["xsteady"]) <= SLACK
    finally:
        await conn.close()
