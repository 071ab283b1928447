"""What every benchmark shares: the embedded infrastructure, isolated pipelines, CPU meters,
py-spy profiles, tables and JSON results.

Each benchmark measures its subject and a baseline *in the same run* on the same machine, so
the figures that matter are ratios: the machine (2 shared cores on the dev boxes) is noisy,
and absolute rates move with whatever else runs there.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil

from switchyard import Settings
from switchyard.runtime import bootstrap
from switchyard.stack import EmbeddedStack, ServiceSpec, free_port, with_free_ports

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
MODELS = ROOT / "models" / "repository"
PORT_ATTRS = ("ingest_grpc_port", "decision_grpc_port", "executor_grpc_port",
              "review_grpc_port", "review_web_port", "downstream_grpc_port",
              "downstream_http_port", "ingest_rest_port")


def quick_mode(flag: bool = False) -> bool:
    """``--quick`` or ``BENCH_QUICK=1``: a short smoke run (same code paths, fewer tasks)."""
    return flag or os.environ.get("BENCH_QUICK", "").strip() not in ("", "0", "false", "no")


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()],
            "python": sys.version.split()[0]}


@contextlib.contextmanager
def infrastructure() -> Iterator[tuple[Settings, Path]]:
    """Broker, PostgreSQL and Triton, started once for a whole benchmark run."""
    with tempfile.TemporaryDirectory(prefix="switchyard-bench-") as tmp:
        state = Path(tmp)
        base = with_free_ports(Settings(model_repository=MODELS, state_dir=state / "infra"))
        with EmbeddedStack(base, state / "infra", postgres_port=free_port(),
                           model_repository=MODELS) as infra:
            yield infra.settings, state


def isolated(base: Settings, name: str, **changes: Any) -> Settings:
    """Settings for one pipeline: own topics, own schema, free ports, no metrics endpoints
    (unless ``changes`` name one, to watch a run)."""
    tag = uuid.uuid4().hex[:6]
    ports = {attr: free_port() for attr in PORT_ATTRS}
    quiet = {f"{service}_metrics_port": 0
             for service in ("ingest", "decision", "executor", "review")}
    return base.replace(
        kafka_topic_prefix=f"bench-{name}-{tag}.", postgres_schema=f"bench_{name}_{tag}",
        log_level="WARNING", **{**quiet, **ports, **changes},
    )


class Pipeline:
    """A set of service processes on isolated topics and schema (bootstrapped first)."""

    def __init__(self, settings: Settings, state: Path, specs: Sequence[ServiceSpec]) -> None:
        self.settings = settings
        self.state = state
        self.specs = list(specs)
        self.stack = EmbeddedStack(settings, state, components=(), services=self.specs)

    def __enter__(self) -> Pipeline:
        asyncio.run(bootstrap(self.settings))
        self.stack.start(timeout_s=180)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.stop()

    def pids(self) -> dict[str, int]:
        return {row.name: row.pid for row in self.stack.status() if row.pid}


def infra_pids(settings: Settings) -> dict[str, int]:
    """PostgreSQL, broker and Triton processes of the run's infrastructure (by state dir)."""
    from switchyard.stack import stack_status

    return {row.name: row.pid for row in stack_status(Path(settings.state_dir))
            if row.pid and row.name in ("kafka", "postgres", "triton")}


class CpuMeter:
    """CPU seconds used by named processes (with their children) between start and stop.

    The load generator (this process) is counted without its children: they are the stack.
    """

    def __init__(self, pids: Mapping[str, int]) -> None:
        self.procs = {}
        for name, pid in pids.items():
            with contextlib.suppress(psutil.NoSuchProcess):
                self.procs[name] = psutil.Process(pid)
        self.used: dict[str, float] = {}
        self._begin: dict[str, float] = {}
        self._wall = 0.0

    @staticmethod
    def _cpu(proc: psutil.Process) -> float:
        total = 0.0
        family = [proc] if proc.pid == os.getpid() else [proc, *proc.children(recursive=True)]
        for p in family:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
        return total

    def start(self) -> None:
        self._begin = {n: self._cpu(p) for n, p in self.procs.items()}
        self._wall = time.perf_counter()

    def stop(self) -> None:
        self.used = {n: self._cpu(p) - self._begin[n] for n, p in self.procs.items()}
        self._wall = time.perf_counter() - self._wall

    def per_item_ms(self, items: int) -> dict[str, float]:
        return {n: round(1000 * v / items, 3) for n, v in self.used.items()} if items else {}

    def utilisation(self) -> dict[str, float]:
        """Cores busy on average, per process, over the measured wall time."""
        return {n: round(v / self._wall, 2) for n, v in self.used.items()} if self._wall else {}


class PgStats:
    """PostgreSQL's own counters for one schema between two snapshots: transactions, rows
    written and scanned per table. Says how much database work a task costs."""

    QUERY = ("SELECT relname, seq_scan, seq_tup_read, coalesce(idx_scan, 0) AS idx_scan, "
             "n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables WHERE schemaname = $1")

    def __init__(self, dsn: str, schema: str) -> None:
        self.dsn = dsn
        self.schema = schema
        self._before: dict[str, Any] = {}

    async def _snapshot(self) -> dict[str, Any]:
        import asyncpg

        conn = await asyncpg.connect(self.dsn)
        try:
            await conn.execute("SELECT pg_stat_clear_snapshot()")
            db = await conn.fetchrow(
                "SELECT xact_commit, xact_rollback, tup_returned, tup_fetched "
                "FROM pg_stat_database WHERE datname = current_database()")
            tables = {r["relname"]: dict(r) for r in await conn.fetch(self.QUERY, self.schema)}
        finally:
            await conn.close()
        return {"db": dict(db), "tables": tables}

    async def start(self) -> None:
        await asyncio.sleep(0.6)  # the statistics collector reports every 500 ms
        self._before = await self._snapshot()

    async def stop(self, tasks: int) -> dict[str, Any]:
        await asyncio.sleep(0.6)
        after = await self._snapshot()
        per = max(1, tasks)
        db = {k: round((after["db"][k] - self._before["db"][k]) / per, 2)
              for k in after["db"]}
        tables = {}
        for name, row in after["tables"].items():
            old = self._before["tables"].get(name, {})
            delta = {k: row[k] - old.get(k, 0) for k in row if k != "relname"}
            if any(delta.values()):
                tables[name] = {k: round(v / per, 2) for k, v in delta.items()}
        return {"per_task_database": db, "per_task_tables": dict(sorted(
            tables.items(), key=lambda kv: -(kv[1]["n_tup_ins"] + kv[1]["n_tup_upd"]
                                             + kv[1]["idx_scan"])))}


# -- py-spy ------------------------------------------------------------------------------

class Profiler:
    """``py-spy record`` on running service processes; collapsed stacks written per service.

    Records on-CPU samples only (py-spy's default skips idle threads), so the summary ranks
    where each service spends its CPU, which is what limits a 2-core machine.
    """

    def __init__(self, pids: Mapping[str, int], out_dir: Path, rate: int = 100) -> None:
        self.pids = dict(pids)
        self.out_dir = out_dir
        self.rate = rate
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    @staticmethod
    def available() -> str | None:
        beside = Path(sys.executable).with_name("py-spy")
        return str(beside) if beside.exists() else shutil.which("py-spy")

    def start(self) -> None:
        exe = self.available()
        if exe is None:
            raise RuntimeError("py-spy is not installed (pip install py-spy; it is in the "
                               "dev extras)")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for name, pid in self.pids.items():
            out = self.out_dir / f"{name}.folded"
            self.procs[name] = subprocess.Popen(
                [exe, "record", "--pid", str(pid), "--format", "raw", "--rate", str(self.rate),
                 "--nonblocking", "--output", str(out)],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def stop(self) -> dict[str, dict[str, Any]]:
        """End the recordings (py-spy writes its output on SIGINT) and summarise them."""
        for proc in self.procs.values():
            proc.send_signal(signal.SIGINT)
        summaries = {}
        for name, proc in self.procs.items():
            try:
                _, err = proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
            path = self.out_dir / f"{name}.folded"
            if path.exists() and path.stat().st_size:
                summaries[name] = summarise_folded(path.read_text())
            else:
                summaries[name] = {"error": err.decode(errors="replace")[-500:]}
        return summaries


def _frame_name(frame: str) -> str:
    """``func (path/to/module.py:123)`` -> ``func (module.py)``; lines merged per function."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{name} ({path})"


def summarise_folded(text: str, top: int = 25) -> dict[str, Any]:
    """Rank functions by self and inclusive share of on-CPU samples in collapsed stacks."""
    self_counts: collections.Counter[str] = collections.Counter()
    incl_counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";")
                  if f and not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += count
        self_counts[frames[-1]] += count
        for frame in set(frames):
            incl_counts[frame] += count

    def ranked(counter: collections.Counter[str]) -> list[tuple[str, float]]:
        return [(k, round(100 * v / total, 1)) for k, v in counter.most_common(top)]

    return {"samples": total, "self_pct": ranked(self_counts),
            "inclusive_pct": ranked(incl_counts)}


# -- output ------------------------------------------------------------------------------

def standalone(parser: Callable[[], argparse.ArgumentParser],
               configure: Callable[[argparse.Namespace], argparse.Namespace],
               run: Callable[..., Any], argv: list[str] | None) -> int:
    """``main`` of a benchmark run on its own: its arguments, a stack of its own, one run."""
    args = configure(parser().parse_args(argv))
    with infrastructure() as (infra, state):
        run(infra, state, args, args.json)
    return 0


def percentile_ms(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of seconds, in milliseconds (0 for no values)."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) if cells else len(c)
              for i, c in enumerate(columns)]
    print(f"\n{title}")
    print("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                    for i, (c, w) in enumerate(zip(columns, widths))))
    for row in cells:
        print("  ".join(v.ljust(w) if i == 0 else v.rjust(w)
                        for i, (v, w) in enumerate(zip(row, widths))))


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) < 10 else f"{value:.0f}"
    return str(value)


def write_json(path: Path, data: Mapping[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**data, "machine": machine(),
                                "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
                               indent=2, default=str))
    print(f"results: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return path


def setting_changes(pairs: Sequence[str], base: Settings) -> dict[str, Any]:
    """``NAME=VALUE`` pairs (a benchmark's ``--setting``) as setting changes, each of its
    setting's type: what to try (a smaller backlog limit, other batch sizes, the router
    cascade off) without editing code."""
    changes: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not hasattr(base, name.strip()):
            raise ValueError(f"--setting {pair!r}: not NAME=VALUE naming a setting")
        current = getattr(base, name.strip())
        kind = type(current)
        changes[name.strip()] = text.strip().lower() in ("1", "true", "yes", "on") \
            if kind is bool else kind(text.strip())
    return changes


__all__ = ["CpuMeter", "MODELS", "PgStats", "Pipeline", "Profiler", "RESULTS", "ROOT", "infra_pids",
           "infrastructure", "isolated", "machine", "percentile_ms", "print_table",
           "quick_mode", "setting_changes", "summarise_folded", "write_json"]
