"""The chaos invariants judge crafted rows: each of them can fail, and says why."""

from __future__ import annotations

from chaos.invariants import (
    Owners,
    Report,
    StepEffects,
    append_counts,
    effect_counts,
    task_fate,
)


def test_a_waiting_task_without_an_owner_is_lost() -> None:
    nobody = Owners()
    assert task_fate("BLOCKED", "EXECUTING", nobody).startswith("lost: BLOCKED/EXECUTING")
    assert task_fate("BLOCKED", "AWAITING_REVIEW", nobody).startswith("lost:")
    # a parked job counts only while some executor replica is alive to resume it
    assert task_fate("BLOCKED", "EXECUTING",
                     Owners(executor_job=True, live_executor=False)).startswith("lost:")
    # a live replica with no job for this task owns nothing
    assert task_fate("BLOCKED", "EXECUTING", Owners(live_executor=True)).startswith("lost:")


def test_a_waiting_task_with_an_owner_is_not_lost() -> None:
    assert task_fate("BLOCKED", "AWAITING_REVIEW", Owners(review_item=True)) \
        == "awaiting_review"
    assert task_fate("BLOCKED", "EXECUTING",
                     Owners(executor_job=True, live_executor=True)) == "blocked"
    assert task_fate("BLOCKED", "DECIDING", Owners(hold=True)) == "blocked"


def test_a_task_stuck_in_between_is_lost_whoever_owns_it() -> None:
    owned = Owners(review_item=True, executor_job=True, live_executor=True, hold=True)
    assert task_fate("RUNNING", "EXECUTING", owned) == "lost: stuck RUNNING/EXECUTING"
    assert task_fate("QUEUED", "INGESTED", Owners()).startswith("lost: stuck")
    for status in ("SUCCEEDED", "FAILED", "CANCELLED"):
        assert task_fate(status, "DONE", Owners()) == status


def test_effects_missing_duplicated_or_left_behind_are_counted() -> None:
    one, none, reversed_ = StepEffects(active=1), StepEffects(), StepEffects(reversed=1)
    assert effect_counts("SUCCEEDED", [one, one]) == (0, 0, 0)
    assert effect_counts("SUCCEEDED", [one, none]) == (0, 1, 0)      # a step never landed
    assert effect_counts("SUCCEEDED", [StepEffects(active=2)]) == (1, 0, 0)
    assert effect_counts("FAILED", [reversed_, none]) == (0, 0, 0)    # compensated
    assert effect_counts("FAILED", [one]) == (0, 0, 1)                # left behind
    assert effect_counts("CANCELLED", [one, reversed_]) == (0, 0, 1)


def test_the_non_deduplicating_endpoint_counts_repeats_and_unrecorded_calls() -> None:
    assert append_counts(landed=1, recorded_attempts=1) == (0, 0, 0)
    assert append_counts(landed=0, recorded_attempts=0) == (1, 0, 0)  # missing
    assert append_counts(landed=2, recorded_attempts=2) == (0, 1, 0)  # a recorded retry
    assert append_counts(landed=3, recorded_attempts=1) == (0, 2, 2)  # calls it never recorded


def test_the_report_fails_on_any_broken_invariant() -> None:
    assert Report(audit_ok=True).ok
    assert not Report(audit_ok=True, lost=1).ok
    assert not Report(audit_ok=True, orphan_effects=1).ok
    assert not Report(audit_ok=True, append_missing=1).ok
    # calls the executor never recorded are allowed only when it was killed
    assert not Report(audit_ok=True, append_unrecorded=1).ok
    assert Report(audit_ok=True, append_unrecorded=1, executor_crashes=1).ok
    assert not Report(audit_ok=False).ok
