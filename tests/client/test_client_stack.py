"""The client SDK against the real stack (the four services as processes, auth on).

Submit and wait (sync and asyncio), bulk submit, typed errors with field violations, API-key
auth, the per-tenant rate limit retried with the same idempotency key, cancel, RetryTask
of a rejected (FAILED) and of a CANCELLED task, and the operator calls (filtered listing,
timeline, re-drive).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from switchyard_client import (
    NO_RETRIES,
    AsyncClient,
    Client,
    FailedPrecondition,
    InvalidSubmission,
    NotFound,
    PermissionDenied,
    RateLimited,
    RetryPolicy,
    SwitchyardError,
    TaskStatus,
    TimelineSource,
    Unauthenticated,
    WaitTimeout,
    new_submission,
)

from switchyard import Settings
from switchyard.v1 import Verdict
from tests.client.helpers import ACME_KEY, KEYS, OPS_KEY, SLOW_KEY, review, sample

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("pipeline")]
README = Path(__file__).resolve().parents[2] / "client" / "README.md"
SLOW_RATE = 0.1   # slowco: one submission at once, then one per 10 s


@pytest.fixture(scope="module")
def settings(settings: Settings) -> Settings:
    return settings.replace(api_keys=KEYS, tenant_rate_limit_overrides=f"slowco:{SLOW_RATE}/1",
                            tenant_rate_lease_s=0.25)


@pytest.fixture
def target(settings: Settings) -> str:
    return f"127.0.0.1:{settings.ingest_grpc_port}"


@pytest.fixture
def client(target: str) -> Client:
    with Client(target, api_key=ACME_KEY) as opened:
        yield opened


def blocked(client: Client, task_id: str) -> None:
    """Watch until the task waits for a person (BLOCKED)."""
    with contextlib.closing(client.watch(task_id, timeout_s=90)) as events:
        for event in events:
            if event.status == TaskStatus.TASK_STATUS_BLOCKED:
                return
    raise AssertionError(f"task {task_id} ended without waiting for review")


def test_submit_and_wait_until_succeeded(client: Client, settings: Settings) -> None:
    submitted = client.submit("acme", sample("support_ticket"), kind="support_ticket",
                              metadata={"ticket": "T-1"})
    assert submitted.created and uuid.UUID(submitted.idempotency_key).version == 4
    statuses = []
    for event in client.watch(submitted.task_id, timeout_s=120):
        statuses.append(event.status)
        if event.status == TaskStatus.TASK_STATUS_BLOCKED:  # escalated: a person approves
            review(settings, submitted.task_id, Verdict.VERDICT_APPROVE)
    assert statuses[0] == TaskStatus.TASK_STATUS_QUEUED
    task = client.wait(submitted.task_id, timeout_s=30)   # already terminal: returns at once
    assert task.status == TaskStatus.TASK_STATUS_SUCCEEDED, task.reason
    assert task.envelope.metadata["ticket"] == "T-1"
    again = client.submit("acme", sample("support_ticket"), kind="support_ticket",
                          metadata={"ticket": "T-1"}, idempotency_key=submitted.idempotency_key)
    assert (again.task_id, again.created) == (submitted.task_id, False)


def test_wait_times_out_on_a_task_waiting_for_review(client: Client) -> None:
    submitted = client.submit("acme", sample("invoice", 3), kind="admission_form")
    blocked(client, submitted.task_id)
    with pytest.raises(WaitTimeout):
        client.wait(submitted.task_id, timeout_s=1)


def test_submit_many_with_one_bad_item(client: Client) -> None:
    given = new_submission("acme", "Ticket: cannot log in", kind="support_ticket",
                           idempotency_key=f"order-{uuid.uuid4().hex}")
    items = client.submit_many([
        given,
        new_submission("acme", "Ticket: printer is on fire", kind="support_ticket"),
        new_submission("acme", '{"total": }', kind="invoice", content_type="application/json"),
    ])
    assert [i.ok for i in items] == [True, True, False]
    assert items[0].submitted.idempotency_key == given.idempotency_key
    assert items[1].submitted.idempotency_key and items[0].submitted.created
    assert isinstance(items[2].error, InvalidSubmission)
    assert items[2].error.violations()["document.body"].startswith("malformed JSON")
    fetched = client.get(items[1].submitted.task_id)
    assert fetched.envelope.idempotency_key == items[1].submitted.idempotency_key


def test_invalid_submission_carries_the_field_violations(client: Client) -> None:
    with pytest.raises(InvalidSubmission) as caught:
        client.submit("acme", '{"total": }', kind="Non Sense!", content_type="application/json")
    violations = caught.value.violations()
    assert violations["document.body"].startswith("malformed JSON")
    assert "kind" in violations


def test_api_keys_are_required_and_bound_to_a_tenant(target: str) -> None:
    for key in (None, "wrong-key"):
        with Client(target, api_key=key) as anonymous, pytest.raises(Unauthenticated):
            anonymous.submit("acme", "Ticket: no key", kind="support_ticket")
    with Client(target, api_key=ACME_KEY) as acme:
        with pytest.raises(PermissionDenied):
            acme.submit("globex", "Ticket: not my tenant", kind="support_ticket")
        accepted = acme.submit("acme", "Ticket: my tenant", kind="support_ticket")
        with pytest.raises(NotFound):
            acme.get(str(uuid.uuid4()))
    with Client(target, api_key=SLOW_KEY) as other, pytest.raises(NotFound):
        other.get(accepted.task_id)   # another tenant's task does not exist for it


@dataclasses.dataclass(frozen=True)
class RecordingPolicy(RetryPolicy):
    """The default policy, noting each error it decided about (to see the retries happen)."""

    seen: list[SwitchyardError] = dataclasses.field(default_factory=list)

    def next_delay(self, attempt: int, error: SwitchyardError, elapsed_s: float) -> float | None:
        self.seen.append(error)
        return super().next_delay(attempt, error, elapsed_s)


def test_rate_limited_submissions_are_retried_with_the_same_key(target: str) -> None:
    with Client(target, api_key=SLOW_KEY, retry_policy=NO_RETRIES) as once:
        once.submit("slowco", "Ticket: first", kind="support_ticket")   # the burst of one
        with pytest.raises(RateLimited) as caught:
            once.submit("slowco", "Ticket: second", kind="support_ticket")
        assert 0 < caught.value.retry_after <= 1 / SLOW_RATE + 1

    policy = RecordingPolicy(max_total_s=3 / SLOW_RATE)
    with Client(target, api_key=SLOW_KEY, retry_policy=policy) as patient:
        submitted = patient.submit("slowco", "Ticket: third", kind="support_ticket")
        assert submitted.created
        assert policy.seen and all(isinstance(e, RateLimited) and e.retry_after > 0
                                   for e in policy.seen)
        # every attempt carried the key the first one had: one task under it
        task = patient.get(submitted.task_id)
        assert task.envelope.idempotency_key == submitted.idempotency_key


def test_a_message_over_the_servers_size_limit_is_raised_at_once(target: str,
                                                                  settings: Settings) -> None:
    """gRPC itself refuses a message over the server's limit (RESOURCE_EXHAUSTED, no retry
    hint): the client raises it without resending (client/README.md#retries)."""
    policy = RecordingPolicy()
    body = b"%PDF-1.4\n" + b"0" * (settings.document_max_bytes + 256 * 1024)
    with Client(target, api_key=ACME_KEY, retry_policy=policy) as client, \
            pytest.raises(RateLimited) as caught:
        client.submit("acme", body, kind="invoice", content_type="application/pdf")
    assert "larger than max" in str(caught.value) and caught.value.retry_after is None
    assert len(policy.seen) == 1   # asked once whether to resend, and it was not


def test_cancel_then_retry_the_cancelled_task(client: Client) -> None:
    old = client.submit("acme", sample("invoice", 4), kind="admission_form",
                        metadata={"po": "4471"}).task_id
    blocked(client, old)
    with pytest.raises(FailedPrecondition):   # only FAILED or CANCELLED tasks are retried
        client.retry(old)
    cancelled = client.cancel(old, reason="sent by mistake")
    assert cancelled.status == TaskStatus.TASK_STATUS_CANCELLED
    assert client.wait(old, timeout_s=30).status == TaskStatus.TASK_STATUS_CANCELLED
    with pytest.raises(FailedPrecondition):
        client.cancel(old)

    retried = client.retry(old)
    assert retried.created and retried.task_id != old
    assert retried.idempotency_key == f"retry:{old}:1"
    new = client.get(retried.task_id)
    assert dict(new.envelope.metadata) == {"po": "4471", "retry_of": old}
    assert new.envelope.document.body == client.get(old).envelope.document.body
    assert new.envelope.kind == "admission_form"


def test_retry_of_a_rejected_task_is_idempotent_per_attempt(client: Client,
                                                            settings: Settings) -> None:
    old = client.submit("acme", sample("invoice", 5), kind="admission_form").task_id
    blocked(client, old)
    review(settings, old, Verdict.VERDICT_REJECT)
    rejected = client.wait(old, timeout_s=60)
    assert rejected.status == TaskStatus.TASK_STATUS_FAILED, rejected.reason

    first = client.retry(old)
    repeated = client.retry(old, attempt=1)
    assert first.created and (repeated.task_id, repeated.created) == (first.task_id, False)
    second = client.retry(old, attempt=2)
    assert second.created and second.task_id not in {old, first.task_id}
    assert client.get(second.task_id).envelope.metadata["retry_of"] == old
    with Client(f"127.0.0.1:{settings.ingest_grpc_port}", api_key=SLOW_KEY) as other:
        with pytest.raises(NotFound):
            other.retry(old)


async def test_async_client(target: str, settings: Settings) -> None:
    async with AsyncClient(target, api_key=ACME_KEY) as client:
        with pytest.raises(InvalidSubmission) as caught:
            await client.submit("acme", "", kind="support_ticket")
        assert "document.body" in caught.value.violations()

        items = await client.submit_many([
            new_submission("acme", sample("support_ticket", 1), kind="support_ticket"),
            new_submission("acme", sample("invoice", 6), kind="admission_form")])
        assert all(i.ok for i in items)
        ticket, misfiled = (i.submitted.task_id for i in items)

        async with contextlib.aclosing(client.watch(misfiled, timeout_s=90)) as events:
            async for event in events:
                if event.status == TaskStatus.TASK_STATUS_BLOCKED:
                    break
        assert (await client.cancel(misfiled)).status == TaskStatus.TASK_STATUS_CANCELLED
        retried = await client.retry(misfiled)
        assert retried.created and retried.idempotency_key == f"retry:{misfiled}:1"
        assert (await client.get(retried.task_id)).envelope.metadata["retry_of"] == misfiled

        async for event in client.watch(ticket, timeout_s=120):
            if event.status == TaskStatus.TASK_STATUS_BLOCKED:   # escalated: approve it
                await asyncio.to_thread(review, settings, ticket, Verdict.VERDICT_APPROVE)
        done = await client.wait(ticket, timeout_s=30)
        assert done.status == TaskStatus.TASK_STATUS_SUCCEEDED, done.reason
        with pytest.raises(WaitTimeout):
            await client.wait(retried.task_id, timeout_s=0.5)


def test_the_readme_examples_run(target: str) -> None:
    """Every Python block of client/README.md, as a user would run it, against this stack."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 4
    env = {**os.environ, "SWITCHYARD_TARGET": target, "SWITCHYARD_API_KEY": ACME_KEY,
           "SWITCHYARD_TENANT": "acme"}
    outputs = []
    for block in blocks:
        ran = subprocess.run([sys.executable, "-c", block], env=env, capture_output=True,
                             text=True, timeout=240)
        assert ran.returncode == 0, f"{block}\n{ran.stdout}\n{ran.stderr}"
        outputs.append(ran.stdout)
    assert outputs[0].startswith("task ") and "TASK_STATUS_SUCCEEDED" in outputs[0]
    assert "'document.body': 'malformed JSON" in outputs[1]
    assert "retried as" in outputs[2] or "SUCCEEDED" in outputs[2]


def test_list_by_kind_and_metadata_timeline_and_redrive(client: Client, target: str,
                                                        settings: Settings) -> None:
    """The SDK's operator calls: list_tasks with kind and metadata filters (paged), the
    timeline (admin key), and redrive (admin key; a terminal task raises)."""
    marker = uuid.uuid4().hex[:8]
    ticket = client.submit("acme", sample("support_ticket", 5), kind="support_ticket",
                           metadata={"batch": marker})
    misfiled = client.submit("acme", sample("invoice", 8), kind="admission_form",
                             metadata={"batch": marker})
    first = client.list_tasks("acme", kinds=["support_ticket", "admission_form"],
                              metadata={"batch": marker}, page_size=1)
    rest = client.list_tasks("acme", kinds=["support_ticket", "admission_form"],
                             metadata={"batch": marker}, page_size=1,
                             page_token=first.next_page_token)
    assert [t.envelope.task_id for t in first.tasks + rest.tasks] == [misfiled.task_id,
                                                                      ticket.task_id]
    assert not rest.next_page_token
    only = client.list_tasks(kinds=["admission_form"], metadata={"batch": marker})
    assert [t.envelope.task_id for t in only.tasks] == [misfiled.task_id]
    with pytest.raises(InvalidSubmission) as caught:
        client.list_tasks(kinds=[""])
    assert "kinds[0]" in caught.value.violations()
    with pytest.raises(PermissionDenied):            # a submitter's key
        client.timeline(ticket.task_id)

    blocked(client, misfiled.task_id)
    with Client(target, api_key=OPS_KEY) as ops:
        story = ops.timeline(misfiled.task_id)
        assert story.task.envelope.task_id == misfiled.task_id
        assert [e.action for e in story.entries][0] == "status.changed"
        assert "decision.made" in [e.action for e in story.entries]
        assert {e.source for e in story.entries} == {TimelineSource.TIMELINE_SOURCE_STATUS,
                                                     TimelineSource.TIMELINE_SOURCE_AUDIT}
        redriven = ops.redrive(misfiled.task_id, reason="operator check")
        assert redriven.status == TaskStatus.TASK_STATUS_BLOCKED   # still with its reviewer
        assert ops.timeline(misfiled.task_id).entries[-1].action == "task.redriven"
        client.cancel(misfiled.task_id)
        with pytest.raises(FailedPrecondition):
            ops.redrive(misfiled.task_id)
        with pytest.raises(NotFound):
            ops.redrive(str(uuid.uuid4()))

    async def from_asyncio() -> None:
        async with AsyncClient(target, api_key=OPS_KEY) as ops:
            page = await ops.list_tasks("acme", metadata={"batch": marker})
            assert {t.envelope.task_id for t in page.tasks} == {ticket.task_id,
                                                               misfiled.task_id}
            story = await ops.timeline(misfiled.task_id)
            assert "task.cancelled" in [e.action for e in story.entries]
            with pytest.raises(FailedPrecondition):
                await ops.redrive(misfiled.task_id)
    asyncio.run(from_asyncio())
