"""Scaling run: one, then two replicas of every stream processor on the same machine.

``python -m bench.scaling_bench [--tasks N] [--quick]`` starts the embedded broker,
PostgreSQL and Triton once, then runs the end-to-end benchmark's saturation phase (same
seeded workload, same reviewer bot, review admission unthrottled as there) against:

- one replica each of ingest (its intake consumer), decision, executor and review;
- two replicas each, on fresh topics and schema: the replicas of a service share its consumer
  group, so Kafka splits each topic's partitions between them.

The partitions each replica holds are read from its metrics endpoint
(``switchyard_consumer_assigned_partitions``, set on every rebalance), because Tansu answers
``DescribeGroups`` with the members but without their assignments. The records each replica
processed come from ``switchyard_records_processed_total``. The load generator spreads
``SubmitTasks`` calls over the ingest replicas, and runs one reviewer bot per review replica.

On a 2-core machine a second replica adds processes, not cores: expect no gain, rather a
loss to the extra processes' own overhead (measured: 0.6-0.7x). The run demonstrates the
split; a throughput gain needs cores for the replicas to run on. Results print as tables and
go to ``bench/results/scaling.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import urllib.request
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench._common import (
    RESULTS,
    CpuMeter,
    Pipeline,
    infra_pids,
    isolated,
    print_table,
    quick_mode,
    standalone,
    write_json,
)
from bench.e2e_bench import (
    PIPELINE_BENCH_SETTINGS,
    Phase,
    Pool,
    StatusWatch,
    calibrate,
    load_docs,
    run_phase,
    switchyard_target,
    workload,
)
from switchyard import Settings
from switchyard.runtime import DOWNSTREAM, SERVICE_PORTS, service_specs
from switchyard.stack import ServiceSpec, free_port

PROCESSORS = ("ingest", "decision", "executor", "review")
_SAMPLE = re.compile(r'^(\w+)\{([^}]*)\} (\S+)$', re.M)
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def samples(text: str, metric: str) -> list[tuple[dict[str, str], float]]:
    """``(labels, value)`` of every sample of ``metric`` in Prometheus text format."""
    return [(dict(_LABEL.findall(labels)), float(value))
            for name, labels, value in _SAMPLE.findall(text) if name == metric]


def replica_specs(settings: Settings, replicas: int) -> tuple[list[ServiceSpec],
                                                              dict[str, dict[str, int]]]:
    """Service specs with ``replicas`` of each stream processor; each replica gets its own
    gRPC, metrics (and review web) port. Returns the specs and the ports by replica name."""
    specs = service_specs(settings, (DOWNSTREAM,))
    ports: dict[str, dict[str, int]] = {}
    for service in PROCESSORS:
        grpc_attr, metrics_attr = SERVICE_PORTS[service]
        for index in range(1, replicas + 1):
            name = f"{service}-{index}"
            mine = {grpc_attr: getattr(settings, grpc_attr) if index == 1 else free_port(),
                    metrics_attr: free_port()}
            if service == "review":
                mine["review_web_port"] = (settings.review_web_port if index == 1
                                           else free_port())
            if service == "ingest":
                mine["ingest_rest_port"] = (settings.ingest_rest_port if index == 1
                                            else free_port())
            ports[name] = mine
            [base] = service_specs(settings, (service,))
            specs.append(ServiceSpec(
                name=name, argv=base.argv, health_port=mine[grpc_attr],
                env={**base.env,
                     **{f"SWITCHYARD_{attr.upper()}": str(port) for attr, port in mine.items()}}))
    return specs, ports


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return response.read().decode()


def replica_view(settings: Settings, ports: dict[str, dict[str, int]]) -> dict[str, Any]:
    """Per replica: the partitions it holds, by topic, and the records it processed."""
    prefix = settings.kafka_topic_prefix
    view: dict[str, Any] = {}
    for name, mine in ports.items():
        metrics_port = next(p for attr, p in mine.items() if attr.endswith("metrics_port"))
        text = scrape(metrics_port)
        assigned: dict[str, list[int]] = {}
        for labels, value in samples(text, "switchyard_consumer_assigned_partitions"):
            if value:
                assigned.setdefault(labels["topic"].removeprefix(prefix), []).append(
                    int(labels["partition"]))
        processed = {labels["topic"].removeprefix(prefix): int(value) for labels, value
                     in samples(text, "switchyard_records_processed_total")
                     if labels.get("outcome") == "ok"}
        view[name] = {"partitions": {t: sorted(p) for t, p in sorted(assigned.items())},
                      "records_processed": processed}
    return view


def measure(infra: Settings, state: Path, replicas: int, items_for: Any, plan: argparse.Namespace,
            pool_holder: dict[str, Pool]) -> tuple[Phase, dict[str, Any]]:
    settings = isolated(infra, f"scale{replicas}", **PIPELINE_BENCH_SETTINGS)
    specs, ports = replica_specs(settings, replicas)
    with Pipeline(settings, state / f"replicas-{replicas}", specs) as pipeline:
        if "pool" not in pool_holder:
            pool_holder["pool"] = asyncio.run(calibrate(settings, load_docs()))
        pool = pool_holder["pool"]
        target = switchyard_target(
            settings, ingest_ports=[p["ingest_grpc_port"] for n, p in ports.items()
                                    if n.startswith("ingest-")],
            review_ports=[p["review_grpc_port"] for n, p in ports.items()
                          if n.startswith("review-")])
        target.name = f"{replicas} replica{'s' if replicas > 1 else ''}"

        async def go() -> Phase:
            watch = StatusWatch(settings)
            await watch.start()
            try:
                await run_phase(target, watch, workload(plan.warmup, plan.seed + 1, pool,
                                                        tag="warm"),
                                max(50.0, plan.warmup / 4), "warm-up", plan.timeout)
                meter = CpuMeter({**pipeline.pids(), **infra_pids(infra)})
                return await run_phase(target, watch, items_for(pool), plan.rate,
                                       "saturation", plan.timeout, meter)
            finally:
                await watch.stop()

        phase = asyncio.run(go())
        return phase, replica_view(settings, ports)


def run(infra: Settings, state: Path, plan: argparse.Namespace, json_path: Path
        ) -> dict[str, Any]:
    pool_holder: dict[str, Pool] = {}

    def items_for(pool: Pool) -> list[Any]:
        return workload(plan.tasks, plan.seed, pool)

    phases: dict[int, Phase] = {}
    views: dict[int, dict[str, Any]] = {}
    for replicas in (1, 2):
        print(f"{replicas} replica(s) of each stream processor ...", file=sys.stderr)
        phases[replicas], views[replicas] = measure(infra, state, replicas, items_for, plan,
                                                    pool_holder)
    print_table("Scaling: saturation throughput, 1 vs 2 replicas of each stream processor "
                f"({plan.tasks} tasks, offered {plan.rate:.0f}/s)",
                ["replicas", "done", "missing", "sustained/s", "whole/s", "p50 ms", "p99 ms"],
                [[r, p.completed, p.missing, p.sustained_tasks_per_s, p.whole_tasks_per_s,
                  p.latency_ms["all"]["p50"], p.latency_ms["all"]["p99"]]
                 for r, p in phases.items()])
    rows = []
    for name, info in views[2].items():
        for topic, parts in info["partitions"].items():
            rows.append([name, topic, ",".join(map(str, parts)),
                         info["records_processed"].get(topic, 0)])
    print_table("Partitions held by each replica (2 replicas) and records each processed",
                ["replica", "topic", "partitions", "records"], rows)
    one, two = phases[1].sustained_tasks_per_s, phases[2].sustained_tasks_per_s
    ratio = round(two / one, 3) if one else 0.0
    print(f"2 replicas / 1 replica sustained throughput: {ratio:.2f}")
    data = {"phases": {str(r): asdict(p) for r, p in phases.items()},
            "replicas": {str(r): v for r, v in views.items()},
            "two_vs_one": ratio, "tasks": plan.tasks, "offered_rate": plan.rate,
            "settings_changed": PIPELINE_BENCH_SETTINGS}
    write_json(json_path, data)
    return data


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=0, help="saturation workload (3000; quick 400)")
    p.add_argument("--rate", type=float, default=2000.0, help="offered tasks/s")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument("--quick", action="store_true", help="short smoke run (or BENCH_QUICK=1)")
    p.add_argument("--json", type=Path, default=RESULTS / "scaling.json")
    return p


def configure(args: argparse.Namespace) -> argparse.Namespace:
    quick = quick_mode(args.quick)
    args.tasks = args.tasks or (400 if quick else 3000)
    args.warmup = 100 if quick else 200
    return args


def main(argv: list[str] | None = None) -> int:
    return standalone(parser, configure, run, argv)


if __name__ == "__main__":
    sys.exit(main())
