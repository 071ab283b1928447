"""The demo's admission forms (switchyard_packs.hospital_admission.samples): deterministic,
every scenario present, and the payer records and bed capacity they come with make each form
end as its scenario says (judged by the demo downstream's own payer logic)."""

from __future__ import annotations

import json
from collections import Counter

from services.executor.downstream.hospital.payer import eligibility
from switchyard_packs.hospital_admission.samples import FULL_UNIT, SCENARIOS, workload


def test_same_seed_same_forms_other_seed_other_forms() -> None:
    assert workload(30, 3) == workload(30, 3)
    assert [a.text for a in workload(30, 3).admissions] != \
        [a.text for a in workload(30, 4).admissions]
    assert len({a.key for a in workload(30, 3).admissions}) == 30


def test_every_scenario_and_layout_and_a_readmission() -> None:
    admissions = workload(48, 7).admissions
    assert set(Counter(a.scenario for a in admissions)) == set(SCENARIOS)
    assert sum(a.scenario == "match" for a in admissions) >= len(admissions) // 2
    assert {a.layout for a in admissions} == {"intake", "two_column", "letter", "adt_json"}
    assert any(a.readmission for a in admissions)
    for admission in admissions:
        if admission.layout == "adt_json":
            record = json.loads(admission.text)
            assert record["messageType"] == "ADT^A01"
            assert admission.content_type == "application/json"
        else:
            assert admission.fields["member_id"] in admission.text
        if admission.layout == "letter":
            assert admission.fields["admission_type"] == "transfer"
        consent = admission.fields["consent_signed"]
        assert consent is (admission.scenario != "consent_not_signed")


def test_payer_records_disagree_exactly_where_the_scenario_says() -> None:
    load = workload(64, 11)
    for admission in load.admissions:
        f = admission.fields
        answer = eligibility(load.members.get(f["member_id"]), {
            "member_id": f["member_id"], "patient_name": f["patient_name"],
            "date_of_birth": f["date_of_birth"], "group_number": f["group_number"],
            "admission_type": f["admission_type"]}, "2026-11-20")
        assert tuple(d["field"] for d in answer["discrepancies"]) == \
            admission.expected_discrepancies, (admission.scenario, answer)


def test_beds_for_every_form_but_the_full_units() -> None:
    load = workload(64, 11)
    wanted = Counter((a.fields["requested_unit"], a.fields["bed_type"])
                     for a in load.admissions)
    for (unit, bed_type), count in wanted.items():
        spec = load.units[unit]
        free = spec["beds"][bed_type] - spec.get("occupied", {}).get(bed_type, 0)
        if (unit, bed_type) == FULL_UNIT:
            assert free == 0
        else:
            assert free >= count
    assert all(a.scenario == "unit_full" for a in load.admissions
               if (a.fields["requested_unit"], a.fields["bed_type"]) == FULL_UNIT)
