"""Classroom signals at ingest: frames validated, consent applied, students pseudonymised.

Edge devices write :class:`switchyard.v1.SignalFrame` records (protobuf or JSON) to
``classroom-signals``; :class:`SignalProcessor` (a batch agent) refuses bad frames with a
reason (:mod:`.frames`), drops the signals of students without class-analytics consent
(:class:`ConsentView`, :func:`admit`), replaces every student reference by its pseudonym for
the term (:mod:`.pseudonyms`) and writes :class:`switchyard.v1.AdmittedFrame` records to
``classroom-signals-admitted``. ConsentService (:class:`ConsentServicer`) manages the
registry and the right to erasure (:func:`erase_subject`). docs/signals.md documents it.
"""

from services.ingest.signals.admit import Admission, ConsentLookup, admit
from services.ingest.signals.consent import (
    ConsentChange,
    ConsentView,
    Purpose,
    StudentConsent,
    list_consents,
    set_consent,
    set_consent_problems,
    subject_hash,
)
from services.ingest.signals.erasure import ALERT_SUBJECT_KEY, Erased, erase_subject
from services.ingest.signals.frames import (
    MAX_CHECK_INS,
    MAX_SEATS,
    REASON_CODES,
    check_frame,
    frame_from_json,
    parse_frame,
)
from services.ingest.signals.processor import SignalProcessor
from services.ingest.signals.pseudonyms import (
    TermKeys,
    parse_term_starts,
    pseudonym,
    pseudonymiser,
    term_of,
)
from services.ingest.signals.service import (
    CONSENT_POLICY,
    CONSENT_SERVICE_NAME,
    ConsentServicer,
    register,
)

__all__ = ["ALERT_SUBJECT_KEY", "CONSENT_POLICY", "CONSENT_SERVICE_NAME", "MAX_CHECK_INS",
           "MAX_SEATS", "REASON_CODES", "Admission", "ConsentChange", "ConsentLookup",
           "ConsentServicer", "ConsentView", "Erased", "Purpose", "SignalProcessor",
           "StudentConsent", "TermKeys", "admit", "check_frame", "erase_subject",
           "frame_from_json", "list_consents", "parse_frame", "parse_term_starts",
           "pseudonym", "pseudonymiser", "register", "set_consent", "set_consent_problems",
           "subject_hash", "term_of"]
