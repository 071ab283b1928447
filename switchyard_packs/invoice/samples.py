"""Synthetic purchase orders and the supplier invoices sent against them, for the demo.

Touchless accounts payable rests on matching: the ERP holds the purchase orders and what was
received against them, and an invoice is paid without a person when it bills what was ordered
and received at the agreed prices. :func:`workload` builds both sides, deterministically from
its seed: orders of the given tenants (the demo passes its own) with their goods receipts
(most lines received in full, some in part), as the bodies of the demo ERP's operator API
(``PUT /_/erp/purchase_orders/{tenant}/{po}``, ``POST .../receipts``), and for each invoiced
order the supplier's invoice as plain text.

Suppliers and goods are made up but realistic: a catalogue of office, IT, facility and lab
goods and services, each with the buyer's wording (on the order) and the supplier's own
(on the invoice: "Copy paper A4 80g/m2 (5 x 500 sheets)" bills "A4 copy paper 80gsm, box of
5 reams"), a few of them close to the buyer's; vendors with addresses, VAT numbers and IBANs
whose ISO 13616 check digits are computed. A supplier always writes its invoices the same
way, in one of three layouts: a formal invoice (labels, a pipe table, bank details), an e-mail
(items as ``3 x Office chair @ 189.00 = 567.00``) and a compact one (columns separated by
spaces). Amounts add up: each line is quantity times price in cents, the tax is the vendor's
VAT rate on the subtotal.

Each invoice has a *scenario*, what a careful accounts-payable clerk makes of it:

* ``clean``: quotes its order, bills what was received at the order's prices: paid without a
  person;
* ``clean_no_po_quoted``: the same, but quotes no order: the vendor and the amount (the whole
  order, received in full) identify it, as no other order of the tenant from that vendor is
  within 3% of its value or holds all its items: paid without a person;
* ``price_above_po``: one unit price 5-15% above the order's (field ``unit_price``);
* ``more_than_received``: one line bills more than was received (``quantity``);
* ``unknown_po``: quotes an order number the ERP does not have (a digit typo; the order it
  bills is in the ERP under its real number) (``po_number``);
* ``other_bank_account``: asks to be paid into an account that is not the vendor master's
  ("our new bank details") (``bank_account``).

The last four go to a person, who is told which field disagrees. The supplier's wordings
are as alike to the buyer's as real ones are, and no more: the decision service's text
encoder pairs each with its own item (cosine 0.6 or more) and no other (0.55 or less).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from typing import Any


SCENARIOS = ("clean", "clean_no_po_quoted", "price_above_po", "more_than_received",
             "unknown_po", "other_bank_account")
#: The scenarios a careful clerk pays without a person.
AUTOMATED = ("clean", "clean_no_po_quoted")
#: The field each mismatch scenario disagrees on (what its reviewer must be told).
EXPECTED_FIELD: dict[str, str] = {"price_above_po": "unit_price",
                                  "more_than_received": "quantity",
                                  "unknown_po": "po_number",
                                  "other_bank_account": "bank_account"}
#: Order in which scenarios are dealt (13 of 20 clean), so even a handful of invoices shows
#: several kinds of mismatch.
_DEAL = ("clean", "price_above_po", "clean", "clean_no_po_quoted", "clean",
         "more_than_received", "clean", "other_bank_account", "clean", "clean_no_po_quoted",
         "unknown_po", "clean", "price_above_po", "clean_no_po_quoted", "clean",
         "more_than_received", "clean", "other_bank_account", "clean_no_po_quoted", "clean")
LAYOUTS = ("formal", "email", "compact")
#: One open order nobody has invoiced yet per this many invoices: the vendor-and-amount match
#: of an invoice quoting no order has others of the vendor to tell apart.
OPEN_ORDER_EVERY = 4
_TODAY = date(2026, 11, 20)   # the documents' own dates: fixed, so a seed gives the same ones
_CENT = Decimal("0.01")


# -- the catalogue -----------------------------------------------------------------------------

@dataclass(frozen=True)
class CatalogueItem:
    """A good or service: the buyer's words (on the order), the supplier's (on the invoice)
    and, for a few, a supplier wording close to the buyer's."""

    category: str       # office | it | facility | lab
    buyer: str
    supplier: str
    price: Decimal      # a typical unit price, in the vendor's currency
    quantities: tuple[int, int]
    close: str = ""


def _item(category: str, buyer: str, supplier: str, price: str, low: int, high: int,
          close: str = "") -> CatalogueItem:
    return CatalogueItem(category, buyer, supplier, Decimal(price), (low, high), close)


CATALOGUE: tuple[CatalogueItem, ...] = (
    _item("office", "A4 copy paper 80gsm, box of 5 reams",
          "Copy paper A4 80g/m2 (5 x 500 sheets)", "24.90", 4, 30,
          close="A4 copy paper 80gsm (box of 5 reams)"),
    _item("office", "Toner cartridge HP 305A black",
          "HP 305A Black Original LaserJet Toner (CE410A)", "62.50", 2, 10),
    _item("office", "Ballpoint pens blue, pack of 50", "Ballpen medium blue ink, box 50 pcs",
          "9.80", 2, 12),
    _item("office", "Sticky notes 76x76mm yellow, 12 pads",
          "Self-adhesive notes 3x3in canary yellow (12 x 100 sheets)", "8.40", 3, 20),
    _item("office", "Lever arch files A4 75mm, black", "Ring binder lever arch 7.5 cm A4 black",
          "2.35", 10, 60),
    _item("office", "Stapler, full strip, black", "Full-strip desk stapler (black)", "11.50",
          2, 10),
    _item("office", "Whiteboard markers, assorted colours, pack of 4",
          "Dry-wipe board markers, set of 4 colours", "5.90", 3, 15,
          close="Whiteboard markers assorted colours (pack of 4)"),
    _item("office", "Ergonomic office chair with lumbar support",
          "Office swivel chair, adjustable lumbar, mesh back", "189.00", 1, 8),
    _item("office", "Height-adjustable desk 160x80cm",
          "Sit-stand desk electric, top 1600 x 800 mm", "429.00", 1, 4),
    _item("office", "Document shredder, cross-cut, P-4",
          "Cross cut paper shredder security level P-4, 20 l bin", "139.00", 1, 3),
    _item("it", "Laptop 14-inch, 16GB RAM, 512GB SSD",
          "Notebook 14in FHD, Core i5, 16 GB, 512 GB NVMe", "949.00", 1, 6),
    _item("it", "27-inch monitor, QHD, height adjustable",
          "Display 27in 2560x1440 IPS with height-adjustable stand", "279.00", 1, 8),
    _item("it", "USB-C docking station with dual display", "USB Type-C dock, 2x HDMI, PD 100W",
          "159.00", 1, 8, close="USB-C docking station, dual display"),
    _item("it", "Wireless keyboard and mouse set, UK layout",
          "Cordless desktop set (keyboard + mouse), UK QWERTY", "39.90", 2, 12),
    _item("it", "Headset with noise-cancelling microphone, USB",
          "USB stereo headset, ANC boom mic", "54.00", 2, 12),
    _item("it", "Network switch 24-port gigabit, managed",
          "Managed L2 Ethernet switch, 24x GbE ports, rack-mountable", "219.00", 1, 3),
    _item("it", "Cat6 patch cable 2m, grey, pack of 10",
          "Patch cord CAT.6 U/UTP 2.0 m grey (10 pcs)", "18.50", 2, 10),
    _item("it", "External SSD 1TB, USB 3.2", "Portable solid state drive 1 TB USB 3.2 Gen 2",
          "89.00", 1, 6),
    _item("it", "Office software licence, annual, per user",
          "Microsoft 365 Business Standard user licence, 12-month term", "118.80", 5, 40),
    _item("it", "Laptop backpack 15.6-inch",
          "Notebook backpack for 15.6in laptops, water-resistant", "34.50", 2, 10),
    _item("facility", "Office cleaning, monthly contract",
          "Contract cleaning services, monthly fee", "1450.00", 1, 1),
    _item("facility", "Window cleaning, external, per visit",
          "Exterior window and glazing cleaning (one visit)", "380.00", 1, 2),
    _item("facility", "Hand soap refill 5 litre",
          "Liquid hand wash soap, antibacterial, 5 L canister", "12.90", 2, 12),
    _item("facility", "Paper hand towels, Z-fold, case of 3750",
          "Interfold hand towels 2-ply, 15 x 250 sheets", "31.20", 2, 12),
    _item("facility", "Toilet paper 2-ply, 36 rolls", "Toilet tissue 2 ply, 36 rolls per pack",
          "19.80", 2, 12, close="Toilet paper 2-ply (36 rolls)"),
    _item("facility", "LED panel 600x600, 40W, neutral white", "LED flat panel 62x62 40 W 4000K",
          "42.00", 4, 24),
    _item("facility", "HVAC filter replacement, quarterly service",
          "Air handling unit filter change (quarterly)", "620.00", 1, 1),
    _item("facility", "Fire extinguisher annual inspection",
          "Annual service of portable fire extinguishers, per unit", "15.00", 6, 30),
    _item("facility", "Pest control visit", "Integrated pest management, routine inspection",
          "95.00", 1, 2),
    _item("facility", "Waste bin liners 120L, roll of 25",
          "Refuse sacks 120 litre heavy duty (25 per roll)", "7.60", 5, 30),
    _item("lab", "Nitrile gloves, size M, box of 100",
          "Nitrile exam gloves powder-free M (100/box)", "7.95", 10, 50,
          close="Nitrile gloves size M (box of 100)"),
    _item("lab", "Pipette tips 200ul, 10 racks of 96",
          "Universal pipette tips 200 uL, racked (10 x 96)", "39.00", 2, 10),
    _item("lab", "Centrifuge tubes 50ml, sterile, pack of 500",
          "Conical tubes 50 mL PP sterile (500 pcs)", "96.00", 1, 6),
    _item("lab", "Ethanol 70%, 5 litre", "Ethyl alcohol 70% v/v solution, 5 L", "21.50", 2, 10),
    _item("lab", "Microscope slides, frosted end, 72 pcs",
          "Microscope glass slides 76x26 mm, frosted, ground edges (72/box)", "6.80", 5, 20),
    _item("lab", "Lab coat, white, size L", "Laboratory coat cotton, white, L", "24.00", 2, 10,
          close="Lab coat white, size L"),
    _item("lab", "Petri dishes 90mm, sterile, pack of 500",
          "Petri dish PS 90 mm, sterile, vented (500/case)", "64.00", 1, 6),
    _item("lab", "Pipette calibration service, per pipette",
          "Calibration of single-channel pipettes (ISO 8655), each", "28.00", 4, 20),
    _item("lab", "Safety goggles, anti-fog", "Protective eyewear with anti-fog coating (EN 166)",
          "8.90", 5, 25),
    _item("lab", "Freezer -80C service visit", "Maintenance visit for ULT freezer (-80 C)",
          "240.00", 1, 1),
)


# -- vendors -----------------------------------------------------------------------------------

def iban(country: str, bban: str) -> str:
    """The IBAN of a national account number: ISO 13616 check digits (98 minus the number
    ``bban + country + "00"``, letters as 10..35, modulo 97)."""
    digits = "".join(str(int(ch, 36)) for ch in bban + country + "00")
    return f"{country}{98 - int(digits) % 97:02d}{bban}"


def grouped(account: str) -> str:
    """An IBAN as printed: groups of four."""
    return " ".join(account[i:i + 4] for i in range(0, len(account), 4))


@dataclass(frozen=True)
class Vendor:
    """A supplier on the tenants' vendor master, and how its invoices look."""

    name: str
    category: str
    country: str
    address: str
    vat_id: str
    bank_account: str   # IBAN, compact
    bic: str
    currency: str
    vat_rate: Decimal   # 0.20 for 20%
    layout: str         # one of LAYOUTS
    po_label: str       # how its invoice quotes the order (formal and compact layouts)
    date_style: str     # long | iso | dotted | us
    invoice_prefix: str
    terms_days: int
    signer: str


def _vendor(name: str, category: str, country: str, bban: str, **rest: Any) -> Vendor:
    return Vendor(name=name, category=category, country=country,
                  bank_account=iban(country, bban), **rest)


VENDORS: tuple[Vendor, ...] = (
    _vendor("Paperline Office Supplies Ltd", "office", "GB", "NWBK60161331926819",
            address="14 Mercer Street, Manchester M1 4AB, United Kingdom",
            vat_id="GB 284 1937 62", bic="NWBKGB2L", currency="GBP", vat_rate=Decimal("0.20"),
            layout="formal", po_label="PO Number", date_style="long", invoice_prefix="PL-",
            terms_days=30, signer="Hannah Reeves"),
    _vendor("Nordstern Buerobedarf GmbH", "office", "DE", "370400440532013000",
            address="Hafenstrasse 21, D-20457 Hamburg, Germany", vat_id="DE 314 159 265",
            bic="COBADEFFXXX", currency="EUR", vat_rate=Decimal("0.19"), layout="compact",
            po_label="Bestellnummer", date_style="dotted", invoice_prefix="RE-",
            terms_days=14, signer="Jonas Albrecht"),
    _vendor("Brightdesk Solutions B.V.", "it", "NL", "ABNA0417164300",
            address="Keizersgracht 312, NL-1016 EZ Amsterdam, Netherlands",
            vat_id="NL 8532 17 409 B01", bic="ABNANL2A", currency="EUR",
            vat_rate=Decimal("0.21"), layout="email", po_label="PO", date_style="long",
            invoice_prefix="BD-", terms_days=30, signer="Sanne de Vries"),
    _vendor("Kestrel IT Distribution Ltd", "it", "GB", "BARC20325373187616",
            address="Unit 7, Orbital Park, Reading RG2 0TD, United Kingdom",
            vat_id="GB 771 2045 18", bic="BARCGB22", currency="GBP", vat_rate=Decimal("0.20"),
            layout="formal", po_label="Purchase Order", date_style="long",
            invoice_prefix="KIT", terms_days=45, signer="Owen Pritchard"),
    _vendor("Cleanway Facility Services GmbH", "facility", "DE", "500105175407324931",
            address="Industriestrasse 5, D-60314 Frankfurt am Main, Germany",
            vat_id="DE 271 828 182", bic="INGDDEFFXXX", currency="EUR",
            vat_rate=Decimal("0.19"), layout="formal", po_label="Your order ref.",
            date_style="iso", invoice_prefix="CW-", terms_days=30, signer="Petra Kaufmann"),
    _vendor("Harbor Building Maintenance Ltd", "facility", "IE", "AIBK93115212345678",
            address="Dock Road 3, Dublin D02 X285, Ireland", vat_id="IE 6388047V",
            bic="AIBKIE2D", currency="EUR", vat_rate=Decimal("0.23"), layout="email",
            po_label="PO", date_style="long", invoice_prefix="HBM-", terms_days=30,
            signer="Ciara Doyle"),
    _vendor("Labquest Scientifique SARL", "lab", "FR", "2004101005050001302606",
            address="18 Rue des Sciences, 69007 Lyon, France", vat_id="FR 40 303 265 045",
            bic="PSSTFRPPLYO", currency="EUR", vat_rate=Decimal("0.20"), layout="compact",
            po_label="PO", date_style="iso", invoice_prefix="LQ", terms_days=45,
            signer="Camille Laurent"),
    _vendor("Meridian Lab Supplies B.V.", "lab", "NL", "RABO0300065264",
            address="Bioscience Park 40, NL-2333 CC Leiden, Netherlands",
            vat_id="NL 8190 44 512 B01", bic="RABONL2U", currency="EUR",
            vat_rate=Decimal("0.21"), layout="formal", po_label="PO Number",
            date_style="us", invoice_prefix="MLS", terms_days=30, signer="Daan Visser"),
)
#: The buyer's name on the invoice, per demo tenant.
BUYERS = {"acme-health": "Acme Health Group", "northwind-edu": "Northwind Education Trust",
          "bluepeak-retail": "Bluepeak Retail Ltd"}
#: Banks a changed account is said to be at: country, the BBAN's bank part, how many digits
#: the account number has, BIC.
_OTHER_BANKS = (("LT", "32500", 11, "REVOLT21"), ("GB", "MONZ040004", 8, "MONZGB2L"),
                ("DE", "10011001", 10, "NTSBDEB1XXX"), ("NL", "BUNQ", 10, "BUNQNL2A"),
                ("IE", "REVO990036", 8, "REVOIE23"))


# -- the documents' data -----------------------------------------------------------------------

@dataclass(frozen=True)
class OrderSample:
    """A purchase order as the demo ERP's operator API takes it."""

    tenant: str
    po_number: str
    vendor: Vendor
    #: ``PUT /_/erp/purchase_orders/{tenant}/{po_number}``'s body
    body: dict[str, Any]
    #: ``POST .../receipts`` bodies, in the order they were received
    receipts: tuple[dict[str, Any], ...]
    ordered_on: date

    @property
    def path(self) -> str:
        return f"/_/erp/purchase_orders/{self.tenant}/{self.po_number}"

    def received(self, line: int) -> int:
        """How many of ``line`` were received."""
        return sum(r["quantity"] for r in self.receipts if r["line"] == line)

    def value(self) -> Decimal:
        """The order's net value: every line at its price."""
        return sum((_money(ln["quantity"] * Decimal(str(ln["unit_price"])))
                    for ln in self.body["lines"]), Decimal(0))


@dataclass(frozen=True)
class InvoiceLine:
    """One billed line: the order line it bills, in the supplier's words."""

    po_line: int
    description: str
    quantity: int
    unit_price: Decimal
    amount: Decimal


@dataclass(frozen=True)
class InvoiceSample:
    """A supplier invoice, what it bills, and what a careful clerk expects of it."""

    key: str                    # the submission's idempotency key (before the demo's run)
    tenant: str
    scenario: str
    layout: str
    order: OrderSample          # the order it bills (in the ERP under its real number)
    invoice_number: str
    quoted_po: str              # the order number it quotes ("" when none)
    bank_account: str           # the IBAN it asks to be paid to
    lines: tuple[InvoiceLine, ...]
    subtotal: Decimal
    tax: Decimal
    total: Decimal
    invoice_date: date
    due_date: date
    #: when the invoice reached accounts payable (an AP inbox's ``received_date``)
    received_on: date
    text: str
    expected: str               # "automate" | "person"
    expected_field: str         # the field its reviewer must be told about; "" when clean

    @property
    def kind(self) -> str:
        return "invoice"

    @property
    def content_type(self) -> str:
        return "text/plain"


@dataclass
class Workload:
    """The demo's purchasing: the invoices to submit, and the orders the ERP gets first."""

    invoices: list[InvoiceSample] = field(default_factory=list)
    #: every order the ERP holds: the invoiced ones, and open ones no invoice came for yet
    orders: list[OrderSample] = field(default_factory=list)


def _money(value: Decimal) -> Decimal:
    return value.quantize(_CENT, rounding=ROUND_HALF_UP)


# -- orders and receipts -----------------------------------------------------------------------

def _po_format(tenant_index: int, tenant: str, serial: int) -> str:
    """The tenant's ERP numbering: SAP-style, "PO-", or the tenant's initials and year."""
    style = tenant_index % 3
    if style == 0:
        return f"45{serial % 10**8:08d}"
    if style == 1:
        return f"PO-{serial % 10**6:06d}"
    initials = "".join(word[0] for word in tenant.split("-") if word).upper() or "PO"
    return f"{initials}-{_TODAY.year}-{serial % 10**6:06d}"


def _order_lines(rng: random.Random, vendor: Vendor) -> list[dict[str, Any]]:
    """1-5 lines of the vendor's goods, in the buyer's words, at about the usual price."""
    items = rng.sample([i for i in CATALOGUE if i.category == vendor.category],
                       rng.choice((1, 1, 2, 2, 3, 3, 4, 5)))
    lines = []
    for number, item in enumerate(items, start=1):
        price = _money(item.price * Decimal(rng.randint(95, 105)) / 100)
        lines.append({"line": number, "description": item.buyer,
                      "quantity": rng.randint(*item.quantities), "unit_price": float(price)})
    return lines


def _receipts(rng: random.Random, po_number: str, lines: list[dict[str, Any]],
              ordered_on: date, full: bool, short_line: int | None) -> list[dict[str, Any]]:
    """Goods receipts: every line in full (sometimes in two deliveries) unless ``full`` is
    False (then some lines in part, one perhaps not at all; at least one line arrives) or a
    ``short_line`` must arrive in part."""
    partial = set() if full else {ln["line"] for ln in lines if rng.random() < 0.5}
    if short_line is not None:
        partial.add(short_line)
    receipts: list[dict[str, Any]] = []
    for ln in lines:
        ordered = ln["quantity"]
        if ln["line"] in partial:
            got = rng.randint(1, ordered - 1) if ordered > 1 else (
                0 if len(lines) > 1 and ln["line"] != short_line else ordered)
        else:
            got = ordered
        if got == 0:
            continue
        deliveries = [got] if got < 4 or rng.random() < 0.8 else [got // 2, got - got // 2]
        for part in deliveries:
            when = datetime.combine(ordered_on + timedelta(days=rng.randint(3, 12)),
                                    time(rng.randint(7, 16), rng.choice((0, 15, 30, 45))),
                                    tzinfo=UTC)
            receipts.append({"line": ln["line"], "quantity": part,
                             "received_at": when.isoformat()})
    if not receipts:   # nothing arrived: the first line did, in full
        return _receipts(rng, po_number, lines, ordered_on, True, None)
    receipts.sort(key=lambda r: r["received_at"])
    return [{"receipt_id": f"GR-{po_number}-{n}", **r} for n, r in enumerate(receipts, 1)]


def _build_order(rng: random.Random, tenant: str, po_number: str, vendor: Vendor,
                 scenario: str) -> OrderSample:
    """An order and its receipts as the scenario needs them: received in full for an
    invoice quoting no order (it bills the whole order), a line received in part for one
    billing more than was received."""
    lines = _order_lines(rng, vendor)
    if scenario == "more_than_received" and all(ln["quantity"] < 2 for ln in lines):
        lines[0]["quantity"] = 2 + rng.randint(0, 4)   # something can arrive in part
    short = next((ln["line"] for ln in lines if ln["quantity"] >= 2), None) \
        if scenario == "more_than_received" else None
    ordered_on = _TODAY - timedelta(days=rng.randint(20, 45))
    full = scenario == "clean_no_po_quoted" or rng.random() < 0.75
    receipts = _receipts(rng, po_number, lines, ordered_on, full, short)
    body = {"vendor": vendor.name, "vendor_bank_account": vendor.bank_account,
            "currency": vendor.currency, "lines": lines, "status": "open"}
    return OrderSample(tenant, po_number, vendor, body, tuple(receipts), ordered_on)


def _items(order: OrderSample) -> set[str]:
    return {ln["description"] for ln in order.body["lines"]}


def _confusable(billed: OrderSample, other: OrderSample) -> bool:
    """Whether an invoice billing all of ``billed`` and quoting no order could be taken for
    one of ``other``: a clerk goes by the amount (within 3%), a matcher pairs the lines
    (``other`` holds every item, so received and priced alike it fits too)."""
    value, its = billed.value(), other.value()
    return abs(value - its) <= Decimal("0.03") * max(value, its) \
        or _items(billed) <= _items(other)


def _identifiable(order: OrderSample, scenario: str, load: Workload) -> bool:
    """Whether every invoice quoting no order still tells which order it bills among the
    tenant's orders from the vendor, with ``order`` among them."""
    pair = [o for o in load.orders if (o.tenant, o.vendor) == (order.tenant, order.vendor)]
    unquoted = [i.order for i in load.invoices if i.scenario == "clean_no_po_quoted"]
    if scenario == "clean_no_po_quoted" and any(_confusable(order, o) for o in pair):
        return False
    return not any(_confusable(o, order) for o in pair if o in unquoted)


# -- invoices ----------------------------------------------------------------------------------

def _wording(rng: random.Random, po_description: str) -> str:
    """The supplier's words for an ordered item: its own, or now and then close to the
    buyer's."""
    item = next(i for i in CATALOGUE if i.buyer == po_description)
    return item.close if item.close and rng.random() < 0.35 else item.supplier


def _billed_lines(rng: random.Random, order: OrderSample, scenario: str
                  ) -> tuple[InvoiceLine, ...]:
    """What the invoice bills: each received line at the order's price, except the one line
    the scenario changes."""
    received = [ln for ln in order.body["lines"] if order.received(ln["line"])]
    if scenario == "clean_no_po_quoted":
        received = list(order.body["lines"])
    changed = rng.choice(received)["line"]
    if scenario == "more_than_received":
        changed = next(ln["line"] for ln in order.body["lines"]
                       if order.received(ln["line"]) < ln["quantity"])
        received = [ln for ln in order.body["lines"]
                    if order.received(ln["line"]) or ln["line"] == changed]
    billed = []
    for ln in received:
        quantity = order.received(ln["line"]) if scenario != "clean_no_po_quoted" \
            else ln["quantity"]
        price = Decimal(str(ln["unit_price"]))
        if ln["line"] == changed and scenario == "price_above_po":
            price = (price * Decimal(rng.randint(105, 115)) / 100).quantize(
                _CENT, rounding=ROUND_CEILING)
        if ln["line"] == changed and scenario == "more_than_received":
            quantity = ln["quantity"]   # billed as ordered, though part has not arrived
        billed.append(InvoiceLine(ln["line"], _wording(rng, ln["description"]), quantity,
                                  price, _money(quantity * price)))
    return tuple(billed)


def _other_account(rng: random.Random, vendor: Vendor) -> tuple[str, str]:
    """An account at another bank (IBAN, BIC): where a changed-bank-details invoice asks to
    be paid."""
    while True:
        country, bank, count, bic = rng.choice(_OTHER_BANKS)
        account = iban(country, bank + "".join(str(rng.randint(0, 9)) for _ in range(count)))
        if account != vendor.bank_account:
            return account, bic


def _date_text(day: date, style: str) -> str:
    return {"long": f"{day.day} {day:%B %Y}", "iso": day.isoformat(),
            "dotted": f"{day:%d.%m.%Y}", "us": f"{day:%B} {day.day}, {day.year}"}[style]


def _amount(value: Decimal) -> str:
    return f"{value:,.2f}"


def _rate(vendor: Vendor) -> str:
    return f"{(vendor.vat_rate * 100).normalize():f}%"


@dataclass(frozen=True)
class _Draft:
    """What a layout writes: the invoice's facts."""

    vendor: Vendor
    buyer: str
    number: str
    quoted_po: str
    bank_account: str
    bic: str
    lines: tuple[InvoiceLine, ...]
    subtotal: Decimal
    tax: Decimal
    total: Decimal
    invoice_date: date
    due_date: date
    new_bank_note: bool

    def day(self, which: date) -> str:
        return _date_text(which, self.vendor.date_style)


def _new_bank_note(d: _Draft) -> list[str]:
    """What a supplier (or someone posing as one) writes when the account changed."""
    return ["Please note our new bank details and update your records."] \
        if d.new_bank_note else []


def _bank_lines(d: _Draft) -> list[str]:
    return [*_new_bank_note(d), f"IBAN: {grouped(d.bank_account)}", f"BIC: {d.bic}"]


def _formal(d: _Draft) -> str:
    """A formal invoice: letterhead, labelled numbers and dates, a pipe table, totals,
    payment terms and bank details."""
    v = d.vendor
    width = max(len("Description"), *(len(ln.description) for ln in d.lines))
    rows = [f"{'Description':<{width}} | Qty | {'Unit price':>10} | {'Amount':>10}",
            "-" * (width + 33)]
    rows += [f"{ln.description:<{width}} | {ln.quantity:>3} | {_amount(ln.unit_price):>10} | "
             f"{_amount(ln.amount):>10}" for ln in d.lines]
    quoted = [f"{v.po_label}: {d.quoted_po}"] if d.quoted_po else []
    return "\n".join([
        v.name, v.address, f"VAT No: {v.vat_id}", "", "INVOICE", "",
        f"Invoice No: {d.number}", f"Invoice Date: {d.day(d.invoice_date)}",
        f"Due Date: {d.day(d.due_date)}", *quoted,
        f"Bill To: {d.buyer}, Accounts Payable", "", *rows, "",
        f"Subtotal: {v.currency} {_amount(d.subtotal)}",
        f"VAT {_rate(v)}: {v.currency} {_amount(d.tax)}",
        f"Total: {v.currency} {_amount(d.total)}", "",
        f"Payment terms: {v.terms_days} days net", *_bank_lines(d)])


def _email(d: _Draft) -> str:
    """An invoice in the body of an e-mail: a sentence, the dates, ``3 x Item @ 4.00 =
    12.00`` lines, the totals and where to pay, signed."""
    v = d.vendor
    against = f" against your PO {d.quoted_po}" if d.quoted_po else ""
    items = [f"{ln.quantity} x {ln.description} @ {_amount(ln.unit_price)} = "
             f"{_amount(ln.amount)}" for ln in d.lines]
    return "\n".join([
        f"Subject: Invoice {d.number} from {v.name}", "",
        f"Dear {d.buyer} accounts payable team,", "",
        f"please find below our invoice {d.number} for the goods and services "
        f"delivered{against}.", "",
        f"Invoice date: {d.day(d.invoice_date)}", f"Due date: {d.day(d.due_date)}", "",
        *items, "",
        f"Subtotal: {_amount(d.subtotal)}", f"VAT {_rate(v)}: {_amount(d.tax)}",
        f"Total: {v.currency} {_amount(d.total)}", "", *_new_bank_note(d),
        f"Please transfer the amount to IBAN {grouped(d.bank_account)} (BIC {d.bic}), "
        "quoting the invoice number.", "", "Kind regards,", "", v.signer,
        "Accounts Receivable", v.name])


def _compact(d: _Draft) -> str:
    """A compact invoice: numbers and dates on one line, items in columns of spaces."""
    v = d.vendor
    width = max(len(ln.description) for ln in d.lines)
    rows = [f"{ln.description:<{width}}    {ln.quantity:>4}    {_amount(ln.unit_price):>9}    "
            f"{_amount(ln.amount):>10}" for ln in d.lines]
    quoted = [f"{v.po_label}: {d.quoted_po}"] if d.quoted_po else []
    return "\n".join([
        v.name, v.address, f"VAT No: {v.vat_id}", "",
        f"Invoice #: {d.number}    Date: {d.day(d.invoice_date)}    "
        f"Due: {d.day(d.due_date)}", f"Customer: {d.buyer}", *quoted, "", *rows, "",
        f"Net total: {_amount(d.subtotal)}", f"VAT {_rate(v)}: {_amount(d.tax)}",
        f"Total due: {v.currency} {_amount(d.total)}", *_bank_lines(d)])


_WRITERS = {"formal": _formal, "email": _email, "compact": _compact}


class _Numbers:
    """The tenants' order numbers and the vendors' invoice numbers: running serials from
    bases drawn from a random stream of their own, seeded by the seed and ``batch``, so that
    another batch (another demo run on the same stack) numbers its documents afresh and
    everything else stays as the seed has it."""

    def __init__(self, seed: int, batch: int, tenants: Sequence[str]) -> None:
        self.rng = random.Random(f"numbers:{seed}:{batch}")
        self.tenants = list(tenants)
        self.po_serial = {t: self.rng.randint(10_000, 800_000) for t in tenants}
        self.invoice_serial = {v.name: self.rng.randint(1000, 900_000) for v in VENDORS}
        #: per tenant, its orders' numbers and those its invoices mistyped (no order's)
        self.taken: dict[str, set[str]] = {t: set() for t in tenants}

    def po_number(self, tenant: str) -> str:
        while True:
            self.po_serial[tenant] += 1
            number = _po_format(self.tenants.index(tenant), tenant, self.po_serial[tenant])
            if number not in self.taken[tenant]:
                self.taken[tenant].add(number)
                return number

    def invoice_number(self, vendor: Vendor) -> str:
        self.invoice_serial[vendor.name] += self.rng.randint(1, 4)   # it bills others too
        serial = self.invoice_serial[vendor.name] % 10**6
        return f"{vendor.invoice_prefix}{_TODAY.year % 100}{serial:06d}"

    def mistyped(self, tenant: str, po_number: str) -> str:
        """``po_number`` with two neighbouring digits swapped (a typo), not one of the
        tenant's orders; reserved, so no later order gets it either."""
        spots = [i for i in range(len(po_number) - 1) if po_number[i].isdigit()
                 and po_number[i + 1].isdigit() and po_number[i] != po_number[i + 1]]
        start = self.rng.randrange(len(spots)) if spots else 0
        typos = [po_number[:i] + po_number[i + 1] + po_number[i] + po_number[i + 2:]
                 for i in spots[start:] + spots[:start]]
        typo = next((t for t in typos if t not in self.taken[tenant]), po_number + "0")
        self.taken[tenant].add(typo)
        return typo


def _invoice(rng: random.Random, key: str, scenario: str, order: OrderSample,
             numbers: _Numbers) -> InvoiceSample:
    """The supplier's invoice for ``order`` as ``scenario`` has it."""
    vendor = order.vendor
    lines = _billed_lines(rng, order, scenario)
    subtotal = sum((ln.amount for ln in lines), Decimal(0))
    tax = _money(subtotal * vendor.vat_rate)
    last_receipt = max(datetime.fromisoformat(r["received_at"]).date()
                       for r in order.receipts)
    invoice_date = min(_TODAY, last_receipt + timedelta(days=rng.randint(0, 4)))
    quoted = order.po_number
    if scenario == "clean_no_po_quoted":
        quoted = ""
    elif scenario == "unknown_po":
        quoted = numbers.mistyped(order.tenant, order.po_number)
    account, bic = _other_account(rng, vendor) if scenario == "other_bank_account" \
        else (vendor.bank_account, vendor.bic)
    draft = _Draft(vendor, BUYERS.get(order.tenant, order.tenant.replace("-", " ").title()),
                   numbers.invoice_number(vendor), quoted, account, bic, lines, subtotal, tax,
                   subtotal + tax, invoice_date,
                   invoice_date + timedelta(days=vendor.terms_days),
                   scenario == "other_bank_account")
    return InvoiceSample(
        key=key, tenant=order.tenant, scenario=scenario, layout=vendor.layout, order=order,
        invoice_number=draft.number, quoted_po=quoted, bank_account=account, lines=lines,
        subtotal=subtotal, tax=tax, total=draft.total, invoice_date=invoice_date,
        due_date=draft.due_date,
        received_on=min(_TODAY, invoice_date + timedelta(days=rng.randint(0, 3))),
        text=_WRITERS[vendor.layout](draft),
        expected="automate" if scenario in AUTOMATED else "person",
        expected_field=EXPECTED_FIELD.get(scenario, ""))


# -- the workload ------------------------------------------------------------------------------

def _order_for(rng: random.Random, numbers: _Numbers, tenant: str, scenario: str,
               load: Workload) -> OrderSample:
    """A new order of ``tenant`` for ``scenario``, that leaves every invoice quoting no
    order identifiable (see :func:`_identifiable`)."""
    while True:
        vendor = rng.choice(VENDORS)
        order = _build_order(rng, tenant, numbers.po_number(tenant), vendor, scenario)
        if _identifiable(order, scenario, load):
            return order


#: The tenants orders are dealt to when the caller names none.
DEFAULT_TENANTS = ("acme",)


def workload(count: int, seed: int = 7, batch: int = 0,
             tenants: Sequence[str] = DEFAULT_TENANTS, prefix: str = "po-inv") -> Workload:
    """``count`` supplier invoices (scenarios dealt in a fixed order, then shuffled), the
    orders they bill, and one open order not yet invoiced per :data:`OPEN_ORDER_EVERY`.
    ``batch`` only moves the order and invoice numbers (a second demo run on one stack must
    not resubmit the first one's invoice numbers); everything else follows ``seed``."""
    rng = random.Random(seed)
    numbers = _Numbers(seed, batch, tenants)
    out = Workload()
    scenarios = [_DEAL[i % len(_DEAL)] for i in range(count)]
    rng.shuffle(scenarios)
    for index, scenario in enumerate(scenarios):
        order = _order_for(rng, numbers, tenants[index % len(tenants)], scenario, out)
        out.orders.append(order)
        out.invoices.append(_invoice(rng, f"{prefix}-{seed}-{index}", scenario, order,
                                     numbers))
        if (index + 1) % OPEN_ORDER_EVERY == 0:
            out.orders.append(_order_for(rng, numbers, rng.choice(list(tenants)), "clean",
                                         out))
    return out


__all__ = ["AUTOMATED", "BUYERS", "CATALOGUE", "DEFAULT_TENANTS", "EXPECTED_FIELD", "LAYOUTS", "OPEN_ORDER_EVERY",
           "SCENARIOS", "VENDORS", "CatalogueItem", "InvoiceLine", "InvoiceSample",
           "OrderSample", "Vendor", "Workload", "grouped", "iban", "workload"]
