"""The packs Switchyard ships: they load, carry examples and golden cases, and the invoice
pack keeps the invoice rules, defaults and plan Switchyard had before packs."""

from __future__ import annotations

import pytest

from switchyard.packs import builtin_packs, load_pack, plan_to_proto, validate_pack_files
from switchyard.v1 import Connector, StepKind

SHIPPED = ("invoice", "support_ticket", "admission_form", "classroom_event", "hospital_admission")


def test_every_shipped_pack_is_found_and_valid() -> None:
    packs = builtin_packs()
    assert sorted(packs) == sorted(SHIPPED)
    for name, pack in packs.items():
        assert pack.name == name
        assert validate_pack_files(pack.files) == []
        assert len(pack.examples) >= 40, name
        assert len(pack.tests) >= 3, name
        assert pack.plan, name


@pytest.mark.parametrize("name", [n for n in SHIPPED if n not in ("invoice", "hospital_admission")])
def test_other_packs_run_straight_through_by_default(name: str) -> None:
    pack = builtin_packs()[name]
    assert pack.rules[-1].name == "confident_route"
    assert pack.rules[-1].outcome == "auto_execute" and pack.rules[-1].when == "true"
    assert any(c.expect_rule == "confident_route" for c in pack.tests)
    assert any(c.expect_outcome == "escalate" for c in pack.tests)


def test_invoice_pack_keeps_the_invoice_rules_and_defaults() -> None:
    pack = builtin_packs()["invoice"]
    assert [r.name for r in pack.rules] == [
        "vendor_blocked", "amount_over_reject_limit", "credit_note", "missing_fields",
        "amounts_do_not_add_up",
        "vendor_not_allowed",
        "currency_not_allowed", "amount_over_limit", "bank_details_changed",
        "duplicate_invoice", "low_extraction_confidence", "purchase_order_mismatch",
        "purchase_order_matched", "invoice_risk", "bank_account_unconfirmed",
        "straight_through_invoice"]
    assert [r.outcome for r in pack.rules[:2]] == ["reject", "reject"]
    assert {r.name for r in pack.rules if r.review and r.review.priority == "high"} == {
        "amount_over_limit", "bank_details_changed", "duplicate_invoice"}
    assert {r.name for r in pack.rules if r.reason == "LOW_CONFIDENCE"} == {
        "low_extraction_confidence", "invoice_risk"}
    assert pack.defaults == {
        "min_p_auto": 0.80, "min_extraction_confidence": 0.60, "max_auto_amount": 50000,
        "reject_amount_over": 0, "required_fields": ["vendor", "invoice_number", "total",
                                                     "currency"],
        "allowed_currencies": [], "escalate_duplicates": True, "vendors_allow": [],
        "vendors_block": [], "require_allow_list": False, "po_matching": True,
        "po_price_tolerance": 0.02, "po_goods_receipt_required": True,
        "po_line_similarity": 0.5}
    assert (pack.extractor, pack.enrichers) == ("invoice", ("vendor_history", "purchase_orders"))
    assert [(s.name, s.features, s.output_class) for s in pack.scorers] == [
        ("invoice_risk", "invoice", "auto")]
    assert {c.expect_rule for c in pack.tests} >= {
        "straight_through_invoice", "amount_over_limit", "vendor_blocked", "amounts_do_not_add_up",
        "credit_note"}
    assert {f: s.data_class for f, s in pack.fields.items()
            if s.data_class == "personal"} == {"vendor": "personal", "bank_account": "personal"}


def test_invoice_plan_posts_then_pays_with_a_reversal() -> None:
    plan = plan_to_proto(builtin_packs()["invoice"])
    assert [(s.step_id, s.kind, s.connector, s.target, s.operation) for s in plan.steps] == [
        ("1-post_invoice", StepKind.STEP_KIND_CALL, Connector.CONNECTOR_HTTP,
         "http://erp/invoices", "post_invoice"),
        ("2-schedule_payment", StepKind.STEP_KIND_CALL, Connector.CONNECTOR_HTTP,
         "http://erp/payments", "schedule_payment")]
    undo = plan.steps[0].compensation
    assert (undo.name, undo.target, undo.operation) == (
        "undo_post_invoice", "http://erp/invoices/{idempotency_key}", "DELETE")
    assert not plan.steps[1].HasField("compensation")


def test_default_targets_are_the_demo_downstreams() -> None:
    targets = {name: [s.target for s in plan_to_proto(pack).steps]
               for name, pack in builtin_packs().items()}
    assert targets == {"invoice": ["http://erp/invoices", "http://erp/payments"],
                       "support_ticket": ["http://helpdesk/tickets"],
                       "admission_form": ["http://sis/applicants"],
                       "classroom_event": ["http://analytics/events",
                                           "http://analytics/checkins"],
                       "hospital_admission": [
                           "http://payer/eligibility", "", "http://ehr/Patient",
                           "http://ehr/Coverage", "http://ehr/Coverage", "http://beds/bookings",
                           "http://ehr/Encounter"]}


def test_admission_forms_are_kept_at_most_30_days() -> None:
    assert builtin_packs()["admission_form"].retention_days == 30


def test_a_shipped_pack_folder_loads_from_disk_the_same() -> None:
    import importlib.resources

    folder = importlib.resources.files("switchyard_packs") / "support_ticket"
    assert load_pack(str(folder)).digest == builtin_packs()["support_ticket"].digest


def test_hospital_admissions_read_every_field_of_the_form_with_its_class() -> None:
    pack = builtin_packs()["hospital_admission"]
    classes = {name: spec.data_class for name, spec in pack.fields.items()}
    assert {n for n, c in classes.items() if c == "health"} == {"diagnosis", "allergies"}
    assert {n for n, c in classes.items() if c == "derived"} == {
        "admission_type", "requested_unit", "bed_type", "consent_signed"}
    assert set(classes) - {"diagnosis", "allergies", "admission_type", "requested_unit",
                           "bed_type", "consent_signed"} == {
        "patient_name", "date_of_birth", "sex", "mrn", "admitting_physician", "insurance_payer",
        "member_id", "group_number", "subscriber", "secondary_payer", "secondary_member_id",
        "secondary_group_number", "secondary_subscriber", "emergency_contact"}
    assert {n for n, s in pack.fields.items() if s.required} == {
        "patient_name", "date_of_birth", "admission_type"}
    assert [r.name for r in pack.rules] == [
        "consent_missing", "missing_fields", "low_extraction_confidence", "admit"]
    assert [(s.name, s.kind) for s in pack.plan] == [
        ("check_insurance", "call"), ("insurance_review", "approval"),
        ("register_patient", "call"), ("record_coverage", "call"),
        ("record_secondary_coverage", "call"), ("book_bed", "call"), ("admit", "call")]
    by_name = {s.name: s for s in pack.plan}
    assert by_name["record_coverage"].parallel_group == \
        by_name["record_secondary_coverage"].parallel_group != ""
    assert {s.name: s.compensation.target for s in pack.plan if s.compensation} == {
        "book_bed": "http://beds/bookings/{idempotency_key}",
        "admit": "http://ehr/Encounter/{idempotency_key}"}
    assert pack.retention_days == 30
    assert len(pack.examples) >= 200 and len(pack.tests) >= 10
    assert "application/pdf" in pack.content_types and "image/png" in pack.content_types
