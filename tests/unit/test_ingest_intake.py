"""Intake records -> submissions, without a broker: every refusal has a stable reason code."""

from __future__ import annotations

import json

import pytest

from services.ingest import domain, intake
from switchyard.access import SIGNATURE_HEADER, IntakeSigner
from switchyard.messaging import Record, RejectRecord, encode
from switchyard.v1 import Document, Submission

OPEN = IntakeSigner("")
SIGNED = IntakeSigner("acme:acme-secret")


def record(value: bytes | None, key: bytes | None = b"k", **headers: str) -> Record:
    return Record(topic="intake", partition=0, offset=0, key=key, value=value,
                  headers={k.replace("_", "-"): v for k, v in headers.items()}, timestamp=0.0)


def as_json(**fields: object) -> bytes:
    base: dict[str, object] = {"tenant_id": "acme", "idempotency_key": "po-1",
                               "document": {"body": "Invoice 7, amount due $10"}}
    base.update(fields)
    return json.dumps(base).encode()


def code_of(rec: Record, signer: IntakeSigner = OPEN, limit: int = 1024) -> str:
    with pytest.raises(RejectRecord) as caught:
        intake.parse_record(rec, limit, signer)
    assert caught.value.reason
    return caught.value.code


def test_json_record_becomes_a_submission() -> None:
    value = as_json(kind=" Invoice ", metadata={"po": "17"}, priority=2,
                    deadline="2030-01-01T00:00:00Z", callback_url="http://127.0.0.1/x")
    sub = intake.parse_record(record(value), 1024, OPEN)
    assert (sub.tenant_id, sub.idempotency_key, sub.kind) == ("acme", "po-1", " Invoice ")
    assert sub.document.body == b"Invoice 7, amount due $10"
    assert sub.metadata == {"po": "17"} and sub.priority == 2
    assert sub.deadline.seconds > 0 and sub.callback_url == "http://127.0.0.1/x"
    assert domain.validate(sub, 1024) == []


def test_structured_body_is_carried_as_json_text() -> None:
    value = as_json(document={"body": {"total": 10, "currency": "EUR"}})
    sub = intake.parse_record(record(value), 1024, OPEN)
    assert sub.document.content_type == "application/json"
    assert json.loads(sub.document.body) == {"total": 10, "currency": "EUR"}


def test_tenant_and_key_may_come_from_headers_and_record_key() -> None:
    value = json.dumps({"document": {"body": "hello"}}).encode()
    sub = intake.parse_record(record(value, key=b"from-key", x_tenant_id="acme"), 1024, OPEN)
    assert (sub.tenant_id, sub.idempotency_key) == ("acme", "from-key")
    sub = intake.parse_record(record(value, x_tenant_id="acme", x_idempotency_key="h-1"),
                              1024, OPEN)
    assert sub.idempotency_key == "h-1"


def test_protobuf_record_by_content_type() -> None:
    message = Submission(tenant_id="acme", idempotency_key="pb-1",
                         document=Document(body=b"ticket: printer not working"))
    value, headers = encode(message)
    sub = intake.parse_record(record(value, **{k.replace("-", "_"): v
                                               for k, v in headers.items()}), 1024, OPEN)
    assert sub == message


@pytest.mark.parametrize(("value", "headers", "code"), [
    (b"\x00garbage", {}, "malformed_json"),
    (b"\xff\xfe{}", {}, "malformed_json"),
    (b"[" * 100 + b"]" * 100, {}, "malformed_json"),
    (b"[1, 2]", {}, "schema_violation"),
    (as_json(extra=1), {}, "schema_violation"),
    (as_json(document=None), {}, "schema_violation"),
    (as_json(document={"body": 5}), {}, "schema_violation"),
    (as_json(priority="high"), {}, "schema_violation"),
    (as_json(metadata={"a": 1}), {}, "schema_violation"),
    (as_json(deadline="tomorrow"), {}, "schema_violation"),
    (as_json(tenant_id=None), {}, "schema_violation"),
    (as_json(), {"x_tenant_id": "globex"}, "schema_violation"),
    (b"", {}, "empty_record"),
    (b"\x08\x01", {"content_type": "application/xml"}, "unsupported_content_type"),
    (b"\xff\xff\xff", {"content_type": "application/x-protobuf; "
                                       "messageType=switchyard.v1.Submission"},
     "malformed_protobuf"),
])
def test_refusals_have_codes(value: bytes, headers: dict[str, str], code: str) -> None:
    assert code_of(record(value, **headers)) == code


def test_size_limits() -> None:
    assert code_of(record(as_json(document={"body": "x" * 2000}))) == "too_large"
    huge = b"x" * (1024 * 4 // 3 + intake.WRAPPER_ALLOWANCE_BYTES + 1)  # base64 + wrapper
    assert code_of(record(huge)) == "too_large"


def test_signatures_bind_the_tenant() -> None:
    value = as_json()
    good = IntakeSigner.sign(b"acme-secret", value)
    assert intake.parse_record(record(value, **{"x_switchyard_signature": good}), 1024,
                               SIGNED).tenant_id == "acme"
    assert code_of(record(value), SIGNED) == "bad_signature"
    forged = IntakeSigner.sign(b"wrong", value)
    assert code_of(record(value, **{"x_switchyard_signature": forged}), SIGNED) == \
        "bad_signature"
    other = as_json(tenant_id="initech")
    assert code_of(record(other, **{"x_switchyard_signature": good}), SIGNED) == \
        "unknown_tenant"
    assert SIGNATURE_HEADER == "x-switchyard-signature"


def test_validation_problems_map_to_codes() -> None:
    sub = intake.parse_record(record(as_json(kind="purchase order")), 1024, OPEN)
    assert intake.problems_reason(domain.validate(sub, 1024))[0] == "unknown_kind"
    sub = intake.parse_record(record(as_json(document={
        "content_type": "application/json", "body": "{\"a\": "})), 1024, OPEN)
    assert intake.problems_reason(domain.validate(sub, 1024))[0] == "malformed_document_json"
    sub = intake.parse_record(record(as_json(priority=9)), 1024, OPEN)
    code, text = intake.problems_reason(domain.validate(sub, 1024))
    assert code == "schema_violation" and text.startswith("priority:")


def test_overlong_integer_literal_is_a_json_problem_not_a_crash() -> None:
    assert domain.json_problem("1" * 5000) is not None
    assert code_of(record(b'{"priority": ' + b"1" * 5000 + b"}")) == "malformed_json"


def test_a_refusal_says_what_the_intake_takes_and_whose_letter_it_is() -> None:
    """The reason says what the intake takes (JSON too, not only protobuf); the rejection
    carries the tenant the record named, none when payload and header disagree."""
    with pytest.raises(RejectRecord) as refused:
        intake.parse_record(record(b"<a/>", content_type="application/xml"), 1024, OPEN)
    assert "application/json or application/x-protobuf" in refused.value.reason
    with pytest.raises(RejectRecord) as refused:
        intake.parse_record(record(as_json()), 1024, SIGNED)  # no signature
    assert (refused.value.code, refused.value.tenant_id) == ("bad_signature", "acme")
    with pytest.raises(RejectRecord) as refused:
        intake.parse_record(record(as_json(), x_tenant_id="globex"), 1024, OPEN)
    assert refused.value.tenant_id == ""


def test_a_signed_record_carries_its_idempotency_key_in_what_is_signed() -> None:
    """The signature covers the value: a key from the record key or a header could be
    changed in flight (one signed record, several tasks), so signed records need theirs in
    the payload; unsigned intake keeps the fallbacks."""
    value = json.dumps({"tenant_id": "acme", "document": {"body": "Invoice 7"}}).encode()
    signature = {"x_switchyard_signature": IntakeSigner.sign(b"acme-secret", value)}
    for headers in (signature, {**signature, "x_idempotency_key": "evil-1"}):
        with pytest.raises(RejectRecord) as refused:
            intake.parse_record(record(value, key=b"rk-A", **headers), 1024, SIGNED)
        assert refused.value.code == "schema_violation"
        assert "idempotency_key: required in the payload" in refused.value.reason
    assert intake.parse_record(record(value, key=b"rk-A"), 1024, OPEN).idempotency_key == "rk-A"


def test_a_control_character_in_a_json_string_is_named_once() -> None:
    """json says "Invalid control character at"; the reason must not read "at at line"."""
    assert domain.json_problem('{"a": "x\x01y"}') == \
        "malformed JSON: Invalid control character at line 1 column 9"


@pytest.mark.parametrize("name", ["TASK_PRIORITY_URGENT", "URGENT", "urgent"])
def test_an_intake_record_names_its_priority_in_any_of_its_spellings(name: str) -> None:
    """ingest.md: an intake record's JSON takes the proto3 name or the short one."""
    submission = intake.submission_from_json(json.dumps({
        "tenant_id": "acme", "idempotency_key": "k", "priority_level": name,
        "document": {"body": "x"}}).encode())
    assert submission.priority_level == 1   # TASK_PRIORITY_URGENT
