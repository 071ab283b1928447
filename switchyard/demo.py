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
    decided_otherwise,
    discharge_full_units,
    invoice_outcomes,
    names_field,
    purchasing_table,
    seed_hospital,
    seed_purchasing,
    shorten_bed_retries,
    summary_table,
    ticket_detail,
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
    "decided_otherwise",
    "discharge_full_units",
    "invoice_outcomes",
    "names_field",
    "purchasing_table",
    "run_classrooms",
    "seed_hospital",
    "seed_purchasing",
    "shorten_bed_retries",
    "summary_table",
    "ticket_detail",
    "ticket_reason",
]
