"""The whole local stack: infrastructure, a bootstrap step, then the service processes.

``switchyard up`` builds an :class:`EmbeddedStack` and either blocks until a signal
(foreground) or returns (``--detach``); ``switchyard status``/``down`` run in other
processes and only see ``<state_dir>/stack.json`` plus the pid files, hence
:func:`stack_status` and :func:`stack_down` work from the state dir alone.

Start order: the infrastructure servers are all spawned first (Kafka, Triton, then
PostgreSQL whose initdb overlaps Triton's start) from the calling thread, then waited for in
parallel; then bootstrap (topics, migrations); then the services, again spawned together and
waited for together. Stop order is the reverse: the services together, then the
infrastructure together (one slow stop, Triton unloading its models, no longer adds to every
other). A failed start stops what it started.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from switchyard._settings import Settings
from switchyard.stack._component import Component
from switchyard.stack._kafka import KafkaBroker
from switchyard.stack._postgres import PostgresServer
from switchyard.stack._process import ManagedProcess, remove_pid_files
from switchyard.stack._triton import TritonServer, TritonSpillServer, cleanup_shm
from switchyard.stack._util import (
    LOOPBACK,
    StackError,
    free_port,
    grpc_serving,
    http_ok,
    kafka_metadata_ok,
    maybe_await,
    port_frees_up,
    postgres_select1_ok,
    require_stack_packages,
    tail,
    wait_until,
)

_log = logging.getLogger("switchyard.stack")

STATE_FILE = "stack.json"
#: Every embedded server the stack knows, and those it runs unless told otherwise (the
#: spill-over Triton is opt-in: a second Triton costs a CPU core and a few hundred MB).
INFRASTRUCTURE = ("kafka", "postgres", "triton", "triton-spill")
DEFAULT_COMPONENTS = ("kafka", "postgres", "triton")

Bootstrap = Callable[[Settings], "None | Awaitable[None]"]


@dataclass(frozen=True)
class ServiceSpec:
    """A service process: ``argv`` run with the stack's settings as env plus ``env``.

    ``health_port`` is where the process serves ``grpc.health.v1.Health``; the stack waits for
    SERVING there. ``None`` means no health check (the process only has to stay up).
    """

    name: str
    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    health_port: int | None = None
    #: Client TLS for the health check (``ClientTls`` fields) when the process serves TLS.
    health_tls: Mapping[str, str] | None = None


@dataclass(frozen=True)
class ComponentStatus:
    """One row of ``switchyard status``; ``pid`` is None when the process is not running."""

    name: str
    pid: int | None
    endpoint: str
    healthy: bool


class _Service:
    """A service process managed like the infrastructure components (same describe shape)."""

    def __init__(self, spec: ServiceSpec, state_dir: Path, env: Mapping[str, str], detached: bool):
        self.spec = spec
        self.name = spec.name
        self.process = ManagedProcess(
            spec.name, spec.argv, state_dir=state_dir, env=env, detached=detached
        )

    @property
    def endpoint(self) -> str:
        return f"{LOOPBACK}:{self.spec.health_port}" if self.spec.health_port else "-"

    def healthy(self) -> bool:
        if not self.process.is_running():
            return False
        return self.spec.health_port is None or grpc_serving(self.spec.health_port,
                                                             tls=self.spec.health_tls)

    def wait_ready(self, timeout_s: float) -> None:
        def _exited() -> str | None:
            code = self.process.returncode
            if code is None:
                return None
            return self._failure(f"exited with code {code} while starting")

        if not wait_until(self.healthy, timeout_s, interval_s=0.1, abort=_exited):
            raise StackError(self._failure(f"not SERVING after {timeout_s:.0f}s"))

    def _failure(self, what: str) -> str:
        return (
            f"service {self.name} ({self.endpoint}) {what}.\n"
            f"--- last lines of {self.process.log_path} ---\n{self.process.log_tail()}"
        )

    def describe(self) -> dict[str, Any]:
        probe: dict[str, Any] = (
            {"type": "grpc", "port": self.spec.health_port,
             **({"tls": dict(self.spec.health_tls)} if self.spec.health_tls else {})}
            if self.spec.health_port
            else {"type": "process"}
        )
        return {
            "name": self.name,
            "kind": "service",
            "pid": self.process.pid,
            "endpoint": self.endpoint,
            "log": str(self.process.log_path),
            "probe": probe,
        }


def _together(stops: Sequence[tuple[str, Callable[[], object]]]) -> list[tuple[str, object]]:
    """Run each named stop in a thread of its own and wait for all; a stop that raises is
    logged and the rest still run (never leave processes behind). Returns (name, result)
    for the stops that returned, in the given order."""
    if not stops:
        return []
    with ThreadPoolExecutor(max_workers=len(stops)) as pool:
        futures = [(name, pool.submit(stop)) for name, stop in stops]
    done = []
    for name, future in futures:
        error = future.exception()
        if error is not None:
            _log.error("stopping %s failed", name, exc_info=error)
        else:
            done.append((name, future.result()))
    return done


def _ready(name: str, wait_ready: Callable[[float], None], timeout_s: float,
           on_ready: Callable[[str], None] | None) -> None:
    """Wait for one component or service, then tell ``on_ready`` (worker thread)."""
    wait_ready(timeout_s)
    if on_ready is not None:
        on_ready(name)


def with_free_ports(settings: Settings) -> Settings:
    """``settings`` with every embedded-infrastructure port moved to a free one (for tests)."""
    grpc_port = free_port()
    return settings.replace(
        kafka_bootstrap_servers=f"{LOOPBACK}:{free_port()}",
        triton_http_port=free_port(),
        triton_grpc_port=grpc_port,
        triton_metrics_port=free_port(),
        triton_url=f"{LOOPBACK}:{grpc_port}",
        triton_spill_http_port=free_port(),
        triton_spill_grpc_port=free_port(),
        triton_spill_metrics_port=free_port(),
    )


class EmbeddedStack:
    """Kafka + PostgreSQL + Triton (+ bootstrap + services) as local child processes.

    ``components`` picks which infrastructure runs embedded (default :data:`DEFAULT_COMPONENTS`;
    ``triton-spill`` adds a spill-over Triton; leave one out to use an external
    server configured in ``settings``). :attr:`settings` is what the bootstrap and services
    get: the input settings with ``state_dir`` set and, when PostgreSQL is embedded and
    ``postgres_dsn`` is empty, the embedded server's DSN.

    Usable as a context manager (``with EmbeddedStack(...) as stack``), e.g. from a pytest
    session fixture with ``services=()`` and :func:`with_free_ports` settings.
    """

    def __init__(
        self,
        settings: Settings,
        state_dir: Path | None = None,
        *,
        services: Sequence[ServiceSpec] = (),
        bootstrap: Bootstrap | None = None,
        components: Iterable[str] = DEFAULT_COMPONENTS,
        detached: bool = False,
        postgres_port: int | None = None,
        model_repository: Path | None = None,
    ) -> None:
        self.state_dir = Path(state_dir or settings.state_dir).absolute()
        self.detached = detached
        self.bootstrap = bootstrap
        self.services_specs = list(services)
        wanted = list(components)
        unknown = set(wanted) - set(INFRASTRUCTURE)
        if unknown:
            raise ValueError(f"unknown components {sorted(unknown)}; choose from {INFRASTRUCTURE}")
        names = [s.name for s in self.services_specs]
        clashes = {n for n in names if n in INFRASTRUCTURE or names.count(n) > 1}
        if clashes:
            raise ValueError(
                f"service names must be unique and not {INFRASTRUCTURE}: {sorted(clashes)}"
            )
        self._base_settings = settings.replace(state_dir=self.state_dir)
        self.kafka = (
            KafkaBroker(settings, self.state_dir, detached=detached) if "kafka" in wanted else None
        )
        self.postgres = (
            PostgresServer(settings, self.state_dir, port=postgres_port, detached=detached)
            if "postgres" in wanted
            else None
        )
        self.triton = (
            TritonServer(
                settings, self.state_dir, model_repository=model_repository, detached=detached
            )
            if "triton" in wanted
            else None
        )
        self.triton_spill = (
            TritonSpillServer(
                settings, self.state_dir, model_repository=model_repository, detached=detached
            )
            if "triton-spill" in wanted
            else None
        )
        self._services: list[_Service] = []
        self._started: list[Component | _Service] = []
        self.timings: dict[str, float] = {}
        self._wrote_state = False

    # -- views ------------------------------------------------------------------------------
    @property
    def infrastructure(self) -> list[Component]:
        """Embedded servers in start order (broker, database, inference)."""
        return [c for c in (self.kafka, self.postgres, self.triton, self.triton_spill)
                if c is not None]

    @property
    def settings(self) -> Settings:
        settings = self._base_settings
        if self.kafka is not None:
            settings = settings.replace(kafka_bootstrap_servers=self.kafka.bootstrap_servers)
        if self.postgres is not None and not settings.postgres_dsn and self.postgres.process:
            settings = settings.replace(postgres_dsn=self.postgres.dsn)
        if self.triton is not None:
            settings = settings.replace(triton_url=self.triton.grpc_url)
        if self.triton_spill is not None:
            settings = settings.replace(triton_spill_url=self.triton_spill.grpc_url)
        return settings

    def service_env(self, spec: ServiceSpec) -> dict[str, str]:
        """The environment of a service: ours, the stack's settings, then the spec's own."""
        env = dict(os.environ)
        env.update(self.settings.to_env())
        env.update(spec.env)
        return env

    # -- lifecycle --------------------------------------------------------------------------
    @property
    def start_steps(self) -> int:
        """How many times :meth:`start` calls its ``on_ready``: one per embedded server, one
        for the bootstrap (when there is one), one per service."""
        return (len(self.infrastructure) + (self.bootstrap is not None)
                + len(self.services_specs))

    def start(self, timeout_s: float = 90.0,
              on_ready: Callable[[str], None] | None = None) -> None:
        """Infrastructure, bootstrap, services; each step must be healthy before the next.
        ``on_ready(name)`` is called (from worker threads too) as each one is ready, e.g. to
        advance a progress bar."""
        running = running_components(self.state_dir)
        if running:
            raise StackError(
                f"a stack is already running from {self.state_dir} ({', '.join(running)}); "
                "stop it first (switchyard down)"
            )
        try:
            self.start_infrastructure(timeout_s, on_ready)
            if self.bootstrap is not None:
                began = time.monotonic()
                maybe_await(self.bootstrap(self.settings))
                self.timings["bootstrap"] = time.monotonic() - began
                if on_ready is not None:
                    on_ready("bootstrap")
            self.start_services(timeout_s, on_ready)
        except BaseException:
            self.stop()
            raise

    def start_infrastructure(self, timeout_s: float = 90.0,
                             on_ready: Callable[[str], None] | None = None) -> None:
        """Spawn every embedded server, then wait for all of them to be healthy."""
        require_stack_packages(c.name for c in self.infrastructure)
        began = time.monotonic()
        # spawn order: broker, Triton (slowest to become ready), then PostgreSQL whose initdb
        # runs while the others boot
        spawn_order = [c for c in (self.kafka, self.triton, self.triton_spill, self.postgres)
                       if c is not None]
        for component in spawn_order:
            self._started.append(component)
            component.launch()
            self._write_state()
        with ThreadPoolExecutor(max_workers=max(1, len(self.infrastructure))) as pool:
            futures = [pool.submit(_ready, c.name, c.wait_ready, timeout_s, on_ready)
                       for c in self.infrastructure]
            errors = [f.exception() for f in futures]
        failures = [str(e) for e in errors if e is not None]
        if failures:
            raise StackError("embedded stack failed to start:\n" + "\n\n".join(failures))
        for component in self.infrastructure:
            if component.startup_s is not None:
                self.timings[component.name] = component.startup_s
        self.timings["infrastructure"] = time.monotonic() - began
        self._write_state()

    def start_services(self, timeout_s: float = 60.0,
                       on_ready: Callable[[str], None] | None = None) -> None:
        """Spawn every service, then wait for each to answer SERVING."""
        began = time.monotonic()
        for spec in self.services_specs:
            if spec.health_port and not port_frees_up(spec.health_port):
                raise StackError(
                    f"service {spec.name}: 127.0.0.1:{spec.health_port} is already in use "
                    "(another stack or server?)"
                )
            service = _Service(spec, self.state_dir, self.service_env(spec), self.detached)
            self._services.append(service)
            self._started.append(service)
            service.process.start()
            self._write_state()
        with ThreadPoolExecutor(max_workers=max(1, len(self._services))) as pool:
            futures = [pool.submit(_ready, s.spec.name, s.wait_ready, timeout_s, on_ready)
                       for s in self._services]
            errors = [f.exception() for f in futures]
        failures = [str(e) for e in errors if e is not None]
        if failures:
            raise StackError("services failed to start:\n" + "\n\n".join(failures))
        self.timings["services"] = time.monotonic() - began
        self._write_state()

    def stop(self, timeout_s: float | None = None) -> None:
        """Stop the services, then the infrastructure (each group together, as it started);
        forget the state file."""
        def stopper(item: Component | _Service) -> Callable[[], object]:
            if isinstance(item, _Service):
                return lambda: item.process.stop(10.0 if timeout_s is None else timeout_s)
            return lambda: item.stop(timeout_s)

        started = list(reversed(self._started))
        for wave in ([i for i in started if isinstance(i, _Service)],
                     [i for i in started if not isinstance(i, _Service)]):
            _together([(item.name, stopper(item)) for item in wave])
        self._started.clear()
        self._services.clear()
        if self._wrote_state:  # never delete the record of another launcher's stack
            with contextlib.suppress(FileNotFoundError):
                (self.state_dir / STATE_FILE).unlink()
            self._wrote_state = False

    def status(self) -> list[ComponentStatus]:
        return stack_status(self.state_dir)

    def __enter__(self) -> EmbeddedStack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- state file -------------------------------------------------------------------------
    def _write_state(self) -> None:
        state = {
            "version": 1,
            "state_dir": str(self.state_dir),
            "detached": self.detached,
            "launcher_pid": os.getpid(),
            "updated_at": time.time(),
            "components": [item.describe() for item in self._started],
        }
        self.state_dir.mkdir(parents=True, exist_ok=True)
        path = self.state_dir / STATE_FILE
        tmp = path.with_name(f".{STATE_FILE}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(state, indent=2))
        os.replace(tmp, path)
        self._wrote_state = True


# -- from another process --------------------------------------------------------------------
def read_state(state_dir: Path) -> dict[str, Any] | None:
    """The parsed ``stack.json`` of ``state_dir``, or None when no stack is recorded there."""
    try:
        data = json.loads((Path(state_dir) / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def probe_healthy(probe: Mapping[str, Any]) -> bool:
    """Re-run a component's recorded health probe (see ``Component.probe``)."""
    kind = probe.get("type")
    if kind == "kafka":
        return kafka_metadata_ok(str(probe["bootstrap"]))
    if kind == "postgres":
        try:
            dsn = Path(str(probe["dsn_file"])).read_text().strip()
        except OSError:
            return False
        return bool(dsn) and postgres_select1_ok(dsn)
    if kind == "http":
        return http_ok(str(probe["url"]))
    if kind == "grpc":
        tls = probe.get("tls")
        return grpc_serving(int(probe["port"]), tls=dict(tls) if isinstance(tls, dict) else None)
    return True  # "process": alive is all we can say


def running_components(state_dir: Path) -> list[str]:
    """Names recorded in ``state_dir`` whose (verified) process is alive; no health probes."""
    state_dir = Path(state_dir).absolute()
    state = read_state(state_dir) or {}
    names = [str(e.get("name")) for e in state.get("components", [])]
    return [n for n in names if ManagedProcess.find_running(state_dir, n) is not None]


def stack_status(state_dir: Path) -> list[ComponentStatus]:
    """Every component recorded in ``state_dir``: verified pid, endpoint, health right now."""
    state_dir = Path(state_dir).absolute()
    state = read_state(state_dir)
    if state is None:
        return []
    rows = []
    for entry in state.get("components", []):
        name = str(entry.get("name"))
        proc = ManagedProcess.find_running(state_dir, name)
        healthy = proc is not None and probe_healthy(entry.get("probe", {}))
        rows.append(
            ComponentStatus(
                name=name,
                pid=proc.pid if proc is not None else None,
                endpoint=str(entry.get("endpoint", "")),
                healthy=healthy,
            )
        )
    return rows


def stack_down(state_dir: Path, timeout_s: float = 15.0) -> list[str]:
    """Stop everything recorded in ``state_dir`` (services, then infrastructure); names that
    were alive.

    Also stops processes that have pid files but are missing from stack.json (a launcher that
    died mid-start), then removes Triton's leftover shared memory and the state file.
    """
    state_dir = Path(state_dir).absolute()
    state = read_state(state_dir) or {}
    ordered = [str(e.get("name")) for e in state.get("components", [])]
    pid_dir = state_dir / "pids"
    recorded = sorted(p.stem for p in pid_dir.glob("*.json")) if pid_dir.is_dir() else []
    strays = [n for n in recorded if not n.startswith(".") and n not in ordered]

    def stopper(name: str) -> Callable[[], bool]:
        def stop() -> bool:
            try:
                return ManagedProcess.stop_from_pidfile(state_dir, name, timeout_s)
            finally:
                remove_pid_files(state_dir, name)
        return stop

    # as EmbeddedStack.stop: the services (and strays) together, then the infrastructure
    names = strays + list(reversed(ordered))
    stopped = []
    for wave in ([n for n in names if n not in INFRASTRUCTURE],
                 [n for n in names if n in INFRASTRUCTURE]):
        stopped += [name for name, alive in _together([(n, stopper(n)) for n in wave])
                    if alive]
    cleanup_shm(state_dir)
    with contextlib.suppress(FileNotFoundError):
        (state_dir / STATE_FILE).unlink()
    return stopped


def component_log_tail(state_dir: Path, name: str, lines: int = 40) -> str:
    """The end of a component's log, for ``switchyard status`` / error reports."""
    return tail(ManagedProcess.log_path_for(state_dir, name), lines)
