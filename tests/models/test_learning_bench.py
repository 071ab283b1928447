"""bench/learning_bench.py: router candidates retrained from reviewers' labels on the earlier
documents of a corpus, judged on its later ones with the functions Triton runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bench import learning_bench
from services.decision.cascade import pool
from services.decision.triton import Prediction
from switchyard import Settings

OUTSIDE = Path(__file__).resolve().parents[2] / "bench" / "outside"
CLASSES = ["invoice", "support_ticket", "other"]


def test_the_cascade_pools_only_where_the_router_is_unsure_and_the_encoder_has_an_opinion(
) -> None:
    router = np.array([[0.9, 0.05, 0.05], [0.5, 0.3, 0.2], [0.5, 0.3, 0.2]], np.float32)
    # the encoder knows the same classes in another order; the third row: no opinion
    encoder = np.array([[0.1, 0.1, 0.8], [0.1, 0.2, 0.7], [1 / 3, 1 / 3, 1 / 3]], np.float32)
    encoder_classes = ["support_ticket", "invoice", "other"]
    out = learning_bench.pooled(router, encoder, CLASSES, encoder_classes, 0.8, 1.5)
    assert out[0].tolist() == router[0].tolist() and out[2].tolist() == router[2].tolist()
    expected = pool(Prediction("r", "", "invoice", 0.5, dict(zip(CLASSES, [0.5, 0.3, 0.2]))),
                    Prediction("e", "", "", 0.0, dict(zip(encoder_classes, [0.1, 0.2, 0.7]))),
                    1.5)
    assert out[1].tolist() == pytest.approx([expected.scores[c] for c in CLASSES])


def test_judging_counts_sure_answers_right_and_wrong() -> None:
    documents = [learning_bench.Document(str(i), kind, "") for i, kind in
                 enumerate(["invoice", "invoice", "other", "support_ticket"])]
    probs = np.array([[0.9, 0.05, 0.05], [0.6, 0.3, 0.1], [0.85, 0.1, 0.05],
                      [0.1, 0.2, 0.7]], np.float32)
    assert learning_bench.judge(documents, probs, CLASSES, 0.8) == {
        "documents": 4, "named_right": 2, "sure": 2, "sure_and_right": 1, "sure_and_wrong": 1,
        "sure_and_wrong_documents": ["2 (other taken for invoice)"]}


def test_a_run_retrains_from_the_earlier_documents_labels(tmp_path: Path) -> None:
    # a small corpus in arrival order: the hand-written set's text documents
    corpus = tmp_path / "corpus"
    lines = [line for line in (OUTSIDE / "manifest.jsonl").read_text("utf-8").splitlines()
             if json.loads(line)["file"].startswith("written/")][:12]
    for line in lines:
        name = json.loads(line)["file"]
        (corpus / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(OUTSIDE / name, corpus / name)
    (corpus / "manifest.jsonl").write_text("\n".join(lines) + "\n", "utf-8")

    documents = learning_bench.readable(corpus)
    assert [d.doc_id for d in documents] == [json.loads(line)["file"] for line in lines]
    result = learning_bench.run(corpus, (0.0, 1.0), 5, 7, Settings())
    assert result["judged"]["documents"] == 3
    untaught, taught = result["steps"]
    assert (untaught["labelled_documents"], untaught["trained_on"]) == (0, 0)
    # nine earlier documents labelled; the newest fifth (two) held back, as retrain does
    assert (taught["labelled_documents"], taught["trained_on"],
            taught["held_back_as_recent"]) == (9, 7, 2)
    for step in result["steps"]:
        for model in ("router", "cascade"):
            r = step[model]
            assert r["documents"] == 3 and r["named_right"] <= 3
            assert r["sure_and_right"] + r["sure_and_wrong"] == r["sure"] <= 3
