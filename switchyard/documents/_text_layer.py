"""Words with positions from a PDF's text layer: PDFium's glyphs, pdfplumber's word extractor.

A text PDF carries its words: reading them directly is exact and fast, so OCR is only for the
pages that have none (scans). PDFium (C++) reads the glyphs, their boxes, fonts and matrices;
pdfplumber's word extractor, fed the same character dictionaries pdfminer would give it, groups
them into words. With pdfminer parsing the page, in Python, a page cost 3.7 times the CPU
(``bench.text_layer_bench``), and PDFs whose structure PDFium repairs were refused. A page
counts as having a usable text layer when its words hold at least ``min_chars`` letters or
digits; a scanned page (an image, perhaps with a stray page number) gives ``None`` and goes
to OCR.

Some text pages also carry pictures of text: a letterhead or a footer with the supplier's
name and bank account pasted in as an image. :func:`read_pdf_pages` reports each page's large
pictures that hold no text-layer words, so the reader OCRs those pages too, and
:func:`merge_picture_words` adds the OCR words that fall inside the pictures to the page.
"""

from __future__ import annotations

import ctypes
import io
import itertools
import logging
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from switchyard.documents._bidi import logical_text
from switchyard.documents._files import open_pdf
from switchyard.v1 import BoundingBox, LayoutPage, LayoutSource, LayoutWord

__all__ = ["MIN_PICTURE_AREA", "MIN_TEXT_LAYER_CHARS", "PdfPage", "merge_picture_words",
           "read_pdf_pages", "read_text_layer", "reading_order", "unique_glyphs"]

log = logging.getLogger(__name__)

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
#: A page where at least this share of the glyphs have no text PDFium knows (a font with no
#: ToUnicode map, as the Thai e-tax invoices' subset fonts) is read by pdfminer, which also
#: looks up a glyph's letter in the embedded font's own character map.
UNMAPPED_SHARE = 0.1
#: Glyphs whose tops (for turned text: left edges) differ by more than this many points
#: are not on one line (pdfplumber's default line tolerance).
LINE_TOLERANCE_PT = 3.0
#: A glyph this many ems back along the line from the one before starts a run of its own:
#: the line is drawn again from further back (dot leaders drawn across a label's row after
#: it). Right-to-left text steps back a letter at a time and stays one run.
RUN_BACK_EMS = 2.0
#: Text whose baseline lies more than this many degrees off the page's axes is left out of
#: the words: stamps and watermarks drawn across the page (PAID, SAMPLE INVOICE, TEST,
#: SEM VALOR FISCAL in the outside set; no field was ever written so). Each of their letters
#: would stand on a line of its own and join the lines it crosses. A page drawn slanted as
#: a whole is left with no text layer, and OCR reads it.
MAX_SLANT_DEGREES = 10.0


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
    layer. Raises :class:`DocumentError` on a PDF that PDFium cannot open (ingest refused
    those)."""
    return [page.layout for page in read_pdf_pages(body, max_pages, min_chars)]


def read_pdf_pages(body: bytes, max_pages: int | None = None,
                   min_chars: int = MIN_TEXT_LAYER_CHARS) -> list[PdfPage]:
    """:func:`read_text_layer`'s pages, each with the pictures of its text layer that may be
    pictures of text (see :data:`MIN_PICTURE_AREA`)."""
    with open_pdf(body) as pdf:  # PDFium's lock is held only while its glyphs are copied out
        count = len(pdf) if max_pages is None else min(len(pdf), max_pages)
        drawn = [_drawn(pdf, index) for index in range(count)]
    unmapped = [index for index, page in enumerate(drawn)
                if page.unmapped >= max(min_chars, UNMAPPED_SHARE * len(page.glyphs))]
    if unmapped:
        drawn_by_pdfminer = _drawn_by_pdfminer(body, unmapped)
        drawn = [drawn_by_pdfminer.get(index, page) for index, page in enumerate(drawn)]
    return [_page(page, number, min_chars) for number, page in enumerate(drawn, start=1)]


def _drawn_by_pdfminer(body: bytes, indices: Sequence[int]) -> dict[int, _Drawn]:
    """Pages ``indices`` (from 0) as pdfplumber (pdfminer) reads them, in the same terms as
    PDFium's (:class:`_Drawn`); a page pdfminer cannot read is left out (PDFium's stands)."""
    import pdfplumber  # imported here: only the decision service reads PDFs

    found: dict[int, _Drawn] = {}
    try:
        with pdfplumber.open(io.BytesIO(body), pages=[index + 1 for index in indices]) as pdf:
            for page in pdf.pages:
                try:
                    left, top, right, bottom = page.bbox
                    glyphs = [{**char, "x0": char["x0"] - left, "x1": char["x1"] - left,
                               "top": char["top"] - top, "bottom": char["bottom"] - top,
                               "doctop": char["top"] - top, "upward": _upward(baseline)}
                              for char in page.chars
                              if _slant(baseline := _degrees(*char["matrix"][:2]))
                              <= MAX_SLANT_DEGREES]
                    pictures = [(image["x0"] - left, image["top"] - top,
                                 image["x1"] - left, image["bottom"] - top)
                                for image in page.images]
                    found[page.page_number - 1] = _Drawn(float(right - left),
                                                         float(bottom - top), glyphs, pictures)
                finally:
                    page.close()  # frees the page's parsed objects
    except Exception as exc:  # noqa: BLE001 - pdfminer's many error types
        # the type only: a parser's message may quote the document
        log.info("pdfminer cannot read the PDF's pages %s (%s); PDFium's text stands",
                 [index + 1 for index in indices], type(exc).__name__)
    return found


@dataclass(frozen=True)
class _Drawn:
    """What one page draws, as PDFium reads it, in the page as displayed (its crop box,
    turned by its /Rotate; points, origin top left): the glyphs as pdfplumber's character
    dictionaries and the pictures' boxes as (x0, top, x1, bottom)."""

    width: float
    height: float
    glyphs: list[dict[str, Any]]
    pictures: list[tuple[float, float, float, float]]
    #: glyphs whose text PDFium does not know (no ToUnicode entry)
    unmapped: int = 0


def _turned(a: float, b: float, turn: tuple[float, float, float, float]
            ) -> tuple[float, float]:
    """The direction ``(a, b)`` (PDF's row-vector convention) after the matrix ``turn``."""
    ta, tb, tc, td = turn
    return a * ta + b * tc, a * tb + b * td


def _degrees(a: float, b: float) -> float:
    """The direction ``(a, b)`` (y up) in degrees counter-clockwise, 0 to 360."""
    return math.degrees(math.atan2(b, a)) % 360


def _slant(degrees: float) -> float:
    """How far (0 to 45 degrees) a direction lies off the page's axes."""
    off = degrees % 90
    return min(off, 90 - off)


def _upward(degrees: float) -> bool:
    """Whether a baseline in this direction reads from the bottom of the page up (text
    turned a quarter counter-clockwise, as printed up a margin)."""
    return 45 < degrees < 135


class _Display:
    """PDF page space (origin bottom left, y up) to the page as displayed: the crop box
    turned clockwise by the page's /Rotate, origin top left, y down. PDFium renders the
    page that way, so the boxes found here are the boxes of the rendered page."""

    #: The /Rotate turn as a matrix (a, b, c, d) in PDF's row-vector convention, composed
    #: after a glyph's own matrix to tell whether it stands upright on the displayed page.
    _TURNS = {0: (1.0, 0.0, 0.0, 1.0), 90: (0.0, -1.0, 1.0, 0.0),
              180: (-1.0, 0.0, 0.0, -1.0), 270: (0.0, 1.0, -1.0, 0.0)}

    def __init__(self, crop: tuple[float, float, float, float], rotation: int) -> None:
        self.left, self.bottom, self.right, self.top = crop
        self.rotation = rotation if rotation in self._TURNS else 0
        width, height = self.right - self.left, self.top - self.bottom
        self.size = (height, width) if self.rotation in (90, 270) else (width, height)
        self.turn = self._TURNS[self.rotation]

    def point(self, x: float, y: float) -> tuple[float, float]:
        if self.rotation == 90:
            return y - self.bottom, x - self.left
        if self.rotation == 180:
            return self.right - x, y - self.bottom
        if self.rotation == 270:
            return self.top - y, self.right - x
        return x - self.left, self.top - y

    def box(self, left: float, bottom: float, right: float,
            top: float) -> tuple[float, float, float, float]:
        """(x0, top, x1, bottom) on the displayed page of a page-space rectangle."""
        (xa, ya), (xb, yb) = self.point(left, bottom), self.point(right, top)
        return min(xa, xb), min(ya, yb), max(xa, xb), max(ya, yb)

    def baseline(self, a: float, b: float) -> float:
        """The direction of a glyph's baseline, ``(a, b)`` of its matrix, on the displayed
        page: degrees counter-clockwise from left-to-right, 0 to 360."""
        return _degrees(*_turned(a, b, self.turn))

    def upright(self, a: float, b: float, c: float, d: float) -> bool:
        """pdfminer's test of a glyph matrix, after the page's turn (each row turned)."""
        (a, b), (c, d) = _turned(a, b, self.turn), _turned(c, d, self.turn)
        return a * d > 0 and b * c <= 0


def _drawn(pdf: Any, index: int) -> _Drawn:
    """Page ``index``'s glyphs and pictures (PDFium's lock held by the caller)."""
    page = pdf[index]
    try:
        # the crop box within the media box, both inherited from the page tree where the
        # page has none (get_cropbox would give US Letter for a page without its own)
        display = _Display(page.get_bbox(), page.get_rotation() % 360)
        textpage = page.get_textpage()
        try:
            glyphs, unmapped = _glyphs(textpage, display)
        finally:
            textpage.close()
        pictures = [display.box(*bounds) for bounds in _picture_bounds(page)]
        return _Drawn(*display.size, glyphs, pictures, unmapped)
    finally:
        page.close()


#: Code points PDFium reports for a glyph that stands for no text. (A drawn glyph whose
#: text the font does not say comes as 0 and is kept as NUL, as pdfminer gives it: Stripe's
#: receipts draw their hyphens so, and the invoice pack reads a NUL between letters or
#: digits as one.)
_NO_TEXT = frozenset({0xFFFE, 0xFFFF})
#: PDFium's code for a hyphen it takes for a word broken at the line's end: the hyphen drawn.
_BREAK_HYPHEN = 0x02


#: A font's descent as a share of its size where the font gives none, or one no type has:
#: OCR text layers' invisible fonts give a descent of a whole em, which would push a line's
#: words down over the next line's.
_DESCENT, _DEEPEST_DESCENT = -0.2, -0.5


class _Font:
    """What a text object's glyphs share: the font's name and, at the object's font size,
    the font's descent (points of text space, negative below the baseline)."""

    __slots__ = ("descent", "name")

    def __init__(self, name: str, descent: float) -> None:
        self.name, self.descent = name, descent


def _glyphs(textpage: Any, display: _Display) -> tuple[list[dict[str, Any]], int]:
    """The page's glyphs as pdfplumber's character dictionaries (the keys its word extractor
    and :func:`unique_glyphs` read), measured as pdfminer measures them: the box runs the
    glyph's advance across and, up from the font's descent below the baseline, the font
    size; the size is the font size as drawn (the Tf size scaled by the matrix).

    PDFium's text differs from the content stream's in three ways, each undone here: a
    glyph that stands for several letters (a ligature) comes as several characters with one
    box (joined again into one glyph); whitespace glyphs such as tabs are dropped, with a
    space generated in their place; and spaces and line breaks are generated wherever its
    own heuristics see a gap. Line breaks are left out (lines come from positions), and so
    are generated spaces inside one text object (letter-spaced headings, kerned words:
    the word extractor judges those gaps itself); a generated space between two text
    objects is kept (a tab between a label and its value), as a space after the glyph
    before it, where the word extractor breaks the word.

    Also returns how many glyphs PDFium found no text for in the font's ToUnicode map (it
    gives their character codes instead)."""
    import pypdfium2.raw as pdfium_c

    handle = textpage.raw
    loose, matrix = pdfium_c.FS_RECTF(), pdfium_c.FS_MATRIX()
    origin_x, origin_y, descent = ctypes.c_double(), ctypes.c_double(), ctypes.c_float()
    name, flags = ctypes.create_string_buffer(_FONT_NAME_BYTES), ctypes.c_int()
    fonts: dict[int | None, _Font] = {}  # text object -> its font, asked once
    glyphs: list[dict[str, Any]] = []
    last_box: tuple[int | None, float, float, float, float] | None = None
    spaced = False  # PDFium generated a space after the last glyph
    unmapped = 0
    count = pdfium_c.FPDFText_CountChars(handle)
    index = 0
    while index < count:
        at = index
        code = pdfium_c.FPDFText_GetUnicode(handle, at)
        index += 1
        if pdfium_c.FPDFText_IsGenerated(handle, at) == 1:
            spaced = spaced or code == 0x20
            continue
        if code in _NO_TEXT:
            continue
        if 0xD800 <= code < 0xDC00:  # a character past the BMP comes as a surrogate pair
            low = pdfium_c.FPDFText_GetUnicode(handle, index) if index < count else 0
            if not 0xDC00 <= low < 0xE000:
                continue
            code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
            index += 1
        elif 0xDC00 <= code < 0xE000:
            continue
        text = "-" if code == _BREAK_HYPHEN else chr(code)
        if not pdfium_c.FPDFText_GetLooseCharBox(handle, at, loose) or \
                not pdfium_c.FPDFText_GetMatrix(handle, at, matrix):
            continue
        a, b, c, d = matrix.a, matrix.b, matrix.c, matrix.d
        baseline = display.baseline(a, b)
        if _slant(baseline) > MAX_SLANT_DEGREES:
            continue
        unmapped += pdfium_c.FPDFText_HasUnicodeMapError(handle, at) == 1
        textobj = pdfium_c.FPDFText_GetTextObject(handle, at)
        key = ctypes.cast(textobj, ctypes.c_void_p).value
        box = (key, loose.left, loose.bottom, loose.right, loose.top)
        if box == last_box:  # one more letter of the glyph before (a ligature)
            glyphs[-1]["text"] += text
            continue
        if spaced and last_box is not None and key != last_box[0] and \
                not glyphs[-1]["text"].isspace():
            glyphs.append({**glyphs[-1], "text": " ", "x0": glyphs[-1]["x1"]})
        spaced, last_box = False, box
        tf_size = pdfium_c.FPDFText_GetFontSize(handle, at)
        font = fonts.get(key)
        if font is None:
            length = pdfium_c.FPDFText_GetFontInfo(handle, at, name, _FONT_NAME_BYTES, flags)
            pdf_font = pdfium_c.FPDFTextObj_GetFont(textobj) if textobj else None
            below = descent.value / tf_size if tf_size and pdf_font and \
                pdfium_c.FPDFFont_GetDescent(pdf_font, ctypes.c_float(tf_size), descent) \
                else _DESCENT
            font = fonts[key] = _Font(
                name.value.decode("utf-8", "replace") if length else "",
                (below if _DEEPEST_DESCENT <= below <= 0 else _DESCENT) * tf_size)
        if b == 0 and c == 0 and pdfium_c.FPDFText_GetCharOrigin(handle, at, origin_x,
                                                                  origin_y):
            low_y = origin_y.value + font.descent * d  # pdfminer's box: descent + size
            x0, top, x1, bottom = display.box(loose.left, low_y, loose.right,
                                              low_y + tf_size * d)
        else:  # turned or skewed text: PDFium's box (ascent to descent)
            x0, top, x1, bottom = display.box(loose.left, loose.bottom, loose.right,
                                              loose.top)
        glyphs.append({"text": text, "x0": x0, "x1": x1, "top": top, "bottom": bottom,
                       "height": bottom - top, "doctop": top, "fontname": font.name,
                       "size": tf_size * math.hypot(c, d),
                       "upright": display.upright(a, b, c, d), "upward": _upward(baseline)})
    return glyphs, unmapped


#: Room for a font's name (PostScript names are at most 127 bytes).
_FONT_NAME_BYTES = 256
#: Form XObjects nested deeper than this are not searched for pictures.
_MAX_FORM_DEPTH = 8


def _picture_bounds(page: Any) -> list[tuple[float, float, float, float]]:
    """The page-space (left, bottom, right, top) of every image the page draws, those inside
    form XObjects included (PDFium gives their bounds in the form's space: the forms'
    matrices carry them onto the page)."""
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c

    found: list[tuple[float, float, float, float]] = []
    left, bottom, right, top = (ctypes.c_float() for _ in range(4))

    def walk(count: int, get: Any, parent: Any, to_page: Any, depth: int) -> None:
        for at in range(count):
            obj = get(parent, at)
            kind = pdfium_c.FPDFPageObj_GetType(obj)
            if kind == pdfium_c.FPDF_PAGEOBJ_IMAGE:
                if pdfium_c.FPDFPageObj_GetBounds(obj, left, bottom, right, top):
                    found.append(to_page.on_rect(left.value, bottom.value, right.value,
                                                 top.value))
            elif kind == pdfium_c.FPDF_PAGEOBJ_FORM and depth < _MAX_FORM_DEPTH:
                form = pdfium_c.FS_MATRIX()
                if pdfium_c.FPDFPageObj_GetMatrix(obj, form):
                    walk(pdfium_c.FPDFFormObj_CountObjects(obj),
                         pdfium_c.FPDFFormObj_GetObject, obj,
                         pdfium.PdfMatrix.from_raw(form).multiply(to_page), depth + 1)

    walk(pdfium_c.FPDFPage_CountObjects(page.raw), pdfium_c.FPDFPage_GetObject, page.raw,
         pdfium.PdfMatrix(), 0)
    return found


def _runs(glyphs: Sequence[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """``glyphs`` (in the order the page draws them) cut into runs on one line each: a run
    ends where the next glyph turns, leaves the line or goes back along it (see
    :data:`RUN_BACK_EMS`). The word extractor then reads each run alone. Given the whole
    page, it would chain lines whose tops lie within its tolerance of each other into one:
    two columns whose lines sit a point or two apart would be read as one line, their
    letters interleaved."""
    run: list[dict[str, Any]] = []
    for glyph in glyphs:
        if run:
            last = run[-1]
            across, along = ("top", "x0") if glyph["upright"] else ("x0", "top")
            if (glyph["upright"], glyph["upward"]) != (last["upright"], last["upward"]) or \
                    abs(glyph[across] - last[across]) > LINE_TOLERANCE_PT or \
                    glyph[along] < last[along] - RUN_BACK_EMS * max(last["size"], 1.0):
                yield run
                run = []
        run.append(glyph)
    if run:
        yield run


def _page(drawn: _Drawn, number: int, min_chars: int) -> PdfPage:
    """One page's words (pdfplumber's word extractor over PDFium's glyphs) and the pictures
    no word lies on."""
    from pdfplumber.utils import extract_words

    width, height = drawn.width, drawn.height
    if width <= 0 or height <= 0:
        return PdfPage(None)

    def box(x0: float, y0: float, x1: float, y1: float) -> BoundingBox:
        return BoundingBox(x0=_clamp(x0 / width), y0=_clamp(y0 / height),
                           x1=_clamp(x1 / width), y1=_clamp(y1 / height))

    chars = drawn.glyphs
    euro_fonts = {name for name in {char["fontname"] for char in chars}
                  if _EURO_SIGN_FONT.search(name)}  # the page's fonts, each looked at once
    if euro_fonts:
        for char in chars:
            if char["fontname"] in euro_fonts and not char["text"].isspace():
                char["text"] = "€"
    # a glyph drawn twice a hair apart is one letter: 'fake bold' prints CCoooolltteecc
    glyphs = unique_glyphs(chars, DUPLICATE_GLYPH_PT)
    raw = [word for run in _runs(glyphs)
           for word in extract_words(run, keep_blank_chars=False, use_text_flow=False,
                                     x_tolerance_ratio=WORD_GAP_RATIO,
                                     char_dir_rotated="btt" if run[0]["upward"] else "ttb")]
    words = [
        LayoutWord(text=logical_text(w["text"]), confidence=1.0,
                   box=box(float(w["x0"]), float(w["top"]), float(w["x1"]), float(w["bottom"])))
        for w in raw if str(w["text"]).strip()
    ]
    if sum(ch.isalnum() for w in words for ch in w.text) < min_chars:
        return PdfPage(None)
    pictures = []
    for picture in drawn.pictures:
        found = box(*picture)
        area = (found.x1 - found.x0) * (found.y1 - found.y0)
        if area >= MIN_PICTURE_AREA and not any(_inside(w.box, found) for w in words):
            pictures.append(found)
    return PdfPage(LayoutPage(number=number, width=width, height=height,
                              source=LayoutSource.LAYOUT_SOURCE_TEXT_LAYER,
                              words=reading_order(words)), tuple(pictures))


#: What makes two glyphs the same letter, position aside (pdfplumber's ``dedupe_chars``).
_SAME_GLYPH = itemgetter("upright", "text", "fontname", "size")


def unique_glyphs(chars: Sequence[dict[str, Any]], tolerance: float) -> list[dict[str, Any]]:
    """``chars`` without the glyphs drawn again within ``tolerance`` points of an identical
    one (same letter, font, size and direction), the first of each cluster kept: what
    pdfplumber's ``Page.dedupe_chars`` keeps (its clusters: rows of tops each within
    ``tolerance`` of the one before, then the same along each row). Written here because
    pdfplumber (0.11) puts the survivors back in order with ``list.index``, quadratic in
    the page's glyphs, and its general clustering cost a quarter of reading a page."""

    def same(pair: tuple[int, dict[str, Any]]) -> Any:
        return _SAME_GLYPH(pair[1])

    def first(pair: tuple[int, dict[str, Any]]) -> tuple[float, float, int]:
        return pair[1]["doctop"], pair[1]["x0"], pair[0]

    keep: list[tuple[int, dict[str, Any]]] = []
    for _, group in itertools.groupby(sorted(enumerate(chars), key=same), key=same):
        members = list(group)
        if len(members) == 1:
            keep.append(members[0])
            continue
        for row in _chains(members, _top, tolerance):
            for cluster in _chains(row, _left, tolerance):
                keep.append(min(cluster, key=first))
    return [char for _, char in sorted(keep, key=itemgetter(0))]


def _top(pair: tuple[int, dict[str, Any]]) -> float:
    return pair[1]["doctop"]


def _left(pair: tuple[int, dict[str, Any]]) -> float:
    return pair[1]["x0"]


def _chains(pairs: Sequence[tuple[int, dict[str, Any]]], key: Any,
            tolerance: float) -> Iterator[list[tuple[int, dict[str, Any]]]]:
    """``pairs`` in ``key`` order, cut where a value lies more than ``tolerance`` past the
    one before (pdfplumber's ``cluster_list``)."""
    ordered = sorted(pairs, key=key)
    run, last = [ordered[0]], key(ordered[0])
    for pair in ordered[1:]:
        value = key(pair)
        if value > last + tolerance:
            yield run
            run = []
        run.append(pair)
        last = value
    yield run


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
