"""The router cascade's second stage: the numpy sentence encoder, its head, and the pooling.

- the encoder's tokens and embeddings are those of the reference implementation
  (``data/minilm_reference.json``: made once with transformers and torch from the same
  weights, which the project does not install);
- Triton serves the probabilities training computes (one code path: the model loads a copy
  of the module training used), and the pooling temperature training fitted;
- pooling: agreement raises the confidence, disagreement lowers it; an encoder that cannot
  answer, knows other classes or has no opinion (text foreign to its English vocabulary)
  leaves the router's answer standing.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from services.decision.batcher import MicroBatcher
from services.decision.cascade import CASCADE_DOCUMENTS, POOLED_MODEL, RouterCascade, pool
from services.decision.pools import new_breaker
from services.decision.training import cascade
from services.decision.training.encoder import MAX_TOKENS, Encoder
from services.decision.triton import EncoderClient, ModelUnavailable, Prediction
from switchyard.stack import EmbeddedStack
from tests.decision.documents import MODEL_REPOSITORY, heldout

VERSION_DIR = MODEL_REPOSITORY / cascade.MODEL / "1"
REFERENCE = json.loads((Path(__file__).parent / "data" / "minilm_reference.json").read_text())


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return Encoder(VERSION_DIR / cascade.ASSETS_DIR)


def test_tokens_and_embeddings_are_the_reference_implementations(encoder: Encoder) -> None:
    assert REFERENCE["max_length"] == MAX_TOKENS
    for case in REFERENCE["cases"]:
        assert encoder.tokenizer.encode(case["text"]) == case["ids"], case["text"][:40]
        vector = encoder.encode([case["text"]])[0]
        assert np.abs(vector - np.array(case["embedding"])).max() < 1e-4, case["text"][:40]
        assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5


def test_texts_are_embedded_alike_alone_and_in_a_batch_of_other_lengths(
        encoder: Encoder) -> None:
    texts = [case["text"] for case in REFERENCE["cases"]]
    together = encoder.encode(texts, batch_size=4)
    for text, row in zip(texts, together):
        assert np.abs(encoder.encode([text])[0] - row).max() < 1e-5   # padding is not read


#: A text the English-pretrained encoder reads as fragments (written here, in the manner of
#: German e-invoice renderings), and English ones it reads whole.
FOREIGN = ("Lesbarmachung der Rechnungsdaten. Handelsrechnung Nr. 4711 vom 05.03.2026. "
           "Verkäufer: Lieferantengesellschaft mbH, Lieferantenstraße 20, Steuernummer "
           "201/113/40209. Käufer: Kundengesellschaft, Rechnungssumme ohne Umsatzsteuer "
           "Steuerbetrag Bruttosumme Zahlungsbedingungen Fälligkeit Teilzahlung")
FAMILIAR = ("Invoice 4711 from Harbour Supplies Inc. for the office chairs delivered last "
            "week; the total due is $1,250.00, payable within thirty days.",
            "My laptop will not start since the update, please help me get it working again.")


def test_word_pieces_per_word_tell_text_the_encoder_reads_from_fragments(
        encoder: Encoder) -> None:
    tokenizer = encoder.tokenizer
    assert all(tokenizer.pieces_per_word(text) < 1.4 for text in FAMILIAR)
    assert tokenizer.pieces_per_word(FOREIGN) > 2.0
    assert tokenizer.pieces_per_word("") == 1.0
    # only what the encoder reads counts: a foreign tail past its first tokens does not
    assert tokenizer.pieces_per_word(FAMILIAR[0] * 8 + FOREIGN) < 1.4
    card = json.loads((VERSION_DIR / "model_card.json").read_text())
    assert 1.4 < card["familiarity"]["limit"] < tokenizer.pieces_per_word(FOREIGN)


def _prediction(model: str, scores: dict[str, float]) -> Prediction:
    label = max(scores, key=scores.__getitem__)
    return Prediction(model, "1", label, scores[label], scores)


def test_pooling_raises_agreement_and_lowers_disagreement() -> None:
    router = _prediction("document_router", {"invoice": 0.6, "other": 0.3, "support_ticket": 0.1})
    agreeing = _prediction("text_encoder", {"invoice": 0.8, "other": 0.1, "support_ticket": 0.1})
    pooled = pool(router, agreeing, 1.0)
    assert pooled.label == "invoice" and pooled.confidence > 0.8
    assert pooled.model_name == POOLED_MODEL and pooled.consulted == (router, agreeing)
    assert abs(sum(pooled.scores.values()) - 1.0) < 1e-9
    disagreeing = _prediction("text_encoder", {"invoice": 0.3, "other": 0.6,
                                               "support_ticket": 0.1})
    assert pool(router, disagreeing, 1.0).confidence < min(router.confidence,
                                                           disagreeing.confidence)
    # a higher temperature (training fits it: the two models are not independent) tempers
    assert pool(router, agreeing, 2.0).confidence < pooled.confidence


async def test_the_routers_answer_stands_when_the_encoder_cannot_give_one() -> None:
    router = _prediction("document_router", {"invoice": 0.5, "other": 0.5})

    async def away(texts):  # type: ignore[no-untyped-def]
        raise ModelUnavailable("text_encoder: circuit open")

    async def other_classes(texts):  # type: ignore[no-untyped-def]
        return [_prediction("text_encoder", {"invoice": 0.9, "support_ticket": 0.1})
                for _ in texts]

    async def no_opinion(texts):  # type: ignore[no-untyped-def]
        return [_prediction("text_encoder", {"invoice": 0.5, "other": 0.5}) for _ in texts]

    for infer, result in ((away, "unavailable"), (other_classes, "mismatch"),
                          (no_opinion, "unfamiliar")):
        batcher: MicroBatcher[str, Prediction] = MicroBatcher("text_encoder", infer, 4, 0.001,
                                                              16)
        counted = CASCADE_DOCUMENTS.labels(result)._value.get()
        await batcher.start()
        try:
            assert await RouterCascade(batcher, 0.8, lambda: 1.0).refine(
                router, "text", "acme", 2) is router
        finally:
            await batcher.stop()
        assert CASCADE_DOCUMENTS.labels(result)._value.get() == counted + 1, result
    sure = _prediction("document_router", {"invoice": 0.95, "other": 0.05})
    assert await RouterCascade(MicroBatcher("unused", away, 1, 0.001, 1), 0.8,
                               lambda: 1.0).refine(sure, "text", "acme", 2) is sure


@pytest.mark.integration
async def test_triton_serves_what_training_computed(stack: EmbeddedStack) -> None:
    """Train and serve agree: the served probabilities are training's function of training's
    embeddings (:func:`cascade.head_probabilities`), and the config carries the card's pool
    temperature and classes."""
    card = json.loads((VERSION_DIR / "model_card.json").read_text())
    client = EncoderClient(stack.settings.triton_url, 60, new_breaker("t", 5, 10), "1")
    await client.load_metadata()
    texts = [row["text"] for row in heldout()[:24]] + [FOREIGN]
    try:
        served = await client.predict(texts)
    finally:
        await client.close()
    assert client.classes == card["classes"]
    assert client.pool_temperature == card["calibration"]["pool_temperature"]
    with np.load(VERSION_DIR / cascade.HEAD_FILE) as head:
        weights, bias = head["weights"], head["bias"]
        temperature = float(head["temperature"])
    encoder = Encoder(VERSION_DIR / cascade.ASSETS_DIR)
    expected = cascade.head_probabilities(encoder.encode(texts), weights, bias, temperature)
    # no opinion on text foreign to the encoder's vocabulary: uniform probabilities
    limit = card["familiarity"]["limit"]
    foreign = [encoder.tokenizer.pieces_per_word(t) > limit for t in texts]
    assert foreign[-1] and sum(foreign) < len(texts) // 2
    expected[foreign] = 1.0 / len(card["classes"])
    got = np.array([[p.scores[c] for c in card["classes"]] for p in served])
    assert np.abs(got - expected).max() < 1e-5


#: An invoice line and the purchase-order line it bills, in other words: the letters of some
#: barely overlap; and lines of other goods.
SAME_GOODS = [("Laptop docking station USB-C", "USB-C dock for notebooks"),
              ("Ergonomic mesh desk chair", "Office chair, ergonomic, with lumbar support"),
              ("Falcon tubes 50ml, 25/pack", "Laboratory centrifuge tubes 50 ml (pack of 25)")]
OTHER_GOODS = [("Laptop docking station USB-C", "Toner cartridge, black, HP 305A"),
               ("Espresso machine, dual boiler", "Office chair, ergonomic, with lumbar support"),
               ("Falcon tubes 50ml, 25/pack", "Safety goggles, anti-fog, EN 166")]


@pytest.mark.integration
async def test_served_embeddings_pair_lines_that_name_the_same_goods_in_other_words(
        stack: EmbeddedStack) -> None:
    """``EncoderClient.embed`` (what the invoice pack's purchase-order matching pairs lines
    with) returns unit vectors whose cosine is well above the pack's default
    ``po_line_similarity`` (0.5) for the same goods, where the letters' overlap is below it
    for some, and well below it for other goods."""
    from switchyard_packs.invoice.purchasing import lexical_similarity

    client = EncoderClient(stack.settings.triton_url, 60, new_breaker("t", 5, 10), "1")
    pairs = SAME_GOODS + OTHER_GOODS
    try:
        vectors = np.array(await client.embed([t for pair in pairs for t in pair]))
    finally:
        await client.close()
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    cosine = [float(vectors[2 * i] @ vectors[2 * i + 1]) for i in range(len(pairs))]
    same, other = cosine[:len(SAME_GOODS)], cosine[len(SAME_GOODS):]
    assert min(same) > 0.65 and max(other) < 0.35, cosine
    assert min(lexical_similarity(a, b) for a, b in SAME_GOODS) < 0.5
