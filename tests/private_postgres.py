"""A PostgreSQL cluster of the tests' own, for faults the machine's shared
server must never see (a full disk under a tablespace, say).

`initdb` makes it in a folder of its own under /tmp, `postgres` runs it as a
child of the test process on a free loopback port (no Unix socket in the
shared /var/run/postgresql), and teardown stops it and removes everything.
PostgreSQL refuses to run as root, so as root (here and in CI) both run as
the `postgres` OS user that the Debian package `postgresql` creates
(scripts/test-deps installs it).

A small disk is a tablespace on a tmpfs (tests/disk_support.py): the data
directory, WAL included, stays on the real disk, so a full tablespace fails
the writes into it with SQLSTATE 53100 ("could not extend file …: No space
left on device") and the server lives on, as a full data volume does where
WAL is kept apart."""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from disk_support import small_tmpfs
from support import free_port

OS_USER = "postgres"
PREFIX = "feedsvc-private-pg-"
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the server's process, before it runs: stop (SIGQUIT, PostgreSQL's
    immediate shutdown) when the test process dies, however it dies. Set
    after the change of user, which would clear it."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGQUIT)


def sweep() -> None:
    """Remove what test runs that were killed before their teardown left
    (their tmpfs mounts, then their folders): no other run's, which is alive."""
    for root in Path(tempfile.gettempdir()).glob(PREFIX + "*"):
        try:
            owner = int((root / "owner.pid").read_text())
        except (OSError, ValueError):
            continue                    # being made, or not ours
        if Path(f"/proc/{owner}").exists():
            continue
        for disk in root.glob("small_*"):
            subprocess.run(["umount", "-l", str(disk)], capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)


def _bin(name: str) -> str:
    """The newest installed server program `name` (initdb, postgres: not on PATH in Debian)."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                   key=lambda p: int(Path(p).parts[-3]))
    if found:
        return found[-1]
    on_path = shutil.which(name)
    if on_path is None:
        raise RuntimeError(f"no {name} in /usr/lib/postgresql/*/bin or on PATH: install the"
                           " PostgreSQL server (Debian: apt-get install postgresql;"
                           " scripts/test-deps does it)")
    return on_path


def _owner() -> tuple[int, int] | None:
    """The (uid, gid) the cluster runs as when we are root; None: as ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(OS_USER)
    except KeyError as e:
        raise RuntimeError(f"PostgreSQL will not run as root and there is no {OS_USER!r}"
                           " OS user (the Debian package postgresql makes it)") from e
    return entry.pw_uid, entry.pw_gid


class PrivatePostgres:
    """One running cluster: `url(database)`, `new_database()`, `small_disk()`."""

    def __init__(self) -> None:
        self.owner = _owner()
        sweep()
        self.root = Path(tempfile.mkdtemp(prefix=PREFIX))
        (self.root / "owner.pid").write_text(str(os.getpid()))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._chown(self.root)
        self._run([_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                   "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"])

    def _chown(self, path: Path) -> None:
        if self.owner is not None:
            os.chown(path, *self.owner)

    def _as_owner(self) -> dict[str, Any]:
        """Popen's keywords that run a program as the cluster's owner."""
        if self.owner is None:
            return {}
        return {"user": self.owner[0], "group": self.owner[1], "extra_groups": []}

    def _run(self, cmd: list[str]) -> None:
        done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120,
                              cwd=self.root, **self._as_owner())
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n"
                               f"{done.stdout}{done.stderr}")

    def server_log(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def start(self) -> PrivatePostgres:
        """`postgres` as a child of ours (not pg_ctl's daemon: we wait for it, so
        no process is left behind however the tests end)."""
        for _attempt in range(3):    # another process may take the free port first
            self.port = free_port()
            self.proc = subprocess.Popen(
                [_bin("postgres"), "-D", str(self.data), "-p", str(self.port),
                 "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
                 "-c", "fsync=off", "-c", "max_connections=200"],
                stdout=self.log.open("ab"), stderr=subprocess.STDOUT, cwd=self.root,
                preexec_fn=_die_with_parent, **self._as_owner())
            if self._wait_accepting():
                return self
        raise RuntimeError(f"the private PostgreSQL did not start:\n{self.server_log()}")

    def _wait_accepting(self, timeout: float = 60) -> bool:
        import psycopg

        deadline = time.monotonic() + timeout
        assert self.proc is not None
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                psycopg.connect(self.url("postgres"), connect_timeout=2).close()
                return True
            except psycopg.OperationalError:
                time.sleep(0.1)
        self.proc.kill()
        self.proc.wait()
        return False

    def stop(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGQUIT)    # immediate shutdown: nothing is kept anyway
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)

    @property
    def server(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}"

    def url(self, database: str) -> str:
        return f"{self.server}/{database}"

    def execute(self, *statements: str, database: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as conn:
            for sql in statements:
                conn.execute(sql)  # type: ignore[arg-type]

    def new_database(self, tablespace: str | None = None) -> str:
        """A new database; with `tablespace`, every table made in it goes there
        (its catalog stays in the default one). Its URL."""
        name = f"feedsvc_{uuid.uuid4().hex[:12]}"
        statements = [f'CREATE DATABASE "{name}"']
        if tablespace:
            statements.append(f'ALTER DATABASE "{name}" SET default_tablespace = "{tablespace}"')
        self.execute(*statements)
        return self.url(name)

    def drop_database(self, url: str) -> None:
        self.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')

    @contextlib.contextmanager
    def small_disk(self, size: str) -> Iterator[SmallDisk]:
        """A tablespace on a tmpfs of `size`, dropped (with the databases made
        on it) before the tmpfs goes."""
        name = f"small_{uuid.uuid4().hex[:8]}"
        with small_tmpfs(self.root / name, size) as disk:
            location = disk / "tablespace"
            location.mkdir()
            self._chown(location)
            self.execute(f"CREATE TABLESPACE \"{name}\" LOCATION '{location}'")
            small = SmallDisk(self, name, disk)
            try:
                yield small
            finally:
                for url in small.databases:
                    self.drop_database(url)
                self.execute(f'DROP TABLESPACE "{name}"')


class SmallDisk:
    """A tablespace of a private cluster on a tmpfs of its own. The tablespace
    is a folder below the tmpfs, so a filler file (disk_support.fill(disk))
    beside it is nothing PostgreSQL knows of."""

    def __init__(self, cluster: PrivatePostgres, tablespace: str, disk: Path) -> None:
        self.cluster, self.tablespace, self.disk = cluster, tablespace, disk
        self.databases: list[str] = []

    def new_database(self) -> str:
        """A new database whose tables are on this disk; its URL."""
        url = self.cluster.new_database(self.tablespace)
        self.databases.append(url)
        return url


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    cluster = PrivatePostgres()
    try:
        yield cluster.start()
    finally:
        cluster.stop()
