"""Decoding the ``google.rpc.Status`` a Switchyard server attaches to an error.

The servers put a ``google.rpc.Status`` (with ``BadRequest`` field violations or
``RetryInfo``) in the ``grpc-status-details-bin`` trailer. Its generated classes live in
googleapis-common-protos; to keep the client's dependencies to grpcio and protobuf, this
module declares wire-compatible copies of the few messages it reads, in a private descriptor
pool (so they never clash with googleapis-common-protos when both are loaded).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

STATUS_DETAILS_KEY = "grpc-status-details-bin"
RETRY_AFTER_HEADER = "retry-after-ms"
_BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"
_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"


def _message(name: str, *fields: tuple[str, int, int, int, str]) -> descriptor_pb2.DescriptorProto:
    proto = descriptor_pb2.DescriptorProto(name=name)
    for field_name, number, kind, label, type_name in fields:
        field = proto.field.add(name=field_name, number=number, type=kind,  # type: ignore[arg-type]
                                label=label)  # type: ignore[arg-type]
        if type_name:
            field.type_name = type_name
    return proto


def _classes() -> dict[str, Any]:
    F = descriptor_pb2.FieldDescriptorProto
    one, many = F.LABEL_OPTIONAL, F.LABEL_REPEATED
    file = descriptor_pb2.FileDescriptorProto(
        name="switchyard_client/rpc_status.proto", package="switchyard_client.rpc",
        syntax="proto3")
    file.message_type.extend([
        _message("Any", ("type_url", 1, F.TYPE_STRING, one, ""),
                 ("value", 2, F.TYPE_BYTES, one, "")),
        _message("Status", ("code", 1, F.TYPE_INT32, one, ""),
                 ("message", 2, F.TYPE_STRING, one, ""),
                 ("details", 3, F.TYPE_MESSAGE, many, ".switchyard_client.rpc.Any")),
        _message("FieldViolation", ("field", 1, F.TYPE_STRING, one, ""),
                 ("description", 2, F.TYPE_STRING, one, "")),
        _message("BadRequest", ("field_violations", 1, F.TYPE_MESSAGE, many,
                                ".switchyard_client.rpc.FieldViolation")),
        _message("Duration", ("seconds", 1, F.TYPE_INT64, one, ""),
                 ("nanos", 2, F.TYPE_INT32, one, "")),
        _message("RetryInfo", ("retry_delay", 1, F.TYPE_MESSAGE, one,
                               ".switchyard_client.rpc.Duration")),
    ])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {name: message_factory.GetMessageClass(
        pool.FindMessageTypeByName(f"switchyard_client.rpc.{name}"))
        for name in ("Status", "BadRequest", "RetryInfo")}


_CLASSES = _classes()


@dataclass(frozen=True)
class FieldViolation:
    """One invalid field of a request, e.g. ``document.body``, and what is wrong with it."""

    field: str
    description: str


@dataclass(frozen=True)
class ErrorDetails:
    """What a server said beyond the status code."""

    field_violations: tuple[FieldViolation, ...] = ()
    #: Seconds to wait before retrying (RetryInfo, else the retry-after-ms trailer).
    retry_after_s: float | None = None


def error_details(trailing_metadata: Any) -> ErrorDetails:
    """Parse the trailers of a failed call (a sequence of (key, value) pairs, or None)."""
    violations: list[FieldViolation] = []
    retry_after: float | None = None
    header_retry: float | None = None
    for key, value in trailing_metadata or ():
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            status = _CLASSES["Status"].FromString(value)
            for detail in status.details:
                if detail.type_url == _BAD_REQUEST:
                    bad = _CLASSES["BadRequest"].FromString(detail.value)
                    violations += [FieldViolation(v.field, v.description)
                                   for v in bad.field_violations]
                elif detail.type_url == _RETRY_INFO:
                    delay = _CLASSES["RetryInfo"].FromString(detail.value).retry_delay
                    retry_after = delay.seconds + delay.nanos / 1e9
        elif key == RETRY_AFTER_HEADER and isinstance(value, str) and value.isdigit():
            header_retry = int(value) / 1000
    return ErrorDetails(tuple(violations),
                        retry_after if retry_after is not None else header_retry)
