"""Feed responses replayed while their feed version stands.

Aggregators poll the same URLs with the same headers all day. Routing,
query parsing, document lookup and conditional-GET logic give the same
answer every time until a post or the config changes, so this WSGI
middleware keeps the answer Flask made (status, headers, body bytes) under
the request's method, path, query and the request headers a feed response
depends on, and hands it back while the version it was made at is current.
A 200 and a 304 then cost about what a bare WSGI app costs (bench/,
docs/PERFORMANCE.md).

Only public, validated feed responses are kept (200 or 304 with an ETag and
`Cache-Control: public`); browser views, errors and /status always go to Flask.
A response that comes to depend on another request header must add it to
KEY_HEADERS.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.http import http_date

from feedsvc import metrics
from feedsvc.index import IndexUnavailable
from feedsvc.service import FeedService
from feedsvc.version import Snapshot

KEY_HEADERS = ("HTTP_ACCEPT_ENCODING", "HTTP_IF_NONE_MATCH", "HTTP_IF_MODIFIED_SINCE",
               "HTTP_IF_MATCH", "HTTP_IF_UNMODIFIED_SINCE", "HTTP_RANGE", "HTTP_IF_RANGE",
               "HTTP_SEC_FETCH_DEST", "HTTP_ACCEPT")
PREFIXES = ("/feeds/", "/tags/")
SNAPSHOT_KEY = "feedsvc.snapshot"   # the environ key under which the request's snapshot goes on
# A response that is current only until a time (filter_time) says so here.
EXPIRES = "feedsvc.expires"
MAX_BYTES = 32 * 2**20      # bodies are shared with the document store; this bounds the rest
StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
# (version, status, headers without Date, body, whether the app sent a Date,
#  the time it stops being current or None)
_Item = tuple[Any, str, list[tuple[str, str]], bytes, bool, dt.datetime | None]


class ReplayCache:
    def __init__(self, app: WsgiApp, service: FeedService, max_bytes: int = MAX_BYTES) -> None:
        self.app, self.service, self.max_bytes = app, service, max_bytes
        self._items: dict[tuple[Any, ...], _Item] = {}
        self._bytes = 0
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if not path.startswith(PREFIXES) and not path.endswith(".xml"):  # .xml: jekyll-feed URLs
            return self.app(environ, start_response)
        # The one snapshot of this request: read before the response is made, so
        # that a change while it is being made files it under the older version,
        # never a newer one; app.py answers from the same snapshot.
        try:
            snap: Snapshot = self.service.snapshot()
        except IndexUnavailable:
            return self.app(environ, start_response)   # Flask says why (503)
        environ[SNAPSHOT_KEY] = snap
        version = snap.version
        key = (environ.get("REQUEST_METHOD"), path, environ.get("QUERY_STRING", ""),
               *[environ.get(h) for h in KEY_HEADERS])
        hit = self._items.get(key)
        if hit is not None and hit[0] == version and (
                hit[5] is None or self.service.clock() < hit[5]):
            metrics.cache_lookup("replay", True)
            headers = hit[2]
            if hit[4]:
                headers = [*headers, ("Date", _now())]
            start_response(hit[1], list(headers))
            return [hit[3]]
        metrics.cache_lookup("replay", False)
        return self._fill(key, version, environ, start_response)

    def _fill(self, key: tuple[Any, ...], version: tuple[Any, ...], environ: dict[str, Any],
              start_response: StartResponse) -> Iterable[bytes]:
        captured: list[Any] = []

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured[:] = [status, headers]
            return start_response(status, headers, exc_info)

        result = self.app(environ, capture)
        try:
            body = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        if captured and _replayable(*captured):
            # A Date is the time of each answer (caches compute ages from it): made
            # afresh, never replayed. (Under gunicorn the server adds it, not the app.)
            headers = [(k, v) for k, v in captured[1] if k.lower() != "date"]
            dated = len(headers) != len(captured[1])
            self._put(key, (version, captured[0], headers, body, dated, environ.get(EXPIRES)))
        return [body]

    def _put(self, key: tuple[Any, ...], item: _Item) -> None:
        with self._lock:
            if self._bytes + len(item[3]) > self.max_bytes:
                self._items.clear()  # rare (a crawler paging through everything): start over
                self._bytes = 0
            old = self._items.get(key)
            self._bytes += len(item[3]) - (len(old[3]) if old else 0)
            self._items[key] = item


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
