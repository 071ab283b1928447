"""The audit trail against real PostgreSQL: append-only, and tampering is found and named."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest

from switchyard import Settings
from switchyard._audit import append, verify
from switchyard._db import connect

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


async def fill(settings: Settings) -> tuple[str, list[str]]:
    """Two tenants' chains, interleaved; returns a task id and the hashes of tenant acme."""
    task_id = str(uuid.uuid4())
    conn = await connect(settings)
    try:
        hashes = []
        for step in range(5):
            hashes.append(await append(conn, "acme", "decision", "decision.made",
                                       {"rule": "confident_route", "step": step,
                                        "input_sha256": "ab" * 32}, task_id))
            await append(conn, "globex", "executor", "step.executed", {"step": step})
        return task_id, hashes
    finally:
        await conn.close()


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **settings.to_env()}
    return subprocess.run([sys.executable, "-m", "switchyard", "audit", *args], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_chain_verifies_and_the_database_refuses_edits(settings: Settings) -> None:
    task_id, hashes = asyncio.run(fill(settings))
    assert len(set(hashes)) == 5

    async def checks() -> None:
        conn = await connect(settings)
        try:
            result = await verify(conn)
            assert (result.entries, result.tenants, result.broken) == (10, 2, None)
            for statement in ("UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log",
                              "TRUNCATE audit_log"):
                with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                    await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(checks())
    verified = cli(settings, "verify")
    assert verified.returncode == 0 and "10 entries in 2 tenant chain(s)" in verified.stdout
    shown = cli(settings, "show", task_id)
    assert shown.returncode == 0 and shown.stdout.count("decision.made") == 5


def test_superuser_edit_behind_the_applications_back_is_named(settings: Settings) -> None:
    tampered = settings.replace(postgres_schema=f"{settings.postgres_schema}_t")
    asyncio.run(_migrate(tampered))
    asyncio.run(fill(tampered))

    async def tamper() -> int:
        conn = await connect(tampered)
        try:
            # A superuser can switch triggers off for the session; the chain still tells.
            await conn.execute("SET session_replication_role = replica")
            return await conn.fetchval(
                "UPDATE audit_log SET detail = jsonb_set(detail, '{rule}', '\"waived\"') "
                "WHERE tenant_id = 'acme' AND seq = 3 RETURNING entry_id")
        finally:
            await conn.close()

    entry_id = asyncio.run(tamper())
    result = cli(tampered, "verify")
    assert result.returncode == 1
    assert f"BROKEN at entry {entry_id} (tenant acme, seq 3)" in result.stdout
    assert "content changed" in result.stdout


async def _migrate(settings: Settings) -> None:
    from switchyard._db import migrate

    await migrate(settings)
