"""Background work of `feedsvc serve`: polling upstream sources when they are
due and sending WebSub pings, in daemon threads that never block a request.

With several gunicorn workers this must run once, not once per worker:
every worker starts a Scheduler, but only the one that holds the leader lock
does the work (leader.py; app.py passes the app's own Leader). The leader
check is one injected callable, so tests can decide it.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
from collections.abc import Callable

from feedsvc import metrics
from feedsvc.clock import Clock, utcnow
from feedsvc.config import Config
from feedsvc.index.sources import store_for
from feedsvc.leader import Leader
from feedsvc.service import FeedService
from feedsvc.upstream.collector import Collector
from feedsvc.upstream.fetch import Fetcher
from feedsvc.upstream.state import load_state
from feedsvc.version import Version
from feedsvc.websub import Publisher, feed_etags

log = logging.getLogger(__name__)
MAX_SLEEP = 30.0


class Scheduler:
    def __init__(self, service: FeedService, *, is_leader: Callable[[], bool] | None = None,
                 clock: Clock = utcnow, tick: float = 1.0,
                 fetcher_factory: Callable[[Config], Fetcher] | None = None) -> None:
        self.service, self.clock, self.tick = service, clock, tick
        self._is_leader = is_leader or Leader(service.config.state_dir / "leader.lock").acquire
        self._leading = False
        self._fetcher_factory = fetcher_factory or _default_fetcher
        self._fetcher: tuple[Config, Fetcher] | None = None
        self.publisher: Publisher | None = None
        self._published: Version | None = None
        self.stop_event = threading.Event()
        self.lock = threading.RLock()
        self._leader_lock = threading.Lock()
        self.threads = [threading.Thread(target=self._loop, args=(self.collect_due,),
                                         name="feedsvc-collect", daemon=True),
                        threading.Thread(target=self._loop, args=(self.publish,),
                                         name="feedsvc-websub", daemon=True)]

    def start(self) -> Scheduler:
        for t in self.threads:
            t.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()

    def leading(self) -> bool:
        """Whether this process leads, asked every time: a file lock is held until
        the process ends (asking again costs nothing), but a cluster's advisory
        lock goes with its database session, and a leader that lost it must stop
        polling and pinging (another instance does it now)."""
        config = self.service.config
        has_work = config.websub is not None or any(c.sources for c in config.categories.values())
        with self._leader_lock:   # both threads ask; one answer
            if has_work:
                was, self._leading = self._leading, self._is_leader()
                if self._leading and not was:
                    log.info("this process (pid %d) polls sources and pings hubs", os.getpid())
            return self._leading and has_work

    def _loop(self, step: Callable[[], float]) -> None:
        wait = 0.0
        while not self.stop_event.wait(wait):
            try:
                wait = step() if self.leading() else self.tick
            except Exception:  # noqa: BLE001 - the background must outlive any bug
                log.exception("background task failed")
                wait = MAX_SLEEP

    def fetcher(self) -> Fetcher:
        with self.lock:
            config = self.service.config
            if self._fetcher is None or self._fetcher[0] is not config:
                # The old one is left to the garbage collector: the other
                # thread may still be using it.
                self._fetcher = (config, self._fetcher_factory(config))
            return self._fetcher[1]

    # -- polling ---------------------------------------------------------------
    def collect_due(self) -> float:
        """Collect every due source; return the seconds until the next is due."""
        service = self.service
        if not service.ready:
            # Collect after a first indexing: the hub's baseline below must be
            # whole feeds, and what is collected is then announced.
            return self.tick
        if service.config.websub is not None and not self._hub_checked():
            # The hub's baseline is the feeds as they were before this process
            # collected anything, so that what it collects is announced. Keyed
            # on "no check done yet", not on "no publisher": the publish thread
            # may have made the publisher while the index was not ready, and
            # then no baseline was taken (what is collected now would be the
            # baseline, never announced).
            self.publish()
            if not self._hub_checked():
                return self.tick
        collector = Collector(service.config, fetcher=self.fetcher(), clock=self.clock,
                              index=service.index)
        results = collector.run(collector.due())
        for r in results:
            metrics.source_result(r.category, r.url, new=r.new, unchanged=r.unchanged,
                                  not_modified=r.not_modified, error=r.error)
        # Index new files now rather than wait for the watcher, so that the
        # hub ping follows at once.
        if any(r.new or r.updated for r in results):
            service.writing_index().scan()
        return self._until_next(collector)

    def _hub_checked(self) -> bool:
        with self.lock:
            return self.publisher is not None and self.publisher.checked

    def _until_next(self, collector: Collector) -> float:
        now = self.clock()
        soonest = now + dt.timedelta(seconds=MAX_SLEEP)
        for cat, src in collector.sources():
            nxt = load_state(collector.config, cat.slug, src.url).next_attempt
            if nxt is not None:
                soonest = min(soonest, dt.datetime.fromisoformat(nxt))
        return max(self.tick, (soonest - now).total_seconds())

    # -- WebSub ------------------------------------------------------------------
    def publish(self) -> float:
        """Announce changed feeds to the hub (both threads call this: one at a time)."""
        with self.lock:
            config = self.service.config
            if config.websub is None:
                return self.tick
            if self.publisher is None or self.publisher.fetcher is not self.fetcher():
                self.publisher = Publisher(store_for(config), self.fetcher(), clock=self.clock)
                self._published = None
            # Feed bytes change only with the snapshot's version (version.py: the
            # config, the index, its generation): otherwise there is nothing to check.
            # Before a first indexing is done feeds are partial: never announced.
            snap = self.service.snapshot()
            if not snap.views.ready:
                return self.tick
            if snap.version != self._published or self.publisher.pending:
                self.publisher.check(config.websub.hub, feed_etags(self.service, snap))
                self._published = snap.version
            return self.tick


def _default_fetcher(config: Config) -> Fetcher:
    return Fetcher(site_url=config.site.url, allow_private=config.allow_private_sources)
