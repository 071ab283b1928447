"""``switchyard models train-engagement | promote engagement | status | retrain``: the engagement
model's candidates, its fairness gate, what Triton serves, and router candidates trained from
reviewers' labels.

* ``train-engagement --out DIR [--data FILE]`` trains a *candidate* (weights.npz,
  model_card.json, MODEL_CARD.md) into DIR, never into the served repository;
* ``promote engagement --candidate DIR`` reads the candidate's card and refuses (exit 1, one
  line naming the figure and the limit) a candidate whose holdout demographic parity difference
  exceeds ``engagement_max_parity_difference``, or whose fairness was measured at another alert
  threshold than ``signal_disengaged_below``; else installs it as the next version directory of
  ``<repository>/engagement``, sets the config's ``model_version`` and asks Triton (explicit
  model control) to load it -- Triton then serves the newest version only. A candidate Triton
  does not load is taken out again and the command fails;
* ``promote MODEL`` for any other model (no ``--candidate``) is DecisionService.PromoteModel:
  the decision service's rolled-out candidate of the model becomes live (switchyard.clients);
* ``status`` prints each model's versions on disk and those Triton serves, the serving
  engagement version's card fairness against the limit, and the decision service's rollouts
  (DecisionService.ListRollouts; one line instead when it cannot be asked, which does not
  change the exit code);
* ``retrain`` trains a document_router candidate from reviewers' labels (PostgreSQL
  ``decision_labels``) into the next version directory, beside the live one, compared with it
  (services/decision/training/retrain.py).

Exit codes: 0 ok; 1 refused (the gate, or for ``retrain`` a training set of other classes) or
Triton failed to load; 2 a candidate that is not one (missing files, weights not the card's,
other features; ``promote``: ``--candidate`` missing for engagement or given for another
model); 3 Triton (or, for ``retrain``, PostgreSQL) unreachable.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

from switchyard import Settings

__all__ = ["EXIT_CONNECT", "EXIT_INVALID", "EXIT_OK", "EXIT_REFUSED", "GateRefusal",
           "add_models_arguments", "check_gate", "run"]

EXIT_OK, EXIT_REFUSED, EXIT_INVALID, EXIT_CONNECT = 0, 1, 2, 3
ACTIONS = ("train-engagement", "promote", "status", "retrain")


class GateRefusal(Exception):
    """A candidate the promotion gate refuses; the message names the figure and the limit."""


class _Invalid(Exception):
    """Not a candidate (exit 2)."""


def add_models_arguments(models: Any) -> None:
    """Register the four actions on ``switchyard models``' sub-parsers."""
    from services.decision.training import default_paths

    data_dir, repository = default_paths()
    t = models.add_parser("train-engagement",
                          help="train an engagement candidate into a directory (not the served "
                               "repository); promote it with `models promote engagement`")
    t.add_argument("--out", type=Path, required=True, metavar="DIR", help="candidate directory")
    t.add_argument("--data", type=Path, default=data_dir / "engagement_windows.jsonl",
                   metavar="FILE", help="labelled windows (default: the shipped ones)")
    t.add_argument("--version", default="1.1.0", help="the candidate's semantic version")
    t.add_argument("--penalty", type=float, default=None,
                   help="the parity penalty's weight (default: searched, as for version 1)")
    t.add_argument("--exclude", nargs="*", default=None, metavar="FEATURE",
                   help="features given no weight (default: slouched_share; none: --exclude "
                        "with no name)")
    from switchyard.clients import add_decision_client_arguments

    p = models.add_parser("promote", help="engagement --candidate DIR: install a candidate as "
                                          "the next served version if its card passes the "
                                          "fairness gate; any other MODEL: make its rolled-out "
                                          "candidate live (DecisionService.PromoteModel; admins)")
    p.add_argument("model", help="engagement (with --candidate), or a model the decision "
                                 "service rolls out (document_router, a pack's scorer)")
    p.add_argument("--candidate", type=Path, metavar="DIR",
                   help="engagement: the candidate directory (train-engagement --out)")
    p.add_argument("--repository", type=Path, default=repository,
                   help="engagement: Triton model repository")
    p.add_argument("--no-load", action="store_true",
                   help="engagement: install only (Triton loads it when it next starts)")
    p.add_argument("--reason", default="", help="other models: kept in the audit log and the "
                                                "rollout's note")
    add_decision_client_arguments(p)
    s = models.add_parser("status", help="served versions per model, the engagement model's "
                                         "fairness and the decision service's rollouts")
    s.add_argument("--repository", type=Path, default=repository, help="Triton model repository")
    s.add_argument("--json", action="store_true")
    add_decision_client_arguments(s, json_flag=False, connect_timeout=2.0)
    from services.decision.training import retrain

    retrain.add_arguments(models.add_parser(
        "retrain", help="train a document_router candidate from reviewers' labels into the next "
                        "version directory (served beside the live one, not live), compared "
                        "with the live version"))


def check_gate(card: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """The card's holdout fairness, or :class:`GateRefusal` when it breaks a limit."""
    fairness = card.get("fairness", {}).get("test")
    if not fairness:
        raise GateRefusal("the card has no holdout fairness figures")
    threshold = settings.signal_disengaged_below
    if card.get("alert_threshold") != threshold:
        raise GateRefusal(f"fairness measured at P_ENGAGED < {card.get('alert_threshold')}, not at "
                          f"signal_disengaged_below {threshold}: retrain the candidate")
    parity = float(fairness["demographic_parity_difference"])
    limit = settings.engagement_max_parity_difference
    if parity > limit:
        rates = ", ".join(f"{g} {v['alert_rate']:.4f}" for g, v in fairness["groups"].items())
        raise GateRefusal(f"demographic parity difference {parity:.4f} exceeds "
                          f"engagement_max_parity_difference {limit} (holdout alert rates at "
                          f"P_ENGAGED < {threshold}: {rates})")
    return dict(fairness)


def _read_candidate(path: Path) -> dict[str, Any]:
    from services.decision.engagement.features import FEATURE_NAMES
    from services.decision.training import datagen, engagement

    for name in engagement.ARTIFACTS:
        if not (path / name).is_file():
            raise _Invalid(f"{path / name} missing: train one with `switchyard models "
                           "train-engagement --out DIR`")
    try:
        card = json.loads((path / "model_card.json").read_text())
    except ValueError as exc:
        raise _Invalid(f"{path / 'model_card.json'} unreadable: {exc}") from None
    if card.get("model") != engagement.MODEL or card.get("feature_names") != list(FEATURE_NAMES):
        raise _Invalid(f"{path} is not an engagement model on the current features")
    if card.get("weights", {}).get("sha256") != datagen.sha256_file(path / "weights.npz"):
        raise _Invalid(f"{path / 'weights.npz'} is not the file its card describes")
    return card


def _set_model_version(config: Path, version: str) -> None:
    text = config.read_text("utf-8")
    text, n = re.subn(r'(key: "model_version"\n\s*value: \{ string_value: ")[^"]*(")',
                      rf"\g<1>{version}\g<2>", text, count=1)
    if n != 1:
        raise _Invalid(f"{config}: no model_version parameter")
    config.write_text(text, "utf-8")


def _versions(model_dir: Path) -> list[int]:
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def _triton(settings: Settings) -> Any:
    import tritonclient.grpc as triton

    return triton.InferenceServerClient(url=settings.triton_url)


def _train(args: argparse.Namespace, settings: Settings) -> int:
    from services.decision.training import datagen, default_paths, engagement, train

    data = Path(args.data)
    if data.resolve() == (default_paths()[0] / data.name).resolve():
        train.verify_data(data.parent)  # the shipped windows: checked against SHA256SUMS
    rows = datagen.read_jsonl(data)
    from services.decision.engagement.features import FEATURE_NAMES

    unknown = sorted(set(args.exclude or ()) - set(FEATURE_NAMES))
    if unknown:
        raise _Invalid(f"no such feature: {', '.join(unknown)} (features: {', '.join(FEATURE_NAMES)})")
    res = engagement.fit(rows, settings.signal_disengaged_below, excluded=args.exclude,
                         penalty=args.penalty)
    card = engagement.write_version(args.out, res, data, len(rows), version=args.version,
                                    threshold=settings.signal_disengaged_below)
    print(engagement.summary(card))
    print(f"candidate written to {args.out}; promote with: switchyard models promote "
          f"engagement --candidate {args.out}")
    return EXIT_OK


def _promote(args: argparse.Namespace, settings: Settings) -> int:
    from tritonclient.utils import InferenceServerException

    from services.decision.training import engagement

    card = _read_candidate(Path(args.candidate))
    try:
        fairness = check_gate(card, settings)
    except GateRefusal as exc:
        print(f"switchyard models promote: refused {args.candidate}: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    model_dir = Path(args.repository) / engagement.MODEL
    engagement.ensure_model_files(args.repository)
    config = model_dir / "config.pbtxt"
    before = config.read_text("utf-8")
    version = max(_versions(model_dir), default=0) + 1
    staging = model_dir / f".promote-{version}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    for name in engagement.ARTIFACTS:
        shutil.copyfile(Path(args.candidate) / name, staging / name)
    installed = {**card, "triton": {**card["triton"], "version_dir": str(version)},
                 "promoted_from": str(Path(args.candidate).resolve())}
    (staging / "model_card.json").write_text(json.dumps(installed, indent=2) + "\n")
    staging.rename(model_dir / str(version))
    engagement.ensure_model_files(args.repository, str(version))
    _set_model_version(config, str(card["version"]))
    print(f"installed {engagement.MODEL} {card['version']} as version {version} in {model_dir} "
          f"(parity difference {fairness['demographic_parity_difference']:.4f} <= "
          f"{settings.engagement_max_parity_difference})")
    if args.no_load:
        return EXIT_OK
    loaded = []  # every pool serves the same versions (services/decision/pools.py)
    try:
        for url in settings.triton_urls:
            loaded.append(url)
            _load(url, engagement.MODEL, str(version))
    except InferenceServerException as exc:
        shutil.rmtree(model_dir / str(version), ignore_errors=True)
        config.write_text(before, "utf-8")
        print(f"switchyard models promote: Triton at {loaded[-1]} did not load "
              f"{engagement.MODEL} version {version} ({exc}); taken out again", file=sys.stderr)
        for url in loaded:  # back to the previous newest version
            try:
                _load(url, engagement.MODEL)
            except InferenceServerException:
                pass
        unavailable = "UNAVAILABLE" in str(exc.status() or "")
        return EXIT_CONNECT if unavailable else EXIT_REFUSED
    for url in loaded:
        print(f"Triton at {url} serves {engagement.MODEL} version {version}")
    return EXIT_OK


def _load(url: str, model: str, version: str = "") -> None:
    """Have the Triton at ``url`` (re)load ``model`` from its repository; with ``version``,
    fail unless that version is ready afterwards."""
    import tritonclient.grpc as triton
    from tritonclient.utils import InferenceServerException

    client = triton.InferenceServerClient(url=url)
    try:
        client.load_model(model)
        if version and not client.is_model_ready(model, version):
            raise InferenceServerException(f"version {version} not ready after the load")
    finally:
        client.close()


def model_status(repository: Path, settings: Settings) -> dict[str, Any]:
    """Per model: versions on disk, versions Triton serves (None: unreachable), and for the
    engagement model the serving (else newest) version's card fairness against the limit."""
    from tritonclient.utils import InferenceServerException

    serving: dict[str, list[int]] | None = {}
    try:
        client = _triton(settings)
        try:
            for m in client.get_model_repository_index(as_json=True).get("models", []):
                if m.get("state") == "READY" and m.get("version"):
                    serving.setdefault(m["name"], []).append(int(m["version"]))
        finally:
            client.close()
    except InferenceServerException:
        serving = None
    # the primary's: a spill-over pool is loaded alongside it (_promote, train --reload)
    out: dict[str, Any] = {"triton_url": settings.triton_url, "triton_reachable": serving is not None,
                           "models": {}}
    for model_dir in sorted(p for p in Path(repository).iterdir() if (p / "config.pbtxt").is_file()):
        disk = _versions(model_dir)
        served = sorted(serving.get(model_dir.name, [])) if serving is not None else None
        entry: dict[str, Any] = {"on_disk": disk, "serving": served}
        shown = (served or disk or [None])[-1]
        card_path = model_dir / str(shown) / "model_card.json"
        if card_path.is_file():
            card = json.loads(card_path.read_text())
            entry["version"] = card.get("version")
            fairness = card.get("fairness", {}).get("test")
            if fairness:
                limit = settings.engagement_max_parity_difference
                entry["fairness"] = {
                    "card_version_dir": shown,
                    "alert": fairness["alert"],
                    "alert_rates": {g: v["alert_rate"] for g, v in fairness["groups"].items()},
                    "demographic_parity_difference": fairness["demographic_parity_difference"],
                    "equalized_odds_difference": fairness["equalized_odds_difference"],
                    "max_parity_difference": limit,
                    "within_limit": fairness["demographic_parity_difference"] <= limit}
        out["models"][model_dir.name] = entry
    return out


def _status(args: argparse.Namespace, settings: Settings) -> int:
    from switchyard.clients import fetch_rollouts, render_rollouts

    state = model_status(args.repository, settings)
    # the decision service's rollouts: None (and one line why) when it cannot be asked; the
    # exit code stays Triton's
    state["rollouts"], rollouts_error = fetch_rollouts(args, settings)
    if args.json:
        print(json.dumps({**state, "rollouts_error": rollouts_error or None}, indent=2))
        return EXIT_OK
    if not state["triton_reachable"]:
        print(f"Triton at {state['triton_url']} unreachable: serving versions unknown")
    if state["rollouts"] is None:
        print(f"rollouts unknown: {rollouts_error}")
    print(f"{'model':<18} {'serving':<10} {'on disk':<10} version")
    for name, m in state["models"].items():
        serving = "?" if m["serving"] is None else (",".join(map(str, m["serving"])) or "-")
        print(f"{name:<18} {serving:<10} {','.join(map(str, m['on_disk'])) or '-':<10} "
              f"{m.get('version') or '-'}")
    for name, m in state["models"].items():
        f = m.get("fairness")
        if f:
            rates = ", ".join(f"{g} {r:.4f}" for g, r in f["alert_rates"].items())
            print(f"{name} fairness (card of version {f['card_version_dir']}): alert rates {rates} "
                  f"({f['alert']}); parity difference {f['demographic_parity_difference']:.4f} "
                  f"({'within' if f['within_limit'] else 'ABOVE'} the limit "
                  f"{f['max_parity_difference']}); equalised odds "
                  f"{f['equalized_odds_difference']:.4f}")
    if state["rollouts"]:
        render_rollouts(state["rollouts"])
    elif state["rollouts"] is not None:
        print("rollouts: none (every model's live version decides alone)")
    return EXIT_OK if state["triton_reachable"] else EXIT_CONNECT


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        if args.models_action == "train-engagement":
            return _train(args, settings)
        if args.models_action == "promote":
            if args.model != "engagement" and args.candidate is None:
                from switchyard.clients import run_rollouts as run_rollout

                return run_rollout(args, settings)   # DecisionService.PromoteModel
            if args.model != "engagement":
                raise _Invalid(f"--candidate DIR is for the engagement model only; promote "
                               f"{args.model}'s rolled-out candidate without it")
            if args.candidate is None:
                raise _Invalid("promote engagement needs --candidate DIR (train one with "
                               "`switchyard models train-engagement --out DIR`)")
            return _promote(args, settings)
        if args.models_action == "retrain":
            from services.decision.training.retrain import run as run_retrain

            return run_retrain(args, settings)
        return _status(args, settings)
    except _Invalid as exc:
        print(f"switchyard models {args.models_action}: {exc}", file=sys.stderr)
        return EXIT_INVALID
