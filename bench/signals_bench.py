"""Classroom signals benchmark: raw signals/s end to end through ingest's signal processor
and decision's engagement processor, against a pass-through of the same topics, in the same
run; then a memory soak.

``python -m bench.signals_bench [--quick] [--soak-s S]`` starts the embedded broker,
PostgreSQL and Triton once, then pushes the same seeded classroom workload
(``switchyard.signals``: C classrooms x 30 seats, one frame per classroom-second, serialised
before the clock starts) as fast as the broker takes it through two pipelines in turn:

- pass-through: ``bench.passthrough`` signals-ingest consumes ``classroom-signals`` and writes
  the same bytes to ``classroom-signals-admitted``; signals-decision consumes that (same batch
  agent, same batch settings as the real processors, no processing) and says per batch on
  ``engagement-windows`` how much it took;
- switchyard: the real ingest (validation, consent, pseudonyms -> AdmittedFrame) and decision
  (windows per class session, Triton scoring, PostgreSQL, EngagementWindow records) services,
  with class-analytics consent granted for 90% of the students beforehand.

End to end is measured where each pipeline ends, on ``engagement-windows``: the benchmark
attributes to each closed tumbling window the frames and signals it sent for that classroom,
session and time span (and reports beside it what the windows themselves counted, admitted +
dropped for want of consent), so both pipelines are timed from the first frame sent to the
last signal accounted for. *Sustained* is the rate between 10% and 90% of the signals
accounted for (steady state, without the start-up and the tail); *whole* is everything over
the whole span. A signal is what ``signals.proto`` counts (each of a seat's five
observations, each check-in, the audio level): a 30-seat frame with a microphone carries 151
signals, so frames/s is printed next to signals/s. The goal is 20,000 signals/s sustained on
2 cores.

The classrooms' classes start a second or two apart (``stagger_s``), so their windows close
at different moments and progress is seen smoothly. After its last frame each classroom sends
one closing frame a window and the allowed lateness later (not counted): it moves the
session's watermark past the workload's last window, which then closes on event time instead
of after ``signal_idle_close_s`` (30 s) of quiet. No setting is changed for the benchmark.

The soak (``--soak-s``, default 600; 20 in ``--quick``) then feeds the real pipeline at 70%
of the sustained rate measured (at most 20,000 signals/s) from the same classrooms and
students (new sessions, earlier, their device clocks running as fast as the rate needs), and
samples the resident memory of the ingest and decision processes; it reports their growth
from the first to the last fifth of the soak, the slope over its second half, and whether the
pipeline kept up (every signal of the soak accounted for in a window).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psutil
from aiokafka import AIOKafkaConsumer

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
from bench.passthrough import SIGNALS_HEADER
from switchyard import Settings
from switchyard.messaging import CONTENT_TYPE_HEADER, ENGAGEMENT_WINDOWS, JSON_MEDIA_TYPE
from switchyard.runtime import service_specs
from switchyard.signals import (
    Emission,
    PreparedFrame,
    SignalProducer,
    SimulationConfig,
    consent_plan,
    grant_consents,
    prepare,
    simulate,
)
from switchyard.stack import ServiceSpec
from switchyard.v1 import EngagementWindow, SignalFrame, WindowKind

GOAL_SIGNALS_PER_S = 20_000
#: Stop waiting when nothing more was accounted for this long (the rest counts as missing).
STALL_S = 30.0
SEATS = 30


# -- the workload and what it is worth -----------------------------------------------------

@dataclass
class Ledger:
    """What the load generator sent, per classroom session and second: frames and signals."""

    tenant_id: str
    frames: int = 0
    signals: int = 0
    seconds: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    counts: dict[tuple[str, str], list[tuple[int, int]]] = field(default_factory=dict)

    def add(self, classroom: str, session: str, second: int, signals: int) -> None:
        key = (classroom, session)
        seconds = self.seconds.setdefault(key, [])
        counts = self.counts.setdefault(key, [])
        frames_before, signals_before = counts[-1] if counts else (0, 0)
        if seconds and second < seconds[-1]:
            raise ValueError("the ledger takes frames in time order per classroom")
        seconds.append(second)
        counts.append((frames_before + 1, signals_before + signals))
        self.frames += 1
        self.signals += signals

    def window(self, classroom: str, session: str, start_s: int, end_s: int
               ) -> tuple[int, int]:
        """Frames and signals sent for ``[start_s, end_s)`` of one classroom session."""
        seconds = self.seconds.get((classroom, session))
        if not seconds:
            return 0, 0
        counts = self.counts[(classroom, session)]
        lo = bisect.bisect_left(seconds, start_s)
        hi = bisect.bisect_left(seconds, end_s)
        if hi <= lo:
            return 0, 0
        before = counts[lo - 1] if lo else (0, 0)
        return counts[hi - 1][0] - before[0], counts[hi - 1][1] - before[1]


def bench_config(classrooms: int, seconds: int, tenant_id: str, seed: int,
                 start: datetime | None = None) -> SimulationConfig:
    """Classrooms whose classes start a few seconds apart, so their windows do not all
    close at the same moment (progress is seen smoothly, not in one lump a minute)."""
    return SimulationConfig(classrooms=classrooms, seats=SEATS, seconds=seconds,
                            tenant_id=tenant_id, seed=seed, start=start, stagger_s=60)


def counted(emission: Emission, ledger: Ledger) -> PreparedFrame:
    """An emission serialised with its signal count in the ``x-bench-signals`` header (the
    real services ignore it), entered in the ledger."""
    item = prepare(emission)
    item.headers.append((SIGNALS_HEADER, str(item.signals).encode()))
    frame = emission.frame
    ledger.add(frame.classroom_id, frame.session_id, frame.observed_at.seconds, item.signals)
    return item


def closing_frames(last: dict[str, SignalFrame], after_s: float) -> list[PreparedFrame]:
    """One frame per classroom ``after_s`` past its last second: it moves the session's
    watermark past every window of the workload, so they close on event time instead of
    waiting ``signal_idle_close_s`` of quiet. Not in the ledger, worth 0 in the header."""
    frames = []
    for frame in last.values():
        closing = SignalFrame()
        closing.CopyFrom(frame)
        closing.observed_at.FromSeconds(frame.observed_at.seconds + math.ceil(after_s))
        item = prepare(Emission(0, closing.classroom_id, closing, "closing"))
        item.headers.append((SIGNALS_HEADER, b"0"))
        frames.append(item)
    return frames


def workload(classrooms: int, seconds: int, tenant_id: str, seed: int,
             start: datetime | None = None, close_after_s: float = 71.0
             ) -> tuple[list[PreparedFrame], Ledger]:
    """The frames of a seeded simulation, serialised, their ledger, and a closing frame per
    classroom ``close_after_s`` (a window and the allowed lateness) after its last."""
    ledger = Ledger(tenant_id)
    frames = []
    last: dict[str, SignalFrame] = {}
    for emission in simulate(bench_config(classrooms, seconds, tenant_id, seed, start)):
        frames.append(counted(emission, ledger))
        last[emission.key] = emission.frame
    return frames + closing_frames(last, close_after_s), ledger


def close_after(settings: Settings) -> float:
    """How far past a classroom's last second a frame closes all its tumbling windows."""
    return settings.signal_window_s + settings.signal_allowed_lateness_s + 1


# -- the end of the pipeline ---------------------------------------------------------------

class WindowSink:
    """Reads ``engagement-windows`` and turns what appears there into progress: the frames
    and signals of the ledger each closed tumbling window covers (the real pipeline), or
    what the pass-through's per-batch records say (the baseline)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.ledger: Ledger | None = None
        self.points: list[tuple[float, int, int]] = []   # (time seen, frames, signals)
        self.frames = self.signals = 0
        self.accounted_by_pipeline = 0    # the windows' own admitted + dropped counts
        self.windows = 0
        self._seen: set[bytes] = set()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def follow(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.points, self.frames, self.signals = [], 0, 0
        self.accounted_by_pipeline = self.windows = 0

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            ENGAGEMENT_WINDOWS.full_name(self.settings),
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            auto_offset_reset="latest", enable_auto_commit=False, fetch_max_wait_ms=100)
        await self._consumer.start()
        await self._consumer.seek_to_end()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while not self._stop.is_set():
            batches = await self._consumer.getmany(timeout_ms=100, max_records=5000)
            now = time.perf_counter()
            for records in batches.values():
                for record in records:
                    self._take(now, record)

    def _take(self, now: float, record: Any) -> None:
        ledger = self.ledger
        if ledger is None or record.value is None:
            return
        headers = {k: (v or b"").decode() for k, v in record.headers or ()}
        if headers.get(CONTENT_TYPE_HEADER, "").startswith(JSON_MEDIA_TYPE):
            body = json.loads(record.value)
            self._add(now, int(body["frames"]), int(body["signals"]))
            return
        window = EngagementWindow.FromString(record.value)
        if window.kind != WindowKind.WINDOW_KIND_TUMBLING or window.tenant_id != \
                ledger.tenant_id or record.key in self._seen:
            return
        self._seen.add(record.key)
        frames, signals = ledger.window(window.classroom_id, window.session_id,
                                        window.start.seconds, window.end.seconds)
        if not frames:   # a closing frame's window
            return
        self.windows += 1
        self.accounted_by_pipeline += window.signals + window.dropped_no_consent
        self._add(now, frames, signals)

    def _add(self, now: float, frames: int, signals: int) -> None:
        self.frames += frames
        self.signals += signals
        self.points.append((now, frames, signals))

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()


def sustained(points: list[tuple[float, int, int]], total_signals: int
              ) -> tuple[float, float]:
    """Signals/s and frames/s between 10% and 90% of ``total_signals`` accounted for."""
    if len(points) < 3 or not total_signals:
        return 0.0, 0.0
    frames = signals = 0
    low = high = None
    for at, f, s in sorted(points):
        frames += f
        signals += s
        if low is None and signals >= 0.1 * total_signals:
            low = (at, frames, signals)
        if signals >= 0.9 * total_signals:
            high = (at, frames, signals)
            break
    if low is None or high is None or high[0] <= low[0]:
        return 0.0, 0.0
    span = high[0] - low[0]
    return (high[2] - low[2]) / span, (high[1] - low[1]) / span


# -- phases ----------------------------------------------------------------------------------

@dataclass
class Phase:
    pipeline: str
    frames_sent: int
    signals_sent: int
    send_s: float
    frames_done: int
    signals_done: int
    missing_signals: int
    windows: int
    accounted_by_pipeline: int
    sustained_signals_per_s: float
    sustained_frames_per_s: float
    whole_signals_per_s: float
    whole_frames_per_s: float
    cpu_us_per_signal: dict[str, float] = field(default_factory=dict)
    cores_busy: dict[str, float] = field(default_factory=dict)


async def wait_accounted(sink: WindowSink, total: int, stall_s: float) -> None:
    progress = (-1, time.monotonic())
    while sink.signals < total:
        if sink.signals != progress[0]:
            progress = (sink.signals, time.monotonic())
        elif time.monotonic() - progress[1] > stall_s:
            return
        await asyncio.sleep(0.2)


async def run_phase(name: str, settings: Settings, sink: WindowSink,
                    frames: list[PreparedFrame], ledger: Ledger,
                    meter: CpuMeter | None = None, stall_s: float = STALL_S) -> Phase:
    """Send ``frames`` as fast as the broker takes them; wait until the sink accounted for
    every signal (or nothing moved for ``stall_s``)."""
    sink.follow(ledger)
    if meter is not None:
        meter.start()
    began = time.perf_counter()
    async with SignalProducer(settings) as producer:
        report = await producer.produce(frames)
    await wait_accounted(sink, ledger.signals, stall_s)
    if meter is not None:
        meter.stop()
    rate, frame_rate = sustained(sink.points, ledger.signals)
    span = max(1e-6, max((p[0] for p in sink.points), default=began) - began)
    if report.errors:
        print(f"  {name}: {report.errors} frames not acknowledged by the broker", file=sys.stderr)
    phase = Phase(
        name, ledger.frames, ledger.signals, round(report.seconds, 2), sink.frames,
        sink.signals, ledger.signals - sink.signals, sink.windows, sink.accounted_by_pipeline,
        round(rate), round(frame_rate, 1), round(sink.signals / span),
        round(sink.frames / span, 1))
    if meter is not None and sink.signals:
        phase.cpu_us_per_signal = {n: round(1e6 * v / sink.signals, 2)
                                   for n, v in meter.used.items()}
        phase.cores_busy = meter.utilisation()
    return phase


# -- memory soak -----------------------------------------------------------------------------

def rss_growth(samples: list[tuple[float, float]]) -> dict[str, float]:
    """Resident memory (MB) over a soak: the median of its first and last fifth, the growth
    between them, the peak, and the least-squares slope over the second half (MB/min)."""
    if len(samples) < 5:
        return {}
    fifth = max(1, len(samples) // 5)
    first = statistics.median(v for _, v in samples[:fifth])
    last = statistics.median(v for _, v in samples[-fifth:])
    half = samples[len(samples) // 2:]
    xs = [t for t, _ in half]
    ys = [v for _, v in half]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var if var else 0.0
    return {"first_mb": round(first, 1), "last_mb": round(last, 1),
            "growth_mb": round(last - first, 1), "peak_mb": round(max(ys + [first]), 1),
            "slope_mb_per_min": round(60 * slope, 2),
            "flat": last - first < max(16.0, 0.05 * first)}


async def soak(settings: Settings, pids: dict[str, int], seconds: float,
               signals_per_s: float, interval_s: float, classrooms: int, seed: int,
               before: datetime) -> dict[str, Any]:
    """The real pipeline fed at ``signals_per_s`` for ``seconds``, RSS of ingest and
    decision sampled every ``interval_s``.

    The load phase's classrooms and students (their consents are granted) in new sessions
    that end 10 minutes before ``before`` (the load phase's start), their device clocks
    running as fast as needed for the rate."""
    frames_per_s = signals_per_s / (5 * SEATS + 1)
    event_seconds = max(1, math.ceil(frames_per_s * seconds / classrooms))
    config = bench_config(classrooms, event_seconds, "bench-load", seed,
                          before - timedelta(seconds=event_seconds + 600))
    ledger = Ledger(config.tenant_id)

    def frames() -> Iterator[PreparedFrame]:
        last: dict[str, SignalFrame] = {}
        for emission in simulate(config):
            yield counted(emission, ledger)
            last[emission.key] = emission.frame
        yield from closing_frames(last, close_after(settings))

    procs = {n: psutil.Process(pids[n]) for n in ("ingest", "decision") if n in pids}
    samples: dict[str, list[tuple[float, float]]] = {n: [] for n in procs}
    stop = asyncio.Event()

    async def sample() -> None:
        began = time.monotonic()
        while not stop.is_set():
            for name, proc in procs.items():
                samples[name].append((time.monotonic() - began,
                                      proc.memory_info().rss / 2**20))
            try:
                await asyncio.wait_for(stop.wait(), interval_s)
            except asyncio.TimeoutError:
                pass

    sink = WindowSink(settings)
    await sink.start()
    sink.follow(ledger)
    sampler = asyncio.create_task(sample())
    try:
        async with SignalProducer(settings) as producer:
            report = await producer.produce(frames(), rate=frames_per_s)
        stop.set()
        await sampler
        await wait_accounted(sink, ledger.signals, stall_s=STALL_S)
    finally:
        stop.set()
        await sampler
        await sink.stop()
    return {"seconds": seconds, "classrooms": classrooms, "seats": SEATS,
            "event_seconds": event_seconds,
            "offered_signals_per_s": round(report.signals_per_s),
            "offered_frames_per_s": round(report.frames_per_s, 1),
            "frames": ledger.frames, "signals": ledger.signals, "errors": report.errors,
            "signals_accounted": sink.signals,
            "kept_up": sink.signals == ledger.signals,
            "interval_s": interval_s,
            "rss": {name: rss_growth(values) for name, values in samples.items()},
            "samples": {name: [(round(t, 1), round(v, 1)) for t, v in values]
                        for name, values in samples.items()}}


# -- the run ---------------------------------------------------------------------------------

def passthrough_specs(settings: Settings) -> list[ServiceSpec]:
    return [ServiceSpec(f"passthrough-{role}", [sys.executable, "-m", "bench.passthrough",
                                                f"signals-{role}"],
                        health_port=getattr(settings, f"{role}_grpc_port"))
            for role in ("ingest", "decision")]


def load_start(args: argparse.Namespace) -> datetime:
    """The load phase's first second: its device clocks end about two minutes ago."""
    return datetime.now(timezone.utc).replace(microsecond=0) \
        - timedelta(seconds=args.load_seconds + 120)


def measure(name: str, pipeline: Pipeline, infra: Settings, args: argparse.Namespace,
            consent: bool, past: datetime) -> Phase:
    settings = pipeline.settings
    after = close_after(settings)
    warm_frames, warm_ledger = workload(4, 60, "bench-warmup", args.seed + 1, past, after)
    frames, ledger = workload(args.classrooms, args.load_seconds, "bench-load", args.seed,
                              past, after)

    async def go() -> Phase:
        if consent:
            for tenant, classrooms, seconds, seed in (
                    ("bench-warmup", 4, 60, args.seed + 1),
                    ("bench-load", args.classrooms, args.load_seconds, args.seed)):
                await grant_consents(settings, consent_plan(
                    bench_config(classrooms, seconds, tenant, seed)))
            await asyncio.sleep(2 * settings.signal_consent_refresh_s)
        sink = WindowSink(settings)
        await sink.start()
        try:
            await run_phase(f"{name} warm-up", settings, sink, warm_frames, warm_ledger,
                            stall_s=15.0)
            meter = CpuMeter({**pipeline.pids(), **infra_pids(infra),
                              "load generator": os.getpid()})
            return await run_phase(name, settings, sink, frames, ledger, meter)
        finally:
            await sink.stop()

    phase = asyncio.run(go())
    print(f"  {name}: {phase.sustained_signals_per_s} signals/s "
          f"({phase.sustained_frames_per_s} frames/s) sustained", file=sys.stderr)
    return phase


def run(infra: Settings, state: Path, args: argparse.Namespace, json_path: Path
        ) -> dict[str, Any]:
    phases: list[Phase] = []
    base_settings = isolated(infra, "sigbase")
    with Pipeline(base_settings, state / "signals-baseline",
                  passthrough_specs(base_settings)) as pipeline:
        phases.append(measure("pass-through", pipeline, infra, args, consent=False,
                              past=load_start(args)))
    real_settings = isolated(infra, "signals")
    soaked: dict[str, Any] = {}
    with Pipeline(real_settings, state / "signals",
                  service_specs(real_settings, ("ingest", "decision"))) as pipeline:
        past = load_start(args)
        phases.append(measure("switchyard", pipeline, infra, args, consent=True, past=past))
        if args.soak_s > 0:
            rate = min(GOAL_SIGNALS_PER_S, 0.7 * phases[-1].sustained_signals_per_s) \
                or GOAL_SIGNALS_PER_S / 4
            soaked = asyncio.run(soak(real_settings, pipeline.pids(), args.soak_s, rate,
                                      max(1.0, args.soak_s / 120), args.classrooms,
                                      args.seed + 2, past))
    base, real = phases
    ratio = round(real.sustained_signals_per_s / base.sustained_signals_per_s, 3) \
        if base.sustained_signals_per_s else 0.0
    print_table("Classroom signals end to end (a frame is one classroom-second of 30 seats, "
                "about 151 signals)",
                ["pipeline", "frames", "signals", "sustained signals/s", "sustained frames/s",
                 "whole signals/s", "whole frames/s", "missing signals"],
                [[p.pipeline, p.frames_done, p.signals_done, p.sustained_signals_per_s,
                  p.sustained_frames_per_s, p.whole_signals_per_s, p.whole_frames_per_s,
                  p.missing_signals] for p in phases])
    print(f"switchyard / pass-through: sustained {ratio:.2f}")
    print(f"windows: {real.windows} tumbling windows counted {real.accounted_by_pipeline} "
          f"signals (admitted + dropped without consent) of the {real.signals_done} the "
          "benchmark sent for them")
    cpu_total = sum(v for k, v in real.cpu_us_per_signal.items() if k != "load generator")
    print("CPU µs per signal, switchyard: " + ", ".join(
        f"{k} {v:.2f}" for k, v in sorted(real.cpu_us_per_signal.items(), key=lambda kv: -kv[1]))
        + f" (pipeline and infrastructure: {cpu_total:.2f})")
    cores = os.cpu_count() or 0
    met = real.sustained_signals_per_s >= GOAL_SIGNALS_PER_S
    print(f"goal >= {GOAL_SIGNALS_PER_S:,} signals/s on 2 cores: "
          f"{'MET' if met else 'NOT MET'} ({real.sustained_signals_per_s:,} signals/s, "
          f"{real.sustained_frames_per_s} frames/s sustained on {cores} cores)")
    if soaked:
        print(f"memory soak: {soaked['seconds']:.0f}s at {soaked['offered_signals_per_s']:,} "
              f"signals/s ({soaked['offered_frames_per_s']} frames/s from "
              f"{soaked['classrooms']} classrooms); the pipeline "
              + ("kept up" if soaked["kept_up"] else
                 f"accounted for {soaked['signals_accounted']:,} of {soaked['signals']:,} "
                 "signals")) 
        for name, growth in soaked["rss"].items():
            if growth:
                print(f"  {name} RSS: {growth['first_mb']} MB -> {growth['last_mb']} MB "
                      f"(growth {growth['growth_mb']:+} MB, peak {growth['peak_mb']} MB, "
                      f"second-half slope {growth['slope_mb_per_min']:+} MB/min): "
                      f"{'flat' if growth['flat'] else 'GROWING'}")
    data = {"phases": [asdict(p) for p in phases], "ratio_sustained": ratio,
            "goal": {"signals_per_s": GOAL_SIGNALS_PER_S, "met": met, "cpus": cores,
                     "sustained_signals_per_s": real.sustained_signals_per_s,
                     "sustained_frames_per_s": real.sustained_frames_per_s},
            "workload": {"classrooms": args.classrooms, "seats": SEATS,
                         "seconds": args.load_seconds, "seed": args.seed},
            "soak": soaked}
    write_json(json_path, data)
    return data


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--classrooms", type=int, default=0, help="classrooms (40; quick 10)")
    p.add_argument("--load-seconds", type=int, default=0,
                   help="seconds of class each classroom sends (300; quick 120)")
    p.add_argument("--soak-s", type=float, default=None,
                   help="memory soak seconds (600; quick 20; 0: none)")
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--quick", action="store_true", help="short smoke run (or BENCH_QUICK=1)")
    p.add_argument("--json", type=Path, default=RESULTS / "signals.json")
    return p


def configure(args: argparse.Namespace) -> argparse.Namespace:
    quick = quick_mode(args.quick)
    args.classrooms = args.classrooms or (10 if quick else 40)
    args.load_seconds = args.load_seconds or (120 if quick else 300)
    if args.soak_s is None:
        args.soak_s = 20.0 if quick else 600.0
    return args


def main(argv: list[str] | None = None) -> int:
    return standalone(parser, configure, run, argv)


if __name__ == "__main__":
    sys.exit(main())
