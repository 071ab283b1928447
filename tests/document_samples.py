"""Small real documents for tests: PDFs rendered with reportlab, images written with Pillow,
and the hostile ones ingest must refuse (encrypted, corrupt, a decompression bomb)."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Sequence

from PIL import Image


def text_pdf(lines: tuple[str, ...] = ("Invoice INV-1001", "Total 120.00 EUR"),
             pages: int = 1, size: tuple[float, float] = (300, 200),
             password: str | None = None) -> bytes:
    """A PDF with a text layer: ``lines`` on each of ``pages`` pages, a black square at the
    top left corner (so rendering can be checked)."""
    from reportlab.pdfgen import canvas

    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=size, encrypt=password)
    for number in range(pages):
        pdf.rect(0, size[1] - 20, 20, 20, stroke=0, fill=1)
        y = size[1] - 40
        for line in lines:
            pdf.drawString(30, y, f"{line}")
            y -= 16
        pdf.drawString(30, 20, f"page {number + 1}")
        pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def image(fmt: str = "PNG", size: tuple[int, int] = (60, 40), colour: str = "white",
          **save: object) -> bytes:
    buffer = io.BytesIO()
    picture = Image.new("RGB", size, colour)
    picture.paste((0, 0, 0), (0, 0, 10, 10))  # a black mark at the top left
    picture.save(buffer, fmt, **save)
    return buffer.getvalue()


def noise_png(width: int, height: int) -> bytes:
    """A PNG of random pixels: it does not compress, so it is about 3 bytes per pixel."""
    import os

    buffer = io.BytesIO()
    Image.frombytes("RGB", (width, height), os.urandom(width * height * 3)).save(buffer, "PNG")
    return buffer.getvalue()


def tiff(colours: tuple[str, ...] = ("red", "green", "blue"), size: tuple[int, int] = (30, 20)
         ) -> bytes:
    frames = [Image.new("RGB", size, c) for c in colours]
    buffer = io.BytesIO()
    frames[0].save(buffer, "TIFF", save_all=True, append_images=frames[1:])
    return buffer.getvalue()


def rotated_jpeg(size: tuple[int, int] = (40, 20), orientation: int = 6) -> bytes:
    """A JPEG stored ``size`` wide whose EXIF says to rotate it (6: 90 degrees clockwise)."""
    picture = Image.new("RGB", size, "white")
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", exif=exif.tobytes())
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def png_bomb(side: int = 8000) -> bytes:
    """A valid greyscale PNG of side x side pixels, all black, a few dozen KiB compressed:
    decoding it would take side**2 bytes of memory."""
    compressor = zlib.compressobj(9)
    row = b"\x00" * (side + 1)  # filter byte + pixels
    parts = [compressor.compress(row) for _ in range(side)]
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", b"".join(parts))
            + _chunk(b"IEND", b""))


def corrupt_pdf() -> bytes:
    """Starts like a PDF, is not one."""
    return b"%PDF-1.7\n" + bytes(range(256)) * 8


def shifted_pdf(lines: Sequence[str], junk: bytes = b"\n\xa0\xa4\x03") -> bytes:
    """A one-page text PDF whose objects a cross-reference stream indexes, with ``junk`` before
    its header, so every offset is off by its length: pdfminer finds no catalog ('No /Root
    object!'), PDFium opens it (a mail gateway or an upload form leaves such bytes)."""
    content = b"BT /F1 14 Tf " + b" ".join(
        b"1 0 0 1 72 %d Tm (%s) Tj" % (720 - 24 * i, line.encode("latin-1"))
        for i, line in enumerate(lines)) + b" ET"
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
               b"/Resources << /Font << /F1 5 0 R >> >> >>",
               b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out = bytearray(b"%PDF-1.5\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref_at = len(out)
    entries = b"\x00" * 5 + b"\xff\xff" + b"".join(
        struct.pack(">BIH", 1, offset, 0) for offset in [*offsets, xref_at])
    out += (b"6 0 obj\n<< /Type /XRef /Size 7 /W [1 4 2] /Root 1 0 R /Length %d >>\nstream\n"
            % len(entries) + entries + b"\nendstream\nendobj\nstartxref\n%d\n%%%%EOF\n"
            % xref_at)
    return junk + bytes(out)


def truncated(body: bytes, keep: float = 0.5) -> bytes:
    return body[: int(len(body) * keep)]
