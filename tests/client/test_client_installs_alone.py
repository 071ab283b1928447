"""switchyard-client is a distribution of its own: a wheel that needs grpcio and protobuf only.

The wheel is built from client/ and installed into a fresh virtualenv that this test creates.
The only other code that virtualenv can see is the installed files of the client's declared
dependencies (and of what they in turn require), linked in from this environment, file by
file, so no registry is needed; ``pip check`` then proves the declared requirements are
satisfied, and the client imports and works there without ``switchyard`` or
googleapis-common-protos.
"""

from __future__ import annotations

import email
import importlib.metadata
import re
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DECLARED = {"grpcio", "protobuf"}


def _run(*argv: str | Path, cwd: Path | None = None) -> str:
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=600,
                          cwd=cwd)
    assert done.returncode == 0, f"{argv}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _requirement_names(requires: list[str] | None) -> set[str]:
    """Names of unconditional requirements (those behind an extra are not installed)."""
    names = set()
    for requirement in requires or ():
        if "extra ==" in requirement.replace("extra==", "extra =="):
            continue
        match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
        assert match, requirement
        names.add(match.group(0).lower().replace("_", "-"))
    return names


def _closure(names: set[str]) -> set[str]:
    seen: set[str] = set()
    pending = list(names)
    while pending:
        name = pending.pop()
        if name not in seen:
            seen.add(name)
            pending += _requirement_names(importlib.metadata.requires(name))
    return seen


def _link_distributions(names: set[str], into: Path) -> None:
    for name in names:
        dist = importlib.metadata.distribution(name)
        for file in dist.files or ():
            source = Path(str(dist.locate_file(file))).resolve()
            if source.is_file() and not str(file).startswith(".."):
                target = into / file
                target.parent.mkdir(parents=True, exist_ok=True)
                if not target.exists():
                    target.symlink_to(source)


def test_the_wheel_installs_and_works_with_only_its_declared_dependencies(
        tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    _run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", wheels,
         ROOT / "client")
    [wheel] = wheels.glob("switchyard_client-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        [metadata] = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        requires = email.message_from_bytes(archive.read(metadata)).get_all("Requires-Dist")
        names = archive.namelist()
    assert _requirement_names(requires) == DECLARED, requires
    assert "switchyard_client/_v1/ingest_service_pb2_grpc.py" in names
    assert not any(n.startswith("switchyard/") for n in names)

    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    _run(python, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", wheel)
    deps = tmp_path / "deps"
    _link_distributions(_closure(DECLARED), deps)
    site = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))")
                .strip())
    (site / "declared-deps.pth").write_text(f"{deps}\n")
    _run(python, "-m", "pip", "check")   # Requires-Dist satisfied by what is visible

    probe = """
import importlib.util, sys
import switchyard_client as sc
from switchyard_client._status import error_details
assert importlib.util.find_spec("switchyard") is None, "switchyard is importable"
assert importlib.util.find_spec("google.rpc") is None, "googleapis-common-protos is visible"
assert not [m for m in sys.modules if m == "switchyard" or m.startswith("switchyard.")]
s = sc.new_submission("acme", "hello", kind="support_ticket")
assert len(s.idempotency_key) == 36 and s.document.body == b"hello"
assert error_details([("retry-after-ms", "1500")]).retry_after_s == 1.5
with sc.Client("127.0.0.1:9", retry_policy=sc.NO_RETRIES, timeout_s=5) as client:
    try:
        client.get("any")
    except sc.Unavailable as exc:
        print("typed:", type(exc).__name__)
"""
    assert _run(python, "-I", "-c", probe, cwd=tmp_path).strip() == "typed: Unavailable"
