"""Code outside the ``switchyard`` package imports its public modules, never a ``_private`` one.

Each public module re-exports from private modules with an explicit ``__all__``; this reads the
imports of the services, packs, benchmarks, chaos run and client, and checks that every name a
public module exports is really there. Tests may still reach into private modules to test
internals (a CLI's formatting helpers, a tool's generator).
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OUTSIDE = ("services", "switchyard_packs", "bench", "chaos", "client")
PUBLIC = ("switchyard", "switchyard.runtime", "switchyard.telemetry", "switchyard.storage",
          "switchyard.tasks", "switchyard.audit", "switchyard.messaging", "switchyard.rpc",
          "switchyard.access", "switchyard.privacy", "switchyard.demo", "switchyard.documents",
          "switchyard.packs", "switchyard.signals", "switchyard.stack", "switchyard.clients")


def private_imports(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        modules = ([node.module] if isinstance(node, ast.ImportFrom) and node.module and
                   node.level == 0 else
                   [a.name for a in node.names] if isinstance(node, ast.Import) else [])
        for module in modules:
            parts = module.split(".")
            if parts[0] == "switchyard" and any(p.startswith("_") for p in parts[1:]):
                found.append(module)
            if (isinstance(node, ast.ImportFrom) and module in PUBLIC
                    and any(a.name.startswith("_") for a in node.names)):
                found.append(f"{module}: {', '.join(a.name for a in node.names)}")
    return found


def test_no_code_outside_the_package_imports_a_private_module() -> None:
    offenders = {}
    for top in OUTSIDE:
        for path in (ROOT / top).rglob("*.py"):
            if found := private_imports(path.read_text()):
                offenders[str(path.relative_to(ROOT))] = found
    assert not offenders, offenders


@pytest.mark.parametrize("name", PUBLIC)
def test_every_public_module_exports_what_its_all_names(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert len(exported) == len(set(exported)), name
    missing = [n for n in exported if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names what it does not define: {missing}"


def test_the_scan_sees_private_imports_however_written() -> None:
    source = ("from switchyard._audit import append\nimport switchyard._db\n"
              "from switchyard.documents._files import inspect\n"
              "from switchyard import _topics\nfrom switchyard.audit import append\n")
    assert private_imports(source) == ["switchyard._audit", "switchyard._db",
                                       "switchyard.documents._files", "switchyard: _topics"]
