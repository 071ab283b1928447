"""SWITCHYARD_OTEL_EXPORTER=otlp (what values-production.yaml sets) works with the installed
packages: tracing is configured through the services' own code path and spans reach an OTLP
gRPC receiver.

The receiver is the OpenTelemetry collector's trace service, served here from the protos the
exporter itself ships (opentelemetry-proto), so the bytes on the wire are the real protocol.
Without the exporter package ``configure_tracing`` raised at start and every service of a
production install died.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from concurrent import futures

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from switchyard.stack import free_port


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.requests: list[trace_service_pb2.ExportTraceServiceRequest] = []

    def Export(self, request: trace_service_pb2.ExportTraceServiceRequest,
               context: grpc.ServicerContext) -> trace_service_pb2.ExportTraceServiceResponse:
        self.requests.append(request)
        return trace_service_pb2.ExportTraceServiceResponse()


SERVICE = textwrap.dedent("""
    from opentelemetry import trace
    from switchyard import Settings
    from switchyard._telemetry import configure_tracing, continue_trace

    configure_tracing(Settings.from_env(), "ingest")
    with continue_trace("otlp-check", None, {"switchyard.check": "yes"}):
        pass
    assert trace.get_tracer_provider().force_flush(10_000)
    trace.get_tracer_provider().shutdown()
    print("exported")
""")


def test_otlp_exporter_sends_spans_to_a_collector() -> None:
    collector = Collector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, server)
    port = free_port()
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    try:
        env = {**os.environ, "SWITCHYARD_OTEL_EXPORTER": "otlp",
               "SWITCHYARD_OTEL_ENDPOINT": f"http://127.0.0.1:{port}",
               "SWITCHYARD_ENVIRONMENT": "otlp-test"}
        proc = subprocess.run([sys.executable, "-c", SERVICE], env=env, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == "exported"
    finally:
        server.stop(0)
    spans = [(resource, span) for request in collector.requests
             for resource in request.resource_spans
             for scope in resource.scope_spans for span in scope.spans]
    assert [span.name for _, span in spans] == ["otlp-check"]
    resource, span = spans[0]
    attributes = {a.key: a.value.string_value for a in resource.resource.attributes}
    assert attributes["service.name"] == "switchyard-ingest"
    assert attributes["deployment.environment"] == "otlp-test"
    assert {a.key: a.value.string_value for a in span.attributes} == {"switchyard.check": "yes"}
