"""GroupCommit: concurrent callers share transactions; one item's failure stays its own.

The pool here is a stand-in that records which items each transaction wrote (the executor's
tests drive the real thing against PostgreSQL)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from switchyard.storage import GroupCommit


class Transactions:
    """A pool whose connections note each transaction's items (``write`` appends them)."""

    def __init__(self) -> None:
        self.committed: list[list[Any]] = []

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator["Transactions"]:
        await asyncio.sleep(0.01)  # a round trip: callers arriving meanwhile wait their turn
        yield self

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        yield


def committer(pool: Transactions, fail_on: set[str] = frozenset(), **kw: Any
              ) -> GroupCommit[tuple[str, str], str]:
    async def write(conn: Any, items: list[tuple[str, str]]) -> list[str]:
        bad = [key for key, _ in items if key in fail_on]
        if bad:
            raise ValueError(f"cannot write {bad[0]}")
        conn.committed.append(list(items))
        return [f"{key}:{value}" for key, value in items]
    return GroupCommit("test", pool, write, key=lambda item: item[0], **kw)  # type: ignore[arg-type]


async def test_callers_arriving_together_share_a_transaction() -> None:
    pool = Transactions()
    group = committer(pool)
    results = await asyncio.gather(*(group.submit((f"k{i}", "v")) for i in range(20)))
    assert results == [f"k{i}:v" for i in range(20)]
    assert len(pool.committed) < 20  # fewer transactions than callers
    assert sorted(item for batch in pool.committed for item in batch) == sorted(
        (f"k{i}", "v") for i in range(20))


async def test_a_lone_caller_is_written_at_once() -> None:
    pool = Transactions()
    assert await committer(pool).submit(("only", "v")) == "only:v"
    assert pool.committed == [[("only", "v")]]


async def test_the_same_key_never_goes_twice_into_one_transaction() -> None:
    pool = Transactions()
    group = committer(pool)
    await asyncio.gather(*(group.submit(("same", str(i))) for i in range(3)),
                         group.submit(("other", "v")))
    for batch in pool.committed:
        keys = [key for key, _ in batch]
        assert len(keys) == len(set(keys))
    assert sum(len(batch) for batch in pool.committed) == 4


async def test_one_bad_item_fails_its_caller_only() -> None:
    pool = Transactions()
    group = committer(pool, fail_on={"bad"})
    results = await asyncio.gather(*(group.submit((key, "v")) for key in ("a", "bad", "b")),
                                   return_exceptions=True)
    assert results[0] == "a:v" and results[2] == "b:v"
    assert isinstance(results[1], ValueError) and "bad" in str(results[1])
    assert sorted(key for batch in pool.committed for key, _ in batch) == ["a", "b"]


async def test_groups_are_bounded() -> None:
    pool = Transactions()
    group = committer(pool, max_items=4)
    await asyncio.gather(*(group.submit((f"k{i}", "v")) for i in range(10)))
    assert max(len(batch) for batch in pool.committed) <= 4


@pytest.mark.parametrize("delay", [0.0, 0.005])
async def test_a_cancelled_caller_leaves_the_others_their_results(delay: float) -> None:
    pool = Transactions()
    group = committer(pool)
    doomed = asyncio.create_task(group.submit(("gone", "v")))
    kept = asyncio.create_task(group.submit(("kept", "v")))
    await asyncio.sleep(delay)
    doomed.cancel()
    assert await kept == "kept:v"
    with pytest.raises(asyncio.CancelledError):
        await doomed
