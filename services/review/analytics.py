"""The classroom analytics page's JSON API (``/analytics``, routes under ``/api/analytics/``),
served by the review console's server beside the operator console and guarded the same way:
admins and auditors only (:data:`services.review.operator.OPERATOR_ROLES`).

Every route calls the decision service's AnalyticsService with the caller's own
``Authorization`` header forwarded, so decision applies its roles and tenancy as for any
client, and its refusals come back as problem documents. The data is derived only: class-level
engagement windows (k-anonymous: a window with fewer than k students carries no engagement),
attendance per session, the session's alerts and the engagement model's fairness per group.
The console reads no table of its own for it, and passes no student pseudonym to the browser:
an alert is shown by its kind, seat, scores and drivers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from google.protobuf.timestamp_pb2 import Timestamp

from switchyard.access import Principal
from switchyard.v1 import (
    AlertKind,
    AnalyticsServiceStub,
    AttendancePoint,
    Driver,
    EngagementAlert,
    EngagementWindow,
    GetAttendanceTrendRequest,
    GetFairnessReportRequest,
    GetSessionEngagementRequest,
    ListSessionsRequest,
    ModelFairness,
    SessionSummary,
    WindowKind,
)

__all__ = [
    "DEFAULT_TREND_DAYS",
    "AnalyticsApi",
    "RequestProblem",
    "alert_json",
    "attendance_json",
    "fairness_json",
    "session_json",
    "window_json",
]

#: The attendance trend's default period (the service's own default is 30 days too).
DEFAULT_TREND_DAYS = 30
MAX_TREND_DAYS = 366
RPC_TIMEOUT_S = 10.0
MAX_PAGE_SIZE = 500


def _iso(ts: Timestamp) -> str | None:
    if ts.seconds == 0 and ts.nanos == 0:
        return None
    return ts.ToDatetime(UTC).isoformat().replace("+00:00", "Z")


def _drivers(drivers: Iterable[Driver]) -> list[dict[str, Any]]:
    return [{"feature": d.feature, "value": d.value, "contribution": d.contribution}
            for d in drivers]


def session_json(s: SessionSummary) -> dict[str, Any]:
    return {"tenant_id": s.tenant_id, "classroom_id": s.classroom_id,
            "session_id": s.session_id, "first_window": _iso(s.first_window),
            "last_window": _iso(s.last_window), "windows": s.windows,
            "engagement": s.engagement if s.HasField("engagement") else None,
            "attendance": s.attendance, "expected_students": s.expected_students,
            "alerts": s.alerts}


def window_json(w: EngagementWindow) -> dict[str, Any]:
    """One window; a suppressed one (fewer than k students) has no engagement or drivers."""
    return {"start": _iso(w.start), "end": _iso(w.end),
            "kind": WindowKind.Name(w.kind).removeprefix("WINDOW_KIND_"),
            "students": w.students, "suppressed": w.suppressed,
            "engagement": w.engagement if w.HasField("engagement") else None,
            "occupancy": w.occupancy,
            "audio_level": w.audio_level if w.HasField("audio_level") else None,
            "attendance": w.attendance, "expected_students": w.expected_students,
            "signals": w.signals, "dropped_no_consent": w.dropped_no_consent,
            "late_signals": w.late_signals, "duplicate_signals": w.duplicate_signals,
            "model_version": w.model_version, "drivers": _drivers(w.drivers)}


def alert_json(a: EngagementAlert) -> dict[str, Any]:
    """An alert as the page shows it: never the student's pseudonym (the seat says where)."""
    return {"alert_id": a.alert_id,
            "kind": AlertKind.Name(a.kind).removeprefix("ALERT_KIND_"),
            "seat_id": a.seat_id, "window_start": _iso(a.window_start),
            "window_end": _iso(a.window_end), "windows": a.windows, "score": a.score,
            "model_version": a.model_version, "drivers": _drivers(a.drivers),
            "detail": a.detail, "suppressed_before": a.suppressed_before}


def attendance_json(p: AttendancePoint) -> dict[str, Any]:
    return {"session_id": p.session_id, "start": _iso(p.start), "attendance": p.attendance,
            "expected_students": p.expected_students,
            "rate": p.rate if p.HasField("rate") else None, "anomaly": p.anomaly}


def fairness_json(m: ModelFairness) -> dict[str, Any]:
    """A model version's alert rates per group; a group smaller than k has no rate."""
    parity = m.parity_difference if m.HasField("parity_difference") else None
    return {"model_version": m.model_version,
            "groups": [{"group": g.group, "windows": g.windows, "flagged": g.flagged,
                        "rate": g.rate if g.HasField("rate") else None} for g in m.groups],
            "parity_difference": parity, "limit": m.limit,
            "over_limit": parity is not None and parity > m.limit}


class RequestProblem(Exception):
    """A malformed query (HTTP 400)."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{f}: {d}" for f, d in errors))
        self.errors = errors


def _tenant(query: Mapping[str, str], principal: Principal) -> str:
    """The tenant asked for, else the key's own (empty: decision uses the caller's)."""
    tenant = query.get("tenant", "").strip()
    if not tenant and principal.tenant_id != "*":
        tenant = principal.tenant_id
    return tenant


def _required(query: Mapping[str, str], name: str, errors: list[tuple[str, str]]) -> str:
    value = query.get(name, "").strip()
    if not value:
        errors.append((name, "required"))
    return value


class AnalyticsApi:
    """The handlers of ``/api/analytics/*`` over decision's AnalyticsService (the channel is
    the operator console's, :class:`services.review.operator.OperatorApi`)."""

    def __init__(self, stub: AnalyticsServiceStub) -> None:
        self.analytics = stub

    def routes(self) -> list[tuple[str, str, Any]]:
        return [
            ("GET", "/api/analytics/sessions", self.sessions),
            ("GET", "/api/analytics/engagement", self.engagement),
            ("GET", "/api/analytics/attendance", self.attendance),
            ("GET", "/api/analytics/fairness", self.fairness),
        ]

    async def sessions(self, request: web.Request, principal: Principal,
                       metadata: tuple[tuple[str, str], ...]) -> web.StreamResponse:
        """Class sessions with derived data, newest first (``tenant``, ``classroom``,
        ``page_size``, ``page_token``)."""
        query = request.query
        raw = query.get("page_size", "").strip()
        if raw and not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= MAX_PAGE_SIZE):
            raise RequestProblem([("page_size", f"a whole number from 1 to {MAX_PAGE_SIZE}")])
        tenant = _tenant(query, principal)
        response = await self.analytics.ListSessions(ListSessionsRequest(
            tenant_id=tenant, classroom_id=query.get("classroom", "").strip(),
            page_size=int(raw) if raw else 0, page_token=query.get("page_token", "")),
            metadata=metadata, timeout=RPC_TIMEOUT_S)
        return web.json_response({"tenant": tenant,
                                  "sessions": [session_json(s) for s in response.sessions],
                                  "next_page_token": response.next_page_token})

    async def engagement(self, request: web.Request, principal: Principal,
                         metadata: tuple[tuple[str, str], ...]) -> web.StreamResponse:
        """One session's tumbling windows in time order, its alerts and the k they were
        anonymised with (``tenant``, ``classroom``, ``session``)."""
        errors: list[tuple[str, str]] = []
        classroom = _required(request.query, "classroom", errors)
        session = _required(request.query, "session", errors)
        if errors:
            raise RequestProblem(errors)
        response = await self.analytics.GetSessionEngagement(GetSessionEngagementRequest(
            tenant_id=_tenant(request.query, principal), classroom_id=classroom,
            session_id=session, kind=WindowKind.WINDOW_KIND_TUMBLING),
            metadata=metadata, timeout=RPC_TIMEOUT_S)
        return web.json_response({
            "session": session_json(response.session),
            "windows": [window_json(w) for w in response.windows],
            "alerts": [alert_json(a) for a in response.alerts],
            "k_anonymity": response.k_anonymity})

    async def attendance(self, request: web.Request, principal: Principal,
                         metadata: tuple[tuple[str, str], ...]) -> web.StreamResponse:
        """Attendance per session of one classroom over the last ``days`` (default 30)."""
        errors: list[tuple[str, str]] = []
        classroom = _required(request.query, "classroom", errors)
        raw = request.query.get("days", "").strip() or str(DEFAULT_TREND_DAYS)
        if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= MAX_TREND_DAYS):
            errors.append(("days", f"a whole number from 1 to {MAX_TREND_DAYS}"))
        if errors:
            raise RequestProblem(errors)
        until = datetime.now(UTC)
        since_ts, until_ts = Timestamp(), Timestamp()
        since_ts.FromDatetime(until - timedelta(days=int(raw)))
        # a session starting now is in the trend too
        until_ts.FromDatetime(until + timedelta(minutes=1))
        response = await self.analytics.GetAttendanceTrend(GetAttendanceTrendRequest(
            tenant_id=_tenant(request.query, principal), classroom_id=classroom,
            since=since_ts, until=until_ts), metadata=metadata, timeout=RPC_TIMEOUT_S)
        return web.json_response({"classroom_id": classroom, "days": int(raw),
                                  "points": [attendance_json(p) for p in response.points]})

    async def fairness(self, request: web.Request, principal: Principal,
                       metadata: tuple[tuple[str, str], ...]) -> web.StreamResponse:
        """The engagement model's alert rates per group and parity difference, per version."""
        tenant = _tenant(request.query, principal)
        response = await self.analytics.GetFairnessReport(GetFairnessReportRequest(
            tenant_id=tenant), metadata=metadata, timeout=RPC_TIMEOUT_S)
        return web.json_response({"tenant": tenant,
                                  "models": [fairness_json(m) for m in response.models]})
