"""The faust app factory: the consumer's fetch wait comes from the settings (faust fixes it at
1500 ms, which Tansu turns into a wait on every hop), and the partitions a process holds are
exported on every rebalance (Tansu's DescribeGroups does not say)."""

from __future__ import annotations

import asyncio

from faust.types import TP
from prometheus_client import REGISTRY

from switchyard import Settings
from switchyard.messaging import create_app


def test_consumer_fetch_wait_comes_from_the_settings_and_it_reads_committed_records() -> None:
    """Committed only: an upstream producer's aborted transaction must never become work
    (faust reads uncommitted unless it writes transactions itself). The embedded broker does
    not filter aborted records, so this is checked on the consumer Kafka would serve."""
    async def build() -> tuple[int, str]:
        app = create_app(Settings(kafka_fetch_max_wait_ms=33), "unit-fetch")
        consumer = app.consumer._thread._create_worker_consumer(app.transport)
        try:
            return consumer._fetch_max_wait_ms, consumer._isolation_level
        finally:
            await consumer.stop()  # never started: just releases the client object

    assert asyncio.run(build()) == (33, "read_committed")


def held(service: str, topic: str) -> list[str]:
    return sorted(
        sample.labels["partition"]
        for metric in REGISTRY.collect() if metric.name == "switchyard_consumer_assigned_partitions"
        for sample in metric.samples
        if sample.labels["service"] == service and sample.labels["topic"] == topic
        and sample.value == 1)


def test_assigned_partitions_follow_each_rebalance() -> None:
    async def rebalance() -> tuple[list[str], list[str]]:
        app = create_app(Settings(), "unit-assign")
        await app.on_partitions_assigned.send({TP("x.tasks", 0), TP("x.tasks", 2)})
        first = held("unit-assign", "x.tasks")
        await app.on_partitions_assigned.send({TP("x.tasks", 1)})
        return first, held("unit-assign", "x.tasks")

    first, second = asyncio.run(rebalance())
    assert first == ["0", "2"]
    assert second == ["1"]
