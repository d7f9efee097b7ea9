"""The day a Jekyll site switches from jekyll-feed to feedsvc, seen by a real
reader: newsboat subscribes to jekyll-feed's /feed.xml (the file Jekyll wrote,
served over loopback), reloads, then the same URL is answered by feedsvc and
newsboat reloads again: zero new articles, none duplicated, the same dates.

The URL stays the same because newsboat talks to a proxy of the test's own
(tests/tcp_proxy.py) that is pointed at the static server, then at feedsvc.
The two posts whose instants differ on purpose (README "Switching from
jekyll-feed") are left out of this site, so that every date must match."""

from __future__ import annotations

import functools
import os
import shutil
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from jekyll_support import build, copy_site, desmartify
from support import running
from tcp_proxy import TcpProxy
from test_jekyll_compat import ALLOWED


@pytest.fixture
def static_server(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    out = tmp_path / "_site"
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(out))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield out, httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()


def newsboat_reload(home: Path, url: str) -> list[tuple[str, str, int, int]]:
    """`newsboat -x reload` with a config of its own; the articles it holds as
    (guid, title, pubDate, unread), in the order of its cache."""
    binary = shutil.which("newsboat")
    if binary is None:
        pytest.fail("newsboat is not installed: run `bash scripts/test-deps`")
    (home / "urls").write_text(url + "\n")
    (home / "config").write_text("reload-threads 1\nsuppress-first-reload no\n")
    proc = subprocess.run([binary, "-u", str(home / "urls"), "-c", str(home / "cache.db"),
                           "-C", str(home / "config"), "-x", "reload"],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HOME": str(home)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with sqlite3.connect(home / "cache.db") as db:
        rows = db.execute("SELECT guid, title, pubDate, unread FROM rss_item "
                          "WHERE feedurl = ? ORDER BY id", (url,)).fetchall()
    return [(str(g), str(t), int(d), int(u)) for g, t, d, u in rows]


def feed_etag(home: Path) -> str:
    with sqlite3.connect(home / "cache.db") as db:
        return str(db.execute("SELECT etag FROM rss_feed").fetchone()[0])


@pytest.mark.timeout(600)
def test_newsboat_sees_nothing_new_after_the_switch(
        tmp_path: Path, static_server: tuple[Path, int]) -> None:
    out, static_port = static_server
    config = copy_site(tmp_path / "site")
    for path in (config.parent / "_posts").iterdir():
        if any(path.stem.endswith(slug) for slug in ALLOWED):
            path.unlink()
    build(config.parent, out)
    home = tmp_path / "newsboat"
    home.mkdir()
    with TcpProxy(("127.0.0.1", static_port)) as proxy:
        url = f"http://127.0.0.1:{proxy.port}/feed.xml"
        before = newsboat_reload(home, url)
        assert len(before) == 24, before          # the 26 of the site less the two above
        with sqlite3.connect(home / "cache.db") as db:
            db.execute("UPDATE rss_item SET unread = 0")   # the subscriber reads them all
            # The static file's Last-Modified is the build's time, after every post's:
            # newsboat would ask If-Modified-Since and feedsvc answer 304, proving
            # nothing. Forgotten, so that newsboat must take feedsvc's feed and merge it.
            db.execute("UPDATE rss_feed SET lastmodified = 0, etag = ''")
        before = [(g, t, d, 0) for g, t, d, _ in before]
        with running(config) as feedsvc:
            proxy.target = ("127.0.0.1", feedsvc.port)
            assert feedsvc.get("/feed.xml").status_code == 200
            after = newsboat_reload(home, url)
            etag = feedsvc.get("/feed.xml").headers["ETag"]
            assert feed_etag(home) == etag, "newsboat did not take feedsvc's feed"
            again = newsboat_reload(home, url)     # and a poll after that: still nothing
    assert len({g for g, *_ in after}) == len(after), "an article is duplicated"
    assert not [a for a in after if a[3]], "newsboat shows unread (new) articles"
    # Titles may lose jekyll-feed's smartify (typographic quotes): an allowed difference.
    plain = [(g, desmartify(t), d, u) for g, t, d, u in before]
    assert [(g, desmartify(t), d, u) for g, t, d, u in after] == plain, \
        "an article is new, gone, retitled or redated"
    assert [(g, desmartify(t), d, u) for g, t, d, u in again] == plain
