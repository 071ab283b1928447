"""One trace per task across every hop, and KPIs that match a known workload exactly.

The pipeline runs with the jsonl span exporter; a task that is escalated and approved must
leave one trace that crosses ingest, decision (with the Triton call), review (the human
verdict as a linked span) and executor. Then a workload of 200 tasks of which exactly 50 are
escalated must be reported as such by `switchyard stats --json` and the Prometheus KPIs.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from switchyard import Settings
from switchyard.rpc import create_channel
from switchyard.storage import create_pool
from switchyard.v1 import (
    CancelTaskRequest,
    ClaimRequest,
    DecideRequest,
    DecisionOutcome,
    DecisionServiceStub,
    Document,
    GetTaskRequest,
    IngestServiceStub,
    ListQueueRequest,
    ReviewItem,
    ReviewServiceStub,
    ReviewVerdict,
    Submission,
    SubmitTaskRequest,
    SubmitVerdictRequest,
    TaskEnvelope,
    Verdict,
)
from tests.terminal import TERMINAL_STATUSES

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("pipeline")]
ROOT = Path(__file__).resolve().parents[2]
HELDOUT = ROOT / "models" / "data" / "router_heldout.jsonl"


@pytest.fixture(scope="module")
def settings(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    spans = tmp_path_factory.mktemp("spans") / "spans.jsonl"
    return settings.replace(otel_exporter="jsonl", otel_file=str(spans), kpi_refresh_s=0.5)


@pytest.fixture
async def stubs(settings: Settings) -> AsyncIterator[tuple[IngestServiceStub, ReviewServiceStub,
                                                            DecisionServiceStub]]:
    channels = [create_channel(f"127.0.0.1:{port}") for port in (
        settings.ingest_grpc_port, settings.review_grpc_port, settings.decision_grpc_port)]
    yield (IngestServiceStub(channels[0]), ReviewServiceStub(channels[1]),
           DecisionServiceStub(channels[2]))
    for channel in channels:
        await channel.close()


async def each_in_review(review: ReviewServiceStub, task_ids: set[str],
                         act: Callable[[ReviewItem], Awaitable[object]],
                         timeout_s: float = 120) -> None:
    """``act`` on each task's review item once it waits in the queue, unclaimed."""
    pending = set(task_ids)
    deadline = time.monotonic() + timeout_s
    while pending:
        assert time.monotonic() < deadline, f"{len(pending)} escalations never reached review"
        page = await review.ListQueue(ListQueueRequest(page_size=500))
        for item in page.items:
            if item.escalation.task_id in pending and not item.claimed_by:
                await act(item)
                pending.discard(item.escalation.task_id)
        await asyncio.sleep(0.2)


async def approve_all(review: ReviewServiceStub, task_ids: set[str], verdict: int) -> None:
    async def decide(item: ReviewItem) -> None:
        await review.Claim(ClaimRequest(item_id=item.item_id, reviewer_id="olga"))
        await review.SubmitVerdict(SubmitVerdictRequest(verdict=ReviewVerdict(
            item_id=item.item_id, reviewer_id="olga", verdict=verdict)))  # type: ignore[arg-type]
    await each_in_review(review, task_ids, decide)


async def cancel_in_review(ingest: IngestServiceStub, review: ReviewServiceStub,
                           task_ids: set[str]) -> None:
    """Cancel each task while its escalation waits in the review queue, undecided."""
    await each_in_review(review, task_ids, lambda item: ingest.CancelTask(CancelTaskRequest(
        task_id=item.escalation.task_id, reason="sent by mistake")))


async def wait_terminal(ingest: IngestServiceStub, task_ids: set[str],
                        timeout_s: float = 180) -> None:
    open_ids = set(task_ids)
    deadline = time.monotonic() + timeout_s
    while open_ids:
        assert time.monotonic() < deadline, f"{len(open_ids)} tasks never finished"
        for task_id in list(open_ids):
            task = (await ingest.GetTask(GetTaskRequest(task_id=task_id))).task
            if task.status in TERMINAL_STATUSES:
                open_ids.discard(task_id)
        await asyncio.sleep(0.2)


def read_spans(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def test_one_trace_covers_submission_review_and_execution(
        settings: Settings, stubs: tuple[IngestServiceStub, ReviewServiceStub,
                                         DecisionServiceStub]) -> None:
    ingest, review, _ = stubs
    text = next(json.loads(line)["text"] for line in HELDOUT.read_text().splitlines()
                if json.loads(line)["label"] == "invoice")
    response = await ingest.SubmitTask(SubmitTaskRequest(submission=Submission(
        tenant_id="tracing", idempotency_key=uuid.uuid4().hex, kind="admission_form",
        document=Document(body=text.encode()))))
    await approve_all(review, {response.task_id}, Verdict.VERDICT_APPROVE)
    await wait_terminal(ingest, {response.task_id})

    spans_file = Path(settings.otel_file)
    deadline = time.monotonic() + 30
    while True:  # exporters flush in batches; give them a moment
        spans = read_spans(spans_file) if spans_file.exists() else []
        by_trace: dict[str, list[dict]] = defaultdict(list)
        for span in spans:
            by_trace[span["trace_id"]].append(span)
        submit = [s for s in spans if s["name"].endswith("IngestService/SubmitTask")
                  and s["kind"] == "SERVER"]
        trace = next((by_trace[s["trace_id"]] for s in submit
                      if any(x["service"] == "switchyard-executor"
                             for x in by_trace[s["trace_id"]])), None)
        if trace or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert trace, "no trace reaches the executor"
    services = {s["service"] for s in trace}
    assert {"switchyard-ingest", "switchyard-decision", "switchyard-review",
            "switchyard-executor"} <= services
    assert any(s["name"] == "triton request" and s["attributes"]["model.name"]
               == "document_router" for s in trace), "the Triton call is in the task's trace"
    verdict_spans = [s for s in trace if s["name"] == "review verdict"]
    assert verdict_spans and verdict_spans[0]["links"], "the human verdict is a linked span"


async def test_kpis_match_a_known_workload_exactly(
        settings: Settings, stubs: tuple[IngestServiceStub, ReviewServiceStub,
                                         DecisionServiceStub]) -> None:
    ingest, review, decision = stubs
    rows = [json.loads(line) for line in HELDOUT.read_text().splitlines()]
    automated, escalated = [], []
    # Pick documents whose decision is known in advance (Decide persists nothing): 150
    # automated, 50 escalated and approved, 3 escalated and cancelled before anyone decided
    for row in rows:
        if len(automated) == 150 and len(escalated) == 53:
            break
        mismatch = "support_ticket" if row["label"] == "invoice" else "invoice"
        want_escalation = len(escalated) < 53 and row["label"] in ("invoice", "admission_form")
        kind = mismatch if want_escalation else row["label"]
        if not want_escalation and len(automated) == 150:
            continue
        envelope = TaskEnvelope(task_id=str(uuid.uuid4()), tenant_id="kpi", kind=kind,
                                document=Document(body=row["text"].encode()))
        outcome = (await decision.Decide(DecideRequest(task=envelope))).decision
        if want_escalation and outcome.rule == "kind_mismatch":
            escalated.append((row["text"], kind))
        elif not want_escalation and outcome.outcome == \
                DecisionOutcome.DECISION_OUTCOME_AUTO_EXECUTE:
            automated.append((row["text"], kind))
    assert (len(automated), len(escalated)) == (150, 53)

    ids: dict[str, set[str]] = {"auto": set(), "escalated": set(), "withdrawn": set()}
    for group, docs in (("auto", automated), ("escalated", escalated[:50]),
                        ("withdrawn", escalated[50:])):
        for text, kind in docs:
            response = await ingest.SubmitTask(SubmitTaskRequest(submission=Submission(
                tenant_id="kpi", idempotency_key=uuid.uuid4().hex, kind=kind,
                document=Document(body=text.encode()))))
            ids[group].add(response.task_id)
    await approve_all(review, ids["escalated"], Verdict.VERDICT_APPROVE)
    await cancel_in_review(ingest, review, ids["withdrawn"])
    await wait_terminal(ingest, ids["auto"] | ids["escalated"] | ids["withdrawn"])

    # as if every item had waited an hour in the admission backlog before it was admitted:
    # the queue's time to verdict counts that hour, a reviewer's does not
    pool = await create_pool(settings)
    try:
        await pool.execute("UPDATE review_items SET created_at = created_at - "
                           "interval '1 hour' WHERE tenant_id = 'kpi'")
    finally:
        await pool.close()
    env = {**os.environ, **settings.to_env()}
    result = subprocess.run([sys.executable, "-m", "switchyard", "stats", "--json",
                             "--tenant", "kpi"], env=env, cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    (kpis,) = json.loads(result.stdout)
    # the cancelled escalations were escalated, but nobody reviewed them: no review is priced
    assert (kpis["tasks"], kpis["succeeded"], kpis["cancelled"], kpis["automated"],
            kpis["human_reviewed"], kpis["reviews"]) == (203, 200, 3, 150, 50, 50)
    assert kpis["escalations_by_reason"] == {"policy": 53}
    assert kpis["automation_rate"] == pytest.approx(150 / 203)
    assert kpis["intervention_rate"] == pytest.approx(50 / 203)
    assert kpis["minutes_saved"] == pytest.approx(150 * settings.kpi_minutes_per_manual_task)
    assert kpis["cost_per_automated"] == pytest.approx(
        (203 * (settings.kpi_inference_cost + settings.kpi_compute_cost)
         + 50 * settings.kpi_review_minutes_per_item * settings.kpi_review_minute_cost) / 150)
    # the reviewers' side: one queue, nothing left open (the three withdrawn are closed),
    # 50 verdicts today, all olga's approvals
    (queue,) = kpis["review_queues"]
    assert (queue["pending"], queue["claimed"], queue["backlogged"], queue["past_sla"],
            queue["oldest_open_seconds"], queue["decided"]) == (0, 0, 0, 0, None, 50), queue
    assert queue["p50_decide_seconds"] > 3600
    (olga,) = kpis["reviewers"]
    assert (olga["reviewer_id"], olga["verdicts"], olga["approved"], olga["modified"],
            olga["rejected"]) == ("olga", 50, 50, 0, 0), olga
    assert 0 < olga["p50_decide_seconds"] < 3600, olga
    # her handling time runs from her claim to her verdict: no longer than from admission
    assert 0 <= olga["p50_handle_seconds"] <= olga["p50_decide_seconds"], olga
    # the live view, its stdout a pipe: one snapshot, every header whole, then it exits
    piped = subprocess.run([sys.executable, "-m", "switchyard", "stats", "--tenant", "kpi"],
                           env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert piped.returncode == 0, piped.stderr
    assert "intervention" in piped.stdout and "escalations by reason" in piped.stdout
    assert "policy=53" in piped.stdout
    assert "Review queues" in piped.stdout and "Reviewers (the last 24 h)" in piped.stdout
    assert "olga" in piped.stdout

    deadline = time.monotonic() + 30
    url = f"http://127.0.0.1:{settings.ingest_metrics_port}/metrics"
    while True:
        metrics = urllib.request.urlopen(url, timeout=5).read().decode()
        if 'switchyard_kpi_tasks{status="succeeded",tenant="kpi"} 200.0' in metrics:
            break
        assert time.monotonic() < deadline, "KPI gauges never reached the workload's counts"
        await asyncio.sleep(0.5)
    assert 'switchyard_kpi_escalations{reason="policy",tenant="kpi"} 53.0' in metrics
    assert f'switchyard_kpi_automation_rate{{tenant="kpi"}} {150 / 203!r}' in metrics
    assert f'switchyard_kpi_human_intervention_rate{{tenant="kpi"}} {50 / 203!r}' in metrics
