"""Shadow testing: a candidate model version sees the live traffic; its outputs are only recorded.

For every routed document the :class:`ShadowRunner` asks the shadow version too, through its
own micro-batcher and circuit breaker, after the live answer is in, and never waits for it:
a slow, failing or missing shadow costs the live path nothing. Each comparison lands in the
agreement metrics and, for persisted tasks, in ``decision_shadow_results`` (batched writes),
so promotion (``SWITCHYARD_ROUTER_VERSION=<shadow>``) is a decision made on evidence.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
import zlib
from collections import deque

import asyncpg
from prometheus_client import Counter, Gauge

from services.decision.batcher import MicroBatcher, Overloaded
from services.decision.triton import ModelUnavailable, Prediction

log = logging.getLogger(__name__)
_SAMPLE_BUCKETS = 10_000

SHADOW_COMPARISONS = Counter(
    "switchyard_shadow_comparisons_total",
    "Live vs shadow model outputs compared (agree: same label).",
    ["model", "live_version", "shadow_version", "agree"],
)
SHADOW_SKIPPED = Counter(
    "switchyard_shadow_skipped_total",
    "Documents the shadow model did not score (queue full or model unavailable).",
    ["model", "shadow_version", "why"],
)
SHADOW_AGREEMENT = Gauge(
    "switchyard_shadow_agreement_ratio",
    "Share of the last 1000 comparisons where the shadow agreed with the live model.",
    ["model", "live_version", "shadow_version"],
)


def shadow_sampled(task_id: str, share: float) -> bool:
    """Whether the shadow scores this task: ``share`` of task ids, chosen by their hash, so
    the choice is the same on every replica and every delivery of the task."""
    return zlib.crc32(task_id.encode()) % _SAMPLE_BUCKETS < round(share * _SAMPLE_BUCKETS)


class ShadowRunner:
    def __init__(self, batcher: MicroBatcher[str, Prediction], model: str, live_version: str,
                 shadow_version: str, pool: asyncpg.Pool | None, flush_rows: int = 256,
                 flush_s: float = 0.5, sample: float = 1.0) -> None:
        self.batcher = batcher
        self.sample = sample
        self.model, self.live_version, self.shadow_version = model, live_version, shadow_version
        self.pool = pool
        self._recent: deque[bool] = deque(maxlen=1000)
        self._rows: list[tuple[object, ...]] = []
        self._flush_rows, self._flush_s = flush_rows, flush_s
        self._tasks: set[asyncio.Task[None]] = set()
        self._flusher: asyncio.Task[None] | None = None
        self.supervisor = batcher.supervisor  # the service's: flusher loop, comparison tasks

    async def start(self) -> None:
        await self.batcher.start()
        if self.pool is not None:
            self._flusher = self.supervisor.start("shadow-flush", self._flush_loop)

    async def stop(self) -> None:
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.batcher.stop()
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
        await self.flush()

    def observe(self, task_id: str, tenant_id: str, text: str, live: Prediction,
                persist: bool) -> None:
        """Score ``text`` with the shadow in the background and compare with ``live`` (when
        the task is :func:`shadow_sampled`)."""
        if not shadow_sampled(task_id, self.sample):
            return
        task = self.supervisor.spawn("shadow-compare",
                                     self._compare(task_id, tenant_id, text, live, persist))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _compare(self, task_id: str, tenant_id: str, text: str, live: Prediction,
                       persist: bool) -> None:
        try:
            shadow = await self.batcher.submit(text, tenant_id)
        except Overloaded:
            SHADOW_SKIPPED.labels(self.model, self.shadow_version, "overloaded").inc()
            return
        except ModelUnavailable:
            SHADOW_SKIPPED.labels(self.model, self.shadow_version, "unavailable").inc()
            return
        except Exception:  # the shadow must never hurt the live path
            log.exception("shadow scoring failed")
            SHADOW_SKIPPED.labels(self.model, self.shadow_version, "error").inc()
            return
        agree = shadow.label == live.label
        self._recent.append(agree)
        SHADOW_COMPARISONS.labels(self.model, live.model_version, shadow.model_version,
                                  str(agree).lower()).inc()
        SHADOW_AGREEMENT.labels(self.model, live.model_version, shadow.model_version).set(
            sum(self._recent) / len(self._recent))
        if persist and self.pool is not None:
            try:
                task_uuid = uuid.UUID(task_id)
            except ValueError:
                return
            self._rows.append((task_uuid, self.model, shadow.model_version, tenant_id,
                               live.model_version, live.label, live.confidence, shadow.label,
                               shadow.confidence, agree))
            if len(self._rows) >= self._flush_rows:
                await self.flush()

    @property
    def agreement(self) -> float | None:
        return sum(self._recent) / len(self._recent) if self._recent else None

    async def flush(self) -> None:
        if not self._rows or self.pool is None:
            return
        rows, self._rows = self._rows, []
        try:
            await self.pool.executemany(
                "INSERT INTO decision_shadow_results (task_id, model_name, shadow_version, "
                "tenant_id, live_version, live_label, live_confidence, shadow_label, "
                "shadow_confidence, agree) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10) "
                "ON CONFLICT DO NOTHING", rows)
        except (OSError, asyncpg.PostgresError) as exc:  # evidence, not state: log and move on
            log.warning("could not record %d shadow results: %r", len(rows), exc)

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self._flush_s)
            await self.flush()


__all__ = ["SHADOW_AGREEMENT", "SHADOW_COMPARISONS", "ShadowRunner"]
