"""Window state of class sessions: pure, no I/O (the processor feeds it and persists it).

Every admitted frame belongs to one class session (tenant, classroom, session). For each
window shape (tumbling for the timeline, hopping for sustained disengagement) faust's window
classes say which windows a second falls in; a window keeps a :class:`SubjectWindow` per
pseudonym (the features the model scores) and the class figures (occupancy, audio,
attendance, signal counts).

Time is event time: a session's watermark is the newest ``observed_at`` it has seen minus the
allowed lateness. A window closes when the watermark passes its end (or, when the session has
gone quiet, after ``idle_close_s`` of wall-clock time); a frame for a window that has closed, or
whose end the watermark has passed, is counted late and dropped.

Restart safety: what the processor persists per session (:class:`Mark`: where windows are
closed up to, the watermark, late signals not yet reported, the last offset persisted) lets a
restarted process re-read records from the lowest offset an open window still needs and
rebuild exactly the open windows, without counting any closed window again.
"""

from __future__ import annotations

import math
from functools import cached_property
from collections.abc import Iterable
from dataclasses import dataclass, field

import faust

from services.decision.engagement.features import SubjectWindow
from switchyard.signals import SIGNALS_PER_SEAT
from switchyard.v1 import AdmittedFrame, WindowKind

TUMBLING = WindowKind.WINDOW_KIND_TUMBLING
HOPPING = WindowKind.WINDOW_KIND_HOPPING

SessionKey = tuple[str, str, str]  # tenant, classroom, session


@dataclass(frozen=True)
class WindowShape:
    """A window kind with its size and step; faust's window class does the arithmetic."""

    kind: int
    size_s: float
    step_s: float

    @classmethod
    def tumbling(cls, size_s: float) -> WindowShape:
        return cls(TUMBLING, size_s, size_s)

    @classmethod
    def hopping(cls, size_s: float, step_s: float) -> WindowShape:
        return cls(HOPPING, size_s, step_s)

    @cached_property
    def _faust(self) -> faust.Window:
        if self.kind == TUMBLING:
            return faust.TumblingWindow(self.size_s)
        return faust.HoppingWindow(self.size_s, self.step_s)

    def ranges(self, t: float) -> list[tuple[float, float]]:
        """The [start, end) windows second ``t`` falls in (faust gives the starts; its ends
        are ``start + size - 0.1``, so the end is recomputed exactly)."""
        return [(round(start, 6), round(start + self.size_s, 6))
                for start, _ in self._faust.ranges(t)]


@dataclass
class Mark:
    """What is persisted of one session and window kind (``engagement_marks``)."""

    closed_until: float = -math.inf
    max_observed: float = -math.inf
    late_pending: int = 0
    processed_offset: int = -1


class FrameView:
    """What the windows need of one frame, read out of the protobuf once (a frame is counted
    into several windows: one tumbling, size/step hopping)."""

    __slots__ = ("device", "second", "admitted", "dropped", "expected", "occupancy", "audio",
                 "seated", "checked_in")

    def __init__(self, frame: AdmittedFrame, second: int) -> None:
        self.device = frame.device_id
        self.second = second
        self.admitted = max(frame.signals - frame.dropped_no_consent, 0)
        self.dropped = frame.dropped_no_consent
        self.expected = frame.expected_students
        seats = [(s.seat, s.individual, s.group) for s in frame.seats]
        self.occupancy = (sum(seat.occupied for seat, _, _ in seats) / len(seats)
                          if seats else None)
        self.audio = frame.audio_level if frame.HasField("audio_level") else None
        self.seated = [(seat.subject_ref, seat.seat_id, seat.face_forward, seat.hand_raised,
                        seat.posture, seat.head_down, individual, group)
                       for seat, individual, group in seats
                       if seat.occupied and seat.subject_ref]
        self.checked_in = list(frame.checked_in)


@dataclass
class ClassWindow:
    """One window of one class session while it is open."""

    session: SessionKey
    kind: int
    start: float
    end: float
    partition: int
    subjects: dict[str, SubjectWindow] = field(default_factory=dict)
    individual: dict[str, bool] = field(default_factory=dict)
    groups: dict[str, str] = field(default_factory=dict)
    present: set[str] = field(default_factory=set)
    frames: set[tuple[str, int]] = field(default_factory=set)
    occupancy_sum: float = 0.0
    occupancy_n: int = 0
    audio_sum: float = 0.0
    audio_n: int = 0
    expected: int = 0
    signals: int = 0
    dropped_no_consent: int = 0
    duplicates: int = 0
    late: int = 0
    min_offset: int = -1

    @property
    def students(self) -> int:
        """Consenting students seen (seated or checked in): the k-anonymity count."""
        return len(self.present)

    @property
    def occupancy(self) -> float:
        return self.occupancy_sum / self.occupancy_n if self.occupancy_n else 0.0

    @property
    def audio_level(self) -> float | None:
        return self.audio_sum / self.audio_n if self.audio_n else None

    def add(self, frame: FrameView, offset: int) -> None:
        if self.min_offset < 0 or offset < self.min_offset:
            self.min_offset = offset
        if (frame.device, frame.second) in self.frames:  # the same device's second again
            self.duplicates += frame.admitted
            return
        self.frames.add((frame.device, frame.second))
        self.signals += frame.admitted
        self.dropped_no_consent += frame.dropped
        self.expected = max(self.expected, frame.expected)
        if frame.occupancy is not None:
            self.occupancy_sum += frame.occupancy
            self.occupancy_n += 1
        if frame.audio is not None:
            self.audio_sum += frame.audio
            self.audio_n += 1
        seconds = max(int(round(self.end - self.start)), 1)
        subjects, present = self.subjects, self.present
        for subject_ref, seat_id, face, hand, posture, head, individual, group in frame.seated:
            subject = subjects.get(subject_ref)
            if subject is None:
                subject = subjects[subject_ref] = SubjectWindow(seconds)
            subject.seat_id = seat_id
            if not subject.add(frame.second, face, hand, posture, head):
                # another device saw the same student in the same second: counted once
                self.signals -= SIGNALS_PER_SEAT
                self.duplicates += SIGNALS_PER_SEAT
            present.add(subject_ref)
            self.individual[subject_ref] = individual
            if group:
                self.groups[subject_ref] = group
        for pseudonym in frame.checked_in:
            subject = subjects.get(pseudonym)
            if subject is None:
                subject = subjects[pseudonym] = SubjectWindow(seconds)
            subject.checked_in = True
            present.add(pseudonym)

    @property
    def observed_seconds(self) -> int:
        """Distinct seconds the class was observed in this window (by any device)."""
        return len({second for _, second in self.frames})

    def scored_subjects(self) -> list[tuple[str, SubjectWindow]]:
        """The students the model scores, in a stable order. Their window length becomes the
        seconds the class was observed: a window reaching before the lesson began (a hopping
        window at its start) or past its end does not make every student look absent."""
        observed = self.observed_seconds
        for subject in self.subjects.values():
            subject.window_seconds = max(observed, 1)
        return sorted(self.subjects.items())


@dataclass
class SessionState:
    key: SessionKey
    partition: int
    marks: dict[int, Mark]
    windows: dict[tuple[int, float], ClassWindow] = field(default_factory=dict)
    last_seen: float = 0.0  # wall clock
    last_offset: int = -1
    touched: bool = False

    @property
    def max_observed(self) -> float:
        return max(m.max_observed for m in self.marks.values())


class SessionWindows:
    """All open windows of the class sessions on this process's partitions."""

    def __init__(self, shapes: Iterable[WindowShape], lateness_s: float,
                 idle_close_s: float) -> None:
        self.shapes = tuple(shapes)
        self.lateness_s = lateness_s
        self.idle_close_s = idle_close_s
        self.sessions: dict[SessionKey, SessionState] = {}

    @staticmethod
    def key_of(frame: AdmittedFrame) -> SessionKey:
        return (frame.tenant_id, frame.classroom_id, frame.session_id)

    def known(self, key: SessionKey) -> bool:
        return key in self.sessions

    def restore(self, key: SessionKey, partition: int, marks: dict[int, Mark]) -> None:
        """Start tracking a session with its persisted marks (none: a new session)."""
        self.sessions[key] = SessionState(
            key, partition, {shape.kind: marks.get(shape.kind, Mark()) for shape in self.shapes})

    def add(self, frame: AdmittedFrame, partition: int, offset: int, now: float) -> None:
        """Count one frame (its session must be known: :meth:`restore`)."""
        state = self.sessions[self.key_of(frame)]
        state.partition = partition
        t = frame.observed_at.seconds + frame.observed_at.nanos / 1e9
        view = FrameView(frame, int(math.floor(t)))
        admitted = view.admitted
        for shape in self.shapes:
            mark = state.marks[shape.kind]
            # a record already persisted: counted before (in a window now closed, or as late)
            replayed = offset <= mark.processed_offset
            horizon = max(mark.closed_until, mark.max_observed - self.lateness_s)
            late = False
            for start, end in shape.ranges(t):
                if end <= mark.closed_until or (not replayed and end <= horizon):
                    late = True
                    continue
                window = state.windows.get((shape.kind, start))
                if window is None:
                    window = state.windows[(shape.kind, start)] = ClassWindow(
                        state.key, shape.kind, start, end, partition)
                window.add(view, offset)
            if late and not replayed:
                mark.late_pending += admitted
            mark.max_observed = max(mark.max_observed, t)
        state.last_seen = now
        state.last_offset = max(state.last_offset, offset)
        state.touched = True

    def close_due(self, now: float) -> list[ClassWindow]:
        """Close the windows the watermark passed, and every window of sessions idle for
        ``idle_close_s``; oldest first. Closed sessions with no open window are forgotten
        (their marks are persisted; a frame of theirs restores them)."""
        closed: list[ClassWindow] = []
        for key, state in list(self.sessions.items()):
            idle = now - state.last_seen >= self.idle_close_s
            for shape in self.shapes:
                mark = state.marks[shape.kind]
                watermark = mark.max_observed - self.lateness_s
                due = sorted((w for (kind, _), w in state.windows.items()
                              if kind == shape.kind and (idle or w.end <= watermark)),
                             key=lambda w: w.start)
                for window in due:
                    del state.windows[(shape.kind, window.start)]
                    closed.append(window)
                ends = [w.end for w in due]
                if watermark > mark.closed_until or ends:
                    mark.closed_until = max([mark.closed_until, watermark, *ends])
                if due and mark.late_pending:
                    due[0].late += mark.late_pending
                    mark.late_pending = 0
                    state.touched = True
                if due:
                    state.touched = True
        return closed

    def persisted(self) -> list[tuple[SessionKey, int, Mark]]:
        """Marks of the sessions touched since the last call, to persist in the batch's
        transaction; they record the last offset processed (replays up to it are skipped)."""
        out = []
        for key, state in self.sessions.items():
            if not state.touched:
                continue
            state.touched = False
            for kind, mark in state.marks.items():
                mark.processed_offset = max(mark.processed_offset, state.last_offset)
                out.append((key, kind, mark))
        return out

    def forget_idle(self) -> None:
        """Drop sessions without open windows (after their marks were persisted)."""
        for key in [k for k, s in self.sessions.items() if not s.windows and not s.touched]:
            del self.sessions[key]

    def lowest_offsets(self) -> dict[int, int]:
        """Per partition, the lowest offset an open window still needs."""
        out: dict[int, int] = {}
        for state in self.sessions.values():
            for window in state.windows.values():
                if window.min_offset >= 0:
                    out[window.partition] = min(out.get(window.partition, window.min_offset),
                                                window.min_offset)
        return out

    def drop_partitions(self, partitions: set[int]) -> None:
        """Forget sessions of partitions this process no longer owns (a rebalance)."""
        for key in [k for k, s in self.sessions.items() if s.partition in partitions]:
            del self.sessions[key]


__all__ = ["HOPPING", "TUMBLING", "ClassWindow", "FrameView", "Mark", "SessionKey",
           "SessionState", "SessionWindows", "WindowShape"]
