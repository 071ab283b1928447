"""Keeps the service processes running, the way a kubelet does: what exits is started again.

The harness kills services with SIGKILL and the broker-loss watch makes services exit 75 on
purpose; both rely on a supervisor to bring them back. Restarts happen after a short delay
(a crash-looping process is not restarted in a tight loop) and are counted per service.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from switchyard.stack import ManagedProcess, ServiceSpec

log = logging.getLogger("chaos.supervisor")


class Supervisor:
    def __init__(self, specs: list[ServiceSpec], state_dir: Path, env: Mapping[str, str],
                 restart_delay_s: float = 1.0) -> None:
        self.specs = {spec.name: spec for spec in specs}
        self.state_dir = state_dir
        self.env = dict(env)
        self.restart_delay_s = restart_delay_s
        self.processes: dict[str, ManagedProcess] = {}
        self.restarts: Counter[str] = Counter()
        self.exit_codes: Counter[tuple[str, int]] = Counter()
        self._exited_at: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    def start_all(self) -> None:
        for name in self.specs:
            self._spawn(name)

    def _spawn(self, name: str) -> None:
        spec = self.specs[name]
        process = ManagedProcess(name, spec.argv, state_dir=self.state_dir,
                                 env={**self.env, **spec.env})
        process.start()
        self.processes[name] = process

    def kill(self, name: str) -> int | None:
        """SIGKILL the service's whole process group: a crashed node, an OOM kill."""
        process = self.processes[name]
        if process.pid is None or not process.is_running():
            return None
        os.killpg(process.pid, signal.SIGKILL)
        return process.pid

    def pause(self, name: str) -> None:
        """SIGSTOP: the process is there but does nothing (a stalled consumer, lag builds)."""
        process = self.processes[name]
        if process.pid is not None:
            os.killpg(process.pid, signal.SIGSTOP)

    def resume(self, name: str) -> None:
        process = self.processes[name]
        if process.pid is not None:
            os.killpg(process.pid, signal.SIGCONT)

    async def watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(0.25)
            for name, process in list(self.processes.items()):
                code = process.returncode
                if code is None:
                    continue
                now = loop.time()
                first_seen = self._exited_at.setdefault(name, now)
                if now - first_seen < self.restart_delay_s:
                    continue
                del self._exited_at[name]
                process.stop(timeout_s=2)  # reap the group, remove the pid files
                self.exit_codes[(name, code)] += 1
                self.restarts[name] += 1
                log.warning("%s exited with %s; starting it again", name, code)
                self._spawn(name)

    async def start_watching(self) -> None:
        self._task = asyncio.create_task(self.watch())

    async def stop_watching(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def stop_all(self) -> dict[str, int | None]:
        """SIGTERM every service (clean shutdown), in reverse start order; their exit codes."""
        codes = {}
        for name in reversed(list(self.processes)):
            process = self.processes[name]
            process.stop(timeout_s=20)
            codes[name] = process.returncode
        return codes
