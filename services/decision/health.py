"""DecisionService.GetModelHealth: shadow agreement and input drift per time bucket.

Shadow agreement is read from ``decision_shadow_results`` (one row per task both router
versions scored, written by :mod:`services.decision.shadow`). Drift comes from
``decision_drift_samples``: :class:`DriftRecorder` keeps every PSI value a
:class:`~services.decision.drift.DriftMonitor` publishes, buffered in memory and written in
batches by a background loop, so the hot path never waits for PostgreSQL; a failed write is
logged (the samples are lost: they are evidence, not state) and decisions carry on.

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

from switchyard.rpc import FieldViolation
from switchyard.tasks import timestamp
from switchyard.v1 import DriftPoint, GetModelHealthRequest, ShadowAgreementPoint

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


async def shadow_points(conn: asyncpg.Connection | asyncpg.Pool, tenant_id: str,
                        window: Window) -> list[ShadowAgreementPoint]:
    """Comparisons per model pair and bucket (``tenant_id`` ``*``: every tenant)."""
    params: list[object] = [window.since, window.bucket.total_seconds()]
    tenant_sql = ""
    if tenant_id != ALL_TENANTS:
        params.append(tenant_id)
        tenant_sql = "AND tenant_id = $3"
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


__all__ = ["ALL_TENANTS", "DriftRecorder", "Window", "drift_points", "parse_window",
           "shadow_points"]
