"""``switchyard demo``: a realistic mixed workload through the whole pipeline, then a summary.

Documents come from the held-out split of the router corpus (invoices, admission forms,
support tickets, classroom events, other), some with the kind given, some left to the router,
plus a few malformed submissions that ingest must refuse. A reviewer bot works the review
queue like a person would (claim, then approve most and reject some), and the demo waits until
every accepted task is terminal before printing what happened.

Hospital admissions come along (one in ten tasks unless ``--admissions`` says otherwise):
synthetic admission forms (``switchyard_packs.hospital_admission.samples``) submitted by the
hospital's tenant as ``hospital_admission``, after the demo downstream's payer got the member
records and its bed board the capacity those forms need (through the downstream's operator
API). Some forms disagree with the payer (an insurance ticket names the fields), some lack a
signed consent, some ask for a bed type whose unit is full: while it sees an admission waiting
for a bed, the demo discharges a patient from each full unit, so it books on its next try (every demo
tenant's ``bed_retry_every`` is set to a few seconds for the demo: admission forms of the held-out
corpus, submitted by all three, book beds too). The summary says how many were
admitted without a person and which tickets were opened, and why.

Supplier invoices against purchase orders come along too (one in eight tasks unless
``--purchase-orders`` says otherwise; 0 leaves them out): before anything is submitted, the
demo downstream's ERP is given the orders and goods receipts of
``switchyard_packs.invoice.samples`` through its operator API (the earlier orders removed
first), which puts them on the ``purchase-orders`` topic the invoice pack matches against;
then the suppliers' invoices are submitted by the orders' tenants, most as ``invoice``, some
left to the router. Most bill what was ordered and received and should be paid without a
person; the others bill a price above the order's, more than was received, an order number
the ERP does not have, or ask to be paid into another bank account, and should reach a person
who is told which field disagrees. The scenario stays in the demo (never in the submission),
and its table compares, per scenario, what happened with what a careful clerk expects: paid
without a person, sent to a person, wrongly automated, and whether the ticket named the field.

Then the classroom section (``--classrooms``, default 4; ``switchyard/_demo_classroom.py``):
twenty minutes of simulated classes, consent granted for most students, replayed through the
signals pipeline in about half a minute, and an engagement summary per class session read
back from the AnalyticsService (windows, engagement, attendance, alerts raised and held back).
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import grpc
import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from switchyard._demo_classroom import classroom_section
from switchyard._grpc import client_channel, field_violations
from switchyard._progress import stderr_progress
from switchyard._settings import Settings
from switchyard._taskstore import is_terminal
from switchyard.v1 import (
    ApplyTenantSettingsRequest,
    ClaimRequest,
    Document,
    Escalation,
    EscalationReason,
    GetTaskRequest,
    GetTaskTimelineRequest,
    GetTenantSettingsRequest,
    IngestServiceStub,
    ListQueueRequest,
    PackServiceStub,
    ReviewServiceStub,
    ReviewVerdict,
    Submission,
    SubmitTaskRequest,
    SubmitVerdictRequest,
    TaskPriority,
    TaskStatus,
    Verdict,
)

if TYPE_CHECKING:
    from switchyard_packs.invoice.samples import InvoiceSample, OrderSample
    from switchyard_packs.invoice.samples import Workload as PurchasingWorkload

HELDOUT = Path(__file__).resolve().parents[1] / "models" / "data" / "router_heldout.jsonl"
TENANTS = ("acme-health", "northwind-edu", "bluepeak-retail")
#: The tenant that submits the hospital admissions. Every demo tenant's pack settings: a full
#: unit is asked again for a bed every few seconds instead of every five minutes.
HOSPITAL_TENANT = "acme-health"
HOSPITAL_PACK = "hospital_admission"
BED_RETRY_EVERY = "3s"
#: Supplier invoices submitted with no kind (left to the router), one in this many.
INVOICES_WITHOUT_KIND = 5


@dataclass(frozen=True)
class Ticket:
    """One review item the bot answered: the task, why it was opened, the verdict."""

    task_id: str
    why: str
    verdict: str
    #: what else the item said about its cause (:func:`ticket_detail`): where a reader looks
    #: for the name of the field that disagreed
    detail: str = ""


@dataclass
class Tally:
    submitted_at: dict[str, float] = field(default_factory=dict)
    finished_at: dict[str, float] = field(default_factory=dict)
    kind_of: dict[str, str] = field(default_factory=dict)
    outcome_of: dict[str, str] = field(default_factory=dict)
    reason_of: dict[str, str] = field(default_factory=dict)   # the task's final reason
    reviewed: dict[str, str] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)
    tickets: list[Ticket] = field(default_factory=list)
    admissions: dict[str, str] = field(default_factory=dict)  # task id -> scenario
    waited_for_bed: set[str] = field(default_factory=set)      # admissions that waited
    waiting_for_bed: set[str] = field(default_factory=set)     # any task waiting right now
    admissions_skipped: str = ""   # why no admissions were submitted, if so
    #: task id -> the type the decision service decided it as, for the tasks decided without
    #: a person (:func:`read_decided_types`)
    decided_as: dict[str, str] = field(default_factory=dict)
    #: task id -> the supplier invoice it is (its scenario, what a clerk expects of it)
    invoices: dict[str, InvoiceSample] = field(default_factory=dict)
    purchasing_skipped: str = ""   # why no supplier invoices were submitted, if so


def ticket_reason(escalation: Escalation) -> str:
    """Why a review item was opened, in a few words: an approval step by its id (and, when a
    downstream check disagreed, the fields it disagreed on), else the escalation reason and
    the rule that raised it."""
    if escalation.reason == EscalationReason.ESCALATION_REASON_APPROVAL_STEP:
        step = re.sub(r"^\d+-", "", escalation.step_id)   # "2-insurance_review": its name
        why = f"approval {step or '(step)'}"
        fields = sorted({d.field for d in escalation.discrepancies})
        return f"{why}: {', '.join(fields)} disagreed" if fields else why
    reason = EscalationReason.Name(escalation.reason).removeprefix("ESCALATION_REASON_")
    rule = escalation.proposed_decision.rule
    return f"{reason} ({rule})" if rule else reason


def ticket_detail(escalation: Escalation) -> str:
    """What a review item says about its cause besides :func:`ticket_reason`: the fields a
    check disagreed on, the rule, the reason's detail and the proposed decision's
    explanation."""
    parts = [*(d.field for d in escalation.discrepancies), escalation.proposed_decision.rule,
             escalation.reason_detail, escalation.proposed_decision.explanation]
    return " | ".join(part for part in parts if part)


def names_field(ticket: Ticket, field_name: str) -> bool:
    """Whether the ticket names ``field_name`` (``unit_price``), as it is, in words (``unit
    price``) or as a part of a rule's name (``unit_price_above_order``), anywhere in why it
    was opened."""
    words = re.escape(field_name).replace("_", "[_ ]")
    return re.search(rf"(?<![a-z0-9]){words}(?![a-z0-9])", f"{ticket.why} {ticket.detail}",
                     re.IGNORECASE) is not None


def load_documents(count: int, seed: int) -> list[dict[str, str]]:
    rows = [json.loads(line) for line in HELDOUT.read_text().splitlines() if line.strip()]
    return random.Random(seed).sample(rows, min(count, len(rows)))


def malformed_submissions(run: str) -> list[Submission]:
    return [
        Submission(tenant_id="acme-health", idempotency_key=f"{run}-bad-json",
                   kind="invoice", document=Document(content_type="application/json",
                                                     body=b'{"invoice": 12,')),
        Submission(tenant_id="acme-health", idempotency_key=f"{run}-gif",
                   kind="invoice", document=Document(content_type="image/gif",
                                                     body=b"GIF89a\x01\x00\x01\x00")),
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


# -- hospital admissions ---------------------------------------------------------------------

def downstream_url(settings: Settings) -> str:
    """The demo downstream's operator API (the embedded stack's, on this machine)."""
    return f"http://127.0.0.1:{settings.downstream_http_port}"


async def seed_hospital(http: aiohttp.ClientSession, load: Any) -> None:
    """Give the demo downstream what the forms need: the payer's member records, and each unit
    its capacity after discharging whoever an earlier run left in a bed."""
    for member_id, record in load.members.items():
        async with http.put(f"/_/payer/members/{member_id}", json=record) as response:
            response.raise_for_status()
    async with http.get("/_/beds/units") as response:
        response.raise_for_status()
        board = (await response.json())["units"]
    for unit, spec in load.units.items():
        for bed_type, counts in board.get(unit, {}).items():
            if counts["occupied"]:
                async with http.post(f"/_/beds/units/{unit}/discharge", json={
                        "bed_type": bed_type, "count": counts["occupied"]}) as response:
                    response.raise_for_status()
        async with http.put(f"/_/beds/units/{unit}", json=spec) as response:
            response.raise_for_status()


async def shorten_bed_retries(settings: Settings) -> None:
    """Every demo tenant's ``bed_retry_every``: a few seconds, so the demo need not wait the
    default five minutes for a discharged bed (each tenant's other settings are kept). Not
    the hospital's alone: the held-out corpus has admission forms too, submitted by every
    tenant and routed to the same pack, and one of them may meet a full unit."""
    channel = client_channel(settings, f"127.0.0.1:{settings.decision_grpc_port}")
    try:
        packs = PackServiceStub(channel)
        for tenant in TENANTS:
            current = await packs.GetTenantSettings(GetTenantSettingsRequest(
                tenant_id=tenant), timeout=10)
            document = yaml.safe_load(current.document or b"") or {}
            pack = document.setdefault("packs", {}).setdefault(HOSPITAL_PACK, {})
            pack.setdefault("parameters", {})["bed_retry_every"] = BED_RETRY_EVERY
            await packs.ApplyTenantSettings(ApplyTenantSettingsRequest(
                tenant_id=tenant, document=yaml.safe_dump(document).encode()), timeout=10)
    finally:
        await channel.close()


async def submit_admissions(ingest: IngestServiceStub, load: Any, tally: Tally, run: str,
                            on_submitted: Callable[[], None] = lambda: None) -> None:
    semaphore = asyncio.Semaphore(16)

    async def one(admission: Any) -> None:
        submission = Submission(
            tenant_id=HOSPITAL_TENANT, idempotency_key=f"{run}-{admission.key}",
            kind=HOSPITAL_PACK, document=Document(content_type=admission.content_type,
                                                  body=admission.text.encode()),
            priority_level=TaskPriority.TASK_PRIORITY_HIGH,
            metadata={"source": "demo", "layout": admission.layout})
        async with semaphore:
            started = time.perf_counter()
            response = await ingest.SubmitTask(SubmitTaskRequest(submission=submission))
        tally.submitted_at[response.task_id] = started
        tally.kind_of[response.task_id] = HOSPITAL_PACK
        tally.admissions[response.task_id] = admission.scenario
        on_submitted()

    await asyncio.gather(*(one(a) for a in load.admissions))


async def discharge_full_units(http: aiohttp.ClientSession) -> int:
    """A patient goes home from every unit and bed type that has no bed free; returns how
    many."""
    async with http.get("/_/beds/units") as response:
        response.raise_for_status()
        board = (await response.json())["units"]
    full = [(unit, bed_type) for unit, types in board.items()
            for bed_type, counts in types.items() if counts["capacity"] and not counts["free"]]
    for unit, bed_type in full:
        async with http.post(f"/_/beds/units/{unit}/discharge",
                             json={"bed_type": bed_type, "count": 1}) as response:
            response.raise_for_status()
    return len(full)


async def discharge_for_waiting(http: aiohttp.ClientSession, tally: Tally,
                                stop: asyncio.Event) -> int:
    """While some task waits for a bed (its plan parked by ``retry_later``), a patient goes
    home from each full unit every second: the waiting admission books on its next try."""
    discharged = 0
    while not stop.is_set():
        if tally.waiting_for_bed:
            discharged += await discharge_full_units(http)
            await asyncio.sleep(1.0)
        await asyncio.sleep(0.5)
    return discharged


async def reviewer_bot(review: ReviewServiceStub, tally: Tally, seed: int,
                       stop: asyncio.Event, reviewer_id: str = "demo-bot") -> None:
    """Claims and decides review items as they appear, of every queue and reviewer group
    (insurance approvals of admissions too): approve 4 in 5, reject the rest. With API keys
    the reviewer is the caller's key: ``reviewer_id`` must then be empty."""
    rng = random.Random(seed + 1)
    while not stop.is_set():
        try:
            page = await review.ListQueue(ListQueueRequest(page_size=100))
        except grpc.aio.AioRpcError:   # the review service restarting: look again shortly
            await asyncio.sleep(0.5)
            continue
        pending = [i for i in page.items if not i.claimed_by]
        for item in pending:
            verdict = Verdict.VERDICT_APPROVE if rng.random() < 0.8 else Verdict.VERDICT_REJECT
            try:
                await review.Claim(ClaimRequest(item_id=item.item_id, reviewer_id=reviewer_id))
                await review.SubmitVerdict(SubmitVerdictRequest(verdict=ReviewVerdict(
                    item_id=item.item_id, reviewer_id=reviewer_id, verdict=verdict,
                    reason="looks right" if verdict == Verdict.VERDICT_APPROVE
                    else "not ours")))
            except grpc.aio.AioRpcError:   # raced another reviewer or a lease: next item
                continue
            tally.reviewed[item.escalation.task_id] = Verdict.Name(verdict).removeprefix(
                "VERDICT_").lower()
            tally.tickets.append(Ticket(item.escalation.task_id,
                                        ticket_reason(item.escalation),
                                        tally.reviewed[item.escalation.task_id],
                                        ticket_detail(item.escalation)))
        if not pending:
            await asyncio.sleep(0.2)


async def wait_terminal(ingest: IngestServiceStub, tally: Tally, timeout_s: float,
                        on_finished: Callable[[], None] = lambda: None) -> None:
    deadline = time.monotonic() + timeout_s
    open_ids = set(tally.submitted_at)
    last_seen: dict[str, str] = {}   # what an open task was doing, for the timeout's message
    while open_ids and time.monotonic() < deadline:
        for task_id in list(open_ids):
            task = (await ingest.GetTask(GetTaskRequest(task_id=task_id))).task
            last_seen[task_id] = f"{TaskStatus.Name(task.status).removeprefix('TASK_STATUS_')}" \
                                 f"{f' ({task.reason})' if task.reason else ''}"
            if task.status == TaskStatus.TASK_STATUS_BLOCKED \
                    and task.reason.startswith("retry_later"):
                tally.waiting_for_bed.add(task_id)
                if task_id in tally.admissions:
                    tally.waited_for_bed.add(task_id)
            else:
                tally.waiting_for_bed.discard(task_id)
            if is_terminal(task.status):
                open_ids.discard(task_id)
                tally.finished_at[task_id] = time.perf_counter()
                tally.outcome_of[task_id] = TaskStatus.Name(task.status).removeprefix(
                    "TASK_STATUS_")
                tally.reason_of[task_id] = task.reason
                on_finished()
        if open_ids:
            await asyncio.sleep(0.25)
    if open_ids:
        raise TimeoutError(f"{len(open_ids)} tasks not terminal after {timeout_s:.0f}s: " +
                           ", ".join(f"{task_id} {last_seen.get(task_id, '?')}"
                                     for task_id in sorted(open_ids)[:5]))


def unattended(tally: Tally) -> list[str]:
    """The tasks that ended without a person: carried out, or refused by a rule."""
    return [task_id for task_id, outcome in tally.outcome_of.items()
            if task_id not in tally.reviewed and outcome in ("SUCCEEDED", "FAILED")]


async def read_decided_types(ingest: IngestServiceStub, tally: Tally) -> None:
    """For each task that ended without a person, the type it was decided as: the label of
    its ``decision.made`` audit entry (GetTaskTimeline)."""
    semaphore = asyncio.Semaphore(16)

    async def one(task_id: str) -> None:
        async with semaphore:
            timeline = await ingest.GetTaskTimeline(GetTaskTimelineRequest(task_id=task_id))
        made = next((e for e in timeline.entries if e.action == "decision.made"), None)
        if made is not None and "label" in made.detail.fields:
            tally.decided_as[task_id] = made.detail.fields["label"].string_value

    await asyncio.gather(*(one(task_id) for task_id in unattended(tally)))


def decided_otherwise(tally: Tally) -> list[str]:
    """The tasks that ended without a person where a person would have decided otherwise: taken
    for another type than the document's, or a supplier invoice a careful clerk would have
    checked."""
    wrong = []
    for task_id in unattended(tally):
        invoice = tally.invoices.get(task_id)
        if tally.decided_as.get(task_id, tally.kind_of.get(task_id)) != tally.kind_of.get(
                task_id) or (invoice is not None and invoice.expected == "person"):
            wrong.append(task_id)
    return wrong


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
            f"{total['automated'] / max(1, total['tasks']):.0%} (decided without a person, "
            f"refusals by policy too: "
            f"{(total['automated'] + total['rejected by policy']) / max(1, total['tasks']):.0%}"
            f", of them {len(decided_otherwise(tally))} a person would have decided otherwise: "
            f"another type than the document's, or an invoice that does not match its order"
            f"); end-to-end latency without "
            f"review p50 {statistics.median(latencies) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms; "
            f"{len(tally.refused)} malformed submissions refused at ingest"
        )
    return table


async def prepare_admissions(settings: Settings, http: aiohttp.ClientSession, count: int,
                             seed: int, tally: Tally) -> Any:
    """The admission forms, once the downstream and the tenant are ready for them; None (and
    why, in the tally) when this stack cannot take them (no demo downstream here, or no
    ``hospital_admission`` pack)."""
    from switchyard_packs.hospital_admission.samples import workload

    load = workload(count, seed)
    try:
        await seed_hospital(http, load)
    except (aiohttp.ClientError, OSError) as exc:
        tally.admissions_skipped = f"no demo downstream at {downstream_url(settings)} ({exc})"
        return None
    try:
        await shorten_bed_retries(settings)
    except grpc.aio.AioRpcError as exc:
        tally.admissions_skipped = f"the {HOSPITAL_PACK} pack's settings were refused " \
                                   f"({exc.code().name}: {exc.details()})"
        return None
    return load


def admissions_table(tally: Tally) -> Table:
    """The hospital admissions: admitted without a person, and every ticket by why it was
    opened (insurance tickets by the fields the payer disagreed on)."""
    admitted = {t for t in tally.admissions if tally.outcome_of.get(t) == "SUCCEEDED"}
    tickets = [t for t in tally.tickets if t.task_id in tally.admissions]
    with_ticket = {t.task_id for t in tickets}
    table = Table(title="Hospital admissions: tickets opened, and why", title_justify="left")
    for column in ("why the ticket was opened", "tickets", "approved", "rejected"):
        table.add_column(column, justify="left" if column.startswith("why") else "right")
    by_why: dict[str, Counter[str]] = defaultdict(Counter)
    for ticket in tickets:
        by_why[ticket.why]["tickets"] += 1
        by_why[ticket.why][ticket.verdict] += 1
    for why in sorted(by_why, key=lambda w: (-by_why[w]["tickets"], w)):
        row = by_why[why]
        table.add_row(escape(why), str(row["tickets"]), str(row["approve"]),
                      str(row["reject"]))
    table.add_row("[bold]all[/bold]", f"[bold]{len(tickets)}[/bold]",
                  f"[bold]{sum(t.verdict == 'approve' for t in tickets)}[/bold]",
                  f"[bold]{sum(t.verdict == 'reject' for t in tickets)}[/bold]")
    outcomes = Counter(f"{tally.outcome_of.get(t, 'OPEN').lower()}"
                       + (f" {tally.reason_of[t]}" if tally.reason_of.get(t) else "")
                       for t in tally.admissions if tally.outcome_of.get(t) != "SUCCEEDED")
    table.caption = (
        f"{len(tally.admissions)} admission forms: {len(admitted - with_ticket)} admitted "
        f"without a person ({len(tally.waited_for_bed & (admitted - with_ticket))} of them "
        f"after waiting for a bed), {len(admitted & with_ticket)} admitted after a ticket, "
        f"{len(tally.admissions) - len(admitted)} not admitted "
        f"({', '.join(f'{k}: {v}' for k, v in sorted(outcomes.items())) or 'none'}); "
        f"{len(tickets)} tickets opened for {len(with_ticket)} admissions"
    )
    return table


# -- purchase orders and supplier invoices -----------------------------------------------------

class DownstreamRefused(Exception):
    """The demo downstream's operator API refused a call (its status and error)."""


async def operator_call(http: aiohttp.ClientSession, method: str, path: str,
                        body: Any = None) -> Any:
    """A call of the demo downstream's operator API; its JSON answer, or
    :class:`DownstreamRefused` naming the call and what the downstream said."""
    async with http.request(method, path, json=body) as response:
        text = await response.text()
        if response.status >= 400:
            try:
                error = json.loads(text).get("error", text)
            except (ValueError, AttributeError):
                error = text
            raise DownstreamRefused(f"{method} {path}: {response.status} {error}".strip())
        return json.loads(text) if text else None


async def seed_purchasing(http: aiohttp.ClientSession, load: PurchasingWorkload) -> None:
    """Give the demo ERP the orders and goods receipts the invoices bill, after removing the
    orders an earlier run left (an invoice quoting no order is matched by vendor and amount:
    an earlier run's order of the same amount must not be there). Each call answers once the
    ERP's record is on the ``purchase-orders`` topic."""
    await operator_call(http, "DELETE", "/_/erp/purchase_orders")
    semaphore = asyncio.Semaphore(8)

    async def one(order: OrderSample) -> None:
        async with semaphore:
            await operator_call(http, "PUT", order.path, order.body)
            for receipt in order.receipts:
                await operator_call(http, "POST", f"{order.path}/receipts", receipt)

    results = await asyncio.gather(*(one(o) for o in load.orders), return_exceptions=True)
    failed = next((r for r in results if isinstance(r, BaseException)), None)
    if failed is not None:
        raise failed


async def prepare_purchasing(settings: Settings, http: aiohttp.ClientSession, count: int,
                             seed: int, tally: Tally) -> PurchasingWorkload | None:
    """The supplier invoices, once the ERP holds their orders; None (and why, in the tally)
    when this stack cannot take them (no demo downstream, or its ERP cannot publish). Each
    run numbers its orders and invoices afresh, so a second run on the same stack is not a
    pile of duplicate invoices."""
    from switchyard_packs.invoice.samples import workload

    load = workload(count, seed, batch=int(time.time()), tenants=TENANTS)
    try:
        await seed_purchasing(http, load)
    except (aiohttp.ClientError, OSError) as exc:
        tally.purchasing_skipped = f"no demo downstream at {downstream_url(settings)} ({exc})"
        return None
    except DownstreamRefused as exc:
        tally.purchasing_skipped = f"the demo ERP refused its orders ({exc})"
        return None
    return load


async def submit_invoices(ingest: IngestServiceStub, load: PurchasingWorkload, seed: int,
                          tally: Tally, run: str,
                          on_submitted: Callable[[], None] = lambda: None) -> None:
    """The suppliers' invoices, each by its order's tenant; one in
    :data:`INVOICES_WITHOUT_KIND` without a kind (the router reads it). Each says when it
    reached accounts payable (``received_date``: the documents' own dates are fixed, the
    clock is not). The scenario stays here: the decision must not see what the demo expects
    of it."""
    rng = random.Random(seed + 2)
    semaphore = asyncio.Semaphore(16)

    async def one(invoice: InvoiceSample, kind: str) -> None:
        submission = Submission(
            tenant_id=invoice.tenant, idempotency_key=f"{run}-{invoice.key}", kind=kind,
            document=Document(content_type=invoice.content_type,
                              body=invoice.text.encode()),
            priority_level=TaskPriority.TASK_PRIORITY_NORMAL,
            metadata={"source": "demo", "layout": invoice.layout,
                      "received_date": invoice.received_on.isoformat()})
        async with semaphore:
            started = time.perf_counter()
            response = await ingest.SubmitTask(SubmitTaskRequest(submission=submission))
        tally.submitted_at[response.task_id] = started
        tally.kind_of[response.task_id] = invoice.kind
        tally.invoices[response.task_id] = invoice
        on_submitted()

    await asyncio.gather(*[one(i, "" if rng.randrange(INVOICES_WITHOUT_KIND) == 0 else i.kind)
                           for i in load.invoices])


@dataclass
class _InvoiceOutcomes:
    """How one scenario's invoices ended, against what a careful clerk expects."""

    invoices: int = 0
    automated: int = 0            # succeeded without a review ticket
    to_person: int = 0            # a review ticket was opened
    neither: int = 0              # ended otherwise (refused by a rule, failed)
    wrongly_automated: int = 0    # automated, though a person should have seen it
    named_field: int = 0          # sent to a person whose ticket named the expected field


def invoice_outcomes(tally: Tally) -> dict[str, _InvoiceOutcomes]:
    """Per scenario, how its invoices ended (from the task outcomes and the tickets the
    reviewer bot answered)."""
    tickets: dict[str, list[Ticket]] = defaultdict(list)
    for ticket in tally.tickets:
        tickets[ticket.task_id].append(ticket)
    out: dict[str, _InvoiceOutcomes] = defaultdict(_InvoiceOutcomes)
    for task_id, invoice in tally.invoices.items():
        row = out[invoice.scenario]
        row.invoices += 1
        if tickets[task_id]:
            row.to_person += 1
            row.named_field += bool(invoice.expected_field) and any(
                names_field(t, invoice.expected_field) for t in tickets[task_id])
        elif tally.outcome_of.get(task_id) == "SUCCEEDED":
            row.automated += 1
            row.wrongly_automated += invoice.expected == "person"
        else:
            row.neither += 1
    return out


def purchasing_table(tally: Tally) -> Table:
    """The supplier invoices by scenario: paid without a person, sent to a person, wrongly
    automated, and whether the person was told which field disagreed."""
    from switchyard_packs.invoice.samples import EXPECTED_FIELD, SCENARIOS

    outcomes = invoice_outcomes(tally)
    table = Table(title="Supplier invoices against purchase orders: what a careful clerk "
                        "expects, and what happened", title_justify="left")
    for column in ("scenario", "expected", "invoices", "automated", "to a person",
                   "wrongly automated", "named the field", "neither"):
        table.add_column(column, justify="left" if column in ("scenario", "expected")
                         else "right")
    total = _InvoiceOutcomes()
    for scenario in [s for s in SCENARIOS if s in outcomes]:
        row = outcomes[scenario]
        expected_field = EXPECTED_FIELD.get(scenario, "")
        table.add_row(scenario, f"a person ({expected_field})" if expected_field
                      else "automated", str(row.invoices), str(row.automated),
                      str(row.to_person), str(row.wrongly_automated),
                      f"{row.named_field} of {row.to_person}" if expected_field else "-",
                      str(row.neither))
        for name in vars(total):
            setattr(total, name, getattr(total, name) + getattr(row, name))
    clean = sum(outcomes[s].invoices for s in outcomes if not EXPECTED_FIELD.get(s))
    touchless = sum(outcomes[s].automated for s in outcomes if not EXPECTED_FIELD.get(s))
    table.caption = (
        f"{total.invoices} supplier invoices: {total.automated} paid without a person "
        f"({touchless} of the {clean} that match their order: "
        f"{touchless / max(1, clean):.0%} touchless), {total.to_person} sent to a person "
        f"({total.named_field} of the {total.invoices - clean} mismatches told which field), "
        f"{total.wrongly_automated} automated that a person should have seen, "
        f"{total.neither} ended otherwise"
    )
    return table


async def run_workload(settings: Settings, tasks: int, seed: int, console: Console,
                       admissions: int | None = None,
                       purchase_orders: int | None = None) -> Tally:
    tally = Tally()
    admissions = tasks // 10 if admissions is None else admissions
    purchase_orders = tasks // 8 if purchase_orders is None else purchase_orders
    ingest_channel = client_channel(settings, f"127.0.0.1:{settings.ingest_grpc_port}")
    review_channel = client_channel(settings, f"127.0.0.1:{settings.review_grpc_port}")
    ingest = IngestServiceStub(ingest_channel)
    review = ReviewServiceStub(review_channel)
    http = aiohttp.ClientSession(downstream_url(settings),
                                 timeout=aiohttp.ClientTimeout(total=30))
    stop = asyncio.Event()
    bot = asyncio.create_task(reviewer_bot(review, tally, seed, stop,
                                           "" if settings.client_api_key else "demo-bot"))
    helpers = [bot]
    try:
        started = time.perf_counter()
        docs = load_documents(tasks, seed)
        purchasing = await prepare_purchasing(settings, http, purchase_orders, seed, tally) \
            if purchase_orders > 0 else None
        load = await prepare_admissions(settings, http, admissions, seed, tally) \
            if admissions > 0 else None
        if load is not None:
            helpers.append(asyncio.create_task(discharge_for_waiting(http, tally, stop)))
        total = len(docs) + (len(load.admissions) if load is not None else 0) + (
            len(purchasing.invoices) if purchasing is not None else 0)
        with stderr_progress() as bar:   # stderr, terminal only; the summary is on stdout
            submitted = bar.add_task("submitted", total=total)
            finished = bar.add_task("finished", total=total)
            await submit_all(ingest, docs, seed, tally, console,
                             lambda: bar.advance(submitted))
            if load is not None:
                try:
                    await submit_admissions(ingest, load, tally, f"demo-{int(time.time())}",
                                            lambda: bar.advance(submitted))
                except grpc.aio.AioRpcError as exc:   # e.g. a stack without the pack
                    tally.admissions_skipped = f"ingest refused them ({exc.code().name}: " \
                                               f"{exc.details()})"
                else:
                    console.print(f"submitted {len(load.admissions)} hospital admission forms")
            if purchasing is not None:
                try:
                    await submit_invoices(ingest, purchasing, seed, tally,
                                          f"demo-{int(time.time())}",
                                          lambda: bar.advance(submitted))
                except grpc.aio.AioRpcError as exc:
                    tally.purchasing_skipped = f"ingest refused them ({exc.code().name}: " \
                                               f"{exc.details()})"
                else:
                    console.print(f"submitted {len(purchasing.invoices)} supplier invoices "
                                  f"against {len(purchasing.orders)} purchase orders")
            await wait_terminal(ingest, tally, timeout_s=120 + total * 0.5,
                                on_finished=lambda: bar.advance(finished))
        elapsed = time.perf_counter() - started
        await read_decided_types(ingest, tally)
    finally:
        stop.set()
        await asyncio.gather(*helpers, return_exceptions=True)
        await http.close()
        await ingest_channel.close()
        await review_channel.close()
    console.print(summary_table(tally, elapsed))
    for refusal in tally.refused:
        console.print(f"  refused at ingest: {refusal}")
    if tally.admissions:
        console.print(admissions_table(tally))
    elif tally.admissions_skipped:
        console.print(f"hospital admissions left out: {escape(tally.admissions_skipped)}")
    if tally.invoices:
        console.print(purchasing_table(tally))
    elif tally.purchasing_skipped:
        console.print(f"supplier invoices left out: {escape(tally.purchasing_skipped)}")
    return tally


def run_demo(settings: Settings, tasks: int = 200, seed: int = 7, with_stack: bool = False,
             admissions: int | None = None, classrooms: int = 4,
             purchase_orders: int | None = None) -> int:
    console = Console(width=120)
    if not HELDOUT.exists():
        console.print(f"[red]{HELDOUT} is missing: run `make models` first[/red]")
        return 1
    if not with_stack:
        asyncio.run(run_workload(settings, tasks, seed, console, admissions, purchase_orders))
        if classrooms > 0:
            classroom_section(settings, console, classrooms, seed)
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
        asyncio.run(run_workload(stack.settings, tasks, seed, console, admissions,
                                 purchase_orders))
        if classrooms > 0:
            classroom_section(stack.settings, console, classrooms, seed)
    finally:
        console.print("stopping the embedded stack ...")
        stack.stop()
    return 0
