"""A pack's models and Python extensions, as the decision service runs them.

* :class:`Scorers`: one Triton client and micro-batcher per scorer model a pack names
  (``models.scorers``), made on first use and shared by every pack and tenant that names it;
  the score is ``scores.<name>`` in the pack's rules.
* :class:`Enrichers`: one instance per enricher entry point (group ``switchyard.enrichers``)
  a pack names. An enricher class is built with :class:`EnricherResources` (the decision
  service's pool, matching key, payload codec and the text encoder's embeddings) and offers::

      async def enrich(task, extraction, params) -> Mapping[str, object]  # -> history.*
      async def record(conn, task, extraction, decision) -> None          # optional
      async def confirm(tenant_id, task_id, corrected, by_person) -> bool # optional
      async def reject(tenant_id, task_id) -> bool                        # optional
      async def pending(tasks, by_person) -> set[str]                     # optional
      topics: tuple[str, ...]                                             # optional, with:
      async def on_records(topic, records) -> list[(record, RejectRecord)]

  ``topics`` names registry topics (``switchyard._topics``) whose records the enricher keeps
  (reference data, such as the purchase orders an ERP publishes): the service consumes each
  one a batch at a time and hands the batch to ``on_records``, whose refusals are
  dead-lettered (:meth:`Enrichers.feeds`).

  ``record`` runs in the transaction that stores a Kafka-path decision; ``confirm`` and
  ``reject`` are how the enricher learns from outcomes (a person's verdict, a successful
  execution: :mod:`services.decision.learning`); ``pending`` narrows a batch of successes,
  given as (tenant, task id) pairs, to the task ids ``confirm`` could change, so the others
  cost the enricher no call.
* :func:`features_for`: the feature entry point (group ``switchyard.features``) a scorer names,
  called as ``features(extraction, history, task) -> list[float]``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pybreaker

from services.decision.batcher import MicroBatcher
from services.decision.drift import DriftMonitor, DriftSink
from services.decision.pools import TritonPools, new_breaker
from services.decision.rollouts import Rollout, RolloutBook
from services.decision.shadow import ShadowRunner
from services.decision.triton import Prediction, ScorerClient
from services.decision.versions import ModelVersions, Version
from switchyard import Settings
from switchyard.messaging import ALL_TOPICS, Record, RejectRecord, Topic
from switchyard.packs import Pack, entry_point, extractor_for
from switchyard.runtime import Supervisor
from switchyard.storage import PLAINTEXT, PayloadCodec

log = logging.getLogger(__name__)
EXTRACTORS_GROUP = "switchyard.extractors"
FEATURES_GROUP = "switchyard.features"
ENRICHERS_GROUP = "switchyard.enrichers"
#: A batch of a topic's records in, the records refused (each with why) out.
FeedHandler = Callable[[list[Record]], Awaitable[list[tuple[Record, RejectRecord]]]]


@dataclass(frozen=True)
class EnricherResources:
    """What an enricher is built with: the decision service's own database and keys."""

    pool: asyncpg.Pool
    matching_key: bytes
    codec: PayloadCodec = PLAINTEXT
    #: unit-length sentence embeddings of short texts, or None when the encoder cannot answer
    embed: Callable[[Sequence[str]], Awaitable[list[list[float]] | None]] | None = None


@functools.cache
def _named_extractor(name: str) -> Callable[[str], Any]:
    return entry_point(EXTRACTORS_GROUP, name)


def extractor_of(pack: Pack) -> Callable[[str], Any]:
    """``pack``'s extractor (``text -> extraction``); a named one is looked up once, not per
    document (reading entry points scans every installed distribution)."""
    if pack.extractor == "labels":
        return extractor_for(pack)
    return _named_extractor(pack.extractor)


@functools.cache
def features_for(name: str) -> Callable[..., Sequence[float]]:
    """The ``switchyard.features`` entry point ``name``, loaded once (packs are checked on
    load, so a missing one here means the installation changed: EntryPointError)."""
    return entry_point(FEATURES_GROUP, name)


@dataclass
class Scorer:
    versions: ModelVersions[list[float]]
    drift: DriftMonitor | None


class Scorers:
    """Scorer models on Triton, each version behind its own micro-batcher, all behind one
    breaker; which version scores a task is the model's rollout's to say
    (services/decision/rollouts.py: live, canary, shadow)."""

    def __init__(self, settings: Settings, pools: TritonPools,
                 breaker: pybreaker.CircuitBreaker, supervisor: Supervisor,
                 weights: Mapping[str, float], rollouts: RolloutBook | None = None,
                 pool: asyncpg.Pool | None = None, drift_sink: DriftSink | None = None
                 ) -> None:
        self.settings = settings
        self.pools = pools
        self.weights = weights  # tenant weights of the batchers' fair queues
        self.breaker = breaker
        self.supervisor = supervisor
        self.rollouts = rollouts if rollouts is not None else RolloutBook()
        self.pool = pool  # shadow comparisons are recorded here
        self.drift_sink = drift_sink  # the drift history GetModelHealth reads
        self._scorers: dict[str, Scorer] = {}
        self._lock = asyncio.Lock()

    def version_dir(self, model: str) -> str:
        """The Triton version directory a scorer's requests name when no rollout says
        otherwise: the ``<model>_version`` setting when one is declared, else Triton's
        latest."""
        return str(getattr(self.settings, f"{model}_version", "") or "")

    def versions(self) -> dict[str, ModelVersions[list[float]]]:
        """The scorers built so far, by model name."""
        return {name: scorer.versions for name, scorer in self._scorers.items()}

    async def get(self, model: str, output_class: str) -> Scorer:
        scorer = self._scorers.get(model)
        if scorer is not None:
            return scorer
        async with self._lock:
            if model not in self._scorers:
                s = self.settings

                def batcher(name: str, client: ScorerClient
                            ) -> MicroBatcher[list[float], Prediction]:
                    return MicroBatcher(name, client.predict, s.batch_max_size,
                                        s.batch_max_delay_ms / 1000, s.batch_queue_limit,
                                        supervisor=self.supervisor, weights=self.weights)

                async def build(version: str) -> Version[list[float]]:
                    # another version than the settings' has its own breaker: a failing
                    # candidate must not open the live scorers'
                    breaker = self.breaker if version == self.version_dir(model) else \
                        new_breaker(f"triton-{model}-v{version}", s.breaker_fail_max,
                                    s.breaker_reset_s)
                    client = ScorerClient(model, self.pools, s.triton_timeout_s, breaker,
                                          version, output_class)
                    # the settings' version keeps the model's name (its batch metrics)
                    name = model if version == self.version_dir(model) else f"{model}_v{version}"
                    return Version(client, batcher(name, client))

                async def shadow(rollout: Rollout, built: Version[list[float]]
                                 ) -> ShadowRunner:
                    return ShadowRunner(batcher(f"{model}_shadow_v{rollout.candidate}",
                                                built.client),
                                        model, rollout.live, rollout.candidate, self.pool,
                                        sample=s.router_shadow_sample)

                version = self.version_dir(model)
                card = Path(s.model_repository) / model / (version or "1") / "model_card.json"
                drift = DriftMonitor.from_model_card(card, s.drift_window, s.drift_publish_every,
                                                     self.drift_sink)
                self._scorers[model] = Scorer(
                    ModelVersions(model, self.rollouts, version, build, shadow), drift)
        return self._scorers[model]

    async def score(self, model: str, output_class: str, vector: Sequence[float],
                    tenant: str = "", priority: int = 2) -> Prediction:
        """Raises ModelUnavailable (Triton away) or Overloaded (batcher full, or the tenant
        at its share of it)."""
        scorer = await self.get(model, output_class)
        prediction = await scorer.versions.submit([float(v) for v in vector], tenant, priority)
        if scorer.drift is not None:
            live = await scorer.versions.version(scorer.versions.rollout.live)
            names = live.client.feature_names or [f"x{i}" for i in range(len(vector))]
            scorer.drift.observe({**dict(zip(names, vector)), **prediction.scores})
        return prediction

    async def stop(self) -> None:
        for scorer in self._scorers.values():
            await scorer.versions.stop()  # the clients' channels are the pools' (service.py)


class Enrichers:
    """One instance of every enricher a pack named, built on first use and kept."""

    def __init__(self, resources: EnricherResources | None) -> None:
        self.resources = resources
        self._instances: dict[str, Any] = {}

    def get(self, name: str) -> Any:
        if name not in self._instances:
            self._instances[name] = entry_point(ENRICHERS_GROUP, name)(self.resources)
        return self._instances[name]

    def prepare(self, names: Sequence[str]) -> None:
        """Build these now (the learner hands outcomes to every enricher built)."""
        for name in names:
            try:
                self.get(name)
            except Exception:  # noqa: BLE001 - a broken extension must not stop the service
                log.exception("enricher %s could not be built", name)

    def all(self) -> list[Any]:
        return list(self._instances.values())

    def feeds(self) -> list[tuple[Topic, FeedHandler]]:
        """The topics the built enrichers keep, each with the handler of its batches: a
        topic two enrichers keep is consumed once and handed to both, in turn (the first
        refusal of a record is the one dead-lettered)."""
        wanted: dict[str, list[Any]] = {}
        for enricher in self.all():
            for name in getattr(enricher, "topics", ()):
                wanted.setdefault(name, []).append(enricher)
        known = {topic.name: topic for topic in ALL_TOPICS}
        feeds = []
        for name, enrichers in wanted.items():
            if name not in known:
                raise ValueError(f"enricher {enrichers[0].name} keeps topic {name!r}, which "
                                 f"is not in the topic registry ({sorted(known)})")
            feeds.append((known[name], functools.partial(_feed, name, enrichers)))
        return feeds

    async def enrich(self, names: Sequence[str], task: Any, extraction: Any,
                     params: Mapping[str, Any]) -> dict[str, Any]:
        history: dict[str, Any] = {}
        for name in names:
            history.update(await self.get(name).enrich(task, extraction, params))
        return history


async def _feed(topic: str, enrichers: Sequence[Any], records: list[Record]
                ) -> list[tuple[Record, RejectRecord]]:
    refused: dict[int, tuple[Record, RejectRecord]] = {}
    for enricher in enrichers:
        for record, reason in await enricher.on_records(topic, records):
            refused.setdefault(id(record), (record, reason))
    return list(refused.values())


__all__ = ["EnricherResources", "Enrichers", "FeedHandler", "Scorer", "Scorers", "extractor_of",
           "features_for"]
