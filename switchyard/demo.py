"""``switchyard demo``'s workloads, for the chaos run and tests that drive the same ones.

Re-exported from ``_demo`` and ``_demo_classroom``.
"""

from __future__ import annotations

from switchyard._demo import (
    BED_RETRY_EVERY,
    TENANTS,
    Tally,
    Ticket,
    admissions_table,
    discharge_full_units,
    seed_hospital,
    shorten_bed_retries,
    ticket_reason,
)
from switchyard._demo_classroom import (
    classroom_table,
    run_classrooms,
)

__all__ = [
    "BED_RETRY_EVERY",
    "TENANTS",
    "Tally",
    "Ticket",
    "admissions_table",
    "classroom_table",
    "discharge_full_units",
    "run_classrooms",
    "seed_hospital",
    "shorten_bed_retries",
    "ticket_reason",
]
