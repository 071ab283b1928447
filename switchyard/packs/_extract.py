"""The built-in ``labels`` extractor: a pack's fields from a document, each with a confidence.

Generic on purpose: a pack names its fields, their types and the labels they follow, and this
reads them from the shapes documents usually have:

* a JSON object: keys matching a field's labels (or name), top level or one level down
  (``member_id`` and ``memberId`` both match the label ``Member ID``); a ``table`` field's
  rows are the array of objects under its key;
* an HL7 v2 message (text that starts with an ``MSH`` segment): a label that names a field
  by its position, ``PID-5`` (the whole field, its components joined by spaces) or
  ``PID-5.2`` (one component), reads the first repetition of that field in the first
  segment of its type, escape sequences undone;
* ``Label: value``, ``Label = value``, ``Label - value``, ``Label<TAB>value`` and
  ``Label  value`` (two spaces) lines, also several on one line split by ``|``, by a ``;``
  that another pair follows (not one inside a sentence), or by a wide gap (two or more
  spaces, or a tab) before another field's label and its ``:``, ``=`` or `` - ``
  (``DOB: 03/07/1962   Sex: F``);
* a field's ``pattern`` (a regex with one capture group), tried before the labels.

A document with a layout (``switchyard.v1.DocumentLayout``: a PDF's text layer or OCR words
with boxes) is read on the layout first: a field's value is right of its label on the same
line or, when nothing follows the label there, just below it; a ``table`` field's rows are
read under its header row, column by column. Such a value keeps its
:class:`~switchyard.v1.Provenance` (page, boxes, OCR confidence), and its confidence is
multiplied by the lowest OCR confidence of its words and lowered with its distance from the
label. The text (the layout's reading-order text for a document) is searched for what the
layout did not give; a value found there is looked up among the layout's words for its
provenance.

Each value is parsed by its type (money and numbers with either decimal separator, dates in
the common orders as YYYY-MM-DD, a date with day and month in doubt in the field's
``date_order``, IBANs checked with their mod-97 digits, e-mail addresses,
enum values matched without case). A value found by a pattern or label but unreadable as its
type is an issue, not a value. ``Extraction.confidence`` is the mean confidence of the required
fields (a missing one counts 0), or of the fields found when none is required. A document type
whose layout needs code registers its own extractor (entry point group
``switchyard.extractors``, a callable ``text -> Extraction``, or ``(text, layout=...) ->
Extraction`` to get the layout too: :func:`run_extractor` passes it to extractors whose
signature accepts ``layout``) and names it in ``extractor:``.
"""

from __future__ import annotations

import datetime as dt
import functools
import inspect
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from switchyard.packs._entrypoints import GROUPS, EntryPointError, entry_point
from switchyard.packs._expressions import as_text, parse_number
from switchyard.packs._hl7 import hl7_fields
from switchyard.documents._layout import (
    LabelValue,
    Line,
    PageWord,
    find_table,
    find_words,
    label_values,
    layout_text,
    lines,
    provenance_of,
)
from switchyard.packs._model import FieldSpec, Pack
from switchyard.v1 import BoundingBox, DocumentLayout, Provenance

MAX_TEXT_CHARS = 100_000
MAX_VALUE_CHARS = 500
#: How sure a value is, by how it was found.
FOUND_BY_JSON, FOUND_BY_PATTERN, FOUND_BY_LABEL = 0.95, 0.9, 0.85
#: A value below its label instead of right of it is a little less sure.
BELOW_FACTOR = 0.95
#: Label distance (in line heights) up to which a value right of its label loses nothing,
#: and how much each further line height costs (down to DISTANCE_FLOOR).
NEAR_HEIGHTS, PER_HEIGHT, DISTANCE_FLOOR = 4.0, 0.01, 0.7


@dataclass(frozen=True)
class ExtractedField:
    """One field's value (as text, normalised by type), how sure the extractor is (0..1) and,
    for a document with a layout, where the value was read (the decision's
    ``FieldExtraction.provenance``; None for plain text)."""

    value: str
    confidence: float
    provenance: Provenance | None = None
    #: For a value read from the text (no provenance) that the text writes otherwise than
    #: ``value`` (``F`` for ``female``): (the label it followed, the value as written), so
    #: that where the field is withheld from reviewers the written value is masked too; for
    #: a value read from an HL7 message, always: (its position, the field as written).
    written: tuple[str, str] | None = None
    #: For a value read from an HL7 message: (position, field as written) of each other
    #: position the field's labels name that holds something (masked with it).
    elsewhere: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Extraction:
    """What an extractor read from a document."""

    fields: dict[str, ExtractedField] = field(default_factory=dict)
    confidence: float = 0.0
    issues: list[str] = field(default_factory=list)
    #: Fields not read because what followed their label did not parse as their type
    #: (``Injuries: not sure yet`` for a boolean), or because the label stands inside a
    #: sentence (``... accepting. Dx: fractured neck of femur.``): (the label, the value as
    #: written, to the sentence's end). Data of the field's class all the same: where the
    #: field is withheld, reviewers see it masked.
    unread: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def values(self) -> dict[str, str]:
        """Field name -> value text (what Decision.extracted_fields carries)."""
        return {name: f.value for name, f in self.fields.items()}


#: ``text -> Extraction``, or ``(text, layout=None) -> Extraction`` for one that reads layouts.
Extractor = Callable[..., Extraction]


def _norm(label: str) -> str:
    """A label's words, case-folded, in any script (``Сумма``, ``金額`` and ``Größe`` keep
    their letters: reduced to ASCII they were all empty or alike, so one matched another)."""
    return " ".join(_NOT_A_WORD.sub(" ", label.casefold()).split())


def _enum_key(spelling: str) -> str:
    """What an enum value or alias is compared by: its words, or for a spelling with none
    (``€``, ``£``, ``$``) the symbols themselves, which ``_norm`` would reduce to nothing and
    so to one another."""
    return _norm(spelling) or "".join(spelling.casefold().split())


_NOT_A_WORD = re.compile(r"[\W_]+")


@functools.lru_cache(maxsize=4096)
def _enum_spelling(written: str) -> re.Pattern[str]:
    """An enum spelling inside a longer text, not inside a word of any script: where the
    spelling starts (ends) with a letter or digit, none may come before (after) it (``EUR``
    not in ``EUROPE``); a symbol needs no boundary (``£`` in ``£640``)."""
    before = r"(?<![^\W_])" if not _NOT_A_WORD.match(written[:1]) else ""
    after = r"(?![^\W_])" if not _NOT_A_WORD.match(written[-1:]) else ""
    return re.compile(before + re.escape(written) + after, re.IGNORECASE)


#: Where a line holds several ``Label: value`` pairs: a line break, `` | ``, or a ``;`` that
#: another pair follows (``Carrier: Vhi; Member #: 77``). A ``;`` inside a sentence
#: (``Description: skidded into a wall; front end destroyed``) stays in the value.
_SEGMENT_SPLIT = re.compile(r"\n|\r| \| |;(?=[^:=;\t\n\r]{1,60}(?::|=))")
_KEY_VALUE = re.compile(r"^\s*([^:=\t]{1,60}?)\s*(?::|=|\t|\s+-\s+|\s{2,})\s*(\S.*?)\s*$")
_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august",
           "september", "october", "november", "december")
_PERCENTAGE = re.compile(r"\(?[0-9]+(?:[.,][0-9]+)?\s?%\)?")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_IBAN = re.compile(r"\b([A-Z]{2}[0-9]{2}(?:[ ]?[A-Z0-9]{1,4}){3,8})\b")


def _month(name: str) -> int | None:
    name = name.lower().rstrip(".")
    if len(name) < 3:
        return None
    return next((i for i, m in enumerate(_MONTHS, start=1) if m.startswith(name)), None)


#: The confidence factor of a numeric date whose day and month cannot be told apart when the
#: field declares no ``date_order``: read day first, as a guess.
GUESSED_ORDER = 0.6


def parse_date(text: str, order: str = "") -> tuple[str, float] | None:
    """A date in a common notation -> (YYYY-MM-DD, confidence).

    ``order`` says how ``DD/MM/YYYY`` or ``MM/DD/YYYY`` is read when both numbers are 12 or
    less (``03/07/1962``): ``day_first`` (3 July) or ``month_first`` (March 7), as the pack
    declared for the field, so at full confidence; empty (not declared): day first, as most of
    the world writes it, with the confidence lowered to GUESSED_ORDER. A number above 12 tells
    the order whatever ``order`` says; dates with dots (``03.07.1962``) are day first, the
    order of the countries that write them; ISO dates and month names are never in doubt."""
    text = text.strip()
    candidates: list[tuple[int, int, int, float]] = []
    if m := re.search(r"\b(\d{4})-(\d{1,2})-(\d{1,2})\b", text):
        candidates.append((int(m[1]), int(m[2]), int(m[3]), 1.0))
    elif m := re.search(r"\b(\d{1,2})\.(\d{1,2})\.(\d{4})\b", text):
        candidates.append((int(m[3]), int(m[2]), int(m[1]), 1.0))
    elif m := re.search(r"\b(\d{1,2})/(\d{1,2})/(\d{4})\b", text):
        a, b, year = int(m[1]), int(m[2]), int(m[3])
        if a > 12:
            candidates.append((year, b, a, 1.0))
        elif b > 12:
            candidates.append((year, a, b, 1.0))
        elif order == "month_first":
            candidates.append((year, a, b, 1.0))
        else:  # day first: declared, or a guess
            candidates.append((year, b, a, 1.0 if order == "day_first" else GUESSED_ORDER))
    elif m := re.search(r"\b([A-Za-z]{3,9})\.? (\d{1,2}),? ?(\d{4})\b", text):
        month = _month(m[1])
        if month:
            candidates.append((int(m[3]), month, int(m[2]), 1.0))
    # OCR drops spaces: "5Jun2026"
    if not candidates and (m := re.search(r"\b(\d{1,2}) ?([A-Za-z]{3,9})\.?,? ?(\d{4})\b",
                                          text)):
        month = _month(m[2])
        if month:
            candidates.append((int(m[3]), month, int(m[1]), 1.0))
    # compact, and as HL7 v2 and ISO 8601's basic form write a time: 19620307, 196203071230
    if not candidates and (m := re.search(r"\b((?:19|20)\d{2})(\d{2})(\d{2})(?:\d{2,6})?"
                                          r"(?:\.\d+)?(?:[+-]\d{4})?\b", text)):
        candidates.append((int(m[1]), int(m[2]), int(m[3]), 0.9))
    for year, month, day, confidence in candidates:
        try:
            return dt.date(year, month, day).isoformat(), confidence
        except ValueError:
            return None
    return None


def iban_valid(iban: str) -> bool:
    """The ISO 13616 mod-97 check of a compact IBAN."""
    if not re.fullmatch(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{10,30}", iban):
        return False
    moved = iban[4:] + iban[:4]
    digits = "".join(str(int(ch, 36)) for ch in moved)
    return int(digits) % 97 == 1


def parse_value(spec: FieldSpec, raw: str) -> tuple[str, float] | str:
    """(normalised value, confidence factor) or an issue text."""
    text = raw.strip()[:MAX_VALUE_CHARS]
    kind = spec.type
    if not text:
        return "empty"
    if kind == "money" and _PERCENTAGE.fullmatch(text):
        return f"a percentage, not an amount: {text[:40]!r}"
    if kind in ("money", "number"):
        number = parse_number(text)
        if number is None:
            return f"no number in {text[:40]!r}"
        return (f"{number:.2f}" if kind == "money" else as_text(number)), 1.0
    if kind == "integer":
        number = parse_number(text)
        if number is None or not float(number).is_integer():
            return f"no whole number in {text[:40]!r}"
        return str(int(number)), 1.0
    if kind == "date":
        parsed = parse_date(text, spec.date_order)
        return parsed if parsed else f"no date in {text[:40]!r}"
    if kind == "iban":
        match = _IBAN.search(text.upper())
        if not match:
            return f"no IBAN in {text[:40]!r}"
        iban = match.group(1).replace(" ", "")
        return (iban, 1.0) if iban_valid(iban) else (iban, 0.3)
    if kind == "email":
        match = _EMAIL.search(text)
        return (match.group(0), 1.0) if match else f"no e-mail address in {text[:40]!r}"
    if kind == "enum":
        wanted = _enum_key(text)
        # the values themselves, then their aliases (F for female): each as the whole text,
        # then inside a longer text ("EUR (euro)", "Emergency via ED", "£ 640"), not inside
        # a word of any script
        spellings = [(value, value) for value in spec.values] + list(spec.aliases)
        for written, value in spellings:
            if _enum_key(written) == wanted:
                return value, 1.0
        for written, value in spellings:
            if _enum_spelling(written).search(text):
                return value, 0.8
        return f"{text[:40]!r} is not one of {', '.join(spec.values)}"
    if kind == "boolean":
        lowered = text.strip().casefold()
        if lowered in BOOLEAN_TRUE:
            return "true", 1.0
        if lowered in BOOLEAN_FALSE:
            return "false", 1.0
        return f"{text[:40]!r} is not yes or no"
    return text, 1.0


#: What a boolean field reads as yes and as no (case aside), in the languages of the shipped
#: packs' documents besides English; anything else is an issue, not a guess (docs/packs.md).
BOOLEAN_TRUE = frozenset({"true", "yes", "y", "1", "on", "x", "checked", "ja", "oui", "si",
                          "sí", "sì", "sim", "tak"})
BOOLEAN_FALSE = frozenset({"false", "no", "n", "0", "off", "unchecked", "nein", "non", "nee",
                           "nej", "não", "nao", "nie"})


def _json_object(text: str) -> dict[str, Any] | None:
    """The document as a JSON object, or None when it is none (parsed once per document:
    its pairs and its tables are read from it)."""
    stripped = text.strip()
    if not stripped.startswith("{"):
        return None
    try:
        value = json.loads(stripped)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _json_pairs(value: dict[str, Any] | None) -> list[tuple[str, str]]:
    if value is None:
        return []
    pairs: list[tuple[str, str]] = []
    for key, item in value.items():
        if isinstance(item, dict):
            pairs.extend((_words(str(k)), _scalar(v)) for k, v in item.items()
                         if not isinstance(v, (dict, list)))
        elif not isinstance(item, list):
            pairs.append((_words(str(key)), _scalar(item)))
    return pairs


_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def _words(key: str) -> str:
    """A JSON key's words: camelCase split (``memberId`` is the label ``Member ID``)."""
    return _CAMEL.sub(" ", key)


def _scalar(value: Any) -> str:
    return as_text(value) if not isinstance(value, str) else value


#: A wide gap inside a line (two or more spaces, or tabs), after which another label may start.
_WIDE_GAP = re.compile(r"[ \t]*\t[ \t]*| {2,}")
#: What may follow a wide gap to start another ``Label: value`` (label, then ``:``, ``=`` or
#: `` - ``): the label is then checked against the pack's.
_NEXT_LABEL = re.compile(r"([^:=\t]{1,60}?)\s*(?::|=|\s-\s)")


def _split_at_labels(segment: str, labels: frozenset[str]) -> list[str]:
    """``segment`` cut where, after a wide gap (two or more spaces, or a tab), one of
    ``labels`` (normalised) starts, followed by ``:``, ``=`` or `` - ``: ``DOB: 03/07/1962
    Sex: F   MR #: SB-0071234`` is three pairs, not a date of birth running to the line's end.
    A wide gap with no such label after it stays in the value, and a label followed only by
    spaces (``Label  value``) does not cut: that is the first pair's own separator."""
    if not labels:
        return [segment]
    cuts = [0]
    for gap in _WIDE_GAP.finditer(segment):
        if gap.start() == 0:
            continue
        key = _NEXT_LABEL.match(segment, gap.end())
        if key and _norm(key.group(1)) in labels:
            cuts.append(gap.end())
    cuts.append(len(segment))
    return [segment[a:b] for a, b in zip(cuts, cuts[1:])]


def _line_pairs(text: str, labels: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
    pairs = []
    for segment in _SEGMENT_SPLIT.split(text):
        for part in _split_at_labels(segment, labels):
            match = _KEY_VALUE.match(part)
            if match:
                pairs.append((match.group(1), match.group(2)))
    return pairs


#: What may stand between a label and its value (stripped off a label found by a pattern).
_LABEL_END = " \t:=-\"'"


def _written(label: str, raw: str, value: str, hl7_written: Mapping[str, str]
             ) -> tuple[str, str] | None:
    """(label, value as written) when the text writes the value otherwise than ``value``
    reads (spacing and case aside) and a label stands before it; else None (the value itself
    is what masking looks for). A value read from an HL7 message by position always has it:
    (``PID-5``, the field as the message writes it), as masking finds it by its position."""
    if label in hl7_written:
        return label, hl7_written[label][:MAX_VALUE_CHARS]
    written = " ".join(raw.split())
    if not label.strip() or not written or written.casefold() == value.casefold():
        return None
    return " ".join(label.split())[:MAX_VALUE_CHARS], written[:MAX_VALUE_CHARS]


@functools.lru_cache(maxsize=4096)
def _in_prose(label: str) -> re.Pattern[str]:
    """``label``, a colon and what follows to the end of its sentence (at most 200
    characters, over line breaks but not a blank line), anywhere in a text."""
    words = r"\s+".join(map(re.escape, label.split()))
    return re.compile(rf"(?<![\w])({words})[ \t]*:[ \t]*(\S.{{0,200}}?)"
                      r"(?=[.!?](?:\s|$)|\n[ \t]*\n|$)", re.IGNORECASE | re.DOTALL)


def _labels(spec: FieldSpec) -> list[str]:
    return [_norm(label) for label in (spec.labels or (spec.name,))] + [_norm(spec.name)]


def placement_factor(found: LabelValue) -> float:
    """How sure a value is by where it was next to its label: right of it and near (within
    NEAR_HEIGHTS line heights) 1; farther away a little less for every line height; below the
    label BELOW_FACTOR."""
    factor = max(DISTANCE_FLOOR, 1.0 - PER_HEIGHT * max(0.0, found.distance - NEAR_HEIGHTS))
    return factor * (BELOW_FACTOR if found.placement == "below" else 1.0)


def _provenance(words: Sequence[PageWord]) -> Provenance | None:
    return provenance_of(words) if words else None


def _ocr_factor(provenance: Provenance | None) -> float:
    return provenance.ocr_confidence if provenance is not None else 1.0


_JSON_TYPES = {"money": float, "number": float, "integer": int}


def _cell(spec: FieldSpec, raw: str) -> tuple[Any, bool]:
    """A table cell as its JSON value (numbers for money/number/integer, true/false for a
    boolean, text otherwise) and whether it was readable (unreadable: null)."""
    parsed = parse_value(spec, raw)
    if isinstance(parsed, str):
        return None, False
    value = parsed[0]
    if spec.type in _JSON_TYPES:
        return _JSON_TYPES[spec.type](float(value)), True
    if spec.type == "boolean":
        return value == "true", True
    return value, True


_TEXT_CELLS = re.compile(r"\s*\|\s*|\t+|\s{2,}")


def _text_table_layout(text: str) -> DocumentLayout:
    """Plain text whose table cells are separated by ``|``, tabs or wide spaces, as a layout
    with one word per cell and the n-th cell of every line in the n-th of evenly spaced
    columns: the header's cells stand over the rows' cells as on a page, so plain-text tables
    are read by the same code as laid-out ones."""
    layout = DocumentLayout()
    page = layout.pages.add(number=1, width=1000.0, height=1000.0)
    row = 0
    for line in text.splitlines()[:2000]:
        cells = [c.strip() for c in _TEXT_CELLS.split(line.strip().strip("|")) if c.strip()]
        # a blank line is a wide vertical gap, which ends a table: what follows it ('Received
        # by - J. Park', 'Thank you for your business') is no wrapped line of the last row
        row += 1 if cells else 4
        for n, cell in enumerate(cells[:40]):
            page.words.add(text=cell, confidence=1.0,
                           box=BoundingBox(x0=n * 0.025, x1=n * 0.025 + 0.02,
                                           y0=row * 0.0005, y1=row * 0.0005 + 0.0004))
    return layout


def _table(spec: FieldSpec, layout_lines: list[Line], with_provenance: bool
           ) -> ExtractedField | str | None:
    """A table field from lines: its rows as JSON (a list of column -> value), or an issue
    text when rows were found but none had a readable cell, or None when no header."""
    columns = {c.name: (c.labels or (c.name,)) for c in spec.columns}
    table = find_table(layout_lines, columns, spec.end)
    if table is None:
        return None
    rows, readable = [], 0
    for row in table.rows:
        out: dict[str, Any] = {}
        for column in spec.columns:
            cell = row.get(column.name)
            value, ok = _cell(column, " ".join(w.text for w in cell)) if cell else (None, False)
            out[column.name] = value
            readable += ok
        rows.append(out)
    if not readable:
        return f"{spec.name}: no readable cell in {len(rows)} rows"
    provenance = _provenance(table.words()) if with_provenance else None
    confidence = FOUND_BY_LABEL * readable / (len(rows) * len(spec.columns))
    return ExtractedField(value=json.dumps(rows, separators=(",", ":"), ensure_ascii=False),
                          confidence=round(confidence * _ocr_factor(provenance), 3),
                          provenance=provenance)


def _json_table(spec: FieldSpec, document: dict[str, Any] | None
                ) -> ExtractedField | str | None:
    """A table field from a JSON object's array of objects (top level or one level down) under
    a key matching the field's labels or name: each object a row, each of its keys (as words:
    ``unitPrice`` is ``Unit Price``) read into the column whose labels it matches. None when
    the document is no such JSON."""
    if document is None:
        return None
    wanted = set(_labels(spec))
    found = None
    for scope in (document, *(v for v in document.values() if isinstance(v, dict))):
        found = next((v for k, v in scope.items() if _norm(_words(str(k))) in wanted
                      and isinstance(v, list)), None)
        if found is not None:
            break
    if found is None:
        return None
    column_of = {label: column for column in spec.columns for label in _labels(column)}
    rows, readable, cells = [], 0, 0
    for item in found[:500]:
        if not isinstance(item, dict):
            continue
        row: dict[str, Any] = {column.name: None for column in spec.columns}
        for key, raw in item.items():
            column = column_of.get(_norm(_words(str(key))))
            if column is None or isinstance(raw, (dict, list)) or raw is None:
                continue
            value, ok = _cell(column, _scalar(raw))
            row[column.name] = value
            readable += ok
        rows.append(row)
        cells += len(spec.columns)
    if not rows:
        return None
    if not readable:
        return f"{spec.name}: no readable cell in {len(rows)} rows"
    return ExtractedField(value=json.dumps(rows, separators=(",", ":"), ensure_ascii=False),
                          confidence=round(FOUND_BY_JSON * readable / cells, 3))


def extract_fields(pack: Pack, text: str, layout: DocumentLayout | None = None) -> Extraction:
    """Read ``pack``'s fields from a document with the built-in labels extractor: from its
    ``layout`` when it has one (values with their provenance), else, and for what the layout
    does not give, from ``text`` (for a document with a layout and no text: the layout's
    reading-order text)."""
    has_layout = layout is not None and any(page.words for page in layout.pages)
    layout_lines = lines(layout) if has_layout and layout is not None else []
    if has_layout and layout is not None and not text:
        text = layout_text(layout)
    text = text[:MAX_TEXT_CHARS]
    json_object = _json_object(text)
    # a structured record: its keys, or an HL7 message's fields by position (with each
    # field as the message writes it, for masking where the field is withheld)
    hl7 = [] if json_object is not None else hl7_fields(text)
    hl7_written = {f.position: text[f.start:f.end] for f in hl7}
    json_pairs = _json_pairs(json_object) or [(f.position, f.value) for f in hl7]
    declared = frozenset(label for spec in pack.fields.values() if spec.type != "table"
                         for label in _labels(spec))
    line_pairs = [] if json_pairs else _line_pairs(text, declared)
    text_table_lines: list[Line] | None = None
    found: dict[str, ExtractedField] = {}
    issues: list[str] = []
    unread: dict[str, tuple[str, str]] = {}
    for name, spec in pack.fields.items():
        problem = ""
        if spec.type == "table":
            table = _json_table(spec, json_object)
            if table is None and layout_lines:
                table = _table(spec, layout_lines, True)
            if table is None:
                if text_table_lines is None:
                    text_table_lines = lines(_text_table_layout(text))
                table = _table(spec, text_table_lines, False)
            if isinstance(table, ExtractedField):
                found[name] = table
            elif isinstance(table, str):
                problem = table
        else:
            # (raw value, how sure by how found, the value's words in the layout: None to
            # look them up, the label as the text writes it before the value: '' for none)
            candidates: list[tuple[str, float, Sequence[PageWord] | None, str]] = []
            if spec.pattern:
                try:
                    match = re.search(spec.pattern, text)
                except re.error:  # checked at load time; defensive for hand-built packs
                    match = None
                if match and match.group(1):
                    before = text[match.start():match.start(1)]
                    candidates.append((match.group(1), FOUND_BY_PATTERN,
                                       find_words(layout_lines, match.group(1)),
                                       before.strip(_LABEL_END)))
            labels = _labels(spec)
            if layout_lines:
                others = [label for other in pack.fields.values() if other is not spec
                          for label in (other.labels or (other.name,))]
                candidates.extend(
                    (beside.text, FOUND_BY_LABEL * placement_factor(beside), beside.value, "")
                    for beside in label_values(layout_lines, spec.labels or (spec.name,),
                                               others))
            # every labelled value in document order, the first that parses taken: a value
            # of another kind under one label ('Estimate: 640' for a currency also labelled
            # Estimate) does not hide a later one that parses ('Currency: GBP')
            # (their words in the layout are looked up for the one taken only)
            candidates.extend((value, FOUND_BY_JSON, None, key)
                              for key, value in json_pairs if _norm(key) in labels)
            candidates.extend((value, FOUND_BY_LABEL, None, key)
                              for key, value in line_pairs if _norm(key) in labels)
            for raw, how, words, label in candidates:
                parsed = parse_value(spec, raw)
                if isinstance(parsed, str):
                    problem = problem or f"{name}: {parsed}"
                    if name not in unread and (written := _written(label, raw, "",
                                                                    hl7_written)):
                        unread[name] = written
                    continue
                value, factor = parsed
                provenance = _provenance(find_words(layout_lines, raw) if words is None
                                         else words)
                found[name] = ExtractedField(
                    value=value, confidence=round(how * factor * _ocr_factor(provenance), 3),
                    provenance=provenance,
                    written=_written(label, raw, value, hl7_written) if provenance is None
                    else None,
                    elsewhere=tuple((key, hl7_written[key][:MAX_VALUE_CHARS])
                                    for key, _ in json_pairs if key != label
                                    and key in hl7_written and _norm(key) in labels))
                break
        if name not in found:
            if problem:
                issues.append(problem)
            elif spec.required:
                issues.append(f"{name}: not found")
    if not json_pairs:
        # prose: a label inside a sentence (``... Dr Sato accepting. Dx: fractured neck of
        # femur.``) is not read, but what follows it to the sentence's end is the field's
        # data all the same, masked where the field is withheld
        for name, spec in pack.fields.items():
            if name in found or name in unread or spec.type == "table":
                continue
            for label in spec.labels or (spec.name,):
                if (match := _in_prose(label).search(text)) is not None:
                    unread[name] = (" ".join(match.group(1).split()),
                                    " ".join(match.group(2).split())[:MAX_VALUE_CHARS])
                    break
    required = [n for n, s in pack.fields.items() if s.required]
    if required:
        confidence = sum(found[n].confidence if n in found else 0.0 for n in required) \
            / len(required)
    elif found:
        confidence = sum(f.confidence for f in found.values()) / len(found)
    else:
        confidence = 0.0 if pack.fields else 1.0
    return Extraction(fields=found, confidence=round(confidence, 3), issues=issues,
                      unread={n: w for n, w in unread.items() if n not in found})


@functools.lru_cache(maxsize=256)
def accepts_layout(extractor: Callable[..., Any]) -> bool:
    """Whether ``extractor`` takes the document's layout: a parameter named ``layout`` (or
    ``**kwargs``) in its signature. Extractors written for text alone (``text ->
    Extraction``) keep being called with the text only."""
    try:
        parameters = inspect.signature(extractor).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: text only
        return False
    return any(p.name == "layout" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
               or p.kind is p.VAR_KEYWORD for p in parameters)


def run_extractor(extractor: Callable[..., Any], text: str,
                  layout: DocumentLayout | None = None) -> Any:
    """Call a pack's extractor on a document: with ``layout=`` when the document has a layout
    and the extractor accepts one (:func:`accepts_layout`), else with the text alone."""
    if layout is not None and accepts_layout(extractor):
        return extractor(text, layout=layout)
    return extractor(text)


def extractor_for(pack: Pack) -> Extractor:
    """The extractor ``pack`` names: the built-in labels extractor (``(text, layout=None) ->
    Extraction``), or the callable registered under its name in entry point group
    switchyard.extractors (call it through :func:`run_extractor`). Raises EntryPointError
    when that is missing or fails to import."""
    if pack.extractor == "labels":
        return functools.partial(extract_fields, pack)
    loaded = entry_point(GROUPS["extractors"], pack.extractor)
    if not callable(loaded):
        raise EntryPointError(f"entry point {pack.extractor!r} in group "
                              f"{GROUPS['extractors']} is not callable")
    return loaded  # type: ignore[no-any-return]


__all__ = ["ExtractedField", "Extraction", "Extractor", "accepts_layout", "extract_fields",
           "extractor_for", "iban_valid", "parse_date", "parse_value", "placement_factor",
           "run_extractor"]
