"""A renewed certificate is served without a restart (cert-manager renews a Secret's files in
place; an outside platform engineer found the services read them once at start, so every pod
would fail its probes when the old certificate expired).

A gRPC server and an HTTPS server with the services' TLS (:class:`switchyard.rpc.ServerTls`)
serve a certificate of one CA; its files are then replaced by one of another CA, as a renewal
that also rotates the CA: a client trusting only the new CA is refused before and served
after, on a new connection, with no restart. The HTTPS client connects by IP address, so it
sends no server name (the renewal check must not depend on SNI).
"""

from __future__ import annotations

import shutil
import ssl
from pathlib import Path

import aiohttp
import grpc
import grpc_health.v1.health as grpc_health
import pytest
from aiohttp import web
from grpc_health.v1 import health_pb2_grpc

from switchyard.rpc import ServerTls
from switchyard.stack import free_port
from tests.security.certs import Pki, make_pki
from tests.security.test_tls_services import health


def renew(files: Pki, renewed: Pki) -> None:
    """The server's certificate and key replaced by ``renewed``'s, as a Secret volume does."""
    for source, target in ((renewed.server_cert, files.server_cert),
                           (renewed.server_key, files.server_key)):
        shutil.copyfile(source, target.with_suffix(".new"))
        target.with_suffix(".new").replace(target)


async def grpc_status(port: int, ca: Path) -> str:
    return await health(f"localhost:{port}", ca_file=str(ca))


async def grpc_server(tls: ServerTls) -> tuple[grpc.aio.Server, int]:
    """A started gRPC server (the health service) with the services' TLS, and its port."""
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(grpc_health.aio.HealthServicer(), server)
    port = free_port()
    assert server.add_secure_port(f"127.0.0.1:{port}", tls.grpc_credentials())
    await server.start()
    return server, port


async def https_status(port: int, ca: Path) -> str:
    client = ssl.create_default_context(cafile=str(ca))
    client.check_hostname = False   # by IP: no server name sent; the CA decides
    try:
        async with aiohttp.ClientSession() as http, http.get(
                f"https://127.0.0.1:{port}/", ssl=client) as response:
            return str(response.status)
    except aiohttp.ClientConnectorCertificateError:
        return "untrusted"


async def test_a_renewed_certificate_is_served_without_a_restart(tmp_path: Path) -> None:
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    old, new = make_pki(tmp_path / "old"), make_pki(tmp_path / "new")
    tls = ServerTls(str(old.server_cert), str(old.server_key))
    server, grpc_port = await grpc_server(tls)
    app = web.Application()
    async def ok(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app.router.add_get("/", ok)
    runner = web.AppRunner(app)
    await runner.setup()
    https_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", https_port, ssl_context=tls.ssl_context()).start()
    try:
        assert await grpc_status(grpc_port, old.ca) == "SERVING"
        assert await grpc_status(grpc_port, new.ca) == "UNAVAILABLE"
        assert await https_status(https_port, old.ca) == "200"
        assert await https_status(https_port, new.ca) == "untrusted"

        renew(old, new)

        assert await grpc_status(grpc_port, new.ca) == "SERVING"
        assert await grpc_status(grpc_port, old.ca) == "UNAVAILABLE"
        assert await https_status(https_port, new.ca) == "200"
        assert await https_status(https_port, old.ca) == "untrusted"
    finally:
        await runner.cleanup()
        await server.stop(None)


@pytest.mark.parametrize("broken", ["half-written", "missing"])
async def test_a_renewal_caught_half_written_keeps_the_served_certificate(
        tmp_path: Path, broken: str) -> None:
    pki = make_pki(tmp_path)
    server, port = await grpc_server(ServerTls(str(pki.server_cert), str(pki.server_key)))
    try:
        if broken == "missing":
            pki.server_key.unlink()
        else:
            pki.server_key.write_text("-----BEGIN PRIVATE KEY-----\nMII")
        assert await grpc_status(port, pki.ca) == "SERVING"
    finally:
        await server.stop(None)
