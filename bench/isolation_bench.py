"""Isolation benchmark: do three steady tenants keep their latency while a fourth bursts?

``python -m bench.isolation_bench [--seconds S] [--quick]`` (or ``python -m bench isolation``)
starts the embedded broker, PostgreSQL and Triton once, then runs the real services on
isolated topics and schema and, on that one pipeline in the same run:

1. warm-up, then **capacity** C: the end-to-end benchmark's saturation phase
   (``bench.e2e_bench.run_phase``: the workload offered far faster than the pipeline goes,
   at most 1,000 tasks unfinished at once); C is its sustained tasks/s;
2. run A, **no burst**: four tenants (``steady-1..3`` and ``burst``) each submit r tasks/s
   for ``--seconds`` (60; quick 12), r = ``STEADY_SHARE`` x C = 0.15 C, so the four together
   offer 0.6 C, well under capacity;
3. run B, **burst**: the same, but the burst tenant submits 10 r = 1.5 C, so 1.95 C in all:
   the pipeline cannot take it, and has to push back on the tenant over its share.

All four tenants weigh 1, stated in the pipeline's ``tenant_weights`` setting (recorded in the
JSON). Each run has tenants of its own (``iso-a-*``, ``iso-b-*``) drawing the same documents
(the same seeds): run B's invoices are then not duplicates of run A's (duplicate invoice
numbers escalate, per tenant), and no vendor history learnt in run A changes run B's
decisions.

The document mix is the end-to-end benchmark's (``bench.e2e_bench.workload``): 70% decided
without a person, 20% escalated and approved by the reviewer bot over the real ReviewService
API (review admission throttle off, as there: ``PIPELINE_BENCH_SETTINGS``), 10% invalid
(refused at the door, per item). Every item goes through gRPC ``SubmitTasks`` (none through the
Kafka intake topic, whose consumer pauses only on the whole backlog limit: a tenant's share
applies to calls), each call carrying one tenant's items due in the last 0.1 s.

**Each tenant's client is well-behaved**: when ingest answers RESOURCE_EXHAUSTED (the tenant
holds its share of the backlog limit, ``ingest_max_backlog`` split by weight among the tenants
with work waiting), it waits the server's retry hint (``RetryInfo``, read as the client SDK
reads it) before sending that tenant's next call and resends the refused items then; the
refusals and the time held off are counted. It offers for ``--seconds`` and gives up on what
it could not place by then (``unsent``).

Latency is from the sending of the accepted call to the task's terminal status event on the
task-status topic (``StatusWatch``), for every task a tenant placed during the run (drained
after it). Throughput is a tenant's tasks finished inside the run's window, after its first
10% (start-up), per second: a short (quick) run under the burst reads low, its window being
not much longer than the latencies. Where the time goes comes from PostgreSQL's stamps
(``STAGES``): accepted -> acknowledged by the broker (ingest), -> the model's decision stored
(the tasks topic and the decision service), -> terminal for automated tasks (the executor
and downstream).

The goals (from the issue): the steady tenants' P99, pooled over the three, rises by at most
20% in run B against run A; and the burst tenant still gets its weighted share: its
throughput in run B at least C x w / sum(w) (= C/4 here). The work-conserving share,
C minus what the steady tenants took, is reported beside it (no goal). The bench reports
both runs and the goal lines; it asserts nothing. Results print as tables and go to
``bench/results/isolation.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc

from bench._common import (
    RESULTS,
    ROOT,
    isolated,
    percentile_ms,
    setting_changes,
    print_table,
    quick_mode,
    standalone,
    write_json,
)
from bench.e2e_bench import (
    PIPELINE_BENCH_SETTINGS,
    SUBMIT_TASKS,
    Item,
    Phase,
    Pool,
    ReviewerBot,
    StatusWatch,
    Target,
    await_finished,
    calibrate,
    lifecycle_stats,
    load_docs,
    run_phase,
    switchyard_pipeline,
    switchyard_target,
    workload,
)
from switchyard import Settings
from switchyard.runtime import parse_weights
from switchyard.storage import connect
from switchyard.v1 import SubmitTasksRequest, SubmitTasksResponse
from switchyard_client.errors import from_rpc_error

ROLES = ("steady-1", "steady-2", "steady-3", "burst")
BURST = "burst"
#: Each steady tenant's rate, as a share of the measured capacity: four of them offer 0.6 C.
STEADY_SHARE = 0.15
#: The burst tenant's rate in run B, in steady rates (the issue's "10x its share").
BURST_FACTOR = 10
#: Every tenant's weight (``tenant_weights``): equal shares.
WEIGHT = 1.0
#: Goal: the steady tenants' P99 in run B at most this many times run A's.
P99_GOAL = 1.20
#: A tenant's call carries the items due in this long (2 for a steady tenant at 20/s).
TICK_S = 0.1
#: Calls one tenant's client has outstanding at once, as a real client bounds them.
MAX_IN_FLIGHT = 8
#: The first share of a run not counted for throughput (tasks are still on their way).
LEAD_IN = 0.1
#: The no-burst run kept up when its window's throughput is at least this share of the rate
#: its tasks were accepted at; otherwise the machine could not carry even the steady load, and
#: the P99 comparison says little.
KEPT_UP = 0.9
#: A refusal without a retry hint (a per-item one) waits this long.
FALLBACK_RETRY_S = 1.0
RUNS = {"no burst": "a", "burst": "b"}


# -- what the runs offer -------------------------------------------------------------------

def tenant_ids(run: str) -> dict[str, str]:
    """Each role's tenant in ``run``: tenants of their own per run (see the module doc)."""
    return {role: f"iso-{RUNS[run]}-{role}" for role in ROLES}


def weights_setting() -> str:
    """The ``tenant_weights`` setting naming every tenant of both runs with ``WEIGHT``."""
    return ",".join(f"{tenant}:{WEIGHT:g}" for run in RUNS for tenant in tenant_ids(run).values())


def rates(capacity: float, burst: bool) -> dict[str, float]:
    """Tasks/s each role offers: ``STEADY_SHARE`` of capacity, the burst role 10 times that
    in the burst run."""
    steady = STEADY_SHARE * capacity
    return {role: round(steady * (BURST_FACTOR if burst and role == BURST else 1), 2)
            for role in ROLES}


def chunking(rate: float, tick_s: float = TICK_S) -> tuple[int, float]:
    """(items a call, seconds between calls) for a tenant offering ``rate`` tasks/s: the items
    due every ``tick_s``, at least one."""
    size = max(1, round(rate * tick_s))
    return size, size / rate


@dataclass
class Load:
    """One tenant's part of a run: its items, offered at ``rate`` tasks/s."""

    role: str
    tenant_id: str
    rate: float
    items: list[Item]


def loads(run: str, capacity: float, seconds: float, seed: int, pool: Pool) -> list[Load]:
    """The four tenants' seeded items for ``run``; a role draws the same documents in both
    runs (the burst tenant's run-A items are the start of its run-B ones)."""
    tenants = tenant_ids(run)
    return [Load(role, tenants[role], rate,
                 workload(math.ceil(rate * seconds), seed + 100 * (index + 1), pool,
                          kafka_share=0.0, tag=f"iso-{RUNS[run]}-{role}-",
                          tenants=(tenants[role],)))
            for index, (role, rate) in enumerate(rates(capacity, run == "burst").items())]


# -- a tenant's client ---------------------------------------------------------------------

@dataclass
class Offer:
    """What one tenant's client placed: when each accepted call went out, the task ids, and
    how often it was pushed back."""

    sent_at: dict[str, float] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)
    calls: int = 0
    invalid: int = 0
    refused_calls: int = 0
    refused_items: int = 0
    held_s: float = 0.0


async def sleep_until(moment: float) -> None:
    """Sleep until ``moment`` (``time.perf_counter``), if it is still to come."""
    if (delay := moment - time.perf_counter()) > 0:
        await asyncio.sleep(delay)


class TenantClient:
    """One tenant's client: a call every ``TICK_S`` with the items due, a few calls in flight;
    on RESOURCE_EXHAUSTED it holds every call of the tenant for the server's retry hint, then
    resends what was refused. Nothing is sent after the run's end."""

    def __init__(self, load: Load, submit: grpc.aio.UnaryUnaryMultiCallable) -> None:
        self.load = load
        self.submit = submit
        self.size, self.interval = chunking(load.rate)
        self.offer = Offer()
        self.hold_until = 0.0

    async def run(self, begin: float, end: float) -> Offer:
        in_flight: set[asyncio.Task[None]] = set()
        items = self.load.items
        for index, first in enumerate(range(0, len(items), self.size)):
            await sleep_until(begin + index * self.interval)
            await self._held(end)
            if time.perf_counter() >= end:
                break
            task = asyncio.create_task(self._send(items[first:first + self.size], end))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            if len(in_flight) >= MAX_IN_FLIGHT:
                await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
        await asyncio.gather(*in_flight)
        return self.offer

    async def _held(self, end: float) -> None:
        """Wait out the hold (it may grow while waiting: another call was refused), or until
        the run's ``end``, whichever comes first."""
        while (now := time.perf_counter()) < min(self.hold_until, end):
            await asyncio.sleep(min(self.hold_until, end) - now)

    def _refused(self, items: int, retry_after_s: float | None, end: float) -> None:
        now = time.perf_counter()
        until = now + (FALLBACK_RETRY_S if retry_after_s is None else retry_after_s)
        self.offer.held_s += max(0.0, min(until, end) - max(now, self.hold_until))
        self.hold_until = max(self.hold_until, until)
        self.offer.refused_calls += 1
        self.offer.refused_items += items

    async def _send(self, chunk: list[Item], end: float) -> None:
        pending = chunk
        while pending:
            await self._held(end)
            if (sent := time.perf_counter()) >= end:
                break
            self.offer.calls += 1
            request = SubmitTasksRequest(submissions=[i.submission for i in pending])
            try:
                response = await self.submit(request, timeout=60)
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                    raise
                self._refused(len(pending), from_rpc_error(exc).details.retry_after_s, end)
            else:
                pending = self._record(pending, response, sent)
                if pending:  # refused per item: no retry hint comes with those
                    self._refused(len(pending), None, end)

    def _record(self, items: list[Item], response: SubmitTasksResponse, sent: float
                ) -> list[Item]:
        """Note the accepted items and the invalid ones; return those refused for now."""
        again = []
        for item, result in zip(items, response.results):
            if result.HasField("accepted"):
                self.offer.sent_at[item.key] = sent
                self.offer.ids[item.key] = result.accepted.task_id
            elif result.error.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]:
                again.append(item)
            else:
                self.offer.invalid += 1
        return again


# -- one run -------------------------------------------------------------------------------

@dataclass
class TenantResult:
    """One tenant in one run: what it offered and placed, how often it was pushed back, what
    finished, how fast, and how long it took (all, automated, escalated; and by stage)."""

    role: str
    tenant_id: str
    offered_rate: float
    offered: int  # items the schedule had for the run
    accepted: int
    invalid: int
    unsent: int  # valid items not placed by the run's end
    refused_calls: int
    refused_items: int
    held_s: float
    completed: int
    tasks_per_s: float  # finished inside the run's window, after its lead-in
    latency_ms: dict[str, dict[str, float]]
    stages_ms: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass
class Run:
    """One run (no burst, burst): its tenants, and the steady tenants pooled, which the
    goal compares between the runs."""

    name: str
    seconds: float
    tenants: list[TenantResult]
    steady_latency_ms: dict[str, dict[str, float]]  # the three steady tenants pooled
    steady_stages_ms: dict[str, dict[str, float]]
    escalated: int
    reviewer_approved: int

    @property
    def tasks_per_s(self) -> float:
        """The pipeline's throughput in the run's window, every tenant's together."""
        return round(sum(t.tasks_per_s for t in self.tenants), 2)

    @property
    def accepted_per_s(self) -> float:
        return round(sum(t.accepted for t in self.tenants) / self.seconds, 2)

    @property
    def kept_up(self) -> bool:
        """The pipeline finished tasks about as fast as it accepted them (``KEPT_UP``)."""
        return self.tasks_per_s >= KEPT_UP * self.accepted_per_s


def window_rate(done_at: Iterable[float], start: float, end: float) -> float:
    """Tasks/s of those finished in ``[start, end]``."""
    if end <= start:
        return 0.0
    return round(sum(1 for t in done_at if start <= t <= end) / (end - start), 2)


#: A task's stages, as PostgreSQL stamped them: accepted -> acknowledged by the broker
#: (ingest's publish); -> the model's decision stored (the tasks topic and the decision
#: service); -> terminal (executor and downstream; automated tasks only, an escalated one
#: waits for a person there).
STAGES = ("to_broker", "to_decision", "after_decision")
Stages = dict[str, float | None]

STAGES_SQL = (
    "SELECT t.task_id::text AS task_id, "
    "extract(epoch FROM t.published_at - t.created_at) AS to_broker, "
    "extract(epoch FROM d.created_at - coalesce(t.published_at, t.created_at)) AS to_decision, "
    "extract(epoch FROM t.updated_at - d.created_at) AS after_decision "
    "FROM tasks t JOIN decisions d ON d.task_id = t.task_id AND d.source = 'MODEL' "
    "WHERE t.task_id = ANY($1::uuid[])")


def stage_summary(rows: Sequence[Stages]) -> dict[str, dict[str, float]]:
    """P50/P99 of each of ``STAGES`` over the tasks that have it."""
    parts = {name: [v for r in rows if (v := r.get(name)) is not None] for name in STAGES}
    return {name: {"n": len(values), "p50": percentile_ms(values, 0.5),
                   "p99": percentile_ms(values, 0.99)} for name, values in parts.items()}


async def stage_times(settings: Settings, task_ids: Sequence[str], escalated: set[str]
                      ) -> dict[str, Stages]:
    """Per task, the seconds each of ``STAGES`` took (escalated tasks without the last)."""
    conn = await connect(settings)
    try:
        rows = await conn.fetch(STAGES_SQL, list(task_ids))
    finally:
        await conn.close()
    return {r["task_id"]: {name: None if r[name] is None or (
        name == "after_decision" and r["task_id"] in escalated) else float(r[name])
        for name in STAGES} for r in rows}


async def run_tenants(target: Target, watch: StatusWatch, run: str, tenant_loads: list[Load],
                      seconds: float, timeout_s: float) -> Run:
    """Every tenant's client at once for ``seconds``, the reviewer bot answering escalations;
    then wait for what was placed to finish, and summarise per tenant."""
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{target.ingest_ports[0]}")
    submit = channel.unary_unary(SUBMIT_TASKS, SubmitTasksRequest.SerializeToString,
                                 SubmitTasksResponse.FromString)
    bot = ReviewerBot(target.review_ports)
    bot.start()
    begin = time.perf_counter()
    end = begin + seconds
    try:
        offers = await asyncio.gather(*(TenantClient(load, submit).run(begin, end)
                                        for load in tenant_loads))
        ids = {k: v for offer in offers for k, v in offer.ids.items()}
        await await_finished(target, watch, ids, [], timeout_s)
    finally:
        await bot.stop()
        await channel.close()
    items = [item for load in tenant_loads for item in load.items]
    escalated = await target.classify(items, ids)
    stages = await stage_times(target.settings, list(ids.values()), escalated)
    results = [tenant_result(load, offer, watch.done, escalated, stages,
                             (begin + LEAD_IN * seconds, end))
               for load, offer in zip(tenant_loads, offers)]
    steady = [(load, offer) for load, offer in zip(tenant_loads, offers) if load.role != BURST]
    steady_items = [i for load, _ in steady for i in load.items]
    steady_sent = {k: v for _, offer in steady for k, v in offer.sent_at.items()}
    steady_ids = {k: v for _, offer in steady for k, v in offer.ids.items()}
    return Run(run, seconds, results,
               lifecycle_stats(steady_items, steady_sent, steady_ids, watch.done, escalated),
               stage_summary([stages[t] for t in steady_ids.values() if t in stages]),
               len(escalated), bot.approved)


def tenant_result(load: Load, offer: Offer, done: dict[str, tuple[float, str]],
                  escalated: set[str], stages: Mapping[str, Stages],
                  window: tuple[float, float]) -> TenantResult:
    finished = [done[t][0] for t in offer.ids.values() if t in done]
    return TenantResult(
        load.role, load.tenant_id, load.rate, len(load.items), len(offer.ids), offer.invalid,
        sum(1 for i in load.items if not i.invalid) - len(offer.ids), offer.refused_calls,
        offer.refused_items, round(offer.held_s, 1), len(finished),
        window_rate(finished, *window),
        lifecycle_stats(load.items, offer.sent_at, offer.ids, done, escalated),
        stage_summary([stages[t] for t in offer.ids.values() if t in stages]))


# -- goals and output ----------------------------------------------------------------------

def goals(capacity: float, steady_p99_a: float, steady_p99_b: float, burst_rate: float,
          steady_rates_b: Sequence[float], weights: Mapping[str, float]) -> dict[str, Any]:
    """The issue's goals: the steady tenants' pooled P99 in the burst run at most
    ``P99_GOAL`` times the no-burst run's; the burst tenant's throughput in the burst run at
    least its weighted share of capacity, C x w / sum(w) (the floor). The work-conserving
    share (C less what the steady tenants took, never under the floor) is reported beside."""
    ratio = round(steady_p99_b / steady_p99_a, 3) if steady_p99_a else 0.0
    share = capacity * weights[BURST] / sum(weights.values())
    conserving = max(share, capacity - sum(steady_rates_b))
    return {
        "steady_p99_ms": {"no burst": steady_p99_a, "burst": steady_p99_b},
        "steady_p99_ratio": ratio,
        f"steady_p99_ratio<={P99_GOAL:.2f}": bool(steady_p99_a) and ratio <= P99_GOAL,
        "burst_tasks_per_s": burst_rate,
        "weighted_share_tasks_per_s": round(share, 2),
        "burst_share_ratio": round(burst_rate / share, 3) if share else 0.0,
        "burst_share_ratio>=1": bool(share) and burst_rate >= share,
        "work_conserving_share_tasks_per_s": round(conserving, 2),
        "burst_vs_work_conserving": round(burst_rate / conserving, 3) if conserving else 0.0,
    }


def print_runs(runs: Sequence[Run]) -> None:
    print_table("Isolation: per tenant (latency from the accepted call to terminal status)",
                ["run", "tenant", "offered/s", "accepted", "unsent", "refused", "held s",
                 "done", "done/s", "p50 ms", "p95 ms", "p99 ms", "auto p99", "esc p99"],
                [[run.name, t.role, t.offered_rate, t.accepted, t.unsent,
                  f"{t.refused_calls}/{t.refused_items}", t.held_s, t.completed,
                  t.tasks_per_s, t.latency_ms["all"]["p50"], t.latency_ms["all"]["p95"],
                  t.latency_ms["all"]["p99"], t.latency_ms["automated"]["p99"],
                  t.latency_ms["escalated"]["p99"]] for run in runs for t in run.tenants])
    print("(refused: calls/items refused with RESOURCE_EXHAUSTED; held s: time the client "
          "waited out retry hints; unsent: valid items not placed by the run's end)")
    rows = []
    for run in runs:
        burst = next(t for t in run.tenants if t.role == BURST)
        for who, stages in (("steady (pooled)", run.steady_stages_ms),
                            ("burst", burst.stages_ms)):
            rows.append([run.name, who, *(stages[name][q] for name in STAGES
                                          for q in ("p50", "p99"))])
    print_table("Where the time goes, ms (PostgreSQL's stamps): accepted -> broker ack "
                "(ingest); -> model decision stored (tasks topic, decision service); "
                "-> terminal (automated tasks)",
                ["run", "tenants", "to broker p50", "p99", "to decision p50", "p99",
                 "after decision p50", "p99"], rows)


def print_goals(result: dict[str, Any], capacity: float, runs: Sequence[Run]) -> None:
    def verdict(met: bool) -> str:
        return "PASS" if met else "MISS"

    print("\npipeline in the runs' windows, all tenants: " + ", ".join(
        f"{run.name} {run.tasks_per_s:.1f} of {run.accepted_per_s:.1f} tasks/s accepted"
        for run in runs) + f" (capacity C {capacity:.1f})")
    if not runs[0].kept_up:
        print(f"note: the {runs[0].name} run did not keep up with its own load (under "
              f"{KEPT_UP:.0%} of what it accepted finished in the window): the machine could "
              "not carry even the steady load, so the P99 comparison says little")

    p99 = result["steady_p99_ms"]
    print(f"steady tenants' P99 (pooled): {p99['no burst']:.0f} ms without the burst, "
          f"{p99['burst']:.0f} ms with it: x{result['steady_p99_ratio']:.2f} "
          f"(goal <= {P99_GOAL:.2f}): {verdict(result[f'steady_p99_ratio<={P99_GOAL:.2f}'])}")
    print(f"burst tenant in the burst run: {result['burst_tasks_per_s']:.1f} tasks/s vs its "
          f"weighted share {result['weighted_share_tasks_per_s']:.1f} (C x w / sum w): "
          f"x{result['burst_share_ratio']:.2f} (goal >= 1): "
          f"{verdict(result['burst_share_ratio>=1'])}; work-conserving share "
          f"{result['work_conserving_share_tasks_per_s']:.1f} tasks/s: "
          f"x{result['burst_vs_work_conserving']:.2f}")


def tree() -> str:
    """The commit measured, ``-dirty`` when the working tree had changes."""
    done = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    return done.stdout.strip()


# -- the benchmark -------------------------------------------------------------------------

def measure(target: Target, plan: argparse.Namespace, pool: Pool
            ) -> tuple[Phase, list[Run]]:
    """Warm-up, capacity (saturation), then the no-burst and burst runs at its rates."""

    async def go() -> tuple[Phase, list[Run]]:
        watch = StatusWatch(target.settings)
        await watch.start()
        try:
            await run_phase(target, watch, workload(plan.warmup, plan.seed + 1, pool,
                                                    kafka_share=0.0, tag="warm"),
                            max(50.0, plan.warmup / 4), "warm-up", plan.timeout)
            saturation = await run_phase(
                target, watch, workload(plan.tasks, plan.seed, pool, kafka_share=0.0),
                plan.rate, "saturation", plan.timeout, max_backlog=plan.max_backlog)
            capacity = saturation.sustained_tasks_per_s
            runs = []
            for run in RUNS:
                print(f"{run} run: {rates(capacity, run == 'burst')} tasks/s for "
                      f"{plan.seconds:.0f}s ...", file=sys.stderr)
                runs.append(await run_tenants(
                    target, watch, run, loads(run, capacity, plan.seconds, plan.seed, pool),
                    plan.seconds, plan.timeout))
            return saturation, runs
        finally:
            await watch.stop()

    return asyncio.run(go())


def burst_run_weights(settings: Settings) -> dict[str, float]:
    """Each role's weight in the burst run, as the pipeline was told (``--setting
    tenant_weights=...`` may change ``WEIGHT``'s)."""
    weights = parse_weights(settings.tenant_weights)
    return {role: weights.get(tenant, 1.0) for role, tenant in tenant_ids("burst").items()}


def run(infra: Settings, state: Path, plan: argparse.Namespace, json_path: Path
        ) -> dict[str, Any]:
    changed = {**PIPELINE_BENCH_SETTINGS, "tenant_weights": weights_setting(),
               **setting_changes(plan.setting, infra)}
    settings = isolated(infra, "isolation", **changed)
    with switchyard_pipeline(settings, state / "isolation"):
        pool = asyncio.run(calibrate(settings, load_docs()))
        saturation, runs = measure(switchyard_target(settings), plan, pool)
    capacity = saturation.sustained_tasks_per_s
    print_table("Capacity C: saturation, the same mix (sustained: 10th-90th percentile "
                "completions)", ["phase", "offered/s", "done", "missing", "sustained/s",
                                 "p50 ms", "p99 ms", "steady r/s", "burst 10r/s"],
                [[saturation.phase, saturation.offered_rate, saturation.completed,
                  saturation.missing, capacity, saturation.latency_ms["all"]["p50"],
                  saturation.latency_ms["all"]["p99"], rates(capacity, False)["steady-1"],
                  rates(capacity, True)[BURST]]])
    print_runs(runs)
    no_burst, burst = runs
    burst_b = next(t for t in burst.tenants if t.role == BURST)
    result = goals(capacity, no_burst.steady_latency_ms["all"]["p99"],
                   burst.steady_latency_ms["all"]["p99"], burst_b.tasks_per_s,
                   [t.tasks_per_s for t in burst.tenants if t.role != BURST],
                   burst_run_weights(settings))
    print_goals(result, capacity, runs)
    data = {"capacity_tasks_per_s": capacity, "saturation": asdict(saturation),
            "runs": [{**asdict(r), "tasks_per_s": r.tasks_per_s,
                      "accepted_per_s": r.accepted_per_s, "kept_up": r.kept_up}
                     for r in runs],
            "goals": {**result, "no_burst_kept_up": no_burst.kept_up},
            "plan": {**vars(plan), "steady_share": STEADY_SHARE,
                     "burst_factor": BURST_FACTOR, "tick_s": TICK_S,
                     "max_in_flight_per_tenant": MAX_IN_FLIGHT, "lead_in": LEAD_IN},
            "workload": {"documents": len(pool.docs), "automated_pool": len(pool.automated)},
            "settings_changed": changed, "ingest_max_backlog": settings.ingest_max_backlog,
            "tree": tree()}
    write_json(json_path, data)
    return data


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=0.0,
                   help="length of each run, no burst and burst (60; quick 12)")
    p.add_argument("--tasks", type=int, default=0,
                   help="capacity: saturation workload (3000; quick 400)")
    p.add_argument("--rate", type=float, default=4000.0, help="offered tasks/s, saturation")
    p.add_argument("--max-backlog", type=int, default=1000,
                   help="saturation: most sent tasks unfinished at once (0: unbounded)")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--timeout", type=float, default=300.0,
                   help="longest wait for a phase's tasks to finish")
    p.add_argument("--quick", action="store_true", help="short smoke run (or BENCH_QUICK=1)")
    p.add_argument("--setting", action="append", default=[], metavar="NAME=VALUE",
                   help="change a setting of the pipeline measured, e.g. "
                        "ingest_max_backlog=1000 (repeatable; recorded in the JSON)")
    p.add_argument("--json", type=Path, default=RESULTS / "isolation.json")
    return p


def configure(args: argparse.Namespace) -> argparse.Namespace:
    quick = quick_mode(args.quick)
    args.seconds = args.seconds or (12.0 if quick else 60.0)
    args.tasks = args.tasks or (400 if quick else 3000)
    args.warmup = 100 if quick else 200
    return args


def main(argv: list[str] | None = None) -> int:
    return standalone(parser, configure, run, argv)


if __name__ == "__main__":
    sys.exit(main())
