"""Connectors: how one action step reaches a downstream system.

Each call carries the step's idempotency key (derived from task id and step id), so the
downstream can make a repeated call a no-op; connectors classify failures as retryable or
permanent so the runner knows whether to back off and retry or to compensate.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg


class StepError(Exception):
    """A step failed; ``retryable`` says whether trying again may help."""

    def __init__(self, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class StepCall:
    task_id: str
    tenant_id: str
    step_id: str
    target: str
    operation: str
    payload: dict[str, Any]
    idempotency_key: str
    timeout_s: float


@dataclass(frozen=True)
class StepOutcome:
    summary: str
    duplicate: bool  # the downstream had already applied this idempotency key


class Connector(Protocol):
    async def call(self, step: StepCall) -> StepOutcome: ...


_TARGET = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)?$")


class SqlConnector:
    """Writes a step as one row of the target database's ``downstream_records`` ledger.

    ``ON CONFLICT (idempotency_key) DO NOTHING`` makes a redelivered step land once.
    """

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def call(self, step: StepCall) -> StepOutcome:
        if not _TARGET.match(step.target):
            raise StepError(f"invalid SQL target {step.target!r}", retryable=False)
        try:
            row = await self._pool.fetchrow(
                "INSERT INTO downstream_records (idempotency_key, task_id, tenant_id, system, "
                "operation, payload) VALUES ($1, $2, $3, $4, $5, $6::jsonb) "
                "ON CONFLICT (idempotency_key) DO NOTHING RETURNING recorded_at",
                step.idempotency_key, uuid.UUID(step.task_id), step.tenant_id, step.target,
                step.operation, json.dumps(step.payload), timeout=step.timeout_s,
            )
        except (asyncpg.PostgresConnectionError, OSError, TimeoutError) as exc:
            raise StepError(f"{step.target}: {exc}", retryable=True) from None
        except asyncpg.PostgresError as exc:
            raise StepError(f"{step.target}: {exc}", retryable=False) from None
        return StepOutcome(
            summary=f"recorded in {step.target}" if row else f"already in {step.target}",
            duplicate=row is None,
        )
