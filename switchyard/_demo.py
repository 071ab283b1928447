"""``switchyard demo``: a realistic mixed workload through the whole pipeline, then a summary.

Documents come from the held-out split of the router corpus (invoices, admission forms,
support tickets, classroom events, other), some with the kind given, some left to the router,
plus a few malformed submissions that ingest must refuse. A reviewer bot works the review
queue like a person would (claim, then approve most and reject some), and the demo waits until
every accepted task is terminal before printing what happened.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from switchyard._grpc import client_channel, field_violations
from switchyard._progress import stderr_progress
from switchyard._settings import Settings
from switchyard._taskstore import is_terminal
from switchyard.v1 import (
    ClaimRequest,
    Document,
    GetTaskRequest,
    IngestServiceStub,
    ListQueueRequest,
    ReviewServiceStub,
    ReviewVerdict,
    Submission,
    SubmitTaskRequest,
    SubmitVerdictRequest,
    TaskPriority,
    TaskStatus,
    Verdict,
)

HELDOUT = Path(__file__).resolve().parents[1] / "models" / "data" / "router_heldout.jsonl"
TENANTS = ("acme-health", "northwind-edu", "bluepeak-retail")


@dataclass
class Tally:
    submitted_at: dict[str, float] = field(default_factory=dict)
    finished_at: dict[str, float] = field(default_factory=dict)
    kind_of: dict[str, str] = field(default_factory=dict)
    outcome_of: dict[str, str] = field(default_factory=dict)
    reviewed: dict[str, str] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)


def load_documents(count: int, seed: int) -> list[dict[str, str]]:
    rows = [json.loads(line) for line in HELDOUT.read_text().splitlines() if line.strip()]
    return random.Random(seed).sample(rows, min(count, len(rows)))


def malformed_submissions(run: str) -> list[Submission]:
    return [
        Submission(tenant_id="acme-health", idempotency_key=f"{run}-bad-json",
                   kind="invoice", document=Document(content_type="application/json",
                                                     body=b'{"invoice": 12,')),
        Submission(tenant_id="acme-health", idempotency_key=f"{run}-unknown-kind",
                   kind="purchase_order", document=Document(body=b"PO 4471 for 3 chairs")),
        Submission(tenant_id="", idempotency_key="", document=Document(body=b"")),
    ]


async def submit_all(ingest: IngestServiceStub, docs: list[dict[str, str]], seed: int,
                     tally: Tally, console: Console,
                     on_submitted: Callable[[], None] = lambda: None) -> None:
    rng = random.Random(seed)
    run = f"demo-{int(time.time())}"
    semaphore = asyncio.Semaphore(32)

    async def one(index: int, doc: dict[str, str]) -> None:
        kind = doc["label"] if rng.random() < 0.6 else ""
        submission = Submission(
            tenant_id=TENANTS[index % len(TENANTS)], idempotency_key=f"{run}-{index}",
            kind=kind, document=Document(content_type="text/plain", body=doc["text"].encode()),
            priority_level=rng.choice((TaskPriority.TASK_PRIORITY_HIGH,
                                       TaskPriority.TASK_PRIORITY_NORMAL,
                                       TaskPriority.TASK_PRIORITY_NORMAL,
                                       TaskPriority.TASK_PRIORITY_LOW)),
            metadata={"source": "demo"},
        )
        async with semaphore:
            started = time.perf_counter()
            response = await ingest.SubmitTask(SubmitTaskRequest(submission=submission))
        tally.submitted_at[response.task_id] = started
        tally.kind_of[response.task_id] = doc["label"]
        on_submitted()

    await asyncio.gather(*(one(i, d) for i, d in enumerate(docs)))
    for bad in malformed_submissions(run):
        try:
            await ingest.SubmitTask(SubmitTaskRequest(submission=bad))
        except grpc.aio.AioRpcError as exc:
            fields = ", ".join(f"{k} ({v})" for k, v in field_violations(exc).items())
            tally.refused.append(f"{exc.code().name}: {fields}")
    console.print(f"submitted {len(docs)} tasks and {len(tally.refused)} malformed ones")


async def reviewer_bot(review: ReviewServiceStub, tally: Tally, seed: int,
                       stop: asyncio.Event) -> None:
    """Claims and decides review items as they appear: approve 4 in 5, reject the rest."""
    rng = random.Random(seed + 1)
    while not stop.is_set():
        page = await review.ListQueue(ListQueueRequest(page_size=100))
        pending = [i for i in page.items if not i.claimed_by]
        for item in pending:
            try:
                await review.Claim(ClaimRequest(item_id=item.item_id, reviewer_id="demo-bot"))
            except grpc.aio.AioRpcError:
                continue
            verdict = Verdict.VERDICT_APPROVE if rng.random() < 0.8 else Verdict.VERDICT_REJECT
            await review.SubmitVerdict(SubmitVerdictRequest(verdict=ReviewVerdict(
                item_id=item.item_id, reviewer_id="demo-bot", verdict=verdict,
                reason="looks right" if verdict == Verdict.VERDICT_APPROVE else "not ours")))
            tally.reviewed[item.escalation.task_id] = Verdict.Name(verdict).removeprefix(
                "VERDICT_").lower()
        if not pending:
            await asyncio.sleep(0.2)


async def wait_terminal(ingest: IngestServiceStub, tally: Tally, timeout_s: float,
                        on_finished: Callable[[], None] = lambda: None) -> None:
    deadline = time.monotonic() + timeout_s
    open_ids = set(tally.submitted_at)
    while open_ids and time.monotonic() < deadline:
        for task_id in list(open_ids):
            task = (await ingest.GetTask(GetTaskRequest(task_id=task_id))).task
            if is_terminal(task.status):
                open_ids.discard(task_id)
                tally.finished_at[task_id] = time.perf_counter()
                tally.outcome_of[task_id] = TaskStatus.Name(task.status).removeprefix(
                    "TASK_STATUS_")
                on_finished()
        if open_ids:
            await asyncio.sleep(0.25)
    if open_ids:
        raise TimeoutError(f"{len(open_ids)} tasks not terminal after {timeout_s:.0f}s: "
                           f"{sorted(open_ids)[:5]}")


def summary_table(tally: Tally, elapsed_s: float) -> Table:
    table = Table(title="Switchyard demo: what happened to each document type",
                  title_justify="left")
    for column in ("document type", "tasks", "automated", "approved", "rejected by reviewer",
                   "rejected by policy", "failed"):
        table.add_column(column, justify="right" if column != "document type" else "left")
    rows: dict[str, Counter[str]] = defaultdict(Counter)
    for task_id, kind in tally.kind_of.items():
        outcome = tally.outcome_of.get(task_id, "OPEN")
        verdict = tally.reviewed.get(task_id)
        row = rows[kind]
        row["tasks"] += 1
        if verdict == "approve" and outcome == "SUCCEEDED":
            row["approved"] += 1
        elif verdict == "reject":
            row["rejected by reviewer"] += 1
        elif outcome == "SUCCEEDED":
            row["automated"] += 1
        elif outcome == "FAILED" and verdict is None:
            row["rejected by policy"] += 1
        else:
            row["failed"] += 1
    total: Counter[str] = Counter()
    for kind in sorted(rows):
        total.update(rows[kind])
        table.add_row(kind, *(str(rows[kind][c]) for c in (
            "tasks", "automated", "approved", "rejected by reviewer", "rejected by policy",
            "failed")))
    table.add_row("[bold]all[/bold]", *(f"[bold]{total[c]}[/bold]" for c in (
        "tasks", "automated", "approved", "rejected by reviewer", "rejected by policy",
        "failed")))
    latencies = sorted(tally.finished_at[t] - tally.submitted_at[t] for t in tally.finished_at
                       if t not in tally.reviewed)
    if latencies:
        p95 = latencies[int(0.95 * (len(latencies) - 1))]
        table.caption = (
            f"{len(tally.kind_of)} tasks in {elapsed_s:.1f}s; automated share "
            f"{total['automated'] / max(1, total['tasks']):.0%}; end-to-end latency without "
            f"review p50 {statistics.median(latencies) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms; "
            f"{len(tally.refused)} malformed submissions refused at ingest"
        )
    return table


async def run_workload(settings: Settings, tasks: int, seed: int, console: Console) -> Tally:
    tally = Tally()
    ingest_channel = client_channel(settings, f"127.0.0.1:{settings.ingest_grpc_port}")
    review_channel = client_channel(settings, f"127.0.0.1:{settings.review_grpc_port}")
    ingest = IngestServiceStub(ingest_channel)
    review = ReviewServiceStub(review_channel)
    stop = asyncio.Event()
    bot = asyncio.create_task(reviewer_bot(review, tally, seed, stop))
    try:
        started = time.perf_counter()
        docs = load_documents(tasks, seed)
        with stderr_progress() as bar:   # stderr, terminal only; the summary is on stdout
            submitted = bar.add_task("submitted", total=len(docs))
            finished = bar.add_task("finished", total=len(docs))
            await submit_all(ingest, docs, seed, tally, console,
                             lambda: bar.advance(submitted))
            await wait_terminal(ingest, tally, timeout_s=120 + tasks * 0.5,
                                on_finished=lambda: bar.advance(finished))
        elapsed = time.perf_counter() - started
    finally:
        stop.set()
        await asyncio.gather(bot, return_exceptions=True)
        await ingest_channel.close()
        await review_channel.close()
    console.print(summary_table(tally, elapsed))
    for refusal in tally.refused:
        console.print(f"  refused at ingest: {refusal}")
    return tally


def run_demo(settings: Settings, tasks: int = 200, seed: int = 7, with_stack: bool = False
             ) -> int:
    console = Console(width=120)
    if not HELDOUT.exists():
        console.print(f"[red]{HELDOUT} is missing: run `make models` first[/red]")
        return 1
    if not with_stack:
        asyncio.run(run_workload(settings, tasks, seed, console))
        return 0
    from switchyard._launcher import build_stack, print_endpoints, start_with_progress
    from switchyard.stack import StackError

    try:
        stack = build_stack(settings)
        start_with_progress(stack)
    except StackError as exc:
        console.print(f"[red]could not start the embedded stack:[/red] {escape(str(exc))}")
        return 1
    try:
        print_endpoints(stack, console)
        asyncio.run(run_workload(stack.settings, tasks, seed, console))
    finally:
        console.print("stopping the embedded stack ...")
        stack.stop()
    return 0
