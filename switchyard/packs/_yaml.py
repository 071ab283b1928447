"""Reading untrusted YAML safely: one problem line instead of an exception, whatever the bytes.

Packs and tenant settings arrive from tenants over gRPC, so the bytes may be anything: not
UTF-8, not YAML, several documents, nested thousands deep (the parser recurses), or an alias
bomb (a few lines that expand to billions of nodes once anything walks the tree), or an alias
inside its own anchor (a cycle). The event stream is scanned first, iteratively, counting depth
and expanded size; only a document within the limits is built, with the safe loader.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import yaml

from switchyard.packs._schema import json_path, line, show

MAX_DEPTH = 64
MAX_NODES = 200_000

try:  # the C loader when libyaml is there; same results, faster
    _Loader: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover
    _Loader = yaml.SafeLoader


def decode(data: bytes, file: str) -> tuple[str | None, list[str]]:
    """UTF-8 text of ``data`` (a leading BOM dropped), or a problem line."""
    if not isinstance(data, (bytes, bytearray)):
        return None, [line(file, "(root)", type(data).__name__, "must be bytes")]
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = bytes(data)[exc.start:exc.start + 1].hex()
        return None, [line(file, "(root)", f"byte 0x{bad} at offset {exc.start}",
                           "not UTF-8 text")]
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\x00" in text:
        return None, [line(file, "(root)", f"NUL at offset {text.index(chr(0))}",
                           "not text (NUL character)")]
    return text, []


def _where(mark: Any) -> str:
    if mark is None:
        return "(root)"
    return f"line {mark.line + 1}, column {mark.column + 1}"


def _scan(text: str, file: str) -> list[str]:
    """Check depth, size, cycles and document count on the event stream (no recursion)."""
    depth, documents = 0, 0
    sizes: dict[str, int] = {}
    stack: list[list[Any]] = [[None, 0]]  # [anchor, expanded size] per open collection
    open_anchors: set[str] = set()
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.DocumentStartEvent):
            documents += 1
            if documents > 1:
                return [line(file, _where(event.start_mark), "---",
                             "one YAML document only, found a second")]
        elif isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                return [line(file, _where(event.start_mark), f"depth {depth}",
                             f"nested deeper than {MAX_DEPTH} levels")]
            if event.anchor:
                open_anchors.add(event.anchor)
            stack.append([event.anchor, 1])
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1
            anchor, size = stack.pop()
            if anchor:
                sizes[anchor] = size
                open_anchors.discard(anchor)
            stack[-1][1] += size
        elif isinstance(event, yaml.ScalarEvent):
            if event.anchor:
                sizes[event.anchor] = 1
            stack[-1][1] += 1
        elif isinstance(event, yaml.AliasEvent):
            if event.anchor in open_anchors:
                return [line(file, _where(event.start_mark), f"*{event.anchor}",
                             "an alias inside its own anchor (a cycle)")]
            stack[-1][1] += sizes.get(event.anchor, 1)
        if stack[0][1] + sum(frame[1] for frame in stack[1:]) > MAX_NODES:
            return [line(file, _where(getattr(event, "start_mark", None)), "(document)",
                         f"expands to more than {MAX_NODES} values (aliases?)")]
    return []


def load_yaml(data: bytes, file: str) -> tuple[Any, list[str]]:
    """Parse one YAML document: (value, []) or (None, [problem line])."""
    text, problems = decode(data, file)
    if text is None:
        return None, problems
    try:
        problems = _scan(text, file)
        if problems:
            return None, problems
        value = yaml.load(text, Loader=_Loader)  # noqa: S506 - the safe loader (C or Python)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        snippet = show(_snippet(text, mark)) if mark is not None else "(document)"
        problem = exc.problem or exc.context or "syntax error"
        # where the construct that was never finished began (an unclosed ``{`` or ``[``, a
        # quote): the parser notices only later, so the mark alone points past the mistake
        began = exc.context_mark if exc.problem and exc.context else None
        if began is not None and mark is not None and began.line != mark.line:
            problem += f" ({exc.context} that began at line {began.line + 1}: " \
                       f"{show(_snippet(text, began))})"
        return None, [line(file, _where(mark), snippet, f"not valid YAML: {problem}")]
    except yaml.YAMLError as exc:
        return None, [line(file, "(root)", "(document)",
                           f"not valid YAML: {' '.join(str(exc).split())[:200]}")]
    except (RecursionError, MemoryError, ValueError, TypeError, OverflowError) as exc:
        return None, [line(file, "(root)", "(document)",
                           f"not readable YAML: {type(exc).__name__}")]
    bad = _key_problems(value, [], file)
    if bad:
        return None, bad
    return value, []


def _snippet(text: str, mark: Any) -> str:
    lines = text.splitlines()
    if mark is None or not 0 <= mark.line < len(lines):
        return ""
    return lines[mark.line].strip()


def _key_problems(value: Any, path: list[Any], file: str) -> list[str]:
    """Mapping keys must be text (YAML allows numbers, dates, lists as keys)."""
    out: list[str] = []
    todo: list[tuple[Any, list[Any]]] = [(value, path)]
    while todo and len(out) < 50:
        node, where = todo.pop()
        if isinstance(node, dict):
            for key, item in node.items():
                if not isinstance(key, str):
                    out.append(line(file, json_path(where), show(_plain(key)),
                                    "keys must be text (quote them)"))
                    continue
                todo.append((item, where + [key]))
        elif isinstance(node, list):
            todo.extend((item, where + [i]) for i, item in enumerate(node))
    return sorted(out)


def _plain(value: Any) -> Any:
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, tuple):
        return list(value)
    return value


__all__ = ["MAX_DEPTH", "MAX_NODES", "decode", "load_yaml"]
