"""The reviewer's desk: what the ReviewService RPCs and the web console both do.

Every operation takes the caller's :class:`Principal` (already authenticated and checked
against the role policy by the gRPC interceptor or the console's middleware) and scopes
itself to the principal's tenant: an item of another tenant is "not found", never "forbidden",
so its existence does not leak. Bad input raises ``ReviewError('invalid', ..., violations)``.
An item escalated for a reviewer group (``Escalation.reviewer_group``) is, in the same way,
"not found" for a reviewer outside the group (:meth:`Principal.in_group`: admins and
operators are in every group); ListQueue leaves it out.

Four eyes (``Escalation.four_eyes``): the first approval (APPROVE or MODIFY) is recorded in
``review_approvals`` and the item goes back to PENDING for a different reviewer, who may not be
the first (PERMISSION_DENIED); the second approval publishes one decision naming both; a
reject by either ends the item as any reject does.

Every item handed out goes through :func:`switchyard._dataclass.redact_escalation` first
(unless redaction is switched off): reviewers see the document with its personal data
redacted and the proposed decision's fields by their data class; the verdict is applied to
the stored, unredacted decision. The words of the document's layout are redacted the same
way, and :meth:`ReviewDesk.page` says which boxes of a page image to paint over, so a page
image never shows what the text hides.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

import asyncpg

from services.review.metrics import VERDICTS
from services.review.policies import ReviewPolicy
from services.review.queue import (
    Filters,
    ReviewError,
    ReviewQueue,
    invalid,
    item_from_row,
    priority_value,
)
from services.review.resolutions import DecisionPublisher, audit, store_decision, text_digest
from services.review.reconsider import Credentials, EditsCheck
from services.review.verdicts import (
    edit_problems,
    reconsidered_problems,
    sent_edit_problems,
    verdict_decision,
)
from switchyard.access import DEV_PRINCIPAL, Principal, Role
from switchyard.privacy import (
    Redactor,
    page_redactions,
    redact_edits,
    redact_escalation,
    redact_free_text,
)
from switchyard.storage import APPROVAL, VERDICT
from switchyard.tasks import document_hidden
from switchyard.v1 import (
    BoundingBox,
    ClaimRequest,
    Decision,
    Document,
    EscalationReason,
    ListQueueRequest,
    ListQueueResponse,
    RenewRequest,
    ReviewItem,
    ReviewPriority,
    ReviewState,
    ReviewVerdict,
    Verdict,
)

MAX_LEASE = timedelta(hours=8)
#: Documents whose pages the console shows as images (text and JSON are shown as text).
PAGED_TYPES = ("application/pdf", "image/")
MAX_MODIFIED_FIELDS = 64
#: The most items one ListQueue page holds (the contract's bound: review_service.proto).
MAX_PAGE_SIZE = 500
#: A document type a reviewer may name on a rejection: a pack name's form, or "other".
DOCUMENT_TYPE = re.compile(r"[a-z][a-z0-9_]{0,62}")


def nul_problems(**fields: str | list[str]) -> list[tuple[str, str]]:
    """PostgreSQL text cannot hold NUL: refuse it as bad input instead of failing the query."""
    return [(name, "must not contain NUL characters") for name, value in fields.items()
            if any("\x00" in v for v in ([value] if isinstance(value, str) else value))]


def unknown_enum_problems(field: str, values: Iterable[int], enum: Any,
                          indexed: bool = True) -> list[tuple[str, str]]:
    """Each of ``values`` that ``enum`` (a proto enum) does not define, named as ingest names
    them (``states[0]: unknown ReviewState value 42``): a client built against a newer
    contract, or a typo, gets INVALID_ARGUMENT, not an error from deep in the service."""
    known = set(enum.values())
    return [(f"{field}[{index}]" if indexed else field,
             f"unknown {enum.DESCRIPTOR.name} value {value}")
            for index, value in enumerate(values) if value not in known]


def reviewer_of(principal: Principal, supplied: str) -> str:
    """Who is reviewing: the caller's credentials, never a name the caller types.

    With API keys the reviewer is the key (``Principal.key_id``); a ``reviewer_id`` that
    names anyone else is refused (``forbidden``: PERMISSION_DENIED, HTTP 403), an empty one
    means the caller. With auth off (a dev stack, every caller the same local operator) the
    supplied name is all there is, so it is required and used as given.
    """
    if principal == DEV_PRINCIPAL:
        return supplied
    if supplied and supplied != principal.key_id:
        raise ReviewError("forbidden", f"reviewer_id {supplied!r} is not the caller: with API "
                                       f"keys the reviewer is the key ({principal.key_id}); "
                                       "leave reviewer_id empty or send that")
    return principal.key_id


class ReviewDesk:
    def __init__(self, pool: asyncpg.Pool, queue: ReviewQueue, publisher: DecisionPublisher,
                 policy: ReviewPolicy, redactor: Redactor | None = None,
                 edits_check: EditsCheck | None = None) -> None:
        """``edits_check``: how an approval's edits are put to the pack's rules (the review
        service always has one; without it, as in unit tests, edits are only checked for
        form)."""
        self.pool = pool
        self.queue = queue
        self.publisher = publisher
        self.policy = policy
        self.redactor = redactor
        self.edits_check = edits_check

    async def _shown(self, item: ReviewItem) -> ReviewItem:
        """The item as a reviewer may see it."""
        return (await self._shown_all([item]))[0]

    async def _shown_all(self, items: Sequence[ReviewItem]) -> list[ReviewItem]:
        """The items as a reviewer may see them: a four-eyes item with the edits of its
        first approval (what the second reviewer approves), everything redacted."""
        firsts = await self._first_approvals(items)
        shown = []
        for item in items:
            copy = ReviewItem()
            copy.CopyFrom(item)
            edits = firsts[item.item_id].modified_fields if item.item_id in firsts else {}
            if self.redactor is not None:
                copy.escalation.CopyFrom(redact_escalation(item.escalation, self.redactor))
                if edits:  # most items have none: no second pass over the proposed fields
                    edits = redact_edits(edits, item.escalation, self.redactor)
            copy.approved_edits.update(edits)
            if document_hidden(item.escalation):
                copy.escalation.task.ClearField("document")
                copy.escalation.task.ClearField("metadata")
                copy.escalation.ClearField("layout")
            shown.append(copy)
        return shown

    async def list_queue(self, principal: Principal,
                         request: ListQueueRequest) -> ListQueueResponse:
        problems = nul_problems(queue=request.queue, tenant_id=request.tenant_id,
                                page_token=request.page_token)
        if not 0 <= request.page_size <= MAX_PAGE_SIZE:
            problems.append(("page_size", f"1 to {MAX_PAGE_SIZE}; 0 means the default"))
        problems += unknown_enum_problems("states", request.states, ReviewState)
        problems += unknown_enum_problems("priorities", request.priorities, ReviewPriority)
        problems += unknown_enum_problems("reasons", request.reasons, EscalationReason)
        if problems:
            raise invalid(problems)
        tenant = request.tenant_id or (None if principal.tenant_id == "*"
                                       else principal.tenant_id)
        if tenant is not None and not principal.may_access(tenant):
            return ListQueueResponse()
        states = tuple(ReviewState.Name(s).removeprefix("REVIEW_STATE_")
                       for s in request.states if s) or ("PENDING", "CLAIMED")
        if "WITHDRAWN" in states:
            # items of tasks that ended are closed records, never shown in a queue
            problems = [("states", "REVIEW_STATE_WITHDRAWN is never listed: those items "
                                   "belong to tasks that ended before a verdict")]
            raise invalid(problems)
        filters = Filters(
            queue=request.queue, tenant_id=tenant, states=states,
            groups=None if principal.sees_every_group else tuple(sorted(principal.groups)),
            priorities=tuple(priority_value(p) for p in request.priorities if p),
            reasons=tuple(EscalationReason.Name(r).removeprefix("ESCALATION_REASON_")
                          for r in request.reasons if r),
        )
        page = await self.queue.list(filters, request.page_size, request.page_token)
        return ListQueueResponse(items=await self._shown_all(page.items),
                                 next_page_token=page.next_token)

    async def get_item(self, principal: Principal, item_id: str) -> ReviewItem:
        return await self._shown(await self._item(principal, item_id))

    async def page(self, principal: Principal, item_id: str,
                   page_number: int) -> tuple[Document, list[BoundingBox]]:
        """The item's document and what to mask on its page ``page_number`` (1-based): the
        boxes of withheld personal and health data
        (:func:`switchyard._dataclass.page_redactions`; none with
        redaction off). The caller renders the page; the document may carry a blob
        reference instead of its bytes."""
        item = await self._item(principal, item_id)
        document = item.escalation.task.document
        if document_hidden(item.escalation):
            raise ReviewError("not_found", f"item {item_id!r} shows no document: its approval "
                                           "step's reviewers get the fields only")
        if not document.content_type.startswith(PAGED_TYPES):
            raise ReviewError("not_found", f"the document of item {item_id!r} is "
                                           f"{document.content_type or 'text'}: it has no "
                                           "page images")
        pages = document.page_count or len(item.escalation.layout.pages) or 1
        if not 1 <= page_number <= pages:
            raise ReviewError("not_found", f"page {page_number} not found: the document has "
                                           f"{pages} page{'s' if pages != 1 else ''}")
        if self.redactor is None:
            return document, []
        redactions = page_redactions(item.escalation.layout,
                                     item.escalation.proposed_decision, self.redactor,
                                     item.escalation.revealed_fields)
        return document, redactions.boxes_on(page_number)

    async def _item(self, principal: Principal, item_id: str) -> ReviewItem:
        """The stored item, unredacted (for applying a verdict, never handed out)."""
        item, tenant = await self.queue.get(item_id)
        if not (principal.may_access(tenant)
                and principal.in_group(item.escalation.reviewer_group)):
            raise ReviewError("not_found", f"review item {item_id!r} not found")
        return item

    async def claim(self, principal: Principal, request: ClaimRequest) -> ReviewItem:
        reviewer = await self._check(principal, request.item_id, request.reviewer_id)
        return await self._shown(await self.queue.claim(request.item_id, reviewer,
                                                  self._lease(request)))

    async def renew(self, principal: Principal, request: RenewRequest) -> ReviewItem:
        reviewer = await self._check(principal, request.item_id, request.reviewer_id)
        return await self._shown(await self.queue.renew(request.item_id, reviewer,
                                                  self._lease(request)))

    async def release(self, principal: Principal, item_id: str, reviewer_id: str) -> ReviewItem:
        """Give a claimed item back to the queue: the holder's own release, or an admin's
        taking back a claim another reviewer holds (a lead whose reviewer went home with the
        item claimed, perhaps with the console still open and renewing it), audited
        ``review.taken_back`` with both names."""
        reviewer = await self._check(principal, item_id, reviewer_id)
        holder = reviewer
        if principal.role is Role.ADMIN:
            current = await self._item(principal, item_id)
            if current.state == ReviewState.REVIEW_STATE_CLAIMED and current.claimed_by:
                holder = current.claimed_by
        released = await self.queue.release(item_id, holder)
        if holder != reviewer:
            async with self.pool.acquire() as conn:
                await audit(conn, released.escalation.tenant_id, f"reviewer:{reviewer}",
                            "review.taken_back",
                            released.escalation.task_id, {"item_id": item_id, "from": holder})
        return await self._shown(released)

    async def submit_verdict(self, principal: Principal, verdict: ReviewVerdict,
                             credentials: Credentials = ()
                             ) -> tuple[ReviewItem, Decision | None]:
        """Close the item, store the human decision and audit it; then publish it.

        The first approval of a four-eyes item decides nothing: it is recorded, the item
        returns to the queue, and the decision is None."""
        problems = []
        if not verdict.item_id:
            problems.append(("verdict.item_id", "required"))
        if not verdict.reviewer_id and principal == DEV_PRINCIPAL:
            problems.append(("verdict.reviewer_id", "required (auth is off)"))
        if verdict.verdict == Verdict.VERDICT_UNSPECIFIED:
            problems.append(("verdict.verdict", "APPROVE, REJECT or MODIFY"))
        problems += unknown_enum_problems("verdict.verdict", [verdict.verdict], Verdict,
                                          indexed=False)
        if verdict.verdict == Verdict.VERDICT_MODIFY and not verdict.modified_fields:
            problems.append(("verdict.modified_fields", "required for MODIFY"))
        if verdict.verdict != Verdict.VERDICT_MODIFY and verdict.modified_fields:
            problems.append(("verdict.modified_fields", "only allowed with MODIFY"))
        if verdict.verdict == Verdict.VERDICT_REJECT and not verdict.reason.strip():
            problems.append(("verdict.reason", "required for REJECT: why the task is refused "
                             "(the submitter and the audit trail see it)"))
        if verdict.document_type and verdict.verdict != Verdict.VERDICT_REJECT:
            problems.append(("verdict.document_type", "only allowed with REJECT"))
        elif verdict.document_type and not DOCUMENT_TYPE.fullmatch(verdict.document_type):
            problems.append(("verdict.document_type", "a type name: lower case letters, "
                             "digits and '_', starting with a letter, at most 63 characters"))
        if len(verdict.modified_fields) > MAX_MODIFIED_FIELDS:
            problems.append(("verdict.modified_fields", f"at most {MAX_MODIFIED_FIELDS}"))
        if any(not name.strip() for name in verdict.modified_fields):
            problems.append(("verdict.modified_fields", "field names must not be empty"))
        problems += nul_problems(**{
            "verdict.reviewer_id": verdict.reviewer_id, "verdict.reason": verdict.reason,
            "verdict.modified_fields": [*verdict.modified_fields,
                                        *verdict.modified_fields.values()]})
        if problems:
            raise invalid(problems)
        item = await self._item(principal, verdict.item_id)
        if verdict.task_id and verdict.task_id != item.escalation.task_id:
            # a client that mixed up its items is told, not obeyed
            raise ReviewError("invalid", f"verdict.task_id: item {verdict.item_id} is task "
                              f"{item.escalation.task_id}'s, not {verdict.task_id[:64]}",
                              [("verdict.task_id", f"item {verdict.item_id} is task "
                                f"{item.escalation.task_id}'s; name it or leave it empty")])
        edits = edit_problems(item.escalation, verdict.modified_fields,
                              withholding=self.redactor is not None)
        if edits:
            raise invalid(edits)
        if verdict.document_type and \
                verdict.document_type == item.escalation.proposed_decision.label:
            raise ReviewError("invalid", "verdict.document_type: the proposed type; name "
                              "the type the document really is, or leave it empty",
                              [("verdict.document_type", "the proposed type")])
        reviewer = reviewer_of(principal, verdict.reviewer_id)
        typed_reason = verdict.reason  # the audit keeps its hash, never the text
        # recorded (verdict_pb too) as the credentials say, and the reason, free text that may
        # quote the document, with PII redacted before it is stored or copied anywhere
        reason = redact_free_text(typed_reason)
        if reviewer != verdict.reviewer_id or reason != typed_reason:
            own = ReviewVerdict()
            own.CopyFrom(verdict)
            own.reviewer_id = reviewer
            own.reason = reason
            verdict = own
        name = Verdict.Name(verdict.verdict).removeprefix("VERDICT_").lower()
        approving = verdict.verdict != Verdict.VERDICT_REJECT
        first = await self._first_approval_of(item)  # four eyes, after the first approval
        rule_with_edits = ""
        if approving and item.state == ReviewState.REVIEW_STATE_CLAIMED and \
                item.claimed_by == verdict.reviewer_id:
            # the edits of both approvals, as the decision will carry them (an item this
            # reviewer does not hold is refused below, before anyone is asked)
            edits = {**(first.modified_fields if first is not None else {}),
                     **verdict.modified_fields}
            rule_with_edits = await self._check_edits(item, edits, credentials)
        if approving and len(item.approved_by) + 1 < item.approvals_required:
            return await self._first_approval(principal, item, verdict, typed_reason), None
        decision = verdict_decision(item.escalation, verdict, first, rule_with_edits)
        async with self.pool.acquire() as conn, conn.transaction():
            row = await self.queue.close_claimed(conn, verdict.item_id, verdict.reviewer_id,
                                                 f"verdict:{name}", decision.decision_id)
            await store_decision(conn, row["item_id"], decision, self.queue.codec)
            await conn.execute(
                "INSERT INTO review_verdicts (item_id, task_id, reviewer_id, verdict, reason, "
                "verdict_pb, claimed_at) VALUES ($1,$2,$3,$4,$5,$6,$7)",
                row["item_id"], row["task_id"], verdict.reviewer_id, name.upper(),
                verdict.reason,
                self.queue.codec.seal(row["item_id"], verdict.SerializeToString(), VERDICT),
                row["claimed_at"])
            proposed = item.escalation.proposed_decision
            detail = {
                "item_id": verdict.item_id, "verdict": name,
                # anything but a plain approval (four eyes: of either reviewer) overrides
                "override": decision.rule != "reviewer_approve",
                "model_rule": proposed.rule, "model_label": proposed.label,
                "model_confidence": round(proposed.confidence, 4),
                "reason_sha256": text_digest(typed_reason),
                "modified_fields": {k: text_digest(v) for k, v in
                                    sorted(verdict.modified_fields.items())},
                "decision_id": decision.decision_id,
                "principal": principal.key_id,
            }
            if rule_with_edits:
                detail["rule_with_edits"] = rule_with_edits
            if item.approved_by:
                detail["approved_by"] = list(item.approved_by)
            if item.escalation.step_id:
                detail["approves_step_id"] = item.escalation.step_id
            await audit(conn, row["tenant_id"], f"reviewer:{verdict.reviewer_id}",
                        "review.verdict", str(row["task_id"]), detail)
        VERDICTS.labels(name).inc()
        await self.publisher.publish(row["item_id"], decision)
        closed, _ = await self.queue.get(verdict.item_id)
        return await self._shown(closed), decision

    async def _check_edits(self, item: ReviewItem, edits: dict[str, str],
                           credentials: Credentials) -> str:
        """Refuse an approval whose edits the plan or the pack's rules do not allow: at an
        approval step, edits of fields an earlier step already sent; otherwise what the
        pack's decision table says of the edited fields (ReconsiderEdits). Returns the rule
        the edited fields meet ('' when nothing was asked)."""
        if not edits:
            return ""
        problems = sent_edit_problems(item.escalation, edits)
        if problems:
            raise invalid(problems)
        proposed = item.escalation.proposed_decision
        if self.edits_check is None or not proposed.pack:
            return ""   # (no pack decided: there are no rules to put the edits to)
        reconsidered = await self.edits_check(item.escalation, edits, credentials)
        problems = reconsidered_problems(item.escalation, item.approvals_required,
                                         reconsidered, edits)
        if problems:
            raise invalid(problems)
        return reconsidered.rule

    async def _first_approval(self, principal: Principal, item: ReviewItem,
                              verdict: ReviewVerdict, typed_reason: str) -> ReviewItem:
        """Four eyes: record the first approval (not published) and return the item to the
        queue for a different reviewer."""
        name = Verdict.Name(verdict.verdict).removeprefix("VERDICT_").lower()
        async with self.pool.acquire() as conn, conn.transaction():
            row = await self.queue.record_first_approval(conn, verdict.item_id,
                                                         verdict.reviewer_id)
            await conn.execute(
                "INSERT INTO review_approvals (item_id, task_id, reviewer_id, verdict, reason, "
                "verdict_pb) VALUES ($1,$2,$3,$4,$5,$6)",
                row["item_id"], row["task_id"], verdict.reviewer_id, name.upper(),
                verdict.reason,
                self.queue.codec.seal(row["item_id"], verdict.SerializeToString(), APPROVAL))
            await audit(conn, row["tenant_id"], f"reviewer:{verdict.reviewer_id}",
                        "review.approval", str(row["task_id"]), {
                            "item_id": verdict.item_id, "verdict": name,
                            "approvals": f"{len(row['approved_by'])} of "
                                         f"{row['approvals_required']}",
                            "reason_sha256": text_digest(typed_reason),
                            "modified_fields": {k: text_digest(v) for k, v in
                                                sorted(verdict.modified_fields.items())},
                            "principal": principal.key_id,
                        })
        return await self._shown(item_from_row(row, self.queue.codec))

    async def _first_approval_of(self, item: ReviewItem) -> ReviewVerdict | None:
        """The recorded first approval of a four-eyes item (None if there is none)."""
        return (await self._first_approvals([item])).get(item.item_id)

    async def _first_approvals(self, items: Sequence[ReviewItem]) -> dict[str, ReviewVerdict]:
        """The recorded first approvals of the four-eyes items among ``items``, by item id."""
        ids = [uuid.UUID(i.item_id) for i in items if i.approved_by]
        if not ids:
            return {}
        rows = await self.pool.fetch(
            "SELECT item_id, verdict_pb FROM review_approvals WHERE item_id = ANY($1::uuid[])",
            ids)
        return {str(row["item_id"]): ReviewVerdict.FromString(
                    self.queue.codec.open(row["item_id"], row["verdict_pb"], APPROVAL))
                for row in rows}

    def _lease(self, request: ClaimRequest | RenewRequest) -> timedelta:
        lease = request.lease.ToTimedelta() if request.HasField("lease") else timedelta(0)
        if lease < timedelta(0):
            raise invalid([("lease", "must not be negative (0: the default lease)")])
        if lease == timedelta(0):
            return self.policy.default_lease
        return min(lease, MAX_LEASE)

    async def _check(self, principal: Principal, item_id: str, reviewer_id: str) -> str:
        """Validate a claim/renew/release; returns the reviewer (see :func:`reviewer_of`)."""
        problems = []
        if not item_id:
            problems.append(("item_id", "required"))
        if not reviewer_id and principal == DEV_PRINCIPAL:
            problems.append(("reviewer_id", "required (auth is off)"))
        problems += nul_problems(reviewer_id=reviewer_id)
        if problems:
            raise invalid(problems)
        await self._item(principal, item_id)  # another tenant's item: not found, first
        return reviewer_of(principal, reviewer_id)

