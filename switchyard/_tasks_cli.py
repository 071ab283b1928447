"""``switchyard submit``, ``switchyard tasks list|get|watch|cancel|retry|timeline|redrive``
and ``switchyard models health``: IngestService (and DecisionService.GetModelHealth) from a
shell.

These commands speak the product's own gRPC stubs (``switchyard.v1``) through
:func:`switchyard._grpc.client_channel`, like ``switchyard review`` and ``switchyard
breakers``: the API key (``SWITCHYARD_CLIENT_API_KEY`` or ``--api-key``) and TLS
(``SWITCHYARD_CLIENT_TLS_*``) come from the same settings as every command-line client, and
the ``switchyard`` package does not depend on the separately installed client SDK.

Exit codes (docs/cli.md): 0 ok; 1 the server refused a call, or a waited-for task ended
other than SUCCEEDED; 2 usage or input error; 3 cannot connect (or the service answered
UNAVAILABLE). Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from switchyard._settings import Settings
from switchyard._taskstore import TERMINAL, stage_name, status_name

if TYPE_CHECKING:  # rich is imported when a table is printed (command start-up stays quick)
    from rich.console import Console

__all__ = ["CONTENT_TYPES", "EXIT_CONNECT", "EXIT_OK", "EXIT_REFUSED", "EXIT_USAGE",
           "add_model_health_arguments", "add_submit_arguments", "add_tasks_arguments",
           "data_console", "follow_pages", "idempotency_key", "rpc_error_line",
           "run_model_health", "run_submit", "run_tasks"]

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_CONNECT = 0, 1, 2, 3
#: ``tasks cancel`` of an executing task: the request is accepted, its compensation under way
EXIT_COMPENSATING = 4
#: Content type of a submitted file, by its extension (every type ingest accepts: text, JSON,
#: PDFs, page images and e-mails; ingest checks the bytes against the type).
CONTENT_TYPES = {".txt": "text/plain", ".json": "application/json", ".pdf": "application/pdf",
                 ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
                 ".tif": "image/tiff", ".tiff": "image/tiff",
                 ".eml": "message/rfc822"}


class _Usage(Exception):
    """Bad input found before or instead of a call: exit 2."""


class _CannotConnect(Exception):
    """The target did not answer (or answered UNAVAILABLE): exit 3."""


class _Refused(Exception):
    """Not a gRPC error, but a failure to report with exit 1 (e.g. a wait that timed out)."""


def _add_client_arguments(parser: argparse.ArgumentParser, service: str = "IngestService",
                          port_variable: str = "SWITCHYARD_INGEST_GRPC_PORT", *,
                          json_flag: bool = True, connect_timeout: float = 5.0) -> None:
    """``--target``, ``--api-key``, ``--connect-timeout`` and (unless ``json_flag`` is false,
    for a parser that has its own) ``--json``."""
    parser.add_argument("--target", metavar="HOST:PORT",
                        help=f"{service} address (default 127.0.0.1:${port_variable})")
    parser.add_argument("--api-key", help="API key (default $SWITCHYARD_CLIENT_API_KEY); TLS "
                                          "comes from $SWITCHYARD_CLIENT_TLS_*")
    parser.add_argument("--connect-timeout", type=float, default=connect_timeout, metavar="S",
                        help=f"seconds to wait for the connection (default {connect_timeout:g})")
    if json_flag:
        parser.add_argument("--json", action="store_true", help="machine-readable output")


def add_submit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE",
                        help="one task per file, its type by its extension: "
                             + ", ".join(CONTENT_TYPES))
    parser.add_argument("--tenant", default="default", help="tenant id (default: default)")
    parser.add_argument("--kind", default="", help="task kind (default: the router decides)")
    parser.add_argument("--metadata", action="append", default=[], metavar="KEY=VALUE",
                        help="task metadata (repeatable); rules and plans read it as metadata")
    parser.add_argument("--key-prefix", default="file:",
                        help="idempotency key prefix; the key is PREFIX + sha256:<content "
                             "hash>, so re-running the command returns the same tasks "
                             "(default: file:)")
    parser.add_argument("--wait", action="store_true",
                        help="wait until every task is terminal; exit 1 unless all SUCCEEDED")
    parser.add_argument("--timeout", type=float, default=0.0, metavar="S",
                        help="with --wait: give up after this many seconds, exit 1 (0: never)")
    _add_client_arguments(parser)


def add_tasks_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="tasks_action", required=True, metavar="ACTION")
    p = sub.add_parser("list", help="a tenant's tasks, newest first")
    p.add_argument("--tenant", default="",
                   help="tenant id (default: the API key's own tenant; with an operator key "
                        "or auth off: default)")
    p.add_argument("--status", action="append", default=[],
                   help="queued, in_progress, blocked, succeeded, failed, cancelled "
                        "(repeatable or comma separated)")
    p.add_argument("--kind", action="append", default=[], metavar="K",
                   help="only tasks of this kind (repeatable: any of them)")
    p.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE",
                   help="only tasks with this metadata pair (repeatable: all of them)")
    p.add_argument("--idempotency-key", default="", metavar="KEY",
                   help="only the task submitted with this key (how a Kafka producer finds "
                        "its task)")
    p.add_argument("--limit", type=int, default=50, help="at most this many (0: all)")
    _add_client_arguments(p)
    p = sub.add_parser("get", help="one task")
    p.add_argument("task_id")
    _add_client_arguments(p)
    p = sub.add_parser("watch", help="status events until the task is terminal; exit 1 "
                                     "unless it SUCCEEDED")
    p.add_argument("task_id")
    _add_client_arguments(p)
    p = sub.add_parser("cancel", help="cancel a task")
    p.add_argument("task_id")
    p.add_argument("--reason", default="", help="recorded with the cancellation")
    _add_client_arguments(p)
    p = sub.add_parser("retry", help="submit a FAILED or CANCELLED task again, as a new task")
    p.add_argument("task_id")
    p.add_argument("--attempt", type=int, default=1,
                   help="which retry this is (the same attempt returns the same new task)")
    _add_client_arguments(p)
    p = sub.add_parser("timeline", help="a task's status changes and audit entries, oldest "
                                        "first (admins and auditors)")
    p.add_argument("task_id")
    _add_client_arguments(p)
    p = sub.add_parser("redrive", help="publish an unfinished task again now (admins)")
    p.add_argument("task_id")
    p.add_argument("--reason", default="", help="recorded (as a hash) in the audit entry")
    _add_client_arguments(p)
    p = sub.add_parser("complete-wait", help="complete a plan's callback wait "
                                             "(ExecutorService.CompleteWait)")
    p.add_argument("token", help="<task_id>:<step_id> of the waiting step")
    p.add_argument("--output", default="{}", metavar="JSON",
                   help="a JSON object; later steps read it as steps.<name>.output")
    p.add_argument("--error", default="", help="fail the step instead (the plan compensates)")
    _add_client_arguments(p, "ExecutorService", "SWITCHYARD_EXECUTOR_GRPC_PORT")


async def follow_pages(rpc: Callable[[Any], Awaitable[Any]], request: Any, field: str,
                       limit: int, page_cap: int = 500) -> list[Any]:
    """Call a paged List RPC, following its page tokens until ``limit`` items (0: all of
    them); ``field`` names the repeated field of the response."""
    items: list[Any] = []
    while True:
        wanted = limit - len(items) if limit else page_cap
        request.page_size = max(1, min(wanted, page_cap))
        page = await rpc(request)
        items += getattr(page, field)
        if not page.next_page_token or 0 < limit <= len(items):
            return items
        request.page_token = page.next_page_token


def idempotency_key(prefix: str, body: bytes) -> str:
    """The key a file is submitted under: its content's hash, so a re-run finds its task."""
    return f"{prefix}sha256:{hashlib.sha256(body).hexdigest()}"


def _task_json(task: Any) -> dict[str, Any]:
    """A Task as JSON: the envelope's fields without the document body (it can be large)."""
    envelope = task.envelope
    return {
        "task_id": envelope.task_id, "tenant_id": envelope.tenant_id,
        "idempotency_key": envelope.idempotency_key, "kind": envelope.kind,
        "content_type": envelope.document.content_type, "filename": envelope.document.filename,
        "metadata": dict(envelope.metadata), "status": status_name(task.status),
        "stage": stage_name(task.stage), "reason": task.reason,
        "created_at": task.created_at.ToJsonString() if task.HasField("created_at") else None,
        "updated_at": task.updated_at.ToJsonString() if task.HasField("updated_at") else None,
        "sequence": task.sequence,
    }


def _event_json(event: Any) -> dict[str, Any]:
    from google.protobuf.json_format import MessageToDict

    out = MessageToDict(event, preserving_proto_field_name=True)
    out["status"], out["stage"] = status_name(event.status), stage_name(event.stage)
    out["sequence"] = event.sequence
    return out


#: The tenant of the README path: ``tasks list`` asks for it when the key names no tenant.
DEFAULT_TENANT = "default"


def _tenant_required(exc: Any) -> bool:
    """ListTasks refused an empty tenant: the caller's key is bound to no single tenant."""
    import grpc

    from switchyard._grpc import field_violations

    return (exc.code() == grpc.StatusCode.INVALID_ARGUMENT
            and "tenant_id" in field_violations(exc))


def data_console(width: int = 200) -> Console:
    """The console the commands print what the services hold through: Rich markup off, since
    that text is not markup. A dead letter's reason says "payload says [withheld: 33
    characters]", which markup would print as "payload says ", as if the value were empty
    (an outside integrator's finding); a document's words may hold brackets too."""
    from rich.console import Console

    return Console(width=width, markup=False)


def rpc_error_line(exc: Any) -> str:
    """A refused call in one line: its status, message and the violations it did not say."""
    from switchyard._grpc import unsaid_violations

    detail = "".join(f"; {violation}" for violation in unsaid_violations(exc))
    return f"{exc.code().name}: {exc.details() or ''}{detail}"


async def _connect(args: argparse.Namespace, settings: Settings, stub_class: Any = None,
                   default_port: int | None = None) -> tuple[Any, Any]:
    """Open the channel and wait until it is ready, so a wrong target is exit 3 at once.
    ``stub_class`` / ``default_port``: another service than IngestService (``switchyard
    packs``)."""
    import grpc

    from switchyard._grpc import client_channel
    from switchyard.v1 import IngestServiceStub

    if args.api_key is not None:
        settings = settings.replace(client_api_key=args.api_key)
    target = args.target or f"127.0.0.1:{default_port or settings.ingest_grpc_port}"
    try:
        channel = client_channel(settings, target)
    except (ValueError, OSError) as exc:
        raise _Usage(f"client TLS: {exc}") from None
    try:
        await asyncio.wait_for(channel.channel_ready(), timeout=args.connect_timeout)
    except (asyncio.TimeoutError, grpc.aio.UsageError):
        await channel.close()
        raise _CannotConnect(f"cannot connect to {target} (no answer within "
                             f"{args.connect_timeout:g} s)") from None
    return channel, (stub_class or IngestServiceStub)(channel)


def _main(command: str, args: argparse.Namespace, settings: Settings,
          body: Callable[[argparse.Namespace, Any], Awaitable[int]], stub_class: Any = None,
          default_port: int | None = None) -> int:
    """Run ``body`` with a connected stub; map every failure to one stderr line and a code."""
    import grpc  # imported here so that building the parser (--help, --version) stays quick

    async def go() -> int:
        channel, stub = await _connect(args, settings, stub_class, default_port)
        try:
            return await body(args, stub)
        finally:
            await channel.close()

    try:
        return asyncio.run(go())
    except _Usage as exc:
        print(f"switchyard {command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except _CannotConnect as exc:
        print(f"switchyard {command}: {exc}", file=sys.stderr)
        return EXIT_CONNECT
    except _Refused as exc:
        print(f"switchyard {command}: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except grpc.aio.AioRpcError as exc:
        print(f"switchyard {command}: {rpc_error_line(exc)}", file=sys.stderr)
        return EXIT_CONNECT if exc.code() == grpc.StatusCode.UNAVAILABLE else EXIT_REFUSED


# --- submit -------------------------------------------------------------------------------


@dataclass
class _File:
    path: Path
    content_type: str
    body: bytes
    key: str


def _read_files(args: argparse.Namespace) -> list[_File]:
    files = []
    for name in args.files:
        path = Path(name)
        content_type = CONTENT_TYPES.get(path.suffix.lower())
        if content_type is None:
            raise _Usage(f"{name}: unsupported extension {path.suffix or '(none)'!r}; use "
                         f"{', '.join(CONTENT_TYPES)}")
        try:
            body = path.read_bytes()
        except OSError as exc:
            raise _Usage(f"{name}: {exc.strerror or exc}") from None
        files.append(_File(path, content_type, body, idempotency_key(args.key_prefix, body)))
    return files


def _metadata(pairs: list[str]) -> dict[str, str]:
    metadata = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise _Usage(f"--metadata {pair!r}: expected KEY=VALUE")
        metadata[key.strip()] = value
    return metadata


def run_submit(args: argparse.Namespace, settings: Settings) -> int:
    try:
        files = _read_files(args)   # every file is checked before anything is submitted
        args.metadata = _metadata(args.metadata)
    except _Usage as exc:
        print(f"switchyard submit: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return _main("submit", args, settings, lambda a, stub: _submit(a, stub, files))


async def _submit(args: argparse.Namespace, stub: Any, files: list[_File]) -> int:
    import grpc

    from switchyard._progress import stderr_progress
    from switchyard.v1 import Document, GetTaskRequest, Submission, SubmitTaskRequest

    results: list[dict[str, Any]] = []
    with stderr_progress() as bar:
        sending = bar.add_task("submitting", total=len(files))
        for file in files:
            result: dict[str, Any] = {"file": str(file.path), "idempotency_key": file.key}
            try:
                response = await stub.SubmitTask(SubmitTaskRequest(submission=Submission(
                    tenant_id=args.tenant, idempotency_key=file.key, kind=args.kind,
                    metadata=args.metadata, document=Document(content_type=file.content_type, body=file.body,
                                      filename=file.path.name))))
                result.update(task_id=response.task_id, created=response.created,
                              status=status_name(response.status), stage=stage_name(response.stage),
                              reason="", error=None)
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.UNAVAILABLE:
                    raise
                result.update(task_id=None, created=False, status=None, stage=None,
                              reason=None, error=rpc_error_line(exc))
            results.append(result)
            bar.advance(sending)
        accepted = [r for r in results if r["task_id"]]
        if args.wait and accepted:
            waiting = bar.add_task("waiting", total=len(accepted))

            async def one(result: dict[str, Any]) -> None:
                task = await _wait(stub, result["task_id"])
                result.update(status=status_name(task.status), stage=stage_name(task.stage),
                              reason=task.reason)
                bar.advance(waiting)

            try:
                await asyncio.wait_for(asyncio.gather(*(one(r) for r in accepted)),
                                       timeout=args.timeout or None)
            except asyncio.TimeoutError:
                # where each task is now (a person's review, a wait), not where it started
                waiting = [r for r in accepted if r["status"] not in TERMINAL]
                for result in waiting:
                    task = (await stub.GetTask(GetTaskRequest(task_id=result["task_id"]))).task
                    result.update(status=status_name(task.status), stage=stage_name(task.stage),
                                  reason=task.reason)
                _print_submitted(args, results)
                raise _Refused(f"not every task was terminal after {args.timeout:g} s: "
                               f"{len(waiting)} still "
                               f"{', '.join(sorted({str(r['status']) for r in waiting}))}") \
                    from None
    _print_submitted(args, results)
    failed = any(r["error"] for r in results) or (
        args.wait and any(r["status"] != "SUCCEEDED" for r in accepted))
    return EXIT_REFUSED if failed else EXIT_OK


def _print_submitted(args: argparse.Namespace, results: list[dict[str, Any]]) -> None:
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for r in results:
        if r["error"]:
            print(f"{r['file']}: refused: {r['error']}")
        else:
            how = "new" if r["created"] else "existing"
            reason = f" ({r['reason']})" if r.get("reason") else ""
            print(f"{r['file']}: {r['task_id']} {how} {r['status']}{reason}")


async def _wait(stub: Any, task_id: str) -> Any:
    """Follow WatchTask until a terminal event, then read the task as the store has it."""
    from switchyard.v1 import GetTaskRequest, WatchTaskRequest

    async for item in stub.WatchTask(WatchTaskRequest(task_id=task_id)):
        if status_name(item.event.status) in TERMINAL:
            break
    return (await stub.GetTask(GetTaskRequest(task_id=task_id))).task


# --- tasks ---------------------------------------------------------------------------------


def run_tasks(args: argparse.Namespace, settings: Settings) -> int:
    if args.tasks_action == "complete-wait":
        from switchyard.v1 import ExecutorServiceStub

        return _main("tasks complete-wait", args, settings, _complete_wait,
                     ExecutorServiceStub, settings.executor_grpc_port)
    return _main(f"tasks {args.tasks_action}", args, settings, _TASK_ACTIONS[args.tasks_action])


def _print_task(args: argparse.Namespace, task: Any) -> None:
    data = _task_json(task)
    if args.json:
        print(json.dumps(data, indent=2))
        return
    for key in ("task_id", "tenant_id", "kind", "status", "stage", "reason", "idempotency_key",
                "filename", "created_at", "updated_at"):
        if data[key]:
            print(f"{key + ':':<17}{data[key]}")
    for key, value in sorted(data["metadata"].items()):
        print(f"{'metadata:':<17}{key}={value}")


async def _list(args: argparse.Namespace, stub: Any) -> int:
    import grpc
    from rich.table import Table

    from switchyard.v1 import ListTasksRequest, TaskStatus

    request = ListTasksRequest(tenant_id=args.tenant, idempotency_key=args.idempotency_key)
    for value in args.status:
        for name in filter(None, value.upper().split(",")):
            try:
                request.statuses.append(TaskStatus.Value(f"TASK_STATUS_{name.strip()}"))
            except ValueError:
                raise _Usage(f"unknown status {name.strip().lower()!r}") from None
    request.kinds.extend(k.strip() for k in args.kind)
    for pair in args.meta:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise _Usage(f"--meta {pair!r}: expected KEY=VALUE")
        request.metadata[key.strip()] = value
    if args.limit < 0:
        raise _Usage("--limit must be 0 or more")
    try:
        tasks = await follow_pages(stub.ListTasks, request, "tasks", args.limit)
    except grpc.aio.AioRpcError as exc:
        # An empty tenant is the key's own (ListTasksRequest.tenant_id); a key bound to no
        # single tenant (an operator key, auth off) gets the README's tenant instead.
        if args.tenant or not _tenant_required(exc):
            raise
        request.tenant_id = DEFAULT_TENANT
        tasks = await follow_pages(stub.ListTasks, request, "tasks", args.limit)
    rows = [_task_json(t) for t in tasks]
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    tenant = request.tenant_id or (rows[0]["tenant_id"] if rows else "your key's tenant")
    table = Table(title=f"{len(rows)} task(s) of {tenant}", title_justify="left")
    for column in ("task", "kind", "status", "stage", "reason", "created at"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(row["task_id"], row["kind"], row["status"], row["stage"], row["reason"],
                      row["created_at"] or "-")
    data_console().print(table)
    return EXIT_OK


async def _get(args: argparse.Namespace, stub: Any) -> int:
    from switchyard.v1 import GetTaskRequest

    _print_task(args, (await stub.GetTask(GetTaskRequest(task_id=args.task_id))).task)
    return EXIT_OK


async def _watch(args: argparse.Namespace, stub: Any) -> int:
    from switchyard.v1 import WatchTaskRequest

    last = ""
    async for item in stub.WatchTask(WatchTaskRequest(task_id=args.task_id)):
        event = item.event
        last = status_name(event.status)
        if args.json:
            print(json.dumps(_event_json(event)), flush=True)
        else:
            reason = f" {event.reason}" if event.reason else ""
            print(f"{event.sequence:>3} {last:<11} {stage_name(event.stage):<16}{reason}",
                  flush=True)
        if last in TERMINAL:
            break
    if last not in TERMINAL:
        raise _Refused("the stream ended before the task was terminal")
    return EXIT_OK if last == "SUCCEEDED" else EXIT_REFUSED


async def _cancel(args: argparse.Namespace, stub: Any) -> int:
    import grpc

    from switchyard.rpc import precondition_types
    from switchyard.v1 import CancelTaskRequest

    try:
        response = await stub.CancelTask(CancelTaskRequest(task_id=args.task_id,
                                                           reason=args.reason))
    except grpc.aio.AioRpcError as exc:
        if exc.code() != grpc.StatusCode.FAILED_PRECONDITION or \
                "TASK_EXECUTING" not in precondition_types(exc):
            raise
        # accepted, not done: the executor compensates the finished steps, then cancels
        if args.json:
            print(json.dumps({"task_id": args.task_id, "cancellation": "requested",
                              "message": exc.details()}, indent=2))
        else:
            print(f"cancellation requested: {exc.details()}")
        return EXIT_COMPENSATING
    _print_task(args, response.task)
    return EXIT_OK


async def _retry(args: argparse.Namespace, stub: Any) -> int:
    from switchyard.v1 import RetryTaskRequest

    response = await stub.RetryTask(RetryTaskRequest(task_id=args.task_id,
                                                     attempt=args.attempt))
    if args.json:
        print(json.dumps({**_task_json(response.task), "created": response.created,
                          "retry_of": args.task_id}, indent=2))
    else:
        how = "new" if response.created else "existing"
        print(f"retry of {args.task_id}: {response.task.envelope.task_id} ({how}, "
              f"{status_name(response.task.status)})")
    return EXIT_OK


def _timeline_json(entry: Any) -> dict[str, Any]:
    from google.protobuf.json_format import MessageToDict

    from switchyard.v1 import TimelineSource

    status = entry.source == TimelineSource.TIMELINE_SOURCE_STATUS
    return {
        "occurred_at": entry.occurred_at.ToJsonString(),
        "source": TimelineSource.Name(entry.source).removeprefix("TIMELINE_SOURCE_").lower(),
        "actor": entry.actor, "action": entry.action,
        "status": status_name(entry.status) if status else None,
        "stage": stage_name(entry.stage) if status else None,
        "reason": entry.reason if status else None,
        "detail": _whole_numbers(MessageToDict(entry.detail))
        if entry.HasField("detail") else None,
        "entry_hash": entry.entry_hash or None,
        "summary": entry.summary,
    }


def _whole_numbers(value: Any) -> Any:
    """A Struct's numbers come back as floats; whole ones are shown as the integers they were
    recorded as ("attempts": 1, not 1.0)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _whole_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(item) for item in value]
    return value


async def _timeline(args: argparse.Namespace, stub: Any) -> int:
    from rich.table import Table

    from switchyard.v1 import GetTaskTimelineRequest

    response = await stub.GetTaskTimeline(GetTaskTimelineRequest(task_id=args.task_id))
    entries = [_timeline_json(e) for e in response.entries]
    if args.json:
        print(json.dumps({"task": _task_json(response.task), "entries": entries}, indent=2))
        return EXIT_OK
    table = Table(title=f"timeline of task {args.task_id} "
                        f"({status_name(response.task.status)})", title_justify="left")
    # "what" last: a long summary wraps onto lines of its own
    for column in ("when (UTC)", "actor", "action", "hash", "what"):
        table.add_column(column, overflow="fold")
    for entry in entries:
        what = entry["summary"]  # ingest's one-line summary; --json has the full detail
        if not what and entry["source"] == "status":  # an ingest older than the summary
            what = f"{entry['status']} {entry['stage']}" + (
                f" ({entry['reason']})" if entry["reason"] else "")
        elif not what:
            what = json.dumps(entry["detail"] or {}, sort_keys=True)
        table.add_row(entry["occurred_at"], entry["actor"], entry["action"],
                      (entry["entry_hash"] or "")[:12], what)
    data_console().print(table)
    return EXIT_OK


async def _redrive(args: argparse.Namespace, stub: Any) -> int:
    from switchyard.v1 import RedriveTaskRequest

    response = await stub.RedriveTask(RedriveTaskRequest(task_id=args.task_id,
                                                         reason=args.reason))
    if args.json:
        print(json.dumps(_task_json(response.task), indent=2))
    else:
        print(f"re-driven: {args.task_id} ({status_name(response.task.status)} "
              f"{stage_name(response.task.stage)})")
    return EXIT_OK


async def _complete_wait(args: argparse.Namespace, stub: Any) -> int:
    from google.protobuf.struct_pb2 import Struct

    from switchyard.v1 import CompleteWaitRequest

    try:
        output = json.loads(args.output)
    except ValueError as exc:
        raise _Usage(f"--output: not JSON: {exc}") from None
    if not isinstance(output, dict):
        raise _Usage("--output: must be a JSON object")
    request = CompleteWaitRequest(token=args.token, error=args.error)
    request.output.CopyFrom(Struct())
    request.output.update(output)
    response = await stub.CompleteWait(request)
    if args.json:
        print(json.dumps({"task_id": response.task_id, "step_id": response.step_id}))
    else:
        print(f"{'failed' if args.error else 'completed'}: {response.task_id} step "
              f"{response.step_id}")
    return EXIT_OK


_TASK_ACTIONS: dict[str, Callable[[argparse.Namespace, Any], Awaitable[int]]] = {
    "list": _list, "get": _get, "watch": _watch, "cancel": _cancel, "retry": _retry,
    "timeline": _timeline, "redrive": _redrive}


# --- models health -------------------------------------------------------------------------


def add_model_health_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tenant", required=True,
                        help="whose shadow comparisons ('*' with an operator key: every "
                             "tenant's); drift covers every tenant's inputs")
    parser.add_argument("--window", type=float, default=24.0, metavar="HOURS",
                        help="how far back (default 24; at most 720)")
    parser.add_argument("--bucket", type=float, default=60.0, metavar="MINUTES",
                        help="bucket width (default 60; at least 1, at most 500 buckets)")
    _add_client_arguments(parser, "DecisionService", "SWITCHYARD_DECISION_GRPC_PORT")


def run_model_health(args: argparse.Namespace, settings: Settings) -> int:
    from switchyard.v1 import DecisionServiceStub

    return _main("models health", args, settings, _model_health, DecisionServiceStub,
                 settings.decision_grpc_port)


async def _model_health(args: argparse.Namespace, stub: Any) -> int:
    from datetime import timedelta

    from rich.table import Table

    from switchyard.v1 import GetModelHealthRequest

    request = GetModelHealthRequest(tenant_id=args.tenant)
    try:
        request.window.FromTimedelta(timedelta(hours=args.window))
        request.bucket.FromTimedelta(timedelta(minutes=args.bucket))
    except (OverflowError, ValueError) as exc:
        raise _Usage(f"--window/--bucket: {exc}") from None
    response = await stub.GetModelHealth(request)
    shadow = [{"model": p.model_name, "live_version": p.live_version,
               "shadow_version": p.shadow_version, "bucket_start": p.bucket_start.ToJsonString(),
               "compared": p.compared, "agreed": p.agreed} for p in response.shadow]
    drift = [{"model": p.model_name, "version": p.version, "feature": p.feature,
              "bucket_start": p.bucket_start.ToJsonString(), "psi": p.psi,
              "samples": p.samples} for p in response.drift]
    human = [{"model": p.model_name, "version": p.version,
              "bucket_start": p.bucket_start.ToJsonString(), "judged": p.judged,
              "agreed": p.agreed, "mean_confidence": round(p.mean_confidence, 4)}
             for p in response.human]
    if args.json:
        print(json.dumps({"shadow": shadow, "drift": drift, "human": human}, indent=2))
        return EXIT_OK
    console = data_console()
    table = Table(title="shadow agreement", title_justify="left")
    for column in ("model", "live", "shadow", "bucket start (UTC)", "compared", "agreed"):
        table.add_column(column)
    for p in shadow:
        share = f"{p['agreed']} ({p['agreed'] / p['compared']:.0%})" if p["compared"] else "0"
        table.add_row(p["model"], p["live_version"], p["shadow_version"], p["bucket_start"],
                      str(p["compared"]), share)
    console.print(table)
    table = Table(title="input drift (PSI: <0.1 stable, >0.25 drifted)", title_justify="left")
    for column in ("model", "version", "feature", "bucket start (UTC)", "max psi", "samples"):
        table.add_column(column)
    for p in drift:
        table.add_row(p["model"], p["version"], p["feature"], p["bucket_start"],
                      f"{p['psi']:.3f}", str(p["samples"]))
    console.print(table)
    table = Table(title="agreement with reviewers (escalated tasks; calibrated: agreed ~ "
                        "mean confidence)", title_justify="left")
    for column in ("model", "version", "bucket start (UTC)", "judged", "agreed",
                   "mean confidence"):
        table.add_column(column)
    for p in human:
        table.add_row(p["model"], p["version"], p["bucket_start"], str(p["judged"]),
                      f"{p['agreed']} ({p['agreed'] / p['judged']:.0%})",
                      f"{p['mean_confidence']:.0%}")
    console.print(table)
    return EXIT_OK
