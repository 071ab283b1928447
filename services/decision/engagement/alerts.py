"""Engagement alerts: what raises one, the per-classroom rate limit, and the intake record
that turns a raised alert into a review task.

* SUSTAINED_DISENGAGEMENT: a student with individual-support consent scored below
  ``signal_disengaged_below`` in ``signal_disengaged_windows`` consecutive hopping windows
  (raised once per streak: when the streak reaches that length).
* ATTENDANCE_ANOMALY: a closed tumbling window's attendance / expected students is below
  ``signal_attendance_below`` (once per session).

A classroom raises at most ``signal_alerts_per_class_per_hour`` alerts an hour; the others are
stored as suppressed, and the next raised alert says how many were held back
(``suppressed_before``). A raised alert is written to the ``intake`` topic as a JSON
submission of kind ``classroom_event`` whose idempotency key is the alert id, so a re-sent
alert becomes no second task.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg
from prometheus_client import Counter

from switchyard.access import SIGNATURE_HEADER, IntakeSigner
from switchyard.messaging import CONTENT_TYPE_HEADER, JSON_MEDIA_TYPE, TENANT_HEADER
from switchyard.v1 import AlertKind

SUSTAINED = AlertKind.ALERT_KIND_SUSTAINED_DISENGAGEMENT
ATTENDANCE = AlertKind.ALERT_KIND_ATTENDANCE_ANOMALY
EVENT_NAMES = {SUSTAINED: "sustained_disengagement", ATTENDANCE: "attendance_anomaly"}
ALERTS = Counter("switchyard_engagement_alerts_total", "Engagement alerts stored, by kind and "
                 "whether the per-class rate limit held them back.", ["kind", "suppressed"])
#: The submission kind a raised alert is filed as (the classroom_event pack reviews it).
INTAKE_KIND = "classroom_event"


def alert_id(*parts: str) -> str:
    """Deterministic: the same window and subject give the same id."""
    return "al_" + hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


def utc(t: float) -> datetime:
    return datetime.fromtimestamp(t, tz=timezone.utc)


@dataclass
class Alert:
    alert_id: str
    tenant_id: str
    classroom_id: str
    session_id: str
    kind: int
    window_start: float
    window_end: float
    windows: int
    score: float
    model_version: str
    detail: str
    subject: str = ""
    seat_id: str = ""
    attendance_rate: float | None = None
    drivers: list[dict[str, Any]] = field(default_factory=list)
    suppressed: bool = False
    suppressed_before: int = 0

    def document(self) -> dict[str, Any]:
        """The alert as the classroom_event pack reads it."""
        doc: dict[str, Any] = {
            "event": EVENT_NAMES[self.kind], "alert_id": self.alert_id,
            "class_id": self.classroom_id, "session": self.session_id,
            "room": self.classroom_id, "subject": self.subject, "seat": self.seat_id,
            "score": round(self.score, 6), "windows": self.windows,
            "window_start": utc(self.window_start).isoformat(),
            "window_end": utc(self.window_end).isoformat(),
            "model_version": self.model_version, "detail": self.detail,
            "drivers": self.drivers, "suppressed_before": self.suppressed_before,
        }
        if self.attendance_rate is not None:
            doc["attendance_rate"] = round(self.attendance_rate, 6)
        return doc

    def submission(self) -> bytes:
        """The intake record's value: a JSON Submission (docs/ingest.md)."""
        metadata = {"classroom": self.classroom_id, "session": self.session_id,
                    "alert_kind": EVENT_NAMES[self.kind]}
        if self.subject:
            metadata["subject"] = self.subject
        return json.dumps({
            "tenant_id": self.tenant_id, "idempotency_key": self.alert_id,
            "kind": INTAKE_KIND, "metadata": metadata,
            "document": {"content_type": JSON_MEDIA_TYPE, "body": self.document()},
        }, sort_keys=True).encode()


def intake_headers(alert: Alert, value: bytes, signing_keys: str) -> dict[str, str]:
    """Headers of the intake record; signed with the tenant's first intake signing key when
    the deployment signs intake records (ingest refuses unsigned ones then)."""
    headers = {CONTENT_TYPE_HEADER: JSON_MEDIA_TYPE, TENANT_HEADER: alert.tenant_id}
    for entry in filter(None, (e.strip() for e in signing_keys.split(","))):
        tenant, _, secret = entry.partition(":")
        if tenant == alert.tenant_id and secret:
            headers[SIGNATURE_HEADER] = IntakeSigner.sign(secret.encode(), value)
            break
    return headers


def attendance_alert(tenant: str, classroom: str, session: str, start: float, end: float,
                     attendance: int, expected: int, below: float,
                     model_version: str) -> Alert | None:
    """An attendance anomaly for a closed tumbling window, or None."""
    if expected <= 0:
        return None
    rate = attendance / expected
    if rate >= below:
        return None
    return Alert(
        alert_id(tenant, classroom, session, "attendance"), tenant, classroom, session,
        ATTENDANCE, start, end, 1, rate, model_version,
        f"{attendance} of {expected} expected students present ({rate:.0%}); below "
        f"{below:.0%}: check who is missing.", attendance_rate=rate,
        drivers=[{"feature": "attendance_rate", "value": round(rate, 6),
                  "contribution": round(rate - below, 6)}])


@dataclass(frozen=True)
class HoppingScore:
    """One individual student's score in one closed hopping window."""

    tenant: str
    classroom: str
    session: str
    subject: str
    seat_id: str
    start: float
    end: float
    p_engaged: float
    drivers: list[dict[str, Any]]


async def sustained_alerts(conn: asyncpg.Connection, scores: list[HoppingScore],
                           step_s: float, below: float, needed: int,
                           model_version: str) -> list[Alert]:
    """Sustained-disengagement alerts for the streaks these windows complete. Reads the
    student's earlier hopping windows from ``engagement_subject_windows`` (this batch's rows
    are already written in the caller's transaction)."""
    out = []
    for score in scores:
        if score.p_engaged >= below:
            continue
        since = utc(score.start - needed * step_s - step_s / 2)
        rows = await conn.fetch(
            "SELECT extract(epoch FROM window_start)::float8 AS start, p_engaged "
            "FROM engagement_subject_windows WHERE tenant_id = $1 AND classroom_id = $2 "
            "AND session_id = $3 AND kind = 2 AND subject = $4 AND window_start >= $5 "
            "AND window_start <= $6",
            score.tenant, score.classroom, score.session, score.subject, since,
            utc(score.start))
        disengaged = {round(r["start"], 3): r["p_engaged"] < below for r in rows}
        streak = 0
        while disengaged.get(round(score.start - streak * step_s, 3)):
            streak += 1
        if streak != needed:
            continue  # not yet, or the streak already raised its alert
        first = score.start - (needed - 1) * step_s
        out.append(Alert(
            alert_id(score.tenant, score.classroom, score.session, "sustained", score.subject,
                     f"{first:.3f}"),
            score.tenant, score.classroom, score.session, SUSTAINED, first, score.end,
            needed, score.p_engaged, model_version,
            f"Probability of engagement below {below:.2f} in {needed} consecutive windows "
            f"(now {score.p_engaged:.2f}): a check-in with the student is suggested.",
            subject=score.subject, seat_id=score.seat_id, drivers=score.drivers))
    return out


async def store_alerts(conn: asyncpg.Connection, candidates: list[Alert],
                       per_hour: int) -> list[Alert]:
    """Store candidates (an id already stored is skipped), applying the per-classroom hourly
    limit; returns the raised ones (to publish after the commit)."""
    raised: list[Alert] = []
    state: dict[tuple[str, str], list[int]] = {}  # classroom -> [raised last hour, held back]
    for alert in sorted(candidates, key=lambda a: (a.window_end, a.alert_id)):
        if await conn.fetchval("SELECT 1 FROM engagement_alerts WHERE alert_id = $1",
                               alert.alert_id):
            continue
        key = (alert.tenant_id, alert.classroom_id)
        if key not in state:
            row = await conn.fetchrow(
                "SELECT count(*) FILTER (WHERE NOT suppressed AND raised_at > "
                "clock_timestamp() - $3::interval) AS raised, count(*) FILTER (WHERE "
                "suppressed AND raised_at > coalesce((SELECT max(raised_at) FROM "
                "engagement_alerts WHERE tenant_id = $1 AND classroom_id = $2 AND NOT "
                "suppressed), '-infinity')) AS held FROM engagement_alerts "
                "WHERE tenant_id = $1 AND classroom_id = $2", *key, timedelta(hours=1))
            state[key] = [row["raised"], row["held"]]
        counts = state[key]
        if counts[0] >= per_hour:
            alert.suppressed = True
            counts[1] += 1
        else:
            alert.suppressed_before = counts[1]
            counts[0] += 1
            counts[1] = 0
            raised.append(alert)
        await conn.execute(
            "INSERT INTO engagement_alerts (alert_id, tenant_id, classroom_id, session_id, "
            "kind, subject, seat_id, window_start, window_end, windows, score, model_version, "
            "drivers, detail, suppressed, suppressed_before, document, raised_at) VALUES "
            "($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,clock_timestamp()) "
            "ON CONFLICT DO NOTHING",
            alert.alert_id, alert.tenant_id, alert.classroom_id, alert.session_id, alert.kind,
            alert.subject, alert.seat_id, utc(alert.window_start), utc(alert.window_end),
            alert.windows, alert.score, alert.model_version, json.dumps(alert.drivers),
            alert.detail, alert.suppressed, alert.suppressed_before,
            None if alert.suppressed else json.dumps(alert.document()))
        ALERTS.labels(EVENT_NAMES[alert.kind], str(alert.suppressed).lower()).inc()
    return raised


__all__ = ["ATTENDANCE", "INTAKE_KIND", "SUSTAINED", "Alert", "HoppingScore", "alert_id",
           "attendance_alert", "intake_headers", "store_alerts", "sustained_alerts"]
