"""`switchyard up` / `status` / `down` as a user runs them: real processes, no orphans left;
and the README's first screen, command by command, against the stack it starts."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import pytest

from switchyard import Settings
from switchyard.stack import free_port
from tests.polling import eventually

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def stack_env(state_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    ports = {name: str(free_port()) for name in (
        "INGEST_GRPC_PORT", "DECISION_GRPC_PORT", "EXECUTOR_GRPC_PORT", "REVIEW_GRPC_PORT",
        "INGEST_METRICS_PORT", "DECISION_METRICS_PORT", "EXECUTOR_METRICS_PORT",
        "REVIEW_METRICS_PORT", "TRITON_HTTP_PORT", "TRITON_METRICS_PORT",
        "DOWNSTREAM_HTTP_PORT", "DOWNSTREAM_GRPC_PORT", "REVIEW_WEB_PORT", "INGEST_REST_PORT")}
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


def readme_first_screen() -> tuple[str, list[list[str]], str]:
    """The README's opening: its first shell block (``make demo``, ``make test``), then the
    newcomer path: two blocks of commands with, between them, the console step."""
    text = README.read_text()
    blocks = list(re.finditer(r"```bash\n(.*?)```", text, flags=re.S))
    assert [line.split()[:2] for line in blocks[0].group(1).splitlines()] == [
        ["make", "demo"], ["make", "test"]], "the README must open with make demo, make test"
    commands = [[line for line in block.group(1).splitlines() if line.strip()]
                for block in blocks[1:3]]
    between = text[blocks[1].end():blocks[2].start()]
    assert text[:blocks[2].end()].count("\n") <= 45, "the path must fit the first screen"
    return text[:blocks[2].end()], commands, between


def run_readme_line(line: str, env: dict[str, str], task_id: str = "",
                    timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """One README command exactly as written (``TASK_ID`` being the id ``submit`` printed),
    from the repository root; ``env`` only moves the ports and state dir off the defaults."""
    argv = shlex.split(line.replace("TASK_ID", task_id), comments=True)
    assert argv[0] == ".venv/bin/switchyard", line
    return subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def console_call(base: str, method: str, path: str, body: dict[str, Any] | None = None
                 ) -> Any:
    """The review console's own JSON API, as its page calls it signed in with an empty key."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_readme_path_up_submit_review_watch_down(tmp_path: Path) -> None:
    """The README's first screen, run as written against a stack started the way it says:
    up (announcing that auth is off), submit the example invoice, see it wait for a person,
    approve it through the review console's API with an empty key and a typed name, watch it
    succeed, stop; every server on loopback, nothing left running."""
    screen, (start, finish), console_step = readme_first_screen()
    defaults = Settings()
    # the README shows the default ports; this run moves them (other stacks may hold them)
    consoles = re.findall(r"<http://127\.0\.0\.1:(\d+)(/[a-z]*)>", screen)
    assert {(int(port), path) for port, path in consoles} == {
        (defaults.review_web_port, "/"), (defaults.review_web_port, "/operator")}
    assert "auth: off" in console_step
    assert (ROOT / ".venv" / "bin" / "switchyard").exists(), "make demo's virtualenv"
    state_dir = tmp_path / "state"
    env = stack_env(state_dir)
    console = f"http://127.0.0.1:{env['SWITCHYARD_REVIEW_WEB_PORT']}"
    up_line, submit_line, get_line = start
    watch_line, down_line = finish
    assert shlex.split(up_line, comments=True)[1:] == ["up", "--detach"]
    assert shlex.split(down_line, comments=True)[1:] == ["down"]

    up = run_readme_line(up_line, env, timeout=180)
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        printed = up.stdout   # the endpoints on stdout, for scripts (progress on stderr)
        assert "review console" in printed and console in printed, up.stdout + up.stderr
        assert "auth: off (SWITCHYARD_API_KEYS is empty)" in printed, printed
        assert "detached; stop with switchyard down" in printed, printed
        status = switchyard("status", "--json", env=env)
        rows = {row["name"]: row for row in json.loads(status.stdout)}
        assert set(rows) == {"kafka", "postgres", "triton", "downstream", "ingest", "decision",
                             "executor", "review"}
        assert all(row["healthy"] for row in rows.values()), rows
        assert status.returncode == 0
        pids = {p.pid for p in our_processes(state_dir)}
        addresses = listening_addresses(pids)
        assert addresses and all(is_loopback(a) for a in addresses), addresses

        submitted = run_readme_line(submit_line, env)
        assert submitted.returncode == 0, submitted.stdout + submitted.stderr
        match = re.fullmatch(r"docs/examples/invoice\.txt: (\S+) new QUEUED\n",
                             submitted.stdout)
        assert match, submitted.stdout
        task_id = match.group(1)

        async def awaiting_review() -> str | None:
            got = await asyncio.to_thread(run_readme_line, get_line, env, task_id)
            assert got.returncode == 0, got.stdout + got.stderr
            fields = dict(re.findall(r"^(\w+):\s+(.*)$", got.stdout, flags=re.M))
            return got.stdout if (fields["status"], fields["stage"], fields["reason"]) == (
                "BLOCKED", "AWAITING_REVIEW", "amount_over_limit") else None

        asyncio.run(eventually(awaiting_review, "the invoice to wait for a person"))

        # the console step: the page, then what it calls signed in with an empty API key
        with urllib.request.urlopen(console + "/", timeout=10) as page:
            html = page.read().decode()
        assert 'id="api-key"' in html and 'id="reviewer"' in html
        session = console_call(console, "GET", "/api/session")
        assert (session["auth"], session["role"]) == (False, "admin")

        async def listed() -> dict[str, Any] | None:
            items = (await asyncio.to_thread(console_call, console, "GET", "/api/items"))["items"]
            return next((i for i in items if i["task_id"] == task_id), None)

        item = asyncio.run(eventually(listed, "the invoice in the review console"))
        claimed = console_call(console, "POST", f"/api/items/{item['item_id']}/claim",
                               {"reviewer_id": "newcomer"})
        assert claimed["item"]["state"] == "CLAIMED"
        decided = console_call(console, "POST", f"/api/items/{item['item_id']}/verdict",
                               {"reviewer_id": "newcomer", "verdict": "approve", "reason": ""})
        assert decided["item"]["state"] == "RESOLVED"

        watched = run_readme_line(watch_line, env, task_id)
        assert watched.returncode == 0, watched.stdout + watched.stderr
        statuses = [line.split()[1] for line in watched.stdout.splitlines()]
        assert statuses[0] == "QUEUED" and "BLOCKED" in statuses, watched.stdout
        assert statuses[-1] == "SUCCEEDED", watched.stdout

        # the operator console step: the page, then the task found and its story
        with urllib.request.urlopen(console + "/operator", timeout=10) as page:
            assert page.status == 200
        story = console_call(console, "GET", f"/api/operator/tasks/{task_id}/timeline")
        tenant = story["task"]["tenant_id"]
        found = console_call(console, "GET", f"/api/operator/tasks?tenant={tenant}&kind=invoice")
        assert task_id in [task["task_id"] for task in found["tasks"]], found
        entries = {entry["action"]: entry for entry in story["entries"]}
        assert entries["decision.made"]["detail"]["rule"] == "amount_over_limit", entries
        assert entries["review.verdict"]["actor"] == "reviewer:newcomer", entries
        assert "step.executed" in entries and "status.changed" in entries, sorted(entries)
    finally:
        down = run_readme_line(down_line, env)
    assert down.returncode == 0, down.stderr
    assert down.stdout.startswith("stopped: "), down.stdout
    assert our_processes(state_dir) == []
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
