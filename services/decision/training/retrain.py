"""``switchyard models retrain``: a document_router candidate trained from reviewers' labels.

A person's verdict on an escalated task labels what the router read
(services/decision/labels.py, table ``decision_labels``). This command turns those labels
into a *candidate* router version, never into the live one:

* **usable examples**: labelled since ``--since-days``, with a type a person confirmed (an
  approval or a modification; a rejection labels none unless the reviewer named the
  document's real type), the text still kept (retention and erasure clear it) and a type
  among the served router's classes (``labels.txt``). Each is a
  training row with id ``label-<task_id>``: ``train.split_of`` puts every replica of one
  example in the same split;
* **split by time**: the newest ``--recent-share`` of them (at least one when there are two
  or more) are the *recent human-labelled* evaluation set and are not trained on; the older
  ones join the rows ``switchyard models train`` builds (``train.router_set``: the shipped
  packs, the packs stored in PostgreSQL and ``--packs``), each ``--label-weight`` times;
* **the same model**: the live version's hyperparameters (``train.ROUTER_HPARAMS``) and
  classes; a training set whose classes differ from the served router's is refused (exit 1:
  run ``switchyard models train`` first). Fewer usable examples than ``--min-labels``:
  nothing is written (exit 0);
* **evaluated beside the live version** (``SWITCHYARD_ROUTER_VERSION``), on the frozen
  holdout (``<data_dir>/router_heldout.jsonl``) and on the recent human-labelled set, with
  the numpy path Triton runs (``features.router_predict_proba``): accuracy, macro-F1,
  log-loss, ECE; and per tenant on the recent set (no protected attribute is declared for
  document routing);
* **written as the next version directory** ``n`` of ``<repository>/document_router``
  (weights.npz, featurize.py, model.py, model_card.json, MODEL_CARD.md). ``config.pbtxt``
  (``version_policy: all``) and ``labels.txt`` are left alone, as is every other version:
  the candidate is served beside the live one and acts on nothing until it is shadowed
  (``SWITCHYARD_ROUTER_SHADOW_VERSION=n``) and promoted (``SWITCHYARD_ROUTER_VERSION=n``).
  Its semantic version is the live one's with the patch bumped and the build
  ``+labels.<n>``: 1.0.0 -> ``1.0.1+labels.3``;
* ``--load`` has Triton (every pool, as ``models train --reload``) load it and checks that
  version ``n`` is ready; a version Triton does not load is taken out again (exit 1).

Exit codes (those of ``switchyard models``): 0 written, or nothing to learn; 1 refused
(other classes, no live version or holdout, Triton did not load it); 2 invalid settings or
corpus; 3 PostgreSQL or Triton unreachable.

The card holds figures, digests and counts only: no document text, no field value.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import shutil
import sys
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from services.decision.training import datagen, train
from services.decision.training import features as F
from services.decision.training.models_cli import (
    EXIT_CONNECT,
    EXIT_INVALID,
    EXIT_OK,
    EXIT_REFUSED,
)
from services.decision.training.packs import PackExamples, RouterTrainingSet

if TYPE_CHECKING:
    from services.decision.labels import LabelledExample
    from switchyard import Settings

__all__ = ["DEFAULT_LABEL_WEIGHT", "DEFAULT_MIN_LABELS", "DEFAULT_RECENT_SHARE",
           "DEFAULT_SINCE_DAYS", "ROLE", "Refused", "add_arguments", "candidate_version",
           "check_classes", "label_rows", "labels_info", "next_version_dir", "nothing_to_learn",
           "per_tenant",
           "run", "served_classes", "split_recent", "usable_examples"]

MODEL = train.ROUTER
DEFAULT_SINCE_DAYS = 90
DEFAULT_MIN_LABELS = 20
DEFAULT_RECENT_SHARE = 0.2
DEFAULT_LABEL_WEIGHT = 5
ROLE = ("candidate trained from reviewers' labels: served beside the live version, not live "
        "until promoted (SWITCHYARD_ROUTER_VERSION); shadow it first with "
        "SWITCHYARD_ROUTER_SHADOW_VERSION")
FAIRNESS_NOTE = ("Per tenant, on the recent human-labelled examples (a reviewer's label "
                 "carries no protected attribute, so the groups compared here are tenants; a "
                 "tenant with few examples gives a noisy figure). The protected attributes "
                 "the shipped packs declare are measured on the frozen holdout below.")


class Refused(Exception):
    """The candidate cannot be trained or kept as asked (exit 1); the message says why."""


class _Connect(Exception):
    """PostgreSQL or Triton unreachable (exit 3)."""


class _Invalid(Exception):
    """Settings or data that cannot be used (exit 2)."""


# -- the labelled examples ---------------------------------------------------------------------


@dataclass(frozen=True)
class Usable:
    """The labelled examples retraining can use, and how many it left out and why."""

    examples: tuple[LabelledExample, ...]
    #: why -> count: "no_label" (a rejection naming no type), "purged" (text cleared),
    #: "unknown_class"
    skipped: dict[str, int]


def usable_examples(examples: Sequence[LabelledExample], classes: Sequence[str]) -> Usable:
    """Examples with a confirmed type among ``classes`` and their text still kept."""
    wanted = set(classes)
    kept: list[LabelledExample] = []
    skipped = {"no_label": 0, "purged": 0, "unknown_class": 0}
    for e in examples:
        if e.label is None:
            skipped["no_label"] += 1
        elif e.text is None:
            skipped["purged"] += 1
        elif e.label not in wanted:
            skipped["unknown_class"] += 1
        else:
            kept.append(e)
    return Usable(tuple(kept), skipped)


def _when(e: LabelledExample) -> tuple[float, str]:
    return (e.labelled_at.timestamp() if e.labelled_at is not None else -math.inf, e.task_id)


def split_recent(examples: Sequence[LabelledExample], recent_share: float
                 ) -> tuple[list[LabelledExample], list[LabelledExample]]:
    """``(older, recent)`` by ``labelled_at``: the newest ``recent_share`` (rounded, at least
    one when there are two or more, never all) are the recent evaluation set."""
    if not 0 < recent_share < 1:
        raise ValueError(f"recent_share must be in (0, 1), not {recent_share}")
    ordered = sorted(examples, key=_when)
    n = len(ordered)
    recent = 0 if n < 2 else min(n - 1, max(1, int(n * recent_share + 0.5)))
    return ordered[:n - recent], ordered[n - recent:]


def label_rows(examples: Sequence[LabelledExample], weight: int) -> list[dict[str, str]]:
    """Training rows of ``examples``, each ``weight`` times under one id (one split)."""
    if weight < 1:
        raise ValueError(f"label weight must be >= 1, not {weight}")
    return [{"id": f"label-{e.task_id}", "text": str(e.text), "label": str(e.label)}
            for e in examples for _ in range(weight)]


def labels_info(all_examples: Sequence[LabelledExample], usable: Usable,
                older: Sequence[LabelledExample], recent: Sequence[LabelledExample],
                weight: int, since: datetime,
                target: Callable[[LabelledExample], str] = lambda e: str(e.label)
                ) -> dict[str, Any]:
    """What the card says of the labels: counts and a digest, no text, no field value.
    ``target`` is what each example teaches the model (the router: the confirmed type;
    invoice_risk: whether the person approved it unchanged)."""
    listed = sorted([e.task_id, target(e),
                     e.labelled_at.isoformat() if e.labelled_at is not None else ""]
                    for e in usable.examples)
    return {
        "source": "decision_labels (reviewers' verdicts on escalated tasks)",
        "since": since.isoformat(),
        "examples": len(all_examples),
        "usable": len(usable.examples),
        "skipped": dict(usable.skipped),
        "trained_on": len(older),
        "replicas": weight,
        "recent_held_out": len(recent),
        "sha256": hashlib.sha256(json.dumps(listed).encode("utf-8")).hexdigest(),
        "sha256_of": "sorted [task_id, label, labelled_at] of the usable examples, as JSON",
        "by_verdict": dict(sorted(Counter(e.verdict for e in usable.examples).items())),
        "by_label": dict(sorted(Counter(target(e) for e in usable.examples).items())),
        "tenants": len({e.tenant_id for e in usable.examples}),
        "labelled_between": [min((e.labelled_at for e in usable.examples if e.labelled_at),
                                 default=since).isoformat(),
                             max((e.labelled_at for e in usable.examples if e.labelled_at),
                                 default=since).isoformat()],
    }


# -- the served router -------------------------------------------------------------------------


def served_classes(repository: Path) -> tuple[str, ...]:
    """The served router's classes in PROBS order: ``labels.txt``, else the config's
    ``classes`` parameter (both written by ``models train``)."""
    model_dir = Path(repository) / MODEL
    labels = model_dir / train.LABELS_FILE
    if labels.is_file():
        return tuple(line.strip() for line in labels.read_text("utf-8").splitlines()
                     if line.strip())
    config = model_dir / train.CONFIG_FILE
    if config.is_file():
        import re

        found = re.search(r'key: "classes"\n\s*value: \{ string_value: "([^"]*)"',
                          config.read_text("utf-8"))
        if found and found.group(1):
            return tuple(found.group(1).split(","))
    raise Refused(f"{model_dir} has no labels.txt or classes: run `switchyard models train` "
                  "first")


def check_classes(training: Sequence[str], served: Sequence[str]) -> None:
    """Refuse a training set whose classes (or their order) are not the served router's."""
    if tuple(training) != tuple(served):
        raise Refused(f"the training set's classes ({', '.join(training)}) are not the served "
                      f"router's ({', '.join(served)}): run `switchyard models train` first")


def next_version_dir(model_dir: Path) -> int:
    """One more than the highest numeric version directory (1 when there is none)."""
    return max((int(p.name) for p in Path(model_dir).iterdir()
                if p.is_dir() and p.name.isdigit()), default=0) + 1


def candidate_version(live: str, version_dir: int) -> str:
    """The candidate's semantic version: the live one's, patch bumped, build ``labels.<n>``."""
    core = live.split("+", 1)[0].split("-", 1)[0]
    try:
        major, minor, patch = (int(p) for p in core.split("."))
    except ValueError:
        major, minor, patch = 1, 0, 0
    return f"{major}.{minor}.{patch + 1}+labels.{version_dir}"


@dataclass(frozen=True)
class Live:
    """The live router version: its directory, semantic version and weights."""

    version_dir: str
    version: str
    params: Mapping[str, np.ndarray]
    card: Mapping[str, Any]


def load_live(repository: Path, version_dir: str, classes: Sequence[str]) -> Live:
    vdir = Path(repository) / MODEL / version_dir
    if not (vdir / train.WEIGHTS_FILE).is_file():
        raise Refused(f"{vdir / train.WEIGHTS_FILE} missing (SWITCHYARD_ROUTER_VERSION="
                      f"{version_dir}): run `switchyard models train` first")
    params = train.load_params(vdir)
    meta = json.loads(str(np.asarray(params["meta"]).reshape(-1)[0]))
    if list(meta.get("classes", [])) != list(classes):
        raise Refused(f"live version {version_dir} was trained on other classes "
                      f"({', '.join(meta.get('classes', []))}) than the served ones: run "
                      "`switchyard models train` first")
    card: dict[str, Any] = {}
    if (vdir / train.CARD_FILE).is_file():
        card = json.loads((vdir / train.CARD_FILE).read_text())
    return Live(version_dir, str(card.get("version") or meta.get("version") or "1.0.0"),
                params, card)


# -- evaluation --------------------------------------------------------------------------------


def _probs(texts: Sequence[str], params: Mapping[str, Any]) -> np.ndarray:
    return F.router_predict_proba(list(texts), np.asarray(params["weights"], np.float32),
                                  np.asarray(params["bias"], np.float32),
                                  float(np.asarray(params["temperature"]).reshape(-1)[0]))


def _headline(m: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if m is None else {k: m[k] for k in ("n", "accuracy", "macro_f1", "log_loss",
                                                     "ece")}


def _with_labelled_f1(m: dict[str, Any] | None) -> dict[str, Any] | None:
    """``m`` with the macro-F1 over the classes the set has (``macro_f1`` averages over every
    class: on a few recent labels most classes are absent and count 0)."""
    if m is None:
        return None
    f1s = [c["f1"] for c in m["per_class"].values() if c["support"]]
    return {**m, "macro_f1_present_classes": train._r(np.mean(f1s)) if f1s else None}


def per_tenant(examples: Sequence[LabelledExample], candidate: np.ndarray, live: np.ndarray,
               classes: Sequence[str]) -> dict[str, Any]:
    """Accuracy per tenant of both versions on ``examples`` (their probabilities given), and
    the largest gap between two tenants for each."""
    cidx = {c: i for i, c in enumerate(classes)}
    groups: dict[str, dict[str, Any]] = {}
    for tenant in sorted({e.tenant_id for e in examples}):
        rows = [i for i, e in enumerate(examples) if e.tenant_id == tenant]
        y = np.array([cidx[str(examples[i].label)] for i in rows])
        groups[tenant] = {
            "n": len(rows),
            "candidate_accuracy": train._r((candidate[rows].argmax(axis=1) == y).mean()),
            "live_accuracy": train._r((live[rows].argmax(axis=1) == y).mean())}

    def gap(key: str) -> float | None:
        values = [g[key] for g in groups.values()]
        return train._r(max(values) - min(values)) if values else None

    return {"groups": "tenant", "protected_attribute": None, "note": FAIRNESS_NOTE,
            "set": "recent_human", "per_tenant": groups,
            "largest_gap": {"candidate": gap("candidate_accuracy"),
                            "live": gap("live_accuracy")}}


#: The router confidence a route needs to act alone when neither the tenant nor the pack
#: says otherwise (services/decision/policy.py: Policy.auto_execute_threshold).
ROUTE_THRESHOLD = 0.80


def holdout_fairness(holdout: Sequence[Mapping[str, Any]], classes: Sequence[str],
                     candidate: Mapping[str, Any], live: Mapping[str, Any],
                     packs: Mapping[str, Any], min_samples: int = 5) -> list[dict[str, Any]]:
    """For each shipped pack among ``classes`` that declares protected attributes
    (services/decision/fairness.py): its holdout documents, grouped by the attribute as the
    pack's extractor reads it, and per group each version's share *routed alone* (to the
    pack, at least :data:`ROUTE_THRESHOLD` sure: what the router can automate) and its
    true-positive rate (routed to the pack at all). The demographic parity difference is the
    spread of the first, the equal-opportunity gap (the equalised-odds gap on the positives)
    the spread of the second, over groups with ``min_samples`` documents."""
    from switchyard.packs import extractor_for, run_extractor
    from services.decision.fairness import parity

    out = []
    cidx = {c: i for i, c in enumerate(classes)}
    for name, pack in sorted(packs.items()):
        if pack.fairness is None or name not in cidx:
            continue
        texts = [str(r["text"]) for r in holdout if r["label"] == name]
        if not texts:
            continue
        extract = extractor_for(pack)
        probs = {"candidate": _probs(texts, candidate), "live": _probs(texts, live)}
        for attribute in pack.fairness.attributes:
            values = []
            for text in texts:
                found = run_extractor(extract, text).fields.get(attribute)
                values.append(str(found.value) if found is not None and found.value else "")
            figures: dict[str, Any] = {}
            for who, p in probs.items():
                alone, routed = {}, {}
                for group in sorted({v for v in values if v}):
                    rows = [i for i, v in enumerate(values) if v == group]
                    top = p[rows].argmax(axis=1)
                    sure = p[rows].max(axis=1) >= ROUTE_THRESHOLD
                    alone[group] = (len(rows), int(((top == cidx[name]) & sure).sum()))
                    routed[group] = (len(rows), int((top == cidx[name]).sum()))
                dp, eo = parity(alone, min_samples), parity(routed, min_samples)
                figures[who] = {
                    "groups": {g: {"n": n, "routed_alone": train._r(a / n),
                                   "true_positive_rate": train._r(routed[g][1] / n)}
                               for g, (n, a) in alone.items()},
                    "demographic_parity_difference": None if dp is None else train._r(dp),
                    "equal_opportunity_gap": None if eo is None else train._r(eo)}
            out.append({"pack": name, "attribute": attribute,
                        "max_parity_difference": pack.fairness.max_parity_difference,
                        "documents": len(texts),
                        "unread": sum(1 for v in values if not v), **figures})
    return out


def evaluate(rows: Sequence[Mapping[str, Any]], classes: Sequence[str],
             candidate: Mapping[str, Any], live: Mapping[str, Any]
             ) -> tuple[dict[str, Any] | None, dict[str, Any] | None, np.ndarray, np.ndarray]:
    """Both versions' metrics on ``rows`` (``text``, ``label``), and their probabilities."""
    cidx = {c: i for i, c in enumerate(classes)}
    rows = [r for r in rows if str(r["label"]) in cidx]
    texts = [str(r["text"]) for r in rows]
    y = np.array([cidx[str(r["label"])] for r in rows], dtype=np.int64)
    pc, pl = _probs(texts, candidate), _probs(texts, live)
    if not rows:
        return None, None, pc, pl
    return (train.multiclass_metrics(pc, y, classes), train.multiclass_metrics(pl, y, classes),
            pc, pl)


# -- the candidate -----------------------------------------------------------------------------


def build(tset: RouterTrainingSet, older: Sequence[LabelledExample],
          recent: Sequence[LabelledExample], live: Live, holdout: Sequence[Mapping[str, Any]],
          *, data_dir: Path, version_dir: int, seed: int, label_weight: int,
          labels: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train the candidate on ``tset``'s rows and the ``older`` labels, evaluate it beside the
    live version; returns ``(arrays for weights.npz, model card)``."""
    classes = list(tset.classes)
    rows = [*tset.rows, *label_rows(older, label_weight)]
    augmented = RouterTrainingSet(tset.classes, tuple(rows), tset.packs, tset.without_examples)
    hp = dict(train.ROUTER_HPARAMS)
    res = train.train_router(rows, seed, hp, classes)
    semver = candidate_version(live.version, version_dir)
    feat_sha = train.featurizer_sha256()
    common = {"seed": seed, "trainer_version": train.TRAINER_VERSION,
              "framework": f"numpy {np.__version__}"}
    card = train._router_card(res, Path(data_dir), augmented, str(version_dir), semver, seed,
                              hp, common, feat_sha,
                              "sha256(id) mod 100: < 70 train, < 85 validation, else test "
                              "(a labelled example's id is label-<task_id>: its replicas "
                              "share one split)")
    cand = {"weights": res["weights"], "bias": res["bias"], "temperature": res["temperature"]}
    h_cand, h_live, _, _ = evaluate(holdout, classes, cand, live.params)
    recent_rows = [{"text": e.text, "label": e.label} for e in recent]
    r_cand, r_live, pc, pl = evaluate(recent_rows, classes, cand, live.params)
    card["role"] = ROLE
    card["version_dir"] = str(version_dir)
    card["trained_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    card["description"] = (f"Routes an incoming document (text) to one of {len(classes)} "
                           "classes: the live router retrained with reviewers' labels.")
    card["parent"] = {"version_dir": live.version_dir, "version": live.version,
                      "rows_sha256": live.card.get("training_data", {}).get("rows_sha256"),
                      "same_shipped_rows": live.card.get("training_data", {}).get(
                          "rows_sha256") == tset.sha256()}
    card["training_data"] = {**card["training_data"], "shipped_rows": len(tset.rows),
                             "shipped_rows_sha256": tset.sha256(), "labels": dict(labels),
                             "sources": card["training_data"]["sources"] + "; reviewers' "
                             f"labels from decision_labels, each {label_weight} times"}
    card["metrics"] = {
        **res["metrics"],
        "holdout": {"file": f"models/data/{train.ROUTER_HELDOUT}", "candidate": h_cand,
                    "live": h_live},
        "recent_human": {"examples": len(recent), "candidate": _with_labelled_f1(r_cand),
                         "live": _with_labelled_f1(r_live),
                         "note": "the newest labelled examples, not trained on; macro_f1 "
                                 "averages over every class (absent ones count 0), "
                                 "macro_f1_present_classes over those the set has"},
    }
    card["fairness"] = per_tenant(recent, pc, pl, classes) if recent else {
        "groups": "tenant", "protected_attribute": None, "note": FAIRNESS_NOTE,
        "per_tenant": {}, "largest_gap": {"candidate": None, "live": None}}
    from switchyard.packs import builtin_packs

    card["fairness"]["holdout"] = holdout_fairness(holdout, classes, cand, live.params,
                                                   builtin_packs())
    card["limitations"] = (card["limitations"] + " Reviewers' labels are the documents the "
                           "live models were unsure about: a candidate fits them better and "
                           "may route the usual traffic differently -- shadow it before "
                           "promoting it.")
    meta = {"model": MODEL, "version": semver, "classes": classes,
            "featurizer_sha256": feat_sha, "featurizer_version": F.FEATURIZER_VERSION,
            "seed": seed, "parent_version_dir": live.version_dir}
    arrays = {"weights": res["weights"], "bias": res["bias"],
              "temperature": np.asarray(res["temperature"], dtype=np.float32),
              "meta": np.asarray(json.dumps(meta, sort_keys=True))}
    return arrays, card


def _figure(m: Mapping[str, Any] | None, key: str) -> str:
    return "-" if m is None else f"{m[key]:.4f}"


def card_md(card: Mapping[str, Any]) -> str:
    """MODEL_CARD.md: the retraining (parent, labels, both versions' figures, per tenant),
    then the router card's usual sections."""
    lab = card["training_data"]["labels"]
    h, r = card["metrics"]["holdout"], card["metrics"]["recent_human"]
    lines = [f"# Model card: {card['model']} {card['version']} (version dir "
             f"`{card['version_dir']}`)", "",
             f"**Role**: {card['role']}.", "",
             f"- Parent: version dir `{card['parent']['version_dir']}` "
             f"({card['parent']['version']}); trained {card['trained_at']}.",
             f"- Labels: {lab['usable']} usable of {lab['examples']} labelled since "
             f"{lab['since'][:10]} ({lab['tenants']} tenants; by verdict "
             + ", ".join(f"{k} {v}" for k, v in lab["by_verdict"].items())
             + f"); {lab['trained_on']} trained on, {lab['replicas']} times each; the "
             f"{lab['recent_held_out']} newest held back; sha256 `{lab['sha256']}`.",
             "", "| set | version | n | accuracy | macro-F1 | log-loss | ECE |",
             "|---|---|---|---|---|---|---|"]
    for name, block in (("frozen holdout", h), ("recent human labels", r)):
        for who in ("candidate", "live"):
            m = block[who]
            lines.append(f"| {name} | {who} | {m['n'] if m else 0} | "
                         + " | ".join(_figure(m, k) for k in ("accuracy", "macro_f1",
                                                                 "log_loss", "ece")) + " |")
    lines += ["", "Macro-F1 averages over every class; on the recent labels the classes they "
              "do not have count 0 (`macro_f1_present_classes` in model_card.json: over those "
              "they have). The recent labels are the newest, never trained on."]
    f = card["fairness"]
    lines += ["", "## Per tenant (recent human labels)", "", f["note"], "",
              "| tenant | n | candidate accuracy | live accuracy |", "|---|---|---|---|"]
    lines += [f"| {t} | {g['n']} | {g['candidate_accuracy']:.4f} | {g['live_accuracy']:.4f} |"
              for t, g in f["per_tenant"].items()]
    gap = f["largest_gap"]
    lines += ["", f"Largest gap between tenants: candidate "
                  f"{'-' if gap['candidate'] is None else format(gap['candidate'], '.4f')}, live "
                  f"{'-' if gap['live'] is None else format(gap['live'], '.4f')}."]
    for item in f.get("holdout", []):
        lines += ["", f"## Protected attribute {item['pack']}.{item['attribute']} (frozen "
                      f"holdout, {item['documents']} documents, {item['unread']} unread)", "",
                  "| version | group | n | routed alone | true-positive rate |",
                  "|---|---|---|---|---|"]
        for who in ("candidate", "live"):
            lines += [f"| {who} | {g} | {v['n']} | {v['routed_alone']:.3f} | "
                      f"{v['true_positive_rate']:.3f} |" for g, v in item[who]["groups"].items()]
        for who in ("candidate", "live"):
            dp = item[who]["demographic_parity_difference"]
            eo = item[who]["equal_opportunity_gap"]
            lines.append(f"- {who}: demographic parity difference "
                         f"{'-' if dp is None else format(dp, '.3f')} (pack limit "
                         f"{item['max_parity_difference']}), equal-opportunity gap "
                         f"{'-' if eo is None else format(eo, '.3f')}")
    lines += ["", "---", ""]
    body = train._card_md(card).split("\n", 1)[1]   # without its title
    return "\n".join(lines) + body


def write_candidate(repository: Path, version_dir: int, arrays: dict[str, np.ndarray],
                    card: dict[str, Any], model: str = MODEL, model_py: bytes | None = None,
                    markdown: str | None = None) -> Path:
    """Write the candidate into ``<repository>/<model>/<version_dir>`` (staged beside it,
    then renamed: Triton never sees half a version); ``model_py`` is the Triton model.py (the
    router's when None), ``markdown`` the MODEL_CARD.md (:func:`card_md` when None)."""
    model_dir = Path(repository) / model
    final = model_dir / str(version_dir)
    staging = model_dir / f".retrain-{version_dir}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        train._write_model(staging, arrays, card)
        train.write_atomic(staging / train.CARD_MD_FILE,
                           (markdown if markdown is not None else card_md(card)).encode("utf-8"))
        train.write_atomic(staging / train.MODEL_PY,
                           model_py if model_py is not None
                           else train._router_model_py(Path(repository)))
        if final.exists():
            raise Refused(f"{final} appeared meanwhile (another retrain?): run it again")
        staging.rename(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


# -- reading PostgreSQL ------------------------------------------------------------------------


def fetch_examples(settings: Settings, since: datetime) -> list[LabelledExample]:
    """Every labelled example since ``since``; :class:`_Connect` when PostgreSQL cannot be
    reached (or has no ``decision_labels``: migrations not applied)."""
    import asyncpg

    from services.decision.labels import labelled_examples
    from switchyard.storage import CryptoError, codec_for, connect

    try:
        codec = codec_for(settings)
    except CryptoError as exc:
        raise _Invalid(f"SWITCHYARD_ENCRYPTION_KEYS: {exc}") from None

    async def fetch() -> list[LabelledExample]:
        conn = await asyncio.wait_for(connect(settings), 5)
        try:
            return await labelled_examples(conn, codec, since=since)
        finally:
            await conn.close()

    try:
        return asyncio.run(fetch())
    except asyncpg.UndefinedTableError:
        raise _Connect(f"PostgreSQL (schema {settings.postgres_schema}) has no decision_labels "
                       "table: apply the migrations (switchyard up)") from None
    except CryptoError as exc:
        raise _Invalid(f"cannot open the sealed examples: {exc}") from None
    except (OSError, RuntimeError, asyncio.TimeoutError, asyncpg.PostgresError,
            asyncpg.InterfaceError) as exc:   # RuntimeError: no PostgreSQL configured
        raise _Connect(f"PostgreSQL unreachable: {str(exc) or type(exc).__name__}") from None


# -- the command -------------------------------------------------------------------------------


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive), not {text}")
    return value


def _at_least(low: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, not {value}")
        return value
    return parse


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``switchyard models retrain``."""
    from services.decision.training import default_paths

    data_dir, repository = default_paths()
    p.add_argument("--model", choices=(MODEL, train.INVOICE), default=MODEL,
                   help="the model to retrain: the router from the types reviewers confirmed "
                        "or named, or invoice_risk from their verdicts (retrain_risk.py)")
    p.add_argument("--repository", type=Path, default=repository, help="Triton model repository")
    p.add_argument("--data-dir", type=Path, default=data_dir, help="corpus directory")
    p.add_argument("--since-days", type=_at_least(1), default=DEFAULT_SINCE_DAYS, metavar="DAYS",
                   help=f"labels of the last DAYS days (default {DEFAULT_SINCE_DAYS})")
    p.add_argument("--min-labels", type=_at_least(1), default=DEFAULT_MIN_LABELS, metavar="N",
                   help="write nothing with fewer usable labelled examples "
                        f"(default {DEFAULT_MIN_LABELS})")
    p.add_argument("--recent-share", type=_share, default=DEFAULT_RECENT_SHARE, metavar="SHARE",
                   help="the newest SHARE of the labels, held back to compare the candidate "
                        f"with the live version, in (0, 1) (default {DEFAULT_RECENT_SHARE})")
    p.add_argument("--label-weight", type=_at_least(1), default=DEFAULT_LABEL_WEIGHT,
                   metavar="K", help="times each labelled example is trained on "
                                     f"(default {DEFAULT_LABEL_WEIGHT})")
    p.add_argument("--seed", type=int, default=train.DEFAULT_SEED,
                   help=f"training seed (default {train.DEFAULT_SEED})")
    p.add_argument("--packs", nargs="+", type=Path, default=[], metavar="DIR",
                   help="as for `models train`: the pack folders the served router was "
                        "trained with besides the shipped and stored packs")
    p.add_argument("--no-shipped-packs", action="store_true",
                   help="as for `models train`: leave out the packs shipped with Switchyard")
    p.add_argument("--load", action="store_true",
                   help="then have Triton ($SWITCHYARD_TRITON_URL, and the spill-over pool "
                        "when set) load the candidate; one it does not load is taken out again")
    p.add_argument("--json", action="store_true", help="print the card's summary as JSON")


def summary(card: Mapping[str, Any], path: Path, loaded: Sequence[str]) -> dict[str, Any]:
    """What ``--json`` prints: the card's identity, labels, figures and where it is."""
    h, r = card["metrics"]["holdout"], card["metrics"]["recent_human"]
    return {
        "status": "written", "model": card["model"], "version": card["version"],
        "version_dir": card["version_dir"], "path": str(path), "parent": card["parent"],
        "role": card["role"], "labels": card["training_data"]["labels"],
        "metrics": {"holdout": {w: _headline(h[w]) for w in ("candidate", "live")},
                    "recent_human": {"examples": r["examples"],
                                     **{w: _headline(r[w]) for w in ("candidate", "live")}}},
        "calibration": card["calibration"],
        "fairness": {k: card["fairness"][k] for k in ("groups", "per_tenant", "largest_gap")},
        "loaded_by": list(loaded),
        "next": {"shadow": f"SWITCHYARD_ROUTER_SHADOW_VERSION={card['version_dir']}",
                 "promote": f"SWITCHYARD_ROUTER_VERSION={card['version_dir']}"},
    }


def _acc(m: Mapping[str, Any] | None) -> str:
    return "-" if m is None else f"{m['accuracy']:.4f}"


def _print_summary(card: Mapping[str, Any], path: Path, loaded: Sequence[str]) -> None:
    lab = card["training_data"]["labels"]
    h, r = card["metrics"]["holdout"], card["metrics"]["recent_human"]
    print(f"{MODEL} {card['version']}: {lab['trained_on']} reviewers' labels trained on "
          f"(x{lab['replicas']}) of {lab['usable']} usable since {lab['since'][:10]}; the "
          f"{lab['recent_held_out']} newest held back")
    print(f"  holdout ({h['live']['n'] if h['live'] else 0} docs): accuracy candidate "
          f"{_acc(h['candidate'])} vs live {_acc(h['live'])} (version "
          f"{card['parent']['version_dir']})")
    print(f"  recent human labels ({r['examples']}): accuracy candidate {_acc(r['candidate'])} "
          f"vs live {_acc(r['live'])}")
    print(f"written {path} (not live)")
    for url in loaded:
        print(f"Triton at {url} serves {MODEL} version {card['version_dir']}")
    print(f"next: shadow it with SWITCHYARD_ROUTER_SHADOW_VERSION={card['version_dir']}, "
          f"promote it with SWITCHYARD_ROUTER_VERSION={card['version_dir']}")


def load_candidate(settings: Settings, model_dir: Path, version_dir: int) -> list[str]:
    """Have every Triton pool load the candidate (``model_dir``'s model); take it out again
    when one does not."""
    from services.decision.training.__main__ import ReloadError, reload_models

    model = model_dir.name
    loaded: list[str] = []
    try:
        for url in settings.triton_urls:   # every pool serves the same versions
            reload_models(url, (model,), str(version_dir), log=lambda *_: None)
            loaded.append(url)
    except ReloadError as exc:
        if exc.unreachable:
            raise _Connect(f"{exc.code}; version {version_dir} stays in {model_dir} (Triton "
                           "loads it when it next starts)") from None
        shutil.rmtree(model_dir / str(version_dir), ignore_errors=True)
        for url in settings.triton_urls:   # drop the failed version, keep the others
            try:
                reload_models(url, (model,), log=lambda *_: None)
            except ReloadError:
                pass
        raise Refused(f"{exc.code}; version {version_dir} taken out again") from None
    return loaded


def run(args: argparse.Namespace, settings: Settings) -> int:
    """``switchyard models retrain``: see the module docstring."""
    name = "switchyard models retrain"
    try:
        return _run(args, settings)
    except Refused as exc:
        print(f"{name}: refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except _Connect as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return EXIT_CONNECT
    except _Invalid as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return EXIT_INVALID


def nothing_to_learn(args: argparse.Namespace, usable: Usable, examples: int,
                     since: datetime) -> bool:
    """Say so (one line, or JSON) and return True when fewer than ``--min-labels`` examples
    are usable: nothing is written then."""
    found = len(usable.examples)
    if found >= args.min_labels:
        return False
    if args.json:
        print(json.dumps({"status": "nothing_to_learn", "model": args.model, "usable": found,
                          "examples": examples, "skipped": usable.skipped,
                          "since": since.isoformat(), "min_labels": args.min_labels}))
    else:
        print(f"nothing to learn: {found} usable labelled examples since "
              f"{since.date().isoformat()} (need {args.min_labels})")
    return True


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from services.decision.training.packs import collect_packs, stored_packs

    repository, data_dir = Path(args.repository), Path(args.data_dir)
    model_dir = repository / MODEL
    since = datetime.now(timezone.utc) - timedelta(days=args.since_days)
    examples = fetch_examples(settings, since)
    if args.model == train.INVOICE:   # the invoice pack's scorer (retrain_risk.py)
        from services.decision.training import retrain_risk

        return retrain_risk.run(args, settings, examples, since)
    classes = served_classes(repository)
    usable = usable_examples(examples, classes)
    if nothing_to_learn(args, usable, len(examples), since):
        return EXIT_OK
    live = load_live(repository, str(settings.router_version), classes)
    holdout_file = data_dir / train.ROUTER_HELDOUT
    if not holdout_file.is_file():
        raise Refused(f"{holdout_file} missing: run `switchyard models train` first")
    try:
        train.verify_data(data_dir)
        packs: list[PackExamples] = collect_packs(
            args.packs, builtin=not args.no_shipped_packs,
            stored=stored_packs(settings, log=lambda line: print(line, file=sys.stderr)))
    except SystemExit as exc:   # a corpus not its SHA256SUMS, a pack folder not a pack
        raise _Invalid(str(exc.code)) from None
    tset = train.router_set(data_dir, packs)
    check_classes(tset.classes, classes)
    older, recent = split_recent(usable.examples, args.recent_share)
    version_dir = next_version_dir(model_dir)
    arrays, card = build(tset, older, recent, live, datagen.read_jsonl(holdout_file),
                         data_dir=data_dir, version_dir=version_dir, seed=args.seed,
                         label_weight=args.label_weight,
                         labels=labels_info(examples, usable, older, recent, args.label_weight,
                                            since))
    path = write_candidate(repository, version_dir, arrays, card)
    loaded = load_candidate(settings, model_dir, version_dir) if args.load else []
    if args.json:
        print(json.dumps(summary(card, path, loaded), indent=2))
    else:
        _print_summary(card, path, loaded)
    return EXIT_OK
