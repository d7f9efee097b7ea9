"""The feed service without HTTP: an index of posts, and feed documents cut
from it, rendered once per version and kept in a store.

Both `feedsvc serve` (through app.py) and `feedsvc build` read documents from
here, which is why a static export is byte-identical to what is served.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from feedsvc import dates, writers
from feedsvc.clock import Clock, utcnow
from feedsvc.config import Config
from feedsvc.feeds import FeedKey, Selection, feed_model, select
from feedsvc.index import Index, IndexUnavailable, NotReady, Stale, Views, index_identity
from feedsvc.model import FORMATS
from feedsvc.store import Document, MemoryStore, Store, make_store
from feedsvc.upstream.collector import source_status

log = logging.getLogger(__name__)
MEMO_MAX = 256  # documents of ~200 kB at 20 posts each: the store below bounds the rest
VARIANTS_MAX = 32          # documents with query options kept per process
STALE_TRIES = 5


@dataclass
class ConfigState:
    config: Config
    digest: str
    error: str | None = None


class FeedService:
    """`background=True` (serve): start() returns at once and the leader's
    watcher indexes; feeds answer NotReady until a first indexing is done.
    Otherwise (build, check, tests) start() indexes before it returns."""

    def __init__(self, config: Config, *, clock: Clock = utcnow,
                 store: Store | None = None, background: bool = False) -> None:
        self.clock, self.background = clock, background
        self.store = store or make_store(config.cache.type, config.cache.url)
        self.index = Index(config, clock)
        self.next_index: Index | None = None    # built for a new config, not ready yet
        self.state = ConfigState(config, config_digest(config))
        self._memo: dict[FeedKey, tuple[tuple[Any, ...], Document]] = {}
        self._variants = MemoryStore(VARIANTS_MAX)
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    @property
    def config(self) -> Config:
        return self.state.config

    def start(self) -> None:
        """Catch up with posts_dir, unless the leader does it in the background."""
        if not self.background:
            self.index.restore()

    # -- config reload -------------------------------------------------------
    def reload_config(self, config: Config) -> None:
        """Swap in a new, valid config; the index is kept unless post rules changed.
        An index for new rules serves once it is ready; until then the old one does."""
        if _index_place(config) != _index_place(self.config):
            index = Index(config, self.clock)
            if not self.background:
                index.restore()
            if index.ready:
                self.index, self.next_index = index, None
            else:
                self.index.config, self.next_index = config, index
        else:
            self.index.config = config
            self.next_index = None
        if config.cache != self.config.cache:
            self.store = make_store(config.cache.type, config.cache.url)
        self.state = ConfigState(config, config_digest(config))
        log.info("config reloaded from %s", config.path)

    def writing_index(self) -> Index:
        """The index the leader keeps up to date: the one for the current config."""
        return self.next_index or self.index

    def current_views(self) -> tuple[Index, Views]:
        """The serving index and a snapshot of it, moving to the new index of a
        reloaded config as soon as that is ready."""
        upcoming = self.next_index
        if upcoming is not None and upcoming.ready:
            self.index, self.next_index = upcoming, None
        index = self.index
        return index, index.views()

    @property
    def ready(self) -> bool:
        try:
            return self.current_views()[1].ready
        except IndexUnavailable:
            return False

    def config_failed(self, error: str) -> None:
        self.state.error = error
        log.error("config not reloaded, the last good one keeps serving: %s", error)

    # -- documents -----------------------------------------------------------
    def document(self, key: FeedKey) -> Document:
        """The current document for a feed key (NotFound if there is none,
        NotReady before a first indexing, IndexUnavailable if it cannot be read)."""
        for _ in range(STALE_TRIES):
            try:
                return self._document(key)
            except Stale:
                continue    # the index moved while reading: read the new version
        raise IndexUnavailable("the index changes faster than a document can be read")

    def _document(self, key: FeedKey) -> Document:
        state = self.state
        index, views = self.current_views()
        if not views.ready:
            raise NotReady("the posts are being indexed")
        # The index itself is part of the version: a reloaded config may bring
        # a new index whose generation happens to equal the old one's.
        version = (index, views.version, state.digest)
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
    def status(self) -> dict[str, Any]:
        info: dict[str, Any] = {"index": self.index.describe()}
        try:
            info.update(self._feed_status())
        except (NotReady, IndexUnavailable, Stale) as e:
            info["index"]["error"] = str(e)
        return {
            **info,
            "config": str(self.config.path),
            "config_error": self.state.error,
            "cache": {**self.store.describe(), "query_variants": len(self._variants)},
            "sources": source_status(self.config),
        }

    def _feed_status(self) -> dict[str, Any]:
        _, views = self.current_views()
        cats = {}
        for slug in self.config.categories:
            newest = views.posts("category", slug, 0, 1)
            docs = ({fmt: self.document(FeedKey("category", slug, fmt)) for fmt in FORMATS}
                    if views.ready else {})
            cats[slug] = {
                "posts": views.count("category", slug),
                "newest": dates.rfc3339(newest[0].date) if newest else None,
                "last_modified": dates.rfc3339(docs["rss"].last_modified) if docs else None,
                "etags": {fmt: doc.etag for fmt, doc in docs.items()},
            }
        return {
            "categories": cats,
            "posts": views.total(),
            "skipped": [{"file": f, "reason": r} for f, r in self.index.problem_list()],
        }


def _index_place(config: Config) -> tuple[Any, ...]:
    """What picks the index database: the reading rules and where it is kept."""
    return (index_identity(config), config.state_dir, config.index)


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
