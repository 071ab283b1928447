"""PostgreSQL: the connection pool and versioned SQL migrations applied at start-up.

Migrations are plain numbered ``.sql`` files in ``switchyard/migrations``. Each is applied once,
in order, inside a transaction, under an advisory lock so several replicas starting together
do not race; its checksum is recorded so an edited, already-applied migration is refused
instead of silently diverging between environments.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import asyncpg

from switchyard._settings import Settings

_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_LOCK_KEY = 0x5357_4954  # "SWIT": one advisory lock id for migrations, cluster-wide
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class MigrationError(RuntimeError):
    """Migrations cannot be applied as they are; the message says which and why."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def resolve_dsn(settings: Settings) -> str:
    """The configured DSN, or the one the embedded stack wrote into its state dir."""
    if settings.postgres_dsn:
        return settings.postgres_dsn
    dsn_file = Path(settings.state_dir) / "postgres.dsn"
    if dsn_file.exists():
        return dsn_file.read_text().strip()
    raise RuntimeError(
        "no PostgreSQL configured: set SWITCHYARD_POSTGRES_DSN or start the embedded stack "
        f"(`switchyard up`), which writes {dsn_file}"
    )


def _check_schema(schema: str) -> str:
    if not _SCHEMA_NAME.match(schema):
        raise ValueError(f"SWITCHYARD_POSTGRES_SCHEMA must match {_SCHEMA_NAME.pattern}, "
                         f"got {schema!r}")
    return schema


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool reset that sends nothing (see :func:`create_pool`)."""


async def create_pool(settings: Settings) -> asyncpg.Pool:
    """A pool whose connections resolve unqualified names in the configured schema.

    asyncpg's default reset sends ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET
    ALL`` on every release: one round trip per ``pool.fetch``/``execute``, about a third of
    all statements a task costs. Pooled connections carry no session state here: nothing
    LISTENs or SETs (migrations use their own connection), advisory locks are
    transaction-scoped except the reconciler's, which it releases itself (a connection that
    cannot run that unlock is broken or its process is stopping, and the lock ends with the
    session). So the reset sends nothing; asyncpg still rolls back a transaction left open.
    """
    schema = _check_schema(settings.postgres_schema)
    pool = await asyncpg.create_pool(
        resolve_dsn(settings),
        min_size=settings.postgres_pool_min,
        max_size=settings.postgres_pool_max,
        server_settings={"search_path": f"{schema},public", "application_name": "switchyard"},
        reset=_keep_session,
    )
    assert pool is not None
    return pool


async def connect(settings: Settings) -> asyncpg.Connection:
    """One connection on the configured schema, like the pool's: for tools and tests that
    read the system of record outside a service."""
    schema = _check_schema(settings.postgres_schema)
    return await asyncpg.connect(resolve_dsn(settings),
                                 server_settings={"search_path": f"{schema},public"})


def load_migrations(package: str = "switchyard.migrations") -> list[Migration]:
    migrations = []
    for entry in resources.files(package).iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            migrations.append(
                Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8"))
            )
        elif entry.name.endswith(".sql"):
            raise MigrationError(f"migration file {entry.name!r} must be named NNNN_name.sql")
    migrations.sort(key=lambda m: m.version)
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration versions in {versions}")
    return migrations


async def migrate(settings: Settings, migrations: list[Migration] | None = None) -> list[int]:
    """Apply pending migrations to the configured schema; returns the versions applied."""
    schema = _check_schema(settings.postgres_schema)
    migrations = load_migrations() if migrations is None else migrations
    conn = await asyncpg.connect(resolve_dsn(settings))
    applied_now: list[int] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
        try:
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            await conn.execute(f'SET search_path TO "{schema}", public')
            await conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       version integer PRIMARY KEY,
                       name text NOT NULL,
                       checksum text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            applied = {r["version"]: r for r in await conn.fetch("SELECT * FROM schema_migrations")}
            for migration in migrations:
                done = applied.get(migration.version)
                if done is not None:
                    if done["checksum"] != migration.checksum:
                        raise MigrationError(
                            f"migration {migration.version:04d}_{migration.name} was edited after "
                            "it was applied; add a new migration instead"
                        )
                    continue
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1,$2,$3)",
                        migration.version, migration.name, migration.checksum,
                    )
                applied_now.append(migration.version)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    finally:
        await conn.close()
    return applied_now
