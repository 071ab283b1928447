"""Connectors: how one action step reaches a downstream system.

Each call carries the step's idempotency key (derived from task id and step id), so the
downstream can make a repeated call a no-op; connectors classify failures as retryable or
permanent so the runner knows whether to back off and retry or to compensate. The HTTP and
gRPC connectors live in their own modules; the SQL connector is here.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

import asyncpg

from switchyard.privacy import Withheld, downstream_excerpt


class StepError(Exception):
    """A step failed; ``retryable`` says whether trying again may help.

    ``retry_after_s`` is the downstream's own hint (HTTP 429/503 ``Retry-After``), honoured
    instead of the computed backoff when present.
    """

    def __init__(self, message: str, retryable: bool, retry_after_s: float | None = None,
                 answer: Answer | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after_s = retry_after_s
        #: the downstream's answer when it gave one (a step's ``retry_later`` reads it)
        self.answer = answer


class PermanentStepError(StepError):
    """Raised for permanent failures so circuit breakers can exclude them by type: a 4xx says
    the request was wrong, not that the endpoint is unhealthy."""

    def __init__(self, message: str, answer: Answer | None = None) -> None:
        super().__init__(message, retryable=False, answer=answer)


def permanent(message: str, answer: Answer | None = None) -> PermanentStepError:
    return PermanentStepError(message, answer)


def retryable(message: str, retry_after_s: float | None = None) -> StepError:
    return StepError(message, retryable=True, retry_after_s=retry_after_s)


@dataclass(frozen=True)
class Answer:
    """What a downstream answered, as a step's ``retry_later`` condition reads it
    (``answer.status``, ``answer.body``): the HTTP status or the gRPC status code's number,
    and the answer's JSON object ({} when it had none). Unredacted: it is only evaluated,
    never stored."""

    status: int
    body: dict[str, Any] = field(default_factory=dict)

    def as_context(self) -> dict[str, Any]:
        return {"status": self.status, "body": dict(self.body)}


@dataclass(frozen=True)
class StepCall:
    task_id: str
    tenant_id: str
    step_id: str
    target: str             # as written in the plan (alias form)
    address: str            # resolved: URL, host:port or SQL table
    method: str             # gRPC method path; empty otherwise
    operation: str
    payload: dict[str, Any]
    idempotency_key: str
    timeout_s: float
    #: the decision's personal and health fields: what is kept of the answer withholds them
    withheld: Withheld | None = None


@dataclass(frozen=True)
class StepOutcome:
    summary: str
    duplicate: bool  # the downstream had already applied this idempotency key
    #: what later steps read as ``steps.<name>.output`` (see :func:`answer_output`): the
    #: full answer; the runner keeps it sealed and stores and publishes it only redacted
    output: dict[str, Any] | None = None
    #: the status the downstream answered with (``retry_later``); None: not told
    answer: Answer | None = None


#: An answer longer than this is not kept as a step's output.
MAX_OUTPUT_CHARS = 16 * 1024


def answer_output(text: str) -> dict[str, Any] | None:
    """A downstream's JSON object answer as the step's output, as it came: the runner keeps
    it sealed for the plan's templates and stores and publishes it only redacted
    (:func:`~switchyard._dataclass.withhold_answer`); None for any other answer, or one longer
    than :data:`MAX_OUTPUT_CHARS`."""
    if not text.lstrip().startswith("{") or len(text) > MAX_OUTPUT_CHARS:
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


class Connector(Protocol):
    """What carries a step to a downstream; custom ones register in the entry point group
    ``switchyard.connectors`` (see :mod:`services.executor.custom_connectors`). ``call``
    raises :class:`StepError` (``retryable`` or ``permanent``) when the step fails."""

    async def call(self, step: StepCall) -> StepOutcome: ...

    async def close(self) -> None: ...


class SqlConnector:
    """Writes a step as one row of the target database's ``downstream_records`` ledger.

    ``ON CONFLICT (idempotency_key) DO NOTHING`` makes a redelivered step land once.
    """

    def __init__(self, pool: asyncpg.Pool, owns_pool: bool = False) -> None:
        self._pool = pool
        self._owns_pool = owns_pool

    async def call(self, step: StepCall) -> StepOutcome:
        try:
            row = await self._pool.fetchrow(
                "INSERT INTO downstream_records (idempotency_key, task_id, tenant_id, system, "
                "operation, payload) VALUES ($1, $2, $3, $4, $5, $6::jsonb) "
                "ON CONFLICT (idempotency_key) DO NOTHING RETURNING recorded_at",
                step.idempotency_key, uuid.UUID(step.task_id), step.tenant_id, step.address,
                step.operation, json.dumps(step.payload), timeout=step.timeout_s,
            )
        except (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError,
                TimeoutError) as exc:
            raise retryable(f"{step.address}: {exc!r}") from None
        except asyncpg.PostgresError as exc:
            raise permanent(f"{step.address}: "
                            f"{downstream_excerpt(str(exc), withheld=step.withheld)}") from None
        return StepOutcome(
            summary=f"recorded in {step.address}" if row else f"already in {step.address}",
            duplicate=row is None,
        )

    async def close(self) -> None:
        if self._owns_pool:
            await self._pool.close()
