"""The review process: the escalations agent and ReviewService; glue over ``queue``."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

import grpc

from services.review.queue import DEFAULT_LEASE, ReviewError, ReviewQueue
from services.review.verdicts import verdict_decision
from switchyard._auth import Role, principal_var
from switchyard._grpc import FieldViolation, abort_invalid
from switchyard._serde import decode
from switchyard._service import ServiceContext, run_service
from switchyard._settings import Settings
from switchyard._streams import Record
from switchyard._telemetry import task_context
from switchyard._topics import DECISIONS, ESCALATIONS
from switchyard.v1 import (
    ClaimRequest,
    ClaimResponse,
    Decision,
    DecisionOutcome,
    Escalation,
    GetItemRequest,
    GetItemResponse,
    ListQueueRequest,
    ListQueueResponse,
    ReleaseRequest,
    ReleaseResponse,
    RenewRequest,
    RenewResponse,
    ReviewItem,
    ReviewServiceServicer,
    ReviewState,
    SubmitVerdictRequest,
    SubmitVerdictResponse,
    Verdict,
    add_ReviewServiceServicer_to_server,
)

SERVICE_NAME = "switchyard.v1.ReviewService"
_REVIEWERS = frozenset({Role.REVIEWER})
POLICY = {f"/{SERVICE_NAME}/{rpc}": _REVIEWERS for rpc in (
    "ListQueue", "GetItem", "Claim", "Renew", "Release", "SubmitVerdict")}
POLICY[f"/{SERVICE_NAME}/ListQueue"] = frozenset({Role.REVIEWER, Role.AUDITOR})
POLICY[f"/{SERVICE_NAME}/GetItem"] = frozenset({Role.REVIEWER, Role.AUDITOR})

T = TypeVar("T")


def _lease(request: ClaimRequest | RenewRequest) -> timedelta:
    return request.lease.ToTimedelta() if request.HasField("lease") else DEFAULT_LEASE


class ReviewServicer(ReviewServiceServicer):
    def __init__(self, ctx: ServiceContext, queue: ReviewQueue) -> None:
        self.ctx = ctx
        self.queue = queue

    async def _guard(self, context: grpc.aio.ServicerContext,
                     action: Callable[[], Awaitable[T]]) -> T:
        try:
            return await action()
        except ReviewError as exc:
            code = (grpc.StatusCode.NOT_FOUND if exc.code == "not_found"
                    else grpc.StatusCode.FAILED_PRECONDITION)
            await context.abort(code, str(exc))
            raise  # unreachable: abort raises

    async def _check_tenant(self, item_id: str, context: grpc.aio.ServicerContext) -> None:
        _, tenant = await self._guard(context, lambda: self.queue.get(item_id))
        if not principal_var.get().may_access(tenant):
            await context.abort(grpc.StatusCode.NOT_FOUND, f"review item {item_id!r} not found")

    async def ListQueue(self, request: ListQueueRequest,
                        context: grpc.aio.ServicerContext) -> ListQueueResponse:
        principal = principal_var.get()
        tenant = request.tenant_id or (None if principal.tenant_id == "*" else principal.tenant_id)
        if tenant is not None and not principal.may_access(tenant):
            return ListQueueResponse()
        states = [ReviewState.Name(s).removeprefix("REVIEW_STATE_") for s in request.states] \
            or ["PENDING", "CLAIMED"]
        page = await self.queue.list(request.queue, tenant, states, request.page_size,
                                     request.page_token)
        return ListQueueResponse(items=page.items, next_page_token=page.next_token)

    async def GetItem(self, request: GetItemRequest,
                      context: grpc.aio.ServicerContext) -> GetItemResponse:
        item, tenant = await self._guard(context, lambda: self.queue.get(request.item_id))
        if not principal_var.get().may_access(tenant):
            await context.abort(grpc.StatusCode.NOT_FOUND,
                                f"review item {request.item_id!r} not found")
        return GetItemResponse(item=item)

    async def Claim(self, request: ClaimRequest,
                    context: grpc.aio.ServicerContext) -> ClaimResponse:
        await self._require_reviewer(request.reviewer_id, context)
        await self._check_tenant(request.item_id, context)
        item = await self._guard(context, lambda: self.queue.claim(
            request.item_id, request.reviewer_id, _lease(request)))
        return ClaimResponse(item=item)

    async def Renew(self, request: RenewRequest,
                    context: grpc.aio.ServicerContext) -> RenewResponse:
        await self._require_reviewer(request.reviewer_id, context)
        await self._check_tenant(request.item_id, context)
        item = await self._guard(context, lambda: self.queue.renew(
            request.item_id, request.reviewer_id, _lease(request)))
        return RenewResponse(item=item)

    async def Release(self, request: ReleaseRequest,
                      context: grpc.aio.ServicerContext) -> ReleaseResponse:
        await self._require_reviewer(request.reviewer_id, context)
        await self._check_tenant(request.item_id, context)
        item = await self._guard(context, lambda: self.queue.release(
            request.item_id, request.reviewer_id))
        return ReleaseResponse(item=item)

    async def SubmitVerdict(self, request: SubmitVerdictRequest,
                            context: grpc.aio.ServicerContext) -> SubmitVerdictResponse:
        verdict = request.verdict
        problems = []
        if not verdict.reviewer_id:
            problems.append(FieldViolation("verdict.reviewer_id", "required"))
        if verdict.verdict == Verdict.VERDICT_UNSPECIFIED:
            problems.append(FieldViolation("verdict.verdict", "APPROVE, REJECT or MODIFY"))
        if verdict.verdict == Verdict.VERDICT_MODIFY and not verdict.modified_fields:
            problems.append(FieldViolation("verdict.modified_fields", "required for MODIFY"))
        if problems:
            await abort_invalid(context, problems)
        await self._check_tenant(verdict.item_id, context)

        async def resolve() -> tuple[ReviewItem, Decision]:
            async with self.ctx.pool.acquire() as conn, conn.transaction():
                item = await self.queue.resolve(verdict, conn)
                decision = verdict_decision(item.escalation, verdict)
                await conn.execute(
                    "INSERT INTO decisions (decision_id, task_id, tenant_id, source, outcome, "
                    "confidence, rule, explanation, decision) VALUES ($1,$2,$3,'HUMAN',$4,$5,"
                    "$6,$7,$8) ON CONFLICT DO NOTHING",
                    uuid.UUID(decision.decision_id), uuid.UUID(decision.task_id),
                    decision.tenant_id,
                    DecisionOutcome.Name(decision.outcome).removeprefix("DECISION_OUTCOME_"),
                    decision.confidence, decision.rule, decision.explanation,
                    decision.SerializeToString(),
                )
            return item, decision

        item, decision = await self._guard(context, resolve)
        with task_context(decision.task_id):
            await self.ctx.producer.send(DECISIONS, decision.task_id, decision)
        return SubmitVerdictResponse(item=item, decision_id=decision.decision_id)

    async def _require_reviewer(self, reviewer_id: str,
                                context: grpc.aio.ServicerContext) -> None:
        if not reviewer_id:
            await abort_invalid(context, [FieldViolation("reviewer_id", "required")])


class EscalationIntake:
    def __init__(self, queue: ReviewQueue) -> None:
        self.queue = queue

    async def handle(self, record: Record) -> None:
        escalation = decode(record.value, record.headers, Escalation)
        with task_context(escalation.task_id):
            await self.queue.enqueue(escalation)


async def setup(ctx: ServiceContext) -> None:
    queue = ReviewQueue(ctx.pool)
    ctx.consume(ESCALATIONS, EscalationIntake(queue).handle)
    ctx.serve((add_ReviewServiceServicer_to_server, ReviewServicer(ctx, queue), SERVICE_NAME),
              POLICY)


async def main(settings: Settings, apply_migrations: bool = False) -> None:
    await run_service("review", settings, settings.review_grpc_port,
                      settings.review_metrics_port, setup, apply_migrations=apply_migrations)
