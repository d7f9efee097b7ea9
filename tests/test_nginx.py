"""deploy/nginx/feedsvc.conf, as shipped but for its ports and paths, in a real
nginx (Debian's, installed by scripts/test-deps) in front of a real
`feedsvc serve` on loopback: what a reader gets through it is what feedsvc
says, byte for byte, and slow clients stay in nginx."""

from __future__ import annotations

import http.client
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from support import REPO, Server, make_site, post, running, subscriber_stats, wait_for

sys.path.insert(0, str(REPO / "bench"))
import contextlib

from nginx_harness import Nginx, available, subscriber_log  # noqa: E402

MAX_AGE = 3
FEEDS = ["/feeds/kunmingribao.rss", "/feeds/kunmingribao.atom", "/feeds/kunmingribao.json",
         "/feeds/all.atom", "/tags/%E6%98%86%E6%98%8E.rss", "/feeds/empty.rss"]
CODINGS = [{"Accept-Encoding": "identity"}, {"Accept-Encoding": "gzip"},
           {"Accept-Encoding": "gzip, deflate, br"}]

assert available(), "nginx is missing: scripts/test-deps (make test) installs Debian's nginx"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Nginx]]:
    root = tmp_path_factory.mktemp("nginx")
    config = make_site(root / "site", fixture="site", config={
        "max_age": MAX_AGE, "trusted_proxies": ["127.0.0.1"],
        "subscriber_log": str(subscriber_log(root / "nginx"))})
    with running(config, workers=2) as server, \
            Nginx(root / "nginx", upstream_port=server.port) as nginx:
        yield server, nginx


def raw(url: str, headers: dict[str, str]) -> requests.Response:
    """A response with its body as sent (gzip bytes stay gzip bytes)."""
    response = requests.get(url, headers=headers, stream=True, timeout=10)
    response._content = response.raw.read(decode_content=False)
    return response


SAME = ("ETag", "Last-Modified", "Cache-Control", "Vary", "Content-Type", "Content-Encoding",
        "Access-Control-Allow-Origin")


@pytest.mark.parametrize("path", FEEDS)
def test_bytes_and_validators_pass_through_unchanged(stack: tuple[Server, Nginx], path: str) -> None:
    server, nginx = stack
    for headers in CODINGS:
        direct = raw(server.url + path, headers)
        assert direct.status_code == 200
        for _ in range(2):            # a miss that fills the cache, then a hit from it
            proxied = raw(nginx.url + path, headers)
            assert proxied.status_code == 200
            assert proxied.content == direct.content
            for name in SAME:
                assert proxied.headers.get(name) == direct.headers.get(name), name
        assert proxied.headers["X-Cache-Status"] == "HIT"


def test_a_held_etag_gets_304_from_nginx(stack: tuple[Server, Nginx]) -> None:
    _, nginx = stack
    path = nginx.url + "/feeds/kunmingribao.atom"
    for headers in CODINGS[:2]:
        first = raw(path, headers)
        again = raw(path, {**headers, "If-None-Match": first.headers["ETag"]})
        assert again.status_code == 304 and again.content == b""
        assert again.headers["ETag"] == first.headers["ETag"]
        assert again.headers["Cache-Control"] == first.headers["Cache-Control"]
        # If-Modified-Since: "not newer than", not only equality.
        since = raw(path, {**headers, "If-Modified-Since": "Fri, 01 Jan 2100 00:00:00 GMT"})
        assert since.status_code == 304
        other = raw(path, {**headers, "If-None-Match": '"0000"'})
        assert other.status_code == 200 and other.content == first.content


def test_the_browser_view_never_reaches_a_feed_reader(stack: tuple[Server, Nginx]) -> None:
    _, nginx = stack
    path = nginx.url + "/feeds/caijing.rss"
    for _ in range(3):
        page = raw(path, {"Sec-Fetch-Dest": "document", "Accept-Encoding": "gzip"})
        assert page.headers["Content-Type"].startswith("text/html")
        assert page.headers["Cache-Control"].startswith("private")
        for dest in ({}, {"Sec-Fetch-Dest": "empty"}, {"Sec-Fetch-Dest": "documentx"}):
            feed = raw(path, {"Accept-Encoding": "gzip", **dest})
            assert feed.headers["Content-Type"].startswith("application/rss+xml"), dest
    # And the other way round: a cached feed is never what the browser gets.
    page = raw(path, {"Sec-Fetch-Dest": "document"})
    assert page.headers["Content-Type"].startswith("text/html")
    assert page.headers["X-Cache-Status"] == "BYPASS"


def test_a_new_post_is_visible_within_max_age(stack: tuple[Server, Nginx]) -> None:
    server, nginx = stack
    path = nginx.url + "/feeds/caijing.json"
    assert raw(path, {}).status_code == 200
    assert raw(path, {}).headers["X-Cache-Status"] == "HIT"
    posts = server.config.parent / "_posts"
    (posts / "2030-01-01-nginx-new.md").write_text(
        post("经由nginx的新文章", "2024-01-02 10:00:00 +0800", "caijing"), encoding="utf-8")
    t0 = time.monotonic()
    while "经由nginx的新文章" not in requests.get(path, timeout=10).text:
        # max_age, plus the watcher's second, plus one poll served stale
        # while nginx refreshes in the background.
        assert time.monotonic() - t0 < MAX_AGE + 5, "the new post did not show through nginx"
        time.sleep(0.2)


def test_an_expired_entry_is_revalidated_with_its_etag(stack: tuple[Server, Nginx]) -> None:
    _, nginx = stack
    path = nginx.url + "/feeds/world.atom"
    first = raw(path, {})
    time.sleep(MAX_AGE + 1)
    statuses = []
    for _ in range(4):
        again = raw(path, {})
        assert again.content == first.content and again.headers["ETag"] == first.headers["ETag"]
        statuses.append(again.headers["X-Cache-Status"])
        time.sleep(0.2)
    # The first poll after expiry is answered stale while nginx asks feedsvc
    # with If-None-Match in the background; feedsvc's 304 renews the entry.
    assert statuses[0] == "STALE" and "REVALIDATED" not in statuses[:1], statuses
    assert statuses[-1] == "HIT", statuses


def _slow_client(stop: threading.Event, sockets: list[socket.socket], port: int) -> None:
    head = b"GET /feeds/kunmingribao.rss HTTP/1.1\r\nHost: x\r\nUser-Agent: slow\r\n"
    for i in range(len(head)):
        if stop.is_set():
            return
        for s in sockets:
            with contextlib.suppress(OSError):
                s.send(head[i:i + 1])
        stop.wait(1.0)


def test_slow_clients_do_not_delay_a_normal_request(stack: tuple[Server, Nginx]) -> None:
    _, nginx = stack
    sockets = [socket.create_connection(("127.0.0.1", nginx.port)) for _ in range(100)]
    stop = threading.Event()
    sender = threading.Thread(target=_slow_client, args=(stop, sockets, nginx.port), daemon=True)
    sender.start()
    try:
        time.sleep(1.5)
        worst = 0.0
        for i in range(10):
            t0 = time.monotonic()
            # A cache miss every other time (a new query), so feedsvc answers too.
            reply = requests.get(f"{nginx.url}/feeds/kunmingribao.rss?limit={1 + i % 2 * i}",
                                 timeout=10)
            worst = max(worst, time.monotonic() - t0)
            assert reply.status_code == 200
            time.sleep(0.3)
        assert worst < 1.0, f"a normal request took {worst:.2f} s beside 100 slow clients"
    finally:
        stop.set()
        sender.join()
        for s in sockets:
            s.close()


def test_each_client_is_rate_limited_but_loopback(stack: tuple[Server, Nginx]) -> None:
    _, nginx = stack

    def burst(source: str) -> list[int]:
        conn = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=10,
                                          source_address=(source, 0))
        statuses = []
        for _ in range(80):
            conn.request("GET", "/feeds/kunmingribao.rss")
            response = conn.getresponse()
            response.read()
            statuses.append(response.status)
        conn.close()
        return statuses

    remote = burst("127.0.0.2")           # another address of the loopback network
    assert remote[:50] == [200] * 50 and 429 in remote[50:]
    assert set(burst("127.0.0.1")) == {200}


def test_metrics_only_for_this_machine(stack: tuple[Server, Nginx]) -> None:
    _, nginx = stack
    conn = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=10,
                                      source_address=("127.0.0.3", 0))
    conn.request("GET", "/metrics")
    assert conn.getresponse().status == 403


def test_the_shipped_config_is_what_runs() -> None:
    """Only the listen lines, the upstream's port and the cache path differ."""
    shipped = (REPO / "deploy" / "nginx" / "feedsvc.conf").read_text(encoding="utf-8")
    from nginx_harness import render_site

    rendered = render_site(shipped, port=1, upstream_port=2, prefix=Path("/p"))
    import difflib

    changed = [line for line in difflib.ndiff(shipped.splitlines(), rendered.splitlines())
               if line.startswith(("- ", "+ "))]
    assert sorted(changed) == sorted([
                       "-     listen 80;", "-     listen [::]:80;", "+     listen 127.0.0.1:1;",
                       "-     server 127.0.0.1:8000;          # `feedsvc serve --host 127.0.0.1 "
                       "--port 8000`",
                       "+     server 127.0.0.1:2;          # `feedsvc serve --host 127.0.0.1 "
                       "--port 8000`",
                       "- proxy_cache_path /var/cache/nginx/feedsvc levels=1:2 keys_zone=feedsvc:10m",
                       "+ proxy_cache_path /p/cache levels=1:2 keys_zone=feedsvc:10m",
                       "-     access_log /var/log/nginx/feedsvc.access.log combined buffer=64k "
                       "flush=5s;",
                       "+     access_log /p/access.log combined buffer=64k flush=5s;",
                       "-         access_log /var/log/nginx/feedsvc.access.log combined buffer=64k "
                       "flush=5s;",
                       "+         access_log /p/access.log combined buffer=64k flush=5s;",
                       "-         access_log /var/log/feedsvc/nginx-subscribers.log "
                       "feedsvc_subscribers",
                       "+         access_log /p/subscribers.log feedsvc_subscribers"])


def test_polls_answered_from_the_cache_are_counted(stack: tuple[Server, Nginx]) -> None:
    """nginx logs a line per feed request to the file feedsvc's subscriber_log
    reads, so that readers whose polls never reach feedsvc are counted too."""
    server, nginx = stack
    path = "/feeds/world.rss"
    requests.get(nginx.url + path, timeout=10)
    agents = ["Feedly/1.0 (+http://www.feedly.com/fetcher.html; 77 subscribers; like FeedFetcher-Google)",
              "Reader One/1.0", "Reader Two/2.0", "Reader One/1.0"]
    for ua in agents:
        reply = requests.get(nginx.url + path, headers={"User-Agent": ua}, timeout=10)
        assert reply.headers["X-Cache-Status"] == "HIT"     # feedsvc never saw these

    def counted() -> dict[str, str] | None:
        row = subscriber_stats(server.config).get(path, {})
        return row if row.get("Feedly") == "77" else None

    row = wait_for(counted, 30, 0.5)
    # Reader One, Reader Two, and python-requests of the first request.
    assert row["direct readers"] == "3"
