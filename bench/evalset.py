"""The document evaluation set: invoices with known field values, rendered several ways.

Accuracy measured on documents made by the same hands that wrote the extractor proves
little, so the set varies what an extractor could quietly depend on:

* two unrelated renderers: reportlab draws text PDFs from Python, Debian's chromium prints
  HTML invoices (CSS layout, its own font handling and text-layer encoding) with
  ``--print-to-pdf``;
* five layouts (labels left of values, labels above values in boxes, a right-aligned details
  block, two HTML templates with tables), seven PDF fonts and six web fonts;
* label wordings beyond the ones the shipped invoice pack lists ("Pay by", "Balance due",
  "Date of issue", "Your order"), and a quarter of the documents with wordings held out of
  development (:data:`HELD_OUT_LABELS`); vendors named only by their letterhead, four date
  styles and four ways of writing amounts (1,234.56 / 1.234,56 / 1 234,56, symbol or code,
  before or after);
* scans: pages rasterised with PDFium and stored as PNG, TIFF, JPEG or an image-only PDF
  (no text layer, so OCR must read them), and degraded scans: rotation, blur, noise, JPEG
  artefacts, low resolution and phone photos (uneven light, EXIF orientation).

Everything is drawn from one seeded random generator: the same seed gives the same set.
Documents from elsewhere are evaluated the same way: a folder with ``manifest.jsonl`` (one
line per file: ``file``, ``content_type``, ``category``, ``expected``) is read by
:func:`load_set`, and :func:`write_set` writes the generated set in that format.
"""

from __future__ import annotations

import datetime as dt
import html
import io
import json
import random
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Evaluation categories, in report order.
CATEGORIES: tuple[str, ...] = ("text_pdf", "clean_scan", "degraded_scan")
#: Fields scored, as the invoice pack names them.
SCORED_FIELDS: tuple[str, ...] = (
    "vendor", "invoice_number", "invoice_date", "due_date", "po_number", "currency",
    "subtotal", "tax", "total", "bank_account",
)
MONEY_FIELDS = frozenset({"subtotal", "tax", "total"})
DATE_FIELDS = frozenset({"invoice_date", "due_date"})

FONT_DIR = Path("/usr/share/fonts/truetype")
#: reportlab fonts: three of the PDF standard 14 and four TrueType files Debian ships.
PDF_FONTS: dict[str, tuple[str, str] | None] = {
    "Helvetica": None, "Times-Roman": None, "Courier": None,
    "DejaVuSans": ("dejavu/DejaVuSans.ttf", "dejavu/DejaVuSans-Bold.ttf"),
    "DejaVuSerif": ("dejavu/DejaVuSerif.ttf", "dejavu/DejaVuSerif-Bold.ttf"),
    "LiberationSansNarrow": ("liberation/LiberationSansNarrow-Regular.ttf",
                             "liberation/LiberationSansNarrow-Bold.ttf"),
    "LiberationMono": ("liberation/LiberationMono-Regular.ttf",
                       "liberation/LiberationMono-Bold.ttf"),
}
_PDF_BOLD = {"Helvetica": "Helvetica-Bold", "Times-Roman": "Times-Bold", "Courier": "Courier-Bold"}
WEB_FONTS: tuple[str, ...] = ("DejaVu Sans", "DejaVu Serif", "Liberation Sans",
                              "Liberation Serif", "Liberation Mono", "Liberation Sans Narrow")
REPORTLAB_LAYOUTS: tuple[str, ...] = ("columns", "boxes", "right_block")
HTML_LAYOUTS: tuple[str, ...] = ("html_grid", "html_sidebar")

# -- the facts -----------------------------------------------------------------------------------

_VENDOR_WORDS = ("Northwind", "Granite", "Bluebird", "Harbor", "Meridian", "Copperleaf",
                 "Alder", "Quayside", "Silverline", "Kestrel", "Oakridge", "Larkspur",
                 "Fenwick", "Brightwater", "Summit", "Tamarind", "Vantage", "Wexford")
_VENDOR_TRADES = ("Supplies", "Engineering", "Logistics", "Office Products", "Print Works",
                  "Facilities", "Software", "Catering", "Electrical", "Consulting")
_SUFFIXES = ("Ltd", "GmbH", "Inc.", "LLC", "B.V.", "S.A.", "AB", "plc")
_CUSTOMERS = ("Acme Health Inc.", "Riverside School District", "Pinecrest Clinic",
              "Hollis & Grant LLP", "Oakvale Council", "Marlow Dental Group")
_STREETS = ("Market Rd", "Harbour Street", "Industriestrasse", "Rue du Lac", "Kingsway",
            "Station Road", "Elm Avenue")
_CITIES = ("London", "Zurich", "Rotterdam", "Leeds", "Lyon", "Gothenburg", "Dublin")
_ITEMS = ("Printer toner cartridges", "A4 copy paper, 80gsm", "Office chairs (ergonomic)",
          "Server rack installation", "Cloud hosting - monthly plan", "Whiteboard markers",
          "Network switch 24-port", "Cleaning services (March)", "Laptop docking stations",
          "Consulting hours", "Safety goggles", "Courier deliveries", "Projector lamp",
          "Software licence renewal", "Cafeteria supplies")
_CURRENCIES = ("USD", "EUR", "GBP", "CHF", "SEK")
_SYMBOL = {"USD": "$", "EUR": "€", "GBP": "£"}
_IBAN_COUNTRIES = {"GB": 18, "DE": 18, "NL": 14, "CH": 17, "SE": 20, "FR": 23}


def iban(rng: random.Random) -> str:
    """A well-formed IBAN (ISO 13616 check digits), grouped by four as printed."""
    country = rng.choice(sorted(_IBAN_COUNTRIES))
    if country in ("GB", "NL"):
        bban = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(4))
        bban += "".join(rng.choice("0123456789") for _ in range(_IBAN_COUNTRIES[country]))
    else:
        bban = "".join(rng.choice("0123456789") for _ in range(_IBAN_COUNTRIES[country]))
    digits = "".join(str(int(c, 36)) for c in bban + country + "00")
    check = 98 - int(digits) % 97
    compact = f"{country}{check:02d}{bban}"
    return " ".join(compact[i:i + 4] for i in range(0, len(compact), 4))


def iban_valid(value: str) -> bool:
    compact = re.sub(r"\s+", "", value).upper()
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{10,30}", compact):
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


@dataclass(frozen=True)
class LineItem:
    description: str
    quantity: int
    unit_price: float

    @property
    def amount(self) -> float:
        return round(self.quantity * self.unit_price, 2)


@dataclass(frozen=True)
class InvoiceFacts:
    """What an invoice says, independent of how it is drawn."""

    vendor: str
    vendor_address: str
    customer: str
    invoice_number: str
    invoice_date: dt.date
    due_date: dt.date
    po_number: str | None
    currency: str
    items: tuple[LineItem, ...]
    tax_rate: float
    bank_account: str | None

    @property
    def subtotal(self) -> float:
        return round(sum(item.amount for item in self.items), 2)

    @property
    def tax(self) -> float:
        return round(self.subtotal * self.tax_rate, 2)

    @property
    def total(self) -> float:
        return round(self.subtotal + self.tax, 2)

    def expected(self) -> dict[str, str | None]:
        """The scored fields' true values, canonical: ISO dates, amounts with two decimals,
        the IBAN without spaces; None for a field the document does not show."""
        return {
            "vendor": self.vendor, "invoice_number": self.invoice_number,
            "invoice_date": self.invoice_date.isoformat(), "due_date": self.due_date.isoformat(),
            "po_number": self.po_number, "currency": self.currency,
            "subtotal": f"{self.subtotal:.2f}", "tax": f"{self.tax:.2f}",
            "total": f"{self.total:.2f}",
            "bank_account": self.bank_account.replace(" ", "") if self.bank_account else None,
        }


def random_invoice(rng: random.Random) -> InvoiceFacts:
    vendor = (f"{rng.choice(_VENDOR_WORDS)} {rng.choice(_VENDOR_TRADES)} "
              f"{rng.choice(_SUFFIXES)}")
    number = rng.choice((
        lambda: f"INV-{rng.randint(2024, 2026)}-{rng.randint(10000, 99999)}",
        lambda: f"{rng.choice('ABCFKMRS')}{rng.randint(100, 9999)}/{rng.randint(24, 26)}",
        lambda: f"{rng.randint(100000, 999999)}",
        lambda: f"{rng.choice(('NW', 'GR', 'HB', 'KS'))}{rng.randint(1000, 99999):05d}",
    ))()
    issued = dt.date(2026, 1, 1) + dt.timedelta(days=rng.randint(0, 330))
    due = issued + dt.timedelta(days=rng.choice((14, 30, 45, 60)))
    po = rng.choice((None, f"PO-{rng.randint(10000, 99999)}", f"{rng.randint(4500000, 4599999)}"))
    items = tuple(
        LineItem(rng.choice(_ITEMS), rng.choice((1, 1, 2, 3, 4, 5, 10, 12, 20)),
                 round(rng.choice((rng.uniform(2, 90), rng.uniform(90, 2500))), 2))
        for _ in range(rng.randint(1, 6)))
    return InvoiceFacts(
        vendor=vendor,
        vendor_address=f"{rng.randint(1, 240)} {rng.choice(_STREETS)}, {rng.choice(_CITIES)}",
        customer=rng.choice(_CUSTOMERS), invoice_number=number, invoice_date=issued,
        due_date=due, po_number=po, currency=rng.choice(_CURRENCIES), items=items,
        tax_rate=rng.choice((0.0, 0.05, 0.077, 0.19, 0.2, 0.21, 0.25)),
        bank_account=iban(rng) if rng.random() < 0.7 else None,
    )


# -- how the facts are written ---------------------------------------------------------------

#: Label wordings per field; some are not among the shipped pack's labels on purpose.
LABELS: dict[str, tuple[str, ...]] = {
    "invoice_number": ("Invoice No", "Invoice Number", "Invoice #", "Invoice No."),
    "invoice_date": ("Invoice Date", "Date", "Date of issue", "Issue date"),
    "due_date": ("Due Date", "Payment due", "Due", "Pay by"),
    "po_number": ("PO Number", "Purchase Order", "PO", "Your order"),
    "subtotal": ("Subtotal", "Sub-total", "Net amount"),
    "tax": ("VAT {rate}", "Tax ({rate})", "Sales tax {rate}", "VAT"),
    "total": ("Total", "Amount due", "Total due", "Balance due", "Grand total"),
    "bank_account": ("IBAN", "Bank account", "Account"),
}
#: Wordings held out of development: added after the extractor changes the published figures
#: measure, so the accuracy on them says how reading generalises to labels nobody tuned for.
#: Keep it that way: when the extractor learns one of these, replace it here with a new one.
#: Documents drawn with them are ``made["vocabulary"] == "held_out"`` (a quarter of the set).
HELD_OUT_LABELS: dict[str, tuple[str, ...]] = {
    "invoice_number": ("Bill No.", "Document number", "Reference no."),
    "invoice_date": ("Tax point", "Billing date", "Dated"),
    "due_date": ("Payable by", "Settle by", "Payment date"),
    "po_number": ("Customer PO", "Order reference", "Buyer's order no."),
    "subtotal": ("Net total", "Total excl. VAT", "Goods total"),
    "tax": ("VAT amount", "GST {rate}", "Tax total"),
    "total": ("Invoice total", "Total payable", "Amount payable"),
    "bank_account": ("Pay to IBAN", "Remit to", "IBAN No."),
}
VOCABULARIES: dict[str, dict[str, tuple[str, ...]]] = {
    "common": LABELS, "held_out": HELD_OUT_LABELS}
DATE_STYLES: dict[str, Callable[[dt.date], str]] = {
    "iso": lambda d: d.isoformat(),
    "day_month_name": lambda d: d.strftime("%d %b %Y").lstrip("0"),
    "month_name_day": lambda d: d.strftime("%B ") + f"{d.day}, {d.year}",
    "dotted": lambda d: d.strftime("%d.%m.%Y"),
}
MONEY_STYLES: tuple[str, ...] = ("en", "de", "fr", "plain")


def format_amount(value: float, style: str) -> str:
    """1234.5 as '1,234.50' (en), '1.234,50' (de), '1 234,50' (fr) or '1234.50' (plain)."""
    text = f"{value:,.2f}"
    if style == "de":
        return text.replace(",", "_").replace(".", ",").replace("_", ".")
    if style == "fr":
        return text.replace(",", " ").replace(".", ",")
    if style == "plain":
        return f"{value:.2f}"
    return text


@dataclass(frozen=True)
class Style:
    """How one document writes its facts."""

    renderer: str           # "reportlab" | "chromium"
    layout: str
    font: str
    date_style: str
    money_style: str
    currency_mark: str      # "code_before" | "code_after" | "symbol" | "column"
    labels: dict[str, str]
    vendor_label: bool      # "Supplier: <vendor>" beside the letterhead, or the letterhead alone
    currency_line: bool     # a "Currency: EUR" line in the details

    def date(self, value: dt.date) -> str:
        return DATE_STYLES[self.date_style](value)

    def money(self, value: float, currency: str) -> str:
        amount = format_amount(value, self.money_style)
        if self.currency_mark == "symbol" and currency in _SYMBOL:
            return f"{_SYMBOL[currency]}{amount}" if self.money_style == "en" \
                else f"{amount} {_SYMBOL[currency]}"
        if self.currency_mark == "code_after":
            return f"{amount} {currency}"
        if self.currency_mark == "column":
            return amount
        return f"{currency} {amount}"


def random_style(rng: random.Random, renderer: str, vocabulary: str = "common") -> Style:
    layout = rng.choice(REPORTLAB_LAYOUTS if renderer == "reportlab" else HTML_LAYOUTS)
    font = rng.choice(sorted(PDF_FONTS) if renderer == "reportlab" else WEB_FONTS)
    mark = rng.choice(("code_before", "code_after", "symbol", "column"))
    return Style(renderer=renderer, layout=layout, font=font,
                 date_style=rng.choice(sorted(DATE_STYLES)),
                 money_style=rng.choice(MONEY_STYLES), currency_mark=mark,
                 labels={name: rng.choice(options)
                         for name, options in VOCABULARIES[vocabulary].items()},
                 vendor_label=rng.random() < 0.3,
                 currency_line=mark == "column" or rng.random() < 0.3)


@dataclass(frozen=True)
class Block:
    """The invoice as rows of text, shared by every layout: what is written, not where."""

    letterhead: str
    address: str
    title: str
    details: list[tuple[str, str]]      # (label, value) in the details block
    bill_to: str
    item_header: tuple[str, str, str, str]
    item_rows: list[tuple[str, str, str, str]]
    totals: list[tuple[str, str]]
    footer: list[str]


def block_of(facts: InvoiceFacts, style: Style) -> Block:
    labels = style.labels
    money = lambda v: style.money(v, facts.currency)  # noqa: E731 (local shorthand)
    details = [(labels["invoice_number"], facts.invoice_number),
               (labels["invoice_date"], style.date(facts.invoice_date)),
               (labels["due_date"], style.date(facts.due_date))]
    if facts.po_number:
        details.append((labels["po_number"], facts.po_number))
    if style.currency_line:
        details.append(("Currency", facts.currency))
    if style.vendor_label:
        details.insert(0, ("Supplier", facts.vendor))
    rate = f"{facts.tax_rate * 100:g}%"
    tax_label = labels["tax"].format(rate=rate)
    unit_header = f"Unit price ({facts.currency})" if style.currency_mark == "column" \
        else "Unit price"
    rows = [(item.description, str(item.quantity), format_amount(item.unit_price,
                                                                  style.money_style),
             money(item.amount)) for item in facts.items]
    footer = [f"Thank you for your business. Payment within "
              f"{(facts.due_date - facts.invoice_date).days} days."]
    if facts.bank_account:
        footer.insert(0, f"{labels['bank_account']}: {facts.bank_account}")
    return Block(
        letterhead=facts.vendor, address=facts.vendor_address, title="INVOICE",
        details=details, bill_to=facts.customer,
        item_header=("Description", "Qty", unit_header, "Amount"), item_rows=rows,
        totals=[(labels["subtotal"], money(facts.subtotal)), (tax_label, money(facts.tax)),
                (labels["total"], money(facts.total))],
        footer=footer,
    )


# -- reportlab -----------------------------------------------------------------------------------

def _pdf_font(name: str) -> tuple[str, str]:
    """Register a TrueType font once; the regular and bold face names reportlab knows."""
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    files = PDF_FONTS[name]
    if files is None:
        return name, _PDF_BOLD[name]
    bold = f"{name}-Bold"
    if name not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(TTFont(name, str(FONT_DIR / files[0])))
        pdfmetrics.registerFont(TTFont(bold, str(FONT_DIR / files[1])))
    return name, bold


def render_reportlab(block: Block, style: Style, logo: Any = None) -> bytes:
    """A one-page A4 text PDF drawn with reportlab in one of three layouts; ``logo`` (a PIL
    image) is drawn small at the top right, stored at its own resolution."""
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    regular, bold = _pdf_font(style.font)
    out = io.BytesIO()
    page = canvas.Canvas(out, pagesize=A4, pageCompression=1)
    page.setTitle(f"{block.title} {block.details[0][1]}")
    width, height = A4
    left, right = 50.0, width - 50.0
    y = height - 60

    if logo is not None:
        page.drawImage(ImageReader(logo), right - 40, height - 50, width=40, height=40)
    page.setFont(bold, 17)
    page.drawString(left, y, block.letterhead)
    page.setFont(regular, 9.5)
    page.drawString(left, y - 15, block.address)

    if style.layout == "columns":         # labels left, values at a fixed column to the right
        page.setFont(bold, 22)
        page.drawRightString(right, y, block.title)
        y -= 60
        page.setFont(regular, 10)
        for label, value in block.details:
            page.drawString(left, y, f"{label}:")
            page.drawString(left + 130, y, value)
            y -= 15
        page.drawString(left + 300, height - 120, "Bill to:")
        page.drawString(left + 300, height - 135, block.bill_to)
    elif style.layout == "boxes":         # small labels above their values, in a row of boxes
        page.setFont(bold, 20)
        page.drawString(left, y - 45, block.title)
        y -= 80
        per_row = 3
        box_w = (right - left) / per_row
        for index, (label, value) in enumerate(block.details):
            x = left + (index % per_row) * box_w
            row_y = y - (index // per_row) * 46
            page.rect(x, row_y - 26, box_w - 6, 38, stroke=1, fill=0)
            page.setFont(regular, 7.5)
            page.drawString(x + 4, row_y, label.upper())
            page.setFont(bold, 9.5)
            page.drawString(x + 4, row_y - 16, value)
        y -= 55 + (len(block.details) - 1) // per_row * 46
        page.setFont(regular, 10)
        page.drawString(left, y, f"Bill to: {block.bill_to}")
        y -= 10
    else:                                  # right_block: a right-aligned details block
        page.setFont(bold, 24)
        page.drawString(left, y - 50, block.title)
        detail_y = height - 60
        page.setFont(regular, 10)
        for label, value in block.details:
            page.drawRightString(right - 120, detail_y, label)
            page.drawRightString(right, detail_y, value)
            detail_y -= 14
        y = min(y - 80, detail_y - 20)
        page.drawString(left, y, "Invoice to")
        page.drawString(left, y - 13, block.bill_to)
        y -= 20

    # line items
    y -= 30
    columns = (left, right - 200, right - 100, right)
    page.setFont(bold, 9.5)
    page.line(left, y + 12, right, y + 12)
    page.drawString(columns[0], y, block.item_header[0])
    for x, text in zip(columns[1:], block.item_header[1:]):
        page.drawRightString(x, y, text)
    page.line(left, y - 5, right, y - 5)
    page.setFont(regular, 9.5)
    for row in block.item_rows:
        y -= 16
        page.drawString(columns[0], y, row[0])
        for x, text in zip(columns[1:], row[1:]):
            page.drawRightString(x, y, text)
    y -= 10
    page.line(left, y, right, y)
    y -= 18
    for index, (label, value) in enumerate(block.totals):
        last = index == len(block.totals) - 1
        page.setFont(bold if last else regular, 10.5 if last else 10)
        page.drawRightString(right - 120, y, label)
        page.drawRightString(right, y, value)
        y -= 16
    page.setFont(regular, 9)
    y = 90
    for line in block.footer:
        page.drawString(left, y, line)
        y -= 13
    page.showPage()
    page.save()
    return out.getvalue()


# -- chromium ------------------------------------------------------------------------------------

_CSS = """
@page { size: A4; margin: 16mm; }
body { font-family: '%(font)s'; font-size: 10pt; color: #111; }
h1 { font-size: 22pt; letter-spacing: 2px; margin: 0; }
.vendor { font-size: 15pt; font-weight: bold; }
table.items { width: 100%%; border-collapse: collapse; margin-top: 18px; }
table.items th { text-align: left; border-bottom: 1.5px solid #333; padding: 4px; }
table.items td { padding: 4px; border-bottom: 0.5px solid #bbb; }
table.items td.n, table.items th.n { text-align: right; }
table.totals { margin-left: auto; margin-top: 10px; }
table.totals td { padding: 2px 8px; text-align: right; }
table.totals tr:last-child td { font-weight: bold; border-top: 1px solid #333; }
footer { margin-top: 40px; font-size: 9pt; }
"""


def html_of(block: Block, style: Style) -> str:
    e = html.escape
    details = "".join(f"<tr><th>{e(label)}</th><td>{e(value)}</td></tr>"
                      for label, value in block.details)
    items = "".join(
        f"<tr><td>{e(row[0])}</td><td class=n>{e(row[1])}</td><td class=n>{e(row[2])}</td>"
        f"<td class=n>{e(row[3])}</td></tr>" for row in block.item_rows)
    head = "".join(f"<th{' class=n' if i else ''}>{e(text)}</th>"
                   for i, text in enumerate(block.item_header))
    totals = "".join(f"<tr><td>{e(label)}</td><td>{e(value)}</td></tr>"
                     for label, value in block.totals)
    footer = "".join(f"<div>{e(line)}</div>" for line in block.footer)
    if style.layout == "html_grid":
        top = f"""
<div style="display:grid;grid-template-columns:1fr auto;align-items:start">
  <div><div class=vendor>{e(block.letterhead)}</div><div>{e(block.address)}</div></div>
  <h1>{e(block.title)}</h1>
</div>
<div style="display:grid;grid-template-columns:1fr 1fr;margin-top:28px">
  <div><b>Bill to</b><br>{e(block.bill_to)}</div>
  <table class=meta style="border-collapse:collapse">{details}</table>
</div>"""
        extra_css = (".meta th { text-align:left; padding: 2px 14px 2px 0; "
                     "font-weight: normal; }")
    else:                                  # html_sidebar: a shaded details column on the left
        top = f"""
<div style="display:flex;gap:24px">
  <div style="background:#e9eef3;padding:12px;width:34%">
    <table class=meta>{details}</table>
  </div>
  <div style="flex:1;text-align:right">
    <h1>{e(block.title)}</h1>
    <div class=vendor>{e(block.letterhead)}</div><div>{e(block.address)}</div>
    <div style="margin-top:14px">Customer: {e(block.bill_to)}</div>
  </div>
</div>"""
        extra_css = (".meta th { display:block; text-align:left; font-size:7.5pt; color:#333; "
                     "font-weight:normal; text-transform:uppercase; }"
                     " .meta td { display:block; font-weight:bold; padding-bottom:6px; }")
    css = _CSS % {"font": style.font} + extra_css
    return (f"<!doctype html><html><head><meta charset=utf-8><style>{css}</style></head>"
            f"<body>{top}<table class=items><tr>{head}</tr>{items}</table>"
            f"<table class=totals>{totals}</table><footer>{footer}</footer></body></html>")


class RendererMissing(RuntimeError):
    """The second renderer (Debian's chromium) is not installed."""


def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    return None


def render_chromium(documents: Sequence[str], timeout_s: float = 120) -> list[bytes]:
    """Print HTML documents to PDF with headless chromium (one browser start per document:
    ``--print-to-pdf`` takes a single page)."""
    binary = chromium_binary()
    if binary is None:
        raise RendererMissing("chromium is not installed (apt-get install chromium)")
    out = []
    with tempfile.TemporaryDirectory(prefix="switchyard-evalset-") as tmp:
        for index, markup in enumerate(documents):
            source = Path(tmp) / f"{index}.html"
            target = Path(tmp) / f"{index}.pdf"
            source.write_text(markup, encoding="utf-8")
            subprocess.run(
                [binary, "--headless", "--no-sandbox", "--disable-gpu",
                 "--no-pdf-header-footer", f"--user-data-dir={tmp}/profile",
                 f"--print-to-pdf={target}", source.as_uri()],
                check=True, capture_output=True, timeout=timeout_s)
            out.append(target.read_bytes())
    return out


# -- scans ---------------------------------------------------------------------------------------

def rasterise(pdf: bytes, dpi: int) -> Any:
    """The first page of a PDF as a greyscale PIL image, through PDFium."""
    import pypdfium2

    document = pypdfium2.PdfDocument(pdf)
    try:
        bitmap = document[0].render(scale=dpi / 72, grayscale=True)
        return bitmap.to_pil().convert("L")
    finally:
        document.close()


def _noise(image: Any, sigma: float, rng: random.Random) -> Any:
    import numpy as np
    from PIL import Image

    pixels = np.asarray(image, dtype=np.float32)
    noisy = pixels + np.random.default_rng(rng.randrange(2**32)).normal(0, sigma, pixels.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def _uneven_light(image: Any, strength: float) -> Any:
    """A phone photo's shading: darker towards one corner."""
    import numpy as np
    from PIL import Image

    pixels = np.asarray(image, dtype=np.float32)
    h, w = pixels.shape
    yy, xx = np.mgrid[0:h, 0:w]
    shade = 1.0 - strength * ((xx / w) * 0.6 + (yy / h) * 0.4)
    return Image.fromarray(np.clip(pixels * shade + 25 * (1 - shade), 0, 255).astype(np.uint8))


def degrade(image: Any, kinds: Sequence[str], rng: random.Random) -> tuple[Any, list[str]]:
    """Apply degradations in order; return the image and what was done, with parameters."""
    from PIL import Image, ImageFilter

    done = []
    for kind in kinds:
        if kind == "rotation":
            angle = round(rng.choice((-1, 1)) * rng.uniform(1.0, 4.0), 1)
            image = image.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True,
                                 fillcolor=255)
            done.append(f"rotation:{angle}")
        elif kind == "blur":
            radius = round(rng.uniform(0.8, 1.4), 2)
            image = image.filter(ImageFilter.GaussianBlur(radius))
            done.append(f"blur:{radius}")
        elif kind == "noise":
            sigma = round(rng.uniform(12, 24), 1)
            image = _noise(image, sigma, rng)
            done.append(f"noise:{sigma}")
        elif kind == "low_resolution":
            factor = round(rng.uniform(0.45, 0.6), 2)
            image = image.resize((int(image.width * factor), int(image.height * factor)),
                                 Image.Resampling.BILINEAR)
            done.append(f"low_resolution:{factor}")
        elif kind == "jpeg":
            quality = rng.randint(12, 30)
            buffer = io.BytesIO()
            image.convert("L").save(buffer, "JPEG", quality=quality)
            image = Image.open(io.BytesIO(buffer.getvalue())).convert("L")
            done.append(f"jpeg:{quality}")
        elif kind == "photo":
            strength = round(rng.uniform(0.25, 0.45), 2)
            image = _uneven_light(image, strength)
            done.append(f"photo:{strength}")
        else:
            raise ValueError(f"unknown degradation {kind!r}")
    return image, done


DEGRADATIONS: tuple[str, ...] = ("rotation", "blur", "noise", "low_resolution", "jpeg", "photo")


def encode_scan(image: Any, fmt: str, exif_rotated: bool = False) -> tuple[str, str, bytes]:
    """An image as a file a scanner or phone would send: (content type, extension, bytes)."""
    from PIL import Image

    buffer = io.BytesIO()
    if fmt == "png":
        image.save(buffer, "PNG", optimize=True)
        return "image/png", "png", buffer.getvalue()
    if fmt == "tiff":
        image.point(lambda v: 255 if v > 150 else 0).convert("1").save(
            buffer, "TIFF", compression="group4", dpi=(200, 200))
        return "image/tiff", "tiff", buffer.getvalue()
    if fmt == "pdf":
        image.convert("L").save(buffer, "PDF", resolution=200.0)
        return "application/pdf", "pdf", buffer.getvalue()
    if fmt == "jpeg":
        if exif_rotated:   # stored sideways, upright only for a reader that obeys EXIF
            exif = Image.Exif()
            exif[0x0112] = 6  # Orientation: rotate 90 CW to display
            image.rotate(90, expand=True).convert("RGB").save(buffer, "JPEG", quality=85,
                                                              exif=exif.tobytes())
        else:
            image.convert("RGB").save(buffer, "JPEG", quality=85)
        return "image/jpeg", "jpg", buffer.getvalue()
    raise ValueError(f"unknown scan format {fmt!r}")


# -- the set -------------------------------------------------------------------------------------

@dataclass
class EvalDocument:
    """One evaluation document: its bytes, how it was made, and the values it shows."""

    doc_id: str
    category: str
    content_type: str
    filename: str
    body: bytes
    expected: dict[str, str | None]
    made: dict[str, Any] = field(default_factory=dict)
    #: the document type a person would file it under (a pack's name, or ``other``); None:
    #: routing is not scored on it
    kind: str | None = None

    def manifest_line(self) -> dict[str, Any]:
        return {"file": self.filename, "content_type": self.content_type,
                "category": self.category, "kind": self.kind, "expected": self.expected,
                "made": self.made}


def generate(text_pdfs: int = 12, clean_scans: int = 8, degraded_scans: int = 12,
             seed: int = 16, html_share: float = 0.4) -> list[EvalDocument]:
    """The evaluation set: text PDFs from both renderers, clean scans and degraded scans.

    Scans are rasterised from their own freshly generated text PDFs (never from the text
    PDFs of the first category), so every document has its own facts. ``html_share`` of the
    PDFs come from chromium.
    """
    rng = random.Random(seed)
    wanted = [("text_pdf", text_pdfs), ("clean_scan", clean_scans),
              ("degraded_scan", degraded_scans)]
    plans = []
    for category, count in wanted:
        for index in range(count):
            share_before, share_after = int(index * html_share), int((index + 1) * html_share)
            renderer = "chromium" if share_after > share_before else "reportlab"
            facts = random_invoice(rng)
            vocabulary = "held_out" if index % 4 == 3 else "common"
            style = random_style(rng, renderer, vocabulary)
            plans.append((category, index, facts, style, vocabulary))
    markup = [html_of(block_of(f, s), s) for _, _, f, s, _ in plans if s.renderer == "chromium"]
    printed = iter(render_chromium(markup) if markup else [])

    documents = []
    for category, index, facts, style, vocabulary in plans:
        block = block_of(facts, style)
        pdf = next(printed) if style.renderer == "chromium" else render_reportlab(block, style)
        made: dict[str, Any] = {
            "renderer": style.renderer, "layout": style.layout, "font": style.font,
            "date_style": style.date_style, "money_style": style.money_style,
            "currency_mark": style.currency_mark, "vocabulary": vocabulary}
        doc_id = f"{category}-{index:03d}"
        if category == "text_pdf":
            documents.append(EvalDocument(doc_id, category, "application/pdf", f"{doc_id}.pdf",
                                          pdf, facts.expected(), made, kind="invoice"))
            continue
        dpi = rng.choice((200, 300)) if category == "clean_scan" else rng.choice((150, 200))
        image = rasterise(pdf, dpi)
        made["dpi"] = dpi
        exif_rotated = False
        if category == "clean_scan":
            fmt = ("png", "tiff", "pdf", "jpeg")[index % 4]
        else:
            kinds = rng.sample(DEGRADATIONS, k=rng.choice((2, 3)))
            if "photo" in kinds:   # a phone photo: JPEG, often stored sideways with EXIF
                kinds = [k for k in kinds if k != "photo"] + ["photo"]
                fmt, exif_rotated = "jpeg", rng.random() < 0.5
            else:
                fmt = rng.choice(("png", "jpeg", "pdf", "tiff"))
                if fmt == "tiff" and {"blur", "noise"} & set(kinds):
                    fmt = "png"   # bilevel TIFF would erase what is being measured
            image, made["degradations"] = degrade(image, kinds, rng)
            made["exif_rotated"] = exif_rotated
        content_type, ext, body = encode_scan(image, fmt, exif_rotated)
        made["format"] = fmt
        documents.append(EvalDocument(doc_id, category, content_type, f"{doc_id}.{ext}", body,
                                      facts.expected(), made, kind="invoice"))
    return documents


def write_set(documents: Iterable[EvalDocument], directory: Path) -> Path:
    """Write files and ``manifest.jsonl`` (the format :func:`load_set` reads)."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = []
    for document in documents:
        (directory / document.filename).write_bytes(document.body)
        lines.append(json.dumps(document.manifest_line(), ensure_ascii=False))
    manifest = directory / "manifest.jsonl"
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return manifest


def load_set(directory: Path) -> list[EvalDocument]:
    """Documents listed in ``directory/manifest.jsonl``: each line names a ``file`` beside it,
    its ``content_type``, a ``category`` (any name; the report groups by it), the ``expected``
    values of the fields to score (missing or null: not scored) and optionally the ``kind`` a
    person would file it under (routing is scored against it)."""
    documents = []
    manifest = directory / "manifest.jsonl"
    for number, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            path = directory / entry["file"]
            documents.append(EvalDocument(
                doc_id=Path(entry["file"]).stem, category=str(entry.get("category", "other")),
                content_type=entry["content_type"], filename=entry["file"],
                body=path.read_bytes(), expected=dict(entry.get("expected", {})),
                made=dict(entry.get("made", {})), kind=entry.get("kind")))
        except (KeyError, ValueError, OSError) as error:
            raise ValueError(f"{manifest}:{number}: {error}") from error
    return documents


# -- scoring -------------------------------------------------------------------------------------

def _amount(text: str) -> float | None:
    match = re.search(r"-?\d[\d ,.']*", text)
    if match is None:
        return None
    number = match.group(0).strip().replace(" ", "").replace("'", "")
    decimal = re.search(r"[.,](\d{1,2})$", number)
    try:
        if decimal:
            whole = re.sub(r"[.,]", "", number[:decimal.start()])
            return float(f"{whole or '0'}.{decimal.group(1)}")
        return float(re.sub(r"[.,]", "", number))
    except ValueError:
        return None


def _text(value: str) -> str:
    return re.sub(r"\s+", " ", value).strip().casefold()


def field_correct(name: str, expected: str, got: str | None) -> bool:
    """Whether an extracted value is the true one: amounts to the cent, dates as the same
    day (ISO text), IBANs and identifiers ignoring spaces, case and a leading ``#`` (the
    number sign is no part of a number: ``#4471`` and ``4471`` are the same invoice), names
    ignoring case and repeated spaces (a legal suffix must be there: it is part of the
    name)."""
    if got is None or got == "":
        return False
    if name in MONEY_FIELDS:
        value = _amount(got)
        return value is not None and abs(value - float(expected)) < 0.005
    if name in DATE_FIELDS:
        return got.strip()[:10] == expected
    if name in ("bank_account", "invoice_number", "po_number", "currency"):
        def key(value: str) -> str:
            return re.sub(r"\s+", "", value).lstrip("#").casefold()
        return key(got) == key(expected)
    return _text(got) == _text(expected)


def score(expected: dict[str, str | None], got: dict[str, str]) -> dict[str, bool]:
    """Per scored field the document shows (expected not None): read right or not."""
    return {name: field_correct(name, value, got.get(name))
            for name, value in expected.items() if value is not None}


__all__ = ["CATEGORIES", "DEGRADATIONS", "EvalDocument", "HELD_OUT_LABELS", "InvoiceFacts",
           "LABELS", "LineItem", "VOCABULARIES",
           "RendererMissing", "SCORED_FIELDS", "Style", "block_of", "degrade", "encode_scan",
           "field_correct", "format_amount", "generate", "html_of", "iban", "iban_valid",
           "load_set", "random_invoice", "random_style", "rasterise", "render_chromium",
           "render_reportlab", "score", "write_set"]
