"""Progress bars for long commands, drawn the one way every command draws them.

A bar goes to stderr and only when stderr is a terminal: piped or redirected output, ``--json``
output (on stdout) and logs never contain one. ``transient``: the bar disappears when done,
so what stays on screen is the command's own output.
"""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

__all__ = ["stderr_progress"]


def stderr_progress(console: Console | None = None) -> Progress:
    """A rich Progress on stderr (or ``console``, when it writes to stderr), disabled
    unless that is a terminal. Use it as a context manager; it is thread-safe."""
    console = console or Console(stderr=True)
    # What the command prints meanwhile goes above the bar when stdout is the same screen;
    # stdout redirected to a file or pipe is left alone, so it gets every line.
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                    MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                    disable=not (console.stderr and console.is_terminal), transient=True,
                    redirect_stdout=sys.stdout.isatty())
