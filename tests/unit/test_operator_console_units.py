"""The operator console's pure parts: KPI trend bucketing and figures, the search form's
ListTasks request, and gRPC refusals mapped to HTTP problem documents."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import grpc
import pytest

from services.review.operator import (
    RequestError,
    search_request,
    service_address,
    window_of,
)
from switchyard import Settings
from switchyard.access import Principal, Role
from switchyard.rpc import FieldViolation, bad_request, problem_from_rpc, status_details
from switchyard.telemetry import (
    MAX_TREND_BUCKETS,
    Economics,
    TenantKpis,
    inference_by_pool,
    total_cost,
    trend_buckets,
    trend_points,
)
from switchyard.v1 import TaskStatus

END = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)
OPERATOR = Principal("key-0", "*", Role.ADMIN)
ACME_AUDITOR = Principal("key-1", "acme", Role.AUDITOR)


def row(bucket: int, **counts: float | None) -> dict[str, float | int | None]:
    base: dict[str, float | int | None] = dict(
        bucket=bucket, tasks=0, open=0, succeeded=0, failed=0, cancelled=0, blocked=0,
        automated=0, human_reviewed=0, reviews=0, spilled=0, p50=None, p95=None, p99=None)
    base.update(counts)
    return base


def test_buckets_cover_the_window_up_to_its_end() -> None:
    starts = trend_buckets(END, timedelta(hours=2), timedelta(minutes=45))
    assert len(starts) == 3  # 2 h / 45 min, rounded up
    assert starts[-1] + timedelta(minutes=45) == END
    assert [b - a for a, b in zip(starts, starts[1:])] == [timedelta(minutes=45)] * 2


@pytest.mark.parametrize(("window", "bucket", "words"), [
    (timedelta(hours=1), timedelta(seconds=59), "bucket: at least 60 seconds"),
    (timedelta(days=31), timedelta(days=1), "window: more than 0 and at most 30 days"),
    (timedelta(0), timedelta(hours=1), "window: more than 0"),
    (timedelta(days=1), timedelta(minutes=1), f"at most {MAX_TREND_BUCKETS} buckets"),
])
def test_bucket_limits_are_named(window: timedelta, bucket: timedelta, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        trend_buckets(END, window, bucket)


def test_points_fill_empty_buckets_and_compute_each_figure() -> None:
    settings = Settings(kpi_inference_cost=0.01, kpi_compute_cost=0.02,
                        kpi_review_minutes_per_item=3.0, kpi_review_minute_cost=0.5)
    starts = trend_buckets(END, timedelta(hours=3), timedelta(hours=1))
    rows = [row(0, tasks=4, succeeded=3, failed=1, automated=2, human_reviewed=1, reviews=2,
                p95=1.5),
            row(2, tasks=2, open=2)]
    reasons = [{"bucket": 0, "reason": "POLICY", "n": 3},
               {"bucket": 0, "reason": "LOW_CONFIDENCE", "n": 1}]
    first, empty, unfinished = trend_points(starts, timedelta(hours=1), rows, reasons, settings)

    assert first.start == starts[0]
    assert (first.tasks, first.terminal, first.automated) == (4, 4, 2)
    assert first.automation_rate == 0.5
    assert first.p95_seconds == 1.5
    # the one cost formula: 4 tasks x (0.01 + 0.02) + 2 reviews (a four-eyes item: two
    # people) x 3 min x 0.5
    assert first.cost_per_task == pytest.approx((4 * 0.03 + 3.0) / 4)
    assert first.cost_per_task == pytest.approx(total_cost(4, 2, settings) / 4)
    assert first.escalations_per_hour == {"policy": 3.0, "low_confidence": 1.0}

    assert (empty.tasks, empty.automation_rate, empty.cost_per_task) == (0, None, None)
    assert empty.escalations_per_hour == {}
    assert unfinished.automation_rate is None  # nothing finished yet: no rate, not 0 %


def test_escalations_are_per_hour_whatever_the_bucket() -> None:
    starts = trend_buckets(END, timedelta(hours=1), timedelta(minutes=15))
    (point, *_) = trend_points(starts, timedelta(minutes=15), [],
                               [{"bucket": 0, "reason": "POLICY", "n": 2}], Settings())
    assert point.escalations_per_hour == {"policy": 8.0}


def test_totals_and_trend_share_the_cost_formula() -> None:
    settings = Settings(kpi_inference_cost=0.1, kpi_compute_cost=0.0,
                        kpi_review_minutes_per_item=2.0, kpi_review_minute_cost=1.0)
    kpis = TenantKpis("acme", tasks=10, open=0, succeeded=10, failed=0, cancelled=0,
                      blocked=0, automated=5, human_reviewed=4, reviews=5)
    assert Economics.of(kpis, settings).cost_per_automated == pytest.approx(
        total_cost(10, 5, settings) / 5) == pytest.approx((10 * 0.1 + 5 * 2.0) / 5)


def test_search_form_becomes_a_list_tasks_request() -> None:
    request = search_request({"tenant": " acme ", "status": "failed, SUCCEEDED",
                              "kind": "invoice,admission_form",
                              "metadata": "po=4471, batch = b-1", "page_size": "20"}, OPERATOR)
    assert request.tenant_id == "acme"
    assert list(request.statuses) == [TaskStatus.TASK_STATUS_FAILED,
                                      TaskStatus.TASK_STATUS_SUCCEEDED]
    assert list(request.kinds) == ["invoice", "admission_form"]
    assert dict(request.metadata) == {"po": "4471", "batch": "b-1"}
    assert request.page_size == 20
    # a key bound to a tenant searches its own tenant when the form leaves it empty
    assert search_request({}, ACME_AUDITOR).tenant_id == "acme"


def test_search_form_mistakes_are_named_by_field() -> None:
    with pytest.raises(RequestError) as caught:
        search_request({"status": "DONE", "metadata": "po", "page_size": "0"}, OPERATOR)
    fields = [f for f, _ in caught.value.errors]
    assert fields == ["tenant", "status", "metadata", "page_size"]
    with pytest.raises(RequestError) as caught:
        window_of({"window_h": "nan", "bucket_m": "-5"})
    assert [f for f, _ in caught.value.errors] == ["window_h", "bucket_m"]
    assert window_of({}) == (timedelta(hours=24), timedelta(hours=1))


def test_other_services_are_found_by_address_or_local_port() -> None:
    settings = Settings(ingest_grpc_port=6001, decision_address="decision.svc:7052")
    assert service_address(settings, "ingest") == "127.0.0.1:6001"
    assert service_address(settings, "decision") == "decision.svc:7052"


@pytest.mark.parametrize(("code", "status"), [
    (grpc.StatusCode.PERMISSION_DENIED, 403), (grpc.StatusCode.NOT_FOUND, 404),
    (grpc.StatusCode.FAILED_PRECONDITION, 409), (grpc.StatusCode.UNAUTHENTICATED, 401),
    (grpc.StatusCode.UNAVAILABLE, 503),
])
def test_refusals_of_the_services_become_problem_documents(code: grpc.StatusCode,
                                                          status: int) -> None:
    error = grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), "no")
    response = problem_from_rpc(error)
    body = json.loads(response.text)
    assert (response.status, response.content_type) == (status, "application/problem+json")
    assert (body["status"], body["grpc_status"], body["detail"]) == (status, code.name, "no")


def test_field_violations_travel_into_the_problem_document() -> None:
    trailing = status_details(grpc.StatusCode.INVALID_ARGUMENT, "bad",
                              bad_request([FieldViolation("window", "at most 30 days")]))
    error = grpc.aio.AioRpcError(grpc.StatusCode.INVALID_ARGUMENT, grpc.aio.Metadata(),
                                 grpc.aio.Metadata(*trailing), "bad")
    body = json.loads(problem_from_rpc(error).text)
    assert body["status"] == 422
    assert body["errors"] == [{"field": "window", "detail": "at most 30 days"}]


def test_the_timeline_carries_ingest_summary_and_the_detail() -> None:
    from google.protobuf import struct_pb2

    from services.review.operator import timeline_json
    from switchyard.v1 import GetTaskTimelineResponse, TimelineEntry, TimelineSource

    detail = struct_pb2.Struct()
    detail.update({"step_id": "post", "attempts": 1})
    shown = timeline_json(GetTaskTimelineResponse(entries=[TimelineEntry(
        source=TimelineSource.TIMELINE_SOURCE_AUDIT, action="step.executed", detail=detail,
        summary="step post succeeded after 1 attempt")]))
    (entry,) = shown["entries"]
    assert entry["summary"] == "step post succeeded after 1 attempt"
    assert entry["detail"]["step_id"] == "post"


def test_inference_is_priced_by_the_pool_that_routed_each_task() -> None:
    settings = Settings(kpi_inference_cost=0.004, kpi_spill_inference_cost=0.001,
                        kpi_compute_cost=0.0, kpi_review_minutes_per_item=0.0)
    kpis = TenantKpis("acme", tasks=10, open=0, succeeded=10, failed=0, cancelled=0,
                      blocked=0, automated=4, human_reviewed=6, spilled=3)
    by_pool = inference_by_pool(kpis, settings)
    assert by_pool["primary"] == {"tasks": 7, "price_per_task": 0.004, "cost": 7 * 0.004,
                                  "cost_per_automated": 7 * 0.004 / 4}
    assert by_pool["spill"]["tasks"] == 3 and by_pool["spill"]["cost"] == 3 * 0.001
    # the totals, the trend and the pool view price the same way
    assert total_cost(10, 6, settings, spilled=3) == pytest.approx(7 * 0.004 + 3 * 0.001)
    assert Economics.of(kpis, settings).cost_per_automated == pytest.approx(
        sum(p["cost_per_automated"] for p in by_pool.values()))
    starts = trend_buckets(END, timedelta(hours=1), timedelta(hours=1))
    (point,) = trend_points(starts, timedelta(hours=1), [row(0, tasks=10, spilled=3)], [],
                            settings)
    assert point.cost_per_task == pytest.approx(total_cost(10, 0, settings, 3) / 10)
