"""Helpers for the ingest integration tests: the ingest process, submissions, waits, topic
reads. (Fixtures live in conftest.py.)"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer

from services.ingest.publisher import Publisher
from switchyard import Settings
from switchyard.messaging import Producer, Topic
from switchyard.storage import create_pool
from switchyard.stack import ManagedProcess, grpc_serving, wait_until
from switchyard.v1 import Document, Submission


class IngestProcess:
    """``switchyard run ingest`` as a child process with the given settings."""

    def __init__(self, settings: Settings, state_dir: Path) -> None:
        self.settings = settings
        self.process = ManagedProcess(
            "ingest", [sys.executable, "-m", "switchyard", "run", "ingest"],
            state_dir=state_dir, env={**os.environ, **settings.to_env()},
        )

    def start(self, timeout_s: float = 120) -> IngestProcess:
        self.process.start()

        def exited() -> str | None:
            code = self.process.returncode
            return None if code is None else \
                f"ingest exited with {code}:\n{self.process.log_tail()}"

        if not wait_until(lambda: grpc_serving(self.settings.ingest_grpc_port), timeout_s,
                          interval_s=0.2, abort=exited):
            self.stop()
            raise AssertionError(f"ingest not SERVING:\n{self.process.log_tail()}")
        return self

    def stop(self) -> None:
        self.process.stop(20.0)

    def log(self) -> str:
        return self.process.log_path.read_text(errors="replace")


def submission(tenant: str = "acme", key: str | None = None, body: str = "Invoice 42, "
               "amount due $10", kind: str = "invoice", **fields: Any) -> Submission:
    return Submission(tenant_id=tenant, idempotency_key=key or uuid.uuid4().hex, kind=kind,
                      document=Document(content_type="text/plain", body=body.encode()),
                      **fields)


async def read_topic(settings: Settings, topic: Topic, done: Callable[[list[Any]], bool],
                     timeout_s: float = 90) -> list[Any]:
    """Every record of ``topic`` from the beginning until ``done(records)`` says enough."""
    consumer = AIOKafkaConsumer(topic.full_name(settings),
                                bootstrap_servers=settings.kafka_bootstrap_servers,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                group_id=None)
    await consumer.start()
    records: list[Any] = []
    try:
        deadline = time.monotonic() + timeout_s
        while not done(records):
            if time.monotonic() > deadline:
                raise AssertionError(f"{topic.name}: only {len(records)} record(s) after "
                                     f"{timeout_s:.0f}s")
            batch = await consumer.getmany(timeout_ms=500)
            for partition_records in batch.values():
                records.extend(partition_records)
        return records
    finally:
        await consumer.stop()


@asynccontextmanager
async def running_publisher(settings: Settings) -> AsyncIterator[Publisher]:
    """Ingest's publisher in this process, on ``settings``' PostgreSQL and broker."""
    pool = await create_pool(settings)
    producer = Producer(settings)
    await producer.start()
    try:
        yield Publisher(settings, pool, producer)
    finally:
        await producer.stop()
        await pool.close()
