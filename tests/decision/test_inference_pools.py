"""Two Triton pools: a spike spills batches to the spill-over pool, and a pool that is down is
skipped.

The primary pool is the session's Triton; the spill-over is a second Triton this module starts
the way ``switchyard up`` does with ``SWITCHYARD_STACK_COMPONENTS=...,triton-spill`` (the
embedded stack's ``triton-spill`` component). The decision service runs as its own process
with ``SWITCHYARD_TRITON_SPILL_URL`` pointing at it, a low spill threshold (4 ms of queue
delay: a burst of DecideBatch calls on one CPU Triton passes it, single calls do not), a fast
poll and a short cool-down; what it did is read from its metrics endpoint.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import tritonclient.grpc as triton

from services.decision.pools import TritonPools, new_breaker
from services.decision.triton import RouterClient
from switchyard import Settings
from switchyard.rpc import create_channel
from switchyard.stack import EmbeddedStack, free_port
from switchyard.storage import connect
from switchyard.v1 import (
    DecideBatchRequest,
    DecideRequest,
    DecisionServiceStub,
    Document,
    IngestServiceStub,
    Submission,
    SubmitTasksRequest,
    TaskEnvelope,
)
from tests.decision.documents import MODEL_REPOSITORY, sample
from tests.observed import metric_sum
from tests.polling import eventually
from tests.services import running

pytestmark = pytest.mark.integration
LABELS = ("invoice", "admission_form", "support_ticket")


@pytest.fixture(scope="module")
def spill_pool(settings: Settings, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[EmbeddedStack]:
    """The spill-over Triton, as the embedded stack starts it."""
    state = tmp_path_factory.mktemp("spill-pool")
    pool = EmbeddedStack(settings.replace(triton_spill_http_port=free_port(),
                                          triton_spill_grpc_port=free_port(),
                                          triton_spill_metrics_port=free_port()),
                         state, components=("triton-spill",), model_repository=MODEL_REPOSITORY)
    pool.start(timeout_s=120)
    try:
        yield pool
    finally:
        pool.stop()


@pytest.fixture(scope="module")
def pool_settings(settings: Settings, spill_pool: EmbeddedStack) -> Settings:
    return settings.replace(
        triton_spill_url=spill_pool.settings.triton_spill_url, triton_spill_after_ms=4.0,
        triton_spill_share=0.5, triton_pool_poll_ms=200, triton_spill_cooldown_s=3.0,
        router_shadow_version="",
        breaker_fail_max=2, breaker_reset_s=1.0, triton_timeout_s=5.0)


@pytest.fixture(scope="module")
def decision(pool_settings: Settings, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[EmbeddedStack]:
    with running(pool_settings, tmp_path_factory.mktemp("pools"), ("ingest", "decision")) as stack:
        yield stack


@pytest.fixture
async def decide(pool_settings: Settings, decision: EmbeddedStack
                 ) -> AsyncIterator[DecisionServiceStub]:
    channel = create_channel(f"127.0.0.1:{pool_settings.decision_grpc_port}")
    yield DecisionServiceStub(channel)
    await channel.close()


def task(index: int) -> TaskEnvelope:
    text = sample(LABELS[index % len(LABELS)], index % 7)
    return TaskEnvelope(task_id=str(uuid.uuid4()), tenant_id="acme",
                        document=Document(content_type="text/plain", body=text.encode()))


def served(settings: Settings, pool: str) -> float:
    return metric_sum(settings.decision_metrics_port, "switchyard_inference_pool_batches_total",
                      f'model="document_router",pool="{pool}"')


def spilling(settings: Settings) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{settings.decision_metrics_port}/metrics",
                                  timeout=10).read().decode()
    return next(float(line.split()[1]) for line in text.splitlines()
                if line.startswith("switchyard_triton_spilling "))


async def spike(decide: DecisionServiceStub, until: object, timeout_s: float = 120,
                pools: set[str] | None = None) -> int:
    """Eight callers sending DecideBatch calls back to back until ``until()`` holds; every task
    must be decided by a model (none meets the unavailable policy). Returns how many were;
    ``pools`` collects the pools the decisions say routed them."""
    decided = 0
    deadline = asyncio.get_running_loop().time() + timeout_s

    async def caller() -> None:
        nonlocal decided
        while not until():  # type: ignore[operator]
            assert asyncio.get_running_loop().time() < deadline, "the spike never got there"
            reply = await decide.DecideBatch(
                DecideBatchRequest(tasks=[task(i) for i in range(64)]), timeout=60)
            assert reply.refused_count == 0, [r.error for r in reply.results if r.error.code]
            rules = {r.decision.rule for r in reply.results}
            assert "model_unavailable" not in rules, rules
            decided += reply.decided_count
            if pools is not None:
                pools.update(r.decision.models[0].pool for r in reply.results)

    await asyncio.gather(*(caller() for _ in range(8)))
    return decided


async def test_a_spike_spills_batches_to_the_spill_over_pool_and_they_return_as_it_drains(
        decide: DecisionServiceStub, pool_settings: Settings) -> None:
    primary_before = served(pool_settings, "primary")
    assert served(pool_settings, "spill") == 0 and spilling(pool_settings) == 0

    routed_by: set[str] = set()
    await spike(decide, lambda: served(pool_settings, "spill") >= 4, pools=routed_by)
    assert routed_by == {"primary", "spill"}  # each decision names the pool that routed it
    # a share, not all: the primary kept taking batches while the spill-over helped
    assert served(pool_settings, "primary") > primary_before

    async def drained() -> bool:
        return spilling(pool_settings) == 0
    await eventually(drained, "spilling to stop once the spike is over", timeout_s=30)

    # the primary is the session's Triton, which the other tests' decisions share: on a loaded
    # machine its queue can pass the low threshold again after the spike (seen on CI), and then
    # spilling a share is right. So a decision must be the primary's whenever spilling was off
    # both before and after it: spilling, once on, stays on for the cooldown (3 s), so off at
    # both ends of a shorter call means off throughout.
    async def back_on_the_primary() -> bool:
        reply = await decide.Decide(DecideRequest(task=task(0)), timeout=30)
        return reply.decision.models[0].pool == "primary"
    await eventually(back_on_the_primary, "decisions routed by the primary again",
                     timeout_s=30)
    primary = served(pool_settings, "primary")
    checked = 0
    deadline = asyncio.get_running_loop().time() + 60
    while checked < 10:  # one at a time
        assert asyncio.get_running_loop().time() < deadline, f"spilling kept on ({checked})"
        spilling_before = spilling(pool_settings)
        started = asyncio.get_running_loop().time()
        reply = await decide.Decide(DecideRequest(task=task(checked)), timeout=30)
        took = asyncio.get_running_loop().time() - started
        assert reply.decision.rule != "model_unavailable"
        if spilling_before == 0 and spilling(pool_settings) == 0 and took < 3.0:
            assert reply.decision.models[0].pool == "primary"
            checked += 1
        else:
            await asyncio.sleep(0.5)
    assert served(pool_settings, "primary") >= primary + checked


async def test_tasks_keep_the_pool_that_routed_them_and_stats_prices_each_pool(
        decide: DecisionServiceStub, pool_settings: Settings) -> None:
    channel = create_channel(f"127.0.0.1:{pool_settings.ingest_grpc_port}")
    ingest = IngestServiceStub(channel)
    conn = await connect(pool_settings)
    submitted: list[str] = []
    mixed = False

    async def submit_until_both_pools_routed() -> None:
        nonlocal mixed
        while not mixed:
            reply = await ingest.SubmitTasks(SubmitTasksRequest(submissions=[Submission(
                tenant_id="pooled", idempotency_key=uuid.uuid4().hex,
                document=task(i).document) for i in range(16)]))
            submitted.extend(r.accepted.task_id for r in reply.results)
            pools = {row["pool"] for row in await conn.fetch(
                "SELECT DISTINCT pool FROM decisions WHERE tenant_id = 'pooled'")}
            mixed = {"primary", "spill"} <= pools
            await asyncio.sleep(0.2)
    try:
        # tasks through Kafka while a spike of DecideBatch calls makes the primary queue
        await asyncio.gather(spike(decide, lambda: mixed),
                             submit_until_both_pools_routed())

        async def all_decided() -> bool:
            return await conn.fetchval(
                "SELECT count(*) FROM decisions WHERE tenant_id = 'pooled'") == len(submitted)
        await eventually(all_decided, "every submitted task decided", timeout_s=120)
        routed = dict(await conn.fetch("SELECT pool, count(*) FROM decisions "
                                       "WHERE tenant_id = 'pooled' GROUP BY pool"))
    finally:
        await conn.close()
        await channel.close()
    assert set(routed) == {"primary", "spill"}  # every model decision names its pool

    prices = {"primary": 0.004, "spill": 0.001}
    env = {**os.environ, **pool_settings.to_env(),
           "SWITCHYARD_KPI_INFERENCE_COST": "0.004", "SWITCHYARD_KPI_SPILL_INFERENCE_COST": "0.001"}
    result = subprocess.run([sys.executable, "-m", "switchyard", "stats", "--json",
                             "--tenant", "pooled"], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    (kpis,) = json.loads(result.stdout)
    assert kpis["tasks"] == len(submitted) and kpis["spilled"] == routed["spill"]
    for pool, figures in kpis["inference_by_pool"].items():
        assert figures["tasks"] == routed[pool]
        assert figures["price_per_task"] == prices[pool]
        assert figures["cost"] == pytest.approx(routed[pool] * prices[pool])
        assert figures["cost_per_automated"] == 0  # nothing executes here: none automated
    table = subprocess.run([sys.executable, "-m", "switchyard", "stats", "--once",
                            "--tenant", "pooled"], env=env, capture_output=True, text=True,
                           timeout=60)
    assert table.returncode == 0, table.stderr
    assert "Inference by Triton pool" in table.stdout and "spill" in table.stdout


async def test_a_primary_that_is_down_is_skipped_and_the_spill_over_answers(
        spill_pool: EmbeddedStack) -> None:
    # the decision service's client with its pools, the primary on a port nobody serves
    pools = TritonPools(f"127.0.0.1:{free_port()}", spill_pool.settings.triton_spill_url)
    family = new_breaker("pools-test", 2, 60)
    router = RouterClient(pools, 5, family, "1")
    try:
        await router.load_metadata()  # read from the spill-over: the primary does not answer
        texts = [sample(label, 1) for label in LABELS]
        for _ in range(4):
            predictions = await router.predict(texts)
            assert [p.label for p in predictions] == list(LABELS)
        # two failures opened the primary's breaker: it is no longer even tried
        assert pools.primary.breaker(family).current_state == "open"
        assert pools.spill is not None and pools.spill.breaker(family).current_state == "closed"
        assert not pools.away(family)
    finally:
        await router.close()


def router_requests(url: str) -> int:
    """How many requests a Triton answered for document_router version 1."""
    control = triton.InferenceServerClient(url)
    try:
        stats = control.get_inference_statistics("document_router", "1")
    finally:
        control.close()
    return sum(m.inference_stats.success.count for m in stats.model_stats)


async def test_a_pool_spreads_requests_over_its_addresses_and_reconnects(
        stack: EmbeddedStack, spill_pool: EmbeddedStack) -> None:
    # one pool with two Tritons behind it, as a headless Service's DNS name resolves to its
    # pods (here the two loopback servers, as gRPC's ipv4: target names them)
    servers = [stack.settings.triton_url, spill_pool.settings.triton_spill_url]
    ports = [url.rsplit(":", 1)[1] for url in servers]
    pools = TritonPools("ipv4:" + ",".join(f"127.0.0.1:{p}" for p in ports), reconnect_s=0.5)
    router = RouterClient(pools, 10, new_breaker("spread", 5, 10), "1")
    before = [router_requests(url) for url in servers]
    try:
        await router.load_metadata()
        first = pools.primary.client()
        for _ in range(20):
            await router.predict([sample("invoice", 1)])
        # Triton counts a request in its statistics after answering it: read them until the
        # last one is in (a loaded machine showed 19 of 20 at first)
        async def all_counted() -> list[int] | None:
            served = [router_requests(url) - b for url, b in zip(servers, before)]
            return served if sum(served) >= 20 else None
        served = await eventually(all_counted, "Triton to count the 20 requests", 10, 0.2)
        assert sum(served) == 20 and min(served) >= 5, served  # both took their turns
        await asyncio.sleep(0.6)
        await router.predict([sample("invoice", 2)])
        second = pools.primary.client()
        assert second is not first  # replaced: pods added since would be resolved now
        await asyncio.sleep(0.6)
        await router.predict([sample("invoice", 3)])  # a third channel: the first is closed
        assert pools.primary.client() not in (first, second)
        await asyncio.gather(*pools.primary._closing)  # noqa: SLF001 - the close task
        with pytest.raises(Exception, match="closed"):
            await first.is_server_live()
        assert await second.is_server_live()  # kept one more interval for its calls
    finally:
        await router.close()


async def test_a_spill_over_pool_that_is_down_is_skipped(
        decide: DecisionServiceStub, pool_settings: Settings, spill_pool: EmbeddedStack) -> None:
    spill_pool.stop()
    failures_before = metric_sum(pool_settings.decision_metrics_port,
                                 "switchyard_inference_pool_failures_total", 'pool="spill"')
    # the primary alone is overloaded again, so batches are sent to the spill-over first,
    # which fails (then its breaker refuses them): each is answered by the primary instead
    decided = await spike(decide, lambda: metric_sum(
        pool_settings.decision_metrics_port, "switchyard_inference_pool_failures_total",
        'pool="spill"') >= failures_before + 4)
    assert decided >= 512
