"""Input drift: population stability index (PSI) of live inputs against the training baseline.

Each model card carries a ``drift_baseline``: for every monitored feature, the bin edges and
the fraction of training (or held-out) rows per bin. :class:`DriftMonitor` keeps the last
``window`` live values per feature, bins them with the same code (``features.bin_counts``) and
publishes ``features.population_stability_index`` as a gauge every ``every`` observations:
below 0.1 the inputs look like training, above 0.25 they do not and the model's metrics no
longer vouch for it. Each publish is also handed to ``sink`` when one is given (the decision
service's :class:`services.decision.health.DriftRecorder`, which keeps the history behind
GetModelHealth); the sink only buffers, so observing stays cheap.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from prometheus_client import Gauge

from services.decision.training.features import bin_counts, population_stability_index

log = logging.getLogger(__name__)

INPUT_DRIFT = Gauge(
    "switchyard_input_drift_psi",
    "Population stability index of recent model inputs vs the training baseline "
    "(<0.1 stable, >0.25 drifted).",
    ["model", "version", "feature"],
)


class _Feature:
    def __init__(self, edges: Sequence[float] | None, fractions: Sequence[float],
                 classes: Sequence[str] | None, window: int) -> None:
        self.edges = list(edges) if edges is not None else None
        self.fractions = list(fractions)
        self.classes = {c: i for i, c in enumerate(classes)} if classes is not None else None
        self.values: deque[Any] = deque(maxlen=window)

    def psi(self) -> float:
        if self.classes is not None:
            counts = [0] * len(self.classes)
            for value in self.values:
                index = self.classes.get(value)
                if index is not None:
                    counts[index] += 1
        else:
            counts = bin_counts(list(self.values), self.edges or []).tolist()
        return population_stability_index(self.fractions, counts)


#: Receives each publish: model, version, feature -> PSI.
DriftSink = Callable[[str, str, dict[str, float]], None]


class DriftMonitor:
    """PSI gauges for one model version, fed one observation (a feature -> value map) at a time."""

    def __init__(self, model: str, version: str, baseline: Mapping[str, Any],
                 window: int = 2000, every: int = 200, sink: DriftSink | None = None) -> None:
        self.model, self.version = model, version
        self.every = max(1, every)
        self.sink = sink
        self._seen = 0
        self.features: dict[str, _Feature] = {}
        for name, spec in _flatten(baseline):
            if "fractions" not in spec:
                continue
            self.features[name] = _Feature(spec.get("edges"), spec["fractions"],
                                           spec.get("classes"), window)

    @classmethod
    def from_model_card(cls, card_path: Path, window: int = 2000, every: int = 200,
                        sink: DriftSink | None = None) -> DriftMonitor | None:
        """A monitor from a model card's ``drift_baseline``; None when there is no card."""
        try:
            card = json.loads(Path(card_path).read_text())
        except (OSError, ValueError) as exc:
            log.warning("no drift baseline for %s: %s", card_path, exc)
            return None
        return cls(card["model"], card["version"], card.get("drift_baseline", {}), window, every,
                   sink)

    def observe(self, values: Mapping[str, Any]) -> None:
        for name, value in values.items():
            feature = self.features.get(name)
            if feature is not None:
                feature.values.append(value)
        self._seen += 1
        if self._seen % self.every == 0:
            self.publish()

    def publish(self) -> dict[str, float]:
        out = {}
        for name, feature in self.features.items():
            if feature.values:
                out[name] = feature.psi()
                INPUT_DRIFT.labels(self.model, self.version, name).set(out[name])
        if out and self.sink is not None:
            try:
                self.sink(self.model, self.version, out)
            except Exception:  # noqa: BLE001 - the history must never stop a decision
                log.exception("drift samples not recorded")
        return out


def _flatten(baseline: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """``{"max_prob": {...}, "features": {"amount": {...}}}`` -> [("max_prob", ...), ("amount", ...)]."""
    out: list[tuple[str, Mapping[str, Any]]] = []
    for name, spec in baseline.items():
        if not isinstance(spec, Mapping):
            continue
        if "fractions" in spec:
            out.append((name, spec))
        else:
            out.extend((sub, s) for sub, s in spec.items() if isinstance(s, Mapping))
    return out


__all__ = ["INPUT_DRIFT", "DriftMonitor", "DriftSink"]
