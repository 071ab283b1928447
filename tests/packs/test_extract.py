"""The built-in labels extractor: JSON keys, label lines, patterns, types and confidence."""

from __future__ import annotations

import pytest

from switchyard.packs import (
    EntryPointError,
    builtin_packs,
    extract_fields,
    extractor_for,
    load_pack_files,
)
from switchyard.packs._extract import iban_valid, parse_date
from tests.packs.conftest import expense, files_of


@pytest.fixture(scope="module")
def claim():
    doc = expense()
    doc["fields"]["ref"] = {"type": "string", "data_class": "derived",
                            "pattern": r"\b(EXP-[0-9]{4})\b"}
    doc["fields"]["paid"] = {"type": "boolean", "labels": ["Paid"]}
    return load_pack_files(files_of(doc))


def test_label_lines_in_every_separator(claim) -> None:
    text = ("Expense claim EXP-1234\nEmployee: Ann Lee\nTotal = EUR 1.234,50\n"
            "Currency\teur\nDate - 31/01/2025\nNights  3\nIBAN: GB29 NWBK 6016 1331 9268 19\n"
            "Paid: yes")
    got = extract_fields(claim, text)
    assert got.values == {"employee": "Ann Lee", "amount": "1234.50", "currency": "EUR",
                          "claim_date": "2025-01-31", "nights": "3",
                          "iban": "GB29NWBK60161331926819", "ref": "EXP-1234", "paid": "true"}
    assert got.issues == []
    assert got.fields["ref"].confidence == 0.9  # found by its pattern
    assert got.fields["employee"].confidence == 0.85  # found by its label
    assert got.confidence == 0.85  # the mean of the required fields (employee, amount)


def test_json_keys_and_piped_pairs(claim) -> None:
    got = extract_fields(claim, '{"employee": "Bo Chen", "amount": 42.5, "details": '
                                '{"currency": "GBP", "nights": 2}}')
    assert got.values == {"employee": "Bo Chen", "amount": "42.50", "currency": "GBP",
                          "nights": "2"}
    assert got.confidence == 0.95
    piped = extract_fields(claim, "employee=Bo Chen; total=12; currency=USD | Date: 2025-02-03")
    assert piped.values == {"employee": "Bo Chen", "amount": "12.00", "currency": "USD",
                            "claim_date": "2025-02-03"}


def test_unreadable_and_missing_values_are_issues(claim) -> None:
    got = extract_fields(claim, "Employee: Ann\nTotal: lots\nCurrency: CHF\nDate: someday\n"
                                "IBAN: GB00 NWBK 6016 1331 9268 19")
    assert "amount" not in got.values and "currency" not in got.values
    assert got.issues == ["amount: no number in 'lots'",
                          "currency: 'CHF' is not one of USD, EUR, GBP",
                          "claim_date: no date in 'someday'"]
    assert got.fields["iban"].confidence == pytest.approx(0.85 * 0.3)  # bad check digits
    assert got.confidence == pytest.approx(0.85 / 2)
    nothing = extract_fields(claim, "hello")
    assert nothing.values == {} and nothing.confidence == 0.0
    assert nothing.issues == ["employee: not found", "amount: not found"]


def test_dates_and_ibans() -> None:
    assert parse_date("31/01/2025") == ("2025-01-31", 1.0)
    assert parse_date("01/31/2025") == ("2025-01-31", 1.0)
    assert parse_date("02/03/2025") == ("2025-03-02", 0.6)  # ambiguous: day first
    assert parse_date("March 4, 2025") == ("2025-03-04", 1.0)
    assert parse_date("4 Mar 2025") == ("2025-03-04", 1.0)
    assert parse_date("04.03.2025") == ("2025-03-04", 1.0)
    assert parse_date("20250304") == ("2025-03-04", 0.9)
    assert parse_date("31/02/2025") is None
    assert iban_valid("GB29NWBK60161331926819") and not iban_valid("GB00NWBK60161331926819")


def test_extractor_for_labels_and_entry_points(claim) -> None:
    assert extractor_for(claim)("Employee: Ann\nTotal: 3").values == {"employee": "Ann",
                                                                     "amount": "3.00"}
    ticket = builtin_packs()["support_ticket"]
    assert extractor_for(ticket)("Ticket TCK-12345\nPriority: P1").values == {
        "ticket_id": "TCK-12345", "priority": "P1"}
    from dataclasses import replace

    with pytest.raises(EntryPointError, match="no entry point 'nope' in group "
                                              "switchyard.extractors"):
        extractor_for(replace(claim, extractor="nope"))
