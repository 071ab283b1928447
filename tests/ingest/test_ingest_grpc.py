"""IngestService over gRPC against a real ingest process, broker and PostgreSQL.

Idempotency under load and under concurrency, bulk submission with per-item errors,
validation, listing, cancellation, the watch streams and signed, retried webhooks.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import grpc
import pytest
from aiohttp import web
from google.rpc import error_details_pb2

from services.ingest.domain import earlier_payload_sha256
from switchyard import Settings
from switchyard.documents import (
    BlobIntegrityError,
    BlobNotFound,
    BlobStore,
    PostgresBlobStore,
    S3BlobStore,
    blob_store_for,
    load_body,
)
from switchyard.messaging import CANCELLATIONS, TASKS
from switchyard.rpc import create_channel, field_violations, parse_status_details
from switchyard.stack import free_port
from switchyard.storage import PayloadError, codec_for, purge
from switchyard.tasks import transition
from switchyard.v1 import (
    BlobRef,
    CancellationRequest,
    CancelTaskRequest,
    DeleteWebhookRequest,
    Document,
    GetTaskRequest,
    GetTaskTimelineRequest,
    IngestServiceStub,
    ListTasksRequest,
    RedriveTaskRequest,
    RegisterWebhookRequest,
    Submission,
    SubmitTaskRequest,
    SubmitTasksRequest,
    TaskEnvelope,
    TaskSource,
    TaskStatus,
    TimelineSource,
    WatchTaskRequest,
    WatchTenantRequest,
)
from tests.document_samples import corrupt_pdf, noise_png, png_bomb, text_pdf
from tests.ingest.helpers import read_topic, submission
from tests.polling import eventually

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ingest_process")]
SIGNING_KEY = "per-task-callback-key-0123456789"
#: Documents above this travel by reference (text is at most 16 KiB here: always inline).
BLOB_THRESHOLD = 20_000


@pytest.fixture(scope="module")
def settings(settings: Settings) -> Settings:
    """The module's settings plus a callback signing key, quick webhook retries and a small
    document limit."""
    return settings.replace(webhook_signing_key=SIGNING_KEY, webhook_backoff_s=0.2,
                            max_payload_bytes=16 * 1024, blob_threshold_bytes=BLOB_THRESHOLD)


async def tenant_tasks(db: asyncpg.Connection, tenant: str) -> list[asyncpg.Record]:
    return await db.fetch("SELECT task_id, idempotency_key, published_at FROM tasks "
                          "WHERE tenant_id = $1", tenant)


# -- idempotency ---------------------------------------------------------------------------

async def test_1000_submissions_with_10_percent_repeats_make_900_tasks(
        ingest: IngestServiceStub, db: asyncpg.Connection) -> None:
    tenant = "bulkco"
    keys = [f"order-{i}" for i in range(900)]
    repeats = keys[::9][:100]  # 100 keys submitted a second time, same payload
    plan = [(key, f"Invoice {key}, amount due $10") for key in keys + repeats]
    assert len(plan) == 1000
    gate = asyncio.Semaphore(48)

    async def submit(key: str, body: str) -> Any:
        async with gate:
            return await ingest.SubmitTask(SubmitTaskRequest(
                submission=submission(tenant, key, body)))

    responses = await asyncio.gather(*(submit(k, b) for k, b in plan))
    by_key: dict[str, set[str]] = {}
    for (key, _), response in zip(plan, responses):
        by_key.setdefault(key, set()).add(response.task_id)
    assert all(len(ids) == 1 for ids in by_key.values())
    assert len({r.task_id for r in responses}) == 900
    assert sum(r.created for r in responses) == 900
    rows = await tenant_tasks(db, tenant)
    assert len(rows) == 900
    assert {str(r["task_id"]) for r in rows} == {r.task_id for r in responses}
    # every accepted task reached the broker (published_at is set only after the ack)
    await eventually(lambda: db.fetchval(
        "SELECT count(*) = 900 FROM tasks WHERE tenant_id = $1 AND published_at IS NOT NULL",
        tenant), what="900 published tasks")


async def test_concurrent_duplicates_create_one_task(ingest: IngestServiceStub,
                                                     db: asyncpg.Connection,
                                                     settings: Settings) -> None:
    sub = submission("dupco", "same-key")
    responses = await asyncio.gather(*(ingest.SubmitTask(SubmitTaskRequest(submission=sub))
                                       for _ in range(25)))
    assert len({r.task_id for r in responses}) == 1
    assert [r.created for r in responses].count(True) == 1
    assert len(await tenant_tasks(db, "dupco")) == 1
    envelopes = await read_topic(settings, TASKS, lambda rs: any(
        TaskEnvelope.FromString(r.value).task_id == responses[0].task_id for r in rs))
    assert sum(TaskEnvelope.FromString(r.value).task_id == responses[0].task_id
               for r in envelopes) == 1


async def test_same_key_other_payload_is_already_exists(ingest: IngestServiceStub) -> None:
    await ingest.SubmitTask(SubmitTaskRequest(submission=submission("acme", "k-1", "one")))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ingest.SubmitTask(SubmitTaskRequest(submission=submission("acme", "k-1", "two")))
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "different payload" in (caught.value.details() or "")


async def test_a_retry_that_differs_only_in_padding_is_the_same_task(
        ingest: IngestServiceStub, db: asyncpg.Connection) -> None:
    """Metadata is trimmed when it becomes the envelope, so a retry whose metadata differs
    only in spaces is the same submission (an outside producer got an idempotency_conflict
    letter for one); a task stored under the earlier hash, which counted the spaces, still
    answers a retry of itself."""
    first = submission("padco", "pad-1", "Invoice 7")
    first.metadata["po"] = "17"
    padded = submission("padco", "pad-1", "Invoice 7")
    padded.metadata[" po "] = " 17 "
    created = await ingest.SubmitTask(SubmitTaskRequest(submission=first))
    again = await ingest.SubmitTask(SubmitTaskRequest(submission=padded))
    assert (again.task_id, again.created) == (created.task_id, False)
    # as a task accepted before the trimming rule was stored (the hash with the spaces)
    legacy = submission("padco", "pad-2", "Invoice 8")
    legacy.metadata[" po "] = " 18 "
    accepted = await ingest.SubmitTask(SubmitTaskRequest(submission=legacy))
    await db.execute("UPDATE tasks SET payload_sha256 = $1 WHERE task_id = $2",
                     earlier_payload_sha256(legacy), uuid.UUID(accepted.task_id))
    retried = await ingest.SubmitTask(SubmitTaskRequest(submission=legacy))
    assert (retried.task_id, retried.created) == (accepted.task_id, False)
    other = submission("padco", "pad-2", "Invoice 8")
    other.metadata["po"] = "19"  # another value is another payload
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ingest.SubmitTask(SubmitTaskRequest(submission=other))
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS


# -- bulk and validation ---------------------------------------------------------------------

async def test_bulk_500_with_3_invalid(ingest: IngestServiceStub,
                                       db: asyncpg.Connection) -> None:
    subs = [submission("bulk500", f"b-{i}", f"Invoice {i}") for i in range(500)]
    subs[17].kind = "purchase order"
    subs[250].document.CopyFrom(Document(content_type="application/json", body=b'{"total": '))
    subs[499].document.body = b"x" * (16 * 1024 + 1)
    subs[300].metadata["po\x00"] = "1"   # a NUL: that item refused, not the whole batch
    response = await ingest.SubmitTasks(SubmitTasksRequest(submissions=subs))
    assert (response.accepted_count, response.rejected_count) == (496, 4)
    errors = {i: r.error for i, r in enumerate(response.results) if r.HasField("error")}
    assert set(errors) == {17, 250, 300, 499}
    assert errors[300].field_violations[0].description == "must not contain NUL characters"
    assert all(e.code == grpc.StatusCode.INVALID_ARGUMENT.value[0] for e in errors.values())
    assert errors[17].field_violations[0].field == "kind"
    assert "purchase order" in errors[17].field_violations[0].description
    assert errors[250].field_violations[0].description.startswith("malformed JSON")
    assert "exceeds the limit" in errors[499].field_violations[0].description
    assert len(await tenant_tasks(db, "bulk500")) == 496
    # the same batch again: nothing new, the same ids
    again = await ingest.SubmitTasks(SubmitTasksRequest(submissions=subs))
    assert again.accepted_count == 496
    assert not any(r.accepted.created for r in again.results)
    assert [r.accepted.task_id for r in again.results] == \
        [r.accepted.task_id for r in response.results]


async def test_bulk_limit_and_item_conflicts(ingest: IngestServiceStub,
                                             settings: Settings) -> None:
    too_many = [submission("acme") for _ in range(settings.ingest_max_batch_items + 1)]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ingest.SubmitTasks(SubmitTasksRequest(submissions=too_many))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "submissions" in field_violations(caught.value)
    key = uuid.uuid4().hex
    response = await ingest.SubmitTasks(SubmitTasksRequest(submissions=[
        submission("acme", key, "first"), submission("acme", key, "second")]))
    codes = sorted(r.error.code for r in response.results if r.HasField("error"))
    assert response.accepted_count == 1 and codes == [grpc.StatusCode.ALREADY_EXISTS.value[0]]


async def test_concurrent_overlapping_batches_make_one_task_per_key(
        ingest: IngestServiceStub, db: asyncpg.Connection) -> None:
    """Batches insert in one statement each; the same keys in opposite orders at once must
    neither deadlock nor make a second task."""
    keys = [f"overlap-{i}" for i in range(200)]
    batches = [[submission("overlapco", k, f"Invoice {k}") for k in
                (keys if n % 2 == 0 else keys[::-1])] for n in range(6)]
    responses = await asyncio.gather(*(ingest.SubmitTasks(SubmitTasksRequest(submissions=b))
                                       for b in batches))
    assert [r.accepted_count for r in responses] == [200] * 6
    by_key: dict[str, set[str]] = {}
    for batch, response in zip(batches, responses):
        for sub, result in zip(batch, response.results):
            by_key.setdefault(sub.idempotency_key, set()).add(result.accepted.task_id)
    assert all(len(ids) == 1 for ids in by_key.values())
    assert sum(r.accepted.created for resp in responses for r in resp.results) == 200
    assert len(await tenant_tasks(db, "overlapco")) == 200


@pytest.mark.parametrize(("change", "field", "words"), [
    ({"kind": "purchase order!"}, "kind", "not a task kind"),
    ({"document": Document(content_type="application/json", body=b"{oops")}, "document.body",
     "malformed JSON"),
    ({"document": Document(body=b"y" * (16 * 1024 + 1))}, "document.body", "exceeds the limit"),
    ({"tenant_id": ""}, "tenant_id", "required"),
    ({"idempotency_key": ""}, "idempotency_key", "required"),
    ({"callback_url": "http://169.254.169.254/latest"}, "callback_url", "not allowed"),
    ({"idempotency_key": "nul\x00key"}, "idempotency_key", "NUL"),
    ({"document": Document(body=b"Invoice 1", kind_hint="a\x00")}, "document.kind_hint", "NUL"),
    ({"callback_url": "http://127.0.0.1/a\x00b"}, "callback_url", "control characters"),
])
async def test_invalid_submissions_name_the_field(ingest: IngestServiceStub, change: dict,
                                                  field: str, words: str) -> None:
    sub = submission("acme")
    for name, value in change.items():
        if name == "document":
            sub.document.CopyFrom(value)
        else:
            setattr(sub, name, value)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ingest.SubmitTask(SubmitTaskRequest(submission=sub))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert words in field_violations(caught.value)[field]


# -- read ----------------------------------------------------------------------------------

async def test_list_tasks_filters_and_pages(ingest: IngestServiceStub) -> None:
    ids = [(await ingest.SubmitTask(SubmitTaskRequest(submission=submission("listco")))).task_id
           for _ in range(7)]
    await ingest.CancelTask(CancelTaskRequest(task_id=ids[0], reason="not needed"))
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = await ingest.ListTasks(ListTasksRequest(tenant_id="listco", page_size=3,
                                                       page_token=token))
        seen += [t.envelope.task_id for t in page.tasks]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert pages == 3 and seen == list(reversed(ids))  # newest first, nothing twice
    cancelled = await ingest.ListTasks(ListTasksRequest(
        tenant_id="listco", statuses=[TaskStatus.TASK_STATUS_CANCELLED]))
    assert [t.envelope.task_id for t in cancelled.tasks] == [ids[0]]
    first = (await ingest.GetTask(GetTaskRequest(task_id=ids[3]))).task
    window = ListTasksRequest(tenant_id="listco")
    window.created_after.CopyFrom(first.created_at)
    newer = await ingest.ListTasks(window)
    assert [t.envelope.task_id for t in newer.tasks] == list(reversed(ids[3:]))
    page = await ingest.ListTasks(ListTasksRequest(tenant_id="listco", page_size=2))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ingest.ListTasks(ListTasksRequest(
            tenant_id="listco", page_size=2, page_token=page.next_page_token,
            statuses=[TaskStatus.TASK_STATUS_QUEUED]))
    assert "page_token" in field_violations(caught.value)


async def test_list_tasks_by_kind_and_metadata_with_status_and_paging(
        ingest: IngestServiceStub, db: asyncpg.Connection) -> None:
    """kinds: any of them; metadata: every pair, exact (keys and values trimmed as submitted);
    combined with statuses and followed over pages."""
    def sub(kind: str, **metadata: str) -> Any:
        return SubmitTaskRequest(submission=submission("filterco", kind=kind,
                                                       metadata=metadata))
    plan = [("invoice", {"po": "17", "region": "eu"}), ("invoice", {"po": "17"}),
            ("receipt", {"po": "17", "region": "eu"}), ("invoice", {"po": "18", "region": "eu"}),
            ("contract", {"po": "17", "region": "eu"}), ("invoice", {"po": "17", "region": "eu"})]
    ids = [(await ingest.SubmitTask(sub(kind, **meta))).task_id for kind, meta in plan]
    await ingest.CancelTask(CancelTaskRequest(task_id=ids[5]))

    async def listed(page_size: int = 0, **filters: Any) -> list[str]:
        request = ListTasksRequest(tenant_id="filterco", page_size=page_size, **filters)
        seen: list[str] = []
        while True:
            page = await ingest.ListTasks(request)
            seen += [t.envelope.task_id for t in page.tasks]
            if not page.next_page_token:
                return seen
            request.page_token = page.next_page_token

    newest_first = list(reversed(ids))
    assert await listed(kinds=["invoice"]) == [i for i in newest_first
                                              if i in {ids[0], ids[1], ids[3], ids[5]}]
    assert await listed(kinds=["receipt", " Contract "]) == [ids[4], ids[2]]
    assert await listed(metadata={"po": "17", "region": "eu"}) == [ids[5], ids[4], ids[2],
                                                                   ids[0]]
    assert await listed(metadata={" po ": " 18 "}) == [ids[3]]
    assert await listed(metadata={"po": "1"}) == []            # exact, not a prefix
    both = {"kinds": ["invoice"], "metadata": {"po": "17", "region": "eu"}}
    assert await listed(**both) == [ids[5], ids[0]]
    assert await listed(page_size=1, **both) == [ids[5], ids[0]]   # paged one by one
    assert await listed(statuses=[TaskStatus.TASK_STATUS_QUEUED], **both) == [ids[0]]
    # a token is bound to its filters: other kinds or metadata with it are refused
    first = await ingest.ListTasks(ListTasksRequest(tenant_id="filterco", page_size=1, **both))
    for other in ({"kinds": ["receipt"], "metadata": both["metadata"]},
                  {"kinds": ["invoice"], "metadata": {"po": "17"}}):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ingest.ListTasks(ListTasksRequest(tenant_id="filterco", page_size=1,
                                                    page_token=first.next_page_token, **other))
        assert "page_token" in field_violations(caught.value)
    # the metadata is matched through keyed hashes; no value is stored in plaintext
    stored = await db.fetch("SELECT metadata_hashes FROM tasks WHERE task_id = ANY($1::uuid[])",
                            [uuid.UUID(i) for i in ids])
    assert all(len(r["metadata_hashes"]) in (1, 2) for r in stored)
    assert not any(v in h for r in stored for h in r["metadata_hashes"] for v in ("17", "eu"))


@pytest.mark.parametrize(("filters", "field", "words"), [
    ({"kinds": [""]}, "kinds[0]", "empty"),
    ({"kinds": ["invoice", "Not A Kind!"]}, "kinds[1]", "not a task kind"),
    ({"kinds": ["invoice"] * 33}, "kinds", "at most 32"),
    ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata", "at most 16"),
    ({"metadata": {" ": "v"}}, "metadata[' ']", "must not be empty"),
    ({"metadata": {"k" * 129: "v"}}, f"metadata[{'k' * 128!r}]", "at most 128"),
    ({"metadata": {"po": "x" * 1025}}, "metadata['po']", "at most 1024"),
])
async def test_list_tasks_filter_errors_name_the_field(ingest: IngestServiceStub,
                                                       filters: dict, field: str,
                                                       words: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ingest.ListTasks(ListTasksRequest(tenant_id="filterco", **filters))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert words in field_violations(caught.value)[field], field_violations(caught.value)


async def test_redrive_publishes_an_unfinished_task_again_and_audits_it(
        settings: Settings, ingest: IngestServiceStub, db: asyncpg.Connection) -> None:
    """Ingest alone: the task stays QUEUED, as if its record had been lost; RedriveTask
    publishes it again (source REPLAY, attempt 2) through the reconciler's code, records the
    bookkeeping and a task.redriven entry; a terminal task is refused."""
    task_id = (await ingest.SubmitTask(SubmitTaskRequest(submission=submission("redriveco")))
               ).task_id
    response = await ingest.RedriveTask(RedriveTaskRequest(task_id=task_id,
                                                           reason="record lost in the outage"))
    assert response.task.envelope.task_id == task_id
    assert response.task.status == TaskStatus.TASK_STATUS_QUEUED

    def replays(records: list) -> list[TaskEnvelope]:
        return [e for e in (TaskEnvelope.FromString(r.value) for r in records)
                if e.task_id == task_id and e.source == TaskSource.TASK_SOURCE_REPLAY]
    (replayed,) = replays(await read_topic(settings, TASKS, lambda got: bool(replays(got))))
    assert replayed.attempt == 2
    row = await db.fetchrow("SELECT redrives, redriven_at FROM tasks WHERE task_id = $1",
                            uuid.UUID(task_id))
    assert row["redrives"] == 1 and row["redriven_at"] is not None
    entry = await db.fetchrow("SELECT actor, action, detail FROM audit_log WHERE task_id = $1 "
                              "AND action = 'task.redriven'", uuid.UUID(task_id))
    assert entry["actor"] == "dev"  # the caller's key id (auth off: the local operator)
    detail = json.loads(entry["detail"])
    assert detail["reason_sha256"] == hashlib.sha256(b"record lost in the outage").hexdigest()
    assert detail["redrives"] == 1 and "outage" not in entry["detail"]

    timeline = await ingest.GetTaskTimeline(GetTaskTimelineRequest(task_id=task_id))
    assert timeline.task.envelope.task_id == task_id
    assert [(e.source, e.action) for e in timeline.entries] == [
        (TimelineSource.TIMELINE_SOURCE_STATUS, "status.changed"),
        (TimelineSource.TIMELINE_SOURCE_AUDIT, "task.redriven")]
    assert timeline.entries[0].status == TaskStatus.TASK_STATUS_QUEUED
    assert timeline.entries[0].actor == "ingest"
    assert timeline.entries[1].actor == "dev" and timeline.entries[1].entry_hash
    assert timeline.entries[1].detail["reason_sha256"] == detail["reason_sha256"]

    await ingest.CancelTask(CancelTaskRequest(task_id=task_id, reason="done with it"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ingest.RedriveTask(RedriveTaskRequest(task_id=task_id))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "CANCELLED" in caught.value.details()
    await db.execute("UPDATE tasks SET status = 'FAILED' WHERE task_id = $1", uuid.UUID(task_id))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ingest.RedriveTask(RedriveTaskRequest(task_id=task_id))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "RetryTask" in caught.value.details()
    assert (await db.fetchval("SELECT redrives FROM tasks WHERE task_id = $1",
                              uuid.UUID(task_id))) == 1
    # the timeline now ends with the cancellation: its status change and its audit entry
    later = await ingest.GetTaskTimeline(GetTaskTimelineRequest(task_id=task_id))
    assert [e.action for e in later.entries][-2:] == ["status.changed", "task.cancelled"]
    assert later.entries[-2].status == TaskStatus.TASK_STATUS_CANCELLED
    assert [e.occurred_at.ToDatetime() for e in later.entries] == sorted(
        e.occurred_at.ToDatetime() for e in later.entries)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ingest.RedriveTask(RedriveTaskRequest(task_id=task_id, reason="x" * 1001))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "at most 1000" in field_violations(caught.value)["reason"]
    for call in (lambda: ingest.RedriveTask(RedriveTaskRequest(task_id=str(uuid.uuid4()))),
                 lambda: ingest.GetTaskTimeline(GetTaskTimelineRequest(task_id="not-a-uuid"))):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call()
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_get_task_unknown_is_not_found(ingest: IngestServiceStub) -> None:
    for task_id in (str(uuid.uuid4()), "not-a-uuid"):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ingest.GetTask(GetTaskRequest(task_id=task_id))
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND


# -- cancel and watch ----------------------------------------------------------------------

async def collect(stream: Any, count: int) -> list[Any]:
    items = []
    async for item in stream:
        items.append(item)
        if len(items) == count:
            break
    return items


async def audit_entries(db: asyncpg.Connection, task_id: str) -> list[tuple[str, str, str]]:
    rows = await db.fetch("SELECT tenant_id, actor, action, detail FROM audit_log "
                          "WHERE task_id = $1 ORDER BY entry_id", task_id)
    return [(r["tenant_id"], r["actor"], r["action"]) for r in rows]


async def test_cancel_queued_task_and_watch_it_end(ingest: IngestServiceStub,
                                                   db: asyncpg.Connection) -> None:
    created = await ingest.SubmitTask(SubmitTaskRequest(submission=submission("watchco")))
    stream = ingest.WatchTask(WatchTaskRequest(task_id=created.task_id))
    first = await asyncio.wait_for(stream.read(), 60)
    assert (first.event.sequence, first.event.status) == (1, TaskStatus.TASK_STATUS_QUEUED)
    response = await ingest.CancelTask(CancelTaskRequest(
        task_id=created.task_id,
        reason="customer withdrew: John Smith, john.smith@example.com, +1 415 555 0100"))
    assert response.task.status == TaskStatus.TASK_STATUS_CANCELLED
    rest = [r async for r in stream]  # the stream ends after the terminal event
    assert [(r.event.sequence, r.event.status, r.event.reason) for r in rest] == [
        (2, TaskStatus.TASK_STATUS_CANCELLED, "cancelled")]
    # the caller's reason may name a person: the status event (and so every watch, webhook
    # and timeline) says who asked, not why (an outside operator found it published whole)
    assert rest[0].event.detail == "cancelled at a client's request"
    replay = [r.event.sequence async for r in ingest.WatchTask(
        WatchTaskRequest(task_id=created.task_id, after_sequence=0))]
    assert replay == [1, 2]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ingest.CancelTask(CancelTaskRequest(task_id=created.task_id))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "already CANCELLED" in (caught.value.details() or "")
    # the operator action is in the tenant's audit chain (auth is off: the dev principal),
    # once: the refused second call appends nothing; the reason only as a hash
    assert await audit_entries(db, created.task_id) == [("watchco", "dev", "task.cancelled")]
    detail = await db.fetchval("SELECT detail FROM audit_log WHERE task_id = $1",
                               created.task_id)
    assert "customer withdrew" not in detail and "reason_sha256" in detail


async def test_cancel_executing_task_asks_the_executor(
        ingest: IngestServiceStub, db: asyncpg.Connection, settings: Settings) -> None:
    created = await ingest.SubmitTask(SubmitTaskRequest(submission=submission("execco")))
    # The executor's own state change (the shared transition()), as it makes it when it
    # starts running a plan; the executor process itself is not part of this module.
    async with db.transaction():
        change = await transition(db, created.task_id, "IN_PROGRESS", "EXECUTING", "executor",
                                  "executing")
    assert change is not None
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ingest.CancelTask(CancelTaskRequest(
            task_id=created.task_id, reason="stop, asked by jane@example.com"))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "cancellation request was sent to the executor" in (caught.value.details() or "")
    status = parse_status_details(caught.value)
    assert status is not None
    failure = error_details_pb2.PreconditionFailure()
    assert status.details[0].Unpack(failure)
    assert failure.violations[0].type == "TASK_EXECUTING"
    records = await read_topic(settings, CANCELLATIONS, lambda rs: any(
        CancellationRequest.FromString(r.value).task_id == created.task_id for r in rs))
    request = next(CancellationRequest.FromString(r.value) for r in records
                   if CancellationRequest.FromString(r.value).task_id == created.task_id)
    # the executor writes the reason into the step it stops and the status it ends on:
    # it travels through the PII detectors, as a reviewer's reason does
    assert (request.tenant_id, request.reason) == ("execco", "stop, asked by [EMAIL REDACTED]")
    task = (await ingest.GetTask(GetTaskRequest(task_id=created.task_id))).task
    assert task.status == TaskStatus.TASK_STATUS_IN_PROGRESS  # untouched by ingest
    assert await audit_entries(db, created.task_id) == [
        ("execco", "dev", "task.cancel_requested")]
    # the command line tells an accepted request (compensation under way, exit 4) from a
    # refusal (exit 1), so a script need not read the message's words
    command = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "switchyard", "tasks", "cancel", created.task_id, "--json",
        "--target", f"127.0.0.1:{settings.ingest_grpc_port}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **settings.to_env()})
    out, err = await command.communicate()
    assert command.returncode == 4, err.decode()
    assert json.loads(out)["cancellation"] == "requested"


async def test_watch_tenant_resumes_from_a_cursor(ingest: IngestServiceStub) -> None:
    tenant = f"tw{uuid.uuid4().hex[:8]}"
    stream = ingest.WatchTenant(WatchTenantRequest(tenant_id=tenant))
    # The stream starts "from now": submit markers until it delivers one, so it is live.
    first_read = asyncio.ensure_future(stream.read())
    while not first_read.done():
        await ingest.SubmitTask(SubmitTaskRequest(submission=submission(tenant)))
        await asyncio.wait({first_read}, timeout=0.5)
    ids = []
    for _ in range(3):
        ids.append((await ingest.SubmitTask(SubmitTaskRequest(
            submission=submission(tenant)))).task_id)
        await ingest.SubmitTask(SubmitTaskRequest(submission=submission("noise")))
    events = []
    while not set(ids) <= {r.event.task_id for r in events}:
        events.append(await asyncio.wait_for(stream.read(), 60))
    stream.cancel()
    assert {r.event.tenant_id for r in events} == {tenant}
    first = [r for r in events if r.event.task_id in ids]
    assert [r.event.task_id for r in first] == ids  # one after the other: feed order
    # resume after the first event: the other two come again, then live ones
    resumed = ingest.WatchTenant(WatchTenantRequest(tenant_id=tenant, cursor=first[0].cursor))
    late = (await ingest.SubmitTask(SubmitTaskRequest(submission=submission(tenant)))).task_id
    again = await asyncio.wait_for(collect(resumed, 3), 60)
    resumed.cancel()
    assert [r.event.task_id for r in again] == [r.event.task_id for r in first[1:]] + [late]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await collect(ingest.WatchTenant(WatchTenantRequest(tenant_id=tenant,
                                                            cursor="garbage")), 1)
    assert "cursor" in field_violations(caught.value)


# -- webhooks ------------------------------------------------------------------------------

class Receiver:
    """A loopback HTTP endpoint that fails each delivery twice before accepting it."""

    def __init__(self) -> None:
        self.attempts: Counter[str] = Counter()
        self.accepted: list[tuple[str, dict[str, str], bytes]] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        delivery = request.headers["webhook-id"]
        self.attempts[delivery] += 1
        if self.attempts[delivery] <= 2:
            return web.Response(status=503)
        self.accepted.append((request.path, dict(request.headers), body))
        return web.Response(status=204)


def standard_webhook_signed(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """A receiver's check per the Standard Webhooks spec, written apart from the server's
    code: HMAC-SHA256 over "<webhook-id>.<webhook-timestamp>.<body>", keyed with the base64
    after "whsec_" (or the raw secret), base64 after "v1,"."""
    lower = {k.lower(): v for k, v in headers.items()}
    key = base64.b64decode(secret[6:]) if secret.startswith("whsec_") else secret.encode()
    signed = f"{lower['webhook-id']}.{lower['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return abs(time.time() - int(lower["webhook-timestamp"])) < 300 and any(
        hmac.compare_digest(f"v1,{expected}", sig) for sig in lower["webhook-signature"].split())


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/{path:.*}", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield receiver, f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_webhooks_are_signed_and_retried(ingest: IngestServiceStub,
                                               receiver: tuple[Receiver, str],
                                               db: asyncpg.Connection) -> None:
    hook, base = receiver
    tenant = f"wh{uuid.uuid4().hex[:8]}"
    registered = await ingest.RegisterWebhook(RegisterWebhookRequest(
        tenant_id=tenant, url=f"{base}/tenant"))
    assert registered.secret.startswith("whsec_")  # a Standard Webhooks secret
    created = await ingest.SubmitTask(SubmitTaskRequest(submission=submission(
        tenant, callback_url=f"{base}/task")))
    await ingest.CancelTask(CancelTaskRequest(task_id=created.task_id))

    async def all_four() -> bool:
        return len(hook.accepted) >= 4
    await eventually(all_four, "4 webhook deliveries", 90)
    seen = set()
    for path, headers, body in hook.accepted:
        secret = registered.secret if path == "/tenant" else SIGNING_KEY
        assert standard_webhook_signed(secret, headers, body), path
        payload = json.loads(body)
        assert payload["delivery_id"] == headers["webhook-id"]
        assert payload["event"]["task_id"] == created.task_id
        seen.add((path, payload["event"]["sequence"], payload["event"]["status"]))
    assert seen == {("/tenant", "1", "TASK_STATUS_QUEUED"), ("/task", "1", "TASK_STATUS_QUEUED"),
                    ("/tenant", "2", "TASK_STATUS_CANCELLED"),
                    ("/task", "2", "TASK_STATUS_CANCELLED")}
    assert set(hook.attempts.values()) == {3}

    async def recorded() -> list[tuple[str, int]]:
        # the dispatcher marks a delivery after its receiver answered: the last mark may
        # still be on its way when the receiver has seen the fourth delivery
        rows = await db.fetch("SELECT state, attempts FROM webhook_deliveries "
                              "WHERE task_id = $1", uuid.UUID(created.task_id))
        states = sorted((r["state"], r["attempts"]) for r in rows)
        return states if all(state != "pending" for state, _ in states) else []
    assert await eventually(recorded, "the deliveries marked", 30) == [("delivered", 3)] * 4
    deleted = await ingest.DeleteWebhook(DeleteWebhookRequest(webhook_id=registered.webhook_id))
    assert deleted.deleted
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ingest.RegisterWebhook(RegisterWebhookRequest(tenant_id=tenant,
                                                            url="http://10.1.2.3/hook"))
    assert "not allowed" in field_violations(caught.value)["url"]


async def test_bytes_that_are_no_request_get_invalid_argument(settings: Settings) -> None:
    """The real ingest service: a malformed protobuf is the caller's mistake, said as such."""
    channel = create_channel(f"127.0.0.1:{settings.ingest_grpc_port}", settings.client_api_key)
    submit = channel.unary_unary("/switchyard.v1.IngestService/SubmitTask",
                                 request_serializer=lambda b: b,
                                 response_deserializer=lambda b: b)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await submit(b"\x0a\xff\xff\xff\xff\x0f")
    finally:
        await channel.close()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid switchyard.v1.SubmitTaskRequest" in caught.value.details()


async def test_no_webhook_or_callback_reaches_the_stacks_own_servers(
        ingest: IngestServiceStub, settings: Settings) -> None:
    """Loopback is allowed by default (a local downstream), but not the stack's own ports: a
    tenant's webhook on Triton's model control would unload a model every tenant uses."""
    own = {f"http://127.0.0.1:{settings.triton_http_port}/v2/repository/models/x/unload":
           "Triton HTTP",
           f"http://localhost:{settings.ingest_grpc_port}/": "ingest gRPC",
           f"http://{settings.kafka_bootstrap_servers.split(',')[0]}/": "broker"}
    for url, name in own.items():
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ingest.RegisterWebhook(RegisterWebhookRequest(tenant_id="acme", url=url))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert f"this stack's own {name} server" in field_violations(caught.value)["url"]
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ingest.SubmitTask(SubmitTaskRequest(submission=submission(
                "acme", callback_url=url)))
        assert f"own {name} server" in field_violations(caught.value)["callback_url"]


# -- documents: blob stores and the claim check ---------------------------------------------

SEALING = Settings(encryption_keys=f"k1:{base64.b64encode(b'k' * 32).decode()}",
                   encryption_active_key="k1")


async def check_blob_store(store: BlobStore, task_id: str) -> BlobRef:
    """Round trip, integrity check, delete: the BlobStore contract, on a real store."""
    body = text_pdf(("IBAN DE89 3704 0044 0532 0130 00",))
    ref = await store.put(body, "acme", task_id)
    assert ref.sha256 == hashlib.sha256(body).hexdigest() and ref.size_bytes == len(body)
    assert await load_body(Document(blob=ref), store) == body
    assert await load_body(Document(body=b"inline"), store) == b"inline"
    forged = BlobRef(uri=ref.uri, sha256="0" * 64, size_bytes=ref.size_bytes)
    with pytest.raises(BlobIntegrityError):
        await load_body(Document(blob=forged), store)
    assert await store.delete(ref) is True
    with pytest.raises(BlobNotFound):
        await store.get(ref)
    assert await store.delete(ref) is False
    return await store.put(body, "acme", task_id)


async def test_postgres_blob_store_seals_and_verifies(db: asyncpg.Connection) -> None:
    store = PostgresBlobStore(db, codec_for(SEALING))
    ref = await check_blob_store(store, str(uuid.uuid4()))
    stored = await db.fetchval("SELECT body FROM blobs WHERE blob_id = $1",
                               uuid.UUID(ref.uri.removeprefix("pg:")))
    assert b"%PDF" not in stored and b"DE89" not in stored  # sealed at rest
    # a sealed blob copied under another id does not open (bound to its row)
    other = uuid.uuid4()
    await db.execute("INSERT INTO blobs (blob_id, tenant_id, task_id, sha256, size_bytes, body)"
                     " VALUES ($1, 'acme', $2, $3, $4, $5)", other, uuid.uuid4(), ref.sha256,
                     ref.size_bytes, stored)
    with pytest.raises(PayloadError):
        await store.get(BlobRef(uri=f"pg:{other}", sha256=ref.sha256,
                                size_bytes=ref.size_bytes))


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A real S3-compatible server (moto) on loopback."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


async def test_s3_blob_store_seals_client_side_and_verifies(s3_endpoint: str) -> None:
    from aiobotocore.session import get_session

    config = {"endpoint_url": s3_endpoint, "region_name": "us-east-1",
              "aws_access_key_id": "test", "aws_secret_access_key": "test"}
    bucket = f"docs-{uuid.uuid4().hex[:8]}"
    async with get_session().create_client("s3", **config) as client:
        await client.create_bucket(Bucket=bucket)
        settings = SEALING.replace(blob_store="s3", s3_bucket=bucket, s3_endpoint_url=s3_endpoint,
                                   s3_region="us-east-1", s3_access_key_id="test",
                                   s3_secret_access_key="test")
        store = blob_store_for(settings)
        assert isinstance(store, S3BlobStore)
        try:
            ref = await check_blob_store(store, str(uuid.uuid4()))
            assert ref.uri.startswith(f"s3://{bucket}/acme/")
            key = ref.uri.removeprefix(f"s3://{bucket}/")
            response = await client.get_object(Bucket=bucket, Key=key)
            async with response["Body"] as stream:
                stored = await stream.read()
            assert b"%PDF" not in stored and b"DE89" not in stored  # sealed before upload
        finally:
            await store.close()


def document_submission(key: str, content_type: str, body: bytes, tenant: str = "docsco"
                        ) -> Submission:
    return Submission(tenant_id=tenant, idempotency_key=key, kind="invoice",
                      document=Document(content_type=content_type, body=body,
                                        filename="scan"))


async def test_files_are_accepted_and_large_ones_travel_by_reference(
        ingest: IngestServiceStub, db: asyncpg.Connection, settings: Settings) -> None:
    run = uuid.uuid4().hex[:6]
    small = text_pdf(pages=2)
    large = noise_png(200, 200)  # ~120 KB of incompressible pixels
    assert len(small) < BLOB_THRESHOLD < len(large)
    inline = await ingest.SubmitTask(SubmitTaskRequest(
        submission=document_submission(f"{run}-pdf", "application/pdf", small)))
    task = (await ingest.GetTask(GetTaskRequest(task_id=inline.task_id))).task
    assert task.envelope.document.body == small
    assert task.envelope.document.page_count == 2
    assert not task.envelope.document.HasField("blob")

    submitted = document_submission(f"{run}-png", "IMAGE/PNG", large)
    first = await ingest.SubmitTask(SubmitTaskRequest(submission=submitted))
    task = (await ingest.GetTask(GetTaskRequest(task_id=first.task_id))).task
    document = task.envelope.document
    assert (document.body, document.content_type, document.page_count) == (b"", "image/png", 1)
    assert document.blob.uri.startswith("pg:")
    assert (document.blob.sha256, document.blob.size_bytes) == (
        hashlib.sha256(large).hexdigest(), len(large))
    store = PostgresBlobStore(db, codec_for(settings))
    assert await load_body(document, store) == large
    # the Kafka record carries the reference, not the bytes
    records = await read_topic(settings, TASKS, lambda rs: any(
        TaskEnvelope.FromString(r.value).task_id == first.task_id for r in rs))
    [record] = [r for r in records if TaskEnvelope.FromString(r.value).task_id == first.task_id]
    assert len(record.value) < BLOB_THRESHOLD
    assert TaskEnvelope.FromString(record.value).document.blob == document.blob
    # a repeat is the same task and leaves no second blob behind
    again = await ingest.SubmitTask(SubmitTaskRequest(submission=submitted))
    assert (again.task_id, again.created) == (first.task_id, False)
    assert await db.fetchval("SELECT count(*) FROM blobs WHERE task_id = $1",
                             uuid.UUID(first.task_id)) == 1
    # SubmitTasks: the same claim check per item
    batch = await ingest.SubmitTasks(SubmitTasksRequest(submissions=[
        document_submission(f"{run}-batch-{i}", "image/png", noise_png(200, 200))
        for i in range(2)]))
    assert batch.accepted_count == 2
    for result in batch.results:
        task = (await ingest.GetTask(GetTaskRequest(task_id=result.accepted.task_id))).task
        assert task.envelope.document.blob.uri.startswith("pg:")


async def test_bad_documents_each_get_their_specific_error(ingest: IngestServiceStub) -> None:
    run = uuid.uuid4().hex[:6]
    cases = {
        "forty pages": ("application/pdf", text_pdf(pages=40), "document.body",
                        "too_many_pages: 40 pages exceeds the limit of 30 pages"),
        "decompression bomb": ("image/png", png_bomb(), "document.body",
                               "too_many_pixels: page 1 is 8000x8000"),
        "corrupt": ("application/pdf", corrupt_pdf(), "document.body", "corrupt: "),
        "encrypted": ("application/pdf", text_pdf(password="secret"), "document.body",
                      "encrypted: the PDF is password-protected"),
        "wrong type": ("application/pdf", noise_png(20, 20), "document.body",
                       "type_mismatch: declared application/pdf but the bytes are a PNG"),
        "truncated": ("image/png", noise_png(200, 200)[:30_000], "document.body", "corrupt: "),
        "unsupported": ("image/gif", b"GIF89a", "document.content_type", "unsupported "),
    }
    for name, (content_type, body, field, start) in cases.items():
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ingest.SubmitTask(SubmitTaskRequest(
                submission=document_submission(f"{run}-{name}", content_type, body)))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, name
        assert field_violations(caught.value)[field].startswith(start), (
            name, field_violations(caught.value))
    claimed = document_submission(f"{run}-blob", "application/pdf", b"")
    claimed.document.blob.CopyFrom(BlobRef(uri="pg:" + str(uuid.uuid4()), sha256="0" * 64))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ingest.SubmitTask(SubmitTaskRequest(submission=claimed))
    assert "set by ingest only" in field_violations(caught.value)["document.blob"]


async def test_text_in_a_declared_charset_is_stored_as_utf8(ingest: IngestServiceStub) -> None:
    """An e-mail gateway's Latin-1 text and an HTTP client's ``; charset=utf-8``: accepted,
    stored (and carried to every later stage) as UTF-8 under the bare media type; a charset
    nobody knows, and Latin-1 bytes declared as nothing (UTF-8), are refused by name."""
    run = uuid.uuid4().hex[:6]
    text = "Facture n° 42 - Müller & Søn, 1 250,00 €"
    cases = [("text/plain; charset=ISO-8859-15", text.encode("iso-8859-15"), "text/plain"),
             ("application/json; charset=utf-8", json.dumps({"note": text}).encode(),
              "application/json"),
             ('text/plain; format=flowed; charset="windows-1252"',
              "Grüße, Kraków".encode("cp1252"), "text/plain")]
    for index, (content_type, body, stored_type) in enumerate(cases):
        accepted = await ingest.SubmitTask(SubmitTaskRequest(
            submission=document_submission(f"{run}-{index}", content_type, body)))
        document = (await ingest.GetTask(GetTaskRequest(task_id=accepted.task_id))
                    ).task.envelope.document
        assert document.content_type == stored_type
        charset = content_type.rsplit("=", 1)[1].strip('"')
        assert document.body.decode("utf-8") == body.decode(charset)
    refused = {
        "text/plain; charset=klingon": ("document.content_type", "unsupported charset 'klingon'"),
        "text/plain": ("document.body", "not valid UTF-8"),
    }
    for content_type, (field, start) in refused.items():
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ingest.SubmitTask(SubmitTaskRequest(submission=document_submission(
                f"{run}-{content_type}", content_type, text.encode("latin-1", "replace"))))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field_violations(caught.value)[field].startswith(start), (
            content_type, field_violations(caught.value))
    assert "charset=iso-8859-1" in field_violations(caught.value)["document.body"]


async def test_purge_deletes_a_task_blob_with_its_payload(
        ingest: IngestServiceStub, db: asyncpg.Connection, settings: Settings) -> None:
    tenant = f"purge{uuid.uuid4().hex[:6]}"
    accepted = await ingest.SubmitTask(SubmitTaskRequest(submission=document_submission(
        "big", "image/png", noise_png(200, 200), tenant=tenant)))
    task_id = uuid.UUID(accepted.task_id)
    assert await db.fetchval("SELECT count(*) FROM blobs WHERE task_id = $1", task_id) == 1
    await transition(db, accepted.task_id, "SUCCEEDED", "DONE", "executor", "executed")
    report = await purge(db, 10_000, {tenant: 0}, codec=codec_for(settings))
    assert (report.tasks, report.blobs) == (1, 1)
    assert await db.fetchval("SELECT count(*) FROM blobs WHERE task_id = $1", task_id) == 0
    task = (await ingest.GetTask(GetTaskRequest(task_id=accepted.task_id))).task
    assert not task.envelope.document.HasField("blob") and not task.envelope.document.body
    assert task.envelope.document.page_count == 1  # what it was stays; the bytes are gone
