"""`switchyard packs` without a stack: validate and schema (offline), the diff and test-result
renderings, and the client errors (unreadable folders, an unreachable target)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from switchyard._packs_cli import render_diff, render_test_results
from switchyard.packs import pack_schema, tenant_settings_schema
from switchyard.stack import free_port
from tests.cli.helpers import switchyard

ROOT = Path(__file__).resolve().parents[2]
EXPENSES = ROOT / "docs" / "examples" / "expense_claim"


def test_the_tutorials_pack_is_valid() -> None:
    done = switchyard(None, "packs", "validate", str(EXPENSES))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{EXPENSES}: valid: expense_claim 1.0.0 ("), done.stdout
    assert "5 golden cases" in done.stdout and "90 examples" in done.stdout
    assert "look-alikes" not in done.stdout   # it has none


def test_a_packs_look_alikes_are_counted(tmp_path: Path) -> None:
    pack = tmp_path / "expense_claim"
    shutil.copytree(EXPENSES, pack)
    (pack / "look_alikes.jsonl").write_text(
        '{"text": "PURCHASE ORDER 7\\nTotal: 40 EUR"}\n{"text": "Timesheet, week 12"}\n')
    done = switchyard(None, "packs", "validate", str(pack))
    assert done.returncode == 0, done.stderr
    assert "90 examples, 2 look-alikes, 5 golden cases" in done.stdout, done.stdout


def test_every_mistake_is_one_line_naming_the_file_and_path(tmp_path: Path) -> None:
    pack = tmp_path / "expense_claim"
    shutil.copytree(EXPENSES, pack)
    original = (pack / "pack.yaml").read_text()
    # structure (the JSON Schema): every error at once
    text = original.replace("version: 1.0.0", "version: one")
    (pack / "pack.yaml").write_text(text.replace("max_attempts: 4", "max_attempts: 0"))
    done = switchyard(None, "packs", "validate", str(pack))
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert any(line.startswith(f"{pack}/pack.yaml: version: \"one\": ") for line in lines), lines
    assert any(line.startswith(f"{pack}/pack.yaml: plan[0].retry.max_attempts: 0: ")
               for line in lines), lines
    assert len(lines) == 2, lines
    # meaning (CEL over declared names)
    (pack / "pack.yaml").write_text(original.replace(
        "when: fields.amount > params.reject_over",
        "when: fields.amount > params.no_such_parameter"))
    done = switchyard(None, "packs", "validate", str(pack))
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "no_such_parameter" in lines[0], lines
    assert lines[0].startswith(f"{pack}/pack.yaml: decision.rules[3].when: "), lines


def test_validate_json_reports_each_folder(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "pack.yaml").write_text("pack: [unclosed\n")
    done = switchyard(None, "packs", "validate", str(EXPENSES), str(bad), "--json")
    assert done.returncode == 1, done.stderr
    good_report, bad_report = json.loads(done.stdout)
    assert good_report["valid"] and good_report["pack"]["name"] == "expense_claim"
    assert good_report["pack"]["tests"] == 5 and good_report["problems"] == []
    assert not bad_report["valid"] and bad_report["pack"] is None
    assert len(bad_report["problems"]) == 1 and bad_report["problems"][0].startswith(
        f"{bad}/pack.yaml: ")


def test_a_folder_that_is_no_pack_is_a_usage_error(tmp_path: Path) -> None:
    done = switchyard(None, "packs", "validate", str(tmp_path / "missing"))
    assert done.returncode == 2 and "not a folder" in done.stderr, done.stderr
    done = switchyard(None, "packs", "validate", str(tmp_path))
    assert done.returncode == 2 and "no pack.yaml" in done.stderr, done.stderr
    # apply reads every path before it connects: nothing listens on this port
    done = switchyard(None, "packs", "apply", str(EXPENSES), str(tmp_path),
                      "--target", f"127.0.0.1:{free_port()}")
    assert done.returncode == 2 and "no pack.yaml" in done.stderr, done.stderr


def test_schema_prints_the_json_schemas() -> None:
    done = switchyard(None, "packs", "schema")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == pack_schema()
    done = switchyard(None, "packs", "schema", "--tenant-settings")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == tenant_settings_schema()


def test_an_unreachable_target_is_exit_3_without_a_traceback(tmp_path: Path) -> None:
    settings_file = tmp_path / "settings.yaml"
    settings_file.write_text("packs: {expense_claim: {enabled: true}}\n")
    target = f"127.0.0.1:{free_port()}"
    for args in (("list",), ("show", "expense_claim"), ("apply", str(EXPENSES)),
                 ("apply", str(settings_file)), ("diff", str(EXPENSES)),
                 ("test", str(EXPENSES)), ("test", "expense_claim")):
        done = switchyard(None, "packs", *args, "--target", target, "--connect-timeout", "0.2")
        assert done.returncode == 3, (args, done.stderr)
        assert "Traceback" not in done.stderr and target in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_unusable_client_tls_files_are_a_usage_error(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHYARD_CLIENT_TLS_CA_FILE", str(tmp_path / "missing-ca.pem"))
    done = switchyard(None, "packs", "list", "--target", f"127.0.0.1:{free_port()}")
    assert done.returncode == 2 and "client TLS" in done.stderr, done.stderr


def test_the_diff_is_unified_file_by_file() -> None:
    stored = {"pack.yaml": b"pack: x\nversion: 1.0.0\n", "old.jsonl": b'{"text": "a"}\n',
              "same.yaml": b"- 1\n"}
    local = {"pack.yaml": b"pack: x\nversion: 1.1.0\n", "new.yaml": b"- 2", "same.yaml": b"- 1\n"}
    text = render_diff(stored, local, "stored/x@1.0.0", "work/x")
    assert text == (
        "--- /dev/null\n+++ work/x/new.yaml\n@@ -0,0 +1 @@\n+- 2\n"
        "\\ No newline at end of file\n"
        "--- stored/x@1.0.0/old.jsonl\n+++ /dev/null\n@@ -1 +0,0 @@\n-{\"text\": \"a\"}\n"
        "--- stored/x@1.0.0/pack.yaml\n+++ work/x/pack.yaml\n@@ -1,2 +1,2 @@\n pack: x\n"
        "-version: 1.0.0\n+version: 1.1.0\n")
    assert render_diff(stored, dict(stored), "a", "b") == ""
    assert "Binary files" in render_diff({"w.bin": b"\xff\x00"}, {"w.bin": b"\xfe"}, "a", "b")


def test_test_results_show_expected_against_actual() -> None:
    text = render_test_results({
        "pack": {"name": "expense_claim", "version": "1.0.0"},
        "cases": [
            {"name": "small", "passed": True, "expected_outcome": "auto_execute",
             "actual_outcome": "auto_execute", "expected_rule": "straight_through",
             "actual_rule": "straight_through", "expected_fields": {"amount": "42.50"},
             "actual_fields": {"amount": "42.50", "employee": "Ann Lee"}, "mismatches": [],
             "explanation": "ok"},
            {"name": "big", "passed": False, "expected_outcome": "reject",
             "actual_outcome": "auto_execute", "expected_rule": "",
             "actual_rule": "straight_through", "expected_fields": {"currency": "USD"},
             "actual_fields": {}, "mismatches": ["outcome: expected reject, got auto_execute"],
             "explanation": "Claim of 9200.0 USD"}]})
    lines = text.splitlines()
    assert lines[0] == "expense_claim 1.0.0: 2 golden case(s)"
    assert lines[1] == "PASS small"
    assert any("outcome" in x and "auto_execute" in x and "=" in x for x in lines[2:5])
    fail = lines.index("FAIL big")
    rest = "\n".join(lines[fail:])
    assert "expected reject" in rest and "! actual auto_execute" in rest
    assert "fields.currency" in rest and "(absent)" in rest
    assert not any(x.strip().startswith("rule") for x in lines[fail:])  # none expected
    assert "! outcome: expected reject, got auto_execute" in rest
    assert "explanation: Claim of 9200.0 USD" in rest
    assert lines[-1] == "1 passed, 1 failed"
