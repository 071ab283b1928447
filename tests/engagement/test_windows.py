"""Unit tests of the engagement windows (pure: no broker, no database)."""

from __future__ import annotations

import pytest

from services.decision.engagement.windows import (
    HOPPING,
    TUMBLING,
    ClassWindow,
    Mark,
    SessionWindows,
    WindowShape,
)
from switchyard.signals import SIGNALS_PER_SEAT
from switchyard.v1 import AdmittedFrame, AdmittedSeat, Posture, SeatSignal

T0 = 1_800_000_000  # a multiple of 10 and 60


def frame(t: float, students: dict[str, bool] | None = None, device: str = "cam",
          checked_in: tuple[str, ...] = (), dropped: int = 0, expected: int = 0,
          session: str = "s1", audio: float | None = 0.5) -> AdmittedFrame:
    """A frame at second ``t``: each student seated (value: individual consent)."""
    students = students or {}
    seats = [AdmittedSeat(seat=SeatSignal(seat_id=f"seat-{name}", occupied=True, subject_ref=name,
                                          face_forward=True, posture=Posture.POSTURE_UPRIGHT),
                          individual=individual)
             for name, individual in students.items()]
    f = AdmittedFrame(tenant_id="acme", classroom_id="room-1", session_id=session,
                      device_id=device, seats=seats, checked_in=list(checked_in),
                      expected_students=expected, dropped_no_consent=dropped,
                      signals=SIGNALS_PER_SEAT * len(seats) + dropped + len(checked_in))
    f.observed_at.FromSeconds(int(t))
    f.observed_at.nanos = int((t - int(t)) * 1e9)
    if audio is not None:
        f.audio_level = audio
    return f


def engine(lateness: float = 5, idle: float = 600) -> SessionWindows:
    return SessionWindows([WindowShape.tumbling(10), WindowShape.hopping(20, 10)], lateness, idle)


def feed(w: SessionWindows, frames: list[AdmittedFrame], start_offset: int = 0,
         partition: int = 0, now: float = 0.0) -> None:
    for i, f in enumerate(frames):
        key = w.key_of(f)
        if not w.known(key):
            w.restore(key, partition, {})
        w.add(f, partition, start_offset + i, now)


def tumbling(closed: list[ClassWindow]) -> list[ClassWindow]:
    return [c for c in closed if c.kind == TUMBLING]


def test_tumbling_and_hopping_ranges_come_from_faust() -> None:
    assert WindowShape.tumbling(10).ranges(T0 + 3.5) == [(T0, T0 + 10)]
    assert WindowShape.tumbling(10).ranges(T0 + 10) == [(T0 + 10, T0 + 20)]
    assert WindowShape.hopping(20, 10).ranges(T0 + 12) == [(T0, T0 + 20), (T0 + 10, T0 + 30)]
    assert WindowShape.hopping(2, 1).ranges(T0 + 0.5) == [(T0 - 1, T0 + 1), (T0, T0 + 2)]


def test_a_window_closes_when_the_watermark_passes_its_end() -> None:
    w = engine(lateness=5)
    feed(w, [frame(T0 + s, {"a": True, "b": False}) for s in range(0, 14)])
    assert tumbling(w.close_due(0)) == []  # watermark T0+13-5 = T0+8 < T0+10
    feed(w, [frame(T0 + 15, {"a": True})], start_offset=14)
    closed = tumbling(w.close_due(0))
    assert [(c.start, c.end) for c in closed] == [(T0, T0 + 10)]
    window = closed[0]
    assert window.students == 2 and window.signals == 10 * 2 * SIGNALS_PER_SEAT
    assert window.subjects["a"].present == 10 and window.occupancy == 1.0
    assert window.audio_level == pytest.approx(0.5)


def test_late_within_the_lateness_is_counted_beyond_it_dropped_and_counted_late() -> None:
    w = engine(lateness=5)
    feed(w, [frame(T0 + s, {"a": True}) for s in (1, 2, 12)])
    feed(w, [frame(T0 + 3, {"a": True})], start_offset=3)   # 9 s late: window end+5 > T0+12
    feed(w, [frame(T0 + 16, {"a": True})], start_offset=4)  # watermark T0+11: [T0, T0+10) due
    closed = tumbling(w.close_due(0))
    assert closed[0].subjects["a"].present == 3 and closed[0].late == 0
    # the window has closed: a frame for it now is late, dropped, and reported with the next
    feed(w, [frame(T0 + 4, {"a": True}), frame(T0 + 5, {"a": True}, device="other")],
         start_offset=5)
    feed(w, [frame(T0 + 30, {"a": True})], start_offset=7)
    closed = tumbling(w.close_due(0))
    assert [c.start for c in closed] == [T0 + 10]
    assert closed[0].late == 2 * SIGNALS_PER_SEAT and closed[0].subjects["a"].present == 2


def test_a_frame_beyond_the_lateness_of_a_window_never_opened_is_late() -> None:
    w = engine(lateness=5)
    feed(w, [frame(T0 + 40, {"a": True}), frame(T0 + 3, {"a": True})])
    mark = w.sessions[("acme", "room-1", "s1")].marks[TUMBLING]
    assert mark.late_pending == SIGNALS_PER_SEAT
    assert all(window.start >= T0 + 20 for window in w.sessions[("acme", "room-1", "s1")]
               .windows.values())


def test_duplicates_count_each_student_second_once() -> None:
    w = engine()
    same = [frame(T0 + 1, {"a": True, "b": True}) for _ in range(50)]  # a flooding sensor
    other = frame(T0 + 1, {"a": True}, device="cam-2")  # a second camera, same second
    feed(w, [*same, other, frame(T0 + 30)])
    window = tumbling(w.close_due(0))[0]
    assert window.subjects["a"].present == 1 and window.subjects["b"].present == 1
    assert window.signals == 2 * SIGNALS_PER_SEAT
    assert window.duplicates == 49 * 2 * SIGNALS_PER_SEAT + SIGNALS_PER_SEAT


def test_attendance_counts_distinct_students_seated_or_checked_in() -> None:
    w = engine()
    feed(w, [frame(T0 + 1, {"a": True}, checked_in=("c",), expected=4, dropped=5),
             frame(T0 + 2, {"a": True, "b": False}, expected=4), frame(T0 + 30)])
    window = tumbling(w.close_due(0))[0]
    assert window.present == {"a", "b", "c"} and window.expected == 4
    assert window.dropped_no_consent == 5
    assert window.subjects["c"].checked_in and window.subjects["c"].present == 0
    assert window.individual == {"a": True, "b": False}


@pytest.mark.parametrize("students", [2, 3])
def test_students_in_a_window_is_the_k_anonymity_count(students: int) -> None:
    w = engine()
    feed(w, [frame(T0 + 1, {f"p{i}": False for i in range(students)}), frame(T0 + 30)])
    assert tumbling(w.close_due(0))[0].students == students


def test_idle_sessions_close_by_wall_clock() -> None:
    w = engine(lateness=5, idle=30)
    feed(w, [frame(T0 + 1, {"a": True})], now=100)
    assert w.close_due(120) == []
    closed = w.close_due(130)
    assert {c.kind for c in closed} == {TUMBLING, HOPPING} and len(closed) == 3
    mark = w.sessions[("acme", "room-1", "s1")].marks[TUMBLING]
    assert mark.closed_until == T0 + 10
    w.persisted()
    w.forget_idle()
    assert not w.sessions


def test_replay_after_a_restart_rebuilds_open_windows_and_skips_closed_ones() -> None:
    frames = [frame(T0 + s, {"a": True, "b": True}) for s in range(0, 25)]
    # run 1: everything in one pass; closes [T0, T0+10) at watermark T0+19
    first = engine(lateness=5)
    feed(first, frames[:20])
    closed_first = tumbling(first.close_due(0))
    marks = {kind: Mark(m.closed_until, m.max_observed, m.late_pending, m.processed_offset)
             for _, kind, m in first.persisted()}
    low = first.lowest_offsets()[0]
    # run 2: a new process restores the marks and re-reads from the lowest offset still needed
    second = engine(lateness=5)
    second.restore(("acme", "room-1", "s1"), 0, marks)
    for offset in range(low, 25):
        second.add(frames[offset], 0, offset, 0)
    feed(first, frames[20:], start_offset=20)
    for one, two in ((first, second),):
        a = {(c.kind, c.start): (c.signals, c.subjects["a"].present, c.late)
             for c in one.close_due(10_000)}
        b = {(c.kind, c.start): (c.signals, c.subjects["a"].present, c.late)
             for c in two.close_due(10_000)}
        assert a == b and a  # same windows, same counts: nothing closed twice, nothing lost
    assert all(c.start != T0 for c in tumbling(second.close_due(10_000)))
    assert closed_first[0].start == T0


def test_lowest_offsets_follow_the_oldest_open_window_per_partition() -> None:
    w = engine()
    feed(w, [frame(T0 + 1), frame(T0 + 12)], partition=0, start_offset=7)
    feed(w, [frame(T0 + 1, session="s2")], partition=3, start_offset=40)
    assert w.lowest_offsets() == {0: 7, 3: 40}


def test_a_window_reaching_before_the_lesson_scores_presence_over_the_observed_seconds() -> None:
    w = engine(lateness=0)
    # the lesson starts at T0: the hopping window [T0-10, T0+10) saw only its last 10 seconds
    feed(w, [frame(T0 + s, {"a": True}) for s in range(10)])
    feed(w, [frame(T0 + s, {}) for s in range(10, 31)], start_offset=10)
    closed = {(c.kind, c.start): c for c in w.close_due(0)}
    first = closed[(HOPPING, T0 - 10)]
    ((_, student),) = first.scored_subjects()
    assert first.observed_seconds == 10 and student.vector(0.0)[0] == 1.0
    # a student there for half of a fully observed window: present half the time
    ((_, half),) = closed[(HOPPING, T0)].scored_subjects()
    assert half.vector(0.0)[0] == 0.5
