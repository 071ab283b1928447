"""gRPC server and client factories: every cross-cutting concern is put in place here, once.

A Switchyard server always has: the standard health service, server reflection, OpenTelemetry
tracing (its server span when an exporter is configured; the caller's trace id carried in any
case), API-key auth with a per-RPC role policy, Prometheus metrics, and structured errors
(``google.rpc.Status`` details such as ``BadRequest`` field violations). Handlers contain
only their domain logic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry import propagate, trace

from switchyard._auth import ApiKeyAuthenticator, MethodPolicy, Role, principal_var
from switchyard._ratelimit import RATE_LIMITED, TenantLimiter
from switchyard._settings import Settings
from switchyard._transient import TRANSIENT_ERRORS
from switchyard._telemetry import GRPC_REQUESTS, GRPC_SECONDS, spans_recorded
from switchyard.v1 import FieldViolation as ItemFieldViolation
from switchyard.v1 import ItemError

_EXEMPT_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")
_tracer = trace.get_tracer("switchyard.grpc")
STATUS_DETAILS_KEY = "grpc-status-details-bin"


# -- structured errors -------------------------------------------------------------------

class FieldViolation(Exception):
    """Raised by domain code for bad input; collected into an INVALID_ARGUMENT BadRequest."""

    def __init__(self, field: str, description: str) -> None:
        super().__init__(f"{field}: {description}")
        self.field = field
        self.description = description


def status_details(code: grpc.StatusCode, message: str, *details: Any) -> tuple[tuple[str, bytes]]:
    """Trailing metadata carrying a ``google.rpc.Status`` with the given detail messages."""
    status = status_pb2.Status(code=code.value[0], message=message)
    for detail in details:
        packed = any_pb2.Any()
        packed.Pack(detail)
        status.details.append(packed)
    return ((STATUS_DETAILS_KEY, status.SerializeToString()),)


def bad_request(violations: Iterable[FieldViolation]) -> error_details_pb2.BadRequest:
    return error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
            for v in violations
        ]
    )


#: Room for the rest of a submission (and of a batch) around the largest document.
ENVELOPE_ALLOWANCE_BYTES = 64 * 1024


def max_receive_bytes(settings: Any) -> int:
    """The largest message a server accepts: ``grpc_max_message_bytes``, raised to admit a
    document of ``document_max_bytes`` (so the limit a client meets is the documented one,
    with its specific error, not a transport error)."""
    return max(settings.grpc_max_message_bytes,
               settings.document_max_bytes + ENVELOPE_ALLOWANCE_BYTES)


async def abort_invalid(context: grpc.aio.ServicerContext,
                        violations: Sequence[FieldViolation]) -> None:
    message = "; ".join(str(v) for v in violations)
    await context.abort(
        grpc.StatusCode.INVALID_ARGUMENT, message,
        trailing_metadata=status_details(grpc.StatusCode.INVALID_ARGUMENT, message,
                                         bad_request(violations)),
    )


async def abort_unless_batch_size(context: grpc.aio.ServicerContext, field: str, count: int,
                                  limit: int) -> None:
    """A bulk call (SubmitTasks, DecideBatch) carries 1 to ``limit`` items in ``field``;
    otherwise the whole call is INVALID_ARGUMENT on that field."""
    if not 1 <= count <= limit:
        await abort_invalid(context, [FieldViolation(
            field, f"{count} item(s); a call carries 1 to {limit}")])


def item_error(code: grpc.StatusCode, message: str,
               violations: Sequence[FieldViolation] = ()) -> ItemError:
    """One refused item of a bulk call (SubmitTasks, DecideBatch): the status the single-item
    RPC would have answered, as a google.rpc.Code number with its text and field violations,
    so the rest of the call goes on."""
    return ItemError(code=code.value[0], message=message,
                     field_violations=[ItemFieldViolation(field=v.field, description=v.description)
                                       for v in violations])


def invalid_item(violations: Sequence[FieldViolation]) -> ItemError:
    """:func:`item_error` for an item that breaks the acceptance rules (INVALID_ARGUMENT)."""
    return item_error(grpc.StatusCode.INVALID_ARGUMENT, "; ".join(str(v) for v in violations),
                      violations)


async def request_tenant(requested: str, context: grpc.aio.ServicerContext, *,
                         allow_all: bool = False) -> str:
    """The tenant a request is about: the one it names, else the caller's own (an operator
    key, tenant ``*``, must name one). ``*`` (every tenant) is accepted only where
    ``allow_all`` and only from an operator. A malformed name is INVALID_ARGUMENT with the
    field; another tenant than the caller's is PERMISSION_DENIED. The one tenant check every
    servicer makes."""
    from switchyard._submissions import tenant_problems  # noqa: PLC0415 - it imports us

    principal = principal_var.get()
    tenant = requested.strip() or ("" if principal.tenant_id == "*" else principal.tenant_id)
    problems = [] if tenant == "*" else tenant_problems(tenant, "tenant_id")
    if problems:
        await abort_invalid(context, problems)
    if not principal.may_access(tenant):
        await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                            f"credentials do not allow tenant {tenant!r}")
    if tenant == "*" and not allow_all:
        await abort_invalid(context, [FieldViolation("tenant_id", "one tenant, not '*'")])
    return tenant


#: What a client is told to wait when a dependency (PostgreSQL, the broker) is restarting.
DEPENDENCY_RETRY_S = 1.0
#: Trailing metadata with the wait in milliseconds, beside the ``RetryInfo`` detail.
RETRY_AFTER_HEADER = "retry-after-ms"


async def abort_retry_later(context: grpc.aio.ServicerContext, code: grpc.StatusCode,
                            message: str, wait_s: float) -> None:
    """Refuse with ``code`` and when to retry: a ``google.rpc.RetryInfo`` detail and the
    ``retry-after-ms`` header (for clients that read no details)."""
    retry = error_details_pb2.RetryInfo()
    retry.retry_delay.FromNanoseconds(int(wait_s * 1e9))
    await context.abort(code, message, trailing_metadata=(
        *status_details(code, message, retry),
        (RETRY_AFTER_HEADER, str(max(1, math.ceil(wait_s * 1000)))),
    ))


def read_status_details(trailing: Any) -> status_pb2.Status | None:
    """The ``google.rpc.Status`` a server attached to a call's trailing metadata, if any."""
    for key, value in trailing or ():
        if key == STATUS_DETAILS_KEY:
            return status_pb2.Status.FromString(value)
    return None


def parse_status_details(error: grpc.aio.AioRpcError | grpc.RpcError) -> status_pb2.Status | None:
    """Client side: the ``google.rpc.Status`` a server attached, if any."""
    return read_status_details(error.trailing_metadata())  # type: ignore[union-attr]


def violations_of(status: status_pb2.Status | None) -> list[tuple[str, str]]:
    """Every ``(field, description)`` of the BadRequest details in ``status``, in order (two
    may name the same field)."""
    out: list[tuple[str, str]] = []
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            request = error_details_pb2.BadRequest()
            detail.Unpack(request)
            out += [(v.field, v.description) for v in request.field_violations]
    return out


def field_violations(error: grpc.RpcError) -> dict[str, str]:
    """Client side: ``{field: description}`` from a BadRequest detail."""
    return dict(violations_of(parse_status_details(error)))


def precondition_types(error: grpc.RpcError) -> set[str]:
    """Client side: the ``type`` of each PreconditionFailure violation (``TASK_EXECUTING``),
    what a client branches on rather than the message's words."""
    status = parse_status_details(error)
    out: set[str] = set()
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.PreconditionFailure.DESCRIPTOR):
            failure = error_details_pb2.PreconditionFailure()
            detail.Unpack(failure)
            out.update(v.type for v in failure.violations)
    return out


def unsaid_violations(error: grpc.aio.AioRpcError) -> list[str]:
    """Client side: each violation as ``field: description`` that the error's message does
    not already say (the message often is the one violation), for a command to print."""
    message = error.details() or ""
    return [f"{field}: {why}" for field, why in field_violations(error).items()
            if f"{field}: {why}" not in message]


# -- interceptors ------------------------------------------------------------------------

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Undecodable:
    """A request whose bytes did not decode as its message type: the call answers
    INVALID_ARGUMENT once the caller is authenticated (grpc would answer UNKNOWN naming the
    parser's exception, to anyone, and log a traceback)."""

    type_name: str


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None
    message_type = getattr(deserializer, "__self__", None)
    descriptor = getattr(message_type, "DESCRIPTOR", None)
    type_name = descriptor.full_name if descriptor is not None else "request"

    def deserialize(raw: bytes) -> Any:
        try:
            return deserializer(raw)
        except Exception:  # DecodeError, or a nesting/recursion limit of the parser
            return _Undecodable(type_name)
    return deserialize


def _wrap(handler: grpc.RpcMethodHandler,
          around: Callable[[Callable[..., Any], bool], Callable[..., Any]]) -> grpc.RpcMethodHandler:
    """Rebuild a method handler with each behaviour wrapped by ``around(fn, streaming_response)``;
    a single request's bytes that do not decode reach it as :class:`_Undecodable`."""
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(
            around(handler.unary_unary, False), _tolerant(handler.request_deserializer),
            handler.response_serializer)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(
            around(handler.unary_stream, True), _tolerant(handler.request_deserializer),
            handler.response_serializer)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(
            around(handler.stream_unary, False), handler.request_deserializer,
            handler.response_serializer)
    return grpc.stream_stream_rpc_method_handler(
        around(handler.stream_stream, True), handler.request_deserializer,
        handler.response_serializer)


#: What a caller is told of a handler's unexpected exception (the log has the rest).
INTERNAL_ERROR = "internal error (logged)"
#: What the interceptor lets through untouched: an abort, a cancelled call.
_PASSED_ON = (grpc.aio.AbortError, asyncio.CancelledError, GeneratorExit)


class CallInterceptor(grpc.aio.ServerInterceptor):
    """Every cross-cutting step of a call, in one interceptor, in this order: the call
    counted and timed, the caller authenticated and held to the per-RPC role policy (least
    privilege), the caller's tenant charged for methods that create work, the handler run in
    the caller's trace (when no exporter is configured: see below), and a failure because a
    dependency is restarting (PostgreSQL or the broker: the stream middleware's
    ``TRANSIENT_ERRORS``) answered UNAVAILABLE with a retry hint, so clients retry with the
    same idempotency key instead of seeing UNKNOWN. A request whose bytes do not decode is
    answered INVALID_ARGUMENT (after authentication), and any other exception a handler
    raises INTERNAL, "internal error (logged)": its text (a database's message quoting the
    request, say) goes to the log, whose formatter withholds messages, never to the caller.

    One interceptor, not one per concern, and each method's wrapped handler built once and
    kept: grpc.aio awaits every interceptor of the chain on every call, and each one
    rebuilding the method handler cost more than the checks themselves.

    With ``SWITCHYARD_OTEL_EXPORTER=none`` nothing would read a span, so OpenTelemetry's
    server interceptor is not installed (:func:`start_server`); this one only continues the
    caller's ``traceparent`` (or starts a trace id) in a span that records nothing, so the
    call's log lines and the records it produces still carry one trace id. With an exporter,
    OpenTelemetry's interceptor runs first and records the server span.

    A tenant limit applies to ``rate_limited`` methods when ``limiter`` is enabled: an
    operator key (tenant '*') is charged for the tenants its request names, a bulk request
    one token per item; the buckets are shared by every replica (see ``_ratelimit``).
    """

    def __init__(self, service: str, authenticator: ApiKeyAuthenticator, policy: MethodPolicy,
                 limiter: TenantLimiter | None = None,
                 rate_limited: frozenset[str] = frozenset(),
                 continue_traces: bool = True) -> None:
        self._service = service
        self._auth = authenticator
        self._policy = policy
        self._limiter = limiter if limiter is not None and limiter.enabled else None
        self._rate_limited = rate_limited
        self._continue_traces = continue_traces
        self._handlers: dict[str, grpc.RpcMethodHandler | None] = {}

    async def intercept_service(self, continuation: Callable[..., Awaitable[Any]],
                                details: grpc.HandlerCallDetails) -> Any:
        method = details.method
        try:
            return self._handlers[method]
        except KeyError:
            pass
        handler = await continuation(details)
        if handler is not None and not method.startswith(_EXEMPT_PREFIXES):
            handler = _wrap(handler, lambda fn, streaming: self._around(method, fn, streaming))
        self._handlers[method] = handler
        return handler

    def _around(self, method: str, fn: Callable[..., Any], streaming: bool
                ) -> Callable[..., Any]:
        """The behaviour that runs ``fn`` with every step of the class docstring."""
        allowed = self._policy.get(method, frozenset({Role.ADMIN}))
        limiter = self._limiter if method in self._rate_limited else None
        timer = GRPC_SECONDS.labels(self._service, method)
        service = self._service

        def record(context: grpc.aio.ServicerContext, started: float) -> None:
            code = context.code() if hasattr(context, "code") else None
            name = code.name if isinstance(code, grpc.StatusCode) else "OK"
            GRPC_REQUESTS.labels(service, method, name).inc()
            timer.observe(time.perf_counter() - started)

        async def admit(request: Any, context: grpc.aio.ServicerContext) -> Any:
            """The caller, once authenticated, allowed and charged (aborts otherwise)."""
            pairs = [(k, v) for k, v in (context.invocation_metadata() or ())
                     if isinstance(v, str)]
            metadata = dict(pairs)
            principal = self._auth.authenticate(pairs)
            if principal is None:
                await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                    "missing or invalid API key (authorization: Bearer KEY)")
            elif principal.role not in allowed and principal.role is not Role.ADMIN:
                await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                    f"role {principal.role.value!r} may not call {method}")
            if isinstance(request, _Undecodable):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                    f"the request is not a valid {request.type_name}: its "
                                    "protobuf bytes do not decode")
            if limiter is not None:
                for tenant, cost in charges(principal.tenant_id, request).items():
                    await charge_or_abort(limiter, tenant, cost, context, "grpc")
            return principal, metadata

        def traced(metadata: dict[str, str]) -> Any:
            """The caller's trace as the current one (its span, which records nothing
            here); a new trace id when the caller sent none."""
            if not self._continue_traces:
                return contextlib.nullcontext()
            caller = trace.get_current_span(propagate.extract(metadata))
            if caller.get_span_context().is_valid:
                return trace.use_span(caller)
            return _tracer.start_as_current_span(method, kind=trace.SpanKind.SERVER)

        if streaming:
            async def stream_behaviour(request: Any, context: grpc.aio.ServicerContext) -> Any:
                started = time.perf_counter()
                try:
                    principal, metadata = await admit(request, context)
                    token = principal_var.set(principal)
                    try:
                        with traced(metadata):
                            async for item in fn(request, context):
                                yield item
                    finally:
                        principal_var.reset(token)
                except _PASSED_ON:
                    raise
                except Exception:
                    log.exception("%s failed", method)
                    await context.abort(grpc.StatusCode.INTERNAL, INTERNAL_ERROR)
                finally:
                    record(context, started)
            return stream_behaviour

        async def unary_behaviour(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            try:
                principal, metadata = await admit(request, context)
                token = principal_var.set(principal)
                try:
                    with traced(metadata):
                        return await fn(request, context)
                finally:
                    principal_var.reset(token)
            except _PASSED_ON:
                raise
            except TRANSIENT_ERRORS as exc:
                await abort_retry_later(context, grpc.StatusCode.UNAVAILABLE,
                                        f"a dependency is unavailable ({exc!r}); retry "
                                        "with the same request", DEPENDENCY_RETRY_S)
            except Exception:
                log.exception("%s failed", method)
                await context.abort(grpc.StatusCode.INTERNAL, INTERNAL_ERROR)
            finally:
                record(context, started)
        return unary_behaviour


async def charge_or_abort(limiter: TenantLimiter, tenant: str, cost: int,
                          context: grpc.aio.ServicerContext, entry: str) -> None:
    """Charge ``tenant`` ``cost`` tokens, or abort with RESOURCE_EXHAUSTED and when to retry
    (UNAVAILABLE when the buckets cannot be read). ``entry`` labels the refusal metric."""
    try:
        wait_s = await limiter.check(tenant, cost)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        await context.abort(grpc.StatusCode.UNAVAILABLE,
                            f"rate-limit buckets unavailable: {exc}")
    if wait_s > 0:
        RATE_LIMITED.labels(entry).inc()
        await abort_retry_later(
            context, grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"tenant {tenant!r} is over its submission rate; retry in {wait_s:.2f}s", wait_s)


def charges(caller_tenant: str, request: Any) -> dict[str, int]:
    """Tokens a work-creating request costs, by tenant: one per item (a submission, a
    task, a verdict, each of a bulk call's submissions or tasks); a caller bound to a tenant
    pays for all of it, an operator key ('*') per tenant its items name ('*' for items
    naming none)."""
    items = list(getattr(request, "submissions", ())) or list(getattr(request, "tasks", ()))
    fields = request.DESCRIPTOR.fields_by_name
    for name in ("submission", "task", "verdict"):
        if not items and name in fields and request.HasField(name):
            items = [getattr(request, name)]
    if caller_tenant != "*":
        return {caller_tenant: max(1, len(items))}
    out: dict[str, int] = {}
    for item in items or [None]:
        tenant = getattr(item, "tenant_id", "").strip() or "*"
        out[tenant] = out.get(tenant, 0) + 1
    return out


# -- factories ---------------------------------------------------------------------------

Registration = tuple[Callable[[Any, grpc.aio.Server], None], Any, str]
"""(add_XServicer_to_server, servicer instance, full service name)."""


#: The grpc.health.v1 service name liveness probes ask. Readiness (the overall status, ``""``)
#: also needs the service's dependencies (PostgreSQL); liveness only that no supervised loop
#: is down: a process whose database is away is not restarted, since that would not help.
LIVENESS = "liveness"


class GrpcServer:
    """A started aio server plus its health servicer, so callers can flip serving status."""

    def __init__(self, server: grpc.aio.Server, health_servicer: health.aio.HealthServicer,
                 services: list[str], address: str,
                 interceptors: Sequence[grpc.aio.ServerInterceptor] = ()) -> None:
        self.server = server
        self.interceptors = tuple(interceptors)
        self.health = health_servicer
        self.services = services
        self.address = address

    async def set_serving(self, serving: bool, *, live: bool | None = None) -> None:
        """Readiness (the overall status ``""`` and each service's) is ``serving``;
        :data:`LIVENESS` is ``live``, the same as ``serving`` when not given."""
        for names, up in ((["", *self.services], serving),
                          ([LIVENESS], serving if live is None else live)):
            status = (health_pb2.HealthCheckResponse.SERVING if up
                      else health_pb2.HealthCheckResponse.NOT_SERVING)
            for name in names:
                await self.health.set(name, status)

    async def stop(self, grace_s: float = 5.0) -> None:
        await self.set_serving(False)
        await self.server.stop(grace_s)


async def start_server(settings: Settings, service: str, port: int,
                       registrations: Sequence[Registration],
                       policy: MethodPolicy,
                       rate_limited: frozenset[str] = frozenset(),
                       limiter: TenantLimiter | None = None) -> GrpcServer:
    """Build, bind (``bind_host:port``) and start a server with :class:`CallInterceptor`
    (the tenant limit on ``rate_limited`` methods, through ``limiter``: both are needed for a
    limit to apply), behind OpenTelemetry's server interceptor when an exporter is configured
    (it records the server span: tracing sees everything, refusals included).
    """
    tracing = settings.otel_exporter != "none"
    interceptors: list[grpc.aio.ServerInterceptor] = []
    if tracing:  # imported only then: OpenTelemetry's instrumentation loads pkg_resources
        from opentelemetry.instrumentation.grpc import aio_server_interceptor

        interceptors.append(aio_server_interceptor())
    interceptors.append(CallInterceptor(service, ApiKeyAuthenticator(settings.api_keys), policy,
                                        limiter, rate_limited, continue_traces=not tracing))
    server = grpc.aio.server(
        interceptors=interceptors,
        options=[
            ("grpc.max_receive_message_length", max_receive_bytes(settings)),
            ("grpc.so_reuseport", 0),
        ],
    )
    names = []
    for add, servicer, full_name in registrations:
        add(servicer, server)
        names.append(full_name)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server
    )
    address = f"{settings.bind_host}:{port}"
    credentials = server_credentials(settings)
    bound = (server.add_secure_port(address, credentials) if credentials
             else server.add_insecure_port(address))
    if bound == 0:
        raise RuntimeError(f"{service}: cannot bind gRPC port {address}")
    await server.start()
    grpc_server = GrpcServer(server, health_servicer, names, address, interceptors)
    await grpc_server.set_serving(True)
    return grpc_server


T = TypeVar("T")


@dataclass(frozen=True)
class ServerTls:
    """The TLS files every Switchyard server presents, read from settings in this one place
    (the gRPC servers' credentials and the review console's HTTPS context both come from it).

    ``client_ca_file`` set means mutual TLS: a client without a certificate from that CA is
    refused during the handshake.
    """

    cert_file: str
    key_file: str
    client_ca_file: str = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> ServerTls | None:
        """None when ``SWITCHYARD_TLS_CERT_FILE`` is empty (plaintext)."""
        if not settings.tls_cert_file:
            if settings.tls_client_ca_file:
                raise ValueError("SWITCHYARD_TLS_CLIENT_CA_FILE is set but "
                                 "SWITCHYARD_TLS_CERT_FILE is not (mutual TLS needs TLS)")
            return None
        if not settings.tls_key_file:
            raise ValueError("SWITCHYARD_TLS_CERT_FILE is set but SWITCHYARD_TLS_KEY_FILE "
                             "is not")
        return cls(settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file)

    def files_stamp(self) -> tuple[tuple[int, int], ...]:
        """When and how large each file is now (a Kubernetes Secret volume swaps them in
        place when cert-manager renews the certificate); (0, 0) for one that is missing."""
        stamps = []
        for name in filter(None, (self.cert_file, self.key_file, self.client_ca_file)):
            try:
                info = Path(name).stat()
            except OSError:
                stamps.append((0, 0))
            else:
                stamps.append((info.st_mtime_ns, info.st_size))
        return tuple(stamps)

    def _grpc_config(self) -> Any:
        chain = Path(self.cert_file).read_bytes()
        key = Path(self.key_file).read_bytes()
        client_ca = Path(self.client_ca_file).read_bytes() if self.client_ca_file else None
        return grpc.ssl_server_certificate_configuration([(key, chain)],
                                                         root_certificates=client_ca)

    def _when_renewed(self, load: Callable[[], T]) -> Callable[[], T | None]:
        """A check for renewal (cert-manager rewrites the files in place): what ``load``
        gives when the files changed since the last load, else None. A change caught
        half-written (``load`` fails) gives None too, and is tried again next time."""
        seen = [self.files_stamp()]

        def renewed() -> T | None:
            stamp = self.files_stamp()
            if stamp == seen[0]:
                return None
            try:
                loaded = load()
            except (OSError, ValueError, RuntimeError):   # ssl.SSLError is an OSError
                return None
            seen[0] = stamp
            return loaded

        return renewed

    def grpc_credentials(self) -> grpc.ServerCredentials:
        """The files as they are now, read again whenever they change: gRPC asks at each
        new connection's handshake, so a renewed certificate (or client CA) is served
        without a restart."""
        return grpc.dynamic_ssl_server_credentials(
            self._grpc_config(), self._when_renewed(self._grpc_config),
            require_client_authentication=bool(self.client_ca_file))

    def _context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert_file, self.key_file)
        if self.client_ca_file:
            context.load_verify_locations(cafile=self.client_ca_file)
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    def ssl_context(self) -> ssl.SSLContext:
        """The same certificate, key and client CA for an HTTPS server (TLS 1.2 or later),
        read again when the files change: each handshake's hello checks, and a renewed
        certificate goes to that connection and every later one."""
        fresh = self._when_renewed(self._context)
        current: list[ssl.SSLContext] = []

        def hello(connection: ssl.SSLObject, _name: str | None,
                  _context: ssl.SSLContext) -> None:
            if (renewed := fresh()) is not None:
                renewed.sni_callback = hello
                current[:] = [renewed]
            if current:
                connection.context = current[0]
            return None

        context = self._context()
        context.sni_callback = hello
        return context


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS from settings; mutual TLS (client certificate required) when a client CA is set."""
    tls = ServerTls.from_settings(settings)
    return tls.grpc_credentials() if tls else None


def server_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The HTTPS counterpart of :func:`server_credentials` (same files, same mutual TLS)."""
    tls = ServerTls.from_settings(settings)
    return tls.ssl_context() if tls else None


@dataclass(frozen=True)
class ClientTls:
    """How a client reaches TLS servers: the CA that signed their certificates, and for
    mutual TLS a client certificate and key. Command-line clients and the embedded stack's
    health checks take it from the ``SWITCHYARD_CLIENT_TLS_*`` settings."""

    ca_file: str
    cert_file: str = ""
    key_file: str = ""
    server_name: str = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> ClientTls | None:
        """None when ``SWITCHYARD_CLIENT_TLS_CA_FILE`` is empty (plaintext)."""
        if not settings.client_tls_ca_file:
            if settings.client_tls_cert_file or settings.client_tls_key_file:
                raise ValueError("SWITCHYARD_CLIENT_TLS_CERT_FILE/_KEY_FILE need "
                                 "SWITCHYARD_CLIENT_TLS_CA_FILE (the CA of the servers)")
            return None
        if bool(settings.client_tls_cert_file) != bool(settings.client_tls_key_file):
            raise ValueError("SWITCHYARD_CLIENT_TLS_CERT_FILE and SWITCHYARD_CLIENT_TLS_KEY_FILE "
                             "go together (mutual TLS)")
        return cls(settings.client_tls_ca_file, settings.client_tls_cert_file,
                   settings.client_tls_key_file, settings.client_tls_server_name)

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=Path(self.ca_file).read_bytes(),
            private_key=Path(self.key_file).read_bytes() if self.key_file else None,
            certificate_chain=Path(self.cert_file).read_bytes() if self.cert_file else None,
        )

    def options(self) -> list[tuple[str, str]]:
        return [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


#: A client takes answers of any size from its own servers (gRPC's default stops at 4 MiB):
#: a dead letter keeps an intake record whole, up to the intake's limit (a 20 MiB document
#: base64-encoded), and GetDeadLetter, the CLI and the REST gateway must be able to show it.
#: What a server accepts stays bounded (:func:`max_receive_bytes`).
CLIENT_OPTIONS = (("grpc.max_receive_message_length", -1),)


def create_channel(target: str, api_key: str | None = None, *, ca_file: str = "",
                   cert_file: str = "", key_file: str = "",
                   server_name: str = "") -> grpc.aio.Channel:
    """A client channel that carries the caller's trace, the API key on every call when
    given, and TLS when a CA is given (plus a client certificate for mutual TLS).

    In a process that records spans (:func:`spans_recorded`) OpenTelemetry's interceptors
    record a client span per call and send its context; otherwise the call's metadata carries
    the current trace context as they would (the trace id is the caller's either way), and
    OpenTelemetry's instrumentation is not loaded at all (it imports pkg_resources: a tenth
    of a second of every command-line call and service start)."""
    recording = spans_recorded()
    # One object per call type: grpc.aio files a multi-type interceptor under one type only.
    interceptors: list[Any] = [_CallMetadataUnary(api_key, not recording),
                               _CallMetadataStream(api_key, not recording)]
    if recording:
        from opentelemetry.instrumentation.grpc import aio_client_interceptors

        interceptors += aio_client_interceptors()
    if not ca_file:
        return grpc.aio.insecure_channel(target, options=CLIENT_OPTIONS,
                                         interceptors=interceptors)
    tls = ClientTls(ca_file, cert_file, key_file, server_name)
    return grpc.aio.secure_channel(target, tls.credentials(),
                                   options=[*CLIENT_OPTIONS, *tls.options()],
                                   interceptors=interceptors)


def client_channel(settings: Settings, target: str) -> grpc.aio.Channel:
    """The channel every command-line client opens: ``SWITCHYARD_CLIENT_API_KEY`` on each
    call and TLS/mutual TLS from ``SWITCHYARD_CLIENT_TLS_*`` (plaintext when the CA is empty)."""
    tls = ClientTls.from_settings(settings)
    return create_channel(target, settings.client_api_key or None,
                          **(tls.as_dict() if tls else {}))


class _CallMetadata:
    """Adds the API key (when there is one) and, with ``trace_context`` (the channel has no
    OpenTelemetry interceptor to do it), the current trace context (``traceparent``) to each
    call."""

    def __init__(self, api_key: str | None, trace_context: bool) -> None:
        self._key = (("authorization", f"Bearer {api_key}"),) if api_key else ()
        self._trace_context = trace_context

    def _with_metadata(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        carrier: dict[str, str] = {}
        if self._trace_context:
            propagate.inject(carrier)
        if not carrier and not self._key:
            return details
        metadata = grpc.aio.Metadata(*(details.metadata or ()), *self._key, *carrier.items())
        return details._replace(metadata=metadata)  # type: ignore[attr-defined]


class _CallMetadataUnary(_CallMetadata, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._with_metadata(details), request)


class _CallMetadataStream(_CallMetadata, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._with_metadata(details), request)

