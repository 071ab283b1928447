"""The admit step: a checked frame, the consent view and a pseudonymiser in, the frame that
may travel on out.

Seat signals of a student without class-analytics consent are dropped and only counted
(``dropped_no_consent``), and so are the student's check-ins; a seat with nobody known in it
(no ``subject_ref``) passes through, it names no one. Every student reference that stays is
replaced by the student's pseudonym for the frame's term. ``individual`` marks a student
whose guardian also consented to individual support, ``group`` carries the group given under
fairness-monitoring consent.

A pure function: no I/O, so it is tested exhaustively and costs microseconds per frame.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from services.ingest.signals.consent import StudentConsent
from switchyard.signals import SIGNALS_PER_SEAT, count_signals
from switchyard.v1 import AdmittedFrame, AdmittedSeat, SignalFrame

__all__ = ["Admission", "ConsentLookup", "admit"]


class ConsentLookup(Protocol):
    def of(self, tenant_id: str, subject_ref: str) -> StudentConsent | None: ...


@dataclass(frozen=True)
class Admission:
    frame: AdmittedFrame
    #: Signals kept, and dropped for want of consent (they add up to ``frame.signals``).
    admitted: int
    dropped_no_consent: int


def admit(frame: SignalFrame, consents: ConsentLookup, pseudonymise: Callable[[str], str],
          term: str) -> Admission:
    """The admitted form of ``frame`` (checked: :func:`frames.check_frame`) under
    ``consents``; ``pseudonymise`` is bound to the frame's tenant and ``term``'s key."""
    tenant = frame.tenant_id
    out = AdmittedFrame(tenant_id=tenant, classroom_id=frame.classroom_id,
                        session_id=frame.session_id, device_id=frame.device_id,
                        expected_students=frame.expected_students, term=term,
                        signals=count_signals(frame))
    out.observed_at.CopyFrom(frame.observed_at)
    if frame.HasField("audio_level"):
        out.audio_level = frame.audio_level
    dropped = 0
    for seat in frame.seats:
        if not seat.subject_ref:
            out.seats.append(AdmittedSeat(seat=seat))
            continue
        consent = consents.of(tenant, seat.subject_ref)
        if consent is None or not consent.class_analytics:
            dropped += SIGNALS_PER_SEAT
            continue
        admitted = out.seats.add(individual=consent.individual, group=consent.group)
        admitted.seat.CopyFrom(seat)
        admitted.seat.subject_ref = pseudonymise(seat.subject_ref)
    checked_in: dict[str, None] = {}
    for check_in in frame.check_ins:
        consent = consents.of(tenant, check_in.subject_ref)
        if consent is None or not consent.class_analytics:
            dropped += 1
            continue
        checked_in[pseudonymise(check_in.subject_ref)] = None
    out.checked_in.extend(checked_in)
    out.dropped_no_consent = dropped
    return Admission(out, out.signals - dropped, dropped)
