"""Input drift against the model card's baseline, and shadow comparisons that never touch the
live answer (no Triton: the batcher runs plain functions)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from services.decision.batcher import MicroBatcher
from services.decision.drift import DriftMonitor
from services.decision.shadow import ShadowRunner
from services.decision.training import datagen, train
from services.decision.training.features import INVOICE_FEATURES, invoice_raw_features
from services.decision.triton import ModelUnavailable, Prediction
from tests.decision.documents import MODEL_REPOSITORY, ROOT, heldout

CARD = MODEL_REPOSITORY / "document_router" / "1" / "model_card.json"


@pytest.fixture(scope="module")
def built() -> None:
    if train.artifacts_status(ROOT / "models" / "data", MODEL_REPOSITORY) is not None:
        pytest.skip("models not built (make models)")


def test_psi_is_small_for_training_like_inputs_and_large_for_shifted_ones(built: None) -> None:
    rows = heldout()
    like = DriftMonitor.from_model_card(CARD, window=2000, every=10_000)
    shifted = DriftMonitor.from_model_card(CARD, window=2000, every=10_000)
    assert like is not None and shifted is not None
    for r in rows:
        like.observe({"text_length_chars": len(r["text"]), "predicted_class": r["label"]})
        shifted.observe({"text_length_chars": len(r["text"]) * 8, "predicted_class": "invoice"})
    calm, drifted = like.publish(), shifted.publish()
    assert calm["text_length_chars"] < 0.1 and calm["predicted_class"] < 0.1
    assert drifted["text_length_chars"] > 0.25 and drifted["predicted_class"] > 0.25
    assert "max_prob" not in calm  # nothing observed for it yet


def test_invoice_card_baseline_covers_every_feature(built: None) -> None:
    monitor = DriftMonitor.from_model_card(MODEL_REPOSITORY / "invoice_risk" / "1" /
                                           "model_card.json")
    assert monitor is not None
    assert set(INVOICE_FEATURES) | {"p_auto"} <= set(monitor.features)
    rows = datagen.read_jsonl(ROOT / "models" / "data" / "invoice_corpus.jsonl")[:1500]
    for r in rows:
        monitor.observe(dict(zip(INVOICE_FEATURES, invoice_raw_features(r))))
    assert max(monitor.publish().values()) < 0.1


def test_missing_card_means_no_monitor(tmp_path: Path) -> None:
    assert DriftMonitor.from_model_card(tmp_path / "model_card.json") is None


def live(label: str) -> Prediction:
    return Prediction("document_router", "1.0.0", label, 0.9, {label: 0.9})


async def test_shadow_records_agreement_and_never_raises() -> None:
    async def shadow_model(texts: Sequence[str]) -> list[Prediction]:
        # the candidate disagrees on texts that mention a ticket
        return [Prediction("document_router", "1.1.0",
                           "support_ticket" if "ticket" in t else "invoice", 0.8) for t in texts]

    runner = ShadowRunner(MicroBatcher("shadow", shadow_model, 8, 0.001, 100),
                          "document_router", "1", "2", pool=None)
    await runner.start()
    for i in range(10):
        runner.observe(f"t{i}", "acme", "a ticket" if i < 3 else "an invoice", live("invoice"),
                       persist=True)
    await runner.stop()
    assert runner.agreement == pytest.approx(0.7)


async def test_an_unavailable_shadow_costs_the_live_path_nothing() -> None:
    async def down(texts: Sequence[str]) -> list[Prediction]:
        raise ModelUnavailable("shadow version not loaded")

    runner = ShadowRunner(MicroBatcher("shadow", down, 8, 0.001, 2), "document_router",
                          "1", "2", pool=None)
    await runner.start()
    for i in range(20):  # more than the queue holds: skipped, not raised, not waited for
        runner.observe(f"t{i}", "acme", "text", live("invoice"), persist=False)
    await asyncio.sleep(0.05)
    await runner.stop()
    assert runner.agreement is None
