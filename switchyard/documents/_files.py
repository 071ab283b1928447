"""What a submitted file is, checked before anything trusts it; its pages as images.

:func:`inspect` is the one gate every entry point (gRPC, REST, the Kafka intake, the decision
service's ``Decide``) passes a document through: it checks the bytes are what the declared
content type says (magic bytes), applies the deployment's limits (bytes, pages, pixels) and
opens the file the way a reader later will, so a decompression bomb, a truncated image or a
corrupt or password-protected PDF is refused at the door with a :class:`DocumentError` whose
``code`` says which, instead of failing (or exhausting memory) in a later stage. Nothing else
escapes it: any failure of the parsers is reported as ``corrupt``.

:func:`render_page` turns one page into a :class:`PIL.Image.Image`: PDF pages through PDFium
(pypdfium2), images through Pillow (TIFF frames as pages, JPEG EXIF orientation applied). OCR
and the review console both render through it, under the same pixel limit.

PDFium is not thread-safe, so every call into it holds one process-wide lock; callers may run
these functions in worker threads (they are CPU-bound and synchronous).
"""

from __future__ import annotations

import codecs
import io
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import Message
from typing import TYPE_CHECKING, Any

from PIL import Image, ImageOps, ImageSequence

from switchyard.documents._email import EMAIL, parse_email

if TYPE_CHECKING:
    from switchyard._settings import Settings

PDF = "application/pdf"
PNG = "image/png"
JPEG = "image/jpeg"
TIFF = "image/tiff"
TEXT = "text/plain"
JSON = "application/json"
#: Content types whose body is text: UTF-8, or the charset the type names (their size limit
#: is ``max_payload_bytes``).
TEXT_TYPES = (TEXT, JSON)
#: Content types whose body is a file with pages (their limits are the ``document_*`` ones).
FILE_TYPES = (PDF, PNG, JPEG, TIFF)
#: Content types that carry a document rather than being one: an e-mail is stored as the
#: document it carries (:func:`unpack_email`); its limit is ``document_max_bytes``.
MESSAGE_TYPES = (EMAIL,)
CONTENT_TYPES = TEXT_TYPES + FILE_TYPES + MESSAGE_TYPES
#: A message this long (characters of its own text) is the document itself, and a picture
#: attached to it an illustration of it (a ticket's screenshot); a shorter one is a cover
#: note, and a picture attached to it is the document (a photographed receipt). A PDF
#: attached is the document whatever the message says.
COVER_NOTE_CHARS = 600
#: An e-mail's headers and cover text kept as task metadata are cut to what a metadata value
#: may hold (``switchyard._submissions.MAX_METADATA_VALUE_CHARS``).
EMAIL_METADATA_CHARS = 1024
#: The metadata keys that hold an e-mail's content rather than its addressing: retention
#: purges them with the document's body and filename (``switchyard._retention``).
EMAIL_CONTENT_KEYS = ("email_subject", "email_text", "email_attachments")
MAX_JSON_DEPTH = 64

#: The codes of :class:`DocumentError`, each one specific kind of refusal.
ERROR_CODES = ("type_mismatch", "unsupported_type", "too_large", "too_many_pages",
               "too_many_pixels", "corrupt", "encrypted", "empty")

_PILLOW_FORMAT = {PNG: "PNG", JPEG: "JPEG", TIFF: "TIFF"}
_NAMES = {PDF: "a PDF", PNG: "a PNG image", JPEG: "a JPEG image", TIFF: "a TIFF image"}
# PDFium's FPDF_GetLastError() value for "password required or incorrect".
_FPDF_ERR_PASSWORD = 4
_PDFIUM = threading.Lock()


class DocumentError(ValueError):
    """A document refused, with a machine-readable ``code`` (one of :data:`ERROR_CODES`) and
    the field of ``Document`` that is wrong (``content_type`` or ``body``)."""

    def __init__(self, code: str, message: str) -> None:
        assert code in ERROR_CODES, code
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def field(self) -> str:
        """``content_type`` when the declared type is the problem, else ``body``."""
        return "content_type" if self.code == "unsupported_type" else "body"

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class DocumentLimits:
    """The deployment's limits on submitted documents (settings ``max_payload_bytes`` for
    text, ``document_max_*`` for files; see docs/settings.md)."""

    max_text_bytes: int = 256 * 1024
    max_bytes: int = 20 * 1024 * 1024
    max_pages: int = 30
    #: Per page, at ``render_dpi`` for PDFs (what OCR renders) and as stored for images.
    max_pixels: int = 40_000_000
    render_dpi: int = 200

    @classmethod
    def from_settings(cls, settings: Settings) -> DocumentLimits:
        return cls(max_text_bytes=settings.max_payload_bytes,
                   max_bytes=settings.document_max_bytes,
                   max_pages=settings.document_max_pages,
                   max_pixels=settings.document_max_pixels,
                   render_dpi=settings.document_render_dpi)


@dataclass(frozen=True)
class DocumentInfo:
    """What :func:`inspect` found: the normalised content type and the number of pages (0 for
    text and JSON, 1 for a PNG or JPEG, the pages of a PDF or frames of a TIFF)."""

    content_type: str
    page_count: int
    size_bytes: int


def normalise_content_type(content_type: str) -> str:
    """The content type as stored on envelopes: the media type without its parameters
    (``text/plain; charset=utf-8`` is ``text/plain``), trimmed, lower case, empty ->
    text/plain."""
    return content_type.split(";", 1)[0].strip().lower() or TEXT


#: The character sets a text or JSON document may declare (``text/plain;
#: charset=iso-8859-1``), as Python names their codecs (any alias Python knows is accepted:
#: ``latin1``, ``windows-1252``, ``Shift_JIS``). Ingest decodes the bytes with it and stores
#: UTF-8, so every later stage reads one encoding; undeclared, text is UTF-8.
TEXT_CHARSETS = frozenset({
    "utf-8", "utf-8-sig", "ascii", "utf-16", "utf-16-le", "utf-16-be",
    *(f"iso8859-{n}" for n in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16)),
    *(f"cp{n}" for n in (437, 850, 852, 866, 874, 932, 949, 950, 1250, 1251, 1252, 1253,
                         1254, 1255, 1256, 1257, 1258)),
    "koi8-r", "koi8-u", "mac-roman", "shift_jis", "euc_jp", "iso2022_jp", "gb2312", "gbk",
    "gb18030", "big5", "euc_kr",
})


def declared_charset(content_type: str) -> str | None:
    """The codec of the ``charset`` parameter of a content type (None when it names none),
    or :class:`DocumentError` ``unsupported_type`` for one that is not in
    :data:`TEXT_CHARSETS`."""
    if ";" not in content_type:
        return None
    header = Message()
    header["content-type"] = content_type
    value = header.get_param("charset")
    if value is None:
        return None
    name = str(value).strip().strip('"').lower()
    try:
        codec = codecs.lookup(name).name
    except LookupError:
        codec = ""
    if codec not in TEXT_CHARSETS:
        raise DocumentError("unsupported_type", f"unsupported charset {name[:40]!r}: UTF-8 "
                            "(the default), or an ISO 8859, Windows, UTF-16, KOI8, Mac Roman, "
                            "Shift_JIS, EUC, GB or Big5 character set")
    return codec


def as_stored(content_type: str, body: bytes) -> tuple[str, bytes]:
    """A checked document's content type and bytes as a task carries them (ingest's envelope,
    ``Decide``'s task): the bare media type, and text or JSON decoded with the charset its
    content type declares (checked by :func:`inspect` first) as UTF-8. An e-mail is stored as
    the document it carries, with its headers kept: :func:`unpack_email`, which
    ``switchyard.tasks.stored_document`` calls instead of this."""
    bare = normalise_content_type(content_type)
    charset = declared_charset(content_type) if bare in TEXT_TYPES else None
    if charset is None or charset in ("utf-8", "ascii"):
        return bare, body
    return bare, body.decode(charset).encode("utf-8")


#: PDF readers look for the ``%PDF-`` header anywhere in a file's first 1024 bytes (ISO
#: 32000-1's implementation notes; Acrobat, PDFium and pdfminer all do), so a PDF that a mail
#: gateway or a test harness prefixed with a few lines still opens everywhere.
PDF_HEADER_WINDOW = 1024


def sniff(body: bytes, declared: str = "") -> str | None:
    """The file type the bytes' signature says, or None when it is none of :data:`FILE_TYPES`.
    A file ``declared`` a PDF may carry its header past a prefix (:data:`PDF_HEADER_WINDOW`);
    other files are PDFs only when they start with it (a text quoting ``%PDF-`` is text)."""
    if body.startswith(b"%PDF-") or (declared == PDF and b"%PDF-" in body[:PDF_HEADER_WINDOW]):
        return PDF
    if body.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if body.startswith(b"\xff\xd8\xff"):
        return JPEG
    if body.startswith((b"II*\x00", b"MM\x00*")):
        return TIFF
    return None


def inspect(content_type: str, body: bytes, limits: DocumentLimits) -> DocumentInfo:
    """Check a submitted document; its :class:`DocumentInfo`, or :class:`DocumentError`.

    Never raises anything else, whatever the bytes: parser failures become ``corrupt``.
    """
    declared = normalise_content_type(content_type)
    if declared not in CONTENT_TYPES:
        raise DocumentError("unsupported_type", f"unsupported {content_type[:80]!r}; one of "
                                                f"{', '.join(CONTENT_TYPES)}")
    if not body:
        raise DocumentError("empty", "required (empty document)")
    if declared in TEXT_TYPES:
        return _inspect_text(declared, body, limits, declared_charset(content_type))
    if len(body) > limits.max_bytes:
        raise DocumentError("too_large", f"{len(body)} bytes exceeds the limit of "
                                         f"{limits.max_bytes} bytes")
    if declared == EMAIL:
        unpacked = unpack_email(body, limits)
        return DocumentInfo(unpacked.content_type, unpacked.page_count, len(body))
    actual = sniff(body, declared)
    if actual != declared:
        found = f"the bytes are {_NAMES[actual]}" if actual else "the bytes are not"
        raise DocumentError("type_mismatch", f"declared {declared} but {found}"
                                             + ("" if actual else f" {_NAMES[declared]}"))
    try:
        if declared == PDF:
            pages = _inspect_pdf(body, limits)
        else:
            pages = _inspect_image(declared, body, limits)
    except DocumentError:
        raise
    except Exception as exc:  # noqa: BLE001 - the contract: hostile bytes give a code
        raise DocumentError("corrupt", f"not a readable {declared} file "
                                       f"({type(exc).__name__}: {_said(exc)})") from None
    return DocumentInfo(declared, pages, len(body))


def _said(exc: Exception) -> str:
    """What a parser's error says, without the Python object names some of them quote
    (Pillow's ``cannot identify image file <_io.BytesIO object at 0x7f…>``): a client
    reads it."""
    return re.sub(r" ?<[\w.]+ object at 0x[0-9a-fA-F]+>", "", str(exc))[:200]


def _inspect_text(declared: str, body: bytes, limits: DocumentLimits,
                  charset: str | None = None) -> DocumentInfo:
    if len(body) > limits.max_text_bytes:
        raise DocumentError("too_large", f"{len(body)} bytes exceeds the limit of "
                                         f"{limits.max_text_bytes} bytes")
    actual = sniff(body)
    if actual is not None:
        raise DocumentError("type_mismatch", f"declared {declared} but the bytes are "
                                             f"{_NAMES[actual]}; send it as {actual}")
    try:
        text = body.decode(charset or "utf-8")
    except UnicodeDecodeError as exc:
        if charset is not None:
            raise DocumentError("corrupt", f"not valid {charset} ({exc.reason} at byte "
                                           f"{exc.start})") from None
        raise DocumentError("corrupt", f"not valid UTF-8 ({exc.reason} at byte {exc.start}); "
                                       "text in another encoding declares it in content_type "
                                       f"({declared}; charset=iso-8859-1)") from None
    if declared == JSON:
        problem = json_problem(text)
        if problem:
            raise DocumentError("corrupt", problem)
    return DocumentInfo(declared, 0, len(body))


def json_problem(text: str) -> str | None:
    """Why ``text`` is not acceptable JSON, or None. Depth is checked before parsing so a
    hostile document cannot exhaust the parser's recursion."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_JSON_DEPTH:
                return f"JSON nested deeper than {MAX_JSON_DEPTH} levels"
        elif char in "]}":
            depth -= 1
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        # (json's "Invalid control character at" ends in "at" of its own)
        return (f"malformed JSON: {exc.msg.removesuffix(' at')} at line {exc.lineno} "
                f"column {exc.colno}")
    except ValueError as exc:  # e.g. an integer literal longer than Python converts
        return f"malformed JSON: {exc}"
    return None


# -- PDF --------------------------------------------------------------------------------------

@contextmanager
def open_pdf(body: bytes) -> Iterator[Any]:
    """A PDFium document over ``body`` (held under the PDFium lock), or DocumentError
    ``encrypted``/``corrupt``."""
    import pypdfium2 as pdfium

    with _PDFIUM:
        try:
            pdf = pdfium.PdfDocument(body)
        except pdfium.PdfiumError as exc:
            if getattr(exc, "err_code", None) == _FPDF_ERR_PASSWORD:
                raise DocumentError("encrypted", "the PDF is password-protected; submit it "
                                                 "without a password") from None
            raise DocumentError("corrupt", f"not a readable PDF ({exc})") from None
        try:
            yield pdf
        finally:
            pdf.close()


def _pixels(width_pt: float, height_pt: float, dpi: float) -> int:
    return int(width_pt * dpi / 72) * int(height_pt * dpi / 72)


def _inspect_pdf(body: bytes, limits: DocumentLimits) -> int:
    with open_pdf(body) as pdf:
        pages = len(pdf)
        if pages == 0:
            raise DocumentError("empty", "the PDF has no pages")
        if pages > limits.max_pages:
            raise DocumentError("too_many_pages", f"{pages} pages exceeds the limit of "
                                                  f"{limits.max_pages} pages")
        for index in range(pages):
            width, height = pdf.get_page_size(index)
            pixels = _pixels(width, height, limits.render_dpi)
            if pixels > limits.max_pixels:
                raise DocumentError(
                    "too_many_pixels", f"page {index + 1} is {width:.0f}x{height:.0f} pt, "
                    f"{pixels} pixels at {limits.render_dpi} dpi; the limit is "
                    f"{limits.max_pixels} pixels per page")
            page = pdf[index]  # a page whose objects do not parse fails here
            page.close()
        return pages


# -- images -----------------------------------------------------------------------------------

@contextmanager
def _open_image(content_type: str, body: bytes, limits: DocumentLimits) -> Iterator[Any]:
    """Pillow's image over ``body``, only as the declared format; the pixel limit is checked
    against the header before any pixel is decoded."""
    # Our limit is checked by the callers; Pillow's own bomb guard stays on as a second line
    # (warnings are left alone: catch_warnings is not thread-safe, and these run in threads).
    try:
        image = Image.open(io.BytesIO(body), formats=[_PILLOW_FORMAT[content_type]])
    except Image.DecompressionBombError as exc:
        raise DocumentError("too_many_pixels", f"the image is a decompression bomb "
                            f"({exc})") from None
    with image:
        yield image


def _check_frame(image: Any, frame: int, limits: DocumentLimits) -> None:
    width, height = image.size
    if width <= 0 or height <= 0:
        raise DocumentError("corrupt", f"page {frame} has no pixels ({width}x{height})")
    if width * height > limits.max_pixels:
        raise DocumentError("too_many_pixels", f"page {frame} is {width}x{height} = "
                                               f"{width * height} pixels; the limit is "
                                               f"{limits.max_pixels} pixels per page")


def _inspect_image(content_type: str, body: bytes, limits: DocumentLimits) -> int:
    with _open_image(content_type, body, limits) as image:
        frames = getattr(image, "n_frames", 1) if content_type == TIFF else 1
        if frames > limits.max_pages:
            raise DocumentError("too_many_pages", f"{frames} pages exceeds the limit of "
                                                  f"{limits.max_pages} pages")
        for frame in range(frames):
            if frame:
                image.seek(frame)
            _check_frame(image, frame + 1, limits)
            image.load()  # decodes every pixel: a truncated file fails here, not in OCR
        return frames


# -- e-mail -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class UnpackedEmail:
    """The document an e-mail carries, as a task stores it, and what to keep of the e-mail.

    ``metadata`` holds the headers (``email_from``, ``email_to``, ``email_cc``,
    ``email_date``, ``email_subject``, ``email_message_id``), and, when the document is what
    it carries, the message's own text (``email_text``) and the attachments' names
    (``email_attachments``), each cut to :data:`EMAIL_METADATA_CHARS`."""

    content_type: str
    body: bytes
    filename: str
    page_count: int
    metadata: dict[str, str]


def unpack_email(body: bytes, limits: DocumentLimits | None = None) -> UnpackedEmail:
    """The document an e-mail (``message/rfc822``) carries, or :class:`DocumentError`.

    The PDFs it carries are the document, and so are its attached pictures when its own text
    is a cover note (:data:`COVER_NOTE_CHARS`); one file is stored as it is, several as one
    PDF, their pages in the order attached (a picture as a page at ``render_dpi``, so OCR
    sees its pixels as sent). A message that carries none is the document itself: text, its
    headers first (From, To, Cc, Date, Subject), then its body (an HTML body as its words)
    and messages forwarded with it; pictures shown inside it (logos) and files of other types
    are named, not read. With ``limits``, each file is checked as :func:`inspect` checks a
    submitted one, and the stored document too."""
    actual = sniff(body)
    if actual is not None:
        raise DocumentError("type_mismatch", f"declared {EMAIL} but the bytes are "
                                             f"{_NAMES[actual]}; send it as {actual}")
    try:
        parsed = parse_email(body)
    except Exception as exc:  # noqa: BLE001 - the contract: hostile bytes give a code
        raise DocumentError("corrupt", f"not a readable e-mail ({type(exc).__name__}: "
                                       f"{_said(exc)})") from None
    if not parsed.headers:
        raise DocumentError("corrupt", "not an e-mail: it has none of the headers From, To, "
                                       "Date, Subject or Message-ID")
    metadata = {f"email_{name.replace('-', '_')}": value[:EMAIL_METADATA_CHARS]
                for name, value in parsed.headers.items()}
    cover_note = len(parsed.body) <= COVER_NOTE_CHARS
    files: list[tuple[str, str, bytes]] = []
    unread: list[str] = []
    for attached in parsed.attachments:
        kind = sniff(attached.data, PDF if attached.declared_type == PDF
                     or attached.name.lower().endswith(".pdf") else "")
        if kind == PDF or (kind in FILE_TYPES and cover_note and not attached.inline):
            files.append((attached.name or f"attachment {len(files) + 1}", kind,
                          attached.data))
        elif not attached.inline:
            unread.append(attached.name or attached.declared_type)
    if not files:
        text = parsed.text + (f"\n[attached, not read: {', '.join(unread)}]\n"
                              if unread else "")
        if not parsed.body.strip() and not unread:
            raise DocumentError("empty", "the e-mail has no text and carries no PDF or "
                                         "picture")
        data = text.encode()
        if limits is not None:
            _inspect_text(TEXT, data, limits)
        return UnpackedEmail(TEXT, data, "", 0, metadata)
    metadata["email_text"] = parsed.text[:EMAIL_METADATA_CHARS]
    metadata["email_attachments"] = ", ".join(name for name, _, _ in files)[
        :EMAIL_METADATA_CHARS]
    pages = 0
    if limits is not None:
        for name, kind, data in files:
            try:
                pages += inspect(kind, data, limits).page_count
            except DocumentError as exc:
                raise DocumentError(exc.code, f"attachment {name[:80]!r}: {exc.message}"
                                    ) from None
    if len(files) == 1:
        name, kind, data = files[0]
        return UnpackedEmail(kind, data, name, pages, metadata)
    try:
        merged = _merged_pdf(files, (limits or DocumentLimits()).render_dpi)
    except Exception as exc:  # noqa: BLE001 - as inspect: a code, never a parser's error
        raise DocumentError("corrupt", f"the attachments cannot be joined into one PDF "
                                       f"({type(exc).__name__}: {_said(exc)})") from None
    if limits is not None:
        pages = inspect(PDF, merged, limits).page_count
    return UnpackedEmail(PDF, merged, "", pages, metadata)


def _picture_pdf(kind: str, data: bytes, dpi: int) -> bytes:
    """A picture (every frame of a TIFF) as a PDF whose pages render back at ``dpi`` to the
    picture's own pixels."""
    with Image.open(io.BytesIO(data), formats=[_PILLOW_FORMAT[kind]]) as image:
        frames = [(ImageOps.exif_transpose(frame) or frame).convert("RGB")
                  for frame in ImageSequence.Iterator(image)]
    out = io.BytesIO()
    frames[0].save(out, format="PDF", resolution=dpi, save_all=True,
                   append_images=frames[1:])
    return out.getvalue()


def _merged_pdf(files: list[tuple[str, str, bytes]], dpi: int) -> bytes:
    """Several files as one PDF, their pages in order."""
    import pypdfium2 as pdfium

    parts = [data if kind == PDF else _picture_pdf(kind, data, dpi) for _, kind, data in files]
    with _PDFIUM:
        merged = pdfium.PdfDocument.new()
        try:
            for part in parts:
                source = pdfium.PdfDocument(part)
                try:
                    merged.import_pages(source)
                finally:
                    source.close()
            out = io.BytesIO()
            merged.save(out)
        finally:
            merged.close()
    return out.getvalue()


# -- rendering --------------------------------------------------------------------------------

def render_page(content_type: str, body: bytes, page_number: int, dpi: int = 200,
                limits: DocumentLimits | None = None) -> Image.Image:
    """Page ``page_number`` (1-based) of a file document as an RGB image.

    PDF pages are rendered at ``dpi``; image pages come at their own resolution (``dpi`` does
    not apply), TIFF frames as pages, rotated as their EXIF orientation says. Raises
    :class:`DocumentError` (``too_many_pixels`` above ``limits.max_pixels``, ``corrupt``,
    ``unsupported_type`` for text) and IndexError for a page the document does not have.
    """
    limits = limits or DocumentLimits()
    declared = normalise_content_type(content_type)
    if declared not in FILE_TYPES:
        raise DocumentError("unsupported_type", f"{declared} has no pages to render")
    if not 0 < dpi <= 1200:
        raise ValueError(f"dpi {dpi} outside 1..1200")
    try:
        if declared == PDF:
            return _render_pdf(body, page_number, dpi, limits)
        return _render_image(declared, body, page_number, limits)
    except (DocumentError, IndexError):
        raise
    except Exception as exc:  # noqa: BLE001 - as inspect: a code, never a parser's error
        raise DocumentError("corrupt", f"cannot render page {page_number} of the "
                                       f"{declared} ({type(exc).__name__}: "
                                       f"{_said(exc)})") from None


def _render_pdf(body: bytes, page_number: int, dpi: int, limits: DocumentLimits
                ) -> Image.Image:
    with open_pdf(body) as pdf:
        if not 1 <= page_number <= len(pdf):
            raise IndexError(f"page {page_number} of a {len(pdf)}-page PDF")
        width, height = pdf.get_page_size(page_number - 1)
        pixels = _pixels(width, height, dpi)
        if pixels > limits.max_pixels:
            raise DocumentError("too_many_pixels", f"page {page_number} at {dpi} dpi is "
                                                   f"{pixels} pixels; the limit is "
                                                   f"{limits.max_pixels}")
        page = pdf[page_number - 1]
        try:
            bitmap = page.render(scale=dpi / 72, rotation=0)
            try:
                return bitmap.to_pil().convert("RGB")
            finally:
                bitmap.close()
        finally:
            page.close()


def _render_image(content_type: str, body: bytes, page_number: int, limits: DocumentLimits
                  ) -> Image.Image:
    with _open_image(content_type, body, limits) as image:
        frames = getattr(image, "n_frames", 1) if content_type == TIFF else 1
        if not 1 <= page_number <= frames:
            raise IndexError(f"page {page_number} of a {frames}-page image")
        if page_number > 1:
            image.seek(page_number - 1)
        _check_frame(image, page_number, limits)
        image.load()
        upright = ImageOps.exif_transpose(image)
        return (upright or image).convert("RGB")


__all__ = ["CONTENT_TYPES", "COVER_NOTE_CHARS", "EMAIL_CONTENT_KEYS", "EMAIL_METADATA_CHARS",
           "ERROR_CODES",
           "FILE_TYPES", "JPEG", "JSON", "MAX_JSON_DEPTH", "MESSAGE_TYPES", "PDF",
           "PNG", "TEXT", "TEXT_TYPES", "TIFF", "DocumentError", "DocumentInfo",
           "DocumentLimits", "TEXT_CHARSETS", "UnpackedEmail", "as_stored", "inspect",
           "json_problem", "normalise_content_type", "render_page", "sniff", "unpack_email"]
