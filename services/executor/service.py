"""The executor process: the decisions agent, the resumer, ExecutorAdminService and
ExecutorService (CompleteWait); glue only.

Domain logic lives beside this module: ``runner`` (steps, retries, sagas), ``breakers``
(shared circuit breakers), ``jobs`` (parking and takeover in PostgreSQL), ``orchestrator``
(a decision's whole life), ``resumer`` (the background loop), the connectors, and the demo
downstream in ``downstream/``.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from datetime import timedelta

import asyncpg
import grpc
from google.protobuf.json_format import MessageToDict

from services.executor.breakers import BreakerBoard, SharedState
from services.executor.connectors import Connector as StepConnector
from services.executor.connectors import SqlConnector
from services.executor.custom_connectors import load_custom_connectors
from services.executor.endpoints import Router, endpoint_map
from services.executor.grpc_connector import GrpcConnector
from services.executor.http_connector import HttpConnector
from services.executor.jobs import JobStore
from services.executor.orchestrator import Executor
from services.executor.resumer import Resumer
from services.executor.runner import PlanRunner, RetryConfig
from services.executor.sla import SlaPolicy, parse_sla_overrides
from services.executor.waits import Waits, WaitNotFound, WaitNotWaiting
from switchyard import Settings
from switchyard.access import Role, principal_var
from switchyard.messaging import CANCELLATIONS, DECISIONS
from switchyard.rpc import FieldViolation, abort_invalid
from switchyard.runtime import ServiceContext, parse_weights, run_service
from switchyard.storage import codec_for
from switchyard.tasks import timestamp
from switchyard.v1 import (
    BreakerState,
    BreakerStatus,
    CompleteWaitRequest,
    CompleteWaitResponse,
    Connector,
    ExecutorAdminServiceServicer,
    ExecutorServiceServicer,
    ListBreakersRequest,
    ListBreakersResponse,
    ResetBreakerRequest,
    ResetBreakerResponse,
    add_ExecutorAdminServiceServicer_to_server,
    add_ExecutorServiceServicer_to_server,
)

log = logging.getLogger(__name__)
SERVICE_NAME = "switchyard.v1.ExecutorAdminService"
WAITS_SERVICE_NAME = "switchyard.v1.ExecutorService"
POLICY = {
    f"/{SERVICE_NAME}/ListBreakers": frozenset({Role.ADMIN, Role.AUDITOR}),
    f"/{SERVICE_NAME}/ResetBreaker": frozenset({Role.ADMIN}),
}
WAITS_POLICY = {
    f"/{WAITS_SERVICE_NAME}/CompleteWait": frozenset({Role.SUBMITTER, Role.ADMIN}),
}
_STATUS = {"closed": BreakerStatus.BREAKER_STATUS_CLOSED,
           "open": BreakerStatus.BREAKER_STATUS_OPEN,
           "half-open": BreakerStatus.BREAKER_STATUS_HALF_OPEN}


def breaker_state(shared: SharedState, blocked: int, reset_s: float) -> BreakerState:
    state = BreakerState(name=shared.name, status=_STATUS[shared.state],  # type: ignore[arg-type]
                         failure_count=shared.failure_count, blocked_tasks=blocked,
                         updated_by=shared.updated_by)
    if shared.opened_at is not None:
        state.opened_at.CopyFrom(timestamp(shared.opened_at))
        if shared.state != "closed":
            state.probe_at.CopyFrom(timestamp(shared.opened_at + timedelta(seconds=reset_s)))
    return state


class ExecutorAdmin(ExecutorAdminServiceServicer):
    """Breakers as every replica sees them: the shared state in PostgreSQL."""

    def __init__(self, breakers: BreakerBoard) -> None:
        self.breakers = breakers

    async def ListBreakers(self, request: ListBreakersRequest,
                           context: grpc.aio.ServicerContext) -> ListBreakersResponse:
        return ListBreakersResponse(breakers=[
            breaker_state(shared, blocked, self.breakers.reset_s)
            for shared, blocked in await self.breakers.snapshot()])

    async def ResetBreaker(self, request: ResetBreakerRequest,
                           context: grpc.aio.ServicerContext) -> ResetBreakerResponse:
        if not request.name:
            await abort_invalid(context, [FieldViolation("name", "required: a breaker name "
                                                                 "from ListBreakers")])
        principal = principal_var.get()
        shared = await self.breakers.reset(request.name, principal)
        if shared is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no breaker {request.name!r}")
        assert shared is not None
        log.warning("breaker %s reset by hand by %s", request.name, principal.key_id)
        return ResetBreakerResponse(breaker=breaker_state(shared, 0, self.breakers.reset_s))


class ExecutorWaits(ExecutorServiceServicer):
    """CompleteWait for the systems a plan waits on; the work is :class:`Waits`'."""

    def __init__(self, waits: Waits) -> None:
        self.waits = waits

    async def CompleteWait(self, request: CompleteWaitRequest,
                           context: grpc.aio.ServicerContext) -> CompleteWaitResponse:
        principal = principal_var.get()
        try:
            settled = await self.waits.complete(principal.may_access, request.token,
                                                MessageToDict(request.output), request.error)
        except FieldViolation as exc:
            await abort_invalid(context, [exc])
            raise
        except WaitNotFound as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
            raise
        except WaitNotWaiting as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
            raise
        log.info("wait %s of task %s settled by %s", settled.step_id, settled.task_id,
                 principal.key_id)
        return CompleteWaitResponse(task_id=settled.task_id, step_id=settled.step_id)


def replica_id() -> str:
    """Unique per process start: a restarted replica never mistakes the old one's jobs for
    its own running ones (they are taken over once the old heartbeat goes stale)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


async def setup(ctx: ServiceContext, opened: list[StepConnector] | None = None) -> None:
    """Wire the executor; connectors go into ``opened`` so they close after the consumers."""
    settings = ctx.settings
    owner = replica_id()
    sql_pool: asyncpg.Pool | None = None
    if settings.executor_sql_dsn:
        sql_pool = await asyncpg.create_pool(settings.executor_sql_dsn, min_size=1,
                                             max_size=settings.postgres_pool_max)
    custom = load_custom_connectors()
    connectors: dict[int | str, StepConnector] = {
        Connector.CONNECTOR_HTTP: HttpConnector(),
        Connector.CONNECTOR_GRPC: GrpcConnector(),
        Connector.CONNECTOR_SQL: SqlConnector(sql_pool or ctx.pool, owns_pool=sql_pool is not None),
        **custom,
    }
    breakers = BreakerBoard(
        ctx.pool, owner, settings.executor_breaker_fail_max, settings.executor_breaker_reset_s,
        probe_lease_s=settings.executor_replica_timeout_s + settings.executor_http_timeout_s)
    config = RetryConfig(
        max_attempts=settings.executor_max_attempts,
        backoff_base_s=settings.executor_backoff_base_s,
        backoff_cap_s=settings.executor_backoff_cap_s,
        retry_park_s=settings.executor_retry_park_s,
        timeouts={Connector.CONNECTOR_HTTP: settings.executor_http_timeout_s,
                  Connector.CONNECTOR_GRPC: settings.executor_grpc_timeout_s,
                  Connector.CONNECTOR_SQL: settings.executor_sql_timeout_s},
    )
    runner = PlanRunner(ctx.pool, Router(endpoint_map(settings), frozenset(custom)), connectors,
                        breakers, config, codec_for(settings))
    jobs = JobStore(ctx.pool, owner, settings.executor_replica_timeout_s, codec_for(settings),
                    parse_weights(settings.tenant_weights))
    sla = SlaPolicy(settings.executor_sla_s, parse_sla_overrides(settings.executor_sla_overrides))
    # Escalations go to the queue the decision names (the deciding tenant's routing).
    executor = Executor(ctx.pool, ctx.producer, runner, jobs, breakers, sla,
                        codec_for(settings))
    resumer = Resumer(executor, jobs, breakers, settings.executor_poll_s,
                      settings.executor_concurrency, ctx.supervisor)
    await jobs.heartbeat()
    await breakers.sync()

    async def stop() -> None:
        await resumer.stop()
        await jobs.retire()  # peers may take over what is still running here right away

    if opened is not None:
        opened.extend(connectors.values())

    ctx.consume_fairly(DECISIONS, executor.on_decisions)
    ctx.consume_batches(CANCELLATIONS, executor.on_cancellations)
    ctx.run_in_background("resumer", resumer.loop)
    ctx.on_stop.append(stop)
    ctx.serve((add_ExecutorAdminServiceServicer_to_server, ExecutorAdmin(breakers),
               SERVICE_NAME), POLICY)
    waits = Waits(ctx.pool, jobs, ctx.producer, resumer.wakeup.set)
    ctx.serve((add_ExecutorServiceServicer_to_server, ExecutorWaits(waits), WAITS_SERVICE_NAME),
              WAITS_POLICY)
    log.info("executor replica %s%s", owner,
             f" (custom connectors: {', '.join(sorted(custom))})" if custom else "")


async def main(settings: Settings, apply_migrations: bool = False) -> None:
    try:  # before connecting anything: a misconfigured executor must not start at all
        endpoint_map(settings)
        for connector in load_custom_connectors().values():  # loads; setup makes its own
            await connector.close()
    except ValueError as exc:  # EndpointsNotConfigured, an entry that does not parse, or
        raise SystemExit(f"switchyard run executor: {exc}") from None  # a broken connector
    opened: list[StepConnector] = []

    async def setup_process(ctx: ServiceContext) -> None:
        await setup(ctx, opened)

    try:
        await run_service("executor", settings, settings.executor_grpc_port,
                          settings.executor_metrics_port, setup_process,
                          apply_migrations=apply_migrations)
    finally:  # after the consumers stopped: no call is in flight any more
        for connector in opened:
            await connector.close()
