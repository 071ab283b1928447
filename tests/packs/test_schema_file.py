"""docs/pack.schema.json is what pack_schema() gives, and it is the schema the loader uses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import yaml

from switchyard._tools import packschema
from switchyard.packs import builtin_packs, pack_schema

ROOT = Path(__file__).resolve().parents[2]


def test_committed_schema_is_current(tmp_path: Path) -> None:
    check = [sys.executable, "-m", "switchyard._tools.packschema", "--check"]
    proc = subprocess.run(check, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    stale = json.loads(packschema.SCHEMA_PATH.read_text())
    del stale["properties"]["retention"]
    copy = tmp_path / "pack.schema.json"
    copy.write_text(json.dumps(stale, indent=2) + "\n")
    assert packschema.main(["--check", "--schema", str(copy)]) == 1
    proc = subprocess.run([*check, "--schema", str(copy)], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1 and "make pack-schema" in proc.stderr
    assert packschema.main(["--schema", str(copy)]) == 0  # regenerating repairs it
    assert copy.read_text() == packschema.SCHEMA_PATH.read_text()


def test_published_schema_is_valid_and_accepts_the_shipped_packs() -> None:
    schema = json.loads(packschema.SCHEMA_PATH.read_text())
    assert schema == pack_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for pack in builtin_packs().values():
        assert list(validator.iter_errors(yaml.safe_load(pack.files["pack.yaml"]))) == []
    assert list(validator.iter_errors({"pack": "x"}))  # and rejects what is not a pack
