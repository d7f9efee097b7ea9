"""RFC 5005 paged feeds at path URLs, the site-wide feed, and tag feeds with
Chinese names (percent-encoded UTF-8 in URLs)."""

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


@pytest.mark.parametrize(("fmt", "parent"), [("atom", "feed"), ("rss", "channel")])
def test_first_page_links_next_and_last_but_no_previous(server: Server, fmt: str,
                                                        parent: str) -> None:
    links = atom_links(server.get(f"/feeds/caijing.{fmt}").content, parent)
    assert links["first"] == f"{CAIJING}.{fmt}"
    assert links["next"] == links["last"] == f"{CAIJING}/2.{fmt}"
    assert links["self"] == f"{CAIJING}.{fmt}"
    assert "previous" not in links


@pytest.mark.parametrize(("fmt", "parent"), [("atom", "feed"), ("rss", "channel")])
def test_last_page_links_previous_and_first_but_no_next(server: Server, fmt: str,
                                                        parent: str) -> None:
    body = server.get(f"/feeds/caijing/2.{fmt}").content
    links = atom_links(body, parent)
    assert links["previous"] == links["first"] == f"{CAIJING}.{fmt}"
    assert links["last"] == links["self"] == f"{CAIJING}/2.{fmt}"
    assert "next" not in links
    parsed = feedparser.parse(body)
    assert not parsed.bozo
    assert [e.title for e in parsed.entries] == ["Apple 发布 MacBook 新品"]


def test_json_feed_pages_through_next_url(server: Server) -> None:
    first = json.loads(server.get("/feeds/caijing.json").content)
    assert [i["title"] for i in first["items"]] == ["广告：理财产品推荐", "BANANA 价格上涨"]
    assert first["next_url"] == f"{CAIJING}/2.json"
    last = json.loads(server.get("/feeds/caijing/2.json").content)
    assert last["feed_url"] == f"{CAIJING}/2.json"
    assert "next_url" not in last


def test_a_feed_on_one_page_has_no_paging_links(server: Server) -> None:
    links = atom_links(server.get("/feeds/kunmingribao.atom").content, "feed")
    assert set(links) == {"self", "alternate"}


@pytest.mark.parametrize("path", [
    "/feeds/caijing/3.rss", "/feeds/caijing/99999.json", "/feeds/caijing/1.atom",
    "/feeds/caijing/0.rss", "/feeds/caijing/02.rss", "/feeds/empty/2.rss",
])
def test_pages_past_the_end_or_not_canonical_are_404(server: Server, path: str) -> None:
    resp = server.get(path)
    assert resp.status_code == 404
    assert resp.headers["Content-Type"].startswith("text/plain")


def test_paging_keeps_the_query_options(server: Server) -> None:
    links = atom_links(server.get("/feeds/kunmingribao.atom?limit=1&utm_source=x").content,
                       "feed")
    assert links["next"] == links["last"] == f"{FEEDS_URL}/feeds/kunmingribao/2.atom?limit=1"
    last = server.get("/feeds/kunmingribao/2.atom?limit=1")
    assert [e.title for e in feedparser.parse(last.content).entries] == ["安宁打造招商引资强磁场"]
    assert server.get("/feeds/kunmingribao/3.atom?limit=1").status_code == 404


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


def test_tag_feeds_page_at_percent_encoded_paths(server: Server) -> None:
    tag = quote("经济")
    links = atom_links(server.get(f"/tags/{tag}.rss?limit=1").content, "channel")
    assert links["next"] == f"{FEEDS_URL}/tags/{tag}/2.rss?limit=1"
    assert server.get(f"/tags/{tag}/2.rss?limit=1").status_code == 200
    assert server.get(f"/tags/{tag}/3.rss?limit=1").status_code == 404


def test_unknown_tag_is_404_and_tags_are_case_sensitive(server: Server) -> None:
    assert server.get(f"/tags/{quote('不存在')}.rss").status_code == 404
    assert server.get("/tags/AI.rss").status_code == 200
    assert server.get("/tags/ai.rss").status_code == 404


def test_site_wide_feed_has_every_configured_category(server: Server) -> None:
    parsed = feedparser.parse(server.get("/feeds/all.atom").content)
    assert len(parsed.entries) == 7
    assert parsed.feed.title == "测试新闻"
    assert parsed.entries[0].title == "广告：理财产品推荐"
