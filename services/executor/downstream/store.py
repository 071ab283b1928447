"""The demo downstream's ledger in PostgreSQL: effects keyed by idempotency key, appends (the
one endpoint that does not deduplicate), and a log of every call (so tests and operators can
see retries, replays and compensation order). The hospital's systems (:mod:`.hospital`) keep
their state in tables of their own in the same schema, created here too, and record their
writes as effects; so do the ERP's purchase orders (:mod:`.purchasing`), which are operator
data, not effects.

The downstream owns its schema (``SWITCHYARD_DOWNSTREAM_SCHEMA``, by default
``<postgres_schema>_downstream``) and creates it on start, like any third-party system would;
it shares nothing with Switchyard's tables.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

import asyncpg

_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_LOCK = 0x45_52_50_53  # "ERPS"


def schema_for(postgres_schema: str, downstream_schema: str = "") -> str:
    schema = downstream_schema or f"{postgres_schema}_downstream"
    if not _SCHEMA.match(schema):
        raise ValueError(f"downstream schema must match {_SCHEMA.pattern}, got {schema!r}")
    return schema


DDL = """
CREATE TABLE IF NOT EXISTS effects (
    id               bigserial PRIMARY KEY,
    idempotency_key  text        NOT NULL UNIQUE,
    system           text        NOT NULL,
    collection       text        NOT NULL,
    operation        text        NOT NULL DEFAULT '',
    task_id          text        NOT NULL DEFAULT '',
    tenant_id        text        NOT NULL DEFAULT '',
    body             jsonb       NOT NULL,
    body_sha256      text        NOT NULL,
    status           text        NOT NULL DEFAULT 'active',   -- active | reversed
    created_at       timestamptz NOT NULL DEFAULT now(),
    reversed_at      timestamptz,
    reversed_by      text
);
-- the first answer of a hospital write, replayed for a repeat of its key
ALTER TABLE effects ADD COLUMN IF NOT EXISTS answer jsonb;
CREATE TABLE IF NOT EXISTS appends (         -- the non-deduplicating endpoint: a row a call
    id               bigserial PRIMARY KEY,
    at               timestamptz NOT NULL DEFAULT clock_timestamp(),
    idempotency_key  text        NOT NULL DEFAULT '',
    system           text        NOT NULL,
    collection       text        NOT NULL,
    task_id          text        NOT NULL DEFAULT '',
    body             jsonb       NOT NULL
);
CREATE TABLE IF NOT EXISTS calls (
    id               bigserial PRIMARY KEY,
    at               timestamptz NOT NULL DEFAULT clock_timestamp(),
    protocol         text        NOT NULL,
    method           text        NOT NULL,
    path             text        NOT NULL,
    idempotency_key  text        NOT NULL DEFAULT '',
    outcome          text        NOT NULL,   -- created | replayed | reversed | fault | ...
    status           integer     NOT NULL
);
"""


def body_hash(body: Any) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
                          ).hexdigest()


@dataclass(frozen=True)
class Effect:
    id: int
    idempotency_key: str
    system: str
    collection: str
    status: str
    body: Any

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "idempotency_key": self.idempotency_key, "system": self.system,
                "collection": self.collection, "status": self.status, "data": self.body}


class KeyReused(Exception):
    """The idempotency key was used before with a different payload."""


def _effect(row: asyncpg.Record) -> Effect:
    return Effect(row["id"], row["idempotency_key"], row["system"], row["collection"],
                  row["status"], json.loads(row["body"]))


class Ledger:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @staticmethod
    async def create_schema(conn: asyncpg.Connection, schema: str) -> None:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK)
        try:
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            await conn.execute(f'SET search_path TO "{schema}"')
            await conn.execute(DDL)
            from services.executor.downstream import hospital, purchasing
            await hospital.prepare(conn)
            await conn.execute(purchasing.DDL)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK)

    async def record(self, key: str, system: str, collection: str, operation: str,
                     task_id: str, tenant_id: str, body: Any) -> tuple[Effect, bool]:
        """Store once per key; returns the effect and whether it was new."""
        digest = body_hash(body)
        row = await self.pool.fetchrow(
            "INSERT INTO effects (idempotency_key, system, collection, operation, task_id, "
            "tenant_id, body, body_sha256) VALUES ($1,$2,$3,$4,$5,$6,$7::jsonb,$8) "
            "ON CONFLICT (idempotency_key) DO NOTHING RETURNING *",
            key, system, collection, operation, task_id, tenant_id, json.dumps(body), digest)
        if row is not None:
            return _effect(row), True
        existing = await self.pool.fetchrow("SELECT * FROM effects WHERE idempotency_key = $1",
                                            key)
        assert existing is not None
        if (existing["body_sha256"], existing["system"], existing["collection"]) != (
                digest, system, collection):
            raise KeyReused(key)
        return _effect(existing), False

    async def append(self, key: str, system: str, collection: str, task_id: str,
                     body: Any) -> int:
        """Store the call as a new row, whatever its key: no deduplication."""
        return await self.pool.fetchval(
            "INSERT INTO appends (idempotency_key, system, collection, task_id, body) "
            "VALUES ($1,$2,$3,$4,$5::jsonb) RETURNING id",
            key, system, collection, task_id, json.dumps(body))

    async def reverse(self, key: str, system: str, collection: str,
                      by: str) -> tuple[Effect, bool] | None:
        """Mark an effect reversed; returns it and whether this call reversed it (None: no
        such effect)."""
        row = await self.pool.fetchrow(
            "UPDATE effects SET status = 'reversed', reversed_at = now(), reversed_by = $4 "
            "WHERE idempotency_key = $1 AND system = $2 AND collection = $3 "
            "AND status = 'active' RETURNING *", key, system, collection, by)
        if row is not None:
            return _effect(row), True
        existing = await self.get(key, system, collection)
        return (existing, False) if existing is not None else None

    async def get(self, key: str, system: str, collection: str) -> Effect | None:
        row = await self.pool.fetchrow(
            "SELECT * FROM effects WHERE idempotency_key = $1 AND system = $2 "
            "AND collection = $3", key, system, collection)
        return _effect(row) if row is not None else None

    async def log(self, protocol: str, method: str, path: str, key: str, outcome: str,
                  status: int) -> None:
        await self.pool.execute(
            "INSERT INTO calls (protocol, method, path, idempotency_key, outcome, status) "
            "VALUES ($1,$2,$3,$4,$5,$6)", protocol, method, path, key, outcome, status)


def validate_body(body: Any) -> str:
    """Business rules of the simulated ERP; returns the problem, or '' when the body is fine."""
    if not isinstance(body, dict):
        return "the body must be a JSON object"
    amount = body.get("amount")
    if amount is not None and (isinstance(amount, bool) or not isinstance(amount, (int, float))
                               or amount < 0):
        return "amount must be a number >= 0"
    return ""
