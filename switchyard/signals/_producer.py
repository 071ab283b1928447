"""Writing simulated frames to the ``classroom-signals`` topic, keyed by classroom.

:class:`SignalProducer` sends without waiting for each acknowledgement (a bounded number of
records in flight, like a gateway in a school would), at a target rate, at the pace devices
keep (one frame per classroom-second, in real time) or as fast as the broker takes them.
Frames can be serialised ahead (:func:`prepare`), so a benchmark's load generator does not
spend its CPU building protobufs while the pipeline is being measured.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from switchyard._kafka import headers_to_kafka, producer_options
from switchyard._settings import Settings
from switchyard._topics import CLASSROOM_SIGNALS
from switchyard.signals._frames import count_signals, frame_record
from switchyard.signals._simulator import Emission


@dataclass(frozen=True)
class PreparedFrame:
    """A frame as the record it becomes: key, value and headers, and what it is worth."""

    tick: int
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]
    signals: int
    kind: str = "frame"


def prepare(emission: Emission, as_json: bool = False) -> PreparedFrame:
    """Serialise one emission (protobuf, or JSON with ``as_json``)."""
    value, headers = frame_record(emission.frame, as_json)
    return PreparedFrame(emission.tick, emission.key.encode(), value,
                         headers_to_kafka(headers), count_signals(emission.frame), emission.kind)


@dataclass
class ProduceReport:
    """What one :meth:`SignalProducer.produce` call sent, acknowledged by the broker."""

    frames: int = 0
    signals: int = 0
    bytes: int = 0
    duplicates: int = 0
    late: int = 0
    flood: int = 0
    errors: int = 0
    seconds: float = 0.0

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0

    @property
    def signals_per_s(self) -> float:
        return self.signals / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        """One line for a person: both units, so nobody mistakes one for the other."""
        extra = ", ".join(f"{n} {k}" for k, n in (("duplicate", self.duplicates),
                                                   ("late", self.late),
                                                   ("flooding", self.flood)) if n)
        return (f"sent {self.frames} frames ({self.signals} signals, {self.bytes / 1e6:.1f} MB)"
                f"{f' incl. {extra}' if extra else ''} in {self.seconds:.1f}s: "
                f"{self.frames_per_s:.0f} frames/s, {self.signals_per_s:.0f} signals/s"
                + (f"; {self.errors} not acknowledged" if self.errors else ""))


class SignalProducer:
    """An aiokafka producer for the classroom-signals topic (``async with`` starts it)."""

    def __init__(self, settings: Settings, max_in_flight: int = 5000) -> None:
        from aiokafka import AIOKafkaProducer

        self.topic = CLASSROOM_SIGNALS.full_name(settings)
        self.max_in_flight = max_in_flight
        self._producer = AIOKafkaProducer(**producer_options(settings))

    async def __aenter__(self) -> SignalProducer:
        await self._producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._producer.stop()

    async def produce(self, frames: Iterable[Emission | PreparedFrame], *,
                      rate: float | None = None, realtime: bool = False,
                      as_json: bool = False,
                      on_acked: Callable[[PreparedFrame, Any], None] | None = None
                      ) -> ProduceReport:
        """Send ``frames`` in order and wait until the broker acknowledged every one.

        ``rate``: frames per second overall; ``realtime``: each frame at its ``tick`` (one
        second of class per second); neither: as fast as the broker takes them.
        ``on_acked(frame, metadata)`` sees each acknowledged record (partition, offset).
        """
        report = ProduceReport()
        in_flight: collections.deque[tuple[PreparedFrame, asyncio.Future[Any]]] = \
            collections.deque()

        async def settle(item: PreparedFrame, future: asyncio.Future[Any]) -> None:
            try:
                metadata = await future
            except Exception:   # the broker refused it, or gave up after its retries
                report.errors += 1
                return
            report.frames += 1
            report.signals += item.signals
            report.bytes += len(item.value)
            report.duplicates += item.kind == "duplicate"
            report.late += item.kind == "late"
            report.flood += item.kind == "flood"
            if on_acked is not None:
                on_acked(item, metadata)

        began = time.perf_counter()
        for index, frame in enumerate(frames):
            item = frame if isinstance(frame, PreparedFrame) else prepare(frame, as_json)
            due = began + (item.tick if realtime else index / rate if rate else 0.0)
            if (delay := due - time.perf_counter()) > 0.002:
                await asyncio.sleep(delay)
            future = await self._producer.send(self.topic, value=item.value, key=item.key,
                                               headers=item.headers)
            in_flight.append((item, future))
            if index % 200 == 199:   # let the loop's other work (a consumer, a timer) run
                await asyncio.sleep(0)
            while len(in_flight) > self.max_in_flight or (in_flight and in_flight[0][1].done()):
                await settle(*in_flight.popleft())
        while in_flight:
            await settle(*in_flight.popleft())
        report.seconds = time.perf_counter() - began
        return report
