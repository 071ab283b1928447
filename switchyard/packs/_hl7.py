"""An HL7 v2 message's fields by position, and where each stands in the message's text.

The labels extractor reads a field a pack names by position (``PID-5``, ``PID-5.2``) from
here, and the review service's masking finds the field a withheld value was read from by the
same position (a name written ``O\\S\\Neil^Siobhan^M`` is read as ``O^Neil Siobhan M``, which
no search for the value's words finds in the message). One parser for both, so what is read
and what is masked cannot drift apart.

Not a full HL7 parser (no data types, no repeated segments, no subcomponents): what a pack
needs to name a field by its position, which a library would add a dependency for without
reading it any better.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Hl7Field", "hl7_field_around", "hl7_fields", "is_hl7_position"]

#: HL7 v2's escape sequences for its delimiters, with the index of the message's own
#: character in (field, component, repetition, subcomponent)
_ESCAPES = (("F", 0), ("S", 1), ("T", 3), ("R", 2))
_SEGMENT_NAME = re.compile(r"[A-Z][A-Z0-9]{2}")
_POSITION = re.compile(r"[A-Z][A-Z0-9]{2}-\d+(?:\.\d+)?")


@dataclass(frozen=True)
class Hl7Field:
    """A field (``PID-5``) or one of its components (``PID-5.2``): the first repetition of the
    field in the first segment of its type. ``value`` has the escape sequences undone and a
    field's components joined by a space; ``start``/``end`` span it in the text as written
    (delimiters and escapes included)."""

    position: str
    value: str
    start: int
    end: int


def is_hl7_position(label: str) -> bool:
    """Whether ``label`` names an HL7 field by position (``PID-8``, ``IN1-4.1``)."""
    return _POSITION.fullmatch(label) is not None


def _field_separator(text: str) -> str | None:
    """The message's field separator (``|``), or None when ``text`` is no HL7 v2 message."""
    if not text.startswith("MSH") or len(text) < 8:
        return None
    separator = text[3]
    return None if separator.isalnum() or separator.isspace() else separator


def hl7_field_around(text: str, start: int, end: int) -> tuple[int, int]:
    """The span of the whole field (every component and repetition) that ``text[start:end]``
    lies in, where ``text`` is an HL7 v2 message; else ``(start, end)`` as given. A withheld
    value is masked with the rest of its field: a diagnosis's code beside its description
    (``J18.9^Pneumonia^I10``) tells it as well as the words do."""
    separator = _field_separator(text)
    if separator is None or any(ch in text[start:end] for ch in (separator, "\r", "\n")):
        return start, end   # not within one field
    line_start = max(text.rfind("\r", 0, start), text.rfind("\n", 0, start)) + 1
    left = text.rfind(separator, line_start, start)
    if left < 0:   # the segment's name: no field
        return start, end
    line_end = min((at for at in (text.find("\r", end), text.find("\n", end)) if at >= 0),
                   default=len(text))
    right = text.find(separator, end, line_end)
    return left + 1, line_end if right < 0 else right


def _parts(text: str, start: int, end: int, separator: str) -> list[tuple[int, int]]:
    """The spans of ``text[start:end]`` split at ``separator``."""
    spans, at = [], start
    while True:
        cut = text.find(separator, at, end)
        if cut < 0:
            spans.append((at, end))
            return spans
        spans.append((at, cut))
        at = cut + 1


def hl7_fields(text: str) -> list[Hl7Field]:
    """Every non-empty field and component of the first segment of each type, in message
    order; none when ``text`` is not an HL7 v2 message (it must start with ``MSH`` and its
    delimiters)."""
    field_sep = _field_separator(text)
    if field_sep is None:
        return []
    encoding = text[4:8]
    component, repetition, escape = encoding[0], encoding[1], encoding[2]
    delimiters = (field_sep, component, repetition, encoding[3])

    def unescaped(value: str) -> str:
        for letter, index in _ESCAPES:
            value = value.replace(f"{escape}{letter}{escape}", delimiters[index])
        return value.replace(f"{escape}E{escape}", escape)

    found: list[Hl7Field] = []
    seen: set[str] = set()
    for segment in re.finditer(r"[^\r\n]+", text):
        parts = _parts(text, segment.start(), segment.end(), field_sep)
        name = text[parts[0][0]:parts[0][1]].strip()
        if not _SEGMENT_NAME.fullmatch(name) or name in seen:
            continue
        seen.add(name)
        # MSH-1 is the field separator itself: MSH-2 is the segment's first part after it
        offset = 1 if name == "MSH" else 0
        for number, (start, end) in enumerate(parts[1:], start=1 + offset):
            first_end = _parts(text, start, end, repetition)[0][1]
            pieces = [(s, e, unescaped(text[s:e]).strip())
                      for s, e in _parts(text, start, first_end, component)]
            whole = " ".join(value for _, _, value in pieces if value)
            if whole:
                found.append(Hl7Field(f"{name}-{number}", whole, start, first_end))
            # a field of one component is its first component too ('IN1-4.1' reads an
            # insurer's name whether or not its type codes follow it)
            found.extend(Hl7Field(f"{name}-{number}.{index}", value, s, e)
                         for index, (s, e, value) in enumerate(pieces, start=1) if value)
    return found
