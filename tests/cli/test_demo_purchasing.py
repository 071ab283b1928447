"""``switchyard demo``'s account of the supplier invoices: per scenario, paid without a person,
sent to a person, wrongly automated, and whether the ticket named the field that disagreed
(from the discrepancies, the rule or the explanation the reviewer saw)."""

from __future__ import annotations

from rich.console import Console

from switchyard.demo import (
    Tally,
    Ticket,
    decided_otherwise,
    invoice_outcomes,
    names_field,
    purchasing_table,
    summary_table,
    ticket_detail,
)
from switchyard.v1 import Decision, Discrepancy, Escalation, EscalationReason
from switchyard_packs.invoice.samples import workload


def test_a_ticket_names_a_field_as_it_is_or_in_words() -> None:
    matched = Escalation(reason=EscalationReason.ESCALATION_REASON_POLICY,
                         reason_detail="invoice does not match its order",
                         discrepancies=[Discrepancy(field="unit_price", source="erp")],
                         proposed_decision=Decision(rule="po_mismatch",
                                                    explanation="Line 2 billed above the PO"))
    detail = ticket_detail(matched)
    assert detail == "unit_price | po_mismatch | invoice does not match its order | " \
                     "Line 2 billed above the PO"
    ticket = Ticket("t", "POLICY (po_mismatch)", "approve", detail)
    assert names_field(ticket, "unit_price") and not names_field(ticket, "quantity")
    worded = Ticket("t", "POLICY (po_match)", "approve",
                    "Invoice 7: the bank account differs from the vendor master's")
    assert names_field(worded, "bank_account") and not names_field(worded, "po_number")
    # a rule named after the field names it; a longer word that contains it does not
    assert names_field(Ticket("t", "POLICY (quantity_above_received)", "approve"), "quantity")
    assert not names_field(Ticket("t", "x", "approve", "unit_prices_total"), "unit_price")
    assert ticket_detail(Escalation()) == ""


def test_outcomes_by_scenario_against_what_a_clerk_expects() -> None:
    load = workload(20, 3)
    tally = Tally()
    by_scenario: dict[str, list[str]] = {}
    for index, invoice in enumerate(load.invoices):
        task_id = f"task-{index}"
        tally.invoices[task_id] = invoice
        by_scenario.setdefault(invoice.scenario, []).append(task_id)
    for task_id in tally.invoices:
        tally.outcome_of[task_id] = "SUCCEEDED"
    clean, no_po = by_scenario["clean"], by_scenario["clean_no_po_quoted"]
    price, received = by_scenario["price_above_po"], by_scenario["more_than_received"]
    # a clean one sent to a person; a price mismatch automated (wrongly); one refused by a
    # rule without a person; the quantity ones to a person, one told the field, one not
    tally.tickets.append(Ticket(clean[0], "LOW_CONFIDENCE (invoice_risk)", "approve"))
    tally.outcome_of[no_po[0]] = "FAILED"
    tally.tickets += [Ticket(price[0], "POLICY (po_mismatch)", "approve", "unit_price"),
                      Ticket(received[0], "POLICY (po_mismatch)", "reject",
                             "quantity | billed more than was received"),
                      Ticket(received[1], "POLICY (po_mismatch)", "approve", "unit_price")]
    outcomes = invoice_outcomes(tally)
    row = outcomes["clean"]
    assert (row.invoices, row.automated, row.to_person, row.wrongly_automated) == (
        len(clean), len(clean) - 1, 1, 0)
    assert outcomes["clean_no_po_quoted"].neither == 1
    assert (outcomes["price_above_po"].to_person, outcomes["price_above_po"].named_field,
            outcomes["price_above_po"].wrongly_automated) == (1, 1, len(price) - 1)
    assert (outcomes["more_than_received"].to_person,
            outcomes["more_than_received"].named_field) == (2, 1)

    console = Console(width=200, record=True)
    console.print(purchasing_table(tally))
    text = " ".join(console.export_text().replace("│", " ").split())
    assert "more_than_received a person (quantity) 2 0 2 0 1 of 2 0" in text
    touchless = len(clean) + len(no_po) - 2
    assert f"({touchless} of the {len(clean) + len(no_po)} that match their order" in text
    assert "20 supplier invoices" in text


def test_the_summary_counts_what_a_person_would_have_decided_otherwise() -> None:
    """Of the tasks that ended without a person: one taken for another type than the
    document's, and a supplier invoice a clerk would have checked, are counted; reviewed
    tasks and ones decided as what they are are not."""
    load = workload(20, 3)
    mismatch = next(i for i in load.invoices if i.expected == "person")
    clean = next(i for i in load.invoices if i.expected == "automate")
    tally = Tally()
    tally.kind_of = {"t1": "invoice", "t2": "support_ticket", "t3": "other", "t4": "invoice",
                     "t5": "invoice", "t6": "invoice"}
    tally.outcome_of = {"t1": "SUCCEEDED", "t2": "SUCCEEDED", "t3": "FAILED", "t4": "SUCCEEDED",
                        "t5": "SUCCEEDED", "t6": "SUCCEEDED"}
    tally.reviewed = {"t6": "approve"}
    tally.decided_as = {"t1": "invoice", "t2": "admission_form", "t3": "other",
                        "t4": "invoice", "t5": "invoice"}
    tally.invoices = {"t4": mismatch, "t5": clean}
    tally.submitted_at = {t: 0.0 for t in tally.kind_of}
    tally.finished_at = {t: 1.0 for t in tally.kind_of}
    assert sorted(decided_otherwise(tally)) == ["t2", "t4"]
    console = Console(width=300, record=True)
    console.print(summary_table(tally, 1.0))
    text = " ".join(console.export_text().split())
    assert "decided without a person, refusals by policy too: 83%, of them 2 a person would " \
           "have decided otherwise" in text
