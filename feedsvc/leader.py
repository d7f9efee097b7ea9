"""One leader among the worker processes of a machine, for work that must
happen once (polling upstream sources, WebSub pings) while every worker serves.

The leader is whichever process holds a non-blocking `fcntl.flock` on a file
in `state_dir`. The kernel drops the lock when that process dies, however it
dies, and the next worker that tries takes over: no heartbeats, no stale
locks, nothing to clean up.

API (create_app makes one and keeps it at `app.extensions["feedsvc.leader"]`):

    leader = Leader(config.state_dir / "leader.lock")
    leader.acquire() -> bool          # non-blocking; True while this process leads
    leader.is_leader -> bool          # without trying
    leader.release()                  # give up leadership (tests, shutdown)
    leader.describe() -> dict         # for /status: this pid, is_leader, the leader's pid

The work itself is scheduled by schedule.py, which asks `acquire()` each
tick until it leads (so another worker takes over within a tick when the
leader dies).

Acquire in the worker, not in gunicorn's master: a forked child shares its
parent's lock. A child forked from a leader closes its copy of the lock's
file descriptor at once (so the lock goes when the leader dies, whatever the
child does) and is not a leader; its `acquire()` competes like anyone's.

One machine only: several instances on several machines each have their own
leader (flock does not cross hosts; neither should upstream polling state,
which lives in the same state_dir).
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import weakref
from functools import partial
from pathlib import Path

from feedsvc import health, metrics

log = logging.getLogger(__name__)


class Leader:
    def __init__(self, lock_path: Path, role: str = "leader") -> None:
        """`role`: what the holder does, for the log; only "leader" (the
        process that polls and pings) is the leader of /metrics and /status."""
        self.lock_path = Path(lock_path)
        self.role = role
        self._fd: int | None = None
        self._pid: int | None = None      # the process that holds _fd's lock
        self._lock = threading.Lock()
        os.register_at_fork(after_in_child=partial(_after_fork, weakref.ref(self)))

    def _after_fork(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self._fd = self._pid = None
        self._lock = threading.Lock()   # it may have been held by a thread of the parent

    @property
    def is_leader(self) -> bool:
        return self._fd is not None and self._pid == os.getpid()

    def acquire(self) -> bool:
        """Take the lock if no other process holds it; True while this process leads.

        A full or read-only state_dir must not stop the election for good
        (issue 15): an existing lock file is locked read-only if it cannot be
        opened for writing, the pid is informational (not writing it keeps
        the lock), and a lock file that cannot be made is reported once and
        tried again on every call, so leadership comes back with the space.
        """
        with self._lock:
            if self._fd is not None:
                return True
            fd = self._open()
            if fd is None:
                return False
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                return False
            self._fd, self._pid = fd, os.getpid()
            self._write_pid(fd)
        if self.role == "leader":
            metrics.set_leader(True)
        log.info("process %d is the %s (%s)", os.getpid(), self.role, self.lock_path)
        return True

    def _open(self) -> int | None:
        try:
            self.lock_path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            try:   # read-only state_dir: flock needs no write access to the file
                fd = os.open(self.lock_path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                health.STATE.failed(self.lock_path, health.reason(e), what="open the leader lock")
                return None
        health.STATE.ok(self.lock_path)
        return fd

    def _write_pid(self, fd: int) -> None:
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError as e:
            # Only `leader_pid()` reads it; the lock itself is held.
            log.warning("leader lock %s held, but its pid not written: %s", self.lock_path,
                        health.reason(e))

    def release(self) -> None:
        with self._lock:
            if self._fd is not None and self._pid == os.getpid():
                fcntl.flock(self._fd, fcntl.LOCK_UN)
                os.close(self._fd)
                if self.role == "leader":
                    metrics.set_leader(False)
            self._fd = self._pid = None

    def leader_pid(self) -> int | None:
        """The pid written by the current leader (informational: it may have died)."""
        try:
            text = self.lock_path.read_text().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def describe(self) -> dict[str, object]:
        return {"pid": os.getpid(), "is_leader": self.is_leader,
                "leader_pid": self.leader_pid()}


def _after_fork(ref: weakref.ref[Leader]) -> None:
    leader = ref()
    if leader is not None:
        leader._after_fork()
