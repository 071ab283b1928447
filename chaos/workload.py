"""The seeded workload: who submits what, how, and what the harness expects of each item.

Documents come from the router's held-out corpus, and hospital admission forms from the
``hospital_admission`` pack's samples (with the payer records and bed capacity they need:
:func:`admissions`). A share is escalated on purpose (submitted
under a kind the router disagrees with, so a person must look), a share is invalid (refused at
the gRPC door, or dead-lettered when it comes through the Kafka intake topic), and a share
travels through Kafka instead of gRPC. Clients behave like good upstream systems: a gRPC
batch that failed for a transient reason is sent again with the same idempotency keys, a Kafka
record is produced again until the broker acknowledges it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from switchyard import Settings
from switchyard_packs.hospital_admission.samples import Workload, workload
from switchyard.messaging import INTAKE, client_options
from switchyard.rpc import create_channel
from switchyard.v1 import (
    ClaimRequest,
    Document,
    IngestServiceStub,
    ListQueueRequest,
    ReviewServiceStub,
    ReviewVerdict,
    Submission,
    SubmitTasksRequest,
    SubmitVerdictRequest,
    Verdict,
)

log = logging.getLogger("chaos.workload")

ROOT = Path(__file__).resolve().parents[1]
HELDOUT = ROOT / "models" / "data" / "router_heldout.jsonl"
#: A kind the router will disagree with, so the task is escalated to a person.
MISMATCH = {"invoice": "support_ticket", "admission_form": "invoice",
            "support_ticket": "invoice", "classroom_event": "invoice", "other": "invoice",
            "hospital_admission": "invoice"}
RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED,
             grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.INTERNAL,
             grpc.StatusCode.UNKNOWN, grpc.StatusCode.CANCELLED}
TENANTS = ("acme", "globex", "initech", "umbrella")
#: google.rpc codes of a bulk item that sending again cannot change: INVALID_ARGUMENT,
#: ALREADY_EXISTS (the key names other work).
FINAL_REFUSALS = {3, 6}


@dataclass
class Item:
    index: int
    tenant_id: str
    key: str
    kind: str
    body: bytes
    via_kafka: bool
    escalate: bool
    invalid: bool
    content_type: str = "text/plain"

    def submission(self) -> Submission:
        content_type = "application/json" if self.invalid else self.content_type
        return Submission(tenant_id=self.tenant_id, idempotency_key=self.key, kind=self.kind,
                          document=Document(content_type=content_type, body=self.body))

    def intake_record(self) -> bytes:
        if self.invalid:  # cut off mid-object: the intake agent must dead-letter it
            return f'{{"tenant_id": "{self.tenant_id}", "idempotency_key": "{self.key}", '\
                   f'"document": {{"body": '.encode()
        return json.dumps({"tenant_id": self.tenant_id, "idempotency_key": self.key,
                           "kind": self.kind, "document": {
                               "content_type": self.content_type,
                               "body": self.body.decode()}}).encode()


def build(count: int, seed: int, *, escalate_share: float = 0.2, invalid_share: float = 0.1,
          kafka_share: float = 0.2, prefix: str = "chaos") -> list[Item]:
    rng = random.Random(seed)
    docs = [json.loads(line) for line in HELDOUT.read_text().splitlines()]
    items = []
    for index in range(count):
        doc = rng.choice(docs)
        roll = rng.random()
        escalate, invalid = roll < escalate_share, roll >= 1 - invalid_share
        kind = MISMATCH[doc["label"]] if escalate else doc["label"]
        body = b'{"total": ' if invalid else doc["text"].encode()
        items.append(Item(index, TENANTS[index % len(TENANTS)], f"{prefix}-{seed}-{index}",
                          kind, body, rng.random() < kafka_share, escalate, invalid))
    return items


ADMISSION_KIND = "hospital_admission"


def admissions(count: int, seed: int, *, kafka_share: float = 0.2, prefix: str = "chaos-adm"
               ) -> tuple[list[Item], Workload]:
    """``count`` hospital admission forms as items (each tenant's share; some through Kafka),
    and the workload they come from (its payer records and bed capacity must be in the
    downstream first: ``switchyard._demo.seed_hospital``)."""
    rng = random.Random(seed)
    load = workload(count, seed, prefix=prefix)
    items = [Item(index, TENANTS[index % len(TENANTS)], admission.key, ADMISSION_KIND,
                  admission.text.encode(), rng.random() < kafka_share, False, False,
                  admission.content_type)
             for index, admission in enumerate(load.admissions)]
    return items, load


def interleave(items: list[Item], more: list[Item]) -> list[Item]:
    """``more`` spread evenly through ``items`` (so a steady send mixes them)."""
    out = list(items)
    for n, item in enumerate(more):
        out.insert(round((n + 0.5) * len(items) / max(1, len(more))) + n, item)
    return out


@dataclass
class Ledger:
    """What the clients saw: the harness's side of the invariants."""

    sent: int = 0
    accepted: dict[str, str] = field(default_factory=dict)    # idempotency key -> task id
    refused: dict[str, str] = field(default_factory=dict)     # key -> gRPC refusal reason
    kafka_acked: dict[str, bytes] = field(default_factory=dict)  # key -> record value
    grpc_retries: int = 0
    kafka_retries: int = 0


class Submitter:
    """Sends items at a steady rate through gRPC (batches) and the Kafka intake topic."""

    def __init__(self, settings: Settings, ledger: Ledger) -> None:
        self.settings = settings
        self.ledger = ledger
        self.channel = create_channel(f"127.0.0.1:{settings.ingest_grpc_port}")
        self.ingest = IngestServiceStub(self.channel)
        self.producer = AIOKafkaProducer(**client_options(settings), acks="all",
                                         enable_idempotence=False, linger_ms=5,
                                         request_timeout_ms=5000)
        #: Closed by the harness around a broker restart (see ``Chaos.broker_restart``).
        self.kafka_open = asyncio.Event()
        self.kafka_open.set()
        self.kafka_in_flight = 0

    async def __aenter__(self) -> Submitter:
        await self.producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.producer.stop()
        await self.channel.close()

    async def send(self, items: Iterable[Item], rate: float, batch: int = 20) -> None:
        loop = asyncio.get_running_loop()
        begin = loop.time()
        pending = list(items)
        for start in range(0, len(pending), batch):
            chunk = pending[start:start + batch]
            delay = begin + start / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await asyncio.gather(self._grpc([i for i in chunk if not i.via_kafka]),
                                 *(self._kafka(i) for i in chunk if i.via_kafka))
            self.ledger.sent += len(chunk)

    async def _grpc(self, items: list[Item]) -> None:
        """Submit until every item is accepted or refused for good (a bad request)."""
        while items:
            request = SubmitTasksRequest(submissions=[i.submission() for i in items])
            try:
                response = await self.ingest.SubmitTasks(request, timeout=10)
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in RETRYABLE:
                    raise
                self.ledger.grpc_retries += 1
                await asyncio.sleep(0.5)
                continue
            again = []
            for item, result in zip(items, response.results, strict=True):
                if result.HasField("accepted"):
                    self.ledger.accepted[item.key] = result.accepted.task_id
                elif result.error.code in FINAL_REFUSALS:
                    self.ledger.refused[item.key] = result.error.message
                else:  # rate limited or overloaded: the same key again, later
                    again.append(item)
            if again:
                self.ledger.grpc_retries += 1
                await asyncio.sleep(0.5)
            items = again

    async def _kafka(self, item: Item) -> None:
        value = item.intake_record()
        await self.kafka_open.wait()
        self.kafka_in_flight += 1
        try:
            await self._produce(item, value)
        finally:
            self.kafka_in_flight -= 1

    async def _produce(self, item: Item, value: bytes) -> None:
        while True:
            try:
                await self.producer.send_and_wait(
                    INTAKE.full_name(self.settings), value, key=item.key.encode(),
                    headers=[("content-type", b"application/json")])
                break
            except KafkaError:
                self.ledger.kafka_retries += 1
                await asyncio.sleep(0.5)
        self.ledger.kafka_acked[item.key] = value


async def reviewer(settings: Settings, stop: asyncio.Event) -> None:
    """A tireless reviewer: claims whatever is pending and approves it."""
    channel = create_channel(f"127.0.0.1:{settings.review_grpc_port}")
    review = ReviewServiceStub(channel)
    try:
        while not stop.is_set():
            try:
                page = await review.ListQueue(ListQueueRequest(page_size=200), timeout=5)
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.5)
                continue
            for item in page.items:
                if item.claimed_by:
                    continue
                try:
                    await review.Claim(ClaimRequest(item_id=item.item_id, reviewer_id="chaos"),
                                       timeout=5)
                    await review.SubmitVerdict(SubmitVerdictRequest(verdict=ReviewVerdict(
                        item_id=item.item_id, reviewer_id="chaos",
                        verdict=Verdict.VERDICT_APPROVE)), timeout=5)
                except grpc.aio.AioRpcError:  # raced a lease, or the service restarted
                    continue
            if not page.items:
                await asyncio.sleep(0.2)
    finally:
        await channel.close()
