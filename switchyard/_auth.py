"""Who is calling: API-key principals, roles, and the per-RPC role policy.

Services declare which roles may call each RPC; the gRPC auth interceptor (in ``_grpc``) is the
only place that enforces it, so handlers never check credentials themselves. Handlers read the
caller from :data:`principal_var` to scope queries to the caller's tenant.
"""

from __future__ import annotations

import contextvars
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum


class Role(str, Enum):
    SUBMITTER = "submitter"
    REVIEWER = "reviewer"
    ADMIN = "admin"
    AUDITOR = "auditor"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. ``tenant_id == '*'`` is an operator allowed on every tenant.

    ``groups`` are the reviewer groups the key belongs to (``key:tenant:role:group+group``):
    review items escalated for a group are only for its members (see :meth:`in_group`).
    """

    key_id: str
    tenant_id: str
    role: Role
    groups: frozenset[str] = frozenset()

    def may_access(self, tenant_id: str) -> bool:
        return self.tenant_id in {"*", tenant_id}

    @property
    def sees_every_group(self) -> bool:
        """Admins and operators (and the local operator when auth is off) are in every group."""
        return self.role is Role.ADMIN or self.tenant_id == "*"

    def in_group(self, group: str) -> bool:
        """Whether work for reviewer group ``group`` (empty: anyone) is this caller's."""
        return not group or self.sees_every_group or group in self.groups


#: Used when auth is off (no API keys configured): a local operator, as in a dev stack.
DEV_PRINCIPAL = Principal(key_id="dev", tenant_id="*", role=Role.ADMIN)

principal_var: contextvars.ContextVar[Principal] = contextvars.ContextVar(
    "switchyard_principal", default=DEV_PRINCIPAL
)


class AuthConfigError(ValueError):
    pass


#: A reviewer group's name, as keys and packs (``review.group``) spell it.
GROUP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
KEY_FORMAT = "'key:tenant:role' or 'key:tenant:role:group+group...'"


def parse_groups(spec: str, where: str) -> frozenset[str]:
    """``group+group`` -> the set of group names; a bad name is an AuthConfigError naming it."""
    if not spec:
        raise AuthConfigError(f"{where}: nothing after the role's ':' (leave it out, or name "
                              "reviewer groups: key:tenant:role:finance+legal)")
    groups = spec.split("+")
    for group in groups:
        if not group:
            raise AuthConfigError(f"{where}: empty reviewer group in {spec!r} (write "
                                  "group names separated by '+', e.g. finance+legal)")
        if not GROUP_NAME.fullmatch(group):
            raise AuthConfigError(f"{where}: reviewer group {group!r} must be 1-63 letters, "
                                  "digits, '_', '.' or '-', starting with a letter or digit")
    return frozenset(groups)


class ApiKeyAuthenticator:
    """Validates bearer API keys from ``SWITCHYARD_API_KEYS`` ('key:tenant:role', ...).

    An entry may name reviewer groups after the role, ``key:tenant:role:group+group``: the
    key's reviewer sees and decides the review items escalated for those groups. Several keys
    may map to one tenant, which is how keys rotate without downtime: add the new key, move
    clients, remove the old one. Error messages name the entry by position, never the key.
    """

    def __init__(self, spec: str) -> None:
        self._keys: dict[str, Principal] = {}
        for index, entry in enumerate(filter(None, (e.strip() for e in spec.split(",")))):
            parts = entry.split(":")
            if len(parts) not in (3, 4) or not all(parts[:3]):
                raise AuthConfigError(
                    f"SWITCHYARD_API_KEYS entry {index} must be {KEY_FORMAT}"
                )
            key, tenant, role = parts[:3]
            groups = frozenset[str]()
            if len(parts) == 4:
                groups = parse_groups(parts[3], f"SWITCHYARD_API_KEYS entry {index}")
            try:
                parsed_role = Role(role)
            except ValueError:
                raise AuthConfigError(
                    f"SWITCHYARD_API_KEYS entry {index}: unknown role {role!r} "
                    f"(one of {', '.join(r.value for r in Role)})"
                ) from None
            self._keys[key] = Principal(key_id=f"key-{index}", tenant_id=tenant, role=parsed_role,
                                        groups=groups)

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def authenticate(self, metadata: Mapping[str, str] | Sequence[tuple[str, str]]
                     ) -> Principal | None:
        """The key's principal; None for a missing or unknown key, and for a call that
        carries two different ``authorization`` entries (as call metadata pairs or repeated
        HTTP headers): which one counts would differ between a proxy and the service. The
        same key twice (a channel's key and a call's own) is one credential."""
        if not self.enabled:
            return DEV_PRINCIPAL
        pairs = metadata.items() if isinstance(metadata, Mapping) else metadata
        given = {value for key, value in pairs if key.lower() == "authorization"}
        if len(given) > 1:
            return None
        header = given.pop() if given else ""
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
        presented = f"{SIGNATURE_SCHEME}={digest.lower()}"  # hex in either case
        for key in keys:
            if hmac.compare_digest(self.sign(key, value), presented):
                return None
        return "signature does not match the record (forged or altered)"
