"""``run_by_key``: a key's records one after another in order, different keys at once, a
refused record refused alone, each record's work tagged with its key."""

from __future__ import annotations

import asyncio

import pytest

from switchyard.messaging import Record, RejectRecord, run_by_key
from switchyard.telemetry import task_id_var


def record(offset: int) -> Record:
    return Record("decisions", 0, offset, None, b"", {}, 0.0)


async def test_one_keys_records_run_in_order_and_keys_run_together() -> None:
    running: set[str] = set()
    together = 0
    seen: list[tuple[str, int, str | None]] = []

    async def work(key: str, n: int) -> None:
        nonlocal together
        assert key not in running, "two records of one key at once"
        running.add(key)
        together = max(together, len(running))
        await asyncio.sleep(0.01 * (3 - n))  # later records are quicker: order must hold
        seen.append((key, n, task_id_var.get()))
        running.discard(key)

    refused = await run_by_key(
        (key, record(i), lambda key=key, n=n: work(key, n))
        for i, (key, n) in enumerate([("a", 0), ("b", 0), ("a", 1), ("a", 2), ("b", 1)]))
    assert refused == []
    assert [n for key, n, _ in seen if key == "a"] == [0, 1, 2]
    assert [n for key, n, _ in seen if key == "b"] == [0, 1]
    assert together == 2
    assert all(tagged == key for key, _, tagged in seen)  # log lines carry the key


async def test_a_refused_record_is_refused_alone_and_its_keys_next_record_runs() -> None:
    ran: list[int] = []

    async def work(n: int) -> None:
        if n == 1:
            raise RejectRecord("unknown_task", "no such task")
        ran.append(n)

    bad = record(1)
    refused = await run_by_key(
        ("a", rec, lambda n=n: work(n)) for n, rec in enumerate([record(0), bad, record(2)]))
    assert [(r, e.code) for r, e in refused] == [(bad, "unknown_task")]
    assert ran == [0, 2]


async def test_any_other_failure_is_raised_after_every_key_has_ended() -> None:
    finished: list[str] = []

    async def fails() -> None:
        raise RuntimeError("database said no")

    async def slow() -> None:
        await asyncio.sleep(0.05)
        finished.append("b")

    with pytest.raises(RuntimeError):
        await run_by_key([("a", record(0), fails), ("b", record(1), slow)])
    assert finished == ["b"]  # nothing left running behind the batch
