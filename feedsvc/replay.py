"""Feed responses replayed while their feed version stands.

Aggregators poll the same URLs with the same headers all day. Routing,
query parsing, document lookup and conditional-GET logic give the same
answer every time until a post or the config changes, so this WSGI
middleware keeps the answer Flask made (status, headers, body bytes) under
the request's method, path, query and the request headers a feed response
depends on, and hands it back while the version it was made at is current.
A 200 and a 304 then cost about what a bare WSGI app costs (bench/,
docs/PERFORMANCE.md). The server's event loop asks `lookup()` directly
(edge.py), so a replayed answer never waits for a thread.

Only public, validated feed responses are kept (200 or 304 with an ETag and
`Cache-Control: public`); browser views, errors and /status always go to Flask.
A response that comes to depend on another request header must add it to
KEY_HEADERS.

Memory is bounded in bytes, counting everything an entry holds: the key
(path, query string, the request headers in it), the response headers and
the body, plus what Python spends on the objects (issue 15, finding 5: a
cap on body bytes alone let HEAD and 304 answers to unique query strings with
large headers grow without bound). Requests with a query string have a
smaller budget of their own, so that a client inventing `?utm_x=` values can
only evict its own kind, never the plain feed URLs that pollers repeat.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from contextlib import suppress
from typing import Any, NamedTuple

from werkzeug.http import http_date

from feedsvc import metrics
from feedsvc.index import IndexUnavailable
from feedsvc.service import FeedService
from feedsvc.version import Snapshot, Version, take

KEY_HEADERS = ("HTTP_ACCEPT_ENCODING", "HTTP_IF_NONE_MATCH", "HTTP_IF_MODIFIED_SINCE",
               "HTTP_IF_MATCH", "HTTP_IF_UNMODIFIED_SINCE", "HTTP_RANGE", "HTTP_IF_RANGE",
               "HTTP_SEC_FETCH_DEST", "HTTP_ACCEPT")
PREFIXES = ("/feeds/", "/tags/")
SNAPSHOT_KEY = "feedsvc.snapshot"   # the environ key under which the request's snapshot goes on
FOUND_KEY = "feedsvc.replay"        # an answer edge.py found on the event loop for this request
# A response that is current only until a time (filter_time) says so here.
EXPIRES = "feedsvc.expires"
# How long the event loop reuses the version it read (one small query of the index)
# for the polls that follow: a burst of polls costs one read, and an answer is at
# most this much older than the index, always whole (one version, never a mix).
VERSION_REUSE = 0.01
MAX_BYTES = 24 * 2**20        # plain feed URLs; bodies are mostly shared with the document store
MAX_QUERY_BYTES = 4 * 2**20   # URLs with a query string (filters, tracking parameters)
# What CPython spends beyond the characters: an entry's tuples and dict slot,
# each str object of the key, each header (a tuple of two str). Measured with
# sys.getsizeof on 64-bit CPython 3.11 (tests/test_replay.py checks the bound).
ENTRY_OVERHEAD = 600
PART_OVERHEAD = 60
HEADER_OVERHEAD = 180
StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
Key = tuple[Any, ...]


class Answer(NamedTuple):
    version: Version
    status: str
    headers: list[tuple[str, str]]       # without Date
    body: bytes
    dated: bool                          # whether the app sent a Date (made afresh per answer)
    weight: int
    expires: dt.datetime | None = None   # when it stops being current (filter_time)


class ReplayCache:
    def __init__(self, app: WsgiApp, service: FeedService, max_bytes: int = MAX_BYTES,
                 max_query_bytes: int = MAX_QUERY_BYTES) -> None:
        self.app, self.service = app, service
        self._plain = _Segment(max_bytes)
        self._queried = _Segment(max_query_bytes)
        # (served state, its index's writes, monotonic time, clock time, version)
        self._version: tuple[Any, int, float, dt.datetime, Version] | None = None

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if not path.startswith(PREFIXES) and not path.endswith(".xml"):  # .xml: jekyll-feed URLs
            return self.app(environ, start_response)
        hit: Answer | None = environ.pop(FOUND_KEY, None)
        if hit is None:
            # The one snapshot of this request: read before the response is made, so
            # that a change while it is being made files it under the older version,
            # never a newer one; app.py answers from the same snapshot.
            try:
                snap: Snapshot = self.service.snapshot()
            except IndexUnavailable:
                return self.app(environ, start_response)   # Flask says why (503)
            environ[SNAPSHOT_KEY] = snap
            hit = self._get(environ, snap.version)
            metrics.cache_lookup("replay", hit is not None)
            if hit is None:
                return self._fill(snap, environ, start_response)
        else:
            metrics.cache_lookup("replay", True)    # found on the event loop (edge.py)
        start_response(hit.status, self.headers(hit))
        return [hit.body]

    def lookup(self, environ: Mapping[str, Any]) -> Answer | None:
        """The answer kept for this request, if it is of the current version.
        The version costs one read of the index (its generation and the newest
        date that has come: version.take), which edge.py makes on the event loop,
        once per VERSION_REUSE seconds; while the index is known to be away
        (PostgreSQL not answering) it does not wait to find out whether it is
        back, the thread pool does."""
        if not environ.get("PATH_INFO", "").startswith(PREFIXES):
            return None
        try:
            with self.service.state.index.db.no_retry():
                version = self._current_version()
        except IndexUnavailable:
            return None      # the thread pool answers, and says why
        return self._get(environ, version)

    def _current_version(self) -> Version:
        """The version, read again when VERSION_REUSE has passed (on the monotonic
        clock and on the service's clock, so that a test clock moved on is a new
        reading), when the config was swapped, or when this process wrote the index."""
        state, mono, now = self.service.state, time.monotonic(), self.service.clock()
        writes = state.index.writes     # before the read: a write during it is seen next time
        kept = self._version
        if (kept is not None and kept[0] is state and kept[1] == writes
                and 0 <= mono - kept[2] < VERSION_REUSE
                and 0 <= (now - kept[3]).total_seconds() < VERSION_REUSE):
            return kept[4]
        version = take(state).version
        self._version = (state, writes, mono, now, version)
        return version

    def _get(self, environ: Mapping[str, Any], version: Version) -> Answer | None:
        key = _key(environ)
        hit = self._segment(key).get(key)
        if hit is None or hit.version != version:
            return None
        if hit.expires is not None and self.service.clock() >= hit.expires:
            return None
        return hit

    @staticmethod
    def headers(hit: Answer) -> list[tuple[str, str]]:
        return [*hit.headers, ("Date", _now())] if hit.dated else list(hit.headers)

    def describe(self) -> dict[str, int]:
        return {"entries": len(self._plain) + len(self._queried),
                "bytes": self._plain.bytes + self._queried.bytes}

    def _segment(self, key: Key) -> _Segment:
        return self._queried if key[2] else self._plain

    def _fill(self, snap: Snapshot, environ: dict[str, Any],
              start_response: StartResponse) -> Iterable[bytes]:
        captured, body = run_to_end(self.app, environ, start_response)
        if captured and _replayable(*captured):
            # A Date is the time of each answer (caches compute ages from it): made
            # afresh, never replayed. (Servers usually add it, not the app.)
            headers = [(k, v) for k, v in captured[1] if k.lower() != "date"]
            dated = len(headers) != len(captured[1])
            key = _key(environ)
            self._segment(key).put(key, Answer(snap.version, captured[0], headers, body,
                                               dated, _weight(key, headers, body),
                                               environ.get(EXPIRES)))
        return [body]


def run_to_end(app: WsgiApp, environ: dict[str, Any], start_response: StartResponse | None = None
               ) -> tuple[list[Any], bytes]:
    """Call a WSGI app and read its answer to the end: [status, headers] as it
    started its response (also passed on to `start_response`, when given), and
    the whole body, the app's iterable closed whatever happens (PEP 3333)."""
    captured: list[Any] = []

    def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        captured[:] = [status, headers]
        return start_response(status, headers, exc_info) if start_response else None

    result = app(environ, capture)
    try:
        body = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return captured, body


class _Segment:
    """An LRU of answers bounded by the bytes they weigh."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._items: OrderedDict[Key, Answer] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Key) -> Answer | None:
        hit = self._items.get(key)
        if hit is not None:
            # Evicted meanwhile by another thread: still a valid answer.
            with suppress(KeyError):
                self._items.move_to_end(key)
        return hit

    def put(self, key: Key, item: Answer) -> None:
        if item.weight > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.bytes -= old.weight
            self._items[key] = item
            self.bytes += item.weight
            while self.bytes > self.max_bytes:
                self.bytes -= self._items.popitem(last=False)[1].weight


def _key(environ: Mapping[str, Any]) -> Key:
    return (environ.get("REQUEST_METHOD"), environ.get("PATH_INFO", ""),
            environ.get("QUERY_STRING", ""), *[environ.get(h) for h in KEY_HEADERS])


def _weight(key: Key, headers: list[tuple[str, str]], body: bytes) -> int:
    parts = sum(len(p) + PART_OVERHEAD for p in key if isinstance(p, str))
    return (ENTRY_OVERHEAD + parts + len(body)
            + sum(len(k) + len(v) + HEADER_OVERHEAD for k, v in headers))


def _now(_memo: list[Any] = [0, ""]) -> str:  # noqa: B006 - a one-second memo
    second = int(time.time())
    if _memo[0] != second:
        _memo[:] = [second, http_date(second)]
    return str(_memo[1])


def _replayable(status: str, headers: list[tuple[str, str]]) -> bool:
    if not status.startswith(("200", "304")):
        return False
    names = {k.lower(): v for k, v in headers}
    return "etag" in names and "set-cookie" not in names and \
        names.get("cache-control", "").startswith("public")


def find_replay(wsgi_app: Any) -> ReplayCache | None:
    """The replay cache in a chain of WSGI middleware, each holding the next as
    `.app` (the request metrics and subscriber counts wrap it)."""
    for _ in range(8):
        if isinstance(wsgi_app, ReplayCache):
            return wsgi_app
        wsgi_app = getattr(wsgi_app, "app", None)
    return None
