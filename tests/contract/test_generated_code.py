"""The contract stays the contract: lint-clean protos and generated code in sync with them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import switchyard.v1 as v1
from switchyard._tools import protogen

ROOT = Path(__file__).resolve().parents[2]


def _buf() -> str:
    candidate = Path(sys.executable).parent / "buf"
    found = str(candidate) if candidate.exists() else shutil.which("buf")
    assert found, "buf not found: it comes with the dev extras (buf-bin); run `make setup`"
    return found


def test_generated_code_is_not_stale() -> None:
    stale = protogen.stale_files()
    assert not stale, f"generated code is stale, run `make proto`: {stale}"
    stale_client = protogen.stale_client_files()
    assert not stale_client, f"the client SDK's copy is stale, run `make proto`: {stale_client}"


def test_staleness_check_covers_the_client_copy(tmp_path: Path) -> None:
    copy = tmp_path / "_v1"
    shutil.copytree(ROOT / "client" / "switchyard_client" / "_v1", copy)
    target = copy / "ingest_service_pb2_grpc.py"
    target.write_text(target.read_text() + "\n# hand edit\n")
    (copy / "task_pb2.pyi").unlink()
    assert protogen.stale_client_files(copy) == ["ingest_service_pb2_grpc.py", "task_pb2.pyi"]


def test_staleness_check_detects_an_edited_file(tmp_path: Path) -> None:
    copy = tmp_path / "v1"
    shutil.copytree(ROOT / "switchyard" / "v1", copy)
    target = copy / "task_pb2.py"
    target.write_text(target.read_text() + "\n# hand edit\n")
    (copy / "leftover_pb2.py").write_text("")
    assert protogen.stale_files(copy) == ["leftover_pb2.py", "task_pb2.py"]


@pytest.mark.parametrize("command", [["lint"], ["build"], ["format", "--diff", "--exit-code"]])
def test_buf(command: list[str]) -> None:
    result = subprocess.run([_buf(), *command, "protos"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


BASELINE = ROOT / "protos" / "baseline" / "switchyard-v1.binpb"


def _breaking(protos: Path) -> subprocess.CompletedProcess[str]:
    """``buf breaking`` (the FILE rules in protos/buf.yaml) of ``protos`` against the committed
    image of the released v1 contract (``make proto-baseline`` rebuilds it at a release)."""
    return subprocess.run([_buf(), "breaking", str(protos), "--against", str(BASELINE)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_the_contract_is_compatible_with_the_released_v1() -> None:
    assert BASELINE.is_file(), "no baseline image: run `make proto-baseline` at a release"
    result = _breaking(ROOT / "protos")
    assert result.returncode == 0, result.stdout + result.stderr


def test_buf_breaking_catches_a_removed_field(tmp_path: Path) -> None:
    copy = tmp_path / "protos"
    shutil.copytree(ROOT / "protos", copy, ignore=shutil.ignore_patterns("baseline"))
    task = copy / "switchyard" / "v1" / "task.proto"
    field = "  string filename = 3;\n"
    text = task.read_text()
    assert field in text
    task.write_text(text.replace(field, ""))
    result = _breaking(copy)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert 'field "3" with name "filename" on message "Document" was deleted' in output, output


def test_every_service_is_versioned_and_exported() -> None:
    services = {
        service.full_name
        for module in (v1.ingest_service_pb2, v1.decision_service_pb2, v1.review_service_pb2,
                       v1.executor_service_pb2, v1.pack_service_pb2,
                       v1.dead_letter_service_pb2)
        for service in module.DESCRIPTOR.services_by_name.values()
    }
    assert services == {"switchyard.v1.IngestService", "switchyard.v1.DecisionService",
                        "switchyard.v1.ReviewService", "switchyard.v1.ExecutorAdminService",
                        "switchyard.v1.ExecutorService", "switchyard.v1.PackService",
                        "switchyard.v1.DeadLetterService"}
    for name in ("IngestServiceStub", "add_ReviewServiceServicer_to_server", "TaskEnvelope",
                 "TaskStatus", "DeadLetter", "DeadLetterServiceStub"):
        assert name in v1.__all__


def test_envelope_round_trip() -> None:
    envelope = v1.TaskEnvelope(
        task_id="t-1", tenant_id="acme", kind="invoice",
        document=v1.Document(content_type="text/plain", body="Rechnung Nr. 7 – €12".encode()),
        metadata={"po": "4471"}, source=v1.TaskSource.TASK_SOURCE_GRPC,
    )
    parsed = v1.TaskEnvelope.FromString(envelope.SerializeToString())
    assert parsed == envelope
    assert parsed.document.body.decode() == "Rechnung Nr. 7 – €12"
