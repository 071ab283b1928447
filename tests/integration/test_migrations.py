"""Migrations against the real PostgreSQL: applied once, in order, and never silently edited."""

from __future__ import annotations

import asyncio
import base64
import os
import uuid

import asyncpg
import pytest

from switchyard import Settings
from switchyard.storage import (
    DECISION,
    REVIEW_DECISION,
    Migration,
    MigrationError,
    codec_for,
    load_migrations,
    migrate,
    resolve_dsn,
)
from switchyard.v1 import Decision, DecisionSource

pytestmark = pytest.mark.integration


def fresh(stack_settings: Settings) -> Settings:
    return stack_settings.replace(postgres_schema=f"mig_{uuid.uuid4().hex[:8]}")


def test_migrations_apply_once_and_create_the_schema(stack) -> None:  # type: ignore[no-untyped-def]
    settings = fresh(stack.settings)
    versions = [m.version for m in load_migrations()]
    assert versions == sorted(versions) and versions[0] == 1
    assert asyncio.run(migrate(settings)) == versions
    assert asyncio.run(migrate(settings)) == []

    async def tables() -> set[str]:
        conn = await asyncpg.connect(resolve_dsn(settings))
        try:
            rows = await conn.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = $1",
                settings.postgres_schema)
            return {r["table_name"] for r in rows}
        finally:
            await conn.close()

    assert {"tasks", "task_status_history", "decisions", "executions",
            "review_items", "dead_letters", "schema_migrations"} <= asyncio.run(tables())


def test_an_edited_applied_migration_is_refused(stack) -> None:  # type: ignore[no-untyped-def]
    settings = fresh(stack.settings)
    original = [Migration(1, "first", "CREATE TABLE t1 (id int);")]
    asyncio.run(migrate(settings, original))
    edited = [Migration(1, "first", "CREATE TABLE t1 (id bigint);")]
    with pytest.raises(MigrationError, match="0001_first was edited"):
        asyncio.run(migrate(settings, edited))


def test_a_failing_migration_rolls_back_and_is_not_recorded(stack) -> None:  # type: ignore[no-untyped-def]
    settings = fresh(stack.settings)
    broken = [Migration(1, "ok", "CREATE TABLE t1 (id int);"),
              Migration(2, "broken", "CREATE TABLE t2 (id int); SELECT no_such_column;")]
    with pytest.raises(asyncpg.PostgresError):
        asyncio.run(migrate(settings, broken))
    assert asyncio.run(migrate(settings, broken[:1])) == []  # 1 stayed applied, 2 did not


def test_0012_moves_items_that_were_p0_only_by_the_old_default(stack) -> None:  # type: ignore[no-untyped-def]
    """Review items escalated at P0 because Submission.priority defaulted to 0 become normal
    (P1 for "models unavailable"); deliberate P0s (SLA at risk) and closed items stay."""
    settings = fresh(stack.settings)
    everything = load_migrations()
    asyncio.run(migrate(settings, [m for m in everything if m.version < 12]))
    cases = {  # reason, state, priority before -> (priority, base_priority) after
        "LOW_CONFIDENCE": ("PENDING", 0, (2, 2)),
        "POLICY": ("BACKLOGGED", 0, (2, 2)),
        "MODEL_UNAVAILABLE": ("CLAIMED", 0, (1, 1)),
        "SLA_AT_RISK": ("PENDING", 0, (0, 0)),
        "OTHER": ("RESOLVED", 0, (0, 0)),
        "COMPENSATION_FAILED": ("PENDING", 1, (1, 1)),
    }

    async def seed_upgrade_and_read() -> dict[str, tuple[int, int]]:
        conn = await asyncpg.connect(resolve_dsn(settings),
                                     server_settings={"search_path": settings.postgres_schema})
        try:
            for reason, (state, priority, _) in cases.items():
                task_id = uuid.uuid4()
                await conn.execute(
                    "INSERT INTO tasks (task_id, tenant_id, idempotency_key, payload_sha256, "
                    "kind, source, envelope, status, stage) VALUES ($1, 'acme', $2, '', "
                    "'invoice', 'TASK_SOURCE_GRPC', '', 'BLOCKED', 'AWAITING_REVIEW')",
                    task_id, str(task_id))
                await conn.execute(
                    "INSERT INTO review_items (item_id, escalation_id, task_id, tenant_id, "
                    "queue, priority, base_priority, reason, state, escalation) VALUES "
                    "($1, $2, $3, 'acme', 'default', $4, $4, $5, $6, '')",
                    uuid.uuid4(), uuid.uuid4(), task_id, priority, reason, state)
            assert await migrate(settings) == [m.version for m in everything
                                               if m.version >= 12]
            rows = await conn.fetch("SELECT reason, priority, base_priority FROM review_items")
            return {r["reason"]: (r["priority"], r["base_priority"]) for r in rows}
        finally:
            await conn.close()

    after = asyncio.run(seed_upgrade_and_read())
    assert after == {reason: expected for reason, (_, _, expected) in cases.items()}


def test_0025_moves_peoples_decisions_to_the_review_service_and_they_still_open(
        stack) -> None:  # type: ignore[no-untyped-def]
    """A person's decision stored (sealed) in ``decisions`` before 0025 moves to
    ``review_decisions``, opens there with the review service's column, and the item's
    outbox finds it; the model's decision stays where it was."""
    key = base64.b64encode(os.urandom(32)).decode()
    settings = fresh(stack.settings).replace(encryption_keys=f"k1:{key}",
                                             encryption_active_key="k1")
    codec = codec_for(settings)
    everything = load_migrations()
    asyncio.run(migrate(settings, [m for m in everything if m.version < 25]))
    task_id, item_id = uuid.uuid4(), uuid.uuid4()
    model = Decision(decision_id=str(uuid.uuid4()), task_id=str(task_id), tenant_id="acme",
                     source=DecisionSource.DECISION_SOURCE_MODEL, rule="invoice_risk")
    human = Decision(decision_id=str(uuid.uuid4()), task_id=str(task_id), tenant_id="acme",
                     source=DecisionSource.DECISION_SOURCE_HUMAN, rule="reviewer_verdict",
                     reviewer_id="rita", explanation="approved by rita")

    async def seed_upgrade_and_read() -> tuple[list[str], Decision, int]:
        conn = await asyncpg.connect(resolve_dsn(settings),
                                     server_settings={"search_path": settings.postgres_schema})
        try:
            await conn.execute(
                "INSERT INTO tasks (task_id, tenant_id, idempotency_key, payload_sha256, kind, "
                "source, envelope, status, stage) VALUES ($1, 'acme', $2, '', 'invoice', "
                "'TASK_SOURCE_GRPC', '', 'SUCCEEDED', 'DONE')", task_id, str(task_id))
            for decision, source in ((model, "MODEL"), (human, "HUMAN")):
                await conn.execute(
                    "INSERT INTO decisions (decision_id, task_id, tenant_id, source, outcome, "
                    "confidence, rule, explanation, decision) VALUES ($1, $2, 'acme', $3, "
                    "'AUTO_EXECUTE', 1, $4, $5, $6)", uuid.UUID(decision.decision_id),
                    task_id, source, decision.rule, decision.explanation,
                    codec.seal(decision.decision_id, decision.SerializeToString(), DECISION))
            await conn.execute(
                "INSERT INTO review_items (item_id, escalation_id, task_id, tenant_id, queue, "
                "priority, base_priority, reason, state, escalation, decision_id, resolved_at) "
                "VALUES ($1, $2, $3, 'acme', 'default', 2, 2, 'LOW_CONFIDENCE', 'RESOLVED', '', "
                "$4, now() - interval '1 hour')",
                item_id, uuid.uuid4(), task_id, uuid.UUID(human.decision_id))
            assert await migrate(settings) == [m.version for m in everything
                                               if m.version >= 25]
            left = [r["source"] for r in await conn.fetch(
                "SELECT source FROM decisions WHERE task_id = $1", task_id)]
            row = await conn.fetchrow(
                "SELECT decision_id, item_id, source, explanation, decision "
                "FROM review_decisions WHERE task_id = $1", task_id)
            assert (row["item_id"], row["source"], row["explanation"]) == (
                item_id, "HUMAN", "approved by rita")
            moved = Decision.FromString(codec.open(row["decision_id"], row["decision"],
                                                   REVIEW_DECISION))
            outbox = await conn.fetchval(
                "SELECT count(*) FROM review_items r JOIN review_decisions d "
                "ON d.decision_id = r.decision_id WHERE r.item_id = $1", item_id)
            return left, moved, outbox
        finally:
            await conn.close()

    left, moved, outbox = asyncio.run(seed_upgrade_and_read())
    assert left == ["MODEL"]
    assert moved == human and outbox == 1
