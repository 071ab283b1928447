"""``python -m bench`` (``make bench``): every benchmark in sequence on one embedded stack.

Runs end to end (vs the pass-through baseline), ingest (vs a bare gRPC server), decision
(batching vs raw Triton), scaling (1 vs 2 replicas), OCR (pages/s, batched vs one page per
request), documents (per-field accuracy on text PDFs, clean and degraded scans;
bench/documents_bench.py) and classroom signals (signals/s end to end vs a pass-through of the
same topics, then a memory soak of ``--soak-s`` seconds; bench/signals_bench.py) and
isolation (three steady tenants' P99 with and without a fourth bursting at 10x its share, and
the burst tenant's throughput against its weighted share; bench/isolation_bench.py); each
prints its table and writes ``bench/results/<name>.json``.
``--quick`` (or ``BENCH_QUICK=1``) is a short smoke run of the same code paths; ``--profile``
(or ``BENCH_PROFILE=1``) adds py-spy profiles of the services to the end-to-end run; ``--only
e2e,ingest`` (or naming them: ``python -m bench documents``) picks benchmarks.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from bench import (
    decision_bench, documents_bench, e2e_bench, ingest_bench, isolation_bench, ocr_bench,
    scaling_bench, signals_bench)
from bench._common import RESULTS, infrastructure, quick_mode
from switchyard.runtime import stderr_progress

BENCHMARKS = ("e2e", "ingest", "decision", "scaling", "ocr", "documents", "signals",
              "isolation")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run (BENCH_QUICK=1)")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy the services during the end-to-end run (BENCH_PROFILE=1)")
    parser.add_argument("--only", default=os.environ.get("BENCH_ONLY", ""),
                        help=f"comma-separated subset of {', '.join(BENCHMARKS)}")
    parser.add_argument("--soak-s", type=float,
                        default=float(os.environ["BENCH_SOAK_S"])
                        if os.environ.get("BENCH_SOAK_S") else None,
                        help="signals: memory soak seconds (600; quick 20; 0: none; "
                             "BENCH_SOAK_S)")
    parser.add_argument("names", nargs="*", metavar="BENCHMARK",
                        help="benchmarks to run, as --only (default: all)")
    args = parser.parse_args(argv)
    quick = quick_mode(args.quick)
    profile = args.profile or os.environ.get("BENCH_PROFILE", "") not in ("", "0")
    chosen = [b.strip() for b in [*args.only.split(","), *args.names] if b.strip()] \
        or list(BENCHMARKS)
    unknown = set(chosen) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s) {sorted(unknown)}; choose from {BENCHMARKS}")
    flags = ["--quick"] if quick else []
    began = time.monotonic()
    with infrastructure() as (infra, state), stderr_progress() as bar:   # stderr, terminal only
        progress = bar.add_task("benchmarks", total=len(chosen))
        for name in chosen:
            bar.update(progress, description=f"benchmark {name}")
            print(f"\n=== {name} {'(quick)' if quick else ''}", flush=True)
            if name == "e2e":
                e2e_args = e2e_bench.parser().parse_args(flags)
                e2e_bench.run(infra, state / "e2e", e2e_bench.plan_from(e2e_args),
                              RESULTS / "e2e.json", profile)
            elif name == "ingest":
                ingest_args = ingest_bench.configure(ingest_bench.parser().parse_args(flags))
                ingest_bench.run(infra, state / "ingest", ingest_args, RESULTS / "ingest.json")
            elif name == "decision":
                decision_args = decision_bench.configure(
                    decision_bench.parser().parse_args(flags))
                decision_bench.run(infra, state / "decision", decision_args,
                                   RESULTS / "decision.json")
            elif name == "ocr":
                ocr_args = ocr_bench.configure(ocr_bench.parser().parse_args(flags))
                ocr_bench.run(infra, state / "ocr", ocr_args, RESULTS / "ocr.json")
            elif name == "signals":
                signals_flags = flags + ([f"--soak-s={args.soak_s}"]
                                         if args.soak_s is not None else [])
                signals_args = signals_bench.configure(
                    signals_bench.parser().parse_args(signals_flags))
                signals_bench.run(infra, state / "signals", signals_args,
                                  RESULTS / "signals.json")
            elif name == "isolation":
                isolation_args = isolation_bench.configure(
                    isolation_bench.parser().parse_args(flags))
                isolation_bench.run(infra, state / "isolation", isolation_args,
                                    RESULTS / "isolation.json")
            elif name == "documents":
                documents_args = documents_bench.configure(
                    documents_bench.parser().parse_args(flags))
                documents_bench.run(infra, state, documents_args, RESULTS / "documents.json")
            else:
                scaling_args = scaling_bench.configure(scaling_bench.parser().parse_args(flags))
                scaling_bench.run(infra, state / "scaling", scaling_args,
                                  RESULTS / "scaling.json")
            sys.stdout.flush()
            bar.advance(progress)
    print(f"\nall benchmarks done in {time.monotonic() - began:.0f}s; results in "
          f"{RESULTS.relative_to(RESULTS.parents[1])}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
