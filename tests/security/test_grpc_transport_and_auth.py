"""The gRPC server factory's TLS, mutual TLS and API-key/role enforcement, on a real server."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import asyncpg
import grpc
import pytest
from google.rpc import error_details_pb2
from opentelemetry import trace

from switchyard import Settings
from switchyard.access import ApiKeyAuthenticator, Role, principal_var
from switchyard.rpc import (
    RETRY_AFTER_HEADER,
    CallInterceptor,
    create_channel,
    parse_status_details,
    start_server,
)
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
        # two credentials in one call: refused, whichever would have counted
        channel = create_channel(f"127.0.0.1:{port}", api_key="sub-key")
        try:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await DecisionServiceStub(channel).Decide(
                    DecideRequest(), metadata=(("authorization", "Bearer admin-key"),))
        finally:
            await channel.close()
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        channel = create_channel(f"127.0.0.1:{port}", api_key="sub-key")
        try:   # the same key twice (the channel's and the call's) is one credential
            again = await DecisionServiceStub(channel).Decide(
                DecideRequest(), metadata=(("authorization", "Bearer sub-key"),))
        finally:
            await channel.close()
        assert again.decision.tenant_id == "acme"
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


class DatabaseRestarting(DecisionServiceServicer):
    """A handler whose PostgreSQL is restarting, as during a database failover."""

    async def Decide(self, request: DecideRequest,
                     context: grpc.aio.ServicerContext) -> DecideResponse:
        raise asyncpg.exceptions.CannotConnectNowError("the database system is starting up")


async def test_a_restarting_dependency_answers_unavailable_with_a_retry_hint() -> None:
    """Clients retry UNAVAILABLE with the same idempotency key; UNKNOWN says nothing."""
    port = free_port()
    server = await start_server(
        Settings(), "test", port,
        [(add_DecisionServiceServicer_to_server, DatabaseRestarting(),
          "switchyard.v1.DecisionService")], {})
    channel = create_channel(f"127.0.0.1:{port}")
    try:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await DecisionServiceStub(channel).Decide(DecideRequest())
    finally:
        await channel.close()
        await server.stop(0)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "starting up" in refused.value.details()
    trailing = dict(refused.value.trailing_metadata() or ())
    assert trailing[RETRY_AFTER_HEADER] == "1000"
    details = parse_status_details(refused.value)
    assert details is not None and any(
        d.Is(error_details_pb2.RetryInfo.DESCRIPTOR) for d in details.details)


class Failing(DecisionServiceServicer):
    """A handler that fails the way a bug does, with a message quoting the request."""

    async def Decide(self, request: DecideRequest,
                     context: grpc.aio.ServicerContext) -> DecideResponse:
        raise ValueError(f"invalid byte sequence near {request.task.idempotency_key!r}")


async def test_undecodable_requests_and_handler_failures_say_nothing_of_their_insides(
        caplog: pytest.LogCaptureFixture) -> None:
    """Bytes that are no request: UNAUTHENTICATED without a key, INVALID_ARGUMENT naming the
    message type with one; a handler's exception: INTERNAL, its text only in the log."""
    port = free_port()
    server = await start_server(
        Settings(api_keys=KEYS), "test", port,
        [(add_DecisionServiceServicer_to_server, Failing(), "switchyard.v1.DecisionService")],
        {METHOD: frozenset({Role.SUBMITTER})})
    try:
        for key, code in ((None, grpc.StatusCode.UNAUTHENTICATED),
                          ("sub-key", grpc.StatusCode.INVALID_ARGUMENT)):
            channel = create_channel(f"127.0.0.1:{port}", api_key=key)
            raw = channel.unary_unary(METHOD, request_serializer=lambda b: b,
                                      response_deserializer=lambda b: b)
            try:
                for garbage in (b"\xff\xff\xff\xff", b"\x0a\xff\xff\xff\xff\x0f",
                                b"\x0a\x05" * 200):
                    with pytest.raises(grpc.aio.AioRpcError) as caught:
                        await raw(garbage)
                    assert caught.value.code() == code, garbage
                    if key:
                        assert caught.value.details() == ("the request is not a valid "
                                                          "switchyard.v1.DecideRequest: its "
                                                          "protobuf bytes do not decode")
            finally:
                await channel.close()
        channel = create_channel(f"127.0.0.1:{port}", api_key="sub-key")
        try:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await DecisionServiceStub(channel).Decide(DecideRequest())
        finally:
            await channel.close()
        assert caught.value.code() == grpc.StatusCode.INTERNAL
        assert caught.value.details() == "internal error (logged)"
        assert any("Decide failed" in r.getMessage() and r.exc_info for r in caplog.records)
    finally:
        await server.stop(0)  # type: ignore[attr-defined]


class EchoTrace(DecisionServiceServicer):
    """Answers with the trace id its handler runs in."""

    async def Decide(self, request: DecideRequest,
                     context: grpc.aio.ServicerContext) -> DecideResponse:
        trace_id = trace.get_current_span().get_span_context().trace_id
        return DecideResponse(decision=Decision(rule=format(trace_id, "032x")))


async def test_without_an_exporter_the_callers_trace_is_carried_by_one_interceptor() -> None:
    """With no exporter no OpenTelemetry interceptor runs; the one interceptor still
    continues the caller's ``traceparent``, and builds each method's handler once."""
    settings = Settings(otel_exporter="none")
    port = free_port()
    server = await start_server(
        settings, "test", port,
        [(add_DecisionServiceServicer_to_server, EchoTrace(), "switchyard.v1.DecisionService")],
        {METHOD: frozenset({Role.SUBMITTER})})
    assert [type(i) for i in server.interceptors] == [CallInterceptor]
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        decide = channel.unary_unary(METHOD, DecideRequest.SerializeToString,
                                     DecideResponse.FromString)
        trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
        for _ in range(2):
            reply = await decide(DecideRequest(), metadata=(
                ("traceparent", f"00-{trace_id}-00f067aa0ba902b7-00"),))
            assert reply.decision.rule == trace_id
    finally:
        await channel.close()
        await server.stop(0)


async def test_without_an_exporter_a_client_channel_sends_the_current_trace() -> None:
    """A service's outgoing call carries the trace it works in (the task's, from its Kafka
    record) as OpenTelemetry's interceptor would, without that interceptor or its
    instrumentation package loaded; and the API key."""
    import subprocess
    import sys

    script = """
import asyncio, sys
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from switchyard import Settings
from switchyard.rpc import create_channel, start_server
from switchyard.access import Role
from switchyard.telemetry import configure_tracing
from switchyard.v1 import (DecideRequest, DecisionServiceStub,
                           add_DecisionServiceServicer_to_server)
from tests.security.test_grpc_transport_and_auth import EchoTrace, METHOD

async def main():
    settings = Settings(otel_exporter="none", api_keys="k1:acme:submitter")
    configure_tracing(settings, "test")
    server = await start_server(settings, "test", PORT,
        [(add_DecisionServiceServicer_to_server, EchoTrace(), "switchyard.v1.DecisionService")],
        {METHOD: frozenset({Role.SUBMITTER})})
    channel = create_channel("127.0.0.1:PORT", "k1")
    caller = SpanContext(trace_id=0x4bf92f3577b34da6a3ce929d0e0e4736, span_id=0x99,
                         is_remote=False, trace_flags=TraceFlags(0))
    with trace.use_span(NonRecordingSpan(caller)):
        reply = await DecisionServiceStub(channel).Decide(DecideRequest())
    await channel.close()
    await server.stop(0)
    print(reply.decision.rule)
    print("instrumentation loaded" if "opentelemetry.instrumentation.grpc" in sys.modules
          else "instrumentation not loaded")

asyncio.run(main())
""".replace("PORT", str(free_port()))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["4bf92f3577b34da6a3ce929d0e0e4736",
                                           "instrumentation not loaded"], done.stdout


async def test_the_interceptor_builds_each_methods_handler_once() -> None:
    interceptor = CallInterceptor("test", ApiKeyAuthenticator(""), {})
    looked_up: list[str] = []

    async def continuation(details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        looked_up.append(details.method)
        return grpc.unary_unary_rpc_method_handler(lambda request, context: request)

    details = SimpleNamespace(method=METHOD, invocation_metadata=())
    first = await interceptor.intercept_service(continuation, details)
    assert await interceptor.intercept_service(continuation, details) is first
    assert looked_up == [METHOD]
