"""``switchyard consent grant|revoke|list|erase``: the consent registry from a shell.

A thin client of ConsentService (served by ingest, so ``--target`` defaults to the ingest
port), with the client options, output and exit codes of ``switchyard tasks``
(:mod:`switchyard._tasks_cli`, docs/cli.md). The server scopes every call to the API key's
tenant and role (admins grant, revoke and erase; auditors list); an operator key names the
tenant with ``--tenant``. docs/signals.md describes the purposes.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from switchyard._settings import Settings
from switchyard._tasks_cli import (
    EXIT_OK,
    EXIT_USAGE,
    _add_client_arguments,
    _main,
    follow_pages,
    data_console,
)

__all__ = ["PURPOSES", "add_consent_arguments", "run_consent"]

#: The purposes by their command-line names.
PURPOSES = ("class_analytics", "individual_support", "fairness_monitoring")


def add_consent_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="consent_action", required=True, metavar="ACTION")

    def change(name: str, help_: str) -> None:
        p = sub.add_parser(name, help=help_)
        p.add_argument("subject_ref", help="the school's reference of the student")
        p.add_argument("purposes", nargs="+", choices=PURPOSES, metavar="PURPOSE",
                       help=f"one or more of: {', '.join(PURPOSES)}")
        p.add_argument("--guardian", default="", metavar="REF",
                       help="who gave or withdrew it (the guardian's reference)")
        if name == "grant":
            p.add_argument("--group", default="", help="with fairness_monitoring: the group "
                                                       "attribute the guardian gave")
        p.add_argument("--tenant", default="", help="tenant id (default: the API key's)")
        _add_client_arguments(p, "ConsentService (on ingest)")

    change("grant", "record a guardian's consent to one or more purposes")
    change("revoke", "withdraw consent to one or more purposes (takes effect within "
                     "SWITCHYARD_SIGNAL_CONSENT_REFRESH_S)")
    p = sub.add_parser("list", help="the tenant's consents, latest change first")
    p.add_argument("--subject", default="", metavar="REF", help="only this student")
    p.add_argument("--tenant", default="", help="tenant id (default: the API key's)")
    p.add_argument("--limit", type=int, default=100, help="at most this many (0: all pages)")
    _add_client_arguments(p, "ConsentService (on ingest)")
    p = sub.add_parser("erase", help="right to erasure: withdraw every consent of a student "
                                     "and remove the derived data every service holds")
    p.add_argument("subject_ref", help="the school's reference of the student")
    p.add_argument("--tenant", default="", help="tenant id (default: the API key's)")
    _add_client_arguments(p, "ConsentService (on ingest)")


def _consent_json(consent: Any) -> dict[str, Any]:
    from switchyard.v1 import ConsentPurpose

    return {"tenant_id": consent.tenant_id, "subject_ref": consent.subject_ref,
            "purpose": ConsentPurpose.Name(consent.purpose).removeprefix(
                "CONSENT_PURPOSE_").lower(),
            "granted": consent.granted, "guardian_ref": consent.guardian_ref or None,
            "group": consent.group or None,
            "updated_at": consent.updated_at.ToJsonString(), "updated_by": consent.updated_by}


def run_consent(args: argparse.Namespace, settings: Settings) -> int:
    from switchyard.v1 import ConsentServiceStub

    if args.consent_action == "list" and args.limit < 0:
        print("switchyard consent list: --limit must be 0 or more", file=sys.stderr)
        return EXIT_USAGE
    return _main(f"consent {args.consent_action}", args, settings,
                 _ACTIONS[args.consent_action], stub_class=ConsentServiceStub)


async def _change(args: argparse.Namespace, stub: Any) -> int:
    from switchyard.v1 import ConsentPurpose, SetConsentRequest

    granted = args.consent_action == "grant"
    changed = []
    for purpose in dict.fromkeys(args.purposes):
        request = SetConsentRequest(
            tenant_id=args.tenant, subject_ref=args.subject_ref, granted=granted,
            purpose=ConsentPurpose.Value(f"CONSENT_PURPOSE_{purpose.upper()}"),
            guardian_ref=args.guardian,
            group=args.group if granted and purpose == "fairness_monitoring" else "")
        changed.append(_consent_json((await stub.SetConsent(request)).consent))
    if args.json:
        print(json.dumps(changed, indent=2))
    else:
        for c in changed:
            print(f"{c['subject_ref']}: {c['purpose']} "
                  f"{'granted' if c['granted'] else 'withdrawn'} ({c['updated_at']}, by "
                  f"{c['updated_by']})")
    return EXIT_OK


async def _list(args: argparse.Namespace, stub: Any) -> int:
    from rich.table import Table

    from switchyard.v1 import ListConsentsRequest

    consents = await follow_pages(stub.ListConsents, ListConsentsRequest(
        tenant_id=args.tenant, subject_ref=args.subject), "consents", args.limit)
    rows = [_consent_json(c) for c in consents]
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    table = Table(title=f"{len(rows)} consent(s)", title_justify="left")
    for column in ("student", "purpose", "state", "guardian", "group", "updated", "by"):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(r["subject_ref"], r["purpose"], "granted" if r["granted"] else "withdrawn",
                      r["guardian_ref"] or "-", r["group"] or "-", r["updated_at"],
                      r["updated_by"])
    data_console().print(table)
    return EXIT_OK


async def _erase(args: argparse.Namespace, stub: Any) -> int:
    from switchyard.v1 import EraseSubjectRequest

    erased = await stub.EraseSubject(EraseSubjectRequest(tenant_id=args.tenant,
                                                         subject_ref=args.subject_ref))
    out = {"erasure_id": erased.erasure_id, "consents_removed": erased.consents_removed,
           "pseudonyms": erased.pseudonyms}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"erasure {out['erasure_id']}: {out['consents_removed']} consent(s) removed; "
              f"derived data of {out['pseudonyms']} pseudonym(s) being removed everywhere")
    return EXIT_OK


_ACTIONS = {"grant": _change, "revoke": _change, "list": _list, "erase": _erase}
