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
    plans:                            # what an auto-executed document type runs, in order
      invoice:                        # compensate: what undoes the step (HTTP DELETE) when a
        - {name: post_invoice, target: "http://erp/invoices",  # later step fails or the
           compensate: "http://erp/invoices/{idempotency_key}"}  # task is cancelled
        - {name: schedule_payment, target: "http://erp/payments"}
    invoice:
      min_p_auto: 0.80                # invoice_risk P(auto) needed to go straight through
      min_extraction_confidence: 0.60
      max_auto_amount: 50000          # null: no limit
      reject_amount_over: null
      required_fields: [vendor, invoice_number, total, currency]
      allowed_currencies: []          # empty: any
      escalate_duplicates: true
    vendors:
      allow: []                       # vendor names (matched without case or legal suffix)
      block: []
      require_allow_list: false

Loading refuses the whole directory when any file is wrong (unknown keys, wrong types,
thresholds outside [0, 1], unknown document types or fields), naming file, key path and the
value, so a typo never silently falls back to defaults.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
import reprlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from services.decision.extraction import FIELD_NAMES, vendor_key
from services.decision.policy import (
    DEFAULT_PLANS,
    ON_MODEL_UNAVAILABLE,
    InvoicePolicy,
    PlanStep,
    Policy,
    VendorPolicy,
)
from services.decision.training.features import ROUTER_CLASSES

log = logging.getLogger(__name__)
_TENANT_FILE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]{0,127})\.ya?ml$")


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

    def amount(self, value: Any, path: str) -> float | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 \
                or math.isnan(value):
            self.fail(path, f"must be a non-negative number or null, got {_show(value)}")
            return None
        return float(value)

    def flag(self, value: Any, path: str) -> bool | None:
        if not isinstance(value, bool):
            self.fail(path, f"must be true or false, got {_show(value)}")
            return None
        return value

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
        if value not in ROUTER_CLASSES:
            self.fail(path, f"unknown document type {_show(value)} "
                            f"(allowed: {', '.join(ROUTER_CLASSES)})")
            return False
        return True


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
        "review_queue", "on_model_unavailable", "plans", "invoice", "vendors")
_INVOICE = tuple(f.name for f in dataclasses.fields(InvoicePolicy))
_VENDORS = ("allow", "block", "require_allow_list")


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
        for label, value in r.mapping(top["label_thresholds"], "label_thresholds",
                                      ROUTER_CLASSES).items():
            thresholds[label] = r.fraction(value, f"label_thresholds.{label}")
        changes["label_thresholds"] = thresholds
    if "reject_labels" in top:
        labels = r.strings(top["reject_labels"], "reject_labels", ROUTER_CLASSES)
        changes["reject_labels"] = frozenset(labels or ())
    if "review_queue" in top:
        changes["review_queue"] = r.text(top["review_queue"], "review_queue")
    if "on_model_unavailable" in top:
        value = top["on_model_unavailable"]
        if value not in ON_MODEL_UNAVAILABLE:
            r.fail("on_model_unavailable", f"must be one of {', '.join(ON_MODEL_UNAVAILABLE)}, "
                                           f"got {_show(value)}")
        changes["on_model_unavailable"] = value
    if "plans" in top:
        changes["plans"] = _plans(r, top["plans"])
    if "invoice" in top:
        changes["invoice"] = _invoice(r, top["invoice"], base.invoice)
    if "vendors" in top:
        changes["vendors"] = _vendors(r, top["vendors"], base.vendors)
    if r.errors:
        raise PolicyError("invalid decision policy:\n  " + "\n  ".join(r.errors))
    return dataclasses.replace(base, **changes)


def _plans(r: _Reader, value: Any) -> dict[str, tuple[PlanStep, ...]]:
    plans: dict[str, tuple[PlanStep, ...]] = {}
    for label, steps in r.mapping(value, "plans", ROUTER_CLASSES).items():
        path = f"plans.{label}"
        if steps is None:
            plans[label] = ()
            continue
        if not isinstance(steps, list):
            r.fail(path, f"must be a list of {{name, target}} steps, got {_show(steps)}")
            continue
        parsed = []
        for i, step in enumerate(steps):
            item = r.mapping(step, f"{path}[{i}]", ("name", "target", "compensate"))
            name = r.text(item.get("name"), f"{path}[{i}].name")
            target = r.text(item.get("target"), f"{path}[{i}].target")
            compensate = (r.text(item["compensate"], f"{path}[{i}].compensate")
                          if "compensate" in item else "")
            if name and target and compensate is not None:
                parsed.append(PlanStep(name, target, compensate))
        plans[label] = tuple(parsed)
    return {**DEFAULT_PLANS, **plans}


def _invoice(r: _Reader, value: Any, base: InvoicePolicy) -> InvoicePolicy:
    item = r.mapping(value, "invoice", _INVOICE)
    changes: dict[str, Any] = {}
    for key in ("min_p_auto", "min_extraction_confidence"):
        if key in item:
            changes[key] = r.fraction(item[key], f"invoice.{key}")
    for key in ("max_auto_amount", "reject_amount_over"):
        if key in item:
            changes[key] = r.amount(item[key], f"invoice.{key}")
    if "required_fields" in item:
        changes["required_fields"] = tuple(
            r.strings(item["required_fields"], "invoice.required_fields", FIELD_NAMES) or ())
    if "allowed_currencies" in item:
        codes = r.strings(item["allowed_currencies"], "invoice.allowed_currencies") or []
        bad = [c for c in codes if not re.fullmatch(r"[A-Z]{3}", c)]
        if bad:
            r.fail("invoice.allowed_currencies", f"ISO 4217 codes expected (e.g. USD), got {bad}")
        changes["allowed_currencies"] = frozenset(codes)
    if "escalate_duplicates" in item:
        changes["escalate_duplicates"] = r.flag(item["escalate_duplicates"],
                                                "invoice.escalate_duplicates")
    return dataclasses.replace(base, **changes)


def _vendors(r: _Reader, value: Any, base: VendorPolicy) -> VendorPolicy:
    item = r.mapping(value, "vendors", _VENDORS)
    changes: dict[str, Any] = {}
    for key in ("allow", "block"):
        if key in item:
            names = r.strings(item[key], f"vendors.{key}") or []
            changes[key] = frozenset(vendor_key(n) for n in names)
    if "require_allow_list" in item:
        changes["require_allow_list"] = r.flag(item["require_allow_list"],
                                               "vendors.require_allow_list")
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
