"""What DecisionService's rollout RPCs do (ListRollouts, StartRollout, PromoteModel,
RollbackModel), as plain code the servicer calls: which models can be rolled out, the checks
on a request, the change in one transaction with its audit entry, and the answer with each
side's evidence (services/decision/rollouts.py)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg
from tritonclient.utils import InferenceServerException

from services.decision import fairness
from services.decision import rollouts as ro
from services.decision.extensions import Scorers
from services.decision.packs import PackCatalog
from services.decision.triton import ModelUnavailable
from services.decision.versions import ModelVersions
from switchyard.packs import Pack
from switchyard.rpc import FieldViolation
from switchyard.tasks import timestamp
from switchyard.v1 import ModelRollout, RolloutEvidence, RolloutStage, StartRolloutRequest

__all__ = ["InvalidRollout", "ModelRollouts", "ROUTER"]

ROUTER = "document_router"


class InvalidRollout(Exception):
    """A request with bad fields (INVALID_ARGUMENT with these violations)."""

    def __init__(self, violations: Sequence[FieldViolation]) -> None:
        super().__init__("; ".join(f"{v.field}: {v.description}" for v in violations))
        self.violations = list(violations)


class ModelRollouts:
    """The decision service's models that can be rolled out: the router, and every scorer a
    pack names."""

    def __init__(self, book: ro.RolloutBook, routers: ModelVersions[str], scorers: Scorers,
                 catalog: PackCatalog, matching_key: bytes = b"",
                 min_group_samples: int = 30, repository: Path | None = None) -> None:
        self.book, self.routers, self.scorers, self.catalog = book, routers, scorers, catalog
        self.matching_key, self.min_group_samples = matching_key, min_group_samples
        self.repository = repository  # the model cards (a retrained candidate's holdout figures)

    def _card_breaches(self, rollout: ro.Rollout) -> list[str]:
        """The candidate's model card's holdout figures past their pack's limit."""
        if self.repository is None:
            return []
        path = self.repository / rollout.model / rollout.candidate / "model_card.json"
        try:
            card = json.loads(path.read_text())
        except (OSError, ValueError):
            return []
        out = []
        for item in card.get("fairness", {}).get("holdout", []):
            difference = (item.get("candidate") or {}).get("demographic_parity_difference")
            if difference is not None and difference > item["max_parity_difference"]:
                out.append(f"{item['pack']}.{item['attribute']}: demographic parity difference "
                           f"{difference:.3f} on the frozen holdout (model card) above "
                           f"{item['max_parity_difference']}")
        return out

    def _fair_packs(self) -> dict[str, Pack]:
        """The packs that declare protected attributes, by name."""
        return {stored.pack.name: stored.pack for stored in self.catalog.newest("").values()
                if stored.pack.fairness is not None}

    async def fairness_breach(self, pool: asyncpg.Pool, rollout: ro.Rollout) -> str | None:
        """Why the rollout's candidate fails a pack's fairness limit on the tasks it decided
        since the rollout started (None: it does not, or too few tasks to say)."""
        if not rollout.candidate:
            return None
        carded = self._card_breaches(rollout)
        packs = self._fair_packs()
        if carded or not packs or rollout.started_at is None:
            return "; ".join(carded) or None
        name = self.reported(rollout.model).get(rollout.candidate, rollout.candidate)
        figures = await fairness.parity_by_version(pool, rollout.started_at,
                                                   self.min_group_samples, rollout.model,
                                                   [name])
        limits = {n: p.fairness.max_parity_difference for n, p in packs.items()
                  if p.fairness is not None}  # (all of them: narrowing for the type checker)
        bad = fairness.breaches(figures, limits)
        if not bad:
            return None
        return "; ".join(
            f"{p.described(fairness.group_names(self.matching_key, packs[p.pack], p.attribute))}"
            f" above {limits[p.pack]}" for p in bad)

    def _scorer_classes(self) -> dict[str, str]:
        """Scorer model -> the output class a pack reads from it."""
        return {scorer.name: scorer.output_class for view in (self.catalog.newest(""),)
                for stored in view.values() for scorer in stored.pack.scorers}

    def names(self) -> list[str]:
        return sorted({ROUTER, *self._scorer_classes()})

    async def versions_of(self, model: str) -> ModelVersions[Any] | None:
        if model == ROUTER:
            return self.routers
        output_class = self._scorer_classes().get(model)
        if output_class is None:
            return None
        return (await self.scorers.get(model, output_class)).versions

    def reported(self, model: str) -> dict[str, str]:
        """Version directory -> the version name the model's decisions carry."""
        if model == ROUTER:
            return self.routers.reported()
        versions = self.scorers.versions().get(model)
        return versions.reported() if versions is not None else {}

    async def listed(self, pool: asyncpg.Pool) -> list[ModelRollout]:
        await self.book.refresh(pool)
        shown = []
        for model in self.names():
            versions = await self.versions_of(model)
            assert versions is not None
            shown.append(await self.answer(pool, versions.rollout))
        return shown

    async def answer(self, pool: asyncpg.Pool, rollout: ro.Rollout) -> ModelRollout:
        """The rollout as the API shows it, with each side's evidence so far."""
        live, candidate = await ro.evidence(pool, rollout, self.reported(rollout.model))
        out = ModelRollout(
            model_name=rollout.model, live_version=rollout.live,
            candidate_version=rollout.candidate,
            stage=RolloutStage.Value(f"ROLLOUT_STAGE_{rollout.stage}"),
            canary_share=rollout.share, tenants=list(rollout.tenants),
            updated_by=rollout.updated_by, note=rollout.note,
            live=_evidence(live), candidate=_evidence(candidate))
        if rollout.started_at is not None:
            out.started_at.CopyFrom(timestamp(rollout.started_at))
        if rollout.updated_at is not None:
            out.updated_at.CopyFrom(timestamp(rollout.updated_at))
        return out

    async def _model(self, model: str) -> tuple[str, ModelVersions[Any]]:
        name = model.strip()
        if not name:
            raise InvalidRollout([FieldViolation("model_name", "required")])
        versions = await self.versions_of(name)
        if versions is None:
            raise InvalidRollout([FieldViolation(
                "model_name", f"not a model this service consults ({', '.join(self.names())})")])
        return name, versions

    async def start(self, pool: asyncpg.Pool, request: StartRolloutRequest, actor: str
                    ) -> ModelRollout:
        """Shadow or canary a candidate version (checked, stored, audited)."""
        problems = []
        stage = RolloutStage.Name(request.stage).removeprefix("ROLLOUT_STAGE_") \
            if request.stage in RolloutStage.values() else ""
        if stage not in (ro.SHADOW, ro.CANARY):
            problems.append(FieldViolation("stage", "SHADOW or CANARY"))
        candidate = request.candidate_version.strip()
        if not candidate.isdigit():
            problems.append(FieldViolation("candidate_version",
                                           "a Triton version directory (digits)"))
        if stage == ro.CANARY and not 0 < request.canary_share <= ro.MAX_CANARY_SHARE:
            problems.append(FieldViolation("canary_share",
                                           f"more than 0 and at most {ro.MAX_CANARY_SHARE}"))
        if stage != ro.CANARY and (request.canary_share or request.tenants):
            problems.append(FieldViolation("canary_share", "only for a CANARY"))
        if any(not t.strip() for t in request.tenants):
            problems.append(FieldViolation("tenants", "names must not be empty"))
        try:
            model, versions = await self._model(request.model_name)
        except InvalidRollout as exc:
            problems += exc.violations
            raise InvalidRollout(problems) from None
        if problems:
            raise InvalidRollout(problems)
        current = versions.rollout
        if candidate == current.live:
            raise InvalidRollout([FieldViolation("candidate_version",
                                                 f"{candidate} is the live version")])
        built = await versions.version(candidate)
        try:
            await built.client.load_metadata()
        except (ModelUnavailable, InferenceServerException, OSError) as exc:
            raise ro.RolloutError(f"{model} version {candidate} is not served by Triton: "
                                  f"{exc}") from None
        async with pool.acquire() as conn, conn.transaction():
            started = await ro.start(conn, current, candidate, stage, request.canary_share,
                                     [t.strip() for t in request.tenants], actor)
        self.book.put(started)
        return await self.answer(pool, started)

    async def finish(self, pool: asyncpg.Pool, model_name: str, promote_it: bool, reason: str,
                     actor: str) -> ModelRollout:
        """Promote or roll back the model's candidate (audited)."""
        model, versions = await self._model(model_name)
        current = versions.rollout
        if promote_it:
            breach = await self.fairness_breach(pool, current)
            if breach:
                raise ro.RolloutError(f"promotion refused by the fairness gate: {breach}")
        change = ro.promote if promote_it else ro.rollback
        note = reason.strip() or ("promoted" if promote_it else "rolled back") + f" by {actor}"
        async with pool.acquire() as conn, conn.transaction():
            after = await change(conn, current, actor, note)
        assert after is not None  # unguarded: the update applies while a candidate exists
        self.book.put(after)
        return await self.answer(pool, after)


def _evidence(e: ro.Evidence) -> RolloutEvidence:
    return RolloutEvidence(decisions=e.decisions, escalated=e.escalated, errors=e.errors,
                           judged=e.judged, agreed=e.agreed)
