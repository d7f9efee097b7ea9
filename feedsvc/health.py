"""What failed to be written to disk, per file, in this process: state writes
that fail are reported (`/status`, exit codes), not only logged.

A failure is recorded where it happens (collector, index, WebSub, leader
lock) and cleared by the next success at the same place. Each kind of failure
is logged once when it starts and once when it ends, so a full or read-only
`state_dir` does not flood the log while the service keeps retrying.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

log = logging.getLogger(__name__)


class WriteHealth:
    def __init__(self) -> None:
        self._failures: dict[str, str] = {}
        self._lock = threading.Lock()

    def failed(self, path: Path | str, error: str, *, what: str = "write") -> bool:
        """Record that `path` could not be written; True (and logged) when this is new."""
        key = str(path)
        with self._lock:
            new = key not in self._failures
            self._failures[key] = error
        if new:
            log.error("cannot %s %s: %s (retrying; logged again when it works)", what, key, error)
        return new

    def ok(self, path: Path | str) -> None:
        key = str(path)
        with self._lock:
            was = self._failures.pop(key, None)
        if was is not None:
            log.warning("%s is written again", key)

    def failures(self, under: Path | None = None) -> dict[str, str]:
        """The current failures, optionally only those of files below `under`."""
        with self._lock:
            items = dict(self._failures)
        if under is None:
            return items
        return {k: v for k, v in items.items() if Path(k).is_relative_to(under)}


STATE = WriteHealth()
"""The one record of the process (the collector, index, WebSub and leader share it)."""


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
