"""OCR benchmark: pages per second through ``document_ocr`` on Triton, batched vs one page per
request.

``python -m bench.ocr_bench [--pages N] [--batch B] [--gpu]`` starts Triton alone (the
combined ``python -m bench`` run reuses its stack) and reads the same seeded invoice-like pages
(A4 at 150 dpi, rendered with Pillow) three ways with the decision service's own client:

1. one page per request, one request at a time -- no batching anywhere;
2. the decision service's way: every page submitted at once as a single item to a
   ``MicroBatcher`` of up to ``--batch`` pages per request (pages of many tasks share a
   request);
3. client batches of ``--batch`` pages, one request at a time.

It prints pages/s for each and the batching gain (2 / 1), and writes
``bench/results/ocr.json``. ``--gpu`` serves the model with ``instance_group`` KIND_GPU (as the
chart does on GPU nodes): onnxruntime then uses CUDA when the installed build has it
(``onnxruntime-gpu``); otherwise the figures are the CPU's, and the model's log says so.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench._common import RESULTS, print_table, quick_mode, write_json
from services.decision.batcher import MicroBatcher
from services.decision.pools import new_breaker
from services.decision.triton import OcrClient
from switchyard import Settings
from switchyard.stack import EmbeddedStack, with_free_ports

MODELS = Path(__file__).resolve().parents[1] / "models" / "repository"
PAGE_PX = (1240, 1754)  # A4 at 150 dpi


def pages(n: int, seed: int = 7) -> list[bytes]:
    """``n`` seeded invoice-like pages as PNG bytes: a header, parties, line items, totals."""
    from PIL import Image, ImageDraw, ImageFont

    rng = random.Random(seed)
    font = ImageFont.load_default(size=28)
    out = []
    for i in range(n):
        page = Image.new("RGB", PAGE_PX, "white")
        draw = ImageDraw.Draw(page)
        lines = [f"INVOICE INV-{rng.randint(1000, 9999)}",
                 f"Date: 2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                 f"Vendor: {rng.choice(['Acme Supplies', 'Nordic Paper', 'Blue Harbor'])} Ltd",
                 "Bill to: Switchyard Logistics, 12 Rail Street", ""]
        for _ in range(rng.randint(5, 10)):
            qty, price = rng.randint(1, 20), rng.randint(100, 99999) / 100
            lines.append(f"{rng.choice(['Paper A4', 'Toner', 'Pallets', 'Labels'])}"
                         f"   {qty}   {price:.2f}   {qty * price:.2f}")
        lines += ["", f"Total due: {rng.randint(1000, 999999) / 100:.2f} EUR",
                  f"IBAN DE{rng.randint(10**19, 10**20 - 1)}"]
        for row, text in enumerate(lines):
            draw.text((110, 120 + row * 60), text, fill="black", font=font)
        buf = io.BytesIO()
        page.save(buf, format="PNG")
        out.append(buf.getvalue())
        del i
    return out


async def measure(url: str, images: Sequence[bytes], batch: int) -> dict[str, float]:
    client = OcrClient(url, 600, new_breaker("bench-ocr", 1000, 1), "1")
    await client.load_metadata()
    results: dict[str, float] = {}
    try:
        await client.read(images[:1])  # warm-up: sessions, allocations
        started = time.perf_counter()
        for image in images:
            await client.read([image])
        results["one_page_per_request"] = len(images) / (time.perf_counter() - started)

        batcher: MicroBatcher[bytes, Any] = MicroBatcher("bench-ocr", client.read, batch,
                                                         0.005, 10_000)
        await batcher.start()
        try:
            started = time.perf_counter()
            await asyncio.gather(*(batcher.submit(image) for image in images))
            results["micro_batcher"] = len(images) / (time.perf_counter() - started)
        finally:
            await batcher.stop()

        started = time.perf_counter()
        for start in range(0, len(images), batch):
            await client.read(images[start:start + batch])
        results["client_batches"] = len(images) / (time.perf_counter() - started)
    finally:
        await client.close()
    return results


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pages", type=int, default=0, help="pages per measurement (16; quick 4)")
    p.add_argument("--batch", type=int, default=8, help="pages per batched request")
    p.add_argument("--gpu", action="store_true", help="serve the model with KIND_GPU")
    p.add_argument("--quick", action="store_true", help="short smoke run (or BENCH_QUICK=1)")
    p.add_argument("--json", type=Path, default=RESULTS / "ocr.json")
    return p


def configure(args: argparse.Namespace) -> argparse.Namespace:
    args.pages = args.pages or (4 if quick_mode(args.quick) else 16)
    return args


def run(s: Settings, state: Path, args: argparse.Namespace, json_path: Path) -> dict[str, Any]:
    """Every measurement against the running Triton of ``s``."""
    del state
    images = pages(args.pages)
    print(f"OCR: {len(images)} pages of {PAGE_PX[0]}x{PAGE_PX[1]} px ...", file=sys.stderr)
    rates = asyncio.run(measure(s.triton_url, images, args.batch))
    gain = rates["micro_batcher"] / rates["one_page_per_request"]
    print_table(f"document_ocr, pages/s ({'GPU' if args.gpu else 'CPU'} instance)",
                ["path", "pages/s", "vs one page per request"],
                [[name, rate, rate / rates["one_page_per_request"]]
                 for name, rate in rates.items()])
    print(f"batching gain (micro-batcher vs one page per request): {gain:.2f}x")
    data = {"pages": len(images), "page_px": list(PAGE_PX), "batch": args.batch,
            "instance": "gpu" if args.gpu else "cpu", "pages_per_s": rates,
            "batching_gain": gain}
    write_json(json_path, data)
    return data


def _repository(tmp: Path, gpu: bool) -> Path:
    """A repository holding document_ocr only (KIND_GPU when ``gpu``)."""
    repo = tmp / "repository"
    shutil.copytree(MODELS / "document_ocr", repo / "document_ocr",
                    ignore=shutil.ignore_patterns("__pycache__"))
    if gpu:
        config = repo / "document_ocr" / "config.pbtxt"
        config.write_text(config.read_text().replace("KIND_CPU", "KIND_GPU"))
    return repo


def main(argv: list[str] | None = None) -> int:
    args = configure(parser().parse_args(argv))
    with tempfile.TemporaryDirectory(prefix="switchyard-ocr-bench-") as tmp:
        repo = _repository(Path(tmp), args.gpu)
        base = with_free_ports(Settings(model_repository=repo, state_dir=Path(tmp) / "infra"))
        with EmbeddedStack(base, Path(tmp) / "infra", components=("triton",),
                           model_repository=repo) as infra:
            run(infra.settings, Path(tmp), args, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
