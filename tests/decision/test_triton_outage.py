"""Triton stops mid-stream: tasks are held or escalated, none is lost, all complete after it returns.

This module runs its OWN Triton (the session's is shared with other tests) on the project's
model repository, and ingest and decision processes pointed at it. Two tenants: ``holdco``
(policy ``on_model_unavailable: hold``) and ``escco`` (the default: escalate). Tasks stream
in; Triton is stopped while they do, and started again later. A task has completed the
decision stage when its model decision is stored, published on the decisions topic and the
task moved on to EXECUTING (the executor's work is tested elsewhere). A held task's decision
is published in the trace its submission started (the hold keeps the trace context), and
``switchyard_decision_held_tasks{tenant}`` reports the holds PostgreSQL has.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from switchyard import Settings
from switchyard.messaging import DECISIONS, TASKS, headers_to_dict
from switchyard.rpc import create_channel
from switchyard.stack import EmbeddedStack, TritonServer, with_free_ports
from switchyard.storage import connect
from switchyard.v1 import (
    DecideRequest,
    Decision,
    DecisionOutcome,
    DecisionServiceStub,
    Document,
    GetTaskRequest,
    IngestServiceStub,
    Submission,
    SubmitTaskRequest,
    Task,
    TaskEnvelope,
    TaskStage,
    TaskStatus,
)
from tests.decision.documents import MODEL_REPOSITORY, sample
from tests.observed import metric_sum
from tests.services import running

pytestmark = pytest.mark.integration
DOCS = [sample("admission_form", i) for i in range(4)] + [sample("support_ticket", 0)]


@pytest.fixture(scope="module")
def own_triton(settings: Settings, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[TritonServer]:
    state = tmp_path_factory.mktemp("own-triton")
    triton = TritonServer(with_free_ports(settings.replace(state_dir=state)), state,
                          model_repository=MODEL_REPOSITORY)
    triton.start(timeout_s=120)
    try:
        yield triton
    finally:
        triton.stop()


@pytest.fixture(scope="module")
def outage_settings(settings: Settings, own_triton: TritonServer,
                    tmp_path_factory: pytest.TempPathFactory) -> Settings:
    policies = tmp_path_factory.mktemp("policies")
    (policies / "holdco.yaml").write_text("on_model_unavailable: hold\n")
    (policies / "escco.yaml").write_text("on_model_unavailable: escalate\n")
    return settings.replace(triton_url=own_triton.grpc_url, policy_dir=str(policies),
                            breaker_fail_max=2, breaker_reset_s=1.0, hold_retry_s=0.5,
                            triton_timeout_s=2.0, router_shadow_version="")


@pytest.fixture(scope="module")
def services(outage_settings: Settings, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[EmbeddedStack]:
    with running(outage_settings, tmp_path_factory.mktemp("outage"), ("ingest", "decision")) as stack:
        yield stack


@pytest.fixture
async def ingest(outage_settings: Settings, services: EmbeddedStack
                 ) -> AsyncIterator[IngestServiceStub]:
    channel = create_channel(f"127.0.0.1:{outage_settings.ingest_grpc_port}")
    yield IngestServiceStub(channel)
    await channel.close()


async def statuses(ingest: IngestServiceStub, ids: list[str]) -> list[Task]:
    return [(await ingest.GetTask(GetTaskRequest(task_id=i))).task for i in ids]


async def wait_until(ingest: IngestServiceStub, ids: list[str], done: object,
                     timeout_s: float = 120) -> list[Task]:
    deadline = time.monotonic() + timeout_s
    while True:
        tasks = await statuses(ingest, ids)
        if all(done(t) for t in tasks):  # type: ignore[operator]
            return tasks
        if time.monotonic() > deadline:
            pending = [(t.envelope.task_id, TaskStatus.Name(t.status), t.reason)
                       for t in tasks if not done(t)]  # type: ignore[operator]
            raise AssertionError(f"{len(pending)} tasks not there yet: {pending[:5]}")
        await asyncio.sleep(0.25)


def decided(t: Task) -> bool:
    """The models decided and the task went on to the executor."""
    return t.stage in (TaskStage.TASK_STAGE_EXECUTING, TaskStage.TASK_STAGE_DONE) \
        and t.reason != "model_unavailable"


def unavailable(t: Task) -> bool:
    return t.status == TaskStatus.TASK_STATUS_BLOCKED and t.reason == "model_unavailable"


async def test_stopping_triton_holds_or_escalates_and_held_tasks_complete_after_it_returns(
        ingest: IngestServiceStub, own_triton: TritonServer, outage_settings: Settings,
        services: EmbeddedStack) -> None:
    submitted: dict[str, list[str]] = {"holdco": [], "escco": []}
    stop_submitting = asyncio.Event()

    async def stream() -> None:
        i = 0
        while not stop_submitting.is_set():
            for tenant in submitted:
                response = await ingest.SubmitTask(SubmitTaskRequest(submission=Submission(
                    tenant_id=tenant, idempotency_key=uuid.uuid4().hex,
                    document=Document(content_type="text/plain",
                                      body=DOCS[i % len(DOCS)].encode()))))
                submitted[tenant].append(response.task_id)
            i += 1
            await asyncio.sleep(0.05)

    streaming = asyncio.create_task(stream())
    await asyncio.sleep(1.0)
    before = {t: list(ids) for t, ids in submitted.items()}
    await asyncio.to_thread(own_triton.stop)  # mid-stream
    stopped_at = {t: len(ids) for t, ids in submitted.items()}
    await asyncio.sleep(2.0)
    stop_submitting.set()
    await streaming
    during = {t: ids[stopped_at[t]:] for t, ids in submitted.items()}
    assert all(len(ids) >= 5 for ids in during.values())

    # while Triton is down: held (BLOCKED, model_unavailable) or escalated to review
    held = await wait_until(ingest, during["holdco"], unavailable, timeout_s=60)
    assert {t.stage for t in held} == {TaskStage.TASK_STAGE_DECIDING}  # waiting for models
    escalated = await wait_until(ingest, during["escco"], unavailable, timeout_s=60)
    assert {t.stage for t in escalated} == {TaskStage.TASK_STAGE_AWAITING_REVIEW}
    await wait_until(ingest, before["holdco"] + before["escco"],
                     lambda t: decided(t) or unavailable(t), timeout_s=60)
    # the held-tasks gauge is the count of holds in PostgreSQL, per tenant (every
    # task is decided or held now, so the count stays put until Triton is back)
    conn = await connect(outage_settings)
    try:
        holds = dict(await conn.fetch(
            "SELECT tenant_id, count(*) FROM decision_holds GROUP BY tenant_id"))
    finally:
        await conn.close()
    assert set(holds) == {"holdco"} and holds["holdco"] >= len(during["holdco"])
    await eventually_held(outage_settings, "holdco", holds["holdco"])
    # the sync path answers at once too: a person decides
    channel = create_channel(f"127.0.0.1:{outage_settings.decision_grpc_port}")
    try:
        reply = await DecisionServiceStub(channel).Decide(DecideRequest(task=TaskEnvelope(
            task_id=str(uuid.uuid4()), tenant_id="holdco",
            document=Document(content_type="text/plain", body=DOCS[0].encode()))))
    finally:
        await channel.close()
    assert (reply.decision.rule, reply.decision.outcome) == (
        "model_unavailable", DecisionOutcome.DECISION_OUTCOME_ESCALATE)
    assert "circuit open" in reply.decision.explanation or "unavailable" in \
        reply.decision.explanation.lower()
    # a submitted kind with a pack: the person gets that pack's proposal, its fields read by
    # its extractor and its plan, so an approval opens the ticket (not "0 steps done")
    channel = create_channel(f"127.0.0.1:{outage_settings.decision_grpc_port}")
    try:
        kinded = (await DecisionServiceStub(channel).Decide(DecideRequest(task=TaskEnvelope(
            task_id=str(uuid.uuid4()), tenant_id="escco", kind="support_ticket",
            document=Document(content_type="text/plain", body=DOCS[4].encode()))))).decision
    finally:
        await channel.close()
    assert (kinded.rule, kinded.label, kinded.pack) == (
        "model_unavailable", "support_ticket", "support_ticket")
    assert [s.name for s in kinded.plan.steps] and kinded.fields, kinded
    assert not reply.decision.plan.steps   # no kind, no router: no type, so no plan

    # the outage is in the decision service's log at once (an outside operator found only
    # `switchyard status` saying so), and in the counter SwitchyardInferencePoolFailing
    # alerts on (Triton's own failure counter is gone with Triton)
    log_text = (Path(services.state_dir) / "logs" / "decision.log").read_text()
    assert "Triton pool primary did not answer a document_router request" in log_text
    metrics = urllib.request.urlopen(
        f"http://127.0.0.1:{outage_settings.decision_metrics_port}/metrics", timeout=10
    ).read().decode()
    assert re.search(r'^switchyard_inference_pool_failures_total\{model="document_router",'
                     r'pool="primary"\} [1-9]', metrics, re.M), "no failures counted"

    await asyncio.to_thread(own_triton.start, 120)
    # every held task is decided by the models and handed on; nothing was lost
    await wait_until(ingest, submitted["holdco"], decided, timeout_s=120)
    conn = await connect(outage_settings)
    try:
        assert await conn.fetchval("SELECT count(*) FROM decision_holds") == 0
        rules = dict(await conn.fetch(
            "SELECT tenant_id, array_agg(DISTINCT rule) FROM decisions "
            "WHERE task_id = ANY($1::uuid[]) GROUP BY tenant_id",
            [*during["holdco"], *during["escco"]]))
        history = await conn.fetch(
            "SELECT status, reason FROM task_status_history WHERE task_id = $1 ORDER BY seq",
            uuid.UUID(during["holdco"][0]))
        decisions = await conn.fetchval("SELECT count(*) FROM decisions WHERE task_id = ANY($1)",
                                      [uuid.UUID(i) for ids in submitted.values() for i in ids])
    finally:
        await conn.close()
    assert rules["holdco"] == ["confident_route"]  # decided by the models, after the outage
    assert rules["escco"] == ["model_unavailable"]  # a person decides these
    steps = [(r["status"], r["reason"]) for r in history]
    assert steps[0][0] == "QUEUED"
    held_at = steps.index(("BLOCKED", "model_unavailable"))
    assert steps[held_at + 1] == ("IN_PROGRESS", "confident_route")
    assert decisions == sum(len(ids) for ids in submitted.values())  # one decision per task
    # escalated tasks stay visibly in review for a person
    assert all(unavailable(t) for t in await statuses(ingest, during["escco"]))
    # and every held task's decision went out on the decisions topic, in the task's trace
    published = await published_decisions(outage_settings, set(submitted["holdco"]))
    assert set(published) == set(submitted["holdco"])
    submitted_in = await trace_ids(outage_settings, TASKS, set(during["holdco"]))
    left = {t for t in during["holdco"] if published[t] != submitted_in[t]}
    assert not left, f"{len(left)} held task(s) decided in another trace than their submission"
    await eventually_held(outage_settings, "holdco", 0)


async def published_decisions(settings: Settings, wanted: set[str], timeout_s: float = 60
                              ) -> dict[str, str]:
    """Task id -> trace id (from ``traceparent``) of each wanted task's decision record."""
    return await trace_ids(settings, DECISIONS, wanted, timeout_s)


async def trace_ids(settings: Settings, topic: object, wanted: set[str],
                    timeout_s: float = 60) -> dict[str, str]:
    """Task id (the record key) -> trace id of the last record for it on ``topic``."""
    consumer = AIOKafkaConsumer(topic.full_name(settings),  # type: ignore[attr-defined]
                                bootstrap_servers=settings.kafka_bootstrap_servers,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    seen: dict[str, str] = {}
    try:
        deadline = time.monotonic() + timeout_s
        while not wanted <= set(seen) and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for r in records:
                    if r.key and r.key.decode() in wanted:
                        parent = headers_to_dict(r.headers).get("traceparent", "")
                        seen[r.key.decode()] = parent.split("-")[1] if parent else ""
    finally:
        await consumer.stop()
    return seen


async def eventually_held(settings: Settings, tenant: str, count: int,
                          timeout_s: float = 60) -> None:
    """Wait until decision's /metrics reports ``count`` held tasks for ``tenant``."""
    url = f"http://127.0.0.1:{settings.decision_metrics_port}/metrics"
    pattern = re.compile(rf'^switchyard_decision_held_tasks\{{tenant="{re.escape(tenant)}"\}} '
                         r"(\S+)$", re.M)
    deadline = time.monotonic() + timeout_s
    while True:
        text = urllib.request.urlopen(url, timeout=10).read().decode()
        found = pattern.search(text)
        if found and float(found.group(1)) == count:
            return
        assert time.monotonic() < deadline, \
            f"held tasks of {tenant}: {found.group(1) if found else 'no series'}, want {count}"
        await asyncio.sleep(0.25)


async def test_a_triton_busy_past_the_deadline_gets_the_batch_again_and_decides(
        own_triton: TritonServer, outage_settings: Settings, services: EmbeddedStack) -> None:
    """Triton frozen for longer than a request's deadline (2 s here) but less than the
    retries' span: the batch that timed out is sent again and the models decide; no person
    gets a task because Triton was busy for a moment (triton_deadline_retries)."""
    channel = create_channel(f"127.0.0.1:{outage_settings.decision_grpc_port}")
    stub = DecisionServiceStub(channel)

    async def decide() -> Decision:
        reply = await stub.Decide(DecideRequest(task=TaskEnvelope(
            task_id=str(uuid.uuid4()), tenant_id="escco",
            document=Document(content_type="text/plain", body=DOCS[0].encode()))))
        return reply.decision

    try:
        # Triton answers (the test before this one restarted it; the breaker has closed)
        await eventually_decided_by_models(decide)
        retried = metric_sum(outage_settings.decision_metrics_port,
                             "switchyard_triton_deadline_retries_total")
        assert own_triton.process is not None and own_triton.process.pid is not None
        os.kill(own_triton.process.pid, signal.SIGSTOP)
        try:
            deciding = asyncio.create_task(decide())
            await asyncio.sleep(3.0)   # the first send has timed out; the second is waiting
        finally:
            os.kill(own_triton.process.pid, signal.SIGCONT)
        decision = await deciding
    finally:
        await channel.close()
    assert decision.rule == "confident_route", (decision.rule, decision.explanation)
    assert metric_sum(outage_settings.decision_metrics_port,
                      "switchyard_triton_deadline_retries_total", 'model="document_router"'
                      ) > retried


async def eventually_decided_by_models(decide: Callable[[], Awaitable[Decision]],
                                       timeout_s: float = 60) -> None:
    """Wait until a Decide call is answered by the models (not ``model_unavailable``)."""
    deadline = time.monotonic() + timeout_s
    while True:
        decision = await decide()
        if decision.rule != "model_unavailable":
            return
        assert time.monotonic() < deadline, decision.explanation
        await asyncio.sleep(0.5)
