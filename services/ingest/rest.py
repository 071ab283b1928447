"""The REST/JSON gateway: IngestService, DeadLetterService and the review verbs over HTTP,
served by ingest.

Every route forwards to the gRPC API on loopback (IngestService in this process, ReviewService
in the review process), passing the caller's ``Authorization: Bearer`` header through. So the
API-key check, the role policy, the tenant rate limit, validation and every other rule stay in
one place, the gRPC servicers and their interceptors; this module only translates:

* requests: proto3 JSON bodies (and query strings, path parameters) into request messages;
* responses: messages into proto3 JSON (lowerCamelCase names, enums by name, 64-bit
  integers as strings, timestamps in RFC 3339);
* errors: gRPC status codes into HTTP statuses with an ``application/problem+json`` body whose
  ``errors`` list carries the field violations (see :data:`HTTP_STATUS`).

Watches are Server-Sent Events (``Accept: text/event-stream``) or a long poll (any other
``Accept``: the events that arrive within ``wait_s``, then the response ends).

The route table :data:`ROUTES` is also what ``services.ingest.openapi`` turns into the
OpenAPI 3.1 document (served at ``/openapi.json``, written to docs/openapi.json).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import asyncpg
import grpc
from aiohttp import web
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from services.ingest import signatures, sources
from services.ingest.feed import CURSOR_METADATA_KEY
from switchyard import Settings
from switchyard.access import Principal, Role, TenantLimiter, principal_var
from switchyard.messaging import TRANSIENT_ERRORS
from switchyard.rpc import (
    DEPENDENCY_RETRY_S,
    ClientTls,
    NotAscii,
    charge_or_abort,
    create_channel,
    forwarded_metadata,
    problem,
    problem_for,
    problem_from_rpc,
    request_json,
    server_ssl_context,
)
from switchyard.v1 import (
    CancelTaskRequest,
    ClaimRequest,
    DeadLetterServiceStub,
    DeleteWebhookRequest,
    DeleteWebhookSourceRequest,
    GetDeadLetterRequest,
    GetItemRequest,
    GetTaskRequest,
    GetTaskTimelineRequest,
    IngestServiceStub,
    ListDeadLettersRequest,
    ListQueueRequest,
    ListTasksRequest,
    ListWebhookDeliveriesRequest,
    ListWebhookSourcesRequest,
    ListWebhooksRequest,
    RedeliverWebhooksRequest,
    RedriveTaskRequest,
    RegisterWebhookRequest,
    RegisterWebhookSourceRequest,
    ReleaseRequest,
    RenewRequest,
    ReplayDeadLetterRequest,
    ResolveDeadLetterRequest,
    RetryTaskRequest,
    ReviewServiceStub,
    SubmitTaskRequest,
    SubmitTasksRequest,
    SubmitVerdictRequest,
    TaskSource,
    WatchTaskRequest,
    WatchTenantRequest,
)

if TYPE_CHECKING:
    from services.ingest.service import IngestServicer

log = logging.getLogger(__name__)

#: Where upstream systems POST to an inbound webhook source.
INBOUND_PATH = "/webhooks/in/{source_id}"
#: The smallest request body the gateway accepts; raised to admit the largest document
#: base64-encoded in JSON (:func:`max_body_bytes`).
MAX_BODY_BYTES = 8 * 1024 * 1024


def max_body_bytes(settings: Settings) -> int:
    """Largest request body: a document of ``document_max_bytes`` as base64 (4/3 of its size,
    as proto3 JSON carries ``bytes``) in a submission."""
    return max(MAX_BODY_BYTES, settings.document_max_bytes * 4 // 3 + 64 * 1024)
#: Longest a long-poll watch may wait for events (``wait_s`` query parameter).
MAX_WAIT_S = 60.0
DEFAULT_WAIT_S = 20.0
#: A long poll that has events answers once no further event came for this long.
QUIET_S = 0.25
#: A Server-Sent Events watch answers (200, its headers) within this long, events or not:
#: a failure that comes sooner (auth, not found) is still the answer's HTTP status.
SSE_OPEN_S = 1.0
#: A Server-Sent Events watch with nothing to say sends a comment line this often.
SSE_KEEPALIVE_S = 15.0
#: The request field a watch resumes from, given an event's id (``Last-Event-ID``).
RESUME_FIELDS = {"WatchTask": "after_sequence", "WatchTenant": "cursor"}

@dataclass(frozen=True)
class Route:
    """One HTTP route and the RPC it forwards to.

    ``body``: the request field the JSON body fills ("*" the whole request, None no body; the
    query string fills the request's fields instead). ``path``'s ``{name}`` parameters fill
    request fields (``path_fields`` maps a parameter to a dotted field path when they differ).
    """

    method: str
    path: str
    service: str
    rpc: str
    request: type[Message]
    body: str | None = "*"
    streaming: bool = False
    path_fields: Mapping[str, str] | None = None
    summary: str = ""

    @property
    def full_method(self) -> str:
        return f"/switchyard.v1.{self.service}/{self.rpc}"

    def field_for(self, parameter: str) -> str:
        return (self.path_fields or {}).get(parameter, parameter)


ROUTES: tuple[Route, ...] = (
    Route("POST", "/v1/tasks", "IngestService", "SubmitTask", SubmitTaskRequest,
          summary="Submit one task (idempotent per tenant and idempotency key)."),
    Route("POST", "/v1/tasks/batch", "IngestService", "SubmitTasks", SubmitTasksRequest,
          summary="Submit many tasks; each item is accepted or refused on its own."),
    Route("GET", "/v1/tasks", "IngestService", "ListTasks", ListTasksRequest, body=None,
          summary="List a tenant's tasks, newest first, a page at a time."),
    Route("GET", "/v1/tasks/{task_id}", "IngestService", "GetTask", GetTaskRequest, body=None,
          summary="One task."),
    Route("GET", "/v1/tasks/{task_id}/timeline", "IngestService", "GetTaskTimeline",
          GetTaskTimelineRequest, body=None,
          summary="A task's status changes and audit entries, oldest first (admins, "
                  "auditors)."),
    Route("POST", "/v1/tasks/{task_id}/redrive", "IngestService", "RedriveTask",
          RedriveTaskRequest, summary="Publish an unfinished task again now (admins)."),
    Route("POST", "/v1/tasks/{task_id}/cancel", "IngestService", "CancelTask",
          CancelTaskRequest, summary="Cancel a task that has not started executing."),
    Route("POST", "/v1/tasks/{task_id}/retry", "IngestService", "RetryTask", RetryTaskRequest,
          summary="Resubmit a FAILED or CANCELLED task as a new task."),
    Route("GET", "/v1/tasks/{task_id}/events", "IngestService", "WatchTask", WatchTaskRequest,
          body=None, streaming=True,
          summary="A task's status events: Server-Sent Events, or a long poll."),
    Route("GET", "/v1/events", "IngestService", "WatchTenant", WatchTenantRequest, body=None,
          streaming=True,
          summary="A tenant's status events: Server-Sent Events, or a long poll."),
    Route("POST", "/v1/webhooks", "IngestService", "RegisterWebhook", RegisterWebhookRequest,
          summary="Register an outgoing webhook for a tenant's status changes."),
    Route("GET", "/v1/webhooks", "IngestService", "ListWebhooks", ListWebhooksRequest,
          body=None, summary="A tenant's outgoing webhooks."),
    Route("DELETE", "/v1/webhooks/{webhook_id}", "IngestService", "DeleteWebhook",
          DeleteWebhookRequest, body=None, summary="Delete an outgoing webhook."),
    Route("GET", "/v1/webhook-deliveries", "IngestService", "ListWebhookDeliveries",
          ListWebhookDeliveriesRequest, body=None,
          summary="Outgoing webhook deliveries (and callback_url ones) and how each went."),
    Route("POST", "/v1/webhook-deliveries/redeliver", "IngestService", "RedeliverWebhooks",
          RedeliverWebhooksRequest,
          summary="Send failed deliveries again, by id or every one failed since a time."),
    Route("POST", "/v1/webhook-sources", "IngestService", "RegisterWebhookSource",
          RegisterWebhookSourceRequest,
          summary="Register an inbound webhook source; its secret is shown once."),
    Route("GET", "/v1/webhook-sources", "IngestService", "ListWebhookSources",
          ListWebhookSourcesRequest, body=None, summary="A tenant's inbound webhook sources."),
    Route("DELETE", "/v1/webhook-sources/{source_id}", "IngestService", "DeleteWebhookSource",
          DeleteWebhookSourceRequest, body=None,
          summary="Stop accepting POSTs for an inbound webhook source."),
    Route("GET", "/v1/dead-letters", "DeadLetterService", "ListDeadLetters",
          ListDeadLettersRequest, body=None,
          summary="Records no stage could accept, with why (admins, auditors)."),
    Route("GET", "/v1/dead-letters/{dead_letter_id}", "DeadLetterService", "GetDeadLetter",
          GetDeadLetterRequest, body=None,
          summary="One dead letter with its original key, value and headers (admins, "
                  "auditors)."),
    Route("POST", "/v1/dead-letters/{dead_letter_id}/replay", "DeadLetterService",
          "ReplayDeadLetter", ReplayDeadLetterRequest,
          summary="Publish a dead letter's record to its topic again (admins)."),
    Route("POST", "/v1/dead-letters/{dead_letter_id}/resolve", "DeadLetterService",
          "ResolveDeadLetter", ResolveDeadLetterRequest,
          summary="Close a dead letter that needs no replay, with a reason (admins)."),
    Route("GET", "/v1/review/items", "ReviewService", "ListQueue", ListQueueRequest, body=None,
          summary="The review queue (ReviewService)."),
    Route("GET", "/v1/review/items/{item_id}", "ReviewService", "GetItem", GetItemRequest,
          body=None, summary="One review item (ReviewService)."),
    Route("POST", "/v1/review/items/{item_id}/claim", "ReviewService", "Claim", ClaimRequest,
          summary="Claim a review item (ReviewService)."),
    Route("POST", "/v1/review/items/{item_id}/renew", "ReviewService", "Renew", RenewRequest,
          summary="Extend the caller's lease on a claimed item (ReviewService)."),
    Route("POST", "/v1/review/items/{item_id}/release", "ReviewService", "Release",
          ReleaseRequest, summary="Give a claimed item back to its queue (ReviewService)."),
    Route("POST", "/v1/review/items/{item_id}/verdict", "ReviewService", "SubmitVerdict",
          SubmitVerdictRequest, body="verdict", path_fields={"item_id": "verdict.item_id"},
          summary="Decide a claimed review item (ReviewService)."),
)


class BadRequest(Exception):
    """The HTTP request is not a valid request message; carries the per-field errors."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{e['field']}: {e['detail']}" if e["field"] else e["detail"]
                                   for e in errors))
        self.errors = errors


# -- JSON <-> messages -------------------------------------------------------------------

def to_json(message: Message) -> dict[str, Any]:
    """Canonical proto3 JSON (lowerCamelCase names; singular fields at their default are left
    out), except that repeated and map fields are always present, ``[]`` or ``{}`` when empty:
    an empty list answers ``{"tasks": []}``, never ``{}``. (Done here rather than with
    json_format's own option, whose name and reach differ between protobuf 4 and 5.)"""
    out = json_format.MessageToDict(message)
    _with_empty_repeated(message, out)
    return out


def _with_empty_repeated(message: Message, out: dict[str, Any]) -> None:
    """Add ``[]``/``{}`` for every empty repeated or map field of ``message`` (and of the
    messages inside it) to its JSON form ``out``; well-known types keep their own form."""
    if message.DESCRIPTOR.full_name.startswith("google.protobuf."):
        return
    for field in message.DESCRIPTOR.fields:
        name = field.json_name
        if field.label == FieldDescriptor.LABEL_REPEATED:
            if name not in out:
                out[name] = {} if _is_map(field) else []
            elif _is_map(field):
                value_field = field.message_type.fields_by_name["value"]
                if value_field.message_type is not None:
                    values = getattr(message, field.name)
                    for key, item in out[name].items():
                        if isinstance(item, dict):
                            _with_empty_repeated(values[_map_key(value_field, key, values)],
                                                 item)
            elif field.message_type is not None:
                for item, item_json in zip(getattr(message, field.name), out[name]):
                    if isinstance(item_json, dict):
                        _with_empty_repeated(item, item_json)
        elif field.message_type is not None and message.HasField(field.name) \
                and isinstance(out.get(name), dict):
            _with_empty_repeated(getattr(message, field.name), out[name])


def _map_key(value_field: FieldDescriptor, key: str, values: Any) -> Any:
    """A map's key as the container holds it (JSON turns every key into a string)."""
    key_field = value_field.containing_type.fields_by_name["key"]
    if key_field.type == FieldDescriptor.TYPE_STRING:
        return key
    if key_field.type == FieldDescriptor.TYPE_BOOL:
        return key == "true"
    return int(key)


#: JSON's names for the Python types json_format's own errors name
_JSON_TYPES = {"dict": "an object", "list": "an array", "str": "a string", "int": "a number",
               "float": "a number", "bool": "a boolean", "NoneType": "null"}
#: json_format's errors that only quote Python ("unhashable type: 'dict'", "expected string
#: or bytes-like object, got 'list'"): the caller learns the JSON type it sent instead
_PYTHON_ERROR = re.compile(r"(?:unhashable type:|expected string or bytes-like object, got|"
                           r"argument must be [^,]*, not) '(\w+)'")


#: json_format's words for a Timestamp it cannot read
_TIMESTAMP_ERROR = re.compile(r"time data '|Failed to parse timestamp", re.IGNORECASE)


def _parse_error(exc: json_format.ParseError, prefix: str = "") -> list[dict[str, str]]:
    """json_format's message as a field error: the field is the chain of names it reports
    ("Failed to parse submission field: Failed to parse tenantId field: ...")."""
    text = str(exc)
    names = re.findall(r"Failed to parse (\w+) field", text)
    unknown = re.search(r'has no field named "([^"]+)"', text)
    if unknown:
        names.append(unknown.group(1))
    field = ".".join(([prefix] if prefix else []) + names)
    python = _PYTHON_ERROR.search(text)
    if python:
        sent = _JSON_TYPES.get(python.group(1), "a value of another type")
        text = f"{field or 'the body'}: {sent} is not a value this field takes"
    elif _TIMESTAMP_ERROR.search(text):   # its own words quote a cut of the value ('2025-06')
        text = (f"{field}: an RFC 3339 time with its UTC offset, e.g. "
                "'2025-06-30T12:00:00Z' or '2025-06-30T14:00:00+02:00'")
    return [{"field": field, "detail": text}]


def _field_path(message: Message, dotted: str) -> tuple[Message, FieldDescriptor]:
    *parents, last = dotted.split(".")
    for name in parents:
        message = getattr(message, name)
    field = message.DESCRIPTOR.fields_by_name.get(last)
    if field is None:
        raise BadRequest([{"field": dotted, "detail": "no such field"}])
    return message, field


def _query_value(field: FieldDescriptor, text: str) -> Any:
    """A query-string value in the JSON form ``json_format`` parses for ``field``. An enum
    takes its full name (``TASK_STATUS_FAILED``) or the short one the CLI uses (``FAILED``,
    ``failed``); a repeated enum's comma-separated list is read value by value."""
    if field.type == FieldDescriptor.TYPE_BOOL:
        if text.lower() not in {"true", "false", "1", "0"}:
            raise ValueError(f"{text!r} is not a boolean (true or false)")
        return text.lower() in {"true", "1"}
    if field.type == FieldDescriptor.TYPE_ENUM:
        names = enum_query_names(field.enum_type)
        values = []
        for part in text.split(",") if field.label == FieldDescriptor.LABEL_REPEATED else [text]:
            full = names.get(part.strip()) or names.get(part.strip().upper())
            if full is None:
                shown = ", ".join(short for short, name in names.items()
                                  if short != name) or ", ".join(names)
                raise ValueError(f"{part.strip()!r} is not one of {shown} (the full names, "
                                 f"e.g. {next(iter(names.values()))}, and lower case work too)")
            values.append(full)
        return ",".join(values)
    return text


def enum_query_names(enum: Any) -> dict[str, str]:
    """Every spelling a query parameter may give for ``enum``'s values, to the full name:
    ``TASK_STATUS_FAILED`` and ``FAILED`` (lower case is matched by upper-casing). The
    UNSPECIFIED value is not offered."""
    prefix = re.sub(r"(?<!^)(?=[A-Z])", "_", enum.name).upper() + "_"
    names: dict[str, str] = {}
    for value in enum.values:
        if value.number == 0 and value.name.endswith("UNSPECIFIED"):
            continue
        names[value.name] = value.name
        names.setdefault(value.name.removeprefix(prefix), value.name)
    return names


#: A map field's entry in a query string, OpenAPI's deepObject style: ``metadata[po]=17``.
_MAP_ENTRY = re.compile(r"(\w+)\[([^\]]*)\]")


def _field_named(request: Message, name: str) -> FieldDescriptor | None:
    """The request field a query parameter names (proto or JSON name)."""
    return request.DESCRIPTOR.fields_by_name.get(name) or next(
        (f for f in request.DESCRIPTOR.fields if f.json_name == name), None)


def _is_map(field: FieldDescriptor | None) -> bool:
    return field is not None and field.message_type is not None and \
        field.message_type.GetOptions().map_entry


def _map_entry(request: Message, base: str, key: str, query: Mapping[str, Any], name: str,
               fields: dict[str, Any], errors: list[dict[str, str]]) -> None:
    """``base[key]=value`` from the query string into the map field ``base``."""
    field = _field_named(request, base)
    assert field is not None
    values = query.getall(name) if hasattr(query, "getall") else [query[name]]
    if len(values) > 1:
        errors.append({"field": name, "detail": "given more than once"})
        return
    fields.setdefault(field.name, {})[key] = values[0]


#: proto3 JSON's bytes: standard or URL-safe base64, padded or not.
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]*={0,2}")


def _loose_base64(value: Any, descriptor: Any, path: str) -> list[dict[str, str]]:
    """Violations for bytes fields whose text is not base64. protobuf's JSON parser decodes
    base64 leniently, dropping characters that are not in the alphabet, so ``"SW52b2l$$$"``
    would be stored as other bytes than the client meant: refused here instead."""
    if not isinstance(value, dict):
        return []
    out: list[dict[str, str]] = []
    for field in descriptor.fields:
        name = field.json_name if field.json_name in value else field.name
        if name not in value:
            continue
        items = value[name] if field.label == field.LABEL_REPEATED else [value[name]]
        if not isinstance(items, list):
            continue
        where = f"{path}{field.name}"
        if field.type == field.TYPE_BYTES:
            for item in items:
                text = item.strip() if isinstance(item, str) else ""
                if isinstance(item, str) and (not _BASE64.fullmatch(text)
                                              or len(text.rstrip("=")) % 4 == 1):
                    out.append({"field": where, "detail": "not base64 (proto3 JSON bytes: "
                                                          "standard or URL-safe base64)"})
                    break
        elif field.message_type is not None and not field.message_type.GetOptions().map_entry:
            for item in items:
                out.extend(_loose_base64(item, field.message_type, where + "."))
    return out


def build_request(route: Route, match: Mapping[str, str], query: Mapping[str, Any],
                  body: Any) -> Message:
    """The request message for ``route`` from path parameters, query string and JSON body."""
    request = route.request()
    errors: list[dict[str, str]] = []
    if route.body is not None:
        if not isinstance(body, dict):
            raise BadRequest([{"field": "", "detail": "the body must be a JSON object"}])
        target = request if route.body == "*" else getattr(request, route.body)
        bad = _loose_base64(body, target.DESCRIPTOR,
                            route.body + "." if route.body != "*" else "")
        if bad:
            raise BadRequest(bad)
        try:
            json_format.ParseDict(body, target)
        except json_format.ParseError as exc:
            raise BadRequest(_parse_error(exc, route.body if route.body != "*" else "")
                             ) from None
    else:
        fields: dict[str, Any] = {}
        for name in set(query.keys()):
            entry = _MAP_ENTRY.fullmatch(name)
            if entry is not None and _is_map(_field_named(request, entry.group(1))):
                _map_entry(request, entry.group(1), entry.group(2), query, name, fields,
                           errors)
                continue
            field = _field_named(request, name)
            if field is None:
                errors.append({"field": name, "detail": "unknown query parameter"})
                continue
            if _is_map(field):
                errors.append({"field": name, "detail": f"give each entry as {name}[KEY]=VALUE"})
                continue
            values = query.getall(name) if hasattr(query, "getall") else [query[name]]
            try:
                converted = [_query_value(field, v) for v in values]
            except ValueError as exc:
                errors.append({"field": name, "detail": str(exc)})
                continue
            if field.label == FieldDescriptor.LABEL_REPEATED:
                fields[field.name] = [item for v in converted
                                      for item in (v.split(",") if isinstance(v, str) else [v])]
            elif len(converted) > 1:
                errors.append({"field": name, "detail": "given more than once"})
            else:
                fields[field.name] = converted[0]
        if errors:
            raise BadRequest(errors)
        try:
            json_format.ParseDict(fields, request)
        except json_format.ParseError as exc:
            raise BadRequest(_parse_error(exc)) from None
    for parameter, value in match.items():
        target, field = _field_path(request, route.field_for(parameter))
        setattr(target, field.name, value)
    return request


# -- errors ------------------------------------------------------------------------------

# -- the gateway -------------------------------------------------------------------------

async def _private_answers(request: web.Request, response: web.StreamResponse) -> None:
    """Every answer (a task's document, metadata, personal fields; an error; a stream) is
    kept by no cache on the way and read by the browser as the type it says it is."""
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")


class Gateway:
    """The aiohttp application and its gRPC channels (loopback, TLS when the servers use it)."""

    def __init__(self, settings: Settings, inbound: Inbound | None = None) -> None:
        self.settings = settings
        self.inbound = inbound
        self._channels: list[grpc.aio.Channel] = []
        self._runner: web.AppRunner | None = None
        self._openapi: dict[str, Any] | None = None
        self.stubs: dict[str, Any] = {}

    def _channel(self, port: int) -> grpc.aio.Channel:
        tls = ClientTls.from_settings(self.settings)
        channel = create_channel(f"127.0.0.1:{port}", None, **(tls.as_dict() if tls else {}))
        self._channels.append(channel)
        return channel

    def app(self) -> web.Application:
        app = web.Application(client_max_size=max_body_bytes(self.settings),
                              middlewares=[self._errors])
        app.on_response_prepare.append(_private_answers)
        for route in ROUTES:
            app.router.add_route(route.method, route.path, self._handler(route))
        if self.inbound is not None:
            app.router.add_post(INBOUND_PATH, self.inbound.receive)
        app.router.add_get("/openapi.json", self.openapi)
        app.router.add_get("/healthz", self.healthz)
        return app

    async def start(self) -> None:
        self.stubs = {
            "IngestService": IngestServiceStub(self._channel(self.settings.ingest_grpc_port)),
            "DeadLetterService": DeadLetterServiceStub(
                self._channel(self.settings.ingest_grpc_port)),
            "ReviewService": ReviewServiceStub(self._channel(self.settings.review_grpc_port)),
        }
        self._runner = web.AppRunner(self.app(), shutdown_timeout=2.0, access_log=None)
        await self._runner.setup()
        ssl_context = server_ssl_context(self.settings)
        await web.TCPSite(self._runner, self.settings.bind_host, self.settings.ingest_rest_port,
                          ssl_context=ssl_context).start()
        log.info("REST gateway on %s://%s:%d/", "https" if ssl_context else "http",
                 self.settings.bind_host, self.settings.ingest_rest_port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        for channel in self._channels:
            await channel.close()

    @web.middleware
    async def _errors(self, request: web.Request,
                      handler: Callable[[web.Request], Any]) -> web.StreamResponse:
        try:
            return await handler(request)
        except BadRequest as exc:
            return problem(400, "Bad Request", str(exc), errors=exc.errors)
        except NotAscii:
            return problem(401, "UNAUTHENTICATED", "invalid API key",
                           headers={"WWW-Authenticate": "Bearer"}, grpc_status="UNAUTHENTICATED")
        except grpc.aio.AioRpcError as exc:
            return problem_from_rpc(exc)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return problem(exc.status, exc.reason, exc.text or exc.reason,
                           headers={k: v for k, v in exc.headers.items()
                                    if k.lower() == "allow"})

    def _handler(self, route: Route) -> Callable[[web.Request], Any]:
        async def handle(request: web.Request) -> web.StreamResponse:
            body: Any = None
            if route.body is not None:
                raw = await request.read()
                try:
                    body = request_json(raw) if raw.strip() else {}
                except (ValueError, UnicodeDecodeError) as exc:
                    raise BadRequest([{"field": "", "detail": f"not JSON: {exc}"}]) from None
            query = request.query.copy()
            wait_s = None
            if route.streaming:
                wait_s = _pop_wait(query)
                resumed = request.headers.get("Last-Event-ID", "").strip()
                resume_field = RESUME_FIELDS.get(route.rpc)
                if resumed and resume_field and resume_field not in query:
                    # an EventSource reconnecting: it sends the last event's id (_sse)
                    query[resume_field] = resumed
            message = build_request(route, request.match_info, query, body)
            metadata = forwarded_metadata(request)
            method = getattr(self.stubs[route.service], route.rpc)
            if not route.streaming:
                response = await method(message, metadata=metadata)
                return web.json_response(to_json(response))
            call = method(message, metadata=metadata)
            if "text/event-stream" in request.headers.get("Accept", ""):
                return await _server_sent_events(request, call)
            return await _long_poll(call, wait_s if wait_s is not None else DEFAULT_WAIT_S)

        handle.__name__ = route.rpc
        return handle

    async def openapi(self, request: web.Request) -> web.Response:
        from services.ingest.openapi import document  # imports this module: here, not at the top

        if self._openapi is None:
            self._openapi = document()
        # the address this copy was fetched from, not the default port: a client generated
        # from the live document calls the gateway that served it
        return web.json_response({**self._openapi,
                                  "servers": [{"url": str(request.url.origin())}]})

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})


def _pop_wait(query: Any) -> float | None:
    if "wait_s" not in query:
        return None
    text = query.pop("wait_s")
    try:
        wait = float(text)
    except ValueError:
        raise BadRequest([{"field": "wait_s", "detail": f"{text!r} is not a number"}]) from None
    if not 0 <= wait <= MAX_WAIT_S:
        raise BadRequest([{"field": "wait_s", "detail": f"0 to {MAX_WAIT_S:g} seconds"}])
    return wait


async def _next_or_end(iterator: Any) -> Message | None:
    """The stream's next message, None at its end (its errors raise)."""
    try:
        return cast(Message, await iterator.__anext__())
    except StopAsyncIteration:
        return None


async def _server_sent_events(request: web.Request, call: Any) -> web.StreamResponse:
    """Events as ``data:`` lines. A failure that comes at once (auth, not found) is an HTTP
    error; a watch with nothing to say yet answers within :data:`SSE_OPEN_S` all the same,
    and while it waits sends a comment every :data:`SSE_KEEPALIVE_S` (a watch on a task that
    waits hours for a reviewer must not look dead to a client's or a proxy's timeout); a
    failure after the answer began is an ``event: error`` with the problem document."""
    iterator = call.__aiter__()
    pending = asyncio.ensure_future(_next_or_end(iterator))
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-store"})
    try:
        await asyncio.wait({pending}, timeout=SSE_OPEN_S)
        if pending.done():
            pending.result()   # a failure that came at once is the answer's HTTP status
        await response.prepare(request)
        if not pending.done():
            await response.write(b": watching\n\n")
        while True:
            await asyncio.wait({pending}, timeout=SSE_KEEPALIVE_S)
            if not pending.done():
                await response.write(b": keep-alive\n\n")
                continue
            message = pending.result()
            if message is None:
                break
            await response.write(_sse(message))
            pending = asyncio.ensure_future(_next_or_end(iterator))
    except grpc.aio.AioRpcError as exc:
        if not response.prepared:
            raise
        await response.write(b"event: error\ndata: " + problem_from_rpc(exc).body + b"\n\n")
    except (ConnectionResetError, asyncio.CancelledError):
        pending.cancel()
        call.cancel()
        raise
    return response


def _sse(message: Message) -> bytes:
    """One event: its ``id`` (a task event's sequence, a tenant watch's cursor: what a
    reconnecting EventSource sends back as ``Last-Event-ID``) and its JSON."""
    cursor = getattr(message, "cursor", "")
    event_id = cursor or str(getattr(getattr(message, "event", None), "sequence", "") or "")
    head = f"id: {event_id}\n".encode() if event_id else b""
    return head + b"data: " + json.dumps(to_json(message)).encode() + b"\n\n"


async def _long_poll(call: Any, wait_s: float) -> web.Response:
    """The events that arrive within ``wait_s`` (at least the first one, if any comes), as
    ``{"events": [...]}``; resume with the last event's sequence, or (a tenant's watch) the
    top-level ``cursor``: the last event's, or where the watch began when none came."""
    events: list[dict[str, Any]] = []
    started_at = ""
    iterator = call.__aiter__()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    try:
        while True:
            remaining = deadline - loop.time()
            if events:  # history and what follows at once, then answer: no need to wait on
                remaining = min(remaining, QUIET_S)
            if remaining <= 0:
                break
            try:
                message = await asyncio.wait_for(iterator.__anext__(), remaining)
            except (TimeoutError, StopAsyncIteration):
                break
            events.append(to_json(message))
        started_at = dict(await call.initial_metadata() or ()).get(CURSOR_METADATA_KEY, "")
    finally:
        call.cancel()
    body: dict[str, Any] = {"events": events}
    cursor = next((e["cursor"] for e in reversed(events) if e.get("cursor")), started_at)
    if cursor:
        body["cursor"] = cursor
    return web.json_response(body)

# -- inbound webhooks --------------------------------------------------------------------

class RpcAbort(Exception):
    """A servicer called in-process aborted: the status it would have sent a gRPC caller."""

    def __init__(self, code: grpc.StatusCode, details: str, trailing: Any) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details
        self.trailing = tuple(trailing or ())


class LocalContext:
    """The part of a servicer context the submit path uses, for in-process calls: ``abort``
    raises :class:`RpcAbort` as grpc.aio's raises to end the RPC."""

    async def abort(self, code: grpc.StatusCode, details: str = "",
                    trailing_metadata: Any = ()) -> None:
        raise RpcAbort(code, details, trailing_metadata)


class Inbound:
    """POST /webhooks/in/<source_id>: check the Standard Webhooks signature with the source's
    secret, map the body to a submission and submit it through ``IngestServicer.submit`` (the
    rules of SubmitTask) as the source's tenant, charged to its rate limit.

    Answers: 202 with the task (a redelivered message gets the same task, ``created`` false),
    401 for a bad, missing or expired signature, 400 for a body that is not JSON, does not
    give what the mapping names, or breaks a submission rule (each with ``errors``), 404 for
    an unknown source, and the mapped gRPC status otherwise (429 with Retry-After ...)."""

    def __init__(self, pool: asyncpg.Pool, servicer: IngestServicer,
                 limiter: TenantLimiter) -> None:
        self.pool = pool
        self.servicer = servicer
        self.limiter = limiter

    async def receive(self, request: web.Request) -> web.Response:
        source = await sources.load(self.pool, request.match_info["source_id"])
        if source is None:
            return problem(404, "Not Found", "no such webhook source")
        body = await request.read()
        try:
            signatures.verify([source.secret], request.headers.get(signatures.ID_HEADER, ""),
                              request.headers.get(signatures.TIMESTAMP_HEADER, ""),
                              request.headers.get(signatures.SIGNATURE_HEADER, ""), body)
        except signatures.SignatureError as exc:
            return problem(401, "Unauthorized", str(exc))
        try:
            parsed = request_json(body)
        except (ValueError, UnicodeDecodeError) as exc:
            return problem(400, "Bad Request", f"the body is not JSON: {exc}",
                           errors=[{"field": "", "detail": "not JSON"}])
        message_id = request.headers[signatures.ID_HEADER]
        try:
            submission = sources.to_submission(source, parsed, message_id)
        except sources.MappingError as exc:
            return problem(400, "Bad Request", str(exc),
                           errors=[{"field": exc.field, "detail": exc.description}])
        context = LocalContext()
        token = principal_var.set(Principal(key_id=f"webhook-source:{source.source_id}",
                                            tenant_id=source.tenant_id, role=Role.SUBMITTER))
        try:
            local: Any = context  # stands in for a grpc.aio.ServicerContext
            await charge_or_abort(self.limiter, source.tenant_id, 1, local, "webhook")
            accepted = await self.servicer.submit(submission, TaskSource.TASK_SOURCE_WEBHOOK,
                                                  local)
        except RpcAbort as exc:
            return problem_for(exc.code, exc.details, exc.trailing, invalid_status=400)
        except TRANSIENT_ERRORS as exc:  # as the gRPC server answers: retry the same POST
            log.warning("inbound webhook not accepted yet: %r", exc)
            return problem(503, "UNAVAILABLE", "a dependency is restarting; retry with the "
                           "same request", headers={"Retry-After": str(
                               math.ceil(DEPENDENCY_RETRY_S))}, grpc_status="UNAVAILABLE")
        finally:
            principal_var.reset(token)
        return web.json_response(to_json(accepted), status=202)


__all__ = ["INBOUND_PATH", "ROUTES", "BadRequest", "Gateway", "Inbound", "LocalContext", "Route",
           "RpcAbort", "build_request", "enum_query_names", "max_body_bytes", "to_json"]
