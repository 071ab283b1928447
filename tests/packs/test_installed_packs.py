"""A pack installed as a Python distribution is found like the shipped ones.

The distribution is made here the way pip lays one out (a ``*.dist-info`` folder whose
``entry_points.txt`` registers the pack in group ``switchyard.packs``, beside the package that
holds the pack's folder), and read by a fresh interpreter, as a decision replica reads it at
start.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "examples" / "expense_claim"
PROBE = ("import json; from switchyard.packs import builtin_packs; "
         "print(json.dumps({n: p.version for n, p in builtin_packs().items()}))")


def install(site: Path, package: str, pack_name: str, pack_dir: Path) -> None:
    target = site / package
    shutil.copytree(pack_dir, target)
    (target / "__init__.py").write_text('"""An expense-claims pack, installable."""\n')
    info = site / f"{package}-1.0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 1.0.0\n")
    (info / "entry_points.txt").write_text(f"[switchyard.packs]\n{pack_name} = {package}\n")


def installed(site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                          env={"PYTHONPATH": f"{site}:{ROOT}", "PATH": "/usr/bin:/bin"},
                          timeout=120)


def test_an_installed_pack_is_found_beside_the_shipped_ones(tmp_path: Path) -> None:
    install(tmp_path, "acme_expense_pack", "expense_claim", EXAMPLE)
    result = installed(tmp_path)
    assert result.returncode == 0, result.stderr
    packs = json.loads(result.stdout)
    assert packs["expense_claim"] == "1.0.0"
    assert {"invoice", "support_ticket", "admission_form", "classroom_event"} <= set(packs)


def test_a_broken_installed_pack_is_named(tmp_path: Path) -> None:
    install(tmp_path, "acme_expense_pack", "expense_claim", EXAMPLE)
    pack = tmp_path / "acme_expense_pack" / "pack.yaml"
    pack.write_text(pack.read_text().replace("version: 1.0.0", "version: one"))
    result = installed(tmp_path)
    assert result.returncode != 0
    assert 'acme_expense_pack/pack.yaml: version: "one": must be a version' in result.stderr, result.stderr


def test_the_entry_point_must_carry_the_packs_name(tmp_path: Path) -> None:
    install(tmp_path, "acme_expense_pack", "expenses", EXAMPLE)
    result = installed(tmp_path)
    assert result.returncode != 0
    assert "the entry point's name must be the pack's name" in result.stderr, result.stderr
