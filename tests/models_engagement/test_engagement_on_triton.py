"""The engagement model in a real Triton: it gives the probabilities training computed (1e-5)
for the same windows built by SubjectWindow, answers concurrent requests in dynamic batches, and
the promotion gate refuses an unfair candidate and installs and loads a fair one, into both
Triton pools (the primary and the spill-over serve the same versions)."""

from __future__ import annotations

import asyncio
import json
import random
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as triton

from services.decision.training import datagen, engagement, engagement_data
from services.decision.pools import new_breaker
from services.decision.triton import ScorerClient
from switchyard import Settings
from switchyard.cli import main as switchyard
from switchyard.stack import EmbeddedStack, with_free_ports

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "models" / "data"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EmbeddedStack, Path, Path]]:
    """Triton on a repository holding only the engagement model, version 1 trained from the
    shipped windows (as `python -m services.decision.training` does), and a spill-over Triton
    on the same repository (the stack's `triton-spill`)."""
    tmp = tmp_path_factory.mktemp("engagement")
    data, repo = tmp / "data", tmp / "repository"
    data.mkdir()
    for name in ("SHA256SUMS", "manifest.json", engagement_data.DATA_FILE):
        shutil.copyfile(DATA / name, data / name)
    engagement.train(data, repo, 0.35, log=lambda *_: None)
    settings = with_free_ports(Settings(state_dir=tmp / "state"))
    with EmbeddedStack(settings, tmp / "state", components=("triton", "triton-spill"),
                       model_repository=repo) as stack:
        yield stack, repo, data


def _client(stack: EmbeddedStack, version: str = "1") -> ScorerClient:
    return ScorerClient("engagement", stack.settings.triton_url, 60, new_breaker("t", 5, 10),
                        version, output_class="engaged")


async def test_served_probabilities_equal_trainings(served: tuple[EmbeddedStack, Path, Path]) -> None:
    stack, repo, data = served
    windows = (datagen.read_jsonl(data / engagement.HELDOUT_FILE)
               + engagement_data.episode_windows(300) + list(engagement_data.EDGE_CASES))
    X = engagement.feature_matrix(windows)   # SubjectWindow.from_counts(...).vector(audio)
    want = engagement.p_engaged(X, engagement.load_params(repo / "engagement" / "1"))
    client = _client(stack)
    try:
        await client.load_metadata()
        assert client.feature_names == list(engagement.FEATURE_NAMES)
        assert client.version == "1.0.0"
        got = np.array([p.confidence for p in await client.predict(X.tolist())])  # one call
    finally:
        await client.close()
    assert got.shape == want.shape == (len(windows),)
    assert np.abs(got - want).max() <= 1e-5
    card = json.loads((repo / "engagement" / "1" / "model_card.json").read_text())
    n = card["split"]["test"]
    y = np.array([w["label"] for w in windows[:n]], float)
    assert round(float(((got[:n] >= 0.5) == (y > 0.5)).mean()), 6) == card["metrics"]["test"]["accuracy"]


async def test_concurrent_requests_are_answered_in_dynamic_batches(
        served: tuple[EmbeddedStack, Path, Path]) -> None:
    stack, repo, _ = served
    rows = engagement_data.simulate_windows(400, seed=99)
    X = engagement.feature_matrix(rows)
    want = engagement.p_engaged(X, engagement.load_params(repo / "engagement" / "1"))
    g = random.Random(1)
    cuts = sorted(g.sample(range(1, len(rows)), 59))
    spans = list(zip([0, *cuts], [*cuts, len(rows)]))
    stats = triton.InferenceServerClient(stack.settings.triton_url)
    before = stats.get_inference_statistics("engagement", "1", as_json=True)["model_stats"][0]
    client = _client(stack)
    try:
        await client.load_metadata()
        answers = await asyncio.gather(*(client.predict(X[a:b].tolist()) for a, b in spans))
    finally:
        await client.close()
    after = stats.get_inference_statistics("engagement", "1", as_json=True)["model_stats"][0]
    stats.close()
    for (a, b), answer in zip(spans, answers):
        assert len(answer) == b - a
        assert np.abs(np.array([p.confidence for p in answer]) - want[a:b]).max() <= 1e-5
    requests = int(after["inference_stats"]["success"]["count"]) - int(
        before["inference_stats"]["success"]["count"])
    executions = int(after.get("execution_count", 0)) - int(before.get("execution_count", 0))
    assert requests == len(spans)
    assert 0 < executions < requests, (executions, requests)  # several requests per execution


def _biased(src: Path, dst: Path) -> None:
    """The shipped windows with half of group b's engaged windows marked disengaged."""
    g = random.Random(3)
    rows = datagen.read_jsonl(src)
    for r in rows:
        if r["group"] == "b" and r["label"] == 1 and g.random() < 0.5:
            r["label"] = 0
    dst.write_bytes(datagen.jsonl_bytes(rows))


async def test_the_gate_refuses_an_unfair_candidate_and_promotes_a_fair_one(
        served: tuple[EmbeddedStack, Path, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    stack, repo, _ = served
    monkeypatch.setenv("SWITCHYARD_TRITON_URL", stack.settings.triton_url)
    monkeypatch.setenv("SWITCHYARD_TRITON_SPILL_URL", stack.settings.triton_spill_url)
    monkeypatch.delenv("SWITCHYARD_ENGAGEMENT_MAX_PARITY_DIFFERENCE", raising=False)
    monkeypatch.delenv("SWITCHYARD_SIGNAL_DISENGAGED_BELOW", raising=False)
    biased_data = tmp_path / "biased.jsonl"
    _biased(DATA / engagement_data.DATA_FILE, biased_data)
    unfair, fair = tmp_path / "unfair", tmp_path / "fair"
    # biased labels and no mitigation (every feature, no parity penalty)
    assert switchyard(["models", "train-engagement", "--data", str(biased_data),
                       "--out", str(unfair), "--penalty", "0", "--exclude"]) == 0
    assert switchyard(["models", "train-engagement", "--out", str(fair)]) == 0
    capsys.readouterr()
    unfair_card = json.loads((unfair / "model_card.json").read_text())
    parity = unfair_card["fairness"]["test"]["demographic_parity_difference"]
    assert parity > 0.1

    code = switchyard(["models", "promote", "engagement", "--candidate", str(unfair),
                       "--repository", str(repo)])
    err = capsys.readouterr().err
    assert code == 1
    assert f"demographic parity difference {parity:.4f} exceeds engagement_max_parity_difference 0.1" in err
    example = (ROOT / "docs" / "engagement-model.md").read_text().split(
        "switchyard models promote: refused DIR: ")[1].split("\n")[0]
    assert err.strip() == f"switchyard models promote: refused {unfair}: {example}"
    assert sorted(p.name for p in (repo / "engagement").iterdir()) == ["1", "config.pbtxt"]

    assert switchyard(["models", "promote", "engagement", "--candidate", str(fair),
                       "--repository", str(repo)]) == 0
    out = capsys.readouterr().out
    for url in (stack.settings.triton_url, stack.settings.triton_spill_url):
        assert f"Triton at {url} serves engagement version 2" in out
        control = triton.InferenceServerClient(url)
        try:
            assert control.is_model_ready("engagement", "2")
            assert not control.is_model_ready("engagement", "1")   # the newest version only
        finally:
            control.close()
    latest = _client(stack, "")   # no version: whichever Triton serves
    try:
        await latest.load_metadata()
        assert latest.version == "1.1.0"
        X = engagement.feature_matrix(list(engagement_data.EDGE_CASES))
        got = np.array([p.confidence for p in await latest.predict(X.tolist())])
    finally:
        await latest.close()
    want = engagement.p_engaged(X, engagement.load_params(repo / "engagement" / "2"))
    assert np.abs(got - want).max() <= 1e-5
    installed = json.loads((repo / "engagement" / "2" / "model_card.json").read_text())
    assert installed["triton"]["version_dir"] == "2"

    assert switchyard(["models", "status", "--repository", str(repo)]) == 0
    status = capsys.readouterr().out
    fair_parity = installed["fairness"]["test"]["demographic_parity_difference"]
    assert any(line.split()[:3] == ["engagement", "2", "1,2"] and line.endswith("1.1.0")
               for line in status.splitlines()), status
    assert (f"engagement fairness (card of version 2): alert rates "
            f"a {installed['fairness']['test']['groups']['a']['alert_rate']:.4f}") in status
    assert f"parity difference {fair_parity:.4f} (within the limit 0.1)" in status

    # the limit is the setting: raised, the biased candidate passes the gate
    monkeypatch.setenv("SWITCHYARD_ENGAGEMENT_MAX_PARITY_DIFFERENCE", "0.5")
    assert switchyard(["models", "promote", "engagement", "--candidate", str(unfair),
                       "--repository", str(repo), "--no-load"]) == 0
    assert (repo / "engagement" / "3" / "weights.npz").is_file()


async def test_a_candidate_triton_cannot_load_is_taken_out_again(
        served: tuple[EmbeddedStack, Path, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    stack, repo, _ = served
    monkeypatch.setenv("SWITCHYARD_TRITON_URL", stack.settings.triton_url)
    broken = tmp_path / "broken"
    assert switchyard(["models", "train-engagement", "--out", str(broken)]) == 0
    (broken / "weights.npz").write_bytes(b"not a zip")   # and a card that vouches for it
    card = json.loads((broken / "model_card.json").read_text())
    card["weights"]["sha256"] = datagen.sha256_file(broken / "weights.npz")
    (broken / "model_card.json").write_text(json.dumps(card))
    config = (repo / "engagement" / "config.pbtxt").read_text()
    versions = sorted(p.name for p in (repo / "engagement").iterdir())
    capsys.readouterr()
    assert switchyard(["models", "promote", "engagement", "--candidate", str(broken),
                       "--repository", str(repo)]) == 1
    assert "did not load engagement" in capsys.readouterr().err
    assert sorted(p.name for p in (repo / "engagement").iterdir()) == versions
    assert (repo / "engagement" / "config.pbtxt").read_text() == config
    control = triton.InferenceServerClient(stack.settings.triton_url)
    try:
        newest = max(int(v) for v in versions if v.isdigit())
        assert control.is_model_ready("engagement", str(newest))
    finally:
        control.close()
