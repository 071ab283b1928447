"""Ingest's small parts without I/O: feed cursors, list page tokens, webhook signing and URLs."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest

from services.ingest import listing, signatures, webhooks
from services.ingest.feed import Cursor
from services.ingest.publisher import Publisher
from switchyard import Settings
from switchyard.stack import free_port
from switchyard.v1 import ListTasksRequest, TaskStatus


def test_cursor_round_trip_and_order() -> None:
    a = Cursor(1200, uuid.uuid4(), 3)
    assert Cursor.decode(a.encode()) == a
    start = Cursor.before_txid(1201)
    assert a < start < Cursor(1201, uuid.UUID(int=0), 0)
    low, high = sorted([uuid.uuid4(), uuid.uuid4()])
    assert Cursor(5, low, 9) < Cursor(5, high, 1)  # uuid order = PostgreSQL's byte order
    assert low.bytes < high.bytes


@pytest.mark.parametrize("token", ["", "!!", "bm9wZQ", Cursor(1, uuid.UUID(int=7), -5).encode()])
def test_bad_cursors_are_refused(token: str) -> None:
    with pytest.raises(ValueError):
        Cursor.decode(token)


def test_page_tokens_are_bound_to_their_filters() -> None:
    request = ListTasksRequest(statuses=[TaskStatus.TASK_STATUS_QUEUED], page_size=2)
    query = listing.parse(request, "acme")
    assert isinstance(query, listing.Query) and query.statuses == ("QUEUED",)
    token = listing.encode_token(query, datetime.now(timezone.utc), uuid.uuid4())
    again = listing.parse(ListTasksRequest(statuses=[TaskStatus.TASK_STATUS_QUEUED],
                                           page_size=2, page_token=token), "acme")
    assert isinstance(again, listing.Query) and again.after is not None
    other = listing.parse(ListTasksRequest(page_token=token), "acme")
    assert [p.field for p in other] == ["page_token"]  # type: ignore[union-attr]
    junk = listing.parse(ListTasksRequest(page_token="xyz"), "acme")
    assert "not a token" in junk[0].description  # type: ignore[index]


def test_list_request_problems_name_fields() -> None:
    request = ListTasksRequest(statuses=[0, 42], page_size=501)
    request.created_after.FromSeconds(2000)
    request.created_before.FromSeconds(1000)
    problems = listing.parse(request, "acme")
    assert {p.field for p in problems} == {  # type: ignore[union-attr]
        "statuses[0]", "statuses[1]", "created_before", "page_size"}


def test_webhook_signature_is_the_standard_webhooks_reference_vector() -> None:
    # The example from the Standard Webhooks specification (whsec_ secret, base64 key).
    body = b'{"test": 2432232314}'
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    assert signatures.sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == \
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_webhook_signature_verifies_and_detects_tampering() -> None:
    body = b'{"event": {}}'
    sent = signatures.headers("s3cret-not-whsec", "msg-1", body, now=1700000000)
    signature = sent[signatures.SIGNATURE_HEADER]
    assert signature.startswith("v1,")

    def check(secret: str = "s3cret-not-whsec", message_id: str = "msg-1",
              timestamp: str = "1700000000", sig: str = signature, data: bytes = body,
              now: float = 1700000100) -> None:
        signatures.verify([secret], message_id, timestamp, sig, data, now=now)

    check()
    check(sig=f"v1,bm90LXRoaXM= {signature}")  # several signatures: any v1 one may match
    signatures.verify(["old-secret", "s3cret-not-whsec"], "msg-1", "1700000000", signature,
                      body, now=1700000000)  # rotation: any of the secrets
    for bad in ({"secret": "other"}, {"message_id": "msg-2"}, {"timestamp": "1700000001"},
                {"data": body + b" "}, {"timestamp": "soon"}, {"sig": ""},
                {"sig": signature.replace("v1,", "v2,")},
                {"now": 1700000000 + signatures.TOLERANCE_S + 1},
                {"now": 1700000000 - signatures.TOLERANCE_S - 1}):
        with pytest.raises(signatures.SignatureError):
            check(**bad)  # type: ignore[arg-type]
    assert signatures.new_secret().startswith("whsec_")
    assert len(signatures.secret_key(signatures.new_secret())) == 32


@pytest.mark.parametrize(("url", "ok"), [
    ("http://127.0.0.1:8095/hook", True),
    ("https://localhost/hook", True),
    ("http://[::1]:9/x", True),
    ("http://10.0.0.8/hook", False),
    ("http://metadata.google.internal/", False),
    ("ftp://127.0.0.1/x", False),
    ("http://user:pw@127.0.0.1/x", False),
    ("http:///nohost", False),
    ("http://127.0.0.1:99999/x", False),
])
def test_webhook_urls_are_limited_to_allowed_hosts(url: str, ok: bool) -> None:
    assert (webhooks.url_problem(url, Settings()) is None) is ok
    if url.startswith("http://10."):
        assert webhooks.url_problem(url, Settings(webhook_allowed_hosts="*")) is None


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8000/v2/repository/models/invoice_risk/unload",   # Triton's model control
    "http://localhost:8001/", "http://[::1]:8002/metrics", "http://127.0.0.1:5432/",
    "http://127.0.0.1:9092/", "http://127.0.0.1:8080/api/items", "http://127.0.0.1:8081/v1/tasks",
    "http://127.0.0.1:7051/", "http://127.0.0.1:9104/", "http://0.0.0.0:8000/",
    "http://[::ffff:127.0.0.1]:8000/", "http://127.0.0.2:8000/", "http://kafka-0:9093/",
    "http://db.internal:6432/x",
    # other spellings of 127.0.0.1 a connection reads as it (an outside integrator's
    # webhook to http://0x7f000001:<triton>/.../unload unloaded a model for every tenant)
    "http://0x7f000001:8000/", "http://2130706433:8000/", "http://127.1:8000/",
    "http://0177.0.0.1:8000/", "http://localhost.:8001/", "http://LOCALHOST:8001/",
])
def test_webhooks_never_reach_the_stacks_own_servers(url: str) -> None:
    """Even where any host is allowed: a tenant's webhook is no way into Triton's model
    control, PostgreSQL, the broker or another service's port."""
    settings = Settings(webhook_allowed_hosts="*", postgres_port=5432,
                        kafka_bootstrap_servers="127.0.0.1:9092,kafka-0:9093",
                        postgres_dsn="postgresql://sy@db.internal:6432/switchyard")
    problem = webhooks.url_problem(url, settings)
    assert problem is not None and "this stack's own" in problem, (url, problem)
    assert webhooks.url_problem("http://127.0.0.1:8095/hook", settings) is None  # a downstream


def test_callback_url_needs_a_signing_key() -> None:
    assert [p.field for p in webhooks.callback_problems("http://127.0.0.1/x", Settings())] \
        == ["callback_url"]
    keyed = Settings(webhook_signing_key="k" * 32)
    assert webhooks.callback_problems("http://127.0.0.1/x", keyed) == []
    assert webhooks.callback_problems("", Settings()) == []


def test_backoff_doubles_and_is_capped() -> None:
    delays = [webhooks.backoff_s(n, 1.0) for n in range(1, 12)]
    assert 0.8 <= delays[0] <= 1.0 and 3.2 <= delays[2] <= 4.0
    assert max(delays) <= webhooks.MAX_BACKOFF_S


def test_unknown_fault_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="SWITCHYARD_FAULT_INJECT"):
        Publisher(Settings(fault_inject="crash_sometimes"), None, None)  # type: ignore[arg-type]


def test_timeline_summaries_are_one_readable_line_with_whole_numbers() -> None:
    from services.ingest.timeline import status_summary, summary

    decided = summary("decision.made", "decision", {
        "outcome": "ESCALATE", "rule": "amount_over_limit", "pack": "invoice",
        "pack_version": "1.0.0", "label": "invoice", "input_sha256": "ab" * 32,
        "models": [{"name": "document_router", "version": 3.0, "confidence": 0.971},
                   {"name": "invoice_extractor", "version": "1.0.0", "confidence": 0.5}]})
    assert decided == ("ESCALATE by rule amount_over_limit (pack invoice 1.0.0); models "
                       "document_router 3 (0.97), invoice_extractor 1.0.0 (0.50)")
    assert summary("step.executed", "executor", {
        "step_id": "post_invoice", "outcome": "STEP_OUTCOME_SUCCEEDED", "attempts": 1.0}) == \
        "step post_invoice succeeded after 1 attempt"
    assert summary("step.executed", "executor", {
        "step_id": "post", "outcome": "STEP_OUTCOME_FAILED_PERMANENT", "attempts": 3.0}) == \
        "step post failed after 3 attempts"
    assert summary("review.verdict", "reviewer:key-2", {
        "verdict": "modify", "modified_fields": {"total": "ab", "po": "cd"}}) == \
        "modified by key-2; modified po, total"
    assert summary("review.verdict", "reviewer:key-2", {"verdict": "approve",
                                                        "modified_fields": {}}) == \
        "approved by key-2"
    assert summary("task.cancelled", "key-1", {"from_status": "BLOCKED",
                                               "reason_sha256": ""}) == \
        "cancelled by key-1 (was BLOCKED)"
    assert summary("task.redriven", "key-0", {"status": "QUEUED", "stage": "INGESTED",
                                              "redrives": 2.0}) == \
        "re-driven by key-0 from QUEUED INGESTED (re-drive 2)"
    assert summary("task.redriven", "reconciler", {
        "status": "IN_PROGRESS", "stage": "EXECUTING", "redrives": 1.0,
        "stalled_for_s": 300.0}) == ("re-driven by reconciler from IN_PROGRESS EXECUTING "
                                     "after 300 s without progress (re-drive 1)")
    assert summary("task.retried", "key-0", {"new_task_id": "t2", "attempt": 1.0,
                                             "principal": "key-0"}) == \
        "retried by key-0 as task t2 (attempt 1)"
    assert "retry of task t1" in summary("task.created_as_retry", "key-0",
                                         {"retry_of": "t1", "attempt": 2})
    assert summary("task.taken_over", "executor", {
        "from_replica": "pod-a:7:1f", "to_replica": "pod-b:9:2e", "replica_timeout_s": 15.0,
        "decision_id": "d1"}) == ("taken over by executor replica pod-b:9:2e from pod-a:7:1f, "
                                  "which stopped (no beat for 15s, or shut down) while running it")
    # an action without a writer of its own names its scalar details, never hashes
    assert summary("breaker.reset", "key-0", {"name": "erp", "count": 2.0,
                                              "reason_sha256": "ff"}) == \
        "breaker.reset: count 2, name erp"
    # a detail of an unexpected shape still gets a line
    assert summary("step.executed", "executor", {"outcome": "x"}) == "step.executed: outcome x"
    assert status_summary("BLOCKED", "REVIEW", "awaiting_review") == \
        "\u2192 BLOCKED at REVIEW (awaiting_review)"
    assert status_summary("QUEUED", "INGESTED", "") == "\u2192 QUEUED at INGESTED"


def test_rest_json_keeps_empty_repeated_fields_and_reads_short_enum_names() -> None:
    from services.ingest.rest import ROUTES, BadRequest, build_request, to_json
    from switchyard.v1 import GetTaskTimelineResponse, ListTasksResponse, Task, TimelineEntry

    assert to_json(ListTasksResponse()) == {"tasks": []}
    nested = to_json(GetTaskTimelineResponse(task=Task(), entries=[TimelineEntry(action="a")]))
    assert nested["entries"] == [{"action": "a"}]
    route = next(r for r in ROUTES if r.rpc == "ListTasks")
    for spelling in ("FAILED", "failed", "TASK_STATUS_FAILED"):
        request = build_request(route, {}, {"statuses": spelling}, None)
        assert list(request.statuses) == [TaskStatus.TASK_STATUS_FAILED]
    both = build_request(route, {}, {"statuses": "queued,BLOCKED"}, None)
    assert list(both.statuses) == [TaskStatus.TASK_STATUS_QUEUED, TaskStatus.TASK_STATUS_BLOCKED]
    with pytest.raises(BadRequest) as refused:
        build_request(route, {}, {"statuses": "done"}, None)
    assert refused.value.errors[0]["field"] == "statuses"
    assert "'done' is not one of QUEUED, IN_PROGRESS" in refused.value.errors[0]["detail"]
    with pytest.raises(BadRequest):  # UNSPECIFIED is no status to filter by
        build_request(route, {}, {"statuses": "UNSPECIFIED"}, None)


async def test_a_receiver_that_does_not_answer_in_time_is_named_with_the_timeout() -> None:
    """A delivery that timed out says so, with the limit and the URL (the exception's own
    text is empty), since the receiver may still have got it."""
    import asyncio

    import aiohttp
    from aiohttp import web

    from switchyard.stack import free_port

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(1.5)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    url = f"http://127.0.0.1:{port}/hook"
    settings = Settings(webhook_timeout_s=0.5)
    try:
        async with aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=settings.webhook_timeout_s)) as session:
            deliverer = webhooks.Deliverer(None, settings)  # type: ignore[arg-type]
            error = await deliverer.post(session, {  # type: ignore[arg-type]
                "secret": "s" * 32, "webhook_id": uuid.uuid4(), "body": b"{}",
                "delivery_id": uuid.uuid4(), "url": url})
    finally:
        await runner.cleanup()
    assert error == f"no answer within 0.5 s (SWITCHYARD_WEBHOOK_TIMEOUT_S) from {url}"


async def test_a_name_that_resolves_to_the_stacks_own_server_is_refused_when_delivering(
        ) -> None:
    """A name that is no loopback spelling but resolves to one (a DNS record for 127.0.0.1,
    one that changed since the URL was registered) is refused where deliveries connect: the
    dispatcher's resolver (the real one of the OS, through aiohttp) checks what it found."""
    import aiohttp

    settings = Settings(webhook_allowed_hosts="*", triton_http_port=free_port())
    resolver = webhooks.OwnServersRefused(settings)
    try:
        with pytest.raises(webhooks.OwnServerRefused, match="own Triton HTTP server"):
            await resolver.resolve("localhost", settings.triton_http_port)
        assert await resolver.resolve("localhost", free_port())   # not one of ours
    finally:
        await resolver.close()
    connector = aiohttp.TCPConnector(resolver=webhooks.OwnServersRefused(settings))
    async with aiohttp.ClientSession(connector=connector) as session:
        with pytest.raises(aiohttp.ClientConnectorDNSError) as caught:
            await session.post(f"http://localhost:{settings.triton_http_port}/v2/repository/"
                               "models/invoice_risk/unload")
    assert isinstance(caught.value.os_error, webhooks.OwnServerRefused)
