"""Words with positions from a PDF's text layer (pdfplumber over pdfminer.six).

A text PDF carries its words: reading them directly is exact and fast, so OCR is only for the
pages that have none (scans). A page counts as having a usable text layer when its words hold
at least ``min_chars`` letters or digits; a scanned page (an image, perhaps with a stray page
number) gives ``None`` and goes to OCR.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from switchyard.v1 import BoundingBox, LayoutPage, LayoutSource, LayoutWord

__all__ = ["MIN_TEXT_LAYER_CHARS", "read_text_layer", "reading_order"]

#: Fewer letters and digits than this on a page: no usable text layer (OCR reads the page).
MIN_TEXT_LAYER_CHARS = 8


def _clamp(value: float) -> float:
    return min(1.0, max(0.0, value))


def reading_order(words: Sequence[LayoutWord]) -> list[LayoutWord]:
    """``words`` top to bottom, then left to right: words whose vertical centre lies inside a
    line's band join that line (so a slightly taller or lower word on the same line does not
    start a new one), and each line reads left to right."""
    lines: list[tuple[float, float, list[LayoutWord]]] = []  # (top, bottom, words)
    for word in sorted(words, key=lambda w: (w.box.y0 + w.box.y1) / 2):
        centre = (word.box.y0 + word.box.y1) / 2
        if lines and lines[-1][0] <= centre <= lines[-1][1]:
            top, bottom, members = lines[-1]
            members.append(word)
            lines[-1] = (min(top, word.box.y0), max(bottom, word.box.y1), members)
        else:
            lines.append((word.box.y0, word.box.y1, [word]))
    return [w for _, _, members in lines for w in sorted(members, key=lambda w: w.box.x0)]


def read_text_layer(body: bytes, max_pages: int | None = None,
                    min_chars: int = MIN_TEXT_LAYER_CHARS) -> list[LayoutPage | None]:
    """One entry per page of the PDF ``body`` (the first ``max_pages`` when given): a
    ``LayoutPage`` with source TEXT_LAYER, its size in PDF points and its words in reading
    order with boxes as fractions of the page, or ``None`` where the page has no usable text
    layer. Raises what pdfplumber raises on a PDF it cannot open (ingest refused those)."""
    import pdfplumber  # imported here: only the decision service reads PDFs

    pages: list[LayoutPage | None] = []
    with pdfplumber.open(io.BytesIO(body)) as pdf:
        for index, page in enumerate(pdf.pages):
            if max_pages is not None and index >= max_pages:
                break
            try:
                pages.append(_page(page, index + 1, min_chars))
            finally:
                page.close()  # frees the page's parsed objects (long documents)
    return pages


def _page(page: object, number: int, min_chars: int) -> LayoutPage | None:
    left, top, right, bottom = page.bbox  # type: ignore[attr-defined]
    width, height = float(right - left), float(bottom - top)
    if width <= 0 or height <= 0:
        return None
    raw = page.extract_words(keep_blank_chars=False, use_text_flow=False)  # type: ignore[attr-defined]
    words = [
        LayoutWord(text=w["text"], confidence=1.0, box=BoundingBox(
            x0=_clamp((float(w["x0"]) - left) / width), y0=_clamp((float(w["top"]) - top) / height),
            x1=_clamp((float(w["x1"]) - left) / width),
            y1=_clamp((float(w["bottom"]) - top) / height)))
        for w in raw if str(w["text"]).strip()
    ]
    if sum(ch.isalnum() for w in words for ch in w.text) < min_chars:
        return None
    return LayoutPage(number=number, width=width, height=height,
                      source=LayoutSource.LAYOUT_SOURCE_TEXT_LAYER, words=reading_order(words))
