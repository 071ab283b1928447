"""Every kind of mistake in a pack gives its own line: file, path, value, what is allowed.

Each case mutates the valid expense pack (tests/packs/conftest.py) in one way and asserts the
exact lines; the file-level cases feed bytes and files that are not a pack at all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from switchyard.packs import PackError, load_pack_files, validate_pack_files
from tests.packs.conftest import expense, files_of

#: (what is wrong, the mutation, the exact problem lines)
MUTATIONS: list[tuple[str, Callable[[dict[str, Any]], Any], list[str]]] = [
    ('pack name not lowercase',
     lambda d: d.update(pack="Expense-Claim"),
     ['pack.yaml: pack: "Expense-Claim": must be a lowercase name: a letter, then 1-62 letters, digits or _']),
    ("pack named like the router's class for everything else",
     lambda d: d.update(pack="other"),
     ['pack.yaml: pack: "other": reserved: the router\'s class for documents no pack automates']),
    ('version not semver',
     lambda d: d.update(version="1.0"),
     ['pack.yaml: version: "1.0": must be a version MAJOR.MINOR.PATCH, e.g. 1.0.0']),
    ('description missing',
     lambda d: d.pop("description"),
     ['pack.yaml: description: (missing): required']),
    ('unknown top-level key',
     lambda d: d.update(owner="me"),
     ['pack.yaml: owner: "me": unknown key; allowed: content_types, decision, description, enrichers, examples, extractor, fairness, fields, look_alikes, models, pack, parameters, plan, retention, review, tests, version']),
    ('unknown field type',
     lambda d: d["fields"]["amount"].update(type="currency"),
     ['pack.yaml: fields.amount.type: "currency": must be one of: string | money | number | integer | date | iban | email | enum | boolean | table']),
    ('table field without columns',
     lambda d: d["fields"].update(items={"type": "table"}),
     ['pack.yaml: fields.items.columns: (missing): a table field needs columns: {name: {type, labels}}']),
    ('columns and end on a field that is not a table',
     lambda d: d["fields"]["amount"].update(columns={"qty": {"type": "number"}}, end=["Sum"]),
     ['pack.yaml: fields.amount.columns: {"qty": {"type": "number"}}: only a table field has columns',
      'pack.yaml: fields.amount.end: ["Sum"]: only a table field has end']),
    ('a table column that is a table',
     lambda d: d["fields"].update(items={"type": "table", "columns": {"sub": {"type": "table"}}}),
     ['pack.yaml: fields.items.columns.sub.type: "table": must be one of: string | money | number | integer | date | iban | email | enum | boolean']),
    ('an enum column without values',
     lambda d: d["fields"].update(items={"type": "table", "columns": {"unit": {"type": "enum"}}}),
     ['pack.yaml: fields.items.columns.unit.values: (missing): an enum field needs values: [...]']),
    ('date_order on a field that is not a date',
     lambda d: d["fields"]["amount"].update(date_order="month_first"),
     ['pack.yaml: fields.amount.date_order: "month_first": only a date field has date_order']),
    ('an unknown date_order',
     lambda d: d["fields"]["claim_date"].update(date_order="year_first"),
     ['pack.yaml: fields.claim_date.date_order: "year_first": must be one of: day_first | month_first']),
    ('a protected attribute that is not a field, one that is not an enum, one twice',
     lambda d: d.update(fairness={"attributes": [{"field": "gender"}, {"field": "amount"},
                                                 {"field": "currency"}, {"field": "currency"}]}),
     ['pack.yaml: fairness.attributes[0].field: "gender": not a declared field',
      'pack.yaml: fairness.attributes[1].field: "amount": must be an enum field: its values are the groups compared',
      'pack.yaml: fairness.attributes[3].field: "currency": listed twice']),
    ('a parity limit outside (0, 1]',
     lambda d: d.update(fairness={"attributes": [{"field": "currency"}],
                                  "max_parity_difference": 1.5}),
     ['pack.yaml: fairness.max_parity_difference: 1.5: must be a number <= 1']),
    ('enum field without values',
     lambda d: d["fields"]["currency"].pop("values"),
     ['pack.yaml: fields.currency.values: (missing): an enum field needs values: [...]']),
    ('values on a non-enum field',
     lambda d: d["fields"]["amount"].update(values=["1"]),
     ['pack.yaml: fields.amount.values: ["1"]: only an enum field has values']),
    ('unknown data class',
     lambda d: d["fields"]["amount"].update(data_class="secret"),
     ['pack.yaml: fields.amount.data_class: "secret": must be one of: personal | derived | operational | health']),
    ('pattern without a capture group',
     lambda d: d["fields"]["amount"].update(pattern=r"\d+"),
     ['pack.yaml: fields.amount.pattern: "\\\\d+": must have exactly one capture group (has 0)']),
    ('pattern that is not a regex',
     lambda d: d["fields"]["amount"].update(pattern=r"(\d+"),
     ['pack.yaml: fields.amount.pattern: "(\\\\d+": not a valid regex: missing ), unterminated subpattern at position 0']),
    ('parameter default of the wrong type',
     lambda d: d["parameters"]["max_auto_amount"].update(default="500"),
     ['pack.yaml: parameters.max_auto_amount.default: "500": must be a number']),
    ('parameter default below its minimum',
     lambda d: d["parameters"]["max_auto_amount"].update(default=-5),
     ['pack.yaml: parameters.max_auto_amount.default: -5: must be >= 0']),
    ('list parameter with a non-string item',
     lambda d: d["parameters"]["blocked_employees"].update(default=[1]),
     ['pack.yaml: parameters.blocked_employees.default: [1]: must be a list of strings; 1 is not a string']),
    ('unknown parameter type',
     lambda d: d["parameters"]["max_auto_amount"].update(type="float"),
     ['pack.yaml: parameters.max_auto_amount.type: "float": must be one of: number | integer | string | boolean | list']),
    ('minimum on a string parameter',
     lambda d: d["parameters"]["approver_group"].update(minimum=1),
     ['pack.yaml: parameters.approver_group.minimum: 1: only number and integer parameters have minimum']),
    ('duplicate rule name',
     lambda d: d["decision"]["rules"][1].update(name="employee_blocked"),
     ['pack.yaml: decision.rules[1].name: "employee_blocked": duplicate rule name (also rules[0])']),
    ('rule named like an engine rule',
     lambda d: d["decision"]["rules"][1].update(name="no_rule_matched"),
     ['pack.yaml: decision.rules[1].name: "no_rule_matched": reserved for the engine; choose another name']),
    ('rule condition that is not CEL',
     lambda d: d["decision"]["rules"][1].update(when="fields.amount >"),
     ['pack.yaml: decision.rules[1].when: "fields.amount >": not valid CEL: Syntax error: mismatched input \'<EOF>\' at line 1, column 16']),
    ('rule comparing a number with a text',
     lambda d: d["decision"]["rules"][1].update(when="fields.amount > params.approver_group"),
     ['pack.yaml: decision.rules[1].when: "fields.amount > params.approver_group": fails on values of the declared types: No such overload: the operation is not defined for the given operand types (fields.amount is a money; params.approver_group is a string)']),
    ('payload template adding a double to an integer field',
     lambda d: d["plan"][0]["payload"].update(nights="${fields.nights + 1.0}"),
     ['pack.yaml: plan[0].payload.nights: ${fields.nights + 1.0}: fails on values of the declared types: No such overload: the operation is not defined for the given operand types']),
    ('explanation adding a text to an amount',
     lambda d: d["decision"]["rules"][1].update(explain="Claim of ${fields.amount + params.approver_group}"),
     ['pack.yaml: decision.rules[1].explain: ${fields.amount + params.approver_group}: fails on values of the declared types: Unsupported operation: float + string']),
    ('rule condition that is not true or false',
     lambda d: d["decision"]["rules"][1].update(when="fields.amount"),
     ['pack.yaml: decision.rules[1].when: "fields.amount": fails on values of the declared types: a condition must give true or false, not float 1.5 (fields.amount is a money)']),
    ('rule on an undeclared field',
     lambda d: d["decision"]["rules"][1].update(when="fields.total > 3.0"),
     ['pack.yaml: decision.rules[1].when: "fields.total > 3.0": unknown field fields.total; known: amount, claim_date, currency, employee, iban, nights']),
    ('rule on an undeclared parameter',
     lambda d: d["decision"]["rules"][1].update(when="fields.amount > params.limit"),
     ['pack.yaml: decision.rules[1].when: "fields.amount > params.limit": unknown parameter params.limit; known: approver_group, blocked_employees, max_auto_amount']),
    ('rule on an unknown name',
     lambda d: d["decision"]["rules"][1].update(when="amount > 3"),
     ['pack.yaml: decision.rules[1].when: "amount > 3": unknown name amount; allowed: extraction, fields, history, metadata, params, route, scores, task']),
    ('rule on plan-only steps',
     lambda d: d["decision"]["rules"][1].update(when="steps.x.status == 'ok'"),
     ['pack.yaml: decision.rules[1].when: "steps.x.status == \'ok\'": unknown name steps; allowed: extraction, fields, history, metadata, params, route, scores, task']),
    ('rule on an undeclared scorer',
     lambda d: d["decision"]["rules"][1].update(when="scores.risk > 0.5"),
     ['pack.yaml: decision.rules[1].when: "scores.risk > 0.5": unknown scorer scores.risk; known: none']),
    ('unknown outcome',
     lambda d: d["decision"]["rules"][1].update(outcome="approve"),
     ['pack.yaml: decision.rules[1].outcome: "approve": must be one of: auto_execute | escalate | reject']),
    ('review on a rejecting rule',
     lambda d: d["decision"]["rules"][0].update(review={"queue": "x"}),
     ['pack.yaml: decision.rules[0].review: {"queue": "x"}: only escalating rules have a review (this rule\'s outcome is reject)']),
    ('discrepancies on a rejecting rule',
     lambda d: d["decision"]["rules"][0].update(discrepancies="[]"),
     ['pack.yaml: decision.rules[0].discrepancies: "[]": only escalating rules have a discrepancies (this rule\'s outcome is reject)']),
    ('discrepancies on an unknown name',
     lambda d: d["decision"]["rules"][1].update(discrepancies="steps.check.output.list"),
     ['pack.yaml: decision.rules[1].discrepancies: "${steps.check.output.list}": unknown name steps; allowed: extraction, fields, history, metadata, params, route, scores, task']),
    ('unknown escalation reason',
     lambda d: d["decision"]["rules"][1].update(reason="BECAUSE"),
     ['pack.yaml: decision.rules[1].reason: "BECAUSE": must be one of: POLICY | LOW_CONFIDENCE | OTHER']),
    ('unknown review priority',
     lambda d: d["decision"]["rules"][1]["review"].update(priority="asap"),
     ['pack.yaml: decision.rules[1].review.priority: "asap": must be one of: urgent | high | normal | low']),
    ('SLA that is not a duration',
     lambda d: d["decision"]["rules"][1]["review"].update(sla="4 hours"),
     ['pack.yaml: decision.rules[1].review.sla: "4 hours": must be a duration such as 30s, 15m, 4h, 2d, 200ms']),
    ('SLA of zero',
     lambda d: d["decision"]["rules"][1]["review"].update(sla="0s"),
     ['pack.yaml: decision.rules[1].review.sla: "0s": must be longer than 0']),
    ('explanation template never closed',
     lambda d: d["decision"]["rules"][1].update(explain="Claim ${fields.amount"),
     ['pack.yaml: decision.rules[1].explain: "Claim ${fields.amount": \'${\' without a closing \'}\'']),
    ('explanation on an undeclared field',
     lambda d: d["decision"]["rules"][1].update(explain="Claim ${fields.sum}"),
     ['pack.yaml: decision.rules[1].explain: "${fields.sum}": unknown field fields.sum; known: amount, claim_date, currency, employee, iban, nights']),
    ('empty decision table',
     lambda d: d["decision"].update(rules=[]),
     ['pack.yaml: decision.rules: []: must have at least 1 item']),
    ('unknown hit policy',
     lambda d: d["decision"].update(hit_policy="last"),
     ['pack.yaml: decision.hit_policy: "last": must be one of: first | collect']),
    ('condition that is not true or false',
     lambda d: d["decision"]["rules"][2].update(when="1"),
     ['pack.yaml: decision.rules[2].when: "1": a condition must give true or false, not int 1']),
    ('constant condition that fails',
     lambda d: d["decision"]["rules"][2].update(when="1/0 == 1"),
     ['pack.yaml: decision.rules[2].when: "1/0 == 1": fails: division by zero in CEL expression']),
    ('step condition that is text',
     lambda d: d["plan"][0].update(when="'yes'"),
     ['pack.yaml: plan[0].when: "\'yes\'": a condition must give true or false, not str "yes"']),
    ('golden case of a content type the pack does not take',
     lambda d: d["tests"][0]["document"].update(content_type="application/xml"),
     ['pack.yaml: tests[0].document.content_type: "application/xml": not among the pack\'s '
      'content_types: text/plain, application/json']),
    ('zero attempts',
     lambda d: d["plan"][0]["retry"].update(max_attempts=0),
     ['pack.yaml: plan[0].retry.max_attempts: 0: must be an integer >= 1']),
    ('backoff above its maximum',
     lambda d: d["plan"][0]["retry"].update(backoff="10s"),
     ['pack.yaml: plan[0].retry.max_backoff: "5s": must be at least backoff (10s)']),
    ('duplicate step name',
     lambda d: d["plan"][2]["parallel"][1].update(name="create_claim"),
     ['pack.yaml: plan[2].parallel[1].name: "create_claim": duplicate step name (also plan[0])']),
    ('call step without a target',
     lambda d: d["plan"][0].pop("target"),
     ['pack.yaml: plan[0].target: (missing): required']),
    ('unknown connector',
     lambda d: d["plan"][0].update(connector="ftp"),
     ['pack.yaml: plan[0].connector: "ftp": unknown connector; use http, grpc, sql or a name registered in entry point group switchyard.connectors']),
    ('compensation on an approval',
     lambda d: d["plan"][1].update(compensate={"target": "x"}),
     ['pack.yaml: plan[1].compensate: {"target": "x"}: only a call step has compensate; an approval step has only approval:']),
    ('wait with a timer and a callback',
     lambda d: d["plan"][3]["wait"].update(callback="bank2"),
     ['pack.yaml: plan[3].wait: {"callback": "bank2", "duration": "2h", "name": "cooling_of…: a wait has duration: (a timer) or callback: (a callback), not both']),
    ('wait with neither',
     lambda d: d["plan"][3]["wait"].pop("duration"),
     ['pack.yaml: plan[3].wait: {"name": "cooling_off"}: a wait needs duration: (a timer) or callback: (with an optional timeout:)']),
    ('timeout on a timer',
     lambda d: d["plan"][3]["wait"].update(timeout="1h"),
     ['pack.yaml: plan[3].wait.timeout: "1h": only a callback wait has a timeout (a timer\'s duration is its limit)']),
    ('template on a later step',
     lambda d: d["plan"][0]["payload"].update(x="${steps.book_expense.output}"),
     ['pack.yaml: plan[0].payload.x: "${steps.book_expense.output}": unknown earlier step steps.book_expense; known: none']),
    ('template on a parallel sibling',
     lambda d: d["plan"][2]["parallel"][1].update(payload={"x": "${steps.notify_employee.status}"}),
     ['pack.yaml: plan[2].parallel[1].payload.x: "${steps.notify_employee.status}": unknown earlier step steps.notify_employee; known: create_claim, manager_ok']),
    ('unknown member of a step',
     lambda d: d["plan"][2]["parallel"][1].update(payload={"x": "${steps.create_claim.result}"}),
     ['pack.yaml: plan[2].parallel[1].payload.x: "${steps.create_claim.result}": unknown member steps.create_claim.result; known: output, status']),
    ('decision-only name in a step condition',
     lambda d: d["plan"][0].update(when="route.confidence > 0.5"),
     ['pack.yaml: plan[0].when: "route.confidence > 0.5": unknown name route; allowed: fields, metadata, params, steps, task']),
    ('parallel block of one',
     lambda d: d["plan"][2]["parallel"].pop(),
     ['pack.yaml: plan[2].parallel: [{"name": "notify_employee", "payload": {"claim": "${steps.…: must have at least 2 items']),
    ('plan entry of two forms',
     lambda d: d["plan"].append({"approval": {"name": "a"}, "wait": {"name": "b", "duration": "1h"}}),
     ['pack.yaml: plan[5]: {"approval": {"name": "a"}, "wait": {"duration": "1h", "nam…: a step is one of a call, approval:, wait: or parallel:']),
    ('plan entry that is text',
     lambda d: d["plan"].append("notify"),
     ['pack.yaml: plan[5]: "notify": must be a mapping: a call step, or approval:, wait: or parallel:']),
    ('approval group on an undeclared parameter',
     lambda d: d["plan"][1]["approval"].update(group="${params.nope}"),
     ['pack.yaml: plan[1].approval.group: "${params.nope}": unknown parameter params.nope; known: approver_group, blocked_employees, max_auto_amount']),
    ('retention of zero days',
     lambda d: d.update(retention={"days": 0}),
     ['pack.yaml: retention.days: 0: must be an integer >= 1']),
    ('router confidence above 1',
     lambda d: d.update(models={"router": {"min_confidence": 2}}),
     ['pack.yaml: models.router.min_confidence: 2: must be a number <= 1']),
    ('scorer features not registered',
     lambda d: d.update(models={"scorers": [{"name": "risk", "features": "nope"}]}),
     ['pack.yaml: models.scorers[0].features: "nope": unknown features; register it in entry point group switchyard.features']),
    ('enricher not registered',
     lambda d: d.update(enrichers=["crm"]),
     ['pack.yaml: enrichers[0]: "crm": unknown enricher; register it in entry point group switchyard.enrichers']),
    ('extractor not registered',
     lambda d: d.update(extractor="ocr"),
     ['pack.yaml: extractor: "ocr": unknown extractor; use labels or a name registered in entry point group switchyard.extractors']),
    ('golden case expects an unknown rule',
     lambda d: d["tests"][0]["expect"].update(rule="tiny"),
     ['pack.yaml: tests[0].expect.rule: "tiny": no such rule; the pack\'s rules: employee_blocked, amount_over_limit, straight_through']),
    ('golden case expects another outcome than its rule',
     lambda d: d["tests"][0]["expect"].update(outcome="reject"),
     ['pack.yaml: tests[0].expect.outcome: "reject": rule straight_through decides auto_execute, not reject']),
    ('golden case expects an undeclared field',
     lambda d: d["tests"][0]["expect"].update(fields={"sum": "1"}),
     ['pack.yaml: tests[0].expect.fields.sum: "1": no such field; declared: amount, claim_date, currency, employee, iban, nights']),
    ('golden case overrides an unknown parameter',
     lambda d: d["tests"][0].update(parameters={"limit": 1}),
     ['pack.yaml: tests[0].parameters.limit: 1: unknown parameter; declared: approver_group, blocked_employees, max_auto_amount']),
    ('golden case parameter of the wrong type',
     lambda d: d["tests"][0].update(parameters={"max_auto_amount": "x"}),
     ['pack.yaml: tests[0].parameters.max_auto_amount: "x": must be a number']),
    ('golden case without text',
     lambda d: d["tests"][0]["document"].pop("text"),
     ['pack.yaml: tests[0].document.text: (missing): required']),
    ('tests file that is not there',
     lambda d: d.update(tests="golden.yaml"),
     ['pack.yaml: tests: "golden.yaml": no such file in the pack folder']),
    ('examples file that is not there',
     lambda d: d.update(examples="ex.jsonl"),
     ['pack.yaml: examples: "ex.jsonl": no such file in the pack folder']),
    ('review group that is not text',
     lambda d: d["decision"]["rules"][1]["review"].update(group=3),
     ['pack.yaml: decision.rules[1].review.group: 3: must be a string']),
]


@pytest.mark.parametrize(("mistake", "mutate", "expected"), MUTATIONS,
                         ids=[m[0] for m in MUTATIONS])
def test_each_mistake_is_reported_exactly(mistake: str,
                                          mutate: Callable[[dict[str, Any]], Any],
                                          expected: list[str]) -> None:
    doc = expense()
    mutate(doc)
    assert validate_pack_files(files_of(doc)) == expected
    with pytest.raises(PackError) as caught:
        load_pack_files(files_of(doc))
    assert caught.value.problems == expected
    assert str(caught.value) == "\n".join(expected)


def test_the_unmutated_pack_is_valid() -> None:
    assert validate_pack_files(files_of(expense())) == []


def test_all_mistakes_at_once_are_all_reported() -> None:
    """The structural pass reports every error, not the first."""
    doc = expense()
    doc["version"] = "one"
    doc["fields"]["amount"]["type"] = "currency"
    doc["plan"][0]["retry"]["max_attempts"] = 0
    doc["retention"] = {"days": -1}
    assert validate_pack_files(files_of(doc)) == [
        'pack.yaml: fields.amount.type: "currency": must be one of: string | money | number | '
        'integer | date | iban | email | enum | boolean | table',
        "pack.yaml: plan[0].retry.max_attempts: 0: must be an integer >= 1",
        "pack.yaml: retention.days: -1: must be an integer >= 1",
        'pack.yaml: version: "one": must be a version MAJOR.MINOR.PATCH, e.g. 1.0.0',
    ]


def test_a_mistake_past_the_declarations_does_not_hold_back_the_rules_typing() -> None:
    """A reveal of no field and a rule comparing a number with a text, in one pass: the
    rules are typed whenever the fields, parameters and scorers are declared right (a trial
    integrator had to validate three times to see three mistakes)."""
    doc = expense()
    doc.setdefault("review", {})["reveal"] = ["employee", "nonexistent"]
    doc["decision"]["rules"][1]["when"] = "fields.amount > params.approver_group"
    problems = validate_pack_files(files_of(doc))
    assert 'pack.yaml: review.reveal[1]: "nonexistent": not a declared field' in problems
    assert any(p.startswith('pack.yaml: decision.rules[1].when: "fields.amount > '
                            'params.approver_group": fails on values of the declared types')
               for p in problems), problems


BOMB = ("a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
        "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
        "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\n")
#: (what is wrong, the files, the exact problem lines)
FILES: list[tuple[str, dict[str, bytes], list[str]]] = [
    ("no pack.yaml", {"README.md": b"x"},
     ["pack.yaml: (root): (missing): the pack folder has no pack.yaml"]),
    ("YAML syntax error", files_of("pack: x\n  version: [1\n"),
     ['pack.yaml: line 2, column 10: "version: [1": not valid YAML: mapping values are not '
      'allowed in this context']),
    ("an unclosed flow mapping, noticed lines later",
     files_of("pack: x\nreview: {queue: q, priority: normal\n\nplan: []\n"),
     ['pack.yaml: line 4, column 5: "plan: []": not valid YAML: did not find expected \',\' '
      "or '}' (while parsing a flow mapping that began at line 2: \"review: {queue: q, "
      'priority: normal")']),
    ("not UTF-8", files_of(b"pack: \xff\n"),
     ["pack.yaml: (root): byte 0xff at offset 6: not UTF-8 text"]),
    ("NUL in the text", files_of(b"pack: a\x00\n"),
     ["pack.yaml: (root): NUL at offset 7: not text (NUL character)"]),
    ("a list, not a mapping", files_of("- a\n- b\n"),
     ['pack.yaml: (root): ["a", "b"]: must be a mapping of pack keys (pack:, version:, ...)']),
    ("empty pack.yaml", files_of(""),
     ["pack.yaml: (root): null: must be a mapping of pack keys (pack:, version:, ...)"]),
    ("two YAML documents", files_of("pack: a\n---\npack: b\n"),
     ["pack.yaml: line 2, column 1: ---: one YAML document only, found a second"]),
    ("nested too deep", files_of("a: " + "[" * 100 + "]" * 100),
     ["pack.yaml: line 1, column 67: depth 65: nested deeper than 64 levels"]),
    ("alias bomb", files_of(BOMB),
     ["pack.yaml: line 6, column 5: (document): expands to more than 200000 values "
      "(aliases?)"]),
    ("alias cycle", files_of("a: &a [*a]\n"),
     ["pack.yaml: line 1, column 8: *a: an alias inside its own anchor (a cycle)"]),
    ("a Python object tag (never constructed)",
     files_of('pack: !!python/object/apply:os.system ["echo hi"]\n'),
     ['pack.yaml: line 1, column 7: "pack: !!python/object/apply:os.system [\\"echo hi\\"]": '
      "not valid YAML: could not determine a constructor for the tag "
      "'tag:yaml.org,2002:python/object/apply:os.system'"]),
    ("an alias to no anchor", files_of("pack: &a x\nversion: *b\n"),
     ['pack.yaml: line 2, column 10: "version: *b": not valid YAML: found undefined alias']),
    ("a key that is not text", files_of("pack: x\n1: y\n"),
     ["pack.yaml: (root): 1: keys must be text (quote them)"]),
    ("a pack over 4 MiB", files_of(expense(), **{"big.bin": b"x" * (4 * 1024 * 1024 + 1)}),
     ["(pack): (root): " + str(4 * 1024 * 1024 + 1 + len(files_of(expense())["pack.yaml"]))
      + " bytes: larger than the 4 MiB a pack may be"]),
    ("a file name with a folder", files_of(expense(), **{"../etc": b"x"}),
     ['(pack): (root): "../etc": not a plain file name (letters, digits, _ . -; no folders)']),
    ("a date where text belongs",
     files_of("pack: expense_claim\nversion: 2024-01-01\ndescription: d\n"
              "decision: {rules: [{name: a, when: 'true', outcome: reject}]}\nplan: []\n"),
     ['pack.yaml: version: "2024-01-01": must be a string (quote it: YAML reads this as a '
      'date)']),
    ("bad examples lines",
     files_of(expense(), **{"examples.jsonl": b'{"text": "ok"}\nnot json\n{"txt": "x"}\n'
                                              b'{"text": ""}\n'}),
     ['examples.jsonl: line 2: "not json": not JSON: Expecting value: line 1 column 1 (char 0)',
      'examples.jsonl: line 3: {"txt": "x"}: must be an object with a "text" string',
      'examples.jsonl: line 4: {"text": ""}: text must not be empty']),
    ("a tests file with a mistake",
     files_of({k: v for k, v in expense().items() if k != "tests"},
              **{"tests.yaml": b"- name: a\n  document: {text: t}\n  expect: {rule: nope}\n"}),
     ["tests.yaml: [0].expect.rule: \"nope\": no such rule; the pack's rules: employee_blocked, "
      "amount_over_limit, straight_through"]),
    ("a tests file of the wrong shape",
     files_of({k: v for k, v in expense().items() if k != "tests"},
              **{"tests.yaml": b"tests: {a: 1}\n"}),
     ['tests.yaml: tests: {"a": 1}: must be a list']),
]


@pytest.mark.parametrize(("mistake", "files", "expected"), FILES, ids=[f[0] for f in FILES])
def test_each_file_mistake_is_one_line(mistake: str, files: dict[str, bytes],
                                       expected: list[str]) -> None:
    assert validate_pack_files(files) == expected
    with pytest.raises(PackError) as caught:
        load_pack_files(files)
    assert caught.value.problems == expected


def test_files_that_are_not_a_mapping_of_bytes() -> None:
    assert validate_pack_files(["pack.yaml"]) == [  # type: ignore[arg-type]
        "(pack): (root): list: must be a mapping of file name to bytes"]
    assert validate_pack_files({"pack.yaml": "text"}) == [  # type: ignore[dict-item]
        "pack.yaml: (root): str: content must be bytes"]
