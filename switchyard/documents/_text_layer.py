"""Words with positions from a PDF's text layer (pdfplumber over pdfminer.six).

A text PDF carries its words: reading them directly is exact and fast, so OCR is only for the
pages that have none (scans). A page counts as having a usable text layer when its words hold
at least ``min_chars`` letters or digits; a scanned page (an image, perhaps with a stray page
number) gives ``None`` and goes to OCR.

Some text pages also carry pictures of text: a letterhead or a footer with the supplier's
name and bank account pasted in as an image. :func:`read_pdf_pages` reports each page's large
pictures that hold no text-layer words, so the reader OCRs those pages too, and
:func:`merge_picture_words` adds the OCR words that fall inside the pictures to the page.
"""

from __future__ import annotations

import io
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from switchyard.documents._bidi import logical_text
from switchyard.v1 import BoundingBox, LayoutPage, LayoutSource, LayoutWord

__all__ = ["MIN_PICTURE_AREA", "MIN_TEXT_LAYER_CHARS", "PdfPage", "merge_picture_words",
           "read_pdf_pages", "read_text_layer", "reading_order", "unique_glyphs"]

#: Fewer letters and digits than this on a page: no usable text layer (OCR reads the page).
MIN_TEXT_LAYER_CHARS = 8
#: A picture on a text page covering at least this share of the page, with no text-layer
#: words over it, may be a picture of text: the page is OCRed for it. Logos are smaller.
MIN_PICTURE_AREA = 0.04
#: Two letters closer than this share of the font size belong to one word. pdfplumber's
#: default, 3 points whatever the size, glues the words of PDFs that draw no space
#: characters and leave a quarter of an em between words (e-invoice stylesheet renderings:
#: ``TaxiunternehmenTXGmbH``); letters of a word touch or overlap.
WORD_GAP_RATIO = 0.2
#: The same letter drawn again within this many points of itself is one letter: generators
#: fake bold by printing each glyph twice, slightly offset, which reads ``CCoooolltteecc``.
DUPLICATE_GLYPH_PT = 1.0
#: Fonts whose every glyph is a euro sign, drawn under a letter's code: LaTeX's ``eurosym``
#: package (``feymr10``, ``feybo10``, ...) puts its € at the code of ``e``, so the text layer
#: says ``e1710,00`` where the page shows €1710,00. (The font name's ``ABCDEF+`` subset
#: prefix comes first.)
_EURO_SIGN_FONT = re.compile(r"(?:^|\+)(?:TeX-)?fey[mb][rlo]\d*$", re.IGNORECASE)


@dataclass(frozen=True)
class PdfPage:
    """One page of a PDF as read: its text layer (None for a scan) and the boxes of its
    large pictures that no text-layer word lies on (pictures of text, perhaps)."""

    layout: LayoutPage | None
    pictures: tuple[BoundingBox, ...] = ()


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
    return [page.layout for page in read_pdf_pages(body, max_pages, min_chars)]


def read_pdf_pages(body: bytes, max_pages: int | None = None,
                   min_chars: int = MIN_TEXT_LAYER_CHARS) -> list[PdfPage]:
    """:func:`read_text_layer`'s pages, each with the pictures of its text layer that may be
    pictures of text (see :data:`MIN_PICTURE_AREA`)."""
    import pdfplumber  # imported here: only the decision service reads PDFs

    pages: list[PdfPage] = []
    with pdfplumber.open(io.BytesIO(body)) as pdf:
        for index, page in enumerate(pdf.pages):
            if max_pages is not None and index >= max_pages:
                break
            try:
                pages.append(_page(page, index + 1, min_chars))
            finally:
                page.close()  # frees the page's parsed objects (long documents)
    return pages


def _page(page: object, number: int, min_chars: int) -> PdfPage:
    left, top, right, bottom = page.bbox  # type: ignore[attr-defined]
    width, height = float(right - left), float(bottom - top)
    if width <= 0 or height <= 0:
        return PdfPage(None)

    def box(x0: float, y0: float, x1: float, y1: float) -> BoundingBox:
        return BoundingBox(x0=_clamp((x0 - left) / width), y0=_clamp((y0 - top) / height),
                           x1=_clamp((x1 - left) / width), y1=_clamp((y1 - top) / height))

    chars = page.chars  # type: ignore[attr-defined]
    euro_fonts = {name for name in {char.get("fontname") or "" for char in chars}
                  if _EURO_SIGN_FONT.search(name)}  # the page's fonts, each looked at once
    if euro_fonts:
        for char in chars:
            if (char.get("fontname") or "") in euro_fonts:
                char["text"] = "€"
    # a glyph drawn twice a hair apart is one letter: 'fake bold' prints CCoooolltteecc
    kept = {id(char) for char in unique_glyphs(chars, DUPLICATE_GLYPH_PT)}
    glyphs = page.filter(  # type: ignore[attr-defined]
        lambda obj: obj.get("object_type") != "char" or id(obj) in kept)
    raw = glyphs.extract_words(
        keep_blank_chars=False, use_text_flow=False, x_tolerance_ratio=WORD_GAP_RATIO)
    words = [
        LayoutWord(text=logical_text(w["text"]), confidence=1.0,
                   box=box(float(w["x0"]), float(w["top"]), float(w["x1"]), float(w["bottom"])))
        for w in raw if str(w["text"]).strip()
    ]
    if sum(ch.isalnum() for w in words for ch in w.text) < min_chars:
        return PdfPage(None)
    pictures = []
    for image in page.images:  # type: ignore[attr-defined]
        found = box(float(image["x0"]), float(image["top"]), float(image["x1"]),
                    float(image["bottom"]))
        area = (found.x1 - found.x0) * (found.y1 - found.y0)
        if area >= MIN_PICTURE_AREA and not any(_inside(w.box, found) for w in words):
            pictures.append(found)
    return PdfPage(LayoutPage(number=number, width=width, height=height,
                              source=LayoutSource.LAYOUT_SOURCE_TEXT_LAYER,
                              words=reading_order(words)), tuple(pictures))


#: What makes two glyphs the same letter, position aside (pdfplumber's ``dedupe_chars``).
_SAME_GLYPH = itemgetter("upright", "text", "fontname", "size")
_POSITION = itemgetter("doctop", "x0")


def unique_glyphs(chars: Sequence[dict[str, Any]], tolerance: float) -> list[dict[str, Any]]:
    """``chars`` without the glyphs drawn again within ``tolerance`` points of an identical
    one (same letter, font, size and direction), the first of each cluster kept: what
    pdfplumber's ``Page.dedupe_chars`` keeps. Written here because pdfplumber (0.11) puts
    the survivors back in order with ``list.index``, quadratic in the page's glyphs: about
    a sixth of the decision service's CPU on text PDFs with a few thousand letters."""
    from pdfplumber.utils import cluster_objects

    def same(pair: tuple[int, dict[str, Any]]) -> Any:
        return _SAME_GLYPH(pair[1])

    keep: list[tuple[int, dict[str, Any]]] = []
    for _, group in itertools.groupby(sorted(enumerate(chars), key=same), key=same):
        for row in cluster_objects(list(group), lambda pair: pair[1]["doctop"], tolerance):
            for cluster in cluster_objects(row, lambda pair: pair[1]["x0"], tolerance):
                keep.append(min(cluster, key=lambda pair: _POSITION(pair[1])))
    return [char for _, char in sorted(keep, key=itemgetter(0))]


def _inside(word: BoundingBox, area: BoundingBox) -> bool:
    """Whether ``word``'s centre lies in ``area``."""
    x, y = (word.x0 + word.x1) / 2, (word.y0 + word.y1) / 2
    return area.x0 <= x <= area.x1 and area.y0 <= y <= area.y1


def merge_picture_words(page: LayoutPage, ocr: LayoutPage,
                        pictures: Sequence[BoundingBox]) -> LayoutPage:
    """``page`` (a text layer) with the words ``ocr`` read inside ``pictures`` added, each
    marked as OCR with its confidence, all in reading order. OCR words elsewhere on the page
    are left out: the text layer has those exactly."""
    added = [LayoutWord(text=w.text, box=w.box, confidence=w.confidence,
                        source=LayoutSource.LAYOUT_SOURCE_OCR)
             for w in ocr.words if any(_inside(w.box, p) for p in pictures)]
    merged = LayoutPage()
    merged.CopyFrom(page)
    del merged.words[:]
    merged.words.extend(reading_order([*page.words, *added]))
    return merged
