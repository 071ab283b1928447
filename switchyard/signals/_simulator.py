"""A classroom simulator: N classrooms x M seats, one SignalFrame per classroom-second.

Each seat belongs to an enrolled student with a latent engagement level that drifts (a
mean-reverting random walk around the student's own baseline). Now and then a student
disengages for a few minutes (the level sinks towards 0.1, then recovers). Some students are
absent for the whole session, some arrive late; each student who comes checks in (badge, or
the learning system) within seconds of sitting down. The camera's per-seat observations are
drawn from the level (face toward the front and leaning forward when engaged; head down and
slouched when not; now and then a hand raised), and the room's audio level follows the
class's mood.

Options make the stream misbehave the way real devices do: frames sent twice (a device
retrying), frames sent late (a device that lost its uplink for a while), and a flooding
sensor (a faulty camera that sends many frames a second of noise instead of observations).

Everything is seeded: the same :class:`SimulationConfig` gives the same frames, byte for
byte, and adding a classroom does not change the others (each classroom has its own random
stream).
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from switchyard.v1 import CheckInSource, Posture, SignalFrame

#: The tenant simulated frames belong to unless told otherwise (a demo school).
DEFAULT_TENANT = "northwind-edu"
#: Absence rate of a classroom simulated with an attendance problem.
ANOMALY_ABSENCE = 0.45
#: Where a disengaged student's level sinks to.
DISENGAGED_LEVEL = 0.1


def classroom_id(index: int) -> str:
    """The id of the ``index``-th simulated classroom (0-based): ``room-001``, ..."""
    return f"room-{index + 1:03d}"


def student_ref(classroom: int, seat: int) -> str:
    """The school's reference of the student enrolled in a seat (0-based indexes): the
    value consent is granted for and ingest pseudonymises."""
    return f"stu-{classroom + 1:03d}-{seat + 1:02d}"


def seat_id(seat: int) -> str:
    return f"seat-{seat + 1:02d}"


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate. Rates are probabilities; every default is a plausible class."""

    classrooms: int = 4
    seats: int = 30
    #: Seconds of class to simulate (one frame per classroom-second).
    seconds: int = 60
    tenant_id: str = DEFAULT_TENANT
    seed: int = 7
    #: The first second observed (UTC). None: ``seconds`` before now, so every frame's
    #: device clock is in the past (ingest refuses frames from the future).
    start: datetime | None = None
    #: Share of students absent for the whole session.
    absence_rate: float = 0.08
    #: Share of the present students who arrive 2 to 10 minutes late.
    late_arrival_rate: float = 0.05
    #: The first N classrooms have an attendance problem (ANOMALY_ABSENCE of them absent).
    anomalous_classrooms: int = 0
    #: Disengaged spells a student starts per hour of class, on average.
    disengage_per_hour: float = 1.5
    #: How long a spell lasts, in minutes (uniform between the two).
    disengaged_minutes: tuple[float, float] = (4.0, 10.0)
    #: Classrooms have a microphone (a level meter): frames carry the room audio level.
    microphone: bool = True
    #: Share of frames a device sends twice (a retry after a lost acknowledgement).
    duplicate_rate: float = 0.0
    #: Share of frames a device sends late, ``late_by_s`` seconds after the second observed.
    late_rate: float = 0.0
    late_by_s: tuple[int, int] = (20, 90)
    #: The last N classrooms have a faulty camera that floods: ``flood_factor`` frames a
    #: second, each with noise for readings.
    flooding_classrooms: int = 0
    flood_factor: int = 20
    #: Classroom i's class starts ``i * stagger_s // classrooms`` seconds after ``start``
    #: (sessions that do not all start on the same second).
    stagger_s: int = 0

    def __post_init__(self) -> None:
        if self.classrooms < 1 or self.seats < 1 or self.seconds < 1:
            raise ValueError("classrooms, seats and seconds must be at least 1")
        if self.seats > 500:
            raise ValueError("a frame carries at most 500 seats")
        for name in ("absence_rate", "late_arrival_rate", "duplicate_rate", "late_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if self.flood_factor < 1:
            raise ValueError("flood_factor must be at least 1")
        if self.stagger_s < 0:
            raise ValueError("stagger_s must be 0 or more")

    def first_second(self) -> datetime:
        if self.start is not None:
            return self.start.astimezone(timezone.utc).replace(microsecond=0)
        now = datetime.now(timezone.utc).replace(microsecond=0)
        return now - timedelta(seconds=self.seconds)


@dataclass(frozen=True)
class Emission:
    """One record a device sends: the frame, its key (the classroom), and the second after
    the start at which it is sent (``tick``; later than the second observed for a late
    frame). ``kind``: ``frame``, ``duplicate``, ``late`` or ``flood``."""

    tick: int
    key: str
    frame: SignalFrame
    kind: str = "frame"


@dataclass
class Student:
    """One enrolled student and the truth the simulator knows about them (tests compare what
    the pipeline derived with it)."""

    ref: str
    seat_id: str
    present: bool
    #: Second of the session the student sits down and checks in (when present).
    arrives: int
    check_in_at: int
    check_in_source: int
    baseline: float
    level: float
    #: Disengaged spells as (first second, end second), in the order they started.
    spells: list[tuple[int, int]] = field(default_factory=list)

    def disengaged(self, second: int) -> bool:
        return any(a <= second < b for a, b in self.spells)


class Classroom:
    """One classroom's students and its random stream, stepped a second at a time."""

    def __init__(self, index: int, config: SimulationConfig, start: datetime) -> None:
        self.index = index
        self.config = config
        self.id = classroom_id(index)
        start += timedelta(seconds=index * config.stagger_s // config.classrooms)
        self.session_id = f"{self.id}-{start:%Y%m%dT%H%M}"
        self.device_id = f"{self.id}-edge"
        self.start_s = int(start.timestamp())
        self.rng = random.Random(f"switchyard-signals:{config.seed}:{index}")
        #: the device's misbehaviour draws from its own stream: the observations are the
        #: same whether or not frames are duplicated, delayed or flooded
        self.device_rng = random.Random(f"switchyard-signals:{config.seed}:{index}:device")
        self.flooding = index >= config.classrooms - config.flooding_classrooms
        absence = ANOMALY_ABSENCE if index < config.anomalous_classrooms \
            else config.absence_rate
        rng = self.rng
        self.students: list[Student] = []
        for seat in range(config.seats):
            present = rng.random() >= absence
            late = rng.random() < config.late_arrival_rate
            arrives = rng.randint(120, 600) if late else rng.randint(0, 45)
            baseline = min(0.95, max(0.3, rng.betavariate(5, 2.5)))
            self.students.append(Student(
                ref=student_ref(index, seat), seat_id=seat_id(seat), present=present,
                arrives=arrives, check_in_at=arrives + rng.randint(0, 5),
                check_in_source=CheckInSource.CHECK_IN_SOURCE_BADGE if rng.random() < 0.85
                else CheckInSource.CHECK_IN_SOURCE_LMS,
                baseline=baseline, level=baseline))
        self._spell_per_s = config.disengage_per_hour / 3600.0

    def frame(self, second: int) -> SignalFrame:
        """The classroom's observations of ``second`` (seconds since the start)."""
        rng = self.rng
        low, high = self.config.disengaged_minutes
        frame = SignalFrame(tenant_id=self.config.tenant_id, classroom_id=self.id,
                            session_id=self.session_id, device_id=self.device_id,
                            expected_students=self.config.seats)
        frame.observed_at.FromSeconds(self.start_s + second)
        levels, hands = 0.0, 0
        seated = 0
        for student in self.students:
            # the latent level drifts for everyone (absent students too: the stream of
            # random numbers must not depend on who is in the room)
            spell_end = student.spells[-1][1] if student.spells else -1
            if second >= spell_end and rng.random() < self._spell_per_s:
                student.spells.append((second, second + int(60 * rng.uniform(low, high))))
                spell_end = student.spells[-1][1]
            target = DISENGAGED_LEVEL if second < spell_end else student.baseline
            level = student.level + 0.1 * (target - student.level) + rng.gauss(0.0, 0.04)
            student.level = level = min(1.0, max(0.0, level))
            draws = (rng.random(), rng.random(), rng.random(), rng.random())
            seat = frame.seats.add(seat_id=student.seat_id)
            if not (student.present and second >= student.arrives):
                continue
            seated += 1
            levels += level
            seat.occupied = True
            seat.subject_ref = student.ref
            seat.face_forward = draws[0] < 0.15 + 0.8 * level
            seat.head_down = draws[1] < 0.03 + 0.75 * (1.0 - level) ** 2
            seat.hand_raised = draws[2] < 0.012 * level
            hands += seat.hand_raised
            if level > 0.65 and draws[3] < 0.5:
                seat.posture = Posture.POSTURE_LEANING_FORWARD
            elif level < 0.4 and draws[3] < 0.6:
                seat.posture = Posture.POSTURE_SLOUCHED
            else:
                seat.posture = Posture.POSTURE_UPRIGHT
            if student.check_in_at == second:
                frame.check_ins.add(subject_ref=student.ref, source=student.check_in_source)
        if self.config.microphone:
            mood = levels / seated if seated else 0.0
            audio = 0.1 + 0.3 * mood + 0.2 * min(1, hands) + rng.gauss(0.0, 0.04)
            frame.audio_level = round(min(1.0, max(0.0, audio)), 3)
        return frame

    def noise(self, frame: SignalFrame) -> SignalFrame:
        """What a faulty camera sends: the frame's seats with coin flips for readings."""
        rng = self.device_rng
        noisy = SignalFrame()
        noisy.CopyFrom(frame)
        del noisy.check_ins[:]
        for seat in noisy.seats:
            if seat.occupied:
                seat.face_forward = rng.random() < 0.5
                seat.head_down = rng.random() < 0.5
                seat.hand_raised = rng.random() < 0.5
                seat.posture = rng.choice((Posture.POSTURE_UPRIGHT, Posture.POSTURE_SLOUCHED,
                                           Posture.POSTURE_LEANING_FORWARD))
        return noisy


class ClassroomSimulator:
    """The frames of ``config`` in the order devices send them (:meth:`emissions`)."""

    def __init__(self, config: SimulationConfig) -> None:
        self.config = config
        self.start = config.first_second()
        self.classrooms = [Classroom(i, config, self.start) for i in range(config.classrooms)]

    def students(self) -> list[Student]:
        return [s for room in self.classrooms for s in room.students]

    def emissions(self) -> Iterator[Emission]:
        """Every record, in send order: second by second, classroom by classroom; a late
        frame comes out at the second it is sent, a duplicate right after its original."""
        config = self.config
        pending: list[tuple[int, int, Emission]] = []   # late frames by the tick they leave
        sequence = 0
        for second in range(config.seconds):
            while pending and pending[0][0] <= second:
                yield heapq.heappop(pending)[2]
            for room in self.classrooms:
                frame = room.frame(second)
                rng = room.device_rng
                if room.flooding:
                    for _ in range(config.flood_factor):
                        yield Emission(second, room.id, room.noise(frame), "flood")
                    continue
                if config.late_rate and rng.random() < config.late_rate:
                    tick = second + rng.randint(*config.late_by_s)
                    sequence += 1
                    heapq.heappush(pending, (tick, sequence, Emission(tick, room.id, frame,
                                                                      "late")))
                    continue
                yield Emission(second, room.id, frame)
                if config.duplicate_rate and rng.random() < config.duplicate_rate:
                    yield Emission(second, room.id, frame, "duplicate")
        while pending:
            yield heapq.heappop(pending)[2]


def simulate(config: SimulationConfig) -> Iterator[Emission]:
    """The emissions of a fresh :class:`ClassroomSimulator` for ``config``."""
    return ClassroomSimulator(config).emissions()


def student_refs(config: SimulationConfig) -> list[str]:
    """Every simulated student's reference (present or not), classroom by classroom."""
    return [student_ref(c, s) for c in range(config.classrooms) for s in range(config.seats)]
