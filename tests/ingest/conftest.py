"""Ingest integration fixtures: a real ``switchyard run ingest`` process per module (the gRPC
stub and the PostgreSQL connection are tests/conftest.py's ``ingest`` and ``db``).

Only ingest runs (no decision stage), so accepted tasks stay QUEUED and the tests can see
exactly what ingest did; the full pipeline is covered by tests/e2e.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from switchyard import Settings
from tests.ingest.helpers import IngestProcess


@pytest.fixture(scope="module")
def ingest_process(settings: Settings, tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[IngestProcess]:
    process = IngestProcess(settings, tmp_path_factory.mktemp("ingest")).start()
    try:
        yield process
    finally:
        process.stop()
