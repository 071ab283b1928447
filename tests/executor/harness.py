"""Test harness for the executor: real processes, the real broker and PostgreSQL.

Tasks are seeded straight into the system of record (as ingest would have accepted them),
decisions are produced to the decisions topic (as the decision and review services would),
and the outcome is read back from PostgreSQL and the downstream's own ledger.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from google.protobuf import struct_pb2

from switchyard import Settings
from switchyard.messaging import DECISIONS, Producer
from switchyard.runtime import service_specs
from switchyard.stack import ManagedProcess, grpc_serving, wait_until
from switchyard.storage import resolve_dsn
from switchyard.tasks import TERMINAL
from switchyard.v1 import (
    ActionPlan,
    ActionStep,
    CompensationStep,
    Connector,
    Decision,
    DecisionOutcome,
    DecisionSource,
    Document,
    TaskEnvelope,
    TaskSource,
)

#: Fast settings for tests: small backoffs, quick probes and takeovers.
FAST = dict(executor_breaker_reset_s=2.0, executor_breaker_fail_max=5, executor_poll_s=0.25,
            executor_replica_timeout_s=4.0, executor_retry_park_s=0.5,
            executor_backoff_base_s=0.05, executor_backoff_cap_s=1.0,
            executor_http_timeout_s=5.0, log_format="text")


def struct(values: dict[str, Any]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(values)
    return out


def http_step(step_id: str, target: str, payload: dict[str, Any] | None = None,
              undo: str = "", undo_payload: dict[str, Any] | None = None,
              connector: int = Connector.CONNECTOR_HTTP, operation: str = "create",
              undo_operation: str = "DELETE") -> ActionStep:
    step = ActionStep(step_id=step_id, name=step_id, connector=connector,  # type: ignore[arg-type]
                      target=target, operation=operation, payload=struct(payload or {}))
    if undo:
        step.compensation.CopyFrom(CompensationStep(
            name=f"undo-{step_id}", connector=connector, target=undo,  # type: ignore[arg-type]
            operation=undo_operation, payload=struct(undo_payload or {})))
    return step


def decision(task_id: str, tenant: str, steps: Sequence[ActionStep]) -> Decision:
    return Decision(decision_id=str(uuid.uuid4()), task_id=task_id, tenant_id=tenant,
                    outcome=DecisionOutcome.DECISION_OUTCOME_AUTO_EXECUTE, rule="test",
                    explanation="test plan", plan=ActionPlan(steps=list(steps)),
                    source=DecisionSource.DECISION_SOURCE_MODEL, confidence=0.99)


class Service:
    """One service process (downstream or executor) that a test may kill and restart."""

    def __init__(self, name: str, settings: Settings, state_dir: Path) -> None:
        (self.spec,) = service_specs(settings, (name,))
        self.env = {**os.environ, **settings.to_env(), **self.spec.env}
        self.state_dir = state_dir
        self.process: ManagedProcess | None = None

    def start(self, timeout_s: float = 90) -> None:
        self.process = ManagedProcess(self.spec.name, self.spec.argv, state_dir=self.state_dir,
                                      env=self.env)
        self.process.start()
        port = self.spec.health_port
        assert port is not None
        process = self.process
        if not wait_until(lambda: grpc_serving(port), timeout_s, interval_s=0.2,
                          abort=lambda: None if process.returncode is None
                          else f"exited {process.returncode}"):
            raise AssertionError(f"{self.spec.name} not serving:\n{process.log_tail(60)}")

    def kill(self) -> None:
        """SIGKILL, no goodbye: what a crashed node or an OOM kill looks like."""
        assert self.process is not None and self.process.pid is not None
        os.kill(self.process.pid, 9)
        self.process.stop(timeout_s=5)  # reaps and removes the pid files

    def stop(self) -> int | None:
        if self.process is None:
            return None
        self.process.stop(timeout_s=20)
        return self.process.returncode

    def log(self) -> str:
        return self.process.log_tail(200) if self.process else ""


class Harness:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.downstream_schema = f"{settings.postgres_schema}_downstream"
        self.pool: asyncpg.Pool | None = None
        self.producer: Producer | None = None
        self.http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Harness:
        self.pool = await asyncpg.create_pool(
            resolve_dsn(self.settings), min_size=1, max_size=4,
            server_settings={"search_path": self.settings.postgres_schema})
        self.producer = Producer(self.settings)
        await self.producer.start()
        self.http = aiohttp.ClientSession(
            f"http://127.0.0.1:{self.settings.downstream_http_port}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.pool and self.producer and self.http
        await self.http.close()
        await self.producer.stop()
        await self.pool.close()

    # -- tasks and decisions -----------------------------------------------------------------
    async def seed(self, count: int, tenant: str = "acme", kind: str = "invoice",
                   metadata: dict[str, str] | None = None) -> list[str]:
        """Tasks as ingest leaves them for the executor (decided, IN_PROGRESS/EXECUTING)."""
        assert self.pool
        rows = []
        for _ in range(count):
            task_id = str(uuid.uuid4())
            envelope = TaskEnvelope(task_id=task_id, tenant_id=tenant, idempotency_key=task_id,
                                    kind=kind, document=Document(body=b"test"),
                                    source=TaskSource.TASK_SOURCE_GRPC, metadata=metadata)
            rows.append((uuid.UUID(task_id), tenant, task_id, hashlib.sha256(b"test").hexdigest(),
                         kind, "TASK_SOURCE_GRPC", envelope.SerializeToString()))
        await self.pool.executemany(
            "INSERT INTO tasks (task_id, tenant_id, idempotency_key, payload_sha256, kind, "
            "source, envelope, status, stage) VALUES ($1,$2,$3,$4,$5,$6,$7,'IN_PROGRESS',"
            "'EXECUTING')", rows)
        return [str(r[0]) for r in rows]

    async def send(self, decisions: Iterable[Decision]) -> None:
        assert self.producer
        futures = [await self.producer.send_nowait(DECISIONS, d.task_id, d) for d in decisions]
        await asyncio.gather(*futures)

    async def statuses(self, task_ids: Sequence[str]) -> dict[str, tuple[str, str, str]]:
        assert self.pool
        rows = await self.pool.fetch(
            "SELECT task_id, status, stage, reason FROM tasks WHERE task_id = ANY($1::uuid[])",
            [uuid.UUID(t) for t in task_ids])
        return {str(r["task_id"]): (r["status"], r["stage"], r["reason"]) for r in rows}

    async def wait(self, task_ids: Sequence[str], done: Any = None, timeout_s: float = 240,
                   what: str = "terminal") -> dict[str, tuple[str, str, str]]:
        """Until every task satisfies ``done(status, stage, reason)`` (default: terminal)."""
        check = done or (lambda status, stage, reason: status in TERMINAL)
        deadline = time.monotonic() + timeout_s
        while True:
            current = await self.statuses(task_ids)
            waiting = [t for t in task_ids if not check(*current[t])]
            if not waiting:
                return current
            if time.monotonic() > deadline:
                sample = {t: current[t] for t in waiting[:5]}
                raise AssertionError(f"{len(waiting)} of {len(task_ids)} tasks not {what} "
                                     f"after {timeout_s:.0f}s, e.g. {sample}")
            await asyncio.sleep(0.25)

    async def executions(self, task_id: str) -> dict[str, tuple[str, int, str]]:
        assert self.pool
        rows = await self.pool.fetch(
            "SELECT step_id, outcome, attempts, error FROM executions WHERE task_id = $1",
            uuid.UUID(task_id))
        return {r["step_id"]: (r["outcome"].removeprefix("STEP_OUTCOME_"), r["attempts"],
                               r["error"]) for r in rows}

    async def job(self, task_id: str) -> asyncpg.Record:
        assert self.pool
        return await self.pool.fetchrow(
            "SELECT * FROM executor_jobs WHERE task_id = $1 ORDER BY created_at DESC LIMIT 1",
            uuid.UUID(task_id))

    # -- the downstream ----------------------------------------------------------------------
    async def faults(self, system: str, **profile: Any) -> None:
        assert self.http
        async with self.http.put(f"/_/faults/{system}", json=profile) as response:
            assert response.status == 200, await response.text()

    async def clear_faults(self) -> None:
        assert self.http
        async with self.http.delete("/_/faults") as response:
            assert response.status == 200

    async def effects(self, task_ids: Sequence[str]) -> list[asyncpg.Record]:
        assert self.pool
        return await self.pool.fetch(
            f'SELECT * FROM "{self.downstream_schema}".effects WHERE task_id = ANY($1::text[]) '
            "ORDER BY id", list(task_ids))

    async def calls(self, key_prefix: str) -> list[asyncpg.Record]:
        assert self.pool
        return await self.pool.fetch(
            f'SELECT * FROM "{self.downstream_schema}".calls WHERE idempotency_key LIKE $1 '
            "ORDER BY id", key_prefix + "%")

    async def call_count(self, path_prefix: str) -> int:
        assert self.pool
        return int(await self.pool.fetchval(
            f'SELECT count(*) FROM "{self.downstream_schema}".calls WHERE path LIKE $1',
            path_prefix + "%"))
