"""Matching invoices to purchase orders, as plain functions (no broker, database or Triton):
the published order's checks and the topic record's parsing, then the two- and three-way
match on invoices read by the real extractor. The stack runs the same code in
tests/e2e/test_purchase_orders.py."""

from __future__ import annotations

import json

import pytest
from google.protobuf import json_format
from hypothesis import given
from hypothesis import strategies as st

from switchyard.messaging import CONTENT_TYPE_HEADER, Record, RejectRecord, encode
from switchyard.v1 import GoodsReceipt, PurchaseOrder, PurchaseOrderLine, PurchaseOrderStatus
from switchyard_packs.invoice.extraction import InvoiceExtraction, extract_invoice
from switchyard_packs.invoice.orders import parse_record
from switchyard_packs.invoice.purchasing import (
    MATCHED,
    MISMATCH,
    NO_ORDER,
    Match,
    Tolerances,
    check_order,
    choose,
    lexical_similarity,
    match_order,
    order_of,
    po_key,
    same_vendor,
)

IBAN = "DE89370400440532013000"
OTHER_IBAN = "GB29NWBK60161331926819"


def purchase_order(**overrides: object) -> PurchaseOrder:
    po = PurchaseOrder(
        tenant_id="buyer", po_number="PO-4711", vendor="Brightline Office Supplies Ltd",
        vendor_bank_account=IBAN, currency="EUR",
        status=PurchaseOrderStatus.PURCHASE_ORDER_STATUS_OPEN,
        lines=[PurchaseOrderLine(line=1, description="Toner cartridge, black, HP 305A",
                                 quantity=4, unit_price=62.50),
               PurchaseOrderLine(line=2, description="A4 copy paper 80gsm, box of 5 reams",
                                 quantity=10, unit_price=21.00)],
        receipts=[GoodsReceipt(receipt_id="GR-1", line=1, quantity=4),
                  GoodsReceipt(receipt_id="GR-2", line=2, quantity=10)])
    for name, value in overrides.items():
        if isinstance(value, list):
            del getattr(po, name)[:]
            getattr(po, name).extend(value)
        else:
            setattr(po, name, value)
    return po


def invoice_text(lines: list[tuple[str, int, float]], po: str | None = "PO-4711",
                 iban: str | None = IBAN, vendor: str = "Brightline Office Supplies Ltd") -> str:
    rows = [f"{desc} | {qty} | {price:.2f} | {qty * price:.2f}" for desc, qty, price in lines]
    subtotal = sum(qty * price for _, qty, price in lines)
    tax = round(subtotal * 0.19, 2)
    return "\n".join([
        vendor, "Hauptstrasse 1, Berlin", "", "INVOICE", "",
        "Invoice No: BR-2026-0042", "Invoice Date: 2026-11-20", "Due Date: 2026-12-20",
        *([f"PO Number: {po}"] if po else []), "",
        "Description | Qty | Unit price | Amount", *rows, "",
        f"Subtotal: EUR {subtotal:,.2f}", f"VAT 19%: EUR {tax:,.2f}",
        f"Total: EUR {subtotal + tax:,.2f}", "",
        *([f"IBAN: {iban}"] if iban else [])])


CLEAN = [("Black toner for HP 305A printers", 4, 62.50), ("Copy paper A4 80 g/m2, 5 reams", 10, 21.00)]


def similarity(ex: InvoiceExtraction, po: PurchaseOrder) -> list[list[float]]:
    return [[lexical_similarity(item.description, line.description) for line in po.lines]
            for item in ex.items]


def matched(text: str, po: PurchaseOrder, tol: Tolerances = Tolerances(),
            billed: dict[int, float] | None = None) -> Match:
    ex = extract_invoice(text)
    return match_order(ex, order_of(po, billed), similarity(ex, po), tol, "number")


def test_a_clean_invoice_matches_its_order_three_way() -> None:
    match = matched(invoice_text(CLEAN), purchase_order())
    assert match.status == MATCHED, match.discrepancies
    assert (match.po_number, match.kind, match.found_by) == ("PO-4711", "three_way", "number")
    assert sorted((m.order_line, m.quantity) for m in match.lines) == [(1, 4), (2, 10)]
    assert match.context()["po_discrepancies"] == []


@pytest.mark.parametrize(("lines", "field", "words"), [
    ([("Black toner for HP 305A printers", 4, 69.90), CLEAN[1]], "unit_price", "above order line 1"),
    ([CLEAN[0], ("Copy paper A4 80 g/m2, 5 reams", 12, 21.00)], "quantity", "left to bill"),
    ([CLEAN[0], CLEAN[1], ("Espresso machine, dual boiler", 1, 899.00)], "line", "like no line"),
])
def test_each_difference_is_named_by_its_field(lines: list[tuple[str, int, float]], field: str,
                                               words: str) -> None:
    match = matched(invoice_text(lines), purchase_order())
    assert match.status == MISMATCH
    assert [d.field for d in match.discrepancies] == [field]
    assert words in match.discrepancies[0].text()


def test_a_price_within_the_tolerance_and_a_lower_price_match() -> None:
    lines = [("Black toner for HP 305A printers", 4, 63.40), ("Copy paper A4 80 g/m2, 5 reams", 10, 19.00)]
    assert matched(invoice_text(lines), purchase_order()).status == MATCHED
    assert matched(invoice_text(lines), purchase_order(),
                   Tolerances(price=0.01)).status == MISMATCH


def test_three_way_bills_only_what_was_received_two_way_what_was_ordered() -> None:
    partly = purchase_order(receipts=[GoodsReceipt(receipt_id="GR-1", line=1, quantity=4),
                                      GoodsReceipt(receipt_id="GR-2", line=2, quantity=6)])
    three_way = matched(invoice_text(CLEAN), partly)
    assert [d.field for d in three_way.discrepancies] == ["quantity"]
    assert "6 received" in three_way.discrepancies[0].text()
    assert matched(invoice_text(CLEAN), partly,
                   Tolerances(goods_receipt_required=False)).status == MATCHED
    # the received part alone is a clean three-way match
    received = [CLEAN[0], ("Copy paper A4 80 g/m2, 5 reams", 6, 21.00)]
    assert matched(invoice_text(received), partly).status == MATCHED


def test_what_earlier_invoices_billed_is_not_billed_again() -> None:
    again = matched(invoice_text(CLEAN), purchase_order(), billed={1: 4})
    assert [d.field for d in again.discrepancies] == ["quantity"]
    assert "billed before 4" in again.discrepancies[0].text()
    # the ERP's own count too
    counted = purchase_order()
    counted.lines[1].invoiced_quantity = 10
    assert [d.field for d in matched(invoice_text(CLEAN), counted).discrepancies] == ["quantity"]


def test_another_bank_account_vendor_or_currency_never_matches() -> None:
    other_bank = matched(invoice_text(CLEAN, iban=OTHER_IBAN), purchase_order())
    assert [d.field for d in other_bank.discrepancies] == ["bank_account"]
    # the explanation travels in plaintext: no account, no vendor in it
    assert OTHER_IBAN not in json.dumps(other_bank.context())
    assert matched(invoice_text(CLEAN, iban=None), purchase_order()).status == MATCHED
    other_vendor = matched(invoice_text(CLEAN, vendor="Kestrel Foods AG"), purchase_order())
    assert [d.field for d in other_vendor.discrepancies] == ["vendor"]
    assert "Kestrel" not in json.dumps(other_vendor.context())
    dollars = matched(invoice_text(CLEAN), purchase_order(currency="USD"))
    assert [d.field for d in dollars.discrepancies] == ["currency"]
    closed = matched(invoice_text(CLEAN), purchase_order(
        status=PurchaseOrderStatus.PURCHASE_ORDER_STATUS_CLOSED))
    assert [d.field for d in closed.discrepancies] == ["po_number"]


def test_an_invoice_without_readable_lines_matches_on_its_net_amount() -> None:
    text = "\n".join(["Brightline Office Supplies Ltd", "Invoice No: BR-7", "PO Number: PO-4711",
                      "Invoice Date: 2026-11-20", "Subtotal: EUR 460.00", "VAT: EUR 87.40",
                      "Total: EUR 547.40"])
    assert not extract_invoice(text).items
    assert matched(text, purchase_order()).status == MATCHED
    short = text.replace("460.00", "400.00").replace("87.40", "76.00").replace("547.40", "476.00")
    assert [d.field for d in matched(short, purchase_order()).discrepancies] == ["total"]


def test_an_invoice_quoting_no_order_is_matched_to_the_one_it_fits() -> None:
    ex = extract_invoice(invoice_text(CLEAN, po=None))
    fits = purchase_order()
    other = purchase_order(po_number="PO-4712", lines=[PurchaseOrderLine(
        line=1, description="Desk chair, ergonomic", quantity=2, unit_price=189.0)])
    matches = [match_order(ex, order_of(po), similarity(ex, po), Tolerances(),
                           "vendor_and_amount") for po in (fits, other)]
    chosen = choose(matches)
    assert (chosen.status, chosen.po_number, chosen.found_by) == (
        MATCHED, "PO-4711", "vendor_and_amount")
    assert choose(matches[1:]).status == NO_ORDER   # none of its lines is that order's
    # its goods on an order, billed there already: that order's difference, for a person
    billed = match_order(ex, order_of(fits, {1: 4, 2: 10}), similarity(ex, fits),
                         Tolerances(), "vendor_and_amount")
    again = choose([billed, matches[1]])
    assert (again.status, again.po_number) == (MISMATCH, "PO-4711")
    assert {d.field for d in again.discrepancies} == {"quantity"}
    twin = purchase_order(po_number="PO-4713")
    both = choose([matches[0], match_order(ex, order_of(twin), similarity(ex, twin),
                                           Tolerances(), "vendor_and_amount")])
    assert both.status == MISMATCH and both.discrepancies[0].field == "po_number"


def test_lines_pair_with_the_order_line_they_are_most_like() -> None:
    swapped = [CLEAN[1], CLEAN[0]]
    match = matched(invoice_text(swapped), purchase_order())
    assert match.status == MATCHED
    assert {(m.item, m.order_line) for m in match.lines} == {(0, 2), (1, 1)}


def test_vendor_names_and_po_numbers_compare_as_people_write_them() -> None:
    assert same_vendor("Brightline Office Supplies", "BRIGHTLINE OFFICE SUPPLIES LTD")
    assert not same_vendor("Brightline Office", "Kestrel Foods")
    # letters of every script count: one umlaut apart is another vendor, and a name with no
    # Latin letter is a name
    assert not same_vendor("Müller Bau GmbH", "Möller Bau GmbH")
    assert same_vendor("MÜLLER BAU", "Müller Bau GmbH")
    assert same_vendor("ООО «Ромашка»", "ооо ромашка") and not same_vendor("Ромашка", "Лютик")
    assert lexical_similarity("Бумага офисная А4", "бумага А4, 500 листов") > 0.3
    assert po_key(" po-4711 ") == po_key("PO-4711") == po_key("#PO-4711")
    assert lexical_similarity("HP 305A toner black", "Toner cartridge, black, HP 305A") > 0.5
    assert lexical_similarity("HP 305A toner black", "Desk chair, ergonomic") < 0.2


# -- the published order -------------------------------------------------------------------------

def test_a_published_order_is_checked_field_by_field() -> None:
    assert check_order(purchase_order()) == []
    bad = purchase_order(vendor="", currency="euro", lines=[
        PurchaseOrderLine(line=1, description="x", quantity=0, unit_price=-1),
        PurchaseOrderLine(line=1, description="", quantity=1, unit_price=1)],
        receipts=[GoodsReceipt(receipt_id="GR-9", line=7, quantity=1)])
    problems = " | ".join(check_order(bad))
    for words in ("vendor is required", "currency must be an ISO 4217 code",
                  "lines[0].quantity must be above 0", "lines[0].unit_price must be 0 or more",
                  "lines[1].line 1 appears twice", "lines[1].description is required",
                  "receipts[0].line 7 is no line of the order"):
        assert words in problems


def _record(value: bytes | None, key: bytes = b"buyer/PO-4711",
            headers: dict[str, str] | None = None) -> Record:
    return Record("purchase-orders", 0, 0, key, value,
                  {CONTENT_TYPE_HEADER: "application/json"} if headers is None else headers, 0.0)


def test_topic_records_in_json_or_protobuf_and_tombstones() -> None:
    po = purchase_order()
    as_json = json_format.MessageToJson(po).encode()
    assert parse_record(_record(as_json)) == ("buyer", "PO-4711", po)
    value, headers = encode(po)
    assert parse_record(_record(value, headers=headers))[2] == po
    assert parse_record(_record(None)) == ("buyer", "PO-4711", None)


@pytest.mark.parametrize(("key", "value", "code", "words"), [
    (b"PO-4711", b"{}", "bad_key", "<tenant_id>/<po_number>"),
    (b"buyer/PO-4711", b"{not json", "malformed_json", "not JSON"),
    (b"buyer/PO-4711", b"[1]", "schema_violation", "JSON object"),
    (b"buyer/PO-4711", b'{"poNumber": "PO-4711", "colour": 1}', "schema_violation", "colour"),
    (b"other/PO-4711", None, None, "tenant_id is not the key's tenant"),
    (b"buyer/PO-1", None, None, "po_number is not the key's PO number"),
])
def test_a_record_that_cannot_be_used_says_why(key: bytes, value: bytes | None,
                                               code: str | None, words: str) -> None:
    value = value if value is not None else json_format.MessageToJson(purchase_order()).encode()
    with pytest.raises(RejectRecord) as refused:
        parse_record(_record(value, key))
    assert refused.value.code == (code or "schema_violation")
    assert words in refused.value.reason


@given(st.binary(max_size=300), st.binary(max_size=40))
def test_any_bytes_are_parsed_or_refused_with_a_reason(value: bytes, key: bytes) -> None:
    for headers in ({CONTENT_TYPE_HEADER: "application/json"}, {}, {
            CONTENT_TYPE_HEADER: "application/x-protobuf; messageType=switchyard.v1.PurchaseOrder"}):
        try:
            parse_record(_record(value, key, headers))
        except RejectRecord as exc:
            assert exc.code and exc.reason


def test_an_address_read_as_an_item_line_bills_nothing() -> None:
    text = invoice_text(CLEAN).replace("Hauptstrasse 1, Berlin", "Industriestrasse 7, 69115 Heidelberg")
    ex = extract_invoice(text)
    assert len(ex.items) == 3   # the extractor takes the address line for an item line
    match = matched(text, purchase_order())
    assert match.status == MATCHED, match.discrepancies
    assert sorted(m.item for m in match.lines) == [1, 2]
