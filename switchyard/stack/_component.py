"""The shape every embedded server shares: launch, wait until healthy, stop, describe.

Launching and waiting are separate steps so :class:`~switchyard.stack.EmbeddedStack` can
spawn every server from the calling thread (which keeps the parent-death guard armed, see
:class:`~switchyard.stack.ManagedProcess`) and then wait for all of them at once.
"""

from __future__ import annotations

import os
import signal
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from switchyard._settings import Settings
from switchyard.stack._process import ManagedProcess
from switchyard.stack._util import StackError, port_is_free, wait_until


class Component(ABC):
    """Base of the embedded servers; subclasses supply argv, env, the endpoint and a probe."""

    #: process name: log file, pid file and the key in stack.json
    name: ClassVar[str]
    #: how long a polite stop may take before the group is killed
    stop_timeout_s: ClassVar[float] = 10.0
    stop_signal: ClassVar[int] = signal.SIGTERM
    signal_group: ClassVar[bool] = True

    def __init__(self, settings: Settings, state_dir: Path, *, detached: bool = False) -> None:
        self.settings = settings
        self.state_dir = Path(state_dir).absolute()
        self.detached = detached
        self.process: ManagedProcess | None = None
        self.startup_s: float | None = None
        self._launched_at: float | None = None

    # -- what subclasses provide -------------------------------------------------------------
    @abstractmethod
    def _argv(self) -> Sequence[str]: ...

    def _env(self) -> Mapping[str, str]:
        return dict(os.environ)

    def _user(self) -> str | None:
        return None

    def ports(self) -> Sequence[int]:
        """TCP ports on 127.0.0.1 this component will listen on (checked free before spawn)."""
        return ()

    def _prepare(self) -> None:
        """Work before the spawn (initdb, assembling a backends dir)."""

    def _after_ready(self) -> None:
        """Work once healthy (creating the database, writing the DSN file)."""

    @property
    @abstractmethod
    def endpoint(self) -> str:
        """Where clients reach this component, as shown to users."""

    @abstractmethod
    def healthy(self) -> bool:
        """A real protocol round trip succeeds (not just a TCP connect)."""

    @abstractmethod
    def probe(self) -> dict[str, Any]:
        """How another process re-checks health (stored in stack.json; see ``probe_healthy``)."""

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None and self.process.is_running() else None

    @property
    def log_path(self) -> Path:
        return ManagedProcess.log_path_for(self.state_dir, self.name)

    def launch(self) -> None:
        """Prepare and spawn the server without waiting for it."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._launched_at = time.monotonic()
        self._prepare()
        # A server already on our port would answer the health probe in place of ours (which
        # then dies on EADDRINUSE), so a busy port is an error before anything is spawned.
        busy = [p for p in self.ports() if not port_is_free(p)]
        if busy:
            raise StackError(
                f"{self.name}: 127.0.0.1:{busy[0]} is already in use (another stack or server?); "
                "pick other ports or stop it (switchyard down)"
            )
        self.process = ManagedProcess(
            self.name,
            self._argv(),
            state_dir=self.state_dir,
            env=self._env(),
            user=self._user(),
            stop_signal=self.stop_signal,
            signal_group=self.signal_group,
            detached=self.detached,
        )
        self.process.start()

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Block until :meth:`healthy`; raise :class:`StackError` with the log tail otherwise."""
        if self.process is None:
            raise StackError(f"{self.name} was not launched")
        process = self.process

        def _exited() -> str | None:
            code = process.returncode
            if code is None:
                return None
            return self._failure(f"exited with code {code} while starting")

        def _ours_healthy() -> bool:
            return self.healthy() and process.is_running()

        if not wait_until(_ours_healthy, timeout_s, interval_s=0.1, abort=_exited):
            raise StackError(self._failure(f"not healthy after {timeout_s:.0f}s"))
        self._after_ready()
        if self._launched_at is not None:
            self.startup_s = time.monotonic() - self._launched_at

    def start(self, timeout_s: float = 60.0) -> None:
        """Launch and block until healthy; a failed start leaves nothing running."""
        try:
            self.launch()
            self.wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout_s: float | None = None) -> None:
        if self.process is not None:
            self.process.stop(self.stop_timeout_s if timeout_s is None else timeout_s)

    def _failure(self, what: str) -> str:
        log_tail = self.process.log_tail() if self.process is not None else ""
        return (
            f"{self.name} ({self.endpoint}) {what}.\n"
            f"--- last lines of {self.log_path} ---\n{log_tail}"
        )

    def describe(self) -> dict[str, Any]:
        """This component's entry in stack.json."""
        return {
            "name": self.name,
            "kind": "infrastructure",
            "pid": self.pid,
            "endpoint": self.endpoint,
            "log": str(self.log_path),
            "probe": self.probe(),
        }

    def __enter__(self) -> Component:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
