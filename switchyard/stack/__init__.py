"""The embedded local stack: Kafka (Tansu), PostgreSQL 16 (pgserver) and Triton, as children.

Everything here is for local development and tests; production points the services at
external servers through the same settings. ``switchyard up``/``status``/``down`` and the
pytest fixtures are built on these names; the modules behind them are private.
"""

from switchyard.stack._component import Component
from switchyard.stack._kafka import KafkaBroker
from switchyard.stack._postgres import PostgresServer, read_dsn
from switchyard.stack._process import ManagedProcess
from switchyard.stack._stack import (
    INFRASTRUCTURE,
    ComponentStatus,
    EmbeddedStack,
    ServiceSpec,
    component_log_tail,
    read_state,
    running_components,
    stack_down,
    stack_status,
    with_free_ports,
)
from switchyard.stack._triton import TritonServer, TritonSpillServer
from switchyard.stack._util import (
    StackError,
    free_port,
    grpc_serving,
    port_frees_up,
    port_is_free,
    wait_until,
)

__all__ = [
    "INFRASTRUCTURE",
    "Component",
    "ComponentStatus",
    "EmbeddedStack",
    "KafkaBroker",
    "ManagedProcess",
    "PostgresServer",
    "ServiceSpec",
    "StackError",
    "TritonServer",
    "TritonSpillServer",
    "component_log_tail",
    "free_port",
    "grpc_serving",
    "port_frees_up",
    "port_is_free",
    "read_dsn",
    "read_state",
    "running_components",
    "stack_down",
    "stack_status",
    "wait_until",
    "with_free_ports",
]
