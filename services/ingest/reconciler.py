"""The reconciler: accepted work that never reached Kafka is published after a timeout.

A task is committed to PostgreSQL before its envelope is produced (see ``publisher``). If the
process dies in between, or the broker is down when the produce happens, the task sits with
``published_at IS NULL``. This loop finds such tasks once they are older than
``reconcile_after_s`` (so it does not race a produce still in flight) and publishes them with
``source = TASK_SOURCE_REPLAY`` and ``attempt + 1``, in the trace its submission started
(``tasks.trace_context``). Consumers downstream dedupe per task, so
publishing a task twice (a produce that did land but was not yet marked) is harmless.
Cancellation requests recorded by CancelTask but not yet published get the same treatment.

It also re-drives published tasks whose records were lost afterwards (a broker that lost its
state): see :func:`redrive_stalled`, which shares its bookkeeping and publishing with the
operator's RedriveTask (:func:`redrive_one`); and it mirrors again the terminal status of ended tasks
that still have an open review item, because their one status event was lost: see
:class:`EndingMirror`.

Replicas coordinate with a PostgreSQL advisory lock: one reconciles, the others skip a round.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
import uuid

import asyncpg
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import Counter

from services.ingest import store
from services.ingest.cancel import cancellation_from_row
from services.ingest.publisher import Publisher
from switchyard.audit import Entry, append as audit_append, append_many, digest
from switchyard.messaging import CANCELLATIONS, TRANSIENT_ERRORS, client_options
from switchyard.runtime import broker_generation
from switchyard.storage import TASK_ENVELOPE, PayloadError, rewrap_stale
from switchyard.tasks import (
    TERMINAL,
    TERMINAL_SQL,
    publish_status,
    stage_value,
    status_value,
    timestamp,
)
from switchyard.telemetry import loaded_trace_context
from switchyard.v1 import CancellationRequest, StatusEvent, TaskSource

log = logging.getLogger(__name__)
_LOCK_KEY = 0x5357_5243  # "SWRC": one reconciler at a time, cluster-wide
BATCH = 500

REPUBLISHED = Counter(
    "switchyard_ingest_republished_total",
    "Accepted records the reconciler published after they were found missing from Kafka.",
    ["kind"],
)


def replay_event(row: asyncpg.Record) -> StatusEvent:
    """The task's latest status, as the compacted status topic should show it."""
    return StatusEvent(
        task_id=str(row["task_id"]), tenant_id=row["tenant_id"],
        status=status_value(row["status"]), stage=stage_value(row["stage"]),
        reason=row["reason"], occurred_at=timestamp(row["updated_at"]),
        sequence=row["status_seq"], service="ingest", idempotency_key=row["idempotency_key"],
    )


async def reconcile_tasks(conn: asyncpg.Connection, publisher: Publisher,
                          after_s: float) -> int:
    rows = await conn.fetch(
        "SELECT task_id, tenant_id, idempotency_key, envelope, status, stage, reason, "
        "status_seq, updated_at, trace_context FROM tasks WHERE published_at IS NULL "
        "AND created_at < now() - make_interval(secs => $1) ORDER BY created_at LIMIT $2",
        after_s, BATCH,
    )
    finished = [str(r["task_id"]) for r in rows if r["status"] in TERMINAL]
    if finished:
        # Cancelled before it ever reached Kafka: nothing downstream must see it now.
        await store.mark_published(publisher.pool, finished)
    replayed = await _replay(conn, publisher, [r for r in rows if r["status"] not in TERMINAL])
    if replayed:
        REPUBLISHED.labels("task").inc(replayed)
        log.warning("reconciler re-published %d task(s) missing from Kafka", replayed)
    return replayed


#: A task has a durable owner, which drives it on from PostgreSQL, while one of these exists.
_DURABLE_OWNER = """
    EXISTS (SELECT 1 FROM executor_jobs j WHERE j.task_id = t.task_id
                                            AND j.state IN ('running', 'parked'))
    OR EXISTS (SELECT 1 FROM review_items r WHERE r.task_id = t.task_id
                                              AND r.resolved_at IS NULL)
    OR EXISTS (SELECT 1 FROM decision_holds h WHERE h.task_id = t.task_id)
"""


#: The re-drive's bookkeeping (when, how often: the backoff reads them), one statement with
#: the row it returns for :func:`_replay`.
_MARK_REDRIVEN = "UPDATE tasks t SET redriven_at = now(), redrives = t.redrives + 1"
_REPLAY_COLUMNS = ("t.task_id, t.tenant_id, t.idempotency_key, t.envelope, t.status, t.stage, "
                   "t.reason, t.status_seq, t.updated_at, t.trace_context")


#: The actor of the ``task.redriven`` audit entries of re-drives nobody asked for.
RECONCILER_ACTOR = "reconciler"


class AlreadyFinished(Exception):
    """The task to re-drive is terminal: nothing downstream may see it again."""

    def __init__(self, task_id: str, status: str) -> None:
        hint = (" (use RetryTask, switchyard tasks retry, to run a FAILED task again)"
                if status == "FAILED" else "")
        super().__init__(f"task {task_id} is {status}; only unfinished tasks can be "
                         f"re-driven{hint}")
        self.status = status


async def redrive_one(conn: asyncpg.Connection, publisher: Publisher, task_id: str,
                      actor: str, reason: str) -> bool:
    """RedriveTask: what :func:`redrive_stalled` does for one task, now, at an operator's
    request; False when no such task exists. Raises :class:`AlreadyFinished` for a terminal
    task.

    The bookkeeping (``redriven_at``, ``redrives``) and the ``task.redriven`` audit entry
    (actor: the caller's key id; the reason as a hash, as for a cancellation) commit in one
    transaction, under the task's row lock; the envelope is published afterwards by the same
    code as the reconciler's re-drive (a broker error then reaches the caller, who may call
    again: every stage dedupes a redelivered task).
    """
    async with conn.transaction():
        row = await conn.fetchrow(
            f"""WITH locked AS (SELECT task_id, status FROM tasks WHERE task_id = $1
                                FOR UPDATE),
                marked AS ({_MARK_REDRIVEN} FROM locked
                           WHERE t.task_id = locked.task_id
                             AND locked.status NOT IN {TERMINAL_SQL}
                           RETURNING {_REPLAY_COLUMNS}, t.redrives)
                SELECT locked.status AS current_status, marked.*
                  FROM locked LEFT JOIN marked USING (task_id)""",
            uuid.UUID(task_id))
        if row is None:
            return False
        if row["current_status"] in TERMINAL:
            raise AlreadyFinished(task_id, row["current_status"])
        await audit_append(conn, row["tenant_id"], actor, "task.redriven", {
            "status": row["status"], "stage": row["stage"], "redrives": row["redrives"],
            "reason_sha256": digest(reason) if reason else ""}, task_id=task_id, writer="ingest")
    await _replay(conn, publisher, [row], raise_unreadable=True)
    REPUBLISHED.labels("redrive").inc()
    log.warning("task %s re-driven by %s", task_id, actor)
    return True


async def broker_replaced_at(conn: asyncpg.Connection, generation: int | None
                             ) -> datetime.datetime | None:
    """When the reconciler first saw the broker of ``generation``, if an older generation was
    seen before it (the broker lost its state in between); None for the first broker ever
    seen, or when the generation is unknown (no marker yet). Records each new generation."""
    if generation is None:
        return None
    await conn.execute("INSERT INTO ingest_broker_generations (generation) VALUES ($1) "
                       "ON CONFLICT (generation) DO NOTHING", generation)
    return await conn.fetchval(
        "SELECT g.first_seen_at FROM ingest_broker_generations g WHERE g.generation = $1 "
        "AND EXISTS (SELECT 1 FROM ingest_broker_generations older "
        "            WHERE older.first_seen_at < g.first_seen_at)", generation)


async def redrive_stalled(conn: asyncpg.Connection, publisher: Publisher,
                          after_s: float, broker_since: datetime.datetime | None = None
                          ) -> int:
    """Publish again published, unfinished tasks that nothing owns and that made no progress.

    Their records were lost after the broker acknowledged them (a broker that lost its state,
    a topic deleted by hand). Every stage dedupes and re-emits what it already produced for a
    redelivered task, so the task picks up where PostgreSQL says it stopped. Each repeat waits
    twice as long as the last, so a long but healthy backlog is not flooded with copies.
    When the broker is known to have lost its state (``broker_since``, from
    :func:`broker_replaced_at`), a task whose last progress came before then is re-driven at
    once, once: its records went with the old broker.
    """
    # TERMINAL_SQL is inlined, not bound as a parameter, so that the planner can match the
    # partial index tasks_unfinished (migration 0010, "status NOT IN" the terminal statuses).
    async with conn.transaction():
        rows = await conn.fetch(
            f"""WITH stalled AS (
                  SELECT t.task_id FROM tasks t
                   WHERE t.status NOT IN {TERMINAL_SQL}
                     AND t.published_at IS NOT NULL
                     AND ((t.updated_at < now() - make_interval(secs => $1)
                           AND (t.redriven_at IS NULL OR t.redriven_at
                                < now() - make_interval(secs => $1 * 2 ^ least(t.redrives, 6))))
                          OR (t.updated_at < $3
                              AND (t.redriven_at IS NULL OR t.redriven_at < $3)))
                     AND NOT ({_DURABLE_OWNER})
                   ORDER BY t.updated_at LIMIT $2 FOR UPDATE OF t SKIP LOCKED)
                {_MARK_REDRIVEN} FROM stalled WHERE t.task_id = stalled.task_id
                RETURNING {_REPLAY_COLUMNS}, t.redrives,
                          t.updated_at >= now() - make_interval(secs => $1) AS broker_lost""",
            after_s, BATCH, broker_since,
        )
        # each re-drive in its task's timeline, as an operator's is (actor: the reconciler)
        await append_many(conn, [
            Entry(row["tenant_id"], RECONCILER_ACTOR, "task.redriven",
                  {"status": row["status"], "stage": row["stage"], "redrives": row["redrives"],
                   **({"broker_lost": True} if row["broker_lost"]
                      else {"stalled_for_s": after_s})}, str(row["task_id"]))
            for row in rows], writer="ingest")
    replayed = await _replay(conn, publisher, rows)
    if replayed:
        REPUBLISHED.labels("redrive").inc(replayed)
        log.warning("reconciler re-drove %d stalled task(s) from PostgreSQL", replayed)
    return replayed


class EndingMirror:
    """Publishes again the terminal status event of ended tasks whose review item is still open.

    Every stage commits a status change first and produces its event afterwards, so a crash or
    a broker error in between loses that event for good; the review service learns that a
    task ended only from the task-status topic, so an item of a cancelled or finished task
    would stay open forever. A task that ended ``after_s`` ago (time enough for the first
    produce) and still has an open item (the review service withdraws it when it sees the
    event) gets its latest status published again. Repeats for the same task wait twice as
    long as the last (remembered in this process only: a replica that takes the reconciler
    over may send one more copy), so a review service that is down is not flooded. The
    review service withdraws idempotently, so a duplicate event is harmless.
    """

    def __init__(self) -> None:
        #: task id -> (when it was last mirrored again, monotonic; how many times)
        self._sent: dict[str, tuple[float, int]] = {}

    async def remirror(self, conn: asyncpg.Connection, publisher: Publisher,
                       after_s: float) -> int:
        """One round; returns how many status events were published again."""
        rows = await conn.fetch(
            "SELECT t.task_id, t.tenant_id, t.idempotency_key, t.status, t.stage, t.reason, "
            "t.status_seq, t.updated_at FROM tasks t WHERE t.status = ANY($3::text[]) "
            "AND t.updated_at < now() - make_interval(secs => $1) "
            "AND t.task_id IN (SELECT r.task_id FROM review_items r "
            "                   WHERE r.state IN ('BACKLOGGED', 'PENDING', 'CLAIMED')) "
            "ORDER BY t.updated_at LIMIT $2",
            after_s, BATCH, list(TERMINAL),
        )
        now = time.monotonic()
        open_now = {str(r["task_id"]) for r in rows}
        for gone in set(self._sent) - open_now:  # withdrawn since: forget it
            del self._sent[gone]
        due = []
        for row in rows:
            last = self._sent.get(str(row["task_id"]))
            if last is None or now - last[0] >= after_s * 2 ** min(last[1], 6):
                due.append(row)
                self._sent[str(row["task_id"])] = (now, (last[1] if last else 0) + 1)
        for row in due:
            await publish_status(publisher.producer, replay_event(row))
        if due:
            REPUBLISHED.labels("status").inc(len(due))
            log.warning("reconciler mirrored again the terminal status of %d task(s) whose "
                        "review item is still open", len(due))
        return len(due)


async def _replay(conn: asyncpg.Connection, publisher: Publisher,
                  rows: list[asyncpg.Record], raise_unreadable: bool = False) -> int:
    """Publish the rows' envelopes as replays (source REPLAY, attempt + 1).

    An envelope that cannot be opened is logged and skipped (``raise_unreadable``: raised,
    for a caller waiting for this one task)."""
    replay, traces = [], []
    for row in rows:
        try:
            envelope = store.open_envelope(publisher.codec, row)
        except PayloadError as exc:  # stays unpublished and visible; never sent as garbage
            log.error("reconciler cannot re-publish: %s", exc)
            if raise_unreadable:
                raise
            continue
        envelope.attempt += 1
        envelope.source = TaskSource.TASK_SOURCE_REPLAY
        replay.append((envelope, replay_event(row)))
        traces.append(loaded_trace_context(row["trace_context"]))  # the submission's trace
    await rewrap_stale(conn, publisher.codec, TASK_ENVELOPE,
                       [(r["task_id"], r["envelope"]) for r in rows])
    if replay:
        await publisher.publish(replay, traces)
    return len(replay)


async def reconcile_cancellations(conn: asyncpg.Connection, publisher: Publisher,
                                  after_s: float) -> int:
    rows = await conn.fetch(
        "SELECT request_id, task_id, tenant_id, reason, requested_by, requested_at "
        "FROM cancellation_requests WHERE published_at IS NULL "
        "AND requested_at < now() - make_interval(secs => $1) LIMIT $2", after_s, BATCH,
    )
    for row in rows:
        await publish_cancellation(publisher, cancellation_from_row(row))
        REPUBLISHED.labels("cancellation").inc()
    return len(rows)


async def publish_cancellation(publisher: Publisher, request: CancellationRequest) -> None:
    await publisher.producer.send(CANCELLATIONS, request.task_id, request)
    await publisher.pool.execute(
        "UPDATE cancellation_requests SET published_at = now() WHERE request_id = $1",
        uuid.UUID(request.request_id),
    )


async def reconcile_once(publisher: Publisher, after_s: float, redrive_after_s: float = 0.0,
                         endings: EndingMirror | None = None,
                         broker: int | None = None) -> int:
    """One round; returns how many records were published (0 when another replica holds it).
    ``broker`` is the broker's generation now (None: unknown), for :func:`redrive_stalled`."""
    async with publisher.pool.acquire() as conn:
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", _LOCK_KEY):
            return 0
        try:
            published = (await reconcile_tasks(conn, publisher, after_s)
                         + await reconcile_cancellations(conn, publisher, after_s)
                         + await (endings or EndingMirror()).remirror(conn, publisher,
                                                                      after_s))
            if redrive_after_s > 0:
                published += await redrive_stalled(conn, publisher, redrive_after_s,
                                                   await broker_replaced_at(conn, broker))
            return published
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)


async def run(publisher: Publisher, interval_s: float, after_s: float,
              redrive_after_s: float = 0.0) -> None:
    """Reconcile forever: at start (a restart after a crash is when it matters), then every
    ``interval_s``; a full batch goes again at once. Each round asks the broker its
    generation, so a broker that lost its state has its tasks re-driven at once."""
    endings = EndingMirror()
    admin = AIOKafkaAdminClient(**client_options(publisher.settings))
    started = False
    try:
        while True:
            try:
                if not started:
                    await admin.start()
                    started = True
                generation = await broker_generation(admin, publisher.settings)
            except TRANSIENT_ERRORS as exc:  # a broker away: the generation is unknown
                log.debug("broker generation unknown this round: %r", exc)
                generation = None
            try:
                published = await reconcile_once(publisher, after_s, redrive_after_s, endings,
                                                 generation)
            except TRANSIENT_ERRORS as exc:
                log.warning("reconciler round failed, retrying: %r", exc)
                published = 0
            if published < BATCH:
                await asyncio.sleep(interval_s)
    finally:
        if started:
            await admin.close()


__all__ = ["REPUBLISHED", "AlreadyFinished", "EndingMirror", "broker_replaced_at",
           "publish_cancellation", "reconcile_once", "redrive_one", "redrive_stalled", "run"]
