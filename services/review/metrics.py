"""Review metrics: the admission backlog (depth, age, admission rate), SLA handling, verdicts.

Gauges are refreshed from PostgreSQL (see ``sla.SlaKeeper.refresh_gauges``), so they are right
whichever replica admitted the items; counters count what this process did. The admission
rate is ``rate(switchyard_review_admitted_total[1m])``.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

BACKLOG_DEPTH = Gauge(
    "switchyard_review_backlog_depth",
    "Escalations waiting for admission, by queue.",
    ["queue"],
)
BACKLOG_OLDEST_AGE = Gauge(
    "switchyard_review_backlog_oldest_age_seconds",
    "Age of the oldest escalation waiting for admission, by queue.",
    ["queue"],
)
OPEN_ITEMS = Gauge(
    "switchyard_review_open_items",
    "Admitted items not yet resolved (pending or claimed), by queue.",
    ["queue"],
)
LATE_ITEMS = Gauge(
    "switchyard_review_late_items",
    "Open items (backlogged, pending or claimed) past their SLA deadline, or that passed it "
    "once and were given a new one (expiry policy reassign), by queue.",
    ["queue"],
)
ADMITTED = Counter(
    "switchyard_review_admitted_total",
    "Review items admitted from the backlog, by queue and priority bucket.",
    ["queue", "priority"],
)
ADMISSION_WAIT = Histogram(
    "switchyard_review_admission_wait_seconds",
    "Time an escalation spent in the admission backlog.",
    ["queue"],
    buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600),
)
WITHDRAWN = Counter(
    "switchyard_review_withdrawn_total",
    "Items closed without a verdict because their task ended (e.g. a client cancelled it), "
    "or stored closed because it had ended before the escalation arrived; by queue.",
    ["queue"],
)
SLA_BUMPED = Counter(
    "switchyard_review_sla_bumped_total",
    "Items moved up a priority bucket because their SLA deadline neared.",
    ["queue"],
)
EXPIRED = Counter(
    "switchyard_review_expired_total",
    "Items whose SLA ran out, by the expiry policy applied.",
    ["queue", "policy"],
)
DEFAULT_ACTIONS = Counter(
    "switchyard_review_default_actions_total",
    "Items resolved by a tenant's default action, by trigger (storm, expiry) and action.",
    ["trigger", "action"],
)
VERDICTS = Counter(
    "switchyard_review_verdicts_total",
    "Reviewer verdicts, by verdict.",
    ["verdict"],
)
