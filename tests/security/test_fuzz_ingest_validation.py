"""Fuzzing ingest's validation: whatever arrives, the answer is a list of field problems.

Hypothesis throws oversize fields, invalid UTF-8, deeply nested JSON, wrong shapes and
injection strings at the domain functions the gRPC handler and the intake agent both use; none
may raise, and every refusal must name a field.
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.ingest import domain
from switchyard.v1 import Document, Submission, TaskSource

INJECTIONS = ["'; DROP TABLE tasks; --", "<script>alert(1)</script>", "${jndi:ldap://x}",
              "../../etc/passwd", "\x00", "%s%s%n", "{{7*7}}", "\u202e", "🦄" * 50]
FIELDS = {"tenant_id", "idempotency_key", "kind", "document.content_type", "document.body",
          "metadata", "priority"}


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


bodies = st.one_of(
    st.binary(max_size=4096),
    st.text(max_size=2048).map(str.encode),
    st.integers(1, 5000).map(nested),
    st.sampled_from(INJECTIONS).map(str.encode),
    st.recursive(st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(max_size=20),
                 lambda children: st.lists(children, max_size=4)
                 | st.dictionaries(st.text(max_size=8), children, max_size=4),
                 max_leaves=30).map(lambda v: json.dumps(v).encode()),
)
texts = st.one_of(st.text(max_size=300), st.sampled_from(INJECTIONS))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tenant=texts, key=texts, kind=texts, content_type=st.sampled_from(
    ["", "text/plain", "application/json", "image/png", "TEXT/PLAIN", "application/xml"]),
    body=bodies, priority=st.integers(-2**31, 2**31 - 1),
    metadata=st.dictionaries(texts, texts, max_size=70))
def test_validation_never_raises_and_names_fields(tenant: str, key: str, kind: str,
                                                 content_type: str, body: bytes, priority: int,
                                                 metadata: dict[str, str]) -> None:
    submission = Submission(tenant_id=tenant, idempotency_key=key, kind=kind,
                            document=Document(content_type=content_type, body=body),
                            priority=priority, metadata=metadata)
    problems = domain.validate(submission, max_payload_bytes=2048)
    assert {p.field for p in problems} <= FIELDS
    assert all(p.description for p in problems)
    if not problems:
        envelope = domain.build_envelope(submission, "t-1", TaskSource.TASK_SOURCE_GRPC)
        assert envelope.tenant_id == tenant.strip()
        assert len(domain.payload_sha256(submission)) == 64


def test_deep_json_is_refused_before_parsing() -> None:
    submission = Submission(tenant_id="acme", idempotency_key="k",
                            document=Document(content_type="application/json",
                                              body=nested(100_000)))
    problems = domain.validate(submission, max_payload_bytes=1_000_000)
    assert [(p.field, p.description) for p in problems] == [
        ("document.body", "JSON nested deeper than 64 levels")]
