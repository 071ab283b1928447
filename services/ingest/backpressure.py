"""Backpressure: refuse new work while the pipeline's backlog is over its limit.

What is measured: tasks in PostgreSQL with status QUEUED, i.e. accepted but not yet picked up
by the decision stage. That is exactly the consumer lag of the ``tasks`` topic that matters,
counted from the system of record. Kafka's own lag (end offset minus committed offset) is not
used because Tansu reports wrong end offsets (docs/architecture.md); a count in PostgreSQL is
exact on any broker.

The count is bounded (``LIMIT max_backlog``), so it costs at most the limit's worth of index
entries however large the backlog grows, and it is refreshed in the background every
``ingest_backlog_check_s`` so submissions never wait on it.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg
from prometheus_client import Gauge

from switchyard.messaging import TRANSIENT_ERRORS

log = logging.getLogger(__name__)

BACKLOG = Gauge(
    "switchyard_ingest_backlog",
    "QUEUED tasks (accepted, not yet decided), counted up to the backpressure limit.",
)


class Overloaded(Exception):
    """The backlog is over the limit; ``retry_after_ms`` is the hint for the caller."""

    def __init__(self, backlog: int, limit: int, retry_after_ms: int) -> None:
        super().__init__(
            f"ingest is applying backpressure: {backlog} tasks are waiting for a decision "
            f"(limit {limit}); retry after {retry_after_ms} ms"
        )
        self.retry_after_ms = retry_after_ms


class Backlog:
    def __init__(self, pool: asyncpg.Pool, limit: int, interval_s: float,
                 retry_after_ms: int) -> None:
        self.pool = pool
        self.limit = limit
        self.interval_s = interval_s
        self.retry_after_ms = retry_after_ms
        self.value = 0

    async def refresh(self) -> int:
        if self.limit <= 0:
            return 0
        self.value = int(await self.pool.fetchval(
            "SELECT count(*) FROM (SELECT 1 FROM tasks WHERE status = 'QUEUED' LIMIT $1) q",
            self.limit,
        ))
        BACKLOG.set(self.value)
        return self.value

    @property
    def over(self) -> bool:
        return self.limit > 0 and self.value >= self.limit

    def overloaded(self) -> Overloaded:
        return Overloaded(self.value, self.limit, self.retry_after_ms)

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


__all__ = ["BACKLOG", "Backlog", "Overloaded"]
