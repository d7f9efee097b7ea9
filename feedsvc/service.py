"""The feed service without HTTP: an index of posts, and feed documents cut
from it, rendered once per version and kept in a store.

Both `feedsvc serve` (through app.py) and `feedsvc build` read documents from
here, which is why a static export is byte-identical to what is served.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from typing import Any

from feedsvc import metrics, writers
from feedsvc.clock import Clock, utcnow
from feedsvc.config import Config
from feedsvc.feeds import FeedKey, Selection, feed_model, select
from feedsvc.index import Index, IndexUnavailable, NotReady, Stale, index_identity
from feedsvc.model import FORMATS
from feedsvc.store import Document, MemoryStore, Store, make_store
from feedsvc.version import Served, Snapshot, served, take

log = logging.getLogger(__name__)
# The current document of each feed key, in front of the store (which may be
# Redis); bounded in count and bytes, like the query variants (documents with
# query options, a small LRU of their own: SECURITY.md S11).
MEMO_MAX, MEMO_BYTES = 256, 16 * 2**20
VARIANTS_MAX, VARIANTS_BYTES = 32, 8 * 2**20


STALE_TRIES = 5


class FeedService:
    """`background=True` (serve): start() returns at once and the leader's
    watcher indexes; feeds answer NotReady until a first indexing is done.
    Otherwise (build, check, tests) start() indexes before it returns."""

    def __init__(self, config: Config, *, clock: Clock = utcnow,
                 store: Store | None = None, background: bool = False) -> None:
        self.clock, self.background = clock, background
        self.store = store or make_store(config.cache.type, config.cache.url)
        self.state: Served = served(config, Index(config, clock))
        self.next_state: Served | None = None   # a reloaded config's index, not ready yet
        self.config_error: str | None = None
        self.index_error: str | None = None      # why the index cannot be read right now
        self._last: Snapshot | None = None        # the last snapshot read
        self._memo = MemoryStore(MEMO_MAX, MEMO_BYTES)       # under (feed key, version)
        self._variants = MemoryStore(VARIANTS_MAX, VARIANTS_BYTES)
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    @property
    def config(self) -> Config:
        return self.state.config

    @property
    def index(self) -> Index:
        return self.state.index

    def snapshot(self) -> Snapshot:
        """What the documents of this moment depend on (version.py): take it once
        per request and pass it to everything that answers the request. A
        reloaded config's new index is served from the first snapshot after it
        is ready; until then the old one serves."""
        upcoming = self.next_state
        if upcoming is not None:
            try:
                if upcoming.index.ready:
                    self.state, self.next_state = upcoming, None
            except IndexUnavailable:
                pass
        try:
            snap = take(self.state)
        except IndexUnavailable as e:
            # The index cannot be read (PostgreSQL unreachable, ...): what this
            # process made at the last version it saw still serves; anything
            # else answers 503 (reading through the old views fails) until it is back.
            last = self._last
            if last is None or last.index_id != self.state.index_id:
                raise
            if self.index_error is None:
                log.error("the index cannot be read (%s): serving the documents of the last"
                          " version until it can", e)
            self.index_error = str(e)
            return last
        if self.index_error is not None:
            log.warning("the index can be read again")
            self.index_error = None
        self._last = snap
        return snap

    def start(self) -> None:
        """Catch up with posts_dir, unless the leader does it in the background."""
        if not self.background:
            self.index.restore()

    @property
    def ready(self) -> bool:
        try:
            return self.snapshot().views.ready
        except IndexUnavailable:
            return False

    def writing_index(self) -> Index:
        """The index the leader keeps up to date: the one for the current config."""
        upcoming = self.next_state
        return upcoming.index if upcoming is not None else self.index

    # -- config reload -------------------------------------------------------
    def reload_config(self, config: Config) -> None:
        """Swap in a new, valid config; the index is kept unless post rules changed."""
        index = self.index
        if _index_place(config) != _index_place(self.config):
            index = Index(config, self.clock)
            if not self.background:
                index.restore()
        else:
            index.config = config
            if config.posts_dir != self.config.posts_dir and not self.background:
                index.scan()   # serve rescans in its watcher
        if config.cache != self.config.cache:
            self.store = make_store(config.cache.type, config.cache.url)
        new = served(config, index, self.state)
        if index is self.index or _ready(index):
            self.state, self.next_state = new, None
        else:
            self.next_state = new
        self.config_error = None
        log.info("config reloaded from %s", config.path)

    def config_failed(self, error: str) -> None:
        self.config_error = error
        log.error("config not reloaded, the last good one keeps serving: %s", error)

    # -- documents -----------------------------------------------------------
    def document(self, key: FeedKey, snap: Snapshot | None = None) -> Document:
        """The document for a feed key at `snap` (default: now); NotFound if there
        is none, NotReady before a first indexing, IndexUnavailable if the index
        cannot be read. If the index moves on while the document is read, it is
        read again at the new version (never a mix of two)."""
        snap = snap or self.snapshot()
        for _ in range(STALE_TRIES):
            try:
                return self._document(key, snap)
            except Stale:
                snap = self.snapshot()
        raise IndexUnavailable("the index changes faster than a document can be read")

    def _document(self, key: FeedKey, snap: Snapshot) -> Document:
        if not snap.views.ready:
            raise NotReady("the posts are being indexed")
        memo = self._memo.get((key, snap.version))
        metrics.cache_lookup("memo", memo is not None)
        if memo is not None:
            return memo
        sel, digest = self._selection(key, snap)
        if key.query():
            # Query options make documents without number (each ?filter= term is
            # another): a small LRU of their own, never the memo or the shared store,
            # so that no client can fill memory or Redis with them (SECURITY.md S11).
            return self._variants.get(digest) or self._render(digest, sel, snap.config,
                                                               self._variants)
        doc = self.store.get(digest)
        metrics.cache_lookup("store", doc is not None)
        doc = doc or self._render(digest, sel, snap.config, self.store)
        self._memo.put((key, snap.version), doc)
        return doc

    def digest(self, key: FeedKey, snap: Snapshot) -> str:
        """The store key of a document at `snap`, without rendering it (nor the
        bodies of its posts): the same key means the same bytes (the
        incremental export skips those)."""
        return self._selection(key, snap, bodies=False)[1]

    @staticmethod
    def _selection(key: FeedKey, snap: Snapshot, bodies: bool = True) -> tuple[Selection, str]:
        sel = select(key, snap.views, snap.config, bodies)
        return sel, _digest(snap.content_digest + "\n" + sel.fingerprint())

    def _render(self, digest: str, sel: Selection, config: Config, store: Store) -> Document:
        # One rendering per version at a time; the others wait and reuse it.
        with self._locks_guard:
            lock = self._locks.setdefault(digest, threading.Lock())
        with lock:
            doc = store.get(digest)
            if doc is None:
                started = time.perf_counter()
                doc = render_document(sel, config)
                metrics.rendered(sel.key.fmt, time.perf_counter() - started)
                store.put(digest, doc)
        with self._locks_guard:
            self._locks.pop(digest, None)
        return doc

    def cache_status(self) -> dict[str, Any]:
        """The document store and the query-variant LRU, for /status."""
        return {**self.store.describe(), "query_variants": len(self._variants)}


def _index_place(config: Config) -> tuple[Any, ...]:
    """What picks the index: the reading rules, where it is kept, and the posts
    folder (another folder is another Index object, so another version)."""
    return (index_identity(config), config.state_dir, config.index, config.posts_dir)


def _ready(index: Index) -> bool:
    try:
        return index.ready
    except IndexUnavailable:
        return False


def render_document(sel: Selection, config: Config) -> Document:
    body = writers.build(feed_model(sel, config), sel.key.fmt)
    return Document.of(body, FORMATS[sel.key.fmt], sel.modified)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
