"""Tenant pack settings: which packs a tenant runs, pinned to which version, with which
parameter overrides.

A settings document reads::

    packs:
      invoice: {enabled: true, version: "1.0.0", parameters: {max_auto_amount: 1000}}
      classroom_event: {enabled: false}
      hospital_admission: {retention_days: 30}

Packs it does not name keep their defaults (enabled, the newest version, default parameters).
Every mistake is one line (``settings.yaml: packs.invoice.parameters.max_auto_amount: -1:
must be >= 0``), checked against the packs the tenant can see.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from switchyard.packs._loader import param_value_problem
from switchyard.packs._model import Pack, PackError
from switchyard.packs._schema import json_path, line, show, structural_problems, \
    tenant_settings_schema
from switchyard.packs._yaml import load_yaml

SETTINGS_FILE = "settings.yaml"


@dataclass(frozen=True)
class TenantPackSettings:
    """One pack's settings for a tenant."""

    enabled: bool = True
    version: str = ""  # empty: the newest applied version
    parameters: dict[str, Any] = field(default_factory=dict, compare=False)
    #: this tenant's retention of the pack's tasks (None: the pack's ``retention.days``)
    retention_days: int | None = None


@dataclass(frozen=True)
class TenantSettings:
    """A tenant's settings for every pack it names."""

    packs: dict[str, TenantPackSettings] = field(default_factory=dict, compare=False)

    def for_pack(self, name: str) -> TenantPackSettings:
        """The settings of pack ``name`` (defaults when the document does not name it)."""
        return self.packs.get(name, TenantPackSettings())

    def enabled(self, name: str) -> bool:
        return self.for_pack(name).enabled

    def overrides(self, name: str) -> dict[str, Any]:
        return dict(self.for_pack(name).parameters)


def parameter_problems(pack: Pack, overrides: Mapping[str, Any], file: str = SETTINGS_FILE,
                       path: list[Any] | None = None) -> list[str]:
    """One line per override that is not a declared parameter of ``pack`` or does not fit it."""
    where = list(path or [])
    problems = []
    if not isinstance(overrides, Mapping):
        return [line(file, json_path(where), show(overrides), "must be a mapping of parameter "
                                                              "name to value")]
    for name, value in overrides.items():
        spec = pack.parameters.get(name)
        if spec is None:
            problems.append(line(file, json_path(where + [name]), show(value),
                                 f"unknown parameter of pack {pack.name}; declared: "
                                 + (", ".join(sorted(pack.parameters)) or "none")))
            continue
        problem = param_value_problem(spec, value)
        if problem:
            problems.append(line(file, json_path(where + [name]), show(value), problem))
    return problems


def resolve_parameters(pack: Pack, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The pack's defaults with ``overrides`` applied; raises :class:`PackError` when an
    override is unknown or does not fit."""
    overrides = dict(overrides or {})
    problems = parameter_problems(pack, overrides, path=["parameters"])
    if problems:
        raise PackError(problems)
    resolved = pack.defaults
    resolved.update({name: pack.parameters[name].coerce(value)
                     for name, value in overrides.items()})
    return resolved


def tenant_settings_from_object(value: Any, packs: Mapping[str, Pack],
                                file: str = SETTINGS_FILE, path: list[Any] | None = None
                                ) -> TenantSettings:
    """Settings from an already parsed document (e.g. the ``packs:`` part of a policy file,
    then ``path`` says where it sits); raises :class:`PackError`."""
    where = list(path or [])
    if value is None:
        value = {}
    problems = structural_problems(value, tenant_settings_schema(), file, where)
    if problems:
        raise PackError(problems)
    settings: dict[str, TenantPackSettings] = {}
    for name, spec in (value.get("packs") or {}).items():
        here = where + ["packs", name]
        pack = packs.get(name)
        if pack is None:
            problems.append(line(file, json_path(here), show(spec),
                                 "unknown pack; known: " + (", ".join(sorted(packs)) or "none")))
            continue
        overrides = spec.get("parameters", {})
        problems.extend(parameter_problems(pack, overrides, file, here + ["parameters"]))
        settings[name] = TenantPackSettings(enabled=spec.get("enabled", True),
                                            version=spec.get("version", ""),
                                            parameters=dict(overrides),
                                            retention_days=spec.get("retention_days"))
    if problems:
        raise PackError(problems)
    return TenantSettings(packs=settings)


def parse_tenant_settings(document: bytes, packs: Mapping[str, Pack],
                          file: str = SETTINGS_FILE) -> TenantSettings:
    """A tenant settings document (YAML or JSON bytes), checked against ``packs``; raises
    :class:`PackError` with one line per mistake."""
    value, problems = load_yaml(document, file)
    if problems:
        raise PackError(problems)
    return tenant_settings_from_object(value, packs, file)


__all__ = ["SETTINGS_FILE", "TenantPackSettings", "TenantSettings", "parameter_problems",
           "parse_tenant_settings", "resolve_parameters", "tenant_settings_from_object"]
