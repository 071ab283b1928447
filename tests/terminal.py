"""Terminal statuses for tests, derived from the one definition in ``switchyard._taskstore``.

Tests never spell out their own set: if a status became terminal (or stopped being), a local
copy would silently wait for the wrong thing. tests/unit/test_terminal.py fails if one
reappears.
"""

from __future__ import annotations

from switchyard.tasks import TERMINAL, status_value

#: :data:`switchyard._taskstore.TERMINAL` as ``TaskStatus`` enum values.
TERMINAL_STATUSES: frozenset[int] = frozenset(status_value(name) for name in TERMINAL)

__all__ = ["TERMINAL", "TERMINAL_STATUSES"]
