"""Retraining the document router from reviewers' labels (``retrain`` in the chart's values).

Off by default: no CronJob, and Triton serves what its init container copied
(``--model-control-mode=none``). On, which needs the PVC model repository: a CronJob runs
``switchyard models retrain`` against the claim mounted read-write, and every Triton pool that
copies from a PVC polls its repository while a ``model-sync`` sidecar copies the new router
versions in. The sidecar's shell script is run here for real against temporary directories.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from . import test_chart as chart
from .conftest import CHART, KUBE_VERSIONS, PROD_VALUES, ROOT, Renderer, run_helm
from .test_chart import _egress_ports, by_kind, env_of, helm_error, one, pod_labels, pod_spec, \
    selects

Manifest = dict[str, Any]
PVC = ("triton.modelRepository.source=pvc", "triton.modelRepository.pvc.claimName=models",
       "triton.modelRepository.pvc.subPath=repository")
ON = ("retrain.enabled=true", *PVC)
SPILL_PVC = ("tritonSpill.enabled=true", "tritonSpill.modelRepository.source=pvc",
             "tritonSpill.modelRepository.pvc.claimName=models")
MESSAGE = "retrain.enabled needs triton.modelRepository.source pvc"


def _component(manifest: Manifest) -> str | None:
    return manifest["metadata"].get("labels", {}).get("app.kubernetes.io/component")


def _containers(docs: list[Manifest], pool: str) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in pod_spec(one(docs, "Deployment", pool))["containers"]}


def _mounts(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["mountPath"]: m for m in container["volumeMounts"]}


def _sync_script(docs: list[Manifest], pool: str = "triton") -> tuple[str, dict[str, str]]:
    sidecar = _containers(docs, pool)["model-sync"]
    assert sidecar["command"] == ["/bin/sh", "-c"]
    return sidecar["args"][0], {k: v["value"] for k, v in env_of(sidecar).items()}


# -- off -------------------------------------------------------------------------------------

@pytest.mark.parametrize("sets", [(), PVC], ids=["image", "pvc"])
def test_off_by_default_triton_serves_what_was_copied(render: Renderer,
                                                      sets: tuple[str, ...]) -> None:
    docs = render(sets=sets)
    assert not [m for m in docs if _component(m) == "retrain"]
    containers = _containers(docs, "triton")
    assert list(containers) == ["triton"], "no sidecar"
    args = containers["triton"]["args"]
    assert "--model-control-mode=none" in args
    assert not [a for a in args if a.startswith("--repository-poll-secs")]


# -- on --------------------------------------------------------------------------------------

def test_cronjob_runs_retrain_against_the_pvc(render: Renderer) -> None:
    docs = render(sets=ON)
    cron = one(docs, "CronJob", "retrain")
    assert cron["spec"]["schedule"] == "30 3 * * 0"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert cron["spec"]["startingDeadlineSeconds"] == 3600
    assert (cron["spec"]["successfulJobsHistoryLimit"],
            cron["spec"]["failedJobsHistoryLimit"]) == (1, 3)
    job = cron["spec"]["jobTemplate"]["spec"]
    assert (job["backoffLimit"], job["activeDeadlineSeconds"]) == (1, 3600)
    spec = pod_spec(cron)
    assert spec["restartPolicy"] == "Never"
    assert spec["automountServiceAccountToken"] is False
    (container,) = spec["containers"]
    assert container["args"] == ["models", "retrain", "--repository", "/models-source",
                                 "--since-days", "90", "--min-labels", "20",
                                 "--label-weight", "5"]
    assert container["resources"] == {"requests": {"cpu": "500m", "memory": "1Gi"},
                                      "limits": {"cpu": "2", "memory": "2Gi"}}
    # the claim, read-write, with its subPath
    volumes = {v["name"]: v for v in spec["volumes"]}
    mount = _mounts(container)["/models-source"]
    assert not mount.get("readOnly")
    assert mount["subPath"] == "repository"
    assert volumes[mount["name"]]["persistentVolumeClaim"] == {"claimName": "models"}
    assert "/tmp" in _mounts(container)
    # the services' database settings and secrets
    env = env_of(container)
    ingest_env = env_of(pod_spec(one(docs, "Deployment", "ingest"))["containers"][0])
    for name in ingest_env:
        if name.startswith("SWITCHYARD_POSTGRES"):
            assert env.get(name) == ingest_env[name], name
    # own ServiceAccount without a token; NetworkPolicy: DNS and PostgreSQL out, nothing in
    sa = one(docs, "ServiceAccount", "retrain")
    assert spec["serviceAccountName"] == sa["metadata"]["name"]
    assert sa["automountServiceAccountToken"] is False
    policy = one(docs, "NetworkPolicy", "retrain")
    assert selects(policy["spec"]["podSelector"], pod_labels(cron))
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert policy["spec"]["ingress"] == []
    assert _egress_ports(policy) == {53, 5432}
    assert "helm.sh/hook" not in (cron["metadata"].get("annotations") or {})


def test_cronjob_settings_from_values(render: Renderer, tmp_path: Path) -> None:
    values = tmp_path / "retrain.yaml"   # a file: values keep their types
    values.write_text(yaml.safe_dump({"retrain": {
        "schedule": "0 2 * * 1", "timeZone": "Europe/Paris", "sinceDays": 30, "minLabels": 50,
        "labelWeight": 3, "backoffLimit": 0}}))
    docs = render([values], sets=[*ON, "triton.modelRepository.pvc.subPath="])
    cron = one(docs, "CronJob", "retrain")
    assert (cron["spec"]["schedule"], cron["spec"]["timeZone"]) == ("0 2 * * 1", "Europe/Paris")
    assert cron["spec"]["jobTemplate"]["spec"]["backoffLimit"] == 0
    (container,) = pod_spec(cron)["containers"]
    assert container["args"][4:] == ["--since-days", "30", "--min-labels", "50",
                                      "--label-weight", "3"]
    assert "subPath" not in _mounts(container)["/models-source"]


def test_triton_polls_and_the_sidecar_copies_from_the_pvc(render: Renderer) -> None:
    docs = render(sets=[*ON, "retrain.syncSeconds=30"])
    containers = _containers(docs, "triton")
    assert list(containers) == ["triton", "model-sync"]
    args = containers["triton"]["args"]
    assert "--model-control-mode=poll" in args and "--repository-poll-secs=30" in args
    assert "--model-control-mode=none" not in args
    assert _mounts(containers["triton"])["/models"]["readOnly"] is True
    sidecar = containers["model-sync"]
    mounts = _mounts(sidecar)
    assert mounts["/source"]["readOnly"] is True
    assert mounts["/source"]["subPath"] == "repository"
    assert not mounts["/models"].get("readOnly")
    assert "/tmp" in mounts
    env = {k: v["value"] for k, v in env_of(sidecar).items()}
    assert env["SYNC_SECONDS"] == "30" and env["SYNC_MODELS"] == "document_router invoice_risk"
    assert sidecar["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"cpu", "memory"} <= set(sidecar["resources"]["limits"])
    spec = pod_spec(one(docs, "Deployment", "triton"))
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes[mounts["/source"]["name"]]["persistentVolumeClaim"]["claimName"] == "models"
    # the init container still copies and rewrites at start
    assert spec["initContainers"][0]["name"] == "model-repository"


def test_only_pools_reading_a_pvc_sync(render: Renderer) -> None:
    image_spill = render(sets=[*ON, "tritonSpill.enabled=true"])
    assert list(_containers(image_spill, "triton-spill")) == ["triton"]
    assert "--model-control-mode=none" in _containers(image_spill, "triton-spill")["triton"][
        "args"]
    pvc_spill = render(sets=[*ON, *SPILL_PVC])
    containers = _containers(pvc_spill, "triton-spill")
    assert list(containers) == ["triton", "model-sync"]
    assert "--model-control-mode=poll" in containers["triton"]["args"]


def test_retrain_needs_the_pvc_repository(helm: Path) -> None:
    err = helm_error(helm, "--set", "retrain.enabled=true")
    assert MESSAGE in err, err
    err = helm_error(helm, "-f", str(PROD_VALUES), "--set", "retrain.enabled=true")
    assert MESSAGE in err, err


@pytest.mark.parametrize(("sets", "message"), [
    (["retrain.syncSeconds=0"], "/retrain/syncSeconds"),
    (["retrain.minLabels=0"], "/retrain/minLabels"),
    (["retrain.labelWeight=0"], "/retrain/labelWeight"),
    (["retrain.sinceDays=ninety"], "/retrain/sinceDays"),
    (["retrain.model=router"], "additional properties 'model' not allowed"),
], ids=["sync 0", "min labels 0", "weight 0", "days not a number", "unknown key"])
def test_schema_rejects_bad_retrain_values(helm: Path, sets: list[str], message: str) -> None:
    err = helm_error(helm, *[a for s in [*ON, *sets] for a in ("--set", s)])
    assert "values don't meet the specifications of the schema" in err, err
    assert message in err, err


# -- production values with retraining on: still valid Kubernetes, still locked down ---------

PROD_ON = (*ON, *SPILL_PVC[1:])


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_production_with_retrain_validates_strictly(render: Renderer, kube_version: str) -> None:
    docs = render([PROD_VALUES], PROD_ON, kube_version=kube_version)
    failures = []
    for doc in docs:
        if doc["apiVersion"].startswith(chart.CRD_GROUPS):
            continue
        try:
            kubernetes_validate.validate(doc, kube_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            failures.append(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message} "
                            f"at {'/'.join(map(str, exc.path))}")
    assert not failures, "\n".join(failures)
    assert one(docs, "CronJob", "retrain")
    for pool in ("triton", "triton-spill"):
        assert "model-sync" in _containers(docs, pool)


def test_production_with_retrain_keeps_the_chart_rules(render: Renderer, helm: Path) -> None:
    docs = render([PROD_VALUES], PROD_ON)
    chart.test_every_container_has_limits_and_a_restrictive_security_context(docs)
    chart.test_every_pod_is_covered_by_a_network_policy(docs)
    chart.test_retention_purge_runs_on_a_schedule(docs)
    args = ["lint", "--strict", str(CHART), "-f", str(PROD_VALUES)]
    for item in PROD_ON:
        args += ["--set", item]
    proc = run_helm(helm, *args, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout, proc.stdout


def test_values_document_retrain() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())["retrain"]
    assert values["enabled"] is False
    assert (values["schedule"], values["sinceDays"], values["minLabels"], values["labelWeight"],
            values["syncSeconds"]) == ("30 3 * * 0", 90, 20, 5, 60)
    readme = (CHART / "README.md").read_text()
    section = readme[readme.index("## Retraining from reviewers' labels"):]
    section = section[:section.index("\n## ", 1)]
    for fact in ("ReadWriteMany", "--model-control-mode=poll", "router_version",
                 "switchyard models shadow|canary|promote|rollback", "model-sync"):
        assert fact in section, fact


# -- the sidecar's script, run for real ------------------------------------------------------

def _sh() -> str:
    sh = shutil.which("sh")
    assert sh, "needs /bin/sh"
    return sh


def _run(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([_sh(), "-c", script], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def _tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file()}


@pytest.fixture
def repositories(render: Renderer, tmp_path: Path) -> tuple[Path, Path]:
    """A PVC-like source with two real models, copied to /models by the real init container."""
    source, target = tmp_path / "source", tmp_path / "models"
    for model in ("document_router", "engagement"):
        shutil.copytree(ROOT / "models" / "repository" / model, source / model,
                        ignore=shutil.ignore_patterns("__pycache__"))
    target.mkdir()
    init = pod_spec(one(render(sets=ON), "Deployment", "triton"))["initContainers"][0]
    env = {k: v["value"] for k, v in env_of(init).items()}
    env.update(SOURCE=str(source), TARGET=str(target), INSTANCE_KIND="KIND_GPU",
               PATH="/usr/bin:/bin")
    _run(init["args"][0], env)
    return source, target


def test_sidecar_copies_new_versions_only(render: Renderer, tmp_path: Path,
                                          repositories: tuple[Path, Path]) -> None:
    source, target = repositories
    script, env = _sync_script(render(sets=ON))
    env.update(SOURCE=str(source), TARGET=str(target), STATE=str(tmp_path / "state"),
               SYNC_ONCE="1", PATH="/usr/bin:/bin")
    router, target_router = source / "document_router", target / "document_router"
    config = (target_router / "config.pbtxt").read_bytes()
    assert b"kind: KIND_GPU" in config
    before = {v: _tree(target_router / v) for v in ("1", "2")}
    (target_router / "1" / "served-marker").write_text("untouched")   # the pod's own copy

    # what the retrain Job writes: version 3, a new config.pbtxt it never writes (to prove the
    # sidecar leaves it alone), bytecode, a half-named directory; a new engagement version
    shutil.copytree(router / "2", router / "3")
    (router / "3" / "__pycache__").mkdir()
    (router / "3" / "__pycache__" / "model.cpython-311.pyc").write_bytes(b"\0")
    (router / "3" / "weights.npz").write_bytes(b"retrained weights")
    (router / "config.pbtxt").write_text("name: \"document_router\"\n# changed on the PVC\n")
    (router / ".tmp-4").mkdir()
    (router / "2" / "model.py").write_text("# changed on the PVC after the pod copied it\n")
    shutil.copytree(source / "engagement" / "1", source / "engagement" / "2")

    # first pass: version 3 is seen, not copied (it may still be being written)
    out = _run(script, env).stdout
    assert not (target_router / "3").exists()
    assert "version 3 found" in out
    # second pass, unchanged: copied into place
    out = _run(script, env).stdout
    assert (target_router / "3").is_dir()
    assert "version 3 copied" in out
    expected = {k: v for k, v in _tree(router / "3").items() if "__pycache__" not in k}
    assert _tree(target_router / "3") == expected
    assert not list(target_router.rglob("__pycache__"))
    assert not [p for p in target_router.iterdir() if p.name.startswith(".")]
    # readable by every user (Triton runs as another user than the Job)
    assert all(p.stat().st_mode & 0o004 for p in (target_router / "3").rglob("*"))
    # nothing else changed: the live versions, the rewritten config, other models
    assert (target_router / "config.pbtxt").read_bytes() == config
    assert (target_router / "1" / "served-marker").read_text() == "untouched"
    assert _tree(target_router / "2") == before["2"]
    assert {k: v for k, v in _tree(target_router / "1").items() if k != "served-marker"} == \
        before["1"]
    assert sorted(p.name for p in target_router.iterdir()) == [
        "1", "2", "3", "config.pbtxt", "labels.txt"]
    assert not (target / "engagement" / "2").exists()

    # a version that changes between passes waits until it stops changing
    shutil.copytree(router / "2", router / "4")
    _run(script, env)
    (router / "4" / "weights.npz").write_bytes(b"still writing")
    _run(script, env)
    assert not (target_router / "4").exists()
    _run(script, env)
    assert (target_router / "4" / "weights.npz").read_bytes() == b"still writing"
    # a version removed from the PVC stays where it is served
    shutil.rmtree(router / "3")
    _run(script, env)
    assert (target_router / "3").is_dir()


def test_sidecar_loops_and_exits_promptly_on_sigterm(render: Renderer, tmp_path: Path,
                                                     repositories: tuple[Path, Path]) -> None:
    source, target = repositories
    script, env = _sync_script(render(sets=ON))
    assert env["SYNC_SECONDS"] == "60"
    env.update(SOURCE=str(source), TARGET=str(target), STATE=str(tmp_path / "state"),
               SYNC_SECONDS="1", PATH="/usr/bin:/bin")
    shutil.copytree(source / "document_router" / "2", source / "document_router" / "3")
    log = tmp_path / "sync.log"
    with log.open("w") as out:
        proc = subprocess.Popen([_sh(), "-c", script], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while not (target / "document_router" / "3").exists():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        env_slow = dict(env, SYNC_SECONDS="3600")   # now the loop sleeps; SIGTERM must end it
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0, log.read_text()
        with log.open("a") as out:
            slow = subprocess.Popen([_sh(), "-c", script], env=env_slow, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        try:
            time.sleep(0.5)
            started = time.monotonic()
            slow.send_signal(signal.SIGTERM)
            assert slow.wait(timeout=5) == 0
            assert time.monotonic() - started < 5
        finally:
            _kill_group(slow)
    finally:
        _kill_group(proc)


def _kill_group(proc: subprocess.Popen[Any]) -> None:
    """End the shell and its `sleep` (started in a session of their own, by this test)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=5)


def test_the_jobs_are_placed_where_their_values_say(render: Renderer) -> None:
    """retrain must share a node with the Triton pods for a ReadWriteOnce model repository
    (the README offers that), and purge and the hook Jobs may need a pool of their own: each
    takes nodeSelector, tolerations, affinity and priorityClassName (an outside platform
    trial found none of them placeable)."""
    same_node = {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app.kubernetes.io/component": "triton"}},
         "topologyKey": "kubernetes.io/hostname"}]}}
    docs = render([], sets=[
        *ON, "retrain.affinity.podAffinity.requiredDuringSchedulingIgnoredDuringExecution[0]."
             "labelSelector.matchLabels.app\\.kubernetes\\.io/component=triton",
        "retrain.affinity.podAffinity.requiredDuringSchedulingIgnoredDuringExecution[0]."
        "topologyKey=kubernetes.io/hostname",
        "purge.nodeSelector.pool=jobs", "purge.priorityClassName=batch-low",
        "hooks.tolerations[0].key=jobs", "hooks.tolerations[0].operator=Exists"])
    assert pod_spec(one(docs, "CronJob", "retrain"))["affinity"] == same_node
    purge = pod_spec(one(docs, "CronJob", "purge"))
    assert (purge["nodeSelector"], purge["priorityClassName"]) == ({"pool": "jobs"}, "batch-low")
    hooks = [pod_spec(m) for m in by_kind(docs, "Job")
             if m["metadata"]["labels"].get("app.kubernetes.io/component") == "hooks"]
    assert hooks and all(h["tolerations"] == [{"key": "jobs", "operator": "Exists"}]
                         for h in hooks)
    # unset: none of the keys at all
    plain = pod_spec(one(render([], sets=list(ON)), "CronJob", "retrain"))
    assert not {"nodeSelector", "tolerations", "affinity", "priorityClassName"} & set(plain)
