"""What is failing now, per file (and the index's last error): state writes
that fail are reported (`/status`, exit codes), not only logged.

A failure is recorded where it happens (collector, index, WebSub, leader
lock) and cleared by the next success at the same place, in whichever
process. Each kind of failure is logged once when it starts and once when it
ends (per process), so a full or read-only `state_dir` does not flood the log
while the service keeps retrying.

Under `feedsvc serve` the record is the machine's, not the process's: the
leader writes the index, collects and pings, but /status is answered by any
worker, and each must tell the same failures. The one owner is a small JSON
file (`failing.json`) in a folder that server.py makes before the workers
fork and names in FEEDSVC_HEALTH_DIR: systemd's RuntimeDirectory (/run/feedsvc,
a tmpfs), else a folder in /dev/shm (a tmpfs), else a temporary folder. Why
not state_dir: a full or read-only state_dir is exactly what the record must
survive, and a tmpfs of RAM is neither full nor read-only when state_dir's
disk is. Why a file and not shared memory made by the master: any worker,
restarted or not, and `ls` can read it; it is replaced atomically (atomic.py,
readers never see half of it) under an flock, and written only when a
failure starts, changes its reason or ends, so a retry every second costs a
stat, not a write. Entries carry their process and time; an entry of a
process that is gone (its pid no longer runs that process) is not shown.
Should the folder itself fail (a full /dev/shm), the process keeps what it
cannot share in its own memory and shows it: never less than before.

Without FEEDSVC_HEALTH_DIR (`feedsvc collect`, an app made in a test) the
record is the process's own, as one process is all there is. Feeds never read
it; /status and /readyz do (one stat, and a read of a few hundred bytes when
it changed).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from feedsvc import atomic

log = logging.getLogger(__name__)

ENV = "FEEDSVC_HEALTH_DIR"
FILE = "failing.json"
WRITES, ERRORS = "writes", "errors"   # the kinds: failed state writes, last errors (the index's)


def _started(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot, /proc/<pid>/stat's 22nd
    field), so that a pid reused by a new process does not keep a dead one's
    entries; None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except FileNotFoundError:
        return None
    except OSError:
        return ""                          # no /proc to ask: trust the pid alone
    # The command name (field 2) is in parentheses and may hold spaces.
    return stat[stat.rindex(b")") + 2:].split()[19].decode()


class WriteHealth:
    def __init__(self, folder: Path | None = None) -> None:
        self._folder = folder
        self._lock = threading.Lock()
        self._mine: dict[tuple[str, str], str] = {}       # what this process has logged
        self._unshared: dict[tuple[str, str], dict[str, Any]] = {}   # the folder failed
        self._cache: tuple[tuple[int, int, int], dict[str, Any]] | None = None
        self._share_failed = False

    # -- the shared file ------------------------------------------------------
    def folder(self) -> Path | None:
        if self._folder is not None:
            return self._folder
        env = os.environ.get(ENV)
        return Path(env) if env else None

    def _read(self, folder: Path) -> dict[str, Any]:
        """The shared record as last written (re-read only when the file changed)."""
        path = folder / FILE
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return {}
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if self._cache is not None and self._cache[0] == stamp:
            return self._cache[1]
        try:
            data = json.loads(path.read_bytes())
        except (OSError, ValueError):
            return {}                      # replaced atomically: only a stranger spoils it
        entries = data if isinstance(data, dict) else {}
        self._cache = (stamp, entries)
        return entries

    @contextlib.contextmanager
    def _changing(self, folder: Path) -> Iterator[dict[str, Any]]:
        """The shared record to change in place, written back when the block ends."""
        with open(folder / ".failing.lock", "ab") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._cache = None
            entries = json.loads(json.dumps(self._read(folder)))   # a copy to change
            yield entries
            atomic.replace_text(folder / FILE, json.dumps(entries, ensure_ascii=False,
                                                          sort_keys=True))

    def _entry(self, error: str) -> dict[str, Any]:
        pid = os.getpid()
        return {"error": error, "pid": pid, "started": _started(pid), "since": time.time()}

    def _put(self, kind: str, key: str, error: str | None) -> bool:
        """Record (or, with None, clear) the entry; whether that changed the record."""
        folder = self.folder()
        if folder is None:
            if error is None:
                return self._unshared.pop((kind, key), None) is not None
            old = self._unshared.get((kind, key))
            self._unshared[(kind, key)] = self._entry(error)
            return old is None or old["error"] != error
        current = self._read(folder).get(kind, {}).get(key)
        if error is None and current is None and (kind, key) not in self._unshared:
            return False
        if error is not None and current is not None and current["error"] == error \
                and _alive(current):
            return False
        try:
            with self._changing(folder) as entries:
                place = entries.setdefault(kind, {})
                current = place.get(key)
                if error is None:
                    place.pop(key, None)
                else:
                    place[key] = self._entry(error)
        except OSError as e:
            if not self._share_failed:
                log.error("cannot share what is failing through %s: %s (this process shows"
                          " its own)", folder, reason(e))
                self._share_failed = True
            if error is None:
                return self._unshared.pop((kind, key), None) is not None or current is not None
            self._unshared[(kind, key)] = self._entry(error)
            return True
        self._share_failed = False
        self._unshared.pop((kind, key), None)
        return current is not None if error is None else True

    def _entries(self, kind: str) -> dict[str, dict[str, Any]]:
        folder = self.folder()
        shared = self._read(folder).get(kind, {}) if folder is not None else {}
        items = {k: v for k, v in shared.items() if _alive(v)}
        items.update({k: v for (c, k), v in self._unshared.items() if c == kind})
        return items

    # -- failed writes ----------------------------------------------------------
    def failed(self, path: Path | str, error: str, *, what: str = "write") -> bool:
        """Record that `path` could not be written; True (and logged) when this is new."""
        key = str(path)
        with self._lock:
            new = (WRITES, key) not in self._mine
            self._mine[(WRITES, key)] = error
            self._put(WRITES, key, error)
        if new:
            log.error("cannot %s %s: %s (retrying; logged again when it works)", what, key, error)
        return new

    def ok(self, path: Path | str) -> None:
        key = str(path)
        with self._lock:
            was = self._mine.pop((WRITES, key), None)
            cleared = self._put(WRITES, key, None)
        if was is not None or cleared:
            log.warning("%s is written again", key)

    def failures(self, under: Path | None = None) -> dict[str, str]:
        """The current failures, optionally only those of files below `under`."""
        return {k: str(v["error"]) for k, v in self.failing(under).items()}

    def failing(self, under: Path | None = None) -> dict[str, dict[str, Any]]:
        """The current failures with the process that saw each (`pid`) and when
        it started (`since`, Unix time)."""
        with self._lock:
            items = self._entries(WRITES)
        if under is None:
            return items
        return {k: v for k, v in items.items() if Path(k).is_relative_to(under)}

    # -- last errors (the index's) ------------------------------------------------
    def set_error(self, key: str, error: str | None) -> None:
        """The last error of `key` (None: it works again), for every worker's /status."""
        with self._lock:
            self._put(ERRORS, key, error)

    def error(self, key: str) -> str | None:
        with self._lock:
            entry = self._entries(ERRORS).get(key)
        return None if entry is None else str(entry["error"])


def _alive(entry: dict[str, Any]) -> bool:
    """Whether the process that recorded `entry` still runs."""
    started = _started(int(entry.get("pid", 0)))
    return started is not None and (not started or not entry.get("started")
                                    or started == entry["started"])


STATE = WriteHealth()
"""The one record (the collector, index, WebSub and leader share it; the
machine's under `feedsvc serve`, see above)."""


def prepare_dir() -> Path:
    """An empty folder for the shared record, named in the environment before any
    worker forks (server.py): systemd's RuntimeDirectory= when there is one,
    else a new folder in /dev/shm, else a new temporary folder."""
    runtime = os.environ.get("RUNTIME_DIRECTORY")
    if runtime:
        path = Path(runtime.split(":")[0]) / "health"
        shutil.rmtree(path, ignore_errors=True)      # an earlier run's pids
        path.mkdir(parents=True, exist_ok=True)
    else:
        shm = Path("/dev/shm")
        where = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
        path = Path(tempfile.mkdtemp(prefix="feedsvc-health-", dir=where))
    os.environ[ENV] = str(path)
    return path


def reason(e: OSError) -> str:
    """`No space left on device`, `Read-only file system`: the reason without the path."""
    return e.strerror or str(e)


# PostgreSQL's error codes that are a file write's reasons (its appendix A:
# class 53, insufficient resources). Its messages follow the server's
# lc_messages, so the code says it, not the words.
SQLSTATE_REASONS = {"53100": "No space left on device"}   # disk_full


def sqlstate(e: BaseException) -> str | None:
    """The SQLSTATE of a PostgreSQL error, or of the one `e` was raised from."""
    seen: BaseException | None = e
    while seen is not None:
        code = getattr(seen, "sqlstate", None)
        if code:
            return str(code)
        seen = seen.__cause__
    return None


def storage_reason(e: Exception, folder: Path | None = None) -> str:
    """The reason a state database could not be written, as a file write says
    it (SQLite's `database or disk is full` and PostgreSQL's SQLSTATE 53100 are
    `No space left on device`), so that every writer of one place reports the
    same cause in /status.

    `folder` is where a SQLite database lives: SQLite says only "unable to open
    database file" on a full or read-only folder, the folder itself says why."""
    if folder is not None:
        try:
            fs = os.statvfs(folder)
        except OSError:
            fs = None
        if fs is not None and fs.f_flag & os.ST_RDONLY:
            return "Read-only file system"
        if fs is not None and fs.f_bavail == 0:
            return "No space left on device"
    if isinstance(e, OSError):
        return reason(e)
    code = sqlstate(e)
    if code is not None:
        # PostgreSQL: "cannot execute INSERT in a read-only transaction" (a hot
        # standby) is no read-only file system; only the code is trusted.
        return SQLSTATE_REASONS.get(code, str(e))
    text = str(e)
    if "disk is full" in text or "No space left" in text:
        return "No space left on device"
    if "readonly" in text or "read-only" in text.lower():
        return "Read-only file system"
    return text
