"""Live reload: post files and config.yaml watched with inotify (watchfiles),
so that a change reaches the feeds within a second without re-reading, or
even re-stat-ing, the files that did not change."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from pathlib import Path

import watchfiles

from feedsvc.config import load_config
from feedsvc.errors import ConfigError
from feedsvc.posts import post_kind
from feedsvc.service import FeedService

log = logging.getLogger(__name__)
# watchfiles logs every batch at INFO: with a log file inside the watched folder
# each line is itself a change, and the watcher spins on its own output.
logging.getLogger("watchfiles").setLevel(logging.WARNING)


class Watcher:
    def __init__(self, service: FeedService, *, debounce_ms: int = 150) -> None:
        self.service, self.debounce_ms = service, debounce_ms
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="feedsvc-watch", daemon=True)

    def start(self) -> Watcher:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()

    def _roots(self) -> list[Path]:
        config = self.service.config
        # config.yaml's folder (for the config) and posts_dir, unless it lies inside.
        if config.posts_dir.is_relative_to(config.root):
            return [config.root]
        return [config.root, config.posts_dir]

    def _run(self) -> None:
        while not self.stop_event.is_set():
            roots = self._roots()
            try:
                for changes in watchfiles.watch(
                    *roots, debounce=self.debounce_ms, step=30, stop_event=self.stop_event,
                    watch_filter=None, raise_interrupt=False, yield_on_timeout=False,
                ):
                    self.handle({Path(p) for _, p in changes})
                    if self._roots() != roots:
                        break  # posts_dir moved with a config edit: watch the new one
            except Exception:  # noqa: BLE001 - the watcher must survive anything
                log.exception("file watcher failed; falling back to a rescan every 2 s")
                while not self.stop_event.wait(2.0):
                    self.handle([])

    def handle(self, paths: Iterable[Path]) -> None:
        """React to changed paths: reload the config, re-read changed posts."""
        service = self.service
        config = service.config
        paths = set(paths)
        if config.path in paths:
            self.reload_config()
            config = service.config
        posts_dir = config.posts_dir
        rels = set()
        full_scan = not paths
        for path in paths:
            if not path.is_relative_to(posts_dir) or path == config.path:
                continue
            rel = path.relative_to(posts_dir).as_posix()
            if any(part.startswith(".") for part in rel.split("/")):
                continue
            if post_kind(path.name) is None:
                full_scan = True  # a folder created, moved or deleted: rescan stats
            else:
                rels.add(rel)
        try:
            changed = service.index.scan() if full_scan else service.index.update(rels)
            if changed:
                log.info("%d post file(s) changed", len(changed))
                service.index.save_state()
        except Exception:  # noqa: BLE001
            log.exception("updating the post index failed")

    def reload_config(self) -> None:
        service = self.service
        try:
            config = load_config(service.config.path)
        except ConfigError as e:
            service.config_failed(str(e))
            return
        service.reload_config(config)
