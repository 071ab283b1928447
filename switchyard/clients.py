"""Command-line clients of the services that other packages' commands build on.

``switchyard models`` is assembled from two places: the training commands live beside the
training code (services/decision/training/models_cli.py) and the rollout commands, gRPC
clients of DecisionService, live here with the package's other clients. The training
commands use these to add the decision service's options to ``models status`` and to hand
``models promote MODEL`` (any model but the file-based engagement one) to the rollout RPCs.
"""

from switchyard._rollouts_cli import (
    add_decision_client_arguments,
    fetch_rollouts,
    render_rollouts,
)
from switchyard._rollouts_cli import run as run_rollouts
from switchyard._tasks_cli import data_console

__all__ = ["add_decision_client_arguments", "data_console", "fetch_rollouts",
           "render_rollouts", "run_rollouts"]
