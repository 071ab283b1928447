"""Fixtures of the review tests: a real browser (Debian's chromium driven by Playwright) and
the review service alone as a process, for modules that need no other service."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from switchyard import Settings
from switchyard.runtime import service_specs
from switchyard.stack import EmbeddedStack

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make setup` installs Debian's chromium")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(CHROMIUM),
                                                    args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture(scope="module")
def review_process(settings: Settings, tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[EmbeddedStack]:
    """Only the review service, as a real process (ready when its gRPC health is SERVING)."""
    services = EmbeddedStack(settings, tmp_path_factory.mktemp("review"), components=(),
                             services=service_specs(settings, ("review",)))
    services.start(timeout_s=90)
    try:
        yield services
    finally:
        services.stop()

