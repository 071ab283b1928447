"""Each table has one owning service, and every crossing of owners is written down.

docs/architecture.md names each table's owner (the first service its row names; ``every``
for the platform tables every service writes through one module) and lists, under
"Crossings still to remove", each place a service still reads or writes a table another
service owns. This test reads the services' SQL (the tables after FROM, JOIN, INTO, UPDATE)
and their use of ``switchyard.tasks``' ``transition``: a crossing that is not listed
fails, and so does a listed one that is gone (the list only shrinks when the code does).
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.architecture_doc import table_rows
from tests.schema import migrated_tables

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("ingest", "decision", "executor", "review")
SQL_TABLE = re.compile(r"\b(?:FROM|JOIN|INTO|UPDATE|TABLE)\s+([a-z_]+)\b")
MOVES_TASKS = re.compile(r"from switchyard\.tasks import \(?[^)]*\btransition(?:_many)?\b")


def owners() -> dict[str, str]:
    """Table -> owning service (or 'every'), from the Tables section's rows."""
    found: dict[str, str] = {}
    for cells in table_rows("## Tables", 3):
        if not cells[0].startswith("`"):
            continue
        owner = re.match(r"[a-z]+", cells[1])
        assert owner, f"no owner in {cells!r}"
        for table in re.findall(r"`(\w+)`", cells[0]):
            found[table] = owner.group(0)
    return found


def declared_crossings() -> set[tuple[str, str]]:
    return {(cells[0], cells[1].strip("`"))
            for cells in table_rows("### Crossings still to remove", 4)
            if cells[1].startswith("`")}


def crossings_in_code(owner_of: dict[str, str]) -> dict[tuple[str, str], set[str]]:
    """(service, table) -> the files that cross, for tables the service does not own."""
    tables = migrated_tables()
    found: dict[tuple[str, str], set[str]] = {}
    for service in SERVICES:
        for path in (ROOT / "services" / service).rglob("*.py"):
            if "downstream" in path.parts:  # the demo downstream: tables of its own database
                continue
            source = path.read_text()
            named = {t for t in SQL_TABLE.findall(source) if t in tables}
            if MOVES_TASKS.search(source):
                named.add("tasks")  # statuses through switchyard.tasks.transition(_many)
            for table in named:
                if owner_of[table] not in (service, "every"):
                    found.setdefault((service, table), set()).add(
                        str(path.relative_to(ROOT)))
    return found


def test_every_table_has_an_owner_that_is_a_service_or_every() -> None:
    owner_of = owners()
    assert migrated_tables() <= set(owner_of), sorted(migrated_tables() - set(owner_of))
    assert set(owner_of.values()) <= {*SERVICES, "every"}, owner_of
    assert owner_of["tasks"] == "ingest" and owner_of["executor_jobs"] == "executor"


def test_every_crossing_of_owners_is_listed_and_every_listed_one_exists() -> None:
    found = crossings_in_code(owners())
    declared = declared_crossings()
    unlisted = {k: sorted(v) for k, v in found.items() if k not in declared}
    assert not unlisted, ("a service's SQL names a table another service owns; move it to "
                          "an event or an RPC, or list it under 'Crossings still to remove' "
                          f"in docs/architecture.md: {unlisted}")
    gone = sorted(declared - set(found))
    assert not gone, f"listed in docs/architecture.md but no longer in the code: {gone}"


def test_the_scan_sees_sql_as_the_services_write_it() -> None:
    sample = ('"SELECT e.step_id FROM unnest($1::uuid[]) AS t(task_id) LEFT JOIN executions e '
              'ON true LEFT JOIN cancellation_requests c" "INSERT INTO decisions (a) VALUES"')
    assert set(SQL_TABLE.findall(sample)) >= {"executions", "cancellation_requests", "decisions"}
    assert MOVES_TASKS.search(
        "from switchyard.tasks import (\n    TERMINAL,\n    transition,\n)")
    assert not MOVES_TASKS.search("from switchyard.tasks import TERMINAL, status_name")


def test_the_kpi_report_reads_only_the_tables_listed_and_writes_none() -> None:
    """The KPIs read across owners on purpose (one consistent view for stats, the gauges and
    the console): the tables their SQL names are exactly those docs/architecture.md lists,
    and none is written."""
    (row,) = [cells for cells in table_rows("### Reports that read across owners", 3)
              if cells[0] == "`switchyard/_kpis.py`"]
    listed = set(re.findall(r"`(\w+)`", row[1]))
    source = (ROOT / "switchyard" / "_kpis.py").read_text()
    named = {t for t in SQL_TABLE.findall(source) if t in migrated_tables()}
    assert named == listed, (sorted(named - listed), sorted(listed - named))
    assert not re.search(r"\b(?:INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM)\b", source)
