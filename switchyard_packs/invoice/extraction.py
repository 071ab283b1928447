"""Invoice field extraction: vendor, numbers, dates, amounts, currency and PO, each with a confidence.

Pure text processing (no I/O), run in the decision service for documents the router calls an
invoice. Three layers, because invoices arrive in three shapes:

* structured (JSON objects, ``key=value; ...`` / ``key: value | ...`` records, EDI-like
  ``INV*vendor*number*...~`` segments) -- read field by field, high confidence;
* laid-out documents (headers, key/value blocks, line items, totals) -- labels in several
  languages are found wherever they are, the value is what follows up to the next label or
  line break, and it is parsed by type (money, date, identifier);
* free text (e-mails) -- phrase patterns ("invoice no. X amounting to Y, due by Z").

Every labelled amount is kept, not only the likeliest: subtotal, tax and total are settled
together as the labelled triple that adds up (``_reconcile_amounts``). The vendor is the
best-supported name on the page (``vendor.py``).

Confidence starts from how a value was found and is lowered by what makes it doubtful:
scanner damage, ambiguous day/month order, totals that do not add up (subtotal + tax vs total,
line items vs subtotal), a due date before the invoice date, several currencies in one
document. Consistency raises it: line items that add up to the subtotal confirm the amounts.
``InvoiceExtraction.confidence`` folds the key fields into one number, the
``extraction_confidence`` feature the invoice_risk model was trained with.

Item lines give their amounts (``line_items``, which the invoice_risk features sum and count)
and are read whole as :class:`LineItem` (description, quantity, unit price), for matching an
invoice's lines to a purchase order's; a quantity and a unit price are kept only when they make
the line's amount.

A PDF or an image comes with its layout (words with boxes): the extractor reads the layout's
reading-order text as above, and then the layout itself for what the text does not show (a
value below its label instead of beside it). Each value is looked up among the layout's words
(after its label when it followed one) for its provenance, and its confidence is multiplied
by the lowest OCR confidence of those words.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from switchyard.documents import (
    COLUMN_GAP_HEIGHTS,
    LabelValue,
    Line,
    PageWord,
    find_labels,
    find_words,
    label_values,
    layout_text,
    lines,
    provenance_of,
    unaccented,
)
from switchyard.packs import placement_factor
from switchyard.privacy import iban_ok
from switchyard.v1 import DocumentLayout, Provenance

from .keys import (
    DUE_DATE,
    INVOICE_DATE,
    OTHER_DATE,
    date_key,
    is_key,
    key_value_pairs,
    number_key,
)
from .vendor import (
    BUYER_LABELS,
    COMPANY_SUFFIX,
    SELLER_LABELS,
    company_name,
    find_vendor,
    is_name_key,
    is_party_heading,
)

#: Typographic hyphens and the minus sign, read as the ASCII hyphen: numbers, dates and
#: negative amounts are written with them (``IOPOLE‐jdz7fEbj4Va``, ``18‐08‐2026``, ``−9,32``).
DASHES = str.maketrans("\u2010\u2011\u2012\u2013\u2212", "-----")

#: Fields the extractor reports, in the order Decision.fields lists them.
FIELD_NAMES: tuple[str, ...] = (
    "vendor", "invoice_number", "invoice_date", "due_date", "po_number", "currency",
    "subtotal", "tax", "total", "line_item_count", "bank_account",
)
#: How much each key field weighs in the overall confidence (missing counts as 0).
CONFIDENCE_WEIGHTS: dict[str, float] = {
    "total": 0.25, "vendor": 0.2, "invoice_number": 0.2, "invoice_date": 0.15,
    "currency": 0.1, "due_date": 0.1,
}

CURRENCY_SYMBOLS: tuple[tuple[str, str], ...] = (  # longest first: "C$" before "$"
    ("C$", "CAD"), ("A$", "AUD"), ("R$", "BRL"), ("CHF", "CHF"), ("zł", "PLN"), ("Kč", "CZK"),
    ("kr", "SEK"), ("$", "USD"),
    ("€", "EUR"), ("£", "GBP"), ("₹", "INR"), ("Rs.", "INR"), ("Rs", "INR"), ("¥", "JPY"),
    ("￥", "JPY"),   # the full-width sign; both are the yuan's too (_SHARED_SIGNS)
    ("฿", "THB"), ("บาท", "THB"),  # (Thai: the baht's sign, and its name written after)
    ("S/", "PEN"),  # Peru's sol ('S/ 236.00'; 'S/N', no number, is an address's)
    ("円", "JPY"),  # the yen written after its amount ('11,000 円', '13200円')
)
CURRENCY_CODES = frozenset({
    "USD", "EUR", "GBP", "INR", "JPY", "CHF", "CAD", "AUD", "SEK", "PLN", "NOK", "DKK", "NZD",
    "SGD", "ZAR", "KES", "NGN", "GHS", "BRL", "MXN", "CNY", "KRW", "CZK", "HUF",
    # the other dollars and pesos (written with a bare '$' too), and more of Europe and Asia
    "COP", "ARS", "CLP", "UYU", "HKD", "TWD", "RON", "BGN", "ISK", "TRY", "ILS", "AED",
    "SAR", "THB", "MYR", "IDR", "VND", "PEN",
})
#: Codes of the currencies written with a bare '$' besides the US dollar.
DOLLAR_CODES = ("CAD", "AUD", "NZD", "SGD", "HKD", "TWD", "MXN", "COP", "ARS", "CLP", "UYU")
MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august",
          "september", "october", "november", "december")
#: Month names of the languages the labels cover (English, German, French, Spanish, Italian,
#: Dutch, Polish in the genitive that dates use), each the month's number.
MONTH_NAMES: dict[str, int] = {
    name: number
    for names in (
        MONTHS,
        ("januar", "februar", "märz", "april", "mai", "juni", "juli", "august", "september",
         "oktober", "november", "dezember"),
        ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre",
         "octobre", "novembre", "décembre"),
        ("enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto",
         "septiembre", "octubre", "noviembre", "diciembre"),
        ("gennaio", "febbraio", "marzo", "aprile", "maggio", "giugno", "luglio", "agosto",
         "settembre", "ottobre", "novembre", "dicembre"),
        ("januari", "februari", "maart", "april", "mei", "juni", "juli", "augustus",
         "september", "oktober", "november", "december"),
        ("stycznia", "lutego", "marca", "kwietnia", "maja", "czerwca", "lipca", "sierpnia",
         "września", "października", "listopada", "grudnia"),
    )
    for number, name in enumerate(names, start=1)
}
# -- values ------------------------------------------------------------------------------------

#: Signs written straight after the figure, with no space ('13200円'): a letter glued to a
#: number otherwise makes it an identifier's.
_GLUED_SIGNS = ("円",)
# a symbol of letters starts a word ('Rs 1939', not 'Hours 32')
_SYM = "|".join((r"\b" if s[0].isalpha() and s not in _GLUED_SIGNS else "") + re.escape(s)
                for s, _ in CURRENCY_SYMBOLS)
_GLUED = "|".join(map(re.escape, _GLUED_SIGNS))
_CODE = "|".join(sorted(CURRENCY_CODES))
# ungrouped, at most nine digits: a longer run is a register or trade number
# ('SIRET : 99999999800010', 'GLN 4000001123452'), not an amount
# (grouped by a space, comma, dot or, in Switzerland, an apostrophe: 2'606.35)
_NUM = r"\d{1,3}(?:[ ,.'’]\d{3})+(?:[.,]\d{1,2})?|\d{1,9}(?:[.,]\d{1,2})?"
# a number glued to a letter is part of an identifier ('TVA F63530848134', 'APE : 4778C'),
# unless the letters are its currency ('EUR1234', '1234EUR')
# a minus sign right before the figure is the amount's (a credit note's '-218,48 €',
# '€ -9,32'); one after a digit is a range's, a date's or a reference's ('10-20',
# '2024-01-24', 'article 283-2'), and no amount ends before it
_MONEY = re.compile(
    rf"(?:(?:(?<![\w-])(?P<signed>-)(?={_SYM}))?(?P<pre>{_SYM}|\b(?:{_CODE})(?:\b|(?=\d)))[ \t]?|(?<!\w)(?<!\d-)(?<!\d[.,])|(?<=\b(?:{_CODE})))(?:(?<![\w-])(?P<neg>-))?(?P<num>{_NUM})(?![\d]|[.,]\d|-\d|:\d|[ \t]?%|(?!(?:{_CODE})\b|{_GLUED})[^\W\d_])(?:[ \t]?(?P<post>(?:\b|(?<=\d))(?:{_CODE})\b|{_SYM}))?")


#: Signs before a figure that make it a threshold ('orders > 300 €'), no amount.
_COMPARISONS = ("<", ">", "\u2264", "\u2265")

_STANDALONE_CODE = re.compile(rf"(?<![\w-])({_CODE})(?![\w-])")
# signs that name one currency ('$' is several countries' and stays with its amounts)
_STANDALONE_SIGN = re.compile(r"([€£₹฿円]|\bKč\b|\bzł\b|บาท)")
#: A currency's name written out, standing apart ('Amounts expressed in Euros', a column
#: headed 'Euro'): the last place a currency is looked for.
_CURRENCY_NAMES = {"euro": "EUR", "euros": "EUR", "ευρώ": "EUR", "ευρω": "EUR"}
_STANDALONE_NAME = re.compile(rf"(?<![\w-])({'|'.join(_CURRENCY_NAMES)})(?![\w-])", re.IGNORECASE)


@dataclass(frozen=True)
class _PlaceCue:
    """What names a currency's place: ``present`` found (and ``absent`` not), the currency,
    and the reason the value's source records."""

    present: re.Pattern[str]
    currency: str
    why: str
    absent: re.Pattern[str] | None = None

    def names(self, text: str) -> bool:
        return self.present.search(text) is not None and (
            self.absent is None or self.absent.search(text) is None)


#: Argentina's tax number (CUIT: '30-71508773-8'), on every Argentine invoice: its '$' is the
#: peso's, and with no sign at all its figures are pesos.
_ARGENTINE_CUIT = _PlaceCue(re.compile(r"\bC\.?U\.?I\.?T\.?[ \t]*:?[ \t]*\d{2}-?\d{8}-?\d\b"),
                            "ARS", "tax registration")
#: Signs that several countries write, read as one currency until the document says which
#: place it is from: the sign's reading -> what writes that currency out (then the sign is
#: it), and the cues that name another. A bare ``$``: the issuer's tax registration says
#: which country's dollar, an Australian Business Number (on every Australian tax invoice) or
#: Canada's GST/HST or Quebec's QST; a customer's address says nothing (a US supplier bills a
#: Canadian customer in USD). ``¥`` and ``￥``: the yen's sign and the yuan's; a document in
#: Chinese (ideographs, no hiragana or katakana) is billed in yuan. A document that writes out
#: the code of one other dollar or peso (and not USD) means that one by its '$'.
_SHARED_SIGNS: dict[str, tuple[re.Pattern[str], tuple[_PlaceCue, ...]]] = {
    "USD": (re.compile(r"\bUSD\b|\bUS\$|\bUS dollars?\b", re.IGNORECASE), (
        _PlaceCue(re.compile(
            r"\bA\.?B\.?N\b\.?[ \t]*:?[ \t]*\d{2}[ \t]?\d{3}[ \t]?\d{3}[ \t]?\d{3}\b"),
            "AUD", "tax registration"),
        _PlaceCue(re.compile(r"\b(?:GST/HST|HST/GST|HST|QST)\b"), "CAD", "tax registration"),
        _ARGENTINE_CUIT,
        # Chile's tax number (RUT: '76.269.769-6', its check digit 0-9 or K)
        _PlaceCue(re.compile(r"\bR\.?U\.?T\.?[ \t]*:?[ \t]*\d{1,2}\.?\d{3}\.?\d{3}-[\dkK]\b"),
                  "CLP", "tax registration"),
        # 'TOTAL COP | $ 132,600.01': the code of another dollar or peso, written out
        *(_PlaceCue(re.compile(rf"(?<![\w-]){code}(?![\w-])"), code, "currency code written")
          for code in DOLLAR_CODES),
    )),
    "JPY": (re.compile(r"\bJPY\b"), (
        _PlaceCue(re.compile(r"[\u4e00-\u9fff]"), "CNY", "Chinese text",
                  absent=re.compile(r"[\u3040-\u30ff]")),
    )),
}


#: When no currency is written at all: a tax registration only one country issues says whose
#: money the amounts are (a Brazilian DANFE prints its figures bare, its CNPJ on every copy).
_PLACE_ONLY: tuple[_PlaceCue, ...] = (
    # a CNPJ as Brazil prints it ('81.583.054/0001-29'), its key often in a box above it
    _PlaceCue(re.compile(r"\b\d{2}\.\d{3}\.\d{3}/\d{4}-\d{2}\b"), "BRL", "tax registration"),
    _ARGENTINE_CUIT,
    # Peru's (RUC: 11 digits, a company's starting 20, a person's 10)
    _PlaceCue(re.compile(r"\bR\.?U\.?C\.?[ \t]*:?[ \t]*(?:10|20)\d{9}\b"), "PEN",
              "tax registration"),
    # India's GST number (GSTIN: state code, the holder's PAN, entity number, 'Z', check
    # character: '29AAACI1681G1ZM'), which every GST invoice and bill prints
    # (OCR reads its Z as a 2 too)
    _PlaceCue(re.compile(r"\b[0-3]\d[A-Z]{5}\d{4}[A-Z][1-9A-Z][Z2][0-9A-Z]\b"), "INR",
              "tax registration"),
)


@dataclass(frozen=True)
class Money:
    amount: float
    currency: str  # ISO code, "" when the value carries none
    raw: str


def to_number(num: str) -> float:
    """'1.234,56' / '1,234.56' / '1 234,56' / '1234.5' / '1,297' -> float.

    The last '.' or ',' followed by one or two digits is the decimal separator; every other
    separator groups thousands.
    """
    num = re.sub(r"[ '’]", "", num.strip())
    match = re.search(r"[.,](\d{1,2})$", num)
    if match:
        whole = re.sub(r"[.,]", "", num[:match.start()])
        return float(f"{whole or '0'}.{match.group(1)}")
    return float(re.sub(r"[.,]", "", num))


def _currency_of_the_place(b: _Builder, text: str) -> None:
    """A currency read from a sign several countries write (:data:`_SHARED_SIGNS`) becomes
    the one the document's place names, when exactly one is named and the sign's own is not
    written out."""
    found = b.found.get("currency")
    if found is None or found.value not in _SHARED_SIGNS:
        return
    written, cues = _SHARED_SIGNS[str(found.value)]
    if written.search(text):
        return
    named = [cue for cue in cues if cue.names(text)]
    if len({cue.currency for cue in named}) != 1:
        return
    b.found["currency"] = _Candidate(named[0].currency, found.confidence, found.raw,
                                     f"{found.source}; {named[0].why}")


def _currency_of(token: str | None) -> str:
    if not token:
        return ""
    token = token.strip()
    if token.upper() in CURRENCY_CODES:
        return token.upper()
    return dict(CURRENCY_SYMBOLS).get(token, "")


def _money_matches(text: str) -> Iterator[tuple[Money, re.Match[str]]]:
    """Every amount in ``text`` with the match that found it: where it stands, for reading an
    item line's columns the way :func:`find_money` reads its amounts."""
    for m in _MONEY.finditer(text):
        num = m.group("num")
        before = text[max(0, m.start("num") - 2):m.start("num")]
        if len(before) == 2 and before[0].isdigit() and before[1] == ":":
            continue  # the minutes of a time or a duration ('3:16'), no amount
        if re.fullmatch(r"(19|20)\d{6}", num.replace(" ", "")):
            continue  # a YYYYMMDD date, not an amount
        if re.match(r"/\d", text[m.end("num"):m.end("num") + 2]) or \
                re.search(r"\d/$", text[max(0, m.start("num") - 2):m.start("num")]):
            continue  # a reference or a date's part ('Directive 2006/112/EC', '03/2024')
        if text[max(0, m.start() - 3):m.start()].rstrip().endswith(_COMPARISONS):
            continue  # a threshold ('free shipping (amount > 300 €)'), not an amount
        currency = _currency_of(m.group("pre")) or _currency_of(m.group("post"))
        amount = to_number(num)
        negative = m.group("neg") or m.group("signed")
        yield Money(-amount if negative else amount, currency, m.group(0).strip()), m


def find_money(text: str) -> list[Money]:
    """Every amount in ``text``, with its currency when the amount is written with one."""
    return [money for money, _ in _money_matches(text)]


_DATE_PATTERNS = (
    # ... with the time after it too ('2017-07-05T09:09:23')
    ("iso", re.compile(r"\b(\d{4})-(\d{2})-(\d{2})(?:\b|(?=T\d))")),
    ("iso_slash", re.compile(r"\b(\d{4})/(\d{1,2})/(\d{1,2})\b")),  # '2024/07/05'
    ("dots", re.compile(r"\b(\d{1,2})\. ?(\d{1,2})\. ?(\d{4})\b")),  # '10. 02. 2015' too
    ("slash", re.compile(r"\b(\d{1,2})/(\d{1,2})/(\d{4})\b")),
    # a two-digit year ('21.05.14', '03/20/23'): this century
    ("dots2", re.compile(r"\b(\d{1,2})\.(\d{1,2})\.(\d{2})\b(?![.\-/]?\d)")),
    ("slash2", re.compile(r"\b(\d{1,2})/(\d{1,2})/(\d{2})\b(?![.\-/]?\d)")),
    ("dashes", re.compile(r"\b(\d{1,2})-(\d{1,2})-(\d{4})\b")),
    # OCR drops spaces: "June 5,2026", "5Jun2026"; "August 3 , 2014", "7. Mai 2014"
    ("month_first", re.compile(r"\b([^\W\d_]{3,10})\.? (\d{1,2})(?:st|nd|rd|th)? ?,? ?(\d{4})\b")),
    ("day_first", re.compile(r"\b(\d{1,2})(?:\.|er|st|nd|rd|th)? ?([^\W\d_]{3,10})\.? ?(\d{4})\b")),
    # hyphens between day, month name and year ('01-Jan-2021', '15-June-21')
    ("day_first_dashes", re.compile(r"\b(\d{1,2})-([^\W\d_]{3,10})\.?-(\d{4}|\d{2})\b(?!-)")),
    ("compact", re.compile(r"\b((?:19|20)\d{2})(\d{2})(\d{2})\b")),
    # Chinese and Japanese: '2020年04月17日'
    ("cjk", re.compile(r"((?:19|20)\d{2}) ?年 ?(\d{1,2}) ?月 ?(\d{1,2}) ?日")),
    # Japanese era years: '令和7年5月15日' (Reiwa 7, 2025), '平成元年' (its first year)
    ("era", re.compile(r"((?:令和|平成) ?(?:\d{1,2}|元)) ?年 ?(\d{1,2}) ?月 ?(\d{1,2}) ?日")),
    # Vietnamese: 'Ngày 28 tháng 08 năm 2025' (day, month, year), bilingual e-invoices gloss
    # each word ('Ngày (date) 28 tháng (month) 08 năm (year) 2025')
    ("vi", re.compile(r"ngày[ \t]*(?:\(date\)[ \t]*)?(\d{1,2})[ \t]*tháng[ \t]*(?:\(month\)[ \t]*)?"
                      r"(\d{1,2})[ \t]*năm[ \t]*(?:\(year\)[ \t]*)?(\d{4})", re.IGNORECASE)),
    # Thai: '13 กรกฎาคม 2559', the year of the Buddhist era (2016) or of the common one
    ("thai", re.compile(r"(\d{1,2})\s*([\u0e01-\u0e4e.]{3,20}?)\s*(\d{4})\b")),
)
#: The year before each Japanese era's first.
_ERAS = {"令和": 2018, "平成": 1988}


def _thai_key(word: str) -> str:
    """A Thai word as text layers give it: tone marks dropped (fonts draw them apart, and
    many PDFs' text loses them), and ฏ for ฎ (``กรกฏาคม``, a common misspelling of July)."""
    return re.sub("[\u0e48-\u0e4c]", "", word).replace("ฏ", "ฎ").strip(".")


#: Thai month names, full and abbreviated ('ก.ค.'), keyed as :func:`_thai_key` writes them.
_THAI_MONTHS = {_thai_key(name): number for number, names in enumerate((
    ("มกราคม", "ม.ค"), ("กุมภาพันธ์", "ก.พ"), ("มีนาคม", "มี.ค"), ("เมษายน", "เม.ย"),
    ("พฤษภาคม", "พ.ค"), ("มิถุนายน", "มิ.ย"), ("กรกฎาคม", "ก.ค"), ("สิงหาคม", "ส.ค"),
    ("กันยายน", "ก.ย"), ("ตุลาคม", "ต.ค"), ("พฤศจิกายน", "พ.ย"), ("ธันวาคม", "ธ.ค")), start=1)
    for name in names}
#: Years the Buddhist era (Thai dates) counts ahead of the common era.
_BUDDHIST_ERA = 543


def _month_words() -> dict[str, int]:
    """Every month name of :data:`MONTH_NAMES`, and every abbreviation (at least three letters)
    that only one month's names start with ('Sept', 'déc', 'Okt'; not 'jui', French for both
    June and July), each the month's number."""
    prefixes: dict[str, set[int]] = {}
    for full, number in MONTH_NAMES.items():
        for end in range(3, len(full) + 1):
            prefixes.setdefault(full[:end], set()).add(number)
    return {word: next(iter(numbers)) for word, numbers in prefixes.items()
            if len(numbers) == 1 or word in MONTH_NAMES}


_MONTH_WORDS = _month_words()


def _month(name: str) -> int | None:
    return _MONTH_WORDS.get(name.lower())


def _make(year: int, month: int, day: int) -> dt.date | None:
    try:
        return dt.date(year, month, day)
    except ValueError:
        return None


def _readings(kind: str, a: str, b: str, c: str) -> list[dt.date]:
    """The dates a match of ``_DATE_PATTERNS`` can mean (two when day and month may swap)."""
    readings: list[dt.date | None]
    if kind in ("iso", "iso_slash", "compact", "cjk"):
        readings = [_make(int(a), int(b), int(c))]
    elif kind in ("dots", "vi"):
        readings = [_make(int(c), int(b), int(a))]
    elif kind == "dots2":
        readings = [_make(2000 + int(c), int(b), int(a))]
    elif kind in ("slash", "dashes"):
        readings = [_make(int(c), int(b), int(a)), _make(int(c), int(a), int(b))]
    elif kind == "slash2":
        readings = [_make(2000 + int(c), int(b), int(a)), _make(2000 + int(c), int(a), int(b))]
    elif kind == "era":
        year = a[2:].strip()
        readings = [_make(_ERAS[a[:2]] + (1 if year == "元" else int(year)), int(b), int(c))]
    elif kind == "thai":
        month, year = _THAI_MONTHS.get(_thai_key(b)), int(c)
        year -= _BUDDHIST_ERA if year > 2400 else 0
        readings = [_make(year, month, int(a))] if month else []
    elif kind == "month_first":
        month = _month(a)
        readings = [_make(int(c), month, int(b))] if month else []
    else:  # day_first, day_first_dashes
        month = _month(b)
        year = int(c) + (2000 if len(c) == 2 else 0)
        readings = [_make(year, month, int(a))] if month else []
    return list(dict.fromkeys(d for d in readings if d is not None))


def find_date(text: str) -> tuple[list[dt.date], str] | None:
    """The first date in ``text``: its readings (two when day/month order is ambiguous). A
    match that is no date ('Total 12 2026': no month called 'Total') does not hide a later
    one."""
    best: tuple[int, list[dt.date], str] | None = None
    for kind, pattern in _DATE_PATTERNS:
        for m in pattern.finditer(text):
            if best is not None and m.start() >= best[0]:
                break
            dates = _readings(kind, *m.groups())
            if dates:
                best = (m.start(), dates, m.group(0))
                break
    return None if best is None else (best[1], best[2])


_ID = re.compile(r"#?[A-Za-z0-9][A-Za-z0-9./\-#_]*\d[A-Za-z0-9/\-_]*|#\d+")


def find_identifier(text: str) -> str | None:
    """An invoice / PO number: the first token with a digit ('INV-2024-00042', 'P.O. 7013',
    'BLR_WFLD2015'); a '#' before it ('# 4471') is the label's, not the number's."""
    text = re.sub(r"^#\s+", "", text.strip())
    # a glyph the PDF's font maps to no character (NUL) between a number's parts is its
    # hyphen: Stripe's invoice numbers print '8B83747E-0006' so
    text = re.sub(r"(?<=[A-Za-z0-9])\x00(?=[A-Za-z0-9])", "-", text)
    # a number sign under a title that is the label ('FACTURA ELECTRONICA' over 'N° 4117')
    text = re.sub(r"^(?:n[°º]|no\.?|nr\.?|núm\.?)[ \t]*(?=\d)", "", text, flags=re.IGNORECASE)
    m = re.match(r"P\.O\.\s+(\d[\w/\-]*)", text)
    if m:
        return f"P.O. {m.group(1)}"
    # a series' letters before the number ('F 1234K20/1234/12', 'FV 2021/07/113', a
    # Romanian invoice's series and number 'PROD 69420')
    m = re.match(r"([A-Z]{1,4}) (\d[\w/\-]*\d)", text)
    if m and m.group(1) not in ("NO", "NR", "N", "PO", "REF", "NUM"):
        return f"{m.group(1)} {m.group(2)}"
    m = _ID.match(text)  # the value right after the label, not some number further on
    if m is None:
        return None
    return m.group(0).rstrip(".,;:")


def _doubtful_identifier(ident: str) -> bool:
    """Scanner confusions inside a number: '4l4971', '2O24'."""
    return re.search(r"\dl|l\d|\dO\d|\dS\d", ident) is not None


# -- labels ------------------------------------------------------------------------------------

LABELS: dict[str, tuple[str, ...]] = {
    "invoice_number": ("invoice no.", "invoice no", "invoice #", "invoice number", "inv. no.",
                       "invoice id",
                       "inv no", "invoice nr", "bill no", "bill no.", "bill number",
                       "document no", "rechnungsnummer",
                       "rechnungsnr.", "rechnungsnr", "rechnung nr", "n° de facture",
                       "facture n°", "facture no", "no. factura", "invoice_no",
                       "invoice_number", "numéro de facture", "factura no", "factura nº",
                       "número de factura", "fattura n.", "fattura n°", "numero fattura",
                       "factuurnummer", "factuurnr", "faktura nr", "numer faktury",
                       "rechnungs-nr", "rechnungs-nr.", "belegnummer", "beleg-nr", "beleg-nr.",
                       "credit note no", "credit note number", "gutschriftsnummer",
                       "gutschrift nr", "n° d'avoir", "avoir n°", "creditnota nummer",
                       # Mexico's and Chile's (a CFDI's 'Folio', not its 'Folio fiscal' UUID)
                       "folio", "folio no", "folio nº",
                       # Czech: 'Faktura č.' (číslo, number)
                       "faktura č.", "faktura č", "faktura číslo", "číslo faktury",
                       # Slovak
                       "faktúra č.", "faktúra č", "faktúra číslo", "číslo faktúry",
                       # Colombia's and others' electronic sales invoice
                       "factura electrónica de venta", "factura electrónica de venta no.",
                       "factura de venta", "factura de venta no.", "factura electrónica",
                       "factura electrónica no.",
                       # Estonian
                       "arve number", "arve nr", "arve nr.",
                       # Chinese (a VAT fapiao's number, not its 发票代码 code), Japanese
                       "发票号码", "發票號碼", "請求書番号", "請求番号",
                       # Nordic: Finnish, Swedish, Norwegian and Danish
                       "laskun nro", "laskun numero", "laskunumero", "fakturanummer",
                       "fakturanr", "fakturanr.", "faktura nr.", "fakturanummer.",
                       # Brazil's service invoice (NFS-e) and goods invoice (NF-e)
                       "número da nfs-e", "número da nf-e", "número da nota",
                       # Thai: number, document's, tax invoice's, invoice's
                       "เลขที่", "เลขที่เอกสาร", "เลขที่ใบกำกับภาษี", "เลขที่ใบแจ้งหนี้",
                       # Arabic: the invoice's number
                       "رقم الفاتورة", "رقم الفاتوره",
                       # Romanian: the invoice's number (with and without its diacritics)
                       "nr. factură", "număr factură", "factură nr.", "factură nr",
                       "nr. factura", "numar factura", "factura nr.", "factura nr",
                       # Greek: number, the invoice's number (Αρ.: its short form)
                       "αριθμός", "αριθμός τιμολογίου", "αρ. τιμολογίου", "αριθμός παραστατικού",
                       "αρ. παραστατικού"),
    "invoice_date": ("invoice date", "issue date", "date of issue", "datum", "date",
                     "开票日期", "開票日期", "請求日", "発行日",
                     "belegdatum", "beleg-datum", "rechnungs-datum",
                     "invoice_date", "rechnungsdatum", "fecha", "fecha de emisión",
                     "fecha emisión",
                     "date de facture", "date d'émission", "data fattura", "data emissione",
                     "factuurdatum", "data wystawienia", "ausstellungsdatum",
                     "data de emissão", "data emissão", "datum vystavení", "kuupäev",
                     "arve kuupäev",
                     "päivämäärä", "laskun päivämäärä", "laskupäivä", "fakturadatum",
                     "fakturadato", "dato",
                     "data e hora da emissão", "data e hora da emissão da nfs-e",
                     "data da emissão",
                     # Thai: date, date the document / the tax invoice was issued
                     "วันที่", "วันที่ออกเอกสาร", "วันที่ออกใบกำกับภาษี",
                     # Arabic: date, the invoice's date, date of issue
                     "تاريخ", "تاريخ الفاتورة", "تاريخ الإصدار",
                     # Greek: date, date of issue
                     "ημερομηνία", "ημερομηνία έκδοσης", "ημ/νία έκδοσης",
                     # Romanian: date of issue, the invoice's date
                     "data emitere", "data emiterii", "data facturii", "data facturării"),
    "due_date": ("due date", "payment due", "pay by", "fällig am", "due", "due_date",
                 "zahlbar bis", "zahlungsziel", "échéance", "date d'échéance",
                 "date limite de paiement", "fecha de vencimiento", "vencimiento", "scadenza",
                 "data scadenza", "vervaldatum", "termin płatności", "fälligkeit",
                 "fälligkeitsdatum", "datum splatnosti", "data de vencimento", "tähtaeg",
                 "maksetähtaeg", "maksmise tähtaeg",
                 "eräpäivä", "förfallodag", "förfallodatum", "forfallsdato", "forfaldsdato",
                 "betalingsfrist", "sista betalningsdag", "betales senest", "betalingsdato",
                 "fälligkeitstag", "fällig zum", "zahlbar am", "vervaldag",
                 "uiterste betaaldatum", "date d'exigibilité", "data di scadenza",
                 "fecha límite de pago", "fecha venc.", "fecha venc", "fecha vencimiento",
                 # Arabic: the due date
                 "تاريخ الاستحقاق",
                 # Romanian: the due date
                 "data scadenței", "data scadentei", "data scadenta", "scadență", "scadenta",
                 "termen de plată", "termen de plata",
                 # Greek: the date it falls due, the payment's
                 "ημερομηνία λήξης", "ημερομηνία πληρωμής", "λήξη",
                 # Japanese: payment deadline, transfer deadline (with the polite お too)
                 "支払期限", "お支払期限", "支払期日", "お支払期日", "振込期限", "お振込期限",
                 # Thai: the day payment falls due
                 "วันครบกำหนด", "วันที่ครบกำหนด", "ครบกำหนดชำระ", "กำหนดชำระ"),
    "po_number": ("po number", "purchase order", "p.o. #", "p.o. no", "your ref", "order ref",
                  "your order", "order no", "order number", "po", "po_number", "bestellnummer",
                  "bestelnummer", "numero ordine", "bon de commande", "pedido",
                  # with their abbreviation's dot, and the buyer's order in other words
                  "po no", "po no.", "po #", "p.o. no.", "p.o. number", "order ref.",
                  "your order ref", "your order ref.", "your order reference", "your reference",
                  "purchase order no", "purchase order no.", "purchase order number",
                  "ihre bestellung", "bestell-nr", "bestell-nr.", "votre commande",
                  "uw bestelling", "inkoopordernummer", "orden de compra", "vostro ordine",
                  "votre référence", "ihre auftragsnummer", "ihre bestellnummer",
                  "your order number", "uw referentie", "vostro riferimento", "bestellung",
                  "bestellung nr.", "bestellung nr"),
    "buyer": BUYER_LABELS,
    # dates that are not the invoice's: labelled as such, so "date" alone does not take them
    "other_date": ("order date", "delivery date", "ship date", "shipping date", "service date",
                   "date of service", "check in", "check out", "bestelldatum", "lieferdatum",
                   "date de commande", "date de livraison", "fecha de pedido",
                   "data ordine", "date of delivery", "leistungsdatum", "leistungs-datum",
                   "liefer- und leistungsdatum", "auftragsdatum", "bestell-datum",
                   "competência", "competência da nfs-e", "toimituspäivä", "leveransdatum",
                   "leveringsdato"),
    "tax_id": ("vat id", "tax id", "gstin", "ust-idnr", "ein", "vat no", "p.iva", "partita iva",
               # a VAT registration number however it is labelled
               "vat number", "vat reg no", "vat reg. no.", "vat registration",
               "vat registration no", "vat registration number",
               "btw-nummer", "nip", "siret", "n° tva",
               # Latin America's tax numbers (Brazil's company and person ids, Argentina's)
               "cnpj", "cpf", "cnpj / cpf / nif", "cnpj/cpf", "cuit", "nif"),
    "subtotal": ("subtotal", "sub-total", "net amount", "zwischensumme", "net total",
                 "subtotal ex", "subtotal ex gst", "total ex gst", "total excl gst",
                 "total excluding gst",
                 "nettobetrag", "total ht", "montant ht", "imponibile", "subtotaal",
                 "base imponible", "wartość netto",
                 # the amount before tax, however it is called
                 "exclusief btw", "excl. btw", "excl btw", "totaal excl. btw", "excl. vat",
                 "excl vat", "excluding vat", "total excl. vat", "total excluding vat",
                 "total excluding tax", "total before tax", "amount before tax",
                 "total excl. tax", "total excl tax", "excl. tax", "excl tax", "total ex tax",
                 "total ex. tax",
                 "taxable amount", "tax base", "grondslag", "exkl. mwst", "exkl. mwst.",
                 "nettosumme", "summe netto", "gesamt netto", "total hors taxes",
                 "hors taxes", "montant hors taxes", "totale imponibile", "subtotale",
                 "razem netto", "rechnungssumme netto", "rechnungssumme ohne ust.",
                 "summe ohne ust.", "nettosumme", "netto", "celkem bez dph", "základ daně",
                 "cena bez daně", "celkem bez daně",
                 "kwota netto", "total parcial", "btw plichtig bedrag", "summa käibemaksuta",
                 "vahesumma", "小計", "税抜合計",
                 "sous-total", "sous-total ht", "sous total", "sous total ht",
                 "veroton", "veroton yhteensä", "yhteensä veroton", "arvonlisäveroton",
                 "exkl. moms", "summa exkl. moms", "belopp exkl. moms", "netto exkl. moms",
                 "ekskl. mva", "beløp eks. mva", "sum eks. mva", "ekskl. moms",
                 "beløb ekskl. moms",
                 # 'ex' for 'excluding', as British and Dutch invoices shorten it
                 "ex vat", "ex. vat", "total ex vat", "total ex. vat", "subtotal ex vat",
                 "net ex vat", "ex btw", "ex. btw", "totaal ex btw", "totaal ex. btw",
                 "bedrag ex btw",
                 # the taxable base, as Spanish-speaking tax authorities name it: Peru's
                 # 'Op. Gravadas', Argentina's 'Importe Neto Gravado', Spain's summed bases
                 "op. gravadas", "op. gravada", "operaciones gravadas", "gravado",
                 "neto gravado", "importe neto gravado", "total bases",
                 "total bases imponibles",
                 # Arabic: the subtotal, the total before tax
                 "المجموع الفرعي", "الإجمالي قبل الضريبة",
                 # Romanian: the total without VAT, the net value
                 "total fără tva", "total fara tva", "valoare totală fără tva",
                 "valoare totala fara tva", "total net", "valoare netă totală",
                 # Greek: value (before VAT), net value, total net value
                 "αξία", "καθαρή αξία", "σύνολο καθαρής αξίας", "συνολική καθαρή αξία"),
    "tax": ("sales tax", "mwst", "vat", "tax", "gst", "tva", "iva", "btw", "ust",
            "kwota vat",
            # the tax's amount, named as such
            "vat amount", "tax amount", "total tax", "total vat", "btw bedrag", "bedrag btw",
            "totaal btw", "mwst-betrag", "mwst. betrag", "umsatzsteuer", "mehrwertsteuer",
            "summe umsatzsteuer", "umsatzsteuerbetrag", "summe mehrwertsteuer",
            "mehrwertsteuerbetrag",
            # Brazil's state sales tax on a DANFE (a national printout's fixed box)
            "valor do icms",
            "versicherungsteuer", "versicherungssteuer",
            "montant tva", "total tva", "importe iva", "cuota iva", "totale iva", "importo iva",
            "razem vat", "steuerbetrag", "ust.-betrag", "ust. gesamt", "mwst. gesamt",
            "vat total", "tax total", "taxes", "total taxes", "dph", "kwota podatku", "mwst.",
            "ust.", "total impuestos", "impuestos", "total impuesto", "impuesto", "käibemaks",
            "käibemaksu summa",
            # the Canary Islands' IGIC and Peru's IGV (their VAT); Argentina's dotted I.V.A.
            "igic", "total igic", "cuota igic", "igv", "total igv", "i.v.a.",
            "消費税", "消費税等", "消費税額",
            "alv", "arvonlisävero", "alv yhteensä", "moms", "momsbelopp", "mva",
            "merverdiavgift", "mva-beløp", "momsbeløb",
            # Thai: value added tax, its amount
            "ภาษีมูลค่าเพิ่ม", "จำนวนภาษีมูลค่าเพิ่ม",
            # Arabic: value added tax, the tax
            "ضريبة القيمة المضافة", "الضريبة",
            # Romanian: the VAT's total, its amount
            "total tva", "tva total", "valoare tva",
            # Greek: VAT (with and without its dots), its amount, its total
            "φπα", "φ.π.α.", "ποσό φπα", "σύνολο φπα", "αξία φπα"),
    "total": ("total due", "amount due", "balance due", "grand total", "gesamtbetrag",
              # Australia's and New Zealand's tax invoices
              "total inc gst", "total inc. gst", "total incl gst", "total incl. gst",
              "total including gst",
              # a German insurance premium bill's amount
              "rechnungsbeitrag",
              # Chinese: price and tax together (a fapiao's total); Japanese
              "价税合计", "價稅合計", "（小写）", "（小寫）", "ご請求金額", "請求金額", "合計金額",
              # (Japanese 合計; a fapiao's simplified 合计 is its amount before tax)
              "合計", "税込合計",
              # Arabic: the total, the sum, the total due, the total with tax
              "الإجمالي", "المجموع", "الإجمالي المستحق", "المبلغ الإجمالي",
              "الإجمالي شامل الضريبة",
              "total ttc", "total", "amount", "invoice total", "rechnungsbetrag",
              "montant ttc", "somme à payer", "net à payer", "total a pagar", "importe total",
              "total factura",
              "totale fattura", "totale", "totaal te betalen", "totaal",
              "należność ogółem", "do zapłaty",
              # the amount to pay, however it is called
              "factuur totaal", "factuurtotaal", "totaalbedrag", "te betalen", "amount payable",
              "to pay", "amount to pay", "total to pay",
              "total payable", "total amount", "invoice amount", "total incl. vat",
              "total including vat", "totaal incl. btw", "endbetrag", "zu zahlen",
              "gesamtsumme", "summe brutto", "total à payer", "montant à payer",
              "montant total", "totale da pagare", "importe a pagar", "razem brutto",
              "razem", "rechnungssumme brutto", "rechnungssumme", "bruttosumme", "zahlbetrag",
              "endsumme", "endbetrag", "due payable", "summe gesamt", "brutto",
              "total charges", "total price", "bedrag inclusief btw", "bedrag incl. btw",
              "totaal inclusief btw", "totaalbedrag", "gesamt", "rechnungstotal",
              "celkem k úhradě", "k úhradě", "celkem s dph", "celkem", "valor total",
              "kwota należności ogółem", "należności ogółem", "kwota brutto", "summe",
              "saldo adeudado", "importe adeudado", "rekeningsbedrag", "factuurbedrag",
              "kokku", "summa kokku", "kokku tasuda", "tasuda", "arve summa",
              "maksettava", "maksettava yhteensä", "yhteensä", "loppusumma", "att betala",
              "summa att betala", "totalt", "totalbelopp", "å betale", "beløp å betale",
              "total å betale", "at betale", "i alt", "total inkl. moms", "sum inkl. mva",
              "valor líquido da nfs-e", "valor líquido", "valor total da nota",
              "total do documento",
              # Thai: the whole amount, all in
              "จำนวนเงินรวมทั้งสิ้น", "รวมทั้งสิ้น", "ยอดรวมทั้งสิ้น", "ยอดชำระ",
              # Romanian: the total to pay, the total with VAT
              "total plată", "total plata", "total de plată", "total de plata",
              "valoare totală cu tva", "valoare totala cu tva", "total cu tva",
              "total factură",
              # Greek: total, grand total, payable, the amount payable, the total amount
              "σύνολο", "γενικό σύνολο", "πληρωτέο", "πληρωτέο ποσό", "συνολικό ποσό",
              "τελικό ποσό", "σύνολο πληρωμής"),
    "vendor": SELLER_LABELS,
    "currency": ("currency", "währung", "devise", "moneda", "valuta", "waluta",
                 "valuutta", "moeda", "pénznem", "moneda facturii"),
    "line_item_count": ("lines", "line items"),
}
# capitals often drop their accents ('NET A PAYER', 'FECHA DE EMISION'): each label also
# without them
LABELS = {name: tuple(dict.fromkeys(v for label in labels for v in (label, unaccented(label))))
          for name, labels in LABELS.items()}
_LABEL_FIELD = {label: name for name, labels in LABELS.items() for label in labels}
#: A tax rate's figure before its '%' ('19', '21,00', '7.5').
_RATE_FIGURE = r"\d{1,2}(?:[.,]\d+)?"
# "VAT 20%", "Tax (21.00%)", "Umsatzsteuer von 19 %", "IVA al 21%", "VAT @ 20%"
_RATE = (r"(?:\s*\(?(?:\b(?:of|at|von|zu|à|a|de|al|du|di)\s+|@\s*)?"
         rf"{_RATE_FIGURE}\s*%\)?)?")
_LABEL_ALT = "|".join(
    re.escape(label) + (_RATE if _LABEL_FIELD[label] == "tax" else "")
    for label in sorted(_LABEL_FIELD, key=len, reverse=True)
)
_RATE_SUFFIX = re.compile(_RATE + "$")
# a rate and the amount it is taken of ('0% on 80.65', '19 % auf 100,00'): no tax amount
_RATE_ON_A_BASE = re.compile(rf"^(?P<rate>{_RATE_FIGURE})\s*%\s+(?:on|of|over|auf|von|sur|"
                             r"de|su|sobre|op|van)\s+(?P<base>[^\n]*\d[^\n]*)", re.IGNORECASE)
# the full-width colon of Chinese and Japanese text too; a label that ends in a full-width
# bracket ('（小写）', 'in figures') is followed by its value directly
_SEP = r"[ \t]*(?::|：|=|\t)[ \t]*|[ \t]+-[ \t]+| {2,}|(?<=）)"
#: What may stand between a label and its separator: the label in a second language
#: (``ΑΡΙΘΜΟΣ / NUMBER:``, ``ΦΠΑ / VAT 0%:``), the currency the amount is in (``Amount due in
#: AUD:``, ``Total (EUR):``; a code in capitals only: 'all' and 'top' are words too).
_LABEL_ASIDE = (r"(?:[ \t]*/[ \t]*[^\W\d_]+(?:[ .][^\W\d_]+){0,3}\.?"
                rf"(?:[ \t]*{_RATE_FIGURE}[ \t]*%)?)?"
                rf"(?:[ \t]+(?:in[ \t]+)?\(?(?-i:{_CODE})\)?)?")
# not the end of a longer word ('Leistungs-Datum' is no 'Datum')
_LABELED = re.compile(rf"(?<![\w.\-])(?P<label>{_LABEL_ALT}){_LABEL_ASIDE}(?P<sep>{_SEP})",
                      re.IGNORECASE)
_BOUNDARY = re.compile(r"\n| \| |; ")


@dataclass
class _Candidate:
    value: object
    confidence: float
    raw: str
    source: str


@dataclass(frozen=True)
class ExtractedField:
    name: str
    value: str  # normalized: ISO dates, amounts with two decimals, ISO currency codes
    confidence: float
    raw: str = ""
    #: where the value was read, for a document with a layout (None for plain text)
    provenance: Provenance | None = None


@dataclass(frozen=True)
class LineItem:
    """One line of an invoice's item table as read: what, how many, at what unit price, for how
    much -- what an invoice line is matched to a purchase-order line by."""

    #: the item's words, without the line number ('1.', '2)') or column separators; "" when none
    description: str
    #: None when the line shows no quantity
    quantity: float | None
    #: None when the line shows no unit price
    unit_price: float | None
    #: the line's amount (one of :attr:`InvoiceExtraction.line_items`)
    amount: float
    #: the line as it appeared (stripped)
    raw: str = ""


@dataclass
class InvoiceExtraction:
    """What the extractor found; ``confidence`` is the ``extraction_confidence`` feature.

    ``line_items`` are the item lines' amounts (the invoice_risk features sum and count them);
    ``items`` are the same lines, in the same order, read whole."""

    fields: dict[str, ExtractedField]
    confidence: float
    issues: list[str] = field(default_factory=list)
    items: list[LineItem] = field(default_factory=list)

    @property
    def line_items(self) -> list[float]:
        return [item.amount for item in self.items]

    def get(self, name: str) -> str | None:
        found = self.fields.get(name)
        return found.value if found is not None else None

    def amount(self, name: str = "total") -> float | None:
        value = self.get(name)
        return float(value) if value is not None else None

    def date(self, name: str) -> dt.date | None:
        value = self.get(name)
        return dt.date.fromisoformat(value) if value else None


def _labeled_values(text: str) -> list[tuple[str, str, str]]:
    """``(field, label, value text)`` for every 'label<sep>value' in reading order."""
    matches = list(_LABELED.finditer(text))
    out = []
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        value = text[m.end():end]
        cut = _BOUNDARY.search(value)
        if cut is not None:
            value = value[:cut.start()]
        label = re.sub(r"\s+", " ", m.group("label").lower())
        # a tax label carries its rate ("btw 21%", "vat (20%)")
        name = _LABEL_FIELD.get(label) or _LABEL_FIELD.get(_RATE_SUFFIX.sub("", label), "")
        if name == "invoice_date":  # 'Payment date': a key of its own around a date label
            name = _date_label_in_a_key(text[:m.start()], label)
        if name:
            out.append((name, label, value.strip(" \t|;,")))
    return out


def _date_label_in_a_key(before: str, label: str) -> str:
    """The field a generic date label (``date``, ``datum``) names after the words before it in
    its cell: ``Payment date`` is the due date, ``Print date`` no field, ``Billing date`` the
    invoice's."""
    cell = re.split(r"\n| \| ", before)[-1].strip()
    words = cell.split()
    if not words or len(words) > 3 or any(not w.strip(".'’").isalpha() for w in words):
        return "invoice_date"
    kind = date_key(f"{cell} {label}")
    return {DUE_DATE: "due_date", OTHER_DATE: ""}.get(kind, "invoice_date")


#: The labels' words (three letters or more), which OCR spells with a digit for a letter.
_LABEL_WORDS = frozenset(word for labels in LABELS.values() for label in labels
                         for word in re.findall(r"[^\W\d_]{3,}", label.lower()))
#: A word of Latin letters with a 1 or a 0 among them (``Bi11``, ``T0tal``), standing alone.
_DIGITS_FOR_LETTERS = re.compile(r"(?<!\w)(?=[A-Za-z01]*[A-Za-z])(?=[A-Za-z01]*[01])"
                                 r"[A-Za-z01]{3,}(?!\w)")


def _label_letters(text: str) -> str:
    """``text`` with OCR's digits for letters mended in the labels' words: ``Bi11 No.`` is
    ``Bill No.``, ``T0TAL`` is ``TOTAL``. Only a word that becomes a label's word changes, so
    identifiers (``AB10``) and amounts stay as printed."""
    def mend(m: re.Match[str]) -> str:
        word = m.group(0)
        for one in ("l", "i"):
            mended = word.replace("1", one).replace("0", "o")
            if mended.lower() in _LABEL_WORDS:
                return mended.upper() if word.upper() == word else mended
        return word
    return _DIGITS_FOR_LETTERS.sub(mend, text)


# -- document noise ----------------------------------------------------------------------------

_CONFUSIONS = re.compile(
    r"\d[OSlIB]\d"              # a letter inside a number: 2O24, 1S.96
    r"|[a-z][015][a-z]"          # a digit inside a word: insta1lation, supp1ies
    r"|\b[0158][a-z]{2,}"        # a word that starts with a digit: 5ales
    r"|\b[a-z]+[A-Z][a-z]+\b"    # case flips inside a word
)


def noise_level(text: str) -> float:
    """0 for clean text; grows with scanner damage (digit/letter confusions inside tokens)."""
    words = max(1, len(text.split()))
    return min(1.0, len(_CONFUSIONS.findall(text)) / words)


# -- the extractor -----------------------------------------------------------------------------


#: The amounts reconciled with each other (subtotal + tax = total).
_AMOUNTS = ("subtotal", "tax", "total")
#: Labelled amounts kept per field for reconciling, and label occurrences looked at in a
#: layout for them (a bare ``Total`` may head a column and label every section).
_MAX_AMOUNT_CANDIDATES = 24
_MAX_AMOUNT_LABELS = 40


class _Builder:
    def __init__(self) -> None:
        self.found: dict[str, _Candidate] = {}
        self.issues: list[str] = []
        # every labelled amount, not only the likeliest: a summary block's figures are
        # settled together (_reconcile_amounts)
        self.amounts: dict[str, list[_Candidate]] = {name: [] for name in _AMOUNTS}

    def offer(self, name: str, value: object, confidence: float, raw: str, source: str) -> None:
        if value in (None, ""):
            return
        self.note(name, value, confidence, raw, source)
        current = self.found.get(name)
        if current is None or confidence > current.confidence:
            self.found[name] = _Candidate(value, confidence, raw, source)

    def note(self, name: str, value: object, confidence: float, raw: str, source: str) -> None:
        """Keep a labelled amount as a candidate without offering it as the field's value."""
        kept = self.amounts.get(name)
        if kept is not None and len(kept) < _MAX_AMOUNT_CANDIDATES:
            kept.append(_Candidate(value, confidence, raw, source))


def _structured(text: str) -> dict[str, str] | None:
    """JSON objects and EDI-like 'INV*...~' segments as key -> value."""
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            obj = json.loads(stripped)
        except ValueError:
            return None
        if isinstance(obj, dict):
            return {str(k).lower(): str(v) for k, v in obj.items()
                    if isinstance(v, (str, int, float))}
    m = re.fullmatch(r"INV\*(.*)~", stripped, re.DOTALL)
    if m:
        keys = ("vendor", "invoice_no", "date", "amount", "currency", "due", "po", "lines")
        return dict(zip(keys, m.group(1).split("*")))
    return None


def _from_pairs(pairs: list[tuple[str, str, str]], b: _Builder, base: float) -> None:
    """Offer each (field, label, value text) read as its field's type."""
    for name, label, value in pairs:
        if name in ("buyer", "tax_id"):
            continue
        if name in ("invoice_number", "po_number"):
            if _ADDRESS.match(value):
                continue  # 'INVOICE NO | 204 Elm Avenue, Dublin': the next column's address
            ident = find_identifier(value)
            if ident and ident not in ("-",):
                b.offer(name, ident, base * (0.6 if _doubtful_identifier(ident) else 1.0),
                        value, f"label:{label}")
            elif name == "invoice_number" and re.fullmatch(r"[ \t]*\d{1,2}[ \t]*", value):
                # a tenant's first invoices: 'Invoice Number: 1' (alone after its label)
                b.offer(name, value.strip(), base * 0.8, value, f"label:{label}")
        elif name in ("invoice_date", "due_date"):
            found = find_date(value)
            if found is not None:
                dates, raw = found
                b.offer(name, dates, base, raw, f"label:{label}")
        elif name in ("subtotal", "tax", "total"):
            if _VAT_NUMBER.match(value):
                continue  # 'TVA : FR11999999998 - SIRET ...': the tax label of a VAT number
            # a date beside the amount ('due on August 3 , 2014 $4.11') holds no amount
            dated = find_date(value)
            monies = [m for m in find_money(value.replace(dated[1], " ") if dated else value)
                      if not _words_follow(value, m)]
            if monies:
                # also column headers and bare words ('Summe' may be the net before the tax,
                # 'Gesamt' an item column's)
                weak = label in ("amount", "total", "summe", "gesamt", "celkem", "合計")
                confidence = base - (0.03 if weak else 0.0)
                if name == "total" and len(monies) == 2 and \
                        monies[1].amount > monies[0].amount > 0 and \
                        monies[0].currency == monies[1].currency:
                    # a table's total row run into one cell ('TOTAL: 67.59 309.00': the tax
                    # column's sum, then the total column's): the last, larger one is the total
                    monies = [monies[1], monies[0]]
                b.offer(name, monies[0], confidence, monies[0].raw, f"label:{label}")
                for other in monies[1:3]:  # the base a rate applies to comes first
                    b.note(name, other, confidence - 0.1, other.raw, f"label:{label}")
                _note_summary_row(monies, b, confidence - 0.05, label)
        elif name == "currency":
            code = value.strip().upper()[:3]
            if code in CURRENCY_CODES:
                b.offer("currency", code, base, value, f"label:{label}")
        elif name == "vendor":
            # the name without what follows its legal form; a value without letters is some
            # other key's that ends in the word ('Certificado emisor: 30001000000300023708')
            # ('Prodejce | Provider': a heading beside it is no name either)
            if sum(ch.isalpha() for ch in value) >= 2 and not _is_label(value) and \
                    not is_name_key(value) and \
                    not is_party_heading(value):  # 'Nome / Nome Empresarial', 'Dati cliente'
                b.offer("vendor", company_name(value) or value.strip(), base, value,
                        f"label:{label}")
        elif name == "line_item_count":
            if value.strip().isdigit():
                b.offer("line_item_count", int(value.strip()), base, value, f"label:{label}")


#: A street address: a house number, words, a comma and a town (``204 Elm Avenue, Dublin``).
_ADDRESS = re.compile(r"^\d{1,5}[a-zA-Z]?[ \t]+[^\W\d_]+(?:[ \t]+[^\W\d_.]+\.?)*,[ \t]*[^\W\d_]")

#: A VAT number right after a tax label ('FR11999999998', 'FR 32 123 456 789', 'DE123456789').
_VAT_NUMBER = re.compile(r"^[\s:.#-]*[A-Z]{2}[ ]?(?:\d[ .]?){8,}")  # (BE0123.456.789 too)


def _words_follow(value: str, money: Money) -> bool:
    """Whether a bare whole number in a labelled value is followed by a word, as in an
    address or a period: ``35 rue d'ici`` under a ``TAX`` is no tax, nor ``15 days``. A
    figure with cents or a currency is an amount whatever follows it (``29.99 € TTC``,
    ``5.102,29 PLN Account 27943968``)."""
    if money.currency or re.search(r"[.,]\d{1,2}$", money.raw):
        return False
    at = value.find(money.raw)
    if at < 0:
        return False
    after = re.split(r"[,;|()]", value[at + len(money.raw):])[0].split()
    return bool(after) and re.fullmatch(r"[^\W\d_]{2,}.*", after[0]) is not None and \
        after[0].lower().strip(".") not in _AMOUNT_QUALIFIERS


#: Words that may follow an amount and leave it one ('29.99 € TTC', '100.00 net').
_AMOUNT_QUALIFIERS = frozenset({
    "ttc", "ht", "incl", "excl", "inkl", "exkl", "net", "netto", "gross", "brutto", "only",
    "vat", "tax", "tva", "btw", "mwst", "iva", "gst", "cr", "dr", "due", "total", "paid",
})


def _note_summary_row(monies: list[Money], b: _Builder, confidence: float, label: str) -> None:
    """A total row of a tax summary (``Razem: 257,59 23 59,24 316,83``, ``Total facture |
    24.99 | 5.00 | 29.99``): two of its amounts that add up to a later one are the net
    amount, the tax and the total, candidates for reconciling."""
    head = monies[:5]
    for i, net in enumerate(head):
        for j in range(i + 1, len(head)):
            for gross in head[j + 1:]:
                if net.amount > 0 and head[j].amount > 0 and \
                        abs(net.amount + head[j].amount - gross.amount) <= 0.015:
                    source = f"label:{label}"
                    b.note("subtotal", net, confidence, net.raw, source)
                    b.note("tax", head[j], confidence, head[j].raw, source)
                    b.note("total", gross, confidence, gross.raw, source)
                    return


_EMAIL_NUMBER = re.compile(
    r"\b(?:invoice|\w*rechnung|facture|factura|fattura|factuur|faktura|credit note|avoir|"
    # an e-invoice's type code, after a word of the type's name: '(380)', 'Bau (875)'
    r"gutschrift|creditnota|arve)(?:(?:[ \t]+[^\W\d_]+)?[ \t]*\(\d{3}\))?"
    r"(?:\s+(?:no\.?|number|nr\.?|#|numero|número)\s+|\s+(?:n°|nº|n\.)\s*|\s+)"
    r"(#?[A-Za-z0-9][A-Za-z0-9/\-#_]*\d[A-Za-z0-9/\-_]*)", re.IGNORECASE)
# the date after the number, perhaps past two words of a note ('Nr. 210111 mit LV vom ...')
_NUMBER_DATED = re.compile(r"(?:[ \t]+[^\W\d_]{1,6}){0,2}?"
                           r"[ \t]*,?[ \t]*(?:du|dated|of|vom|von|del|van|z dnia|issued at|"
                           r"issued on)[ \t]+"
                           r"(?P<v>[^\n]{4,30})", re.IGNORECASE)
_EMAIL_AMOUNT = re.compile(
    r"(?:amount of|amounting to|amount:|total of|total:|for)\s+(?P<v>[^\s(].{0,24})"
    r"|\((?P<p>[^()]{1,24})\)", re.IGNORECASE)
# 'Payable on or before 5/24/2024'; 'Zahlbar innerhalb 30 Tagen netto bis 04.04.2018',
# 'ohne Abzug bis ...' is due then; a discount's date ('Zahlbar mit 2% Skonto bis
# 14.11.2018') is not
_EMAIL_DUE = re.compile(r"(?:(?:payable|due|pay|payment)\s+(?:on\s+or\s+)?before|"
                        r"due by|due date:?|due on|payable by|payable until|pay until|"
                        r"remit until|remit by|bis zum|"
                        r"(?:zahlbar|ohne abzug|überweis\w*)(?:(?!skonto)[^\n.;]){0,40}?\bbis|"
                        r"avant le)\s+(?P<v>.{4,24})", re.IGNORECASE)
_EMAIL_PO = re.compile(r"\bPO\s+(?P<v>(?:P\.O\. )?[A-Z0-9][\w/\-.]*\d)", re.IGNORECASE)


# a date label and the date after a single space, in running text
_DATE_AFTER_LABEL = re.compile(
    r"(?<![\w.])(?P<label>" + "|".join(
        re.escape(label) for label in sorted(
            (lb for lb, f in _LABEL_FIELD.items()
             if f in ("invoice_date", "due_date", "other_date")),  # 'Order date' is none
            key=len, reverse=True)) + r")[ \t]+(?P<v>\d[^\n]{5,24})", re.IGNORECASE)


#: A letter's dateline, a line of its own: a place and the date (``Musterstadt 29.10.2023``,
#: ``München, den 01.11.2024``, ``Paris, le 3 mars 2026``).
_DATELINE = re.compile(r"^[ \t]*[A-ZÄÖÜÉ][^\W\d_]+(?:[ -][A-ZÄÖÜÉ][^\W\d_]+){0,2},?"
                       r"(?:[ \t]+(?:den|le|el|il|am|on))?[ \t]+(?P<v>\d[^\n|]{5,20}?|"
                       r"[^\W\d_]{3,10}\.? \d[^\n|]{3,12}?)[ \t]*$", re.MULTILINE)


def _from_prose(text: str, b: _Builder) -> None:
    """E-mails and letters: phrase patterns, a notch less sure than labels."""
    for m in _EMAIL_NUMBER.finditer(text):
        if "\n" in m.group(0) and not re.match(r"[ \t]*(?:$|\n| \| )", text[m.end():]):
            continue  # 'INVOICE' over '12 Kingsway, Leeds': an address, not the number
        b.offer("invoice_number", m.group(1).rstrip(".,;:"), 0.85, m.group(0), "prose")
        # 'Facture n°562044387 du 02 Juillet 2015', 'invoice 7731 dated 1 Nov 2026'
        dated = _NUMBER_DATED.match(text, m.end())
        found = find_date(dated.group("v")) if dated else None
        if found is not None:
            b.offer("invoice_date", found[0], 0.85, found[1], "prose")
        break
    for m in _EMAIL_AMOUNT.finditer(text):
        if m.group("p") and re.search(r"\|[ \t]*$", text[max(0, m.start() - 4):m.start()]):
            continue  # a laid-out cell's '(35,13 €)' after its label: that label's amount
        chunk = m.group("v") or m.group("p") or ""
        monies = [x for x in find_money(chunk) if x.currency]
        if monies:
            b.offer("total", monies[0], 0.85, monies[0].raw, "prose")
            break
    for m in _EMAIL_DUE.finditer(text):
        found = find_date(m.group("v"))
        if found is not None:
            b.offer("due_date", found[0], 0.85, found[1], "prose")
            break
    for m in _DATE_AFTER_LABEL.finditer(text):  # 'scadenza 14/10/2026', 'Datum 3.4.2026'
        name = _LABEL_FIELD.get(m.group("label").lower())
        found = find_date(m.group("v"))
        if name in ("invoice_date", "due_date") and found is not None and \
                m.group("v").startswith(found[1]):
            b.offer(name, found[0], 0.85, found[1], f"label:{m.group('label').lower()}")
    for m in _EMAIL_PO.finditer(text):
        b.offer("po_number", m.group("v"), 0.85, m.group(0), "prose")
        break
    if "invoice_date" not in b.found:
        _date_under_the_title(text, b)
    if "invoice_date" not in b.found:
        _date_beside_the_title(text, b)
    if "invoice_date" not in b.found:
        for m in _DATELINE.finditer(text):  # the letter's date, when nothing labels one
            found = find_date(m.group("v"))
            if found is not None and found[1] == m.group("v").strip():
                b.offer("invoice_date", found[0], 0.75, found[1], "dateline")
                break
    if "invoice_date" not in b.found:
        _only_date(text, b)


def _only_date(text: str, b: _Builder) -> None:
    """An invoice shows at least its date of issue: when nothing labels one and the whole
    document shows one date only (a title block's '02/03/2026' under FACTURE and its
    number), not on a line that names it another date (a due, delivery or order date),
    that date is the invoice's."""
    dates: dict[tuple[dt.date, ...], str] = {}
    for kind, pattern in _DATE_PATTERNS:
        for m in pattern.finditer(text):
            readings = _readings(kind, *m.groups())
            if readings:
                start = text.rfind("\n", 0, m.start()) + 1
                line = text[start:text.find("\n", m.end())]
                before = text[start:m.start()].split(" | ")[-1].strip()
                if _names_another_date(line) or before.endswith(":") or \
                        (before and is_key(before)):
                    return  # a labelled date: the labels' readings have judged it
                dates.setdefault(tuple(readings), m.group(0))
    if len(dates) == 1:
        (readings, raw), = dates.items()
        due = b.found.get("due_date")
        if due is None or list(readings) != list(due.value):  # type: ignore[call-overload]
            b.offer("invoice_date", list(readings), 0.7, raw, "the only date")


#: A due, delivery or order date's label as whole words (compiled once: tried per date)
_ANOTHER_DATE = re.compile(r"(?<![\w])(?:" + "|".join(
    re.escape(label) for name in ("due_date", "other_date")
    for label in sorted(LABELS[name], key=len, reverse=True)) + r")(?![\w])")


def _names_another_date(line: str) -> bool:
    return _ANOTHER_DATE.search(line.lower()) is not None


#: How sure a value is whose key no label list holds, read from the key's form (keys.py).
_UNKNOWN_KEY_CONFIDENCE = 0.7


def _from_unknown_keys(text: str, b: _Builder) -> None:
    """The invoice's number and dates under keys no label names (``Document number``,
    ``Dated``, ``Settle by``; :mod:`.keys`), and under listed labels whose values the
    labelled readings did not reach (a key over its value on the next line), for the fields
    nothing else gave as surely: the first such value of each, the date the whole value and
    the identifier no date."""
    wanted = {name for name in ("invoice_number", "invoice_date", "due_date")
              if name not in b.found or b.found[name].confidence < _UNKNOWN_KEY_CONFIDENCE}
    for key, value in key_value_pairs(text):
        if not wanted:
            return
        # a listed label counts as the key of its own field only ('Customer PO' is no number)
        listed = _LABEL_FIELD.get(key.lower()) or _LABEL_FIELD.get(key.lower().rstrip(".#"))
        found = find_date(value)
        if found is not None:
            name = {INVOICE_DATE: "invoice_date", DUE_DATE: "due_date"}.get(date_key(key))
            if name in wanted and listed in (None, name) and \
                    len(found[1]) >= 0.8 * len(value.strip()):
                b.offer(name, found[0], _UNKNOWN_KEY_CONFIDENCE, found[1], f"key:{key}")
                wanted.discard(name)
        elif "invoice_number" in wanted and listed in (None, "invoice_number") and \
                number_key(key):
            ident = find_identifier(value)
            if ident and len(ident) >= 0.5 * len(value.strip()):
                b.offer("invoice_number", ident, _UNKNOWN_KEY_CONFIDENCE, value, f"key:{key}")
                wanted.discard("invoice_number")


def _is_label(cell: str) -> bool:
    """Whether a line's cell is one of the fields' labels ('INVOICE NO' above its value)."""
    return _LABELED.search(cell) is not None or \
        cell.strip().lower().rstrip(":#. ") in _LABEL_FIELD


def _vendor(text: str, b: _Builder) -> None:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return
    if lines[0].lower().startswith("subject:"):  # e-mail: signature's last line, or subject
        subject = lines[0]
        m = re.search(r"\bfrom (.+)$", subject) or re.search(r"^Subject:\s*(.+?) - invoice", subject)
        tail = company_name(lines[-1])
        if tail and COMPANY_SUFFIX.search(tail):
            agree = m is not None and m.group(1).strip() == tail
            b.offer("vendor", tail, 0.93 if agree else 0.85, lines[-1], "signature")
        elif m:
            b.offer("vendor", m.group(1).strip(), 0.8, subject, "subject")
        return
    guess = find_vendor(text, _is_label)
    if guess is not None:
        b.offer("vendor", guess.name, guess.confidence, guess.raw,
                "letterhead" if "letterhead" in guess.evidence else "page")


# -- line items --------------------------------------------------------------------------------

_ITEM_PATTERNS = (
    re.compile(r"=\s*(?P<v>[\d.,]+)\s*$"),                          # 2 x Item @ 4.00 = 8.00
    re.compile(r"^(?:\d+\.\s+)?[^|\n]+\|\s*\d+\s*\|[^|]*\|\s*(?P<v>[\d.,]+)\s*$"),  # a | q | u | t
    re.compile(r"^[^\t\n]+\t\d+\t(?P<v>[\d.,]+)\s*$"),            # item<TAB>qty<TAB>amount
)


_NOT_AN_ITEM = re.compile(r"\b(?:IBAN|BIC|Account|Acct|Routing|Sort code|Payment terms)\b",
                          re.IGNORECASE)


def _item_amount(line: str) -> tuple[float, int] | None:
    """The amount of ``line`` (stripped) when it is an item line, and where the amount starts;
    None when it is not one.

    These rules decide which lines are items and what they amount to -- ``line_items`` and the
    invoice_risk features built on them -- so reading more of a line must not change them: a
    line ending in '= 8.00', a pipe table row 'a | q | u | t', 'item<TAB>qty<TAB>amount', else
    a line that starts with a letter, holds a bare number and two or more amounts (the last)."""
    if not line or _LABELED.match(line) or _NOT_AN_ITEM.search(line):
        return None
    for pattern in _ITEM_PATTERNS:
        m = pattern.search(line)
        if m:
            return to_number(m.group("v")), m.start("v")
    monies = list(_money_matches(line))
    if len(monies) >= 2 and re.match(r"[A-Za-z]", line) and re.search(r"\s\d+\s", line):
        money, match = monies[-1]
        return money.amount, match.start()
    return None


def _line_items(text: str) -> list[LineItem]:
    """The item lines of ``text``, in order, each read whole (see :func:`_read_item`)."""
    items: list[LineItem] = []
    for line in text.splitlines():
        line = line.strip()
        found = _item_amount(line)
        if found is not None:
            items.append(_read_item(line, *found))
    return items


#: words that say a number counts something ('12 h', '3 pcs', '2x'): a quantity, not a price
_UNIT_WORDS = (r"h|hrs?|hours?|pcs?|pieces?|units?|x|\u00d7|ea|each|kg|m|l|lots?|box(?:es)?|days?|"
               r"weeks?|months?|stk|st")
_UNIT = re.compile(rf"(?:{_UNIT_WORDS})\.?", re.IGNORECASE)
_UNIT_AFTER = re.compile(rf"[ \t]*(?:{_UNIT_WORDS})\.?(?!\S)", re.IGNORECASE)
#: what stands between or beside an item line's numbers and reads as neither words nor number:
#: a rate ('20%'), a number not read as an amount, punctuation ('-', '=', '@')
_FILLER = re.compile(r"\(?\d{1,2}(?:[.,]\d+)?%\)?|%|\d+(?:[.,]\d+)*|[^\w\s]+")
_COLUMN_SEP = re.compile(r"[ \t]*[|\t][ \t]*| {2,}")
_LINE_NUMBER = re.compile(r"^\d{1,3}[.)]\s+")          # '1. ', '2) '
_QTY_FIRST = re.compile(rf"^(?P<q>{_NUM})[ \t]*[xX\u00d7*][ \t]+(?P<d>.+)$")  # '2 x Item'
_QTY_LAST = re.compile(  # 'Item (2', 'Hours 3 h'
    rf"^(?P<d>.*?\S)[\s(]+(?P<q>{_NUM})(?:[ \t]*(?:{_UNIT_WORDS})\.?)?$", re.IGNORECASE)


@dataclass(frozen=True)
class _Number:
    """A number of an item line, with what its writing says it is."""

    value: float
    quantity: bool  # written with a unit word ('12 h'): a quantity
    price: bool     # written with a currency ('EUR 4.50'): a price
    whole: bool     # written without decimals ('12'): more likely a quantity


@dataclass(frozen=True)
class _Token:
    """A piece of an item line: a number, a filler or a word, and where it starts."""

    start: int
    number: _Number | None  # None for words and fillers
    word: bool              # words (a description's), not a number or a filler


def _tokens(text: str, offset: int = 0) -> list[_Token]:
    """``text`` as numbers (an amount standing alone between spaces, with its currency and its
    unit word: 'EUR 1 828,06', '12 h', '3x'), fillers and words, starting at ``offset``.
    A number glued to a word is part of the word ('HP 305A', '24-port', '(box of 12)')."""
    found: list[_Token] = []
    taken: list[tuple[int, int]] = []
    for money, m in _money_matches(text):
        unit = _UNIT_AFTER.match(text, m.end())
        stop = unit.end() if unit else m.end()
        if (m.start() and not text[m.start() - 1].isspace()) or (
                stop < len(text) and not text[stop].isspace()):
            continue
        whole = re.search(r"[.,]\d{1,2}$", m.group("num")) is None
        number = _Number(money.amount, unit is not None, bool(money.currency), whole)
        found.append(_Token(offset + m.start(), number, False))
        taken.append((m.start(), stop))
    for chunk in re.finditer(r"\S+", text):
        if any(start <= chunk.start() < stop for start, stop in taken):
            continue
        word = chunk.group()
        filler = (_UNIT.fullmatch(word) or _FILLER.fullmatch(word) or _currency_of(word)
                  or word.upper() in CURRENCY_CODES)
        found.append(_Token(offset + chunk.start(), None, not filler))
    return sorted(found, key=lambda t: t.start)


def _cells(text: str) -> list[list[_Token]]:
    """``text``'s columns (split at pipes, tabs and runs of spaces), each as its tokens."""
    bounds = [0]
    for sep in _COLUMN_SEP.finditer(text):
        bounds += [sep.start(), sep.end()]
    bounds.append(len(text))
    cells = [_tokens(text[a:b], a) for a, b in zip(bounds[::2], bounds[1::2], strict=True)]
    return [cell for cell in cells if cell]


_Reading = tuple[str, list[_Number]]  # (description, numbers)


def _trailing_numbers(head: str, units: list[list[_Token]]) -> _Reading:
    """``head`` split where its trailing run of numbers (and fillers) starts: the description
    before it, the numbers in it. Fillers before the run's first number stay in the description
    ('Storage box 2 ...': 'box' is a unit word, but here a word)."""
    end = len(units)
    while end and not any(t.word for t in units[end - 1]):
        end -= 1
    first = next((i for i in range(end, len(units))
                  if any(t.number is not None for t in units[i])), len(units))
    start = units[first][0].start if first < len(units) else len(head)
    numbers = [t.number for unit in units[first:] for t in unit if t.number is not None]
    return head[:start], numbers


def _at_reading(head: str) -> _Reading | None:
    """'2 x Item @ 4.00 =', 'Item (2 @ 4.00)', 'Hours: 32.5 @ $140/h =': the quantity before
    the '@' (before or after the item's words), the unit price the first amount after it."""
    left, _, right = head.rpartition("@")
    price = next(iter(_money_matches(right)), None)
    if price is None or right[:price[1].start()].strip():
        return None  # no price right after an '@' ('info@example.com')
    left = left.strip()
    numbers: list[_Number] = []
    m = _QTY_FIRST.match(left) or _QTY_LAST.match(left)
    if m:
        left = m.group("d")
        numbers.append(_Number(to_number(m.group("q")), True, False, True))
    numbers.append(_Number(price[0].amount, False, True, False))
    return left, numbers


def _item_readings(head: str) -> list[_Reading]:
    """The ways to split the text before an item line's amount into description and numbers,
    most telling first: around an '@'; by columns, when the line has some (a description may end
    in a number: 'Copy paper 80 g  10  4.50', '... du 1er au 31 Juillet 2015 | 29.99'); word by
    word (columns run together in a scan)."""
    readings: list[_Reading] = []
    at = _at_reading(head)
    if at is not None:
        readings.append(at)
    if _COLUMN_SEP.search(head):
        readings.append(_trailing_numbers(head, _cells(head)))
    readings.append(_trailing_numbers(head, [[t] for t in _tokens(head)]))
    return readings


def _quantity_and_price(numbers: list[_Number], amount: float
                        ) -> tuple[float | None, float | None, bool]:
    """``(quantity, unit price, checked)``: the pair of ``numbers`` whose product is ``amount``
    (within a cent or 0.5%: :func:`_close`), preferring the written order and what the writing
    says (a unit word for the quantity, a currency for the price); else a lone number for what
    it looks like (unchecked); else nothing -- a pair that does not make the amount is no
    quantity and price."""
    pairs = [(i, j) for i, q in enumerate(numbers) for j, u in enumerate(numbers)
             if i != j and not q.price and not u.quantity and _close(q.value * u.value, amount)]
    if pairs:
        i, j = max(pairs, key=lambda p: (
            p[0] < p[1], numbers[p[0]].quantity + numbers[p[1]].price + numbers[p[0]].whole,
            p[1] - p[0] == 1, -p[0]))
        return numbers[i].value, numbers[j].value, True
    if len(numbers) == 1:
        lone = numbers[0]
        if not (lone.quantity or (lone.whole and not lone.price)):
            return None, lone.value, False
        if amount and lone.value * 0.01 > amount:
            return None, None, False  # each for less than a cent: a reference number, no count
        return lone.value, None, False
    return None, None, False


def _description(text: str) -> str:
    """An item's words: separators and surrounding punctuation gone, whitespace collapsed."""
    text = re.sub(r"[\s|]+", " ", text)
    return re.sub(r"^[\s:;,=@*#\u2013\u2014-]+|[\s:;,=@*#(\u2013\u2014-]+$", "", text)


def _read_item(line: str, amount: float, end: int) -> LineItem:
    """An item ``line`` whose ``amount`` starts at ``end`` read as description, quantity and unit
    price: the first reading of the text before the amount whose quantity times unit price is
    the amount; else the most telling reading, with a lone quantity or price as written."""
    head = _LINE_NUMBER.sub("", line[:end])
    readings = [(text, _quantity_and_price(numbers, amount))
                for text, numbers in _item_readings(head)]
    text, (quantity, price, _) = next((r for r in readings if r[1][2]), readings[0])
    return LineItem(_description(text), quantity, price, amount, line)


def _close(a: float, b: float, rel: float = 0.005) -> bool:
    return abs(a - b) <= max(0.011, rel * max(abs(a), abs(b)), 1.0 if max(a, b) > 1000 else 0)


# a date of numbers only, day and month in an order the numbers may not tell ('3/09/2015')
_NUMERIC_DATE = re.compile(r"\b(\d{1,2})[/\-](\d{1,2})[/\-](?:\d{4}|\d{2})\b")


def _orders_shown(text: str) -> set[str]:
    """The day/month orders the document's numeric dates show where a number above 12 tells:
    ``dmy`` for ``29/06/2016``, ``mdy`` for ``6/29/2016``. A document keeps one order, so a
    date that could be either is read in the one its other dates show."""
    shown = set()
    for m in _NUMERIC_DATE.finditer(text):
        first, second = int(m.group(1)), int(m.group(2))
        if first > 12 >= second:
            shown.add("dmy")
        elif second > 12 >= first:
            shown.add("mdy")
    return shown


def _reading_order(raw: str, date: dt.date) -> str | None:
    m = _NUMERIC_DATE.search(raw)
    if m is None:
        return None
    first, second = int(m.group(1)), int(m.group(2))
    if (date.day, date.month) == (first, second):
        return "dmy"
    return "mdy" if (date.month, date.day) == (first, second) else None


def _resolve_dates(b: _Builder, text: str) -> None:
    """Pick day/month order jointly: the order the document's other dates show, else the
    pair whose gap is a usual payment term; flag a due date before the invoice date."""
    inv = b.found.get("invoice_date")
    due = b.found.get("due_date")
    inv_opts = list(inv.value) if inv else [None]  # type: ignore[call-overload]
    due_opts = list(due.value) if due else [None]  # type: ignore[call-overload]
    shown = _orders_shown(text)
    order = next(iter(shown)) if len(shown) == 1 else None

    def agrees(cand: _Candidate | None, date: dt.date | None) -> float:
        if order is None or cand is None or date is None:
            return 0.0
        return 3.0 if _reading_order(cand.raw, date) == order else 0.0

    def score(pair: tuple[dt.date | None, dt.date | None]) -> float:
        i, d = pair
        told = agrees(inv, i) + agrees(due, d)
        if i is None or d is None:
            return told
        gap = (d - i).days
        return told + (2.0 if gap in (0, 7, 10, 14, 15, 21, 28, 30, 31, 45, 60, 90) else (
            1.0 if 0 <= gap <= 120 else -1.0))

    pairs = [(i, d) for i in inv_opts for d in due_opts]
    best = max(pairs, key=score)
    for cand, chosen, opts in ((inv, best[0], inv_opts), (due, best[1], due_opts)):
        if cand is None or chosen is None:
            continue
        cand.value = chosen
        if len(opts) > 1:  # day/month order ambiguous: sure only when the document settles it
            cand.confidence *= 0.95 if score(best) >= 2.0 or order is not None else 0.6
    if best[0] is not None and best[1] is not None and best[1] < best[0]:
        b.issues.append("due_date_before_invoice_date")
        for cand in (inv, due):
            if cand is not None:
                cand.confidence *= 0.6


def _reconcile_amounts(b: _Builder) -> None:
    """When the likeliest subtotal, tax and total do not add up, the labelled amounts that do.

    A summary block's figures are read together by people: ``Subtotal`` may label a section's
    subtotal first and the invoice's last, a tax line may quote the base before the tax
    (``Tax 15% on $ 112.90 $ 16.94``), a ``Subtotaal`` may include the tax beside an
    ``Exclusief BTW`` that does not, and a ``Total`` row of a table may be the net column.
    Among the labelled candidates (a total's also stand for the net amount), the triple with
    net + tax = total and the most label confidence wins, a triple keeping the likeliest
    total first. A credit note's amounts are all negative: its triple is sought among them."""
    total, sub, tax = (b.found.get(k) for k in ("total", "subtotal", "tax"))
    if total is not None and sub is not None and tax is not None and \
            abs(sub.value.amount + tax.value.amount - total.value.amount) <= 0.015:  # type: ignore[attr-defined]
        _net_above_its_tax(b)
        return

    likeliest = round(total.value.amount, 2) if total is not None else None  # type: ignore[attr-defined]
    chosen: tuple[float, _Candidate, _Candidate, _Candidate] | None = None
    for sign in (1, -1):  # an invoice's amounts, or a credit note's, all below zero
        totals = _signed_pool(b, "total", sign)
        taxes = _signed_pool(b, "tax", sign, zero=True)  # tax-exempt: a tax of 0.00
        nets = _signed_pool(b, "subtotal", sign) + _signed_pool(b, "total", sign, 0.9)
        for t in totals:
            t_amount = t.value.amount  # type: ignore[attr-defined]
            for n in nets:
                n_amount = n.value.amount  # type: ignore[attr-defined]
                if sign * n_amount > sign * t_amount:
                    continue
                for x in taxes:
                    x_amount = x.value.amount  # type: ignore[attr-defined]
                    currencies = {c.value.currency for c in (t, n, x)} - {""}  # type: ignore[attr-defined]
                    if len(currencies) > 1 or abs(n_amount + x_amount - t_amount) > 0.015:
                        continue
                    score = t.confidence + n.confidence + x.confidence + (
                        0.5 if round(t_amount, 2) == likeliest else 0.0)
                    if chosen is None or score > chosen[0]:
                        chosen = (score, t, n, x)
    if chosen is None:
        return
    for name, cand in zip(("total", "subtotal", "tax"), chosen[1:]):
        b.found[name] = _Candidate(cand.value, cand.confidence, cand.raw, cand.source)
    _net_above_its_tax(b)


def _net_above_its_tax(b: _Builder) -> None:
    """A net amount and a tax that add up to the total each way round: the larger is the net
    (no sales tax or VAT is more than the amount it is taken of). A summary whose labels
    stand apart from its figures (``TVA 9% | TVA 19% | TVA TOTAL`` over ``1.49 | 17.56 |
    19.05``, the bases below) can give each the other's."""
    sub, tax = b.found.get("subtotal"), b.found.get("tax")
    if sub is not None and tax is not None and \
            abs(tax.value.amount) > abs(sub.value.amount) > 0:  # type: ignore[attr-defined]
        b.found["subtotal"], b.found["tax"] = tax, sub


def _signed_pool(b: _Builder, name: str, sign: int, factor: float = 1.0,
                 zero: bool = False) -> list[_Candidate]:
    """The labelled candidates of an amount of one sign (and 0.00 with ``zero``), the most
    confident of each amount, their confidence times ``factor``."""
    best: dict[float, _Candidate] = {}
    for c in b.amounts[name]:
        amount = round(c.value.amount, 2)  # type: ignore[attr-defined]
        if (sign * amount > 0 or (zero and amount == 0)) and (
                amount not in best or c.confidence > best[amount].confidence):
            best[amount] = _Candidate(c.value, c.confidence * factor, c.raw, c.source)
    return list(best.values())


def _total_that_adds_up(b: _Builder, text: str) -> None:
    """No total labelled, but a subtotal and a tax are: the amount printed that is their sum
    is the total (Fakturoid prints it bold under the tax line, without a word)."""
    sub, tax = b.found.get("subtotal"), b.found.get("tax")
    if "total" in b.found or sub is None or tax is None or tax.value.amount <= 0:  # type: ignore[attr-defined]
        return
    want = round(sub.value.amount + tax.value.amount, 2)  # type: ignore[attr-defined]
    for money in find_money(text):
        if abs(money.amount - want) <= 0.005 and \
                money.currency in ("", sub.value.currency):  # type: ignore[attr-defined]
            b.offer("total", money, min(sub.confidence, tax.confidence) - 0.1, money.raw,
                    "subtotal + tax")
            return


def _check_amounts(b: _Builder, items: list[float]) -> None:
    total, sub, tax = (b.found.get(k) for k in ("total", "subtotal", "tax"))
    amount = lambda c: c.value.amount  # noqa: E731
    if total is not None and sub is not None:
        expected = amount(sub) + (amount(tax) if tax is not None else 0.0)
        if _close(expected, amount(total)):
            for c in (total, sub, tax):
                if c is not None:
                    c.confidence = max(c.confidence, 0.97)
        else:
            b.issues.append("totals_do_not_add_up")
            for c in (total, sub, tax):
                if c is not None:
                    c.confidence *= 0.6
    base = sub or total
    if items and base is not None:
        target = amount(base) if sub is not None else amount(base) - (
            amount(tax) if tax is not None else 0.0)
        if _close(sum(items), target, 0.01):
            base.confidence = max(base.confidence, 0.98)
            if total is not None and "totals_do_not_add_up" not in b.issues:
                total.confidence = max(total.confidence, 0.95)
        else:
            b.issues.append("line_items_do_not_add_up")
    currencies = {c.value.currency for c in (total, sub, tax) if c is not None and c.value.currency}
    if len(currencies) > 1:
        b.issues.append("several_currencies")
        if total is not None:
            total.confidence *= 0.7


def _bank_account(text: str, b: _Builder) -> None:
    # an IBAN's groups are separated by single spaces, never a line break (the next line's
    # first letter is no part of it)
    iban = r"([A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,4})?)\b"
    # after its label, also with the country apart from the check digits ('DE 5463 2168 ...')
    labelled = (r"([A-Z]{2}(?:\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}| \d{4}(?:[ ]?[A-Z0-9]{4}){1,6})"
                r"(?:[ ]?[A-Z0-9]{1,4})?)\b")
    # 'IBAN: ...', and a laid-out 'Verkäufer-IBAN | : DE54 ...' whose colon is a cell apart;
    # a field that gives the domestic account number first ('IBAN: 12.34.56.789 NL69 ...')
    m = re.search(r"\bIBAN(?:[ \t]*\|)?[:\s]+(?:\d[\d.]*[ \t]+)?" + labelled, text)
    if m:
        b.offer("bank_account", re.sub(r"\s+", "", m.group(1)), 0.9, m.group(0), "iban")
        return
    m = re.search(r"\b(?:Bank ?account|Account|Acct)\.?\s*(?:no\.?|number)?[:\s]+" + iban, text,
                  re.IGNORECASE)
    if m and m.group(1)[:2].isupper():
        b.offer("bank_account", re.sub(r"\s+", "", m.group(1)), 0.88, m.group(0), "iban")
        return
    for m in _IBAN_CANDIDATE.finditer(text):
        # grouped otherwise than in fours ('FR76 10107 00245 ...') or unlabelled ('pay to NL91
        # ABNA ...'): the ISO 13616 check digits say whether it is an IBAN at all
        iban = _checked_iban(m.group(0))
        if iban:
            b.offer("bank_account", iban, 0.85, m.group(0), "iban")
            return
    # a domestic account number, perhaps in groups ('Account Number: 1123 4567 2345 8765')
    m = re.search(r"\b(?:Account|Acct|Kto|Konto|Nr konta|Numer konta|Rachunek|Kontonummer|"
                  r"Tilinumero)\.?[ \t]*(?:no\.?|nr\.?|number|-Nr\.)?[ \t]*[: \t][ \t]*"
                  r"(\d(?:[ ]?\d){5,33})(?![\w/.-])", text, re.IGNORECASE)
    if m:
        b.offer("bank_account", m.group(1).replace(" ", ""), 0.8, m.group(0), "account")
        return
    # a Polish account number (NRB: 26 digits, two then six groups of four) on a line of
    # its own, under the bank's name rather than a label
    m = re.search(r"^[ \t]*(\d{2}(?: \d{4}){6})[ \t]*$", text, re.MULTILINE)
    if m:
        b.offer("bank_account", m.group(1).replace(" ", ""), 0.75, m.group(0), "account")


_IBAN_CANDIDATE = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{1,11}){2,9}\b")


def _checked_iban(raw: str) -> str | None:
    """The longest run of ``raw``'s space-separated groups, from the start, that is an IBAN
    by its mod-97 check digits (15 to 34 characters), compacted; None when none is."""
    groups = raw.split(" ")
    for end in range(len(groups), 0, -1):
        iban = "".join(groups[:end])
        if 15 <= len(iban) <= 34 and iban_ok(iban):
            return iban
    return None


def _render(name: str, value: object) -> str:
    if isinstance(value, Money):
        return f"{value.amount:.2f}"
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _from_layout(layout_lines: list[Line], b: _Builder) -> None:
    """Labelled values the text did not give: right of the label, or below it (a label above
    its value reads as an empty value in the text); for the amounts, every labelled one, as
    candidates for reconciling. A label that starts or ends another field's longer label, or
    stands in a sentence, is not taken."""
    for name in ("invoice_number", "invoice_date", "due_date", "po_number", "subtotal", "tax",
                 "total", "vendor", "currency"):
        if name in b.found and name not in _AMOUNTS:
            continue
        others = [label for label, field_name in _LABEL_FIELD.items() if field_name != name]
        for index, found in enumerate(label_values(layout_lines, LABELS[name], others)):
            label = " ".join(w.text for w in found.label).lower().rstrip(":")
            if _starts_a_longer_label(label, found, name) or _ends_another_label(found, name) \
                    or (found.placement == "below" and _in_running_text(found, name)) \
                    or (name in ("invoice_number", "po_number") and _in_a_sentence(found)):
                continue
            if name == "vendor" and found.placement == "right" and not found.label[-1].text \
                    .endswith(":") and found.distance < _VENDOR_GAP_HEIGHTS:
                continue  # 'SELLER TRADE NAME' is a heading, 'Seller:  Acme' a label
            if (name in _AMOUNTS or (name == "invoice_date" and label in _BARE_DATE)) and \
                    found.placement == "below" and _heads_items(found):
                continue  # 'Amount' or 'Date' over an item table's column: the first item's
            if name in _AMOUNTS and found.label[-1].text.endswith("#"):
                continue  # 'VAT# IE 98 209 58W': a number sign keys an identifier
            on_a_base = _RATE_ON_A_BASE.match(_value_to_line_end(found)) \
                if name in _AMOUNTS and found.placement == "right" else None
            if on_a_base is None and name == "tax" and found.placement == "right":
                on_a_base = _rate_before_the_label(found)
            if on_a_base is not None:  # 'VAT @ 0% on 80.65': the amount the rate is taken of
                if name == "tax" and "tax" not in b.found:
                    _tax_of_a_rate(on_a_base, b, 0.85 * placement_factor(found))
                continue
            if name in _AMOUNTS and found.placement == "right" and \
                    _rest_of_line(found).lstrip().startswith(_COMPARISONS):
                continue  # 'amount > 300 €': a threshold, not the amount
            if name in _AMOUNTS and found.placement == "right" and _runs_on_in_prose(found):
                continue  # 'Die Rechnungssumme überweisen Sie bitte innerhalb von 14 Tagen'
            if name == "vendor" and found.placement == "below" and \
                    _keys_a_pair(layout_lines, found):
                continue  # 'Verkäufer:' over 'Nummer : 549910': the block's name is further
            settled = name in b.found
            if settled and (name not in _AMOUNTS or index >= _MAX_AMOUNT_LABELS):
                break  # amounts: every labelled one is a candidate for reconciling
            # an amount's every label competes on its confidence: 'Total payable' after
            # 'Goods total'; other fields take the first value found in their labels' order
            value, field_name = found.text, name
            if name in _AMOUNTS and found.placement == "right" and \
                    _CURRENCY_QUALIFIER.fullmatch(value.strip()):
                value = _rest_of_line(found)  # 'Steuerbetrag in EUR | 684'
            elif name == "total" and found.placement == "right" and \
                    _NET_OR_GROSS.fullmatch(value.strip()):
                # 'Gesamtsumme | netto | 7.900,00' is the sum before tax, '| brutto |' after
                if value.strip().lower() in _NET:
                    field_name = "subtotal"
                value = _rest_of_line(found)
            rated = _after_a_rate(found) if name in _AMOUNTS and \
                found.placement == "right" else None
            if rated is not None:
                value = rated  # 'Af te dragen BTW | 21,00 | % | 116,51': after the rate
            # (the text was read with DASHES; a layout's words keep the page's own dashes)
            _from_pairs([(field_name, label, value.translate(DASHES))], b,
                        0.95 * placement_factor(found))
            if found.placement == "right":  # a row of net, tax, gross
                rest = _rest_of_line(found)
                _note_summary_row([m for m in find_money(rest) if not _words_follow(rest, m)],
                                  b, 0.9 * placement_factor(found), label)
    if "invoice_number" not in b.found:
        _number_under_a_title_word(layout_lines, b)
    if "total" not in b.found:
        _charges_beside_the_number(layout_lines, b)


def _charges_beside_the_number(layout_lines: list[Line], b: _Builder) -> None:
    """``Charges`` heading a column in the invoice's own header row, beside its number's
    (``Invoice Number | Invoice Date | Invoice Due Date | Charges``): the amount under it is
    the invoice's. Elsewhere 'charges' names fees (``Delivery charges: 5.00``), no total."""
    for found in label_values(layout_lines, ("charges",), ()):
        if found.placement != "below" or not any(
                find_labels([found.line], label) for label in LABELS["invoice_number"]):
            continue
        monies = find_money(found.text)
        if monies:
            b.offer("total", monies[0], 0.85 * placement_factor(found), monies[0].raw,
                    "label:charges beside the number")
            return


#: The word 'date' alone, as an item table's column is headed ('Date | Description | Hours').
_BARE_DATE = frozenset({"date", "datum", "fecha", "data", "dato", "päivämäärä", "kuupäev"})
#: A document's title word heading a column ('Klant | Order | Factuur | Vervaldatum'): the
#: invoice's number is under it.
_TITLE_WORDS = ("invoice", "factuur", "facture", "factura", "fattura", "rechnung", "faktura",
                "arve", "τιμολόγιο", "τιμολογιο")
#: 'Invoice' in the languages the labels cover, as a document's title says it: those words and
#: the Slovak, Finnish and Turkish ones.
_INVOICE_WORDS = "|".join((*_TITLE_WORDS, "faktúra", "lasku", "fatura"))
#: A document's title alone in the first cell of one of its first lines ('Zálohová faktúra',
#: 'TAX INVOICE'; 'FACTURA | Pepita Gómez': the customer's column beside it).
_TITLE_LINE = re.compile(rf"^[ \t]*(?:[^\W\d_]+[ \t]+)?(?:{_INVOICE_WORDS})[ \t]*(?:$| \| )",
                         re.IGNORECASE)
#: The bare number signs: 'Nº', 'No.', 'Nr.', 'Núm.'.
_BARE_SIGNS = r"n[°º]|no\.|nr\.|núm\."
#: A number sign before an identifier ('Nº F-2024/014', 'No. 12345'), not part of it.
_NUMBER_SIGN = re.compile(rf"^[ \t]*(?:{_BARE_SIGNS}|(?:ref|réf)\.|reference|référence|"
                          r"referencia|riferimento)[ \t]*:?[ \t]*", re.IGNORECASE)
#: A line that is one identifier: a digit, and 3 or more characters.
_LONE_IDENTIFIER = re.compile(
    r"^[ \t]*(#?[A-Za-z0-9][A-Za-z0-9/.\-_]*\d[A-Za-z0-9/.\-_]*)[ \t]*$")
#: The document's title word anywhere on a line ('Invoice 103767', 'LARC | INVOICE #1').
_TITLE_WORD = re.compile(rf"\b(?:{_INVOICE_WORDS})\b", re.IGNORECASE)


def _first_lines(text: str, within: int) -> list[str]:
    """The non-blank lines among the document's first ``within``: where its title stands."""
    return [line for line in text.splitlines()[:within] if line.strip()]


def _under_the_title(text: str, title: re.Pattern[str], within: int) -> str | None:
    """The line under the first of the document's first ``within`` lines (blank ones not
    counted) that ``title`` finds in, or None."""
    lines_ = _first_lines(text, within)
    return next((under for line, under in zip(lines_, lines_[1:]) if title.search(line)),
                None)


def _date_under_the_title(text: str, b: _Builder) -> None:
    """A date alone on the line under the title's, in the document's first lines, is the
    invoice's (``Invoice 103767`` over ``February 17, 2026``), when no label names one."""
    under = _under_the_title(text, _TITLE_WORD, 8)
    if under is None:
        return
    found = find_date(under)
    if found is not None and found[1] == under.strip():
        b.offer("invoice_date", found[0], 0.8, found[1], "under the title")


#: A title word anywhere in a cell, German compounds that end in 'Rechnung' too
#: ('Beitragsrechnung', 'Schlussrechnung': each an invoice).
_TITLE_OR_COMPOUND = re.compile(rf"{_TITLE_WORD.pattern}|\w+rechnung\b", re.IGNORECASE)


def _date_beside_the_title(text: str, b: _Builder) -> None:
    """A date alone in the cell beside the title's, in the document's first lines
    (``Beitragsrechnung zur Kraftfahrtversicherung Nr. 7 | 11. März 2014``: a letter's date
    right-aligned on its subject line), when no label names one."""
    for line in _first_lines(text, 24):
        cells = [c.strip() for c in line.split(" | ")]
        if not _TITLE_OR_COMPOUND.search(cells[0]):
            continue
        # the title and the date only: a cell between is the date's own label
        # ('INVOICE | Payable by | 11.03.2026' is a due date)
        found = find_date(cells[1]) if len(cells) == 2 else None
        if found is not None and found[1] == cells[1]:
            b.offer("invoice_date", found[0], 0.8, found[1], "beside the title")
        return  # the first title line only


def _number_under_the_title(text: str, b: _Builder) -> None:
    """The invoice's number alone on the line under its title (``Zálohová faktúra`` over
    ``MSK22000006``), within the document's first lines; not a date or an amount."""
    under = _under_the_title(text, _TITLE_LINE, 12)
    if under is None:
        return
    m = _LONE_IDENTIFIER.match(_NUMBER_SIGN.sub("", under.split(" | ")[0]))
    if m and len(m.group(1)) >= 3 and find_date(under) is None and \
            not re.fullmatch(r"\d+(?:[.,]\d{3})*[.,]\d{1,2}", m.group(1)):  # no amount
        b.offer("invoice_number", m.group(1), 0.75, under.strip(), "under the title")


#: A bare number sign starting a cell (``Nº F-2024/014``, ``No. 88-12``).
_BARE_SIGN = re.compile(rf"^[ \t]*(?:{_BARE_SIGNS})[ \t]*:?[ \t]*", re.IGNORECASE)


def _number_signed_near_the_title(text: str, b: _Builder) -> None:
    """The invoice's number in a cell of its own after a number sign, on one of the three
    lines under the title (``FACTURA`` over ``NIF: 125478938W`` over ``Nº F-2024/014``): the
    bare sign numbers the document there, as it does on the title's own line."""
    lines_ = _first_lines(text, 12)
    at = next((i for i, line in enumerate(lines_) if _TITLE_LINE.match(line)), None)
    if at is None:
        return
    for line in lines_[at + 1:at + 4]:
        for cell in line.split(" | "):
            sign = _BARE_SIGN.match(cell)
            m = _LONE_IDENTIFIER.match(cell[sign.end():]) if sign else None
            if m and len(m.group(1)) >= 3 and find_date(cell) is None:
                b.offer("invoice_number", m.group(1), 0.75, cell.strip(), "signed near the title")
                return


#: A cell beside the title that numbers it: 'No. AA.00001', 'Serial No. 7', 'Nr: 2024-3', '# 88'.
_NUMBERING_CELL = re.compile(
    r"^[ \t]*(?:[^\W\d_]+\.?[ \t]+)?(?:no|nr|n°|nº|number|num|#)\.?[ \t]*[:#]?[ \t]*"
    r"(#?[A-Za-z0-9][A-Za-z0-9/.\-_]*\d[A-Za-z0-9/.\-_]*)[ \t]*$", re.IGNORECASE)


def _number_beside_the_title(text: str, b: _Builder) -> None:
    """The number in a cell beside the document's title, on one of its first lines
    (``INVOICE | Serial No. AA.00001``): a generic 'No.' numbers the document there."""
    for line in _first_lines(text, 12)[:8]:
        cells = [c.strip() for c in line.split(" | ")]
        if len(cells) < 2 or not _TITLE_LINE.match(cells[0]):
            continue
        for cell in cells[1:]:
            m = _NUMBERING_CELL.match(cell)
            if m and find_date(cell) is None:
                b.offer("invoice_number", m.group(1), 0.75, line.strip(), "beside the title")
                return


#: A fapiao's keys, their characters often spaced apart into cells ('名 | 称:', '合 | 计').
_FAPIAO_NAME = re.compile(r"名[ \t|]*称[ \t]*[:：][ \t]*(?P<v>[^|\n]+)")
_FAPIAO_ACCOUNT = re.compile(r"开户行及账号[ \t]*[:：][^|\n]*?(?P<v>\d[\d ]{6,}\d)[ \t]*(?=\||$)",
                             re.MULTILINE)
_FAPIAO_SUM_ROW = re.compile(r"^[ \t]*合[ \t|]*计[ \t]*\|(?P<v>.*)$", re.MULTILINE)


def _fapiao(text: str, b: _Builder) -> None:
    """China's VAT invoice (fapiao) has one national layout: the buyer's block (购买方), the
    items, the 合计 row (the amount before tax, then the tax), 价税合计 (the total), then the
    seller's block (销售方) under the same keys as the buyer's: 名称 (name), 开户行及账号 (bank
    and account). The seller's are the ones after the total."""
    if "发票号码" not in text or "价税合计" not in text:
        return
    seller = text[text.index("价税合计"):]
    name = _FAPIAO_NAME.search(seller)
    if name is not None and sum(ch.isalpha() for ch in name.group("v")) >= 2:
        b.offer("vendor", name.group("v").strip(), 0.9, name.group(0), "fapiao seller")
    account = _FAPIAO_ACCOUNT.search(seller)
    if account is not None:
        b.offer("bank_account", account.group("v").replace(" ", ""), 0.85, account.group(0),
                "fapiao seller")
    row = _FAPIAO_SUM_ROW.search(text)
    monies = find_money(row.group("v")) if row is not None else []
    if len(monies) == 2:
        b.offer("subtotal", monies[0], 0.9, monies[0].raw, "fapiao 合计")
        b.offer("tax", monies[1], 0.9, monies[1].raw, "fapiao 合计")


def _number_under_a_title_word(layout_lines: list[Line], b: _Builder) -> None:
    """The invoice number in a column headed by the bare word 'invoice' in some language:
    the word a cell of its own in a row of three or more headers, the value below it an
    identifier with a digit that is no date (a title, 'Kopie factuur', heads nothing)."""
    others = [label for label in _LABEL_FIELD if label not in _TITLE_WORDS]
    for found in label_values(layout_lines, _TITLE_WORDS, others):
        cells = found.line.cells()
        if found.placement != "below" or len(cells) < 3 or found.label not in cells:
            continue
        ident = find_identifier(found.text)
        if ident and find_date(found.text) is None:
            label = " ".join(w.text for w in found.label).lower()
            b.offer("invoice_number", ident, 0.8 * placement_factor(found), found.text,
                    f"label:{label}")
            return


#: Column headers of an item table ('Description | Quantity | Unit Price | Amount'): an
#: amount label in such a row heads the items' amounts, not the invoice's.
_ITEM_HEADERS = frozenset({
    "description", "item", "items", "qty", "quantity", "unit price", "price", "beschreibung",
    "bezeichnung", "artikel", "menge", "einzelpreis", "désignation", "quantité",
    "prix unitaire", "omschrijving", "aantal", "descrizione", "quantità", "descripción",
    "cantidad", "opis", "ilość", "počet", "cena", "položka", "množství", "popis", "数量",
    "品名", "単価"})


def _heads_items(found: LabelValue) -> bool:
    """Whether a label stands in an item table's header row."""
    return any(" ".join(w.text.lower() for w in cell).strip(":. ") in _ITEM_HEADERS
               for cell in found.line.cells())


#: A cell between a sum's label and its amount that says which sum it is
#: (``Gesamtsumme | netto | 7.900,00``, ``Gesamtsumme | brutto | 8.410,00``).
_NET = ("netto", "net")
_NET_OR_GROSS = re.compile("|".join((*_NET, "brutto", "gross")), re.IGNORECASE)
#: What may stand between an amount's label and its figure: the currency it is in.
_CURRENCY_QUALIFIER = re.compile(rf"(?:in\s+)?\(?(?:{_CODE}|{_SYM})\)?", re.IGNORECASE)


def _keys_a_pair(layout_lines: list[Line], found: LabelValue) -> bool:
    """Whether a value read below its label is a ``key: value`` pair or the key of one on
    its line (``Nummer: 998877``, ``Nummer : 549910`` under ``Verkäufer:``)."""
    if any(w.text.endswith(":") for w in found.value):
        return True
    last = found.value[-1]
    for line in layout_lines:
        if last in line.words:
            after = line.words[line.words.index(last) + 1:]
            return bool(after) and after[0].text.startswith(":")
    return False


def _after_a_rate(found: LabelValue) -> str | None:
    """When a value right of its label is a rate whose ``%`` the page set apart after it, the
    words after the ``%`` to the end of the line (where the amount is); else None."""
    words = found.line.words
    after = words.index(found.value[-1]) + 1
    if after < len(words) and words[after].text.startswith("%"):
        return " ".join(w.text for w in words[after + 1:])
    at_a_rate = _BASE_AT_A_RATE.match(_rest_of_line(found))
    if at_a_rate is not None and find_money(at_a_rate.group("after")):
        return at_a_rate.group("after")  # 'VAT 400,00 @ 21,00% | 84,00': the amount after it
    return None


#: A base and the rate taken of it, then the tax: '400,00 @ 21,00%  84,00'.
_BASE_AT_A_RATE = re.compile(
    rf"^[^@%\n]*\d[ \t]*@[ \t]*{_RATE_FIGURE}[ \t]*%[ \t]*(?P<after>.+)$")


def _tax_of_a_rate(on_a_base: re.Match[str], b: _Builder, confidence: float) -> None:
    """The tax of a line that states its rate of a base: the amount after the base (``Tax 15%
    on $ 112.90 | $ 16.94``), else the rate times the base, where the page prints the tax
    elsewhere or not at all (``VAT @ 0% on 80.65`` is 0.00)."""
    monies = find_money(on_a_base.group("base"))
    if not monies:
        return
    if len(monies) >= 2:
        b.offer("tax", monies[1], confidence, monies[1].raw, "after a rate of a base")
        return
    base = monies[0]
    tax = round(to_number(on_a_base.group("rate")) * base.amount / 100, 2)
    b.offer("tax", Money(tax, base.currency, on_a_base.group(0)), confidence,
            on_a_base.group(0), "rate of a base")


#: A tax line that states its rate before the label (``21,00% VAT on 38.664,84: 8.119,62``):
#: the rate, and where the words after the label start.
_RATE_BEFORE_A_TAX_LABEL = re.compile(
    rf"(?<![\w.,])(?P<rate>{_RATE_FIGURE})[ \t]*%[ \t]+(?:" + "|".join(
        re.escape(label) for label in sorted(LABELS["tax"], key=len, reverse=True)) +
    r")[ \t]+(?=(?:on|of|over|auf|von|sur|de|su|sobre|op|van)[ \t])", re.IGNORECASE)


def _tax_rated_before_its_label(text: str, b: _Builder) -> None:
    """The tax of a line that names its rate before the label and its base after it, in the
    text (a key the label finders do not take: its base ends with the colon)."""
    for m in _RATE_BEFORE_A_TAX_LABEL.finditer(text):
        line_end = text.find("\n", m.end())
        rest = text[m.end():line_end if line_end >= 0 else len(text)]
        on_a_base = _RATE_ON_A_BASE.match(f"{m.group('rate')}% {rest}")
        if on_a_base is not None:
            _tax_of_a_rate(on_a_base, b, 0.85)
            return


def _rate_before_the_label(found: LabelValue) -> re.Match[str] | None:
    """A tax line that states its rate before the label and the base after it (``21,00% VAT
    on 38.664,84: 8.119,62``), read as :data:`_RATE_ON_A_BASE` reads ``VAT 21% on ...``."""
    words = found.line.words
    at = words.index(found.label[0])
    rate = words[at - 1].text if at else ""
    if not re.fullmatch(rf"{_RATE_FIGURE}\s*%", rate):
        return None
    return _RATE_ON_A_BASE.match(f"{rate} {_value_to_line_end(found)}")


def _value_to_line_end(found: LabelValue) -> str:
    """A value right of its label and the words after it to the end of its line (past the
    marks between label and value, ':' or '@')."""
    words = found.line.words
    return " ".join(w.text for w in words[words.index(found.value[0]):])


def _rest_of_line(found: LabelValue) -> str:
    """The words right of a label to the end of its line, whatever the gaps between them."""
    words = found.line.words
    return " ".join(w.text for w in words[words.index(found.label[-1]) + 1:])


def _rest_of_cell(found: LabelValue) -> str:
    """The words right of a label in its own cell (up to the first column gap)."""
    cell = next(c for c in found.line.cells() if found.label[-1] in c)
    return " ".join(w.text for w in cell[cell.index(found.label[-1]) + 1:])


def _in_running_text(found: LabelValue, name: str) -> bool:
    """Whether a label's words sit inside a sentence (``The issuer encapsulated their company
    data below``): words close on either side; for the vendor, inside a name too (``Name:
    Lieferant GmbH``): a word close after it. A column header or a label above its value
    stands apart."""
    line = found.line
    start = line.words.index(found.label[0])
    end = line.words.index(found.label[-1]) + 1
    gap = COLUMN_GAP_HEIGHTS * line.height
    before = start > 0 and line.words[start - 1].gap_to(line.words[start]) <= gap
    after = end < len(line.words) and not found.label[-1].text.endswith(":") and \
        line.words[end - 1].gap_to(line.words[end]) <= gap
    return after and (before or name == "vendor")


def _runs_on_in_prose(found: LabelValue) -> bool:
    """Whether an amount's label is a noun in a sentence: a word close before it and two
    words close after it, without a colon (``Die Rechnungssumme überweisen Sie bitte
    innerhalb von 14 Tagen``: the 14 is days). ``Invoice Total EUR 1,234.00`` has a currency
    and ``Total due 100`` a figure within the two words after the label."""
    line = found.line
    start = line.words.index(found.label[0])
    end = line.words.index(found.label[-1]) + 1
    if found.label[-1].text.endswith(":") or start == 0 or end + 2 > len(line.words):
        return False
    gap = COLUMN_GAP_HEIGHTS * line.height
    run = line.words[start - 1:end + 2]
    words = [line.words[start - 1], *line.words[end:end + 2]]
    return all(a.gap_to(b) <= gap for a, b in zip(run, run[1:])) and all(
        w.text.isalpha() and w.text.upper() not in CURRENCY_CODES for w in words)


def _in_a_sentence(found: LabelValue) -> bool:
    """Whether a label without a colon runs on from words close before it, as in ``bitte Ihre
    Kundennummer 35040727 und Belegnummer 2018092011804 angeben``: a sentence's noun, not a
    field's label, so the number after it is no answer to the label."""
    line = found.line
    start = line.words.index(found.label[0])
    gap = COLUMN_GAP_HEIGHTS * line.height
    return start >= 2 and not found.label[-1].text.endswith(":") and all(
        line.words[i].gap_to(line.words[i + 1]) <= gap for i in range(start - 2, start))


#: 'including' before a tax's label: the amount includes the tax, it is not the tax.
_INCLUDING = re.compile(r"incl\.?|including|inc\.?|inkl\.?|inklusive|einschl\.?|"
                        r"einschließlich|ttc|incluido|inclusief|incl")


#: A rate's word before a tax label (Romanian, French, Spanish, Italian, Polish, Czech, Dutch).
_RATE_WORDS = frozenset({"cota", "cotă", "taux", "tasa", "tipo", "aliquota", "stawka", "sazba",
                         "tarief"})


def _ends_another_label(found: LabelValue, name: str) -> bool:
    """Whether the words just before a label make it another field's: ``Date`` in ``Due
    Date`` is the due date's, ``VAT`` in ``Total excl. VAT`` the net amount's; and for an
    amount, a word that is another amount's label: ``Total`` in ``Tax total``."""
    line = found.line
    at = line.words.index(found.label[0])
    label = " ".join(w.text.lower() for w in found.label).rstrip(":")
    before: list[str] = []
    for index in range(at - 1, max(0, at - 3) - 1, -1):
        word = line.words[index]
        if word.text.endswith(":") or \
                word.gap_to(line.words[index + 1]) > COLUMN_GAP_HEIGHTS * line.height:
            break  # a label of its own before this one, or another cell
        before.insert(0, word.text.lower())
        other = _LABEL_FIELD.get(" ".join([*before, label]))
        if other is not None and other != name:
            return True
    if before and name == "invoice_date" and date_key(" ".join([*before, label])) != \
            INVOICE_DATE:
        return True  # 'Payment date', 'Print date': a key of its own, not the invoice's date
    if name == "tax" and any(_INCLUDING.fullmatch(word) for word in before):
        return True  # 'Beitrag inklusive 19 % Versicherungsteuer | 220,00': the gross amount
    if name == "tax" and before and before[-1] in _RATE_WORDS:
        return True  # 'Cota TVA | 9', 'Taux TVA | 20': the rate, not the tax's amount
    if before and name in _AMOUNTS:  # 'Tax total': a word that is another amount's label
        other = _LABEL_FIELD.get(before[-1].rstrip("."), name)
        return other in _AMOUNTS and other != name
    return False


#: Right of a vendor label without a colon, a name is its value only this many line heights
#: away (a column's gap), not a word's space on.
_VENDOR_GAP_HEIGHTS = 0.8


def _starts_a_longer_label(label: str, found: LabelValue, name: str) -> bool:
    """Whether the label and the words after it are another field's longer label: ``Date``
    at the start of ``Date limite de paiement`` is not the invoice date's, nor ``VAT`` of
    ``VAT number:`` the tax's. For a value right of the label the words read are the label's
    whole line after it: the value may stand a column further (``Rechnungssumme ohne USt. |
    858,75``); for a value below it, the rest of the label's own cell (the cells beside it
    are other columns' headers)."""
    rest = _rest_of_line(found) if found.placement == "right" else _rest_of_cell(found)
    phrase = re.sub(r"\s+", " ", f"{label} {rest}".lower()).strip()
    if not found.label[-1].text.endswith(":"):
        # a key of its own that no list names: ``VAT code:``, ``Tax ID:``, ``Total weight:``
        # (a word or two right after the label, the last one closing the key with a colon)
        rest = phrase[len(label):].lstrip()
        key = re.match(r"((?:[^\W\d_]+\.? )?[^\W\d_]+\.?):(?:\s|$)", rest)
        if key is not None and _LABEL_FIELD.get(f"{label} {key.group(1)}") != name and \
                not _CURRENCY_QUALIFIER.fullmatch(key.group(1)):  # 'Total EUR:' is the total's
            return True
    return any(phrase.startswith(other + " ") or phrase == other
               for other, field_name in _LABEL_FIELD.items()
               if field_name != name and len(other) > len(label) and other.startswith(label))


def _locate(layout_lines: list[Line], cand: _Candidate) -> Sequence[PageWord]:
    """The words a value was read from: after its label when it followed one (on the label's
    line, else the next two lines), else its first occurrence in the document."""
    raw = cand.raw.strip()
    if not raw:
        return ()
    if cand.source.startswith("label:"):
        for line, _start, end in find_labels(layout_lines, cand.source[len("label:"):]):
            index = layout_lines.index(line)
            after = [Line(line.page, line.words[end:])] + list(layout_lines[index + 1:index + 3])
            words = find_words([ln for ln in after if ln.words], raw)
            if words:
                return words
    return find_words(layout_lines, raw)


def _without_underlines(text: str) -> str:
    """Lines whose underline the text layer threads through their letters (``_To_t_al_ _do_
    _do_c_um_e_nt_o_______2_0_,0_0_``, a form's ruled fields) as the words they are: a run of
    underscores is a gap, a single one nothing. Other lines keep theirs (``BLR_WFLD2015``)."""
    def mended(line: str) -> str:
        letters = sum(not ch.isspace() for ch in line)
        if not letters or line.count("_") < 0.3 * letters:
            return line
        return re.sub(r"_{3,}", "  ", line).replace("_", "").strip()
    return "\n".join(mended(line) for line in text.split("\n"))


def extract_invoice(text: str, layout: DocumentLayout | None = None) -> InvoiceExtraction:
    """Fields of an invoice document, each with a confidence in [0, 1]; with the document's
    ``layout``, also values below their labels, and each value's provenance."""
    layout_lines = lines(layout) if layout is not None else []
    if layout_lines and not text.strip():
        text = layout_text(layout)  # type: ignore[arg-type]
    text = _label_letters(_without_underlines(text.translate(DASHES)))
    b = _Builder()
    structured = _structured(text)
    if structured is not None:
        pairs = [(_LABEL_FIELD[k], k, v) for k, v in structured.items() if k in _LABEL_FIELD]
        _from_pairs(pairs, b, 0.98)
    else:
        _from_pairs(_labeled_values(text), b, 0.95)
        if layout_lines:
            _from_layout(layout_lines, b)
        _from_prose(text, b)
        if "tax" not in b.found:
            _tax_rated_before_its_label(text, b)
        _from_unknown_keys(text, b)
        if "invoice_number" not in b.found:
            _number_beside_the_title(text, b)
        if "invoice_number" not in b.found:
            _number_under_the_title(text, b)
        if "invoice_number" not in b.found:
            _number_signed_near_the_title(text, b)
        _fapiao(text, b)
        _vendor(text, b)
        _bank_account(text, b)
    items = _line_items(text) if structured is None else []
    amounts = [item.amount for item in items]
    # currency: the amounts' own, else a code or symbol anywhere in the document
    money_currencies = [c.value.currency for c in (b.found.get(k) for k in ("total", "subtotal"))
                        if c is not None and c.value.currency]  # type: ignore[attr-defined]
    if money_currencies:
        source = b.found.get("total") or b.found.get("subtotal")
        b.offer("currency", money_currencies[0], min(0.95, source.confidence + 0.02)  # type: ignore[union-attr]
                if len(set(money_currencies)) == 1 else 0.6, money_currencies[0],
                source.source)  # type: ignore[union-attr]
    elif "currency" not in b.found:
        codes = [m.currency for m in find_money(text) if m.currency]
        if codes:
            b.offer("currency", max(set(codes), key=codes.count), 0.6, codes[0], "document")
        else:  # a code or sign standing apart from the amounts ('TOTALE FATTURA  EUR  183,00',
            # 'Total € Incl. VAT')
            codes = _STANDALONE_CODE.findall(text) or [
                _currency_of(sign) for sign in _STANDALONE_SIGN.findall(text)] or [
                _CURRENCY_NAMES[name.lower()] for name in _STANDALONE_NAME.findall(text)]
            if codes:
                b.offer("currency", max(set(codes), key=codes.count), 0.55, codes[0],
                        "document")
            else:
                places = {cue.currency: cue for cue in _PLACE_ONLY if cue.names(text)}
                if len(places) == 1:
                    ((code, cue),) = places.items()
                    b.offer("currency", code, 0.5, "", cue.why)
    _currency_of_the_place(b, text)
    _resolve_dates(b, text)
    _reconcile_amounts(b)
    _total_that_adds_up(b, text)
    if "total" in b.found:
        _check_amounts(b, amounts)
    if items and "line_item_count" not in b.found:
        b.offer("line_item_count", len(items), 0.8, "", "line items")
    noise = noise_level(text)
    if noise > 0.01:
        b.issues.append("scanner_damage")
    damp = max(0.5, 1.0 - 4.0 * noise)
    fields = {}
    for name in FIELD_NAMES:
        cand = b.found.get(name)
        if cand is None:
            continue
        words = _locate(layout_lines, cand) if layout_lines else ()
        provenance = provenance_of(words) if words else None
        ocr = provenance.ocr_confidence if provenance is not None else 1.0
        conf = round(min(1.0, max(0.0, cand.confidence * damp * ocr)), 3)
        fields[name] = ExtractedField(name, _render(name, cand.value), conf, cand.raw,
                                      provenance)
    if items:
        fields.setdefault("line_item_count", ExtractedField("line_item_count", str(len(items)),
                                                            round(0.8 * damp, 3)))
    overall = sum(w * fields[n].confidence for n, w in CONFIDENCE_WEIGHTS.items() if n in fields)
    return InvoiceExtraction(fields, round(overall, 3), b.issues, items)


def account_key(account: str) -> str:
    """How bank accounts are matched: without spaces or case (the extractor compacts IBANs
    too; a person or an ERP may not)."""
    return re.sub(r"\s+", "", account).upper()


def vendor_key(name: str) -> str:
    """How vendors are matched across invoices: case, punctuation and legal suffix ignored,
    letters of every script kept (reduced to ASCII, 'Müller' and 'Möller' were one vendor,
    sharing history and allow lists, and a Cyrillic or Japanese name was no name)."""
    name = COMPANY_SUFFIX.sub("", name.strip())
    return " ".join(re.sub(r"[\W_]+", " ", name.casefold()).split())


__all__ = ["FIELD_NAMES", "ExtractedField", "InvoiceExtraction", "LineItem", "Money",
           "account_key", "extract_invoice", "find_date", "find_money", "noise_level", "to_number", "vendor_key"]
