"""The router cascade: the fast router answers when it is sure; a document it is unsure about
also goes to ``text_encoder`` (a sentence-embedding transformer with a trained head), and the
two answers are pooled.

Why pooled rather than handed over: on the project's held-out synthetic documents the router
is the better of the two where it is unsure (its training text is their text), on documents
written elsewhere the encoder is (it reads meaning, not the generator's words); the pooled
answer beats both on each (docs/decision.md#router-cascade). Pooling is log-linear: the two
calibrated distributions multiplied, class by class, and tempered by the temperature training
fitted on the validation split (``pool_temperature`` in the text_encoder's config), so two
models that agree raise the confidence and two that disagree lower it. The routing policy
then applies its thresholds to the pooled answer as to any prediction.

The encoder is an improvement, not a dependency: when it does not answer (down, its breaker
open), knows other classes than the router (one of them redeployed) or has no opinion (the
text is foreign to its English vocabulary: it answers with uniform probabilities, see the
text_encoder model), the router's answer stands and the counter says so.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

from prometheus_client import Counter

from services.decision.batcher import MicroBatcher
from services.decision.triton import ModelUnavailable, Prediction

log = logging.getLogger(__name__)

CASCADE_DOCUMENTS = Counter(
    "switchyard_router_cascade_total",
    "Documents the router was unsure about (below router_cascade_below), by what the cascade "
    "did: pooled (text_encoder's answer pooled with the router's), unavailable (text_encoder "
    "did not answer; the router's answer stands), mismatch (the two know different classes; "
    "the router's answer stands), unfamiliar (text_encoder gave no opinion on a text foreign "
    "to its vocabulary; the router's answer stands).",
    ["result"],
)
#: An encoder answer whose probabilities differ by less than this is uniform: no opinion.
NO_OPINION = 1e-6
#: The model name a pooled answer carries in Decision.models (beside the two it pooled).
POOLED_MODEL = "router_cascade"


def pool(router: Prediction, encoder: Prediction, temperature: float) -> Prediction:
    """The log-linear pool of two answers over the same classes."""
    classes = list(router.scores)
    logits = [(math.log(max(router.scores[c], 1e-9)) + math.log(max(encoder.scores[c], 1e-9)))
              / temperature for c in classes]
    top = max(logits)
    weights = [math.exp(z - top) for z in logits]
    total = sum(weights)
    scores = {c: w / total for c, w in zip(classes, weights)}
    label = max(scores, key=scores.__getitem__)
    return Prediction(model_name=POOLED_MODEL,
                      model_version=f"{router.model_version}+{encoder.model_version}",
                      label=label, confidence=scores[label], scores=scores, pool=router.pool,
                      consulted=(router, encoder))


class RouterCascade:
    """Asks the encoder about the router's unsure answers (``refine``)."""

    def __init__(self, encoder: MicroBatcher[str, Prediction], below: float,
                 temperature: Callable[[], float]) -> None:
        self.encoder = encoder
        self.below = below
        self.temperature = temperature

    async def refine(self, prediction: Prediction, text: str, tenant_id: str,
                     bucket: int) -> Prediction:
        """The router's ``prediction`` when it is sure, else the pooled answer (or the
        router's when the encoder cannot give one). Raises ``Overloaded`` when the
        encoder's batcher is full, as every batcher does (callers push back)."""
        if prediction.confidence >= self.below:
            return prediction
        try:
            second = await self.encoder.submit(text, tenant_id, bucket)
        except ModelUnavailable as exc:
            CASCADE_DOCUMENTS.labels("unavailable").inc()
            log.warning("router cascade: text_encoder unavailable, the router's answer "
                        "stands: %s", exc)
            return prediction
        if set(second.scores) != set(prediction.scores):
            CASCADE_DOCUMENTS.labels("mismatch").inc()
            log.warning("router cascade: text_encoder knows %s, the router %s: retrain both "
                        "(switchyard models train)", sorted(second.scores),
                        sorted(prediction.scores))
            return prediction
        if max(second.scores.values()) - min(second.scores.values()) < NO_OPINION:
            CASCADE_DOCUMENTS.labels("unfamiliar").inc()
            return prediction
        CASCADE_DOCUMENTS.labels("pooled").inc()
        return pool(prediction, second, self.temperature())


__all__ = ["CASCADE_DOCUMENTS", "POOLED_MODEL", "RouterCascade", "pool"]
