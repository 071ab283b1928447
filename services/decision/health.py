"""DecisionService.GetModelHealth: shadow agreement, input drift and agreement with reviewers
per time bucket.

Shadow agreement is read from ``decision_shadow_results`` (one row per task both router
versions scored, written by :mod:`services.decision.shadow`). Drift comes from
``decision_drift_samples``: :class:`DriftRecorder` keeps every PSI value a
:class:`~services.decision.drift.DriftMonitor` publishes, buffered in memory and written in
batches by a background loop, so the hot path never waits for PostgreSQL; a failed write is
logged (the samples are lost: they are evidence, not state) and decisions carry on.

Agreement with reviewers comes from ``decision_labels`` (services/decision/labels.py): each
verdict on an escalated task judges the models that decided it, as
:data:`HumanAgreementPoint`'s comment in the proto says; :class:`HumanAgreementGauges` keeps
the same figures over the last days as Prometheus gauges for alerting.

Buckets are aligned to the Unix epoch (a 1-hour bucket starts on the hour, UTC). Drift is
measured over every tenant's inputs (one monitor per model version), so the drift points are
the same for every caller; shadow points are the named tenant's, or every tenant's when an
operator key (tenant ``*``) names tenant ``*``. Samples older than
:data:`switchyard._retention.DRIFT_SAMPLE_DAYS` (30, the longest window GetModelHealth answers
for) are deleted by ``switchyard purge``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import asyncpg
from prometheus_client import Gauge

from services.decision.fairness import parity_by_version

from switchyard.rpc import FieldViolation
from switchyard.tasks import timestamp
from switchyard.v1 import (
    DriftPoint,
    GetModelHealthRequest,
    HumanAgreementPoint,
    ShadowAgreementPoint,
)

log = logging.getLogger(__name__)

DEFAULT_WINDOW = timedelta(hours=24)
MAX_WINDOW = timedelta(days=30)
DEFAULT_BUCKET = timedelta(hours=1)
MIN_BUCKET = timedelta(minutes=1)
MAX_BUCKETS = 500
#: Every tenant: what an operator key (tenant ``*``) may name as tenant_id.
ALL_TENANTS = "*"


@dataclass(frozen=True)
class Window:
    """A validated GetModelHealth range: from ``since`` to now, in buckets of ``bucket``."""

    since: datetime
    bucket: timedelta


def _duration(request: GetModelHealthRequest, name: str, default: timedelta
              ) -> timedelta | None:
    if not request.HasField(name):
        return default
    value = getattr(request, name)
    if not -999_999_999 <= value.nanos <= 999_999_999:
        return None
    return timedelta(seconds=value.seconds, microseconds=value.nanos // 1000)


def parse_window(request: GetModelHealthRequest,
                 now: datetime | None = None) -> Window | list[FieldViolation]:
    """The request's window and bucket, or every problem with them (field violations)."""
    problems: list[FieldViolation] = []
    try:
        window = _duration(request, "window", DEFAULT_WINDOW)
        bucket = _duration(request, "bucket", DEFAULT_BUCKET)
    except OverflowError:
        window = bucket = None
    if window is None or not timedelta(0) < window <= MAX_WINDOW:
        problems.append(FieldViolation("window", "must be more than 0 and at most 30 days "
                                                 "(unset means 24 hours)"))
    if bucket is None or bucket < MIN_BUCKET:
        problems.append(FieldViolation("bucket", "must be at least 1 minute (unset means "
                                                 "1 hour)"))
    elif window is not None and not problems and window / bucket > MAX_BUCKETS:
        problems.append(FieldViolation("bucket", f"the window holds more than {MAX_BUCKETS} "
                                                 "buckets of this width; choose a wider one"))
    if problems:
        return problems
    assert window is not None and bucket is not None
    return Window((now or datetime.now(timezone.utc)) - window, bucket)


_BUCKET_SQL = "to_timestamp(floor(extract(epoch FROM {column}) / $2) * $2)"


def _tenant_filter(tenant_id: str, params: list[object], column: str = "tenant_id") -> str:
    if tenant_id == ALL_TENANTS:
        return ""
    params.append(tenant_id)
    return f"AND {column} = ${len(params)}"


async def shadow_points(conn: asyncpg.Connection | asyncpg.Pool, tenant_id: str,
                        window: Window) -> list[ShadowAgreementPoint]:
    """Comparisons per model pair and bucket (``tenant_id`` ``*``: every tenant)."""
    params: list[object] = [window.since, window.bucket.total_seconds()]
    tenant_sql = _tenant_filter(tenant_id, params)
    rows = await conn.fetch(
        f"SELECT model_name, live_version, shadow_version, "
        f"{_BUCKET_SQL.format(column='recorded_at')} AS bucket_start, count(*) AS compared, "
        "count(*) FILTER (WHERE agree) AS agreed FROM decision_shadow_results "
        f"WHERE recorded_at >= $1 {tenant_sql} GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4",
        *params)
    return [ShadowAgreementPoint(
        model_name=r["model_name"], live_version=r["live_version"],
        shadow_version=r["shadow_version"], bucket_start=timestamp(r["bucket_start"]),
        compared=r["compared"], agreed=r["agreed"]) for r in rows]


async def drift_points(conn: asyncpg.Connection | asyncpg.Pool, window: Window
                       ) -> list[DriftPoint]:
    """The highest PSI and the sample count per model, feature and bucket."""
    rows = await conn.fetch(
        f"SELECT model, version, feature, {_BUCKET_SQL.format(column='measured_at')} "
        "AS bucket_start, max(psi) AS psi, count(*) AS samples FROM decision_drift_samples "
        "WHERE measured_at >= $1 GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4",
        window.since, window.bucket.total_seconds())
    return [DriftPoint(model_name=r["model"], version=r["version"], feature=r["feature"],
                       bucket_start=timestamp(r["bucket_start"]), psi=r["psi"],
                       samples=r["samples"]) for r in rows]


# One row per (labelled task, model judged): its version, whether the person agreed, and the
# probability the model gave the answer it chose (services/decision/labels.py:output_kind).
_JUDGEMENTS_SQL = """
SELECT l.labelled_at, o.key AS model_name, l.models ->> o.key AS version,
       CASE WHEN o.value ->> 2 = 'type' THEN o.value ->> 0 = l.label
            ELSE ((o.value ->> 1)::float8 >= 0.5) = (l.verdict = 'APPROVE') END AS agreed,
       CASE WHEN o.value ->> 2 = 'type' THEN (o.value ->> 1)::float8
            ELSE greatest((o.value ->> 1)::float8, 1 - (o.value ->> 1)::float8) END AS confidence
FROM decision_labels l CROSS JOIN LATERAL jsonb_each(l.outputs) AS o
WHERE l.labelled_at >= $1 {tenant_sql}
  AND (o.value ->> 2 = 'binary' OR (o.value ->> 2 = 'type' AND l.label IS NOT NULL))
"""


async def human_points(conn: asyncpg.Connection | asyncpg.Pool, tenant_id: str,
                       window: Window) -> list[HumanAgreementPoint]:
    """Reviewers' verdicts that judged each model version, per bucket (``tenant_id`` ``*``:
    every tenant)."""
    params: list[object] = [window.since, window.bucket.total_seconds()]
    judgements = _JUDGEMENTS_SQL.format(tenant_sql=_tenant_filter(tenant_id, params,
                                                                  "l.tenant_id"))
    rows = await conn.fetch(
        f"SELECT model_name, version, {_BUCKET_SQL.format(column='labelled_at')} AS "
        "bucket_start, count(*) AS judged, count(*) FILTER (WHERE agreed) AS agreed, "
        f"avg(confidence) AS mean_confidence FROM ({judgements}) j "
        "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3", *params)
    return [HumanAgreementPoint(
        model_name=r["model_name"], version=r["version"] or "",
        bucket_start=timestamp(r["bucket_start"]), judged=r["judged"], agreed=r["agreed"],
        mean_confidence=float(r["mean_confidence"])) for r in rows]


async def agreement_since(conn: asyncpg.Connection | asyncpg.Pool, model: str,
                          versions: list[str], since: datetime, tenants: list[str] | None = None
                          ) -> dict[str, tuple[int, int]]:
    """``version -> (judged, agreed)`` of ``model`` by the verdicts given since ``since`` (on
    ``tenants``' tasks only, when named): a canary's evidence (services/decision/rollouts.py)."""
    params: list[object] = [since, model, versions]
    tenant_sql = "AND l.tenant_id = ANY($4::text[])" if tenants else ""
    if tenants:
        params.append(tenants)
    rows = await conn.fetch(
        "SELECT version, count(*) AS judged, count(*) FILTER (WHERE agreed) AS agreed FROM ("
        f"{_JUDGEMENTS_SQL.format(tenant_sql=tenant_sql)}) j WHERE model_name = $2 AND "
        "version = ANY($3::text[]) GROUP BY 1", *params)
    return {r["version"]: (r["judged"], r["agreed"]) for r in rows}


HUMAN_AGREEMENT = Gauge(
    "switchyard_model_human_agreement_ratio",
    "Share of the reviewers' verdicts of the last SWITCHYARD_MODEL_EVALUATION_DAYS that "
    "agreed with the model version (escalated tasks only).",
    ["model", "version"],
)
HUMAN_JUDGED = Gauge(
    "switchyard_model_human_judged",
    "Reviewers' verdicts of the last SWITCHYARD_MODEL_EVALUATION_DAYS that judged the model "
    "version.",
    ["model", "version"],
)
CALIBRATION_GAP = Gauge(
    "switchyard_model_calibration_gap",
    "Mean confidence of the model version minus its agreement with reviewers over the last "
    "SWITCHYARD_MODEL_EVALUATION_DAYS (positive: over-confident).",
    ["model", "version"],
)


PARITY_DIFFERENCE = Gauge(
    "switchyard_model_parity_difference",
    "Demographic parity difference of the model version over the last "
    "SWITCHYARD_MODEL_EVALUATION_DAYS: largest minus smallest share of tasks decided without a "
    "person among the groups of a pack's protected attribute (services/decision/fairness.py).",
    ["model", "version", "pack", "attribute"],
)


class HumanAgreementGauges:
    """Keeps the live-accuracy gauges current: every ``every_s`` one aggregate query over the
    verdicts of the last ``days`` (every tenant), so alert rules can watch each model version
    against people. Every replica reports the same figures (aggregate with ``max``)."""

    def __init__(self, pool: asyncpg.Pool, days: int, every_s: float,
                 min_group_samples: int = 30) -> None:
        self.pool, self.days, self.every_s = pool, days, every_s
        self.min_group_samples = min_group_samples
        self._shown: set[tuple[str, str]] = set()
        self._parities: set[tuple[str, str, str, str]] = set()

    async def refresh(self) -> int:
        """Set the gauges from PostgreSQL; returns how many model versions they show."""
        rows = await self.pool.fetch(
            "SELECT model_name, version, count(*) AS judged, count(*) FILTER (WHERE agreed) "
            f"AS agreed, avg(confidence) AS confidence FROM ({_JUDGEMENTS_SQL.format(tenant_sql='')}"
            ") j GROUP BY 1, 2", datetime.now(timezone.utc) - timedelta(days=self.days))
        shown = set()
        for r in rows:
            key = (r["model_name"], r["version"] or "")
            ratio = r["agreed"] / r["judged"]
            HUMAN_AGREEMENT.labels(*key).set(ratio)
            HUMAN_JUDGED.labels(*key).set(r["judged"])
            CALIBRATION_GAP.labels(*key).set(float(r["confidence"]) - ratio)
            shown.add(key)
        for key in self._shown - shown:  # a version no verdict judges any more
            for gauge in (HUMAN_AGREEMENT, HUMAN_JUDGED, CALIBRATION_GAP):
                gauge.remove(*key)
        self._shown = shown
        # fairness: each model version's parity per pack attribute (enough tasks per group)
        parities = set()
        for figure in await parity_by_version(
                self.pool, datetime.now(timezone.utc) - timedelta(days=self.days),
                self.min_group_samples):
            if figure.difference is None:
                continue
            key4 = (figure.model, figure.version, figure.pack, figure.attribute)
            PARITY_DIFFERENCE.labels(*key4).set(figure.difference)
            parities.add(key4)
        for key4 in self._parities - parities:
            PARITY_DIFFERENCE.remove(*key4)
        self._parities = parities
        return len(shown)

    async def run(self) -> None:
        """Refresh forever (a supervised background loop of the decision service)."""
        while True:
            await self.refresh()
            await asyncio.sleep(self.every_s)


class DriftRecorder:
    """Keeps what the drift monitors publish in ``decision_drift_samples``.

    :meth:`record` only appends to a bounded buffer (the monitors publish from the decision
    path); :meth:`run` writes the buffer every ``flush_s``. When the buffer is full (the
    database has been away for long), the oldest samples are dropped, counted in the log.
    """

    def __init__(self, pool: asyncpg.Pool, flush_s: float = 1.0, limit: int = 10_000) -> None:
        self.pool = pool
        self.flush_s = flush_s
        self.limit = limit
        self._rows: list[tuple[str, str, str, float, datetime]] = []
        self._dropped = 0

    def record(self, model: str, version: str, values: dict[str, float]) -> None:
        now = datetime.now(timezone.utc)
        self._rows.extend((model, version, feature, float(psi), now)
                          for feature, psi in sorted(values.items()))
        if len(self._rows) > self.limit:
            self._dropped += len(self._rows) - self.limit
            del self._rows[:len(self._rows) - self.limit]

    async def flush(self) -> int:
        """Write the buffered samples; returns how many were written (0 on failure)."""
        if self._dropped:
            log.warning("drift samples: %d dropped while the buffer was full", self._dropped)
            self._dropped = 0
        if not self._rows:
            return 0
        rows, self._rows = self._rows, []
        try:
            await self.pool.executemany(
                "INSERT INTO decision_drift_samples (model, version, feature, psi, "
                "measured_at) VALUES ($1, $2, $3, $4, $5)", rows)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("could not record %d drift sample(s): %r", len(rows), exc)
            return 0
        return len(rows)

    async def run(self) -> None:
        """Flush forever (a background loop of the decision service)."""
        while True:
            await asyncio.sleep(self.flush_s)
            await self.flush()

    async def close(self) -> None:
        """The last flush, when the service stops."""
        await self.flush()


__all__ = ["ALL_TENANTS", "DriftRecorder", "HumanAgreementGauges", "PARITY_DIFFERENCE", "Window",
           "agreement_since",
           "drift_points",
           "human_points", "parse_window", "shadow_points"]
