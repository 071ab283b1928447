"""500 auto-executed tasks against a downstream that fails 30% of calls at random.

Half of the injected failures happen before the downstream stores anything, half after it
stored the effect (the caller only sees an error and retries): every task must still succeed
and the downstream must hold exactly one effect per task. (500 tasks meet about a hundred
failures of each kind, twice the 50 the test asks to see.)
"""

from __future__ import annotations

import pytest

from tests.executor.harness import Harness, decision, http_step

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("executor")]
TASKS = 500


async def test_500_tasks_against_30_percent_failures_take_effect_exactly_once(
        harness: Harness) -> None:
    await harness.faults("erp", error_rate=0.15, lost_response_rate=0.15, error_status=503)
    try:
        task_ids = await harness.seed(TASKS)
        await harness.send(decision(t, "acme", [http_step("1-post_invoice",
                                                          "http://erp/invoices",
                                                          {"amount": i, "task": t})])
                           for i, t in enumerate(task_ids))
        final = await harness.wait(task_ids, timeout_s=280)
    finally:
        await harness.clear_faults()

    assert {status for status, _, _ in final.values()} == {"SUCCEEDED"}
    effects = await harness.effects(task_ids)
    assert len(effects) == TASKS
    assert {e["idempotency_key"] for e in effects} == {f"{t}:1-post_invoice" for t in task_ids}
    assert all(e["status"] == "active" for e in effects)

    # the faults really happened, and retries of stored-but-unanswered calls were replays
    assert harness.pool is not None
    outcomes = dict(await harness.pool.fetch(
        f'SELECT outcome, count(*) FROM "{harness.downstream_schema}".calls '
        "WHERE path = '/erp/invoices' GROUP BY outcome"))
    assert outcomes["created"] == TASKS
    assert outcomes["fault"] > 50 and outcomes["replayed"] > 50, outcomes
    attempts = await harness.pool.fetchval(
        "SELECT sum(attempts) FROM executions WHERE task_id = ANY($1::uuid[])", task_ids)
    assert attempts > TASKS
