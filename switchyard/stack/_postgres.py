"""The embedded PostgreSQL 16: the ``pgserver`` wheel's binaries, run as our own child.

We do not use ``pgserver.get_server``: it starts the server through ``pg_ctl``, which
daemonizes the postmaster outside our process group, and stops it from an ``atexit`` hook,
so a killed launcher leaves ``postgres`` running. Here ``postgres`` itself is the child
(foreground, own process group), so ``switchyard up``/``down`` and test fixtures control it
like every other component.

PostgreSQL refuses to run as root. As root we do what pgserver does: run initdb and the
server as the OS user ``pgserver`` (created with ``useradd`` if missing), hand it the data
dir, and make sure it can traverse the directories above the data dir and the binaries.

The server listens on 127.0.0.1:<port> only (no Unix socket: a TCP DSN works the same from
every process and avoids socket path length limits in deep temp dirs). Host connections need
the password generated at initdb, kept in ``<state_dir>/postgres.password`` (mode 0600); the
full DSN is written to ``<state_dir>/postgres.dsn`` (0600) for the other processes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import secrets
import shutil
import signal
import stat
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import psutil

from switchyard._settings import Settings
from switchyard.stack._component import Component
from switchyard.stack._process import ManagedProcess
from switchyard.stack._util import (
    LOOPBACK,
    StackError,
    free_port,
    port_is_free,
    postgres_select1_ok,
    run_coro,
    tail,
)

_log = logging.getLogger("switchyard.stack")

#: OS user PostgreSQL runs as when we are root (the same name pgserver uses).
PG_OS_USER = "pgserver"
#: PostgreSQL role we connect as (the bootstrap superuser initdb creates).
PG_ROLE = "postgres"
DEFAULT_PORT = 5432


def pg_bin_dir() -> Path:
    """The bundled PostgreSQL ``bin`` dir, found without importing pgserver (side effects)."""
    import importlib.util

    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise StackError("the pgserver package is not installed (pip install pgserver)")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def dsn_path(state_dir: Path) -> Path:
    return Path(state_dir) / "postgres.dsn"


def read_dsn(state_dir: Path) -> str | None:
    """The DSN the embedded server last wrote, or None (used when ``postgres_dsn`` is empty)."""
    try:
        return dsn_path(state_dir).read_text().strip() or None
    except OSError:
        return None


def _ensure_os_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    # same arguments as pgserver.utils.ensure_user_exists, so either tool can reuse the user
    result = subprocess.run(  # noqa: S603
        ["useradd", "-s", "/bin/bash", name], capture_output=True, text=True, check=False
    )
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(name)  # created, or created concurrently by someone else
    raise StackError(f"cannot create OS user {name!r} for PostgreSQL: {result.stderr.strip()}")


def _ensure_traversable(path: Path, uid: int) -> None:
    """Add o+x to every ancestor of ``path`` that ``uid`` could not otherwise enter.

    Only the search bit is added (no listing), the least a non-root server needs to reach its
    data dir under e.g. a 0700 pytest temp root.
    """
    for parent in [path, *path.parents]:
        try:
            st = parent.stat()
        except FileNotFoundError:
            continue
        if st.st_uid == uid or st.st_mode & stat.S_IXOTH:
            continue
        _log.warning(
            "adding o+x to %s so PostgreSQL (user %s) can reach its data", parent, PG_OS_USER
        )
        parent.chmod(stat.S_IMODE(st.st_mode) | stat.S_IXOTH)


def _ensure_readable_install(bin_dir: Path, uid: int) -> None:
    """Make the bundled install usable by the server's OS user (some wheels unpack as 0700)."""
    _ensure_traversable(bin_dir, uid)
    probe = bin_dir / "postgres"
    if probe.stat().st_mode & stat.S_IXOTH:
        return
    for root in (bin_dir, bin_dir.parent / "lib", bin_dir.parent / "share"):
        for dirpath, _dirnames, filenames in os.walk(root):
            Path(dirpath).chmod(stat.S_IMODE(os.stat(dirpath).st_mode) | 0o055)
            for fname in filenames:
                fpath = Path(dirpath) / fname
                extra = 0o055 if root == bin_dir else 0o044
                fpath.chmod(stat.S_IMODE(fpath.stat().st_mode) | extra)


def _chown_tree(path: Path, uid: int, gid: int) -> None:
    os.chown(path, uid, gid)
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)


def _write_secret(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


class PostgresServer(Component):
    """PostgreSQL 16 on 127.0.0.1:<port>, data in ``<state_dir>/postgres``, database ``switchyard``.

    ``port=None`` keeps the port of the previous run (from ``postgres.dsn``) when it is free,
    else 5432 when free, else any free port, so a developer's DSN stays stable across ``up``s.
    """

    name = "postgres"
    stop_timeout_s = 15.0
    #: SIGINT is PostgreSQL's "fast shutdown"; SIGTERM would wait for clients to disconnect.
    stop_signal = signal.SIGINT
    #: the postmaster stops its own helpers in order; only SIGKILL goes to the whole group
    signal_group = False

    def __init__(
        self,
        settings: Settings,
        state_dir: Path,
        *,
        port: int | None = None,
        database: str = "switchyard",
        detached: bool = False,
    ) -> None:
        super().__init__(settings, state_dir, detached=detached)
        self.data_dir = self.state_dir / "postgres"
        self.password_path = self.state_dir / "postgres.password"
        self.dsn_path = dsn_path(self.state_dir)
        self.database = database
        self._requested_port = port or settings.postgres_port or None
        self.port: int = self._requested_port or DEFAULT_PORT
        self._password: str | None = None
        self._bin_dir: Path | None = None
        self._os_user = PG_OS_USER if os.geteuid() == 0 else None

    # -- connection strings -----------------------------------------------------------------
    def _dsn_for(self, database: str, *, with_password: bool = True) -> str:
        auth = PG_ROLE
        if with_password and self._password:
            auth += ":" + quote(self._password, safe="")
        return f"postgresql://{auth}@{LOOPBACK}:{self.port}/{database}"

    @property
    def dsn(self) -> str:
        """The DSN of the ``switchyard`` database (contains the password: treat as a secret)."""
        return self._dsn_for(self.database)

    @property
    def endpoint(self) -> str:
        return self._dsn_for(self.database, with_password=False)

    # -- launch -----------------------------------------------------------------------------
    def _choose_port(self) -> int:
        if self._requested_port:
            return self._requested_port
        previous = read_dsn(self.state_dir)
        if previous:
            with contextlib.suppress(ValueError):
                old = urlsplit(previous).port
                if old and port_is_free(old):
                    return old
        return DEFAULT_PORT if port_is_free(DEFAULT_PORT) else free_port()

    def _prepare(self) -> None:
        bin_dir = pg_bin_dir()
        uid, gid = os.geteuid(), os.getegid()
        if self._os_user is not None:
            entry = _ensure_os_user(self._os_user)
            uid, gid = entry.pw_uid, entry.pw_gid
            _ensure_readable_install(bin_dir, uid)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._os_user is not None:
            _ensure_traversable(self.data_dir.parent, uid)
            if self.data_dir.stat().st_uid != uid:
                _chown_tree(self.data_dir, uid, gid)
        self.data_dir.chmod(0o700)

        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb(bin_dir, uid, gid)
        self._clear_stale_lock()
        try:
            self._password = self.password_path.read_text().strip()
        except OSError:
            raise StackError(
                f"{self.data_dir} holds a database but {self.password_path} is missing; "
                f"delete {self.data_dir} to start over"
            ) from None
        self.port = self._choose_port()
        self._bin_dir = bin_dir

    def _clear_stale_lock(self) -> None:
        """Remove ``postmaster.pid`` left by a killed server; refuse if a live one owns the dir.

        PostgreSQL itself treats the lock as live while its pid exists, and a killed postmaster
        can linger as a zombie when PID 1 does not reap (as in some containers), which would
        block the restart for no reason.
        """
        lock = self.data_dir / "postmaster.pid"
        try:
            pid = int(lock.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(pid)
            if proc.status() != psutil.STATUS_ZOMBIE and proc.name() == "postgres":
                raise StackError(
                    f"a PostgreSQL server (pid {pid}) is already running on {self.data_dir}; "
                    "stop it first (switchyard down)"
                )
        _log.info("removing stale %s (pid %s is gone)", lock, pid)
        lock.unlink(missing_ok=True)

    def _initdb(self, bin_dir: Path, uid: int, gid: int) -> None:
        """Create the cluster: UTF8, C locale, trust nothing on TCP (scram password)."""
        for child in self.data_dir.iterdir():  # a half-made cluster from a failed initdb
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
        password = secrets.token_urlsafe(24)
        pwfile = self.state_dir / ".postgres-initdb-pw"
        _write_secret(pwfile, password + "\n")
        os.chown(pwfile, uid, gid)
        log_path = ManagedProcess.log_path_for(self.state_dir, self.name)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        argv = [
            str(bin_dir / "initdb"),
            "-D", str(self.data_dir),
            "-U", PG_ROLE,
            "--pwfile", str(pwfile),
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
        ]
        try:
            with log_path.open("ab") as log:
                offset = log.tell()
                log.write(f"=== initdb: {' '.join(argv)}\n".encode())
                log.flush()
                result = subprocess.run(  # noqa: S603
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=self._env(),
                    user=self._os_user,
                    group=self._os_user,
                    extra_groups=[] if self._os_user else None,
                    timeout=120,
                    check=False,
                )
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise StackError(
                f"initdb failed with code {result.returncode}.\n"
                f"--- last lines of {log_path} ---\n{tail(log_path, 40, start_offset=offset)}"
            )
        _write_secret(self.password_path, password + "\n")

    def _argv(self) -> Sequence[str]:
        assert self._bin_dir is not None, "_prepare() runs first"
        return [
            str(self._bin_dir / "postgres"),
            "-D", str(self.data_dir),
            "-h", LOOPBACK,
            "-p", str(self.port),
            "-k", "",  # no Unix socket
            "-c", "max_connections=200",
        ]

    def ports(self) -> Sequence[int]:
        return (self.port,)

    def _env(self) -> Mapping[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        return env

    def _user(self) -> str | None:
        return self._os_user

    # -- health -----------------------------------------------------------------------------
    def healthy(self) -> bool:
        if self._password is None:
            return False
        return postgres_select1_ok(self._dsn_for("postgres"))

    def _after_ready(self) -> None:
        """Create the database once, then publish the DSN for the other processes."""
        database = self.database

        async def _create() -> None:
            import asyncpg

            conn = await asyncpg.connect(self._dsn_for("postgres"), timeout=10)
            try:
                exists = await conn.fetchval(
                    "SELECT 1 FROM pg_database WHERE datname = $1", database
                )
                if not exists:
                    quoted = '"' + database.replace('"', '""') + '"'
                    await conn.execute(f"CREATE DATABASE {quoted}")
            finally:
                await conn.close()

        run_coro(_create)
        _write_secret(self.dsn_path, self.dsn + "\n")

    def probe(self) -> dict[str, Any]:
        return {"type": "postgres", "dsn_file": str(self.dsn_path)}
