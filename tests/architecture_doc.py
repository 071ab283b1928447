"""docs/architecture.md read by the contract tests: its sections and their table rows."""

from __future__ import annotations

from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"


def section(title: str) -> list[str]:
    """The lines from heading ``title`` to the next heading."""
    text = DOC.read_text()
    start = text.index(title)
    end = text.find("\n#", start + len(title))
    return text[start:end].splitlines()


def table_rows(title: str, columns: int) -> list[list[str]]:
    """The cells of each row of the section's tables that has ``columns`` cells (the header
    and separator rows too; callers keep the rows whose cells they recognise)."""
    rows = []
    for line in section(title):
        cells = [c.strip() for c in line.split("|")[1:-1]]
        if len(cells) == columns:
            rows.append(cells)
    return rows


__all__ = ["DOC", "section", "table_rows"]
