"""Open-item caps, the storm policy and SLA expiry, through the review service as it runs.

tests/review/test_review_backlog_db.py drives the admitter and the SLA keeper in-process with
policies built per test; here the same policies come from settings, as `switchyard run
review` reads them (``ReviewPolicy.from_settings``), and escalations arrive over the broker.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone

import asyncpg
import grpc
import pytest

from switchyard import Settings
from switchyard.messaging import ESCALATIONS, Producer
from switchyard.rpc import create_channel
from switchyard.storage import create_pool
from switchyard.v1 import (
    ClaimRequest,
    Decision,
    DecisionOutcome,
    Escalation,
    EscalationReason,
    ListQueueRequest,
    ReviewServiceStub,
    ReviewState,
    ReviewVerdict,
    SubmitVerdictRequest,
    Verdict,
)
from tests.cli.helpers import switchyard
from tests.polling import eventually
from tests.review.helpers import escalation, insert_tasks

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("review_process")]
CAP = 2


@pytest.fixture(scope="module")
def settings(settings: Settings) -> Settings:
    """A queue capped at CAP open items, a queue whose rate holds everything after its first
    item in the backlog (where the storm policy finds it), and a queue whose expired items
    take their tenant's default action (acme: reject)."""
    return settings.replace(
        api_keys="rev-acme:acme:reviewer", review_tenant_rate=0.0,
        review_queue_overrides=f"capped:1000:1000:{CAP},stormy:0.001:1:0,late:1000:1000:1",
        review_queue_expiry="expiring:default_action", review_default_actions="acme:reject",
        review_storm_after_s=1.0, review_storm_priority=3,
        review_admission_interval_ms=50.0, review_sla_interval_s=0.5)


@pytest.fixture(scope="module")
async def db(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(settings)
    yield pool
    await pool.close()


@pytest.fixture(scope="module")
async def producer(settings: Settings) -> AsyncIterator[Producer]:
    producer = Producer(settings)
    await producer.start()
    yield producer
    await producer.stop()


async def escalate(db: asyncpg.Pool, producer: Producer, queue: str, priority: int,
                   sla: datetime | None = None, step_id: str = "") -> Escalation:
    async with db.acquire() as conn:
        (task,) = await insert_tasks(conn, "acme", 1)
    esc = escalation(task, queue, priority, sla=sla, step_id=step_id,
                     reason=EscalationReason.ESCALATION_REASON_APPROVAL_STEP if step_id
                     else EscalationReason.ESCALATION_REASON_LOW_CONFIDENCE)
    await producer.send(ESCALATIONS, esc.task_id, esc)
    return esc


async def states(db: asyncpg.Pool, escalations: list[Escalation]) -> dict[str, str]:
    rows = await db.fetch("SELECT escalation_id::text, state FROM review_items "
                          "WHERE escalation_id = ANY($1::uuid[])",
                          [uuid.UUID(e.escalation_id) for e in escalations])
    return {r["escalation_id"]: r["state"] for r in rows}


async def item(db: asyncpg.Pool, esc: Escalation, state: str) -> asyncpg.Record:
    return await eventually(lambda: db.fetchrow(
        "SELECT item_id, state, resolution, decision_id FROM review_items "
        "WHERE escalation_id = $1 AND state = $2", uuid.UUID(esc.escalation_id), state),
        f"the item of {esc.task_id} to be {state}")


async def policy_decision(db: asyncpg.Pool, decision_id: uuid.UUID) -> asyncpg.Record:
    row = await db.fetchrow("SELECT source, outcome, rule FROM review_decisions "
                            "WHERE decision_id = $1", decision_id)
    assert row is not None, "the default action's decision was not stored"
    return row


async def test_a_capped_queue_keeps_the_rest_in_the_backlog_until_an_item_closes(
        settings: Settings, db: asyncpg.Pool, producer: Producer) -> None:
    sent = [await escalate(db, producer, "capped", 2) for _ in range(CAP + 2)]

    async def capped() -> dict[str, str] | None:
        seen = await states(db, sent)
        counts = sorted(seen.values())
        return seen if counts == ["BACKLOGGED"] * 2 + ["PENDING"] * CAP else None
    seen = await eventually(capped, f"{CAP} pending items and 2 in the backlog")

    # a reviewer closes one: exactly one waiting item takes its place
    pending = next(e for e in sent if seen[e.escalation_id] == "PENDING")
    item_id = str((await item(db, pending, "PENDING"))["item_id"])
    channel = create_channel(f"127.0.0.1:{settings.review_grpc_port}", "rev-acme")
    try:
        review = ReviewServiceStub(channel)
        # with API keys the reviewer is the key: reviewer_id left empty means the caller
        await review.Claim(ClaimRequest(item_id=item_id))
        await review.SubmitVerdict(SubmitVerdictRequest(verdict=ReviewVerdict(
            item_id=item_id, verdict=Verdict.VERDICT_APPROVE)))
    except grpc.aio.AioRpcError as exc:
        pytest.fail(f"the reviewer could not close the item: {exc.details()}")
    finally:
        await channel.close()

    async def refilled() -> dict[str, str] | None:
        counts = sorted((await states(db, sent)).values())
        return ({"counts": counts} if counts == ["BACKLOGGED"] + ["PENDING"] * CAP
                + ["RESOLVED"] else None)
    await eventually(refilled, "one backlogged item admitted in the closed one's place")


async def test_the_storm_policy_takes_the_default_action_for_p3_only(
        db: asyncpg.Pool, producer: Producer) -> None:
    first = await escalate(db, producer, "stormy", 1)
    await item(db, first, "PENDING")  # took the queue's only token; the rest must wait
    urgent = await escalate(db, producer, "stormy", 0)
    await item(db, urgent, "BACKLOGGED")
    low = await escalate(db, producer, "stormy", 3)

    stormed = await item(db, low, "RESOLVED")
    assert stormed["resolution"] == "storm:reject"
    decision = await policy_decision(db, stormed["decision_id"])
    assert (decision["source"], decision["outcome"], decision["rule"]) == (
        "POLICY", "REJECT", "review_default_reject")
    # the P0 item waited longer than the P3 one, yet the storm policy leaves it alone
    assert (await states(db, [urgent]))[urgent.escalation_id] == "BACKLOGGED"
    audit = await db.fetchval("SELECT action FROM audit_log WHERE task_id = $1 "
                              "AND action = 'review.default_action'", uuid.UUID(low.task_id))
    assert audit == "review.default_action"


async def test_an_item_past_its_sla_takes_its_tenants_default_action(
        db: asyncpg.Pool, producer: Producer) -> None:
    late = await escalate(db, producer, "expiring", 2,
                          sla=datetime.now(timezone.utc) - timedelta(minutes=5))
    expired = await item(db, late, "EXPIRED")
    assert expired["resolution"] == "expired:reject"
    decision = await policy_decision(db, expired["decision_id"])
    assert (decision["source"], decision["outcome"], decision["rule"]) == (
        "POLICY", "REJECT", "review_default_reject")
    assert await db.fetchval("SELECT count(*) FROM audit_log WHERE task_id = $1 "
                             "AND action = 'review.expired'", uuid.UUID(late.task_id)) == 1


async def test_an_expired_approval_step_takes_the_default_action_for_that_step(
        db: asyncpg.Pool, producer: Producer) -> None:
    """The queue policy answers an approval step the way a reviewer would: the decision
    names the step, and a reject carries the plan so the executor can compensate."""
    late = await escalate(db, producer, "expiring", 2, step_id="2-manager_ok",
                          sla=datetime.now(timezone.utc) - timedelta(minutes=5))
    expired = await item(db, late, "EXPIRED")
    assert expired["resolution"] == "expired:reject"
    decision = Decision.FromString(await db.fetchval(
        "SELECT decision FROM review_decisions WHERE decision_id = $1", expired["decision_id"]))
    assert decision.outcome == DecisionOutcome.DECISION_OUTCOME_REJECT
    assert decision.approves_step_id == "2-manager_ok"
    assert [s.step_id for s in decision.plan.steps] == ["1-post_invoice", "2-manager_ok"]
    assert (decision.pack, decision.pack_version) == ("expense_claim", "1.0.0")


async def test_an_item_the_throttle_held_past_its_sla_goes_to_reviewers_marked_late(
        settings: Settings, db: asyncpg.Pool, producer: Producer) -> None:
    """A queue at its cap held an item in the backlog until its SLA ran out, unseen. An
    outside review lead found it left there under `reassign` with a new deadline, listed
    after items that were not late, and counted nowhere (stats said "past SLA 0"). Now it is
    admitted past the cap, listed first, and counted late in stats and the metrics."""
    soon = datetime.now(timezone.utc) + timedelta(seconds=3)
    holder = await escalate(db, producer, "late", 2)            # takes the cap of 1
    await item(db, holder, "PENDING")
    first_due = await escalate(db, producer, "late", 0,         # on time, due first
                               sla=datetime.now(timezone.utc) + timedelta(minutes=10))
    lapsing = await escalate(db, producer, "late", 0, sla=soon)
    for esc in (first_due, lapsing):
        await item(db, esc, "BACKLOGGED")

    late = await item(db, lapsing, "PENDING")   # reassigned past the cap once its SLA ran out
    row = await db.fetchrow("SELECT priority, expiries, sla_deadline FROM review_items "
                            "WHERE item_id = $1", late["item_id"])
    assert (row["priority"], row["expiries"]) == (0, 1) and row["sla_deadline"] > soon
    assert (await states(db, [first_due]))[first_due.escalation_id] == "BACKLOGGED"

    channel = create_channel(f"127.0.0.1:{settings.review_grpc_port}", "rev-acme")
    try:
        listed = await ReviewServiceStub(channel).ListQueue(ListQueueRequest(
            queue="late", states=[ReviewState.REVIEW_STATE_BACKLOGGED,
                                  ReviewState.REVIEW_STATE_PENDING]))
    finally:
        await channel.close()
    # late first, though the other P0 item's deadline comes before its new one
    assert [i.item_id for i in listed.items][:2] == [
        str(late["item_id"]), str((await item(db, first_due, "BACKLOGGED"))["item_id"])]

    def metric() -> float | None:
        text = urllib.request.urlopen(
            f"http://127.0.0.1:{settings.review_metrics_port}/metrics", timeout=5).read()
        for line in text.decode().splitlines():
            if line.startswith('switchyard_review_late_items{queue="late"}'):
                return float(line.split()[-1])
        return None

    async def counted_late() -> bool:
        return await asyncio.to_thread(metric) == 1.0
    await eventually(counted_late, "the late item in switchyard_review_late_items", 30)
    stats = await asyncio.to_thread(switchyard, settings, "stats", "--once", "--json",
                                    "--tenant", "acme")
    assert stats.returncode == 0, stats.stderr
    (acme,) = [t for t in json.loads(stats.stdout) if t["tenant_id"] == "acme"]
    (queue,) = [q for q in acme["review_queues"] if q["queue"] == "late"]
    assert queue["past_sla"] == 1, queue
