"""CEL conditions, templates and typed fields: the one place decision and executor share."""

from __future__ import annotations

import pytest

from switchyard.packs import (
    PLAN_VARIABLES,
    ExpressionError,
    Names,
    Template,
    compile_condition,
    evaluate_condition,
    typed_fields,
)


def test_condition_compiles_and_evaluates() -> None:
    cond = compile_condition("fields.amount > params.limit && metadata.source == 'erp'",
                             "rule big")
    ctx = {"fields": {"amount": 12.5}, "params": {"limit": 10}, "metadata": {"source": "erp"}}
    assert evaluate_condition(cond, ctx) is True
    assert cond.evaluate({**ctx, "params": {"limit": 20}}) is False


def test_condition_names_are_checked() -> None:
    with pytest.raises(ValueError, match=r"rule x: unknown name amount; allowed: extraction, "
                                         r"fields, history, metadata, params, route, scores, task"):
        compile_condition("amount > 3", "rule x")
    names = Names(fields=frozenset({"amount"}), params=frozenset({"limit"}),
                  scores=frozenset())
    with pytest.raises(ValueError, match=r"unknown field fields.total; known: amount"):
        compile_condition("fields.total > params.limit", "r", names)
    with pytest.raises(ValueError, match=r"unknown parameter params.max; known: limit"):
        compile_condition("fields.amount > params.max", "r", names)
    with pytest.raises(ValueError, match=r"unknown scorer scores.risk; known: none"):
        compile_condition("scores.risk > 0.5", "r", names)
    with pytest.raises(ValueError, match=r"unknown member route.score; known: confidence, label"):
        compile_condition("route.score > 0.5", "r", names)
    # comprehension variables and names inside strings are not mistaken for context names
    compile_condition("[1, 2].exists(v, v > 1) && 'fields.nope' != ''", "r", names)
    with pytest.raises(ValueError, match="not valid CEL"):
        compile_condition("fields.amount >", "r", names)


def test_evaluation_errors_name_their_rule() -> None:
    cond = compile_condition("fields.amount > 3", "rule big")
    with pytest.raises(ExpressionError, match=r"rule big: no such key 'amount'"):
        evaluate_condition(cond, {"fields": {}})
    with pytest.raises(ExpressionError, match="rule big"):
        evaluate_condition(cond, {"fields": {"amount": None}})
    with pytest.raises(ExpressionError, match="must give true or false"):
        evaluate_condition(compile_condition("fields.amount", "rule big"),
                           {"fields": {"amount": 1}})


def test_template_renders_typed_values_and_text() -> None:
    template = Template({"amount": "${fields.amount}", "note": "claim ${task.task_id} of "
                         "${fields.amount} (${fields.ok})", "raw": "{task_id}", "n": 3,
                         "items": ["${fields.amount * 2.0}", "${ {'a': [1]} }"],
                         "meta": "${metadata}"}, "step s", PLAN_VARIABLES)
    out = template.render({"fields": {"amount": 42.5, "ok": True}, "task": {"task_id": "t1"},
                           "metadata": {"k": "v"}})
    assert out == {"amount": 42.5, "note": "claim t1 of 42.5 (true)", "raw": "{task_id}",
                   "n": 3, "items": [85.0, {"a": [1]}], "meta": {"k": "v"}}
    assert not template.is_static and Template({"a": "b"}).is_static


def test_template_problems() -> None:
    with pytest.raises(ValueError, match=r"step s\.a: \$\{nope\}: unknown name nope"):
        Template({"a": "${nope}"}, "step s", PLAN_VARIABLES)
    with pytest.raises(ValueError, match="without a closing"):
        Template({"a": "x ${fields.a"}, "step s", PLAN_VARIABLES)
    template = Template({"a": "${fields.a}"}, "step s", PLAN_VARIABLES)
    with pytest.raises(ExpressionError, match=r"step s\.a: no such key"):
        template.render({"fields": {}})


def test_typed_fields() -> None:
    types = {"amount": "money", "count": "integer", "paid": "boolean", "day": "date",
             "name": "string", "missing": "number", "bad": "money"}
    raw = {"amount": "EUR 1.234,50", "count": "7", "paid": "yes", "day": "2025-01-31",
           "name": "Ann", "bad": "n/a", "extra": "kept"}
    assert typed_fields(raw, types) == {
        "amount": 1234.5, "count": 7, "paid": True, "day": "2025-01-31", "name": "Ann",
        "missing": None, "bad": None, "extra": "kept"}
    assert typed_fields({"amount": "42.50"}, {"amount": "money"})["amount"] == 42.5
    assert typed_fields({"amount": "1,234"}, {"amount": "money"})["amount"] == 1234.0


def test_extension_functions_and_what_is_withheld() -> None:
    cond = compile_condition("params.l.filter(f, fields[f] == null).join(', ') == 'a, b' && "
                             "math.round(fields.x) == 3.0 && fields.s.lowerAscii() == 'ab'", "r")
    assert evaluate_condition(cond, {"params": {"l": ["a", "b", "c"]},
                                     "fields": {"a": None, "b": None, "c": 1, "x": 2.6,
                                                "s": "AB"}})
    # lists.range(n) would build a list of any length in one call
    with pytest.raises(ValueError, match="unknown name lists"):
        compile_condition("size(lists.range(100000000)) > 0", "r")


def test_loading_the_engine_leaves_cels_command_line_out_and_rules_still_run() -> None:
    """The CEL package's REPL (typer, rich, prompt_toolkit: a fifth of a second of every
    service's start) is not loaded with the pack engine; an ``import cel.cli`` afterwards
    still gets the real one."""
    import subprocess
    import sys

    script = """
import sys
from switchyard.packs import compile_condition, evaluate_condition
condition = compile_condition("fields.total > 10 && size(fields.lines) == 2", "test",
                              {"fields"})
print(evaluate_condition(condition, {"fields": {"total": 12.5, "lines": [1, 2]}}))
print(sorted(m for m in ("cel.cli", "prompt_toolkit", "typer") if m in sys.modules))
import cel.cli
print(hasattr(cel.cli, "app"))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:3] == ["True", "[]", "True"], done.stdout
