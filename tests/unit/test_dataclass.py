"""The data-class registry: complete, consistent with the codec, and what reviewers get."""

from __future__ import annotations

from services.decision.extraction import FIELD_NAMES
from switchyard._dataclass import (
    EXTRACTED_FIELDS,
    STORED,
    TOPICS,
    AtRest,
    DataClass,
    field_class,
    matching_hash,
    redact_escalation,
    sealed_columns,
)
from switchyard._payloads import COLUMNS
from switchyard._pii import Redactor
from switchyard._topics import ALL_TOPICS, BROKER_MARKER
from switchyard.v1 import Document, Escalation, FieldExtraction, TaskEnvelope

IBAN = "DE89370400440532013000"


def test_every_extracted_field_and_topic_is_classified() -> None:
    assert set(FIELD_NAMES) <= set(EXTRACTED_FIELDS)
    assert field_class("vendor") is DataClass.PERSONAL
    assert field_class("bank_account") is DataClass.PERSONAL
    assert field_class("something_a_reviewer_added") is DataClass.PERSONAL
    assert {t.topic for t in TOPICS} == {t.name for t in ALL_TOPICS if t is not BROKER_MARKER}


def test_personal_columns_are_never_plain_and_the_codec_seals_exactly_the_sealed_ones() -> None:
    assert all(s.at_rest is not AtRest.PLAIN for s in STORED
               if s.data_class is DataClass.PERSONAL)
    assert sealed_columns() == {c.name for c in COLUMNS}


def test_matching_hash_is_keyed_and_tenant_bound() -> None:
    one = matching_hash(b"k", "acme", "bank_account", IBAN)
    assert IBAN not in one and len(one) == 64
    assert one == matching_hash(b"k", "acme", "bank_account", IBAN)
    assert one != matching_hash(b"other", "acme", "bank_account", IBAN)
    assert one != matching_hash(b"k", "globex", "bank_account", IBAN)
    assert matching_hash(b"k", "acme", "bank_account", "") == ""


def test_reviewers_get_the_proposal_redacted_by_class() -> None:
    escalation = Escalation(
        reason_detail="Invoice INV-7 for USD 10.00, ask jane.roe@example.org",
        task=TaskEnvelope(document=Document(content_type="text/plain",
                                            body=f"IBAN {IBAN} INV-7".encode()),
                          metadata={"contact": "jane.roe@example.org"}))
    proposal = escalation.proposed_decision
    proposal.fields.extend([FieldExtraction(name="bank_account", value=IBAN),
                            FieldExtraction(name="vendor", value="Jane Roe Consulting"),
                            FieldExtraction(name="total", value="10.00")])
    proposal.extracted_fields.update({"bank_account": IBAN, "total": "10.00"})
    step = proposal.plan.steps.add(step_id="1-post_invoice")
    step.payload.update({"fields": {"bank_account": IBAN, "total": "10.00"},
                         "metadata": {"contact": "jane.roe@example.org"}})
    shown = redact_escalation(escalation, Redactor())
    text = str(shown)
    for value in (IBAN, "Jane Roe", "jane.roe@example.org"):
        assert value not in text
    assert {f.name: f.value for f in shown.proposed_decision.fields}["total"] == "10.00"
    assert shown.proposed_decision.plan.steps[0].payload["fields"]["total"] == "10.00"
    assert "INV-7" in shown.task.document.body.decode()
    assert IBAN in str(escalation)  # the stored escalation is untouched (a verdict runs it)
