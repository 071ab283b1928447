"""The chart and the settings registry: every setting reachable, secrets only by reference,
TLS material mounted, `helm test`, and production values that the real services accept.

Offline like the rest of tests/helm (helm renders locally); the policies of the production
values go through the decision service's own loader, and the `switchyard health` command the
probes and `helm test` run is exercised against a real gRPC server of the product.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from services.decision.packs import PackCatalog
from services.decision.policies import load_policies
from switchyard import Settings
from switchyard._settings import env_var
from switchyard._tools import helmschema
from switchyard.packs import plan_to_proto
from switchyard.rpc import start_server
from switchyard.stack import free_port
from tests.security.certs import make_pki

from .conftest import CHART, PROD_VALUES, ROOT, Renderer, run_helm
from .test_chart import SERVICES, all_containers, by_kind, env_of, helm_error, one, pod_spec

Manifest = dict[str, Any]
SCHEMA = CHART / "values.schema.json"


def _schema() -> dict[str, Any]:
    return json.loads(SCHEMA.read_text())


# -- the schema is generated from the settings registry ---------------------------------------

def test_committed_schema_is_what_the_settings_generate(tmp_path: Path) -> None:
    check = [sys.executable, "-m", "switchyard._tools.helmschema", "--check"]
    proc = subprocess.run(check, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    # a stale copy (a setting dropped from it) is reported, naming the fix
    stale = _schema()
    del stale["properties"]["config"]["properties"]["settings"]["properties"]["batch_max_size"]
    copy = tmp_path / "values.schema.json"
    copy.write_text(json.dumps(stale, indent=2) + "\n")
    proc = subprocess.run([*check, "--schema", str(copy)], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1
    assert "stale" in proc.stderr and "make helm-schema" in proc.stderr
    # and regenerating repairs it
    subprocess.run([sys.executable, "-m", "switchyard._tools.helmschema", "--schema", str(copy)],
                   cwd=ROOT, check=True, capture_output=True, timeout=60)
    assert copy.read_text() == SCHEMA.read_text()


def test_every_setting_has_a_home_in_the_chart() -> None:
    config = _schema()["properties"]["config"]["properties"]
    plain, secret = config["settings"]["properties"], config["secrets"]["properties"]
    for f in dataclasses.fields(Settings):
        if f.metadata["doc"].startswith("Embedded"):
            # the embedded stack's own (PostgreSQL's port): a chart value would do nothing
            assert f.name in helmschema.CHART_MANAGED, f.name
        if f.name in helmschema.CHART_MANAGED:
            assert f.name not in plain and f.name not in secret
        elif f.metadata["secret"]:
            assert f.name in secret and f.name not in plain, f.name
        else:
            assert f.name in plain and f.name not in secret, f.name
    # types and ranges come from the declaration
    assert plain["batch_max_size"]["type"] == "integer"
    assert plain["batch_max_size"]["minimum"] == 1
    assert plain["auto_execute_threshold"] == {**plain["auto_execute_threshold"],
                                               "type": "number", "minimum": 0, "maximum": 1}
    assert plain["triton_timeout_s"]["exclusiveMinimum"] == 0
    assert plain["review_expiry_policy"]["enum"] == ["reassign", "default_action", "fail"]
    assert plain["review_redact_pii"]["type"] == "boolean"
    assert {"executor_endpoints", "encryption_active_key", "tenant_rate_limit"} <= set(plain)
    assert {"encryption_keys", "intake_signing_keys", "webhook_signing_key"} <= set(secret)


def test_any_setting_renders_as_its_env_var(render: Renderer, tmp_path: Path) -> None:
    values = tmp_path / "settings.yaml"
    values.write_text(json.dumps({"config": {"settings": {
        "executor_endpoints": "erp=https://erp.internal/api", "review_tenant_rate": 2.5,
        "review_redact_pii": False}}}))
    docs = render([values])
    for service in SERVICES:
        env = env_of(pod_spec(one(docs, "Deployment", service))["containers"][0])
        assert env["SWITCHYARD_EXECUTOR_ENDPOINTS"]["value"] == "erp=https://erp.internal/api"
        assert env["SWITCHYARD_REVIEW_TENANT_RATE"]["value"] == "2.5"
        assert env["SWITCHYARD_REVIEW_REDACT_PII"]["value"] == "0"
        # what the chart renders is what the process parses
        parsed = Settings.from_env({k: v["value"] for k, v in env.items() if "value" in v})
        assert parsed.review_tenant_rate == 2.5 and parsed.review_redact_pii is False


BAD_SETTINGS = {
    "below its minimum": ("config.settings.batch_max_size=0", "/config/settings/batch_max_size"),
    "not in its choices": ("config.settings.review_expiry_policy=shrug",
                           "/config/settings/review_expiry_policy"),
    "wrong type": ("config.settings.executor_max_attempts=many",
                   "/config/settings/executor_max_attempts"),
    "unknown setting": ("config.settings.no_such_setting=1",
                        "additional properties 'no_such_setting' not allowed"),
    "secret inline": ("config.settings.encryption_keys=k1:AAAA",
                      "additional properties 'encryption_keys' not allowed"),
    "secret without a key": ("config.secrets.encryption_keys.existingSecret=sy",
                             "/config/secrets/encryption_keys"),
}


@pytest.mark.parametrize("case", list(BAD_SETTINGS), ids=list(BAD_SETTINGS))
def test_settings_outside_the_registry_are_refused(helm: Path, case: str) -> None:
    item, message = BAD_SETTINGS[case]
    err = helm_error(helm, "--set", item)
    assert "values don't meet the specifications of the schema" in err, err
    assert message in err, err


def test_secret_settings_come_from_secret_references(render: Renderer,
                                                     render_text: Any) -> None:
    sets = ["config.secrets.encryption_keys.existingSecret=sy-crypto",
            "config.secrets.encryption_keys.key=keys",
            "config.secrets.intake_signing_keys.existingSecret=sy-intake",
            "config.secrets.intake_signing_keys.key=hmac"]
    docs = render(sets=sets)
    workloads = [m for m in docs if m["kind"] in ("Deployment", "Job")
                 and m["metadata"]["labels"]["app.kubernetes.io/component"]
                 not in ("triton", "triton-spill")]
    assert len(workloads) >= len(SERVICES) + 2  # four services, two hook Jobs
    for workload in workloads:
        for _, container in all_containers(workload):
            env = env_of(container)
            assert env["SWITCHYARD_ENCRYPTION_KEYS"] == {
                "name": "SWITCHYARD_ENCRYPTION_KEYS",
                "valueFrom": {"secretKeyRef": {"name": "sy-crypto", "key": "keys"}}}
            assert env["SWITCHYARD_INTAKE_SIGNING_KEYS"]["valueFrom"]["secretKeyRef"] == {
                "name": "sy-intake", "key": "hmac"}
    assert not by_kind(docs, "Secret")


def test_s3_blob_store_settings_secrets_and_egress(render: Renderer) -> None:
    """The production blob store: bucket and endpoint as settings, credentials only from a
    Secret, and egress to the store opened for the services that read or write documents."""
    sets = ["config.settings.blob_store=s3", "config.settings.s3_bucket=docs",
            "config.settings.s3_endpoint_url=https://minio.storage.svc:9000",
            "config.secrets.s3_access_key_id.existingSecret=sy-s3",
            "config.secrets.s3_access_key_id.key=id",
            "config.secrets.s3_secret_access_key.existingSecret=sy-s3",
            "config.secrets.s3_secret_access_key.key=secret",
            "networkPolicy.blobStore.ports={9000}"]
    docs = render(sets=sets)
    for service in SERVICES:
        env = env_of(pod_spec(one(docs, "Deployment", service))["containers"][0])
        assert env["SWITCHYARD_BLOB_STORE"]["value"] == "s3"
        assert env["SWITCHYARD_S3_BUCKET"]["value"] == "docs"
        assert env["SWITCHYARD_S3_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {
            "name": "sy-s3", "key": "secret"}
        egress_ports = {port["port"] for rule in one(docs, "NetworkPolicy", service)["spec"]
                        ["egress"] for port in rule.get("ports", [])}
        assert (9000 in egress_ports) == (service in ("ingest", "decision", "review")), service
    purge = pod_spec(one(docs, "CronJob", "purge"))["containers"][0]
    assert env_of(purge)["SWITCHYARD_S3_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"] == {
        "name": "sy-s3", "key": "id"}
    assert not by_kind(docs, "Secret")
    # without s3, no egress to it
    default = render()
    assert all(9000 not in {port["port"] for rule in m["spec"]["egress"]
                            for port in rule.get("ports", [])}
               for m in by_kind(default, "NetworkPolicy"))


# -- TLS material from a Secret ----------------------------------------------------------------

@pytest.mark.parametrize("mutual", [False, True], ids=["tls", "mutual-tls"])
def test_tls_material_is_mounted_and_the_settings_point_at_it(render: Renderer,
                                                               mutual: bool) -> None:
    docs = render(sets=["tls.existingSecret=sy-grpc-tls", f"tls.mutual={str(mutual).lower()}"])
    for service in SERVICES:
        spec = pod_spec(one(docs, "Deployment", service))
        container = spec["containers"][0]
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["grpc-tls"]["secret"]["secretName"] == "sy-grpc-tls"
        assert {i["key"] for i in volumes["grpc-tls"]["secret"]["items"]} == \
            {"tls.crt", "tls.key", "ca.crt"}
        mount = next(m for m in container["volumeMounts"] if m["name"] == "grpc-tls")
        assert mount == {"name": "grpc-tls", "mountPath": "/etc/switchyard/tls",
                         "readOnly": True}
        env = env_of(container)
        assert env["SWITCHYARD_TLS_CERT_FILE"]["value"] == "/etc/switchyard/tls/tls.crt"
        assert env["SWITCHYARD_TLS_KEY_FILE"]["value"] == "/etc/switchyard/tls/tls.key"
        if mutual:
            assert env["SWITCHYARD_TLS_CLIENT_CA_FILE"]["value"] == "/etc/switchyard/tls/ca.crt"
        else:
            assert "SWITCHYARD_TLS_CLIENT_CA_FILE" not in env
        # the review pod's operator console calls the other services, and ingest's REST
        # gateway its own IngestService, over the same TLS
        if service in ("review", "ingest"):
            assert env["SWITCHYARD_CLIENT_TLS_CA_FILE"]["value"] == "/etc/switchyard/tls/ca.crt"
            assert ("SWITCHYARD_CLIENT_TLS_CERT_FILE" in env) is mutual
        else:
            assert "SWITCHYARD_CLIENT_TLS_CA_FILE" not in env
        # the kubelet's gRPC probe cannot speak TLS: the probes ask `switchyard health`
        command = container["readinessProbe"]["exec"]["command"]
        assert command[:3] == ["switchyard", "health", f"127.0.0.1:{_grpc_port(container)}"]
        assert "--ca" in command and "/etc/switchyard/tls/ca.crt" in command
        assert ("--cert" in command) is mutual
        assert container["startupProbe"]["exec"]["command"] == command
        # liveness asks the `liveness` health service with the same TLS flags
        assert container["livenessProbe"]["exec"]["command"] == [
            *command[:2], "--service", "liveness", *command[2:]]


def _grpc_port(container: dict[str, Any]) -> int:
    return next(p["containerPort"] for p in container["ports"] if p["name"] == "grpc")


def test_mutual_tls_needs_a_secret(helm: Path) -> None:
    err = helm_error(helm, "--set", "tls.mutual=true")
    assert "/tls/existingSecret" in err, err


# -- helm test ---------------------------------------------------------------------------------

def _test_hooks(docs: list[Manifest]) -> list[Manifest]:
    return [m for m in docs
            if m["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"]


@pytest.mark.parametrize("values", [[], [PROD_VALUES]], ids=["default", "production"])
def test_helm_test_checks_the_health_of_every_service(render: Renderer,
                                                      values: list[Path]) -> None:
    docs = render(values)
    hooks = _test_hooks(docs)
    (pod,) = [m for m in hooks if m["kind"] == "Pod"]
    assert pod["spec"]["restartPolicy"] == "Never"
    containers = {c["name"]: c for c in pod["spec"]["containers"]}
    assert set(containers) == set(SERVICES)
    for service, container in containers.items():
        target = one(docs, "Service", service)
        port = next(p["port"] for p in target["spec"]["ports"] if p["name"] == "grpc")
        args = container["args"]
        assert args[:2] == ["health", f"{target['metadata']['name']}:{port}"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        if values:  # production: mutual TLS with the mounted pair
            assert args[args.index("--server-name") + 1] == \
                f"{target['metadata']['name']}.switchyard.svc"
            assert "--cert" in args and "--key" in args
    # the NetworkPolicies let the test Pod (and only it, beyond the usual peers) reach gRPC
    labels = pod["metadata"]["labels"]
    for service in SERVICES:
        policy = one(docs, "NetworkPolicy", service)
        admits = [rule for rule in policy["spec"]["ingress"]
                  for peer in rule.get("from", [])
                  if peer.get("podSelector", {}).get("matchLabels", {}).items()
                  <= labels.items() and "podSelector" in peer
                  and peer["podSelector"]["matchLabels"].get(
                      "app.kubernetes.io/component") == "test"]
        assert admits and admits[0]["ports"] == [{"port": "grpc", "protocol": "TCP"}]
    (test_policy,) = [m for m in hooks if m["kind"] == "NetworkPolicy"]
    assert test_policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()


def test_helm_test_can_be_switched_off(render: Renderer) -> None:
    assert not _test_hooks(render(sets=["tests.enabled=false"]))


async def _health(*args: str) -> subprocess.CompletedProcess[str]:
    """The command in a thread: the server under test answers on this test's event loop."""
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "switchyard", "health", *args],
        capture_output=True, text=True, timeout=60, cwd=ROOT)


async def test_the_health_command_of_probes_and_helm_test(tmp_path: Path) -> None:
    """`switchyard health` against the product's own gRPC server: plaintext, TLS, mutual TLS."""
    pki = make_pki(tmp_path)
    tls = Settings(tls_cert_file=str(pki.server_cert), tls_key_file=str(pki.server_key))
    for settings, client in (
            (Settings(), []),
            (tls, ["--ca", str(pki.ca), "--server-name", "localhost"]),
            (tls.replace(tls_client_ca_file=str(pki.ca)),
             ["--ca", str(pki.ca), "--server-name", "localhost",
              "--cert", str(pki.client_cert), "--key", str(pki.client_key)])):
        port = free_port()
        server = await start_server(settings, "test", port, [], {})
        try:
            ok = await _health(f"127.0.0.1:{port}", *client)
            assert ok.returncode == 0, ok.stderr
            assert ok.stdout.strip() == f"127.0.0.1:{port} SERVING"
            if client:  # without the TLS arguments the server cannot be asked
                refused = await _health(f"127.0.0.1:{port}", "--timeout", "3")
                assert refused.returncode == 1
                assert f"127.0.0.1:{port} UNAVAILABLE" in refused.stderr
            await server.set_serving(False)
            down = await _health(f"127.0.0.1:{port}", *client)
            assert down.returncode == 1
            assert f"127.0.0.1:{port} NOT_SERVING" in down.stderr
        finally:
            await server.stop(0)
    gone = await _health(f"127.0.0.1:{free_port()}", "--timeout", "3")
    assert gone.returncode == 1 and "UNAVAILABLE" in gone.stderr


# -- values-production.yaml works with the real services ---------------------------------------

def test_production_policies_load_through_the_decision_loader(prod_manifests: list[Manifest],
                                                              tmp_path: Path) -> None:
    """The ConfigMap the decision pods mount, written out and read by the real loader."""
    (config_map,) = by_kind(prod_manifests, "ConfigMap")
    for name, text in config_map["data"].items():
        (tmp_path / name).write_text(text)
    policies = load_policies(tmp_path)
    acme = policies.for_tenant("acme-university")
    assert acme.review_queue == "admissions" and acme.auto_execute_threshold == 0.9
    # its packs key is valid for the shipped packs, and turns invoices off for it alone
    catalog = PackCatalog(None, policies)
    assert catalog.check_policy_files() == []
    assert catalog.for_tenant("acme-university").get("invoice") is None
    assert catalog.for_tenant("other").get("invoice") is not None
    assert policies.default.auto_execute_threshold == 0.85


def test_production_settings_parse_and_name_every_plan_alias(
        prod_manifests: list[Manifest], tmp_path: Path) -> None:
    """The executor's env from the production render parses, and its endpoint map covers
    every alias the shipped packs' plans name with the production policies' pack settings
    (else it would refuse or misroute)."""
    from urllib.parse import urlsplit

    from services.executor.endpoints import endpoint_map

    executor = pod_spec(one(prod_manifests, "Deployment", "executor"))["containers"][0]
    env = env_of(executor)
    plain = {k: v["value"] for k, v in env.items() if "value" in v}
    # the keys come from a Secret: a stand-in of the shape the active key id needs
    assert "secretKeyRef" in env["SWITCHYARD_ENCRYPTION_KEYS"]["valueFrom"]
    plain["SWITCHYARD_ENCRYPTION_KEYS"] = \
        f"{plain['SWITCHYARD_ENCRYPTION_ACTIVE_KEY']}:{base64.b64encode(bytes(32)).decode()}"
    settings = Settings.from_env(plain)
    mapping = endpoint_map(settings)
    (config_map,) = by_kind(prod_manifests, "ConfigMap")
    for name, text in config_map["data"].items():
        (tmp_path / name).write_text(text)
    policies = load_policies(tmp_path)
    catalog = PackCatalog(None, policies)
    for tenant in ("any-tenant", *policies.tenants):
        for active in catalog.for_tenant(tenant).packs.values():
            for step in plan_to_proto(active.pack, active.params).steps:
                for target in filter(None, (step.target, step.compensation.target)):
                    parts = urlsplit(target)
                    assert (("http" if parts.scheme.startswith("http") else parts.scheme),
                            parts.netloc) in mapping, target
    for name in ("SWITCHYARD_ENCRYPTION_KEYS", "SWITCHYARD_INTAKE_SIGNING_KEYS",
                 "SWITCHYARD_WEBHOOK_SIGNING_KEY", "SWITCHYARD_MATCHING_KEY"):
        assert "secretKeyRef" in env[name]["valueFrom"]
    assert env_var("encryption_active_key") in plain


def test_install_notes_point_at_helm_test_and_missing_endpoints(helm: Path) -> None:
    def notes(*sets: str) -> str:
        args = ["install", "--dry-run=client", "sy", str(CHART), "--namespace", "switchyard"]
        for item in sets:
            args += ["--set", item]
        return run_helm(helm, *args).stdout.split("NOTES:", 1)[1]

    bare = notes()
    assert "helm test sy -n switchyard" in bare
    assert "config.settings.executor_endpoints is empty" in bare
    assert "executor_endpoints is empty" not in notes(
        "config.settings.executor_endpoints=erp=https://erp.internal/api")
    assert "executor_endpoints is empty" not in notes("services.executor.enabled=false")
    # the REST gateway and inbound webhooks: a port-forward to the ingest Service's `http`
    assert "port-forward svc/sy-switchyard-ingest 8081:http" in bare
    assert "http://127.0.0.1:8081/openapi.json" in bare
    assert "svc/sy-switchyard-ingest" not in notes("services.ingest.enabled=false")
