"""Backpressure per tenant: a tenant holding its weighted share of the backlog limit is refused
while the others are still accepted (services/ingest/backpressure.py).

Nothing decides in this module (ingest runs alone), so every accepted task stays QUEUED: the
backlog is exactly what the test submitted, in a schema of its own. Ingest recounts the
backlog in PostgreSQL when it starts and then only every ten minutes here, so what refuses
is its own count of what it accepted since (the recount's path is tested in
test_ingest_faults.py).
"""

from __future__ import annotations

import grpc
import pytest

from switchyard import Settings
from switchyard.rpc import create_channel
from switchyard.stack import free_port
from switchyard.v1 import (
    IngestServiceStub,
    SubmitTaskRequest,
    SubmitTasksRequest,
)
from tests.ingest.helpers import IngestProcess, submission
from tests.observed import metric_sum

pytestmark = pytest.mark.integration
LIMIT = 40


async def submit_until_refused(stub: IngestServiceStub, tenant: str, per_call: int = 2,
                               most: int = LIMIT * 2) -> tuple[int, grpc.aio.AioRpcError]:
    """Calls of ``per_call`` submissions until one is refused; how many were accepted, and the
    refusal."""
    accepted = 0
    while accepted < most:
        try:
            reply = await stub.SubmitTasks(SubmitTasksRequest(
                submissions=[submission(tenant) for _ in range(per_call)]))
        except grpc.aio.AioRpcError as exc:
            return accepted, exc
        accepted += reply.accepted_count
        assert reply.rejected_count == 0, reply
    raise AssertionError(f"{tenant}: {accepted} accepted and never refused")


async def test_a_tenant_at_its_weighted_share_is_refused_while_the_others_are_accepted(
        settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> None:
    # steady weighs 3, noisy 1: with both waiting, noisy's share is a quarter of the limit
    limited = settings.replace(
        ingest_max_backlog=LIMIT, ingest_backlog_check_s=600, ingest_retry_after_ms=700,
        tenant_weights="steady:3", ingest_grpc_port=free_port(),
        ingest_metrics_port=free_port(), ingest_rest_port=free_port())
    process = IngestProcess(limited, tmp_path_factory.mktemp("shares")).start()
    channel = create_channel(f"127.0.0.1:{limited.ingest_grpc_port}")
    stub = IngestServiceStub(channel)
    try:
        for _ in range(2):
            await stub.SubmitTask(SubmitTaskRequest(submission=submission("steady")))

        noisy, refusal = await submit_until_refused(stub, "noisy")
        assert noisy == LIMIT // 4  # counted as accepted, not only at the next recount
        assert refusal.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert dict(refusal.trailing_metadata() or ())["retry-after-ms"] == "700"
        assert refusal.details() == (
            "ingest is applying backpressure to tenant 'noisy': 10 of its tasks are still to "
            "be decided or carried out, its share of the backlog limit "
            f"(10 of {LIMIT}, split by weight among the 2 tenants with work waiting); "
            "retry after 700 ms")

        # the whole backlog is far from the limit: the steady tenant is not held back by the
        # noisy one, up to its own share (30), where the shares add up to the whole limit
        steady, refused = await submit_until_refused(stub, "steady")
        assert 2 + steady == LIMIT * 3 // 4
        full = f"{LIMIT} tasks are still to be decided or carried out (limit {LIMIT})"
        assert full in (refused.details() or "")
        # now everyone waits, a tenant that had nothing waiting too
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.SubmitTask(SubmitTaskRequest(submission=submission("late")))
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert full in (caught.value.details() or "")
        assert metric_sum(limited.ingest_metrics_port, "switchyard_ingest_tenant_backlog",
                          'tenant="noisy"') == LIMIT // 4
    finally:
        await channel.close()
        process.stop()


async def test_a_mixed_call_refuses_only_the_items_of_a_tenant_at_its_share(
        settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> None:
    limited = settings.replace(
        ingest_max_backlog=1000, ingest_backlog_check_s=600, tenant_weights="", ingest_grpc_port=free_port(),
        ingest_metrics_port=free_port(), ingest_rest_port=free_port())
    process = IngestProcess(limited, tmp_path_factory.mktemp("mixed")).start()
    channel = create_channel(f"127.0.0.1:{limited.ingest_grpc_port}")
    stub = IngestServiceStub(channel)
    try:
        # the first test left noisy 10, steady 30 and the limit is 1000 now: with a third
        # tenant the shares are 334 each, so fill one tenant to its share in one call
        first = await stub.SubmitTasks(SubmitTasksRequest(
            submissions=[submission("bulk") for _ in range(334)]))
        assert first.accepted_count == 334
        mixed = await stub.SubmitTasks(SubmitTasksRequest(
            submissions=[submission("bulk"), submission("steady"), submission("bulk")]))
        assert [r.HasField("accepted") for r in mixed.results] == [False, True, False]
        assert mixed.results[0].error.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
        assert "to tenant 'bulk'" in mixed.results[0].error.message
    finally:
        await channel.close()
        process.stop()
