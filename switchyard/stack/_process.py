"""One child process of the embedded stack: own process group, log file, pid file, clean stop.

Why a process group per child: servers fork helpers (PostgreSQL backends, Triton's Python
backend stubs). Signalling the group reaches all of them, so stopping a component never
leaves an orphan behind. ``start_new_session=True`` also detaches the child from the
terminal, which is what lets ``switchyard up --detach`` exit while the stack keeps running.

Why pid files with metadata: ``switchyard down`` and ``status`` run in another process and
only have the state dir. A bare pid may have been reused by an unrelated process since, so
``<name>.json`` beside ``<name>.pid`` records the process start time; a pid is only signalled
when the live process with that pid started at the recorded time.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil

from switchyard.stack._util import StackError, tail

_log = logging.getLogger("switchyard.stack")

_PR_SET_PDEATHSIG = 1
try:
    _LIBC: ctypes.CDLL | None = ctypes.CDLL("libc.so.6", use_errno=True)
except OSError:  # not glibc Linux: no parent-death signal, stop() still cleans up
    _LIBC = None

#: Start times read through psutil are tick-rounded; anything closer than this is "the same".
_CREATE_TIME_TOLERANCE_S = 0.05
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _started(pid: int) -> float | None:
    """Seconds from boot to the start of process ``pid``: its start tick in /proc, which a
    step of the wall clock does not move. psutil's create_time is the boot time plus that
    tick, and the boot time it reads moves with every step of the clock (a VM's time sync),
    so a process checked after a step looked like a recycled pid: ``switchyard status`` saw
    every component of a running stack as gone. None when the process (or /proc) is not
    there."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        return int(fields[19]) / _CLOCK_TICKS
    except (OSError, IndexError, ValueError):
        return None



def _parent_death_preexec(sig: int, parent_pid: int) -> Callable[[], None]:
    """A ``preexec_fn`` asking the kernel to signal the child when its parent dies.

    The check of ``getppid`` closes the race where the parent died between fork and prctl.
    Runs after Popen's setuid/setgid, so the setting survives the credential change.
    """

    def _preexec() -> None:
        if _LIBC is None:
            return
        _LIBC.prctl(_PR_SET_PDEATHSIG, ctypes.c_ulong(sig), 0, 0, 0)
        if os.getppid() != parent_pid:
            os.kill(os.getpid(), sig)

    return _preexec


def _group_members(pgid: int, *, not_before: float | None = None) -> list[psutil.Process]:
    """Live (non-zombie) processes in process group ``pgid``.

    ``not_before`` (seconds from boot, :func:`_started`) skips processes started before that,
    so a recycled group id can never make us signal a stranger.
    """
    members = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) != pgid:
                continue
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            started = _started(proc.pid)
            if not_before is not None and started is not None and \
                    started + _CREATE_TIME_TOLERANCE_S < not_before:
                continue
            members.append(proc)
        except (ProcessLookupError, psutil.Error):
            continue
    return members


def _wait_gone(proc: psutil.Process, timeout_s: float) -> bool:
    """Wait for a process that may not be our child; a zombie counts as gone.

    ``psutil.Process.wait`` on a non-child polls for the pid to disappear, which a zombie
    never does while its parent (e.g. the pytest process that launched a detached stack)
    keeps it unreaped.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        except psutil.Error:
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def _group_has_foreign_leader(pgid: int) -> bool:
    """Whether a live process has pid == ``pgid`` (after our leader died: a recycled pid)."""
    try:
        return psutil.Process(pgid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _reap_group(pgid: int, grace_s: float, *, not_before: float | None = None) -> None:
    """After the leader is gone: give the rest of the group ``grace_s``, then SIGKILL it.

    Helpers usually exit on their own once the leader stops (Triton stubs watch their parent,
    PostgreSQL backends watch the postmaster); anything still there after the grace period is
    killed so nothing outlives the component.
    """
    deadline = time.monotonic() + grace_s
    while _group_members(pgid, not_before=not_before):
        if time.monotonic() >= deadline:
            for proc in _group_members(pgid, not_before=not_before):
                with contextlib.suppress(psutil.Error):
                    proc.kill()
            for proc in _group_members(pgid, not_before=not_before):
                _wait_gone(proc, 5)
            break
        time.sleep(0.05)


class ManagedProcess:
    """A child server process started in its own process group, stopped as a group.

    ``stop_signal`` is the polite signal (SIGTERM for most servers; SIGINT is PostgreSQL's
    "fast shutdown"). With ``signal_group=False`` it goes to the leader only, for servers like
    PostgreSQL that shut their helpers down in order themselves; SIGKILL always hits the group.

    ``detached=True`` skips the parent-death signal so the child outlives the launching
    process (``switchyard up --detach``). Otherwise, when started from the main thread, the
    kernel sends ``stop_signal`` to the child if the launcher dies without calling stop.
    (Linux delivers that signal when the *thread* that forked exits, so it is only armed for
    children launched from the main thread; launch from a worker thread gets no such guard.)
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        state_dir: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        user: str | None = None,
        stop_signal: int = signal.SIGTERM,
        signal_group: bool = True,
        detached: bool = False,
    ) -> None:
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"bad process name {name!r}")
        self.name = name
        self.argv = [str(a) for a in argv]
        self.state_dir = Path(state_dir).absolute()
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.user = user
        self.stop_signal = int(stop_signal)
        self.signal_group = signal_group
        self.detached = detached
        self._popen: subprocess.Popen[bytes] | None = None
        self._create_time: float | None = None
        self._started: float | None = None  # seconds from boot (:func:`_started`)
        self._log_offset = 0
        self._lock = threading.Lock()

    # -- paths ------------------------------------------------------------------------------
    @staticmethod
    def log_path_for(state_dir: Path, name: str) -> Path:
        return Path(state_dir) / "logs" / f"{name}.log"

    @staticmethod
    def pid_path_for(state_dir: Path, name: str) -> Path:
        return Path(state_dir) / "pids" / f"{name}.pid"

    @staticmethod
    def meta_path_for(state_dir: Path, name: str) -> Path:
        return Path(state_dir) / "pids" / f"{name}.json"

    @property
    def log_path(self) -> Path:
        return self.log_path_for(self.state_dir, self.name)

    @property
    def pid_path(self) -> Path:
        return self.pid_path_for(self.state_dir, self.name)

    # -- lifecycle --------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen is not None else None

    @property
    def returncode(self) -> int | None:
        return self._popen.poll() if self._popen is not None else None

    def start(self) -> None:
        """Spawn the child; refuse if a verified process of this name already runs here."""
        with self._lock:
            if self._popen is not None and self._popen.poll() is None:
                raise StackError(f"{self.name} is already running (pid {self._popen.pid})")
            running = self.find_running(self.state_dir, self.name)
            if running is not None:
                raise StackError(
                    f"{self.name} is already running from {self.state_dir} as pid {running.pid}; "
                    "stop it first (switchyard down)"
                )
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self.pid_path.parent.mkdir(parents=True, exist_ok=True)
            arm_death_signal = (
                not self.detached
                and _LIBC is not None
                and threading.current_thread() is threading.main_thread()
            )
            preexec = (
                _parent_death_preexec(self.stop_signal, os.getpid()) if arm_death_signal else None
            )
            with self.log_path.open("ab") as log:
                self._log_offset = log.tell()
                stamp = time.strftime("%Y-%m-%d %H:%M:%S")
                log.write(f"=== {stamp} switchyard starts: {' '.join(self.argv)}\n".encode())
                log.flush()
                try:
                    self._popen = subprocess.Popen(  # noqa: S603 (argv built by the launchers)
                        self.argv,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        env=self.env,
                        cwd=self.cwd,
                        start_new_session=True,
                        user=self.user,
                        group=self.user,
                        extra_groups=[] if self.user else None,
                        preexec_fn=preexec,
                        close_fds=True,
                    )
                except OSError as exc:
                    raise StackError(f"cannot start {self.name} ({self.argv[0]}): {exc}") from exc
            try:
                self._create_time = psutil.Process(self._popen.pid).create_time()
            except psutil.Error:  # already gone; start() callers notice via is_running()
                self._create_time = time.time()
            self._started = _started(self._popen.pid)
            self._write_pid_files()
            _log.info("started %s pid=%s log=%s", self.name, self._popen.pid, self.log_path)

    def _write_pid_files(self) -> None:
        assert self._popen is not None
        meta: dict[str, Any] = {
            "name": self.name,
            "pid": self._popen.pid,
            "pgid": self._popen.pid,
            "create_time": self._create_time,
            "started": self._started,
            "argv": self.argv,
            "stop_signal": self.stop_signal,
            "signal_group": self.signal_group,
            "log": str(self.log_path),
        }
        _atomic_write(self.meta_path_for(self.state_dir, self.name), json.dumps(meta, indent=2))
        _atomic_write(self.pid_path, f"{self._popen.pid}\n")

    def is_running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        """This run's last log lines, for error messages."""
        return tail(self.log_path, lines, start_offset=self._log_offset)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Polite signal, wait up to ``timeout_s``, then SIGKILL the whole group; reap it all."""
        with self._lock:
            popen = self._popen
            if popen is None:
                return
            pgid = popen.pid
            if popen.poll() is None:
                if self.signal_group:
                    _killpg(pgid, self.stop_signal)
                else:
                    with contextlib.suppress(ProcessLookupError):
                        popen.send_signal(self.stop_signal)
                try:
                    popen.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    _log.warning(
                        "%s did not stop within %.1fs; killing its group", self.name, timeout_s
                    )
                    _killpg(pgid, signal.SIGKILL)
                    popen.wait(timeout=10)
            _reap_group(pgid, grace_s=min(2.0, timeout_s), not_before=self._started)
            self._remove_pid_files()
            _log.info("stopped %s (exit %s)", self.name, popen.returncode)

    def _remove_pid_files(self) -> None:
        remove_pid_files(self.state_dir, self.name)

    # -- from another process (switchyard down / status) --------------------------------------
    @staticmethod
    def read_meta(state_dir: Path, name: str) -> dict[str, Any] | None:
        try:
            data = json.loads(ManagedProcess.meta_path_for(state_dir, name).read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    @classmethod
    def find_running(cls, state_dir: Path, name: str) -> psutil.Process | None:
        """The live process recorded for ``name`` in ``state_dir``, verified by start time."""
        meta = cls.read_meta(state_dir, name)
        if meta is None:
            return None
        try:
            proc = psutil.Process(int(meta["pid"]))
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            if meta.get("started") is not None:
                started = _started(proc.pid)
                if started is None or \
                        abs(started - float(meta["started"])) > _CREATE_TIME_TOLERANCE_S:
                    return None  # pid reused by an unrelated process
            elif abs(proc.create_time() - float(meta["create_time"])) > \
                    _CREATE_TIME_TOLERANCE_S:  # a pid file written before "started"
                return None
            return proc
        except (psutil.Error, KeyError, TypeError, ValueError):
            return None

    @classmethod
    def stop_from_pidfile(cls, state_dir: Path, name: str, timeout_s: float = 10.0) -> bool:
        """Stop a process another launcher started; True if anything of it was still alive.

        The pid is verified (same start time as recorded) before any signal; if the leader is
        gone, leftover members of its group started after it are still cleaned up.
        """
        meta = cls.read_meta(state_dir, name)
        if meta is None:
            remove_pid_files(state_dir, name)
            return False
        try:
            pgid = int(meta.get("pgid", meta["pid"]))
            # seconds from boot; a pid file written before "started" gives its wall-clock
            # start in those terms, as psutil reckons the boot time now
            not_before = float(meta["started"]) if meta.get("started") is not None else \
                float(meta["create_time"]) - psutil.boot_time()
            stop_signal = int(meta.get("stop_signal", signal.SIGTERM))
            signal_group = bool(meta.get("signal_group", True))
        except (KeyError, TypeError, ValueError):
            remove_pid_files(state_dir, name)
            return False
        leader = cls.find_running(state_dir, name)
        found = leader is not None
        if leader is not None:
            with contextlib.suppress(psutil.Error):
                if signal_group:
                    _killpg(pgid, stop_signal)
                else:
                    leader.send_signal(stop_signal)
            if not _wait_gone(leader, timeout_s):
                _log.warning("%s did not stop within %.1fs; killing its group", name, timeout_s)
                _killpg(pgid, signal.SIGKILL)
                _wait_gone(leader, 10)
        elif _group_has_foreign_leader(pgid):
            # The recorded pid was recycled and leads a group of its own: not ours. (A group
            # id cannot be recycled while any member lives, so with no live leader every
            # member left in the group is an orphan of our dead leader.)
            remove_pid_files(state_dir, name)
            return False
        leftovers = _group_members(pgid, not_before=not_before)
        found = found or bool(leftovers)
        _reap_group(pgid, grace_s=min(2.0, timeout_s), not_before=not_before)
        remove_pid_files(state_dir, name)
        return found


def remove_pid_files(state_dir: Path, name: str) -> None:
    for path in (
        ManagedProcess.pid_path_for(state_dir, name),
        ManagedProcess.meta_path_for(state_dir, name),
    ):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _atomic_write(path: Path, text: str, mode: int = 0o644) -> None:
    """Write via rename so a concurrent reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)
