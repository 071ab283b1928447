"""One set of acceptance rules for a Submission (ingest) and a TaskEnvelope (Decide)."""

from __future__ import annotations

import pytest

from switchyard._submissions import validate, validate_task
from switchyard.v1 import Document, Submission, TaskEnvelope
from tests.decision.documents import invoice, pdf, png

CASES = {
    "png": dict(kind="invoice", document=Document(content_type="image/png", body=png())),
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
    assert bool(decided) == (name != "fine")


def test_binary_documents_name_the_content_type_and_the_body() -> None:
    problems = {v.field: v.description for v in validate_task(TaskEnvelope(
        tenant_id="acme", document=Document(content_type="image/png", body=png())), 1 << 20)}
    assert "image/png" in problems["task.document.content_type"]
    assert "not valid UTF-8" in problems["task.document.body"]
    assert [v.field for v in validate_task(TaskEnvelope(document=Document(body=b"x")), 10)] \
        == ["task.tenant_id"]
