"""The demo downstream's hospital (EHR, payer, beds) against the real process and PostgreSQL.

What the ``hospital_admission`` plan relies on: a patient is matched by identifier instead of
created twice (also when two admissions of one person arrive together), the payer names each
disagreement by the pack's field, a full unit answers 409 without consuming the key so the same
key books once a discharge frees a bed, a booking or an encounter is undone by its key, a
repeat of a key replays the first answer, the fault board takes the hospital's systems by name,
and all of it survives a restart of the downstream.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from tests.executor.harness import Harness, Service

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("downstream")]
MRN = "urn:switchyard:mrn"
MEMBER = "urn:switchyard:member:northwind health"


def key() -> str:
    return f"test-{uuid.uuid4()}"


async def call(h: Harness, method: str, path: str, body: Any = None,
               idempotency_key: str | None = None) -> tuple[int, dict[str, Any], bool]:
    """(status, JSON answer, replayed?)"""
    assert h.http is not None
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    async with h.http.request(method, path, json=body, headers=headers) as response:
        return (response.status, await response.json(),
                response.headers.get("Idempotent-Replayed") == "true")


def patient(name: str, birth: str, *identifiers: tuple[str, str]) -> dict[str, Any]:
    return {"resourceType": "Patient", "name": [{"text": name}], "birthDate": birth,
            "gender": "female",
            "identifier": [{"system": s, "value": v} for s, v in identifiers]}


async def test_patient_is_matched_by_identifier_never_duplicated(harness: Harness) -> None:
    first = key()
    status, created, _ = await call(harness, "POST", "/ehr/Patient", patient(
        "Ada Quill", "1961-04-02", (MRN, "MRN-0042")), first)
    assert status == 201 and created["matched"] is False
    patient_id = created["id"]
    # a repeat of the key replays the first answer
    status, again, replayed = await call(harness, "POST", "/ehr/Patient", patient(
        "Ada Quill", "1961-04-02", (MRN, "MRN-0042")), first)
    assert (status, again, replayed) == (200, created, True)
    # another admission of her, by MRN (spaced, lower case) plus a member id: matched, merged
    status, matched, replayed = await call(harness, "POST", "/ehr/Patient", patient(
        "QUILL, ADA", "1961-04-02", (MRN, "mrn-00 42"), (MEMBER, "NWH123")), key())
    assert (status, replayed) == (200, False)
    assert matched["matched"] is True and matched["matched_on"] == "identifier"
    assert matched["id"] == patient_id
    assert {(i["system"], i["value"]) for i in matched["resource"]["identifier"]} == {
        (MRN, "MRN-0042"), (MEMBER, "NWH123")}
    # a third admission with only the member id (no MRN on the form): the same patient
    status, by_member, _ = await call(harness, "POST", "/ehr/Patient", patient(
        "Ada Quill", "1961-04-02", (MEMBER, "NWH123")), key())
    assert (status, by_member["id"]) == (200, patient_id)
    status, found, _ = await call(harness, "GET",
                                  f"/ehr/Patient?identifier={MEMBER}|NWH123")
    assert status == 200 and found["resourceType"] == "Bundle" and found["total"] == 1
    assert found["entry"][0]["resource"]["id"] == patient_id
    status, none, _ = await call(harness, "GET", f"/ehr/Patient?identifier={MRN}|nobody")
    assert (status, none["total"]) == (200, 0)

    # eight admissions of one new person at once, each with its own key: one patient
    answers = await asyncio.gather(*(call(harness, "POST", "/ehr/Patient", patient(
        "Bo Lind", "1990-01-01", (MRN, "MRN-7000")), key()) for _ in range(8)))
    assert sorted(a[0] for a in answers) == [200] * 7 + [201]
    assert len({a[1]["id"] for a in answers}) == 1
    assert (await call(harness, "POST", "/ehr/Patient", {"resourceType": "Coverage"},
                       key()))[0] == 422


async def test_coverage_encounter_and_their_reversal(harness: Harness) -> None:
    _, person, _ = await call(harness, "POST", "/ehr/Patient", patient(
        "Cy Morrow", "1970-07-07", (MRN, "MRN-3001")), key())
    reference = f"Patient/{person['id']}"
    coverage = {"resourceType": "Coverage", "beneficiary": {"reference": reference},
                "payor": [{"display": "Northwind Health"}], "subscriberId": "NWH555",
                "class": [{"type": {"text": "group"}, "value": "G-77"}], "order": 1.0,
                "subscriber": {"display": "Cy Morrow"}}
    status, first, _ = await call(harness, "POST", "/ehr/Coverage", coverage, key())
    assert status == 201 and first["resource"]["subscriberId"] == "NWH555"
    assert first["resource"]["order"] == 1   # a plan's numbers arrive as 1.0
    assert (await call(harness, "POST", "/ehr/Coverage", {**coverage, "order": 1.5},
                       key()))[0] == 422
    # one coverage per (beneficiary, payor, subscriberId): another admission updates it
    status, second, _ = await call(harness, "POST", "/ehr/Coverage",
                                   {**coverage, "class": [{"type": {"text": "group"},
                                                           "value": "G-78"}]}, key())
    assert (status, second["id"]) == (200, first["id"])
    missing = key()
    bad = {**coverage, "beneficiary": {"reference": "Patient/999999999"}}
    assert (await call(harness, "POST", "/ehr/Coverage", bad, missing))[0] == 422
    # the refused call consumed nothing: the key works with a good body
    assert (await call(harness, "POST", "/ehr/Coverage", coverage, missing))[0] == 200

    encounter = {"resourceType": "Encounter", "status": "in-progress",
                 "class": {"code": "EMER"}, "subject": {"reference": reference},
                 "reasonCode": [{"text": "chest pain"}],
                 "location": [{"location": {"display": "CARDIOLOGY-1"}}],
                 "hospitalization": {"admitSource": {"text": "emergency"}}}
    admit = key()
    status, created, _ = await call(harness, "POST", "/ehr/Encounter", encounter, admit)
    assert status == 201 and created["resource"]["status"] == "in-progress"
    status, listed, _ = await call(harness, "GET", f"/ehr/Encounter?subject={reference}")
    assert (status, listed["total"]) == (200, 1)

    status, undone, replayed = await call(harness, "DELETE", f"/ehr/Encounter/{admit}",
                                          idempotency_key=key())
    assert (status, undone["reversed"], replayed) == (200, True, False)
    assert undone["resource"]["status"] == "cancelled"
    status, again, replayed = await call(harness, "DELETE", f"/ehr/Encounter/{admit}",
                                         idempotency_key=key())
    assert (status, again["reversed"], replayed) == (200, True, True)
    _, listed, _ = await call(harness, "GET", f"/ehr/Encounter?subject={reference}")
    assert [e["resource"]["status"] for e in listed["entry"]] == ["cancelled"]
    # the compensation of a step that never landed does not fail
    status, never, _ = await call(harness, "DELETE", f"/ehr/Encounter/{key()}",
                                  idempotency_key=key())
    assert (status, never["reversed"]) == (200, False)
    effects = await harness.pool.fetch(  # type: ignore[union-attr]
        f'SELECT status FROM "{harness.downstream_schema}".effects WHERE idempotency_key = $1',
        admit)
    assert [e["status"] for e in effects] == ["reversed"]

    # coverages: searched by beneficiary, reversed by the key that wrote them, read by id
    status, covered, _ = await call(harness, "GET", f"/ehr/Coverage?beneficiary={reference}")
    assert (status, covered["total"]) == (200, 1)
    status, undone, _ = await call(harness, "DELETE", f"/ehr/Coverage/{missing}",
                                   idempotency_key=key())
    assert (status, undone["reversed"], undone["resource"]["status"]) == (200, True, "cancelled")
    status, read, _ = await call(harness, "GET", f"/ehr/Coverage/{first['id']}")
    assert (status, read["status"]) == (200, "cancelled")
    status, read, _ = await call(harness, "GET", f"/ehr/Patient/{person['id']}")
    assert (status, read["name"]) == (200, [{"text": "Cy Morrow"}])
    assert (await call(harness, "GET", "/ehr/Patient/999999999"))[0] == 404

    # a fault on one collection leaves the others alone
    await harness.faults("ehr/patient", outage=True)
    try:
        assert (await call(harness, "POST", "/ehr/Patient", patient(
            "Cy Morrow", "1970-07-07", (MRN, "MRN-3001")), key()))[0] == 503
        assert (await call(harness, "POST", "/ehr/Encounter", encounter, key()))[0] == 201
    finally:
        await harness.clear_faults()


MEMBERS = {
    "NWH-100": {"payer": "Northwind Health", "plan": "Gold PPO", "status": "active",
                "patient_name": "Dana O'Neil", "date_of_birth": "1985-03-09",
                "group_number": "GRP-1", "subscriber": "Dana O'Neil",
                "covers": ["emergency", "elective", "transfer"]},
    "NWH-200": {"payer": "Northwind Health", "plan": "Basic HMO", "status": "inactive",
                "ended": "2024-12-31", "patient_name": "Eli Park",
                "date_of_birth": "1979-11-30", "group_number": "GRP-2",
                "subscriber": "Eli Park", "covers": ["emergency", "transfer"]},
}


def inquiry(member_id: str, name: str, dob: str, admission_type: str = "emergency",
            group: str = "") -> dict[str, str]:
    return {"payer": "Northwind Health", "member_id": member_id, "group_number": group,
            "patient_name": name, "date_of_birth": dob, "admission_type": admission_type}


async def test_payer_eligibility_names_each_discrepancy(harness: Harness) -> None:
    assert (await call(harness, "DELETE", "/_/payer/members"))[0] == 200
    for member_id, record in MEMBERS.items():
        status, stored, _ = await call(harness, "PUT", f"/_/payer/members/{member_id}", record)
        assert status == 200 and stored["member_id"] == member_id
    assert (await call(harness, "GET", "/_/payer/members/NWH-100"))[1]["plan"] == "Gold PPO"
    assert (await call(harness, "PUT", "/_/payer/members/X", {"status": "maybe"}))[0] == 422

    async def ask(body: dict[str, str]) -> dict[str, Any]:
        status, answer, _ = await call(harness, "POST", "/payer/eligibility", body)
        assert status == 200, answer
        return answer

    # "Last, First", case, punctuation and spacing do not matter
    ok = await ask(inquiry("NWH-100", "ONEIL,  dana", "1985-03-09", "elective", "grp-1"))
    assert ok == {"eligible": True, "status": "active", "plan": "Gold PPO",
                  "payer": "Northwind Health", "discrepancies": []}

    def fields(answer: dict[str, Any]) -> dict[str, tuple[str, str]]:
        assert all(d["source"] == "payer" and d["note"] for d in answer["discrepancies"])
        return {d["field"]: (d["submitted"], d["found"]) for d in answer["discrepancies"]}

    wrong = await ask(inquiry("NWH-100", "Dana O'Neill", "1985-09-03", group="GRP-9"))
    assert wrong["eligible"] is False and wrong["status"] == "active"
    assert fields(wrong) == {"patient_name": ("Dana O'Neill", "Dana O'Neil"),
                             "date_of_birth": ("1985-09-03", "1985-03-09"),
                             "group_number": ("GRP-9", "GRP-1")}

    unknown = await ask(inquiry("NWH-999", "Dana O'Neil", "1985-03-09"))
    assert (unknown["eligible"], unknown["status"], unknown["plan"]) == (False, "not_found", "")
    assert fields(unknown) == {"member_id": ("NWH-999", "")}

    ended = await ask(inquiry("NWH-200", "Eli Park", "1979-11-30", "elective"))
    assert ended["status"] == "inactive" and ended["eligible"] is False
    assert fields(ended) == {"coverage_status": ("active", "inactive"),
                             "admission_type": ("elective", "emergency, transfer")}
    (status_note,) = [d["note"] for d in ended["discrepancies"]
                      if d["field"] == "coverage_status"]
    assert status_note == "coverage ended 2024-12-31"

    assert (await call(harness, "DELETE", "/_/payer/members"))[1] == {"deleted": 2}
    assert (await ask(inquiry("NWH-100", "Dana O'Neil", "1985-03-09")))["status"] == \
        "not_found"


async def test_payer_outage_is_the_fault_boards(harness: Harness) -> None:
    await call(harness, "PUT", "/_/payer/members/NWH-300", {
        "payer": "Northwind Health", "plan": "Gold PPO", "patient_name": "Fay Wu",
        "date_of_birth": "2001-02-03"})
    before = await harness.call_count("/payer/eligibility")
    await harness.faults("payer", outage=True)
    try:
        status, _, _ = await call(harness, "POST", "/payer/eligibility",
                                  inquiry("NWH-300", "Fay Wu", "2001-02-03"))
        assert status == 503
        # the other hospital systems are not affected
        assert (await call(harness, "GET", "/ehr/Patient?_id=1"))[0] == 200
    finally:
        await harness.clear_faults()
    status, answer, _ = await call(harness, "POST", "/payer/eligibility",
                                   inquiry("NWH-300", "Fay Wu", "2001-02-03"))
    assert (status, answer["eligible"]) == (200, True)
    assert await harness.call_count("/payer/eligibility") == before + 2   # both logged


async def units(harness: Harness) -> dict[str, Any]:
    status, answer, _ = await call(harness, "GET", "/_/beds/units")
    assert status == 200
    return answer["units"]


async def test_beds_no_bed_then_booking_after_discharge_and_release(harness: Harness) -> None:
    board = await units(harness)   # the default hospital
    assert board["icu"]["icu"]["capacity"] == 4
    assert board["cardiology"]["telemetry"]["capacity"] == 4
    assert board["medical"]["isolation"]["capacity"] == 2
    assert {"emergency", "medical", "surgical", "icu", "maternity", "pediatrics",
            "cardiology"} <= set(board)

    status, unit, _ = await call(harness, "PUT", "/_/beds/units/burns",
                                 {"beds": {"standard": 2, "isolation": 1},
                                  "occupied": {"standard": 1}})
    assert status == 200 and unit["burns"]["standard"] == {"capacity": 2, "occupied": 1,
                                                          "free": 1}
    booking = {"unit": "burns", "bed_type": "standard", "admission_type": "emergency",
               "patient": "Patient/1"}
    first, second = key(), key()
    status, booked, _ = await call(harness, "POST", "/beds/bookings", booking, first)
    assert status == 201 and booked["bed"].startswith("BURNS-") and booked["unit"] == "burns"
    for _ in range(2):   # no bed: 409, the key is not consumed
        status, full, _ = await call(harness, "POST", "/beds/bookings", booking, second)
        assert (status, full) == (409, {"error": "no_bed", "unit": "burns",
                                        "bed_type": "standard", "free": 0})
    status, discharged, _ = await call(harness, "POST", "/_/beds/units/burns/discharge",
                                       {"bed_type": "standard", "count": 1})
    assert (status, discharged["discharged"], discharged["free"]) == (200, 1, 1)
    status, later, _ = await call(harness, "POST", "/beds/bookings", booking, second)
    assert status == 201 and later["bed"] != booked["bed"]
    # a repeat of the first key replays its booking; the unit is full again
    assert await call(harness, "POST", "/beds/bookings", booking, first) == (200, booked, True)
    assert (await units(harness))["burns"]["standard"]["free"] == 0

    status, released, _ = await call(harness, "DELETE", f"/beds/bookings/{second}",
                                     idempotency_key=key())
    assert (status, released["reversed"], released["bed"]) == (200, True, later["bed"])
    assert (await units(harness))["burns"]["standard"]["free"] == 1
    assert (await call(harness, "DELETE", f"/beds/bookings/{key()}",
                       idempotency_key=key()))[1]["reversed"] is False

    assert (await call(harness, "POST", "/beds/bookings", {**booking, "unit": "mars"},
                       key()))[0] == 422
    assert (await call(harness, "POST", "/beds/bookings", {**booking, "bed_type": "icu"},
                       key()))[0] == 422
    # capacity cannot drop below the occupied beds
    assert (await call(harness, "PUT", "/_/beds/units/burns", {"beds": {}}))[0] == 409


async def test_lost_booking_answer_is_replayed_not_booked_twice(harness: Harness) -> None:
    await call(harness, "PUT", "/_/beds/units/lost", {"beds": {"standard": 3}})
    await harness.faults("beds", lost_response_rate=1.0)
    booking = {"unit": "lost", "bed_type": "standard", "patient": "Patient/1"}
    once = key()
    try:
        assert (await call(harness, "POST", "/beds/bookings", booking, once))[0] == 503
    finally:
        await harness.clear_faults()
    status, answer, replayed = await call(harness, "POST", "/beds/bookings", booking, once)
    assert (status, replayed) == (200, True) and answer["bed"] == "LOST-1"
    assert (await units(harness))["lost"]["standard"]["occupied"] == 1


async def test_state_survives_a_downstream_restart(harness: Harness,
                                                   downstream: Service) -> None:
    _, person, _ = await call(harness, "POST", "/ehr/Patient", patient(
        "Gil Ortega", "1955-05-05", (MRN, "MRN-9100")), key())
    await call(harness, "PUT", "/_/payer/members/NWH-400", {
        "payer": "Northwind Health", "plan": "Gold PPO", "patient_name": "Gil Ortega",
        "date_of_birth": "1955-05-05"})
    await call(harness, "PUT", "/_/beds/units/restart", {"beds": {"standard": 1}})
    await call(harness, "PUT", "/_/beds/units/pediatrics", {"beds": {"standard": 2}})
    booked = key()
    assert (await call(harness, "POST", "/beds/bookings", {"unit": "restart"}, booked))[0] == 201
    await asyncio.to_thread(downstream.stop)
    await asyncio.to_thread(downstream.start)
    status, again, _ = await call(harness, "POST", "/ehr/Patient", patient(
        "Gil Ortega", "1955-05-05", (MRN, "MRN-9100")), key())
    assert (status, again["id"]) == (200, person["id"])
    status, answer, _ = await call(harness, "POST", "/payer/eligibility",
                                   inquiry("NWH-400", "Gil Ortega", "1955-05-05"))
    assert answer["eligible"] is True
    assert (await units(harness))["restart"]["standard"]["free"] == 0
    # the default hospital is not put back over what the operator changed
    assert (await units(harness))["pediatrics"]["standard"]["capacity"] == 2
    assert (await call(harness, "POST", "/beds/bookings", {"unit": "restart"}, key()))[0] == 409


async def test_the_demo_seeds_what_its_forms_need(harness: Harness) -> None:
    """``switchyard demo``'s seeding (over the operator API, twice: a second run finds the beds
    of the first taken) makes the payer answer each form as its scenario says, leaves a bed for
    every form but the full unit's, and a discharge lets a waiting one book."""
    from switchyard.demo import seed_hospital
    from switchyard_packs.hospital_admission.samples import FULL_UNIT, workload

    load = workload(32, 5)
    assert harness.http is not None
    await seed_hospital(harness.http, load)
    for admission in load.admissions:
        f = admission.fields
        status, answer, _ = await call(harness, "POST", "/payer/eligibility", {
            "payer": f["insurance_payer"], "member_id": f["member_id"],
            "group_number": f["group_number"], "patient_name": f["patient_name"],
            "date_of_birth": f["date_of_birth"], "admission_type": f["admission_type"]})
        assert status == 200
        assert tuple(d["field"] for d in answer["discrepancies"]) == \
            admission.expected_discrepancies, (admission.scenario, answer)
    for run in range(2):
        if run:
            await seed_hospital(harness.http, load)   # a second demo run on the same stack
        waiting = []
        for admission in load.admissions:
            f = admission.fields
            booking_key = key()
            status, _, _ = await call(harness, "POST", "/beds/bookings", {
                "unit": f["requested_unit"], "bed_type": f["bed_type"]}, booking_key)
            if (f["requested_unit"], f["bed_type"]) == FULL_UNIT:
                assert status == 409
                waiting.append(booking_key)
            else:
                assert status == 201, admission
        assert waiting
        unit, bed_type = FULL_UNIT
        await call(harness, "POST", f"/_/beds/units/{unit}/discharge",
                   {"bed_type": bed_type, "count": 1})
        assert (await call(harness, "POST", "/beds/bookings",
                           {"unit": unit, "bed_type": bed_type}, waiting[0]))[0] == 201
