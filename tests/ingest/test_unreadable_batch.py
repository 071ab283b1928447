"""A record batch the intake consumer cannot read stops the process loudly, never silently.

faust crashes its fetcher on a fetch it cannot decode and carries on otherwise: before the
stream watch, ingest kept answering gRPC (SERVING, every loop up) while its intake was read
no more. Here a batch that says gzip over records that are not gzip (a corrupted batch: the
embedded broker refuses a codec number that does not exist, but stores this one without
decompressing it) is written straight to the broker with a valid CRC; the real ingest
process must report the stopped consumer and exit non-zero for its supervisor (Kubernetes,
``switchyard up``) to restart it.
"""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.produce import ProduceRequest
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.util import calc_crc32c
from aiokafka.structs import TopicPartition

from switchyard import Settings
from switchyard.messaging import INTAKE
from switchyard.runtime import EXIT_BACKGROUND_FAILED
from switchyard.stack import wait_until
from tests.ingest.helpers import IngestProcess

pytestmark = pytest.mark.integration

#: attributes' codec bits (the low three): 0-4 are none, gzip, snappy, lz4 and zstd
GZIP = 1
#: where a v2 batch's attributes start, and its CRC (over the attributes onwards)
ATTRIBUTES_OFFSET, CRC_OFFSET = 21, 17


def unreadable_batch() -> bytes:
    """One uncompressed record in a v2 batch flagged gzip, CRC recomputed."""
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=0,
                                        producer_id=-1, producer_epoch=-1, base_sequence=-1,
                                        batch_size=1 << 16)
    builder.append(0, timestamp=None, key=b"poison", value=b'{"tenant_id": "acme"}',
                   headers=[])
    batch = builder.build()
    batch[ATTRIBUTES_OFFSET + 1] |= GZIP  # attributes are big-endian int16
    crc = calc_crc32c(memoryview(batch)[ATTRIBUTES_OFFSET:])
    batch[CRC_OFFSET:CRC_OFFSET + 4] = crc.to_bytes(4, "big")
    return bytes(batch)


async def produce_raw(settings: Settings, topic: str, batch: bytes) -> None:
    client = AIOKafkaClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await client.bootstrap()
    try:
        await client._wait_on_metadata(topic)
        leader = client.cluster.leader_for_partition(TopicPartition(topic, 0))
        response = await client.send(leader, ProduceRequest(
            transactional_id=None, required_acks=-1, timeout=30_000,
            topics=[(topic, [(0, batch)])]))
        errors = [error for _, partitions in response.topics for _, error, *_ in partitions]
        assert errors == [0], f"the broker refused the batch: {errors}"
    finally:
        await client.close()


async def test_an_unreadable_batch_stops_ingest_loudly(
        settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> None:
    ingest = IngestProcess(settings, tmp_path_factory.mktemp("ingest")).start()
    try:
        await produce_raw(settings, INTAKE.full_name(settings), unreadable_batch())
        exited = await asyncio.to_thread(
            wait_until, lambda: ingest.process.returncode is not None, 60, interval_s=0.5)
        log = ingest.log()
        assert exited, f"ingest went on as if it read its intake:\n{log[-3000:]}"
        assert ingest.process.returncode == EXIT_BACKGROUND_FAILED, log[-3000:]
        assert "the stream consumer stopped reading" in log and "codec" in log, log[-3000:]
    finally:
        ingest.stop()

