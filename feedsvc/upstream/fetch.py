"""HTTP for upstream sources and hub pings: the only module that imports requests.

One `requests.Session` per Fetcher, with a clear User-Agent, connect/read
timeouts plus a wall-clock deadline per request, a cap on the body size,
redirects followed by hand (so that each hop's scheme and address are
checked, and a loop ends after a few hops), urllib3 retries with backoff for
5xx and connection errors, and conditional GET with the ETag / Last-Modified
remembered from the last answer.

The deadline holds whatever the peer does. Timeouts on a socket bound each
wait for a byte, not the whole: a server that drips its TLS handshake, its
headers or its body a byte a second never trips them. So every socket a
request opens or reuses is registered with a watchdog (`_Deadline`), which
shuts it down when the deadline passes; the blocked read returns at once, in
whatever phase it was, and the request fails with "took longer than N s".

Name resolution happens before there is a socket to shut down, and
getaddrinfo(3) cannot be interrupted: a resolver that never answers would
hold the request for as long as the system resolver's own retries last. So
every lookup (the private-address check's and the connection's) runs in a
thread of its own that the request waits for only until the deadline
(`_Deadline.resolve`); the connection then goes to the addresses found, while
the Host header and TLS name stay the URL's.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError, ReadTimeoutError
from urllib3.util.retry import Retry

from feedsvc import __version__
from feedsvc.errors import FetchError

ACCEPT = ("application/feed+json, application/atom+xml, application/rss+xml, "
          "application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5")
REDIRECTS = frozenset({301, 302, 303, 307, 308})
CHUNK = 64 * 1024

# (host, port) → getaddrinfo-style tuples; socket.getaddrinfo unless a test
# points lookups at a DNS server of its own.
Resolver = Callable[[str, int], list[tuple[Any, ...]]]


def system_resolver(host: str, port: int) -> list[tuple[Any, ...]]:
    return socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)


# -- the wall-clock deadline ------------------------------------------------------
class _Deadline:
    """Shuts down every socket registered with it once `seconds` have passed.

    Each socket is registered as a duplicate of its descriptor: shutdown(2)
    acts on the socket itself, so it also ends a TLS handshake or a read on the
    SSL socket that later wraps the same descriptor, and we never touch a
    descriptor that someone else may have closed and reused.
    """

    def __init__(self, seconds: float, resolver: Resolver = system_resolver) -> None:
        self.seconds = seconds
        self.resolver = resolver
        self._ends = time.monotonic() + seconds
        self.expired = False
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, sock: socket.socket) -> None:
        try:
            dup = socket.socket(fileno=os.dup(sock.fileno()))
        except OSError:
            return                       # already closed: nothing to stop
        with self._lock:
            self._socks.append(dup)
            expired = self.expired
        if expired:
            _shutdown(dup)

    def resolve(self, host: str, port: int) -> list[tuple[Any, ...]]:
        """The resolver's answer for host, or OSError once the deadline passes.

        The lookup runs in a daemon thread: when the deadline comes first it is
        left to end by itself (the system resolver gives up after its own
        timeouts), holding nothing of the request's."""
        answer: list[list[tuple[Any, ...]]] = []
        failure: list[OSError] = []

        def lookup() -> None:
            try:
                answer.append(self.resolver(host, port))
            except OSError as e:
                failure.append(e)

        worker = threading.Thread(target=lookup, name=f"resolve {host}", daemon=True)
        worker.start()
        worker.join(max(0.0, self._ends - time.monotonic()))
        if failure:
            raise failure[0]
        if not answer:
            self._expire()               # now, not a moment later when the timer fires
            raise socket.gaierror(f"no answer for {host} within the deadline")
        return answer[0]

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            socks = list(self._socks)
        for sock in socks:
            _shutdown(sock)

    def close(self) -> None:
        self._timer.cancel()
        with self._lock:
            socks, self._socks = self._socks, []
        for sock in socks:
            sock.close()


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


_active = threading.local()   # the _Deadline of the request this thread is making


def _watch(sock: socket.socket | None) -> None:
    deadline: _Deadline | None = getattr(_active, "deadline", None)
    if deadline is not None and sock is not None:
        deadline.watch(sock)


def _resolved_conn(conn: HTTPConnection, connect: Callable[[], socket.socket]) -> socket.socket:
    """connect() to the addresses the deadline's resolver finds for conn's host,
    one after the other as create_connection does, then watch the socket."""
    name: str = conn._dns_host
    deadline: _Deadline | None = getattr(_active, "deadline", None)
    if deadline is None or _is_address(name):
        sock = connect()
    else:
        try:
            infos = deadline.resolve(name, conn.port or 80)
        except OSError as e:
            raise NameResolutionError(conn.host, conn, socket.gaierror(str(e))) from e
        sock = _connect_any(conn, connect, name, list(dict.fromkeys(
            str(info[4][0]) for info in infos)))
    _watch(sock)
    return sock


def _connect_any(conn: HTTPConnection, connect: Callable[[], socket.socket], name: str,
                 addresses: list[str]) -> socket.socket:
    error: Exception = NameResolutionError(conn.host, conn, socket.gaierror(f"no address for {name}"))
    for address in addresses:
        # urllib3 connects to _dns_host; host (the Host header, SNI) reads it
        # too, so it is set back before connect() goes on to TLS.
        conn._dns_host = address
        try:
            return connect()
        except (NewConnectionError, ConnectTimeoutError) as e:
            error = e
        finally:
            conn._dns_host = name
    raise error


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        return False
    return True


class _WatchedHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        return _resolved_conn(self, super()._new_conn)


class _WatchedHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        return _resolved_conn(self, super()._new_conn)


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection

    def _get_conn(self, timeout: float | None = None) -> Any:
        conn = super()._get_conn(timeout)
        _watch(getattr(conn, "sock", None))     # a kept-alive connection, reused
        return conn


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection

    def _get_conn(self, timeout: float | None = None) -> Any:
        conn = super()._get_conn(timeout)
        _watch(getattr(conn, "sock", None))
        return conn


class _Retry(Retry):
    """No backoff sleep once the deadline has passed: the next try is cut at once."""

    def sleep(self, response: Any = None) -> None:
        deadline: _Deadline | None = getattr(_active, "deadline", None)
        if deadline is None or not deadline.expired:
            super().sleep(response)


class _WatchedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _WatchedHTTPPool,
                                                   "https": _WatchedHTTPSPool}


@dataclass(frozen=True)
class Validators:
    """What the last 200 answer said, for the next conditional GET."""
    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True)
class Fetched:
    status: int                   # 200, or 304 (nothing read)
    url: str                      # after redirects
    body: bytes
    content_type: str
    validators: Validators


@dataclass(frozen=True)
class Limits:
    connect_timeout: float = 5.0
    read_timeout: float = 20.0
    deadline: float = 60.0        # whole request, all retries and hops included
    max_bytes: int = 10 * 2**20
    max_redirects: int = 5
    retries: int = 2
    backoff: float = 0.5          # urllib3 backoff_factor: 0, 2×, 4× … seconds between tries


class Fetcher:
    def __init__(self, limits: Limits | None = None, *, site_url: str = "",
                 allow_private: bool = True, resolver: Resolver = system_resolver) -> None:
        self.limits = limits or Limits()
        self.resolver = resolver
        self.allow_private = allow_private
        self.session = requests.Session()
        self.session.headers["User-Agent"] = user_agent(site_url)
        self.session.max_redirects = self.limits.max_redirects
        retry = _Retry(
            total=self.limits.retries, connect=self.limits.retries, read=self.limits.retries,
            status=self.limits.retries, status_forcelist=(500, 502, 503, 504),
            allowed_methods=frozenset({"GET", "POST"}), backoff_factor=self.limits.backoff,
            backoff_max=10, raise_on_status=False, respect_retry_after_header=False,
            redirect=False,
        )
        adapter = _WatchedAdapter(max_retries=retry)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def close(self) -> None:
        self.session.close()

    @contextlib.contextmanager
    def deadline(self) -> Iterator[_Deadline]:
        """Every request made in this block, on this thread, ends by
        `limits.deadline` seconds from now (FetchError), whatever the peer does."""
        if getattr(_active, "deadline", None) is not None:
            yield _active.deadline       # nested: the outer deadline holds
            return
        watchdog = _active.deadline = _Deadline(self.limits.deadline, self.resolver)
        try:
            yield watchdog
        except (FetchError, requests.RequestException, OSError) as e:
            if watchdog.expired:
                raise self._late() from e
            raise
        finally:
            _active.deadline = None
            watchdog.close()
        if watchdog.expired:
            # A body without Content-Length ends "cleanly" when its socket is shut.
            raise self._late()

    def _late(self) -> FetchError:
        return FetchError(f"took longer than {self.limits.deadline:g} s")

    # -- GET ---------------------------------------------------------------
    def get(self, url: str, known: Validators = Validators()) -> Fetched:
        """Fetch a feed; a 304 answer comes back with an empty body.

        Raises FetchError with a short reason for anything but 200 and 304.
        """
        headers = {"Accept": ACCEPT}
        if known.etag:
            headers["If-None-Match"] = known.etag
        if known.last_modified:
            headers["If-Modified-Since"] = known.last_modified
        start = time.monotonic()
        with self.deadline():
            resp = self._follow(url, headers, start)
            with resp:
                if resp.status_code == 304:
                    return Fetched(304, resp.url, b"", "", known)
                if resp.status_code != 200:
                    raise FetchError(f"HTTP {resp.status_code} {resp.reason or ''}".strip())
                body = self._read(resp, start)
        return Fetched(200, resp.url, body, resp.headers.get("Content-Type", ""),
                       Validators(resp.headers.get("ETag"), resp.headers.get("Last-Modified")))

    def _follow(self, url: str, headers: dict[str, str], start: float) -> requests.Response:
        for _hop in range(self.limits.max_redirects + 1):
            self._check_target(url)
            resp = self._send("GET", url, headers=headers, stream=True)
            if resp.status_code not in REDIRECTS:
                return resp
            location = resp.headers.get("Location")
            resp.close()
            if not location:
                raise FetchError(f"HTTP {resp.status_code} without a Location")
            url = urljoin(url, location)
            if time.monotonic() - start > self.limits.deadline:
                raise FetchError(f"took longer than {self.limits.deadline:g} s")
        raise FetchError(f"more than {self.limits.max_redirects} redirects")

    def _read(self, resp: requests.Response, start: float) -> bytes:
        cap = self.limits.max_bytes
        declared = resp.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > cap:
            raise FetchError(f"body of {int(declared)} bytes is over the {cap}-byte limit")
        chunks, size = [], 0
        try:
            for chunk in resp.iter_content(CHUNK):
                size += len(chunk)
                if size > cap:
                    raise FetchError(f"body is over the {cap}-byte limit")
                if time.monotonic() - start > self.limits.deadline:
                    raise FetchError(f"took longer than {self.limits.deadline:g} s")
                chunks.append(chunk)
        except requests.RequestException as e:
            raise FetchError(_reason(e)) from e
        return b"".join(chunks)

    # -- POST (WebSub pings) ---------------------------------------------------
    def post_form(self, url: str, data: dict[str, str]) -> int:
        """POST a form (retried on 5xx by urllib3); return the final status.

        The hub is the admin's choice, not an upstream's: no private-address check.
        """
        self._check_target(url, private_ok=True)
        with self.deadline():
            resp = self._send("POST", url, data=data)
            resp.close()
        return resp.status_code

    # -- shared ------------------------------------------------------------------
    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        timeout = (self.limits.connect_timeout, self.limits.read_timeout)
        try:
            return self.session.request(method, url, timeout=timeout,
                                        allow_redirects=False, **kwargs)
        except requests.RequestException as e:
            raise FetchError(_reason(e)) from e

    def _check_target(self, url: str, *, private_ok: bool = False) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise FetchError(f"refused to follow {url!r}: only http and https URLs")
        if not (self.allow_private or private_ok) and self._is_private(parts.hostname, parts.port):
            raise FetchError(f"refused {parts.hostname}: a private, loopback or link-local "
                             "address (allow_private_sources is false)")

    def _is_private(self, host: str, port: int | None) -> bool:
        """True when any address the name resolves to is not public.

        The check runs before each hop, within the request's deadline; a name
        that resolves differently a moment later (DNS rebinding) is not caught here.
        """
        deadline: _Deadline | None = getattr(_active, "deadline", None)
        try:
            infos = (deadline.resolve(host, port or 80) if deadline is not None
                     else self.resolver(host, port or 80))
        except OSError as e:
            raise FetchError(f"cannot resolve {host}: {e}") from e
        return any(_not_public(str(info[4][0])) for info in infos)


def user_agent(site_url: str) -> str:
    """Names us and the site we collect for, so an upstream admin knows whom to ask."""
    return f"feedsvc/{__version__} (+{site_url})" if site_url else f"feedsvc/{__version__}"


def _not_public(address: str) -> bool:
    addr = ipaddress.ip_address(address.split("%")[0])
    # not is_global also covers 100.64.0.0/10 (carrier-grade NAT), which is not
    # "private" to ipaddress; Alibaba Cloud's metadata service is 100.100.100.200.
    return bool(not addr.is_global or addr.is_private or addr.is_loopback or addr.is_link_local
                or addr.is_reserved or addr.is_multicast or addr.is_unspecified)


def _reason(e: requests.RequestException) -> str:
    """A one-line reason for a failed request (requests' messages nest deeply)."""
    kinds: list[tuple[type[Exception], str]] = [
        (requests.ConnectTimeout, "connection timed out"),
        (requests.ReadTimeout, "timed out waiting for the answer"),
        (requests.exceptions.RetryError, "still failing after retries"),
        (requests.ConnectionError, "connection failed"),
        (requests.exceptions.ChunkedEncodingError, "connection broken while reading"),
        (requests.exceptions.ContentDecodingError, "cannot decode the compressed body"),
        (requests.exceptions.InvalidURL, "invalid URL"),
    ]
    inner = getattr(e.args[0], "reason", None) if e.args else None
    if isinstance(inner, ReadTimeoutError):
        return "timed out waiting for the answer"
    for kind, text in kinds:
        if isinstance(e, kind):
            return text
    return type(e).__name__
