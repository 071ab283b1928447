"""Write ``docs/pack.schema.json``, the JSON Schema of pack.yaml, from ``pack_schema()``.

The schema the loader validates with (:func:`switchyard.packs.pack_schema`) is the one
published for editors (``# yaml-language-server: $schema=...`` in a pack.yaml), so what an
editor accepts and what ``switchyard packs validate`` accepts cannot drift apart.

``python -m switchyard._tools.packschema`` (``make pack-schema``) rewrites the file;
``--check`` exits 1 when the committed file differs from what the code gives (a test runs it).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from switchyard.packs import pack_schema

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = ROOT / "docs" / "pack.schema.json"


def render() -> str:
    """The file's text: the schema as indented JSON with a final newline."""
    return json.dumps(pack_schema(), indent=2, ensure_ascii=False) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m switchyard._tools.packschema",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when the file is stale instead of rewriting it")
    parser.add_argument("--schema", type=Path, default=SCHEMA_PATH, metavar="FILE",
                        help=f"the file to write or check (default {SCHEMA_PATH})")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.schema.read_text(encoding="utf-8") if args.schema.exists() else ""
        if current != text:
            print(f"{args.schema} is stale: run `make pack-schema` "
                  "(python -m switchyard._tools.packschema)", file=sys.stderr)
            return 1
        return 0
    args.schema.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
