"""Protobuf serde for Kafka records, with a content-type header and a schema check.

Every record Switchyard writes carries ``content-type: application/x-protobuf;
messageType=<full name>``. Readers check that header before parsing, so a record of the wrong
type (or a stray JSON blob) is named precisely in a dead-letter record instead of being
misparsed into an empty message.
"""

from __future__ import annotations

from typing import TypeVar

from google.protobuf.message import DecodeError, Message

CONTENT_TYPE_HEADER = "content-type"
PROTOBUF_MEDIA_TYPE = "application/x-protobuf"
JSON_MEDIA_TYPE = "application/json"

M = TypeVar("M", bound=Message)


class SerdeError(ValueError):
    """A record cannot be decoded; ``code`` is a stable machine-readable reason."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def content_type_for(message_type: type[Message] | Message) -> str:
    return f"{PROTOBUF_MEDIA_TYPE}; messageType={message_type.DESCRIPTOR.full_name}"


def parse_content_type(value: str) -> tuple[str, dict[str, str]]:
    """Split ``media/type; k=v`` into the media type and its parameters."""
    media, *params = [part.strip() for part in value.split(";")]
    parsed = {}
    for param in params:
        key, sep, val = param.partition("=")
        if sep:
            parsed[key.strip().lower()] = val.strip().strip('"')
    return media.lower(), parsed


def encode(message: Message) -> tuple[bytes, dict[str, str]]:
    """Serialize a message; returns the bytes and the headers that describe them."""
    return message.SerializeToString(), {CONTENT_TYPE_HEADER: content_type_for(message)}


def decode(value: bytes | None, headers: dict[str, str], message_type: type[M]) -> M:
    """Parse ``value`` as ``message_type`` after checking its content-type header."""
    if value is None:
        raise SerdeError("empty_record", "record has no value (tombstone or empty payload)")
    declared = headers.get(CONTENT_TYPE_HEADER)
    if declared is None:
        raise SerdeError("missing_content_type", f"record has no {CONTENT_TYPE_HEADER!r} header")
    media, params = parse_content_type(declared)
    expected = message_type.DESCRIPTOR.full_name
    if media != PROTOBUF_MEDIA_TYPE:
        raise SerdeError("unsupported_content_type", f"expected {PROTOBUF_MEDIA_TYPE}, got {media!r}")
    if params.get("messagetype") != expected:
        raise SerdeError(
            "wrong_message_type",
            f"expected messageType={expected}, got {params.get('messagetype')!r}",
        )
    message = message_type()
    try:
        message.ParseFromString(value)
    except DecodeError as exc:
        raise SerdeError("malformed_protobuf", f"cannot parse {expected}: {exc}") from None
    return message
