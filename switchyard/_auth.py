"""Who is calling: API-key principals, roles, and the per-RPC role policy.

Services declare which roles may call each RPC; the gRPC auth interceptor (in ``_grpc``) is the
only place that enforces it, so handlers never check credentials themselves. Handlers read the
caller from :data:`principal_var` to scope queries to the caller's tenant.
"""

from __future__ import annotations

import contextvars
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum


class Role(str, Enum):
    SUBMITTER = "submitter"
    REVIEWER = "reviewer"
    ADMIN = "admin"
    AUDITOR = "auditor"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. ``tenant_id == '*'`` is an operator allowed on every tenant."""

    key_id: str
    tenant_id: str
    role: Role

    def may_access(self, tenant_id: str) -> bool:
        return self.tenant_id in {"*", tenant_id}


#: Used when auth is off (no API keys configured): a local operator, as in a dev stack.
DEV_PRINCIPAL = Principal(key_id="dev", tenant_id="*", role=Role.ADMIN)

principal_var: contextvars.ContextVar[Principal] = contextvars.ContextVar(
    "switchyard_principal", default=DEV_PRINCIPAL
)


class AuthConfigError(ValueError):
    pass


class ApiKeyAuthenticator:
    """Validates bearer API keys from ``SWITCHYARD_API_KEYS`` ('key:tenant:role', ...).

    Several keys may map to one tenant, which is how keys rotate without downtime: add the new
    key, move clients, remove the old one.
    """

    def __init__(self, spec: str) -> None:
        self._keys: dict[str, Principal] = {}
        for index, entry in enumerate(filter(None, (e.strip() for e in spec.split(",")))):
            parts = entry.split(":")
            if len(parts) != 3 or not all(parts):
                raise AuthConfigError(
                    f"SWITCHYARD_API_KEYS entry {index} must be 'key:tenant:role'"
                )
            key, tenant, role = parts
            try:
                parsed_role = Role(role)
            except ValueError:
                raise AuthConfigError(
                    f"SWITCHYARD_API_KEYS entry {index}: unknown role {role!r} "
                    f"(one of {', '.join(r.value for r in Role)})"
                ) from None
            self._keys[key] = Principal(key_id=f"key-{index}", tenant_id=tenant, role=parsed_role)

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def authenticate(self, metadata: Mapping[str, str]) -> Principal | None:
        if not self.enabled:
            return DEV_PRINCIPAL
        header = metadata.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        for key, principal in self._keys.items():
            # surrogateescape: an HTTP header with undecodable bytes is a wrong key, not a crash
            if hmac.compare_digest(key.encode(), token.encode("utf-8", "surrogateescape")):
                return principal
        return None


#: Roles allowed per RPC, by full method name. An RPC missing here is admin-only.
MethodPolicy = Mapping[str, frozenset[Role]]


# -- Kafka intake record signatures ------------------------------------------------------

SIGNATURE_HEADER = "x-switchyard-signature"
SIGNATURE_SCHEME = "hmac-sha256"


class IntakeSigner:
    """Per-tenant HMAC keys for records upstream producers write to the intake topic.

    A record carries ``x-switchyard-signature: hmac-sha256=<hex>`` over its value bytes,
    computed with its tenant's key; the tenant travels in ``x-tenant-id``. Binding the tenant
    to a key means a producer that can write to the topic still cannot submit work as another
    tenant. Several keys per tenant allow rotation without downtime.
    """

    def __init__(self, spec: str) -> None:
        self._keys: dict[str, list[bytes]] = {}
        for index, entry in enumerate(filter(None, (e.strip() for e in spec.split(",")))):
            tenant, sep, secret = entry.partition(":")
            if not sep or not tenant or not secret:
                raise AuthConfigError(
                    f"SWITCHYARD_INTAKE_SIGNING_KEYS entry {index} must be 'tenant:secret'")
            self._keys.setdefault(tenant, []).append(secret.encode())

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    @staticmethod
    def sign(secret: bytes, value: bytes) -> str:
        return f"{SIGNATURE_SCHEME}={hmac.new(secret, value, 'sha256').hexdigest()}"

    def check(self, tenant_id: str, value: bytes, signature: str | None) -> str | None:
        """None when the record is authentic; otherwise the reason it is not."""
        if not self.enabled:
            return None
        keys = self._keys.get(tenant_id)
        if keys is None:
            return f"unknown tenant {tenant_id!r} (no intake signing key)"
        if not signature:
            return f"missing {SIGNATURE_HEADER} header"
        scheme, _, digest = signature.partition("=")
        if scheme != SIGNATURE_SCHEME or not digest:
            return f"unsupported signature scheme {scheme!r} (expected {SIGNATURE_SCHEME})"
        if not digest.isascii():  # compare_digest refuses non-ASCII str (TypeError)
            return "signature is not a hex digest (non-ASCII characters)"
        for key in keys:
            if hmac.compare_digest(self.sign(key, value), signature):
                return None
        return "signature does not match the record (forged or altered)"
