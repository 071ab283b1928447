"""A service whose event loop is busy still reads its topic in bulk
(switchyard/_faust_transport.py).

faust's own fetch loop hands each record to the streams through a ``wait_first`` of four
tasks, several turns of the event loop per record; a loop busy deciding then read about one
record per turn and the fair dispatcher had nothing to choose from. Here a coroutine that
keeps the loop busy (2 ms of work a turn) counts the turns while the app's consumer reads
records already waiting in the topic: they must arrive in far fewer turns than records.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from switchyard import Settings
from switchyard.messaging import TASKS, Producer, create_app

pytestmark = pytest.mark.integration
RECORDS = 1200


async def test_a_busy_loop_reads_records_in_bulk(settings: Settings) -> None:
    producer = Producer(settings)
    await producer.start()
    try:
        await asyncio.gather(*(producer.send_raw(TASKS.full_name(settings), f"k{n}".encode(),
                                                 b"x", {}) for n in range(RECORDS)))
    finally:
        await producer.stop()

    app = create_app(settings, "read-ahead-test")
    topic = app.topic(TASKS.full_name(settings), key_type=bytes, value_type=bytes,
                      key_serializer="raw", value_serializer="raw")
    turns = 0
    arrived_at: list[int] = []  # the busy coroutine's turn count as each record arrived
    all_in = asyncio.Event()

    async def agent(stream: object) -> None:
        queue = stream.channel.queue  # type: ignore[attr-defined]
        while True:
            event = await queue.get()
            event.ack()
            arrived_at.append(turns)
            if len(arrived_at) == RECORDS:
                all_in.set()

    async def busy() -> None:
        nonlocal turns
        while True:
            time.sleep(0.002)  # a step of CPU work, as a deciding service does between awaits
            turns += 1
            await asyncio.sleep(0)

    app.agent(topic, name="read_ahead_probe")(agent)
    await app.start()
    spinner = asyncio.create_task(busy())
    try:
        await asyncio.wait_for(all_in.wait(), timeout=120)
    finally:
        spinner.cancel()
        await app.stop()
    spent = arrived_at[-1] - arrived_at[0]
    # one record per turn or worse before; a fetch's hundreds in a turn or two now
    assert spent < RECORDS / 10, f"{RECORDS} records took {spent} busy turns"
