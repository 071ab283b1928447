"""The isolation benchmark's pure parts: the runs' rates and tenants, a tenant client's
handling of refusals, the window throughput, the stage summary and the goals (the benchmark
itself runs with `make bench`; no timing is asserted here)."""

from __future__ import annotations

import time

import grpc
import pytest

from bench import isolation_bench
from bench.e2e_bench import Item, Pool, load_docs, workload
from bench.isolation_bench import (
    BURST,
    ROLES,
    Load,
    Run,
    TenantClient,
    TenantResult,
    burst_run_weights,
    chunking,
    goals,
    loads,
    rates,
    stage_summary,
    tenant_ids,
    weights_setting,
    window_rate,
)
from bench._common import setting_changes
from switchyard import Settings
from switchyard.runtime import parse_weights
from switchyard.v1 import (
    ItemError,
    SubmitTaskResponse,
    SubmitTasksRequest,
    SubmitTasksResponse,
    SubmitTasksResult,
)

EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED


def pool() -> Pool:
    docs = load_docs()
    return Pool(docs, [i for i, d in enumerate(docs) if d["label"] != "invoice"])


def test_steady_tenants_offer_a_share_of_capacity_and_the_burst_ten_times_it() -> None:
    assert rates(200.0, burst=False) == {role: 30.0 for role in ROLES}
    burst = rates(200.0, burst=True)
    assert burst[BURST] == 300.0
    assert all(burst[role] == 30.0 for role in ROLES if role != BURST)


def test_each_run_has_its_own_tenants_all_weighted_in_the_setting() -> None:
    a, b = tenant_ids("no burst"), tenant_ids("burst")
    assert not set(a.values()) & set(b.values())
    weights = parse_weights(weights_setting())
    assert weights == {t: 1.0 for t in [*a.values(), *b.values()]}


def test_a_call_carries_the_items_due_in_a_tick() -> None:
    assert chunking(20.0) == (2, 0.1)
    assert chunking(200.0) == (20, 0.1)
    assert chunking(3.0) == (1, 1 / 3)  # at least one item a call


def test_loads_give_each_tenant_its_own_items_and_the_same_documents_in_both_runs() -> None:
    docs = pool()
    quiet = loads("no burst", 100.0, 4.0, seed=5, pool=docs)
    noisy = loads("burst", 100.0, 4.0, seed=5, pool=docs)
    assert [len(load.items) for load in quiet] == [60, 60, 60, 60]
    assert [len(load.items) for load in noisy] == [60, 60, 60, 600]
    for load in quiet + noisy:
        assert {i.submission.tenant_id for i in load.items} == {load.tenant_id}
        assert not any(i.via_kafka for i in load.items)
    keys = [i.key for load in quiet + noisy for i in load.items]
    assert len(set(keys)) == len(keys)
    for a, b in zip(quiet, noisy):  # same documents: the quiet run's are where the noisy start
        assert [i.submission.document.body for i in a.items] == \
            [i.submission.document.body for i in b.items[:len(a.items)]]
    # the steady tenants do not all send the same documents
    assert quiet[0].items[0].submission.document.body != \
        quiet[1].items[0].submission.document.body or \
        quiet[0].items[1].submission.document.body != quiet[1].items[1].submission.document.body


def items(count: int) -> list[Item]:
    return [i for i in workload(count * 2, seed=9, pool=pool(), kafka_share=0.0,
                                tenants=("iso-test",)) if not i.invalid][:count]


def accept_all(request: SubmitTasksRequest) -> SubmitTasksResponse:
    return SubmitTasksResponse(results=[
        SubmitTasksResult(accepted=SubmitTaskResponse(task_id=f"task-{s.idempotency_key}"))
        for s in request.submissions])


async def test_a_refused_call_holds_the_tenant_for_the_hint_then_resends() -> None:
    calls: list[int] = []

    async def submit(request: SubmitTasksRequest, timeout: float) -> SubmitTasksResponse:
        calls.append(len(request.submissions))
        if len(calls) == 1:
            raise grpc.aio.AioRpcError(EXHAUSTED, grpc.aio.Metadata(),
                                       grpc.aio.Metadata(("retry-after-ms", "30")), "full")
        return accept_all(request)

    load = Load("burst", "iso-test", 40.0, items(8))  # 4 a call
    begin = time.perf_counter()
    offer = await TenantClient(load, submit).run(begin, begin + 30)
    assert (offer.refused_calls, offer.refused_items) == (1, 4)
    assert offer.held_s > 0
    assert sorted(offer.ids) == sorted(i.key for i in load.items)
    assert calls[0] == 4 and sum(calls) == 12  # the refused call's items sent again


async def test_items_refused_one_by_one_are_sent_again(monkeypatch: pytest.MonkeyPatch
                                                       ) -> None:
    monkeypatch.setattr(isolation_bench, "FALLBACK_RETRY_S", 0.01)
    refused_once: set[str] = set()

    async def submit(request: SubmitTasksRequest, timeout: float) -> SubmitTasksResponse:
        fresh = {s.idempotency_key for s in request.submissions} - refused_once
        refused_once.update(fresh)
        response = accept_all(request)
        for submission, result in zip(request.submissions, response.results):
            if submission.idempotency_key in fresh:  # refused the first time it comes
                result.Clear()
                result.error.CopyFrom(ItemError(code=EXHAUSTED.value[0], message="share"))
        return response

    load = Load("burst", "iso-test", 20.0, items(2))
    begin = time.perf_counter()
    offer = await TenantClient(load, submit).run(begin, begin + 30)
    assert offer.refused_items == 2 and offer.invalid == 0
    assert len(offer.ids) == 2


async def test_nothing_is_sent_after_the_run_ends() -> None:
    async def submit(request: SubmitTasksRequest, timeout: float) -> SubmitTasksResponse:
        raise grpc.aio.AioRpcError(EXHAUSTED, grpc.aio.Metadata(),
                                   grpc.aio.Metadata(("retry-after-ms", "60000")), "full")

    load = Load("burst", "iso-test", 20.0, items(4))
    begin = time.perf_counter()
    offer = await TenantClient(load, submit).run(begin, begin + 0.05)
    assert offer.refused_calls == 1 and not offer.ids  # held past the end: given up


def test_window_rate_counts_what_finished_inside_the_window() -> None:
    assert window_rate([1.0, 2.0, 3.0, 11.0], 0.0, 10.0) == 0.3
    assert window_rate([], 0.0, 10.0) == 0.0
    assert window_rate([1.0], 5.0, 5.0) == 0.0


def test_stage_summary_leaves_out_the_stages_a_task_has_not() -> None:
    rows = [{"to_broker": 0.01, "to_decision": 0.1, "after_decision": 0.2},
            {"to_broker": 0.02, "to_decision": 0.3, "after_decision": None},  # escalated
            {"to_broker": None, "to_decision": 0.5, "after_decision": 0.4}]
    summary = stage_summary(rows)
    assert summary["to_broker"] == {"n": 2, "p50": 20.0, "p99": 20.0}
    assert summary["to_decision"] == {"n": 3, "p50": 300.0, "p99": 500.0}
    assert summary["after_decision"] == {"n": 2, "p50": 400.0, "p99": 400.0}


def test_goals_compare_the_steady_p99_and_the_burst_share() -> None:
    weights = {role: 1.0 for role in ROLES}
    met = goals(100.0, 800.0, 900.0, 40.0, [15.0, 15.0, 15.0], weights)
    assert met["steady_p99_ratio"] == 1.125 and met["steady_p99_ratio<=1.20"]
    assert met["weighted_share_tasks_per_s"] == 25.0
    assert met["burst_share_ratio"] == 1.6 and met["burst_share_ratio>=1"]
    assert met["work_conserving_share_tasks_per_s"] == 55.0
    missed = goals(100.0, 800.0, 4000.0, 20.0, [15.0, 15.0, 15.0], weights)
    assert missed["steady_p99_ratio"] == 5.0 and not missed["steady_p99_ratio<=1.20"]
    assert missed["burst_share_ratio"] == 0.8 and not missed["burst_share_ratio>=1"]
    # a heavier burst tenant is owed more; no steady latency measured is no pass
    heavy = goals(100.0, 0.0, 900.0, 40.0, [15.0] * 3, {**weights, BURST: 2.0})
    assert heavy["weighted_share_tasks_per_s"] == 40.0
    assert heavy["steady_p99_ratio"] == 0.0 and not heavy["steady_p99_ratio<=1.20"]


def tenant(accepted: int, tasks_per_s: float) -> TenantResult:
    return TenantResult("steady-1", "iso-a-steady-1", 10.0, accepted, accepted, 0, 0, 0, 0,
                        0.0, accepted, tasks_per_s, {})


def test_a_run_kept_up_when_it_finished_about_what_it_accepted() -> None:
    run = Run("no burst", 10.0, [tenant(100, 9.5), tenant(100, 9.6)], {}, {}, 0, 0)
    assert (run.accepted_per_s, run.tasks_per_s, run.kept_up) == (20.0, 19.1, True)
    behind = Run("no burst", 10.0, [tenant(100, 6.0), tenant(100, 6.0)], {}, {}, 0, 0)
    assert not behind.kept_up


def test_setting_changes_take_each_settings_type() -> None:
    base = Settings()
    changes = setting_changes(["ingest_max_backlog=1000", "stream_batch_window_ms=5",
                               "tenant_weights=a:2"], base)
    assert changes == {"ingest_max_backlog": 1000, "stream_batch_window_ms": 5.0,
                       "tenant_weights": "a:2"}
    assert isinstance(changes["ingest_max_backlog"], int)
    with pytest.raises(ValueError):
        setting_changes(["no_such_setting=1"], base)
    with pytest.raises(ValueError):
        setting_changes(["ingest_max_backlog"], base)


def test_the_goal_weighs_the_burst_run_tenants_as_the_pipeline_was_told() -> None:
    assert burst_run_weights(Settings(tenant_weights=weights_setting())) == \
        {role: 1.0 for role in ROLES}
    heavier = Settings(tenant_weights=f"{weights_setting()},iso-b-burst:3")
    assert burst_run_weights(heavier)[BURST] == 3.0
