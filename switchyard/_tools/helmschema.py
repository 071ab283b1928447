"""Generate the Helm chart's ``config.settings`` / ``config.secrets`` schema from the settings.

``deploy/helm/values.schema.json`` describes every value of the chart. Its ``config.settings``
part (plain settings by field name, set as ``SWITCHYARD_*`` env values) and ``config.secrets``
part (secret settings, each a reference to a key of an existing Secret) are not written by
hand: they come from ``switchyard/_settings.py``, so every setting an operator may need
(executor endpoints, encryption, signing and API keys, rate limits ...) can be set through
the chart, with the type and range the process itself enforces, and a secret can never be
put in values as plain text.

Settings the chart sets from its own keys (connections, ports, TLS files, the policy mount)
or that only mean something in the embedded stack or in tests are left out; the reasons are
in :data:`CHART_MANAGED`.

``python -m switchyard._tools.helmschema`` rewrites the schema file; ``--check`` exits 1 when
the committed file differs from what the settings give (a test runs it).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, get_type_hints

from switchyard._settings import Settings, env_var, range_text

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = ROOT / "deploy" / "helm" / "values.schema.json"

#: Settings without a ``config.settings``/``config.secrets`` key, and why.
CHART_MANAGED: dict[str, str] = {
    "environment": "config.environment",
    "log_level": "config.logLevel",
    "log_format": "config.logFormat",
    "bind_host": "fixed by the chart (0.0.0.0 in a pod)",
    "state_dir": "fixed by the chart (/tmp/switchyard)",
    "stack_components": "embedded stack only",
    "kafka_bootstrap_servers": "kafka.bootstrapServers",
    "kafka_topic_prefix": "kafka.topicPrefix",
    "kafka_partitions": "kafka.partitions",
    "kafka_replication_factor": "kafka.replicationFactor",
    "kafka_session_timeout_ms": "kafka.sessionTimeoutMs",
    "kafka_security_protocol": "kafka.securityProtocol",
    "kafka_sasl_mechanism": "kafka.saslMechanism",
    "kafka_sasl_username": "kafka.sasl (a Secret)",
    "kafka_sasl_password": "kafka.sasl (a Secret)",
    "kafka_ssl_cafile": "kafka.tls (a mounted Secret)",
    "postgres_dsn": "postgres.dsnSecret",
    "postgres_port": "embedded stack only (the chart reaches PostgreSQL by postgres.dsnSecret)",
    "postgres_schema": "postgres.schema",
    "postgres_pool_min": "postgres.poolMin",
    "postgres_pool_max": "postgres.poolMax",
    "triton_url": "triton.enabled / triton.externalUrl",
    "triton_http_port": "embedded stack only",
    "triton_grpc_port": "embedded stack only",
    "triton_metrics_port": "embedded stack only",
    "triton_spill_url": "tritonSpill.enabled / tritonSpill.externalUrl",
    "triton_spill_http_port": "embedded stack only",
    "triton_spill_grpc_port": "embedded stack only",
    "triton_spill_metrics_port": "embedded stack only",
    "model_repository": "embedded stack only (Triton runs in its own pods)",
    "ingest_grpc_port": "fixed by the chart (probes and Services use it)",
    "decision_grpc_port": "fixed by the chart (probes and Services use it)",
    "executor_grpc_port": "fixed by the chart (probes and Services use it)",
    "review_grpc_port": "fixed by the chart (probes and Services use it)",
    "review_web_port": "fixed by the chart (the console Service uses it)",
    "ingest_rest_port": "fixed by the chart (the ingest Service's `http` port uses it)",
    "ingest_address": "set by the chart (the review pod reaches ingest's Service)",
    "decision_address": "set by the chart (the review pod reaches decision's Service)",
    "executor_address": "set by the chart (the review pod reaches executor's Service)",
    "ingest_metrics_port": "fixed by the chart (scraping uses it)",
    "decision_metrics_port": "fixed by the chart (scraping uses it)",
    "executor_metrics_port": "fixed by the chart (scraping uses it)",
    "review_metrics_port": "fixed by the chart (scraping uses it)",
    "downstream_http_port": "embedded stack only (the demo downstream)",
    "downstream_grpc_port": "embedded stack only (the demo downstream)",
    "downstream_schema": "embedded stack only (the demo downstream)",
    "fault_inject": "tests only",
    "policy_dir": "policies (a mounted ConfigMap)",
    "otel_exporter": "telemetry.otelExporter",
    "otel_endpoint": "telemetry.otelEndpoint",
    "tls_cert_file": "tls (a mounted Secret)",
    "tls_key_file": "tls (a mounted Secret)",
    "tls_client_ca_file": "tls.mutual (a mounted Secret)",
    "api_keys": "auth.apiKeysSecret",
}

_JSON_TYPES = {int: "integer", float: "number", bool: "boolean", str: "string", Path: "string"}


def _fields() -> list[dataclasses.Field[Any]]:
    unknown = set(CHART_MANAGED) - {f.name for f in dataclasses.fields(Settings)}
    if unknown:  # a renamed setting must not silently lose its chart key
        raise ValueError(f"CHART_MANAGED names settings that do not exist: {sorted(unknown)}")
    return [f for f in dataclasses.fields(Settings) if f.name not in CHART_MANAGED]


def _setting_schema(f: dataclasses.Field[Any], kind: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": _JSON_TYPES[kind]}
    meta = f.metadata
    if meta["choices"] is not None:
        schema["enum"] = list(meta["choices"])
    if meta["minimum"] is not None:
        schema["minimum"] = meta["minimum"]
    if meta["exclusive_minimum"] is not None:
        schema["exclusiveMinimum"] = meta["exclusive_minimum"]
    if meta["maximum"] is not None:
        schema["maximum"] = meta["maximum"]
    where = f" Range: {range_text(f)}." if range_text(f) else ""
    schema["description"] = f"{env_var(f.name)}: {meta['doc']}{where}"
    return schema


def settings_schema() -> dict[str, Any]:
    """``config.settings``: every plain setting the chart does not manage, by field name."""
    hints = get_type_hints(Settings)
    properties = {f.name: _setting_schema(f, hints[f.name])
                  for f in _fields() if not f.metadata["secret"]}
    return {
        "type": "object",
        "description": "SWITCHYARD_* settings by field name (generated from "
                       "switchyard/_settings.py; docs/settings.md). Secret settings go in "
                       "config.secrets; connections, ports and TLS have their own keys.",
        "properties": properties,
        "additionalProperties": False,
    }


def secrets_schema() -> dict[str, Any]:
    """``config.secrets``: every secret setting the chart does not manage, as a Secret key."""
    properties = {
        f.name: {"$ref": "#/definitions/settingSecretRef",
                 "description": f"{env_var(f.name)}: {f.metadata['doc']}"}
        for f in _fields() if f.metadata["secret"]
    }
    return {
        "type": "object",
        "description": "Secret settings by field name, each read from a key of an existing "
                       "Secret (secretKeyRef), by every workload or only those named in "
                       "`workloads`; never inline (generated from switchyard/_settings.py).",
        "properties": properties,
        "additionalProperties": False,
    }


SECRET_KEY_REF = {
    "type": "object",
    "description": "A key of an existing Secret in the release namespace.",
    "properties": {
        "existingSecret": {"type": "string", "minLength": 1,
                           "description": "Name of the Secret."},
        "key": {"type": "string", "minLength": 1, "description": "Key inside the Secret."},
    },
    "required": ["existingSecret", "key"],
    "additionalProperties": False,
}


#: The chart's workloads, as ``config.secrets.*.workloads`` names them: the services and the
#: Jobs (the topic and migration hooks, the retention purge, the retraining).
WORKLOADS = ("ingest", "decision", "executor", "review", "hooks", "purge", "retrain")

SETTING_SECRET_REF = {
    "type": "object",
    "description": "A key of an existing Secret in the release namespace, for a setting.",
    "properties": {
        **SECRET_KEY_REF["properties"],
        "workloads": {
            "type": "array", "minItems": 1, "uniqueItems": True,
            "items": {"enum": list(WORKLOADS)},
            "description": "Only these workloads get it (least privilege: an intake signing "
                           "key only to ingest); omitted: every one.",
        },
    },
    "required": ["existingSecret", "key"],
    "additionalProperties": False,
}


def env_list_schema() -> dict[str, Any]:
    """``extraEnv``: container env entries other than Switchyard's settings, which have
    their own places (``config.settings``; a secret one only by ``config.secrets``, from a
    Secret): an entry naming one would silently override what the chart set, or put a
    password into the values."""
    return {
        "type": "array",
        "description": "Extra container env entries (EnvVar objects), not Switchyard "
                       "settings: those go in config.settings, secret ones in "
                       "config.secrets (generated from switchyard/_settings.py).",
        "items": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {
                    "type": "string",
                    "pattern": "^[A-Za-z_][A-Za-z0-9_.-]*$",
                    "not": {"enum": sorted(env_var(f.name)
                                           for f in dataclasses.fields(Settings))},
                },
            },
        },
    }


def render(current: dict[str, Any]) -> str:
    """``current`` (the whole values schema) with its generated parts replaced, as text."""
    schema = json.loads(json.dumps(current))
    config = schema["properties"]["config"]["properties"]
    config["settings"] = settings_schema()
    config["secrets"] = secrets_schema()
    schema["definitions"]["secretKeyRef"] = SECRET_KEY_REF
    schema["definitions"]["settingSecretRef"] = SETTING_SECRET_REF
    schema["definitions"]["envList"] = env_list_schema()
    return json.dumps(schema, indent=2) + "\n"


def is_stale(path: Path = SCHEMA_PATH) -> bool:
    text = path.read_text()
    return render(json.loads(text)) != text


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m switchyard._tools.helmschema",
                                     description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if the committed schema differs from the settings")
    parser.add_argument("--schema", type=Path, default=SCHEMA_PATH, metavar="FILE",
                        help="values.schema.json to check or rewrite (default: the chart's)")
    args = parser.parse_args(argv)
    if args.check:
        if is_stale(args.schema):
            print(f"{args.schema}: config.settings/config.secrets are stale (run `make "
                  "helm-schema`)", file=sys.stderr)
            return 1
        print(f"{args.schema} is up to date")
        return 0
    args.schema.write_text(render(json.loads(args.schema.read_text())))
    print(f"generated config.settings and config.secrets in {args.schema}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
