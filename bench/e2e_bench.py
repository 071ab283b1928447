"""End-to-end benchmark on the embedded stack, reported as a ratio of a pass-through baseline.

``python -m bench.e2e_bench [--tasks N] [--quick] [--profile]`` starts the embedded broker,
PostgreSQL and Triton once, then pushes the same seeded workload through two pipelines in
turn, on the same machine in the same run:

- baseline: ``bench.passthrough`` processes on the same topics and hops (gRPC and Kafka
  intake, tasks, decisions, escalations, executions, status), doing no model, database or
  downstream work;
- switchyard: the four real services (model, database, policy, audit trail, execution,
  review) and the demo downstream.

The workload is seeded and drawn from the router's held-out documents (every type): 20% are
escalated (any document submitted under a kind the router disagrees with, so a person has to
look), 10% are invalid (refused at the door), and the other 70% are documents the decision
service decides alone (auto-execute or reject) under their own kind: at start the real
service's ``Decide`` is asked about each held-out document (nothing stored), so that share is
automated by construction instead of by luck (without this, low-confidence routes, unknown
vendors and repeated invoice numbers escalate about half of all tasks). Invoices drawn twice
get fresh invoice numbers, so a repeat is not a duplicate invoice. 20% of the valid tasks
arrive through the Kafka intake topic as JSON instead of gRPC ``SubmitTasks``. Each pipeline
runs three phases:

1. warm-up (not reported);
2. saturation: the workload offered faster than the pipeline can go (``--rate``), with at
   most ``--max-backlog`` (1,000) sent tasks unfinished at once, so the queues stay bounded
   and its latency is what a task waits behind that backlog; the *sustained* rate is the completion rate between the 10th and 90th percentile completion
   (steady state, without the start-up ramp and the review tail), and *whole* is every
   completion over the span from the first submission to the last completion;
3. latency: a second workload offered at half the sustained rate, with end-to-end latency
   (submission sent -> terminal status event on the task-status topic) reported separately for
   automated tasks and for escalated ones (which include a review round trip).

**The reviewer is a bot** (claims and approves whatever is pending, over the real
ReviewService gRPC API). A bot does not need protecting from an escalation storm, so the
review admission throttle, which by default lets 5 items/s per tenant and 10/s per queue reach
people, is switched off for this benchmark (``review_tenant_rate=0``, ``review_queue_rate=0``);
the JSON records it under ``settings_changed``. With the defaults the escalated 20% would
drain at 10/s and the benchmark would measure the throttle, not the pipeline.

After the real pipeline's phases, with its services idle, the parts of the composite ceiling
T* are measured on the same machine and infrastructure (``bench/ceiling.py``: Triton rows/s, the
rows an automated task writes replayed in batches through asyncpg, the downstream's calls/s,
and the baseline's hops); the pipeline's sustained rate is reported as a share of T*, with the
Triton rows and downstream calls a task took in the saturation phase.

``--profile`` records every service with py-spy during the saturation phase and writes the
collapsed stacks and a per-service summary next to the JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import grpc
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench._common import (
    RESULTS,
    ROOT,
    CpuMeter,
    PgStats,
    Pipeline,
    Profiler,
    infra_pids,
    infrastructure,
    isolated,
    percentile_ms,
    print_table,
    quick_mode,
    setting_changes,
    write_json,
)
from bench.ceiling import Ceiling, Units, kafka_bytes, measure_parts
from bench.passthrough import ROUTE_KEY, task_id_for
from switchyard import Settings
from switchyard.messaging import INTAKE, TASK_STATUS
from switchyard.runtime import service_specs
from switchyard.stack import ServiceSpec
from switchyard.storage import connect, resolve_dsn
from switchyard.tasks import TERMINAL, status_name
from switchyard_packs.invoice.extraction import extract_invoice
from switchyard.v1 import (
    ClaimRequest,
    ClaimResponse,
    DecideRequest,
    DecideResponse,
    DecisionOutcome,
    Document,
    ListQueueRequest,
    ListQueueResponse,
    ReviewState,
    ReviewVerdict,
    StatusEvent,
    Submission,
    SubmitTasksRequest,
    SubmitTasksResponse,
    SubmitVerdictRequest,
    TaskEnvelope,
    Verdict,
)

HELDOUT = ROOT / "models" / "data" / "router_heldout.jsonl"
MISMATCH = {"invoice": "support_ticket", "admission_form": "invoice",
            "support_ticket": "invoice", "classroom_event": "invoice", "other": "invoice"}
SUBMIT_TASKS = "/switchyard.v1.IngestService/SubmitTasks"
DECIDE = "/switchyard.v1.DecisionService/Decide"
LIST_QUEUE = "/switchyard.v1.ReviewService/ListQueue"
CLAIM = "/switchyard.v1.ReviewService/Claim"
SUBMIT_VERDICT = "/switchyard.v1.ReviewService/SubmitVerdict"
#: The bench's reviewer is a machine: no admission throttle protects it (see the module doc).
#: What the end-to-end and scaling runs change (recorded in their JSON): the review throttle
#: off (above), and the shadow router scoring a 10% sample of the documents, as a deployment
#: measuring agreement without paying for a second model on every task would run it.
PIPELINE_BENCH_SETTINGS = {"review_tenant_rate": 0.0, "review_queue_rate": 0.0,
                      "router_shadow_sample": 0.1}
CHUNK = 50
#: The tenants a workload's items take in turn.
TENANTS = ("tenant-0", "tenant-1", "tenant-2", "tenant-3")
#: Stop waiting for stragglers when nothing finished for this long (they count as missing).
STALL_S = 30.0
#: py-spy summaries of the saturation phase, by pipeline and service (``--profile``).
saturation_profile: dict[str, dict[str, Any]] = {}


# -- workload ---------------------------------------------------------------------------

@dataclass
class Item:
    tenant_id: str
    key: str
    submission: Submission
    via_kafka: bool
    escalate: bool
    invalid: bool
    intake_json: bytes = b""


@dataclass
class Pool:
    """The held-out documents, and which of them the decision service decides on its own
    (auto-execute or reject) when submitted under their true kind."""

    docs: list[dict[str, str]]
    automated: list[int]


def load_docs() -> list[dict[str, str]]:
    """The held-out documents of the types the bench's mix is made of (``MISMATCH``'s keys):
    a hospital admission's plan waits on the payer and bed board, which this workload does not
    seed, so admissions are measured by the demo and chaos runs instead."""
    docs = (json.loads(line) for line in HELDOUT.read_text().splitlines())
    return [doc for doc in docs if doc["label"] in MISMATCH]


def unique_invoice(text: str, index: int) -> str:
    """The invoice with its number's digits replaced by ones unique to ``index``: drawing the
    same held-out invoice twice must not make a duplicate invoice (which is escalated)."""
    number = extract_invoice(text).get("invoice_number") or ""
    digits = [c for c in number if c.isdigit()]
    if len(digits) < 4:
        return text
    fresh = iter(str(index).zfill(len(digits))[-len(digits):])
    renumbered = "".join(next(fresh) if c.isdigit() else c for c in number)
    return text.replace(number, renumbered)


def workload(count: int, seed: int, pool: Pool, kafka_share: float = 0.2,
             tag: str = "", tenants: Sequence[str] = TENANTS) -> list[Item]:
    """A seeded mix: 20% escalated (any document under a kind the router disagrees with),
    10% invalid, 70% documents the decision service decides alone; ``kafka_share`` of the
    valid ones arrive through the intake topic. Items take ``tenants`` in turn (the
    isolation benchmark gives each tenant a workload of its own)."""
    rng = random.Random(seed)
    items = []
    for index in range(count):
        roll = rng.random()
        escalate, invalid = roll < 0.2, 0.2 <= roll < 0.3
        doc = pool.docs[rng.choice(pool.automated) if not (escalate or invalid)
                        else rng.randrange(len(pool.docs))]
        kind = MISMATCH[doc["label"]] if escalate else doc["label"]
        key = f"bench-{tag}{seed}-{index}"
        tenant = tenants[index % len(tenants)]
        text = doc["text"]
        if doc["label"] == "invoice":
            text = unique_invoice(text, seed * 1_000_000 + index)
        document = Document(content_type="text/plain", body=text.encode())
        if invalid:
            document = Document(content_type="application/json", body=b'{"total": ')
        metadata = {ROUTE_KEY: "review"} if escalate else {}
        item = Item(tenant, key, Submission(tenant_id=tenant, idempotency_key=key, kind=kind,
                                            document=document, metadata=metadata),
                    via_kafka=not invalid and rng.random() < kafka_share,
                    escalate=escalate, invalid=invalid)
        if item.via_kafka:
            item.intake_json = json.dumps({
                "tenant_id": tenant, "idempotency_key": key, "kind": kind, "metadata": metadata,
                "document": {"content_type": "text/plain", "body": text}}).encode()
        items.append(item)
    return items


async def calibrate(settings: Settings, docs: list[dict[str, str]]) -> Pool:
    """Ask the real decision service (``Decide``, nothing stored) about every document under
    its true kind; the ones it auto-executes or rejects make the workload's automated 70%."""
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{settings.decision_grpc_port}")
    decide = channel.unary_unary(DECIDE, DecideRequest.SerializeToString,
                                 DecideResponse.FromString)
    slots = asyncio.Semaphore(32)
    automatic = {DecisionOutcome.DECISION_OUTCOME_AUTO_EXECUTE,
                 DecisionOutcome.DECISION_OUTCOME_REJECT}

    async def one(index: int, doc: dict[str, str]) -> int | None:
        async with slots:
            text = unique_invoice(doc["text"], index) if doc["label"] == "invoice" \
                else doc["text"]
            reply = await decide(DecideRequest(task=TaskEnvelope(
                task_id=str(uuid.uuid4()), tenant_id="tenant-0", kind=doc["label"],
                document=Document(content_type="text/plain", body=text.encode()))),
                timeout=60)
        return index if reply.decision.outcome in automatic else None

    try:
        found = await asyncio.gather(*(one(i, d) for i, d in enumerate(docs)))
    finally:
        await channel.close()
    return Pool(docs, [i for i in found if i is not None])


# -- observers ---------------------------------------------------------------------------

class StatusWatch:
    """Terminal status events on the task-status topic, with the time each was first seen."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.done: dict[str, tuple[float, str]] = {}
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            TASK_STATUS.full_name(self.settings),
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            auto_offset_reset="earliest", enable_auto_commit=False, fetch_max_wait_ms=100,
            max_partition_fetch_bytes=4 * 1024 * 1024)
        await self._consumer.start()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while not self._stop.is_set():
            batches = await self._consumer.getmany(timeout_ms=100, max_records=10000)
            now = time.perf_counter()
            for records in batches.values():
                for record in records:
                    event = StatusEvent.FromString(record.value)
                    status = status_name(event.status)
                    if status in TERMINAL and event.task_id not in self.done:
                        self.done[event.task_id] = (now, status)

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()


class ReviewerBot:
    """Claims and approves every pending review item, over the real gRPC API, with a few
    verdicts in flight at once (one reviewer id per claim, as a team of people would)."""

    def __init__(self, ports: Sequence[int], in_flight: int = 16) -> None:
        self.channels = [grpc.aio.insecure_channel(f"127.0.0.1:{p}") for p in ports]
        self.in_flight = in_flight
        self.approved = 0
        self.errors = 0
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run(c, i)) for i, c in enumerate(self.channels)]

    async def _run(self, channel: grpc.aio.Channel, replica: int) -> None:
        list_queue = channel.unary_unary(LIST_QUEUE, ListQueueRequest.SerializeToString,
                                         ListQueueResponse.FromString)
        claim = channel.unary_unary(CLAIM, ClaimRequest.SerializeToString,
                                    ClaimResponse.FromString)
        verdict = channel.unary_unary(SUBMIT_VERDICT, SubmitVerdictRequest.SerializeToString,
                                      lambda b: b)
        slots = asyncio.Semaphore(self.in_flight)
        busy: set[str] = set()

        async def approve(item_id: str) -> None:
            reviewer = f"bot-{replica}-{item_id[:8]}"
            try:
                await claim(ClaimRequest(item_id=item_id, reviewer_id=reviewer), timeout=30)
                await verdict(SubmitVerdictRequest(verdict=ReviewVerdict(
                    item_id=item_id, reviewer_id=reviewer, verdict=Verdict.VERDICT_APPROVE)),
                    timeout=30)
                self.approved += 1
            except grpc.aio.AioRpcError:  # raced with the other replica's bot: next round
                self.errors += 1
            finally:
                busy.discard(item_id)
                slots.release()

        while not self._stop.is_set():
            try:
                page = await list_queue(ListQueueRequest(
                    page_size=100, states=[ReviewState.REVIEW_STATE_PENDING]), timeout=30)
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.2)
                continue
            fresh = [i.item_id for i in page.items if i.item_id not in busy and not i.claimed_by]
            for item_id in fresh:
                await slots.acquire()
                busy.add(item_id)
                asyncio.create_task(approve(item_id))
            if not fresh:
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for channel in self.channels:
            await channel.close()


# -- one phase ---------------------------------------------------------------------------

@dataclass
class Phase:
    pipeline: str
    phase: str
    offered_rate: float
    sent: int
    accepted: int
    refused: int
    completed: int
    missing: int
    sustained_tasks_per_s: float
    whole_tasks_per_s: float
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    escalated: int = 0
    cpu_ms_per_task: dict[str, float] = field(default_factory=dict)
    cores_busy: dict[str, float] = field(default_factory=dict)
    busy_retries: int = 0
    database: dict[str, Any] = field(default_factory=dict)
    decision_rules: dict[str, int] = field(default_factory=dict)
    units_per_task: dict[str, float] = field(default_factory=dict)


Resolver = Callable[[list[Item]], Awaitable[dict[str, str]]]
Classifier = Callable[[list[Item], dict[str, str]], Awaitable[set[str]]]


class Target:
    """How the benchmark talks to one pipeline: gRPC ingest replicas, Kafka intake, status
    topic, and how it names intake tasks and tells escalated tasks apart afterwards."""

    def __init__(self, name: str, settings: Settings, ingest_ports: Sequence[int],
                 review_ports: Sequence[int], resolve: Resolver, classify: Classifier) -> None:
        self.name = name
        self.settings = settings
        self.ingest_ports = list(ingest_ports)
        self.review_ports = list(review_ports)
        self.resolve = resolve
        self.classify = classify
        self.pg_stats: PgStats | None = None
        self.units: Units | None = None  # T*'s units per task (switchyard)
        self.rules: dict[str, int] = {}  # decision rules of the last phase (switchyard)


def lifecycle_stats(items: list[Item], sent_at: dict[str, float], ids: dict[str, str],
                    done: dict[str, tuple[float, str]], escalated: set[str]) -> dict[str, Any]:
    latencies: dict[str, list[float]] = {"all": [], "automated": [], "escalated": []}
    for item in items:
        task_id = ids.get(item.key)
        if task_id is None or task_id not in done or item.key not in sent_at:
            continue
        latency = done[task_id][0] - sent_at[item.key]
        latencies["all"].append(latency)
        latencies["escalated" if task_id in escalated else "automated"].append(latency)
    return {path: {"n": len(values), "p50": percentile_ms(values, 0.50),
                   "p95": percentile_ms(values, 0.95), "p99": percentile_ms(values, 0.99)}
            for path, values in latencies.items()}


async def await_finished(target: Target, watch: StatusWatch, ids: dict[str, str],
                         kafka_items: Sequence[Item], timeout_s: float) -> None:
    """Wait until every accepted task (``ids``, which gains the intake items' task ids as
    ingest creates them) is terminal on the status topic, or ``timeout_s`` is up, or nothing
    finished for ``STALL_S`` (what is left counts as missing)."""
    deadline = time.monotonic() + timeout_s
    progress = (-1, time.monotonic())
    while time.monotonic() < deadline:
        unresolved = [i for i in kafka_items if i.key not in ids]
        if unresolved:
            ids.update(await target.resolve(unresolved))
        expected = len(ids) + len([i for i in kafka_items if i.key not in ids])
        finished = sum(1 for t in ids.values() if t in watch.done)
        if finished >= expected:
            break
        if finished != progress[0]:
            progress = (finished, time.monotonic())
        elif time.monotonic() - progress[1] > STALL_S:  # nothing finishes any more
            break
        await asyncio.sleep(0.5)


async def run_phase(target: Target, watch: StatusWatch, items: list[Item], rate: float,
                    phase: str, timeout_s: float, meter: CpuMeter | None = None,
                    profiler: Profiler | None = None, max_backlog: int = 0) -> Phase:
    """Offer ``items`` at ``rate`` tasks/s, wait for every accepted task to finish.

    ``max_backlog`` (0: none) holds the offer back while that many sent tasks are unfinished,
    so that at saturation the queues stay bounded and latency says what a task waits for
    behind that backlog, not how long the run was."""
    settings = target.settings
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{p}") for p in target.ingest_ports]
    submits = [c.unary_unary(SUBMIT_TASKS, lambda b: b, SubmitTasksResponse.FromString)
               for c in channels]
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all",
                                enable_idempotence=False, linger_ms=5)
    await producer.start()
    bot = ReviewerBot(target.review_ports) if target.review_ports else None
    if bot is not None:
        bot.start()
    sent_at: dict[str, float] = {}
    ids: dict[str, str] = {}
    refused = busy_retries = 0
    intake = INTAKE.full_name(settings)
    # requests serialised before the clock starts: the generator shares the CPUs
    chunks = [items[i:i + CHUNK] for i in range(0, len(items), CHUNK)]
    bodies = [SubmitTasksRequest(submissions=[i.submission for i in c if not i.via_kafka])
              .SerializeToString() for c in chunks]
    in_flight: set[asyncio.Task[None]] = set()

    async def submit(chunk: list[Item], body: bytes, index: int) -> None:
        nonlocal refused, busy_retries
        grpc_items = [i for i in chunk if not i.via_kafka]
        while True:
            now = time.perf_counter()
            try:
                response = await submits[index % len(submits)](body, timeout=60)
                break
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                    raise
                busy_retries += 1
                await asyncio.sleep(0.2)
        for item, result in zip(grpc_items, response.results):
            if result.HasField("accepted"):
                sent_at[item.key] = now
                ids[item.key] = result.accepted.task_id
            else:
                refused += 1

    pg_stats = target.pg_stats if meter is not None else None
    if pg_stats is not None:
        await pg_stats.start()
    units = target.units if meter is not None else None
    if units is not None:
        await units.start()
    if meter is not None:
        meter.start()
    if profiler is not None:
        profiler.start()
    begin = time.perf_counter()
    finished_before = len(watch.done)
    for index, (chunk, body) in enumerate(zip(chunks, bodies)):
        target_at = begin + index * CHUNK / rate
        if (delay := target_at - time.perf_counter()) > 0:
            await asyncio.sleep(delay)
        while max_backlog and len(sent_at) - (len(watch.done) - finished_before) > max_backlog:
            await asyncio.sleep(0.02)
        for item in chunk:
            if item.via_kafka:
                await producer.send(intake, key=item.key.encode(), value=item.intake_json,
                                    headers=[("content-type", b"application/json")])
                sent_at[item.key] = time.perf_counter()
        if any(not i.via_kafka for i in chunk):
            task = asyncio.create_task(submit(chunk, body, index))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        if len(in_flight) > 8:  # a bounded number of calls outstanding, like real clients
            await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
    await asyncio.gather(*in_flight)
    await producer.flush()
    kafka_items = [i for i in items if i.via_kafka]
    await await_finished(target, watch, ids, kafka_items, timeout_s)
    if meter is not None:
        meter.stop()
    if profiler is not None:
        saturation_profile[target.name] = profiler.stop()
    if bot is not None:
        await bot.stop()
    await producer.stop()
    for channel in channels:
        await channel.close()
    task_ids = [t for t in ids.values() if t in watch.done]
    times = sorted(watch.done[t][0] for t in task_ids)
    escalated = await target.classify(items, ids)
    statuses: dict[str, int] = {}
    for t in task_ids:
        statuses[watch.done[t][1]] = statuses.get(watch.done[t][1], 0) + 1
    sustained = whole = 0.0
    if len(times) >= 10:
        lo, hi = int(0.1 * len(times)), int(0.9 * len(times))
        if times[hi] > times[lo]:
            sustained = (hi - lo) / (times[hi] - times[lo])
    if times:
        whole = len(times) / max(1e-6, times[-1] - begin)
    accepted = len(ids) + len([i for i in kafka_items if i.key not in ids])
    result = Phase(
        target.name, phase, rate, len(items), accepted, refused, len(task_ids),
        accepted - len(task_ids), round(sustained, 1), round(whole, 1),
        lifecycle_stats(items, sent_at, ids, watch.done, escalated), statuses,
        len(escalated), busy_retries=busy_retries)
    if meter is not None and task_ids:
        result.cpu_ms_per_task = meter.per_item_ms(len(task_ids))
        result.cores_busy = meter.utilisation()
    if pg_stats is not None:
        result.database = await pg_stats.stop(len(task_ids))
    if units is not None:
        await units.stop()
        result.units_per_task = {
            "triton_rows": round(units.rows / len(task_ids), 3) if task_ids else 0.0,
            "downstream_calls": round(units.calls / len(task_ids), 3) if task_ids else 0.0}
    result.decision_rules = dict(target.rules)
    return result


# -- pipelines ---------------------------------------------------------------------------

def passthrough_specs(settings: Settings) -> list[ServiceSpec]:
    return [ServiceSpec(role, [sys.executable, "-m", "bench.passthrough", role],
                        health_port=getattr(settings, f"{role}_grpc_port"))
            for role in ("ingest", "decision", "review", "executor")]


def baseline_target(settings: Settings) -> Target:
    async def resolve(items: list[Item]) -> dict[str, str]:
        return {i.key: task_id_for(i.tenant_id, i.key) for i in items}

    async def classify(items: list[Item], ids: dict[str, str]) -> set[str]:
        # the pass-through routes by the workload's marker: those are its escalations
        return {ids[i.key] for i in items if i.escalate and i.key in ids}

    # no reviewer bot: the pass-through review approves on arrival
    return Target("baseline", settings, [settings.ingest_grpc_port], [], resolve, classify)


def switchyard_target(settings: Settings, ingest_ports: Sequence[int] | None = None,
                      review_ports: Sequence[int] | None = None) -> Target:
    async def query(sql: str, *args: object) -> list[asyncpg.Record]:
        conn = await connect(settings)
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()

    async def resolve(items: list[Item]) -> dict[str, str]:
        rows = await query("SELECT idempotency_key, task_id FROM tasks "
                           "WHERE idempotency_key = ANY($1::text[])", [i.key for i in items])
        return {r["idempotency_key"]: str(r["task_id"]) for r in rows}

    async def classify(items: list[Item], ids: dict[str, str]) -> set[str]:
        rows = await query("SELECT task_id, reason FROM review_items "
                           "WHERE task_id = ANY($1::uuid[])", list(ids.values()))
        reasons = await query(
            "SELECT d.rule, count(*) AS n FROM decisions d WHERE d.source = 'MODEL' "
            "AND d.task_id = ANY($1::uuid[]) GROUP BY d.rule ORDER BY n DESC",
            list(ids.values()))
        target.rules = {r["rule"]: r["n"] for r in reasons}
        return {str(r["task_id"]) for r in rows}

    target = Target("switchyard", settings, ingest_ports or [settings.ingest_grpc_port],
                    review_ports or [settings.review_grpc_port], resolve, classify)
    target.pg_stats = PgStats(resolve_dsn(settings), settings.postgres_schema)
    target.units = Units(settings)
    return target


@dataclass
class Plan:
    tasks: int
    rate: float
    warmup: int
    latency_s: float
    timeout_s: float
    seed: int
    latency_rate: float = 0.0  # 0: half the measured sustained rate
    ceiling_s: float = 5.0  # how long each part of T* is measured
    max_backlog: int = 1000  # saturation: most sent tasks unfinished at once (0: unbounded)


def measure(target: Target, pipeline: Pipeline, plan: Plan, infra: Settings, pool: Pool,
            profile_dir: Path | None = None) -> list[Phase]:
    """Warm-up, saturation and latency phases against a running pipeline."""

    async def go() -> list[Phase]:
        watch = StatusWatch(target.settings)
        await watch.start()
        try:
            warm = workload(plan.warmup, plan.seed + 1, pool, tag="warm")
            await run_phase(target, watch, warm, max(50.0, plan.warmup / 4), "warm-up",
                            plan.timeout_s)
            items = workload(plan.tasks, plan.seed, pool)
            meter = CpuMeter({**pipeline.pids(), **infra_pids(infra),
                              "load generator": os.getpid()})
            profiler = None
            if profile_dir is not None:
                profiler = Profiler(pipeline.pids(), profile_dir / target.name)
            saturation = await run_phase(target, watch, items, plan.rate, "saturation",
                                         plan.timeout_s, meter, profiler, plan.max_backlog)
            rate = plan.latency_rate or max(5.0, round(saturation.sustained_tasks_per_s / 2))
            count = max(50, int(rate * plan.latency_s))
            latency = await run_phase(target, watch,
                                      workload(count, plan.seed + 2, pool, tag="lat"),
                                      rate, "latency", plan.timeout_s)
            return [saturation, latency]
        finally:
            await watch.stop()

    return asyncio.run(go())


def switchyard_pipeline(settings: Settings, state: Path) -> Pipeline:
    return Pipeline(settings, state, service_specs(settings))


def report(phases: Sequence[Phase], title: str) -> None:
    print_table(title, ["pipeline", "phase", "offered/s", "done", "missing", "sustained/s",
                        "whole/s", "p50 ms", "p95 ms", "p99 ms", "auto p99", "esc p99"],
                [[p.pipeline, p.phase, p.offered_rate, p.completed, p.missing,
                  p.sustained_tasks_per_s, p.whole_tasks_per_s, p.latency_ms["all"]["p50"],
                  p.latency_ms["all"]["p95"], p.latency_ms["all"]["p99"],
                  p.latency_ms["automated"]["p99"], p.latency_ms["escalated"]["p99"]]
                 for p in phases])


def print_cpu(phases: Sequence[Phase]) -> None:
    for p in phases:
        if p.cpu_ms_per_task:
            print(f"CPU ms per task, {p.pipeline}: " + ", ".join(
                f"{k} {v:.2f}" for k, v in sorted(p.cpu_ms_per_task.items(),
                                                    key=lambda kv: -kv[1])))


def print_database(phases: Sequence[Phase]) -> None:
    for p in phases:
        if p.database:
            db = p.database["per_task_database"]
            print(f"PostgreSQL per task, {p.pipeline}: {db['xact_commit']:.1f} transactions; "
                  "rows inserted/updated/index scans by table: " + ", ".join(
                      f"{t} {v['n_tup_ins']:.1f}/{v['n_tup_upd']:.1f}/{v['idx_scan']:.1f}"
                      for t, v in list(p.database["per_task_tables"].items())[:8]))


def print_profile(profiles: dict[str, dict[str, Any]], top: int = 8) -> None:
    for pipeline, services in profiles.items():
        for service, summary in services.items():
            if "self_pct" not in summary:
                print(f"profile {pipeline}/{service}: {summary.get('error', '?')}")
                continue
            print(f"\nprofile {pipeline}/{service} ({summary['samples']} samples), top self:")
            for frame, pct in summary["self_pct"][:top]:
                print(f"  {pct:5.1f}%  {frame}")


def run(infra: Settings, state: Path, plan: Plan, json_path: Path,
        profile: bool = False, switchyard_only: bool = False,
        changes: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``changes``: settings of the pipeline measured besides PIPELINE_BENCH_SETTINGS (the
    ``--setting`` pairs; recorded in the JSON)."""
    profile_dir = json_path.parent / "profile" if profile else None
    saturation_profile.clear()
    phases: list[Phase] = []
    changed = {**PIPELINE_BENCH_SETTINGS, **(changes or {})}
    real_settings = isolated(infra, "switchyard", **changed)
    with switchyard_pipeline(real_settings, state / "switchyard") as pipeline:
        pool = asyncio.run(calibrate(real_settings, load_docs()))
        print(f"workload: {len(pool.automated)} of {len(pool.docs)} held-out documents are "
              "decided without a person under their own kind", file=sys.stderr)
        phases += measure(switchyard_target(real_settings), pipeline, plan, infra, pool,
                          profile_dir)
        # what every task of the run put on the broker, per task (capacity planning)
        topic_bytes = asyncio.run(kafka_bytes(real_settings))
        finished = sum(p.completed for p in phases) + plan.warmup
        kafka = {"bytes_per_task": round(sum(topic_bytes.values()) / finished),
                 "by_topic": {k: round(v / finished) for k, v in topic_bytes.items()}}
        # T*'s parts, on the same machine and infrastructure, the pipeline idle
        parts = asyncio.run(measure_parts(real_settings, [d["text"] for d in pool.docs],
                                          plan.ceiling_s))
    if not switchyard_only:
        baseline_settings = isolated(infra, "baseline")
        with Pipeline(baseline_settings, state / "baseline",
                      passthrough_specs(baseline_settings)) as pipeline:
            phases += measure(baseline_target(baseline_settings), pipeline, plan, infra, pool,
                              profile_dir)
    units = phases[0].units_per_task
    ceiling = Ceiling(**parts, hops_tasks_per_s=0.0 if switchyard_only else
                      phases[2].sustained_tasks_per_s,
                      rows_per_task=units.get("triton_rows", 0.0),
                      calls_per_task=units.get("downstream_calls", 0.0))
    share = round(phases[0].sustained_tasks_per_s / ceiling.tasks_per_s, 3) \
        if ceiling.tasks_per_s else 0.0
    if switchyard_only:  # a development aid: no baseline, no ratio
        report(phases, "End to end, switchyard only")
        print_ceiling(ceiling, share)
        print(f"Kafka bytes per task (all topics): {kafka['bytes_per_task']} {kafka['by_topic']}")
        print_cpu(phases)
        print_database(phases)
        if profile:
            print_profile(saturation_profile)
        write_json(json_path, {"phases": [asdict(p) for p in phases], "plan": asdict(plan),
                               "ceiling": ceiling.as_dict(), "share_of_ceiling": share,
                               "kafka": kafka, "profile": saturation_profile})
        return {}
    real_sat, real_lat, base_sat, _ = phases
    ratios = {
        "sustained": round(real_sat.sustained_tasks_per_s / base_sat.sustained_tasks_per_s, 3)
        if base_sat.sustained_tasks_per_s else 0.0,
        "whole": round(real_sat.whole_tasks_per_s / base_sat.whole_tasks_per_s, 3)
        if base_sat.whole_tasks_per_s else 0.0,
    }
    report(phases, "End to end (tasks/s; latency from submission to terminal status)")
    print(f"switchyard / baseline throughput: sustained {ratios['sustained']:.2f}, "
          f"whole workload {ratios['whole']:.2f}")
    print_ceiling(ceiling, share)
    print(f"Kafka bytes per task (all topics): {kafka['bytes_per_task']} {kafka['by_topic']}")
    print_cpu(phases)
    print_database(phases)
    if profile:
        print_profile(saturation_profile)
    result: dict[str, Any] = {
        "phases": [asdict(p) for p in phases], "throughput_ratio": ratios, "plan": asdict(plan),
        "settings_changed": {"switchyard": changed},
        "workload": {"documents": len(pool.docs), "automated_pool": len(pool.automated)},
        "ceiling": ceiling.as_dict(), "share_of_ceiling": share, "kafka": kafka,
        "goals": goals(real_sat, real_lat, ratios, share)}
    if profile:
        result["profile"] = saturation_profile
    write_json(json_path, result)
    return result


def print_ceiling(ceiling: Ceiling, share: float) -> None:
    print(f"ceiling T* {ceiling.tasks_per_s:.0f} tasks/s (pipeline at {share:.2f} of it): "
          f"Triton {ceiling.triton_rows_per_s:.0f} rows/s x {ceiling.rows_per_task} a task, "
          f"database {ceiling.db_tasks_per_s:.0f} tasks/s, downstream "
          f"{ceiling.downstream_calls_per_s:.0f} calls/s x {ceiling.calls_per_task} a task, "
          f"hops {ceiling.hops_tasks_per_s:.0f} tasks/s; seconds a task: "
          + ", ".join(f"{k} {v * 1000:.2f} ms" for k, v in (ceiling.seconds_per_task or {}).items()))


def goals(saturation: Phase, latency: Phase, ratios: dict[str, float],
          share_of_ceiling: float = 0.0) -> dict[str, Any]:
    """The issue's goals, checked as far as this run can: the P99 goal is stated at 500/s
    (half of 1,000/s), which a pipeline that cannot sustain 500/s cannot be measured at; the
    latency phase's rate (half the measured sustained rate) is reported beside it."""
    p99 = latency.latency_ms["all"]["p99"]
    return {
        "sustained_tasks_per_s>=1000": saturation.sustained_tasks_per_s >= 1000,
        "p99<1s_at_500_per_s": (p99 < 1000 if latency.offered_rate >= 500 else
                                "not measurable: sustained rate is below 500/s"),
        "p99<1s_at_half_the_measured_sustained_rate": p99 < 1000,
        "latency_phase_offered_rate": latency.offered_rate,
        "ratio>=0.5": ratios["sustained"] >= 0.5,
        "share_of_ceiling>=0.8": share_of_ceiling >= 0.8,
    }


def plan_from(args: argparse.Namespace) -> Plan:
    quick = quick_mode(args.quick)
    return Plan(tasks=args.tasks or (600 if quick else 6000), rate=args.rate,
                warmup=100 if quick else 300, latency_s=5.0 if quick else 20.0,
                timeout_s=args.timeout, seed=args.seed, latency_rate=args.latency_rate,
                ceiling_s=2.0 if quick else 5.0, max_backlog=args.max_backlog)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=0, help="saturation workload (6000; quick 600)")
    p.add_argument("--rate", type=float, default=4000.0, help="offered tasks/s, saturation")
    p.add_argument("--latency-rate", type=float, default=0.0,
                   help="offered tasks/s in the latency phase (default: half the sustained)")
    p.add_argument("--max-backlog", type=int, default=1000,
                   help="saturation: most sent tasks unfinished at once (0: unbounded)")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument("--quick", action="store_true", help="short smoke run (or BENCH_QUICK=1)")
    p.add_argument("--profile", action="store_true", help="py-spy every service")
    p.add_argument("--switchyard-only", action="store_true",
                   help="skip the baseline (development aid; no ratio)")
    p.add_argument("--setting", action="append", default=[], metavar="NAME=VALUE",
                   help="change a setting of the pipeline measured, e.g. "
                        "router_cascade_below=0 (repeatable; recorded in the JSON)")
    p.add_argument("--json", type=Path, default=RESULTS / "e2e.json")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    plan = plan_from(args)
    with infrastructure() as (infra, state):
        run(infra, state, plan, args.json, args.profile, args.switchyard_only,
            setting_changes(args.setting, infra))
    return 0


if __name__ == "__main__":
    sys.exit(main())
