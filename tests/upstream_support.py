"""Real HTTP servers on loopback for the upstream tests: an upstream that serves
fixture feeds (and misbehaves on request), and a WebSub hub that records pings."""

from __future__ import annotations

import contextlib
import hashlib
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

FIXTURES = Path(__file__).parent / "fixtures" / "upstream"
TYPES = {".xml": "application/xml", ".json": "application/feed+json"}


@dataclass
class Route:
    """What the upstream answers on one path."""
    body: bytes = b""
    content_type: str = "application/xml"
    status: int = 200
    location: str | None = None          # for redirects
    delay: float = 0.0                   # seconds before answering
    last_modified: str | None = "Mon, 21 Mar 2022 00:00:00 GMT"
    fail_first: int = 0                  # answer 500 this many times first
    etag: bool = True                    # send an ETag (else Last-Modified only)
    no_length: bool = False              # no Content-Length: the body runs until close
    drip: float = 0.0                    # seconds between bytes of the body (a trickling peer)

    @classmethod
    def fixture(cls, name: str) -> Route:
        return cls(FIXTURES.joinpath(name).read_bytes(), TYPES[Path(name).suffix])


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    status: int
    body: bytes = b""
    at: float = field(default_factory=time.monotonic)   # when the request arrived


@dataclass
class _State:
    routes: dict[str, Route] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    active: dict[str, int] = field(default_factory=dict)   # GETs being answered, per Host
    peak: dict[str, int] = field(default_factory=dict)     # the most at once, per Host


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self._record("GET", b"")
        st, host = self.server.state, (self.headers.get("Host") or "").rsplit(":", 1)[0]
        with st.lock:
            st.active[host] = st.active.get(host, 0) + 1
            st.peak[host] = max(st.peak.get(host, 0), st.active[host])
        try:
            self._answer(st.routes.get(self.path))
        finally:
            with st.lock:
                st.active[host] -= 1

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        self._record("POST", body)
        st = self.server.state
        route = st.routes.get(self.path, Route(status=204))
        status = 204
        with st.lock:
            if route.fail_first > 0:
                route.fail_first -= 1
                status = 500
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _record(self, method: str, body: bytes) -> None:
        self.current = Seen(method, self.path, dict(self.headers.items()), 0, body)
        with self.server.state.lock:
            self.server.state.seen.append(self.current)

    def send_response(self, code: int, message: str | None = None) -> None:
        # Recorded before the answer goes out, so a client that has it sees it here.
        self.current.status = code
        super().send_response(code, message)

    def _answer(self, route: Route | None) -> int:
        if route is None:
            return self._send(404, b"not found", "text/plain")
        if route.delay:
            time.sleep(route.delay)
        with self.server.state.lock:
            failing = route.fail_first > 0
            route.fail_first -= 1 if failing else 0
        if failing:
            return self._send(500, b"oops", "text/plain")
        if route.location is not None:
            self.send_response(route.status)
            self.send_header("Location", route.location)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return route.status
        if route.status != 200:
            return self._send(route.status, b"upstream error", "text/plain")
        etag = '"' + hashlib.sha256(route.body).hexdigest()[:16] + '"' if route.etag else None
        if (etag and self.headers.get("If-None-Match") == etag) or (
                not self.headers.get("If-None-Match") and route.last_modified
                and self.headers.get("If-Modified-Since") == route.last_modified):
            self.send_response(304)
            if etag:
                self.send_header("ETag", etag)
            self.end_headers()
            return 304
        if route.no_length:
            self.close_connection = True
        return self._send(200, route.body, route.content_type, etag, route.last_modified,
                          length=not route.no_length, drip=route.drip)

    def _send(self, status: int, body: bytes, ctype: str, etag: str | None = None,
              last_modified: str | None = None, *, length: bool = True,
              drip: float = 0.0) -> int:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        if length:
            self.send_header("Content-Length", str(len(body)))
        else:
            self.send_header("Connection", "close")
        if etag:
            self.send_header("ETag", etag)
        if last_modified:
            self.send_header("Last-Modified", last_modified)
        self.end_headers()
        # The client may stop reading (size cap): that is the point.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            if not drip:
                self.wfile.write(body)
            for i in range(len(body) if drip else 0):
                self.wfile.write(body[i:i + 1])
                self.wfile.flush()
                time.sleep(drip)
        return status


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: _State

    def handle_error(self, request: object, client_address: object) -> None:
        # A client that hangs up early (size cap, timeout) is part of the tests.
        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


class Upstream:
    """An HTTP server on a free loopback port; `routes` maps paths to answers."""

    def __init__(self) -> None:
        self.httpd = _Server(("127.0.0.1", 0), _Handler)
        self.httpd.state = _State()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def routes(self) -> dict[str, Route]:
        return self.httpd.state.routes

    def seen(self, path: str | None = None, method: str | None = None) -> list[Seen]:
        with self.httpd.state.lock:
            return [s for s in self.httpd.state.seen
                    if (path is None or s.path == path) and (method is None or s.method == method)]

    def peak(self) -> dict[str, int]:
        """Per Host header, the most GETs that were being answered at once."""
        with self.httpd.state.lock:
            return dict(self.httpd.state.peak)

    def pings(self, path: str = "/hub") -> list[dict[str, list[str]]]:
        """The form data of every POST to the hub path, in order."""
        return [parse_qs(s.body.decode()) for s in self.seen(path, "POST")]

    def start(self) -> Upstream:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@contextmanager
def upstream() -> Iterator[Upstream]:
    server = Upstream().start()
    try:
        yield server
    finally:
        server.stop()
