"""The reconciler's re-drive: published, unfinished tasks whose records were lost are
published again from PostgreSQL, unless something durable owns them; repeats back off. And its
re-mirror: an ended task whose review item is still open gets its terminal status event again.

Drives ``redrive_stalled`` in-process against the real PostgreSQL and broker, with task rows
put in each state the way the services leave them. The chaos suite (tests/chaos) covers the
same path end to end, through a real broker restart.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from services.ingest.publisher import Publisher
from services.ingest.reconciler import EndingMirror, redrive_stalled
from services.ingest.service import item_for
from switchyard import Settings
from switchyard.messaging import TASK_STATUS, TASKS, headers_to_dict
from switchyard.telemetry import configure_tracing
from switchyard.v1 import StatusEvent, TaskEnvelope, TaskSource, TaskStatus
from tests.ingest.helpers import read_topic, running_publisher, submission

AFTER_S = 60.0


@pytest.fixture
async def publisher(settings: Settings) -> AsyncIterator[Publisher]:
    async with running_publisher(settings) as publisher:
        yield publisher


async def accepted_task(publisher: Publisher, status: str, stage: str) -> str:
    """A task accepted and published, then moved to ``status``/``stage`` long ago."""
    item = item_for(submission(), TaskSource.TASK_SOURCE_GRPC)
    accepted = await publisher.accept(item)
    await publisher.pool.execute(
        "UPDATE tasks SET status = $2, stage = $3, updated_at = now() - interval '10 minutes' "
        "WHERE task_id = $1", uuid.UUID(accepted.task_id), status, stage)
    return accepted.task_id


async def test_redrives_only_tasks_nothing_owns(settings: Settings,
                                                publisher: Publisher) -> None:
    pool = publisher.pool
    lost_queued = await accepted_task(publisher, "QUEUED", "INGESTED")
    lost_executing = await accepted_task(publisher, "IN_PROGRESS", "EXECUTING")
    done = await accepted_task(publisher, "SUCCEEDED", "DONE")
    in_review = await accepted_task(publisher, "BLOCKED", "AWAITING_REVIEW")
    executing = await accepted_task(publisher, "IN_PROGRESS", "EXECUTING")
    held = await accepted_task(publisher, "BLOCKED", "DECIDING")
    fresh = (await publisher.accept(item_for(submission(), TaskSource.TASK_SOURCE_GRPC))).task_id
    await own(pool, in_review, executing, held)

    async with pool.acquire() as conn:
        assert await redrive_stalled(conn, publisher, AFTER_S) == 2
        # backed off: the same tasks are not sent again right away
        assert await redrive_stalled(conn, publisher, AFTER_S) == 0
    rows = {str(r["task_id"]): r for r in await pool.fetch(
        "SELECT task_id, redrives, redriven_at FROM tasks")}
    assert {t for t, r in rows.items() if r["redrives"]} == {lost_queued, lost_executing}
    assert not rows[done]["redrives"] and not rows[fresh]["redrives"]

    def replays(records: list) -> list[TaskEnvelope]:
        return [e for e in (TaskEnvelope.FromString(r.value) for r in records)
                if e.source == TaskSource.TASK_SOURCE_REPLAY]

    records = await read_topic(settings, TASKS, lambda got: len(replays(got)) >= 2)
    assert {e.task_id for e in replays(records)} == {lost_queued, lost_executing}
    assert all(e.attempt == 2 for e in replays(records))  # accepted as attempt 1
    # each re-drive is in its task's audit trail (its timeline), by the reconciler
    entries = await pool.fetch(
        "SELECT task_id, actor, detail FROM audit_log WHERE action = 'task.redriven' "
        "AND task_id = ANY($1::uuid[])", [uuid.UUID(lost_queued), uuid.UUID(lost_executing)])
    assert {str(e["task_id"]) for e in entries} == {lost_queued, lost_executing}
    assert {e["actor"] for e in entries} == {"reconciler"}
    detail = entries[0]["detail"]
    detail = json.loads(detail) if isinstance(detail, str) else detail
    assert (detail["redrives"], detail["stalled_for_s"]) == (1, AFTER_S)


async def test_a_redriven_task_continues_its_submission_trace(settings: Settings,
                                                              publisher: Publisher) -> None:
    """The re-published record carries the trace the submission started (stored with the
    task), so the stages it drives again land in the task's one trace."""
    configure_tracing(settings, "ingest")  # as run_service does (exporter none: spans dropped)
    trace_id = random.getrandbits(128) | 1
    token = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(SpanContext(
        trace_id=trace_id, span_id=random.getrandbits(63) + 1, is_remote=False,
        trace_flags=TraceFlags(TraceFlags.SAMPLED)))))
    try:  # as SubmitTask accepts it, inside the request's trace
        task = await accepted_task(publisher, "QUEUED", "INGESTED")
    finally:
        otel_context.detach(token)
    await publisher.pool.execute("UPDATE tasks SET status = 'SUCCEEDED' WHERE task_id <> $1",
                                 uuid.UUID(task))  # only this one is in play
    async with publisher.pool.acquire() as conn:  # no trace of its own, like the loop
        assert await redrive_stalled(conn, publisher, AFTER_S) == 1

    def replay(records: list) -> list:
        return [r for r in records if TaskEnvelope.FromString(r.value).task_id == task
                and TaskEnvelope.FromString(r.value).source == TaskSource.TASK_SOURCE_REPLAY]

    (record,) = replay(await read_topic(settings, TASKS, lambda got: bool(replay(got))))
    parent = headers_to_dict(record.headers).get("traceparent", "")
    assert parent.split("-")[1:2] == [format(trace_id, "032x")], parent


async def test_repeats_back_off_exponentially(publisher: Publisher) -> None:
    task = await accepted_task(publisher, "IN_PROGRESS", "DECIDING")
    pool = publisher.pool
    await pool.execute("UPDATE tasks SET status = 'SUCCEEDED' WHERE task_id <> $1",
                       uuid.UUID(task))  # only this one is in play
    async with pool.acquire() as conn:
        for redrives, ago_s, expected in [(1, 90, 0), (1, 130, 1), (3, 470, 0), (3, 490, 1)]:
            # the last re-drive was ago_s seconds ago, after `redrives` of them:
            # the next one is due after AFTER_S * 2 ** redrives
            await pool.execute(
                "UPDATE tasks SET redrives = $2, redriven_at = now() - make_interval(secs => $3)"
                " WHERE task_id = $1", uuid.UUID(task), redrives, float(ago_s))
            assert await redrive_stalled(conn, publisher, AFTER_S) == expected, \
                (redrives, ago_s)


async def test_ended_tasks_with_an_open_review_item_are_mirrored_again(
        settings: Settings, publisher: Publisher) -> None:
    """A lost terminal status event would leave the task's review item open forever."""
    pool = publisher.pool
    await pool.execute("DELETE FROM review_items")  # the other tests' items: not in play here
    cancelled_in_review = await accepted_task(publisher, "CANCELLED", "DONE")
    failed_in_review = await accepted_task(publisher, "FAILED", "DONE")
    cancelled_withdrawn = await accepted_task(publisher, "CANCELLED", "DONE")
    cancelled_no_item = await accepted_task(publisher, "CANCELLED", "DONE")
    blocked_in_review = await accepted_task(publisher, "BLOCKED", "AWAITING_REVIEW")
    just_cancelled = await accepted_task(publisher, "CANCELLED", "DONE")
    await pool.execute("UPDATE tasks SET updated_at = now(), status_seq = 7 WHERE task_id = $1",
                       uuid.UUID(just_cancelled))  # its own event may still be on its way
    for task in (cancelled_in_review, failed_in_review, blocked_in_review, just_cancelled):
        await review_item(pool, task, "PENDING")
    await review_item(pool, cancelled_withdrawn, "WITHDRAWN")
    del cancelled_no_item  # ended with nothing open in review: nothing to do

    mirror = EndingMirror()
    async with pool.acquire() as conn:
        assert await mirror.remirror(conn, publisher, AFTER_S) == 2
        # backed off: not sent again right away, even though the items are still open
        assert await mirror.remirror(conn, publisher, AFTER_S) == 0
    # re-drive bookkeeping is untouched: these tasks were not re-driven
    assert not await pool.fetchval("SELECT count(*) FROM tasks WHERE redrives > 0 "
                                   "AND status IN ('CANCELLED', 'FAILED')")

    def terminal(records: list) -> dict[str, StatusEvent]:
        events = (StatusEvent.FromString(r.value) for r in records)
        return {e.task_id: e for e in events if e.service == "ingest"
                and e.status in (TaskStatus.TASK_STATUS_CANCELLED, TaskStatus.TASK_STATUS_FAILED)}

    records = await read_topic(settings, TASK_STATUS, lambda got: len(terminal(got)) >= 2)
    mirrored = terminal(records)
    assert set(mirrored) == {cancelled_in_review, failed_in_review}
    assert mirrored[cancelled_in_review].status == TaskStatus.TASK_STATUS_CANCELLED
    assert mirrored[failed_in_review].status == TaskStatus.TASK_STATUS_FAILED


async def review_item(pool: asyncpg.Pool, task_id: str, state: str) -> None:
    """A review item of the task, as the review service stores it."""
    await pool.execute(
        "INSERT INTO review_items (item_id, escalation_id, task_id, tenant_id, queue, priority,"
        " base_priority, reason, state, escalation) VALUES ($1, $2, $3, 'acme', 'default', 1, "
        "1, 'LOW_CONFIDENCE', $4, '')", uuid.uuid4(), uuid.uuid4(), uuid.UUID(task_id), state)


async def own(pool: asyncpg.Pool, in_review: str, executing: str, held: str) -> None:
    """Durable owners, as the review service, the executor and the decision service write
    them."""
    await pool.execute(
        "INSERT INTO review_items (item_id, escalation_id, task_id, tenant_id, queue, priority,"
        " base_priority, reason, state, escalation) VALUES ($1, $2, $3, 'acme', 'default', 1, "
        "1, 'LOW_CONFIDENCE', 'PENDING', '')", uuid.uuid4(), uuid.uuid4(), uuid.UUID(in_review))
    await pool.execute(
        "INSERT INTO executor_jobs (decision_id, task_id, tenant_id, decision, state, deadline,"
        " owner) VALUES ($1, $2, 'acme', '', 'parked', now() + interval '1 hour', 'x')",
        uuid.uuid4(), uuid.UUID(executing))
    await pool.execute(
        "INSERT INTO decision_holds (task_id, tenant_id, envelope, reason) "
        "VALUES ($1, 'acme', '', 'models unavailable')", uuid.UUID(held))


async def test_a_repeated_batch_publishes_again_only_its_queued_unpublished_tasks(
        settings: Settings, publisher: Publisher) -> None:
    """An intake batch redelivered after a crash between commit and produce: its tasks are
    repeats now, and those still QUEUED and never published are published again at once
    (read in one statement); one published already, or one that moved on, is not."""
    items = [item_for(submission(), TaskSource.TASK_SOURCE_KAFKA_INTAKE) for _ in range(3)]
    first = await publisher.accept_many(items)
    stranded, moved_on, published = (r.task_id for r in first)
    await publisher.pool.execute(
        "UPDATE tasks SET published_at = NULL WHERE task_id = ANY($1::uuid[])",
        [uuid.UUID(stranded), uuid.UUID(moved_on)])
    await publisher.pool.execute(
        "UPDATE tasks SET status = 'IN_PROGRESS', stage = 'EXECUTING' WHERE task_id = $1",
        uuid.UUID(moved_on))

    again = await publisher.accept_many(items, republish_unpublished=True)
    assert [r.task_id for r in again] == [stranded, moved_on, published]
    assert not any(r.created for r in again)
    published_at = {str(r["task_id"]): r["published_at"] for r in await publisher.pool.fetch(
        "SELECT task_id, published_at FROM tasks WHERE task_id = ANY($1::uuid[])",
        [uuid.UUID(r.task_id) for r in first])}
    assert published_at[stranded] is not None and published_at[moved_on] is None

    records = await read_topic(settings, TASKS, lambda got: sum(
        TaskEnvelope.FromString(r.value).task_id == stranded for r in got) >= 2)
    sent = [TaskEnvelope.FromString(r.value).task_id for r in records]
    assert sent.count(stranded) == 2   # accepted, then again
    assert sent.count(published) == 1 and sent.count(moved_on) == 1
