"""The demo downstream's hospital: an EHR/ADT system, a payer and a bed board.

Three systems the ``hospital_admission`` pack's plan calls (aliases ``ehr``, ``payer`` and
``beds`` in the embedded stack's endpoint map), each in its own module over its own tables in
the downstream's schema: :mod:`.ehr` (FHIR-shaped Patient matched by identifier, Coverage,
Encounter), :mod:`.payer` (member records and the eligibility inquiry) and :mod:`.beds`
(capacity per unit and bed type, bookings, discharges). Their writes are effects in the
ledger's ``effects`` table like the ERP's (once per idempotency key, reversible), and the
fault board applies to them by system name (``PUT /_/faults/payer {"outage": true}``).
"""

from __future__ import annotations

import asyncpg
from aiohttp import web

from services.executor.downstream.faults import FaultBoard
from services.executor.downstream.hospital import beds, ehr, payer
from services.executor.downstream._web import FAULTS, LEDGER
from services.executor.downstream.store import Ledger

SYSTEMS = ("ehr", "payer", "beds")
DDL = ehr.DDL + payer.DDL + beds.DDL


async def prepare(conn: asyncpg.Connection) -> None:
    """Create the hospital's tables (in the current schema) and the default hospital."""
    await conn.execute(DDL)
    await beds.seed_default(conn)


def add_routes(app: web.Application, ledger: Ledger, faults: FaultBoard) -> None:
    """Mount the three systems (before the ERP's generic routes, which would take them)."""
    app[LEDGER] = ledger   # the ERP's routes share them (the same keys)
    app[FAULTS] = faults
    ehr.add_routes(app)
    payer.add_routes(app)
    beds.add_routes(app)


__all__ = ["DDL", "SYSTEMS", "add_routes", "beds", "ehr", "payer", "prepare"]
