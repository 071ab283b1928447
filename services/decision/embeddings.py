"""Sentence embeddings of short texts, for packs' enrichers (the invoice pack compares invoice
lines with purchase-order lines by them).

The texts go to the ``text_encoder`` Triton model (all-MiniLM-L6-v2, the router cascade's
encoder) through a micro-batcher of their own, so the lines of many concurrent invoices share
one request. When the encoder cannot answer (Triton away, its breaker open, the batcher full)
the caller gets None and compares some other way; the counter says how often.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from prometheus_client import Counter

from services.decision.batcher import MicroBatcher, Overloaded
from services.decision.triton import ModelUnavailable

#: Short texts in one text_encoder request (a line of an invoice is a few tokens: a batch of
#: them costs what a document or two does).
EMBED_BATCH_MAX = 64

EMBEDDINGS = Counter(
    "switchyard_text_embeddings",
    "Requests for sentence embeddings of short texts (enrichers'), by result: answered, or "
    "unavailable (the encoder could not answer; the enricher compared another way).",
    ["result"],
)


class Embeddings:
    """``await embeddings(texts)``: one unit-length vector per text, or None."""

    def __init__(self, batcher: MicroBatcher[str, list[float]]) -> None:
        self.batcher = batcher

    async def __call__(self, texts: Sequence[str]) -> list[list[float]] | None:
        try:
            vectors = await asyncio.gather(*(self.batcher.submit(t) for t in texts))
        except (ModelUnavailable, Overloaded):
            EMBEDDINGS.labels("unavailable").inc()
            return None
        EMBEDDINGS.labels("answered").inc()
        return list(vectors)


__all__ = ["EMBEDDINGS", "EMBED_BATCH_MAX", "Embeddings"]
