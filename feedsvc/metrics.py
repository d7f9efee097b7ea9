"""Prometheus metrics (`/metrics`), with the official client library.

Under `feedsvc serve` every gunicorn worker is a process of its own, so the
metrics run in prometheus_client's multiprocess mode: server.py (in the
master, before any worker starts or imports this module) points
PROMETHEUS_MULTIPROC_DIR at an empty folder, each worker writes its values to files there, `/metrics`
adds them up whichever worker answers, and a worker that exits is marked dead
(`worker_exited`) so that its gauges go. Without that folder (tests with one
process, `create_app` used directly) the metrics live in the process.

What is counted (README, "Running in production"):
    feedsvc_requests_total{kind, format, status}   every answer, replayed ones too
    feedsvc_render_seconds{format}                 renders of feed documents (_count: how many)
    feedsvc_cache_lookups_total{layer, result}     replay / memo / store, hit or miss
    feedsvc_index_posts, feedsvc_published_posts, feedsvc_skipped_files
    feedsvc_source_fetches_total{category, host, result}, feedsvc_source_new_posts_total,
    feedsvc_source_last_success_timestamp_seconds   (by host: a source URL may carry credentials)
    feedsvc_leader{pid}                            1 in the worker that leads
    feedsvc_config_error                           1 while the last config reload failed
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from prometheus_client.exposition import choose_encoder

ENV = "PROMETHEUS_MULTIPROC_DIR"
FEED_FORMATS = frozenset({"rss", "atom", "json"})
PAGES = {"/": "index", "/opml.xml": "opml", "/healthz": "healthz", "/readyz": "readyz",
         "/status": "status", "/metrics": "metrics"}

REQUESTS = Counter("feedsvc_requests", "HTTP answers by what was asked (kind of feed or page, "
                   "format; html = a browser's view of a feed) and status",
                   ["kind", "format", "status"])
RENDER_SECONDS = Histogram("feedsvc_render_seconds", "Time to render one feed document "
                           "(count: documents rendered)", ["format"],
                           buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
CACHE = Counter("feedsvc_cache_lookups", "Lookups of the response replay cache, the per-process "
                "document memo and the document store (memory or Redis)", ["layer", "result"])
INDEX_POSTS = Gauge("feedsvc_index_posts", "Post files in the index",
                    multiprocess_mode="livemostrecent")
PUBLISHED_POSTS = Gauge("feedsvc_published_posts", "Posts in the feeds (published, not in the "
                        "future)", multiprocess_mode="livemostrecent")
SKIPPED = Gauge("feedsvc_skipped_files", "Post files skipped for a problem (see /status)",
                multiprocess_mode="livemostrecent")
SOURCE_FETCHES = Counter("feedsvc_source_fetches", "Upstream source fetches by category, host "
                         "and result (new, unchanged, not_modified, error)",
                         ["category", "host", "result"])
SOURCE_NEW = Counter("feedsvc_source_new_posts", "Posts collected from upstream sources",
                     ["category", "host"])
SOURCE_SUCCESS = Gauge("feedsvc_source_last_success_timestamp_seconds", "When a source of this "
                       "category and host last answered", ["category", "host"],
                       multiprocess_mode="mostrecent")
LEADER = Gauge("feedsvc_leader", "1 in the worker process that polls sources and pings the hub",
               multiprocess_mode="liveall")
CONFIG_ERROR = Gauge("feedsvc_config_error", "1 while the last edit of config.yaml is invalid",
                     multiprocess_mode="livemostrecent")

_lookups = {(layer, hit): CACHE.labels(layer, "hit" if hit else "miss")
            for layer in ("replay", "memo", "store") for hit in (True, False)}


def worker_exited(pid: int) -> None:
    """gunicorn's child_exit hook: drop the live gauges of a worker that is gone."""
    if os.environ.get(ENV):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def exposition(accept: str) -> tuple[bytes, str]:
    """Every metric, summed over worker processes, in the format the scraper
    asks for (Prometheus text 0.0.4 by default, 1.0.0 or OpenMetrics on request)."""
    registry: CollectorRegistry = REGISTRY
    if os.environ.get(ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    encode, content_type = choose_encoder(accept)
    return encode(registry), content_type


# -- what is measured --------------------------------------------------------------
def cache_lookup(layer: str, hit: bool) -> None:
    _lookups[(layer, hit)].inc()


def rendered(fmt: str, seconds: float) -> None:
    RENDER_SECONDS.labels(fmt).observe(seconds)


def set_leader(leading: bool) -> None:
    LEADER.set(1 if leading else 0)


def index_sizes(posts: int, published: int, skipped: int) -> None:
    INDEX_POSTS.set(posts)
    PUBLISHED_POSTS.set(published)
    SKIPPED.set(skipped)


def config_error(failed: bool) -> None:
    CONFIG_ERROR.set(1 if failed else 0)


def source_result(category: str, url: str, *, new: int, unchanged: int, not_modified: bool,
                  error: str | None) -> None:
    """One fetch of an upstream source, labelled by its host only: a URL may
    carry a user, a password or a token in its query."""
    host = (urlsplit(url).hostname or "unknown").lower()
    if error:
        result = "error"
    elif not_modified:
        result = "not_modified"
    else:
        result = "new" if new else "unchanged"
    SOURCE_FETCHES.labels(category, host, result).inc()
    if new:
        SOURCE_NEW.labels(category, host).inc(new)
    if not error:
        SOURCE_SUCCESS.labels(category, host).set(time.time())


def classify(path: str, environ: dict[str, Any]) -> tuple[str, str]:
    """(kind, format) of a request, from a small fixed set (label values must
    not grow with what clients ask for)."""
    for prefix, kind in (("/feeds/all.", "all"), ("/feeds/all/", "all"), ("/feeds/", "category"),
                         ("/tags/", "tag")):
        if path.startswith(prefix):
            fmt = path.rsplit(".", 1)[-1] if "." in path else ""
            if fmt not in FEED_FORMATS:
                return kind, "other"
            dest = environ.get("HTTP_SEC_FETCH_DEST", "")
            return kind, "html" if dest and dest.strip().lower() == "document" else fmt
    if path.startswith("/admin"):
        return "admin", "html"
    return PAGES.get(path, "other"), "-"


StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class CountRequests:
    """WSGI middleware outermost, so that answers replayed by replay.py count too."""

    def __init__(self, app: WsgiApp) -> None:
        self.app = app
        self._children: dict[tuple[str, str, str], Any] = {}

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        def counted(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            kind, fmt = classify(environ.get("PATH_INFO", ""), environ)
            key = (kind, fmt, status[:3])
            child = self._children.get(key)
            if child is None:
                child = self._children.setdefault(key, REQUESTS.labels(*key))
            child.inc()
            return start_response(status, headers, exc_info)

        return self.app(environ, counted)
