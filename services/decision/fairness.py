"""Fairness gates: the models must not automate one group's tasks more than another's.

A pack may declare protected attributes (``fairness.attributes`` in pack.yaml: enum fields such
as the hospital admission pack's ``sex``). For every task decided with such a pack, the
decision service records per attribute the task's group -- a keyed hash of the value, which is
personal data -- whether the task was decided without a person, and the version of every
model consulted (``decision_fairness_samples``, written with the decision). From those rows:

* the **demographic parity difference** of a model version: the largest minus the smallest
  share of tasks decided without a person among the attribute's groups that have at least
  ``SWITCHYARD_FAIRNESS_MIN_GROUP_SAMPLES`` tasks (fewer groups: no figure yet);
* the live gauge ``switchyard_model_parity_difference`` per model version, pack and attribute
  (services/decision/health.py refreshes it with the live-accuracy gauges);
* the **gate**: a canary whose difference passes the pack's ``max_parity_difference`` is rolled
  back by the judge, and an operator's promotion of such a candidate is refused
  (services/decision/model_admin.py). ``switchyard models retrain`` also writes the figures of
  the candidate and the live router on the frozen holdout into the model card
  (services/decision/training/retrain.py).

Groups are named again for display by hashing the pack's declared values the same way.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from switchyard.packs import Pack
from switchyard.privacy import matching_hash
from switchyard.v1 import Decision, DecisionOutcome

__all__ = ["Parity", "breaches", "group_hash", "group_names", "parity", "parity_by_version",
           "record", "sample_rows"]

#: Groups are hashed across tenants, so one tenant's and another's "female" are one group.
_ALL = "*"


def group_hash(key: bytes, pack: str, attribute: str, value: str) -> str:
    return matching_hash(key, _ALL, f"fairness:{pack}:{attribute}", value)


def group_names(key: bytes, pack: Pack, attribute: str) -> dict[str, str]:
    """Hash -> the declared value it stands for."""
    spec = pack.fields[attribute]
    return {group_hash(key, pack.name, attribute, value): value for value in spec.values}


def sample_rows(decided: Iterable[tuple[Decision, Pack, Mapping[str, str]]], key: bytes
                ) -> list[tuple[object, ...]]:
    """Rows of ``decision_fairness_samples`` for these decisions (with the pack that decided
    and the fields it read); an attribute the document did not state is not sampled."""
    rows = []
    for decision, pack, fields in decided:
        if pack.fairness is None:
            continue
        models = json.dumps({m.model_name: m.model_version for m in decision.models})
        automated = decision.outcome == DecisionOutcome.DECISION_OUTCOME_AUTO_EXECUTE
        for attribute in pack.fairness.attributes:
            value = fields.get(attribute, "")
            if value:
                rows.append((uuid.UUID(decision.task_id), decision.tenant_id, pack.name,
                             attribute, group_hash(key, pack.name, attribute, value), models,
                             automated))
    return rows


async def record(conn: asyncpg.Connection, rows: Sequence[tuple[object, ...]]) -> None:
    """Store the samples (in the caller's transaction: with the decisions)."""
    if rows:
        await conn.executemany(
            "INSERT INTO decision_fairness_samples (task_id, tenant_id, pack, attribute, "
            "group_hash, models, automated) VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7) "
            "ON CONFLICT DO NOTHING", rows)


@dataclass(frozen=True)
class Parity:
    """One model version's automation rates per group of one pack's attribute."""

    model: str
    version: str
    pack: str
    attribute: str
    groups: dict[str, tuple[int, int]]  # group -> (tasks, decided without a person)
    difference: float | None  # None: fewer than two groups with enough tasks

    def described(self, names: Mapping[str, str] | None = None) -> str:
        rates = ", ".join(f"{(names or {}).get(g, g[:8])} {a / n:.0%} of {n}"
                          for g, (n, a) in sorted(self.groups.items()))
        return (f"{self.pack}.{self.attribute}: demographic parity difference "
                f"{self.difference:.3f} ({rates})")


def parity(groups: Mapping[str, tuple[int, int]], min_samples: int) -> float | None:
    """Largest minus smallest automation rate among groups with ``min_samples`` tasks."""
    rates = [automated / tasks for tasks, automated in groups.values() if tasks >= min_samples]
    return max(rates) - min(rates) if len(rates) >= 2 else None


async def parity_by_version(conn: asyncpg.Connection | asyncpg.Pool, since: datetime,
                            min_samples: int, model: str | None = None,
                            versions: Sequence[str] | None = None) -> list[Parity]:
    """Every model version's parity per pack attribute over the tasks decided since
    ``since`` (only ``model``'s ``versions`` when given)."""
    rows = await conn.fetch(
        "SELECT m.key AS model, m.value AS version, s.pack, s.attribute, s.group_hash, "
        "count(*) AS tasks, count(*) FILTER (WHERE s.automated) AS automated "
        "FROM decision_fairness_samples s CROSS JOIN LATERAL jsonb_each_text(s.models) AS m "
        "WHERE s.decided_at >= $1 AND ($2::text IS NULL OR m.key = $2) "
        "AND ($3::text[] IS NULL OR m.value = ANY($3::text[])) GROUP BY 1, 2, 3, 4, 5",
        since, model, list(versions) if versions is not None else None)
    grouped: dict[tuple[str, str, str, str], dict[str, tuple[int, int]]] = {}
    for r in rows:
        grouped.setdefault((r["model"], r["version"], r["pack"], r["attribute"]), {})[
            r["group_hash"]] = (r["tasks"], r["automated"])
    return [Parity(*key, groups, parity(groups, min_samples))
            for key, groups in sorted(grouped.items())]


def breaches(figures: Iterable[Parity], limits: Mapping[str, float]) -> list[Parity]:
    """The figures past their pack's ``max_parity_difference`` (``limits``: pack -> limit)."""
    return [p for p in figures if p.difference is not None and p.pack in limits
            and p.difference > limits[p.pack]]
