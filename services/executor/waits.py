"""Callback waits: ``ExecutorService.CompleteWait`` settles a plan's wait step.

A wait step with a ``callback`` is recorded WAITING in ``executions`` and its job parked
(``blocked_by`` 'callback') until the callback comes or its timeout passes. The system the
plan waits on calls CompleteWait with the token ``<task_id>:<step_id>`` (an earlier step sends
it, e.g. the payload template ``"${task.task_id}:3-bank_confirmation"``): the step is settled
in one conditional UPDATE (SUCCEEDED with the callback's output, or FAILED_PERMANENT with its
error, which compensates the finished steps), so a callback and the timeout, or two callbacks,
never both win; then the task's job is woken and the plan goes on at once.

A caller sees only its own tenant's tasks: another tenant's task is NOT_FOUND, as a task that
does not exist, so the answer says nothing about other tenants.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg

from services.executor.connectors import MAX_OUTPUT_CHARS, answer_output
from services.executor.jobs import JobStore
from services.executor.runner import WAITING_NAME, kept_output, settle_waiting
from switchyard.messaging import EXECUTIONS, Producer
from switchyard.privacy import Withheld, downstream_excerpt
from switchyard.rpc import FieldViolation
from switchyard.tasks import TERMINAL
from switchyard.v1 import ExecutionResult, StepKind, StepOutcome

MAX_TOKEN_CHARS = 200
MAX_ERROR_CHARS = 500
_STEP_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")


class WaitNotFound(LookupError):
    """No such waiting step for this caller (unknown task or step, another tenant's task, a
    step that is not a callback wait, or one the plan has not reached yet)."""


class WaitNotWaiting(Exception):
    """The step is not waiting any more: completed, timed out, or the task ended or is being
    cancelled."""


def parse_token(token: str) -> tuple[str, str]:
    """``<task_id>:<step_id>`` -> (task_id, step_id); FieldViolation on anything else."""
    if not token:
        raise FieldViolation("token", "required: '<task_id>:<step_id>' of a waiting step")
    if len(token) > MAX_TOKEN_CHARS:
        raise FieldViolation("token", f"longer than {MAX_TOKEN_CHARS} characters")
    task_id, sep, step_id = token.partition(":")
    try:
        task = str(uuid.UUID(task_id))
    except ValueError:
        task = ""
    if not sep or not task or task_id.lower() != task:  # the canonical form, any case
        raise FieldViolation("token", "must be '<task_id>:<step_id>' with task_id a UUID "
                                      "(as the plan's ${task.task_id} renders it)")
    if not _STEP_ID.fullmatch(step_id):
        raise FieldViolation("token", f"step id must match {_STEP_ID.pattern}")
    return task, step_id


def callback_output(output: dict[str, Any]) -> dict[str, Any]:
    """The callback's output as it is kept (redacted like a downstream's answer: it is stored
    in ``executions`` and published on the ``executions`` topic)."""
    if not output:
        return {}
    parsed = answer_output(json.dumps(output, ensure_ascii=False))
    kept = kept_output(parsed, Withheld()) if parsed is not None else None
    if kept is None:
        raise FieldViolation("output", f"larger than {MAX_OUTPUT_CHARS} characters as JSON")
    return kept


class Waits:
    def __init__(self, pool: asyncpg.Pool, jobs: JobStore, producer: Producer,
                 wake_resumer: Callable[[], None]) -> None:
        self.pool = pool
        self.jobs = jobs
        self.producer = producer
        self.wake_resumer = wake_resumer

    async def complete(self, may_access: Callable[[str], bool], token: str,
                       output: dict[str, Any], error: str) -> ExecutionResult:
        """Settle the callback wait named by ``token``; raises FieldViolation, WaitNotFound or
        WaitNotWaiting."""
        task_id, step_id = parse_token(token)
        kept = callback_output(output)
        task = await self.pool.fetchrow(
            "SELECT tenant_id, status FROM tasks WHERE task_id = $1", uuid.UUID(task_id))
        if task is None or not may_access(task["tenant_id"]):
            raise WaitNotFound(f"no task {task_id}")
        step = await self.jobs.plan_step(task_id, step_id)
        if step is None or step.kind != StepKind.STEP_KIND_WAIT or not step.wait.callback:
            raise WaitNotFound(f"task {task_id} has no callback wait step {step_id!r}")
        outcome = await self.pool.fetchval(
            "SELECT outcome FROM executions WHERE task_id = $1 AND step_id = $2",
            uuid.UUID(task_id), step_id)
        if outcome is None:
            raise WaitNotFound(f"step {step_id!r} of task {task_id} is not waiting yet")
        cancelled = await self.pool.fetchval(
            "SELECT 1 FROM cancellation_requests WHERE task_id = $1", uuid.UUID(task_id))
        if outcome != WAITING_NAME or task["status"] in TERMINAL or cancelled:
            raise WaitNotWaiting(self._not_waiting(task_id, step_id, outcome, task["status"],
                                                   bool(cancelled)))
        if error:
            reason = downstream_excerpt(error, MAX_ERROR_CHARS)
            settled = await settle_waiting(
                self.pool, task_id, task["tenant_id"], step_id,
                StepOutcome.STEP_OUTCOME_FAILED_PERMANENT,
                error=f"callback {step.wait.callback!r} failed: {reason}")
        else:
            settled = await settle_waiting(
                self.pool, task_id, task["tenant_id"], step_id, StepOutcome.STEP_OUTCOME_SUCCEEDED,
                summary=f"callback {step.wait.callback!r} completed", output=kept)
        if settled is None:  # settled by the timeout or another callback just now
            raise WaitNotWaiting(f"step {step_id!r} of task {task_id} is not waiting any more")
        await self.producer.send(EXECUTIONS, task_id, settled)
        await self.jobs.wake(task_id)
        self.wake_resumer()
        return settled

    @staticmethod
    def _not_waiting(task_id: str, step_id: str, outcome: str, status: str,
                     cancelled: bool) -> str:
        if cancelled or status in TERMINAL:
            return f"task {task_id} is {status if status in TERMINAL else 'being cancelled'}: " \
                   f"step {step_id!r} is not waiting any more"
        return (f"step {step_id!r} of task {task_id} is not waiting any more "
                f"({outcome.removeprefix('STEP_OUTCOME_').lower()})")


__all__ = ["MAX_TOKEN_CHARS", "WaitNotFound", "WaitNotWaiting", "Waits", "callback_output",
           "parse_token"]
