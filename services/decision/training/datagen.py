"""Seeded generator of the synthetic, labelled training corpora shipped in ``models/data/``.

Two corpora, both JSON Lines, both fully determined by ``(GENERATOR_VERSION, seed, n)``:

``router_corpus.jsonl`` -- one document a line: ``{"id", "text", "label", "template",
"label_noise"}``. ``label`` is one of ``features.ROUTER_CLASSES``. Texts come from ~40
templates with randomized layouts, field names, orders, separators, date / number / currency
formats, languages (a few German, French and Spanish invoice words), tones (polite, terse,
angry), OCR damage and truncation. Realism knobs that keep accuracy high but below 100%:

* overlapping templates: billing complaints that quote invoice numbers (support_ticket),
  phishing mails about "your invoice" (other), receipts and payment reminders (mostly invoice),
  quotes and purchase orders (other), admission-portal problems (support_ticket), open-day
  mailings (other), teachers reporting odd quiz numbers (classroom_event or support_ticket);
* genuinely ambiguous templates whose label is itself drawn from a distribution (receipts,
  portal problems, camp registrations, ...);
* ``LABEL_NOISE`` (3%) of labels replaced by a uniformly drawn *other* class
  (``label_noise: 1``), as a tired human annotator would.

``invoice_corpus.jsonl`` -- one extracted invoice a line, flat: the fields that
``features.invoice_raw_features`` reads plus ``id``, ``vendor``, ``invoice_number``,
``invoice_date`` and ``label`` (1 = was processed without a person). Ground truth: a latent
logit built from plausible risk factors (unknown vendor, amount far from the vendor's history,
large amount without a PO, currency mismatch, duplicate invoice number, low extraction
confidence, line items not adding up, changed bank details, overdue, ...) with smooth
nonlinearities the model does not see directly, ``label ~ Bernoulli(sigmoid(logit))``, then 2%
of labels flipped (``label_noise: 1``).

Only the standard library's ``random.Random(seed)`` is used, so the same seed gives the same
bytes. ``python -m services.decision.training --regenerate-data [--data-seed N]`` rewrites the
files and their sha256 (``models/data/SHA256SUMS`` and ``manifest.json``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import random
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

GENERATOR_VERSION = "1"
DEFAULT_DATA_SEED = 20251124
ROUTER_N = 7200
INVOICE_N = 5000
LABEL_NOISE = 0.03
INVOICE_LABEL_NOISE = 0.02
ROUTER_FILE = "router_corpus.jsonl"
INVOICE_FILE = "invoice_corpus.jsonl"

CLASSES = ("invoice", "admission_form", "support_ticket", "classroom_event", "other")
CLASS_MIX = {
    "invoice": 0.27,
    "support_ticket": 0.25,
    "classroom_event": 0.17,
    "admission_form": 0.15,
    "other": 0.16,
}

# -- pools ------------------------------------------------------------------------------------

FIRST = """James Maria Wei Aisha Lukas Sofia Mateo Priya Oliver Chloe Kenji Fatima Noah Amara
Liam Elena Arjun Hannah Diego Yuki Omar Zoe Ivan Leila Samuel Ana Tomasz Grace Kwame Ingrid
Rafael Mei Daniel Nadia Hugo Emma Ravi Olga Ethan Lucia Ahmed Clara Jonas Ines Mohammed Sara
Felix Ayumi Pedro Julia Chen Amelia Tariq Nora Marco Beatriz Sven Fiona Kofi Lena""".split()
LAST = """Smith Garcia Chen Okafor Müller Rossi Tanaka Patel Johnson Kowalski Nguyen Haddad
Silva Andersen Dubois Kim Ivanova Brown Fernandez Schmidt Ali Martin Nakamura Osei Lopez Weber
Moreau Jensen Novak Singh Costa Hughes Bianchi Yilmaz Mensah OConnor Lindqvist Park Romero
Walsh Fischer Sato Mwangi Herrera Kaur Petrov Dupont Larsen Reyes Abbott""".split()
CO_A = """Acme Northwind Bluepeak Redstone Silverline Greenfield Brightline Ironbridge Oakridge
Summit Harbor Pioneer Atlas Vertex Crescent Evergreen Falcon Granite Horizon Keystone Lakeside
Meridian Nimbus Orion Pinnacle Quantum Riverside Sterling Titan Union Vantage Westwood Zenith
Cobalt Delta Echo Fjord Helix Juniper Kestrel Lumen Maple Nova Polar Sierra Tundra""".split()
CO_B = """Supplies Logistics Consulting Systems Office Solutions Print Foods Facilities Labs
Electric Analytics Software Cleaning Security Catering Freight Media Networks Energy Furniture
Medical Engineering Legal Travel Telecom Paper Hardware Water Design""".split()
CO_C = ["Ltd", "Ltd.", "Inc.", "LLC", "GmbH", "S.A.", "B.V.", "AG", "Pty Ltd", "Co.", "plc",
        "SARL", "S.L.", "Oy", "AB", "", "", "Corp."]
CITIES = """London Berlin Madrid Paris Toronto Austin Chicago Lagos Nairobi Mumbai Bangalore
Sydney Melbourne Dublin Lisbon Warsaw Prague Vienna Zurich Oslo Stockholm Helsinki Tokyo Seoul
Singapore Denver Boston Seattle Manchester Lyon Milan Rotterdam Accra Cape Town Auckland""".split()
STREETS = ["Main St", "High Street", "Market Rd", "Station Road", "Elm Avenue", "Industrial Way",
           "Hauptstraße", "Rue de la Paix", "Calle Mayor", "Park Lane", "Harbour Drive", "King St"]
CURRENCIES = [("USD", "$"), ("EUR", "€"), ("GBP", "£"), ("INR", "₹"), ("JPY", "¥"),
              ("CHF", "CHF "), ("CAD", "C$"), ("AUD", "A$"), ("SEK", "kr "), ("PLN", "zł ")]
SERVICES = [
    "Consulting services", "Office chairs (ergonomic)", "A4 copy paper, 80gsm", "Laptop docking stations",
    "Cloud hosting - monthly plan", "Catering for staff event", "Freight charges", "Cleaning services",
    "Software license renewal", "Security patrol", "Printer toner cartridges", "Legal advisory",
    "Website maintenance", "Network switches 24-port", "Electricity supply", "Water dispensers rental",
    "Travel booking fee", "Graphic design", "Lab reagents", "Field engineering hours", "Courier delivery",
    "Annual maintenance contract", "Projector lamps", "Whiteboard markers (box of 12)", "Desk lamps",
    "Data analytics retainer", "Translation services", "Mobile plan - 25 lines", "Conference room hire",
    "Safety equipment", "Server rack installation", "Textbooks (set)", "Student tablets", "Cafeteria supplies",
]
UNITS = ["pcs", "hrs", "h", "units", "ea", "boxes", "months", "days", "", "lot"]
PROGRAMS = [
    "BSc Computer Science", "MSc Data Science", "BA Economics", "MBA", "BEng Mechanical Engineering",
    "PhD Molecular Biology", "BA English Literature", "MA International Relations", "Nursing (BSN)",
    "Grade 6", "Grade 9", "Year 7", "Kindergarten", "Grade 11 (IB Diploma)", "Foundation Year",
    "Associate Degree in Accounting", "BFA Graphic Design", "LLM International Law", "MSc Finance",
    "Diploma in Early Childhood Education", "Pre-Med Track", "BSc Psychology", "MEd Educational Leadership",
]
TERMS = ["Fall 2025", "Spring 2026", "Autumn 2025", "September 2025 intake", "January 2026",
         "Summer 2025", "2025/26 academic year", "Term 1 2026", "Winter 2026"]
SCHOOLS = ["Riverside High School", "St. Mary's College", "Lincoln Middle School", "Gymnasium am Park",
           "Lycée Victor Hugo", "Greenwood Academy", "Delhi Public School", "Westfield Secondary",
           "Colegio San José", "Oakridge International School", "North Valley Community College",
           "University of Lagos", "Maple Leaf Elementary"]
COURSES = ["ALG2", "BIO-101", "CHEM-210", "HIST-120", "MATH-7B", "PHYS-301", "ENG-9A", "CS-150",
           "ART-5", "GEO-8C", "SPAN-102", "ECON-201", "STAT-110", "MUS-4", "PE-6"]
SUBJECTS = ["Algebra II", "Biology", "Chemistry", "World History", "Mathematics", "Physics",
            "English", "Computer Science", "Art", "Geography", "Spanish", "Economics", "Statistics"]
ROOMS = ["B204", "A12", "Lab 3", "Room 118", "C-1.04", "Gym", "Library", "Hall 2", "S-210", "E17"]
PRODUCTS = ["the mobile app", "the customer portal", "your website", "the dashboard", "the API",
            "the desktop client", "my account", "the checkout page", "the reporting module",
            "the parent app", "the LMS", "the booking system"]
ERRORS = ["Error 500", "error code E1043", "HTTP 403 Forbidden", "'Something went wrong'",
          "a blank white screen", "TIMEOUT after 30s", "ERR_CONNECTION_RESET", "NullReferenceException",
          "'Session expired' every 2 minutes", "error 0x80070005", "a spinning wheel forever"]
BROWSERS = ["Chrome 129", "Firefox 131", "Safari 17.5", "Edge 128", "iOS 18 app", "Android 14 app"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]


class _R:
    """A seeded random source with the helpers the templates share."""

    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)
        self.last_currency = ""  # ISO code of the latest money(); ground truth for extraction

    def pick(self, seq):  # type: ignore[no-untyped-def]
        return seq[self.r.randrange(len(seq))]

    def chance(self, p: float) -> bool:
        return self.r.random() < p

    def int(self, lo: int, hi: int) -> int:
        return self.r.randint(lo, hi)

    def weighted(self, options: dict) -> object:  # type: ignore[type-arg]
        keys = list(options)
        return self.r.choices(keys, weights=[options[k] for k in keys])[0]

    def person(self) -> str:
        return f"{self.pick(FIRST)} {self.pick(LAST)}"

    def company(self) -> str:
        name = f"{self.pick(CO_A)} {self.pick(CO_B)}"
        suffix = self.pick(CO_C)
        return f"{name} {suffix}".strip()

    def email(self, name: str, domain: str | None = None) -> str:
        parts = name.lower().replace("'", "").split()
        local = self.pick([".".join(parts), parts[0][0] + parts[-1], parts[0], "_".join(parts)])
        dom = domain or self.pick(["gmail.com", "outlook.com", "yahoo.com", "proton.me",
                                   "mail.com", "icloud.com"])
        return f"{local}@{dom}"

    def date(self) -> dt.date:
        return dt.date(2023, 1, 1) + dt.timedelta(days=self.int(0, 1000))

    def fmt_date(self, d: dt.date) -> str:
        style = self.int(0, 7)
        if style == 0:
            return d.isoformat()
        if style == 1:
            return d.strftime("%d/%m/%Y")
        if style == 2:
            return d.strftime("%m/%d/%Y")
        if style == 3:
            return f"{MONTHS[d.month - 1]} {d.day}, {d.year}"
        if style == 4:
            return f"{d.day} {MONTHS[d.month - 1][:3]} {d.year}"
        if style == 5:
            return d.strftime("%d.%m.%Y")
        if style == 6:
            return f"{d.day} {MONTHS[d.month - 1]} {d.year}"
        return d.strftime("%Y%m%d")

    def amount(self, lo: float = 20, hi: float = 60000) -> float:
        return round(math.exp(self.r.uniform(math.log(lo), math.log(hi))), 2)

    def money(self, value: float, cur: tuple[str, str] | None = None) -> str:
        code, sym = cur or self.pick(CURRENCIES)
        self.last_currency = code
        style = self.int(0, 5)
        if code == "JPY":
            num = f"{round(value):,}"
        elif style in (0, 1):
            num = f"{value:,.2f}"
        elif style == 2:
            num = f"{value:,.2f}".replace(",", "X").replace(".", ",").replace("X", ".")
        elif style == 3:
            num = f"{value:.2f}"
        elif style == 4:
            num = f"{value:,.2f}".replace(",", " ").replace(".", ",")
        else:
            num = f"{value:,.2f}"
        form = self.int(0, 3)
        if form == 0:
            return f"{sym}{num}"
        if form == 1:
            return f"{num} {code}"
        if form == 2:
            return f"{code} {num}"
        return f"{sym}{num}" if sym.strip() not in ("CHF", "kr", "zł") else f"{num} {code}"

    def inv_no(self) -> str:
        return self.pick([
            f"INV-{self.int(2023, 2025)}-{self.int(1, 99999):05d}",
            f"{self.int(1000, 999999)}",
            f"INV{self.int(10000, 99999)}",
            f"{self.pick(['A', 'B', 'F', 'R'])}{self.int(100, 9999)}/{self.int(23, 25)}",
            f"RE-{self.int(100000, 999999)}",
            f"#{self.int(100, 99999)}",
            f"{self.pick(CO_A)[:3].upper()}-{self.int(1000, 9999)}",
        ])

    def po_no(self) -> str:
        return self.pick([f"PO-{self.int(10000, 99999)}", f"PO{self.int(100000, 999999)}",
                          f"4500{self.int(100000, 999999)}", f"P.O. {self.int(1000, 9999)}",
                          f"PUR-{self.int(2023, 2025)}-{self.int(100, 999)}"])

    def phone(self) -> str:
        return self.pick([f"+44 20 {self.int(1000, 9999)} {self.int(1000, 9999)}",
                          f"({self.int(200, 999)}) {self.int(200, 999)}-{self.int(1000, 9999)}",
                          f"+49 30 {self.int(100000, 9999999)}", f"+91 {self.int(70000, 99999)} {self.int(10000, 99999)}",
                          f"0{self.int(100, 999)} {self.int(100, 999)} {self.int(1000, 9999)}"])

    def address(self) -> str:
        return f"{self.int(1, 300)} {self.pick(STREETS)}, {self.pick(CITIES)}"

    def ticket_id(self) -> str:
        return self.pick([f"#{self.int(10000, 999999)}", f"TCK-{self.int(1000, 99999)}",
                          f"SR{self.int(100000, 999999)}", f"CASE-{self.int(10000, 99999)}"])


def _sep(g: _R) -> str:
    return g.pick([": ", ": ", " - ", "\t", "  ", " : ", ":", " = "])


def _fields(g: _R, pairs: list[tuple[str, str]], shuffle: float = 0.3) -> str:
    """Render key/value lines; sometimes shuffled, sometimes on one line."""
    pairs = [p for p in pairs if p[1]]
    if g.chance(shuffle):
        g.r.shuffle(pairs)
    sep = _sep(g)
    if g.chance(0.15):
        return " | ".join(f"{k}{sep}{v}" for k, v in pairs)
    return "\n".join(f"{k}{sep}{v}" for k, v in pairs)


def _case(g: _R, s: str) -> str:
    return s.upper() if g.chance(0.3) else s


_OCR = {"O": "0", "0": "O", "l": "1", "1": "l", "I": "l", "S": "5", "5": "S", "B": "8", "e": "c",
        "rn": "m", "m": "rn", "a": "o", "t": "f", ".": ",", ",": "."}


def _ocr(g: _R, text: str, rate: float = 0.04) -> str:
    """Scanner damage: character confusions, dropped/merged line breaks, stray spaces."""
    out: list[str] = []
    i = 0
    while i < len(text):
        two = text[i:i + 2]
        if two in _OCR and g.chance(rate):
            out.append(_OCR[two])
            i += 2
            continue
        ch = text[i]
        if ch in _OCR and g.chance(rate):
            out.append(_OCR[ch])
        elif ch == "\n" and g.chance(0.3):
            out.append(" ")
        elif ch == " " and g.chance(rate):
            out.append("  ")
        elif g.chance(rate / 4):
            pass
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def _sign(g: _R, name: str) -> str:
    return g.pick([f"\n\nBest,\n{name}", f"\n\nThanks,\n{name}", f"\n\nRegards\n{name}",
                   f"\n-- {name}", "", f"\n\nKind regards,\n{name}", f"\n\nCheers, {name.split()[0]}"])


# -- invoice templates ----------------------------------------------------------------------


def _keep(truth: dict[str, object] | None, key: str, value: object) -> object:
    """Record ``value`` as ground truth (when collecting it) and pass it through unchanged.

    Wrapping an expression never changes the order of random draws, so the shipped corpora
    stay byte-identical while :func:`generate_extraction_corpus` learns what was rendered.
    """
    if truth is not None:
        truth[key] = value.isoformat() if isinstance(value, dt.date) else value
    return value


def _line_items(g: _R, cur: tuple[str, str],
                truth: dict[str, object] | None = None) -> tuple[str, float]:
    n = int(_keep(truth, "line_item_count", g.int(1, 6)))  # type: ignore[call-overload]
    lines = []
    total = 0.0
    hdr = g.pick(["Description  Qty  Unit price  Amount", "Item | Qty | Rate | Total",
                  "DESCRIPTION\tQTY\tPRICE\tLINE TOTAL", "Pos. Beschreibung Menge Preis Betrag",
                  "", "Qty  Description  Amount"])
    if hdr:
        lines.append(hdr)
    for k in range(n):
        qty = g.pick([1, 1, 1, 2, 3, 5, 10, 12, 20, 40, 100])
        unit = g.amount(2, 4000 if qty < 5 else 300)
        amt = round(qty * unit, 2)
        total += amt
        u = g.pick(UNITS)
        lines.append(g.pick([
            f"{g.pick(SERVICES)}  {qty} {u}  {g.money(unit, cur)}  {g.money(amt, cur)}",
            f"{k + 1}. {g.pick(SERVICES)} | {qty} | {unit:.2f} | {amt:.2f}",
            f"{qty} x {g.pick(SERVICES)} @ {unit:.2f} = {amt:.2f}",
            f"{g.pick(SERVICES)}\t{qty}\t{amt:,.2f}",
        ]))
    return "\n".join(lines), round(total, 2)


def inv_formal(g: _R, truth: dict[str, object] | None = None) -> str:
    cur = g.pick(CURRENCIES)
    vendor, buyer = g.company(), g.company()
    d = g.date()
    items, sub = _line_items(g, cur, truth)
    rate = g.pick([0.0, 0.05, 0.07, 0.08, 0.1, 0.18, 0.19, 0.2, 0.21])
    tax = round(sub * rate, 2)
    title = g.pick(["INVOICE", "Invoice", "TAX INVOICE", "Commercial Invoice", "Rechnung / Invoice",
                    "FACTURE", "Factura", "Sales Invoice", "Invoice (original)", "Bill"])
    head = _fields(g, [
        (g.pick(["Invoice No", "Invoice #", "Inv. No.", "Invoice Number", "Bill No", "Document No",
                 "Rechnungsnummer", "N° de facture", "No. Factura"]),
         _keep(truth, "invoice_number", g.inv_no())),
        (g.pick(["Date", "Invoice Date", "Issue date", "Datum", "Date of issue"]),
         g.fmt_date(_keep(truth, "invoice_date", d))),  # type: ignore[arg-type]
        (g.pick(["Due Date", "Payment due", "Pay by", "Fällig am", "Due"]),
         g.fmt_date(_keep(truth, "due_date",  # type: ignore[arg-type]
                          d + dt.timedelta(days=g.pick([0, 7, 14, 30, 30, 45, 60]))))),
        (g.pick(["PO Number", "Purchase Order", "P.O. #", "Your ref", "Order ref", "PO"]),
         _keep(truth, "po_number", g.po_no() if g.chance(0.65) else "")),
        (g.pick(["Bill To", "Customer", "Sold to", "Client", "Kunde"]), buyer),
        (g.pick(["VAT ID", "Tax ID", "GSTIN", "USt-IdNr", "EIN"]),
         f"{g.pick(['GB', 'DE', 'FR', 'IN', 'US', 'NL'])}{g.int(10000000, 999999999)}" if g.chance(0.5) else ""),
    ])
    totals = _fields(g, [
        (g.pick(["Subtotal", "Net amount", "Zwischensumme", "Sub-total"]), g.money(sub, cur)),
        (g.pick([f"VAT {rate:.0%}", f"Tax ({rate * 100:.2f}%)", f"GST {rate:.0%}", "Sales tax", "MwSt"]),
         g.money(tax, cur) if rate else ""),
        (g.pick(["TOTAL", "Total due", "Amount due", "Balance due", "Grand total", "Gesamtbetrag",
                 "Total TTC"]), g.money(sub + tax, cur)),
    ], shuffle=0.0)
    foot = g.pick([
        f"Payment terms: {g.pick(['Net 30', 'Net 14', 'Due on receipt', '2/10 Net 30', 'Net 60', 'EOM'])}",
        f"IBAN {g.pick(['DE', 'GB', 'FR', 'NL', 'ES'])}{g.int(10, 99)} {g.int(1000, 9999)} {g.int(1000, 9999)} "
        f"{g.int(1000, 9999)} {g.int(1000, 9999)}  BIC {g.pick(CO_A)[:4].upper()}XX{g.int(10, 99)}",
        f"Account {g.int(10000000, 99999999)}  Sort code {g.int(10, 99)}-{g.int(10, 99)}-{g.int(10, 99)}",
        "Thank you for your business!", "Please quote the invoice number with your payment.",
        f"Routing {g.int(100000000, 999999999)} / Acct {g.int(1000000, 99999999)}", "",
    ])
    if truth is not None:
        truth.update(vendor=vendor, buyer=buyer, currency=cur[0], subtotal=sub, tax=tax,
                     total=round(sub + tax, 2))
    vend = f"{vendor}\n{g.address()}" if g.chance(0.7) else vendor
    parts = [vend, _case(g, title), head, items, totals, foot]
    if g.chance(0.2):
        parts[0], parts[1] = parts[1], parts[0]
    return "\n\n".join(p for p in parts if p) if g.chance(0.6) else "\n".join(p for p in parts if p)


def inv_email(g: _R, truth: dict[str, object] | None = None) -> str:
    vendor, person, contact = g.company(), g.person(), g.person()
    no, amt = g.inv_no(), g.money(_keep(truth, "total", g.amount()))  # type: ignore[arg-type]
    due_date = g.date()
    due = g.fmt_date(due_date)
    po_no = g.po_no() if g.chance(0.5) else ""
    po = f" (PO {po_no})" if po_no else ""
    if truth is not None:
        truth.update(vendor=vendor, invoice_number=no, currency=g.last_currency,
                     due_date=due_date.isoformat(), po_number=po_no,
                     rendered={"invoice_number": no, "total": amt, "due_date": due,
                               "po_number": po_no, "vendor": vendor})
    subj = g.pick([f"Invoice {no} from {vendor}", f"Your invoice {no}", f"{vendor} - invoice {no}",
                   f"Invoice attached{po}", f"Re: invoice {no}", f"Rechnung {no}", f"Facture {no}"])
    body = g.pick([
        f"Hello {contact.split()[0]},\n\nPlease find attached our invoice {no}{po} for "
        f"{g.pick(SERVICES).lower()}. The total amount of {amt} is due by {due}.",
        f"Hi,\nattached is invoice {no} for {MONTHS[g.int(0, 11)]}. Amount: {amt}. Payment terms net "
        f"{g.pick([14, 30, 45])} days.",
        f"Dear Accounts Payable,\n\nKindly process the enclosed invoice no. {no} amounting to {amt}{po}. "
        f"Bank details are on the invoice. Due date: {due}.",
        f"Hi team - invoice for last month's {g.pick(SERVICES).lower()} attached ({amt}). "
        f"Let me know if you need anything else.",
        f"Good morning,\nwe have issued invoice {no} ({amt}) for the delivery on {g.fmt_date(g.date())}. "
        f"Please remit payment to the account stated.",
    ])
    return f"Subject: {subj}\n\n{body}{_sign(g, person)}\n{vendor}"


def inv_ocr(g: _R, truth: dict[str, object] | None = None) -> str:
    return _ocr(g, inv_formal(g, truth), rate=g.pick([0.02, 0.04, 0.07]))


def inv_compact(g: _R, truth: dict[str, object] | None = None) -> str:
    cur = g.pick(CURRENCIES)
    amt = g.amount()
    vals = [("vendor", g.company()), ("invoice_no", g.inv_no()), ("date", g.date().isoformat()),
            ("amount", f"{amt:.2f}"), ("currency", cur[0]), ("due", g.date().isoformat()),
            ("po", g.po_no() if g.chance(0.6) else "-"), ("lines", str(g.int(1, 9)))]
    if truth is not None:
        v = dict(vals)
        truth.update(vendor=v["vendor"], invoice_number=v["invoice_no"], invoice_date=v["date"],
                     total=amt, currency=cur[0], due_date=v["due"],
                     po_number="" if v["po"] == "-" else v["po"], line_item_count=int(v["lines"]))
    style = g.int(0, 3)
    if style == 0:
        return " | ".join(f"{k}: {v}" for k, v in vals)
    if style == 1:
        return "; ".join(f"{k}={v}" for k, v in vals)
    if style == 2:
        return json.dumps({k: v for k, v in vals}, ensure_ascii=False)
    return "INV*" + "*".join(v for _, v in vals) + "~"


def inv_reminder(g: _R) -> str:
    no, amt = g.inv_no(), g.money(g.amount())
    days = g.pick([7, 14, 15, 30, 45, 60])
    return g.pick([
        f"Payment reminder: invoice {no} for {amt} is now {days} days overdue. Please arrange payment "
        f"at your earliest convenience.",
        f"STATEMENT OF ACCOUNT\n{g.company()}\nOpen items:\n{no}  {amt}  overdue {days} days\n"
        f"{g.inv_no()}  {g.money(g.amount())}  due {g.fmt_date(g.date())}\nBalance due: {g.money(g.amount())}",
        f"Second notice - our records show invoice {no} ({amt}) remains unpaid. Kindly settle within "
        f"7 days to avoid late fees.",
    ])


def inv_utility(g: _R) -> str:
    kind = g.pick(["electricity", "gas", "water", "broadband", "mobile", "waste collection"])
    return (f"Your {kind} bill is ready\nAccount number: {g.int(10000000, 99999999)}\n"
            f"Billing period: {g.fmt_date(g.date())} - {g.fmt_date(g.date())}\n"
            f"Amount due: {g.money(g.amount(20, 900))}\nDue date: {g.fmt_date(g.date())}\n"
            f"{g.pick(['Direct debit will be taken on the due date.', 'Pay online or by bank transfer.', ''])}")


def inv_receipt(g: _R) -> str:
    return (f"{g.pick(['RECEIPT', 'Payment receipt', 'Sales receipt', 'Quittung'])} {g.inv_no()}\n"
            f"{g.company()}\n{g.fmt_date(g.date())}\n"
            f"{g.pick(SERVICES)}  {g.money(g.amount(5, 2000))}\n"
            f"Paid by {g.pick(['Visa', 'Mastercard', 'Amex', 'bank transfer', 'cash'])} "
            f"{'****' + str(g.int(1000, 9999)) if g.chance(0.6) else ''}\nThank you!")


# -- admission templates --------------------------------------------------------------------


def adm_form(g: _R) -> str:
    name, parent = g.person(), g.person()
    prog = g.pick(PROGRAMS)
    dob = dt.date(g.int(1985, 2020), g.int(1, 12), g.int(1, 28))
    title = g.pick(["APPLICATION FOR ADMISSION", "Student Enrollment Form", "Graduate Application",
                    "Undergraduate Application Form", "Transfer Application", "New Student Registration",
                    "Admission Form", "International Student Application", "Online application - submitted"])
    fields = [
        (g.pick(["Applicant Name", "Student name", "Full name", "Name of applicant", "Surname, First name"]),
         name if g.chance(0.7) else ", ".join(reversed(name.split()))),
        (g.pick(["Date of Birth", "DOB", "Birth date"]), g.fmt_date(dob)),
        (g.pick(["Program", "Programme applied for", "Grade applying for", "Course", "Intended major"]), prog),
        (g.pick(["Intake", "Term", "Start term", "Entry"]), g.pick(TERMS)),
        (g.pick(["Previous school", "Current school", "Last institution attended"]), g.pick(SCHOOLS)),
        (g.pick(["GPA", "Grade average", "Final grade"]),
         g.pick([f"{g.r.uniform(2.2, 4.0):.2f}", f"{g.int(60, 99)}%", g.pick(["A", "B+", "A-", "1.7", "2,3"])])
         if g.chance(0.7) else ""),
        (g.pick(["Test scores", "SAT", "IELTS", "TOEFL", "GRE"]),
         g.pick([f"SAT {g.int(1000, 1580)}", f"IELTS {g.pick(['6.0', '6.5', '7.0', '7.5', '8.0'])}",
                 f"TOEFL {g.int(70, 118)}", f"GRE {g.int(290, 335)}"]) if g.chance(0.5) else ""),
        (g.pick(["Parent/Guardian", "Guardian name", "Emergency contact", "Parent"]),
         f"{parent} {g.phone()}" if g.chance(0.6) else ""),
        (g.pick(["Email", "E-mail", "Contact email"]), g.email(name)),
        (g.pick(["Address", "Home address"]), g.address() if g.chance(0.6) else ""),
        (g.pick(["Nationality", "Citizenship"]), g.pick(["Nigerian", "German", "Indian", "Canadian",
                                                         "Brazilian", "Japanese", "Polish", "Kenyan"])
         if g.chance(0.4) else ""),
        (g.pick(["Documents attached", "Enclosures", "Uploads"]),
         ", ".join(g.r.sample(["transcript", "passport copy", "2 recommendation letters",
                               "personal statement", "birth certificate", "immunisation record",
                               "CV", "portfolio"], g.int(1, 4))) if g.chance(0.6) else ""),
        (g.pick(["Application ID", "Ref", "Applicant no."]),
         f"{g.pick(['APP', 'ADM', 'UG', 'GR'])}-{g.int(2024, 2026)}-{g.int(1000, 99999)}" if g.chance(0.6) else ""),
        (g.pick(["Allergies / medical", "Special needs", "Medical notes"]),
         g.pick(["none", "peanut allergy", "asthma (inhaler)", "n/a"]) if g.chance(0.3) else ""),
    ]
    decl = g.pick(["I certify that the information provided is true and complete.",
                   f"Signature: {name}   Date: {g.fmt_date(g.date())}",
                   "Declaration: I agree to the terms of admission.", ""])
    return f"{_case(g, title)}\n{_fields(g, fields, shuffle=0.4)}\n{decl}".strip()


def adm_email(g: _R) -> str:
    name = g.person()
    prog, term = g.pick(PROGRAMS), g.pick(TERMS)
    body = g.pick([
        f"Dear Admissions Committee,\n\nPlease find attached my application for the {prog} programme "
        f"starting {term}. I have included my transcripts from {g.pick(SCHOOLS)} and two letters of "
        f"recommendation.",
        f"Hello,\nI would like to apply for {prog} ({term}). My application number is "
        f"APP-{g.int(1000, 99999)}. Attached: personal statement, CV, transcript.",
        f"Dear Sir/Madam,\n\nI am writing to enrol my {g.pick(['son', 'daughter', 'child'])} "
        f"{g.pick(FIRST)} in {prog} for {term}. {g.pick(['He', 'She', 'They'])} currently attends "
        f"{g.pick(SCHOOLS)}. The completed enrollment form and birth certificate are attached.",
        f"To the admissions office: submitting my transfer application to {prog}. Current GPA "
        f"{g.r.uniform(2.5, 4.0):.2f}, {g.int(30, 90)} credits completed.",
    ])
    return f"Subject: {g.pick(['Application', 'Admission application', 'Enrollment', f'Application - {prog}', 'Re: your application'])}\n\n{body}{_sign(g, name)}"


def adm_kv(g: _R) -> str:
    name = g.person()
    d = {"applicant": name, "program": g.pick(PROGRAMS), "intake": g.pick(TERMS),
         "dob": dt.date(g.int(1990, 2019), g.int(1, 12), g.int(1, 28)).isoformat(),
         "prev_school": g.pick(SCHOOLS), "email": g.email(name), "status": g.pick(["submitted", "draft", "complete"])}
    if g.chance(0.5):
        d["guardian"] = g.person()
    if g.chance(0.5):
        d["gpa"] = round(g.r.uniform(2.0, 4.0), 2)
    keys = list(d)
    g.r.shuffle(keys)
    if g.chance(0.5):
        return json.dumps({k: d[k] for k in keys}, ensure_ascii=False)
    return "; ".join(f"{k}={d[k]}" for k in keys)


def adm_ocr(g: _R) -> str:
    return _ocr(g, adm_form(g), rate=g.pick([0.02, 0.05]))


def adm_scholarship(g: _R) -> str:
    name = g.person()
    return (f"{g.pick(['Scholarship Application', 'Financial Aid Application', 'Bursary request form'])}\n"
            f"Student: {name}\nProgram: {g.pick(PROGRAMS)}\nHousehold income: {g.money(g.amount(8000, 90000))}\n"
            f"Essay: {g.pick(['I am the first in my family to attend university.', 'I want to study to help my community.', 'See attached.'])}")


def amb_camp(g: _R) -> str:
    return (f"{g.pick(['Summer camp registration', 'After-school club sign-up', 'Holiday workshop enrolment'])}\n"
            f"Child: {g.person()}  Age: {g.int(6, 14)}\nWeek: {g.fmt_date(g.date())}\nParent: {g.person()} "
            f"{g.phone()}\nFee: {g.money(g.amount(50, 600))}")


# -- support ticket templates ----------------------------------------------------------------

_TOPICS: list[Callable[[_R], str]] = [
    lambda g: f"I can't log in to {g.pick(PRODUCTS)}. I reset my password twice and still get {g.pick(ERRORS)}.",
    lambda g: f"{g.pick(PRODUCTS).capitalize()} crashes every time I open the settings page ({g.pick(BROWSERS)}).",
    lambda g: f"My order {g.ticket_id()} was supposed to arrive on {g.fmt_date(g.date())} and it still hasn't shipped.",
    lambda g: f"I was charged twice this month - {g.money(g.amount(5, 400))} appears two times on my card statement.",
    lambda g: f"Please cancel my subscription and confirm by email. I don't want to be billed again.",
    lambda g: f"How do I export my data to CSV? I can't find the option anywhere in {g.pick(PRODUCTS)}.",
    lambda g: f"The invoice {g.inv_no()} you sent us has the wrong VAT number and the amount is off by "
              f"{g.money(g.amount(10, 500))}. Can you reissue it?",
    lambda g: f"We requested a refund for {g.ticket_id()} {g.int(2, 6)} weeks ago and nobody has replied.",
    lambda g: f"Getting {g.pick(ERRORS)} when calling the /v2/orders endpoint since the last release.",
    lambda g: f"Is there a way to add more users to our plan? We have {g.int(5, 80)} people now.",
    lambda g: f"The attendance dashboard shows the wrong numbers for class {g.pick(COURSES)}, it says "
              f"everyone was absent on {g.fmt_date(g.date())}.",
    lambda g: f"I cannot upload my transcript to the application portal, it fails at {g.int(60, 99)}% every time.",
    lambda g: f"Two-factor codes are not arriving on my phone. I'm locked out of {g.pick(PRODUCTS)}.",
    lambda g: f"Feature request: dark mode for {g.pick(PRODUCTS)} please.",
    lambda g: f"The package arrived damaged. Box was crushed and the {g.pick(SERVICES).lower()} are broken.",
    lambda g: f"Why did my bill go up from {g.money(g.amount(10, 100))} to {g.money(g.amount(100, 300))}? "
              f"Nobody told us about a price change.",
    lambda g: f"Notifications stopped working after the update on {g.pick(BROWSERS)}.",
    lambda g: f"Please delete my account and all my personal data (GDPR request).",
    lambda g: f"The sync between {g.pick(PRODUCTS)} and our calendar duplicates every event.",
    lambda g: f"Our payment failed with {g.pick(ERRORS)} but the money was taken from the account.",
]
_ANGRY = ["This is unacceptable!!", "THIRD time I'm writing about this.", "Fix it now or I'm cancelling.",
          "Absolutely ridiculous service.", "I want a manager to call me TODAY.", "Worst experience ever."]
_POLITE = ["Could you please help?", "Thanks in advance for your help.", "Any advice would be appreciated.",
           "Sorry to bother you again.", "I'd be grateful for a quick reply.", "Many thanks!"]
_TERSE = ["pls fix", "asap", "help", "still broken", "urgent", "?"]


def _ticket_body(g: _R) -> str:
    main = g.pick(_TOPICS)(g)
    tone = g.weighted({"polite": 0.5, "angry": 0.25, "terse": 0.25})
    if tone == "angry":
        main = (main.upper() if g.chance(0.3) else main) + " " + g.pick(_ANGRY)
    elif tone == "terse":
        main = main.split(".")[0].lower() + " " + g.pick(_TERSE)
    else:
        main = g.pick(["Hi,", "Hello team,", "Good afternoon,", "Dear support,", "Hi there!"]) + " " + main + " " + g.pick(_POLITE)
    if g.chance(0.3):
        main += g.pick([f"\nSteps: 1) open {g.pick(PRODUCTS)} 2) click Save 3) {g.pick(ERRORS)}",
                        f"\nAccount: {g.email(g.person(), 'example.com')}",
                        f"\nOrder number {g.ticket_id()}", f"\nBrowser: {g.pick(BROWSERS)}"])
    return main


def tkt_email(g: _R) -> str:
    subj = g.pick(["Problem with my account", "URGENT", "Help needed", "Refund request", "Bug report",
                   "Question", "Complaint", "Login issue", "Re: Re: still not fixed", "Billing question",
                   "Order not received", ""])
    return f"Subject: {subj}\n\n{_ticket_body(g)}{_sign(g, g.person())}".strip()


def tkt_form(g: _R) -> str:
    return (f"Ticket {g.ticket_id()}\nPriority: {g.pick(['Low', 'Normal', 'High', 'Urgent', 'P1', 'P3'])}\n"
            f"Category: {g.pick(['Billing', 'Technical', 'Account', 'Shipping', 'General', 'Feature request'])}\n"
            f"Customer: {g.person()}\nDescription: {_ticket_body(g)}")


def tkt_chat(g: _R) -> str:
    h, m = g.int(8, 20), g.int(0, 50)
    cust, agent = g.pick(FIRST), g.pick(FIRST)
    return (f"[{h:02d}:{m:02d}] {cust}: {_ticket_body(g)}\n[{h:02d}:{m + 1:02d}] {agent} (Agent): "
            f"{g.pick(['Thanks for reaching out, let me check that for you.', 'Sorry to hear that. Can you share a screenshot?', 'I have escalated this to our technical team.', 'Could you confirm the email on the account?'])}"
            + (f"\n[{h:02d}:{m + 3:02d}] {cust}: {g.pick(['ok', 'still waiting...', 'done, sent it', 'this is taking forever'])}" if g.chance(0.5) else ""))


def tkt_social(g: _R) -> str:
    brand = g.pick(CO_A)
    return g.pick([
        f"@{brand}Help {g.pick(PRODUCTS)} is down AGAIN. {g.pick(_ANGRY)} #fail",
        f"@{brand} been on hold for {g.int(20, 90)} minutes. anyone there?",
        f"hey @{brand}, my refund for order {g.ticket_id()} still hasn't come through, can you DM me?",
    ])


def amb_quiz_report(g: _R) -> str:
    return (f"Hi, the quiz scores for {g.pick(COURSES)} look wrong - {g.int(5, 20)} students show 0 even "
            f"though they submitted. Can someone check the grading? {g.pick(FIRST)}")


def amb_portal(g: _R) -> str:
    return (f"I submitted my application for {g.pick(PROGRAMS)} on {g.fmt_date(g.date())} but never got a "
            f"confirmation email. Application ID APP-{g.int(1000, 99999)}. Did you receive it?")


# -- classroom analytics templates -----------------------------------------------------------


def cls_json(g: _R) -> str:
    kind = g.pick(["attendance_drop", "quiz_completed", "low_engagement", "late_submissions",
                   "assessment_graded", "participation_summary", "attendance_recorded"])
    d: dict[str, object] = {"event": kind, "class_id": g.pick(COURSES),
                            "ts": f"{g.date().isoformat()}T{g.int(7, 17):02d}:{g.int(0, 59):02d}:00Z"}
    if kind.startswith("attendance"):
        d.update(attendance_rate=round(g.r.uniform(0.4, 1.0), 2), baseline=round(g.r.uniform(0.8, 0.98), 2),
                 present=g.int(8, 32), enrolled=g.int(20, 35))
    elif kind in ("quiz_completed", "assessment_graded"):
        d.update(avg_score=round(g.r.uniform(35, 95), 1), median=g.int(30, 98), n_students=g.int(10, 35),
                 below_threshold=g.int(0, 12))
    else:
        d.update(students_flagged=g.int(1, 15), inactive_days=g.int(3, 21), teacher=g.person())
    if g.chance(0.3):
        d["school"] = g.pick(SCHOOLS)
    keys = list(d)
    if g.chance(0.5):
        g.r.shuffle(keys)
    return json.dumps({k: d[k] for k in keys}, ensure_ascii=False, separators=g.pick([(",", ":"), (", ", ": ")]))


def cls_log(g: _R) -> str:
    ts = f"{g.date().isoformat()}T{g.int(7, 17):02d}:{g.int(0, 59):02d}:{g.int(0, 59):02d}Z"
    ev = g.pick([
        f"event=quiz_scores course={g.pick(COURSES)} unit={g.int(1, 9)} mean={g.r.uniform(40, 90):.1f} "
        f"median={g.int(40, 95)} below_40={g.int(0, 9)}",
        f"event=attendance_drop class={g.pick(COURSES)} rate={g.r.uniform(0.4, 0.8):.2f} prev={g.r.uniform(0.85, 0.99):.2f}",
        f"event=lms_inactive course={g.pick(COURSES)} students={g.int(2, 15)} days={g.int(5, 14)}",
        f"event=assignment_late course={g.pick(COURSES)} count={g.int(1, 20)} due={g.date().isoformat()}",
    ])
    return f"{ts} level={g.pick(['info', 'warn', 'WARN', 'notice'])} src={g.pick(['lms', 'sis', 'analytics', 'edu-pipeline'])} {ev}"


def cls_alert(g: _R) -> str:
    subj, teacher = g.pick(SUBJECTS), f"{g.pick(['Ms.', 'Mr.', 'Dr.', 'Mx.'])} {g.pick(LAST)}"
    grade = g.pick(["Grade 8", "Year 10", "Class 5A", "Period 3", "Section B", "9th grade", "Form 2"])
    return g.pick([
        f"Attendance alert: {grade} {subj} ({teacher}) dropped to {g.int(50, 80)}% this week, down from {g.int(85, 99)}%.",
        f"Quiz scores for {subj} unit {g.int(1, 8)}: mean {g.int(40, 90)}, median {g.int(40, 92)}, "
        f"{g.int(1, 12)} students below {g.pick([40, 50, 60])}.",
        f"Engagement alert: {g.int(3, 18)} students in {subj} have not logged into the LMS for {g.int(5, 14)}+ days.",
        f"{grade}: {g.int(2, 9)} students were marked absent for 3 consecutive days. Counsellor notified.",
        f"Weekly classroom report - {grade} {subj}: attendance {g.int(70, 99)}%, average quiz "
        f"{g.int(50, 95)}, {g.int(0, 12)} late submissions, participation {g.pick(['up', 'down', 'flat'])}.",
        f"Reading assessment results posted for {grade}: {g.int(40, 85)}% at or above benchmark.",
    ])


def cls_sensor(g: _R) -> str:
    room = g.pick(ROOMS)
    kind = g.int(0, 4)
    if kind == 0:
        return f"room={room} sensor=co2 value={g.int(400, 2200)}ppm occupancy={g.int(0, 35)} status={g.pick(['OK', 'HIGH', 'WARN'])}"
    if kind == 1:
        return json.dumps({"sensor": "noise", "room": room, "db": g.int(35, 90), "duration_min": g.int(1, 40), "period": g.int(1, 8)})
    if kind == 2:
        return f"[{room}] temperature {g.r.uniform(15, 31):.1f}C humidity {g.int(20, 80)}% occupancy {g.int(0, 35)}"
    if kind == 3:
        return f"Smartboard in {room} offline since {g.int(7, 15)}:{g.int(10, 59)}; lesson {g.pick(SUBJECTS)} affected."
    return f"occupancy_count room={room} count={g.int(0, 40)} capacity={g.pick([24, 28, 30, 32, 36])} ts={g.date().isoformat()}"


# -- other -----------------------------------------------------------------------------------


def oth_newsletter(g: _R) -> str:
    co = g.company()
    return (f"{g.pick(['This week at', 'News from', 'Your monthly update from', 'The'])} {co}\n"
            f"{g.pick(['New features', 'Product update', 'Upcoming webinar', 'Customer story', 'Tips & tricks'])}: "
            f"{g.pick(['Meet the new dashboard', 'Join our live session on ' + g.fmt_date(g.date()), '5 ways to save time', 'We are hiring!'])}\n"
            f"{g.pick(['Read more on our blog.', 'Register now - seats are limited.', 'Follow us on social media.'])}\n"
            f"You are receiving this because you subscribed. Unsubscribe | Manage preferences")


def oth_spam(g: _R) -> str:
    return g.pick([
        f"Congratulations!! You've been selected to receive a {g.money(g.amount(100, 5000))} gift card. Click here to claim now.",
        "URGENT: your mailbox will be suspended. Verify your password within 24 hours: http://secure-login.example",
        f"Make {g.money(g.amount(1000, 9000))} per week from home! No experience needed. Reply YES.",
        "Cheap meds online, no prescription. Discreet shipping worldwide!!!",
        f"Dear friend, I am a banker with a proposal of mutual benefit concerning {g.money(g.amount(1e6, 9e6))}.",
        "Your crypto wallet has a pending reward. Connect now to receive 0.5 BTC.",
        f"Your invoice is ready. Download invoice_{g.int(1000, 9999)}.zip to view your payment details.",
        f"Final notice: unpaid invoice {g.inv_no()}. Open the attached document to avoid legal action.",
    ])


def oth_note(g: _R) -> str:
    return g.pick([
        "grocery list: milk, eggs, bread, spinach, coffee",
        f"call {g.pick(FIRST)} re: weekend plans",
        f"Meeting notes {g.fmt_date(g.date())}\n- Q{g.int(1, 4)} planning\n- hiring: 2 roles\n- action: {g.pick(FIRST)} to draft budget",
        "todo: renew passport, book dentist, fix bike",
        f"Reminder: team lunch {g.pick(['Friday', 'Tuesday', 'tomorrow'])} at {g.int(11, 13)}:30",
        "test", "hello", "see attached", "fwd:", "asdf", "ok thanks",
        f"Wifi password for guest network: {g.pick(CO_A).lower()}{g.int(100, 999)}",
        f"Minutes of the {g.pick(['board', 'PTA', 'staff', 'safety committee'])} meeting: attendance, budget review, AOB.",
    ])


def oth_calendar(g: _R) -> str:
    return (f"Invitation: {g.pick(['Team sync', 'Project kickoff', '1:1', 'Budget review', 'Parent-teacher conference'])} "
            f"@ {g.pick(['Mon', 'Tue', 'Wed', 'Thu', 'Fri'])} {g.fmt_date(g.date())} {g.int(8, 17)}:00 - {g.int(9, 18)}:00 "
            f"({g.pick(['Zoom', 'Teams', 'Room ' + g.pick(ROOMS)])})\nOrganizer: {g.person()}\nAccept | Decline | Maybe")


def oth_shipping(g: _R) -> str:
    return g.pick([
        f"Your order {g.ticket_id()} has shipped! Tracking number: 1Z{g.int(100000, 999999)}{g.int(1000, 9999)}. Estimated delivery {g.fmt_date(g.date())}.",
        f"Order confirmation #{g.int(100000, 999999)}\nThank you for your purchase. Items: {g.pick(SERVICES)}. We'll email you when it ships.",
        f"Your parcel is out for delivery today between {g.int(8, 12)}:00 and {g.int(13, 18)}:00.",
    ])


def oth_quote(g: _R) -> str:
    cur = g.pick(CURRENCIES)
    items, sub = _line_items(g, cur)
    title = g.pick(["QUOTATION", "Quote", "Estimate", "Proforma estimate", "Angebot", "PURCHASE ORDER"])
    return (f"{title} {g.pick(['Q', 'EST', 'PO'])}-{g.int(1000, 99999)}\n{g.company()}\n"
            f"Valid until {g.fmt_date(g.date())}\n{items}\nEstimated total: {g.money(sub, cur)}\n"
            f"{g.pick(['This is not an invoice.', 'Prices subject to change.', 'Please sign to accept.', ''])}")


def oth_school_marketing(g: _R) -> str:
    return g.pick([
        f"Open day at {g.pick(SCHOOLS)} on {g.fmt_date(g.date())}! Meet our teachers, tour the campus and learn about {g.pick(PROGRAMS)}.",
        f"Applications for {g.pick(TERMS)} are now open. Visit our website to learn about scholarships and deadlines.",
        f"Parent newsletter: the lunch menu changes next week, the book fair starts Monday and {g.pick(['sports day', 'the science fair', 'the winter concert'])} is on {g.fmt_date(g.date())}.",
    ])


def oth_job(g: _R) -> str:
    name = g.person()
    return (f"Subject: Application for the {g.pick(['Accountant', 'Data Analyst', 'Teaching Assistant', 'Warehouse Associate', 'Software Engineer'])} position\n\n"
            f"Dear Hiring Manager,\nplease find attached my CV and cover letter. I have {g.int(1, 15)} years of experience"
            f" and I am available to start {g.pick(['immediately', 'next month', 'in ' + MONTHS[g.int(0, 11)]])}.{_sign(g, name)}")


# -- mixture -----------------------------------------------------------------------------------

# class -> {template name: (weight, generator, label distribution or None = the class itself)}
_Spec = tuple[float, Callable[[_R], str], dict[str, float] | None]
TEMPLATES: dict[str, dict[str, _Spec]] = {
    "invoice": {
        "formal": (0.38, inv_formal, None),
        "email": (0.16, inv_email, None),
        "ocr": (0.12, inv_ocr, None),
        "compact": (0.1, inv_compact, None),
        "reminder": (0.08, inv_reminder, {"invoice": 0.9, "support_ticket": 0.07, "other": 0.03}),
        "utility": (0.08, inv_utility, None),
        "receipt": (0.08, inv_receipt, {"invoice": 0.8, "other": 0.2}),
    },
    "admission_form": {
        "form": (0.45, adm_form, None),
        "email": (0.18, adm_email, None),
        "kv": (0.12, adm_kv, None),
        "ocr": (0.1, adm_ocr, None),
        "scholarship": (0.08, adm_scholarship, {"admission_form": 0.9, "other": 0.1}),
        "camp": (0.07, amb_camp, {"admission_form": 0.75, "other": 0.25}),
    },
    "support_ticket": {
        "email": (0.4, tkt_email, None),
        "form": (0.25, tkt_form, None),
        "chat": (0.18, tkt_chat, None),
        "social": (0.07, tkt_social, None),
        "portal": (0.05, amb_portal, {"support_ticket": 0.75, "admission_form": 0.25}),
        "quiz_report": (0.05, amb_quiz_report, {"support_ticket": 0.7, "classroom_event": 0.3}),
    },
    "classroom_event": {
        "json": (0.32, cls_json, None),
        "log": (0.2, cls_log, None),
        "alert": (0.3, cls_alert, None),
        "sensor": (0.18, cls_sensor, None),
    },
    "other": {
        "newsletter": (0.16, oth_newsletter, None),
        "spam": (0.18, oth_spam, None),
        "note": (0.18, oth_note, None),
        "calendar": (0.1, oth_calendar, None),
        "shipping": (0.1, oth_shipping, {"other": 0.85, "support_ticket": 0.15}),
        "quote": (0.1, oth_quote, {"other": 0.85, "invoice": 0.15}),
        "school_marketing": (0.1, oth_school_marketing, {"other": 0.85, "admission_form": 0.15}),
        "job": (0.08, oth_job, None),
    },
}


def _truncate(g: _R, text: str) -> str:
    """Some documents arrive cut off (attachment limits, previews)."""
    if len(text) > 120 and g.chance(0.05):
        return text[: g.int(60, len(text) - 1)]
    return text


def generate_router_corpus(n: int = ROUTER_N, seed: int = DEFAULT_DATA_SEED) -> list[dict[str, object]]:
    """``n`` labelled documents; same ``(n, seed)`` -> same list."""
    g = _R(seed)
    out: list[dict[str, object]] = []
    classes = list(CLASS_MIX)
    for i in range(n):
        cls = g.r.choices(classes, weights=[CLASS_MIX[c] for c in classes])[0]
        specs = TEMPLATES[cls]
        names = list(specs)
        name = g.r.choices(names, weights=[specs[k][0] for k in names])[0]
        _, fn, dist = specs[name]
        text = _truncate(g, fn(g))
        label = cls if dist is None else str(g.weighted(dist))
        noisy = 0
        if g.chance(LABEL_NOISE):
            label = g.pick([c for c in CLASSES if c != label])
            noisy = 1
        out.append({"id": f"doc-{i:05d}", "text": text, "label": label,
                    "template": f"{cls}/{name}", "label_noise": noisy})
    return out


# -- invoice risk corpus ---------------------------------------------------------------------


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def generate_invoice_corpus(n: int = INVOICE_N, seed: int = DEFAULT_DATA_SEED) -> list[dict[str, object]]:
    """``n`` extracted invoices with a ground-truth "processed without a person" label."""
    g = _R(seed + 1)
    r = g.r
    vendors = []
    for _ in range(160):
        vendors.append({
            "name": g.company(),
            "currency": g.pick(["USD", "USD", "EUR", "EUR", "GBP", "INR", "CAD", "CHF"]),
            "mean": round(math.exp(r.gauss(math.log(1800), 1.1)), 2),
            "spread": r.uniform(0.15, 0.5),
            "count": int(math.exp(r.uniform(0, math.log(400)))),
            "po_habit": r.uniform(0.4, 0.98),
        })
    seen: set[tuple[str, str]] = set()
    out: list[dict[str, object]] = []
    for i in range(n):
        known = g.chance(0.84)
        if known:
            v = g.pick(vendors)
            name, cur, mean, count = v["name"], v["currency"], v["mean"], v["count"]
            if g.chance(0.09):  # an out-of-pattern amount
                amount = mean * math.exp(r.choice([1, -1]) * r.uniform(0.8, 2.5))
            else:
                amount = mean * math.exp(r.gauss(0, v["spread"]))
            po_p = v["po_habit"]
        else:
            name, cur = g.company(), g.pick(["USD", "EUR", "GBP", "INR", "CAD", "AUD"])
            mean, count = 0.0, 0
            amount = math.exp(r.gauss(math.log(1500), 1.3))
            po_p = 0.45
        amount = round(min(amount, 2_500_000.0), 2)
        has_po = g.chance(min(0.99, po_p + (0.1 if amount > 5000 else 0.0)))
        received = dt.date(2024, 1, 1) + dt.timedelta(days=g.int(0, 600))
        inv_date = received - dt.timedelta(days=g.int(0, 12))
        terms = g.pick([0, 7, 14, 30, 30, 30, 45, 60])
        due = inv_date + dt.timedelta(days=terms)
        if g.chance(0.06):
            due = received - dt.timedelta(days=g.int(1, 40))  # arrives already overdue
        currency = cur if not g.chance(0.06) else g.pick(["USD", "EUR", "GBP", "INR", "JPY", "CHF"])
        inv_no = g.inv_no()
        dup = g.chance(0.035) or (name, inv_no) in seen
        seen.add((name, inv_no))
        quality = r.betavariate(9, 1.2) if not g.chance(0.12) else r.uniform(0.35, 0.8)
        conf = round(min(1.0, max(0.0, quality)), 3)
        n_lines = max(1, int(r.expovariate(1 / 3.5)) + 1)
        lines_bad = g.chance(0.05 + (0.08 if conf < 0.7 else 0.0))
        lines_total = round(amount * (r.uniform(0.7, 0.97) if lines_bad else 1.0), 2)
        bank_changed = g.chance(0.03 if known else 0.0)
        days = (due - received).days
        # ground truth: a latent "clean invoice" logit
        z = 2.6
        if not known:
            z -= 1.6
        else:
            dev = abs(math.log1p(amount) - math.log1p(mean))
            z -= 2.2 * max(0.0, dev - 0.35) ** 1.2
            z += 0.25 * math.log1p(count) / math.log(400)
        z -= 0.55 * max(0.0, math.log10(max(amount, 1.0)) - 3.7)
        if not has_po:
            z -= 0.3 + (1.3 if amount > 1000 else 0.0)
        if currency != cur:
            z -= 1.4
        if dup:
            z -= 3.8
        z -= 7.0 * max(0.0, 0.9 - conf) ** 1.3
        if lines_bad:
            z -= 1.7
        if bank_changed:
            z -= 2.6
        if days < 0:
            z -= 0.5 + 0.02 * min(-days, 40)
        elif days < 3:
            z -= 0.35
        z = 1.6 * z + 0.6  # reviewers are fairly consistent: sharpen the latent process
        label = 1 if r.random() < _sigmoid(z) else 0
        noisy = 0
        if g.chance(INVOICE_LABEL_NOISE):
            label, noisy = 1 - label, 1
        out.append({
            "id": f"inv-{i:05d}", "vendor": name, "invoice_number": inv_no,
            "amount": amount, "currency": currency, "vendor_currency": cur if known else None,
            "vendor_known": known, "vendor_mean_amount": mean if known else None,
            "vendor_invoice_count": count, "po_number": g.po_no() if has_po else None,
            "invoice_date": inv_date.isoformat(), "received_date": received.isoformat(),
            "due_date": due.isoformat(), "line_item_count": n_lines, "line_items_total": lines_total,
            "extraction_confidence": conf, "bank_details_changed": bank_changed,
            "duplicate_invoice_number": dup, "label": label, "label_noise": noisy,
        })
    return out


# -- invoice field extraction (evaluation only) ------------------------------------------------

#: Invoice templates whose rendered fields are known, and how often each is drawn.
EXTRACTION_TEMPLATES: dict[str, tuple[float, Callable[..., str]]] = {
    "formal": (0.45, inv_formal), "ocr": (0.15, inv_ocr), "email": (0.2, inv_email),
    "compact": (0.2, inv_compact),
}


def generate_extraction_corpus(n: int = 1000, seed: int = DEFAULT_DATA_SEED
                               ) -> list[dict[str, object]]:
    """``n`` invoice documents with the field values they render (``truth``).

    Nothing is trained on these: they measure the decision service's field extractor. The
    templates are the router corpus's invoice templates (same layouts, languages, formats and
    OCR damage); ``truth`` holds vendor, invoice_number, invoice_date / due_date (ISO),
    subtotal / tax / total, currency (ISO 4217), po_number ("" when absent) and
    line_item_count, as far as the template renders them (email: ``rendered`` maps each field
    to its text, which a body may or may not contain).
    """
    g = _R(seed + 2)
    names = list(EXTRACTION_TEMPLATES)
    weights = [EXTRACTION_TEMPLATES[k][0] for k in names]
    out: list[dict[str, object]] = []
    for i in range(n):
        name = g.r.choices(names, weights=weights)[0]
        truth: dict[str, object] = {}
        text = EXTRACTION_TEMPLATES[name][1](g, truth)
        out.append({"id": f"ext-{i:05d}", "template": name, "text": text, "truth": truth})
    return out


# -- files -------------------------------------------------------------------------------------


def jsonl_bytes(rows: Iterable[dict[str, object]]) -> bytes:
    return b"".join(
        json.dumps(r, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n" for r in rows
    )


def read_jsonl(path: Path) -> list[dict[str, object]]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_corpora(data_dir: Path, seed: int = DEFAULT_DATA_SEED, router_n: int = ROUTER_N,
                  invoice_n: int = INVOICE_N, engagement_n: int | None = None) -> dict[str, object]:
    """Generate the corpora (router, invoices, engagement windows) into ``data_dir`` with
    ``SHA256SUMS`` and ``manifest.json``."""
    from services.decision.training import engagement_data

    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    router = generate_router_corpus(router_n, seed)
    invoices = generate_invoice_corpus(invoice_n, seed)
    windows = engagement_data.simulate_windows(
        engagement_data.DATA_N if engagement_n is None else engagement_n,
        seed + engagement_data.SEED_OFFSET)
    files = {ROUTER_FILE: jsonl_bytes(router), INVOICE_FILE: jsonl_bytes(invoices),
             engagement_data.DATA_FILE: jsonl_bytes(windows)}
    sums = {}
    for name, blob in files.items():
        (data_dir / name).write_bytes(blob)
        sums[name] = hashlib.sha256(blob).hexdigest()
    (data_dir / "SHA256SUMS").write_text("".join(f"{h}  {n}\n" for n, h in sums.items()))
    manifest = {
        "generator": "services.decision.training.datagen",
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "files": {
            ROUTER_FILE: {"sha256": sums[ROUTER_FILE], "rows": len(router),
                          "label_counts": dict(sorted(Counter(str(r["label"]) for r in router).items())),
                          "label_noise_rate": LABEL_NOISE},
            INVOICE_FILE: {"sha256": sums[INVOICE_FILE], "rows": len(invoices),
                           "positive_rate": round(sum(int(r["label"]) for r in invoices) / max(1, len(invoices)), 4),  # type: ignore[call-overload]
                           "label_noise_rate": INVOICE_LABEL_NOISE},
            engagement_data.DATA_FILE: {
                "sha256": sums[engagement_data.DATA_FILE], "rows": len(windows),
                "generator": "services.decision.training.engagement_data.simulate_windows",
                "generator_version": engagement_data.GENERATOR_VERSION,
                "seed": seed + engagement_data.SEED_OFFSET,
                "engaged_rate": round(sum(int(r["label"]) for r in windows) / max(1, len(windows)), 4),
                "group_counts": dict(sorted(Counter(str(r["group"]) for r in windows).items())),
                "observer_flip_rate": engagement_data.OBSERVER_FLIP},
        },
        "regenerate": f"python -m services.decision.training --regenerate-data --data-seed {seed}",
    }
    (data_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
