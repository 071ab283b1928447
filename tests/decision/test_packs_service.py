"""PackService on the running decision service, through the real PostgreSQL and Triton.

A pack Switchyard does not ship (expense claims) is defined here, applied through PackService
and used by Decide without a restart; a tenant's parameter override changes the decision; the
decision names pack, version and rule and carries the rule's review routing; a pack with
mistakes is refused with one violation per mistake while the service keeps serving; TestPack
runs golden cases (the shipped invoice pack's among them) and reports each; changes are
audited and versions never change content.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import grpc
import pytest
import yaml

from switchyard import Settings
from switchyard.storage import connect
from switchyard.rpc import create_channel, field_violations
from switchyard.runtime import service_specs
from switchyard.packs import builtin_packs
from switchyard.stack import EmbeddedStack, free_port
from switchyard.v1 import (
    ApplyPackRequest,
    ApplyTenantSettingsRequest,
    DataClass,
    DecideRequest,
    DecisionOutcome,
    DecisionServiceStub,
    Document,
    GetPackRequest,
    GetTenantSettingsRequest,
    ListPacksRequest,
    PackFile,
    PackServiceStub,
    PackSource,
    TaskEnvelope,
    TestPackRequest as PackTestRequest,  # not a test class
    ValidatePackRequest,
)
from tests.polling import eventually

pytestmark = pytest.mark.integration
KEYS = {"acme-admin": ("acme", "admin"), "acme-audit": ("acme", "auditor"),
        "acme-sub": ("acme", "submitter"), "globex-admin": ("globex", "admin"),
        "globex-sub": ("globex", "submitter"), "ops": ("*", "admin")}


def key_id(name: str) -> str:
    """How the service names a key in records (never the key itself)."""
    return f"key-{list(KEYS).index(name)}"

EXPENSE_PACK = """\
pack: expense_claim
version: {version}
description: Employee expense claims
fields:
  employee: {{type: string, required: true, data_class: personal, labels: [Employee]}}
  amount: {{type: money, required: true, data_class: derived, labels: [Total, Amount]}}
  currency: {{type: enum, values: [USD, EUR, GBP], data_class: derived, labels: [Currency]}}
parameters:
  max_auto_amount: {{type: number, default: 500, minimum: 0}}
  approver_group: {{type: string, default: managers}}
decision:
  rules:
    - name: amount_missing
      when: fields.amount == null
      outcome: escalate
      explain: "No amount could be read."
    - name: amount_over_limit
      when: fields.amount > params.max_auto_amount
      outcome: escalate
      reason: POLICY
      explain: "Claim of ${{fields.amount}} above ${{params.max_auto_amount}}"
      review: {{queue: finance, group: "${{params.approver_group}}", priority: high, sla: 4h,
               four_eyes: true}}
    - name: {straight_rule}
      when: "true"
      outcome: auto_execute
      explain: "Claim of ${{fields.amount}} within the limit"
plan:
  - name: create_claim
    target: http://erp/claims
    payload: {{employee: "${{fields.employee}}", amount: "${{fields.amount}}"}}
    compensate: {{target: "http://erp/claims/{{idempotency_key}}", operation: DELETE}}
tests:
  - name: small claim goes straight through
    document: {{text: "Employee: Ann Lee\\nTotal: 42.50 EUR"}}
    expect: {{outcome: auto_execute, rule: {straight_rule}, fields: {{amount: "42.50"}}}}
  - name: a wrong expectation is reported, not hidden
    document: {{text: "Employee: Ann Lee\\nTotal: 42.50 EUR"}}
    expect: {{outcome: escalate, rule: amount_over_limit}}
"""
CLAIM = "Employee: Ann Lee\nTotal: 42.50 EUR\nCurrency: EUR"
INVOICE_TEXT = (
    "INVOICE\nNordwind Logistik GmbH\nInvoice number: NW-2026-0042\n"
    "Invoice date: 2026-03-02\nDue date: 2026-04-01\nBill to: Acme Corp\n"
    "Description                Qty   Price\nFreight Hamburg-Munich      1   1,250.00\n"
    "Subtotal: EUR 1,250.00\nVAT 19%: EUR 237.50\nTotal amount due: EUR 1,487.50\n"
    "IBAN: DE89 3704 0044 0532 0130 00\n")


def expense_pack(version: str = "1.0.0", straight_rule: str = "straight_through") -> PackSource:
    text = EXPENSE_PACK.format(version=version, straight_rule=straight_rule)
    return PackSource(files=[PackFile(path="pack.yaml", content=text.encode())])


@pytest.fixture(scope="module")
def pack_settings(settings: Settings) -> Settings:
    return settings.replace(api_keys=",".join(f"{k}:{t}:{r}" for k, (t, r) in KEYS.items()),
                            pack_reload_s=600.0)  # only NOTIFY can make a change seen fast


@pytest.fixture(scope="module")
def services(pack_settings: Settings, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[EmbeddedStack]:
    stack = EmbeddedStack(pack_settings, tmp_path_factory.mktemp("packs"), components=(),
                          services=service_specs(pack_settings, ("decision",)))
    stack.start(timeout_s=90)
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def second_replica(pack_settings: Settings, services: EmbeddedStack,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Another decision replica on the same database and topics (its own ports)."""
    replica = pack_settings.replace(decision_grpc_port=free_port(),
                                    decision_metrics_port=free_port())
    stack = EmbeddedStack(replica, tmp_path_factory.mktemp("replica"), components=(),
                          services=service_specs(replica, ("decision",)))
    stack.start(timeout_s=90)
    try:
        yield replica
    finally:
        stack.stop()


class Client:
    def __init__(self, settings: Settings, key: str) -> None:
        self.channel = create_channel(f"127.0.0.1:{settings.decision_grpc_port}", api_key=key)
        self.packs = PackServiceStub(self.channel)
        self.decide = DecisionServiceStub(self.channel)

    async def decision(self, text: str, kind: str = "expense_claim", tenant: str = ""):
        envelope = TaskEnvelope(task_id=str(uuid.uuid4()), tenant_id=tenant, kind=kind,
                                document=Document(content_type="text/plain",
                                                  body=text.encode()))
        return (await self.decide.Decide(DecideRequest(task=envelope))).decision


@pytest.fixture
async def clients(pack_settings: Settings, services: EmbeddedStack
                  ) -> AsyncIterator[dict[str, Client]]:
    made = {key: Client(pack_settings, key) for key in KEYS}
    yield made
    for client in made.values():
        await client.channel.close()


@pytest.fixture
async def db(pack_settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    conn = await connect(pack_settings)
    yield conn
    await conn.close()


def outcome(decision) -> str:  # type: ignore[no-untyped-def]
    return DecisionOutcome.Name(decision.outcome).removeprefix("DECISION_OUTCOME_")


async def test_applied_pack_decides_without_restart_and_overrides_change_it(
        clients: dict[str, Client], db: asyncpg.Connection) -> None:
    acme, globex = clients["acme-admin"], clients["globex-admin"]
    before = await clients["acme-sub"].decision(CLAIM)
    assert before.pack != "expense_claim"  # no such pack yet
    applied = await acme.packs.ApplyPack(ApplyPackRequest(source=expense_pack()))
    assert applied.changed and applied.pack.tenant_id == "acme"
    assert (applied.pack.name, applied.pack.version, applied.pack.applied_by) == (
        "expense_claim", "1.0.0", key_id("acme-admin"))

    # the same replica, no restart: the submitted kind routes it (the router does not know
    # the type yet) and the pack's table decides
    decision = await clients["acme-sub"].decision(CLAIM)
    assert (outcome(decision), decision.rule) == ("AUTO_EXECUTE", "straight_through")
    assert (decision.pack, decision.pack_version) == ("expense_claim", "1.0.0")
    assert "routed by the submitted kind" in decision.explanation
    assert "Claim of 42.5 within the limit" in decision.explanation
    # the models list credits the kind to the submitter, not to the router: the router's
    # own answer (a type it knows) stands before it as it gave it
    named = decision.models[-1]
    assert (named.model_name, named.label, named.confidence) == (
        "submitted_kind", "expense_claim", 1.0)
    assert all(m.label != "expense_claim" for m in decision.models[:-1]), decision.models
    classes = {f.name: (f.data_class, f.type) for f in decision.fields}
    assert classes["employee"] == (DataClass.DATA_CLASS_PERSONAL, "string")
    assert classes["amount"] == (DataClass.DATA_CLASS_DERIVED, "money")
    assert decision.extracted_fields["amount"] == "42.50"
    # the currency line is missing here: declared, it travels empty with its type
    nothing = await clients["acme-sub"].decision("Employee: Ann Lee\nTotal: 42.50")
    assert {f.name: (f.value, f.type) for f in nothing.fields}["currency"] == ("", "enum")
    assert "currency" not in nothing.extracted_fields
    assert (decision.plan.pack, decision.plan.pack_version) == ("expense_claim", "1.0.0")
    assert [s.step_id for s in decision.plan.steps] == ["1-create_claim"]
    assert decision.plan.steps[0].compensation.operation == "DELETE"
    assert decision.plan.parameters["max_auto_amount"] == 500

    # another tenant does not see acme's pack
    assert (await clients["globex-sub"].decision(CLAIM)).pack != "expense_claim"
    assert "expense_claim" not in {p.name for p in (await globex.packs.ListPacks(
        ListPacksRequest())).packs}

    # acme lowers its limit: the next decision escalates with the rule's review routing
    response = await acme.packs.ApplyTenantSettings(ApplyTenantSettingsRequest(
        document=b"packs:\n  expense_claim:\n    parameters: {max_auto_amount: 10}\n"))
    assert (response.version, response.changed) == (1, True)
    decision = await clients["acme-sub"].decision(CLAIM)
    assert (outcome(decision), decision.rule) == ("ESCALATE", "amount_over_limit")
    assert "Claim of 42.5 above 10" in decision.explanation
    # the rule's reviewer group is the tenant's parameter (its default here)
    assert (decision.review_queue, decision.reviewer_group, decision.four_eyes) == (
        "finance", "managers", True)
    assert decision.review_sla.seconds == 4 * 3600
    assert decision.plan.parameters["max_auto_amount"] == 10
    settings = await clients["acme-audit"].packs.GetTenantSettings(GetTenantSettingsRequest())
    assert (settings.tenant_id, settings.version, settings.applied_by) == (
        "acme", 1, key_id("acme-admin"))
    # applying the same document again changes nothing
    again = await acme.packs.ApplyTenantSettings(ApplyTenantSettingsRequest(
        document=b"packs:\n  expense_claim:\n    parameters: {max_auto_amount: 10}\n"))
    assert (again.version, again.changed) == (1, False)
    # another group of reviewers for this tenant: the next escalation goes to them
    await acme.packs.ApplyTenantSettings(ApplyTenantSettingsRequest(
        document=b"packs:\n  expense_claim:\n    parameters: {max_auto_amount: 10, "
                 b"approver_group: finance-leads}\n"))
    decision = await clients["acme-sub"].decision(CLAIM)
    assert (decision.rule, decision.reviewer_group) == ("amount_over_limit", "finance-leads")

    # disabling the pack: the type has no plan for acme any more
    await acme.packs.ApplyTenantSettings(ApplyTenantSettingsRequest(
        document=b"packs:\n  expense_claim: {enabled: false}\n"))
    decision = await clients["acme-sub"].decision(CLAIM)
    assert decision.pack != "expense_claim"
    listed = {p.name: p for p in (await acme.packs.ListPacks(ListPacksRequest())).packs}
    assert not listed["expense_claim"].enabled and listed["invoice"].enabled
    assert listed["invoice"].applied_by == "builtin"

    # every change is in the tenant's audit trail
    actions = [r["action"] for r in await db.fetch(
        "SELECT action FROM audit_log WHERE tenant_id = 'acme' AND action LIKE 'pack.%' "
        "ORDER BY entry_id")]
    assert actions == ["pack.applied"] + ["pack.settings_applied"] * 3


async def test_a_new_version_is_used_and_a_version_never_changes(
        clients: dict[str, Client]) -> None:
    acme = clients["acme-admin"]
    await acme.packs.ApplyTenantSettings(ApplyTenantSettingsRequest(document=b"packs: {}\n"))
    # the same version with other content is refused; the stored one stays
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await acme.packs.ApplyPack(ApplyPackRequest(source=expense_pack(
            straight_rule="claim_ok")))
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert not (await acme.packs.ApplyPack(ApplyPackRequest(source=expense_pack()))).changed
    # a new version: the newest is used from the next decision
    await acme.packs.ApplyPack(ApplyPackRequest(source=expense_pack("1.1.0", "claim_ok")))
    decision = await clients["acme-sub"].decision(CLAIM)
    assert (decision.pack_version, decision.rule) == ("1.1.0", "claim_ok")
    # a tenant pins the old one
    await acme.packs.ApplyTenantSettings(ApplyTenantSettingsRequest(
        document=b"packs:\n  expense_claim: {version: 1.0.0}\n"))
    decision = await clients["acme-sub"].decision(CLAIM)
    assert (decision.pack_version, decision.rule) == ("1.0.0", "straight_through")
    # the list shows the version in effect beside the newest, and a test runs the pinned one
    listed = {p.name: p for p in (await acme.packs.ListPacks(ListPacksRequest())).packs}
    assert (listed["expense_claim"].version, listed["expense_claim"].newest_version) == (
        "1.0.0", "1.1.0")
    tested = await acme.packs.TestPack(PackTestRequest(name="expense_claim"))
    assert tested.pack.version == "1.0.0"
    shown = await clients["acme-audit"].packs.GetPack(GetPackRequest(name="expense_claim"))
    assert shown.pack.version == "1.1.0" and not shown.pack.enabled
    assert b"claim_ok" in {f.path: f.content for f in shown.source.files}["pack.yaml"]


async def test_a_bad_pack_is_refused_one_violation_per_mistake(
        clients: dict[str, Client]) -> None:
    acme = clients["acme-admin"]
    good = EXPENSE_PACK.format(version="1.0.0", straight_rule="straight_through")
    # three mistakes of structure ...
    bad = (good.replace("version: 1.0.0", "version: '1.0'")
           .replace("outcome: auto_execute", "outcome: maybe", 1)
           .replace("target: http://erp/claims\n", "target: http://erp/claims\n    timeout: soon\n"))
    source = PackSource(files=[PackFile(path="pack.yaml", content=bad.encode())])
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await acme.packs.ApplyPack(ApplyPackRequest(source=source))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = field_violations(caught.value)
    assert set(violations) == {"pack.yaml: version", "pack.yaml: decision.rules[2].outcome",
                               "pack.yaml: plan[0].timeout"}, violations
    # ... and two of meaning: an unknown parameter, a rule name used twice
    semantic = (good.replace("fields.amount > params.max_auto_amount",
                             "fields.amount > params.max_amount")
                .replace("- name: amount_missing", "- name: amount_over_limit"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await acme.packs.ApplyPack(ApplyPackRequest(source=PackSource(files=[
            PackFile(path="pack.yaml", content=semantic.encode())])))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = field_violations(caught.value)
    assert len(violations) == 2, violations
    assert any("max_amount" in v for v in violations.values()), violations
    # a reviewer group is filled in from the tenant's parameters only, never from a document
    fielded = good.replace('"${params.approver_group}"', '"${fields.employee}"')
    assert fielded != good
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await acme.packs.ApplyPack(ApplyPackRequest(source=PackSource(files=[
            PackFile(path="pack.yaml", content=fielded.encode())])))
    violations = field_violations(caught.value)
    assert list(violations) == ["pack.yaml: decision.rules[1].review.group"], violations
    # ValidatePack lists the same lines; not YAML at all is one clear line
    checked = await clients["acme-audit"].packs.ValidatePack(ValidatePackRequest(source=source))
    assert len(checked.problems) == 3 and not checked.HasField("pack")
    garbage = PackSource(files=[PackFile(path="pack.yaml", content=b"pack: [\x00\xff")])
    assert len((await acme.packs.ValidatePack(ValidatePackRequest(source=garbage))).problems) == 1
    # bad tenant settings likewise, naming the parameter
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await acme.packs.ApplyTenantSettings(ApplyTenantSettingsRequest(
            document=b"packs:\n  invoice: {parameters: {max_auto_amount: -1, colour: red}}\n"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert len(field_violations(caught.value)) == 2
    # the service keeps serving
    assert (await clients["acme-sub"].decision("Support ticket: I cannot log in", kind="")) \
        .decision_id


async def test_roles_and_tenants(clients: dict[str, Client]) -> None:
    denied = grpc.StatusCode.PERMISSION_DENIED
    for call in (
        lambda: clients["acme-audit"].packs.ApplyPack(ApplyPackRequest(source=expense_pack())),
        lambda: clients["acme-sub"].packs.ListPacks(ListPacksRequest()),
        lambda: clients["acme-admin"].packs.ApplyPack(ApplyPackRequest(
            source=expense_pack(), tenant_id="globex")),
        lambda: clients["acme-admin"].packs.ApplyTenantSettings(ApplyTenantSettingsRequest(
            tenant_id="globex", document=b"packs: {}\n")),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call()
        assert caught.value.code() == denied
    # an operator key applies a shared pack: every tenant sees it
    shared = await clients["ops"].packs.ApplyPack(ApplyPackRequest(
        source=expense_pack("2.0.0")))
    assert shared.pack.tenant_id == ""
    async def shared_decision():  # type: ignore[no-untyped-def]
        decision = await clients["globex-sub"].decision(CLAIM)
        return decision if decision.pack == "expense_claim" else None
    decision = await eventually(shared_decision, "globex decides with the shared pack", 30)
    assert decision.pack_version == "2.0.0"


async def test_test_pack_reports_each_case(clients: dict[str, Client]) -> None:
    result = await clients["acme-admin"].packs.TestPack(PackTestRequest(
        source=expense_pack("9.9.9")))
    assert result.pack.version == "9.9.9"
    first, second = result.cases
    assert first.passed and not first.mismatches
    assert (first.actual_outcome, first.actual_rule) == ("auto_execute", "straight_through")
    assert first.actual_fields["amount"] == "42.50"
    assert not second.passed
    assert second.mismatches == [
        "outcome: expected escalate, got auto_execute",
        "rule: expected amount_over_limit, got straight_through"]
    # nothing was stored: 9.9.9 is unknown
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await clients["acme-audit"].packs.GetPack(GetPackRequest(name="expense_claim",
                                                                 version="9.9.9"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    # every shipped pack's golden cases pass through the real engine and Triton
    for name in sorted(builtin_packs()):
        shipped = await clients["acme-audit"].packs.TestPack(PackTestRequest(name=name))
        assert shipped.cases and all(c.passed for c in shipped.cases), (name, [
            (c.name, list(c.mismatches)) for c in shipped.cases if not c.passed])


async def test_golden_cases_are_routed_like_submitted_tasks(clients: dict[str, Client]) -> None:
    """A case is decided as a task submitted with the pack's name as its kind: the router
    and the tenant's routing policy come first, so a case can expect kind_mismatch."""
    ticket = builtin_packs()["support_ticket"]
    files = dict(ticket.files)
    cases = yaml.safe_load(files["tests.yaml"])
    cases = cases["tests"] if isinstance(cases, dict) else cases
    cases.append({"name": "an invoice sent as a ticket goes to a person",
                  "document": {"text": INVOICE_TEXT},
                  "expect": {"outcome": "escalate", "rule": "kind_mismatch"}})
    files["tests.yaml"] = yaml.safe_dump(cases).encode()
    result = await clients["acme-admin"].packs.TestPack(PackTestRequest(source=PackSource(
        files=[PackFile(path=name, content=body) for name, body in files.items()])))
    assert all(c.passed for c in result.cases), [
        (c.name, list(c.mismatches)) for c in result.cases if not c.passed]
    assert result.cases[-1].actual_rule == "kind_mismatch"


async def test_an_apply_reaches_every_replica_without_restart(
        clients: dict[str, Client], second_replica: Settings) -> None:
    """The replica that stored the pack is not the one asked: only the NOTIFY can tell it
    (its poll is ten minutes away)."""
    other = Client(second_replica, "acme-sub")
    try:
        before = await other.decision(CLAIM, kind="travel_claim")
        assert before.pack != "travel_claim"
        travel = EXPENSE_PACK.format(version="1.0.0", straight_rule="straight_through") \
            .replace("pack: expense_claim", "pack: travel_claim")
        await clients["acme-admin"].packs.ApplyPack(ApplyPackRequest(source=PackSource(
            files=[PackFile(path="pack.yaml", content=travel.encode())])))

        async def decided_with_it():  # type: ignore[no-untyped-def]
            decision = await other.decision(CLAIM, kind="travel_claim")
            return decision if decision.pack == "travel_claim" else None
        decision = await eventually(decided_with_it, "the other replica to use the pack", 60)
        assert decision.rule == "straight_through"
        # tenant settings travel the same way
        await clients["acme-admin"].packs.ApplyTenantSettings(ApplyTenantSettingsRequest(
            document=b"packs:\n  travel_claim: {parameters: {max_auto_amount: 1}}\n"))

        async def overridden():  # type: ignore[no-untyped-def]
            decision = await other.decision(CLAIM, kind="travel_claim")
            return decision if decision.rule == "amount_over_limit" else None
        await eventually(overridden, "the other replica to use the new settings", 60)
    finally:
        await other.channel.close()


async def test_a_media_type_the_pack_does_not_read_goes_to_a_person(
        clients: dict[str, Client]) -> None:
    admin = clients["globex-admin"]
    await admin.packs.ApplyPack(ApplyPackRequest(source=expense_pack("3.0.0")))
    envelope = TaskEnvelope(task_id=str(uuid.uuid4()), kind="expense_claim",
                            document=Document(content_type="application/json",
                                              body=b'{"Employee": "Ann Lee", "Total": 42.5}'))
    decision = (await admin.decide.Decide(DecideRequest(task=envelope))).decision
    assert (outcome(decision), decision.rule) == ("ESCALATE", "content_type_not_supported")
    assert "reads text/plain, not application/json" in decision.explanation
