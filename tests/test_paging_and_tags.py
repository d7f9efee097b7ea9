"""RFC 5005 archived feeds (section 4) at path URLs, the site-wide feed, and
tag feeds with Chinese names (percent-encoded UTF-8 in URLs)."""

from __future__ import annotations

import json
from urllib.parse import quote

import feedparser
import pytest
from lxml import etree
from readers_site import FEEDS_URL
from support import Server

ATOM = "{http://www.w3.org/2005/Atom}"
CAIJING = f"{FEEDS_URL}/feeds/caijing"


def atom_links(body: bytes, parent: str) -> dict[str, str]:
    root = etree.fromstring(body)
    node = root if parent == "feed" else root.find("channel")
    return {link.get("rel"): link.get("href") for link in node.findall(f"{ATOM}link")}


FH_ARCHIVE = "{http://purl.org/syndication/history/1.0}archive"


@pytest.mark.parametrize(("fmt", "parent"), [("atom", "feed"), ("rss", "channel")])
def test_current_feed_links_its_newest_archive(server: Server, fmt: str, parent: str) -> None:
    body = server.get(f"/feeds/caijing.{fmt}").content
    links = atom_links(body, parent)
    # Three posts, two per archive: archive 2 is the newest (and still filling).
    assert links["prev-archive"] == f"{CAIJING}/archive/2.{fmt}"
    assert links["self"] == f"{CAIJING}.{fmt}"
    assert not {"first", "last", "next", "previous"} & set(links)
    assert not list(etree.fromstring(body).iter(FH_ARCHIVE))   # the current feed is no archive


@pytest.mark.parametrize(("fmt", "parent"), [("atom", "feed"), ("rss", "channel")])
def test_archives_link_current_and_their_neighbours(server: Server, fmt: str,
                                                    parent: str) -> None:
    oldest = server.get(f"/feeds/caijing/archive/1.{fmt}").content
    links = atom_links(oldest, parent)
    assert links["self"] == f"{CAIJING}/archive/1.{fmt}"
    assert links["current"] == f"{CAIJING}.{fmt}"
    assert links["next-archive"] == f"{CAIJING}/archive/2.{fmt}"
    assert "prev-archive" not in links
    assert len(list(etree.fromstring(oldest).iter(FH_ARCHIVE))) == 1
    parsed = feedparser.parse(oldest)
    assert not parsed.bozo
    assert [e.title for e in parsed.entries] == ["BANANA 价格上涨", "Apple 发布 MacBook 新品"]
    newest = atom_links(server.get(f"/feeds/caijing/archive/2.{fmt}").content, parent)
    assert newest["prev-archive"] == f"{CAIJING}/archive/1.{fmt}"
    assert "next-archive" not in newest


def test_json_feed_archives_carry_the_links_in_an_extension(server: Server) -> None:
    current = json.loads(server.get("/feeds/caijing.json").content)
    assert "next_url" not in current
    assert current["_rfc5005"]["prev_archive"] == f"{CAIJING}/archive/2.json"
    oldest = json.loads(server.get("/feeds/caijing/archive/1.json").content)
    assert oldest["feed_url"] == f"{CAIJING}/archive/1.json"
    assert oldest["_rfc5005"] == {"about": "https://www.rfc-editor.org/rfc/rfc5005",
                                  "archive": True, "current": f"{CAIJING}.json",
                                  "next_archive": f"{CAIJING}/archive/2.json"}
    assert [i["title"] for i in oldest["items"]] == ["BANANA 价格上涨", "Apple 发布 MacBook 新品"]


def test_a_feed_without_posts_has_no_archive(server: Server) -> None:
    links = atom_links(server.get("/feeds/empty.atom").content, "feed")
    assert set(links) == {"self", "alternate"}
    assert server.get("/feeds/empty/archive/1.atom").status_code == 404


@pytest.mark.parametrize("path", [
    "/feeds/caijing/archive/3.rss", "/feeds/caijing/archive/99999.json",
    "/feeds/caijing/archive/0.atom", "/feeds/caijing/archive/02.rss",
    "/feeds/caijing/archive/-1.rss", "/feeds/caijing/archive/x.rss",
    "/feeds/caijing/archive/1.xml", "/feeds/empty/archive/1.rss",
    # The paged feeds (RFC 5005 §3) shifted with every post: gone, not redirected.
    "/feeds/caijing/2.rss", "/feeds/caijing/1.atom", "/tags/%E7%BB%8F%E6%B5%8E/2.rss",
])
def test_archives_past_the_end_or_not_canonical_are_404(server: Server, path: str) -> None:
    resp = server.get(path)
    assert resp.status_code == 404
    assert resp.headers["Content-Type"].startswith("text/plain")


def test_old_page_urls_say_where_the_history_went(server: Server) -> None:
    assert "prev-archive" in server.get("/feeds/caijing/2.rss").text


def test_archives_take_no_query_options(server: Server) -> None:
    resp = server.get("/feeds/caijing/archive/1.atom?limit=1")
    assert resp.status_code == 400
    assert "no query options" in resp.text
    # Parameters that are not ours (utm_*) are ignored, as everywhere.
    plain = server.get("/feeds/caijing/archive/1.atom")
    assert server.get("/feeds/caijing/archive/1.atom?utm_source=x").content == plain.content


def test_links_from_a_document_with_options_lead_to_plain_archives(server: Server) -> None:
    links = atom_links(server.get("/feeds/kunmingribao.atom?limit=1&utm_source=x").content,
                       "feed")
    assert links["self"] == f"{FEEDS_URL}/feeds/kunmingribao.atom?limit=1"
    assert links["prev-archive"] == f"{FEEDS_URL}/feeds/kunmingribao/archive/1.atom"


def test_archives_are_cached_long_but_the_open_one_is_not(server: Server) -> None:
    complete = server.get("/feeds/caijing/archive/1.rss")
    assert complete.headers["Cache-Control"] == "public, max-age=86400"
    filling = server.get("/feeds/caijing/archive/2.rss")
    assert filling.headers["Cache-Control"] == "public, max-age=300"
    held = server.get("/feeds/caijing/archive/1.rss",
                      headers={"If-None-Match": complete.headers["ETag"]})
    assert held.status_code == 304
    assert held.headers["Cache-Control"] == "public, max-age=86400"


def test_chinese_tag_feed_in_every_format(server: Server) -> None:
    tag = quote("昆明")
    for fmt, media in [("rss", "application/rss+xml"), ("atom", "application/atom+xml"),
                       ("json", "application/feed+json")]:
        resp = server.get(f"/tags/{tag}.{fmt}")
        assert resp.status_code == 200
        assert resp.headers["Content-Type"] == f"{media}; charset=utf-8"
    parsed = feedparser.parse(server.get(f"/tags/{tag}.atom").content)
    assert parsed.feed.title == "测试新闻 · 昆明"
    assert [e.title for e in parsed.entries] == ["简体中文测试：汉字与发展",
                                                 "安宁打造招商引资强磁场"]
    assert parsed.feed.links[1].href == f"{FEEDS_URL}/tags/%E6%98%86%E6%98%8E.atom"


def test_tag_feeds_archive_at_percent_encoded_paths(server: Server) -> None:
    tag = quote("经济")
    links = atom_links(server.get(f"/tags/{tag}.rss").content, "channel")
    assert links["prev-archive"] == f"{FEEDS_URL}/tags/{tag}/archive/1.rss"
    archive = server.get(f"/tags/{tag}/archive/1.rss")
    assert archive.status_code == 200
    assert atom_links(archive.content, "channel")["current"] == f"{FEEDS_URL}/tags/{tag}.rss"
    assert server.get(f"/tags/{tag}/archive/2.rss").status_code == 404


def test_unknown_tag_is_404_and_tags_are_case_sensitive(server: Server) -> None:
    assert server.get(f"/tags/{quote('不存在')}.rss").status_code == 404
    assert server.get("/tags/AI.rss").status_code == 200
    assert server.get("/tags/ai.rss").status_code == 404


def test_site_wide_feed_has_every_configured_category(server: Server) -> None:
    parsed = feedparser.parse(server.get("/feeds/all.atom").content)
    assert len(parsed.entries) == 7
    assert parsed.feed.title == "测试新闻"
    assert parsed.entries[0].title == "广告：理财产品推荐"
