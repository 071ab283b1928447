"""An executor without SWITCHYARD_EXECUTOR_ENDPOINTS refuses to start outside the embedded stack.

Formerly an empty setting meant "the embedded demo downstream on 127.0.0.1", so a pod whose
operator forgot the setting started and posted every step to its own loopback. Now the
process exits 1 with a message naming the setting, before it touches Kafka or PostgreSQL;
only the embedded stack's launcher fills the setting in (the executor tests that go through
``service_specs`` show it still starts there).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from services.executor.endpoints import (
    EndpointsNotConfigured,
    default_endpoint_map,
    embedded_endpoints,
    endpoint_map,
    parse_endpoint_map,
)
from switchyard import Settings
from switchyard.runtime import service_specs

pytestmark = pytest.mark.integration


def test_an_executor_without_endpoints_exits_with_a_clear_error(settings: Settings) -> None:
    """Against the real broker and database (so nothing else would stop it from starting)."""
    env = {**os.environ, **settings.to_env(), "SWITCHYARD_EXECUTOR_ENDPOINTS": ""}
    try:
        proc = subprocess.run([sys.executable, "-m", "switchyard", "run", "executor"], env=env,
                              capture_output=True, text=True, timeout=90)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the executor started without endpoints: {exc.stderr!r}")
    assert proc.returncode == 1
    assert "SWITCHYARD_EXECUTOR_ENDPOINTS is empty" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_malformed_endpoint_map_is_refused_the_same_way(settings: Settings) -> None:
    env = {**os.environ, **settings.to_env(), "SWITCHYARD_EXECUTOR_ENDPOINTS": "erp=ftp://x"}
    proc = subprocess.run([sys.executable, "-m", "switchyard", "run", "executor"], env=env,
                          capture_output=True, text=True, timeout=90)
    assert proc.returncode == 1
    assert "SWITCHYARD_EXECUTOR_ENDPOINTS entry 0" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_empty_endpoints_are_never_read_as_loopback() -> None:
    with pytest.raises(EndpointsNotConfigured, match="SWITCHYARD_EXECUTOR_ENDPOINTS is empty"):
        endpoint_map(Settings())


def test_the_embedded_stack_gives_its_executor_the_demo_downstream() -> None:
    settings = Settings(downstream_http_port=1234, downstream_grpc_port=5678)
    (spec,) = service_specs(settings, ("executor",))
    given = spec.env["SWITCHYARD_EXECUTOR_ENDPOINTS"]
    assert given == embedded_endpoints(settings)
    assert parse_endpoint_map(given) == default_endpoint_map(settings)
    assert endpoint_map(settings.replace(executor_endpoints=given))[("http", "erp")] == \
        "http://127.0.0.1:1234/erp"
    # an explicit map (a test's own downstream, a staging ERP) is passed through untouched
    (own,) = service_specs(settings.replace(executor_endpoints="erp=http://10.0.0.5/erp"),
                           ("executor",))
    assert "SWITCHYARD_EXECUTOR_ENDPOINTS" not in own.env
