"""The feed service without HTTP: an index of posts, and feed documents cut
from it, rendered once per version and kept in a store.

Both `feedsvc serve` (through app.py) and `feedsvc build` read documents from
here, which is why a static export is byte-identical to what is served.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from feedsvc import dates, health, redact, writers
from feedsvc.clock import Clock, utcnow
from feedsvc.config import Config
from feedsvc.feeds import FeedKey, Selection, feed_model, select
from feedsvc.index import Index
from feedsvc.model import FORMATS
from feedsvc.store import Document, MemoryStore, Store, make_store
from feedsvc.upstream.collector import source_status

log = logging.getLogger(__name__)
MEMO_MAX = 256  # documents of ~200 kB at 20 posts each: the store below bounds the rest
VARIANTS_MAX = 32          # documents with query options kept per process


def index_identity(config: Config) -> tuple[Any, ...]:
    """The parts of the config that change how posts are read (not how feeds look)."""
    return (config.posts_dir, config.site.url, config.site.timezone, config.permalink,
            tuple(sorted((s, c.timezone) for s, c in config.categories.items())))


@dataclass
class ConfigState:
    config: Config
    digest: str
    error: str | None = None


class FeedService:
    def __init__(self, config: Config, *, clock: Clock = utcnow,
                 store: Store | None = None) -> None:
        self.clock = clock
        self.store = store or make_store(config.cache.type, config.cache.url)
        self.index = Index(config, clock)
        self.state = ConfigState(config, config_digest(config))
        self._memo: dict[FeedKey, tuple[tuple[Index, int, str], Document]] = {}
        self._variants = MemoryStore(VARIANTS_MAX)
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    @property
    def config(self) -> Config:
        return self.state.config

    def start(self) -> None:
        """Read every post, starting from the saved index when there is one."""
        self.index.restore()

    # -- config reload -------------------------------------------------------
    def reload_config(self, config: Config) -> None:
        """Swap in a new, valid config; the index is kept unless post rules changed."""
        if index_identity(config) != index_identity(self.config):
            index = Index(config, self.clock)
            index.restore()
            self.index = index
        else:
            self.index.config = config
        if config.cache != self.config.cache:
            self.store = make_store(config.cache.type, config.cache.url)
        self.state = ConfigState(config, config_digest(config))
        log.info("config reloaded from %s", config.path)

    def config_failed(self, error: str) -> None:
        self.state.error = error
        log.error("config not reloaded, the last good one keeps serving: %s", error)

    # -- documents -----------------------------------------------------------
    def document(self, key: FeedKey) -> Document:
        """The current document for a feed key (NotFound if there is none)."""
        index, state = self.index, self.state
        # The generation is read before the views: if the watcher changes the
        # index in between, the memo entry is filed one version behind and
        # recomputed on the next request, never kept stale.
        while True:
            generation = index.generation
            views = index.views()   # may itself move the generation (a future post's time came)
            if index.generation == generation:
                break
        # The index itself is part of the version: a reloaded config may bring
        # a new index whose generation happens to equal the old one's.
        version = (index, generation, state.digest)
        memo = self._memo.get(key)
        if memo is not None and memo[0] == version:
            return memo[1]
        sel = select(key, views, state.config)
        digest = _digest(state.digest + "\n" + sel.fingerprint())
        if key.query():
            # Query options make documents without number (each ?filter= term is
            # another): a small LRU of their own, never the memo or the shared store,
            # so that no client can fill memory or Redis with them (SECURITY.md S11).
            return self._variants.get(digest) or self._render(digest, sel, state.config,
                                                               self._variants)
        doc = self.store.get(digest) or self._render(digest, sel, state.config, self.store)
        if len(self._memo) >= MEMO_MAX:
            self._memo.clear()
        self._memo[key] = (version, doc)
        return doc

    def _render(self, digest: str, sel: Selection, config: Config, store: Store) -> Document:
        # One rendering per version at a time; the others wait and reuse it.
        with self._locks_guard:
            lock = self._locks.setdefault(digest, threading.Lock())
        with lock:
            doc = store.get(digest)
            if doc is None:
                doc = render_document(sel, config)
                store.put(digest, doc)
        with self._locks_guard:
            self._locks.pop(digest, None)
        return doc

    # -- status --------------------------------------------------------------
    def status(self, *, admin: bool = False) -> dict[str, Any]:
        """What /status shows. Anyone sees the feeds' health; only the admin
        (admin.py) sees sources, paths and the cache's address. Credentials
        never appear, not even to the admin (redact.py)."""
        views = self.index.views()
        cats = {}
        for slug in self.config.categories:
            posts = views.categories.get(slug, [])
            docs = {fmt: self.document(FeedKey("category", slug, fmt)) for fmt in FORMATS}
            cats[slug] = {
                "posts": len(posts),
                "newest": dates.rfc3339(posts[0].date) if posts else None,
                "last_modified": dates.rfc3339(docs["rss"].last_modified),
                "etags": {fmt: doc.etag for fmt, doc in docs.items()},
            }
        shown = redact.text if admin else redact.public_text
        sources = source_status(self.config)
        cache = {**self.store.describe(), "query_variants": len(self._variants)}
        data: dict[str, Any] = {
            "categories": cats,
            "posts": len(views.all),
            "skipped": [{"file": f, "reason": shown(r)} for f, r in self.index.problem_list()],
            "config_error": shown(self.state.error) if self.state.error else None,
            "cache": cache if admin else {k: v for k, v in cache.items() if k != "url"},
            "source_health": {"total": len(sources),
                              "failing": sum(1 for s in sources if s["last_error"])},
            "state_writes": self._write_failures(shown),
        }
        if admin:
            data["config"] = str(self.config.path)
            data["posts_dir"] = str(self.config.posts_dir)
            data["state_dir"] = str(self.config.state_dir)
            data["sources"] = sources
        return data


    def _write_failures(self, shown: Callable[[str], str]) -> dict[str, Any]:
        """Files of this site that this process currently fails to write (health.py)."""
        config = self.config
        failures = {**health.STATE.failures(config.state_dir),
                    **health.STATE.failures(config.posts_dir)}
        return {"ok": not failures,
                "failing": [{"file": shown(path), "error": error}
                            for path, error in sorted(failures.items())]}


def render_document(sel: Selection, config: Config) -> Document:
    body = writers.build(feed_model(sel, config), sel.key.fmt)
    return Document.of(body, FORMATS[sel.key.fmt], sel.modified)


def config_digest(config: Config) -> str:
    """What in the config shapes the documents: not where the files are, so
    that instances with the same site mounted at other paths share documents."""
    here = Path(".")
    return _digest(repr(replace(config, path=here, posts_dir=here, state_dir=here)))


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
