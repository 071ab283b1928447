"""A stream actor cancelled (a rebalance or a shutdown) is not logged as a crash.

An outside SRE stopping a service found ERROR "Crashed reason=CancelledError()" with a
traceback from faust's actor: mode's ``Service.crash``, which faust calls with the
CancelledError when an actor is cancelled before its agent stops. The process here configures
logging through the services' own code path and crashes a real mode service twice: once
cancelled (said at INFO, without a traceback), once with a real error (left at ERROR).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

SERVICE = textwrap.dedent("""
    import asyncio
    from mode import Service
    from switchyard import Settings
    from switchyard._telemetry import configure_logging

    configure_logging(Settings.from_env(), "executor")

    async def main():
        await Service().crash(asyncio.CancelledError())
        await Service().crash(ValueError("a real failure"))

    asyncio.run(main())
""")


def test_a_cancelled_actor_is_said_at_info_and_a_crash_stays_an_error() -> None:
    env = {**os.environ, "SWITCHYARD_LOG_FORMAT": "json", "SWITCHYARD_LOG_LEVEL": "INFO"}
    proc = subprocess.run([sys.executable, "-c", SERVICE], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    entries = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    said = [(e["level"], e["msg"]) for e in entries if e["logger"].startswith("mode")]
    assert said == [
        ("INFO", "[^Service]: stream actor cancelled (a rebalance or a shutdown)"),
        ("ERROR", "[^Service]: Crashed reason=ValueError('a real failure')"),
    ], proc.stderr
