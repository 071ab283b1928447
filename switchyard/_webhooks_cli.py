"""``switchyard webhooks list|redeliver``: a tenant's webhooks and their deliveries.

A thin client of IngestService (ListWebhooks, ListWebhookDeliveries, RedeliverWebhooks),
with the client options, output and exit codes of ``switchyard tasks``
(:mod:`switchyard._tasks_cli`, docs/cli.md). The server scopes every call to the API
key's tenant (an operator key names one with ``--tenant``).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from switchyard._dead_letters_cli import parse_since
from switchyard._settings import Settings
from switchyard._tasks_cli import (
    EXIT_OK,
    EXIT_USAGE,
    _add_client_arguments,
    _main,
    _Usage,
    follow_pages,
    data_console,
)

__all__ = ["add_webhooks_arguments", "run_webhooks"]


def add_webhooks_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="webhooks_action", required=True, metavar="ACTION")
    p = sub.add_parser("list", help="the tenant's webhooks (with delivery counts) and their "
                                    "recent deliveries, newest first")
    p.add_argument("--tenant", default="", help="tenant id (default: the API key's)")
    p.add_argument("--webhook", default="", metavar="ID", help="only this webhook's deliveries")
    p.add_argument("--state", default="", choices=("", "pending", "delivered", "failed"),
                   help="only deliveries in this state")
    p.add_argument("--since", default="", metavar="WHEN",
                   help="only deliveries since WHEN: an ISO 8601 time or an age like 2h, 7d")
    p.add_argument("--limit", type=int, default=20,
                   help="at most this many deliveries (default 20; 0: all pages)")
    _add_client_arguments(p)
    p = sub.add_parser("redeliver", help="deliver again: the named deliveries, or every "
                                         "failed one since WHEN")
    p.add_argument("delivery_ids", nargs="*", metavar="DELIVERY_ID")
    p.add_argument("--failed-since", default="", metavar="WHEN",
                   help="every failed delivery created since WHEN (ISO 8601 or 30m, 2h, 7d)")
    p.add_argument("--tenant", default="", help="tenant id (default: the API key's)")
    _add_client_arguments(p)


def run_webhooks(args: argparse.Namespace, settings: Settings) -> int:
    command = f"webhooks {args.webhooks_action}"
    try:   # input errors before any connection: exit 2
        if args.webhooks_action == "list":
            if args.limit < 0:
                raise _Usage("--limit must be 0 or more")
            args.since_at = parse_since(args.since) if args.since else None
        else:
            if bool(args.delivery_ids) == bool(args.failed_since):
                raise _Usage("name delivery ids or give --failed-since (not both)")
            args.failed_since_at = (parse_since(args.failed_since, option="--failed-since")
                                    if args.failed_since else None)
    except _Usage as exc:
        print(f"switchyard {command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return _main(command, args, settings, _ACTIONS[args.webhooks_action])


def _delivery_json(delivery: Any) -> dict[str, Any]:
    def when(field: str) -> str | None:
        return getattr(delivery, field).ToJsonString() if delivery.HasField(field) else None

    return {"delivery_id": delivery.delivery_id, "webhook_id": delivery.webhook_id or None,
            "tenant_id": delivery.tenant_id, "task_id": delivery.task_id,
            "sequence": delivery.sequence, "url": delivery.url, "state": delivery.state,
            "attempts": delivery.attempts, "last_error": delivery.last_error,
            "created_at": when("created_at"), "delivered_at": when("delivered_at"),
            "next_attempt_at": when("next_attempt_at")}


async def _list(args: argparse.Namespace, stub: Any) -> int:
    from rich.table import Table

    from switchyard.v1 import ListWebhookDeliveriesRequest, ListWebhooksRequest

    hooks = (await stub.ListWebhooks(ListWebhooksRequest(tenant_id=args.tenant))).webhooks
    request = ListWebhookDeliveriesRequest(tenant_id=args.tenant, webhook_id=args.webhook,
                                           state=args.state)
    if args.since_at is not None:
        request.since.FromDatetime(args.since_at)
    deliveries = await follow_pages(stub.ListWebhookDeliveries, request, "deliveries",
                                    args.limit)
    webhooks = [{"webhook_id": h.webhook_id, "tenant_id": h.tenant_id, "url": h.url,
                 "created_at": h.created_at.ToJsonString(), "pending": h.pending,
                 "delivered": h.delivered, "failed": h.failed} for h in hooks]
    rows = [_delivery_json(d) for d in deliveries]
    if args.json:
        print(json.dumps({"webhooks": webhooks, "deliveries": rows}, indent=2))
        return EXIT_OK
    console = data_console()
    table = Table(title=f"{len(webhooks)} webhook(s)", title_justify="left")
    for column in ("webhook", "url", "created at", "pending", "delivered", "failed"):
        table.add_column(column, overflow="fold")
    for hook in webhooks:
        table.add_row(hook["webhook_id"], hook["url"], hook["created_at"], str(hook["pending"]),
                      str(hook["delivered"]), str(hook["failed"]))
    console.print(table)
    table = Table(title=f"{len(rows)} recent deliver{'y' if len(rows) == 1 else 'ies'}",
                  title_justify="left")
    for column in ("delivery", "webhook", "task", "state", "attempts", "last error",
                   "created at"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(row["delivery_id"], row["webhook_id"] or "(task callback)",
                      f"{row['task_id']} #{row['sequence']}", row["state"],
                      str(row["attempts"]), row["last_error"] or "-", row["created_at"] or "-")
    console.print(table)
    return EXIT_OK


async def _redeliver(args: argparse.Namespace, stub: Any) -> int:
    from switchyard.v1 import RedeliverWebhooksRequest

    request = RedeliverWebhooksRequest(tenant_id=args.tenant, delivery_ids=args.delivery_ids)
    if args.failed_since_at is not None:
        request.failed_since.FromDatetime(args.failed_since_at)
    response = await stub.RedeliverWebhooks(request)
    redelivered = [_delivery_json(d) for d in response.redelivered]
    skipped = [{"delivery_id": s.delivery_id, "reason": s.reason} for s in response.skipped]
    if args.json:
        print(json.dumps({"redelivered": redelivered, "skipped": skipped}, indent=2))
    else:
        for row in redelivered:
            print(f"{row['delivery_id']}: pending again ({row['url']})")
        for row in skipped:
            print(f"{row['delivery_id']}: skipped: {row['reason']}")
        if not redelivered and not skipped:
            print("nothing to redeliver")
    return EXIT_OK


_ACTIONS = {"list": _list, "redeliver": _redeliver}
