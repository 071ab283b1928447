"""A pack's decision table as the engine runs it: hit policies, review routing, failures."""

from __future__ import annotations

from typing import Any

from services.decision.engine import table_outcome, with_edits
from services.decision.policy import Policy
from switchyard.packs import (
    ExtractedField,
    Extraction,
    Pack,
    extract_fields,
    load_pack_files,
    resolve_parameters,
)

PACK = """\
pack: claims
version: 1.0.0
description: a table to test the engine with
fields:
  amount: {type: money, data_class: derived, labels: [Amount]}
  note: {type: string, labels: [Note]}
parameters:
  limit: {type: number, default: 100}
decision:
  hit_policy: HIT
  rules:
    - name: too_large
      when: fields.amount != null && fields.amount > params.limit
      outcome: escalate
      reason: POLICY
      explain: "${fields.amount} is above ${params.limit}"
      review: {queue: finance, group: managers, priority: urgent, sla: 30m, four_eyes: true}
    - name: forbidden_note
      when: fields.note != null && fields.note.contains('fraud')
      outcome: reject
      explain: "The note says fraud"
    - name: note_is_long
      when: fields.note != null && fields.amount * 2.0 > 1000.0
      outcome: escalate
    - name: small
      when: fields.amount != null && fields.amount <= params.limit
      outcome: auto_execute
review: {queue: default, priority: normal, sla: 8h}
plan:
  - {name: book, target: "http://erp/claims"}
"""


def pack(hit: str) -> Pack:
    return load_pack_files({"pack.yaml": PACK.replace("HIT", hit).encode()})


def context(p: Pack, amount: float | None, note: str | None = None) -> dict[str, Any]:
    return {"fields": {"amount": amount, "note": note}, "metadata": {},
            "task": {"task_id": "t", "tenant_id": "acme", "kind": "claims"},
            "params": resolve_parameters(p, {}), "route": {"label": "claims", "confidence": 0.9},
            "scores": {}, "extraction": {"confidence": 1.0, "issues": []}, "history": {}}


TENANT = Policy(review_queue="acme-review")


def test_first_hit_decides_with_the_rules_review_routing() -> None:
    p = pack("first")
    out = table_outcome(p, context(p, 250.0, "fraud"), TENANT, bucket=2)
    assert (out.action, out.rule, out.escalation_reason) == ("escalate", "too_large", "POLICY")
    assert out.explanation == "250 is above 100"
    assert (out.queue, out.reviewer_group, out.four_eyes, out.review_sla_s) == (
        "finance", "managers", True, 1800.0)
    assert out.priority == 0  # urgent beats the task's normal
    small = table_outcome(p, context(p, 20.0), TENANT)
    assert (small.action, small.rule) == ("auto_execute", "small")


def test_collect_lets_the_most_severe_outcome_win_and_explains_every_match() -> None:
    p = pack("collect")
    out = table_outcome(p, context(p, 250.0, "fraud"), TENANT)
    assert (out.action, out.rule) == ("reject", "forbidden_note")
    assert "Also matched: too_large (escalate)" in out.explanation


def test_no_match_escalates_to_the_tenants_queue() -> None:
    p = pack("first")
    out = table_outcome(p, context(p, None), TENANT)
    assert (out.action, out.rule, out.escalation_reason) == (
        "escalate", "no_rule_matched", "POLICY")
    assert out.queue == "acme-review"  # the pack names no queue of its own


def test_a_rule_failing_at_run_time_sends_the_document_to_a_person() -> None:
    """``amount * 2.0`` with no amount (null): CEL refuses it at run time."""
    p = pack("first")
    out = table_outcome(p, context(p, None, "a note"), TENANT)
    assert (out.action, out.rule, out.escalation_reason) == ("escalate", "note_is_long", "OTHER")
    assert "could not be evaluated" in out.explanation


def test_a_reviewers_edits_replace_what_was_read_normalised_as_their_type() -> None:
    p = pack("first")
    read = extract_fields(p, "Amount: 80.00\nNote: lunch")
    assert read.fields["amount"].value == "80.00"
    edited = with_edits(read, {"amount": " 2,500 ", "note": ""}, p)
    assert edited.fields["amount"] == ExtractedField("2500.00", 1.0)
    assert "note" not in edited.fields   # an empty edit clears the field
    assert read.fields["note"].value == "lunch"   # the extractor's result is not changed
    assert edited.confidence == read.confidence
    # a value that does not read as its type, or an undeclared field, is kept as typed
    assert with_edits(read, {"amount": "n/a"}, p).fields["amount"].value == "n/a"
    plain = with_edits(Extraction(fields={}, confidence=0.5), {"x": "1"}, p)
    assert plain.fields == {"x": ExtractedField("1", 1.0)}
