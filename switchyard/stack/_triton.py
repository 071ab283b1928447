"""The embedded Triton: the standalone ``tritonserver`` shipped in the nvidia-pytriton wheel.

PyTriton normally drives this binary from its Python API; we run it standalone on a model
repository because that is how production runs Triton (and it is ~3x faster, see the
design notes). The wheel's layout needs assembling first:

- a backends dir ``<state_dir>/triton/backends/python`` holding ``libtriton_python.so``,
  ``triton_python_backend_utils.py`` and the stub built for *this* interpreter's minor version
  (the wheel ships one per Python version under ``python_backend_stubs/3.X``);
- ``LD_LIBRARY_PATH`` with the wheel's bundled libs (the stub's RPATH is relative to its
  original location, so a copied stub cannot find them) and the interpreter's LIBDIR (the stub
  links ``libpython3.X.so`` by name; without it models fail to load);
- ``PATH`` starting with the venv's ``bin`` so the stub's embedded Python uses the venv's
  packages (numpy).

Every listener binds 127.0.0.1; SageMaker and Vertex AI endpoints stay off.
"""

from __future__ import annotations

import filecmp
import glob
import hashlib
import importlib.util
import os
import shutil
import sys
import sysconfig
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from switchyard._settings import Settings
from switchyard.stack._component import Component
from switchyard.stack._util import LOOPBACK, StackError, http_ok


def pytriton_dirs() -> tuple[Path, Path]:
    """``(tritonserver dist dir, bundled libs dir)`` inside the installed nvidia-pytriton wheel."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise StackError("nvidia-pytriton is not installed (pip install nvidia-pytriton==0.7.0)")
    package = Path(next(iter(spec.submodule_search_locations)))
    return package / "tritonserver", package.parent / "nvidia_pytriton.libs"


def shm_prefix(state_dir: Path) -> str:
    """Shared-memory name prefix of the Python backend, derived from the state dir.

    Deterministic so ``switchyard down`` in another process can remove ``/dev/shm`` regions a
    killed server left behind (Triton only removes them on a clean exit).
    """
    digest = hashlib.sha1(str(Path(state_dir).absolute()).encode()).hexdigest()[:10]
    return f"switchyard-{digest}-"


def cleanup_shm(state_dir: Path, tag: str = "") -> None:
    """Remove the shared-memory regions of the stack's Tritons (``tag``: of one of them)."""
    for leftover in glob.glob(f"/dev/shm/{shm_prefix(state_dir)}{tag}*"):
        try:
            os.unlink(leftover)
        except OSError:
            pass


def _copy_if_changed(src: Path, dst: Path) -> None:
    if dst.exists() and filecmp.cmp(src, dst, shallow=True):
        return
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.copy2(src, tmp)
    os.replace(tmp, dst)


class TritonServer(Component):
    """``tritonserver`` on the model repository, HTTP/gRPC/metrics on 127.0.0.1 ports from settings.

    ``model_control_mode="explicit"`` (default) loads every model at start (``--load-model=*``)
    and still lets callers load/unload models through the repository API (handy after a
    retrain); ``"none"`` serves exactly what was in the repository at start. Either way a
    model that fails to load stops the server (``--exit-on-error``), and the start error shows
    Triton's log.
    """

    name = "triton"
    stop_timeout_s = 15.0
    #: which settings hold the ports, and the shared-memory name tag (two Tritons of one
    #: stack must not share, or remove, each other's regions)
    port_settings: tuple[str, str, str] = (
        "triton_http_port", "triton_grpc_port", "triton_metrics_port")
    shm_tag = "main-"

    def __init__(
        self,
        settings: Settings,
        state_dir: Path,
        *,
        model_repository: Path | None = None,
        model_control_mode: str = "explicit",
        detached: bool = False,
    ) -> None:
        super().__init__(settings, state_dir, detached=detached)
        if model_control_mode not in {"none", "explicit"}:
            raise ValueError("model_control_mode must be 'none' or 'explicit'")
        self.model_repository = Path(model_repository or settings.model_repository).absolute()
        self.model_control_mode = model_control_mode
        self.http_port, self.grpc_port, self.metrics_port = (
            int(getattr(settings, name)) for name in self.port_settings)
        self.backends_dir = self.state_dir / self.name / "backends"

    @property
    def grpc_url(self) -> str:
        """What ``tritonclient.grpc`` and ``Settings.triton_url`` take."""
        return f"{LOOPBACK}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://{LOOPBACK}:{self.http_port}"

    @property
    def endpoint(self) -> str:
        return f"grpc {self.grpc_url}, http {LOOPBACK}:{self.http_port}"

    def ports(self) -> Sequence[int]:
        return (self.http_port, self.grpc_port, self.metrics_port)

    def _prepare(self) -> None:
        if not self.model_repository.is_dir():
            raise StackError(
                f"Triton model repository {self.model_repository} does not exist "
                "(run `make models`, or set SWITCHYARD_MODEL_REPOSITORY)"
            )
        dist, _libs = pytriton_dirs()
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        stub = dist / "python_backend_stubs" / version / "triton_python_backend_stub"
        if not stub.exists():
            raise StackError(f"nvidia-pytriton ships no Python backend stub for Python {version}")
        python_dir = self.backends_dir / "python"
        python_dir.mkdir(parents=True, exist_ok=True)
        for src in (
            dist / "backends" / "python" / "libtriton_python.so",
            dist / "backends" / "python" / "triton_python_backend_utils.py",
            stub,
        ):
            _copy_if_changed(src, python_dir / src.name)
        (python_dir / stub.name).chmod(0o755)
        cleanup_shm(self.state_dir, self.shm_tag)

    def _argv(self) -> Sequence[str]:
        dist, _libs = pytriton_dirs()
        argv = [
            str(dist / "bin" / "tritonserver"),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={self.backends_dir}",
            f"--cache-directory={dist / 'caches'}",
            f"--backend-config=python,shm-region-prefix-name="
            f"{shm_prefix(self.state_dir)}{self.shm_tag}",
            f"--model-control-mode={self.model_control_mode}",
            "--exit-on-error=true",
            "--strict-readiness=true",
            "--exit-timeout-secs=5",
            f"--http-address={LOOPBACK}",
            f"--http-port={self.http_port}",
            f"--grpc-address={LOOPBACK}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-address={LOOPBACK}",
            f"--metrics-port={self.metrics_port}",
            "--allow-sagemaker=false",
            "--allow-vertex-ai=false",
        ]
        if self.model_control_mode == "explicit":
            argv.append("--load-model=*")
        return argv

    def _env(self) -> Mapping[str, str]:
        _dist, libs = pytriton_dirs()
        env = dict(os.environ)
        libdir = sysconfig.get_config_var("LIBDIR") or ""
        ld_paths = [str(libs), libdir, env.get("LD_LIBRARY_PATH", "")]
        env["LD_LIBRARY_PATH"] = ":".join(p for p in ld_paths if p)
        env["PATH"] = os.pathsep.join([str(Path(sys.prefix) / "bin"), env.get("PATH", "")])
        return env

    def healthy(self) -> bool:
        return http_ok(f"{self.http_url}/v2/health/ready")

    def probe(self) -> dict[str, Any]:
        return {"type": "http", "url": f"{self.http_url}/v2/health/ready"}

    def stop(self, timeout_s: float | None = None) -> None:
        super().stop(timeout_s)
        cleanup_shm(self.state_dir, self.shm_tag)


class TritonSpillServer(TritonServer):
    """A second Triton on the same model repository: the spill-over pool
    (``SWITCHYARD_TRITON_SPILL_URL``; services/decision/pools.py). Locally both pools run on
    CPU; in the chart the primary runs on GPUs and this one on CPU nodes."""

    name = "triton-spill"
    port_settings = ("triton_spill_http_port", "triton_spill_grpc_port",
                     "triton_spill_metrics_port")
    shm_tag = "spill-"
