"""Loading a valid pack: what the model holds, the plan protobuf, tenant settings."""

from __future__ import annotations

import pytest
import yaml
from google.protobuf import json_format

from switchyard.packs import (
    NO_RULE_MATCHED,
    PackError,
    builtin_packs,
    compile_condition,
    evaluate_condition,
    load_pack,
    load_pack_files,
    parse_duration,
    parse_tenant_settings,
    plan_to_proto,
    resolve_parameters,
    tenant_settings_from_object,
    validate_pack_files,
)
from switchyard.v1 import Connector, StepKind
from tests.packs.conftest import expense, files_of


def test_expense_pack_loads_with_every_part() -> None:
    pack = load_pack_files(files_of(expense()))
    assert (pack.name, pack.version, pack.content_types) == (
        "expense_claim", "1.0.0", ("text/plain", "application/json"))
    assert pack.fields["amount"].type == "money"
    assert pack.fields["amount"].data_class == "derived"
    assert pack.fields["iban"].data_class == "personal"  # the safe default
    assert pack.fields["currency"].values == ("USD", "EUR", "GBP")
    assert pack.defaults == {"max_auto_amount": 500, "approver_group": "managers",
                             "blocked_employees": []}
    assert pack.router_min_confidence == 0.8
    assert pack.extractor == "labels"
    assert pack.hit_policy == "first"
    assert [r.name for r in pack.rules] == ["employee_blocked", "amount_over_limit",
                                            "straight_through"]
    over = pack.rules[1]
    assert over.review is not None and over.reason == "POLICY"
    assert (over.review.queue, over.review.group, over.review.priority, over.review.sla_s,
            over.review.four_eyes, over.review.priority_bucket) == (
        "finance", "managers", "high", 4 * 3600.0, True, 1)
    assert pack.rules[0].review is None and pack.rules[0].reason == ""
    assert pack.retention_days == 365
    assert [(s.name, s.kind, s.parallel_group) for s in pack.plan] == [
        ("create_claim", "call", ""), ("manager_ok", "approval", ""),
        ("notify_employee", "call", "parallel_3"), ("book_expense", "call", "parallel_3"),
        ("cooling_off", "wait", ""), ("bank_confirmation", "wait", "")]
    create = pack.plan[0]
    assert (create.timeout_s, create.max_attempts, create.backoff_s, create.max_backoff_s) == (
        5.0, 4, 0.2, 5.0)
    assert create.compensation is not None
    assert create.compensation.name == "undo_create_claim"
    assert pack.plan[3].compensation.operation == "DELETE"  # the default undo
    assert pack.plan[4].wait.duration_s == 7200.0
    assert (pack.plan[5].wait.callback, pack.plan[5].wait.timeout_s) == ("bank", 86400.0)
    case = pack.tests[0]
    assert (case.expect_outcome, case.expect_rule, case.expect_fields, case.parameters,
            case.metadata) == ("auto_execute", "straight_through", {"amount": "42.50"},
                               {"max_auto_amount": 100}, {"source": "test"})
    assert len(pack.digest) == 64


def test_rules_evaluate_against_a_context() -> None:
    pack = load_pack_files(files_of(expense()))
    ctx = {"fields": {"employee": "Ann Lee", "amount": 900.0}, "params": pack.defaults,
           "metadata": {}, "task": {}, "route": {}, "scores": {}, "extraction": {},
           "history": {}}
    assert [evaluate_condition(r.condition, ctx) for r in pack.rules] == [False, True, True]
    explain = pack.rules[1].explain_template
    assert explain is not None and explain.render(ctx) == "Claim of 900 above 500"


def test_digest_follows_every_file() -> None:
    files = files_of(expense())
    first = load_pack_files(files).digest
    assert load_pack_files(dict(files)).digest == first
    files["examples.jsonl"] = b'{"text": "Employee: Ann\\nTotal: 3 EUR"}\n'
    changed = load_pack_files(files)
    assert changed.digest != first
    assert changed.examples == ("Employee: Ann\nTotal: 3 EUR",)


def test_look_alikes_are_read_from_their_file() -> None:
    files = files_of(expense())
    assert load_pack_files(files).look_alikes == ()
    files["look_alikes.jsonl"] = b'{"text": "PURCHASE ORDER\\nTotal: 3 EUR", "what": "a PO"}\n'
    pack = load_pack_files(files)
    assert pack.look_alikes == ("PURCHASE ORDER\nTotal: 3 EUR",)
    assert pack.examples == load_pack_files(files_of(expense())).examples
    doc = expense()
    doc["look_alikes"] = "counter.jsonl"
    with pytest.raises(PackError) as raised:
        load_pack_files(files_of(doc))
    assert raised.value.problems == ['pack.yaml: look_alikes: "counter.jsonl": no such file in '
                                     'the pack folder']
    with pytest.raises(PackError) as raised:
        load_pack_files(files_of(expense(), **{"look_alikes.jsonl": b'{"txt": "x"}\n'}))
    assert raised.value.problems == [
        'look_alikes.jsonl: line 1: {"txt": "x"}: must be an object with a "text" string']


def test_tests_yaml_file_is_read() -> None:
    doc = expense()
    cases = doc.pop("tests")
    pack = load_pack_files(files_of(doc, **{"tests.yaml": yaml.safe_dump(cases).encode()}))
    assert [c.name for c in pack.tests] == ["small claim goes straight through"]
    doc["tests"] = "golden.yaml"
    pack = load_pack_files(files_of(
        doc, **{"golden.yaml": yaml.safe_dump({"tests": cases}).encode()}))
    assert len(pack.tests) == 1


def test_plan_to_proto_carries_every_step_feature() -> None:
    pack = load_pack_files(files_of(expense()))
    params = resolve_parameters(pack, {"approver_group": "finance_leads"})
    plan = plan_to_proto(pack, params)
    assert (plan.pack, plan.pack_version) == ("expense_claim", "1.0.0")
    assert json_format.MessageToDict(plan.parameters) == {
        "max_auto_amount": 500.0, "approver_group": "finance_leads", "blocked_employees": []}
    assert [s.step_id for s in plan.steps] == [
        "1-create_claim", "2-manager_ok", "3-notify_employee", "4-book_expense",
        "5-cooling_off", "6-bank_confirmation"]
    create = plan.steps[0]
    assert (create.kind, create.connector, create.target, create.operation) == (
        StepKind.STEP_KIND_CALL, Connector.CONNECTOR_HTTP, "http://erp/claims", "POST")
    assert create.payload["amount"] == "${fields.amount}"  # templates stay templates
    assert create.when == "fields.amount > 0"
    assert (create.timeout.ToMilliseconds(), create.max_attempts,
            create.backoff_initial.ToMilliseconds(), create.backoff_max.ToMilliseconds()) == (
        5000, 4, 200, 5000)
    assert (create.compensation.name, create.compensation.operation,
            create.compensation.target) == ("undo_create_claim", "DELETE",
                                            "http://erp/claims/{idempotency_key}")
    approval = plan.steps[1]
    assert approval.kind == StepKind.STEP_KIND_APPROVAL
    assert (approval.approval.reviewer_group, approval.approval.queue,
            approval.approval.instructions, approval.approval.sla.ToSeconds()) == (
        "finance_leads", "finance", "Approve the claim", 86400)
    assert {plan.steps[2].parallel_group, plan.steps[3].parallel_group} == {"parallel_3"}
    assert plan.steps[3].operation == "book_expense"  # the default operation: the step name
    timer, callback = plan.steps[4], plan.steps[5]
    assert (timer.kind, timer.wait.duration.ToSeconds(), timer.wait.callback) == (
        StepKind.STEP_KIND_WAIT, 7200, "")
    assert (callback.wait.callback, callback.wait.timeout.ToSeconds()) == ("bank", 86400)


def test_plan_target_templates_over_params_are_filled_in() -> None:
    doc = expense()
    doc["parameters"]["erp"] = {"type": "string", "default": "http://erp"}
    doc["plan"][0]["target"] = "${params.erp}/claims/{task_id}"
    pack = load_pack_files(files_of(doc))
    assert plan_to_proto(pack).steps[0].target == "http://erp/claims/{task_id}"
    assert plan_to_proto(pack, {**pack.defaults, "erp": "http://erp2"}).steps[0].target == \
        "http://erp2/claims/{task_id}"


def test_resolve_parameters_and_its_mistakes() -> None:
    pack = load_pack_files(files_of(expense()))
    assert resolve_parameters(pack, {"max_auto_amount": 1000})["max_auto_amount"] == 1000
    assert resolve_parameters(pack)["approver_group"] == "managers"
    # number parameters are doubles in CEL, whether the YAML wrote 500 or 500.0
    assert isinstance(resolve_parameters(pack)["max_auto_amount"], float)
    assert isinstance(resolve_parameters(pack, {"max_auto_amount": 7})["max_auto_amount"], float)
    doubled = compile_condition("params.max_auto_amount * 2.0 == 1000.0", "r")
    assert evaluate_condition(doubled, {"params": resolve_parameters(pack)})
    with pytest.raises(PackError) as caught:
        resolve_parameters(pack, {"max_auto_amount": -1, "limit": 3})
    assert caught.value.problems == [
        "settings.yaml: parameters.limit: 3: unknown parameter of pack expense_claim; declared: "
        "approver_group, blocked_employees, max_auto_amount",
        "settings.yaml: parameters.max_auto_amount: -1: must be >= 0",
    ] or caught.value.problems == [
        "settings.yaml: parameters.max_auto_amount: -1: must be >= 0",
        "settings.yaml: parameters.limit: 3: unknown parameter of pack expense_claim; declared: "
        "approver_group, blocked_employees, max_auto_amount",
    ]


def test_tenant_settings_parse_and_defaults() -> None:
    pack = load_pack_files(files_of(expense()))
    packs = {"expense_claim": pack}
    settings = parse_tenant_settings(
        b"packs:\n  expense_claim:\n    version: 1.0.0\n    parameters: {max_auto_amount: 900}\n",
        packs)
    assert settings.enabled("expense_claim")
    assert settings.for_pack("expense_claim").version == "1.0.0"
    assert settings.overrides("expense_claim") == {"max_auto_amount": 900}
    assert settings.enabled("not_named")  # packs not named keep their defaults
    assert not parse_tenant_settings(b"packs: {expense_claim: {enabled: false}}",
                                     packs).enabled("expense_claim")
    assert parse_tenant_settings(b"", packs).packs == {}


def test_tenant_settings_mistakes_are_one_line_each() -> None:
    packs = {"expense_claim": load_pack_files(files_of(expense()))}
    with pytest.raises(PackError) as caught:
        parse_tenant_settings(b"packs:\n  expense_claim: {enabled: 1, version: v2}\n"
                              b"  payroll: {}\n", packs)
    assert caught.value.problems == [
        'settings.yaml: packs.expense_claim.enabled: 1: must be true or false',
        'settings.yaml: packs.expense_claim.version: "v2": must be a version MAJOR.MINOR.PATCH, '
        'e.g. 1.0.0',
    ]
    with pytest.raises(PackError) as caught:
        parse_tenant_settings(b"packs:\n  expense_claim: {parameters: {max_auto_amount: "
                              b"lots}}\n  payroll: {}\n", packs)
    assert caught.value.problems == [
        'settings.yaml: packs.expense_claim.parameters.max_auto_amount: "lots": must be a number',
        "settings.yaml: packs.payroll: {}: unknown pack; known: expense_claim",
    ]
    with pytest.raises(PackError) as caught:
        tenant_settings_from_object({"packs": {"expense_claim": {"enabled": "no"}}}, packs,
                                    "policy.yaml", ["tenants", "acme"])
    assert caught.value.problems == [
        'policy.yaml: tenants.acme.packs.expense_claim.enabled: "no": must be true or false']
    with pytest.raises(PackError) as caught:
        parse_tenant_settings(b"\xff\xfe", packs)
    assert caught.value.problems == [
        "settings.yaml: (root): byte 0xff at offset 0: not UTF-8 text"]


def test_durations() -> None:
    assert [parse_duration(t) for t in ("30s", "15m", "4h", "2d", "200ms", "1h30m")] == [
        30, 900, 14400, 172800, 0.2, 5400]
    assert parse_duration("4 hours") is None and parse_duration("") is None


def test_builtin_packs_ship_and_load(tmp_path) -> None:
    packs = builtin_packs()
    assert "support_ticket" in packs
    ticket = packs["support_ticket"]
    assert ticket.rules[-1].name == "confident_route"
    assert len(ticket.examples) >= 40 and len(ticket.tests) >= 3
    assert NO_RULE_MATCHED not in {r.name for r in ticket.rules}


def test_load_pack_reads_a_folder(tmp_path) -> None:
    for name, data in files_of(expense(), **{"README.md": b"notes"}).items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / ".hidden").write_bytes(b"x")
    pack = load_pack(tmp_path)
    assert set(pack.files) == {"pack.yaml", "README.md"}
    assert validate_pack_files(pack.files) == []
    with pytest.raises(PackError) as caught:
        load_pack(tmp_path / "missing")
    assert caught.value.problems[0].endswith(": (missing): not a folder")


def test_review_defaults_leave_queue_and_sla_to_the_tenant() -> None:
    doc = expense()
    del doc["review"]
    doc["decision"]["rules"][1]["review"] = {"group": "managers"}
    pack = load_pack_files(files_of(doc))
    assert (pack.review.queue, pack.review.sla, pack.review.sla_s, pack.review.priority) == (
        "", "", None, "normal")
    rule_review = pack.rules[1].review
    assert rule_review is not None
    assert (rule_review.group, rule_review.queue, rule_review.sla_s) == ("managers", "", None)
    for shipped in builtin_packs().values():
        assert shipped.review.sla_s is None and shipped.review.queue == "", shipped.name


def test_two_loads_of_the_same_files_are_equal() -> None:
    files = files_of(expense())
    assert load_pack_files(files) == load_pack_files(dict(files))


def test_a_look_alike_is_known_by_its_title_in_the_head_unless_the_head_names_the_type() -> None:
    doc = expense()
    doc.setdefault("models", {})["router"] = {
        "titles": ["expense claim", "Spesenabrechnung"],
        "look_alike_titles": ["mileage log", "budget request"]}
    pack = load_pack_files(files_of(doc))
    assert pack.look_alike_title("Acme Ltd\nMILEAGE LOG\nTotal 40 km") == "mileage log"
    # at the start of a cell of a laid-out line, its number beside it
    assert pack.look_alike_title("Acme Ltd | Budget Request No: 7\nTotal 9") == "budget request"
    # a title of the type's own in the head (a compound's last part too) wins
    assert pack.look_alike_title("Expense claim / mileage log\nTotal 9") is None
    assert pack.look_alike_title("Reise-Spesenabrechnung\nMileage log\nTotal 9") is None
    # a key with its value names a document referred to, no title; beyond the head, nothing
    assert pack.look_alike_title("Acme Ltd\nBudget request: BR-77\nTotal 9") is None
    assert pack.look_alike_title("\n".join(["Acme Ltd"] * 8 + ["Mileage log"])) is None
    assert pack.look_alike_title("Acme Ltd\nMileage logbook") is None  # a word, not a title
    assert load_pack_files(files_of(expense())).look_alike_title("Mileage log") is None


def test_the_documents_own_title_is_a_cell_of_its_head_alone_or_with_its_number() -> None:
    doc = expense()
    doc.setdefault("models", {})["router"] = {
        "titles": ["expense claim", "Spesenabrechnung"], "look_alike_titles": ["mileage log"]}
    pack = load_pack_files(files_of(doc))
    assert pack.own_title("Acme Ltd\nEXPENSE CLAIM\nTotal 40") == "EXPENSE CLAIM"
    assert pack.own_title("Acme Ltd | Expense claim No. EC-7\nTotal 9") == "Expense claim No. EC-7"
    assert pack.own_title("Acme Ltd      Spesenabrechnung 2024/3\n") == "Spesenabrechnung 2024/3"
    # a column's heading or a key names a document referred to; a look-alike's title wins
    assert pack.own_title("Date | Expense claim no | Amount\n1.2. | EC-7 | 9") is None
    assert pack.own_title("Acme Ltd\nExpense claim date: 1.2.2024") is None
    assert pack.own_title("MILEAGE LOG\nExpense claim\nTotal 9") is None
    assert pack.own_title("\n".join(["Acme Ltd"] * 8 + ["Expense claim"])) is None
    assert load_pack_files(files_of(expense())).own_title("Expense claim") is None


def test_router_signatures_recognise_a_format_in_the_head_of_the_text() -> None:
    doc = expense()
    doc.setdefault("models", {})["router"] = {"signatures": [["EXPENSE-V1|", "|CLAIM"]]}
    pack = load_pack_files(files_of(doc))
    assert pack.router_signatures == (("EXPENSE-V1|", "|CLAIM"),)
    assert pack.recognises("EXPENSE-V1|acme|CLAIM|42")
    assert not pack.recognises("EXPENSE-V1|acme|REFUND|42")    # every string of one signature
    assert not pack.recognises("x" * 2000 + "EXPENSE-V1||CLAIM")  # only the head is looked at
    assert not load_pack_files(files_of(expense())).recognises("EXPENSE-V1|acme|CLAIM")
    # a signature too short to mean anything, or an empty one, is a mistake named by its path
    for bad in ([["MS"]], [[]], "MSH|"):
        doc["models"]["router"] = {"signatures": bad}
        with pytest.raises(PackError) as caught:
            load_pack_files(files_of(doc))
        assert any("models.router.signatures" in line for line in caught.value.problems), (
            bad, caught.value.problems)


def test_one_pack_matching_names_the_type_and_two_leave_it_to_the_router() -> None:
    from services.decision.engine import signature_match
    from services.decision.packs import ActivePack

    def active(name: str, signatures: list[list[str]]) -> ActivePack:
        doc = expense()
        doc["pack"] = name
        doc.setdefault("models", {})["router"] = {"signatures": signatures}
        return ActivePack(load_pack_files(files_of(doc)), {})

    adt = active("admissions", [["MSH|", "|ADT^A01"]])
    any_hl7 = active("hl7_inbox", [["MSH|"]])
    message = "MSH|^~\\&|ADT1|HOSP|||202611051230||ADT^A01|1|P|2.5\r"
    assert signature_match([adt], message).name == "admissions"  # type: ignore[union-attr]
    assert signature_match([adt, any_hl7], message) is None
    assert signature_match([adt], "Invoice no: 1") is None


@pytest.mark.parametrize("head, recognised", [
    ("DANFE\nDOCUMENTO AUXILIAR DA NOTA FISCAL ELETRÔNICA\nCHAVE DE ACESSO\n3515...", True),
    ("DANFSe v1.0\nDocumento Auxiliar da NFS-e\nNúmero da NFS-e\n42", True),
    ("增值税电子普通发票 | 发票代码: 031001900211\n发票号码: 20481234", True),
    ("电子发票（增值税专用发票）\n发票号码: 24312000000012345678", True),
    ("Olá, recebi o DANFE da nota errada, podem reenviar?", False),   # one label: a letter
    ("请问发票号码 20481234 的发票什么时候寄出？", False),
])
def test_the_invoice_pack_knows_national_e_invoice_printouts(head: str, recognised: bool
                                                               ) -> None:
    assert builtin_packs()["invoice"].recognises(head) is recognised
