"""Tenant isolation and least privilege on every RPC, against the real running services.

RPCs are tried with no credentials (UNAUTHENTICATED) and with the wrong role
(PERMISSION_DENIED); then EVERY RPC of every service is called with valid credentials of
another tenant, aimed at the first tenant's data (NOT_FOUND for things that exist,
PERMISSION_DENIED for a tenant named outright, an empty answer for listings), never leaking
another tenant's tasks, review items, webhooks or decisions. A check against the services'
descriptors keeps that table complete when an RPC is added.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from confluent_kafka import Producer

from switchyard import Settings
from switchyard.messaging import INTAKE
from switchyard.rpc import create_channel
from tests.polling import eventually
from switchyard.v1 import (
    ApplyPackRequest,
    ApplyTenantSettingsRequest,
    CancelTaskRequest,
    ClaimRequest,
    CompleteWaitRequest,
    ConsentPurpose,
    ConsentServiceStub,
    DeadLetterServiceStub,
    DecideBatchRequest,
    DecideRequest,
    Decision,
    DecisionServiceStub,
    DeleteWebhookRequest,
    DeleteWebhookSourceRequest,
    Document,
    EraseSubjectRequest,
    ExecutorAdminServiceStub,
    ExecutorServiceStub,
    GetDeadLetterRequest,
    GetItemRequest,
    GetModelHealthRequest,
    ListRolloutsRequest,
    PromoteModelRequest,
    ReconsiderEditsRequest,
    RollbackModelRequest,
    RolloutStage,
    StartRolloutRequest,
    GetPackRequest,
    GetTaskRequest,
    GetTaskTimelineRequest,
    GetTenantSettingsRequest,
    IngestServiceStub,
    ListBreakersRequest,
    ListConsentsRequest,
    ListDeadLettersRequest,
    ListPacksRequest,
    ListQueueRequest,
    ListTasksRequest,
    ListWebhookDeliveriesRequest,
    ListWebhooksRequest,
    ListWebhookSourcesRequest,
    PackFile,
    PackServiceStub,
    PackSource,
    RedeliverWebhooksRequest,
    RegisterWebhookRequest,
    RegisterWebhookSourceRequest,
    ReleaseRequest,
    ReplayDeadLetterRequest,
    ResolveDeadLetterRequest,
    RedriveTaskRequest,
    RenewRequest,
    ResetBreakerRequest,
    RetryTaskRequest,
    ReviewServiceStub,
    ReviewVerdict,
    Submission,
    SetConsentRequest,
    SubmitTaskRequest,
    SubmitTasksRequest,
    SubmitVerdictRequest,
    TaskEnvelope,
    TestPackRequest as PackTestRequest,  # not a test class
    ValidatePackRequest,
    Verdict,
    WatchTaskRequest,
    WatchTenantRequest,
    consent_service_pb2,
    dead_letter_service_pb2,
    WebhookFieldMapping,
    decision_service_pb2,
    executor_service_pb2,
    ingest_service_pb2,
    pack_service_pb2,
    review_service_pb2,
)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("pipeline")]
KEYS = {
    "acme-sub": ("acme", "submitter"), "acme-rev": ("acme", "reviewer"),
    "globex-sub": ("globex", "submitter"), "globex-rev": ("globex", "reviewer"),
    "audit": ("acme", "auditor"), "acme-admin": ("acme", "admin"),
    "globex-admin": ("globex", "admin"),
}


@pytest.fixture(scope="module")
def settings(settings: Settings) -> Settings:
    return settings.replace(api_keys=",".join(f"{k}:{t}:{r}" for k, (t, r) in KEYS.items()))


def stubs(settings: Settings, key: str | None) -> tuple[IngestServiceStub, ReviewServiceStub,
                                                         DecisionServiceStub, list[Any]]:
    channels = [create_channel(f"127.0.0.1:{port}", api_key=key) for port in (
        settings.ingest_grpc_port, settings.review_grpc_port, settings.decision_grpc_port)]
    return (IngestServiceStub(channels[0]), ReviewServiceStub(channels[1]),
            DecisionServiceStub(channels[2]), channels)


async def code_of(call: Callable[[], Any]) -> grpc.StatusCode:
    """The status an RPC ends with; a stream is read until its first message or error."""
    try:
        result = call()
        if hasattr(result, "__aiter__"):
            async for _ in result:
                break
        else:
            await result
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def submission(tenant: str, text: str) -> Submission:
    return Submission(tenant_id=tenant, idempotency_key=uuid.uuid4().hex, kind="admission_form",
                      document=Document(body=text.encode()))


GLOBEX_PACK = PackSource(files=[PackFile(path="pack.yaml", content=b"""\
pack: globex_memo
version: 1.0.0
description: Globex's internal memos
fields:
  subject: {type: string, labels: [Subject]}
decision:
  rules:
    - {name: memo_filed, when: "true", outcome: auto_execute}
plan:
  - {name: file_memo, target: "http://erp/memos"}
""")])
INVOICE = ("INVOICE No. 4471\nBill to: Globex Ltd\nAmount due: EUR 1,250.00\nDue date: "
           "2026-12-01\nPO number: PO-7781\nRemit to IBAN on file")


async def test_every_rpc_respects_credentials_roles_and_tenants(settings: Settings) -> None:
    globex_ingest, globex_review, _, globex_channels = stubs(settings, "globex-sub")
    # a task of globex that will sit in review (invoice submitted as an admission form)
    task_id = (await globex_ingest.SubmitTask(SubmitTaskRequest(
        submission=submission("globex", INVOICE)))).task_id
    _, globex_reviewer, _, rev_channels = stubs(settings, "globex-rev")
    item_id = ""
    deadline = time.monotonic() + 90
    while not item_id:
        assert time.monotonic() < deadline, "globex's task never reached review"
        for item in (await globex_reviewer.ListQueue(ListQueueRequest(page_size=100))).items:
            if item.escalation.task_id == task_id:
                item_id = item.item_id
        await asyncio.sleep(0.3)

    anon_ingest, anon_review, anon_decision, anon_channels = stubs(settings, None)
    ingest, review, decision, acme_channels = stubs(settings, "acme-sub")
    _, acme_reviewer, _, acme_rev_channels = stubs(settings, "acme-rev")
    auditor_ingest, _, _, audit_channels = stubs(settings, "audit")
    try:
        # no credentials: every RPC refuses
        for call in (
            lambda: anon_ingest.SubmitTask(SubmitTaskRequest(submission=submission("acme", "x"))),
            lambda: anon_ingest.GetTask(GetTaskRequest(task_id=task_id)),
            lambda: anon_ingest.ListTasks(ListTasksRequest(tenant_id="acme")),
            lambda: anon_review.ListQueue(ListQueueRequest()),
            lambda: anon_decision.Decide(DecideRequest(task=TaskEnvelope(
                document=Document(body=b"x")))),
        ):
            assert await code_of(call) == grpc.StatusCode.UNAUTHENTICATED

        # wrong role: least privilege per RPC
        assert await code_of(lambda: acme_reviewer.Claim(
            ClaimRequest(item_id=item_id, reviewer_id="x"))) == grpc.StatusCode.NOT_FOUND
        assert await code_of(lambda: review.ListQueue(ListQueueRequest())) == \
            grpc.StatusCode.PERMISSION_DENIED
        assert await code_of(lambda: auditor_ingest.SubmitTask(SubmitTaskRequest(
            submission=submission("acme", "x")))) == grpc.StatusCode.PERMISSION_DENIED
        # a submitter may not ask the pack's rules about edits: that is a reviewer's verdict
        assert await code_of(lambda: decision.ReconsiderEdits(ReconsiderEditsRequest(
            task=TaskEnvelope(task_id=task_id, tenant_id="acme"),
            proposed_decision=Decision(pack="invoice"), edits={"total": "1.00"}))) == \
            grpc.StatusCode.PERMISSION_DENIED

        # another tenant's task or item: absent, not forbidden (no existence leak)
        for call in (
            lambda: ingest.GetTask(GetTaskRequest(task_id=task_id)),
            lambda: ingest.CancelTask(CancelTaskRequest(task_id=task_id)),
            lambda: ingest.WatchTask(WatchTaskRequest(task_id=task_id)),
            lambda: acme_reviewer.GetItem(GetItemRequest(item_id=item_id)),
        ):
            assert await code_of(call) == grpc.StatusCode.NOT_FOUND
        # naming another tenant outright is refused
        for call in (
            lambda: ingest.SubmitTask(SubmitTaskRequest(submission=submission("globex", "x"))),
            lambda: ingest.ListTasks(ListTasksRequest(tenant_id="globex")),
            lambda: ingest.WatchTenant(WatchTenantRequest(tenant_id="globex")),
        ):
            assert await code_of(call) == grpc.StatusCode.PERMISSION_DENIED
        bulk = await ingest.SubmitTasks(SubmitTasksRequest(submissions=[
            submission("acme", "Support ticket: login fails"), submission("globex", "x")]))
        assert [r.HasField("accepted") for r in bulk.results] == [True, False]
        assert bulk.results[1].error.code == grpc.StatusCode.PERMISSION_DENIED.value[0]
        # listings only ever show the caller's tenant
        own = await ingest.ListTasks(ListTasksRequest())
        assert own.tasks and {t.envelope.tenant_id for t in own.tasks} == {"acme"}
        queue = await acme_reviewer.ListQueue(ListQueueRequest(page_size=500))
        assert all(i.escalation.tenant_id == "acme" for i in queue.items)
        assert item_id not in {i.item_id for i in queue.items}
        # the owner still sees its own
        assert (await globex_ingest.GetTask(GetTaskRequest(task_id=task_id))).task.envelope \
            .tenant_id == "globex"
    finally:
        for channel in (*globex_channels, *rev_channels, *anon_channels, *acme_channels,
                        *acme_rev_channels, *audit_channels):
            await channel.close()


def every_rpc() -> set[str]:
    """Every RPC the four services define, from their descriptors."""
    return {f"{service.full_name}/{method.name}"
            for module in (ingest_service_pb2, review_service_pb2, decision_service_pb2,
                           executor_service_pb2, pack_service_pb2, dead_letter_service_pb2,
                           consent_service_pb2)
            for service in module.DESCRIPTOR.services_by_name.values()
            for method in service.methods}


async def test_every_rpc_with_another_tenants_valid_credentials(settings: Settings) -> None:
    """acme's valid keys (submitter and reviewer) against globex's task, review item,
    webhook and tenant, on every RPC: nothing of globex's is read, changed or decided."""
    globex_ingest, _, _, globex_channels = stubs(settings, "globex-sub")
    _, globex_reviewer, _, rev_channels = stubs(settings, "globex-rev")
    ingest, _, decision, acme_channels = stubs(settings, "acme-sub")
    _, acme_reviewer, acme_rev_decision, acme_rev_channels = stubs(settings, "acme-rev")
    executor_channel = create_channel(f"127.0.0.1:{settings.executor_grpc_port}",
                                      api_key="acme-sub")
    executor = ExecutorAdminServiceStub(executor_channel)
    waits = ExecutorServiceStub(executor_channel)
    packs_channel = create_channel(f"127.0.0.1:{settings.decision_grpc_port}",
                                   api_key="acme-admin")
    packs = PackServiceStub(packs_channel)
    globex_packs_channel = create_channel(f"127.0.0.1:{settings.decision_grpc_port}",
                                          api_key="globex-admin")
    globex_packs = PackServiceStub(globex_packs_channel)
    letters_channel = create_channel(f"127.0.0.1:{settings.ingest_grpc_port}",
                                     api_key="acme-admin")
    letters = DeadLetterServiceStub(letters_channel)
    operator = IngestServiceStub(letters_channel)   # acme's admin on IngestService
    acme_health = DecisionServiceStub(packs_channel)  # acme's admin on DecisionService
    globex_letters_channel = create_channel(f"127.0.0.1:{settings.ingest_grpc_port}",
                                            api_key="globex-admin")
    globex_letters = DeadLetterServiceStub(globex_letters_channel)
    consents = ConsentServiceStub(letters_channel)   # acme's admin on ConsentService
    globex_consents = ConsentServiceStub(globex_letters_channel)
    try:
        # a consent of globex's, which acme's admin must neither see, change nor erase
        await globex_consents.SetConsent(SetConsentRequest(
            subject_ref="globex-student-1", granted=True,
            purpose=ConsentPurpose.CONSENT_PURPOSE_CLASS_ANALYTICS))
        # a record of globex's that ingest dead-letters, which acme's admin must not see
        marker = uuid.uuid4().hex.encode()
        producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
        producer.produce(INTAKE.full_name(settings), key=b"globex-bad", value=b"\x00" + marker,
                         headers=[("x-tenant-id", b"globex")])
        assert producer.flush(30) == 0

        async def globex_letter() -> str:
            page = await globex_letters.ListDeadLetters(ListDeadLettersRequest(page_size=500))
            for record in page.dead_letters:
                got = await globex_letters.GetDeadLetter(GetDeadLetterRequest(
                    dead_letter_id=record.letter.dead_letter_id))
                if marker in got.dead_letter.letter.original_value:
                    return record.letter.dead_letter_id
            return ""
        letter_id = await eventually(globex_letter, "globex's record to be dead-lettered",
                                     90, 0.5)
        # globex's own pack and settings, which acme's admin must neither see nor change
        await globex_packs.ApplyPack(ApplyPackRequest(source=GLOBEX_PACK))
        await globex_packs.ApplyTenantSettings(ApplyTenantSettingsRequest(
            document=b"packs:\n  globex_memo: {enabled: true}\n"))
        # the webhook first: it is sent the status changes that happen after it exists, and
        # the task below may be decided within milliseconds of its submission
        webhook = await globex_ingest.RegisterWebhook(RegisterWebhookRequest(
            url="http://127.0.0.1:9/hook"))
        source = (await globex_ingest.RegisterWebhookSource(RegisterWebhookSourceRequest(
            name="globex crm", mapping=WebhookFieldMapping(default_kind="invoice")))).source
        task_id = (await globex_ingest.SubmitTask(SubmitTaskRequest(
            submission=submission("globex", INVOICE)))).task_id

        async def globex_item() -> str:
            page = await globex_reviewer.ListQueue(ListQueueRequest(page_size=500))
            return next((i.item_id for i in page.items if i.escalation.task_id == task_id), "")
        item_id = await eventually(globex_item, "globex's task to reach review", 120, 0.3)

        async def globex_delivery() -> str:
            page = await globex_ingest.ListWebhookDeliveries(ListWebhookDeliveriesRequest(
                webhook_id=webhook.webhook_id))
            return page.deliveries[0].delivery_id if page.deliveries else ""
        delivery_id = await eventually(globex_delivery, "a delivery to globex's webhook", 90,
                                       0.3)
        verdict = ReviewVerdict(item_id=item_id, reviewer_id="mallory",
                                verdict=Verdict.VERDICT_APPROVE)

        expected: dict[str, tuple[Callable[[], Any], grpc.StatusCode]] = {
            "IngestService/SubmitTask": (lambda: ingest.SubmitTask(SubmitTaskRequest(
                submission=submission("globex", "x"))), grpc.StatusCode.PERMISSION_DENIED),
            "IngestService/GetTask": (lambda: ingest.GetTask(GetTaskRequest(task_id=task_id)),
                                      grpc.StatusCode.NOT_FOUND),
            "IngestService/ListTasks": (lambda: ingest.ListTasks(ListTasksRequest(
                tenant_id="globex")), grpc.StatusCode.PERMISSION_DENIED),
            "IngestService/CancelTask": (lambda: ingest.CancelTask(CancelTaskRequest(
                task_id=task_id)), grpc.StatusCode.NOT_FOUND),
            "IngestService/RetryTask": (lambda: ingest.RetryTask(RetryTaskRequest(
                task_id=task_id)), grpc.StatusCode.NOT_FOUND),
            "IngestService/WatchTask": (lambda: ingest.WatchTask(WatchTaskRequest(
                task_id=task_id)), grpc.StatusCode.NOT_FOUND),
            # the operator console's task RPCs: acme's admin finds no task of globex's
            "IngestService/GetTaskTimeline": (lambda: operator.GetTaskTimeline(
                GetTaskTimelineRequest(task_id=task_id)), grpc.StatusCode.NOT_FOUND),
            "IngestService/RedriveTask": (lambda: operator.RedriveTask(RedriveTaskRequest(
                task_id=task_id, reason="not mine")), grpc.StatusCode.NOT_FOUND),
            "DecisionService/GetModelHealth": (lambda: acme_health.GetModelHealth(
                GetModelHealthRequest(tenant_id="globex")), grpc.StatusCode.PERMISSION_DENIED),
            # a model serves every tenant: a tenant's admin neither sees nor changes rollouts
            "DecisionService/ListRollouts": (lambda: acme_health.ListRollouts(
                ListRolloutsRequest()), grpc.StatusCode.PERMISSION_DENIED),
            "DecisionService/StartRollout": (lambda: acme_health.StartRollout(
                StartRolloutRequest(model_name="document_router", candidate_version="2",
                                    stage=RolloutStage.ROLLOUT_STAGE_CANARY, canary_share=0.5,
                                    tenants=["acme"])), grpc.StatusCode.PERMISSION_DENIED),
            "DecisionService/PromoteModel": (lambda: acme_health.PromoteModel(
                PromoteModelRequest(model_name="document_router")),
                grpc.StatusCode.PERMISSION_DENIED),
            "DecisionService/RollbackModel": (lambda: acme_health.RollbackModel(
                RollbackModelRequest(model_name="document_router")),
                grpc.StatusCode.PERMISSION_DENIED),
            "IngestService/WatchTenant": (lambda: ingest.WatchTenant(WatchTenantRequest(
                tenant_id="globex")), grpc.StatusCode.PERMISSION_DENIED),
            "IngestService/RegisterWebhook": (lambda: ingest.RegisterWebhook(
                RegisterWebhookRequest(tenant_id="globex", url="http://127.0.0.1:9/evil")),
                grpc.StatusCode.PERMISSION_DENIED),
            "IngestService/ListWebhooks": (lambda: ingest.ListWebhooks(ListWebhooksRequest(
                tenant_id="globex")), grpc.StatusCode.PERMISSION_DENIED),
            "IngestService/ListWebhookDeliveries": (lambda: ingest.ListWebhookDeliveries(
                ListWebhookDeliveriesRequest(tenant_id="globex")),
                grpc.StatusCode.PERMISSION_DENIED),
            "IngestService/RedeliverWebhooks": (lambda: ingest.RedeliverWebhooks(
                RedeliverWebhooksRequest(delivery_ids=[delivery_id])),
                grpc.StatusCode.NOT_FOUND),
            "IngestService/RegisterWebhookSource": (lambda: ingest.RegisterWebhookSource(
                RegisterWebhookSourceRequest(tenant_id="globex", name="evil", mapping=(
                    WebhookFieldMapping(default_kind="invoice")))),
                grpc.StatusCode.PERMISSION_DENIED),
            "IngestService/ListWebhookSources": (lambda: ingest.ListWebhookSources(
                ListWebhookSourcesRequest(tenant_id="globex")),
                grpc.StatusCode.PERMISSION_DENIED),
            "ReviewService/GetItem": (lambda: acme_reviewer.GetItem(GetItemRequest(
                item_id=item_id)), grpc.StatusCode.NOT_FOUND),
            "ReviewService/Claim": (lambda: acme_reviewer.Claim(ClaimRequest(
                item_id=item_id, reviewer_id="mallory")), grpc.StatusCode.NOT_FOUND),
            "ReviewService/Renew": (lambda: acme_reviewer.Renew(RenewRequest(
                item_id=item_id, reviewer_id="mallory")), grpc.StatusCode.NOT_FOUND),
            "ReviewService/Release": (lambda: acme_reviewer.Release(ReleaseRequest(
                item_id=item_id, reviewer_id="mallory")), grpc.StatusCode.NOT_FOUND),
            "ReviewService/SubmitVerdict": (lambda: acme_reviewer.SubmitVerdict(
                SubmitVerdictRequest(verdict=verdict)), grpc.StatusCode.NOT_FOUND),
            # the tenant named in the task is checked against the caller's credentials
            "DecisionService/Decide": (lambda: decision.Decide(DecideRequest(task=TaskEnvelope(
                tenant_id="globex", document=Document(body=INVOICE.encode())))),
                grpc.StatusCode.PERMISSION_DENIED),
            # a reviewer's edits are put to the pack's rules of the task's own tenant only
            "DecisionService/ReconsiderEdits": (lambda: acme_rev_decision.ReconsiderEdits(
                ReconsiderEditsRequest(task=TaskEnvelope(
                    task_id=task_id, tenant_id="globex", document=Document(
                        body=INVOICE.encode())), proposed_decision=Decision(pack="invoice"),
                    edits={"total": "1.00"})), grpc.StatusCode.PERMISSION_DENIED),
            # breakers are operator state, not a tenant's: a tenant's key may not touch them
            "ExecutorAdminService/ListBreakers": (lambda: executor.ListBreakers(
                ListBreakersRequest()), grpc.StatusCode.PERMISSION_DENIED),
            "ExecutorAdminService/ResetBreaker": (lambda: executor.ResetBreaker(
                ResetBreakerRequest(name="http://erp")), grpc.StatusCode.PERMISSION_DENIED),
            # a callback token naming another tenant's task: absent, nothing completed
            "ExecutorService/CompleteWait": (lambda: waits.CompleteWait(CompleteWaitRequest(
                token=f"{task_id}:1-post_invoice")), grpc.StatusCode.NOT_FOUND),
            # packs: a tenant's admin acts on its own tenant only; another's pack is absent
            "PackService/ApplyPack": (lambda: packs.ApplyPack(ApplyPackRequest(
                source=GLOBEX_PACK, tenant_id="globex")), grpc.StatusCode.PERMISSION_DENIED),
            "PackService/ListPacks": (lambda: packs.ListPacks(ListPacksRequest(
                tenant_id="globex")), grpc.StatusCode.PERMISSION_DENIED),
            "PackService/GetPack": (lambda: packs.GetPack(GetPackRequest(
                name="globex_memo")), grpc.StatusCode.NOT_FOUND),
            "PackService/TestPack": (lambda: packs.TestPack(PackTestRequest(
                name="globex_memo")), grpc.StatusCode.NOT_FOUND),
            "PackService/ApplyTenantSettings": (lambda: packs.ApplyTenantSettings(
                ApplyTenantSettingsRequest(tenant_id="globex", document=b"packs: {}\n")),
                grpc.StatusCode.PERMISSION_DENIED),
            "PackService/GetTenantSettings": (lambda: packs.GetTenantSettings(
                GetTenantSettingsRequest(tenant_id="globex")),
                grpc.StatusCode.PERMISSION_DENIED),
            # dead letters: a tenant's admin reads, replays and resolves its own tenant's only
            "DeadLetterService/ListDeadLetters": (lambda: letters.ListDeadLetters(
                ListDeadLettersRequest(tenant_id="globex")), grpc.StatusCode.PERMISSION_DENIED),
            "DeadLetterService/GetDeadLetter": (lambda: letters.GetDeadLetter(
                GetDeadLetterRequest(dead_letter_id=letter_id)), grpc.StatusCode.NOT_FOUND),
            "DeadLetterService/ReplayDeadLetter": (lambda: letters.ReplayDeadLetter(
                ReplayDeadLetterRequest(dead_letter_id=letter_id)), grpc.StatusCode.NOT_FOUND),
            "DeadLetterService/ResolveDeadLetter": (lambda: letters.ResolveDeadLetter(
                ResolveDeadLetterRequest(dead_letter_id=letter_id, reason="not ours")),
                grpc.StatusCode.NOT_FOUND),
            # consents: a tenant's admin manages its own tenant's only
            "ConsentService/SetConsent": (lambda: consents.SetConsent(SetConsentRequest(
                tenant_id="globex", subject_ref="globex-student-1", granted=False,
                purpose=ConsentPurpose.CONSENT_PURPOSE_CLASS_ANALYTICS)),
                grpc.StatusCode.PERMISSION_DENIED),
            "ConsentService/ListConsents": (lambda: consents.ListConsents(ListConsentsRequest(
                tenant_id="globex")), grpc.StatusCode.PERMISSION_DENIED),
            "ConsentService/EraseSubject": (lambda: consents.EraseSubject(EraseSubjectRequest(
                tenant_id="globex", subject_ref="globex-student-1")),
                grpc.StatusCode.PERMISSION_DENIED),
        }
        got = {rpc: await code_of(call) for rpc, (call, _) in expected.items()}
        assert got == {rpc: code for rpc, (_, code) in expected.items()}
        # nor every tenant at once: "*" is for operator keys only
        assert await code_of(lambda: acme_health.GetModelHealth(GetModelHealthRequest(
            tenant_id="*"))) == grpc.StatusCode.PERMISSION_DENIED
        # least privilege: a submitter may not read timelines nor re-drive; an auditor reads
        own_task = (await ingest.SubmitTask(SubmitTaskRequest(
            submission=submission("acme", "Support ticket: printer jam")))).task_id
        assert await code_of(lambda: ingest.GetTaskTimeline(GetTaskTimelineRequest(
            task_id=own_task))) == grpc.StatusCode.PERMISSION_DENIED
        assert await code_of(lambda: ingest.RedriveTask(RedriveTaskRequest(
            task_id=own_task))) == grpc.StatusCode.PERMISSION_DENIED
        assert await code_of(lambda: acme_health.GetModelHealth(GetModelHealthRequest(
            tenant_id="acme"))) == grpc.StatusCode.OK
        audit_channel = create_channel(f"127.0.0.1:{settings.ingest_grpc_port}",
                                       api_key="audit")
        try:
            auditor = IngestServiceStub(audit_channel)
            story = await auditor.GetTaskTimeline(GetTaskTimelineRequest(task_id=own_task))
            assert story.task.envelope.task_id == own_task and story.entries
            assert await code_of(lambda: auditor.RedriveTask(RedriveTaskRequest(
                task_id=own_task))) == grpc.StatusCode.PERMISSION_DENIED
            assert await code_of(lambda: auditor.GetTaskTimeline(GetTaskTimelineRequest(
                task_id=task_id))) == grpc.StatusCode.NOT_FOUND
        finally:
            await audit_channel.close()

        # RPCs that answer rather than refuse: the answer holds nothing of globex's
        bulk = await ingest.SubmitTasks(SubmitTasksRequest(submissions=[
            submission("globex", "x")]))
        assert bulk.results[0].error.code == grpc.StatusCode.PERMISSION_DENIED.value[0]
        # a batch of decisions: globex's task refused on its own, acme's own decided
        decided = await decision.DecideBatch(DecideBatchRequest(tasks=[
            TaskEnvelope(tenant_id="globex", document=Document(body=INVOICE.encode())),
            TaskEnvelope(document=Document(body=INVOICE.encode()))]))
        assert decided.results[0].error.code == grpc.StatusCode.PERMISSION_DENIED.value[0]
        assert not decided.results[0].HasField("decision")
        assert decided.results[1].decision.tenant_id == "acme"
        assert not (await ingest.DeleteWebhook(DeleteWebhookRequest(
            webhook_id=webhook.webhook_id))).deleted
        assert not (await ingest.DeleteWebhookSource(DeleteWebhookSourceRequest(
            source_id=source.source_id))).deleted
        assert not (await acme_reviewer.ListQueue(ListQueueRequest(tenant_id="globex"))).items
        # validating reads nothing stored; acme's own listing and settings hold nothing of
        # globex's
        assert not (await packs.ValidatePack(ValidatePackRequest(source=GLOBEX_PACK))).problems
        assert "globex_memo" not in {p.name for p in (await packs.ListPacks(
            ListPacksRequest())).packs}
        assert (await packs.GetTenantSettings(GetTenantSettingsRequest())).version == 0
        # acme's own webhook listings hold nothing of globex's
        assert webhook.webhook_id not in {h.webhook_id for h in (
            await ingest.ListWebhooks(ListWebhooksRequest())).webhooks}
        assert delivery_id not in {d.delivery_id for d in (await ingest.ListWebhookDeliveries(
            ListWebhookDeliveriesRequest(page_size=500))).deliveries}
        assert letter_id not in {r.letter.dead_letter_id for r in (
            await letters.ListDeadLetters(ListDeadLettersRequest(page_size=500))).dead_letters}
        # acme's own consents hold nothing of globex's, and globex's consent is unchanged
        assert "globex-student-1" not in {c.subject_ref for c in (
            await consents.ListConsents(ListConsentsRequest(page_size=500))).consents}
        assert [c.granted for c in (await globex_consents.ListConsents(ListConsentsRequest(
            subject_ref="globex-student-1"))).consents] == [True]
        covered = {*expected, "IngestService/SubmitTasks", "IngestService/DeleteWebhook",
                   "DecisionService/DecideBatch",
                   "IngestService/DeleteWebhookSource",
                   "ReviewService/ListQueue", "PackService/ValidatePack"}
        assert every_rpc() == {f"switchyard.v1.{rpc}" for rpc in covered}, \
            "an RPC is missing from the cross-tenant table"

        # the caller's own tenant when the request names none: acme's decision, not globex's
        own = await decision.Decide(DecideRequest(task=TaskEnvelope(
            document=Document(body=INVOICE.encode()))))
        assert own.decision.tenant_id == "acme"
        # globex's things are untouched
        assert (await globex_ingest.GetTask(GetTaskRequest(task_id=task_id))).task.status
        assert await globex_item() == item_id
        assert (await globex_letters.GetDeadLetter(GetDeadLetterRequest(
            dead_letter_id=letter_id))).dead_letter.replay_count == 0
        assert (await globex_ingest.DeleteWebhook(DeleteWebhookRequest(
            webhook_id=webhook.webhook_id))).deleted
        assert [s.source_id for s in (await globex_ingest.ListWebhookSources(
            ListWebhookSourcesRequest())).sources] == [source.source_id]
    finally:
        for channel in (*globex_channels, *rev_channels, *acme_channels, *acme_rev_channels,
                        executor_channel, packs_channel, globex_packs_channel,
                        letters_channel, globex_letters_channel):
            await channel.close()
