"""Run the real ``switchyard`` command line as a subprocess, with a test's settings."""

from __future__ import annotations

import os
import subprocess
import sys

from switchyard import Settings


def switchyard(settings: Settings | None, *args: str, timeout_s: float = 240
               ) -> subprocess.CompletedProcess[str]:
    """``python -m switchyard ARGS`` with the settings in its environment (stdout, stderr apart)."""
    env = {**os.environ, **(settings.to_env() if settings else {})}
    return subprocess.run([sys.executable, "-m", "switchyard", *args], env=env,
                          capture_output=True, text=True, timeout=timeout_s, check=False)


def on_a_terminal(argv: list[str], env: dict[str, str] | None = None, timeout_s: float = 240
                  ) -> tuple[int, str, bytes]:
    """Run ``argv`` with stderr on a pseudo-terminal (stdout a pipe), as a person at a
    terminal would with stdout redirected: its exit code, stdout, and what it drew on the
    terminal. The terminal is read while the command runs, so it never blocks on it."""
    import pty
    import select
    import threading
    import time

    controller, terminal = pty.openpty()
    drawn = b""
    try:
        process = subprocess.Popen(argv, env={**os.environ, **(env or {}), "TERM": "xterm"},
                                   stdout=subprocess.PIPE, stderr=terminal, text=True)
        os.close(terminal)
        out: list[str] = []

        def read_stdout() -> None:
            assert process.stdout is not None
            out.append(process.stdout.read())

        reader = threading.Thread(target=read_stdout, daemon=True)
        reader.start()
        deadline = time.monotonic() + timeout_s
        while True:
            if select.select([controller], [], [], 0.2)[0]:
                try:
                    chunk = os.read(controller, 65536)
                except OSError:   # the terminal side is closed and drained
                    chunk = b""
                if chunk:
                    drawn += chunk
                    continue
                break   # end of the terminal: the command has closed it (exited)
            if process.poll() is not None:
                break
            if time.monotonic() > deadline:
                process.kill()
                raise TimeoutError(f"{argv} still running after {timeout_s:.0f}s")
        process.wait(timeout_s)
        reader.join(30)
        return process.wait(), "".join(out), drawn
    finally:
        os.close(controller)
