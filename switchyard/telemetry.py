"""What a Switchyard process tells its operators: JSON logs, traces (continued across
Kafka and gRPC), and the business KPIs computed from the system of record.

Re-exported from ``_telemetry`` and ``_kpis``.
"""

from __future__ import annotations

from switchyard._telemetry import (
    JsonFormatter,
    TASKS_TERMINAL,
    configure_logging,
    configure_tracing,
    continue_trace,
    current_trace_context,
    exception_outline,
    loaded_trace_context,
    spans_recorded,
    stored_trace_context,
    task_context,
    task_id_var,
    tracer_provider,
)
from switchyard._kpis import (
    Economics,
    KpiExporter,
    MAX_TREND_BUCKETS,
    TenantKpis,
    inference_by_pool,
    kpi_trend,
    point_dict,
    total_cost,
    trend_buckets,
    trend_points,
)

__all__ = [
    "Economics",
    "JsonFormatter",
    "KpiExporter",
    "MAX_TREND_BUCKETS",
    "TASKS_TERMINAL",
    "TenantKpis",
    "configure_logging",
    "configure_tracing",
    "continue_trace",
    "current_trace_context",
    "exception_outline",
    "inference_by_pool",
    "kpi_trend",
    "loaded_trace_context",
    "point_dict",
    "spans_recorded",
    "stored_trace_context",
    "task_context",
    "task_id_var",
    "total_cost",
    "tracer_provider",
    "trend_buckets",
    "trend_points",
]
