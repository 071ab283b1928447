"""The decision service's micro-batchers serve tenants fairly: one tenant's single document is
not decided after the hundreds another tenant sent just before it.

The decision service runs as its own process with one document per router request
(``batch_max_size=1``), so the router's request count says how many documents went before
another. A noisy tenant sends 600 documents in one DecideBatch; while most of them still wait
for the router, a steady tenant sends one Decide. In arrival order it would wait for hundreds
of requests; in fair order it goes out within a few.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from switchyard import Settings
from switchyard.rpc import create_channel
from switchyard.stack import EmbeddedStack
from switchyard.v1 import (
    DecideBatchRequest,
    DecideRequest,
    DecisionServiceStub,
    Document,
    TaskEnvelope,
)
from tests.decision.documents import sample
from tests.observed import metric_sum
from tests.polling import eventually
from tests.services import running

pytestmark = pytest.mark.integration
NOISY = 600


@pytest.fixture(scope="module")
def fair_settings(settings: Settings) -> Settings:
    return settings.replace(batch_max_size=1, decide_batch_max_items=NOISY,
                            router_shadow_version="")


@pytest.fixture(scope="module")
def decision(fair_settings: Settings, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[EmbeddedStack]:
    with running(fair_settings, tmp_path_factory.mktemp("fair"), ("decision",)) as stack:
        yield stack


@pytest.fixture
async def decide(fair_settings: Settings, decision: EmbeddedStack
                 ) -> AsyncIterator[DecisionServiceStub]:
    channel = create_channel(f"127.0.0.1:{fair_settings.decision_grpc_port}")
    yield DecisionServiceStub(channel)
    await channel.close()


def task(tenant: str, index: int) -> TaskEnvelope:
    text = sample(("invoice", "support_ticket", "admission_form")[index % 3], index % 7)
    return TaskEnvelope(task_id=str(uuid.uuid4()), tenant_id=tenant,
                        document=Document(content_type="text/plain", body=text.encode()))


async def test_one_tenants_document_is_not_routed_after_anothers_hundreds(
        decide: DecisionServiceStub, fair_settings: Settings) -> None:
    def routed() -> float:  # router requests so far, one document each
        return metric_sum(fair_settings.decision_metrics_port, "switchyard_batch_size_count",
                          'model="document_router"')

    before = routed()
    noisy = asyncio.ensure_future(decide.DecideBatch(
        DecideBatchRequest(tasks=[task("noisy", i) for i in range(NOISY)]), timeout=300))

    async def under_way() -> bool:
        return routed() >= before + 4
    await eventually(under_way, "the noisy tenant's documents being routed", interval_s=0.02)
    sent_at = routed()
    reply = await decide.Decide(DecideRequest(task=task("steady", 0)), timeout=120)
    answered_at = routed()
    assert reply.decision.rule != "model_unavailable"
    # most of the noisy documents were still waiting when the steady one came ...
    assert sent_at - before < NOISY / 2, (before, sent_at)
    # ... and it did not wait for them. In arrival order at least NOISY / 2 router requests
    # would go out before its own; fairly, a few do. The count runs until the reply, so it also
    # holds the noisy documents routed while the steady one's later stages (pack models, each
    # behind its own fair batcher) ran: dozens on a loaded machine, still far from hundreds.
    assert answered_at - sent_at < NOISY / 6, (sent_at, answered_at)
    batch = await noisy
    assert batch.decided_count == NOISY
