"""Custom connectors: Python classes that carry steps to systems the built-in HTTP, gRPC and
SQL connectors cannot reach (a mail relay, a message queue, a vendor SDK).

A connector registers under a name in the entry point group ``switchyard.connectors``
(``[project.entry-points."switchyard.connectors"] mailer = "acme_ops.mail:MailConnector"``);
the name is the URL scheme of the targets it carries: a step with target
``mailer://outbox/send`` goes to ``MailConnector().call(step)`` (the target, unresolved, is
``StepCall.address``; the alias map is not consulted), behind its own circuit breaker
``mailer://outbox``, with the same idempotency key, retries, backoff and compensation as any
step, each call bounded by the step's timeout (:class:`GuardedConnector`). The class is instantiated once per executor process, with no arguments, and implements
:class:`services.executor.connectors.Connector` (``async call(step) -> StepOutcome``, raising
``retryable(...)`` / ``permanent(...)``; ``async close()``).

Loaded when the executor starts: a connector that cannot be loaded (import error, not a
class with ``call`` and ``close``, a name that is not a URL scheme or shadows a built-in one)
stops the start with a message naming it, instead of failing every step that needs it later.
"""

from __future__ import annotations

import asyncio
import re
from importlib.metadata import entry_points

from services.executor.connectors import (
    Connector,
    StepCall,
    StepError,
    StepOutcome,
    permanent,
    retryable,
)
from switchyard.privacy import downstream_excerpt

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
        loaded[point.name] = GuardedConnector(point.name, connector)
    return loaded


class GuardedConnector:
    """A custom connector held to the executor's rules: each call is bounded by the step's
    timeout (retryable when it runs out, like a built-in connector's), a connection error or
    timeout it raises is retryable, and any other exception that is not a ``StepError`` is a
    permanent failure of the step (the finished steps are compensated), never an error that
    escapes the run."""

    def __init__(self, name: str, inner: Connector) -> None:
        self.name = name
        self.inner = inner

    async def call(self, step: StepCall) -> StepOutcome:
        where = f"{step.target} (connector {self.name})"
        try:
            return await asyncio.wait_for(self.inner.call(step), timeout=step.timeout_s)
        except StepError:
            raise
        except (TimeoutError, asyncio.TimeoutError):
            raise retryable(f"{where}: no answer within {step.timeout_s:g}s") from None
        except (ConnectionError, OSError) as exc:
            raise retryable(f"{where}: {type(exc).__name__}: "
                            f"{downstream_excerpt(str(exc), withheld=step.withheld)}") from None
        except Exception as exc:  # a plugin's bug: the step fails, the executor does not
            raise permanent(f"{where}: {type(exc).__name__}: "
                            f"{downstream_excerpt(str(exc), withheld=step.withheld)}") from None

    async def close(self) -> None:
        await self.inner.close()


__all__ = ["BUILTIN_SCHEMES", "GROUP", "ConnectorLoadError", "GuardedConnector",
           "load_custom_connectors"]
