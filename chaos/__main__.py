"""``python -m chaos [--quick] [--tasks N] [--seed S] [--json PATH]``: run the reliability
suite, print what was injected and the invariants, exit 1 if any invariant failed."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from dataclasses import asdict, replace
from pathlib import Path

from chaos import FULL, QUICK, run, steps
from switchyard.runtime import stderr_progress

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the short version CI runs")
    parser.add_argument("--tasks", type=int, help="workload size (default: 3000, quick 300)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "chaos.json")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="keep the stack's state (service logs) in DIR instead of a temp dir")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    config = QUICK if args.quick else FULL
    if args.tasks:
        config = replace(config, tasks=args.tasks)
    if args.seed is not None:
        config = replace(config, seed=args.seed)
    with stderr_progress() as bar:   # stderr, terminal only
        task = bar.add_task("chaos run", total=len(steps(config)))

        def on_step(step: str) -> None:
            bar.update(task, advance=1, description=f"chaos run: {step}")

        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            report, codes = run(config, args.keep.absolute(), on_step)
        else:
            with tempfile.TemporaryDirectory(prefix="switchyard-chaos-") as tmp:
                report, codes = run(config, Path(tmp), on_step)
    print("\nfaults injected:")
    for line in report.faults:
        print(f"  {line}")
    print(f"\nrestarts by the supervisor: {report.restarts}")
    print(f"of them while PostgreSQL was stopped or just back: "
          f"{report.restarts_during_postgres_outage or 'none'}")
    print(f"exit codes at the final SIGTERM: {codes}\n")
    width = max(len(name) for name, _ in report.rows())
    for name, value in report.rows():
        print(f"  {name:<{width}}  {value}")
    for example in report.lost_examples:
        print(f"  lost: {example}")
    verdict = "PASS" if report.ok else "FAIL"
    print(f"\n{verdict} in {report.seconds:.0f}s")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"config": asdict(config), "report": report.to_json(),
                                     "exit_codes": codes}, indent=2))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
