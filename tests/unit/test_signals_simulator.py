"""The classroom simulator (switchyard.signals): seeded, one frame per classroom-second, the
students' truth visible in the observations, and the misbehaving devices it can play."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone

import pytest

from switchyard.messaging import CONTENT_TYPE_HEADER, TENANT_HEADER, decode
from switchyard.signals import (
    SIGNALS_PER_SEAT,
    ClassroomSimulator,
    SimulationConfig,
    classroom_id,
    count_signals,
    frame_from_json,
    frame_record,
    frame_to_json,
    prepare,
    simulate,
    student_ref,
    student_refs,
)
from switchyard.v1 import Posture, SignalFrame

START = datetime(2026, 9, 7, 9, 0, tzinfo=timezone.utc)


def config(**changes: object) -> SimulationConfig:
    base = {"classrooms": 3, "seats": 12, "seconds": 90, "start": START, "seed": 5}
    return SimulationConfig(**{**base, **changes})  # type: ignore[arg-type]


def frames_bytes(cfg: SimulationConfig) -> list[bytes]:
    return [e.frame.SerializeToString() for e in simulate(cfg)]


def test_the_same_config_gives_the_same_frames_and_another_seed_others() -> None:
    assert frames_bytes(config()) == frames_bytes(config())
    assert frames_bytes(config()) != frames_bytes(config(seed=6))


def test_adding_a_classroom_leaves_the_others_alone() -> None:
    two = [e.frame.SerializeToString() for e in simulate(config(classrooms=2))]
    three = [e.frame.SerializeToString() for e in simulate(config(classrooms=3))
             if e.key != classroom_id(2)]
    assert two == three


def test_one_frame_per_classroom_second_in_time_order() -> None:
    cfg = config()
    emissions = list(simulate(cfg))
    assert len(emissions) == cfg.classrooms * cfg.seconds
    assert {e.kind for e in emissions} == {"frame"}
    seconds = [e.frame.observed_at.seconds - int(START.timestamp()) for e in emissions]
    assert seconds == sorted(seconds) == [e.tick for e in emissions]
    per_room = Counter(e.key for e in emissions)
    assert per_room == {classroom_id(i): cfg.seconds for i in range(cfg.classrooms)}
    for e in emissions:
        frame = e.frame
        assert frame.classroom_id == e.key and frame.tenant_id == cfg.tenant_id
        assert frame.session_id.startswith(e.key) and frame.device_id
        assert frame.expected_students == cfg.seats
        assert [s.seat_id for s in frame.seats] == [f"seat-{i + 1:02d}"
                                                   for i in range(cfg.seats)]
        assert 0.0 <= frame.audio_level <= 1.0
    # a session id is the same all session long
    assert len({(e.key, e.frame.session_id) for e in emissions}) == cfg.classrooms


def test_staggered_classrooms_start_at_different_seconds() -> None:
    emissions = list(simulate(config(classrooms=4, stagger_s=60)))
    first = {}
    for e in emissions:
        first.setdefault(e.key, e.frame.observed_at.seconds - int(START.timestamp()))
    assert first == {classroom_id(0): 0, classroom_id(1): 15, classroom_id(2): 30,
                     classroom_id(3): 45}
    # the observations do not depend on the clock
    plain = [e.frame.seats[3].SerializeToString() for e in simulate(config(classrooms=4))]
    assert [e.frame.seats[3].SerializeToString() for e in emissions] == plain


def test_signals_are_counted_as_the_proto_counts_them() -> None:
    cfg = config()
    for e in simulate(cfg):
        assert count_signals(e.frame) == SIGNALS_PER_SEAT * cfg.seats \
            + len(e.frame.check_ins) + 1
    quiet = next(iter(simulate(config(microphone=False))))
    assert not quiet.frame.HasField("audio_level")
    assert count_signals(quiet.frame) == SIGNALS_PER_SEAT * 12 + len(quiet.frame.check_ins)
    assert count_signals(SignalFrame()) == 0


def test_students_sit_where_enrolled_check_in_once_and_absentees_never_show() -> None:
    cfg = config(seconds=700, classrooms=4, seats=20, late_arrival_rate=0.2)
    sim = ClassroomSimulator(cfg)
    seen: dict[str, set[str]] = defaultdict(set)
    check_ins: Counter[str] = Counter()
    for e in sim.emissions():
        for seat in e.frame.seats:
            if seat.occupied:
                seen[seat.subject_ref].add(seat.seat_id)
            else:
                assert not seat.subject_ref and not seat.face_forward and not seat.head_down
                assert seat.posture == Posture.POSTURE_UNSPECIFIED
        check_ins.update(c.subject_ref for c in e.frame.check_ins)
    students = sim.students()
    present = {s.ref for s in students if s.present}
    assert set(seen) == present == set(check_ins)
    assert all(n == 1 for n in check_ins.values())
    assert all(seen[s.ref] == {s.seat_id} for s in students if s.present)
    assert any(s.arrives >= 120 for s in students if s.present)   # some came late
    assert 0 < len(present) < len(students)
    assert set(student_refs(cfg)) == {s.ref for s in students}
    assert student_ref(0, 0) == "stu-001-01"


def test_an_anomalous_classroom_has_far_more_absentees() -> None:
    sim = ClassroomSimulator(config(classrooms=6, seats=40, anomalous_classrooms=1))
    absent = [sum(not s.present for s in room.students) / 40 for room in sim.classrooms]
    assert absent[0] > 0.3 and max(absent[1:]) < 0.25


def test_a_disengaged_spell_shows_in_the_observations() -> None:
    cfg = config(classrooms=4, seats=25, seconds=1800, disengage_per_hour=3.0)
    sim = ClassroomSimulator(cfg)
    stats = {True: Counter(), False: Counter()}
    students = {s.ref: s for s in sim.students()}
    for e in sim.emissions():
        second = e.tick
        for seat in e.frame.seats:
            if not seat.occupied:
                continue
            spell = students[seat.subject_ref].disengaged(second - 60)   # a minute to sink
            row = stats[spell and students[seat.subject_ref].disengaged(second)]
            row["n"] += 1
            row["face"] += seat.face_forward
            row["down"] += seat.head_down
            row["slouched"] += seat.posture == Posture.POSTURE_SLOUCHED
    spells = sum(len(s.spells) for s in students.values())
    assert spells > 10
    inside, outside = stats[True], stats[False]
    assert inside["n"] > 1000
    assert inside["face"] / inside["n"] < outside["face"] / outside["n"] - 0.3
    assert inside["down"] / inside["n"] > outside["down"] / outside["n"] + 0.3
    assert inside["slouched"] / inside["n"] > outside["slouched"] / outside["n"] + 0.3
    low, high = cfg.disengaged_minutes
    assert all(60 * low <= b - a <= 60 * high for s in students.values() for a, b in s.spells)


def test_duplicates_follow_their_original_byte_for_byte() -> None:
    emissions = list(simulate(config(duplicate_rate=0.1)))
    duplicates = [i for i, e in enumerate(emissions) if e.kind == "duplicate"]
    assert 0.05 < len(duplicates) / (3 * 90) < 0.15
    for i in duplicates:
        assert emissions[i - 1].kind == "frame"
        assert emissions[i].frame.SerializeToString() == \
            emissions[i - 1].frame.SerializeToString()


def test_late_frames_leave_later_and_nothing_is_lost() -> None:
    cfg = config(late_rate=0.1, late_by_s=(20, 40))
    emissions = list(simulate(cfg))
    late = [e for e in emissions if e.kind == "late"]
    assert 0.05 < len(late) / (3 * 90) < 0.15
    start = int(START.timestamp())
    for e in late:
        assert 20 <= e.tick - (e.frame.observed_at.seconds - start) <= 40
    assert [e.tick for e in emissions] == sorted(e.tick for e in emissions)
    observed = Counter((e.key, e.frame.observed_at.seconds) for e in emissions)
    assert len(observed) == 3 * 90 and set(observed.values()) == {1}
    # the on-time frames are the same as without late ones, bar those held back
    plain = {(e.key, e.frame.observed_at.seconds): e.frame.SerializeToString()
             for e in simulate(config())}
    assert all(plain[(e.key, e.frame.observed_at.seconds)] == e.frame.SerializeToString()
               for e in emissions)


def test_a_flooding_sensor_sends_many_frames_a_second_of_noise() -> None:
    cfg = config(flooding_classrooms=1, flood_factor=25)
    emissions = list(simulate(cfg))
    flood = [e for e in emissions if e.kind == "flood"]
    assert {e.key for e in flood} == {classroom_id(2)}
    assert len(flood) == 25 * cfg.seconds
    per_second = Counter(e.frame.observed_at.seconds for e in flood)
    assert set(per_second.values()) == {25}
    readings = [s.head_down for e in flood for s in e.frame.seats if s.occupied]
    assert 0.4 < sum(readings) / len(readings) < 0.6
    # the other classrooms are untouched
    assert Counter(e.key for e in emissions if e.kind == "frame") == {
        classroom_id(0): cfg.seconds, classroom_id(1): cfg.seconds}


def test_json_and_protobuf_records_carry_the_same_frame() -> None:
    frame = next(e.frame for e in simulate(config()) if len(e.frame.check_ins))
    assert frame_from_json(frame_to_json(frame)) == frame
    value, headers = frame_record(frame)
    assert decode(value, headers, SignalFrame) == frame
    assert headers[TENANT_HEADER] == frame.tenant_id
    as_json, json_headers = frame_record(frame, as_json=True)
    assert json_headers[CONTENT_TYPE_HEADER] == "application/json"
    assert b'"subject_ref": "stu-' in as_json and b'"observed_at": "2026-09-07T09:' in as_json
    assert frame_from_json(as_json) == frame
    prepared = prepare(next(iter(simulate(config()))), as_json=True)
    assert prepared.key == b"room-001" and prepared.signals > 60
    assert dict(prepared.headers)[CONTENT_TYPE_HEADER] == b"application/json"


def test_the_default_start_is_in_the_past_and_bad_configs_are_refused() -> None:
    cfg = SimulationConfig(seconds=120)
    first = cfg.first_second()
    now = datetime.now(timezone.utc)
    assert now - timedelta(seconds=125) < first <= now - timedelta(seconds=119)
    for bad in ({"classrooms": 0}, {"seats": 501}, {"absence_rate": 1.5},
                {"flood_factor": 0}, {"seconds": 0}, {"stagger_s": -1}):
        with pytest.raises(ValueError):
            SimulationConfig(**bad)  # type: ignore[arg-type]
