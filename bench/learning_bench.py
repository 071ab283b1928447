"""What reviewers' labels buy: the router retrained from them, judged on documents that came later.

A reviewer who confirms (or corrects) the type of an escalated document labels it
(services/decision/labels.py), and ``switchyard models retrain`` trains a router candidate
from the shipped corpus plus those labels (services/decision/training/retrain.py). This
benchmark asks what that is worth on documents nobody here wrote, in the order they arrived:
``bench/outside``'s documents in their manifest's order (the order the batches were gathered,
each batch from other sources than the ones before), the last quarter judged, and the router
retrained with reviewers' labels on none, the first quarter, the first half and the first
three quarters of the rest. The candidates are built as ``models retrain`` builds them
(``retrain.split_recent`` keeps the newest fifth of the labels out of training, as its recent
evaluation set; ``retrain.label_rows`` weighs the others ``--label-weight`` times; the live
hyperparameters, ``train.train_router``) and judged with the functions Triton runs: the router
alone (``features.router_predict_proba``) and the router cascade as the decision service pools
it (``services.decision.cascade``: below ``router_cascade_below`` the text_encoder's answer,
:func:`services.decision.training.cascade.encoder_probabilities`, is pooled in).

A document counts as *sure* at ``auto_execute_threshold`` (the routing policy's default): it
would go on to its pack without a person confirming its type; *sure and wrong* would be
carried out on a wrong type. Only documents whose text can be read without OCR take part
(text, JSON, PDFs with a text layer: the scans need the OCR model on Triton); the packs'
router signatures are left out (they name HL7 messages and national e-invoice printouts
whatever the model says). Needs the
trained models (``make models``); no stack. ``python -m bench.learning_bench`` writes
``bench/results/learning.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

from bench._common import MODELS, RESULTS, ROOT, print_table, quick_mode, write_json
from bench.evalset import load_set
from services.decision.cascade import pool
from services.decision.engine import MAX_TEXT_CHARS
from services.decision.labels import LabelledExample
from services.decision.training import cascade as encoder_model
from services.decision.training import datagen, retrain, train
from services.decision.training import features as F
from services.decision.triton import Prediction
from switchyard import Settings
from switchyard.documents import layout_text, read_pdf_pages
from switchyard.v1 import DocumentLayout

OUTSIDE = ROOT / "bench" / "outside"
#: Shares of the documents before the judged ones whose labels each candidate learns from.
STEPS = (0.0, 0.25, 0.5, 0.75)


@dataclass(frozen=True)
class Document:
    doc_id: str
    kind: str
    text: str


def readable(corpus: Path) -> list[Document]:
    """The corpus's documents with a type and a text the router reads without OCR, in the
    manifest's order: the text as the decision service gives the router (a PDF's layout in
    reading order, else the body as UTF-8; the head of long ones)."""
    documents = []
    for d in load_set(corpus):
        if not d.kind:
            continue
        if d.content_type == "application/pdf":
            try:
                pages = read_pdf_pages(d.body)
            except Exception:   # an unreadable PDF is the documents benchmark's business
                continue
            if not pages or any(p.layout is None for p in pages):
                continue   # a scanned page: OCR on Triton reads it
            text = layout_text(DocumentLayout(pages=[p.layout for p in pages]))
        elif d.content_type.split(";")[0].strip() in ("text/plain", "application/json"):
            text = d.body.decode("utf-8", errors="replace")
        else:
            continue
        documents.append(Document(d.filename, d.kind, text[:MAX_TEXT_CHARS]))
    return documents


def as_labels(documents: Sequence[Document]) -> list[LabelledExample]:
    """Reviewers' confirmations of ``documents``' types, one a minute in arrival order."""
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    return [LabelledExample(task_id=f"outside-{i}", tenant_id="bench", pack=d.kind,
                            pack_version="", models={}, rule="low_confidence",
                            predicted_label="", predicted_confidence=0.0, verdict="APPROVE",
                            label=d.kind, text=d.text, labelled_at=start + timedelta(minutes=i))
            for i, d in enumerate(documents)]


def judge(documents: Sequence[Document], probs: np.ndarray, classes: Sequence[str],
          threshold: float) -> dict[str, int]:
    labels = [classes[i] for i in probs.argmax(axis=1)]
    sure = probs.max(axis=1) >= threshold
    right = [label == d.kind for label, d in zip(labels, documents)]
    return {"documents": len(documents), "named_right": sum(right),
            "sure": int(sure.sum()),
            "sure_and_right": sum(bool(s) and r for s, r in zip(sure, right)),
            "sure_and_wrong": sum(bool(s) and not r for s, r in zip(sure, right)),
            # which ones, and what they were taken for
            "sure_and_wrong_documents": [f"{d.doc_id} ({d.kind} taken for {label})"
                                         for d, label, s, r in zip(documents, labels, sure, right)
                                         if s and not r]}


def pooled(router: np.ndarray, encoder: np.ndarray, classes: Sequence[str],
           encoder_classes: Sequence[str], below: float, temperature: float) -> np.ndarray:
    """The cascade's answers: the router's where it is sure, else pooled with the encoder's
    (which the encoder gives no opinion on stay the router's), by the decision service's own
    pooling function."""
    out = router.copy()
    for row in range(len(router)):
        if router[row].max() >= below:
            continue
        enc = dict(zip(encoder_classes, map(float, encoder[row])))
        if max(enc.values()) - min(enc.values()) < 1e-6:
            continue   # no opinion
        mine = dict(zip(classes, map(float, router[row])))
        label = max(mine, key=mine.__getitem__)
        answer = pool(Prediction("document_router", "", label, mine[label], mine),
                      Prediction("text_encoder", "", "", 0.0, enc), temperature)
        out[row] = [answer.scores[c] for c in classes]
    return out


def run(corpus: Path, steps: Sequence[float], label_weight: int, seed: int,
        settings: Settings) -> dict[str, Any]:
    documents = readable(corpus)
    judged_from = len(documents) - len(documents) // 4
    earlier, judged = documents[:judged_from], documents[judged_from:]
    tset = train.router_set(MODELS.parent / "data")
    classes = list(tset.classes)
    texts = [d.text for d in judged]
    encoder_classes, encoder, temperature = encoder_model.encoder_probabilities(MODELS, texts)
    if set(encoder_classes) != set(classes):
        raise SystemExit(f"text_encoder knows {encoder_classes}, the router {classes}: "
                         "run `make models`")
    threshold, below = settings.auto_execute_threshold, settings.router_cascade_below
    results = []
    for share in steps:
        taught = earlier[:round(share * len(earlier))]
        older, recent = retrain.split_recent(as_labels(taught), retrain.DEFAULT_RECENT_SHARE) \
            if len(taught) >= 2 else (as_labels(taught), [])
        started = time.perf_counter()
        res = train.train_router([*tset.rows, *retrain.label_rows(older, label_weight)], seed,
                                 dict(train.ROUTER_HPARAMS), classes)
        router = F.router_predict_proba(texts, res["weights"], res["bias"],
                                         float(res["temperature"]))
        results.append({
            "labelled_documents": len(taught), "trained_on": len(older),
            "held_back_as_recent": len(recent), "train_s": round(time.perf_counter() - started, 1),
            "router": judge(judged, router, classes, threshold),
            "cascade": judge(judged, pooled(router, encoder, classes, encoder_classes, below,
                                            temperature), classes, threshold)})
        print(f"  {len(taught)} labelled: trained in {results[-1]['train_s']} s",
              file=sys.stderr)
    return {"benchmark": "learning", "corpus": str(corpus), "documents": len(documents),
            "judged": {"documents": len(judged), "first": judged[0].doc_id if judged else "",
                       "kinds": {k: sum(d.kind == k for d in judged)
                                 for k in sorted({d.kind for d in judged})}},
            "threshold": threshold, "router_cascade_below": below,
            "label_weight": label_weight, "seed": seed, "steps": results}


def report(result: dict[str, Any]) -> None:
    judged = result["judged"]["documents"]
    rows = []
    for step in result["steps"]:
        for model in ("router", "cascade"):
            r = step[model]
            rows.append([f"{step['labelled_documents']} labelled ({step['trained_on']} "
                         f"trained on)", model, f"{r['named_right']}/{judged}",
                         f"{r['sure']}/{judged}", r["sure_and_right"], r["sure_and_wrong"]])
    print_table(f"the last {judged} of {result['documents']} outside documents (from "
                f"{result['judged']['first']}), sure at {result['threshold']:.2f}",
                ["reviewers' labels", "model", "named right", "sure", "sure & right",
                 "sure & wrong"], rows)
    for step in result["steps"]:
        for wrong in step["cascade"]["sure_and_wrong_documents"]:
            print(f"  sure and wrong with {step['labelled_documents']} labels (cascade): {wrong}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=OUTSIDE,
                        help="documents with a kind, in arrival order (a manifest.jsonl)")
    parser.add_argument("--label-weight", type=int, default=retrain.DEFAULT_LABEL_WEIGHT)
    parser.add_argument("--seed", type=int, default=train.DEFAULT_SEED)
    parser.add_argument("--quick", action="store_true",
                        help="no labels and the most only (BENCH_QUICK=1)")
    parser.add_argument("--json", type=Path, default=RESULTS / "learning.json")
    args = parser.parse_args(argv)
    train.verify_data(MODELS.parent / "data")
    steps = (STEPS[0], STEPS[-1]) if quick_mode(args.quick) else STEPS
    result = run(args.corpus, steps, args.label_weight, args.seed, Settings())
    report(result)
    write_json(args.json, result)
    return 0


__all__ = ["Document", "as_labels", "judge", "main", "pooled", "readable", "run"]

if __name__ == "__main__":
    sys.exit(main())
