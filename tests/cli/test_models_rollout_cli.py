"""`switchyard models shadow|canary|promote MODEL|rollback|rollouts` and the rollouts section
of `models status`, without a stack: input checks (exit 2, one line, nothing sent), an
unreachable decision service (exit 3; `status` carries on), the table and JSON renderings of
hand-made ModelRollout messages, the requests sent (to an in-process fake DecisionService),
and `models promote engagement --candidate DIR` still being the engagement gate."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from rich.console import Console

from switchyard import v1
from switchyard._grpc import FieldViolation, bad_request, status_details
from switchyard._rollouts_cli import describe, render_rollouts, rollout_json
from switchyard.cli import main as switchyard_main
from switchyard.stack import free_port
from tests.cli.helpers import switchyard

SHADOW, CANARY, NONE = (v1.RolloutStage.ROLLOUT_STAGE_SHADOW, v1.RolloutStage.ROLLOUT_STAGE_CANARY,
                        v1.RolloutStage.ROLLOUT_STAGE_NONE)


def _canary() -> Any:
    r = v1.ModelRollout(model_name="document_router", live_version="1", candidate_version="3",
                        stage=CANARY, canary_share=0.1, tenants=["acme"], updated_by="key-admin",
                        note="first canary",
                        live=v1.RolloutEvidence(decisions=200, escalated=20, errors=0, judged=10,
                                                agreed=9),
                        candidate=v1.RolloutEvidence(decisions=40, escalated=2, errors=1,
                                                     judged=4, agreed=3))
    r.started_at.FromJsonString("2025-03-01T10:00:00Z")
    r.updated_at.FromJsonString("2025-03-02T11:30:00Z")
    return r


def _shadow() -> Any:
    return v1.ModelRollout(model_name="invoice_risk", live_version="2", candidate_version="5",
                           stage=SHADOW)


def _settled() -> Any:
    return v1.ModelRollout(model_name="po_match", live_version="4", stage=NONE,
                           updated_by="rollout-judge",
                           note="rolled back: escalation 31% > 20%")


# --- input checks: exit 2, one line, before any connection ---------------------------------


@pytest.mark.parametrize(("args", "expected"), [
    (("canary", "document_router", "--version", "3", "--share", "0.7"), "--share: '0.7'"),
    (("canary", "document_router", "--version", "3", "--share", "0"), "--share: '0'"),
    (("canary", "document_router", "--version", "3", "--share", "-0.1"), "--share: '-0.1'"),
    (("canary", "document_router", "--version", "3", "--share", "ten"), "--share: 'ten'"),
    (("canary", "document_router", "--version", "3", "--share", "nan"), "--share: 'nan'"),
    (("canary", "document_router", "--version", "3", "--share", "0.1", "--tenants", " , "),
     "--tenants: name at least one tenant"),
    (("canary", "document_router", "--version", "v3", "--share", "0.1"), "--version: 'v3'"),
    (("shadow", "document_router", "--version", "3.0"), "--version: '3.0'"),
    (("shadow", "document_router", "--version", "-1"), "--version: '-1'"),
    (("shadow", " ", "--version", "3"), "MODEL: give the model's name"),
    (("rollback", ""), "MODEL: give the model's name"),
    (("promote", "engagement"), "promote engagement needs --candidate DIR"),
    (("promote", "document_router", "--candidate", "/tmp"),
     "--candidate DIR is for the engagement model only"),
])
def test_bad_input_is_exit_2_in_one_line_before_connecting(
        args: tuple[str, ...], expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    # nothing listens there: a call would be exit 3, so exit 2 means nothing was tried
    target = f"127.0.0.1:{free_port()}"
    assert switchyard_main(["models", *args, "--target", target, "--connect-timeout", "0.2"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"switchyard models {args[0]}: ") and expected in err, err


@pytest.mark.parametrize("args", [
    ("shadow", "document_router"),                        # no --version
    ("canary", "document_router", "--version", "3"),      # no --share
    ("canary", "--version", "3", "--share", "0.1"),       # no MODEL
])
def test_a_missing_required_option_is_an_argparse_usage_error(
        args: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        switchyard_main(["models", *args])
    assert exited.value.code == 2
    assert "required" in capsys.readouterr().err


def test_an_unreachable_decision_service_is_exit_3_in_one_line() -> None:
    target = f"127.0.0.1:{free_port()}"
    for args in (("shadow", "document_router", "--version", "3"),
                 ("canary", "document_router", "--version", "3", "--share", "0.1",
                  "--tenants", "acme"),
                 ("promote", "document_router", "--reason", "good"),
                 ("rollback", "document_router"), ("rollouts",), ("rollouts", "--json")):
        done = switchyard(None, "models", *args, "--target", target, "--connect-timeout", "0.2")
        assert done.returncode == 3, (args, done.stderr)
        assert done.stdout == "" and "Traceback" not in done.stderr
        assert done.stderr.strip() == (f"switchyard models {args[0]}: cannot connect to {target} "
                                       "(no answer within 0.2 s)"), done.stderr


# --- rendering -----------------------------------------------------------------------------


def test_each_state_is_described_in_one_line() -> None:
    assert describe(_canary()) == ("document_router: version 3 canary on 10% of acme's tasks "
                                   "(live 1)")
    both = _canary()
    both.tenants.append("globex")
    both.canary_share = 0.125
    assert describe(both) == ("document_router: version 3 canary on 12.5% of acme's and "
                              "globex's tasks (live 1)")
    del both.tenants[:]
    assert describe(both).endswith("on 12.5% of every tenant's tasks (live 1)")
    assert describe(_shadow()) == ("invoice_risk: version 5 shadows live 2 (compared on sampled "
                                   "tasks, never acted on)")
    assert describe(_settled()) == "po_match: version 4 live, no candidate"


def test_rollouts_as_json() -> None:
    canary = rollout_json(_canary())
    assert canary == {
        "model": "document_router", "live_version": "1", "candidate_version": "3",
        "stage": "CANARY", "canary_share": 0.1, "tenants": ["acme"],
        "started_at": "2025-03-01T10:00:00Z", "updated_at": "2025-03-02T11:30:00Z",
        "updated_by": "key-admin", "note": "first canary",
        "live": {"decisions": 200, "escalated": 20, "errors": 0, "judged": 10, "agreed": 9},
        "candidate": {"decisions": 40, "escalated": 2, "errors": 1, "judged": 4, "agreed": 3}}
    settled = rollout_json(_settled())
    assert settled["stage"] == "NONE" and settled["started_at"] is None
    assert settled["candidate_version"] == "" and settled["tenants"] == []
    json.dumps([canary, settled])   # serialisable as it is


def test_rollouts_as_tables() -> None:
    console = Console(width=250, record=True)
    render_rollouts([rollout_json(r) for r in (_canary(), _shadow(), _settled())], console)
    text = console.export_text()
    first, second = text.split("since the rollout started")
    header = next(line for line in first.splitlines() if "model" in line)
    for column in ("live", "candidate", "stage", "share", "tenants", "since (UTC)", "by", "note"):
        assert column in header, header
    cells = [c.strip() for c in next(line for line in first.splitlines()
                                     if "document_router" in line).split("│")[1:-1]]
    assert cells == ["document_router", "1", "3", "canary", "10%", "acme",
                     "2025-03-01T10:00:00Z", "key-admin", "first canary"]
    cells = [c.strip() for c in next(line for line in first.splitlines()
                                     if "invoice_risk" in line).split("│")[1:-1]]
    assert cells[:6] == ["invoice_risk", "2", "5", "shadow", "-", "-"]
    assert "rolled back: escalation 31% > 20%" in first and "rollout-judge" in first
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in second.splitlines()
            if line.startswith("│") and "model" not in line]
    assert rows[0] == ["document_router", "live 1", "200", "10.0%", "0", "10", "90.0%"]
    assert rows[1] == ["document_router", "candidate 3", "40", "5.0%", "1", "4", "75.0%"]
    assert rows[2] == ["invoice_risk", "live 2", "0", "-", "0", "0", "-"]
    assert rows[3] == ["invoice_risk", "candidate 5", "0", "-", "0", "0", "-"]
    assert rows[4] == ["po_match", "live 4", "0", "-", "0", "0", "-"]   # no candidate row
    assert len(rows) == 5


# --- the calls, against an in-process fake DecisionService --------------------------------


class _FakeDecision(v1.DecisionServiceServicer):
    def __init__(self) -> None:
        self.requests: list[Any] = []
        self.metadata: list[dict[str, str]] = []

    def _seen(self, request: Any, context: Any) -> None:
        self.requests.append(request)
        self.metadata.append(dict(context.invocation_metadata()))

    def ListRollouts(self, request: Any, context: Any) -> Any:
        self._seen(request, context)
        return v1.ListRolloutsResponse(rollouts=[_canary(), _settled()])

    def StartRollout(self, request: Any, context: Any) -> Any:
        self._seen(request, context)
        if request.candidate_version == "1":
            context.set_trailing_metadata(status_details(
                grpc.StatusCode.INVALID_ARGUMENT, "invalid request", bad_request(
                    [FieldViolation("candidate_version", "1 is the live version")])))
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "invalid request")
        return v1.StartRolloutResponse(rollout=v1.ModelRollout(
            model_name=request.model_name, live_version="1",
            candidate_version=request.candidate_version, stage=request.stage,
            canary_share=request.canary_share, tenants=request.tenants))

    def PromoteModel(self, request: Any, context: Any) -> Any:
        self._seen(request, context)
        if request.model_name == "nobody":
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "nobody has no candidate")
        return v1.PromoteModelResponse(rollout=v1.ModelRollout(
            model_name=request.model_name, live_version="3", stage=NONE, note=request.reason))

    def RollbackModel(self, request: Any, context: Any) -> Any:
        self._seen(request, context)
        return v1.RollbackModelResponse(rollout=v1.ModelRollout(
            model_name=request.model_name, live_version="1", stage=NONE, note=request.reason))


@pytest.fixture
def decision() -> Iterator[tuple[_FakeDecision, str]]:
    fake = _FakeDecision()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    v1.add_DecisionServiceServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield fake, f"127.0.0.1:{port}"
    finally:
        server.stop(None)


def test_each_command_sends_its_request_and_prints_the_new_state(
        decision: tuple[_FakeDecision, str], capsys: pytest.CaptureFixture[str]) -> None:
    fake, target = decision
    client = ["--target", target, "--api-key", "sekret"]

    def run(*args: str) -> str:
        assert switchyard_main(["models", *args, *client]) == 0
        out, err = capsys.readouterr()
        assert err == "", err
        return out

    assert run("shadow", "document_router", "--version", "3") == (
        "document_router: version 3 shadows live 1 (compared on sampled tasks, never acted "
        "on)\n")
    assert fake.requests[-1] == v1.StartRolloutRequest(
        model_name="document_router", candidate_version="3", stage=SHADOW)
    assert fake.metadata[-1]["authorization"] == "Bearer sekret"
    assert run("canary", "document_router", "--version", "3", "--share", "0.1",
               "--tenants", "acme, globex,acme") == (
        "document_router: version 3 canary on 10% of acme's and globex's tasks (live 1)\n")
    assert fake.requests[-1] == v1.StartRolloutRequest(
        model_name="document_router", candidate_version="3", stage=CANARY, canary_share=0.1,
        tenants=["acme", "globex"])
    assert run("promote", "document_router", "--reason", "agrees with reviewers") == (
        "document_router: version 3 live, no candidate (promoted)\n")
    assert fake.requests[-1] == v1.PromoteModelRequest(model_name="document_router",
                                                       reason="agrees with reviewers")
    assert run("rollback", "document_router") == (
        "document_router: version 1 live, no candidate (candidate rolled back)\n")
    assert fake.requests[-1] == v1.RollbackModelRequest(model_name="document_router")
    listed = json.loads(run("rollouts", "--json"))
    assert listed == {"rollouts": [rollout_json(_canary()), rollout_json(_settled())]}
    table = run("rollouts")
    assert "document_router" in table and "first canary" in table and "po_match" in table
    promoted = json.loads(run("promote", "document_router", "--json"))
    assert promoted["live_version"] == "3" and promoted["stage"] == "NONE"


def test_a_refusal_is_exit_1_in_one_line_with_the_field(
        decision: tuple[_FakeDecision, str], capsys: pytest.CaptureFixture[str]) -> None:
    _, target = decision
    assert switchyard_main(["models", "shadow", "document_router", "--version", "1",
                            "--target", target]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err == ("switchyard models shadow: INVALID_ARGUMENT: invalid request; "
                                 "candidate_version: 1 is the live version\n")
    assert switchyard_main(["models", "promote", "nobody", "--target", target]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err == ("switchyard models promote: FAILED_PRECONDITION: nobody has "
                                 "no candidate\n")


# --- models status: the rollouts section ---------------------------------------------------


@pytest.fixture
def repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from services.decision.training import engagement

    monkeypatch.setenv("SWITCHYARD_TRITON_URL", f"127.0.0.1:{free_port()}")   # Triton down
    repo = tmp_path / "repository"
    engagement.ensure_model_files(repo)
    return repo


def test_status_says_in_one_line_that_the_rollouts_are_unknown_and_exits_as_before(
        repository: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = f"127.0.0.1:{free_port()}"
    client = ["--repository", str(repository), "--target", target, "--connect-timeout", "0.2"]
    assert switchyard_main(["models", "status", *client]) == 3   # Triton's exit code
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == f"rollouts unknown: decision service: cannot connect to {target} (no " \
                       "answer within 0.2 s)"
    assert [line for line in lines if "rollouts" in line] == [lines[1]]
    assert lines[-1].split() == ["engagement", "?", "1", "-"]
    assert switchyard_main(["models", "status", "--json", *client]) == 0
    state = json.loads(capsys.readouterr().out)
    assert state["rollouts"] is None and target in state["rollouts_error"]
    assert state["models"]["engagement"]["serving"] is None


def test_status_prints_the_rollouts(repository: Path, decision: tuple[_FakeDecision, str],
                                    capsys: pytest.CaptureFixture[str]) -> None:
    fake, target = decision
    client = ["--repository", str(repository), "--target", target, "--api-key", "auditor-key"]
    assert switchyard_main(["models", "status", *client]) == 3
    out = capsys.readouterr().out
    assert "rollouts unknown" not in out and "first canary" in out and "po_match" in out
    assert fake.requests == [v1.ListRolloutsRequest()]
    assert fake.metadata[0]["authorization"] == "Bearer auditor-key"
    assert switchyard_main(["models", "status", "--json", *client]) == 0
    state = json.loads(capsys.readouterr().out)
    assert state["rollouts"] == [rollout_json(_canary()), rollout_json(_settled())]
    assert state["rollouts_error"] is None


# --- promote engagement --candidate DIR: still the file-based gate -------------------------


def test_promote_engagement_with_a_candidate_is_still_the_gate(
        tmp_path: Path, repository: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import switchyard._rollouts_cli as rollouts_cli
    from services.decision.training import models_cli

    def no_rpc(*_: Any) -> int:
        raise AssertionError("promote engagement went to DecisionService")

    monkeypatch.setattr(rollouts_cli, "run", no_rpc)
    (tmp_path / "empty").mkdir()
    assert switchyard_main(["models", "promote", "engagement", "--candidate",
                            str(tmp_path / "empty"), "--repository", str(repository)]) == 2
    assert "weights.npz missing" in capsys.readouterr().err
    reached: list[Any] = []
    monkeypatch.setattr(models_cli, "_promote",
                        lambda args, settings: reached.append(args) or 0)
    assert switchyard_main(["models", "promote", "engagement", "--candidate", "somewhere",
                            "--repository", str(repository), "--no-load"]) == 0
    assert [(a.model, str(a.candidate), a.no_load) for a in reached] == [
        ("engagement", "somewhere", True)]


async def test_status_asks_for_rollouts_from_inside_a_running_event_loop() -> None:
    import argparse

    from switchyard import Settings
    from switchyard._rollouts_cli import fetch_rollouts

    target = f"127.0.0.1:{free_port()}"
    args = argparse.Namespace(target=target, api_key=None, connect_timeout=0.2)
    assert fetch_rollouts(args, Settings.from_env()) == (
        None, f"decision service: cannot connect to {target} (no answer within 0.2 s)")
