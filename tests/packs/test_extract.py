"""The built-in labels extractor: JSON keys, label lines, patterns, types and confidence;
on a document's layout: values beside or below labels, tables, provenance."""

from __future__ import annotations

import pytest

from switchyard.documents import layout_from_text, layout_text
from switchyard.packs import (
    EntryPointError,
    Pack,
    PackError,
    Extraction,
    accepts_layout,
    builtin_packs,
    compile_condition,
    evaluate_condition,
    extract_fields,
    extractor_for,
    load_pack_files,
    run_extractor,
    typed_fields,
)
from switchyard.packs._extract import iban_valid, parse_date
from switchyard.v1 import DocumentLayout, LayoutSource
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
    # a semicolon inside a sentence is no separator: only one another pair follows is
    sentence = extract_fields(claim, "Employee: Bo Chen; reimbursed twice; see note\n"
                                     "Total: 12; Currency: USD")
    assert sentence.values["employee"] == "Bo Chen; reimbursed twice; see note"
    assert (sentence.values["amount"], sentence.values["currency"]) == ("12.00", "USD")


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


# -- documents with a layout (PDF text layer, OCR) ----------------------------------------------

CLAIM_PAGE = """\
Expense claim EXP-1234
Employee:      Ann Lee                 Date
Nights:        3                       31/01/2025

Item                     Qty       Amount
Hotel night              2         240.00
Taxi to the airport      1         35,50
Subtotal: 275.50
Total:                             EUR 275.50"""


def _ocr(layout: DocumentLayout, confidences: dict[str, float]) -> DocumentLayout:
    """The layout as OCR would give it: source OCR, some words read less surely."""
    for page in layout.pages:
        page.source = LayoutSource.LAYOUT_SOURCE_OCR
        for word in page.words:
            word.confidence = confidences.get(word.text, 0.99)
    return layout


@pytest.fixture(scope="module")
def itemised():
    doc = expense()
    doc["fields"]["ref"] = {"type": "string", "data_class": "derived",
                            "pattern": r"\b(EXP-[0-9]{4})\b"}
    doc["fields"]["items"] = {
        "type": "table", "data_class": "derived", "end": ["Subtotal"],
        "columns": {"what": {"type": "string", "labels": ["Item", "Description"]},
                    "qty": {"type": "integer", "labels": ["Qty"]},
                    "amount": {"type": "money", "labels": ["Amount"]}}}
    return load_pack_files(files_of(doc))


def test_layout_values_right_of_and_below_labels_with_provenance(itemised) -> None:
    layout = _ocr(layout_from_text(CLAIM_PAGE), {"Lee": 0.8, "275.50": 0.9})
    got = extract_fields(itemised, "", layout)
    assert got.values == {"employee": "Ann Lee", "amount": "275.50", "claim_date": "2025-01-31",
                          "nights": "3", "ref": "EXP-1234",
                          "items": '[{"what":"Hotel night","qty":2,"amount":240.0},'
                                   '{"what":"Taxi to the airport","qty":1,"amount":35.5}]'}
    employee = got.fields["employee"].provenance
    assert employee is not None and employee.page == 1
    assert employee.source == LayoutSource.LAYOUT_SOURCE_OCR
    assert [b.x0 for b in employee.word_boxes] == pytest.approx([0.15, 0.19])
    assert employee.box.x1 == pytest.approx(0.22) and employee.ocr_confidence == 0.8
    # the lowest OCR confidence of the value's words lowers the field's confidence
    assert got.fields["employee"].confidence == pytest.approx(0.85 * 0.8, abs=1e-3)
    # a value below its label, and one far right of it, are a little less sure
    assert got.fields["claim_date"].confidence == pytest.approx(0.85 * 0.95 * 0.99, abs=1e-3)
    amount = got.fields["amount"]
    assert amount.confidence < 0.85 * 0.9 and amount.provenance is not None
    assert amount.provenance.box.y0 > employee.box.y0
    # a pattern's match is found among the words too
    assert got.fields["ref"].provenance is not None
    assert got.fields["ref"].provenance.box.x0 == pytest.approx(0.14)
    # the table: every row's words, on its page
    items = got.fields["items"].provenance
    assert items is not None and len(items.word_boxes) == 10
    assert got.fields["items"].confidence == pytest.approx(0.85 * 0.99, abs=1e-3)


def test_plain_text_has_no_provenance_and_reads_pipe_tables(itemised) -> None:
    got = extract_fields(itemised, "Employee: Bo\nItem | Qty | Amount\nTaxi | 1 | 3.00\n"
                                   "Bus | two | 4.00\nSubtotal: 7.00\nTotal: 7")
    assert got.values["items"] == ('[{"what":"Taxi","qty":1,"amount":3.0},'
                                   '{"what":"Bus","qty":null,"amount":4.0}]')
    assert got.fields["items"].confidence == pytest.approx(0.85 * 5 / 6, abs=1e-3)
    assert all(f.provenance is None for f in got.fields.values())
    # rows without one readable cell are an issue
    bad = extract_fields(itemised, "Qty | Amount\nx | y\nz | w")
    assert "items: no readable cell in 2 rows" in bad.issues
    assert "items" not in bad.values


@pytest.mark.parametrize("after", [
    "\nReceived by - J. Park",     # a blank line, then a note: the gap ends the table
    "\nThank you for your business",
    "Subtotal - 7.00 (see terms)",  # an end label that starts a one-cell line ends it too
])
def test_what_follows_a_plain_text_table_is_not_glued_to_its_last_row(itemised,
                                                                       after: str) -> None:
    got = extract_fields(itemised, "Employee: Bo\n\nItem  Qty  Amount\nTaxi  1  3.00\n"
                                   f"Bus  2  4.00\n{after}\n")
    assert got.values["items"] == ('[{"what":"Taxi","qty":1,"amount":3.0},'
                                   '{"what":"Bus","qty":2,"amount":4.0}]'), after


def test_a_json_array_of_objects_is_a_table(itemised) -> None:
    """An ERP's JSON: the items under a key the field's labels name (here one level down),
    each object a row, its keys matched to the columns by their labels as words."""
    document = ('{"claim": {"employee": "Bo", "lineItems": [{"description": "Taxi", '
                '"qty": 1, "amount": "3.00"}, {"Description": "Bus", "qty": "two", '
                '"amount": 4, "note": "x"}, "not a row"]}}')
    doc = expense()
    doc["fields"]["items"] = {
        "type": "table", "data_class": "derived", "labels": ["Line items", "Items"],
        "columns": {"what": {"type": "string", "labels": ["Item", "Description"]},
                    "qty": {"type": "integer", "labels": ["Qty"]},
                    "amount": {"type": "money", "labels": ["Amount"]}}}
    got = extract_fields(load_pack_files(files_of(doc)), document)
    assert got.values["items"] == ('[{"what":"Taxi","qty":1,"amount":3.0},'
                                   '{"what":"Bus","qty":null,"amount":4.0}]')
    assert got.fields["items"].confidence == pytest.approx(0.95 * 5 / 6, abs=1e-3)


def test_a_text_value_is_looked_up_in_the_layout_for_its_provenance(claim) -> None:
    # 'Nights=3' is one word: no label among the layout's words, but the text reads it, and
    # the word that holds the value is its provenance
    layout = layout_from_text("Employee: Ann\n\n    Nights=3")
    got = extract_fields(claim, layout_text(layout), layout)
    assert got.values["nights"] == "3" and got.fields["nights"].confidence == 0.85
    nights = got.fields["nights"].provenance
    assert nights is not None and nights.box.x0 == pytest.approx(0.04)
    assert nights.box.y0 > got.fields["employee"].provenance.box.y1  # type: ignore[union-attr]


def test_table_rows_are_lists_in_rules(itemised) -> None:
    layout = layout_from_text(CLAIM_PAGE)
    raw = extract_fields(itemised, "", layout).values
    fields = typed_fields(raw, itemised.field_types)
    assert fields["items"][1] == {"what": "Taxi to the airport", "qty": 1, "amount": 35.5}
    condition = compile_condition("size(fields.items) == 2 && fields.items.all(r, r.qty > 0)",
                                  "test")
    assert evaluate_condition(condition, {"fields": fields})
    # a rule over a table's rows loads (checked against a sample row of the declared columns)
    doc = expense()
    doc["fields"]["items"] = {"type": "table", "columns": {"amount": {"type": "money"}}}
    doc["decision"]["rules"].insert(0, {
        "name": "big_item", "when": "fields.items.exists(r, r.amount > 100.0)",
        "outcome": "escalate", "reason": "POLICY", "explain": "${size(fields.items)} items"})
    assert load_pack_files(files_of(doc)).rules[0].name == "big_item"
    assert typed_fields({"items": "not json"}, {"items": "table"}) == {"items": None}
    assert typed_fields({"items": '{"a": 1}'}, {"items": "table"}) == {"items": None}


def test_extractors_get_the_layout_only_when_they_take_it(claim) -> None:
    layout = layout_from_text("Employee:    Ann\nTotal:   5")
    seen: list[tuple[str, object]] = []

    def text_only(text: str) -> Extraction:
        seen.append((text, None))
        return Extraction()

    def with_layout(text: str, layout: DocumentLayout | None = None) -> Extraction:
        seen.append((text, layout))
        return Extraction()

    def with_kwargs(text: str, **options: object) -> Extraction:
        seen.append((text, options.get("layout")))
        return Extraction()

    for extractor in (text_only, with_layout, with_kwargs):
        run_extractor(extractor, "t", layout)
    run_extractor(with_layout, "t")
    assert seen == [("t", None), ("t", layout), ("t", layout), ("t", None)]
    assert not accepts_layout(text_only) and not accepts_layout(len)
    assert accepts_layout(extractor_for(claim))
    assert run_extractor(extractor_for(claim), "", layout).fields["employee"].provenance
    invoice = extractor_for(builtin_packs()["invoice"])
    assert accepts_layout(invoice)


def test_a_pack_reads_a_rendered_pdf_with_a_table() -> None:
    from switchyard.documents import read_text_layer
    from tests.unit.test_layout import invoice_pdf

    doc = expense()
    doc["fields"].update({
        "number": {"type": "string", "required": True, "labels": ["Invoice No"]},
        "due": {"type": "date", "labels": ["Due Date"]},
        "tax": {"type": "money", "labels": ["VAT"]},
        "items": {"type": "table", "columns": {
            "what": {"type": "string", "labels": ["Description"]},
            "qty": {"type": "integer", "labels": ["Qty"]},
            "amount": {"type": "money", "labels": ["Amount"]}}}})
    doc["fields"]["amount"]["labels"] = ["Total due", "Total"]
    pack = load_pack_files(files_of(doc))
    pages = read_text_layer(invoice_pdf("Times-Roman", "Times-Bold"))
    layout = DocumentLayout(pages=[p for p in pages if p is not None])
    got = extract_fields(pack, layout_text(layout), layout)
    assert got.values == {
        "number": "INV-2026-88001", "due": "2026-12-20", "tax": "227.30", "amount": "1363.80",
        "claim_date": "2026-11-20",  # its label 'Date' is the last word of 'Invoice Date'
        "items": '[{"what":"Server rack installation","qty":1,"amount":1000.0},'
                 '{"what":"Patch cables, CAT6 (pack of 10)","qty":3,"amount":136.5}]'}
    assert got.issues == ["employee: not found"]
    assert all(f.provenance is not None and f.provenance.page == 1
               for f in got.fields.values())
    assert got.fields["number"].confidence == pytest.approx(0.85 * 0.95, abs=1e-3)  # below


def test_dates_ocr_ran_together() -> None:
    assert parse_date("5Jun2026") == ("2026-06-05", 1.0)
    assert parse_date("June 5,2026") == ("2026-06-05", 1.0)


def test_enum_aliases_and_camel_case_json_keys() -> None:
    doc = expense()
    doc["fields"]["sex"] = {"type": "enum", "values": ["female", "male", "other", "unknown"],
                            "aliases": {"F": "female", "M": "male", "X": "other"},
                            "labels": ["Sex", "Gender"]}
    doc["fields"]["member_id"] = {"type": "string", "labels": ["Member ID"]}
    pack = load_pack_files(files_of(doc))
    assert extract_fields(pack, "Employee: Ann Lee\nSex: F").values["sex"] == "female"
    assert extract_fields(pack, "Employee: Ann Lee\nGender: male").values["sex"] == "male"
    inside = extract_fields(pack, "Employee: Ann Lee\nSex: X (diverse)").fields["sex"]
    assert (inside.value, inside.confidence) == ("other", 0.68)  # 0.85 * 0.8: inside a text
    unknown = extract_fields(pack, "Employee: Ann Lee\nSex: Q")
    assert "sex" not in unknown.values
    assert "sex: 'Q' is not one of female, male, other, unknown" in unknown.issues
    camel = extract_fields(pack, '{"employee": "Bo Chen", "insurance": {"memberId": "W123"}}')
    assert camel.values["member_id"] == "W123"
    # an alias must name one of the values
    doc["fields"]["sex"]["aliases"]["W"] = "woman"
    with pytest.raises(PackError) as refused:
        load_pack_files(files_of(doc))
    assert any("fields.sex.aliases.W" in line and "not one of the field's values" in line
               for line in refused.value.problems), refused.value.problems


def test_currency_symbols_as_aliases_are_told_apart() -> None:
    # symbols have no letters: compared as letters only, every symbol was every other one
    # (an outside pack author's "Currency: £" read as EUR, the first alias listed)
    doc = expense()
    doc["fields"]["currency"] = {"type": "enum", "values": ["EUR", "GBP", "USD"],
                                 "aliases": {"€": "EUR", "£": "GBP", "US$": "USD"},
                                 "labels": ["Currency", "Estimate"]}
    pack = load_pack_files(files_of(doc))
    for written, value in (("£", "GBP"), ("€", "EUR"), ("US$", "USD"), ("gbp", "GBP")):
        assert extract_fields(pack, f"Employee: Ann Lee\nCurrency: {written}"
                              ).values["currency"] == value, written
    # a symbol inside a longer text needs no word boundary; a code inside a word is no code
    inside = extract_fields(pack, "Employee: Ann Lee\nEstimate: £640").fields["currency"]
    assert (inside.value, inside.confidence) == ("GBP", 0.68)
    assert "currency" not in extract_fields(pack, "Employee: Ann Lee\nCurrency: EURO-zone"
                                            ).values
    assert "currency" not in extract_fields(pack, "Employee: Ann Lee\nCurrency: ¥").values


def test_a_labelled_value_that_does_not_parse_leaves_the_field_to_a_later_label() -> None:
    # an outside pack author's currency, also labelled Estimate, met "Estimate: 640" first and
    # was not read at all, though "Currency: GBP" followed
    doc = expense()
    doc["fields"]["currency"] = {"type": "enum", "values": ["EUR", "GBP"],
                                 "labels": ["Estimate", "Currency"]}
    pack = load_pack_files(files_of(doc))
    read = extract_fields(pack, "Employee: Ann Lee\nEstimate: 640\nCurrency: GBP")
    assert read.values["currency"] == "GBP" and not any("currency" in i for i in read.issues)
    # none parses: the first one's problem is the issue
    missing = extract_fields(pack, "Employee: Ann Lee\nEstimate: 640\nCurrency: yen")
    assert "currency" not in missing.values
    assert "currency: '640' is not one of EUR, GBP" in missing.issues


@pytest.mark.parametrize("written, value", [
    ("Yes", "true"), ("X", "true"), ("Ja", "true"), ("oui", "true"), ("Sí", "true"),
    ("No", "false"), ("0", "false"), ("Nein", "false"), ("non", "false"), ("Não", "false"),
])
def test_a_boolean_reads_yes_and_no_in_the_documented_words(written: str, value: str) -> None:
    doc = expense()
    doc["fields"]["injured"] = {"type": "boolean", "labels": ["Injured", "Verletzt"]}
    pack = load_pack_files(files_of(doc))
    assert extract_fields(pack, f"Employee: Ann Lee\nInjured: {written}").values[
        "injured"] == value


def test_a_boolean_in_other_words_is_an_issue_not_a_guess() -> None:
    doc = expense()
    doc["fields"]["injured"] = {"type": "boolean", "labels": ["Injured"]}
    pack = load_pack_files(files_of(doc))
    read = extract_fields(pack, "Employee: Ann Lee\nInjured: nobody")
    assert "injured" not in read.values
    assert "injured: 'nobody' is not yes or no" in read.issues


def test_labels_and_enum_values_in_other_scripts_keep_their_letters() -> None:
    # reduced to ASCII, every Cyrillic or Japanese label was the empty label, so any key in
    # those scripts was taken for it
    doc = expense()
    doc["fields"]["employee"]["labels"] = ["Сотрудник", "社員"]
    doc["fields"]["grade"] = {"type": "enum", "values": ["высокий", "низкий"],
                              "labels": ["Уровень"]}
    pack = load_pack_files(files_of(doc))
    read = extract_fields(pack, "Отдел: Продажи\nСотрудник: Анна Ли\nУровень: низкий")
    assert read.values["employee"] == "Анна Ли"
    assert read.values["grade"] == "низкий"
    japanese = extract_fields(pack, "部署: 営業\n社員: 李 アン")
    assert japanese.values["employee"] == "李 アン"


# -- ambiguous numeric dates: a date field's date_order -------------------------------------


def test_a_date_with_day_and_month_in_doubt_is_read_in_the_declared_order() -> None:
    # not declared: day first, as a guess (its confidence lowered)
    assert parse_date("03/07/1962") == ("1962-07-03", 0.6)
    assert parse_date("03/07/1962", "day_first") == ("1962-07-03", 1.0)
    assert parse_date("03/07/1962", "month_first") == ("1962-03-07", 1.0)
    # a day above 12, ISO, month names, dots and compact digits read the same in every order
    for order in ("", "day_first", "month_first"):
        assert parse_date("13/07/1962", order) == ("1962-07-13", 1.0)
        assert parse_date("07/13/1962", order) == ("1962-07-13", 1.0)
        assert parse_date("1962-03-07", order) == ("1962-03-07", 1.0)
        assert parse_date("March 7, 1962", order) == ("1962-03-07", 1.0)
        assert parse_date("7 Mar 1962", order) == ("1962-03-07", 1.0)
        assert parse_date("03.07.1962", order) == ("1962-07-03", 1.0)  # dots: day first
        assert parse_date("19620307", order) == ("1962-03-07", 0.9)
        assert parse_date("02/30/1962", order) is None


def _dated(order: str | None) -> Pack:
    doc = expense()
    if order is not None:
        doc["fields"]["claim_date"]["date_order"] = order
    doc["fields"]["items"] = {
        "type": "table", "data_class": "derived",
        "columns": {"what": {"type": "string", "labels": ["Item"]},
                    "day": {"type": "date", "labels": ["Day"],
                            **({"date_order": order} if order is not None else {})},
                    "amount": {"type": "money", "labels": ["Amount"]}}}
    return load_pack_files(files_of(doc))


def test_date_order_is_read_from_text_json_layout_and_table_cells() -> None:
    us, undeclared = _dated("month_first"), _dated(None)
    assert us.fields["claim_date"].date_order == "month_first"
    assert undeclared.fields["claim_date"].date_order == ""
    text = ("Employee: Ann Lee\nTotal: 12.00\nDate: 03/07/2025\n\n"
            "Item          Day           Amount\nTaxi          04/08/2025    12.00")
    got = extract_fields(us, text)
    assert got.values["claim_date"] == "2025-03-07"
    assert got.fields["claim_date"].confidence == 0.85  # declared: not penalised as a guess
    assert got.values["items"] == '[{"what":"Taxi","day":"2025-04-08","amount":12.0}]'
    guessed = extract_fields(undeclared, text)
    assert guessed.values["claim_date"] == "2025-07-03"
    assert guessed.fields["claim_date"].confidence == pytest.approx(0.85 * 0.6)
    assert guessed.values["items"] == '[{"what":"Taxi","day":"2025-08-04","amount":12.0}]'
    as_json = extract_fields(us, '{"employee": "Ann Lee", "total": 12, "date": "03/07/2025"}')
    assert as_json.values["claim_date"] == "2025-03-07"
    assert as_json.fields["claim_date"].confidence == 0.95
    on_layout = extract_fields(us, "", layout_from_text(text))
    assert on_layout.values["claim_date"] == "2025-03-07"
    assert on_layout.fields["claim_date"].provenance is not None
    assert on_layout.values["items"] == '[{"what":"Taxi","day":"2025-04-08","amount":12.0}]'
    assert extract_fields(undeclared, "", layout_from_text(text)).values["claim_date"] \
        == "2025-07-03"


def test_the_hospital_pack_reads_us_dates_month_first_and_dotted_ones_day_first() -> None:
    hospital = builtin_packs()["hospital_admission"]
    assert hospital.fields["date_of_birth"].date_order == "month_first"
    us = extract_fields(hospital, "Patient Name: Brandt, Sofia\nDOB: 03/07/1962")
    assert us.values["date_of_birth"] == "1962-03-07"
    assert us.fields["date_of_birth"].confidence == 0.85
    for written in ("07.03.1962", "1962-03-07", "March 7, 1962", "7 March 1962",
                    "03/07/1962"):
        got = extract_fields(hospital, f"Date of Birth: {written}").values
        assert got["date_of_birth"] == "1962-03-07", written


# -- several labels on one line, wide spaces between ----------------------------------------


def test_several_labels_on_a_line_separated_by_wide_spaces() -> None:
    hospital = builtin_packs()["hospital_admission"]
    got = extract_fields(hospital, "Carrier: Lakeshore Health Plan   Member #: LHP77120034   "
                                   "Group #: 5521\nDOB: 03/07/1962   Sex: F   MR #: SB-0071234")
    assert got.values == {"insurance_payer": "Lakeshore Health Plan",
                          "member_id": "LHP77120034", "group_number": "5521",
                          "date_of_birth": "1962-03-07", "sex": "female", "mrn": "SB-0071234"}
    # a tab is a wide gap too, and "=" or " - " a label's separator
    tabbed = extract_fields(hospital, "Carrier = Lakeshore Health Plan\tMember # - LHP77120034")
    assert tabbed.values == {"insurance_payer": "Lakeshore Health Plan",
                             "member_id": "LHP77120034"}


def test_wide_spaces_cut_a_value_only_before_a_declared_label_and_its_separator(claim) -> None:
    got = extract_fields(claim, "Employee: Ann  van Lee   Total: 12.00   Date: 31/01/2025\n"
                                "Nights  3    IBAN: GB29 NWBK 6016 1331 9268 19")
    assert got.values == {"employee": "Ann  van Lee", "amount": "12.00",
                          "claim_date": "2025-01-31", "nights": "3",
                          "iban": "GB29NWBK60161331926819"}
    # a label that is not the pack's, or a label with no separator after it, stays in the value
    kept = extract_fields(claim, "Employee: Ann Lee   Dept: Sales\nEmployee  Ann Lee   Total 12")
    assert kept.values["employee"] == "Ann Lee   Dept: Sales"
    aligned = extract_fields(claim, "Employee     Ann Lee\nTotal        12.00\n"
                                    "Date         31/01/2025")
    assert aligned.values == {"employee": "Ann Lee", "amount": "12.00",
                              "claim_date": "2025-01-31"}
