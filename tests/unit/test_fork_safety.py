"""Forking to exec while other threads are inside gRPC runs none of gRPC's fork handlers.

A Switchyard process forks only to exec (the stack launcher, the CLI, the test fixtures).
gRPC's handlers are meant for children that keep using gRPC; in a child about to exec they
once crashed a PostgreSQL restart (SIGSEGV before exec) while the test process had calls in
flight. ``import switchyard`` turns them off before gRPC loads.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

_CHILD = r"""
import os, subprocess, threading, time
import switchyard  # first, as every Switchyard entry point does
import grpc
from concurrent import futures

def slow(request, context):
    time.sleep(1.0)
    return b""

server = grpc.server(futures.ThreadPoolExecutor(4))
server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
    "t.Slow", {"Call": grpc.unary_unary_rpc_method_handler(slow)}),))
port = server.add_insecure_port("127.0.0.1:0")
server.start()
call = grpc.insecure_channel(f"127.0.0.1:{port}").unary_unary("/t.Slow/Call")
threads = [threading.Thread(target=call, args=(b"",), kwargs={"timeout": 10}) for _ in range(3)]
for thread in threads:
    thread.start()
time.sleep(0.3)
for _ in range(5):   # user= makes subprocess fork (not vfork), so fork handlers would run
    subprocess.run(["true"], user=os.getuid(), check=True)
for thread in threads:
    thread.join()
server.stop(None)
print("forked")
"""


def test_forking_beside_live_grpc_calls_runs_no_grpc_fork_handler() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRPC_")}
    env["GRPC_VERBOSITY"] = "INFO"   # the handlers announce themselves at INFO
    result = subprocess.run(
        [sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "forked" in result.stdout
    assert "fork() handlers" not in result.stderr, result.stderr


def test_an_operators_explicit_fork_setting_is_kept() -> None:
    env = {**os.environ, "GRPC_ENABLE_FORK_SUPPORT": "true"}
    probe = "import os, switchyard; print(os.environ['GRPC_ENABLE_FORK_SUPPORT'])"
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                            text=True, timeout=60, check=True)
    assert result.stdout.strip() == "true"


_PROBE = r"""
import os, sys

class Watch:
    def find_spec(self, name, path=None, target=None):
        if name == "grpc" and "SEEN" not in os.environ:
            os.environ["SEEN"] = "1"
            print("grpc loads with GRPC_ENABLE_FORK_SUPPORT =",
                  os.environ.get("GRPC_ENABLE_FORK_SUPPORT"))
        return None

sys.meta_path.insert(0, Watch())
import {module}
import grpc  # if the entry point itself loads gRPC later, on first use
"""


@pytest.mark.parametrize("module", ["switchyard.cli", "chaos", "bench.e2e_bench",
                                    "bench.decision_bench"])
def test_every_entry_point_loads_grpc_with_fork_handlers_off(module: str) -> None:
    """``python -m chaos`` and the benchmarks fork PostgreSQL and the services too: their
    packages import switchyard before anything imports gRPC."""
    env = {k: v for k, v in os.environ.items() if k != "GRPC_ENABLE_FORK_SUPPORT"}
    out = subprocess.run([sys.executable, "-c", _PROBE.replace("{module}", module)],
                         capture_output=True, text=True, env=env, timeout=120, check=True)
    assert "grpc loads with GRPC_ENABLE_FORK_SUPPORT = false" in out.stdout, out.stdout
