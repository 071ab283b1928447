"""The decision service's router client takes its class list from the deployed router (the
Triton config training wrote), not from a constant: it reads it on its first prediction when
Triton was away at start."""

from __future__ import annotations

import json

import pytest

from services.decision.pools import new_breaker
from services.decision.triton import RouterClient
from switchyard.stack import EmbeddedStack
from tests.decision.documents import MODEL_REPOSITORY, heldout

pytestmark = pytest.mark.integration


async def test_the_router_reads_its_classes_from_the_deployed_model(stack: EmbeddedStack) -> None:
    card = json.loads((MODEL_REPOSITORY / "document_router" / "1" / "model_card.json").read_text())
    client = RouterClient(stack.settings.triton_url, 30, new_breaker("t", 5, 10), "1")
    assert client.classes == []   # nothing read yet: no built-in list
    rows = [r for r in heldout() if r["label"] != "other"][:3]
    try:
        predictions = await client.predict([r["text"] for r in rows])
    finally:
        await client.close()
    assert client.classes == card["classes"]
    for prediction in predictions:
        assert list(prediction.scores) == card["classes"]
        assert prediction.label in card["classes"]
