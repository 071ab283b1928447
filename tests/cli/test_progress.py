"""Progress bars: on stderr, only when stderr is a terminal; stdout stays the command's own."""

from __future__ import annotations

import subprocess
import sys

from tests.cli.helpers import on_a_terminal

BAR = "━".encode()
SCRIPT = """
import time
from switchyard._progress import stderr_progress
with stderr_progress() as bar:
    task = bar.add_task("copying things", total=3)
    for i in range(3):
        time.sleep(0.3)
        print("line", i)
        bar.advance(task)
print("done")
"""


def test_a_bar_is_drawn_on_a_terminal_and_stdout_keeps_every_line() -> None:
    code, out, drawn = on_a_terminal([sys.executable, "-c", SCRIPT])
    assert code == 0
    assert out == "line 0\nline 1\nline 2\ndone\n"
    assert b"copying things" in drawn and BAR in drawn


def test_no_bar_when_stderr_is_not_a_terminal() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0
    assert done.stdout == "line 0\nline 1\nline 2\ndone\n" and done.stderr == ""
