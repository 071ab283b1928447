"""The intake topic: records from an independent Kafka client (confluent-kafka) become tasks;
anything unacceptable lands on the dead-letter topic with its reason, bytes and headers, and
never stops the good records around it."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Iterator
from email.message import EmailMessage

import asyncpg
import grpc
import pytest
from confluent_kafka import Producer

from switchyard import Settings
from switchyard.access import IntakeSigner
from switchyard.messaging import DEAD_LETTER, INTAKE, TASK_STATUS, encode
from switchyard.rpc import create_channel
from switchyard.v1 import (
    DeadLetter,
    DeadLetterRecord,
    DeadLetterServiceStub,
    Document,
    GetDeadLetterRequest,
    GetTaskRequest,
    IngestServiceStub,
    ListTasksRequest,
    ReplayDeadLetterRequest,
    StatusEvent,
    Submission,
    TaskPriority,
    TaskSource,
    TaskStatus,
    WatchTaskRequest,
)
from tests.document_samples import png_bomb, text_pdf, tiff
from tests.ingest.helpers import read_topic
from tests.polling import eventually

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ingest_process")]
KEYS = {"acme": b"acme-intake-key", "globex": b"globex-intake-key"}
LIMIT = 8 * 1024


@pytest.fixture(scope="module")
def settings(settings: Settings) -> Settings:
    """Signed intake for two known tenants; a small document limit."""
    return settings.replace(
        intake_signing_keys=",".join(f"{t}:{k.decode()}" for t, k in KEYS.items()),
        max_payload_bytes=LIMIT)


@pytest.fixture(scope="module")
def producer(settings: Settings) -> Iterator[Producer]:
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers,
                         "linger.ms": 5, "acks": "all"})
    yield producer
    producer.flush(30)


def signed(tenant: str, value: bytes, content_type: str = "application/json",
           secret: bytes | None = None) -> list[tuple[str, bytes]]:
    key = secret if secret is not None else KEYS.get(tenant, b"no-key")
    return [("content-type", content_type.encode()), ("x-tenant-id", tenant.encode()),
            ("x-switchyard-signature", IntakeSigner.sign(key, value).encode())]


def good_json(key: str, tenant: str = "acme", **extra: object) -> bytes:
    doc = {"tenant_id": tenant, "idempotency_key": key,
           "document": {"body": f"Invoice {key}: amount due 120.00 EUR"}}
    doc.update(extra)
    return json.dumps(doc).encode()


async def test_independent_producer_records_become_tasks(
        producer: Producer, ingest: IngestServiceStub, settings: Settings) -> None:
    as_json = json.dumps({
        "idempotency_key": "  po-json-1 ", "kind": " Invoice ",
        "metadata": {" po ": " 17 "}, "priority": 1,
        "document": {"body": {"invoice": "INV-9", "amount_due": 120}, "filename": "inv.json"},
    }).encode()
    # protobuf's own JSON names, as json_format.MessageToJson writes them, are taken too
    camel = json.dumps({"tenantId": "globex", "idempotencyKey": "po-camel-1",
                        "priorityLevel": "TASK_PRIORITY_HIGH",
                        "document": {"contentType": "text/plain", "kindHint": "invoice",
                                     "body": "Invoice 12: amount due 80.00 EUR"}}).encode()
    producer.produce(INTAKE.full_name(settings), key=b"po-camel-1", value=camel,
                     headers=signed("globex", camel))
    protobuf = Submission(tenant_id="globex", idempotency_key="po-pb-1", document=Document(
        content_type="text/plain", body=b"Support ticket: the printer is not working"))
    pb_value, pb_headers = encode(protobuf)
    producer.produce(INTAKE.full_name(settings), key=b"po-json-1", value=as_json,
                     headers=signed("globex", as_json))
    producer.produce(INTAKE.full_name(settings), key=b"po-pb-1", value=pb_value,
                     headers=signed("globex", pb_value, pb_headers["content-type"]))
    assert producer.flush(30) == 0

    async def all_three() -> list:
        page = await ingest.ListTasks(ListTasksRequest(tenant_id="globex"))
        return list(page.tasks) if len(page.tasks) >= 3 else []

    tasks = {t.envelope.idempotency_key: t for t in await eventually(all_three, "3 tasks", 90)}
    assert set(tasks) == {"po-json-1", "po-pb-1", "po-camel-1"}
    camel_task = tasks["po-camel-1"].envelope
    assert (camel_task.priority_level, camel_task.document.kind_hint) == (
        TaskPriority.TASK_PRIORITY_HIGH, "invoice")
    envelope = (await ingest.GetTask(GetTaskRequest(
        task_id=tasks["po-json-1"].envelope.task_id))).task.envelope
    assert (envelope.tenant_id, envelope.kind, envelope.priority) == ("globex", "invoice", 1)
    assert envelope.metadata == {"po": "17"}
    assert envelope.source == TaskSource.TASK_SOURCE_KAFKA_INTAKE
    assert envelope.document.content_type == "application/json"
    assert json.loads(envelope.document.body) == {"invoice": "INV-9", "amount_due": 120}
    assert envelope.received_at.seconds > 0
    ticket = tasks["po-pb-1"].envelope
    assert (ticket.kind, ticket.document.kind_hint) == ("", "")  # the router decides
    stream = ingest.WatchTask(WatchTaskRequest(task_id=ticket.task_id))
    first = await asyncio.wait_for(stream.read(), 60)
    stream.cancel()
    assert (first.event.status, first.event.sequence, first.event.service) == (
        TaskStatus.TASK_STATUS_QUEUED, 1, "ingest")
    assert first.event.idempotency_key == "po-pb-1"
    statuses = await read_topic(settings, TASK_STATUS, lambda rs: any(
        StatusEvent.FromString(r.value).task_id == ticket.task_id for r in rs))
    # the record got no task id back: its key is how the producer finds its task's events
    assert {StatusEvent.FromString(r.value).idempotency_key for r in statuses
            if StatusEvent.FromString(r.value).task_id == ticket.task_id} == {"po-pb-1"}


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
async def test_records_compressed_with_any_kafka_codec_become_tasks(
        codec: str, ingest: IngestServiceStub, settings: Settings) -> None:
    """Producers compress batches with whatever their shop uses; a codec the intake consumer
    could not decode stopped the whole intake (an outside producer's snappy and zstd
    batches did), so every codec Kafka defines is read, then a plain record after it."""
    # an idempotent producer, as many shops run them (the docs say it may be used)
    compressed = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers,
                           "compression.type": codec, "linger.ms": 20, "acks": "all",
                           "enable.idempotence": True})
    keys = [f"{codec}-{i}" for i in range(3)]
    batch = {"batch": f"codec-{codec}"}
    for key in keys:
        value = good_json(key, metadata=batch)
        compressed.produce(INTAKE.full_name(settings), key=key.encode(), value=value,
                           headers=signed("acme", value))
    assert compressed.flush(30) == 0
    plain = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers, "acks": "all"})
    after = f"after-{codec}"
    value = good_json(after, metadata=batch)
    plain.produce(INTAKE.full_name(settings), key=after.encode(), value=value,
                  headers=signed("acme", value))
    assert plain.flush(30) == 0

    async def all_there() -> bool:
        page = await ingest.ListTasks(ListTasksRequest(tenant_id="acme", metadata=batch))
        return {t.envelope.idempotency_key for t in page.tasks} == {*keys, after}

    await eventually(all_there, f"the {codec} records and the one after them as tasks", 60)


def malformed(index: int) -> tuple[bytes, list[tuple[str, bytes]], str]:
    """Record ``index`` of the bad batch: value, headers and the reason code it must get."""
    key = f"bad-{index}"
    kind = index % 21
    if kind == 0:
        return b"\x00 not json " + key.encode(), signed("acme", b"x"), "malformed_json"
    if kind == 1:
        value = b'{"tenant_id": "acme", ' + key.encode()
        return value, signed("acme", value), "malformed_json"
    if kind == 2:
        value = json.dumps([key]).encode()
        return value, signed("acme", value), "schema_violation"
    if kind == 3:
        value = good_json(key, colour="blue")
        return value, signed("acme", value), "schema_violation"
    if kind == 4:
        value = json.dumps({"tenant_id": "acme", "idempotency_key": key}).encode()
        return value, signed("acme", value), "schema_violation"
    if kind == 5:
        value = good_json(key, kind="purchase order")
        return value, signed("acme", value), "unknown_kind"
    if kind == 6:
        value = good_json(key, priority="urgent")
        return value, signed("acme", value), "schema_violation"
    if kind == 7:
        value = good_json(key, tenant="initech")
        return value, signed("initech", value), "unknown_tenant"
    if kind == 8:
        value = good_json(key)
        return value, signed("acme", value, secret=b"guessed"), "bad_signature"
    if kind == 9:
        value = good_json(key, document={"body": "x" * (LIMIT + 1)})
        return value, signed("acme", value), "too_large"
    if kind == 10:
        value = b"\xff\xff\xff" + key.encode()
        return value, signed("acme", value, "application/x-protobuf; "
                                           "messageType=switchyard.v1.Submission"), \
            "malformed_protobuf"
    if kind == 11:
        value = b"<task>" + key.encode() + b"</task>"
        return value, signed("acme", value, "application/xml"), "unsupported_content_type"
    if kind == 12:
        value = good_json(key, document={"content_type": "application/json",
                                         "body": '{"total": '})
        return value, signed("acme", value), "malformed_document_json"
    if kind == 13:
        value = good_json(key, tenant="globex")
        return value, signed("acme", value), "schema_violation"  # header and payload disagree
    if kind == 14:
        value = good_json(key, document={"body": "a scanned page", "content_type": "image/png"})
        return value, signed("acme", value), "schema_violation"
    if kind == 16:  # one field under its proto name and its JSON name: which is meant?
        value = good_json(key, idempotencyKey=key + "-other")
        return value, signed("acme", value), "schema_violation"
    if kind == 15:  # a name twice: json would keep the second document in silence
        value = (b'{"tenant_id": "acme", "idempotency_key": "' + key.encode() +
                 b'", "document": {"body": "first"}, "document": {"body": "second"}}')
        return value, signed("acme", value), "malformed_json"
    if kind == 17:  # a NUL no text column stores: refused by its field, not a failed write
        value = good_json(key + "\u0000nul", metadata={"po\u0000": "1"})
        return value, signed("acme", value), "schema_violation"
    if kind == 18:  # a NUL in the kind is malformed text, as elsewhere, not an unknown kind
        value = good_json(key, kind="invoice\u0000")
        return value, signed("acme", value), "schema_violation"
    if kind == 19:  # two forms named: which one is meant? (the last one won in silence)
        value = good_json(key)
        return value, [*signed("acme", value), ("content-type", b"application/x-protobuf; "
                                                b"messageType=switchyard.v1.Submission")], \
            "unsupported_content_type"
    value = b'{"tenant_id": "acme", "priority": ' + b"9" * 5000 + b"}"
    return value, signed("acme", value), "malformed_json"


async def test_1000_malformed_records_are_dead_lettered_good_ones_processed(
        producer: Producer, settings: Settings, db: asyncpg.Connection) -> None:
    run = uuid.uuid4().hex[:6]
    expected: dict[bytes, tuple[str, bytes]] = {}
    good_keys = []
    topic = INTAKE.full_name(settings)
    for index in range(1000):
        value, headers, code = malformed(index)
        key = f"{run}-bad-{index}".encode()
        expected[key] = (code, value)
        producer.produce(topic, key=key, value=value, headers=headers)
        if index % 5 == 0:  # 200 good records interleaved with the bad ones
            good_key = f"{run}-good-{index}"
            good = good_json(good_key)
            producer.produce(topic, key=good_key.encode(), value=good,
                             headers=signed("acme", good))
            good_keys.append(good_key)
        producer.poll(0)
    # the same key again with another payload: refused, the first one stands
    conflict = good_json(good_keys[0], document={"body": "another document"})
    conflict_key = good_keys[0].encode()
    producer.produce(topic, key=conflict_key, value=conflict, headers=signed("acme", conflict))
    assert producer.flush(60) == 0

    def letters_of(records: list) -> dict[bytes, DeadLetter]:
        out = {}
        for record in records:
            letter = DeadLetter.FromString(record.value)
            if letter.service == "ingest" and letter.original_key.startswith(run.encode()):
                out[letter.original_key + letter.reason_code.encode()] = letter
        return out

    records = await read_topic(settings, DEAD_LETTER, lambda rs: len(letters_of(rs)) >= 1001,
                               timeout_s=240)
    letters = {letter.original_key: letter for letter in letters_of(records).values()
               if letter.reason_code != "idempotency_conflict"}
    assert set(letters) == set(expected)
    for key, (code, value) in expected.items():
        letter = letters[key]
        assert (letter.reason_code, letter.original_value) == (code, value), key
        assert letter.reason and letter.source_topic == topic
        assert letter.original_headers["x-tenant-id"]
        if b"nul" in value:   # its tenant's admins see it, and why, without a traceback
            assert letter.tenant_id == "acme" and "NUL" in letter.reason, letter.reason
    conflicts = [letter for letter in letters_of(records).values()
                 if letter.reason_code == "idempotency_conflict"]
    assert [c.original_key for c in conflicts] == [conflict_key]
    assert "different payload" in conflicts[0].reason

    async def all_good() -> list:
        rows = await db.fetch(
            "SELECT idempotency_key FROM tasks WHERE tenant_id = 'acme' "
            "AND idempotency_key LIKE $1 AND published_at IS NOT NULL", f"{run}-good-%")
        return rows if len(rows) >= len(good_keys) else []

    rows = await eventually(all_good, "200 published tasks", 120)
    assert sorted(r["idempotency_key"] for r in rows) == sorted(good_keys)
    mirrored = await db.fetchval(
        "SELECT count(*) FROM dead_letters WHERE service = 'ingest' AND reason_code <> ''")
    assert mirrored >= 1001


async def test_files_on_the_intake_base64_in_json_or_protobuf(
        producer: Producer, settings: Settings, db: asyncpg.Connection,
        ingest: IngestServiceStub) -> None:
    """A PDF and an e-mail carrying one base64-encoded in JSON (as proto3 JSON carries bytes)
    and a TIFF as protobuf become tasks with their page counts; bad files are dead-lettered with their document
    code and the original bytes."""
    run = uuid.uuid4().hex[:6]
    topic = INTAKE.full_name(settings)

    def as_json(key: str, content_type: str, body: bytes) -> bytes:
        return json.dumps({"tenant_id": "acme", "idempotency_key": f"{run}-{key}", "document": {
            "content_type": content_type, "body": base64.b64encode(body).decode()}}).encode()

    def mail(attached: bytes) -> bytes:
        message = EmailMessage()
        message["From"], message["Subject"] = "billing@example.com", f"Invoice {run}"
        message.set_content("Our invoice is attached.")
        message.add_attachment(attached, maintype="application", subtype="pdf",
                               filename="invoice.pdf")
        return bytes(message)

    good_pdf = as_json("pdf", "application/pdf", text_pdf(pages=2))
    producer.produce(topic, key=b"pdf", value=good_pdf, headers=signed("acme", good_pdf))
    good_mail = as_json("mail", "message/rfc822", mail(text_pdf(pages=2)))
    producer.produce(topic, key=b"mail", value=good_mail, headers=signed("acme", good_mail))
    good_tiff, tiff_headers = encode(Submission(
        tenant_id="acme", idempotency_key=f"{run}-tiff",
        document=Document(content_type="image/tiff", body=tiff())))
    producer.produce(topic, key=b"tiff", value=good_tiff,
                     headers=signed("acme", good_tiff, tiff_headers["content-type"]))
    bad = {
        f"{run}-encrypted": (as_json("encrypted", "application/pdf",
                                     text_pdf(password="secret")), "document_encrypted"),
        f"{run}-bomb": (as_json("bomb", "image/png", png_bomb()), "document_too_many_pixels"),
        f"{run}-mismatch": (as_json("mismatch", "image/jpeg", text_pdf()),
                            "document_type_mismatch"),
        f"{run}-locked-mail": (as_json("locked-mail", "message/rfc822",
                                       mail(text_pdf(password="secret"))),
                               "document_encrypted"),
        f"{run}-not-base64": (json.dumps({"tenant_id": "acme", "idempotency_key": "x",
                                          "document": {"content_type": "application/pdf",
                                                       "body": "%PDF-1.4 raw"}}).encode(),
                              "schema_violation"),
    }
    for key, (value, _) in bad.items():
        producer.produce(topic, key=key.encode(), value=value, headers=signed("acme", value))
    assert producer.flush(60) == 0

    def letters_of(records: list) -> dict[str, DeadLetter]:
        letters = (DeadLetter.FromString(r.value) for r in records)
        return {letter.original_key.decode(): letter for letter in letters
                if letter.original_key.decode() in bad}

    records = await read_topic(settings, DEAD_LETTER, lambda rs: len(letters_of(rs)) == len(bad))
    for key, letter in letters_of(records).items():
        assert (letter.reason_code, letter.original_value) == (bad[key][1], bad[key][0]), key

    async def pages() -> dict[str, int]:
        rows = await db.fetch("SELECT idempotency_key, task_id FROM tasks WHERE tenant_id = "
                              "'acme' AND idempotency_key = ANY($1)",
                              [f"{run}-pdf", f"{run}-tiff", f"{run}-mail"])
        return {r["idempotency_key"]: r["task_id"] for r in rows} if len(rows) == 3 else {}

    found = await eventually(pages, "the three files accepted", 60)
    for key, count in ((f"{run}-pdf", 2), (f"{run}-tiff", 3), (f"{run}-mail", 2)):
        envelope = (await ingest.GetTask(GetTaskRequest(task_id=str(found[key])))).task.envelope
        assert envelope.document.page_count == count
        assert envelope.source == TaskSource.TASK_SOURCE_KAFKA_INTAKE
    # the e-mail is stored as the PDF it carries, its subject kept
    envelope = (await ingest.GetTask(GetTaskRequest(task_id=str(found[f"{run}-mail"])))
                ).task.envelope
    assert (envelope.document.content_type, envelope.document.filename) == (
        "application/pdf", "invoice.pdf")
    assert envelope.metadata["email_subject"] == f"Invoice {run}"


async def test_intake_text_in_a_declared_charset_arrives_as_utf8(
        producer: Producer, settings: Settings, db: asyncpg.Connection,
        ingest: IngestServiceStub) -> None:
    """A protobuf record's Latin-1 bytes with their charset are stored as UTF-8; the JSON
    form's text is characters already, so a charset it declares changes nothing, and a
    byte-order mark before it (as Windows and .NET producers write) is not part of it."""
    run = uuid.uuid4().hex[:6]
    topic = INTAKE.full_name(settings)
    text = "Rechnung Nr. 7 – Grüße aus Köln, 99,50 €"
    as_json = b"\xef\xbb\xbf" + json.dumps({
        "tenant_id": "acme", "idempotency_key": f"{run}-json", "document": {
            "content_type": "text/plain; charset=iso-8859-1", "body": text}}).encode()
    producer.produce(topic, key=b"json", value=as_json, headers=signed("acme", as_json))
    as_proto, proto_headers = encode(Submission(
        tenant_id="acme", idempotency_key=f"{run}-proto",
        document=Document(content_type="text/plain; charset=cp1252", body=text.encode("cp1252"))))
    producer.produce(topic, key=b"proto", value=as_proto,
                     headers=signed("acme", as_proto, proto_headers["content-type"]))
    assert producer.flush(60) == 0

    async def accepted() -> dict[str, str]:
        rows = await db.fetch("SELECT idempotency_key, task_id FROM tasks WHERE tenant_id = "
                              "'acme' AND idempotency_key = ANY($1)", [f"{run}-json",
                                                                        f"{run}-proto"])
        return {r["idempotency_key"]: str(r["task_id"]) for r in rows} if len(rows) == 2 else {}

    for task_id in (await eventually(accepted, "both records accepted", 60)).values():
        document = (await ingest.GetTask(GetTaskRequest(task_id=task_id))).task.envelope.document
        assert (document.content_type, document.body.decode("utf-8")) == ("text/plain", text)


async def test_each_intake_record_keeps_its_own_trace(
        producer: Producer, ingest: IngestServiceStub, settings: Settings) -> None:
    """Records taken in one batch are accepted together, yet each task goes on in the trace
    its record arrived in (its ``traceparent``), not in one shared by the batch; a record
    without one starts a trace of its own (an outside producer's untraced records all
    shared one)."""
    traces = {f"trace-{uuid.uuid4().hex[:8]}": uuid.uuid4().hex for _ in range(3)}
    untraced = [f"untraced-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    for key, trace_id in traces.items():
        value = good_json(key)
        producer.produce(INTAKE.full_name(settings), key=key.encode(), value=value, headers=[
            *signed("acme", value), ("traceparent", f"00-{trace_id}-00f067aa0ba902b7-01".encode())])
    for key in untraced:
        value = good_json(key)
        producer.produce(INTAKE.full_name(settings), key=key.encode(), value=value,
                         headers=signed("acme", value))
    assert producer.flush(30) == 0

    async def all_six() -> dict[str, str]:
        page = await ingest.ListTasks(ListTasksRequest(tenant_id="acme", page_size=500))
        found = {t.envelope.idempotency_key: t.envelope.task_id for t in page.tasks
                 if t.envelope.idempotency_key in traces or t.envelope.idempotency_key
                 in untraced}
        return found if len(found) == len(traces) + len(untraced) else {}

    task_ids = await eventually(all_six, "the six tasks", 90)
    wanted = {task_ids[key]: trace_id for key, trace_id in traces.items()}
    fresh = {task_ids[key] for key in untraced}

    def carried(records: list) -> dict[str, str]:
        seen = {}
        for r in records:
            event = StatusEvent.FromString(r.value)
            headers = {k: v.decode() for k, v in (r.headers or ())}
            if (event.task_id in wanted or event.task_id in fresh) and "traceparent" in headers:
                seen[event.task_id] = headers["traceparent"].split("-")[1]
        return seen

    statuses = await read_topic(settings, TASK_STATUS,
                                lambda rs: set(carried(rs)) >= set(wanted) | fresh)
    seen = carried(statuses)
    assert {t: seen[t] for t in wanted} == wanted
    own = {seen[t] for t in fresh}
    assert len(own) == len(fresh) and not own & set(wanted.values()), own


async def test_a_letter_is_the_tenant_its_record_names_and_nobodys_when_it_names_two(
        producer: Producer, settings: Settings, db: asyncpg.Connection) -> None:
    """A record that names its tenant in the payload only is that tenant's letter (its admin
    can read why it was refused); one whose payload and header name two tenants is an
    operator's (neither may read what the other sent); metadata past its limits is refused
    with the key named."""
    run = uuid.uuid4().hex[:6]
    topic = INTAKE.full_name(settings)
    sent = {
        # acme's, in the payload only, with a metadata value past its limit
        f"{run}-payload-only": (good_json(f"{run}-1", metadata={"note": "x" * 1025}),
                                "acme", "schema_violation"),
        # acme's, in the payload of an object that is no submission: a field the schema does
        # not have, no document (an outside operator found these filed under no tenant)
        f"{run}-payload-only-unknown-field": (good_json(f"{run}-3", bogus=1), "acme",
                                              "schema_violation"),
        f"{run}-payload-only-no-document": (
            json.dumps({"tenant_id": "acme", "idempotency_key": f"{run}-4"}).encode(), "acme",
            "schema_violation"),
        # acme's payload under globex's header
        f"{run}-two-tenants": (good_json(f"{run}-2"), "", "schema_violation"),
        # acme's object that is no submission, under globex's header
        f"{run}-two-tenants-unknown-field": (good_json(f"{run}-5", bogus=1), "",
                                             "schema_violation"),
        # no payload to read: the header's
        f"{run}-unreadable": (b"\xff not json", "globex", "malformed_json"),
    }
    for key, (value, _, _) in sent.items():
        headers = [("content-type", b"application/json"),
                   ("x-switchyard-signature", IntakeSigner.sign(KEYS["acme"], value).encode())]
        if "payload-only" not in key:
            headers.append(("x-tenant-id", b"globex"))
        producer.produce(topic, key=key.encode(), value=value, headers=headers)
    assert producer.flush(30) == 0

    def ours(records: list) -> dict[str, DeadLetter]:
        out = {}
        for record in records:
            letter = DeadLetter.FromString(record.value)
            if letter.original_key.decode(errors="replace") in sent:
                out[letter.original_key.decode()] = letter
        return out

    records = await read_topic(settings, DEAD_LETTER, lambda rs: len(ours(rs)) == len(sent),
                               timeout_s=120)
    for key, letter in ours(records).items():
        _, tenant, code = sent[key]
        assert letter.reason_code == code, (key, letter.reason)
        assert letter.tenant_id == tenant, key  # on the topic too
        filed = await eventually(lambda: db.fetchrow(
            "SELECT tenant_id FROM dead_letters WHERE dead_letter_id = $1",
            uuid.UUID(letter.dead_letter_id)), f"the letter of {key} in PostgreSQL", 30)
        assert (filed["tenant_id"] or "") == tenant, key
    too_long = ours(records)[f"{run}-payload-only"]
    # the key is the record's (it may be a person's name): withheld from the reason
    assert "metadata[[withheld: 4 characters]]: values are at most 1024 characters" in \
        too_long.reason
    # two tenants: said by their lengths, never quoted (a header that is not UTF-8 was quoted
    # as its escapes)
    assert ours(records)[f"{run}-two-tenants"].reason == (
        "tenant_id: the payload and header x-tenant-id name different values (4 and 6 "
        "characters)")


async def test_a_letter_keeps_every_header_byte_for_byte_and_a_replay_sends_them(
        producer: Producer, settings: Settings) -> None:
    """A refused record's headers are kept as it carried them (a repeated name each time,
    bytes that are not UTF-8 as they were), in the letter on the topic, in GetDeadLetter and
    in what a replay publishes (plus the header naming the letter)."""
    run = uuid.uuid4().hex[:6]
    headers = [("content-type", b"application/json"), ("x-tenant-id", b"acme"),
               ("x-note", b"first"), ("x-note", b"second"), ("trace", b"\xff\xfe\x00")]
    key = f"{run}-headers".encode()
    producer.produce(INTAKE.full_name(settings), key=key, value=b"not json", headers=headers)
    assert producer.flush(30) == 0

    def ours(records: list) -> list[DeadLetter]:
        return [letter for letter in map(DeadLetter.FromString, (r.value for r in records))
                if letter.original_key == key]

    (letter,) = ours(await read_topic(settings, DEAD_LETTER, lambda rs: bool(ours(rs))))
    as_pairs = [(h.key, h.value) for h in letter.original_header_list]
    assert as_pairs == headers
    assert letter.original_headers["x-note"] == "second"  # the text map: the last value
    channel = create_channel(f"127.0.0.1:{settings.ingest_grpc_port}")
    try:
        letters = DeadLetterServiceStub(channel)
        got = await eventually(lambda: _letter(letters, letter.dead_letter_id),
                               "the letter in PostgreSQL", 30)
        assert [(h.key, h.value) for h in got.letter.original_header_list] == headers
        await letters.ReplayDeadLetter(ReplayDeadLetterRequest(
            dead_letter_id=letter.dead_letter_id))
    finally:
        await channel.close()

    def replayed(records: list) -> list:
        return [r for r in records if r.key == key and
                ("x-switchyard-replay-of", letter.dead_letter_id.encode()) in r.headers]

    (again,) = replayed(await read_topic(settings, INTAKE, lambda rs: bool(replayed(rs))))
    assert (again.value, list(again.headers)) == (
        b"not json", [*headers, ("x-switchyard-replay-of", letter.dead_letter_id.encode())])


async def _letter(letters: DeadLetterServiceStub, letter_id: str) -> DeadLetterRecord | None:
    try:
        return (await letters.GetDeadLetter(GetDeadLetterRequest(
            dead_letter_id=letter_id))).dead_letter
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            return None
        raise


async def test_a_record_too_large_to_publish_as_a_letter_is_dead_lettered_and_intake_goes_on(
        settings: Settings, db: asyncpg.Connection) -> None:
    """An intake record of 5 MiB (the broker takes it; a letter carrying it is past what the
    producer sends): its letter goes to the topic without the bytes, saying how many, the
    service's table keeps them for show, and the good record behind it becomes a task.
    Before, ingest retried the letter for ever and every partition's intake stopped behind it,
    with the service reported healthy (an operator's trial). Shown whole past gRPC's default
    4 MiB answer; a replay is refused as for good, saying what to do instead (an outside
    integrator got RESOURCE_EXHAUSTED from show, and UNAVAILABLE "retry" from replay)."""
    run = uuid.uuid4().hex[:6]
    big = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers, "acks": "all",
                    "message.max.bytes": 8 * 1024 * 1024})
    topic = INTAKE.full_name(settings)
    value = good_json(f"{run}-huge", document={"body": "x" * (5 * 1024 * 1024)})
    big.produce(topic, key=f"{run}-huge".encode(), value=value, headers=signed("acme", value))
    after = good_json(f"{run}-after")
    big.produce(topic, key=f"{run}-after".encode(), value=after, headers=signed("acme", after))
    assert big.flush(60) == 0

    def ours(records: list) -> list[DeadLetter]:
        return [letter for letter in map(DeadLetter.FromString, (r.value for r in records))
                if letter.original_key == f"{run}-huge".encode()]

    (letter,) = ours(await read_topic(settings, DEAD_LETTER, lambda rs: bool(ours(rs)),
                                      timeout_s=60))
    assert letter.reason_code == "too_large"
    assert (letter.original_value, letter.original_value_size) == (b"", len(value))
    channel = create_channel(f"127.0.0.1:{settings.ingest_grpc_port}")
    try:
        got = await eventually(lambda: _letter(DeadLetterServiceStub(channel),
                                               letter.dead_letter_id),
                               "the letter in PostgreSQL", 30)
        assert got.letter.original_value == value   # whole, for show
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await DeadLetterServiceStub(channel).ReplayDeadLetter(ReplayDeadLetterRequest(
                dead_letter_id=letter.dead_letter_id), timeout=60)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert f"its record ({len(value):,} bytes) is larger than Kafka takes" in \
            refused.value.details() and "submit its document over gRPC or REST" in \
            refused.value.details(), refused.value.details()
    finally:
        await channel.close()
    assert await eventually(lambda: db.fetchval(
        "SELECT count(*) FROM tasks WHERE tenant_id = 'acme' AND idempotency_key = $1",
        f"{run}-after"), "the record after it as a task", 60) == 1
