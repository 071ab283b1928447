"""The review process: escalations agent, admission and SLA loops, ReviewService and the web
console; glue over ``queue``, ``admission``, ``sla``, ``desk`` and ``console``."""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import TypeVar

import grpc

from services.review.admission import IDLE_WAIT_S, Admitter
from services.review.console import Console
from services.review.desk import ReviewDesk
from services.review.endings import TaskEndings
from services.review.operator import OperatorApi, service_address
from services.review.intake import EscalationIntake
from services.review.policies import ReviewPolicy
from services.review.queue import ReviewError, ReviewQueue
from services.review.reconsider import EditsCheck
from services.review.resolutions import DecisionPublisher
from services.review.sla import SlaKeeper
from switchyard import Settings
from switchyard.access import ApiKeyAuthenticator, Role, principal_var
from switchyard.documents import DocumentLimits, blob_store_for
from switchyard.messaging import ESCALATIONS, TASK_STATUS
from switchyard.privacy import Redactor
from switchyard.rpc import (
    ClientTls,
    FieldViolation,
    abort_invalid,
    create_channel,
    server_ssl_context,
)
from switchyard.runtime import Idle, ServiceContext, periodic, run_service
from switchyard.storage import codec_for
from switchyard.v1 import (
    ClaimRequest,
    ClaimResponse,
    GetItemRequest,
    GetItemResponse,
    ListQueueRequest,
    ListQueueResponse,
    ReleaseRequest,
    ReleaseResponse,
    RenewRequest,
    RenewResponse,
    ReviewServiceServicer,
    SubmitVerdictRequest,
    SubmitVerdictResponse,
    add_ReviewServiceServicer_to_server,
)

log = logging.getLogger(__name__)
SERVICE_NAME = "switchyard.v1.ReviewService"
_REVIEWERS = frozenset({Role.REVIEWER})
POLICY = {f"/{SERVICE_NAME}/{rpc}": _REVIEWERS for rpc in (
    "ListQueue", "GetItem", "Claim", "Renew", "Release", "SubmitVerdict")}
POLICY[f"/{SERVICE_NAME}/ListQueue"] = frozenset({Role.REVIEWER, Role.AUDITOR})
POLICY[f"/{SERVICE_NAME}/GetItem"] = frozenset({Role.REVIEWER, Role.AUDITOR})
#: RPCs that create work (a verdict releases execution): charged to the caller's tenant, on
#: gRPC and on the web console's route for the same RPC.
RATE_LIMITED = frozenset({f"/{SERVICE_NAME}/SubmitVerdict"})

T = TypeVar("T")


class ReviewServicer(ReviewServiceServicer):
    """gRPC face of the desk: maps ReviewError onto status codes with field details."""

    def __init__(self, desk: ReviewDesk) -> None:
        self.desk = desk

    async def _run(self, context: grpc.aio.ServicerContext, action: Awaitable[T]) -> T:
        try:
            return await action
        except ReviewError as exc:
            if exc.code == "invalid":
                await abort_invalid(context, [FieldViolation(f, d) for f, d in exc.violations])
            code = {"not_found": grpc.StatusCode.NOT_FOUND,
                    "forbidden": grpc.StatusCode.PERMISSION_DENIED,
                    "unavailable": grpc.StatusCode.UNAVAILABLE,
                    }.get(exc.code, grpc.StatusCode.FAILED_PRECONDITION)
            await context.abort(code, str(exc))
            raise  # unreachable: abort raises

    async def ListQueue(self, request: ListQueueRequest,
                        context: grpc.aio.ServicerContext) -> ListQueueResponse:
        return await self._run(context, self.desk.list_queue(principal_var.get(), request))

    async def GetItem(self, request: GetItemRequest,
                      context: grpc.aio.ServicerContext) -> GetItemResponse:
        item = await self._run(context, self.desk.get_item(principal_var.get(),
                                                            request.item_id))
        return GetItemResponse(item=item)

    async def Claim(self, request: ClaimRequest,
                    context: grpc.aio.ServicerContext) -> ClaimResponse:
        return ClaimResponse(item=await self._run(
            context, self.desk.claim(principal_var.get(), request)))

    async def Renew(self, request: RenewRequest,
                    context: grpc.aio.ServicerContext) -> RenewResponse:
        return RenewResponse(item=await self._run(
            context, self.desk.renew(principal_var.get(), request)))

    async def Release(self, request: ReleaseRequest,
                      context: grpc.aio.ServicerContext) -> ReleaseResponse:
        return ReleaseResponse(item=await self._run(context, self.desk.release(
            principal_var.get(), request.item_id, request.reviewer_id)))

    async def SubmitVerdict(self, request: SubmitVerdictRequest,
                            context: grpc.aio.ServicerContext) -> SubmitVerdictResponse:
        item, decision = await self._run(context, self.desk.submit_verdict(
            principal_var.get(), request.verdict,
            credentials=[(k, v) for k, v in context.invocation_metadata() or ()
                         if isinstance(v, str)]))
        # the first approval of a four-eyes item decides nothing yet: no decision id
        return SubmitVerdictResponse(item=item,
                                     decision_id=decision.decision_id if decision else "")


async def setup(ctx: ServiceContext) -> None:
    settings = ctx.settings
    policy = ReviewPolicy.from_settings(settings)
    codec = codec_for(settings)  # review_items.escalation embeds the document: sealed
    queue = ReviewQueue(ctx.pool, codec)
    publisher = DecisionPublisher(ctx.pool, ctx.producer, codec)
    redactor = Redactor() if settings.review_redact_pii else None
    # an approval's edits are put to the pack's rules in the decision service (reconsider.py)
    tls = ClientTls.from_settings(settings)
    edits_check = EditsCheck(create_channel(service_address(settings, "decision"), None,
                                            **(tls.as_dict() if tls else {})))
    ctx.on_stop.append(edits_check.close)
    desk = ReviewDesk(ctx.pool, queue, publisher, policy, redactor, edits_check)
    # the admission loop works the backlog at its interval while there is one; empty, it
    # waits for this process's intake to add to it (or, for another replica's, a second)
    admitter, admission_idle = Admitter(ctx.pool, policy), Idle(IDLE_WAIT_S)
    ctx.consume_batches(ESCALATIONS, EscalationIntake(
        queue, redactor, publisher, on_backlogged=admission_idle.wake).handle_batch)
    # tasks that end (cancelled, or otherwise terminal) leave the review queues
    ctx.consume_batches(TASK_STATUS, TaskEndings(ctx.pool).handle_batch)
    ctx.serve((add_ReviewServiceServicer_to_server, ReviewServicer(desk), SERVICE_NAME), POLICY,
              rate_limited=RATE_LIMITED)
    ctx.run_in_background("admission", periodic(
        "admission", settings.review_admission_interval_ms / 1000, admitter.round,
        admission_idle))
    ctx.run_in_background("sla", periodic(
        "sla", settings.review_sla_interval_s,
        SlaKeeper(ctx.pool, policy, publisher, codec).tick))
    console = Console(desk, ctx.pool, settings.api_keys, POLICY, settings.bind_host,
                      settings.review_web_port, supervisor=ctx.supervisor,
                      limiter=ctx.limiter, rate_limited=RATE_LIMITED,
                      ssl_context=server_ssl_context(settings),
                      operator=OperatorApi(settings, ctx.pool,
                                           ApiKeyAuthenticator(settings.api_keys)),
                      blobs=blob_store_for(settings, ctx.pool),
                      document_limits=DocumentLimits.from_settings(settings))
    await console.start()
    ctx.on_stop.append(console.stop)


async def main(settings: Settings, apply_migrations: bool = False) -> None:
    await run_service("review", settings, settings.review_grpc_port,
                      settings.review_metrics_port, setup, apply_migrations=apply_migrations)
