"""Run the demo downstream: HTTP on ``downstream_http_port``, gRPC (with health) on
``downstream_grpc_port``, both on ``bind_host``, and the ERP's producer to the
``purchase-orders`` topic (on the settings' broker; it connects in the background, so the
downstream serves without a broker and only the ERP's writes wait for one); stops cleanly on
SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal

import asyncpg
from aiohttp import web

from services.executor.downstream.faults import FaultBoard
from services.executor.downstream.grpc_app import start_grpc
from services.executor.downstream.http_app import build_app
from services.executor.downstream.purchasing import OrderPublisher
from services.executor.downstream.store import Ledger, schema_for
from switchyard import Settings
from switchyard.storage import resolve_dsn
from switchyard.telemetry import configure_logging

log = logging.getLogger(__name__)


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> None:
    configure_logging(settings, "downstream")
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    schema = schema_for(settings.postgres_schema, settings.downstream_schema)
    dsn = resolve_dsn(settings)
    conn = await asyncpg.connect(dsn)
    try:
        await Ledger.create_schema(conn, schema)
    finally:
        await conn.close()
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=settings.postgres_pool_max,
                                     server_settings={"search_path": schema,
                                                      "application_name": "downstream"})
    assert pool is not None
    ledger, faults = Ledger(pool), FaultBoard()
    publisher = OrderPublisher(settings)
    runner = web.AppRunner(build_app(ledger, faults, publisher), access_log=None)
    await runner.setup()
    grpc_server = None
    try:
        await publisher.start()
        await web.TCPSite(runner, settings.bind_host, settings.downstream_http_port).start()
        grpc_server = await start_grpc(ledger, faults, settings.bind_host,
                                       settings.downstream_grpc_port)
        log.info("downstream ready: http://%s:%d, grpc %s:%d, schema %s", settings.bind_host,
                 settings.downstream_http_port, settings.bind_host,
                 settings.downstream_grpc_port, schema)
        await stop.wait()
        log.info("downstream stopping")
    finally:
        if grpc_server is not None:
            await grpc_server.stop(2.0)
        await runner.cleanup()
        await publisher.stop()
        await pool.close()
        log.info("downstream stopped")
