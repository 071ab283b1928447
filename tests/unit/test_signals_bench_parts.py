"""The signals benchmark's pure parts: the ledger of what was sent (frames and signals per
classroom session and second, summed over a window's span), the sustained rate between 10%
and 90% of the signals accounted for, and the memory-growth summary of a soak."""

from __future__ import annotations

import pytest

from bench.passthrough import SIGNALS_HEADER
from bench.signals_bench import Ledger, rss_growth, sustained, workload
from switchyard.signals import count_signals
from switchyard.v1 import SignalFrame


def test_the_ledger_sums_what_was_sent_for_a_window() -> None:
    ledger = Ledger("t")
    for second in range(100, 160):
        ledger.add("room-001", "s1", second, 151)
    ledger.add("room-002", "s2", 100, 150)
    assert (ledger.frames, ledger.signals) == (61, 60 * 151 + 150)
    assert ledger.window("room-001", "s1", 120, 180) == (40, 40 * 151)
    assert ledger.window("room-001", "s1", 0, 101) == (1, 151)
    assert ledger.window("room-001", "s1", 160, 220) == (0, 0)
    assert ledger.window("room-001", "other", 0, 10**10) == (0, 0)
    with pytest.raises(ValueError):
        ledger.add("room-001", "s1", 120, 151)   # out of time order


def test_the_workload_carries_its_signal_count_and_matches_its_ledger() -> None:
    frames, ledger = workload(3, 20, "bench-load", seed=5, close_after_s=71)
    counted, closing = frames[:60], frames[60:]
    assert len(counted) == ledger.frames == 60
    assert sum(f.signals for f in counted) == ledger.signals
    for item in counted:
        assert dict(item.headers)[SIGNALS_HEADER] == str(item.signals).encode()
        assert count_signals(SignalFrame.FromString(item.value)) == item.signals
    # one closing frame per classroom, a window and the lateness after its last second,
    # worth nothing to the pass-through's count and outside the ledger
    assert len(closing) == 3 and all(item.kind == "closing" for item in closing)
    last = {}
    for item in counted:
        frame = SignalFrame.FromString(item.value)
        last[frame.classroom_id] = frame.observed_at.seconds
    for item in closing:
        frame = SignalFrame.FromString(item.value)
        assert frame.observed_at.seconds == last[frame.classroom_id] + 71
        assert dict(item.headers)[SIGNALS_HEADER] == b"0"
        assert ledger.window(frame.classroom_id, frame.session_id, 0, 10**10)[0] == 20
    # the classes start a few seconds apart
    assert len(set(last.values())) == 3


def test_sustained_is_taken_between_a_tenth_and_nine_tenths() -> None:
    # a slow start, then 100 signals a second, then a long tail
    points = [(0.0, 1, 50), (5.0, 1, 50)] + [(10.0 + i, 1, 100) for i in range(98)] \
        + [(200.0, 1, 100)]
    total = sum(p[2] for p in points)
    signals_per_s, frames_per_s = sustained(points, total)
    assert signals_per_s == pytest.approx(100.0, rel=0.02)
    assert frames_per_s == pytest.approx(1.0, rel=0.02)
    assert sustained([(0.0, 1, 10)], 10) == (0.0, 0.0)


def test_memory_growth_tells_flat_from_growing() -> None:
    flat = rss_growth([(10.0 * i, 200.0 + (i % 3)) for i in range(60)])
    assert flat["flat"] and abs(flat["growth_mb"]) <= 2 and abs(flat["slope_mb_per_min"]) < 1
    leak = rss_growth([(10.0 * i, 200.0 + 2.0 * i) for i in range(60)])
    assert not leak["flat"] and leak["growth_mb"] > 90
    assert leak["slope_mb_per_min"] == pytest.approx(12.0)
    assert rss_growth([(0.0, 1.0)]) == {}
