"""CEL conditions and payload templates: compiled once, checked against known names, evaluated
many times. One place for the decision service (rules, explanations) and the executor (step
``when``, payloads, targets).

CEL (Google's Common Expression Language, the ``common-expression-language`` package) is
side-effect free and terminates, so a pack can say ``fields.amount > params.max_auto_amount``
without any Python ``eval``. Compilation catches syntax errors; the checks here add what the
interpreter cannot know before it runs: which top-level names exist in the context (``fields``,
``params``, ...), which fields and parameters the pack declares, which scorers and steps exist.

Templates: a string that is exactly ``${expr}`` becomes the expression's value (a number stays a
number, a map stays a map); ``${expr}`` inside a longer string is replaced by the value's text.
Strings without ``${`` are left as they are, so ``{task_id}`` placeholders in targets keep
working as the executor fills them in.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any



def _cel_without_its_cli() -> ModuleType:
    """``import cel``, without the package's command-line interface.

    common-expression-language's ``__init__`` imports its REPL (``cel.cli``: typer, rich,
    prompt_toolkit), about 0.17 s of CPU in every service and command that loads a pack,
    none of it used here. While the package initialises, ``cel.cli`` is a placeholder; it
    is taken out again afterwards, so an ``import cel.cli`` elsewhere loads the real one.
    """
    if "cel" in sys.modules:
        return sys.modules["cel"]
    placeholder = ModuleType("cel.cli", "not loaded by switchyard (see _cel_without_its_cli)")
    sys.modules["cel.cli"] = placeholder
    try:
        import cel
    finally:
        if sys.modules.get("cel.cli") is placeholder:
            del sys.modules["cel.cli"]
    return cel


cel = _cel_without_its_cli()
import cel.stdlib as _stdlib  # noqa: E402 (after the package, loaded as above)

#: The names a decision rule (and its explanation) may use.
DECISION_VARIABLES: frozenset[str] = frozenset(
    {"fields", "metadata", "task", "params", "route", "scores", "extraction", "history"})
#: The names a plan (step ``when``, payload and target templates) may use.
PLAN_VARIABLES: frozenset[str] = frozenset({"fields", "metadata", "task", "params", "steps"})
#: Members of the fixed-shape maps in the context.
_MEMBERS: dict[str, frozenset[str]] = {
    "task": frozenset({"task_id", "tenant_id", "kind"}),
    "route": frozenset({"label", "confidence"}),
    "extraction": frozenset({"confidence", "issues"}),
}
STEP_MEMBERS: frozenset[str] = frozenset({"status", "output"})
MAX_EXPRESSION_CHARS = 4096
#: Extension functions of the package's stdlib that a pack may not call: ``lists.range(n)``
#: builds a list of any length in one call (an unbounded cost, tenant-controlled).
_WITHHELD: frozenset[str] = frozenset({"lists.range"})
#: The CEL extension functions (strings: join, lowerAscii, ...; math.round, ...; lists; sets)
#: of the package's stdlib; a program that calls one is run with them in its context.
_EXTENSIONS: dict[str, Any] = {name: func for group in _stdlib.EXTENSIONS.values()
                               for name, func in group.items() if name not in _WITHHELD}
_STDLIB_FUNCTIONS: frozenset[str] = frozenset(name.rsplit(".", 1)[-1] for name in _EXTENSIONS)
#: Namespaces of those functions (``math.round(x)``), which CEL reports as variables.
_NAMESPACES: frozenset[str] = frozenset(name.split(".", 1)[0] for name in _EXTENSIONS
                                        if "." in name)
_MACROS = ("all", "exists", "exists_one", "map", "filter")
_COMPREHENSION_VAR = re.compile(
    r"\.\s*(?:" + "|".join(_MACROS) + r")\s*\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*,")
_STRING_LITERAL = re.compile(r"""[rRbB]?(?:'''.*?'''|\"\"\".*?\"\"\"|'(?:\\.|[^'\\])*'|"(?:\\.|[^"\\])*")""",
                             re.S)
_MEMBER_ACCESS = re.compile(r"(?<![A-Za-z0-9_.])([A-Za-z_][A-Za-z0-9_]*)\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)"
                            r"(?:\s*\.\s*([A-Za-z_][A-Za-z0-9_]*))?")


def _interpreter_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is the CEL interpreter failing (an error, or a Rust panic, which pyo3
    raises as a BaseException) rather than a cancellation or an exit, which must go on."""
    return isinstance(exc, Exception) or type(exc).__name__ == "PanicException"


class ExpressionError(ValueError):
    """An expression could not be evaluated (a missing key, a type mismatch, a non-boolean
    condition). ``where`` names the rule or step it belongs to."""

    def __init__(self, where: str, message: str) -> None:
        self.where = where
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class Names:
    """What an expression may refer to beyond the top-level variables; None = anything."""

    variables: frozenset[str] = DECISION_VARIABLES
    fields: frozenset[str] | None = None
    params: frozenset[str] | None = None
    scores: frozenset[str] | None = None
    steps: frozenset[str] | None = None


@dataclass(frozen=True)
class Condition:
    """A compiled CEL condition."""

    source: str
    where: str
    program: Any = field(compare=False, repr=False)

    def evaluate(self, context: Mapping[str, Any]) -> bool:
        return evaluate_condition(self, context)


def check_expression(source: str, names: Names) -> tuple[Any, list[str]]:
    """Compile ``source`` and check the names it uses: (program or None, problems)."""
    if len(source) > MAX_EXPRESSION_CHARS:
        return None, [f"longer than {MAX_EXPRESSION_CHARS} characters"]
    if not source.strip():
        return None, ["empty expression"]
    try:
        program = cel.compile(source)
    except BaseException as exc:  # ValueError with a caret message; anything else is bad too
        if not _interpreter_failure(exc):
            raise
        return None, [f"not valid CEL: {_cel_error(str(exc))}"]
    problems: list[str] = []
    try:
        variables = set(program.variables())
    except Exception:  # pragma: no cover - defensive: the binding always answers
        variables = set()
    bound = set(_COMPREHENSION_VAR.findall(source))
    unknown = sorted(variables - bound - names.variables - _NAMESPACES)
    if unknown:
        problems.append(f"unknown name{'s' if len(unknown) > 1 else ''} "
                        f"{', '.join(unknown)}; allowed: {', '.join(sorted(names.variables))}")
    stripped = _STRING_LITERAL.sub('""', source)
    for top, member, sub in _MEMBER_ACCESS.findall(stripped):
        if top in bound or top not in names.variables:
            continue
        allowed: Iterable[str] | None
        if top in _MEMBERS:
            allowed = _MEMBERS[top]
        else:
            allowed = {"fields": names.fields, "params": names.params, "scores": names.scores,
                       "steps": names.steps}.get(top)
        if allowed is not None and member not in allowed:
            what = {"fields": "field", "params": "parameter", "scores": "scorer",
                    "steps": "earlier step"}.get(top, "member")
            listed = ", ".join(sorted(allowed)) or "none"
            problems.append(f"unknown {what} {top}.{member}; known: {listed}")
        elif top == "steps" and sub and sub not in STEP_MEMBERS:
            problems.append(f"unknown member steps.{member}.{sub}; known: output, status")
    if problems:
        return None, problems
    return _Program(program), problems


def _cel_error(message: str) -> str:
    """The parser's message, short: what is wrong and where (line, column)."""
    found = re.search(r"<input>:(\d+):(\d+): (.*?)(?: expecting .*)?$", message, re.M)
    if found:
        return f"{found.group(3).strip()} at line {found.group(1)}, column {found.group(2)}"[:200]
    first = " ".join(message.split())
    return re.sub(r"^Failed to parse expression .*?: ", "", first)[:200]


def compile_condition(source: str, where: str, variables: Names | Iterable[str] | None = None
                      ) -> Condition:
    """Compile a CEL condition (raises ValueError with the problems joined by '; ').

    ``variables`` is a :class:`Names` (top-level names plus the declared fields/params/...) or
    just the allowed top-level names; None allows the decision context.
    """
    names = variables if isinstance(variables, Names) else \
        Names(variables=frozenset(variables) if variables is not None else DECISION_VARIABLES)
    program, problems = check_expression(source, names)
    if problems:
        raise ValueError(f"{where}: " + "; ".join(problems))
    return Condition(source=source, where=where, program=program)


class _Program:
    """A compiled CEL program, run with the stdlib extensions only when it calls one (building
    that context costs ~20 µs; a plain evaluation ~1 µs)."""

    __slots__ = ("program", "extended", "source")

    def __init__(self, program: Any) -> None:
        self.program = program
        self.source = program.source() if callable(getattr(program, "source", None)) else ""
        try:
            self.extended = bool(set(program.functions()) & _STDLIB_FUNCTIONS)
        except Exception:  # pragma: no cover - defensive
            self.extended = True

    def execute(self, context: Mapping[str, Any]) -> Any:
        if isinstance(context, Activation):
            return self.program.execute(context.cel_context())
        if not self.extended:
            return self.program.execute(dict(context))
        return self.program.execute(_cel_context(context))


def _cel_context(context: Mapping[str, Any]) -> Any:
    """``context`` converted for CEL, with the stdlib extensions."""
    env = cel.Context()
    for name, func in _EXTENSIONS.items():
        env.add_function(name, func)
    env.update(dict(context))
    return env


class Activation(Mapping[str, Any]):
    """A rule context converted for CEL once, for the many expressions evaluated against it.

    Converting a context (a decision's fields, parameters, scores, history) into CEL values is
    what an evaluation costs: ~100-200 µs, against ~1 µs to run a compiled program on a context
    already converted. A decision table runs every rule's condition, then an explanation
    template, on the same context, so the engine wraps it once. It reads as the mapping it
    wraps; that mapping must not change while the activation is in use.
    """

    __slots__ = ("_mapping", "_cel")

    def __init__(self, mapping: Mapping[str, Any]) -> None:
        self._mapping = mapping
        self._cel: Any = None

    def cel_context(self) -> Any:
        if self._cel is None:
            self._cel = _cel_context(self._mapping)
        return self._cel

    def __getitem__(self, key: str) -> Any:
        return self._mapping[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._mapping)

    def __len__(self) -> int:
        return len(self._mapping)


def _execute(program: Any, context: Mapping[str, Any], where: str) -> Any:
    try:
        return program.execute(context)
    except KeyError as exc:
        raise ExpressionError(where, f"no such key {exc} (guard it with has(...))") from None
    except BaseException as exc:
        if not _interpreter_failure(exc):
            raise
        raise ExpressionError(where, " ".join(str(exc).split())[:300]) from None


def evaluate_condition(condition: Condition, context: Mapping[str, Any]) -> bool:
    """Run a condition; anything but a boolean result is an :class:`ExpressionError`."""
    result = _execute(condition.program, context, condition.where)
    if not isinstance(result, bool):
        raise ExpressionError(condition.where, f"a condition must give true or false, "
                                               f"not {type(result).__name__} {result!r}"[:300])
    return result


def as_text(value: Any) -> str:
    """How a value reads inside a longer string: numbers without a needless '.0', booleans as
    true/false, null as empty, maps and lists as JSON."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return f"{value.total_seconds():g}s"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(_jsonable(value), sort_keys=True, separators=(",", ":"))
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _jsonable(value: Any) -> Any:
    """A CEL result as plain JSON values (timestamps/durations as text)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return as_text(value)


def template_parts(text: str) -> list[tuple[bool, str]] | None:
    """Split ``text`` into literal and ``${expr}`` parts: [(is_expr, text), ...].

    Braces inside the expression (CEL map literals) and quoted strings are balanced, so
    ``${ {"a": 1}["a"] }`` is one expression. None when a ``${`` is never closed.
    """
    parts: list[tuple[bool, str]] = []
    i, literal = 0, []
    while i < len(text):
        if text.startswith("${", i):
            j, depth, quote = i + 2, 0, ""
            while j < len(text):
                ch = text[j]
                if quote:
                    if ch == "\\":
                        j += 1
                    elif ch == quote:
                        quote = ""
                elif ch in "'\"":
                    quote = ch
                elif ch == "{":
                    depth += 1
                elif ch == "}":
                    if depth == 0:
                        break
                    depth -= 1
                j += 1
            if j >= len(text):
                return None
            if literal:
                parts.append((False, "".join(literal)))
                literal = []
            parts.append((True, text[i + 2:j]))
            i = j + 1
        else:
            literal.append(text[i])
            i += 1
    if literal:
        parts.append((False, "".join(literal)))
    return parts


@dataclass(frozen=True)
class _Piece:
    is_expr: bool
    text: str
    program: Any = field(default=None, compare=False, repr=False)


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _member(path: str, key: Any) -> str:
    """``path`` followed by a map key, written as the pack's problem lines write paths
    (``.name``, or ``["any key"]`` for a key that is not a name, e.g. an empty one)."""
    text = str(key)
    if _IDENTIFIER.fullmatch(text):
        return f"{path}.{text}"
    return f"{path}[{json.dumps(text, ensure_ascii=False)}]"


class Template:
    """A payload tree (maps, lists, strings, numbers) with ``${expr}`` strings compiled once.

    ``Template(tree, where, names)`` raises ValueError listing every problem (path: problem);
    :meth:`problems` gives them as a list instead. :meth:`render` returns a new tree.
    """

    def __init__(self, tree: Any, where: str = "template",
                 variables: Names | Iterable[str] | None = None, *, strict: bool = True) -> None:
        self.tree = tree
        self.where = where
        names = variables if isinstance(variables, Names) else \
            Names(variables=frozenset(variables) if variables is not None else PLAN_VARIABLES)
        self._issues: list[tuple[str, str, str]] = []
        self._compiled = self._compile(tree, "", names)
        if strict and self._issues:
            raise ValueError("; ".join(f"{where}{p}: {v}: {m}" for p, v, m in self._issues))

    @property
    def problems(self) -> list[tuple[str, str]]:
        """(path below the template's root, "value: problem") pairs."""
        return [(path, f"{value}: {message}") for path, value, message in self._issues]

    @property
    def issues(self) -> list[tuple[str, str, str]]:
        """(path below the template's root, the offending text, problem) triples."""
        return list(self._issues)

    @property
    def is_static(self) -> bool:
        """True when nothing in the tree is an expression."""
        return not _has_expr(self._compiled)

    def _compile(self, node: Any, path: str, names: Names) -> Any:
        if isinstance(node, str):
            if "${" not in node:
                return node
            parts = template_parts(node)
            if parts is None:
                self._issues.append((path, _short(node), "'${' without a closing '}'"))
                return node
            pieces = []
            for is_expr, text in parts:
                if not is_expr:
                    pieces.append(_Piece(False, text))
                    continue
                program, problems = check_expression(text, names)
                for problem in problems:
                    self._issues.append((path, f"${{{_short(text, 50)}}}", problem))
                pieces.append(_Piece(True, text, program))
            return tuple(pieces)
        if isinstance(node, Mapping):
            return {k: self._compile(v, _member(path, k), names) for k, v in node.items()}
        if isinstance(node, (list, tuple)):
            return [self._compile(v, f"{path}[{i}]", names) for i, v in enumerate(node)]
        return node

    def expressions(self) -> list[tuple[str, str, Any]]:
        """(path below the template's root, source, compiled program) of each ``${...}``."""
        found: list[tuple[str, str, Any]] = []

        def walk(node: Any, path: str) -> None:
            if isinstance(node, tuple):
                found.extend((path, piece.text, piece.program) for piece in node
                             if piece.is_expr and piece.program is not None)
            elif isinstance(node, dict):
                for key, value in node.items():
                    walk(value, _member(path, key))
            elif isinstance(node, list):
                for index, value in enumerate(node):
                    walk(value, f"{path}[{index}]")

        walk(self._compiled, "")
        return found

    def render(self, context: Mapping[str, Any]) -> Any:
        """The tree with every expression evaluated against ``context``."""
        if self._issues:
            raise ExpressionError(self.where, "template has problems: "
                                  + "; ".join(m for _, _, m in self._issues))
        return self._render(self._compiled, "", context if isinstance(context, Activation)
                            else dict(context))

    def render_text(self, context: Mapping[str, Any],
                    quoted: Callable[[str, str], str]) -> str:
        """A string template rendered as text, each ``${...}``'s text passed through
        ``quoted(source, text)`` and the template's own words kept as written: what an
        explanation shows of the values it quotes is decided per quote, not by searching
        the whole text afterwards."""
        if self._issues:
            raise ExpressionError(self.where, "template has problems: "
                                  + "; ".join(m for _, _, m in self._issues))
        node = self._compiled
        if not isinstance(node, tuple):
            return as_text(node)
        context = context if isinstance(context, Activation) else dict(context)
        return "".join(
            quoted(piece.text, as_text(_execute(piece.program, context, self.where)))
            if piece.is_expr else piece.text for piece in node)

    def _render(self, node: Any, path: str, context: Mapping[str, Any]) -> Any:
        if isinstance(node, tuple):
            if len(node) == 1 and node[0].is_expr:
                return _jsonable(_execute(node[0].program, context, f"{self.where}{path}"))
            out = []
            for piece in node:
                if piece.is_expr:
                    out.append(as_text(_execute(piece.program, context, f"{self.where}{path}")))
                else:
                    out.append(piece.text)
            return "".join(out)
        if isinstance(node, dict):
            return {k: self._render(v, f"{path}.{k}", context) for k, v in node.items()}
        if isinstance(node, list):
            return [self._render(v, f"{path}[{i}]", context) for i, v in enumerate(node)]
        return node


def _has_expr(node: Any) -> bool:
    if isinstance(node, tuple):
        return any(p.is_expr for p in node)
    if isinstance(node, dict):
        return any(_has_expr(v) for v in node.values())
    if isinstance(node, list):
        return any(_has_expr(v) for v in node)
    return False


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


# -- typed field values -------------------------------------------------------------------------

_NUMBER = re.compile(r"[-+]?\d(?:[\d ,.']*\d)?")


def parse_number(text: str) -> float | None:
    """'1.234,56' / '1,234.56' / '1 234,56' / 'EUR 42.50' / '-3' -> float; None if no number.

    The last '.' or ',' followed by one or two digits is the decimal separator; every other
    separator groups thousands (as invoices write amounts).
    """
    match = _NUMBER.search(text or "")
    if match is None:
        return None
    num = match.group(0).replace(" ", "").replace("'", "")
    sign = -1.0 if num.startswith("-") else 1.0
    num = num.lstrip("+-")
    decimal = re.search(r"[.,](\d{1,2})$", num)
    try:
        if decimal:
            whole = re.sub(r"[.,]", "", num[:decimal.start()])
            return sign * float(f"{whole or '0'}.{decimal.group(1)}")
        if re.fullmatch(r"\d+\.\d{3,}", num):  # 3.14159: a decimal, not thousands
            return sign * float(num)
        return sign * float(re.sub(r"[.,]", "", num))
    except ValueError:
        return None


def typed_value(raw: str | None, type_: str) -> Any:
    """One extracted value (text) as its pack type's CEL value; None when absent/unreadable."""
    if raw is None:
        return None
    text = str(raw).strip()
    if not text:
        return None
    if type_ in ("money", "number"):
        return parse_number(text)
    if type_ == "integer":
        number = parse_number(text)
        return int(number) if number is not None and float(number).is_integer() else None
    if type_ == "boolean":
        lowered = text.lower()
        if lowered in ("true", "yes", "y", "1", "on", "x", "checked"):
            return True
        if lowered in ("false", "no", "n", "0", "off", "unchecked"):
            return False
        return None
    if type_ == "table":  # the rows as JSON: a list of column -> cell value
        try:
            rows = json.loads(text)
        except (ValueError, RecursionError):
            return None
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            return None
        return rows
    return text


def typed_fields(raw: Mapping[str, str], types: Mapping[str, str]) -> dict[str, Any]:
    """Extracted fields (text) -> the ``fields`` map of a rule/template context.

    Every declared field is present (absent or unreadable ones as null, so ``fields.x == null``
    works); money/number -> double, integer -> int, boolean -> bool, table -> a list of rows
    (column -> value, as the extractor wrote them), others stay text. Fields
    not declared (e.g. a reviewer's additions) are passed as text.
    """
    out: dict[str, Any] = {name: value for name, value in raw.items() if name not in types}
    for name, type_ in types.items():
        out[name] = typed_value(raw.get(name), type_)
    return out


#: The keys of one discrepancy, a field a check disagrees on (``switchyard.v1.Discrepancy``):
#: what a rule's or an approval step's ``discrepancies`` expression gives a list of maps with.
DISCREPANCY_KEYS = ("field", "submitted", "found", "source", "note")


def discrepancy_maps(value: Any, where: str) -> list[dict[str, str]]:
    """A ``discrepancies`` expression's value as a list of maps with exactly the keys
    :data:`DISCREPANCY_KEYS` (each value as text; a missing key is empty). Anything else (not
    a list, an item that is not a map, a key not listed) is an :class:`ExpressionError`."""
    if not isinstance(value, list):
        raise ExpressionError(where, f"must give a list of maps with keys "
                                     f"{', '.join(DISCREPANCY_KEYS)}, not {type(value).__name__}")
    out = []
    for index, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise ExpressionError(where, f"item {index} is {type(item).__name__}, not a map")
        unknown = sorted(set(map(str, item)) - set(DISCREPANCY_KEYS))
        if unknown:
            raise ExpressionError(where, f"item {index} has unknown key(s) "
                                         f"{', '.join(unknown)}; known: "
                                         f"{', '.join(DISCREPANCY_KEYS)}")
        out.append({key: as_text(item.get(key)) for key in DISCREPANCY_KEYS})
    return out


__all__ = ["DECISION_VARIABLES", "DISCREPANCY_KEYS", "PLAN_VARIABLES", "Activation", "Condition",
           "ExpressionError", "Names",
           "Template", "as_text", "check_expression", "compile_condition", "discrepancy_maps",
           "evaluate_condition", "parse_number", "template_parts", "typed_fields", "typed_value"]
