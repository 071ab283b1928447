"""API-key and intake-signature configuration and checks (no servers involved)."""

from __future__ import annotations

import pytest

from switchyard.access import (
    DEV_PRINCIPAL,
    ApiKeyAuthenticator,
    AuthConfigError,
    IntakeSigner,
    Principal,
    Role,
)


def test_api_keys_map_to_tenant_and_role() -> None:
    auth = ApiKeyAuthenticator("k1:acme:submitter,k2:acme:reviewer")
    principal = auth.authenticate({"authorization": "Bearer k2"})
    assert principal is not None and (principal.tenant_id, principal.role) == ("acme",
                                                                               Role.REVIEWER)
    assert auth.authenticate({"authorization": "Bearer nope"}) is None
    assert auth.authenticate({}) is None
    with pytest.raises(AuthConfigError, match="unknown role 'root'"):
        ApiKeyAuthenticator("k:acme:root")


def test_api_keys_may_name_reviewer_groups() -> None:
    auth = ApiKeyAuthenticator("k1:acme:reviewer:finance+legal,k2:acme:reviewer,"
                               "k3:acme:admin,k4:*:reviewer")
    member, plain, admin, operator = (auth.authenticate({"authorization": f"Bearer k{i}"})
                                      for i in range(1, 5))
    assert member is not None and member.groups == {"finance", "legal"}
    assert plain is not None and plain.groups == frozenset()
    assert member.in_group("finance") and member.in_group("legal") and member.in_group("")
    assert not member.in_group("managers")
    assert plain.in_group("") and not plain.in_group("finance")
    # admins and operators are in every group, and so is everyone with auth off
    assert admin is not None and admin.in_group("finance")
    assert operator is not None and operator.in_group("finance")
    assert DEV_PRINCIPAL.in_group("finance")
    assert not Principal("k", "acme", Role.AUDITOR).in_group("finance")


@pytest.mark.parametrize(("spec", "message"), [
    ("s3cret:acme:reviewer:", "entry 0: nothing after the role's ':'"),
    ("a:acme:reviewer,k:acme:reviewer:finance++legal", "entry 1: empty reviewer group"),
    ("s3cret:acme:reviewer:fin ance", "entry 0: reviewer group 'fin ance' must be 1-63 letters"),
    ("s3cret:acme:reviewer:-x", "reviewer group '-x' must be"),
    ("s3cret:acme:reviewer:a:b", "entry 0 must be 'key:tenant:role' or "
                            "'key:tenant:role:group+group...'"),
])
def test_bad_reviewer_groups_are_refused_with_the_entry_and_the_reason(
        spec: str, message: str) -> None:
    with pytest.raises(AuthConfigError) as caught:
        ApiKeyAuthenticator(spec)
    assert message in str(caught.value)
    assert "s3cret" not in str(caught.value)  # never echo a key


def test_intake_signatures() -> None:
    signer = IntakeSigner("acme:s3cret,acme:n3w,globex:other")
    value = b'{"idempotency_key": "a"}'
    good = IntakeSigner.sign(b"n3w", value)
    assert signer.check("acme", value, good) is None
    # hex is hex in either case (an outside producer's library wrote it upper-case)
    scheme, _, digest = good.partition("=")
    assert signer.check("acme", value, f"{scheme}={digest.upper()}") is None
    assert "forged" in (signer.check("acme", value + b" ", good) or "")
    assert "forged" in (signer.check("globex", value, good) or "")
    assert "missing" in (signer.check("acme", value, None) or "")
    assert "unknown tenant" in (signer.check("initech", value, good) or "")
    assert IntakeSigner("").check("anyone", value, None) is None
