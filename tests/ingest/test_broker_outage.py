"""The broker away while upstream systems submit: ingest answers once the task is committed.

A task is committed to PostgreSQL before it is produced (``services/ingest/publisher.py``), so
a submission needs no broker to be accepted. The answer waits for the broker's
acknowledgement at most ``SWITCHYARD_INGEST_PUBLISH_WAIT_S``; a client's deadline shorter
than the producer's request timeout (40 s) must not turn an accepted task into an error.
This module runs its own broker (stopped and started again) and its own ingest processes; and
a broker that lost its state has the unfinished tasks it held re-driven at once.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from switchyard import Settings
from switchyard.messaging import TASKS
from switchyard.rpc import create_channel
from switchyard.runtime import bootstrap
from switchyard.stack import EmbeddedStack, KafkaBroker, free_port
from switchyard.storage import create_pool
from switchyard.v1 import (
    Document,
    GetTaskTimelineRequest,
    IngestServiceStub,
    Submission,
    SubmitTaskRequest,
    TaskEnvelope,
    TaskSource,
)
from tests.ingest.helpers import read_topic
from tests.polling import eventually
from tests.services import running

pytestmark = pytest.mark.integration


async def _reachable(metrics_port: int, want: float) -> bool:
    text = await asyncio.to_thread(lambda: urllib.request.urlopen(
        f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode())
    return f'switchyard_broker_reachable{{service="ingest"}} {want}' in text


@pytest.fixture(scope="module")
def broker(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    own = settings.replace(kafka_bootstrap_servers=f"127.0.0.1:{free_port()}")
    broker = KafkaBroker(own, tmp_path_factory.mktemp("own-broker"))
    broker.start(timeout_s=60)
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="module")
def outage_settings(settings: Settings, broker: KafkaBroker) -> Settings:
    return settings.replace(kafka_bootstrap_servers=broker.bootstrap_servers,
                            reconcile_interval_s=0.5, reconcile_after_s=1.0,
                            broker_check_interval_s=0.5, log_format="json",
                            ingest_metrics_port=free_port())


@pytest.fixture(scope="module")
def ingest_process(outage_settings: Settings, tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[EmbeddedStack]:
    with running(outage_settings, tmp_path_factory.mktemp("ingest"), ("ingest",)) as stack:
        yield stack


@pytest.fixture
async def db(outage_settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(outage_settings)
    yield pool
    await pool.close()


async def test_a_submission_is_answered_while_the_broker_is_away_and_published_after(
        outage_settings: Settings, broker: KafkaBroker, ingest_process: EmbeddedStack,
        db: asyncpg.Pool) -> None:
    channel = create_channel(f"127.0.0.1:{outage_settings.ingest_grpc_port}")
    ingest = IngestServiceStub(channel)

    def submission() -> SubmitTaskRequest:
        return SubmitTaskRequest(submission=Submission(
            tenant_id="acme", idempotency_key=uuid.uuid4().hex, kind="invoice",
            document=Document(content_type="text/plain", body=b"Invoice 7 total 12.00 EUR")))

    try:
        before = await ingest.SubmitTask(submission(), timeout=30)
        await asyncio.to_thread(broker.stop)
        # well under the producer's 40 s request timeout, which the answer used to wait out
        during = [await ingest.SubmitTask(submission(), timeout=15) for _ in range(3)]
        assert all(r.created for r in during)
        unpublished = await db.fetchval(
            "SELECT count(*) FROM tasks WHERE task_id = ANY($1::uuid[]) "
            "AND published_at IS NULL", [r.task_id for r in during])
        assert unpublished == len(during)   # accepted, not yet on the broker
        # the outage shows where an operator looks: the broker watch's gauge (the
        # SwitchyardBrokerUnreachable alert), one ERROR line saying so, and the Kafka
        # client's own complaints held to one line per kind per 10 s
        port = outage_settings.ingest_metrics_port
        await eventually(lambda: _reachable(port, 0.0), "broker_reachable 0", 30)
        await asyncio.to_thread(broker.start, 60.0)
        # (this broker keeps its topics in memory: ingest sees its state lost and exits to
        # be started again, crash-only, once it said the broker answers again)

        async def all_published() -> bool:
            return await db.fetchval(
                "SELECT count(*) FROM tasks WHERE task_id = ANY($1::uuid[]) "
                "AND published_at IS NOT NULL",
                [r.task_id for r in (before, *during)]) == 1 + len(during)
        await eventually(all_published, "every accepted task published once the broker is back",
                         120)
        log = Path(ingest_process.state_dir) / "logs" / "ingest.log"

        async def answered_again() -> list[dict]:
            lines = [json.loads(line) for line in log.read_text().splitlines()
                     if line.startswith("{")]
            return lines if any(e["msg"] == "the broker answers again" for e in lines) else []
        lines = await eventually(answered_again, "the broker watch saying it answers again", 60)
        said = [e for e in lines if e["msg"].startswith("the broker does not answer")]
        assert len(said) == 1 and said[0]["level"] == "ERROR", said
        noise = Counter((e["logger"], e["msg"].split(":")[0]) for e in lines
                        if e["logger"].startswith("aiokafka"))
        assert noise and max(noise.values()) <= 12, noise.most_common(3)
    finally:
        await channel.close()


async def test_a_broker_that_lost_its_state_has_its_unfinished_tasks_redriven_at_once(
        settings: Settings, broker: KafkaBroker, tmp_path: Path) -> None:
    """A whole-stack restart (or a broker restart) loses the records of every unfinished task;
    the reconciler notices the broker's new generation and re-drives them at once, not after
    SWITCHYARD_REDRIVE_AFTER_S (5 minutes, during which a task could say AWAITING_REVIEW with
    no review item anywhere, as an outside SRE found)."""
    own = settings.replace(
        postgres_schema=f"lost_{uuid.uuid4().hex[:8]}",  # only this test's tasks in play
        kafka_bootstrap_servers=broker.bootstrap_servers, ingest_metrics_port=free_port(),
        reconcile_interval_s=0.5, reconcile_after_s=1.0, redrive_after_s=300.0,
        broker_check_interval_s=0.0)  # ingest stays up; this test recreates the topics
    await bootstrap(own)   # topics (the broker's marker generation) and tables
    with running(own, tmp_path, ("ingest",)):
        channel = create_channel(f"127.0.0.1:{own.ingest_grpc_port}")
        pool = await create_pool(own)
        try:
            accepted = await IngestServiceStub(channel).SubmitTask(SubmitTaskRequest(
                submission=Submission(tenant_id="acme", idempotency_key=uuid.uuid4().hex,
                                      kind="invoice", document=Document(
                                          content_type="text/plain",
                                          body=b"Invoice 8 total 30.00 EUR"))), timeout=30)
            task_id = uuid.UUID(accepted.task_id)

            async def published_under_one_generation() -> bool:
                return bool(await pool.fetchval(
                    "SELECT published_at IS NOT NULL FROM tasks WHERE task_id = $1", task_id)
                    and await pool.fetchval("SELECT count(*) FROM ingest_broker_generations"))
            await eventually(published_under_one_generation, "the task published", 60)

            # nothing consumes it here: it stays QUEUED, unfinished, owned by no one. The
            # broker restarts (in memory: every record lost); the first service up after it
            # creates the topics, with a new generation
            await asyncio.to_thread(broker.stop)
            await asyncio.to_thread(broker.start, 60.0)
            await bootstrap(own)

            async def redriven() -> dict | None:
                detail = await pool.fetchval(
                    "SELECT detail FROM audit_log WHERE action = 'task.redriven' "
                    "AND task_id = $1", task_id)
                return json.loads(detail) if isinstance(detail, str) else detail
            detail = await eventually(redriven, "the task re-driven", 60)
            assert detail == {"status": "QUEUED", "stage": "INGESTED", "redrives": 1,
                              "broker_lost": True}, detail

            def replayed(records: list) -> bool:
                return any(TaskEnvelope.FromString(r.value).task_id == str(task_id)
                           and TaskEnvelope.FromString(r.value).source
                           == TaskSource.TASK_SOURCE_REPLAY for r in records)
            await read_topic(own, TASKS, replayed, timeout_s=60)   # on the new broker
            timeline = await IngestServiceStub(channel).GetTaskTimeline(
                GetTaskTimelineRequest(task_id=str(task_id)), timeout=30)
            assert any("the broker lost its state" in e.summary for e in timeline.entries), \
                [e.summary for e in timeline.entries]
            # once: the same broker does not make it go again
            await asyncio.sleep(2.0)
            assert await pool.fetchval("SELECT redrives FROM tasks WHERE task_id = $1",
                                       task_id) == 1
        finally:
            await pool.close()
            await channel.close()
