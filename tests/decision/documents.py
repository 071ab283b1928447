"""Documents the decision tests submit: hand-written invoices with known fields, and held-out
router documents picked by label."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ROUTER_HELDOUT = ROOT / "models" / "data" / "router_heldout.jsonl"
MODEL_REPOSITORY = ROOT / "models" / "repository"


def heldout() -> list[dict[str, str]]:
    return [json.loads(line) for line in ROUTER_HELDOUT.read_text().splitlines()]


def sample(label: str, index: int = 0, min_len: int = 200) -> str:
    texts = [r["text"] for r in heldout() if r["label"] == label and len(r["text"]) > min_len]
    return texts[index]


def invoice(vendor: str = "Northwind Supplies Ltd", number: str = "INV-2026-00042",
            invoice_date: str = "2026-11-20", due_date: str = "2026-12-20",
            po: str | None = "PO-55120", currency: str = "USD",
            items: tuple[tuple[str, int, float], ...] = (
                ("Printer toner cartridges", 4, 62.50), ("A4 copy paper, 80gsm", 10, 5.00)),
            tax_rate: float = 0.20, iban: str = "GB29 NWBK 6016 1331 9268 19") -> str:
    """A laid-out invoice whose fields the extractor should read exactly."""
    lines = [f"{i}. {name} | {qty} | {unit:.2f} | {qty * unit:.2f}"
             for i, (name, qty, unit) in enumerate(items, start=1)]
    subtotal = round(sum(qty * unit for _, qty, unit in items), 2)
    tax = round(subtotal * tax_rate, 2)
    head = [f"Invoice No: {number}" if number else "", f"Invoice Date: {invoice_date}",
            f"Due Date: {due_date}", f"PO Number: {po}" if po else "",
            "Bill To: Acme Health Inc."]
    return "\n".join([
        vendor, "12 Market Rd, London", "", "INVOICE", "",
        *[h for h in head if h], "",
        "Item | Qty | Rate | Total", *lines, "",
        f"Subtotal: {currency} {subtotal:,.2f}",
        f"VAT {tax_rate:.0%}: {currency} {tax:,.2f}",
        f"TOTAL: {currency} {subtotal + tax:,.2f}", "",
        f"IBAN {iban}",
    ])
