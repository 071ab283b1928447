"""The REST gateway's OpenAPI document: generated, valid, committed fresh; errors mapped."""

from __future__ import annotations

import json

import grpc
import pytest
from openapi_spec_validator import validate

from services.ingest import rest
from services.ingest import openapi
from switchyard.rpc import PROBLEM_JSON, problem_for, status_details


def test_committed_document_is_what_the_protos_give() -> None:
    assert openapi.main(["--check"]) == 0, "run `make openapi`"


def test_document_is_valid_openapi_3_1_with_every_rpc_route() -> None:
    document = openapi.document()
    validate(document)
    operations = {op["operationId"] for ops in document["paths"].values() for op in ops.values()}
    assert {f"{r.service}.{r.rpc}" for r in rest.ROUTES} <= operations
    task = document["components"]["schemas"]["switchyard.v1.Task"]["properties"]
    assert task["sequence"]["type"] == ["string", "integer"]  # proto3 JSON: int64 as string
    assert task["status"] == {"$ref": "#/components/schemas/switchyard.v1.TaskStatus"}
    assert task["createdAt"] == {"type": "string", "format": "date-time"}


@pytest.mark.parametrize(("code", "http"), [
    (grpc.StatusCode.INVALID_ARGUMENT, 422), (grpc.StatusCode.NOT_FOUND, 404),
    (grpc.StatusCode.ALREADY_EXISTS, 409), (grpc.StatusCode.PERMISSION_DENIED, 403),
    (grpc.StatusCode.UNAUTHENTICATED, 401), (grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
    (grpc.StatusCode.UNAVAILABLE, 503)])
def test_grpc_statuses_map_to_http(code: grpc.StatusCode, http: int) -> None:
    trailing = (*status_details(code, "why"), ("retry-after-ms", "1500"))
    response = problem_for(code, "why", trailing)
    body = json.loads(response.text)
    assert (response.status, body["status"], body["grpc_status"]) == (http, http, code.name)
    assert response.content_type == PROBLEM_JSON
    if http in {429, 503}:
        assert response.headers["Retry-After"] == "2"
