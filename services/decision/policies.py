"""Per-tenant decision policies from YAML, validated on load with errors that say where and why.

``SWITCHYARD_POLICY_DIR`` holds one ``<tenant>.yaml`` per tenant and optionally
``default.yaml`` for every other tenant (the Helm chart mounts them from a ConfigMap). A file
is a mapping; every key is optional and defaults to the built-in policy::

    auto_execute_threshold: 0.80      # router confidence needed to act without a person
    label_thresholds: {invoice: 0.85} # per-document-type override of the above
    reject_labels: [other]            # document types this tenant refuses ...
    reject_threshold: 0.90            # ... when the router is at least this sure
    review_queue: default
    on_model_unavailable: escalate    # or hold: BLOCKED until Triton answers, then decided
    packs:                            # the tenant's pack settings (docs/packs.md): which
      invoice:                        # packs are enabled, a pinned version, parameter
        enabled: true                 # overrides; settings applied through PackService
        parameters: {max_auto_amount: 10000}  # (switchyard packs apply --tenant) win

A tenant file's ``packs:`` entry for a pack replaces ``default.yaml``'s for that pack. What a
document the router is sure about does next is its pack's decision table, not the policy's:
business rules, plans and their limits are pack parameters.

Loading refuses the whole directory when any file is wrong (unknown keys, wrong types,
thresholds outside [0, 1], malformed document type names; a ``packs:`` key is checked against
the packs when the service starts), naming file, key path and the
value, so a typo never silently falls back to defaults.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import reprlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from services.decision.policy import ON_MODEL_UNAVAILABLE, Policy

log = logging.getLogger(__name__)
_TENANT_FILE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]{0,127})\.ya?ml$")
#: A document type: a pack's name (the router's label for it), or ``other``.
LABEL = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


class PolicyError(ValueError):
    """A policy file cannot be used; the message names the file, the key and the problem."""


class _Reader:
    """Walks one YAML mapping, collecting every problem instead of stopping at the first."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.errors: list[str] = []

    def fail(self, path: str, message: str) -> None:
        self.errors.append(f"{self.source}: {path}: {message}")

    def mapping(self, value: Any, path: str, allowed: tuple[str, ...]) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.fail(path or "(top level)", f"must be a mapping, got {_show(value)}")
            return {}
        for key in value:
            if key not in allowed:
                self.fail(f"{path}.{_key(key)}" if path else _key(key),
                          f"unknown key (allowed: {', '.join(allowed)})")
        return {k: v for k, v in value.items() if k in allowed}

    def fraction(self, value: Any, path: str) -> float | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            self.fail(path, f"must be a number between 0 and 1, got {_show(value)}")
            return None
        return float(value)

    def text(self, value: Any, path: str) -> str | None:
        if not isinstance(value, str) or not value.strip():
            self.fail(path, f"must be a non-empty string, got {_show(value)}")
            return None
        return value.strip()

    def strings(self, value: Any, path: str, choices: tuple[str, ...] | None = None
                ) -> list[str] | None:
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            self.fail(path, f"must be a list of strings, got {_show(value)}")
            return None
        if choices is not None:
            bad = [v for v in value if v not in choices]
            if bad:
                self.fail(path, f"unknown value(s) {', '.join(map(repr, bad))} "
                                f"(allowed: {', '.join(choices)})")
                return None
        return list(value)

    def label(self, value: Any, path: str) -> bool:
        if not isinstance(value, str) or not LABEL.match(value):
            self.fail(path, f"not a document type name {_show(value)} (lower-case letters, "
                            "digits and '_', starting with a letter)")
            return False
        return True

    def labels(self, value: Any, path: str) -> list[str] | None:
        items = self.strings(value, path)
        if items is None:
            return None
        return [v for v in items if self.label(v, path)]


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlong = 3, 50, 50, 40


def _key(key: Any) -> str:
    """A key as it appears in a key path; quoted when it is not plain printable text, so a
    hostile key cannot break the one-problem-a-line error message."""
    plain = isinstance(key, str) and key and key.isprintable() and key == key.strip()
    return key if plain else _show(key)


def _show(value: Any) -> str:
    """A short repr: bounded however large, deep or alias-shared (YAML anchors) the value."""
    text = _REPR.repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_TOP = ("auto_execute_threshold", "label_thresholds", "reject_labels", "reject_threshold",
        "review_queue", "on_model_unavailable", "packs")


def parse_policy(document: Any, source: str, base: Policy | None = None) -> Policy:
    """A validated :class:`Policy` from a parsed YAML document; raises :class:`PolicyError`."""
    base = base or Policy()
    r = _Reader(source)
    top = r.mapping(document, "", _TOP)
    changes: dict[str, Any] = {"name": source}
    for key in ("auto_execute_threshold", "reject_threshold"):
        if key in top:
            changes[key] = r.fraction(top[key], key)
    if "label_thresholds" in top:
        thresholds = {}
        value = top["label_thresholds"]
        labels = r.mapping(value, "label_thresholds", tuple(value) if isinstance(value, Mapping)
                           else ())
        for label, value in labels.items():
            if r.label(label, f"label_thresholds.{_key(label)}"):
                thresholds[label] = r.fraction(value, f"label_thresholds.{label}")
        changes["label_thresholds"] = thresholds
    if "reject_labels" in top:
        labels = r.labels(top["reject_labels"], "reject_labels")
        changes["reject_labels"] = frozenset(labels or ())
    if "review_queue" in top:
        changes["review_queue"] = r.text(top["review_queue"], "review_queue")
    if "on_model_unavailable" in top:
        value = top["on_model_unavailable"]
        if value not in ON_MODEL_UNAVAILABLE:
            r.fail("on_model_unavailable", f"must be one of {', '.join(ON_MODEL_UNAVAILABLE)}, "
                                           f"got {_show(value)}")
        changes["on_model_unavailable"] = value
    if "packs" in top:
        # checked against the packs when the service starts (services/decision/packs.py)
        if isinstance(top["packs"], Mapping):
            # a tenant's file names its own settings per pack; default.yaml's stand for the rest
            inherited = yaml.safe_load(base.packs_document)["packs"] if base.packs_document \
                else {}
            changes["packs_document"] = yaml.safe_dump(
                {"packs": {**inherited, **top["packs"]}}).encode()
        else:
            r.fail("packs", f"must be a mapping of pack name -> settings, got "
                            f"{_show(top['packs'])}")
    if r.errors:
        raise PolicyError("invalid decision policy:\n  " + "\n  ".join(r.errors))
    return dataclasses.replace(base, **changes)


class PolicySet:
    """The policies of every tenant, and the default for the rest."""

    def __init__(self, default: Policy, tenants: Mapping[str, Policy] | None = None) -> None:
        self.default = default
        self.tenants = dict(tenants or {})

    def for_tenant(self, tenant_id: str) -> Policy:
        return self.tenants.get(tenant_id, self.default)

    def review_queue(self, tenant_id: str) -> str:
        """The review queue a tenant's escalations go to, whichever service escalates (the
        decision service and the executor both route through this)."""
        return self.for_tenant(tenant_id).review_queue


def load_policies(directory: str | os.PathLike[str] | None, base: Policy | None = None
                  ) -> PolicySet:
    """Read ``<tenant>.yaml`` (and ``default.yaml``) from ``directory``; empty: ``base`` only.

    Tenant files start from ``default.yaml`` (when present), which starts from ``base``.
    """
    base = base or Policy()
    if not directory:
        return PolicySet(base)
    root = Path(directory)
    if not root.is_dir():
        raise PolicyError(f"policy directory {root} does not exist (SWITCHYARD_POLICY_DIR)")
    files = sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith("."))
    errors: list[str] = []
    documents: dict[str, tuple[str, Any]] = {}
    for path in files:
        if path.suffix not in (".yaml", ".yml"):
            continue
        match = _TENANT_FILE.match(path.name)
        if match is None:
            errors.append(f"{path}: file name must be <tenant>.yaml (letters, digits, '.', '_', '-')")
            continue
        try:
            documents[match.group(1)] = (str(path), yaml.safe_load(path.read_text("utf-8")))
        except yaml.YAMLError as exc:
            errors.append(f"{path}: not valid YAML: {exc}".replace("\n", " "))
        except UnicodeDecodeError as exc:
            errors.append(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})")
        except RecursionError:
            errors.append(f"{path}: not valid YAML: nested too deeply")
        except ValueError as exc:  # e.g. an integer with more digits than Python converts
            errors.append(f"{path}: not valid YAML: {exc}")
    default = base
    if "default" in documents:
        try:
            default = parse_policy(documents["default"][1], documents["default"][0], base)
        except PolicyError as exc:
            errors.append(str(exc).split("\n", 1)[1].strip())
    tenants = {}
    for tenant, (source, document) in documents.items():
        if tenant == "default":
            continue
        try:
            tenants[tenant] = parse_policy(document, source, default)
        except PolicyError as exc:
            errors.append(str(exc).split("\n", 1)[1].strip())
    if errors:
        raise PolicyError("invalid decision policies:\n  " + "\n  ".join(errors))
    log.info("loaded decision policies from %s: default=%s, tenants=%s", root, default.name,
             sorted(tenants))
    return PolicySet(default, tenants)


__all__ = ["PolicyError", "PolicySet", "load_policies", "parse_policy"]
