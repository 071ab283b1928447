"""PackService: apply, validate, list, show and test packs; apply tenant pack settings.

Thin handlers over :mod:`switchyard.packs` (validation, loading), the catalog
(:mod:`services.decision.packs`) and the engine (TestPack runs golden cases through it and
Triton; nothing is stored or executed). Every change is stored, audited and announced in one
transaction (``NOTIFY switchyard_packs``), so every decision replica reloads within seconds.

Who may do what (the interceptor checks roles; the handlers check tenants):

* ApplyPack, ApplyTenantSettings: ``admin``. A tenant's admin applies packs and settings for
  its own tenant; an operator key (tenant ``*``) applies shared packs (no tenant named) or any
  tenant's.
* ValidatePack, ListPacks, GetPack, TestPack, GetTenantSettings: ``admin`` or ``auditor``, on
  the caller's own tenant (shared packs included).

A pack or settings document with mistakes is refused with INVALID_ARGUMENT and one BadRequest
field violation per mistake: the field is ``<file>: <path>``, the description the value and
what is allowed.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import asyncpg
import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from services.decision.batcher import Overloaded
from services.decision.engine import DecisionEngine
from services.decision.packs import (
    SHARED,
    ActivePack,
    PackCatalog,
    StoredPack,
    announce,
    encode_files,
    pack_setting,
    semver_key,
)
from services.decision.triton import ModelUnavailable
from switchyard.access import Principal, Role, principal_var
from switchyard.audit import append as audit_append, digest
from switchyard.packs import (
    GoldenCase,
    Pack,
    PackError,
    load_pack_files,
    parse_tenant_settings,
    resolve_parameters,
    validate_pack_files,
)
from switchyard.rpc import FieldViolation, abort_invalid, abort_retry_later
from switchyard.v1 import (
    ApplyPackRequest,
    ApplyPackResponse,
    ApplyTenantSettingsRequest,
    ApplyTenantSettingsResponse,
    DecisionOutcome,
    Document,
    GetPackRequest,
    GetPackResponse,
    GetTenantSettingsRequest,
    GetTenantSettingsResponse,
    ListPacksRequest,
    ListPacksResponse,
    PackCaseResult,
    PackFile,
    PackServiceServicer,
    PackSource,
    PackSummary,
    TaskEnvelope,
    TestPackRequest,
    TestPackResponse,
    ValidatePackRequest,
    ValidatePackResponse,
)

log = logging.getLogger(__name__)
SERVICE_NAME = "switchyard.v1.PackService"
_WRITE = frozenset({Role.ADMIN})
_READ = frozenset({Role.ADMIN, Role.AUDITOR})
POLICY = {
    f"/{SERVICE_NAME}/ApplyPack": _WRITE,
    f"/{SERVICE_NAME}/ApplyTenantSettings": _WRITE,
    f"/{SERVICE_NAME}/ValidatePack": _READ,
    f"/{SERVICE_NAME}/ListPacks": _READ,
    f"/{SERVICE_NAME}/GetPack": _READ,
    f"/{SERVICE_NAME}/TestPack": _READ,
    f"/{SERVICE_NAME}/GetTenantSettings": _READ,
}
#: RPCs that cost work (validation compiles every expression; TestPack runs the models).
RATE_LIMITED = frozenset(f"/{SERVICE_NAME}/{m}" for m in (
    "ApplyPack", "ValidatePack", "TestPack", "ApplyTenantSettings"))
#: What a TestPack caller is told to wait when a batcher in front of Triton is full.
OVERLOAD_RETRY_S = 0.2
MAX_SETTINGS_BYTES = 256 * 1024


def violations(problems: list[str]) -> list[FieldViolation]:
    """One violation per problem line ``<file>: <path>: <value>: <what>``: the field is
    ``<file>: <path>``, the description the rest."""
    out = []
    for line in problems:
        parts = line.split(": ", 2)
        if len(parts) == 3:
            out.append(FieldViolation(f"{parts[0]}: {parts[1]}", parts[2]))
        else:
            out.append(FieldViolation("source", line))
    return out


def _timestamp(at: datetime | None) -> Timestamp | None:
    if at is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(at)
    return ts


def summary(stored: StoredPack, enabled: bool = False) -> PackSummary:
    out = PackSummary(name=stored.pack.name, version=stored.pack.version,
                      description=stored.pack.description, digest=stored.pack.digest,
                      tenant_id=stored.tenant_id, applied_by=stored.applied_by, enabled=enabled)
    at = _timestamp(stored.applied_at)
    if at is not None:
        out.applied_at.CopyFrom(at)
    return out


def _outcome_name(outcome: int) -> str:
    return DecisionOutcome.Name(outcome).removeprefix("DECISION_OUTCOME_").lower()


def case_result(case: GoldenCase, outcome: str, rule: str, fields: Mapping[str, str],
                explanation: str) -> PackCaseResult:
    """Expected against actual for one golden case; one mismatch line per difference."""
    mismatches = []
    if case.expect_outcome and case.expect_outcome != outcome:
        mismatches.append(f"outcome: expected {case.expect_outcome}, got {outcome}")
    if case.expect_rule and case.expect_rule != rule:
        mismatches.append(f"rule: expected {case.expect_rule}, got {rule}")
    for name, expected in case.expect_fields.items():
        actual = fields.get(name)
        if actual != str(expected):
            mismatches.append(f"fields.{name}: expected {expected!r}, got "
                              f"{'nothing' if actual is None else repr(actual)}")
    return PackCaseResult(
        name=case.name, passed=not mismatches, expected_outcome=case.expect_outcome,
        actual_outcome=outcome, expected_rule=case.expect_rule, actual_rule=rule,
        expected_fields={k: str(v) for k, v in case.expect_fields.items()},
        actual_fields=dict(fields), mismatches=mismatches, explanation=explanation)


class PackServicer(PackServiceServicer):
    def __init__(self, catalog: PackCatalog, engine: DecisionEngine,
                 pool: asyncpg.Pool) -> None:
        self.catalog = catalog
        self.engine = engine
        self.pool = pool

    # -- tenants ----------------------------------------------------------------------------

    @staticmethod
    async def _tenant(requested: str, context: grpc.aio.ServicerContext,
                      shared_ok: bool = True) -> str:
        """The tenant a request is about: the one named, else the caller's (an operator
        naming none: the shared packs). Another tenant than the caller's is refused."""
        principal: Principal = principal_var.get()
        tenant = requested.strip() or (SHARED if principal.tenant_id == "*"
                                       else principal.tenant_id)
        if tenant == SHARED:
            if not shared_ok:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                    "tenant_id: name the tenant (an operator key has none)")
            if principal.tenant_id != "*":  # pragma: no cover - a tenant key always has one
                await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                    "only an operator key applies shared packs")
            return tenant
        if not principal.may_access(tenant):
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                f"credentials do not allow tenant {tenant!r}")
        return tenant

    @staticmethod
    def _files(source: PackSource) -> dict[str, bytes]:
        return {f.path: f.content for f in source.files}

    # -- packs ------------------------------------------------------------------------------

    async def ValidatePack(self, request: ValidatePackRequest,
                           context: grpc.aio.ServicerContext) -> ValidatePackResponse:
        problems = validate_pack_files(self._files(request.source))
        if problems:
            return ValidatePackResponse(problems=problems)
        pack = load_pack_files(self._files(request.source))
        return ValidatePackResponse(pack=summary(StoredPack(pack, "", "", None)))

    async def ApplyPack(self, request: ApplyPackRequest,
                        context: grpc.aio.ServicerContext) -> ApplyPackResponse:
        tenant = await self._tenant(request.tenant_id, context)
        files = self._files(request.source)
        problems = validate_pack_files(files)
        if problems:
            await abort_invalid(context, violations(problems))
        pack = load_pack_files(files)
        builtin = self.catalog.builtin.get(pack.name)
        if builtin is not None and builtin.version == pack.version \
                and builtin.digest != pack.digest:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS,
                                f"{pack.name} {pack.version} ships with Switchyard with other "
                                "content: give your pack a new version")
        principal = principal_var.get()
        async with self.pool.acquire() as conn, conn.transaction():
            existing = await conn.fetchrow(
                "SELECT digest, applied_by, applied_at FROM packs WHERE tenant_id = $1 AND "
                "name = $2 AND version = $3 FOR UPDATE", tenant, pack.name, pack.version)
            if existing is not None and existing["digest"] != pack.digest:
                await context.abort(grpc.StatusCode.ALREADY_EXISTS,
                                    f"{pack.name} {pack.version} is stored with other content "
                                    "(a version never changes): give your pack a new version")
            changed = existing is None
            if changed:
                row = await conn.fetchrow(
                    "INSERT INTO packs (tenant_id, name, version, digest, files, description, "
                    "applied_by) VALUES ($1,$2,$3,$4,$5::jsonb,$6,$7) "
                    "RETURNING applied_by, applied_at",
                    tenant, pack.name, pack.version, pack.digest, encode_files(pack.files),
                    pack.description, principal.key_id)
                await audit_append(conn, tenant, "decision", "pack.applied", {
                    "pack": pack.name, "version": pack.version, "digest": pack.digest,
                    "shared": tenant == SHARED, "by": principal.key_id}, writer="decision")
                await announce(conn)
            else:
                row = existing
        await self.catalog.load()
        stored = StoredPack(pack, tenant, row["applied_by"], row["applied_at"])
        log.info("pack %s %s %s for tenant %r", pack.name, pack.version,
                 "applied" if changed else "already stored", tenant)
        return ApplyPackResponse(pack=summary(stored), changed=changed)

    async def ListPacks(self, request: ListPacksRequest,
                        context: grpc.aio.ServicerContext) -> ListPacksResponse:
        tenant = await self._tenant(request.tenant_id, context)
        view = self.catalog.for_tenant(tenant)
        packs = []
        for name, newest in sorted(self.catalog.newest(tenant).items()):
            # the version in effect (a pin rolls back), beside the newest
            shown = self.catalog.in_effect(tenant, name) or newest
            packs.append(summary(shown, enabled=view.get(name) is not None))
            packs[-1].newest_version = newest.pack.version
        return ListPacksResponse(packs=packs)

    async def GetPack(self, request: GetPackRequest,
                      context: grpc.aio.ServicerContext) -> GetPackResponse:
        tenant = await self._tenant(request.tenant_id, context)
        stored = self.catalog.find(tenant, request.name, request.version)
        if stored is None:
            await context.abort(grpc.StatusCode.NOT_FOUND,
                                f"no pack {request.name!r}"
                                + (f" version {request.version}" if request.version else ""))
        view = self.catalog.for_tenant(tenant).get(stored.pack.name)
        enabled = view is not None and view.pack.version == stored.pack.version
        return GetPackResponse(pack=summary(stored, enabled), source=PackSource(files=[
            PackFile(path=path, content=content)
            for path, content in sorted(stored.pack.files.items())]))

    async def TestPack(self, request: TestPackRequest,
                       context: grpc.aio.ServicerContext) -> TestPackResponse:
        tenant = await self._tenant(request.tenant_id, context, shared_ok=False)
        if request.HasField("source") and request.source.files:
            files = self._files(request.source)
            problems = validate_pack_files(files)
            if problems:
                await abort_invalid(context, violations(problems))
            stored = StoredPack(load_pack_files(files), tenant, "", None)
        else:
            found = self.catalog.in_effect(tenant, request.name)
            if found is None:
                await context.abort(grpc.StatusCode.NOT_FOUND, f"no pack {request.name!r}")
            stored = found
        pack = stored.pack
        _, _, overrides = pack_setting(self.catalog.settings_of(tenant).settings, pack.name)
        results = []
        for case in pack.tests:
            results.append(await self._run_case(pack, case, tenant, overrides, context))
        return TestPackResponse(pack=summary(stored), cases=results)

    async def _run_case(self, pack: Pack, case: GoldenCase, tenant: str,
                        overrides: Mapping[str, Any],
                        context: grpc.aio.ServicerContext) -> PackCaseResult:
        try:
            params = resolve_parameters(pack, {**overrides, **case.parameters})
        except PackError:  # the tenant's overrides are for another version of the pack
            params = resolve_parameters(pack, dict(case.parameters))
        task = TaskEnvelope(task_id=str(uuid.uuid4()), tenant_id=tenant, kind=pack.name,
                            metadata=case.metadata, document=Document(
                                content_type=case.content_type, body=case.text.encode()))
        try:
            decided = await self.engine.test_case(task, ActivePack(pack, params))
        except Overloaded as exc:
            await abort_retry_later(context, grpc.StatusCode.RESOURCE_EXHAUSTED,
                                    f"{exc}; retry shortly", OVERLOAD_RETRY_S)
        except ModelUnavailable as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"models unavailable: {exc}")
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"database unavailable: {exc}")
        decision = decided.decision
        return case_result(case, _outcome_name(decision.outcome), decision.rule,
                           dict(decision.extracted_fields), decision.explanation)

    # -- tenant settings --------------------------------------------------------------------

    async def ApplyTenantSettings(self, request: ApplyTenantSettingsRequest,
                                  context: grpc.aio.ServicerContext
                                  ) -> ApplyTenantSettingsResponse:
        tenant = await self._tenant(request.tenant_id, context, shared_ok=False)
        document = bytes(request.document)
        if len(document) > MAX_SETTINGS_BYTES:
            await abort_invalid(context, [FieldViolation(
                "document", f"{len(document)} bytes; at most {MAX_SETTINGS_BYTES}")])
        newest = {name: s.pack for name, s in self.catalog.newest(tenant).items()}
        try:
            settings = parse_tenant_settings(document, newest)
        except PackError as exc:
            await abort_invalid(context, violations(exc.problems))
        versions = self.catalog.versions(tenant)
        pinned = [f"settings.yaml: packs.{name}.version: {entry.version}: not stored; "
                  f"stored: {', '.join(sorted(versions.get(name, {}), key=semver_key))}"
                  for name, entry in settings.packs.items()
                  if entry.version and entry.version not in versions.get(name, {})]
        if pinned:
            await abort_invalid(context, violations(pinned))
        principal = principal_var.get()
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('packs:' || $1))", tenant)
            current = await conn.fetchrow(
                "SELECT version, document FROM tenant_pack_settings WHERE tenant_id = $1 "
                "ORDER BY version DESC LIMIT 1", tenant)
            if current is not None and bytes(current["document"]) == document:
                return ApplyTenantSettingsResponse(version=current["version"], changed=False)
            version = (current["version"] if current is not None else 0) + 1
            await conn.execute(
                "INSERT INTO tenant_pack_settings (tenant_id, version, document, applied_by) "
                "VALUES ($1, $2, $3, $4)", tenant, version, document, principal.key_id)
            await audit_append(conn, tenant, "decision", "pack.settings_applied", {
                "version": version, "by": principal.key_id,
                "document_sha256": digest(document),
                "packs": json.loads(json.dumps(
                    {name: {"enabled": e.enabled, "version": e.version or "",
                            "parameters": sorted(e.parameters or {})}
                     for name, e in settings.packs.items()}))}, writer="decision")
            await announce(conn)
        await self.catalog.load()
        return ApplyTenantSettingsResponse(version=version, changed=True)

    async def GetTenantSettings(self, request: GetTenantSettingsRequest,
                                context: grpc.aio.ServicerContext) -> GetTenantSettingsResponse:
        tenant = await self._tenant(request.tenant_id, context, shared_ok=False)
        applied = self.catalog.settings_of(tenant)
        out = GetTenantSettingsResponse(tenant_id=tenant, version=applied.version,
                                        document=applied.document,
                                        applied_by=applied.applied_by)
        at = _timestamp(applied.applied_at)
        if at is not None:
            out.applied_at.CopyFrom(at)
        return out


__all__ = ["POLICY", "RATE_LIMITED", "SERVICE_NAME", "PackServicer", "case_result",
           "violations"]
