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
