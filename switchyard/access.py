"""Who may call and how much: API-key principals and roles, the per-RPC role policy, signed
intake records, and the per-tenant rate limits every replica shares.

Re-exported from ``_auth`` and ``_ratelimit``.
"""

from __future__ import annotations

from switchyard._auth import (
    ApiKeyAuthenticator,
    AuthConfigError,
    DEV_PRINCIPAL,
    IntakeSigner,
    MethodPolicy,
    Principal,
    Role,
    SIGNATURE_HEADER,
    principal_var,
)
from switchyard._ratelimit import (
    Limit,
    RATE_LIMITED,
    TenantLimiter,
    parse_limits,
)

__all__ = [
    "ApiKeyAuthenticator",
    "AuthConfigError",
    "DEV_PRINCIPAL",
    "IntakeSigner",
    "Limit",
    "MethodPolicy",
    "Principal",
    "RATE_LIMITED",
    "Role",
    "SIGNATURE_HEADER",
    "TenantLimiter",
    "parse_limits",
    "principal_var",
]
