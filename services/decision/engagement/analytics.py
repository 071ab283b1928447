"""AnalyticsService: classroom analytics from the engagement tables only (derived data).

Admins and auditors read their own tenant (empty tenant_id: the caller's); an operator key
(tenant "*") may name any tenant, and "*" for the fairness report. Windows are returned as
stored: k-anonymous (suppressed windows carry no engagement and no drivers).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg
import grpc

from switchyard import Settings
from switchyard.access import Role
from switchyard.rpc import FieldViolation, abort_invalid, request_tenant
from switchyard.v1 import (
    AnalyticsServiceServicer,
    AttendancePoint,
    Driver,
    EngagementAlert,
    GetAttendanceTrendRequest,
    GetAttendanceTrendResponse,
    GetFairnessReportRequest,
    GetFairnessReportResponse,
    GetSessionEngagementRequest,
    GetSessionEngagementResponse,
    GroupRate,
    ListSessionsRequest,
    ListSessionsResponse,
    ModelFairness,
    SessionSummary,
    WindowKind,
)

SERVICE_NAME = "switchyard.v1.AnalyticsService"
_READERS = frozenset({Role.ADMIN, Role.AUDITOR})
POLICY = {f"/{SERVICE_NAME}/{method}": _READERS for method in (
    "ListSessions", "GetSessionEngagement", "GetAttendanceTrend", "GetFairnessReport")}
DEFAULT_PAGE = 50
TREND_DAYS = 30

_SESSIONS = """
SELECT w.tenant_id, w.classroom_id, w.session_id, min(w.window_start) AS first_window,
       max(w.window_end) AS last_window, count(*) AS windows,
       avg(w.engagement) FILTER (WHERE NOT w.suppressed) AS engagement,
       max(w.attendance) AS attendance, max(w.expected_students) AS expected_students,
       (SELECT count(*) FROM engagement_alerts a WHERE a.tenant_id = w.tenant_id
          AND a.classroom_id = w.classroom_id AND a.session_id = w.session_id
          AND NOT a.suppressed) AS alerts
FROM engagement_windows w
WHERE w.kind = 1 AND w.tenant_id = $1 {where}
GROUP BY w.tenant_id, w.classroom_id, w.session_id
"""


async def fairness(conn: asyncpg.Connection, tenant: str | None, k: int
                   ) -> list[dict[str, Any]]:
    """Per model version: each group's flagged / scored per-student windows (withheld below k
    windows) and the parity difference over the groups shown."""
    rows = await conn.fetch(
        "SELECT model_version, group_name, sum(windows)::bigint AS windows, "
        "sum(flagged)::bigint AS flagged FROM engagement_group_counts "
        "WHERE $1::text IS NULL OR tenant_id = $1 GROUP BY model_version, group_name "
        "ORDER BY model_version, group_name", tenant)
    models: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        rate = r["flagged"] / r["windows"] if r["windows"] >= k else None
        models.setdefault(r["model_version"], []).append(
            {"group": r["group_name"], "windows": r["windows"], "flagged": r["flagged"],
             "rate": rate})
    out = []
    for version, groups in models.items():
        shown = [g["rate"] for g in groups if g["rate"] is not None]
        out.append({"model_version": version, "groups": groups,
                    "parity_difference": max(shown) - min(shown) if len(shown) >= 2 else None})
    return out


def _summary(row: asyncpg.Record) -> SessionSummary:
    summary = SessionSummary(tenant_id=row["tenant_id"], classroom_id=row["classroom_id"],
                             session_id=row["session_id"], windows=row["windows"],
                             attendance=row["attendance"],
                             expected_students=row["expected_students"], alerts=row["alerts"])
    summary.first_window.FromDatetime(row["first_window"])
    summary.last_window.FromDatetime(row["last_window"])
    if row["engagement"] is not None:
        summary.engagement = row["engagement"]
    return summary


def _drivers(text: str | None) -> list[Driver]:
    return [Driver(**d) for d in json.loads(text or "[]")]


class AnalyticsServicer(AnalyticsServiceServicer):
    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self.pool = pool
        self.settings = settings

    async def ListSessions(self, request: ListSessionsRequest,
                           context: grpc.aio.ServicerContext) -> ListSessionsResponse:
        tenant = await request_tenant(request.tenant_id, context)
        size = request.page_size or DEFAULT_PAGE
        if not 1 <= size <= 500:
            await abort_invalid(context, [FieldViolation("page_size", "1..500")])
        try:
            offset = int(request.page_token or "0")
        except ValueError:
            offset = -1
        if offset < 0:
            await abort_invalid(context, [FieldViolation("page_token", "not a page token")])
        where = "AND w.classroom_id = $2" if request.classroom_id else ""
        args: list[Any] = [tenant] + ([request.classroom_id] if request.classroom_id else [])
        n = len(args)
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                _SESSIONS.format(where=where) + f" ORDER BY first_window DESC, session_id "
                f"LIMIT ${n + 1} OFFSET ${n + 2}", *args, size + 1, offset)
        more = len(rows) > size
        return ListSessionsResponse(sessions=[_summary(r) for r in rows[:size]],
                                    next_page_token=str(offset + size) if more else "")

    async def GetSessionEngagement(self, request: GetSessionEngagementRequest,
                                   context: grpc.aio.ServicerContext
                                   ) -> GetSessionEngagementResponse:
        tenant = await request_tenant(request.tenant_id, context)
        problems = [FieldViolation(f, "required") for f in ("classroom_id", "session_id")
                    if not getattr(request, f).strip()]
        if problems:
            await abort_invalid(context, problems)
        kind = request.kind or WindowKind.WINDOW_KIND_TUMBLING
        key = (tenant, request.classroom_id, request.session_id)
        async with self.pool.acquire() as conn:
            summary = await conn.fetchrow(
                _SESSIONS.format(where="AND w.classroom_id = $2 AND w.session_id = $3"), *key)
            windows = await conn.fetch(
                "SELECT * FROM engagement_windows WHERE tenant_id = $1 AND classroom_id = $2 "
                "AND session_id = $3 AND kind = $4 ORDER BY window_start", *key, kind)
            alerts = await conn.fetch(
                "SELECT * FROM engagement_alerts WHERE tenant_id = $1 AND classroom_id = $2 "
                "AND session_id = $3 AND NOT suppressed ORDER BY window_end, alert_id", *key)
        if summary is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no derived data for that session")
        from services.decision.engagement.processor import stored_window  # noqa: PLC0415
        response = GetSessionEngagementResponse(
            session=_summary(summary), windows=[stored_window(w) for w in windows],
            k_anonymity=self.settings.signal_k_anonymity)
        for a in alerts:
            alert = EngagementAlert(
                alert_id=a["alert_id"], tenant_id=a["tenant_id"], classroom_id=a["classroom_id"],
                session_id=a["session_id"], kind=a["kind"], subject=a["subject"],
                seat_id=a["seat_id"], windows=a["windows"], score=a["score"],
                model_version=a["model_version"], drivers=_drivers(a["drivers"]),
                detail=a["detail"], suppressed_before=a["suppressed_before"])
            alert.window_start.FromDatetime(a["window_start"])
            alert.window_end.FromDatetime(a["window_end"])
            response.alerts.append(alert)
        return response

    async def GetAttendanceTrend(self, request: GetAttendanceTrendRequest,
                                 context: grpc.aio.ServicerContext
                                 ) -> GetAttendanceTrendResponse:
        tenant = await request_tenant(request.tenant_id, context)
        if not request.classroom_id.strip():
            await abort_invalid(context, [FieldViolation("classroom_id", "required")])
        now = datetime.now(timezone.utc)
        since = (request.since.ToDatetime(tzinfo=timezone.utc) if request.HasField("since")
                 else now - timedelta(days=TREND_DAYS))
        until = (request.until.ToDatetime(tzinfo=timezone.utc) if request.HasField("until")
                 else now + timedelta(days=1))
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT session_id, min(window_start) AS start, max(attendance) AS attendance, "
                "max(expected_students) AS expected, bool_or(EXISTS (SELECT 1 FROM "
                "engagement_alerts a WHERE a.tenant_id = w.tenant_id AND a.classroom_id = "
                "w.classroom_id AND a.session_id = w.session_id AND a.kind = 2)) AS anomaly "
                "FROM engagement_windows w WHERE tenant_id = $1 AND classroom_id = $2 "
                "AND kind = 1 GROUP BY session_id HAVING min(window_start) >= $3 "
                "AND min(window_start) < $4 ORDER BY start", tenant, request.classroom_id,
                since, until)
        points = []
        for r in rows:
            point = AttendancePoint(session_id=r["session_id"], attendance=r["attendance"],
                                    expected_students=r["expected"], anomaly=r["anomaly"])
            point.start.FromDatetime(r["start"])
            if r["expected"]:
                point.rate = r["attendance"] / r["expected"]
            points.append(point)
        return GetAttendanceTrendResponse(points=points)

    async def GetFairnessReport(self, request: GetFairnessReportRequest,
                                context: grpc.aio.ServicerContext) -> GetFairnessReportResponse:
        tenant = await request_tenant(request.tenant_id, context, allow_all=True)
        async with self.pool.acquire() as conn:
            report = await fairness(conn, None if tenant == "*" else tenant,
                                    self.settings.signal_k_anonymity)
        models = []
        for model in report:
            fairness_pb = ModelFairness(
                model_version=model["model_version"],
                limit=self.settings.engagement_max_parity_difference,
                groups=[GroupRate(group=g["group"], windows=g["windows"], flagged=g["flagged"],
                                  **({"rate": g["rate"]} if g["rate"] is not None else {}))
                        for g in model["groups"]])
            if model["parity_difference"] is not None:
                fairness_pb.parity_difference = model["parity_difference"]
            models.append(fairness_pb)
        return GetFairnessReportResponse(models=models)


__all__ = ["POLICY", "SERVICE_NAME", "AnalyticsServicer", "fairness"]
