"""The review verbs over the REST gateway, against the four services as real processes: a
task submitted over REST escalates, and a reviewer lists, claims and decides it over REST
(the gateway forwards to ReviewService with the reviewer's key), renewing and releasing
the lease on the way."""

from __future__ import annotations

import base64
import json
from typing import Any

import aiohttp
import pytest

from switchyard import Settings
from tests.polling import eventually

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("pipeline")]

SUBMITTER = {"Authorization": "Bearer acme-sub"}
REVIEWER = {"Authorization": "Bearer acme-rev"}
OTHER_REVIEWER = {"Authorization": "Bearer globex-rev"}
INVOICE = ("INVOICE No. 4471\nBill to: Acme Ltd\nAmount due: EUR 1,250.00\nDue date: "
           "2026-12-01\nPO number: PO-7781\nRemit to IBAN on file")


@pytest.fixture(scope="module")
def settings(settings: Settings) -> Settings:
    return settings.replace(api_keys="acme-sub:acme:submitter,acme-rev:acme:reviewer,"
                                     "globex-rev:globex:reviewer")


async def test_a_reviewer_lists_claims_and_decides_over_rest(settings: Settings) -> None:
    base = f"http://127.0.0.1:{settings.ingest_rest_port}"
    async with aiohttp.ClientSession() as session:

        async def call(method: str, path: str, headers: dict[str, str],
                       body: Any = None) -> tuple[int, Any]:
            async with session.request(method, base + path, headers=headers,
                                       json=body) as response:
                return response.status, json.loads(await response.text() or "null")

        status, created = await call("POST", "/v1/tasks", SUBMITTER, {"submission": {
            "tenantId": "acme", "idempotencyKey": "rest-review-1", "kind": "invoice",
            "document": {"contentType": "text/plain", "filename": "acme-4471.txt",
                         "body": base64.b64encode(INVOICE.encode()).decode()},
            "metadata": {"buyer": "jane.doe@acme.example"}}})
        assert status == 200, created
        task_id = created["taskId"]
        # reviewers read documents through the review API, redacted: the task API gives them
        # the task without the document's bytes, file name or metadata (the submitter gets all)
        status, own = await call("GET", f"/v1/tasks/{task_id}", SUBMITTER)
        assert status == 200 and own["task"]["envelope"]["document"]["body"], own
        assert own["task"]["envelope"]["metadata"] == {"buyer": "jane.doe@acme.example"}
        status, shown = await call("GET", f"/v1/tasks/{task_id}", REVIEWER)
        assert status == 200 and shown["task"]["status"], shown
        document = shown["task"]["envelope"]["document"]
        assert document["contentType"] == "text/plain" and not {"body", "filename", "blob"} \
            & set(document), document
        assert not shown["task"]["envelope"].get("metadata"), shown
        status, listed = await call("GET", "/v1/tasks?page_size=500", REVIEWER)
        assert status == 200, listed
        (mine,) = [t for t in listed["tasks"] if t["envelope"]["taskId"] == task_id]
        assert "body" not in mine["envelope"]["document"] and "jane.doe" not in json.dumps(listed)

        async def item_of_task() -> dict[str, Any] | None:
            status, page = await call("GET", "/v1/review/items?page_size=500", REVIEWER)
            assert status == 200, page
            return next((i for i in page.get("items", [])
                         if i["escalation"]["taskId"] == task_id), None)
        item = await eventually(item_of_task, "the task to reach review", 180, 0.5)
        item_id = item["itemId"]

        status, problem = await call("GET", f"/v1/review/items/{item_id}", OTHER_REVIEWER)
        assert status == 404, problem  # another tenant's item is absent
        status, claimed = await call("POST", f"/v1/review/items/{item_id}/claim", REVIEWER, {})
        assert status == 200, claimed
        assert claimed["item"]["state"] == "REVIEW_STATE_CLAIMED"
        # the lease is extended, the item given back and claimed again, all over REST
        status, renewed = await call("POST", f"/v1/review/items/{item_id}/renew", REVIEWER,
                                     {"lease": "600s"})
        assert status == 200, renewed
        assert renewed["item"]["leaseExpiresAt"] > claimed["item"]["leaseExpiresAt"]
        status, released = await call("POST", f"/v1/review/items/{item_id}/release",
                                      REVIEWER, {})
        assert status == 200 and released["item"]["state"] == "REVIEW_STATE_PENDING", released
        status, problem = await call("POST", f"/v1/review/items/{item_id}/verdict", REVIEWER,
                                     {"verdict": 9})
        assert status == 422 and "verdict.verdict" in json.dumps(problem), problem
        # a body of the wrong shape is told what JSON it sent, not a Python type name
        status, problem = await call("POST", f"/v1/review/items/{item_id}/verdict", REVIEWER,
                                     {"verdict": {"verdict": "VERDICT_APPROVE"}})
        assert 400 <= status < 500, problem
        assert "an object is not a value this field takes" in json.dumps(problem), problem
        assert "unhashable" not in json.dumps(problem), problem
        status, claimed = await call("POST", f"/v1/review/items/{item_id}/claim", REVIEWER, {})
        assert status == 200, claimed
        # an approval with edits: the review service puts them to the invoice pack's rules
        # in the decision service with this reviewer's key (a refusal there would be a 403)
        status, decided = await call("POST", f"/v1/review/items/{item_id}/verdict", REVIEWER,
                                     {"verdict": "VERDICT_MODIFY", "reason": "looks right",
                                      "modifiedFields": {"invoice_number": "4471-A"}})
        assert status == 200, decided
        assert decided["item"]["state"] == "REVIEW_STATE_RESOLVED"
        assert decided["decisionId"]
        status, problem = await call("POST", f"/v1/review/items/{item_id}/verdict", REVIEWER,
                                     {"verdict": "VERDICT_APPROVE"})
        assert status >= 400 and problem["grpc_status"], problem
