"""Fuzzing the Kafka intake: whatever a producer writes, ingest refuses it with a reason code.

Hypothesis generates record values (invalid UTF-8, 100k-deep JSON, wrong types, oversize
fields, lone surrogate escapes, out-of-range deadlines, injection strings, protobuf garbage,
cut and bit-flipped PDFs and images in base64),
headers (content types, tenants, good, forged and non-ASCII signatures) and keys. The domain
functions the intake agent runs (``parse_record``, ``domain.validate``, ``problems_reason``)
must either accept a record or refuse it with one of the documented reason codes; nothing
else may escape. One integration test then produces a sample drawn from the same strategies
through the real broker to a running ingest process: each bad record lands on the dead-letter
topic and table with its reason and original bytes, and good records around them get in.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Producer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.ingest import domain, intake
from services.ingest.service import checked
from switchyard import Settings
from switchyard.access import SIGNATURE_HEADER, IntakeSigner
from switchyard.documents import ERROR_CODES
from switchyard.messaging import (
    DEAD_LETTER,
    INTAKE,
    TENANT_HEADER,
    Record,
    RejectRecord,
    encode,
    headers_to_dict,
)
from switchyard.storage import connect
from switchyard.v1 import DeadLetter, Document, Submission
from tests.document_samples import image, text_pdf, tiff
from tests.ingest.helpers import IngestProcess, read_topic
from tests.polling import eventually

KEYS = {"acme": b"acme-intake-key", "globex": b"globex-intake-key"}
SPEC = ",".join(f"{t}:{k.decode()}" for t, k in KEYS.items())
SIGNER = IntakeSigner(SPEC)
LIMIT = 4096
CODES = {"empty_record", "too_large", "malformed_json", "schema_violation", "unknown_kind",
         "malformed_document_json", "unsupported_content_type", "wrong_message_type",
         "malformed_protobuf", "missing_content_type", "unknown_tenant", "bad_signature",
         # a PDF or image refused by switchyard.documents.inspect: document_<its code>
         *(f"document_{code}" for code in ERROR_CODES)}
INJECTIONS = ["'; DROP TABLE tasks; --", "<script>alert(1)</script>", "${jndi:ldap://x/a}",
              "../../etc/passwd", "\x00", "%s%n", "{{7*7}}", "\u202e", "🦄" * 40,
              "\r\nX-Injected: 1", "\\ud800"]
PROTOBUF = "application/x-protobuf; messageType=switchyard.v1.Submission"

texts = st.one_of(st.text(max_size=80), st.sampled_from(INJECTIONS))
json_scalars = (st.none() | st.booleans() | st.integers() | texts
                | st.floats(allow_nan=False, allow_infinity=False))
json_values = st.recursive(json_scalars, lambda c: st.lists(c, max_size=4)
                           | st.dictionaries(texts, c, max_size=4), max_leaves=20)


def nested(depth: int, open_: bytes = b"[", close: bytes = b"]") -> bytes:
    return open_ * depth + close * depth


SURROGATE = "\udead"  # stands for a lone surrogate escape, spliced in as JSON text below
#: Values aimed at what each field's parser does with them.
NASTY = {
    "deadline": st.sampled_from(["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-10:00",
                                 "2030-01-01T00:00:00", "2030-13-45T99:99:99Z", "Z", "",
                                 "2030-01-01T00:00:00+25:00", "+999999-01-01T00:00:00Z"]),
    "priority": st.one_of(st.integers(-2**70, 2**70), st.floats(), st.booleans()),
    "metadata": st.dictionaries(st.text(max_size=5), st.one_of(st.text(max_size=5),
                                st.integers()), max_size=5),
    "kind": st.sampled_from(["invoice", "INVOICE ", "purchase_order", "", SURROGATE]),
    "document.content_type": st.sampled_from(["application/pdf", "image/png", "image/jpeg",
                                              "image/tiff", "IMAGE/PNG "]),
    "document.body": st.builds(
        lambda sample, cut, flip: base64.b64encode(
            bytes(b ^ (flip if i == cut // 2 else 0) for i, b in enumerate(sample[:cut]))
        ).decode(),
        st.sampled_from([text_pdf(), image("PNG"), image("JPEG"), tiff()]),
        st.integers(1, 4000), st.integers(0, 255)),
    "callback_url": st.sampled_from(["http://127.0.0.1:1/x", "javascript:alert(1)",
                                     "http://[::1", "ftp://x", "http://" + "a" * 3000]),
}


@st.composite
def json_objects(draw: st.DrawFn) -> bytes:
    """A valid submission with one to three mutations: a field of the wrong type, size or
    content, an unknown field, a missing one, hostile text, a lone surrogate escape."""
    doc: dict[str, Any] = {"tenant_id": draw(st.sampled_from(["acme", "globex"])),
                           "idempotency_key": draw(st.text(min_size=1, max_size=20)),
                           "document": {"body": "Invoice 7, amount due 10.00 EUR"}}
    fields = ["tenant_id", "idempotency_key", "kind", "callback_url", "deadline", "priority",
              "metadata", "document", "document.body", "document.content_type",
              "document.filename", "document.kind_hint", "document.extra", "extra"]
    for _ in range(draw(st.integers(1, 3))):
        field = draw(st.sampled_from(fields))
        value = draw(NASTY[field]) if field in NASTY and draw(st.booleans()) else draw(st.one_of(
            texts, json_values, st.just(SURROGATE), st.just(None),
            st.sampled_from(["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-10:00",
                             "2030-01-01T00:00:00", "2030-13-45T99:99:99Z",
                             "2030-01-01T00:00:00Z"]),
            st.integers(), st.floats(), st.booleans(),
            st.dictionaries(st.one_of(texts, st.just(SURROGATE)),
                            st.one_of(texts, st.just(SURROGATE)), max_size=70),
            st.integers(LIMIT - 8, LIMIT + 64).map(lambda n: "x" * n),
            st.sampled_from(["application/json", "text/plain", "image/png", "invoice",
                             "support_ticket", "http://127.0.0.1:1/hook"])))
        target = doc
        if field.startswith("document."):
            if not isinstance(doc.get("document"), dict):
                doc["document"] = {}
            target, field = doc["document"], field.split(".", 1)[1]
        if value is None and draw(st.booleans()):
            target.pop(field, None)
        else:
            target[field] = value
    raw = json.dumps(doc, ensure_ascii=draw(st.booleans()))
    # the stand-in, escaped (ensure_ascii) or raw, becomes the escape of a lone surrogate
    return raw.replace("\\udead", "\\ud800").replace(SURROGATE, "\\ud800").encode()


values = st.one_of(
    st.binary(max_size=300),
    st.binary(min_size=1, max_size=40).map(lambda b: b"\xff\xfe" + b),   # invalid UTF-8
    st.sampled_from([nested(100_000), nested(100_000, b'{"a":', b"}"),
                     nested(65), b'{"priority": ' + b"9" * 5000 + b"}", b"", b"null",
                     b"[]", b'"text"', b"1e400", b"NaN", b"{" + b'"a":1,' * 2000 + b"}"]),
    st.integers(LIMIT + 64 * 1024 + 1, LIMIT + 70 * 1024).map(lambda n: b" " * n),
    st.sampled_from(INJECTIONS).map(str.encode),
    json_objects(),
)


@st.composite
def records(draw: st.DrawFn, plausible: bool = False) -> Record:
    """An intake record; ``plausible``: a mutated JSON submission with believable headers
    (JSON, its own tenant, mostly a good signature), so the mutations reach every parser."""
    value = draw(json_objects() if plausible else values)
    if not plausible and draw(st.integers(0, 9)) == 0:  # a protobuf Submission
        sub = Submission(tenant_id=draw(st.sampled_from(["acme", "", "initech"])),
                         idempotency_key=draw(st.text(max_size=20)),
                         kind=draw(st.sampled_from(["invoice", "nonsense", ""])),
                         document=Document(body=draw(st.binary(max_size=LIMIT + 10))))
        value = encode(sub)[0]
    tenant = draw(st.sampled_from(["acme", "globex", "initech", "", "acme\x00"]))
    content_types = [None, "application/json", PROTOBUF, "text/plain", ";;=",
                     "application/x-protobuf; messageType=Other",
                     "APPLICATION/JSON; charset=latin-1"]
    signatures = ["good", "forged", "none", "scheme", "non-ascii", "raw"]
    if plausible:
        tenant = ""  # the payload names it
        try:
            tenant = str(json.loads(value).get("tenant_id", ""))
        except (ValueError, AttributeError):
            pass
        content_types = content_types[:2]
        signatures = ["good"] * 4 + signatures
    headers: list[tuple[str, bytes]] = []
    content_type = draw(st.sampled_from(content_types))
    if content_type is not None:
        headers.append(("content-type", content_type.encode()))
    if tenant and not plausible:
        headers.append((TENANT_HEADER, tenant.encode()))
    signature = draw(st.sampled_from(signatures))
    secret = KEYS.get(tenant, b"no-key")
    signed = {"good": IntakeSigner.sign(secret, value).encode(),
              "forged": IntakeSigner.sign(b"guess", value).encode(),
              "scheme": b"md5=abc", "non-ascii": "hmac-sha256=é€".encode(),
              "raw": b"hmac-sha256=\xff\xfe"}.get(signature)
    if signed is not None:
        headers.append((SIGNATURE_HEADER, signed))
    if draw(st.booleans()):
        headers.append((intake.KEY_HEADER, draw(st.binary(max_size=30))))
    key = draw(st.one_of(st.none(), st.binary(max_size=300)))
    return Record(topic="intake", partition=0, offset=0, key=key, value=value,
                  headers=headers_to_dict(headers), timestamp=0.0)


def outcome(record: Record, limit: int = LIMIT) -> str:
    """What the intake agent does with ``record`` short of the database: 'accepted' or the
    reason code of its refusal (the steps ``IntakeConsumer.handle_batch`` takes per record)."""
    try:
        submission = intake.parse_record(record, limit, SIGNER)
    except RejectRecord as exc:
        assert exc.reason, exc.code
        return exc.code
    problems, _ = checked(submission, Settings(max_payload_bytes=limit,
                                               document_max_bytes=limit))
    if problems:
        code, reason = intake.problems_reason(problems)
        assert reason
        return code
    domain.build_envelope(submission, "t-1", 3)
    return "accepted"


@settings(max_examples=250, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(record=records())
def test_every_record_is_accepted_or_refused_with_a_reason_code(record: Record) -> None:
    assert outcome(record) in CODES | {"accepted"}


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(record=records(plausible=True))
def test_mutated_submissions_are_accepted_or_refused_with_a_reason_code(
        record: Record) -> None:
    assert outcome(record) in CODES | {"accepted"}


@pytest.mark.parametrize("value, code", [
    (nested(100_000), "malformed_json"),
    (nested(100_000, b'{"a":', b"}"), "malformed_json"),
    (json.dumps({"tenant_id": "acme", "idempotency_key": "k", "document": {
        "content_type": "application/json", "body": nested(100_000).decode()}}).encode(),
     "malformed_document_json"),
    (b'{"tenant_id": "acme", "idempotency_key": "\\ud800", "document": {"body": "x"}}',
     "malformed_json"),
    (b'{"tenant_id": "acme", "idempotency_key": "k", "document": {"body": ["\\udfff"]}}',
     "malformed_json"),
    (json.dumps({"tenant_id": "acme", "idempotency_key": "k", "document": {"body": "x"},
                 "deadline": "0001-01-01T00:00:00+01:00"}).encode(), "schema_violation"),
])
def test_hostile_values_get_their_specific_code(value: bytes, code: str) -> None:
    """Deep nesting never reaches a recursive parser; surrogates and impossible deadlines are
    refused as data, not raised as exceptions."""
    record = Record("intake", 0, 0, b"k", value, {TENANT_HEADER: "acme", SIGNATURE_HEADER:
                    IntakeSigner.sign(KEYS["acme"], value)}, 0.0)
    assert outcome(record, limit=1_000_000) == code


def test_non_ascii_signature_is_a_bad_signature() -> None:
    value = json.dumps({"tenant_id": "acme", "idempotency_key": "k",
                        "document": {"body": "x"}}).encode()
    record = Record("intake", 0, 0, b"k", value, headers_to_dict(
        [(TENANT_HEADER, b"acme"), (SIGNATURE_HEADER, "hmac-sha256=é".encode())]), 0.0)
    assert outcome(record) == "bad_signature"


# -- through the real broker --------------------------------------------------------------

def sample_bad_records(count: int) -> list[Record]:
    """Records drawn from the fuzz strategy (deterministically) that the domain refuses."""
    drawn: list[Record] = []

    @settings(max_examples=count * 3, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(record=records())
    def collect(record: Record) -> None:
        if len(drawn) < count and outcome(record) != "accepted":
            drawn.append(record)

    collect()
    return drawn


@pytest.fixture(scope="module")
def fuzz_settings(settings: Settings) -> Settings:
    return settings.replace(intake_signing_keys=SPEC, max_payload_bytes=LIMIT,
                            document_max_bytes=LIMIT)


@pytest.fixture(scope="module")
def ingest_process(fuzz_settings: Settings, tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[IngestProcess]:
    process = IngestProcess(fuzz_settings, tmp_path_factory.mktemp("ingest")).start()
    try:
        yield process
    finally:
        process.stop()


@pytest.mark.integration
async def test_fuzzed_records_are_dead_lettered_and_good_ones_get_in(
        fuzz_settings: Settings, ingest_process: IngestProcess) -> None:
    run = uuid.uuid4().hex[:8]
    bad = sample_bad_records(40)
    assert len({outcome(r) for r in bad}) >= 5, "the sample should cover several reasons"
    producer = Producer({"bootstrap.servers": fuzz_settings.kafka_bootstrap_servers,
                         "message.max.bytes": 2_000_000})
    topic = INTAKE.full_name(fuzz_settings)
    expected: dict[bytes, tuple[str, bytes]] = {}
    good_keys = []
    for index, drawn in enumerate(bad):
        # a unique record key to find the letter by; the reason is computed for that key
        key = f"{run}-bad-{index}".encode()
        record = Record("intake", 0, 0, key, drawn.value, drawn.headers, 0.0)
        code = outcome(record)
        if code == "accepted":  # refused only for want of a key: not a bad record any more
            continue
        expected[key] = (code, record.value or b"")
        producer.produce(topic, key=key, value=record.value,
                         headers=[(k, v.encode()) for k, v in record.headers.items()])
        if index % 4 == 0:
            good_key = f"{run}-good-{index}"
            good = json.dumps({"tenant_id": "acme", "idempotency_key": good_key,
                               "document": {"body": f"Invoice {good_key}, due 10.00"}}
                              ).encode()
            producer.produce(topic, key=good_key.encode(), value=good, headers=[
                (TENANT_HEADER, b"acme"),
                (SIGNATURE_HEADER, IntakeSigner.sign(KEYS["acme"], good).encode())])
            good_keys.append(good_key)
    assert producer.flush(60) == 0

    def letters_of(rows: list[Any]) -> dict[bytes, DeadLetter]:
        letters = (DeadLetter.FromString(r.value) for r in rows)
        return {d.original_key: d for d in letters if d.original_key.startswith(run.encode())}

    rows = await read_topic(fuzz_settings, DEAD_LETTER,
                            lambda rs: len(letters_of(rs)) >= len(expected), timeout_s=120)
    letters = letters_of(rows)
    assert set(letters) == set(expected)
    for key, (code, value) in expected.items():
        assert (letters[key].reason_code, letters[key].original_value) == (code, value), key
        assert letters[key].reason and letters[key].service == "ingest"

    conn = await connect(fuzz_settings)
    try:
        async def mirrored() -> Counter[tuple[str, bytes]]:
            # the topic is written first, the table right after: wait for the last rows
            rows = await conn.fetch("SELECT reason_code, original_value FROM dead_letters "
                                    "WHERE service = 'ingest'")
            found = Counter((r["reason_code"], bytes(r["original_value"] or b"")) for r in rows)
            return found if sum(found.values()) >= len(expected) else Counter()

        assert await eventually(mirrored, "dead_letters rows", 60) == \
            Counter(expected.values())

        async def accepted() -> list[str]:
            found = await conn.fetch("SELECT idempotency_key FROM tasks WHERE tenant_id = "
                                     "'acme' AND idempotency_key LIKE $1", f"{run}-good-%")
            return [r["idempotency_key"] for r in found] if len(found) == len(good_keys) \
                else []

        assert sorted(await eventually(accepted, "good records", 60)) == sorted(good_keys)
    finally:
        await conn.close()
