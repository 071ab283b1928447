"""The decision service as a real process, through the real broker, PostgreSQL and Triton.

- ``Decide`` applies per-tenant YAML policies and the invoice pack with the tenants'
  parameters: a table of cases (routing rules, the invoice pack's rules, the invoice_risk
  model) gives the expected outcome and rule, and the decision names the pack and version;
- the router reaches its model card's held-out accuracy through the service's batcher;
- ``DecideBatch`` decides each task as ``Decide`` does, its documents sharing Triton
  requests, and refuses a bad task on its own;
- the Kafka path stores decisions with extracted fields, records each invoice for duplicate
  checks without teaching the vendor history (nothing confirmed it), records the
  shadow model's outputs and agreement, and exposes the model metrics (confidence histograms,
  batch sizes, input drift);
- a policy directory with mistakes stops the service at start with errors naming them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from switchyard_packs.invoice.extraction import vendor_key
from switchyard import Settings
from switchyard.privacy import matching_hash, matching_key
from switchyard.rpc import create_channel, field_violations
from switchyard.runtime import bootstrap, service_specs
from switchyard.stack import EmbeddedStack, free_port
from switchyard.storage import PLAINTEXT, connect, create_pool
from switchyard.v1 import (
    DataClass,
    DecideBatchRequest,
    Decision,
    DecideRequest,
    DecisionOutcome,
    DecisionServiceStub,
    DecisionSource,
    Document,
    GetModelHealthRequest,
    GetModelHealthResponse,
    GetTaskRequest,
    IngestServiceStub,
    ReconsiderEditsRequest,
    Submission,
    SubmitTaskRequest,
    TaskEnvelope,
    TaskStatus,
)
from services.decision.labels import record_pending, record_verdicts
from services.decision.shadow import shadow_sampled
from tests.decision.documents import MODEL_REPOSITORY, heldout, invoice, pdf, png, sample
from tests.observed import metric_sum
from tests.polling import eventually
from tests.services import running
from tests.security import test_fuzz_ingest_validation as fuzz

pytestmark = pytest.mark.integration

POLICIES = {  # the invoice pack's parameters, set through the policy files' packs key
    "acme.yaml": """
        packs:
          invoice:
            parameters:
              max_auto_amount: 10000
              allowed_currencies: [USD, EUR, GBP]
              vendors_block: [Shady Parts Ltd]
    """,
    "strict.yaml": """
        reject_labels: [other, support_ticket]
        label_thresholds: {admission_form: 0.999}
        packs:
          invoice:
            parameters:
              vendors_allow: [Northwind Supplies Ltd]
              require_allow_list: true
    """,
}
RECEIVED = {"received_date": "2026-11-22"}
DRIFT_EVERY = 10


@pytest.fixture(scope="module")
def decision_settings(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    policy_dir = tmp_path_factory.mktemp("policies")
    for name, text in POLICIES.items():
        (policy_dir / name).write_text(text)
    # drift gauges after every 10 model inputs, so the Kafka test's 43 tasks must show them
    # the live-accuracy gauges refreshed every second, so their test need not wait a minute
    return settings.replace(policy_dir=str(policy_dir), drift_publish_every=DRIFT_EVERY,
                            model_evaluation_refresh_s=1.0)


@pytest.fixture(scope="module")
def services(decision_settings: Settings, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[EmbeddedStack]:
    with running(decision_settings, tmp_path_factory.mktemp("decision"), ("ingest", "decision")) as stack:
        yield stack


@pytest.fixture
async def db(decision_settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    conn = await connect(decision_settings)
    yield conn
    await conn.close()


@pytest.fixture
async def decide(decision_settings: Settings, services: EmbeddedStack
                 ) -> AsyncIterator[DecisionServiceStub]:
    channel = create_channel(f"127.0.0.1:{decision_settings.decision_grpc_port}")
    yield DecisionServiceStub(channel)
    await channel.close()


def task(text: str, tenant: str = "acme", kind: str = "",
         metadata: dict[str, str] | None = None) -> TaskEnvelope:
    return TaskEnvelope(task_id=str(uuid.uuid4()), tenant_id=tenant, kind=kind,
                        metadata=metadata or {},
                        document=Document(content_type="text/plain", body=text.encode()))


def hashed(settings: Settings, tenant: str, kind: str, value: str) -> str:
    """How the vendor history stores a value it only compares (a keyed hash)."""
    return matching_hash(matching_key(settings), tenant, kind, value)


async def seed_vendor(db: asyncpg.Connection, settings: Settings, tenant: str, name: str,
                      count: int, mean: float, currency: str = "USD",
                      bank: str = "GB29NWBK60161331926819") -> None:
    """A vendor summary as confirmed invoices leave it (the Decide table needs many)."""
    await db.execute(
        "INSERT INTO decision_vendors (tenant_id, vendor_hash, currency, invoice_count, "
        "amount_sum, bank_hash) VALUES ($1,$2,$3,$4,$5,$6) ON CONFLICT DO NOTHING", tenant,
        hashed(settings, tenant, "vendor", vendor_key(name)), currency, count, count * mean,
        hashed(settings, tenant, "bank_account", bank))


INVOICE_CASES = {
    # id: (tenant, document, kind, expected outcome, expected rule)
    "known vendor goes straight through": (
        "acme", invoice(), "invoice", "AUTO_EXECUTE", "straight_through_invoice"),
    "seen invoice number is a possible duplicate": (
        "acme", invoice(number="INV-2026-00007"), "invoice", "ESCALATE", "duplicate_invoice"),
    "above the tenant's amount limit": (
        "acme", invoice(items=(("Server rack installation", 1, 9000.0),)), "invoice",
        "ESCALATE", "amount_over_limit"),
    "blocked vendor is refused": (
        "acme", invoice(vendor="Shady Parts Ltd"), "invoice", "REJECT", "vendor_blocked"),
    "currency the tenant does not pay automatically": (
        "acme", invoice(currency="CHF"), "invoice", "ESCALATE", "currency_not_allowed"),
    "no invoice number": (
        "acme", invoice(number=""), "invoice", "ESCALATE", "missing_fields"),
    "unknown vendor, no PO, overdue: the risk model wants a person": (
        "acme", invoice(vendor="Zenith Legal GmbH", po=None, invoice_date="2026-09-01",
                        due_date="2026-10-01",
                        items=(("Legal advisory", 1, 4200.0),)),
        "invoice", "ESCALATE", "invoice_risk"),
    "vendor not on the allow list": (
        "strict", invoice(vendor="Kestrel Foods AG"), "invoice", "ESCALATE",
        "vendor_not_allowed"),
    "allow-listed vendor passes the list": (
        "strict", invoice(), "invoice", "AUTO_EXECUTE", "straight_through_invoice"),
}
TITLED_LETTER = ("Brightwater Studio\nINVOICE\nRef 2219\n"
                 "For the mural on the east wall, as agreed.\nAmount: 1,250.00 EUR\n")
ROUTING_CASES = {
    "confident route runs its plan": (
        "acme", sample("admission_form"), "", "AUTO_EXECUTE", "confident_route"),
    "router disagrees with the submitted kind": (
        "acme", sample("invoice", 2), "admission_form", "ESCALATE", "kind_mismatch"),
    "spam is out of scope": (
        "acme", "Cheap meds online, no prescription. Discreet shipping worldwide!!!", "",
        "REJECT", "out_of_scope"),
    "tenant refuses support tickets": (
        "strict", sample("support_ticket"), "", "REJECT", "out_of_scope"),
    "tenant's per-label threshold": (
        "strict", sample("admission_form"), "", "ESCALATE", "low_confidence"),
    # an invoice's words under a packing list's title: the router is sure, a person confirms
    "a look-alike's title": (
        "acme", invoice().replace("INVOICE", "PACKING LIST")
        .replace("Invoice No", "Packing List No").replace("Invoice Date", "Date"), "",
        "ESCALATE", "look_alike_title"),
    # a short letter the router is unsure of (0.66 invoice): its title confirms the guess and
    # the invoice pack decides; without the title a person is asked for the type
    "an unsure guess its title names": (
        "acme", TITLED_LETTER, "", "ESCALATE", "missing_fields"),
    "the same letter untitled": (
        "acme", TITLED_LETTER.replace("INVOICE\n", ""), "", "ESCALATE", "low_confidence"),
    # the router unsure that it is none of the packs' types (other, 0.59): the title names
    # the invoice pack, which reads no invoice's fields in it and asks a person
    "an unsure 'other' its title names": (
        "acme", "INVOICE\nMeeting notes: we agreed to move the offsite to June.\n", "",
        "ESCALATE", "missing_fields"),
}


async def test_policy_outcomes_match_the_table(decide: DecisionServiceStub,
                                               decision_settings: Settings,
                                               db: asyncpg.Connection) -> None:
    for tenant in ("acme", "strict"):
        await seed_vendor(db, decision_settings, tenant, "Northwind Supplies Ltd", 24, 380.0)
    await db.execute(
        "INSERT INTO decision_invoices (task_id, tenant_id, vendor_hash, number_hash, bank_hash,"
        " amount, currency, p_auto, auto) VALUES ($1, 'acme', $2, $3, '', 360, 'USD', 0.9, "
        "true) "
        "ON CONFLICT DO NOTHING", uuid.uuid4(),
        hashed(decision_settings, "acme", "vendor", vendor_key("Northwind Supplies Ltd")),
        hashed(decision_settings, "acme", "invoice_number", "INV-2026-00007"))
    cases = {**INVOICE_CASES, **ROUTING_CASES}
    responses = await asyncio.gather(*(
        decide.Decide(DecideRequest(task=task(text, tenant, kind, RECEIVED)))
        for tenant, text, kind, _, _ in cases.values()))
    got = {name: (DecisionOutcome.Name(r.decision.outcome).removeprefix("DECISION_OUTCOME_"),
                  r.decision.rule) for name, r in zip(cases, responses)}
    assert got == {name: (case[3], case[4]) for name, case in cases.items()}
    for name, response in zip(cases, responses):
        d = response.decision
        assert d.explanation and d.models[0].model_name == "document_router", name
        assert d.models[0].model_version == "1.0.0" and d.models[0].scores
    straight = responses[0].decision
    assert [m.model_name for m in straight.models] == ["document_router", "invoice_risk"]
    assert straight.models[1].model_version == "1.0.0" and straight.models[1].confidence >= 0.8
    fields = {f.name: f.value for f in straight.fields}
    assert {k: fields[k] for k in ("vendor", "invoice_number", "invoice_date", "due_date",
                                   "po_number", "currency", "total")} == {
        "vendor": "Northwind Supplies Ltd", "invoice_number": "INV-2026-00042",
        "invoice_date": "2026-11-20", "due_date": "2026-12-20", "po_number": "PO-55120",
        "currency": "USD", "total": "360.00"}
    assert all(0 < f.confidence <= 1 for f in straight.fields if f.value)
    # every declared field is listed with its type (one not found would travel empty)
    assert {f.name for f in straight.fields} == {
        "vendor", "invoice_number", "invoice_date", "due_date", "po_number", "currency",
        "subtotal", "tax", "total", "line_item_count", "bank_account", "extraction_confidence"}
    assert {f.name: f.type for f in straight.fields}["total"] == "money"
    assert dict(straight.extracted_fields)["total"] == "360.00"
    # the invoice pack decided, with acme's parameters; the plan's payload is a template
    # the executor renders from the decision's fields
    assert (straight.pack, straight.pack_version) == ("invoice", "1.6.0")
    assert (straight.plan.pack, straight.plan.parameters["max_auto_amount"]) == ("invoice", 10000)
    assert straight.plan.steps[0].payload["fields"] == "${fields}"
    assert {f.name: f.data_class for f in straight.fields}["vendor"] == \
        DataClass.DATA_CLASS_PERSONAL
    risky = responses[list(cases).index(
        "unknown vendor, no PO, overdue: the risk model wants a person")].decision
    assert "vendor not seen before" in risky.explanation and "no PO number" in risky.explanation


async def test_router_reaches_its_card_accuracy_through_decide(
        decide: DecisionServiceStub) -> None:
    card = json.loads((MODEL_REPOSITORY / "document_router" / "1" / "model_card.json")
                      .read_text())
    rows = heldout()
    assert len(rows) == card["split"]["test"]
    semaphore = asyncio.Semaphore(256)

    async def route(text: str) -> str:
        async with semaphore:
            response = await decide.Decide(DecideRequest(task=task(text, "acme")))
            return response.decision.models[0].label

    labels = await asyncio.gather(*(route(r["text"]) for r in rows))
    accuracy = sum(label == r["label"] for label, r in zip(labels, rows)) / len(rows)
    assert round(accuracy, 6) >= card["metrics"]["test"]["accuracy"]


def _router_batches(settings: Settings) -> tuple[float, float]:
    """(requests, documents) the router's micro-batcher has sent to Triton so far."""
    port, router = settings.decision_metrics_port, 'model="document_router"'
    return (metric_sum(port, "switchyard_batch_size_count", router),
            metric_sum(port, "switchyard_batch_size_sum", router))


@contextlib.asynccontextmanager
async def _decision_process(base: Settings, tmp_path_factory: pytest.TempPathFactory,
                            name: str, **changes: Any
                            ) -> AsyncIterator[tuple[Settings, DecisionServiceStub]]:
    """A decision process of its own, with ``changes`` to the module's settings (its own
    topics and ports), and a client of it."""
    own = base.replace(kafka_topic_prefix=f"{name}-{uuid.uuid4().hex[:6]}.",
                       decision_grpc_port=free_port(), decision_metrics_port=free_port(),
                       **changes)
    await bootstrap(own)
    process = EmbeddedStack(own, tmp_path_factory.mktemp(name), components=(),
                            services=service_specs(own, ("decision",)))
    await asyncio.to_thread(process.start, 90)
    channel = create_channel(f"127.0.0.1:{own.decision_grpc_port}")
    try:
        yield own, DecisionServiceStub(channel)
    finally:
        await channel.close()
        await asyncio.to_thread(process.stop)


async def test_decide_batch_answers_each_task_as_decide_does(
        decide: DecisionServiceStub, decision_settings: Settings) -> None:
    """DecideBatch decides each task as Decide would (outcome, rule, label, fields), in
    request order; its documents reach the router together (fewer Triton requests than
    documents); a task Decide would refuse is refused on its own, with its field violation
    and the other tasks decided; a call carries 1 to decide_batch_max_items tasks."""
    cases = {**INVOICE_CASES, **ROUTING_CASES}
    tasks = [task(text, tenant, kind, RECEIVED) for tenant, text, kind, _, _ in cases.values()]
    tasks += [task(row["text"], "acme") for row in heldout()[:40]]
    mislabelled = TaskEnvelope(task_id=str(uuid.uuid4()), tenant_id="acme", kind="invoice",
                               document=Document(content_type="application/pdf", body=png()))
    sent = [*tasks[:3], mislabelled, *tasks[3:], task("")]
    requests_before, documents_before = _router_batches(decision_settings)
    batch = await decide.DecideBatch(DecideBatchRequest(tasks=sent))
    requests_after, documents_after = _router_batches(decision_settings)

    assert len(batch.results) == len(sent)
    assert (batch.decided_count, batch.refused_count) == (len(tasks), 2)
    refused = {i: r.error for i, r in enumerate(batch.results) if r.HasField("error")}
    assert set(refused) == {3, len(sent) - 1}
    assert all(e.code == grpc.StatusCode.INVALID_ARGUMENT.value[0] for e in refused.values())
    assert refused[3].field_violations[0].field == "document.body"
    assert refused[3].field_violations[0].description.startswith("type_mismatch: ")
    assert [v.field for v in refused[len(sent) - 1].field_violations] == ["document.body"]
    # the same answers as one Decide call each
    singles = await asyncio.gather(*(decide.Decide(DecideRequest(task=t)) for t in tasks))
    batched = [r.decision for r in batch.results if r.HasField("decision")]
    for one, many, sent_task in zip(singles, batched, tasks):
        assert many.task_id == sent_task.task_id and many.tenant_id == sent_task.tenant_id
        assert (many.outcome, many.rule, many.label) == (
            one.decision.outcome, one.decision.rule, one.decision.label)
        assert many.confidence == pytest.approx(one.decision.confidence, abs=1e-6)
        assert {f.name: f.value for f in many.fields} == {
            f.name: f.value for f in one.decision.fields}
    # every document went to the router, and they shared requests
    assert documents_after - documents_before >= len(tasks)
    assert requests_after - requests_before < len(tasks)

    for size in (0, decision_settings.decide_batch_max_items + 1):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await decide.DecideBatch(DecideBatchRequest(tasks=[task("hello")] * size))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert set(field_violations(caught.value)) == {"tasks"}


@hyp_settings(max_examples=60, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(batch=st.lists(st.builds(
    lambda tenant, kind, content_type, body, metadata: TaskEnvelope(
        task_id=str(uuid.uuid4()), tenant_id=tenant, kind=kind, metadata=metadata,
        document=Document(content_type=content_type, body=body)),
    st.one_of(st.sampled_from(["acme", "", " acme "]), fuzz.texts),
    st.one_of(st.sampled_from(["", "invoice", "support_ticket"]), fuzz.texts),
    st.sampled_from(["", "text/plain", "application/json", "application/pdf", "image/png"]),
    fuzz.bodies, st.dictionaries(fuzz.texts, fuzz.texts, max_size=5)), min_size=1, max_size=6))
def test_decide_batch_answers_every_task_of_any_batch(
        batch: list[TaskEnvelope], decision_settings: Settings, services: EmbeddedStack) -> None:
    """Whatever a batch holds, every task gets exactly one answer, in order: a decision, or
    an error with a code Decide would answer (field violations naming the field when
    invalid); nothing fails the whole call."""
    with grpc.insecure_channel(f"127.0.0.1:{decision_settings.decision_grpc_port}") as channel:
        response = DecisionServiceStub(channel).DecideBatch(
            DecideBatchRequest(tasks=batch), timeout=60)
    assert len(response.results) == len(batch)
    assert response.decided_count + response.refused_count == len(batch)
    for sent, result in zip(batch, response.results):
        assert result.HasField("decision") != result.HasField("error")
        if result.HasField("decision"):
            assert result.decision.task_id == sent.task_id
        else:
            assert result.error.code in {3, 7, 8, 14}, result.error
            assert result.error.code != 3 or result.error.field_violations, result.error


async def test_a_reviewers_edits_are_decided_by_the_pack_as_if_read(
        decide: DecisionServiceStub, db: asyncpg.Connection) -> None:
    """ReconsiderEdits reads the document again, puts the edits in place of what was read and
    runs the pack (enrichers, scorer, table) on them: a vendor renamed to acme's blocked one
    is rejected, a total raised past acme's 10,000 limit escalates, the same fields unedited
    decide as before. Nothing is stored: the same call answers the same."""
    sent = task(invoice(items=(("Server rack installation", 1, 9000.0),)), "acme", "invoice",
                RECEIVED)
    proposed = (await decide.Decide(DecideRequest(task=sent))).decision
    assert proposed.rule == "amount_over_limit"

    async def with_edits(**edits: str) -> Decision:
        return (await decide.ReconsiderEdits(ReconsiderEditsRequest(
            task=sent, proposed_decision=proposed, edits=edits))).decision
    blocked = await with_edits(vendor="Shady Parts Ltd")
    assert (blocked.outcome, blocked.rule) == (DecisionOutcome.DECISION_OUTCOME_REJECT,
                                               "vendor_blocked")
    assert "Shady" not in blocked.explanation   # the vendor is personal: never quoted
    assert {f.name: f.value for f in blocked.fields}["vendor"] == "Shady Parts Ltd"
    lower = await with_edits(total="10,800.00", subtotal="9,000", tax="1,800")
    assert lower.rule == "amount_over_limit" and "10800" in lower.explanation
    small = await with_edits(total="360.00", subtotal="300.00", tax="60.00")
    assert small.outcome != DecisionOutcome.DECISION_OUTCOME_REJECT
    assert small.rule != "amount_over_limit", small.explanation
    assert (await with_edits(vendor="Shady Parts Ltd")).rule == "vendor_blocked"
    # nothing of it was stored: no decision, no invoice in the vendor history, no label
    for table in ("decisions", "decision_invoices", "decision_labels"):
        assert await db.fetchval(f"SELECT count(*) FROM {table} WHERE task_id = $1",
                                 uuid.UUID(sent.task_id)) == 0, table

    for request, field in (
            (ReconsiderEditsRequest(task=sent, proposed_decision=proposed), "edits"),
            (ReconsiderEditsRequest(task=sent, edits={"total": "1"}), "proposed_decision.pack"),
            (ReconsiderEditsRequest(proposed_decision=proposed, edits={"total": "1"}),
             "task.task_id"),
            (ReconsiderEditsRequest(task=sent, proposed_decision=proposed, edits={" ": "1"}),
             "edits")):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await decide.ReconsiderEdits(request)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in field_violations(caught.value)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await decide.ReconsiderEdits(ReconsiderEditsRequest(
            task=sent, proposed_decision=Decision(pack="no_such_pack"), edits={"x": "1"}))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert "no pack 'no_such_pack' enabled" in (caught.value.details() or "")


@hyp_settings(max_examples=40, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(pack=st.one_of(st.sampled_from(["invoice", "support_ticket", ""]), fuzz.texts),
       body=fuzz.bodies, content_type=st.sampled_from(["", "text/plain", "application/pdf"]),
       edits=st.dictionaries(st.one_of(st.sampled_from(["total", "vendor", "currency",
                                                         "invoice_date"]), fuzz.texts),
                             fuzz.texts, max_size=4))
def test_reconsider_edits_answers_any_request_with_a_decision_or_a_clear_code(
        pack: str, body: bytes, content_type: str, edits: dict[str, str],
        decision_settings: Settings, services: EmbeddedStack) -> None:
    """Whatever a ReconsiderEdits call holds, it is answered: a decision, or a code that says
    what was wrong (field violations when invalid); the service stays up."""
    request = ReconsiderEditsRequest(
        task=TaskEnvelope(task_id=str(uuid.uuid4()), tenant_id="acme",
                          document=Document(content_type=content_type, body=body)),
        proposed_decision=Decision(pack=pack), edits=edits)
    with grpc.insecure_channel(f"127.0.0.1:{decision_settings.decision_grpc_port}") as channel:
        try:
            response = DecisionServiceStub(channel).ReconsiderEdits(request, timeout=60)
        except grpc.RpcError as exc:
            code = exc.code()  # type: ignore[attr-defined]
            assert code in {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                            grpc.StatusCode.FAILED_PRECONDITION}, exc
            return
    assert response.decision.task_id == request.task.task_id


async def test_a_full_model_queue_refuses_the_tasks_it_cannot_take_not_the_call(
        decision_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> None:
    """With at most 4 documents waiting for the router (SWITCHYARD_BATCH_QUEUE_LIMIT=4), a
    DecideBatch of 64 is answered task by task: those the queue took are decided, the others
    are RESOURCE_EXHAUSTED (8) with a retry hint in their text; the call itself succeeds."""
    tasks = [task(row["text"], "acme") for row in heldout()[:64]]
    async with _decision_process(decision_settings, tmp_path_factory, "narrow",
                                 batch_queue_limit=4) as (_, narrow):
        batch = await narrow.DecideBatch(DecideBatchRequest(tasks=tasks))
    assert len(batch.results) == 64
    refused = [r.error for r in batch.results if r.HasField("error")]
    assert 0 < batch.decided_count and refused
    assert all(e.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0] for e in refused)
    assert all("retry this task shortly" in e.message for e in refused)
    assert batch.decided_count + len(refused) == 64


async def test_the_shadow_scores_only_its_sample_of_tasks(
        decision_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> None:
    """With SWITCHYARD_ROUTER_SHADOW_SAMPLE=0.5 a decision process compares the shadow on
    exactly the tasks whose ids are in the sample, and on no other."""
    tasks = [task(row["text"], "acme") for row in heldout()[:40]]
    expected = sum(shadow_sampled(t.task_id, 0.5) for t in tasks)
    assert 0 < expected < len(tasks)
    async with _decision_process(decision_settings, tmp_path_factory, "sampled",
                                 router_shadow_sample=0.5) as (sampled, stub):
        await asyncio.gather(*(stub.Decide(DecideRequest(task=t)) for t in tasks))

        def compared() -> float:
            return metric_sum(sampled.decision_metrics_port,
                               "switchyard_shadow_comparisons_total")

        async def all_sampled_compared() -> bool:
            return compared() >= expected

        await eventually(all_sampled_compared, "the sampled tasks' comparisons", timeout_s=60)
        await asyncio.sleep(1.0)  # an unsampled task compared late would show now
        assert compared() == expected


async def test_empty_document_is_invalid(decide: DecisionServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await decide.Decide(DecideRequest(task=task("")))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_bad_files_are_refused_like_ingest_refuses_them(
        decide: DecisionServiceStub) -> None:
    """Decide runs ingest's validation: a file that is not what its content type says (an
    invoice PDF labelled as text, a PNG labelled as a PDF) or does not open is
    INVALID_ARGUMENT with the body's field violation and its code, never decoded as text and
    routed as an invoice."""
    cases = {
        "pdf labelled as text": (pdf(invoice()), "text/plain", "type_mismatch: "),
        "png labelled as pdf": (png(), "application/pdf", "type_mismatch: "),
        "corrupt pdf": (b"%PDF-1.4\n" + b"\x00" * 64, "application/pdf", "corrupt: "),
    }
    for name, (body, content_type, start) in cases.items():
        envelope = TaskEnvelope(task_id=str(uuid.uuid4()), tenant_id="acme", kind="invoice",
                                document=Document(content_type=content_type, body=body))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await decide.Decide(DecideRequest(task=envelope))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, name
        violations = field_violations(caught.value)
        assert violations["task.document.body"].startswith(start), name
        assert "task.document.content_type" not in violations, name


async def test_text_in_a_declared_charset_is_read_as_its_characters(
        decide: DecisionServiceStub) -> None:
    """Decide takes text as ingest does: Latin-1 bytes declared as such are read as their
    characters (the vendor's umlaut intact), not as UTF-8 replacement marks."""
    text = invoice(vendor="Müller & Söhne GmbH")
    envelope = TaskEnvelope(task_id=str(uuid.uuid4()), tenant_id="acme", kind="invoice",
                            document=Document(content_type="text/plain; charset=latin-1",
                                              body=text.encode("latin-1")))
    decision = (await decide.Decide(DecideRequest(task=envelope))).decision
    assert {f.name: f.value for f in decision.fields}["vendor"] == "Müller & Söhne GmbH"


#: A Chinese VAT invoice (fapiao) as its text layer reads, in the national layout: the buyer's
#: block, the items, the 合计 row (net, tax), 价税合计, then the seller's block.
FAPIAO = """上海增值税电子普通发票 | 发票代码: 031001900211
发票号码: 20481234
开票日期: 2021年09月03日
名 | 称: 杭州明远贸易有限公司
纳税人识别号: 91330100MA2B3C4D5E
货物或应税劳务、服务名称 | 规格型号 | 单位 | 数量 | 单价 | 金额 | 税率 | 税额
*信息技术服务*软件维护 | 无 | 次 | 1 | 1000.00 | 1000.00 | 6% | 60.00
合 | 计 | ￥1000.00 | ￥60.00
价税合计（大写） | 壹仟零陆拾圆整 | （小写）￥1060.00
名 | 称: 上海云栈信息技术有限公司
纳税人识别号: 91310115MA1H2J3K4L
开户行及账号: 中国工商银行上海分行 1001234567890123456
"""


async def test_a_national_e_invoice_printout_is_an_invoice_by_its_signature(
        decide: DecisionServiceStub) -> None:
    """The invoice pack's router signatures name a fapiao an invoice whatever the router
    model (which knows no Chinese) says, and the extractor reads its seller's block."""
    decision = (await decide.Decide(DecideRequest(task=task(FAPIAO)))).decision
    assert decision.label == "invoice"
    assert "pack_signature" in [m.model_name for m in decision.models]
    assert "recognised as 'invoice' by its format's signature" in decision.explanation
    fields = {f.name: f.value for f in decision.fields}
    assert {k: fields.get(k) for k in ("vendor", "invoice_number", "invoice_date", "currency",
                                       "subtotal", "tax", "total", "bank_account")} == {
        "vendor": "上海云栈信息技术有限公司", "invoice_number": "20481234",
        "invoice_date": "2021-09-03", "currency": "CNY", "subtotal": "1000.00", "tax": "60.00",
        "total": "1060.00", "bank_account": "1001234567890123456"}
    # a letter that names one of the format's labels is not the document
    letter = "您好，请问发票号码 20481234 的发票什么时候寄出？谢谢。"
    decision = (await decide.Decide(DecideRequest(task=task(letter)))).decision
    assert "pack_signature" not in [m.model_name for m in decision.models]


def _scan(lines: list[str]) -> bytes:
    """A scanned page: ``lines`` drawn on a white image, as PNG bytes (no text layer)."""
    import io

    from PIL import Image, ImageDraw, ImageFont

    page = Image.new("RGB", (900, 60 + 60 * len(lines)), "white")
    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default(size=32)
    for row, line in enumerate(lines):
        draw.text((40, 30 + 60 * row), line, fill="black", font=font)
    out = io.BytesIO()
    page.save(out, format="PNG")
    return out.getvalue()


async def test_pdfs_and_scans_are_routed_on_what_their_pages_say(
        decide: DecisionServiceStub) -> None:
    """The service reads a PDF's text layer and a scan by OCR on Triton before routing: the
    router sees the words, not the file's bytes (which it would take for anything else); an
    e-mail's, the PDF it carries."""
    text_pdf = Document(content_type="application/pdf", body=pdf(invoice()))
    scan = Document(content_type="image/png", body=_scan([
        "Ticket SR127232", "Priority: P3", "Category: General", "Customer: Julia Larsen"]))
    # an e-mail is decided as the document it carries, as ingest stores it
    note = EmailMessage()
    note["From"], note["Subject"] = "billing@example.com", "Our invoice"
    note.set_content("Please find our invoice attached.")
    note.add_attachment(pdf(invoice()), maintype="application", subtype="pdf",
                        filename="invoice.pdf")
    mail = Document(content_type="message/rfc822", body=bytes(note))
    decided = await asyncio.gather(*(
        decide.Decide(DecideRequest(task=TaskEnvelope(
            task_id=str(uuid.uuid4()), tenant_id="acme", metadata=RECEIVED, document=document)))
        for document in (text_pdf, scan, mail)))
    labels = [(d.decision.models[0].label, d.decision.rule) for d in decided]
    assert [label for label, _ in labels] == ["invoice", "support_ticket", "invoice"], labels
    assert all(rule != "model_unavailable" for _, rule in labels), labels


async def wait_decided(db: asyncpg.Connection, task_ids: list[str], timeout_s: float = 90
                       ) -> list[asyncpg.Record]:
    deadline = time.monotonic() + timeout_s
    while True:
        rows = await db.fetch("SELECT task_id, outcome, rule, decision FROM decisions "
                              "WHERE task_id = ANY($1::uuid[])", task_ids)
        if len(rows) == len(task_ids) or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.2)


async def test_kafka_path_decides_records_history_shadow_and_metrics(
        decision_settings: Settings, services: EmbeddedStack, db: asyncpg.Connection) -> None:
    channel = create_channel(f"127.0.0.1:{decision_settings.ingest_grpc_port}")
    ingest = IngestServiceStub(channel)
    docs = [(r["text"], "") for r in heldout()[:40]]
    docs += [(invoice(vendor="Brightline Office Oy", number=f"BO-{i}"), "invoice")
             for i in range(3)]
    try:
        accepted = await asyncio.gather(*(ingest.SubmitTask(SubmitTaskRequest(submission=Submission(
            tenant_id="acme", idempotency_key=uuid.uuid4().hex, kind=kind, metadata=RECEIVED,
            document=Document(content_type="text/plain", body=text.encode()))))
            for text, kind in docs))
        ids = [a.task_id for a in accepted]
        rows = await wait_decided(db, ids)
        assert len(rows) == len(ids)
        task = (await ingest.GetTask(GetTaskRequest(task_id=ids[-1]))).task
        assert task.status in (TaskStatus.TASK_STATUS_IN_PROGRESS, TaskStatus.TASK_STATUS_BLOCKED)
    finally:
        await channel.close()
    # invoices: one pending row each (hashes only); nothing confirmed them (no person, no
    # executor here), so the vendor's history learned nothing
    invoices = await db.fetch("SELECT number_hash, state FROM decision_invoices "
                              "WHERE task_id = ANY($1::uuid[])", ids[-3:])
    assert sorted(r["number_hash"] for r in invoices) == sorted(
        hashed(decision_settings, "acme", "invoice_number", f"BO-{i}") for i in range(3))
    assert {r["state"] for r in invoices} == {"pending"}
    vendor = await db.fetchrow("SELECT invoice_count FROM decision_vendors "
                               "WHERE tenant_id = 'acme' AND vendor_hash = $1",
                               hashed(decision_settings, "acme", "vendor",
                                      vendor_key("Brightline Office Oy")))
    assert vendor is None
    duplicates = [r["rule"] for r in rows if r["rule"] == "duplicate_invoice"]
    assert not duplicates  # three different numbers
    # the shadow saw every routed document; its answers are recorded, never acted on
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        shadow = await db.fetch("SELECT live_version, shadow_version, agree FROM "
                                "decision_shadow_results WHERE task_id = ANY($1::uuid[])", ids)
        if len(shadow) == len(ids):
            break
        await asyncio.sleep(0.3)
    assert len(shadow) == len(ids)
    assert {(r["live_version"], r["shadow_version"]) for r in shadow} == {("1.0.0", "1.1.0")}
    assert sum(r["agree"] for r in shadow) / len(shadow) > 0.8
    metrics = urllib.request.urlopen(
        f"http://127.0.0.1:{decision_settings.decision_metrics_port}/metrics", timeout=10
    ).read().decode()
    for needle in (
        'switchyard_model_confidence_bucket{le="0.9",model="document_router",version="1.0.0"}',
        'switchyard_model_confidence_count{model="invoice_risk",version="1.0.0"}',
        'switchyard_batch_size_bucket{le="64.0",model="document_router"}',
        'switchyard_inference_seconds_count{model="document_router",version="1.0.0"}',
        'switchyard_shadow_agreement_ratio{live_version="1.0.0",model="document_router",'
        'shadow_version="1.1.0"}',
    ):
        assert needle in metrics, needle
    # the router saw more than DRIFT_EVERY inputs: its PSI gauges exist, one per feature
    assert len(ids) > DRIFT_EVERY
    drift = [line for line in metrics.splitlines()
             if line.startswith("switchyard_input_drift_psi{")
             and 'model="document_router"' in line and 'version="1.0.0"' in line]
    assert drift, "no drift gauge for document_router 1.0.0"
    assert all(float(line.rsplit(" ", 1)[1]) >= 0 for line in drift)


async def test_model_health_buckets_shadow_agreement_and_drift(
        decision_settings: Settings, services: EmbeddedStack, decide: DecisionServiceStub,
        db: asyncpg.Connection) -> None:
    """Tasks decided on the Kafka path with the shadow router on: GetModelHealth counts the
    tenant's comparisons per bucket, and the drift monitor's publishes (every DRIFT_EVERY
    inputs) come back as drift points from decision_drift_samples."""
    channel = create_channel(f"127.0.0.1:{decision_settings.ingest_grpc_port}")
    try:
        ingest = IngestServiceStub(channel)
        ids = [(await ingest.SubmitTask(SubmitTaskRequest(submission=Submission(
            tenant_id="healthco", idempotency_key=uuid.uuid4().hex,
            document=Document(content_type="text/plain", body=r["text"].encode()))))).task_id
            for r in heldout()[40:40 + DRIFT_EVERY]]
    finally:
        await channel.close()
    assert len(await wait_decided(db, ids)) == len(ids)
    request = GetModelHealthRequest(tenant_id="healthco")
    request.window.FromTimedelta(timedelta(hours=2))
    request.bucket.FromTimedelta(timedelta(minutes=1))

    async def health() -> tuple[GetModelHealthResponse] | None:
        got = await decide.GetModelHealth(request)
        compared = sum(p.compared for p in got.shadow)
        return (got,) if compared == len(ids) and got.drift else None
    (got,) = await eventually(health, "healthco's comparisons and a drift sample", 60, 0.3)
    assert {(p.model_name, p.live_version, p.shadow_version) for p in got.shadow} == \
        {("document_router", "1.0.0", "1.1.0")}
    assert all(0 <= p.agreed <= p.compared for p in got.shadow)
    assert all(p.bucket_start.seconds % 60 == 0 for p in got.shadow)  # whole minutes
    features = {(p.model_name, p.version, p.feature) for p in got.drift}
    assert ("document_router", "1.0.0", "text_length_chars") in features
    assert all(p.samples >= 1 and p.psi >= 0 for p in got.drift)
    stored = await db.fetchval("SELECT count(*) FROM decision_drift_samples "
                               "WHERE model = 'document_router' AND version = '1.0.0'")
    assert stored >= len({p.feature for p in got.drift})
    # another tenant's comparisons are not counted; drift is every tenant's inputs
    other = await decide.GetModelHealth(GetModelHealthRequest(tenant_id="nobody"))
    assert not other.shadow and other.drift
    # the operator key (auth off: the local operator) may ask for every tenant at once
    every = await decide.GetModelHealth(GetModelHealthRequest(tenant_id="*"))
    assert sum(p.compared for p in every.shadow) >= len(ids)
    # the scorers' drift is kept too (this module's invoices were scored many times)
    assert "invoice_risk" in {p.model_name for p in every.drift}, every.drift


def _judged(task_id: str, router: tuple[str, float], risk: float, human: str,
            document_type: str = "") -> tuple[Decision, Decision]:
    """A model decision that escalated (router and invoice_risk outputs of a test-only
    version) and a person's decision on it, as the review service publishes one."""
    label, confidence = router
    model = Decision(task_id=task_id, tenant_id="judgeco", label="invoice", rule="invoice_risk",
                     confidence=confidence, pack="invoice", pack_version="1.3.0",
                     outcome=DecisionOutcome.DECISION_OUTCOME_ESCALATE)
    model.models.add(model_name="document_router", model_version="9.9.9-test", label=label,
                     confidence=confidence, scores={label: confidence, "invoice": confidence,
                                                    "other": 1 - confidence})
    model.models.add(model_name="invoice_risk", model_version="9.9.9-test",
                     label="auto" if risk >= 0.5 else "not_auto", confidence=risk,
                     scores={"p_auto": risk})
    person = Decision(task_id=task_id, tenant_id="judgeco", rule=f"reviewer_{human}",
                      label=document_type or "invoice",
                      source=DecisionSource.DECISION_SOURCE_HUMAN,
                      outcome=DecisionOutcome.DECISION_OUTCOME_REJECT if human == "reject"
                      else DecisionOutcome.DECISION_OUTCOME_AUTO_EXECUTE)
    return model, person


async def test_model_health_counts_agreement_with_reviewers_per_model_version(
        decision_settings: Settings, services: EmbeddedStack, decide: DecisionServiceStub,
        db: asyncpg.Connection) -> None:
    """Reviewers' verdicts judge each model version: the router on the type the person
    confirmed or named (a rejection naming none does not judge it), a binary score on
    whether the person approved the proposal unchanged. GetModelHealth buckets them with the
    mean confidence; the service's gauges show the same over the last days."""
    cases = [_judged(str(uuid.uuid4()), ("invoice", 0.9), 0.3, "approve"),
             _judged(str(uuid.uuid4()), ("invoice", 0.6), 0.2, "reject"),
             _judged(str(uuid.uuid4()), ("invoice", 0.7), 0.8, "reject", "support_ticket")]
    await record_pending(db, [(model, "a text the models read") for model, _ in cases],
                         PLAINTEXT)
    pool = await create_pool(decision_settings.replace(postgres_pool_min=1,
                                                       postgres_pool_max=1))
    try:
        assert await record_verdicts(pool, [person for _, person in cases], PLAINTEXT) == 3
    finally:
        await pool.close()
    request = GetModelHealthRequest(tenant_id="judgeco")
    request.bucket.FromTimedelta(timedelta(hours=24))
    points = {(p.model_name, p.version): p
              for p in (await decide.GetModelHealth(request)).human}
    router = points["document_router", "9.9.9-test"]
    assert (router.judged, router.agreed) == (2, 1)   # the plain rejection judged nothing
    assert router.mean_confidence == pytest.approx((0.9 + 0.7) / 2)
    risk = points["invoice_risk", "9.9.9-test"]
    assert (risk.judged, risk.agreed) == (3, 1)       # leaned away and was rejected: agreed
    assert risk.mean_confidence == pytest.approx((0.7 + 0.8 + 0.8) / 3)
    assert not (await decide.GetModelHealth(GetModelHealthRequest(tenant_id="nobody"))).human

    port = decision_settings.decision_metrics_port
    label = 'model="invoice_risk",version="9.9.9-test"'

    async def gauges() -> tuple[float, float] | None:
        judged = metric_sum(port, "switchyard_model_human_judged", label)
        return ((metric_sum(port, "switchyard_model_human_agreement_ratio", label),
                 metric_sum(port, "switchyard_model_calibration_gap", label))
                if judged == 3 else None)
    agreement, gap = await eventually(gauges, "the live-accuracy gauges", 30, 0.5)
    assert agreement == pytest.approx(1 / 3, abs=1e-6)
    assert gap == pytest.approx((0.7 + 0.8 + 0.8) / 3 - 1 / 3, abs=1e-6)


def _durations(window: timedelta | None, bucket: timedelta | None) -> GetModelHealthRequest:
    request = GetModelHealthRequest(tenant_id="healthco")
    if window is not None:
        request.window.FromTimedelta(window)
    if bucket is not None:
        request.bucket.FromTimedelta(bucket)
    return request


@pytest.mark.parametrize(("request_", "fields"), [
    (_durations(timedelta(days=31), None), {"window"}),
    (_durations(timedelta(0), None), {"window"}),
    (_durations(timedelta(hours=-1), None), {"window"}),
    (_durations(None, timedelta(seconds=59)), {"bucket"}),
    (_durations(None, timedelta(minutes=2)), {"bucket"}),      # 720 buckets in 24 hours
    (_durations(timedelta(days=31), timedelta(0)), {"window", "bucket"}),
    (GetModelHealthRequest(), {"tenant_id"}),
])
async def test_model_health_refuses_bad_windows_with_field_violations(
        decide: DecisionServiceStub, request_: GetModelHealthRequest, fields: set[str]) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await decide.GetModelHealth(request_)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(field_violations(caught.value)) == fields, field_violations(caught.value)


def test_invalid_policies_stop_the_service_with_clear_errors(decision_settings: Settings,
                                                             tmp_path: Path) -> None:
    (tmp_path / "acme.yaml").write_text("packs:\n  invoice:\n    parameters: "
                                        "{min_p_auto: high}\nvendorz: []\n")
    (tmp_path / "beta.yaml").write_text("reject_labels: [Spam!]\n")
    bad = decision_settings.replace(policy_dir=str(tmp_path), decision_metrics_port=0,
                                    decision_grpc_port=free_port())
    env = {**os.environ, **bad.to_env()}
    done = subprocess.run([sys.executable, "-m", "switchyard", "run", "decision"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "acme.yaml: vendorz: unknown key" in output
    assert "beta.yaml: reject_labels: not a document type name 'Spam!'" in output
    # the packs key is checked against the packs once the file itself is well formed
    (tmp_path / "acme.yaml").write_text("packs:\n  invoice:\n    parameters: "
                                        "{min_p_auto: high}\n")
    (tmp_path / "beta.yaml").unlink()
    done = subprocess.run([sys.executable, "-m", "switchyard", "run", "decision"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "acme.yaml: packs: " in output and "min_p_auto" in output


ED_NOTE = """ED admission note, 23:40. 61 y/o female brought in by her daughter with three days of
fever, flank pain and vomiting. BP 92/55, HR 118. Urinalysis: nitrites positive.
Impression: pyelonephritis with early sepsis. Plan: admit to the medical ward, IV fluids and
ceftriaxone, blood cultures before antibiotics. Admitting hospitalist: Dr. B. Okafor."""


async def test_an_unsure_router_gets_the_text_encoders_second_opinion(
        decide: DecisionServiceStub, decision_settings: Settings) -> None:
    """A document written unlike the router's training text (an emergency-department note)
    leaves the router unsure; the service asks text_encoder and pools the two answers
    (docs/decision.md#router-cascade): the decision lists the router's output, the encoder's
    and the pooled one it routed on. A document the router is sure of asks nobody else."""
    port = decision_settings.decision_metrics_port
    before = metric_sum(port, "switchyard_router_cascade_total", 'result="pooled"')
    decision = (await decide.Decide(DecideRequest(task=task(ED_NOTE)))).decision
    assert [m.model_name for m in decision.models[:3]] == [
        "document_router", "text_encoder", "router_cascade"]
    router, encoder, pooled = decision.models[:3]
    assert router.confidence < decision_settings.router_cascade_below
    assert pooled.label == encoder.label == decision.label == "hospital_admission"
    assert pooled.confidence > router.confidence
    assert metric_sum(port, "switchyard_router_cascade_total", 'result="pooled"') == before + 1
    sure = (await decide.Decide(DecideRequest(task=task(sample("invoice"))))).decision
    assert sure.models[0].model_name == "document_router"
    assert sure.models[0].confidence >= decision_settings.router_cascade_below
    assert "text_encoder" not in [m.model_name for m in sure.models]
