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
    # every candidate, the likeliest first: in a header row of labels (the neighbour across
    # a gap has no digit, the words under the label have) the value under it comes first
    assert [(v.text, v.placement) for v in label_values(found, ["Invoice No"])] == [
        ("INV-1", "below"), ("Invoice Date", "right")]
    totals = lines(layout_from_text("Subtotal        EUR 10.00\nVAT 20%         EUR 2.00"))
    assert [(v.text, v.placement) for v in label_values(totals, ["Subtotal"])] == [
        ("EUR 10.00", "right"), ("VAT 20%", "below")]


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


# -- real PDFs: rendered with reportlab, read by the text-layer reader ---------------------------

def invoice_pdf(font: str, bold: str) -> bytes:
    """A one-page invoice as a designer lays it out: letterhead, a row of labels above their
    values, a table with right-aligned numbers, totals right-aligned under it."""
    import io

    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=A4)
    _, height = A4
    pdf.setFont(bold, 16)
    pdf.drawString(50, height - 60, "Granite Engineering GmbH")
    pdf.drawString(420, height - 60, "INVOICE")
    for x, label, value in ((50, "Invoice No", "INV-2026-88001"),
                            (220, "Invoice Date", "20.11.2026"), (390, "Due Date", "20.12.2026")):
        pdf.setFont(bold, 9)
        pdf.drawString(x, height - 130, label)
        pdf.setFont(font, 10)
        pdf.drawString(x, height - 145, value)
    y = height - 200
    pdf.setFont(bold, 10)
    pdf.drawString(50, y, "Description")
    for x, text in ((360, "Qty"), (450, "Unit price"), (540, "Amount")):
        pdf.drawRightString(x, y, text)
    pdf.setFont(font, 10)
    for description, qty, unit in (("Server rack installation", 1, 1000.0),
                                   ("Patch cables, CAT6 (pack of 10)", 3, 45.5)):
        y -= 16
        pdf.drawString(50, y, description)
        for x, text in ((360, str(qty)), (450, f"{unit:,.2f}"), (540, f"{qty * unit:,.2f}")):
            pdf.drawRightString(x, y, text)
    for label, amount in (("Subtotal", "EUR 1,136.50"), ("VAT 20%", "EUR 227.30"),
                          ("Total due", "EUR 1,363.80")):
        y -= 20
        pdf.drawRightString(450, y, label)
        pdf.drawRightString(540, y, amount)
    pdf.showPage()
    pdf.save()
    return buffer.getvalue()


@pytest.mark.parametrize(("font", "bold"), [("Helvetica", "Helvetica-Bold"),
                                            ("Times-Roman", "Times-Bold")])
def test_a_rendered_pdf_reads_in_order_with_its_table(font: str, bold: str) -> None:
    from switchyard.documents import read_text_layer

    pages = read_text_layer(invoice_pdf(font, bold))
    assert len(pages) == 1 and pages[0] is not None
    layout = DocumentLayout(pages=[pages[0]])
    assert layout_text(layout).splitlines() == [
        "Granite Engineering GmbH | INVOICE",
        "Invoice No | Invoice Date | Due Date",
        "INV-2026-88001 | 20.11.2026 | 20.12.2026",
        "Description | Qty | Unit price | Amount",
        "Server rack installation | 1 | 1,000.00 | 1,000.00",
        "Patch cables, CAT6 (pack of 10) | 3 | 45.50 | 136.50",
        "Subtotal | EUR 1,136.50", "VAT 20% | EUR 227.30", "Total due | EUR 1,363.80"]
    found = lines(layout)
    due = label_value(found, ["Due Date"])
    assert due is not None and (due.text, due.placement) == ("20.12.2026", "below")
    table = find_table(found, {"what": ["Description"], "qty": ["Qty"],
                               "unit": ["Unit price"], "amount": ["Amount"]})
    assert table is not None and table.texts() == [
        {"what": "Server rack installation", "qty": "1", "unit": "1,000.00",
         "amount": "1,000.00"},
        {"what": "Patch cables, CAT6 (pack of 10)", "qty": "3", "unit": "45.50",
         "amount": "136.50"}]
    total = provenance_of(find_words(found, "EUR 1,363.80"))
    assert total.source == LayoutSource.LAYOUT_SOURCE_TEXT_LAYER and total.ocr_confidence == 1
    # right-aligned at x = 540 pt of the 595 pt wide page, on the page's lowest line
    assert total.box.x1 == pytest.approx(540 / 595.2756, abs=0.002)
    assert total.box.y0 == pytest.approx(max(w.box.y0 for w in pages[0].words), abs=0.002)


def _rotated(layout: DocumentLayout, degrees: float) -> DocumentLayout:
    """The layout of the page scanned at an angle: each word's box turned about the page's
    centre (in page units), then the upright box around it, as OCR reports it."""
    import math

    turned = DocumentLayout()
    turned.CopyFrom(layout)
    cos, sin = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    for page in turned.pages:
        w, h = page.width, page.height
        for word in page.words:
            b = word.box
            points = [((x * w - w / 2) * cos - (y * h - h / 2) * sin + w / 2,
                       (x * w - w / 2) * sin + (y * h - h / 2) * cos + h / 2)
                      for x, y in ((b.x0, b.y0), (b.x1, b.y0), (b.x0, b.y1), (b.x1, b.y1))]
            word.box.CopyFrom(BoundingBox(
                x0=min(p[0] for p in points) / w, y0=min(p[1] for p in points) / h,
                x1=max(p[0] for p in points) / w, y1=max(p[1] for p in points) / h))
    return turned


@pytest.mark.parametrize("degrees", [-4.0, -1.5, 2.0, 4.0])
def test_a_page_scanned_at_an_angle_reads_as_the_straight_one(degrees: float) -> None:
    straight = layout_from_text(INVOICE)
    turned = _rotated(straight, degrees)
    assert layout_text(turned) == layout_text(straight)
    table = find_table(lines(turned), COLUMNS)
    assert table is not None and len(table.rows) == 2
    total = label_value(lines(turned), ["Total"])
    assert total is not None and total.text == "USD 360.00"


def test_a_rate_run_into_its_label_by_ocr_still_finds_the_label() -> None:
    found = lines(layout_from_text("VAT20%             EUR 227.30\nTotal2x 5\nSubtotal7% 1\n"
                                   "Total360.00"))
    vat = label_value(found, ["VAT"])
    assert vat is not None and vat.text == "EUR 227.30"
    # another word, a longer label, a value run into the label: not the label 'Total'
    assert find_labels(found, "Total") == []


def test_a_word_a_hair_off_a_lines_edge_is_on_that_line() -> None:
    """A text layer read in single precision puts a word that sits on a line's edge a
    hundredth of a point above or below it: the word joins the line either way (the
    Peruvian invoice's ``Efectivo`` beside its two-line label ``CONDICION DE / PAGO:``)."""
    height = 842.0
    label_bottom = 440.83

    def page(efectivo_middle: float) -> DocumentLayout:
        layout = DocumentLayout()
        p = layout.pages.add(number=1, width=595, height=height,
                             source=LayoutSource.LAYOUT_SOURCE_TEXT_LAYER)
        for text, x0, y0, y1 in (("CONDICION", 53.7, 433.63, label_bottom),
                                 ("PAGO:", 53.7, label_bottom, 448.03),
                                 ("Efectivo", 126.9, efectivo_middle - 3.6,
                                  efectivo_middle + 3.6)):
            p.words.append(LayoutWord(text=text, confidence=1.0, box=BoundingBox(
                x0=x0 / 595, y0=y0 / height, x1=(x0 + 40) / 595, y1=y1 / height)))
        return layout

    for middle in (label_bottom - 0.004, label_bottom, label_bottom + 0.004):
        first = lines(page(middle))[0]
        assert [w.text for w in first.words] == ["CONDICION", "Efectivo"], middle
