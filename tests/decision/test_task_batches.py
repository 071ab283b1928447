"""The decision service takes the tasks topic a batch at a time, on the real services.

Tasks are submitted through ingest while the decision service is held back, so a backlog
waits on the tasks topic; beside them the test writes a record that is not a task, a task
that does not exist and a second copy of a real task. Then the decision service starts and
takes the backlog in batches: every real task is decided exactly once, the two bad records go
to the dead-letter topic with their reason and bytes without holding up their batch, and the
audit chain (appended once per tenant per batch) still verifies.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from switchyard import Settings
from switchyard.audit import Entry, append, append_many, verify
from switchyard.messaging import TASKS, Producer
from switchyard.rpc import create_channel
from switchyard.runtime import service_specs
from switchyard.stack import EmbeddedStack
from switchyard.storage import create_pool
from switchyard.v1 import Document, IngestServiceStub, Submission, SubmitTasksRequest, TaskEnvelope
from tests.executor.harness import Service
from tests.observed import dead_letters, metric_sum
from tests.polling import eventually

pytestmark = [pytest.mark.integration]
HELDOUT = Path(__file__).resolve().parents[2] / "models" / "data" / "router_heldout.jsonl"
TENANT = "batchco"
BACKLOG = 60


@pytest.fixture(scope="module")
def settings(settings: Settings) -> Settings:
    return settings.replace(api_keys=f"sub:{TENANT}:submitter")


@pytest.fixture(scope="module")
def services(settings: Settings, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[EmbeddedStack]:
    """Ingest only: the decision service is started by the test, once its backlog waits."""
    stack = EmbeddedStack(settings, tmp_path_factory.mktemp("services"), components=(),
                          services=service_specs(settings, ("ingest",)))
    stack.start(timeout_s=90)
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def decider(settings: Settings, services: EmbeddedStack,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    service = Service("decision", settings, tmp_path_factory.mktemp("decision"))
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(settings)
    yield pool
    await pool.close()


def documents() -> list[bytes]:
    rows = [json.loads(line) for line in HELDOUT.read_text().splitlines()]
    return [r["text"].encode() for r in rows if len(r["text"]) > 200][:BACKLOG]


async def test_a_backlog_is_decided_in_batches_and_bad_records_are_set_aside(
        settings: Settings, decider: Service, db: asyncpg.Pool) -> None:
    channel = create_channel(f"127.0.0.1:{settings.ingest_grpc_port}", "sub")
    try:
        reply = await IngestServiceStub(channel).SubmitTasks(SubmitTasksRequest(submissions=[
            Submission(tenant_id=TENANT, idempotency_key=uuid.uuid4().hex,
                       document=Document(content_type="text/plain", body=body))
            for body in documents()]))
    finally:
        await channel.close()
    ids = [result.accepted.task_id for result in reply.results]
    assert len(ids) == BACKLOG and all(ids)

    garbage = b"\x00\x01 not a TaskEnvelope"
    nobody = TaskEnvelope(task_id=str(uuid.uuid4()), tenant_id=TENANT,
                          document=Document(content_type="text/plain", body=b"no such task"))
    again = TaskEnvelope(task_id=ids[0], tenant_id=TENANT,
                         document=Document(content_type="text/plain", body=documents()[0]))
    producer = Producer(settings)
    await producer.start()
    try:
        await producer.send_raw(TASKS.full_name(settings), b"garbage-1", garbage,
                                {"content-type": "application/json"})
        await producer.send(TASKS, nobody.task_id, nobody)
        await producer.send(TASKS, again.task_id, again)
    finally:
        await producer.stop()

    decider.start()

    async def all_decided() -> bool:
        return await db.fetchval(
            "SELECT count(*) FROM decisions WHERE task_id = ANY($1::uuid[]) "
            "AND source = 'MODEL'", [uuid.UUID(i) for i in ids]) == BACKLOG

    await eventually(all_decided, "every task of the backlog decided", timeout_s=120)
    letters = await dead_letters(settings, {b"garbage-1", nobody.task_id.encode()})
    assert letters[b"garbage-1"].reason_code == "unsupported_content_type"
    assert letters[b"garbage-1"].original_value == garbage
    unknown = letters[nobody.task_id.encode()]
    assert (unknown.reason_code, unknown.service) == ("unknown_task", "decision")
    assert TaskEnvelope.FromString(unknown.original_value) == nobody

    # exactly one decision each (the second copy of ids[0] was not decided again), and each
    # moved on from QUEUED once
    rows = await db.fetch(
        "SELECT t.task_id, t.status, (SELECT count(*) FROM decisions d WHERE d.task_id = "
        "t.task_id) AS decisions, (SELECT count(*) FROM task_status_history h WHERE "
        "h.task_id = t.task_id AND h.service = 'decision') AS moves FROM tasks t "
        "WHERE t.task_id = ANY($1::uuid[])", [uuid.UUID(i) for i in ids])
    assert len(rows) == BACKLOG
    assert all(r["decisions"] == 1 and r["moves"] == 1 and r["status"] != "QUEUED"
               for r in rows), [dict(r) for r in rows if r["decisions"] != 1 or r["moves"] != 1]

    # the backlog went through in batches: fewer handler calls than records
    port, topic = settings.decision_metrics_port, f'topic="{TASKS.full_name(settings)}"'
    records = metric_sum(port, "switchyard_stream_batch_records_sum", topic)
    batches = metric_sum(port, "switchyard_stream_batch_records_count", topic)
    assert records >= BACKLOG + 3
    assert 0 < batches < records

    async with db.acquire() as conn:
        entries = await conn.fetchval(
            "SELECT count(*) FROM audit_log WHERE tenant_id = $1 AND action = 'decision.made'",
            TENANT)
        checked = await verify(conn, TENANT)
    assert entries == BACKLOG
    assert checked.broken is None and checked.entries >= BACKLOG


async def test_one_append_of_many_entries_keeps_every_tenants_chain(db: asyncpg.Pool) -> None:
    tenants = [f"chain-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    async with db.acquire() as conn:
        await append(conn, tenants[0], "test", "before", {"n": 0}, writer="decision")
        entries = [Entry(tenants[i % 3], "test", "batched", {"n": i}) for i in range(10)]
        async with conn.transaction():
            hashes = await append_many(conn, entries, writer="decision")
        await append(conn, tenants[0], "test", "after", {"n": 11}, writer="decision")
        rows = await conn.fetch(
            "SELECT tenant_id, seq, entry_hash, detail FROM audit_log "
            "WHERE tenant_id = ANY($1::text[]) ORDER BY entry_id", tenants)
        checks = [await verify(conn, tenant) for tenant in tenants]
    assert len(set(hashes)) == 10
    assert [json.loads(r["detail"])["n"] for r in rows] == [0, *range(10), 11]
    for tenant in tenants:  # each chain numbered 1, 2, ... in the order appended
        seqs = [r["seq"] for r in rows if r["tenant_id"] == tenant]
        assert seqs == list(range(1, len(seqs) + 1))
    assert [r["entry_hash"] for r in rows[1:11]] == hashes
    assert all(c.broken is None for c in checks)
    assert [c.entries for c in checks] == [6, 3, 3]
