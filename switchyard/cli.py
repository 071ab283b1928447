"""The ``switchyard`` command: run services, the embedded stack, maintenance, the demo and the
clients (submit, tasks, review, breakers, health).

Every subcommand reads its configuration from SWITCHYARD_* environment variables (see
docs/settings.md); flags only cover what differs between invocations.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
from collections.abc import Callable, Sequence

from switchyard._settings import (
    Settings,
    SettingsError,
    env_var,
    settings_reference_markdown,
)

SERVICES = ("ingest", "decision", "executor", "review")


def _cmd_settings(args: argparse.Namespace, settings: Settings) -> int:
    if args.markdown:
        sys.stdout.write(settings_reference_markdown())
    else:
        secrets = {env_var(f.name) for f in dataclasses.fields(Settings) if f.metadata["secret"]}
        for key, value in sorted(settings.to_env().items()):
            print(f"{key}={'***' if key in secrets and value else value}")
    return 0


def _cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from switchyard._db import migrate

    applied = asyncio.run(migrate(settings))
    print(f"applied migrations: {applied or 'none (up to date)'}")
    return 0


def _cmd_topics(args: argparse.Namespace, settings: Settings) -> int:
    from switchyard._topics import ALL_TOPICS, create_topics

    if args.action == "list":
        for topic in ALL_TOPICS:
            print(f"{topic.full_name(settings):<24} {topic.cleanup.value:<8} key={topic.key:<22}"
                  f" {topic.value_type}")
        return 0
    created = asyncio.run(create_topics(settings))
    print(f"created topics: {', '.join(created) or 'none (all exist)'}")
    return 0


def _cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from importlib import import_module

    module = import_module(f"services.{args.service}.service")
    asyncio.run(module.main(settings, apply_migrations=args.migrate))
    return 0


def _cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from switchyard._launcher import up

    return up(settings, detach=args.detach)


def _cmd_down(args: argparse.Namespace, settings: Settings) -> int:
    from switchyard._launcher import down

    return down(settings)


def _cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from switchyard._launcher import status

    return status(settings, as_json=args.json)


def _cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from switchyard._demo import run_demo

    return run_demo(settings, tasks=args.tasks, seed=args.seed, with_stack=args.with_stack,
                    admissions=args.admissions, classrooms=args.classrooms,
                    purchase_orders=args.purchase_orders)


def _cmd_audit(args: argparse.Namespace, settings: Settings) -> int:
    from switchyard import _audit_cli

    if args.action == "show":
        if not args.task_id:
            print("switchyard audit show: TASK_ID is required", file=sys.stderr)
            return 2
        return _audit_cli.show(settings, args.task_id)
    return _audit_cli.verify_chain(settings, args.tenant)


def _cmd_review(args: argparse.Namespace, settings: Settings) -> int:
    from services.review.cli import run

    return run(args, settings)


def _cmd_breakers(args: argparse.Namespace, settings: Settings) -> int:
    from switchyard._breakers_cli import run

    return run(settings, args.target, args.api_key, args.reset, args.json)


def _cmd_submit(args: argparse.Namespace, settings: Settings) -> int:
    from switchyard._tasks_cli import run_submit

    return run_submit(args, settings)


def _cmd_tasks(args: argparse.Namespace, settings: Settings) -> int:
    from switchyard._tasks_cli import run_tasks

    return run_tasks(args, settings)


#: ``switchyard models`` actions of services/decision/training/models_cli.py (engagement candidates,
#: the fairness gate, serving status, router candidates from reviewers' labels; ``promote`` of
#: another model than engagement goes on to switchyard/_rollouts_cli.py, as do shadow, canary,
#: rollback and rollouts)
MODELS_ACTIONS = ("train-engagement", "promote", "status", "retrain")


def _cmd_models(args: argparse.Namespace, settings: Settings) -> int:
    if args.models_action == "health":
        from switchyard._tasks_cli import run_model_health

        return run_model_health(args, settings)
    from switchyard._rollouts_cli import ROLLOUT_ACTIONS

    if args.models_action in ROLLOUT_ACTIONS:
        from switchyard._rollouts_cli import run as run_rollouts

        return run_rollouts(args, settings)
    if args.models_action in MODELS_ACTIONS:
        from services.decision.training.models_cli import run as run_models

        return run_models(args, settings)
    from services.decision.training.__main__ import run

    return run(args)


def _cmd_signals(args: argparse.Namespace, settings: Settings) -> int:
    from switchyard._signals_cli import run_signals

    return run_signals(args, settings)


def _cmd_packs(args: argparse.Namespace, settings: Settings) -> int:
    from switchyard._packs_cli import run

    return run(args, settings)


def _version() -> str:
    """The installed distribution's version (the one pyproject.toml declares)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("switchyard")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown (not installed)"


def _cmd_purge(args: argparse.Namespace, settings: Settings) -> int:
    from services.decision.engagement.erasure import purge_engagement
    from switchyard._db import create_pool
    from switchyard._payloads import codec_for
    from switchyard.documents import blob_store_for
    from switchyard._retention import (
        DRIFT_SAMPLE_DAYS,
        pack_retention_days,
        parse_retention,
        purge,
    )

    try:
        default_days, per_tenant = parse_retention(settings.retention_days,
                                                   settings.retention_overrides)
    except ValueError as exc:
        print(f"switchyard purge: {exc}", file=sys.stderr)
        return 2

    async def run() -> None:
        pool = await create_pool(settings.replace(postgres_pool_min=1, postgres_pool_max=1))
        try:
            async with pool.acquire() as conn:
                blobs = blob_store_for(settings, conn)
                try:
                    report = await purge(conn, default_days, per_tenant, dry_run=args.dry_run,
                                         codec=codec_for(settings),
                                         pack_days=await pack_retention_days(conn),
                                         blobs=blobs)
                finally:
                    await blobs.close()
                if not args.dry_run:  # classroom engagement: its own retention settings
                    engagement = await purge_engagement(
                        conn, settings.signal_subject_retention_days,
                        settings.signal_class_retention_days)
        finally:
            await pool.close()
        purged, deleted = ("would purge", "would delete") if args.dry_run else \
            ("purged", "deleted")
        print(f"{purged} payloads of {report.tasks} task(s), {report.review_items} review "
              f"item(s), {report.dead_letters} dead letter(s), {report.decisions} "
              f"decision(s), {report.blobs} document blob(s); {deleted} "
              f"{report.drift_samples} drift sample(s) older than {DRIFT_SAMPLE_DAYS} days")
        if not args.dry_run:
            print(f"deleted {engagement.subject_windows} per-student engagement window(s) and "
                  f"{engagement.alerts} engagement alert(s) older than "
                  f"{settings.signal_subject_retention_days} days, {engagement.windows} class "
                  f"engagement window(s) older than {settings.signal_class_retention_days} days")

    asyncio.run(run())
    return 0


def _cmd_keys(args: argparse.Namespace, settings: Settings) -> int:
    from switchyard import _keys_cli

    if args.action == "status":
        return _keys_cli.status(settings)
    return _keys_cli.rewrap(settings, args.batch, args.dry_run)


def _cmd_dead_letters(args: argparse.Namespace, settings: Settings) -> int:
    from switchyard._dead_letters_cli import run_dead_letters

    return run_dead_letters(args, settings)


def _cmd_consent(args: argparse.Namespace, settings: Settings) -> int:
    from switchyard._consent_cli import run_consent

    return run_consent(args, settings)


def _cmd_webhooks(args: argparse.Namespace, settings: Settings) -> int:
    from switchyard._webhooks_cli import run_webhooks

    return run_webhooks(args, settings)


def _cmd_stats(args: argparse.Namespace, settings: Settings) -> int:
    from switchyard._stats_cli import stats

    if args.trend:
        from switchyard._stats_cli import trend

        return trend(settings, tenant=args.tenant, window_h=args.window_h,
                     bucket_m=args.bucket_m, as_json=args.json)
    return stats(settings, as_json=args.json, once=args.once, interval_s=args.interval,
                 tenant=args.tenant)


def _cmd_health(args: argparse.Namespace, settings: Settings) -> int:
    from switchyard._health_cli import run

    flags = {"client_tls_ca_file": args.ca, "client_tls_cert_file": args.cert,
             "client_tls_key_file": args.key, "client_tls_server_name": args.server_name}
    return run(settings.replace(**{k: v for k, v in flags.items() if v is not None}),
               args.targets, timeout_s=args.timeout, service=args.service)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser. With ``command``, only that command's arguments are declared
    and only its modules imported: `switchyard run ingest` (every service process, every
    container start) would otherwise import every other command's module first, a fifth of a
    service's start-up CPU. None (help, or a name that is no command): all of them."""
    parser = argparse.ArgumentParser(
        prog="switchyard",
        description="Event-driven AI task automation. Configuration: SWITCHYARD_* env vars "
                    "(`switchyard settings`).",
    )
    parser.add_argument("--version", action="version", version=f"switchyard {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def declares(name: str) -> bool:
        return command in (None, name)

    def add(name: str, fn: Callable[[argparse.Namespace, Settings], int], help_: str
            ) -> argparse.ArgumentParser:
        """The command's parser; another command's (when only ``command`` is parsed) is a
        scratch parser nobody reads."""
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(fn=fn)
        return p if declares(name) else argparse.ArgumentParser(add_help=False)

    p = add("up", _cmd_up, "Start the embedded stack (broker, PostgreSQL, Triton, services).")
    p.add_argument("--detach", action="store_true", help="return once healthy; stop with `down`")
    add("down", _cmd_down, "Stop a detached embedded stack.")
    p = add("status", _cmd_status, "Health of each component of the embedded stack.")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = add("run", _cmd_run, "Run one service in the foreground (what a container runs).")
    p.add_argument("service", choices=SERVICES)
    p.add_argument("--migrate", action="store_true", help="apply migrations before starting")
    add("migrate", _cmd_migrate, "Apply PostgreSQL migrations.")
    p = add("topics", _cmd_topics, "Create or list the Kafka topics in the registry.")
    p.add_argument("action", choices=("create", "list"))
    p = add("settings", _cmd_settings, "Print the effective settings (secrets masked).")
    p.add_argument("--markdown", action="store_true", help="print the settings reference")
    p = add("audit", _cmd_audit, "Show a task's audit trail or verify the hash chains.")
    p.add_argument("action", choices=("show", "verify"))
    p.add_argument("task_id", nargs="?", help="task id (show)")
    p.add_argument("--tenant", help="verify only this tenant's chain")
    p = add("review", _cmd_review, "Review items from a shell: list, show, claim, approve, reject.")
    if declares("review"):
        from services.review.cli import add_arguments as add_review_arguments

        add_review_arguments(p)
    p = add("submit", _cmd_submit, "Submit files as tasks (one per file; re-running returns "
                                   "the same tasks); --wait for their outcome.")
    if declares("submit"):
        from switchyard._tasks_cli import add_submit_arguments

        add_submit_arguments(p)
    p = add("tasks", _cmd_tasks, "Tasks from a shell: list, get, watch, cancel, retry, "
                                 "timeline, redrive.")
    if declares("tasks"):
        from switchyard._tasks_cli import add_tasks_arguments

        add_tasks_arguments(p)
    p = add("dead-letters", _cmd_dead_letters, "The dead-letter queue: list, show, replay, resolve "
                                                "(admin; auditors read).")
    if declares("dead-letters"):
        from switchyard._dead_letters_cli import add_dead_letters_arguments

        add_dead_letters_arguments(p)
    p = add("consent", _cmd_consent, "Classroom signals' consent registry: grant, revoke, "
                                     "list, erase (admin; auditors list).")
    if declares("consent"):
        from switchyard._consent_cli import add_consent_arguments

        add_consent_arguments(p)
    p = add("webhooks", _cmd_webhooks, "A tenant's webhooks and their deliveries; deliver "
                                       "again (one, or every failed one since a time).")
    if declares("webhooks"):
        from switchyard._webhooks_cli import add_webhooks_arguments

        add_webhooks_arguments(p)
    p = add("packs", _cmd_packs, "Automation packs: list, show, validate, apply, diff, test, "
                                 "schema (docs/packs.md).")
    if declares("packs"):
        from switchyard._packs_cli import add_packs_arguments

        add_packs_arguments(p)
    p = add("signals", _cmd_signals, "Classroom signals: simulate classrooms sending "
                                     "SignalFrames (docs/cli.md).")
    if declares("signals"):
        from switchyard._signals_cli import add_signals_arguments

        add_signals_arguments(p)
    p = add("models", _cmd_models, "Train the Triton models: the router learns one class per "
                                   "enabled pack (shipped and --packs DIR) and 'other'.")
    if declares("models"):
        _add_models_arguments(p)
    p = add("stats", _cmd_stats, "Business KPIs, live (Ctrl-C to quit) or as JSON.")
    p.add_argument("--json", action="store_true", help="print once as JSON")
    p.add_argument("--once", action="store_true",
                   help="print the tables once (what it does when stdout is no terminal: a "
                        "pipe or a file gets one snapshot, not a live view)")
    p.add_argument("--interval", type=float, default=2.0, help="refresh seconds (live view)")
    p.add_argument("--tenant", help="only this tenant")
    p.add_argument("--trend", action="store_true",
                   help="the tenant's KPIs per time bucket (needs --tenant), as the operator "
                        "console charts them")
    p.add_argument("--window-h", type=float, default=24.0, help="trend: hours back from now")
    p.add_argument("--bucket-m", type=float, default=60.0, help="trend: minutes a bucket")
    p = add("purge", _cmd_purge, "Strip raw payloads past each tenant's retention.")
    p.add_argument("--dry-run", action="store_true", help="count, change nothing")
    p = add("keys", _cmd_keys, "Encryption at rest: rows per key id (status), or re-wrap "
                               "payloads under the active key (rewrap) to retire an old one.")
    p.add_argument("action", choices=("status", "rewrap"))
    p.add_argument("--batch", type=int, default=500, help="rows per round trip (rewrap)")
    p.add_argument("--dry-run", action="store_true", help="count, change nothing (rewrap)")
    p = add("breakers", _cmd_breakers, "The executor's circuit breakers (shared by every "
                                       "replica); --reset NAME closes one.")
    p.add_argument("--reset", metavar="NAME", help="close this breaker by hand")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--target", help="executor admin address (default 127.0.0.1:"
                                    "$SWITCHYARD_EXECUTOR_GRPC_PORT)")
    p.add_argument("--api-key", help="API key (admin to reset; admin or auditor to list; "
                                     "default $SWITCHYARD_CLIENT_API_KEY)")
    p = add("health", _cmd_health, "Ask gRPC servers for their grpc.health.v1 status; exit 0 "
                                   "only when every one is SERVING.")
    p.add_argument("targets", nargs="+", metavar="HOST:PORT")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds per target")
    p.add_argument("--service", default="", metavar="NAME",
                   help="the health service to ask: empty (the default) is readiness, "
                        "`liveness` whether the process should be restarted")
    p.add_argument("--ca", help="CA bundle (PEM): connect with TLS "
                                "(default $SWITCHYARD_CLIENT_TLS_CA_FILE)")
    p.add_argument("--cert", help="client certificate (PEM), for mutual TLS "
                                  "(default $SWITCHYARD_CLIENT_TLS_CERT_FILE)")
    p.add_argument("--key", help="client private key (PEM), for mutual TLS "
                                 "(default $SWITCHYARD_CLIENT_TLS_KEY_FILE)")
    p.add_argument("--server-name",
                   help="name to verify the server certificate against (default "
                        "$SWITCHYARD_CLIENT_TLS_SERVER_NAME, else the host)")
    p = add("demo", _cmd_demo, "Push a mixed demo workload through the pipeline; print a summary.")
    p.add_argument("--tasks", type=int, default=200, help="number of tasks to submit")
    p.add_argument("--seed", type=int, default=7, help="workload seed")
    p.add_argument("--admissions", type=int, default=None,
                   help="hospital admission forms among them (default: one per ten tasks)")
    p.add_argument("--purchase-orders", type=int, default=None,
                   help="supplier invoices against purchase orders the demo ERP is given "
                        "first (default: one per eight tasks; 0: none)")
    p.add_argument("--classrooms", type=int, default=4,
                   help="simulated classrooms whose signals go through the engagement "
                        "pipeline afterwards (0: none)")
    p.add_argument("--with-stack", action="store_true",
                   help="start the embedded stack first and stop it afterwards")
    return parser


def _add_models_arguments(p: argparse.ArgumentParser) -> None:
    models = p.add_subparsers(dest="models_action", required=True, metavar="ACTION")
    train = models.add_parser("train", help="train the router, invoice_risk and engagement "
                                            "models into the model repository")
    from services.decision.training.__main__ import add_arguments as add_training_arguments

    add_training_arguments(train)
    from switchyard._tasks_cli import add_model_health_arguments

    add_model_health_arguments(models.add_parser(
        "health", help="shadow agreement and input drift per time bucket "
                       "(DecisionService.GetModelHealth; admins and auditors)"))
    from services.decision.training.models_cli import add_models_arguments

    add_models_arguments(models)
    from switchyard._rollouts_cli import add_rollout_arguments

    add_rollout_arguments(models)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # the command is the first word (the parser has no option that takes a value before it)
    command = argv[0] if argv and not argv[0].startswith("-") else None
    args = build_parser(command).parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"switchyard: invalid setting: {exc}", file=sys.stderr)
        return 2
    try:
        return int(args.fn(args, settings) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `switchyard ... | head`: the reader has what it wanted; no traceback, and none
        # from flushing stdout at exit either
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports a writer the pipe closed on
    except Exception as exc:
        # a call a command did not expect to fail (the demo's, a server gone mid-run): one
        # line and the documented exit status, never a traceback
        grpc = sys.modules.get("grpc")
        if grpc is None or not isinstance(exc, grpc.aio.AioRpcError):
            raise
        from switchyard._tasks_cli import EXIT_CONNECT, EXIT_REFUSED, rpc_error_line

        print(f"switchyard {args.command}: {rpc_error_line(exc)}", file=sys.stderr)
        return EXIT_CONNECT if exc.code() in (grpc.StatusCode.UNAVAILABLE,
                                              grpc.StatusCode.DEADLINE_EXCEEDED) else EXIT_REFUSED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
