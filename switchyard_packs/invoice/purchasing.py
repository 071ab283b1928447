"""Matching supplier invoices to purchase orders: two- and three-way match.

An accounts-payable clerk pays an invoice without asking anyone when it bills what was ordered
(two-way: the purchase order) and what arrived (three-way: the goods receipts too), at the
agreed prices, to the supplier's known account. This module is that check, as plain functions
over plain data, so it is tested without PostgreSQL, Kafka or Triton:

* :func:`check_order` -- what is wrong with a purchase order an ERP published (the dead-letter
  reasons of the ``purchase-orders`` topic);
* :func:`order_of` -- the :class:`Order` a published ``PurchaseOrder`` is, with what earlier
  invoices already billed of each line;
* :func:`match_order` -- an invoice's extraction against one order, given how alike each
  invoice line is to each order line (:func:`lexical_similarity`, or the text encoder's
  embeddings in the enricher): each invoice line is paired with the order line it is most like
  (one to one), then quantities and unit prices are compared within the tolerances; every
  difference is a :class:`Discrepancy` that names its field for the reviewer.

Explanations travel in plaintext, so a discrepancy never quotes the vendor, a bank account or a
line's wording: it names the field, the line numbers and the figures.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from switchyard.v1 import PurchaseOrder, PurchaseOrderStatus
from switchyard_packs.invoice.extraction import (
    InvoiceExtraction,
    LineItem,
    account_key,
    vendor_key,
)

#: Limits of a published order (the proto's comments say the same).
MAX_LINES = 500
MAX_RECEIPTS = 2000
MAX_TEXT_CHARS = 500
_CURRENCY = re.compile(r"^[A-Z]{3}$")
#: Rounding slack when comparing money and quantities.
_CENT = 0.005
_EPS = 1e-6


def po_key(po_number: str) -> str:
    """How PO numbers are compared: case, spaces and a leading '#' or 'No.' ignored."""
    key = re.sub(r"\s+", "", po_number).upper()
    return re.sub(r"^(?:#|NO\.?|NR\.?|N°)", "", key)


def check_order(po: PurchaseOrder) -> list[str]:
    """Every reason a published order cannot be used (empty: it can)."""
    problems = []
    for name in ("tenant_id", "po_number", "vendor"):
        value = getattr(po, name)
        if not value.strip():
            problems.append(f"{name} is required")
        elif len(value) > MAX_TEXT_CHARS:
            problems.append(f"{name} is longer than {MAX_TEXT_CHARS} characters")
    if po.po_number.strip() and not po_key(po.po_number):
        problems.append("po_number has no characters but separators")
    if not _CURRENCY.match(po.currency):
        problems.append(f"currency must be an ISO 4217 code (3 capital letters), got "
                        f"{po.currency[:8]!r}")
    if not po.lines:
        problems.append("lines: at least one line is required")
    if len(po.lines) > MAX_LINES:
        problems.append(f"lines: at most {MAX_LINES}, got {len(po.lines)}")
    if len(po.receipts) > MAX_RECEIPTS:
        problems.append(f"receipts: at most {MAX_RECEIPTS}, got {len(po.receipts)}")
    numbers: set[int] = set()
    for i, line in enumerate(po.lines):
        where = f"lines[{i}]"
        if line.line <= 0:
            problems.append(f"{where}.line must be 1 or more, got {line.line}")
        elif line.line in numbers:
            problems.append(f"{where}.line {line.line} appears twice")
        numbers.add(line.line)
        if not line.description.strip():
            problems.append(f"{where}.description is required")
        elif len(line.description) > MAX_TEXT_CHARS:
            problems.append(f"{where}.description is longer than {MAX_TEXT_CHARS} characters")
        if not line.quantity > 0:
            problems.append(f"{where}.quantity must be above 0, got {line.quantity}")
        if not line.unit_price >= 0:
            problems.append(f"{where}.unit_price must be 0 or more, got {line.unit_price}")
        if not line.invoiced_quantity >= 0:
            problems.append(f"{where}.invoiced_quantity must be 0 or more")
    for i, receipt in enumerate(po.receipts):
        where = f"receipts[{i}]"
        if not receipt.receipt_id.strip():
            problems.append(f"{where}.receipt_id is required")
        if receipt.line not in numbers:
            problems.append(f"{where}.line {receipt.line} is no line of the order")
        if not receipt.quantity > 0:
            problems.append(f"{where}.quantity must be above 0, got {receipt.quantity}")
    return problems


@dataclass(frozen=True)
class OrderLine:
    line: int
    description: str
    quantity: float
    unit_price: float
    #: billed before: the ERP's count, or what invoices matched here billed, whichever is more
    billed: float
    received: float


@dataclass(frozen=True)
class Order:
    """A purchase order as matching sees it."""

    po_number: str
    vendor: str
    bank_account: str
    currency: str
    is_open: bool
    lines: tuple[OrderLine, ...]


def order_of(po: PurchaseOrder, matched: Mapping[int, float] | None = None) -> Order:
    """``po`` for matching; ``matched`` is what invoices matched here already billed of each
    line (the ERP may not have counted them yet)."""
    matched = matched or {}
    received: dict[int, float] = {}
    for receipt in po.receipts:
        received[receipt.line] = received.get(receipt.line, 0.0) + receipt.quantity
    return Order(
        po_number=po.po_number, vendor=po.vendor,
        bank_account=account_key(po.vendor_bank_account),
        currency=po.currency,
        is_open=po.status in (PurchaseOrderStatus.PURCHASE_ORDER_STATUS_OPEN,
                              PurchaseOrderStatus.PURCHASE_ORDER_STATUS_UNSPECIFIED),
        lines=tuple(OrderLine(ln.line, ln.description, ln.quantity, ln.unit_price,
                              max(ln.invoiced_quantity, matched.get(ln.line, 0.0)),
                              received.get(ln.line, 0.0))
                    for ln in po.lines))


@dataclass(frozen=True)
class Tolerances:
    """How far an invoice may be from its order and still be paid without a person."""

    #: a unit price may be above the order's by this share (a lower price is always fine)
    price: float = 0.02
    #: an invoice line is the order line it is most like only from this similarity up
    similarity: float = 0.5
    #: three-way: quantities are checked against the goods receipts too
    goods_receipt_required: bool = True


@dataclass(frozen=True)
class Discrepancy:
    """One way the invoice differs from its order, by field (the pack's field names, and
    ``quantity`` / ``unit_price`` / ``line`` for an invoice line)."""

    field: str
    submitted: str
    found: str
    note: str

    def text(self) -> str:
        return f"{self.field}: {self.note}"


@dataclass(frozen=True)
class LineMatch:
    item: int           # index of the invoice line (extraction.items)
    order_line: int     # PurchaseOrderLine.line
    similarity: float
    quantity: float     # how many of the order line the invoice line bills


#: Match statuses: the rules' ``history.po_match``.
MATCHED, MISMATCH, NO_ORDER = "matched", "mismatch", "none"


@dataclass(frozen=True)
class Match:
    status: str
    po_number: str = ""
    found_by: str = ""          # "number" | "vendor_and_amount"
    kind: str = ""              # "three_way" | "two_way"
    lines: tuple[LineMatch, ...] = ()
    discrepancies: tuple[Discrepancy, ...] = field(default_factory=tuple)

    def context(self) -> dict[str, object]:
        """The ``history.*`` keys the rules read."""
        return {
            "po_match": self.status, "po_number": self.po_number,
            "po_found_by": self.found_by, "po_match_kind": self.kind,
            "po_lines_matched": len(self.lines),
            "po_discrepancies": [d.text() for d in self.discrepancies],
            "po_discrepancy_fields": sorted({d.field for d in self.discrepancies}),
            # for the reviewer, field by field (the rule's ``discrepancies``)
            "po_discrepancy_list": [
                {"field": d.field, "submitted": d.submitted, "found": d.found,
                 "source": f"purchase order {self.po_number}" if self.po_number
                 else "purchase orders", "note": d.note}
                for d in self.discrepancies],
        }


NOT_MATCHED = Match(NO_ORDER)


def _figure(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))


def same_vendor(invoice_vendor: str, order_vendor: str) -> bool:
    """The invoice's vendor is the order's: equal without case, punctuation or legal suffix,
    or one name's words all in the other ('Falcon Consulting' on 'Falcon Consulting Inc.')."""
    a, b = vendor_key(invoice_vendor), vendor_key(order_vendor)
    if not a or not b:
        return False
    if a == b:
        return True
    words_a, words_b = set(a.split()), set(b.split())
    return bool(words_a and words_b) and (words_a <= words_b or words_b <= words_a)


def _trigrams(text: str) -> set[str]:
    words = re.findall(r"[^\W_]+", text.casefold())
    grams: set[str] = set()
    for word in words:
        padded = f" {word} "
        grams.update(padded[i:i + 3] for i in range(len(padded) - 2))
    return grams


def lexical_similarity(a: str, b: str) -> float:
    """How alike two line descriptions are by their letters (Dice over character trigrams of
    their words): what matching uses when the text encoder cannot answer."""
    ga, gb = _trigrams(a), _trigrams(b)
    if not ga or not gb:
        return 0.0
    return 2 * len(ga & gb) / (len(ga) + len(gb))


def _pairs(similarity: Sequence[Sequence[float]], floor: float) -> dict[int, tuple[int, float]]:
    """Invoice line index -> (order line index, similarity): each invoice line to a different
    order line, the most alike pairs first (a greedy assignment; invoices have few lines)."""
    ranked = sorted(((s, i, j) for i, row in enumerate(similarity) for j, s in enumerate(row)
                     if s >= floor), reverse=True)
    taken_items: set[int] = set()
    taken_lines: set[int] = set()
    out: dict[int, tuple[int, float]] = {}
    for s, i, j in ranked:
        if i not in taken_items and j not in taken_lines:
            out[i] = (j, s)
            taken_items.add(i)
            taken_lines.add(j)
    return out


def _billed_quantity(item: LineItem, line: OrderLine) -> float:
    """How many units the invoice line bills: its quantity, else its amount at the order's
    price (a line that shows only an amount)."""
    if item.quantity is not None:
        return item.quantity
    if line.unit_price > 0:
        return round(item.amount / line.unit_price, 3)
    return 0.0


def _unit_price(item: LineItem, quantity: float) -> float | None:
    if item.unit_price is not None:
        return item.unit_price
    return item.amount / quantity if quantity > 0 else None


def _line_discrepancies(number: int, item: LineItem, line: OrderLine, quantity: float,
                        tol: Tolerances) -> list[Discrepancy]:
    out = []
    price = _unit_price(item, quantity)
    if price is not None and price > line.unit_price * (1 + tol.price) + _CENT:
        above = (price / line.unit_price - 1) * 100 if line.unit_price else 100.0
        out.append(Discrepancy(
            "unit_price", _figure(price), _figure(line.unit_price),
            f"invoice line {number} charges {_figure(price)} a unit, {above:.1f}% above order "
            f"line {line.line}'s {_figure(line.unit_price)} (tolerance {tol.price * 100:g}%)"))
    unbilled = line.quantity - line.billed
    if quantity > unbilled + _EPS:
        out.append(Discrepancy(
            "quantity", _figure(quantity), _figure(max(0.0, unbilled)),
            f"invoice line {number} bills {_figure(quantity)}; order line {line.line} has "
            f"{_figure(max(0.0, unbilled))} left to bill (ordered {_figure(line.quantity)}, "
            f"billed before {_figure(line.billed)})"))
    elif tol.goods_receipt_required and quantity > line.received - line.billed + _EPS:
        out.append(Discrepancy(
            "quantity", _figure(quantity), _figure(max(0.0, line.received - line.billed)),
            f"invoice line {number} bills {_figure(quantity)}; order line {line.line} has "
            f"{_figure(line.received)} received, {_figure(line.billed)} of them billed before"))
    return out


def _net_amount(ex: InvoiceExtraction) -> float | None:
    subtotal = ex.amount("subtotal")
    if subtotal is not None:
        return subtotal
    total = ex.amount("total")
    if total is None:
        return None
    return total - (ex.amount("tax") or 0.0)


def _header_match(ex: InvoiceExtraction, order: Order, tol: Tolerances
                  ) -> tuple[list[LineMatch], list[Discrepancy]]:
    """An invoice whose lines could not be read bills the whole of what is left of the order
    (what was received of it, three-way), or it is not a match."""
    lines = [ln for ln in order.lines if ln.quantity - ln.billed > _EPS]
    billable = [(ln, (min(ln.quantity, ln.received) if tol.goods_receipt_required
                      else ln.quantity) - ln.billed) for ln in lines]
    expected = sum(max(0.0, q) * ln.unit_price for ln, q in billable)
    net = _net_amount(ex)
    if net is None or expected <= 0 or abs(net - expected) > max(0.01, expected * 0.001):
        what = "received and not yet billed" if tol.goods_receipt_required else "left to bill"
        return [], [Discrepancy(
            "total", _figure(net) if net is not None else "", _figure(expected),
            f"the invoice's lines could not be read, and its net amount "
            f"{_figure(net) if net is not None else '(none read)'} is not what the order has "
            f"{what} ({_figure(expected)})")]
    return [LineMatch(-1, ln.line, 1.0, q) for ln, q in billable if q > _EPS], []


def _adds_up(items: Sequence[LineItem], net: float) -> bool:
    return abs(sum(item.amount for item in items) - net) <= max(0.011, abs(net) * 0.001)


def billed_items(ex: InvoiceExtraction) -> list[int]:
    """Which of the extraction's item lines the invoice bills (indexes into ``ex.items``):
    all of them, unless they do not add up to the net amount and the lines that show a
    quantity and a unit price do (a line of an address or a phone number read as an item
    line bills nothing)."""
    every = list(range(len(ex.items)))
    net = _net_amount(ex)
    if net is None or _adds_up(ex.items, net):
        return every
    priced = [i for i in every
              if ex.items[i].quantity is not None and ex.items[i].unit_price is not None]
    if priced and _adds_up([ex.items[i] for i in priced], net):
        return priced
    return every


def match_order(ex: InvoiceExtraction, order: Order, similarity: Sequence[Sequence[float]],
                tol: Tolerances, found_by: str) -> Match:
    """``ex`` against ``order``; ``similarity[i][j]`` is how alike invoice line ``i``
    (``ex.items``) and order line ``j`` (``order.lines``) are, in [0, 1]."""
    problems: list[Discrepancy] = []
    if not order.is_open:
        problems.append(Discrepancy("po_number", order.po_number, "closed",
                                    "the purchase order is closed or cancelled"))
    vendor = ex.get("vendor") or ""
    if not same_vendor(vendor, order.vendor):
        problems.append(Discrepancy("vendor", "", "", "the invoice's vendor is not the "
                                                      "order's supplier"))
    currency = ex.get("currency") or ""
    if currency != order.currency:
        problems.append(Discrepancy("currency", currency, order.currency,
                                    f"billed in {currency or '(none read)'}, ordered in "
                                    f"{order.currency}"))
    account = account_key(ex.get("bank_account") or "")
    if account and account != order.bank_account:
        problems.append(Discrepancy(
            "bank_account", "", "",
            "the invoice asks to be paid to an account that is not the supplier's on the "
            "vendor master" if order.bank_account else
            "the invoice names a bank account, and the vendor master has none on file"))
    matched: list[LineMatch] = []
    billed = billed_items(ex)
    if billed:
        pairs = _pairs([similarity[i] if i in billed else [] for i in range(len(ex.items))],
                       tol.similarity)
        for number, i in enumerate(billed, start=1):
            item = ex.items[i]
            if i not in pairs:
                problems.append(Discrepancy(
                    "line", _figure(item.amount), "",
                    f"invoice line {number} is like no line of the order"))
                continue
            j, score = pairs[i]
            line = order.lines[j]
            quantity = _billed_quantity(item, line)
            problems += _line_discrepancies(number, item, line, quantity, tol)
            matched.append(LineMatch(i, line.line, round(score, 3), quantity))
    else:
        header_lines, header_problems = _header_match(ex, order, tol)
        matched, problems = header_lines, problems + header_problems
    return Match(MISMATCH if problems else MATCHED, order.po_number, found_by,
                 "three_way" if tol.goods_receipt_required else "two_way", tuple(matched),
                 tuple(problems))


def unknown_order(po_number: str) -> Match:
    """The invoice quotes an order the ERP never published (or one it removed)."""
    return Match(MISMATCH, po_number, "number", discrepancies=(Discrepancy(
        "po_number", po_number, "", "no purchase order with this number"),))


def choose(candidates: Sequence[Match]) -> Match:
    """An invoice that quotes no order, against its vendor's open orders: the one it matches
    cleanly; several: a person picks; none, but some of its lines are an order's goods (billed
    again, above the price, beyond what arrived): that order's differences, for a person;
    none of its lines any order's: no order (the usual rules decide)."""
    clean = [m for m in candidates if m.status == MATCHED]
    if len(clean) == 1:
        return clean[0]
    if len(clean) > 1:
        return Match(MISMATCH, "", "vendor_and_amount", discrepancies=(Discrepancy(
            "po_number", "", ", ".join(m.po_number for m in clean),
            f"the invoice quotes no order and matches {len(clean)} of the supplier's open "
            f"orders ({', '.join(m.po_number for m in clean)})"),))
    paired = [m for m in candidates if m.lines and any(ln.item >= 0 for ln in m.lines)]
    if paired:
        return max(paired, key=lambda m: (len(m.lines), -len(m.discrepancies)))
    return NOT_MATCHED


__all__ = ["MATCHED", "MAX_LINES", "MAX_RECEIPTS", "MAX_TEXT_CHARS", "MISMATCH", "NOT_MATCHED", "NO_ORDER",
           "Discrepancy", "LineMatch", "Match", "Order", "OrderLine", "Tolerances",
           "billed_items", "check_order", "choose", "lexical_similarity", "match_order", "order_of", "po_key",
           "same_vendor", "unknown_order"]
