"""The ``engagement`` model: train, calibrate, evaluate (holdout, a second generator, edge
cases, fairness per group) and package it for Triton, in numpy.

Features: :meth:`SubjectWindow.from_counts(row["counts"]).vector(row["audio_level"])` -- the
same code the engagement processor scores with (``FEATURE_NAMES`` order). Model: L2 logistic
regression (Newton/IRLS) on standardized features, ``slouched_share`` given no weight and a
demographic-parity penalty on the training logits (the group is a training input only; see
:func:`fit`), Platt-scaled on the validation split;
``P_ENGAGED = sigmoid(a * ((x - mean) / scale . coef + intercept) + b)``, computed by
:func:`p_engaged` here and by the same expression in ``models/repository/engagement/1/model.py``
(``tests/models_engagement`` holds them to 1e-5 apart through a real Triton).

Artifacts in ``<repository>/engagement/<version dir>/``: ``weights.npz``, ``model_card.json``,
``MODEL_CARD.md`` (and ``model.py`` / ``../config.pbtxt`` copied from the checkout when the
repository is another directory). Fairness is measured at the alert threshold
(``signal_disengaged_below``): a window is an *alert* when ``P_ENGAGED`` is below it.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from services.decision.engagement.features import FEATURE_NAMES, SubjectWindow
from services.decision.training import datagen
from services.decision.training import engagement_data as D
from services.decision.training.train import (
    CARD_FILE,
    CARD_MD_FILE,
    CONFIG_FILE,
    MODEL_PY,
    WEIGHTS_FILE,
    _r,
    write_atomic,
    auc,
    ece,
    fit_logistic,
    fit_platt,
    npz_bytes,
    sha256_bytes,
    split_of,
)

MODEL = "engagement"
MODEL_VERSION = "1.0.0"
TRAINER_VERSION = "1"
VERSION_DIR = "1"
HELDOUT_FILE = "engagement_heldout.jsonl"
HPARAMS: dict[str, Any] = {"solver": "newton-irls", "iterations": 50, "l2": 1.0,
                           "excluded_features": ["slouched_share"],
                           "penalty_grid": [0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0],
                           "target_parity_difference": 0.05}
#: Why a feature gets no weight (its coefficient is fixed at 0; the input stays for the schema).
EXCLUSIONS = {"slouched_share": "the rubric does not mention posture beyond leaning forward, "
                                "and slouching is a habit of some students (group b in the data) "
                                "whatever they attend to"}
#: the alert threshold the card's fairness figures use when none is given
#: (Settings.signal_disengaged_below's default)
DEFAULT_THRESHOLD = 0.35
ARTIFACTS = (WEIGHTS_FILE, CARD_FILE, CARD_MD_FILE)
TRACKED = Path(__file__).resolve().parents[3] / "models" / "repository" / MODEL


# -- features and inference --------------------------------------------------------------------


def feature_matrix(rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """FP32 inputs, FEATURE_NAMES order, built by SubjectWindow exactly as serving builds them."""
    return np.asarray([SubjectWindow.from_counts(dict(r["counts"])).vector(float(r["audio_level"]))
                       for r in rows], dtype=np.float32).reshape(-1, len(FEATURE_NAMES))


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def p_engaged(X: np.ndarray, params: Mapping[str, np.ndarray]) -> np.ndarray:
    """P(engaged) for FP32 rows, in float64 -- the expression model.py runs under Triton."""
    z = ((np.asarray(X, np.float32).astype(np.float64) - params["mean"]) / params["scale"]) \
        @ params["coef"] + params["intercept"]
    return sigmoid(params["platt_a"] * z + params["platt_b"])


# -- metrics -----------------------------------------------------------------------------------


def metrics(p: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Accuracy at 0.5, AUC, Brier, log-loss and ECE of P(engaged) against the labels."""
    p = np.asarray(p, np.float64)
    y = np.asarray(y, np.float64)
    pc = np.clip(p, 1e-12, 1 - 1e-12)
    return {"n": int(y.size), "engaged_rate": _r(y.mean()),
            "accuracy": _r(((p >= 0.5) == (y > 0.5)).mean()),
            "auc": _r(auc(p, y)), "brier": _r(((p - y) ** 2).mean()),
            "log_loss": _r(-(y * np.log(pc) + (1 - y) * np.log(1 - pc)).mean()),
            "ece": _r(ece(p, y, bins=10))}


def reliability(p: np.ndarray, y: np.ndarray, bins: int = 10) -> list[dict[str, Any]]:
    """Per equal-width bin of P(engaged): count, mean prediction, observed engaged rate."""
    p = np.asarray(p, np.float64)
    y = np.asarray(y, np.float64)
    idx = np.minimum((p * bins).astype(np.int64), bins - 1)
    out = []
    for b in range(bins):
        m = idx == b
        if m.any():
            out.append({"bin": [b / bins, (b + 1) / bins], "n": int(m.sum()),
                        "mean_p": _r(p[m].mean()), "engaged_rate": _r(y[m].mean())})
    return out


def fairness(p: np.ndarray, y: np.ndarray, groups: Sequence[str],
             threshold: float) -> dict[str, Any]:
    """Alert rates per group at ``threshold`` (alert = P(engaged) < threshold), the demographic
    parity difference (largest minus smallest alert rate) and the equalised-odds gaps: the
    spread across groups of the alert rate among windows labelled disengaged (true alert rate)
    and among windows labelled engaged (false alert rate); ``equalized_odds_difference`` is the
    larger of the two. Groups without any such window are left out of that gap."""
    p = np.asarray(p, np.float64)
    y = np.asarray(y).astype(bool)
    g = np.asarray(groups)
    alert = p < threshold
    per_group: dict[str, Any] = {}
    for name in sorted(set(g.tolist())):
        m = g == name
        dis, eng = m & ~y, m & y
        per_group[name] = {
            "n": int(m.sum()),
            "disengaged_rate": _r((~y[m]).mean()),
            "alert_rate": _r(alert[m].mean()),
            "true_alert_rate": _r(alert[dis].mean()) if dis.any() else None,
            "false_alert_rate": _r(alert[eng].mean()) if eng.any() else None,
        }

    def spread(key: str) -> float:
        values = [v[key] for v in per_group.values() if v[key] is not None]
        return _r(max(values) - min(values)) if values else 0.0

    tpr_gap, fpr_gap = spread("true_alert_rate"), spread("false_alert_rate")
    return {"threshold": threshold, "alert": f"P_ENGAGED < {threshold}", "groups": per_group,
            "demographic_parity_difference": spread("alert_rate"),
            "true_alert_rate_gap": tpr_gap, "false_alert_rate_gap": fpr_gap,
            "equalized_odds_difference": max(tpr_gap, fpr_gap)}


# -- training ----------------------------------------------------------------------------------


def fit_fair_logistic(Z: np.ndarray, y: np.ndarray, groups: np.ndarray, l2: float,
                      penalty: float, iterations: int) -> tuple[np.ndarray, float]:
    """L2 logistic regression (Newton) plus a demographic-parity penalty on the logits:
    ``penalty * n / 2 * sum_g (mean logit of group g - mean logit of all)^2``. The penalty is
    quadratic in the weights (each group's mean logit is linear in them), so Newton's method
    stays exact. The group is used only here, in training; serving never sees it."""
    n, d = Z.shape
    A = np.hstack([np.ones((n, 1)), Z])
    G = np.array([A[groups == g].mean(axis=0) - A.mean(axis=0) for g in sorted(set(groups.tolist()))])
    P = penalty * n * (G.T @ G)
    w = np.zeros(d + 1)
    reg = np.full(d + 1, l2)
    reg[0] = 0.0
    for _ in range(iterations):
        pr = sigmoid(A @ w)
        grad = A.T @ (pr - y) + reg * w + P @ w
        H = (A * (pr * (1 - pr))[:, None]).T @ A + np.diag(reg) + P + 1e-9 * np.eye(d + 1)
        step = np.linalg.solve(H, grad)
        w -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    return w[1:], float(w[0])


def fit(rows: Sequence[Mapping[str, Any]], threshold: float = DEFAULT_THRESHOLD,
        excluded: Sequence[str] | None = None, penalty: float | None = None,
        ablation: bool = True) -> dict[str, Any]:
    """Fit on the train split, calibrate on validation, evaluate the frozen test split, the
    episode-style windows and the edge cases.

    ``excluded`` features (default ``HPARAMS["excluded_features"]``) get a zero coefficient.
    ``penalty`` is the parity penalty's weight; None searches ``HPARAMS["penalty_grid"]`` for
    the smallest whose calibrated *validation* parity difference is at most
    ``HPARAMS["target_parity_difference"]`` (the largest when none is). With ``ablation`` the
    plain fit (every feature, no penalty) is evaluated too, so the card shows what the
    mitigation does."""
    excluded = list(HPARAMS["excluded_features"] if excluded is None else excluded)
    keep = np.array([n not in excluded for n in FEATURE_NAMES])
    parts: dict[str, list[Mapping[str, Any]]] = {"train": [], "validation": [], "test": []}
    for r in rows:
        parts[split_of(str(r["id"]))].append(r)
    X = {s: feature_matrix(parts[s]) for s in parts}
    y = {s: np.array([float(r["label"]) for r in parts[s]]) for s in parts}
    g = {s: np.array([str(r["group"]) for r in parts[s]]) for s in parts}
    t0 = time.perf_counter()
    Xt = X["train"].astype(np.float64)
    mean = Xt.mean(axis=0)
    scale = Xt.std(axis=0)
    scale[scale < 1e-9] = 1.0

    def candidate(lam: float) -> tuple[dict[str, Any], dict[str, Any]]:
        kept, intercept = fit_fair_logistic(((Xt - mean) / scale)[:, keep], y["train"], g["train"],
                                            HPARAMS["l2"], lam, HPARAMS["iterations"])
        coef = np.zeros(len(FEATURE_NAMES))
        coef[keep] = kept
        params: dict[str, Any] = {"mean": mean, "scale": scale, "coef": coef,
                                  "intercept": np.float64(intercept),
                                  "platt_a": np.float64(1.0), "platt_b": np.float64(0.0)}
        uncal = metrics(p_engaged(X["validation"], params), y["validation"])
        logit = (X["validation"].astype(np.float64) - mean) / scale @ coef + intercept
        a, b = fit_platt(logit, y["validation"])
        params["platt_a"], params["platt_b"] = np.float64(a), np.float64(b)
        return params, uncal

    search = []
    grid = list(HPARAMS["penalty_grid"]) if penalty is None else [float(penalty)]
    for lam in grid:
        params, uncal = candidate(lam)
        vp = p_engaged(X["validation"], params)
        vf = fairness(vp, y["validation"], g["validation"], threshold)
        search.append({"penalty": lam, "validation_parity_difference": vf["demographic_parity_difference"],
                       "validation_auc": metrics(vp, y["validation"])["auc"]})
        if vf["demographic_parity_difference"] <= HPARAMS["target_parity_difference"]:
            break
    chosen = search[-1]["penalty"]
    a, b = float(params["platt_a"]), float(params["platt_b"])
    fit_s = time.perf_counter() - t0

    test_p = p_engaged(X["test"], params)
    episodes = D.episode_windows()
    ep_p = p_engaged(feature_matrix(episodes), params)
    ep_y = np.array([float(r["label"]) for r in episodes])
    edge_p = p_engaged(feature_matrix(D.EDGE_CASES), params)
    edge = [{"case": c["case"], "label": c["label"], "p_engaged": _r(p, 4),
             "correct": bool((p >= 0.5) == bool(c["label"]))} for c, p in zip(D.EDGE_CASES, edge_p)]
    return {
        "params": params, "fit_seconds": fit_s, "sizes": {s: len(parts[s]) for s in parts},
        "metrics": {"validation_uncalibrated": uncal,
                    "validation": metrics(p_engaged(X["validation"], params), y["validation"]),
                    "test": metrics(test_p, y["test"]),
                    "episodes": {**metrics(ep_p, ep_y), "generator": "engagement_data.episode_windows",
                                 "seed": D.EPISODE_SEED},
                    "edge_cases": {"n": len(edge), "accuracy": _r(np.mean([e["correct"] for e in edge])),
                                   "cases": edge}},
        "calibration": {"method": "platt (on validation)", "a": _r(a), "b": _r(b),
                        "validation_ece_before": uncal["ece"],
                        "test_reliability": reliability(test_p, y["test"])},
        "fairness": {"test": fairness(test_p, y["test"], [str(r["group"]) for r in parts["test"]], threshold),
                     "episodes": fairness(ep_p, ep_y, [str(r["group"]) for r in episodes], threshold)},
        "heldout": parts["test"],
        "mitigation": {"excluded_features": excluded,
                       "excluded_why": {f: EXCLUSIONS.get(f, "") for f in excluded},
                       "parity_penalty": chosen, "penalty_search": search,
                       "target_parity_difference": HPARAMS["target_parity_difference"]},
        "ablation": _ablation(rows, threshold) if ablation and (excluded or chosen) else None,
    }


def _ablation(rows: Sequence[Mapping[str, Any]], threshold: float) -> dict[str, Any]:
    """The same fit with every feature: its holdout metrics and fairness."""
    res = fit(rows, threshold, excluded=[], penalty=0.0, ablation=False)
    return {"excluded_features": [], "parity_penalty": 0.0,
            "metrics": {"test": res["metrics"]["test"], "episodes": res["metrics"]["episodes"],
                        "edge_cases": res["metrics"]["edge_cases"]},
            "fairness": {"test": res["fairness"]["test"]},
            "coefficients": {n: _r(c) for n, c in zip(FEATURE_NAMES, res["params"]["coef"])}}


def _data_info(path: Path, rows: int) -> dict[str, Any]:
    shipped = path.resolve() == (datagen_dir() / D.DATA_FILE).resolve()
    return {"path": f"models/data/{D.DATA_FILE}" if shipped else path.name,
            "sha256": datagen.sha256_file(path), "rows": rows,
            "generator": "services.decision.training.engagement_data.simulate_windows",
            "generator_version": D.GENERATOR_VERSION}


def datagen_dir() -> Path:
    from services.decision.training import default_paths

    return default_paths()[0]


def card_for(res: Mapping[str, Any], data: Path, rows: int, version: str, version_dir: str,
             threshold: float, weights_sha: str) -> dict[str, Any]:
    p = res["params"]
    return {
        "model": MODEL, "version": version, "trainer_version": TRAINER_VERSION,
        "framework": f"numpy {np.__version__}",
        "description": "Probability that an observer following the rubric in "
                       "docs/engagement-model.md marks one student's window as engaged.",
        "feature_names": list(FEATURE_NAMES),
        "features": "services.decision.engagement.features.SubjectWindow.vector "
                    "(the serving code path)",
        "triton": {"name": MODEL, "version_dir": version_dir, "backend": "python",
                   "max_batch_size": 4096,
                   "inputs": [{"name": "FEATURES", "datatype": "FP32", "dims": [len(FEATURE_NAMES)]}],
                   "outputs": [{"name": "P_ENGAGED", "datatype": "FP32", "dims": [1]}]},
        "training_data": _data_info(data, rows),
        "split": {"method": "sha256(id) mod 100: < 70 train, < 85 validation, else test",
                  **res["sizes"]},
        "algorithm": "L2 logistic regression (Newton/IRLS) on standardized features with a "
                     "demographic-parity penalty on the training logits, Platt-scaled",
        "hyperparameters": HPARAMS,
        "mitigation": res["mitigation"],
        "ablation": res["ablation"],
        "coefficients": {n: _r(c) for n, c in zip(FEATURE_NAMES, p["coef"])},
        "intercept": _r(p["intercept"]),
        "calibration": res["calibration"],
        "metrics": res["metrics"],
        "fairness": res["fairness"],
        "alert_threshold": threshold,
        "weights": {"file": WEIGHTS_FILE, "sha256": weights_sha},
        "intended_use": "Score windows of students whose guardians consented, to suggest a "
                        "teacher or counsellor check-in after sustained low scores; never a "
                        "grade, never a decision about a student by itself.",
        "limitations": "Trained on simulated, rubric-labelled windows (no real classroom). The "
                       "camera cannot tell note-taking from a phone, so students who write a "
                       "lot head down (group c in the data) are alerted more often; the parity "
                       "penalty narrows, not closes, that gap. A linear model: a student "
                       "attentive for the few seconds they were present can score as engaged "
                       "although the rubric marks a mostly absent window disengaged (see the "
                       "edge cases) -- attendance is watched separately. Observers' own lines "
                       "and slips are label noise.",
    }


def card_md(card: Mapping[str, Any]) -> str:
    """The Markdown model card: the figures of ``model_card.json``."""
    rows = [("holdout (test split)", card["metrics"]["test"]),
            ("episode-style windows", card["metrics"]["episodes"])]
    f = card["fairness"]["test"]
    lines = [
        f"# Model card: {card['model']} {card['version']}", "", card["description"], "",
        f"- Triton model `{MODEL}` (version dir `{card['triton']['version_dir']}`), Python backend, "
        "numpy inference; input FEATURES FP32 "
        f"[{len(card['feature_names'])}] ({', '.join(card['feature_names'])}), output P_ENGAGED FP32 [1].",
        f"- Training data: `{card['training_data']['path']}` sha256 `{card['training_data']['sha256']}` "
        f"({card['training_data']['rows']} windows; train/validation/test = "
        f"{card['split']['train']}/{card['split']['validation']}/{card['split']['test']}).",
        f"- Weights sha256 `{card['weights']['sha256']}`; trainer {card['trainer_version']}.",
        f"- Model: {card['algorithm']}.", "",
        "## Metrics", "",
        "| data | n | accuracy | AUC | Brier | log-loss | ECE |", "|---|---|---|---|---|---|---|",
    ]
    lines += [f"| {name} | {m['n']} | {m['accuracy']:.4f} | {m['auc']:.4f} | {m['brier']:.4f} | "
              f"{m['log_loss']:.4f} | {m['ece']:.4f} |" for name, m in rows]
    e = card["metrics"]["edge_cases"]
    lines += ["", f"Hand-written edge cases: {sum(c['correct'] for c in e['cases'])}/{e['n']} right.", ""]
    plain = (card.get("ablation") or {}).get("metrics", {}).get("edge_cases", {}).get("cases")
    if plain:
        lines += ["| case | rubric label | P_ENGAGED | every feature, no penalty |", "|---|---|---|---|"]
        lines += [f"| {c['case']} | {'engaged' if c['label'] else 'disengaged'} | {c['p_engaged']:.4f} | "
                  f"{u['p_engaged']:.4f} |" for c, u in zip(e["cases"], plain)]
    else:
        lines += ["| case | rubric label | P_ENGAGED |", "|---|---|---|"]
        lines += [f"| {c['case']} | {'engaged' if c['label'] else 'disengaged'} | {c['p_engaged']:.4f} |"
                  for c in e["cases"]]
    c = card["calibration"]
    lines += ["", "## Calibration", "",
              f"Platt scaling a = {c['a']}, b = {c['b']} (validation ECE before: "
              f"{c['validation_ece_before']:.4f}, after: {card['metrics']['validation']['ece']:.4f}).", "",
              "| P_ENGAGED bin | n | mean P | engaged rate |", "|---|---|---|---|"]
    lines += [f"| {b['bin'][0]:.1f}-{b['bin'][1]:.1f} | {b['n']} | {b['mean_p']:.3f} | "
              f"{b['engaged_rate']:.3f} |" for b in c["test_reliability"]]
    mit = card["mitigation"]
    lines += ["", "## Mitigation", "",
              f"- Features given no weight: {', '.join(mit['excluded_features']) or 'none'}"
              + "".join(f" ({k}: {v})" for k, v in mit["excluded_why"].items() if v) + ".",
              f"- Parity penalty weight {mit['parity_penalty']} (the smallest of "
              f"{[s['penalty'] for s in mit['penalty_search']]} tried in turn whose validation "
              f"parity difference is at most {mit['target_parity_difference']}; group used in "
              "training only)."]
    ab = card.get("ablation")
    if ab:
        am, af = ab["metrics"]["test"], ab["fairness"]["test"]
        lines += ["", "| holdout | AUC | Brier | parity difference | equalised odds | alert rates |",
                  "|---|---|---|---|---|---|"]
        for name, m_, f_ in (("this model", card["metrics"]["test"], f),
                             ("every feature, no penalty", am, af)):
            lines.append(f"| {name} | {m_['auc']:.4f} | {m_['brier']:.4f} | "
                         f"{f_['demographic_parity_difference']:.4f} | {f_['equalized_odds_difference']:.4f} | "
                         + ", ".join(f"{k} {v['alert_rate']:.4f}" for k, v in f_["groups"].items()) + " |")
    lines += ["", f"## Fairness (alert: {f['alert']})", "",
              "| group | n | labelled disengaged | alert rate | true alert rate | false alert rate |",
              "|---|---|---|---|---|---|"]
    for name, g in f["groups"].items():
        lines.append(f"| {name} | {g['n']} | {g['disengaged_rate']:.4f} | {g['alert_rate']:.4f} | "
                     f"{g['true_alert_rate']:.4f} | {g['false_alert_rate']:.4f} |")
    ep = card["fairness"]["episodes"]
    lines += ["", f"Demographic parity difference: {f['demographic_parity_difference']:.4f} (holdout), "
              f"{ep['demographic_parity_difference']:.4f} (episode-style windows).",
              f"Equalised-odds gaps: true alert rate {f['true_alert_rate_gap']:.4f}, false alert rate "
              f"{f['false_alert_rate_gap']:.4f} (holdout).", "",
              "## Intended use and limitations", "", card["intended_use"], "", card["limitations"], ""]
    return "\n".join(lines)


def write_version(version_dir: Path, res: Mapping[str, Any], data: Path, rows: int,
                  version: str = MODEL_VERSION, threshold: float = DEFAULT_THRESHOLD
                  ) -> dict[str, Any]:
    """Write weights.npz, model_card.json and MODEL_CARD.md into ``version_dir``."""
    version_dir = Path(version_dir)
    version_dir.mkdir(parents=True, exist_ok=True)
    p = res["params"]
    meta = {"model": MODEL, "version": version, "feature_names": list(FEATURE_NAMES)}
    blob = npz_bytes({k: np.asarray(p[k], np.float64) for k in
                      ("mean", "scale", "coef", "intercept", "platt_a", "platt_b")}
                     | {"meta": np.asarray(json.dumps(meta, sort_keys=True))})
    write_atomic(version_dir / WEIGHTS_FILE, blob)
    card = card_for(res, data, rows, version, version_dir.name, threshold, sha256_bytes(blob))
    write_atomic(version_dir / CARD_MD_FILE, card_md(card).encode("utf-8"))
    write_atomic(version_dir / CARD_FILE, (json.dumps(card, indent=2) + "\n").encode("utf-8"))
    return card


def ensure_model_files(repository: Path, version_dir: str = VERSION_DIR) -> None:
    """A model directory Triton can load: ``config.pbtxt`` and the version's ``model.py``, copied
    from this checkout when ``repository`` is another directory (or a promoted version)."""
    target = Path(repository) / MODEL
    for rel in (CONFIG_FILE, f"{version_dir}/{MODEL_PY}"):
        src = TRACKED / (rel if rel == CONFIG_FILE else f"{VERSION_DIR}/{MODEL_PY}")
        dst = target / rel
        if not dst.exists() or (rel != CONFIG_FILE and dst.read_bytes() != src.read_bytes()):
            dst.parent.mkdir(parents=True, exist_ok=True)
            if dst.resolve() != src.resolve():
                shutil.copyfile(src, dst)


def read_rows(path: Path) -> list[dict[str, Any]]:
    return datagen.read_jsonl(path)  # type: ignore[return-value]


def train(data_dir: Path, repository: Path, threshold: float = DEFAULT_THRESHOLD,
          log: Any = print) -> dict[str, Any]:
    """Train version 1 from the shipped windows into ``repository`` (the held-out split goes to
    ``data_dir/engagement_heldout.jsonl``)."""
    data = Path(data_dir) / D.DATA_FILE
    rows = read_rows(data)
    res = fit(rows, threshold)
    ensure_model_files(repository)
    card = write_version(Path(repository) / MODEL / VERSION_DIR, res, data, len(rows),
                         threshold=threshold)
    write_atomic(Path(data_dir) / HELDOUT_FILE, datagen.jsonl_bytes(res["heldout"]))
    log(summary(card))
    return card


def summary(card: Mapping[str, Any]) -> str:
    """The one line training prints (docs/engagement-model.md quotes it)."""
    m, ep, f = card["metrics"]["test"], card["metrics"]["episodes"], card["fairness"]["test"]
    return (f"[train] {MODEL} {card['version']}: holdout acc {m['accuracy']:.4f} AUC {m['auc']:.4f} "
            f"Brier {m['brier']:.4f} ECE {m['ece']:.4f}; episodes acc {ep['accuracy']:.4f} AUC "
            f"{ep['auc']:.4f} Brier {ep['brier']:.4f}; edge cases "
            f"{card['metrics']['edge_cases']['accuracy']:.4f}; alert rates "
            + ", ".join(f"{g} {v['alert_rate']:.4f}" for g, v in f["groups"].items())
            + f" (P_ENGAGED < {f['threshold']}); parity difference "
            f"{f['demographic_parity_difference']:.4f}; equalised odds {f['equalized_odds_difference']:.4f}; "
            f"parity penalty {card['mitigation']['parity_penalty']}")


def status(data_dir: Path, repository: Path, threshold: float = DEFAULT_THRESHOLD) -> str | None:
    """None when version 1 exists and matches the shipped data, trainer and threshold."""
    vdir = Path(repository) / MODEL / VERSION_DIR
    for f in (*ARTIFACTS, MODEL_PY):
        if not (vdir / f).exists():
            return f"{vdir / f} missing"
    if not (Path(repository) / MODEL / CONFIG_FILE).exists():
        return f"{Path(repository) / MODEL / CONFIG_FILE} missing"
    if not (Path(data_dir) / HELDOUT_FILE).exists():
        return f"{Path(data_dir) / HELDOUT_FILE} missing"
    try:
        card = json.loads((vdir / CARD_FILE).read_text())
    except ValueError:
        return f"{vdir / CARD_FILE} unreadable"
    if card.get("training_data", {}).get("sha256") != datagen.sha256_file(Path(data_dir) / D.DATA_FILE):
        return f"{MODEL}: training data changed"
    if card.get("trainer_version") != TRAINER_VERSION or card.get("version") != MODEL_VERSION:
        return f"{MODEL}: trainer or model version changed"
    if card.get("feature_names") != list(FEATURE_NAMES):
        return f"{MODEL}: features changed"
    if card.get("hyperparameters") != HPARAMS:
        return f"{MODEL}: hyperparameters changed"
    if card.get("alert_threshold") != threshold:
        return f"{MODEL}: alert threshold changed"
    if card.get("weights", {}).get("sha256") != datagen.sha256_file(vdir / WEIGHTS_FILE):
        return f"{MODEL}: weights differ from the card"
    return None


def clean(repository: Path, data_dir: Path) -> None:
    vdir = Path(repository) / MODEL / VERSION_DIR
    for f in ARTIFACTS:
        (vdir / f).unlink(missing_ok=True)
    (Path(data_dir) / HELDOUT_FILE).unlink(missing_ok=True)


def load_params(version_dir: Path) -> dict[str, np.ndarray]:
    with np.load(Path(version_dir) / WEIGHTS_FILE, allow_pickle=False) as z:
        return {k: z[k] for k in z.files if k != "meta"}


__all__ = ["MODEL", "fairness", "feature_matrix", "fit", "p_engaged", "status", "train"]
