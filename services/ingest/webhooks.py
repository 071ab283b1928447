"""Webhooks: status changes POSTed to per-tenant and per-task URLs, signed, retried.

Durability comes from PostgreSQL, not from the process: the dispatcher tails the status feed
(see ``feed``) from a cursor stored in ``webhook_feed_cursor`` and, in the same transaction
that advances the cursor, writes one ``webhook_deliveries`` row per destination. The delivery
worker claims due rows with a lease, POSTs them and records the outcome; failures are retried
with exponential backoff until ``webhook_max_attempts``, then marked ``failed`` (kept, so
operators can see them). A crash loses nothing and at worst repeats a POST, which receivers
recognise by its ``webhook-id`` (the delivery id, the same on every attempt).

Deliveries carry Standard Webhooks headers (``webhook-id``, ``webhook-timestamp``,
``webhook-signature: v1,<base64 HMAC-SHA256>``; see ``signatures`` and docs/ingest.md).
Tenant webhooks are signed with their own secret (from RegisterWebhook); per-task
``callback_url`` deliveries with ``SWITCHYARD_WEBHOOK_SIGNING_KEY``.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import json
import logging
import random
import socket
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import aiohttp.abc
import asyncpg
from google.protobuf import json_format
from prometheus_client import Counter

from services.ingest import keyset, signatures
from services.ingest.feed import Cursor, event_from_row, fetch_after, horizon
from switchyard import Settings
from switchyard.audit import append as audit_append
from switchyard.messaging import TRANSIENT_ERRORS
from switchyard.rpc import FieldViolation
from switchyard.runtime import SERVICE_PORTS

log = logging.getLogger(__name__)

SIGNATURE_HEADER = signatures.SIGNATURE_HEADER
TIMESTAMP_HEADER = signatures.TIMESTAMP_HEADER
#: The delivery id: receivers dedupe on it (a delivery can repeat after a crash).
DELIVERY_HEADER = signatures.ID_HEADER
MAX_URL_CHARS = 2048
MAX_BACKOFF_S = 300.0
ENQUEUE_BATCH = 500
DELIVERY_BATCH = 50

DELIVERIES = Counter(
    "switchyard_ingest_webhook_deliveries_total",
    "Webhook POST attempts, by outcome (delivered, retry, failed).",
    ["outcome"],
)
PASSED_UNHEARD = Counter(
    "switchyard_ingest_webhook_feed_passes_unheard_total",
    "Dispatcher passes that moved the feed cursor past the finished status events without "
    "reading them: no webhook registered and no task with a callback.",
)


# -- pure helpers ------------------------------------------------------------------------

_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


def _is_loopback(host: str) -> bool:
    """Whether a connection to ``host`` stays on this machine (0.0.0.0 does, on Linux)."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return host in _LOOPBACK_NAMES
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback or address.is_unspecified


def _address(host: str) -> str:
    """The address ``host`` names as a connection reads it: an IPv6 or IPv4 literal, or one of
    the older IPv4 spellings the C library takes ('127.1', '0x7f000001', '2130706433' are all
    127.0.0.1); a name as itself, lower case, without a trailing dot ('localhost.')."""
    name = host.strip("[]").lower().rstrip(".")
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        pass
    try:
        return str(ipaddress.IPv4Address(socket.inet_aton(name)))
    except OSError:
        return name


def _own_server(address: str, port: int, settings: Settings) -> str | None:
    """The stack's own server at ``address`` (as :func:`_address` reads it) and ``port``, by
    name, or None: any loopback spelling reaches a server bound to loopback."""
    own = stack_endpoints(settings)
    name = own.get((address, port))
    if name is None and _is_loopback(address):
        name = next((n for (h, p), n in own.items() if p == port and _is_loopback(h)), None)
    return name


class OwnServersRefused(aiohttp.abc.AbstractResolver):
    """The resolver webhook deliveries connect through: a name that resolves to one of the
    stack's own servers (a DNS name for 127.0.0.1, one that changed since the URL was
    registered) is refused at connection time, as :func:`url_problem` refuses it by address.
    (aiohttp does not ask a resolver for an all-numeric host: :func:`url_problem` reads those
    as the C library does.)"""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[Any]:
        found = await self._inner.resolve(host, port, family)
        for entry in found:
            name = _own_server(_address(str(entry["host"])), port, self._settings)
            if name is not None:
                raise OwnServerRefused(f"{host} resolves to {entry['host']}, where port "
                                       f"{port} is this stack's own {name} server: webhooks "
                                       "may not call the stack's own services")
        return found

    async def close(self) -> None:
        await self._inner.close()


class OwnServerRefused(OSError):
    """A delivery's host resolved to one of the stack's own servers."""


def _host_port(address: str) -> tuple[str, int] | None:
    """``host:port`` (or a URL, a DSN) as a lower-case host and a port; None without a port."""
    try:
        parts = urlsplit(address if "//" in address else f"//{address}")
        return ((parts.hostname or "").lower(), parts.port) if parts.port else None
    except ValueError:
        return None


@functools.cache
def stack_endpoints(settings: Settings) -> dict[tuple[str, int], str]:
    """Where this stack's own servers listen, by name: the broker, PostgreSQL, Triton (HTTP,
    gRPC, metrics, the spill-over one's too) and every service's gRPC, REST, web and metrics
    port. None of them asks for credentials on loopback (Triton's model control, PostgreSQL's
    wire protocol), so no webhook may reach them, whatever the allowed hosts say. Read once
    per settings (every delivery asks)."""
    bound = settings.bind_host.lower()
    named: dict[tuple[str, int], str] = {}
    for address in settings.kafka_bootstrap_servers.split(","):
        if (found := _host_port(address.strip())) is not None:
            named[found] = "broker"
    for address, name in ((settings.postgres_dsn, "PostgreSQL"),
                          (settings.triton_url, "Triton gRPC"),
                          (settings.triton_spill_url, "spill-over Triton gRPC")):
        if address and (found := _host_port(address)) is not None:
            named[found] = name
    ports = {"postgres_port": "PostgreSQL", "triton_http_port": "Triton HTTP",
             "triton_grpc_port": "Triton gRPC", "triton_metrics_port": "Triton metrics",
             "triton_spill_http_port": "spill-over Triton HTTP",
             "triton_spill_grpc_port": "spill-over Triton gRPC",
             "triton_spill_metrics_port": "spill-over Triton metrics",
             "review_web_port": "review web consoles", "ingest_rest_port": "ingest REST"}
    for service, (grpc_port, metrics_port) in SERVICE_PORTS.items():
        ports[grpc_port], ports[metrics_port] = f"{service} gRPC", f"{service} metrics"
    for field, name in ports.items():
        port = getattr(settings, field)
        if port:
            named[(bound, port)] = name
            named[("localhost", port)] = name
    return named


def url_problem(url: str, settings: Settings) -> str | None:
    """Why ``url`` may not receive webhooks, or None.

    Only http(s), and only to hosts the operator allowed: a webhook is a request the server
    makes on a client's behalf, so an open target list would let any submitter probe the
    internal network (SSRF). Loopback only by default, and never one of the stack's own
    servers (:func:`stack_endpoints`): any tenant's key could otherwise unload a model every
    tenant uses through Triton's model control.
    """
    if len(url) > MAX_URL_CHARS:
        return f"at most {MAX_URL_CHARS} characters"
    if any(ord(c) < 32 or ord(c) == 127 for c in url):
        return "must not contain control characters (NUL, line breaks, tabs)"
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError as exc:
        return f"not a valid URL ({exc})"
    if parts.scheme not in {"http", "https"}:
        return "must be an http:// or https:// URL"
    if not host:
        return "must name a host"
    if parts.username or parts.password:
        return "must not carry credentials"
    normalised = _address(host)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    name = _own_server(normalised, port, settings)
    if name is not None:
        return (f"port {port} of {host} is this stack's own {name} server: webhooks may not "
                "call the stack's own services")
    allowed = {h.strip().lower() for h in settings.webhook_allowed_hosts.split(",")
               if h.strip()}
    if "*" not in allowed and normalised not in allowed:
        return f"host {host!r} is not allowed (SWITCHYARD_WEBHOOK_ALLOWED_HOSTS)"
    return None


def callback_problems(url: str, settings: Settings) -> list[FieldViolation]:
    """Validation of ``Submission.callback_url``, shared by gRPC and the intake topic."""
    if not url:
        return []
    if not settings.webhook_signing_key:
        return [FieldViolation("callback_url", "per-task callbacks are disabled on this "
                                               "server (no SWITCHYARD_WEBHOOK_SIGNING_KEY)")]
    problem = url_problem(url.strip(), settings)
    return [FieldViolation("callback_url", problem)] if problem else []


def backoff_s(attempts: int, base_s: float) -> float:
    """Delay before attempt ``attempts + 1``: base * 2^(attempts-1), capped, with jitter."""
    return min(MAX_BACKOFF_S, base_s * 2 ** max(0, attempts - 1)) * random.uniform(0.8, 1.0)


def delivery_body(delivery_id: uuid.UUID, webhook_id: uuid.UUID | None,
                  row: asyncpg.Record) -> bytes:
    event = json_format.MessageToDict(event_from_row(row), preserving_proto_field_name=True)
    return json.dumps({"delivery_id": str(delivery_id),
                       "webhook_id": str(webhook_id) if webhook_id else None,
                       "event": event}, sort_keys=True).encode()


# -- registrations -----------------------------------------------------------------------

async def _lock_cursor(conn: asyncpg.Connection) -> asyncpg.Record:
    """The dispatcher's cursor row, locked until the transaction ends (made when missing)."""
    await conn.execute("INSERT INTO webhook_feed_cursor (txid, task_id, seq) "
                       "VALUES (0, '00000000-0000-0000-0000-000000000000', 0) "
                       "ON CONFLICT DO NOTHING")
    # The row lock serialises replicas: only one enqueues a given stretch of the feed.
    return await conn.fetchrow("SELECT txid, task_id, seq FROM webhook_feed_cursor FOR UPDATE")


async def register(pool: asyncpg.Pool, tenant_id: str, url: str, secret: str
                   ) -> tuple[str, str]:
    """A new webhook of ``tenant_id``, owed the tenant's status events from now on. It is
    created under the dispatcher's cursor lock and stamped with the time it got the lock, so
    a dispatcher pass that found nobody listening (and skipped the events before it) is
    over before that time: every event it skipped is older than the webhook."""
    webhook_id = uuid.uuid4()
    secret = secret or signatures.new_secret()
    async with pool.acquire() as conn, conn.transaction():
        await _lock_cursor(conn)
        await conn.execute(
            "INSERT INTO webhooks (webhook_id, tenant_id, url, secret, created_at) "
            "VALUES ($1, $2, $3, $4, clock_timestamp())", webhook_id, tenant_id, url, secret)
    return str(webhook_id), secret


async def webhook_tenant(pool: asyncpg.Pool, webhook_id: str) -> str | None:
    try:
        key = uuid.UUID(webhook_id)
    except ValueError:
        return None
    return await pool.fetchval(
        "SELECT tenant_id FROM webhooks WHERE webhook_id = $1 AND deleted_at IS NULL", key)


async def delete(pool: asyncpg.Pool, webhook_id: str) -> bool:
    """Deregister; its pending deliveries are dropped (marked failed) at their next attempt."""
    result = await pool.execute(
        "UPDATE webhooks SET deleted_at = now() WHERE webhook_id = $1 AND deleted_at IS NULL",
        uuid.UUID(webhook_id),
    )
    return result.endswith(" 1")


# -- dispatcher: feed -> deliveries ------------------------------------------------------

#: Past the end of any transaction's events: a cursor at (txid, _LAST_TASK_ID, _MAX_SEQ) is
#: after every event of transaction ``txid``.
_LAST_TASK_ID = uuid.UUID(int=(1 << 128) - 1)
_MAX_SEQ = (1 << 63) - 1


async def anyone_listens(conn: asyncpg.Connection) -> bool:
    """Whether a status event can have a destination: a registered webhook, or a task
    submitted with a ``callback_url`` (two index probes)."""
    return bool(await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM webhooks WHERE deleted_at IS NULL) "
        "OR EXISTS (SELECT 1 FROM tasks WHERE callback_url IS NOT NULL)"))


async def enqueue_once(pool: asyncpg.Pool) -> int:
    """Turn the next status events into delivery rows; returns how many events were read.

    While nobody listens (no webhook registered, no task with a callback) the events are
    not read: the cursor moves past every finished one instead. That is safe because the
    horizon is taken before the question is asked (an event of a task submitted with a
    callback meanwhile is past the horizon, or its task is seen), and a webhook is
    registered under the cursor's lock with the time it got it (:func:`register`), so it
    is owed only events after this pass."""
    async with pool.acquire() as conn:
        # A read-only peek first, so an idle feed costs no write transaction.
        row = await conn.fetchrow("SELECT txid, task_id, seq FROM webhook_feed_cursor")
        if row is not None and not await fetch_after(
                conn, Cursor(row["txid"], row["task_id"], row["seq"]), await horizon(conn), 1):
            return 0
    async with pool.acquire() as conn, conn.transaction():
        row = await _lock_cursor(conn)
        cursor = Cursor(row["txid"], row["task_id"], row["seq"])
        below = await horizon(conn)  # first: see the docstring
        if not await anyone_listens(conn):
            PASSED_UNHEARD.inc()
            await conn.execute("UPDATE webhook_feed_cursor SET txid = $1, task_id = $2, "
                               "seq = $3", max(below - 1, cursor.txid), _LAST_TASK_ID, _MAX_SEQ)
            return 0
        events = await fetch_after(conn, cursor, below, ENQUEUE_BATCH)
        if not events:
            return 0
        task_ids = list({r["task_id"] for r in events})
        tenants = list({r["tenant_id"] for r in events})
        callbacks = {r["task_id"]: r["callback_url"] for r in await conn.fetch(
            "SELECT task_id, callback_url FROM tasks WHERE task_id = ANY($1::uuid[]) "
            "AND callback_url IS NOT NULL", task_ids)}
        hooks: dict[str, list[asyncpg.Record]] = {}
        for hook in await conn.fetch(
                "SELECT webhook_id, tenant_id, url, created_at FROM webhooks "
                "WHERE tenant_id = ANY($1::text[]) AND deleted_at IS NULL", tenants):
            hooks.setdefault(hook["tenant_id"], []).append(hook)
        rows: list[tuple[object, ...]] = []
        for event in events:
            destinations: list[tuple[uuid.UUID | None, str]] = [
                (h["webhook_id"], h["url"]) for h in hooks.get(event["tenant_id"], [])
                if h["created_at"] <= event["occurred_at"]]
            if event["task_id"] in callbacks:
                destinations.append((None, callbacks[event["task_id"]]))
            for webhook_id, url in destinations:
                delivery_id = uuid.uuid4()
                rows.append((delivery_id, webhook_id, event["tenant_id"], event["task_id"],
                             event["seq"], url, delivery_body(delivery_id, webhook_id, event)))
        if rows:
            await conn.executemany(
                "INSERT INTO webhook_deliveries (delivery_id, webhook_id, tenant_id, task_id, "
                "seq, url, body) VALUES ($1, $2, $3, $4, $5, $6, $7)", rows)
        last = events[-1]
        await conn.execute("UPDATE webhook_feed_cursor SET txid = $1, task_id = $2, seq = $3",
                           last["txid"], last["task_id"], last["seq"])
        return len(events)


# -- delivery worker ---------------------------------------------------------------------

class Deliverer:
    """Claims due deliveries and POSTs each in a task of its own: a receiver that is slow to
    answer (up to SWITCHYARD_WEBHOOK_TIMEOUT_S) holds its own deliveries, not every other
    webhook's, nor the next round (an outside integrator's healthy receiver, another
    tenant's, got its events seconds late behind a slow one). At most
    :data:`DELIVERY_BATCH` are in flight."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self.pool = pool
        self.settings = settings
        self.in_flight: set[asyncio.Task[None]] = set()

    async def start_due(self, session: aiohttp.ClientSession) -> bool:
        """Claim what is due, as much as there is room in flight for, and start delivering
        it; whether it took all it had room for (more may be due: look again at once)."""
        room = DELIVERY_BATCH - len(self.in_flight)
        if room <= 0:
            return False
        rows = await self.claim(room)
        for row in rows:
            task = asyncio.create_task(self._deliver(session, row),
                                       name=f"webhook-delivery-{row['delivery_id']}")
            self.in_flight.add(task)
            task.add_done_callback(self.in_flight.discard)
        return len(rows) == room

    async def _deliver(self, session: aiohttp.ClientSession, row: asyncpg.Record) -> None:
        """One delivery, attempted and recorded; a failure to record it is logged (its lease
        runs out and it is claimed again), never lost in a task nobody awaits."""
        try:
            await self.record(row, await self.post(session, row))
        except TRANSIENT_ERRORS as exc:
            log.warning("webhook delivery %s not recorded, tried again after its lease: %r",
                        row["delivery_id"], exc)
        except Exception:
            log.exception("webhook delivery %s failed unexpectedly", row["delivery_id"])

    async def stop(self) -> None:
        """Cancel the deliveries in flight (their leases run out; they are sent again)."""
        for task in list(self.in_flight):
            task.cancel()
        await asyncio.gather(*self.in_flight, return_exceptions=True)

    async def claim(self, limit: int = DELIVERY_BATCH) -> Sequence[asyncpg.Record]:
        lease_s = self.settings.webhook_timeout_s * 2 + 5
        return await self.pool.fetch(
            """
            UPDATE webhook_deliveries d
               SET lease_until = now() + make_interval(secs => $1), attempts = d.attempts + 1
             WHERE d.delivery_id IN (
                   SELECT delivery_id FROM webhook_deliveries
                    WHERE state = 'pending' AND next_attempt_at <= now()
                      AND (lease_until IS NULL OR lease_until < now())
                    ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED)
            RETURNING d.delivery_id, d.webhook_id, d.url, d.body, d.attempts,
                      (SELECT secret FROM webhooks w WHERE w.webhook_id = d.webhook_id
                          AND w.deleted_at IS NULL) AS secret
            """,
            lease_s, limit,
        )

    async def post(self, session: aiohttp.ClientSession, row: asyncpg.Record) -> str | None:
        """POST one delivery; None on success, else what went wrong."""
        secret = row["secret"] if row["webhook_id"] else self.settings.webhook_signing_key
        if not secret:
            return "webhook deleted" if row["webhook_id"] else "no webhook signing key"
        # a target registered before the rules that refuse it now (or before the stack's
        # ports moved) is not called
        if (refused := url_problem(row["url"], self.settings)) is not None:
            return f"refused: {refused}"
        body = bytes(row["body"])
        headers = {"Content-Type": "application/json", "User-Agent": "switchyard-webhooks/1",
                   **signatures.headers(secret, str(row["delivery_id"]), body)}
        try:
            async with session.post(row["url"], data=body, headers=headers,
                                    allow_redirects=False) as response:
                if 200 <= response.status < 300:
                    return None
                return f"HTTP {response.status}"
        except asyncio.TimeoutError:  # (its text is empty) the receiver may still have it
            return (f"no answer within {self.settings.webhook_timeout_s:g} s "
                    f"(SWITCHYARD_WEBHOOK_TIMEOUT_S) from {row['url']}")[:500]
        except aiohttp.ClientConnectorDNSError as exc:
            if isinstance(exc.os_error, OwnServerRefused):
                return f"refused: {exc.os_error}"[:500]
            return f"{type(exc).__name__}: {exc}"[:500]
        except (aiohttp.ClientError, OSError) as exc:
            return f"{type(exc).__name__}: {exc}"[:500]

    async def record(self, row: asyncpg.Record, error: str | None) -> None:
        if error is None:
            DELIVERIES.labels("delivered").inc()
            await self.pool.execute(
                "UPDATE webhook_deliveries SET state = 'delivered', delivered_at = now(), "
                "lease_until = NULL, last_error = '' WHERE delivery_id = $1", row["delivery_id"])
            return
        permanent = (error in {"webhook deleted", "no webhook signing key"}
                     or error.startswith("refused: "))
        if permanent or row["attempts"] >= self.settings.webhook_max_attempts:
            DELIVERIES.labels("failed").inc()
            log.warning("webhook delivery %s failed for good after %d attempt(s): %s",
                        row["delivery_id"], row["attempts"], error)
            await self.pool.execute(
                "UPDATE webhook_deliveries SET state = 'failed', lease_until = NULL, "
                "last_error = $2 WHERE delivery_id = $1", row["delivery_id"], error)
            return
        DELIVERIES.labels("retry").inc()
        delay = backoff_s(row["attempts"], self.settings.webhook_backoff_s)
        await self.pool.execute(
            "UPDATE webhook_deliveries SET lease_until = NULL, last_error = $2, "
            "next_attempt_at = now() + make_interval(secs => $3) WHERE delivery_id = $1",
            row["delivery_id"], error, delay)



# -- operators: what was delivered, and delivering again ----------------------------------

DELIVERY_STATES = ("pending", "delivered", "failed")
MAX_REDELIVER_IDS = 500
#: At most this many failed deliveries are set pending by one ``failed_since`` call.
MAX_REDELIVER_SINCE = 1000
_DELIVERY_COLUMNS = ("delivery_id, webhook_id, tenant_id, task_id, seq, url, state, attempts, "
                     "last_error, created_at, delivered_at, next_attempt_at")


class DeliveryNotFound(Exception):
    """A named delivery does not exist for the tenant (another tenant's is absent too)."""


def parse_uuid(field: str, value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value.strip())
    except ValueError:
        raise FieldViolation(field, "must be an id (a UUID) as the listings return it") \
            from None


def state_filter(state: str) -> str:
    state = state.strip().lower()
    if state and state not in DELIVERY_STATES:
        raise FieldViolation("state", f"one of {', '.join(DELIVERY_STATES)} (or empty)")
    return state


async def list_webhooks(pool: asyncpg.Pool, tenant_id: str) -> list[asyncpg.Record]:
    """The tenant's registered webhooks, oldest first, with delivery counts by state."""
    return list(await pool.fetch(
        "SELECT w.webhook_id, w.tenant_id, w.url, w.created_at, "
        "count(d.delivery_id) FILTER (WHERE d.state = 'pending') AS pending, "
        "count(d.delivery_id) FILTER (WHERE d.state = 'delivered') AS delivered, "
        "count(d.delivery_id) FILTER (WHERE d.state = 'failed') AS failed "
        "FROM webhooks w LEFT JOIN webhook_deliveries d ON d.webhook_id = w.webhook_id "
        "WHERE w.tenant_id = $1 AND w.deleted_at IS NULL "
        "GROUP BY w.webhook_id ORDER BY w.created_at, w.webhook_id", tenant_id))


async def list_deliveries(pool: asyncpg.Pool, tenant_id: str, webhook_id: uuid.UUID | None,
                          state: str, since: datetime | None, page_size: int,
                          page_token: str) -> tuple[list[asyncpg.Record], str]:
    """One page of the tenant's deliveries, newest first, and the next page's token."""
    where, args = ["tenant_id = $1"], [tenant_id]

    def arg(value: object) -> str:
        args.append(value)
        return f"${len(args)}"

    if webhook_id is not None:
        where.append(f"webhook_id = {arg(webhook_id)}")
    if state:
        where.append(f"state = {arg(state)}")
    if since is not None:
        where.append(f"created_at >= {arg(since)}")
    if page_token:
        at, delivery_id = keyset.parse(page_token, "ListWebhookDeliveries")
        where.append(f"(created_at, delivery_id) < ({arg(at)}, {arg(delivery_id)})")
    rows = await pool.fetch(
        f"SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries WHERE {' AND '.join(where)} "
        f"ORDER BY created_at DESC, delivery_id DESC LIMIT {arg(page_size + 1)}", *args)
    if len(rows) > page_size:
        last = rows[page_size - 1]
        return list(rows[:page_size]), keyset.encode(last["created_at"], last["delivery_id"])
    return list(rows), ""


async def redeliver(pool: asyncpg.Pool, tenant_id: str, delivery_ids: Sequence[uuid.UUID],
                    failed_since: datetime | None, actor: str
                    ) -> tuple[list[asyncpg.Record], list[tuple[str, str]]]:
    """Set deliveries pending again (fresh attempt budget, due now): the named ones, or the
    tenant's failed ones created since ``failed_since``. Returns the rows set pending and
    the named ones skipped, with why; audited in the tenant's chain. A named delivery that
    is not the tenant's raises :class:`DeliveryNotFound` and changes nothing."""
    reset = ("UPDATE webhook_deliveries SET state = 'pending', attempts = 0, "
             "next_attempt_at = now(), lease_until = NULL, delivered_at = NULL "
             "WHERE delivery_id = ANY($1::uuid[]) RETURNING " + _DELIVERY_COLUMNS)
    skipped: list[tuple[str, str]] = []
    async with pool.acquire() as conn, conn.transaction():
        if failed_since is None:
            rows = await conn.fetch(
                "SELECT d.delivery_id, d.state, d.webhook_id, w.deleted_at "
                "FROM webhook_deliveries d LEFT JOIN webhooks w USING (webhook_id) "
                "WHERE d.delivery_id = ANY($1::uuid[]) AND d.tenant_id = $2 "
                "FOR UPDATE OF d", list(delivery_ids), tenant_id)
            found = {r["delivery_id"]: r for r in rows}
            missing = [str(i) for i in delivery_ids if i not in found]
            if missing:
                raise DeliveryNotFound(f"no webhook delivery {', '.join(missing)}")
            chosen = []
            for row in found.values():
                if row["state"] == "pending":
                    skipped.append((str(row["delivery_id"]), "still pending"))
                elif row["webhook_id"] is not None and row["deleted_at"] is not None:
                    skipped.append((str(row["delivery_id"]), "its webhook was deleted"))
                else:
                    chosen.append(row["delivery_id"])
        else:
            chosen = [r["delivery_id"] for r in await conn.fetch(
                "SELECT d.delivery_id FROM webhook_deliveries d "
                "LEFT JOIN webhooks w USING (webhook_id) "
                "WHERE d.tenant_id = $1 AND d.state = 'failed' AND d.created_at >= $2 "
                "AND (d.webhook_id IS NULL OR w.deleted_at IS NULL) "
                "ORDER BY d.created_at LIMIT $3 FOR UPDATE OF d SKIP LOCKED",
                tenant_id, failed_since, MAX_REDELIVER_SINCE)]
        redelivered = list(await conn.fetch(reset, chosen)) if chosen else []
        if redelivered:
            await audit_append(conn, tenant_id, actor, "webhooks.redelivered", {
                "delivery_ids": sorted(str(r["delivery_id"]) for r in redelivered),
                "failed_since": failed_since.isoformat() if failed_since else None},
                writer="ingest")
    return redelivered, skipped


async def run(pool: asyncpg.Pool, settings: Settings, poll_s: float) -> None:
    """Dispatcher and delivery worker in one loop: enqueue new events, deliver what is due."""
    deliverer = Deliverer(pool, settings)
    timeout = aiohttp.ClientTimeout(total=settings.webhook_timeout_s)
    connector = aiohttp.TCPConnector(resolver=OwnServersRefused(settings))
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        try:
            while True:
                busy = False
                try:
                    busy = await enqueue_once(pool) == ENQUEUE_BATCH
                    busy = await deliverer.start_due(session) or busy
                except TRANSIENT_ERRORS as exc:
                    log.warning("webhook round failed, retrying: %r", exc)
                if not busy:
                    await asyncio.sleep(poll_s)
        finally:
            await deliverer.stop()


__all__ = ["DELIVERY_HEADER", "DELIVERY_STATES", "MAX_REDELIVER_IDS", "MAX_REDELIVER_SINCE",
           "SIGNATURE_HEADER", "TIMESTAMP_HEADER", "Deliverer", "DeliveryNotFound",
           "backoff_s", "callback_problems", "delete", "enqueue_once", "list_deliveries",
           "list_webhooks", "parse_uuid", "redeliver", "register", "run", "state_filter",
           "url_problem"]
