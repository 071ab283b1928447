"""What the tracer provider records: nothing without an exporter (trace ids still made and
carried), everything with one, even under a caller that sent its context unsampled."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from switchyard import Settings
from switchyard.telemetry import JsonFormatter, tracer_provider


def test_without_an_exporter_no_span_is_recorded_but_trace_ids_are_made() -> None:
    tracer = tracer_provider(Settings(otel_exporter="none"), "ingest").get_tracer("t")
    with tracer.start_as_current_span("submit") as root:
        with tracer.start_as_current_span("publish") as child:
            assert not root.is_recording() and not child.is_recording()
            assert root.get_span_context().is_valid
            assert child.get_span_context().trace_id == root.get_span_context().trace_id
            assert not root.get_span_context().trace_flags.sampled
            # and a log line written meanwhile carries the trace id
            record = logging.LogRecord("ingest", logging.INFO, __file__, 1, "accepted", (),
                                       None)
            line = json.loads(JsonFormatter("ingest").format(record))
            assert line["trace_id"] == format(root.get_span_context().trace_id, "032x")


def test_with_an_exporter_an_unsampled_remote_caller_is_traced_all_the_same(
        tmp_path: Path) -> None:
    settings = Settings(otel_exporter="jsonl", otel_file=str(tmp_path / "spans.jsonl"))
    provider = tracer_provider(settings, "ingest")
    caller = SpanContext(trace_id=0x1234, span_id=0x99, is_remote=True,
                         trace_flags=TraceFlags(TraceFlags.DEFAULT))
    parent = trace.set_span_in_context(NonRecordingSpan(caller))
    span = provider.get_tracer("t").start_span("SubmitTask", context=parent)
    assert span.is_recording() and span.get_span_context().trace_flags.sampled
    assert span.get_span_context().trace_id == 0x1234
    span.end()
    provider.shutdown()
    assert "SubmitTask" in (tmp_path / "spans.jsonl").read_text()
