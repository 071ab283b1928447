"""Encryption at rest on the real stack: payload columns are sealed, the pipeline reads them,
keys rotate lazily and with ``switchyard keys rewrap``, and a blob moved to another row fails.

The tests run in order on one module's schema:

1. key ``k1`` active: a marked document goes through gRPC; ``tasks.envelope``,
   ``review_items.escalation`` and ``dead_letters.original_value`` hold SYE1 blobs without the
   marker, while GetTask returns the document and the task completes.
2. restart with ``k2`` active (``k1`` kept): old rows still open (a held task is decided from
   its sealed ``decision_holds`` row, a reviewer approves the k1 escalation, the executor runs
   it), reads re-wrap lazily, ``switchyard keys rewrap`` moves the rest and seals a plaintext
   row written before encryption was on.
3. ``k1`` removed: everything still opens; a blob copied onto another row fails, named.
"""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import grpc
import pytest
from confluent_kafka import Producer as KafkaProducer

from services.decision.holds import HoldRetrier
from services.ingest.domain import build_envelope, payload_sha256
from services.ingest.store import accept
from switchyard import Settings
from switchyard.messaging import INTAKE, Producer
from switchyard.rpc import create_channel
from switchyard.runtime import service_specs
from switchyard.stack import EmbeddedStack
from switchyard.storage import (
    DEAD_LETTER_VALUE,
    MAGIC,
    PLAINTEXT,
    REVIEW_ESCALATION,
    TASK_ENVELOPE,
    codec_for,
    connect,
    create_pool,
    key_id,
)
from switchyard.v1 import (
    ClaimRequest,
    Document,
    Escalation,
    GetTaskRequest,
    IngestServiceStub,
    ListQueueRequest,
    ListTasksRequest,
    ReviewServiceStub,
    ReviewVerdict,
    Submission,
    SubmitTaskRequest,
    SubmitVerdictRequest,
    TaskEnvelope,
    TaskSource,
    TaskStatus,
    Verdict,
)
from tests.decision.documents import sample
from tests.terminal import TERMINAL_STATUSES

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
K1, K2 = (base64.b64encode(os.urandom(32)).decode() for _ in range(2))
MARKER = "QUOKKA" + uuid.uuid4().hex[:12].upper().replace("0", "Q")
TENANT = "sealed"
COLUMNS = {"tasks": ("task_id", "envelope"), "review_items": ("item_id", "escalation"),
           "decision_holds": ("task_id", "envelope"),
           "dead_letters": ("dead_letter_id", "original_value")}


@pytest.fixture(scope="module")
def settings(settings: Settings) -> Settings:
    return settings.replace(encryption_keys=f"k1:{K1}", encryption_active_key="k1",
                            hold_retry_s=0.5)


@pytest.fixture(scope="module")
def state() -> dict[str, object]:
    """What one phase leaves for the next (the tests run in file order)."""
    return {}


@pytest.fixture(scope="module")
def rotated(settings: Settings) -> Settings:
    return settings.replace(encryption_keys=f"k1:{K1},k2:{K2}", encryption_active_key="k2")


@pytest.fixture(scope="module")
def retired(settings: Settings) -> Settings:
    return settings.replace(encryption_keys=f"k2:{K2}", encryption_active_key="k2")


def start(settings: Settings, tmp: Path, names: tuple[str, ...] | None = None
          ) -> EmbeddedStack:
    specs = service_specs(settings) if names is None else service_specs(settings, names)
    services = EmbeddedStack(settings, tmp, components=(), services=specs)
    services.start(timeout_s=90)
    return services


@pytest.fixture
async def conn(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    connection = await connect(settings)
    yield connection
    await connection.close()


async def stubs(settings: Settings) -> tuple[IngestServiceStub, ReviewServiceStub,
                                              list[grpc.aio.Channel]]:
    channels = [create_channel(f"127.0.0.1:{settings.ingest_grpc_port}"),
                create_channel(f"127.0.0.1:{settings.review_grpc_port}")]
    return IngestServiceStub(channels[0]), ReviewServiceStub(channels[1]), channels


def document(label: str) -> bytes:
    return f"{sample(label)}\nReference: {MARKER}\n".encode()


async def raw(conn: asyncpg.Connection, table: str, row_id: object) -> bytes:
    id_column, column = COLUMNS[table]
    blob = await conn.fetchval(f"SELECT {column} FROM {table} WHERE {id_column} = $1", row_id)
    assert blob is not None, f"no {table} row {row_id}"
    return bytes(blob)


def assert_sealed(blob: bytes, kid: str, what: str) -> None:
    assert blob.startswith(MAGIC), f"{what} is not encrypted: {blob[:40]!r}"
    assert MARKER.encode() not in blob, f"{what} holds the document in clear"
    assert key_id(blob) == kid, f"{what} is under {key_id(blob)}, expected {kid}"


async def approve_items(review: ReviewServiceStub, task_ids: set[str]) -> set[str]:
    """Approve open review items of these tasks; the task ids that were approved."""
    done = set()
    for item in (await review.ListQueue(ListQueueRequest(page_size=100))).items:
        if item.escalation.task_id in task_ids and not item.claimed_by:
            assert MARKER in item.escalation.task.document.body.decode(), "reviewer lost the body"
            await review.Claim(ClaimRequest(item_id=item.item_id, reviewer_id="rita"))
            await review.SubmitVerdict(SubmitVerdictRequest(verdict=ReviewVerdict(
                item_id=item.item_id, reviewer_id="rita", verdict=Verdict.VERDICT_APPROVE)))
            done.add(item.escalation.task_id)
    return done


async def progress(ingest: IngestServiceStub, task_ids: object) -> str:
    """Where the tasks are, for a failure message."""
    tasks = [(await ingest.GetTask(GetTaskRequest(task_id=t))).task for t in task_ids]
    return "; ".join(f"{t.envelope.task_id} {TaskStatus.Name(t.status)} {t.reason}"
                     for t in tasks)


async def status_of(ingest: IngestServiceStub, task_id: str) -> int:
    return (await ingest.GetTask(GetTaskRequest(task_id=task_id))).task.status


def run_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **settings.to_env()}
    return subprocess.run([sys.executable, "-m", "switchyard", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


async def test_payloads_are_sealed_and_the_pipeline_reads_them(
        settings: Settings, pipeline: EmbeddedStack, conn: asyncpg.Connection,
        state: dict[str, object]) -> None:
    ingest, review, channels = await stubs(settings)
    garbage = f"\xff not a submission {MARKER}".encode("latin-1")
    try:
        ids = {}
        # the ticket is submitted as an invoice: kind mismatch (or low confidence) -> review
        for label in ("invoice", "support_ticket"):
            ids[label] = (await ingest.SubmitTask(SubmitTaskRequest(submission=Submission(
                tenant_id=TENANT, idempotency_key=uuid.uuid4().hex, kind="invoice",
                document=Document(content_type="text/plain", body=document(label)))))).task_id
        producer = KafkaProducer({"bootstrap.servers": settings.kafka_bootstrap_servers})
        producer.produce(INTAKE.full_name(settings), key=b"bad", value=garbage,
                         headers=[("content-type", b"application/json")])
        assert producer.flush(10) == 0

        # (b) the API returns the document intact, one at a time and listed
        got = (await ingest.GetTask(GetTaskRequest(task_id=ids["invoice"]))).task
        assert got.envelope.document.body == document("invoice")
        listed = (await ingest.ListTasks(ListTasksRequest(tenant_id=TENANT))).tasks
        assert {t.envelope.task_id: t.envelope.document.body for t in listed} == \
            {ids[label]: document(label) for label in ids}

        # the invoice completes (approved if it is escalated); the ticket waits in review
        ticket_in_review = False
        deadline = time.monotonic() + 150
        while (not ticket_in_review
               or await status_of(ingest, ids["invoice"]) not in TERMINAL_STATUSES):
            assert time.monotonic() < deadline, await progress(ingest, ids.values())
            await approve_items(review, {ids["invoice"]})
            items = (await review.ListQueue(ListQueueRequest(page_size=100))).items
            ticket_in_review = any(i.escalation.task_id == ids["support_ticket"] for i in items)
            await asyncio.sleep(0.3)
        invoice = (await ingest.GetTask(GetTaskRequest(task_id=ids["invoice"]))).task
        assert invoice.status == TaskStatus.TASK_STATUS_SUCCEEDED, invoice.reason

        # (a) what PostgreSQL holds is ciphertext under k1
        for label, task_id in ids.items():
            assert_sealed(await raw(conn, "tasks", uuid.UUID(task_id)), "k1", f"{label} task")
        item_id = await conn.fetchval("SELECT item_id FROM review_items WHERE task_id = $1",
                                      uuid.UUID(ids["support_ticket"]))
        assert_sealed(await raw(conn, "review_items", item_id), "k1", "review item")
        letter = None
        while letter is None:
            assert time.monotonic() < deadline, "the bad intake record was not dead-lettered"
            letter = await conn.fetchrow(
                "SELECT dead_letter_id, original_value FROM dead_letters WHERE service = "
                "'ingest'")
            await asyncio.sleep(0.2)
        assert_sealed(bytes(letter["original_value"]), "k1", "dead letter")
        assert codec_for(settings).open(letter["dead_letter_id"], letter["original_value"],
                                        DEAD_LETTER_VALUE) == garbage
    finally:
        for channel in channels:
            await channel.close()
    pipeline.stop()  # phase 2 restarts the services with a rotated key
    state.update(ids=ids, item_id=item_id, dead_letter_id=letter["dead_letter_id"])


async def seed_offline_rows(settings: Settings, conn: asyncpg.Connection
                            ) -> tuple[str, str]:
    """While the services are down: a plaintext task written as before encryption was on, and
    a task held for the models under k1 (its hold is due at once, so the restarted decision
    service decides it from the sealed row)."""
    plain = Submission(tenant_id=TENANT, idempotency_key=uuid.uuid4().hex, kind="other",
                       document=Document(body=f"legacy {MARKER}".encode()))
    legacy = build_envelope(plain, str(uuid.uuid4()), TaskSource.TASK_SOURCE_GRPC)
    await accept(conn, legacy, payload_sha256(plain), codec=PLAINTEXT)
    await conn.execute("UPDATE tasks SET status = 'SUCCEEDED', stage = 'DONE', "
                       "published_at = now() WHERE task_id = $1", uuid.UUID(legacy.task_id))

    held = Submission(tenant_id=TENANT, idempotency_key=uuid.uuid4().hex, kind="invoice",
                      document=Document(content_type="text/plain", body=document("invoice")))
    envelope = build_envelope(held, str(uuid.uuid4()), TaskSource.TASK_SOURCE_GRPC)
    await accept(conn, envelope, payload_sha256(held), codec=codec_for(settings))
    await conn.execute("UPDATE tasks SET published_at = now() WHERE task_id = $1",
                       uuid.UUID(envelope.task_id))
    pool = await create_pool(settings.replace(postgres_pool_min=1, postgres_pool_max=2))
    producer = Producer(settings)
    await producer.start()
    try:
        holds = HoldRetrier(pool, producer, None, None, 0.1,  # type: ignore[arg-type]
                            codec=codec_for(settings))
        await holds.hold(envelope, "test: models were away")
    finally:
        await producer.stop()
        await pool.close()
    assert_sealed(await raw(conn, "decision_holds", uuid.UUID(envelope.task_id)), "k1", "hold")
    assert await raw(conn, "tasks", uuid.UUID(legacy.task_id)) == legacy.SerializeToString()
    return legacy.task_id, envelope.task_id


async def test_rotation_reads_old_rows_and_rewraps_them(
        settings: Settings, rotated: Settings, conn: asyncpg.Connection,
        state: dict[str, object], tmp_path: Path) -> None:
    ids: dict[str, str] = state["ids"]  # type: ignore[assignment]
    legacy_id, held_id = await seed_offline_rows(settings, conn)
    services = start(rotated, tmp_path)
    ingest, review, channels = await stubs(rotated)
    try:
        # old rows open under the new configuration; plaintext ones too
        legacy = (await ingest.GetTask(GetTaskRequest(task_id=legacy_id))).task
        assert legacy.envelope.document.body == f"legacy {MARKER}".encode()
        invoice = (await ingest.GetTask(GetTaskRequest(task_id=ids["invoice"]))).task
        assert invoice.envelope.document.body == document("invoice")
        # lazy rotation: that read re-wrapped the row (data key only) under k2
        assert_sealed(await raw(conn, "tasks", uuid.UUID(ids["invoice"])), "k2", "read task")

        # the decision service decides the held task from its k1-sealed hold; the reviewer
        # gets the k1 escalation; the executor runs both from their k1 task rows
        open_ids = {ids["support_ticket"], held_id}
        deadline = time.monotonic() + 150
        while open_ids:
            assert time.monotonic() < deadline, await progress(ingest, open_ids)
            await approve_items(review, open_ids)
            for task_id in list(open_ids):
                if await status_of(ingest, task_id) in TERMINAL_STATUSES:
                    open_ids.discard(task_id)
            await asyncio.sleep(0.3)
        for task_id in (ids["support_ticket"], held_id):
            task = (await ingest.GetTask(GetTaskRequest(task_id=task_id))).task
            assert task.status == TaskStatus.TASK_STATUS_SUCCEEDED, task.reason
        assert not await conn.fetchval("SELECT count(*) FROM decision_holds")
    finally:
        for channel in channels:
            await channel.close()
        services.stop()

    before = run_cli(rotated, "keys", "status")
    assert before.returncode == 0 and "k1=" in before.stdout, before.stdout + before.stderr
    done = run_cli(rotated, "keys", "rewrap", "--batch", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "review_items.escalation" in done.stdout and "unreadable 0" in done.stdout
    after = run_cli(rotated, "keys", "status")
    assert "k1=" not in after.stdout and "(plaintext)" not in after.stdout, after.stdout
    for table, (id_column, column) in COLUMNS.items():
        for row in await conn.fetch(f"SELECT {id_column} AS id, {column} AS blob FROM {table} "
                                    f"WHERE {column} IS NOT NULL"):
            assert key_id(bytes(row["blob"])) == "k2", f"{table} {row['id']} not re-wrapped"
    assert codec_for(rotated).open(legacy_id, await raw(conn, "tasks", uuid.UUID(legacy_id)),
                                   TASK_ENVELOPE) == legacy.envelope.SerializeToString()
    state.update(legacy_id=legacy_id, held_id=held_id)


async def test_retired_key_is_not_needed_and_moved_blobs_fail(
        retired: Settings, conn: asyncpg.Connection, state: dict[str, object],
        tmp_path: Path) -> None:
    ids: dict[str, str] = state["ids"]  # type: ignore[assignment]
    codec = codec_for(retired)
    item = await conn.fetchrow("SELECT item_id, escalation FROM review_items WHERE item_id = $1",
                               state["item_id"])
    escalation = codec.open(item["item_id"], item["escalation"], REVIEW_ESCALATION)
    assert MARKER.encode() in escalation
    services = start(retired, tmp_path, ("ingest",))
    ingest, _, channels = await stubs(retired)
    try:
        for task_id in (*ids.values(), state["legacy_id"], state["held_id"]):
            task = (await ingest.GetTask(GetTaskRequest(task_id=task_id))).task
            assert MARKER.encode() in task.envelope.document.body

        # (d) a valid blob copied onto another row does not open there
        ticket_blob = await raw(conn, "tasks", uuid.UUID(ids["support_ticket"]))
        await conn.execute(
            "UPDATE tasks SET envelope = (SELECT envelope FROM tasks WHERE task_id = $1) "
            "WHERE task_id = $2", uuid.UUID(ids["invoice"]), uuid.UUID(ids["support_ticket"]))
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await ingest.GetTask(GetTaskRequest(task_id=ids["support_ticket"]))
        assert failure.value.code() == grpc.StatusCode.DATA_LOSS
        assert f"tasks.envelope of {ids['support_ticket']}" in failure.value.details()
        assert "authentication" in failure.value.details()
        assert MARKER not in failure.value.details()
        # the service is fine otherwise
        assert (await ingest.GetTask(GetTaskRequest(task_id=ids["invoice"]))).task.envelope \
            .document.body == document("invoice")
        await conn.execute("UPDATE tasks SET envelope = $2 WHERE task_id = $1",
                           uuid.UUID(ids["support_ticket"]), ticket_blob)
    finally:
        for channel in channels:
            await channel.close()
        services.stop()

    # retention opens, strips and re-seals: no body left, still ciphertext under the active key
    purged = subprocess.run(
        [sys.executable, "-m", "switchyard", "purge"], cwd=ROOT, capture_output=True,
        text=True, timeout=120, env={**os.environ, **retired.to_env(),
                                     "SWITCHYARD_RETENTION_DAYS": "0"})
    assert "purged payloads of 4 task(s)" in purged.stdout, purged.stdout + purged.stderr
    for task_id in (*ids.values(), state["legacy_id"], state["held_id"]):
        blob = await raw(conn, "tasks", uuid.UUID(task_id))
        assert key_id(blob) == "k2"
        assert not TaskEnvelope.FromString(codec.open(task_id, blob)).document.body
    for item in await conn.fetch("SELECT item_id, escalation FROM review_items"):
        blob = bytes(item["escalation"])
        assert key_id(blob) == "k2" and not Escalation.FromString(
            codec.open(item["item_id"], blob, REVIEW_ESCALATION)).task.document.body
