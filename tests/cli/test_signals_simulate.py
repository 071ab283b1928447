"""`switchyard signals simulate` against the real broker: every simulated frame lands on
classroom-signals, keyed by its classroom, as protobuf or JSON, exactly as the simulator made
it; the offline forms (--stdout, bad arguments) need no broker."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import pytest
from aiokafka import AIOKafkaConsumer

from switchyard import Settings
from switchyard.messaging import CLASSROOM_SIGNALS, decode
from switchyard.signals import frame_from_json
from switchyard.v1 import SignalFrame
from tests.cli.helpers import switchyard


async def read_all(settings: Settings, expected: int, timeout_s: float = 60
                   ) -> list[tuple[bytes, bytes, dict[str, bytes]]]:
    consumer = AIOKafkaConsumer(CLASSROOM_SIGNALS.full_name(settings),
                                bootstrap_servers=settings.kafka_bootstrap_servers,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    records = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while len(records) < expected and loop.time() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for batch in batches.values():
                records += [(r.key, r.value, dict(r.headers)) for r in batch]
    finally:
        await consumer.stop()
    return records


@pytest.mark.integration
def test_simulated_frames_land_on_the_topic_keyed_by_classroom(settings: Settings) -> None:
    args = ("signals", "simulate", "--classrooms", "3", "--seats", "8", "--seconds", "20",
            "--seed", "3", "--duplicates", "0.1", "--tenant", "school-x")
    sent = switchyard(settings, *args, "--rate", "0")
    assert sent.returncode == 0, sent.stderr
    printed = switchyard(None, *args, "--stdout")
    assert printed.returncode == 0, printed.stderr
    expected = [frame_from_json(line) for line in printed.stdout.splitlines()]
    assert len(expected) > 60   # 3 x 20 frames and the duplicates
    frames_line = f"sent {len(expected)} frames"
    assert sent.stdout.startswith(frames_line) and "signals/s" in sent.stdout

    records = asyncio.run(read_all(settings, len(expected)))
    assert len(records) == len(expected)
    frames = [decode(value, {k: v.decode() for k, v in headers.items()}, SignalFrame)
              for _, value, headers in records]
    assert all(key == f.classroom_id.encode() for (key, _, _), f in zip(records, frames))
    assert all(headers["x-tenant-id"] == b"school-x" for _, _, headers in records)
    # per classroom (one partition each), the frames arrive in the order they were made; the
    # device clock differs (the broker run used "now" minus the simulated seconds)
    def strip(frame: SignalFrame) -> bytes:
        copy = SignalFrame()
        copy.CopyFrom(frame)
        copy.ClearField("observed_at")
        copy.ClearField("session_id")
        return copy.SerializeToString()

    for room in ("room-001", "room-002", "room-003"):
        assert [strip(f) for f in frames if f.classroom_id == room] == \
            [strip(f) for f in expected if f.classroom_id == room]
    assert Counter(f.classroom_id for f in frames) == Counter(f.classroom_id for f in expected)

    as_json = switchyard(settings, "signals", "simulate", "--classrooms", "1", "--seats", "4",
                         "--seconds", "3", "--json", "--rate", "100")
    assert as_json.returncode == 0, as_json.stderr
    records = asyncio.run(read_all(settings, len(expected) + 3))
    json_records = [r for r in records if r[2].get("content-type") == b"application/json"]
    assert len(json_records) == 3
    for key, value, headers in json_records:
        assert key == b"room-001"
        body = json.loads(value)
        assert body["classroom_id"] == "room-001" and len(body["seats"]) == 4


def test_offline_forms_need_no_broker() -> None:
    out = switchyard(None, "signals", "simulate", "--classrooms", "2", "--seats", "5",
                     "--seconds", "4", "--stdout", "--late", "0.5")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 8 and "8 frames" in out.stderr
    assert {json.loads(line)["classroom_id"] for line in lines} == {"room-001", "room-002"}
    bad = switchyard(None, "signals", "simulate", "--seats", "600", "--stdout")
    assert bad.returncode == 2 and "at most 500 seats" in bad.stderr
    share = switchyard(None, "signals", "simulate", "--duplicates", "2")
    assert share.returncode == 2 and "between 0 and 1" in share.stderr
