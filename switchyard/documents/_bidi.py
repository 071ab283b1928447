"""Right-to-left words (Arabic, Hebrew) from a PDF's text layer put back in reading order.

A PDF draws glyphs where they stand on the page, so a text layer read left to right holds an
Arabic word with its letters backwards (``ةروتاف`` for ``فاتورة``) and a line's Arabic words in
the reverse of the order they are read. Labels and names would then never match what a
person wrote. The rules here are a small part of the Unicode bidirectional algorithm, enough
for a page's words: inside a word, each run of right-to-left letters (with the punctuation
between them, and the mark just before the run that ends it when read: ``:ردصم`` is
``مصدر:``) is reversed, digits and Latin letters keeping their order; on a line, consecutive
right-to-left words are read from the right. Each word keeps its own box, so what a field was
read from is still drawn where it stands.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TypeVar

__all__ = ["is_right_to_left", "logical_order", "logical_text"]

# Hebrew, Arabic (with its supplements and presentation forms), Syriac, Thaana, N'Ko; the
# Arabic-Indic digits among them are read left to right like any number
_RTL_LETTER = r"[\u0590-\u05ff\u0600-\u065f\u066a-\u06ef\u06fa-\u08ff\ufb1d-\ufdff\ufe70-\ufefc]"
_RTL_RUN = re.compile(rf"[^\w\s]?{_RTL_LETTER}+(?:[^\w\s]+{_RTL_LETTER}+)*")
_ANY_RTL = re.compile(_RTL_LETTER)
_LATIN = re.compile(r"[A-Za-z]")

Word = TypeVar("Word")


def logical_text(text: str) -> str:
    """``text`` as drawn (left to right on the page) in the order it is read."""
    if not _ANY_RTL.search(text):
        return text
    return _RTL_RUN.sub(lambda m: m.group(0)[::-1], text)


def is_right_to_left(text: str) -> bool:
    """Whether a word is read right to left: it has right-to-left letters and no Latin ones."""
    return bool(_ANY_RTL.search(text)) and not _LATIN.search(text)


def logical_order(words: Sequence[Word], text: Callable[[Word], str]) -> list[Word]:
    """A line's ``words``, left to right on the page, with each run of consecutive
    right-to-left words (by :func:`is_right_to_left` of ``text(word)``) read from the right."""
    out: list[Word] = []
    run: list[Word] = []
    for word in words:
        if is_right_to_left(text(word)):
            run.append(word)
            continue
        out.extend(reversed(run))
        run = []
        out.append(word)
    out.extend(reversed(run))
    return out
