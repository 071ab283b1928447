"""The ``classroom-signals`` batch handler: parse, admit, produce; refused frames back to the
middleware for the dead-letter queue.

One call per batch (``ctx.consume_batches``), never a database transaction per frame: the
consent view is in memory, term keys are cached after their first read, and the admitted
frames of a batch are all handed to the producer before any acknowledgement is awaited (then
all of them are, before the batch returns and its offsets are committed).
"""

from __future__ import annotations

import asyncio
from collections import Counter as Tally
from collections.abc import Callable
from datetime import UTC, datetime

from prometheus_client import Counter

from services.ingest.signals.admit import admit
from services.ingest.signals.consent import ConsentView
from services.ingest.signals.frames import parse_frame
from services.ingest.signals.pseudonyms import TermKeys, pseudonymiser, term_of
from switchyard.messaging import SIGNALS_ADMITTED, TENANT_HEADER, Producer, Record, RejectRecord
from switchyard.v1 import SignalFrame

__all__ = ["FRAMES", "SIGNALS", "SignalProcessor"]

SIGNALS = Counter(
    "switchyard_signals_total",
    "Classroom signals (seat observations, check-ins, audio levels) ingest read from valid "
    "frames, by outcome: admitted, or dropped_no_consent (counted, never kept).",
    ["outcome"])
FRAMES = Counter(
    "switchyard_signals_frames_total",
    "Classroom signal frames ingest read, by outcome: admitted, or dead_lettered (invalid).",
    ["outcome"])


class SignalProcessor:
    """The batch handler behind ``classroom-signals``."""

    def __init__(self, producer: Producer, consents: ConsentView, keys: TermKeys,
                 term_starts: tuple[tuple[int, int], ...], max_future_s: float,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.producer = producer
        self.consents = consents
        self.keys = keys
        self.term_starts = term_starts
        self.max_future_s = max_future_s
        self.clock = clock

    async def handle(self, records: list[Record]) -> list[tuple[Record, RejectRecord]]:
        now = self.clock()
        rejected: list[tuple[Record, RejectRecord]] = []
        frames: list[tuple[SignalFrame, str]] = []
        for record in records:
            try:
                frame = parse_frame(record, now, self.max_future_s)
            except RejectRecord as exc:
                rejected.append((record, exc))
                continue
            frames.append((frame, term_of(frame.observed_at.ToDatetime(tzinfo=UTC),
                                          self.term_starts)))
        FRAMES.labels("dead_lettered").inc(len(rejected))
        if not frames:
            return rejected
        await self.consents.wait_fresh()
        keyed = {}
        for tenant, term in {(frame.tenant_id, term) for frame, term in frames}:
            keyed[(tenant, term)] = pseudonymiser(await self.keys.get(tenant, term), tenant)
        pending = []
        tally: Tally[str] = Tally()
        for frame, term in frames:
            admission = admit(frame, self.consents, keyed[(frame.tenant_id, term)], term)
            tally["admitted"] += admission.admitted
            tally["dropped_no_consent"] += admission.dropped_no_consent
            pending.append(await self.producer.send_nowait(
                SIGNALS_ADMITTED, frame.classroom_id, admission.frame,
                {TENANT_HEADER: frame.tenant_id}))
        await asyncio.gather(*pending)
        FRAMES.labels("admitted").inc(len(frames))
        for outcome in ("admitted", "dropped_no_consent"):
            SIGNALS.labels(outcome).inc(tally[outcome])
        return rejected
