"""The ingest process: IngestService over gRPC and the intake-topic stream processor.

Glue only: handlers validate with ``domain``, accept through ``publisher`` (PostgreSQL first,
then Kafka), and read through ``store``, ``listing`` and ``feed``. Background loops: the
status feed behind the watches, the backlog count behind backpressure, the reconciler and the
webhook worker. Classroom signals (ConsentService, the ``classroom-signals`` batch agent and
the consent view's refresh loop) are registered by :mod:`services.ingest.signals`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC
from typing import Any

import asyncpg
import grpc
from google.rpc import error_details_pb2

from services.ingest import (
    dead_letters,
    signals,
    domain,
    intake,
    keyset,
    listing,
    reconciler,
    sources,
    store,
    timeline,
    webhooks,
)
from services.ingest.rest import Gateway, Inbound
from services.ingest.backpressure import Backlog, Overloaded
from services.ingest.cancel import AlreadyFinished, Cancelled, Requested, cancel
from services.ingest.feed import CURSOR_METADATA_KEY, Cursor, StatusFeed, horizon
from services.ingest.publisher import Item, OnCreated, Publisher
from switchyard import Settings
from switchyard.access import IntakeSigner, Role, TenantLimiter, principal_var
from switchyard.documents import (
    TEXT_TYPES,
    BlobNotFound,
    DocumentInfo,
    DocumentLimits,
    load_body,
    normalise_content_type,
)
from switchyard.messaging import (
    INTAKE,
    TRANSIENT_ERRORS,
    Producer,
    Record,
    RejectRecord,
    record_context,
    record_key_hash,
)
from switchyard.privacy import matching_key
from switchyard.rpc import (
    FieldViolation,
    abort_invalid,
    abort_retry_later,
    abort_unless_batch_size,
    invalid_item,
    item_error,
    request_tenant,
    status_details,
)
from switchyard.runtime import ServiceContext, parse_weights, run_service
from switchyard.storage import TASK_ENVELOPE, PayloadCodec, PayloadError, codec_for, rewrap_stale
from switchyard.tasks import publish_status, stage_value, status_value, timestamp
from switchyard.telemetry import KpiExporter, current_trace_context, task_context
from switchyard.v1 import (
    CancelTaskRequest,
    CancelTaskResponse,
    DeadLetter,
    DeadLetterRecord,
    DeadLetterServiceServicer,
    DeadLetterState,
    DeleteWebhookRequest,
    DeleteWebhookResponse,
    DeleteWebhookSourceRequest,
    DeleteWebhookSourceResponse,
    GetDeadLetterRequest,
    GetDeadLetterResponse,
    GetTaskRequest,
    GetTaskResponse,
    GetTaskTimelineRequest,
    GetTaskTimelineResponse,
    IngestServiceServicer,
    ListDeadLettersRequest,
    ListDeadLettersResponse,
    ListTasksRequest,
    ListTasksResponse,
    ListWebhookDeliveriesRequest,
    ListWebhookDeliveriesResponse,
    ListWebhookSourcesRequest,
    ListWebhookSourcesResponse,
    ListWebhooksRequest,
    ListWebhooksResponse,
    RecordHeader,
    RedeliverWebhooksRequest,
    RedeliverWebhooksResponse,
    RedriveTaskRequest,
    RedriveTaskResponse,
    RegisterWebhookRequest,
    RegisterWebhookResponse,
    RegisterWebhookSourceRequest,
    RegisterWebhookSourceResponse,
    ReplayDeadLetterRequest,
    ReplayDeadLetterResponse,
    ResolveDeadLetterRequest,
    ResolveDeadLetterResponse,
    RetryTaskRequest,
    RetryTaskResponse,
    SkippedDelivery,
    Submission,
    SubmitTaskRequest,
    SubmitTaskResponse,
    SubmitTasksRequest,
    SubmitTasksResponse,
    SubmitTasksResult,
    Task,
    TaskSource,
    WatchTaskRequest,
    WatchTaskResponse,
    WatchTenantRequest,
    WatchTenantResponse,
    Webhook,
    WebhookDelivery,
    add_DeadLetterServiceServicer_to_server,
    add_IngestServiceServicer_to_server,
)

log = logging.getLogger(__name__)
SERVICE_NAME = "switchyard.v1.IngestService"
_SUBMITTERS = frozenset({Role.SUBMITTER})
_READERS = frozenset({Role.SUBMITTER, Role.REVIEWER, Role.AUDITOR})
#: The operator console's reads and actions on one task.
_OPERATORS = frozenset({Role.ADMIN, Role.AUDITOR})
_ADMINS = frozenset({Role.ADMIN})
POLICY = {
    f"/{SERVICE_NAME}/SubmitTask": _SUBMITTERS,
    f"/{SERVICE_NAME}/SubmitTasks": _SUBMITTERS,
    f"/{SERVICE_NAME}/CancelTask": _SUBMITTERS,
    f"/{SERVICE_NAME}/RetryTask": _SUBMITTERS,
    f"/{SERVICE_NAME}/RegisterWebhook": _SUBMITTERS,
    f"/{SERVICE_NAME}/DeleteWebhook": _SUBMITTERS,
    f"/{SERVICE_NAME}/RedeliverWebhooks": _SUBMITTERS,
    f"/{SERVICE_NAME}/ListWebhooks": _READERS,
    f"/{SERVICE_NAME}/ListWebhookDeliveries": _READERS,
    f"/{SERVICE_NAME}/RegisterWebhookSource": _SUBMITTERS,
    f"/{SERVICE_NAME}/ListWebhookSources": _SUBMITTERS,
    f"/{SERVICE_NAME}/DeleteWebhookSource": _SUBMITTERS,
    f"/{SERVICE_NAME}/GetTask": _READERS,
    f"/{SERVICE_NAME}/ListTasks": _READERS,
    f"/{SERVICE_NAME}/WatchTask": _READERS,
    f"/{SERVICE_NAME}/WatchTenant": _READERS,
    f"/{SERVICE_NAME}/GetTaskTimeline": _OPERATORS,
    f"/{SERVICE_NAME}/RedriveTask": _ADMINS,
}
DEAD_LETTER_SERVICE_NAME = "switchyard.v1.DeadLetterService"
#: The dead-letter queue is operator work: admins read and replay, auditors read.
DEAD_LETTER_POLICY = {
    f"/{DEAD_LETTER_SERVICE_NAME}/ListDeadLetters": frozenset({Role.ADMIN, Role.AUDITOR}),
    f"/{DEAD_LETTER_SERVICE_NAME}/GetDeadLetter": frozenset({Role.ADMIN, Role.AUDITOR}),
    f"/{DEAD_LETTER_SERVICE_NAME}/ReplayDeadLetter": frozenset({Role.ADMIN}),
    f"/{DEAD_LETTER_SERVICE_NAME}/ResolveDeadLetter": frozenset({Role.ADMIN}),
}
#: RPCs that create work: charged to the caller's tenant (one token per submission).
RATE_LIMITED = frozenset({f"/{SERVICE_NAME}/SubmitTask", f"/{SERVICE_NAME}/SubmitTasks",
                          f"/{SERVICE_NAME}/RetryTask"})
MAX_REASON_CHARS = 1000


def task_from_row(row: asyncpg.Record, codec: PayloadCodec) -> Task:
    """The API view of a ``tasks`` row; the envelope is opened (decrypted) with ``codec``."""
    return Task(
        envelope=store.open_envelope(codec, row),
        status=status_value(row["status"]), stage=stage_value(row["stage"]),
        reason=row["reason"], created_at=timestamp(row["created_at"]),
        updated_at=timestamp(row["updated_at"]), sequence=row["status_seq"],
    )


#: Roles that read a task without its document: reviewers read documents only through
#: ReviewService (redacted, withheld fields masked, reviewer groups applied); auditors audit
#: what happened to a task (status, timeline, decisions), which needs none of its bytes.
DOCUMENT_WITHHELD_FROM = frozenset({Role.REVIEWER, Role.AUDITOR})


def shown_to(role: Role, task: Task) -> Task:
    """The task as a caller of ``role`` may read it. Here nothing is masked, so a role of
    :data:`DOCUMENT_WITHHELD_FROM` gets the task without its document's bytes (body, stored
    blob, file name) and without its metadata: its status, stage, kind, type and page count
    stay. Submitters and admins read it whole."""
    if role in DOCUMENT_WITHHELD_FROM:
        document = task.envelope.document
        for name in ("body", "blob", "filename"):
            document.ClearField(name)
        task.envelope.ClearField("metadata")
    return task


def submit_response(accepted: store.Accepted) -> SubmitTaskResponse:
    return SubmitTaskResponse(task_id=accepted.task_id, status=status_value(accepted.status),
                              stage=stage_value(accepted.stage), created=accepted.created)


def checked(submission: Submission, settings: Settings
            ) -> tuple[list[FieldViolation], DocumentInfo | None]:
    """Every problem of a submission, and what ``inspect`` found in its document. CPU-bound
    for files (it opens them): handlers run it through :func:`check_off_loop`."""
    problems, info = domain.check(submission, DocumentLimits.from_settings(settings))
    return problems + webhooks.callback_problems(submission.callback_url, settings), info


async def check_off_loop(submission: Submission, settings: Settings
                         ) -> tuple[list[FieldViolation], DocumentInfo | None]:
    """:func:`checked` in a worker thread when the document is a file, so opening a large PDF
    or image never stalls the other requests on the event loop."""
    if normalise_content_type(submission.document.content_type) in TEXT_TYPES:
        return checked(submission, settings)
    return await asyncio.to_thread(checked, submission, settings)


def item_for(submission: Submission, source: int, info: DocumentInfo | None = None) -> Item:
    """A validated submission, normalised into the envelope with a fresh task id."""
    envelope = domain.build_envelope(submission, domain.new_task_id(), source,
                                     page_count=info.page_count if info else 0)
    return Item(envelope, domain.payload_sha256(submission), submission.callback_url.strip(),
                earlier_sha256=domain.earlier_payload_sha256(submission))


class IngestServicer(IngestServiceServicer):
    def __init__(self, settings: Settings, pool: asyncpg.Pool, publisher: Publisher,
                 feed: StatusFeed, backlog: Backlog) -> None:
        self.settings = settings
        self.pool = pool
        self.publisher = publisher
        self.feed = feed
        self.backlog = backlog
        self.codec = codec_for(settings)

    # -- helpers ---------------------------------------------------------------------------

    async def _tasks(self, rows: list[asyncpg.Record], context: grpc.aio.ServicerContext
                     ) -> list[Task]:
        """Rows as API tasks, as the caller may read them (:func:`shown_to`); blobs under a
        retired key are re-wrapped on the way (lazy key rotation). A payload that cannot be
        decrypted is DATA_LOSS, named, never garbage."""
        role = principal_var.get().role
        try:
            tasks = [shown_to(role, task_from_row(row, self.codec)) for row in rows]
        except PayloadError as exc:
            log.error("%s", exc)
            await context.abort(grpc.StatusCode.DATA_LOSS, str(exc))
        await rewrap_stale(self.pool, self.codec, TASK_ENVELOPE,
                           [(row["task_id"], row["envelope"]) for row in rows])
        return tasks

    async def _abort_overloaded(self, context: grpc.aio.ServicerContext,
                                exc: Overloaded) -> None:
        await abort_retry_later(context, grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc),
                                exc.retry_after_ms / 1000)

    async def _visible_task(self, task_id: str, context: grpc.aio.ServicerContext
                            ) -> asyncpg.Record:
        if not task_id.strip():
            await abort_invalid(context, [FieldViolation("task_id", "required")])
        row = await store.load_task(self.pool, task_id.strip())
        # Another tenant's task is reported as absent, never as forbidden: no existence leak.
        if row is None or not principal_var.get().may_access(row["tenant_id"]):
            await context.abort(grpc.StatusCode.NOT_FOUND, f"task {task_id!r} not found")
        return row

    # -- submit ----------------------------------------------------------------------------

    async def SubmitTask(self, request: SubmitTaskRequest,
                         context: grpc.aio.ServicerContext) -> SubmitTaskResponse:
        return await self.submit(request.submission, TaskSource.TASK_SOURCE_GRPC, context)

    async def submit(self, submission: Submission, source: int,
                     context: grpc.aio.ServicerContext) -> SubmitTaskResponse:
        """SubmitTask's rules for one submission from any entry (gRPC, inbound webhooks)."""
        problems, info = await check_off_loop(submission, self.settings)
        if problems:
            await abort_invalid(context, problems)
        if not principal_var.get().may_access(submission.tenant_id.strip()):
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                f"credentials do not allow tenant {submission.tenant_id!r}")
        return submit_response(await self._accept(item_for(submission, source, info), context))

    async def _accept(self, item: Item, context: grpc.aio.ServicerContext,
                      on_created: OnCreated | None = None) -> store.Accepted:
        """Accept one validated item (SubmitTask, RetryTask): over the backlog limit (or the
        tenant's share of it) a repeat of work already accepted still gets its answer; new
        work is refused with RetryInfo.
        ``on_created`` runs in the transaction that inserts a new task (see
        :meth:`Publisher.accept`)."""
        with task_context(item.envelope.task_id):
            try:
                tenant = item.envelope.tenant_id
                refusal = self.backlog.refusal(tenant)
                if refusal is not None:
                    existing = await store.find_by_key(
                        self.pool, tenant, item.envelope.idempotency_key, item.payload_sha256,
                        item.earlier_sha256)
                    if existing is not None:
                        return existing
                    await self._abort_overloaded(context, refusal)
                accepted = await self.publisher.accept(item, on_created=on_created)
                self.backlog.accepted(tenant, int(accepted.created))
                return accepted
            except store.IdempotencyConflict as exc:
                await context.abort(grpc.StatusCode.ALREADY_EXISTS, str(exc))
        raise AssertionError("unreachable: context.abort raises")

    async def RetryTask(self, request: RetryTaskRequest,
                        context: grpc.aio.ServicerContext) -> RetryTaskResponse:
        if request.attempt < 0:
            await abort_invalid(context, [FieldViolation("attempt", "must be >= 0 (0 means 1)")])
        row = await self._visible_task(request.task_id, context)
        task_id = str(row["task_id"])
        if row["status"] not in domain.RETRYABLE_STATUSES:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                f"task {task_id} is {row['status']}; only FAILED or CANCELLED "
                                "tasks can be retried")
        old = (await self._tasks([row], context))[0]
        submission = domain.retry_submission(old.envelope, request.attempt or 1)
        if submission.document.HasField("blob"):  # resubmitted with its bytes, checked again
            try:
                submission.document.body = await load_body(submission.document,
                                                            self.publisher.blobs)
            except BlobNotFound as exc:
                await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                    f"task {task_id} cannot be resubmitted: {exc}")
            submission.document.ClearField("blob")
        problems, info = await check_off_loop(submission, self.settings)
        if problems:  # e.g. the old task already had the most metadata entries allowed
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                f"task {task_id} cannot be resubmitted: "
                                + "; ".join(str(p) for p in problems))
        attempt, principal = request.attempt or 1, principal_var.get().key_id

        async def record(conn: asyncpg.Connection, new: store.Accepted) -> None:
            await timeline.record_retry(conn, row["tenant_id"], task_id, new.task_id, attempt,
                                        principal)

        accepted = await self._accept(item_for(submission, TaskSource.TASK_SOURCE_GRPC, info),
                                      context, on_created=record)
        new_row = await store.load_task(self.pool, accepted.task_id)
        return RetryTaskResponse(task=(await self._tasks([new_row], context))[0],
                                 created=accepted.created)

    async def SubmitTasks(self, request: SubmitTasksRequest,
                          context: grpc.aio.ServicerContext) -> SubmitTasksResponse:
        count = len(request.submissions)
        await abort_unless_batch_size(context, "submissions", count,
                                      self.settings.ingest_max_batch_items)
        principal = principal_var.get()
        results = [SubmitTasksResult() for _ in range(count)]
        items: list[Item] = []
        positions: list[int] = []
        for index, submission in enumerate(request.submissions):
            problems, info = await check_off_loop(submission, self.settings)
            if problems:
                results[index].error.CopyFrom(invalid_item(problems))
            elif not principal.may_access(submission.tenant_id.strip()):
                results[index].error.CopyFrom(item_error(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"credentials do not allow tenant {submission.tenant_id!r}"))
            else:
                items.append(item_for(submission, TaskSource.TASK_SOURCE_GRPC, info))
                positions.append(index)
        refusals = {index: refusal for item, index in zip(items, positions)
                    if (refusal := self.backlog.refusal(item.envelope.tenant_id)) is not None}
        if refusals:
            kept = [(item, index) for item, index in zip(items, positions)
                    if index not in refusals]
            await self._answer_retries(
                [(item, index) for item, index in zip(items, positions) if index in refusals],
                refusals, results, context, alone=not kept)
            items, positions = [item for item, _ in kept], [index for _, index in kept]
        outcomes = await self.publisher.accept_many(items)
        for index, item, outcome in zip(positions, items, outcomes):
            if isinstance(outcome, store.IdempotencyConflict):
                results[index].error.CopyFrom(item_error(grpc.StatusCode.ALREADY_EXISTS,
                                                         str(outcome)))
            else:
                results[index].accepted.CopyFrom(submit_response(outcome))
                self.backlog.accepted(item.envelope.tenant_id, int(outcome.created))
        accepted = sum(1 for r in results if r.HasField("accepted"))
        return SubmitTasksResponse(results=results, accepted_count=accepted,
                                   rejected_count=count - accepted)

    async def _answer_retries(self, refused: list[tuple[Item, int]],
                              refusals: dict[int, Overloaded],
                              results: list[SubmitTasksResult],
                              context: grpc.aio.ServicerContext, alone: bool) -> None:
        """Under backpressure (the whole backlog, or these items' tenants at their share):
        items already accepted get their task back (a client retrying a batch whose response
        it lost); new ones are refused, each with its refusal as a per-item code 8. When
        they are ``alone`` (no other item of the call is accepted) and none was accepted
        before, the whole call gets RESOURCE_EXHAUSTED with the retry hint instead, as
        SubmitTask does."""
        fresh: list[int] = []
        for item, index in refused:
            try:
                existing = await store.find_by_key(
                    self.pool, item.envelope.tenant_id, item.envelope.idempotency_key,
                    item.payload_sha256, item.earlier_sha256)
            except store.IdempotencyConflict as exc:
                results[index].error.CopyFrom(item_error(grpc.StatusCode.ALREADY_EXISTS,
                                                         str(exc)))
                continue
            if existing is None:
                fresh.append(index)
            else:
                results[index].accepted.CopyFrom(submit_response(existing))
        if fresh and alone and not any(r.HasField("accepted") for r in results):
            await self._abort_overloaded(context, refusals[fresh[0]])
        for index in fresh:
            results[index].error.CopyFrom(item_error(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                                     str(refusals[index])))

    # -- read ------------------------------------------------------------------------------

    async def GetTask(self, request: GetTaskRequest,
                      context: grpc.aio.ServicerContext) -> GetTaskResponse:
        row = await self._visible_task(request.task_id, context)
        return GetTaskResponse(task=(await self._tasks([row], context))[0])

    async def ListTasks(self, request: ListTasksRequest,
                        context: grpc.aio.ServicerContext) -> ListTasksResponse:
        tenant = await request_tenant(request.tenant_id, context)
        query = listing.parse(request, tenant)
        if isinstance(query, list):
            await abort_invalid(context, query)
        rows, token = await listing.fetch_page(self.pool, query,  # type: ignore[arg-type]
                                               self.publisher.hash_key)
        return ListTasksResponse(tasks=await self._tasks(rows, context), next_page_token=token)

    async def GetTaskTimeline(self, request: GetTaskTimelineRequest,
                              context: grpc.aio.ServicerContext) -> GetTaskTimelineResponse:
        row = await self._visible_task(request.task_id, context)
        task = (await self._tasks([row], context))[0]
        async with self.pool.acquire() as conn:
            entries = await timeline.entries(conn, str(row["task_id"]))
        return GetTaskTimelineResponse(task=task, entries=entries)

    async def _task_with_reason(self, task_id: str, reason: str,
                                context: grpc.aio.ServicerContext) -> tuple[str, str]:
        """The id of a task the caller may act on, and the stripped reason it gave (cancel and
        re-drive both take one, audited with the action); aborts on a reason too long or a
        task the caller cannot see."""
        if len(reason) > MAX_REASON_CHARS:
            await abort_invalid(context, [FieldViolation(
                "reason", f"at most {MAX_REASON_CHARS} characters")])
        row = await self._visible_task(task_id, context)
        return str(row["task_id"]), reason.strip()

    async def RedriveTask(self, request: RedriveTaskRequest,
                          context: grpc.aio.ServicerContext) -> RedriveTaskResponse:
        task_id, reason = await self._task_with_reason(request.task_id, request.reason,
                                                       context)
        try:
            async with self.pool.acquire() as conn:
                found = await reconciler.redrive_one(conn, self.publisher, task_id,
                                                     principal_var.get().key_id, reason)
        except reconciler.AlreadyFinished as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        except PayloadError as exc:
            log.error("%s", exc)
            await context.abort(grpc.StatusCode.DATA_LOSS, str(exc))
        except TRANSIENT_ERRORS as exc:  # recorded, not published: the caller may repeat
            await abort_retry_later(context, grpc.StatusCode.UNAVAILABLE,
                                    f"task {task_id}: the re-drive was recorded but the broker "
                                    f"did not take it ({exc!r}); call again", 1.0)
        if not found:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"task {task_id!r} not found")
        row = await store.load_task(self.pool, task_id)
        return RedriveTaskResponse(task=(await self._tasks([row], context))[0])

    # -- cancel ----------------------------------------------------------------------------

    async def CancelTask(self, request: CancelTaskRequest,
                         context: grpc.aio.ServicerContext) -> CancelTaskResponse:
        task_id, reason = await self._task_with_reason(request.task_id, request.reason,
                                                       context)
        async with self.pool.acquire() as conn:
            outcome = await cancel(conn, task_id, reason, principal_var.get().key_id)
        if outcome is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"task {task_id!r} not found")
        if isinstance(outcome, AlreadyFinished):
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                f"task {task_id} is already {outcome.status}; nothing to cancel")
        if isinstance(outcome, Requested):
            if outcome.new:
                try:
                    await reconciler.publish_cancellation(self.publisher, outcome.request)
                except TRANSIENT_ERRORS as exc:  # recorded: the reconciler publishes it
                    log.warning("cancellation request not published yet: %r", exc)
            message = (f"task {task_id} is already executing, so it cannot be cancelled "
                       "outright; a cancellation request was sent to the executor, which "
                       "compensates the finished steps. Watch the task for the outcome.")
            code = grpc.StatusCode.FAILED_PRECONDITION
            detail = error_details_pb2.PreconditionFailure(violations=[
                error_details_pb2.PreconditionFailure.Violation(
                    type="TASK_EXECUTING", subject=f"tasks/{task_id}",
                    description=f"cancellation request {outcome.request.request_id} "
                                "published to the cancellations topic")])
            await context.abort(code, message,
                                trailing_metadata=status_details(code, message, detail))
        assert isinstance(outcome, Cancelled)
        try:
            if self.settings.fault_inject == "drop_cancel_status":
                log.critical("fault injection: drop_cancel_status, CANCELLED event not produced")
            else:
                await publish_status(self.publisher.producer, outcome.change.event)
        except TRANSIENT_ERRORS as exc:  # committed; watches and webhooks read PostgreSQL,
            # and the reconciler mirrors it again if a review item of the task stays open
            log.warning("CANCELLED status event not mirrored to Kafka: %r", exc)
        row = await store.load_task(self.pool, task_id)
        return CancelTaskResponse(task=(await self._tasks([row], context))[0])

    # -- watch -----------------------------------------------------------------------------

    async def WatchTask(self, request: WatchTaskRequest,
                        context: grpc.aio.ServicerContext) -> AsyncIterator[WatchTaskResponse]:
        if request.after_sequence < 0:
            await abort_invalid(context, [FieldViolation("after_sequence", "must be >= 0")])
        row = await self._visible_task(request.task_id, context)
        async for event in self.feed.watch_task(str(row["task_id"]), request.after_sequence):
            yield WatchTaskResponse(event=event)

    async def WatchTenant(self, request: WatchTenantRequest, context: grpc.aio.ServicerContext
                          ) -> AsyncIterator[WatchTenantResponse]:
        tenant = await request_tenant(request.tenant_id, context)
        if request.cursor:
            try:
                after = Cursor.decode(request.cursor)
            except ValueError as exc:
                await abort_invalid(context, [FieldViolation("cursor", str(exc))])
                raise
        else:  # from now: a position the caller can resume from even if nothing comes
            after = Cursor.before_txid(await horizon(self.pool))
        await context.send_initial_metadata(((CURSOR_METADATA_KEY, after.encode()),))
        async for item in self.feed.watch_tenant(tenant, after):
            yield WatchTenantResponse(event=item.event, cursor=item.cursor.encode())

    # -- webhooks --------------------------------------------------------------------------

    async def RegisterWebhook(self, request: RegisterWebhookRequest,
                              context: grpc.aio.ServicerContext) -> RegisterWebhookResponse:
        tenant = await request_tenant(request.tenant_id, context)
        problems = []
        problem = webhooks.url_problem(request.url.strip(), self.settings)
        if not request.url.strip():
            problems.append(FieldViolation("url", "required"))
        elif problem:
            problems.append(FieldViolation("url", problem))
        if "\x00" in request.secret:
            problems.append(FieldViolation("secret", "must not contain NUL characters"))
        elif request.secret and not 16 <= len(request.secret) <= 256:
            problems.append(FieldViolation("secret", "16 to 256 characters (or empty: the "
                                                     "server generates one)"))
        if problems:
            await abort_invalid(context, problems)
        webhook_id, secret = await webhooks.register(self.pool, tenant, request.url.strip(),
                                                     request.secret)
        return RegisterWebhookResponse(webhook_id=webhook_id, secret=secret)

    async def DeleteWebhook(self, request: DeleteWebhookRequest,
                            context: grpc.aio.ServicerContext) -> DeleteWebhookResponse:
        tenant = await webhooks.webhook_tenant(self.pool, request.webhook_id)
        if tenant is None or not principal_var.get().may_access(tenant):
            return DeleteWebhookResponse(deleted=False)
        return DeleteWebhookResponse(deleted=await webhooks.delete(self.pool, request.webhook_id))

    async def ListWebhooks(self, request: ListWebhooksRequest,
                           context: grpc.aio.ServicerContext) -> ListWebhooksResponse:
        tenant = await request_tenant(request.tenant_id, context)
        return ListWebhooksResponse(webhooks=[
            Webhook(webhook_id=str(r["webhook_id"]), tenant_id=r["tenant_id"], url=r["url"],
                    created_at=timestamp(r["created_at"]), pending=r["pending"],
                    delivered=r["delivered"], failed=r["failed"])
            for r in await webhooks.list_webhooks(self.pool, tenant)])

    async def ListWebhookDeliveries(self, request: ListWebhookDeliveriesRequest,
                                    context: grpc.aio.ServicerContext
                                    ) -> ListWebhookDeliveriesResponse:
        tenant = await request_tenant(request.tenant_id, context)
        problems: list[FieldViolation] = []

        def checked(parse: Any) -> Any:
            try:
                return parse()
            except FieldViolation as exc:
                problems.append(exc)
                return None

        webhook_id = checked(lambda: webhooks.parse_uuid("webhook_id", request.webhook_id)
                             if request.webhook_id else None)
        page_size = checked(lambda: keyset.page_size(request.page_size))
        state = checked(lambda: webhooks.state_filter(request.state))
        since = checked(lambda: _timestamp_field(request, "since"))
        if problems:
            await abort_invalid(context, problems)
        try:
            rows, token = await webhooks.list_deliveries(
                self.pool, tenant, webhook_id, state, since, page_size, request.page_token)
        except FieldViolation as exc:
            await abort_invalid(context, [exc])
            raise
        return ListWebhookDeliveriesResponse(deliveries=[webhook_delivery(r) for r in rows],
                                             next_page_token=token)

    async def RedeliverWebhooks(self, request: RedeliverWebhooksRequest,
                                context: grpc.aio.ServicerContext
                                ) -> RedeliverWebhooksResponse:
        tenant = await request_tenant(request.tenant_id, context)
        problems: list[FieldViolation] = []
        ids = []
        if bool(request.delivery_ids) == request.HasField("failed_since"):
            problems.append(FieldViolation("delivery_ids", "name deliveries, or set "
                                                           "failed_since (not both)"))
        if len(request.delivery_ids) > webhooks.MAX_REDELIVER_IDS:
            problems.append(FieldViolation("delivery_ids", f"at most "
                                                           f"{webhooks.MAX_REDELIVER_IDS}"))
        for index, value in enumerate(request.delivery_ids[:webhooks.MAX_REDELIVER_IDS]):
            try:
                ids.append(webhooks.parse_uuid(f"delivery_ids[{index}]", value))
            except FieldViolation as exc:
                problems.append(exc)
        failed_since = None
        if request.HasField("failed_since"):
            try:
                failed_since = _timestamp_field(request, "failed_since")
            except FieldViolation as exc:
                problems.append(exc)
        if problems:
            await abort_invalid(context, problems)
        try:
            rows, skipped = await webhooks.redeliver(self.pool, tenant, list(dict.fromkeys(ids)),
                                                     failed_since, principal_var.get().key_id)
        except webhooks.DeliveryNotFound as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
            raise
        return RedeliverWebhooksResponse(
            redelivered=[webhook_delivery(r) for r in rows],
            skipped=[SkippedDelivery(delivery_id=i, reason=why) for i, why in skipped])

    # -- inbound webhook sources -----------------------------------------------------------

    async def RegisterWebhookSource(self, request: RegisterWebhookSourceRequest,
                                    context: grpc.aio.ServicerContext
                                    ) -> RegisterWebhookSourceResponse:
        tenant = await request_tenant(request.tenant_id, context)
        problems = sources.registration_problems(request.name, request.mapping)
        if problems:
            await abort_invalid(context, problems)
        source, secret = await sources.register(self.pool, tenant, request.name,
                                                request.mapping)
        return RegisterWebhookSourceResponse(source=source, secret=secret)

    async def ListWebhookSources(self, request: ListWebhookSourcesRequest,
                                 context: grpc.aio.ServicerContext
                                 ) -> ListWebhookSourcesResponse:
        tenant = await request_tenant(request.tenant_id, context)
        return ListWebhookSourcesResponse(sources=await sources.list_sources(self.pool, tenant))

    async def DeleteWebhookSource(self, request: DeleteWebhookSourceRequest,
                                  context: grpc.aio.ServicerContext
                                  ) -> DeleteWebhookSourceResponse:
        source = await sources.load(self.pool, request.source_id)
        if source is None or not principal_var.get().may_access(source.tenant_id):
            return DeleteWebhookSourceResponse(deleted=False)
        return DeleteWebhookSourceResponse(
            deleted=await sources.delete(self.pool, source.source_id))


def webhook_delivery(row: asyncpg.Record) -> WebhookDelivery:
    """The API view of a ``webhook_deliveries`` row."""
    delivery = WebhookDelivery(
        delivery_id=str(row["delivery_id"]),
        webhook_id=str(row["webhook_id"]) if row["webhook_id"] else "",
        tenant_id=row["tenant_id"], task_id=str(row["task_id"]), sequence=row["seq"],
        url=row["url"], state=row["state"], attempts=row["attempts"],
        last_error=row["last_error"], created_at=timestamp(row["created_at"]))
    if row["delivered_at"] is not None:
        delivery.delivered_at.CopyFrom(timestamp(row["delivered_at"]))
    if row["state"] == "pending":
        delivery.next_attempt_at.CopyFrom(timestamp(row["next_attempt_at"]))
    return delivery


class IntakeConsumer:
    """The intake-topic agent: normalise each record into a task, or refuse it with a reason."""

    def __init__(self, settings: Settings, publisher: Publisher, backlog: Backlog,
                 limiter: TenantLimiter) -> None:
        self.settings = settings
        self.publisher = publisher
        self.backlog = backlog
        self.limiter = limiter
        self.signer = IntakeSigner(settings.intake_signing_keys)

    async def handle_batch(self, records: list[Record]) -> list[tuple[Record, RejectRecord]]:
        """A batch of intake records: each parsed and checked (a bad one is refused with its
        reason, the rest go on), the good ones accepted in one insert and published, each
        task in the trace its record arrived in; returns the records refused."""
        # Over the backlog limit the records wait in Kafka, the buffer built for it.
        await self.backlog.wait_until_below()
        limits = DocumentLimits.from_settings(self.settings)
        refused: list[tuple[Record, RejectRecord]] = []
        ready: list[tuple[Record, Item]] = []
        for record in records:
            try:
                submission = intake.parse_record(record, limits, self.signer)
                problems, info = await check_off_loop(submission, self.settings)
                if problems:
                    raise RejectRecord(*intake.problems_reason(problems),
                                       tenant_id=submission.tenant_id.strip())
            except RejectRecord as exc:
                refused.append((record, exc))
                continue
            # A tenant over its rate is slowed here, never refused: the record waits for
            # tokens from the same shared bucket its gRPC calls draw on (later records wait
            # in Kafka).
            await self.limiter.wait(submission.tenant_id.strip())
            ready.append((record, item_for(submission, TaskSource.TASK_SOURCE_KAFKA_INTAKE,
                                           info)))
        if not ready:
            return refused
        traces = [record_context(record).run(current_trace_context) for record, _ in ready]
        outcomes = await self.publisher.accept_many([item for _, item in ready], traces,
                                                    republish_unpublished=True)
        for (record, item), outcome in zip(ready, outcomes):
            if isinstance(outcome, store.IdempotencyConflict):
                refused.append((record, RejectRecord("idempotency_conflict", str(outcome),
                                                     tenant_id=item.envelope.tenant_id)))
        return refused


def dead_letter_record(row: asyncpg.Record, original: dead_letters.Original | None = None
                       ) -> DeadLetterRecord:
    """The API view of a ``dead_letters`` row (the original record only when given:
    GetDeadLetter)."""
    letter = DeadLetter(
        dead_letter_id=str(row["dead_letter_id"]), source_topic=row["source_topic"],
        partition=row["source_partition"] or 0, offset=row["source_offset"] or 0,
        reason_code=row["reason_code"], reason=row["reason"],
        failed_at=timestamp(row["failed_at"]), service=row["service"],
        tenant_id=row["tenant_id"] or "")
    if original is not None:
        letter.original_key = original.key or b""
        letter.original_value = original.value or b""
        letter.original_headers.update(original.headers)
        letter.original_header_list.extend(RecordHeader(key=name, value=value)
                                           for name, value in original.header_list)
    record = DeadLetterRecord(letter=letter, tenant_id=row["tenant_id"],
                              replayed_by=row["replayed_by"] or "",
                              replay_count=row["replay_count"],
                              purged=row["purged_at"] is not None,
                              resolved_by=row["resolved_by"] or "",
                              resolution=row["resolution"] or "",
                              state=_LETTER_STATES[dead_letters.state_of(row)])
    if row["replayed_at"] is not None:
        record.replayed_at.CopyFrom(timestamp(row["replayed_at"]))
    if row["resolved_at"] is not None:
        record.resolved_at.CopyFrom(timestamp(row["resolved_at"]))
    return record


_LETTER_STATES = {"open": DeadLetterState.DEAD_LETTER_STATE_OPEN,
                  "replayed": DeadLetterState.DEAD_LETTER_STATE_REPLAYED,
                  "resolved": DeadLetterState.DEAD_LETTER_STATE_RESOLVED}
_STATE_FILTERS = {state: name for name, state in _LETTER_STATES.items()}


def _timestamp_field(request: Any, field: str) -> Any:
    """A request's Timestamp field as an aware datetime (None when unset); one out of range
    is a FieldViolation naming it."""
    if not request.HasField(field):
        return None
    try:
        return getattr(request, field).ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise FieldViolation(field, "not a representable time") from None


class DeadLetterServicer(DeadLetterServiceServicer):
    """DeadLetterService: glue over :mod:`services.ingest.dead_letters`."""

    def __init__(self, settings: Settings, pool: asyncpg.Pool, producer: Producer) -> None:
        self.pool = pool
        self.producer = producer
        self.codec = codec_for(settings)
        self.hash_key = matching_key(settings)   # ListDeadLetters' record_key filter

    async def _scope(self, context: grpc.aio.ServicerContext,
                     tenant_id: str = "") -> dead_letters.Scope:
        try:
            return dead_letters.scope_for(principal_var.get(), tenant_id)
        except PermissionError as exc:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
            raise

    async def ListDeadLetters(self, request: ListDeadLettersRequest,
                              context: grpc.aio.ServicerContext) -> ListDeadLettersResponse:
        try:
            tenant_id = dead_letters.text_filter("tenant_id", request.tenant_id)
            page_size = dead_letters.page_size_of(request.page_size)
            if request.state and request.state not in _STATE_FILTERS:  # 0: every state
                raise FieldViolation("state", f"unknown state {request.state}")
            filters = dead_letters.Filters(
                dead_letters.text_filter("source_topic", request.source_topic),
                dead_letters.text_filter("reason_code", request.reason_code),
                _timestamp_field(request, "since"), _STATE_FILTERS.get(request.state, ""),
                record_key_hash(self.hash_key, request.record_key.encode())
                if request.record_key else "")
        except FieldViolation as exc:
            await abort_invalid(context, [exc])
            raise
        scope = await self._scope(context, tenant_id)
        try:
            rows, token = await dead_letters.list_page(self.pool, scope, filters, page_size,
                                                       request.page_token)
        except FieldViolation as exc:
            await abort_invalid(context, [exc])
            raise
        return ListDeadLettersResponse(dead_letters=[dead_letter_record(r) for r in rows],
                                       next_page_token=token)

    async def _id(self, context: grpc.aio.ServicerContext, value: str) -> Any:
        try:
            return dead_letters.parse_id(value)
        except FieldViolation as exc:
            await abort_invalid(context, [exc])
            raise

    async def GetDeadLetter(self, request: GetDeadLetterRequest,
                            context: grpc.aio.ServicerContext) -> GetDeadLetterResponse:
        letter_id = await self._id(context, request.dead_letter_id)
        scope = await self._scope(context)
        try:
            row, record = await dead_letters.get(self.pool, scope, letter_id, self.codec)
        except dead_letters.NotFound as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
            raise
        return GetDeadLetterResponse(dead_letter=dead_letter_record(row, record))

    async def ReplayDeadLetter(self, request: ReplayDeadLetterRequest,
                               context: grpc.aio.ServicerContext) -> ReplayDeadLetterResponse:
        letter_id = await self._id(context, request.dead_letter_id)
        scope = await self._scope(context)
        principal = principal_var.get()
        try:
            row = await dead_letters.replay(self.pool, self.producer, scope, letter_id,
                                            principal, request.force, self.codec)
        except dead_letters.NotFound as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
            raise
        except (dead_letters.AlreadyReplayed, dead_letters.AlreadyResolved,
                dead_letters.Purged, dead_letters.TooLargeToReplay) as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
            raise
        log.warning("dead letter %s replayed by %s%s", letter_id, principal.key_id,
                    " (forced)" if request.force else "")
        return ReplayDeadLetterResponse(dead_letter=dead_letter_record(row))

    async def ResolveDeadLetter(self, request: ResolveDeadLetterRequest,
                                context: grpc.aio.ServicerContext) -> ResolveDeadLetterResponse:
        letter_id = await self._id(context, request.dead_letter_id)
        try:
            resolution = dead_letters.resolution_of(request.reason)
        except FieldViolation as exc:
            await abort_invalid(context, [exc])
            raise
        scope = await self._scope(context)
        principal = principal_var.get()
        try:
            row = await dead_letters.resolve(self.pool, scope, letter_id, principal,
                                             resolution)
        except dead_letters.NotFound as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
            raise
        except dead_letters.AlreadyResolved as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
            raise
        log.info("dead letter %s resolved by %s", letter_id, principal.key_id)
        return ResolveDeadLetterResponse(dead_letter=dead_letter_record(row))


async def setup(ctx: ServiceContext) -> None:
    settings = ctx.settings
    publisher = Publisher(settings, ctx.pool, ctx.producer)
    ctx.on_stop.append(publisher.close)
    feed = StatusFeed(ctx.pool, settings.watch_poll_ms / 1000)
    await feed.start()
    backlog = Backlog(ctx.pool, settings.ingest_max_backlog, settings.ingest_backlog_check_s,
                      settings.ingest_retry_after_ms, parse_weights(settings.tenant_weights))
    await backlog.refresh()
    servicer = IngestServicer(settings, ctx.pool, publisher, feed, backlog)
    ctx.serve((add_IngestServiceServicer_to_server, servicer, SERVICE_NAME), POLICY,
              rate_limited=RATE_LIMITED)
    ctx.serve((add_DeadLetterServiceServicer_to_server,
               DeadLetterServicer(settings, ctx.pool, ctx.producer), DEAD_LETTER_SERVICE_NAME),
              DEAD_LETTER_POLICY)
    if settings.ingest_rest_port:
        gateway = Gateway(settings, Inbound(ctx.pool, servicer, ctx.limiter))
        await gateway.start()
        ctx.on_stop.append(gateway.stop)
    ctx.consume_batches(INTAKE, IntakeConsumer(settings, publisher, backlog,
                                               ctx.limiter).handle_batch)
    # classroom signals: ConsentService, the classroom-signals batch agent, the consent view
    await signals.register(ctx, publisher.blobs)

    async def reconcile() -> None:
        await reconciler.run(publisher, settings.reconcile_interval_s,
                             settings.reconcile_after_s, settings.redrive_after_s)

    async def deliver_webhooks() -> None:
        await webhooks.run(ctx.pool, settings, settings.watch_poll_ms / 1000)

    # Business KPIs come from the system of record; every replica runs the exporter, the one
    # holding the deployment's advisory lock exports them (switchyard/_kpis.py).
    kpis = KpiExporter(settings, ctx.pool)
    for loop_name, loop in (("status-feed", feed.run), ("backlog", backlog.run),
                            ("reconciler", reconcile), ("webhooks", deliver_webhooks),
                            ("kpis", kpis.run)):
        ctx.run_in_background(loop_name, loop)


async def main(settings: Settings, apply_migrations: bool = False) -> None:
    await run_service("ingest", settings, settings.ingest_grpc_port,
                      settings.ingest_metrics_port, setup, apply_migrations=apply_migrations)
