"""The reliability suite: a seeded workload under injected faults, then invariants.

``make chaos`` (``python -m chaos``) runs the full version; ``tests/chaos`` runs the short one
in CI. See :mod:`chaos.harness` for what is injected and :mod:`chaos.invariants` for what must
hold afterwards.
"""

from chaos.harness import FULL, QUICK, ChaosConfig, run, steps

__all__ = ["FULL", "QUICK", "ChaosConfig", "run", "steps"]
