"""The operator console's JSON API, served by the review console's server under
``/api/operator/`` (the page is ``/operator``).

Operators (admins, and auditors read-only) search tasks, read a task's timeline, retry and
re-drive tasks, list and replay dead letters, see and reset circuit breakers, and watch KPI,
drift and shadow-agreement charts. Every view except the KPIs calls the RPC of the service
that owns the data (IngestService, DeadLetterService, DecisionService, ExecutorAdminService)
with the caller's own ``Authorization`` header forwarded as gRPC metadata, so those services
enforce roles and tenancy exactly as for any other client; their refusals come back as the
REST gateway's problem documents (:func:`switchyard._http.problem_from_rpc`). The console
never reads another service's tables.

The KPI charts are the exception: like ``switchyard stats`` they read PostgreSQL directly
(:func:`switchyard._kpis.kpi_trend`), so the tenant check for them is made here.

The classroom analytics page's routes (``/api/analytics/``, :mod:`services.review.analytics`)
are registered here too, over decision's AnalyticsService with the same guard.

Before any of that, a key must belong to an admin or an auditor (a reviewer or submitter is
refused with HTTP 403 here, whatever the RPC would say).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, timedelta
from typing import Any

import asyncpg
import grpc
from aiohttp import web
from google.protobuf import json_format
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from services.review.analytics import AnalyticsApi, RequestProblem
from switchyard import Settings
from switchyard.access import ApiKeyAuthenticator, Principal, Role
from switchyard.rpc import (
    ClientTls,
    NotAscii,
    create_channel,
    forwarded_metadata,
    problem,
    problem_from_rpc,
    request_json,
)
from switchyard.telemetry import kpi_trend, point_dict
from switchyard.v1 import (
    AnalyticsServiceStub,
    BreakerState,
    BreakerStatus,
    DeadLetterRecord,
    DeadLetterServiceStub,
    DeadLetterState,
    DecisionServiceStub,
    ExecutorAdminServiceStub,
    GetDeadLetterRequest,
    GetModelHealthRequest,
    GetModelHealthResponse,
    GetTaskTimelineRequest,
    GetTaskTimelineResponse,
    IngestServiceStub,
    ListBreakersRequest,
    ListDeadLettersRequest,
    ListTasksRequest,
    RedriveTaskRequest,
    ReplayDeadLetterRequest,
    ResolveDeadLetterRequest,
    ResetBreakerRequest,
    RetryTaskRequest,
    Task,
    TaskStage,
    TaskStatus,
    TimelineSource,
)

__all__ = [
    "OPERATOR_ROLES",
    "OperatorApi",
    "RequestError",
    "breaker_json",
    "dead_letter_json",
    "model_health_json",
    "search_request",
    "service_address",
    "task_json",
    "timeline_json",
    "window_of",
]

log = logging.getLogger(__name__)
#: Who may open the operator console; only admins act (the RPCs refuse auditors anyway).
OPERATOR_ROLES = frozenset({Role.ADMIN, Role.AUDITOR})
#: How long the console waits for another service's answer.
RPC_TIMEOUT_S = 10.0
#: Defaults of the charts: the last 24 hours in hourly buckets.
DEFAULT_WINDOW_H = 24.0
DEFAULT_BUCKET_M = 60.0
MAX_PAGE_SIZE = 500


class RequestError(Exception):
    """The HTTP request itself is malformed (HTTP 400); carries the offending fields."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{f}: {d}" for f, d in errors))
        self.errors = errors


def service_address(settings: Settings, service: str) -> str:
    """Where the review process reaches ``service`` (ingest, decision, executor): its
    ``<service>_address`` setting, or this host's ``<service>_grpc_port`` when empty."""
    address = getattr(settings, f"{service}_address")
    return address or f"127.0.0.1:{getattr(settings, f'{service}_grpc_port')}"


# -- requests --------------------------------------------------------------------------------

def _names(raw: str) -> list[str]:
    return [v.strip() for v in raw.split(",") if v.strip()]


def _page_size(query: Mapping[str, str], errors: list[tuple[str, str]]) -> int:
    raw = query.get("page_size", "").strip()
    if not raw:
        return 0
    if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= MAX_PAGE_SIZE):
        errors.append(("page_size", f"a whole number from 1 to {MAX_PAGE_SIZE}"))
        return 0
    return int(raw)


def search_request(query: Mapping[str, str], principal: Principal) -> ListTasksRequest:
    """The ListTasks request of the console's search form: ``tenant`` (the caller's own when
    the key is bound to one), ``status`` and ``kind`` (comma-separated), ``metadata``
    (``key=value`` pairs, comma-separated, all must match), ``page_size``, ``page_token``."""
    errors: list[tuple[str, str]] = []
    tenant = query.get("tenant", "").strip()
    if not tenant and principal.tenant_id != "*":
        tenant = principal.tenant_id
    if not tenant:
        errors.append(("tenant", "required: the tenant whose tasks to search"))
    request = ListTasksRequest(tenant_id=tenant, page_token=query.get("page_token", ""))
    for name in _names(query.get("status", "")):
        try:
            request.statuses.append(TaskStatus.Value("TASK_STATUS_" + name.upper()))
        except ValueError:
            errors.append(("status", f"unknown status {name!r} (QUEUED, IN_PROGRESS, BLOCKED, "
                                     "SUCCEEDED, FAILED, CANCELLED)"))
    request.kinds.extend(_names(query.get("kind", "")))
    for pair in _names(query.get("metadata", "")):
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            errors.append(("metadata", f"{pair!r} is not key=value"))
            continue
        request.metadata[key.strip()] = value.strip()
    request.page_size = _page_size(query, errors)
    if errors:
        raise RequestError(errors)
    return request


def window_of(query: Mapping[str, str]) -> tuple[timedelta, timedelta]:
    """The charts' ``window_h`` (hours back from now) and ``bucket_m`` (minutes a bucket);
    the services and :func:`switchyard._kpis.trend_buckets` check their limits."""
    errors = []
    values = {}
    for name, default in (("window_h", DEFAULT_WINDOW_H), ("bucket_m", DEFAULT_BUCKET_M)):
        raw = query.get(name, "").strip()
        try:
            value = float(raw) if raw else default
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value <= 0:
            errors.append((name, "a positive number"))
        values[name] = value
    if errors:
        raise RequestError(errors)
    return timedelta(hours=values["window_h"]), timedelta(minutes=values["bucket_m"])


# -- JSON views --------------------------------------------------------------------------------

def _iso(ts: Timestamp) -> str | None:
    if ts.seconds == 0 and ts.nanos == 0:
        return None
    return ts.ToDatetime(UTC).isoformat().replace("+00:00", "Z")


def _short(enum: Any, value: int, prefix: str) -> str:
    try:
        return enum.Name(value).removeprefix(prefix)
    except ValueError:
        return str(value)


def task_json(task: Task) -> dict[str, Any]:
    """What the console lists of a task (never its document)."""
    env = task.envelope
    return {
        "task_id": env.task_id, "tenant_id": env.tenant_id, "kind": env.kind,
        "status": _short(TaskStatus, task.status, "TASK_STATUS_"),
        "stage": _short(TaskStage, task.stage, "TASK_STAGE_"), "reason": task.reason,
        "created_at": _iso(task.created_at), "updated_at": _iso(task.updated_at),
        "metadata": dict(env.metadata), "attempt": env.attempt,
    }


def timeline_json(response: GetTaskTimelineResponse) -> dict[str, Any]:
    entries = []
    for entry in response.entries:
        status_change = entry.source == TimelineSource.TIMELINE_SOURCE_STATUS
        entries.append({
            "occurred_at": _iso(entry.occurred_at),
            "source": _short(TimelineSource, entry.source, "TIMELINE_SOURCE_"),
            "action": entry.action, "actor": entry.actor,
            "status": _short(TaskStatus, entry.status, "TASK_STATUS_") if status_change
            else None,
            "stage": _short(TaskStage, entry.stage, "TASK_STAGE_") if status_change else None,
            "reason": entry.reason,
            "detail": json_format.MessageToDict(entry.detail),
            "entry_hash": entry.entry_hash,
            # ingest's one-line summary; the console shows it, with the detail on demand
            "summary": entry.summary,
        })
    return {"task": task_json(response.task), "entries": entries}


#: The ``state`` filter of the dead-letter list: DeadLetterState by its short name.
_LETTER_STATES = {name: DeadLetterState.Value(f"DEAD_LETTER_STATE_{name.upper()}")
                  for name in ("open", "replayed", "resolved")}


def dead_letter_json(record: DeadLetterRecord, full: bool = False) -> dict[str, Any]:
    letter = record.letter
    out: dict[str, Any] = {
        "dead_letter_id": letter.dead_letter_id, "tenant_id": record.tenant_id,
        "source_topic": letter.source_topic, "partition": letter.partition,
        "offset": letter.offset, "reason_code": letter.reason_code, "reason": letter.reason,
        "failed_at": _iso(letter.failed_at), "service": letter.service,
        "replayed_at": _iso(record.replayed_at), "replayed_by": record.replayed_by or None,
        "replay_count": record.replay_count, "purged": record.purged,
        "state": _short(DeadLetterState, record.state, "DEAD_LETTER_STATE_").lower(),
        "resolved_at": _iso(record.resolved_at), "resolved_by": record.resolved_by or None,
        "resolution": record.resolution or None,
    }
    if full:
        out.update(
            key=letter.original_key.decode("utf-8", errors="replace"),
            value=letter.original_value.decode("utf-8", errors="replace"),
            value_bytes=len(letter.original_value), headers=dict(letter.original_headers))
    return out


def breaker_json(breaker: BreakerState) -> dict[str, Any]:
    return {
        "name": breaker.name,
        "status": _short(BreakerStatus, breaker.status, "BREAKER_STATUS_"),
        "failure_count": breaker.failure_count, "opened_at": _iso(breaker.opened_at),
        "blocked_tasks": breaker.blocked_tasks, "probe_at": _iso(breaker.probe_at),
        "updated_by": breaker.updated_by,
    }


def model_health_json(response: GetModelHealthResponse) -> dict[str, Any]:
    return {
        "shadow": [{"model": p.model_name, "live_version": p.live_version,
                    "shadow_version": p.shadow_version, "start": _iso(p.bucket_start),
                    "compared": p.compared, "agreed": p.agreed,
                    "agreement": p.agreed / p.compared if p.compared else None}
                   for p in response.shadow],
        "drift": [{"model": p.model_name, "version": p.version, "feature": p.feature,
                   "start": _iso(p.bucket_start), "psi": p.psi, "samples": p.samples}
                  for p in response.drift],
        "human": [{"model": p.model_name, "version": p.version, "start": _iso(p.bucket_start),
                   "judged": p.judged, "agreed": p.agreed,
                   "agreement": p.agreed / p.judged if p.judged else None,
                   "mean_confidence": p.mean_confidence}
                  for p in response.human],
    }


def _duration(value: timedelta) -> Duration:
    out = Duration()
    out.FromTimedelta(value)
    return out


# -- routes ------------------------------------------------------------------------------------

Handler = Callable[[web.Request, Principal, tuple[tuple[str, str], ...]],
                   Awaitable[web.StreamResponse]]


class OperatorApi:
    """The routes and the gRPC channels to ingest, decision and the executor (TLS when the
    ``SWITCHYARD_CLIENT_TLS_*`` settings say so, as for every client)."""

    def __init__(self, settings: Settings, pool: asyncpg.Pool,
                 auth: ApiKeyAuthenticator) -> None:
        self.settings = settings
        self.pool = pool
        self.auth = auth
        tls = ClientTls.from_settings(settings)
        self._channels = {name: create_channel(service_address(settings, name), None,
                                               **(tls.as_dict() if tls else {}))
                          for name in ("ingest", "decision", "executor")}
        self.ingest = IngestServiceStub(self._channels["ingest"])
        self.dead_letters = DeadLetterServiceStub(self._channels["ingest"])
        self.decision = DecisionServiceStub(self._channels["decision"])
        self.executor = ExecutorAdminServiceStub(self._channels["executor"])
        # the classroom analytics page's routes: decision's AnalyticsService, same guard
        self.analytics = AnalyticsApi(AnalyticsServiceStub(self._channels["decision"]))

    def add_routes(self, app: web.Application) -> None:
        routes: list[tuple[str, str, Handler]] = [
            ("GET", "/api/operator/session", self.session),
            ("GET", "/api/operator/tasks", self.search),
            ("GET", "/api/operator/tasks/{task_id}/timeline", self.timeline),
            ("POST", "/api/operator/tasks/{task_id}/retry", self.retry),
            ("POST", "/api/operator/tasks/{task_id}/redrive", self.redrive),
            ("GET", "/api/operator/dead-letters", self.list_dead_letters),
            ("GET", "/api/operator/dead-letters/{dead_letter_id}", self.get_dead_letter),
            ("POST", "/api/operator/dead-letters/{dead_letter_id}/replay", self.replay),
            ("POST", "/api/operator/dead-letters/{dead_letter_id}/resolve", self.resolve),
            ("GET", "/api/operator/breakers", self.breakers),
            ("POST", "/api/operator/breakers/reset", self.reset_breaker),
            ("GET", "/api/operator/kpis", self.kpis),
            ("GET", "/api/operator/model-health", self.model_health),
        ]
        routes.extend(self.analytics.routes())
        for method, path, handler in routes:
            app.router.add_route(method, path, self._guarded(handler))

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()

    def _guarded(self, handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def guarded(request: web.Request) -> web.StreamResponse:
            try:
                metadata = forwarded_metadata(request)
            except NotAscii:
                return problem(401, "UNAUTHENTICATED", "invalid API key",
                               headers={"WWW-Authenticate": "Bearer"})
            principal = self.auth.authenticate(metadata)
            if principal is None:
                return problem(401, "UNAUTHENTICATED",
                               "missing or invalid API key (authorization: Bearer KEY)",
                               headers={"WWW-Authenticate": "Bearer"})
            if principal.role not in OPERATOR_ROLES:
                return problem(403, "PERMISSION_DENIED",
                               f"role {principal.role.value!r} may not use the operator "
                               "console (admins and auditors may)")
            try:
                return await handler(request, principal, metadata)
            except (RequestError, RequestProblem) as exc:
                return problem(400, "Bad Request", str(exc),
                               errors=[{"field": f, "detail": d} for f, d in exc.errors])
            except grpc.aio.AioRpcError as exc:
                return problem_from_rpc(exc)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                # the KPI charts' PostgreSQL is restarting or unreachable
                return problem(503, "UNAVAILABLE", f"PostgreSQL unavailable: {exc}",
                               headers={"Retry-After": "1"})
        return guarded

    # -- handlers ------------------------------------------------------------------------------
    async def session(self, request: web.Request, principal: Principal,
                      metadata: tuple[tuple[str, str], ...]) -> web.StreamResponse:
        return web.json_response({
            "tenant": principal.tenant_id, "role": principal.role.value,
            "key_id": principal.key_id, "auth": self.auth.enabled,
            # only admins act; auditors read (the RPCs refuse them anyway)
            "may_act": principal.role is Role.ADMIN,
        })

    async def search(self, request: web.Request, principal: Principal,
                     metadata: tuple[tuple[str, str], ...]) -> web.StreamResponse:
        response = await self.ingest.ListTasks(search_request(request.query, principal),
                                               metadata=metadata, timeout=RPC_TIMEOUT_S)
        return web.json_response({"tasks": [task_json(t) for t in response.tasks],
                                  "next_page_token": response.next_page_token})

    async def timeline(self, request: web.Request, principal: Principal,
                       metadata: tuple[tuple[str, str], ...]) -> web.StreamResponse:
        response = await self.ingest.GetTaskTimeline(
            GetTaskTimelineRequest(task_id=request.match_info["task_id"]),
            metadata=metadata, timeout=RPC_TIMEOUT_S)
        return web.json_response(timeline_json(response))

    async def retry(self, request: web.Request, principal: Principal,
                    metadata: tuple[tuple[str, str], ...]) -> web.StreamResponse:
        response = await self.ingest.RetryTask(
            RetryTaskRequest(task_id=request.match_info["task_id"]),
            metadata=metadata, timeout=RPC_TIMEOUT_S)
        return web.json_response({"task": task_json(response.task),
                                  "created": response.created})

    async def redrive(self, request: web.Request, principal: Principal,
                      metadata: tuple[tuple[str, str], ...]) -> web.StreamResponse:
        reason = _field(await _body(request), "reason", str, "", "text")
        response = await self.ingest.RedriveTask(
            RedriveTaskRequest(task_id=request.match_info["task_id"], reason=reason.strip()),
            metadata=metadata, timeout=RPC_TIMEOUT_S)
        return web.json_response({"task": task_json(response.task)})

    async def list_dead_letters(self, request: web.Request, principal: Principal,
                                metadata: tuple[tuple[str, str], ...]) -> web.StreamResponse:
        errors: list[tuple[str, str]] = []
        size = _page_size(request.query, errors)
        if errors:
            raise RequestError(errors)
        state = request.query.get("state", "").strip().lower()
        if state and state not in _LETTER_STATES:
            raise RequestError([("state", f"one of {', '.join(_LETTER_STATES)}, or empty for "
                                          "every state")])
        response = await self.dead_letters.ListDeadLetters(ListDeadLettersRequest(
            tenant_id=request.query.get("tenant", "").strip(),
            reason_code=request.query.get("reason_code", "").strip(),
            state=_LETTER_STATES.get(state, DeadLetterState.DEAD_LETTER_STATE_UNSPECIFIED),
            page_size=size, page_token=request.query.get("page_token", "")),
            metadata=metadata, timeout=RPC_TIMEOUT_S)
        return web.json_response({
            "dead_letters": [dead_letter_json(r) for r in response.dead_letters],
            "next_page_token": response.next_page_token})

    async def get_dead_letter(self, request: web.Request, principal: Principal,
                              metadata: tuple[tuple[str, str], ...]) -> web.StreamResponse:
        response = await self.dead_letters.GetDeadLetter(
            GetDeadLetterRequest(dead_letter_id=request.match_info["dead_letter_id"]),
            metadata=metadata, timeout=RPC_TIMEOUT_S)
        return web.json_response({"dead_letter": dead_letter_json(response.dead_letter,
                                                                  full=True)})

    async def replay(self, request: web.Request, principal: Principal,
                     metadata: tuple[tuple[str, str], ...]) -> web.StreamResponse:
        force = _field(await _body(request), "force", bool, False, "true or false")
        response = await self.dead_letters.ReplayDeadLetter(ReplayDeadLetterRequest(
            dead_letter_id=request.match_info["dead_letter_id"], force=force),
            metadata=metadata, timeout=RPC_TIMEOUT_S)
        return web.json_response({"dead_letter": dead_letter_json(response.dead_letter)})

    async def resolve(self, request: web.Request, principal: Principal,
                      metadata: tuple[tuple[str, str], ...]) -> web.StreamResponse:
        reason = _field(await _body(request), "reason", str, "", "text")
        response = await self.dead_letters.ResolveDeadLetter(ResolveDeadLetterRequest(
            dead_letter_id=request.match_info["dead_letter_id"], reason=reason),
            metadata=metadata, timeout=RPC_TIMEOUT_S)
        return web.json_response({"dead_letter": dead_letter_json(response.dead_letter)})

    async def breakers(self, request: web.Request, principal: Principal,
                       metadata: tuple[tuple[str, str], ...]) -> web.StreamResponse:
        response = await self.executor.ListBreakers(ListBreakersRequest(), metadata=metadata,
                                                    timeout=RPC_TIMEOUT_S)
        return web.json_response({"breakers": [breaker_json(b) for b in response.breakers]})

    async def reset_breaker(self, request: web.Request, principal: Principal,
                            metadata: tuple[tuple[str, str], ...]) -> web.StreamResponse:
        name = (await _body(request)).get("name", "")
        if not isinstance(name, str) or not name.strip():
            raise RequestError([("name", "the breaker's name")])
        response = await self.executor.ResetBreaker(ResetBreakerRequest(name=name.strip()),
                                                    metadata=metadata, timeout=RPC_TIMEOUT_S)
        return web.json_response({"breaker": breaker_json(response.breaker)})

    async def model_health(self, request: web.Request, principal: Principal,
                           metadata: tuple[tuple[str, str], ...]) -> web.StreamResponse:
        window, bucket = window_of(request.query)
        tenant = _tenant(request.query, principal)
        response = await self.decision.GetModelHealth(GetModelHealthRequest(
            tenant_id=tenant, window=_duration(window), bucket=_duration(bucket)),
            metadata=metadata, timeout=RPC_TIMEOUT_S)
        return web.json_response({"tenant": tenant, **model_health_json(response)})

    async def kpis(self, request: web.Request, principal: Principal,
                   metadata: tuple[tuple[str, str], ...]) -> web.StreamResponse:
        """Read from PostgreSQL (as ``switchyard stats``), so the tenant is checked here."""
        window, bucket = window_of(request.query)
        tenant = _tenant(request.query, principal)
        if not principal.may_access(tenant):
            return problem(403, "PERMISSION_DENIED",
                           f"this key may not read the KPIs of tenant {tenant!r}")
        try:
            points = await kpi_trend(self.pool, self.settings, tenant, window, bucket)
        except ValueError as exc:
            field, _, detail = str(exc).partition(": ")
            raise RequestError([(field, detail)]) from None
        return web.json_response({"tenant": tenant, "bucket_s": bucket.total_seconds(),
                                  "points": [point_dict(p) for p in points]})


def _tenant(query: Mapping[str, str], principal: Principal) -> str:
    tenant = query.get("tenant", "").strip()
    if not tenant and principal.tenant_id != "*":
        tenant = principal.tenant_id
    if not tenant:
        raise RequestError([("tenant", "required: the tenant whose figures to show")])
    return tenant


def _field(body: dict[str, Any], name: str, kind: type, default: Any, expected: str) -> Any:
    """``body[name]`` (``default`` when absent), refused naming the field unless ``kind``."""
    value = body.get(name, default)
    if not isinstance(value, kind):
        raise RequestError([(name, expected)])
    return value


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = request_json(raw)
    except (ValueError, UnicodeDecodeError):
        raise RequestError([("body", "must be a JSON object")]) from None
    if not isinstance(body, dict):
        raise RequestError([("body", "must be a JSON object")])
    return body
