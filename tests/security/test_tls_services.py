"""TLS and mutual TLS on the services as ``switchyard run`` starts them, and the operator tools
against them.

The module's services run as real processes (through the embedded stack's service specs,
as ``switchyard up`` starts them) with the ``SWITCHYARD_TLS_*`` settings of a throwaway CA,
under mutual TLS; the stack's own health checks must get through (``SWITCHYARD_CLIENT_TLS_*``).
Then: a plaintext client and a client without a certificate are refused, a client with the
CA and a certificate is served; the review console answers over HTTPS only and only to a
client certificate; ``switchyard review list``, ``breakers``, ``health`` and ``status`` work
over mutual TLS, and ``switchyard demo`` runs through them. One ingest process with TLS but no client CA checks plain TLS.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from switchyard import Settings
from switchyard.rpc import ClientTls, ServerTls, client_channel, create_channel
from switchyard.runtime import service_specs, up
from switchyard.stack import EmbeddedStack, StackError, free_port
from switchyard.v1 import (
    AnalyticsServiceStub,
    IngestServiceStub,
    ListSessionsRequest,
    SubmitTaskRequest,
)
from tests.ingest.helpers import submission
from tests.security.certs import Pki, make_pki

pytestmark = pytest.mark.integration
KEYS = "op-key:*:admin,sub-acme:acme:submitter"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def settings(settings: Settings, pki: Pki) -> Settings:
    """The module's isolated settings with mutual TLS on every server and the operator's
    client side (CA, client certificate, admin key) for the command-line tools."""
    return settings.replace(
        api_keys=KEYS, client_api_key="op-key",
        tls_cert_file=str(pki.server_cert), tls_key_file=str(pki.server_key),
        tls_client_ca_file=str(pki.ca),
        client_tls_ca_file=str(pki.ca), client_tls_cert_file=str(pki.client_cert),
        client_tls_key_file=str(pki.client_key))


@pytest.fixture(scope="module")
def services(settings: Settings, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[EmbeddedStack]:
    """The four services (and the demo downstream) as ``switchyard up`` starts them; ``start``
    returns only once the stack's health checks saw each one SERVING."""
    stack = EmbeddedStack(settings, tmp_path_factory.mktemp("tls-services"), components=(),
                          services=service_specs(settings))
    stack.start(timeout_s=120)
    try:
        yield stack
    finally:
        stack.stop()


def cli(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``switchyard ARGS`` in a child process with ``settings`` (plus ``env``) as its env."""
    return subprocess.run([sys.executable, "-m", "switchyard", *args], capture_output=True,
                          text=True, timeout=120,
                          env={**os.environ, **settings.to_env(), **env})


async def health(target: str, **tls: str) -> str:
    channel = create_channel(target, **tls)
    try:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5)
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
    except grpc.aio.AioRpcError as exc:
        return exc.code().name
    finally:
        await channel.close()


# -- mutual TLS on the services the stack started ------------------------------------------

@pytest.mark.usefixtures("services")
async def test_mutual_tls_refuses_plaintext_and_certless_clients(settings: Settings,
                                                                  pki: Pki) -> None:
    for port in (settings.ingest_grpc_port, settings.decision_grpc_port,
                 settings.executor_grpc_port, settings.review_grpc_port):
        target = f"127.0.0.1:{port}"
        assert await health(target) == "UNAVAILABLE"
        assert await health(target, ca_file=str(pki.ca)) == "UNAVAILABLE"
        assert await health(target, ca_file=str(pki.ca), cert_file=str(pki.client_cert),
                            key_file=str(pki.client_key)) == "SERVING"


@pytest.mark.usefixtures("services")
async def test_submission_over_mutual_tls(settings: Settings, pki: Pki) -> None:
    channel = create_channel(f"127.0.0.1:{settings.ingest_grpc_port}", "sub-acme",
                             ca_file=str(pki.ca), cert_file=str(pki.client_cert),
                             key_file=str(pki.client_key))
    try:
        reply = await IngestServiceStub(channel).SubmitTask(
            SubmitTaskRequest(submission=submission("acme")), timeout=30)
    finally:
        await channel.close()
    assert reply.task_id and reply.created


async def console_get(url: str, ssl_context: ssl.SSLContext | bool) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as session, session.get(
            url, ssl=ssl_context, headers={"Authorization": "Bearer op-key"},
            timeout=aiohttp.ClientTimeout(total=15)) as response:
        return response.status, await response.json()


@pytest.mark.usefixtures("services")
async def test_console_serves_https_with_client_certificates_only(settings: Settings,
                                                                   pki: Pki) -> None:
    base = f"127.0.0.1:{settings.review_web_port}/api/session"
    with_cert = ssl.create_default_context(cafile=str(pki.ca))
    with_cert.load_cert_chain(str(pki.client_cert), str(pki.client_key))
    status, body = await console_get(f"https://{base}", with_cert)
    assert (status, body["role"], body["auth"]) == (200, "admin", True)

    with pytest.raises(aiohttp.ClientError):  # mutual TLS: no client certificate, no answer
        await console_get(f"https://{base}", ssl.create_default_context(cafile=str(pki.ca)))
    with pytest.raises(aiohttp.ClientError):  # and no plaintext HTTP at all
        await console_get(f"http://{base}", False)


@pytest.mark.usefixtures("services")
def test_review_list_and_breakers_speak_mutual_tls(settings: Settings) -> None:
    listed = cli(settings, "review", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    breakers = cli(settings, "breakers", "--json")
    assert breakers.returncode == 0, breakers.stderr
    assert isinstance(json.loads(breakers.stdout), list)

    # Without the client settings the same commands cannot connect: the servers demand TLS.
    plain = {"SWITCHYARD_CLIENT_TLS_CA_FILE": "", "SWITCHYARD_CLIENT_TLS_CERT_FILE": "",
             "SWITCHYARD_CLIENT_TLS_KEY_FILE": ""}
    refused = cli(settings, "breakers", **plain)
    assert refused.returncode == 3 and "UNAVAILABLE" in refused.stderr   # docs/cli.md


@pytest.mark.usefixtures("services")
async def test_demo_runs_over_mutual_tls(settings: Settings) -> None:
    """``switchyard demo`` submits, reviews (its reviewer bot) and waits for every task over
    the client TLS settings; it exits 0 only when every accepted task ended."""
    # no classrooms: their twenty minutes of class replay for half a minute, and the
    # section's one call of its own (the analytics service, on the decision port) goes
    # through the same client channel, asked directly below (the section's figures are
    # tests/cli/test_demo_classroom.py's)
    demo = cli(settings, "demo", "--tasks", "6", "--seed", "3", "--classrooms", "0")
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "submitted 6 tasks and 3 malformed ones" in demo.stdout, demo.stdout
    assert "what happened" in demo.stdout, demo.stdout
    assert "unsupported 'image/gif'" in demo.stdout, demo.stdout   # each refusal says why
    channel = client_channel(settings, f"127.0.0.1:{settings.decision_grpc_port}")
    try:
        await AnalyticsServiceStub(channel).ListSessions(ListSessionsRequest(
            tenant_id="northwind-edu"), timeout=30)
    finally:
        await channel.close()


def test_health_and_status_use_the_client_tls_settings(settings: Settings,
                                                       services: EmbeddedStack) -> None:
    targets = [f"127.0.0.1:{settings.ingest_grpc_port}",
               f"127.0.0.1:{settings.review_grpc_port}"]
    checked = cli(settings, "health", *targets)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.count("SERVING") == 2

    status = cli(settings, "status", "--json", SWITCHYARD_STATE_DIR=str(services.state_dir))
    rows = {row["name"]: row for row in json.loads(status.stdout)}
    assert {"ingest", "decision", "executor", "review", "downstream"} <= rows.keys()
    assert all(row["healthy"] for row in rows.values()), rows
    assert status.returncode == 0


# -- TLS without client certificates --------------------------------------------------------

def test_tls_without_client_ca(settings: Settings, pki: Pki, tmp_path: Path) -> None:
    tls_only = settings.replace(
        tls_client_ca_file="", client_tls_cert_file="", client_tls_key_file="",
        ingest_grpc_port=free_port(), ingest_metrics_port=free_port(),
        ingest_rest_port=free_port())
    stack = EmbeddedStack(tls_only, tmp_path, components=(),
                          services=service_specs(tls_only, ("ingest",)))
    stack.start(timeout_s=120)
    try:
        target = f"127.0.0.1:{tls_only.ingest_grpc_port}"
        checked = cli(tls_only, "health", target)
        assert checked.returncode == 0, checked.stderr
        plain = cli(tls_only, "health", target, "--ca", "")
        assert plain.returncode == 1 and "UNAVAILABLE" in plain.stderr
    finally:
        stack.stop()


# -- the embedded stack refuses TLS it could not check -----------------------------------

def test_up_refuses_server_tls_without_client_tls(pki: Pki, tmp_path: Path) -> None:
    server_only = Settings(tls_cert_file=str(pki.server_cert), tls_key_file=str(pki.server_key),
                           state_dir=tmp_path)
    with pytest.raises(StackError, match="SWITCHYARD_CLIENT_TLS_CA_FILE"):
        service_specs(server_only)
    mutual = server_only.replace(tls_client_ca_file=str(pki.ca), client_tls_ca_file=str(pki.ca))
    with pytest.raises(StackError, match="SWITCHYARD_CLIENT_TLS_CERT_FILE"):
        service_specs(mutual)
    assert up(server_only) == 1  # refused before anything starts


def test_half_configured_tls_is_refused_with_the_setting_to_fix(pki: Pki) -> None:
    """Settings that would silently fall back to plaintext (or never connect) are refused."""
    with pytest.raises(ValueError, match="SWITCHYARD_TLS_CERT_FILE is not"):
        ServerTls.from_settings(Settings(tls_client_ca_file=str(pki.ca)))
    with pytest.raises(ValueError, match="SWITCHYARD_TLS_KEY_FILE is not"):
        ServerTls.from_settings(Settings(tls_cert_file=str(pki.server_cert)))
    with pytest.raises(ValueError, match="go together"):
        ClientTls.from_settings(Settings(client_tls_ca_file=str(pki.ca),
                                         client_tls_cert_file=str(pki.client_cert)))
    with pytest.raises(ValueError, match="need SWITCHYARD_CLIENT_TLS_CA_FILE"):
        ClientTls.from_settings(Settings(client_tls_cert_file=str(pki.client_cert),
                                         client_tls_key_file=str(pki.client_key)))
    assert ServerTls.from_settings(Settings()) is None
    assert ClientTls.from_settings(Settings()) is None
