"""Documents: PDFs and images as Switchyard reads them (shared by ingest, decision, review)."""

from switchyard.documents._text_layer import MIN_TEXT_LAYER_CHARS, read_text_layer, reading_order

__all__ = ["MIN_TEXT_LAYER_CHARS", "read_text_layer", "reading_order"]
