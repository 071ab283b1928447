"""Where a step goes: its connector, the endpoint its breaker guards, and the concrete address.

Plans name downstream systems by alias (``http://erp/invoices``, ``grpc://erp/pkg.Svc/Method``)
the way a Kubernetes Service name would; ``SWITCHYARD_EXECUTOR_ENDPOINTS`` maps an alias to a
concrete base URL, so the same plan runs against the embedded simulator, a staging ERP or
production. An alias the map lacks is refused (:class:`UnknownAlias`), never used as a host
name. SQL targets (``erp.invoices``) do not go through the map: they are rows in the
``downstream_records`` table of the SQL connector's database (``SWITCHYARD_EXECUTOR_SQL_DSN``,
else Switchyard's own). The endpoint (``scheme://alias``) is also the unit of circuit breaking: one
breaker per downstream system, so one failing system never blocks the others.

A target with a URL scheme names its protocol itself; a scheme that is the name of a custom
connector (entry point group ``switchyard.connectors``) goes to that connector. The ``connector`` field of a step must
agree with it when it says HTTP or gRPC; decision plans that leave it at SQL (the decision
service's default) with a URL target are read as the URL says. A target without a scheme is a
SQL system (``system.table``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit

from switchyard import Settings
from switchyard.v1 import Connector

#: Aliases the embedded stack's demo downstream answers to (see :func:`embedded_endpoints`).
DEMO_SYSTEMS = ("erp", "sis", "helpdesk", "analytics", "ehr", "payer", "beds")
_SQL_TARGET = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)?$")
_GRPC_METHOD = re.compile(r"^/?([A-Za-z_][\w.]*)/([A-Za-z_]\w*)$")
_HTTP_SCHEMES = ("http", "https")


class InvalidTarget(ValueError):
    """A step's target or connector cannot be used; no retry will help."""


class UnknownAlias(InvalidTarget):
    """A plan names an alias ``SWITCHYARD_EXECUTOR_ENDPOINTS`` does not map.

    Never read as a host name: the step would reach whatever DNS (or a typo) resolves the
    alias to, which no operator chose. The plan fails before any effect instead.
    """


class EndpointsNotConfigured(ValueError):
    """``SWITCHYARD_EXECUTOR_ENDPOINTS`` is empty: the executor would not know where to post."""


@dataclass(frozen=True)
class Route:
    connector: int | str    # switchyard.v1.Connector value, or a custom connector's name
    endpoint: str           # breaker name: http://erp, grpc://erp, sql://erp
    address: str            # concrete: full URL (HTTP), host:port (gRPC), table (SQL)
    method: str = ""        # gRPC: /pkg.Service/Method


def parse_endpoint_map(spec: str) -> dict[tuple[str, str], str]:
    """``'erp=http://10.0.0.5:8080/erp,erp=grpc://10.0.0.5:9090'`` -> {(family, alias): url}."""
    mapping: dict[tuple[str, str], str] = {}
    for index, entry in enumerate(filter(None, (e.strip() for e in spec.split(",")))):
        alias, sep, url = entry.partition("=")
        parts = urlsplit(url.strip())
        if not sep or not alias.strip() or parts.scheme not in (*_HTTP_SCHEMES, "grpc") \
                or not parts.netloc:
            raise ValueError(f"SWITCHYARD_EXECUTOR_ENDPOINTS entry {index} must be "
                             f"'alias=http(s)://host:port/base' or 'alias=grpc://host:port'")
        mapping[(_family(parts.scheme), alias.strip())] = url.strip().rstrip("/")
    return mapping


def default_endpoint_map(settings: Settings) -> dict[tuple[str, str], str]:
    """The demo aliases pointing at the embedded downstream of this stack."""
    host = "127.0.0.1" if settings.bind_host in ("0.0.0.0", "::") else settings.bind_host
    mapping = {}
    for system in DEMO_SYSTEMS:
        mapping[("http", system)] = f"http://{host}:{settings.downstream_http_port}/{system}"
        mapping[("grpc", system)] = f"grpc://{host}:{settings.downstream_grpc_port}"
    return mapping


def embedded_endpoints(settings: Settings) -> str:
    """``SWITCHYARD_EXECUTOR_ENDPOINTS`` for the embedded stack: the demo aliases -> its
    downstream. The stack launcher passes it to the executors it starts; nothing else does."""
    return ",".join(f"{alias}={url}" for (_, alias), url in default_endpoint_map(settings).items())


def endpoint_map(settings: Settings) -> dict[tuple[str, str], str]:
    """The configured alias map; an empty setting is refused, never read as loopback.

    Without a map an alias such as ``http://erp/...`` would resolve to nothing the operator
    chose (formerly the embedded demo downstream on 127.0.0.1), so every step would fail or,
    worse, reach whatever listens there. The embedded stack sets the map explicitly.
    """
    if not settings.executor_endpoints.strip():
        raise EndpointsNotConfigured(
            "SWITCHYARD_EXECUTOR_ENDPOINTS is empty: set 'alias=url' entries for the "
            "downstream systems the plans name (e.g. erp=https://erp.internal/api,"
            "erp=grpc://erp.internal:9090); only the embedded stack (`switchyard up`) "
            "fills it in, with its demo downstream"
        )
    return parse_endpoint_map(settings.executor_endpoints)


def _family(scheme: str) -> str:
    return "http" if scheme in _HTTP_SCHEMES else scheme


class Router:
    """Resolves step targets against the endpoint map; a target whose scheme names a custom
    connector (``custom``) goes to that connector as written."""

    def __init__(self, endpoints: dict[tuple[str, str], str],
                 custom: frozenset[str] = frozenset()) -> None:
        self._endpoints = endpoints
        self._custom = custom

    def route(self, connector: int, target: str) -> Route:
        parts = urlsplit(target)
        if parts.scheme:
            return self._url_route(connector, target, parts)
        if connector in (Connector.CONNECTOR_HTTP, Connector.CONNECTOR_GRPC):
            raise InvalidTarget(f"{Connector.Name(connector)} step needs a URL target, "
                                f"got {target!r}")
        if not _SQL_TARGET.match(target):
            raise InvalidTarget(f"SQL target must be 'system' or 'system.table', got {target!r}")
        return Route(Connector.CONNECTOR_SQL, f"sql://{target.split('.')[0]}", target)

    def _url_route(self, connector: int, target: str, parts: SplitResult) -> Route:
        scheme, alias = parts.scheme.lower(), parts.netloc
        if not alias:
            raise InvalidTarget(f"target {target!r} has no host")
        if scheme in _HTTP_SCHEMES:
            if connector == Connector.CONNECTOR_GRPC:
                raise InvalidTarget(f"gRPC step with an {scheme} target {target!r}")
            base = self._base("http", alias, target)
            query = f"?{parts.query}" if parts.query else ""
            return Route(Connector.CONNECTOR_HTTP, f"{scheme}://{alias}",
                         f"{base}{parts.path}{query}")
        if scheme == "grpc":
            if connector == Connector.CONNECTOR_HTTP:
                raise InvalidTarget(f"HTTP step with a grpc target {target!r}")
            match = _GRPC_METHOD.match(parts.path)
            if match is None:
                raise InvalidTarget(f"gRPC target must be grpc://host/package.Service/Method, "
                                    f"got {target!r}")
            base = self._base("grpc", alias, target)
            return Route(Connector.CONNECTOR_GRPC, f"grpc://{alias}", urlsplit(base).netloc,
                         f"/{match.group(1)}/{match.group(2)}")
        if scheme in self._custom:
            return Route(scheme, f"{scheme}://{alias}", target)
        raise InvalidTarget(f"unsupported scheme {scheme!r} in target {target!r}")

    def _base(self, family: str, alias: str, target: str) -> str:
        """The configured address of ``alias``; an unmapped alias is refused, not guessed."""
        base = self._endpoints.get((family, alias))
        if base is None:
            raise UnknownAlias(
                f"alias {alias!r} of target {target!r} has no {family} entry in "
                f"SWITCHYARD_EXECUTOR_ENDPOINTS (add '{alias}="
                f"{'grpc://host:port' if family == 'grpc' else 'https://host/base'}')")
        return base


def substitute(template: str, values: dict[str, str]) -> str:
    """Fill ``{task_id}``, ``{step_id}``, ``{idempotency_key}`` in a compensation target.

    A compensation is written before the step runs, so it can only point at what the step
    will create through values the executor knows: the step's idempotency key above all.
    """
    out = template
    for key, value in values.items():
        out = out.replace("{" + key + "}", value)
    return out


def substitute_all(value: Any, values: dict[str, str]) -> Any:
    """:func:`substitute` applied to every string inside a JSON-like payload."""
    if isinstance(value, str):
        return substitute(value, values)
    if isinstance(value, list):
        return [substitute_all(item, values) for item in value]
    if isinstance(value, dict):
        return {key: substitute_all(item, values) for key, item in value.items()}
    return value
