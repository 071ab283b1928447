"""Business KPIs computed from the system of record, so they are exact and survive restarts.

Prometheus counters inside each service reset when a pod restarts and double-count on
redelivery; these figures come from PostgreSQL instead, are shown by ``switchyard stats`` and
exported as gauges by :class:`KpiExporter`, which every ingest replica runs but only one at a
time exports through: the one holding a PostgreSQL advisory lock (per schema, i.e. per
deployment). The others export no KPI series, so a dashboard that sums over pods counts each
figure once; when the exporting replica dies its session ends, the lock is released and
another replica takes over within ``SWITCHYARD_KPI_REFRESH_S``. The exporting replica queries
only while someone scrapes it: after ``SWITCHYARD_KPI_IDLE_AFTER_S`` without a scrape of its
metrics endpoint it clears the series and waits, and the next scrape wakes it.

:func:`kpi_trend` computes the same figures per time bucket for one tenant: the operator
console's KPI charts (the one console view that reads PostgreSQL directly, as
``switchyard stats`` does) and ``switchyard stats --trend``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg
from prometheus_client import REGISTRY, Counter, Gauge

from switchyard._db import connect
from switchyard._settings import Settings
from switchyard._taskstore import TERMINAL_SQL

__all__ = ["EXPORTING", "REFRESHES", "SCRAPES", "Economics", "KpiExporter", "ScrapeWatch",
           "KpiPoint", "MAX_TREND_BUCKETS", "MAX_TREND_WINDOW", "MIN_TREND_BUCKET", "TenantKpis",
           "QueueFigures", "REVIEW_WINDOW", "ReviewerFigures",
           "as_dict", "inference_by_pool", "kpi_trend", "point_dict", "reason_name",
           "review_figures", "tenant_kpis", "total_cost", "trend_buckets", "trend_points"]

log = logging.getLogger(__name__)
#: One KPI exporter per deployment: (class key, schema) for ``pg_try_advisory_lock(int, int)``.
_LOCK_CLASS = 0x5357_4B50  # "SWKP"


@dataclass(frozen=True)
class TenantKpis:
    tenant_id: str
    tasks: int
    open: int
    succeeded: int
    failed: int
    cancelled: int
    blocked: int
    automated: int            # succeeded without a review item
    human_reviewed: int       # tasks a person gave a verdict or an approval on
    escalations_by_reason: dict[str, int] = field(default_factory=dict)
    #: tasks whose document the spill-over Triton pool routed (decisions.pool); the rest are
    #: priced at the primary's price
    spilled: int = 0
    #: the verdicts and four-eyes approvals people gave (each priced at
    #: ``kpi_review_minutes_per_item``): an escalation withdrawn before anyone decided it
    #: (its task cancelled or decided otherwise) cost no reviewer's time
    reviews: int = 0
    p50_seconds: float | None = None
    p95_seconds: float | None = None
    p99_seconds: float | None = None

    @property
    def terminal(self) -> int:
        return self.succeeded + self.failed + self.cancelled

    @property
    def automation_rate(self) -> float:
        return self.automated / self.terminal if self.terminal else 0.0

    @property
    def intervention_rate(self) -> float:
        return self.human_reviewed / self.tasks if self.tasks else 0.0

    @property
    def error_rate(self) -> float:
        return self.failed / self.terminal if self.terminal else 0.0


@dataclass(frozen=True)
class Economics:
    """Time saved and cost per automated transaction from configurable unit costs."""

    minutes_saved: float
    cost_per_automated: float

    @classmethod
    def of(cls, kpis: TenantKpis, settings: Settings) -> Economics:
        minutes_saved = kpis.automated * settings.kpi_minutes_per_manual_task
        cost = total_cost(kpis.tasks, kpis.reviews, settings, kpis.spilled)
        return cls(minutes_saved, cost / kpis.automated if kpis.automated else 0.0)


def _routed(tasks: int, spilled: int) -> dict[str, int]:
    """Tasks per Triton pool (services/decision/pools.py's names): the spilled ones on the
    spill-over, every other one priced as the primary's."""
    return {"primary": tasks - spilled, "spill": spilled}


def _pool_prices(settings: Settings) -> dict[str, float]:
    """Inference price per task on each Triton pool (the ``kpi_*inference_cost`` settings)."""
    return {"primary": settings.kpi_inference_cost, "spill": settings.kpi_spill_inference_cost}


def inference_by_pool(kpis: TenantKpis, settings: Settings) -> dict[str, dict[str, float]]:
    """Per Triton pool: the tenant's tasks it routed, its price per task, their inference
    cost, and that cost per automated task (0 with none automated)."""
    prices = _pool_prices(settings)
    return {pool: {"tasks": tasks, "price_per_task": prices[pool],
                   "cost": tasks * prices[pool],
                   "cost_per_automated": (tasks * prices[pool] / kpis.automated
                                          if kpis.automated else 0.0)}
            for pool, tasks in _routed(kpis.tasks, kpis.spilled).items()}


def total_cost(tasks: int, reviews: int, settings: Settings, spilled: int = 0) -> float:
    """What ``tasks`` tasks cost with ``reviews`` verdicts and approvals given by people and
    ``spilled`` of them routed by the spill-over Triton pool: inference per task at its pool's
    price, compute per task, plus the reviewers' minutes (the ``kpi_*`` unit-cost settings).
    The one cost formula, for ``switchyard stats`` and the operator console's trend alike."""
    prices = _pool_prices(settings)
    inference = sum(n * prices[pool] for pool, n in _routed(tasks, spilled).items())
    review_minutes = reviews * settings.kpi_review_minutes_per_item
    return (inference + tasks * settings.kpi_compute_cost
            + review_minutes * settings.kpi_review_minute_cost)


#: The figures of a group of tasks (``t``: tasks, ``r``: the escalated ones with the
#: verdicts and approvals people gave on them), shared by the per-tenant totals and the
#: per-bucket trend so both count the same way.
_AGGREGATES = f"""
       count(*) AS tasks,
       count(*) FILTER (WHERE t.status IN ('QUEUED', 'IN_PROGRESS')) AS open,
       count(*) FILTER (WHERE t.status = 'SUCCEEDED') AS succeeded,
       count(*) FILTER (WHERE t.status = 'FAILED') AS failed,
       count(*) FILTER (WHERE t.status = 'CANCELLED') AS cancelled,
       count(*) FILTER (WHERE t.status = 'BLOCKED') AS blocked,
       count(*) FILTER (WHERE t.status = 'SUCCEEDED' AND r.task_id IS NULL) AS automated,
       count(*) FILTER (WHERE r.reviews > 0) AS human_reviewed,
       coalesce(sum(r.reviews), 0)::int AS reviews,
       count(*) FILTER (WHERE d.pool = 'spill') AS spilled,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM t.updated_at - t.created_at))
           FILTER (WHERE t.status IN {TERMINAL_SQL}) AS p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM t.updated_at - t.created_at))
           FILTER (WHERE t.status IN {TERMINAL_SQL}) AS p95,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM t.updated_at - t.created_at))
           FILTER (WHERE t.status IN {TERMINAL_SQL}) AS p99"""

#: Per escalated task, the verdicts and four-eyes approvals people gave on its review items
#: (0 when every item was withdrawn undecided); ``{where}``: a filter on the items.
_REVIEWED = """
SELECT i.task_id, count(p.task_id) AS reviews
  FROM (SELECT DISTINCT task_id FROM review_items {where}) i
       LEFT JOIN (SELECT task_id FROM review_verdicts
                  UNION ALL SELECT task_id FROM review_approvals) p ON p.task_id = i.task_id
 GROUP BY i.task_id"""

_QUERY = f"""
WITH reviewed AS ({_REVIEWED.format(where='')})
SELECT t.tenant_id, {_AGGREGATES}
  FROM tasks t LEFT JOIN reviewed r ON r.task_id = t.task_id
       LEFT JOIN decisions d ON d.task_id = t.task_id AND d.source = 'MODEL'
 GROUP BY t.tenant_id ORDER BY t.tenant_id
"""


async def tenant_kpis(conn: asyncpg.Connection | asyncpg.Pool) -> list[TenantKpis]:
    reasons: dict[str, dict[str, int]] = {}
    for row in await conn.fetch("SELECT tenant_id, reason, count(*) AS n FROM review_items "
                                "GROUP BY tenant_id, reason"):
        reasons.setdefault(row["tenant_id"], {})[reason_name(row["reason"])] = row["n"]
    return [
        TenantKpis(
            tenant_id=row["tenant_id"], tasks=row["tasks"], open=row["open"],
            succeeded=row["succeeded"], failed=row["failed"], cancelled=row["cancelled"],
            blocked=row["blocked"], automated=row["automated"],
            human_reviewed=row["human_reviewed"], spilled=row["spilled"],
            reviews=row["reviews"],
            escalations_by_reason=reasons.get(row["tenant_id"], {}),
            p50_seconds=row["p50"], p95_seconds=row["p95"], p99_seconds=row["p99"],
        )
        for row in await conn.fetch(_QUERY)
    ]


def reason_name(stored: str) -> str:
    """Review items store the reason's short name (``POLICY``); KPIs label it in lower case."""
    return stored.lower()


# -- the reviewers' side -------------------------------------------------------------------

#: How far back the reviewers' figures look (verdicts given, time to a verdict).
REVIEW_WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class QueueFigures:
    """One review queue of a tenant now, and what its reviewers decided in the last
    :data:`REVIEW_WINDOW`: what an operator staffing the queue looks at first."""

    tenant_id: str
    queue: str
    #: open items: waiting to be claimed (a claim whose lease ran out counts here, as the
    #: queue counts it), claimed now, and held back by the admission throttle
    pending: int
    claimed: int
    backlogged: int
    #: open items past their SLA deadline, or that passed it once and were given a new one
    #: (the ``reassign`` expiry policy): either way, late
    past_sla: int
    #: how long the oldest open item has waited since it was escalated
    oldest_open_seconds: float | None
    #: verdicts given in the window, and the median time from escalation to verdict
    decided: int
    p50_decide_seconds: float | None


@dataclass(frozen=True)
class ReviewerFigures:
    """What one reviewer (a key id, or a name where auth is off) decided in the window."""

    tenant_id: str
    reviewer_id: str
    approved: int
    modified: int
    rejected: int
    #: median time from the item's admission to the queue (when a reviewer could first claim
    #: it) to this reviewer's verdict: the admission throttle's wait is not the reviewer's
    p50_decide_seconds: float | None
    #: median handling time: from this reviewer's claim of the item to their verdict
    p50_handle_seconds: float | None = None

    @property
    def verdicts(self) -> int:
        return self.approved + self.modified + self.rejected


_QUEUES = """
SELECT i.tenant_id, i.queue,
       count(*) FILTER (WHERE i.state = 'PENDING'
                        OR (i.state = 'CLAIMED' AND i.lease_expires_at <= now())) AS pending,
       count(*) FILTER (WHERE i.state = 'CLAIMED' AND i.lease_expires_at > now()) AS claimed,
       count(*) FILTER (WHERE i.state = 'BACKLOGGED') AS backlogged,
       count(*) FILTER (WHERE i.state IN ('PENDING', 'CLAIMED', 'BACKLOGGED')
                        AND (i.sla_deadline < now() OR i.expiries > 0)) AS past_sla,
       extract(epoch FROM now() - min(i.created_at)
               FILTER (WHERE i.state IN ('PENDING', 'CLAIMED', 'BACKLOGGED'))) AS oldest_open,
       count(v.item_id) AS decided,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM v.decided_at - i.created_at))
           FILTER (WHERE v.item_id IS NOT NULL) AS p50_decide
  FROM review_items i
       LEFT JOIN review_verdicts v ON v.item_id = i.item_id AND v.decided_at >= $1
 WHERE i.state IN ('PENDING', 'CLAIMED', 'BACKLOGGED') OR v.item_id IS NOT NULL
 GROUP BY 1, 2 ORDER BY 1, 2
"""
_REVIEWERS = """
SELECT i.tenant_id, v.reviewer_id,
       count(*) FILTER (WHERE v.verdict = 'APPROVE') AS approved,
       count(*) FILTER (WHERE v.verdict = 'MODIFY') AS modified,
       count(*) FILTER (WHERE v.verdict = 'REJECT') AS rejected,
       percentile_cont(0.5) WITHIN GROUP (
           ORDER BY extract(epoch FROM v.decided_at - COALESCE(i.admitted_at, i.created_at)))
           AS p50_decide,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM v.decided_at - v.claimed_at))
           FILTER (WHERE v.claimed_at IS NOT NULL) AS p50_handle
  FROM review_verdicts v JOIN review_items i ON i.item_id = v.item_id
 WHERE v.decided_at >= $1
 GROUP BY 1, 2 ORDER BY 1, 2
"""


async def review_figures(conn: asyncpg.Connection | asyncpg.Pool,
                         window: timedelta = REVIEW_WINDOW
                         ) -> tuple[list[QueueFigures], list[ReviewerFigures]]:
    """Every tenant's review queues now and its reviewers' verdicts in the last ``window``
    (a queue with nothing open and nothing decided in the window is left out)."""
    since = datetime.now(timezone.utc) - window
    queues = [QueueFigures(tenant_id=r["tenant_id"], queue=r["queue"], pending=r["pending"],
                           claimed=r["claimed"], backlogged=r["backlogged"],
                           past_sla=r["past_sla"],
                           oldest_open_seconds=_as_float(r["oldest_open"]),
                           decided=r["decided"], p50_decide_seconds=_as_float(r["p50_decide"]))
              for r in await conn.fetch(_QUEUES, since)]
    reviewers = [ReviewerFigures(tenant_id=r["tenant_id"], reviewer_id=r["reviewer_id"],
                                 approved=r["approved"], modified=r["modified"],
                                 rejected=r["rejected"],
                                 p50_decide_seconds=_as_float(r["p50_decide"]),
                                 p50_handle_seconds=_as_float(r["p50_handle"]))
                 for r in await conn.fetch(_REVIEWERS, since)]
    return queues, reviewers


def _as_float(value: Any) -> float | None:
    """A figure PostgreSQL computed (``extract`` gives numeric) as a float, or None."""
    return None if value is None else float(value)


def as_dict(kpis: TenantKpis, economics: Economics) -> dict[str, Any]:
    out = asdict(kpis)
    out.update(automation_rate=kpis.automation_rate, intervention_rate=kpis.intervention_rate,
               error_rate=kpis.error_rate, minutes_saved=economics.minutes_saved,
               cost_per_automated=economics.cost_per_automated)
    return out


# -- trends (the operator console's charts) -------------------------------------------------

#: Limits of a trend request, the same as DecisionService.GetModelHealth's.
MAX_TREND_WINDOW = timedelta(days=30)
MIN_TREND_BUCKET = timedelta(minutes=1)
MAX_TREND_BUCKETS = 500

# Tasks are bucketed by when they were created ($2: the first bucket's start, $3: the bucket
# width in seconds, $4: the end), review items by when they were escalated.
_TREND_QUERY = f"""
WITH reviewed AS ({_REVIEWED.format(where='WHERE tenant_id = $1')})
SELECT floor(extract(epoch FROM t.created_at - $2::timestamptz) / $3)::int AS bucket,
       {_AGGREGATES}
  FROM tasks t LEFT JOIN reviewed r ON r.task_id = t.task_id
       LEFT JOIN decisions d ON d.task_id = t.task_id AND d.source = 'MODEL'
 WHERE t.tenant_id = $1 AND t.created_at >= $2 AND t.created_at < $4
 GROUP BY 1 ORDER BY 1
"""
_TREND_REASONS = """
SELECT floor(extract(epoch FROM created_at - $2::timestamptz) / $3)::int AS bucket, reason,
       count(*) AS n
  FROM review_items
 WHERE tenant_id = $1 AND created_at >= $2 AND created_at < $4
 GROUP BY 1, 2
"""


@dataclass(frozen=True)
class KpiPoint:
    """The KPIs of the tasks a tenant created in one time bucket."""

    start: datetime
    tasks: int
    terminal: int
    automated: int
    human_reviewed: int
    automation_rate: float | None      # None: no task of the bucket has finished yet
    p95_seconds: float | None          # end-to-end, of the bucket's finished tasks
    cost_per_task: float | None        # total_cost / tasks; None without tasks
    escalations_per_hour: dict[str, float] = field(default_factory=dict)  # by reason


def trend_buckets(end: datetime, window: timedelta, bucket: timedelta) -> list[datetime]:
    """The starts of the buckets covering ``window`` up to ``end`` (the last one ends at
    ``end``); a ValueError names the limit a request breaks."""
    if bucket < MIN_TREND_BUCKET:
        raise ValueError(f"bucket: at least {MIN_TREND_BUCKET.total_seconds():.0f} seconds")
    if window <= timedelta(0) or window > MAX_TREND_WINDOW:
        raise ValueError(f"window: more than 0 and at most {MAX_TREND_WINDOW.days} days")
    count = math.ceil(window / bucket)
    if count > MAX_TREND_BUCKETS:
        raise ValueError(f"window / bucket: at most {MAX_TREND_BUCKETS} buckets "
                         f"(asked for {count})")
    first = end - count * bucket
    return [first + i * bucket for i in range(count)]


def trend_points(starts: list[datetime], bucket: timedelta, rows: Iterable[Mapping[str, Any]],
                 reason_rows: Iterable[Mapping[str, Any]], settings: Settings
                 ) -> list[KpiPoint]:
    """One point per bucket (empty buckets too, so a chart's time axis has no gaps) from the
    rows of the trend queries, keyed by bucket index."""
    by_bucket = {row["bucket"]: row for row in rows}
    hours = bucket.total_seconds() / 3600
    reasons: dict[int, dict[str, float]] = {}
    for row in reason_rows:
        reasons.setdefault(row["bucket"], {})[reason_name(row["reason"])] = row["n"] / hours
    points = []
    for index, start in enumerate(starts):
        row = by_bucket.get(index)
        tasks = row["tasks"] if row else 0
        terminal = (row["succeeded"] + row["failed"] + row["cancelled"]) if row else 0
        automated = row["automated"] if row else 0
        reviewed = row["human_reviewed"] if row else 0
        reviews = row["reviews"] if row else 0
        spilled = row["spilled"] if row else 0
        points.append(KpiPoint(
            start=start, tasks=tasks, terminal=terminal, automated=automated,
            human_reviewed=reviewed,
            automation_rate=automated / terminal if terminal else None,
            p95_seconds=row["p95"] if row else None,
            cost_per_task=(total_cost(tasks, reviews, settings, spilled) / tasks
                           if tasks else None),
            escalations_per_hour=reasons.get(index, {})))
    return points


async def kpi_trend(conn: asyncpg.Connection | asyncpg.Pool, settings: Settings,
                    tenant_id: str, window: timedelta, bucket: timedelta,
                    end: datetime | None = None) -> list[KpiPoint]:
    """A tenant's KPIs per ``bucket`` over the last ``window`` (automation rate, P95
    end-to-end latency, escalations per hour by reason, cost per task), from PostgreSQL with
    the same aggregates and cost formula as :func:`tenant_kpis` and :class:`Economics`."""
    end = end or datetime.now(timezone.utc)
    starts = trend_buckets(end, window, bucket)
    args = (tenant_id, starts[0], bucket.total_seconds(), end)
    rows = await conn.fetch(_TREND_QUERY, *args)
    reason_rows = await conn.fetch(_TREND_REASONS, *args)
    return trend_points(starts, bucket, rows, reason_rows, settings)


def point_dict(point: KpiPoint) -> dict[str, Any]:
    out = asdict(point)
    out["start"] = point.start.isoformat().replace("+00:00", "Z")
    return out


# -- Prometheus export ---------------------------------------------------------------------

def _gauges() -> dict[str, Any]:
    labels = ["tenant"]
    return {
        "tasks": Gauge("switchyard_kpi_tasks", "Tasks by status (system of record).",
                       ["tenant", "status"]),
        "automation_rate": Gauge("switchyard_kpi_automation_rate",
                                 "Share of terminal tasks completed without a person.", labels),
        "intervention_rate": Gauge("switchyard_kpi_human_intervention_rate",
                                   "Share of tasks a person reviewed.", labels),
        "error_rate": Gauge("switchyard_kpi_error_rate", "Share of terminal tasks FAILED.",
                            labels),
        "escalations": Gauge("switchyard_kpi_escalations", "Review items by reason.",
                             ["tenant", "reason"]),
        "minutes_saved": Gauge("switchyard_kpi_minutes_saved",
                               "Manual minutes saved by automation.", labels),
        "cost": Gauge("switchyard_kpi_cost_per_automated_transaction",
                      "Inference, compute and review cost per automated task.", labels),
        "e2e": Gauge("switchyard_kpi_end_to_end_seconds",
                     "End-to-end latency quantiles of terminal tasks.", ["tenant", "quantile"]),
        "letters_open": Gauge("switchyard_kpi_dead_letters_open",
                              "Dead letters neither replayed nor resolved (tenant '*': those "
                              "whose record named no tenant).", labels),
        "letter_age": Gauge("switchyard_kpi_dead_letter_oldest_open_seconds",
                            "Age of the oldest open dead letter.", labels),
    }


#: Open dead letters per tenant (the partial index dead_letters_open serves it); a letter
#: whose record named no tenant is the operators' ("*", as in the audit chain).
_OPEN_LETTERS = """
SELECT coalesce(nullif(tenant_id, ''), '*') AS tenant, count(*) AS n,
       extract(epoch FROM now() - min(failed_at))::float8 AS oldest_s
  FROM dead_letters WHERE replayed_at IS NULL AND resolved_at IS NULL
 GROUP BY 1
"""


class KpiExporter:
    """Refreshes the KPI gauges from PostgreSQL every ``interval_s`` while this replica holds
    the deployment's KPI lock; exports none otherwise (see the module docstring)."""

    def __init__(self, settings: Settings, pool: asyncpg.Pool) -> None:
        self.settings = settings
        self.pool = pool
        self.interval_s = settings.kpi_refresh_s
        self.idle_after_s = settings.kpi_idle_after_s
        self.gauges = _gauges()
        # A scrape collects in registration order, and the one that wakes an idle exporter
        # must not show the series its wake-up refreshes meanwhile (they are back from the
        # scrape after): the scrape watch is collected after these gauges.
        REGISTRY.unregister(SCRAPES)
        REGISTRY.register(SCRAPES)
        self.exporting = False
        #: tenants that had open dead letters since the series were last cleared
        self._letter_tenants: set[str] = set()

    async def refresh(self, conn: asyncpg.Connection | asyncpg.Pool | None = None
                      ) -> list[TenantKpis]:
        all_kpis = await tenant_kpis(conn or self.pool)
        g = self.gauges
        for k in all_kpis:
            for status, value in (("open", k.open), ("succeeded", k.succeeded),
                                  ("failed", k.failed), ("cancelled", k.cancelled),
                                  ("blocked", k.blocked)):
                g["tasks"].labels(k.tenant_id, status).set(value)
            g["automation_rate"].labels(k.tenant_id).set(k.automation_rate)
            g["intervention_rate"].labels(k.tenant_id).set(k.intervention_rate)
            g["error_rate"].labels(k.tenant_id).set(k.error_rate)
            for reason, count in k.escalations_by_reason.items():
                g["escalations"].labels(k.tenant_id, reason).set(count)
            economics = Economics.of(k, self.settings)
            g["minutes_saved"].labels(k.tenant_id).set(economics.minutes_saved)
            g["cost"].labels(k.tenant_id).set(economics.cost_per_automated)
            for quantile, value in (("0.5", k.p50_seconds), ("0.95", k.p95_seconds),
                                    ("0.99", k.p99_seconds)):
                if value is not None:
                    g["e2e"].labels(k.tenant_id, quantile).set(value)
        await self._refresh_open_letters(conn or self.pool)
        return all_kpis

    async def _refresh_open_letters(self, conn: asyncpg.Connection | asyncpg.Pool) -> None:
        """The operators' queue per tenant; a tenant whose last open letter was replayed or
        resolved shows 0 rather than its last count."""
        rows = {row["tenant"]: row for row in await conn.fetch(_OPEN_LETTERS)}
        for tenant in self._letter_tenants - rows.keys():
            self.gauges["letters_open"].labels(tenant).set(0)
            self.gauges["letter_age"].labels(tenant).set(0)
        for tenant, row in rows.items():
            self.gauges["letters_open"].labels(tenant).set(row["n"])
            self.gauges["letter_age"].labels(tenant).set(row["oldest_s"])
        self._letter_tenants |= rows.keys()

    def clear(self) -> None:
        """Export no KPI series (another replica exports them)."""
        self.clear_series()
        EXPORTING.set(0)
        self.exporting = False

    def clear_series(self) -> None:
        for gauge in self.gauges.values():
            gauge.clear()
        self._letter_tenants.clear()

    async def run(self) -> None:
        """Try to become the deployment's exporter every ``interval_s``; export while it is."""
        while True:
            try:
                await self._export_while_leading()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("KPI export failed, retrying: %r", exc)
            finally:
                self.clear()
            await asyncio.sleep(self.interval_s)

    async def _export_while_leading(self) -> None:
        # A connection of its own: the session-level lock lives as long as it does, and a
        # replica that dies (or loses PostgreSQL) releases it with its session.
        conn = await connect(self.settings)
        try:
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1, hashtext("
                                       "current_schema()))", _LOCK_CLASS):
                return
            log.info("exporting the business KPIs for this deployment")
            self.exporting = True
            EXPORTING.set(1)
            await self._refresh_while_scraped(conn)
        finally:
            await conn.close()

    async def _refresh_while_scraped(self, conn: asyncpg.Connection) -> None:
        """Every ``interval_s`` while the metrics endpoint was scraped in the last
        ``idle_after_s``; otherwise no series and no query until the next scrape."""
        loop, woken = asyncio.get_running_loop(), asyncio.Event()
        SCRAPES.on_scrape(lambda: loop.call_soon_threadsafe(woken.set))
        try:
            refreshing = False
            while True:
                if SCRAPES.seen_within(self.idle_after_s):
                    refreshing = True
                    await self.refresh(conn)
                    REFRESHES.inc()
                    await asyncio.sleep(self.interval_s)
                    continue
                if refreshing:
                    log.info("no scrape of the KPIs for %.0f s: not refreshing them until the "
                             "next one", self.idle_after_s)
                    self.clear_series()
                    refreshing = False
                woken.clear()
                await woken.wait()
        finally:
            SCRAPES.on_scrape(None)


class ScrapeWatch:
    """A collector that exports nothing and notes each scrape of this process's registry:
    how the KPI exporter knows whether anyone reads its gauges. ``collect`` runs on the
    metrics server's thread; the callback hands the news to the event loop."""

    def __init__(self) -> None:
        self.last: float | None = None
        self._callback: Callable[[], object] | None = None

    def describe(self) -> list[Any]:
        return []  # so registering it is not taken for a scrape

    def collect(self) -> list[Any]:
        self.last = time.monotonic()
        if (callback := self._callback) is not None:
            try:
                callback()
            except RuntimeError:  # the exporter's loop closed under a late scrape
                pass
        return []

    def on_scrape(self, callback: Callable[[], object] | None) -> None:
        self._callback = callback

    def seen_within(self, seconds: float) -> bool:
        return self.last is not None and time.monotonic() - self.last <= seconds


SCRAPES = ScrapeWatch()
REGISTRY.register(SCRAPES)
REFRESHES = Counter("switchyard_kpi_exporter_refreshes",
                    "KPI refreshes from PostgreSQL by this replica's exporter (only while its "
                    "metrics are scraped).")


EXPORTING = Gauge("switchyard_kpi_exporter_active",
                  "1 on the one ingest replica that exports the KPI gauges, 0 on the others.")
