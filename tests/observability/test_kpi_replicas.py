"""Business KPIs with TWO ingest replicas: each figure is exported once per deployment.

Every ingest replica runs the KPI exporter; only the one holding the deployment's advisory
lock exports the gauges, so the dashboard's ``sum by (...)`` over pods equals the figure in
PostgreSQL instead of N times it. When that replica stops, the other one takes over. Both
replicas are real ``switchyard run ingest`` processes on the module's schema; their log lines
name the deployment (``SWITCHYARD_ENVIRONMENT``).
"""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator

import pytest

from switchyard import Settings
from switchyard.rpc import create_channel
from switchyard.stack import free_port
from switchyard.storage import connect
from switchyard.v1 import IngestServiceStub, SubmitTaskRequest
from tests.ingest.helpers import IngestProcess, submission
from tests.polling import eventually

pytestmark = [pytest.mark.integration]
TENANT, TASKS = "kpi-replicas", 7


@pytest.fixture(scope="module")
def settings(settings: Settings) -> Settings:
    return settings.replace(kpi_refresh_s=0.3, environment="kpi-replica-test")


@pytest.fixture(scope="module")
def replicas(settings: Settings, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[list[IngestProcess]]:
    second = settings.replace(ingest_grpc_port=free_port(), ingest_metrics_port=free_port(),
                              ingest_rest_port=free_port())
    started: list[IngestProcess] = []
    try:
        for i, replica_settings in enumerate((settings, second)):
            started.append(IngestProcess(replica_settings,
                                         tmp_path_factory.mktemp(f"ingest-{i}")).start())
        yield started
    finally:
        for process in started:
            process.stop()


def scrape(process: IngestProcess) -> str:
    url = f"http://127.0.0.1:{process.settings.ingest_metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def kpi_series(text: str) -> dict[str, float]:
    """Every ``switchyard_kpi_*`` sample of one scrape (the exporter flag excluded)."""
    return {m.group(1): float(m.group(3)) for m in re.finditer(
        r"^(switchyard_kpi_(?!exporter_)\w+(\{[^}]*\})?) (\S+)$", text, re.M)}


def summed(scrapes: list[str], series: str) -> float:
    """What a dashboard's ``sum`` over every scraped pod shows for one series."""
    return sum(kpi_series(text).get(series, 0.0) for text in scrapes)


async def test_one_replica_exports_the_kpis_and_the_other_takes_over(
        settings: Settings, replicas: list[IngestProcess]) -> None:
    channel = create_channel(f"127.0.0.1:{settings.ingest_grpc_port}")
    try:
        stub = IngestServiceStub(channel)
        for _ in range(TASKS):  # only ingest runs: the tasks stay QUEUED (open)
            await stub.SubmitTask(SubmitTaskRequest(submission=submission(TENANT)))
    finally:
        await channel.close()
    conn = await connect(settings)
    try:
        open_in_db = await conn.fetchval(
            "SELECT count(*) FROM tasks WHERE tenant_id = $1 AND status = 'QUEUED'", TENANT)
    finally:
        await conn.close()
    assert open_in_db == TASKS
    series = f'switchyard_kpi_tasks{{status="open",tenant="{TENANT}"}}'

    async def exporters() -> list[IngestProcess] | None:
        scrapes = [scrape(p) for p in replicas]
        active = [p for p, text in zip(replicas, scrapes)
                  if "switchyard_kpi_exporter_active 1.0" in text]
        return active if summed(scrapes, series) == TASKS else None

    [leader] = await eventually(exporters, timeout_s=60, what="the KPI gauges")
    [follower] = [p for p in replicas if p is not leader]
    # the other replica exports no KPI series at all, so a sum over pods counts once
    follower_text = scrape(follower)
    assert "switchyard_kpi_exporter_active 0.0" in follower_text
    assert kpi_series(follower_text) == {}
    assert kpi_series(scrape(leader))[series] == TASKS

    # the exporting replica goes away: the other one takes over, with the same figures
    leader.stop()

    async def took_over() -> bool:
        text = scrape(follower)
        return "switchyard_kpi_exporter_active 1.0" in text \
            and kpi_series(text).get(series) == TASKS

    await eventually(took_over, timeout_s=60, what="the other replica exporting the KPIs")

    # every log line of a replica names the deployment (SWITCHYARD_ENVIRONMENT)
    lines = [json.loads(line) for line in follower.log().splitlines()
             if line.startswith("{")]
    assert lines and {entry["environment"] for entry in lines} == {"kpi-replica-test"}
