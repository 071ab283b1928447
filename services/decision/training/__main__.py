"""``python -m services.decision.training [--if-missing] [--seed N] [--packs DIR...] ...``
(also ``switchyard models train``) -- see ``--help``."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from services.decision.training import (
    cascade,
    datagen,
    default_paths,
    engagement,
    engagement_data,
    train,
)
from services.decision.training.packs import collect_packs, stored_packs


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``python -m services.decision.training`` and ``switchyard models train``."""
    data_default, repo_default = default_paths()
    p.add_argument("--if-missing", action="store_true",
                   help="do nothing when the artifacts exist and match the data, featurizer and "
                        "trainer (and --seed, when given)")
    p.add_argument("--seed", type=int, default=None,
                   help=f"training seed (default {train.DEFAULT_SEED})")
    p.add_argument("--data-dir", type=Path, default=data_default, help="corpus directory")
    p.add_argument("--repository", type=Path, default=repo_default, help="Triton model repository")
    p.add_argument("--regenerate-data", action="store_true",
                   help="regenerate the corpora (and SHA256SUMS, manifest.json) before training")
    p.add_argument("--data-seed", type=int, default=datagen.DEFAULT_DATA_SEED,
                   help="seed for --regenerate-data / --check-data")
    p.add_argument("--check-data", action="store_true",
                   help="regenerate the corpora in memory and compare with the shipped sha256, then exit")
    p.add_argument("--clean", action="store_true", help="delete the generated artifacts and exit")
    p.add_argument("--packs", nargs="+", type=Path, default=[], metavar="DIR",
                   help="pack folders to train the router on besides the shipped packs (each "
                        "pack is a class; its examples.jsonl its examples, its "
                        "look_alikes.jsonl rows of the class other)")
    p.add_argument("--no-shipped-packs", action="store_true",
                   help="leave out the packs shipped with Switchyard (their corpus rows too): "
                        "the router learns only the --packs types and 'other'")
    p.add_argument("--no-stored-packs", action="store_true",
                   help="do not read the packs applied to the decision service from "
                        "PostgreSQL (read by default when it is reachable)")
    p.add_argument("--reload", action="store_true",
                   help="then have Triton ($SWITCHYARD_TRITON_URL, and the spill-over pool "
                        "$SWITCHYARD_TRITON_SPILL_URL when set) load the new models, "
                        "without a restart; the decision service reads the new class list on "
                        "its next prediction")


#: What ``--reload`` has Triton load: every model training writes.
RELOADED = (train.ROUTER, cascade.MODEL, train.INVOICE, engagement.MODEL)


class ReloadError(SystemExit):
    """Triton did not load a model: a ``SystemExit`` with the message (so ``models train
    --reload`` exits with it); ``unreachable`` when Triton could not be reached at all."""

    def __init__(self, message: str, unreachable: bool) -> None:
        super().__init__(message)
        self.unreachable = unreachable


def reload_models(triton_url: str, models: Sequence[str] = RELOADED, version: str = "",
                  log: Callable[[str], None] = print) -> None:
    """Ask a running Triton (model control mode explicit, as the embedded stack starts it) to
    load the retrained ``models`` from its repository: the new weights, classes and PROBS
    dims. With ``version`` (``switchyard models retrain --load``), fail unless that version
    directory of each model is ready afterwards."""
    import tritonclient.grpc as triton
    from tritonclient.utils import InferenceServerException

    client = triton.InferenceServerClient(url=triton_url)
    try:
        for model in models:
            client.load_model(model)
            if version and not client.is_model_ready(model, version):
                raise InferenceServerException(f"{model} version {version} is not ready "
                                               "after the load")
            log(f"[train] Triton at {triton_url} loaded {model}")
    except InferenceServerException as exc:
        raise ReloadError(f"Triton at {triton_url} did not load the models: {exc}",
                          "UNAVAILABLE" in str(exc.status() or "")) from None
    finally:
        client.close()


def run(args: argparse.Namespace) -> int:
    """Train (or check, regenerate, clean) as ``args`` say; the router learns one class per
    enabled pack (the shipped ones and ``--packs``) and ``other``."""
    if args.clean:
        train.clean(args.repository, args.data_dir)
        engagement.clean(args.repository, args.data_dir)
        return 0
    if args.check_data:
        ok = True
        blobs = {datagen.ROUTER_FILE: datagen.jsonl_bytes(datagen.generate_router_corpus(seed=args.data_seed)),
                 datagen.INVOICE_FILE: datagen.jsonl_bytes(datagen.generate_invoice_corpus(seed=args.data_seed)),
                 engagement_data.DATA_FILE: datagen.jsonl_bytes(engagement_data.simulate_windows(
                     seed=args.data_seed + engagement_data.SEED_OFFSET))}
        for name, blob in blobs.items():
            same = train.sha256_bytes(blob) == datagen.sha256_file(args.data_dir / name)
            ok &= same
            print(f"{name}: {'reproduced' if same else 'DIFFERS from the shipped file'}")
        return 0 if ok else 1
    if args.regenerate_data:
        t = time.perf_counter()
        datagen.write_corpora(args.data_dir, seed=args.data_seed)
        print(f"[datagen] wrote corpora (seed {args.data_seed}) to {args.data_dir} "
              f"in {time.perf_counter() - t:.1f}s")
    stored: list = []
    if not args.no_stored_packs:
        from switchyard import Settings

        stored = stored_packs(Settings.from_env())
    packs = collect_packs(args.packs, builtin=not args.no_shipped_packs, stored=stored)
    from switchyard import Settings

    threshold = Settings.from_env().signal_disengaged_below
    if args.if_missing and not args.regenerate_data:
        reason = train.artifacts_status(args.data_dir, args.repository, args.seed, packs)
        eng_reason = engagement.status(args.data_dir, args.repository, threshold)
        if reason is None and eng_reason is None:
            print("[train] models up to date")
            if args.reload:  # asked to: Triton loads what is on disk (another stack's files)
                _reload_everywhere()
            return 0
        for why in (reason, eng_reason):
            if why is not None:
                print(f"[train] (re)training: {why}")
    else:
        reason = eng_reason = "asked to"
    from switchyard.runtime import stderr_progress

    if reason is not None:
        with stderr_progress() as bar:   # stderr, terminal only
            phase = bar.add_task("training", total=train.training_phases())
            train.train_all(args.data_dir, args.repository,
                            seed=train.DEFAULT_SEED if args.seed is None else args.seed, packs=packs,
                            on_phase=lambda name: bar.update(phase, advance=1,
                                                             description=f"trained {name}"),
                            engagement_threshold=threshold)
    elif eng_reason is not None:   # the router and invoice_risk are up to date
        train.verify_data(args.data_dir)
        engagement.train(args.data_dir, args.repository, threshold)
    if args.reload:
        _reload_everywhere()
    return 0


def _reload_everywhere() -> None:
    """``--reload``: every Triton pool the settings name loads the trained models (they serve
    the same versions)."""
    from switchyard import Settings

    for url in Settings.from_env().triton_urls:
        reload_models(url)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m services.decision.training",
        description="Train the document_router (one class per enabled pack, and 'other'), "
                    "invoice_risk and engagement Triton models from the packs and models/data.")
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
