"""``switchyard packs list|show|validate|apply|diff|test|schema``: automation packs from a shell.

``validate`` and ``schema`` work offline, with the same ``switchyard.packs`` code the decision
service loads packs with. The others call PackService on the decision service (generated stubs
from ``switchyard.v1``), with the API key, TLS options and exit codes of every command-line
client (``switchyard._tasks_cli``, docs/cli.md): 0 ok; 1 the server refused a call, a pack is
invalid, a golden case failed, or ``diff`` found a difference; 2 usage or input error (an
unreadable folder or file, a bad flag, unusable client TLS files); 3 cannot connect. Errors are
lines on stderr, never a traceback; an invalid pack gives one line per mistake.
"""

from __future__ import annotations

import argparse
import base64
import difflib
import json
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from switchyard._settings import Settings
from switchyard._tasks_cli import (
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_USAGE,
    _add_client_arguments,
    _main,
    _Usage,
    data_console,
)

__all__ = ["add_packs_arguments", "render_diff", "render_test_results", "run"]


def add_packs_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``switchyard packs`` actions and their options."""
    sub = parser.add_subparsers(dest="packs_action", required=True, metavar="ACTION")

    def client(p: argparse.ArgumentParser) -> None:
        _add_client_arguments(p, "PackService (decision service)",
                              "SWITCHYARD_DECISION_GRPC_PORT")

    p = sub.add_parser("list", help="the packs a tenant can use (its own and the shared ones)")
    p.add_argument("--tenant", default="", help="whose view (default: the API key's tenant)")
    client(p)
    p = sub.add_parser("show", help="one stored pack version: its summary and a file")
    p.add_argument("name")
    p.add_argument("--version", default="", help="default: the newest")
    p.add_argument("--tenant", default="", help="whose view (default: the API key's tenant)")
    p.add_argument("--file", default="pack.yaml", help="the file to print (default pack.yaml)")
    client(p)
    p = sub.add_parser("validate", help="check pack folders offline: one line per mistake; "
                                        "exit 1 when any is invalid")
    p.add_argument("dirs", nargs="+", metavar="DIR")
    p.add_argument("--remote", action="store_true",
                   help="have the decision service check them instead (ValidatePack): for "
                        "packs naming Python extensions installed there, not here")
    client(p)
    p = sub.add_parser("apply", help="store a pack folder as its version (DIR), or a tenant's "
                                     "pack settings (FILE, YAML); no restart needed")
    p.add_argument("paths", nargs="+", metavar="DIR|FILE")
    p.add_argument("--tenant", default="",
                   help="a pack: store it for this tenant only; settings: whose (default: the "
                        "API key's tenant; an operator key stores packs shared by every tenant)")
    client(p)
    p = sub.add_parser("diff", help="unified diff of the stored pack (newest version) or "
                                    "tenant settings against a local DIR or FILE; exit 1 when "
                                    "they differ")
    p.add_argument("path", metavar="DIR|FILE")
    p.add_argument("--tenant", default="", help="whose view (default: the API key's tenant)")
    client(p)
    p = sub.add_parser("test", help="run a pack's golden cases through the decision engine and "
                                    "Triton; exit 1 on any mismatch")
    p.add_argument("pack", metavar="DIR|NAME", help="a pack folder, or the name of a stored pack")
    p.add_argument("--tenant", default="",
                   help="whose parameter overrides apply (default: the API key's tenant)")
    client(p)
    p = sub.add_parser("schema", help="print the JSON Schema of pack.yaml (for editor "
                                      "completion), offline")
    p.add_argument("--tenant-settings", action="store_true",
                   help="the schema of the tenant-settings document instead")


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run ``switchyard packs <action>``."""
    action = args.packs_action
    if action == "validate" and not args.remote:
        return _validate(args)
    if action == "schema":
        return _schema(args)
    command = f"packs {action}"
    try:
        prepared = _PREPARE[action](args)   # local files are read before connecting
    except _Usage as exc:
        print(f"switchyard {command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from switchyard.v1 import PackServiceStub

    return _main(command, args, settings, lambda a, stub: _ACTIONS[action](a, stub, prepared),
                 stub_class=PackServiceStub, default_port=settings.decision_grpc_port)


# --- local files --------------------------------------------------------------------------


def _read_folder(directory: Path) -> dict[str, bytes]:
    """The files of a pack folder, read as the decision service reads them
    (``switchyard.packs.read_pack_folder``). Raises ``_Usage`` when it is not a readable
    folder with a pack.yaml, or is over the size limit."""
    from switchyard.packs import PackError
    from switchyard.packs import read_pack_folder as read

    directory = Path(directory)
    try:
        files = read(directory)
    except PackError as exc:
        raise _Usage("; ".join(exc.problems)) from None
    except OSError as exc:
        raise _Usage(f"{directory}: {exc.strerror or exc}") from None
    if "pack.yaml" not in files:
        raise _Usage(f"{directory}: no pack.yaml at the top of the folder")
    return files


def _read_file(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise _Usage(f"{path}: {exc.strerror or exc}") from None


def _source(files: Mapping[str, bytes]) -> Any:
    from switchyard.v1 import PackFile, PackSource

    return PackSource(files=[PackFile(path=k, content=v) for k, v in sorted(files.items())])


def _pack_name(files: Mapping[str, bytes]) -> str:
    """The ``pack:`` of a pack.yaml, read leniently (``diff`` works on invalid packs too)."""
    import yaml

    try:
        document = yaml.safe_load(files["pack.yaml"])
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise _Usage(f"pack.yaml: not YAML: {str(exc).splitlines()[0]}") from None
    name = document.get("pack") if isinstance(document, dict) else None
    if not isinstance(name, str) or not name:
        raise _Usage("pack.yaml: no `pack:` name")
    return name


def _locate(directory: Path, files: Mapping[str, bytes], line: str) -> str:
    """A problem line made findable from the shell: ``DIR/pack.yaml: path: ...``."""
    head = line.split(": ", 1)[0]
    return f"{directory / line}" if head in files else f"{directory}: {line}"


# --- offline: validate, schema --------------------------------------------------------------


def _validate(args: argparse.Namespace) -> int:
    from switchyard.packs import load_pack_files, validate_pack_files

    results: list[dict[str, Any]] = []
    usage = False
    for name in args.dirs:
        directory = Path(name)
        result: dict[str, Any] = {"dir": str(directory), "valid": False, "problems": [],
                                  "pack": None}
        try:
            files = _read_folder(directory)
        except _Usage as exc:
            result["problems"] = [str(exc)]
            usage = True
            results.append(result)
            continue
        problems = [_locate(directory, files, line) for line in validate_pack_files(files)]
        result["problems"] = problems
        if not problems:
            pack = load_pack_files(files)
            result.update(valid=True, pack={
                "name": pack.name, "version": pack.version, "digest": pack.digest,
                "fields": len(pack.fields), "rules": len(pack.rules), "steps": len(pack.plan),
                "examples": len(pack.examples), "look_alikes": len(pack.look_alikes),
                "tests": len(pack.tests)})
        results.append(result)
    code = _report_validation(args, results)
    return EXIT_USAGE if usage else code


def _report_validation(args: argparse.Namespace, results: list[dict[str, Any]]) -> int:
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            if r["valid"]:
                p = r["pack"]
                what = (f"{p['fields']} fields, {p['rules']} rules, {p['steps']} plan steps, "
                        f"{p['examples']} examples, "
                        + (f"{p['look_alikes']} look-alikes, " if p["look_alikes"] else "")
                        + f"{p['tests']} golden cases"
                        if "fields" in p else "checked by the decision service")
                print(f"{r['dir']}: valid: {p['name']} {p['version']} ({what})")
            else:
                for line in r["problems"]:
                    print(line, file=sys.stderr)
    return EXIT_OK if all(r["valid"] for r in results) else EXIT_REFUSED


def _prepare_validate(args: argparse.Namespace) -> list[tuple[Path, dict[str, bytes]]]:
    return [(Path(name), _read_folder(Path(name))) for name in args.dirs]


async def _validate_remote(args: argparse.Namespace, stub: Any,
                           prepared: list[tuple[Path, dict[str, bytes]]]) -> int:
    from switchyard.v1 import ValidatePackRequest

    results: list[dict[str, Any]] = []
    for directory, files in prepared:
        response = await stub.ValidatePack(ValidatePackRequest(source=_source(files)))
        problems = [_locate(directory, files, line) for line in response.problems]
        results.append({"dir": str(directory), "valid": not problems, "problems": problems,
                        "pack": None if problems else {
                            "name": response.pack.name, "version": response.pack.version,
                            "digest": response.pack.digest}})
    return _report_validation(args, results)


def _schema(args: argparse.Namespace) -> int:
    from switchyard.packs import pack_schema, tenant_settings_schema

    schema = tenant_settings_schema() if args.tenant_settings else pack_schema()
    print(json.dumps(schema, indent=2, sort_keys=True))
    return EXIT_OK


# --- over gRPC -----------------------------------------------------------------------------


def _summary(pack: Any) -> dict[str, Any]:
    return {"name": pack.name, "version": pack.version, "description": pack.description,
            "digest": pack.digest, "tenant_id": pack.tenant_id,
            "applied_at": (pack.applied_at.ToDatetime().isoformat() + "Z"
                           if pack.HasField("applied_at") else None),
            "applied_by": pack.applied_by, "enabled": pack.enabled,
            "newest_version": pack.newest_version or pack.version}


def _text(blob: bytes) -> str | None:
    try:
        return blob.decode("utf-8")
    except UnicodeDecodeError:
        return None


class _Invalid(Exception):
    """The server refused the input with one line per mistake (INVALID_ARGUMENT)."""

    def __init__(self, header: str, lines: list[str]) -> None:
        super().__init__(header)
        self.header, self.lines = header, lines


async def _call(rpc: Callable[[Any], Awaitable[Any]], request: Any) -> Any:
    """One call; INVALID_ARGUMENT becomes ``_Invalid`` with each field violation as a line."""
    import grpc

    from switchyard._grpc import parse_status_details, violations_of

    try:
        return await rpc(request)
    except grpc.aio.AioRpcError as exc:
        if exc.code() != grpc.StatusCode.INVALID_ARGUMENT:
            raise
        # every violation, in order (two may share a field)
        lines = [f"{field}: {text}" if field else text
                 for field, text in violations_of(parse_status_details(exc))]
        # the status text joins the violations; print them once, a line each
        header = (f"INVALID_ARGUMENT: {len(lines)} mistake(s)" if lines
                  else f"INVALID_ARGUMENT: {exc.details()}")
        raise _Invalid(header, lines) from None


def _print_invalid(command: str, exc: _Invalid) -> int:
    print(f"switchyard {command}: {exc.header}", file=sys.stderr)
    for line in exc.lines:
        print(f"  {line}", file=sys.stderr)
    return EXIT_REFUSED


def _prepare_nothing(args: argparse.Namespace) -> None:
    return None


async def _list(args: argparse.Namespace, stub: Any, _: None) -> int:
    from rich.table import Table

    from switchyard.v1 import ListPacksRequest

    packs = [_summary(p) for p in (await stub.ListPacks(
        ListPacksRequest(tenant_id=args.tenant))).packs]
    if args.json:
        print(json.dumps(packs, indent=2))
        return EXIT_OK
    table = Table(title=f"{len(packs)} pack(s)", title_justify="left")
    for column in ("pack", "version", "owner", "enabled", "digest", "applied by", "applied at",
                   "description"):
        table.add_column(column, overflow="fold")
    for p in packs:
        version = p["version"] if p["newest_version"] == p["version"] else \
            f"{p['version']} (pinned; newest {p['newest_version']})"
        table.add_row(p["name"], version, p["tenant_id"] or "shared",
                      "yes" if p["enabled"] else "no", p["digest"][:12], p["applied_by"],
                      p["applied_at"] or "-", p["description"])
    data_console().print(table)
    return EXIT_OK


async def _show(args: argparse.Namespace, stub: Any, _: None) -> int:
    from switchyard.v1 import GetPackRequest

    response = await stub.GetPack(GetPackRequest(name=args.name, version=args.version,
                                                 tenant_id=args.tenant))
    files = {f.path: f.content for f in response.source.files}
    if args.json:
        out = _summary(response.pack)
        out["files"] = {path: (_text(blob) if _text(blob) is not None
                               else {"base64": base64.b64encode(blob).decode("ascii")})
                        for path, blob in sorted(files.items())}
        print(json.dumps(out, indent=2))
        return EXIT_OK
    s = _summary(response.pack)
    for key in ("name", "version", "description", "tenant_id", "digest", "applied_by",
                "applied_at"):
        value = s[key] if key != "tenant_id" else (s[key] or "shared")
        print(f"{key + ':':<13}{value or '-'}")
    print(f"{'files:':<13}{', '.join(sorted(files)) or '-'}")
    if args.file not in files:
        raise _Usage(f"{args.name} {s['version']} has no file {args.file!r}")
    text = _text(files[args.file])
    print(f"\n--- {args.file}")
    print(text if text is not None else f"(binary, {len(files[args.file])} bytes)", end="")
    return EXIT_OK


def _prepare_apply(args: argparse.Namespace) -> list[tuple[Path, str, bytes | dict[str, bytes]]]:
    """Read every path before the first call: a typo applies nothing."""
    out: list[tuple[Path, str, bytes | dict[str, bytes]]] = []
    for name in args.paths:
        path = Path(name)
        if path.is_dir():
            out.append((path, "pack", _read_folder(path)))
        else:
            out.append((path, "settings", _read_file(path)))
    return out


async def _apply(args: argparse.Namespace, stub: Any,
                 prepared: list[tuple[Path, str, Any]]) -> int:
    from switchyard.v1 import ApplyPackRequest, ApplyTenantSettingsRequest

    results: list[dict[str, Any]] = []
    for path, kind, content in prepared:
        try:
            if kind == "pack":
                response = await _call(stub.ApplyPack, ApplyPackRequest(
                    source=_source(content), tenant_id=args.tenant))
                results.append({"path": str(path), "kind": "pack", "changed": response.changed,
                                **_summary(response.pack)})
            else:
                settings_response = await _call(stub.ApplyTenantSettings,
                                                 ApplyTenantSettingsRequest(
                                                     tenant_id=args.tenant, document=content))
                results.append({"path": str(path), "kind": "tenant_settings",
                                "tenant_id": args.tenant, "version": settings_response.version,
                                "changed": settings_response.changed})
        except _Invalid as exc:
            _print_applied(args, results)
            exc.header = f"{path}: {exc.header}"
            if kind == "settings":  # the service names the document settings.yaml
                exc.lines = [line.replace("settings.yaml", str(path), 1) for line in exc.lines]
            return _print_invalid("packs apply", exc)
    _print_applied(args, results)
    return EXIT_OK


def _print_applied(args: argparse.Namespace, results: list[dict[str, Any]]) -> None:
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for r in results:
        if r["kind"] == "pack":
            owner = r["tenant_id"] or "every tenant (shared)"
            how = "applied" if r["changed"] else "already stored, unchanged"
            print(f"{r['path']}: {r['name']} {r['version']} for {owner}: {how} "
                  f"(digest {r['digest'][:12]})")
        else:
            how = "applied" if r["changed"] else "unchanged"
            print(f"{r['path']}: tenant settings of {r['tenant_id'] or 'your tenant'}: "
                  f"version {r['version']} {how}")


def render_diff(stored: Mapping[str, bytes], local: Mapping[str, bytes], stored_label: str,
                local_label: str) -> str:
    """A unified diff, file by file (sorted paths), of two file sets; empty when equal."""
    chunks: list[str] = []
    for path in sorted(set(stored) | set(local)):
        old, new = stored.get(path), local.get(path)
        if old == new:
            continue
        old_text = "" if old is None else _text(old)
        new_text = "" if new is None else _text(new)
        if old_text is None or new_text is None:
            chunks.append(f"Binary files {stored_label}/{path} and {local_label}/{path} "
                          "differ\n")
            continue
        lines = difflib.unified_diff(
            old_text.splitlines(keepends=True), new_text.splitlines(keepends=True),
            fromfile="/dev/null" if old is None else f"{stored_label}/{path}",
            tofile="/dev/null" if new is None else f"{local_label}/{path}")
        chunks.append("".join(line if line.endswith("\n") else line + "\n\\ No newline at "
                              "end of file\n" for line in lines))
    return "".join(chunks)


def _prepare_diff(args: argparse.Namespace) -> tuple[str, Any]:
    path = Path(args.path)
    if path.is_dir():
        files = _read_folder(path)
        return "pack", (files, _pack_name(files))
    return "settings", _read_file(path)


async def _diff(args: argparse.Namespace, stub: Any, prepared: tuple[str, Any]) -> int:
    import grpc

    from switchyard.v1 import GetPackRequest, GetTenantSettingsRequest

    kind, content = prepared
    if kind == "pack":
        local, name = content
        try:
            response = await stub.GetPack(GetPackRequest(name=name, tenant_id=args.tenant))
            stored = {f.path: f.content for f in response.source.files}
            label, version = f"stored/{name}@{response.pack.version}", response.pack.version
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                raise
            stored, label, version = {}, f"stored/{name}", None
        text = render_diff(stored, local, label, str(args.path).rstrip("/"))
        out: dict[str, Any] = {"kind": "pack", "name": name, "stored_version": version}
    else:
        response = await stub.GetTenantSettings(GetTenantSettingsRequest(tenant_id=args.tenant))
        tenant = response.tenant_id or args.tenant
        stored = {"settings.yaml": response.document} if response.version else {}
        text = render_diff(stored, {"settings.yaml": content},
                           f"stored/{tenant}@{response.version}", str(args.path))
        text = text.replace(f"{args.path}/settings.yaml", str(args.path))
        out = {"kind": "tenant_settings", "tenant_id": tenant,
               "stored_version": response.version or None}
    out.update(same=not text, diff=text)
    if args.json:
        print(json.dumps(out, indent=2))
    elif text:
        sys.stdout.write(text)
    else:
        what = f"{out.get('name')} {version}" if kind == "pack" else "tenant settings"
        print(f"no differences: {what} as stored")
    return EXIT_OK if not text else EXIT_REFUSED


def render_test_results(response: Mapping[str, Any]) -> str:
    """``packs test`` as text: per case PASS/FAIL with expected against actual (outcome, rule,
    fields) and each mismatch, then the counts."""
    lines: list[str] = []
    pack = response.get("pack") or {}
    cases = response.get("cases") or []
    if pack:
        lines.append(f"{pack.get('name')} {pack.get('version')}: {len(cases)} golden case(s)")
    for case in cases:
        lines.append(f"{'PASS' if case['passed'] else 'FAIL'} {case['name']}")
        rows = [("outcome", case.get("expected_outcome", ""), case.get("actual_outcome", "")),
                ("rule", case.get("expected_rule", ""), case.get("actual_rule", ""))]
        expected_fields = case.get("expected_fields") or {}
        actual_fields = case.get("actual_fields") or {}
        rows += [(f"fields.{k}", v, actual_fields.get(k, "(absent)"))
                 for k, v in sorted(expected_fields.items())]
        width = max(len(r[0]) for r in rows)
        for what, expected, actual in rows:
            if not expected:
                continue   # not part of this case's expectation
            mark = "=" if expected == actual else "!"
            lines.append(f"  {what:<{width}}  expected {expected!s:<24} {mark} actual {actual}")
        lines += [f"  ! {m}" for m in case.get("mismatches") or []]
        if not case["passed"] and case.get("explanation"):
            lines.append(f"  explanation: {case['explanation']}")
    failed = sum(1 for c in cases if not c["passed"])
    lines.append(f"{len(cases) - failed} passed, {failed} failed")
    return "\n".join(lines) + "\n"


def _prepare_test(args: argparse.Namespace) -> dict[str, bytes] | None:
    path = Path(args.pack)
    if path.is_dir():
        return _read_folder(path)
    if "/" in args.pack or path.suffix:
        raise _Usage(f"{args.pack}: not a folder (give a pack folder or a stored pack's name)")
    return None   # the name of a stored pack


async def _test(args: argparse.Namespace, stub: Any, files: dict[str, bytes] | None) -> int:
    from switchyard.v1 import TestPackRequest

    request = TestPackRequest(tenant_id=args.tenant)
    if files is None:
        request.name = args.pack
    else:
        request.source.CopyFrom(_source(files))
    try:
        response = await _call(stub.TestPack, request)
    except _Invalid as exc:
        return _print_invalid("packs test", exc)
    data = {"pack": _summary(response.pack) if response.HasField("pack") else None,
            "cases": [{"name": c.name, "passed": c.passed,
                       "expected_outcome": c.expected_outcome,
                       "actual_outcome": c.actual_outcome, "expected_rule": c.expected_rule,
                       "actual_rule": c.actual_rule, "expected_fields": dict(c.expected_fields),
                       "actual_fields": dict(c.actual_fields), "mismatches": list(c.mismatches),
                       "explanation": c.explanation} for c in response.cases]}
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        sys.stdout.write(render_test_results(data))
    return EXIT_OK if all(c.passed for c in response.cases) else EXIT_REFUSED


_PREPARE: dict[str, Callable[[argparse.Namespace], Any]] = {
    "validate": _prepare_validate, "list": _prepare_nothing, "show": _prepare_nothing, "apply": _prepare_apply,
    "diff": _prepare_diff, "test": _prepare_test}
_ACTIONS: dict[str, Callable[[argparse.Namespace, Any, Any], Awaitable[int]]] = {
    "validate": _validate_remote, "list": _list, "show": _show, "apply": _apply, "diff": _diff, "test": _test}
