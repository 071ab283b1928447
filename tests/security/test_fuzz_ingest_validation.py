"""Fuzzing ingest's validation: whatever arrives, the answer is a list of field problems.

Hypothesis throws oversize fields, invalid UTF-8, deeply nested JSON, wrong shapes, mangled
PDFs and images and injection strings at the domain functions the gRPC handler and the intake agent both use; none
may raise, and every refusal must name a field. The operator console's requests (ListTasks'
kind and metadata filters, GetModelHealth's window) get the same treatment.
"""

from __future__ import annotations

import base64
import json
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.decision import health
from services.ingest import domain, listing
from switchyard.documents import DocumentLimits
from switchyard.v1 import (
    Document,
    GetModelHealthRequest,
    ListTasksRequest,
    Submission,
    TaskSource,
)
from tests.document_samples import image, text_pdf, tiff

INJECTIONS = ["'; DROP TABLE tasks; --", "<script>alert(1)</script>", "${jndi:ldap://x}",
              "../../etc/passwd", "\x00", "%s%s%n", "{{7*7}}", "\u202e", "🦄" * 50]
METADATA_ENTRY = re.compile(r"metadata\[(?:'.*'|\".*\")\]", re.DOTALL)
FIELDS = {"tenant_id", "idempotency_key", "kind", "document.content_type", "document.body",
          "metadata", "priority"}


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


SAMPLES = [text_pdf(), image("PNG"), image("JPEG"), tiff()]


@st.composite
def mangled_files(draw: st.DrawFn) -> bytes:
    """A real PDF or image, cut or with bytes flipped, or random bytes behind a file's
    magic number: what a broken scanner or a hostile client sends."""
    if draw(st.booleans()):
        magic = draw(st.sampled_from([b"%PDF-", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff",
                                      b"II*\x00", b"MM\x00*"]))
        return magic + draw(st.binary(max_size=512))
    body = bytearray(draw(st.sampled_from(SAMPLES)))
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, len(body) - 1))
        body[at] ^= draw(st.integers(1, 255))
    return bytes(body[:draw(st.integers(1, len(body)))])


bodies = st.one_of(
    st.binary(max_size=4096),
    mangled_files(),
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
@given(tenant=texts, key=texts, kind=texts, content_type=st.one_of(st.sampled_from(
    ["", "text/plain", "application/json", "image/png", "TEXT/PLAIN", "application/xml",
     "application/pdf", "image/jpeg", "image/tiff", " Image/TIFF ",
     # parameters: charsets known, unknown, empty, codecs that are no charset, garbage
     "text/plain; charset=iso-8859-1", 'application/json; charset="UTF-8"',
     "text/plain; charset=utf-16", "text/plain; charset=", "text/plain; charset=base64",
     "text/plain; charset=unicode_escape", "text/plain; charset=utf-7", "text/plain;;;=",
     "application/pdf; charset=utf-8", "text/plain; charset=shift_jis; format=flowed"]),
    st.builds(lambda base, params: f"{base};{params}",
              st.sampled_from(["text/plain", "application/json", "image/png"]), texts)),
    body=bodies, priority=st.integers(-2**31, 2**31 - 1),
    metadata=st.dictionaries(texts, texts, max_size=70))
def test_validation_never_raises_and_names_fields(tenant: str, key: str, kind: str,
                                                 content_type: str, body: bytes, priority: int,
                                                 metadata: dict[str, str]) -> None:
    submission = Submission(tenant_id=tenant, idempotency_key=key, kind=kind,
                            document=Document(content_type=content_type, body=body),
                            priority=priority, metadata=metadata)
    problems, info = domain.check(submission, DocumentLimits(max_text_bytes=2048,
                                                             max_bytes=64 * 1024))
    # a field of the submission, or a metadata entry named by its key (docs/ingest.md)
    assert all(p.field in FIELDS or METADATA_ENTRY.fullmatch(p.field) for p in problems), \
        [p.field for p in problems]
    assert all(p.description for p in problems)
    if not problems:
        assert info is not None
        envelope = domain.build_envelope(submission, "t-1", TaskSource.TASK_SOURCE_GRPC,
                                         page_count=info.page_count)
        assert envelope.tenant_id == tenant.strip()
        assert len(domain.payload_sha256(submission)) == 64
        # stored under the bare media type; text and JSON always as UTF-8
        assert ";" not in envelope.document.content_type
        if envelope.document.content_type in ("text/plain", "application/json"):
            envelope.document.body.decode("utf-8")


def test_deep_json_is_refused_before_parsing() -> None:
    submission = Submission(tenant_id="acme", idempotency_key="k",
                            document=Document(content_type="application/json",
                                              body=nested(100_000)))
    problems = domain.validate(submission, 1_000_000)
    assert [(p.field, p.description) for p in problems] == [
        ("document.body", "JSON nested deeper than 64 levels")]


# -- the operator console's requests --------------------------------------------------------

@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kinds=st.lists(texts, max_size=40), metadata=st.dictionaries(texts, texts, max_size=20),
       statuses=st.lists(st.integers(-5, 10), max_size=3), page_size=st.integers(-10, 600),
       token=st.one_of(texts, st.binary(max_size=60).map(
           lambda b: base64.urlsafe_b64encode(b).decode())))
def test_list_filters_never_raise_and_name_fields(kinds: list[str], metadata: dict[str, str],
                                                  statuses: list[int], page_size: int,
                                                  token: str) -> None:
    """ListTasks' kinds and metadata filters (with the other fields): a query, or problems
    that each name a field of the request."""
    request = ListTasksRequest(kinds=kinds, metadata=metadata, statuses=statuses,
                               page_size=page_size, page_token=token)
    query = listing.parse(request, "acme")
    if isinstance(query, list):
        assert query and all(p.description for p in query)
        assert {p.field.split("[")[0] for p in query} <= {
            "kinds", "metadata", "statuses", "page_size", "page_token", "created_before"}
    else:
        assert len(query.kinds) <= listing.MAX_KINDS
        assert len(query.metadata) <= listing.MAX_METADATA_PAIRS
        hashes = listing.metadata_hashes(b"k", "acme", query.metadata)
        assert all(len(h) == 64 for h in hashes)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(window=st.one_of(st.none(), st.tuples(st.integers(-2**62, 2**62),
                                             st.integers(-2**31, 2**31 - 1))),
       bucket=st.one_of(st.none(), st.tuples(st.integers(-2**62, 2**62),
                                             st.integers(-2**31, 2**31 - 1))))
def test_model_health_windows_never_raise(window: tuple[int, int] | None,
                                          bucket: tuple[int, int] | None) -> None:
    """GetModelHealth's window and bucket, any Duration values: a window of at most 500
    buckets, or field violations on window and bucket only."""
    request = GetModelHealthRequest(tenant_id="acme")
    if window is not None:
        request.window.seconds, request.window.nanos = window
    if bucket is not None:
        request.bucket.seconds, request.bucket.nanos = bucket
    parsed = health.parse_window(request)
    if isinstance(parsed, list):
        assert parsed and {p.field for p in parsed} <= {"window", "bucket"}
    else:
        assert parsed.bucket >= health.MIN_BUCKET
