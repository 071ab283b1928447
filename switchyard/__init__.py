"""Switchyard's shared package: the plumbing every service uses, and the generated contract.

Public names are re-exported here from private modules; import from ``switchyard``.
"""

import os as _os

# Every Switchyard process that forks does so only to exec (the stack launcher starting
# PostgreSQL, the broker and Triton; the CLI and tests starting services). gRPC's fork
# handlers are for children that go on using gRPC; run in a child about to exec while other
# threads are inside gRPC, they can crash it before exec (grpc/grpc#13998; a PostgreSQL
# restart under load once died of SIGSEGV this way). gRPC reads this when it loads, and this
# package is imported before it; an operator's explicit setting is kept.
_os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

from switchyard._settings import Settings, SettingsError, settings_reference_markdown  # noqa: E402

__all__ = ["Settings", "SettingsError", "settings_reference_markdown"]
__version__ = "0.1.0"
