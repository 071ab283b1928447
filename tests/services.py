"""Services started for one test module, as the stack starts them: separate processes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from switchyard import Settings
from switchyard.runtime import service_specs
from switchyard.stack import EmbeddedStack


@contextmanager
def running(settings: Settings, state_dir: Path, names: Sequence[str],
            timeout_s: float = 90) -> Iterator[EmbeddedStack]:
    """The named services as processes, ready (gRPC health SERVING), stopped on exit."""
    stack = EmbeddedStack(settings, state_dir, components=(),
                          services=service_specs(settings, tuple(names)))
    stack.start(timeout_s=timeout_s)  # a failed start stops what it started
    try:
        yield stack
    finally:
        stack.stop()


__all__ = ["running"]
