"""Consent for simulated students: who of them a guardian opted in, and for what.

Without class-analytics consent ingest drops a student's signals (it only counts them), so a
simulation that should produce engagement needs consents first. :func:`consent_plan` draws
them (seeded, from the simulation's own students) and :func:`grant_consents` records them
through ingest's ConsentService, as a school's admin would.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

from switchyard._grpc import client_channel
from switchyard._settings import Settings
from switchyard.signals._simulator import SimulationConfig, student_refs
from switchyard.v1 import ConsentPurpose, ConsentServiceStub, SetConsentRequest

#: The group attributes simulated guardians give under fairness-monitoring consent.
GROUPS = ("group-a", "group-b")


@dataclass(frozen=True)
class ConsentGrant:
    """One purpose granted for one student (``group``: fairness monitoring only)."""

    tenant_id: str
    subject_ref: str
    purpose: int
    group: str = ""

    def request(self) -> SetConsentRequest:
        return SetConsentRequest(tenant_id=self.tenant_id, subject_ref=self.subject_ref,
                                 purpose=self.purpose, granted=True,
                                 guardian_ref=f"guardian-of-{self.subject_ref}",
                                 group=self.group)


def consent_plan(config: SimulationConfig, class_analytics: float = 0.9,
                 individual_support: float = 0.6, fairness_monitoring: float = 0.8
                 ) -> list[ConsentGrant]:
    """Seeded consents for the simulation's students: ``class_analytics`` of them opted in
    to class analytics; of those, ``individual_support`` also to individual support and
    ``fairness_monitoring`` to fairness monitoring (with a group from :data:`GROUPS`)."""
    rng = random.Random(f"switchyard-signals-consent:{config.seed}")
    grants: list[ConsentGrant] = []
    for ref in student_refs(config):
        draws = (rng.random(), rng.random(), rng.random(), rng.choice(GROUPS))
        if draws[0] >= class_analytics:
            continue
        grants.append(ConsentGrant(config.tenant_id, ref,
                                   ConsentPurpose.CONSENT_PURPOSE_CLASS_ANALYTICS))
        if draws[1] < individual_support:
            grants.append(ConsentGrant(config.tenant_id, ref,
                                       ConsentPurpose.CONSENT_PURPOSE_INDIVIDUAL_SUPPORT))
        if draws[2] < fairness_monitoring:
            grants.append(ConsentGrant(config.tenant_id, ref,
                                       ConsentPurpose.CONSENT_PURPOSE_FAIRNESS_MONITORING,
                                       draws[3]))
    return grants


async def grant_consents(settings: Settings, grants: list[ConsentGrant],
                         target: str | None = None, concurrency: int = 16) -> int:
    """Record ``grants`` through ConsentService.SetConsent on ingest (the client API key and
    TLS from settings); returns how many were recorded. Idempotent: granting again changes
    nothing but the audit trail."""
    channel = client_channel(settings, target or f"127.0.0.1:{settings.ingest_grpc_port}")
    stub = ConsentServiceStub(channel)
    slots = asyncio.Semaphore(concurrency)

    async def one(grant: ConsentGrant) -> None:
        async with slots:
            await stub.SetConsent(grant.request(), timeout=30)

    try:
        await asyncio.gather(*(one(g) for g in grants))
    finally:
        await channel.close()
    return len(grants)
