"""`switchyard submit` and `switchyard tasks` against the real stack (the four services as
processes, API keys on), run as subprocesses the way a person runs them."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import grpc
import pytest

from switchyard import Settings
from switchyard.v1 import GetTaskRequest, IngestServiceStub, Task, TaskStatus, Verdict
from tests.cli.helpers import switchyard
from tests.document_samples import text_pdf
from tests.client.helpers import ACME_KEY, KEYS, OPS_KEY, review, sample
from tests.terminal import TERMINAL, TERMINAL_STATUSES

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("pipeline")]


@pytest.fixture(scope="module")
def settings(settings: Settings) -> Settings:
    return settings.replace(api_keys=KEYS, client_api_key=ACME_KEY)


@pytest.fixture
def ingest(settings: Settings) -> Iterator[IngestServiceStub]:
    with grpc.insecure_channel(f"127.0.0.1:{settings.ingest_grpc_port}") as channel:
        yield IngestServiceStub(channel)


def get(ingest: IngestServiceStub, task_id: str) -> Task:
    return ingest.GetTask(GetTaskRequest(task_id=task_id),
                          metadata=(("authorization", f"Bearer {ACME_KEY}"),)).task


def until(ingest: IngestServiceStub, task_id: str, statuses: set[int],
          timeout_s: float = 120) -> Task:
    deadline = time.monotonic() + timeout_s
    while (task := get(ingest, task_id)).status not in statuses:
        assert time.monotonic() < deadline, f"{task_id} stayed {task.status}"
        time.sleep(0.2)
    return task


def approve_whatever_is_escalated(settings: Settings, ingest: IngestServiceStub,
                                  task_ids: list[str]) -> None:
    """A reviewer approves each task that waits for one, until all are terminal."""
    done = set(TERMINAL_STATUSES)
    for task_id in task_ids:
        task = until(ingest, task_id, done | {TaskStatus.TASK_STATUS_BLOCKED})
        if task.status == TaskStatus.TASK_STATUS_BLOCKED:
            review(settings, task_id, Verdict.VERDICT_APPROVE)


def test_submit_waits_for_the_outcome_and_a_rerun_returns_the_same_tasks(
        settings: Settings, ingest: IngestServiceStub, tmp_path: Path) -> None:
    ticket = tmp_path / "ticket.txt"
    ticket.write_text(sample("support_ticket", 1))
    structured = tmp_path / "ticket.json"
    structured.write_text(json.dumps({"subject": "login", "text": sample("support_ticket", 2)}))

    first = switchyard(settings, "submit", str(ticket), str(structured), "--tenant", "acme",
                       "--kind", "support_ticket", "--json")
    assert first.returncode == 0, first.stderr
    submitted = json.loads(first.stdout)
    assert [r["file"] for r in submitted] == [str(ticket), str(structured)]
    assert all(r["created"] and r["error"] is None for r in submitted)
    ids = [r["task_id"] for r in submitted]
    assert len(set(ids)) == 2
    assert get(ingest, ids[1]).envelope.document.content_type == "application/json"
    assert get(ingest, ids[0]).envelope.document.filename == "ticket.txt"

    # a PDF goes as a PDF (the extension names the type; ingest checked the bytes)
    scan = tmp_path / "ticket.pdf"
    scan.write_bytes(text_pdf(("Support ticket: cannot log in", "Since this morning")))
    sent = switchyard(settings, "submit", str(scan), "--tenant", "acme", "--json")
    assert sent.returncode == 0, sent.stderr
    (pdf_task,) = json.loads(sent.stdout)
    assert get(ingest, pdf_task["task_id"]).envelope.document.content_type == "application/pdf"
    # a saved e-mail goes as one, and is stored as the text it is (it carries no file)
    message = EmailMessage()
    message["From"], message["Subject"] = "pat@example.com", "Cannot log in"
    message.set_content(sample("support_ticket", 3))
    mail = tmp_path / "request.eml"
    mail.write_bytes(bytes(message))
    sent = switchyard(settings, "submit", str(mail), "--tenant", "acme", "--json")
    assert sent.returncode == 0, sent.stderr
    (mail_task,) = json.loads(sent.stdout)
    envelope = get(ingest, mail_task["task_id"]).envelope
    assert envelope.document.content_type == "text/plain"
    assert envelope.document.body.decode().startswith("From: pat@example.com\n")
    assert envelope.metadata["email_subject"] == "Cannot log in"

    # the same command again, waiting: the same tasks (no duplicates), followed to the end
    command = [sys.executable, "-m", "switchyard", "submit", str(ticket), str(structured),
               "--tenant", "acme", "--kind", "support_ticket", "--wait", "--json"]
    with subprocess.Popen(command, env={**os.environ, **settings.to_env()},
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as waiting:
        reviewer = threading.Thread(target=approve_whatever_is_escalated,
                                    args=(settings, ingest, ids))
        reviewer.start()
        out, err = waiting.communicate(timeout=240)
        reviewer.join(timeout=120)
    waited = json.loads(out)
    assert [r["task_id"] for r in waited] == ids and not any(r["created"] for r in waited)
    for result in waited:
        assert result["status"] in TERMINAL, result
        assert TaskStatus.Value(f"TASK_STATUS_{result['status']}") == \
            get(ingest, result["task_id"]).status
    assert waited[0]["status"] == "SUCCEEDED", waited[0]
    all_succeeded = all(r["status"] == "SUCCEEDED" for r in waited)
    assert waiting.returncode == (0 if all_succeeded else 1), err

    # watching a finished task replays its history and ends at once
    watched = switchyard(settings, "tasks", "watch", ids[0], "--json")
    assert watched.returncode == 0, watched.stderr
    events = [json.loads(line) for line in watched.stdout.splitlines()]
    assert events[0]["status"] == "QUEUED" and events[-1]["status"] == "SUCCEEDED"
    assert [e["sequence"] for e in events] == sorted(e["sequence"] for e in events)

    # a person at a terminal: result lines on stdout, the progress bar on the terminal
    controller, terminal = pty.openpty()
    try:
        human = subprocess.run(
            [sys.executable, "-m", "switchyard", "submit", str(ticket), "--tenant", "acme",
             "--kind", "support_ticket"], env={**os.environ, **settings.to_env(),
                                              "TERM": "xterm"},
            stdout=subprocess.PIPE, stderr=terminal, text=True, timeout=120, check=False)
        os.close(terminal)
        drawn = b""
        while select.select([controller], [], [], 0.5)[0]:
            try:
                chunk = os.read(controller, 65536)
            except OSError:   # the terminal side is closed and drained
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        os.close(controller)
    assert human.returncode == 0 and human.stdout.strip() == \
        f"{ticket}: {ids[0]} existing SUCCEEDED", human.stdout
    assert b"submitting" in drawn, drawn


def test_tasks_get_list_cancel_watch_and_retry(settings: Settings, ingest: IngestServiceStub,
                                               tmp_path: Path) -> None:
    invoice = tmp_path / "invoice.txt"
    invoice.write_text(sample("invoice", 6))   # claimed to be an admission form: escalated
    done = switchyard(settings, "submit", str(invoice), "--tenant", "acme", "--kind",
                      "admission_form", "--json")
    assert done.returncode == 0, done.stderr
    task_id = json.loads(done.stdout)[0]["task_id"]
    until(ingest, task_id, {TaskStatus.TASK_STATUS_BLOCKED})

    got = switchyard(settings, "tasks", "get", task_id, "--json")
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["status"] == "BLOCKED"
    assert json.loads(got.stdout)["kind"] == "admission_form"
    listed = switchyard(settings, "tasks", "list", "--tenant", "acme", "--status", "blocked",
                        "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert task_id in {r["task_id"] for r in rows} and {r["status"] for r in rows} == {"BLOCKED"}
    table = switchyard(settings, "tasks", "list", "--tenant", "acme")
    assert table.returncode == 0 and task_id in table.stdout, table.stderr
    key = json.loads(got.stdout)["idempotency_key"]
    by_key = switchyard(settings, "tasks", "list", "--tenant", "acme", "--idempotency-key",
                        key, "--json")
    assert by_key.returncode == 0, by_key.stderr
    assert [r["task_id"] for r in json.loads(by_key.stdout)] == [task_id]
    # without --tenant: the key's own tenant (ingest reads an empty tenant as the caller's)
    own = switchyard(settings, "tasks", "list", "--status", "blocked", "--json")
    assert own.returncode == 0, own.stderr
    assert task_id in {r["task_id"] for r in json.loads(own.stdout)}
    # an operator key is bound to no tenant: the README's tenant, default
    ops = switchyard(settings, "tasks", "list", "--api-key", OPS_KEY)
    assert ops.returncode == 0 and "task(s) of default" in ops.stdout, ops.stderr

    refused = switchyard(settings, "tasks", "retry", task_id)   # not FAILED or CANCELLED
    assert refused.returncode == 1 and "FAILED_PRECONDITION" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
    wrong_key = switchyard(settings, "tasks", "get", task_id, "--api-key", "not-a-key")
    assert wrong_key.returncode == 1 and "UNAUTHENTICATED" in wrong_key.stderr

    waited = switchyard(settings, "submit", str(invoice), "--tenant", "acme", "--kind",
                        "admission_form", "--wait", "--timeout", "2", "--json")
    assert waited.returncode == 1, waited.stderr          # it waits for a person
    assert "not every task was terminal after 2 s: 1 still BLOCKED" in waited.stderr
    assert json.loads(waited.stdout)[0]["task_id"] == task_id
    # a task submitted now is QUEUED when accepted; at the timeout the line says where it is
    another = tmp_path / "another.txt"
    # (its own text: the file's content hash is its idempotency key)
    another.write_text(sample("invoice", 6) + f"\nReference: {uuid.uuid4().hex}\n")
    fresh = switchyard(settings, "submit", str(another), "--tenant", "acme", "--kind",
                       "admission_form", "--wait", "--timeout", "20")
    assert fresh.returncode == 1, fresh.stderr
    assert fresh.stdout.split()[2:4] == ["new", "BLOCKED"], fresh.stdout
    assert "1 still BLOCKED" in fresh.stderr, fresh.stderr

    cancelled = switchyard(settings, "tasks", "cancel", task_id, "--reason", "sent by mistake",
                           "--json")
    assert cancelled.returncode == 0, cancelled.stderr
    assert json.loads(cancelled.stdout)["status"] == "CANCELLED"
    watched = switchyard(settings, "tasks", "watch", task_id)
    assert watched.returncode == 1, watched.stderr        # it ended, but not SUCCEEDED
    assert watched.stdout.splitlines()[-1].split()[1] == "CANCELLED", watched.stdout

    retried = switchyard(settings, "tasks", "retry", task_id, "--json")
    assert retried.returncode == 0, retried.stderr
    new = json.loads(retried.stdout)
    assert new["created"] and new["task_id"] != task_id
    assert new["metadata"]["retry_of"] == task_id
    again = switchyard(settings, "tasks", "retry", task_id, "--json")
    assert (json.loads(again.stdout)["task_id"], json.loads(again.stdout)["created"]) == \
        (new["task_id"], False)
    # the retry is in the old task's timeline (once), and the new one says where it came from
    story = json.loads(switchyard(settings, "tasks", "timeline", task_id, "--json",
                                  "--api-key", OPS_KEY).stdout)["entries"]
    (retried_entry,) = [e for e in story if e["action"] == "task.retried"]
    assert retried_entry["detail"] == {"new_task_id": new["task_id"], "attempt": 1,
                                       "principal": "key-0"}
    table = switchyard(settings, "tasks", "timeline", task_id, "--api-key", OPS_KEY)
    assert f"retried by key-0 as task {new['task_id']} (attempt 1)" in \
        " ".join(table.stdout.split()), table.stdout
    story = json.loads(switchyard(settings, "tasks", "timeline", new["task_id"], "--json",
                                  "--api-key", OPS_KEY).stdout)["entries"]
    assert [e["detail"]["retry_of"] for e in story
            if e["action"] == "task.created_as_retry"] == [task_id]
    malformed = tmp_path / "broken.json"
    malformed.write_text('{"total": }')
    refused = switchyard(settings, "submit", str(malformed), str(invoice), "--tenant", "acme",
                         "--kind", "invoice", "--key-prefix", "other:", "--json")
    assert refused.returncode == 1, refused.stderr      # one file refused, the other accepted
    results = json.loads(refused.stdout)
    assert results[0]["task_id"] is None and "INVALID_ARGUMENT" in results[0]["error"]
    assert "document.body: malformed JSON" in results[0]["error"], results[0]
    assert results[1]["created"] and results[1]["task_id"] != task_id   # another prefix
    unknown = switchyard(settings, "tasks", "get", "00000000-0000-0000-0000-000000000000")
    assert unknown.returncode == 1 and "NOT_FOUND" in unknown.stderr, unknown.stderr


def lose_a_record(settings: Settings, text: str) -> str:
    """A task accepted and marked published whose record never reached the broker (a broker
    that lost it): nothing downstream will ever see it unless it is re-driven."""
    import asyncio
    import hashlib
    import uuid

    from services.ingest.store import accept
    from switchyard.storage import connect
    from switchyard.storage import codec_for
    from switchyard.v1 import Document, TaskEnvelope, TaskSource

    envelope = TaskEnvelope(task_id=str(uuid.uuid4()), tenant_id="acme",
                            idempotency_key=uuid.uuid4().hex, kind="support_ticket",
                            source=TaskSource.TASK_SOURCE_GRPC,
                            document=Document(content_type="text/plain", body=text.encode()))

    async def go() -> None:
        conn = await connect(settings)
        try:
            await accept(conn, envelope, hashlib.sha256(text.encode()).hexdigest(),
                         codec=codec_for(settings))
            await conn.execute("UPDATE tasks SET published_at = now() WHERE task_id = $1",
                               uuid.UUID(envelope.task_id))
        finally:
            await conn.close()
    asyncio.run(go())
    return envelope.task_id


def test_timeline_redrive_and_filters_through_the_pipeline(
        settings: Settings, ingest: IngestServiceStub, tmp_path: Path) -> None:
    """The operator's commands on tasks that went through decision, execution and review:
    the timeline shows each status change and the audit entries (the decision's models,
    pack and rule; executed steps; the reviewer's verdict); a task whose record was lost moves
    on once re-driven, and the re-drive is in its timeline; filters find tasks by kind and
    metadata."""
    ops = ("--api-key", OPS_KEY)
    ticket = tmp_path / "ticket.txt"
    ticket.write_text(sample("support_ticket", 3))
    invoice = tmp_path / "invoice.txt"
    invoice.write_text(sample("invoice", 7))   # claimed to be an admission form: escalated
    done = switchyard(settings, "submit", str(ticket), "--tenant", "acme", "--kind",
                      "support_ticket", "--metadata", "channel=console-test", "--json")
    assert done.returncode == 0, done.stderr
    auto_id = json.loads(done.stdout)[0]["task_id"]
    done = switchyard(settings, "submit", str(invoice), "--tenant", "acme", "--kind",
                      "admission_form", "--metadata", "channel=console-test", "--json")
    assert done.returncode == 0, done.stderr
    reviewed_id = json.loads(done.stdout)[0]["task_id"]
    assert until(ingest, auto_id, set(TERMINAL_STATUSES)).status == \
        TaskStatus.TASK_STATUS_SUCCEEDED
    until(ingest, reviewed_id, {TaskStatus.TASK_STATUS_BLOCKED})
    review(settings, reviewed_id, Verdict.VERDICT_APPROVE)
    until(ingest, reviewed_id, set(TERMINAL_STATUSES))

    shown = switchyard(settings, "tasks", "timeline", auto_id, "--json", *ops)
    assert shown.returncode == 0, shown.stderr
    story = json.loads(shown.stdout)
    assert story["task"]["task_id"] == auto_id
    entries = story["entries"]
    assert [e["occurred_at"] for e in entries] == sorted(e["occurred_at"] for e in entries)
    statuses = [e["status"] for e in entries if e["source"] == "status"]
    assert statuses[0] == "QUEUED" and statuses[-1] == "SUCCEEDED", statuses
    assert {e["actor"] for e in entries if e["source"] == "status"} >= {"ingest", "decision"}
    (decided,) = [e for e in entries if e["action"] == "decision.made"]
    detail = decided["detail"]
    assert decided["actor"] == "decision" and decided["entry_hash"]
    assert detail["pack"] == "support_ticket" and detail["pack_version"] and detail["rule"]
    assert {(m["name"], m["version"]) for m in detail["models"]} >= {
        ("document_router", "1.0.0")}
    assert any(e["action"] == "step.executed" and e["actor"] == "executor" for e in entries)
    # Struct numbers come back as floats: whole ones are shown as the integers recorded
    steps = [e for e in entries if e["action"] == "step.executed"]
    assert all(type(e["detail"]["attempts"]) is int for e in steps), steps
    table = switchyard(settings, "tasks", "timeline", auto_id, *ops)
    assert table.returncode == 0 and "decision.made" in table.stdout, table.stderr
    # the table shows ingest's one-line summary: outcome, rule, pack and models are visible
    flat = " ".join(table.stdout.replace("│", " ").split())
    assert f"by rule {detail['rule']} (pack support_ticket {detail['pack_version']})" in flat, \
        table.stdout
    assert "models document_router 1.0.0 (" in flat, table.stdout
    assert "succeeded after" in flat or "skipped" in flat, table.stdout
    assert "\u2192 SUCCEEDED" in flat, table.stdout

    reviewed = json.loads(switchyard(settings, "tasks", "timeline", reviewed_id, "--json",
                                     *ops).stdout)["entries"]
    verdicts = [e for e in reviewed if e["action"] == "review.verdict"]
    assert verdicts and verdicts[0]["actor"].startswith("reviewer:")
    moves = [e["status"] for e in reviewed if e["source"] == "status"]
    assert moves[:2] == ["QUEUED", "BLOCKED"] and moves[-1] in TERMINAL, moves
    assert [e["action"] for e in reviewed].index("review.verdict") > \
        [e["status"] for e in reviewed].index("BLOCKED")

    # a submitter's key may not read the timeline (admins and auditors)
    refused = switchyard(settings, "tasks", "timeline", auto_id)
    assert refused.returncode == 1 and "PERMISSION_DENIED" in refused.stderr, refused.stderr

    # filters: by kind and metadata
    listed = switchyard(settings, "tasks", "list", "--tenant", "acme", "--kind",
                        "admission_form", "--meta", "channel=console-test", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [r["task_id"] for r in json.loads(listed.stdout)] == [reviewed_id]
    both = switchyard(settings, "tasks", "list", "--tenant", "acme", "--kind", "support_ticket",
                      "--kind", "admission_form", "--meta", "channel=console-test", "--json")
    assert {r["task_id"] for r in json.loads(both.stdout)} == {auto_id, reviewed_id}
    bad = switchyard(settings, "tasks", "list", "--tenant", "acme", "--meta", "novalue")
    assert bad.returncode == 2 and "KEY=VALUE" in bad.stderr, bad.stderr

    # a lost record: the task sits QUEUED until an admin re-drives it, then it moves on
    lost_id = lose_a_record(settings, sample("support_ticket", 4))
    assert get(ingest, lost_id).status == TaskStatus.TASK_STATUS_QUEUED
    refused = switchyard(settings, "tasks", "redrive", lost_id, "--reason", "lost")
    assert refused.returncode == 1 and "PERMISSION_DENIED" in refused.stderr, refused.stderr
    redriven = switchyard(settings, "tasks", "redrive", lost_id, "--reason",
                          "record lost in the broker outage", "--json", *ops)
    assert redriven.returncode == 0, redriven.stderr
    assert json.loads(redriven.stdout)["task_id"] == lost_id
    assert until(ingest, lost_id, set(TERMINAL_STATUSES)).status == \
        TaskStatus.TASK_STATUS_SUCCEEDED
    story = json.loads(switchyard(settings, "tasks", "timeline", lost_id, "--json",
                                  *ops).stdout)["entries"]
    actions = [e["action"] for e in story]
    assert "task.redriven" in actions and "decision.made" in actions
    assert actions.index("task.redriven") < actions.index("decision.made")
    (entry,) = [e for e in story if e["action"] == "task.redriven"]
    assert entry["actor"] == "key-2"   # the ops key's id (third in SWITCHYARD_API_KEYS)
    assert "broker outage" not in json.dumps(entry)   # the reason is kept as a hash
    again = switchyard(settings, "tasks", "redrive", lost_id, *ops)
    assert again.returncode == 1 and "FAILED_PRECONDITION" in again.stderr, again.stderr

    health = switchyard(settings, "models", "health", "--tenant", "acme", "--json", *ops)
    assert health.returncode == 0, health.stderr
    assert json.loads(health.stdout)["shadow"], health.stdout   # the router's shadow ran
    assert isinstance(json.loads(health.stdout)["human"], list), health.stdout
    human = switchyard(settings, "models", "health", "--tenant", "acme", *ops)
    assert human.returncode == 0 and "shadow agreement" in human.stdout, human.stderr
    assert "agreement with reviewers" in human.stdout, human.stdout
    too_fine = switchyard(settings, "models", "health", "--tenant", "acme", "--bucket", "0.5",
                          *ops)
    assert too_fine.returncode == 1 and "bucket" in too_fine.stderr, too_fine.stderr
