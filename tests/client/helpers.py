"""Shared by the client SDK tests: the tenants' keys and a reviewer working the real queue."""

from __future__ import annotations

import json
import time
from pathlib import Path

import grpc

from switchyard import Settings
from switchyard.v1 import (
    ClaimRequest,
    ListQueueRequest,
    ReviewServiceStub,
    ReviewVerdict,
    SubmitVerdictRequest,
    Verdict,
)

HELDOUT = Path(__file__).resolve().parents[2] / "models" / "data" / "router_heldout.jsonl"
ACME_KEY, OPS_KEY, SLOW_KEY = "acme-key", "ops-key", "slow-key"
KEYS = f"{ACME_KEY}:acme:submitter,{SLOW_KEY}:slowco:submitter,{OPS_KEY}:*:admin"


def sample(label: str, index: int = 0) -> str:
    """A held-out document the router labels ``label`` (long enough to be confident)."""
    rows = [json.loads(line) for line in HELDOUT.read_text().splitlines()]
    return [r["text"] for r in rows if r["label"] == label and len(r["text"]) > 200][index]


def review(settings: Settings, task_id: str, verdict: Verdict.ValueType,
           timeout_s: float = 90, document_type: str = "") -> None:
    """Claim the task's review item and give ``verdict`` (a rejection may name the
    document's real type), as a reviewer would (ops key)."""
    metadata = (("authorization", f"Bearer {OPS_KEY}"),)
    with grpc.insecure_channel(f"127.0.0.1:{settings.review_grpc_port}") as channel:
        stub = ReviewServiceStub(channel)
        deadline = time.monotonic() + timeout_s
        while True:
            items = stub.ListQueue(ListQueueRequest(page_size=500), metadata=metadata).items
            found = [i for i in items if i.escalation.task_id == task_id]
            if found:
                break
            assert time.monotonic() < deadline, f"no review item for {task_id}"
            time.sleep(0.2)
        item_id = found[0].item_id
        stub.Claim(ClaimRequest(item_id=item_id), metadata=metadata)  # the key reviews
        stub.SubmitVerdict(SubmitVerdictRequest(verdict=ReviewVerdict(
            item_id=item_id, verdict=verdict, reason="client SDK test",
            document_type=document_type)), metadata=metadata)
