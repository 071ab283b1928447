"""PII minimisation: find personal data in text and redact it.

Detectors are deliberately precise (card numbers must pass the Luhn check, IBANs the mod-97
check) so redaction does not shred invoice numbers and amounts that reviewers and models need.
A finding is replaced by a label of its kind (``[EMAIL REDACTED]``); nothing of the value is
kept, so redacted text cannot be joined on it either. (Matching values without keeping them
is the job of the keyed hashes in ``switchyard/_dataclass.py``, not of this module.)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")
#: An IPv4 address (each part at most 255): personal data when it is a person's, and no
#: phone number whatever its dots look like.
_IPV4_PART = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"(?<![\w.]){_IPV4_PART}(?:\.{_IPV4_PART}){{3}}(?![\w]|\.\d)")
#: Phone numbers: international (``+44 7700 900123``, ``+44 (0)20 7946 0958``,
#: ``+447700900123``), grouped digits (``415 555 0199``, ``(415) 555-0199``,
#: ``01 02 03 54 87``, ``(01947) 600 318``) and national after a trunk 0 (``07700 900123``;
#: a mobile's ``07700900123``, ``0612345678`` written without spaces too); 9 to 15 digits
#: (the detector's check). Not what is glued to a word, a slash or a decimal part, and not a
#: dotted IPv4 address.
_PHONE = re.compile(
    r"(?<![\w/.,+-])(?!\d{1,3}(?:\.\d{1,3}){3}(?![\d.]))(?:"
    r"\+\d{1,3}(?:[ .-]?\(\d{1,4}\))?(?:[ .-]?\d{2,6}){1,5}"
    r"|(?:\(\d{1,5}\)[ .-]?)?\d{2,4}(?:[ .-]\d{2,4}){1,4}"
    r"|0[1-9]\d{1,3}[ -]\d{3,6}(?:[ -]\d{3,4})?"
    r"|0[67]\d{8,9}"
    r")(?![\w/-]|[.,:]\d)")
#: National identity numbers: a US social security number; a UK National Insurance number
#: (``AB 12 34 56 C``); a Spanish DNI or NIE (``12345678Z``, ``X1234567L``) and an Italian
#: codice fiscale (``RSSMRA85T10A562S``), both with their check letter verified
#: (:func:`_national_id_check`).
_SSN = re.compile(
    r"\b(?:(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}"
    r"|(?!BG|GB|KN|NK|NT|TN|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]"
    r"|[XYZ]?\d{7,8}-?[A-Z]"
    r"|[A-Z]{6}[\dLMNPQRSTUV]{2}[A-EHLMPR-T][\dLMNPQRSTUV]{2}[A-Z][\dLMNPQRSTUV]{3}[A-Z])\b")
_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"
#: The codice fiscale's check character: the value of each character in an odd position
#: (1st, 3rd, ...; digits as the letter of the same rank), in an even one its rank
_CF_ODD = [1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22,
           25, 24, 23]


def _national_id_check(match: str) -> bool:
    """A DNI/NIE's or codice fiscale's check letter (the other formats carry none)."""
    compact = match.replace(" ", "").replace("-", "")
    if re.fullmatch(r"[XYZ]?\d{7,8}[A-Z]", compact):
        digits = compact[:-1]   # eight: a DNI's digits, or an NIE's letter and seven
        if len(digits) != 8:
            return False
        if digits[0] in "XYZ":   # an NIE's letter counts as 0, 1 or 2
            digits = str("XYZ".index(digits[0])) + digits[1:]
        return _DNI_LETTERS[int(digits) % 23] == compact[-1]
    if len(compact) == 16 and compact[:6].isalpha():
        def rank(char: str) -> int:
            return int(char) if char.isdigit() else ord(char) - ord("A")
        total = sum(_CF_ODD[rank(c)] if i % 2 == 0 else rank(c)
                    for i, c in enumerate(compact[:15]))
        return chr(ord("A") + total % 26) == compact[15]
    return True
_CARD = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")
_IBAN = re.compile(r"(?:\b|(?<=IBAN))[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,4})?\b")


def luhn_ok(digits: str) -> bool:
    total, parity = 0, len(digits) % 2
    for index, char in enumerate(digits):
        d = int(char)
        if index % 2 == parity:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban_ok(candidate: str) -> bool:
    compact = candidate.replace(" ", "")
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    number = "".join(str(int(c, 36)) for c in rearranged)
    return int(number) % 97 == 1


@dataclass(frozen=True)
class Detector:
    kind: str
    pattern: re.Pattern[str]
    check: Callable[[str], bool] = lambda _: True


def _card_check(match: str) -> bool:
    digits = re.sub(r"\D", "", match)
    return 13 <= len(digits) <= 19 and luhn_ok(digits)


DETECTORS: dict[str, Detector] = {
    "email": Detector("email", _EMAIL),
    "card": Detector("card", _CARD, _card_check),
    "iban": Detector("iban", _IBAN, iban_ok),
    "national_id": Detector("national_id", _SSN, _national_id_check),
    "phone": Detector("phone", _PHONE, lambda m: 9 <= sum(c.isdigit() for c in m) <= 15),
    "ip_address": Detector("ip_address", _IPV4),
}


@dataclass(frozen=True)
class Finding:
    kind: str
    start: int
    end: int


class Redactor:
    """Applies the configured detectors, replacing each finding by its kind's label."""

    def __init__(self, kinds: Iterable[str] = tuple(DETECTORS),
                 name_fields: Iterable[str] = ()) -> None:
        unknown = set(kinds) - set(DETECTORS)
        if unknown:
            raise ValueError(f"unknown PII detectors {sorted(unknown)}; "
                             f"choose from {sorted(DETECTORS)}")
        self.detectors = [DETECTORS[k] for k in DETECTORS if k in set(kinds)]
        self.name_fields = {f.lower() for f in name_fields}

    def find(self, text: str) -> list[Finding]:
        """Non-overlapping findings, earlier detectors winning (cards before phones)."""
        taken: list[Finding] = []
        for detector in self.detectors:
            for match in detector.pattern.finditer(text):
                if not detector.check(match.group()):
                    continue
                if any(f.start < match.end() and match.start() < f.end for f in taken):
                    continue
                taken.append(Finding(detector.kind, match.start(), match.end()))
        return sorted(taken, key=lambda f: f.start)

    @staticmethod
    def replacement(kind: str) -> str:
        """What a finding of ``kind`` becomes: its label, nothing of the value."""
        return f"[{kind.upper()} REDACTED]"

    def text(self, text: str) -> str:
        out, last = [], 0
        for finding in self.find(text):
            out.append(text[last:finding.start])
            out.append(self.replacement(finding.kind))
            last = finding.end
        out.append(text[last:])
        return "".join(out)

    def mapping(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Redact a structure: declared name fields wholesale, every string by detectors."""
        result: dict[str, Any] = {}
        for key, value in values.items():
            if key.lower() in self.name_fields and isinstance(value, str) and value:
                result[key] = self.replacement("name")
            else:
                result[key] = self._value(value)
        return result

    def _value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return self.mapping(value)
        if isinstance(value, list):
            return [self._value(v) for v in value]
        return value
