"""Retention: purge document-derived data past each tenant's retention, keep the rest.

What purge does to each column follows :data:`switchyard._dataclass.STORED`: a purged task
keeps its status, kind, metadata (with PII detected in it redacted), scores, rules and
executed steps (outcome, attempts); the document body and filename (with what the metadata
kept of an e-mail's content: its subject, text and attachments' names) and their copies in
review items and dead letters (a claim-checked document's blob is deleted from the blob
store; a dead letter's resolution note goes too), the
extracted fields and the plan payloads built from them (in ``decisions``,
``review_decisions``, ``executor_jobs``, ``review_items``), a reviewer's edits and reasons
(``review_verdicts``, ``review_approvals``), the explanations that quote the document
(invoice number, amount), what was kept of downstream answers (``executions`` error, result
summary and output, ``executor_jobs.reason``), the status events' details (the history's and
the webhook deliveries'), the sealed fields in ``decision_invoices`` and
a reviewed task's labelled example (``decision_labels``: its text, proposed and corrected
fields; the verdict stays) are removed. Vendor history keeps only keyed hashes and amounts, so it stays. The audit
chain stores hashes of inputs, never the inputs, so purging leaves it verifiable.

A pack may keep its type's data shorter than the tenant's retention (``retention.days`` in
pack.yaml; a tenant's own version of the pack, or ``retention_days`` for the pack in the
tenant's settings document, sets the tenant's own): a task decided with that pack
(``decisions.pack``, else submitted as that kind) is purged after the smaller of the two
(:func:`pack_retention_days` reads them), in every table above. Dead letters (records no
stage could accept, before any pack) follow their tenant's retention.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

import asyncpg

from switchyard._audit import append
from switchyard._dataclass import redact_free_text, withheld_values
from switchyard._topics import ALL_TOPICS
from switchyard._pii import Redactor
from switchyard._payloads import (
    APPROVAL,
    DECISION,
    JOB_DECISION,
    PLAINTEXT,
    REVIEW_DECISION,
    REVIEW_ESCALATION,
    TASK_ENVELOPE,
    VERDICT,
    Column,
    PayloadCodec,
    RowId,
)
from switchyard._taskstore import TERMINAL_SQL
from switchyard.packs import PackError, builtin_packs, load_pack_files
from switchyard.packs._yaml import load_yaml
from switchyard.documents import EMAIL_CONTENT_KEYS, BlobStore, PostgresBlobStore
from switchyard.v1 import (
    BlobRef,
    Decision,
    Escalation,
    ExecutionResult,
    ReviewVerdict,
    TaskEnvelope,
)

log = logging.getLogger(__name__)
#: The PII detectors, for the values of withheld fields a purged review item masks.
_DETECTORS = Redactor()
#: How long the decision service's drift samples (``decision_drift_samples``: model, feature,
#: PSI; no task data) are kept: the longest window DecisionService.GetModelHealth answers.
DRIFT_SAMPLE_DAYS = 30


def _semver(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in version.split("."))
    except ValueError:
        return (-1,)


async def pack_retention_days(conn: asyncpg.Connection) -> dict[str, dict[str, int]]:
    """Tenant (``''``: every tenant) -> pack name -> the pack's ``retention.days``, from the
    shipped packs and the newest stored version of each applied pack (a tenant's own pack
    over a shared one), then a tenant's ``retention_days`` for a pack in its newest settings
    document (``switchyard packs apply --tenant``) over both. Packs without a retention are
    left out."""
    out: dict[str, dict[str, int]] = {"": {}}
    for name, pack in builtin_packs().items():
        if pack.retention_days is not None:
            out[""][name] = pack.retention_days
    rows = await conn.fetch("SELECT tenant_id, name, version, files FROM packs")
    newest: dict[tuple[str, str], asyncpg.Record] = {}
    for row in rows:
        key = (row["tenant_id"], row["name"])
        if key not in newest or _semver(row["version"]) > _semver(newest[key]["version"]):
            newest[key] = row
    for (tenant, name), row in sorted(newest.items()):
        try:
            files = {path: base64.b64decode(content)
                     for path, content in json.loads(row["files"]).items()}
            pack = load_pack_files(files)
        except (PackError, ValueError) as exc:
            log.warning("stored pack %s %s does not load (%s): its retention is not applied",
                        name, row["version"], exc)
            continue
        if pack.retention_days is not None:
            out.setdefault(tenant, {})[name] = pack.retention_days
        else:
            out.setdefault(tenant, {}).pop(name, None)
    # a tenant's settings document (its newest version) may set its own retention of a pack
    for row in await conn.fetch(
            "SELECT DISTINCT ON (tenant_id) tenant_id, version, document "
            "FROM tenant_pack_settings ORDER BY tenant_id, version DESC"):
        document, problems = load_yaml(bytes(row["document"]), "settings.yaml")
        packs = document.get("packs") if isinstance(document, dict) else None
        if problems or not isinstance(packs, dict):
            if problems:
                log.warning("tenant %s pack settings v%d do not load: their retention is not "
                            "applied", row["tenant_id"], row["version"])
            continue
        for name, spec in packs.items():
            days = spec.get("retention_days") if isinstance(spec, dict) else None
            if isinstance(days, int) and not isinstance(days, bool) and days >= 1:
                out.setdefault(row["tenant_id"], {})[name] = days
    return out


def parse_retention(default_days: int, overrides: str) -> tuple[int, dict[str, int]]:
    """``tenant:days,tenant:days`` on top of a default; validated with a clear message."""
    per_tenant = {}
    for entry in filter(None, (e.strip() for e in overrides.split(","))):
        tenant, sep, days = entry.partition(":")
        if not sep or not days.isdigit():
            raise ValueError(f"SWITCHYARD_RETENTION_OVERRIDES entry {entry!r} must be "
                             "'tenant:days'")
        per_tenant[tenant] = int(days)
    if default_days < 0:
        raise ValueError("SWITCHYARD_RETENTION_DAYS must be >= 0")
    return default_days, per_tenant


def strip_envelope(blob: bytes) -> bytes:
    """A serialized envelope without its document body and filename (nor what was kept of an
    e-mail's content: its subject, text and attachments' names), its metadata values through
    the PII detectors (plaintext in, out)."""
    envelope = TaskEnvelope.FromString(blob)
    envelope.document.ClearField("body")
    envelope.document.ClearField("blob")  # the blob itself is deleted with the payload
    envelope.document.filename = ""
    for key in EMAIL_CONTENT_KEYS:
        envelope.metadata.pop(key, None)
    for key, value in list(envelope.metadata.items()):
        envelope.metadata[key] = redact_free_text(value)
    return envelope.SerializeToString()


def blob_ref_of(codec: PayloadCodec, task_id: RowId, blob: bytes) -> BlobRef | None:
    """The claim-check reference a stored envelope carries, None when its body is inline."""
    document = TaskEnvelope.FromString(codec.open(task_id, blob, TASK_ENVELOPE)).document
    return document.blob if document.HasField("blob") and document.blob.uri else None


def strip_stored_envelope(codec: PayloadCodec, task_id: RowId, blob: bytes) -> bytes:
    """A stored (possibly sealed) ``tasks.envelope`` stripped and sealed again (active key)."""
    return codec.seal(task_id, strip_envelope(codec.open(task_id, blob, TASK_ENVELOPE)),
                      TASK_ENVELOPE)


def strip_decision(decision: Decision) -> None:
    """Remove, in place, what a decision read out of the document: extracted fields, plan
    payloads, the explanation (it quotes the invoice number and amount). Ids, outcome, rule,
    models, scores and the plan's steps stay."""
    decision.ClearField("fields")
    decision.ClearField("extracted_fields")
    for step in decision.plan.steps:
        step.ClearField("payload")
    decision.explanation = ""


def strip_escalation_extras(escalation: Escalation) -> None:
    """Remove, in place, what a review item holds of the document beside its task and
    proposal: the reason detail and the instructions (rendered from templates, they may name
    the person), the layout (a PDF's or scan's words: the document's text) and the
    discrepancies (both systems' values of a field)."""
    escalation.reason_detail = ""
    escalation.instructions = ""
    escalation.ClearField("layout")
    escalation.ClearField("discrepancies")


async def _strip_decisions(conn: asyncpg.Connection, codec: PayloadCodec, column: Column,
                           ids: list[RowId]) -> int:
    rows = await conn.fetch(
        f"SELECT {column.id_column} AS id, {column.column} AS blob FROM {column.table} "
        "WHERE task_id = ANY($1::uuid[])", ids)
    updates = []
    for row in rows:
        decision = Decision.FromString(codec.open(row["id"], row["blob"], column))
        strip_decision(decision)
        updates.append((row["id"], codec.seal(row["id"], decision.SerializeToString(), column)))
    extra = ", explanation = ''" if column in (DECISION, REVIEW_DECISION) else ""
    await conn.executemany(
        f"UPDATE {column.table} SET {column.column} = $2{extra} "
        f"WHERE {column.id_column} = $1", updates)
    return len(updates)


async def _strip_verdicts(conn: asyncpg.Connection, codec: PayloadCodec,
                          ids: list[RowId]) -> None:
    """Reviewers' edits and reasons: final verdicts and first four-eyes approvals alike."""
    for column in (VERDICT, APPROVAL):
        rows = await conn.fetch(f"SELECT item_id, verdict_pb FROM {column.table} "
                                "WHERE task_id = ANY($1::uuid[])", ids)
        updates = []
        for row in rows:
            verdict = ReviewVerdict.FromString(codec.open(row["item_id"], row["verdict_pb"],
                                                          column))
            for name in list(verdict.modified_fields):
                verdict.modified_fields[name] = ""  # which fields were edited stays, not to what
            verdict.reason = ""
            updates.append((row["item_id"], codec.seal(row["item_id"],
                                                       verdict.SerializeToString(), column)))
        await conn.executemany(f"UPDATE {column.table} SET verdict_pb = $2, reason = '' "
                               "WHERE item_id = $1", updates)


async def _strip_executions(conn: asyncpg.Connection, ids: list[RowId]) -> None:
    """What a step kept of the downstream's answer: its error, result summary and output, its
    sealed full output (the outcome, attempts and idempotency key stay), and the job's
    reason."""
    rows = await conn.fetch("SELECT task_id, step_id, result FROM executions "
                            "WHERE task_id = ANY($1::uuid[])", ids)
    updates = []
    for row in rows:
        result = ExecutionResult.FromString(row["result"])
        result.response_summary = ""
        result.error = ""
        result.ClearField("output")
        updates.append((row["task_id"], row["step_id"], result.SerializeToString()))
    await conn.executemany("UPDATE executions SET error = '', result = $3, output = NULL "
                           "WHERE task_id = $1 AND step_id = $2", updates)
    await conn.execute("UPDATE executor_jobs SET reason = '' WHERE task_id = ANY($1::uuid[])",
                       ids)


async def _strip_status_details(conn: asyncpg.Connection, ids: list[RowId]) -> None:
    """The free text the task's status events carried (a reviewer's reason, redacted but
    with any name typed there; an explanation; what a downstream answered), in the status
    history and in the webhook deliveries that posted those events (their ``event.detail``;
    the rest of the body stays, so a delivery still due is still sent)."""
    await conn.execute("UPDATE task_status_history SET detail = '' "
                       "WHERE task_id = ANY($1::uuid[]) AND detail <> ''", ids)
    await conn.execute(
        "UPDATE webhook_deliveries SET body = convert_to(jsonb_set("
        "convert_from(body, 'UTF8')::jsonb, '{event,detail}', '\"\"')::text, 'UTF8') "
        "WHERE task_id = ANY($1::uuid[]) "
        "AND convert_from(body, 'UTF8')::jsonb #>> '{event,detail}' <> ''", ids)


@dataclass(frozen=True)
class PurgeReport:
    tasks: int
    review_items: int
    dead_letters: int
    decisions: int = 0
    drift_samples: int = 0
    blobs: int = 0


async def purge(conn: asyncpg.Connection, default_days: int, per_tenant: dict[str, int],
                dry_run: bool = False, batch: int = 500,
                codec: PayloadCodec = PLAINTEXT,
                pack_days: Mapping[str, Mapping[str, int]] | None = None,
                blobs: BlobStore | None = None) -> PurgeReport:
    """Strip payloads of terminal tasks older than their tenant's retention, or their pack's
    when that is shorter (``pack_days``: :func:`pack_retention_days`).

    Sealed payloads are opened, stripped and sealed again with ``codec`` (encryption at rest).
    A purged task's claim-checked document is deleted from ``blobs`` (the deployment's blob
    store; default: PostgreSQL's ``blobs`` table over ``conn``) once its batch committed.
    Tasks are taken ``batch`` at a time until none is due. ``dry_run`` changes nothing and
    reports what the same call would purge, counted the same way.
    """
    tenants = [r["tenant_id"] for r in await conn.fetch(
        "SELECT DISTINCT tenant_id FROM tasks WHERE purged_at IS NULL")]
    totals = [0, 0, 0, 0, 0]
    blobs = blobs or PostgresBlobStore(conn, codec)
    pack_days = pack_days or {}
    for tenant in tenants:
        days = per_tenant.get(tenant, default_days)
        packs = {**pack_days.get("", {}), **pack_days.get(tenant, {})}
        passes: list[tuple[str | None, int]] = [(None, days)]
        passes += [(name, d) for name, d in sorted(packs.items()) if d < days]
        if dry_run:
            await _count_tenant(conn, codec, tenant, passes, totals)
            continue
        for pack, pass_days in passes:
            # batch after batch until none is due: a backlog larger than one batch is
            # purged in one run, not one batch a run
            while await _purge_tenant(conn, tenant, pack, timedelta(days=pass_days), batch,
                                      codec, totals, blobs) == batch:
                pass
    # a refused record has no pack yet: its tenant's retention (the default for records
    # whose tenant is unknown or has no override)
    letters = [(_DEAD_LETTERS_DUE + "AND tenant_id = $2", (timedelta(days=tenant_days), tenant))
               for tenant, tenant_days in sorted(per_tenant.items())]
    letters.append((_DEAD_LETTERS_DUE + "AND tenant_id <> ALL($2::text[])",
                    (timedelta(days=default_days), sorted(per_tenant))))
    # a topic whose raw records live shorter (a classroom's frames, which name students):
    # its letters keep them no longer either, whatever the tenant
    letters += [(_DEAD_LETTERS_DUE + _OF_TOPIC,
                 (timedelta(milliseconds=topic.letter_keeps_ms), topic.name))
                for topic in _SHORT_LETTER_TOPICS]
    drift = "FROM decision_drift_samples WHERE measured_at < now() - make_interval(days => $1)"
    if dry_run:
        for where, args in letters:
            totals[2] += await conn.fetchval("SELECT count(*) FROM dead_letters " + where, *args)
        return PurgeReport(*totals[:4], drift_samples=await conn.fetchval(
            f"SELECT count(*) {drift}", DRIFT_SAMPLE_DAYS), blobs=totals[4])
    for where, args in letters:
        status = await conn.execute(_PURGE_DEAD_LETTERS + where, *args)
        totals[2] += int(status.split()[-1])
    status = await conn.execute(f"DELETE {drift}", DRIFT_SAMPLE_DAYS)
    return PurgeReport(*totals[:4], drift_samples=int(status.split()[-1]), blobs=totals[4])


_DEAD_LETTERS_DUE = "WHERE purged_at IS NULL AND failed_at < now() - $1::interval "
#: Letters read from the topic named $2 (stored with the deployment's topic prefix).
_OF_TOPIC = "AND source_topic LIKE '%' || $2"
#: Topics whose letters keep their records shorter than the tenant's retention.
_SHORT_LETTER_TOPICS = tuple(t for t in ALL_TOPICS if t.letter_keeps_ms is not None)
# (an operator's resolution note is free text, as a reviewer's reason: it goes with the bytes;
# who resolved it and when stay)
_PURGE_DEAD_LETTERS = ("UPDATE dead_letters SET original_value = NULL, original_key = NULL, "
                       "original_headers = NULL, resolution = CASE WHEN resolved_at IS NULL "
                       "THEN NULL ELSE '' END, purged_at = now() ")


@dataclass(frozen=True)
class Stripped:
    """What stripping some tasks did; ``blobs`` are deleted once the transaction committed."""

    tasks: int
    review_items: int
    decisions: int
    blobs: list[BlobRef]


async def _strip_rows(conn: asyncpg.Connection, codec: PayloadCodec,
                      rows: list[asyncpg.Record]) -> Stripped:
    """Strip the payloads of these ``tasks`` rows (task_id, envelope; locked by the caller)
    everywhere they were copied, and mark them purged."""
    ids = [r["task_id"] for r in rows]
    refs = [ref for r in rows
            if (ref := blob_ref_of(codec, r["task_id"], r["envelope"])) is not None]
    await conn.executemany(
        "UPDATE tasks SET envelope = $2, purged_at = now() WHERE task_id = $1",
        [(r["task_id"], strip_stored_envelope(codec, r["task_id"], r["envelope"]))
         for r in rows])
    items = await conn.fetch(
        "SELECT item_id, escalation FROM review_items WHERE task_id = ANY($1::uuid[]) "
        "AND purged_at IS NULL", ids)
    for item in items:
        escalation = Escalation.FromString(
            codec.open(item["item_id"], item["escalation"], REVIEW_ESCALATION))
        # the values of its withheld fields, masked in its metadata for good before the
        # decision that told them goes: a purged item must not show reviewers in clear what
        # the unpurged one masked (a student's pseudonym under `subject`)
        withheld = withheld_values(escalation.proposed_decision, _DETECTORS,
                                   frozenset(escalation.revealed_fields))
        escalation.task.CopyFrom(TaskEnvelope.FromString(
            strip_envelope(escalation.task.SerializeToString())))
        for key, value in list(escalation.task.metadata.items()):
            escalation.task.metadata[key] = withheld.text(value)
        strip_decision(escalation.proposed_decision)
        strip_escalation_extras(escalation)
        await conn.execute(
            "UPDATE review_items SET escalation = $2, purged_at = now() "
            "WHERE item_id = $1", item["item_id"],
            codec.seal(item["item_id"], escalation.SerializeToString(),
                       REVIEW_ESCALATION))
    decisions = await _strip_decisions(conn, codec, DECISION, ids)
    decisions += await _strip_decisions(conn, codec, REVIEW_DECISION, ids)
    await _strip_decisions(conn, codec, JOB_DECISION, ids)
    await _strip_verdicts(conn, codec, ids)
    await _strip_executions(conn, ids)
    await _strip_status_details(conn, ids)
    await conn.execute("UPDATE decision_invoices SET fields = NULL "
                       "WHERE task_id = ANY($1::uuid[])", ids)
    await conn.execute("UPDATE decision_labels SET example = NULL, corrections = NULL, "
                       "purged_at = now() WHERE task_id = ANY($1::uuid[])", ids)
    return Stripped(len(rows), len(items), decisions, refs)


async def forget_raw_letters(conn: asyncpg.Connection, tenant_id: str) -> int:
    """Purge now the bytes of every letter of ``tenant_id`` from a topic of raw records that
    name people (:attr:`Topic.letter_keeps_ms`): a right-to-erasure request cannot tell which
    of them name the student without opening each, and they are diagnostics anyway."""
    purged = 0
    for topic in _SHORT_LETTER_TOPICS:
        status = await conn.execute(
            _PURGE_DEAD_LETTERS + "WHERE purged_at IS NULL AND tenant_id = $1 " + _OF_TOPIC,
            tenant_id, topic.name)
        purged += int(status.split()[-1])
    return purged


async def forget_metadata(conn: asyncpg.Connection, codec: PayloadCodec,
                          task_ids: list[RowId], key: str) -> None:
    """Remove the metadata entry ``key`` from these tasks' envelopes and from every review
    item made of them (its copy of the task): a right-to-erasure request forgets the
    pseudonym an alert task carries, where the item's reviewers would otherwise read it."""
    tasks = []
    for row in await conn.fetch("SELECT task_id, envelope FROM tasks "
                                "WHERE task_id = ANY($1::uuid[])", task_ids):
        envelope = TaskEnvelope.FromString(codec.open(row["task_id"], row["envelope"],
                                                      TASK_ENVELOPE))
        if envelope.metadata.pop(key, None) is not None:
            tasks.append((row["task_id"], codec.seal(row["task_id"],
                                                     envelope.SerializeToString(),
                                                     TASK_ENVELOPE)))
    items = []
    for row in await conn.fetch("SELECT item_id, escalation FROM review_items "
                                "WHERE task_id = ANY($1::uuid[])", task_ids):
        escalation = Escalation.FromString(codec.open(row["item_id"], row["escalation"],
                                                      REVIEW_ESCALATION))
        if escalation.task.metadata.pop(key, None) is not None:
            items.append((row["item_id"], codec.seal(row["item_id"],
                                                     escalation.SerializeToString(),
                                                     REVIEW_ESCALATION)))
    await conn.executemany("UPDATE tasks SET envelope = $2 WHERE task_id = $1", tasks)
    await conn.executemany("UPDATE review_items SET escalation = $2 WHERE item_id = $1", items)


async def strip_tasks(conn: asyncpg.Connection, codec: PayloadCodec, tenant_id: str,
                      task_ids: list[RowId]) -> Stripped:
    """Purge these tasks of a tenant now, whatever their age or status, exactly as retention
    does (in the caller's transaction, which audits why): a right-to-erasure request. The
    caller deletes ``blobs`` after its commit (:func:`delete_blobs`)."""
    rows = await conn.fetch(
        "SELECT task_id, envelope FROM tasks WHERE tenant_id = $1 AND purged_at IS NULL "
        "AND task_id = ANY($2::uuid[]) ORDER BY task_id FOR UPDATE", tenant_id, task_ids)
    if not rows:
        return Stripped(0, 0, 0, [])
    return await _strip_rows(conn, codec, list(rows))


async def delete_blobs(blobs: BlobStore, refs: list[BlobRef]) -> int:
    """Delete purged tasks' claim-checked documents (after the purge committed)."""
    deleted = 0
    for ref in refs:
        try:
            deleted += await blobs.delete(ref)
        except Exception as exc:  # noqa: BLE001 - reported; the next purge cannot find it
            log.error("purge: could not delete blob %s: %r", ref.uri, exc)
    return deleted


def _due(pack: str | None, limit: bool) -> str:
    """The query for a tenant's tasks due for purging ($1 tenant, $2 age, $3 the batch when
    ``limit``, then the pack when given): terminal, older than the age, not purged yet, and
    for a pack's pass that pack's only."""
    of_pack = ("" if pack is None else
               f"AND (kind = ${3 + limit} OR EXISTS (SELECT 1 FROM decisions d WHERE "
               f"d.task_id = tasks.task_id AND d.pack = ${3 + limit})) ")
    # the literal status list lets tasks_purge_candidates serve
    return ("SELECT task_id, envelope FROM tasks WHERE tenant_id = $1 AND purged_at IS NULL "
            f"AND status IN {TERMINAL_SQL} AND updated_at < now() - $2::interval {of_pack}"
            + ("ORDER BY updated_at LIMIT $3 FOR UPDATE SKIP LOCKED" if limit else ""))


async def _count_tenant(conn: asyncpg.Connection, codec: PayloadCodec, tenant: str,
                        passes: list[tuple[str | None, int]], totals: list[int]) -> None:
    """What purging ``tenant`` would strip (``purge --dry-run``): its due tasks over every
    pass, once each, and what the purge strips with them, counted as the purge counts."""
    due: dict[RowId, bytes] = {}
    for pack, days in passes:
        for row in await conn.fetch(_due(pack, limit=False), tenant, timedelta(days=days),
                                    *(() if pack is None else (pack,))):
            due[row["task_id"]] = row["envelope"]
    if not due:
        return
    ids = list(due)
    totals[0] += len(ids)
    totals[1] += await conn.fetchval(
        "SELECT count(*) FROM review_items WHERE task_id = ANY($1::uuid[]) "
        "AND purged_at IS NULL", ids)
    for column in (DECISION, REVIEW_DECISION):
        totals[3] += await conn.fetchval(
            f"SELECT count(*) FROM {column.table} WHERE task_id = ANY($1::uuid[])", ids)
    totals[4] += sum(blob_ref_of(codec, task_id, envelope) is not None
                     for task_id, envelope in due.items())


async def _purge_tenant(conn: asyncpg.Connection, tenant: str, pack: str | None,
                        cutoff: timedelta, batch: int, codec: PayloadCodec,
                        totals: list[int], blobs: BlobStore) -> int:
    """One batch of a tenant's due tasks (only those of ``pack`` when given); how many."""
    refs: list[BlobRef] = []
    async with conn.transaction():
        rows = await conn.fetch(_due(pack, limit=True), tenant, cutoff, batch,
                                *(() if pack is None else (pack,)))
        if not rows:
            return 0
        ids = [r["task_id"] for r in rows]
        stripped = await _strip_rows(conn, codec, list(rows))
        refs, items, decisions = stripped.blobs, stripped.review_items, stripped.decisions
        detail: dict[str, object] = {
            "tasks": len(rows), "review_items": items, "retention_days": cutoff.days,
            "task_ids": json.loads(json.dumps([str(i) for i in ids]))}
        if pack is not None:
            detail["pack"] = pack
        await append(conn, tenant, "retention", "payloads.purged", detail, writer="retention")
        totals[0] += len(rows)
        totals[1] += items
        totals[3] += decisions
    # after the commit: a blob is never gone while a task that is not purged still names it
    totals[4] += await delete_blobs(blobs, refs)
    return len(rows)
