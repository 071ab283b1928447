"""SIGKILL the executor in the middle of a run, start it again: every task completes, and the
downstream holds exactly one effect per step (no duplicates, nothing lost)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.observed import metric_sum
from tests.executor.harness import Harness, Service, decision, http_step

pytestmark = [pytest.mark.integration]
TASKS = 300


@pytest.fixture(scope="module")
def executor_overrides() -> dict[str, Any]:
    """Small batches: the kill must find decisions the executor never took yet (the whole
    backlog fits in two batches of the default size, and parked jobs leave their batch at
    once)."""
    return {"stream_batch_max_records": 8}


async def test_sigkill_mid_run_loses_nothing_and_duplicates_nothing(
        harness: Harness, executor: Service) -> None:
    # slow enough that the kill lands with calls in flight and offsets not yet committed
    await harness.faults("erp", latency_ms=40, error_rate=0.1)
    await harness.faults("sis", latency_ms=40)
    task_ids = await harness.seed(TASKS)
    await harness.send(decision(t, "acme", [
        http_step("1-post_invoice", "http://erp/invoices", {"task": t}),
        http_step("2-notify", "http://sis/notices", {"task": t}),
    ]) for t in task_ids)

    assert harness.pool is not None
    for _ in range(6000):
        statuses = await harness.statuses(task_ids)
        finished = sum(s == "SUCCEEDED" for s, _, _ in statuses.values())
        # kill at a moment when a job is mid-run, so the takeover path is exercised too, and
        # before every decision was taken: once the erp's breaker opens, jobs park at once
        # and the executor reads on faster than tasks finish, so a fifth finished can come
        # only after it read them all
        taken, running = await harness.pool.fetchrow(
            "SELECT count(*), count(*) FILTER (WHERE state = 'running') FROM executor_jobs "
            "WHERE task_id = ANY($1::uuid[])", task_ids)
        if running and taken < TASKS and (finished >= TASKS // 5 or taken >= TASKS * 3 // 4):
            break
        await asyncio.sleep(0.01)
    executor.kill()
    assert finished < TASKS, "the run finished before the kill; nothing was tested"
    at_kill = dict(await harness.pool.fetch(
        "SELECT state, count(*) FROM executor_jobs WHERE task_id = ANY($1::uuid[]) "
        "GROUP BY state", task_ids))
    # both recovery paths get exercised: jobs the dead replica was running (taken over once
    # its heartbeat goes stale) and decisions it never got to (redelivered by Kafka)
    assert at_kill.get("running", 0) > 0, at_kill
    assert sum(at_kill.values()) < TASKS, at_kill
    dead = dict(await harness.pool.fetch(
        "SELECT task_id::text, owner FROM executor_jobs WHERE task_id = ANY($1::uuid[]) "
        "AND state = 'running'", task_ids))

    executor.start()
    final = await harness.wait(task_ids, timeout_s=240)
    await harness.clear_faults()
    assert {s for s, _, _ in final.values()} == {"SUCCEEDED"}
    effects = await harness.effects(task_ids)
    keys = [e["idempotency_key"] for e in effects]
    assert len(keys) == len(set(keys)) == 2 * TASKS
    jobs = dict(await harness.pool.fetch(
        "SELECT state, count(*) FROM executor_jobs WHERE task_id = ANY($1::uuid[]) "
        "GROUP BY state", task_ids))
    assert jobs == {"succeeded": TASKS}
    # each task the dead replica was running says so in its timeline: taken over, from whom
    taken = {row["task_id"]: json.loads(row["detail"]) for row in await harness.pool.fetch(
        "SELECT task_id::text, detail FROM audit_log WHERE action = 'task.taken_over' "
        "AND task_id = ANY($1::uuid[])", task_ids)}
    assert set(taken) == set(dead), (len(taken), len(dead))
    assert all(taken[t]["from_replica"] == dead[t] != taken[t]["to_replica"] for t in dead)
    # the steps that concurrent runs recorded went to PostgreSQL in groups
    port = harness.settings.executor_metrics_port
    groups = metric_sum(port, "switchyard_group_commit_items_count", 'writes="executions"')
    steps = metric_sum(port, "switchyard_group_commit_items_sum", 'writes="executions"')
    assert 0 < groups < steps
    # and the runs ended (task status and job) through the shared transaction as well
    ended = metric_sum(port, "switchyard_group_commit_items_sum", 'writes="task_endings"')
    assert 0 < ended <= TASKS

