"""One set of acceptance rules for a Submission (ingest) and a TaskEnvelope (Decide)."""

from __future__ import annotations

import pytest

from switchyard.tasks import DocumentViolation, validate, validate_task
from switchyard.v1 import BlobRef, Document, Submission, TaskEnvelope
from tests.decision.documents import invoice, pdf, png

CASES = {
    "png as pdf": dict(kind="invoice", document=Document(content_type="application/pdf",
                                                         body=png())),
    "corrupt pdf": dict(kind="invoice", document=Document(content_type="application/pdf",
                                                          body=b"%PDF-1.4\n" + b"\x00" * 64)),
    "pdf": dict(kind="invoice", document=Document(content_type="application/pdf",
                                                  body=pdf(invoice()))),
    "pdf as text": dict(document=Document(content_type="text/plain", body=pdf(invoice()))),
    "bad json": dict(document=Document(content_type="application/json", body=b"{nope")),
    "unknown kind, empty body": dict(kind="poem", document=Document()),
    "priority": dict(priority=7, document=Document(body=b"hello")),
    "fine": dict(kind="support_ticket", document=Document(body=b"printer error")),
}


@pytest.mark.parametrize("name", CASES)
def test_decide_applies_ingests_rules_field_for_field(name: str) -> None:
    fields = CASES[name]
    submitted = validate(Submission(tenant_id="acme", idempotency_key="k", **fields), 1 << 20)
    decided = validate_task(TaskEnvelope(tenant_id="acme", **fields), 1 << 20)
    assert [(f"task.{v.field}", v.description) for v in submitted] == \
        [(v.field, v.description) for v in decided]
    assert bool(decided) == (name not in ("fine", "pdf"))


def test_files_are_checked_and_refusals_carry_their_code() -> None:
    """PDFs and images are accepted when they are what they claim (Decide as ingest); a file
    that is not names the body, with the DocumentError code first."""
    assert validate_task(TaskEnvelope(tenant_id="acme", document=Document(
        content_type="image/png", body=png())), 1 << 20) == []
    [problem] = validate_task(TaskEnvelope(tenant_id="acme", document=Document(
        content_type="application/pdf", body=png())), 1 << 20)
    assert isinstance(problem, DocumentViolation) and problem.code == "type_mismatch"
    assert (problem.field, problem.description) == (
        "task.document.body", "type_mismatch: declared application/pdf but the bytes are a "
                              "PNG image")
    assert [v.field for v in validate_task(TaskEnvelope(document=Document(body=b"x")), 10)] \
        == ["task.tenant_id"]


def test_a_blob_reference_from_outside_is_refused() -> None:
    problems = validate(Submission(tenant_id="acme", idempotency_key="k", document=Document(
        content_type="application/pdf", blob=BlobRef(uri="pg:x", sha256="0" * 64))), 1 << 20)
    assert [v.field for v in problems] == ["document.blob"]
