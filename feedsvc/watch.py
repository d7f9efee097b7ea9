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
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

import watchfiles

from feedsvc.config import load_config
from feedsvc.errors import ConfigError
from feedsvc.index import IndexUnavailable
from feedsvc.posts import post_kind
from feedsvc.service import FeedService

log = logging.getLogger(__name__)
# watchfiles logs every batch at INFO; ours says what the changes did instead.
logging.getLogger("watchfiles").setLevel(logging.WARNING)
RETRY = 2.0


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
        self.stop_event = threading.Event()
        self._posts_moved = threading.Event()
        self._handling = threading.Lock()
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
               only: Path | None = None) -> None:
        # With `only`, other files in the folder (a log file next to config.yaml,
        # say) are dropped before they wake anything up.
        keep = None if only is None else (lambda _change, path: path == str(only))
        watching = False
        for changes in watchfiles.watch(
            root, debounce=self.debounce_ms, step=100, stop_event=stop, recursive=recursive,
            watch_filter=keep, raise_interrupt=False, yield_on_timeout=True, rust_timeout=1000,
        ):
            if not watching:
                # The first yield (a change, or a quiet second) means inotify is
                # set up: catch up with what changed between the first reading
                # and now, which no event will ever report.
                watching = True
                catch_up()
            if changes:
                self.handle({Path(p) for _, p in changes})

    def _watch_posts(self) -> None:
        while not self.stop_event.is_set() and not self.is_leader():
            self.stop_event.wait(self.retry)
        while not self.stop_event.is_set():
            self._posts_moved.clear()
            root = self.service.config.posts_dir
            try:
                self._watch(root, recursive=True, stop=_Either(self.stop_event, self._posts_moved),
                            catch_up=lambda: self.handle([]))
            except Exception as e:  # noqa: BLE001 - the watcher must survive anything
                log.error("cannot watch %s (%s); rescanning, then watching again in %.0f s",
                          root, e, RETRY)
                self.handle([])
                self.stop_event.wait(RETRY)

    def _watch_config(self) -> None:
        while not self.stop_event.is_set():
            path = self.service.config.path
            folder = path.parent
            try:
                self._watch(folder, recursive=False, stop=_Either(self.stop_event), only=path,
                            catch_up=self.catch_up_config)
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
        if service.config.path in paths:
            self.reload_config()
        config = service.config
        rels, full_scan = set(), not paths
        for path in paths:
            if path == config.path or not path.is_relative_to(config.posts_dir):
                continue
            rel = path.relative_to(config.posts_dir).as_posix()
            if any(part.startswith(".") for part in rel.split("/")):
                continue
            if post_kind(path.name) is not None:
                rels.add(rel)
            elif path.is_dir() or self._was_folder(rel):
                full_scan = True  # a folder created, moved or deleted: rescan the stats
        if not self.is_leader():
            # The leader writes the index; this worker only reloads its config. One
            # that lost the lead (its database session broke) catches up in full
            # when it leads again, and keeps asking while a change waits.
            self._was_leading = False
            if self._behind:
                self._retry_later()
            return
        if not self._was_leading:
            full_scan, self._was_leading = True, True
        index = service.writing_index()
        try:
            changed = index.scan() if full_scan else index.update(rels)
        except IndexUnavailable as e:
            index.last_error = str(e)
            log.error("cannot update the post index (%s); trying again at the next change"
                      " or in %.0f s", e, RETRY)
            self._behind = True
            self._retry_later()
            return
        except Exception as e:  # noqa: BLE001
            index.last_error = f"{type(e).__name__}: {e}"
            log.exception("updating the post index failed")
            self._behind = True
            self._retry_later()
            return
        index.last_error = None
        self._behind = False
        if changed:
            log.info("%d post file(s) changed: %s", len(changed), ", ".join(sorted(changed)[:5]))

    def _retry_later(self) -> None:
        """A failed update (database locked, disk full) is redone by a rescan."""
        def again() -> None:
            if not self.stop_event.wait(RETRY):
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
