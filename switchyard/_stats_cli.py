"""``switchyard stats``: the business KPIs as a live terminal view, or JSON for scripts, with
the reviewers' side (each review queue now: open, claimed, held back, past its SLA, the
oldest item's wait; verdicts in the last day per queue and per reviewer); ``--trend``: one
tenant's KPIs per time bucket (the operator console's charts)."""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone

import asyncpg
from rich.console import Group
from rich.live import Live
from rich.table import Table

from switchyard._db import create_pool
from switchyard._kpis import (
    REVIEW_WINDOW,
    Economics,
    KpiPoint,
    QueueFigures,
    ReviewerFigures,
    TenantKpis,
    as_dict,
    inference_by_pool,
    kpi_trend,
    point_dict,
    review_figures,
    tenant_kpis,
    trend_buckets,
)
from switchyard._settings import Settings
from switchyard._tasks_cli import data_console


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"


def render(all_kpis: list[TenantKpis], settings: Settings) -> Table:
    table = Table(title="Switchyard KPIs (from the system of record)", title_justify="left")
    for column in ("tenant", "tasks", "open", "blocked", "succeeded", "failed", "cancelled",
                   "automated", "intervention", "errors", "p50", "p95", "p99", "time saved",
                   "cost/automated", "escalations by reason"):
        table.add_column(column, justify="left" if column in ("tenant",
                                                              "escalations by reason")
                         else "right")
    for k in all_kpis:
        economics = Economics.of(k, settings)
        table.add_row(
            k.tenant_id, str(k.tasks), str(k.open), str(k.blocked), str(k.succeeded),
            str(k.failed), str(k.cancelled), f"{k.automation_rate:.0%}",
            f"{k.intervention_rate:.0%}", f"{k.error_rate:.1%}", _seconds(k.p50_seconds),
            _seconds(k.p95_seconds), _seconds(k.p99_seconds),
            f"{economics.minutes_saved / 60:.1f} h", f"{economics.cost_per_automated:.4f}",
            ", ".join(f"{r}={n}" for r, n in sorted(k.escalations_by_reason.items())) or "-",
        )
    return table


def render_pools(all_kpis: list[TenantKpis], settings: Settings) -> Table:
    """Inference cost by Triton pool: the tasks each pool routed (the primary, or the
    spill-over while the primary queued), at that pool's configured price per task."""
    table = Table(title="Inference by Triton pool (tasks routed x the pool's price per task)",
                  title_justify="left")
    for column in ("tenant", "pool", "tasks", "price/task", "cost", "cost/automated"):
        table.add_column(column, justify="left" if column in ("tenant", "pool") else "right")
    for k in all_kpis:
        for pool, figures in inference_by_pool(k, settings).items():
            table.add_row(k.tenant_id, pool, str(figures["tasks"]),
                          f"{figures['price_per_task']:.4f}", f"{figures['cost']:.4f}",
                          f"{figures['cost_per_automated']:.4f}")
    return table


_HOURS = f"{REVIEW_WINDOW.total_seconds() / 3600:.0f} h"


def render_queues(queues: list[QueueFigures]) -> Table:
    """Each review queue now, and the verdicts given on it in the window."""
    table = Table(title=f"Review queues (now; decided: the last {_HOURS})",
                  title_justify="left")
    for column in ("tenant", "queue", "pending", "claimed", "held back", "past SLA",
                   "oldest waiting", "decided", "p50 to verdict"):
        table.add_column(column, justify="left" if column in ("tenant", "queue") else "right")
    for q in queues:
        table.add_row(q.tenant_id, q.queue, str(q.pending), str(q.claimed), str(q.backlogged),
                      str(q.past_sla), _seconds(q.oldest_open_seconds), str(q.decided),
                      _seconds(q.p50_decide_seconds))
    return table


def render_reviewers(reviewers: list[ReviewerFigures]) -> Table:
    """Each reviewer's verdicts in the window."""
    table = Table(title=f"Reviewers (the last {_HOURS})", title_justify="left")
    for column in ("tenant", "reviewer", "verdicts", "approved", "modified", "rejected",
                   "p50 to verdict", "p50 claim to verdict"):
        table.add_column(column, justify="left" if column in ("tenant", "reviewer")
                         else "right")
    for r in reviewers:
        table.add_row(r.tenant_id, r.reviewer_id, str(r.verdicts), str(r.approved),
                      str(r.modified), str(r.rejected), _seconds(r.p50_decide_seconds),
                      _seconds(r.p50_handle_seconds))
    return table


@dataclass(frozen=True)
class _Snapshot:
    kpis: list[TenantKpis]
    queues: list[QueueFigures]
    reviewers: list[ReviewerFigures]


def _views(snapshot: _Snapshot, settings: Settings) -> Group:
    return Group(render(snapshot.kpis, settings), render_pools(snapshot.kpis, settings),
                 render_queues(snapshot.queues), render_reviewers(snapshot.reviewers))


async def _collect(settings: Settings, tenant: str | None) -> _Snapshot:
    pool = await create_pool(settings.replace(postgres_pool_min=1, postgres_pool_max=1))
    try:
        kpis = await tenant_kpis(pool)
        queues, reviewers = await review_figures(pool)
    finally:
        await pool.close()

    def mine(tenant_id: str) -> bool:
        return tenant is None or tenant_id == tenant
    return _Snapshot([k for k in kpis if mine(k.tenant_id)],
                     [q for q in queues if mine(q.tenant_id)],
                     [r for r in reviewers if mine(r.tenant_id)])


def stats(settings: Settings, as_json: bool, once: bool, interval_s: float,
          tenant: str | None) -> int:
    if as_json:
        snapshot = asyncio.run(_collect(settings, tenant))
        json.dump([{**as_dict(k, Economics.of(k, settings)),
                    "inference_by_pool": inference_by_pool(k, settings),
                    "review_queues": [_without_tenant(asdict(q)) for q in snapshot.queues
                                      if q.tenant_id == k.tenant_id],
                    "reviewers": [{**_without_tenant(asdict(r)), "verdicts": r.verdicts}
                                  for r in snapshot.reviewers if r.tenant_id == k.tenant_id]}
                   for k in snapshot.kpis], sys.stdout, indent=2)
        print()
        return 0
    console = data_console()
    if once or not console.is_terminal:  # a pipe or file: one snapshot, not a live view
        console.print(_views(asyncio.run(_collect(settings, tenant)), settings))
        return 0
    with Live(_views(_Snapshot([], [], []), settings), console=console,
              refresh_per_second=2) as live:
        try:
            while True:
                live.update(_views(asyncio.run(_collect(settings, tenant)), settings))
                asyncio.run(asyncio.sleep(interval_s))
        except KeyboardInterrupt:
            return 0


def _without_tenant(figures: dict[str, object]) -> dict[str, object]:
    """A queue's or reviewer's figures inside their tenant's object: no tenant_id again."""
    return {key: value for key, value in figures.items() if key != "tenant_id"}


async def _collect_trend(settings: Settings, tenant: str, window: timedelta,
                         bucket: timedelta) -> list[KpiPoint]:
    pool = await create_pool(settings.replace(postgres_pool_min=1, postgres_pool_max=1))
    try:
        return await kpi_trend(pool, settings, tenant, window, bucket)
    finally:
        await pool.close()


def trend(settings: Settings, tenant: str | None, window_h: float, bucket_m: float,
          as_json: bool) -> int:
    """Print the tenant's per-bucket KPIs; exit 2 on a bad request (no tenant, bad window)."""
    if not tenant:
        print("switchyard stats --trend: --tenant is required", file=sys.stderr)
        return 2
    window, bucket = timedelta(hours=window_h), timedelta(minutes=bucket_m)
    try:
        trend_buckets(datetime.now(timezone.utc), window, bucket)  # the limits, before connecting
    except ValueError as exc:
        print(f"switchyard stats --trend: {exc}", file=sys.stderr)
        return 2
    try:
        points = asyncio.run(_collect_trend(settings, tenant, window, bucket))
    except (OSError, RuntimeError, asyncpg.PostgresError) as exc:
        print(f"switchyard stats --trend: cannot read PostgreSQL: {exc}", file=sys.stderr)
        return 1
    if as_json:
        json.dump([point_dict(p) for p in points], sys.stdout, indent=2)
        print()
        return 0
    table = Table(title=f"KPIs of {tenant} per {bucket_m:g} min (from the system of record)",
                  title_justify="left")
    for column in ("bucket start (UTC)", "tasks", "automation", "p95", "cost/task",
                   "escalations/h by reason"):
        table.add_column(column, justify="left" if column.startswith(("bucket", "esc"))
                         else "right")
    for p in points:
        table.add_row(
            p.start.strftime("%Y-%m-%d %H:%M"), str(p.tasks),
            "-" if p.automation_rate is None else f"{p.automation_rate:.0%}",
            _seconds(p.p95_seconds),
            "-" if p.cost_per_task is None else f"{p.cost_per_task:.4f}",
            ", ".join(f"{r}={n:.1f}" for r, n in sorted(p.escalations_per_hour.items())) or "-")
    data_console().print(table)
    return 0
