"""HTTP/JSON connector: webhooks and REST APIs.

The step's payload is the JSON body; its idempotency key travels in the ``Idempotency-Key``
header (IETF draft-ietf-httpapi-idempotency-key-header), with task, tenant, step and
operation in ``X-Switchyard-*`` headers and the trace context in ``traceparent``. The
operation names the HTTP method when it is one (``DELETE`` for a compensation), else POST.

Classification: 2xx succeeds; 408, 425, 429 and 5xx are retryable (``Retry-After`` honoured,
in seconds or as an HTTP date); every other status is permanent; timeouts and connection
failures are retryable.

Of the answer, only :func:`switchyard._dataclass.downstream_excerpt` is kept in plain storage
(the status plus a redacted excerpt of the body, the decision's personal and health values
withheld): ERPs echo what was posted, and that carries the extracted
fields. A JSON object answer also becomes the step's output for later steps
(:func:`~services.executor.connectors.answer_output`; kept sealed, stored and published
redacted the same way), and the status and that object are what a step's ``retry_later``
condition reads, for a success or a permanent failure.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

import aiohttp
from opentelemetry import propagate

from services.executor.connectors import (
    Answer,
    StepCall,
    StepOutcome,
    answer_output,
    permanent,
    retryable,
)
from switchyard.privacy import downstream_excerpt

METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
RETRYABLE_STATUSES = frozenset({408, 425, 429})


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date; None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


def is_retryable_status(status: int) -> bool:
    return status in RETRYABLE_STATUSES or status >= 500


def method_for(operation: str) -> str:
    upper = operation.upper()
    return upper if upper in METHODS else "POST"


class HttpConnector:
    def __init__(self, max_connections: int = 100) -> None:
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections),
                json_serialize=json.dumps,
            )
        return self._session

    async def call(self, step: StepCall) -> StepOutcome:
        method = method_for(step.operation)
        headers = {
            "Idempotency-Key": step.idempotency_key,
            "X-Switchyard-Task-Id": step.task_id,
            "X-Switchyard-Tenant-Id": step.tenant_id,
            "X-Switchyard-Step-Id": step.step_id,
            "X-Switchyard-Operation": step.operation,
            "Accept": "application/json",
        }
        propagate.inject(headers)
        body = None if method in ("GET", "DELETE") and not step.payload else step.payload
        timeout = aiohttp.ClientTimeout(total=step.timeout_s)
        where = f"{method} {step.target}"
        try:
            async with self._client().request(method, step.address, json=body, headers=headers,
                                              timeout=timeout) as response:
                text = await response.text(errors="replace")
                status = response.status
                replayed = response.headers.get("Idempotent-Replayed", "").lower() == "true"
                hint = retry_after_seconds(response.headers.get("Retry-After"))
        except asyncio.TimeoutError:
            raise retryable(f"{where}: no answer within {step.timeout_s:g}s") from None
        except aiohttp.InvalidURL as exc:
            raise permanent(f"{where}: invalid URL {exc}") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise retryable(f"{where}: {type(exc).__name__}: {exc}") from None
        detail = downstream_excerpt(text, withheld=step.withheld)
        body = answer_output(text)
        answer = Answer(status, body or {})
        if 200 <= status < 300:
            return StepOutcome(summary=f"HTTP {status} {detail}".strip(), duplicate=replayed,
                               output=body, answer=answer)
        if is_retryable_status(status):
            raise retryable(f"{where}: HTTP {status} {detail}".strip(), hint)
        raise permanent(f"{where}: HTTP {status} {detail}".strip(), answer)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
