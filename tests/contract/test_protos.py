"""The generator behind the contract: deterministic, honest about staleness, complete exports.

The basic contract checks (generated code not stale, ``buf lint`` / ``buf build`` /
``buf format``, services under ``switchyard.v1``, a TaskEnvelope round trip) live in
``test_generated_code.py``; this file covers the generator itself and the richer messages.
"""

from __future__ import annotations

import filecmp
import os
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from google.protobuf import json_format

import switchyard.v1 as v1
from switchyard._tools import protogen

ROOT = Path(__file__).resolve().parents[2]


def _protos_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "protos"
    shutil.copytree(ROOT / "protos", copy)
    return copy


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "switchyard._tools.protogen", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_check_names_files_after_a_proto_edit_with_the_old_code_imported(
        tmp_path: Path) -> None:
    # switchyard.v1 is imported (module level above): the check must still compare, not crash
    # on the descriptor pool's "duplicate file name".
    protos = _protos_copy(tmp_path)
    task_proto = protos / "switchyard" / "v1" / "task.proto"
    task_proto.write_text(task_proto.read_text().replace(
        "message Task {", "message Task {\n  string added_for_test = 99;", 1))
    assert protogen.stale_files(proto_root=protos) == ["task_pb2.py", "task_pb2.pyi"]

    task_proto.write_text(task_proto.read_text() + "\n// A new message.\nmessage AddedForTest {}\n")
    assert protogen.stale_files(proto_root=protos) == ["__init__.py", "task_pb2.py",
                                                      "task_pb2.pyi"]


def test_generation_is_deterministic(tmp_path: Path) -> None:
    first = protogen.generate(tmp_path / "a")
    second = protogen.generate(tmp_path / "b")
    names = sorted(p.name for p in first.iterdir())
    assert names == sorted(p.name for p in second.iterdir())
    match, mismatch, errors = filecmp.cmpfiles(first, second, names, shallow=False)
    assert not mismatch and not errors
    for path in first.iterdir():  # nothing machine-specific leaks into the output
        assert str(tmp_path) not in path.read_text(errors="replace"), path.name
        assert str(ROOT) not in path.read_text(errors="replace"), path.name


def test_regeneration_syncs_and_leaves_unchanged_files_alone(tmp_path: Path) -> None:
    package = protogen.generate(tmp_path)
    (package / "leftover_pb2.py").write_text("")
    edited = package / "task_pb2.py"
    edited.write_text("# hand edit\n")
    untouched = package / "review_pb2.py"
    os.utime(untouched, ns=(1_000_000_000, 1_000_000_000))

    protogen.generate(tmp_path)
    assert not (package / "leftover_pb2.py").exists()
    assert edited.read_bytes() == (ROOT / "switchyard" / "v1" / "task_pb2.py").read_bytes()
    assert untouched.stat().st_mtime_ns == 1_000_000_000


def test_cli_generates_and_checks_an_out_dir(tmp_path: Path) -> None:
    generated = _cli("--out", str(tmp_path))
    assert generated.returncode == 0, generated.stderr
    assert (tmp_path / "switchyard" / "v1" / "__init__.py").exists()
    assert _cli("--check", "--out", str(tmp_path)).returncode == 0

    target = tmp_path / "switchyard" / "v1" / "decision_pb2.pyi"
    target.write_text(target.read_text() + "# hand edit\n")
    (tmp_path / "switchyard" / "v1" / "task_pb2_grpc.py").unlink()
    checked = _cli("--check", "--out", str(tmp_path))
    assert checked.returncode == 1
    assert "decision_pb2.pyi, task_pb2_grpc.py" in checked.stderr


def test_package_exports_every_message_enum_and_service_class() -> None:
    modules = [getattr(v1, name) for name in dir(v1) if name.endswith("_pb2")]
    assert {m.__name__.rsplit(".", 1)[1] for m in modules} == {
        p.stem for p in (ROOT / "switchyard" / "v1").glob("*_pb2.py")}
    expected: set[str] = set()
    for module in modules:
        file = module.DESCRIPTOR
        assert file.package == "switchyard.v1"
        expected.update(file.message_types_by_name, file.enum_types_by_name)
        for service in file.services_by_name:
            expected.update({f"{service}Stub", f"{service}Servicer",
                             f"add_{service}Servicer_to_server"})
    assert set(v1.__all__) == expected
    assert len(v1.__all__) == len(set(v1.__all__))
    for name in v1.__all__:
        assert getattr(v1, name) is not None


def test_enum_zero_values_are_unspecified() -> None:
    for module in (getattr(v1, name) for name in dir(v1) if name.endswith("_pb2")):
        for enum in module.DESCRIPTOR.enum_types_by_name.values():
            assert enum.values_by_number[0].name.endswith("_UNSPECIFIED"), enum.full_name


def _decision() -> v1.Decision:
    step = v1.ActionStep(
        step_id="s1", name="post invoice", connector=v1.Connector.CONNECTOR_HTTP,
        target="erp.invoices", operation="create_invoice", max_attempts=3,
        compensation=v1.CompensationStep(name="void invoice", connector=v1.Connector.CONNECTOR_HTTP,
                                         target="erp.invoices", operation="DELETE"),
    )
    step.payload.update({"invoice_number": "R-7", "total": 12.5, "lines": [{"sku": "a"}]})
    step.timeout.FromTimedelta(timedelta(seconds=2))
    decision = v1.Decision(
        decision_id="d-1", task_id="t-1", tenant_id="acme",
        outcome=v1.DecisionOutcome.DECISION_OUTCOME_AUTO_EXECUTE,
        models=[v1.ModelOutput(model_name="document_router", model_version="1", label="invoice",
                               confidence=0.97, scores={"invoice": 0.97, "other": 0.03})],
        confidence=0.97, rule="confident_route", plan=v1.ActionPlan(steps=[step]),
        source=v1.DecisionSource.DECISION_SOURCE_MODEL, label="invoice",
        fields=[v1.FieldExtraction(name="invoice_number", value="R-7", confidence=0.9)],
        extracted_fields={"invoice_number": "R-7"},
    )
    decision.decided_at.GetCurrentTime()
    return decision


def test_decision_round_trips_through_bytes_and_json() -> None:
    decision = _decision()
    assert v1.Decision.FromString(decision.SerializeToString()) == decision
    assert json_format.Parse(json_format.MessageToJson(decision), v1.Decision()) == decision
    payload = decision.plan.steps[0].payload
    assert payload["lines"][0]["sku"] == "a" and payload["total"] == 12.5


def test_escalation_and_task_carry_nested_messages() -> None:
    envelope = v1.TaskEnvelope(task_id="t-1", tenant_id="acme", kind="invoice",
                               document=v1.Document(content_type="application/json",
                                                    body=b'{"n": 1}', filename="a.json"),
                               source=v1.TaskSource.TASK_SOURCE_KAFKA_INTAKE)
    escalation = v1.Escalation(
        escalation_id="e-1", task_id="t-1", tenant_id="acme", queue="invoices",
        priority=v1.ReviewPriority.REVIEW_PRIORITY_P1,
        reason=v1.EscalationReason.ESCALATION_REASON_LOW_CONFIDENCE,
        proposed_decision=_decision(), task=envelope,
    )
    item = v1.ReviewItem(item_id="i-1", escalation=escalation,
                         state=v1.ReviewState.REVIEW_STATE_PENDING)
    assert v1.ReviewItem.FromString(item.SerializeToString()) == item

    task = v1.Task(envelope=envelope, status=v1.TaskStatus.TASK_STATUS_BLOCKED,
                   stage=v1.TaskStage.TASK_STAGE_AWAITING_REVIEW,
                   latest_decision=v1.DecisionSummary(
                       decision_id="d-1", outcome=v1.DecisionOutcome.DECISION_OUTCOME_ESCALATE,
                       source=v1.DecisionSource.DECISION_SOURCE_MODEL, rule="low_confidence"))
    assert v1.Task.FromString(task.SerializeToString()) == task


def test_task_latest_decision_is_deprecated_because_nothing_sets_it() -> None:
    """Ingest never fills Task.latest_decision (it does not learn every decision); the field
    stays for wire compatibility, marked deprecated so generated clients say so."""
    field = v1.Task.DESCRIPTOR.fields_by_name["latest_decision"]
    assert field.number == 8 and field.GetOptions().deprecated
    proto = (ROOT / "protos/switchyard/v1/task.proto").read_text()
    assert "Deprecated: never set." in proto


def test_bulk_result_and_dead_letter_shapes() -> None:
    refused = v1.SubmitTasksResult(error=v1.ItemError(
        code=3, message="invalid submission",
        field_violations=[v1.FieldViolation(field="document.body", description="required")]))
    assert not refused.HasField("accepted") and refused.HasField("error")
    letter = v1.DeadLetter(source_topic="intake", partition=2, offset=41,
                           original_value=b"\xff not json", original_headers={"h": "v"},
                           reason_code="malformed_json")
    assert v1.DeadLetter.FromString(letter.SerializeToString()).original_value == b"\xff not json"
