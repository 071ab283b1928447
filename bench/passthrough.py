"""The pass-through baseline: the same processes, topics, framework and hops, with no work.

``python -m bench.passthrough ingest|decision|review|executor|signals-ingest|signals-decision``
runs a stand-in for a service
that forwards each record to the next topic without a model, a database or a downstream call,
through the same service plumbing (``run_service``, the faust agents and their per-record
middleware, the producer). The end-to-end benchmark runs the workload through these first, so
the real pipeline's figures are reported as a ratio of what the machine, the broker and the
framework allow.

Hops, as in the real pipeline: ingest (gRPC ``SubmitTasks`` and the Kafka intake topic) ->
``tasks`` + a QUEUED status event; decision -> ``decisions`` (or ``escalations`` for a task
the workload marks with ``metadata["bench_route"] = "review"``: the baseline has no model to
disagree with the submitter) + a status event; review -> ``decisions`` (no reviewer: approved
on arrival); executor -> one ``executions`` record + the terminal status event.

Classroom signals (``bench.signals_bench``): signals-ingest consumes ``classroom-signals`` in
batches (the same batch agent and batch settings as the real signal processor) and writes
each record's bytes and headers unchanged to ``classroom-signals-admitted``; signals-decision
consumes that in batches and, where the real engagement processor publishes its windows on
``engagement-windows``, writes one small JSON record per batch saying how many frames and
signals it took (the signals a frame carries come from the load generator's
``x-bench-signals`` header, so nothing is parsed).
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import Awaitable, Callable

import grpc
from aiokafka import AIOKafkaProducer

from switchyard import Settings
from switchyard.messaging import (
    CLASSROOM_SIGNALS,
    DECISIONS,
    ENGAGEMENT_WINDOWS,
    ESCALATIONS,
    EXECUTIONS,
    INTAKE,
    JSON_MEDIA_TYPE,
    SIGNALS_ADMITTED,
    TASK_STATUS,
    TASKS,
    Record,
    Topic,
    decode,
    headers_to_kafka,
    producer_options,
)
from switchyard.runtime import ServiceContext, run_service
from switchyard.tasks import stage_value, status_value
from switchyard.v1 import (
    Decision,
    DecisionOutcome,
    Document,
    Escalation,
    ExecutionResult,
    IngestServiceServicer,
    StatusEvent,
    StepOutcome,
    Submission,
    SubmitTaskRequest,
    SubmitTaskResponse,
    SubmitTasksRequest,
    SubmitTasksResponse,
    SubmitTasksResult,
    TaskEnvelope,
    add_IngestServiceServicer_to_server,
)

ROUTE_KEY = "bench_route"
#: The raw signals a frame carries, as the signals benchmark's load generator counted them.
SIGNALS_HEADER = "x-bench-signals"


def task_id_for(tenant_id: str, idempotency_key: str) -> str:
    """Deterministic, so the benchmark can name intake tasks without asking a database."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench:{tenant_id}/{idempotency_key}"))


def status(task_id: str, tenant_id: str, name: str, stage: str, service: str,
           sequence: int) -> StatusEvent:
    return StatusEvent(task_id=task_id, tenant_id=tenant_id, status=status_value(name),
                       stage=stage_value(stage), sequence=sequence, service=service)


class PassThroughIngest(IngestServiceServicer):
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    async def accept(self, submission: Submission) -> tuple[str, list[asyncio.Future[object]]]:
        task_id = task_id_for(submission.tenant_id, submission.idempotency_key)
        envelope = TaskEnvelope(task_id=task_id, tenant_id=submission.tenant_id,
                                idempotency_key=submission.idempotency_key,
                                kind=submission.kind, document=submission.document,
                                metadata=submission.metadata)
        producer = self.ctx.producer
        return task_id, [
            await producer.send_nowait(TASKS, task_id, envelope),
            await producer.send_nowait(TASK_STATUS, task_id, status(
                task_id, submission.tenant_id, "QUEUED", "INGESTED", "ingest", 1))]

    async def SubmitTask(self, request: SubmitTaskRequest,
                         context: grpc.aio.ServicerContext) -> SubmitTaskResponse:
        task_id, sends = await self.accept(request.submission)
        await asyncio.gather(*sends)
        return SubmitTaskResponse(task_id=task_id, created=True)

    async def SubmitTasks(self, request: SubmitTasksRequest,
                          context: grpc.aio.ServicerContext) -> SubmitTasksResponse:
        results, sends = [], []
        for submission in request.submissions:
            task_id, futures = await self.accept(submission)
            sends += futures
            results.append(SubmitTasksResult(accepted=SubmitTaskResponse(task_id=task_id,
                                                                        created=True)))
        await asyncio.gather(*sends)
        return SubmitTasksResponse(results=results, accepted_count=len(results))

    async def intake(self, record: Record) -> None:
        body = json.loads(record.value or b"{}")
        document = body.get("document", {})
        submission = Submission(
            tenant_id=body["tenant_id"], idempotency_key=body["idempotency_key"],
            kind=body.get("kind", ""), metadata=body.get("metadata", {}),
            document=Document(content_type=document.get("content_type", ""),
                              body=document.get("body", "").encode()))
        _, sends = await self.accept(submission)
        await asyncio.gather(*sends)


async def setup_ingest(ctx: ServiceContext) -> None:
    servicer = PassThroughIngest(ctx)
    ctx.serve((add_IngestServiceServicer_to_server, servicer, "switchyard.v1.IngestService"), {})
    ctx.consume(INTAKE, servicer.intake)


async def setup_decision(ctx: ServiceContext) -> None:
    async def forward(record: Record) -> None:
        task = decode(record.value, record.headers, TaskEnvelope)
        review = task.metadata.get(ROUTE_KEY) == "review"
        decision = Decision(
            decision_id=str(uuid.uuid4()), task_id=task.task_id, tenant_id=task.tenant_id,
            outcome=DecisionOutcome.DECISION_OUTCOME_ESCALATE if review
            else DecisionOutcome.DECISION_OUTCOME_AUTO_EXECUTE)
        if review:
            first = ctx.producer.send(ESCALATIONS, task.task_id, Escalation(
                escalation_id=str(uuid.uuid4()), task_id=task.task_id, tenant_id=task.tenant_id,
                queue="default", proposed_decision=decision, task=task, service="decision"))
            event = status(task.task_id, task.tenant_id, "BLOCKED", "AWAITING_REVIEW",
                           "decision", 2)
        else:
            first = ctx.producer.send(DECISIONS, task.task_id, decision)
            event = status(task.task_id, task.tenant_id, "IN_PROGRESS", "EXECUTING",
                           "decision", 2)
        await asyncio.gather(first, ctx.producer.send(TASK_STATUS, task.task_id, event))

    ctx.consume(TASKS, forward, batch_size=ctx.settings.batch_max_size)


async def setup_review(ctx: ServiceContext) -> None:
    async def approve(record: Record) -> None:
        escalation = decode(record.value, record.headers, Escalation)
        decision = Decision()
        decision.CopyFrom(escalation.proposed_decision)
        decision.decision_id = str(uuid.uuid4())
        decision.outcome = DecisionOutcome.DECISION_OUTCOME_AUTO_EXECUTE
        await ctx.producer.send(DECISIONS, escalation.task_id, decision)

    ctx.consume(ESCALATIONS, approve)


async def setup_executor(ctx: ServiceContext) -> None:
    async def finish(record: Record) -> None:
        decision = decode(record.value, record.headers, Decision)
        await ctx.producer.send(EXECUTIONS, decision.task_id, ExecutionResult(
            task_id=decision.task_id, tenant_id=decision.tenant_id, step_id="1-noop",
            outcome=StepOutcome.STEP_OUTCOME_SUCCEEDED, attempts=1))
        await ctx.producer.send(TASK_STATUS, decision.task_id, status(
            decision.task_id, decision.tenant_id, "SUCCEEDED", "DONE", "executor", 99))

    ctx.consume(DECISIONS, finish)


BatchHandler = Callable[[list[Record]], Awaitable[list[Record]]]


def consume_batches(ctx: ServiceContext, topic: Topic, handler: BatchHandler) -> None:
    """The batch agent the real signal processors use, with their batch settings."""
    ctx.consume_batches(topic, handler, ctx.settings.signal_batch_size,
                        ctx.settings.signal_batch_window_ms / 1000)


async def started_producer(ctx: ServiceContext) -> AIOKafkaProducer:
    """A producer with the services' options (acks=all, linger, batch size), for raw bytes."""
    producer = AIOKafkaProducer(**producer_options(ctx.settings))
    await producer.start()
    ctx.on_stop.append(producer.stop)
    return producer


async def setup_signals_ingest(ctx: ServiceContext) -> None:
    producer = await started_producer(ctx)
    admitted = SIGNALS_ADMITTED.full_name(ctx.settings)

    async def forward(records: list[Record]) -> list[Record]:
        sends = [await producer.send(admitted, key=r.key, value=r.value,
                                     headers=headers_to_kafka(r.headers)) for r in records]
        await asyncio.gather(*sends)
        return []

    consume_batches(ctx, CLASSROOM_SIGNALS, forward)


async def setup_signals_decision(ctx: ServiceContext) -> None:
    producer = await started_producer(ctx)
    windows = ENGAGEMENT_WINDOWS.full_name(ctx.settings)

    async def absorb(records: list[Record]) -> list[Record]:
        counts = [int(r.headers.get(SIGNALS_HEADER) or 0) for r in records]
        # a frame worth 0 is the benchmark's closing frame, not part of the workload
        await producer.send_and_wait(windows, key=b"passthrough", value=json.dumps(
            {"frames": sum(1 for n in counts if n), "signals": sum(counts)}).encode(),
            headers=[("content-type", JSON_MEDIA_TYPE.encode())])
        return []

    consume_batches(ctx, SIGNALS_ADMITTED, absorb)


ROLES = {
    "ingest": (setup_ingest, "ingest_grpc_port"),
    "decision": (setup_decision, "decision_grpc_port"),
    "review": (setup_review, "review_grpc_port"),
    "executor": (setup_executor, "executor_grpc_port"),
    "signals-ingest": (setup_signals_ingest, "ingest_grpc_port"),
    "signals-decision": (setup_signals_decision, "decision_grpc_port"),
}


def main(role: str) -> None:
    settings = Settings.from_env()
    setup, port_attr = ROLES[role]
    asyncio.run(run_service(f"passthrough-{role}", settings, getattr(settings, port_attr), 0,
                            setup))


if __name__ == "__main__":
    main(sys.argv[1])
