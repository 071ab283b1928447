"""A service process whose database stopped answering (a frozen PostgreSQL: connections open,
nothing said): its readiness says so, and asked to stop it still exits by its deadline.

Outside operators found the executor answering SERVING for as long as PostgreSQL was down
(its readiness followed only its loops, and the resumer's failures came and went between
probes), and hung after "executor stopping" until the stack's `down` killed it 15 s later.
The database here sits behind a TCP relay the test freezes: the session's PostgreSQL is shared
with other tests and must not be stopped.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from switchyard import Settings
from switchyard._health_cli import check
from switchyard.rpc import LIVENESS
from switchyard.runtime import service_specs
from switchyard.stack import free_port
from tests.polling import eventually
from tests.relays import FreezableRelay

pytestmark = pytest.mark.integration


@dataclass
class Executor:
    """One executor process on a relayed database, its settings and its log."""

    process: subprocess.Popen[bytes]
    settings: Settings
    relay: FreezableRelay
    log: Path

    @property
    def said(self) -> str:
        return self.log.read_text()

    async def health(self, service: str = "") -> str:
        return await check(f"127.0.0.1:{self.settings.executor_grpc_port}", service=service)

    async def becomes(self, status: str, timeout_s: float) -> None:
        async def now() -> bool:
            return await self.health() == status
        await eventually(now, f"readiness {status}", timeout_s=timeout_s)

    def metric(self, name: str) -> float | None:
        with urllib.request.urlopen(
                f"http://127.0.0.1:{self.settings.executor_metrics_port}/metrics",
                timeout=5) as reply:
            for line in reply.read().decode().splitlines():
                if line.startswith(f'{name}{{service="executor"}} '):
                    return float(line.split()[-1])
        return None


@pytest.fixture
async def executor(settings: Settings, tmp_path: Path) -> AsyncIterator[Executor]:
    relay = FreezableRelay.for_dsn(settings.postgres_dsn)
    await relay.start()
    own = settings.replace(postgres_dsn=relay.relayed_dsn(settings.postgres_dsn),
                           executor_grpc_port=free_port(), executor_metrics_port=free_port(),
                           shutdown_deadline_s=4.0, database_check_interval_s=0.5,
                           state_dir=tmp_path, log_format="text")
    (spec,) = service_specs(own, ("executor",))
    log = tmp_path / "executor.log"
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "switchyard", "run", "executor"],
                                   env={**os.environ, **own.to_env(), **spec.env},
                                   stdout=out, stderr=subprocess.STDOUT)
    started = Executor(process, own, relay, log)
    try:
        deadline = time.monotonic() + 90
        while "executor ready on" not in started.said:
            assert process.poll() is None and time.monotonic() < deadline, started.said
            await asyncio.sleep(0.2)
        yield started
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        await relay.close()


async def test_readiness_follows_the_database_and_liveness_does_not(
        executor: Executor) -> None:
    await executor.becomes("SERVING", timeout_s=30)
    assert await executor.health(LIVENESS) == "SERVING"
    assert executor.metric("switchyard_database_reachable") == 1.0

    executor.relay.freeze()  # the database says nothing from now on
    await executor.becomes("NOT_SERVING", timeout_s=30)
    # not a reason to restart the process: liveness stays SERVING
    assert await executor.health(LIVENESS) == "SERVING"
    assert executor.metric("switchyard_database_reachable") == 0.0
    assert executor.said.count("PostgreSQL does not answer") == 1, executor.said
    await asyncio.sleep(2.0)  # more failed checks: still one line for the outage
    assert executor.said.count("PostgreSQL does not answer") == 1, executor.said

    executor.relay.thaw()  # back (its held connections closed, as by a restart)
    await executor.becomes("SERVING", timeout_s=60)
    assert executor.metric("switchyard_database_reachable") == 1.0
    assert "PostgreSQL answers again: ready" in executor.said, executor.said
    assert executor.process.poll() is None


async def test_a_service_stops_by_its_deadline_when_its_database_froze(
        executor: Executor) -> None:
    executor.relay.freeze()
    await asyncio.sleep(1.0)
    executor.process.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(executor.process.wait, 60)
    said = executor.said
    assert code == 0, said
    assert "executor stopping" in said, said
    assert "executor stopped" in said or "shutdown did not finish within 4 s" in said, said
