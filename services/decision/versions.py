"""A model's versions on Triton, each behind its own micro-batcher: the rollout picks which one
decides a task and which one shadows it (services/decision/rollouts.py).

:class:`ModelVersions` stands where a single batcher stood (the router; each scorer): its
``submit`` has the batcher's signature and reads the task being decided from
:data:`DECIDING`, which :meth:`DecisionEngine.assess` sets, so the canary's choice is made per
task without threading the task through every call. Versions are built on first use (a
version directory Triton serves; the client reads its metadata on its first request) and
stopped with the service. A version the rollout names that fails a request is counted as an
error and the task goes to the live version: a canary never costs a task.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from services.decision.batcher import MicroBatcher
from services.decision.rollouts import CANARY, SHADOW, Rollout, RolloutBook
from services.decision.shadow import ShadowRunner
from services.decision.triton import ModelUnavailable, Prediction

__all__ = ["DECIDING", "Deciding", "ModelVersions", "Version"]

log = logging.getLogger(__name__)

I = TypeVar("I")


@dataclass
class Deciding:
    """The task being decided, and which side of a canary each model answered it from."""

    task_id: str
    persist: bool
    testing: bool
    used: list[tuple[Rollout, str]] = field(default_factory=list)


#: Set by the engine for the span of one task's decision.
DECIDING: ContextVar[Deciding | None] = ContextVar("switchyard_deciding", default=None)


@dataclass
class Version(Generic[I]):
    """One version directory: its client (for the version name decisions carry) and batcher."""

    client: Any
    batcher: MicroBatcher[I, Prediction]


class ModelVersions(Generic[I]):
    """``model``'s versions; ``build(version)`` makes a client and batcher for a version
    directory, ``shadow_runner(rollout, built)`` the runner that shadows the live version
    with the candidate's client."""

    def __init__(self, model: str, book: RolloutBook, default_live: str,
                 build: Callable[[str], Awaitable[Version[I]]],
                 shadow_runner: Callable[[Rollout, Version[I]], Awaitable[ShadowRunner]]
                 | None = None) -> None:
        self.model, self.book, self.default_live = model, book, default_live
        self._build, self._shadow_runner = build, shadow_runner
        self._versions: dict[str, Version[I]] = {}
        self._prebuilt: set[str] = set()
        self._shadows: dict[str, ShadowRunner] = {}
        self._building = asyncio.Lock()  # one client and batcher per version, however asked

    def add(self, version: str, built: Version[I]) -> None:
        """A version the service built itself (started and stopped by its owner)."""
        self._versions[version] = built
        self._prebuilt.add(version)

    def add_shadow(self, version: str, runner: ShadowRunner) -> None:
        """The shadow runner of ``version`` the service built and started itself (stopped
        here, with the others)."""
        self._shadows[version] = runner

    async def version(self, version: str) -> Version[I]:
        built = self._versions.get(version)
        if built is None:
            async with self._building:
                built = self._versions.get(version)
                if built is None:
                    built = await self._build(version)
                    await built.batcher.start()
                    self._versions[version] = built
        return built

    def reported(self) -> dict[str, str]:
        """Version directory -> the name decisions carry (the client's, once read)."""
        return {v: getattr(built.client, "version", "") or v
                for v, built in self._versions.items()}

    @property
    def rollout(self) -> Rollout:
        return self.book.get(self.model, self.default_live)

    async def submit(self, item: I, tenant: str = "", priority: int = 2) -> Prediction:
        """The answer of the version the rollout gives this task (see the module)."""
        rollout = self.rollout
        deciding = DECIDING.get()
        live_task = deciding is not None and not deciding.testing
        if live_task and rollout.canary_takes(tenant, deciding.task_id):  # type: ignore[union-attr]
            try:
                answer = await (await self.version(rollout.candidate)).batcher.submit(
                    item, tenant, priority)
                deciding.used.append((rollout, "candidate"))  # type: ignore[union-attr]
                return answer
            except ModelUnavailable as exc:
                log.warning("%s candidate %s failed, the live version decides: %s",
                            self.model, rollout.candidate, exc)
                self.book.count(rollout, "candidate", error=True)
        answer = await (await self.version(rollout.live)).batcher.submit(item, tenant, priority)
        if live_task and rollout.stage == CANARY and rollout.in_scope(tenant):
            deciding.used.append((rollout, "live"))  # type: ignore[union-attr]
        if live_task and rollout.stage == SHADOW and rollout.candidate:
            shadow = await self._shadow(rollout)
            if shadow is not None:
                shadow.observe(deciding.task_id, tenant, item, answer,  # type: ignore[union-attr]
                               deciding.persist)  # type: ignore[union-attr]
        return answer

    async def _shadow(self, rollout: Rollout) -> ShadowRunner | None:
        runner = self._shadows.get(rollout.candidate)
        if runner is None and self._shadow_runner is not None:
            built = await self.version(rollout.candidate)
            async with self._building:
                runner = self._shadows.get(rollout.candidate)
                if runner is None:
                    runner = await self._shadow_runner(rollout, built)
                    await runner.start()
                    self._shadows[rollout.candidate] = runner
        return runner

    async def stop(self) -> None:
        """Stop what was built on first use (prebuilt versions are their owner's)."""
        for version, built in self._versions.items():
            if version not in self._prebuilt:
                await built.batcher.stop()
        for version, runner in self._shadows.items():
            await runner.stop()
