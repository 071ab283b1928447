"""The review web console: static pages and a small JSON API over the same desk as the
ReviewService gRPC API, served by the review process on ``review_web_port``: over HTTPS with
the gRPC servers' certificate when ``SWITCHYARD_TLS_CERT_FILE`` is set, requiring a client
certificate too under mutual TLS (``SWITCHYARD_TLS_CLIENT_CA_FILE``).

Authorization is the gRPC API's: the browser sends ``Authorization: Bearer <API key>``, the
key is checked by the same :class:`ApiKeyAuthenticator`, and each route is allowed the roles
the ReviewService policy gives the RPC it mirrors. Keys travel in a header, never a cookie,
so other sites cannot ride on a reviewer's session (no CSRF), and the pages are served with
a strict Content-Security-Policy and render all item content as text.

The same server serves the operator console (``/operator``, routes under ``/api/operator/``,
:mod:`services.review.operator`) and the classroom analytics page (``/analytics``, routes
under ``/api/analytics/``, :mod:`services.review.analytics`) with the same keys and headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import ssl
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
from aiohttp import web
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from services.review.desk import MAX_LEASE, PAGED_TYPES, ReviewDesk
from services.review.pages import page_png
from services.review.queue import ReviewError
from switchyard.access import (
    RATE_LIMITED,
    ApiKeyAuthenticator,
    MethodPolicy,
    Principal,
    Role,
    TenantLimiter,
)
from switchyard.documents import BlobError, BlobNotFound, BlobStore, DocumentError, DocumentLimits
from switchyard.privacy import withheld_label
from switchyard.rpc import NotAscii, forwarded_metadata
from switchyard.runtime import Supervisor
from switchyard.tasks import document_hidden, level_of, task_bucket
from switchyard.v1 import (
    BoundingBox,
    ClaimRequest,
    DecisionOutcome,
    DocumentLayout,
    EscalationReason,
    LayoutSource,
    ListQueueRequest,
    Provenance,
    RenewRequest,
    ReviewItem,
    ReviewPriority,
    ReviewState,
    ReviewVerdict,
    TaskPriority,
    Verdict,
)

if TYPE_CHECKING:
    from services.review.operator import OperatorApi

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "console"
SERVICE = "/switchyard.v1.ReviewService/"
WATCH_INTERVAL_S = 0.5
KEEPALIVE_S = 15.0
# img-src blob:: page images are fetched with the API key in a header (never a cookie or a
# URL) and shown from an object URL the page itself made from the response.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data: blob:; connect-src 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
_VERDICTS = {"approve": Verdict.VERDICT_APPROVE, "reject": Verdict.VERDICT_REJECT,
             "modify": Verdict.VERDICT_MODIFY}


class BadRequest(Exception):
    def __init__(self, violations: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{f}: {d}" for f, d in violations))
        self.violations = violations


# -- JSON views of review items ------------------------------------------------------------

def _iso(ts: Timestamp, present: bool = True) -> str | None:
    if not present or (ts.seconds == 0 and ts.nanos == 0):
        return None
    return ts.ToDatetime(timezone.utc).isoformat().replace("+00:00", "Z")


def approvals_text(item: ReviewItem) -> str | None:
    """'1 of 2 approvals' for a four-eyes item (None for one that needs a single verdict)."""
    required = item.approvals_required or 1
    if required < 2:
        return None
    done = len(item.approved_by)
    if item.state == ReviewState.REVIEW_STATE_RESOLVED and item.resolution in (
            "verdict:approve", "verdict:modify"):
        done = required
    return f"{done} of {required} approvals"


def _box(box: BoundingBox) -> list[float]:
    return [box.x0, box.y0, box.x1, box.y1]


def _source(source: int) -> str:
    return LayoutSource.Name(source).removeprefix("LAYOUT_SOURCE_")  # type: ignore[arg-type]


def provenance_json(provenance: Provenance) -> dict[str, Any]:
    """Where a field was read: page (1-based), boxes as [x0, y0, x1, y1] page fractions."""
    return {"page": provenance.page, "box": _box(provenance.box),
            "word_boxes": [_box(b) for b in provenance.word_boxes],
            "source": _source(provenance.source), "ocr_confidence": provenance.ocr_confidence}


def layout_json(layout: DocumentLayout) -> list[dict[str, Any]]:
    """The words the console draws over the page images (already redacted by the desk)."""
    return [{"number": page.number or index + 1, "width": page.width, "height": page.height,
             "source": _source(page.source),
             "words": [{"text": w.text, "box": _box(w.box), "confidence": w.confidence}
                       for w in page.words]}
            for index, page in enumerate(layout.pages)]


def document_text(item: ReviewItem) -> str:
    """The document as text: a text or JSON body as is, a PDF or image as the words of its
    layout, page after page (never the file's bytes decoded as text)."""
    document = item.escalation.task.document
    if not document.content_type.startswith(PAGED_TYPES):
        return document.body.decode("utf-8", errors="replace")
    pages = []
    for page in item.escalation.layout.pages:
        words: list[str] = []
        for word in page.words:
            if not (words and word.text == words[-1] and word.text.endswith("REDACTED]")):
                words.append(word.text)   # a redacted value's words: one label
        pages.append(" ".join(words))
    return "\n\n".join(pages)


def withheld(name: str, value: str) -> bool:
    """Whether the desk withheld this value of field ``name`` from the reviewer (it is the
    field's label: :func:`switchyard._dataclass.redact_field`), so the console can say so."""
    return value == withheld_label(name)


def item_json(item: ReviewItem, full: bool = True) -> dict[str, Any]:
    """What the console shows; document bytes become text, enums become short names."""
    esc = item.escalation
    proposal = esc.proposed_decision
    text = document_text(item)
    out: dict[str, Any] = {
        "item_id": item.item_id, "task_id": esc.task_id, "tenant_id": esc.tenant_id,
        "queue": esc.queue or "default",
        "state": ReviewState.Name(item.state).removeprefix("REVIEW_STATE_"),
        "priority": ReviewPriority.Name(item.priority).removeprefix("REVIEW_PRIORITY_"),
        "escalated_priority": ReviewPriority.Name(esc.priority).removeprefix(
            "REVIEW_PRIORITY_"),
        # what the submitter asked for (unset means normal), as ingest resolved it
        "task_priority": TaskPriority.Name(level_of(task_bucket(esc.task))).removeprefix(
            "TASK_PRIORITY_"),
        "reason": EscalationReason.Name(esc.reason).removeprefix("ESCALATION_REASON_"),
        "reason_detail": esc.reason_detail, "kind": esc.task.kind,
        "claimed_by": item.claimed_by or None,
        "lease_expires_at": _iso(item.lease_expires_at, item.HasField("lease_expires_at")),
        "created_at": _iso(item.created_at), "updated_at": _iso(item.updated_at),
        "admitted_at": _iso(item.admitted_at, item.HasField("admitted_at")),
        "sla_deadline": _iso(item.sla_deadline, item.HasField("sla_deadline")),
        "resolution": item.resolution or None, "expiries": item.expiries,
        "decided_by": item.decided_by or None,
        "decided_at": _iso(item.decided_at, item.HasField("decided_at")),
        "summary": " ".join(text.split())[:160],
        # who may take it (empty: any reviewer of the tenant) and how many must approve
        "reviewer_group": esc.reviewer_group or None,
        "approvals": {"required": item.approvals_required or 1,
                      "approved_by": list(item.approved_by),
                      "text": approvals_text(item),
                      # four eyes: what the first approval changed, which the second approves
                      "edits": dict(sorted(item.approved_edits.items()))},
        "step_id": esc.step_id or None, "instructions": esc.instructions or None,
        # where another system disagrees with the document (an approval step's check)
        "discrepancies": [{"field": d.field, "submitted": d.submitted, "found": d.found,
                           "source": d.source, "note": d.note,
                           "withheld": withheld(d.field, d.submitted)
                           or withheld(d.field, d.found)}
                          for d in esc.discrepancies],
        "revealed_fields": list(esc.revealed_fields),
        "proposal": {
            "outcome": DecisionOutcome.Name(proposal.outcome).removeprefix("DECISION_OUTCOME_"),
            "label": proposal.label, "confidence": proposal.confidence, "rule": proposal.rule,
            "explanation": proposal.explanation,
        },
    }
    if full:
        document = esc.task.document
        paged = document.content_type.startswith(PAGED_TYPES)
        out["document"] = {"content_type": document.content_type,
                           "filename": document.filename, "text": text,
                           # page images at /api/items/{id}/pages/{n}, n = 1..page_count
                           "page_count": (document.page_count or len(esc.layout.pages) or 1)
                           if paged else 0,
                           "layout": layout_json(esc.layout),
                           # an approval step that shows its reviewers no document
                           "hidden": document_hidden(esc)}
        out["metadata"] = dict(esc.task.metadata)
        out["proposal"].update(
            models=[{"name": m.model_name, "version": m.model_version, "label": m.label,
                     "confidence": m.confidence, "scores": dict(m.scores)}
                    for m in proposal.models],
            fields=[{"name": f.name, "value": f.value, "confidence": f.confidence,
                     "withheld": withheld(f.name, f.value),
                     "provenance": provenance_json(f.provenance)
                     if f.HasField("provenance") else None}
                    for f in proposal.fields],
            plan=[{"step_id": s.step_id, "name": s.name, "target": s.target,
                   "operation": s.operation} for s in proposal.plan.steps],
        )
    return out


# -- request parsing -----------------------------------------------------------------------

def _enum_list(raw: str, field: str, enum: Any, prefix: str,
               problems: list[tuple[str, str]]) -> list[int]:
    values = []
    for name in filter(None, (v.strip().upper() for v in raw.split(","))):
        try:
            values.append(enum.Value(prefix + name))
        except ValueError:
            problems.append((field, f"unknown value {name!r}"))
    return values


def list_request(query: Any) -> ListQueueRequest:
    problems: list[tuple[str, str]] = []
    request = ListQueueRequest(queue=query.get("queue", "").strip(),
                               tenant_id=query.get("tenant", "").strip(),
                               page_token=query.get("page_token", ""))
    request.states.extend(_enum_list(query.get("state", ""), "state", ReviewState,
                                     "REVIEW_STATE_", problems))
    request.priorities.extend(_enum_list(query.get("priority", ""), "priority",
                                         ReviewPriority, "REVIEW_PRIORITY_", problems))
    request.reasons.extend(_enum_list(query.get("reason", ""), "reason", EscalationReason,
                                      "ESCALATION_REASON_", problems))
    size = query.get("page_size", "100")
    if not (size.isascii() and size.isdigit() and len(size) <= 6):
        problems.append(("page_size", "a positive integer"))
    else:
        request.page_size = int(size)
    if problems:
        raise BadRequest(problems)
    return request


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except LookupError:  # an unknown charset in the Content-Type header
        raise BadRequest([("body", "unknown charset; send UTF-8 JSON")]) from None
    except RecursionError:
        raise BadRequest([("body", "JSON nested too deeply")]) from None
    except ValueError:  # malformed JSON, undecodable text, a number too long to convert
        raise BadRequest([("body", "must be a JSON object")]) from None
    if not isinstance(body, dict):
        raise BadRequest([("body", "must be a JSON object")])
    try:
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate escape such as "\ud800": not text
        raise BadRequest([("body", "strings must be valid Unicode (no lone surrogate "
                                   "escapes)")]) from None
    return body


#: The longest lease a claim or renewal may ask for (a longer one is refused here, where a
#: client gave a number, rather than cut short as gRPC's contract does).
MAX_LEASE_REQUEST_S = int(MAX_LEASE.total_seconds())


def _lease(body: dict[str, Any]) -> Duration | None:
    value = body.get("lease_s")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or not 0 < value <= MAX_LEASE_REQUEST_S:
        raise BadRequest([("lease_s", "a positive number of seconds, at most "
                                      f"{MAX_LEASE_REQUEST_S} (8 hours)")])
    duration = Duration()
    duration.FromTimedelta(timedelta(seconds=value))
    return duration


def verdict_from(item_id: str, body: dict[str, Any]) -> ReviewVerdict:
    problems = []
    verdict = _VERDICTS.get(str(body.get("verdict", "")).lower())
    if verdict is None:
        problems.append(("verdict", "approve, reject or modify"))
    fields = body.get("modified_fields") or {}
    if not isinstance(fields, dict) or not all(isinstance(v, str) for v in fields.values()):
        problems.append(("modified_fields", "an object of field name to new text value"))
        fields = {}
    reason = body.get("reason", "")
    if not isinstance(reason, str):
        problems.append(("reason", "text"))
        reason = ""
    document_type = body.get("document_type", "")
    if not isinstance(document_type, str):
        problems.append(("document_type", "a type name"))
        document_type = ""
    if problems:
        raise BadRequest(problems)
    return ReviewVerdict(item_id=item_id, reviewer_id=str(body.get("reviewer_id", "")).strip(),
                         verdict=verdict, reason=reason.strip(),  # type: ignore[arg-type]
                         modified_fields=fields, document_type=document_type.strip())


# -- the server ----------------------------------------------------------------------------

Handler = Callable[[web.Request, Principal], Awaitable[web.StreamResponse]]


class Console:
    def __init__(self, desk: ReviewDesk, pool: asyncpg.Pool, api_keys: str,
                 policy: MethodPolicy, host: str, port: int, *, supervisor: Supervisor,
                 limiter: TenantLimiter | None = None,
                 rate_limited: frozenset[str] = frozenset(),
                 ssl_context: ssl.SSLContext | None = None,
                 operator: OperatorApi | None = None,
                 blobs: BlobStore | None = None,
                 document_limits: DocumentLimits | None = None) -> None:
        self.desk = desk
        # where documents that travelled by reference are (None: only inline bodies), and
        # the limits a page is rendered under (pixels), as everywhere else
        self.blobs = blobs
        self.document_limits = document_limits or DocumentLimits()
        # the operator console's routes (services/review/operator.py), on the same server
        self.operator = operator
        self.supervisor = supervisor
        self.pool = pool
        self.auth = ApiKeyAuthenticator(api_keys)
        self.policy = policy
        self.limiter = limiter
        self.rate_limited = rate_limited
        self.host = host
        self.port = port
        # HTTPS (and client certificates under mutual TLS) whenever the gRPC servers use TLS:
        # the console carries the same API keys and verbs as ReviewService.
        self.ssl_context = ssl_context
        self._runner: web.AppRunner | None = None
        # each listener's queue, and whose changes it hears (its key's tenant; '*' every one)
        self._subscribers: dict[asyncio.Queue[str | None], str] = {}
        self._stopping = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None

    # routes: (method, path, gRPC method whose role policy applies, handler)
    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._headers], client_max_size=1024 * 1024)
        api: list[tuple[str, str, str, Handler]] = [
            ("GET", "/api/session", "ListQueue", self.session),
            ("GET", "/api/items", "ListQueue", self.list_items),
            ("GET", "/api/stats", "ListQueue", self.stats),
            ("GET", "/api/events", "ListQueue", self.events),
            ("GET", "/api/items/{item_id}", "GetItem", self.get_item),
            ("GET", "/api/items/{item_id}/pages/{page}", "GetItem", self.page_image),
            ("POST", "/api/items/{item_id}/claim", "Claim", self.claim),
            ("POST", "/api/items/{item_id}/renew", "Renew", self.renew),
            ("POST", "/api/items/{item_id}/release", "Release", self.release),
            ("POST", "/api/items/{item_id}/verdict", "SubmitVerdict", self.verdict),
        ]
        for method, path, rpc, handler in api:
            app.router.add_route(method, path, self._guarded(SERVICE + rpc, handler))
        app.router.add_get("/", self.index)
        if self.operator is not None:
            self.operator.add_routes(app)
            app.router.add_get("/operator", self.operator_page)
            app.router.add_get("/analytics", self.analytics_page)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_static("/static/", STATIC, show_index=False)
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app(), shutdown_timeout=2.0, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port,
                          ssl_context=self.ssl_context).start()
        self._watcher = self.supervisor.start("console-watch", self._watch)
        log.info("review console on %s://%s:%d/", "https" if self.ssl_context else "http",
                 self.host, self.port)

    async def stop(self) -> None:
        self._stopping.set()
        for queue in list(self._subscribers):
            queue.put_nowait(None)
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        if self._runner is not None:
            await self._runner.cleanup()
        if self.operator is not None:
            await self.operator.close()
        if self.blobs is not None:
            await self.blobs.close()

    # -- middleware ------------------------------------------------------------------------
    @web.middleware
    async def _headers(self, request: web.Request,
                       handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                       ) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            if not request.path.startswith("/api/") or exc.status < 400:
                raise
            # 404, 405, 413 ...: the API answers JSON like every other refusal
            response = _error(exc.status, exc.reason)
            response.headers.update({k: v for k, v in exc.headers.items()
                                     if k.lower() not in ("content-type", "content-length")})
        except Exception:
            if not request.path.startswith("/api/"):
                raise
            log.exception("console %s %s failed", request.method, request.path)
            response = _error(500, "internal error (logged)")
        if not response.prepared:
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
        return response

    def _guarded(self, method: str, handler: Handler
                 ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def guarded(request: web.Request) -> web.StreamResponse:
            try:
                principal = self.auth.authenticate(forwarded_metadata(request))
            except NotAscii:   # no key has such characters
                principal = None
            if principal is None:
                return _error(401, "missing or invalid API key (authorization: Bearer KEY)")
            if not self._may_call(principal, method):
                return _error(403, f"role {principal.role.value!r} may not call {method}")
            if self.limiter is not None and method in self.rate_limited:
                # the same shared per-tenant bucket as the gRPC RPC (429 + Retry-After here)
                try:
                    wait_s = await self.limiter.check(principal.tenant_id)
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    return _error(503, f"rate-limit buckets unavailable: {exc}")
                if wait_s > 0:
                    RATE_LIMITED.labels("console").inc()
                    response = _error(429, f"tenant {principal.tenant_id!r} is over its "
                                           f"submission rate; retry in {wait_s:.2f}s")
                    response.headers["Retry-After"] = str(math.ceil(wait_s))
                    response.headers["retry-after-ms"] = str(max(1, math.ceil(wait_s * 1000)))
                    return response
            try:
                return await handler(request, principal)
            except BadRequest as exc:
                return _error(400, str(exc), exc.violations)
            except ReviewError as exc:
                status = {"not_found": 404, "conflict": 409, "invalid": 400,
                          "forbidden": 403, "unavailable": 503}[exc.code]
                return _error(status, str(exc), exc.violations)
        return guarded

    # -- pages -----------------------------------------------------------------------------
    async def index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html")

    async def operator_page(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "operator.html")

    async def analytics_page(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "analytics.html")

    async def healthz(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text="ok")

    # -- API -------------------------------------------------------------------------------
    async def session(self, request: web.Request, principal: Principal) -> web.StreamResponse:
        return web.json_response({
            "tenant": principal.tenant_id, "role": principal.role.value,
            "auth": self.auth.enabled,
            # reviewer groups (None: every group, as for admins and operators)
            "groups": None if principal.sees_every_group else sorted(principal.groups),
            # who claims and decides: the key (None with auth off: the typed name is used)
            "reviewer": principal.key_id if self.auth.enabled else None,
            "default_lease_s": self.desk.policy.default_lease.total_seconds(),
            "sla_bump_s": self.desk.policy.sla_bump.total_seconds(),
            # whether this key may claim and decide (an auditor reads only): the page hides
            # the buttons and shortcuts it would only be refused
            "may_act": self._may_call(principal, f"{SERVICE}SubmitVerdict"),
        })

    def _may_call(self, principal: Principal, method: str) -> bool:
        """The rule ``_guarded`` applies to ``method``, for the page to know beforehand."""
        allowed = self.policy.get(method, frozenset({Role.ADMIN}))
        return principal.role in allowed or principal.role is Role.ADMIN

    async def list_items(self, request: web.Request,
                         principal: Principal) -> web.StreamResponse:
        response = await self.desk.list_queue(principal, list_request(request.query))
        return web.json_response({"items": [item_json(i, full=False) for i in response.items],
                                  "next_page_token": response.next_page_token})

    async def get_item(self, request: web.Request, principal: Principal) -> web.StreamResponse:
        item = await self.desk.get_item(principal, request.match_info["item_id"])
        return web.json_response({"item": item_json(item)})

    async def page_image(self, request: web.Request,
                         principal: Principal) -> web.StreamResponse:
        """A page of the item's document as a PNG, personal data masked (see
        :meth:`ReviewDesk.page`): what the reviewer may see, never more."""
        raw = request.match_info["page"]
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 6):
            raise BadRequest([("page", "a page number from 1")])
        number = int(raw)
        document, boxes = await self.desk.page(principal, request.match_info["item_id"],
                                               number)
        try:
            png = await page_png(document, self.blobs, number, boxes, self.document_limits)
        except IndexError:
            return _error(404, f"page {number} not found in the document")
        except DocumentError as exc:
            return _error(422, f"the page cannot be shown: {exc}", [("document", exc.code)])
        except BlobNotFound as exc:
            return _error(410, f"the document's bytes are gone from the blob store (purged?): "
                               f"{exc}")
        except BlobError as exc:  # the store unreachable, or bytes that fail their sha256
            log.warning("page %d of item %s: %r", number, request.match_info["item_id"], exc)
            return _error(503, f"the document's bytes cannot be read: {exc}")
        return web.Response(body=png, content_type="image/png")

    async def claim(self, request: web.Request, principal: Principal) -> web.StreamResponse:
        body = await _body(request)
        claim = ClaimRequest(item_id=request.match_info["item_id"],
                             reviewer_id=str(body.get("reviewer_id", "")).strip())
        if (lease := _lease(body)) is not None:
            claim.lease.CopyFrom(lease)
        return web.json_response({"item": item_json(await self.desk.claim(principal, claim))})

    async def renew(self, request: web.Request, principal: Principal) -> web.StreamResponse:
        body = await _body(request)
        renew = RenewRequest(item_id=request.match_info["item_id"],
                             reviewer_id=str(body.get("reviewer_id", "")).strip())
        if (lease := _lease(body)) is not None:
            renew.lease.CopyFrom(lease)
        return web.json_response({"item": item_json(await self.desk.renew(principal, renew))})

    async def release(self, request: web.Request, principal: Principal) -> web.StreamResponse:
        body = await _body(request)
        item = await self.desk.release(principal, request.match_info["item_id"],
                                       str(body.get("reviewer_id", "")).strip())
        return web.json_response({"item": item_json(item)})

    async def verdict(self, request: web.Request, principal: Principal) -> web.StreamResponse:
        verdict = verdict_from(request.match_info["item_id"], await _body(request))
        # the reviewer's key goes on to the decision service, which checks edits
        item, decision = await self.desk.submit_verdict(
            principal, verdict, credentials=[("authorization", v) for v in
                                             request.headers.getall("Authorization", [])])
        return web.json_response({"item": item_json(item),
                                  "decision_id": decision.decision_id if decision else None})

    async def stats(self, request: web.Request, principal: Principal) -> web.StreamResponse:
        """Queue depths as the caller may see them: other groups' items are not counted."""
        tenant = None if principal.tenant_id == "*" else principal.tenant_id
        rows = await self.pool.fetch(
            "SELECT queue, count(*) FILTER (WHERE state = 'BACKLOGGED') AS backlog, "
            "count(*) FILTER (WHERE state IN ('PENDING', 'CLAIMED')) AS open, "
            "extract(epoch FROM now() - min(created_at) FILTER (WHERE state = 'BACKLOGGED')) "
            "AS oldest_s FROM review_items WHERE state IN ('BACKLOGGED', 'PENDING', 'CLAIMED') "
            "AND ($1::text IS NULL OR tenant_id = $1) AND ($2::text[] IS NULL "
            "OR reviewer_group = '' OR reviewer_group = ANY($2::text[])) "
            "GROUP BY queue ORDER BY queue", tenant,
            None if principal.sees_every_group else sorted(principal.groups))
        return web.json_response({"queues": [
            {"queue": r["queue"], "backlog": r["backlog"], "open": r["open"],
             "oldest_backlog_s": float(r["oldest_s"]) if r["oldest_s"] is not None else None}
            for r in rows]})

    async def events(self, request: web.Request, principal: Principal) -> web.StreamResponse:
        """Server-sent events: 'change' whenever review items of the key's tenant change (the
        page refetches); another tenant's work is not heard, not even when it happens."""
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-store",
            "X-Accel-Buffering": "no", **{k: v for k, v in SECURITY_HEADERS.items()
                                          if k != "Cache-Control"}})
        await response.prepare(request)
        queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=1)
        self._subscribers[queue] = principal.tenant_id
        try:
            await response.write(b"retry: 3000\nevent: hello\ndata: {}\n\n")
            while not self._stopping.is_set():
                try:
                    version = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except asyncio.TimeoutError:
                    await response.write(b": keepalive\n\n")
                    continue
                if version is None:
                    break
                await response.write(f"event: change\ndata: {json.dumps(version)}\n\n".encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._subscribers.pop(queue, None)
        return response

    async def _watch(self) -> None:
        """While anyone listens, asks which tenants' items changed since the last look (the
        ``updated_at`` index) and tells those tenants' listeners, and operator keys' ('*')."""
        seen: dict[str, datetime] = {}   # each tenant's newest change told
        since: datetime | None = None
        while True:
            await asyncio.sleep(WATCH_INTERVAL_S)
            try:
                if since is None:   # from the start on, listened to or not (a listener that
                    # comes later hears once of what changed before it: the page refetches)
                    since = await self.pool.fetchval("SELECT max(updated_at) FROM review_items")
                    since = since or datetime.fromtimestamp(0, timezone.utc)
                if not self._subscribers:
                    continue
                # a little overlap: a transaction that commits late stamped its rows earlier
                rows = await self.pool.fetch(
                    "SELECT tenant_id, max(updated_at) AS changed FROM review_items "
                    "WHERE updated_at > $1::timestamptz - interval '5 seconds' "
                    "GROUP BY tenant_id", since)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("console watch query failed: %r", exc)
                continue
            changed = {r["tenant_id"]: r["changed"] for r in rows
                       if r["changed"] > seen.get(r["tenant_id"], since)}
            if not changed:
                continue
            seen.update(changed)
            since = max(since, *changed.values())
            for queue, tenant in list(self._subscribers.items()):
                when = max(changed.values()) if tenant == "*" else changed.get(tenant)
                if when is not None and queue.empty():
                    queue.put_nowait(when.isoformat())


def _error(status: int, message: str,
           violations: list[tuple[str, str]] | None = None) -> web.Response:
    body: dict[str, Any] = {"error": message}
    if violations:
        body["field_violations"] = {f: d for f, d in violations}
    return web.json_response(body, status=status)

