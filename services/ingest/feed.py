"""The status feed: every task's status changes, tailed from PostgreSQL in commit-safe order.

Why PostgreSQL and not the task-status topic: the history table is the system of record, it
is written by every stage in the same transaction as the change, and it can be re-read from
any point, which is what a resumable WatchTenant cursor and durable webhooks need. (Reading
the topic "from now" would need end offsets, which Tansu gets wrong; see docs/architecture.md.)

Why the cursor is ``(txid, task_id, seq)``: history rows commit in an order that differs from
any id assigned at insert time, so a naive "id > last" reader skips a row that commits late.
Migration 0003 stamps each row with the id of the transaction that wrote it. A reader only
takes rows whose txid is below the *horizon*, the oldest transaction still running
(``pg_snapshot_xmin``): every transaction below it has finished, so no row can appear there
later. The horizon is read in one statement and the rows in the next, so the second
statement's snapshot sees everything that finished before the first. A long transaction
anywhere in the database holds the horizon back and delays (never loses) events.

One :class:`StatusFeed` per process polls the global feed and fans events out to the open
watches; a watch that falls behind (or resumes from an old cursor) reads its backlog from
PostgreSQL directly and then joins the live fan-out. With no watch open the feed does not
poll at all (every status change of every task would be read for nobody); the first watch
brings its position up to the horizon before it joins.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import NamedTuple

import asyncpg

from switchyard.messaging import TRANSIENT_ERRORS
from switchyard.tasks import TERMINAL, stage_value, status_value, timestamp
from switchyard.v1 import StatusEvent

log = logging.getLogger(__name__)
_MAX_UUID = uuid.UUID(int=(1 << 128) - 1)
_MAX_SEQ = (1 << 63) - 1
FEED_BATCH = 1000
QUEUE_LIMIT = 10_000


#: WatchTenant's initial metadata: the position the watch starts from (the request's cursor,
#: or now), so a watch that saw no event can still be resumed without a gap.
CURSOR_METADATA_KEY = "x-switchyard-cursor"


class Cursor(NamedTuple):
    """A position in the feed; rows strictly after it are delivered next."""

    txid: int
    task_id: uuid.UUID
    seq: int

    @classmethod
    def before_txid(cls, txid: int) -> Cursor:
        """The position just before the first row written by transaction ``txid``."""
        return cls(txid - 1, _MAX_UUID, _MAX_SEQ)

    def encode(self) -> str:
        raw = f"{self.txid}.{self.task_id.hex}.{self.seq}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        """Parse a client's cursor; ValueError says what is wrong with it."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
            txid, task_hex, seq = raw.split(".")
            cursor = cls(int(txid), uuid.UUID(hex=task_hex), int(seq))
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise ValueError("not a cursor returned by WatchTenant") from None
        if cursor.txid < -1 or not -1 <= cursor.seq <= _MAX_SEQ:
            raise ValueError("cursor out of range")
        return cursor


@dataclass(frozen=True)
class FeedEvent:
    cursor: Cursor
    event: StatusEvent


_SELECT = """
    SELECT h.txid::text::bigint AS txid, h.task_id, h.seq, h.status, h.stage, h.reason,
           h.detail, h.service, h.occurred_at, t.tenant_id, t.idempotency_key
      FROM task_status_history h JOIN tasks t USING (task_id)
"""


def event_from_row(row: asyncpg.Record) -> StatusEvent:
    return StatusEvent(
        task_id=str(row["task_id"]), tenant_id=row["tenant_id"],
        status=status_value(row["status"]), stage=stage_value(row["stage"]),
        reason=row["reason"], detail=row["detail"], occurred_at=timestamp(row["occurred_at"]),
        sequence=row["seq"], service=row["service"], idempotency_key=row["idempotency_key"],
    )


def feed_event(row: asyncpg.Record) -> FeedEvent:
    return FeedEvent(Cursor(row["txid"], row["task_id"], row["seq"]), event_from_row(row))


async def horizon(conn: asyncpg.Connection | asyncpg.Pool) -> int:
    """The oldest transaction id still running: every row below it is final."""
    value = await conn.fetchval("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
    return int(value)


async def fetch_after(conn: asyncpg.Connection | asyncpg.Pool, after: Cursor,
                      below_txid: int, limit: int, tenant_id: str | None = None,
                      upto: Cursor | None = None) -> list[asyncpg.Record]:
    """Rows after ``after`` written by finished transactions (txid < ``below_txid``)."""
    params: list[object] = [str(after.txid), after.task_id, after.seq, str(below_txid), limit]
    where = ["(h.txid, h.task_id, h.seq) > ($1::text::xid8, $2::uuid, $3::bigint)",
             "h.txid < $4::text::xid8"]
    if tenant_id is not None:
        params.append(tenant_id)
        where.append(f"t.tenant_id = ${len(params)}")
    if upto is not None:
        params += [str(upto.txid), upto.task_id, upto.seq]
        n = len(params)
        where.append(f"(h.txid, h.task_id, h.seq) <= (${n - 2}::text::xid8, ${n - 1}::uuid, "
                     f"${n}::bigint)")
    sql = f"{_SELECT} WHERE {' AND '.join(where)} ORDER BY h.txid, h.task_id, h.seq LIMIT $5"
    return await conn.fetch(sql, *params)


async def task_history(conn: asyncpg.Connection | asyncpg.Pool, task_id: str,
                       after_seq: int) -> list[asyncpg.Record]:
    """One task's history after ``after_seq``. Per task, sequence numbers commit in order
    (a change locks the task row), so this is always a gap-free prefix."""
    return await conn.fetch(
        f"{_SELECT} WHERE h.task_id = $1 AND h.seq > $2 ORDER BY h.seq",
        uuid.UUID(task_id), after_seq,
    )


@dataclass(eq=False)
class Subscription:
    """A live watch: tenant watches get events queued, task watches get a wake-up."""

    tenant_id: str | None = None
    task_id: str | None = None
    start: Cursor | None = None
    queue: asyncio.Queue[FeedEvent] = field(default_factory=lambda: asyncio.Queue(QUEUE_LIMIT))
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    lagging: bool = False

    def offer(self, item: FeedEvent) -> None:
        if self.task_id is not None:
            if item.event.task_id == self.task_id:
                self.wake.set()
            return
        if item.event.tenant_id != self.tenant_id or self.lagging:
            return
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            # A slow client: stop queueing; it re-reads its backlog from PostgreSQL.
            self.lagging = True
            self.wake.set()


class StatusFeed:
    """Polls the global feed and fans events out to the process's open watches."""

    def __init__(self, pool: asyncpg.Pool, poll_interval_s: float) -> None:
        self.pool = pool
        self.poll_interval_s = poll_interval_s
        self.position: Cursor | None = None
        self._subs: set[Subscription] = set()
        self._listened = asyncio.Event()

    async def start(self) -> None:
        self.position = Cursor.before_txid(await horizon(self.pool))

    async def subscribe(self, tenant_id: str | None = None, task_id: str | None = None
                        ) -> Subscription:
        """A live watch from the feed's position. The first watch after an idle spell (the
        feed polls only while someone watches) first moves the position up to the horizon,
        so it is not handed the changes made while nobody listened: those are its backlog,
        which a watch reads from PostgreSQL."""
        assert self.position is not None, "StatusFeed.start() first"
        if not self._subs:
            self.position = max(self.position, Cursor.before_txid(await horizon(self.pool)))
        sub = Subscription(tenant_id=tenant_id, task_id=task_id, start=self.position)
        self._subs.add(sub)
        self._listened.set()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    async def poll_once(self) -> int:
        assert self.position is not None
        async with self.pool.acquire() as conn:
            below = await horizon(conn)
            rows = await fetch_after(conn, self.position, below, FEED_BATCH)
        for row in rows:
            item = feed_event(row)
            for sub in list(self._subs):
                sub.offer(item)
            self.position = item.cursor
        return len(rows)

    async def run(self) -> None:
        """Poll while at least one watch is open; wait for one otherwise."""
        while True:
            if not self._subs:
                self._listened.clear()
                await self._listened.wait()
            try:
                full = await self.poll_once() == FEED_BATCH
            except TRANSIENT_ERRORS as exc:
                log.warning("status feed poll failed, retrying: %r", exc)
                full = False
            if not full:
                await asyncio.sleep(self.poll_interval_s)

    # -- watches ---------------------------------------------------------------------------

    async def watch_tenant(self, tenant_id: str, after: Cursor | None
                           ) -> AsyncIterator[FeedEvent]:
        """Events of a tenant's tasks after ``after`` (None: from now), forever."""
        last = after
        while True:
            sub = await self.subscribe(tenant_id=tenant_id)
            assert sub.start is not None
            try:
                if last is None:
                    last = sub.start
                # Backlog up to where the live fan-out took over, straight from PostgreSQL.
                while last < sub.start:
                    below = await horizon(self.pool)
                    rows = await fetch_after(self.pool, last, below, FEED_BATCH, tenant_id,
                                             upto=sub.start)
                    if not rows:
                        break
                    for row in rows:
                        item = feed_event(row)
                        last = item.cursor
                        yield item
                while not sub.lagging:
                    get = asyncio.ensure_future(sub.queue.get())
                    lag = asyncio.ensure_future(sub.wake.wait())
                    try:
                        await asyncio.wait({get, lag}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        lag.cancel()
                        if not get.done():
                            get.cancel()
                    if get.done() and not get.cancelled():
                        item = get.result()
                        if item.cursor > last:
                            last = item.cursor
                            yield item
            finally:
                self.unsubscribe(sub)

    async def watch_task(self, task_id: str, after_seq: int, recheck_s: float = 5.0
                         ) -> AsyncIterator[StatusEvent]:
        """One task's events after ``after_seq``, ending after its terminal event."""
        sub = await self.subscribe(task_id=task_id)
        try:
            last = after_seq
            while True:
                sub.wake.clear()
                for row in await task_history(self.pool, task_id, last):
                    last = row["seq"]
                    yield event_from_row(row)
                    if row["status"] in TERMINAL:
                        return
                state = await self.pool.fetchrow(
                    "SELECT status, status_seq FROM tasks WHERE task_id = $1",
                    uuid.UUID(task_id))
                if state is None or (state["status"] in TERMINAL
                                     and last >= state["status_seq"]):
                    return
                # Woken by the feed; the periodic re-check only guards against a missed wake.
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(sub.wake.wait(), recheck_s)
        finally:
            self.unsubscribe(sub)


__all__ = ["CURSOR_METADATA_KEY", "Cursor", "FeedEvent", "StatusFeed", "event_from_row",
           "fetch_after", "horizon", "task_history"]
