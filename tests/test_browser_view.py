"""A person who clicks a feed link gets a page; a feed reader gets the feed.

Browsers mark navigations with `Sec-Fetch-Dest: document`; feed readers send
no Sec-Fetch-* headers. The page must never reach a feed reader through a
shared cache: `Cache-Control: private` and `Vary: Sec-Fetch-Dest`.
"""

from __future__ import annotations

import lxml.html
import pytest
from readers_site import FEEDS_URL
from support import Server

BROWSER = {"Sec-Fetch-Dest": "document", "Sec-Fetch-Mode": "navigate",
           "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


def vary(resp: object) -> set[str]:
    return {v.strip().lower() for v in resp.headers["Vary"].split(",")}  # type: ignore[attr-defined]


@pytest.mark.parametrize("fmt", ["rss", "atom", "json"])
def test_browser_navigation_gets_a_private_html_page(server: Server, fmt: str) -> None:
    resp = server.get(f"/feeds/kunmingribao.{fmt}", headers=BROWSER)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
    assert resp.headers["Cache-Control"].startswith("private")
    assert {"sec-fetch-dest", "accept-encoding"} <= vary(resp)
    page = lxml.html.fromstring(resp.content)
    titles = [a.text_content() for a in page.xpath("//article/h3/a")]
    assert titles == ["简体中文测试：汉字与发展", "安宁打造招商引资强磁场"]
    assert page.get_element_by_id("feed-url").get("value") == \
        f"{FEEDS_URL}/feeds/kunmingribao.{fmt}"
    assert "订阅" in page.text_content()


@pytest.mark.parametrize("headers", [
    {}, {"Accept": "application/rss+xml"}, {"Sec-Fetch-Dest": "empty"},
    {"Sec-Fetch-Dest": "iframe"}, {"User-Agent": "NetNewsWire (RSS Reader)"},
])
def test_every_other_client_gets_the_feed_bytes_unchanged(server: Server,
                                                          headers: dict[str, str]) -> None:
    plain = server.get("/feeds/kunmingribao.rss")
    resp = server.get("/feeds/kunmingribao.rss", headers=headers)
    assert resp.headers["Content-Type"] == "application/rss+xml; charset=utf-8"
    assert resp.content == plain.content
    assert resp.headers["ETag"] == plain.headers["ETag"]
    assert resp.headers["Cache-Control"].startswith("public")
    assert "sec-fetch-dest" in vary(resp)
    assert resp.content.startswith(b"<?xml")


def test_page_and_feed_have_their_own_etags(server: Server) -> None:
    feed = server.get("/feeds/kunmingribao.atom")
    page = server.get("/feeds/kunmingribao.atom", headers=BROWSER)
    assert page.headers["ETag"] != feed.headers["ETag"]
    cached = server.get("/feeds/kunmingribao.atom",
                        headers={**BROWSER, "If-None-Match": page.headers["ETag"]})
    assert cached.status_code == 304
    assert cached.headers["Cache-Control"].startswith("private")
    # A reader holding the feed's ETag never gets the page's 304 or bytes.
    reader = server.get("/feeds/kunmingribao.atom",
                        headers={"If-None-Match": page.headers["ETag"]})
    assert reader.status_code == 200 and reader.content == feed.content


def test_dates_show_in_the_feed_zone(server: Server) -> None:
    page = lxml.html.fromstring(server.get("/feeds/world.rss", headers=BROWSER).content)
    time = page.find(".//article//time")
    assert time.text == "2022-03-13 08:00"
    assert time.get("datetime") == "2022-03-13T08:00:00-04:00"
    assert "America/New_York" in page.text_content()


def test_titles_and_tags_are_escaped(server: Server) -> None:
    resp = server.get("/feeds/escaping.rss", headers=BROWSER)
    assert "<em>markup</em>" not in resp.text.split("<details>")[0]
    page = lxml.html.fromstring(resp.content)
    # Tags in a title are stripped, as jekyll-feed does (readers would show them).
    assert page.find(".//article/h3/a").text_content() == "Title with markup & ampersand"
    assert "<tag>" in page.find(".//article/p").text_content()
    assert page.find(".//h1").text_content() == 'Q&A <script>alert("x")</script>'


def test_query_options_and_archives_apply_to_the_page(server: Server) -> None:
    page = lxml.html.fromstring(server.get("/feeds/kunmingribao.rss?opencc=s2t&utm_source=x",
                                           headers=BROWSER).content)
    titles = [a.text_content() for a in page.xpath("//article/h3/a")]
    assert titles[0] == "簡體中文測試：漢字與發展"
    assert page.get_element_by_id("feed-url").get("value") == \
        f"{FEEDS_URL}/feeds/kunmingribao.rss?opencc=s2t"
    oldest = lxml.html.fromstring(server.get("/feeds/caijing/archive/1.json",
                                             headers=BROWSER).content)
    assert [a.text_content() for a in oldest.xpath("//article/h3/a")] == [
        "BANANA 价格上涨", "Apple 发布 MacBook 新品"]
    assert oldest.find(".//a[@rel='next-archive']").get("href") == (
        f"{FEEDS_URL}/feeds/caijing/archive/2.json")
    newest = lxml.html.fromstring(server.get("/feeds/caijing/archive/2.json",
                                             headers=BROWSER).content)
    assert newest.find(".//a[@rel='prev-archive']").get("href") == (
        f"{FEEDS_URL}/feeds/caijing/archive/1.json")
    current = lxml.html.fromstring(server.get("/feeds/caijing.json", headers=BROWSER).content)
    assert current.find(".//a[@rel='prev-archive']").get("href") == (
        f"{FEEDS_URL}/feeds/caijing/archive/2.json")
    assert server.get("/feeds/caijing/archive/3.json", headers=BROWSER).status_code == 404
    assert server.get("/feeds/kunmingribao.rss?limit=0", headers=BROWSER).status_code == 400


def test_head_works_for_the_page(server: Server) -> None:
    import requests

    resp = requests.head(server.url + "/feeds/kunmingribao.rss", headers=BROWSER, timeout=10)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
    assert resp.content == b""
