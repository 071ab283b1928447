"""``switchyard review list|show|claim|renew|release|approve|reject``: the ReviewService from
a shell.

A thin gRPC client: the server does every check (roles, tenant scoping, leases), so the
command line behaves exactly like the console. The API key comes from
``SWITCHYARD_CLIENT_API_KEY`` and TLS (mutual TLS) from ``SWITCHYARD_CLIENT_TLS_*``, as for
every command-line client; with a key the reviewer is that key (the server records the
credentials, not a name; ``--reviewer`` is only for a dev stack without keys).
``approve``/``reject`` claim the item first (a no-op when you already hold it), so one command
settles an item.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import math
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from switchyard import Settings


def _client_options(parser: argparse.ArgumentParser, default: Any = None) -> None:
    """--target, --api-key and --reviewer: before the action (``review --api-key K list``)
    or after it (``review list --api-key K``, as ``tasks`` and the other clients take them);
    after the action they default to nothing, so they never undo what was given before."""
    parser.add_argument("--target", default=default,
                        help="ReviewService address (default 127.0.0.1:"
                             "$SWITCHYARD_REVIEW_GRPC_PORT)")
    parser.add_argument("--api-key", default=default,
                        help="API key (default $SWITCHYARD_CLIENT_API_KEY), as for the other "
                             "commands; TLS comes from $SWITCHYARD_CLIENT_TLS_*")
    parser.add_argument("--reviewer", default=default,
                        help="your reviewer name when auth is off (default: your login "
                             "name); with an API key the key is the reviewer and this must be "
                             "empty or that key's id")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _client_options(parser)
    sub = parser.add_subparsers(dest="review_action", required=True, metavar="ACTION")
    p = sub.add_parser("list", help="items of the queues, most urgent first")
    p.add_argument("--queue", default="")
    p.add_argument("--tenant", default="")
    p.add_argument("--state", action="append", default=[],
                   help=f"{', '.join(_STATES)} (repeatable)")
    p.add_argument("--priority", action="append", default=[], help="P0..P3 (repeatable)")
    p.add_argument("--limit", type=_count, default=50,
                   help="at most this many items, following the pages (0: all of them)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p = sub.add_parser("show", help="one item in full, as JSON")
    p.add_argument("item_id")
    p.add_argument("--json", action="store_true", help="the same JSON (show always prints "
                                                       "it; accepted as list accepts it)")
    p = sub.add_parser("claim", help="lease an item")
    p.add_argument("item_id")
    p.add_argument("--lease-s", type=_lease_seconds, default=0.0,
                   help="lease length in seconds (default, or 0: the server's, 5 minutes; "
                        "at most 8 hours)")
    p = sub.add_parser("renew", help="extend your claim on an item (from now), before its "
                                     "lease runs out and the item returns to the queue")
    p.add_argument("item_id")
    p.add_argument("--lease-s", type=_lease_seconds, default=0.0,
                   help="new lease length in seconds, from now (default, or 0: the server's, "
                        "5 minutes; at most 8 hours)")
    p = sub.add_parser("release", help="give claimed items back to the queue (an admin: any "
                                       "reviewer's claim)")
    p.add_argument("item_ids", nargs="+", metavar="ITEM_ID")
    p = sub.add_parser("approve", help="approve (with --set: approve with edited fields); "
                                       "claims the item first, or renews your claim, so one "
                                       "command settles it; several items: each in turn")
    p.add_argument("item_ids", nargs="+", metavar="ITEM_ID")
    p.add_argument("--reason", default="")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="a corrected field value (repeatable); makes the verdict MODIFY")
    p = sub.add_parser("reject", help="reject: the task ends FAILED (rejected:<rule>); "
                                      "claims the item first, as approve does; several "
                                      "items: each in turn, with the same reason")
    p.add_argument("item_ids", nargs="+", metavar="ITEM_ID")
    p.add_argument("--reason", required=True)
    p.add_argument("--type", dest="document_type", default="", metavar="TYPE",
                   help="the document's real type when the proposed one is wrong (a pack "
                        "name, or other): the router learns it")
    for action in sub.choices.values():
        _client_options(action, argparse.SUPPRESS)


def _count(text: str) -> int:
    """A --limit: a whole number, 0 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: 0 (all of them) or more")
    return value


def _lease_seconds(text: str) -> float:
    """A lease length: a finite number of seconds, not negative (0: the server's default)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a number of seconds, 0 or more")
    from services.review.desk import MAX_LEASE

    if value > MAX_LEASE.total_seconds():
        raise argparse.ArgumentTypeError(
            f"{text!r}: at most {MAX_LEASE.total_seconds():.0f} seconds (8 hours)")
    return value


def run(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(_run(args, settings))


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    import grpc

    from switchyard.rpc import client_channel, unsaid_violations

    if args.api_key is not None:
        settings = settings.replace(client_api_key=args.api_key)
    target = args.target or f"127.0.0.1:{settings.review_grpc_port}"
    try:
        channel = client_channel(settings, target)
    except (ValueError, OSError) as exc:
        print(f"switchyard review: client TLS: {exc}", file=sys.stderr)
        return 2
    args.keyed = bool(settings.client_api_key)
    try:
        return await _ACTIONS[args.review_action](args, _stub(channel))
    except grpc.aio.AioRpcError as exc:
        detail = "".join(f"\n  {violation}" for violation in unsaid_violations(exc))
        print(f"switchyard review {args.review_action}: {exc.code().name}: {exc.details()}"
              f"{detail}", file=sys.stderr)
        return 1
    except _UsageError as exc:
        print(f"switchyard review {args.review_action}: {exc}", file=sys.stderr)
        return 2
    finally:
        await channel.close()


class _UsageError(Exception):
    pass


#: ``--state`` values (ReviewState names without their prefix, in lower case; not WITHDRAWN:
#: the items of tasks that ended before a verdict are never listed).
_STATES = ("pending", "claimed", "backlogged", "resolved", "expired")


def _stub(channel: Any) -> Any:
    from switchyard.v1 import ReviewServiceStub

    return ReviewServiceStub(channel)


def _reviewer(args: argparse.Namespace) -> str:
    """The reviewer_id to send: with an API key, empty (the server records the key) unless
    --reviewer says otherwise (refused unless it is the key's id); without, a name."""
    if getattr(args, "keyed", False):
        return args.reviewer or ""
    return args.reviewer or getpass.getuser()


async def _list(args: argparse.Namespace, stub: Any) -> int:
    from rich.table import Table

    from services.review.console import item_json
    from switchyard.clients import data_console
    from switchyard.v1 import ListQueueRequest, ReviewPriority, ReviewState

    request = ListQueueRequest(queue=args.queue, tenant_id=args.tenant)
    try:
        for value in args.state:
            for name in filter(None, value.upper().split(",")):
                if name.lower() not in _STATES:
                    raise ValueError(name)
                request.states.append(ReviewState.Value(f"REVIEW_STATE_{name}"))
        for value in args.priority:
            for name in filter(None, value.upper().split(",")):
                request.priorities.append(ReviewPriority.Value(f"REVIEW_PRIORITY_{name}"))
    except ValueError:
        raise _UsageError(f"--state is one of {', '.join(_STATES)}; --priority one of "
                          f"P0, P1, P2, P3") from None
    items: list[dict[str, Any]] = []
    while True:  # follow the page tokens until --limit items (0: every item)
        wanted = args.limit - len(items) if args.limit > 0 else 500
        request.page_size = max(1, min(wanted, 500))
        page = await stub.ListQueue(request)
        items += [item_json(i, full=False) for i in page.items]
        if not page.next_page_token or 0 < args.limit <= len(items):
            break
        request.page_token = page.next_page_token
    if args.json:
        for item in items:
            print(json.dumps(item, sort_keys=True))
        return 0
    table = Table(title=f"{len(items)} review item(s)", title_justify="left")
    for column in ("item", "priority", "SLA deadline (UTC)", "tenant", "queue", "group",
                   "reason", "state", "task"):
        table.add_column(column, overflow="fold")
    for item in items:
        who = item["claimed_by"] or item["decided_by"]   # holding it, or who decided it
        state = item["state"].lower() + (f" by {who}" if who else "")
        table.add_row(item["item_id"], item["priority"], item["sla_deadline"] or "-",
                      item["tenant_id"], item["queue"], item["reviewer_group"] or "-",
                      item["reason"].lower(), state, item["task_id"])
    data_console().print(table)
    return 0


async def _show(args: argparse.Namespace, stub: Any) -> int:
    from services.review.console import item_json
    from switchyard.v1 import GetItemRequest

    item = (await stub.GetItem(GetItemRequest(item_id=args.item_id))).item
    print(json.dumps(item_json(item), indent=2, sort_keys=True))
    return 0


def _with_lease(request: Any, args: argparse.Namespace) -> Any:
    """``request`` (a claim or a renewal) with the ``--lease-s`` asked for; none (0, or a
    command without the option, as approve's own claim): the server's default lease."""
    if getattr(args, "lease_s", 0):
        from datetime import timedelta

        request.lease.FromTimedelta(timedelta(seconds=args.lease_s))
    return request


async def _claim(args: argparse.Namespace, stub: Any) -> int:
    from switchyard.v1 import ClaimRequest

    request = _with_lease(ClaimRequest(item_id=args.item_id, reviewer_id=_reviewer(args)),
                          args)
    item = (await stub.Claim(request)).item
    print(f"claimed {item.item_id} as {item.claimed_by} until "
          f"{item.lease_expires_at.ToDatetime().isoformat()}Z")
    return 0


async def _renew(args: argparse.Namespace, stub: Any) -> int:
    from switchyard.v1 import RenewRequest

    request = _with_lease(RenewRequest(item_id=args.item_id, reviewer_id=_reviewer(args)),
                          args)
    item = (await stub.Renew(request)).item
    print(f"renewed {item.item_id} for {item.claimed_by} until "
          f"{item.lease_expires_at.ToDatetime().isoformat()}Z")
    return 0


async def _each(args: argparse.Namespace, act: Callable[[str], Awaitable[None]]) -> int:
    """``act`` on every item given, in turn: one that is refused says why on stderr and the
    rest go on (a lead clearing a list is not stopped by the one item someone else took);
    exit 1 when any was refused."""
    import grpc

    from switchyard.rpc import unsaid_violations

    refused = 0
    for item_id in args.item_ids:
        try:
            await act(item_id)
        except grpc.aio.AioRpcError as exc:
            if len(args.item_ids) == 1:
                raise   # one item: the command's own error line
            refused += 1
            detail = "".join(f"; {violation}" for violation in unsaid_violations(exc))
            print(f"switchyard review {args.review_action} {item_id}: {exc.code().name}: "
                  f"{exc.details()}{detail}", file=sys.stderr)
    return 1 if refused else 0


async def _release(args: argparse.Namespace, stub: Any) -> int:
    from switchyard.v1 import ReleaseRequest

    async def release(item_id: str) -> None:
        await stub.Release(ReleaseRequest(item_id=item_id, reviewer_id=_reviewer(args)))
        print(f"released {item_id}")
    return await _each(args, release)


async def _verdict(args: argparse.Namespace, stub: Any) -> int:
    from switchyard.v1 import ClaimRequest, ReviewVerdict, SubmitVerdictRequest, Verdict

    edits = {}
    for entry in getattr(args, "set", []):
        name, sep, value = entry.partition("=")
        if not sep or not name.strip():
            raise _UsageError(f"--set {entry!r} must be FIELD=VALUE")
        edits[name.strip()] = value
    if edits and len(args.item_ids) > 1:
        raise _UsageError("--set corrects one item's fields: give one item")
    reviewer = _reviewer(args)
    if args.review_action == "reject":
        verdict = Verdict.VERDICT_REJECT
    else:
        verdict = Verdict.VERDICT_MODIFY if edits else Verdict.VERDICT_APPROVE
    done = {Verdict.VERDICT_APPROVE: "approved", Verdict.VERDICT_REJECT: "rejected",
            Verdict.VERDICT_MODIFY: "approved with edits"}[verdict]

    async def decide(item_id: str) -> None:
        await stub.Claim(ClaimRequest(item_id=item_id, reviewer_id=reviewer))
        response = await stub.SubmitVerdict(SubmitVerdictRequest(verdict=ReviewVerdict(
            item_id=item_id, reviewer_id=reviewer, verdict=verdict, reason=args.reason,
            modified_fields=edits, document_type=getattr(args, "document_type", ""))))
        if not response.decision_id:  # four eyes: the first of two approvals
            print(f"{done} {item_id}: {len(response.item.approved_by)} of "
                  f"{response.item.approvals_required} approvals; another reviewer must "
                  "approve")
            return
        after = (" (the task ends FAILED, any steps already done undone)"
                 if verdict == Verdict.VERDICT_REJECT else "")
        print(f"{done} {item_id}: decision {response.decision_id} sent to the "
              f"executor{after}")
    return await _each(args, decide)


_ACTIONS = {"list": _list, "show": _show, "claim": _claim, "renew": _renew,
            "release": _release, "approve": _verdict, "reject": _verdict}
