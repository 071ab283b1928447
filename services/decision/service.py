"""The decision process: the tasks-topic agent, the sync Decide RPC and PackService, over
shared batchers and one pack catalog."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import grpc

from services.decision.batcher import MicroBatcher, Overloaded
from services.decision.cascade import RouterCascade
from services.decision.drift import DriftMonitor
from services.decision import fairness, health
from services.decision.engagement.analytics import POLICY as ANALYTICS_POLICY
from services.decision.engagement.analytics import SERVICE_NAME as ANALYTICS_SERVICE_NAME
from services.decision.engagement.analytics import AnalyticsServicer
from services.decision.engagement.erasure import ErasureConsumer, retention_loop
from services.decision.engagement.processor import EngagementProcessor
from services.decision.engine import Decided, DecisionEngine
from services.decision.embeddings import EMBED_BATCH_MAX, Embeddings
from services.decision.extensions import EnricherResources, Enrichers, Scorers
from services.decision.holds import HoldRetrier
from services.decision.labels import record_pending
from services.decision.learning import HistoryLearner
from services.decision.model_admin import ROUTER, InvalidRollout, ModelRollouts
from services.decision.pack_service import POLICY as PACK_POLICY
from services.decision.pack_service import RATE_LIMITED as PACK_RATE_LIMITED
from services.decision.pack_service import SERVICE_NAME as PACK_SERVICE_NAME
from services.decision.pack_service import PackServicer
from services.decision.packs import PackCatalog
from services.decision.policies import PolicyError, load_policies
from services.decision.policy import Outcome, Policy
from services.decision.rollouts import (
    Rollout,
    RolloutBook,
    RolloutError,
    RolloutJudge,
    Thresholds,
    with_default_shadow,
)
from services.decision.shadow import ShadowRunner
from services.decision.versions import ModelVersions, Version
from services.decision.reading import LAYOUT_CONTENT_TYPES, DocumentReader, UnreadableDocument
from services.decision.pools import TritonPools, new_breaker
from services.decision.triton import (
    EncoderClient,
    ModelUnavailable,
    OcrClient,
    RouterClient,
    ScorerClient,
)
from switchyard import Settings
from switchyard.access import Role, principal_var
from switchyard.audit import Entry as AuditEntry, append_many as audit_append_many, digest
from switchyard.documents import DocumentLimits, blob_store_for
from switchyard.messaging import (
    DECISIONS,
    ESCALATIONS,
    SUBJECT_ERASURES,
    TASK_STATUS,
    TASKS,
    Record,
    RejectRecord,
    decode_batch,
    record_context,
    run_each,
    scheduling_headers,
)
from switchyard.privacy import matching_key
from switchyard.rpc import (
    FieldViolation,
    abort_invalid,
    abort_retry_later,
    abort_unless_batch_size,
    invalid_item,
    item_error,
)
from switchyard.runtime import ServiceContext, parse_weights, run_service
from switchyard.storage import DECISION, PLAINTEXT, PayloadCodec, codec_for
from switchyard.tasks import (
    TERMINAL,
    Move,
    Transition,
    build_escalation,
    rejected,
    stored_document,
    task_bucket,
    transition_many,
    validate_task,
)
from switchyard.v1 import (
    DecideBatchRequest,
    DecideBatchResponse,
    DecideBatchResult,
    DecideRequest,
    DecideResponse,
    Decision,
    DecisionOutcome,
    DecisionServiceServicer,
    DocumentLayout,
    Escalation,
    EscalationReason,
    GetModelHealthRequest,
    GetModelHealthResponse,
    ListRolloutsRequest,
    ListRolloutsResponse,
    ModelRollout,
    PromoteModelRequest,
    PromoteModelResponse,
    ReconsiderEditsRequest,
    ReconsiderEditsResponse,
    RollbackModelRequest,
    RollbackModelResponse,
    StartRolloutRequest,
    StartRolloutResponse,
    TaskEnvelope,
    add_AnalyticsServiceServicer_to_server,
    add_DecisionServiceServicer_to_server,
    add_PackServiceServicer_to_server,
)

log = logging.getLogger(__name__)
SERVICE_NAME = "switchyard.v1.DecisionService"
POLICY = {f"/{SERVICE_NAME}/Decide": frozenset({Role.SUBMITTER}),
          f"/{SERVICE_NAME}/DecideBatch": frozenset({Role.SUBMITTER}),
          # the review service asks, with the reviewer's credentials, before it accepts edits
          f"/{SERVICE_NAME}/ReconsiderEdits": frozenset({Role.REVIEWER}),
          # the operator console's model plots
          f"/{SERVICE_NAME}/GetModelHealth": frozenset({Role.ADMIN, Role.AUDITOR}),
          f"/{SERVICE_NAME}/ListRollouts": frozenset({Role.ADMIN, Role.AUDITOR}),
          f"/{SERVICE_NAME}/StartRollout": frozenset({Role.ADMIN}),
          f"/{SERVICE_NAME}/PromoteModel": frozenset({Role.ADMIN}),
          f"/{SERVICE_NAME}/RollbackModel": frozenset({Role.ADMIN})}
#: RPCs that create work (model inference): charged to the caller's tenant.
RATE_LIMITED = frozenset({f"/{SERVICE_NAME}/Decide", f"/{SERVICE_NAME}/DecideBatch"})
#: Documents in one text_encoder request: about 50 ms of CPU each, so a batch stays within
#: a second or two on a busy CPU Triton.
ENCODER_BATCH_MAX = 16
OVERLOAD_BACKOFF_S = 0.05
#: What a Decide caller is told to wait when the batcher in front of Triton is full.
OVERLOAD_RETRY_S = 0.2
#: Field edits one ReconsiderEdits call may carry (a verdict carries at most as many).
MAX_EDITS = 64
#: The tenant's history (PostgreSQL) could not be read: a caller retries the task.
HISTORY_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)


def decision_audit_detail(task: TaskEnvelope, decision: Decision,
                          outcome: str) -> dict[str, object]:
    """What the audit trail keeps of a decision: models, outputs, the rule, hashes of input."""
    return {
        "decision_id": decision.decision_id, "outcome": outcome, "rule": decision.rule,
        "label": decision.label, "confidence": round(decision.confidence, 6),
        "pack": decision.pack, "pack_version": decision.pack_version,
        "models": [{"name": m.model_name, "version": m.model_version, "label": m.label,
                    "confidence": round(m.confidence, 6)} for m in decision.models],
        "fields": sorted(f.name for f in decision.fields),
        "input_sha256": digest(task.document.body),
        "kind": task.kind, "explanation_sha256": digest(decision.explanation),
    }


def escalation_for(task: TaskEnvelope, decision: Decision, outcome: Outcome,
                   queue: str, layout: DocumentLayout | None = None) -> Escalation:
    """The decision service's escalation, through the one builder every service uses (it
    carries the pack rule's reviewer group, four-eyes and review SLA from the decision), with
    the document's layout when it has one (the console draws it over the page images)."""
    escalation = build_escalation(
        task, decision, queue=queue, bucket=outcome.priority,
        reason=EscalationReason.Value(f"ESCALATION_REASON_{outcome.escalation_reason}"),
        detail=decision.explanation, service="decision")
    escalation.discrepancies.extend(outcome.discrepancies)
    if layout is not None:
        escalation.layout.CopyFrom(layout)
    return escalation


@dataclass(frozen=True)
class Verdict:
    """A decided task on its way to the system of record (:meth:`TaskDecider.commit_many`):
    ``release_hold`` for a task the hold retrier decided at last; ``context`` the task's record
    context, that what is sent for it carries its trace (None: the caller's context)."""

    task: TaskEnvelope
    result: Decided
    release_hold: bool = False
    context: contextvars.Context | None = None


class TaskDecider:
    """Kafka path: decide each task once, persist the decisions, hand them on.

    A whole batch of the tasks topic at a time: one read finds which tasks are decided, held
    or finished already; the others are decided concurrently (the model batchers see them
    together); one transaction stores every decision, status change and audit entry; then
    every record is sent before any acknowledgement is awaited, and the offsets are committed
    after (:func:`switchyard._streams.process_record_batch`)."""

    def __init__(self, ctx: ServiceContext, engine: DecisionEngine, holds: HoldRetrier,
                 codec: PayloadCodec = PLAINTEXT, matching_key: bytes = b"") -> None:
        self.ctx = ctx
        self.engine = engine
        self.holds = holds
        self.codec = codec  # decisions.decision holds the extracted fields: sealed
        self.matching_key = matching_key  # fairness groups are keyed hashes
        holds.commit = self.commit_and_publish

    def _open(self, decision_id: uuid.UUID, blob: bytes) -> Decision:
        return Decision.FromString(self.codec.open(decision_id, blob, DECISION))

    async def handle_batch(self, records: list[Record]) -> list[tuple[Record, RejectRecord]]:
        decoded, rejected = decode_batch(records, TaskEnvelope, _task_id)
        tasks: dict[uuid.UUID, tuple[TaskEnvelope, contextvars.Context]] = {}
        for record, task in decoded:
            # a task twice in one batch (a redelivery) is handled once
            tasks.setdefault(uuid.UUID(task.task_id),
                             (task, record_context(record, task.task_id)))
        if not tasks:
            return rejected
        states = {row["task_id"]: row for row in await self.ctx.pool.fetch(
            "SELECT w.task_id, d.decision_id, d.decision, t.status, EXISTS (SELECT 1 FROM "
            "decision_holds h WHERE h.task_id = w.task_id) AS held FROM unnest($1::uuid[]) "
            "w(task_id) LEFT JOIN decisions d ON d.task_id = w.task_id AND d.source = 'MODEL' "
            "LEFT JOIN tasks t ON t.task_id = w.task_id", list(tasks))}
        fresh: list[tuple[TaskEnvelope, contextvars.Context]] = []
        resends = []
        for task_id, (task, context) in tasks.items():
            state = states[task_id]
            if state["status"] is None:
                rejected.extend((r, RejectRecord("unknown_task", "no task with this id"))
                                for r, t in decoded if t.task_id == task.task_id)
            elif state["status"] in TERMINAL:
                # Cancelled (or otherwise finished) before it was decided, or a redelivery
                # of a finished task: nothing may reach a reviewer or the executor.
                log.info("task %s is %s: not deciding or handing it on", task.task_id,
                         state["status"])
            elif state["decision"] is not None:
                # Redelivered after the decision was stored: re-send it (consumers dedupe),
                # never decide twice.
                resends.append((context, self._resend(
                    task, self._open(state["decision_id"], state["decision"]))))
            elif not state["held"]:  # a held task: the hold retrier owns it now
                fresh.append((task, context))
        results = await run_each((context, self._assess(task)) for task, context in fresh)
        verdicts, holds = [], []
        for (task, context), result in zip(fresh, results):
            if result.model_unavailable and result.policy.on_model_unavailable == "hold":
                # in the task's context: the hold keeps its trace for the decision to come
                holds.append((context, self.holds.hold(task, result.outcome.explanation)))
            else:
                verdicts.append(Verdict(task, result, context=context))
        await run_each(holds)
        await self.commit_many(verdicts)
        await run_each(resends)
        return rejected

    async def _assess(self, task: TaskEnvelope) -> Decided:
        while True:
            try:
                return await self.engine.assess(task, persist=True)
            except Overloaded:  # the Decide path filled the batcher: wait our turn
                await asyncio.sleep(OVERLOAD_BACKOFF_S)

    async def _resend(self, task: TaskEnvelope, stored: Decision) -> None:
        layout = await self._layout_again(task) if _outcome_name(stored) == "ESCALATE" else None
        await asyncio.gather(*await self._queue(task, stored, None, layout=layout))

    async def commit_and_publish(self, task: TaskEnvelope, result: Decided,
                                 release_hold: bool) -> None:
        """:meth:`commit_many` for one task (the hold retrier's)."""
        await self.commit_many([Verdict(task, result, release_hold)])

    async def commit_many(self, verdicts: Sequence[Verdict]) -> None:
        """Store the decisions (and what the packs' enrichers record, and the holds' release)
        in one transaction, then publish them. A second call for the same tasks changes
        nothing: a task whose model decision was stored first by someone else has that one
        handed on."""
        if not verdicts:
            return
        by_id = {uuid.UUID(v.task.task_id): v for v in verdicts}
        moves, entries = [], []
        stored: dict[uuid.UUID, Decision] = {}
        async with self.ctx.pool.acquire() as conn, conn.transaction():
            inserted = {row["task_id"] for row in await conn.fetch(
                "INSERT INTO decisions (decision_id, task_id, tenant_id, source, outcome, "
                "confidence, rule, explanation, decision, pack, pool) SELECT decision_id, "
                "task_id, tenant_id, 'MODEL', outcome, confidence, rule, explanation, decision, "
                "pack, pool FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], "
                "$5::real[], $6::text[], $7::text[], $8::bytea[], $9::text[], $10::text[]) AS "
                "d(decision_id, task_id, tenant_id, outcome, confidence, rule, explanation, "
                "decision, pack, pool) ORDER BY task_id ON CONFLICT DO NOTHING RETURNING task_id",
                *_decision_columns(list(by_id.values()), self.codec))}
            released = [task_id for task_id, v in by_id.items() if v.release_hold]
            if released:
                await conn.execute("DELETE FROM decision_holds WHERE task_id = ANY($1::uuid[])",
                                   released)
            for task_id in inserted:
                decision = by_id[task_id].result.decision
                status, stage, reason = _status_for(_outcome_name(decision), decision)
                moves.append(Move(str(task_id), status, stage, reason, decision.explanation))
            changes = await transition_many(conn, moves, "decision")
            # an escalation of a task still open keeps what the models saw, for the
            # reviewer's verdict to label (services/decision/labels.py)
            await record_pending(conn, [
                (v.result.decision, v.result.text,
                 v.result.assessment.scorer_inputs if v.result.assessment else {})
                for task_id, v in by_id.items()
                if task_id in inserted and v.task.task_id in changes and v.result.text
                and _outcome_name(v.result.decision) == "ESCALATE"], self.codec)
            # the groups of packs' protected attributes, for the fairness gates (fairness.py)
            await fairness.record(conn, fairness.sample_rows(
                [(v.result.decision, v.result.assessment.active.pack,
                  v.result.assessment.raw_fields) for task_id, v in by_id.items()
                 if task_id in inserted and v.task.task_id in changes
                 and v.result.assessment is not None], self.matching_key))
            for task_id, verdict in by_id.items():
                task, result = verdict.task, verdict.result
                if task_id not in inserted:
                    continue
                if result.assessment is not None and task.task_id in changes:
                    # only a task still open when decided is recorded (pending until
                    # confirmed: services/decision/learning.py)
                    for name in result.assessment.active.pack.enrichers:
                        enricher = self.engine.enrichers.get(name)
                        if callable(getattr(enricher, "record", None)):
                            await enricher.record(conn, task, result.assessment.extraction,
                                                  result.decision)
                entries.append(AuditEntry(
                    task.tenant_id, "decision", "decision.made", decision_audit_detail(
                        task, result.decision, _outcome_name(result.decision)),
                    task.task_id))
            if len(inserted) < len(by_id):  # someone stored these model decisions first
                stored = {row["task_id"]: self._open(row["decision_id"], row["decision"])
                          for row in await conn.fetch(
                              "SELECT task_id, decision_id, decision FROM decisions WHERE "
                              "task_id = ANY($1::uuid[]) AND source = 'MODEL'",
                              [task_id for task_id in by_id if task_id not in inserted])}
            await audit_append_many(conn, entries, writer="decision")  # last: lock held to commit
        sends = []
        for task_id, verdict in by_id.items():
            task, result = verdict.task, verdict.result
            if task_id in inserted and task.task_id not in changes:
                # The task ended while it was being decided (a client cancelled it): its
                # status change was refused, so the decision is kept for the record but
                # handed to nobody, neither a reviewer nor the executor.
                log.info("task %s ended while being decided: decision %s not handed on",
                         task.task_id, result.decision.decision_id)
                continue
            sends.append((verdict.context or contextvars.copy_context(),
                          self._hand_on(verdict, stored.get(task_id), changes.get(task.task_id))))
        # in each record's trace, not in a second consumer span of its own (it had one to be
        # decided in)
        await asyncio.gather(*[f for futures in await run_each(sends, span=False)
                               for f in futures])

    async def _hand_on(self, verdict: Verdict, stored: Decision | None,
                       change: Transition | None) -> list[asyncio.Future[object]]:
        """Queue a task's decision (or the one stored first) and its status change."""
        task, result = verdict.task, verdict.result
        if stored is not None:
            futures = await self._queue(task, stored, None)
        else:
            futures = await self._queue(task, result.decision, result.outcome,
                                        result.decision.review_queue or None, result.layout)
        if change is not None:
            futures.append(await self.ctx.producer.send_nowait(
                TASK_STATUS, task.task_id, change.event))
        return futures

    async def _layout_again(self, task: TaskEnvelope) -> DocumentLayout | None:
        """The layout of a redelivered task's document, for re-sending its escalation (the
        stored decision does not keep it); None when it cannot be read now."""
        reader = self.engine.reader
        if reader is None or task.document.content_type not in LAYOUT_CONTENT_TYPES:
            return None
        try:
            read = await reader.read(task)
        except (ModelUnavailable, UnreadableDocument, Overloaded) as exc:
            log.warning("re-sending an escalation without its layout: %s", exc)
            return None
        return read.layout if read is not None else None

    async def _queue(self, task: TaskEnvelope, decision: Decision, outcome: Outcome | None,
                     queue: str | None = None, layout: DocumentLayout | None = None
                     ) -> list[asyncio.Future[object]]:
        """Queue the decision for the executor or the escalation for review; returns the
        delivery futures (a REJECT hands nothing on)."""
        outcome_name = _outcome_name(decision)
        if outcome_name == "AUTO_EXECUTE":
            return [await self.ctx.producer.send_nowait(
                DECISIONS, task.task_id, decision,
                scheduling_headers(task.tenant_id, task_bucket(task)))]
        if outcome_name == "ESCALATE":
            queue = queue or decision.review_queue or \
                self.engine.policies.review_queue(task.tenant_id)
            if outcome is None:
                reason = "MODEL_UNAVAILABLE" if decision.rule == "model_unavailable" else "OTHER"
                outcome = Outcome("escalate", decision.rule, decision.explanation,
                                  decision.confidence, decision.label, reason, task_bucket(task))
            return [await self.ctx.producer.send_nowait(
                ESCALATIONS, task.task_id, escalation_for(task, decision, outcome, queue, layout))]
        return []


def _task_id(task: TaskEnvelope) -> None:
    try:
        uuid.UUID(task.task_id)
    except ValueError:
        raise RejectRecord("invalid_task_id", "task_id is not a UUID") from None


def _decision_columns(verdicts: Sequence[Verdict], codec: PayloadCodec) -> list[list[object]]:
    """The ``decisions`` rows of a batch, as the column arrays of one multi-row insert."""
    rows = []
    for verdict in verdicts:
        decision = verdict.result.decision
        rows.append((
            uuid.UUID(decision.decision_id), uuid.UUID(verdict.task.task_id),
            verdict.task.tenant_id, _outcome_name(decision), decision.confidence, decision.rule,
            decision.explanation,
            codec.seal(decision.decision_id, decision.SerializeToString(), DECISION),
            decision.pack or decision.plan.pack,  # retention follows the task's pack
            _routed_on(decision),
        ))
    return [list(column) for column in zip(*rows)]


def _routed_on(decision: Decision) -> str | None:
    """The Triton pool that answered the router for ``decision`` (None: no model did)."""
    return next((m.pool or None for m in decision.models
                 if m.model_name == RouterClient.model_name), None)


def _outcome_name(decision: Decision) -> str:
    return DecisionOutcome.Name(decision.outcome).removeprefix("DECISION_OUTCOME_")


def _status_for(outcome_name: str, decision: Decision) -> tuple[str, str, str]:
    return {
        "AUTO_EXECUTE": ("IN_PROGRESS", "EXECUTING", decision.rule),
        "ESCALATE": ("BLOCKED", "AWAITING_REVIEW", decision.rule),
        "REJECT": rejected(decision.rule),
    }[outcome_name]


class DecisionServicer(DecisionServiceServicer):
    def __init__(self, engine: DecisionEngine, settings: Settings,
                 pool: asyncpg.Pool | None = None, models: ModelRollouts | None = None
                 ) -> None:
        self.engine = engine
        self.settings = settings
        self.pool = pool
        self.models = models  # the rollout RPCs (model_admin.py)
        self.limits = DocumentLimits.from_settings(settings)  # checked on every task

    async def GetModelHealth(self, request: GetModelHealthRequest,
                             context: grpc.aio.ServicerContext) -> GetModelHealthResponse:
        # tenant_id is required; "*" (every tenant) only for an operator key (tenant "*")
        tenant = request.tenant_id.strip()
        problems = [] if tenant else [FieldViolation("tenant_id", "required")]
        window = health.parse_window(request)
        if isinstance(window, list):
            problems += window
        if problems:
            await abort_invalid(context, problems)
        assert not isinstance(window, list)
        if not principal_var.get().may_access(tenant):
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                f"credentials do not allow tenant {tenant!r}")
        assert self.pool is not None, "GetModelHealth needs the service's pool"
        return GetModelHealthResponse(shadow=await health.shadow_points(self.pool, tenant, window),
                                      drift=await health.drift_points(self.pool, window),
                                      human=await health.human_points(self.pool, tenant, window))

    @staticmethod
    async def _operators_only(context: grpc.aio.ServicerContext) -> None:
        """A model serves every tenant: only an operator key (tenant ``*``) sees or changes
        its rollout."""
        if not principal_var.get().may_access(health.ALL_TENANTS):
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                "model rollouts concern every tenant: an operator key "
                                "(tenant *) is needed")

    async def _rollouts(self, context: grpc.aio.ServicerContext, change: Any) -> ModelRollout:
        """Run a rollout change; bad fields are INVALID_ARGUMENT, a change the state does not
        allow FAILED_PRECONDITION."""
        assert self.models is not None and self.pool is not None, "rollouts need the service"
        await self._operators_only(context)
        try:
            return await change()
        except InvalidRollout as exc:
            await abort_invalid(context, exc.violations)
        except RolloutError as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        raise AssertionError("unreachable")

    async def ListRollouts(self, request: ListRolloutsRequest,
                           context: grpc.aio.ServicerContext) -> ListRolloutsResponse:
        assert self.models is not None and self.pool is not None, "rollouts need the service"
        await self._operators_only(context)
        return ListRolloutsResponse(rollouts=await self.models.listed(self.pool))

    async def StartRollout(self, request: StartRolloutRequest,
                           context: grpc.aio.ServicerContext) -> StartRolloutResponse:
        actor = principal_var.get().key_id
        return StartRolloutResponse(rollout=await self._rollouts(
            context, lambda: self.models.start(self.pool, request, actor)))  # type: ignore[union-attr]

    async def PromoteModel(self, request: PromoteModelRequest,
                           context: grpc.aio.ServicerContext) -> PromoteModelResponse:
        actor = principal_var.get().key_id
        return PromoteModelResponse(rollout=await self._rollouts(
            context, lambda: self.models.finish(  # type: ignore[union-attr]
                self.pool, request.model_name, True, request.reason, actor)))

    async def RollbackModel(self, request: RollbackModelRequest,
                            context: grpc.aio.ServicerContext) -> RollbackModelResponse:
        actor = principal_var.get().key_id
        return RollbackModelResponse(rollout=await self._rollouts(
            context, lambda: self.models.finish(  # type: ignore[union-attr]
                self.pool, request.model_name, False, request.reason, actor)))

    async def Decide(self, request: DecideRequest,
                     context: grpc.aio.ServicerContext) -> DecideResponse:
        task, problems, denied = self._admitted(request.task)
        if problems:
            await abort_invalid(context, problems)
        if denied:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, denied)
        try:
            decision, _ = await self.engine.decide(task)
        except Overloaded as exc:
            await abort_retry_later(context, grpc.StatusCode.RESOURCE_EXHAUSTED,
                                    f"{exc}; retry shortly", OVERLOAD_RETRY_S)
        except HISTORY_ERRORS as exc:
            # the vendor history (PostgreSQL) is unreachable: transient, the caller retries
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"tenant history unavailable: {exc}")
        return DecideResponse(decision=decision)

    async def ReconsiderEdits(self, request: ReconsiderEditsRequest,
                              context: grpc.aio.ServicerContext) -> ReconsiderEditsResponse:
        problems = [FieldViolation(f, d) for f, d in reconsider_problems(request)]
        # the document as Decide takes it (ingest's acceptance rules): a caller other than
        # the review service may send anything
        task, invalid, denied = await asyncio.to_thread(self._admitted, request.task)
        problems += invalid
        if problems:
            await abort_invalid(context, problems)
        if denied:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, denied)
        try:
            decided = await self.engine.reconsider(task, request.proposed_decision,
                                                   dict(request.edits))
        except Overloaded as exc:
            await abort_retry_later(context, grpc.StatusCode.RESOURCE_EXHAUSTED,
                                    f"{exc}; retry shortly", OVERLOAD_RETRY_S)
        except ModelUnavailable as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"models unavailable: {exc}")
        except UnreadableDocument as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                f"the document cannot be read: {exc}")
        except HISTORY_ERRORS as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"tenant history unavailable: {exc}")
        if decided is None:
            proposed = request.proposed_decision
            await context.abort(grpc.StatusCode.NOT_FOUND,
                                f"tenant {task.tenant_id!r} has no pack "
                                f"{(proposed.pack or proposed.label)!r} enabled")
        return ReconsiderEditsResponse(decision=decided.decision)

    async def DecideBatch(self, request: DecideBatchRequest,
                          context: grpc.aio.ServicerContext) -> DecideBatchResponse:
        count = len(request.tasks)
        await abort_unless_batch_size(context, "tasks", count,
                                      self.settings.decide_batch_max_items)
        # the acceptance rules open files (PDFs, images): off the event loop, as ingest does
        admitted = await asyncio.to_thread(
            lambda: [self._admitted(task, prefix="") for task in request.tasks])
        results = [DecideBatchResult() for _ in range(count)]
        pending: list[tuple[int, TaskEnvelope]] = []
        for index, (task, problems, denied) in enumerate(admitted):
            if problems:
                results[index].error.CopyFrom(invalid_item(problems))
            elif denied:
                results[index].error.CopyFrom(item_error(grpc.StatusCode.PERMISSION_DENIED,
                                                         denied))
            else:
                pending.append((index, task))
        # all at once: the micro-batcher puts the call's documents into shared Triton requests
        outcomes = await asyncio.gather(*(self.engine.decide(task) for _, task in pending),
                                        return_exceptions=True)
        for (index, _), outcome in zip(pending, outcomes):
            if isinstance(outcome, Overloaded):
                results[index].error.CopyFrom(item_error(
                    grpc.StatusCode.RESOURCE_EXHAUSTED, f"{outcome}; retry this task shortly"))
            elif isinstance(outcome, HISTORY_ERRORS):
                results[index].error.CopyFrom(item_error(
                    grpc.StatusCode.UNAVAILABLE, f"tenant history unavailable: {outcome}"))
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                results[index].decision.CopyFrom(outcome[0])
        decided = sum(1 for r in results if r.HasField("decision"))
        return DecideBatchResponse(results=results, decided_count=decided,
                                   refused_count=count - decided)

    def _admitted(self, requested: TaskEnvelope, prefix: str = "task."
                  ) -> tuple[TaskEnvelope, list[FieldViolation], str | None]:
        """A task handed to Decide or DecideBatch, as the engine takes it: the tenant is the
        caller's (empty means the caller's own), then ingest's acceptance rules, so nothing
        ingest would refuse gets decided here (the problems, their fields named ``prefix`` +
        the envelope's field), then whether the caller may decide for that tenant (the
        refusal's text, or None)."""
        principal = principal_var.get()
        task = TaskEnvelope()
        task.CopyFrom(requested)
        task.tenant_id = task.tenant_id.strip() or (
            "" if principal.tenant_id == "*" else principal.tenant_id)
        problems = validate_task(task, self.limits, prefix)
        if not problems:  # as ingest stores it: the bare media type, text as UTF-8, an
            # e-mail as the document it carries
            document, metadata = stored_document(task.document, task.metadata)
            task.document.CopyFrom(document)
            task.metadata.clear()
            task.metadata.update(metadata)
        denied = None if principal.may_access(task.tenant_id) else (
            f"credentials do not allow tenant {task.tenant_id!r}")
        return task, problems, denied


def reconsider_problems(request: ReconsiderEditsRequest) -> list[tuple[str, str]]:
    """What is missing from a ReconsiderEdits request, each as (field path, why) (the
    task's document is checked as Decide checks it)."""
    problems = [("task.task_id", "required")] if not request.task.task_id else []
    proposed = request.proposed_decision
    if not (proposed.pack or proposed.label):
        problems.append(("proposed_decision.pack", "required: the pack whose rules run (or "
                                                   "its label)"))
    if not 1 <= len(request.edits) <= MAX_EDITS:
        problems.append(("edits", f"1 to {MAX_EDITS} field edits"))
    if any(not name.strip() for name in request.edits):
        problems.append(("edits", "field names must not be empty"))
    return problems


def _card(settings: Settings, model: str, version_dir: str) -> Path:
    return Path(settings.model_repository) / model / version_dir / "model_card.json"


async def _load_metadata(*clients: RouterClient | OcrClient) -> None:
    """Read model configs; while Triton is away, keep trying in the background (the router
    reads its class list itself on its first prediction when this has not yet)."""
    pending = list(clients)
    delay = 2.0
    while pending:
        for client in list(pending):
            try:
                await asyncio.wait_for(client.load_metadata(), 10)
                pending.remove(client)
            except Exception as exc:  # noqa: BLE001 - any failure means "not yet"
                log.warning("Triton model %s version %s not available yet (next try in "
                            "%.0fs): %r", client.model_name, client.triton_version, delay, exc)
        if pending:
            await asyncio.sleep(delay)
            delay = min(60.0, delay * 2)


async def setup(ctx: ServiceContext) -> None:
    s = ctx.settings
    policies = load_policies(s.policy_dir, Policy(auto_execute_threshold=s.auto_execute_threshold))
    breaker = new_breaker("triton", s.breaker_fail_max, s.breaker_reset_s)
    weights = parse_weights(s.tenant_weights)  # the batchers' fair queues (batcher.py)
    # the primary Triton and, when configured, the spill-over (pools.py); every client below
    # sends to both
    pools = TritonPools.from_settings(s)
    if pools.spill is not None:
        ctx.run_in_background("triton-pools", pools.watch)
    # the class list comes from the deployed router (RouterClient.load_metadata)
    router = RouterClient(pools, s.triton_timeout_s, breaker, s.router_version)
    clients: list[RouterClient] = [router]

    def batcher(name: str, infer):  # type: ignore[no-untyped-def]
        return MicroBatcher(name, infer, s.batch_max_size, s.batch_max_delay_ms / 1000,
                            s.batch_queue_limit, supervisor=ctx.supervisor, weights=weights)

    router_batcher = batcher("document_router", router.predict)
    # OCR: pages of many tasks in one request; its own breaker (a slow OCR batch must not
    # open the router's), its own longer deadline
    ocr = OcrClient(pools, s.ocr_timeout_s,
                    new_breaker("triton-ocr", s.breaker_fail_max, s.breaker_reset_s),
                    s.ocr_version)
    ocr_batcher = MicroBatcher("document_ocr", ocr.read, s.ocr_batch_max_pages,
                               s.batch_max_delay_ms / 1000, s.batch_queue_limit,
                               supervisor=ctx.supervisor, weights=weights)
    # the router cascade (cascade.py): unsure answers get text_encoder's second opinion; its
    # own breaker and deadline (a batch of it costs what hundreds of router rows do)
    encoder = EncoderClient(pools, s.text_encoder_timeout_s,
                            new_breaker("triton-encoder", s.breaker_fail_max,
                                        s.breaker_reset_s), s.text_encoder_version)
    # the same encoder embeds short texts for packs' enrichers (invoice vs order lines)
    line_batcher: MicroBatcher[str, list[float]] = MicroBatcher(
        "text_encoder_lines", encoder.embed, EMBED_BATCH_MAX, s.batch_max_delay_ms / 1000,
        s.batch_queue_limit, supervisor=ctx.supervisor, weights=weights)
    cascade = None
    if s.router_cascade_below > 0:
        cascade = RouterCascade(
            MicroBatcher("text_encoder", encoder.predict, ENCODER_BATCH_MAX,
                         s.batch_max_delay_ms / 1000, s.batch_queue_limit,
                         supervisor=ctx.supervisor, weights=weights),
            s.router_cascade_below, lambda: encoder.pool_temperature)
    # which version of each model decides a task, and which shadows it (rollouts.py): the
    # settings until an admin or the judge stores a rollout
    rollouts = RolloutBook()
    with_default_shadow(rollouts, ROUTER, s.router_version, s.router_shadow_version)
    await rollouts.refresh(ctx.pool)

    async def router_version(version: str) -> Version[str]:
        # its own breaker: a failing candidate must not open the live router's
        client = RouterClient(pools, s.triton_timeout_s,
                              new_breaker(f"triton-router-v{version}", s.breaker_fail_max,
                                          s.breaker_reset_s), version)
        return Version(client, batcher(f"document_router_v{version}", client.predict))

    async def router_shadow(rollout: Rollout, built: Version[str]) -> ShadowRunner:
        # the candidate's client (its own breaker), behind a batcher of the shadow's own
        return ShadowRunner(batcher(f"document_router_shadow_v{rollout.candidate}",
                                    built.client.predict), ROUTER, rollout.live,
                            rollout.candidate, ctx.pool, sample=s.router_shadow_sample)

    routers: ModelVersions[str] = ModelVersions(ROUTER, rollouts, s.router_version,
                                                router_version, router_shadow)
    routers.add(s.router_version, Version(router, router_batcher))
    shadow = None
    if s.router_shadow_version and s.router_shadow_version != s.router_version:
        shadow_client = RouterClient(
            pools, s.triton_timeout_s,
            new_breaker("triton-shadow", s.breaker_fail_max, s.breaker_reset_s),
            s.router_shadow_version)
        clients.append(shadow_client)
        shadow = ShadowRunner(batcher("document_router_shadow", shadow_client.predict),
                              ROUTER, s.router_version, s.router_shadow_version,
                              ctx.pool, sample=s.router_shadow_sample)
        routers.add_shadow(s.router_shadow_version, shadow)
    try:
        await asyncio.wait_for(_load_metadata(*clients), 15)
    except asyncio.TimeoutError:
        log.warning("starting without Triton: tasks escalate or hold (per policy) until it "
                    "answers")
        # one-shot: done once every model answered (a failure is still restarted)
        ctx.run_in_background("triton-metadata", lambda: _load_metadata(*clients),
                              one_shot=True)
    codec = codec_for(s)
    catalog = PackCatalog(ctx.pool, policies, poll_s=s.pack_reload_s)
    await catalog.load()
    problems = catalog.check_policy_files()
    if problems:
        raise PolicyError("invalid decision policies:\n  " + "\n  ".join(problems))
    enrichers = Enrichers(EnricherResources(ctx.pool, matching_key(s), codec,
                                            Embeddings(line_batcher)))
    # built now, so outcomes reach them from the first event (learning.py), and the topics
    # they keep are consumed from the start
    enrichers.prepare(sorted({name for view in (catalog.newest(""),)
                              for stored in view.values() for name in stored.pack.enrichers}))
    for topic, feed in enrichers.feeds():
        ctx.consume_batches(topic, feed)
    drift_samples = health.DriftRecorder(ctx.pool)  # GetModelHealth's drift history
    scorers = Scorers(s, pools, breaker, ctx.supervisor, weights, rollouts, ctx.pool,
                      drift_sink=drift_samples.record)
    blobs = blob_store_for(s, ctx.pool)  # documents sent by reference (claim check)
    ctx.on_stop.append(blobs.close)
    engine = DecisionEngine(
        routers, policies, catalog, scorers=scorers, enrichers=enrichers, rollouts=rollouts,
        router_drift=DriftMonitor.from_model_card(_card(s, "document_router", s.router_version),
                                                  s.drift_window, s.drift_publish_every,
                                                  drift_samples.record),
        router_classes=lambda: router.classes,
        reader=DocumentReader(ocr_batcher.submit, blobs,
                              DocumentLimits.from_settings(s), max_pages=s.ocr_max_pages),
        cascade=cascade,
    )
    await router_batcher.start()
    await ocr_batcher.start()
    await line_batcher.start()
    if cascade is not None:
        await cascade.encoder.start()
        # like OCR, not waited for: until it answers, the router's answers stand
        ctx.run_in_background("encoder-metadata", lambda: _load_metadata(encoder),
                              one_shot=True)
    # not waited for at start: the router decides text tasks while OCR loads; until OCR
    # answers, documents that need it meet the unavailable policy like any model's tasks
    ctx.run_in_background("ocr-metadata", lambda: _load_metadata(ocr), one_shot=True)
    if shadow is not None:
        await shadow.start()
    holds = HoldRetrier(ctx.pool, ctx.producer, engine, lambda: pools.away(breaker),
                        s.hold_retry_s, codec=codec)
    await holds.refresh_gauge()
    decider = TaskDecider(ctx, engine, holds, codec, matching_key(s))
    ctx.consume_fairly(TASKS, decider.handle_batch)
    # enrichers (vendor history) learn from confirmed outcomes, as events, and reviewers'
    # verdicts label the escalated tasks' examples (learning.py, labels.py)
    learner = HistoryLearner(enrichers, ctx.pool, codec)
    ctx.consume_batches(DECISIONS, learner.on_decisions)
    ctx.consume_batches(TASK_STATUS, learner.on_statuses)
    models = ModelRollouts(rollouts, routers, scorers, catalog, matching_key(s),
                           s.fairness_min_group_samples, Path(s.model_repository))
    ctx.serve((add_DecisionServiceServicer_to_server,
               DecisionServicer(engine, s, ctx.pool, models), SERVICE_NAME), POLICY,
              rate_limited=RATE_LIMITED)
    ctx.serve((add_PackServiceServicer_to_server, PackServicer(catalog, engine, ctx.pool),
               PACK_SERVICE_NAME), PACK_POLICY, rate_limited=PACK_RATE_LIMITED)
    ctx.run_in_background("hold-retry", holds.run)
    _setup_engagement(ctx, pools)
    ctx.run_in_background("pack-catalog", catalog.run)
    ctx.run_in_background("drift-samples", drift_samples.run)
    # canaries: counts added, rollouts read again, each judged (promote, roll back, wait)
    ctx.run_in_background("model-rollouts", RolloutJudge(
        ctx.pool, rollouts, Thresholds.from_settings(s), models.reported,
        s.rollout_refresh_s, gate=models.fairness_breach).run)
    # live accuracy and calibration against reviewers, as gauges for the alert rules
    ctx.run_in_background("model-evaluation", health.HumanAgreementGauges(
        ctx.pool, s.model_evaluation_days, s.model_evaluation_refresh_s,
        s.fairness_min_group_samples).run)
    ctx.on_stop.append(drift_samples.close)
    # on_stop hooks run in reverse: batchers drain first, then the pools' channels close
    ctx.on_stop.append(pools.close)
    ctx.on_stop.append(scorers.stop)
    ctx.on_stop.append(router_batcher.stop)
    ctx.on_stop.append(ocr_batcher.stop)
    ctx.on_stop.append(line_batcher.stop)
    if cascade is not None:
        ctx.on_stop.append(cascade.encoder.stop)
    ctx.on_stop.append(routers.stop)  # the versions and shadows built on first use, too


def _setup_engagement(ctx: ServiceContext, pools: TritonPools) -> None:
    """Classroom engagement (services/decision/engagement/): the windows processor, the
    analytics API, erasure and retention of its tables."""
    s = ctx.settings
    scorer = ScorerClient("engagement", pools, s.triton_timeout_s,
                          new_breaker("triton-engagement", s.breaker_fail_max, s.breaker_reset_s),
                          triton_version="", output_class="engaged")  # "": the newest
    processor = EngagementProcessor(s, ctx.pool, ctx.producer, scorer)
    ctx.run_in_background("engagement-windows", processor.run)
    ctx.consume_batches(SUBJECT_ERASURES, ErasureConsumer(ctx.pool).handle_batch)
    ctx.run_in_background("engagement-retention", lambda: retention_loop(
        ctx.pool, s.signal_subject_retention_days, s.signal_class_retention_days))
    ctx.serve((add_AnalyticsServiceServicer_to_server, AnalyticsServicer(ctx.pool, s),
               ANALYTICS_SERVICE_NAME), ANALYTICS_POLICY)


async def main(settings: Settings, apply_migrations: bool = False) -> None:
    await run_service("decision", settings, settings.decision_grpc_port,
                      settings.decision_metrics_port, setup, apply_migrations=apply_migrations)
