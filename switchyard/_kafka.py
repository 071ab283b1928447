"""Kafka plumbing: client options from settings, a producer, and the header middleware.

The middleware is the one place that decides what travels in record headers besides the
payload's content type: the W3C trace context (so one trace follows a task across every
stream processor) and the correlation id (so logs of one request line up across services).
Records of a task on the task path (the tasks and decisions topics) also say whose task it is
and how urgent (:func:`scheduling_headers`), so a consumer can serve tenants fairly before it
decodes anything (``switchyard._dispatch``).
"""

from __future__ import annotations

import base64
import contextvars
import json
import random
import ssl
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from google.protobuf.message import Message
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace

from switchyard._priority import NORMAL, clamped
from switchyard._serde import encode
from switchyard._settings import Settings
from switchyard._topics import Topic

CORRELATION_HEADER = "x-correlation-id"
TENANT_HEADER = "x-tenant-id"
#: The task's priority bucket, URGENT (0) .. LOW (3) of ``switchyard._priority``.
PRIORITY_HEADER = "x-priority"

correlation_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "switchyard_correlation_id", default=None
)


def client_options(settings: Settings) -> dict[str, Any]:
    """Connection options shared by every aiokafka client (and faust's broker settings)."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol in {"SSL", "SASL_SSL"}:
        options["ssl_context"] = ssl.create_default_context(
            cafile=settings.kafka_ssl_cafile or None
        )
    if settings.kafka_sasl_mechanism:
        options.update(
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_plain_username=settings.kafka_sasl_username,
            sasl_plain_password=settings.kafka_sasl_password,
        )
    return options


def producer_options(settings: Settings) -> dict[str, Any]:
    # Tansu rejects aiokafka's InitProducerId v0, so no idempotent producer: acks=all plus
    # consumer-side dedupe gives the at-least-once, effect-once behaviour we rely on.
    return {**client_options(settings), "acks": "all", "enable_idempotence": False,
            "linger_ms": 2, "max_batch_size": 256 * 1024}


# -- header middleware -------------------------------------------------------------------

def outgoing_headers(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Headers for a record produced in the current context: trace context + correlation id."""
    headers: dict[str, str] = {}
    propagate.inject(headers)
    headers[CORRELATION_HEADER] = correlation_id_var.get() or uuid.uuid4().hex
    if extra:
        headers.update(extra)
    return headers


def scheduling_headers(tenant_id: str, priority: int) -> dict[str, str]:
    """Headers that let a consumer schedule a task's record fairly: its tenant and priority
    bucket (see :func:`scheduling_keys`)."""
    return {TENANT_HEADER: tenant_id, PRIORITY_HEADER: str(priority)}


def scheduling_keys(headers: Mapping[str, str]) -> tuple[str, int]:
    """(tenant, priority bucket) of a record from its :func:`scheduling_headers`: a record
    without them (an older producer, an outside one) is tenant '' at normal priority; they
    only order work, never authorise it."""
    try:
        priority = clamped(int(headers.get(PRIORITY_HEADER, NORMAL)))
    except ValueError:
        priority = NORMAL
    return headers.get(TENANT_HEADER, ""), priority


def headers_to_dict(raw: Iterable[tuple[str, bytes | None]] | Mapping[str, Any] | None) -> dict[str, str]:
    """Normalise aiokafka/faust header lists into ``{name: str}`` (undecodable bytes escaped)."""
    if raw is None:
        return {}
    items = raw.items() if isinstance(raw, Mapping) else raw
    out: dict[str, str] = {}
    for key, value in items:
        if value is None:
            out[key] = ""
        elif isinstance(value, bytes):
            out[key] = value.decode("utf-8", errors="backslashreplace")
        else:
            out[key] = str(value)
    return out


def headers_to_pairs(raw: Iterable[tuple[str, bytes | None]] | Mapping[str, Any] | None
                     ) -> tuple[tuple[str, bytes], ...]:
    """The same headers as they came, in order, as pairs of name and bytes (a repeated name
    each time): what a dead letter keeps for a replay."""
    if not raw:
        return ()
    items = raw.items() if isinstance(raw, Mapping) else raw
    return tuple((str(name), value if isinstance(value, bytes) else
                  b"" if value is None else str(value).encode()) for name, value in items)


def headers_to_kafka(headers: Mapping[str, str] | Iterable[tuple[str, bytes]]
                     ) -> list[tuple[str, bytes]]:
    """Headers as the client sends them: text values encoded, or pairs of name and bytes
    (a record's own, kept for a replay) as they are."""
    if isinstance(headers, Mapping):
        return [(k, v.encode()) for k, v in headers.items()]
    return [(k, bytes(v)) for k, v in headers]


def headers_json(pairs: Iterable[tuple[str, bytes]]) -> bytes:
    """A record's headers, every one in order and byte for byte, as JSON (a list of name and
    base64 value): how a dead letter stores them for a replay."""
    return json.dumps([[name, base64.b64encode(value).decode()] for name, value in pairs]
                      ).encode()


def headers_from_json(raw: bytes) -> list[tuple[str, bytes]]:
    """The pairs :func:`headers_json` wrote; a JSON object (letters stored before it) is the
    text map those kept."""
    loaded = json.loads(raw)
    if isinstance(loaded, dict):
        return [(str(name), str(value).encode()) for name, value in loaded.items()]
    return [(str(name), base64.b64decode(value)) for name, value in loaded]


def activate_incoming(headers: Mapping[str, str]) -> tuple[object, contextvars.Token[str | None]]:
    """Adopt the trace context and correlation id of a consumed record.

    Returns tokens for :func:`deactivate`; stream agents call this around each record so the
    spans and log lines they produce belong to the task's trace.
    """
    ctx_token = otel_context.attach(incoming_context(headers))
    corr_token = correlation_id_var.set(headers.get(CORRELATION_HEADER) or uuid.uuid4().hex)
    return ctx_token, corr_token


def incoming_context(headers: Mapping[str, str]) -> otel_context.Context:
    """The trace a record arrived in: its ``traceparent``; a record without one (an upstream
    producer that does not trace) starts a trace of its own, so each task it becomes is one
    trace, never the consumer's ambient one that every record of a batch would share."""
    context = propagate.extract(dict(headers), context=otel_context.Context())
    if trace.get_current_span(context).get_span_context().is_valid:
        return context
    root = trace.NonRecordingSpan(trace.SpanContext(
        trace_id=random.getrandbits(128) or 1, span_id=random.getrandbits(64) or 1,
        is_remote=True,
        trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED)))
    return trace.set_span_in_context(root, context)


def deactivate(tokens: tuple[object, contextvars.Token[str | None]]) -> None:
    ctx_token, corr_token = tokens
    otel_context.detach(ctx_token)  # type: ignore[arg-type]
    correlation_id_var.reset(corr_token)


class Producer:
    """A started aiokafka producer that serializes protobuf and applies the header middleware."""

    def __init__(self, settings: Settings) -> None:
        from aiokafka import AIOKafkaProducer

        self._settings = settings
        self._producer = AIOKafkaProducer(**producer_options(settings))

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def send(self, topic: Topic, key: str, message: Message,
                   headers: Mapping[str, str] | None = None) -> None:
        """Produce and wait for the broker's acknowledgement."""
        await (await self.send_nowait(topic, key, message, headers))

    async def send_nowait(self, topic: Topic, key: str, message: Message,
                          headers: Mapping[str, str] | None = None) -> Any:
        """Queue a record; returns the delivery future (await it before committing anything)."""
        value, serde_headers = encode(message)
        all_headers = outgoing_headers({**serde_headers, **(headers or {})})
        return await self._producer.send(
            topic.full_name(self._settings), value=value, key=key.encode(),
            headers=headers_to_kafka(all_headers),
        )

    async def send_raw(self, topic_name: str, key: bytes | None, value: bytes | None,
                       headers: Mapping[str, str] | Iterable[tuple[str, bytes]]) -> None:
        await (await self._producer.send(topic_name, value=value, key=key,
                                          headers=headers_to_kafka(headers)))

