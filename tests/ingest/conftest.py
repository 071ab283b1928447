"""Ingest integration fixtures: a real ``switchyard run ingest`` process per module, a gRPC
stub and a PostgreSQL connection on the module's schema.

Only ingest runs (no decision stage), so accepted tasks stay QUEUED and the tests can see
exactly what ingest did; the full pipeline is covered by tests/e2e.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from switchyard import Settings
from switchyard.rpc import create_channel
from switchyard.storage import connect
from switchyard.v1 import IngestServiceStub
from tests.ingest.helpers import IngestProcess


@pytest.fixture(scope="module")
def ingest_process(settings: Settings, tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[IngestProcess]:
    process = IngestProcess(settings, tmp_path_factory.mktemp("ingest")).start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
async def ingest(settings: Settings) -> AsyncIterator[IngestServiceStub]:
    channel = create_channel(f"127.0.0.1:{settings.ingest_grpc_port}")
    yield IngestServiceStub(channel)
    await channel.close()


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    conn = await connect(settings)
    yield conn
    await conn.close()
