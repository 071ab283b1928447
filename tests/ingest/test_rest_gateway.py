"""The REST/JSON gateway and inbound webhooks, through a real ``switchyard run ingest``.

Only ingest runs (as in the other ingest tests), with API keys on: the gateway forwards to
the process's own gRPC API with the caller's key, so these tests see the gRPC rules (roles,
tenants, validation, rate limits) arrive as HTTP statuses and problem documents. The review
verbs answer 503 here, the review service being down, which is itself the UNAVAILABLE mapping.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from multidict import CIMultiDict
import pytest
from confluent_kafka import Producer
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st
from openapi_spec_validator import validate

from services.ingest.openapi import document
from services.ingest.rest import Gateway, Inbound, max_body_bytes
from switchyard import Settings
from switchyard.messaging import INTAKE
from switchyard.stack import free_port
from tests.document_samples import noise_png
from tests.polling import eventually

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ingest_process")]

KEYS = ("sub-acme:acme:submitter,sub-globex:globex:submitter,aud-acme:acme:auditor,"
        "sub-slow:slowco:submitter,adm-acme:acme:admin,rev-acme:acme:reviewer")
ACME = {"Authorization": "Bearer sub-acme"}
GLOBEX = {"Authorization": "Bearer sub-globex"}
AUDITOR = {"Authorization": "Bearer aud-acme"}
SLOW = {"Authorization": "Bearer sub-slow"}
ADMIN = {"Authorization": "Bearer adm-acme"}
REVIEWER = {"Authorization": "Bearer rev-acme"}


@pytest.fixture(scope="module")
def settings(settings: Settings) -> Settings:
    """API keys on, the gateway on its own port, and a tenant whose bucket holds one task."""
    return settings.replace(api_keys=KEYS, ingest_rest_port=free_port(),
                            tenant_rate_limit_overrides="slowco:0.001/1")


@pytest.fixture
async def http(settings: Settings) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    async with aiohttp.ClientSession() as session:
        yield session, f"http://127.0.0.1:{settings.ingest_rest_port}"


def submission(tenant: str = "acme", key: str | None = None, text: str = "Invoice 42, "
               "amount due $10", **extra: Any) -> dict[str, Any]:
    """A SubmitTaskRequest in proto3 JSON (lowerCamelCase, bytes in base64)."""
    return {"submission": {"tenantId": tenant, "idempotencyKey": key or uuid.uuid4().hex,
                           "kind": "invoice", **extra,
                           "document": {"contentType": "text/plain",
                                        "body": base64.b64encode(text.encode()).decode()}}}


async def call(http: tuple[aiohttp.ClientSession, str], method: str, path: str,
               headers: dict[str, str] | None = None, **kwargs: Any
               ) -> tuple[int, dict[str, Any], Any]:
    session, base = http
    async with session.request(method, base + path, headers=headers, **kwargs) as response:
        text = await response.text()
        body = json.loads(text) if text else None
        return response.status, dict(response.headers), body


def assert_problem(status: int, headers: dict[str, str], body: Any, expected: int) -> None:
    assert status == expected, body
    assert headers["Content-Type"].startswith("application/problem+json")
    assert body["status"] == expected and body["title"] and body["detail"]


# -- tasks -------------------------------------------------------------------------------

async def test_submit_get_list_cancel_over_rest(http: Any) -> None:
    key = uuid.uuid4().hex
    status, _, created = await call(http, "POST", "/v1/tasks", ACME,
                                    json=submission(key=key, metadata={"po": "17"}))
    assert status == 200, created
    assert created["created"] is True and created["status"] == "TASK_STATUS_QUEUED"
    task_id = created["taskId"]
    status, _, again = await call(http, "POST", "/v1/tasks", ACME,
                                  json=submission(key=key, metadata={"po": "17"}))
    assert (status, again["taskId"], again.get("created", False)) == (200, task_id, False)

    status, _, got = await call(http, "GET", f"/v1/tasks/{task_id}", ACME)
    assert status == 200
    assert got["task"]["envelope"]["taskId"] == task_id
    assert got["task"]["envelope"]["idempotencyKey"] == key
    assert base64.b64decode(got["task"]["envelope"]["document"]["body"]) == \
        b"Invoice 42, amount due $10"
    assert got["task"]["sequence"] == "1"  # int64 as a string, per proto3 JSON
    assert got["task"]["envelope"]["metadata"] == {"po": "17"}

    status, _, page = await call(http, "GET", "/v1/tasks?tenant_id=acme&statuses="
                                 "TASK_STATUS_QUEUED&page_size=500", ACME)
    assert status == 200
    assert task_id in [t["envelope"]["taskId"] for t in page["tasks"]]
    # a reviewer's or an auditor's key reads the task without its document's bytes, file name
    # or metadata (documents reach reviewers redacted, through the review service only, with
    # reviewer groups applied; auditors audit what happened, which needs no bytes)
    for path, who in itertools.product(
            (f"/v1/tasks/{task_id}", "/v1/tasks?tenant_id=acme&page_size=500",
             f"/v1/tasks/{task_id}/timeline"), (REVIEWER, AUDITOR)):
        if who is REVIEWER and path.endswith("/timeline"):
            continue  # reviewers do not read timelines
        status, _, seen = await call(http, "GET", path, who)
        assert status == 200, seen
        (envelope,) = [t["envelope"] for t in seen.get("tasks", [seen.get("task")])
                       if t["envelope"]["taskId"] == task_id]
        assert set(envelope["document"]) <= {"contentType", "pageCount", "kindHint"}, envelope
        assert not envelope.get("metadata") and envelope["kind"] == "invoice"
        assert set(envelope) <= {"taskId", "tenantId", "kind", "document", "idempotencyKey",
                                 "correlationId", "receivedAt", "source", "priority",
                                 "priorityLevel", "attempt", "metadata"}, envelope

    status, _, cancelled = await call(http, "POST", f"/v1/tasks/{task_id}/cancel", ACME,
                                      json={"reason": "changed my mind"})
    assert status == 200 and cancelled["task"]["status"] == "TASK_STATUS_CANCELLED"
    status, headers, body = await call(http, "POST", f"/v1/tasks/{task_id}/cancel", ACME,
                                       json={})
    assert_problem(status, headers, body, 409)
    assert body["grpc_status"] == "FAILED_PRECONDITION" and "already" in body["detail"]

    status, _, retried = await call(http, "POST", f"/v1/tasks/{task_id}/retry", ACME, json={})
    assert status == 200 and retried["created"] is True
    assert retried["task"]["envelope"]["metadata"]["retry_of"] == task_id
    # the retry is in both timelines: the old task names the new one, the new one its origin
    new_id = retried["task"]["envelope"]["taskId"]
    status, _, story = await call(http, "GET", f"/v1/tasks/{task_id}/timeline", ADMIN)
    assert status == 200, story
    (entry,) = [e for e in story["entries"] if e["action"] == "task.retried"]
    assert entry["detail"]["new_task_id"] == new_id and entry["detail"]["attempt"] == 1
    assert entry["detail"]["principal"] == "key-0" and entry["entryHash"]
    assert entry["summary"] == f"retried by key-0 as task {new_id} (attempt 1)"
    status, _, story = await call(http, "GET", f"/v1/tasks/{new_id}/timeline", ADMIN)
    (entry,) = [e for e in story["entries"] if e["action"] == "task.created_as_retry"]
    assert entry["detail"]["retry_of"] == task_id and task_id in entry["summary"]
    assert story["entries"][0]["summary"] == "\u2192 QUEUED at INGESTED"
    # a repeated retry finds the same new task and records nothing more
    status, _, again = await call(http, "POST", f"/v1/tasks/{task_id}/retry", ACME, json={})
    assert again["task"]["envelope"]["taskId"] == new_id and not again.get("created")
    status, _, story = await call(http, "GET", f"/v1/tasks/{task_id}/timeline", ADMIN)
    assert [e["action"] for e in story["entries"]].count("task.retried") == 1

    # enum query parameters take the CLI's short names too; repeated fields are always there
    for spelling in ("FAILED", "failed", "TASK_STATUS_FAILED", "cancelled,failed"):
        status, _, page = await call(http, "GET", "/v1/tasks?tenant_id=acme&page_size=500&"
                                     f"statuses={spelling}", ACME)
        assert status == 200, (spelling, page)
    assert task_id in [t["envelope"]["taskId"] for t in page["tasks"]]
    status, _, page = await call(http, "GET", "/v1/tasks?tenant_id=acme&kinds=no_such_kind",
                                 ACME)
    assert (status, page) == (200, {"tasks": []})

    status, _, batch = await call(http, "POST", "/v1/tasks/batch", ACME, json={
        "submissions": [submission()["submission"], submission(tenant="globex")["submission"]]})
    assert status == 200 and batch["acceptedCount"] == 1 and batch["rejectedCount"] == 1
    assert batch["results"][1]["error"]["code"] == 7  # PERMISSION_DENIED, per item


async def test_filters_timeline_and_redrive_over_rest(http: Any) -> None:
    """ListTasks' kinds (repeatable) and metadata[KEY]=VALUE query parameters; the timeline
    for auditors and admins; the re-drive for admins only, a terminal task is 409."""
    marker = uuid.uuid4().hex[:8]
    ids = []
    for kind, po in (("invoice", "17"), ("receipt", "17"), ("invoice", "18")):
        status, _, created = await call(http, "POST", "/v1/tasks", ACME, json=submission(
            kind=kind, metadata={"po": po, "batch": marker}))
        assert status == 200, created
        ids.append(created["taskId"])
    query = urllib.parse.urlencode([("tenant_id", "acme"), ("kinds", "invoice"),
                                    ("kinds", "receipt"), ("metadata[po]", "17"),
                                    ("metadata[batch]", marker)])
    status, _, page = await call(http, "GET", f"/v1/tasks?{query}", ACME)
    assert status == 200, page
    assert [t["envelope"]["taskId"] for t in page["tasks"]] == [ids[1], ids[0]]
    status, _, page = await call(http, "GET", "/v1/tasks?kinds=invoice&metadata%5Bbatch%5D="
                                 f"{marker}", ACME)
    assert [t["envelope"]["taskId"] for t in page["tasks"]] == [ids[2], ids[0]]
    status, headers, body = await call(http, "GET", "/v1/tasks?kinds=Not%20A%20Kind", ACME)
    assert_problem(status, headers, body, 422)
    assert body["errors"][0]["field"] == "kinds[0]"
    status, headers, body = await call(http, "GET", "/v1/tasks?metadata%5Bpo%5D=1&"
                                       "metadata%5Bpo%5D=2", ACME)
    assert_problem(status, headers, body, 400)
    status, headers, body = await call(http, "GET", "/v1/tasks?metadata=po&metadata%5Bpo%5D=1",
                                       ACME)
    assert_problem(status, headers, body, 400)
    assert body["errors"] == [{"field": "metadata",
                               "detail": "give each entry as metadata[KEY]=VALUE"}]

    status, headers, body = await call(http, "GET", f"/v1/tasks/{ids[0]}/timeline", ACME)
    assert_problem(status, headers, body, 403)    # submitters do not read timelines
    status, _, story = await call(http, "GET", f"/v1/tasks/{ids[0]}/timeline", AUDITOR)
    assert status == 200 and story["task"]["envelope"]["taskId"] == ids[0]
    assert [(e["source"], e["action"], e["status"]) for e in story["entries"]] == [
        ("TIMELINE_SOURCE_STATUS", "status.changed", "TASK_STATUS_QUEUED")]

    status, headers, body = await call(http, "POST", f"/v1/tasks/{ids[0]}/redrive", AUDITOR,
                                       json={"reason": "stuck"})
    assert_problem(status, headers, body, 403)    # re-driving is for admins
    status, _, redriven = await call(http, "POST", f"/v1/tasks/{ids[0]}/redrive", ADMIN,
                                     json={"reason": "stuck"})
    assert status == 200 and redriven["task"]["envelope"]["taskId"] == ids[0]
    status, _, story = await call(http, "GET", f"/v1/tasks/{ids[0]}/timeline", ADMIN)
    assert story["entries"][-1]["action"] == "task.redriven"
    assert story["entries"][-1]["actor"] == "key-4" and story["entries"][-1]["entryHash"]
    status, headers, body = await call(http, "POST", f"/v1/tasks/{ids[0]}/redrive", ADMIN,
                                       json={"reason": "x" * 1001})
    assert_problem(status, headers, body, 422)
    assert body["errors"][0]["field"] == "reason"
    await call(http, "POST", f"/v1/tasks/{ids[2]}/cancel", ACME, json={})
    status, headers, body = await call(http, "POST", f"/v1/tasks/{ids[2]}/redrive", ADMIN,
                                       json={})
    assert_problem(status, headers, body, 409)
    status, headers, body = await call(http, "GET", f"/v1/tasks/{uuid.uuid4()}/timeline", ADMIN)
    assert_problem(status, headers, body, 404)


async def test_a_kafka_producer_finds_its_task_by_its_idempotency_key(
        http: Any, settings: Settings) -> None:
    """A record written to the intake topic never answers with a task id; ListTasks'
    idempotency_key finds the task by the key the producer sent (an outside integrator could
    only put an id of its own in metadata), trimmed as submissions are, at most one."""
    key = f"upstream-{uuid.uuid4().hex[:12]}"
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
    producer.produce(INTAKE.full_name(settings), key=key.encode(), value=json.dumps({
        "tenant_id": "acme", "idempotency_key": key, "kind": "invoice",
        "document": {"body": "Invoice 5, amount due $12"}}).encode())
    assert producer.flush(30) == 0

    async def found() -> list[dict[str, Any]]:
        status, _, page = await call(http, "GET", "/v1/tasks?" + urllib.parse.urlencode(
            {"idempotency_key": f" {key} "}), ACME)
        assert status == 200, page
        return page.get("tasks", [])
    (task,) = await eventually(found, "the Kafka record's task by its key", 60, 0.5)
    assert task["envelope"]["idempotencyKey"] == key and task["envelope"]["source"] == \
        "TASK_SOURCE_KAFKA_INTAKE"
    status, _, page = await call(http, "GET", "/v1/tasks?idempotency_key=never-sent", ACME)
    assert (status, page.get("tasks", [])) == (200, [])
    # another tenant's key is not found under this tenant
    status, _, page = await call(http, "GET", f"/v1/tasks?idempotency_key={key}", GLOBEX)
    assert (status, page.get("tasks", [])) == (200, [])
    status, headers, body = await call(http, "GET", "/v1/tasks?idempotency_key=" + "k" * 129,
                                       ACME)
    assert_problem(status, headers, body, 422)
    assert body["errors"][0]["field"] == "idempotency_key"


async def test_auth_and_roles_are_the_grpc_ones(http: Any) -> None:
    status, _, created = await call(http, "POST", "/v1/tasks", ACME, json=submission())
    task_id = created["taskId"]
    two_keys = CIMultiDict([("Authorization", "Bearer sub-acme"),
                            ("Authorization", "Bearer adm-acme")])   # which one counts? none
    for headers in (None, {"Authorization": "Bearer not-a-key"}, {"Authorization": "sub-acme"},
                    two_keys):
        status, response_headers, body = await call(http, "GET", f"/v1/tasks/{task_id}",
                                                    headers)
        assert_problem(status, response_headers, body, 401)
        assert response_headers["WWW-Authenticate"] == "Bearer"
    # an auditor reads but may not submit; what it reads (a document, personal fields) is
    # stored by no cache on the way
    status, response_headers, _ = await call(http, "GET", f"/v1/tasks/{task_id}", AUDITOR)
    assert status == 200
    assert response_headers["Cache-Control"] == "no-store"
    assert response_headers["X-Content-Type-Options"] == "nosniff"
    status, headers, body = await call(http, "POST", "/v1/tasks", AUDITOR, json=submission())
    assert_problem(status, headers, body, 403)
    # another tenant's task is absent, never forbidden; submitting as another tenant is 403
    status, headers, body = await call(http, "GET", f"/v1/tasks/{task_id}", GLOBEX)
    assert_problem(status, headers, body, 404)
    status, headers, body = await call(http, "POST", "/v1/tasks", GLOBEX, json=submission())
    assert_problem(status, headers, body, 403)
    status, headers, body = await call(http, "GET", "/v1/tasks?tenant_id=acme", GLOBEX)
    assert_problem(status, headers, body, 403)


async def test_bad_requests_name_their_fields(http: Any) -> None:
    request = submission()
    request["submission"].update(idempotencyKey="", kind="Not A Kind!")
    status, headers, body = await call(http, "POST", "/v1/tasks", ACME, json=request)
    assert_problem(status, headers, body, 422)
    assert {"idempotency_key", "kind"} <= {e["field"] for e in body["errors"]}
    assert all(e["detail"] for e in body["errors"])
    # not proto3 JSON for the request: 400 before any RPC
    for raw in (b"{not json", b"[1, 2]", json.dumps({"submission": {"nope": 1}}).encode(),
                json.dumps({"submission": {"tenantId": 5}}).encode(),
                b'{"submission":' + b"[" * 5000 + b"]" * 5000 + b"}"):   # past the parser
        status, headers, body = await call(http, "POST", "/v1/tasks",
                                           {**ACME, "Content-Type": "application/json"},
                                           data=raw)
        assert_problem(status, headers, body, 400)
        assert body["errors"], raw
    # a deadline without its UTC offset: said as what it needs, not as the parser's words
    # about a cut of the value ("time data '2025-06' does not match format ...")
    late = submission()
    late["submission"]["deadline"] = "2025-06-30T12:00:00"
    status, headers, body = await call(http, "POST", "/v1/tasks", ACME, json=late)
    assert_problem(status, headers, body, 400)
    assert body["errors"] == [{"field": "submission.deadline", "detail": (
        "submission.deadline: an RFC 3339 time with its UTC offset, e.g. "
        "'2025-06-30T12:00:00Z' or '2025-06-30T14:00:00+02:00'")}], body
    # an empty body is the empty message (as grpc-gateway reads it): the submission's
    # missing fields are named; the Content-Type is not asked (JSON sent as text/plain works)
    status, headers, body = await call(http, "POST", "/v1/tasks", ACME, data=b"")
    assert_problem(status, headers, body, 422)
    assert {"tenant_id", "idempotency_key", "document.body"} <= {
        e["field"] for e in body["errors"]}, body
    plain = submission()
    plain["submission"]["idempotencyKey"] = uuid.uuid4().hex
    status, _, body = await call(http, "POST", "/v1/tasks",
                                 {**ACME, "Content-Type": "text/plain"},
                                 data=json.dumps(plain).encode())
    assert status == 200 and body["created"], body
    # a body that is not base64 is refused, not decoded leniently into other bytes
    for body_text in ("SW52b2l$$$jZSA0Mg==", "Invoice 42 total 10 EUR", "Q="):
        bad = submission()
        bad["submission"]["document"]["body"] = body_text
        status, headers, body = await call(http, "POST", "/v1/tasks", ACME, json=bad)
        assert_problem(status, headers, body, 400)
        assert body["errors"] == [{"field": "submission.document.body", "detail":
                                   "not base64 (proto3 JSON bytes: standard or URL-safe "
                                   "base64)"}], body_text
    # standard or URL-safe, padded or not: all base64 proto3 JSON accepts
    for good_text in ("SW52b2ljZSA0Mg==", "SW52b2ljZSA0Mg", "_-8="):
        fine = submission()
        fine["submission"]["document"]["body"] = good_text
        fine["submission"]["idempotencyKey"] = uuid.uuid4().hex
        status, _, body = await call(http, "POST", "/v1/tasks", ACME, json=fine)
        assert status != 400, (good_text, body)
    status, headers, body = await call(http, "GET", "/v1/tasks?tenant_id=acme&colour=red", ACME)
    assert_problem(status, headers, body, 400)
    assert body["errors"] == [{"field": "colour", "detail": "unknown query parameter"}]
    status, headers, body = await call(http, "GET", "/v1/tasks?statuses=TASK_STATUS_NOPE", ACME)
    assert_problem(status, headers, body, 400)
    assert body["errors"][0]["field"] == "statuses"
    assert "QUEUED, IN_PROGRESS, BLOCKED, SUCCEEDED, FAILED, CANCELLED" in \
        body["errors"][0]["detail"], body
    status, headers, body = await call(http, "GET", f"/v1/tasks/{uuid.uuid4()}", ACME)
    assert_problem(status, headers, body, 404)
    status, headers, body = await call(http, "PUT", "/v1/tasks", ACME)
    assert_problem(status, headers, body, 405)


async def test_over_the_rate_limit_is_429_with_retry_after(http: Any) -> None:
    first = await call(http, "POST", "/v1/tasks", SLOW, json=submission(tenant="slowco"))
    assert first[0] == 200, first[2]
    status, headers, body = await call(http, "POST", "/v1/tasks", SLOW,
                                       json=submission(tenant="slowco"))
    assert_problem(status, headers, body, 429)
    assert int(headers["Retry-After"]) >= 1
    assert body["grpc_status"] == "RESOURCE_EXHAUSTED"


async def test_review_verbs_map_an_unavailable_review_service_to_503(http: Any) -> None:
    status, headers, body = await call(http, "GET", "/v1/review/items", ACME)
    assert_problem(status, headers, body, 503)
    assert body["grpc_status"] == "UNAVAILABLE"


async def test_watch_as_long_poll_and_server_sent_events(http: Any) -> None:
    _, _, created = await call(http, "POST", "/v1/tasks", ACME, json=submission())
    task_id = created["taskId"]
    await call(http, "POST", f"/v1/tasks/{task_id}/cancel", ACME, json={})
    status, _, polled = await call(http, "GET", f"/v1/tasks/{task_id}/events?wait_s=10", ACME)
    assert status == 200
    assert [e["event"]["status"] for e in polled["events"]] == \
        ["TASK_STATUS_QUEUED", "TASK_STATUS_CANCELLED"]
    status, _, after = await call(http, "GET", f"/v1/tasks/{task_id}/events?wait_s=10&"
                                  "after_sequence=1", ACME)
    assert [e["event"]["sequence"] for e in after["events"]] == ["2"]

    session, base = http
    async with session.get(f"{base}/v1/tasks/{task_id}/events",
                           headers={**ACME, "Accept": "text/event-stream"}) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        text = await response.text()  # the watch ends once the task is terminal
    events = [json.loads(line[len("data: "):]) for line in text.splitlines()
              if line.startswith("data: ")]
    assert [e["event"]["status"] for e in events] == ["TASK_STATUS_QUEUED",
                                                      "TASK_STATUS_CANCELLED"]
    # each event names its sequence, and an EventSource reconnecting with it resumes there
    assert [line for line in text.splitlines() if line.startswith("id: ")] == ["id: 1", "id: 2"]
    async with session.get(f"{base}/v1/tasks/{task_id}/events",
                           headers={**ACME, "Accept": "text/event-stream",
                                    "Last-Event-ID": "1"}) as response:
        resumed = await response.text()
    assert [json.loads(line[len("data: "):])["event"]["status"] for line in
            resumed.splitlines() if line.startswith("data: ")] == ["TASK_STATUS_CANCELLED"]
    async with session.get(f"{base}/v1/tasks/{uuid.uuid4()}/events",
                           headers={**ACME, "Accept": "text/event-stream"}) as response:
        assert response.status == 404


async def test_a_server_sent_events_watch_with_nothing_to_say_answers_and_keeps_alive(
        http: Any) -> None:
    """A watch on a task that waits (here: no decision service, it stays queued) answers
    200 and a comment line before any event, so a client's or a proxy's timeout for the
    answer does not cut a watch that may last hours."""
    _, _, created = await call(http, "POST", "/v1/tasks", ACME, json=submission())
    session, base = http
    async with session.get(f"{base}/v1/tasks/{created['taskId']}/events?after_sequence=1",
                           headers={**ACME, "Accept": "text/event-stream"},
                           timeout=aiohttp.ClientTimeout(total=60)) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        assert await response.content.readline() == b": watching\n"


async def test_webhook_deliveries_and_dead_letters_over_rest(http: Any,
                                                             settings: Settings) -> None:
    """What an HTTP-only integrator needs besides submitting: its webhooks and how their
    deliveries went (and sending failed ones again), and the records the intake refused."""
    status, _, hook = await call(http, "POST", "/v1/webhooks", ADMIN,
                                 json={"url": f"http://127.0.0.1:{free_port()}/hook"})
    assert status == 200, hook
    webhook_id = hook["webhookId"]
    status, _, listed = await call(http, "GET", "/v1/webhooks", ADMIN)
    assert status == 200 and webhook_id in {w["webhookId"] for w in listed["webhooks"]}
    status, _, deliveries = await call(http, "GET", "/v1/webhook-deliveries?state=failed&"
                                       "since=2020-01-01T00:00:00Z&page_size=10", ADMIN)
    assert status == 200 and isinstance(deliveries["deliveries"], list), deliveries
    status, _, redelivered = await call(http, "POST", "/v1/webhook-deliveries/redeliver",
                                        ADMIN, json={"failedSince": "2020-01-01T00:00:00Z"})
    assert status == 200 and isinstance(redelivered["redelivered"], list), redelivered
    unknown = str(uuid.uuid4())
    status, headers, problem = await call(http, "POST", "/v1/webhook-deliveries/redeliver",
                                          ADMIN, json={"deliveryIds": [unknown]})
    assert_problem(status, headers, problem, 404)
    assert unknown in problem["detail"]
    assert (await call(http, "DELETE", f"/v1/webhooks/{webhook_id}", ADMIN))[0] == 200

    # a record of acme's the intake refuses: acme's admin finds, reads, replays, resolves it
    marker = uuid.uuid4().hex
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
    producer.produce(INTAKE.full_name(settings), key=marker.encode(),
                     value=b"not json " + marker.encode(), headers=[("x-tenant-id", b"acme")])
    assert producer.flush(30) == 0

    async def the_letter() -> dict[str, Any] | None:
        status, _, page = await call(http, "GET", "/v1/dead-letters?reason_code="
                                     "malformed_json&page_size=500", ADMIN)
        assert status == 200, page
        for record in page["deadLetters"]:
            _, _, got = await call(http, "GET", "/v1/dead-letters/"
                                   f"{record['letter']['deadLetterId']}", ADMIN)
            value = base64.b64decode(got["deadLetter"]["letter"].get("originalValue", ""))
            if marker.encode() in value:
                return got["deadLetter"]
        return None

    letter = await eventually(the_letter, "the refused record's letter over REST", 60, 0.5)
    assert letter["tenantId"] == "acme" and letter["letter"]["reasonCode"] == "malformed_json"
    letter_id = letter["letter"]["deadLetterId"]
    assert_problem(*await call(http, "GET", "/v1/dead-letters", ACME), 403)  # a submitter
    assert_problem(*await call(http, "GET", f"/v1/dead-letters/{letter_id}", GLOBEX), 403)
    status, _, replayed = await call(http, "POST", f"/v1/dead-letters/{letter_id}/replay",
                                     ADMIN, json={})
    assert status == 200 and replayed["deadLetter"]["replayCount"] == 1, replayed
    assert replayed["deadLetter"]["state"] == "DEAD_LETTER_STATE_REPLAYED"
    # then closed: a reason is required; the open ones no longer list it
    assert_problem(*await call(http, "POST", f"/v1/dead-letters/{letter_id}/resolve", ADMIN,
                               json={}), 422)
    status, _, resolved = await call(http, "POST", f"/v1/dead-letters/{letter_id}/resolve",
                                     ADMIN, json={"reason": "replayed; the sender fixed it"})
    assert status == 200 and resolved["deadLetter"]["state"] == "DEAD_LETTER_STATE_RESOLVED"
    assert resolved["deadLetter"]["resolution"] == "replayed; the sender fixed it"
    status, _, page = await call(http, "GET", "/v1/dead-letters?state=open&page_size=500",
                                 ADMIN)
    assert status == 200 and letter_id not in {
        r["letter"]["deadLetterId"] for r in page.get("deadLetters", [])}, page


# -- OpenAPI -----------------------------------------------------------------------------

async def test_openapi_document_is_served_valid_and_covers_every_route(
        http: Any, settings: Settings) -> None:
    status, _, served = await call(http, "GET", "/openapi.json")
    assert status == 200
    assert served["servers"] == [{"url": http[1]}]   # where it was fetched from
    assert served == {**json.loads(json.dumps(document())), "servers": served["servers"]}
    validate(served)
    app = Gateway(settings, Inbound(None, None, None)).app()  # type: ignore[arg-type]
    routes = {(r.method.lower(), r.resource.canonical) for r in app.router.routes()
              if r.method != "HEAD"}
    documented = {(method, path) for path, ops in served["paths"].items() for method in ops}
    assert routes == documented


# -- inbound webhooks --------------------------------------------------------------------

def signed(secret: str, body: bytes, message_id: str | None = None,
           at: int | None = None) -> dict[str, str]:
    """Standard Webhooks headers, computed here without the server's code."""
    message_id = message_id or f"msg_{uuid.uuid4().hex}"
    timestamp = str(int(time.time()) if at is None else at)
    key = base64.b64decode(secret[len("whsec_"):])
    digest = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return {"webhook-id": message_id, "webhook-timestamp": timestamp,
            "webhook-signature": "v1," + base64.b64encode(digest.digest()).decode(),
            "Content-Type": "application/json"}


async def register_source(http: Any) -> tuple[str, str]:
    status, _, registered = await call(http, "POST", "/v1/webhook-sources", ACME, json={
        "name": "crm", "mapping": {"kind": "type", "document": "data",
                                   "metadata": {"customer": "data.customer.id"}}})
    assert status == 200, registered
    assert registered["secret"].startswith("whsec_")
    return registered["source"]["sourceId"], registered["secret"]


async def test_inbound_webhook_good_bad_expired_and_replayed(http: Any) -> None:
    source_id, secret = await register_source(http)
    status, _, listed = await call(http, "GET", "/v1/webhook-sources", ACME)
    assert status == 200
    mine = [s for s in listed["sources"] if s["sourceId"] == source_id]
    assert mine and "secret" not in json.dumps(listed)
    assert mine[0]["mapping"]["metadata"] == {"customer": "data.customer.id"}

    path = f"/webhooks/in/{source_id}"
    body = json.dumps({"type": "invoice", "data": {"customer": {"id": 7}, "total": 10}}).encode()
    headers = signed(secret, body)
    status, _, accepted = await call(http, "POST", path, headers, data=body)
    assert status == 202, accepted
    assert accepted["created"] is True
    task_id = accepted["taskId"]
    _, _, got = await call(http, "GET", f"/v1/tasks/{task_id}", ACME)
    envelope = got["task"]["envelope"]
    assert (envelope["tenantId"], envelope["kind"], envelope["source"]) == \
        ("acme", "invoice", "TASK_SOURCE_WEBHOOK")
    assert envelope["metadata"]["customer"] == "7"
    assert json.loads(base64.b64decode(envelope["document"]["body"])) == \
        {"customer": {"id": 7}, "total": 10}

    # the same webhook-id again (a redelivery, freshly signed): the same task, nothing new
    replay = signed(secret, body, message_id=headers["webhook-id"])
    status, _, again = await call(http, "POST", path, replay, data=body)
    assert (status, again["taskId"], again.get("created", False)) == (202, task_id, False)

    wrong = signed("whsec_" + base64.b64encode(b"x" * 32).decode(), body)
    tampered = {**signed(secret, body), "webhook-id": "msg_other"}
    expired = signed(secret, body, at=int(time.time()) - 600)
    for bad in (wrong, tampered, expired, {"Content-Type": "application/json"}):
        status, response_headers, problem = await call(http, "POST", path, bad, data=body)
        assert_problem(status, response_headers, problem, 401)
    assert "expired" in (await call(http, "POST", path, expired, data=body))[2]["detail"]

    for raw, field in ((b"{not json", ""), (json.dumps({"data": {}}).encode(), "kind"),
                       (json.dumps({"type": "invoice", "data": {"customer": {}}}).encode(),
                        "metadata[customer]")):
        status, response_headers, problem = await call(http, "POST", path, signed(secret, raw),
                                                       data=raw)
        assert_problem(status, response_headers, problem, 400)
        assert problem["errors"][0]["field"] == field
    # a mapped kind that breaks SubmitTask's rules is a 400 naming the field
    raw = json.dumps({"type": "Not A Kind!", "data": {"customer": {"id": 1}}}).encode()
    status, response_headers, problem = await call(http, "POST", path, signed(secret, raw),
                                                   data=raw)
    assert_problem(status, response_headers, problem, 400)
    assert "kind" in {e["field"] for e in problem["errors"]}

    assert (await call(http, "DELETE", f"/v1/webhook-sources/{source_id}", GLOBEX))[2] == {}
    status, _, deleted = await call(http, "DELETE", f"/v1/webhook-sources/{source_id}", ACME)
    assert (status, deleted) == (200, {"deleted": True})
    status, response_headers, problem = await call(http, "POST", path, signed(secret, body),
                                                   data=body)
    assert_problem(status, response_headers, problem, 404)


async def test_inbound_webhook_maps_priority_and_optional_fields(http: Any) -> None:
    """A helpdesk's ticket: its priority becomes the task's, an optional metadata path that
    names nothing (or null) leaves the entry out instead of refusing the ticket, and a
    priority that is none is refused naming the path (an outside integrator's urgent ticket
    went in as normal, and one missing channel refused the whole ticket)."""
    status, _, registered = await call(http, "POST", "/v1/webhook-sources", ACME, json={
        "name": "helpdesk", "mapping": {
            "defaultKind": "support_ticket", "idempotencyKey": "ticket.number",
            "priorityLevel": "ticket.priority?",
            "metadata": {"channel": "ticket.via.channel?", "requester": "ticket.email?",
                         "number": "ticket.number"}}})
    assert status == 200, registered
    source_id, secret = registered["source"]["sourceId"], registered["secret"]
    path = f"/webhooks/in/{source_id}"

    async def post(ticket: dict[str, Any]) -> tuple[int, Any]:
        raw = json.dumps({"ticket": ticket}).encode()
        status, _, answer = await call(http, "POST", path, signed(secret, raw), data=raw)
        return status, answer

    number = f"TCK-{uuid.uuid4().hex[:8]}"
    status, accepted = await post({"number": number, "priority": "Urgent", "email": None,
                                   "subject": "production down"})
    assert status == 202, accepted
    _, _, got = await call(http, "GET", f"/v1/tasks/{accepted['taskId']}", ACME)
    envelope = got["task"]["envelope"]
    assert envelope["priorityLevel"] == "TASK_PRIORITY_URGENT", envelope
    assert envelope["metadata"] == {"number": number}, envelope   # no channel, no "null"
    status, accepted = await post({"number": f"{number}-2", "via": {"channel": "email"}})
    assert status == 202, accepted
    _, _, got = await call(http, "GET", f"/v1/tasks/{accepted['taskId']}", ACME)
    assert got["task"]["envelope"]["metadata"] == {"number": f"{number}-2", "channel": "email"}
    assert got["task"]["envelope"].get("priorityLevel") in (None, "TASK_PRIORITY_NORMAL")
    status, problem = await post({"number": f"{number}-3", "priority": "whenever"})
    assert status == 400 and problem["errors"][0]["field"] == "priority_level", problem
    status, problem = await post({"priority": "low"})    # a required path: refused
    assert status == 400 and problem["errors"][0]["field"] == "idempotency_key", problem
    # only metadata and priority paths may be optional
    status, _, refused = await call(http, "POST", "/v1/webhook-sources", ACME, json={
        "name": "x", "mapping": {"defaultKind": "invoice", "idempotencyKey": "id?"}})
    assert status == 422 and refused["errors"][0]["field"] == "mapping.idempotency_key"


async def test_registering_a_source_validates_the_mapping(http: Any) -> None:
    status, headers, body = await call(http, "POST", "/v1/webhook-sources", ACME, json={
        "name": "", "mapping": {"document": "a..b", "metadata": {"m": ""}}})
    assert_problem(status, headers, body, 422)
    assert {e["field"] for e in body["errors"]} == {
        "name", "mapping.kind", "mapping.document", "mapping.metadata[m]"}
    status, headers, body = await call(http, "POST", "/v1/webhook-sources", AUDITOR, json={
        "name": "x", "mapping": {"defaultKind": "invoice"}})
    assert_problem(status, headers, body, 403)


# -- fuzzing -----------------------------------------------------------------------------

_json = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)
_submission_like = st.fixed_dictionaries({}, optional={
    "tenantId": st.sampled_from(["acme", "globex", ""]) | st.integers(),
    "idempotencyKey": st.text(max_size=300), "kind": st.text(max_size=80) | st.none(),
    "metadata": st.dictionaries(st.text(max_size=70), st.text(max_size=10), max_size=70),
    "document": st.fixed_dictionaries({}, optional={
        "contentType": st.text(max_size=30), "body": st.text(max_size=40)}),
    "priorityLevel": st.sampled_from(["TASK_PRIORITY_URGENT", "NOPE", 2, -1])})
_ALLOWED = {200, 400, 401, 403, 404, 409, 422, 429}


def _post(url: str, data: bytes, headers: dict[str, str]) -> tuple[int, str, str]:
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def _get(url: str, headers: dict[str, str]) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                    timeout=30) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def _check(status: int, content_type: str, text: str) -> None:
    assert status in _ALLOWED, (status, text)
    if status >= 400:
        assert content_type.startswith("application/problem+json"), text
        assert json.loads(text)["status"] == status


def test_fuzz_rest_entry_points(settings: Settings) -> None:
    base = f"http://127.0.0.1:{settings.ingest_rest_port}"
    headers = {**ACME, "Content-Type": "application/json"}

    @hypothesis_settings(max_examples=60, deadline=None,
                         suppress_health_check=[HealthCheck.too_slow])
    @given(body=st.one_of(_json, st.fixed_dictionaries({"submission": _submission_like})),
           raw=st.binary(max_size=40), query=st.dictionaries(
               st.sampled_from(["tenant_id", "statuses", "page_size", "page_token",
                                "created_after", "x", "kinds", "metadata[po]", "metadata[]",
                                "metadata[", "metadata"]), st.text(max_size=12), max_size=4),
           task_id=st.text(max_size=40))
    def one(body: Any, raw: bytes, query: dict[str, str], task_id: str) -> None:
        _check(*_post(f"{base}/v1/tasks", json.dumps(body).encode(), headers))
        _check(*_post(f"{base}/v1/tasks", raw, headers))
        _check(*_get(f"{base}/v1/tasks?" + urllib.parse.urlencode(query), ACME))
        quoted = urllib.parse.quote(task_id, safe="") or "x"
        _check(*_get(f"{base}/v1/tasks/{quoted}", ACME))
        _check(*_post(f"{base}/v1/tasks/{quoted}/cancel", json.dumps(body).encode(), headers))
        _check(*_get(f"{base}/v1/tasks/{quoted}/timeline", ADMIN))
        _check(*_post(f"{base}/v1/tasks/{quoted}/redrive", json.dumps(body).encode(),
                      {**ADMIN, "Content-Type": "application/json"}))

    one()


async def test_fuzz_inbound_webhook(http: Any, settings: Settings) -> None:
    source_id, secret = await register_source(http)
    url = f"http://127.0.0.1:{settings.ingest_rest_port}/webhooks/in/{source_id}"

    @hypothesis_settings(max_examples=60, deadline=None,
                         suppress_health_check=[HealthCheck.too_slow])
    @given(body=_json, raw=st.binary(max_size=60))
    def one(body: Any, raw: bytes) -> None:
        for data in (json.dumps(body).encode(), raw):
            status, content_type, text = _post(url, data, signed(secret, data))
            assert status in {202, 400}, (status, text)
            if status == 400:
                assert content_type.startswith("application/problem+json")
                assert json.loads(text)["errors"]

    await asyncio.get_running_loop().run_in_executor(None, one)


async def test_a_body_over_the_gateways_limit_is_a_413_problem(http: Any,
                                                               settings: Settings) -> None:
    """docs/ingest.md: a body larger than a document of SWITCHYARD_DOCUMENT_MAX_BYTES in
    base64 (plus room for the rest) is refused before any call, as problem JSON."""
    request = submission()
    request["submission"]["document"]["body"] = "A" * (max_body_bytes(settings) + 4)
    status, headers, body = await call(http, "POST", "/v1/tasks", ACME, json=request)
    assert_problem(status, headers, body, 413)
    assert "grpc_status" not in body


async def test_a_large_image_over_rest_is_accepted_by_reference_and_retried(
        http: Any) -> None:
    """A 6.75 MB PNG, base64 in proto3 JSON (9 MB, over the old 8 MiB body and 4 MiB gRPC
    limits): accepted, stored by reference; a retry resubmits the blob's bytes. A bad file
    is a 422 problem naming document.body with its code."""
    picture = noise_png(1500, 1500)
    request = submission()
    request["submission"]["document"] = {"contentType": "image/png",
                                         "body": base64.b64encode(picture).decode()}
    status, _, created = await call(http, "POST", "/v1/tasks", ACME, json=request)
    assert status == 200, created
    status, _, got = await call(http, "GET", f"/v1/tasks/{created['taskId']}", ACME)
    document = got["task"]["envelope"]["document"]
    assert "body" not in document and document["pageCount"] == 1
    assert document["blob"]["sha256"] == hashlib.sha256(picture).hexdigest()
    status, _, _ = await call(http, "POST", f"/v1/tasks/{created['taskId']}/cancel", ACME,
                              json={})
    assert status == 200
    status, _, retried = await call(http, "POST", f"/v1/tasks/{created['taskId']}/retry", ACME,
                                    json={})
    assert status == 200 and retried["created"] is True, retried
    again = retried["task"]["envelope"]["document"]
    assert again["blob"]["sha256"] == document["blob"]["sha256"]
    assert again["blob"]["uri"] != document["blob"]["uri"]  # the new task's own blob

    request["submission"]["document"] = {"contentType": "application/pdf",
                                         "body": base64.b64encode(picture[:5000]).decode()}
    status, headers, body = await call(http, "POST", "/v1/tasks", ACME, json=request)
    assert_problem(status, headers, body, 422)
    [error] = body["errors"]
    assert error["field"] == "document.body"
    assert error["detail"].startswith("type_mismatch: declared application/pdf but the bytes "
                                      "are a PNG image")


async def test_a_tenant_watch_that_saw_nothing_still_says_where_to_resume(http: Any) -> None:
    """A long poll of a tenant's events answers a cursor even when no event came (where the
    watch began); passed back, the next poll gets what happened in between, nothing lost."""
    status, _, quiet = await call(http, "GET", "/v1/events?wait_s=0.5", GLOBEX)
    assert status == 200 and quiet["events"] == [] and quiet["cursor"], quiet
    _, _, created = await call(http, "POST", "/v1/tasks", GLOBEX,
                               json=submission(tenant="globex"))
    status, _, resumed = await call(http, "GET", f"/v1/events?wait_s=10&cursor="
                                    f"{quiet['cursor']}", GLOBEX)
    assert status == 200, resumed
    assert created["taskId"] in {e["event"]["taskId"] for e in resumed["events"]}
    assert resumed["cursor"] == resumed["events"][-1]["cursor"]
