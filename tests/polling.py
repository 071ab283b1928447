"""Waiting for something the services do in the background, without asserting timings."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(check: Callable[[], Awaitable[T | None]], what: str = "condition",
                     timeout_s: float = 60.0, interval_s: float = 0.1) -> T:
    """Poll until ``check`` returns something truthy and return it; generous timeouts, since
    the machine is shared."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what} (last: {result!r})")
        await asyncio.sleep(interval_s)


__all__ = ["eventually"]
