"""The HTTP face of a gRPC call: RFC 9457 problem documents for gRPC statuses, and the
caller's ``Authorization`` header forwarded as call metadata.

One mapping for every HTTP front end of the gRPC services (the ingest REST gateway, the
operator console): the same gRPC error reads the same over HTTP wherever it surfaces, field
violations and retry hints included.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Mapping
from typing import Any

import grpc
from aiohttp import web
from google.rpc import error_details_pb2

from switchyard._grpc import RETRY_AFTER_HEADER, read_status_details, violations_of

PROBLEM_JSON = "application/problem+json"

#: gRPC status -> HTTP status. INVALID_ARGUMENT from a servicer (a well-formed request that
#: breaks a rule, with field violations) is 422; a body or query that is not valid proto3 JSON
#: for the request message never reaches gRPC and is 400.
HTTP_STATUS: Mapping[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: 422,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNKNOWN: 500,
}


def problem(status: int, title: str, detail: str, *, errors: list[dict[str, str]] | None = None,
            headers: Mapping[str, str] | None = None, **extra: Any) -> web.Response:
    """An RFC 9457 problem document; ``errors`` lists the offending fields."""
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status,
                            "detail": detail, **extra}
    if errors is not None:
        body["errors"] = errors
    return web.Response(status=status, text=json.dumps(body), content_type=PROBLEM_JSON,
                        headers=headers)


def retry_after_s(trailing: Any) -> int | None:
    """The server's retry hint in whole seconds (rounded up), from ``retry-after-ms`` or a
    RetryInfo detail."""
    for key, value in trailing or ():
        if key == RETRY_AFTER_HEADER:
            with contextlib.suppress(ValueError):
                return max(1, math.ceil(int(value) / 1000))
    status = read_status_details(trailing)
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return max(1, math.ceil(info.retry_delay.ToNanoseconds() / 1e9))
    return None


def problem_from_rpc(error: grpc.aio.AioRpcError) -> web.Response:
    return problem_for(error.code(), error.details() or "", error.trailing_metadata())


def problem_for(code: grpc.StatusCode, message: str, trailing: Any, *,
                invalid_status: int | None = None) -> web.Response:
    """The problem document of a gRPC status (``trailing``: its trailing metadata, where
    the field violations and retry hints travel)."""
    status = HTTP_STATUS.get(code, 500)
    if code == grpc.StatusCode.INVALID_ARGUMENT and invalid_status is not None:
        status = invalid_status
    errors = [{"field": field, "detail": text}
              for field, text in violations_of(read_status_details(trailing))]
    headers: dict[str, str] = {}
    wait = retry_after_s(trailing)
    if wait is not None and status in {429, 503}:
        headers["Retry-After"] = str(wait)
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return problem(status, code.name, message or code.name,
                   errors=errors if errors or status in {400, 422} else None,
                   headers=headers, grpc_status=code.name)


class NotAscii(Exception):
    """An Authorization header gRPC metadata cannot carry: no key has such characters."""


def forwarded_metadata(request: web.Request) -> tuple[tuple[str, str], ...]:
    """The caller's ``Authorization`` header as gRPC call metadata, for the service that
    answers to check: an HTTP front end forwards credentials, it never decides with them."""
    given = [value for value in request.headers.getall("Authorization", ()) if value]
    if not all(value.isascii() for value in given):
        raise NotAscii()
    # every one, so the service refuses a call with two (it would not pick one)
    return tuple(("authorization", value) for value in given)


def request_json(raw: bytes | str) -> Any:
    """A request body parsed as JSON; ``ValueError`` (its message for the caller) when it is
    none, including JSON nested deeper than the parser recurses (a 500 otherwise: the
    ``RecursionError`` is no ``ValueError``)."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


__all__ = ["HTTP_STATUS", "PROBLEM_JSON", "NotAscii", "forwarded_metadata", "problem",
           "problem_for", "problem_from_rpc", "request_json", "retry_after_s"]
