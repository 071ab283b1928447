"""Page images for the review console: one page of an item's document as a PNG, with the
boxes of personal data painted over on the server, so a masked value never reaches the
browser (hiding it with CSS would only hide it from the eyes).

The bytes come through :func:`switchyard.documents.load_body` (inline, or from the blob
store when the task travelled by reference) and the page through
:func:`switchyard.documents.render_page`, the same renderer OCR reads, so the boxes of the
layout fall on the same pixels.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Sequence

from PIL import Image, ImageDraw

from switchyard.documents import BlobStore, DocumentLimits, load_body, render_page
from switchyard.v1 import BoundingBox, Document

__all__ = ["MASK_COLOUR", "PAGE_DPI", "mask", "page_png"]

#: The resolution pages are rendered at for the console: readable on a screen at 100%
#: zoom without making the PNG of a full A4 page much larger than about 1 MB.
PAGE_DPI = 110
#: What a masked box is painted with (opaque).
MASK_COLOUR = (0, 0, 0)


def mask(image: Image.Image, boxes: Sequence[BoundingBox]) -> Image.Image:
    """``image`` as RGB with every box (fractions of the page) filled opaque."""
    out = image.convert("RGB")
    draw = ImageDraw.Draw(out)
    width, height = out.size
    for box in boxes:
        draw.rectangle((box.x0 * width, box.y0 * height, box.x1 * width, box.y1 * height),
                       fill=MASK_COLOUR)
    return out


def _png(content_type: str, body: bytes, page_number: int, boxes: Sequence[BoundingBox],
         limits: DocumentLimits) -> bytes:
    image = mask(render_page(content_type, body, page_number, PAGE_DPI, limits), boxes)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


async def page_png(document: Document, store: BlobStore | None, page_number: int,
                   boxes: Sequence[BoundingBox], limits: DocumentLimits) -> bytes:
    """Page ``page_number`` (1-based) of ``document`` as a PNG with ``boxes`` masked.

    Raises what :func:`load_body` and :func:`render_page` raise (``BlobError``,
    ``DocumentError``, ``IndexError`` for a page the file does not have). Rendering is CPU
    work: it runs in a worker thread so the console keeps serving."""
    body = await load_body(document, store)
    return await asyncio.to_thread(_png, document.content_type, body, page_number, boxes,
                                   limits)
