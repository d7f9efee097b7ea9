"""Which files under posts_dir a writer is done with: closed after writing
(inotify IN_CLOSE_WRITE) or renamed into place (IN_MOVED_TO), as
inotify_simple reports them.

watchfiles says that a file changed, not that its writer is done: a new post
would have to wait until it has stood still for watch.SETTLE seconds before
it is read (a post written in two halves must never be served half-written),
which is most of a change's latency. A file whose last close or rename is
seen here, and which has not changed since, is complete: the watcher reads
it at once. A file written without a close in between (a writer that keeps
it open) is not complete, whatever the pause, and still waits to settle; so
does everything this cannot see (a folder it could not watch, an overflowed
event queue, a file system without inotify).

One watch per folder under posts_dir (the folders are few, the posts many),
added for new folders as they appear; only the leader's watcher runs one.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from inotify_simple import INotify, flags

log = logging.getLogger(__name__)
MASK = (flags.CLOSE_WRITE | flags.MOVED_TO | flags.CREATE | flags.DELETE_SELF
        | flags.MOVE_SELF | flags.ONLYDIR)
KEEP = 30.0          # seconds a close is remembered (the watcher asks within a second)
# How long a read waits for events before it looks whether to stop: only a stop
# (a posts_dir replaced, shutdown) waits for it, and an idle leader wakes this
# often for nothing (100 ms was an eighth of its idle CPU).
READ_TIMEOUT_MS = 1000
MAX_KEPT = 10_000    # closes remembered at most (a bulk copy closes millions of files)
Key = tuple[int, int]   # (mtime_ns, size)


class Closes:
    """Closes and renames seen under `root`, by path, with the file's stats at
    that moment; a background thread reads them until `close()`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._inotify = INotify(nonblocking=False)
        self._dirs: dict[int, str] = {}
        self._seen: dict[str, tuple[Key, float]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="feedsvc-closes", daemon=True)
        self._thread.start()

    def done(self, path: Path, key: Key | None) -> bool:
        """Whether the writer of `path` is done with it: its last close or rename
        was seen, and its stats `key` are still what they were then."""
        if key is None:
            return False
        with self._lock:
            seen = self._seen.get(str(path))
        return seen is not None and seen[0] == key

    def close(self) -> None:
        self._stop.set()

    # -- the reading thread ------------------------------------------------------
    def _run(self) -> None:
        try:
            self._add_tree(str(self.root))
            while not self._stop.is_set():
                for event in self._inotify.read(timeout=READ_TIMEOUT_MS):
                    self._event(event.wd, event.mask, event.name)
        except Exception as e:  # noqa: BLE001 - without it, posts only wait to settle
            log.warning("not watching for closed post files under %s (%s): new posts are"
                        " read once settled", self.root, e)
        finally:
            self._inotify.close()

    def _event(self, wd: int, mask: int, name: str) -> None:
        if mask & flags.Q_OVERFLOW:
            return          # closes were lost: those files settle instead
        folder = self._dirs.get(wd)
        if folder is None:
            return
        if mask & (flags.DELETE_SELF | flags.MOVE_SELF | flags.IGNORED):
            self._dirs.pop(wd, None)
            return
        path = os.path.join(folder, name)
        if mask & flags.ISDIR:
            if mask & (flags.CREATE | flags.MOVED_TO):
                self._add_tree(path)
            return
        if mask & (flags.CLOSE_WRITE | flags.MOVED_TO):
            try:
                st = os.stat(path, follow_symlinks=False)
            except OSError:
                return
            self._remember(path, (st.st_mtime_ns, st.st_size))

    def _remember(self, path: str, key: Key) -> None:
        now = time.monotonic()
        with self._lock:
            self._seen.pop(path, None)
            self._seen[path] = (key, now)          # insertion order is age order
            while self._seen:
                oldest, (_, when) = next(iter(self._seen.items()))
                if len(self._seen) <= MAX_KEPT and now - when < KEEP:
                    break
                del self._seen[oldest]

    def _add_tree(self, top: str) -> None:
        """A watch on `top` and every folder below it (hidden ones left out, as
        the index leaves them out)."""
        folders = [top]
        while folders and not self._stop.is_set():
            folder = folders.pop()
            try:
                wd = self._inotify.add_watch(folder, MASK)
            except OSError as e:
                log.warning("cannot watch %s for closed files (%s)", folder, e)
                continue
            self._dirs[wd] = folder
            try:
                with os.scandir(folder) as entries:
                    folders += [e.path for e in entries
                                if not e.name.startswith(".") and e.is_dir(follow_symlinks=False)]
            except OSError:
                continue
