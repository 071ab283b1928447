"""docs/architecture.md covers what the code declares, and nothing cites a missing design doc.

The tables come from the migrations (created and not dropped later), the topics from the
registry, the statuses and stages from the proto: a new table, topic or status without a
line in the architecture document fails here.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from switchyard.messaging import ALL_TOPICS
from switchyard.storage import COLUMNS
from switchyard.v1 import TaskStage, TaskStatus
from tests.schema import migrated_tables

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"


def test_every_table_topic_status_and_stage_is_described() -> None:
    text = DOC.read_text()
    tables = migrated_tables()
    assert {"tasks", "executor_jobs", "review_items", "audit_log"} <= tables
    missing = sorted(t for t in tables if f"`{t}`" not in text)
    assert not missing, f"tables missing from docs/architecture.md: {missing}"
    missing = sorted(t.name for t in ALL_TOPICS if f"`{t.name}`" not in text)
    assert not missing, f"topics missing from docs/architecture.md: {missing}"
    for enum, prefix in ((TaskStatus, "TASK_STATUS_"), (TaskStage, "TASK_STAGE_")):
        names = [n.removeprefix(prefix) for n in enum.keys() if not n.endswith("UNSPECIFIED")]
        assert all(f"`{n}`" in text for n in names), names


def test_no_file_cites_a_design_document_that_does_not_exist() -> None:
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    this = str(Path(__file__).relative_to(ROOT))
    citing = [path for path in tracked if path != this
              and path.endswith((".py", ".md", ".yaml", ".proto", ".sql", ".txt"))
              and "DESIGN.md" in (ROOT / path).read_text(errors="replace")]
    assert not citing, f"cite DESIGN.md, which does not exist: {citing}"
    assert (ROOT / "README.md").read_text().count("docs/architecture.md") >= 1


def _guarantees() -> str:
    text = DOC.read_text()
    start = text.index("## Where each guarantee is enforced")
    end = text.find("\n## ", start + 1)
    return text[start:] if end < 0 else text[start:end]


def test_the_encryption_row_names_exactly_the_sealed_columns() -> None:
    row = next(line for line in _guarantees().splitlines()
               if line.startswith("| **Encryption at rest** |"))
    named = set(re.findall(r"`([a-z_]+\.[a-z_]+)`", row))
    assert named == {column.name for column in COLUMNS}


def test_every_guarantee_points_at_code_and_tests_that_exist() -> None:
    section = _guarantees()
    for guarantee in ("Tenant isolation", "Per-tenant rate limits",
                      "Vendor history learns only from confirmed outcomes",
                      "A terminal task never reaches a reviewer",
                      "Background loops are supervised"):
        row = next((line for line in section.splitlines()
                    if line.startswith(f"| **{guarantee}** |")), None)
        assert row is not None, f"no row for {guarantee!r}"
        assert "`tests/" in row, f"{guarantee!r} names no test"
    cited = re.findall(r"`((?:switchyard|services|tests|chaos)/[\w/]+\.py)", section)
    assert len(cited) > 20
    missing = sorted({path for path in cited if not (ROOT / path).is_file()})
    assert not missing, f"docs/architecture.md cites files that do not exist: {missing}"
