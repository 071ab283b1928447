"""The engagement model's features: one code path for training and serving.

A :class:`SubjectWindow` accumulates what one window saw of one student, second by second;
:meth:`SubjectWindow.vector` turns it into the model's input. The training data
(``models/data/engagement_windows.jsonl``) stores the same counts, and training builds its
matrix with the same :meth:`vector`, so what the model learned from and what it is asked
about cannot drift apart (``tests/decision/test_engagement_features.py`` compares them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from switchyard.v1 import Posture

#: The model's input columns, in order (the Triton config's ``feature_names`` parameter).
FEATURE_NAMES: tuple[str, ...] = (
    "present_share",         # seconds seen seated / window seconds
    "face_forward_share",    # of the seconds present
    "hand_raised_per_min",   # seconds with a hand raised, per minute present
    "head_down_share",       # of the seconds present
    "slouched_share",        # of the seconds present
    "leaning_forward_share",  # of the seconds present
    "checked_in",            # 1 when the student checked in during the window
    "audio_level",           # the room's mean audio level over the window (0 when unknown)
)


# plain ints: a protobuf enum attribute lookup per second per student is the hot path's cost
_SLOUCHED = int(Posture.POSTURE_SLOUCHED)
_LEANING_FORWARD = int(Posture.POSTURE_LEANING_FORWARD)


@dataclass
class SubjectWindow:
    """One student in one window: counts of seconds, each second counted once."""

    window_seconds: int
    present: int = 0
    face_forward: int = 0
    hand_raised: int = 0
    head_down: int = 0
    slouched: int = 0
    leaning_forward: int = 0
    checked_in: bool = False
    seat_id: str = ""
    #: seconds already counted (a re-sent or duplicate frame is not counted twice)
    seen: set[int] = field(default_factory=set, repr=False)

    def add(self, second: int, face_forward: bool, hand_raised: bool, posture: int,
            head_down: bool) -> bool:
        """Count one seated second; False (and nothing counted) when it was counted already."""
        if second in self.seen:
            return False
        self.seen.add(second)
        self.present += 1
        self.face_forward += face_forward
        self.hand_raised += hand_raised
        self.head_down += head_down
        self.slouched += posture == _SLOUCHED
        self.leaning_forward += posture == _LEANING_FORWARD
        return True

    def vector(self, audio_level: float) -> list[float]:
        """The model's input for this window (FEATURE_NAMES order)."""
        present = max(self.present, 1)
        return [
            min(1.0, self.present / max(self.window_seconds, 1)),
            self.face_forward / present,
            60.0 * self.hand_raised / present,
            self.head_down / present,
            self.slouched / present,
            self.leaning_forward / present,
            1.0 if self.checked_in else 0.0,
            float(audio_level),
        ]

    def counts(self) -> dict[str, Any]:
        """The counts as the training data stores them (``from_counts`` reads them back)."""
        return {"window_seconds": self.window_seconds, "present": self.present,
                "face_forward": self.face_forward, "hand_raised": self.hand_raised,
                "head_down": self.head_down, "slouched": self.slouched,
                "leaning_forward": self.leaning_forward, "checked_in": self.checked_in}

    @classmethod
    def from_counts(cls, counts: dict[str, Any]) -> SubjectWindow:
        return cls(window_seconds=int(counts["window_seconds"]),
                   present=int(counts["present"]), face_forward=int(counts["face_forward"]),
                   hand_raised=int(counts["hand_raised"]), head_down=int(counts["head_down"]),
                   slouched=int(counts["slouched"]),
                   leaning_forward=int(counts["leaning_forward"]),
                   checked_in=bool(counts["checked_in"]))


__all__ = ["FEATURE_NAMES", "SubjectWindow"]
