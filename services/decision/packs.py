"""Which packs each tenant decides with: shipped, stored and tenant settings, kept current.

The catalog merges three sources:

* the packs shipped with Switchyard (``switchyard.packs.builtin_packs()``), shared by every
  tenant;
* packs applied through PackService (PostgreSQL ``packs``): shared ones (tenant ``''``,
  applied with an operator key) and a tenant's own;
* each tenant's pack settings (PostgreSQL ``tenant_pack_settings``, newest version; else the
  ``packs:`` key of its policy file): which packs are enabled, a pinned version, parameter
  overrides. A pack a tenant's settings do not name is enabled, newest version, defaults.

A change is announced with ``NOTIFY switchyard_packs`` in the transaction that stores it;
every replica LISTENs and reloads at once, and also polls (``poll_s``) in case a notification
was missed (a dropped connection), so an apply reaches every replica within seconds, without
a restart. Stored packs are parsed once per (tenant, name, version, digest) and kept.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from datetime import datetime
from typing import Any

import asyncpg

from services.decision.policies import PolicySet
from switchyard.packs import (
    Pack,
    PackError,
    TenantSettings,
    builtin_packs,
    load_pack_files,
    parse_tenant_settings,
    plan_to_proto,
    resolve_parameters,
)
from switchyard.v1 import ActionPlan

log = logging.getLogger(__name__)
CHANNEL = "switchyard_packs"
SHARED = ""
BUILTIN_APPLIER = "builtin"


def semver_key(version: str) -> tuple[int, ...]:
    """``1.10.0`` sorts after ``1.9.3``."""
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        return (-1,)


@dataclass(frozen=True)
class StoredPack:
    """A pack version as the catalog knows it, with where it came from."""

    pack: Pack
    tenant_id: str  # '' shared
    applied_by: str
    applied_at: datetime | None


@dataclass(frozen=True)
class ActivePack:
    """A pack a tenant decides with, and the tenant's resolved parameters for it."""

    pack: Pack
    params: Mapping[str, Any]

    @cached_property
    def plan(self) -> ActionPlan:
        """The pack's action plan for these parameters: the same for every decision this
        tenant gets from the pack, so built once (a decision carries a copy)."""
        return plan_to_proto(self.pack, self.params)


@dataclass(frozen=True)
class AppliedSettings:
    """A tenant's settings document in force."""

    version: int  # 0: from the policy file (or none)
    document: bytes
    settings: TenantSettings | None
    applied_by: str = ""
    applied_at: datetime | None = None


@dataclass(frozen=True)
class TenantPacks:
    """The packs a tenant decides with, by name (only enabled ones)."""

    tenant_id: str
    packs: Mapping[str, ActivePack] = field(default_factory=dict)
    settings_version: int = 0

    def get(self, name: str) -> ActivePack | None:
        return self.packs.get(name)


def pack_setting(settings: TenantSettings | None, name: str) -> tuple[bool, str, dict[str, Any]]:
    """(enabled, pinned version or '', parameter overrides) of pack ``name`` in ``settings``."""
    if settings is None:
        return True, "", {}
    entry = settings.packs.get(name)
    if entry is None:
        return True, "", {}
    return bool(entry.enabled), entry.version or "", dict(entry.parameters or {})


def decode_files(stored: Mapping[str, str]) -> dict[str, bytes]:
    return {path: base64.b64decode(content) for path, content in stored.items()}


def encode_files(files: Mapping[str, bytes]) -> str:
    return json.dumps({path: base64.b64encode(content).decode() for path, content in
                       sorted(files.items())})


class PackCatalog:
    """Every pack version and tenant setting the decision service knows, reloaded on change."""

    def __init__(self, pool: asyncpg.Pool | None, policies: PolicySet,
                 builtin: Mapping[str, Pack] | None = None, poll_s: float = 10.0) -> None:
        self.pool = pool
        self.policies = policies
        self.poll_s = poll_s
        self.builtin = dict(builtin_packs() if builtin is None else builtin)
        # (tenant, name, version) -> StoredPack, for stored packs
        self._stored: dict[tuple[str, str, str], StoredPack] = {}
        self._settings: dict[str, AppliedSettings] = {}
        self._views: dict[str, TenantPacks] = {}
        #: problems of the policy files' ``packs:`` keys, one line each (checked at start)
        self.file_problems: list[str] = []
        self._reload_lock = asyncio.Lock()

    # -- views ------------------------------------------------------------------------------

    def versions(self, tenant_id: str) -> dict[str, dict[str, StoredPack]]:
        """name -> version -> pack, for the packs ``tenant_id`` can see (shipped, shared,
        its own; its own win over a shared one of the same version)."""
        out: dict[str, dict[str, StoredPack]] = {}
        for name, pack in self.builtin.items():
            out.setdefault(name, {})[pack.version] = StoredPack(pack, SHARED, BUILTIN_APPLIER,
                                                                None)
        for owner in (SHARED, tenant_id) if tenant_id != SHARED else (SHARED,):
            for (tenant, name, version), stored in self._stored.items():
                if tenant == owner:
                    out.setdefault(name, {})[version] = stored
        return out

    def newest(self, tenant_id: str) -> dict[str, StoredPack]:
        """name -> the newest version ``tenant_id`` can see."""
        return {name: versions[max(versions, key=semver_key)]
                for name, versions in self.versions(tenant_id).items()}

    def find(self, tenant_id: str, name: str, version: str = "") -> StoredPack | None:
        versions = self.versions(tenant_id).get(name, {})
        if not versions:
            return None
        return versions.get(version) if version else versions[max(versions, key=semver_key)]

    def in_effect(self, tenant_id: str, name: str) -> StoredPack | None:
        """The stored version of ``name`` the tenant decides with (its settings' pinned one),
        else the newest stored (a disabled pack's too)."""
        active = self.for_tenant(tenant_id).get(name)
        return self.find(tenant_id, name, active.pack.version if active is not None else "")

    def settings_of(self, tenant_id: str) -> AppliedSettings:
        return self._settings.get(tenant_id) or self._file_settings(tenant_id)

    def for_tenant(self, tenant_id: str) -> TenantPacks:
        view = self._views.get(tenant_id)
        if view is None:
            view = self._views[tenant_id] = self._build(tenant_id)
        return view

    def _build(self, tenant_id: str) -> TenantPacks:
        applied = self.settings_of(tenant_id)
        active: dict[str, ActivePack] = {}
        for name, versions in self.versions(tenant_id).items():
            enabled, pinned, overrides = pack_setting(applied.settings, name)
            if not enabled:
                continue
            chosen = versions.get(pinned) if pinned else versions[max(versions, key=semver_key)]
            if chosen is None:
                log.warning("tenant %s pins %s %s, which is not stored: pack not used",
                            tenant_id, name, pinned)
                continue
            try:
                params = resolve_parameters(chosen.pack, overrides)
            except PackError as exc:  # an override the pinned version does not declare
                log.warning("tenant %s: %s %s parameters: %s; using its defaults", tenant_id,
                            name, chosen.pack.version, exc)
                params = resolve_parameters(chosen.pack, {})
            active[name] = ActivePack(chosen.pack, params)
        return TenantPacks(tenant_id, active, applied.version)

    def _file_settings(self, tenant_id: str) -> AppliedSettings:
        policy = self.policies.for_tenant(tenant_id)
        if not policy.packs_document:
            return AppliedSettings(0, b"", None)
        try:
            parsed = parse_tenant_settings(policy.packs_document, self._packs_by_name(tenant_id))
        except PackError as exc:
            log.warning("%s: packs: %s (ignored)", policy.name, exc)
            return AppliedSettings(0, policy.packs_document, None)
        return AppliedSettings(0, policy.packs_document, parsed)

    def _packs_by_name(self, tenant_id: str) -> dict[str, Pack]:
        return {name: stored.pack for name, stored in self.newest(tenant_id).items()}

    def check_policy_files(self) -> list[str]:
        """Problems of every policy file's ``packs:`` key against the packs known now."""
        problems: list[str] = []
        policies = [("", self.policies.default), *self.policies.tenants.items()]
        for tenant, policy in policies:
            if not policy.packs_document:
                continue
            try:
                parse_tenant_settings(policy.packs_document, self._packs_by_name(tenant))
            except PackError as exc:
                problems.extend(f"{policy.name}: packs: {line}" for line in exc.problems)
        return problems

    # -- loading ----------------------------------------------------------------------------

    async def load(self) -> None:
        """Read stored packs (parsing only new versions) and the newest settings per tenant."""
        if self.pool is None:
            return
        async with self._reload_lock:
            rows = await self.pool.fetch(
                "SELECT tenant_id, name, version, digest, applied_by, applied_at FROM packs")
            stored: dict[tuple[str, str, str], StoredPack] = {}
            for row in rows:
                key = (row["tenant_id"], row["name"], row["version"])
                known = self._stored.get(key)
                if known is not None and known.pack.digest == row["digest"]:
                    stored[key] = known
                    continue
                files = await self.pool.fetchval(
                    "SELECT files FROM packs WHERE tenant_id = $1 AND name = $2 AND "
                    "version = $3", *key)
                try:
                    pack = load_pack_files(decode_files(json.loads(files)))
                except PackError as exc:  # stored under an older release's rules
                    log.error("stored pack %s %s (tenant %r) no longer loads: %s", key[1],
                              key[2], key[0], exc)
                    continue
                stored[key] = StoredPack(pack, row["tenant_id"], row["applied_by"],
                                         row["applied_at"])
            self._stored = stored
            settings: dict[str, AppliedSettings] = {}
            for row in await self.pool.fetch(
                    "SELECT DISTINCT ON (tenant_id) tenant_id, version, document, applied_by, "
                    "applied_at FROM tenant_pack_settings ORDER BY tenant_id, version DESC"):
                tenant = row["tenant_id"]
                known_settings = self._settings.get(tenant)
                if known_settings is not None and known_settings.version == row["version"]:
                    settings[tenant] = known_settings
                    continue
                document = bytes(row["document"])
                try:
                    parsed = parse_tenant_settings(document, self._packs_by_name(tenant))
                except PackError as exc:
                    log.error("tenant %s pack settings v%d no longer valid: %s", tenant,
                              row["version"], exc)
                    parsed = None
                settings[tenant] = AppliedSettings(row["version"], document, parsed,
                                                   row["applied_by"], row["applied_at"])
            self._settings = settings
            self._views = {}

    async def run(self) -> None:
        """Background loop (supervised): reload on NOTIFY, and every ``poll_s`` regardless."""
        assert self.pool is not None
        changed = asyncio.Event()
        async with self.pool.acquire() as conn:
            def on_notify(*_: object) -> None:
                changed.set()
            await conn.add_listener(CHANNEL, on_notify)
            try:
                while True:
                    try:
                        await asyncio.wait_for(changed.wait(), self.poll_s)
                    except asyncio.TimeoutError:
                        pass
                    changed.clear()
                    await self.load()
            finally:
                await conn.remove_listener(CHANNEL, on_notify)


async def announce(conn: asyncpg.Connection) -> None:
    """Tell every replica to reload (delivered when the caller's transaction commits)."""
    await conn.execute("SELECT pg_notify($1, '')", CHANNEL)


__all__ = ["BUILTIN_APPLIER", "CHANNEL", "SHARED", "ActivePack", "AppliedSettings",
           "PackCatalog", "StoredPack", "TenantPacks", "announce", "decode_files",
           "encode_files", "pack_setting", "semver_key"]
