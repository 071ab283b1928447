"""The classroom signals benchmark end to end on a tiny load: both pipelines (the
pass-through and the real ingest + decision services) account for every signal sent, the
windows' own counts agree with what was sent, and the soak samples both processes' memory.
No timing is asserted: rates are whatever this machine gives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import signals_bench
from switchyard.stack import EmbeddedStack

pytestmark = pytest.mark.integration


def test_the_signals_benchmark_runs_end_to_end(stack: EmbeddedStack, tmp_path: Path) -> None:
    args = signals_bench.configure(signals_bench.parser().parse_args(
        ["--classrooms", "2", "--load-seconds", "130", "--soak-s", "6"]))
    out = tmp_path / "signals.json"
    result = signals_bench.run(stack.settings, tmp_path, args, out)
    assert json.loads(out.read_text())["goal"]["signals_per_s"] == 20_000
    base, real = result["phases"]
    assert base["pipeline"] == "pass-through" and real["pipeline"] == "switchyard"
    for phase in (base, real):
        assert phase["frames_sent"] == 2 * 130
        assert phase["signals_done"] == phase["signals_sent"] and phase["missing_signals"] == 0
        assert phase["whole_signals_per_s"] > 0
    # the windows counted every signal of the frames they cover (admitted + dropped)
    assert real["windows"] >= 2 * 2
    assert real["accounted_by_pipeline"] == real["signals_done"]
    assert set(real["cpu_us_per_signal"]) >= {"ingest", "decision", "kafka"}
    soak = result["soak"]
    assert soak["frames"] > 0 and set(soak["samples"]) == {"ingest", "decision"}
    assert all(len(v) >= 3 for v in soak["samples"].values())
