"""How urgent a task is: one rule from what a client sent to the review priority bucket.

``Submission.priority_level`` (``TaskPriority``) says it; unset means normal. The deprecated
int ``Submission.priority`` (0 most urgent .. 3) is still honoured for 1..3; its 0 cannot be
told apart from "not set" in proto3, so it means normal too (ask for the most urgent with
``TASK_PRIORITY_URGENT``). Buckets 0..3 are the review priorities P0..P3 that escalations,
SLAs and the review queue use. Envelopes stored before ``priority_level`` existed carry only
the old int and are read through the same rule, so they need no rewrite.
"""

from __future__ import annotations

from switchyard.v1 import ReviewPriority, Submission, TaskEnvelope, TaskPriority

#: Review priority buckets: 0 = P0 (most urgent) .. 3 = P3.
URGENT, HIGH, NORMAL, LOW = 0, 1, 2, 3
_LEVELS = frozenset(TaskPriority.values()) - {TaskPriority.TASK_PRIORITY_UNSPECIFIED}


def requested_bucket(level: int, legacy: int) -> int:
    """The bucket a task asked for: ``level`` when set, else the deprecated int when it is
    1..3, else normal."""
    if level in _LEVELS:
        return level - 1  # TASK_PRIORITY_URGENT == 1 -> bucket 0
    if 1 <= legacy <= 3:
        return legacy
    return NORMAL


def task_bucket(task: TaskEnvelope) -> int:
    """The bucket of an accepted task (new envelopes carry the level; old ones the int)."""
    return requested_bucket(task.priority_level, task.priority)  # type: ignore[deprecated]


def clamped(bucket: int) -> int:
    """``bucket`` within URGENT (P0) .. LOW (P3)."""
    return max(URGENT, min(LOW, bucket))


def level_of(bucket: int) -> TaskPriority.ValueType:
    """Bucket -> TaskPriority (TASK_PRIORITY_URGENT == 1), clamped to URGENT..LOW."""
    return TaskPriority.ValueType(clamped(bucket) + 1)


def review_priority(bucket: int) -> ReviewPriority.ValueType:
    """Bucket -> ReviewPriority (REVIEW_PRIORITY_P0 == 1), clamped to P0..P3."""
    return ReviewPriority.ValueType(clamped(bucket) + 1)


def priority_problems(submission: Submission | TaskEnvelope) -> list[tuple[str, str]]:
    """(field, why) for priorities ingest (and ``Decide``) must refuse: out of range, or the
    two fields asking for different things."""
    legacy = submission.priority  # type: ignore[deprecated]
    level = submission.priority_level
    problems = []
    if not 0 <= legacy <= 3:
        problems.append(("priority", "deprecated; must be 0 to 3 (use priority_level)"))
    if level != TaskPriority.TASK_PRIORITY_UNSPECIFIED and level not in _LEVELS:
        problems.append(("priority_level", f"unknown TaskPriority value {level}"))
    elif level in _LEVELS and 1 <= legacy <= 3 and legacy != level - 1:
        problems.append(("priority_level", f"{TaskPriority.Name(level)} disagrees with the "
                                           f"deprecated priority {legacy}; set only "
                                           "priority_level"))
    return problems


__all__ = ["HIGH", "LOW", "NORMAL", "URGENT", "clamped", "level_of", "priority_problems",
           "requested_bucket", "review_priority", "task_bucket"]
