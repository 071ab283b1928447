"""Classroom signals from the device side: a simulator and a producer for the
``classroom-signals`` topic.

Imports no service. Each module's public names are re-exported here:

* ``_simulator`` -- :class:`SimulationConfig` and :class:`ClassroomSimulator` (N classrooms x
  M seats of students whose engagement drifts, some disengaging for minutes, absences, late
  arrivals, check-ins, the room audio level; duplicate frames, late frames and a flooding
  sensor on request), :func:`simulate`, and the ids it gives classrooms and students
  (:func:`classroom_id`, :func:`student_ref`, :func:`student_refs`);
* ``_frames`` -- :func:`count_signals` (a frame's raw signals, as ``signals.proto`` counts
  them) and the record forms of a frame: protobuf or JSON (:func:`frame_record`,
  :func:`frame_to_json`, :func:`frame_from_json`);
* ``_consent`` -- :func:`consent_plan` (seeded guardians' opt-ins for the simulated
  students) and :func:`grant_consents` (records them through ingest's ConsentService);
* ``_producer`` -- :class:`SignalProducer` (writes frames keyed by classroom at a rate, in
  real time or as fast as possible, without awaiting each acknowledgement), :func:`prepare`
  (serialise ahead) and :class:`ProduceReport`.
"""

from switchyard.signals._consent import GROUPS, ConsentGrant, consent_plan, grant_consents
from switchyard.signals._frames import (
    SIGNALS_PER_SEAT,
    count_signals,
    frame_from_json,
    frame_record,
    frame_to_json,
)
from switchyard.signals._producer import PreparedFrame, ProduceReport, SignalProducer, prepare
from switchyard.signals._simulator import (
    ANOMALY_ABSENCE,
    DEFAULT_TENANT,
    ClassroomSimulator,
    Emission,
    SimulationConfig,
    Student,
    classroom_id,
    simulate,
    student_ref,
    student_refs,
)

__all__ = [
    "ANOMALY_ABSENCE",
    "DEFAULT_TENANT",
    "GROUPS",
    "SIGNALS_PER_SEAT",
    "ClassroomSimulator",
    "ConsentGrant",
    "Emission",
    "PreparedFrame",
    "ProduceReport",
    "SignalProducer",
    "SimulationConfig",
    "Student",
    "classroom_id",
    "consent_plan",
    "count_signals",
    "frame_from_json",
    "frame_record",
    "frame_to_json",
    "grant_consents",
    "prepare",
    "simulate",
    "student_ref",
    "student_refs",
]
