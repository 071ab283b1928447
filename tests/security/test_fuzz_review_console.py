"""Fuzzing the review web console over real HTTP: malformed requests get a 4xx JSON error.

The review service runs as a real process with API keys on. Hypothesis builds requests from
every route (and some that do not exist) with hostile path parameters, query strings, JSON
bodies (wrong types, NaN, huge numbers, deep nesting, invalid UTF-8, lone surrogates, NUL
characters) and headers (bad or undecodable credentials, odd charsets), sends them as raw
HTTP/1.1 and checks the answer: never a 5xx, always a JSON object, an ``error`` message on
every refusal. Afterwards the service still answers.
"""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.parse
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from switchyard import Settings
from switchyard.messaging import ESCALATIONS, Producer
from switchyard.runtime import service_specs
from switchyard.stack import EmbeddedStack
from switchyard.storage import create_pool
from tests.polling import eventually
from tests.review.helpers import escalation, insert_tasks

pytestmark = pytest.mark.integration
KEYS = "rev-acme:acme:reviewer,adm:*:admin,aud-acme:acme:auditor,sub-acme:acme:submitter"
AUTH = ["Bearer rev-acme", "Bearer adm", "Bearer aud-acme", "Bearer sub-acme", None,
        "Bearer nonsense", "bearer rev-acme", "Basic cmV2LWFjbWU=", "Bearer", "Bearer  ",
        "Bearer rev-acme\x7f", "Bearer r\u00e9v"]
RAW_AUTH = [b"Bearer \xff\xfe\xfd", b"Bearer rev-acme\xc3", b"\xe2\x80\xae Bearer adm"]
INJECTIONS = ["'; DROP TABLE review_items; --", "<script>alert(1)</script>", "${jndi:x}",
              "../../etc/passwd", "\x00", "%00", "%s%n", "\u202e", "🦄" * 20, "\\ud800",
              "1e400", "-1", "99999999999999999999999", "²³", "NaN", "P0,P9", ""]
ROUTES = ["/api/session", "/api/items", "/api/stats", "/api/items/{id}",
          "/api/items/{id}/claim", "/api/items/{id}/renew", "/api/items/{id}/release",
          "/api/items/{id}/verdict", "/api/items/{id}/nope", "/api/nope", "/api/"]
QUERY_KEYS = ["queue", "tenant", "state", "priority", "reason", "page_size", "page_token",
              "unknown"]


@pytest.fixture(scope="module")
def settings(settings: Settings) -> Settings:
    return settings.replace(api_keys=KEYS, review_tenant_rate=0.0,
                            review_admission_interval_ms=50.0)


@pytest.fixture(scope="module")
def item_ids(settings: Settings, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[list[str]]:
    """The review service as a process, with a few pending items of tenant acme."""
    services = EmbeddedStack(settings, tmp_path_factory.mktemp("review"), components=(),
                             services=service_specs(settings, ("review",)))
    services.start(timeout_s=90)
    try:
        yield asyncio.run(seed(settings))
    finally:
        services.stop()


async def seed(settings: Settings) -> list[str]:
    pool = await create_pool(settings)
    producer = Producer(settings)
    await producer.start()
    try:
        async with pool.acquire() as conn:
            tasks = await insert_tasks(conn, "acme", 3)
        escalations = [escalation(t, "fuzz", 2, sla=datetime.now(timezone.utc)
                                  + timedelta(hours=2)) for t in tasks]
        for esc in escalations:
            await producer.send(ESCALATIONS, esc.task_id, esc)

        async def pending() -> list[str]:
            rows = await pool.fetch("SELECT item_id::text FROM review_items WHERE state = "
                                    "'PENDING' AND queue = 'fuzz'")
            return [r["item_id"] for r in rows] if len(rows) == len(tasks) else []

        return await eventually(pending, "3 pending items")
    finally:
        await producer.stop()
        await pool.close()


def request(method: str, target: str, port: int, headers: list[tuple[str, bytes]] = (),
            body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    """One raw HTTP/1.1 exchange (no client library to tidy the request up)."""
    lines = [f"{method} {target} HTTP/1.1".encode(), f"Host: 127.0.0.1:{port}".encode(),
             b"Connection: close"]
    lines += [name.encode() + b": " + value for name, value in headers]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}".encode())
    raw = b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"")
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(raw)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, payload = b"".join(chunks).partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        parsed[name.strip().lower()] = value.strip()
    if parsed.get("transfer-encoding") == "chunked":
        payload = dechunk(payload)
    return int(status_line.split()[1]), parsed, payload


def dechunk(payload: bytes) -> bytes:
    out = b""
    while payload:
        size_line, _, rest = payload.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, payload = out + rest[:size], rest[size + 2:]
    return out


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=30) | st.sampled_from(INJECTIONS),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4),
    max_leaves=15)


@st.composite
def bodies(draw: st.DrawFn) -> bytes | None:
    kind = draw(st.integers(0, 7))
    if kind == 0:
        return None
    if kind == 1:
        return draw(st.binary(max_size=200))
    if kind == 2:
        return draw(st.sampled_from([b"[" * 50_000 + b"]" * 50_000, b"{" * 3000,
                                     b'{"lease_s": NaN}', b'{"lease_s": Infinity}',
                                     b'{"lease_s": -Infinity}', b'{"lease_s": 1e400}',
                                     b'{"lease_s": ' + b"9" * 5000 + b"}", b"\xff\xfe{}",
                                     b'{"reviewer_id": "\\ud800"}', b"null", b"", b"[]",
                                     b'{"reviewer_id": "a\\u0000b"}', b'"\\udfff"']))
    body: dict[str, Any] = {}
    for field in ("reviewer_id", "lease_s", "verdict", "reason", "modified_fields"):
        if draw(st.booleans()):
            body[field] = draw(st.one_of(
                json_values, st.sampled_from(["approve", "reject", "modify", "ana", "ben"]),
                st.floats(), st.integers(-2**70, 2**70),
                st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=70)))
    if draw(st.booleans()):
        body[draw(st.text(max_size=10))] = draw(json_values)
    text = json.dumps(body, allow_nan=True)
    return text.replace('"\\\\ud800"', '"\\ud800"').encode()


@st.composite
def requests(draw: st.DrawFn, item_ids: list[str]) -> tuple[str, str, list, bytes | None]:
    method = draw(st.sampled_from(["GET", "POST", "GET", "POST", "PUT", "DELETE", "PATCH"]))
    route = draw(st.sampled_from(ROUTES))
    raw_id = draw(st.one_of(st.sampled_from(item_ids), st.uuids().map(str),
                            st.text(max_size=40).map(str.encode),
                            st.binary(max_size=20), st.sampled_from(
                                [s.encode() for s in INJECTIONS])))
    if isinstance(raw_id, str):
        raw_id = raw_id.encode()
    path = route.replace("{id}", urllib.parse.quote_from_bytes(raw_id, safe="") or "x")
    params = draw(st.lists(st.tuples(st.sampled_from(QUERY_KEYS), st.one_of(
        st.sampled_from(INJECTIONS), st.text(max_size=30),
        st.sampled_from(["PENDING,CLAIMED", "p0,P1", "LOW_CONFIDENCE", "fuzz", "acme", "5"]))),
        max_size=4))
    query = "&".join(f"{urllib.parse.quote(k)}={urllib.parse.quote(v, safe='')}"
                     for k, v in params)
    if draw(st.booleans()):  # undecodable bytes in the query too
        query += "&queue=%ff%fe&tenant=%ed%a0%80"
    headers: list[tuple[str, bytes]] = []
    auth = draw(st.one_of(st.sampled_from(AUTH), st.sampled_from(RAW_AUTH)))
    if auth is not None:
        headers.append(("Authorization", auth if isinstance(auth, bytes)
                        else auth.encode("utf-8")))
    content_type = draw(st.sampled_from([None, "application/json", "text/plain",
                                         "application/json; charset=utf-16",
                                         "application/json; charset=nonsense",
                                         "multipart/form-data; boundary=x"]))
    if content_type:
        headers.append(("Content-Type", content_type.encode()))
    return method, path + ("?" + query if query else ""), headers, draw(bodies())


def conforming(headers: list[tuple[str, bytes]]) -> bool:
    """RFC 9110 field values: visible ASCII, obs-text, space and tab only. Anything else is
    not HTTP, and aiohttp's parser refuses it (400, text) before the console sees it."""
    return all(all(b in (9, 32) or 33 <= b <= 126 or b >= 128 for b in value)
               for _, value in headers)


def check(port: int, method: str, target: str, headers: list, body: bytes | None) -> None:
    status, response_headers, payload = request(method, target, port, headers, body)
    what = f"{method} {target} {headers} {body[:200] if body else body!r} -> {status} " \
           f"{payload[:300]!r}"
    assert status < 500, what
    if not conforming(headers):
        assert status == 400, what
        return
    assert response_headers.get("content-type", "").startswith("application/json"), what
    answer = json.loads(payload)
    assert isinstance(answer, dict), what
    if status >= 400:
        assert isinstance(answer.get("error"), str) and answer["error"], what


def test_malformed_requests_get_4xx_json_and_the_console_stays_up(
        settings: Settings, item_ids: list[str]) -> None:
    port = settings.review_web_port

    @hypothesis_settings(max_examples=200, deadline=None,
                         suppress_health_check=[HealthCheck.too_slow,
                                                HealthCheck.data_too_large])
    @given(req=requests(item_ids))
    def fuzz(req: tuple[str, str, list, bytes | None]) -> None:
        check(port, *req)

    fuzz()
    # each of these was a 500 before the console checked it (kept as fixed regressions)
    item, json_ = item_ids[0], [("Content-Type", b"application/json")]
    rev, adm = [("Authorization", b"Bearer rev-acme")], [("Authorization", b"Bearer adm")]
    for method, target, headers, body, status in [
        ("POST", f"/api/items/{item}/claim", rev + json_,
         b'{"reviewer_id": "ana", "lease_s": NaN}', 400),
        ("POST", f"/api/items/{item}/claim", rev + json_,
         b'{"reviewer_id": "ana", "lease_s": 1e300}', 400),
        # over the 8 hours a lease may last: refused, not cut short in silence
        ("POST", f"/api/items/{item}/claim", rev + json_, b'{"lease_s": 86400}', 400),
        ("POST", f"/api/items/{item}/claim", rev + json_, b'{"lease_s": ' + b"9" * 5000 + b"}",
         400),
        ("POST", f"/api/items/{item}/claim", rev + json_, b"[" * 50_000 + b"]" * 50_000, 400),
        ("POST", f"/api/items/{item}/claim", rev + json_, b'{"reviewer_id": "\\ud800"}', 400),
        ("POST", f"/api/items/{item}/claim", rev + json_, b'{"reviewer_id": "a\\u0000"}', 400),
        ("POST", f"/api/items/{item}/verdict", rev + json_,
         b'{"reviewer_id": "ana", "verdict": "reject", "reason": "\\u0000"}', 400),
        ("POST", f"/api/items/{item}/claim", rev
         + [("Content-Type", b"application/json; charset=nonsense")], b"{}", 400),
        ("GET", "/api/items?page_size=%C2%B2", rev, None, 400),
        ("GET", "/api/items?page_size=99999999999999999999", rev, None, 400),
        ("GET", "/api/items?page_token=%C2%B2", rev, None, 400),
        ("GET", "/api/items?page_token=99999999999999999999999", rev, None, 400),
        ("GET", "/api/items?queue=%00", adm, None, 400),
        ("GET", "/api/items?tenant=a%00", adm, None, 400),
        ("GET", "/api/items", [("Authorization", b"Bearer \xff\xfe")], None, 401),
        ("POST", "/api/session", rev, None, 405),
        ("GET", "/api/nope", rev, None, 404),
    ]:
        assert request(method, target, port, headers, body)[0] == status, (method, target, body)
        check(port, method, target, headers, body)
    too_big = b'{"reviewer_id": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    check(port, "POST", f"/api/items/{item_ids[0]}/claim",
          [("Authorization", b"Bearer rev-acme"), ("Content-Type", b"application/json")],
          too_big)
    status, _, payload = request("GET", "/api/items?queue=fuzz&state=PENDING,CLAIMED", port,
                                 [("Authorization", b"Bearer adm")])
    assert status == 200 and json.loads(payload)["items"], payload[:300]
    assert request("GET", "/healthz", port)[0] == 200
