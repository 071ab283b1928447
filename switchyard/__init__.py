"""Switchyard's shared package: the plumbing every service uses, and the generated contract.

It imports no service, except where it starts them (``cli`` and the launcher behind
``switchyard.runtime.up``). Code outside the package imports the public modules, each
re-exporting names from private ``_modules`` with an explicit ``__all__``:

* ``switchyard`` -- :class:`Settings` (every setting, declared once);
* ``switchyard.runtime`` -- the service lifecycle, supervised loops, the stack launcher;
* ``switchyard.telemetry`` -- logs, traces, business KPIs;
* ``switchyard.storage`` -- PostgreSQL: pool, migrations, group commit, sealed payloads, retention;
* ``switchyard.tasks`` -- submissions, priority, status moves, escalations;
* ``switchyard.audit`` -- the hash-chained audit trail;
* ``switchyard.messaging`` -- topics, the producer, serde, stream-processing helpers;
* ``switchyard.rpc`` -- gRPC servers and channels, errors, HTTP problem documents;
* ``switchyard.access`` -- API keys and roles, signed intake, tenant rate limits;
* ``switchyard.privacy`` -- data classes, withholding and redaction of personal data;
* ``switchyard.documents``, ``switchyard.packs``, ``switchyard.signals`` -- documents, automation
  packs, classroom signals; ``switchyard.demo`` -- the demo's workloads; ``switchyard.v1`` --
  the generated contract.
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
