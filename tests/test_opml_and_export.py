"""`/opml.xml` for importing every category at once, and `feedsvc build`
writing the index page, OPML and every feed exactly as `serve` answers them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from lxml import etree
from readers_site import CONFIG, FEEDS_URL
from support import Server, running


@pytest.fixture(scope="module")
def built(served_site: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("out")
    done = subprocess.run([sys.executable, "-m", "feedsvc", "build", "--config", str(served_site),
                           "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return out


def test_opml_lists_every_category_feed_as_a_reader_imports_it(server: Server) -> None:
    resp = server.get("/opml.xml")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "text/x-opml; charset=utf-8"
    root = etree.fromstring(resp.content)     # well-formed XML, or this raises
    assert root.tag == "opml" and root.get("version") == "2.0"
    assert root.findtext("head/title") == "测试新闻"
    outlines = root.findall("body/outline")
    assert [o.get("xmlUrl") for o in outlines] == \
        [f"{FEEDS_URL}/feeds/{slug}.rss" for slug in CONFIG["categories"]]
    for outline, cat in zip(outlines, CONFIG["categories"].values(), strict=True):
        assert outline.get("type") == "rss"
        assert outline.get("text") == outline.get("title") == cat["title"]
        assert outline.get("htmlUrl") == cat.get("link", "https://news.example.com/")
        feed = server.get(outline.get("xmlUrl")[len(FEEDS_URL):])
        assert feed.status_code == 200
        assert feed.headers["Content-Type"] == "application/rss+xml; charset=utf-8"
        channel_title = etree.fromstring(feed.content).findtext("channel/title")
        assert channel_title == cat["title"]


def test_opml_bytes_and_etag_are_stable(server: Server, served_site: Path) -> None:
    first = server.get("/opml.xml")
    with running(served_site) as other:
        again = other.get("/opml.xml")
    assert again.content == first.content
    assert again.headers["ETag"] == first.headers["ETag"]
    assert server.get("/opml.xml", headers={"If-None-Match": first.headers["ETag"]}
                      ).status_code == 304


@pytest.mark.parametrize("path", [
    "/index.html", "/opml.xml", "/feeds/caijing.rss", "/feeds/caijing/archive/2.rss",
    "/feeds/caijing/archive/2.atom", "/feeds/caijing/archive/1.json", "/feeds/all.atom",
    "/feeds/all/archive/1.rss", "/tags/昆明/archive/1.atom",
    "/tags/昆明.json", "/tags/New York.rss", "/tags/<tag>.atom",
])
def test_build_writes_what_serve_answers(server: Server, built: Path, path: str) -> None:
    url = "/" if path == "/index.html" else path
    resp = server.get(url)
    assert resp.status_code == 200
    assert (built / path.lstrip("/")).read_bytes() == resp.content


def test_build_writes_every_archive_and_nothing_past_the_end(built: Path) -> None:
    assert (built / "feeds/caijing/archive/1.rss").exists()
    assert (built / "feeds/caijing/archive/2.rss").exists()
    assert not (built / "feeds/caijing/archive/3.rss").exists()
    assert not (built / "feeds/caijing/2.rss").exists()    # no paged feeds (RFC 5005 §3)
