"""The bed board (system ``beds``): capacity per unit and bed type, bookings, discharges.

Each bed is a row (``<UNIT>-<n>``) of a unit and a bed type, free, booked (by the idempotency
key of the booking) or held (occupied by a patient admitted outside Switchyard: the operator
API's ``occupied``). A booking takes the lowest free bed of its unit and type, under a lock on
the unit, so two admissions never get one bed. No free bed is a 409 ``no_bed`` that stores
nothing: the same key books later, once a discharge frees a bed (that is what the admission
plan's ``retry_later`` waits for). ``DELETE /beds/bookings/{key}`` releases the bed (the plan's
compensation). The board starts with a default hospital (:data:`DEFAULT_HOSPITAL`) the first
time the downstream creates its tables; after that it is what the operator API made of it.
"""

from __future__ import annotations

import json
import re
from typing import Any

import asyncpg
from aiohttp import web

from services.executor.downstream.hospital._common import (
    LEDGER,
    Refused,
    handled,
    invalid,
    json_response,
    keyed_reverse,
    keyed_write,
    read_json,
    text,
)

SYSTEM = "beds"
DDL = """
CREATE TABLE IF NOT EXISTS bed_units (
    unit        text    PRIMARY KEY,
    position    integer NOT NULL
);
CREATE TABLE IF NOT EXISTS beds (
    bed         text    PRIMARY KEY,                 -- <UNIT>-<n>
    unit        text    NOT NULL REFERENCES bed_units (unit),
    bed_type    text    NOT NULL,
    number      integer NOT NULL,
    booking     text,                                -- the booking's idempotency key
    held        boolean NOT NULL DEFAULT false,      -- occupied outside Switchyard
    UNIQUE (unit, number)
);
CREATE TABLE IF NOT EXISTS bed_bookings (
    booking_id      bigserial   PRIMARY KEY,
    idempotency_key text        NOT NULL UNIQUE,
    unit            text        NOT NULL,
    bed_type        text        NOT NULL,
    bed             text        NOT NULL,
    patient         text        NOT NULL DEFAULT '',
    admission_type  text        NOT NULL DEFAULT '',
    status          text        NOT NULL DEFAULT 'booked',   -- booked | released | discharged
    created_at      timestamptz NOT NULL DEFAULT now(),
    ended_at        timestamptz
);
"""
#: The hospital the board starts with: unit -> bed type -> beds.
DEFAULT_HOSPITAL: dict[str, dict[str, int]] = {
    "emergency": {"standard": 6},
    "medical": {"standard": 8, "isolation": 2},
    "surgical": {"standard": 6},
    "icu": {"icu": 4},
    "maternity": {"standard": 4},
    "pediatrics": {"standard": 4},
    "cardiology": {"standard": 4, "telemetry": 4},
}
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")


def unit_name(value: Any) -> str:
    """Units and bed types are compared in lower case, spaces as ``_``."""
    return "_".join(text(value).lower().split())


async def seed_default(conn: asyncpg.Connection) -> None:
    """Give an empty board the default hospital (called when the tables are created)."""
    if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM bed_units)"):
        return
    for unit, beds in DEFAULT_HOSPITAL.items():
        await set_capacity(conn, unit, beds, {})


async def set_capacity(conn: asyncpg.Connection, unit: str, capacity: dict[str, int],
                       occupied: dict[str, int]) -> None:
    """Make ``unit`` have ``capacity`` beds per type (types not named: none) and, for the types
    in ``occupied``, that many held beds. Removes free beds only (409 otherwise)."""
    await conn.execute("INSERT INTO bed_units (unit, position) VALUES ($1, "
                       "(SELECT count(*) FROM bed_units)) ON CONFLICT (unit) DO NOTHING", unit)
    await conn.execute("SELECT 1 FROM bed_units WHERE unit = $1 FOR UPDATE", unit)
    types = {r["bed_type"] for r in await conn.fetch(
        "SELECT DISTINCT bed_type FROM beds WHERE unit = $1", unit)} | set(capacity)
    for bed_type in sorted(types):
        want = capacity.get(bed_type, 0)
        have = await conn.fetch("SELECT bed, booking, held FROM beds WHERE unit = $1 AND "
                                "bed_type = $2 ORDER BY number", unit, bed_type)
        if want > len(have):
            top = await conn.fetchval("SELECT coalesce(max(number), 0) FROM beds "
                                      "WHERE unit = $1", unit)
            await conn.executemany(
                "INSERT INTO beds (bed, unit, bed_type, number) VALUES ($1, $2, $3, $4)",
                [(f"{unit.upper()}-{n}", unit, bed_type, n)
                 for n in range(top + 1, top + 1 + want - len(have))])
        elif want < len(have):
            free = [r["bed"] for r in have if r["booking"] is None and not r["held"]]
            surplus = len(have) - want
            if surplus > len(free):
                raise Refused(409, {"error": "occupied", "unit": unit, "bed_type": bed_type,
                                    "occupied": len(have) - len(free)})
            await conn.execute("DELETE FROM beds WHERE bed = ANY($1::text[])",
                               free[-surplus:])
        if bed_type in occupied:
            await _hold(conn, unit, bed_type, occupied[bed_type])


async def _hold(conn: asyncpg.Connection, unit: str, bed_type: str, count: int) -> None:
    """Exactly ``count`` held beds of the type (bookings stay as they are)."""
    held = await conn.fetchval("SELECT count(*) FROM beds WHERE unit = $1 AND bed_type = $2 "
                               "AND held", unit, bed_type)
    if count > held:
        await conn.execute(
            "UPDATE beds SET held = true WHERE bed IN (SELECT bed FROM beds WHERE unit = $1 "
            "AND bed_type = $2 AND booking IS NULL AND NOT held ORDER BY number LIMIT $3)",
            unit, bed_type, count - held)
    elif count < held:
        await conn.execute(
            "UPDATE beds SET held = false WHERE bed IN (SELECT bed FROM beds WHERE unit = $1 "
            "AND bed_type = $2 AND held ORDER BY number DESC LIMIT $3)",
            unit, bed_type, held - count)


async def book(conn: asyncpg.Connection, body: Any, key: str) -> tuple[int, dict[str, Any]]:
    """The lowest free bed of the unit and type (201); 409 ``no_bed``, 422 unknown."""
    if not isinstance(body, dict):
        raise invalid("a booking is a JSON object")
    unit, bed_type = unit_name(body.get("unit")), unit_name(body.get("bed_type")) or "standard"
    if await conn.fetchval("SELECT 1 FROM bed_units WHERE unit = $1 FOR UPDATE", unit) is None:
        raise invalid(f"unknown unit {unit!r}")
    types = {r["bed_type"] for r in await conn.fetch(
        "SELECT DISTINCT bed_type FROM beds WHERE unit = $1", unit)}
    if bed_type not in types:
        raise invalid(f"unit {unit!r} has no {bed_type!r} beds (it has {sorted(types)})")
    bed = await conn.fetchval("SELECT bed FROM beds WHERE unit = $1 AND bed_type = $2 AND "
                              "booking IS NULL AND NOT held ORDER BY number LIMIT 1",
                              unit, bed_type)
    if bed is None:
        raise Refused(409, {"error": "no_bed", "unit": unit, "bed_type": bed_type, "free": 0})
    await conn.execute("UPDATE beds SET booking = $2 WHERE bed = $1", bed, key)
    booking_id = await conn.fetchval(
        "INSERT INTO bed_bookings (idempotency_key, unit, bed_type, bed, patient, "
        "admission_type) VALUES ($1, $2, $3, $4, $5, $6) RETURNING booking_id",
        key, unit, bed_type, bed, text(body.get("patient")), text(body.get("admission_type")))
    return 201, {"booking_id": str(booking_id), "bed": bed, "unit": unit, "bed_type": bed_type}


async def release(conn: asyncpg.Connection, answer: dict[str, Any]) -> dict[str, Any]:
    """Free the booking's bed (unless a discharge already did)."""
    row = await conn.fetchrow(
        "UPDATE bed_bookings SET status = CASE WHEN status = 'booked' THEN 'released' "
        "ELSE status END, ended_at = coalesce(ended_at, now()) WHERE booking_id = $1 "
        "RETURNING idempotency_key, bed", int(answer["booking_id"]))
    if row is not None:
        await conn.execute("UPDATE beds SET booking = NULL WHERE bed = $1 AND booking = $2",
                           row["bed"], row["idempotency_key"])
    return {"booking_id": answer["booking_id"], "bed": answer["bed"], "released": True}


async def discharge(conn: asyncpg.Connection, unit: str, bed_type: str,
                    count: int) -> list[str]:
    """Free ``count`` occupied beds of the type (a patient went home): held beds first, then
    the oldest bookings, which end ``discharged``."""
    await conn.execute("SELECT 1 FROM bed_units WHERE unit = $1 FOR UPDATE", unit)
    freed = [r["bed"] for r in await conn.fetch(
        "UPDATE beds SET held = false WHERE bed IN (SELECT bed FROM beds WHERE unit = $1 AND "
        "bed_type = $2 AND held ORDER BY number LIMIT $3) RETURNING bed",
        unit, bed_type, count)]
    if len(freed) < count:
        rows = await conn.fetch(
            "SELECT b.bed, b.booking FROM beds b JOIN bed_bookings k ON k.idempotency_key = "
            "b.booking WHERE b.unit = $1 AND b.bed_type = $2 ORDER BY k.booking_id LIMIT $3",
            unit, bed_type, count - len(freed))
        for row in rows:
            await conn.execute("UPDATE beds SET booking = NULL WHERE bed = $1", row["bed"])
            await conn.execute("UPDATE bed_bookings SET status = 'discharged', ended_at = now() "
                               "WHERE idempotency_key = $1", row["booking"])
            freed.append(row["bed"])
    return freed


async def board(conn: asyncpg.Connection | asyncpg.Pool) -> dict[str, dict[str, Any]]:
    """unit -> bed type -> capacity, occupied, free."""
    out: dict[str, dict[str, Any]] = {}
    for r in await conn.fetch(
            "SELECT u.unit, b.bed_type, count(b.bed) AS capacity, count(b.bed) FILTER (WHERE "
            "b.booking IS NOT NULL OR b.held) AS occupied FROM bed_units u LEFT JOIN beds b "
            "ON b.unit = u.unit GROUP BY u.unit, u.position, b.bed_type "
            "ORDER BY u.position, b.bed_type"):
        types = out.setdefault(r["unit"], {})
        if r["bed_type"] is not None:
            types[r["bed_type"]] = {"capacity": r["capacity"], "occupied": r["occupied"],
                                    "free": r["capacity"] - r["occupied"]}
    return out


async def post_booking(request: web.Request) -> web.Response:
    return await keyed_write(request, SYSTEM, "bookings", book)


async def delete_booking(request: web.Request) -> web.Response:
    return await keyed_reverse(request, SYSTEM, "bookings", release)


def _counts(value: Any, what: str) -> dict[str, int]:
    if value is None:
        return {}
    if not isinstance(value, dict) or any(
            isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in value.values()):
        raise invalid(f"{what}: an object of bed type -> whole number >= 0")
    counts = {unit_name(k): v for k, v in value.items()}
    if any(not _NAME.match(k) for k in counts):
        raise invalid(f"{what}: bed types are names (letters, digits, _ and -)")
    return counts


@handled
async def put_unit(request: web.Request) -> web.Response:
    unit = unit_name(request.match_info["unit"])
    if not _NAME.match(unit):
        raise invalid("a unit is a name (letters, digits, _ and -)")
    body = await read_json(request)
    if not isinstance(body, dict) or "beds" not in body or set(body) - {"beds", "occupied"}:
        raise invalid('expected {"beds": {<bed type>: <count>}, "occupied": {...}}')
    capacity, occupied = _counts(body["beds"], "beds"), _counts(body.get("occupied"),
                                                                 "occupied")
    if any(occupied[t] > capacity.get(t, 0) for t in occupied):
        raise invalid("occupied: more beds than the unit has")
    async with request.app[LEDGER].pool.acquire() as conn, conn.transaction():
        await set_capacity(conn, unit, capacity, occupied)
        return json_response({unit: (await board(conn))[unit]})


async def get_units(request: web.Request) -> web.Response:
    return json_response({"units": await board(request.app[LEDGER].pool)})


@handled
async def post_discharge(request: web.Request) -> web.Response:
    unit = unit_name(request.match_info["unit"])
    body = await read_json(request)
    if not isinstance(body, dict):
        raise invalid('expected {"bed_type": ..., "count": n}')
    bed_type = unit_name(body.get("bed_type")) or "standard"
    count = body.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise invalid("count: a whole number >= 1")
    async with request.app[LEDGER].pool.acquire() as conn, conn.transaction():
        if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM bed_units WHERE unit = $1)",
                                   unit):
            raise Refused(404, {"error": f"unknown unit {unit!r}"})
        freed = await discharge(conn, unit, bed_type, count)
        return json_response({"discharged": len(freed), "beds": freed,
                              "unit": unit, "bed_type": bed_type,
                              "free": (await board(conn))[unit].get(bed_type, {}).get("free",
                                                                                      0)})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/beds/bookings", post_booking)
    app.router.add_delete("/beds/bookings/{key}", delete_booking)
    app.router.add_get("/_/beds/units", get_units)
    app.router.add_put("/_/beds/units/{unit}", put_unit)
    app.router.add_post("/_/beds/units/{unit}/discharge", post_discharge)


__all__ = ["DDL", "DEFAULT_HOSPITAL", "add_routes", "board", "book", "discharge", "release",
           "seed_default", "set_capacity"]
