"""Stream processors: the faust app factory and the per-record middleware every agent uses.

An agent hands each batch of Kafka events to :func:`process_batch` with a plain async handler
(``Record -> None``). The middleware around the handler is the same for every service:
trace context and correlation id are adopted from the headers, records the handler rejects
go to the dead-letter topic with the reason and the original bytes, transient failures
(database or broker unavailable) are retried with backoff without committing, and records of
one task are handled in order while different tasks in a batch run concurrently.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import asyncpg
import faust
from aiokafka.errors import KafkaError
from google.protobuf.message import Message
from opentelemetry import trace
from prometheus_client import Counter, Gauge

from switchyard._dataclass import letter_reason, matching_hash, matching_key
from switchyard._dispatch import FairDispatcher
from switchyard._fairness import parse_weights
from switchyard._faust_transport import transport_class
from switchyard._kafka import (
    TENANT_HEADER,
    Producer,
    activate_incoming,
    deactivate,
    headers_json,
    headers_to_dict,
    headers_to_pairs,
    scheduling_keys,
)
from switchyard._payloads import (
    DEAD_LETTER_HEADERS,
    DEAD_LETTER_KEY,
    DEAD_LETTER_VALUE,
    codec_for,
)
from switchyard._serde import (
    CONTENT_TYPE_HEADER,
    JSON_MEDIA_TYPE,
    PROTOBUF_MEDIA_TYPE,
    SerdeError,
    decode,
    parse_content_type,
)
from switchyard._settings import Settings
from switchyard._telemetry import (
    DEAD_LETTERS,
    RECORDS_PROCESSED,
    STAGE_SECONDS,
    STREAM_BATCH_RECORDS,
    exception_outline,
    spans_recorded,
    task_id_var,
)
from switchyard._topics import DEAD_LETTER, Topic
from switchyard._transient import TRANSIENT_ERRORS

log = logging.getLogger(__name__)
tracer = trace.get_tracer("switchyard.streams")

MAX_HANDLER_ATTEMPTS = 5


class RejectRecord(Exception):
    """A record can never be processed (bad input); it goes to the dead-letter topic.

    ``tenant_id``: whose letter it is, when the handler read that from the record itself (the
    tenant its payload and header name); None leaves it to the record's ``x-tenant-id``
    header, '' makes it an operator's (the record named two tenants)."""

    def __init__(self, code: str, reason: str, tenant_id: str | None = None) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason
        self.tenant_id = tenant_id


@dataclass(frozen=True)
class Record:
    """A consumed record. ``headers`` as text for reading (a repeated name's last value);
    ``raw_headers`` every header as it came, in order, which a dead letter keeps for replay
    (empty: derive them from ``headers``)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]
    timestamp: float
    raw_headers: tuple[tuple[str, bytes], ...] = ()

    def header_list(self) -> list[tuple[str, bytes]]:
        """The headers as the record carried them (from ``headers`` when none were kept)."""
        if self.raw_headers:
            return list(self.raw_headers)
        return [(name, value.encode()) for name, value in self.headers.items()]


M = TypeVar("M", bound=Message)
T = TypeVar("T")


def decode_record(record: Record, message_type: type[M], from_json: Callable[[bytes], M]
                  ) -> M:
    """The message an intake-style record carries, in the form its ``content-type`` names:
    ``application/json`` (or no header) through ``from_json`` (which raises
    :class:`RejectRecord` with its own reasons), anything else as protobuf through the serde,
    whose error (wrong or unsupported type, malformed bytes) becomes the record's reason.
    Two different ``content-type`` headers are refused: which form is meant cannot be told
    (as a JSON object naming one field twice is refused), and the last must not win in
    silence."""
    named = {value for name, value in record.header_list()
             if name.lower() == CONTENT_TYPE_HEADER}
    if len(named) > 1:
        raise RejectRecord("unsupported_content_type",
                           f"{CONTENT_TYPE_HEADER}: {len(named)} different values; a record "
                           "has one form (send the header once)")
    media, _ = parse_content_type(record.headers.get(CONTENT_TYPE_HEADER) or JSON_MEDIA_TYPE)
    if media == JSON_MEDIA_TYPE:
        return from_json(record.value or b"")
    try:
        return decode(record.value or b"", record.headers, message_type)
    except SerdeError as exc:
        if exc.code == "unsupported_content_type":  # JSON is as welcome as protobuf here
            raise RejectRecord(exc.code, f"expected {JSON_MEDIA_TYPE} or {PROTOBUF_MEDIA_TYPE}"
                                         f"; messageType={message_type.DESCRIPTOR.full_name}, "
                                         f"got {media!r}") from None
        raise RejectRecord(exc.code, exc.reason) from None


Handler = Callable[[Record], Awaitable[None]]
#: A batch handler takes a whole batch and returns the records it refused, each with why;
#: the rest of the batch counts as processed.
BatchHandler = Callable[[list[Record]], Awaitable[list[tuple[Record, RejectRecord]]]]

STREAM_IN_HAND = Gauge(
    "switchyard_stream_records_in_hand",
    "Records a fair stream processor has read and not finished (waiting for a batch slot, "
    "held behind their task's earlier records, or running); at stream_fair_window it stops "
    "reading.", ["service", "topic"],
)
SPARSE_RECORDS = Counter(
    "switchyard_stream_sparse_records",
    "Records a fair stream processor ran in its extra batch for sparse tenants (those with "
    "at most stream_fair_sparse_records waiting) while every batch slot was busy.",
    ["service", "topic"],
)

ASSIGNED_PARTITIONS = Gauge(
    "switchyard_consumer_assigned_partitions",
    "Partitions this process consumes now, one series per partition (value 1); the consumer "
    "group's split across replicas, which the broker may not report (Tansu does not).",
    ["service", "topic", "partition"],
)


def _track_assignment(app: faust.App, service: str) -> None:
    held: set[tuple[str, str, str]] = set()

    async def on_assigned(_sender: object, assigned: set[Any], **_: object) -> None:
        for labels in held:
            ASSIGNED_PARTITIONS.remove(*labels)
        held.clear()
        for tp in assigned:
            labels = (service, tp.topic, str(tp.partition))
            ASSIGNED_PARTITIONS.labels(*labels).set(1)
            held.add(labels)
        log.info("assigned partitions: %s", ", ".join(
            f"{t}[{p}]" for _, t, p in sorted(held)) or "none")

    app.on_partitions_assigned.connect(on_assigned)


def create_app(settings: Settings, service: str) -> faust.App:
    """A faust app for one service: its own consumer group, no web server, no leader topic.

    Correctness never rests on faust tables or end offsets (see docs/architecture.md: Tansu
    gets those wrong); PostgreSQL is the system of record and consumers dedupe there.
    """
    options: dict[str, Any] = {}
    if settings.kafka_sasl_mechanism:
        ssl_context = None
        if settings.kafka_security_protocol == "SASL_SSL":
            import ssl

            ssl_context = ssl.create_default_context(cafile=settings.kafka_ssl_cafile or None)
        options["broker_credentials"] = faust.SASLCredentials(
            username=settings.kafka_sasl_username, password=settings.kafka_sasl_password,
            mechanism=settings.kafka_sasl_mechanism, ssl_context=ssl_context,
        )
    elif settings.kafka_security_protocol == "SSL":
        import ssl

        options["broker_credentials"] = ssl.create_default_context(
            cafile=settings.kafka_ssl_cafile or None
        )
    session_timeout_s = settings.kafka_session_timeout_ms / 1000
    # faust makes an (unused: tables live in memory) data directory; keep it in the state
    # directory instead of wherever the process was started
    datadir = Path(settings.state_dir) / "faust"
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        f"{settings.kafka_topic_prefix}switchyard-{service}",
        broker=[f"kafka://{host}" for host in settings.kafka_bootstrap_servers.split(",")],
        store="memory://",
        web_enabled=False,
        topic_allow_declare=False,
        topic_disable_leader=True,
        broker_session_timeout=session_timeout_s,
        broker_heartbeat_interval=max(0.5, session_timeout_s / 6),
        broker_rebalance_timeout=session_timeout_s * 2,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        stream_wait_empty=False,
        datadir=str(datadir / "{conf.name}-data"),
        **options,
    )
    app.transport = transport_class(settings.kafka_fetch_max_wait_ms)(
        app.conf.broker_consumer, app)
    _track_assignment(app, service)
    return app


class StreamsCrashed(RuntimeError):
    """faust's consumer stopped reading; the reason is in the message."""


async def watch_streams(app: faust.App, interval_s: float = 1.0) -> None:
    """Raise once faust's consumer has crashed. faust crashes its fetcher on a fetch it
    cannot read (a record batch in a codec no library here decodes, a corrupt batch) and
    carries on otherwise: the process keeps answering gRPC, healthy, while none of its
    topics is read. Run as a critical supervised loop, the crash becomes a failure the
    process reports (NOT_SERVING, ``switchyard_background_loop_up`` 0) and exits on, to be
    restarted, rather than an intake that stopped in silence."""
    while True:
        for service in (app, app._fetcher, app.consumer):
            if service.crashed:
                raise StreamsCrashed(f"the stream consumer stopped reading: "
                                     f"{type(service).__name__} crashed with "
                                     f"{service.crash_reason!r}")
        await asyncio.sleep(interval_s)


def faust_topic(app: faust.App, settings: Settings, topic: Topic) -> faust.TopicT:
    return app.topic(topic.full_name(settings), key_type=bytes, value_type=bytes,
                     key_serializer="raw", value_serializer="raw")


def to_record(event: Any) -> Record:
    message = event.message
    return Record(
        topic=message.topic, partition=message.partition, offset=message.offset,
        key=message.key, value=message.value, headers=headers_to_dict(message.headers),
        timestamp=message.timestamp, raw_headers=headers_to_pairs(message.headers),
    )


def one_tenant(named: str, headers: dict[str, str]) -> str:
    """The tenant a record names, in its payload (``named``) or its ``x-tenant-id`` header;
    '' when the two name different tenants (its letter is then an operator's: neither may
    read what the other sent)."""
    named, from_header = named.strip(), headers.get(TENANT_HEADER, "").strip()
    return "" if named and from_header and named != from_header else named or from_header


def letter_tenant(headers: dict[str, str], named: str | None = None) -> str:
    """The tenant a dead letter belongs to: the one the handler found the record naming
    (``named``; '' when it named two), else its ``x-tenant-id`` header; only a well-formed
    tenant id, else '' (operators only)."""
    from switchyard._submissions import tenant_problems

    tenant = (headers.get(TENANT_HEADER, "") if named is None else named).strip()
    return tenant if tenant and not tenant_problems(tenant, TENANT_HEADER) else ""


#: The largest dead letter published whole: the producer sends records up to 1 MiB (aiokafka's
#: ``max_request_size``), less room for the key and headers. A larger letter goes to the topic
#: without its original value; the table keeps the bytes (``DeadLetter.original_value_size``).
MAX_PUBLISHED_LETTER_BYTES = 960 * 1024


def record_key_hash(key: bytes, record_key: bytes) -> str:
    """The keyed hash ``dead_letters.original_key_hash`` keeps of a record's key (``key`` is
    the deployment's matching key): what ListDeadLetters' ``record_key`` filter compares,
    since the key itself is sealed. '' for a record without a key."""
    return matching_hash(key, "", "dead_letter_record_key", record_key.hex())


class DeadLetterSink:
    """Writes rejected records to the dead-letter topic (and PostgreSQL, for operators)."""

    def __init__(self, settings: Settings, service: str, producer: Producer,
                 pool: asyncpg.Pool | None) -> None:
        self._settings = settings
        self._service = service
        self._producer = producer
        self._pool = pool
        self._hash_key = matching_key(settings)

    async def send(self, record: Record, code: str, reason: str,
                   tenant_id: str | None = None) -> None:
        from google.protobuf.timestamp_pb2 import Timestamp

        from switchyard.v1 import DeadLetter, RecordHeader

        failed_at = Timestamp()
        failed_at.GetCurrentTime()
        dead_letter_id = str(uuid.uuid4())
        header_list = record.header_list()
        tenant = letter_tenant(record.headers, tenant_id)
        # logged, stored in plaintext and listed: no piece of the record quoted in it
        reason = letter_reason(reason, record.value or b"", record.key or b"",
                               *(part for name, value in header_list
                                 for part in (name.encode(), value)))
        letter = DeadLetter(
            dead_letter_id=dead_letter_id, source_topic=record.topic, partition=record.partition,
            offset=record.offset, original_key=record.key or b"",
            original_value=record.value or b"", original_headers=record.headers,
            reason_code=code, reason=reason, failed_at=failed_at, service=self._service,
            original_header_list=[RecordHeader(key=name, value=value)
                                  for name, value in header_list],
            tenant_id=tenant, original_value_size=len(record.value or b""),
        )
        if letter.ByteSize() > MAX_PUBLISHED_LETTER_BYTES:
            # the bytes stay in the table below; a record this large would stop the sink
            letter.ClearField("original_value")
        codec = codec_for(self._settings)
        # The record's offset is committed once this returns, so the letter must land:
        # retry through broker or database trouble rather than lose the bad record.
        attempt = 0
        while True:
            attempt += 1
            try:
                await self._producer.send(DEAD_LETTER, record.topic, letter)
                if self._pool is not None:
                    await self._pool.execute(
                        "INSERT INTO dead_letters (dead_letter_id, service, source_topic, "
                        "reason_code, reason, original_value, tenant_id, original_key, "
                        "original_headers, source_partition, source_offset, "
                        "original_key_hash) "
                        "VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12) "
                        "ON CONFLICT (dead_letter_id) DO NOTHING",
                        uuid.UUID(dead_letter_id), self._service, record.topic, code, reason,
                        None if record.value is None else codec.seal(
                            dead_letter_id, record.value, DEAD_LETTER_VALUE),
                        # what a replay needs to re-publish the record as it was read
                        tenant,
                        None if record.key is None else codec.seal(
                            dead_letter_id, record.key, DEAD_LETTER_KEY),
                        codec.seal(dead_letter_id, headers_json(header_list),
                                   DEAD_LETTER_HEADERS),
                        record.partition, record.offset,
                        record_key_hash(self._hash_key, record.key) if record.key else None,
                    )
                break
            except TRANSIENT_ERRORS as exc:
                if isinstance(exc, KafkaError) and not exc.retriable and \
                        letter.original_value and self._pool is not None:
                    # the broker refuses the letter as it is (its own record limit is
                    # lower): send it without the bytes, which the table keeps
                    log.warning("dead letter refused with its original value (%r); sending "
                                "it without, the table keeps the bytes", exc)
                    letter.ClearField("original_value")
                    continue
                delay = min(30.0, 0.2 * 2 ** min(attempt, 8))
                log.warning("dead-letter write failed, retrying in %.1fs: %r", delay, exc)
                await asyncio.sleep(delay)
        DEAD_LETTERS.labels(self._service, record.topic, code).inc()
        log.warning("dead-lettered record", extra={
            "source_topic": record.topic, "partition": record.partition,
            "offset": record.offset, "reason_code": code, "reason": reason})


async def _handle_one(record: Record, handler: Handler, dead_letters: DeadLetterSink,
                      service: str) -> None:
    tokens = activate_incoming(record.headers)
    started = time.perf_counter()
    try:
        attempt = 0
        while True:
            attempt += 1
            try:
                # a failure is recorded by its type only (no message, no stack: they may
                # quote the record's document; see exception_outline)
                with tracer.start_as_current_span(
                    f"{service} process {record.topic}",
                    kind=trace.SpanKind.CONSUMER,
                    attributes={"messaging.system": "kafka",
                                "messaging.destination.name": record.topic,
                                "messaging.kafka.partition": record.partition,
                                "messaging.kafka.offset": record.offset},
                    record_exception=False, set_status_on_exception=False,
                ) as span:
                    try:
                        await handler(record)
                    except BaseException as exc:
                        span.set_status(trace.Status(trace.StatusCode.ERROR,
                                                     type(exc).__name__))
                        span.set_attribute("exception.type", type(exc).__name__)
                        raise
                RECORDS_PROCESSED.labels(service, record.topic, "ok").inc()
                break
            except (RejectRecord, SerdeError) as exc:
                await dead_letters.send(record, exc.code, exc.reason,
                                        getattr(exc, "tenant_id", None))
                RECORDS_PROCESSED.labels(service, record.topic, "dead_lettered").inc()
                break
            except TRANSIENT_ERRORS as exc:
                # Infrastructure trouble says nothing about the record: wait and retry, never
                # dead-letter a good record because a dependency blinked.
                delay = min(30.0, 0.2 * 2 ** min(attempt, 8)) * random.uniform(0.5, 1.0)
                log.warning("transient failure, retrying in %.1fs: %r", delay, exc)
                await asyncio.sleep(delay)
            except Exception as exc:  # a bug or poison record: bounded retries, then park it
                if attempt >= MAX_HANDLER_ATTEMPTS:
                    await dead_letters.send(
                        record, "processing_failed", exception_outline(exc))
                    RECORDS_PROCESSED.labels(service, record.topic, "dead_lettered").inc()
                    break
                log.exception("handler failed (attempt %d)", attempt)
                await asyncio.sleep(0.05 * attempt)
    finally:
        STAGE_SECONDS.labels(service, record.topic).observe(time.perf_counter() - started)
        deactivate(tokens)


async def process_batch(records: Sequence[Record], handler: Handler,
                        dead_letters: DeadLetterSink, service: str) -> None:
    """Handle a batch: per-key order kept, different keys concurrently; returns when all done."""
    by_key: dict[bytes | None, list[Record]] = defaultdict(list)
    for record in records:
        by_key[record.key].append(record)

    async def run_in_order(group: list[Record]) -> None:
        for record in group:
            await _handle_one(record, handler, dead_letters, service)

    await asyncio.gather(*(run_in_order(group) for group in by_key.values()))


class LetterSink(Protocol):
    """Where refused records go (:class:`DeadLetterSink` in a service)."""

    async def send(self, record: Record, code: str, reason: str,
                   tenant_id: str | None = None) -> None: ...


async def process_record_batch(records: Sequence[Record], handler: BatchHandler,
                               dead_letters: LetterSink, service: str,
                               max_attempts: int = MAX_HANDLER_ATTEMPTS,
                               sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
                               ) -> None:
    """Hand a whole batch to ``handler`` (a high-rate stream: one call per batch, not per
    record); returns when every record was processed or dead-lettered.

    * the records ``handler`` returns as refused go to the dead-letter sink with their reason
      and original bytes; the others count as processed;
    * a transient failure (database or broker unavailable) retries the same batch with
      backoff, never dead-letters anything;
    * any other exception says one record may be poison: the batch is split in halves and
      each half handled on its own, down to single records; a single record that keeps
      failing (``max_attempts``) is dead-lettered as ``processing_failed``, and every other
      record of the batch is still processed. A half handled again may repeat side effects
      of the failed call (at least once: consumers downstream dedupe).
    """
    if records:
        STREAM_BATCH_RECORDS.labels(service, records[0].topic).observe(len(records))
        await _batch(list(records), handler, dead_letters, service, max_attempts, sleep)


async def _batch(records: list[Record], handler: BatchHandler, dead_letters: LetterSink,
                 service: str, max_attempts: int,
                 sleep: Callable[[float], Awaitable[None]]) -> None:
    topic = records[0].topic
    started = time.perf_counter()
    transient = failures = 0
    while True:
        try:
            with tracer.start_as_current_span(
                f"{service} process {topic} batch", kind=trace.SpanKind.CONSUMER,
                attributes={"messaging.system": "kafka", "messaging.destination.name": topic,
                            "messaging.batch.message_count": len(records)},
                record_exception=False, set_status_on_exception=False,
            ) as span:
                try:
                    rejected = await handler(records)
                except BaseException as exc:
                    span.set_status(trace.Status(trace.StatusCode.ERROR, type(exc).__name__))
                    span.set_attribute("exception.type", type(exc).__name__)
                    raise
        except TRANSIENT_ERRORS as exc:
            transient += 1
            delay = min(30.0, 0.2 * 2 ** min(transient, 8)) * random.uniform(0.5, 1.0)
            log.warning("transient failure of a batch of %d, retrying in %.1fs: %r",
                        len(records), delay, exc)
            await sleep(delay)
            continue
        except Exception as exc:  # a bug or a poison record: isolate it
            if len(records) > 1:
                log.warning("batch of %d failed (%s); splitting it to isolate the record",
                            len(records), type(exc).__name__)
                middle = len(records) // 2
                await _batch(records[:middle], handler, dead_letters, service, max_attempts,
                             sleep)
                await _batch(records[middle:], handler, dead_letters, service, max_attempts,
                             sleep)
                return
            failures += 1
            if failures >= max_attempts:
                await dead_letters.send(records[0], "processing_failed",
                                        exception_outline(exc))
                RECORDS_PROCESSED.labels(service, topic, "dead_lettered").inc()
                return
            log.warning("handler failed on one record (attempt %d): %s", failures,
                        exception_outline(exc))
            await sleep(0.05 * failures)
            continue
        for record, reject in rejected:
            await dead_letters.send(record, reject.code, reject.reason, reject.tenant_id)
        if rejected:
            RECORDS_PROCESSED.labels(service, topic, "dead_lettered").inc(len(rejected))
        if len(records) > len(rejected):
            RECORDS_PROCESSED.labels(service, topic, "ok").inc(len(records) - len(rejected))
        STAGE_SECONDS.labels(service, topic).observe(time.perf_counter() - started)
        return


def decode_batch(records: Sequence[Record], message_type: type[M],
                 check: Callable[[M], object] | None = None
                 ) -> tuple[list[tuple[Record, M]], list[tuple[Record, RejectRecord]]]:
    """A batch handler's first step: each record decoded as ``message_type`` (and passed to
    ``check``, which raises :class:`RejectRecord` for a message that can never be
    processed); returns the (record, message) pairs and the refused records with their
    reason, for the handler to return."""
    decoded: list[tuple[Record, M]] = []
    refused: list[tuple[Record, RejectRecord]] = []
    for record in records:
        try:
            message = decode(record.value, record.headers, message_type)
            if check is not None:
                check(message)
        except SerdeError as exc:
            refused.append((record, RejectRecord(exc.code, exc.reason)))
        except RejectRecord as exc:
            refused.append((record, exc))
        else:
            decoded.append((record, message))
    return decoded, refused


#: The record whose work runs in a :func:`record_context` (its span's subject).
_current_record: contextvars.ContextVar[Record | None] = contextvars.ContextVar(
    "switchyard_record", default=None)


def record_context(record: Record, task_id: str | None = None) -> contextvars.Context:
    """A copy of the current context that has adopted ``record``'s trace context and
    correlation id (and tags log lines with ``task_id``): a batch handler runs each record's
    own work in it (:func:`run_in`, :func:`run_each`), so what that work logs and sends
    belongs to the record's trace, inside a consumer span of its own when spans are recorded
    (:func:`~switchyard._telemetry.spans_recorded`), as it does when records are handled one
    at a time."""
    context = contextvars.copy_context()
    context.run(activate_incoming, record.headers)
    context.run(_current_record.set, record)
    if task_id:
        context.run(task_id_var.set, task_id)
    return context


def run_in(context: contextvars.Context, aw: Awaitable[T], span: bool = True
           ) -> asyncio.Task[T]:
    """Run ``aw`` as a task in ``context`` (a :func:`record_context`: in the record's trace,
    within a consumer span of its own when spans are recorded and ``span``; a later part of
    a record's work passes False, so the record has one span, not one per part)."""
    work = _awaited(aw) if span else aw
    return asyncio.create_task(work, context=context)  # type: ignore[arg-type]


async def run_each(work: Iterable[tuple[contextvars.Context, Awaitable[T]]],
                   span: bool = True) -> list[T]:
    """Run each awaitable concurrently in its own context (:func:`record_context`; ``span``
    as :func:`run_in`); their results in order. The first failure is raised once all have
    ended (none is left running behind the batch), so :func:`process_record_batch` retries or
    splits the batch."""
    tasks = [run_in(context, aw, span) for context, aw in work]
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results  # type: ignore[return-value]


async def run_by_key(work: Iterable[tuple[str, Record, Callable[[], Awaitable[object]]]]
                     ) -> list[tuple[Record, RejectRecord]]:
    """Run each record's work (``work()``, a factory, called when its turn comes) in the
    record's context (:func:`record_context`, log lines tagged with the key): the records of
    one key one after another in the order given, different keys concurrently. A task's
    decisions or verdicts must not overtake one another; other tasks need not wait for them.

    A :class:`RejectRecord` refuses only its record (returned, to be dead-lettered) and the
    key's later records still run; any other failure is raised once every key's run has ended
    (as :func:`run_each`), so :func:`process_record_batch` retries or splits the batch.
    """
    by_key: dict[str, list[tuple[Record, Callable[[], Awaitable[object]]]]] = {}
    for key, record, make in work:
        by_key.setdefault(key, []).append((record, make))

    async def in_order(key: str, entries: list[tuple[Record, Callable[[], Awaitable[object]]]]
                       ) -> list[tuple[Record, RejectRecord]]:
        refused = []
        for record, make in entries:
            try:
                await run_in(record_context(record, key), make())
            except RejectRecord as exc:
                refused.append((record, exc))
        return refused

    # the keys' runs in plain copies of the context: each record's span is its own
    runs = await run_each((contextvars.copy_context(), in_order(key, entries))
                          for key, entries in by_key.items())
    return [refused for run in runs for refused in run]


async def _awaited(aw: Awaitable[T]) -> T:
    record = _current_record.get()
    if record is None or not spans_recorded():
        return await aw
    # a failure is recorded by its type only (no message: it may quote the document)
    with tracer.start_as_current_span(
        f"{_service_name()} process {record.topic}", kind=trace.SpanKind.CONSUMER,
        attributes={"messaging.system": "kafka", "messaging.destination.name": record.topic,
                    "messaging.kafka.partition": record.partition,
                    "messaging.kafka.offset": record.offset},
        record_exception=False, set_status_on_exception=False,
    ) as span:
        try:
            return await aw
        except BaseException as exc:
            span.set_status(trace.Status(trace.StatusCode.ERROR, type(exc).__name__))
            span.set_attribute("exception.type", type(exc).__name__)
            raise


def _service_name() -> str:
    resource = getattr(trace.get_tracer_provider(), "resource", None)
    name = resource.attributes.get("service.name", "") if resource is not None else ""
    return str(name).removeprefix("switchyard-") or "switchyard"


def attach_batch_agent(app: faust.App, settings: Settings, topic: Topic,
                       handler: BatchHandler, dead_letters: Callable[[], DeadLetterSink],
                       service: str, batch_size: int, batch_window_s: float) -> None:
    """Register a faust agent that feeds whole batches of ``topic`` to ``handler``
    (:func:`process_record_batch`); offsets are committed once a batch returned."""

    async def agent(stream: faust.StreamT) -> None:
        async for events in _batches(stream, batch_size, batch_window_s):
            await process_record_batch([to_record(e) for e in events], handler,
                                       dead_letters(), service)

    agent.__name__ = f"{service}_{topic.name.replace('-', '_')}_batches"
    agent.__qualname__ = agent.__name__
    app.agent(faust_topic(app, settings, topic), name=agent.__name__)(agent)


def attach_fair_agent(app: faust.App, settings: Settings, topic: Topic,
                      handler: BatchHandler, dead_letters: Callable[[], DeadLetterSink],
                      service: str) -> None:
    """Register a faust agent that feeds ``topic`` to ``handler`` in micro-batches chosen by
    :class:`~switchyard._dispatch.FairDispatcher`: up to ``stream_fair_window`` records read
    ahead, ``stream_fair_batches`` batches of up to ``stream_batch_max_records`` at a time
    (a part batch waits up to ``stream_batch_window_ms`` for more; one more batch of sparse
    tenants' records, ``stream_fair_sparse_records``),
    tenants served by ``tenant_weights`` and priority (:func:`scheduling_keys` of each
    record's headers), a key's records in log order. Each record is acknowledged when its
    batch returned; offsets are committed up to the first record not yet done."""
    name = f"{service}_{topic.name.replace('-', '_')}_fair"
    weights = parse_weights(settings.tenant_weights)

    async def agent(stream: faust.StreamT) -> None:
        app = stream.app

        async def work(events: list[tuple[Any, Record]]) -> None:
            await process_record_batch([record for _, record in events], handler,
                                       dead_letters(), service)
            for event, _ in events:
                event.ack()

        dispatcher: FairDispatcher[tuple[Any, Record]] = FairDispatcher(
            work, window=settings.stream_fair_window,
            batch_size=settings.stream_batch_max_records,
            concurrency=settings.stream_fair_batches, weights=weights,
            linger_s=settings.stream_batch_window_ms / 1000,
            sparse_limit=settings.stream_fair_sparse_records,
            on_sparse_batch=SPARSE_RECORDS.labels(service, topic.name).inc)
        STREAM_IN_HAND.labels(service, topic.name).set_function(lambda: dispatcher.in_hand)
        async with asyncio.TaskGroup() as group:
            group.create_task(dispatcher.run(), name=f"{name} dispatch")
            async for event in _drained(stream.channel.queue):
                if not _taken(app, event):
                    continue
                record = to_record(event)
                tenant, priority = scheduling_keys(record.headers)
                await dispatcher.submit((event, record), tenant=tenant, priority=priority,
                                        key=record.key)

    agent.__name__ = agent.__qualname__ = name
    app.agent(faust_topic(app, settings, topic), name=name)(agent)


def _taken(app: Any, event: Any) -> bool:
    """Whether an event read from a stream's channel is this assignment's to process (and
    then tracked, so its offset is committed once it is acknowledged), as faust's own stream
    iteration decides: one fetched before a rebalance is acknowledged and dropped, since the
    new assignment reads it again."""
    message = event.message
    if not app.flow_control.is_active() or message.generation_id != app.consumer_generation_id:
        event.ack()
        return False
    if not message.tracked:
        message.tracked = True
        app.consumer.track_message(message)
    return True


async def _batches(stream: Any, max_records: int, window_s: float
                   ) -> AsyncIterator[list[Any]]:
    """The stream's events in batches of up to ``max_records``: a batch starts with the
    first event to arrive and takes what arrives within ``window_s`` after it. A batch's
    events are acknowledged when the caller asks for the next batch, that is once the
    caller's work on it returned (a batch whose work raised is never acknowledged).

    Not faust's ``Stream.take_events``: that waits for a full buffer with ``window_s`` as a
    poll period, so an idle agent wakes (and builds futures) a hundred times a second at the
    10 ms window, 5-7% of a core per idle service; here an idle agent sleeps until an event
    comes. Events are read from the channel's queue as :func:`_drained` reads them.
    """
    app, queue = stream.app, stream.channel.queue
    loop = asyncio.get_running_loop()
    while True:
        try:
            first = await queue.get()
        except StopAsyncIteration:   # faust ends the stream at shutdown (see _drained)
            return
        batch = [first] if _taken(app, first) else []
        deadline = loop.time() + window_s
        ended = False
        while len(batch) < max_records:
            try:
                if queue.empty():
                    remaining = deadline - loop.time()
                    if remaining <= 0 or not batch:
                        break
                    event = await asyncio.wait_for(queue.get(), remaining)
                else:
                    event = queue.get_nowait()
            except TimeoutError:
                break
            except StopAsyncIteration:
                ended = True
                break
            if _taken(app, event):
                batch.append(event)
        if batch:
            yield batch
            for event in batch:
                event.ack()
        if ended:
            return


async def _drained(queue: Any) -> AsyncIterator[Any]:
    """Every event in a faust channel's queue, as soon as it is there.

    Not ``async for event in stream``: faust's stream yields to the event loop before each
    event (``await sleep(0)``), one turn of a busy loop per record; here one turn takes
    everything queued (the consumer puts a fetched batch there in one go:
    switchyard/_faust_transport.py). At shutdown faust ends the stream by throwing
    StopAsyncIteration into the queue: the events end there (raised inside this generator it
    would turn into a RuntimeError, reported as the agent crashing on every clean stop).
    """
    while True:
        try:
            batch = [await queue.get()]
        except StopAsyncIteration:
            return
        while not queue.empty():
            batch.append(queue.get_nowait())
        for event in batch:
            yield event


def attach_agent(app: faust.App, settings: Settings, topic: Topic, handler: Handler,
                 dead_letters: Callable[[], DeadLetterSink], service: str,
                 batch_size: int = 64, batch_window_s: float = 0.01) -> None:
    """Register a faust agent that feeds ``topic`` to ``handler`` through the middleware."""

    async def agent(stream: faust.StreamT) -> None:
        async for events in _batches(stream, batch_size, batch_window_s):
            await process_batch([to_record(e) for e in events], handler, dead_letters(), service)

    agent.__name__ = f"{service}_{topic.name.replace('-', '_')}"
    agent.__qualname__ = agent.__name__
    app.agent(faust_topic(app, settings, topic), name=agent.__name__)(agent)
