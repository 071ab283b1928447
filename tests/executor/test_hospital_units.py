"""The hospital's plain parts: the embedded stack's aliases for it, name and date comparison,
and the payer's judgement for each kind of discrepancy (no process needed)."""

from __future__ import annotations

from typing import Any

from services.executor.downstream.hospital._common import normal_name, parse_date
from services.executor.downstream.hospital.payer import eligibility, member_record
from services.executor.endpoints import default_endpoint_map, embedded_endpoints
from switchyard import Settings


def test_the_embedded_stack_maps_the_hospital_aliases_to_its_downstream() -> None:
    settings = Settings(downstream_http_port=1234, downstream_grpc_port=5678)
    mapping = default_endpoint_map(settings)
    for alias in ("ehr", "payer", "beds"):
        assert mapping[("http", alias)] == f"http://127.0.0.1:1234/{alias}"
        assert f"{alias}=http://127.0.0.1:1234/{alias}" in embedded_endpoints(settings)


def test_names_and_dates_compare_as_the_payer_does() -> None:
    assert normal_name("O'NEIL,  Dana") == normal_name("dana o'neil") == "danaoneil"
    assert normal_name("Dana O'Neill") != normal_name("Dana O'Neil")
    assert parse_date("1985-03-09T00:00:00Z").isoformat() == "1985-03-09"  # type: ignore[union-attr]
    assert parse_date("09/03/1985") is None


RECORD = member_record("M1", {"payer": "P", "plan": "Silver", "patient_name": "Ann Lee",
                              "date_of_birth": "1990-02-01", "group_number": "G1",
                              "covers": ["emergency"]})


def ask(**changes: str) -> dict[str, Any]:
    body = {"member_id": "M1", "patient_name": "Ann Lee", "date_of_birth": "1990-02-01",
            "group_number": "G1", "admission_type": "emergency", **changes}
    return eligibility(RECORD, body, "2026-01-01")


def test_each_discrepancy_kind_and_only_it() -> None:
    assert ask() == {"eligible": True, "status": "active", "plan": "Silver", "payer": "P",
                     "discrepancies": []}
    cases = {"patient_name": {"patient_name": "Anne Lee"},
             "date_of_birth": {"date_of_birth": "1990-01-02"},
             "group_number": {"group_number": "G2"},
             "admission_type": {"admission_type": "elective"}}
    for field, change in cases.items():
        answer = ask(**change)
        assert answer["eligible"] is False
        assert [(d["field"], d["submitted"]) for d in answer["discrepancies"]] == [
            (field, next(iter(change.values())))]
    ended = eligibility({**RECORD, "ended": "2025-06-30"}, {
        "member_id": "M1", "patient_name": "Ann Lee", "date_of_birth": "1990-02-01"},
        "2026-01-01")
    assert ended["status"] == "inactive" and ended["discrepancies"] == [{
        "field": "coverage_status", "submitted": "active", "found": "inactive",
        "source": "payer", "note": "coverage ended 2025-06-30"}]
    # an end date still ahead is no discrepancy
    assert eligibility({**RECORD, "ended": "2026-06-30"}, {
        "member_id": "M1", "patient_name": "Ann Lee", "date_of_birth": "1990-02-01"},
        "2026-01-01")["eligible"] is True
    unknown = eligibility(None, {"member_id": "M9"}, "2026-01-01")
    assert (unknown["status"], unknown["discrepancies"][0]["field"],
            unknown["discrepancies"][0]["found"]) == ("not_found", "member_id", "")


def test_a_group_the_payer_does_not_hold_is_said_so() -> None:
    no_group = eligibility({**RECORD, "group_number": ""}, {
        "member_id": "M1", "patient_name": "Ann Lee", "date_of_birth": "1990-02-01",
        "group_number": "G7"}, "2026-01-01")
    assert [(d["field"], d["found"], d["note"]) for d in no_group["discrepancies"]] == [
        ("group_number", "", "the payer has no group on file for this member")]
    other = ask(group_number="G2")["discrepancies"][0]
    assert other["note"] == "the member is enrolled under another group"


def test_an_identifier_is_one_however_it_is_typed() -> None:
    from services.executor.downstream.hospital.ehr import identifier_key

    mrn = "urn:switchyard:mrn"
    assert identifier_key(mrn, "SB 0071234") == identifier_key(mrn, "sb-0071234") \
        == identifier_key(" URN:switchyard:MRN ", "SB0071234")
    assert identifier_key(mrn, "SB0071234") != identifier_key(mrn, "SB0071235")
