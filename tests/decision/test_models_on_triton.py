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
