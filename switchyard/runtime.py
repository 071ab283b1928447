"""How a Switchyard process lives: the service lifecycle, supervised background loops, and
the launcher that starts the embedded stack and the services.

Re-exported from ``_service`` (:func:`run_service`, :class:`ServiceContext`), ``_supervision``
(:class:`Supervisor`, :func:`periodic` and its :class:`Idle`), ``_launcher`` (:func:`bootstrap`, :func:`service_specs`,
:func:`up`), ``_fairness`` (:class:`FairQueue`, :func:`parse_weights`,
:func:`weighted_share`: serving tenants fairly wherever work queues), ``_brokerwatch`` and
``_progress``.
"""

from __future__ import annotations

from switchyard._service import (
    ServiceContext,
    run_service,
)
from switchyard._supervision import (
    Backoff,
    EXIT_BACKGROUND_FAILED,
    Idle,
    Supervisor,
    periodic,
)
from switchyard._launcher import (
    DOWNSTREAM,
    SERVICE_PORTS,
    bootstrap,
    service_specs,
    up,
)
from switchyard._brokerwatch import (
    broker_generation,
)
from switchyard._fairness import (
    FairQueue,
    parse_weights,
    weighted_share,
)
from switchyard._progress import (
    stderr_progress,
)

__all__ = [
    "Backoff",
    "DOWNSTREAM",
    "EXIT_BACKGROUND_FAILED",
    "FairQueue",
    "Idle",
    "SERVICE_PORTS",
    "ServiceContext",
    "Supervisor",
    "bootstrap",
    "broker_generation",
    "parse_weights",
    "periodic",
    "run_service",
    "service_specs",
    "stderr_progress",
    "up",
    "weighted_share",
]
