"""Fault injection for the demo downstream: per-system profiles set through its own API.

A profile describes how a system misbehaves (``PUT /_/faults/{system}``; ``*`` applies to
systems without their own; ``PUT /_/faults/{system}/{collection}`` to one collection only,
e.g. the ERP's payments but not its invoices). Every call draws its fate from the most
specific profile that applies (collection, then system, then ``*``):

* ``outage``: every call fails (HTTP 503, gRPC UNAVAILABLE), nothing is stored.
* ``error_rate``: that fraction fails with ``error_status`` before anything is stored.
* ``lost_response_rate``: that fraction is stored, then answered with ``error_status``: the
  caller cannot tell it worked, retries, and must be deduplicated by its idempotency key.
* ``throttle_rate``: that fraction gets 429 with ``Retry-After: retry_after_s``.
* ``latency_ms`` is added to every call; ``slow_rate`` of them take ``slow_ms`` more (timeouts).
* ``repeat_status``: a key already stored is answered with this status (e.g. 409, as APIs
  that refuse a duplicate do) instead of a replay (0, the default: 200 with
  ``Idempotent-Replayed``).
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, fields
from typing import Any

ALL = "*"


class FaultError(ValueError):
    """A fault profile in a request is invalid; the message names the field."""


@dataclass(frozen=True)
class FaultProfile:
    outage: bool = False
    error_rate: float = 0.0
    error_status: int = 503
    lost_response_rate: float = 0.0
    throttle_rate: float = 0.0
    retry_after_s: float = 1.0
    latency_ms: float = 0.0
    slow_rate: float = 0.0
    slow_ms: float = 0.0
    repeat_status: int = 0

    @classmethod
    def from_json(cls, data: Any) -> FaultProfile:
        if not isinstance(data, dict):
            raise FaultError("a fault profile is a JSON object")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise FaultError(f"unknown fields {unknown}; known: {sorted(known)}")
        values: dict[str, Any] = {}
        for name, value in data.items():
            kind = known[name].type
            if kind == "bool":
                if not isinstance(value, bool):
                    raise FaultError(f"{name}: expected true/false")
            elif isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise FaultError(f"{name}: expected a number >= 0")
            values[name] = int(value) if kind == "int" else value
        profile = cls(**values)
        rates = profile.error_rate + profile.lost_response_rate + profile.throttle_rate
        if profile.slow_rate > 1 or rates > 1:
            raise FaultError("rates are fractions: error_rate + lost_response_rate + "
                             "throttle_rate and slow_rate must each be <= 1")
        if not 400 <= profile.error_status <= 599:
            raise FaultError("error_status: expected an HTTP error status (400-599)")
        if profile.repeat_status and not 400 <= profile.repeat_status <= 599:
            raise FaultError("repeat_status: expected 0 (replay) or an HTTP error status "
                             "(400-599)")
        return profile

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Fate:
    """What happens to one call."""

    delay_s: float = 0.0
    fail_before: int = 0       # status to answer without storing (0: none)
    fail_after: int = 0        # status to answer after storing (0: none)
    retry_after_s: float = 0.0


class FaultBoard:
    def __init__(self, rng: random.Random | None = None) -> None:
        self.profiles: dict[str, FaultProfile] = {}
        self.rng = rng or random.Random()

    def profile(self, system: str, collection: str = "") -> FaultProfile:
        return (collection and self.profiles.get(f"{system}/{collection}")) \
            or self.profiles.get(system) or self.profiles.get(ALL) or FaultProfile()

    def fate(self, system: str, collection: str = "") -> Fate:
        p = self.profile(system, collection)
        delay = p.latency_ms / 1000
        if p.slow_rate and self.rng.random() < p.slow_rate:
            delay += p.slow_ms / 1000
        if p.outage:
            return Fate(delay, fail_before=503)
        draw = self.rng.random()
        if draw < p.error_rate:
            return Fate(delay, fail_before=p.error_status)
        draw -= p.error_rate
        if draw < p.lost_response_rate:
            return Fate(delay, fail_after=p.error_status)
        draw -= p.lost_response_rate
        if draw < p.throttle_rate:
            return Fate(delay, fail_before=429, retry_after_s=p.retry_after_s)
        return Fate(delay)
