"""Ingest's backlog counts what the machines have yet to finish, not only what waits for a
decision (services/ingest/backpressure.py): a task decided and waiting for the executor still
holds its place, one escalated to a person does not.

Ingest and the decision service run, the executor not at first: every task is decided, the
ones to carry out stay IN_PROGRESS in front of the missing executor and the escalated ones
BLOCKED (no reviewer). With more IN_PROGRESS tasks than the limit, ingest refuses though
nothing is QUEUED; once the executor has carried them out it accepts again, though more
BLOCKED tasks than the limit remain.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import grpc
import pytest

from switchyard import Settings
from switchyard.rpc import create_channel
from switchyard.storage import connect
from switchyard.v1 import (
    Document,
    IngestServiceStub,
    SubmitTaskRequest,
    SubmitTasksRequest,
    Submission,
)
from tests.observed import metric_sum
from tests.polling import eventually
from tests.services import running

pytestmark = pytest.mark.integration
HELDOUT = Path(__file__).resolve().parents[2] / "models" / "data" / "router_heldout.jsonl"
LIMIT = 6
KINDS = ("support_ticket", "invoice")


def documents() -> list[Submission]:
    rows = [json.loads(line) for line in HELDOUT.read_text().splitlines()]
    chosen = [r for r in rows if r["label"] in KINDS][:90]
    return [Submission(tenant_id="stages", idempotency_key=f"stages-{r['id']}",
                       kind=r["label"],
                       document=Document(content_type="text/plain", body=r["text"].encode()))
            for r in chosen]


async def test_decided_tasks_hold_the_backlog_until_carried_out_and_escalated_ones_do_not(
        settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> None:
    limited = settings.replace(ingest_max_backlog=LIMIT, ingest_backlog_check_s=0.1,
                               ingest_retry_after_ms=200)
    conn = await connect(limited)

    async def counts() -> dict[str, int]:
        rows = await conn.fetch("SELECT status, count(*) AS n FROM tasks "
                                "WHERE tenant_id = 'stages' GROUP BY status")
        return {row["status"]: row["n"] for row in rows}

    async def refusal(stub: IngestServiceStub) -> grpc.aio.AioRpcError | None:
        try:
            await stub.SubmitTask(SubmitTaskRequest(submission=Submission(
                tenant_id="probe", kind="support_ticket", idempotency_key=uuid.uuid4().hex,
                document=Document(content_type="text/plain", body=b"a probe"))))
        except grpc.aio.AioRpcError as exc:
            return exc
        return None

    try:
        with running(limited, tmp_path_factory.mktemp("stages"), ("ingest", "decision")):
            channel = create_channel(f"127.0.0.1:{limited.ingest_grpc_port}")
            stub = IngestServiceStub(channel)
            try:
                # one call: a call is checked when it arrives, so all of it is accepted
                reply = await stub.SubmitTasks(SubmitTasksRequest(submissions=documents()))
                assert reply.accepted_count == 90, reply

                async def all_decided() -> dict[str, int] | None:
                    now = await counts()
                    return now if not now.get("QUEUED") else None
                decided = await eventually(all_decided, "every task decided", timeout_s=120)
                assert decided.get("IN_PROGRESS", 0) > LIMIT, decided
                assert decided.get("BLOCKED", 0) > LIMIT, decided

                async def counted() -> bool:  # the recount (capped at the limit) holds them
                    return metric_sum(limited.ingest_metrics_port,
                                      "switchyard_ingest_tenant_backlog",
                                      'tenant="stages"') == LIMIT
                await eventually(counted, "the decided tasks counted", timeout_s=30)
                await asyncio.sleep(1)  # ten recounts since every task was decided
                refused = await refusal(stub)
                assert refused is not None and \
                    refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert "still to be decided or carried out" in (refused.details() or "")

                with running(limited, tmp_path_factory.mktemp("executor"), ("executor",)):
                    async def carried_out() -> bool:
                        return not (await counts()).get("IN_PROGRESS")
                    await eventually(carried_out, "the decided tasks carried out", 120)

                    async def accepted() -> bool:
                        return await refusal(stub) is None
                    await eventually(accepted, "submissions accepted again", timeout_s=30)
                assert (await counts()).get("BLOCKED", 0) > LIMIT
            finally:
                await channel.close()
    finally:
        await conn.close()
