"""After `make models`: the embedded stack's Triton, on the project's model repository, serves
the engagement model version 1 that training built, with its card's holdout accuracy."""

from __future__ import annotations

import json

import numpy as np
import pytest

from services.decision.training import datagen, engagement
from services.decision.pools import new_breaker
from services.decision.triton import ScorerClient
from switchyard.stack import EmbeddedStack
from tests.conftest import MODEL_REPOSITORY, ROOT

pytestmark = pytest.mark.integration


async def test_the_stack_serves_the_trained_engagement_model(stack: EmbeddedStack) -> None:
    card = json.loads((MODEL_REPOSITORY / "engagement" / "1" / "model_card.json").read_text())
    rows = datagen.read_jsonl(ROOT / "models" / "data" / engagement.HELDOUT_FILE)
    client = ScorerClient("engagement", stack.settings.triton_url, 60, new_breaker("t", 5, 10),
                          "", output_class="engaged")
    try:
        await client.load_metadata()
        p = np.array([x.confidence for x in await client.predict(
            engagement.feature_matrix(rows).tolist())])
    finally:
        await client.close()
    assert client.version == card["version"] == engagement.MODEL_VERSION
    assert client.feature_names == list(engagement.FEATURE_NAMES)
    y = np.array([r["label"] for r in rows], float)
    assert len(rows) == card["split"]["test"]
    assert round(float(((p >= 0.5) == (y > 0.5)).mean()), 6) == card["metrics"]["test"]["accuracy"]
