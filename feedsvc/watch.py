"""Live reload: post files and config.yaml watched with inotify (watchfiles),
so that a change reaches the feeds within a second without re-reading, or
even re-stat-ing, the files that did not change.

Two watches: posts_dir recursively, and the config file's folder
non-recursively (watching that folder recursively could mean watching a whole
checkout, .venv and .git included; watching the file itself would lose it
when an editor replaces it by a rename). Every worker watches its config;
only the leader (`is_leader`, leader.py) watches posts_dir and writes the
shared index: the others see its changes through the index's generation.
A worker that becomes the leader (the old one died) catches up first.

posts_dir itself may go and come back (`rm -rf` and a copy, a rename-swap
deploy, a symlink switched to a new release): inotify watches an inode, not a
path, so the watch would go on following the old folder or nothing at all.
The folder's identity (device, inode) is checked at every wake-up (10 times a
second); when it changes, the watch starts again on what the path now is,
after a full rescan (issue 15).

A new post is read only once it has settled: its size and mtime unchanged
since the watcher last looked, and its mtime SETTLE seconds old, so that a post
written in two halves is not served half-written. (A post already in the
index is read at once and again when settled: see `_settled`.) A post whose
writer closed it (or renamed it into place) and that has not changed since is
complete at once, whatever the time (closes.py): that is how a new post is
served in a tenth of a second rather than half a second and more.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path

import watchfiles

from feedsvc import health
from feedsvc.closes import Closes
from feedsvc.config import load_config
from feedsvc.errors import ConfigError
from feedsvc.index import IndexUnavailable
from feedsvc.posts import post_kind
from feedsvc.service import FeedService

log = logging.getLogger(__name__)
# watchfiles logs every batch at INFO; ours says what the changes did instead.
logging.getLogger("watchfiles").setLevel(logging.WARNING)
RETRY = 2.0
SETTLE = 0.5          # seconds a new post must stay unchanged before it is read
WAKE_MS = 100         # the watch wakes up at least this often (settling, posts_dir identity)
# How often watchfiles looks for events (it sleeps this long, then takes the GIL
# to ask whether to stop): posts_dir's is a new post's latency; config.yaml's
# need only be seconds (DESIGN.md) and runs in every worker, idle or not: at
# 50 ms it was a third of an idle server's CPU (docs/PERFORMANCE.md).
POSTS_STEP_MS = 50
CONFIG_STEP_MS = 500
CONFIG_WAKE_MS = 2000


class _Either:
    """Stops a watch when the watcher stops or the posts folder moves."""

    def __init__(self, *events: threading.Event) -> None:
        self.events = events

    def is_set(self) -> bool:
        return any(e.is_set() for e in self.events)


class Watcher:
    def __init__(self, service: FeedService, *, debounce_ms: int = 150,
                 is_leader: Callable[[], bool] | None = None, retry: float = 1.0) -> None:
        self.service, self.debounce_ms, self.retry = service, debounce_ms, retry
        self.is_leader = is_leader or (lambda: True)
        self._was_leading = False   # the last handle() led: else the next one rescans in full
        self._behind = False        # a change is waiting for the index (a failed update)
        self._failing: str | None = None   # the cause of the failing updates, once logged
        self.stop_event = threading.Event()
        self._posts_moved = threading.Event()
        self._handling = threading.Lock()
        self._retry_lock = threading.Lock()
        self._retry_pending = False
        # rel → (size and mtime when last seen, monotonic time of that sighting)
        self._settling: dict[str, tuple[tuple[int, int] | None, float]] = {}
        self._closes: Closes | None = None   # while posts_dir is watched (leader only)
        # _settling is the watch thread's, but for the catch-up thread's additions.
        self._settling_lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._watch_posts, name="feedsvc-watch-posts", daemon=True),
            threading.Thread(target=self._watch_config, name="feedsvc-watch-config", daemon=True),
        ]

    def start(self) -> Watcher:
        for thread in self.threads:
            thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()

    def _watch(self, root: Path, *, recursive: bool, stop: _Either, catch_up: Callable[[], None],
               only: Path | None = None, still: Callable[[], bool] = lambda: True,
               awake: Callable[[], None] = lambda: None, step_ms: int = POSTS_STEP_MS,
               wake_ms: int = WAKE_MS) -> None:
        """Watch until `stop` is set or `still()` turns false (the folder was replaced)."""
        # With `only`, other files in the folder (a log file next to config.yaml,
        # say) are dropped before they wake anything up.
        keep = None if only is None else (lambda _change, path: path == str(only))
        watching = False
        for changes in watchfiles.watch(
            root, debounce=self.debounce_ms, step=step_ms, stop_event=stop, recursive=recursive,
            watch_filter=keep, raise_interrupt=False, yield_on_timeout=True, rust_timeout=wake_ms,
        ):
            if not watching:
                # The first yield (a change, or a quiet second) means inotify is
                # set up: catch up with what changed between the first reading
                # and now, which no event will ever report.
                watching = True
                catch_up()
            if changes:
                self.handle({Path(p) for _, p in changes})
            elif self._settling:
                self.flush_settling()
            awake()
            if not still():
                return

    def _watch_posts(self) -> None:
        while not self.stop_event.is_set() and not self.is_leader():
            self.stop_event.wait(self.retry)
        missing_logged = False
        while not self.stop_event.is_set():
            self._posts_moved.clear()
            root = self.service.config.posts_dir
            identity = _identity(root)
            if identity is None:
                # Gone (rm -rf, a deploy in progress): the feeds say so (rescan:
                # empty) and the watch starts again as soon as it is back.
                if not missing_logged:
                    log.error("posts_dir %s is missing; watching for it to come back", root)
                    missing_logged = True
                self.handle([])
                self.stop_event.wait(WAKE_MS / 1000)
                continue
            if missing_logged:
                log.warning("posts_dir %s is back", root)
                missing_logged = False
            try:
                self._closes = _closes(root)
                try:
                    self._watch(root, recursive=True,
                                stop=_Either(self.stop_event, self._posts_moved),
                                catch_up=self._catch_up_posts,
                                still=partial(_is, root, identity),
                                awake=self._rebuild_if_damaged)
                finally:
                    closes, self._closes = self._closes, None
                    if closes is not None:
                        closes.close()
            except Exception as e:  # noqa: BLE001 - the watcher must survive anything
                log.error("cannot watch %s (%s); rescanning, then watching again in %.0f s",
                          root, e, RETRY)
                self.handle([])
                self.stop_event.wait(RETRY)

    def _rebuild_if_damaged(self) -> None:
        """A request found the index file spoilt (Index.damaged): the leader
        rebuilds it now rather than at the next change, which may be days off
        while every page its connections do not hold answers 503."""
        if self.service.writing_index().damaged and self.is_leader():
            self.handle([])

    def _catch_up_posts(self) -> None:
        """Rescan the stats once the watch is in place (changes made before it),
        in a thread of its own: at a million posts that takes tens of seconds,
        and the changes reported meanwhile are read at once (Index.scan only
        compares while they are)."""
        with self._handling:
            if not self.is_leader():
                return
            # This rescan is the full one a new leader owes: the next change is
            # read on its own, not with another full rescan.
            self._was_leading = True

        def run() -> None:
            started = time.monotonic()
            if self._update(set(), True):
                # Said once it is over: at a million posts it takes tens of CPU
                # seconds, and an idle server is idle only after it (bench/measures.py).
                log.info("caught up with posts_dir in %.1f s", time.monotonic() - started)

        threading.Thread(target=run, name="feedsvc-catch-up", daemon=True).start()

    def _watch_config(self) -> None:
        while not self.stop_event.is_set():
            path = self.service.config.path
            folder = path.parent
            try:
                self._watch(folder, recursive=False, stop=_Either(self.stop_event), only=path,
                            catch_up=self.catch_up_config, step_ms=CONFIG_STEP_MS,
                            wake_ms=CONFIG_WAKE_MS)
            except Exception as e:  # noqa: BLE001
                log.error("cannot watch %s (%s); trying again in %.0f s", folder, e, RETRY)
                self.stop_event.wait(RETRY)

    def handle(self, paths: Iterable[Path]) -> None:
        """React to changed paths: reload the config, re-read changed posts.
        No paths at all means "something may have changed": rescan the stats."""
        with self._handling:
            self._handle(set(paths))

    def _handle(self, paths: set[Path]) -> None:
        service = self.service
        reloaded = service.config.path in paths or not paths.isdisjoint(service.config.also_read)
        if reloaded:
            self.reload_config()
        config = service.config
        rels, full_scan = set(), not paths
        for path in paths:
            if path == config.path or not path.is_relative_to(config.posts_dir):
                continue
            rel = path.relative_to(config.posts_dir).as_posix()
            if any(part.startswith(".") or part in config.skip_dirs for part in rel.split("/")):
                continue
            if config.jekyll_reading is not None and config.jekyll_reading.rejects_folder(rel):
                continue
            if post_kind(path.name, config.markdown_ext) is not None:
                rels.add(rel)
            elif path.is_dir() or self._was_folder(rel):
                full_scan = True  # a folder created, moved or deleted: rescan the stats
        if not self.is_leader():
            # The leader writes the index; this worker only reloads its config. One
            # that lost the lead (its database session broke) catches up in full
            # when it leads again, and keeps asking until it does: changes made
            # meanwhile send no second event, and the lead may come back from
            # another thread (the scheduler's) without this one hearing of it.
            if self._was_leading:
                self._behind = True
            self._was_leading = False
            if self._behind:
                self._retry_later()
            return
        if not self._was_leading:
            full_scan, self._was_leading = True, True
        if full_scan:
            self._settling.clear()
        else:
            rels = self._settled(rels, config.posts_dir)
            if not rels and not reloaded:
                return
        # After a reload, even without a changed post: the index may have to follow
        # the config (ties between copies of a story go by its order of categories).
        self._update(rels, full_scan)

    def flush_settling(self) -> None:
        """Read the new posts that have settled since their last event."""
        with self._handling:
            if not self.is_leader():
                self._settling.clear()
                return
            rels = self._settled(set(), self.service.config.posts_dir)
            if rels:
                self._update(rels, False)

    def _update(self, rels: set[str], full_scan: bool) -> bool:
        """Bring the index up to date; False if that failed (a retry is on its way)."""
        index = self.service.writing_index()
        try:
            changed = index.scan() if full_scan else index.update(rels)
        except IndexUnavailable as e:
            cause = health.storage_reason(e)
            if cause != self._failing:
                # Once per cause, not at every retry: a disk full for an hour is
                # one line, not 1,800 (health.py does the same for state writes).
                # The cause, not the message: PostgreSQL names the file it could
                # not extend, another one at each try.
                log.error("cannot update the post index (%s); trying again at the next"
                          " change or every %.0f s, logged again when it works", e, RETRY)
            index.last_error, self._failing = str(e), cause
            self._behind = True
            self._retry_later()
            return False
        except Exception as e:  # noqa: BLE001
            cause = f"{type(e).__name__}: {e}"
            if cause != self._failing:
                log.exception("updating the post index failed")
            index.last_error = self._failing = cause
            self._behind = True
            self._retry_later()
            return False
        if self._failing is not None:
            log.warning("the post index is updated again")
        index.last_error = self._failing = None
        self._behind = False
        if changed:
            log.info("%d post file(s) changed: %s", len(changed), ", ".join(sorted(changed)[:5]))
        if full_scan:
            # A rescan reads what it finds: files changed a moment ago may be
            # half-written, so they are read again once they have settled.
            now, root = time.monotonic(), self.service.config.posts_dir
            for rel in changed:
                key = _stat_key(root / rel)
                if key is not None and time.time_ns() - key[0] < SETTLE * 1e9:
                    with self._settling_lock:
                        self._settling[rel] = (key, now)
        return True

    def _settled(self, changed: set[str], root: Path) -> set[str]:
        """Of the files just changed and those still settling, the ones to read now:
        gone, or unchanged since last seen and last modified SETTLE seconds ago
        (or waited for that long: an mtime in the future must not stall it)."""
        now = time.monotonic()
        known = self._known(changed)
        ready = set()
        with self._settling_lock:
            closes = self._closes
            for rel in changed:
                self._settling[rel] = (_stat_key(root / rel), now)
                if rel in known:
                    # A post already served is read at once, and again once it has
                    # settled: the old metadata beside a new body is worse than either.
                    ready.add(rel)
            for rel, (key, since) in list(self._settling.items()):
                current = _stat_key(root / rel)
                if closes is not None and closes.done(root / rel, current):
                    ready.add(rel)                          # its writer is done with it
                    del self._settling[rel]
                elif current != key:
                    self._settling[rel] = (current, now)    # still being written: wait again
                elif (current is None or now - since >= 2 * SETTLE
                        or (rel not in changed and time.time_ns() - current[0] >= SETTLE * 1e9)):
                    ready.add(rel)
                    del self._settling[rel]
        return ready

    def _known(self, rels: set[str]) -> set[str]:
        if not rels:
            return set()
        try:
            return self.service.writing_index().known(rels)
        except IndexUnavailable:
            return set(rels)       # cannot tell: read now, as before

    def _retry_later(self) -> None:
        """A failed update (database locked, disk full) or a lost lead is redone
        by a rescan. One retry waits at a time: every event of a burst would
        otherwise start a chain of its own."""
        with self._retry_lock:
            if self._retry_pending:
                return
            self._retry_pending = True

        def again() -> None:
            stopped = self.stop_event.wait(RETRY)
            with self._retry_lock:
                self._retry_pending = False
            if not stopped:
                self.handle([])
        threading.Thread(target=again, name="feedsvc-index-retry", daemon=True).start()

    def _was_folder(self, rel: str) -> bool:
        try:
            return self.service.writing_index().knows_under(rel)
        except IndexUnavailable:
            return True   # cannot tell: a rescan finds out

    def catch_up_config(self) -> None:
        """Reload config.yaml if it is not what this process read at start."""
        with self._handling:
            try:
                current = load_config(self.service.config.path)
            except (ConfigError, OSError):
                current = None
            if current != self.service.config:
                self.reload_config()

    def reload_config(self) -> None:
        service = self.service
        old_posts_dir = service.config.posts_dir
        try:
            config = load_config(service.config.path)
        except ConfigError as e:
            service.config_failed(str(e))
            return
        except OSError as e:  # the file is gone or unreadable for a moment (editor swap)
            service.config_failed(f"{service.config.path}: {e}")
            return
        service.reload_config(config)
        if config.posts_dir != old_posts_dir:
            self._posts_moved.set()


def _closes(root: Path) -> Closes | None:
    try:
        return Closes(root)
    except OSError as e:    # no inotify instance left (fs.inotify.max_user_instances)
        log.warning("cannot watch %s for closed files (%s): new posts are read once settled",
                    root, e)
        return None


def _is(path: Path, identity: tuple[int, int]) -> bool:
    return _identity(path) == identity


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of what `path` names now (symlinks followed), None if nothing."""
    st = _stat(path)
    return None if st is None else (st.st_dev, st.st_ino)


def _stat_key(path: Path) -> tuple[int, int] | None:
    """(mtime, size) of `path` now, None if nothing: what says a file changed."""
    st = _stat(path)
    return None if st is None else (st.st_mtime_ns, st.st_size)


def _stat(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None
