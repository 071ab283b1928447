"""The chaos invariants judge crafted rows: each of them can fail, and says why.

The pure judgements first; then :func:`chaos.invariants.check` itself on rows written into a
migrated schema of the session's PostgreSQL (as a run that lost work would leave them).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from chaos.invariants import (
    Owners,
    Report,
    StepEffects,
    append_counts,
    check,
    effect_counts,
    task_fate,
)
from chaos.workload import Item, Ledger
from services.executor.downstream.store import Ledger as DownstreamLedger
from services.executor.downstream.store import schema_for
from switchyard import Settings
from switchyard.storage import connect
from switchyard.tasks import TERMINAL
from switchyard.v1 import ActionPlan, ActionStep, Decision, DecisionOutcome, TaskEnvelope


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
    for status in sorted(TERMINAL):
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
    # calls the executor never recorded are allowed only when its process ended mid-run
    assert not Report(audit_ok=True, append_unrecorded=1).ok
    assert Report(audit_ok=True, append_unrecorded=1, executor_restarts=1).ok
    assert not Report(audit_ok=False).ok


def test_a_restart_while_postgres_was_stopped_fails_the_run() -> None:
    # restarts after the kills are the faults themselves; a service the supervisor had to
    # restart during the PostgreSQL stop did not ride the outage out, so `make chaos` fails
    assert Report(audit_ok=True, restarts={"ingest": 1, "decision": 1}).ok
    assert not Report(audit_ok=True, restarts={"ingest": 2},
                      restarts_during_postgres_outage={"ingest": 1}).ok
    assert not Report(audit_ok=True, restarts_during_postgres_outage={"review": 1}).to_json()["ok"]


@pytest.mark.integration
async def test_check_reports_work_that_nothing_will_finish(settings: Settings) -> None:
    """Three accepted tasks: one BLOCKED with nobody to resume it (lost), one parked with a
    live executor replica (waiting, owned), one SUCCEEDED whose step left no effect (missing).
    """
    lost, parked, hollow = (str(uuid.uuid4()) for _ in range(3))
    conn = await connect(settings)
    try:
        await DownstreamLedger.create_schema(conn, schema_for(settings.postgres_schema))
        await conn.execute(f'SET search_path TO "{settings.postgres_schema}"')
        for task_id, status, stage in ((lost, "BLOCKED", "EXECUTING"),
                                       (parked, "BLOCKED", "EXECUTING"),
                                       (hollow, "SUCCEEDED", "DONE")):
            await conn.execute(
                "INSERT INTO tasks (task_id, tenant_id, idempotency_key, payload_sha256, kind, "
                "source, envelope, status, stage) VALUES ($1, 'acme', $2, '', 'invoice', "
                "'TASK_SOURCE_GRPC', $3, $4, $5)", uuid.UUID(task_id), task_id,
                TaskEnvelope(task_id=task_id).SerializeToString(), status, stage)
        deadline = datetime.now(timezone.utc) + timedelta(hours=1)
        for task_id, state in ((parked, "parked"), (hollow, "succeeded")):
            decision = Decision(decision_id=str(uuid.uuid4()), task_id=task_id,
                                tenant_id="acme",
                                outcome=DecisionOutcome.DECISION_OUTCOME_AUTO_EXECUTE,
                                plan=ActionPlan(steps=[ActionStep(
                                    step_id="1-post_invoice", target="http://erp/invoices")]))
            await conn.execute(
                "INSERT INTO executor_jobs (decision_id, task_id, tenant_id, decision, state, "
                "deadline, owner) VALUES ($1, $2, 'acme', $3, $4, $5, 'replica-a')",
                uuid.UUID(decision.decision_id), uuid.UUID(task_id),
                decision.SerializeToString(), state, deadline)
        await conn.execute("INSERT INTO executor_replicas (owner) VALUES ('replica-b')")
    finally:
        await conn.close()

    items = [Item(0, "acme", task_id, "invoice", b"", False, False, False)
             for task_id in (lost, parked, hollow)]
    ledger = Ledger(sent=3, accepted={task_id: task_id for task_id in (lost, parked, hollow)})
    report = await check(settings, items, ledger, [])
    assert (report.lost, report.lost_waiting, report.blocked) == (1, 1, 1), report
    assert lost in report.lost_examples[0] and "nothing owns it" in report.lost_examples[0]
    assert report.missing_effects == 1
    assert not report.ok


def test_which_steps_leave_an_effect_and_which_are_undone() -> None:
    from chaos.invariants import makes_effect, undone_steps
    from switchyard.v1 import ApprovalSpec, CompensationStep, StepKind

    call = ActionStep(step_id="book_bed", target="http://beds/bookings",
                      compensation=CompensationStep(target="http://beds/bookings/{key}"))
    assert makes_effect(call, "STEP_OUTCOME_SUCCEEDED")
    assert not makes_effect(call, "STEP_OUTCOME_SKIPPED_CONDITION")   # its `when` was false
    assert not makes_effect(ActionStep(step_id="check_insurance",
                                       target="http://payer/eligibility"), "")  # an inquiry
    assert not makes_effect(ActionStep(step_id="review", kind=StepKind.STEP_KIND_APPROVAL,
                                       approval=ApprovalSpec()), "STEP_OUTCOME_SUCCEEDED")
    assert not makes_effect(ActionStep(step_id="count", target="http://analytics/e/append"),
                            "STEP_OUTCOME_SUCCEEDED")
    plan = ActionPlan(steps=[ActionStep(step_id="register_patient", target="http://ehr/Patient"),
                             call])
    # a stopped admission keeps its patient (no compensation) but must release its bed
    assert undone_steps(plan) == {"book_bed"}
    assert undone_steps(None) is None
