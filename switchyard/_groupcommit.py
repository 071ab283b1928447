"""Group commit: the writes that many coroutines make at once, in one transaction.

A stream processor runs many tasks concurrently, and each of them records its own results
(an executed step and its audit entry, say). Written one transaction each, they cost a
round trip per statement and queue on the tenant's audit-chain lock one by one. A
:class:`GroupCommit` lets every caller await :meth:`GroupCommit.submit` as if it wrote alone,
while the items that arrive during one transaction go together in the next, as PostgreSQL
groups the WAL flushes of concurrent commits. An idle service writes each item at once (no
timer to wait for); a busy one writes one transaction per round of callers.

A group that fails is written again one item per transaction, so an item's error reaches its
own caller only and never fails the others. Reads group the same way (``transactional=False``:
one statement for what many coroutines ask at once, outside a transaction).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

import asyncpg
from prometheus_client import Histogram

log = logging.getLogger(__name__)

I = TypeVar("I")  # noqa: E741 - an item
R = TypeVar("R")

GROUP_ITEMS = Histogram(
    "switchyard_group_commit_items",
    "Items one group commit wrote in one transaction, by what they are.",
    ["writes"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)

#: Writes ``items`` in the caller's transaction; one result per item, in order.
Writer = Callable[[asyncpg.Connection, list[I]], Awaitable[list[R]]]


class GroupCommit(Generic[I, R]):
    """Items written together, one transaction per group (see the module doc).

    ``key`` names what an item writes (a row's primary key): two items with the same key never
    go in one group, so a multi-row upsert never meets its own row twice. ``transactional``
    False runs ``write`` outside a transaction (a read: no BEGIN and COMMIT round trips)."""

    def __init__(self, name: str, pool: asyncpg.Pool, write: Writer[I, R],
                 key: Callable[[I], Hashable], max_items: int = 256,
                 transactional: bool = True) -> None:
        self.name = name  # what the items are, for the metric: "executions"
        self.pool = pool
        self.write = write
        self.key = key
        self.max_items = max_items
        self.transactional = transactional
        self._pending: list[tuple[I, asyncio.Future[R]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, item: I) -> R:
        """Write ``item`` (with whatever else is waiting); returns once it is committed."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._writer is None or self._writer.done():
            # its own empty context: the group is nobody's trace and no task's log line
            self._writer = asyncio.create_task(self._drain(), context=contextvars.Context())
        return await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                await self._write_group(self._next_group())
        finally:  # cancelled (shutdown): nobody waits for good
            for _, future in self._pending:
                future.cancel()
            self._pending.clear()

    def _next_group(self) -> list[tuple[I, asyncio.Future[R]]]:
        group, rest, keys = [], [], set()
        for entry in self._pending:
            key = self.key(entry[0])
            if len(group) < self.max_items and key not in keys:
                keys.add(key)
                group.append(entry)
            else:
                rest.append(entry)
        self._pending = rest
        return group

    async def _write_group(self, group: list[tuple[I, asyncio.Future[R]]]) -> None:
        try:
            results = await self._write([item for item, _ in group])
        except Exception as exc:  # noqa: BLE001 - handed to the callers below
            if len(group) == 1:
                _settle(group[0][1], exc=exc)
                return
            log.warning("a group of %d writes failed (%s); writing them one by one",
                        len(group), type(exc).__name__)
            for item, future in group:
                try:
                    (result,) = await self._write([item])
                except Exception as one:  # noqa: BLE001 - this item's caller gets it
                    _settle(future, exc=one)
                else:
                    _settle(future, result)
            return
        except BaseException:
            for _, future in group:
                future.cancel()
            raise
        for (_, future), result in zip(group, results):
            _settle(future, result)

    async def _write(self, items: list[I]) -> list[R]:
        async with self.pool.acquire() as conn:
            if self.transactional:
                async with conn.transaction():
                    results = await self.write(conn, items)
            else:
                results = await self.write(conn, items)
        GROUP_ITEMS.labels(self.name).observe(len(items))
        return results


def _settle(future: asyncio.Future[R], result: R | None = None,
            exc: BaseException | None = None) -> None:
    if future.done():  # its caller was cancelled
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)  # type: ignore[arg-type]


__all__ = ["GroupCommit"]
