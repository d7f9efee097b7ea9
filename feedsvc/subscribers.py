"""Subscriber counts: how many people read each feed, per day.

Two kinds of evidence, both from requests for a feed (200 or 304):
- **Aggregators** that fetch once for many people say how many in their
  User-Agent (`Feedly/1.0 (+http://www.feedly.com/fetcher.html; 131
  subscribers; …)`, `Feedbin feed-id:1373711 - 24 subscribers`, …). One count
  is kept per (aggregator, the aggregator's own feed id when it sends one,
  our feed path) and day: the latest, never a sum of requests.
- **Direct readers** (a reader app on someone's machine, a browser's feed
  preview) are counted once per feed and day by a hash of their address and
  User-Agent with a salt of the day: the address itself is never stored, and
  once a day's salt is deleted (two days later) nobody can tell whose the
  hashes were.

Behind a proxy every request comes from the proxy: the reader's address is
taken from `X-Forwarded-For`, walking it from the right past the
`trusted_proxies` of config.yaml, and only when the request came from one of
them (anyone can send that header).

The counts are kept in the index by a SubscriberStore (subscriber_store.py);
each worker gathers them in memory and writes them every few seconds. A
request never waits for the database: it hashes a reader with the day's salt
when the worker has read it already, and otherwise (the first requests of a
day, or the index unreachable) leaves the address in memory for the next
write to hash — never written anywhere. While the index cannot be written
(PostgreSQL down) each interval's counts are dropped, the cause logged once,
and counting goes on by itself when it is back.
"""

from __future__ import annotations

import atexit
import datetime as dt
import hashlib
import ipaddress
import logging
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from feedsvc.clock import Clock, utcnow
from feedsvc.config import Config
from feedsvc.index.db import IndexUnavailable
from feedsvc.subscriber_store import SubscriberStore

log = logging.getLogger(__name__)
FLUSH_SECONDS = 2.0
# What one worker holds between two writes, at most (a flood of made-up
# User-Agents must not grow a worker's memory): beyond it, the rest of the
# interval is not counted.
MAX_PENDING = 50_000
FEED_PREFIXES = ("/feeds/", "/tags/", "/feed/", "/feed.xml")
FEED_SUFFIXES = (".rss", ".atom", ".json", ".xml")

# Aggregators by how they name themselves; the subscriber count and feed id
# are read by the patterns below, whatever the order of the parts.
KNOWN = (
    ("Feedly", re.compile(r"\bFeedly", re.I)),
    ("Feedbin", re.compile(r"\bFeedbin\b", re.I)),
    ("NewsBlur", re.compile(r"\bNewsBlur\b", re.I)),
    ("Inoreader", re.compile(r"\bInoreader\b", re.I)),
    ("The Old Reader", re.compile(r"\btheoldreader\b|\bThe Old Reader\b", re.I)),
    ("BazQux", re.compile(r"\bBazQux\b", re.I)),
    ("Feedspot", re.compile(r"\bFeedspot\b", re.I)),
    ("FeedHQ", re.compile(r"\bFeedHQ\b", re.I)),
    ("Feed Wrangler", re.compile(r"\bFeed ?Wrangler\b", re.I)),
    ("Newsify", re.compile(r"\bNewsify\b", re.I)),
    ("Feeder", re.compile(r"\bFeeder\.co\b|\bFeeder/", re.I)),
    ("Tiny Tiny RSS", re.compile(r"\bTiny Tiny RSS\b", re.I)),
    ("FreshRSS", re.compile(r"\bFreshRSS\b", re.I)),
    ("Miniflux", re.compile(r"\bMiniflux\b", re.I)),
)
COUNT = re.compile(r"(\d{1,9})\s+(?:subscribers?|readers?|users?)\b", re.I)
FEED_ID = re.compile(r"feed[-_ ]?id[=:]\s*([A-Za-z0-9_-]{1,64})", re.I)
NEWSBLUR_ID = re.compile(r"newsblur\.com/site/(\d{1,12})", re.I)
PRODUCT = re.compile(r"^\s*([A-Za-z][A-Za-z0-9 ._-]{1,40}?)(?:/[\w.]+|\s+-|\s*\(|$)")


@dataclass(frozen=True)
class Aggregator:
    name: str
    feed_id: str          # "" when it sends none
    subscribers: int


@lru_cache(maxsize=4096)
def parse_user_agent(ua: str) -> Aggregator | None:
    """The aggregator and its count, if this User-Agent reports subscribers."""
    m = COUNT.search(ua)
    if not m:
        return None
    name = next((n for n, pattern in KNOWN if pattern.search(ua)), None)
    if name is None:
        product = PRODUCT.match(ua)
        if product is None or product.group(1).lower().startswith("mozilla"):
            name = "other"
        else:
            name = product.group(1).strip()
    fid = FEED_ID.search(ua) or NEWSBLUR_ID.search(ua)
    return Aggregator(name, fid.group(1) if fid else "", int(m.group(1)))


class TrustedProxies:
    def __init__(self, networks: Iterable[str]) -> None:
        self.networks = tuple(ipaddress.ip_network(n, strict=False) for n in networks)

    def trusted(self, addr: str) -> bool:
        try:
            ip = ipaddress.ip_address(addr.strip())
        except ValueError:
            return False
        return any(ip in net for net in self.networks)

    def client(self, remote_addr: str, forwarded_for: str | None) -> str:
        """The reader's address: REMOTE_ADDR, or when that is a trusted proxy,
        the right-most address in X-Forwarded-For that is not one."""
        if not forwarded_for or not self.trusted(remote_addr):
            return remote_addr
        hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
        for hop in reversed(hops):
            if not self.trusted(hop):
                return hop
        return hops[0] if hops else remote_addr


def recorder_for(config: Config, clock: Clock = utcnow) -> Recorder:
    """The recorder of a served site. Its store opens the index on first use:
    a database that is unreachable now costs counts, never the service."""
    return Recorder(SubscriberStore(config), config.trusted_proxies, config.site.timezone, clock)


def is_feed(path: str) -> bool:
    return path.startswith(FEED_PREFIXES) and path.endswith(FEED_SUFFIXES)


class Recorder:
    """Gathers one worker's counts and writes them to the store every few seconds."""

    def __init__(self, store: SubscriberStore, proxies: Sequence[str], timezone: str,
                 clock: Clock = utcnow, flush_seconds: float = FLUSH_SECONDS) -> None:
        self.store, self.clock = store, clock
        self.proxies = TrustedProxies(proxies)
        self.zone = ZoneInfo(timezone)
        self._lock = threading.Lock()
        self._aggregators: dict[tuple[str, str, str, str], tuple[int, float]] = {}
        self._readers: set[tuple[str, str, str]] = set()          # (day, path, hash)
        # (day, path, address, User-Agent) of a day whose salt this worker has
        # not read yet: the next write reads it and hashes them.
        self._unhashed: set[tuple[str, str, str, str]] = set()
        self._dropped = 0
        self._salts: dict[str, bytes] = {}
        self.failing: str | None = None    # why the last write failed, until one succeeds
        self._lost = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(flush_seconds,),
                                        name="feedsvc-subscribers", daemon=True)

    def start(self) -> Recorder:
        self._thread.start()
        # A worker that exits (a restart, gunicorn's max-requests) writes what it holds.
        atexit.register(self._flush_quietly)
        return self

    def _flush_quietly(self) -> None:
        try:
            self.flush()
        except Exception:  # noqa: BLE001 - at exit, a log line is all that can be done
            log.exception("subscriber counts not written at exit")

    def stop(self) -> None:
        self._stop.set()
        self.flush()

    def day(self, now: dt.datetime) -> str:
        return now.astimezone(self.zone).date().isoformat()

    def today(self) -> dt.date:
        return self.clock().astimezone(self.zone).date()

    def seen(self, path: str, user_agent: str, remote_addr: str, forwarded_for: str | None,
             when: dt.datetime | None = None) -> None:
        """One feed request answered 200 or 304 (`when`: its time, if not now); in
        memory only, no database here."""
        now = when or self.clock()
        day = self.day(now)
        agg = parse_user_agent(user_agent)
        client = "" if agg is not None else self.proxies.client(remote_addr, forwarded_for)
        salt = self._salts.get(day)
        digest = _digest(salt, client, user_agent) if agg is None and salt else None
        with self._lock:
            if len(self._aggregators) + len(self._readers) + len(self._unhashed) >= MAX_PENDING:
                self._dropped += 1
            elif agg is not None:
                self._aggregators[(day, agg.name, agg.feed_id, path)] = (agg.subscribers,
                                                                          now.timestamp())
            elif digest is not None:
                self._readers.add((day, path, digest))
            else:
                self._unhashed.add((day, path, client, user_agent))

    def _salt(self, day: str) -> bytes:
        salt = self._salts.get(day)
        if salt is None:
            salt = self.store.salt(day)        # shared by every worker and machine
            # Today's and yesterday's at most (a write just after midnight).
            self._salts = {**{d: s for d, s in self._salts.items() if d > day}, day: salt}
        return salt

    def flush(self) -> bool:
        """Write what was gathered; False when the index could not take it
        (those counts are dropped, the cause logged once per outage)."""
        with self._lock:
            aggregators, readers, unhashed = self._aggregators, self._readers, self._unhashed
            dropped = self._dropped
            self._aggregators, self._readers, self._unhashed, self._dropped = {}, set(), set(), 0
        if dropped:
            log.warning("subscriber counts: %d feed requests not counted (more than %d distinct "
                        "in one interval)", dropped, MAX_PENDING)
        if not aggregators and not readers and not unhashed:
            return True
        try:
            readers |= {(day, path, _digest(self._salt(day), client, ua))
                        for day, path, client, ua in unhashed}
            self.store.add(aggregators, readers)
            self.store.forget_before(self.day(self.clock() - dt.timedelta(days=1)))
        except IndexUnavailable as e:
            # Only this interval's counts are lost; the next write tries again.
            if self.failing is None:
                log.error("subscriber counts not written (%s); each interval's counts are lost "
                          "until the index can be written again", e)
            self.failing = str(e)
            self._lost += len(aggregators) + len(readers) + len(unhashed)
            self.store.report(e)
            return False
        if self.failing is not None:
            log.warning("subscriber counts written again; %d counts were lost meanwhile",
                        self._lost)
            self.store.report(None)
        self.failing, self._lost = None, 0
        return True

    def _loop(self, every: float) -> None:
        try:
            self.store.import_older()
        except IndexUnavailable as e:
            log.warning("subscriber counts of an older version not imported yet (%s); tried again "
                        "at the next write", e)
        except Exception:  # noqa: BLE001 - counting must never stop serving
            log.exception("subscriber counts of an older version not imported")
        while not self._stop.wait(every):
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - counting must never stop serving
                log.exception("subscriber counts not written")


def _digest(salt: bytes, client: str, user_agent: str) -> str:
    """A direct reader of one day: its address and User-Agent, salted."""
    return hashlib.sha256(salt + b"\0" + client.encode("utf-8", "replace")
                          + b"\0" + user_agent.encode("utf-8", "replace")).hexdigest()[:24]


StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class CountSubscribers:
    """WSGI middleware: every feed answer (200/304, not a browser's page view)
    goes to the recorder."""

    def __init__(self, app: WsgiApp, recorder: Recorder) -> None:
        self.app, self.recorder = app, recorder

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if not is_feed(path) or environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return self.app(environ, start_response)

        def seen(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if status[:3] in ("200", "304") and \
                    (environ.get("HTTP_SEC_FETCH_DEST") or "").strip().lower() != "document":
                # WSGI hands the path as Latin-1 of its UTF-8 bytes: /tags/昆明.rss
                text = path.encode("latin-1", "replace").decode("utf-8", "replace")
                self.recorder.seen(text, environ.get("HTTP_USER_AGENT", ""),
                                   environ.get("REMOTE_ADDR", ""),
                                   environ.get("HTTP_X_FORWARDED_FOR"))
            return start_response(status, headers, exc_info)

        return self.app(environ, seen)
