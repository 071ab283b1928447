"""The client SDK over mutual TLS, against the real ingest service started with TLS settings."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from switchyard_client import NO_RETRIES, Client, NotFound, TaskStatus, Unavailable

from switchyard import Settings
from switchyard.runtime import service_specs
from switchyard.stack import EmbeddedStack
from tests.client.helpers import ACME_KEY, KEYS
from tests.security.certs import Pki, make_pki

pytestmark = [pytest.mark.integration]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def settings(settings: Settings, pki: Pki) -> Settings:
    return settings.replace(api_keys=KEYS, tls_cert_file=str(pki.server_cert),
                            tls_key_file=str(pki.server_key),
                            tls_client_ca_file=str(pki.ca),
                            # the stack refuses TLS services it could not health-check
                            client_tls_ca_file=str(pki.ca),
                            client_tls_cert_file=str(pki.client_cert),
                            client_tls_key_file=str(pki.client_key))


@pytest.fixture(scope="module")
def target(settings: Settings, pki: Pki, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[str]:
    """The ingest service as a process; its readiness is checked over mutual TLS here (the
    stack's own probe speaks plaintext)."""
    [ingest] = service_specs(settings, ("ingest",))
    stack = EmbeddedStack(settings, tmp_path_factory.mktemp("tls"), components=(),
                          services=[dataclasses.replace(ingest, health_port=None)])
    stack.start(timeout_s=60)
    address = f"127.0.0.1:{settings.ingest_grpc_port}"
    try:
        with Client(address, api_key=ACME_KEY, ca_file=pki.ca, cert_file=pki.client_cert,
                    key_file=pki.client_key, retry_policy=NO_RETRIES, timeout_s=5) as probe:
            deadline = time.monotonic() + 60
            while True:
                try:
                    probe.get(str(uuid.uuid4()))
                except NotFound:
                    break
                except Unavailable:
                    assert time.monotonic() < deadline, "ingest never answered over TLS"
                    time.sleep(0.3)
        yield address
    finally:
        stack.stop()


def test_mutual_tls_with_an_api_key(target: str, pki: Pki) -> None:
    with Client(target, api_key=ACME_KEY, ca_file=pki.ca, cert_file=pki.client_cert,
                key_file=pki.client_key, server_name="localhost") as client:
        submitted = client.submit("acme", "Ticket: over mutual TLS", kind="support_ticket")
        assert client.get(submitted.task_id).status == TaskStatus.TASK_STATUS_QUEUED


@pytest.mark.parametrize("how", ["plaintext", "tls without a client certificate"])
def test_refused_without_the_client_certificate(target: str, pki: Pki, how: str) -> None:
    options = {} if how == "plaintext" else {"ca_file": pki.ca}
    with Client(target, api_key=ACME_KEY, retry_policy=NO_RETRIES, timeout_s=10,
                **options) as client, pytest.raises(Unavailable):
        client.get(str(uuid.uuid4()))


def test_mutual_tls_needs_both_halves(pki: Pki) -> None:
    with pytest.raises(ValueError, match="cert_file and key_file"):
        Client("127.0.0.1:1", ca_file=pki.ca, cert_file=Path(pki.client_cert))
