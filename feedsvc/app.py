"""HTTP edge: create_app(config) serves the documents of FeedService with the
HTTP rules of DESIGN.md (conditional GET through Werkzeug, gzip computed once
per version, CORS, Cache-Control matching RSS <ttl>)."""

from __future__ import annotations

import logging
import os
import re
import threading
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from flask import Flask, Response, current_app, jsonify, request
from werkzeug.http import parse_accept_header

from feedsvc import subscriber_log, subscribers
from feedsvc.admin import Access, access
from feedsvc.clock import Clock, utcnow
from feedsvc.config import Config
from feedsvc.errors import NotFound, QueryError
from feedsvc.feeds import FeedKey, archive_complete, jekyll_key, max_age_of, parse_query
from feedsvc.index import IndexUnavailable, NotReady
from feedsvc.leader import Leader
from feedsvc.metrics import CountRequests
from feedsvc.pages import Pages, content_security_policy, tag_list_path, wants_page
from feedsvc.replay import EXPIRES, SNAPSHOT_KEY, ReplayCache
from feedsvc.service import FeedService
from feedsvc.status import status as status_of
from feedsvc.store import Document
from feedsvc.version import Snapshot

if TYPE_CHECKING:
    from feedsvc.index.pg import PgLeader

log = logging.getLogger(__name__)
_LEADERS: dict[Path, tuple[int, Leader]] = {}
_LEADERS_LOCK = threading.Lock()
RETRY_AFTER = 5   # seconds, on 503 before a first indexing is done
FEED_PATH = re.compile(r"^(?P<name>[^/]+?)(?:/(?P<page>[0-9]{1,6})"
                       r"|/archive/(?P<archive>[1-9][0-9]{0,8}))?\.(?P<fmt>[a-z]+)$")


def create_app(config: Config, *, clock: Clock = utcnow, watch: bool = True,
               service: FeedService | None = None) -> Flask:
    """Build the Flask app for a loaded, validated config."""
    app = Flask(__name__)
    # Werkzeug would answer "//x" with a 308 to an absolute URL built from the
    # request's Host header; feeds never use the Host (DESIGN.md), redirects included.
    app.url_map.merge_slashes = False
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    # With watch (serve), the leader's watcher indexes in the background and
    # feeds answer 503 until a first indexing is done; without (tests, tools),
    # start() indexes first.
    service = service or FeedService(config, clock=clock, background=watch)
    service.start()
    app.extensions["feedsvc"] = service
    app.extensions["feedsvc.pages"] = Pages(service)
    # Work that must happen once across worker processes asks this for a turn
    # (see leader.py): writing the shared index, polling, pings.
    leader = make_leader(service.config)
    app.extensions["feedsvc.leader"] = leader
    if watch:
        from feedsvc.watch import Watcher

        def writes_index() -> bool:
            if service.config.serve_only:
                return False
            return service.writing_index().private or leader.acquire()

        app.extensions["feedsvc.watcher"] = Watcher(service, is_leader=writes_index).start()
    _routes(app)
    if watch:
        # Upstream polling and WebSub pings, by the worker that leads (schedule.py).
        from feedsvc.schedule import Scheduler

        app.extensions["feedsvc.scheduler"] = Scheduler(
            service, is_leader=lambda: not service.config.serve_only and leader.acquire()).start()
    # Polled feeds are answered from the response made for the same request
    # while their version stands (replay.py).
    # Every answer is counted for /metrics and for subscriber counts, replayed ones included.
    wsgi: Any = ReplayCache(app.wsgi_app, service)
    recorder = subscribers.recorder_for(service.config, clock)
    app.extensions["feedsvc.subscribers"] = recorder.start()
    wsgi = subscribers.CountSubscribers(wsgi, recorder)
    if service.config.subscriber_log and watch:
        app.extensions["feedsvc.nginx_log"] = subscriber_log.follow(
            recorder, service.config.subscriber_log, service.config.state_dir)
    app.wsgi_app = CountRequests(wsgi)  # type: ignore[method-assign]
    app.wsgi_app = BelowFeedsUrl(app.wsgi_app, service)  # type: ignore[method-assign]
    return app


class BelowFeedsUrl:
    """Serve every URL also below the path of feeds_url (`/blog` of
    https://example.org/blog): a proxy may pass `/blog/feed.xml` on unchanged,
    or strip `/blog` first; both reach the same route."""

    def __init__(self, app: Any, service: FeedService) -> None:
        self.app, self.service = app, service

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        prefix = _path_prefix(self.service.config.feeds_url)
        path = environ.get("PATH_INFO", "")
        if prefix and path.startswith(prefix + "/"):
            environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + prefix
            environ["PATH_INFO"] = path[len(prefix):]
        return self.app(environ, start_response)


@lru_cache(maxsize=8)
def _path_prefix(feeds_url: str) -> str:
    prefix = urlsplit(feeds_url).path.rstrip("/")
    # A feeds_url ending in /feeds or /tags names our own routes, not a prefix.
    return "" if prefix in ("/feeds", "/tags") else prefix
def make_leader(config: Config) -> Leader | PgLeader:
    """One leader per machine with SQLite (a file lock in state_dir); one per
    cluster with PostgreSQL (an advisory lock in the shared database)."""
    if config.index.type == "postgres" and config.index.url:
        from feedsvc.index.pg import PgLeader

        return PgLeader(config.index.url)
    # One Leader per lock file in a process: a second app on the same state_dir
    # (tests make them) leads with the first, rather than wait for itself forever.
    path = (config.state_dir / "leader.lock").absolute()
    with _LEADERS_LOCK:
        pid, leader = _LEADERS.get(path, (0, None))
        if leader is None or pid != os.getpid():
            leader = Leader(path)
            _LEADERS[path] = (os.getpid(), leader)
        return leader


def get_service() -> FeedService:
    service: FeedService = current_app.extensions["feedsvc"]
    return service


def get_pages() -> Pages:
    pages: Pages = current_app.extensions["feedsvc.pages"]
    return pages


def _routes(app: Flask) -> None:
    @app.get("/")
    def index() -> Response:
        snap = snapshot()
        resp = conditional(get_pages().index(snap), snap.config.max_age)
        resp.headers["Content-Security-Policy"] = content_security_policy()
        return resp

    @app.get("/tags.html")
    @app.get("/tags-<int(min=2):page>.html")
    def tag_list(page: int = 1) -> Response:
        if request.path.rsplit("/", 1)[-1] != tag_list_path(page)[1:]:
            raise NotFound(f"no such page: {request.path}")      # /tags-02.html: one URL a page
        snap = snapshot()
        resp = conditional(get_pages().tag_list(page, snap), snap.config.max_age)
        resp.headers["Content-Security-Policy"] = content_security_policy()
        return resp

    @app.get("/opml.xml")
    def opml_file() -> Response:
        snap = snapshot()
        return conditional(get_pages().opml(snap), snap.config.max_age)

    @app.get("/feeds/<path:rest>")
    def category_feed(rest: str) -> Response:
        m = _match(rest)
        kind = "all" if m["name"] == "all" else "category"
        return feed_response(FeedKey(kind, m["name"], m["fmt"], int(m["archive"] or 0)))

    @app.get("/tags/<path:rest>")
    def tag_feed(rest: str) -> Response:
        m = _match(rest)
        return feed_response(FeedKey("tag", m["name"], m["fmt"], int(m["archive"] or 0)))

    @app.get("/<path:rest>")
    def jekyll_feed(rest: str) -> Response:
        # jekyll-feed's URLs (/feed.xml, /feed/<category>.xml, /feed/by_tag/<tag>.xml).
        snap = snapshot()
        key = jekyll_key("/" + rest, snap.config, snap.views)
        if key is None:
            raise NotFound(f"no such page: {request.path}")
        return feed_response(key)

    @app.get("/healthz")
    def healthz() -> Response:
        return Response("ok\n", mimetype="text/plain")

    @app.get("/readyz")
    def readyz() -> Response | tuple[Response, int]:
        """Ready to serve complete feeds: a first indexing is done and the index
        can be read (503 with the reason otherwise)."""
        service = get_service()
        info = service.index.describe()
        if info.get("ready"):
            return _plain("ready")
        why = info.get("error") or info.get("last_error") or "indexing posts" + (
            f" ({info['progress']} files)" if info.get("progress") else "")
        resp = _plain(f"not ready: {why}")
        resp.headers["Retry-After"] = str(RETRY_AFTER)
        return resp, 503

    @app.get("/status")
    def status() -> Response:
        granted = admin_access()
        if granted is Access.DENIED:
            return denied()
        resp = jsonify(status_of(get_service(), current_app.extensions["feedsvc.leader"],
                                 admin=granted is Access.ADMIN))
        resp.headers["Cache-Control"] = "no-store"
        resp.headers["Vary"] = "Authorization"
        return resp

    @app.get("/metrics")
    def metrics() -> Response:
        from feedsvc import metrics

        service = get_service()
        index = service.index
        metrics.index_sizes(len(index.posts), index.views().total(), len(index.problem_list()))
        metrics.config_error(service.config_error is not None)
        metrics.set_leader(current_app.extensions["feedsvc.leader"].is_leader)
        body, content_type = metrics.exposition(request.headers.get("Accept", ""))
        return Response(body, content_type=content_type, headers={"Cache-Control": "no-store"})

    @app.get("/admin/subscribers")
    def admin_subscribers() -> Response:
        from feedsvc import subscriber_report

        config = get_service().config
        recorder = current_app.extensions["feedsvc.subscribers"]
        if not config.admin_token:
            # Without an admin_token there is no admin page at all.
            missing = _plain(f"no such page: {request.path}")
            missing.status_code = 404
            return missing
        if not admin_authorized(request.headers.get("Authorization"), config.admin_token):
            resp = _plain("wrong or missing admin token (send Authorization: Bearer <admin_token>,"
                          " or log in with the token as password)")
            resp.status_code = 401
            resp.headers["WWW-Authenticate"] = 'Basic realm="feedsvc admin", charset="UTF-8"'
            return resp
        days = request.args.get("days", "30")
        if days not in ("30", "90"):
            raise QueryError("days must be 30 or 90")
        today = recorder.today()
        html = subscriber_report.page(recorder.store, today, int(days), config.site.title)
        resp = Response(html, mimetype="text/html")
        resp.headers["Cache-Control"] = "no-store"
        resp.headers["Content-Security-Policy"] = content_security_policy()
        return resp

    @app.errorhandler(NotFound)
    def not_found(e: NotFound) -> tuple[Response, int]:
        return _plain(str(e)), 404

    @app.errorhandler(NotReady)
    def not_ready(e: NotReady) -> tuple[Response, int]:
        # Never a partial feed: a reader retries, and keeps what it has meanwhile.
        resp = _plain(f"not ready: {e}; try again shortly")
        resp.headers["Retry-After"] = str(RETRY_AFTER)
        return resp, 503

    @app.errorhandler(IndexUnavailable)
    def unavailable(e: IndexUnavailable) -> tuple[Response, int]:
        log.error("cannot read the index: %s", e)
        resp = _plain("the feed index is unavailable for a moment; try again shortly")
        resp.headers["Retry-After"] = str(RETRY_AFTER)
        return resp, 503

    @app.errorhandler(QueryError)
    def bad_query(e: QueryError) -> tuple[Response, int]:
        return _plain(str(e)), 400

    @app.errorhandler(404)
    def unknown_path(e: Any) -> tuple[Response, int]:
        return _plain(f"no such page: {request.path}"), 404


def admin_access() -> Access:
    """What this request's `Authorization` header grants (admin.py): every admin
    page asks this, and answers `denied()` to Access.DENIED."""
    return access(request.headers.get("Authorization"), get_service().config.admin_token)


def denied() -> Response:
    resp = _plain("wrong or missing admin token (send Authorization: Bearer <admin_token>)")
    resp.status_code = 401
    resp.headers["WWW-Authenticate"] = 'Bearer realm="feedsvc"'
    return resp


def admin_authorized(authorization: str | None, token: str) -> bool:
    """`Bearer <token>`, or Basic with the token as password (any user name), so
    that a browser can open the admin page through its login prompt (admin.py)."""
    return access(authorization, token) is Access.ADMIN


def _plain(text: str) -> Response:
    resp = Response(text + "\n", mimetype="text/plain")
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _match(rest: str) -> dict[str, str]:
    m = FEED_PATH.match(rest)
    if not m:
        raise NotFound(f"no feed at {request.path} (try /feeds/<category>.rss, .atom or .json)")
    if m["page"] is not None:
        # The paged feeds (RFC 5005 §3) shifted with every new post; archives do not.
        raise NotFound(f"no pages at {request.path}: the feed "
                       f"{request.path.rsplit('/', 1)[0]}.{m['fmt']} links its archives"
                       " (rel=\"prev-archive\")")
    return m.groupdict()


def snapshot() -> Snapshot:
    """The request's snapshot (version.py): the one replay.py took for it, else one
    taken now, once, for everything that answers this request."""
    snap: Snapshot | None = request.environ.get(SNAPSHOT_KEY)
    if snap is None:
        snap = request.environ[SNAPSHOT_KEY] = get_service().snapshot()
    return snap


def feed_response(key: FeedKey) -> Response:
    snap = snapshot()
    config = snap.config
    key = canonical_key(key, request.environ.get("QUERY_STRING", ""), config)
    max_age = max_age_of(key, config)
    if key.archive and archive_complete(key, snap.views, config):
        max_age = config.archive_max_age
    expires = key.expires(max_age)
    if expires is not None:
        # filter_time's edge moves on with the clock, not with the posts.
        request.environ[EXPIRES] = expires
    if wants_page(request.headers.get("Sec-Fetch-Dest")):
        return browser_view(key, max_age, snap)
    doc = get_service().document(key, snap)
    resp = conditional(doc, max_age)
    websub = config.websub
    if websub:
        resp.headers["Link"] = (f'<{websub.hub}>; rel="hub", '
                                f'<{key.url(config.feeds_url)}>; rel="self"')
    return resp


def browser_view(key: FeedKey, max_age: int, snap: Snapshot) -> Response:
    """A person who clicked a feed link gets it as a page; `private` and `Vary`
    keep shared caches from ever handing this HTML to a feed reader."""
    resp = conditional(get_pages().feed_view(key, snap), max_age)
    resp.headers["Cache-Control"] = f"private, max-age={max_age}"
    resp.headers["Vary"] = "Accept-Encoding, Sec-Fetch-Dest"
    resp.headers["Content-Security-Policy"] = content_security_policy()
    return resp


def canonical_key(key: FeedKey, query: str, config: Config) -> FeedKey:
    # A repeated poll never gets here: replay.py answers it from the response
    # made for the same request while the feed's version stands.
    if not query:
        return key
    parsed = parse_query(key, request.args.items(multi=True), config, get_service().clock())
    if key.archive and parsed != key:
        raise QueryError("archives take no query options (they are the same for every reader)")
    return parsed


def conditional(doc: Document, max_age: int) -> Response:
    """The feed bytes with validators; Werkzeug answers 304, 412 and HEAD.

    The identity and gzip bytes of one version have distinct strong ETags
    (`H` and `H-gzip`, RFC 9110 8.8.3). A client holding either coding of the
    current version gets 304 carrying the ETag it holds, so that its cache
    finds the stored response to refresh (RFC 9111 4.3.4).
    """
    gz = accepts_gzip(request.environ.get("HTTP_ACCEPT_ENCODING", ""))
    body, etag, other = ((doc.gzip, doc.gzip_etag, doc.etag) if gz
                         else (doc.body, doc.etag, doc.gzip_etag))
    if "HTTP_IF_NONE_MATCH" in request.environ:
        held = request.if_none_match
        if held and not held.contains_weak(etag) and held.contains_weak(other):
            etag = other
    resp = Response(body, headers=feed_headers(doc, etag, gz, max_age))
    resp.make_conditional(request)
    return resp


def feed_headers(doc: Document, etag: str, gz: bool, max_age: int) -> list[tuple[str, str]]:
    headers = [("Content-Type", doc.mimetype)]
    if gz:
        headers.append(("Content-Encoding", "gzip"))
    return [*headers,
            ("Vary", "Accept-Encoding, Sec-Fetch-Dest"),
            ("Cache-Control", f"public, max-age={max_age}"),
            ("Access-Control-Allow-Origin", "*"),
            ("ETag", f'"{etag}"'),
            ("Last-Modified", doc.last_modified_http),
            ("X-Content-Type-Options", "nosniff")]


@lru_cache(maxsize=256)
def accepts_gzip(accept_encoding: str) -> bool:
    """gzip acceptable (q > 0, named or by `*`)? Cached: clients send a few
    distinct headers, over and over."""
    return parse_accept_header(accept_encoding)["gzip"] > 0
