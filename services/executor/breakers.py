"""Circuit breakers: one pybreaker per downstream endpoint, consistent across replicas.

Each replica keeps a local ``pybreaker.CircuitBreaker`` per endpoint (consecutive retryable
failures trip it; permanent errors do not count: a 4xx says the request was wrong, not that the
endpoint is down). PostgreSQL holds the shared state (``executor_breakers``) and every
replica follows the same rules:

* **Open is shared.** The first replica whose breaker trips publishes OPEN (with the
  database's clock as ``opened_at``); every replica adopts it within one poll interval, so no
  replica keeps hammering an endpoint another one found down. Failure counting stays local
  (consecutive failures one replica saw), which is what trips a breaker fast without a
  database write per failure.
* **One probe, cluster-wide.** Calls never pass an open breaker on the hot path: tasks that
  meet it are parked. After ``executor_breaker_reset_s`` one replica takes the probe lease (a
  conditional UPDATE, so exactly one wins), half-opens its breaker and runs one parked task
  through it. A failed probe re-opens the breaker with a fresh ``opened_at``; a prober that
  dies loses its lease after it expires and another replica probes.
* **Closed is shared.** A successful probe (or ``ResetBreaker``) publishes CLOSED; every
  replica closes and the resumers run the endpoint's parked tasks.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg
import pybreaker
from prometheus_client import Counter, Gauge

from services.executor.connectors import StepError
from switchyard.access import Principal
from switchyard.audit import append as audit_append

log = logging.getLogger(__name__)

CLOSED, OPEN, HALF_OPEN = pybreaker.STATE_CLOSED, pybreaker.STATE_OPEN, pybreaker.STATE_HALF_OPEN
_GAUGE_VALUE = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}

BREAKER_STATE = Gauge(
    "switchyard_executor_breaker_state",
    "Circuit breaker state per downstream endpoint (0 closed, 1 half-open, 2 open).",
    ["endpoint"],
)
BREAKER_TRANSITIONS = Counter(
    "switchyard_executor_breaker_transitions_total",
    "Breaker state changes seen by this replica, by new state.",
    ["endpoint", "state"],
)


class BreakerOpen(Exception):
    """The endpoint's breaker is open: park the task until ``retry_at``."""

    def __init__(self, endpoint: str, retry_at: datetime, detail: str = "") -> None:
        super().__init__(f"circuit breaker for {endpoint} is open"
                         + (f" ({detail})" if detail else ""))
        self.endpoint = endpoint
        self.retry_at = retry_at
        self.detail = detail


def _is_business_error(exc: BaseException) -> bool:
    return isinstance(exc, StepError) and not exc.retryable


@dataclass(frozen=True)
class SharedState:
    name: str
    state: str
    failure_count: int
    opened_at: datetime | None
    probe_owner: str | None
    updated_by: str


class _Listener(pybreaker.CircuitBreakerListener):
    def __init__(self, board: BreakerBoard) -> None:
        self.board = board

    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: Any, new_state: Any) -> None:
        name = cb.name or ""
        new = new_state.name
        BREAKER_STATE.labels(name).set(_GAUGE_VALUE[new])
        BREAKER_TRANSITIONS.labels(name, new).inc()
        self.board.local_version[name] = self.board.local_version.get(name, 0) + 1
        if self.board.adopting:
            return
        old = old_state.name if old_state is not None else CLOSED
        log.warning("breaker %s: %s -> %s", name, old, new)
        self.board.pending.append((name, new, old == HALF_OPEN, cb.fail_counter))


class BreakerBoard:
    """This replica's breakers plus the protocol that keeps them in step with the others."""

    def __init__(self, pool: asyncpg.Pool, owner: str, fail_max: int, reset_s: float,
                 probe_lease_s: float) -> None:
        self.pool = pool
        self.owner = owner
        self.fail_max = fail_max
        self.reset_s = reset_s
        self.probe_lease_s = probe_lease_s
        self.breakers: dict[str, pybreaker.CircuitBreaker] = {}
        self.pending: list[tuple[str, str, bool, int]] = []
        self.local_version: dict[str, int] = {}
        self.shared: dict[str, SharedState] = {}
        self.adopting = False
        self._listener = _Listener(self)

    # -- local -------------------------------------------------------------------------------
    def get(self, endpoint: str) -> pybreaker.CircuitBreaker:
        breaker = self.breakers.get(endpoint)
        if breaker is None:
            # reset_timeout is never reached on the hot path: open breakers are only passed by
            # an explicit probe (half_open), so pybreaker never half-opens on its own.
            breaker = pybreaker.CircuitBreaker(
                fail_max=self.fail_max, reset_timeout=10 * 365 * 86400.0,
                exclude=[_is_business_error], listeners=[self._listener], name=endpoint,
            )
            self.breakers[endpoint] = breaker
            BREAKER_STATE.labels(endpoint).set(0)
        return breaker

    def retry_at(self, endpoint: str) -> datetime:
        """When the endpoint's next probe may run (now + reset when nothing better is known)."""
        shared = self.shared.get(endpoint)
        opened = shared.opened_at if shared and shared.opened_at else None
        if opened is None:
            opened = self.get(endpoint)._state_storage.opened_at or datetime.now(timezone.utc)
        return opened + timedelta(seconds=self.reset_s)

    def check(self, endpoint: str, probe: bool = False) -> None:
        """Raise :class:`BreakerOpen` unless a call to ``endpoint`` may go out now."""
        breaker = self.get(endpoint)
        state = breaker.current_state
        if state == CLOSED:
            return
        if probe:
            if state == OPEN:
                breaker.half_open()
            return
        raise BreakerOpen(endpoint, self.retry_at(endpoint))

    @contextlib.contextmanager
    def calling(self, endpoint: str) -> Iterator[None]:
        """Guard one call; a trip turns into :class:`BreakerOpen`."""
        try:
            with self.get(endpoint).calling():
                yield
        except pybreaker.CircuitBreakerError as exc:
            raise BreakerOpen(endpoint, self.retry_at(endpoint), str(exc)) from None

    def end_probe(self, endpoint: str) -> None:
        """A probe run that never reached its endpoint leaves it open, not half-open."""
        breaker = self.get(endpoint)
        if breaker.current_state == HALF_OPEN:
            breaker.open()

    # -- shared ------------------------------------------------------------------------------
    async def flush(self) -> None:
        """Publish this replica's own transitions, in order."""
        while self.pending:
            name, state, reopen, failures = self.pending.pop(0)
            if state == OPEN:
                row = await self.pool.fetchrow(
                    """
                    INSERT INTO executor_breakers AS b (name, state, failure_count, opened_at,
                                                        updated_by)
                    VALUES ($1, 'open', $2, now(), $3)
                    ON CONFLICT (name) DO UPDATE
                       SET state = 'open', failure_count = EXCLUDED.failure_count,
                           opened_at = now(), probe_owner = NULL, probe_until = NULL,
                           updated_by = EXCLUDED.updated_by, updated_at = now()
                     WHERE b.state = 'closed' OR $4
                    RETURNING opened_at
                    """, name, failures, self.owner, reopen)
                if row is None:  # already open elsewhere: keep the first opened_at
                    row = await self.pool.fetchrow(
                        "SELECT opened_at FROM executor_breakers WHERE name = $1", name)
                if row is not None and row["opened_at"] is not None:
                    self.get(name)._state_storage.opened_at = row["opened_at"]
            elif state == HALF_OPEN:
                await self.pool.execute(
                    "UPDATE executor_breakers SET state = 'half-open', updated_by = $2, "
                    "updated_at = now() WHERE name = $1 AND state <> 'closed'", name, self.owner)
            else:
                await self.pool.execute(
                    "UPDATE executor_breakers SET state = 'closed', failure_count = 0, "
                    "opened_at = NULL, probe_owner = NULL, probe_until = NULL, updated_by = $2, "
                    "updated_at = now() WHERE name = $1 AND state <> 'closed'", name, self.owner)

    async def sync(self) -> None:
        """Adopt what other replicas published (after publishing our own changes)."""
        await self.flush()
        before = dict(self.local_version)
        rows = await self.pool.fetch(
            "SELECT name, state, failure_count, opened_at, probe_owner, updated_by "
            "FROM executor_breakers")
        for row in rows:
            shared = SharedState(**dict(row))
            self.shared[shared.name] = shared
            name = shared.name
            if self.local_version.get(name, 0) != before.get(name, 0) or any(
                    p[0] == name for p in self.pending):
                continue  # changed locally while we read: our write goes first
            breaker = self.get(name)
            local = breaker.current_state
            self.adopting = True
            try:
                if shared.state == CLOSED and local != CLOSED:
                    log.info("breaker %s: closed by %s", name, shared.updated_by)
                    breaker.close()
                elif shared.state != CLOSED and (local == CLOSED or (
                        local == HALF_OPEN and shared.probe_owner != self.owner)):
                    log.info("breaker %s: opened by %s", name, shared.updated_by)
                    breaker.open()
                if shared.state != CLOSED and shared.opened_at is not None:
                    breaker._state_storage.opened_at = shared.opened_at
            finally:
                self.adopting = False

    async def claim_probes(self) -> list[str]:
        """Endpoints whose probe this replica won: open long enough, nobody probing, and a
        parked task to probe with."""
        rows = await self.pool.fetch(
            """
            UPDATE executor_breakers b
               SET probe_owner = $1, probe_until = now() + make_interval(secs => $2),
                   updated_at = now()
             WHERE b.state IN ('open', 'half-open')
               AND (b.probe_until IS NULL OR b.probe_until < now())
               AND (b.state = 'half-open' OR b.opened_at <= now() - make_interval(secs => $3))
               AND EXISTS (SELECT 1 FROM executor_jobs j WHERE j.state = 'parked'
                              AND j.blocked_by = 'breaker' AND j.endpoint = b.name)
            RETURNING name
            """, self.owner, self.probe_lease_s, self.reset_s)
        return [row["name"] for row in rows]

    async def release_probe(self, endpoint: str) -> None:
        await self.pool.execute(
            "UPDATE executor_breakers SET probe_owner = NULL, probe_until = NULL "
            "WHERE name = $1 AND probe_owner = $2", endpoint, self.owner)

    async def reset(self, name: str, principal: Principal) -> SharedState | None:
        """Close a breaker by hand, for every replica; None if no such breaker is known.

        An operator action: the shared row names who reset it, and an audit entry
        (``breaker.reset``, in the executor chain of the operator's tenant) is appended in the
        same transaction, so the trail shows every manual override of the executor's
        protection.
        """
        async with self.pool.acquire() as conn, conn.transaction():
            previous = await conn.fetchval(
                "SELECT state FROM executor_breakers WHERE name = $1 FOR UPDATE", name)
            row = await conn.fetchrow(
                "UPDATE executor_breakers SET state = 'closed', failure_count = 0, "
                "opened_at = NULL, probe_owner = NULL, probe_until = NULL, updated_by = $2, "
                "updated_at = now() WHERE name = $1 RETURNING name, state, failure_count, "
                "opened_at, probe_owner, updated_by", name,
                f"{principal.key_id} (reset on {self.owner})")
            if row is None and name not in self.breakers:
                return None
            previous = previous or self.get(name).current_state  # known here only
            await audit_append(conn, principal.tenant_id, principal.key_id, "breaker.reset",
                               {"breaker": name, "previous_state": previous,
                                "replica": self.owner}, writer="executor")
        self.adopting = True
        try:
            self.get(name).close()
        finally:
            self.adopting = False
        if row is None:
            return SharedState(name, CLOSED, 0, None, None, self.owner)
        shared = SharedState(**dict(row))
        self.shared[name] = shared
        return shared

    async def snapshot(self) -> list[tuple[SharedState, int]]:
        """Every known breaker (shared rows, plus endpoints only this replica has called),
        with the number of tasks blocked on its endpoint: parked until it closes or until
        their retry time, or taken out of the park for a probe or a retry that has not ended
        yet (a job's ``blocked_by`` is cleared only when it finishes), so a probe in flight
        does not make a blocked task vanish from the count."""
        rows = await self.pool.fetch(
            "SELECT name, state, failure_count, opened_at, probe_owner, updated_by "
            "FROM executor_breakers")
        parked = {r["endpoint"]: r["n"] for r in await self.pool.fetch(
            "SELECT endpoint, count(*) AS n FROM executor_jobs "
            "WHERE state IN ('parked', 'running') AND blocked_by <> '' GROUP BY endpoint")}
        states = {row["name"]: SharedState(**dict(row)) for row in rows}
        for name, breaker in self.breakers.items():
            if name not in states:
                states[name] = SharedState(name, breaker.current_state, breaker.fail_counter,
                                           None, None, self.owner)
            elif states[name].state == CLOSED:
                current = states[name]
                states[name] = SharedState(name, CLOSED, breaker.fail_counter, None, None,
                                           current.updated_by)
        return [(states[name], parked.get(name, 0)) for name in sorted(states)]
