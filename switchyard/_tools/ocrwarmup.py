"""Write ``models/repository/document_ocr/warmup/page``: the page Triton reads the OCR model
with before it reports the model ready (``model_warmup`` in its ``config.pbtxt``).

A warm-up sample must exercise what a first request would: onnxruntime builds and sizes its
detection, classification and recognition sessions on their first run, so the sample is a
real page with printed text, not zeros (which the model would refuse as an undecodable
image). The file holds one element of a TYPE_STRING tensor as Triton serialises it
(tritonclient's ``serialize_byte_tensor``: a 4-byte little-endian length, then the PNG).

Run ``python -m switchyard._tools.ocrwarmup`` after changing the page; the file is tracked.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from tritonclient.utils import serialize_byte_tensor

TARGET = Path(__file__).resolve().parents[2] / "models" / "repository" / "document_ocr" \
    / "warmup" / "page"
LINES = ("INVOICE No. 42", "Total due: EUR 1,200.00")


def page_png() -> bytes:
    """A small grey page with two printed lines."""
    image = Image.new("L", (480, 120), 255)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=28)
    for row, line in enumerate(LINES):
        draw.text((16, 20 + 44 * row), line, fill=0, font=font)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def string_tensor_element(blob: bytes) -> bytes:
    """``blob`` as one serialised TYPE_STRING element (what ``input_data_file`` holds)."""
    return bytes(serialize_byte_tensor(np.array([blob], dtype=np.object_)).item())


def main() -> None:
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    TARGET.write_bytes(string_tensor_element(page_png()))
    print(f"wrote {TARGET}")


if __name__ == "__main__":
    main()
