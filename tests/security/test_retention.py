"""Retention purge on real PostgreSQL: payloads go, derived signals and the audit chain stay."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from services.ingest.domain import build_envelope, payload_sha256
from services.ingest.store import accept
from switchyard import Settings
from switchyard._audit import append, digest
from switchyard._db import connect
from switchyard.v1 import Document, Submission, TaskEnvelope, TaskSource

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SECRET = "Card 4111 1111 1111 1111, patient Jane Roe"


async def seed(settings: Settings) -> dict[str, str]:
    conn = await connect(settings)
    ids = {}
    try:
        for tenant, age_days, status in (("short", 3, "SUCCEEDED"), ("long", 3, "FAILED"),
                                         ("short", 3, "IN_PROGRESS")):
            sub = Submission(tenant_id=tenant, idempotency_key=uuid.uuid4().hex, kind="other",
                             document=Document(body=SECRET.encode()))
            envelope = build_envelope(sub, str(uuid.uuid4()), TaskSource.TASK_SOURCE_GRPC)
            await accept(conn, envelope, payload_sha256(sub))
            await conn.execute(
                "UPDATE tasks SET status = $2, updated_at = now() - $3::interval "
                "WHERE task_id = $1", uuid.UUID(envelope.task_id), status,
                timedelta(days=age_days))
            await append(conn, tenant, "ingest", "task.accepted",
                         {"input_sha256": digest(SECRET)}, envelope.task_id)
            ids[f"{tenant}-{status}"] = envelope.task_id
    finally:
        await conn.close()
    return ids


def run_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **settings.to_env(), "SWITCHYARD_RETENTION_DAYS": "30",
           "SWITCHYARD_RETENTION_OVERRIDES": "short:1"}
    return subprocess.run([sys.executable, "-m", "switchyard", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_purge_keeps_derived_data_and_the_audit_chain(settings: Settings) -> None:
    ids = asyncio.run(seed(settings))
    dry = run_cli(settings, "purge", "--dry-run")
    assert "would purge payloads of 1 task(s)" in dry.stdout, dry.stdout + dry.stderr
    done = run_cli(settings, "purge")
    assert "purged payloads of 1 task(s)" in done.stdout, done.stdout + done.stderr

    async def rows() -> dict[str, tuple[str, bytes, bool]]:
        conn = await connect(settings)
        try:
            out = {}
            for name, task_id in ids.items():
                row = await conn.fetchrow("SELECT status, envelope, purged_at IS NOT NULL AS p "
                                          "FROM tasks WHERE task_id = $1", uuid.UUID(task_id))
                out[name] = (row["status"], TaskEnvelope.FromString(row["envelope"])
                             .document.body, row["p"])
            return out
        finally:
            await conn.close()

    state = asyncio.run(rows())
    assert state["short-SUCCEEDED"] == ("SUCCEEDED", b"", True)       # past 1-day retention
    assert state["long-FAILED"] == ("FAILED", SECRET.encode(), False)  # 30 days: kept
    assert state["short-IN_PROGRESS"][2] is False                       # never while open
    verified = run_cli(settings, "audit", "verify")
    assert verified.returncode == 0, verified.stdout
