"""Fuzzing: whatever arrives as a pack or tenant settings, the answer is PackError with one
well-formed line per problem, never another exception (a bad pack never takes a service
down).

PACK_FUZZ_EXAMPLES=2000 runs each property longer (the default keeps `make test` quick)."""

from __future__ import annotations

import copy
import functools
import os
import re
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from switchyard.packs import (
    PLAN_VARIABLES,
    ExpressionError,
    Names,
    PackError,
    Template,
    compile_condition,
    evaluate_condition,
    extract_fields,
    load_pack_files,
    parse_tenant_settings,
    typed_fields,
    validate_pack_files,
)
from tests.packs.conftest import EXPENSE, files_of

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_QUOTED = r'\["(?:[^"\\]|\\.)*"\]'
_PATH = (rf"(?:\(root\)|line \d+(?:, column \d+)?|(?:{_NAME}|\[\d+\]|{_QUOTED})"
         rf"(?:\.{_NAME}|\[\d+\]|{_QUOTED})*)")
#: ``<file>: <path>: <value>: <what is wrong>``
LINE = re.compile(rf"^(?P<file>\(pack\)|[A-Za-z0-9_.-]+): (?P<path>{_PATH}): (?P<rest>.+: .+)$")
FUZZ = settings(max_examples=int(os.environ.get("PACK_FUZZ_EXAMPLES", "150")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def assert_lines(problems: list[str]) -> None:
    assert problems, "an invalid pack must say why"
    for problem in problems:
        assert isinstance(problem, str)
        assert "\n" not in problem and "\r" not in problem
        assert LINE.match(problem), problem


def check_pack(files: dict[str, bytes]) -> None:
    """validate never raises; load raises PackError with the same lines, or loads."""
    problems = validate_pack_files(files)
    assert isinstance(problems, list)
    try:
        load_pack_files(files)
    except PackError as exc:
        assert exc.problems == problems
        assert_lines(exc.problems)
    else:
        assert problems == []


scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
                    st.sampled_from(["true", "${fields.amount}", "${", "fields.x >", "4h", "0s",
                                     "http://erp/x", "escalate", "money", "1.0.0", "P"]))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=20)


@FUZZ
@given(st.binary(max_size=2000))
def test_random_bytes_as_pack_yaml(data: bytes) -> None:
    check_pack({"pack.yaml": data})


@FUZZ
@given(st.text(alphabet=st.sampled_from(list("ab:-[]{}&*!|>'\"#\n\t ,?%@`0.1$")),
               max_size=300))
def test_yaml_punctuation_soup(text: str) -> None:
    check_pack({"pack.yaml": text.encode()})


@FUZZ
@given(values)
def test_random_documents(doc: Any) -> None:
    check_pack(files_of(yaml.safe_dump(doc, allow_unicode=True)))


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out.extend(_paths(value, prefix + (key,)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out.extend(_paths(value, prefix + (index,)))
    return out


PATHS = _paths(EXPENSE)[1:]


def _mutate(doc: dict[str, Any], path: tuple, action: str, value: Any) -> None:
    parent: Any = doc
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    if action == "replace":
        parent[last] = value
    elif action == "delete":
        del parent[last]
    elif action == "insert" and isinstance(parent, dict):
        parent[f"{last}_x"] = value
    elif action == "insert" and isinstance(parent, list):
        parent.insert(last, value)
    elif action == "duplicate" and isinstance(parent, list):
        parent.append(copy.deepcopy(parent[last]))


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(PATHS),
                          st.sampled_from(["replace", "delete", "insert", "duplicate"]),
                          values), min_size=1, max_size=4))
def test_mutated_valid_pack(mutations: list[tuple[tuple, str, Any]]) -> None:
    doc = copy.deepcopy(EXPENSE)
    for path, action, value in mutations:
        try:
            _mutate(doc, path, action, value)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or replaced the path
    check_pack(files_of(doc))


@FUZZ
@given(st.dictionaries(st.text(max_size=20), st.binary(max_size=200), max_size=5),
       st.sampled_from([b"", b"pack: a\n", yaml.safe_dump(EXPENSE).encode()]))
def test_random_files_beside_pack_yaml(extra: dict[str, bytes], pack_yaml: bytes) -> None:
    check_pack({**extra, "pack.yaml": pack_yaml})


@FUZZ
@given(st.one_of(st.binary(max_size=500), values.map(
    lambda v: yaml.safe_dump({"packs": {"expense_claim": v}}).encode())))
def test_random_tenant_settings(document: bytes) -> None:
    packs = {"expense_claim": load_pack_files(files_of(EXPENSE))}
    try:
        parse_tenant_settings(document, packs)
    except PackError as exc:
        assert_lines(exc.problems)


def test_the_line_shape_matches_every_known_mistake() -> None:
    from tests.packs.test_mistakes import FILES, MUTATIONS

    for _, _, expected in MUTATIONS + FILES:
        assert_lines(expected)
    assert not LINE.match("pack.yaml: something went wrong")


cel_soup = st.lists(st.sampled_from(
    list("fieldsparmsteqhxy.()[]{}!&|=<>+-*/%?:,'\"\\ 0123456789$") +
    ["fields.amount", "params.max_auto_amount", "has(", ".exists(v, ", "steps.", "null",
     "true", " in ", "size(", "math.round(", ".join(", "lists.range("]), max_size=30
).map("".join)


@FUZZ
@given(cel_soup)
def test_random_conditions_compile_or_say_why(source: str) -> None:
    names = Names(fields=frozenset({"amount"}), params=frozenset({"max_auto_amount"}),
                  scores=frozenset())
    try:
        condition = compile_condition(source, "rule r", names)
    except ValueError as exc:
        assert str(exc).startswith("rule r: ")
        return
    try:
        evaluate_condition(condition, {"fields": {"amount": 12.5},
                                       "params": {"max_auto_amount": 10.0}, "metadata": {},
                                       "task": {}, "route": {}, "scores": {},
                                       "extraction": {}, "history": {}})
    except ExpressionError as exc:
        assert exc.where == "rule r"


@FUZZ
@given(values)
def test_random_templates_render_or_say_why(tree: Any) -> None:
    try:
        template = Template(tree, "step s", PLAN_VARIABLES)
    except ValueError as exc:
        assert str(exc).startswith("step s")
        return
    try:
        template.render({"fields": {}, "metadata": {}, "task": {}, "params": {}, "steps": {}})
    except ExpressionError as exc:
        assert exc.where.startswith("step s")


@FUZZ
@given(st.text(max_size=400))
def test_the_labels_extractor_reads_any_text(text: str) -> None:
    pack = load_pack_files(files_of(EXPENSE))
    extraction = extract_fields(pack, text)
    assert 0.0 <= extraction.confidence <= 1.0
    assert set(extraction.fields) <= set(pack.fields)
    assert all(0.0 <= f.confidence <= 1.0 for f in extraction.fields.values())
    typed = typed_fields(extraction.values, pack.field_types)
    assert set(typed) == set(pack.fields)


@FUZZ
@given(st.dictionaries(st.sampled_from(["amount", "count", "paid", "day", "x"]),
                       st.text(max_size=30)))
def test_typed_fields_of_any_text(raw: dict[str, str]) -> None:
    typed = typed_fields(raw, {"amount": "money", "count": "integer", "paid": "boolean",
                               "day": "date"})
    assert typed["amount"] is None or isinstance(typed["amount"], float)
    assert typed["count"] is None or isinstance(typed["count"], int)
    assert typed["paid"] in (None, True, False)


_WORDS = st.sampled_from(["Total", "Total:", "Amount", "Employee", "Name:", "Qty", "Item",
                          "Date", "3", "4.50", "1.234,50", "EUR", "|", ":", "-", "Ann",
                          "31/01/2025", "Subtotal", "", "  ", "IBAN", "x"])
_UNIT = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


@functools.cache
def _itemised() -> Any:
    doc = copy.deepcopy(EXPENSE)
    doc["fields"]["items"] = {"type": "table", "end": ["Subtotal"], "columns": {
        "item": {"type": "string", "labels": ["Item"]}, "qty": {"type": "number"},
        "amount": {"type": "money", "labels": ["Amount", "Total"]}}}
    return load_pack_files(files_of(doc))


@FUZZ
@given(st.lists(st.lists(st.tuples(_WORDS, _UNIT, _UNIT, _UNIT, _UNIT, _UNIT), max_size=40),
                min_size=1, max_size=3),
       st.sampled_from([(0.0, 0.0), (612.0, 792.0), (1000.0, 50.0)]))
def test_the_labels_extractor_reads_any_layout(pages: list[list[tuple]],
                                               size: tuple[float, float]) -> None:
    """Words anywhere, boxes upside down or empty, no page size: values with provenance
    inside the page, confidences in 0..1, never an exception."""
    from switchyard.v1 import BoundingBox, DocumentLayout, LayoutWord

    pack = _itemised()
    layout = DocumentLayout()
    for number, words in enumerate(pages, start=1):
        page = layout.pages.add(number=number, width=size[0], height=size[1])
        for text, x0, y0, x1, y1, confidence in words:
            page.words.append(LayoutWord(text=text, confidence=confidence,
                                         box=BoundingBox(x0=x0, y0=y0, x1=x1, y1=y1)))
    extraction = extract_fields(pack, "", layout)
    assert 0.0 <= extraction.confidence <= 1.0
    for found in extraction.fields.values():
        assert 0.0 <= found.confidence <= 1.0
        if found.provenance is not None:
            box = found.provenance.box
            assert 0.0 <= box.x0 <= box.x1 <= 1.0 and 0.0 <= box.y0 <= box.y1 <= 1.0
            assert 1 <= found.provenance.page <= len(pages)
    assert set(typed_fields(extraction.values, pack.field_types)) == set(pack.fields)
