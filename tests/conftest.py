"""Session fixtures: the real broker, PostgreSQL and Triton, started once; isolation per test.

The embedded stack runs for the whole session on free ports. Each test that asks for
``settings`` gets its own topic prefix (so its own topics and consumer groups) and its own
PostgreSQL schema with migrations applied; ``pipeline`` starts the four services as real
processes against those settings and stops them afterwards.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from switchyard import Settings
from switchyard.rpc import create_channel
from switchyard.runtime import bootstrap, service_specs
from switchyard.stack import EmbeddedStack, free_port, with_free_ports
from switchyard.storage import connect
from switchyard.v1 import IngestServiceStub, ReviewServiceStub

ROOT = Path(__file__).resolve().parents[1]
MODEL_REPOSITORY = ROOT / "models" / "repository"
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    """Kafka (Tansu), PostgreSQL 16 and Triton on the project's model repository."""
    state_dir = tmp_path_factory.mktemp("stack")
    settings = with_free_ports(Settings(model_repository=MODEL_REPOSITORY, state_dir=state_dir))
    with EmbeddedStack(settings, state_dir, postgres_port=free_port(),
                       model_repository=MODEL_REPOSITORY) as embedded:
        yield embedded


def _isolated(base: Settings, name: str) -> Settings:
    slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")[:24]
    uid = uuid.uuid4().hex[:6]
    return base.replace(
        kafka_topic_prefix=f"{slug}-{uid}.",
        postgres_schema=f"t_{slug}_{uid}",
        kafka_partitions=4,
        ingest_grpc_port=free_port(),
        decision_grpc_port=free_port(),
        executor_grpc_port=free_port(),
        review_grpc_port=free_port(),
        review_web_port=free_port(),
        ingest_rest_port=free_port(),
        ingest_metrics_port=free_port(),
        decision_metrics_port=free_port(),
        executor_metrics_port=free_port(),
        review_metrics_port=free_port(),
        downstream_http_port=free_port(),
        downstream_grpc_port=free_port(),
        log_level="INFO",
        # The broker holds a consumer group's join for half the session timeout, so every
        # service start (and every takeover after a killed consumer) waits for it: 2 s here
        # instead of the production default's 4 s. Heartbeats still go every 0.67 s.
        kafka_session_timeout_ms=4000,
    )


@pytest.fixture(scope="module")
def settings(stack: EmbeddedStack, request: pytest.FixtureRequest) -> Settings:
    """Settings for one test module: its own topics and schema, created and migrated."""
    isolated = _isolated(stack.settings, request.module.__name__.rsplit(".", 1)[-1])
    asyncio.run(bootstrap(isolated))
    return isolated


@pytest.fixture(scope="module")
def pipeline(settings: Settings, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[EmbeddedStack]:
    """The four services as separate processes, ready (gRPC health SERVING)."""
    services = EmbeddedStack(settings, tmp_path_factory.mktemp("services"), components=(),
                             services=service_specs(settings))
    services.start(timeout_s=60)
    try:
        yield services
    finally:
        services.stop()


# -- clients of the running services (e2e and ingest tests; a module may define its own) ----


@pytest.fixture
async def ingest(settings: Settings) -> AsyncIterator[IngestServiceStub]:
    """An IngestService stub without an API key (the test stacks run with auth off)."""
    channel = create_channel(f"127.0.0.1:{settings.ingest_grpc_port}")
    yield IngestServiceStub(channel)
    await channel.close()


@pytest.fixture
async def review(settings: Settings) -> AsyncIterator[ReviewServiceStub]:
    """A ReviewService stub without an API key."""
    channel = create_channel(f"127.0.0.1:{settings.review_grpc_port}")
    yield ReviewServiceStub(channel)
    await channel.close()


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    """A PostgreSQL connection on the module's schema, for what the services stored."""
    conn = await connect(settings)
    yield conn
    await conn.close()
