"""Custom connectors: Python classes that carry steps to systems the built-in HTTP, gRPC and
SQL connectors cannot reach (a mail relay, a message queue, a vendor SDK).

A connector registers under a name in the entry point group ``switchyard.connectors``
(``[project.entry-points."switchyard.connectors"] mailer = "acme_ops.mail:MailConnector"``);
the name is the URL scheme of the targets it carries: a step with target
``mailer://outbox/send`` goes to ``MailConnector().call(step)`` (the target, unresolved, is
``StepCall.address``; the alias map is not consulted), behind its own circuit breaker
``mailer://outbox``, with the same idempotency key, retries, backoff and compensation as any
step. The class is instantiated once per executor process, with no arguments, and implements
:class:`services.executor.connectors.Connector` (``async call(step) -> StepOutcome``, raising
``retryable(...)`` / ``permanent(...)``; ``async close()``).

Loaded when the executor starts: a connector that cannot be loaded (import error, not a
class with ``call`` and ``close``, a name that is not a URL scheme or shadows a built-in one)
stops the start with a message naming it, instead of failing every step that needs it later.
"""

from __future__ import annotations

import re
from importlib.metadata import entry_points

from services.executor.connectors import Connector

GROUP = "switchyard.connectors"
#: Schemes the built-in connectors own.
BUILTIN_SCHEMES = frozenset({"http", "https", "grpc"})
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]{0,31}$")


class ConnectorLoadError(ValueError):
    """A registered connector cannot be used; the message names it and why."""


def load_custom_connectors() -> dict[str, Connector]:
    """Every connector registered in ``switchyard.connectors``, by name (its target scheme)."""
    loaded: dict[str, Connector] = {}
    for point in sorted(entry_points(group=GROUP), key=lambda p: p.name):
        where = f"connector {point.name!r} ({point.value}) in entry point group {GROUP}"
        if not _SCHEME.match(point.name) or point.name in BUILTIN_SCHEMES:
            raise ConnectorLoadError(f"{where}: the name must be a URL scheme "
                                     f"({_SCHEME.pattern}) other than "
                                     f"{', '.join(sorted(BUILTIN_SCHEMES))}")
        if point.name in loaded:
            raise ConnectorLoadError(f"{where}: registered twice")
        try:
            factory = point.load()
            connector = factory()
        except Exception as exc:  # a plugin's import or constructor: any error, reported
            raise ConnectorLoadError(f"{where}: cannot be loaded: "
                                     f"{type(exc).__name__}: {exc}") from None
        if not (callable(getattr(connector, "call", None))
                and callable(getattr(connector, "close", None))):
            raise ConnectorLoadError(f"{where}: {type(connector).__name__} has no async "
                                     "call(step) and close() (the Connector protocol)")
        loaded[point.name] = connector
    return loaded


__all__ = ["BUILTIN_SCHEMES", "GROUP", "ConnectorLoadError", "load_custom_connectors"]
