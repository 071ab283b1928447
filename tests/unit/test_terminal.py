"""One definition of terminal statuses: ``switchyard._taskstore.TERMINAL``.

Every other place derives from it (``TERMINAL_SQL``, ``is_terminal``, ``tests/terminal.py``),
so no code, query or test can keep a stale list of its own. The guard below fails when the
three statuses are spelled out together again anywhere in the source tree.
"""

from __future__ import annotations

import itertools
import re
import subprocess
from pathlib import Path

from switchyard.tasks import TERMINAL, TERMINAL_SQL, UNSUCCESSFUL, is_terminal
from switchyard.v1 import TaskStatus
from tests.terminal import TERMINAL_STATUSES

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("switchyard", "services", "chaos", "bench", "models", "tests", "client")
#: Allowed copies: the definition itself, and the client SDK's, which cannot import switchyard
#: (test_the_client_sdk_agrees checks it).
ALLOWED = {Path("switchyard/_taskstore.py"), Path("client/switchyard_client/_client.py")}
#: Partial indexes whose predicate names the terminal statuses. Migrations are immutable.
INDEX_PREDICATES = {"0008_retention.sql": "tasks_purge_candidates",
                    "0010_redrive.sql": "tasks_unfinished"}


def _triple_pattern() -> re.Pattern[str]:
    """The terminal statuses listed one after another, in any order, as quoted names
    (Python or SQL) or ``TaskStatus`` members."""
    def item(name: str) -> str:
        return rf"""(?:['"](?:TASK_STATUS_)?{name}['"]|(?:TaskStatus\.)?TASK_STATUS_{name}\b)"""
    orders = ["\\s*,\\s*".join(item(n) for n in order)
              for order in itertools.permutations(sorted(TERMINAL))]
    return re.compile("|".join(f"(?:{o})" for o in orders))


def python_sources(top: Path) -> list[Path]:
    """``top``'s Python files that git does not ignore (so build output, such as the client
    wheel's ``client/build/``, is not source); every file below ``top`` outside a checkout."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                                 "--exclude-standard", "--", "*.py"], cwd=top,
                                capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return sorted(top.rglob("*.py"))
    return sorted(top / name for name in listed.decode().split("\0") if name)


def copies_in(top: Path, root: Path) -> list[str]:
    """``path:line`` of every copy of the terminal statuses in ``top``'s Python files."""
    pattern = _triple_pattern()
    found = []
    for path in python_sources(top):
        relative = path.relative_to(root)
        if relative in ALLOWED or path.name.endswith(("_pb2.py", "_pb2_grpc.py")):
            continue
        text = path.read_text(encoding="utf-8")
        for match in pattern.finditer(text):
            found.append(f"{relative}:{text.count(chr(10), 0, match.start()) + 1}")
    return found


def test_no_copy_of_the_terminal_statuses_outside_taskstore() -> None:
    found = [hit for top in SCANNED for hit in copies_in(ROOT / top, ROOT)]
    assert not found, ("terminal statuses spelled out again; use switchyard._taskstore."
                       f"TERMINAL / TERMINAL_SQL / is_terminal or tests.terminal: {found}")


def test_the_guard_sees_every_spelling(tmp_path: Path) -> None:
    # built from TERMINAL, so that this file holds no copy itself
    names = sorted(TERMINAL)
    quoted = ", ".join(f"'{n}'" for n in names[::-1])
    spellings = {
        "sql.py": f'Q = """SELECT 1\n  WHERE s IN ({quoted})"""\n',
        "names.py": "DONE = {" + ",\n ".join(f'"{n}"' for n in names) + "}\n",
        "enums.py": "DONE = {" + ", ".join(f"TaskStatus.TASK_STATUS_{n}" for n in names) + "}\n",
        "fine.py": 'RETRY = {"FAILED", "CANCELLED"}\nDOC = "SUCCEEDED, FAILED or CANCELLED"\n',
    }
    for name, text in spellings.items():
        (tmp_path / name).write_text(text)
    assert copies_in(tmp_path, tmp_path) == ["enums.py:1", "names.py:1", "sql.py:2"]


def test_derived_forms_agree() -> None:
    assert TERMINAL_SQL == "(" + ", ".join(f"'{s}'" for s in sorted(TERMINAL)) + ")"
    assert UNSUCCESSFUL < TERMINAL and "SUCCEEDED" not in UNSUCCESSFUL
    assert {TaskStatus.Name(v) for v in TERMINAL_STATUSES} == {f"TASK_STATUS_{s}"
                                                               for s in TERMINAL}
    assert {v for v in TaskStatus.values() if is_terminal(v)} == TERMINAL_STATUSES


def test_the_client_sdk_agrees() -> None:
    from switchyard_client import TERMINAL_STATUSES as SDK_TERMINAL

    assert set(SDK_TERMINAL) == set(TERMINAL_STATUSES)


def test_partial_indexes_name_exactly_the_terminal_statuses() -> None:
    migrations = ROOT / "switchyard" / "migrations"
    for filename, index in INDEX_PREDICATES.items():
        sql = (migrations / filename).read_text()
        match = re.search(rf"CREATE INDEX {index}\b.*?WHERE[^;]*?status (?:NOT )?IN \(([^)]*)\)",
                          sql, re.S)
        assert match, f"{filename}: no status predicate on {index}"
        named = {s.strip().strip("'") for s in match.group(1).split(",")}
        assert named == TERMINAL, f"{filename}: {index} names {named}, TERMINAL is {TERMINAL}"
