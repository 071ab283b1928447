"""gRPC and its HTTP face: servers and channels with every cross-cutting concern in place,
errors with field details, and RFC 9457 problem documents for the REST gateway.

Re-exported from ``_grpc`` and ``_http``.
"""

from __future__ import annotations

from switchyard._grpc import (
    CallInterceptor,
    ClientTls,
    DEPENDENCY_RETRY_S,
    FieldViolation,
    RETRY_AFTER_HEADER,
    ServerTls,
    abort_invalid,
    abort_retry_later,
    abort_unless_batch_size,
    bad_request,
    charge_or_abort,
    charges,
    client_channel,
    create_channel,
    field_violations,
    invalid_item,
    item_error,
    parse_status_details,
    request_tenant,
    server_ssl_context,
    start_server,
    status_details,
)
from switchyard._http import (
    HTTP_STATUS,
    NotAscii,
    PROBLEM_JSON,
    forwarded_metadata,
    problem,
    problem_for,
    problem_from_rpc,
)

__all__ = [
    "CallInterceptor",
    "ClientTls",
    "DEPENDENCY_RETRY_S",
    "FieldViolation",
    "HTTP_STATUS",
    "NotAscii",
    "PROBLEM_JSON",
    "RETRY_AFTER_HEADER",
    "ServerTls",
    "abort_invalid",
    "abort_retry_later",
    "abort_unless_batch_size",
    "bad_request",
    "charge_or_abort",
    "charges",
    "client_channel",
    "create_channel",
    "field_violations",
    "forwarded_metadata",
    "invalid_item",
    "item_error",
    "parse_status_details",
    "problem",
    "problem_for",
    "problem_from_rpc",
    "request_tenant",
    "server_ssl_context",
    "start_server",
    "status_details",
]
