"""``switchyard dead-letters list|show|replay``: the dead-letter queue from a shell.

A thin client of DeadLetterService (served by ingest, so ``--target`` defaults to the ingest
port): the server scopes every call to the API key's tenant and role (admin reads and
replays, auditor reads). Same client options, output and exit codes as ``switchyard tasks``
(:mod:`switchyard._tasks_cli`, docs/cli.md).
"""

from __future__ import annotations

import argparse
import json
import re
import string
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from switchyard._settings import Settings
from switchyard._tasks_cli import (
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_USAGE,
    _add_client_arguments,
    rpc_error_line,
    _main,
    _Usage,
    follow_pages,
    data_console,
)

__all__ = ["add_dead_letters_arguments", "parse_since", "printable", "run_dead_letters"]

#: ``--state`` choices: the DeadLetterState names, and ``all``.
STATES = ("all", "open", "replayed", "resolved")
_AGO = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def add_dead_letters_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="dead_letters_action", required=True, metavar="ACTION")

    def client(p: argparse.ArgumentParser) -> None:
        _add_client_arguments(p, "DeadLetterService (on ingest)")

    p = sub.add_parser("list", help="dead letters, newest first (without their bytes)")
    p.add_argument("--tenant", default="", help="tenant id (default: the API key's; every "
                                                "tenant for an operator key)")
    p.add_argument("--topic", default="", help="only records read from this topic")
    p.add_argument("--reason", default="", help="only this reason code, e.g. malformed_json")
    p.add_argument("--key", default="", metavar="K",
                   help="only the letters of records produced with this key (exact)")
    p.add_argument("--since", default="", metavar="WHEN",
                   help="only letters since WHEN: an ISO 8601 time or an age like 30m, 2h, 7d")
    p.add_argument("--state", choices=STATES, default="all",
                   help="open (neither replayed nor resolved: what needs an operator), "
                        "replayed, resolved, or all (default)")
    p.add_argument("--limit", type=int, default=50, help="at most this many (0: all pages)")
    client(p)
    p = sub.add_parser("show", help="one letter: reason, headers and the original bytes")
    p.add_argument("dead_letter_id")
    p.add_argument("--hex", action="store_true", help="print the bytes as hex even when "
                                                       "they are text")
    client(p)
    p = sub.add_parser("replay", help="re-publish letters' original records to their topics "
                                      "(once; --force to replay again)")
    p.add_argument("dead_letter_ids", nargs="+", metavar="ID")
    p.add_argument("--force", action="store_true", help="replay letters replayed or "
                                                         "resolved before")
    client(p)
    p = sub.add_parser("resolve", help="close letters that need no replay, with a reason "
                                       "(audited)")
    p.add_argument("dead_letter_ids", nargs="+", metavar="ID")
    p.add_argument("--reason", required=True,
                   help="why they need no replay, e.g. 'sent again corrected as task ...'")
    client(p)


def parse_since(value: str, now: datetime | None = None, option: str = "--since") -> datetime:
    """``30m`` / ``2h`` / ``7d`` ago, or an ISO 8601 time (UTC when it names no zone);
    anything else is a usage error naming ``option``."""
    match = _AGO.fullmatch(value.strip())
    if match:
        return (now or datetime.now(UTC)) - timedelta(
            **{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise _Usage(f"{option} {value!r}: use an ISO 8601 time (2026-01-31T12:00:00Z) or an "
                     "age like 30m, 2h, 7d") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def printable(data: bytes) -> str | None:
    """The bytes as text when they are UTF-8 a terminal can show, else None (print hex)."""
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return None
    allowed = set(string.printable) - {"\x0b", "\x0c"}
    return text if all(ch in allowed or ord(ch) > 127 for ch in text) else None


def _state_name(state: int) -> str:
    from switchyard.v1 import DeadLetterState

    return DeadLetterState.Name(state).removeprefix("DEAD_LETTER_STATE_").lower()


def _record_json(record: Any, with_bytes: bool = False) -> dict[str, Any]:
    letter = record.letter
    out: dict[str, Any] = {
        "dead_letter_id": letter.dead_letter_id, "tenant_id": record.tenant_id,
        "service": letter.service, "source_topic": letter.source_topic,
        "partition": letter.partition, "offset": letter.offset,
        "reason_code": letter.reason_code, "reason": letter.reason,
        "failed_at": letter.failed_at.ToJsonString() if letter.HasField("failed_at") else None,
        "replayed_at": (record.replayed_at.ToJsonString()
                        if record.HasField("replayed_at") else None),
        "replayed_by": record.replayed_by or None, "replay_count": record.replay_count,
        "purged": record.purged, "state": _state_name(record.state),
        "resolved_at": (record.resolved_at.ToJsonString()
                        if record.HasField("resolved_at") else None),
        "resolved_by": record.resolved_by or None, "resolution": record.resolution or None,
    }
    if with_bytes:
        out.update(
            original_headers=dict(letter.original_headers),
            original_key_hex=letter.original_key.hex(),
            original_value_text=printable(letter.original_value),
            original_value_hex=letter.original_value.hex())
    return out


def run_dead_letters(args: argparse.Namespace, settings: Settings) -> int:
    import sys

    from switchyard.v1 import DeadLetterServiceStub

    if args.dead_letters_action == "list":   # input errors before any connection: exit 2
        try:
            if args.limit < 0:
                raise _Usage("--limit must be 0 or more")
            args.since_at = parse_since(args.since) if args.since else None
        except _Usage as exc:
            print(f"switchyard dead-letters list: {exc}", file=sys.stderr)
            return EXIT_USAGE
    return _main(f"dead-letters {args.dead_letters_action}", args, settings,
                 _ACTIONS[args.dead_letters_action], stub_class=DeadLetterServiceStub)


async def _list(args: argparse.Namespace, stub: Any) -> int:
    from rich.table import Table

    from switchyard.v1 import DeadLetterState, ListDeadLettersRequest

    request = ListDeadLettersRequest(
        tenant_id=args.tenant, source_topic=args.topic, reason_code=args.reason,
        record_key=args.key, state=(DeadLetterState.Value(f"DEAD_LETTER_STATE_{args.state.upper()}")
               if args.state != "all" else DeadLetterState.DEAD_LETTER_STATE_UNSPECIFIED))
    if args.since_at is not None:
        request.since.FromDatetime(args.since_at)
    records = await follow_pages(stub.ListDeadLetters, request, "dead_letters", args.limit)
    rows = [_record_json(r) for r in records]
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    table = Table(title=f"{len(rows)} dead letter(s)", title_justify="left")
    for column in ("id", "tenant", "topic", "reason", "failed at", "state"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(row["dead_letter_id"], row["tenant_id"] or "-", row["source_topic"],
                      f"{row['reason_code']}: {row['reason']}", row["failed_at"] or "-",
                      _state_text(row))
    data_console().print(table)
    return EXIT_OK


def _state_text(row: dict[str, Any]) -> str:
    """The state column: what was done, by whom, when (and that the bytes are gone)."""
    parts = [row["state"]]
    if row["resolved_at"]:
        parts.append(f"by {row['resolved_by']}, {row['resolved_at']}: {row['resolution']}")
    if row["replay_count"]:
        parts.append(f"replayed {row['replay_count']}x, last {row['replayed_at']}")
    if row["purged"]:
        parts.append("purged")
    return "; ".join(parts)


async def _show(args: argparse.Namespace, stub: Any) -> int:
    from switchyard.v1 import GetDeadLetterRequest

    record = (await stub.GetDeadLetter(GetDeadLetterRequest(
        dead_letter_id=args.dead_letter_id))).dead_letter
    data = _record_json(record, with_bytes=True)
    if args.json:
        print(json.dumps(data, indent=2))
        return EXIT_OK
    for key in ("dead_letter_id", "tenant_id", "service", "source_topic", "partition",
                "offset", "reason_code", "reason", "failed_at", "state", "replayed_at",
                "replayed_by", "replay_count", "resolved_at", "resolved_by", "resolution"):
        if data[key] not in (None, ""):
            print(f"{key + ':':<17}{data[key]}")
    for key, value in sorted(data["original_headers"].items()):
        print(f"{'header:':<17}{key}: {value}")
    if data["original_key_hex"]:
        key_text = printable(record.letter.original_key)
        print(f"{'key:':<17}{key_text if key_text is not None else data['original_key_hex']}")
    if record.purged:
        print("value:           (purged by retention)")
    elif data["original_value_text"] is not None and not args.hex:
        print(f"value ({len(record.letter.original_value)} bytes, text):")
        print(data["original_value_text"])
    else:
        print(f"value ({len(record.letter.original_value)} bytes, hex):")
        print(data["original_value_hex"])
    return EXIT_OK


async def _each(letter_ids: list[str], call: Any) -> list[dict[str, Any]]:
    """``call`` for each letter id in turn: the letter as marked, or the refusal (an
    unreachable server ends the command, as everywhere else)."""
    import grpc

    results: list[dict[str, Any]] = []
    for letter_id in letter_ids:
        try:
            results.append({**_record_json(await call(letter_id)), "error": None})
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                raise
            results.append({"dead_letter_id": letter_id, "error": rpc_error_line(exc)})
    return results


def _report(args: argparse.Namespace, results: list[dict[str, Any]],
            done: Callable[[dict[str, Any]], str]) -> int:
    """A line per letter (``--json``: the array); exit 1 when any was refused."""
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            print(f"{r['dead_letter_id']}: "
                  f"{'refused: ' + r['error'] if r['error'] else done(r)}")
    return EXIT_REFUSED if any(r["error"] for r in results) else EXIT_OK


async def _replay(args: argparse.Namespace, stub: Any) -> int:
    from switchyard.v1 import ReplayDeadLetterRequest

    async def one(letter_id: str) -> Any:
        return (await stub.ReplayDeadLetter(ReplayDeadLetterRequest(
            dead_letter_id=letter_id, force=args.force))).dead_letter

    return _report(args, await _each(args.dead_letter_ids, one), lambda r: (
        f"replayed to {r['source_topic']} (replay {r['replay_count']}, by {r['replayed_by']})"))


async def _resolve(args: argparse.Namespace, stub: Any) -> int:
    from switchyard.v1 import ResolveDeadLetterRequest

    async def one(letter_id: str) -> Any:
        return (await stub.ResolveDeadLetter(ResolveDeadLetterRequest(
            dead_letter_id=letter_id, reason=args.reason))).dead_letter

    return _report(args, await _each(args.dead_letter_ids, one), lambda r: (
        f"resolved by {r['resolved_by']}: {r['resolution']}"))


_ACTIONS = {"list": _list, "show": _show, "replay": _replay, "resolve": _resolve}
