"""Two executor replicas share one view of each breaker: an outage found by either opens the
breaker on both (no replica keeps calling), probes stay rare, and recovery closes it on both."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import aiohttp
import pytest

from switchyard import Settings
from switchyard.stack import free_port
from tests.executor.harness import Harness, Service, decision, http_step
from tests.executor.test_outage import blocked_on_erp, breakers
from tests.polling import eventually

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("executor")]


@pytest.fixture(scope="module")
def replica_b(exec_settings: Settings, executor: Service,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    other = exec_settings.replace(executor_grpc_port=free_port(),
                                  executor_metrics_port=free_port())
    service = Service("executor", other, tmp_path_factory.mktemp("executor-b"))
    service.start()
    try:
        yield other
    finally:
        assert service.stop() == 0, service.log()
        # a clean stop: no agent reported as crashed, nothing logged as an error
        stopped = service.log()
        assert "Crashed" not in stopped and '"level": "ERROR"' not in stopped, stopped[-3000:]


async def breaker_gauge(settings: Settings, endpoint: str) -> float | None:
    async with aiohttp.ClientSession() as http, http.get(
            f"http://127.0.0.1:{settings.executor_metrics_port}/metrics") as response:
        text = await response.text()
    match = re.search(r'^switchyard_executor_breaker_state\{endpoint="' + re.escape(endpoint)
                      + r'"\} (\S+)$', text, re.M)
    return float(match.group(1)) if match else None


async def test_replicas_open_probe_and_close_a_breaker_together(
        harness: Harness, exec_settings: Settings, replica_b: Settings) -> None:
    replicas = (exec_settings, replica_b)
    await harness.faults("erp", outage=True)
    tasks = await harness.seed(60)
    await harness.send(decision(t, "acme", [http_step("1-post", "http://erp/records", {})])
                       for t in tasks)
    await harness.wait(tasks, blocked_on_erp, what="blocked on erp")
    assert harness.pool is not None
    owners = await harness.pool.fetchval(
        "SELECT count(DISTINCT owner) FROM executor_jobs WHERE task_id = ANY($1::uuid[])", tasks)
    assert owners == 2, "both replicas took part"

    # both replicas hold the breaker open locally (the one that did not trip adopted it)
    async def both_open() -> bool:
        gauges = [await breaker_gauge(s, "http://erp") for s in replicas]
        return all(g is not None and g >= 1 for g in gauges)
    await eventually(both_open, "both replicas to hold the breaker open", interval_s=0.25)
    views = [await breakers(s) for s in replicas]
    assert views[0]["http://erp"].status == views[1]["http://erp"].status
    assert views[0]["http://erp"].blocked_tasks == views[1]["http://erp"].blocked_tasks == 60

    # one probe at a time, cluster-wide
    before = await harness.call_count("/erp/")
    await asyncio.sleep(3 * exec_settings.executor_breaker_reset_s)
    probes = await harness.call_count("/erp/") - before
    assert probes <= 8, f"{probes} calls reached erp while its breaker was open"

    await harness.clear_faults()
    final = await harness.wait(tasks, timeout_s=120)
    assert {s for s, _, _ in final.values()} == {"SUCCEEDED"}

    async def both_closed() -> bool:
        return [await breaker_gauge(s, "http://erp") for s in replicas] == [0, 0]
    await eventually(both_closed, "both replicas to close the breaker", interval_s=0.25)
    effects = await harness.effects(tasks)
    assert len(effects) == len({e["idempotency_key"] for e in effects}) == 60
