"""The engagement model's data, features and training, without a server: the shipped windows
reproduce, their labels follow the rubric, the groups differ in nuisance habits, training goes
through SubjectWindow and is deterministic, and `python -m services.decision.training
--if-missing` builds (only) what is missing."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from services.decision.engagement.features import FEATURE_NAMES, SubjectWindow
from services.decision.training import datagen, engagement, engagement_data, train
from services.decision.training.__main__ import main as cli

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "models" / "data"
ROWS = datagen.read_jsonl(DATA / engagement_data.DATA_FILE)


def test_shipped_windows_match_sha256sums_and_regenerate_byte_for_byte() -> None:
    train.verify_data(DATA)
    entry = json.loads((DATA / "manifest.json").read_text())["files"][engagement_data.DATA_FILE]
    blob = datagen.jsonl_bytes(engagement_data.simulate_windows(entry["rows"], entry["seed"]))
    assert hashlib.sha256(blob).hexdigest() == entry["sha256"] == datagen.sha256_file(
        DATA / engagement_data.DATA_FILE)
    assert cli(["--check-data"]) == 0


def test_labels_follow_the_rubric_with_observer_noise() -> None:
    clean = [r for r in ROWS if not r["label_noise"]]
    o = [r["observed"] for r in clean]
    by_rubric = np.array([engagement_data.rubric_engaged(r["counts"]["window_seconds"], x["present"],
                                                         x["on_task"], x["hand_raised"],
                                                         x["leaning_forward"]) for r, x in zip(clean, o)])
    labels = np.array([r["label"] for r in clean])
    agree = float((by_rubric == labels).mean())
    assert 0.9 < agree < 1.0   # the rest is each observer's own on-task line
    flips = np.mean([r["label_noise"] for r in ROWS])
    assert 0.03 < flips < 0.05
    assert {r["group"] for r in ROWS} == set(engagement_data.GROUPS)
    assert {r["counts"]["window_seconds"] for r in ROWS} == set(engagement_data.WINDOW_SECONDS)


def test_hand_written_edge_cases_carry_the_rubrics_label() -> None:
    for case in engagement_data.EDGE_CASES:
        c = case["counts"]   # what the camera saw, taken as what the observer saw
        assert engagement_data.rubric_engaged(c["window_seconds"], c["present"], c["face_forward"],
                                              c["hand_raised"], c["leaning_forward"]) == bool(
            case["label"]), case["case"]


def test_groups_differ_in_nuisance_habits_not_in_the_rubric() -> None:
    X = engagement.feature_matrix(ROWS)
    g = np.array([r["group"] for r in ROWS])
    y = np.array([r["label"] for r in ROWS])
    col = {n: X[:, i] for i, n in enumerate(FEATURE_NAMES)}
    engaged = y == 1
    # b slouches whatever it does; c writes notes head down while engaged
    # (the shipped data: slouched 0.58 vs 0.15; head down 0.35 vs 0.18)
    assert col["slouched_share"][engaged & (g == "b")].mean() > 3 * col["slouched_share"][engaged & (g == "a")].mean()
    assert col["head_down_share"][engaged & (g == "c")].mean() > 1.5 * col["head_down_share"][engaged & (g == "a")].mean()
    # the engaged shares differ by less than 0.1 across groups
    rates = [y[g == k].mean() for k in engagement_data.GROUPS]
    assert max(rates) - min(rates) < 0.1


def test_training_matrix_is_subject_window_vector() -> None:
    rows = ROWS[:50]
    X = engagement.feature_matrix(rows)
    for r, x in zip(rows, X):
        want = np.asarray(SubjectWindow.from_counts(r["counts"]).vector(r["audio_level"]), np.float32)
        assert np.array_equal(x, want)


def test_training_is_deterministic_and_the_card_reproduces(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for repo in (a, b):
        data = tmp_path / f"data-{repo.name}"
        data.mkdir()
        for name in ("SHA256SUMS", "manifest.json", engagement_data.DATA_FILE):
            shutil.copyfile(DATA / name, data / name)
        engagement.train(data, repo, 0.35, log=lambda *_: None)
    va, vb = (r / "engagement" / "1" for r in (a, b))
    assert (va / "weights.npz").read_bytes() == (vb / "weights.npz").read_bytes()
    assert (va / "model_card.json").read_text() == (vb / "model_card.json").read_text()
    card = json.loads((va / "model_card.json").read_text())
    assert (va / "model.py").read_bytes() == (ROOT / "models/repository/engagement/1/model.py").read_bytes()
    heldout = datagen.read_jsonl(tmp_path / "data-a" / engagement.HELDOUT_FILE)
    p = engagement.p_engaged(engagement.feature_matrix(heldout), engagement.load_params(va))
    y = np.array([r["label"] for r in heldout], float)
    assert len(heldout) == card["split"]["test"]
    assert round(float(((p >= 0.5) == (y > 0.5)).mean()), 6) == card["metrics"]["test"]["accuracy"]
    assert round(float(((p - y) ** 2).mean()), 6) == card["metrics"]["test"]["brier"]
    f = engagement.fairness(p, y, [r["group"] for r in heldout], 0.35)
    assert f == card["fairness"]["test"]
    assert card["metrics"]["test"]["auc"] > 0.9
    assert card["training_data"]["sha256"] == datagen.sha256_file(DATA / engagement_data.DATA_FILE)
    assert card["feature_names"] == list(FEATURE_NAMES)
    md = (va / "MODEL_CARD.md").read_text()
    assert f"{card['fairness']['test']['demographic_parity_difference']:.4f}" in md


def test_if_missing_builds_the_engagement_model_alone(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """A copy of the repository `make setup` trained, without its engagement model: the router,
    invoice_risk and text_encoder are current, so --if-missing trains the engagement model and
    nothing else, then has nothing to do, then rebuilds it alone when its weights go."""
    data, repo = tmp_path / "data", tmp_path / "repository"
    shutil.copytree(DATA, data)
    shutil.copytree(ROOT / "models" / "repository", repo,
                    ignore=shutil.ignore_patterns("engagement"))
    args = ["--data-dir", str(data), "--repository", str(repo), "--no-stored-packs", "--if-missing"]
    assert cli(args) == 0
    first = capsys.readouterr().out
    assert "[train] engagement 1.0.0: holdout acc" in first
    # the one reason given is the engagement model's; the others were up to date: not retrained
    assert [line for line in first.splitlines() if "(re)training" in line] == [
        f"[train] (re)training: {repo / 'engagement' / '1' / 'weights.npz'} missing"], first
    assert "document_router" not in first and "text_encoder" not in first, first
    assert (repo / "engagement" / "config.pbtxt").is_file()  # a loadable model directory
    assert engagement.status(data, repo) is None
    assert cli(args) == 0
    assert "models up to date" in capsys.readouterr().out
    (repo / "engagement" / "1" / "weights.npz").unlink()
    assert cli(args) == 0
    again = capsys.readouterr().out
    assert "engagement/1/weights.npz missing" in again
    assert "document_router" not in again
    assert engagement.status(data, repo) is None


def test_the_docs_figures_are_the_ones_training_prints(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for name in ("SHA256SUMS", "manifest.json", engagement_data.DATA_FILE):
        shutil.copyfile(DATA / name, data / name)
    printed: list[str] = []
    card = engagement.train(data, tmp_path / "repository", 0.35, log=printed.append)
    doc = (ROOT / "docs" / "engagement-model.md").read_text()
    block = doc.split("<!-- card:start -->")[1].split("<!-- card:end -->")[0]
    assert printed == [engagement.summary(card)]
    assert f"```\n{printed[0]}\n```" in block
    card_lines = set(engagement.card_md(card).splitlines())
    table_rows = [line for line in block.splitlines() if line.startswith("|")]
    assert len(table_rows) >= 20
    assert [row for row in table_rows if row not in card_lines] == []
    assert f"{card['split']['test']} windows" in doc
    assert f"{len(engagement_data.EDGE_CASES)} hand-written" in doc


def test_promote_and_status_exit_codes_without_a_candidate_or_triton(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from switchyard.cli import main as switchyard
    from switchyard.stack import free_port

    monkeypatch.setenv("SWITCHYARD_TRITON_URL", f"127.0.0.1:{free_port()}")
    repo = tmp_path / "repository"
    engagement.ensure_model_files(repo)
    (tmp_path / "empty").mkdir()
    assert switchyard(["models", "promote", "engagement", "--candidate", str(tmp_path / "empty"),
                       "--repository", str(repo)]) == 2
    assert "weights.npz missing" in capsys.readouterr().err
    assert switchyard(["models", "status", "--repository", str(repo)]) == 3
    out = capsys.readouterr().out
    assert "unreachable" in out and out.splitlines()[-1].split() == ["engagement", "?", "1", "-"]
