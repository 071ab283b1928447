"""Executor fixtures: the demo downstream and the executor as real processes per module."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from switchyard import Settings
from tests.executor.harness import FAST, Harness, Service


@pytest.fixture(scope="module")
def executor_overrides() -> dict[str, Any]:
    """Modules override this for settings of their own (e.g. a tenant's SLA)."""
    return {}


@pytest.fixture(scope="module")
def exec_settings(settings: Settings, executor_overrides: dict[str, Any]) -> Settings:
    return settings.replace(**{**FAST, **executor_overrides})


@pytest.fixture(scope="module")
def downstream(exec_settings: Settings, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[Service]:
    service = Service("downstream", exec_settings, tmp_path_factory.mktemp("downstream"))
    service.start()
    try:
        yield service
    finally:
        assert service.stop() == 0, service.log()


@pytest.fixture(scope="module")
def executor(exec_settings: Settings, downstream: Service,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    service = Service("executor", exec_settings, tmp_path_factory.mktemp("executor"))
    service.start()
    try:
        yield service
    finally:
        code = service.stop()
        assert code == 0, service.log()  # SIGTERM: a clean shutdown


@pytest.fixture(scope="module")
async def harness(exec_settings: Settings) -> AsyncIterator[Harness]:
    async with Harness(exec_settings) as h:
        yield h
