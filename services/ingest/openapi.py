"""Generate the REST gateway's OpenAPI 3.1 document from the route table and proto descriptors.

Nothing in docs/openapi.json is written by hand: each route of ``services.ingest.rest.ROUTES``
becomes an operation, and each message it reads or returns becomes a schema built from the
message's descriptor with the proto3 JSON mapping (lowerCamelCase names, 64-bit integers as
strings, enums by name, bytes as base64, well-known types in their JSON form). The gateway
serves the same document at ``/openapi.json``.

``python -m services.ingest.openapi`` rewrites docs/openapi.json; ``--check`` exits 1 when
the committed file differs from what the code gives (a test runs it).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

from services.ingest.rest import INBOUND_PATH, ROUTES, Route, enum_query_names
from switchyard.rpc import HTTP_STATUS, PROBLEM_JSON

OUTPUT = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"

_INT32 = {FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32,
          FieldDescriptor.TYPE_SFIXED32, FieldDescriptor.TYPE_UINT32,
          FieldDescriptor.TYPE_FIXED32}
_INT64 = {FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64,
          FieldDescriptor.TYPE_SFIXED64, FieldDescriptor.TYPE_UINT64,
          FieldDescriptor.TYPE_FIXED64}
#: Well-known types, by full name, in their proto3 JSON form.
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?s$"},
    "google.protobuf.Struct": {"type": "object"},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array"},
    "google.protobuf.Empty": {"type": "object"},
    "google.protobuf.FieldMask": {"type": "string"},
    "google.protobuf.Any": {"type": "object", "properties": {"@type": {"type": "string"}}},
    "google.protobuf.StringValue": {"type": "string"},
    "google.protobuf.BoolValue": {"type": "boolean"},
    "google.protobuf.Int32Value": {"type": "integer", "format": "int32"},
    "google.protobuf.Int64Value": {"type": ["string", "integer"], "format": "int64"},
    "google.protobuf.DoubleValue": {"type": "number"},
    "google.protobuf.FloatValue": {"type": "number"},
    "google.protobuf.BytesValue": {"type": "string", "contentEncoding": "base64"},
}


class _Schemas:
    """Component schemas, one per message and enum reached from the routes."""

    def __init__(self) -> None:
        self.components: dict[str, dict[str, Any]] = {}

    def ref(self, name: str) -> dict[str, str]:
        return {"$ref": f"#/components/schemas/{name}"}

    def enum(self, descriptor: EnumDescriptor) -> dict[str, Any]:
        name = descriptor.full_name
        if name not in self.components:
            self.components[name] = {"type": "string",
                                     "enum": [value.name for value in descriptor.values]}
        return self.ref(name)

    def message(self, descriptor: Descriptor) -> dict[str, Any]:
        name = descriptor.full_name
        if name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[name])
        if name not in self.components:
            self.components[name] = {}  # placeholder: recursive messages refer to themselves
            properties = {field.json_name: self.field(field) for field in descriptor.fields}
            schema: dict[str, Any] = {"type": "object", "properties": properties,
                                      "additionalProperties": False}
            oneofs = [o for o in descriptor.oneofs
                      if not (len(o.fields) == 1 and o.name == f"_{o.fields[0].name}")]
            if oneofs:
                schema["description"] = "; ".join(
                    f"at most one of {', '.join(f.json_name for f in o.fields)}"
                    for o in oneofs)
            self.components[name] = schema
        return self.ref(name)

    def scalar(self, field: FieldDescriptor) -> dict[str, Any]:
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            return self.message(field.message_type)
        if field.type == FieldDescriptor.TYPE_ENUM:
            return self.enum(field.enum_type)
        if field.type in _INT32:
            return {"type": "integer", "format": "int32"}
        if field.type in _INT64:
            return {"type": ["string", "integer"], "format": "int64"}
        if field.type in {FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT}:
            return {"type": "number"}
        if field.type == FieldDescriptor.TYPE_BOOL:
            return {"type": "boolean"}
        if field.type == FieldDescriptor.TYPE_BYTES:
            return {"type": "string", "contentEncoding": "base64"}
        return {"type": "string"}

    def field(self, field: FieldDescriptor) -> dict[str, Any]:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value = field.message_type.fields_by_name["value"]
            return {"type": "object", "additionalProperties": self.scalar(value)}
        if field.label == FieldDescriptor.LABEL_REPEATED:
            return {"type": "array", "items": self.scalar(field)}
        return self.scalar(field)


def _operation(route: Route, schemas: _Schemas) -> dict[str, Any]:
    service = next(s for s in _services() if s.name == route.service)
    rpc = service.methods_by_name[route.rpc]
    path_parameters = re.findall(r"{(\w+)}", route.path)
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"},
         "description": f"fills request field {route.field_for(name)}"}
        for name in path_parameters]
    if route.body is None:
        for field in route.request.DESCRIPTOR.fields:
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                parameters.append({"name": field.name, "in": "query", "required": False,
                                   "style": "deepObject", "explode": True,
                                   "schema": schemas.field(field),
                                   "description": f"{field.name}[KEY]=VALUE, repeatable"})
                continue
            if field.name in path_parameters or field.type == FieldDescriptor.TYPE_MESSAGE \
                    and field.message_type.full_name not in _WELL_KNOWN:
                continue
            schema = schemas.field(field)
            if field.type == FieldDescriptor.TYPE_ENUM:  # the full or the short name
                names = {"type": "string",
                         "enum": list(enum_query_names(field.enum_type))}
                schema = {"type": "array", "items": names} \
                    if field.label == FieldDescriptor.LABEL_REPEATED else names
            described = {"description": "the full name or the short one (FAILED for "
                                        "TASK_STATUS_FAILED), in any case"} \
                if field.type == FieldDescriptor.TYPE_ENUM else {}
            parameters.append({"name": field.name, "in": "query", "required": False,
                               "schema": schema, **described,
                               **({"explode": True, "style": "form"}
                                  if field.label == FieldDescriptor.LABEL_REPEATED else {})})
    if route.streaming:
        parameters.append({"name": "wait_s", "in": "query", "required": False,
                           "schema": {"type": "number", "minimum": 0, "maximum": 60},
                           "description": "long poll only: how long to wait for events"})
    response_schema = schemas.message(rpc.output_type)
    ok: dict[str, Any] = {"description": "OK", "content": {"application/json": {
        "schema": response_schema}}}
    if route.streaming:
        ok["content"] = {
            "application/json": {"schema": {
                "type": "object", "properties": {"events": {"type": "array",
                                                            "items": response_schema}}}},
            "text/event-stream": {"schema": {
                "type": "string", "description": "one `data:` line per event, each a "
                                                f"{rpc.output_type.name} in JSON"}}}
    responses: dict[str, Any] = {"200": ok}
    # a request with a body may be over the gateway's limit (aiohttp's, answered as a problem)
    extra = {"400", "413"} if route.body is not None else {"400"}
    for status in sorted({str(s) for s in HTTP_STATUS.values()} | extra):
        responses[status] = {"$ref": f"#/components/responses/Problem{status}"}
    operation: dict[str, Any] = {
        "operationId": f"{route.service}.{route.rpc}",
        "summary": route.summary,
        "description": f"Forwards to gRPC {route.full_method}; the same roles apply.",
        "tags": [route.service],
        "parameters": parameters,
        "responses": responses,
    }
    if route.body is not None:
        target = route.request.DESCRIPTOR if route.body == "*" else \
            route.request.DESCRIPTOR.fields_by_name[route.body].message_type
        operation["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": schemas.message(target)}}}
    return operation


def _inbound(schemas: _Schemas) -> dict[str, Any]:
    """POST /webhooks/in/{source_id}: signed by Standard Webhooks headers, not an API key."""
    header = {"in": "header", "required": True, "schema": {"type": "string"}}
    from switchyard.v1 import SubmitTaskResponse

    return {
        "operationId": "receiveWebhook",
        "summary": "An upstream system's webhook to an inbound webhook source.",
        "description": "Signed in the Standard Webhooks format with the source's secret; "
                       "the body (any JSON) becomes a task through the source's field "
                       "mapping. A redelivered webhook-id returns the same task.",
        "tags": ["Webhooks"],
        "security": [],
        "parameters": [
            {"name": "source_id", "in": "path", "required": True, "schema": {"type": "string"}},
            {"name": "webhook-id", **header},
            {"name": "webhook-timestamp", **header},
            {"name": "webhook-signature", **header}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {}}}},
        "responses": {
            "202": {"description": "Accepted: the task", "content": {"application/json": {
                "schema": schemas.message(SubmitTaskResponse.DESCRIPTOR)}}},
            **{str(status): {"$ref": f"#/components/responses/Problem{status}"}
               for status in (400, 401, 404, 409, 429, 503)}},
    }


def _services() -> list[Any]:
    from switchyard.v1 import dead_letter_service_pb2, ingest_service_pb2, review_service_pb2

    return [ingest_service_pb2.DESCRIPTOR.services_by_name["IngestService"],
            dead_letter_service_pb2.DESCRIPTOR.services_by_name["DeadLetterService"],
            review_service_pb2.DESCRIPTOR.services_by_name["ReviewService"]]


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the gateway."""
    schemas = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, schemas)
    paths[INBOUND_PATH] = {"post": _inbound(schemas)}
    paths["/openapi.json"] = {"get": {
        "operationId": "openapi", "summary": "This document.", "security": [],
        "responses": {"200": {"description": "OK", "content": {"application/json": {
            "schema": {"type": "object"}}}}}}}
    paths["/healthz"] = {"get": {
        "operationId": "healthz", "summary": "Whether the gateway answers.", "security": [],
        "responses": {"200": {"description": "OK", "content": {"application/json": {
            "schema": {"type": "object", "properties": {"status": {"type": "string"}}}}}}}}}
    problem = {
        "type": "object",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string"}, "title": {"type": "string"},
            "status": {"type": "integer"}, "detail": {"type": "string"},
            "grpc_status": {"type": "string"},
            "errors": {"type": "array", "items": {
                "type": "object", "required": ["field", "detail"],
                "properties": {"field": {"type": "string"}, "detail": {"type": "string"}}}},
        },
    }
    reasons = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
               409: "Conflict", 413: "Content Too Large", 422: "Unprocessable Content",
               429: "Too Many Requests",
               499: "Client Closed Request", 500: "Internal Server Error",
               501: "Not Implemented", 503: "Service Unavailable", 504: "Gateway Timeout"}
    responses = {}
    for status in sorted({*HTTP_STATUS.values(), 400, 413}):
        response: dict[str, Any] = {"description": reasons[status], "content": {
            PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
        if status in {429, 503}:
            response["headers"] = {"Retry-After": {
                "description": "seconds to wait before retrying (when the server knows)",
                "schema": {"type": "integer"}}}
        responses[f"Problem{status}"] = response
    return {
        "openapi": "3.1.0",
        "info": {"title": "Switchyard REST gateway", "version": "v1",
                 "description": "IngestService, DeadLetterService and the review verbs "
                                "over HTTP/JSON "
                                "(proto3 JSON mapping); generated from the proto "
                                "descriptors by services.ingest.openapi. See docs/rest.md."},
        "servers": [{"url": "http://127.0.0.1:8081"}],
        "security": [{"apiKey": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer",
                                           "description": "an API key from "
                                                          "SWITCHYARD_API_KEYS"}},
            "schemas": {**dict(sorted(schemas.components.items())), "Problem": problem},
            "responses": responses,
        },
    }


def render() -> str:
    return json.dumps(document(), indent=2, sort_keys=False) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when docs/openapi.json is stale, instead of writing it")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not OUTPUT.exists() or OUTPUT.read_text() != text:
            print(f"{OUTPUT} is stale: run `make openapi`", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["OUTPUT", "document", "main", "render"]
