"""What the migrations leave in the database, read from their SQL (no database needed)."""

from __future__ import annotations

import re
from pathlib import Path

MIGRATIONS = Path(__file__).resolve().parents[1] / "switchyard" / "migrations"


def migrated_tables() -> set[str]:
    """Every table the numbered migrations create and do not drop later."""
    created: set[str] = set()
    for migration in sorted(MIGRATIONS.glob("*.sql")):
        sql = migration.read_text()
        created |= set(re.findall(r"CREATE TABLE (\w+)", sql))
        created -= set(re.findall(r"DROP TABLE (?:IF EXISTS )?(\w+)", sql))
    return created
