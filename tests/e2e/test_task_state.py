"""State follows the task, on the real services: a task that ended never reaches a reviewer,
escalations go to the tenant's review queue whoever raises them, a REJECT ends the same way
whoever rejects, and a submission that names no priority is reviewed at normal priority.

The tenant ``acme`` has a decision policy that routes its escalations to ``acme-finance`` and
rejects support tickets; the executor reads the same policy directory. The decision service
runs as its own process so one test can hold it back while a task is cancelled.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import asyncpg
import grpc
import pytest
from aiokafka import AIOKafkaConsumer

from switchyard import Settings
from switchyard.messaging import ESCALATIONS, Producer
from switchyard.rpc import create_channel
from switchyard.runtime import service_specs
from switchyard.stack import EmbeddedStack
from switchyard.storage import create_pool
from switchyard.v1 import (
    CancelTaskRequest,
    ClaimRequest,
    Document,
    Escalation,
    EscalationReason,
    GetItemRequest,
    GetTaskRequest,
    IngestServiceStub,
    ListQueueRequest,
    ReviewItem,
    ReviewPriority,
    ReviewServiceStub,
    ReviewState,
    ReviewVerdict,
    Submission,
    SubmitTaskRequest,
    SubmitVerdictRequest,
    Task,
    TaskStatus,
    Verdict,
    WatchTaskRequest,
)
from tests.executor.harness import Harness, Service, decision, http_step
from tests.polling import eventually
from tests.terminal import TERMINAL_STATUSES

pytestmark = [pytest.mark.integration]
HELDOUT = Path(__file__).resolve().parents[2] / "models" / "data" / "router_heldout.jsonl"
QUEUE = "acme-finance"


def samples(label: str) -> list[str]:
    rows = [json.loads(line) for line in HELDOUT.read_text().splitlines()]
    return [r["text"] for r in rows if r["label"] == label and len(r["text"]) > 200]


@pytest.fixture(scope="module")
def settings(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    policies = tmp_path_factory.mktemp("policies")
    (policies / "acme.yaml").write_text(
        f"review_queue: {QUEUE}\nreject_labels: [other, support_ticket]\n"
        "reject_threshold: 0.3\n")
    return settings.replace(policy_dir=str(policies),
                            api_keys="sub:acme:submitter,rev:acme:reviewer")


@pytest.fixture(scope="module")
def services(settings: Settings, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[EmbeddedStack]:
    """Every service but the decision service (see ``decider``)."""
    stack = EmbeddedStack(settings, tmp_path_factory.mktemp("services"), components=(),
                          services=service_specs(settings, ("downstream", "ingest", "executor",
                                                            "review")))
    stack.start(timeout_s=90)
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def decider(settings: Settings, services: EmbeddedStack,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The decision service, not started: the first test starts it."""
    service = Service("decision", settings, tmp_path_factory.mktemp("decision"))
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="module")
async def db(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(settings)
    yield pool
    await pool.close()


@pytest.fixture
async def ingest(settings: Settings) -> AsyncIterator[IngestServiceStub]:
    channel = create_channel(f"127.0.0.1:{settings.ingest_grpc_port}", "sub")
    yield IngestServiceStub(channel)
    await channel.close()


@pytest.fixture
async def review(settings: Settings) -> AsyncIterator[ReviewServiceStub]:
    channel = create_channel(f"127.0.0.1:{settings.review_grpc_port}", "rev")
    yield ReviewServiceStub(channel)
    await channel.close()


def running(decider: Service) -> None:
    """Tests after the first need the decision service up (it holds it back at first)."""
    if decider.process is None:
        decider.start()


async def escalating(ingest: IngestServiceStub, index: int) -> str:
    """Submit an invoice as an admission form, with no priority: the router disagrees and
    the policy escalates it (kind_mismatch)."""
    response = await ingest.SubmitTask(SubmitTaskRequest(submission=Submission(
        tenant_id="acme", idempotency_key=uuid.uuid4().hex, kind="admission_form",
        document=Document(content_type="text/plain",
                          body=samples("invoice")[index].encode()))))
    return response.task_id


async def task_of(ingest: IngestServiceStub, task_id: str) -> Task:
    return (await ingest.GetTask(GetTaskRequest(task_id=task_id))).task


async def finished(ingest: IngestServiceStub, task_id: str) -> Task:
    async def done() -> Task | None:
        task = await task_of(ingest, task_id)
        return task if task.status in TERMINAL_STATUSES else None
    return await eventually(done, f"task {task_id} to finish", 120, 0.2)


async def listed(review: ReviewServiceStub, **filters: object) -> list[ReviewItem]:
    page = await review.ListQueue(ListQueueRequest(page_size=500, **filters))  # type: ignore
    return list(page.items)


async def pending_item(review: ReviewServiceStub, task_id: str) -> ReviewItem:
    async def find() -> ReviewItem | None:
        return next((i for i in await listed(review) if i.escalation.task_id == task_id), None)
    return await eventually(find, f"a review item for {task_id}", 120, 0.2)


async def console_items(settings: Settings) -> list[dict[str, object]]:
    async with aiohttp.ClientSession() as session, session.get(
            f"http://127.0.0.1:{settings.review_web_port}/api/items?state=pending,claimed,"
            "backlogged,resolved,expired", headers={"Authorization": "Bearer rev"}) as response:
        assert response.status == 200
        return (await response.json())["items"]  # type: ignore[no-any-return]


async def escalations_on_topic(settings: Settings, until_task: str) -> list[Escalation]:
    """Every escalation on the topic, read until the one of ``until_task`` shows up."""
    consumer = AIOKafkaConsumer(ESCALATIONS.full_name(settings),
                                bootstrap_servers=settings.kafka_bootstrap_servers,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    found: list[Escalation] = []
    try:
        async def read() -> bool:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                found.extend(Escalation.FromString(r.value) for r in records)
            return any(e.task_id == until_task for e in found)
        await eventually(read, f"the escalation of {until_task}", 120, 0)
    finally:
        await consumer.stop()
    return found


async def test_a_task_cancelled_before_its_decision_never_reaches_a_reviewer(
        settings: Settings, decider: Service, ingest: IngestServiceStub,
        review: ReviewServiceStub, db: asyncpg.Pool) -> None:
    cancelled = await escalating(ingest, 0)
    response = await ingest.CancelTask(CancelTaskRequest(task_id=cancelled, reason="mistake"))
    assert response.task.status == TaskStatus.TASK_STATUS_CANCELLED
    decider.start()  # the cancelled task is first on the tasks topic for it
    control = await escalating(ingest, 1)
    item = await pending_item(review, control)

    # the cancelled one: no escalation was ever published and no review item exists
    published = await escalations_on_topic(settings, control)
    assert cancelled not in {e.task_id for e in published}
    assert await db.fetchval("SELECT count(*) FROM review_items WHERE task_id = $1",
                             uuid.UUID(cancelled)) == 0
    assert (await task_of(ingest, cancelled)).status == TaskStatus.TASK_STATUS_CANCELLED

    # the control task shows where a task goes that names no priority and no queue
    assert item.escalation.queue == QUEUE  # the tenant's policy, not "default"
    # ... and the decision carries it on, for any later escalation of the task
    assert item.escalation.proposed_decision.review_queue == QUEUE
    assert item.priority == ReviewPriority.REVIEW_PRIORITY_P2  # normal, not P0
    assert item.escalation.priority == ReviewPriority.REVIEW_PRIORITY_P2
    shown = next(i for i in await console_items(settings) if i["task_id"] == control)
    assert (shown["priority"], shown["task_priority"]) == ("P2", "NORMAL")


async def test_cancelling_a_task_awaiting_review_withdraws_its_item(
        settings: Settings, decider: Service, ingest: IngestServiceStub,
        review: ReviewServiceStub, db: asyncpg.Pool) -> None:
    running(decider)
    task_id = await escalating(ingest, 2)
    item = await pending_item(review, task_id)
    await review.Claim(ClaimRequest(item_id=item.item_id))
    await ingest.CancelTask(CancelTaskRequest(task_id=task_id, reason="customer withdrew"))

    async def withdrawn() -> ReviewItem | None:
        got = (await review.GetItem(GetItemRequest(item_id=item.item_id))).item
        return got if got.state == ReviewState.REVIEW_STATE_WITHDRAWN else None
    closed = await eventually(withdrawn, "the item to be withdrawn", 120, 0.2)
    assert closed.resolution == "withdrawn:cancelled" and not closed.claimed_by

    # gone from every listing a reviewer has, gRPC and console alike
    assert task_id not in {i.escalation.task_id for i in await listed(review)}
    assert task_id not in {i.escalation.task_id for i in await listed(
        review, states=[ReviewState.REVIEW_STATE_PENDING, ReviewState.REVIEW_STATE_CLAIMED,
                        ReviewState.REVIEW_STATE_BACKLOGGED, ReviewState.REVIEW_STATE_RESOLVED,
                        ReviewState.REVIEW_STATE_EXPIRED])}
    assert task_id not in {i["task_id"] for i in await console_items(settings)}
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await listed(review, states=[ReviewState.REVIEW_STATE_WITHDRAWN])
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # the reviewer who held it cannot decide it any more
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await review.SubmitVerdict(SubmitVerdictRequest(verdict=ReviewVerdict(
            item_id=item.item_id, verdict=Verdict.VERDICT_APPROVE)))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "withdrawn" in (caught.value.details() or "")
    # recorded as such in the tenant's audit trail
    actions = [r["action"] for r in await db.fetch(
        "SELECT action FROM audit_log WHERE task_id = $1 ORDER BY entry_id", uuid.UUID(task_id))]
    assert "review.withdrawn" in actions
    assert (await task_of(ingest, task_id)).status == TaskStatus.TASK_STATUS_CANCELLED


async def test_an_escalation_arriving_after_its_task_ended_is_never_admitted(
        settings: Settings, decider: Service, ingest: IngestServiceStub,
        review: ReviewServiceStub, db: asyncpg.Pool) -> None:
    running(decider)
    task_id = await escalating(ingest, 3)
    await pending_item(review, task_id)
    await ingest.CancelTask(CancelTaskRequest(task_id=task_id, reason="duplicate"))
    await eventually(lambda: db.fetchval(
        "SELECT state = 'WITHDRAWN' FROM review_items WHERE task_id = $1",
        uuid.UUID(task_id)), "the first item to be withdrawn", 120, 0.2)

    # a late escalation of the ended task (a re-drive, a slow replica) comes in afterwards
    late = Escalation(escalation_id=str(uuid.uuid4()), task_id=task_id, tenant_id="acme",
                      queue=QUEUE, priority=ReviewPriority.REVIEW_PRIORITY_P1,
                      reason=EscalationReason.ESCALATION_REASON_SLA_AT_RISK,
                      reason_detail="late", service="executor")
    producer = Producer(settings)
    await producer.start()
    try:
        await producer.send(ESCALATIONS, task_id, late)
    finally:
        await producer.stop()
    row = await eventually(lambda: db.fetchrow(
        "SELECT state, resolution, admitted_at FROM review_items WHERE escalation_id = $1",
        uuid.UUID(late.escalation_id)), "the late escalation to be stored", 120, 0.2)
    assert (row["state"], row["resolution"], row["admitted_at"]) == (
        "WITHDRAWN", "withdrawn:cancelled", None)
    assert task_id not in {i.escalation.task_id for i in await listed(review)}
    assert task_id not in {i["task_id"] for i in await console_items(settings)}


async def test_model_reject_and_reviewer_reject_end_the_same_way(
        decider: Service, ingest: IngestServiceStub, review: ReviewServiceStub) -> None:
    running(decider)
    # the tenant's policy rejects support tickets outright (a model/policy REJECT)
    ticket = await ingest.SubmitTask(SubmitTaskRequest(submission=Submission(
        tenant_id="acme", idempotency_key=uuid.uuid4().hex,
        document=Document(content_type="text/plain",
                          body=samples("support_ticket")[0].encode()))))
    by_model = await finished(ingest, ticket.task_id)
    # and a reviewer rejects an escalated invoice (a human REJECT)
    task_id = await escalating(ingest, 4)
    item = await pending_item(review, task_id)
    await review.Claim(ClaimRequest(item_id=item.item_id))
    # the reviewer's reason quotes phone numbers as people write them: what the task tells
    # the client (GetTask, its events and webhooks) has them masked
    await review.SubmitVerdict(SubmitVerdictRequest(verdict=ReviewVerdict(
        item_id=item.item_id, verdict=Verdict.VERDICT_REJECT,
        reason="not ordered; call Tom on +44 7700 900456 or 020 7946 0958, "
               "server 66.249.91.109")))
    by_person = await finished(ingest, task_id)

    assert by_model.reason == "rejected:out_of_scope"
    assert by_person.reason == "rejected:reviewer_reject"
    failed = None
    async for reply in ingest.WatchTask(WatchTaskRequest(task_id=task_id)):
        if reply.event.status == TaskStatus.TASK_STATUS_FAILED:
            failed = reply.event
            break
    assert failed is not None
    assert "not ordered; call Tom on [PHONE REDACTED] or [PHONE REDACTED], server " \
        "[IP_ADDRESS REDACTED]" in failed.detail, failed.detail
    assert by_model.status == by_person.status == TaskStatus.TASK_STATUS_FAILED


async def test_an_executor_escalation_lands_in_the_tenants_queue(
        settings: Settings, decider: Service, review: ReviewServiceStub) -> None:
    running(decider)
    async with Harness(settings) as harness:
        (task_id,) = await harness.seed(1, tenant="acme")
        plan = [  # the undo points at a collection the ERP does not have: it fails for good
            http_step("1-book", "http://erp/bookings", {"amount": 5},
                      undo="http://erp/no_such_thing/{idempotency_key}"),
            http_step("2-charge", "http://erp/payments", {"amount": -1}),
        ]
        # the queue the decision service routed the tenant to (as the test above shows it
        # puts on every decision) is where the executor escalates
        routed = decision(task_id, "acme", plan)
        routed.review_queue = QUEUE
        await harness.send([routed])
    item = await pending_item(review, task_id)
    assert item.escalation.service == "executor"
    assert item.escalation.reason == EscalationReason.ESCALATION_REASON_COMPENSATION_FAILED
    assert item.escalation.queue == QUEUE  # the decision's queue, not "default"
    assert item.escalation.priority == ReviewPriority.REVIEW_PRIORITY_P1
    assert [i.item_id for i in await listed(review, queue=QUEUE)
            if i.escalation.task_id == task_id] == [item.item_id]
