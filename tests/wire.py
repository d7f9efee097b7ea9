"""HTTP exactly as it goes over the wire (no automatic decompression, no
default Accept-Encoding), for tests that check bytes, codings and 304s."""

from __future__ import annotations

import http.client
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass
class Reply:
    status: int
    headers: dict[str, str]      # lower-case names
    body: bytes

    @property
    def etag(self) -> str:
        return self.headers.get("etag", "")


def fetch(url: str, path: str, headers: dict[str, str] | None = None,
          method: str = "GET") -> Reply:
    return fetch_all(url, [path], headers, method)[0]


def fetch_all(url: str, paths: list[str], headers: dict[str, str] | None = None,
              method: str = "GET") -> list[Reply]:
    """Several requests, one after another on one kept-alive connection (so one
    worker process answers them all)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    try:
        return [_exchange(conn, path, headers, method) for path in paths]
    finally:
        conn.close()


def _exchange(conn: http.client.HTTPConnection, path: str, headers: dict[str, str] | None,
              method: str) -> Reply:
    # skip_accept_encoding: http.client would otherwise send "identity" itself.
    conn.putrequest(method, path, skip_accept_encoding=True)
    for name, value in (headers or {}).items():
        conn.putheader(name, value)
    conn.endheaders()
    resp = conn.getresponse()
    body = resp.read()
    return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, body)
