"""Documents: what Switchyard reads from PDFs and images, shared by the services.

``_layout`` reads a DocumentLayout (words with boxes, from a PDF's text layer or OCR): lines,
the reading-order text the router sees, labels and the values next to them, tables, and the
provenance of an extracted value. Imports no service.
"""

from switchyard.documents._layout import (
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
)

__all__ = [
    "LabelValue", "Line", "PageWord", "Table", "find_labels", "find_table", "find_words",
    "label_value", "label_values", "layout_from_text", "layout_text", "lines", "page_lines", "page_words",
    "provenance_of",
]
