"""Pack folder -> :class:`Pack`, or every mistake in it, one line each.

Two passes. The structural pass runs the pack JSON Schema (all errors, not the first). When the
structure is right, the semantic pass checks what a schema cannot: CEL expressions compile and
name only known variables, declared fields and parameters, scorers and earlier steps; names are
unique; templates are well formed; durations parse; parameter defaults fit their types and
ranges; entry points are declared; compensation belongs to calls; waits are a timer or a
callback; golden cases name existing rules, fields and parameters; the examples file is JSON
Lines of texts. Nothing raises but :class:`PackError` (``load_*``) and nothing at all from
``validate_pack_files``: a bad pack never takes a service down.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from switchyard.packs._entrypoints import GROUPS, declared, is_declared
from switchyard.packs._expressions import (
    DECISION_VARIABLES,
    PLAN_VARIABLES,
    Condition,
    ExpressionError,
    Names,
    Template,
    _execute,
    _interpreter_failure,
    _short,
    check_expression,
    evaluate_condition,
)
from switchyard.packs._model import (
    BUILTIN_CONNECTORS,
    NO_RULE_MATCHED,
    RESERVED_PACK_NAMES,
    Compensation,
    FairnessSpec,
    FieldSpec,
    GoldenCase,
    Pack,
    PackError,
    ParamSpec,
    ReviewSpec,
    RetryLaterSpec,
    RuleSpec,
    ScorerSpec,
    StepApproval,
    StepSpec,
    StepWait,
)
from switchyard.packs._schema import (
    json_path,
    line,
    pack_schema,
    show,
    structural_problems,
    tests_file_schema,
)
from switchyard.packs._yaml import load_yaml

PACK_FILE = "pack.yaml"
#: Entry point group of installed packs: name -> a package holding the pack's folder.
PACKS_GROUP = "switchyard.packs"
DEFAULT_EXAMPLES = "examples.jsonl"
DEFAULT_LOOK_ALIKES = "look_alikes.jsonl"
DEFAULT_TESTS = "tests.yaml"
MAX_PACK_BYTES = 4 * 1024 * 1024
MAX_FILES = 64
FOLDER = "(pack)"
#: Rules the engine decides before (or instead of) a pack's table; golden cases may expect them.
ENGINE_RULES: frozenset[str] = frozenset({
    NO_RULE_MATCHED, "low_confidence", "kind_mismatch", "look_alike_title", "out_of_scope",
    "no_plan",
    "model_unavailable", "pack_error", "content_type_not_supported"})
_LOOPS = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(")
_FILE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DURATION_PART = re.compile(r"([0-9]+)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
MAX_DURATION_S = 366 * 86400.0


def parse_duration(text: str) -> float | None:
    """'30s' / '15m' / '4h' / '2d' / '200ms' / '1h30m' -> seconds; None when not a duration."""
    if not isinstance(text, str) or not re.fullmatch(r"(?:[0-9]+(?:ms|s|m|h|d))+", text):
        return None
    return sum(int(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))


def _digest(files: Mapping[str, bytes]) -> str:
    h = hashlib.sha256()
    for name in sorted(files):
        data = files[name]
        h.update(name.encode("utf-8", "surrogatepass"))
        h.update(b"\0%d\0" % len(data))
        h.update(data)
    return h.hexdigest()


class _Checker:
    """Collects problem lines while building the pack's parts."""

    def __init__(self, file: str = PACK_FILE) -> None:
        self.file = file
        self.problems: list[str] = []
        #: a rule context of the declared types (:func:`_samples`) once the fields, parameters
        #: and scorers are known right: templates are tried on it
        self.samples: Mapping[str, Any] | None = None

    def add(self, path: list[Any] | str, value: Any, message: str, *, raw: bool = False,
            file: str | None = None) -> None:
        where = path if isinstance(path, str) else json_path(path)
        self.problems.append(line(file or self.file, where, value if raw else show(value),
                                  message))


# -- parameters ----------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def param_value_problem(spec: ParamSpec, value: Any) -> str | None:
    """Why ``value`` does not fit parameter ``spec`` (None when it does)."""
    kind = spec.type
    if kind == "number" and not _is_number(value):
        return "must be a number"
    if kind == "integer" and not (isinstance(value, int) and not isinstance(value, bool)):
        return "must be an integer"
    if kind == "string" and not isinstance(value, str):
        return "must be a string"
    if kind == "boolean" and not isinstance(value, bool):
        return "must be true or false"
    if kind == "list":
        if not isinstance(value, list):
            return f"must be a list of {spec.items or 'string'}s"
        for item in value:
            if (spec.items or "string") == "string" and not isinstance(item, str):
                return f"must be a list of strings; {show(item)} is not a string"
            if spec.items == "number" and not _is_number(item):
                return f"must be a list of numbers; {show(item)} is not a number"
        return None
    if _is_number(value):
        if value != value or value in (float("inf"), float("-inf")):
            return "must be a finite number"
        if spec.minimum is not None and value < spec.minimum:
            return f"must be >= {_num(spec.minimum)}"
        if spec.maximum is not None and value > spec.maximum:
            return f"must be <= {_num(spec.maximum)}"
    if spec.values and value not in spec.values:
        return "must be one of: " + " | ".join(str(v) for v in spec.values)
    return None


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _parameters(raw: Mapping[str, Any], c: _Checker) -> dict[str, ParamSpec]:
    out: dict[str, ParamSpec] = {}
    for name, spec in raw.items():
        where = ["parameters", name]
        kind = spec["type"]
        if kind != "list" and "items" in spec:
            c.add(where + ["items"], spec["items"], "only a list parameter has items")
        if kind not in ("number", "integer"):
            for key in ("minimum", "maximum"):
                if key in spec:
                    c.add(where + [key], spec[key], f"only number and integer parameters have "
                                                    f"{key}")
        if kind in ("list", "boolean") and "values" in spec:
            c.add(where + ["values"], spec["values"], "only number, integer and string "
                                                      "parameters have values")
        if "minimum" in spec and "maximum" in spec and spec["minimum"] > spec["maximum"]:
            c.add(where + ["maximum"], spec["maximum"],
                  f"must be >= minimum ({_num(spec['minimum'])})")
        param = ParamSpec(name=name, type=kind, default=spec["default"],
                          items=spec.get("items", "string" if kind == "list" else ""),
                          minimum=spec.get("minimum"), maximum=spec.get("maximum"),
                          values=tuple(spec.get("values", ())),
                          description=spec.get("description", ""))
        for value in param.values:
            problem = param_value_problem(ParamSpec(name, kind, items=param.items), value)
            if problem:
                c.add(where + ["values"], value, problem)
        problem = param_value_problem(param, param.default)
        if problem:
            c.add(where + ["default"], param.default, problem)
        out[name] = param
    return out


# -- fields ------------------------------------------------------------------------------


def _field(name: str, spec: Mapping[str, Any], where: list[Any], c: _Checker) -> FieldSpec:
    kind = spec["type"]
    if kind == "enum" and "values" not in spec:
        c.add(where + ["values"], "(missing)", "an enum field needs values: [...]", raw=True)
    if kind != "enum" and "values" in spec:
        c.add(where + ["values"], spec["values"], "only an enum field has values")
    if kind != "enum" and "aliases" in spec:
        c.add(where + ["aliases"], spec["aliases"], "only an enum field has aliases")
    for alias, value in spec.get("aliases", {}).items():
        if value not in spec.get("values", ()):
            c.add(where + ["aliases", alias], value, "not one of the field's values: "
                  + ", ".join(str(v) for v in spec.get("values", ())))
    if kind == "table" and "columns" not in spec:
        c.add(where + ["columns"], "(missing)", "a table field needs columns: {name: {type, "
                                                "labels}}", raw=True)
    for key in ("columns", "end"):
        if kind != "table" and key in spec:
            c.add(where + [key], spec[key], f"only a table field has {key}")
    if kind != "date" and "date_order" in spec:
        c.add(where + ["date_order"], spec["date_order"], "only a date field has date_order")
    if kind == "table" and "pattern" in spec:
        c.add(where + ["pattern"], spec["pattern"], "a table field has no pattern")
    pattern = spec.get("pattern", "")
    if pattern:
        try:
            groups = re.compile(pattern).groups
        except (re.error, RecursionError, OverflowError) as exc:
            c.add(where + ["pattern"], pattern, f"not a valid regex: {exc}")
        else:
            if groups != 1:
                c.add(where + ["pattern"], pattern,
                      f"must have exactly one capture group (has {groups})")
    columns = tuple(_field(column, column_spec, where + ["columns", column], c)
                    for column, column_spec in spec.get("columns", {}).items())
    return FieldSpec(name=name, type=kind, required=spec.get("required", False),
                     data_class=spec.get("data_class", "personal"),
                     labels=tuple(spec.get("labels", ())), pattern=pattern,
                     values=tuple(spec.get("values", ())), columns=columns,
                     aliases=tuple((str(a), str(v)) for a, v in spec.get("aliases", {}).items()),
                     end=tuple(spec.get("end", ())),
                     date_order=spec.get("date_order", "") if kind == "date" else "")


def _fields(raw: Mapping[str, Any], c: _Checker) -> dict[str, FieldSpec]:
    return {name: _field(name, spec, ["fields", name], c) for name, spec in raw.items()}


# -- decision table ---------------------------------------------------------------------------


def _duration(c: _Checker, path: list[Any], text: str) -> float | None:
    seconds = parse_duration(text)
    if seconds is None:
        c.add(path, text, "must be a duration such as 30s, 15m, 4h, 2d, 200ms")
    elif seconds <= 0:
        c.add(path, text, "must be longer than 0")
        return None
    elif seconds > MAX_DURATION_S:
        c.add(path, text, "must be at most 366d")
        return None
    return seconds


def _review(raw: Mapping[str, Any], base: ReviewSpec, c: _Checker, path: list[Any],
            params: frozenset[str] | None) -> ReviewSpec:
    # a queue or group may name the tenant's parameters (``${params.reviewer_group}``): they
    # are filled in when the task is decided, so nothing but params may appear in them
    for key in ("queue", "group"):
        if "${" in str(raw.get(key, "")):
            _template(c, path + [key], raw[key],
                      Names(variables=frozenset({"params"}), params=params))
    sla = raw.get("sla", base.sla)
    sla_s = _duration(c, path + ["sla"], sla) if "sla" in raw else base.sla_s
    return ReviewSpec(queue=raw.get("queue", base.queue), group=raw.get("group", base.group),
                      priority=raw.get("priority", base.priority), sla=sla,
                      sla_s=sla_s if sla_s is not None else base.sla_s,
                      four_eyes=raw.get("four_eyes", base.four_eyes),
                      reveal=tuple(raw.get("reveal", base.reveal)))


def _expression(c: _Checker, path: list[Any], source: str, names: Names) -> Any:
    """Compile a condition; one that names nothing (a constant) is run now, so ``when: "1"``
    or ``when: 1/0`` is a load error instead of a failure on every document."""
    program, problems = check_expression(source, names)
    for problem in problems:
        c.add(path, source, problem)
    # only loop-free constants: a comprehension could be made to run for hours
    if program is not None and not program.program.variables() and not program.extended \
            and not _LOOPS.search(source):
        try:
            value = program.execute({})
        except BaseException as exc:  # the interpreter's own error, e.g. a division by zero
            if not _interpreter_failure(exc):
                raise
            c.add(path, source, f"fails: {' '.join(str(exc).split())[:120]}")
        else:
            if not isinstance(value, bool):
                c.add(path, source, f"a condition must give true or false, not "
                                    f"{type(value).__name__} {show(value)}")
    return program


#: What a rule may read that validation can fill in with sample values of the declared types
#: (``metadata`` and ``history`` have keys no pack declares, so rules reading them are only
#: checked when they run).
_SAMPLED = frozenset({"fields", "params", "route", "scores", "extraction", "task"})
#: ``fields.x`` or ``params.y`` in a condition's source
_REFERENCE = re.compile(r"\b(?:fields|params)\.[A-Za-z_][A-Za-z0-9_]*")
_SAMPLE_VALUES = {"money": 1.5, "number": 1.5, "integer": 1, "boolean": True,
                  "date": "2026-01-31", "iban": "DE89370400440532013000",
                  "email": "someone@example.org", "string": "text"}


def _a(type_name: str) -> str:
    return f"an {type_name}" if type_name[:1] in "aeiou" else f"a {type_name}"


def _samples(fields: Mapping[str, FieldSpec], params: Mapping[str, ParamSpec],
             scorers: list[str]) -> dict[str, Any]:
    """A rule context with a value of its declared type for every field and the defaults of
    the parameters, as the engine would build it for a document that has every field."""
    def sample(spec: FieldSpec) -> Any:
        if spec.type == "table":
            return [{column.name: sample(column) for column in spec.columns}]
        return spec.values[0] if spec.type == "enum" and spec.values \
            else _SAMPLE_VALUES.get(spec.type, "text")

    def param(spec: ParamSpec) -> Any:
        if spec.type == "number" and isinstance(spec.default, (int, float)) \
                and not isinstance(spec.default, bool):
            return float(spec.default)
        if spec.type == "list" and spec.items == "number" and isinstance(spec.default, list):
            return [float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
                    for v in spec.default]
        return spec.default

    return {"fields": {name: sample(spec) for name, spec in fields.items()},
            "params": {name: param(spec) for name, spec in params.items()},
            "route": {"label": "sample", "confidence": 0.9},
            "scores": {name: 0.5 for name in scorers},
            "extraction": {"confidence": 0.9, "issues": []},
            "task": {"task_id": "00000000-0000-4000-8000-000000000000",
                     "tenant_id": "sample", "kind": "sample"}}


def _sample_failure(source: str, program: Any, readable: frozenset[str],
                    run: Callable[[], Any]) -> str | None:
    """The first sentence of what ``run`` (``program`` on the sample values of the declared
    types) raised, or None: it ran, or it was not tried. Only expressions that read nothing
    but ``readable`` variables, and no loops (a comprehension could run for long)."""
    try:
        variables = set(program.program.variables())
    except Exception:  # pragma: no cover - defensive: the binding always answers
        return None
    if not variables or not variables <= readable or _LOOPS.search(source):
        return None
    try:
        run()
    except ExpressionError as exc:
        return str(exc).removeprefix(f"{exc.where}: ").split(". ", 1)[0]  # its first sentence
    return None


def _sample_run(c: _Checker, path: list[Any], source: str, program: Any,
                samples: Mapping[str, Any], where: str,
                declared: Mapping[str, str] | None = None) -> None:
    """Run a rule's condition on sample values of the declared types, so a type mistake
    (a number compared with a text, a condition that is not true or false) is a load error
    instead of an escalation of every document."""
    message = _sample_failure(source, program, _SAMPLED, lambda: evaluate_condition(
        Condition(source=source, where=where, program=program), samples))
    if message is not None:
        # the declared types of what the condition reads: what the author has to line up
        known = declared or {}
        named = sorted({m.group(0) for m in _REFERENCE.finditer(source)} & known.keys())
        types = "; ".join(f"{name} is {_a(known[name])}" for name in named)
        c.add(path, source, f"fails on values of the declared types: {message}"[:300]
              + (f" ({types})" if types else ""))


#: What a template's expression may read to be tried on sample values at load time: the
#: fields and parameters (a plan's ``task`` and ``steps`` hold more than a sample can know).
_TEMPLATE_SAMPLED = frozenset({"fields", "params"})


def _template(c: _Checker, path: list[Any], tree: Any, names: Names) -> Template:
    template = Template(tree, json_path(path), names, strict=False)
    for sub, value, message in template.issues:
        c.add(json_path(path) + sub, show(value), message, raw=True)
    if not template.issues and c.samples is not None:
        # '${fields.packages + 1.0}' over an integer field fails on every document: say so now
        samples, where = c.samples, json_path(path)
        for sub, source, program in template.expressions():
            message = _sample_failure(source, program, _TEMPLATE_SAMPLED,
                                      lambda: _execute(program, samples, where + sub))
            if message is not None:
                c.add(where + sub, f"${{{_short(source, 50)}}}",
                      f"fails on values of the declared types: {message}"[:300], raw=True)
    return template


def _rules(raw: Mapping[str, Any], review: ReviewSpec, names: Names, c: _Checker,
           samples: Mapping[str, Any] | None = None,
           declared: Mapping[str, str] | None = None) -> tuple[RuleSpec, ...]:
    rules: list[RuleSpec] = []
    seen: dict[str, int] = {}
    for index, rule in enumerate(raw["rules"]):
        where = ["decision", "rules", index]
        name = rule["name"]
        if name in seen:
            c.add(where + ["name"], name, f"duplicate rule name (also rules[{seen[name]}])")
        elif name in ENGINE_RULES:
            c.add(where + ["name"], name, "reserved for the engine; choose another name")
        seen.setdefault(name, index)
        when = rule["when"]
        source = ("true" if when else "false") if isinstance(when, bool) else when
        program = _expression(c, where + ["when"], source, names)
        if program is not None and samples is not None:
            _sample_run(c, where + ["when"], source, program, samples, f"rule {name}",
                        declared)
        outcome = rule["outcome"]
        explain = rule.get("explain", "")
        template = _template(c, where + ["explain"], explain, names) if explain else None
        discrepancies = rule.get("discrepancies", "") if outcome == "escalate" else ""
        listed = _template(c, where + ["discrepancies"], "${" + discrepancies + "}", names) \
            if discrepancies else None
        if outcome != "escalate":
            for key in ("reason", "review", "discrepancies"):
                if key in rule:
                    c.add(where + [key], rule[key], f"only escalating rules have a {key} "
                                                    f"(this rule's outcome is {outcome})")
        rule_review = _review(rule.get("review", {}), review, c, where + ["review"],
                              names.params) if outcome == "escalate" else None
        rules.append(RuleSpec(
            name=name, when=source,
            condition=Condition(source=source, where=f"rule {name}", program=program),
            outcome=outcome, reason=rule.get("reason", "POLICY") if outcome == "escalate" else "",
            explain=explain, explain_template=template, review=rule_review,
            discrepancies=discrepancies, discrepancies_template=listed))
    return tuple(rules)


# -- plan -------------------------------------------------------------------------------


def _connector(c: _Checker, path: list[Any], name: str, target: str) -> None:
    if name in BUILTIN_CONNECTORS:
        return
    if not is_declared(GROUPS["connectors"], name):
        c.add(path + ["connector"], name, "unknown connector; use http, grpc, sql or a name "
                                          "registered in entry point group switchyard.connectors")
    elif not target.startswith(f"{name}://"):
        c.add(path + ["target"], target, f"a {name} connector's target must start with "
                                         f"{name}://")


#: The shortest wait between a ``retry_later`` step's tries.
MIN_RETRY_LATER_S = 1.0
_PARAM_REF = re.compile(r"^\$\{params\.([a-z][a-z0-9_]*)\}$")


def retry_every_seconds(value: Any) -> float | None:
    """A ``retry_later.every`` value as seconds: a duration text or a number of seconds;
    None when it is neither, or shorter than :data:`MIN_RETRY_LATER_S`."""
    if isinstance(value, bool):
        return None
    seconds = float(value) if isinstance(value, (int, float)) else \
        parse_duration(value) if isinstance(value, str) else None
    return seconds if seconds is not None and seconds >= MIN_RETRY_LATER_S else None


def _retry_later(raw: Mapping[str, Any], path: list[Any], names: Names,
                 params: Mapping[str, ParamSpec], c: _Checker) -> RetryLaterSpec:
    when, every = raw["when"], raw["every"]
    _expression(c, path + ["when"], when, Names(
        variables=names.variables | {"answer"}, fields=names.fields, params=names.params,
        scores=names.scores, steps=names.steps))
    reference = _PARAM_REF.match(every)
    if reference is None:
        every_s = _duration(c, path + ["every"], every)
        if every_s is not None and every_s < MIN_RETRY_LATER_S:
            c.add(path + ["every"], every, f"must be at least {MIN_RETRY_LATER_S:g}s")
        return RetryLaterSpec(when=when, every=every, every_s=every_s)
    param = params.get(reference.group(1))
    if param is None:
        c.add(path + ["every"], every, f"unknown parameter {reference.group(1)}; known: "
                                       f"{', '.join(sorted(params)) or 'none'}")
    elif param.type not in ("string", "number", "integer") or \
            retry_every_seconds(param.default) is None:
        c.add(path + ["every"], every, f"parameter {param.name} must be a string holding a "
                                       "duration (5m) or a number of seconds, at least "
                                       f"{MIN_RETRY_LATER_S:g}s")
    return RetryLaterSpec(when=when, every=every)


def _call(raw: Mapping[str, Any], path: list[Any], group: str, names: Names, c: _Checker,
          params: Mapping[str, ParamSpec] | None = None) -> StepSpec:
    name = raw["name"]
    connector = raw.get("connector", "http")
    _connector(c, path, connector, raw["target"])
    _template(c, path + ["target"], raw["target"], names)
    payload = raw.get("payload", {})
    _template(c, path + ["payload"], payload, names)
    when = raw.get("when", "")
    if when:
        _expression(c, path + ["when"], when, names)
    timeout_s = _duration(c, path + ["timeout"], raw["timeout"]) if "timeout" in raw else None
    retry = raw.get("retry", {})
    backoff_s = _duration(c, path + ["retry", "backoff"], retry["backoff"]) \
        if "backoff" in retry else None
    max_backoff_s = _duration(c, path + ["retry", "max_backoff"], retry["max_backoff"]) \
        if "max_backoff" in retry else None
    if backoff_s is not None and max_backoff_s is not None and backoff_s > max_backoff_s:
        c.add(path + ["retry", "max_backoff"], retry["max_backoff"],
              f"must be at least backoff ({retry['backoff']})")
    compensation = None
    if "compensate" in raw:
        undo = raw["compensate"]
        undo_connector = undo.get("connector", connector)
        if "connector" in undo:
            _connector(c, path + ["compensate"], undo_connector, undo["target"])
        elif connector not in BUILTIN_CONNECTORS and is_declared(GROUPS["connectors"], connector):
            _connector(c, path + ["compensate"], connector, undo["target"])
        _template(c, path + ["compensate", "target"], undo["target"], names)
        _template(c, path + ["compensate", "payload"], undo.get("payload", {}), names)
        compensation = Compensation(name=undo.get("name", f"undo_{name}"), target=undo["target"],
                                    operation=undo.get("operation", "DELETE"),
                                    connector=undo_connector, payload=undo.get("payload", {}))
    return StepSpec(
        name=name, kind="call", connector=connector, target=raw["target"],
        operation=raw.get("operation", name), payload=payload, timeout=raw.get("timeout", ""),
        timeout_s=timeout_s, max_attempts=retry.get("max_attempts", 0),
        backoff=retry.get("backoff", ""), backoff_s=backoff_s,
        max_backoff=retry.get("max_backoff", ""), max_backoff_s=max_backoff_s, when=when,
        parallel_group=group, compensation=compensation,
        retry_later=_retry_later(raw["retry_later"], path + ["retry_later"], names,
                                 params or {}, c) if "retry_later" in raw else None)


def _plan(raw: list[Any], names: Names, c: _Checker,
          params: Mapping[str, ParamSpec] | None = None) -> tuple[StepSpec, ...]:
    steps: list[StepSpec] = []
    seen: dict[str, str] = {}
    earlier: set[str] = set()

    def claim(name: str, path: list[Any]) -> None:
        if name in seen:
            c.add(path, name, f"duplicate step name (also {seen[name]})")
        seen.setdefault(name, json_path(path[:-1]))

    def scoped() -> Names:
        return Names(variables=names.variables, fields=names.fields, params=names.params,
                     scores=names.scores, steps=frozenset(earlier))

    for index, entry in enumerate(raw):
        where: list[Any] = ["plan", index]
        if "parallel" in entry:
            group = f"parallel_{index + 1}"
            block_names = []
            for sub_index, sub in enumerate(entry["parallel"]):
                sub_where = where + ["parallel", sub_index]
                claim(sub["name"], sub_where + ["name"])
                steps.append(_call(sub, sub_where, group, scoped(), c, params))
                block_names.append(sub["name"])
            earlier.update(block_names)
        elif "approval" in entry:
            spec = entry["approval"]
            sub_where = where + ["approval"]
            claim(spec["name"], sub_where + ["name"])
            for key in ("group", "queue", "instructions"):
                if key in spec:
                    _template(c, sub_where + [key], spec[key], scoped())
            when = spec.get("when", "")
            if when:
                _expression(c, sub_where + ["when"], when, scoped())
            if "discrepancies" in spec:
                for problem in check_expression(spec["discrepancies"], scoped())[1]:
                    c.add(sub_where + ["discrepancies"], spec["discrepancies"], problem)
            for reveal_index, name in enumerate(spec.get("reveal", ())):
                if names.fields is not None and name not in names.fields:
                    c.add(sub_where + ["reveal", reveal_index], name,
                          f"unknown field; known: {', '.join(sorted(names.fields)) or 'none'}")
            sla_s = _duration(c, sub_where + ["sla"], spec["sla"]) if "sla" in spec else None
            steps.append(StepSpec(
                name=spec["name"], kind="approval", connector="", operation="approval",
                when=when, approval=StepApproval(
                    group=spec.get("group", ""), four_eyes=spec.get("four_eyes", False),
                    sla=spec.get("sla", ""), sla_s=sla_s, queue=spec.get("queue", ""),
                    instructions=spec.get("instructions", ""),
                    discrepancies=spec.get("discrepancies", ""),
                    reveal=tuple(spec.get("reveal", ())),
                    document=spec.get("document", True))))
            earlier.add(spec["name"])
        elif "wait" in entry:
            spec = entry["wait"]
            sub_where = where + ["wait"]
            claim(spec["name"], sub_where + ["name"])
            has_duration, has_callback = "duration" in spec, "callback" in spec
            if has_duration == has_callback:
                c.add(sub_where, {k: v for k, v in spec.items() if k != "when"},
                      "a wait has duration: (a timer) or callback: (a callback), not both"
                      if has_duration else
                      "a wait needs duration: (a timer) or callback: (with an optional "
                      "timeout:)")
            if "timeout" in spec and not has_callback:
                c.add(sub_where + ["timeout"], spec["timeout"],
                      "only a callback wait has a timeout (a timer's duration is its limit)")
            when = spec.get("when", "")
            if when:
                _expression(c, sub_where + ["when"], when, scoped())
            duration_s = _duration(c, sub_where + ["duration"], spec["duration"]) \
                if has_duration else None
            timeout_s = _duration(c, sub_where + ["timeout"], spec["timeout"]) \
                if "timeout" in spec else None
            steps.append(StepSpec(
                name=spec["name"], kind="wait", connector="", operation="wait", when=when,
                wait=StepWait(duration=spec.get("duration", ""), duration_s=duration_s,
                              callback=spec.get("callback", ""),
                              timeout=spec.get("timeout", ""), timeout_s=timeout_s)))
            earlier.add(spec["name"])
        else:
            claim(entry["name"], where + ["name"])
            steps.append(_call(entry, where, "", scoped(), c, params))
            earlier.add(entry["name"])
    return tuple(steps)


# -- examples and golden cases ------------------------------------------------------------------


def _examples(files: Mapping[str, bytes], name: str, c: _Checker) -> tuple[str, ...]:
    data = files[name]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        c.add("(root)", f"byte at offset {exc.start}", "not UTF-8 text", raw=True, file=name)
        return ()
    out: list[str] = []
    for number, row in enumerate(text.splitlines(), start=1):
        if not row.strip():
            continue
        where = f"line {number}"
        try:
            item = json.loads(row)
        except (ValueError, RecursionError) as exc:
            c.add(where, row, f"not JSON: {str(exc)[:120]}", file=name)
            continue
        if not isinstance(item, dict) or not isinstance(item.get("text"), str):
            c.add(where, item, 'must be an object with a "text" string', file=name)
            continue
        if not item["text"].strip():
            c.add(where, item, "text must not be empty", file=name)
            continue
        out.append(item["text"])
    if not out and not any(p.startswith(f"{name}:") for p in c.problems):
        c.add("(root)", "(empty)", "has no examples; remove it or add lines of "
                                   '{"text": "..."}', raw=True, file=name)
    return tuple(out)


def _example_file(doc: Mapping[str, Any], key: str, default: str,
                  files: Mapping[str, bytes], c: _Checker) -> tuple[str, ...]:
    """The texts of the JSON Lines file ``doc[key]`` names, or of ``default`` when the
    pack folder has one and the key is absent."""
    name = doc.get(key) or (default if default in files else "")
    if not name:
        return ()
    if name not in files:
        c.add([key], name, "no such file in the pack folder")
        return ()
    return _examples(files, name, c)


def _cases(raw: list[Any], file: str, prefix: list[Any], fields: Mapping[str, FieldSpec],
           params: Mapping[str, ParamSpec], rules: tuple[RuleSpec, ...], c: _Checker,
           content_types: tuple[str, ...] = ()) -> tuple[GoldenCase, ...]:
    rule_names = {r.name for r in rules} | ENGINE_RULES
    out: list[GoldenCase] = []
    names: dict[str, int] = {}
    for index, case in enumerate(raw):
        where = prefix + [index]
        if case["name"] in names:
            c.add(where + ["name"], case["name"],
                  f"duplicate case name (also [{names[case['name']]}])", file=file)
        names.setdefault(case["name"], index)
        overrides = case.get("parameters", {})
        for key, value in overrides.items():
            spec = params.get(key)
            if spec is None:
                c.add(where + ["parameters", key], value, "unknown parameter; declared: "
                      + (", ".join(sorted(params)) or "none"), file=file)
                continue
            problem = param_value_problem(spec, value)
            if problem:
                c.add(where + ["parameters", key], value, problem, file=file)
        expect = case["expect"]
        rule = expect.get("rule", "")
        if rule and rule not in rule_names:
            c.add(where + ["expect", "rule"], rule, "no such rule; the pack's rules: "
                  + ", ".join(r.name for r in rules), file=file)
        matched = next((r for r in rules if r.name == rule), None)
        if matched is not None and expect.get("outcome") and matched.outcome != expect["outcome"]:
            c.add(where + ["expect", "outcome"], expect["outcome"],
                  f"rule {rule} decides {matched.outcome}, not {expect['outcome']}", file=file)
        for key in expect.get("fields", {}):
            if key not in fields:
                c.add(where + ["expect", "fields", key], expect["fields"][key],
                      "no such field; declared: " + (", ".join(sorted(fields)) or "none"),
                      file=file)
        document = case["document"]
        content_type = document.get("content_type", "text/plain")
        if content_types and content_type not in content_types:
            c.add(where + ["document", "content_type"], content_type,
                  "not among the pack's content_types: " + ", ".join(content_types), file=file)
        out.append(GoldenCase(
            name=case["name"], text=document["text"],
            content_type=document.get("content_type", "text/plain"),
            metadata={k: _text(v) for k, v in document.get("metadata", {}).items()},
            parameters=dict(overrides), expect_outcome=expect.get("outcome", ""),
            expect_rule=rule,
            expect_fields={k: _text(v) for k, v in expect.get("fields", {}).items()}))
    return tuple(out)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _tests(doc: Mapping[str, Any], files: Mapping[str, bytes], fields: Mapping[str, FieldSpec],
           params: Mapping[str, ParamSpec], rules: tuple[RuleSpec, ...], c: _Checker
           ) -> tuple[GoldenCase, ...]:
    content_types = tuple(doc.get("content_types", ["text/plain"]))
    tests = doc.get("tests")
    if isinstance(tests, list):
        return _cases(tests, PACK_FILE, ["tests"], fields, params, rules, c, content_types)
    name = tests if isinstance(tests, str) else (DEFAULT_TESTS if DEFAULT_TESTS in files else "")
    if not name:
        return ()
    if name not in files:
        c.add(["tests"], name, "no such file in the pack folder")
        return ()
    value, problems = load_yaml(files[name], name)
    if problems:
        c.problems.extend(problems)
        return ()
    structure = structural_problems(value, tests_file_schema(), name)
    if structure:
        c.problems.extend(structure)
        return ()
    cases, prefix = (value, []) if isinstance(value, list) else (value["tests"], ["tests"])
    return _cases(cases, name, prefix, fields, params, rules, c, content_types)


# -- the pack --------------------------------------------------------------------------------


def _check_files(files: Mapping[str, bytes]) -> list[str]:
    if not isinstance(files, Mapping):
        return [line(FOLDER, "(root)", type(files).__name__, "must be a mapping of file name "
                                                              "to bytes")]
    problems = []
    if len(files) > MAX_FILES:
        problems.append(line(FOLDER, "(root)", f"{len(files)} files",
                             f"a pack has at most {MAX_FILES} files"))
    total = 0
    for name, data in files.items():
        if not isinstance(name, str) or not _FILE_NAME.match(name):
            problems.append(line(FOLDER, "(root)", show(name), "not a plain file name (letters, "
                                 "digits, _ . -; no folders)"))
            continue
        if not isinstance(data, (bytes, bytearray)):
            problems.append(line(name, "(root)", type(data).__name__, "content must be bytes"))
            continue
        total += len(data)
    if total > MAX_PACK_BYTES:
        problems.append(line(FOLDER, "(root)", f"{total} bytes",
                             f"larger than the {MAX_PACK_BYTES // (1024 * 1024)} MiB a pack "
                             "may be"))
    if PACK_FILE not in files:
        problems.append(line(PACK_FILE, "(root)", "(missing)", "the pack folder has no "
                                                               "pack.yaml"))
    return problems


def _build(files: Mapping[str, bytes]) -> tuple[Pack | None, list[str]]:
    problems = _check_files(files)
    if problems:
        return None, problems
    doc, problems = load_yaml(bytes(files[PACK_FILE]), PACK_FILE)
    if problems:
        return None, problems
    if not isinstance(doc, dict):
        return None, [line(PACK_FILE, "(root)", show(doc), "must be a mapping of pack keys "
                                                           "(pack:, version:, ...)")]
    problems = structural_problems(doc, pack_schema(), PACK_FILE)
    if problems:
        return None, problems
    c = _Checker()
    if doc["pack"] in RESERVED_PACK_NAMES:
        c.add(["pack"], doc["pack"], "reserved: the router's class for documents no pack "
                                     "automates")
    fields = _fields(doc.get("fields", {}), c)
    params = _parameters(doc.get("parameters", {}), c)
    extractor = doc.get("extractor", "labels")
    if extractor != "labels" and not is_declared(GROUPS["extractors"], extractor):
        c.add(["extractor"], extractor, "unknown extractor; use labels or a name registered in "
                                        "entry point group switchyard.extractors")
    models = doc.get("models", {})
    scorers: list[ScorerSpec] = []
    for index, scorer in enumerate(models.get("scorers", [])):
        where = ["models", "scorers", index]
        if any(s.name == scorer["name"] for s in scorers):
            c.add(where + ["name"], scorer["name"], "duplicate scorer name")
        if not is_declared(GROUPS["features"], scorer["features"]):
            c.add(where + ["features"], scorer["features"], "unknown features; register it in "
                                                            "entry point group switchyard.features")
        scorers.append(ScorerSpec(name=scorer["name"], features=scorer["features"],
                                  output_class=scorer.get("output_class", "")))
    # sample values (for typing the rules' CEL) only when every field, parameter and scorer
    # was declared right; a mistake further on (a reveal of no field) does not hold them back
    samples = None if c.problems else _samples(fields, params, [s.name for s in scorers])
    enrichers = tuple(doc.get("enrichers", ()))
    for index, enricher in enumerate(enrichers):
        if not is_declared(GROUPS["enrichers"], enricher):
            c.add(["enrichers", index], enricher, "unknown enricher; register it in entry point "
                                                  "group switchyard.enrichers")
    review = _review(doc.get("review", {}), ReviewSpec(), c, ["review"], frozenset(params))
    for index, name in enumerate(review.reveal):
        if name not in fields:
            c.add(["review", "reveal", index], name, "not a declared field")
    decision_names = Names(variables=DECISION_VARIABLES, fields=frozenset(fields),
                           params=frozenset(params), scores=frozenset(s.name for s in scorers))
    c.samples = samples
    declared = {**{f"fields.{n}": f.type for n, f in fields.items()},
                **{f"params.{n}": p.type for n, p in params.items()}}
    rules = _rules(doc["decision"], review, decision_names, c, samples, declared)
    plan_names = Names(variables=PLAN_VARIABLES, fields=frozenset(fields),
                       params=frozenset(params), steps=frozenset())
    plan = _plan(doc["plan"], plan_names, c, params)
    examples = _example_file(doc, "examples", DEFAULT_EXAMPLES, files, c)
    look_alikes = _example_file(doc, "look_alikes", DEFAULT_LOOK_ALIKES, files, c)
    tests = _tests(doc, files, fields, params, rules, c)
    fairness = _fairness(doc.get("fairness"), fields, c)
    if c.problems:
        return None, c.problems
    pack = Pack(
        name=doc["pack"], version=doc["version"], description=doc["description"],
        content_types=tuple(doc.get("content_types", ["text/plain"])), fields=fields,
        extractor=extractor, parameters=params,
        router_min_confidence=models.get("router", {}).get("min_confidence"),
        router_signatures=tuple(tuple(signature) for signature in
                                models.get("router", {}).get("signatures", ())),
        router_titles=tuple(models.get("router", {}).get("titles", ())),
        router_look_alike_titles=tuple(models.get("router", {}).get("look_alike_titles", ())),
        scorers=tuple(scorers), enrichers=enrichers,
        hit_policy=doc["decision"].get("hit_policy", "first"), rules=rules, review=review,
        plan=plan, retention_days=doc.get("retention", {}).get("days"), examples=examples,
        look_alikes=look_alikes, tests=tests, digest=_digest(files),
        files={k: bytes(v) for k, v in files.items()},
        fairness=fairness)
    return pack, []


#: What a pack's fairness section allows when it does not say (services/decision/fairness.py)
DEFAULT_MAX_PARITY_DIFFERENCE = 0.2


def _fairness(section: Mapping[str, Any] | None, fields: Mapping[str, FieldSpec],
              c: _Checker) -> FairnessSpec | None:
    """The pack's protected attributes: each an enum field it declares (its values are the
    groups whose automation rates are compared)."""
    if not section:
        return None
    names, notes = [], []
    for index, attribute in enumerate(section["attributes"]):
        name = attribute["field"]
        spec = fields.get(name)
        if spec is None:
            c.add(["fairness", "attributes", index, "field"], name, "not a declared field")
        elif spec.type != "enum":
            c.add(["fairness", "attributes", index, "field"], name,
                  "must be an enum field: its values are the groups compared")
        if name in names:
            c.add(["fairness", "attributes", index, "field"], name, "listed twice")
        names.append(name)
        notes.append(attribute.get("note", ""))
    return FairnessSpec(tuple(names), tuple(notes),
                        float(section.get("max_parity_difference",
                                          DEFAULT_MAX_PARITY_DIFFERENCE)))


def validate_pack_files(files: Mapping[str, bytes]) -> list[str]:
    """Every problem of a pack given as file name -> bytes (empty: valid). Never raises."""
    try:
        return _build(files)[1]
    except Exception as exc:  # a bug here must not become a crash of the caller
        return [line(PACK_FILE, "(root)", "(pack)", f"could not be checked: "
                                                    f"{type(exc).__name__}: {exc}"[:300])]


def load_pack_files(files: Mapping[str, bytes]) -> Pack:
    """The pack in ``files`` (file name -> bytes); raises :class:`PackError`."""
    try:
        pack, problems = _build(files)
    except Exception as exc:
        raise PackError([line(PACK_FILE, "(root)", "(pack)", f"could not be checked: "
                              f"{type(exc).__name__}: {exc}"[:300])]) from exc
    if pack is None:
        raise PackError(problems)
    return pack


def read_pack_folder(directory: str | Path) -> dict[str, bytes]:
    """The files of a pack folder (top level; hidden files, caches and bytecode skipped)."""
    root = Path(directory)
    if not root.is_dir():
        raise PackError([line(FOLDER, str(root), "(missing)", "not a folder")])
    files: dict[str, bytes] = {}
    total = 0
    for path in sorted(root.iterdir()):
        if path.name.startswith(".") or path.name == "__pycache__" or path.suffix == ".pyc" \
                or not path.is_file():
            continue
        total += path.stat().st_size
        if total > MAX_PACK_BYTES:
            raise PackError([line(FOLDER, str(root), f"more than {total} bytes",
                                  f"larger than the {MAX_PACK_BYTES // (1024 * 1024)} MiB a "
                                  "pack may be")])
        files[path.name] = path.read_bytes()
    return files


def load_pack(directory: str | Path) -> Pack:
    """The pack in a folder; raises :class:`PackError`."""
    return load_pack_files(read_pack_folder(directory))


@functools.lru_cache(maxsize=1)
def _builtin() -> tuple[tuple[str, Pack], ...]:
    found: dict[str, tuple[str, Pack]] = {}
    for name, point in sorted(declared(PACKS_GROUP).items()):
        where = f"entry point {name!r} in group {PACKS_GROUP} ({point.value})"
        try:
            root = importlib.resources.files(point.value)
        except (ImportError, TypeError, ValueError) as exc:
            raise PackError([f"{where}: {point.value}: not an importable package: {exc}"]) \
                from None
        if not root.joinpath(PACK_FILE).is_file():
            raise PackError([f"{where}: {PACK_FILE}: missing: the package must hold the pack's "
                             "folder"])
        files = {item.name: item.read_bytes() for item in root.iterdir()
                 if item.is_file() and not item.name.startswith(".")
                 and not item.name.endswith(".pyc")}
        try:
            pack = load_pack_files(files)
        except PackError as exc:
            raise PackError([f"{point.value}/{line}" for line in exc.problems]) from None
        if pack.name != name:
            raise PackError([f"{where}: pack: {pack.name}: the entry point's name must be the "
                             "pack's name"])
        found[name] = (name, pack)
    return tuple(found.values())


def builtin_packs() -> dict[str, Pack]:
    """The installed packs, by name: every package registered in the entry point group
    ``switchyard.packs`` (the shipped ones in ``switchyard_packs`` are registered there too,
    exactly as a pack distribution registers its own), shared by every tenant.

    An installed pack that does not load is a packaging bug: it raises :class:`PackError`.
    """
    return dict(_builtin())


__all__ = ["ENGINE_RULES", "MAX_PACK_BYTES", "MIN_RETRY_LATER_S", "PACKS_GROUP", "builtin_packs",
           "load_pack", "load_pack_files", "param_value_problem", "parse_duration",
           "read_pack_folder", "retry_every_seconds", "validate_pack_files"]
