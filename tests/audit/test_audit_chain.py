"""The audit trail against real PostgreSQL: append-only, and tampering is found and named."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path

import asyncpg
import pytest

from switchyard import Settings
from switchyard.audit import GENESIS, append, canonical, chain_hash, verify
from switchyard.storage import connect

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


async def fill(settings: Settings) -> tuple[str, list[str]]:
    """Three chains of two tenants, interleaved (acme's decision and executor chains, globex's
    executor chain); returns a task id and the hashes of acme's decision chain."""
    task_id = str(uuid.uuid4())
    conn = await connect(settings)
    try:
        hashes = []
        for step in range(5):
            hashes.append(await append(conn, "acme", "decision", "decision.made",
                                       {"rule": "confident_route", "step": step,
                                        "input_sha256": "ab" * 32}, task_id,
                                       writer="decision"))
            if step % 2 == 0:
                await append(conn, "acme", "executor", "step.executed", {"step": step},
                             task_id, writer="executor")
            await append(conn, "globex", "executor", "step.executed", {"step": step},
                         writer="executor")
        return task_id, hashes
    finally:
        await conn.close()


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **settings.to_env()}
    return subprocess.run([sys.executable, "-m", "switchyard", "audit", *args], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


async def edit_behind_the_applications_back(conn: asyncpg.Connection, sql: str) -> int:
    """``sql`` (an UPDATE ... RETURNING entry_id) as a superuser who switched the triggers off
    for the session: what the chain must still tell."""
    await conn.execute("SET session_replication_role = replica")
    return await conn.fetchval(sql)


def broken_verification(settings: Settings, *args: str) -> str:
    """``switchyard audit verify`` that must fail; its output."""
    result = cli(settings, "verify", *args)
    assert result.returncode == 1, result.stdout
    return result.stdout


def test_chain_verifies_and_the_database_refuses_edits(settings: Settings) -> None:
    task_id, hashes = asyncio.run(fill(settings))
    assert len(set(hashes)) == 5

    async def checks() -> None:
        conn = await connect(settings)
        try:
            result = await verify(conn)
            assert (result.entries, result.tenants, result.chains, result.broken) == (
                13, 2, 3, None)
            for statement in ("UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log",
                              "TRUNCATE audit_log"):
                with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                    await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(checks())
    verified = cli(settings, "verify")
    assert verified.returncode == 0
    assert "13 entries in 3 chain(s) of 2 tenant(s)" in verified.stdout
    shown = cli(settings, "show", task_id)
    assert shown.returncode == 0 and shown.stdout.count("decision.made") == 5
    assert shown.stdout.count("step.executed") == 3


def filled_schema(settings: Settings, suffix: str) -> Settings:
    """A schema of its own, migrated and filled (:func:`fill`), for a test that tampers."""
    own = settings.replace(postgres_schema=f"{settings.postgres_schema}_{suffix}")
    asyncio.run(_migrate(own))
    asyncio.run(fill(own))
    return own


def test_superuser_edit_behind_the_applications_back_is_named(settings: Settings) -> None:
    tampered = filled_schema(settings, "t")

    async def tamper() -> int:
        conn = await connect(tampered)
        try:
            return await edit_behind_the_applications_back(
                conn, "UPDATE audit_log SET detail = jsonb_set(detail, '{rule}', '\"waived\"') "
                "WHERE tenant_id = 'acme' AND writer = 'decision' AND seq = 3 "
                "RETURNING entry_id")
        finally:
            await conn.close()

    entry_id = asyncio.run(tamper())
    output = broken_verification(tampered)
    assert f"BROKEN at entry {entry_id} (tenant acme, writer decision, seq 3)" in output
    assert "content changed" in output


async def _migrate(settings: Settings) -> None:
    from switchyard.storage import migrate

    await migrate(settings)


def test_an_entry_moved_to_another_writers_chain_is_named(settings: Settings) -> None:
    """The writer is covered by the hash: the only entry of acme's retention chain relabelled
    as the review service's (its link and sequence still fit a chain of one) is found."""
    moved = filled_schema(settings, "m")

    async def relabel() -> int:
        conn = await connect(moved)
        try:
            await append(conn, "acme", "retention", "payloads.purged", {"tasks": 1},
                         writer="retention")
            assert (await verify(conn, "acme")).broken is None
            return await edit_behind_the_applications_back(
                conn, "UPDATE audit_log SET writer = 'review' WHERE tenant_id = 'acme' "
                "AND writer = 'retention' RETURNING entry_id")
        finally:
            await conn.close()

    entry_id = asyncio.run(relabel())
    output = broken_verification(moved, "--tenant", "acme")
    assert f"BROKEN at entry {entry_id} (tenant acme, writer review, seq 1)" in output
    assert "content changed" in output


def test_chains_written_before_writers_still_verify(settings: Settings) -> None:
    """Entries from before migration 0024 (writer '', hashes without a writer) verify beside
    the writers' chains, and a change to one of them is still named."""
    legacy = settings.replace(postgres_schema=f"{settings.postgres_schema}_l")
    asyncio.run(_migrate(legacy))

    async def write_legacy_then_new() -> int:
        conn = await connect(legacy)
        try:
            prev, now = GENESIS, datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)
            for seq in (1, 2):
                entry_hash = chain_hash(prev, canonical("acme", seq, now, "decision",
                                                        "decision.made", None, {"n": seq}))
                await conn.execute(
                    "INSERT INTO audit_log (tenant_id, seq, occurred_at, actor, action, "
                    "detail, prev_hash, entry_hash) VALUES ('acme', $1, $2, 'decision', "
                    "'decision.made', $3::jsonb, $4, $5)", seq, now, json.dumps({"n": seq}),
                    prev, entry_hash)
                prev = entry_hash
            await append(conn, "acme", "decision", "decision.made", {"n": 3}, writer="decision")
            result = await verify(conn)
            assert (result.entries, result.chains, result.broken) == (3, 2, None)
            return await edit_behind_the_applications_back(
                conn, "UPDATE audit_log SET detail = '{\"n\": 9}' WHERE writer = '' "
                "AND seq = 2 RETURNING entry_id")
        finally:
            await conn.close()

    entry_id = asyncio.run(write_legacy_then_new())
    assert f"BROKEN at entry {entry_id} (tenant acme, writer (before writers), seq 2)" in (
        broken_verification(legacy))


async def test_services_do_not_queue_on_each_others_chain(settings: Settings) -> None:
    """A decision batch holding acme's decision chain until it commits does not hold back the
    executor's append for acme; a second decision append for acme waits for it."""
    holder, other = await connect(settings), await connect(settings)
    try:
        async with holder.transaction():
            await append(holder, "acme", "decision", "decision.made", {"held": True},
                         writer="decision")
            await other.execute("SET lock_timeout = '2s'")
            await append(other, "acme", "executor", "step.executed", {"queued": False},
                         writer="executor")
            with pytest.raises(asyncpg.LockNotAvailableError):
                await append(other, "acme", "decision", "decision.made", {"queued": True},
                             writer="decision")
        assert (await verify(other, "acme")).broken is None
    finally:
        await holder.close()
        await other.close()


async def test_an_unknown_writer_is_refused(settings: Settings) -> None:
    conn = await connect(settings)
    try:
        with pytest.raises(ValueError, match="unknown audit writer 'billing'"):
            await append(conn, "acme", "billing", "invoice.sent", {}, writer="billing")
    finally:
        await conn.close()
