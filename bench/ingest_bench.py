"""Ingest benchmark: SubmitTask and SubmitTasks through the real ingest service vs a bare
gRPC server of the same shape, in the same run.

``python -m bench.ingest_bench [--seconds S] [--quick]`` starts the embedded broker and
PostgreSQL (and Triton, unused here) once, then measures, with the same client:

- ``bare``: ``bench.bare_ingest``, the IngestService proto on a plain ``grpc.aio`` server with
  no interceptors, answering at once with a reply of the real shape;
- ``ingest``: the real ingest service (interceptors: tracing, metrics, auth; the per-tenant
  rate limit is off, its default;
  validation, PostgreSQL commit, Kafka publish and ack, then the answer).

Two calls: unary ``SubmitTask`` with ``--in-flight`` concurrent calls, and bulk
``SubmitTasks`` with ``--batch`` submissions a call, a few calls in flight. Every submission
has its own idempotency key, so the real service creates a task for each. Nothing consumes
the tasks topic here, so ingest's backpressure limit is switched off (``ingest_max_backlog=0``)
or the backlog of undecided tasks would refuse the load after 10,000 tasks.

The client sends pre-serialised requests over a plain channel (the load generator shares the
CPUs). Results print as a table with the ratios and go to ``bench/results/ingest.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from bench._common import (
    RESULTS,
    CpuMeter,
    Pipeline,
    infra_pids,
    isolated,
    percentile_ms,
    print_table,
    quick_mode,
    standalone,
    write_json,
)
from bench.e2e_bench import load_docs
from switchyard import Settings
from switchyard.runtime import service_specs
from switchyard.stack import ServiceSpec
from switchyard.v1 import (
    Document,
    Submission,
    SubmitTaskRequest,
    SubmitTaskResponse,
    SubmitTasksRequest,
    SubmitTasksResponse,
)

SUBMIT_TASK = "/switchyard.v1.IngestService/SubmitTask"
SUBMIT_TASKS = "/switchyard.v1.IngestService/SubmitTasks"
NO_BACKPRESSURE = {"ingest_max_backlog": 0}


class Requests:
    """Serialised requests, each submission with a key of its own (made ahead, lazily)."""

    def __init__(self, texts: list[str], batch: int) -> None:
        self.texts = texts
        self.batch = batch
        self.count = 0

    def _submission(self) -> Submission:
        self.count += 1
        text = self.texts[self.count % len(self.texts)]
        return Submission(tenant_id=f"tenant-{self.count % 4}",
                          idempotency_key=uuid.uuid4().hex, kind="support_ticket",
                          document=Document(content_type="text/plain", body=text.encode()))

    def unary(self, n: int) -> list[bytes]:
        return [SubmitTaskRequest(submission=self._submission()).SerializeToString()
                for _ in range(n)]

    def bulk(self, n: int) -> list[bytes]:
        return [SubmitTasksRequest(submissions=[self._submission() for _ in range(self.batch)])
                .SerializeToString() for _ in range(n)]


async def load(port: int, method: str, bodies: list[bytes], seconds: float, in_flight: int,
               items_per_call: int, check: Callable[[bytes], bool],
               meter: CpuMeter | None = None, wrap: bool = False) -> dict[str, Any]:
    """``in_flight`` callers send ``bodies`` in turn for ``seconds`` (from the start again
    when ``wrap``: only for the bare server, to which a repeated key means nothing)."""
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    call = channel.unary_unary(method)
    latencies: list[float] = []
    errors = 0
    cursor = 0

    async def worker(until: float, record: bool) -> None:
        nonlocal errors, cursor
        while time.perf_counter() < until and (wrap or cursor < len(bodies)):
            body = bodies[cursor % len(bodies)]
            cursor += 1
            began = time.perf_counter()
            try:
                ok = check(await call(body, timeout=30))
            except grpc.aio.AioRpcError:
                ok = False
            if record:
                latencies.append(time.perf_counter() - began)
                errors += not ok

    await asyncio.gather(*(worker(time.perf_counter() + 1.0, False) for _ in range(in_flight)))
    latencies.clear()
    errors = 0
    if meter is not None:
        meter.start()
    started = time.perf_counter()
    await asyncio.gather(*(worker(started + seconds, True) for _ in range(in_flight)))
    elapsed = time.perf_counter() - started
    if meter is not None:
        meter.stop()
    await channel.close()
    calls = len(latencies) - errors
    result = {"items_per_s": round(calls * items_per_call / elapsed, 1),
              "calls_per_s": round(calls / elapsed, 1), "errors": errors,
              "p50_ms": percentile_ms(latencies, 0.5), "p99_ms": percentile_ms(latencies, 0.99),
              "ran_out_of_requests": not wrap and cursor >= len(bodies)}
    if meter is not None:
        result["cpu_ms_per_item"] = meter.per_item_ms(calls * items_per_call)
    return result


def unary_ok(reply: bytes) -> bool:
    return SubmitTaskResponse.FromString(reply).created


def bulk_ok(reply: bytes) -> bool:
    return SubmitTasksResponse.FromString(reply).rejected_count == 0


def bare_spec(settings: Settings) -> list[ServiceSpec]:
    return [ServiceSpec("bare-ingest", [sys.executable, "-m", "bench.bare_ingest",
                                        str(settings.ingest_grpc_port)],
                        health_port=settings.ingest_grpc_port)]


def measure(name: str, pipeline: Pipeline, port: int, args: argparse.Namespace,
            texts: list[str], bare: bool = False) -> dict[str, Any]:
    pids = {**pipeline.pids(), **infra_pids(pipeline.settings)}
    pids.pop("triton", None)
    requests = Requests(texts, args.batch)
    # unique keys for the real service, as many as it could take at --max-rate (flagged in
    # the results if it ran out); the bare server goes round a smaller set
    seconds = 2 if bare else args.seconds + 1
    unary_bodies = requests.unary(int(args.max_rate * seconds))
    bulk_bodies = requests.bulk(int(args.max_bulk_rate * seconds / args.batch))
    unary = asyncio.run(load(port, SUBMIT_TASK, unary_bodies, args.seconds, args.in_flight, 1,
                             unary_ok, CpuMeter(pids), wrap=bare))
    bulk = asyncio.run(load(port, SUBMIT_TASKS, bulk_bodies, args.seconds, args.bulk_in_flight,
                            args.batch, bulk_ok, CpuMeter(pids), wrap=bare))
    print(f"  {name}: SubmitTask {unary['items_per_s']:.0f}/s, SubmitTasks "
          f"{bulk['items_per_s']:.0f} items/s", file=sys.stderr)
    return {"SubmitTask": unary, "SubmitTasks": bulk}


def run(infra: Settings, state: Path, args: argparse.Namespace, json_path: Path
        ) -> dict[str, Any]:
    texts = [d["text"] for d in load_docs() if d["label"] == "support_ticket"]
    results: dict[str, dict[str, Any]] = {}
    bare_settings = isolated(infra, "bare")
    with Pipeline(bare_settings, state / "bare", bare_spec(bare_settings)) as pipeline:
        results["bare"] = measure("bare", pipeline, bare_settings.ingest_grpc_port, args, texts,
                                  bare=True)
    real_settings = isolated(infra, "ingest", **NO_BACKPRESSURE)
    with Pipeline(real_settings, state / "ingest",
                  service_specs(real_settings, ("ingest",))) as pipeline:
        results["ingest"] = measure("ingest", pipeline, real_settings.ingest_grpc_port, args,
                                    texts)
    ratios = {method: round(results["ingest"][method]["items_per_s"]
                            / results["bare"][method]["items_per_s"], 3)
              if results["bare"][method]["items_per_s"] else 0.0
              for method in ("SubmitTask", "SubmitTasks")}
    rows = [[f"{method} ({'1' if method == 'SubmitTask' else args.batch} a call)", server,
             r[method]["items_per_s"], r[method]["p50_ms"], r[method]["p99_ms"],
             r[method]["errors"]]
            for method in ("SubmitTask", "SubmitTasks") for server, r in results.items()]
    print_table("Ingest: submissions/s, real service vs bare gRPC server (same client)",
                ["call", "server", "items/s", "p50 ms", "p99 ms", "errors"], rows)
    print(f"ingest / bare: SubmitTask {ratios['SubmitTask']:.2f}, "
          f"SubmitTasks {ratios['SubmitTasks']:.2f}")
    for method in ("SubmitTask", "SubmitTasks"):
        cpu = results["ingest"][method].get("cpu_ms_per_item", {})
        print(f"CPU ms per submission, ingest {method}: "
              + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items()))
    data = {"results": results, "ratios": ratios, "seconds": args.seconds,
            "in_flight": args.in_flight, "batch": args.batch,
            "bulk_in_flight": args.bulk_in_flight,
            "settings_changed": {"ingest": NO_BACKPRESSURE}}
    write_json(json_path, data)
    return data


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=0.0, help="per measurement (10; quick 3)")
    p.add_argument("--in-flight", type=int, default=32, help="concurrent SubmitTask calls")
    p.add_argument("--batch", type=int, default=100, help="submissions per SubmitTasks call")
    p.add_argument("--bulk-in-flight", type=int, default=4, help="concurrent SubmitTasks calls")
    p.add_argument("--max-rate", type=float, default=4000.0,
                   help="SubmitTask requests prepared per second of measurement")
    p.add_argument("--max-bulk-rate", type=float, default=15000.0,
                   help="SubmitTasks submissions prepared per second of measurement")
    p.add_argument("--quick", action="store_true", help="short smoke run (or BENCH_QUICK=1)")
    p.add_argument("--json", type=Path, default=RESULTS / "ingest.json")
    return p


def configure(args: argparse.Namespace) -> argparse.Namespace:
    if not args.seconds:
        args.seconds = 3.0 if quick_mode(args.quick) else 10.0
    return args


def main(argv: list[str] | None = None) -> int:
    return standalone(parser, configure, run, argv)


if __name__ == "__main__":
    sys.exit(main())
