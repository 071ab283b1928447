"""Text-layer benchmark: CPU a PDF page costs the decision service's reader, against pdfminer.

``python -m bench.text_layer_bench [--corpus DIR] [--max-pages N]`` reads every PDF of the
corpus (default ``bench/outside``: documents nobody here generated) two ways in one process,
alternating per document so the machine's noise falls on both alike:

1. ``switchyard.documents.read_pdf_pages``: what the decision service runs (PDFium's glyphs,
   pdfplumber's word extractor, pdfminer only for pages whose fonts lack a ToUnicode map);
2. the baseline: pdfplumber reading each page's characters through pdfminer and extracting
   its words (the reader before PDFium read the glyphs).

It prints CPU milliseconds per page for each (process time, single thread), the ratio, and
how many pages each found a text layer on, and writes ``bench/results/text_layer.json``. No
stack, no models: the reader is plain code.
"""

from __future__ import annotations

import argparse
import io
import logging
import sys
import time
from pathlib import Path
from typing import Any

from bench._common import RESULTS, print_table, quick_mode, write_json
from switchyard.documents import MIN_TEXT_LAYER_CHARS, read_pdf_pages

OUTSIDE = Path(__file__).resolve().parent / "outside"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", type=Path, default=OUTSIDE, help="a folder of PDFs (recursive)")
    p.add_argument("--max-pages", type=int, default=20, help="pages read per document")
    p.add_argument("--rounds", type=int, default=2, help="times each document is read each way")
    p.add_argument("--quick", action="store_true", help="the first 20 documents, one round")
    p.add_argument("--json", type=Path, default=RESULTS / "text_layer.json")
    return p


def pdfminer_pages(body: bytes, max_pages: int) -> int:
    """The baseline: pdfplumber's words for each page (pdfminer parses the page); returns the
    pages with a text layer (as many letters and digits as the reader requires)."""
    import pdfplumber

    found = 0
    with pdfplumber.open(io.BytesIO(body)) as pdf:
        for page in pdf.pages[:max_pages]:
            try:
                words = page.extract_words(keep_blank_chars=False, x_tolerance_ratio=0.2)
                found += sum(ch.isalnum() for w in words for ch in w["text"]) >= \
                    MIN_TEXT_LAYER_CHARS
            finally:
                page.close()
    return found


def reader_pages(body: bytes, max_pages: int) -> int:
    return sum(page.layout is not None for page in read_pdf_pages(body, max_pages))


def measure(paths: list[Path], max_pages: int, rounds: int) -> dict[str, Any]:
    import pypdfium2 as pdfium

    cpu = {"reader": 0.0, "pdfminer": 0.0}
    text_pages = {"reader": 0, "pdfminer": 0}
    refused = {"reader": 0, "pdfminer": 0}
    pages = 0
    for path in paths:
        body = path.read_bytes()
        try:
            with pdfium.PdfDocument(body) as document:
                count = min(len(document), max_pages)
        except pdfium.PdfiumError:
            continue  # ingest refuses it: no reader sees it
        pages += count * rounds
        for _ in range(rounds):
            for name, read in (("reader", reader_pages), ("pdfminer", pdfminer_pages)):
                began = time.process_time()
                try:
                    text_pages[name] += read(body, max_pages)
                except Exception:  # noqa: BLE001 - a reader's refusal is counted, not fatal
                    refused[name] += 1
                cpu[name] += time.process_time() - began
    per_page = {name: 1000 * seconds / max(pages, 1) for name, seconds in cpu.items()}
    return {"documents": len(paths), "pages": pages // rounds, "rounds": rounds,
            "cpu_ms_per_page": {k: round(v, 2) for k, v in per_page.items()},
            "pdfminer_over_reader": round(per_page["pdfminer"] / max(per_page["reader"], 1e-9),
                                          2),
            "text_layer_pages": {k: v // rounds for k, v in text_pages.items()},
            "documents_refused": {k: v // rounds for k, v in refused.items()}}


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.disable(logging.WARNING)  # pdfminer's complaints about the damaged files
    paths = sorted(args.corpus.rglob("*.pdf"))
    if quick_mode(args.quick):
        paths, args.rounds = paths[:20], 1
    if not paths:
        print(f"no PDFs under {args.corpus}", file=sys.stderr)
        return 2
    result = measure(paths, args.max_pages, args.rounds)
    print_table(f"text layer: {result['documents']} documents, {result['pages']} pages, "
                f"{result['rounds']} rounds",
                ["reader", "CPU ms a page", "pages with a text layer", "documents refused"],
                [[name, result["cpu_ms_per_page"][name], result["text_layer_pages"][name],
                  result["documents_refused"][name]] for name in ("reader", "pdfminer")])
    print(f"pdfminer / reader: x{result['pdfminer_over_reader']}")
    write_json(args.json, {"benchmark": "text_layer", **result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
