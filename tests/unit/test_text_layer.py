"""A PDF's text layer read with positions: words in reading order with boxes as fractions of
the page, and ``None`` for a scanned page (no usable text layer) so OCR reads it instead."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image, ImageDraw
from reportlab.lib.pagesizes import A4
from reportlab.lib.utils import ImageReader
from reportlab.pdfgen import canvas

from switchyard.documents import (
    MIN_PICTURE_AREA,
    merge_picture_words,
    page_lines,
    read_pdf_pages,
    read_text_layer,
    reading_order,
)
from switchyard.v1 import BoundingBox, LayoutPage, LayoutSource, LayoutWord

WIDTH, HEIGHT = A4  # points


def _pdf() -> bytes:
    """Page 1: text (the total's value drawn before its label, so reading order must come
    from positions, not drawing order); page 2: a scan, an image and no text."""
    out = io.BytesIO()
    pdf = canvas.Canvas(out, pagesize=A4)
    pdf.setFont("Helvetica", 12)
    pdf.drawString(400, HEIGHT - 200, "1,250.00")
    pdf.drawString(72, HEIGHT - 72, "Invoice number: INV-2041")
    pdf.drawString(72, HEIGHT - 200, "Total due:")
    pdf.showPage()
    scan = Image.new("RGB", (600, 800), "white")
    ImageDraw.Draw(scan).text((50, 50), "Invoice number: INV-2042", fill="black")
    pdf.drawImage(ImageReader(scan), 0, 0, WIDTH, HEIGHT)
    pdf.showPage()
    pdf.save()
    return out.getvalue()


def test_text_pages_give_words_with_normalised_boxes_and_scans_give_none() -> None:
    pages = read_text_layer(_pdf())
    assert len(pages) == 2
    text_page, scanned = pages
    assert scanned is None
    assert text_page is not None
    assert text_page.number == 1
    assert text_page.source == LayoutSource.LAYOUT_SOURCE_TEXT_LAYER
    assert (round(text_page.width), round(text_page.height)) == (round(WIDTH), round(HEIGHT))
    assert [w.text for w in text_page.words] == ["Invoice", "number:", "INV-2041", "Total",
                                                 "due:", "1,250.00"]
    first = text_page.words[0].box
    # 72 pt from the left, 72 pt from the top (origin top left), as fractions of the page
    assert first.x0 == pytest.approx(72 / WIDTH, abs=0.005)
    assert 60 / HEIGHT < first.y0 < first.y1 < 76 / HEIGHT
    total_value = text_page.words[-1].box
    assert total_value.x0 == pytest.approx(400 / WIDTH, abs=0.005)
    assert total_value.y0 > first.y1
    assert all(w.confidence == 1.0 for w in text_page.words)


def test_max_pages_stops_reading() -> None:
    assert len(read_text_layer(_pdf(), max_pages=1)) == 1


def test_a_page_number_alone_is_not_a_text_layer() -> None:
    out = io.BytesIO()
    pdf = canvas.Canvas(out, pagesize=A4)
    pdf.drawString(290, 30, "- 3 -")
    pdf.showPage()
    pdf.save()
    assert read_text_layer(out.getvalue()) == [None]


def test_reading_order_groups_lines_by_vertical_centre() -> None:
    def word(text: str, x0: float, y0: float, y1: float) -> LayoutWord:
        return LayoutWord(text=text, box=BoundingBox(x0=x0, y0=y0, x1=x0 + 0.1, y1=y1))

    words = [word("below", 0.1, 0.30, 0.34), word("right", 0.5, 0.105, 0.135),
             word("left", 0.1, 0.10, 0.13), word("taller", 0.3, 0.09, 0.15)]
    assert [w.text for w in reading_order(words)] == ["left", "taller", "right", "below"]


def _page_with_pictures() -> bytes:
    """A text page with a footer image (a third of the page, no text over it), a small logo,
    and an image behind text (a watermark the text layer already covers)."""
    out = io.BytesIO()
    pdf = canvas.Canvas(out, pagesize=A4)
    pdf.drawImage(ImageReader(Image.new("RGB", (40, 20), "navy")), 480, HEIGHT - 60, 60, 30)
    pdf.drawImage(ImageReader(Image.new("RGB", (300, 100), "grey")), 0, 0, WIDTH, HEIGHT / 3)
    pdf.drawImage(ImageReader(Image.new("RGB", (300, 100), "beige")), 60, HEIGHT / 2, 400, 200)
    pdf.setFont("Helvetica", 12)
    pdf.drawString(72, HEIGHT - 72, "Invoice number: INV-2041")
    pdf.drawString(100, HEIGHT / 2 + 100, "Terms and conditions apply")
    pdf.showPage()
    pdf.save()
    return out.getvalue()


def test_large_pictures_without_text_over_them_are_reported_with_the_page() -> None:
    (page,) = read_pdf_pages(_page_with_pictures())
    assert page.layout is not None and [w.text for w in page.layout.words][:3] == [
        "Invoice", "number:", "INV-2041"]
    # the footer only: the logo is too small to hold text worth reading, the watermark has
    # the text layer's words over it
    (footer,) = page.pictures
    assert (footer.x0, footer.x1) == (pytest.approx(0), pytest.approx(1))
    assert footer.y0 == pytest.approx(2 / 3, abs=0.01) and footer.y1 == pytest.approx(1)
    assert (footer.x1 - footer.x0) * (footer.y1 - footer.y0) >= MIN_PICTURE_AREA
    # a scan has no text layer and reports none
    assert read_pdf_pages(_pdf())[1].layout is None


def _word(text: str, x0: float, y0: float, confidence: float = 1.0) -> LayoutWord:
    return LayoutWord(text=text, confidence=confidence,
                      box=BoundingBox(x0=x0, y0=y0, x1=x0 + 0.1, y1=y0 + 0.02))


def test_picture_words_join_the_text_layer_in_reading_order_marked_as_ocr() -> None:
    page = LayoutPage(number=1, width=595, height=842,
                      source=LayoutSource.LAYOUT_SOURCE_TEXT_LAYER,
                      words=[_word("Invoice", 0.1, 0.1), _word("Total:", 0.1, 0.5),
                             _word("49.99", 0.5, 0.5)])
    ocr = LayoutPage(number=1, source=LayoutSource.LAYOUT_SOURCE_OCR, words=[
        _word("Invoice", 0.1, 0.1, 0.9),             # the text layer has it: left out
        _word("Nordic", 0.1, 0.8, 0.93), _word("B.V.", 0.3, 0.8, 0.88),
        _word("IBAN", 0.1, 0.9, 0.95)])
    footer = BoundingBox(x0=0.0, y0=0.7, x1=1.0, y1=1.0)
    merged = merge_picture_words(page, ocr, [footer])
    assert [w.text for w in merged.words] == ["Invoice", "Total:", "49.99", "Nordic", "B.V.",
                                              "IBAN"]
    assert [w.source for w in merged.words] == [LayoutSource.LAYOUT_SOURCE_UNSPECIFIED] * 3 + [
        LayoutSource.LAYOUT_SOURCE_OCR] * 3
    assert [w.confidence for w in merged.words[3:]] == [0.93, 0.88, 0.95]
    assert (merged.number, merged.source) == (1, LayoutSource.LAYOUT_SOURCE_TEXT_LAYER)
    assert [w.text for w in page.words] == ["Invoice", "Total:", "49.99"]  # not changed


def test_words_drawn_without_spaces_are_told_apart_by_their_gaps() -> None:
    """Some PDF writers draw each word on its own and no space characters (e-invoice
    stylesheet renderings): a quarter of an em between words, letters touching inside one.
    The words come out apart, and a word's letters together."""
    out = io.BytesIO()
    pdf = canvas.Canvas(out, pagesize=A4)
    size, x = 10, 72.0
    for word in ("Taxiunternehmen", "TX", "GmbH"):
        pdf.setFont("Helvetica", size)
        pdf.drawString(x, HEIGHT - 100, word)
        x += pdf.stringWidth(word, "Helvetica", size) + 0.25 * size
    pdf.showPage()
    pdf.save()
    page = read_text_layer(out.getvalue())[0]
    assert page is not None
    assert [w.text for w in page.words] == ["Taxiunternehmen", "TX", "GmbH"]


def test_a_fake_bold_glyph_drawn_twice_is_one_letter() -> None:
    """Some writers fake bold by drawing each line twice, a fraction of a point apart; the
    text layer then holds every letter twice (``CCoooolltteecc``). A genuine double letter
    stands a letter's width apart and stays."""
    out = io.BytesIO()
    pdf = canvas.Canvas(out, pagesize=A4)
    pdf.setFont("Helvetica", 10)
    for dx in (0.0, 0.35):
        pdf.drawString(72 + dx, HEIGHT - 100, "Coolltec OÜ")
    pdf.drawString(72, HEIGHT - 130, "Summa 488.79")
    pdf.showPage()
    pdf.save()
    page = read_text_layer(out.getvalue())[0]
    assert page is not None
    assert [w.text for w in page.words] == ["Coolltec", "OÜ", "Summa", "488.79"]


def test_glyphs_kept_are_pdfplumbers_in_page_order() -> None:
    """``unique_glyphs`` (linear where pdfplumber's ``dedupe_chars`` is quadratic) keeps the
    same glyphs in the same order: doubles in two fonts and sizes, a double past the
    tolerance kept, letters drawn out of reading order."""
    import pdfplumber

    from switchyard.documents import unique_glyphs

    out = io.BytesIO()
    pdf = canvas.Canvas(out, pagesize=A4)
    for font, size, y in (("Helvetica", 10, 100), ("Courier", 14, 160), ("Helvetica", 8, 220)):
        pdf.setFont(font, size)
        for dx in (0.0, 0.4, 3.0):
            pdf.drawString(300 - y + dx, HEIGHT - y, f"Total {size} EUR")
    pdf.showPage()
    pdf.save()
    with pdfplumber.open(io.BytesIO(out.getvalue())) as document:
        page = document.pages[0]
        expected = page.dedupe_chars(tolerance=1.0).chars
        kept = unique_glyphs(page.chars, 1.0)
        assert len(kept) < len(page.chars)
        assert [id(c) for c in kept] == [id(c) for c in expected]


def test_a_latex_euro_sign_font_reads_as_the_euro_sign() -> None:
    # LaTeX's eurosym font (feymr10) draws its € at the code of 'e': a Greek consultant's
    # invoice of the outside set, whose text layer says 'e1710,00'
    pdf = Path(__file__).resolve().parents[2] / "bench" / "outside" / "twentyfifth" / \
        "el-en_timologio-invoice-consultant_invoices.pdf"
    pages = read_text_layer(pdf.read_bytes())
    words = [w.text for page in pages if page is not None for w in page.words]
    text = " ".join(words)
    # the sign is its own word where the PDF leaves a space's gap after it
    assert "€ 1710,00" in text or "€1710,00" in text
    assert "e1710,00" not in text and "e 1710,00" not in text
    assert "services" in words  # the other fonts' letters 'e' stay letters


OUTSIDE = Path(__file__).resolve().parents[2] / "bench" / "outside"


def _words_of(path: Path, page: int = 0) -> list[str]:
    layout = read_text_layer(path.read_bytes())[page]
    assert layout is not None
    return [w.text for w in layout.words]


def test_a_page_without_its_own_media_box_is_the_one_its_page_tree_gives() -> None:
    """A page may inherit its MediaBox from the page tree (FPDF's invoices do, A4): boxes
    are shares of that page, not of a US Letter page assumed for want of one."""
    content = b"BT /F1 12 Tf 1 0 0 1 72 769.89 Tm (Invoice INV-7) Tj ET"  # 72 pt from the top
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               b"<< /Type /Pages /Kids [3 0 R] /Count 1 /MediaBox [0 0 595.28 841.89] >>",
               b"<< /Type /Page /Parent 2 0 R /Contents 4 0 R "
               b"/Resources << /Font << /F1 5 0 R >> >> >>",
               b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 6\n0000000000 65535 f \n" + b"".join(b"%010d 00000 n \n" % o
                                                           for o in offsets)
    out += b"trailer\n<< /Size 6 /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % xref
    page = read_text_layer(bytes(out))[0]
    assert page is not None
    assert (round(page.width), round(page.height)) == (595, 842)
    first = page.words[0]
    assert first.text == "Invoice"
    assert first.box.y0 < 72 / 841.89 < first.box.y1
    assert first.box.x0 == pytest.approx(72 / 595.28, abs=0.002)


def test_a_turned_page_reads_as_it_is_displayed() -> None:
    """A page stored landscape with /Rotate 90 (displayed portrait) and its text drawn turned,
    so that it reads upright on screen: the words come out upright, left to right, in boxes
    of the page as displayed (as PDFium renders it for OCR and for the review console)."""
    out = io.BytesIO()
    pdf = canvas.Canvas(out, pagesize=A4)
    pdf.setPageRotation(90)  # reportlab stores the page 842 x 595: displayed 595 x 842
    pdf.setFont("Helvetica", 12)
    # displayed (x, y from the top) = (stored y, stored x): the text runs along stored +y
    pdf.saveState()
    pdf.translate(100, 72)  # displayed: 72 pt from the left, 100 pt from the top
    pdf.rotate(90)
    pdf.drawString(0, 0, "Total due: 1,250.00")
    pdf.restoreState()
    pdf.showPage()
    pdf.save()
    page = read_text_layer(out.getvalue())[0]
    assert page is not None
    assert (round(page.width), round(page.height)) == (595, 842)
    assert [w.text for w in page.words] == ["Total", "due:", "1,250.00"]
    total = page.words[0].box
    assert total.x0 == pytest.approx(72 / 595, abs=0.003)
    assert total.y0 < 100 / 842 < total.y1 + 0.01


def test_letters_the_text_api_rewrites_read_as_the_page_shows_them() -> None:
    """Outside documents whose text layers trip a glyph-by-glyph reading: ligatures (Calibri's
    ``ff`` in ``Betreff``), a tab between a name's parts, two columns whose lines sit two
    points apart (read as one line, their letters would interleave), a font with no
    ToUnicode map (Thai: read by pdfminer, which looks in the embedded font), and a hyphen
    the font maps to no letter (a NUL, as the invoice pack expects)."""
    assert "Betreff:" in _words_of(OUTSIDE / "zugferd" / "bau_abschlag.pdf", 1)
    dim = _words_of(OUTSIDE / "twentythird" / "en-fr_dim-solution-invoice_invoice-it.pdf")
    assert "Will" in dim and "Jameson" in dim
    bouygues = " ".join(_words_of(OUTSIDE / "various" / "oca-edi_fr_bouygues-telecom.pdf", 1))
    assert "Vos services Bouygues Telecom" in bouygues
    thai = _words_of(OUTSIDE / "eighteenth" / "th_etda-debit-note_e-taxinvoice-pdfgen.pdf")
    assert "ใบเพิ่มหนี้" in thai
    stripe = _words_of(OUTSIDE / "fifteenth" / "en-gb_chessable-stripe-invoice_veryfi.pdf")
    assert "8B83747E\x000006" in stripe


def test_a_picture_drawn_through_a_form_is_reported_where_the_form_puts_it() -> None:
    """A letterhead image inside a form XObject (drawn moved and scaled): its box is the
    form's placement of it on the page, as pdfminer computes it."""
    out = io.BytesIO()
    pdf = canvas.Canvas(out, pagesize=A4)
    pdf.beginForm("letterhead")
    pdf.drawImage(ImageReader(Image.new("RGB", (200, 100), "gray")), 10, 20, 200, 100)
    pdf.endForm()
    pdf.saveState()
    pdf.translate(100, 300)
    pdf.scale(1.5, 1.5)
    pdf.doForm("letterhead")
    pdf.restoreState()
    pdf.drawString(72, HEIGHT - 42, "Invoice INV-2041 from the supplier named below")
    pdf.showPage()
    pdf.save()
    (page,) = read_pdf_pages(out.getvalue())
    (picture,) = page.pictures
    # x: 100 + 1.5 * 10 .. + 1.5 * 200; y from the top: HEIGHT - (300 + 1.5 * (20 + 100))
    assert picture.x0 == pytest.approx(115 / WIDTH, abs=0.002)
    assert picture.x1 == pytest.approx(415 / WIDTH, abs=0.002)
    assert picture.y0 == pytest.approx((HEIGHT - 480) / HEIGHT, abs=0.002)
    assert picture.y1 == pytest.approx((HEIGHT - 330) / HEIGHT, abs=0.002)


def test_a_stamp_drawn_across_the_lines_is_left_out_and_the_lines_stay_whole() -> None:
    """A PAID stamp drawn at 35 degrees across three lines of labels and values: its
    letters are not words of the page, and each line still reads as one; text turned a
    whole quarter (a number printed up the margin, read from the bottom up: before, its
    letters came backwards, ``74765200 feR``) and a slight 4-degree tilt stay. Before, every
    letter of such a stamp stood on a line of its own and joined the lines it crossed (the
    Estonian broker's invoice of the outside set: its number, due date and account were
    read wrong)."""
    out = io.BytesIO()
    pdf = canvas.Canvas(out, pagesize=A4)
    pdf.setFont("Helvetica", 11)
    for y, line in ((700, "Invoice number: 2745540212"), (686, "Due date: 13.01.2026"),
                    (672, "Account: EE241010220026011018")):
        pdf.drawString(72, y, line)
    # (where, turned by how many degrees, font, size, text)
    for (x, y), degrees, font, size, text in (
            ((90, 660), 35, "Helvetica-Bold", 28, "PAID IN FULL"),   # a stamp
            ((560, 300), 90, "Helvetica", 9, "Ref 00256747"),        # up the margin
            ((72, 500), 4, "Helvetica", 11, "Thank you")):           # a slight tilt
        pdf.saveState()
        pdf.translate(x, y)
        pdf.rotate(degrees)
        pdf.setFont(font, size)
        pdf.drawString(0, 0, text)
        pdf.restoreState()
    pdf.showPage()
    pdf.save()
    page = read_text_layer(out.getvalue())[0]
    assert page is not None
    texts = [w.text for w in page.words]
    assert not {"PAID", "IN", "FULL", "P", "A", "I", "D"} & set(texts), texts
    assert "Thank" in texts, texts
    # printed up the margin, its words read from the bottom up, as they are read on the page
    assert {"Ref", "00256747"} <= set(texts), texts
    assert [" ".join(w.text for w in ln.words) for ln in page_lines(page)][:3] == [
        "Invoice number: 2745540212", "Due date: 13.01.2026",
        "Account: EE241010220026011018"]
