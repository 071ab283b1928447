"""The composite ceiling T*: what this machine does per second for the work no pipeline of
this design can skip, measured in the same run as the pipeline.

Each part is measured alone, at full speed, on the same machine and infrastructure:

* **inference**: Triton rows/s (the document router, client batches of 64, 4 in flight; the
  other models are small numpy models of the same kind, so a row of any counts the same);
* **database**: the rows an automated task writes, in the batched form the stream processors
  use (batches of 64 synthetic tasks, each stage one transaction): the task and its first
  history row (``ingest.store.accept_many``), its decision row and audit entry, two status
  changes with their history rows (``transition_many``), its job row started and finished,
  its executed steps and their audit entries (``write_step_records``), the review service's
  record of its ending. Tasks/s;
* **downstream**: HTTP calls/s to the demo downstream's invoice endpoint (32 in flight, the
  same aiohttp client and idempotency header as the executor);
* **hops**: the pass-through baseline's sustained tasks/s, from the same run (the processes,
  topics and framework with no work).

Per task, the units are what the pipeline's saturation phase actually used: Triton rows
(Triton's own inference counts, shadow scoring included) and downstream calls (the
downstream's ``calls`` table) per finished task. The ceiling is the rate at which one task's
share of each part adds up to one second of the machine:

    T* = 1 / (rows/task / rows/s + 1 / db tasks/s + calls/task / calls/s + 1 / hops/s)

Every part is measured on the whole machine, so the sum is what the machine does when one
task's unavoidable work runs end to end; what the pipeline does beyond T* (Python in each
service, per-record round trips, the review round trip, retries) is its overhead.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

import aiohttp
import asyncpg
from aiokafka import AIOKafkaConsumer
import tritonclient.grpc.aio as triton

from bench.decision_bench import raw_triton
from services.executor.jobs import JobStore
from services.executor.runner import StepRecord, write_step_records
from services.ingest import store
from switchyard import Settings
from switchyard.audit import Entry, append_many
from switchyard.messaging import (
    DEAD_LETTER,
    DECISIONS,
    ESCALATIONS,
    EXECUTIONS,
    INTAKE,
    TASK_STATUS,
    TASKS,
)
from switchyard.storage import create_pool, resolve_dsn
from switchyard.tasks import Move, transition_many
from switchyard.v1 import Document, TaskEnvelope, TaskSource

BATCH = 64
TENANT = "ceiling"


@dataclass
class Ceiling:
    """The parts' rates, the pipeline's units per task, and T* (tasks/s)."""

    triton_rows_per_s: float
    db_tasks_per_s: float
    downstream_calls_per_s: float
    hops_tasks_per_s: float  # 0: no baseline in this run (T* then leaves the hops out)
    rows_per_task: float
    calls_per_task: float
    tasks_per_s: float = 0.0
    seconds_per_task: dict[str, float] | None = None

    def __post_init__(self) -> None:
        parts = {
            "inference": self.rows_per_task / self.triton_rows_per_s
            if self.triton_rows_per_s else 0.0,
            "database": 1 / self.db_tasks_per_s if self.db_tasks_per_s else 0.0,
            "downstream": self.calls_per_task / self.downstream_calls_per_s
            if self.downstream_calls_per_s else 0.0,
            "hops": 1 / self.hops_tasks_per_s if self.hops_tasks_per_s else 0.0,
        }
        self.seconds_per_task = {k: round(v, 7) for k, v in parts.items()}
        total = sum(parts.values())
        self.tasks_per_s = round(1 / total, 1) if total else 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Units:
    """Triton rows and downstream calls between two snapshots (the saturation phase)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._before: tuple[int, int] = (0, 0)
        self.rows = self.calls = 0

    async def _snapshot(self) -> tuple[int, int]:
        client = triton.InferenceServerClient(self.settings.triton_url)
        try:
            stats = await client.get_inference_statistics(as_json=True)
        finally:
            await client.close()
        rows = sum(int(m.get("inference_count", 0)) for m in stats.get("model_stats", []))
        schema = f"{self.settings.postgres_schema}_downstream"
        conn = await asyncpg.connect(resolve_dsn(self.settings))
        try:
            calls = await conn.fetchval(f'SELECT count(*) FROM "{schema}".calls')
        except asyncpg.UndefinedTableError:
            calls = 0
        finally:
            await conn.close()
        return rows, int(calls)

    async def start(self) -> None:
        self._before = await self._snapshot()

    async def stop(self) -> None:
        rows, calls = await self._snapshot()
        self.rows, self.calls = rows - self._before[0], calls - self._before[1]


async def kafka_bytes(settings: Settings, quiet_s: float = 2.0) -> dict[str, int]:
    """Bytes (key, value and headers) on each of the pipeline's task-path topics, read from
    the beginning until nothing new arrives for ``quiet_s`` (the broker's end offsets are
    not trusted: see docs/architecture.md)."""
    names = {t.full_name(settings): t.name for t in (INTAKE, TASKS, TASK_STATUS, DECISIONS,
                                                      ESCALATIONS, EXECUTIONS, DEAD_LETTER)}
    consumer = AIOKafkaConsumer(*names, bootstrap_servers=settings.kafka_bootstrap_servers,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    totals = dict.fromkeys(names.values(), 0)
    await consumer.start()
    try:
        last = time.monotonic()
        while time.monotonic() - last < quiet_s:
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for records in batch.values():
                for record in records:
                    totals[names[record.topic]] += (
                        len(record.key or b"") + len(record.value or b"")
                        + sum(len(k) + len(v or b"") for k, v in record.headers))
                    last = time.monotonic()
    finally:
        await consumer.stop()
    return totals


def _envelope(index: int) -> TaskEnvelope:
    return TaskEnvelope(
        task_id=str(uuid.uuid4()), tenant_id=TENANT, idempotency_key=uuid.uuid4().hex,
        kind="invoice", source=TaskSource.TASK_SOURCE_GRPC,
        document=Document(content_type="text/plain",
                          body=f"Invoice INV-{index} total 100.00 EUR".encode()))


async def _one_batch(pool: asyncpg.Pool, index: int) -> None:
    """The rows of ``BATCH`` automated tasks, each stage one transaction, as the stream
    processors write them (two steps each, as an invoice's plan)."""
    envelopes = [_envelope(index * BATCH + i) for i in range(BATCH)]
    ids = [e.task_id for e in envelopes]
    async with pool.acquire() as conn:
        await store.accept_many(conn, [store.NewTask(e, hashlib.sha256(
            e.document.body).hexdigest()) for e in envelopes])
        await store.mark_published(pool, ids)
        async with conn.transaction():  # decision: decisions, status, audit
            await conn.execute(
                "INSERT INTO decisions (decision_id, task_id, tenant_id, source, outcome, "
                "confidence, rule, explanation, decision, pack) SELECT gen_random_uuid(), t, "
                "$2, 'MODEL', 'AUTO_EXECUTE', 0.9, 'confident_route', 'ok', '\\x00'::bytea, "
                "'invoice' FROM unnest($1::uuid[]) t", [uuid.UUID(i) for i in ids], TENANT)
            await transition_many(conn, [Move(i, "IN_PROGRESS", "EXECUTING", "confident_route")
                                         for i in ids], "decision")
            await append_many(conn, [Entry(TENANT, "decision", "decision.made", {"n": i}, i)
                                     for i in ids], writer="decision")
        decision_ids = [uuid.uuid4() for _ in ids]
        await conn.execute(  # executor: the jobs
            "INSERT INTO executor_jobs (decision_id, task_id, tenant_id, decision, state, "
            "deadline, owner) SELECT d, t, $3, '\\x00'::bytea, 'running', now() + interval "
            "'1 hour', 'ceiling' FROM unnest($1::uuid[], $2::uuid[]) AS j(d, t)",
            decision_ids, [uuid.UUID(i) for i in ids], TENANT)
        for step in ("1-post_invoice", "2-schedule_payment"):
            async with conn.transaction():
                await write_step_records(conn, [StepRecord(
                    uuid.UUID(i), step, f"{i}:{step}", "STEP_OUTCOME_SUCCEEDED", 1, "",
                    b"\x00", uuid.uuid4(), None,
                    Entry(TENANT, "executor", "step.executed", {"step_id": step}, i))
                    for i in ids])
        async with conn.transaction():  # the runs' ends
            await transition_many(conn, [Move(i, "SUCCEEDED", "DONE", "executed")
                                         for i in ids], "executor")
            await JobStore.finish_all(conn, [(str(d), "succeeded", "") for d in decision_ids])
        # review: a success is remembered by no row (only cancellations are: endings.py)


async def db_tasks_per_s(settings: Settings, seconds: float, in_flight: int = 4) -> float:
    """Synthetic automated tasks/s written as the stream processors write them."""
    pool = await create_pool(settings)
    done = 0
    try:
        await _one_batch(pool, 0)  # warm-up: plans cached, tables touched
        stop = time.perf_counter() + seconds
        started = time.perf_counter()
        counter = iter(range(1, 1 << 30))

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < stop:
                await _one_batch(pool, next(counter))
                done += BATCH

        await asyncio.gather(*(worker() for _ in range(in_flight)))
        return done / (time.perf_counter() - started)
    finally:
        await pool.close()


async def downstream_calls_per_s(settings: Settings, seconds: float,
                                 in_flight: int = 32) -> float:
    """HTTP calls/s to the demo downstream's invoice endpoint, each with its own key."""
    url = f"http://127.0.0.1:{settings.downstream_http_port}/erp/invoices"
    done = 0
    async with aiohttp.ClientSession() as session:
        stop = time.perf_counter() + seconds
        started = time.perf_counter()

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < stop:
                key = uuid.uuid4().hex
                async with session.post(url, json={"task": key, "total": "100.00"},
                                        headers={"Idempotency-Key": key}) as response:
                    await response.read()
                done += 1

        await asyncio.gather(*(worker() for _ in range(in_flight)))
        return done / (time.perf_counter() - started)


async def measure_parts(settings: Settings, texts: list[str], seconds: float = 5.0
                        ) -> dict[str, float]:
    """The rates of T*'s parts on ``settings``' running infrastructure (and downstream)."""
    rows = await raw_triton(settings.triton_url, texts, seconds)
    db = await db_tasks_per_s(settings, seconds)
    calls = await downstream_calls_per_s(settings, seconds)
    return {"triton_rows_per_s": round(rows, 1), "db_tasks_per_s": round(db, 1),
            "downstream_calls_per_s": round(calls, 1)}


__all__ = ["Ceiling", "Units", "db_tasks_per_s", "downstream_calls_per_s", "kafka_bytes",
           "measure_parts"]
