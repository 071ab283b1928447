"""The models as Triton serves them: every version reaches the held-out metrics its card claims.

The held-out sets are the files training wrote (``models/data/*_heldout.jsonl``); the clients
are the decision service's own (same batching, same breaker).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from services.decision.training import datagen, train
from services.decision.training.features import INVOICE_FEATURES, invoice_raw_features
from services.decision.triton import RouterClient, ScorerClient, new_breaker
from switchyard.stack import EmbeddedStack
from tests.decision.documents import MODEL_REPOSITORY, ROOT, heldout

pytestmark = pytest.mark.integration


def card(model: str, version_dir: str) -> dict:
    return json.loads((MODEL_REPOSITORY / model / version_dir / "model_card.json").read_text())


@pytest.mark.parametrize("version_dir", ["1", *train.ROUTER_CANDIDATES])
async def test_router_reaches_its_cards_heldout_accuracy(stack: EmbeddedStack,
                                                         version_dir: str) -> None:
    client = RouterClient(stack.settings.triton_url, 30, new_breaker("t", 5, 10), version_dir)
    await client.load_metadata()
    rows = heldout()
    try:
        predictions = []
        for start in range(0, len(rows), 64):
            predictions += await client.predict([r["text"] for r in rows[start:start + 64]])
    finally:
        await client.close()
    claimed = card("document_router", version_dir)
    assert client.version == claimed["version"]
    assert len(rows) == claimed["split"]["test"]
    accuracy = np.mean([p.label == r["label"] for p, r in zip(predictions, rows)])
    assert round(float(accuracy), 6) == claimed["metrics"]["test"]["accuracy"]
    assert claimed["metrics"]["test"]["accuracy"] > 0.9


async def test_invoice_risk_reaches_its_cards_heldout_auc(stack: EmbeddedStack) -> None:
    # the invoice pack's scorer, as the decision service runs it: P(auto)
    client = ScorerClient("invoice_risk", stack.settings.triton_url, 30,
                          new_breaker("t", 5, 10), "1", output_class="auto")
    await client.load_metadata()
    assert client.feature_names == list(INVOICE_FEATURES)
    rows = datagen.read_jsonl(ROOT / "models" / "data" / train.INVOICE_HELDOUT)
    try:
        p = []
        for start in range(0, len(rows), 64):
            p += [x.confidence for x in await client.predict(
                [invoice_raw_features(r) for r in rows[start:start + 64]])]
    finally:
        await client.close()
    claimed = card("invoice_risk", "1")["metrics"]["test"]
    assert round(train.auc(np.array(p), np.array([r["label"] for r in rows])), 6) == claimed["auc"]


def _page_png(lines: list[tuple[int, int, str]], size: tuple[int, int] = (900, 500)) -> bytes:
    """A white page with ``lines`` (x, y, text) in black, as PNG bytes."""
    import io

    from PIL import Image, ImageDraw, ImageFont

    page = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default(size=36)
    for x, y, text in lines:
        draw.text((x, y), text, fill="black", font=font)
    out = io.BytesIO()
    page.save(out, format="PNG")
    return out.getvalue()


async def test_ocr_reads_the_words_of_each_page_with_boxes(stack: EmbeddedStack) -> None:
    # two pages in one request (as the decision service's batcher sends them): each row's
    # words come back in its own row, with boxes where the text was drawn
    from services.decision.triton import OcrClient
    from switchyard.v1 import LayoutSource

    client = OcrClient(stack.settings.triton_url, 120, new_breaker("t", 5, 10), "1")
    await client.load_metadata()
    try:
        first, second = await client.read([
            _page_png([(60, 60, "Invoice number: INV-2041"), (60, 300, "Total due: 1,250.00")]),
            _page_png([(450, 200, "Receipt 77")], size=(900, 600)),
        ])
    finally:
        await client.close()
    assert client.version == "1.0.0"
    assert first.source == second.source == LayoutSource.LAYOUT_SOURCE_OCR
    assert (first.width, first.height, second.width, second.height) == (900, 500, 900, 600)
    texts = [w.text for w in first.words]
    # a label's colon ends a word even where the recogniser drops the space after it
    assert texts == ["Invoice", "number:", "INV-2041", "Total", "due:", "1,250.00"]
    invoice, total = first.words[0], first.words[3]
    assert 0.04 < invoice.box.x0 < 0.1 and 0.1 < invoice.box.y0 < invoice.box.y1 < 0.25
    assert invoice.box.x1 < first.words[1].box.x0 < first.words[1].box.x1 < \
        first.words[2].box.x0
    assert total.box.y0 > 0.55 and total.box.x1 < first.words[4].box.x0
    assert all(0.5 < w.confidence <= 1 for w in first.words)
    assert [w.text for w in second.words] == ["Receipt", "77"]
    assert second.words[0].box.x0 == pytest.approx(450 / 900, abs=0.03)
