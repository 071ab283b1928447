"""Decision benchmark: raw Triton vs the decision service, batched and unbatched, in one run.

``python -m bench.decision_bench [--seconds S] [--tasks N]`` starts the embedded broker,
PostgreSQL and Triton once and measures, on the same machine, with the router held-out
documents as the workload (every document type, invoices included):

1. raw Triton: ``document_router`` called directly with client batches of 64 (several in
   flight) -- the ceiling for the model on this hardware;
2. ``Decide`` with batching: a real decision service process (``batch_max_size=64``) under
   many concurrent single-item RPCs; each decision includes routing, invoice extraction,
   vendor-history lookups and invoice_risk scoring for invoices, and the policy;
3. ``Decide`` with batching disabled: the same service with ``batch_max_size=1``;
4. ``DecideBatch``: the batching service again, under a few concurrent calls of 64 tasks
   each (a caller with many documents);
5. the Kafka path: N tasks accepted by ingest first, then a decision service consuming the
   tasks topic; rate from the first to the last stored decision (PostgreSQL timestamps), so
   consumer-group start-up is not counted.

The shadow model is off in every service run (it would double the Triton work the raw
figure does not include). Results print as a table with ratios and go to
``bench/results/decision.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import tritonclient.grpc.aio as triton

from bench._common import (
    RESULTS,
    CpuMeter,
    infra_pids,
    print_table,
    quick_mode,
    standalone,
    write_json,
)
from bench._common import isolated as common_isolated
from switchyard import Settings
from switchyard.rpc import create_channel
from switchyard.runtime import bootstrap, service_specs
from switchyard.stack import EmbeddedStack
from switchyard.storage import connect
from switchyard.v1 import (
    DecideBatchRequest,
    DecideBatchResponse,
    DecideRequest,
    DecideResponse,
    Document,
    IngestServiceStub,
    Submission,
    SubmitTasksRequest,
    TaskEnvelope,
)

ROOT = Path(__file__).resolve().parents[1]
HELDOUT = ROOT / "models" / "data" / "router_heldout.jsonl"
DECIDE = "/switchyard.v1.DecisionService/Decide"
DECIDE_BATCH = "/switchyard.v1.DecisionService/DecideBatch"


def texts() -> list[str]:
    return [json.loads(line)["text"] for line in HELDOUT.read_text().splitlines()]


async def raw_triton(url: str, docs: list[str], seconds: float, batch: int = 64,
                     in_flight: int = 4, meter: CpuMeter | None = None) -> float:
    """Documents/s through Triton alone: client batches of ``batch``, ``in_flight`` at once."""
    client = triton.InferenceServerClient(url)
    count, stop = 0, time.perf_counter() + seconds

    async def worker(k: int) -> None:
        nonlocal count
        i = k * batch
        while time.perf_counter() < stop:
            data = np.array([[docs[(i + j) % len(docs)].encode()] for j in range(batch)],
                            dtype=np.object_)
            i += batch * in_flight
            inputs = [triton.InferInput("TEXT", list(data.shape), "BYTES")]
            inputs[0].set_data_from_numpy(data)
            await client.infer("document_router", inputs, model_version="1",
                               outputs=[triton.InferRequestedOutput("PROBS")])
            count += batch

    await asyncio.gather(*(worker(k) for k in range(2)))  # warm-up
    count, stop = 0, time.perf_counter() + seconds
    if meter is not None:
        meter.start()
    started = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(in_flight)))
    elapsed = time.perf_counter() - started
    if meter is not None:
        meter.stop()
    await client.close()
    return count / elapsed


def _envelope(text: str) -> TaskEnvelope:
    return TaskEnvelope(task_id=str(uuid.uuid4()), tenant_id="bench",
                        metadata={"received_date": "2025-06-01"},
                        document=Document(content_type="text/plain", body=text.encode()))


async def rpc_load(port: int, method: str, bodies: list[bytes],
                   decided: Callable[[bytes], tuple[int, int]], seconds: float, in_flight: int,
                   meter: CpuMeter | None = None) -> float:
    """Decisions/s through ``method``: ``in_flight`` concurrent calls cycling through
    ``bodies`` (serialized up front, so the client spends its shared CPU on the RPCs, not on
    protobuf) for 2 s of warm-up, then ``seconds`` measured. ``decided(reply)`` says how many
    decisions a reply holds, and how many of its tasks failed."""
    # a bare channel: the load generator shares the CPUs, so it carries no interceptors
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    call = channel.unary_unary(method)
    count, errors = 0, 0

    async def worker(k: int, until: float) -> None:
        nonlocal count, errors
        i = k
        while time.perf_counter() < until:
            try:
                ok, failed = decided(await call(bodies[i % len(bodies)], timeout=60))
                count, errors = count + ok, errors + failed
            except grpc.aio.AioRpcError:
                errors += 1
            i += in_flight

    await asyncio.gather(*(worker(k, time.perf_counter() + 2) for k in range(in_flight)))
    count = errors = 0
    if meter is not None:
        meter.start()
    started = time.perf_counter()
    await asyncio.gather(*(worker(k, started + seconds) for k in range(in_flight)))
    elapsed = time.perf_counter() - started
    if meter is not None:
        meter.stop()
    await channel.close()
    if errors:
        print(f"  ({errors} {method.rsplit('/', 1)[-1]} calls or tasks failed)",
              file=sys.stderr)
    return count / elapsed


async def decide_load(port: int, docs: list[str], seconds: float, in_flight: int,
                      meter: CpuMeter | None = None) -> float:
    """Decisions/s through Decide: ``in_flight`` concurrent single-item calls."""
    bodies = [DecideRequest(task=_envelope(d)).SerializeToString() for d in docs]

    def decided(reply: bytes) -> tuple[int, int]:
        return bool(DecideResponse.FromString(reply).decision.rule), 0

    return await rpc_load(port, DECIDE, bodies, decided, seconds, in_flight, meter)


async def decide_batch_load(port: int, docs: list[str], seconds: float, batch: int = 64,
                            in_flight: int = 4, meter: CpuMeter | None = None) -> float:
    """Decisions/s through DecideBatch: ``in_flight`` concurrent calls of ``batch`` tasks."""
    bodies = [DecideBatchRequest(tasks=[_envelope(docs[(start + j) % len(docs)])
                                        for j in range(batch)]).SerializeToString()
              for start in range(0, len(docs), batch)]

    def decided(reply: bytes) -> tuple[int, int]:
        response = DecideBatchResponse.FromString(reply)
        return sum(bool(r.decision.rule) for r in response.results), response.refused_count

    return await rpc_load(port, DECIDE_BATCH, bodies, decided, seconds, in_flight, meter)


def with_service(settings: Settings, state: Path, names: tuple[str, ...],
                 body: Callable[[dict[str, int]], float]) -> float:
    """Run ``body(pids)`` while the named services run (pids by service name)."""
    processes = EmbeddedStack(settings, state, components=(),
                              services=service_specs(settings, names))
    processes.start(timeout_s=120)
    try:
        return body({row.name: row.pid for row in processes.status() if row.pid})
    finally:
        processes.stop()


async def submit_tasks(settings: Settings, docs: list[str], n: int) -> list[str]:
    channel = create_channel(f"127.0.0.1:{settings.ingest_grpc_port}")
    ingest = IngestServiceStub(channel)
    ids: list[str] = []
    try:
        for start in range(0, n, 250):
            subs = [Submission(tenant_id="bench", idempotency_key=uuid.uuid4().hex,
                               metadata={"received_date": "2025-06-01"},
                               document=Document(content_type="text/plain",
                                                 body=docs[i % len(docs)].encode()))
                    for i in range(start, min(n, start + 250))]
            reply = await ingest.SubmitTasks(SubmitTasksRequest(submissions=subs))
            ids += [r.accepted.task_id for r in reply.results if r.HasField("accepted")]
    finally:
        await channel.close()
    return ids


async def kafka_rate(settings: Settings, ids: list[str], timeout_s: float) -> float:
    conn = await connect(settings)
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            done = await conn.fetchval("SELECT count(*) FROM decisions")
            if done >= len(ids):
                break
            await asyncio.sleep(0.5)
        row = await conn.fetchrow("SELECT count(*) AS n, extract(epoch FROM max(created_at) - "
                                  "min(created_at)) AS span FROM decisions")
    finally:
        await conn.close()
    if row["n"] < len(ids):
        print(f"  (only {row['n']} of {len(ids)} tasks decided in {timeout_s:.0f}s)",
              file=sys.stderr)
    return (row["n"] - 1) / float(row["span"]) if row["span"] else 0.0


def isolated(base: Settings, name: str, **changes: Any) -> Settings:
    """As :func:`bench._common.isolated`, with the shadow model off (see the module doc)."""
    return common_isolated(base, f"d{name}", **{"router_shadow_version": "", **changes})


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=0.0, help="per measurement (10; quick 3)")
    p.add_argument("--in-flight", type=int, default=256, help="concurrent Decide calls")
    p.add_argument("--tasks", type=int, default=0,
                   help="tasks for the Kafka path (4000; quick 1000)")
    p.add_argument("--quick", action="store_true", help="short smoke run (or BENCH_QUICK=1)")
    p.add_argument("--json", type=Path, default=RESULTS / "decision.json")
    return p


def configure(args: argparse.Namespace) -> argparse.Namespace:
    quick = quick_mode(args.quick)
    args.seconds = args.seconds or (3.0 if quick else 10.0)
    args.tasks = args.tasks or (1000 if quick else 4000)
    return args


def run(s: Settings, state: Path, args: argparse.Namespace, json_path: Path) -> dict[str, Any]:
    """Every measurement against the running infrastructure ``s``."""
    docs = texts()
    load_before = tuple(round(x, 2) for x in os.getloadavg())
    results: dict[str, float] = {}
    cpu: dict[str, dict[str, float]] = {}  # measurement -> process -> CPU ms per decision
    triton_pid = infra_pids(s).get("triton", 0)
    print("raw Triton, batches of 64 ...", file=sys.stderr)
    meter = CpuMeter({"triton": triton_pid, "load client": os.getpid()})
    raw = results["raw_triton_batch64"] = asyncio.run(
        raw_triton(s.triton_url, docs, args.seconds, meter=meter))
    cpu["raw_triton_batch64"] = {k: round(1000 * v / (raw * args.seconds), 3)
                                 for k, v in meter.used.items()}
    def single(port: int, meter: CpuMeter) -> Awaitable[float]:
        return decide_load(port, docs, args.seconds, args.in_flight, meter)

    def batched(port: int, meter: CpuMeter) -> Awaitable[float]:
        return decide_batch_load(port, docs, args.seconds, meter=meter)

    for name, rpc, size, measure in (("decide_batched", "Decide", 64, single),
                                     ("decide_unbatched", "Decide", 1, single),
                                     ("decide_batch_rpc", "DecideBatch", 64, batched)):
        print(f"{rpc}, batch_max_size={size} ...", file=sys.stderr)
        settings = isolated(s, name, batch_max_size=size)
        asyncio.run(bootstrap(settings))

        def load(pids: dict[str, int], st: Settings = settings, name: str = name,
                 measure: Callable[[int, CpuMeter], Awaitable[float]] = measure) -> float:
            meter = CpuMeter({"decision service": pids["decision"],
                              "triton": triton_pid, "load client": os.getpid()})
            rate = asyncio.run(measure(st.decision_grpc_port, meter))
            decided = rate * args.seconds
            cpu[name] = {k: round(1000 * v / decided, 3) for k, v in meter.used.items()}
            return rate

        results[name] = with_service(settings, state / name, ("decision",), load)
    print(f"Kafka path, {args.tasks} tasks ...", file=sys.stderr)
    settings = isolated(s, "kafka", batch_max_size=64)
    asyncio.run(bootstrap(settings))
    ids = with_service(settings, state / "kafka-ingest", ("ingest",),  # type: ignore[assignment]
                       lambda _: asyncio.run(submit_tasks(settings, docs, args.tasks)))
    results["kafka_path"] = with_service(
        settings, state / "kafka-decision", ("decision",),
        lambda _: asyncio.run(kafka_rate(settings, ids, 300)))  # type: ignore[arg-type]
    ratios = {
        "decide_batched_vs_raw": results["decide_batched"] / raw,
        "kafka_path_vs_raw": results["kafka_path"] / raw,
        "decide_batched_vs_unbatched": results["decide_batched"] / results["decide_unbatched"],
        "decide_unbatched_vs_raw": results["decide_unbatched"] / raw,
        "decide_batch_rpc_vs_raw": results["decide_batch_rpc"] / raw,
    }
    print_table("Decision: items/s, Decide (batched, unbatched), DecideBatch and the Kafka path "
                "vs raw Triton",
                ["measurement", "items/s", "vs raw Triton"],
                [[name, value, f"{value / raw:.0%}"] for name, value in results.items()])
    print(f"batched / unbatched Decide: {ratios['decide_batched_vs_unbatched']:.1f}x  "
          f"(goals: batched >= 60% of raw, >= 5x unbatched)")
    print(f"DecideBatch: {ratios['decide_batch_rpc_vs_raw']:.0%} of raw Triton "
          f"(goal >= 60%: {'met' if ratios['decide_batch_rpc_vs_raw'] >= 0.6 else 'not met'})")
    for name, per_process in cpu.items():
        print(f"CPU ms per item, {name}: " +
              ", ".join(f"{k} {v:.2f}" for k, v in per_process.items()))
    print(f"machine: {os.cpu_count()} CPUs, load average before: {load_before}")
    data = {"items_per_s": results, "ratios": ratios, "cpu_ms_per_decision": cpu,
            "seconds": args.seconds, "in_flight": args.in_flight, "kafka_tasks": args.tasks,
            "documents": len(docs)}
    write_json(json_path, data)
    return data


def main(argv: list[str] | None = None) -> int:
    return standalone(parser, configure, run, argv)


if __name__ == "__main__":
    sys.exit(main())
