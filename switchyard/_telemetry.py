"""Logging, metrics and tracing set-up shared by every process.

Log lines are JSON objects that carry the deployment environment and the task id, trace id
and correlation id of whatever the process is doing, so one task's story can be grepped
across services. Metrics are exposed
on a Prometheus text endpoint per service; tracing goes to the exporter the settings name.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from opentelemetry import propagate, trace
from prometheus_client import Counter, Gauge, Histogram, start_http_server

from switchyard._kafka import correlation_id_var
from switchyard._settings import Settings

task_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "switchyard_task_id", default=None
)

_tracer = trace.get_tracer("switchyard")
_STANDARD_ATTRS = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message"}


@contextlib.contextmanager
def task_context(task_id: str) -> Iterator[None]:
    """Tag every log line emitted inside the block with ``task_id``."""
    token = task_id_var.set(task_id)
    try:
        yield
    finally:
        task_id_var.reset(token)


def current_trace_context() -> dict[str, str]:
    """The active trace context as W3C headers, to store with work that resumes later."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def stored_trace_context() -> str:
    """:func:`current_trace_context` as the JSON a ``trace_context`` jsonb column stores."""
    return json.dumps(current_trace_context())


def loaded_trace_context(stored: str | None) -> dict[str, str] | None:
    """A ``trace_context`` column read back (None when the row predates the column)."""
    return json.loads(stored) if stored else None


@contextlib.contextmanager
def continue_trace(name: str, carrier: dict[str, str] | None,
                   attributes: dict[str, str] | None = None) -> Iterator[None]:
    """A span in the trace saved in ``carrier`` (e.g. the task's), linked to the current one.

    Work that resumes on a different request continues the task's trace instead of starting
    an unrelated one; the link keeps the path to the request that triggered it. The context
    is stored with the work (a ``trace_context`` column) for: the human verdict and review's
    default actions (``review_items``), a held task decided once the models return
    (``decision_holds``), a parked executor job resumed, probed, escalated for its SLA or
    taken over (``executor_jobs``), and a task the reconciler publishes again (``tasks``).
    """
    current = trace.get_current_span().get_span_context()
    links = [trace.Link(current)] if current.is_valid else []
    parent = propagate.extract(carrier) if carrier else None
    with _tracer.start_as_current_span(name, context=parent, links=links,
                                       attributes=attributes or {}):
        yield


def exception_outline(exc: BaseException) -> str:
    """A failure as logs, spans and dead letters may keep it: each exception of the chain by
    its type and the frames it passed (file, line, function, source line), its message
    withheld. Messages may quote a document (a pack's extractor failing on a value, an
    expression's error, a value that did not parse), and nothing of a personal or health
    value may leave through them (README, Privacy)."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        frames = "".join(traceback.format_list(traceback.extract_tb(current.__traceback__)))
        kind = type(current)
        name = kind.__qualname__ if kind.__module__ == "builtins" \
            else f"{kind.__module__}.{kind.__qualname__}"
        parts.append(f"Traceback (most recent call last):\n{frames}{name} (message withheld)")
        current = current.__cause__ or current.__context__
    return "\n\nDuring handling of the above exception, another exception occurred:\n\n" \
        .join(reversed(parts))


class _OutlineFormatter(logging.Formatter):
    """The text log format, exceptions as :func:`exception_outline` gives them."""

    def formatException(self, ei: Any) -> str:  # noqa: N802 - logging's name
        return exception_outline(ei[1]) if ei and ei[1] is not None else ""


class JsonFormatter(logging.Formatter):
    """One JSON object a line; ``environment`` (``SWITCHYARD_ENVIRONMENT``) tells which
    deployment wrote it when several ship logs to one store."""

    def __init__(self, service: str, environment: str = "") -> None:
        super().__init__()
        self.service = service
        self.environment = environment

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "service": self.service,
            "environment": self.environment,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if (task_id := task_id_var.get()) is not None:
            entry["task_id"] = task_id
        if (correlation_id := correlation_id_var.get()) is not None:
            entry["correlation_id"] = correlation_id
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            entry["trace_id"] = format(span_context.trace_id, "032x")
            entry["span_id"] = format(span_context.span_id, "016x")
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info and record.exc_info[1] is not None:
            entry["exc"] = exception_outline(record.exc_info[1])
        return json.dumps(entry, default=str)


#: Libraries that read documents and quote what they read in their debug output (pdfminer
#: logs every token of a PDF: names, diagnoses): kept at WARNING even when Switchyard's own
#: logs are at DEBUG, since a document's content never goes into logs.
DOCUMENT_READER_LOGGERS = ("pdfminer", "pdfplumber", "pypdfium2", "PIL", "rapidocr",
                           "RapidOCR", "onnxruntime")


class RepeatThrottle(logging.Filter):
    """Lets one record per logger and message template through every ``window_s``; the next
    one let through says how many like it were left out since the one before. A broker that is away makes the
    Kafka client log each failed connection, fetch and heartbeat, hundreds of lines a second
    across a stack, which bury the one line that says what is wrong (the broker watch's)."""

    def __init__(self, prefixes: tuple[str, ...], window_s: float = 10.0) -> None:
        super().__init__()
        self.prefixes = prefixes
        self.window_s = window_s
        self._last: dict[tuple[str, object], float] = {}
        self._left_out: dict[tuple[str, object], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.prefixes):
            return True
        key = (record.name, record.msg)
        now = time.monotonic()
        if now - self._last.get(key, -self.window_s) < self.window_s:
            self._left_out[key] = self._left_out.get(key, 0) + 1
            return False
        self._last[key] = now
        if left_out := self._left_out.pop(key, 0):
            record.msg = f"{record.msg} ({left_out} more like it left out since the last one)"
        return True


class CancellationIsNotACrash(logging.Filter):
    """faust restarts a stream's actor after a rebalance, and stops it at shutdown, by
    cancelling it; when the agent is not itself stopping yet, mode logs that as "Crashed
    reason=CancelledError()" at ERROR with a traceback, which reads as a failure where nothing
    failed. Such a record is said at INFO, without the traceback; a real crash (any other
    exception) is left as it is."""

    CRASHED = "Crashed reason=%r"  # after mode's "[^Actor...]: " label

    def filter(self, record: logging.LogRecord) -> bool:
        if (str(record.msg).endswith(self.CRASHED) and isinstance(record.args, tuple)
                and record.args
                and isinstance(record.args[0], asyncio.CancelledError)):
            record.levelno, record.levelname = logging.INFO, "INFO"
            label = str(record.msg)[:-len(self.CRASHED)]
            record.msg = f"{label}stream actor cancelled (a rebalance or a shutdown)"
            record.args = ()
            record.exc_info = record.exc_text = None
        return True


def configure_logging(settings: Settings, service: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter(service, settings.environment))
    else:
        handler.setFormatter(
            _OutlineFormatter(f"%(asctime)s %(levelname)s {settings.environment} {service} "
                              "%(name)s: %(message)s")
        )
    # the Kafka client's per-connection noise while the broker is away, one line per 10 s
    handler.addFilter(RepeatThrottle(("aiokafka", "kafka")))
    handler.addFilter(CancellationIsNotACrash())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    # chatty clients, and the document readers (never below WARNING, whatever the level)
    for name in ("aiokafka", "faust", "mode", "kafka", *DOCUMENT_READER_LOGGERS):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))



_spans_recorded = False


def configure_tracing(settings: Settings, service: str) -> None:
    """Install :func:`tracer_provider` as the process's tracer provider."""
    global _spans_recorded
    trace.set_tracer_provider(tracer_provider(settings, service))
    _spans_recorded = settings.otel_exporter != "none"


def spans_recorded() -> bool:
    """Whether this process records spans (an exporter is configured).

    Spans made per item (one per record of a consumed batch, one per model request) are
    skipped when it does not: nothing would read them, they cost more than some of the work
    they would time, and the trace id they would carry is already the current one.
    """
    return _spans_recorded


def tracer_provider(settings: Settings, service: str) -> Any:
    """A tracer provider with the configured exporter.

    With 'none' nothing would read a span, so none is recorded (the sampler drops them all:
    no attributes, events or timings gathered per request). Trace ids are still made and
    carried — in log lines, Kafka headers and stored trace contexts — so one task's log lines
    still share a trace id. They travel marked unsampled; a process with an exporter records
    its spans of such a trace all the same (a remote parent's "unsampled" is ignored), so a
    task submitted by a command-line client without an exporter is traced by the services.
    """
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased

    provider = TracerProvider(
        resource=Resource.create(
            {"service.name": f"switchyard-{service}",
             "deployment.environment": settings.environment}
        ),
        sampler=ALWAYS_OFF if settings.otel_exporter == "none" else ParentBased(
            ALWAYS_ON, remote_parent_not_sampled=ALWAYS_ON),
    )
    if settings.otel_exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter(out=sys.stderr)))
    elif settings.otel_exporter == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        except ImportError as exc:  # pragma: no cover - depends on optional package
            raise RuntimeError(
                "SWITCHYARD_OTEL_EXPORTER=otlp needs opentelemetry-exporter-otlp-proto-grpc"
            ) from exc
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(settings.otel_endpoint)))
    elif settings.otel_exporter == "jsonl":
        provider.add_span_processor(BatchSpanProcessor(
            JsonlSpanExporter(Path(settings.otel_file)), schedule_delay_millis=200))
    elif settings.otel_exporter != "none":
        raise ValueError(f"SWITCHYARD_OTEL_EXPORTER must be none, console, otlp or jsonl, "
                         f"not {settings.otel_exporter!r}")
    return provider


class JsonlSpanExporter:
    """Appends finished spans as JSON lines to a file shared by every process of a stack.

    For environments without a collector (the embedded stack, tests): each line is one span
    with its trace id, parent and links, so a whole task's trace can be reassembled offline.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def export(self, spans: Any) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        lines = []
        for span in spans:
            context = span.get_span_context()
            lines.append(json.dumps({
                "name": span.name,
                "service": span.resource.attributes.get("service.name"),
                "trace_id": format(context.trace_id, "032x"),
                "span_id": format(context.span_id, "016x"),
                "parent_id": format(span.parent.span_id, "016x") if span.parent else None,
                "kind": span.kind.name,
                "start_ns": span.start_time, "end_ns": span.end_time,
                "status": span.status.status_code.name,
                "attributes": dict(span.attributes or {}),
                "links": [{"trace_id": format(link.context.trace_id, "032x"),
                           "span_id": format(link.context.span_id, "016x")}
                          for link in span.links],
            }, default=str))
        # One write per batch with O_APPEND keeps lines from several processes whole.
        with open(self._path, "a", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def start_metrics_endpoint(settings: Settings, port: int) -> None:
    """Serve Prometheus text metrics on ``bind_host:port`` (port 0 turns it off)."""
    if port:
        start_http_server(port, addr=settings.bind_host)


# -- metrics every service shares (service-specific ones live beside their code) ---------

RECORDS_PROCESSED = Counter(
    "switchyard_records_processed_total",
    "Kafka records a stream processor finished, by outcome.",
    ["service", "topic", "outcome"],
)
DEAD_LETTERS = Counter(
    "switchyard_dead_letters_total",
    "Records sent to the dead-letter topic, by reason code.",
    ["service", "source_topic", "reason_code"],
)
STAGE_SECONDS = Histogram(
    "switchyard_stage_seconds",
    "Time a stage spent on one record (one batch, for a stream processor that handles "
    "whole batches).",
    ["service", "stage"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
STREAM_BATCH_RECORDS = Histogram(
    "switchyard_stream_batch_records",
    "Records a stream processor took in one batch (one handler call, one transaction).",
    ["service", "topic"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096),
)
TASKS_TERMINAL = Counter(
    "switchyard_tasks_terminal_total",
    "Tasks that reached a terminal status, by status.",
    ["service", "status"],
)
IN_FLIGHT = Gauge(
    "switchyard_in_flight",
    "Work items currently being processed.",
    ["service"],
)
GRPC_REQUESTS = Counter(
    "switchyard_grpc_requests_total",
    "gRPC requests handled, by method and status code.",
    ["service", "method", "code"],
)
GRPC_SECONDS = Histogram(
    "switchyard_grpc_request_seconds",
    "gRPC request latency.",
    ["service", "method"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
