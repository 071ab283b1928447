"""Accept tasks once and hand them to the pipeline: PostgreSQL first, then Kafka.

The order is the whole point. A task is committed to PostgreSQL (the system of record) before
anything is produced, so a crash can only ever leave a task that is accepted but not yet
published, never one that is published but unknown. ``tasks.published_at`` stays NULL until
the broker acknowledged the envelope; the reconciler re-publishes whatever is left NULL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace

import asyncpg

from services.ingest import listing, store
from switchyard import Settings
from switchyard.documents import blob_store_for, check_in
from switchyard.messaging import (
    TASK_STATUS,
    TASKS,
    TRANSIENT_ERRORS,
    Producer,
    correlation_id_var,
    scheduling_headers,
)
from switchyard.privacy import matching_key
from switchyard.storage import codec_for
from switchyard.tasks import stage_value, status_value, task_bucket, timestamp
from switchyard.telemetry import continue_trace
from switchyard.v1 import BlobRef, StatusEvent, TaskEnvelope

log = logging.getLogger(__name__)

#: Values SWITCHYARD_FAULT_INJECT may take (test-only; see docs/settings.md).
FAULTS = ("", "crash_after_commit", "drop_cancel_status")
#: Exit status of a process killed by the crash_after_commit fault, so tests can tell.
CRASH_EXIT_CODE = 86


def check_fault_setting(settings: Settings) -> None:
    if settings.fault_inject not in FAULTS:
        raise ValueError(f"SWITCHYARD_FAULT_INJECT={settings.fault_inject!r}: expected one of "
                         f"{', '.join(repr(f) for f in FAULTS)}")


#: Work done in the transaction that inserts a new task (:meth:`Publisher.accept`).
OnCreated = Callable[[asyncpg.Connection, store.Accepted], Awaitable[None]]


@dataclass(frozen=True)
class Item:
    """One normalised submission on its way in."""

    envelope: TaskEnvelope
    payload_sha256: str
    callback_url: str = ""
    #: ``domain.earlier_payload_sha256``: a task stored under it is this submission too
    earlier_sha256: str = ""


def first_event(envelope: TaskEnvelope, accepted: store.Accepted) -> StatusEvent:
    """The QUEUED event written as history row 1 by :func:`store.accept`."""
    return StatusEvent(
        task_id=envelope.task_id, tenant_id=envelope.tenant_id,
        status=status_value("QUEUED"), stage=stage_value("INGESTED"),
        occurred_at=timestamp(accepted.created_at), sequence=1, service="ingest",
        idempotency_key=envelope.idempotency_key,
    )


class Publisher:
    """Accepts submissions (one or a batch) and publishes the new tasks."""

    def __init__(self, settings: Settings, pool: asyncpg.Pool, producer: Producer) -> None:
        check_fault_setting(settings)
        self.settings = settings
        self.pool = pool
        self.producer = producer
        self.codec = codec_for(settings)  # seals tasks.envelope at rest
        self.hash_key = matching_key(settings)  # tasks.metadata_hashes (ListTasks' filter)
        # the claim check: bodies above the threshold are stored once, envelopes carry a ref
        self.blobs = blob_store_for(settings, pool)
        # Bulk submissions run their inserts concurrently, but never more than the pool holds.
        self._db_slots = asyncio.Semaphore(max(1, settings.postgres_pool_max - 1))
        # acknowledgements still awaited after their submissions were answered
        self._behind: set[asyncio.Task[None]] = set()

    async def accept(self, item: Item, republish_unpublished: bool = False,
                     on_created: OnCreated | None = None) -> store.Accepted:
        """Accept one submission; raises :class:`store.IdempotencyConflict`.

        ``republish_unpublished`` is for redelivered intake records: when the task exists but
        its envelope never reached the broker (a crash after the commit), publish it now
        rather than wait for the reconciler. ``on_created`` runs in the transaction that
        inserts the task, only when it is new (RetryTask's audit entries), so what it writes
        commits exactly when the task does.
        """
        refs = await self._check_in([item])
        try:
            accepted = await self._insert(item, on_created)
        except BaseException:
            await self._release(refs)
            raise
        if not accepted.created:
            await self._release(refs)  # a repeat: the task keeps the blob it was accepted with
        if accepted.created:
            self._crash_point()
            await self.publish_or_defer([(item.envelope, first_event(item.envelope, accepted))])
        elif republish_unpublished and not accepted.published:
            await self._republish_unpublished([(accepted, None)])
        return accepted

    async def accept_many(self, items: Sequence[Item],
                          traces: Sequence[dict[str, str]] | None = None,
                          republish_unpublished: bool = False
                          ) -> list[store.Accepted | store.IdempotencyConflict]:
        """Accept a batch: one result per item, conflicts returned rather than raised.

        The batch goes to PostgreSQL as one insert (see :func:`store.accept_many`), not one
        transaction per item. ``traces`` gives each item the trace it arrived in (a batch of
        intake records; without it, the current one is every item's), stored with its task
        and carried by its records. ``republish_unpublished`` as :meth:`accept`, for each
        item."""
        refs = await self._check_in(items)
        new_tasks = [self._new_task(i) for i in items]
        if traces is not None:
            new_tasks = [replace(t, trace_context=json.dumps(trace))
                         for t, trace in zip(new_tasks, traces)]
        try:
            async with self._db_slots, self.pool.acquire() as conn:
                results = await store.accept_many(conn, new_tasks, codec=self.codec)
        except BaseException:
            await self._release(refs)
            raise
        await self._release([ref for ref, result in zip(refs, results)
                             if not (isinstance(result, store.Accepted) and result.created)])
        created = [(i, (item.envelope, first_event(item.envelope, result)))
                   for i, (item, result) in enumerate(zip(items, results))
                   if isinstance(result, store.Accepted) and result.created]
        if created:
            self._crash_point()
            await self.publish_or_defer([c for _, c in created],
                                        None if traces is None else [traces[i] for i, _ in created])
        if republish_unpublished:
            await self._republish_unpublished(
                [(result, None if traces is None else traces[i])
                 for i, result in enumerate(results) if isinstance(result, store.Accepted)
                 and not result.created and not result.published])
        return list(results)

    async def _republish_unpublished(
            self, accepted: Sequence[tuple[store.Accepted, dict[str, str] | None]]) -> None:
        """Tasks accepted before whose envelopes never reached the broker (a crash after the
        commit), still QUEUED: published now rather than by the reconciler later. Their rows
        are read in one statement."""
        if not accepted:
            return
        queued = await store.load_queued(self.pool, [result.task_id for result, _ in accepted])
        again, traces = [], []
        for result, trace in accepted:
            row = queued.get(result.task_id)
            if row is not None:
                envelope = store.open_envelope(self.codec, row)
                again.append((envelope, first_event(envelope, result)))
                traces.append(trace)
        if again:
            await self.publish_or_defer(again, traces if any(traces) else None)

    async def _check_in(self, items: Sequence[Item]) -> list[BlobRef | None]:
        """The claim check of each item's document (see :func:`check_in`), before its task
        is inserted; on a failure the blobs already stored are removed again."""
        refs: list[BlobRef | None] = []
        try:
            for item in items:
                refs.append(await check_in(item.envelope, self.blobs,
                                           self.settings.blob_threshold_bytes))
        except BaseException:
            await self._release(refs)
            raise
        return refs

    async def _release(self, refs: Sequence[BlobRef | None]) -> None:
        """Delete blobs no accepted task refers to (the task was a repeat, or not stored)."""
        for ref in refs:
            if ref is None:
                continue
            try:
                await self.blobs.delete(ref)
            except Exception as exc:  # noqa: BLE001 - an orphan blob must not fail the call
                log.warning("could not delete unused blob %s: %r", ref.uri, exc)

    async def publish(self, items: Sequence[tuple[TaskEnvelope, StatusEvent]],
                      traces: Sequence[dict[str, str] | None] | None = None,
                      span: str = "ingest re-publish", wait_s: float | None = None) -> None:
        """Produce envelopes and their status events, wait for every ack, then mark them.

        ``traces`` (the reconciler's re-publish, a batch of intake records) gives each item
        the trace its submission started, stored in ``tasks.trace_context``, continued in a
        span named ``span``; without it the records carry the current one (the submitting
        request's). ``wait_s``: return after that long even without the acks (a broker that
        is down would hold the caller for the producer's whole request timeout); they are
        awaited behind, and the tasks marked published when they come.
        """
        futures = []
        for i, (envelope, event) in enumerate(items):
            token = correlation_id_var.set(envelope.correlation_id or envelope.task_id)
            try:
                with (continue_trace(span, traces[i],
                                     {"task.id": envelope.task_id})
                      if traces is not None else contextlib.nullcontext()):
                    futures.append(
                        await self.producer.send_nowait(
                            TASKS, envelope.task_id, envelope,
                            scheduling_headers(envelope.tenant_id, task_bucket(envelope))))
                    futures.append(
                        await self.producer.send_nowait(TASK_STATUS, event.task_id, event))
            finally:
                correlation_id_var.reset(token)
        task_ids = [envelope.task_id for envelope, _ in items]
        acked = asyncio.gather(*futures)
        if wait_s is None:
            await acked
        else:
            try:
                await asyncio.wait_for(asyncio.shield(acked), wait_s)
            except asyncio.TimeoutError:
                log.warning("the broker has not acknowledged %d accepted task(s) in %.1f s: "
                            "answered, their acknowledgements awaited behind", len(items),
                            wait_s)
                self._await_behind(acked, task_ids)
                return
        await store.mark_published(self.pool, task_ids)

    def _await_behind(self, acked: Awaitable[object], task_ids: list[str]) -> None:
        async def mark_when_acked() -> None:
            try:
                await acked
                await store.mark_published(self.pool, task_ids)
            except TRANSIENT_ERRORS as exc:  # the reconciler publishes them
                log.warning("%d accepted task(s) not published, left to the reconciler: %r",
                            len(task_ids), exc)
            except Exception:  # noqa: BLE001 - said, never silent; the reconciler publishes
                log.exception("awaiting the broker's acknowledgement of %d task(s) failed",
                              len(task_ids))

        task = asyncio.create_task(mark_when_acked())
        self._behind.add(task)
        task.add_done_callback(self._behind.discard)

    async def close(self) -> None:
        """At shutdown: stop awaiting acknowledgements (the reconciler publishes what was
        not marked), then close the blob store."""
        for task in list(self._behind):
            task.cancel()
        await asyncio.gather(*self._behind, return_exceptions=True)
        await self.blobs.close()

    async def publish_or_defer(self, items: Sequence[tuple[TaskEnvelope, StatusEvent]],
                               traces: Sequence[dict[str, str] | None] | None = None) -> None:
        """Publish now (each item in its own trace when ``traces`` says); if the broker
        fails, the tasks stay accepted (they are committed) and the reconciler publishes them
        later, so the caller still gets its answer."""
        try:
            await self.publish(items, traces, "ingest intake", self.settings.ingest_publish_wait_s)
        except TRANSIENT_ERRORS as exc:
            log.warning("publishing %d accepted task(s) failed, left to the reconciler: %r",
                        len(items), exc)

    async def _insert(self, item: Item, on_created: OnCreated | None = None) -> store.Accepted:
        """``store.accept`` for one item, in one statement (see :func:`store.accept_many`),
        plus ``on_created`` in the same transaction when the task is new."""
        async with self._db_slots, self.pool.acquire() as conn:
            if on_created is None:
                [result] = await store.accept_many(conn, [self._new_task(item)],
                                                   codec=self.codec)
            else:
                async with conn.transaction():
                    [result] = await store.accept_many(conn, [self._new_task(item)],
                                                       codec=self.codec)
                    if isinstance(result, store.Accepted) and result.created:
                        await on_created(conn, result)
        if isinstance(result, store.IdempotencyConflict):
            raise result
        return result

    def _new_task(self, item: Item) -> store.NewTask:
        return store.NewTask(item.envelope, item.payload_sha256, item.callback_url,
                             listing.metadata_hashes(self.hash_key, item.envelope.tenant_id,
                                                     item.envelope.metadata.items()),
                             earlier_sha256=item.earlier_sha256)

    def _crash_point(self) -> None:
        """Fault injection between the PostgreSQL commit and the Kafka produce."""
        if self.settings.fault_inject == "crash_after_commit":
            log.critical("fault injection: crash_after_commit, exiting without publishing")
            for handler in logging.getLogger().handlers:
                handler.flush()
            sys.stderr.flush()
            os._exit(CRASH_EXIT_CODE)  # no cleanup at all, like a killed process


__all__ = ["CRASH_EXIT_CODE", "FAULTS", "Item", "OnCreated", "Publisher", "check_fault_setting",
           "first_event"]
