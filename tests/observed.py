"""What the services let a test observe from outside: the metrics they expose and the records
they dead-letter."""

from __future__ import annotations

import time
import urllib.request

from aiokafka import AIOKafkaConsumer

from switchyard import Settings
from switchyard.messaging import DEAD_LETTER
from switchyard.v1 import DeadLetter


def metric_sum(port: int, name: str, label: str = "") -> float:
    """The sum of the series of ``name`` (those whose labels hold ``label``) that a service's
    metrics endpoint shows; 0 while none exists yet."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") and label in line)


async def dead_letters(settings: Settings, keys: set[bytes], timeout_s: float = 60
                       ) -> dict[bytes, DeadLetter]:
    """The dead letters of the records with these keys, read from the dead-letter topic (as
    many as arrived within ``timeout_s``)."""
    consumer = AIOKafkaConsumer(DEAD_LETTER.full_name(settings),
                                bootstrap_servers=settings.kafka_bootstrap_servers,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    found: dict[bytes, DeadLetter] = {}
    try:
        deadline = time.monotonic() + timeout_s
        while keys - found.keys() and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    letter = DeadLetter.FromString(record.value)
                    if letter.original_key in keys:
                        found[letter.original_key] = letter
    finally:
        await consumer.stop()
    return found


__all__ = ["dead_letters", "metric_sum"]
