"""Executor domain logic without Kafka or servers: routing, retry policy, classification,
SLA deadlines, fault profiles and plan validation."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import grpc
import pytest

from services.executor.breakers import BreakerBoard, BreakerOpen
from services.executor.connectors import StepError, permanent, retryable
from services.executor.downstream.faults import FaultBoard, FaultError, FaultProfile
from services.executor.downstream.store import body_hash, schema_for, validate_body
from services.executor.endpoints import (
    InvalidTarget,
    Router,
    UnknownAlias,
    default_endpoint_map,
    parse_endpoint_map,
    substitute_all,
)
from services.executor.grpc_connector import is_retryable_code
from services.executor.http_connector import is_retryable_status, method_for, retry_after_seconds
from services.executor.runner import PlanRunner, RetryConfig, backoff_s, park_delay_s
from services.executor.sla import SlaPolicy, at_risk, parse_sla_overrides
from switchyard import Settings
from switchyard.v1 import Connector, TaskEnvelope
from tests.executor.harness import decision, http_step

ROUTER = Router(parse_endpoint_map("erp=http://127.0.0.1:8095/erp,erp=grpc://127.0.0.1:7055"))


def test_targets_resolve_through_aliases_and_name_their_breaker() -> None:
    http = ROUTER.route(Connector.CONNECTOR_HTTP, "http://erp/invoices?draft=1")
    assert (http.endpoint, http.address) == ("http://erp",
                                             "http://127.0.0.1:8095/erp/invoices?draft=1")
    # the decision service's plans say SQL; a URL target names its own protocol
    assert ROUTER.route(Connector.CONNECTOR_SQL, "http://erp/x").connector == \
        Connector.CONNECTOR_HTTP
    grpc_route = ROUTER.route(Connector.CONNECTOR_GRPC, "grpc://erp/erpsim.v1.Ledger/Post")
    assert (grpc_route.endpoint, grpc_route.address, grpc_route.method) == (
        "grpc://erp", "127.0.0.1:7055", "/erpsim.v1.Ledger/Post")
    sql = ROUTER.route(Connector.CONNECTOR_SQL, "erp.invoices")
    assert (sql.endpoint, sql.address) == ("sql://erp", "erp.invoices")

def test_an_alias_missing_from_the_map_is_refused_never_used_as_a_host_name() -> None:
    for connector, target, family in [
            (Connector.CONNECTOR_HTTP, "https://api.example.com/v1/hook", "http"),
            (Connector.CONNECTOR_HTTP, "http://sis/applicants", "http"),
            (Connector.CONNECTOR_GRPC, "grpc://sis/erpsim.v1.LedgerService/Post", "grpc")]:
        with pytest.raises(UnknownAlias, match=f"no {family} entry in "
                                               "SWITCHYARD_EXECUTOR_ENDPOINTS"):
            ROUTER.route(connector, target)
    # the map is per family: an HTTP entry does not make the gRPC alias known, and back
    http_only = Router(parse_endpoint_map("crm=https://crm.internal/api"))
    assert http_only.route(Connector.CONNECTOR_HTTP, "http://crm/leads").address == \
        "https://crm.internal/api/leads"
    with pytest.raises(UnknownAlias, match="alias 'crm'"):
        http_only.route(Connector.CONNECTOR_GRPC, "grpc://crm/a.B/C")


@pytest.mark.parametrize(("connector", "target", "problem"), [
    (Connector.CONNECTOR_HTTP, "erp.invoices", "needs a URL"),
    (Connector.CONNECTOR_GRPC, "http://erp/x", "gRPC step with an http target"),
    (Connector.CONNECTOR_HTTP, "grpc://erp/a.B/C", "HTTP step with a grpc target"),
    (Connector.CONNECTOR_GRPC, "grpc://erp/NoMethod", "package.Service/Method"),
    (Connector.CONNECTOR_SQL, "Robert'); DROP TABLE", "system.table"),
    (Connector.CONNECTOR_HTTP, "ftp://erp/x", "unsupported scheme"),
])
def test_unusable_targets_are_named(connector: int, target: str, problem: str) -> None:
    with pytest.raises(InvalidTarget, match=problem):
        ROUTER.route(connector, target)


def test_endpoint_map_defaults_to_the_embedded_downstream() -> None:
    mapping = default_endpoint_map(Settings(downstream_http_port=1234, downstream_grpc_port=5678))
    assert mapping[("http", "sis")] == "http://127.0.0.1:1234/sis"
    assert mapping[("grpc", "erp")] == "grpc://127.0.0.1:5678"
    with pytest.raises(ValueError, match="EXECUTOR_ENDPOINTS entry 0"):
        parse_endpoint_map("erp=ftp://x")


def test_compensation_placeholders_fill_strings_anywhere_in_a_payload() -> None:
    values = {"idempotency_key": "t:1-a", "task_id": "t"}
    assert substitute_all({"key": "{idempotency_key}", "n": 3, "l": ["{task_id}", True]},
                          values) == {"key": "t:1-a", "n": 3, "l": ["t", True]}


def test_backoff_has_full_jitter_under_an_exponential_cap() -> None:
    random.seed(1)
    samples = [backoff_s(3, base_s=0.1, cap_s=5.0) for _ in range(2000)]
    assert all(0 <= s <= 0.8 for s in samples)
    assert min(samples) < 0.05 and max(samples) > 0.75  # spread over the whole range
    assert all(backoff_s(30, 0.1, 5.0) <= 5.0 for _ in range(100))
    assert all(0.5 * 4 * 2 <= park_delay_s(2, 4.0) <= 4 * 4 for _ in range(100))
    assert park_delay_s(50, 5.0) <= 600


def test_http_statuses_split_into_retryable_and_permanent() -> None:
    assert all(is_retryable_status(s) for s in (408, 425, 429, 500, 502, 503, 504))
    assert not any(is_retryable_status(s) for s in (400, 401, 403, 404, 409, 422))
    assert method_for("DELETE") == "DELETE" and method_for("post_invoice") == "POST"


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds("Thu, 01 Jan 2026 12:00:30 GMT", now) == 30.0
    assert retry_after_seconds("Thu, 01 Jan 2026 11:00:00 GMT", now) == 0.0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


def test_grpc_codes_split_into_retryable_and_permanent() -> None:
    assert is_retryable_code(grpc.StatusCode.UNAVAILABLE)
    assert is_retryable_code(grpc.StatusCode.DEADLINE_EXCEEDED)
    assert not is_retryable_code(grpc.StatusCode.INVALID_ARGUMENT)
    assert not is_retryable_code(grpc.StatusCode.NOT_FOUND)
    assert isinstance(permanent("x"), StepError) and not permanent("x").retryable
    assert retryable("x", 3.0).retry_after_s == 3.0


def test_sla_takes_the_earlier_of_task_and_tenant_deadlines() -> None:
    policy = SlaPolicy(3600, parse_sla_overrides("acme:60, globex:7200"))
    accepted = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert policy.deadline("acme", accepted) == accepted + timedelta(seconds=60)
    assert policy.deadline("other", accepted) == accepted + timedelta(hours=1)
    envelope = TaskEnvelope()
    envelope.deadline.FromDatetime(datetime(2026, 1, 1, 0, 30))
    assert policy.deadline("globex", accepted, envelope) == accepted + timedelta(minutes=30)
    assert at_risk(accepted, accepted) and not at_risk(accepted, accepted - timedelta(1))
    with pytest.raises(ValueError, match="entry 1"):
        parse_sla_overrides("acme:60,globex")


def test_fault_profiles_are_validated_and_drawn_per_system() -> None:
    with pytest.raises(FaultError, match="unknown fields"):
        FaultProfile.from_json({"eror_rate": 0.3})
    with pytest.raises(FaultError, match="<= 1"):
        FaultProfile.from_json({"error_rate": 0.8, "lost_response_rate": 0.5})
    board = FaultBoard(random.Random(7))
    board.profiles["erp"] = FaultProfile.from_json({"error_rate": 0.15,
                                                    "lost_response_rate": 0.15})
    board.profiles["*"] = FaultProfile(outage=True)
    fates = [board.fate("erp") for _ in range(4000)]
    failed = sum(bool(f.fail_before or f.fail_after) for f in fates) / len(fates)
    assert 0.27 < failed < 0.33
    assert board.fate("sis").fail_before == 503


def test_downstream_business_rules_and_schema_names() -> None:
    assert validate_body({"amount": 3}) == ""
    assert "amount" in validate_body({"amount": -1})
    assert validate_body([1]) != ""
    assert body_hash({"a": 1, "b": 2}) == body_hash({"b": 2, "a": 1})
    assert schema_for("t_x") == "t_x_downstream"
    with pytest.raises(ValueError):
        schema_for("x", "Bad-Name")


def test_plan_validation_names_every_problem_before_any_effect() -> None:
    runner = PlanRunner(None, ROUTER, {Connector.CONNECTOR_HTTP: object()},  # type: ignore[arg-type,dict-item]
                        None, RetryConfig())  # type: ignore[arg-type]
    bad = decision("t", "acme", [
        http_step("1-a", "http://erp/a", undo="http://erp/a/{idempotency_key}"),
        http_step("1-a", "http://erp/b"),
        http_step("", "http://erp/c"),
        http_step("4-d", "erp.ledger", connector=Connector.CONNECTOR_SQL),  # not configured
        http_step("compensate:5", "http://erp/e", undo="ftp://x"),
        http_step("6-f", "http://crm/leads", undo="http://erp/f/{idempotency_key}"),
    ])
    problems = runner.validate(bad)
    assert problems == [
        "plan.steps[1].step_id: duplicate '1-a'",
        "plan.steps[2].step_id: required",
        "plan.steps[3].target: no connector configured for sql://erp",
        "plan.steps[4].step_id: must not start with 'compensate:'",
        "plan.steps[4].compensation.target: unsupported scheme 'ftp' in target 'ftp://x'",
        "plan.steps[5].target: alias 'crm' of target 'http://crm/leads' has no http entry in "
        "SWITCHYARD_EXECUTOR_ENDPOINTS (add 'crm=https://host/base')",
    ]
    assert runner.validate(decision("t", "acme", [http_step("1-a", "http://erp/a")])) == []


def test_an_open_breaker_stops_calls_until_a_probe_is_allowed() -> None:
    board = BreakerBoard(None, "me", fail_max=2, reset_s=5, probe_lease_s=10)  # type: ignore[arg-type]
    for _ in range(2):
        with pytest.raises((StepError, BreakerOpen)), board.calling("http://erp"):
            raise retryable("503")
    with pytest.raises(BreakerOpen) as caught:
        board.check("http://erp")
    assert caught.value.retry_at > datetime.now(timezone.utc)
    board.check("http://sis")  # other endpoints are unaffected
    # permanent errors say nothing about the endpoint's health
    for _ in range(5):
        with pytest.raises(StepError), board.calling("http://sis"):
            raise permanent("422")
    board.check("http://sis")
    # a probe half-opens; its success closes the breaker for everyone
    board.check("http://erp", probe=True)
    with board.calling("http://erp"):
        pass
    board.check("http://erp")
    assert [p[1] for p in board.pending] == ["open", "half-open", "closed"]
