"""Unit tests of the model training package (no Triton): data generator, featurizer, training
determinism, calibration, packaging, and the Triton model.py driven through a stand-in
``triton_python_backend_utils``."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from services.decision.training import cascade, datagen, default_paths, train
from services.decision.training import features as F
from services.decision.training.__main__ import main as cli
from services.decision.training.packs import collect_packs, router_classes
from tests.cli.helpers import on_a_terminal
from tests.models.packs import CORPUS_KINDS, write_pack

ROOT = Path(__file__).resolve().parents[2]
REPO = ROOT / "models" / "repository"
DATA = ROOT / "models" / "data"


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    """A small corpus trained end to end into a temporary model repository (a few seconds);
    the enabled packs are the corpus's four kinds (their rows are the corpus's)."""
    base = tmp_path_factory.mktemp("tiny")
    data, repo = base / "data", base / "repository"
    datagen.write_corpora(data, seed=11, router_n=250, invoice_n=600)
    for kind in CORPUS_KINDS:
        write_pack(base / "packs", kind)
    result = train.train_all(data, repo, seed=5, log=lambda *_: None, packs=_tiny_packs(base))
    return data, repo, result


def _tiny_packs(base: Path) -> list:
    return collect_packs([base / "packs" / kind for kind in CORPUS_KINDS], builtin=False)


def _tiny_pack_args(base: Path) -> list[str]:
    return ["--no-shipped-packs", "--no-stored-packs", "--packs", *(str(base / "packs" / k) for k in CORPUS_KINDS)]


def _digest_tree(repo: Path) -> dict[str, str]:
    return {str(p.relative_to(repo)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(repo.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


# -- data generator ----------------------------------------------------------------------------


def test_router_generator_is_seeded_and_labelled() -> None:
    a = datagen.generate_router_corpus(300, seed=3)
    assert a == datagen.generate_router_corpus(300, seed=3)
    assert a != datagen.generate_router_corpus(300, seed=4)
    assert {r["label"] for r in a} == set(F.ROUTER_CLASSES)
    assert all(isinstance(r["text"], str) and r["id"] for r in a)
    assert len({r["id"] for r in a}) == len(a)
    assert len({r["text"] for r in a}) > 0.95 * len(a)  # realistic variation, few duplicates


def test_invoice_generator_is_seeded_and_plausible() -> None:
    a = datagen.generate_invoice_corpus(400, seed=3)
    assert a == datagen.generate_invoice_corpus(400, seed=3)
    assert a != datagen.generate_invoice_corpus(400, seed=4)
    rate = np.mean([r["label"] for r in a])
    assert 0.5 < rate < 0.9
    # the ground truth punishes duplicates hard
    dup = [r["label"] for r in a if r["duplicate_invoice_number"]]
    assert dup and np.mean(dup) < rate


def test_shipped_corpus_matches_sha256sums_and_is_reproducible() -> None:
    train.verify_data(DATA)  # raises on mismatch
    manifest = json.loads((DATA / "manifest.json").read_text())
    seed = manifest["seed"]
    assert manifest["generator_version"] == datagen.GENERATOR_VERSION
    assert manifest["files"][datagen.ROUTER_FILE]["rows"] >= 6000
    regenerated = {
        datagen.ROUTER_FILE: datagen.jsonl_bytes(datagen.generate_router_corpus(
            manifest["files"][datagen.ROUTER_FILE]["rows"], seed)),
        datagen.INVOICE_FILE: datagen.jsonl_bytes(datagen.generate_invoice_corpus(
            manifest["files"][datagen.INVOICE_FILE]["rows"], seed)),
    }
    for name, blob in regenerated.items():
        assert hashlib.sha256(blob).hexdigest() == manifest["files"][name]["sha256"], name
    assert sum(p.stat().st_size for p in DATA.glob("*_corpus.jsonl")) < 6_000_000


def test_label_noise_is_present_but_small() -> None:
    rows = datagen.read_jsonl(DATA / datagen.ROUTER_FILE)
    rate = np.mean([r["label_noise"] for r in rows])
    assert 0.015 < rate < 0.05


# -- featurizer --------------------------------------------------------------------------------


def test_router_featurizer_rows_are_normalized_and_batch_independent() -> None:
    texts = ["Invoice INV-2024-001 total due €1.234,50", "", "   ", "quiz scores dropped in 7B",
             "Ünïcödé ✓ \U0001F600 " * 50]
    indptr, indices, values = F.router_featurize(texts)
    assert indptr.shape == (6,) and indices.dtype == np.int64 and values.dtype == np.float32
    assert indices.min() >= 0 and indices.max() < F.ROUTER_DIM
    norms = np.sqrt(np.bincount(F.csr_rows(indptr), weights=values.astype(np.float64) ** 2, minlength=5))
    assert np.allclose(norms[[0, 3, 4]], 1.0, atol=1e-5)
    assert norms[1] == 0 and norms[2] == 0  # empty text: empty row, no crash
    rng = np.random.default_rng(0)
    W = rng.normal(size=(F.ROUTER_DIM, 5)).astype(np.float32)
    b = rng.normal(size=5).astype(np.float32)
    together = F.router_predict_proba(texts, W, b, 1.3)
    alone = np.concatenate([F.router_predict_proba([t], W, b, 1.3) for t in texts])
    assert np.array_equal(together, alone)
    assert np.allclose(together.sum(axis=1), 1.0, atol=1e-5)


def test_normalization_maps_digits_and_case() -> None:
    assert F.normalize_text("  Invoice\tNo 12345\n\nTOTAL ") == "invoice no 00000 total"


def test_invoice_raw_features() -> None:
    inv = {"amount": 1200.0, "currency": "eur", "vendor_currency": "USD", "po_number": None,
           "received_date": "2024-03-01", "due_date": "2024-03-31", "line_items_total": 1100.0,
           "line_item_count": 3, "extraction_confidence": 0.91, "bank_details_changed": False,
           "duplicate_invoice_number": True, "vendor_known": True, "vendor_mean_amount": 1000.0,
           "vendor_invoice_count": 12}
    v = dict(zip(F.INVOICE_FEATURES, F.invoice_raw_features(inv)))
    assert v == {"amount": 1200.0, "vendor_mean_amount": 1000.0, "vendor_known": 1.0,
                 "vendor_invoice_count": 12.0, "has_po_number": 0.0, "days_until_due": 30.0,
                 "currency_mismatch": 1.0, "duplicate_invoice_number": 1.0,
                 "extraction_confidence": 0.91, "line_items_total_mismatch": 1.0,
                 "bank_details_changed": 0.0, "line_item_count": 3.0}
    unknown = dict(zip(F.INVOICE_FEATURES, F.invoice_raw_features(
        {"amount": -5, "vendor_known": False, "vendor_mean_amount": 999, "po_number": "PO-1"})))
    assert unknown["amount"] == 0.0 and unknown["vendor_mean_amount"] == 0.0
    assert unknown["has_po_number"] == 1.0
    design = F.invoice_design(np.array([[np.nan, np.inf, 1, -1, 1, 1e9, 0, 0, 2.0, 0, 0, 1]]))
    assert design.shape == (1, len(F.INVOICE_DESIGN)) and np.isfinite(design).all()


def test_psi() -> None:
    edges = [0.25, 0.5, 0.75]
    base = np.random.default_rng(1).uniform(size=5000)
    frac = F.bin_counts(base, edges) / 5000
    assert F.population_stability_index(frac, F.bin_counts(np.random.default_rng(2).uniform(size=5000), edges)) < 0.01
    assert F.population_stability_index(frac, F.bin_counts(np.random.default_rng(2).uniform(size=5000) ** 3, edges)) > 0.25


# -- calibration -------------------------------------------------------------------------------


def test_temperature_scaling_recovers_temperature() -> None:
    rng = np.random.default_rng(7)
    logits = rng.normal(scale=4.0, size=(6000, 5))
    probs = F.softmax(logits / 2.5)
    y = np.array([rng.choice(5, p=p) for p in probs])
    T = train.fit_temperature(logits, y)
    assert abs(T - 2.5) < 0.2
    before = train.ece(F.softmax(logits).max(axis=1), F.softmax(logits).argmax(axis=1) == y)
    after = train.ece(F.softmax(logits / T).max(axis=1), F.softmax(logits / T).argmax(axis=1) == y)
    assert after < 0.03 < before


def test_platt_and_auc() -> None:
    rng = np.random.default_rng(8)
    z = rng.normal(scale=2.0, size=8000)
    y = (rng.uniform(size=z.size) < F.sigmoid(0.5 * z - 0.3)).astype(float)
    a, b = train.fit_platt(z, y)
    assert abs(a - 0.5) < 0.06 and abs(b + 0.3) < 0.1
    assert train.auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == 0.75
    assert train.auc(np.array([0.5, 0.5]), np.array([0, 1])) == 0.5


# -- training and packaging --------------------------------------------------------------------


def test_training_is_deterministic_and_seeded(tiny: tuple[Path, Path, dict], tmp_path: Path) -> None:
    data, repo, _ = tiny
    first = _digest_tree(repo)
    again = tmp_path / "again"
    train.train_all(data, again, seed=5, log=lambda *_: None, packs=_tiny_packs(data.parent))
    assert _digest_tree(again) == first  # same seed -> same bytes (weights, cards)
    rows = datagen.read_jsonl(data / datagen.ROUTER_FILE)
    csr = F.router_featurize([r["text"] for r in rows[:200]])
    y = np.array([F.ROUTER_CLASSES.index(r["label"]) for r in rows[:200]])
    hp = {**train.ROUTER_HPARAMS, "epochs": 2}
    w5, _ = train.fit_router(csr, y, 5, hp)
    w6, _ = train.fit_router(csr, y, 6, hp)
    assert np.array_equal(w5, train.fit_router(csr, y, 5, hp)[0])
    assert not np.array_equal(w5, w6)


def test_tiny_training_learns_and_is_calibrated(tiny: tuple[Path, Path, dict]) -> None:
    _, _, result = tiny
    router = result["router"]["metrics"]["test"]
    assert router["accuracy"] > 0.6 and router["ece"] < 0.2
    inv = result["invoice"]["metrics"]["test"]
    assert inv["auc"] > 0.75 and inv["brier"] < 0.2


def test_featurizer_copy_is_the_training_module(tiny: tuple[Path, Path, dict]) -> None:
    _, repo, result = tiny
    source = Path(F.__file__).read_bytes()
    for model in (train.ROUTER, train.INVOICE):
        vdir = repo / model / train.VERSION_DIR
        assert (vdir / train.FEATURIZER_FILE).read_bytes() == source
        params = train.load_params(vdir)
        meta = json.loads(str(params["meta"]))
        assert meta["featurizer_sha256"] == hashlib.sha256(source).hexdigest()
    card = result["router"]
    assert card["classes"] == list(F.ROUTER_CLASSES)
    assert {"accuracy", "macro_f1", "log_loss", "ece"} <= set(card["metrics"]["test"])
    assert {"auc", "brier", "ece"} <= set(result["invoice"]["metrics"]["test"])
    assert card["drift_baseline"]["label_prior"]["classes"] == list(F.ROUTER_CLASSES)


def test_if_missing_reload_reloads_the_stacks_triton_even_when_up_to_date(
        tiny: tuple[Path, Path, dict], monkeypatch: pytest.MonkeyPatch) -> None:
    """``--if-missing --reload`` with nothing to train still has Triton load what is on disk,
    and the Triton it asks is the one at SWITCHYARD_TRITON_GRPC_PORT (a stack on moved
    ports), not the default 8001."""
    from services.decision.training import __main__ as training_cli

    data, repo, _ = tiny
    asked: list[str] = []
    monkeypatch.setattr(training_cli, "reload_models", lambda url, *a, **k: asked.append(url))
    monkeypatch.setenv("SWITCHYARD_TRITON_GRPC_PORT", "47014")
    monkeypatch.delenv("SWITCHYARD_TRITON_URL", raising=False)
    monkeypatch.delenv("SWITCHYARD_TRITON_SPILL_URL", raising=False)
    assert cli(["--data-dir", str(data), "--repository", str(repo), "--if-missing", "--reload",
                *_tiny_pack_args(data.parent)]) == 0
    assert asked == ["127.0.0.1:47014"]


def test_if_missing_is_a_no_op_until_something_changes(tiny: tuple[Path, Path, dict], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    data, repo, _ = tiny
    packs = _tiny_packs(data.parent)
    args = ["--data-dir", str(data), "--repository", str(repo), "--if-missing",
            *_tiny_pack_args(data.parent)]
    assert train.artifacts_status(data, repo, packs=packs) is None
    assert cli(args) == 0
    assert "up to date" in capsys.readouterr().out
    assert train.artifacts_status(data, repo, seed=99, packs=packs) is not None
    (repo / train.ROUTER / "1" / train.FEATURIZER_FILE).write_text("# edited\n")
    assert "differs" in (train.artifacts_status(data, repo, packs=packs) or "")
    (repo / train.ROUTER / "1" / train.FEATURIZER_FILE).write_bytes(Path(F.__file__).read_bytes())
    assert train.artifacts_status(data, repo, packs=packs) is None
    tampered = tmp_path / "data"
    tampered.mkdir()
    for p in data.iterdir():
        (tampered / p.name).write_bytes(p.read_bytes())
    with open(tampered / datagen.ROUTER_FILE, "ab") as fh:
        fh.write(b'{"id":"x","text":"extra","label":"other","template":"x","label_noise":0}\n')
    assert "data changed" in (train.artifacts_status(tampered, repo, packs=packs) or "")
    with pytest.raises(SystemExit, match="SHA256SUMS"):
        train.verify_data(tampered)


# -- Triton model.py, with a stand-in for triton_python_backend_utils -------------------------


class _Tensor:
    def __init__(self, name: str, array: np.ndarray) -> None:
        self.name, self.array = name, array

    def as_numpy(self) -> np.ndarray:
        return self.array


class _Response:
    def __init__(self, output_tensors: list[_Tensor] | None = None, error: object = None) -> None:
        self.outputs = {t.name: t.array for t in output_tensors or []}
        self.error = error


def _fake_pb_utils() -> types.ModuleType:
    m = types.ModuleType("triton_python_backend_utils")
    m.Tensor = _Tensor  # type: ignore[attr-defined]
    m.InferenceResponse = _Response  # type: ignore[attr-defined]
    m.TritonModelException = RuntimeError  # type: ignore[attr-defined]
    m.get_input_tensor_by_name = lambda req, name: _Tensor(name, req[name])  # type: ignore[attr-defined]
    m.Logger = types.SimpleNamespace(log_info=lambda *_: None)  # type: ignore[attr-defined]
    return m


def _load_model(path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", _fake_pb_utils())
    spec = importlib.util.spec_from_file_location(f"model_{path.parent.parent.name}", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _config_json(model: str, repo: Path = REPO) -> str:
    """The Triton model config as the backend gets it, from ``repo`` (a trained router's
    config names the classes it was trained with: the tiny one's are the corpus kinds)."""
    text = (repo / model / "config.pbtxt").read_text()
    params = dict(re.findall(r'key: "(\w+)"\s*value: \{ string_value: "([^"]*)" \}', text))
    return json.dumps({"name": model, "parameters": {k: {"string_value": v} for k, v in params.items()}})


def _install_model_py(repo: Path, model: str) -> Path:
    target = repo / model / "1" / "model.py"
    target.write_bytes((REPO / model / "1" / "model.py").read_bytes())
    return target


def test_router_model_py_matches_training_path(tiny: tuple[Path, Path, dict],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    data, repo, _ = tiny
    mod = _load_model(_install_model_py(repo, train.ROUTER), monkeypatch)
    model = mod.TritonPythonModel()
    model.initialize({"model_config": _config_json(train.ROUTER, repo), "model_repository": str(repo / train.ROUTER),
                      "model_version": "1"})
    rows = datagen.read_jsonl(data / train.ROUTER_HELDOUT)[:20]
    reqs = [{"TEXT": np.array([[r["text"].encode()] for r in rows[:7]], dtype=object)},
            {"TEXT": np.array([[r["text"].encode()] for r in rows[7:]], dtype=object)}]
    out = model.execute(reqs)
    probs = np.concatenate([o.outputs["PROBS"] for o in out])
    assert out[0].outputs["PROBS"].shape == (7, 5) and out[0].outputs["PROBS"].dtype == np.float32
    assert out[1].outputs["LABEL"].shape == (13, 1)
    p = train.load_params(repo / train.ROUTER / "1")
    expected = F.router_predict_proba([r["text"] for r in rows], p["weights"], p["bias"], float(p["temperature"]))
    assert np.array_equal(probs, expected)
    labels = [x.decode() for o in out for x in o.outputs["LABEL"].reshape(-1)]
    assert labels == [F.ROUTER_CLASSES[i] for i in expected.argmax(axis=1)]


def test_invoice_model_py_matches_training_path(tiny: tuple[Path, Path, dict],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    data, repo, _ = tiny
    mod = _load_model(_install_model_py(repo, train.INVOICE), monkeypatch)
    model = mod.TritonPythonModel()
    model.initialize({"model_config": _config_json(train.INVOICE), "model_repository": str(repo / train.INVOICE),
                      "model_version": "1"})
    X = F.invoice_raw_matrix(datagen.read_jsonl(data / train.INVOICE_HELDOUT)[:30])
    out = model.execute([{"FEATURES": X[:10]}, {"FEATURES": X[10:]}])
    got = np.concatenate([o.outputs["P_AUTO"] for o in out])
    assert got.shape == (30, 1) and got.dtype == np.float32
    assert np.array_equal(got.reshape(-1), F.invoice_p_auto(X, train.load_params(repo / train.INVOICE / "1")))


def test_model_py_refuses_a_featurizer_it_was_not_trained_with(tiny: tuple[Path, Path, dict],
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:
    _, repo, _ = tiny
    copy = tmp_path / "repo"
    (copy / train.INVOICE / "1").mkdir(parents=True)
    for f in ("weights.npz", "featurize.py"):
        (copy / train.INVOICE / "1" / f).write_bytes((repo / train.INVOICE / "1" / f).read_bytes())
    with open(copy / train.INVOICE / "1" / "featurize.py", "a") as fh:
        fh.write("\n# drifted\n")
    mod = _load_model(_install_model_py(copy, train.INVOICE), monkeypatch)
    with pytest.raises(RuntimeError, match="sha256"):
        mod.TritonPythonModel().initialize({"model_config": _config_json(train.INVOICE)})


# -- the committed Triton configs ---------------------------------------------------------------


def test_configs_agree_with_the_code() -> None:
    """The tracked router config is the one `make models` writes for the shipped packs."""
    shipped = list(router_classes(p.name for p in collect_packs()))
    router = (REPO / "document_router" / "config.pbtxt").read_text()
    assert f'string_value: "{",".join(shipped)}"' in router
    assert (REPO / "document_router" / "labels.txt").read_text().split() == shipped
    assert train._router_config(REPO, shipped).decode() == router
    assert re.search(r'name: "TEXT"\s*data_type: TYPE_STRING', router)
    assert re.search(r'name: "PROBS"\s*data_type: TYPE_FP32\s*#[^\n]*\n\s*dims: \[ '
                     + str(len(shipped)) + r' \]', router)
    inv = (REPO / "invoice_risk" / "config.pbtxt").read_text()
    assert f'string_value: "{",".join(F.INVOICE_FEATURES)}"' in inv
    assert f"dims: [ {F.INVOICE_DIM} ]" in inv
    for model, text in (("document_router", router), ("invoice_risk", inv)):
        assert f'key: "model_version"\n  value: {{ string_value: "{train.MODEL_VERSIONS[model]}" }}' in text
        assert "dynamic_batching" in text and "KIND_CPU" in text
        assert int(re.search(r"max_batch_size: (\d+)", text).group(1)) >= 64  # type: ignore[union-attr]


def test_default_paths_point_at_the_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SWITCHYARD_MODEL_REPOSITORY", raising=False)
    data, repo = default_paths()
    assert data == DATA and repo == REPO


def test_built_artifacts_match_their_card_when_present() -> None:
    """After `make models`: the card's held-out accuracy reproduces from the shipped files."""
    if train.artifacts_status(DATA, REPO) is not None:
        pytest.skip("models not built (python -m services.decision.training)")
    card = json.loads((REPO / "document_router" / "1" / "model_card.json").read_text())
    assert card["training_data"]["sha256"] == datagen.sha256_file(DATA / datagen.ROUTER_FILE)
    rows = datagen.read_jsonl(DATA / train.ROUTER_HELDOUT)
    p = train.load_params(REPO / "document_router" / "1")
    probs = F.router_predict_proba([r["text"] for r in rows], p["weights"], p["bias"], float(p["temperature"]))
    y = np.array([card["classes"].index(r["label"]) for r in rows])
    assert round(float((probs.argmax(axis=1) == y).mean()), 6) == card["metrics"]["test"]["accuracy"]
    # and it learned something: better than always answering the commonest label
    baseline = float(np.bincount(y).max() / len(y))
    assert card["metrics"]["test"]["accuracy"] > baseline


# -- the shadow candidate ---------------------------------------------------------------------


def test_candidate_router_version_is_trained_beside_the_live_one(tiny: tuple[Path, Path, dict]) -> None:
    _, repo, result = tiny
    live = result["router"]
    for vdir, spec in train.ROUTER_CANDIDATES.items():
        vpath = repo / train.ROUTER / vdir
        card = json.loads((vpath / train.CARD_FILE).read_text())
        assert card["version"] == spec["version"] != live["version"]
        assert card["seed"] == live["seed"] + spec["seed_offset"]
        assert card["hyperparameters"] == spec["hyperparameters"] != live["hyperparameters"]
        assert card["triton"]["version_dir"] == vdir and "shadow" in card["role"]
        assert card["split"] == live["split"]  # same held-out set: comparable metrics
        assert (vpath / "model.py").read_bytes() == (REPO / train.ROUTER / "1" / "model.py").read_bytes()
        assert not np.array_equal(train.load_params(vpath)["weights"],
                                  train.load_params(repo / train.ROUTER / "1")["weights"])
    packs = _tiny_packs(repo.parent)
    (repo / train.ROUTER / "2" / "model.py").unlink()
    assert "model.py missing" in (train.artifacts_status(repo.parent / "data", repo,
                                                         packs=packs) or "")
    (repo / train.ROUTER / "2" / "model.py").write_bytes((REPO / train.ROUTER / "1" / "model.py").read_bytes())
    assert train.artifacts_status(repo.parent / "data", repo, packs=packs) is None


def test_router_config_serves_every_version_and_names_them() -> None:
    text = (REPO / "document_router" / "config.pbtxt").read_text()
    assert "version_policy: { all: {} }" in text
    versions = re.search(r'key: "versions".*?string_value: "([^"]*)"', text, re.DOTALL).group(1)  # type: ignore[union-attr]
    expected = {"1": train.MODEL_VERSIONS["document_router"],
                **{vdir: spec["version"] for vdir, spec in train.ROUTER_CANDIDATES.items()}}
    assert dict(pair.split(":") for pair in versions.split(",")) == expected


def test_training_reports_each_model_version_as_a_phase(tiny: tuple[Path, Path, dict],
                                                        tmp_path: Path) -> None:
    data, _, _ = tiny
    copy = tmp_path / "data"   # training writes the held-out files next to the corpus
    shutil.copytree(data, copy)
    phases: list[str] = []
    train.train_all(copy, tmp_path / "repository", seed=5, log=lambda *_: None,
                    packs=_tiny_packs(data.parent), on_phase=phases.append)
    assert len(phases) == train.training_phases() == 5
    assert phases[0].startswith(train.ROUTER) and phases[-2].startswith(train.INVOICE)
    assert phases[2].startswith(cascade.MODEL)   # trained right after the router's versions
    assert phases[-1].startswith("engagement")


def test_models_train_draws_a_progress_bar_on_a_terminal_only(
        tiny: tuple[Path, Path, dict], tmp_path: Path) -> None:
    data, _, _ = tiny
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    argv = [sys.executable, "-m", "switchyard", "models", "train", "--data-dir", str(copy),
            "--repository", str(tmp_path / "repository"), *_tiny_pack_args(data.parent)]
    code, out, drawn = on_a_terminal(argv)
    assert code == 0, drawn[-2000:]
    assert "[train] done" in out   # the log lines stay on stdout
    assert b"trained " + train.ROUTER.encode() in drawn and "━".encode() in drawn
    piped = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    assert piped.returncode == 0, piped.stderr
    assert "━" not in piped.stderr and "\x1b[" not in piped.stderr
    assert "[train] done" in piped.stdout

