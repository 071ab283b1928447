"""The payer's eligibility service (system ``payer``): coverage records and an inquiry.

``POST /payer/eligibility`` is an inquiry (as an X12 270/271 exchange), not an effect: it
stores nothing but the call log, and answers from the member records what the payer holds
against what the admission form says. Each disagreement is one discrepancy, named by the
admission pack's field (``patient_name``, ``date_of_birth``, ``member_id``, ``group_number``,
``admission_type``, ``coverage_status``), so the reviewer sees exactly which fields differ and
redaction and reveal rules apply to them. Names are compared ignoring case, punctuation,
extra spaces and "Last, First" order; dates as ISO dates. The member records are set through
the operator API (``/_/payer/members``), the way a test or the demo seeds a payer.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiohttp import web

from services.executor.downstream.hospital._common import (
    LEDGER,
    Refused,
    handled,
    inquiry,
    invalid,
    json_response,
    normal_name,
    parse_date,
    read_json,
    text,
)

SYSTEM = "payer"
#: Paths of calls that are inquiries, not effects: they store nothing (see chaos.invariants).
INQUIRY_PATHS = ("/payer/eligibility",)
ADMISSION_TYPES = ("emergency", "elective", "transfer")
DDL = """
CREATE TABLE IF NOT EXISTS payer_members (
    member_key  text        PRIMARY KEY,   -- the member id without spaces, upper case
    record      jsonb       NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
"""


def member_key(member_id: str) -> str:
    return "".join(member_id.split()).upper()


def member_record(member_id: str, body: Any) -> dict[str, Any]:
    """A member record from the admin API's body; :class:`Refused` (422) names what is wrong."""
    if not isinstance(body, dict):
        raise invalid("a member record is a JSON object")
    known = {"payer", "plan", "status", "ended", "patient_name", "date_of_birth",
             "group_number", "subscriber", "covers"}
    unknown = sorted(set(body) - known)
    if unknown:
        raise invalid(f"unknown fields {unknown}; known: {sorted(known)}")
    record = {"member_id": member_id, "payer": text(body.get("payer")),
              "plan": text(body.get("plan")), "status": text(body.get("status")) or "active",
              "ended": None, "patient_name": text(body.get("patient_name")),
              "date_of_birth": None, "group_number": text(body.get("group_number")),
              "subscriber": text(body.get("subscriber")),
              "covers": body.get("covers", list(ADMISSION_TYPES))}
    if record["status"] not in ("active", "inactive"):
        raise invalid("status: active or inactive")
    for name in ("ended", "date_of_birth"):
        if body.get(name):
            parsed = parse_date(body[name])
            if parsed is None:
                raise invalid(f"{name}: an ISO date (YYYY-MM-DD)")
            record[name] = parsed.isoformat()
    covers = record["covers"]
    if not isinstance(covers, list) or any(c not in ADMISSION_TYPES for c in covers):
        raise invalid(f"covers: a list of {list(ADMISSION_TYPES)}")
    return record


def _inactive_since(record: dict[str, Any], today: str) -> str | None:
    """'' or the end date when the coverage is not in force today; None when it is."""
    ended = record.get("ended") or ""
    if record["status"] != "active" or (ended and ended < today):
        return ended
    return None


def eligibility(record: dict[str, Any] | None, inquiry_body: dict[str, Any],
                today: str) -> dict[str, Any]:
    """The 271 answer to one inquiry against the member's record (None: no such member).
    Plain: a unit test can show every discrepancy kind."""
    submitted = {k: text(inquiry_body.get(k)) for k in (
        "member_id", "patient_name", "date_of_birth", "group_number", "admission_type")}

    def discrepancy(field: str, found: str, note: str, given: str | None = None
                    ) -> dict[str, str]:
        return {"field": field, "submitted": submitted[field] if given is None else given,
                "found": found, "source": "payer", "note": note}

    if record is None:
        return {"eligible": False, "status": "not_found", "plan": "", "discrepancies": [
            discrepancy("member_id", "", "the payer has no member with this id")]}
    found: list[dict[str, str]] = []
    if normal_name(submitted["patient_name"]) != normal_name(record["patient_name"]):
        found.append(discrepancy("patient_name", record["patient_name"],
                                 "the member's name on file differs"))
    dob = parse_date(submitted["date_of_birth"])
    if (dob.isoformat() if dob else submitted["date_of_birth"]) != (record["date_of_birth"]
                                                                     or ""):
        found.append(discrepancy("date_of_birth", record["date_of_birth"] or "",
                                 "the member's date of birth on file differs"))
    if submitted["group_number"] and member_key(submitted["group_number"]) != member_key(
            record["group_number"]):
        found.append(discrepancy("group_number", record["group_number"],
                                 "the member is enrolled under another group"
                                 if record["group_number"] else
                                 "the payer has no group on file for this member"))
    ended = _inactive_since(record, today)
    status = "active" if ended is None else "inactive"
    if ended is not None:
        found.append(discrepancy("coverage_status", "inactive",
                                 f"coverage ended {ended}" if ended else "coverage inactive",
                                 given="active"))
    admission_type = submitted["admission_type"].lower()
    if admission_type and admission_type not in record["covers"]:
        found.append(discrepancy(
            "admission_type", ", ".join(record["covers"]),
            f"plan {record['plan'] or '(unnamed)'} does not cover {admission_type} admissions"))
    return {"eligible": not found, "status": status, "plan": record["plan"],
            "payer": record["payer"], "discrepancies": found}


async def _answer(pool: asyncpg.Pool, body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise invalid("an eligibility inquiry is a JSON object")
    row = await pool.fetchrow("SELECT record FROM payer_members WHERE member_key = $1",
                              member_key(text(body.get("member_id"))))
    return eligibility(json.loads(row["record"]) if row else None, body,
                       datetime.now(UTC).date().isoformat())


async def check_eligibility(request: web.Request) -> web.Response:
    return await inquiry(request, SYSTEM, "eligibility", _answer)


@handled
async def put_member(request: web.Request) -> web.Response:
    member_id = request.match_info["member_id"].strip()
    if not member_key(member_id):
        raise invalid("a member id is required")
    record = member_record(member_id, await read_json(request))
    await request.app[LEDGER].pool.execute(
        "INSERT INTO payer_members (member_key, record) VALUES ($1, $2::jsonb) "
        "ON CONFLICT (member_key) DO UPDATE SET record = EXCLUDED.record, updated_at = now()",
        member_key(member_id), json.dumps(record))
    return json_response(record)


@handled
async def get_member(request: web.Request) -> web.Response:
    row = await request.app[LEDGER].pool.fetchrow(
        "SELECT record FROM payer_members WHERE member_key = $1",
        member_key(request.match_info["member_id"]))
    if row is None:
        raise Refused(404, {"error": "no such member"})
    return json_response(json.loads(row["record"]))


async def delete_members(request: web.Request) -> web.Response:
    deleted = await request.app[LEDGER].pool.fetchval(
        "WITH gone AS (DELETE FROM payer_members RETURNING 1) SELECT count(*) FROM gone")
    return json_response({"deleted": deleted})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/payer/eligibility", check_eligibility)
    app.router.add_put("/_/payer/members/{member_id}", put_member)
    app.router.add_get("/_/payer/members/{member_id}", get_member)
    app.router.add_delete("/_/payer/members", delete_members)


__all__ = ["ADMISSION_TYPES", "DDL", "INQUIRY_PATHS", "add_routes", "eligibility", "member_key", "member_record"]
