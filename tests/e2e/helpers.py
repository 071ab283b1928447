"""Two steps many end-to-end tests take: waiting for a task's status, and a reviewer's verdict
on a task's review item. The clients they use (the ``ingest`` and ``review`` stubs, the ``db``
connection) are tests/conftest.py's; a test file that needs another kind (a key, a pool, a
module-wide connection) defines its own fixture of the same name."""

from __future__ import annotations

from switchyard.v1 import (
    ClaimRequest,
    GetTaskRequest,
    IngestServiceStub,
    ListQueueRequest,
    ReviewServiceStub,
    ReviewVerdict,
    SubmitVerdictRequest,
    Task,
)
from tests.polling import eventually


async def task_in(ingest: IngestServiceStub, task_id: str, statuses: set[int],
                  timeout_s: float = 120) -> Task:
    """The task once its status is one of ``statuses``."""
    async def probe() -> Task | None:
        task = (await ingest.GetTask(GetTaskRequest(task_id=task_id))).task
        return task if task.status in statuses else None
    return await eventually(probe, timeout_s=timeout_s, what=f"task {task_id} in {statuses}")


async def give_verdict(review: ReviewServiceStub, task_id: str, kind: int,
                       reviewer: str = "rita", **verdict: object) -> None:
    """A reviewer finds the task's item in the queue, claims it and gives ``kind`` (more
    ReviewVerdict fields in ``verdict``: modified_fields, reason, document_type)."""
    async def item_id() -> str | None:
        items = (await review.ListQueue(ListQueueRequest(page_size=100))).items
        return next((i.item_id for i in items if i.escalation.task_id == task_id), None)
    found = await eventually(item_id, timeout_s=60, what=f"review item of {task_id}")
    await review.Claim(ClaimRequest(item_id=found, reviewer_id=reviewer))
    await review.SubmitVerdict(SubmitVerdictRequest(verdict=ReviewVerdict(
        item_id=found, reviewer_id=reviewer, verdict=kind, **verdict)))  # type: ignore[arg-type]
