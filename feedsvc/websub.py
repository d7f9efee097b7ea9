"""WebSub publish pings: when a feed's bytes change, tell the hub once.

The feeds already name the hub (feeds.py sets Feed.hub; app.py adds `Link`
headers). Here the ETag last announced for each feed URL is kept in the
index (index/sources.py, shared by a cluster), so a ping goes out once per
change — also across restarts and when another instance takes over as
leader — and a feed whose bytes did not change is never announced. A ping
that fails is retried with backoff until the hub takes it; a feed that changes
again meanwhile still costs one ping (the hub fetches the newest version).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from dataclasses import dataclass

from feedsvc import health, redact
from feedsvc.clock import Clock, utcnow
from feedsvc.config import Config
from feedsvc.errors import FetchError, NotFound
from feedsvc.feeds import FeedKey
from feedsvc.index import IndexUnavailable, durable
from feedsvc.index.sources import StateStore
from feedsvc.model import FORMATS
from feedsvc.service import FeedService
from feedsvc.upstream.fetch import Fetcher
from feedsvc.version import Snapshot

log = logging.getLogger(__name__)
MAX_RETRY_DELAY = 300.0


def topics(config: Config) -> list[FeedKey]:
    """The feeds announced to the hub: every category feed and the site-wide
    feed, first page, default options, in every format."""
    names = [("category", slug) for slug in config.categories] + [("all", "all")]
    return [FeedKey(kind, name, fmt) for kind, name in names for fmt in FORMATS]


def feed_etags(service: FeedService, snap: Snapshot | None = None) -> dict[str, str]:
    """Feed URL → ETag of its bytes at `snap` (default: now)."""
    snap = snap or service.snapshot()
    config = snap.config
    out = {}
    for key in topics(config):
        try:
            out[key.url(config.feeds_url)] = service.document(key, snap).etag
        except NotFound:
            continue
    return out


@dataclass
class _Pending:
    failures: int = 0
    next_try: dt.datetime | None = None


class Publisher:
    def __init__(self, store: StateStore, fetcher: Fetcher, *, clock: Clock = utcnow,
                 retry_base: float = 2.0) -> None:
        self.store = store
        self.fetcher, self.clock, self.retry_base = fetcher, clock, retry_base
        self.announced: dict[str, str] | None = None     # feed URL → ETag the hub knows
        self.pending: dict[str, _Pending] = {}
        self.stored: dict[str, str] = {}                 # the index's, as last read
        self.unsaved: dict[str, str] = {}                # announced here, not yet stored
        self.baseline: dict[str, str] = {}               # first seen here, not yet stored
        self.lock = threading.Lock()

    @property
    def checked(self) -> bool:
        """Whether a check was done: the hub's baseline for this process is taken."""
        return self.announced is not None

    def check(self, hub: str, current: dict[str, str]) -> int:
        """Ping the hub for each feed whose ETag moved; return how many pings it took."""
        with self.lock:
            return self._check(hub, current)

    def _check(self, hub: str, current: dict[str, str]) -> int:
        # Read every time: another instance may have announced since (it led
        # the cluster before this one), and what it announced is not sent again.
        try:
            self.stored = self.store.announced()
        except IndexUnavailable as e:
            # The last read stands in (nothing read yet: nothing announced).
            log.debug("WebSub state unreadable: %s", e)
        # What this process could not store yet: its baselines count only where
        # the index has nothing, what it announced is newer than anything there.
        self.announced = {**self.baseline, **self.stored, **self.unsaved}
        for url in current:
            if url not in self.announced:
                # First sight (new category, first start): nothing a subscriber
                # could have missed, so record it without a ping.
                self.announced[url] = self.baseline[url] = current[url]
        sent = 0
        now = self.clock()
        for url, etag in sorted(current.items()):
            if self.announced.get(url) == etag:
                self.pending.pop(url, None)
                continue
            pending = self.pending.setdefault(url, _Pending())
            if pending.next_try and now < pending.next_try:
                continue
            sent += 1
            if self._ping(hub, url):
                self.announced[url] = self.unsaved[url] = etag
                self.pending.pop(url, None)
            else:
                pending.failures += 1
                delay = min(self.retry_base * 2 ** (pending.failures - 1), MAX_RETRY_DELAY)
                pending.next_try = now + dt.timedelta(seconds=delay)
        if self.baseline or self.unsaved:
            self._save()
        return sent

    def _ping(self, hub: str, url: str) -> bool:
        try:
            status = self.fetcher.post_form(hub, {"hub.mode": "publish", "hub.url": url})
        except FetchError as e:
            log.warning("WebSub ping for %s to %s failed: %s", url, redact.url(hub), redact.text(str(e)))
            return False
        if 200 <= status < 300:
            log.info("WebSub hub %s notified of %s", redact.url(hub), url)
            return True
        log.warning("WebSub hub %s answered %d for %s; will retry", redact.url(hub), status, url)
        return False

    def _save(self) -> None:
        try:
            self.store.save_announced(self.unsaved, first_seen=self.baseline)
        except IndexUnavailable as e:
            # Reported in /status; the pings themselves went out, and the next
            # check saves again (what this process announced is kept in memory).
            health.STATE.failed(self.store.place,
                                health.storage_reason(e, durable.folder(self.store.config)),
                                what="save the WebSub state in")
        else:
            self.stored.update({**self.baseline, **self.unsaved})
            self.baseline.clear()
            self.unsaved.clear()
            health.STATE.ok(self.store.place)
