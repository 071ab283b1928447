"""Admission, SLA handling and the storm policy against the real PostgreSQL (and broker).

The admitter and SLA keeper run in-process here with policies built per test, so each rule is
checked deterministically: where a test needs tokens to refill it moves the stored bucket's
refill time back instead of sleeping, and deadlines are set in the past or far away.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer

from services.review.admission import Admitter
from services.review.desk import ReviewDesk
from services.review.policies import Limit, QueueLimits, ReviewPolicy
from services.review.queue import ReviewError, ReviewQueue
from services.review.resolutions import DecisionPublisher
from services.review.sla import SlaKeeper
from switchyard import Settings
from switchyard.access import DEV_PRINCIPAL
from switchyard.messaging import DECISIONS, Producer
from switchyard.storage import create_pool
from switchyard.v1 import (
    ClaimRequest,
    Decision,
    DecisionOutcome,
    DecisionSource,
    ReviewVerdict,
    Verdict,
)
from tests.review.helpers import escalation, insert_tasks

pytestmark = pytest.mark.integration


def base_policy(**changes: object) -> ReviewPolicy:
    """Everything unlimited unless the test says otherwise."""
    unlimited: dict[str, object] = {"tenant_limit": Limit(0.0, 0),
                                    "queue_default": QueueLimits(Limit(0.0, 0), 0)}
    return replace(ReviewPolicy.from_settings(Settings()), **{**unlimited, **changes})


@pytest.fixture(scope="module")
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(settings)
    yield pool
    await pool.close()


@pytest.fixture(scope="module")
async def publisher(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[DecisionPublisher]:
    producer = Producer(settings)
    await producer.start()
    yield DecisionPublisher(pool, producer)
    await producer.stop()


async def enqueue(pool: asyncpg.Pool, tenant: str, queue: str, priorities: list[int],
                  **kwargs: object) -> list[str]:
    """Escalations of fresh tasks into the backlog, in the given order; returns item ids."""
    async with pool.acquire() as conn:
        tasks = await insert_tasks(conn, tenant, len(priorities))
    ids = []
    for task, priority in zip(tasks, priorities):
        esc = escalation(task, queue, priority, **kwargs)  # type: ignore[arg-type]
        assert await ReviewQueue(pool).enqueue(esc)
        assert not await ReviewQueue(pool).enqueue(esc)  # a redelivery adds nothing
        ids.append(await pool.fetchval(
            "SELECT item_id::text FROM review_items WHERE escalation_id = $1",
            uuid.UUID(esc.escalation_id)))
    return ids


async def states(pool: asyncpg.Pool, ids: list[str]) -> dict[str, asyncpg.Record]:
    rows = await pool.fetch("SELECT item_id::text AS id, * FROM review_items "
                            "WHERE item_id = ANY($1::uuid[])", ids)
    return {r["id"]: r for r in rows}


async def test_backlog_is_admitted_by_tenant_bucket_in_priority_order(
        pool: asyncpg.Pool) -> None:
    tenant_a, tenant_b = f"a-{uuid.uuid4().hex[:6]}", f"b-{uuid.uuid4().hex[:6]}"
    # 0.001 tokens/s: nothing refills while the test runs unless the test moves the clock.
    admitter = Admitter(pool, base_policy(tenant_limit=Limit(0.001, 3)))
    a = await enqueue(pool, tenant_a, "bucket-q", [3, 1, 2, 0, 3, 1])
    b = await enqueue(pool, tenant_b, "bucket-q", [3, 3])
    await admitter.tick()
    rows = await states(pool, a + b)
    admitted = {i for i, r in rows.items() if r["state"] == "PENDING"}
    assert admitted == {a[3], a[1], a[5], b[0], b[1]}  # A's P0, then its two P1s, oldest first
    assert all(rows[i]["state"] == "BACKLOGGED" and rows[i]["admitted_at"] is None
               for i in set(a) - admitted)

    await admitter.tick()  # no tokens left: nothing moves, nothing is lost
    assert {i for i, r in (await states(pool, a)).items() if r["state"] == "PENDING"} \
        == {a[3], a[1], a[5]}

    # 2000 s at 0.001/s = 2 tokens for tenant A
    await pool.execute("UPDATE review_buckets SET refilled_at = refilled_at - interval "
                       "'2000 seconds' WHERE scope = 'tenant' AND key = $1", tenant_a)
    await admitter.tick()
    rows = await states(pool, a)
    assert {i for i, r in rows.items() if r["state"] == "PENDING"} == {a[3], a[1], a[5], a[2],
                                                                         a[0]}
    assert rows[a[4]]["state"] == "BACKLOGGED"


async def test_open_item_cap_holds_until_items_are_resolved(
        pool: asyncpg.Pool, publisher: DecisionPublisher) -> None:
    queue = f"cap-{uuid.uuid4().hex[:6]}"
    policy = base_policy(queue_overrides={queue: QueueLimits(Limit(0.0, 0), 2)})
    admitter = Admitter(pool, policy)
    ids = await enqueue(pool, "acme", queue, [2, 2, 2, 2])
    await admitter.tick()
    open_ids = [i for i, r in (await states(pool, ids)).items() if r["state"] == "PENDING"]
    assert sorted(open_ids) == sorted(ids[:2])

    desk = ReviewDesk(pool, ReviewQueue(pool), publisher, policy)
    await desk.claim(DEV_PRINCIPAL, ClaimRequest(item_id=ids[0], reviewer_id="ana"))
    await admitter.tick()
    assert (await states(pool, ids))[ids[2]]["state"] == "BACKLOGGED"  # claimed is still open
    await desk.submit_verdict(DEV_PRINCIPAL, ReviewVerdict(
        item_id=ids[0], reviewer_id="ana", verdict=Verdict.VERDICT_APPROVE))
    await admitter.tick()
    rows = await states(pool, ids)
    assert [rows[i]["state"] for i in ids] == ["RESOLVED", "PENDING", "PENDING", "BACKLOGGED"]
    with pytest.raises(ReviewError, match="waiting for admission"):
        await desk.claim(DEV_PRINCIPAL, ClaimRequest(item_id=ids[3], reviewer_id="ben"))


async def test_storm_policy_gives_old_p3_backlog_the_tenants_default_action(
        pool: asyncpg.Pool, publisher: DecisionPublisher) -> None:
    queue, tenant, other = (f"storm-{uuid.uuid4().hex[:6]}", f"s-{uuid.uuid4().hex[:6]}",
                            f"n-{uuid.uuid4().hex[:6]}")
    policy = base_policy(queue_overrides={queue: QueueLimits(Limit(0.001, 1), 0)},
                         storm_after=timedelta(milliseconds=300),
                         default_actions={tenant: "reject"})
    p3s = await enqueue(pool, tenant, queue, [3, 3, 3])
    p1 = await enqueue(pool, tenant, queue, [1])
    keeps = await enqueue(pool, other, queue, [3])  # no default action: it waits on
    await Admitter(pool, policy).tick()
    await asyncio.sleep(0.4)  # older than storm_after
    report = await SlaKeeper(pool, policy, publisher).tick()
    assert report.stormed == 3
    rows = await states(pool, p3s + p1 + keeps)
    assert rows[p1[0]]["state"] == "PENDING"
    assert rows[keeps[0]]["state"] == "BACKLOGGED"
    for item in p3s:
        assert (rows[item]["state"], rows[item]["resolution"]) == ("RESOLVED", "storm:reject")
        assert rows[item]["decision_published_at"] is not None
        decision = Decision.FromString(await pool.fetchval(
            "SELECT decision FROM review_decisions WHERE decision_id = $1",
            rows[item]["decision_id"]))
        assert decision.source == DecisionSource.DECISION_SOURCE_POLICY
        assert decision.outcome == DecisionOutcome.DECISION_OUTCOME_REJECT
        assert "escalation storm" in decision.explanation
    actions = await pool.fetch("SELECT detail FROM audit_log WHERE tenant_id = $1 "
                               "AND action = 'review.default_action'", tenant)
    assert len(actions) == 3


async def test_sla_bump_then_expiry_policies(pool: asyncpg.Pool,
                                             publisher: DecisionPublisher) -> None:
    tenant, bare = f"sla-{uuid.uuid4().hex[:6]}", f"bare-{uuid.uuid4().hex[:6]}"
    policy = base_policy(sla_bump=timedelta(minutes=10), reassign_extension=timedelta(hours=1),
                         expiry_overrides={"q-re": "reassign", "q-def": "default_action",
                                           "q-fail": "fail"},
                         default_actions={tenant: "approve"})
    keeper = SlaKeeper(pool, policy, publisher)
    now = datetime.now(timezone.utc)
    soon = await enqueue(pool, tenant, "q-re", [2], sla=now + timedelta(minutes=5))
    later = await enqueue(pool, tenant, "q-re", [2], sla=now + timedelta(hours=5))
    past = datetime.now(timezone.utc) - timedelta(seconds=1)
    reassign = await enqueue(pool, tenant, "q-re", [2], sla=past)
    default = await enqueue(pool, tenant, "q-def", [3], sla=past)
    no_default = await enqueue(pool, bare, "q-def", [3], sla=past)
    fail = await enqueue(pool, tenant, "q-fail", [1], sla=past)
    await Admitter(pool, policy).tick()
    desk = ReviewDesk(pool, ReviewQueue(pool), publisher, policy)
    await desk.claim(DEV_PRINCIPAL, ClaimRequest(item_id=reassign[0], reviewer_id="ana"))

    report = await keeper.tick()
    assert report.bumped >= 1 and report.reassigned == 1 and report.expired == 3
    rows = await states(pool, soon + later + reassign + default + no_default + fail)
    assert (rows[soon[0]]["priority"], rows[soon[0]]["base_priority"]) == (1, 2)
    assert rows[later[0]]["priority"] == 2

    moved = rows[reassign[0]]
    assert (moved["state"], moved["claimed_by"], moved["priority"], moved["expiries"]) == \
        ("PENDING", None, 0, 1)
    assert moved["sla_deadline"] > datetime.now(timezone.utc) + timedelta(minutes=50)
    with pytest.raises(ReviewError, match="not claimed by ana"):  # the old holder lost it
        await desk.submit_verdict(DEV_PRINCIPAL, ReviewVerdict(
            item_id=reassign[0], reviewer_id="ana", verdict=Verdict.VERDICT_APPROVE))

    expected = {default[0]: ("expired:approve", DecisionOutcome.DECISION_OUTCOME_AUTO_EXECUTE),
                no_default[0]: ("expired:fail", DecisionOutcome.DECISION_OUTCOME_REJECT),
                fail[0]: ("expired:fail", DecisionOutcome.DECISION_OUTCOME_REJECT)}
    for item, (resolution, outcome) in expected.items():
        assert (rows[item]["state"], rows[item]["resolution"]) == ("EXPIRED", resolution)
        decision = Decision.FromString(await pool.fetchval(
            "SELECT decision FROM review_decisions WHERE decision_id = $1",
            rows[item]["decision_id"]))
        assert decision.outcome == outcome
        assert bool(decision.plan.steps) == (outcome ==
                                             DecisionOutcome.DECISION_OUTCOME_AUTO_EXECUTE)
    audit = await pool.fetch("SELECT detail::text FROM audit_log WHERE action = "
                             "'review.expired' AND tenant_id = ANY($1::text[])", [tenant, bare])
    assert len(audit) == 4 and any('"held_by": "ana"' in r["detail"] for r in audit)
    assert (await keeper.tick()).expired == 0  # handled once


async def test_unacknowledged_decisions_are_published_again(
        settings: Settings, pool: asyncpg.Pool, publisher: DecisionPublisher) -> None:
    tenant = f"out-{uuid.uuid4().hex[:6]}"
    policy = base_policy(expiry_default="fail")
    ids = await enqueue(pool, tenant, "outbox-q", [2],
                        sla=datetime.now(timezone.utc) - timedelta(seconds=1))
    await SlaKeeper(pool, policy, publisher).tick()
    # as if the process died between the commit and the broker's acknowledgement
    await pool.execute("UPDATE review_items SET decision_published_at = NULL, resolved_at = "
                       "resolved_at - interval '1 minute' WHERE item_id = $1::uuid", ids[0])
    assert await publisher.sweep() >= 1
    row = (await states(pool, ids))[ids[0]]
    assert row["decision_published_at"] is not None

    consumer = AIOKafkaConsumer(DECISIONS.full_name(settings),
                                bootstrap_servers=settings.kafka_bootstrap_servers,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        seen = 0
        for _ in range(40):
            for records in (await consumer.getmany(timeout_ms=500)).values():
                seen += sum(Decision.FromString(r.value).decision_id == str(row["decision_id"])
                            for r in records)
            if seen >= 2:
                break
        assert seen == 2  # published at close, and again by the sweep
    finally:
        await consumer.stop()


async def test_a_default_approve_never_replaces_four_eyes(
        pool: asyncpg.Pool, publisher: DecisionPublisher) -> None:
    """Expired four-eyes items fail instead of being approved by the tenant's default; the
    storm policy leaves them waiting for people (a default reject may still close them)."""
    approver, rejecter = f"ap-{uuid.uuid4().hex[:6]}", f"rj-{uuid.uuid4().hex[:6]}"
    queue = f"fe-{uuid.uuid4().hex[:6]}"
    policy = base_policy(expiry_overrides={queue: "default_action"},
                         queue_overrides={f"{queue}-storm": QueueLimits(Limit(0.001, 1), 0)},
                         storm_after=timedelta(milliseconds=300),
                         default_actions={approver: "approve", rejecter: "reject"})
    past = datetime.now(timezone.utc) - timedelta(seconds=1)
    expired = await enqueue(pool, approver, queue, [2], sla=past, four_eyes=True)
    single = await enqueue(pool, approver, queue, [2], sla=past)
    # the first item of each tenant takes the storm queue's only token; the rest wait
    await enqueue(pool, approver, f"{queue}-storm", [1])
    await enqueue(pool, rejecter, f"{queue}-storm", [1])
    await Admitter(pool, policy).tick()
    waits = await enqueue(pool, approver, f"{queue}-storm", [3], four_eyes=True)
    stormed = await enqueue(pool, rejecter, f"{queue}-storm", [3], four_eyes=True)
    await asyncio.sleep(0.4)  # older than storm_after
    await SlaKeeper(pool, policy, publisher).tick()
    rows = await states(pool, expired + single + waits + stormed)
    assert rows[expired[0]]["resolution"] == "expired:fail"
    assert rows[single[0]]["resolution"] == "expired:approve"
    assert rows[waits[0]]["state"] == "BACKLOGGED"
    assert rows[stormed[0]]["resolution"] == "storm:reject"
    note = await pool.fetchval("SELECT detail->>'note' FROM audit_log WHERE task_id = $1 "
                               "AND action = 'review.expired'", rows[expired[0]]["task_id"])
    assert note and note.startswith("four eyes")


async def test_within_a_priority_the_nearest_deadline_is_admitted_first(
        pool: asyncpg.Pool) -> None:
    """Two items of one priority wait under a full cap: the one due first goes first, though
    it came second (an outside review lead watched a P0 due in 3 minutes wait behind one due
    in 8, and breach its SLA in the backlog)."""
    tenant, queue = f"due-{uuid.uuid4().hex[:6]}", f"due-q-{uuid.uuid4().hex[:6]}"
    policy = base_policy(queue_default=QueueLimits(Limit(0.0, 0), 1))
    now = datetime.now(timezone.utc)
    (later,) = await enqueue(pool, tenant, queue, [1], sla=now + timedelta(hours=2))
    (sooner,) = await enqueue(pool, tenant, queue, [1], sla=now + timedelta(minutes=20))
    admitted = await Admitter(pool, policy).tick()
    assert [str(c.item_id) for c in admitted] == [sooner]
    rows = await states(pool, [later, sooner])
    assert (rows[sooner]["state"], rows[later]["state"]) == ("PENDING", "BACKLOGGED")
