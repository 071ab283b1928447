"""Migrations against the real PostgreSQL: applied once, in order, and never silently edited."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from switchyard import Settings
from switchyard._db import Migration, MigrationError, load_migrations, migrate, resolve_dsn

pytestmark = pytest.mark.integration


def fresh(stack_settings: Settings) -> Settings:
    return stack_settings.replace(postgres_schema=f"mig_{uuid.uuid4().hex[:8]}")


def test_migrations_apply_once_and_create_the_schema(stack) -> None:  # type: ignore[no-untyped-def]
    settings = fresh(stack.settings)
    versions = [m.version for m in load_migrations()]
    assert versions == sorted(versions) and versions[0] == 1
    assert asyncio.run(migrate(settings)) == versions
    assert asyncio.run(migrate(settings)) == []

    async def tables() -> set[str]:
        conn = await asyncpg.connect(resolve_dsn(settings))
        try:
            rows = await conn.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = $1",
                settings.postgres_schema)
            return {r["table_name"] for r in rows}
        finally:
            await conn.close()

    assert {"tasks", "task_status_history", "decisions", "executions",
            "review_items", "dead_letters", "schema_migrations"} <= asyncio.run(tables())


def test_an_edited_applied_migration_is_refused(stack) -> None:  # type: ignore[no-untyped-def]
    settings = fresh(stack.settings)
    original = [Migration(1, "first", "CREATE TABLE t1 (id int);")]
    asyncio.run(migrate(settings, original))
    edited = [Migration(1, "first", "CREATE TABLE t1 (id bigint);")]
    with pytest.raises(MigrationError, match="0001_first was edited"):
        asyncio.run(migrate(settings, edited))


def test_a_failing_migration_rolls_back_and_is_not_recorded(stack) -> None:  # type: ignore[no-untyped-def]
    settings = fresh(stack.settings)
    broken = [Migration(1, "ok", "CREATE TABLE t1 (id int);"),
              Migration(2, "broken", "CREATE TABLE t2 (id int); SELECT no_such_column;")]
    with pytest.raises(asyncpg.PostgresError):
        asyncio.run(migrate(settings, broken))
    assert asyncio.run(migrate(settings, broken[:1])) == []  # 1 stayed applied, 2 did not
