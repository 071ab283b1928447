"""Who may import whom: each service owns its code, and the shared package imports no service.

Services learn about each other through topics and RPCs; a service importing another's module
couples their releases and lets one reach into the other's tables. Shared helpers belong in
the ``switchyard`` package. The composition roots that start services by name (the CLI, the
launcher) are the only shared modules that may name one, and only those listed here.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("ingest", "decision", "executor", "review")
#: Shared modules that may import a service, and why.
COMPOSITION_ROOTS = {
    "switchyard/cli.py": "dispatches `switchyard run SERVICE` and the service CLIs",
    "switchyard/_launcher.py": "starts the embedded stack's services and demo downstream",
}


def _parse(path: Path) -> ast.Module:
    """``ast.parse``, once more after CPython 3.11's "AST constructor recursion depth
    mismatch": its parser shares a depth counter between threads, and another thread of the
    test session (a fixture starting the stack) may be compiling at the same moment."""
    source = path.read_text()
    try:
        return ast.parse(source, filename=str(path))
    except SystemError:
        return ast.parse(source, filename=str(path))


def _imported_modules(path: Path) -> set[str]:
    tree = _parse(path)
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _service_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "services" and parts[1] in SERVICES \
        else None


def test_no_service_imports_another_service() -> None:
    crossings = []
    for service in SERVICES:
        for path in sorted((ROOT / "services" / service).rglob("*.py")):
            for module in _imported_modules(path):
                other = _service_of(module)
                if other is not None and other != service:
                    crossings.append(f"{path.relative_to(ROOT)} imports {module}")
    assert crossings == []


def test_the_shared_package_imports_no_service_outside_its_composition_roots() -> None:
    crossings = []
    for path in sorted((ROOT / "switchyard").rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if relative in COMPOSITION_ROOTS or "/v1/" in relative:
            continue
        crossings.extend(f"{relative} imports {module}" for module in _imported_modules(path)
                         if module == "services" or module.startswith("services."))
    assert crossings == []
