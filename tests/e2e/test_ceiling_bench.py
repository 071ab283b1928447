"""The database part of the end-to-end benchmark's ceiling T* writes what an automated task
writes, through the same functions as the services, into the real schema: it must keep
working as the schema and those functions change (the benchmark itself runs with
`make bench`, not in the suite)."""

from __future__ import annotations

import pytest

from bench.ceiling import TENANT, db_tasks_per_s
from switchyard import Settings
from switchyard.storage import connect

pytestmark = [pytest.mark.integration]


async def test_the_database_replay_writes_whole_automated_tasks(settings: Settings) -> None:
    assert await db_tasks_per_s(settings, seconds=0.5, in_flight=2) > 0
    conn = await connect(settings)
    try:
        rows = await conn.fetchrow(
            "SELECT count(*) FILTER (WHERE status = 'SUCCEEDED') AS done, count(*) AS all, "
            "(SELECT count(*) FROM executions e JOIN tasks t USING (task_id) "
            " WHERE t.tenant_id = $1) AS steps FROM tasks WHERE tenant_id = $1", TENANT)
    finally:
        await conn.close()
    assert rows["all"] > 0 and rows["done"] == rows["all"]
    assert rows["steps"] == 2 * rows["all"]
