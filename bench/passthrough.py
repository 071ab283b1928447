"""The pass-through baseline: the same processes, topics, framework and hops, with no work.

``python -m bench.passthrough ingest|decision|executor`` runs a stand-in for a service that
forwards each record to the next topic without a model, a database or a downstream call. The
end-to-end benchmark runs the workload through these first, so the real pipeline's figures
are reported as a ratio of what the machine, the broker and the framework allow.
"""

from __future__ import annotations

import asyncio
import sys
import uuid

import grpc

from switchyard._serde import decode
from switchyard._service import ServiceContext, run_service
from switchyard._settings import Settings
from switchyard._streams import Record
from switchyard._taskstore import stage_value, status_value
from switchyard._topics import DECISIONS, TASK_STATUS, TASKS
from switchyard.v1 import (
    Decision,
    DecisionOutcome,
    IngestServiceServicer,
    StatusEvent,
    SubmitTaskResponse,
    SubmitTasksRequest,
    SubmitTasksResponse,
    SubmitTasksResult,
    TaskEnvelope,
    add_IngestServiceServicer_to_server,
)


class PassThroughIngest(IngestServiceServicer):
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    async def SubmitTasks(self, request: SubmitTasksRequest,
                          context: grpc.aio.ServicerContext) -> SubmitTasksResponse:
        results, sends = [], []
        for submission in request.submissions:
            task_id = str(uuid.uuid4())
            envelope = TaskEnvelope(task_id=task_id, tenant_id=submission.tenant_id,
                                    idempotency_key=submission.idempotency_key,
                                    kind=submission.kind, document=submission.document)
            sends.append(await self.ctx.producer.send_nowait(TASKS, task_id, envelope))
            results.append(SubmitTasksResult(accepted=SubmitTaskResponse(task_id=task_id,
                                                                        created=True)))
        await asyncio.gather(*sends)
        return SubmitTasksResponse(results=results, accepted_count=len(results))


async def setup_ingest(ctx: ServiceContext) -> None:
    ctx.serve((add_IngestServiceServicer_to_server, PassThroughIngest(ctx),
               "switchyard.v1.IngestService"), {})


async def setup_decision(ctx: ServiceContext) -> None:
    async def forward(record: Record) -> None:
        task = decode(record.value, record.headers, TaskEnvelope)
        await ctx.producer.send(DECISIONS, task.task_id, Decision(
            decision_id=str(uuid.uuid4()), task_id=task.task_id, tenant_id=task.tenant_id,
            outcome=DecisionOutcome.DECISION_OUTCOME_AUTO_EXECUTE))

    ctx.consume(TASKS, forward, batch_size=ctx.settings.batch_max_size)


async def setup_executor(ctx: ServiceContext) -> None:
    async def finish(record: Record) -> None:
        decision = decode(record.value, record.headers, Decision)
        await ctx.producer.send(TASK_STATUS, decision.task_id, StatusEvent(
            task_id=decision.task_id, tenant_id=decision.tenant_id,
            status=status_value("SUCCEEDED"), stage=stage_value("DONE"), sequence=99,
            service="executor"))

    ctx.consume(DECISIONS, finish)


ROLES = {
    "ingest": (setup_ingest, "ingest_grpc_port"),
    "decision": (setup_decision, "decision_grpc_port"),
    "executor": (setup_executor, "executor_grpc_port"),
}


def main(role: str) -> None:
    settings = Settings.from_env()
    setup, port_attr = ROLES[role]
    asyncio.run(run_service(f"passthrough-{role}", settings, getattr(settings, port_attr), 0,
                            setup))


if __name__ == "__main__":
    main(sys.argv[1])
