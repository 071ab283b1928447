"""What the hospital admissions plan needs of the executor, through the real executor, broker,
PostgreSQL and demo downstream: a call step's ``retry_later`` (parked on a timer while the
downstream answers "not now", retried with the same idempotency key, escalated when the next
try is past the deadline, compensated when cancelled), step outputs kept whole (sealed) for
later steps across a park and resume while what is stored and published is redacted by the
decision's personal and health fields, and an approval step's discrepancies and revealed
fields in its escalation.

Decisions are built by hand, as the decision service would publish a pack's plan."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from google.protobuf.json_format import MessageToDict

from switchyard.v1 import (
    ActionStep,
    DataClass,
    Decision,
    EscalationReason,
    FieldExtraction,
    RetryLater,
)
from tests.executor.harness import Harness, decision, http_step
from tests.executor.test_cancellation import request_cancellation
from tests.executor.test_plan_features import (
    approval_step,
    bodies,
    named,
    outcomes,
    result,
    seconds,
)
from tests.executor.test_saga import escalations_for
from tests.polling import eventually

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("executor")]
HASTY = "hasty"  # a tenant whose SLA is shorter than a retry-later step's wait

#: The admission's fields as the pack declares them: (value, type, class).
PATIENT = {
    "patient_name": ("Maria Elena Garcia", "string", DataClass.DATA_CLASS_PERSONAL),
    "date_of_birth": ("1984-03-02", "date", DataClass.DATA_CLASS_PERSONAL),
    "diagnosis": ("acute appendicitis", "string", DataClass.DATA_CLASS_HEALTH),
    "requested_unit": ("surgical", "string", DataClass.DATA_CLASS_DERIVED),
}
#: The downstream's injected "not now": HTTP 409 with {"error": ...}.
NOT_NOW = "answer.status == 409 && has(answer.body.error)"


@pytest.fixture(scope="module")
def executor_overrides() -> dict[str, Any]:
    return {"executor_sla_overrides": f"{HASTY}:20"}


def admission(task_id: str, tenant: str, steps: list[ActionStep]) -> Decision:
    d = decision(task_id, tenant, steps)
    for name, (value, type_, data_class) in PATIENT.items():
        d.fields.append(FieldExtraction(name=name, value=value, type=type_,
                                        data_class=data_class, confidence=0.9))  # type: ignore[arg-type]
        d.extracted_fields[name] = value
    d.revealed_fields.append("patient_name")
    return d


def later(step: ActionStep, every_s: float, when: str = NOT_NOW) -> ActionStep:
    step.retry_later.CopyFrom(RetryLater(when=when, every=seconds(every_s)))
    return step


def admission_plan(collection: str, every_s: float) -> list[ActionStep]:
    """Register the patient, book a bed (not now: try again later), admit with both."""
    return [
        named(http_step("1-register", "http://erp/patients",
                        {"name": "${fields.patient_name}", "reason": "${fields.diagnosis}"},
                        undo="http://erp/patients/{idempotency_key}"), "register"),
        named(later(http_step("2-book", f"http://erp/{collection}",
                              {"patient": "${steps.register.output.id}",
                               "unit": "${fields.requested_unit}"},
                              undo=f"http://erp/{collection}/{{idempotency_key}}"), every_s),
              "book"),
        named(http_step("3-admit", "http://erp/encounters",
                        {"patient_name": "${steps.register.output.data.name}",
                         "bed": "${steps.book.output.id}"}), "admit"),
    ]


async def parked_later(harness: Harness, task_id: str) -> bool:
    job = await harness.job(task_id)
    return job is not None and (job["state"], job["blocked_by"]) == ("parked", "later")


async def test_retry_later_parks_tries_again_with_the_same_key_and_outputs_survive(
        harness: Harness) -> None:
    (task_id,) = await harness.seed(1, kind="hospital_admission")
    await harness.faults("erp/beds", error_rate=1.0, error_status=409)
    try:
        await harness.send([admission(task_id, "acme", admission_plan("beds", every_s=1))])
        await eventually(lambda: parked_later(harness, task_id), timeout_s=60)
        assert (await harness.statuses([task_id]))[task_id] == (
            "BLOCKED", "EXECUTING", "retry_later:2-book")
        steps = await harness.executions(task_id)
        assert outcomes(steps) == {"1-register": "SUCCEEDED", "2-book": "WAITING"}
        waiting = await result(harness, task_id, "2-book")
        assert waiting.response_summary.startswith(f"retry later ({NOT_NOW}): ")
        assert "409" in waiting.response_summary

        async def tried_twice() -> bool:
            return len(await harness.calls(f"{task_id}:2-book")) >= 2

        await eventually(tried_twice, timeout_s=60)  # called again after `every`
        assert harness.pool is not None
        # the endpoint answered: its breaker counted nothing
        assert await harness.pool.fetchval(
            "SELECT state FROM executor_breakers WHERE name = 'http://erp'") in (None, "closed")
    finally:
        await harness.clear_faults()
    final = await harness.wait([task_id], timeout_s=90)
    assert final[task_id] == ("SUCCEEDED", "DONE", "executed")
    tries = await harness.calls(f"{task_id}:2-book")
    assert {c["idempotency_key"] for c in tries} == {f"{task_id}:2-book"}
    assert [c["status"] for c in tries][-1] == 201 and len(tries) >= 3
    assert all(c["status"] == 409 for c in tries[:-1])
    # after two parks and resumes, the last step posted the real values the first ones got
    stored = await bodies(harness, task_id)
    booked = next(e for e in await harness.effects([task_id])
                  if e["idempotency_key"] == f"{task_id}:2-book")
    assert stored["3-admit"] == {"patient_name": "Maria Elena Garcia", "bed": booked["id"]}
    # ... while what is kept in plain storage withholds them (the ERP echoes what was posted)
    register = MessageToDict((await result(harness, task_id, "1-register")).output)
    assert register["data"] == {"name": "[WITHHELD]", "reason": "[WITHHELD]"}
    rows = await harness.pool.fetch("SELECT result, error, output FROM executions "
                                    "WHERE task_id = $1", uuid.UUID(task_id))
    for row in rows:
        kept = bytes(row["result"]) + row["error"].encode()
        for value in (b"Garcia", b"appendicitis"):
            assert value not in kept
    assert sum(row["output"] is not None for row in rows) == 3  # the full outputs, sealed


async def test_retry_later_past_the_deadline_escalates_with_the_plan(
        harness: Harness, exec_settings: Any) -> None:
    (task_id,) = await harness.seed(1, tenant=HASTY, kind="hospital_admission")
    await harness.faults("erp/wards", error_rate=1.0, error_status=409)
    try:
        await harness.send([admission(task_id, HASTY, admission_plan("wards", every_s=120))])
        final = await harness.wait([task_id], lambda s, st, r: st == "AWAITING_REVIEW",
                                   what="escalated", timeout_s=90)
    finally:
        await harness.clear_faults()
    assert final[task_id] == ("BLOCKED", "AWAITING_REVIEW", "sla_at_risk")
    escalation = (await escalations_for(exec_settings, {task_id}))[task_id]
    assert escalation.reason == EscalationReason.ESCALATION_REASON_SLA_AT_RISK
    assert "retry_later:2-book" in escalation.reason_detail
    assert [s.step_id for s in escalation.proposed_decision.plan.steps] == [
        "1-register", "2-book", "3-admit"]
    assert list(escalation.revealed_fields) == ["patient_name"]  # the decision's
    assert outcomes(await harness.executions(task_id)) == {
        "1-register": "SUCCEEDED", "2-book": "WAITING"}


async def test_cancelling_a_task_parked_on_retry_later_compensates_it(
        harness: Harness) -> None:
    (task_id,) = await harness.seed(1, kind="hospital_admission")
    await harness.faults("erp/cots", error_rate=1.0, error_status=409)
    try:
        await harness.send([admission(task_id, "acme", admission_plan("cots", every_s=300))])
        await eventually(lambda: parked_later(harness, task_id), timeout_s=60)
        await request_cancellation(harness, task_id)
        final = await harness.wait([task_id], timeout_s=60)
    finally:
        await harness.clear_faults()
    assert final[task_id] == ("CANCELLED", "DONE", "cancelled")
    assert outcomes(await harness.executions(task_id)) == {
        "1-register": "COMPENSATED", "2-book": "FAILED_PERMANENT",
        "compensate:1-register": "SUCCEEDED"}
    assert len(await harness.calls(f"{task_id}:2-book")) == 1  # woken, not tried again
    assert {e["idempotency_key"]: e["status"] for e in await harness.effects([task_id])} == {
        f"{task_id}:1-register": "reversed"}


def check_plan(discrepancies: str) -> list[ActionStep]:
    """A payer check whose answer lists what disagrees, then an approval showing it."""
    return [
        named(http_step("1-check", "http://erp/checks", {"discrepancies": [
            {"field": "date_of_birth", "submitted": "${fields.date_of_birth}",
             "found": "1948-03-02", "source": "payer", "note": "differs"},
            {"field": "member_id", "submitted": "XK-1", "found": "", "source": "payer",
             "note": "unknown member"}]}, undo="http://erp/checks/{idempotency_key}"),
              "check"),
        approval_step("2-insurance_review", reviewer_group="admissions-insurance",
                      instructions="Check the coverage", discrepancies=discrepancies,
                      reveal=["patient_name", "date_of_birth"]),
    ]


async def test_an_approval_shows_its_discrepancies_and_reveals_its_fields(
        harness: Harness, exec_settings: Any) -> None:
    shown, broken = await harness.seed(2, kind="hospital_admission")
    await harness.send([
        admission(shown, "acme", check_plan("steps.check.output.data.discrepancies")),
        admission(broken, "acme", check_plan("steps.check.output.data.discrepancies[0]")),
    ])
    final = await harness.wait([shown], lambda s, st, r: st == "AWAITING_REVIEW",
                               what="in review")
    assert final[shown] == ("BLOCKED", "AWAITING_REVIEW", "approval:2-insurance_review")
    escalation = (await escalations_for(exec_settings, {shown}))[shown]
    assert escalation.reason == EscalationReason.ESCALATION_REASON_APPROVAL_STEP
    assert [MessageToDict(d, preserving_proto_field_name=True)
            for d in escalation.discrepancies] == [
        {"field": "date_of_birth", "submitted": "1984-03-02", "found": "1948-03-02",
         "source": "payer", "note": "differs"},
        {"field": "member_id", "submitted": "XK-1", "source": "payer",
         "note": "unknown member"}]
    assert list(escalation.revealed_fields) == ["patient_name", "date_of_birth"]
    # the check's answer as stored: the personal field's values withheld
    stored = json.dumps(MessageToDict((await result(harness, shown, "1-check")).output))
    assert "1984-03-02" not in stored and "1948-03-02" not in stored

    # an expression that gives no list fails the step; the check is undone
    final = await harness.wait([broken])
    assert final[broken] == ("FAILED", "DONE", "execution_failed")
    steps = await harness.executions(broken)
    assert outcomes(steps) == {"1-check": "COMPENSATED", "2-insurance_review": "FAILED_PERMANENT",
                               "compensate:1-check": "SUCCEEDED"}
    assert "must give a list of maps" in steps["2-insurance_review"][2]


async def test_no_bed_free_waits_until_a_discharge_frees_one(harness: Harness) -> None:
    """The demo bed board's own "no bed" (409 no_bed, the key not consumed): the booking
    waits on retry_later until a patient is discharged, then books that bed, and the next step
    posts the bed it got."""
    assert harness.http is not None
    unit = f"ward{uuid.uuid4().hex[:6]}"  # a unit of this test's own: one bed, taken
    async with harness.http.put(f"/_/beds/units/{unit}",
                                json={"beds": {"standard": 1}}) as response:
        assert response.status == 200, await response.text()
    async with harness.http.post("/beds/bookings", json={"unit": unit, "bed_type": "standard"},
                                 headers={"Idempotency-Key": f"other-{unit}"}) as response:
        assert response.status == 201, await response.text()
    (task_id,) = await harness.seed(1, kind="hospital_admission")
    plan = [
        named(later(http_step("1-book_bed", "http://beds/bookings",
                              {"unit": unit, "bed_type": "standard",
                               "patient": "Patient/p-1", "admission_type": "emergency"},
                              undo="http://beds/bookings/{idempotency_key}"), 1,
                    when="answer.status == 409 && answer.body.error == 'no_bed'"), "book_bed"),
        named(http_step("2-admit", "http://erp/encounters",
                        {"bed": "${steps.book_bed.output.bed}"}), "admit"),
    ]
    await harness.send([admission(task_id, "acme", plan)])
    await eventually(lambda: parked_later(harness, task_id), timeout_s=60)

    async def tried_twice() -> bool:
        return len(await harness.calls(f"{task_id}:1-book_bed")) >= 2

    await eventually(tried_twice, timeout_s=60)

    async def blocked_again() -> bool:  # the second 409 parks it again (after its call)
        return (await harness.statuses([task_id]))[task_id][0] == "BLOCKED"

    await eventually(blocked_again, timeout_s=30)
    async with harness.http.post(f"/_/beds/units/{unit}/discharge",
                                 json={"bed_type": "standard", "count": 1}) as response:
        assert response.status == 200, await response.text()
    final = await harness.wait([task_id], timeout_s=90)
    assert final[task_id] == ("SUCCEEDED", "DONE", "executed")
    booked = MessageToDict((await result(harness, task_id, "1-book_bed")).output)
    assert booked["unit"] == unit and booked["bed"]
    assert (await bodies(harness, task_id))["2-admit"] == {"bed": booked["bed"]}
    tries = await harness.calls(f"{task_id}:1-book_bed")
    assert [c["status"] for c in tries][-1] == 201
    assert {c["status"] for c in tries[:-1]} == {409}
