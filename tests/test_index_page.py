"""`/`: the index page people land on, and what feed readers discover from it."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import lxml.html
import pytest
import requests
from readers_site import CONFIG, FEEDS_URL, readers_site
from support import Server, post, running, wait_for

MEDIA_TYPES = {"rss": "application/rss+xml", "atom": "application/atom+xml",
               "json": "application/feed+json"}


@pytest.fixture(scope="module")
def page(server: Server) -> lxml.html.HtmlElement:
    resp = server.get("/")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
    return lxml.html.fromstring(resp.content)


def local(server: Server, url: str) -> str:
    """An advertised URL (on feeds_url) as the test server answers it."""
    assert url.startswith(FEEDS_URL + "/"), url
    return server.url + url[len(FEEDS_URL):]


def test_autodiscovery_names_every_category_in_every_format(page: lxml.html.HtmlElement) -> None:
    alternates = {(a.get("type"), a.get("href")): a.get("title")
                  for a in page.head.findall("link") if a.get("rel") == "alternate"}
    for slug, cat in CONFIG["categories"].items():
        for fmt, media in MEDIA_TYPES.items():
            title = alternates[(media, f"{FEEDS_URL}/feeds/{slug}.{fmt}")]
            assert cat["title"] in title
    for fmt, media in MEDIA_TYPES.items():
        assert (media, f"{FEEDS_URL}/feeds/all.{fmt}") in alternates


def test_every_advertised_feed_answers_with_its_media_type(
        server: Server, page: lxml.html.HtmlElement) -> None:
    advertised = {(el.get("href"), el.get("type"))
                  for el in page.iter("link", "a") if el.get("type") in MEDIA_TYPES.values()}
    assert len(advertised) >= 3 * (len(CONFIG["categories"]) + 1)
    for url, media in sorted(advertised):
        resp = requests.get(local(server, url), timeout=10)
        assert resp.status_code == 200, url
        assert resp.headers["Content-Type"] == media + "; charset=utf-8", url


def test_lists_categories_with_description_newest_entry_and_subscribe_links(
        page: lxml.html.HtmlElement) -> None:
    text = page.text_content()
    for cat in CONFIG["categories"].values():
        assert cat["title"] in text
    card = next(c for c in page.find_class("card") if "宏观经济与金融市场" in c.text_content())
    newest = card.find_class("newest")[0]
    assert "广告：理财产品推荐" in newest.text_content()
    assert "2022-03-25 09:00" in newest.text_content()
    assert "共 3 篇" in newest.text_content()
    buttons = {a.text_content(): a.get("href") for a in card.find_class("btn")}
    assert buttons == {"RSS": f"{FEEDS_URL}/feeds/caijing.rss",
                       "Atom": f"{FEEDS_URL}/feeds/caijing.atom",
                       "JSON Feed": f"{FEEDS_URL}/feeds/caijing.json"}
    empty = next(c for c in page.find_class("card") if "Nothing yet" in c.text_content())
    assert "暂无文章" in empty.text_content()


def test_newest_entry_shows_in_the_category_zone(page: lxml.html.HtmlElement) -> None:
    card = next(c for c in page.find_class("card") if "World" in c.text_content())
    time = card.find_class("newest")[0].find(".//time")
    assert time.text == "2022-03-13 08:00"
    assert time.get("datetime") == "2022-03-13T08:00:00-04:00"


def test_lists_the_site_wide_feed_and_chinese_tag_feeds(page: lxml.html.HtmlElement) -> None:
    assert page.get_element_by_id("all").find_class("btn")[0].get("href") == \
        f"{FEEDS_URL}/feeds/all.rss"
    tags = {li.find("a").text_content(): (li.find("a").get("href"),
                                           li.find_class("count")[0].text_content())
            for li in page.find_class("tags")[0].findall("li")}
    assert tags["昆明"] == (f"{FEEDS_URL}/tags/%E6%98%86%E6%98%8E.rss", "2")
    assert tags["New York"] == (f"{FEEDS_URL}/tags/New%20York.rss", "1")
    assert f"{FEEDS_URL}/tags/{quote('经济')}.json" in [a.get("href") for a in page.iter("a")]


def test_is_chinese_and_readable_on_a_phone(page: lxml.html.HtmlElement) -> None:
    assert page.get("lang") == "zh-CN"
    viewport = page.head.find("meta[@name='viewport']")
    assert "width=device-width" in viewport.get("content")
    assert "订阅" in page.find(".//h1").text_content()


def test_opml_link_is_there_to_copy(page: lxml.html.HtmlElement) -> None:
    field = page.get_element_by_id("opml-url")
    assert field.get("value") == f"{FEEDS_URL}/opml.xml"
    assert field.get("readonly") is not None
    assert page.find(".//button[@data-copy='opml-url']") is not None


def test_titles_are_escaped_not_interpreted(server: Server, page: lxml.html.HtmlElement) -> None:
    raw = server.get("/").text
    assert "<script>alert" not in raw
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in raw
    assert not page.findall(".//script[@src]")
    assert 'Q&A <script>alert("x")</script>' in page.text_content()
    assert "<tag>" in page.text_content()


def test_answers_conditional_requests_with_a_stable_etag(server: Server) -> None:
    first = server.get("/")
    assert server.get("/").headers["ETag"] == first.headers["ETag"]
    again = server.get("/", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304
    assert again.content == b""
    assert server.get("/", headers={"Accept-Encoding": "gzip"}).headers["Content-Encoding"] == \
        "gzip"


def test_new_post_shows_on_the_index(tmp_path: Path) -> None:
    config = readers_site(tmp_path / "site")
    with running(config) as server:
        before = server.get("/").headers["ETag"]
        (config.parent / "_posts" / "2022-03-26-fresh-news.md").write_text(
            post("刚刚发布的新闻", "2022-03-26 08:00:00 +0800", tags="[新标签]"),
            encoding="utf-8")
        fresh = wait_for(lambda: (r := server.get("/")).headers["ETag"] != before and r)
        assert "刚刚发布的新闻" in fresh.text
        assert f"/tags/{quote('新标签')}.rss" in fresh.text
