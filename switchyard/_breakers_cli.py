"""``switchyard breakers``: the executor's circuit breakers, through its admin gRPC API.

The executor answers from the state every replica shares (PostgreSQL), so asking any one
replica shows the whole deployment. Like every command-line client it sends
``SWITCHYARD_CLIENT_API_KEY`` (or ``--api-key``) and speaks TLS from ``SWITCHYARD_CLIENT_TLS_*``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict
from rich.table import Table
from rich.text import Text

from switchyard._grpc import client_channel
from switchyard._settings import Settings
from switchyard._tasks_cli import data_console
from switchyard.v1 import (
    BreakerState,
    BreakerStatus,
    ExecutorAdminServiceStub,
    ListBreakersRequest,
    ResetBreakerRequest,
)

_COLOURS = {"CLOSED": "green", "OPEN": "red", "HALF_OPEN": "yellow"}


def _status(state: BreakerState) -> str:
    return BreakerStatus.Name(state.status).removeprefix("BREAKER_STATUS_")


def _when(state: BreakerState, field: str) -> str:
    if not state.HasField(field):
        return "-"
    return getattr(state, field).ToDatetime().strftime("%Y-%m-%d %H:%M:%S UTC")


def render(states: list[BreakerState]) -> Table:
    table = Table(title="executor circuit breakers", title_justify="left")
    for column in ("endpoint", "state", "failures", "blocked tasks", "opened at", "next probe",
                   "changed by"):  # (the endpoint is the name --reset takes: never cut short)
        table.add_column(column, overflow="fold", no_wrap=column != "endpoint")
    for state in states:
        status = _status(state)
        table.add_row(state.name, Text(status, style=_COLOURS.get(status, "white")),
                      str(state.failure_count), str(state.blocked_tasks),
                      _when(state, "opened_at"), _when(state, "probe_at"), state.updated_by)
    return table


async def _call(settings: Settings, target: str, reset: str | None) -> list[BreakerState]:
    channel = client_channel(settings, target)
    try:
        stub = ExecutorAdminServiceStub(channel)
        if reset:
            return [(await stub.ResetBreaker(ResetBreakerRequest(name=reset), timeout=10)).breaker]
        return list((await stub.ListBreakers(ListBreakersRequest(), timeout=10)).breakers)
    finally:
        await channel.close()


def run(settings: Settings, target: str | None, api_key: str | None, reset: str | None,
        as_json: bool) -> int:
    """List (or ``reset`` one of) the breakers; ``api_key`` overrides
    ``SWITCHYARD_CLIENT_API_KEY``, TLS comes from ``SWITCHYARD_CLIENT_TLS_*``."""
    address = target or f"127.0.0.1:{settings.executor_grpc_port}"
    if api_key:
        settings = settings.replace(client_api_key=api_key)
    try:
        states = asyncio.run(_call(settings, address, reset))
    except (ValueError, OSError) as exc:
        print(f"switchyard breakers: client TLS: {exc}", file=sys.stderr)
        return 2
    except grpc.aio.AioRpcError as exc:
        print(f"switchyard breakers: {address}: {exc.code().name}: {exc.details()}",
              file=sys.stderr)
        return 3 if exc.code() == grpc.StatusCode.UNAVAILABLE else 1   # docs/cli.md
    if as_json:
        out: list[dict[str, Any]] = [MessageToDict(s, preserving_proto_field_name=True)
                                     for s in states]
        print(json.dumps(out, indent=2))
    elif reset:
        print(f"{states[0].name}: {_status(states[0])}")
    else:
        data_console().print(render(states) if states else
                         "no breakers yet (no downstream calls)")
    return 0
