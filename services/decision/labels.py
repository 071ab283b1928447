"""Labelled examples: every reviewer's verdict on an escalated task, kept to retrain the models.

A model improves only from documents it was unsure about and a person then settled. So when
the decision service escalates a task it keeps what the models saw (the text they read and
the fields they proposed, sealed, as personal data) in ``decision_labels`` with the model
and pack versions that decided; when the person's verdict comes back on the ``decisions``
topic (:class:`services.decision.learning.HistoryLearner` hands it here), the row gets the
verdict, the document type the person confirmed and every field they corrected, with what
the model had read. ``switchyard models retrain`` (services/decision/training/retrain.py)
trains candidates from :func:`labelled_examples`.

* an approval or a modification confirms the proposed type (the type is what the plan acts
  on: a person who runs it agrees); a rejection labels no type -- a reviewer rejects an
  invoice for its content as often as for its kind -- unless the person names the type the
  document really is (``ReviewVerdict.document_type``, which becomes the decision's label);
* each model's output (its label and confidence) is kept beside its version, so live
  accuracy and calibration against people can be counted per model version;
* only the first verdict on a task labels it (a redelivered or later decision, e.g. on an
  executor's escalation, changes nothing); an answer to a plan's approval step is not a
  verdict on the model and teaches nothing;
* retention and erasure clear ``example`` and ``corrections`` with the task's other copies
  (switchyard/_retention.py); the verdict, types and versions stay, so how often people
  overrode each model version can still be counted.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
from prometheus_client import Counter

from switchyard.storage import LABEL_CORRECTIONS, LABEL_EXAMPLE, PayloadCodec
from switchyard.v1 import Decision, DecisionOutcome, DecisionSource, ModelOutput

__all__ = ["MAX_TEXT_CHARS", "Escalated", "LabelledExample", "labelled_examples", "output_kind",
           "pending_rows", "record_pending", "record_verdicts", "verdict_of"]

#: The text kept per example: the router reads less than this (features.MAX_CHARS), the rest
#: would be stored for nothing.
MAX_TEXT_CHARS = 20_000

LABELS = Counter(
    "switchyard_review_labels_total",
    "Reviewers' verdicts on escalated tasks kept as labelled examples (corrected: at least "
    "one field changed).",
    ["verdict", "corrected"],
)


#: An escalated model decision, the text its models read and, optionally, each scorer's input
#: vector by model name.
Escalated = tuple[Decision, str] | tuple[Decision, str, Mapping[str, Sequence[float]]]


@dataclass(frozen=True)
class LabelledExample:
    """One reviewed task as retraining reads it; ``text`` is None once purged or erased."""

    task_id: str
    tenant_id: str
    pack: str
    pack_version: str
    models: dict[str, str]
    rule: str
    predicted_label: str
    predicted_confidence: float
    verdict: str
    label: str | None
    text: str | None
    corrections: dict[str, tuple[str, str]] = field(default_factory=dict)
    labelled_at: datetime | None = None
    #: model name -> (its label, its confidence) on this task
    outputs: dict[str, tuple[str, float]] = field(default_factory=dict)
    #: scorer model name -> its input vector on this task (None once purged)
    inputs: dict[str, list[float]] = field(default_factory=dict)


def verdict_of(decision: Decision) -> str | None:
    """APPROVE, MODIFY or REJECT for a person's verdict on the model's decision; None for
    anything else (a model or policy decision, an answer to an approval step)."""
    if decision.source != DecisionSource.DECISION_SOURCE_HUMAN or decision.approves_step_id:
        return None
    name = decision.rule.removeprefix("reviewer_").upper()
    if name in ("APPROVE", "MODIFY", "REJECT"):
        return name
    return "REJECT" if decision.outcome == DecisionOutcome.DECISION_OUTCOME_REJECT else "APPROVE"


def output_kind(output: ModelOutput, acted_on: str) -> str:
    """How a person's verdict judges this model output (services/decision/health.py counts
    it): ``type`` when the model's classes include the type the decision acted on (the
    router: the person confirms or names a type), ``binary`` for one probability (a scorer
    such as invoice_risk: the person approving the proposal unchanged is its positive class),
    ``""`` when the verdict says nothing about it."""
    if len(output.scores) == 1:
        return "binary"
    return "type" if acted_on and acted_on in output.scores else ""


def pending_rows(escalated: Sequence[Escalated], codec: PayloadCodec
                 ) -> list[tuple[Any, ...]]:
    """The ``decision_labels`` rows for model decisions that escalated, each with the text
    its models read (and, optionally, each scorer's input vector)."""
    rows = []
    for decision, text, *more in escalated:
        task_id = uuid.UUID(decision.task_id)
        inputs = {name: [float(v) for v in vector]
                  for name, vector in (more[0] if more else {}).items()}
        example = json.dumps({"text": text[:MAX_TEXT_CHARS],
                              "fields": {f.name: f.value for f in decision.fields},
                              "inputs": inputs})
        rows.append((task_id, decision.tenant_id, decision.pack, decision.pack_version,
                     json.dumps({m.model_name: m.model_version for m in decision.models}),
                     json.dumps({m.model_name: [m.label, round(m.confidence, 6),
                                                output_kind(m, decision.label)]
                                 for m in decision.models}),
                     decision.rule, decision.label, float(decision.confidence),
                     codec.seal(task_id, example.encode(), LABEL_EXAMPLE)))
    return rows


async def record_pending(conn: asyncpg.Connection, escalated: Sequence[Escalated],
                         codec: PayloadCodec) -> None:
    """Keep escalated tasks' examples until a person's verdict labels them (in the caller's
    transaction: the decision and its pending example are stored together)."""
    rows = pending_rows(escalated, codec)
    if rows:
        await conn.executemany(
            "INSERT INTO decision_labels (task_id, tenant_id, pack, pack_version, models, "
            "outputs, rule, predicted_label, predicted_confidence, example) "
            "VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7, $8, $9, $10) "
            "ON CONFLICT DO NOTHING", rows)


async def record_verdicts(pool: asyncpg.Pool, decisions: Sequence[Decision],
                          codec: PayloadCodec) -> int:
    """Label the pending examples these people's decisions settle; returns how many. A task
    with no pending example (never escalated by the model) or already labelled is skipped."""
    verdicts = {d.task_id: (d, v) for d in decisions if (v := verdict_of(d)) is not None}
    if not verdicts:
        return 0
    async with pool.acquire() as conn, conn.transaction():
        pending = await conn.fetch(
            "SELECT task_id, predicted_label, example FROM decision_labels "
            "WHERE task_id = ANY($1::uuid[]) "
            "AND verdict IS NULL FOR UPDATE", [uuid.UUID(t) for t in verdicts])
        updates = []
        for row in pending:
            decision, verdict = verdicts[str(row["task_id"])]
            proposed = {}
            if row["example"] is not None:
                proposed = json.loads(codec.open(row["task_id"], row["example"],
                                                 LABEL_EXAMPLE))["fields"]
            corrected = {f.name: (proposed.get(f.name, ""), f.value) for f in decision.fields
                         if verdict == "MODIFY" and proposed.get(f.name) != f.value}
            sealed = (codec.seal(row["task_id"], json.dumps(corrected).encode(),
                                 LABEL_CORRECTIONS) if corrected else None)
            label = decision.label or None
            if verdict == "REJECT" and label == row["predicted_label"]:
                label = None  # rejected for its content: nothing said about its type
            updates.append((row["task_id"], verdict, label, sorted(corrected), sealed))
            LABELS.labels(verdict.lower(), str(bool(corrected)).lower()).inc()
        await conn.executemany(
            "UPDATE decision_labels SET verdict = $2, label = $3, corrected_fields = $4, "
            "corrections = $5, labelled_at = now() WHERE task_id = $1", updates)
    return len(updates)


async def labelled_examples(conn: asyncpg.Connection, codec: PayloadCodec,
                            since: datetime | None = None, model: str | None = None
                            ) -> list[LabelledExample]:
    """Every labelled example (since ``since``; only those decided with ``model`` consulted,
    when given), oldest verdict first."""
    rows = await conn.fetch(
        "SELECT task_id, tenant_id, pack, pack_version, models, outputs, rule, predicted_label, "
        "predicted_confidence, example, verdict, label, corrections, labelled_at "
        "FROM decision_labels WHERE verdict IS NOT NULL "
        "AND ($1::timestamptz IS NULL OR labelled_at >= $1) "
        "AND ($2::text IS NULL OR models ? $2) ORDER BY labelled_at, task_id", since, model)
    examples = []
    for row in rows:
        text = corrections = None
        inputs: dict[str, list[float]] = {}
        if row["example"] is not None:
            example = json.loads(codec.open(row["task_id"], row["example"], LABEL_EXAMPLE))
            text, inputs = example["text"], example.get("inputs", {})
        if row["corrections"] is not None:
            corrections = json.loads(codec.open(row["task_id"], row["corrections"],
                                                LABEL_CORRECTIONS))
        examples.append(LabelledExample(
            str(row["task_id"]), row["tenant_id"], row["pack"], row["pack_version"],
            json.loads(row["models"]), row["rule"], row["predicted_label"],
            float(row["predicted_confidence"]), row["verdict"], row["label"], text,
            {k: (v[0], v[1]) for k, v in (corrections or {}).items()}, row["labelled_at"],
            {k: (v[0], float(v[1])) for k, v in json.loads(row["outputs"]).items()},
            inputs))
    return examples
