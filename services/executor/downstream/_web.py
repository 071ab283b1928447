"""What every system of the demo downstream shares on the web side: where the app keeps its
ledger and fault board, how an answer is written (JSON with sorted keys), and how the fault
board turns a call into an injected failure."""

from __future__ import annotations

import asyncio
import functools
import json
from typing import Any

from aiohttp import web

from services.executor.downstream.faults import FaultBoard
from services.executor.downstream.store import Ledger

LEDGER = web.AppKey("ledger", Ledger)
FAULTS = web.AppKey("faults", FaultBoard)


def json_response(body: Any, status: int = 200,
                  headers: dict[str, str] | None = None) -> web.Response:
    """An answer as JSON with sorted keys (dates and other values as their text)."""
    return web.json_response(body, status=status, headers=headers,
                             dumps=functools.partial(json.dumps, sort_keys=True, default=str))


async def apply_faults(request: web.Request, system: str, collection: str,
                       key: str) -> web.Response | int:
    """Apply the fault board to a call of ``system``/``collection``: the Response when the
    call fails before anything happens (logged in the ledger's calls), else the status to
    fail with after the work is done (0: none)."""
    fate = request.app[FAULTS].fate(system, collection)
    if fate.delay_s:
        await asyncio.sleep(fate.delay_s)
    if fate.fail_before:
        await request.app[LEDGER].log("http", request.method, request.path, key, "fault",
                                      fate.fail_before)
        if fate.fail_before == 429:
            return json_response({"error": "throttled (injected)"}, status=429, headers={
                "Retry-After": str(max(1, round(fate.retry_after_s)))})
        return json_response({"error": "injected failure"}, status=fate.fail_before)
    return fate.fail_after


__all__ = ["FAULTS", "LEDGER", "apply_faults", "json_response"]
