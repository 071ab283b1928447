"""``switchyard up``/``down``/``status``: the embedded stack plus the four services.

Bootstrap (topics from the registry, PostgreSQL migrations) runs between the infrastructure
and the services, exactly as the Helm chart's hook Jobs do before the Deployments start.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from switchyard._settings import Settings, env_var
from switchyard.stack import (
    ComponentStatus,
    EmbeddedStack,
    ServiceSpec,
    StackError,
    stack_down,
    stack_status,
)

SERVICE_PORTS = {
    "ingest": ("ingest_grpc_port", "ingest_metrics_port"),
    "decision": ("decision_grpc_port", "decision_metrics_port"),
    "executor": ("executor_grpc_port", "executor_metrics_port"),
    "review": ("review_grpc_port", "review_metrics_port"),
}


async def bootstrap(settings: Settings) -> None:
    """Create the registry's topics and apply migrations (idempotent)."""
    from switchyard._db import migrate
    from switchyard._topics import create_topics

    await create_topics(settings)
    await migrate(settings)


#: The demo downstream (an ERP/scheduling simulator the demo's plans post to); not a
#: Switchyard service, but part of the embedded stack. Health: gRPC on downstream_grpc_port.
DOWNSTREAM = "downstream"


def health_tls(settings: Settings) -> dict[str, str] | None:
    """The client TLS the stack's health checks (and ``switchyard status``) use for services
    that serve TLS: ``SWITCHYARD_CLIENT_TLS_*``, as for every command-line client.

    With ``SWITCHYARD_TLS_CERT_FILE`` set and no client CA (or, under mutual TLS, no client
    certificate) the stack could never see a service SERVING, so this refuses instead.
    """
    from switchyard._grpc import ClientTls, ServerTls

    try:
        server = ServerTls.from_settings(settings)
        client = ClientTls.from_settings(settings)
    except ValueError as exc:
        raise StackError(str(exc)) from None
    if server is None:
        return None
    if client is None:
        raise StackError("SWITCHYARD_TLS_CERT_FILE is set, so the services speak TLS: set "
                         "SWITCHYARD_CLIENT_TLS_CA_FILE to the CA that signed it, so the "
                         "stack's health checks (and the command-line clients) can connect")
    if server.client_ca_file and not client.cert_file:
        raise StackError("SWITCHYARD_TLS_CLIENT_CA_FILE is set (mutual TLS): set "
                         "SWITCHYARD_CLIENT_TLS_CERT_FILE and SWITCHYARD_CLIENT_TLS_KEY_FILE "
                         "to a client certificate from that CA")
    return client.as_dict()


def service_specs(settings: Settings,
                  names: tuple[str, ...] = (DOWNSTREAM, *SERVICE_PORTS)) -> list[ServiceSpec]:
    """The embedded stack's service processes; raises :class:`StackError` when the TLS
    settings leave the services unreachable to their own health checks."""
    tls = health_tls(settings) if set(names) & set(SERVICE_PORTS) else None
    specs = []
    for name in names:
        if name == DOWNSTREAM:
            specs.append(ServiceSpec(
                name=name, argv=[sys.executable, "-m", "services.executor.downstream"],
                health_port=settings.downstream_grpc_port))
            continue
        grpc_attr, _ = SERVICE_PORTS[name]
        env = {}
        if name == "executor" and not settings.executor_endpoints:
            # the demo plans' aliases go to this stack's downstream; outside the embedded
            # stack an executor without SWITCHYARD_EXECUTOR_ENDPOINTS refuses to start
            from services.executor.endpoints import embedded_endpoints

            env[env_var("executor_endpoints")] = embedded_endpoints(settings)
        if name == "review":
            # the operator console (in the review process) calls these services' RPCs
            for other in ("ingest", "decision", "executor"):
                if not getattr(settings, f"{other}_address"):
                    port = getattr(settings, SERVICE_PORTS[other][0])
                    env[env_var(f"{other}_address")] = f"127.0.0.1:{port}"
        specs.append(ServiceSpec(
            name=name, argv=[sys.executable, "-m", "switchyard", "run", name],
            env=env, health_port=getattr(settings, grpc_attr), health_tls=tls,
        ))
    return specs


def build_stack(settings: Settings, detach: bool = False) -> EmbeddedStack:
    components = [c.strip() for c in settings.stack_components.split(",") if c.strip()]
    return EmbeddedStack(settings, Path(settings.state_dir), services=service_specs(settings),
                         bootstrap=bootstrap, detached=detach, components=components,
                         model_repository=Path(settings.model_repository))


def print_endpoints(stack: EmbeddedStack, console: Console) -> None:
    settings = stack.settings
    table = Table(title="Switchyard embedded stack", title_justify="left")
    for column in ("component", "endpoint", "pid"):
        table.add_column(column)
    for row in stack.status():
        table.add_row(row.name, row.endpoint, str(row.pid or "-"))
    scheme = "https" if settings.tls_cert_file else "http"
    table.add_row("review console", f"{scheme}://127.0.0.1:{settings.review_web_port}", "")
    table.add_row("operator console",
                  f"{scheme}://127.0.0.1:{settings.review_web_port}/operator", "")
    if settings.ingest_rest_port:
        table.add_row("REST gateway", f"{scheme}://127.0.0.1:{settings.ingest_rest_port}", "")
    table.add_row("downstream (demo ERP)", f"http://127.0.0.1:{settings.downstream_http_port}",
                  "")
    for name, (_, metrics_attr) in SERVICE_PORTS.items():
        port = getattr(settings, metrics_attr)
        if port:
            table.add_row(f"{name} metrics", f"http://127.0.0.1:{port}/metrics", "")
    console.print(table)
    timings = ", ".join(f"{k} {v:.1f}s" for k, v in stack.timings.items())
    console.print(f"[dim]started in: {timings}[/dim]")
    console.print(auth_summary(settings))


def auth_summary(settings: Settings) -> str:
    """One line saying how callers authenticate, so a stack never runs without API keys
    unannounced: with ``SWITCHYARD_API_KEYS`` empty every caller on this machine is an admin."""
    from switchyard._auth import ApiKeyAuthenticator

    if not ApiKeyAuthenticator(settings.api_keys).enabled:
        return ("auth: off (SWITCHYARD_API_KEYS is empty): every local caller is an admin of "
                "every tenant; in the consoles leave the API key empty and type a reviewer name")
    return ("auth: API keys from SWITCHYARD_API_KEYS; the consoles ask for one, the "
            "command-line clients send SWITCHYARD_CLIENT_API_KEY")


def start_with_progress(stack: EmbeddedStack, console: Console | None = None) -> None:
    """``stack.start()`` with a bar of the components started so far (stderr, terminal
    only; see :mod:`switchyard._progress`)."""
    from switchyard._progress import stderr_progress

    with stderr_progress(console) as bar:
        task = bar.add_task("starting the stack", total=stack.start_steps)
        stack.start(on_ready=lambda name: bar.update(task, advance=1,
                                                     description=f"starting the stack: {name} ready"))


def up(settings: Settings, detach: bool = False) -> int:
    # progress and failures on stderr; what the command gives (the endpoints, how to stop
    # it) on stdout, for a script that reads the addresses
    console, out = Console(stderr=True), Console()
    try:
        stack = build_stack(settings, detach)
    except StackError as exc:
        console.print(f"[red]switchyard up failed:[/red] {escape(str(exc))}")
        return 1
    stopping = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stopping.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        try:
            start_with_progress(stack, console)
        except StackError as exc:
            console.print(f"[red]switchyard up failed:[/red] {escape(str(exc))}")
            return 1
        print_endpoints(stack, out)
        if detach:
            out.print("detached; stop with [bold]switchyard down[/bold]")
            return 0
        out.print("running; Ctrl-C or SIGTERM stops everything")
        while not stopping.wait(1.0):
            dead = [s.name for s in stack.status() if s.pid is None]
            if dead:
                console.print(f"[red]stopping: {', '.join(dead)} exited[/red]")
                return 1
        return 0
    finally:
        if not detach:
            console.print("stopping ...")
            stack.stop()
            console.print("stopped")
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def down(settings: Settings) -> int:
    # each got SIGTERM (SIGKILL only after the stop timeout, logged as a warning)
    running = stack_down(Path(settings.state_dir))
    print(f"stopped: {', '.join(running)}" if running else "stopped (nothing was running)")
    return 0


def health_word(row: ComponentStatus) -> str:
    """A component's health as ``status`` prints it: running and answering SERVING is
    healthy; running but not ready (a service whose database does not answer, a loop down)
    is not ready, which is not down: the process is there and comes back by itself."""
    if row.healthy:
        return "[green]healthy[/green]"
    return "[yellow]not ready[/yellow]" if row.pid else "[red]down[/red]"


def status(settings: Settings, as_json: bool = False) -> int:
    rows = stack_status(Path(settings.state_dir))
    if as_json:
        print(json.dumps([row.__dict__ for row in rows], indent=2))
    else:
        table = Table()
        for column in ("component", "endpoint", "pid", "health"):
            table.add_column(column)
        for row in rows:
            table.add_row(row.name, row.endpoint, str(row.pid or "-"), health_word(row))
        Console().print(table if rows else "no embedded stack running")
    return 0 if rows and all(row.healthy for row in rows) else 1


__all__ = ["auth_summary", "bootstrap", "build_stack", "down", "health_tls", "service_specs", "start_with_progress", "status",
           "up"]
