"""Backpressure: refuse new work while the pipeline's backlog is over its limit.

What is measured: tasks in PostgreSQL the machines have yet to finish, status QUEUED
(accepted, waiting for the decision service) or IN_PROGRESS (being decided, or decided and
waiting for or in the executor). That is the consumer lag of the ``tasks`` and ``decisions``
topics together, counted from the system of record: when the executor is the slower stage,
decisions pile up in front of it, and a count of QUEUED tasks alone would keep admitting
work without bound (and a burst's decisions would fill the executor's fair read-ahead,
docs/architecture.md#fairness). Tasks BLOCKED on a person or an open circuit breaker do not
count: a review queue or an outage downstream must not close the door. Kafka's own lag (end
offset minus committed offset) is not used because Tansu reports wrong end offsets
(docs/architecture.md); a count in PostgreSQL is exact on any broker.

The count is bounded (``LIMIT max_backlog``), so it costs at most the limit's worth of rows
however large the backlog grows, and it is refreshed in the background every
``ingest_backlog_check_s`` so submissions never wait on it.

Per tenant as well as global: a noisy neighbour must not fill the backlog that everyone's
tasks wait behind. The count is kept per tenant, and a tenant holding its *share* of the
limit is refused even while the whole backlog is under it. A tenant's share is the limit
split by weight (``tenant_weights``; 1 unless set) among the tenants that have work waiting,
itself included (``switchyard.runtime.weighted_share``, as the decision service's
micro-batchers share their queues): a tenant alone may fill the whole limit, two equal
tenants half each, and a tenant that arrives while another fills the backlog gets its share
at once, while the other is refused until it has drained to its own. The whole limit still refuses everyone. The
intake topic's consumer pauses on the whole limit only (its records share partitions across
tenants; holding one tenant's would hold everyone's).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

import asyncpg
from prometheus_client import Gauge

from switchyard.messaging import TRANSIENT_ERRORS
from switchyard.runtime import weighted_share

log = logging.getLogger(__name__)

BACKLOG = Gauge(
    "switchyard_ingest_backlog",
    "Tasks the machines have yet to finish (QUEUED or IN_PROGRESS), counted up to the "
    "backpressure limit.",
)
TENANT_BACKLOG = Gauge(
    "switchyard_ingest_tenant_backlog",
    "A tenant's tasks the machines have yet to finish (of those counted for the "
    "backpressure limit).", ["tenant"],
)


class Overloaded(Exception):
    """The backlog (or a tenant's share of it) is full; ``retry_after_ms`` is the hint for the
    caller."""

    def __init__(self, message: str, retry_after_ms: int) -> None:
        super().__init__(f"{message}; retry after {retry_after_ms} ms")
        self.retry_after_ms = retry_after_ms


class Backlog:
    def __init__(self, pool: asyncpg.Pool, limit: int, interval_s: float,
                 retry_after_ms: int, weights: Mapping[str, float] | None = None) -> None:
        self.pool = pool
        self.limit = limit
        self.interval_s = interval_s
        self.retry_after_ms = retry_after_ms
        self.weights = dict(weights or {})
        self.value = 0
        self.by_tenant: dict[str, int] = {}

    async def refresh(self) -> int:
        if self.limit <= 0:
            return 0
        rows = await self.pool.fetch(
            "SELECT tenant_id, count(*) AS waiting FROM (SELECT tenant_id FROM tasks "
            "WHERE status IN ('QUEUED', 'IN_PROGRESS') LIMIT $1) q GROUP BY tenant_id",
            self.limit)
        counted = {row["tenant_id"]: int(row["waiting"]) for row in rows}
        for gone in set(self.by_tenant) - set(counted):
            TENANT_BACKLOG.labels(gone).set(0)
        self.by_tenant = counted
        self.value = sum(counted.values())
        BACKLOG.set(self.value)
        for tenant, waiting in counted.items():
            TENANT_BACKLOG.labels(tenant).set(waiting)
        return self.value

    @property
    def over(self) -> bool:
        """The whole backlog is at the limit."""
        return self.limit > 0 and self.value >= self.limit

    def share(self, tenant: str) -> int:
        """``tenant``'s share of the limit: split by weight among the tenants with work
        waiting, itself included."""
        return weighted_share(self.limit, tenant, self.weights, self.by_tenant)

    def refusal(self, tenant: str) -> Overloaded | None:
        """Why new work of ``tenant`` is refused now (the whole backlog at the limit, or the
        tenant at its share of it), or None when it is not."""
        if self.over:
            return Overloaded(f"ingest is applying backpressure: {self.value} tasks are "
                              f"still to be decided or carried out (limit {self.limit})",
                              self.retry_after_ms)
        if self.limit <= 0:
            return None
        waiting, share = self.by_tenant.get(tenant, 0), self.share(tenant)
        if waiting < share:
            return None
        tenants = len(self.by_tenant.keys() | {tenant})
        return Overloaded(f"ingest is applying backpressure to tenant {tenant!r}: {waiting} of "
                          "its tasks are still to be decided or carried out, its share of the "
                          f"backlog limit ({share} of {self.limit}, split by weight among the "
                          f"{tenants} tenants with work waiting)", self.retry_after_ms)

    def accepted(self, tenant: str, created: int) -> None:
        """Count tasks just created until the next refresh recounts, so a burst cannot pass
        its share by a whole refresh interval's worth."""
        if created and self.limit > 0:
            self.by_tenant[tenant] = self.by_tenant.get(tenant, 0) + created
            self.value += created
            BACKLOG.set(self.value)
            TENANT_BACKLOG.labels(tenant).set(self.by_tenant[tenant])

    async def wait_until_below(self) -> None:
        """For the intake consumer: hold records in Kafka (the buffer) while overloaded."""
        while self.over:
            await asyncio.sleep(self.interval_s)

    async def run(self) -> None:
        while True:
            try:
                await self.refresh()
            except TRANSIENT_ERRORS as exc:
                log.warning("backlog count failed, keeping the last value: %r", exc)
            await asyncio.sleep(self.interval_s)


__all__ = ["BACKLOG", "TENANT_BACKLOG", "Backlog", "Overloaded"]
