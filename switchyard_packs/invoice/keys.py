"""Keys nobody listed: what an unknown label names, read from its form.

The extractor's label lists (``extraction.LABELS``) never hold every way an invoice names its
number or its dates: ``Document number``, ``Reference no.``, ``Dated``, ``Tax point``,
``Billing date``, ``Settle by``. A person still reads them, because the key says what kind of
thing follows: a key ending in *number*, *no.* or *ref* names an identifier; a date after a
key that speaks of paying is when to pay; a date after any other key that is no order,
delivery or service date is the invoice's own. This module reads a document's ``key: value``
pairs (beside each other, a row of keys over a row of values, or a key over its value on the
next line) and names the field such a key most likely labels, so the extractor can fall back on them, a notch less sure than a
listed label, for fields no listed label gave.

Pure text, no I/O; the word lists are of kinds of keys, not of documents seen.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

#: A key: one to five words of letters (with an apostrophe, slash or hyphen inside, the dot,
#: ``#`` or ``°`` of an abbreviation after), no digits.
_WORD = r"[^\W\d_](?:[^\W\d_]|['’/&-])*[.#°]?"
# ... and a gloss in brackets after it, as bilingual forms print (``Datum splatnosti faktury
# (payment date)``)
_KEY = re.compile(rf"{_WORD}(?:[ \t]+(?:{_WORD}|[#°№]))" + r"{0,4}(?:[ \t]*\([^()\d]{1,30}\))?")
#: ``key: value`` in one cell.
_KEY_COLON = re.compile(r"(?P<key>[^:|=\n]{1,40}?)[ \t]*[:=][ \t]*(?P<value>\S.*)")
_CELL_SEP = " | "

#: The last word of a key naming an identifier.
_NUMBER_WORDS = frozenset({
    "no", "nr", "number", "num", "#", "ref", "reference", "id", "n°", "nº", "nummer", "número",
    "numero", "numéro", "nro", "nb"})
#: Words that make a key's identifier some other party's or thing's (the customer's, an
#: order's, a tax registration's), never the invoice's own number.
_NOT_THE_INVOICE = (
    "order", "po", "p.o", "purchase", "customer", "client", "account", "acct", "tax", "vat",
    "gst", "phone", "tel", "fax", "regist", "reg", "company", "vendor", "supplier", "contract",
    "deliver", "shipment", "shipping", "tracking", "sort", "iban", "swift", "bic", "routing",
    "kunden", "auftrag", "bestell", "liefer", "your", "ihre", "uw", "votre", "vostro", "member",
    "patient", "policy", "case", "ticket", "serial", "item", "article", "part", "sku", "page",
    "mobile", "vehicle", "project", "job", "cost", "quote", "quotation", "offer", "angebot",
    "debtor", "creditor", "mandate", "ust", "steuer", "tva", "btw", "iva", "nip", "siret",
    "siren", "ein", "chamber", "kvk", "hrb", "licen", "contact", "employee", "staff", "user",
    "batch", "lot", "container", "seal", "booking", "flight", "room", "table", "check",
    "transaction", "card", "cheque", "receipt", "store", "branch", "terminal", "cashier")
#: Words that make a key's date a date to pay by.
_DUE_WORDS = ("due", "pay", "settle", "fällig", "zahl", "échéance", "echeance", "vencim",
              "scaden", "betaal", "verval", "termin", "remit")
#: Words that make a key's date another event's: an order, a delivery, a period.
_OTHER_DATE_WORDS = (
    "order", "deliver", "ship", "dispatch", "service", "period", "from", "start", "end", "until",
    "check", "birth", "print", "supply", "liefer", "leistung", "bestell", "valid", "expir",
    "travel", "arrival", "departure", "booking", "received", "posted", "entry", "paid", "value",
    "modified", "last", "next", "previous", "statement", "contract", "since",
    "commande", "livraison", "pedido", "entrega", "consegna", "ordine", "levering")

INVOICE_DATE = "invoice_date"
DUE_DATE = "due_date"
OTHER_DATE = "other_date"


def _words(key: str) -> list[str]:
    return [w.strip(".:;,'’()") for w in key.lower().split()]


def number_key(key: str) -> bool:
    """Whether ``key`` names the document's own identifier: ``Document number``, ``Reference
    no.``, ``Doc #`` (not ``Customer no.``, ``VAT number``, ``Order ref``)."""
    words = _words(key)
    if not words or words[-1] not in _NUMBER_WORDS:
        return False
    return not any(w.startswith(stop) for w in words[:-1] for stop in _NOT_THE_INVOICE)


def date_key(key: str) -> str:
    """What a date after ``key`` is: :data:`DUE_DATE` for a key that speaks of paying
    (``Settle by``, ``Payment date``), :data:`OTHER_DATE` for another event's (``Order date``,
    ``Service period``), else :data:`INVOICE_DATE` (``Dated``, ``Tax point``, ``Billing
    date``)."""
    words = _words(key)
    if any(w.startswith(due) for w in words for due in _DUE_WORDS):
        return DUE_DATE
    if any(w.startswith(other) for w in words for other in _OTHER_DATE_WORDS):
        return OTHER_DATE
    return INVOICE_DATE


def is_key(cell: str) -> bool:
    """Whether a cell reads as a key: a few words, no digits (``Document number``,
    ``REFERENCE NO.``, ``Tax point:``)."""
    return _KEY.fullmatch(cell.strip().rstrip(":").strip()) is not None


def key_value_pairs(text: str) -> Iterator[tuple[str, str]]:
    """Every ``(key, value)`` of a document's reading-order text (cells split by `` | ``):
    ``Key: value`` in one cell, a key cell and the cell right of it, a row of keys over a
    row of as many values, and a line's first cell a key over the next line's first cell.
    Values are cells as they stand; the caller reads their type."""
    rows = [[c.strip() for c in line.split(_CELL_SEP)] for line in text.splitlines()]
    keyish = [[is_key(c) for c in cells] for cells in rows]  # each cell judged once
    for index, cells in enumerate(rows):
        keys = keyish[index]
        below = rows[index + 1] if index + 1 < len(rows) else None
        if len(cells) >= 2 and all(keys) and below is not None:
            if len(below) == len(cells) and not all(keyish[index + 1]):
                yield from zip((c.rstrip(":").strip() for c in cells), below)
                continue
        for at, cell in enumerate(cells):
            m = _KEY_COLON.fullmatch(cell)
            if m is not None and is_key(m.group("key")):
                yield m.group("key").strip(), m.group("value").strip()
            elif keys[at] and at + 1 < len(cells) and not keys[at + 1]:
                yield cell.rstrip(":").strip(), cells[at + 1]
        if keys[0] and below is not None and below[0] and not keyish[index + 1][0]:
            yield cells[0].rstrip(":").strip(), below[0]


__all__ = ["DUE_DATE", "INVOICE_DATE", "OTHER_DATE", "date_key", "is_key",
           "key_value_pairs", "number_key"]
