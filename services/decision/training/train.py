"""Train, calibrate, evaluate and package the two Triton models, in pure numpy.

document_router
    classes and rows: one class per enabled pack, and ``other`` (``packs.router_training_set``);
    the Triton config's PROBS dims, ``labels.txt`` and ``parameters.classes`` are written to
    match; features: ``features.router_featurize`` (hashed byte n-grams + words, 2**18 buckets);
    model: multinomial logistic regression, mean cross-entropy + (l2/2)||W||^2, mini-batch
    Adam over a seeded shuffle, from zero weights; calibration: one temperature T fitted on the
    validation split by minimizing NLL (golden-section search on log T).

invoice_risk
    features: ``features.invoice_design`` of the raw FEATURES vector, standardized with the
    training mean / std; model: L2-regularized logistic regression fitted by Newton's method
    (IRLS); calibration: Platt scaling (a * logit + b) fitted on the validation split.

Split (data-determined, independent of the seed): ``sha256(id) mod 100`` < 70 train, < 85
validation, else held-out test. Metrics in the model cards are computed with exactly the
float32 inference path ``model.py`` runs under Triton.

Artifacts, per model, in ``<repository>/<model>/1/``: ``weights.npz`` (a zip written with fixed
timestamps, so the same seed gives the same bytes), ``featurize.py`` (a verbatim copy of
``features.py``), ``model_card.json`` and ``MODEL_CARD.md``. The held-out sets go to
``<data_dir>/router_heldout.jsonl`` and ``<data_dir>/invoice_heldout.jsonl``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from services.decision.training import cascade, datagen
from services.decision.training import features as F
from services.decision.training.packs import (
    PackExamples,
    RouterTrainingSet,
    collect_packs,
    router_training_set,
)

TRAINER_VERSION = "1"
DEFAULT_SEED = 1234
MODEL_VERSIONS = {"document_router": "1.0.0", "invoice_risk": "1.0.0"}
ROUTER = "document_router"
INVOICE = "invoice_risk"
VERSION_DIR = "1"
FEATURIZER_FILE = "featurize.py"
WEIGHTS_FILE = "weights.npz"
CARD_FILE = "model_card.json"
CARD_MD_FILE = "MODEL_CARD.md"
ROUTER_HELDOUT = "router_heldout.jsonl"
INVOICE_HELDOUT = "invoice_heldout.jsonl"

ROUTER_HPARAMS: dict[str, Any] = {
    "optimizer": "adam", "epochs": 8, "batch_size": 128, "learning_rate": 0.02,
    "lr_decay": "cosine to 10%", "l2": 2e-6, "adam_betas": [0.9, 0.999], "adam_eps": 1e-8,
}
INVOICE_HPARAMS: dict[str, Any] = {"solver": "newton-irls", "iterations": 25, "l2": 1.0}

#: Candidate router versions trained beside the live one (Triton version dir -> spec). The
#: decision service runs a configured candidate as a *shadow*: its outputs and agreement with
#: the live version are recorded, never acted on; promotion is a settings change
#: (SWITCHYARD_ROUTER_VERSION / SWITCHYARD_ROUTER_SHADOW_VERSION). This one differs from the
#: live model by its seed offset and a stronger L2 penalty with fewer epochs.
ROUTER_CANDIDATES: dict[str, dict[str, Any]] = {
    "2": {"version": "1.1.0", "seed_offset": 1,
          "hyperparameters": {**ROUTER_HPARAMS, "epochs": 6, "l2": 1e-5}},
}
MODEL_PY = "model.py"
CONFIG_FILE = "config.pbtxt"
LABELS_FILE = "labels.txt"

FEATURES_SOURCE = Path(F.__file__)


# -- helpers -----------------------------------------------------------------------------------


def split_of(example_id: str) -> str:
    """Deterministic split from the id alone: 70% train, 15% validation, 15% test."""
    bucket = int(hashlib.sha256(example_id.encode("utf-8")).hexdigest()[:8], 16) % 100
    return "train" if bucket < 70 else ("validation" if bucket < 85 else "test")


def sha256_bytes(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def featurizer_sha256() -> str:
    return sha256_bytes(FEATURES_SOURCE.read_bytes())


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """An ``.npz`` (readable by ``np.load``) with fixed zip timestamps: same arrays, same bytes."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asarray(arrays[name], order="C"), allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue(), compresslevel=6)
    return out.getvalue()


def write_atomic(path: Path, blob: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(blob)
    os.replace(tmp, path)


def _r(x: float, nd: int = 6) -> float:
    return float(round(float(x), nd))


# -- metrics -----------------------------------------------------------------------------------


def ece(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error over equal-width confidence bins."""
    confidence = np.asarray(confidence, np.float64)
    correct = np.asarray(correct, np.float64)
    idx = np.minimum((confidence * bins).astype(np.int64), bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.sum() * abs(confidence[m].mean() - correct[m].mean())
    return total / max(1, confidence.size)


def multiclass_metrics(probs: np.ndarray, y: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    probs = np.asarray(probs, np.float64)
    pred = probs.argmax(axis=1)
    k = len(classes)
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (y, pred), 1)
    per_class = {}
    f1s = []
    for c in range(k):
        tp = cm[c, c]
        prec = tp / cm[:, c].sum() if cm[:, c].sum() else 0.0
        rec = tp / cm[c, :].sum() if cm[c, :].sum() else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        f1s.append(f1)
        per_class[classes[c]] = {"precision": _r(prec), "recall": _r(rec), "f1": _r(f1),
                                 "support": int(cm[c, :].sum())}
    onehot = np.eye(k)[y]
    p_true = np.clip(probs[np.arange(y.size), y], 1e-12, 1.0)
    return {
        "n": int(y.size),
        "accuracy": _r((pred == y).mean()),
        "macro_f1": _r(np.mean(f1s)),
        "log_loss": _r(-np.log(p_true).mean()),
        "ece": _r(ece(probs.max(axis=1), pred == y)),
        "brier": _r(((probs - onehot) ** 2).sum(axis=1).mean()),
        "per_class": per_class,
        "confusion_matrix": {"rows_true_cols_pred": list(classes), "counts": cm.tolist()},
    }


def auc(scores: np.ndarray, y: np.ndarray) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney) formula, ties averaged."""
    scores = np.asarray(scores, np.float64)
    y = np.asarray(y).astype(bool)
    order = np.argsort(scores, kind="mergesort")
    s = scores[order]
    ranks = np.empty(s.size, dtype=np.float64)
    i = 0
    while i < s.size:
        j = i
        while j + 1 < s.size and s[j + 1] == s[i]:
            j += 1
        ranks[i:j + 1] = (i + j) / 2.0 + 1.0
        i = j + 1
    r = np.empty_like(ranks)
    r[order] = ranks
    npos, nneg = int(y.sum()), int((~y).sum())
    if npos == 0 or nneg == 0:
        return float("nan")
    return float((r[y].sum() - npos * (npos + 1) / 2.0) / (npos * nneg))


def binary_metrics(p: np.ndarray, y: np.ndarray, threshold: float = 0.8) -> dict[str, Any]:
    p = np.asarray(p, np.float64)
    y = np.asarray(y, np.float64)
    pc = np.clip(p, 1e-12, 1 - 1e-12)
    auto = p >= threshold
    return {
        "n": int(y.size),
        "positive_rate": _r(y.mean()),
        "auc": _r(auc(p, y)),
        "brier": _r(((p - y) ** 2).mean()),
        "log_loss": _r(-(y * np.log(pc) + (1 - y) * np.log(1 - pc)).mean()),
        "ece": _r(ece(p, y, bins=10)),  # reliability of P(auto) itself, 10 bins
        "accuracy_at_0_5": _r(((p >= 0.5) == (y > 0.5)).mean()),
        f"auto_rate_at_{threshold}": _r(auto.mean()),
        f"precision_at_{threshold}": _r(y[auto].mean()) if auto.any() else None,
    }


# -- document router ---------------------------------------------------------------------------


def _gather_rows(csr: tuple[np.ndarray, np.ndarray, np.ndarray], ids: np.ndarray):  # type: ignore[no-untyped-def]
    indptr, indices, values = csr
    starts, ends = indptr[ids], indptr[ids + 1]
    lengths = ends - starts
    sub_ptr = np.zeros(ids.size + 1, dtype=np.int64)
    np.cumsum(lengths, out=sub_ptr[1:])
    pos = np.repeat(starts - sub_ptr[:-1], lengths) + np.arange(sub_ptr[-1], dtype=np.int64)
    return sub_ptr, indices[pos], values[pos]


def fit_router(csr: tuple[np.ndarray, np.ndarray, np.ndarray], y: np.ndarray, seed: int,
               hp: Mapping[str, Any] = ROUTER_HPARAMS, n_classes: int = len(F.ROUTER_CLASSES)
               ) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression by mini-batch Adam. Returns float64 (W [D, C], b [C])."""
    rng = np.random.default_rng(seed)
    n, k, d = y.size, n_classes, F.ROUTER_DIM
    W = np.zeros((d, k))
    b = np.zeros(k)
    mW, vW = np.zeros_like(W), np.zeros_like(W)
    mb, vb = np.zeros_like(b), np.zeros_like(b)
    b1, b2 = hp["adam_betas"]
    eps, l2, lr0, bs = hp["adam_eps"], hp["l2"], hp["learning_rate"], hp["batch_size"]
    steps_per_epoch = -(-n // bs)
    total = hp["epochs"] * steps_per_epoch
    onehot = np.eye(k)
    t = 0
    for _ in range(hp["epochs"]):
        perm = rng.permutation(n)
        for s in range(steps_per_epoch):
            ids = perm[s * bs:(s + 1) * bs]
            sub = _gather_rows(csr, ids)
            probs = F.softmax(F.router_logits(sub, W, b))
            G = (probs - onehot[y[ids]]) / ids.size
            rows = F.csr_rows(sub[0])
            gW = np.empty_like(W)
            vals = sub[2].astype(np.float64)
            for c in range(k):
                gW[:, c] = np.bincount(sub[1], weights=vals * G[rows, c], minlength=d)
            gW += l2 * W
            gb = G.sum(axis=0)
            t += 1
            lr = lr0 * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * (t - 1) / total)))
            mW *= b1
            mW += (1 - b1) * gW
            vW *= b2
            vW += (1 - b2) * gW * gW
            mb = b1 * mb + (1 - b1) * gb
            vb = b2 * vb + (1 - b2) * gb * gb
            c1, c2 = 1 - b1 ** t, 1 - b2 ** t
            W -= lr * (mW / c1) / (np.sqrt(vW / c2) + eps)
            b -= lr * (mb / c1) / (np.sqrt(vb / c2) + eps)
    return W, b


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """T > 0 minimizing the NLL of softmax(logits / T): golden-section search on log T."""
    def nll(log_t: float) -> float:
        z = logits / np.exp(log_t)
        z = z - z.max(axis=1, keepdims=True)
        lse = np.log(np.exp(z).sum(axis=1))
        return float((lse - z[np.arange(y.size), y]).mean())

    lo, hi = np.log(0.05), np.log(20.0)
    g = (np.sqrt(5) - 1) / 2
    a, c = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fc = nll(a), nll(c)
    for _ in range(80):
        if fa < fc:
            hi, c, fc = c, a, fa
            a = hi - g * (hi - lo)
            fa = nll(a)
        else:
            lo, a, fa = a, c, fc
            c = lo + g * (hi - lo)
            fc = nll(c)
    return float(np.exp((lo + hi) / 2))


def _hist(values: np.ndarray, edges: Sequence[float], source: str) -> dict[str, Any]:
    counts = F.bin_counts(values, edges)
    return {"edges": [_r(e, 6) for e in edges],
            "fractions": [_r(c / max(1, counts.sum()), 6) for c in counts], "source": source}


def _quantile_edges(values: np.ndarray, q: int = 10) -> list[float]:
    edges = np.unique(np.quantile(np.asarray(values, np.float64), np.arange(1, q) / q))
    return [float(e) for e in edges]


def train_router(rows: Sequence[Mapping[str, Any]], seed: int,
                 hp: Mapping[str, Any] = ROUTER_HPARAMS,
                 classes: Sequence[str] = F.ROUTER_CLASSES) -> dict[str, Any]:
    """Fit, calibrate and evaluate the router on ``rows`` labelled with ``classes``."""
    classes = list(classes)
    cidx = {c: i for i, c in enumerate(classes)}
    parts: dict[str, list[Mapping[str, Any]]] = {"train": [], "validation": [], "test": []}
    for r in rows:
        parts[split_of(str(r["id"]))].append(r)
    texts = {s: [str(r["text"]) for r in parts[s]] for s in parts}
    ys = {s: np.array([cidx[str(r["label"])] for r in parts[s]], dtype=np.int64) for s in parts}
    t0 = time.perf_counter()
    csr = F.router_featurize(texts["train"])
    W64, b64 = fit_router(csr, ys["train"], seed, hp, n_classes=len(classes))
    W, b = W64.astype(np.float32), b64.astype(np.float32)
    fit_s = time.perf_counter() - t0
    val_logits = F.router_logits(F.router_featurize(texts["validation"]), W, b)
    T = fit_temperature(val_logits, ys["validation"])
    val_raw = multiclass_metrics(F.softmax(val_logits), ys["validation"], classes)
    val_cal = multiclass_metrics(F.softmax(val_logits / T), ys["validation"], classes)
    test_probs = F.router_predict_proba(texts["test"], W, b, T)  # the exact Triton path
    test_m = multiclass_metrics(test_probs, ys["test"], classes)
    test_uncal = multiclass_metrics(F.router_predict_proba(texts["test"], W, b, 1.0), ys["test"], classes)
    pred = test_probs.argmax(axis=1)
    baseline = {
        "binning": "features.bin_counts: bins (-inf, e1), [e1, e2), ..., [ek, inf); compare with "
                   "features.population_stability_index(fractions, live_counts)",
        "label_prior": {"classes": classes, "fractions": [
            _r(np.mean(ys["train"] == i)) for i in range(len(classes))], "source": "train labels"},
        "predicted_class": {"classes": classes, "fractions": [
            _r(np.mean(pred == i)) for i in range(len(classes))], "source": "test predictions"},
        "max_prob": _hist(test_probs.max(axis=1), [0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99],
                          "test predictions"),
        "text_length_chars": _hist(F.text_length_chars(texts["train"]),
                                   _quantile_edges(F.text_length_chars(texts["train"])), "train"),
    }
    return {
        "weights": W, "bias": b, "temperature": np.float32(T), "fit_seconds": fit_s,
        "sizes": {s: len(parts[s]) for s in parts}, "nnz_train": int(csr[1].size),
        "metrics": {"validation_uncalibrated": val_raw, "validation": val_cal, "test": test_m,
                    "test_uncalibrated": {k: test_uncal[k] for k in ("accuracy", "log_loss", "ece", "brier")}},
        "baseline": baseline, "heldout": parts["test"],
    }


# -- invoice risk ------------------------------------------------------------------------------


def fit_logistic(X: np.ndarray, y: np.ndarray, l2: float, iterations: int) -> tuple[np.ndarray, float]:
    """L2-regularized logistic regression (intercept unpenalized) by Newton / IRLS."""
    n, d = X.shape
    A = np.hstack([np.ones((n, 1)), X])
    w = np.zeros(d + 1)
    reg = np.full(d + 1, l2)
    reg[0] = 0.0
    for _ in range(iterations):
        p = F.sigmoid(A @ w)
        grad = A.T @ (p - y) + reg * w
        H = (A * (p * (1 - p))[:, None]).T @ A + np.diag(reg) + 1e-9 * np.eye(d + 1)
        step = np.linalg.solve(H, grad)
        w -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    return w[1:], float(w[0])


def fit_platt(logit: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    a, b = fit_logistic(logit[:, None], y, l2=0.0, iterations=50)
    return float(a[0]), b


def train_invoice(rows: Sequence[Mapping[str, Any]], seed: int) -> dict[str, Any]:
    del seed  # Newton's method from zero is deterministic; the seed only matters to the router
    parts: dict[str, list[Mapping[str, Any]]] = {"train": [], "validation": [], "test": []}
    for r in rows:
        parts[split_of(str(r["id"]))].append(r)
    raw = {s: F.invoice_raw_matrix(parts[s]) for s in parts}
    ys = {s: np.array([float(r["label"]) for r in parts[s]]) for s in parts}
    return {**fit_invoice(raw, ys), "sizes": {s: len(parts[s]) for s in parts},
            "heldout": parts["test"]}


def fit_invoice(raw: Mapping[str, np.ndarray], ys: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Fit, calibrate (Platt, on validation) and evaluate the invoice risk model on raw
    FEATURES matrices per split (``train``, ``validation``, ``test``) and their labels
    (1: processed without a person)."""
    t0 = time.perf_counter()
    D = F.invoice_design(raw["train"])
    mean = D.mean(axis=0)
    scale = D.std(axis=0)
    scale[scale < 1e-9] = 1.0
    coef, intercept = fit_logistic((D - mean) / scale, ys["train"], INVOICE_HPARAMS["l2"],
                                   INVOICE_HPARAMS["iterations"])
    params: dict[str, Any] = {"mean": mean, "scale": scale, "coef": coef,
                              "intercept": np.float64(intercept), "platt_a": np.float64(1.0),
                              "platt_b": np.float64(0.0)}
    a, b = fit_platt(F.invoice_logit(raw["validation"], params), ys["validation"])
    val_uncal = binary_metrics(F.invoice_p_auto(raw["validation"], params), ys["validation"])
    params["platt_a"], params["platt_b"] = np.float64(a), np.float64(b)
    fit_s = time.perf_counter() - t0
    val_m = binary_metrics(F.invoice_p_auto(raw["validation"], params), ys["validation"])
    test_p = F.invoice_p_auto(raw["test"], params)
    test_m = binary_metrics(test_p, ys["test"])
    baseline: dict[str, Any] = {
        "binning": "features.bin_counts: bins (-inf, e1), [e1, e2), ..., [ek, inf); compare with "
                   "features.population_stability_index(fractions, live_counts)",
        "features": {},
        "p_auto": _hist(test_p, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9], "test predictions"),
    }
    for j, name in enumerate(F.INVOICE_FEATURES):
        col = raw["train"][:, j].astype(np.float64)
        edges = [0.5] if set(np.unique(col)) <= {0.0, 1.0} else _quantile_edges(col)
        baseline["features"][name] = _hist(col, edges, "train")
    return {
        "params": params, "fit_seconds": fit_s,
        "metrics": {"validation_uncalibrated": val_uncal, "validation": val_m, "test": test_m},
        "calibration": {"method": "platt", "a": _r(a), "b": _r(b)},
        "baseline": baseline,
    }


# -- packaging ---------------------------------------------------------------------------------


def _triton_io(model: str, classes: Sequence[str] = ()) -> dict[str, Any]:
    if model == ROUTER:
        return {
            "max_batch_size": 256,
            "inputs": [{"name": "TEXT", "datatype": "BYTES", "config_type": "TYPE_STRING", "dims": [1],
                        "doc": "UTF-8 document text, one per batch row"}],
            "outputs": [
                {"name": "PROBS", "datatype": "FP32", "dims": [len(classes)],
                 "doc": "calibrated class probabilities in the order of 'classes'"},
                {"name": "LABEL", "datatype": "BYTES", "config_type": "TYPE_STRING", "dims": [1],
                 "doc": "argmax class name"},
            ],
        }
    return {
        "max_batch_size": 256,
        "inputs": [{"name": "FEATURES", "datatype": "FP32", "dims": [F.INVOICE_DIM],
                    "doc": "raw invoice features, order 'feature_names' (features.invoice_raw_features)"}],
        "outputs": [{"name": "P_AUTO", "datatype": "FP32", "dims": [1],
                     "doc": "calibrated probability the invoice can be processed without a person"}],
    }


def _card_md(card: Mapping[str, Any]) -> str:
    m = card["metrics"]["test"]
    lines = [
        f"# Model card: {card['model']} {card['version']}", "",
        card["description"], "",
        f"- Triton model `{card['model']}` (version dir `{card['triton']['version_dir']}`), Python backend, numpy inference.",
        f"- Training data: `{card['training_data']['path']}` sha256 `{card['training_data']['sha256']}`"
        f" ({card['training_data']['rows']} rows; split train/validation/test = "
        f"{card['split']['train']}/{card['split']['validation']}/{card['split']['test']}).",
        f"- Seed {card['seed']}; trainer {card['trainer_version']}; featurizer sha256 "
        f"`{card['featurizer']['sha256']}`; weights sha256 `{card['weights']['sha256']}`.",
        f"- Features: {card['featurizer']['description']}",
        f"- Model: {card['algorithm']}", "",
        "## Held-out test metrics", "",
    ]
    if card["model"] == ROUTER:
        lines += [f"Classes (PROBS order): {', '.join(card['classes'])}", "",
                  "| class | training examples (all splits) |", "|---|---|"]
        lines += [f"| {c} | {n} |" for c, n in card["class_examples"].items()]
        lines += ["", "Packs: " + (", ".join(f"{p['name']} {p['version']} ({p['examples']} "
                                             f"examples, {p.get('look_alikes', 0)} look-alikes, "
                                             f"{p['source']})" for p in card["packs"])
                                   or "none"), "",
                  "| accuracy | macro-F1 | log-loss | ECE (15 bins) | Brier |", "|---|---|---|---|---|",
                  f"| {m['accuracy']:.4f} | {m['macro_f1']:.4f} | {m['log_loss']:.4f} | {m['ece']:.4f} | {m['brier']:.4f} |",
                  "", f"Temperature T = {card['calibration']['temperature']:.4f} (fitted on validation).", "",
                  "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
        for c, pc in m["per_class"].items():
            lines.append(f"| {c} | {pc['precision']:.3f} | {pc['recall']:.3f} | {pc['f1']:.3f} | {pc['support']} |")
    else:
        lines += [f"Feature order (FEATURES): {', '.join(card['feature_names'])}", "",
                  "| AUC | Brier | ECE (10 bins) | log-loss | auto-rate @0.8 | precision @0.8 |",
                  "|---|---|---|---|---|---|",
                  f"| {m['auc']:.4f} | {m['brier']:.4f} | {m['ece']:.4f} | {m['log_loss']:.4f} | "
                  f"{m['auto_rate_at_0.8']:.4f} | {m['precision_at_0.8']:.4f} |", "",
                  f"Platt scaling a = {card['calibration']['a']}, b = {card['calibration']['b']} (fitted on validation)."]
    lines += ["", "## Intended use and limitations", "", card["intended_use"], "", card["limitations"],
              "", "Drift baseline: `drift_baseline` in model_card.json (PSI via "
              "`features.population_stability_index`).", ""]
    return "\n".join(lines)


def _write_model(version_dir: Path, arrays: dict[str, np.ndarray], card: dict[str, Any]) -> None:
    version_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(version_dir / FEATURIZER_FILE, FEATURES_SOURCE.read_bytes())
    blob = npz_bytes(arrays)
    write_atomic(version_dir / WEIGHTS_FILE, blob)
    card["weights"] = {"file": WEIGHTS_FILE, "sha256": sha256_bytes(blob)}
    write_atomic(version_dir / CARD_MD_FILE, _card_md(card).encode("utf-8"))
    write_atomic(version_dir / CARD_FILE, (json.dumps(card, indent=2) + "\n").encode("utf-8"))


def _data_info(data_dir: Path, name: str) -> dict[str, Any]:
    path = data_dir / name
    manifest_path = data_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    return {"path": f"models/data/{name}", "sha256": datagen.sha256_file(path),
            "generator_version": manifest.get("generator_version"), "data_seed": manifest.get("seed")}


def verify_data(data_dir: Path) -> None:
    """Refuse to train on data whose sha256 differs from ``SHA256SUMS`` (shipped with it)."""
    sums_path = data_dir / "SHA256SUMS"
    if not sums_path.exists():
        raise SystemExit(f"{sums_path} missing: the corpus must ship with its sha256")
    for line in sums_path.read_text().splitlines():
        if not line.strip():
            continue
        digest, name = line.split(None, 1)
        actual = datagen.sha256_file(data_dir / name.strip())
        if actual != digest:
            raise SystemExit(f"{data_dir / name.strip()}: sha256 {actual} != {digest} in SHA256SUMS; "
                             "regenerate with --regenerate-data or restore the file")


def _router_model_py(repository: Path) -> bytes:
    """The Triton ``model.py`` of the router: the one in version dir 1 (tracked in git)."""
    for candidate in (repository / ROUTER / VERSION_DIR / MODEL_PY,
                      Path(__file__).resolve().parents[3] / "models" / "repository" / ROUTER
                      / VERSION_DIR / MODEL_PY):
        if candidate.is_file():
            return candidate.read_bytes()
    raise SystemExit(f"{repository / ROUTER / VERSION_DIR / MODEL_PY} missing: it ships with "
                     "the repository")


def _router_config(repository: Path, classes: Sequence[str]) -> bytes:
    """The router's ``config.pbtxt`` for ``classes``: the tracked file with the PROBS dims and
    the ``classes`` parameter set (so the output shape follows the class count)."""
    for candidate in (repository / ROUTER / CONFIG_FILE,
                      Path(__file__).resolve().parents[3] / "models" / "repository" / ROUTER
                      / CONFIG_FILE):
        if candidate.is_file():
            text = candidate.read_text("utf-8")
            break
    else:
        raise SystemExit(f"{repository / ROUTER / CONFIG_FILE} missing: it ships with the "
                         "repository")
    text, dims = re.subn(r'(name: "PROBS"\n(?:[^\n]*\n)*?\s*dims: \[ )\d+( \])',
                         rf"\g<1>{len(classes)}\g<2>", text, count=1)
    text, params = re.subn(r'(key: "classes"\n\s*value: \{ string_value: ")[^"]*(")',
                           rf"\g<1>{','.join(classes)}\g<2>", text, count=1)
    if dims != 1 or params != 1:
        raise SystemExit(f"{ROUTER}/{CONFIG_FILE}: no PROBS dims or classes parameter to set")
    return text.encode("utf-8")


def _write_router_config(repository: Path, classes: Sequence[str]) -> None:
    """Write ``config.pbtxt`` and ``labels.txt`` for the trained classes (unchanged files are
    left alone, so retraining the same classes does not touch tracked files)."""
    (repository / ROUTER).mkdir(parents=True, exist_ok=True)
    for name, blob in ((CONFIG_FILE, _router_config(repository, classes)),
                       (LABELS_FILE, ("\n".join(classes) + "\n").encode("utf-8"))):
        path = repository / ROUTER / name
        if not path.is_file() or path.read_bytes() != blob:
            write_atomic(path, blob)


def _router_card(res: Mapping[str, Any], data_dir: Path, tset: RouterTrainingSet, vdir: str,
                 semver: str, seed: int, hp: Mapping[str, Any], common: Mapping[str, Any],
                 feat_sha: str, split_doc: str) -> dict[str, Any]:
    card: dict[str, Any] = {
        "model": ROUTER, "version": semver, **common, "seed": seed,
        "description": f"Routes an incoming document (text) to one of {len(tset.classes)} "
                       "classes: one per enabled pack, and 'other'.",
        "classes": list(tset.classes),
        "class_examples": tset.class_examples(),
        "packs": [{"name": p.name, "version": p.version, "digest": p.digest,
                   "examples": len(p.examples), "look_alikes": len(p.look_alikes),
                   "source": p.source} for p in tset.packs],
        "packs_without_examples": list(tset.without_examples),
        "triton": {"name": ROUTER, "version_dir": vdir, "backend": "python",
                   **_triton_io(ROUTER, tset.classes)},
        "training_data": {**_data_info(data_dir, datagen.ROUTER_FILE), "rows": len(tset.rows),
                          "rows_sha256": tset.sha256(),
                          "sources": "the enabled packs' examples.jsonl and look_alikes.jsonl "
                                     "and models/data/"
                                     f"{datagen.ROUTER_FILE} (see services/decision/"
                                     "training/packs.py)"},
        "split": {"method": split_doc, **res["sizes"], "heldout_file": f"models/data/{ROUTER_HELDOUT}"},
        "featurizer": {"file": FEATURIZER_FILE, "sha256": feat_sha, "version": F.FEATURIZER_VERSION,
                       "description": (
                           f"NFKC + lower case + digits->0 + collapsed whitespace (<= {F.MAX_CHARS} chars); "
                           f"hashed UTF-8 byte n-grams n={list(F.CHAR_NGRAMS)} and word uni/bigrams "
                           f"(weight {F.WORD_WEIGHT}) into 2^{F.ROUTER_HASH_BITS} buckets; 1+ln(tf); row L2-normalized"),
                       "dim": F.ROUTER_DIM},
        "algorithm": "multinomial logistic regression (L2), mini-batch Adam, temperature-scaled softmax",
        "hyperparameters": dict(hp),
        "calibration": {"method": "temperature scaling on validation",
                        "temperature": _r(float(res["temperature"])),
                        "validation_ece_before": res["metrics"]["validation_uncalibrated"]["ece"],
                        "validation_ece_after": res["metrics"]["validation"]["ece"]},
        "metrics": res["metrics"],
        "drift_baseline": res["baseline"],
        "intended_use": "Route business documents to the pack that automates them (one class "
                        "per enabled pack); 'other' and low-confidence routes go to human review "
                        "(decision service threshold).",
        "limitations": "Trained on a synthetic, seeded corpus (models/data); expect lower accuracy on "
                       "real traffic, other languages and very long documents (truncated at "
                       f"{F.MAX_CHARS} chars). ~3% label noise and ambiguous templates cap accuracy.",
    }
    if vdir != VERSION_DIR:
        card["role"] = ("shadow candidate: served beside the live version, its outputs recorded "
                        "and never acted on until promoted (SWITCHYARD_ROUTER_VERSION)")
    return card


def router_set(data_dir: Path, packs: Sequence[PackExamples] | None = None
               ) -> RouterTrainingSet:
    """The router's classes and rows: the enabled packs' (None: the shipped packs) plus the
    shipped corpus in ``data_dir`` (services/decision/training/packs.py)."""
    if packs is None:
        packs = collect_packs()
    return router_training_set(packs, datagen.read_jsonl(Path(data_dir) / datagen.ROUTER_FILE))


def training_phases() -> int:
    """How many phases :func:`train_all` reports to ``on_phase``: one per model version it
    builds (the router, its shadow candidates, the cascade's text encoder, invoice risk,
    engagement)."""
    return len(_version_dirs()) + 2


def train_all(data_dir: Path, repository: Path, seed: int = DEFAULT_SEED,
              log: Any = print, packs: Sequence[PackExamples] | None = None,
              on_phase: Callable[[str], None] | None = None,
              engagement_threshold: float | None = None) -> dict[str, Any]:
    """Train every model into ``repository``; the router's classes are the enabled ``packs``
    (None: the shipped ones) and ``other``; the engagement model's fairness is measured at
    ``engagement_threshold`` (None: signal_disengaged_below's default). ``on_phase(name)`` is
    called as each model version is written (:func:`training_phases` of them), e.g. for a
    progress bar."""
    from services.decision.training import engagement

    data_dir, repository = Path(data_dir), Path(repository)
    verify_data(data_dir)
    tset = router_set(data_dir, packs)
    t_all = time.perf_counter()
    feat_sha = featurizer_sha256()
    split_doc = "sha256(id) mod 100: < 70 train, < 85 validation, else test"
    common = {"seed": seed, "trainer_version": TRAINER_VERSION, "framework": f"numpy {np.__version__}"}

    # document router: the live version, then the shadow candidates (same split, other seeds)
    router_rows = list(tset.rows)
    builds: list[tuple[str, str, int, Mapping[str, Any]]] = [
        (VERSION_DIR, MODEL_VERSIONS[ROUTER], seed, ROUTER_HPARAMS)]
    builds += [(vdir, spec["version"], seed + spec["seed_offset"], spec["hyperparameters"])
               for vdir, spec in ROUTER_CANDIDATES.items()]
    card: dict[str, Any] = {}
    for vdir, semver, vseed, hp in builds:
        res = train_router(router_rows, vseed, hp, tset.classes)
        vcard = _router_card(res, data_dir, tset, vdir, semver, vseed, hp, common,
                             feat_sha, split_doc)
        meta = {"model": ROUTER, "version": semver, "classes": list(tset.classes),
                "featurizer_sha256": feat_sha, "featurizer_version": F.FEATURIZER_VERSION,
                "seed": vseed}
        arrays = {"weights": res["weights"], "bias": res["bias"],
                  "temperature": np.asarray(res["temperature"], dtype=np.float32),
                  "meta": np.asarray(json.dumps(meta, sort_keys=True))}
        _write_model(repository / ROUTER / vdir, arrays, vcard)
        if vdir == VERSION_DIR:
            card = vcard
            write_atomic(data_dir / ROUTER_HELDOUT, datagen.jsonl_bytes(res["heldout"]))
        else:  # the same Triton model.py serves every version directory
            write_atomic(repository / ROUTER / vdir / MODEL_PY, _router_model_py(repository))
        log(f"[train] {ROUTER} {semver} (dir {vdir}): {len(tset.classes)} classes, fit {res['fit_seconds']:.1f}s on "
            f"{res['sizes']['train']} docs (nnz {res['nnz_train']}), "
            f"T={float(res['temperature']):.3f}, test acc "
            f"{res['metrics']['test']['accuracy']:.4f} macro-F1 {res['metrics']['test']['macro_f1']:.4f} "
            f"log-loss {res['metrics']['test']['log_loss']:.4f} ECE {res['metrics']['test']['ece']:.4f}")
        if on_phase is not None:
            on_phase(f"{ROUTER} {semver}")

    _write_router_config(repository, tset.classes)
    # the cascade's second stage, on the same rows and classes (services/decision/training/
    # cascade.py): the router and it always know the same types
    encoder_card = cascade.train(router_rows, tset.classes, seed, repository,
                                 {**_data_info(data_dir, datagen.ROUTER_FILE),
                                  "rows_sha256": tset.sha256()}, log=log)
    if on_phase is not None:
        on_phase(f"{cascade.MODEL} {cascade.MODEL_VERSION}")
    log(f"[train] {ROUTER} classes: " + ", ".join(
        f"{c} ({n})" for c, n in tset.class_examples().items()))
    if tset.without_examples:
        log(f"[train] no class for {', '.join(tset.without_examples)}: no examples")

    # invoice risk
    inv_rows = datagen.read_jsonl(data_dir / datagen.INVOICE_FILE)
    ires = train_invoice(inv_rows, seed)
    p = ires["params"]
    imeta = {"model": INVOICE, "version": MODEL_VERSIONS[INVOICE], "feature_names": list(F.INVOICE_FEATURES),
             "design_names": list(F.INVOICE_DESIGN), "featurizer_sha256": feat_sha,
             "featurizer_version": F.FEATURIZER_VERSION, "seed": seed}
    icard: dict[str, Any] = {
        "model": INVOICE, "version": MODEL_VERSIONS[INVOICE], **common,
        "description": "Probability that an extracted invoice can be processed without a person.",
        "feature_names": list(F.INVOICE_FEATURES),
        "triton": {"name": INVOICE, "version_dir": VERSION_DIR, "backend": "python", **_triton_io(INVOICE)},
        "training_data": {**_data_info(data_dir, datagen.INVOICE_FILE), "rows": len(inv_rows)},
        "split": {"method": split_doc, **ires["sizes"], "heldout_file": f"models/data/{INVOICE_HELDOUT}"},
        "featurizer": {"file": FEATURIZER_FILE, "sha256": feat_sha, "version": F.FEATURIZER_VERSION,
                       "description": "raw FEATURES (features.invoice_raw_features) -> design columns "
                                      + ", ".join(F.INVOICE_DESIGN) + "; standardized with training mean/std",
                       "design_names": list(F.INVOICE_DESIGN)},
        "algorithm": "L2 logistic regression (Newton/IRLS) on standardized design, Platt-scaled",
        "hyperparameters": INVOICE_HPARAMS,
        "calibration": {**ires["calibration"],
                        "validation_ece_before": ires["metrics"]["validation_uncalibrated"]["ece"],
                        "validation_ece_after": ires["metrics"]["validation"]["ece"]},
        "coefficients": {n: _r(c) for n, c in zip(F.INVOICE_DESIGN, p["coef"])},
        "metrics": ires["metrics"],
        "drift_baseline": ires["baseline"],
        "intended_use": "Gate straight-through processing of invoices: P_AUTO >= the decision "
                        "service's auto_execute_threshold executes, below goes to review.",
        "limitations": "Synthetic ground truth (datagen.generate_invoice_corpus) with 2% label noise; "
                       "vendor history and duplicate checks are inputs the caller must supply.",
    }
    iarrays = invoice_arrays(p, imeta)
    _write_model(repository / INVOICE / VERSION_DIR, iarrays, icard)
    write_atomic(data_dir / INVOICE_HELDOUT, datagen.jsonl_bytes(ires["heldout"]))
    m = ires["metrics"]["test"]
    log(f"[train] {INVOICE}: fit {ires['fit_seconds']:.2f}s, test AUC {m['auc']:.4f} Brier "
        f"{m['brier']:.4f} ECE {m['ece']:.4f}")
    if on_phase is not None:
        on_phase(f"{INVOICE} {MODEL_VERSIONS[INVOICE]}")
    ecard = engagement.train(data_dir, repository, engagement.DEFAULT_THRESHOLD
                             if engagement_threshold is None else engagement_threshold, log=log)
    if on_phase is not None:
        on_phase(f"{engagement.MODEL} {engagement.MODEL_VERSION}")
    total = time.perf_counter() - t_all
    log(f"[train] done in {total:.1f}s -> {repository}")
    return {"router": card, "text_encoder": encoder_card, "invoice": icard, "engagement": ecard,
            "seconds": total}


def invoice_arrays(p: Mapping[str, Any], meta: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """invoice_risk's weights.npz arrays: its fitted parameters and ``meta``."""
    return {"mean": p["mean"].astype(np.float64), "scale": p["scale"].astype(np.float64),
            "coef": p["coef"].astype(np.float64),
            "intercept": np.asarray(p["intercept"], np.float64),
            "platt_a": np.asarray(p["platt_a"], np.float64),
            "platt_b": np.asarray(p["platt_b"], np.float64),
            "meta": np.asarray(json.dumps(meta, sort_keys=True))}


def load_params(version_dir: Path) -> dict[str, np.ndarray]:
    with np.load(Path(version_dir) / WEIGHTS_FILE, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _version_dirs() -> list[tuple[str, str, str, int]]:
    """``(model, version dir, semantic version, seed offset)`` of every artifact training builds."""
    dirs = [(ROUTER, VERSION_DIR, MODEL_VERSIONS[ROUTER], 0)]
    dirs += [(ROUTER, vdir, spec["version"], spec["seed_offset"])
             for vdir, spec in ROUTER_CANDIDATES.items()]
    return dirs + [(INVOICE, VERSION_DIR, MODEL_VERSIONS[INVOICE], 0)]


def artifacts_status(data_dir: Path, repository: Path, seed: int | None = None,
                     packs: Sequence[PackExamples] | None = None) -> str | None:
    """None when every artifact exists and matches the data (the corpus and the enabled
    ``packs``; None: the shipped ones), featurizer, trainer (and seed)."""
    data_dir, repository = Path(data_dir), Path(repository)
    tset = router_set(data_dir, packs)
    feat_sha = featurizer_sha256()
    wanted = {ROUTER: (datagen.ROUTER_FILE, ROUTER_HELDOUT), INVOICE: (datagen.INVOICE_FILE, INVOICE_HELDOUT)}
    for model, version_dir, semver, seed_offset in _version_dirs():
        data_file, heldout = wanted[model]
        vdir = repository / model / version_dir
        files = [WEIGHTS_FILE, FEATURIZER_FILE, CARD_FILE, CARD_MD_FILE]
        if version_dir != VERSION_DIR:
            files.append(MODEL_PY)
        for f in files:
            if not (vdir / f).exists():
                return f"{vdir / f} missing"
        if not (data_dir / heldout).exists():
            return f"{data_dir / heldout} missing"
        try:
            card = json.loads((vdir / CARD_FILE).read_text())
        except ValueError:
            return f"{vdir / CARD_FILE} unreadable"
        if card.get("training_data", {}).get("sha256") != datagen.sha256_file(data_dir / data_file):
            return f"{model}: training data changed"
        if card.get("featurizer", {}).get("sha256") != feat_sha:
            return f"{model}: featurizer changed"
        if datagen.sha256_file(vdir / FEATURIZER_FILE) != feat_sha:
            return f"{model}: {FEATURIZER_FILE} differs from features.py"
        if card.get("trainer_version") != TRAINER_VERSION or card.get("version") != semver:
            return f"{model}: trainer or model version changed"
        if card.get("weights", {}).get("sha256") != datagen.sha256_file(vdir / WEIGHTS_FILE):
            return f"{model}: weights differ from the card"
        if model == ROUTER and (card.get("classes") != list(tset.classes) or card.get(
                "training_data", {}).get("rows_sha256") != tset.sha256()):
            return f"{model}: classes or pack examples changed"
        if seed is not None and card.get("seed") != seed + seed_offset:
            return f"{model}: trained with seed {card.get('seed')}, not {seed + seed_offset}"
        if version_dir != VERSION_DIR and (vdir / MODEL_PY).read_bytes() != _router_model_py(repository):
            return f"{model}: {vdir / MODEL_PY} differs from version {VERSION_DIR}'s"
    config = repository / ROUTER / CONFIG_FILE
    if not config.is_file() or config.read_bytes() != _router_config(repository, tset.classes):
        return f"{config} does not match the classes {', '.join(tset.classes)}"
    return cascade.artifacts_status(repository, tset.classes, tset.sha256(), seed)


def clean(repository: Path, data_dir: Path) -> None:
    for model, version_dir, _, _ in _version_dirs():
        vdir = Path(repository) / model / version_dir
        files = [WEIGHTS_FILE, FEATURIZER_FILE, CARD_FILE, CARD_MD_FILE]
        if version_dir != VERSION_DIR:
            files.append(MODEL_PY)  # a copy; version 1's model.py is the tracked source
        for f in files:
            (vdir / f).unlink(missing_ok=True)
        shutil.rmtree(vdir / "__pycache__", ignore_errors=True)
    for f in (ROUTER_HELDOUT, INVOICE_HELDOUT):
        (Path(data_dir) / f).unlink(missing_ok=True)
    encoder_dir = Path(repository) / cascade.MODEL / VERSION_DIR
    for f in (cascade.HEAD_FILE, cascade.ENCODER_FILE, CARD_FILE, CARD_MD_FILE):
        (encoder_dir / f).unlink(missing_ok=True)   # the fetched weights stay: 83 MB
