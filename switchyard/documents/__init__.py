"""Documents: what a submitted file is, where its bytes live, and what its pages say.

Imports no service. Each module's public names are re-exported here:

* ``_files`` -- :func:`inspect` (the gate every entry point passes a document through: type,
  limits, whether it opens), :func:`render_page` (a page as an image, for OCR and the review
  console), :class:`DocumentError` with its specific codes, :class:`DocumentLimits`;
* ``_email`` -- :func:`parse_email`: an e-mail's headers, text and attachments (what
  :func:`unpack_email` in ``_files`` stores as the document it carries);
* ``_blobs`` -- the claim check: :class:`BlobStore` (PostgreSQL or S3, sealed with the
  payload codec), :func:`blob_store_for`, and :func:`load_body`, how every reader gets a
  document's bytes;
* ``_text_layer`` -- :func:`read_text_layer` (a PDF's words with positions, read from
  PDFium's glyphs; ``None`` for a scanned page), :func:`read_pdf_pages` (the same with each page's pictures that may be
  pictures of text), :func:`merge_picture_words` (their OCR words added to the page) and
  :func:`reading_order`;
* ``_bidi`` -- right-to-left words (Arabic, Hebrew) read in order: :func:`logical_text` for a
  word's letters, :func:`logical_order` for a line's words;
* ``_layout`` -- reading a DocumentLayout (words with boxes, from a PDF's text layer or OCR):
  lines, the reading-order text the router sees, labels and the values next to them, tables,
  and the provenance of an extracted value.
"""

from switchyard.documents._blobs import (
    STORES,
    BlobError,
    BlobIntegrityError,
    BlobNotFound,
    BlobStore,
    PostgresBlobStore,
    S3BlobStore,
    blob_store_for,
    check_in,
    load_body,
)
from switchyard.documents._email import EMAIL, ParsedEmail, html_text, parse_email
from switchyard.documents._files import (
    CONTENT_TYPES,
    COVER_NOTE_CHARS,
    EMAIL_CONTENT_KEYS,
    ERROR_CODES,
    FILE_TYPES,
    MESSAGE_TYPES,
    TEXT_CHARSETS,
    TEXT_TYPES,
    DocumentError,
    DocumentInfo,
    DocumentLimits,
    UnpackedEmail,
    as_stored,
    inspect,
    normalise_content_type,
    render_page,
    sniff,
    unpack_email,
)
from switchyard.documents._layout import (
    COLUMN_GAP_HEIGHTS,
    LabelValue,
    Line,
    PageWord,
    Table,
    find_labels,
    find_table,
    find_words,
    label_value,
    label_values,
    layout_from_text,
    layout_text,
    lines,
    page_lines,
    page_words,
    provenance_of,
    unaccented,
)
from switchyard.documents._bidi import is_right_to_left, logical_order, logical_text
from switchyard.documents._text_layer import (
    MIN_PICTURE_AREA,
    MIN_TEXT_LAYER_CHARS,
    PdfPage,
    merge_picture_words,
    read_pdf_pages,
    read_text_layer,
    reading_order,
    unique_glyphs,
)

__all__ = [
    # _files
    "CONTENT_TYPES", "COVER_NOTE_CHARS", "EMAIL_CONTENT_KEYS", "ERROR_CODES", "FILE_TYPES", "MESSAGE_TYPES",
    "TEXT_CHARSETS", "TEXT_TYPES", "DocumentError", "DocumentInfo", "DocumentLimits",
    "UnpackedEmail", "as_stored", "inspect", "normalise_content_type", "render_page", "sniff",
    "unpack_email",
    # _email
    "EMAIL", "ParsedEmail", "html_text", "parse_email",
    # _blobs
    "STORES", "BlobError", "BlobIntegrityError", "BlobNotFound", "BlobStore",
    "PostgresBlobStore", "S3BlobStore", "blob_store_for", "check_in", "load_body",
    # _bidi
    "is_right_to_left", "logical_order", "logical_text",
    # _text_layer
    "MIN_PICTURE_AREA", "MIN_TEXT_LAYER_CHARS", "PdfPage", "merge_picture_words",
    "read_pdf_pages", "read_text_layer", "reading_order", "unique_glyphs",
    # _layout
    "COLUMN_GAP_HEIGHTS", "LabelValue", "Line", "PageWord", "Table", "find_labels", "find_table", "find_words",
    "label_value", "label_values", "layout_from_text", "layout_text", "lines", "page_lines",
    "page_words", "provenance_of", "unaccented",
]
