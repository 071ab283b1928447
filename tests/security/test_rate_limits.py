"""Per-tenant rate limits on the real services, with TWO ingest replicas sharing one limit.

The stack's ingest runs twice (its own gRPC and metrics ports each, one consumer group), as
bench/scaling_bench.py runs replicas, plus the decision service. A tenant's accepted work over
a burst sent through both replicas stays within its one configured limit (a per-replica bucket
would let twice as much through), another tenant is unaffected, a bulk call is charged per
item, refusals carry RetryInfo and retry-after-ms, Decide (and DecideBatch, one token per
task) and verdicts (gRPC and the review console, one bucket) are limited the same way, and
intake records over the rate are slowed, all accepted, none dead-lettered.

Counts, not timings: the bound ``burst + rate * (elapsed + lease)`` only grows with the time
the burst took, so a slow machine loosens it and never makes the test flaky.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.request
import uuid
from collections.abc import Iterator

import aiohttp
import grpc
import pytest
from confluent_kafka import Producer
from google.rpc import error_details_pb2

from switchyard import Settings
from switchyard.messaging import INTAKE
from switchyard.rpc import create_channel, parse_status_details
from switchyard.runtime import service_specs
from switchyard.stack import EmbeddedStack, ServiceSpec, free_port
from switchyard.storage import connect
from switchyard.v1 import (
    DecideBatchRequest,
    DecideRequest,
    DecisionServiceStub,
    Document,
    IngestServiceStub,
    ReviewServiceStub,
    ReviewVerdict,
    Submission,
    SubmitTaskRequest,
    SubmitTasksRequest,
    SubmitVerdictRequest,
    TaskEnvelope,
    Verdict,
)
from tests.polling import eventually

pytestmark = [pytest.mark.integration]
RATE, BURST = 0.2, 10          # every tenant: 10 at once, then one per 5 s
INTAKE_RATE, INTAKE_BURST = 1.0, 2
LEASE_S = 0.25
KEYS = {"acme-sub": ("acme", "submitter"), "globex-sub": ("globex", "submitter"),
        "hooli-sub": ("hooli", "submitter"), "umbrella-rev": ("umbrella", "reviewer"),
        "wayne-sub": ("wayne", "submitter")}


@pytest.fixture(scope="module")
def settings(settings: Settings) -> Settings:
    return settings.replace(
        api_keys=",".join(f"{k}:{t}:{r}" for k, (t, r) in KEYS.items()),
        tenant_rate_limit=f"{RATE}/{BURST}",
        tenant_rate_limit_overrides=f"initech:{INTAKE_RATE}/{INTAKE_BURST}",
        tenant_rate_lease_s=LEASE_S)


@pytest.fixture(scope="module")
def replica_b(settings: Settings) -> Settings:
    """The second ingest replica's ports."""
    return settings.replace(ingest_grpc_port=free_port(), ingest_metrics_port=free_port(),
                            ingest_rest_port=free_port())


@pytest.fixture(scope="module")
def services(settings: Settings, replica_b: Settings,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    """ingest twice, decision and review, as real processes (the stack's own commands)."""
    [ingest] = service_specs(settings, ("ingest",))
    second = ServiceSpec(
        name="ingest-2", argv=ingest.argv, health_port=replica_b.ingest_grpc_port,
        env={"SWITCHYARD_INGEST_GRPC_PORT": str(replica_b.ingest_grpc_port),
             "SWITCHYARD_INGEST_METRICS_PORT": str(replica_b.ingest_metrics_port),
             "SWITCHYARD_INGEST_REST_PORT": str(replica_b.ingest_rest_port)})
    stack = EmbeddedStack(settings, tmp_path_factory.mktemp("replicas"), components=(),
                          services=[ingest, second,
                                    *service_specs(settings, ("decision", "review"))])
    stack.start(timeout_s=180)
    try:
        yield stack
    finally:
        stack.stop()


def submission(tenant: str, text: str = "Support ticket: the login page is not working") \
        -> Submission:
    return Submission(tenant_id=tenant, idempotency_key=uuid.uuid4().hex, kind="support_ticket",
                      document=Document(body=text.encode()))


def retry_after_s(error: grpc.aio.AioRpcError) -> float:
    """The refusal's RetryInfo delay; checks retry-after-ms agrees."""
    status = parse_status_details(error)
    assert status is not None, "RESOURCE_EXHAUSTED without google.rpc.Status details"
    retry = error_details_pb2.RetryInfo()
    assert any(d.Unpack(retry) for d in status.details), "no RetryInfo detail"
    delay = retry.retry_delay.ToTimedelta().total_seconds()
    header = dict(error.trailing_metadata() or ())["retry-after-ms"]
    assert header.isdigit() and abs(int(header) / 1000 - delay) < 0.01
    return delay


async def outcome(call: object) -> str:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
            assert 0 < retry_after_s(exc) <= 1 / RATE + 1
            return "refused"
        raise
    return "accepted"


def bound(elapsed_s: float) -> float:
    """The most a tenant may get accepted in ``elapsed_s``, whatever the replica count
    (docs/ingest.md), plus one token for rounding."""
    return BURST + RATE * (elapsed_s + LEASE_S) + 1


def metric_total(port: int, name: str, labels: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(float(v) for v in re.findall(
        rf"^{re.escape(name)}\{{{re.escape(labels)}\}} (\S+)$", text, re.M))


@pytest.mark.usefixtures("services")
async def test_a_tenants_limit_is_shared_by_both_replicas(settings: Settings,
                                                          replica_b: Settings) -> None:
    channels = {(tenant, port): create_channel(f"127.0.0.1:{port}", api_key=f"{tenant}-sub")
                for tenant in ("acme", "globex")
                for port in (settings.ingest_grpc_port, replica_b.ingest_grpc_port)}
    a, b = settings.ingest_grpc_port, replica_b.ingest_grpc_port

    def stub(tenant: str, port: int) -> IngestServiceStub:
        return IngestServiceStub(channels[(tenant, port)])

    try:
        started = time.monotonic()
        # a bulk call costs one token per item: 4 of acme's 10
        bulk = await stub("acme", b).SubmitTasks(SubmitTasksRequest(
            submissions=[submission("acme") for _ in range(4)]))
        assert bulk.accepted_count == 4
        # then 20 calls through each replica at once
        outcomes = await asyncio.gather(*(
            outcome(stub("acme", port).SubmitTask(SubmitTaskRequest(
                submission=submission("acme"))))
            for port in (a, b) for _ in range(20)))
        elapsed = time.monotonic() - started
        accepted = 4 + outcomes.count("accepted")
        assert accepted <= bound(elapsed), (
            f"{accepted} of acme's submissions accepted through two replicas in "
            f"{elapsed:.1f}s; its one limit allows {bound(elapsed):.1f}")
        assert accepted >= BURST - 1, f"only {accepted} accepted: the burst was not honoured"
        assert outcomes.count("refused") >= 40 + 4 - bound(elapsed)

        # another tenant is unaffected by acme being over its rate
        first = await stub("globex", a).SubmitTasks(SubmitTasksRequest(
            submissions=[submission("globex") for _ in range(8)]))
        assert first.accepted_count == 8
        # ... and its bulk calls are charged per item on either replica: 8 more do not fit
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub("globex", b).SubmitTasks(SubmitTasksRequest(
                submissions=[submission("globex") for _ in range(8)]))
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert retry_after_s(caught.value) > 0
        # while a single one does (the refused bulk call took nothing)
        assert (await stub("globex", b).SubmitTask(SubmitTaskRequest(
            submission=submission("globex")))).task_id

        conn = await connect(settings)
        try:
            stored = await conn.fetchval("SELECT count(*) FROM tasks WHERE tenant_id = 'acme'")
        finally:
            await conn.close()
        assert stored == accepted, "every accepted submission is stored, nothing else"
        refused_metric = sum(metric_total(port, "switchyard_tenant_rate_limited_total",
                                          'path="grpc"')
                             for port in (settings.ingest_metrics_port,
                                          replica_b.ingest_metrics_port))
        assert refused_metric == outcomes.count("refused") + 1
    finally:
        for channel in channels.values():
            await channel.close()


@pytest.mark.usefixtures("services")
async def test_decide_is_limited_per_tenant(settings: Settings) -> None:
    channel = create_channel(f"127.0.0.1:{settings.decision_grpc_port}", api_key="hooli-sub")
    try:
        stub = DecisionServiceStub(channel)
        started = time.monotonic()
        outcomes = await asyncio.gather(*(outcome(stub.Decide(DecideRequest(task=TaskEnvelope(
            task_id=str(uuid.uuid4()), kind="support_ticket",
            document=Document(body=b"Support ticket: refund please")))))
            for _ in range(BURST + 6)))
        elapsed = time.monotonic() - started
        assert BURST - 1 <= outcomes.count("accepted") <= bound(elapsed)
        assert outcomes.count("refused") >= 1
    finally:
        await channel.close()


@pytest.mark.usefixtures("services")
async def test_decide_batch_costs_one_token_per_task(settings: Settings) -> None:
    """A DecideBatch call draws one token per task from the tenant's bucket: BURST - 1 tasks
    in one call go through; three more right after are refused, with when to retry."""
    def tasks(count: int) -> list[TaskEnvelope]:
        return [TaskEnvelope(task_id=str(uuid.uuid4()), kind="support_ticket",
                             document=Document(body=b"Support ticket: refund please"))
                for _ in range(count)]

    channel = create_channel(f"127.0.0.1:{settings.decision_grpc_port}", api_key="wayne-sub")
    try:
        stub = DecisionServiceStub(channel)
        first = await stub.DecideBatch(DecideBatchRequest(tasks=tasks(BURST - 1)))
        assert first.decided_count == BURST - 1
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.DecideBatch(DecideBatchRequest(tasks=tasks(3)))
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert retry_after_s(caught.value) > 0
    finally:
        await channel.close()


@pytest.mark.usefixtures("services")
async def test_verdicts_share_one_limit_on_grpc_and_the_console(settings: Settings) -> None:
    """A verdict is charged before it is looked at (these name no real item: NOT_FOUND /
    404 means it was let through); gRPC and the console draw on the tenant's one bucket."""
    channel = create_channel(f"127.0.0.1:{settings.review_grpc_port}", api_key="umbrella-rev")
    stub = ReviewServiceStub(channel)

    async def by_grpc() -> str:
        verdict = ReviewVerdict(item_id=str(uuid.uuid4()), reviewer_id="rita",
                                verdict=Verdict.VERDICT_APPROVE)
        try:
            await stub.SubmitVerdict(SubmitVerdictRequest(verdict=verdict))
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                assert retry_after_s(exc) > 0
                return "refused"
            assert exc.code() == grpc.StatusCode.NOT_FOUND, exc
            return "let through"
        raise AssertionError("a verdict on no item succeeded")

    try:
        started = time.monotonic()
        first = [await by_grpc() for _ in range(BURST - 2)]
        async with aiohttp.ClientSession(headers={
                "Authorization": "Bearer umbrella-rev"}) as http:
            statuses = []
            for _ in range(6):
                async with http.post(
                        f"http://127.0.0.1:{settings.review_web_port}/api/items/"
                        f"{uuid.uuid4()}/verdict",
                        json={"verdict": "approve", "reviewer_id": "rita"}) as response:
                    statuses.append(response.status)
                    if response.status == 429:
                        assert int(response.headers["Retry-After"]) >= 1
                        assert int(response.headers["retry-after-ms"]) > 0
        last = await by_grpc()
        elapsed = time.monotonic() - started
        assert first == ["let through"] * (BURST - 2)
        assert set(statuses) <= {404, 429} and 429 in statuses, statuses
        let_through = len(first) + statuses.count(404) + (last == "let through")
        assert let_through <= bound(elapsed)
    finally:
        await channel.close()


@pytest.mark.usefixtures("services")
async def test_intake_over_the_rate_is_slowed_never_refused(settings: Settings,
                                                            replica_b: Settings) -> None:
    count = 12
    run = uuid.uuid4().hex[:8]
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers, "acks": "all"})
    for index in range(count):
        value = json.dumps({"tenant_id": "initech", "idempotency_key": f"{run}-{index}",
                            "kind": "support_ticket",
                            "document": {"body": f"Support ticket {index}: printer error"}})
        producer.produce(INTAKE.full_name(settings), key=f"{run}-{index}".encode(),
                         value=value.encode(),
                         headers=[("content-type", b"application/json")])
    assert producer.flush(60) == 0

    conn = await connect(settings)
    try:
        async def all_accepted() -> int:
            n = await conn.fetchval("SELECT count(*) FROM tasks WHERE tenant_id = 'initech' "
                                    "AND idempotency_key LIKE $1", f"{run}-%")
            return n if n >= count else 0

        assert await eventually(all_accepted, f"all {count} intake records accepted",
                                timeout_s=240, interval_s=0.5) == count
        assert await conn.fetchval("SELECT count(*) FROM dead_letters") == 0
    finally:
        await conn.close()
    # they went through slowed: records waited for the tenant's tokens (12 over a burst of 2)
    delayed = sum(metric_total(port, "switchyard_tenant_rate_limited_total", 'path="intake"')
                  for port in (settings.ingest_metrics_port, replica_b.ingest_metrics_port))
    assert delayed >= 1
