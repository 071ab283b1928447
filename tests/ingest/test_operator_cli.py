"""The operators' commands against a real ingest process (API keys on), run as subprocesses
the way a person runs them: `switchyard dead-letters list|show|replay|resolve` (records ingest
could not accept are listed per tenant, shown with their original bytes, replayed once to the
topic they came from, or resolved with a reason, audited) and `switchyard webhooks list|redeliver` (a tenant's webhooks,
their deliveries, and delivering a failed one again)."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import pytest
from confluent_kafka import Producer
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from services.ingest import webhooks
from services.ingest.dead_letters import REPLAY_HEADER
from switchyard import Settings
from switchyard.messaging import INTAKE
from switchyard.stack import free_port
from switchyard.storage import connect, purge
from switchyard.v1 import (
    CancelTaskRequest,
    DeadLetterRecord,
    DeadLetterServiceStub,
    Document,
    GetDeadLetterRequest,
    IngestServiceStub,
    ListDeadLettersRequest,
    ListWebhookDeliveriesRequest,
    ListWebhooksRequest,
    RedeliverWebhooksRequest,
    RegisterWebhookRequest,
    ReplayDeadLetterRequest,
    ResolveDeadLetterRequest,
    Submission,
    SubmitTaskRequest,
)
from tests.cli.helpers import switchyard
from tests.polling import eventually

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ingest_process")]
KEYS = {"acme-admin": ("acme", "admin"), "acme-audit": ("acme", "auditor"),
        "acme-sub": ("acme", "submitter"), "globex-admin": ("globex", "admin"),
        "ops": ("*", "admin")}


@pytest.fixture(scope="module")
def settings(settings: Settings) -> Settings:
    """API keys on; a webhook delivery fails for good after one attempt, so a test sees
    failed deliveries at once; the KPI gauges refreshed every half second."""
    return settings.replace(api_keys=",".join(f"{k}:{t}:{r}" for k, (t, r) in KEYS.items()),
                            client_api_key="acme-admin", webhook_max_attempts=1,
                            webhook_backoff_s=0.2, kpi_refresh_s=0.5)


@pytest.fixture(scope="module")
def stub(settings: Settings) -> Iterator[DeadLetterServiceStub]:
    with grpc.insecure_channel(f"127.0.0.1:{settings.ingest_grpc_port}") as channel:
        yield DeadLetterServiceStub(channel)


def as_key(key: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {key}"),)


def produce(settings: Settings, records: list[tuple[bytes, bytes, list[tuple[str, bytes]]]]
            ) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers, "acks": "all"})
    for key, value, headers in records:
        producer.produce(INTAKE.full_name(settings), key=key, value=value, headers=headers)
    assert producer.flush(30) == 0


async def letter_with(stub: DeadLetterServiceStub, marker: bytes,
                      replay_of: str = "") -> DeadLetterRecord | None:
    """The operator's view of the letter whose bytes contain ``marker`` (and, with
    ``replay_of``, that replays that letter)."""
    page = stub.ListDeadLetters(ListDeadLettersRequest(page_size=500), metadata=as_key("ops"))
    for listed in page.dead_letters:
        full = stub.GetDeadLetter(GetDeadLetterRequest(
            dead_letter_id=listed.letter.dead_letter_id), metadata=as_key("ops")).dead_letter
        if marker in full.letter.original_value and (
                full.letter.original_headers.get(REPLAY_HEADER, "") == replay_of):
            return full
    return None


def run_json(settings: Settings, *args: str, key: str = "acme-admin") -> tuple[int, object, str]:
    done = switchyard(settings, "dead-letters", *args, "--api-key", key, "--json")
    return done.returncode, json.loads(done.stdout) if done.stdout.strip() else None, \
        done.stderr


async def test_list_show_and_replay_once_per_tenant(settings: Settings,
                                                    stub: DeadLetterServiceStub) -> None:
    marker = uuid.uuid4().hex.encode()
    acme_value = b"\x00 not json acme " + marker
    globex_value = json.dumps(["globex", marker.decode()]).encode()
    produce(settings, [
        (b"k-acme-" + marker, acme_value, [("x-tenant-id", b"acme"), ("trace", b"t-1")]),
        (b"k-globex-" + marker, globex_value, [("x-tenant-id", b"globex")]),
        (b"k-none-" + marker, b"\x00 nobody " + marker, []),
    ])
    acme = await eventually(lambda: letter_with(stub, b"acme " + marker),
                            "acme's record to be dead-lettered", 90, 0.5)
    globex = await eventually(lambda: letter_with(stub, b'["globex"'),
                              "globex's record to be dead-lettered", 90)
    nobody = await eventually(lambda: letter_with(stub, b"nobody " + marker),
                              "the tenantless record to be dead-lettered", 90)
    acme_id = acme.letter.dead_letter_id
    assert (acme.tenant_id, globex.tenant_id, nobody.tenant_id) == ("acme", "globex", "")

    # list: the admin's own tenant only, with filters and paging
    rc, rows, err = run_json(settings, "list", "--limit", "0")
    assert rc == 0, err
    assert acme_id in {r["dead_letter_id"] for r in rows}
    assert {r["tenant_id"] for r in rows} == {"acme"}
    rc, rows, err = run_json(settings, "list", "--reason", acme.letter.reason_code,
                             "--topic", INTAKE.full_name(settings), "--since", "1h")
    assert rc == 0 and acme_id in {r["dead_letter_id"] for r in rows}, err
    for narrowing in (("--reason", "no_such_reason"), ("--topic", "no-such-topic"),
                      ("--since", "2999-01-01T00:00:00Z")):
        rc, rows, err = run_json(settings, "list", *narrowing)
        assert (rc, rows) == (0, []), (narrowing, err)
    rc, rows, err = run_json(settings, "list", "--limit", "0", key="ops")
    ids = {r["dead_letter_id"] for r in rows}
    assert rc == 0 and {acme_id, globex.letter.dead_letter_id,
                        nobody.letter.dead_letter_id} <= ids, err
    rc, rows, err = run_json(settings, "list", "--limit", "2", key="ops")
    assert rc == 0 and len(rows) == 2, err
    # the table prints a reason as it is: "[withheld: N characters]" is not Rich markup (it
    # was dropped, reading as if the producer had sent an empty value)
    withheld = json.dumps({"tenant_id": "acme", "idempotency_key": marker.decode(),
                           "priority_level": f"whenever-{marker.decode()}",
                           "document": {"body": "Invoice 1: amount due 1.00 EUR"}}).encode()
    produce(settings, [(b"k-level-" + marker, withheld, [("x-tenant-id", b"acme")])])
    level = await eventually(lambda: letter_with(stub, b"whenever-" + marker),
                             "the record with a bad priority level dead-lettered", 90, 0.5)
    assert "got [withheld: " in level.letter.reason, level.letter.reason
    table = switchyard(settings, "dead-letters", "list", "--limit", "0", "--api-key",
                       "acme-admin", "--reason", level.letter.reason_code)
    assert table.returncode == 0, table.stderr
    assert "got [withheld: " in table.stdout, table.stdout
    # a producer's admin finds the letter of the record it keyed K, and only that one
    rc, rows, err = run_json(settings, "list", "--key", f"k-acme-{marker.decode()}")
    assert rc == 0 and [r["dead_letter_id"] for r in rows] == [acme_id], (rows, err)
    rc, rows, err = run_json(settings, "list", "--key", f"k-globex-{marker.decode()}")
    assert (rc, rows) == (0, []), err    # globex's record: not acme's letter
    rc, rows, err = run_json(settings, "list", "--key", f"k-globex-{marker.decode()}",
                             key="ops")
    assert rc == 0 and [r["dead_letter_id"] for r in rows] == [
        globex.letter.dead_letter_id], err
    rc, _, err = run_json(settings, "list", "--tenant", "globex")
    assert rc == 1 and "PERMISSION_DENIED" in err
    assert run_json(settings, "list", key="acme-sub")[0] == 1   # submitters see no letters
    assert run_json(settings, "list", key="acme-audit")[0] == 0

    # show: reason, headers and the original bytes (hex: they are not text)
    rc, shown, err = run_json(settings, "show", acme_id)
    assert rc == 0, err
    assert shown["original_value_hex"] == acme_value.hex()
    assert shown["original_value_text"] is None
    assert shown["original_headers"]["x-tenant-id"] == "acme"
    assert shown["original_headers"]["trace"] == "t-1"
    assert shown["reason_code"] == acme.letter.reason_code and shown["reason"]
    text = switchyard(settings, "dead-letters", "show", acme_id, "--api-key", "acme-admin")
    assert text.returncode == 0, text.stderr
    assert acme_value.hex() in text.stdout and "x-tenant-id: acme" in text.stdout
    assert acme.letter.reason in text.stdout
    rc, shown, _ = run_json(settings, "show", globex.letter.dead_letter_id, key="ops")
    assert rc == 0 and shown["original_value_text"] == globex_value.decode()
    # another tenant's letter is absent, a bad id is named
    rc, _, err = run_json(settings, "show", acme_id, key="globex-admin")
    assert rc == 1 and "NOT_FOUND" in err
    rc, _, err = run_json(settings, "show", "not-an-id")
    assert rc == 1 and "INVALID_ARGUMENT" in err and "dead_letter_id" in err

    # replay: auditors may not; admins replay once, again only with --force
    rc, results, err = run_json(settings, "replay", acme_id, key="acme-audit")
    assert rc == 1 and "PERMISSION_DENIED" in results[0]["error"], err
    rc, results, err = run_json(settings, "replay", acme_id)
    assert rc == 0, err
    assert results[0]["replay_count"] == 1 and results[0]["replayed_by"]
    assert results[0]["replayed_at"]
    rc, results, err = run_json(settings, "replay", acme_id)
    assert rc == 1 and "FAILED_PRECONDITION" in results[0]["error"]
    rc, results, err = run_json(settings, "replay", acme_id, "--force")
    assert rc == 0 and results[0]["replay_count"] == 2, err
    rc, results, _ = run_json(settings, "replay", globex.letter.dead_letter_id)
    assert rc == 1 and "NOT_FOUND" in results[0]["error"]

    # the original record went back to its topic: ingest read it again and, as the bytes
    # are still bad, dead-lettered it again, naming the letter it replays
    again = await eventually(lambda: letter_with(stub, b"acme " + marker, replay_of=acme_id),
                             "the replayed record to come back", 90, 0.5)
    assert again.letter.original_value == acme_value
    assert again.letter.original_key == b"k-acme-" + marker
    assert again.letter.source_topic == INTAKE.full_name(settings)
    assert again.tenant_id == "acme"

    # audited in acme's chain, with who replayed and whether it was forced
    conn = await connect(settings)
    try:
        entries = await conn.fetch(
            "SELECT actor, detail FROM audit_log WHERE tenant_id = 'acme' AND action = "
            "'dead_letter.replayed' AND detail->>'dead_letter_id' = $1 ORDER BY entry_id",
            acme_id)
    finally:
        await conn.close()
    assert [json.loads(e["detail"])["forced"] for e in entries] == [False, True]
    assert len({e["actor"] for e in entries}) == 1

    # past retention the record's key, value and headers are purged: nothing to replay
    conn = await connect(settings)
    try:
        await conn.execute("UPDATE dead_letters SET failed_at = now() - interval '400 days' "
                           "WHERE dead_letter_id = $1", uuid.UUID(acme_id))
        await purge(conn, 30, {})
        stored = await conn.fetchrow(
            "SELECT original_key, original_value, original_headers, purged_at "
            "FROM dead_letters WHERE dead_letter_id = $1", uuid.UUID(acme_id))
    finally:
        await conn.close()
    assert [stored[c] for c in ("original_key", "original_value", "original_headers")] == \
        [None, None, None] and stored["purged_at"] is not None
    text = switchyard(settings, "dead-letters", "show", acme_id, "--api-key", "acme-admin")
    assert text.returncode == 0 and "purged by retention" in text.stdout, text.stderr
    rc, results, _ = run_json(settings, "replay", acme_id, "--force")
    assert rc == 1 and "purged" in results[0]["error"]
    # resolved after retention purged it: closed, but its note is not kept (the purge that
    # clears notes has passed for good); the audit entry keeps the reason's hash
    rc, results, err = run_json(settings, "resolve", acme_id, "--reason",
                                "resent by hand from the ERP")
    assert rc == 0 and results[0]["state"] == "resolved", err
    rc, shown, _ = run_json(settings, "show", acme_id)
    assert shown["state"] == "resolved" and shown["resolution"] is None and shown["resolved_by"]


async def test_a_letter_that_needs_no_replay_is_resolved_and_leaves_the_open_ones(
        settings: Settings, stub: DeadLetterServiceStub) -> None:
    marker = uuid.uuid4().hex.encode()
    produce(settings, [(b"k-" + marker, b"\x00 resolve me " + marker,
                        [("x-tenant-id", b"acme")])])
    letter = await eventually(lambda: letter_with(stub, b"resolve me " + marker),
                              "the record to be dead-lettered", 90, 0.5)
    letter_id = letter.letter.dead_letter_id

    def listed(state: str) -> set[str]:
        rc, rows, err = run_json(settings, "list", "--state", state, "--limit", "0")
        assert rc == 0, err
        return {r["dead_letter_id"] for r in rows if r["state"] == state or state == "all"}

    assert letter_id in listed("open") and letter_id not in listed("resolved")

    def queue_gauges() -> tuple[float, float] | None:
        """acme's open letters and the oldest one's age, as the KPI exporter exports them."""
        with urllib.request.urlopen(f"http://127.0.0.1:{settings.ingest_metrics_port}"
                                    "/metrics", timeout=5) as response:
            metrics = response.read().decode()
        found = [re.search(rf'^switchyard_kpi_{name}{{tenant="acme"}} (\S+)$', metrics, re.M)
                 for name in ("dead_letters_open", "dead_letter_oldest_open_seconds")]
        return None if None in found else (float(found[0][1]), float(found[1][1]))

    async def gauges_show(count: int) -> tuple[float, float] | None:
        gauges = await asyncio.to_thread(queue_gauges)
        return gauges if gauges and gauges[0] == count else None

    before = len(listed("open"))
    _, age = await eventually(lambda: gauges_show(before),
                              "the open letters' gauge to count them", 30, 0.5)
    assert age > 0
    # auditors may not; a reason is required (a usage error before any call) and kept
    # with the e-mail address in it masked
    rc, results, _ = run_json(settings, "resolve", letter_id, "--reason", "x",
                              key="acme-audit")
    assert rc == 1 and "PERMISSION_DENIED" in results[0]["error"]
    assert switchyard(settings, "dead-letters", "resolve", letter_id).returncode == 2
    rc, results, _ = run_json(settings, "resolve", letter_id, "--reason", "   ")
    assert rc == 1 and "INVALID_ARGUMENT" in results[0]["error"] and \
        "reason" in results[0]["error"]
    reason = f"sent again corrected; asked ops-{marker.decode()}@acme.example"
    rc, results, err = run_json(settings, "resolve", letter_id, "--reason", reason)
    assert rc == 0, err
    done = results[0]
    assert done["state"] == "resolved" and done["resolved_by"] and done["resolved_at"]
    assert done["resolution"] == "sent again corrected; asked [EMAIL REDACTED]"
    assert letter_id not in listed("open") and letter_id in listed("resolved")
    await eventually(lambda: gauges_show(before - 1), "the gauge to count one fewer", 30, 0.5)
    text = switchyard(settings, "dead-letters", "list", "--state", "resolved", "--since",
                      "1m", "--topic", INTAKE.full_name(settings), "--api-key", "acme-admin")
    assert text.returncode == 0 and "1 dead letter(s)" in text.stdout, text.stderr
    assert "resolved" in text.stdout and done["resolved_by"] in text.stdout
    # once; a resolved letter is replayed only with --force, and is still shown whole
    rc, results, _ = run_json(settings, "resolve", letter_id, "--reason", "again")
    assert rc == 1 and "FAILED_PRECONDITION" in results[0]["error"]
    rc, results, _ = run_json(settings, "replay", letter_id)
    assert rc == 1 and "resolved" in results[0]["error"]
    rc, shown, _ = run_json(settings, "show", letter_id)
    assert rc == 0 and shown["resolution"] == done["resolution"] and \
        bytes.fromhex(shown["original_value_hex"]).endswith(marker)
    rc, results, err = run_json(settings, "replay", letter_id, "--force")
    assert rc == 0 and results[0]["state"] == "resolved" and \
        results[0]["replay_count"] == 1, err
    # another tenant's admin cannot see it to resolve it
    rc, results, _ = run_json(settings, "resolve", letter_id, "--reason", "x",
                              key="globex-admin")
    assert rc == 1 and "NOT_FOUND" in results[0]["error"]

    # audited in acme's chain: who, and the reason as a hash, never its text
    conn = await connect(settings)
    try:
        entries = await conn.fetch(
            "SELECT actor, detail::text AS detail FROM audit_log WHERE tenant_id = 'acme' "
            "AND action = 'dead_letter.resolved' AND detail->>'dead_letter_id' = $1",
            letter_id)
    finally:
        await conn.close()
    assert len(entries) == 1 and entries[0]["actor"] == done["resolved_by"]
    assert "reason_sha256" in entries[0]["detail"]
    assert "corrected" not in entries[0]["detail"] and marker.decode() not in \
        entries[0]["detail"]

    # past retention the note goes with the bytes (free text, as a reviewer's reason); who
    # resolved it and when stay
    conn = await connect(settings)
    try:
        await conn.execute("UPDATE dead_letters SET failed_at = now() - interval '400 days' "
                           "WHERE dead_letter_id = $1", uuid.UUID(letter_id))
        await purge(conn, 30, {})
    finally:
        await conn.close()
    rc, shown, _ = run_json(settings, "show", letter_id)
    assert rc == 0 and shown["purged"] and shown["state"] == "resolved"
    assert shown["resolution"] is None and shown["resolved_by"] == done["resolved_by"]


def test_fuzzed_operator_requests_get_a_status_never_a_crash(
        settings: Settings, stub: DeadLetterServiceStub) -> None:
    """Arbitrary ids, page tokens, sizes, states and filters on the dead-letter and webhook
    RPCs: each call answers OK or a specific client error (INVALID_ARGUMENT names its
    field), never INTERNAL or UNKNOWN."""
    channel = grpc.insecure_channel(f"127.0.0.1:{settings.ingest_grpc_port}")
    ingest = IngestServiceStub(channel)
    texts = st.one_of(st.text(max_size=200), st.sampled_from([
        "'; DROP TABLE dead_letters; --", "\x00", "../../etc/passwd", str(uuid.uuid4()),
        "eyJ4IjogMX0=", "WyIyMDI2LTAxLTAxIiwgIngiXQ==", "%s%n", "🦄" * 40]))
    allowed = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT,
               grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED,
               grpc.StatusCode.FAILED_PRECONDITION}

    def code_of(call: object) -> tuple[grpc.StatusCode, str]:
        try:
            call()  # type: ignore[operator]
        except grpc.RpcError as exc:
            return exc.code(), exc.details() or ""
        return grpc.StatusCode.OK, ""

    @hypothesis_settings(max_examples=60, deadline=None, database=None,
                         suppress_health_check=[HealthCheck.too_slow,
                                                HealthCheck.function_scoped_fixture])
    @given(letter_id=texts, token=texts, tenant=texts, topic=texts,
           size=st.integers(-2**31, 2**31 - 1), force=st.booleans(),
           state=st.one_of(st.integers(0, 4), st.integers(-2**31, 2**31 - 1)),
           key=st.sampled_from(["acme-admin", "ops", "acme-audit", "acme-sub"]),
           ids=st.lists(texts, max_size=3), seconds=st.one_of(
               st.none(), st.integers(-2**40, 2**40)))
    def one(letter_id: str, token: str, tenant: str, topic: str, size: int, force: bool,
            state: int, key: str, ids: list[str], seconds: int | None) -> None:
        since = None if seconds is None else Timestamp(seconds=seconds)
        for name, call in (
                ("list", lambda: stub.ListDeadLetters(ListDeadLettersRequest(
                    tenant_id=tenant, source_topic=topic, reason_code=topic, state=state,
                    page_size=size, page_token=token), metadata=as_key(key))),
                ("get", lambda: stub.GetDeadLetter(GetDeadLetterRequest(
                    dead_letter_id=letter_id), metadata=as_key(key))),
                ("replay", lambda: stub.ReplayDeadLetter(ReplayDeadLetterRequest(
                    dead_letter_id=letter_id, force=force), metadata=as_key(key))),
                ("resolve", lambda: stub.ResolveDeadLetter(ResolveDeadLetterRequest(
                    dead_letter_id=letter_id, reason=topic), metadata=as_key(key))),
                ("webhooks", lambda: ingest.ListWebhooks(ListWebhooksRequest(
                    tenant_id=tenant), metadata=as_key(key))),
                ("deliveries", lambda: ingest.ListWebhookDeliveries(
                    ListWebhookDeliveriesRequest(
                        tenant_id=tenant, webhook_id=letter_id, state=topic, since=since,
                        page_size=size, page_token=token), metadata=as_key(key))),
                ("redeliver", lambda: ingest.RedeliverWebhooks(RedeliverWebhooksRequest(
                    tenant_id=tenant, delivery_ids=ids, failed_since=since),
                    metadata=as_key(key)))):
            code, details = code_of(call)
            assert code in allowed, (name, code, details)
            if code == grpc.StatusCode.INVALID_ARGUMENT:
                assert any(field in details for field in (
                    "dead_letter_id", "page_size", "page_token", "tenant_id", "source_topic",
                    "reason_code", "webhook_id", "state", "since", "delivery_ids",
                    "reason")), details

    try:
        one()
    finally:
        channel.close()


# -- webhooks ------------------------------------------------------------------------------

class Receiver(BaseHTTPRequestHandler):
    """A loopback endpoint in its own thread (the commands run as blocking subprocesses):
    answers 503 while ``failing``, else 204, and records the delivery ids it accepted."""

    failing = True
    accepted: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if Receiver.failing:
            self.send_response(503)
        else:
            Receiver.accepted.append(self.headers[webhooks.DELIVERY_HEADER])
            self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()


def webhooks_json(settings: Settings, *args: str, key: str = "acme-sub"
                  ) -> tuple[int, object, str]:
    done = switchyard(settings, "webhooks", *args, "--api-key", key, "--json")
    return done.returncode, json.loads(done.stdout) if done.stdout.strip() else None, \
        done.stderr


async def test_webhook_deliveries_are_listed_and_failed_ones_redelivered(
        settings: Settings, receiver: str) -> None:
    Receiver.failing, Receiver.accepted = True, []
    with grpc.insecure_channel(f"127.0.0.1:{settings.ingest_grpc_port}") as channel:
        ingest = IngestServiceStub(channel)
        hook = ingest.RegisterWebhook(RegisterWebhookRequest(url=receiver),
                                      metadata=as_key("acme-sub"))
        task_id = ingest.SubmitTask(SubmitTaskRequest(submission=Submission(
            tenant_id="acme", idempotency_key=uuid.uuid4().hex,
            document=Document(content_type="text/plain", body=b"Ticket: cannot log in"))),
            metadata=as_key("acme-sub")).task_id

        async def listed(state: str) -> list[dict]:
            rc, out, err = webhooks_json(settings, "list", "--webhook", hook.webhook_id,
                                         "--limit", "0")
            assert rc == 0, err
            return [d for d in out["deliveries"] if d["task_id"] == task_id
                    and d["state"] == state]

        failed = await eventually(lambda: listed("failed"), "the delivery to fail", 90, 0.5)
        assert [(d["attempts"], d["last_error"], d["webhook_id"]) for d in failed] == [
            (1, "HTTP 503", hook.webhook_id)]
        delivery_id = failed[0]["delivery_id"]
        rc, out, _ = webhooks_json(settings, "list")
        assert [(h["url"], h["failed"]) for h in out["webhooks"]
                if h["webhook_id"] == hook.webhook_id] == [(receiver, 1)]
        text = switchyard(settings, "webhooks", "list", "--api-key", "acme-sub")
        assert text.returncode == 0 and "HTTP 503" in text.stdout, text.stderr

        # another tenant's key: the tenant is refused, the delivery absent
        rc, _, err = webhooks_json(settings, "list", "--tenant", "acme", key="globex-admin")
        assert rc == 1 and "PERMISSION_DENIED" in err
        rc, _, err = webhooks_json(settings, "redeliver", delivery_id, key="globex-admin")
        assert rc == 1 and "NOT_FOUND" in err
        rc, _, err = webhooks_json(settings, "redeliver", "not-an-id")
        assert rc == 1 and "delivery_ids[0]" in err

        # the receiver is fixed: redeliver the one delivery, by id
        Receiver.failing = False
        rc, out, err = webhooks_json(settings, "redeliver", delivery_id)
        assert rc == 0, err
        assert [d["delivery_id"] for d in out["redelivered"]] == [delivery_id]
        await eventually(lambda: listed("delivered"), "the redelivery", 90, 0.5)
        assert Receiver.accepted == [delivery_id]   # the same delivery id, POSTed again
        rc, out, _ = webhooks_json(settings, "redeliver", "--failed-since", "1h")
        assert (rc, out) == (0, {"redelivered": [], "skipped": []})

        # every failed one since T: the cancellation's delivery fails, then is redelivered
        Receiver.failing = True
        ingest.CancelTask(CancelTaskRequest(task_id=task_id), metadata=as_key("acme-sub"))

        async def cancelled_failed() -> list[dict]:
            return [d for d in await listed("failed") if d["sequence"] == 2]
        second = (await eventually(cancelled_failed, "the second delivery to fail", 90,
                                   0.5))[0]["delivery_id"]
        Receiver.failing = False
        rc, out, err = webhooks_json(settings, "redeliver", "--failed-since", "1h")
        assert rc == 0 and [d["delivery_id"] for d in out["redelivered"]] == [second], err
        async def second_delivered() -> bool:
            return second in {d["delivery_id"] for d in await listed("delivered")}
        await eventually(second_delivered, "the second redelivery", 90, 0.5)
        assert second in Receiver.accepted

    conn = await connect(settings)
    try:
        entries = await conn.fetch(
            "SELECT detail FROM audit_log WHERE tenant_id = 'acme' "
            "AND action = 'webhooks.redelivered' ORDER BY entry_id")
    finally:
        await conn.close()
    assert [json.loads(e["detail"])["delivery_ids"] for e in entries] == [[delivery_id],
                                                                           [second]]
