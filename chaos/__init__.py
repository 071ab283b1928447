"""The reliability suite: a seeded workload under injected faults, then invariants.

``make chaos`` (``python -m chaos``) runs the full version; ``tests/chaos`` runs the short one
in CI. See :mod:`chaos.harness` for what is injected and :mod:`chaos.invariants` for what must
hold afterwards.
"""

import switchyard  # noqa: F401 - first: it turns gRPC's fork handlers off before gRPC loads

from chaos.harness import FULL, QUICK, ChaosConfig, run, steps  # noqa: E402

__all__ = ["FULL", "QUICK", "ChaosConfig", "run", "steps"]
