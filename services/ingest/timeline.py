"""GetTaskTimeline: a task's story from the system of record, oldest first.

Two sources, merged by time: ingest's ``task_status_history`` (every status change, with the
service that recorded it) and the task's entries in the hash-chained audit trail
(:func:`switchyard._audit.task_story`: decisions with their models, pack and rule; executed
and compensated steps; review verdicts, approvals, expiries and withdrawals; operator actions
such as a cancellation or a re-drive). A status change and the audit entry written in the
same transaction share that transaction's time or follow it (the audit entry takes the clock
when it is appended), so the change is listed first.

Each entry carries a one-line ``summary`` (:func:`summary`), the one formatter the CLI table
and the operator console show; ``detail`` keeps the full record.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import asyncpg
from google.protobuf import json_format, struct_pb2

from switchyard.audit import append as audit_append, task_story
from switchyard.tasks import stage_value, status_value, timestamp
from switchyard.v1 import TimelineEntry, TimelineSource

#: The action name of a status change (audit entries carry their own).
STATUS_CHANGED = "status.changed"
#: RetryTask's audit entries: on the old task, and on the new one (naming ``retry_of``).
RETRIED = "task.retried"
CREATED_AS_RETRY = "task.created_as_retry"


async def entries(conn: asyncpg.Connection, task_id: str) -> list[TimelineEntry]:
    """Every status change and audit entry of the task, oldest first."""
    history = await conn.fetch(
        "SELECT seq, status, stage, reason, detail, service, occurred_at "
        "FROM task_status_history WHERE task_id = $1 ORDER BY seq", uuid.UUID(task_id))
    audit = await task_story(conn, task_id)
    merged: list[tuple[datetime, int, int, TimelineEntry]] = []
    for row in history:
        said = struct_pb2.Struct()
        if row["detail"]:  # the decision's explanation, what a failure was
            said.update({"detail": row["detail"]})
        merged.append((row["occurred_at"], 0, row["seq"], TimelineEntry(
            occurred_at=timestamp(row["occurred_at"]),
            source=TimelineSource.TIMELINE_SOURCE_STATUS,
            status=status_value(row["status"]), stage=stage_value(row["stage"]),
            reason=row["reason"], actor=row["service"], action=STATUS_CHANGED, detail=said,
            summary=status_summary(row["status"], row["stage"], row["reason"],
                                   row["detail"]))))
    for row in audit:
        recorded = _as_object(row["detail"])
        detail = struct_pb2.Struct()
        json_format.ParseDict(recorded, detail)
        merged.append((row["occurred_at"], 1, row["entry_id"], TimelineEntry(
            occurred_at=timestamp(row["occurred_at"]),
            source=TimelineSource.TIMELINE_SOURCE_AUDIT, actor=row["actor"],
            action=row["action"], detail=detail, entry_hash=row["entry_hash"],
            summary=summary(row["action"], row["actor"], recorded))))
    merged.sort(key=lambda item: item[:3])
    return [entry for *_, entry in merged]


async def record_retry(conn: asyncpg.Connection, tenant_id: str, old_task_id: str,
                       new_task_id: str, attempt: int, principal: str) -> None:
    """RetryTask's two audit entries, in the transaction that creates the new task: the old
    task's timeline says it was retried and as which task; the new one's says where it came
    from (its ``retry_of``)."""
    await audit_append(conn, tenant_id, principal, RETRIED,
                       {"new_task_id": new_task_id, "attempt": attempt, "principal": principal},
                       task_id=old_task_id, writer="ingest")
    await audit_append(conn, tenant_id, principal, CREATED_AS_RETRY,
                       {"retry_of": old_task_id, "attempt": attempt, "principal": principal},
                       task_id=new_task_id, writer="ingest")


def status_summary(status: str, stage: str, reason: str, detail: str = "") -> str:
    """A status change in one line: "→ BLOCKED at AWAITING_REVIEW (amount_over_limit)", then
    its detail's first line, cut at 200 characters ("→ FAILED at DONE (invalid_plan): alias
    'wms' of target ...")."""
    line = f"\u2192 {status}"
    if stage:
        line += f" at {stage}"
    line += f" ({reason})" if reason else ""
    first = detail.strip().splitlines()[0] if detail.strip() else ""
    if first and not first.startswith(reason + ":"):
        return f"{line}: {first[:200]}"
    if first:  # "invalid_plan: ...": the reason is said once
        return f"{line}: {first[len(reason) + 1:].strip()[:200]}"
    return line


def summary(action: str, actor: str, detail: Mapping[str, Any]) -> str:
    """An audit entry in one line a person reads; unknown actions name their detail's keys.

    Numbers are written as integers when they are whole (the detail travels as a
    ``google.protobuf.Struct``, whose numbers are doubles)."""
    writer = _SUMMARIES.get(action)
    if writer is not None:
        try:
            return writer(detail, actor)
        except (KeyError, TypeError, ValueError, AttributeError):  # an older detail's shape
            pass
    shown = ", ".join(f"{key} {_plain(value)}" for key, value in sorted(detail.items())
                      if not isinstance(value, (dict, list)) and not key.endswith("_sha256")
                      and value not in ("", None))
    return f"{action}: {shown}" if shown else action


def _plain(value: object) -> str:
    """A scalar as a person writes it: 1 rather than 1.0, yes/no for booleans."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _count(number: object, noun: str) -> str:
    count = int(float(number))  # type: ignore[arg-type]
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _decision(detail: Mapping[str, Any], actor: str) -> str:
    line = str(detail.get("outcome") or "decided")
    if detail.get("rule"):
        line += f" by rule {detail['rule']}"
    if detail.get("pack"):
        line += f" (pack {detail['pack']} {detail.get('pack_version') or ''}".rstrip() + ")"
    models = [f"{m.get('name')} {_plain(m.get('version'))} ({float(m.get('confidence', 0)):.2f})"
              for m in detail.get("models") or [] if isinstance(m, dict)]
    if models:
        line += "; models " + ", ".join(models)
    return line


_STEP_OUTCOMES = {
    "STEP_OUTCOME_SUCCEEDED": "succeeded", "STEP_OUTCOME_FAILED_RETRYABLE": "failed (retryable)",
    "STEP_OUTCOME_FAILED_PERMANENT": "failed", "STEP_OUTCOME_COMPENSATED": "compensated",
    "STEP_OUTCOME_SKIPPED_DUPLICATE": "skipped (already done)",
    "STEP_OUTCOME_SKIPPED_CONDITION": "skipped (condition false)",
    "STEP_OUTCOME_WAITING": "waiting",
}


def _step(detail: Mapping[str, Any], actor: str, noun: str = "step") -> str:
    outcome = str(detail.get("outcome", ""))
    line = f"{noun} {detail['step_id']} {_STEP_OUTCOMES.get(outcome, outcome.lower())}"
    attempts = int(float(detail.get("attempts") or 0))
    if attempts:
        line += f" after {_count(attempts, 'attempt')}"
    if detail.get("error"):  # the plan's own failure (a template's missing key), as recorded
        line += f": {detail['error']}"
    return line


def _verdict(detail: Mapping[str, Any], actor: str) -> str:
    verb = {"approve": "approved", "reject": "rejected", "modify": "modified"}.get(
        str(detail.get("verdict")), str(detail.get("verdict") or "decided"))
    line = f"{verb} by {actor.removeprefix('reviewer:')}"
    fields = sorted(detail.get("modified_fields") or {})
    if fields:
        line += "; modified " + ", ".join(fields)
    return line


def _approval(detail: Mapping[str, Any], actor: str) -> str:
    return (f"first approval by {actor.removeprefix('reviewer:')}"
            + (f" ({detail['approvals']})" if detail.get("approvals") else ""))


def _by(verb: str) -> Callable[[Mapping[str, Any], str], str]:
    def line(detail: Mapping[str, Any], actor: str) -> str:
        text = f"{verb} by {actor}"
        if detail.get("from_status"):
            text += f" (was {detail['from_status']})"
        if detail.get("reason_sha256"):
            text += "; reason recorded as a hash"
        return text
    return line


def _redriven(detail: Mapping[str, Any], actor: str) -> str:
    stalled = (" at once: the broker lost its state, and the task's records with it"
               if detail.get("broker_lost") else
               f" after {_plain(detail['stalled_for_s'])} s without progress"
               if detail.get("stalled_for_s") else "")
    return (f"re-driven by {actor} from {detail.get('status')} {detail.get('stage')}"
            f"{stalled} (re-drive {_plain(detail.get('redrives'))})")


def _retried(detail: Mapping[str, Any], actor: str) -> str:
    return (f"retried by {detail.get('principal') or actor} as task {detail['new_task_id']} "
            f"(attempt {_plain(detail.get('attempt'))})")


def _retry_of(detail: Mapping[str, Any], actor: str) -> str:
    return (f"created by {detail.get('principal') or actor} as a retry of task "
            f"{detail['retry_of']} (attempt {_plain(detail.get('attempt'))})")


def _expired(detail: Mapping[str, Any], actor: str) -> str:
    return f"review expired: {detail.get('outcome')}"


def _withdrawn(detail: Mapping[str, Any], actor: str) -> str:
    return f"review withdrawn (task {detail.get('task_status')})"


def _taken_over(detail: Mapping[str, Any], actor: str) -> str:
    return (f"taken over by executor replica {detail['to_replica']} from "
            f"{detail['from_replica']}, which stopped (no beat for "
            f"{_plain(detail.get('replica_timeout_s'))}s, or shut down) while running it")


_SUMMARIES: dict[str, Callable[[Mapping[str, Any], str], str]] = {
    "decision.made": _decision,
    "step.executed": _step,
    "compensation.executed": lambda d, a: _step(d, a, "compensation"),
    "step.compensated": lambda d, a: f"step {d['step_id']} compensated",
    "review.verdict": _verdict,
    "review.approval": _approval,
    "review.expired": _expired,
    "review.withdrawn": _withdrawn,
    "review.taken_back": lambda d, a: (f"review item taken back from {d['from']} by "
                                       f"{a.removeprefix('reviewer:')}, back in the queue"),
    "task.cancelled": _by("cancelled"),
    "task.cancel_requested": _by("cancellation requested"),
    "task.redriven": _redriven,
    "task.taken_over": _taken_over,
    RETRIED: _retried,
    CREATED_AS_RETRY: _retry_of,
}


def _as_object(detail: object) -> dict[str, object]:
    """An audit entry's detail (jsonb, read as text) as a JSON object."""
    value = json.loads(detail) if isinstance(detail, str) else detail
    return value if isinstance(value, dict) else {"value": value}


__all__ = ["CREATED_AS_RETRY", "RETRIED", "STATUS_CHANGED", "entries", "record_retry", "status_summary",
           "summary"]
