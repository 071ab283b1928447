"""The router learns its classes from the enabled packs: a new document type with its examples
becomes a class, is in the model card with its example count, sizes the Triton config, and is
routed by the Triton model.py (driven through the stand-in backend of test_training)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from services.decision.training import datagen, train
from services.decision.training.__main__ import main as cli
from services.decision.training.packs import (
    OTHER,
    PackExamples,
    collect_packs,
    example_id,
    router_classes,
    router_training_set,
)
from tests.models.packs import CORPUS_KINDS, expense_claims, write_pack
from tests.models.test_training import _install_model_py, _load_model


def test_classes_are_the_packs_in_a_stable_order_then_other() -> None:
    assert router_classes({"zeta", "support_ticket", "invoice", "alpha"}) == (
        "invoice", "support_ticket", "alpha", "zeta", OTHER)
    assert router_classes(()) == (OTHER,)
    # docs/packs.md: the first four types in their order, then every other pack by name (the
    # shipped hospital_admission too), then other
    assert router_classes({"hospital_admission", "expense_claim", "classroom_event",
                           "support_ticket", "admission_form", "invoice"}) == (
        "invoice", "admission_form", "support_ticket", "classroom_event", "expense_claim",
        "hospital_admission", OTHER)
    with pytest.raises(ValueError, match="other"):
        router_classes({"other"})


def test_the_training_set_joins_pack_examples_and_the_corpus() -> None:
    corpus = [{"id": "c1", "text": "an invoice", "label": "invoice"},
              {"id": "c2", "text": "a ticket", "label": "support_ticket"},
              {"id": "c3", "text": "nothing of ours", "label": "other"},
              {"id": "c4", "text": "nothing of ours", "label": "other"}]
    packs = [PackExamples("invoice", "1.0.0", "d1", ("an invoice", "a second invoice"), "x"),
             PackExamples("expense_claim", "1.0.0", "d2", ("claim one", "claim two"), "y")]
    tset = router_training_set(packs, corpus)
    assert tset.classes == ("invoice", "expense_claim", OTHER)
    # the support ticket's pack is not enabled: its corpus row is left out; the corpus is
    # kept as it is (its duplicates too); a pack example equal to a corpus row is not added
    assert [(r["id"], r["label"]) for r in tset.rows] == [
        ("c1", "invoice"), ("c3", OTHER), ("c4", OTHER),
        (example_id("invoice", "a second invoice"), "invoice"),
        (example_id("expense_claim", "claim one"), "expense_claim"),
        (example_id("expense_claim", "claim two"), "expense_claim")]
    assert tset.class_examples() == {"invoice": 2, "expense_claim": 2, OTHER: 2}
    assert [p.name for p in tset.packs] == ["invoice", "expense_claim"]
    again = router_training_set(packs, corpus)
    assert again.sha256() == tset.sha256()
    assert router_training_set(packs[:1], corpus).sha256() != tset.sha256()
    # a pack without examples (and no corpus rows) gets no class the router could never answer
    bare = router_training_set([*packs, PackExamples("purchase_order", "1.0.0", "d3", (), "z")],
                               corpus)
    assert bare.classes == tset.classes and bare.without_examples == ("purchase_order",)


def test_a_packs_look_alikes_are_learned_as_other_unless_another_pack_claims_them() -> None:
    corpus = [{"id": "c1", "text": "an invoice", "label": "invoice"},
              {"id": "c2", "text": "nothing of ours", "label": "other"}]
    invoice = PackExamples("invoice", "1.0.0", "d1", ("a second invoice",), "x",
                           look_alikes=("STATEMENT OF ACCOUNT", "PURCHASE ORDER 12",
                                        "nothing of ours", "a second invoice"))
    orders = PackExamples("purchase_order", "1.0.0", "d2", ("PURCHASE ORDER 12",), "y")
    tset = router_training_set([invoice, orders], corpus)
    # a look-alike is a row of `other`; one that is another pack's example stays that
    # pack's, and one already in the corpus or among the pack's own examples is not repeated
    assert [(r["id"], r["label"]) for r in tset.rows] == [
        ("c1", "invoice"), ("c2", OTHER),
        (example_id("invoice", "a second invoice"), "invoice"),
        (example_id("purchase_order", "PURCHASE ORDER 12"), "purchase_order"),
        (example_id(OTHER, "STATEMENT OF ACCOUNT"), OTHER)]
    without = router_training_set([invoice], corpus)
    assert (example_id(OTHER, "PURCHASE ORDER 12"), OTHER) in [
        (r["id"], r["label"]) for r in without.rows]


def test_the_shipped_invoice_packs_look_alikes_are_other_in_its_training_set() -> None:
    packs = collect_packs()
    invoice = next(p for p in packs if p.name == "invoice")
    assert len(invoice.look_alikes) >= 20
    assert not set(invoice.look_alikes) & set(invoice.examples)
    tset = router_training_set(packs, [])
    labels = {r["text"]: r["label"] for r in tset.rows}
    assert {labels[text] for text in invoice.look_alikes} == {OTHER}


def test_an_invalid_pack_folder_stops_training_with_its_problems(tmp_path: Path) -> None:
    bad = write_pack(tmp_path, "expense_claim", ["a claim"])
    (bad / "pack.yaml").write_text("pack: expense_claim\nversion: one\n")
    with pytest.raises(SystemExit) as raised:
        collect_packs([bad], builtin=False)
    assert f"{bad}: pack.yaml: version" in str(raised.value)


def test_a_new_pack_type_is_learned_listed_in_the_card_and_routed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data, repo, packs_dir = tmp_path / "data", tmp_path / "repository", tmp_path / "packs"
    datagen.write_corpora(data, seed=11, router_n=500, invoice_n=300)
    dirs = [write_pack(packs_dir, kind) for kind in CORPUS_KINDS]
    claims = expense_claims(90, seed=1)
    dirs.append(write_pack(packs_dir, "expense_claim", claims))
    args = ["--data-dir", str(data), "--repository", str(repo), "--seed", "5",
            "--no-shipped-packs", "--no-stored-packs", "--packs", *map(str, dirs)]

    assert cli(args) == 0

    classes = [*CORPUS_KINDS, "expense_claim", OTHER]
    card = json.loads((repo / train.ROUTER / "1" / train.CARD_FILE).read_text())
    assert card["classes"] == classes
    assert card["class_examples"]["expense_claim"] == len(claims)
    corpus = datagen.read_jsonl(data / datagen.ROUTER_FILE)
    assert card["class_examples"]["invoice"] == sum(r["label"] == "invoice" for r in corpus)
    listed = {p["name"]: p for p in card["packs"]}
    assert listed["expense_claim"]["examples"] == len(claims)
    assert listed["expense_claim"]["version"] == "1.0.0"
    assert listed["expense_claim"]["source"] == str(dirs[-1])
    assert card["triton"]["outputs"][0]["dims"] == [len(classes)]
    assert "| expense_claim | 90 |" in (repo / train.ROUTER / "1" / train.CARD_MD_FILE).read_text()
    candidate = json.loads((repo / train.ROUTER / "2" / train.CARD_FILE).read_text())
    assert candidate["classes"] == classes
    # the Triton config follows the class count; labels.txt and parameters.classes the order
    config = (repo / train.ROUTER / "config.pbtxt").read_text()
    assert re.search(r'name: "PROBS"\s*data_type: TYPE_FP32[^\n]*\n\s*dims: \[ 6 \]', config)
    assert f'string_value: "{",".join(classes)}"' in config
    assert (repo / train.ROUTER / "labels.txt").read_text().split() == classes

    # routed: the Triton model.py labels expense claims it never saw as expense_claim
    mod = _load_model(_install_model_py(repo, train.ROUTER), monkeypatch)
    model = mod.TritonPythonModel()
    params = dict(re.findall(r'key: "(\w+)"\s*value: \{ string_value: "([^"]*)" \}', config))
    model.initialize({"model_config": json.dumps(
        {"name": train.ROUTER,
         "parameters": {k: {"string_value": v} for k, v in params.items()}})})
    unseen = expense_claims(30, seed=2)
    out = model.execute([{"TEXT": np.array([[t.encode()] for t in unseen], dtype=object)}])
    assert out[0].outputs["PROBS"].shape == (30, 6)
    labels = [x.decode() for x in out[0].outputs["LABEL"].reshape(-1)]
    assert labels.count("expense_claim") >= 27, labels
    heldout = [r for r in datagen.read_jsonl(data / train.ROUTER_HELDOUT)
               if r["label"] == "support_ticket"][:10]
    out = model.execute([{"TEXT": np.array([[r["text"].encode()] for r in heldout],
                                           dtype=object)}])
    assert "expense_claim" not in [x.decode() for x in out[0].outputs["LABEL"].reshape(-1)]

    # up to date for the same packs; one pack less (or more) means retraining
    assert train.artifacts_status(data, repo, 5, collect_packs(dirs, builtin=False)) is None
    assert "classes" in (train.artifacts_status(data, repo, 5,
                                                collect_packs(dirs[:-1], builtin=False)) or "")


def test_switchyard_models_train_refuses_an_invalid_pack_folder(tmp_path: Path) -> None:
    from tests.cli.helpers import switchyard

    bad = write_pack(tmp_path, "expense_claim", ["a claim"])
    (bad / "pack.yaml").write_text("pack: expense_claim\nversion: one\n")
    done = switchyard(None, "models", "train", "--repository", str(tmp_path / "repository"),
                      "--no-stored-packs", "--packs", str(bad))
    assert done.returncode == 1, done.stderr
    assert f"{bad}: pack.yaml: version" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "repository").exists()   # nothing trained
