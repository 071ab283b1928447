"""``switchyard models shadow | canary | promote MODEL | rollback | rollouts``: model rollouts
from a shell (DecisionService.StartRollout, PromoteModel, RollbackModel, ListRollouts).

A candidate version of a model the decision service consults (document_router, a pack's
scorer) is served beside the live one as a shadow (compared, never acted on) or a canary (acts
on a share of the named tenants' tasks), then promoted or rolled back (docs/cli.md). Changes
need an operator's admin key (tenant *); listing an operator's admin or auditor key.
``switchyard models promote engagement --candidate DIR`` is not this: the engagement model is file-based
(services/decision/training/models_cli.py).

The client options, one-line errors and exit codes are those of every command-line client
(:mod:`switchyard._tasks_cli`): 0 ok; 1 the server refused the call; 2 usage or input error
(checked before connecting); 3 cannot connect (or UNAVAILABLE).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import sys
from typing import Any

from switchyard._settings import Settings
from switchyard._tasks_cli import (
    EXIT_OK,
    EXIT_USAGE,
    _add_client_arguments,
    _CannotConnect,
    _connect,
    rpc_error_line,
    _main,
    _Usage,
    data_console,
)

__all__ = ["MAX_CANARY_SHARE", "ROLLOUT_ACTIONS", "add_decision_client_arguments",
           "add_rollout_arguments", "describe", "fetch_rollouts", "parse_share",
           "parse_tenants", "parse_version", "render_rollouts", "rollout_json", "run"]

#: ``switchyard models`` actions of this module (``promote`` MODEL is dispatched here by
#: services/decision/training/models_cli.py when it is not the engagement model).
ROLLOUT_ACTIONS = ("shadow", "canary", "rollback", "rollouts")
#: The largest share of the tenants' tasks a canary may take (StartRolloutRequest).
MAX_CANARY_SHARE = 0.5


def add_decision_client_arguments(parser: argparse.ArgumentParser, *, json_flag: bool = True,
                                  connect_timeout: float = 5.0) -> None:
    """``--target`` (DecisionService), ``--api-key``, ``--connect-timeout`` [, ``--json``]."""
    _add_client_arguments(parser, "DecisionService", "SWITCHYARD_DECISION_GRPC_PORT",
                          json_flag=json_flag, connect_timeout=connect_timeout)


def add_rollout_arguments(models: Any) -> None:
    """Register ``shadow``, ``canary``, ``rollback`` and ``rollouts`` on ``switchyard
    models``' sub-parsers (``promote`` is registered with the engagement gate's options)."""
    p = models.add_parser("shadow", help="serve a candidate version beside the live one as a "
                                         "shadow: compared on sampled tasks, never acted on "
                                         "(DecisionService.StartRollout; operator admins)")
    p.add_argument("model", help="document_router or a scorer model a pack names")
    p.add_argument("--version", required=True, metavar="N",
                   help="the candidate's version directory (digits)")
    add_decision_client_arguments(p)
    p = models.add_parser("canary", help="let a candidate version decide a share of the "
                                         "tenants' tasks (DecisionService.StartRollout; operator admins)")
    p.add_argument("model", help="document_router or a scorer model a pack names")
    p.add_argument("--version", required=True, metavar="N",
                   help="the candidate's version directory (digits)")
    p.add_argument("--share", required=True, metavar="F",
                   help=f"share of the tenants' tasks the candidate decides, in (0, "
                        f"{MAX_CANARY_SHARE:g}]")
    p.add_argument("--tenants", metavar="A,B",
                   help="only these tenants' tasks (default: every tenant's)")
    add_decision_client_arguments(p)
    p = models.add_parser("rollback", help="withdraw a model's candidate: the live version "
                                           "decides alone (DecisionService.RollbackModel; "
                                           "operator admins)")
    p.add_argument("model")
    p.add_argument("--reason", default="", help="kept in the audit log and the rollout's note")
    add_decision_client_arguments(p)
    p = models.add_parser("rollouts", help="every model's rollout: live and candidate "
                                           "versions, stage and evidence "
                                           "(DecisionService.ListRollouts; operator admins and auditors)")
    add_decision_client_arguments(p)


# --- input ---------------------------------------------------------------------------------


def parse_version(text: str) -> str:
    """A version directory: ASCII digits only (``_Usage`` otherwise)."""
    if not re.fullmatch(r"[0-9]+", text or ""):
        raise _Usage(f"--version: {text!r} is not a version directory (digits, e.g. 3)")
    return text


def parse_share(text: str) -> float:
    """A canary share: a number in (0, MAX_CANARY_SHARE] (``_Usage`` otherwise)."""
    try:
        share = float(text)
    except (TypeError, ValueError):
        share = math.nan
    if not (0 < share <= MAX_CANARY_SHARE):   # also false for nan
        raise _Usage(f"--share: {text!r} is not a share in (0, {MAX_CANARY_SHARE:g}] "
                     "(e.g. 0.1 for 10% of the tasks)")
    return share


def parse_tenants(text: str | None) -> list[str]:
    """``a,b`` -> ``["a", "b"]`` (blanks trimmed, repeats dropped); None -> every tenant."""
    if text is None:
        return []
    tenants = list(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
    if not tenants:
        raise _Usage("--tenants: name at least one tenant (leave it out for every tenant)")
    return tenants


def _model(text: str) -> str:
    if not text.strip():
        raise _Usage("MODEL: give the model's name (e.g. document_router)")
    return text.strip()


# --- output --------------------------------------------------------------------------------


def _stage(stage: int) -> str:
    from switchyard.v1 import RolloutStage

    try:
        return RolloutStage.Name(stage).removeprefix("ROLLOUT_STAGE_")
    except ValueError:
        return str(stage)


def _evidence_json(e: Any) -> dict[str, int]:
    return {"decisions": e.decisions, "escalated": e.escalated, "errors": e.errors,
            "judged": e.judged, "agreed": e.agreed}


def _time(r: Any, field: str) -> str | None:
    return getattr(r, field).ToJsonString() if r.HasField(field) else None


def rollout_json(r: Any) -> dict[str, Any]:
    """One ``ModelRollout`` as JSON (stage as NONE/SHADOW/CANARY, times RFC 3339 or null)."""
    return {"model": r.model_name, "live_version": r.live_version,
            "candidate_version": r.candidate_version, "stage": _stage(r.stage),
            "canary_share": r.canary_share, "tenants": list(r.tenants),
            "started_at": _time(r, "started_at"),
            "updated_at": _time(r, "updated_at"),
            "updated_by": r.updated_by, "note": r.note,
            "live": _evidence_json(r.live), "candidate": _evidence_json(r.candidate)}


def _percent(share: float) -> str:
    return f"{share * 100:.4g}%"


def _whose(tenants: list[str]) -> str:
    if not tenants:
        return "every tenant's"
    names = [f"{t}'s" for t in tenants]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def describe(r: Any) -> str:
    """One line on a model's rollout state, e.g. ``document_router: version 3 canary on 10%
    of acme's tasks (live 1)``."""
    from switchyard.v1 import RolloutStage

    live = r.live_version or "?"
    if r.candidate_version and r.stage == RolloutStage.ROLLOUT_STAGE_CANARY:
        return (f"{r.model_name}: version {r.candidate_version} canary on "
                f"{_percent(r.canary_share)} of {_whose(list(r.tenants))} tasks (live {live})")
    if r.candidate_version and r.stage == RolloutStage.ROLLOUT_STAGE_SHADOW:
        return (f"{r.model_name}: version {r.candidate_version} shadows live {live} (compared "
                "on sampled tasks, never acted on)")
    return f"{r.model_name}: version {live} live, no candidate"


def _ratio(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "-"


def render_rollouts(rollouts: list[dict[str, Any]], console: Any = None) -> None:
    """:func:`rollout_json` items as rich tables: the rollouts, then what each version
    decided since its rollout started."""
    from rich.table import Table

    console = console or data_console()
    table = Table(title="rollouts", title_justify="left")
    for column in ("model", "live", "candidate", "stage", "share", "tenants", "since (UTC)",
                   "by", "note"):
        table.add_column(column)
    for r in rollouts:
        canary = r["stage"] == "CANARY"
        table.add_row(r["model"], r["live_version"] or "-", r["candidate_version"] or "-",
                      r["stage"].lower(), _percent(r["canary_share"]) if canary else "-",
                      (", ".join(r["tenants"]) or "all") if canary else "-",
                      r["started_at"] or "-", r["updated_by"] or "-", r["note"] or "-")
    console.print(table)
    table = Table(title="since the rollout started (candidate errors: decided by the live "
                        "version instead)", title_justify="left")
    for column in ("model", "version", "decisions", "escalated %", "errors", "judged",
                   "agreed %"):
        table.add_column(column)
    for r in rollouts:
        rows = [("live", r["live_version"], r["live"])]
        if r["candidate_version"] or any(r["candidate"].values()):
            rows.append(("candidate", r["candidate_version"], r["candidate"]))
        for role, version, e in rows:
            table.add_row(r["model"], f"{role} {version or '-'}", str(e["decisions"]),
                          _ratio(e["escalated"], e["decisions"]), str(e["errors"]),
                          str(e["judged"]), _ratio(e["agreed"], e["judged"]))
    console.print(table)


# --- calls ---------------------------------------------------------------------------------


def _print_result(args: argparse.Namespace, rollout: Any, suffix: str = "") -> int:
    if args.json:
        print(json.dumps(rollout_json(rollout), indent=2))
    else:
        print(describe(rollout) + suffix)
    return EXIT_OK


def _prepare(args: argparse.Namespace) -> Any:
    """The request of ``args.models_action``, checked before connecting (``_Usage``)."""
    from switchyard.v1 import (
        ListRolloutsRequest,
        PromoteModelRequest,
        RollbackModelRequest,
        RolloutStage,
        StartRolloutRequest,
    )

    action = args.models_action
    if action == "rollouts":
        return ListRolloutsRequest()
    model = _model(args.model)
    if action == "promote":
        return PromoteModelRequest(model_name=model, reason=args.reason)
    if action == "rollback":
        return RollbackModelRequest(model_name=model, reason=args.reason)
    version = parse_version(args.version)
    if action == "shadow":
        return StartRolloutRequest(model_name=model, candidate_version=version,
                                   stage=RolloutStage.ROLLOUT_STAGE_SHADOW)
    return StartRolloutRequest(model_name=model, candidate_version=version,
                               stage=RolloutStage.ROLLOUT_STAGE_CANARY,
                               canary_share=parse_share(args.share),
                               tenants=parse_tenants(args.tenants))


async def _call(args: argparse.Namespace, stub: Any, request: Any) -> int:
    action = args.models_action
    if action == "rollouts":
        response = await stub.ListRollouts(request)
        rollouts = [rollout_json(r) for r in response.rollouts]
        if args.json:
            print(json.dumps({"rollouts": rollouts}, indent=2))
        elif not rollouts:
            print("no rollouts: every model's live version decides alone")
        else:
            render_rollouts(rollouts)
        return EXIT_OK
    if action == "promote":
        return _print_result(args, (await stub.PromoteModel(request)).rollout, " (promoted)")
    if action == "rollback":
        return _print_result(args, (await stub.RollbackModel(request)).rollout,
                             " (candidate rolled back)")
    return _print_result(args, (await stub.StartRollout(request)).rollout)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run ``switchyard models shadow|canary|promote MODEL|rollback|rollouts``."""
    command = f"models {args.models_action}"
    try:
        request = _prepare(args)
    except _Usage as exc:
        print(f"switchyard {command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from switchyard.v1 import DecisionServiceStub

    return _main(command, args, settings, lambda a, stub: _call(a, stub, request),
                 stub_class=DecisionServiceStub, default_port=settings.decision_grpc_port)


def fetch_rollouts(args: argparse.Namespace, settings: Settings
                   ) -> tuple[list[dict[str, Any]] | None, str]:
    """For ``switchyard models status``: every rollout (:func:`rollout_json`), or None and one
    line on why not (the decision service unreachable, the call refused). Never raises for
    the decision service's sake."""
    import grpc

    from switchyard.v1 import DecisionServiceStub, ListRolloutsRequest

    target = args.target or f"127.0.0.1:{settings.decision_grpc_port}"

    async def go() -> list[dict[str, Any]]:
        channel, stub = await _connect(args, settings, DecisionServiceStub,
                                       settings.decision_grpc_port)
        try:
            response = await stub.ListRollouts(ListRolloutsRequest())
        finally:
            await channel.close()
        return [rollout_json(r) for r in response.rollouts]

    try:
        try:
            asyncio.get_running_loop()
        except RuntimeError:   # the command line: no loop yet
            return asyncio.run(go()), ""
        # called from a running loop (a test, a notebook): run its own loop on another thread
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(lambda: asyncio.run(go())).result(), ""
    except (_CannotConnect, _Usage) as exc:
        return None, f"decision service: {exc}"
    except grpc.aio.AioRpcError as exc:
        return None, f"decision service at {target}: {rpc_error_line(exc)}"
