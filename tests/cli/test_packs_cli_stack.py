"""`switchyard packs` against the real stack (PackService on the decision service, API keys
on), run as subprocesses the way a person runs them: the tutorial's pack is validated,
applied, listed, shown, diffed and tested through the real engine and Triton; tenant
settings are applied and diffed; mistakes come back one line each."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from switchyard import Settings
from tests.cli.helpers import switchyard

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("pipeline")]

ROOT = Path(__file__).resolve().parents[2]
EXPENSES = ROOT / "docs" / "examples" / "expense_claim"
ADMIN, SUBMITTER, OPS = "acme-admin-key", "acme-key", "ops-key"


@pytest.fixture(scope="module")
def settings(settings: Settings) -> Settings:
    return settings.replace(api_keys=f"{ADMIN}:acme:admin,{SUBMITTER}:acme:submitter,"
                                     f"{OPS}:*:admin", client_api_key=ADMIN)


def packs(settings: Settings, *args: str) -> object:
    return switchyard(settings, "packs", *args)


def test_a_pack_is_applied_listed_shown_diffed_and_tested(settings: Settings,
                                                          tmp_path: Path) -> None:
    first = packs(settings, "apply", str(EXPENSES))
    assert first.returncode == 0, first.stderr
    assert "expense_claim 1.0.0 for acme: applied" in first.stdout
    again = packs(settings, "apply", str(EXPENSES), "--json")
    assert again.returncode == 0, again.stderr
    [applied] = json.loads(again.stdout)
    assert applied["changed"] is False and applied["tenant_id"] == "acme"

    listed = packs(settings, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    mine = [p for p in json.loads(listed.stdout) if p["name"] == "expense_claim"]
    assert [(p["version"], p["tenant_id"], p["enabled"]) for p in mine] == [("1.0.0", "acme", True)]
    assert any(p["tenant_id"] == "" for p in json.loads(listed.stdout))  # the shipped ones

    shown = packs(settings, "show", "expense_claim")
    assert shown.returncode == 0, shown.stderr
    assert "files:       examples.jsonl, pack.yaml, tests.yaml\n" in shown.stdout
    assert shown.stdout.split("--- pack.yaml\n", 1)[1] == (EXPENSES / "pack.yaml").read_text()

    same = packs(settings, "diff", str(EXPENSES))
    assert same.returncode == 0 and "no differences" in same.stdout, same.stderr
    changed = tmp_path / "expense_claim"
    shutil.copytree(EXPENSES, changed)
    text = (changed / "pack.yaml").read_text()
    (changed / "pack.yaml").write_text(text.replace("default: 5000", "default: 3000"))
    diff = packs(settings, "diff", str(changed))
    assert diff.returncode == 1, diff.stderr
    assert "--- stored/expense_claim@1.0.0/pack.yaml" in diff.stdout
    assert "-    default: 5000\n+    default: 3000\n" in diff.stdout

    tested = packs(settings, "test", str(EXPENSES))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert tested.stdout.count("PASS ") == 5 and "5 passed, 0 failed" in tested.stdout
    by_name = packs(settings, "test", "expense_claim", "--json")
    assert by_name.returncode == 0, by_name.stderr
    assert all(c["passed"] for c in json.loads(by_name.stdout)["cases"])

    # a golden case that does not hold: expected against actual, exit 1
    tests = (changed / "tests.yaml").read_text()
    (changed / "tests.yaml").write_text(tests.replace(
        "expect: {outcome: reject, rule: amount_over_reject_limit}\n- name: a tenant's",
        "expect: {outcome: auto_execute, rule: straight_through}\n- name: a tenant's"))
    failing = packs(settings, "test", str(changed))
    assert failing.returncode == 1, failing.stdout + failing.stderr
    assert "FAIL a claim above the reject limit is rejected" in failing.stdout
    assert "! outcome: expected auto_execute, got reject" in failing.stdout
    assert "4 passed, 1 failed" in failing.stdout


def test_tenant_settings_are_applied_and_diffed(settings: Settings, tmp_path: Path) -> None:
    assert packs(settings, "apply", str(EXPENSES)).returncode == 0
    document = tmp_path / "acme.yaml"
    document.write_text("packs:\n  expense_claim:\n    parameters: {reject_over: 800}\n")
    applied = packs(settings, "apply", str(document), "--tenant", "acme")
    assert applied.returncode == 0, applied.stderr
    assert "tenant settings of acme: version" in applied.stdout and "applied" in applied.stdout
    same = packs(settings, "diff", str(document), "--tenant", "acme")
    assert same.returncode == 0 and "no differences" in same.stdout, same.stdout + same.stderr
    other = tmp_path / "other.yaml"
    other.write_text("packs:\n  expense_claim:\n    parameters: {reject_over: 900}\n")
    diff = packs(settings, "diff", str(other), "--tenant", "acme")
    assert diff.returncode == 1
    assert "-    parameters: {reject_over: 800}\n+    parameters: {reject_over: 900}" in diff.stdout

    bad = tmp_path / "bad.yaml"
    bad.write_text("packs:\n  expense_claim:\n    parameters: {reject_ovr: 800, "
                   "approval_over: -5}\n  no_such_pack: {enabled: true}\n")
    refused = packs(settings, "apply", str(bad))
    assert refused.returncode == 1, refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert lines[0].startswith(f"switchyard packs apply: {bad}: INVALID_ARGUMENT")
    problems = [line.strip() for line in lines[1:]]
    assert any("reject_ovr" in p for p in problems), problems
    assert any("approval_over" in p for p in problems), problems
    assert any("no_such_pack" in p for p in problems), problems
    assert "Traceback" not in refused.stderr


def test_an_invalid_pack_is_refused_one_line_per_mistake(settings: Settings,
                                                         tmp_path: Path) -> None:
    pack = tmp_path / "expense_claim"
    shutil.copytree(EXPENSES, pack)
    text = (pack / "pack.yaml").read_text().replace("version: 1.0.0", "version: 1.0.1")
    text = text.replace("max_attempts: 4", "max_attempts: 0").replace("sla: 24h", "sla: soon")
    (pack / "pack.yaml").write_text(text)
    refused = packs(settings, "apply", str(pack))
    assert refused.returncode == 1, refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert "INVALID_ARGUMENT" in lines[0]
    assert [line.strip().split(": ")[:2] for line in lines[1:]] == [
        ["pack.yaml", "plan[0].retry.max_attempts"], ["pack.yaml", "plan[1].approval.sla"]]


def test_the_decision_service_validates_remotely(settings: Settings, tmp_path: Path) -> None:
    valid = packs(settings, "validate", "--remote", str(EXPENSES))
    assert valid.returncode == 0, valid.stderr
    assert valid.stdout == (f"{EXPENSES}: valid: expense_claim 1.0.0 (checked by the decision "
                            "service)\n")
    pack = tmp_path / "expense_claim"
    shutil.copytree(EXPENSES, pack)
    (pack / "pack.yaml").write_text((pack / "pack.yaml").read_text().replace(
        "sla: 24h", "sla: soon"))
    invalid = packs(settings, "validate", "--remote", str(pack), "--json")
    assert invalid.returncode == 1, invalid.stderr
    [report] = json.loads(invalid.stdout)
    assert not report["valid"] and len(report["problems"]) == 1
    assert report["problems"][0].startswith(f"{pack}/pack.yaml: plan[1].approval.sla: ")


def test_a_submitter_cannot_apply(settings: Settings) -> None:
    refused = switchyard(settings.replace(client_api_key=SUBMITTER), "packs", "apply",
                         str(EXPENSES))
    assert refused.returncode == 1, refused.stderr
    assert "PERMISSION_DENIED" in refused.stderr and "Traceback" not in refused.stderr
