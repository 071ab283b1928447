"""SWITCHYARD_ENVIRONMENT is in every log line, as its setting's text says.

The process configures logging through the services' own code path (``configure_logging``,
what ``run_service`` calls) from its environment variables; both formats name the deployment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

SERVICE = textwrap.dedent("""
    import logging
    from switchyard import Settings
    from switchyard._telemetry import configure_logging

    configure_logging(Settings.from_env(), "ingest")
    logging.getLogger("check").warning("hello")
""")


def log_line(log_format: str) -> str:
    env = {**os.environ, "SWITCHYARD_ENVIRONMENT": "staging-eu",
           "SWITCHYARD_LOG_FORMAT": log_format}
    proc = subprocess.run([sys.executable, "-c", SERVICE], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stderr.strip().splitlines()[-1]


def test_json_log_lines_carry_the_environment() -> None:
    entry = json.loads(log_line("json"))
    assert (entry["environment"], entry["service"], entry["msg"]) == (
        "staging-eu", "ingest", "hello")


def test_text_log_lines_carry_the_environment() -> None:
    assert " staging-eu ingest check: hello" in log_line("text")
