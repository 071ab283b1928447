"""``switchyard audit show TASK_ID`` and ``switchyard audit verify``."""

from __future__ import annotations

import asyncio
import json

from rich.table import Table

from switchyard._audit import task_story, verify
from switchyard._db import create_pool
from switchyard._settings import Settings
from switchyard._tasks_cli import data_console


async def _show(settings: Settings, task_id: str) -> int:
    pool = await create_pool(settings.replace(postgres_pool_min=1, postgres_pool_max=1))
    try:
        async with pool.acquire() as conn:
            rows = await task_story(conn, task_id)
    finally:
        await pool.close()
    console = data_console(140)
    if not rows:
        console.print(f"no audit entries for task {task_id}")
        return 1
    table = Table(title=f"audit trail of task {task_id}", title_justify="left")
    for column in ("when (UTC)", "actor", "action", "detail", "hash"):
        table.add_column(column, overflow="fold")
    for row in rows:
        detail = json.loads(row["detail"])
        table.add_row(row["occurred_at"].strftime("%Y-%m-%d %H:%M:%S.%f"), row["actor"],
                      row["action"], json.dumps(detail, sort_keys=True)[:400],
                      row["entry_hash"][:12])
    console.print(table)
    return 0


async def _verify(settings: Settings, tenant: str | None) -> int:
    pool = await create_pool(settings.replace(postgres_pool_min=1, postgres_pool_max=1))
    try:
        async with pool.acquire() as conn:
            result = await verify(conn, tenant)
    finally:
        await pool.close()
    if result.broken is None:
        print(f"audit chain intact: {result.entries} entries in {result.chains} chain(s) of "
              f"{result.tenants} tenant(s)")
        return 0
    broken = result.broken
    print(f"audit chain BROKEN at entry {broken.entry_id} (tenant {broken.tenant_id}, "
          f"writer {broken.writer or '(before writers)'}, seq {broken.seq}): {broken.problem}")
    return 1


def show(settings: Settings, task_id: str) -> int:
    return asyncio.run(_show(settings, task_id))


def verify_chain(settings: Settings, tenant: str | None) -> int:
    return asyncio.run(_verify(settings, tenant))
