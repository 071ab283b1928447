"""Reviewer groups, four eyes and approval steps, through the review service as it runs.

Escalations arrive over the real broker; reviewers call the real ReviewService and the web
console with API keys that name their groups (``key:tenant:role:group+group``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import aiohttp
import asyncpg
import grpc
import pytest
from playwright.async_api import expect

from switchyard import Settings
from switchyard.messaging import ESCALATIONS, Producer
from switchyard.rpc import create_channel, field_violations
from switchyard.storage import create_pool
from switchyard.v1 import (
    ClaimRequest,
    DataClass,
    Decision,
    DecisionOutcome,
    Discrepancy,
    Escalation,
    EscalationReason,
    FieldExtraction,
    GetItemRequest,
    ListQueueRequest,
    ReleaseRequest,
    ReviewServiceStub,
    ReviewState,
    ReviewVerdict,
    SubmitVerdictRequest,
    Verdict,
)
from tests.polling import eventually
from tests.review.helpers import artifact, escalation, insert_tasks, switchyard

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("review_process")]
# key id = key-<position>: fin-ann key-0, fin-bob key-1, plain key-2, adm key-3, aud key-4
KEYS = {"fin-ann": "acme:reviewer:finance", "fin-bob": "acme:reviewer:finance+legal",
        "plain": "acme:reviewer", "adm": "acme:admin", "aud": "acme:auditor",
        "fin-other": "other:reviewer:finance", "aud-fin": "acme:auditor:finance"}
KEY_IDS = {name: f"key-{index}" for index, name in enumerate(KEYS)}


@pytest.fixture(scope="module")
def settings(settings: Settings) -> Settings:
    return settings.replace(
        api_keys=",".join(f"{key}:{spec}" for key, spec in KEYS.items()),
        client_api_key="plain", review_tenant_rate=0.0,
        review_admission_interval_ms=50.0, review_sla_interval_s=0.5)


@pytest.fixture(scope="module")
async def db(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(settings)
    yield pool
    await pool.close()


@pytest.fixture(scope="module")
async def producer(settings: Settings) -> AsyncIterator[Producer]:
    producer = Producer(settings)
    await producer.start()
    yield producer
    await producer.stop()


@pytest.fixture
async def review(settings: Settings) -> AsyncIterator[dict[str, ReviewServiceStub]]:
    """A ReviewService stub per API key."""
    target = f"127.0.0.1:{settings.review_grpc_port}"
    opened = {key: create_channel(target, key) for key in KEYS}
    yield {key: ReviewServiceStub(channel) for key, channel in opened.items()}
    for channel in opened.values():
        await channel.close()


async def escalate(db: asyncpg.Pool, producer: Producer, queue: str,
                   **kwargs: object) -> tuple[Escalation, str]:
    """An escalation through the broker; returns it and its item id once it is PENDING."""
    async with db.acquire() as conn:
        (task,) = await insert_tasks(conn, "acme", 1)
    esc = escalation(task, queue, 2, **kwargs)  # type: ignore[arg-type]
    await producer.send(ESCALATIONS, esc.task_id, esc)
    item_id = await eventually(lambda: db.fetchval(
        "SELECT item_id::text FROM review_items WHERE escalation_id = $1 AND state = 'PENDING'",
        uuid.UUID(esc.escalation_id)), f"review item of {esc.task_id} pending")
    return esc, item_id


async def http(settings: Settings, method: str, path: str, key: str,
               body: object = None) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as session, session.request(
            method, f"http://127.0.0.1:{settings.review_web_port}{path}",
            headers={"Authorization": f"Bearer {key}"}, json=body) as response:
        return response.status, await response.json()


async def listed(stub: ReviewServiceStub, queue: str) -> set[str]:
    return {i.item_id for i in (await stub.ListQueue(ListQueueRequest(queue=queue))).items}


async def decide(stub: ReviewServiceStub, item_id: str, verdict: Verdict.ValueType,
                 **kwargs: object) -> tuple[object, str]:
    await stub.Claim(ClaimRequest(item_id=item_id))
    if verdict == Verdict.VERDICT_REJECT:
        kwargs.setdefault("reason", "not approved")  # a refusal says why
    done = await stub.SubmitVerdict(SubmitVerdictRequest(verdict=ReviewVerdict(
        item_id=item_id, verdict=verdict, **kwargs)))  # type: ignore[arg-type]
    return done.item, done.decision_id


async def stored_decisions(db: asyncpg.Pool, esc: Escalation) -> list[Decision]:
    return [Decision.FromString(blob) for blob in await db.fetchval(
        "SELECT coalesce(array_agg(decision), '{}') FROM review_decisions WHERE task_id = $1",
        uuid.UUID(esc.task_id))]


# -- reviewer groups ---------------------------------------------------------------------

async def test_a_group_item_is_only_seen_claimed_and_decided_by_the_group(
        settings: Settings, db: asyncpg.Pool, producer: Producer,
        review: dict[str, ReviewServiceStub]) -> None:
    grouped, grouped_id = await escalate(db, producer, "groups", reviewer_group="finance")
    _, open_id = await escalate(db, producer, "groups")

    # outside the group: not listed, and "not found" like another tenant's item
    for key in ("plain", "aud", "fin-other"):
        assert grouped_id not in await listed(review[key], "groups"), key
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await review[key].GetItem(GetItemRequest(item_id=grouped_id))
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND, key
    assert await listed(review["plain"], "groups") == {open_id}
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await review["plain"].Claim(ClaimRequest(item_id=grouped_id))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    # members see both (an auditor given the group too, read-only); admins are in every group
    for key in ("fin-ann", "fin-bob", "adm", "aud-fin"):
        assert await listed(review[key], "groups") == {grouped_id, open_id}, key
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await review["aud-fin"].Claim(ClaimRequest(item_id=grouped_id))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    shown = (await review["fin-bob"].GetItem(GetItemRequest(item_id=grouped_id))).item
    assert shown.escalation.reviewer_group == "finance"

    # the console answers the same way
    status, body = await http(settings, "GET", "/api/items?queue=groups", "plain")
    assert status == 200 and [i["item_id"] for i in body["items"]] == [open_id]  # type: ignore
    assert (await http(settings, "GET", f"/api/items/{grouped_id}", "plain"))[0] == 404
    assert (await http(settings, "POST", f"/api/items/{grouped_id}/claim", "plain", {}))[0] \
        == 404
    _, stats = await http(settings, "GET", "/api/stats", "plain")
    assert {q["queue"]: q["open"] for q in stats["queues"]}["groups"] == 1  # type: ignore
    _, stats = await http(settings, "GET", "/api/stats", "fin-ann")
    assert {q["queue"]: q["open"] for q in stats["queues"]}["groups"] == 2  # type: ignore
    # switchyard stats counts every open item of the queue, the group's among them, and
    # (claimed by fin-bob for a moment) tells a claim from a waiting item
    await review["fin-bob"].Claim(ClaimRequest(item_id=grouped_id))
    code, out = await switchyard(settings, "stats", "--json", "--tenant", "acme")
    assert code == 0, out
    (kpis,) = json.loads(out)
    groups = {q["queue"]: q for q in kpis["review_queues"]}["groups"]
    assert (groups["pending"], groups["claimed"], groups["backlogged"]) == (1, 1, 0), groups
    assert groups["oldest_open_seconds"] > 0
    await review["fin-bob"].Release(ReleaseRequest(item_id=grouped_id))
    status, body = await http(settings, "GET", f"/api/items/{grouped_id}", "fin-ann")
    assert status == 200 and body["item"]["reviewer_group"] == "finance"  # type: ignore

    item, decision_id = await decide(review["fin-ann"], grouped_id, Verdict.VERDICT_APPROVE)
    assert item.state == ReviewState.REVIEW_STATE_RESOLVED and decision_id  # type: ignore


# -- four eyes -----------------------------------------------------------------------------

async def reviewed_kpis(settings: Settings) -> tuple[int, int]:
    """acme's (human_reviewed, reviews) from ``switchyard stats --json``."""
    code, out = await switchyard(settings, "stats", "--json", "--tenant", "acme")
    assert code == 0, out
    (kpis,) = json.loads(out)
    return kpis["human_reviewed"], kpis["reviews"]


async def test_four_eyes_needs_two_different_reviewers_and_publishes_one_decision(
        settings: Settings, db: asyncpg.Pool, producer: Producer,
        review: dict[str, ReviewServiceStub]) -> None:
    reviewed_before, reviews_before = await reviewed_kpis(settings)
    esc, item_id = await escalate(db, producer, "four-eyes", reviewer_group="finance",
                                  four_eyes=True, fields=[("total", "120.00", 0.4),
                                                          ("currency", "EUR", 0.9)])
    first, decision_id = await decide(review["fin-ann"], item_id, Verdict.VERDICT_MODIFY,
                                      modified_fields={"total": "121.00"}, reason="total fixed")
    # recorded, not published: the item is back in the queue for a second reviewer
    assert decision_id == ""
    assert first.state == ReviewState.REVIEW_STATE_PENDING  # type: ignore[attr-defined]
    assert list(first.approved_by) == [KEY_IDS["fin-ann"]]  # type: ignore[attr-defined]
    assert first.approvals_required == 2  # type: ignore[attr-defined]
    assert await stored_decisions(db, esc) == []
    listed_item = next(i for i in (await review["fin-bob"].ListQueue(
        ListQueueRequest(queue="four-eyes"))).items if i.item_id == item_id)
    assert list(listed_item.approved_by) == [KEY_IDS["fin-ann"]]
    # the second reviewer sees what the first changed: the approval is of what will run
    assert dict(listed_item.approved_edits) == {"total": "121.00"}
    got = await review["fin-bob"].GetItem(GetItemRequest(item_id=item_id))
    assert dict(got.item.approved_edits) == {"total": "121.00"}
    status, body = await http(settings, "GET", f"/api/items/{item_id}", "fin-bob")
    assert body["item"]["approvals"]["text"] == "1 of 2 approvals"  # type: ignore[index]
    assert body["item"]["approvals"]["edits"] == {"total": "121.00"}  # type: ignore[index]

    # the same reviewer cannot approve twice
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await review["fin-ann"].Claim(ClaimRequest(item_id=item_id))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "four eyes needs a different reviewer" in (caught.value.details() or "")
    status, body = await http(settings, "POST", f"/api/items/{item_id}/claim", "fin-ann", {})
    assert status == 403

    second, decision_id = await decide(review["fin-bob"], item_id, Verdict.VERDICT_APPROVE,
                                       reason="checked")
    assert second.state == ReviewState.REVIEW_STATE_RESOLVED  # type: ignore[attr-defined]
    assert second.resolution == "verdict:approve"  # type: ignore[attr-defined]
    # the resolved item names both approvers (it named the first only)
    both = [KEY_IDS["fin-ann"], KEY_IDS["fin-bob"]]
    assert list(second.approved_by) == both  # type: ignore[attr-defined]
    status, body = await http(settings, "GET", f"/api/items/{item_id}", "fin-bob")
    assert body["item"]["approvals"]["approved_by"] == both  # type: ignore[index]
    assert body["item"]["approvals"]["text"] == "2 of 2 approvals"  # type: ignore[index]
    (decision,) = await stored_decisions(db, esc)
    assert decision.decision_id == decision_id
    assert decision.outcome == DecisionOutcome.DECISION_OUTCOME_AUTO_EXECUTE
    assert decision.reviewer_id == f"{KEY_IDS['fin-ann']},{KEY_IDS['fin-bob']}"
    assert decision.explanation.startswith(
        f"Approved by {KEY_IDS['fin-ann']} and {KEY_IDS['fin-bob']} (four eyes) "
        "with edits to total")
    assert dict(decision.extracted_fields) == {"total": "121.00", "currency": "EUR"}
    await eventually(lambda: db.fetchval(
        "SELECT decision_published_at IS NOT NULL FROM review_items WHERE item_id = $1::uuid",
        item_id), "the decision published to the broker")
    actions = [r["action"] for r in await db.fetch(
        "SELECT action FROM audit_log WHERE task_id = $1 ORDER BY entry_id",
        uuid.UUID(esc.task_id))]
    assert actions == ["review.approval", "review.verdict"]
    # the KPIs price two people's reviews of one reviewed task
    assert await reviewed_kpis(settings) == (reviewed_before + 1, reviews_before + 2)


async def test_four_eyes_a_reject_after_the_first_approval_ends_it(
        db: asyncpg.Pool, producer: Producer, review: dict[str, ReviewServiceStub]) -> None:
    esc, item_id = await escalate(db, producer, "four-eyes", four_eyes=True)
    await decide(review["plain"], item_id, Verdict.VERDICT_APPROVE)
    item, decision_id = await decide(review["fin-ann"], item_id, Verdict.VERDICT_REJECT,
                                     reason="not ours")
    assert item.resolution == "verdict:reject" and decision_id  # type: ignore[attr-defined]
    (decision,) = await stored_decisions(db, esc)
    assert decision.outcome == DecisionOutcome.DECISION_OUTCOME_REJECT
    assert decision.explanation == (f"Rejected by {KEY_IDS['fin-ann']} (after "
                                    f"{KEY_IDS['plain']}'s approval): not ours")


async def test_the_command_line_says_a_first_approval_waits_for_a_second(
        settings: Settings, db: asyncpg.Pool, producer: Producer) -> None:
    esc, item_id = await escalate(db, producer, "four-eyes-cli", four_eyes=True)
    code, out = await switchyard(settings.replace(client_api_key="fin-ann"), "review",
                                 "approve", item_id)
    assert code == 0 and "1 of 2 approvals; another reviewer must approve" in out, out
    code, out = await switchyard(settings.replace(client_api_key="fin-ann"), "review",
                                 "approve", item_id)
    assert code == 1 and "PERMISSION_DENIED" in out, out
    code, out = await switchyard(settings.replace(client_api_key="fin-bob"), "review",
                                 "approve", item_id)
    assert code == 0 and "sent to the executor" in out, out
    assert len(await stored_decisions(db, esc)) == 1


# -- approval steps ------------------------------------------------------------------------

# (an approval with edits, which the decision service's rules check, on a step of a pack it
# runs: tests/e2e/test_packs_e2e.py)
@pytest.mark.parametrize(("verdict", "outcome"), [
    (Verdict.VERDICT_APPROVE, DecisionOutcome.DECISION_OUTCOME_AUTO_EXECUTE),
    (Verdict.VERDICT_REJECT, DecisionOutcome.DECISION_OUTCOME_REJECT),
])
async def test_a_verdict_on_an_approval_step_answers_that_step_with_the_plan(
        db: asyncpg.Pool, producer: Producer, review: dict[str, ReviewServiceStub],
        verdict: Verdict.ValueType, outcome: DecisionOutcome.ValueType) -> None:
    esc, item_id = await escalate(
        db, producer, "steps", step_id="2-manager_ok", instructions="Approve the claim",
        reason=EscalationReason.ESCALATION_REASON_APPROVAL_STEP,
        fields=[("total", "900.00", 0.9)])
    _, decision_id = await decide(review["plain"], item_id, verdict)
    (decision,) = await stored_decisions(db, esc)
    assert decision.decision_id == decision_id and decision.outcome == outcome
    assert decision.approves_step_id == "2-manager_ok"
    # reject too: the executor compensates the steps that ran, so it needs the plan
    assert [s.step_id for s in decision.plan.steps] == ["1-post_invoice", "2-manager_ok"]
    assert (decision.pack, decision.pack_version) == ("expense_claim", "1.0.0")


async def test_edits_the_packs_rules_cannot_check_are_not_recorded(
        settings: Settings, db: asyncpg.Pool, producer: Producer,
        review: dict[str, ReviewServiceStub]) -> None:
    """An approval with edits of a pack's proposal waits for the pack's rules: with the
    decision service away (this module runs none) it is refused UNAVAILABLE, nothing is
    recorded and the item stays claimed by its reviewer, to be decided again."""
    esc, item_id = await escalate(
        db, producer, "steps-down", step_id="2-manager_ok",
        reason=EscalationReason.ESCALATION_REASON_APPROVAL_STEP,
        fields=[("total", "900.00", 0.9)])
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await decide(review["plain"], item_id, Verdict.VERDICT_MODIFY,
                     modified_fields={"total": "850.00"})
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "the verdict was not recorded" in (caught.value.details() or "")
    # the console says the same, as 503
    status, body = await http(settings, "POST", f"/api/items/{item_id}/verdict", "plain",
                              {"verdict": "modify", "modified_fields": {"total": "850.00"}})
    assert status == 503 and "the verdict was not recorded" in str(body["error"]), body
    assert await stored_decisions(db, esc) == []
    item = (await review["plain"].GetItem(GetItemRequest(item_id=item_id))).item
    assert item.state == ReviewState.REVIEW_STATE_CLAIMED and item.claimed_by == KEY_IDS["plain"]


# -- the console ---------------------------------------------------------------------------

async def test_console_shows_group_instructions_and_four_eyes_progress(
        settings: Settings, db: asyncpg.Pool, producer: Producer, browser: object,
        review: dict[str, ReviewServiceStub]) -> None:
    # (a proposal no pack made, so its edits go to no pack's rules: this module runs no
    # decision service)
    _, item_id = await escalate(
        db, producer, "console-4e", reviewer_group="finance", four_eyes=True,
        instructions="Check the IBAN against the vendor master",
        fields=[("total", "120.00", 0.4)])
    base = f"http://127.0.0.1:{settings.review_web_port}/"
    expect.set_options(timeout=30_000)

    async def sign_in(key: str) -> object:
        page = await browser.new_page(viewport={"width": 1280, "height": 900})  # type: ignore
        await page.goto(base)
        await page.fill("#api-key", key)
        await page.click("#login-form button[type=submit]")
        await page.fill("#f-queue", "console-4e")
        return page

    outsider = await sign_in("plain")
    try:  # a reviewer outside the group does not see the item
        await expect(outsider.locator("#empty")).to_be_visible()  # type: ignore[attr-defined]
        await expect(outsider.locator("#queue tbody tr")).to_have_count(0)  # type: ignore
    finally:
        await outsider.close()  # type: ignore[attr-defined]

    page = await sign_in("fin-ann")
    try:
        await expect(page.locator("#who")).to_contain_text("groups finance")  # type: ignore
        row = page.locator(f'#queue tbody tr[data-item-id="{item_id}"]')  # type: ignore
        await expect(row).to_contain_text("finance")
        await expect(row).to_contain_text("0 of 2 approvals")
        await row.click()
        await expect(page.locator("#i-group")).to_have_text("finance")  # type: ignore
        await expect(page.locator("#i-instructions")).to_have_text(  # type: ignore
            "Check the IBAN against the vendor master")
        await expect(page.locator("#i-approvals")).to_have_text("0 of 2 approvals")  # type: ignore
        await page.keyboard.press("c")  # type: ignore[attr-defined]
        await expect(page.locator("#i-state")).to_have_text("claimed by key-0")  # type: ignore
        # a plain approval with a corrected value typed is refused, naming the field: the
        # typed value is never dropped in silence
        await page.fill('#i-fields tr[data-field="total"] .field-edit', "121.00")  # type: ignore
        await page.click("#approve")  # type: ignore[attr-defined]
        await expect(page.locator("#status")).to_contain_text(  # type: ignore
            "You typed a corrected total: approve with edits (m)")
        await expect(page.locator("#i-state")).to_have_text("claimed by key-0")  # type: ignore
        await page.click("#modify")  # type: ignore[attr-defined]
        await expect(page.locator("#status")).to_contain_text(  # type: ignore
            "1 of 2 approvals")
        await expect(page.locator("#i-approvals")).to_have_text(  # type: ignore
            "1 of 2 approvals (key-0); the first approval changed total to 121.00")
        await expect(page.locator("#i-state")).to_have_text("pending")  # type: ignore
        await expect(page.locator("#claim")).to_be_disabled()  # type: ignore
        await page.screenshot(path=str(artifact("review-console-four-eyes.png")),  # type: ignore
                              full_page=True)
    finally:
        await page.close()  # type: ignore[attr-defined]

    second = await sign_in("fin-bob")
    try:  # the second reviewer approves what the first changed, and sees it beside the field
        await second.locator(f'#queue tbody tr[data-item-id="{item_id}"]').click()  # type: ignore
        await expect(second.locator("#i-approvals")).to_contain_text(  # type: ignore
            "the first approval changed total to 121.00")
        await expect(second.locator('#i-fields tr[data-field="total"]')).to_contain_text(  # type: ignore
            "120.00 → 121.00 (first approval)")
        # the open item has an address: a reload (or the link sent to a colleague, who
        # signs in) lands on the item, not the queue; back to the queue drops it
        assert second.url.endswith(f"#item={item_id}")  # type: ignore[attr-defined]
        await second.reload()  # type: ignore[attr-defined]
        await expect(second.locator("#item-view")).to_be_visible()  # type: ignore
        await expect(second.locator("#i-approvals")).to_contain_text(  # type: ignore
            "the first approval changed total to 121.00")
        # decided elsewhere (the command line) while this page still shows it pending: a
        # verdict from the page says what happened instead of asking for a claim
        await decide(review["fin-bob"], item_id, Verdict.VERDICT_APPROVE)
        await second.evaluate("document.activeElement && document.activeElement.blur()")  # type: ignore
        await second.keyboard.press("a")  # type: ignore[attr-defined]
        await expect(second.locator("#status")).to_have_text(  # type: ignore
            "This item is resolved (verdict:approve): there is nothing left to decide.")
        await second.click("#back")  # type: ignore[attr-defined]
        await expect(second.locator("#queue-view")).to_be_visible()  # type: ignore
        assert "#item=" not in second.url  # type: ignore[attr-defined]
    finally:
        await second.close()  # type: ignore[attr-defined]


# -- minimum necessary: discrepancies, revealed and withheld fields -------------------------

ADMISSION = ("Patient: Maria Lopez\nDate of birth: 1962-03-14\nMember ID: XJH-4471\n"
             "Diagnosis: Community acquired pneumonia\nAllergies: penicillin\nUnit: medical")


async def escalate_admission(db: asyncpg.Pool, producer: Producer, queue: str
                             ) -> tuple[Escalation, str]:
    """An insurance approval step's escalation: the payer disagrees on the date of birth and
    the coverage; the item reveals the name and member id, not the date of birth (for the
    test) nor the health fields."""
    async with db.acquire() as conn:
        (task,) = await insert_tasks(conn, "acme", 1, text=ADMISSION)
    esc = escalation(task, queue, 2, step_id="2-insurance_review",
                     instructions="Check the insurance of Maria Lopez",
                     reason=EscalationReason.ESCALATION_REASON_APPROVAL_STEP)
    classes = {"patient_name": DataClass.DATA_CLASS_PERSONAL,
               "date_of_birth": DataClass.DATA_CLASS_PERSONAL,
               "member_id": DataClass.DATA_CLASS_PERSONAL,
               "diagnosis": DataClass.DATA_CLASS_HEALTH,
               "allergies": DataClass.DATA_CLASS_HEALTH,
               "requested_unit": DataClass.DATA_CLASS_DERIVED}
    values = {"patient_name": "Maria Lopez", "date_of_birth": "1962-03-14",
              "member_id": "XJH-4471", "diagnosis": "Community acquired pneumonia",
              "allergies": "penicillin", "requested_unit": "medical"}
    esc.proposed_decision.fields.extend(
        FieldExtraction(name=name, value=values[name], confidence=0.9, data_class=cls)
        for name, cls in classes.items())
    esc.proposed_decision.revealed_fields.extend(["patient_name", "member_id"])
    esc.revealed_fields.extend(["patient_name", "member_id"])
    esc.discrepancies.extend([
        Discrepancy(field="date_of_birth", submitted="1962-03-14", found="1962-04-03",
                    source="payer", note="date of birth differs"),
        Discrepancy(field="member_id", submitted="XJH-4471", found="XJH-4417",
                    source="payer", note="member id on file differs"),
        Discrepancy(field="coverage_status", submitted="active", found="inactive",
                    source="payer", note="coverage ended 2026-01-31")])
    await producer.send(ESCALATIONS, esc.task_id, esc)
    item_id = await eventually(lambda: db.fetchval(
        "SELECT item_id::text FROM review_items WHERE escalation_id = $1 AND state = 'PENDING'",
        uuid.UUID(esc.escalation_id)), f"review item of {esc.task_id} pending")
    return esc, item_id


HIDDEN = ("Community acquired pneumonia", "penicillin", "1962-03-14", "1962-04-03")


async def test_reviewers_get_discrepancies_and_only_the_revealed_fields_everywhere(
        settings: Settings, db: asyncpg.Pool, producer: Producer,
        review: dict[str, ReviewServiceStub]) -> None:
    """gRPC GetItem, ListQueue and Claim and the console's REST API all hand out the item
    redacted: the health fields and the unrevealed date of birth withheld (in the fields, the
    document, the instructions and the discrepancies), the revealed name and member id as
    read, the other system's own status shown."""
    _, item_id = await escalate_admission(db, producer, "minimum-necessary")
    stub = review["plain"]
    got = await stub.GetItem(GetItemRequest(item_id=item_id))
    (listed_item,) = [i for i in (await stub.ListQueue(
        ListQueueRequest(queue="minimum-necessary"))).items if i.item_id == item_id]
    claimed = await stub.Claim(ClaimRequest(item_id=item_id))
    for shown in (got.item.escalation, listed_item.escalation, claimed.item.escalation):
        text = str(shown) + shown.task.document.body.decode()
        for secret in HIDDEN:
            assert secret not in text, secret
        fields = {f.name: f.value for f in shown.proposed_decision.fields}
        assert fields["diagnosis"] == "[DIAGNOSIS REDACTED]"
        assert fields["allergies"] == "[ALLERGIES REDACTED]"
        assert fields["date_of_birth"] == "[DATE_OF_BIRTH REDACTED]"
        assert (fields["patient_name"], fields["member_id"]) == ("Maria Lopez", "XJH-4471")
        body = shown.task.document.body.decode()
        assert "Diagnosis: [DIAGNOSIS REDACTED]" in body and "Patient: Maria Lopez" in body
        assert shown.instructions == "Check the insurance of Maria Lopez"
        assert [(d.field, d.submitted, d.found) for d in shown.discrepancies] == [
            ("date_of_birth", "[DATE_OF_BIRTH REDACTED]", "[DATE_OF_BIRTH REDACTED]"),
            ("member_id", "XJH-4471", "XJH-4417"), ("coverage_status", "active", "inactive")]
    status, data = await http(settings, "GET", f"/api/items/{item_id}", "plain")
    assert status == 200
    item = data["item"]
    assert not any(secret in str(item) for secret in HIDDEN)
    assert item["discrepancies"][0] == {  # type: ignore[index]
        "field": "date_of_birth", "submitted": "[DATE_OF_BIRTH REDACTED]",
        "found": "[DATE_OF_BIRTH REDACTED]", "source": "payer",
        "note": "date of birth differs", "withheld": True}
    assert item["revealed_fields"] == ["patient_name", "member_id"]  # type: ignore[index]
    withheld = {f["name"]: f["withheld"] for f in item["proposal"]["fields"]}  # type: ignore
    assert withheld["diagnosis"] and withheld["date_of_birth"]
    assert not withheld["patient_name"] and not withheld["requested_unit"]


async def test_console_shows_the_discrepancy_table_and_marks_withheld_fields(
        settings: Settings, db: asyncpg.Pool, producer: Producer, browser: object) -> None:
    _, item_id = await escalate_admission(db, producer, "console-discrepancies")
    expect.set_options(timeout=30_000)
    page = await browser.new_page(viewport={"width": 1280, "height": 900})  # type: ignore
    try:
        await page.goto(f"http://127.0.0.1:{settings.review_web_port}/")
        await page.fill("#api-key", "plain")
        await page.click("#login-form button[type=submit]")
        await page.fill("#f-queue", "console-discrepancies")
        await page.locator(f'#queue tbody tr[data-item-id="{item_id}"]').click()
        table = page.locator("#i-discrepancies")
        await expect(page.locator("#i-discrepancies-box")).to_be_visible()
        await expect(table.locator("thead th")).to_have_text(
            ["Field", "On the document", "Found", "Source", "Note"])
        rows = table.locator("tbody tr")
        await expect(rows).to_have_count(3)
        await expect(rows.nth(0).locator("td")).to_have_text(
            ["date_of_birth", "[DATE_OF_BIRTH REDACTED] withheld",
             "[DATE_OF_BIRTH REDACTED] withheld", "payer", "date of birth differs"])
        await expect(rows.nth(0).locator("td.withheld")).to_have_count(2)
        await expect(rows.nth(1).locator("td")).to_have_text(
            ["member_id", "XJH-4471", "XJH-4417", "payer", "member id on file differs"])
        await expect(rows.nth(1).locator("td.withheld")).to_have_count(0)
        await expect(rows.nth(2).locator("td")).to_have_text(
            ["coverage_status", "active", "inactive", "payer", "coverage ended 2026-01-31"])
        diagnosis = page.locator('#i-fields tr[data-field="diagnosis"] td').nth(1)
        await expect(diagnosis).to_have_text("[DIAGNOSIS REDACTED] withheld")
        await expect(diagnosis).to_have_class("withheld")
        name = page.locator('#i-fields tr[data-field="patient_name"] td').nth(1)
        await expect(name).to_have_text("Maria Lopez")
        await expect(page.locator("#i-document")).to_contain_text(
            "Diagnosis: [DIAGNOSIS REDACTED]")
        html = await page.content()
        for secret in HIDDEN:
            assert secret not in html, secret
        await page.screenshot(path=str(artifact("review-console-discrepancies.png")),
                              full_page=True)
    finally:
        await page.close()


async def test_field_edits_are_checked_against_the_fields_the_proposal_declares(
        db: asyncpg.Pool, producer: Producer, review: dict[str, ReviewServiceStub]) -> None:
    """An edit names a declared field, reads as its type (one of an enum's values), and
    changes no value the reviewer was not shown; each mistake is refused naming the field, and a good edit decides."""
    typed = [FieldExtraction(name="total", value="900.00", type="money",
                             data_class=DataClass.DATA_CLASS_DERIVED),
             FieldExtraction(name="due_date", value="", type="date",
                             data_class=DataClass.DATA_CLASS_DERIVED),
             FieldExtraction(name="vendor", value="Acme Ltd", type="string",
                             data_class=DataClass.DATA_CLASS_PERSONAL),
             FieldExtraction(name="terms", value="net30", type="enum",
                             data_class=DataClass.DATA_CLASS_DERIVED,
                             allowed_values=["net30", "net60"])]
    esc, item_id = await escalate(db, producer, "edits", fields=typed)
    stub = review["plain"]
    negative = ClaimRequest(item_id=item_id)
    negative.lease.FromTimedelta(timedelta(seconds=-5))
    with pytest.raises(grpc.aio.AioRpcError) as refused:  # (0 is the default lease)
        await stub.Claim(negative)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    await stub.Claim(ClaimRequest(item_id=item_id))
    for edits, why in (({"total": "abc"}, "'abc' is not an amount"),
                       ({"totl": "1.00"}, "not a field of this invoice; its fields: due_date, "
                                          "terms, total, vendor"),
                       ({"terms": "whenever"}, "'whenever' is not one of net30, net60"),
                       ({"due_date": "31/12/2026"}, "is not a date as YYYY-MM-DD"),
                       ({"vendor": "Someone Else Ltd"}, "withheld from this item's reviewers"),
                       ({"vendor": ""}, "cannot be edited or cleared"),
                       ({"extraction_confidence": "1"}, "not a field of this invoice")):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.SubmitVerdict(SubmitVerdictRequest(verdict=ReviewVerdict(
                item_id=item_id, verdict=Verdict.VERDICT_MODIFY, modified_fields=edits)))
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, edits
        (name,) = edits
        assert why in field_violations(refused.value)[f"verdict.modified_fields[{name!r}]"]
    done = await stub.SubmitVerdict(SubmitVerdictRequest(verdict=ReviewVerdict(
        item_id=item_id, verdict=Verdict.VERDICT_MODIFY,
        modified_fields={"total": "1,000.00", "due_date": "2026-12-31", "terms": "net60"})))
    (decision,) = await stored_decisions(db, esc)
    assert decision.decision_id == done.decision_id
    assert (decision.extracted_fields["total"], decision.extracted_fields["due_date"],
            decision.extracted_fields["terms"]) == ("1,000.00", "2026-12-31", "net60")
