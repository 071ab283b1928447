"""Two Triton pools in the chart: the primary (`triton`) and the spill-over (`tritonSpill`),
and the HPA on Triton's queue time through prometheus-adapter.

The spill-over is off by default; on, it is a CPU Deployment of its own with a Service, PDB and
NetworkPolicy, and the decision service is pointed at it (SWITCHYARD_TRITON_SPILL_URL). The
adapter rule shipped in files/prometheus-adapter-rules.yaml names the metric the HPAs ask for,
and its query is run by promtool on sample series.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from .conftest import CHART, PROD_VALUES, ROOT, Renderer
from .test_chart import (
    SERVICES,
    _egress_ports,
    _ingress_ports,
    by_kind,
    env_of,
    one,
    peer_selects,
    pod_labels,
    pod_spec,
    selects,
)

Manifest = dict[str, Any]
ADAPTER_RULES = CHART / "files" / "prometheus-adapter-rules.yaml"
README = CHART / "README.md"
SPILL = "triton-spill"
SPILL_ON = ("tritonSpill.enabled=true",)


def _component(manifest: Manifest) -> str | None:
    return manifest["metadata"].get("labels", {}).get("app.kubernetes.io/component")


def _decision_env(docs: list[Manifest]) -> dict[str, dict[str, Any]]:
    return env_of(pod_spec(one(docs, "Deployment", "decision"))["containers"][0])


def _to_pool(docs: list[Manifest], component: str, pool: str) -> list[dict[str, Any]]:
    """Egress rules of `component` whose peers select the pods of `pool`."""
    labels = pod_labels(one(docs, "Deployment", pool))
    return [rule for rule in one(docs, "NetworkPolicy", component)["spec"]["egress"]
            if any(peer_selects(peer, labels) for peer in rule.get("to", []))]


# -- the spill-over pool ---------------------------------------------------------------------

def test_default_render_has_no_spill_over(default_manifests: list[Manifest]) -> None:
    assert not [m for m in default_manifests if _component(m) == SPILL]
    for kind in ("Deployment", "StatefulSet", "Job", "CronJob"):
        for workload in by_kind(default_manifests, kind):
            for container in pod_spec(workload)["containers"]:
                assert "SWITCHYARD_TRITON_SPILL_URL" not in env_of(container)
    assert "triton-spill" not in str(one(default_manifests, "NetworkPolicy", "decision"))


def test_spill_over_pool_runs_on_cpu_beside_the_primary(render: Renderer) -> None:
    docs = render(sets=SPILL_ON)
    deployment = one(docs, "Deployment", SPILL)
    service = one(docs, "Service", SPILL)
    assert one(docs, "PodDisruptionBudget", SPILL)
    assert not [h for h in by_kind(docs, "HorizontalPodAutoscaler") if _component(h) == SPILL]
    assert deployment["metadata"]["name"] == service["metadata"]["name"] == \
        "sy-switchyard-triton-spill"
    assert deployment["spec"]["replicas"] == 1
    assert selects({"matchLabels": service["spec"]["selector"]}, pod_labels(deployment))
    assert not selects({"matchLabels": service["spec"]["selector"]},
                       pod_labels(one(docs, "Deployment", "triton")))
    spec = pod_spec(deployment)
    (container,) = spec["containers"]
    primary = pod_spec(one(docs, "Deployment", "triton"))
    # the same Triton and the same models as the primary, on CPU
    assert container["image"] == primary["containers"][0]["image"]
    assert spec["initContainers"][0]["image"] == primary["initContainers"][0]["image"]
    resources = container["resources"]
    assert not [name for part in resources.values() for name in part if "gpu" in name], \
        resources
    assert "nodeSelector" not in spec and "tolerations" not in spec
    assert env_of(spec["initContainers"][0])["INSTANCE_KIND"]["value"] == "KIND_CPU"
    assert "--allow-gpu-metrics=false" in container["args"]
    # CPU capacity surges on a rollout; the GPU primary replaces one pod at a time
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1,
                                                               "maxUnavailable": 0}
    assert one(docs, "Deployment", "triton")["spec"]["strategy"]["rollingUpdate"] == {
        "maxSurge": 0, "maxUnavailable": 1}
    # the primary's probes: ready only with every model loaded and warmed up
    assert container["startupProbe"] == primary["containers"][0]["startupProbe"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    # the decision service (and every Switchyard container) is pointed at its Service
    grpc = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "grpc")
    env = _decision_env(docs)
    assert env["SWITCHYARD_TRITON_SPILL_URL"]["value"] == \
        f"{service['metadata']['name']}:{grpc}"
    assert env["SWITCHYARD_TRITON_URL"]["value"] == \
        f"{one(docs, 'Service', 'triton')['metadata']['name']}:8001"


def test_pool_services_are_headless_so_requests_spread_over_the_pods(render: Renderer) -> None:
    docs = render(sets=SPILL_ON)
    for pool in ("triton", SPILL):  # the name resolves to every ready pod (pools.py spreads)
        service = one(docs, "Service", pool)
        assert (service["spec"]["type"], service["spec"]["clusterIP"]) == ("ClusterIP", "None")
    plain = render(sets=("triton.service.headless=false",))
    assert "clusterIP" not in one(plain, "Service", "triton")["spec"]
    balanced = render(sets=("triton.service.type=LoadBalancer",))  # headless is ClusterIP only
    assert "clusterIP" not in one(balanced, "Service", "triton")["spec"]


def test_spill_over_network_policies(render: Renderer) -> None:
    docs = render(sets=SPILL_ON)
    decision = pod_labels(one(docs, "Deployment", "decision"))
    policy = one(docs, "NetworkPolicy", SPILL)
    assert selects(policy["spec"]["podSelector"], pod_labels(one(docs, "Deployment", SPILL)))
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    ingress = _ingress_ports(policy)
    assert set(ingress) == {"grpc", "http", "metrics"}
    for peers in ingress["grpc"] + ingress["http"]:
        assert peers and all(selects(p["podSelector"], decision) for p in peers)
    (metrics_from,) = ingress["metrics"]
    assert metrics_from and all("monitoring" in str(p) for p in metrics_from)
    assert policy["spec"]["egress"] == [], "Triton calls nothing"
    # decision may reach both pools' gRPC and HTTP ports; no other service reaches either
    for pool in ("triton", SPILL):
        (rule,) = _to_pool(docs, "decision", pool)
        assert {p["port"] for p in rule["ports"]} == {8000, 8001}
        for service in SERVICES:
            if service != "decision":
                assert not _to_pool(docs, service, pool), (service, pool)


def test_spill_over_init_container_turns_gpu_configs_into_cpu(render: Renderer,
                                                             tmp_path: Path) -> None:
    """The pool's own instance kind: a repository written for GPUs becomes KIND_CPU."""
    sh = shutil.which("sh")
    assert sh, "needs /bin/sh"
    init = pod_spec(one(render(sets=SPILL_ON), "Deployment", SPILL))["initContainers"][0]
    source, target = tmp_path / "source", tmp_path / "models"
    shutil.copytree(ROOT / "models" / "repository", source,
                    ignore=shutil.ignore_patterns("__pycache__", "*.npz", "*.onnx"))
    configs = sorted(source.glob("*/config.pbtxt"))
    assert configs
    for config in configs:
        config.write_text(re.sub(r"kind:\s*KIND_[A-Z]+", "kind: KIND_GPU", config.read_text()))
    target.mkdir()
    env = {k: v["value"] for k, v in env_of(init).items()}
    env.update(SOURCE=str(source), TARGET=str(target), PATH="/usr/bin:/bin")
    proc = subprocess.run([sh, "-c", init["args"][0]], env=env, capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 0, proc.stderr
    for config in sorted(target.glob("*/config.pbtxt")):
        text = config.read_text()
        assert "kind: KIND_CPU" in text and "KIND_GPU" not in text, config


def test_external_spill_over(render: Renderer) -> None:
    docs = render(sets=["tritonSpill.externalUrl=cpu-triton.inference.svc:9001"])
    assert not [m for m in docs if _component(m) == SPILL]
    assert _decision_env(docs)["SWITCHYARD_TRITON_SPILL_URL"]["value"] == \
        "cpu-triton.inference.svc:9001"
    assert 9001 in _egress_ports(one(docs, "NetworkPolicy", "decision"))
    for service in ("ingest", "executor", "review"):
        assert 9001 not in _egress_ports(one(docs, "NetworkPolicy", service))


def test_spill_over_beside_an_external_primary(render: Renderer) -> None:
    docs = render(sets=["triton.enabled=false", "triton.externalUrl=gpu-triton.ml.svc:8001",
                        *SPILL_ON])
    assert not [m for m in docs if _component(m) == "triton"]
    assert one(docs, "Deployment", SPILL) and one(docs, "NetworkPolicy", SPILL)
    env = _decision_env(docs)
    assert env["SWITCHYARD_TRITON_URL"]["value"] == "gpu-triton.ml.svc:8001"
    assert env["SWITCHYARD_TRITON_SPILL_URL"]["value"] == "sy-switchyard-triton-spill:8001"


def test_production_runs_the_spill_over_on_cpu_nodes(prod_manifests: list[Manifest]) -> None:
    spec = pod_spec(one(prod_manifests, "Deployment", SPILL))
    assert "nvidia.com/gpu" not in spec["containers"][0]["resources"]["limits"]
    assert not any("gpu" in key for key in spec.get("nodeSelector", {}))
    assert env_of(spec["initContainers"][0])["INSTANCE_KIND"]["value"] == "KIND_CPU"
    assert _decision_env(prod_manifests)["SWITCHYARD_TRITON_SPILL_URL"]["value"] == \
        f"{one(prod_manifests, 'Service', SPILL)['metadata']['name']}:8001"


# -- autoscaling on queue time ---------------------------------------------------------------

def _adapter_rule() -> dict[str, Any]:
    rules = yaml.safe_load(ADAPTER_RULES.read_text())
    assert set(rules) == {"rules"}, "prometheus-adapter's config format: a `rules` list"
    (rule,) = rules["rules"]
    return rule


def _queue_metric(hpa: Manifest) -> dict[str, Any]:
    (metric,) = [m for m in hpa["spec"].get("metrics", []) if m["type"] == "Pods"]
    return metric["pods"]


def test_adapter_rule_exposes_the_metric_the_hpa_asks_for() -> None:
    rule = _adapter_rule()
    assert set(rule) == {"seriesQuery", "resources", "name", "metricsQuery"}
    assert rule["seriesQuery"].startswith("nv_inference_queue_duration_us{")
    assert rule["resources"]["overrides"] == {"namespace": {"resource": "namespace"},
                                              "pod": {"resource": "pod"}}
    query = rule["metricsQuery"]
    assert "<<.LabelMatchers>>" in query and "<<.GroupBy>>" in query
    assert "nv_inference_request_success" in query and "clamp_min(" in query
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    for pool in ("triton", "tritonSpill"):
        queue_time = defaults[pool]["autoscaling"]["queueTime"]
        assert queue_time["metricName"] == rule["name"]["as"], pool
        assert queue_time["enabled"] is False, "needs an adapter: off by default"


def test_queue_time_hpa_on_both_pools(prod_manifests: list[Manifest], render: Renderer) -> None:
    name = _adapter_rule()["name"]["as"]
    production = yaml.safe_load(PROD_VALUES.read_text())
    for component, key in (("triton", "triton"), (SPILL, "tritonSpill")):
        hpa = one(prod_manifests, "HorizontalPodAutoscaler", component)
        assert hpa["spec"]["scaleTargetRef"]["name"] == \
            one(prod_manifests, "Deployment", component)["metadata"]["name"]
        assert "replicas" not in one(prod_manifests, "Deployment", component)["spec"]
        pods = _queue_metric(hpa)
        assert pods["metric"] == {"name": name}
        assert pods["target"] == {
            "type": "AverageValue",
            "averageValue": production[key]["autoscaling"]["queueTime"]["averageValue"]}
        # scale up at once, down slowly
        behavior = hpa["spec"]["behavior"]
        assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 0
        assert behavior["scaleDown"]["stabilizationWindowSeconds"] >= 300
    # over the defaults: the queue-time metric first, then any free-form metrics
    extra = {"type": "Resource", "resource": {"name": "cpu", "target": {
        "type": "Utilization", "averageUtilization": 80}}}
    docs = render(sets=[*SPILL_ON, "tritonSpill.autoscaling.enabled=true",
                        "tritonSpill.autoscaling.queueTime.enabled=true",
                        "tritonSpill.autoscaling.metrics[0].type=Resource",
                        "tritonSpill.autoscaling.metrics[0].resource.name=cpu",
                        "tritonSpill.autoscaling.metrics[0].resource.target.type=Utilization",
                        "tritonSpill.autoscaling.metrics[0].resource.target.averageUtilization"
                        "=80",
                        "triton.autoscaling.enabled=true"])
    spill_metrics = one(docs, "HorizontalPodAutoscaler", SPILL)["spec"]["metrics"]
    assert [m["type"] for m in spill_metrics] == ["Pods", "Resource"]
    assert spill_metrics[0]["pods"]["target"] == {"type": "AverageValue", "averageValue": "50m"}
    assert spill_metrics[1] == extra
    # autoscaling without queueTime: no Pods metric (and no metrics list at all here)
    assert "metrics" not in one(docs, "HorizontalPodAutoscaler", "triton")["spec"]


def test_adapter_query_gives_seconds_per_request(tmp_path: Path) -> None:
    """The metricsQuery as prometheus-adapter fills it in for two pods, run by promtool on
    Triton's counters: a busy pod with two models (weighted by their requests) and an idle
    pod, which reads 0 instead of a division by zero."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: `make setup` installs Debian's prometheus package"
    query = _adapter_rule()["metricsQuery"]
    expr = (query.replace("<<.LabelMatchers>>", 'namespace="switchyard",pod=~"busy|idle"')
            .replace("<<.GroupBy>>", "pod"))
    (tmp_path / "adapter.yaml").write_text(yaml.safe_dump({"groups": [{
        "name": "adapter", "rules": [{"record": "pod:triton_queue_seconds_per_request",
                                      "expr": expr}]}]}))

    def series(metric: str, pod: str, model: str, per_step: int) -> dict[str, str]:
        return {"series": f'{metric}{{namespace="switchyard",pod="{pod}",model="{model}",'
                          f'version="1"}}',
                "values": f"0+{per_step}x40"}

    # every 15 s: the router answers 45 requests (3/s) that waited 40 ms each, OCR 15 (1/s)
    # that waited 200 ms each: (3 * 40 + 1 * 200) / 4 = 80 ms per request
    inputs = [
        series("nv_inference_request_success", "busy", "document_router", 45),
        series("nv_inference_queue_duration_us", "busy", "document_router", 45 * 40_000),
        series("nv_inference_request_success", "busy", "document_ocr", 15),
        series("nv_inference_queue_duration_us", "busy", "document_ocr", 15 * 200_000),
        series("nv_inference_request_success", "idle", "document_router", 0),
        series("nv_inference_queue_duration_us", "idle", "document_router", 0),
    ]
    (tmp_path / "adapter_test.yaml").write_text(yaml.safe_dump({
        "rule_files": ["adapter.yaml"],
        "evaluation_interval": "15s",
        "tests": [{
            "interval": "15s",
            "input_series": inputs,
            "promql_expr_test": [{
                "expr": "pod:triton_queue_seconds_per_request",
                "eval_time": "5m",
                "exp_samples": [{"labels": 'pod:triton_queue_seconds_per_request{pod="busy"}',
                                 "value": 0.08},
                                {"labels": 'pod:triton_queue_seconds_per_request{pod="idle"}',
                                 "value": 0}],
            }],
        }],
    }))
    check = subprocess.run([promtool, "check", "rules", "adapter.yaml"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    unit = subprocess.run([promtool, "test", "rules", "adapter_test.yaml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert unit.returncode == 0, unit.stdout + unit.stderr


# -- the operator's guide says what the chart does -------------------------------------------

def test_readme_names_exported_metrics_and_the_chart_startup_limit(
        default_manifests: list[Manifest]) -> None:
    text = README.read_text()
    section = text[text.index("## Two Triton pools"):]
    exported = set()
    for path in [*ROOT.glob("switchyard/*.py"), *ROOT.glob("services/**/*.py")]:
        exported.update(re.findall(r'"(switchyard_[a-z0-9_]+)"', path.read_text()))
    named = set(re.findall(r"\bswitchyard_[a-z0-9_]+", section))
    assert named and named <= exported, sorted(named - exported)
    probe = pod_spec(one(default_manifests, "Deployment", "triton"))["containers"][0][
        "startupProbe"]
    assert f"{probe['failureThreshold']} × {probe['periodSeconds']} s" in section
    assert _adapter_rule()["name"]["as"] in section
