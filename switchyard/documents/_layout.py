"""Reading a DocumentLayout: lines, reading-order text, labels, values next to them, tables.

A layout (``switchyard.v1.DocumentLayout``) is the words of a document with their boxes,
from a PDF's text layer or from OCR. Pure functions here turn it into what extraction needs:

* :func:`lines` groups a page's words into lines (words whose vertical middles fall inside
  each other's height, measured along the text's slope on a page scanned at an angle), left
  to right, lines top to bottom;
* :func:`layout_text` is the reading-order text the router model sees: one text line per
  layout line, words joined by a space, and ``" | "`` where a wide horizontal gap separates
  two columns (so a table row reads ``Toner | 4 | 62.50 | 250.00``, as the plain-text
  invoices the router was trained on write it); pages are separated by a blank line;
* :func:`find_labels` finds a label's words (matched without case, accents or punctuation,
  also across several words: ``Invoice No.``), :func:`label_values` the values right of the
  label on its line, then below it (the first line under it, past another column's lines),
  the likeliest first;
* :func:`find_table` reads a table from its header row: columns found by their labels, each
  following line a row until the table ends;
* :func:`provenance_of` is where a value was read: page, the box around its words, each
  word's box, the layout source and the lowest OCR confidence among the words.

Distances are measured in line heights (the height of the words involved), so they mean the
same for a text layer in PDF points and for OCR in pixels. Boxes are fractions of the page
(0..1, origin top left) as the contract says; the page's width and height turn them into
page units where a horizontal gap is compared with a height.
"""

from __future__ import annotations

import functools
import re
import statistics
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from switchyard.documents._bidi import logical_order
from switchyard.v1 import (
    BoundingBox,
    DocumentLayout,
    LayoutPage,
    LayoutSource,
    LayoutWord,
    Provenance,
)

#: A horizontal gap wider than this many line heights separates two columns.
COLUMN_GAP_HEIGHTS = 1.0
#: A value below its label is looked for at most this many line heights under it.
MAX_BELOW_HEIGHTS = 3.5
#: Lines in reading order looked at below a label (within MAX_BELOW_HEIGHTS): a column
#: beside it puts its own lines in between.
MAX_LINES_BELOW = 6
#: A value right of its label is looked for at most this many line heights away.
MAX_RIGHT_HEIGHTS = 40.0
#: A table ends at a vertical gap wider than this many line heights between two rows.
MAX_ROW_GAP_HEIGHTS = 2.5
#: Text lines sloping less than this (rise over run, in page units) count as straight; more
#: than MAX_SKEW (about 10 degrees) is taken as MAX_SKEW.
MIN_SKEW, MAX_SKEW = 0.003, 0.18


@dataclass(frozen=True)
class PageWord:
    """A word with its page: what the helpers here pass around (boxes in page fractions)."""

    page: int
    text: str
    x0: float
    y0: float
    x1: float
    y1: float
    confidence: float
    source: int  # LayoutSource
    #: The page's size in its own units (points or pixels), for gaps measured in heights.
    page_width: float = 1.0
    page_height: float = 1.0

    @property
    def height(self) -> float:
        """The word's height in page units."""
        return max(self.y1 - self.y0, 0.0) * self.page_height

    @property
    def middle(self) -> float:
        """The vertical middle, as a page fraction."""
        return (self.y0 + self.y1) / 2

    @property
    def centre(self) -> float:
        """The horizontal centre, as a page fraction."""
        return (self.x0 + self.x1) / 2

    def gap_to(self, other: PageWord) -> float:
        """Horizontal distance from this word's right edge to ``other``'s left edge, in page
        units (negative when they overlap)."""
        return (other.x0 - self.x1) * self.page_width


@dataclass(frozen=True)
class Line:
    """Words on one line of a page, left to right."""

    page: int
    words: tuple[PageWord, ...]

    @functools.cached_property
    def height(self) -> float:
        """The median height of the line's words, in page units (at least a tiny positive)."""
        return max(statistics.median(w.height for w in self.words), 1e-9)

    @functools.cached_property
    def tokens(self) -> tuple[str, ...]:
        """Each word as labels are compared with it (:func:`_tokens`): a page's lines are
        searched for dozens of labels."""
        return tuple(_tokens(w.text) for w in self.words)

    @property
    def y0(self) -> float:
        return min(w.y0 for w in self.words)

    @property
    def y1(self) -> float:
        return max(w.y1 for w in self.words)

    @property
    def text(self) -> str:
        """The words joined by a space (no column marks), right-to-left words in the order
        they are read (:func:`switchyard.documents._bidi.logical_order`)."""
        return " ".join(w.text for w in logical_order(self.words, _text))

    def cells(self) -> list[tuple[PageWord, ...]]:
        """The line cut at wide gaps: runs of words close to each other (columns, fields)."""
        out: list[list[PageWord]] = []
        for word in self.words:
            if out and out[-1][-1].gap_to(word) <= COLUMN_GAP_HEIGHTS * self.height:
                out[-1].append(word)
            else:
                out.append([word])
        return [tuple(cell) for cell in out]


@dataclass(frozen=True)
class LabelValue:
    """A value found next to its label: the words of each, where the value was (``right`` of
    the label on its line, or ``below`` it), how far from the label, in line heights, and the
    line the label stands on (what else is on it tells a caller whether the label is one)."""

    label: tuple[PageWord, ...]
    value: tuple[PageWord, ...]
    placement: str
    distance: float
    line: Line

    @property
    def text(self) -> str:
        """The value's words joined by a space."""
        return " ".join(w.text for w in logical_order(self.value, _text))


@dataclass(frozen=True)
class Table:
    """A table read from a layout: its header's words per column and its rows (column name ->
    the words of that cell; a column the row leaves empty is absent)."""

    page: int
    header: Mapping[str, tuple[PageWord, ...]]
    rows: tuple[Mapping[str, tuple[PageWord, ...]], ...]

    def words(self) -> list[PageWord]:
        """Every word of the table's rows (not the header), for its provenance."""
        return [w for row in self.rows for cell in row.values() for w in cell]

    def texts(self) -> list[dict[str, str]]:
        """The rows as column name -> cell text."""
        return [{name: " ".join(w.text for w in logical_order(cell, _text))
                 for name, cell in row.items()}
                for row in self.rows]


def _page_size(page: LayoutPage) -> tuple[float, float]:
    if page.width > 0 and page.height > 0:
        return page.width, page.height
    return 1.0, 1.0


def page_words(page: LayoutPage) -> list[PageWord]:
    """A page's non-empty words as :class:`PageWord` (boxes put in order: x0 <= x1, y0 <= y1)."""
    width, height = _page_size(page)
    out = []
    for word in page.words:
        text = word.text.strip()
        if not text:
            continue
        box = word.box
        out.append(PageWord(page=page.number, text=text,
                            x0=min(box.x0, box.x1), y0=min(box.y0, box.y1),
                            x1=max(box.x0, box.x1), y1=max(box.y0, box.y1),
                            confidence=word.confidence, source=word.source or page.source,
                            page_width=width, page_height=height))
    return out


def _skew(words: Sequence[PageWord]) -> float:
    """The slope of the page's text lines (page-fraction y per page-fraction x; 0 for a
    straight page): the median slope from each word to its nearest neighbour on the right
    that shares most of its height, once enough such pairs agree (a scan fed in at an angle)."""
    ordered = sorted(words, key=lambda w: w.middle)
    slopes = []
    for index, word in enumerate(ordered):
        best: PageWord | None = None
        for other in ordered[max(0, index - 20):index + 20]:
            gap = word.gap_to(other)
            overlap = min(word.y1, other.y1) - max(word.y0, other.y0)
            if other is word or gap < -0.1 * word.height or gap > 3 * word.height \
                    or overlap < 0.5 * min(word.y1 - word.y0, other.y1 - other.y0):
                continue
            if best is None or other.x0 < best.x0:
                best = other
        if best is not None and best.centre > word.centre:
            slopes.append((best.middle - word.middle) / (best.centre - word.centre))
    if len(slopes) < 5:
        return 0.0
    slope = statistics.median(slopes)
    aspect = ordered[0].page_height / ordered[0].page_width  # slope in page units: * aspect
    limit = MAX_SKEW / aspect
    return max(-limit, min(limit, slope)) if abs(slope * aspect) > MIN_SKEW else 0.0


#: Page fractions closer than this are the same height on the page (a hundredth of a point
#: on A4): a text layer read in single precision puts a word that sits exactly on a line's
#: edge a hair above or below it, and lines should not depend on which.
_SAME_Y = 1e-5


def page_lines(page: LayoutPage) -> list[Line]:
    """A page's words grouped into lines, top to bottom; each line's words left to right.

    A word joins a line when its vertical middle lies within the line's first word's top and
    bottom, or the line's middle within the word's: so words of different heights (a bold
    total) still share their line. On a page scanned at an angle (:func:`_skew`) heights are
    compared along the lines' slope, so a value far right of its label stays on its line.
    """
    words = page_words(page)
    slope = _skew(words)

    def straight(y: float, word: PageWord) -> float:
        return y - slope * word.centre

    words.sort(key=lambda w: (straight(w.middle, w), w.x0))
    groups: list[list[PageWord]] = []
    for word in words:
        middle = straight(word.middle, word)
        for group in reversed(groups[-3:]):  # a line started just above may still take it
            first = group[0]
            first_middle = straight(first.middle, first)
            if straight(first.y0, first) - _SAME_Y <= middle <= straight(first.y1, first) \
                    + _SAME_Y or straight(word.y0, word) - _SAME_Y <= first_middle \
                    <= straight(word.y1, word) + _SAME_Y:
                group.append(word)
                break
        else:
            groups.append([word])
    lines = [Line(page.number, tuple(sorted(g, key=lambda w: w.x0))) for g in groups]
    return sorted(lines, key=lambda ln: statistics.median(straight(w.middle, w)
                                                         for w in ln.words))


def _text(word: PageWord) -> str:
    return word.text


def lines(layout: DocumentLayout) -> list[Line]:
    """Every line of every page, in reading order (pages in order of their number)."""
    return [line for page in sorted(layout.pages, key=lambda p: p.number)
            for line in page_lines(page)]


def layout_text(layout: DocumentLayout) -> str:
    """The document's text in reading order: what the router model sees.

    One text line per layout line; words of one cell joined by a space, cells (runs of words
    separated by a wide gap) by ``" | "``, except right after a word that ends with a colon
    (``Total:`` then far to the right ``360.00`` reads ``Total: 360.00``); pages separated by a
    blank line.
    """
    pages = []
    for page in sorted(layout.pages, key=lambda p: p.number):
        out = []
        for line in page_lines(page):
            parts: list[str] = []
            for cell in line.cells():
                text = " ".join(w.text for w in logical_order(cell, _text))
                if parts and not parts[-1].endswith(":"):
                    parts.append(" | ")
                elif parts:
                    parts.append(" ")
                parts.append(text)
            out.append("".join(parts))
        pages.append("\n".join(out))
    return "\n\n".join(p for p in pages if p)


_NOT_A_LETTER = re.compile(r"[\W_]+")


@functools.lru_cache(maxsize=1 << 16)
def _tokens(text: str) -> str:
    """A label or word compared without case, accents, punctuation or spaces (capitals often
    drop their accents: ``NET A PAYER`` is ``Net à payer``). Cached: every label is compared
    with every word of the page, so the same few hundred words are normalised thousands of
    times per document (a third of the decision service's CPU before the cache)."""
    return _NOT_A_LETTER.sub("", unaccented(text.lower()))


def unaccented(text: str) -> str:
    """``text`` without its letters' accents (``é`` -> ``e``, ``ż`` -> ``z``; ``ł`` and ``ß``
    have none to lose)."""
    return "".join(ch for ch in unicodedata.normalize("NFKD", text)
                   if not unicodedata.combining(ch))


def find_labels(layout_lines: Sequence[Line], label: str) -> list[tuple[Line, int, int]]:
    """Where ``label`` is written: (line, index of its first word, index after its last).

    The label is matched without case, punctuation or spaces against one or more consecutive
    words of a line (``Invoice No.`` matches ``INVOICE`` ``NO:`` and ``InvoiceNo``); the label
    must be whole words (``Total`` does not match ``Subtotal``), except for a rate OCR ran into
    its last word (``VAT`` matches ``VAT20%``: the rate is read as part of the label).
    """
    wanted = _tokens(label)
    if not wanted:
        return []
    found = []
    for line in layout_lines:
        tokens = line.tokens
        for start, first in enumerate(tokens):
            if first and first[0] != wanted[0]:
                continue  # what most words are: not the label's first letters
            end = _label_end(line.words, tokens, start, wanted)
            if end is not None:
                found.append((line, start, end))
    return found


def _label_end(words: Sequence[PageWord], tokens: Sequence[str], start: int, wanted: str
               ) -> int | None:
    """The index after the last word of label ``wanted`` (its :func:`_tokens`) written from
    word ``start`` on (``tokens``: the words' tokens), or None when it is not written there."""
    joined = ""
    for end in range(start, len(words)):
        joined += tokens[end]
        if joined == wanted or (joined.startswith(wanted) and wanted[-1].isalpha()
                                and joined[len(wanted):].isdigit()
                                and words[end].text.rstrip(":)").endswith("%")):
            return end + 1
        if not wanted.startswith(joined):
            return None
    return None


def _is_mark(word: PageWord) -> bool:
    """A word that is only punctuation (a lone ':' or '-' between label and value)."""
    return not _tokens(word.text)


def _right_of(line: Line, end: int) -> list[tuple[tuple[PageWord, ...], float]]:
    """The first two cells right of a label ending at word ``end``, each with its distance
    from the label in line heights (the second one for a label followed by a rate or a unit
    before its value: ``VAT 20%`` then far right ``EUR 227.30``)."""
    rest = list(line.words[end:])
    while rest and _is_mark(rest[0]):
        rest.pop(0)
    out: list[tuple[tuple[PageWord, ...], float]] = []
    label_end = line.words[end - 1]
    while rest and len(out) < 2:
        distance = max(label_end.gap_to(rest[0]), 0.0) / line.height
        if distance > MAX_RIGHT_HEIGHTS and (out or not _one_cell(rest, line.height)):
            break  # far right and more than one cell: another column's, not this label's
        value = [rest.pop(0)]
        while rest and value[-1].gap_to(rest[0]) <= COLUMN_GAP_HEIGHTS * line.height:
            value.append(rest.pop(0))
        out.append((tuple(value), distance))
    return out


def _one_cell(words: Sequence[PageWord], height: float) -> bool:
    """Whether ``words`` are one cell: no gap wider than a column's between them (the only
    thing far right of a label, as in ``Somme à payer ........ 29.99 € TTC``)."""
    return all(a.gap_to(b) <= COLUMN_GAP_HEIGHTS * height for a, b in zip(words, words[1:]))


def _below(layout_lines: Sequence[Line], line: Line, start: int, end: int
           ) -> tuple[tuple[PageWord, ...], float] | None:
    label = line.words[start:end]
    left, right = label[0].x0, label[-1].x1
    # a header's column runs to where the next header starts: a right-aligned figure under
    # a left-aligned header ('Charges' over '$1002.00') is in it without touching it
    after = line.words[end:]
    column_end = after[0].x0 if after else right
    index = layout_lines.index(line)
    # the next few lines in reading order, not only the next: another column's interleave
    for below in layout_lines[index + 1:index + 1 + MAX_LINES_BELOW]:
        if below.page != line.page:
            return None
        # in the taller line's heights: a small caption over a large figure ('TOTAL DUE'
        # over a '€10,545.00' twice its size) is as close as its own size makes it look
        distance = max(below.y0 - line.y1, 0.0) * label[0].page_height / \
            max(line.height, below.height)
        if distance > MAX_BELOW_HEIGHTS:
            return None
        for cell in below.cells():
            if cell[0].x0 <= right and cell[-1].x1 >= left:  # under the label
                return cell, distance
        for cell in below.cells():
            if right < cell[0].x0 < column_end:  # starting in the label's column
                return cell, distance
    return None


def _starts_with_label(words: Sequence[PageWord], labels: Iterable[str]) -> bool:
    tokens = [_tokens(w.text) for w in words]
    return any(_label_end(words, tokens, 0, wanted) is not None
               for wanted in map(_tokens, labels) if wanted)


def label_values(layout_lines: Sequence[Line], labels: Iterable[str],
                 not_values: Iterable[str] = ()) -> Iterator[LabelValue]:
    """Every value next to one of ``labels``, the likeliest first (labels in the order given): for
    a label, the words right of it on its line up to the next wide gap and the cell after those,
    at each of its occurrences in reading order (the only cell far right of it too); then the
    words just below it, in the first line under it within MAX_BELOW_HEIGHTS (a label above
    its value, a column header above its first row). Words that end with a colon,
    or start with one of ``not_values`` (the other fields' labels), are a label, not a value. A
    label in a header row (:func:`_header_row`) gives the value under it first. The caller takes
    the first value that reads as what it wants (``20%`` right of ``VAT`` is no amount: the next
    cell may be)."""
    not_values = tuple(not_values)

    def is_label(words: Sequence[PageWord]) -> bool:
        return words[-1].text.endswith(":") or _starts_with_label(words, not_values)

    for label in labels:
        found = find_labels(layout_lines, label)
        later: list[LabelValue] = []
        for line, start, end in found:
            words = line.words[start:end]
            rights = []
            for cell, distance in _right_of(line, end):
                if is_label(cell):
                    break
                rights.append(LabelValue(words, cell, "right", distance, line))
            below = _below(layout_lines, line, start, end)
            under = None if below is None or is_label(below[0]) else \
                LabelValue(words, below[0], "below", below[1], line)
            if rights and under is not None and _header_row(rights[0], under):
                yield under
                later.extend(rights)
            else:
                yield from rights
                if under is not None:
                    later.append(under)
        yield from later


def _header_row(right: LabelValue, under: LabelValue) -> bool:
    """Whether a label stands in a header row of labels above their values (``Invoice No``,
    far right ``Invoice Date``; below them ``INV-1`` and ``2026-11-20``): the words right of
    it are across a column gap and hold no digit, the words under it do."""
    return right.distance > COLUMN_GAP_HEIGHTS \
        and not any(ch.isdigit() for ch in right.text) \
        and any(ch.isdigit() for ch in under.text)


def label_value(layout_lines: Sequence[Line], labels: Iterable[str],
                not_values: Iterable[str] = ()) -> LabelValue | None:
    """The likeliest value next to one of ``labels``: the first of :func:`label_values`."""
    return next(label_values(layout_lines, labels, not_values), None)


def find_table(layout_lines: Sequence[Line], columns: Mapping[str, Sequence[str]],
               end_labels: Sequence[str] = ()) -> Table | None:
    """A table whose header row names at least two of ``columns`` (column -> its labels).

    The header is the first line where two or more columns' labels are found; its other
    cells are columns too, whose cells are left out. Each cell (a run of close words) of a
    following line belongs to the column whose header it overlaps most, or else to the
    column whose header is nearest. A row has words in two or more
    columns, the first (leftmost) among them, and that first cell does not end with a colon
    (``Subtotal:`` is a label). A line with only first-column text continues the row above
    (a description wrapped onto a second line) unless it has a word ending with a colon or
    ends with an amount. Any other line, a line holding one of ``end_labels``, a page break
    or a vertical gap wider than MAX_ROW_GAP_HEIGHTS line heights ends the table.
    """
    ends = {_tokens(label) for label in end_labels if _tokens(label)}
    for index, line in enumerate(layout_lines):
        header: dict[str, tuple[PageWord, ...]] = {}
        taken: set[int] = set()
        for name, labels in columns.items():
            for label in sorted(labels, key=len, reverse=True):
                spots = [(s, e) for ln, s, e in find_labels([line], label)
                         if not taken & set(range(s, e))]
                if spots:
                    s, e = spots[0]
                    taken.update(range(s, e))
                    header[name] = line.words[s:e]
                    break
        if len(header) < 2:
            continue
        # the header's other cells are columns too (``Unit price`` when the caller asked for
        # none): their cells are left out, rather than given to a neighbouring column
        declared = list(header)
        for number, cell in enumerate(line.cells()):
            indexes = {line.words.index(w) for w in cell}
            if not indexes & taken:
                header[f" {number}"] = cell
        order = sorted(header, key=lambda n: header[n][0].x0)
        rows: list[dict[str, list[PageWord]]] = []
        previous = line
        for below in layout_lines[index + 1:]:
            gap = max(below.y0 - previous.y1, 0.0) * below.words[0].page_height / below.height
            if below.page != line.page or gap > MAX_ROW_GAP_HEIGHTS:
                break
            if ends and any(find_labels([below], label) or _starts_with(below, label)
                            for label in end_labels):
                break
            row: dict[str, list[PageWord]] = {}
            for cell in below.cells():
                row.setdefault(_column_of(cell, header, order), []).extend(cell)
            first = row.get(order[0])
            if len(row) >= 2 and first and not first[-1].text.endswith(":"):
                rows.append(row)
            elif rows and set(row) == {order[0]} and _continues(row[order[0]]):
                rows[-1].setdefault(order[0], []).extend(row[order[0]])
            else:
                break
            previous = below
        if rows:
            named = [n for n in order if n in declared]
            return Table(line.page, {n: header[n] for n in named},
                         tuple({n: tuple(r[n]) for n in named if n in r} for r in rows))
    return None


_AMOUNT = re.compile(r"[^\w\s]{0,3}\d[\d.,']*[^\w\s]{0,3}")


def _starts_with(line: Line, label: str) -> bool:
    """Whether ``line``'s first word starts with ``label`` as whole words: a plain-text table's
    cell is one word (``Received by - J. Park``), which no label equals."""
    return re.match(rf"\s*{re.escape(label)}(?![0-9A-Za-z])", line.words[0].text,
                    re.IGNORECASE) is not None


def _continues(words: Sequence[PageWord]) -> bool:
    """Whether a line holding only first-column text continues the row above (a wrapped
    description) rather than ending the table (``Subtotal: 300.00``): no label (a word ending
    with a colon), and it does not end with an amount."""
    tokens = " ".join(w.text for w in words).split()
    return not any(t.endswith(":") for t in tokens) and not _AMOUNT.fullmatch(tokens[-1])


def _column_of(cell: Sequence[PageWord], header: Mapping[str, Sequence[PageWord]],
               order: Sequence[str]) -> str:
    """The column a cell (a run of close words) belongs to: the one whose header it overlaps
    most, else the one whose header is nearest (a left-aligned description runs far right of
    its header, a right-aligned amount ends under its header's right edge)."""
    left, right = cell[0].x0, cell[-1].x1

    def overlap(name: str) -> float:
        return min(right, header[name][-1].x1) - max(left, header[name][0].x0)

    best = max(order, key=overlap)
    if overlap(best) > 0:
        return best
    return min(order, key=lambda name: -overlap(name))


def _box(x0: float, y0: float, x1: float, y1: float) -> BoundingBox:
    return BoundingBox(x0=x0, y0=y0, x1=x1, y1=y1)


def provenance_of(words: Sequence[PageWord]) -> Provenance:
    """Where a value was read: its page, the box around its words, each word's box, the
    layout source and the lowest OCR confidence among its words (1 for a text layer).

    The words are a value's, on one page; words of other pages than the first word's are left
    out (a value does not span pages). No words: an empty Provenance.
    """
    if not words:
        return Provenance()
    page = words[0].page
    on_page = [w for w in words if w.page == page]
    return Provenance(
        page=page,
        box=_box(min(w.x0 for w in on_page), min(w.y0 for w in on_page),
                 max(w.x1 for w in on_page), max(w.y1 for w in on_page)),
        word_boxes=[_box(w.x0, w.y0, w.x1, w.y1) for w in on_page],
        source=on_page[0].source,
        ocr_confidence=min(w.confidence for w in on_page))


def find_words(layout_lines: Sequence[Line], text: str) -> tuple[PageWord, ...]:
    """The first run of consecutive words on one line that reads ``text`` (compared without
    case, punctuation or spaces; the run may start or end inside a word: ``USD 360.00``
    found in ``TOTAL: USD 360.00``); empty when nowhere."""
    wanted = _tokens(text)
    if not wanted:
        return ()
    for line in layout_lines:
        tokens = [_tokens(w.text) for w in line.words]
        for start in range(len(tokens)):
            joined = ""
            for end in range(start, len(tokens)):
                joined += tokens[end]
                if wanted in joined:
                    while start < end and wanted in "".join(tokens[start + 1:end + 1]):
                        start += 1
                    return line.words[start:end + 1]
                if len(joined) > len(wanted) + len(tokens[start]):
                    break
    return ()


def layout_from_text(text: str, *, page_width: float = 612.0, page_height: float = 792.0,
                     chars_per_line: int = 100, lines_per_page: int = 60,
                     source: int = LayoutSource.LAYOUT_SOURCE_UNSPECIFIED) -> DocumentLayout:
    """Typeset plain text in a fixed-width font into a layout (each character one cell,
    each text line one layout line, a form feed or every ``lines_per_page`` lines a new page).

    For tests and tools that need a layout with known positions without a PDF: spaces keep
    their width, so text aligned in columns gives words aligned in columns.
    """
    char_w, line_h = 1.0 / chars_per_line, 1.0 / lines_per_page
    layout = DocumentLayout()
    page: LayoutPage | None = None
    row = 0
    for raw_line in text.split("\n"):
        if page is None or row >= lines_per_page or raw_line.startswith("\f"):
            page = layout.pages.add(number=len(layout.pages) + 1, width=page_width,
                                    height=page_height, source=source)
            row = 0
            raw_line = raw_line.lstrip("\f")
        for match in re.finditer(r"\S+", raw_line[:chars_per_line]):
            page.words.append(LayoutWord(
                text=match.group(0), confidence=1.0,
                box=_box(match.start() * char_w, row * line_h + 0.2 * line_h,
                         match.end() * char_w, row * line_h + 0.9 * line_h)))
        row += 1
    return layout


__all__ = ["COLUMN_GAP_HEIGHTS", "LabelValue", "Line", "PageWord", "Table", "find_labels",
           "find_table", "find_words", "label_value", "label_values", "layout_from_text",
           "layout_text", "lines", "page_lines", "page_words", "provenance_of", "unaccented"]
