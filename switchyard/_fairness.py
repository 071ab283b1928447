"""Serving tenants fairly wherever work queues: weights, shares of a limit, and a weighted
fair queue.

One tenant's burst must not become every tenant's wait. The same two rules apply wherever
Switchyard holds work for several tenants (ingest's backlog, the decision service's
micro-batchers):

- **shares**: a bounded queue is split by weight among the tenants with work waiting, so a
  tenant that holds its share is refused (pushed back) while the others still get in;
- **order**: what waits is served by *start-time fair queueing* across tenants: each tenant
  advances a virtual clock by ``1 / weight`` per item served, and the tenant whose clock is
  furthest behind goes next, so a tenant of weight 3 gets three items for another's one,
  and a tenant that arrives while another has hundreds waiting is served at once instead of
  after them. Within a tenant, the most urgent priority first (0 before 3), then arrival.

Weights come from ``tenant_weights`` (``tenant:weight``, comma separated; a tenant not named
weighs 1).
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Container, Iterable, Mapping
from typing import Generic, TypeVar

T = TypeVar("T")


def parse_weights(text: str) -> dict[str, float]:
    """``tenant:weight`` entries, comma separated (the ``tenant_weights`` setting)."""
    weights: dict[str, float] = {}
    for entry in filter(None, (e.strip() for e in text.split(","))):
        tenant, _, weight = entry.rpartition(":")
        try:
            value = float(weight)
        except ValueError:
            value = -1.0
        if not tenant.strip() or not value > 0 or math.isinf(value):
            raise ValueError(f"tenant_weights: {entry!r} is not 'tenant:weight' with a weight "
                             "> 0")
        weights[tenant.strip()] = value
    return weights


def weighted_share(limit: int, tenant: str, weights: Mapping[str, float],
                   waiting: Iterable[str]) -> int:
    """``tenant``'s share of ``limit``: split by weight among the tenants in ``waiting`` and
    itself (at least 1; rounded up, so the shares never add up to less than the limit)."""
    weight = weights.get(tenant, 1.0)
    others = sum(weights.get(t, 1.0) for t in set(waiting) - {tenant})
    return max(1, math.ceil(limit * weight / (weight + others)))


class FairQueue(Generic[T]):
    """Items of many tenants, taken in weighted fair order (see the module's docstring).

    Not thread-safe: one event loop's use. ``take`` on an empty queue raises IndexError.
    """

    def __init__(self, weights: Mapping[str, float] | None = None) -> None:
        self.weights = dict(weights or {})
        self._items: dict[str, list[tuple[int, int, T]]] = {}  # tenant -> (priority, seq, item)
        self._turns: list[tuple[float, int, str]] = []  # (virtual start, seq, tenant)
        self._clock: dict[str, float] = {}  # a waiting tenant's next virtual start
        self._now = 0.0  # the virtual start of the item taken last
        self._seq = itertools.count()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def waiting(self, tenant: str) -> int:
        return len(self._items.get(tenant, ()))

    def tenants(self) -> list[str]:
        """The tenants with items waiting."""
        return list(self._items)

    def put(self, tenant: str, priority: int, item: T) -> None:
        items = self._items.get(tenant)
        if items is None:  # (re)joining: no credit for the time it had nothing waiting
            items = self._items[tenant] = []
            start = max(self._now, self._clock.get(tenant, 0.0))
            self._clock[tenant] = start
            heapq.heappush(self._turns, (start, next(self._seq), tenant))
        heapq.heappush(items, (priority, next(self._seq), item))
        self._size += 1

    def take(self, among: Container[str] | None = None) -> T:
        """The next item in fair order; with ``among``, the next of those tenants' items (the
        others keep their turns, and the queue's virtual time stays where the unrestricted
        order left it). IndexError when none of them has an item waiting."""
        skipped: list[tuple[float, int, str]] = []
        try:
            while True:
                start, seq, tenant = heapq.heappop(self._turns)
                if among is None or tenant in among:
                    break
                skipped.append((start, seq, tenant))
        finally:
            for turn in skipped:
                heapq.heappush(self._turns, turn)
        items = self._items[tenant]
        _, _, item = heapq.heappop(items)
        self._size -= 1
        if among is None:
            self._now = start
        self._clock[tenant] = start + 1.0 / self.weights.get(tenant, 1.0)
        if items:
            heapq.heappush(self._turns, (self._clock[tenant], next(self._seq), tenant))
        else:
            del self._items[tenant]
        return item


__all__ = ["FairQueue", "parse_weights", "weighted_share"]
