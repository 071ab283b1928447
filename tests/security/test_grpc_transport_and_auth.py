"""The gRPC server factory's TLS, mutual TLS and API-key/role enforcement, on a real server."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from switchyard import Settings
from switchyard._auth import Role, principal_var
from switchyard._grpc import create_channel, start_server
from switchyard.stack import free_port
from switchyard.v1 import (
    DecideRequest,
    DecideResponse,
    Decision,
    DecisionServiceServicer,
    DecisionServiceStub,
    add_DecisionServiceServicer_to_server,
)
from tests.security.certs import make_pki

METHOD = "/switchyard.v1.DecisionService/Decide"
KEYS = "sub-key:acme:submitter,rev-key:acme:reviewer,admin-key:*:admin"


class EchoPrincipal(DecisionServiceServicer):
    """Answers with the principal the auth interceptor established."""

    async def Decide(self, request: DecideRequest,
                     context: grpc.aio.ServicerContext) -> DecideResponse:
        principal = principal_var.get()
        return DecideResponse(decision=Decision(tenant_id=principal.tenant_id,
                                                reviewer_id=principal.role.value))


async def serve(settings: Settings) -> tuple[object, int]:
    port = free_port()
    server = await start_server(
        settings, "test", port,
        [(add_DecisionServiceServicer_to_server, EchoPrincipal(),
          "switchyard.v1.DecisionService")],
        {METHOD: frozenset({Role.SUBMITTER})})
    return server, port


async def test_api_keys_and_roles() -> None:
    server, port = await serve(Settings(api_keys=KEYS))
    try:
        async def call(key: str | None) -> DecideResponse:
            channel = create_channel(f"127.0.0.1:{port}", api_key=key)
            try:
                return await DecisionServiceStub(channel).Decide(DecideRequest())
            finally:
                await channel.close()

        for key, code in ((None, grpc.StatusCode.UNAUTHENTICATED),
                          ("wrong-key", grpc.StatusCode.UNAUTHENTICATED),
                          ("rev-key", grpc.StatusCode.PERMISSION_DENIED)):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call(key)
            assert caught.value.code() == code
        ok = await call("sub-key")
        assert (ok.decision.tenant_id, ok.decision.reviewer_id) == ("acme", "submitter")
        assert (await call("admin-key")).decision.reviewer_id == "admin"
    finally:
        await server.stop(0)  # type: ignore[attr-defined]


async def test_tls_and_mutual_tls(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    tls = Settings(tls_cert_file=str(pki.server_cert), tls_key_file=str(pki.server_key))
    server, port = await serve(tls)
    try:
        channel = create_channel(f"127.0.0.1:{port}", ca_file=str(pki.ca),
                                 server_name="localhost")
        assert (await DecisionServiceStub(channel).Decide(DecideRequest())).decision.tenant_id
        await channel.close()
        plaintext = create_channel(f"127.0.0.1:{port}")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await DecisionServiceStub(plaintext).Decide(DecideRequest(), timeout=5)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        await plaintext.close()
    finally:
        await server.stop(0)  # type: ignore[attr-defined]

    mtls = tls.replace(tls_client_ca_file=str(pki.ca))
    server, port = await serve(mtls)
    try:
        without_cert = create_channel(f"127.0.0.1:{port}", ca_file=str(pki.ca),
                                      server_name="localhost")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await DecisionServiceStub(without_cert).Decide(DecideRequest(), timeout=5)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        await without_cert.close()
        with_cert = create_channel(f"127.0.0.1:{port}", ca_file=str(pki.ca),
                                   cert_file=str(pki.client_cert),
                                   key_file=str(pki.client_key), server_name="localhost")
        assert (await DecisionServiceStub(with_cert).Decide(DecideRequest())).decision.tenant_id
        await with_cert.close()
    finally:
        await server.stop(0)  # type: ignore[attr-defined]


async def test_per_tenant_rate_limit_answers_with_retry_info() -> None:
    from google.rpc import error_details_pb2

    from switchyard._grpc import parse_status_details

    settings = Settings(api_keys=KEYS, tenant_rate_limit="1/3",
                        tenant_rate_limit_overrides="acme:0.5/2")
    port = free_port()
    server = await start_server(
        settings, "test", port,
        [(add_DecisionServiceServicer_to_server, EchoPrincipal(),
          "switchyard.v1.DecisionService")],
        {METHOD: frozenset({Role.SUBMITTER})}, rate_limited=frozenset({METHOD}))
    channel = create_channel(f"127.0.0.1:{port}", api_key="sub-key")
    try:
        stub = DecisionServiceStub(channel)
        await stub.Decide(DecideRequest())
        await stub.Decide(DecideRequest())
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Decide(DecideRequest())
        error = caught.value
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "tenant 'acme'" in (error.details() or "")
        status = parse_status_details(error)
        assert status is not None
        retry = error_details_pb2.RetryInfo()
        assert status.details[0].Unpack(retry)
        assert 0 < retry.retry_delay.ToTimedelta().total_seconds() <= 2
        assert dict(error.trailing_metadata())["retry-after-ms"].isdigit()
    finally:
        await channel.close()
        await server.stop(0)
