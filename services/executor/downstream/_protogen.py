"""Generate ``ledger_pb2.py`` (+ typed stub) from ``ledger.proto``; ``--check`` for staleness.

The demo downstream is not part of the Switchyard contract (``protos/``), so its one proto
lives beside it and is compiled here, the same way ``switchyard._tools.protogen`` does the
contract.
"""

from __future__ import annotations

import argparse
import filecmp
import importlib.util
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PROTO = Path("services/executor/downstream/ledger.proto")
OUTPUTS = ("ledger_pb2.py", "ledger_pb2.pyi")


def generate(out_root: Path) -> Path:
    from grpc_tools import protoc

    well_known = Path(importlib.util.find_spec("grpc_tools").origin).parent / "_proto"  # type: ignore[arg-type, union-attr]
    bin_dir = Path(sys.executable).parent
    (out_root / PROTO.parent).mkdir(parents=True, exist_ok=True)
    args = ["grpc_tools.protoc", f"-I{ROOT}", f"-I{well_known}", f"--python_out={out_root}",
            f"--plugin=protoc-gen-mypy={bin_dir / 'protoc-gen-mypy'}",
            f"--mypy_out=quiet:{out_root}", str(ROOT / PROTO)]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    return out_root / PROTO.parent


def stale() -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        return [name for name in OUTPUTS
                if not (ROOT / PROTO.parent / name).exists()
                or not filecmp.cmp(fresh / name, ROOT / PROTO.parent / name, shallow=False)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    if args.check:
        names = stale()
        print(f"stale: {', '.join(names)}" if names else "up to date")
        return 1 if names else 0
    generate(ROOT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
