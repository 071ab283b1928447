"""A PDF's text layer read with positions: words in reading order with boxes as fractions of
the page, and ``None`` for a scanned page (no usable text layer) so OCR reads it instead."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageDraw
from reportlab.lib.pagesizes import A4
from reportlab.lib.utils import ImageReader
from reportlab.pdfgen import canvas

from switchyard.documents import read_text_layer, reading_order
from switchyard.v1 import BoundingBox, LayoutSource, LayoutWord

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
