"""Python extension points of packs, found through installed distributions' entry points.

What YAML cannot say (an extractor for a layout, a model's feature vector, a history lookup,
a connector to an in-house system) is Python registered under one of :data:`GROUPS` in a
distribution's ``[project.entry-points."switchyard.<group>"]`` table. Validating a pack only
checks that a name is DECLARED (reading metadata, never importing code), so validating an
untrusted pack runs none of it; the services load an entry point when they first use it.
"""

from __future__ import annotations

import importlib.metadata
from typing import Any

#: Entry point groups, by what a pack calls them.
GROUPS: dict[str, str] = {
    "extractors": "switchyard.extractors",
    "features": "switchyard.features",
    "enrichers": "switchyard.enrichers",
    "connectors": "switchyard.connectors",
}


class EntryPointError(LookupError):
    """An entry point is not declared, or importing it failed."""


def declared(group: str) -> dict[str, importlib.metadata.EntryPoint]:
    """The entry points declared in ``group`` (a full group name), by name."""
    try:
        found = importlib.metadata.entry_points(group=group)
    except Exception:  # a broken distribution's metadata must not break validation
        return {}
    return {ep.name: ep for ep in found}


def is_declared(group: str, name: str) -> bool:
    """Whether some installed distribution declares ``name`` in ``group``."""
    return name in declared(group)


def entry_point(group: str, name: str) -> Any:
    """Load the object registered as ``name`` in ``group`` (e.g. 'switchyard.extractors').

    Raises :class:`EntryPointError` naming the group and what is declared when it is missing
    or its import fails.
    """
    found = declared(group)
    if name not in found:
        known = ", ".join(sorted(found)) or "none"
        raise EntryPointError(f"no entry point {name!r} in group {group} (declared: {known})")
    try:
        return found[name].load()
    except Exception as exc:
        raise EntryPointError(f"entry point {name!r} in group {group} "
                              f"({found[name].value}) failed to load: {exc}") from exc


__all__ = ["GROUPS", "EntryPointError", "declared", "entry_point", "is_declared"]
