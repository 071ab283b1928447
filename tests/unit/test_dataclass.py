"""The data-class registry: complete, consistent with the codec, and what reviewers get."""

from __future__ import annotations

from switchyard_packs.invoice.extraction import FIELD_NAMES
from switchyard.messaging import ALL_TOPICS, BROKER_MARKER
from switchyard.privacy import (
    EXTRACTED_FIELDS,
    STORED,
    TOPICS,
    AtRest,
    DataClass,
    Redactor,
    downstream_excerpt,
    field_class,
    matching_hash,
    redact_edits,
    redact_escalation,
    redact_free_text,
    sealed_columns,
)
from switchyard.storage import COLUMNS
from switchyard.v1 import (
    DataClass as ProtoDataClass,
    Document,
    Escalation,
    FieldExtraction,
    TaskEnvelope,
)

import json

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


def test_the_readme_names_every_sealed_column() -> None:
    """The README's encryption-at-rest list is the registry's (an operator found columns
    that `keys status` covers missing from it)."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("### Encryption at rest", 1)[1].split("\n#", 1)[0]
    listed = set(re.findall(r"`([a-z_]+\.[a-z_]+)`", section))
    # the consent registry's three columns are written `signal_consents.subject_ref`,
    # `.guardian_ref` and `.group_label`
    listed |= {f"signal_consents.{c}" for c in re.findall(r"`\.([a-z_]+)`", section)}
    assert {c.name for c in COLUMNS} <= listed, {c.name for c in COLUMNS} - listed


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


def test_a_packs_declared_class_wins_over_the_table() -> None:
    """Fields carry their pack's class: a pack's own field is shown or withheld as declared,
    whatever its name; only an unspecified class falls back to the invoice table."""
    assert field_class("ticket_id", ProtoDataClass.DATA_CLASS_DERIVED) is DataClass.DERIVED
    assert field_class("total", ProtoDataClass.DATA_CLASS_PERSONAL) is DataClass.PERSONAL
    assert field_class("total") is DataClass.DERIVED  # a decision made before packs
    assert field_class("ticket_id") is DataClass.PERSONAL  # unknown and undeclared
    escalation = Escalation()
    proposal = escalation.proposed_decision
    proposal.fields.extend([
        FieldExtraction(name="ticket_id", value="SR736500",
                        data_class=ProtoDataClass.DATA_CLASS_DERIVED),
        FieldExtraction(name="total", value="10.00",
                        data_class=ProtoDataClass.DATA_CLASS_PERSONAL)])
    proposal.extracted_fields.update({"ticket_id": "SR736500", "total": "10.00"})
    shown = redact_escalation(escalation, Redactor()).proposed_decision
    assert dict(shown.extracted_fields) == {"ticket_id": "SR736500", "total": "[TOTAL REDACTED]"}
    assert [f.value for f in shown.fields] == ["SR736500", "[TOTAL REDACTED]"]


def test_free_text_columns_are_classified_derived() -> None:
    derived = {f"{s.table}.{s.column}" for s in STORED if s.data_class is DataClass.DERIVED}
    assert {"review_verdicts.reason", "executions.error", "executions.result",
            "executor_jobs.reason", "decisions.explanation"} <= derived
    classes = {t.topic: t.data_class for t in TOPICS}
    assert classes["executions"] is DataClass.DERIVED


def test_a_reviewers_reason_keeps_its_words_not_the_personal_data() -> None:
    typed = f"Not theirs: account {IBAN}, ask jane.roe@example.org, invoice INV-7 USD 10.00"
    kept = redact_free_text(typed)
    assert IBAN not in kept and "jane.roe@example.org" not in kept
    assert kept.startswith("Not theirs: account [IBAN REDACTED]") and "INV-7 USD 10.00" in kept
    assert redact_free_text("") == ""


def test_a_downstream_echo_is_redacted_wherever_the_personal_data_sits() -> None:
    # the personal values sit past the 200 characters that are kept: redaction runs first
    echo = {"id": 7, "note": "x" * 300,
            "data": {"fields": {"bank_account": IBAN, "vendor": "Jane Roe Consulting",
                                "total": "10.00"},
                     "metadata": {"contact": "jane.roe@example.org"}}}
    kept = downstream_excerpt(json.dumps(echo), limit=10_000)
    assert IBAN not in kept and "Jane Roe" not in kept and "jane.roe@" not in kept
    assert '"bank_account": "[BANK_ACCOUNT REDACTED]"' in kept and '"total": "10.00"' in kept
    assert len(downstream_excerpt(json.dumps(echo))) == 200
    # a cut never leaves half of an IBAN the detectors would no longer recognise
    spaced = " ".join(IBAN[i:i + 4] for i in range(0, len(IBAN), 4))
    for head in range(0, 30):
        assert "DE89" not in downstream_excerpt("e" * head + f"account {spaced}", limit=30)
    plain = downstream_excerpt("422   rejected:\n card 4111 1111 1111 1111 is blocked")
    assert plain == "422 rejected: card [CARD REDACTED] is blocked"


def test_a_first_approvals_edits_are_shown_as_the_rest_of_the_item() -> None:
    """Four eyes: the second reviewer sees what the first changed, each value as its field
    would be shown: a revealed one as typed, a personal or undeclared one withheld, any other
    through the detectors."""
    escalation = Escalation(revealed_fields=["employee"])
    escalation.proposed_decision.fields.extend([
        FieldExtraction(name="amount", value="210.00",
                        data_class=ProtoDataClass.DATA_CLASS_DERIVED),
        FieldExtraction(name="employee", value="Dana Four",
                        data_class=ProtoDataClass.DATA_CLASS_PERSONAL),
        FieldExtraction(name="bank_account", value="",
                        data_class=ProtoDataClass.DATA_CLASS_PERSONAL)])
    shown = redact_edits({"amount": "2100.00", "employee": "Dana Five", "bank_account": IBAN,
                          "note": "call jane.roe@example.org"}, escalation, Redactor())
    assert shown == {"amount": "2100.00", "employee": "Dana Five",
                     "bank_account": "[BANK_ACCOUNT REDACTED]", "note": "[NOTE REDACTED]"}
