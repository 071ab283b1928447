"""Health data and revealed fields: a pack declares ``data_class: health`` and
``review.reveal``; every decision of the pack carries the revealed fields; a reviewer sees a
personal or health field only when the item reveals it, never a withheld value in the
document text, the metadata, the explanation, the discrepancies or the layout's words."""

from __future__ import annotations

import pytest

from services.decision.engine import to_decision
from services.decision.packs import ActivePack
from services.decision.policy import Outcome, Policy
from services.review.verdicts import verdict_decision
from switchyard.packs import PackError, load_pack_files
from switchyard.privacy import (
    DataClass,
    Redactor,
    field_class,
    page_redactions,
    redact_escalation,
    withheld_values,
)
from switchyard.v1 import (
    BoundingBox,
    DataClass as ProtoDataClass,
    Decision,
    Document,
    DocumentLayout,
    Escalation,
    FieldExtraction,
    LayoutPage,
    LayoutWord,
    Provenance,
    ReviewVerdict,
    TaskEnvelope,
    Verdict,
)

PACK = """\
pack: ward_intake
version: 1.0.0
description: a pack with health fields
fields:
  patient_name: {type: string, data_class: personal, labels: [Patient]}
  member_id: {type: string, data_class: personal, labels: [Member]}
  diagnosis: {type: string, data_class: health, labels: [Diagnosis]}
  ward: {type: string, data_class: derived, labels: [Ward]}
decision:
  rules:
    - {name: always, when: "true", outcome: escalate, reason: POLICY}
review: {queue: wards, reveal: REVEAL}
plan:
  - {name: book, target: "http://erp/wards"}
"""

DIAGNOSIS = "Type 2 diabetes mellitus"
NAME = "Maria Lopez"


def load(reveal: str = "[patient_name]", extra: str = ""):
    return load_pack_files({"pack.yaml": (PACK.replace("REVEAL", reveal) + extra).encode()})


def test_health_is_its_own_class_withheld_like_personal() -> None:
    assert field_class("diagnosis", ProtoDataClass.DATA_CLASS_HEALTH) is DataClass.HEALTH
    pack = load()
    assert pack.fields["diagnosis"].data_class == "health"
    assert pack.review.reveal == ("patient_name",)


def test_reveal_must_name_declared_fields_and_belongs_to_the_pack_review() -> None:
    with pytest.raises(PackError) as caught:
        load("[patient_name, blood_type]")
    assert any("review.reveal[1]" in p and "not a declared field" in p
               for p in caught.value.problems), caught.value.problems
    with pytest.raises(PackError):  # a rule's review has no reveal (the schema refuses it)
        load_pack_files({"pack.yaml": PACK.replace("REVEAL", "[]").replace(
            "reason: POLICY}", "reason: POLICY, review: {reveal: [diagnosis]}}").encode()})
    with pytest.raises(PackError):
        load_pack_files({"pack.yaml": PACK.replace("REVEAL", "[]").replace(
            "data_class: health", "data_class: medical").encode()})


def test_every_decision_of_the_pack_carries_its_revealed_fields() -> None:
    pack = load("[patient_name, member_id]")
    task = TaskEnvelope(task_id="t", tenant_id="acme", kind="ward_intake")
    for action in ("escalate", "auto_execute", "reject"):
        outcome = Outcome(action, "always", "x", 0.9, "ward_intake", "POLICY")
        decision = to_decision(task, outcome, None, Policy(),
                               active=ActivePack(pack, pack.defaults))
        assert list(decision.revealed_fields) == ["patient_name", "member_id"], action
    # a decision without a pack (the router rejected the type) reveals nothing
    outcome = Outcome("escalate", "other", "x", 0.9, "other", "POLICY")
    assert list(to_decision(task, outcome, None, Policy()).revealed_fields) == []


def escalation(revealed: tuple[str, ...] = ()) -> Escalation:
    body = (f"Patient: {NAME}\nDate of birth: 14/03/1962\nMember: XJH-4471\n"
            f"Diagnosis: {DIAGNOSIS.upper()}\nWard: medical\nNotes: known {DIAGNOSIS}, "
            f"born March 14, 1962").encode()
    esc = Escalation(
        task_id="t", tenant_id="acme", revealed_fields=list(revealed),
        reason_detail=f"Check {NAME}", instructions=f"Confirm {DIAGNOSIS} is covered",
        task=TaskEnvelope(task_id="t", tenant_id="acme",
                          document=Document(content_type="text/plain", body=body),
                          metadata={"referral": f"GP letter: {DIAGNOSIS}"}))
    proposal = esc.proposed_decision
    proposal.fields.extend([
        FieldExtraction(name="patient_name", value=NAME,
                        data_class=ProtoDataClass.DATA_CLASS_PERSONAL),
        FieldExtraction(name="date_of_birth", value="1962-03-14", type="date",
                        data_class=ProtoDataClass.DATA_CLASS_PERSONAL),
        FieldExtraction(name="member_id", value="XJH-4471",
                        data_class=ProtoDataClass.DATA_CLASS_PERSONAL),
        FieldExtraction(name="diagnosis", value=DIAGNOSIS,
                        data_class=ProtoDataClass.DATA_CLASS_HEALTH),
        FieldExtraction(name="ward", value="medical",
                        data_class=ProtoDataClass.DATA_CLASS_DERIVED)])
    proposal.extracted_fields.update({f.name: f.value for f in proposal.fields})
    proposal.explanation = f"Escalated: {DIAGNOSIS}"
    step = proposal.plan.steps.add(step_id="1-book")
    step.payload.update({"fields": {"diagnosis": DIAGNOSIS, "ward": "medical"},
                         "note": f"for {NAME}"})
    esc.discrepancies.add(field="date_of_birth", submitted="1962-03-14", found="1962-04-03",
                          source="payer", note="date of birth differs")
    esc.discrepancies.add(field="member_id", submitted="XJH-4471", found="",
                          source="payer", note=f"no member {NAME} on file")
    esc.discrepancies.add(field="coverage_status", submitted="active", found="inactive",
                          source="payer", note="coverage ended 2026-01-31")
    esc.discrepancies.add(field="diagnosis", submitted=DIAGNOSIS, found="",
                          source="payer", note="not covered")
    return esc


def test_a_reviewer_never_reads_a_withheld_health_or_personal_value() -> None:
    shown = redact_escalation(escalation(), Redactor())
    text = str(shown)
    for secret in (DIAGNOSIS, DIAGNOSIS.upper(), NAME, "XJH-4471", "14/03/1962",
                   "March 14, 1962", "1962-03-14", "1962-04-03"):
        assert secret not in text, secret
    body = shown.task.document.body.decode()
    assert "Diagnosis: [DIAGNOSIS REDACTED]" in body
    assert "Patient: [PATIENT_NAME REDACTED]" in body
    assert "Date of birth: [DATE_OF_BIRTH REDACTED]" in body
    assert "born [DATE_OF_BIRTH REDACTED]" in body and "Ward: medical" in body
    assert shown.task.metadata["referral"] == "GP letter: [DIAGNOSIS REDACTED]"
    assert shown.instructions == "Confirm [DIAGNOSIS REDACTED] is covered"
    assert shown.proposed_decision.explanation == "Escalated: [DIAGNOSIS REDACTED]"
    fields = {f.name: f.value for f in shown.proposed_decision.fields}
    assert fields == {"patient_name": "[PATIENT_NAME REDACTED]",
                      "date_of_birth": "[DATE_OF_BIRTH REDACTED]",
                      "member_id": "[MEMBER_ID REDACTED]",
                      "diagnosis": "[DIAGNOSIS REDACTED]", "ward": "medical"}
    by_field = {d.field: d for d in shown.discrepancies}
    assert (by_field["date_of_birth"].submitted, by_field["date_of_birth"].found) == (
        "[DATE_OF_BIRTH REDACTED]", "[DATE_OF_BIRTH REDACTED]")
    assert (by_field["member_id"].submitted, by_field["member_id"].found) == (
        "[MEMBER_ID REDACTED]", "")
    assert by_field["member_id"].note == "no member [PATIENT_NAME REDACTED] on file"
    # what the other system says about itself is no document value: shown
    assert (by_field["coverage_status"].submitted, by_field["coverage_status"].found,
            by_field["coverage_status"].note) == ("active", "inactive",
                                                  "coverage ended 2026-01-31")
    assert by_field["diagnosis"].submitted == "[DIAGNOSIS REDACTED]"
    payload = shown.proposed_decision.plan.steps[0].payload
    assert payload["fields"]["diagnosis"] == "[DIAGNOSIS REDACTED]"
    assert payload["note"] == "for [PATIENT_NAME REDACTED]"


def test_revealed_fields_are_shown_as_read_and_only_they() -> None:
    shown = redact_escalation(escalation(("patient_name", "member_id", "date_of_birth")),
                              Redactor())
    fields = {f.name: f.value for f in shown.proposed_decision.fields}
    assert fields["patient_name"] == NAME and fields["member_id"] == "XJH-4471"
    assert fields["diagnosis"] == "[DIAGNOSIS REDACTED]"
    body = shown.task.document.body.decode()
    assert f"Patient: {NAME}" in body and "14/03/1962" in body
    assert DIAGNOSIS not in str(shown) and DIAGNOSIS.upper() not in str(shown)
    by_field = {d.field: d for d in shown.discrepancies}
    assert (by_field["date_of_birth"].submitted, by_field["date_of_birth"].found) == (
        "1962-03-14", "1962-04-03")
    assert by_field["member_id"].submitted == "XJH-4471"
    assert by_field["diagnosis"].submitted == "[DIAGNOSIS REDACTED]"
    # revealing the diagnosis (an approval that checks it) shows it
    shown = redact_escalation(escalation(("diagnosis",)), Redactor())
    assert {f.name: f.value for f in shown.proposed_decision.fields}["diagnosis"] == DIAGNOSIS
    assert f"Diagnosis: {DIAGNOSIS.upper()}" in shown.task.document.body.decode()


def test_a_value_equal_to_a_revealed_one_stays_readable() -> None:
    esc = escalation(("patient_name",))
    esc.proposed_decision.fields.add(name="subscriber", value=NAME,
                                     data_class=ProtoDataClass.DATA_CLASS_PERSONAL)
    withheld = withheld_values(esc.proposed_decision, Redactor(), esc.revealed_fields)
    assert withheld.text(f"Subscriber {NAME}") == f"Subscriber {NAME}"
    assert withheld.text(f"Dx {DIAGNOSIS}") == "Dx [DIAGNOSIS REDACTED]"


def _word(text: str, x0: float, y0: float) -> LayoutWord:
    return LayoutWord(text=text, box=BoundingBox(x0=x0, y0=y0, x1=x0 + .08, y1=y0 + .02),
                      confidence=1.0)


def test_health_fields_are_masked_on_the_page_like_personal_ones() -> None:
    words = [_word("Diagnosis", .1, .1), _word("Asthma", .2, .1),
             _word("Ward", .1, .2), _word("medical", .2, .2),
             _word("History:", .1, .3), _word("asthma", .2, .3)]
    esc = Escalation(layout=DocumentLayout(pages=[LayoutPage(number=1, words=words)]))
    esc.proposed_decision.fields.extend([
        FieldExtraction(name="diagnosis", value="Asthma",
                        data_class=ProtoDataClass.DATA_CLASS_HEALTH,
                        provenance=Provenance(page=1, box=words[1].box,
                                              word_boxes=[words[1].box])),
        FieldExtraction(name="ward", value="medical",
                        data_class=ProtoDataClass.DATA_CLASS_DERIVED,
                        provenance=Provenance(page=1, box=words[3].box,
                                              word_boxes=[words[3].box]))])
    redactions = page_redactions(esc.layout, esc.proposed_decision, Redactor())
    # by its provenance (word 1) and where the value shows again (word 5); the ward stays
    assert redactions.words == {0: {1: "[DIAGNOSIS REDACTED]", 5: "[DIAGNOSIS REDACTED]"}}
    masked = redactions.boxes_on(1)
    for index in (1, 5):
        box = words[index].box
        assert any(m.x0 <= box.x0 and box.x1 <= m.x1 and m.y0 <= box.y0 and box.y1 <= m.y1
                   for m in masked)
    assert not any(m.y0 <= .21 <= m.y1 for m in masked)   # the ward's line is not masked
    shown = redact_escalation(esc, Redactor())
    assert "sthma" not in str(shown)
    esc.revealed_fields.append("diagnosis")
    assert page_redactions(esc.layout, esc.proposed_decision, Redactor()).words != {}
    assert page_redactions(esc.layout, esc.proposed_decision, Redactor(),
                           esc.revealed_fields).words == {}


def test_a_reviewers_decision_keeps_the_packs_revealed_fields() -> None:
    esc = escalation()
    esc.escalation_id = "e"
    esc.proposed_decision.revealed_fields.extend(["patient_name", "member_id"])
    for verdict in (Verdict.VERDICT_APPROVE, Verdict.VERDICT_REJECT, Verdict.VERDICT_MODIFY):
        decision = verdict_decision(esc, ReviewVerdict(item_id="i", task_id="t",
                                                       reviewer_id="r", verdict=verdict,
                                                       modified_fields={"ward": "icu"}
                                                       if verdict == Verdict.VERDICT_MODIFY
                                                       else {}))
        assert list(decision.revealed_fields) == ["patient_name", "member_id"]


def test_an_explanation_quoting_a_withheld_field_keeps_its_label() -> None:
    """The explanation is stored in plaintext and published on task-status: a rule template
    quoting a personal or health value leaves the label (derived values stay)."""
    from types import SimpleNamespace

    from services.decision.engine import Assessment

    pack = load()
    found = {"patient_name": NAME, "diagnosis": DIAGNOSIS, "ward": "medical"}
    extraction = SimpleNamespace(
        fields={k: SimpleNamespace(value=v, confidence=0.9) for k, v in found.items()},
        confidence=0.9)
    outcome = Outcome("escalate", "always", f"{NAME} admitted to medical for {DIAGNOSIS}",
                      0.9, "ward_intake", "POLICY")
    decision = to_decision(TaskEnvelope(task_id="t", tenant_id="acme"), outcome, None,
                           Policy(), Assessment(ActivePack(pack, pack.defaults), extraction,
                                                found))
    assert decision.explanation == \
        "[PATIENT_NAME REDACTED] admitted to medical for [DIAGNOSIS REDACTED]"


CLAIM = """\
pack: motor_claim
version: 1.0.0
description: a claim with a health answer
fields:
  claimant: {type: string, data_class: personal, labels: [Claimant]}
  injured: {type: enum, values: ["yes", "no"], data_class: health, labels: [Injured]}
  estimate: {type: money, data_class: derived, labels: [Estimate]}
decision:
  rules:
    - name: small
      when: "fields.estimate < 5000.0"
      outcome: escalate
      reason: POLICY
      explain: 'EXPLAIN'
review: {queue: claims}
plan:
  - {name: open, target: "http://claims/open"}
"""


@pytest.mark.parametrize("template, shown", [
    # the quotes are labels, the template's own words stay words (the word "no" of the
    # template used to be masked too, as the health field read "no")
    ("${fields.claimant} names no policy number; ${fields.injured} injuries, ${fields.estimate}",
     "[CLAIMANT REDACTED] names no policy number; [INJURED REDACTED] injuries, 640"),
    # a template computing on the withheld value cannot run on its label: rendered as read,
    # the values masked in it (here the enum's "no" as a word, as before)
    ('${fields.injured == "no" ? "no injuries" : "injuries"} for ${fields.claimant}',
     "[INJURED REDACTED] injuries for [CLAIMANT REDACTED]"),
])
def test_an_explanation_labels_the_withheld_fields_it_quotes_and_keeps_its_words(
        template: str, shown: str) -> None:
    from types import SimpleNamespace

    from services.decision.engine import Assessment, table_outcome

    pack = load_pack_files({"pack.yaml": CLAIM.replace("EXPLAIN", template).encode()})
    found = {"claimant": "Ann Lee", "injured": "no", "estimate": "640.00"}
    context = {"fields": {"claimant": "Ann Lee", "injured": "no", "estimate": 640.0},
               "params": dict(pack.defaults), "route": {"label": "motor_claim",
                                                       "confidence": 0.9},
               "scores": {}, "metadata": {}, "extraction": {"confidence": 0.9, "issues": []}}
    outcome = table_outcome(pack, context, Policy())
    extraction = SimpleNamespace(
        fields={k: SimpleNamespace(value=v, confidence=0.9) for k, v in found.items()},
        confidence=0.9)
    decision = to_decision(TaskEnvelope(task_id="t", tenant_id="acme"), outcome, None,
                           Policy(), Assessment(ActivePack(pack, pack.defaults), extraction,
                                                found))
    assert decision.explanation == shown
    # and as the reviewer sees it (the stored explanation searched again, in prose)
    esc = Escalation(task=TaskEnvelope(task_id="t", tenant_id="acme"))
    esc.proposed_decision.CopyFrom(decision)
    assert redact_escalation(esc, Redactor()).proposed_decision.explanation == shown


def test_a_logged_exception_keeps_its_type_and_frames_not_its_message() -> None:
    import json
    import logging

    from switchyard.telemetry import JsonFormatter, exception_outline

    def parse() -> int:
        return int(DIAGNOSIS)

    try:
        try:
            parse()
        except ValueError as exc:
            raise RuntimeError(f"could not read {NAME}") from exc
    except RuntimeError as exc:
        outline = exception_outline(exc)
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None,
                                   (type(exc), exc, exc.__traceback__))
        line = JsonFormatter("decision").format(record)
    assert DIAGNOSIS not in outline and NAME not in outline
    assert "ValueError (message withheld)" in outline and "in parse" in outline
    assert "RuntimeError (message withheld)" in outline
    entry = json.loads(line)
    assert entry["exc"] == outline and DIAGNOSIS not in line and NAME not in line


def test_a_date_of_birth_read_month_first_is_masked_in_every_notation() -> None:
    """A pack may read 03/07/1962 month first (its field's date_order): the document still
    shows that date as written, and it is masked as the same day."""
    esc = escalation(())
    del esc.proposed_decision.fields[:]
    esc.proposed_decision.fields.add(name="date_of_birth", value="1962-03-07", type="date",
                                     data_class=ProtoDataClass.DATA_CLASS_PERSONAL)
    withheld = withheld_values(esc.proposed_decision, Redactor(), ())
    assert withheld.text("DOB: 03/07/1962   Sex: F") == \
        "DOB: [DATE_OF_BIRTH REDACTED]   Sex: F"
    assert withheld.text("born 7 March 1962, 1962-03-07, 07.03.1962") == \
        "born [DATE_OF_BIRTH REDACTED], [DATE_OF_BIRTH REDACTED], [DATE_OF_BIRTH REDACTED]"
    assert withheld.text("seen 04/07/1962") == "seen 04/07/1962"


SEXED = """\
pack: clinic_intake
version: 1.0.0
description: a pack that withholds an enum its documents write by alias
fields:
  patient_name: {type: string, data_class: personal, labels: [Patient]}
  sex: {type: enum, values: [female, male], aliases: {F: female, M: male},
        data_class: personal, labels: [Sex]}
  pregnant: {type: boolean, data_class: health, labels: [Pregnant]}
decision:
  rules:
    - {name: always, when: "true", outcome: escalate, reason: POLICY}
review: {queue: clinic, reveal: [patient_name]}
plan:
  - {name: book, target: "http://erp/clinic"}
"""


def test_a_withheld_value_written_by_alias_is_masked_after_its_label() -> None:
    """An enum the text writes ``F`` (read ``female``) and a boolean written ``Y`` (read
    ``true``), both withheld from the item's reviewers: the extractor keeps how the text wrote
    them after which label, and the reviewer's copy of the text masks them there (a JSON
    document's too), while the same letters elsewhere (``Block F``) stay."""
    from services.decision.engine import Assessment
    from switchyard.packs import extract_fields

    pack = load_pack_files({"pack.yaml": SEXED.encode()})
    texts = {"text/plain": "Patient: Ana Ruiz\nSex: F\nPregnant: Y\nWard: Block F, bed Y2\n",
             "application/json": '{"patient": "Ana Ruiz", "sex": "F", "pregnant": "Y", '
                                 '"ward": "Block F"}'}
    for content_type, text in texts.items():
        extraction = extract_fields(pack, text)
        assert extraction.fields["sex"].value == "female"
        assert extraction.fields["sex"].written == ("Sex" if content_type == "text/plain"
                                                    else "sex", "F")
        outcome = Outcome("escalate", "always", "x", 0.9, "clinic_intake", "POLICY")
        task = TaskEnvelope(task_id="t", tenant_id="acme", kind="clinic_intake",
                            document=Document(content_type=content_type, body=text.encode()))
        decision = to_decision(task, outcome, None, Policy(), Assessment(
            ActivePack(pack, pack.defaults), extraction, extraction.values))
        fields = {f.name: f for f in decision.fields}
        assert (fields["sex"].written.label, fields["sex"].written.value) == \
            (extraction.fields["sex"].written[0], "F")
        esc = Escalation(task_id="t", tenant_id="acme", task=task,
                         revealed_fields=list(decision.revealed_fields))
        esc.proposed_decision.CopyFrom(decision)
        shown = redact_escalation(esc, Redactor())
        body = shown.task.document.body.decode()
        assert "[SEX REDACTED]" in body and "[PREGNANT REDACTED]" in body, body
        assert "Block F" in body and "Ana Ruiz" in body, body
        shown_fields = {f.name: f for f in shown.proposed_decision.fields}
        assert shown_fields["sex"].value == "[SEX REDACTED]"
        assert not shown_fields["sex"].HasField("written")  # gone with the value
    # revealed, the written value stays in the text and on the field
    revealed = load_pack_files({"pack.yaml": SEXED.replace(
        "reveal: [patient_name]", "reveal: [patient_name, sex]").encode()})
    extraction = extract_fields(revealed, texts["text/plain"])
    esc = Escalation(task_id="t", tenant_id="acme", revealed_fields=["patient_name", "sex"],
                     task=TaskEnvelope(task_id="t", tenant_id="acme", document=Document(
                         content_type="text/plain", body=texts["text/plain"].encode())))
    esc.proposed_decision.CopyFrom(to_decision(
        esc.task, Outcome("escalate", "always", "x", 0.9, "clinic_intake", "POLICY"), None,
        Policy(), Assessment(ActivePack(revealed, revealed.defaults), extraction,
                             extraction.values)))
    shown = redact_escalation(esc, Redactor())
    assert "Sex: F" in shown.task.document.body.decode()
    assert {f.name: f.written.value for f in shown.proposed_decision.fields
            if f.HasField("written")}["sex"] == "F"


def decided(pack, text: str) -> tuple[Decision, Escalation]:
    """``text`` decided with ``pack`` (its one rule escalates) by the engine's own code, as
    the decision service builds the decision, and the escalation a reviewer gets of it."""
    from services.decision.engine import Assessment
    from switchyard.packs import extract_fields

    extraction = extract_fields(pack, text)
    task = TaskEnvelope(task_id="t", tenant_id="acme", kind=pack.name,
                        document=Document(content_type="text/plain", body=text.encode()))
    decision = to_decision(task, Outcome("escalate", "always", "x", 0.9, pack.name, "POLICY"),
                           None, Policy(), Assessment(ActivePack(pack, pack.defaults),
                                                      extraction, extraction.values))
    esc = Escalation(task_id="t", tenant_id="acme", task=task,
                     revealed_fields=list(decision.revealed_fields))
    esc.proposed_decision.CopyFrom(decision)
    return decision, redact_escalation(esc, Redactor())


#: A pack that reads an HL7 v2 admit message by field position and shows reviewers only the
#: patient's name
POSITIONAL = """\
pack: adt_intake
version: 1.0.0
description: a pack that reads HL7 v2 admit messages by position
fields:
  patient_name: {type: string, data_class: personal, labels: [PID-5]}
  date_of_birth: {type: date, data_class: personal, labels: [PID-7]}
  sex: {type: enum, values: [female, male], aliases: {F: female, M: male},
        data_class: personal, labels: [PID-8]}
  mrn: {type: string, data_class: personal, labels: [PID-3.1]}
  next_of_kin: {type: string, data_class: personal, labels: [NK1-2]}
  diagnosis: {type: string, data_class: health, labels: [DG1-3]}
  subscriber: {type: string, data_class: personal, labels: [IN1-16]}
  unit: {type: string, data_class: derived, labels: [PV1-3.1]}
decision:
  rules:
    - {name: always, when: "true", outcome: escalate, reason: POLICY}
review: {queue: wards, reveal: [patient_name]}
plan:
  - {name: book, target: "http://erp/wards"}
"""

#: An admit message whose withheld values the message writes otherwise than they are read:
#: a coded diagnosis and names with HL7's component separators, a birth date with its time,
#: the sex as a code, an escaped apostrophe; the subscriber is also the guarantor (GT1)
ADMIT = "\r".join([
    "MSH|^~\\&|ADT1|GOOD HEALTH|EHR|GOOD HEALTH|202611051230||ADT^A01^ADT_A01|MSG1|P|2.5",
    "PID|1||MRN-5512^^^GH^MR~998-12-3456^^^SSA^SS||O\\S\\Brien^Nuala^K||197403150000|F",
    "NK1|1|Brennan^Cathal^J|BRO",
    "PV1|1|I|3W^301^A|E",
    "DG1|1||E11.9^Type 2 diabetes mellitus without complications^I10||20261105|A",
    "GT1|1||Walsh^Eimear",
    "IN1|1|PLAN7|INS01|Vhi Healthcare" + "|" * 12 + "Walsh^Eimear",
]) + "\r"


def test_withheld_fields_of_an_hl7_message_are_masked_at_their_positions() -> None:
    """Fields a pack reads by HL7 position and withholds are masked where the message writes
    them (the field as written, found by its position: none of these values is written the
    way it is read), a withheld value written again in another segment is masked there, and
    each with the whole field it lies in (a coded diagnosis's code with its description);
    the revealed name, the derived unit and the message's structure stay."""
    from switchyard.packs import extract_fields

    pack = load_pack_files({"pack.yaml": POSITIONAL.encode()})
    extraction = extract_fields(pack, ADMIT)
    assert {name: f.value for name, f in extraction.fields.items()} == {
        "patient_name": "O^Brien Nuala K", "date_of_birth": "1974-03-15", "sex": "female",
        "mrn": "MRN-5512", "next_of_kin": "Brennan Cathal J",
        "diagnosis": "E11.9 Type 2 diabetes mellitus without complications I10",
        "subscriber": "Walsh Eimear", "unit": "3W"}
    assert extraction.fields["diagnosis"].written == (
        "DG1-3", "E11.9^Type 2 diabetes mellitus without complications^I10")
    decision, shown = decided(pack, ADMIT)
    body = shown.task.document.body.decode()
    segments = dict((s[:3], s) for s in body.split("\r") if s)
    # a withheld value's whole field: the MRN's with its other identifiers
    assert segments["PID"] == ("PID|1||[MRN REDACTED]||O\\S\\Brien^Nuala^K||"
                               "[DATE_OF_BIRTH REDACTED]|[SEX REDACTED]")
    assert segments["NK1"] == "NK1|1|[NEXT_OF_KIN REDACTED]|BRO"
    assert segments["DG1"] == "DG1|1||[DIAGNOSIS REDACTED]||20261105|A"
    assert segments["GT1"] == "GT1|1||[SUBSCRIBER REDACTED]"   # written again, elsewhere
    assert segments["IN1"].endswith("|[SUBSCRIBER REDACTED]")
    assert segments["PV1"] == "PV1|1|I|3W^301^A|E" and segments["MSH"] == ADMIT.split("\r")[0]
    for hidden in ("Brennan", "diabetes", "E11.9", "Walsh", "19740315", "MRN-5512"):
        assert hidden not in body, hidden
    # the description read from a coded field alone: the code beside it goes with it
    coded = ADMIT.replace("|E11.9^Type 2 diabetes mellitus without complications^I10|",
                          "|E11.9^Type 2 diabetes mellitus^I10|Type 2 diabetes mellitus|")
    described = load_pack_files({"pack.yaml": POSITIONAL.replace("[DG1-3]", "[DG1-4]").encode()})
    assert decided(described, coded)[1].task.document.body.decode().split("\r")[4] == \
        "DG1|1||[DIAGNOSIS REDACTED]|[DIAGNOSIS REDACTED]||20261105|A"
    # revealed, a field stays as the message writes it
    revealed = withheld_values(decision, Redactor(), revealed={"patient_name", "sex"})
    assert "|F\r" in revealed.text(ADMIT) and "O\\S\\Brien^Nuala^K" in revealed.text(ADMIT)


def test_a_withheld_value_that_does_not_parse_is_masked_after_its_label() -> None:
    """What follows a withheld field's label is the field's data even when it does not parse
    as the field's type (a boolean answered in words, an enum value the pack does not list):
    the field stays empty, and the reviewer's copy of the text masks it after its label
    (an outside integrator's claims pack showed ``Injuries: not sure yet, passenger
    complained of back pain`` in clear)."""
    from switchyard.packs import extract_fields

    pack = load_pack_files({"pack.yaml": SEXED.encode()})
    text = ("Patient: Ana Ruiz\nSex: prefers not to say\n"
            "Pregnant: not sure yet, complained of back pain\nWard: Block F\n")
    extraction = extract_fields(pack, text)
    assert "sex" not in extraction.fields and "pregnant" not in extraction.fields
    assert extraction.unread == {
        "sex": ("Sex", "prefers not to say"),
        "pregnant": ("Pregnant", "not sure yet, complained of back pain")}
    decision, shown = decided(pack, text)
    fields = {f.name: f for f in decision.fields}
    assert fields["pregnant"].value == "" and fields["pregnant"].written.label == "Pregnant"
    assert shown.task.document.body.decode() == (
        "Patient: Ana Ruiz\nSex: [SEX REDACTED]\nPregnant: [PREGNANT REDACTED]\n"
        "Ward: Block F\n")
    assert not any(f.HasField("written") for f in shown.proposed_decision.fields
                   if f.name in ("sex", "pregnant"))


#: A nurse's hand-over written as prose (by an outside reviewer trying the console): its
#: labels stand inside sentences, where the labels extractor reads nothing
HANDOVER = (
    "Hi team, quick one before I go off shift. Pt is Margaret Thornbury, born 02/27/1939, "
    "female,\nour MR # SB-0091177. Came through ED this afternoon, Dr Sato accepting. Dx: "
    "fractured\nneck of femur (left), for theatre tomorrow. She's allergic to morphine.\n"
    "Consent on file: yes.\nCheers, Jo\n")


def test_a_withheld_field_labelled_inside_a_sentence_is_masked_to_the_sentences_end() -> None:
    """A health field's label inside prose (``... accepting. Dx: fractured neck of femur
    (left), for theatre tomorrow.``) is not read, but what follows it to the sentence's end
    is masked for intake reviewers; words with no label (``allergic to morphine``) cannot be
    found, as docs/admissions.md says."""
    from switchyard.packs import builtin_packs

    pack = builtin_packs()["hospital_admission"]
    _, shown = decided(pack, HANDOVER)
    body = shown.task.document.body.decode()
    assert "accepting. Dx: [DIAGNOSIS REDACTED]. She's allergic" in body, body
    assert "femur" not in body and "theatre" not in body
    assert "Consent on file: yes." in body   # derived: shown
