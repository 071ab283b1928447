"""``switchyard demo``'s account of the hospital admissions: why each ticket was opened (an
approval step by the fields the payer disagreed on, else the reason and rule) and the summary
(admitted without a person, tickets by why)."""

from __future__ import annotations

from rich.console import Console

from switchyard.demo import Tally, Ticket, admissions_table, ticket_reason
from switchyard.v1 import Decision, Discrepancy, Escalation, EscalationReason


def test_ticket_reasons() -> None:
    insurance = Escalation(reason=EscalationReason.ESCALATION_REASON_APPROVAL_STEP,
                           step_id="2-insurance_review", discrepancies=[
                               Discrepancy(field="date_of_birth", submitted="1980-01-02",
                                           found="1980-02-01", source="payer"),
                               Discrepancy(field="coverage_status", source="payer")])
    assert ticket_reason(insurance) == \
        "approval insurance_review: coverage_status, date_of_birth disagreed"
    assert ticket_reason(Escalation(reason=EscalationReason.ESCALATION_REASON_APPROVAL_STEP,
                                    step_id="sign_off")) == "approval sign_off"
    consent = Escalation(reason=EscalationReason.ESCALATION_REASON_POLICY,
                         proposed_decision=Decision(rule="consent_missing"))
    assert ticket_reason(consent) == "POLICY (consent_missing)"
    assert ticket_reason(Escalation(reason=EscalationReason.ESCALATION_REASON_SLA_AT_RISK)) \
        == "SLA_AT_RISK"


def test_summary_counts_admitted_without_a_person_and_tickets_by_why() -> None:
    tally = Tally()
    tally.admissions = {"a": "match", "b": "unit_full", "c": "dob_differs",
                        "d": "consent_not_signed", "e": "inactive", "x": "match"}
    tally.outcome_of = {"a": "SUCCEEDED", "b": "SUCCEEDED", "c": "SUCCEEDED",
                        "d": "SUCCEEDED", "e": "FAILED", "x": "SUCCEEDED", "other": "FAILED"}
    tally.waited_for_bed = {"b"}
    tally.reason_of = {"e": "rejected:insurance_review"}
    tally.tickets = [
        Ticket("c", "approval insurance_review: date_of_birth disagreed", "approve"),
        Ticket("d", "POLICY (consent_missing)", "approve"),
        Ticket("e", "approval insurance_review: coverage_status disagreed", "reject"),
        Ticket("other", "LOW_CONFIDENCE (low_confidence)", "approve")]   # not an admission
    console = Console(width=200, record=True)
    console.print(admissions_table(tally))
    text = console.export_text()
    assert "6 admission forms: 3 admitted without a person (1 of them after waiting for a " \
           "bed), 2 admitted after a ticket, 1 not admitted (failed rejected:insurance_review: 1); " \
           "3 tickets opened for " \
           "3 admissions" in " ".join(text.split())
    assert "approval insurance_review: coverage_status disagreed" in text
    assert "POLICY (consent_missing)" in text and "LOW_CONFIDENCE" not in text
