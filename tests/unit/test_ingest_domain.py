"""Ingest's validation and normalisation, without gRPC or Kafka."""

from __future__ import annotations

import codecs

from services.ingest import domain
from switchyard.documents import TEXT_CHARSETS, normalise_content_type
from switchyard.v1 import Document, Submission, TaskSource


def submission(**changes: object) -> Submission:
    base = Submission(tenant_id="acme", idempotency_key="k-1", kind="invoice",
                      document=Document(content_type="text/plain", body=b"Invoice 42, $10"))
    for key, value in changes.items():
        if key == "document":
            base.document.CopyFrom(value)  # type: ignore[arg-type]
        elif key == "metadata":
            base.metadata.update(value)  # type: ignore[call-overload]
        else:
            setattr(base, key, value)
    return base


def fields(sub: Submission, limit: int = 1024) -> dict[str, str]:
    return {v.field: v.description for v in domain.validate(sub, limit)}


def test_valid_submission_has_no_problems() -> None:
    assert fields(submission()) == {}


def test_each_problem_names_its_field() -> None:
    problems = fields(Submission(kind="purchase-order", priority=7,
                                 document=Document(content_type="image/gif")))
    assert set(problems) == {"tenant_id", "idempotency_key", "kind", "document.content_type",
                             "priority"}
    empty = fields(submission(document=Document(content_type="image/png")))
    assert empty == {"document.body": "empty: required (empty document)"}
    assert "purchase-order" in problems["kind"]


def test_any_well_formed_kind_is_accepted_the_decision_service_knows_the_packs() -> None:
    """A document type without a shipped pack (one a tenant applied) is accepted."""
    assert "kind" not in fields(submission(kind="expense_claim"))
    assert "kind" in fields(submission(kind="Expense Claim"))


def test_oversize_and_malformed_json_and_bad_utf8() -> None:
    assert "exceeds the limit of 8 bytes" in fields(submission(), limit=8)["document.body"]
    bad_json = submission(document=Document(content_type="application/json", body=b'{"a": '))
    assert fields(bad_json)["document.body"].startswith("malformed JSON")
    bad_utf8 = submission(document=Document(body=b"\xff\xfeoops"))
    assert "not valid UTF-8" in fields(bad_utf8)["document.body"]


def test_payload_hash_ignores_key_and_metadata_order_but_not_content() -> None:
    a = submission(metadata={"x": "1", "y": "2"})
    b = submission(idempotency_key="other", metadata={"y": "2", "x": "1"})
    c = submission(document=Document(content_type="text/plain", body=b"Invoice 43"))
    assert domain.payload_sha256(a) == domain.payload_sha256(b)
    assert domain.payload_sha256(a) != domain.payload_sha256(c)


def test_envelope_is_normalised() -> None:
    sub = submission(tenant_id=" acme ", kind=" Invoice ", metadata={" po ": " 17 "})
    envelope = domain.build_envelope(sub, "task-1", TaskSource.TASK_SOURCE_GRPC)
    assert envelope.tenant_id == "acme"
    assert envelope.kind == "invoice"
    assert envelope.metadata == {"po": "17"}
    assert envelope.document.kind_hint == "invoice"
    assert envelope.received_at.seconds > 0


def test_ingest_guesses_no_kind_the_router_decides() -> None:
    """Ingest knows no document types (packs live in the decision service)."""
    sub = submission(kind="", document=Document(body=b"Attendance dropped in classroom B204"))
    envelope = domain.build_envelope(sub, "task-2", TaskSource.TASK_SOURCE_GRPC)
    assert envelope.kind == ""
    assert envelope.document.kind_hint == ""


def test_a_declared_charset_is_decoded_and_the_envelope_carries_utf8() -> None:
    text = "Grüße – 12,50 €"
    for content_type, body in (("text/plain; charset=cp1252", text.encode("cp1252")),
                               ("TEXT/PLAIN; Charset=UTF-16", text.encode("utf-16")),
                               ("text/plain;charset=utf-8", text.encode())):
        sub = submission(document=Document(content_type=content_type, body=body))
        assert fields(sub) == {}, content_type
        envelope = domain.build_envelope(sub, "t-1", TaskSource.TASK_SOURCE_GRPC)
        assert envelope.document.content_type == "text/plain"
        assert envelope.document.body.decode("utf-8") == text, content_type
    assert "unsupported charset 'rot13'" in fields(submission(document=Document(
        content_type="text/plain; charset=rot13", body=b"x")))["document.content_type"]
    assert "not valid iso2022_jp" in fields(submission(document=Document(
        content_type="text/plain; charset=iso-2022-jp", body=b"\xff\xfe")))["document.body"]


def test_the_charsets_are_named_as_python_names_them() -> None:
    """The allow-list holds canonical codec names: an alias is looked up to one of them, so
    a name written otherwise would never match."""
    assert all(codecs.lookup(name).name == name for name in TEXT_CHARSETS)
    assert normalise_content_type(" Application/JSON ; charset=utf-8") == "application/json"
    assert normalise_content_type("") == "text/plain"
