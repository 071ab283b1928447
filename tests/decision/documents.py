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


def png(width: int = 8, height: int = 8) -> bytes:
    """A real PNG image (RGB, a gradient), built to the PNG specification."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    raw = b"".join(b"\x00" + b"".join(bytes((x * 31 % 256, y * 31 % 256, 128))
                                      for x in range(width)) for y in range(height))
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def pdf(text: str) -> bytes:
    """A real one-page PDF 1.4 showing ``text`` (with the binary marker line PDF writers
    put after the header, and a correct cross-reference table)."""
    lines = " T* ".join(f"({line.replace('(', '[').replace(')', ']')}) Tj"
                        for line in text.splitlines())
    stream = f"BT /F1 11 Tf 14 TL 72 720 Td {lines} ET".encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream
        + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += (f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n"
            "%%EOF\n").encode()
    return out
