"""The batch agent's middleware (``ctx.consume_batches``): refused records are dead-lettered
with their reason and bytes, transient trouble retries the whole batch, and a batch that
raises is split in halves until the one poison record is isolated, dead-lettered as
``processing_failed``, while every other record of the batch is still processed."""

from __future__ import annotations

import asyncio

import asyncpg

from switchyard.messaging import MAX_HANDLER_ATTEMPTS, Record, RejectRecord, process_record_batch


def records(n: int) -> list[Record]:
    return [Record(topic="classroom-signals", partition=0, offset=i, key=b"room",
                   value=f"frame {i}".encode(), headers={}, timestamp=0.0) for i in range(n)]


class Letters:
    """Collects what the middleware dead-letters (the sink's interface, no broker)."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, str, str, bytes | None]] = []

    async def send(self, record: Record, code: str, reason: str,
                   tenant_id: str | None = None) -> None:
        self.sent.append((record.offset, code, reason, record.value))


async def no_wait(_: float) -> None:
    return None


def run(batch: list[Record], handler, letters: Letters) -> None:
    asyncio.run(process_record_batch(batch, handler, letters, "test", sleep=no_wait))


def test_refused_records_are_dead_lettered_with_reason_and_bytes() -> None:
    processed: list[int] = []

    async def handler(batch: list[Record]) -> list[tuple[Record, RejectRecord]]:
        processed.extend(r.offset for r in batch)
        return [(r, RejectRecord("missing_field", "session_id: required"))
                for r in batch if r.offset % 3 == 0]

    letters = Letters()
    run(records(7), handler, letters)
    assert processed == list(range(7))  # one call for the whole batch
    assert letters.sent == [(i, "missing_field", "session_id: required", f"frame {i}".encode())
                            for i in (0, 3, 6)]


def test_one_poison_record_is_isolated_and_the_rest_processed() -> None:
    calls: list[list[int]] = []
    done: list[int] = []

    async def handler(batch: list[Record]) -> list[tuple[Record, RejectRecord]]:
        offsets = [r.offset for r in batch]
        calls.append(offsets)
        if 5 in offsets:
            raise ZeroDivisionError("a bug this record triggers")
        done.extend(offsets)
        return []

    letters = Letters()
    run(records(16), handler, letters)
    assert sorted(done) == [i for i in range(16) if i != 5]
    assert letters.sent == [(5, "processing_failed", letters.sent[0][2], b"frame 5")]
    assert "ZeroDivisionError" in letters.sent[0][2]
    # halves, not one call per record: 16 -> 8 -> 4 -> 2 -> 1, the others whole
    assert [0, 1, 2, 3, 4, 5, 6, 7] in calls and [8, 9, 10, 11, 12, 13, 14, 15] in calls
    assert [4, 5] in calls and [6, 7] in calls and [0, 1, 2, 3] in calls
    assert calls.count([5]) == MAX_HANDLER_ATTEMPTS
    assert len(calls) < 16 + MAX_HANDLER_ATTEMPTS


def test_two_poison_records_are_both_isolated() -> None:
    done: list[int] = []

    async def handler(batch: list[Record]) -> list[tuple[Record, RejectRecord]]:
        offsets = [r.offset for r in batch]
        if {2, 9} & set(offsets):
            raise KeyError("boom")
        done.extend(offsets)
        return []

    letters = Letters()
    run(records(10), handler, letters)
    assert sorted(done) == [0, 1, 3, 4, 5, 6, 7, 8]
    assert [(o, c) for o, c, _, _ in letters.sent] == [(2, "processing_failed"),
                                                        (9, "processing_failed")]


def test_a_record_that_fails_once_is_processed_on_retry() -> None:
    failed: set[int] = set()
    done: list[int] = []

    async def handler(batch: list[Record]) -> list[tuple[Record, RejectRecord]]:
        offsets = [r.offset for r in batch]
        if 3 in offsets and 3 not in failed and len(batch) == 1:
            failed.add(3)
            raise RuntimeError("flaky")
        if 3 in offsets and len(batch) > 1:
            raise RuntimeError("poison?")
        done.extend(offsets)
        return []

    letters = Letters()
    run(records(4), handler, letters)
    assert sorted(done) == [0, 1, 2, 3] and letters.sent == []


def test_transient_trouble_retries_the_whole_batch_without_dead_letters() -> None:
    calls: list[int] = []

    async def handler(batch: list[Record]) -> list[tuple[Record, RejectRecord]]:
        calls.append(len(batch))
        if len(calls) < 4:
            raise asyncpg.exceptions.CannotConnectNowError("the database system is starting up")
        return []

    letters = Letters()
    run(records(8), handler, letters)
    assert calls == [8, 8, 8, 8] and letters.sent == []


def test_headers_are_stored_byte_for_byte_and_older_text_maps_still_read() -> None:
    from switchyard.messaging import headers_from_json, headers_json

    pairs = [("x-note", b"first"), ("x-note", b"second"), ("trace", b"\xff\xfe\x00")]
    assert headers_from_json(headers_json(pairs)) == pairs
    # letters stored before the list: a JSON object of text values
    assert headers_from_json(b'{"x-tenant-id": "acme"}') == [("x-tenant-id", b"acme")]
