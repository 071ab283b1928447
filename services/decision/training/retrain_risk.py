"""``switchyard models retrain --model invoice_risk``: an invoice_risk candidate that learns from
reviewers' verdicts.

invoice_risk gives the probability that an invoice can be processed without a person; a
reviewer who approves an escalated invoice unchanged says it could have been (label 1), one
who modifies or rejects it says it could not (label 0). The escalation kept the model's input
vector (services/decision/labels.py: ``inputs``), the same raw FEATURES training uses, so:

* **usable examples**: labelled since ``--since-days`` with invoice_risk's input vector (a
  purged or erased example has none);
* **split by time** as for the router (services/decision/training/retrain.py): the newest
  ``--recent-share`` are the recent human-labelled evaluation set; the older ones join the
  shipped corpus's training split, each ``--label-weight`` times;
* **the same model**: ``train.fit_invoice`` (Newton, Platt-scaled on the corpus's validation
  split), evaluated beside the live version (``SWITCHYARD_INVOICE_RISK_VERSION``) on the frozen
  holdout (``invoice_heldout.jsonl``) and on the recent labels: AUC, Brier, ECE, accuracy at
  0.5 (``train.binary_metrics``);
* **written as the next version directory** of ``<repository>/invoice_risk`` (its config
  serves every version directory), never live until shadowed, canaried and promoted
  (``switchyard models shadow|canary|promote invoice_risk``).

The invoice pack declares no protected attribute, so the card's fairness section says so.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from services.decision.training import datagen, retrain, train
from services.decision.training import features as F
from services.decision.training.models_cli import EXIT_OK

if TYPE_CHECKING:
    from services.decision.labels import LabelledExample
    from switchyard import Settings

__all__ = ["MODEL", "approved", "build", "label_matrix", "run", "usable_examples"]

MODEL = train.INVOICE
ROLE = ("candidate trained from reviewers' verdicts: served beside the live version, not live "
        "until promoted; shadow or canary it first (switchyard models shadow|canary "
        "invoice_risk)")


def usable_examples(examples: Sequence[LabelledExample]) -> retrain.Usable:
    """Verdicts on escalations invoice_risk scored, with its input vector still kept."""
    kept = tuple(e for e in examples if len(e.inputs.get(MODEL, ())) == F.INVOICE_DIM)
    return retrain.Usable(kept, {"no_input": len(examples) - len(kept)})


def approved(e: LabelledExample) -> str:
    """What a verdict teaches invoice_risk: 1 when the person approved it unchanged."""
    return "1" if e.verdict == "APPROVE" else "0"


def label_matrix(examples: Sequence[LabelledExample], weight: int = 1
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Raw FEATURES and labels (1: a person approved it unchanged), each ``weight`` times."""
    x = np.asarray([e.inputs[MODEL] for e in examples for _ in range(weight)],
                   dtype=np.float32).reshape(-1, F.INVOICE_DIM)
    y = np.asarray([float(approved(e)) for e in examples for _ in range(weight)])
    return x, y


def _metrics(raw: np.ndarray, y: np.ndarray, params: Mapping[str, Any]) -> dict[str, Any] | None:
    if not len(y):
        return None
    p = F.invoice_p_auto(raw, params)
    m = train.binary_metrics(p, y, threshold=0.5)
    if not 0 < y.sum() < len(y):
        m["auc"] = None   # one class only: no ranking to judge
    return m


def build(corpus: Sequence[Mapping[str, Any]], older: Sequence[LabelledExample],
          recent: Sequence[LabelledExample], holdout: Sequence[Mapping[str, Any]],
          live: Mapping[str, Any], live_card: Mapping[str, Any], *, version_dir: int,
          live_dir: str, label_weight: int, labels: Mapping[str, Any],
          data_dir: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Fit the candidate on the corpus plus the older labels and evaluate it beside the live
    version; returns ``(arrays for weights.npz, model card)``."""
    parts: dict[str, list[Mapping[str, Any]]] = {"train": [], "validation": [], "test": []}
    for r in corpus:
        parts[train.split_of(str(r["id"]))].append(r)
    raw = {s: F.invoice_raw_matrix(parts[s]) for s in parts}
    ys = {s: np.array([float(r["label"]) for r in parts[s]]) for s in parts}
    x_old, y_old = label_matrix(older, label_weight)
    raw["train"] = np.concatenate([raw["train"], x_old])
    ys["train"] = np.concatenate([ys["train"], y_old])
    res = train.fit_invoice(raw, ys)
    params = res["params"]
    semver = retrain.candidate_version(str(live_card.get("version", "1.0.0")), version_dir)
    h_raw = F.invoice_raw_matrix(holdout)
    h_y = np.array([float(r["label"]) for r in holdout])
    r_raw, r_y = label_matrix(recent)
    meta = {"model": MODEL, "version": semver, "feature_names": list(F.INVOICE_FEATURES),
            "design_names": list(F.INVOICE_DESIGN), "featurizer_sha256":
            train.featurizer_sha256(), "featurizer_version": F.FEATURIZER_VERSION,
            "parent_version_dir": live_dir}
    card: dict[str, Any] = {
        **{k: v for k, v in live_card.items() if k in ("description", "feature_names",
                                                       "featurizer", "algorithm",
                                                       "hyperparameters", "intended_use")},
        "model": MODEL, "version": semver, "version_dir": str(version_dir), "role": ROLE,
        "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "parent": {"version_dir": live_dir, "version": live_card.get("version")},
        "triton": {"name": MODEL, "version_dir": str(version_dir), "backend": "python"},
        "seed": 0, "trainer_version": train.TRAINER_VERSION,
        "split": {"method": "the corpus by sha256(id) mod 100: < 70 train, < 85 validation, "
                            "else test; the older labels join train",
                  **{name: int(len(y)) for name, y in ys.items()}},
        "training_data": {**train._data_info(data_dir, datagen.INVOICE_FILE),
                          "rows": int(sum(len(y) for y in ys.values())),
                          "corpus_rows": len(corpus), "labels": dict(labels),
                          "sources": f"models/data/{datagen.INVOICE_FILE} and reviewers' "
                                     f"verdicts from decision_labels, each {label_weight} "
                                     "times (approved unchanged: 1; modified or rejected: 0)"},
        "calibration": {**res["calibration"],
                        "validation_ece_before": res["metrics"]["validation_uncalibrated"]["ece"],
                        "validation_ece_after": res["metrics"]["validation"]["ece"]},
        "coefficients": {n: train._r(c) for n, c in zip(F.INVOICE_DESIGN, params["coef"])},
        "metrics": {**res["metrics"],
                    "holdout": {"file": f"models/data/{train.INVOICE_HELDOUT}",
                                "candidate": _metrics(h_raw, h_y, params),
                                "live": _metrics(h_raw, h_y, live)},
                    "recent_human": {"examples": len(recent),
                                     "candidate": _metrics(r_raw, r_y, params),
                                     "live": _metrics(r_raw, r_y, live)}},
        "drift_baseline": res["baseline"],
        "fairness": {"protected_attribute": None,
                     "note": "the invoice pack declares no protected attribute"},
        "limitations": "Reviewers' verdicts are on invoices the live models escalated: a "
                       "candidate fits them better and may score the usual traffic "
                       "differently -- shadow or canary it before promoting it.",
    }
    return train.invoice_arrays(params, meta), card


def card_md(card: Mapping[str, Any]) -> str:
    lab = card["training_data"]["labels"]
    lines = [f"# Model card: {MODEL} {card['version']} (version dir `{card['version_dir']}`)",
             "", f"**Role**: {card['role']}.", "",
             f"- Parent: version dir `{card['parent']['version_dir']}` "
             f"({card['parent']['version']}); trained {card['trained_at']}.",
             f"- Labels: {lab['usable']} usable of {lab['examples']} since "
             f"{lab['since'][:10]}; {lab['trained_on']} trained on, {lab['replicas']} times "
             f"each; the {lab['recent_held_out']} newest held back; sha256 `{lab['sha256']}`.",
             "", "| set | version | n | AUC | Brier | ECE | accuracy |", "|---|---|---|---|---|---|---|"]
    for name, key in (("frozen holdout", "holdout"), ("recent human labels", "recent_human")):
        for who in ("candidate", "live"):
            m = card["metrics"][key][who]
            cells = ["-"] * 4 if m is None else [
                "-" if m.get(k) is None else f"{m[k]:.4f}"
                for k in ("auc", "brier", "ece", "accuracy_at_0_5")]
            lines.append(f"| {name} | {who} | {m['n'] if m else 0} | " + " | ".join(cells)
                         + " |")
    lines += ["", f"Fairness: {card['fairness']['note']}.", ""]
    return "\n".join(lines)


def run(args: argparse.Namespace, settings: Settings, examples: Sequence[LabelledExample],
        since: datetime) -> int:
    """The invoice_risk half of ``switchyard models retrain`` (``examples``: every labelled
    example since ``since``)."""
    repository, data_dir = Path(args.repository), Path(args.data_dir)
    model_dir = repository / MODEL
    usable = usable_examples(examples)
    if retrain.nothing_to_learn(args, usable, len(examples), since):
        return EXIT_OK
    live_dir = str(settings.invoice_risk_version or "1")
    live_path = model_dir / live_dir
    if not (live_path / train.WEIGHTS_FILE).is_file():
        raise retrain.Refused(f"{live_path / train.WEIGHTS_FILE} missing: run `switchyard "
                              "models train` first")
    holdout_file = data_dir / train.INVOICE_HELDOUT
    if not holdout_file.is_file():
        raise retrain.Refused(f"{holdout_file} missing: run `switchyard models train` first")
    live_card = json.loads((live_path / train.CARD_FILE).read_text()) \
        if (live_path / train.CARD_FILE).is_file() else {}
    older, recent = retrain.split_recent(usable.examples, args.recent_share)
    version_dir = retrain.next_version_dir(model_dir)
    labels = retrain.labels_info(examples, usable, older, recent, args.label_weight, since,
                                 target=approved)
    arrays, card = build(datagen.read_jsonl(data_dir / datagen.INVOICE_FILE), older, recent,
                         datagen.read_jsonl(holdout_file), train.load_params(live_path),
                         live_card, version_dir=version_dir, live_dir=live_dir,
                         label_weight=args.label_weight, labels=labels, data_dir=data_dir)
    path = retrain.write_candidate(repository, version_dir, arrays, card, MODEL,
                                   (live_path / train.MODEL_PY).read_bytes(), card_md(card))
    loaded = retrain.load_candidate(settings, model_dir, version_dir) if args.load else []
    h, r = card["metrics"]["holdout"], card["metrics"]["recent_human"]
    if args.json:
        print(json.dumps({"status": "written", "model": MODEL, "version": card["version"],
                          "version_dir": card["version_dir"], "path": str(path),
                          "labels": labels, "metrics": {"holdout": h, "recent_human": r},
                          "loaded_by": loaded}, indent=2))
        return EXIT_OK
    auc = (lambda m: "-" if m is None or m.get("auc") is None else f"{m['auc']:.4f}")
    print(f"{MODEL} {card['version']}: {len(older)} reviewers' verdicts trained on "
          f"(x{args.label_weight}) of {len(usable.examples)} usable; the {len(recent)} newest "
          "held back")
    print(f"  holdout AUC candidate {auc(h['candidate'])} vs live {auc(h['live'])} (version "
          f"{live_dir}); recent verdicts AUC candidate {auc(r['candidate'])} vs live "
          f"{auc(r['live'])}")
    print(f"written {path} (not live)")
    for url in loaded:
        print(f"Triton at {url} serves {MODEL} version {version_dir}")
    print(f"next: switchyard models shadow {MODEL} --version {version_dir}, then canary or "
          "promote it")
    return EXIT_OK

