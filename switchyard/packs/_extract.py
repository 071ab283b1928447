"""The built-in ``labels`` extractor: a pack's fields from a document, each with a confidence.

Generic on purpose: a pack names its fields, their types and the labels they follow, and this
reads them from the shapes documents usually have:

* a JSON object: keys matching a field's labels (or name), top level or one level down;
* ``Label: value``, ``Label = value``, ``Label - value``, ``Label<TAB>value`` and
  ``Label  value`` (two spaces) lines, also several on one line split by ``|`` or ``;``;
* a field's ``pattern`` (a regex with one capture group), tried before the labels.

Each value is parsed by its type (money and numbers with either decimal separator, dates in
the common orders as YYYY-MM-DD, IBANs checked with their mod-97 digits, e-mail addresses,
enum values matched without case). A value found by a pattern or label but unreadable as its
type is an issue, not a value. ``Extraction.confidence`` is the mean confidence of the required
fields (a missing one counts 0), or of the fields found when none is required. A document type
whose layout needs code registers its own extractor (entry point group
``switchyard.extractors``, a callable ``text -> Extraction``) and names it in ``extractor:``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from switchyard.packs._entrypoints import GROUPS, EntryPointError, entry_point
from switchyard.packs._expressions import as_text, parse_number
from switchyard.packs._model import FieldSpec, Pack

MAX_TEXT_CHARS = 100_000
MAX_VALUE_CHARS = 500
#: How sure a value is, by how it was found.
FOUND_BY_JSON, FOUND_BY_PATTERN, FOUND_BY_LABEL = 0.95, 0.9, 0.85


@dataclass(frozen=True)
class ExtractedField:
    """One field's value (as text, normalised by type) and how sure the extractor is (0..1)."""

    value: str
    confidence: float


@dataclass(frozen=True)
class Extraction:
    """What an extractor read from a document."""

    fields: dict[str, ExtractedField] = field(default_factory=dict)
    confidence: float = 0.0
    issues: list[str] = field(default_factory=list)

    @property
    def values(self) -> dict[str, str]:
        """Field name -> value text (what Decision.extracted_fields carries)."""
        return {name: f.value for name, f in self.fields.items()}


Extractor = Callable[[str], Extraction]


def _norm(label: str) -> str:
    return " ".join(re.sub(r"[^0-9a-z]+", " ", label.lower()).split())


_SEGMENT_SPLIT = re.compile(r"\n|\r| \| |;")
_KEY_VALUE = re.compile(r"^\s*([^:=\t]{1,60}?)\s*(?::|=|\t|\s+-\s+|\s{2,})\s*(\S.*?)\s*$")
_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august",
           "september", "october", "november", "december")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_IBAN = re.compile(r"\b([A-Z]{2}[0-9]{2}(?:[ ]?[A-Z0-9]{1,4}){3,8})\b")


def _month(name: str) -> int | None:
    name = name.lower().rstrip(".")
    if len(name) < 3:
        return None
    return next((i for i, m in enumerate(_MONTHS, start=1) if m.startswith(name)), None)


def parse_date(text: str) -> tuple[str, float] | None:
    """A date in a common notation -> (YYYY-MM-DD, confidence); day/month order that cannot be
    told apart lowers the confidence."""
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
        else:
            candidates.append((year, b, a, 0.6))  # ambiguous: day first, as most of the world
    elif m := re.search(r"\b([A-Za-z]{3,9})\.? (\d{1,2}),? (\d{4})\b", text):
        month = _month(m[1])
        if month:
            candidates.append((int(m[3]), month, int(m[2]), 1.0))
    if not candidates and (m := re.search(r"\b(\d{1,2}) ([A-Za-z]{3,9})\.?,? (\d{4})\b", text)):
        month = _month(m[2])
        if month:
            candidates.append((int(m[3]), month, int(m[1]), 1.0))
    if not candidates and (m := re.search(r"\b((?:19|20)\d{2})(\d{2})(\d{2})\b", text)):
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
        parsed = parse_date(text)
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
        wanted = _norm(text)
        for value in spec.values:
            if _norm(value) == wanted:
                return value, 1.0
        for value in spec.values:  # the value inside a longer text: "EUR (euro)"
            if re.search(rf"(?<![0-9A-Za-z]){re.escape(value)}(?![0-9A-Za-z])", text,
                         re.IGNORECASE):
                return value, 0.8
        return f"{text[:40]!r} is not one of {', '.join(spec.values)}"
    if kind == "boolean":
        lowered = text.lower()
        if lowered in ("true", "yes", "y", "1", "on", "x", "checked"):
            return "true", 1.0
        if lowered in ("false", "no", "n", "0", "off", "unchecked"):
            return "false", 1.0
        return f"{text[:40]!r} is not yes or no"
    return text, 1.0


def _json_pairs(text: str) -> list[tuple[str, str]]:
    stripped = text.strip()
    if not stripped.startswith("{"):
        return []
    try:
        value = json.loads(stripped)
    except (ValueError, RecursionError):
        return []
    if not isinstance(value, dict):
        return []
    pairs: list[tuple[str, str]] = []
    for key, item in value.items():
        if isinstance(item, dict):
            pairs.extend((str(k), _scalar(v)) for k, v in item.items()
                         if not isinstance(v, (dict, list)))
        elif not isinstance(item, list):
            pairs.append((str(key), _scalar(item)))
    return pairs


def _scalar(value: Any) -> str:
    return as_text(value) if not isinstance(value, str) else value


def _line_pairs(text: str) -> list[tuple[str, str]]:
    pairs = []
    for segment in _SEGMENT_SPLIT.split(text):
        match = _KEY_VALUE.match(segment)
        if match:
            pairs.append((match.group(1), match.group(2)))
    return pairs


def _labels(spec: FieldSpec) -> list[str]:
    return [_norm(label) for label in (spec.labels or (spec.name,))] + [_norm(spec.name)]


def extract_fields(pack: Pack, text: str) -> Extraction:
    """Read ``pack``'s fields from ``text`` with the built-in labels extractor."""
    text = text[:MAX_TEXT_CHARS]
    json_pairs = _json_pairs(text)
    line_pairs = [] if json_pairs else _line_pairs(text)
    found: dict[str, ExtractedField] = {}
    issues: list[str] = []
    for name, spec in pack.fields.items():
        candidates: list[tuple[str, float]] = []
        if spec.pattern:
            try:
                match = re.search(spec.pattern, text)
            except re.error:  # checked at load time; defensive for hand-built packs
                match = None
            if match and match.group(1):
                candidates.append((match.group(1), FOUND_BY_PATTERN))
        labels = _labels(spec)
        for key, value in json_pairs:
            if _norm(key) in labels:
                candidates.append((value, FOUND_BY_JSON))
                break
        for key, value in line_pairs:
            if _norm(key) in labels:
                candidates.append((value, FOUND_BY_LABEL))
                break
        problem = ""
        for raw, how in candidates:
            parsed = parse_value(spec, raw)
            if isinstance(parsed, str):
                problem = problem or f"{name}: {parsed}"
                continue
            value, factor = parsed
            found[name] = ExtractedField(value=value, confidence=round(how * factor, 3))
            break
        if name not in found:
            if problem:
                issues.append(problem)
            elif spec.required:
                issues.append(f"{name}: not found")
    required = [n for n, s in pack.fields.items() if s.required]
    if required:
        confidence = sum(found[n].confidence if n in found else 0.0 for n in required) \
            / len(required)
    elif found:
        confidence = sum(f.confidence for f in found.values()) / len(found)
    else:
        confidence = 0.0 if pack.fields else 1.0
    return Extraction(fields=found, confidence=round(confidence, 3), issues=issues)


def extractor_for(pack: Pack) -> Extractor:
    """The extractor ``pack`` names: the built-in labels extractor, or the callable
    (``text -> Extraction``) registered under its name in entry point group
    switchyard.extractors. Raises EntryPointError when that is missing or fails to import."""
    if pack.extractor == "labels":
        return lambda text: extract_fields(pack, text)
    loaded = entry_point(GROUPS["extractors"], pack.extractor)
    if not callable(loaded):
        raise EntryPointError(f"entry point {pack.extractor!r} in group "
                              f"{GROUPS['extractors']} is not callable")
    return loaded  # type: ignore[no-any-return]


__all__ = ["ExtractedField", "Extraction", "Extractor", "extract_fields", "extractor_for",
           "iban_valid", "parse_date", "parse_value"]
