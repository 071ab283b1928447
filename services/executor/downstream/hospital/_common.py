"""What the hospital systems share: keyed writes and reversals over the downstream's ledger.

Every hospital write (a Patient, a Coverage, an Encounter, a bed booking) is an *effect* in the
ledger's ``effects`` table, keyed by its ``Idempotency-Key``, like the ERP's writes: the domain
change (a row in the system's own tables) and the effect are stored in one transaction, and the
effect keeps the first answer (``effects.answer``), so a repeat of the key answers exactly what
the first call answered (200, ``Idempotent-Replayed: true``) without a second change. A call
the system refuses (422, or the bed board's 409 ``no_bed``) stores nothing: the key is not
consumed and may succeed later. Fault injection (``faults``) applies per system and collection
(``ehr/patient``, ``payer/eligibility``, ``beds/bookings``, ...), before or after the write.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any

import asyncpg
from aiohttp import web

from services.executor.downstream._web import FAULTS, LEDGER, apply_faults, json_response
from services.executor.downstream.store import body_hash

MAX_BODY_BYTES = 64 * 1024


class Refused(Exception):
    """The system answers without storing anything (422 invalid, 409 no bed, ...)."""

    def __init__(self, status: int, answer: dict[str, Any], outcome: str = "") -> None:
        super().__init__(answer.get("error", ""))
        self.status = status
        self.answer = answer
        self.outcome = outcome or ("no_bed" if status == 409 else "invalid")


def invalid(message: str) -> Refused:
    return Refused(422, {"error": message})


def error(status: int, message: str, **extra: Any) -> web.Response:
    return json_response({"error": message, **extra}, status=status)


async def read_json(request: web.Request) -> Any:
    """The request's JSON body; :class:`Refused` (400) when it is not JSON."""
    try:
        return json.loads(await request.text() or "null")
    except ValueError as exc:
        raise Refused(400, {"error": f"body is not JSON: {exc}"}) from exc




Apply = Callable[[asyncpg.Connection, Any, str], Awaitable[tuple[int, dict[str, Any]]]]


async def keyed_write(request: web.Request, system: str, collection: str,
                      apply: Apply) -> web.Response:
    """Once per ``Idempotency-Key``: ``apply(conn, body, key)`` makes the change and returns the
    status and answer, or raises :class:`Refused` (nothing stored, key not consumed)."""
    key = request.headers.get("Idempotency-Key", "")
    if not key or len(key) > 255:
        return error(400, "Idempotency-Key header required (1-255 characters)")
    faulted = await apply_faults(request, system, collection, key)
    if isinstance(faulted, web.Response):
        return faulted
    ledger = request.app[LEDGER]
    try:
        body = await read_json(request)
        digest = body_hash(body)
        async with ledger.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", "key:" + key)
            existing = await conn.fetchrow(
                "SELECT system, collection, body_sha256, answer FROM effects "
                "WHERE idempotency_key = $1", key)
            if existing is not None:
                if (existing["system"], existing["collection"], existing["body_sha256"]) != (
                        system, collection, digest):
                    raise Refused(422, {"error": "Idempotency-Key was used before with a "
                                                 "different payload"}, "key_reused")
                answer = json.loads(existing["answer"] or "{}")
                status, outcome = 200, "replayed"
            else:
                status, answer = await apply(conn, body, key)
                await conn.execute(
                    "INSERT INTO effects (idempotency_key, system, collection, operation, "
                    "task_id, tenant_id, body, body_sha256, answer) "
                    "VALUES ($1,$2,$3,$4,$5,$6,$7::jsonb,$8,$9::jsonb)",
                    key, system, collection, request.headers.get("X-Switchyard-Operation", ""),
                    request.headers.get("X-Switchyard-Task-Id", ""),
                    request.headers.get("X-Switchyard-Tenant-Id", ""),
                    json.dumps(body), digest, json.dumps(answer, default=str))
                outcome = "created"
    except Refused as refused:
        await ledger.log("http", request.method, request.path, key, refused.outcome,
                         faulted or refused.status)
        if faulted:
            return error(faulted, "injected failure after the call")
        return json_response(refused.answer, status=refused.status)
    await ledger.log("http", request.method, request.path, key, outcome, faulted or status)
    if faulted:  # done, but the caller never hears about it
        return error(faulted, "injected failure after the write")
    return json_response(answer, status=status,
                         headers={"Idempotent-Replayed": "true"} if outcome == "replayed"
                         else None)


Undo = Callable[[asyncpg.Connection, dict[str, Any]], Awaitable[dict[str, Any]]]


async def keyed_reverse(request: web.Request, system: str, collection: str,
                        undo: Undo) -> web.Response:
    """Reverse the effect stored under the path's key: ``undo(conn, first_answer)`` changes the
    system's tables and returns what to add to the answer. An unknown key answers 200 with
    ``"reversed": false``: the compensation of a step that never landed must not fail."""
    target = request.match_info["key"]
    by = request.headers.get("Idempotency-Key", "")
    faulted = await apply_faults(request, system, collection, by)
    if isinstance(faulted, web.Response):
        return faulted
    ledger = request.app[LEDGER]
    headers = None
    async with ledger.pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", "key:" + target)
        row = await conn.fetchrow(
            "SELECT status, answer FROM effects WHERE idempotency_key = $1 AND system = $2 "
            "AND collection = $3", target, system, collection)
        if row is None:
            answer: dict[str, Any] = {"idempotency_key": target, "reversed": False}
            outcome = "not_found"
        elif row["status"] == "reversed":
            answer = {"idempotency_key": target, "reversed": True}
            outcome, headers = "replayed", {"Idempotent-Replayed": "true"}
        else:
            answer = {"idempotency_key": target, "reversed": True,
                      **await undo(conn, json.loads(row["answer"] or "{}"))}
            await conn.execute(
                "UPDATE effects SET status = 'reversed', reversed_at = now(), reversed_by = $2 "
                "WHERE idempotency_key = $1", target, by)
            outcome = "reversed"
    await ledger.log("http", "DELETE", request.path, by, outcome, faulted or 200)
    if faulted:
        return error(faulted, "injected failure after the write")
    return json_response(answer, headers=headers)


async def inquiry(request: web.Request, system: str, collection: str,
                  answer: Callable[[asyncpg.Pool, Any], Awaitable[dict[str, Any]]]
                  ) -> web.Response:
    """A read that is not an effect (an eligibility inquiry): faults apply, nothing is stored
    but the call log."""
    key = request.headers.get("Idempotency-Key", "")
    faulted = await apply_faults(request, system, collection, key)
    if isinstance(faulted, web.Response):
        return faulted
    ledger = request.app[LEDGER]
    try:
        result = await answer(ledger.pool, await read_json(request))
    except Refused as refused:
        await ledger.log("http", request.method, request.path, key, "invalid", refused.status)
        return json_response(refused.answer, status=refused.status)
    await ledger.log("http", request.method, request.path, key, "inquiry", faulted or 200)
    if faulted:
        return error(faulted, "injected failure after the call")
    return json_response(result)


def bundle(resources: list[dict[str, Any]]) -> dict[str, Any]:
    """A FHIR searchset Bundle of ``resources``."""
    return {"resourceType": "Bundle", "type": "searchset", "total": len(resources),
            "entry": [{"fullUrl": f"{r['resourceType']}/{r['id']}", "resource": r}
                      for r in resources]}


def handled(handler: Callable[[web.Request], Awaitable[web.Response]]
            ) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Turn a :class:`Refused` raised by an admin or search handler into its answer."""
    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.Response:
        try:
            return await handler(request)
        except Refused as refused:
            return json_response(refused.answer, status=refused.status)
    return wrapper


def normal_name(name: str) -> str:
    """A person's name for comparison: "Last, First" read as "First Last", then only its
    letters and digits, in lower case (case, punctuation and spaces ignored: "O'Neil" is
    "ONEIL")."""
    last, comma, first = name.partition(",")
    if comma:
        name = f"{first} {last}"
    return "".join(ch for ch in name.lower() if ch.isalnum())


def parse_date(value: Any) -> date | None:
    """An ISO date (``YYYY-MM-DD``, a datetime's date part accepted); None otherwise."""
    if isinstance(value, date):
        return value
    if not isinstance(value, str):
        return None
    try:
        return date.fromisoformat(value.strip()[:10])
    except ValueError:
        return None


def text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


__all__ = ["FAULTS", "LEDGER", "Refused", "bundle", "error", "handled", "inquiry", "invalid",
           "json_response", "keyed_reverse", "keyed_write", "normal_name", "parse_date",
           "read_json", "text"]
