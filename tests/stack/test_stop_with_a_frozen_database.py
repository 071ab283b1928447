"""A running service asked to stop exits within SWITCHYARD_SHUTDOWN_DEADLINE_S even when its
database stopped answering mid-way (a frozen PostgreSQL: connections open, nothing said).

An outside operator found the executor hung after "executor stopping" with PostgreSQL down,
until the stack's `down` killed it 15 s later (its replica beat never removed, its jobs waiting
for the takeover timeout). The database here sits behind a TCP relay the test freezes: the
session's PostgreSQL is shared with other tests and must not be stopped.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from switchyard import Settings
from switchyard.runtime import service_specs
from switchyard.stack import free_port

pytestmark = pytest.mark.integration


class FreezableRelay:
    """Forwards TCP to ``target`` until frozen; frozen, it keeps every connection open and
    passes nothing either way (what a hung database looks like from the client)."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.frozen = asyncio.Event()
        self.server: asyncio.base_events.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            while not self.frozen.is_set():
                data = await source.read(65536)
                if not data or self.frozen.is_set():
                    break
                sink.write(data)
                await sink.drain()
            await asyncio.Event().wait() if self.frozen.is_set() else None

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        except (ConnectionError, asyncio.CancelledError):
            pass

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()


async def test_a_service_stops_by_its_deadline_when_its_database_froze(
        settings: Settings, tmp_path: Path) -> None:
    dsn = urlsplit(settings.postgres_dsn)
    relay = FreezableRelay(dsn.hostname or "127.0.0.1", dsn.port or 5432)
    port = await relay.start()
    relayed = urlunsplit(dsn._replace(netloc=dsn.netloc.replace(
        f"{dsn.hostname}:{dsn.port}", f"127.0.0.1:{port}")))
    own = settings.replace(postgres_dsn=relayed, executor_grpc_port=free_port(),
                           executor_metrics_port=free_port(), shutdown_deadline_s=4.0,
                           state_dir=tmp_path, log_format="text")
    (spec,) = service_specs(own, ("executor",))
    log = tmp_path / "executor.log"
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "switchyard", "run", "executor"],
                                   env={**os.environ, **own.to_env(), **spec.env},
                                   stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while "executor ready on" not in log.read_text():
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            await asyncio.sleep(0.2)
        relay.frozen.set()          # the database says nothing from now on
        await asyncio.sleep(1.0)
        process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(process.wait, 60)
    finally:
        if process.poll() is None:
            process.kill()
        await relay.close()
    said = log.read_text()
    assert code == 0, said
    assert "executor stopping" in said, said
    assert "executor stopped" in said or "shutdown did not finish within 4 s" in said, said
