"""Clients of the running services that the end-to-end tests share: the ingest and review
stubs (no API key: the stack's auth is off) and a PostgreSQL connection for what the services
stored. A test file that needs another kind (a key, a pool, a module-wide connection) defines
its own fixture of the same name."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from switchyard import Settings
from switchyard.rpc import create_channel
from switchyard.storage import connect
from switchyard.v1 import IngestServiceStub, ReviewServiceStub


@pytest.fixture
async def ingest(settings: Settings) -> AsyncIterator[IngestServiceStub]:
    channel = create_channel(f"127.0.0.1:{settings.ingest_grpc_port}")
    yield IngestServiceStub(channel)
    await channel.close()


@pytest.fixture
async def review(settings: Settings) -> AsyncIterator[ReviewServiceStub]:
    channel = create_channel(f"127.0.0.1:{settings.review_grpc_port}")
    yield ReviewServiceStub(channel)
    await channel.close()


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    conn = await connect(settings)
    yield conn
    await conn.close()
