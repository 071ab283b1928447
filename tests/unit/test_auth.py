"""API-key and intake-signature configuration and checks (no servers involved)."""

from __future__ import annotations

import pytest

from switchyard._auth import ApiKeyAuthenticator, AuthConfigError, IntakeSigner, Role


def test_api_keys_map_to_tenant_and_role() -> None:
    auth = ApiKeyAuthenticator("k1:acme:submitter,k2:acme:reviewer")
    principal = auth.authenticate({"authorization": "Bearer k2"})
    assert principal is not None and (principal.tenant_id, principal.role) == ("acme",
                                                                               Role.REVIEWER)
    assert auth.authenticate({"authorization": "Bearer nope"}) is None
    assert auth.authenticate({}) is None
    with pytest.raises(AuthConfigError, match="unknown role 'root'"):
        ApiKeyAuthenticator("k:acme:root")


def test_intake_signatures() -> None:
    signer = IntakeSigner("acme:s3cret,acme:n3w,globex:other")
    value = b'{"idempotency_key": "a"}'
    good = IntakeSigner.sign(b"n3w", value)
    assert signer.check("acme", value, good) is None
    assert "forged" in (signer.check("acme", value + b" ", good) or "")
    assert "forged" in (signer.check("globex", value, good) or "")
    assert "missing" in (signer.check("acme", value, None) or "")
    assert "unknown tenant" in (signer.check("initech", value, good) or "")
    assert IntakeSigner("").check("anyone", value, None) is None
