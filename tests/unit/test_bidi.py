"""Right-to-left words from a PDF's text layer (drawn left to right on the page) read in the
order a person reads them; left-to-right text is left alone."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switchyard.documents import is_right_to_left, layout_text, logical_order, logical_text
from switchyard.v1 import BoundingBox, DocumentLayout, LayoutPage, LayoutSource, LayoutWord


@pytest.mark.parametrize(("drawn", "read"), [
    ("ةروتاف", "فاتورة"),                  # a word's letters backwards
    (".م.ش", "ش.م."),                      # the dots between and after its letters
    (":ردصم#1721", "مصدر:#1721"),          # a label's colon, a number glued after it
    ("3,800.00س.ر", "3,800.00ر.س"),        # a figure keeps its digits' order
    ("INV-2024/88", "INV-2024/88"),        # nothing right-to-left: unchanged
    ("םולש", "שלום"),                      # Hebrew
])
def test_a_words_letters_are_read_in_order(drawn: str, read: str) -> None:
    assert logical_text(drawn) == read


def test_a_lines_right_to_left_words_are_read_from_the_right() -> None:
    words = ["Supplier", "ةدودحملا", "ةكرشلا", "42", "Total"]
    assert logical_order(words, str) == ["Supplier", "ةكرشلا", "ةدودحملا", "42", "Total"]
    assert not is_right_to_left("Saudi (SAR)") and is_right_to_left("ر.س")


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=30))
def test_only_the_order_changes_and_latin_text_is_untouched(text: str) -> None:
    assert sorted(logical_text(text)) == sorted(text)
    if text.isascii():
        assert logical_text(text) == text


def test_laid_out_text_reads_an_arabic_name_in_order() -> None:
    def word(text: str, x0: float) -> LayoutWord:
        return LayoutWord(text=text, confidence=1.0, box=BoundingBox(
            x0=x0, y0=0.1, x1=x0 + 0.08, y1=0.12), source=LayoutSource.LAYOUT_SOURCE_TEXT_LAYER)

    # as the text layer stores them: each word's letters in order, positions left to right
    page = LayoutPage(number=1, width=600, height=800, words=[
        word(logical_text(".م.ش"), 0.1), word(logical_text("اينابسإ"), 0.19),
        word(logical_text("زيب"), 0.28)])
    assert layout_text(DocumentLayout(pages=[page])) == "بيز إسبانيا ش.م."
