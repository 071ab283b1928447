"""Reading a DocumentLayout: lines, reading-order text, labels, values, tables, provenance.

Layouts are built here directly (words with boxes, as the text-layer reader and OCR give
them), including a skewed OCR page whose words do not share one baseline.
"""

from __future__ import annotations

import pytest

from switchyard.documents import (
    find_labels,
    find_table,
    find_words,
    label_value,
    label_values,
    layout_from_text,
    layout_text,
    lines,
    provenance_of,
)
from switchyard.v1 import BoundingBox, DocumentLayout, LayoutSource, LayoutWord

INVOICE = """\
Brightline Office Supplies Ltd

Invoice No:    INV-2026-71001               Due Date
Bill To: Acme Health Inc.                   2026-12-20

Item                          Qty      Rate      Total
Printer toner cartridges      4        62.50     250.00
A4 copy paper, 80gsm          10       5.00      50.00
  (recycled)
Subtotal: USD 300.00
TOTAL:                                           USD 360.00"""

COLUMNS = {"item": ["Description", "Item"], "qty": ["Qty", "Quantity"], "rate": ["Rate"],
           "total": ["Amount", "Total"]}


def ocr_layout(words: list[tuple[str, float, float, float, float, float]],
               width: float = 1000, height: float = 1400) -> DocumentLayout:
    """One OCR page from (text, x0, y0, x1, y1, confidence) in pixels."""
    layout = DocumentLayout()
    page = layout.pages.add(number=1, width=width, height=height,
                            source=LayoutSource.LAYOUT_SOURCE_OCR)
    for text, x0, y0, x1, y1, confidence in words:
        page.words.append(LayoutWord(text=text, confidence=confidence, box=BoundingBox(
            x0=x0 / width, y0=y0 / height, x1=x1 / width, y1=y1 / height)))
    return layout


def test_reading_order_text_marks_columns_and_keeps_label_value_pairs() -> None:
    assert layout_text(layout_from_text(INVOICE)) == (
        "Brightline Office Supplies Ltd\n"
        "Invoice No: INV-2026-71001 | Due Date\n"
        "Bill To: Acme Health Inc. | 2026-12-20\n"
        "Item | Qty | Rate | Total\n"
        "Printer toner cartridges | 4 | 62.50 | 250.00\n"
        "A4 copy paper, 80gsm | 10 | 5.00 | 50.00\n"
        "(recycled)\n"
        "Subtotal: USD 300.00\n"
        "TOTAL: USD 360.00")


def test_words_out_of_order_and_skewed_become_lines_in_reading_order() -> None:
    # given bottom line first, words right to left, the second line 6 px lower at its right
    layout = ocr_layout([
        ("360.00", 700, 212, 790, 238, 0.97), ("Total", 100, 206, 170, 232, 0.99),
        ("INV-7", 262, 104, 340, 130, 0.9), ("Invoice", 100, 100, 200, 126, 0.99),
        ("No.", 210, 101, 250, 127, 0.98),
    ])
    assert [line.text for line in lines(layout)] == ["Invoice No. INV-7", "Total 360.00"]
    assert layout_text(layout) == "Invoice No. INV-7\nTotal | 360.00"
    assert layout_text(DocumentLayout()) == ""


def test_pages_in_order_separated_by_a_blank_line() -> None:
    layout = layout_from_text("page one\n\fpage two")
    layout.pages[0].number, layout.pages[1].number = 2, 1
    assert layout_text(layout) == "page two\n\npage one"


def test_labels_match_whole_words_without_case_or_punctuation() -> None:
    found = lines(layout_from_text("INVOICE NO.: 1   Subtotal 5\nInvoiceNo 2\nTotal 7"))
    assert [(line.text, s, e) for line, s, e in find_labels(found, "Invoice No")] == [
        ("INVOICE NO.: 1 Subtotal 5", 0, 2), ("InvoiceNo 2", 0, 1)]
    assert [line.text for line, _, _ in find_labels(found, "total")] == ["Total 7"]
    assert find_labels(found, " : ") == []


def test_value_right_of_its_label_or_below_it() -> None:
    found = lines(layout_from_text(INVOICE))
    number = label_value(found, ["Invoice No"])
    assert number is not None and number.text == "INV-2026-71001"
    assert number.placement == "right" and number.distance == pytest.approx(4 * 6.12 / 9.24)
    due = label_value(found, ["Due Date"])  # nothing right of it: the value below
    assert due is not None and (due.text, due.placement) == ("2026-12-20", "below")
    bill_to = label_value(found, ["Bill To"])  # the value stops at the column gap
    assert bill_to is not None and bill_to.text == "Acme Health Inc."
    # a value right of a label wins over a column header's first row below it
    total = label_value(found, ["Total"])
    assert total is not None and (total.text, total.placement) == ("USD 360.00", "right")
    assert label_value(found, ["IBAN"]) is None


def test_a_label_followed_by_another_label_takes_the_value_below() -> None:
    found = lines(layout_from_text("Bill To:        Ship To:\nAnn Lee         Bo Chen"))
    ship_to = label_value(found, ["Ship To"])
    bill_to = label_value(found, ["Bill To"])
    assert ship_to is not None and ship_to.text == "Bo Chen"
    assert bill_to is not None and bill_to.text == "Ann Lee"


def test_a_value_far_below_is_not_its_labels() -> None:
    assert label_value(lines(layout_from_text("Due Date\n\n\n\n2026-12-20")), ["Due Date"]) is None


def test_table_rows_under_the_header_with_wrapped_descriptions() -> None:
    table = find_table(lines(layout_from_text(INVOICE)), COLUMNS)
    assert table is not None and list(table.header) == ["item", "qty", "rate", "total"]
    assert table.texts() == [
        {"item": "Printer toner cartridges", "qty": "4", "rate": "62.50", "total": "250.00"},
        {"item": "A4 copy paper, 80gsm (recycled)", "qty": "10", "rate": "5.00",
         "total": "50.00"}]
    assert {w.text for w in table.words()} >= {"(recycled)", "250.00"}


def test_a_table_ends_at_an_end_label_a_gap_or_a_line_that_is_no_row() -> None:
    text = "Item      Qty    Total\nTea       1      2.00\nCoffee    2      6.00\n"
    assert len(find_table(lines(layout_from_text(text + "Cake      1      3.00")),
                          COLUMNS, ["Cake"]).rows) == 2  # type: ignore[union-attr]
    assert len(find_table(lines(layout_from_text(text + "\n\n\nCake      1      3.00")),
                          COLUMNS).rows) == 2  # type: ignore[union-attr]
    # a line of one cell with a label and an amount continues no row: the table ends there
    ended = find_table(lines(layout_from_text(text + "Subtotal: 8.00\nTea  9   9.00")), COLUMNS)
    assert ended is not None and [row["item"] for row in ended.texts()] == ["Tea", "Coffee"]
    # no header with two known columns: no table
    assert find_table(lines(layout_from_text("Item only\nTea 1")), COLUMNS) is None


def test_provenance_is_the_page_the_boxes_the_source_and_the_lowest_confidence() -> None:
    layout = ocr_layout([("Total", 100, 200, 170, 226, 0.99), ("USD", 600, 200, 660, 226, 0.8),
                         ("360.00", 670, 201, 760, 227, 0.93)])
    words = find_words(lines(layout), "usd 360,00")
    assert [w.text for w in words] == ["USD", "360.00"]
    provenance = provenance_of(words)
    assert provenance.page == 1 and provenance.source == LayoutSource.LAYOUT_SOURCE_OCR
    assert provenance.ocr_confidence == pytest.approx(0.8)
    box = provenance.box
    assert (box.x0, box.y0, box.x1, box.y1) == pytest.approx(
        (0.6, 200 / 1400, 0.76, 227 / 1400))
    assert [b.x0 for b in provenance.word_boxes] == pytest.approx([0.6, 0.67])
    assert [b.x1 for b in provenance.word_boxes] == pytest.approx([0.66, 0.76])
    assert provenance_of([]).page == 0


def test_find_words_takes_the_shortest_run() -> None:
    found = lines(layout_from_text("TOTAL: USD 360.00\nNothing here"))
    assert [w.text for w in find_words(found, "USD 360.00")] == ["USD", "360.00"]
    assert [w.text for w in find_words(found, "360")] == ["360.00"]
    assert find_words(found, "999") == () and find_words(found, "") == ()


def test_inverted_boxes_and_blank_words_are_tolerated() -> None:
    layout = ocr_layout([("  ", 0, 0, 10, 10, 1.0), ("b", 300, 126, 200, 100, 0.9),
                         ("a", 100, 100, 150, 126, 0.9)])
    assert layout_text(layout) == "a | b"


def test_a_header_row_of_labels_gives_the_values_below_them() -> None:
    found = lines(layout_from_text("Invoice No        Invoice Date\nINV-1             2026-11-20"))
    # right of 'Invoice No' is another field's label, not its value
    number = label_value(found, ["Invoice No"], not_values=["Invoice Date"])
    assert number is not None and (number.text, number.placement) == ("INV-1", "below")
    # every candidate, the likeliest first, for a caller that checks what it reads
    assert [(v.text, v.placement) for v in label_values(found, ["Invoice No"])] == [
        ("Invoice Date", "right"), ("INV-1", "below")]


def test_a_rate_between_label_and_value_leaves_the_value_as_the_next_candidate() -> None:
    found = lines(layout_from_text("VAT 20%            EUR 227.30\nTotal due          EUR 1.00"))
    assert [(v.text, v.placement) for v in label_values(found, ["VAT"], ["Total due"])] == [
        ("20%", "right"), ("EUR 227.30", "right")]


def test_totals_under_the_table_are_no_rows() -> None:
    head = ("Item          Qty     Rate      Amount\n"
            "Tea           1       2.00      2.00\n")
    for tail in ("                      Subtotal  2.00",   # nothing in the first column
                 "Tax:                            0.40"):  # a label in the first column
        table = find_table(lines(layout_from_text(head + tail)), COLUMNS)
        assert table is not None and [row["item"] for row in table.texts()] == ["Tea"]
