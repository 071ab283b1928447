"""What must hold after the faults, read from PostgreSQL and the downstream's own ledger.

- none lost: every accepted submission (a gRPC acceptance, or a valid intake record the broker
  acknowledged) is a task, and every task is terminal or visibly waiting (BLOCKED, or
  awaiting review) — nothing stuck in between;
- exactly-once effects: a SUCCEEDED task holds exactly one active downstream effect per step
  of the plan it ran (more is a duplicate, fewer is missing); a FAILED or CANCELLED task holds
  none (its steps were compensated);
- every rejected input is accounted for: refused at the gRPC door with a reason, or a
  dead-letter record carrying its original bytes;
- the audit chain verifies.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import asyncpg

from chaos.workload import Item, Ledger
from switchyard import Settings
from switchyard._audit import verify
from switchyard._db import connect
from switchyard._topics import INTAKE
from switchyard.v1 import Decision

TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED")


@dataclass
class Report:
    sent: int = 0
    accepted: int = 0
    refused_at_door: int = 0
    dead_lettered: int = 0
    missing_dead_letters: int = 0
    terminal: dict[str, int] = field(default_factory=dict)
    blocked: int = 0
    awaiting_review: int = 0
    cancel_requests: int = 0
    cancelled_as_asked: int = 0
    unfinished_at_broker_restart: int = 0
    redriven: int = 0
    lost: int = 0
    lost_examples: list[str] = field(default_factory=list)
    effects: int = 0
    duplicates: int = 0
    missing_effects: int = 0
    orphan_effects: int = 0
    audit_entries: int = 0
    audit_ok: bool = False
    restarts: dict[str, int] = field(default_factory=dict)
    faults: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return (self.lost == 0 and self.duplicates == 0 and self.missing_effects == 0
                and self.orphan_effects == 0 and self.missing_dead_letters == 0
                and self.audit_ok)

    def rows(self) -> list[tuple[str, Any]]:
        return [
            ("sent", self.sent), ("accepted", self.accepted),
            ("refused at the gRPC door", self.refused_at_door),
            ("dead-lettered (intake)", self.dead_lettered),
            ("missing dead letters", self.missing_dead_letters),
            *((f"terminal: {k}", v) for k, v in sorted(self.terminal.items())),
            ("blocked", self.blocked), ("awaiting review", self.awaiting_review),
            ("cancel requests on executing tasks", self.cancel_requests),
            ("  of which ended CANCELLED", self.cancelled_as_asked),
            ("unfinished when the broker restarted", self.unfinished_at_broker_restart),
            ("re-driven from PostgreSQL", self.redriven),
            ("downstream effects", self.effects), ("duplicates", self.duplicates),
            ("missing effects", self.missing_effects),
            ("effects of failed/cancelled tasks", self.orphan_effects),
            ("audit entries verified", self.audit_entries),
            ("audit chain", "ok" if self.audit_ok else "BROKEN"),
            ("lost", self.lost),
        ]

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


async def unsettled(settings: Settings) -> tuple[int, int]:
    """(moving, waiting): the run's tasks neither terminal nor BLOCKED, and BLOCKED ones."""
    conn = await connect(settings)
    try:
        row = await conn.fetchrow(
            "SELECT count(*) FILTER (WHERE status NOT IN ('SUCCEEDED', 'FAILED', 'CANCELLED', "
            "'BLOCKED')) AS moving, count(*) FILTER (WHERE status = 'BLOCKED') AS waiting "
            "FROM tasks")
        return row["moving"], row["waiting"]
    finally:
        await conn.close()


async def tasks_for(settings: Settings, keys: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    conn = await connect(settings)
    try:
        rows = await conn.fetch(
            "SELECT tenant_id, idempotency_key, task_id FROM tasks "
            "WHERE (tenant_id, idempotency_key) IN "
            "(SELECT * FROM unnest($1::text[], $2::text[]))",
            [t for t, _ in keys], [k for _, k in keys])
        return {(r["tenant_id"], r["idempotency_key"]): str(r["task_id"]) for r in rows}
    finally:
        await conn.close()


async def blocked_executing(settings: Settings, limit: int) -> list[str]:
    conn = await connect(settings)
    try:
        return [str(r["task_id"]) for r in await conn.fetch(
            "SELECT task_id FROM tasks WHERE status = 'BLOCKED' AND stage = 'EXECUTING' "
            "ORDER BY updated_at LIMIT $1", limit)]
    finally:
        await conn.close()


async def check(settings: Settings, items: list[Item], ledger: Ledger,
                cancelled: list[str]) -> Report:
    report = Report(sent=ledger.sent, refused_at_door=len(ledger.refused),
                    cancel_requests=len(cancelled))
    by_key = {item.key: item for item in items}
    kafka_valid = [(by_key[k].tenant_id, k) for k in ledger.kafka_acked if not by_key[k].invalid]
    from_kafka = await tasks_for(settings, kafka_valid)
    accepted = dict(ledger.accepted)
    for tenant, key in kafka_valid:
        if (tenant, key) in from_kafka:
            accepted[key] = from_kafka[(tenant, key)]
        else:
            report.lost += 1
            report.lost_examples.append(f"intake record {key}: acknowledged, never a task")
    report.accepted = len(accepted)

    conn = await connect(settings)
    try:
        rows = await conn.fetch(
            "SELECT task_id::text, status, stage FROM tasks WHERE task_id = ANY($1::uuid[])",
            list(accepted.values()))
        found = {r["task_id"]: r for r in rows}
        terminal: Counter[str] = Counter()
        for key, task_id in accepted.items():
            row = found.get(task_id)
            if row is None:
                report.lost += 1
                report.lost_examples.append(f"{key}: accepted as {task_id}, no task row")
            elif row["status"] in TERMINAL:
                terminal[row["status"]] += 1
            elif row["stage"] == "AWAITING_REVIEW":
                report.awaiting_review += 1
            elif row["status"] == "BLOCKED":
                report.blocked += 1
            else:
                report.lost += 1
                report.lost_examples.append(f"{key}: {task_id} stuck {row['status']}/"
                                            f"{row['stage']}")
        report.terminal = dict(terminal)
        report.cancelled_as_asked = sum(found[t]["status"] == "CANCELLED" for t in cancelled
                                        if t in found)
        report.redriven = await conn.fetchval("SELECT count(*) FROM tasks WHERE redrives > 0")
        await _check_effects(conn, settings, found, report)
        await _check_dead_letters(conn, settings, by_key, ledger, report)
        verification = await verify(conn)
        report.audit_entries = verification.entries
        report.audit_ok = verification.broken is None
    finally:
        await conn.close()
    report.lost_examples = report.lost_examples[:20]
    return report


async def _check_effects(conn: asyncpg.Connection, settings: Settings,
                         tasks: dict[str, asyncpg.Record], report: Report) -> None:
    downstream = f"{settings.postgres_schema}_downstream"
    active = {r["task_id"]: r["n"] for r in await conn.fetch(
        f"SELECT task_id, count(*) AS n FROM {downstream}.effects "
        "WHERE status = 'active' GROUP BY task_id")}
    report.effects = sum(active.values())
    steps = {str(r["task_id"]): len(Decision.FromString(r["decision"]).plan.steps)
             for r in await conn.fetch(
                 "SELECT task_id, decision FROM executor_jobs WHERE state = 'succeeded'")}
    for task_id, row in tasks.items():
        have = active.get(task_id, 0)
        if row["status"] == "SUCCEEDED":
            want = steps.get(task_id, 0)
            report.duplicates += max(0, have - want)
            report.missing_effects += max(0, want - have)
        elif row["status"] in ("FAILED", "CANCELLED"):
            report.orphan_effects += have


async def _check_dead_letters(conn: asyncpg.Connection, settings: Settings,
                              by_key: dict[str, Item], ledger: Ledger, report: Report) -> None:
    """Each invalid intake record must have a dead letter holding its exact bytes."""
    letters = {bytes(r["original_value"]) for r in await conn.fetch(
        "SELECT original_value FROM dead_letters WHERE source_topic = $1 "
        "AND original_value IS NOT NULL", INTAKE.full_name(settings))}
    for key, value in ledger.kafka_acked.items():
        if by_key[key].invalid:
            if value in letters:
                report.dead_lettered += 1
            else:
                report.missing_dead_letters += 1
