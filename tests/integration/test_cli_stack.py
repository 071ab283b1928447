"""`switchyard up` / `status` / `down` as a user runs them: real processes, no orphans left."""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from switchyard.stack import free_port

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def stack_env(state_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    ports = {name: str(free_port()) for name in (
        "INGEST_GRPC_PORT", "DECISION_GRPC_PORT", "EXECUTOR_GRPC_PORT", "REVIEW_GRPC_PORT",
        "INGEST_METRICS_PORT", "DECISION_METRICS_PORT", "EXECUTOR_METRICS_PORT",
        "REVIEW_METRICS_PORT", "TRITON_HTTP_PORT", "TRITON_METRICS_PORT",
        "DOWNSTREAM_HTTP_PORT", "DOWNSTREAM_GRPC_PORT", "REVIEW_WEB_PORT")}
    triton_grpc = free_port()
    env.update({f"SWITCHYARD_{k}": v for k, v in ports.items()})
    env.update({
        "SWITCHYARD_STATE_DIR": str(state_dir),
        "SWITCHYARD_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "SWITCHYARD_TRITON_GRPC_PORT": str(triton_grpc),
        "SWITCHYARD_TRITON_URL": f"127.0.0.1:{triton_grpc}",
        "SWITCHYARD_MODEL_REPOSITORY": str(ROOT / "models" / "repository"),
        # as tests/conftest.py: the broker holds each group join for half of it
        "SWITCHYARD_KAFKA_SESSION_TIMEOUT_MS": "4000",
    })
    return env


def our_processes(state_dir: Path) -> list[psutil.Process]:
    """Processes started for this stack: their command line or environment names it."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            cmdline = " ".join(proc.info["cmdline"] or [])
            if str(state_dir) in cmdline or proc.environ().get("SWITCHYARD_STATE_DIR") == str(
                    state_dir):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return [p for p in found if p.pid != os.getpid()]


def listening_addresses(pids: set[int]) -> set[str]:
    addresses = set()
    for conn in psutil.net_connections(kind="inet"):
        if conn.status == psutil.CONN_LISTEN and conn.pid in pids:
            addresses.add(conn.laddr.ip)
    return addresses


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def switchyard(*args: str, env: dict[str, str], timeout: float = 60
               ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "switchyard", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def test_up_detach_status_down(tmp_path: Path) -> None:
    env = stack_env(tmp_path / "state")
    up = switchyard("up", "--detach", env=env, timeout=120)
    assert up.returncode == 0, up.stderr
    try:
        status = switchyard("status", "--json", env=env)
        rows = {row["name"]: row for row in json.loads(status.stdout)}
        assert set(rows) == {"kafka", "postgres", "triton", "downstream", "ingest", "decision",
                             "executor", "review"}
        assert all(row["healthy"] for row in rows.values()), rows
        assert status.returncode == 0
        pids = {p.pid for p in our_processes(tmp_path / "state")}
        addresses = listening_addresses(pids)
        assert addresses and all(is_loopback(a) for a in addresses), addresses
    finally:
        down = switchyard("down", env=env)
    assert down.returncode == 0, down.stderr
    assert our_processes(tmp_path / "state") == []
    assert switchyard("status", env=env).returncode == 1


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_foreground_up_stops_everything_on_signal(tmp_path: Path, sig: signal.Signals) -> None:
    state_dir = tmp_path / "state"
    env = stack_env(state_dir)
    proc = subprocess.Popen([sys.executable, "-m", "switchyard", "up"], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        output = ""
        assert proc.stdout is not None
        while "running;" not in output:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, output
            output += line
            assert time.monotonic() < deadline, output
        assert len(our_processes(state_dir)) >= 7
        proc.send_signal(sig)
        rest, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, output + rest
        assert "stopped" in rest
    finally:
        if proc.poll() is None:
            proc.kill()
    assert our_processes(state_dir) == []
