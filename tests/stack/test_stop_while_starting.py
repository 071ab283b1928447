"""A service asked to stop while it is still starting stops: a dependency that never answers
(here a PostgreSQL port that accepts connections and says nothing) must not keep a process
alive past SIGTERM, or it outlives its launcher as an orphan."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from switchyard.stack import free_port


@pytest.fixture
def silent_server() -> Iterator[socket.socket]:
    """A listening TCP socket that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    try:
        yield server
    finally:
        server.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_service_waiting_on_a_silent_database_stops_on_a_signal(
        silent_server: socket.socket, tmp_path, sig: int) -> None:
    silent_port = silent_server.getsockname()[1]
    env = {**os.environ,
           "SWITCHYARD_POSTGRES_DSN": f"postgresql://sy@127.0.0.1:{silent_port}/sy",
           "SWITCHYARD_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
           "SWITCHYARD_INGEST_GRPC_PORT": str(free_port()),
           "SWITCHYARD_INGEST_METRICS_PORT": str(free_port()),
           "SWITCHYARD_INGEST_REST_PORT": str(free_port()),
           "SWITCHYARD_STATE_DIR": str(tmp_path)}
    held: socket.socket | None = None
    process = subprocess.Popen([sys.executable, "-m", "switchyard", "run", "ingest"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # connecting: the database accepted and says nothing (waited for, not slept on: a
        # loaded machine takes its time to import and reach the database)
        silent_server.settimeout(90)
        held, _ = silent_server.accept()
        time.sleep(0.5)
        assert process.poll() is None, process.communicate()[0]
        process.send_signal(sig)
        output, _ = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
        if held is not None:
            held.close()
    assert process.returncode == 0, output
    assert "stopping before it was ready" in output and "ingest stopped" in output, output
