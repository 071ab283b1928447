"""The hospital's EHR/ADT system (system ``ehr``): FHIR-shaped Patient, Coverage, Encounter.

A Patient is matched by identifier before one is created: if any identifier of the posted
resource (``system`` + ``value``; the value compared without spaces and case) belongs to a
stored patient, that patient is the answer (200, ``"matched": true``) and the new identifiers
are merged into it, so a second admission of the same person never makes a duplicate record.
Patient writes are serialised (one advisory lock), so two admissions of one person at the same
moment still end with one patient. A Coverage is one per (beneficiary, payor, subscriberId): a
repeat updates it. An Encounter is reversed (``status: cancelled``) by the idempotency key of
the call that created it, as is a Coverage: that is how the admission plan's compensations
undo them.
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
    bundle,
    handled,
    invalid,
    json_response,
    keyed_reverse,
    keyed_write,
    text,
)

SYSTEM = "ehr"
DDL = """
CREATE TABLE IF NOT EXISTS ehr_patients (
    id          bigserial   PRIMARY KEY,
    resource    jsonb       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS ehr_identifiers (     -- who owns an identifier: one patient
    system      text   NOT NULL,
    value_key   text   NOT NULL,                 -- the value without spaces, upper case
    patient_id  bigint NOT NULL REFERENCES ehr_patients (id),
    PRIMARY KEY (system, value_key)
);
CREATE TABLE IF NOT EXISTS ehr_coverages (
    id              bigserial PRIMARY KEY,
    beneficiary     bigint    NOT NULL REFERENCES ehr_patients (id),
    payor_key       text      NOT NULL,
    subscriber_id   text      NOT NULL,
    resource        jsonb     NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (beneficiary, payor_key, subscriber_id)
);
CREATE TABLE IF NOT EXISTS ehr_encounters (
    id          bigserial   PRIMARY KEY,
    subject     bigint      NOT NULL REFERENCES ehr_patients (id),
    resource    jsonb       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
"""
#: Patient writes take this transaction lock: matching and creating are one step.
_PATIENT_LOCK = 0x45_48_52_50  # "EHRP"
_REFERENCE = re.compile(r"^Patient/(\d{1,18})$")


def identifier_key(system: str, value: str) -> tuple[str, str]:
    """How identifiers are compared: the system without case or extra spaces, the value by
    its letters and digits only, without case (``"SB 0071234"``, ``"sb-0071234"`` and
    ``"SB0071234"`` are one MRN, as a registration clerk types it either way)."""
    return " ".join(system.lower().split()), value_key(value)


def value_key(value: str) -> str:
    """An identifier's value as compared: letters and digits, upper case."""
    return re.sub(r"[\W_]+", "", value).upper()


def _identifiers(resource: dict[str, Any]) -> list[dict[str, str]]:
    found = resource.get("identifier", [])
    if not isinstance(found, list):
        raise invalid("identifier must be a list of {system, value}")
    out = []
    for entry in found:
        if not isinstance(entry, dict) or not text(entry.get("system")) \
                or not text(entry.get("value")):
            raise invalid("each identifier needs a system and a value")
        out.append({"system": text(entry["system"]), "value": text(entry["value"])})
    return out


def _resource(body: Any, kind: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise invalid(f"the body must be a FHIR {kind} (a JSON object)")
    if body.get("resourceType", kind) != kind:
        raise invalid(f"resourceType must be {kind!r}")
    return {**body, "resourceType": kind}


async def _patient(conn: asyncpg.Connection, reference: Any, what: str) -> int:
    """The id of the patient ``reference`` (``Patient/<id>``) names; 422 when none."""
    match = _REFERENCE.match(text(reference))
    if match is None:
        raise invalid(f"{what}.reference must be 'Patient/<id>'")
    patient_id = int(match.group(1))
    if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM ehr_patients WHERE id = $1)",
                               patient_id):
        raise invalid(f"{what}: no Patient/{patient_id}")
    return patient_id


def _stored(row: asyncpg.Record, kind: str) -> dict[str, Any]:
    return {**json.loads(row["resource"]), "resourceType": kind, "id": str(row["id"])}


async def register_patient(conn: asyncpg.Connection, body: Any,
                           key: str = "") -> tuple[int, dict[str, Any]]:
    """Match by identifier (200, merged) or create (201)."""
    resource = _resource(body, "Patient")
    identifiers = _identifiers(resource)
    await conn.execute("SELECT pg_advisory_xact_lock($1)", _PATIENT_LOCK)
    owners: dict[tuple[str, str], int] = {}
    for ident in identifiers:
        system, value = identifier_key(ident["system"], ident["value"])
        owner = await conn.fetchval(
            "SELECT patient_id FROM ehr_identifiers WHERE system = $1 AND value_key = $2",
            system, value)
        if owner is not None:
            owners[(system, value)] = owner
    if owners:
        patient_id = next(iter(owners.values()))   # the first identifier that matched
        row = await conn.fetchrow("SELECT * FROM ehr_patients WHERE id = $1", patient_id)
        stored = json.loads(row["resource"])
        have = {identifier_key(i["system"], i["value"]) for i in stored.get("identifier", [])}
        added = []
        for ident in identifiers:
            ikey = identifier_key(ident["system"], ident["value"])
            if ikey not in have and ikey not in owners:
                have.add(ikey)
                added.append(ident)
        for ident in added:
            await conn.execute("INSERT INTO ehr_identifiers (system, value_key, patient_id) "
                               "VALUES ($1, $2, $3)", *identifier_key(ident["system"],
                                                                      ident["value"]),
                               patient_id)
        if added:
            stored["identifier"] = [*stored.get("identifier", []), *added]
            stored.setdefault("meta", {})["versionId"] = str(
                int(stored.get("meta", {}).get("versionId", "1")) + 1)
            await conn.execute("UPDATE ehr_patients SET resource = $2::jsonb, "
                               "updated_at = now() WHERE id = $1", patient_id,
                               json.dumps(stored))
        matched_on = next(iter(owners))
        return 200, {"id": str(patient_id), "matched": True, "matched_on": "identifier",
                     "matched_identifier_system": matched_on[0],
                     "resource": {**stored, "id": str(patient_id)}}
    resource = {k: v for k, v in resource.items() if k not in ("id", "meta")}
    resource["identifier"] = identifiers
    resource["meta"] = {"versionId": "1"}
    patient_id = await conn.fetchval(
        "INSERT INTO ehr_patients (resource) VALUES ($1::jsonb) RETURNING id",
        json.dumps(resource))
    seen: set[tuple[str, str]] = set()
    for ident in identifiers:
        ikey = identifier_key(ident["system"], ident["value"])
        if ikey not in seen:
            seen.add(ikey)
            await conn.execute("INSERT INTO ehr_identifiers (system, value_key, patient_id) "
                               "VALUES ($1, $2, $3)", *ikey, patient_id)
    return 201, {"id": str(patient_id), "matched": False,
                 "resource": {**resource, "id": str(patient_id)}}


async def record_coverage(conn: asyncpg.Connection, body: Any,
                          key: str = "") -> tuple[int, dict[str, Any]]:
    """One coverage per (beneficiary, payor, subscriberId): 201 new, 200 updated."""
    resource = _resource(body, "Coverage")
    beneficiary = await _patient(conn, (resource.get("beneficiary") or {}).get("reference")
                                 if isinstance(resource.get("beneficiary"), dict) else None,
                                 "beneficiary")
    payor = resource.get("payor") or []
    payor_name = text(payor[0].get("display")) if isinstance(payor, list) and payor \
        and isinstance(payor[0], dict) else ""
    order = resource.get("order", 1)   # 1.0 counts: a plan's payload numbers are floats
    if isinstance(order, bool) or not isinstance(order, (int, float)) or order < 1 \
            or order != int(order):
        raise invalid("order must be a whole number >= 1 (1 primary, 2 secondary)")
    resource["order"] = int(order)
    resource = {k: v for k, v in resource.items() if k not in ("id", "meta")}
    resource.setdefault("status", "active")
    row = await conn.fetchrow(
        "INSERT INTO ehr_coverages (beneficiary, payor_key, subscriber_id, resource) "
        "VALUES ($1, $2, $3, $4::jsonb) ON CONFLICT (beneficiary, payor_key, subscriber_id) "
        "DO UPDATE SET resource = EXCLUDED.resource, updated_at = now() "
        "RETURNING id, (xmax = 0) AS inserted",
        beneficiary, " ".join(payor_name.lower().split()),
        value_key(text(resource.get("subscriberId"))), json.dumps(resource))
    return (201 if row["inserted"] else 200), {
        "id": str(row["id"]), "resource": {**resource, "id": str(row["id"])}}


async def create_encounter(conn: asyncpg.Connection, body: Any,
                           key: str = "") -> tuple[int, dict[str, Any]]:
    resource = _resource(body, "Encounter")
    subject = await _patient(conn, (resource.get("subject") or {}).get("reference")
                             if isinstance(resource.get("subject"), dict) else None, "subject")
    resource = {k: v for k, v in resource.items() if k not in ("id", "meta")}
    resource.setdefault("status", "in-progress")
    encounter_id = await conn.fetchval(
        "INSERT INTO ehr_encounters (subject, resource) VALUES ($1, $2::jsonb) RETURNING id",
        subject, json.dumps(resource))
    return 201, {"id": str(encounter_id), "resource": {**resource, "id": str(encounter_id)}}


def _cancel(table: str, kind: str):  # type: ignore[no-untyped-def]
    async def undo(conn: asyncpg.Connection, answer: dict[str, Any]) -> dict[str, Any]:
        row = await conn.fetchrow(
            f"UPDATE {table} SET resource = jsonb_set(resource, '{{status}}', '\"cancelled\"') "
            "WHERE id = $1 RETURNING *", int(answer["id"]))
        return {"id": answer["id"], "resource": _stored(row, kind)} if row else {}
    return undo


async def _search(pool: asyncpg.Pool, table: str, kind: str, column: str,
                  reference: str) -> web.Response:
    match = _REFERENCE.match(reference)
    if match is None:
        raise invalid("search by a reference 'Patient/<id>'")
    rows = await pool.fetch(f"SELECT * FROM {table} WHERE {column} = $1 ORDER BY id",
                            int(match.group(1)))
    return json_response(bundle([_stored(r, kind) for r in rows]))


@handled
async def search_patients(request: web.Request) -> web.Response:
    """``?identifier=<system>|<value>`` (or ``?_id=<id>``): a searchset Bundle."""
    pool = request.app[LEDGER].pool
    if "_id" in request.query:
        rows = await pool.fetch("SELECT * FROM ehr_patients WHERE id = $1",
                                int(request.query["_id"]) if request.query["_id"].isdigit()
                                else -1)
    elif "identifier" in request.query:
        system, bar, value = request.query["identifier"].rpartition("|")
        if not bar or not value:
            raise invalid("identifier=<system>|<value>")
        rows = await pool.fetch(
            "SELECT p.* FROM ehr_patients p JOIN ehr_identifiers i ON i.patient_id = p.id "
            "WHERE i.system = $1 AND i.value_key = $2", *identifier_key(system, value))
    else:
        raise invalid("search Patient by identifier=<system>|<value> or _id")
    return json_response(bundle([_stored(r, "Patient") for r in rows]))


@handled
async def search_encounters(request: web.Request) -> web.Response:
    return await _search(request.app[LEDGER].pool, "ehr_encounters", "Encounter", "subject",
                         request.query.get("subject", ""))


@handled
async def search_coverages(request: web.Request) -> web.Response:
    return await _search(request.app[LEDGER].pool, "ehr_coverages", "Coverage", "beneficiary",
                         request.query.get("beneficiary", ""))


def _read(table: str, kind: str):  # type: ignore[no-untyped-def]
    @handled
    async def read(request: web.Request) -> web.Response:
        resource_id = request.match_info["id"]
        row = await request.app[LEDGER].pool.fetchrow(
            f"SELECT * FROM {table} WHERE id = $1",
            int(resource_id) if resource_id.isdigit() else -1)
        if row is None:
            raise Refused(404, {"error": f"no {kind}/{resource_id}"})
        return json_response(_stored(row, kind))
    return read


def add_routes(app: web.Application) -> None:
    """The EHR's routes (before the ERP's generic ``/{system}/{collection}`` ones)."""
    for kind, apply in (("Patient", register_patient), ("Coverage", record_coverage),
                        ("Encounter", create_encounter)):
        app.router.add_post(f"/ehr/{kind}", lambda r, k=kind, a=apply: keyed_write(
            r, SYSTEM, k.lower(), a))
    for kind, table in (("Coverage", "ehr_coverages"), ("Encounter", "ehr_encounters")):
        app.router.add_delete(f"/ehr/{kind}/{{key}}", lambda r, k=kind, t=table: keyed_reverse(
            r, SYSTEM, k.lower(), _cancel(t, k)))
    app.router.add_get("/ehr/Patient", search_patients)
    app.router.add_get("/ehr/Encounter", search_encounters)
    app.router.add_get("/ehr/Coverage", search_coverages)
    for kind, table in (("Patient", "ehr_patients"), ("Coverage", "ehr_coverages"),
                        ("Encounter", "ehr_encounters")):
        app.router.add_get(f"/ehr/{kind}/{{id}}", _read(table, kind))


__all__ = ["DDL", "add_routes", "create_encounter", "identifier_key", "record_coverage",
           "register_patient"]
