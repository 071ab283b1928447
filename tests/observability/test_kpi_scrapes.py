"""The KPI exporter queries PostgreSQL only while someone scrapes it.

A real ``switchyard run ingest`` with a short refresh and idle time: scraped, it exports the
KPI gauges and refreshes them; left unscraped past ``SWITCHYARD_KPI_IDLE_AFTER_S`` it clears
them and stops refreshing (the refresh counter stands still); the next scrape wakes it and the
figures come back.
"""

from __future__ import annotations

import asyncio
import re
import urllib.request
from collections.abc import Iterator

import pytest

from switchyard import Settings
from switchyard.rpc import create_channel
from switchyard.v1 import IngestServiceStub, SubmitTaskRequest
from tests.ingest.helpers import IngestProcess, submission
from tests.polling import eventually

pytestmark = [pytest.mark.integration]
TENANT, TASKS = "kpi-scrapes", 3
REFRESH_S, IDLE_AFTER_S, UNSCRAPED_S = 0.2, 1.0, 4.0
OPEN = f'switchyard_kpi_tasks{{status="open",tenant="{TENANT}"}}'
IDLE_LOG = "no scrape of the KPIs for"


@pytest.fixture(scope="module")
def ingest(settings: Settings, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[IngestProcess]:
    process = IngestProcess(settings.replace(kpi_refresh_s=REFRESH_S,
                                             kpi_idle_after_s=IDLE_AFTER_S),
                            tmp_path_factory.mktemp("ingest")).start()
    try:
        yield process
    finally:
        process.stop()


def scrape(process: IngestProcess) -> str:
    url = f"http://127.0.0.1:{process.settings.ingest_metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def refreshes(text: str) -> float:
    match = re.search(r"^switchyard_kpi_exporter_refreshes_total (\S+)$", text, re.M)
    assert match, "no refresh counter"
    return float(match.group(1))


async def test_the_kpis_are_refreshed_only_while_scraped(ingest: IngestProcess) -> None:
    channel = create_channel(f"127.0.0.1:{ingest.settings.ingest_grpc_port}")
    try:
        stub = IngestServiceStub(channel)
        for _ in range(TASKS):
            await stub.SubmitTask(SubmitTaskRequest(submission=submission(TENANT)))
    finally:
        await channel.close()

    async def exported() -> bool:
        return f"{OPEN} {float(TASKS)}" in scrape(ingest)

    await eventually(exported, timeout_s=60, what="the KPI gauges while scraped")

    # nobody scrapes: the exporter goes idle (its log says so; a refresh in flight on a busy
    # machine may finish after IDLE_AFTER_S, so the log, not a clock, says when)
    went_idle = ingest.log().count(IDLE_LOG)
    await asyncio.sleep(UNSCRAPED_S)

    async def idle() -> bool:
        return ingest.log().count(IDLE_LOG) > went_idle

    await eventually(idle, timeout_s=60, what="the exporter to go idle")
    woken = scrape(ingest)
    assert "switchyard_kpi_exporter_active 1.0" in woken
    assert OPEN not in woken, "the KPI series stayed after nobody scraped them"
    # the scrape woke it; leave it alone again and count what it did meanwhile
    before = refreshes(woken)
    await asyncio.sleep(UNSCRAPED_S)
    after = refreshes(scrape(ingest))
    # refreshing throughout would be about UNSCRAPED_S / REFRESH_S = 20 refreshes; it stops
    # after IDLE_AFTER_S (about 5), whatever the speed of the machine
    assert 1 <= after - before <= IDLE_AFTER_S / REFRESH_S + 2, (before, after)

    await eventually(exported, timeout_s=60, what="the KPI gauges back after a scrape")
