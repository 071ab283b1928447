"""Read a task's document into a ``DocumentLayout``: the words of each page and where they are.

Text and JSON have no layout (``None``). A PDF's text layer is read directly (exact, fast);
the pages without one (scans), and every page of an image (PNG, JPEG, TIFF frames), are
rendered and read by the ``document_ocr`` model on Triton through the decision service's
micro-batcher, one page per item, so pages of many tasks travel in one request. The text
layer is read with PDFium, the library ingest opened the PDF with, so a PDF ingest accepted
has its text layer read, structure PDFium repaired included (bytes before the header of a
file with cross-reference streams, a damaged cross-reference table); should the text layer
fail to read all the same, the pages are read as scans. A text page
that also carries a large picture with no text over it (a letterhead or a footer pasted in as
an image) has that picture OCRed too (only the picture's part of the rendered page: the rest
has its text layer), and the words read inside the picture join its text layer.

Failures keep their meaning for the engine: Triton away is ``ModelUnavailable`` (the tenant's
hold/unavailable policy applies, as for the other models), a full batcher is ``Overloaded``
(the caller retries), the blob store or database unreachable stays an ``OSError`` or asyncpg
error (transient), and a document that cannot be read at all is :class:`UnreadableDocument`
(a person decides).
"""

from __future__ import annotations

import asyncio
import io
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from PIL import Image

from switchyard.documents import (
    BlobIntegrityError,
    BlobNotFound,
    BlobStore,
    DocumentError,
    DocumentLimits,
    PdfPage,
    inspect,
    load_body,
    merge_picture_words,
    read_pdf_pages,
    render_page,
)
from switchyard.tasks import task_bucket
from switchyard.v1 import BoundingBox, DocumentLayout, LayoutPage, TaskEnvelope

__all__ = ["LAYOUT_CONTENT_TYPES", "DocumentReader", "ReadDocument", "UnreadableDocument",
           "page_images"]

log = logging.getLogger(__name__)
PDF = "application/pdf"
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/tiff"})
#: The content types that have pages (and so a layout).
LAYOUT_CONTENT_TYPES = frozenset({PDF, *IMAGE_TYPES})
#: The OCR engine shrinks larger pages to this longest side itself: sending more pixels
#: would only cost transfer.
OCR_MAX_SIDE_PX = 2000


class UnreadableDocument(Exception):
    """The document's bytes cannot be read (damaged beyond what ingest checks, a blob whose
    checksum does not match): no retry will help, a person decides."""


@dataclass(frozen=True)
class ReadDocument:
    """A document's layout and how much of it was read."""

    layout: DocumentLayout
    page_count: int          # pages the document has
    ocr_pages: int = 0       # pages OCRed: scans, and text pages with pictures of text

    @property
    def unread_pages(self) -> int:
        """Pages past the reading limit (``SWITCHYARD_OCR_MAX_PAGES``)."""
        return max(0, self.page_count - len(self.layout.pages))


def page_images(content_type: str, body: bytes, number: int, limits: DocumentLimits,
                areas: Sequence[BoundingBox] = ()) -> list[bytes]:
    """Page ``number`` (1-based) rendered once as PNG bytes for the OCR model (a PDF page at
    ``limits.render_dpi``), its longest side at most :data:`OCR_MAX_SIDE_PX`: the whole page,
    or with ``areas`` (shares of the page) each of those parts of it, at the same resolution:
    a picture on a text page costs the OCR its own pixels, not the page's (the text
    detector's time grows with the pixels, the recogniser's with the lines it finds)."""
    image = render_page(content_type, body, number, limits.render_dpi, limits)
    if image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    if max(image.size) > OCR_MAX_SIDE_PX:
        image.thumbnail((OCR_MAX_SIDE_PX, OCR_MAX_SIDE_PX))
    if not areas:
        return [_png(image)]
    width, height = image.size
    crops = []
    for area in areas:
        left, top = math.floor(area.x0 * width), math.floor(area.y0 * height)
        crops.append(_png(image.crop((left, top, max(left + 1, math.ceil(area.x1 * width)),
                                      max(top + 1, math.ceil(area.y1 * height))))))
    return crops


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    # the least compression: the bytes only cross loopback to Triton, and the default level
    # spent a twentieth of the decision service's CPU on the pages it sends
    image.save(out, format="PNG", compress_level=1)
    return out.getvalue()


class DocumentReader:
    """Turns a task's document into a layout: text layer first, OCR for the pages without.

    ``ocr`` reads one page image (PNG bytes) into a ``LayoutPage``: the decision service's
    micro-batcher in front of ``document_ocr`` (its ``submit``, which also takes the task's
    tenant and priority, for its fair queue). ``blobs`` is the blob store
    documents sent by reference are read from; ``limits`` the deployment's document limits
    (render resolution, pixels per page); ``max_pages`` the pages read.
    """

    def __init__(self, ocr: Callable[[bytes, str, int], Awaitable[LayoutPage]],
                 blobs: BlobStore | None,
                 limits: DocumentLimits | None = None, max_pages: int = 20) -> None:
        self._ocr = ocr
        self._blobs = blobs
        self.limits = limits or DocumentLimits()
        self.max_pages = max_pages

    async def read(self, task: TaskEnvelope) -> ReadDocument | None:
        """The layout of ``task``'s document, or None for text and JSON."""
        content_type = task.document.content_type
        if content_type not in LAYOUT_CONTENT_TYPES:
            return None
        try:
            body = await load_body(task.document, self._blobs)
        except (BlobIntegrityError, BlobNotFound) as exc:
            raise UnreadableDocument(f"the document's bytes cannot be loaded: {exc}") from exc
        page_count = task.document.page_count
        if not page_count:  # the Decide RPC takes documents ingest did not count
            try:
                page_count = (await asyncio.to_thread(inspect, content_type, body,
                                                      self.limits)).page_count
            except DocumentError as exc:
                raise UnreadableDocument(f"{exc.code}: {exc}") from exc
        scans = [PdfPage(None)] * min(page_count, self.max_pages)
        if content_type == PDF:
            try:
                read = await asyncio.to_thread(read_pdf_pages, body, self.max_pages)
            except Exception as exc:  # noqa: BLE001 - PDFium's and (Thai fonts) pdfminer's
                # PDFium counted its pages at ingest (or above): they are rendered and OCRed,
                # and a page PDFium cannot render either makes the document unreadable
                log.warning("task %s: the PDF's text layer cannot be read (%s: %s); its %d "
                            "pages are read as scans", task.task_id, type(exc).__name__, exc,
                            len(scans))
                read = scans
        else:
            read = scans
        found: list[LayoutPage | None] = [page.layout for page in read]
        # scans, and text pages with pictures that may hold text
        to_ocr = [number for number, page in enumerate(read, start=1)
                  if page.layout is None or page.pictures]
        scanned = await asyncio.gather(*(self._ocr_page(task, body, number, read[number - 1])
                                         for number in to_ocr))
        for number, ocr in zip(to_ocr, scanned):
            found[number - 1] = ocr
        pages = [page for page in found if page is not None]
        return ReadDocument(DocumentLayout(pages=pages), page_count, len(to_ocr))

    async def _ocr_page(self, task: TaskEnvelope, body: bytes, number: int,
                        page: PdfPage) -> LayoutPage:
        """Page ``number`` read: a scan all by OCR; a text page with its pictures' words
        (each picture OCRed alone, with a margin) merged into its text layer."""
        if page.layout is None:
            (image,) = await self._render(task, body, number, ())
            read = await self._read(task, image)
            read.number = number
            return read
        areas = [_with_margin(picture) for picture in page.pictures]
        images = await self._render(task, body, number, areas)
        pictured = await asyncio.gather(*(self._read(task, image) for image in images))
        words = LayoutPage()
        for area, read in zip(areas, pictured):
            words.words.extend(_onto_page(read, area).words)
        return merge_picture_words(page.layout, words, page.pictures)

    async def _render(self, task: TaskEnvelope, body: bytes, number: int,
                      areas: Sequence[BoundingBox]) -> list[bytes]:
        try:
            return await asyncio.to_thread(page_images, task.document.content_type, body,
                                           number, self.limits, areas)
        except Exception as exc:  # noqa: BLE001 - DocumentError, PDFium's and Pillow's errors
            raise UnreadableDocument(f"page {number} cannot be rendered: "
                                     f"{type(exc).__name__}: {exc}") from exc

    async def _read(self, task: TaskEnvelope, image: bytes) -> LayoutPage:
        """The OCR's words of ``image``, boxes in shares of it."""
        read = LayoutPage()
        read.CopyFrom(await self._ocr(image, task.tenant_id, task_bucket(task)))
        return read


#: Space kept around a picture when only it is OCRed, as a share of the page: the text
#: detector finds a line that touches the crop's edge less surely than one with white around it.
PICTURE_MARGIN = 0.01


def _with_margin(picture: BoundingBox) -> BoundingBox:
    return BoundingBox(x0=max(0.0, picture.x0 - PICTURE_MARGIN),
                       y0=max(0.0, picture.y0 - PICTURE_MARGIN),
                       x1=min(1.0, picture.x1 + PICTURE_MARGIN),
                       y1=min(1.0, picture.y1 + PICTURE_MARGIN))


def _onto_page(read: LayoutPage, area: BoundingBox) -> LayoutPage:
    """``read`` (the OCR of ``area`` alone, boxes in shares of the area) with its boxes in
    shares of the whole page."""
    width, height = area.x1 - area.x0, area.y1 - area.y0
    placed = LayoutPage()
    placed.CopyFrom(read)
    for word in placed.words:
        word.box.CopyFrom(BoundingBox(x0=area.x0 + word.box.x0 * width,
                                      y0=area.y0 + word.box.y0 * height,
                                      x1=area.x0 + word.box.x1 * width,
                                      y1=area.y0 + word.box.y1 * height))
    return placed
