"""Query options on feeds: limit, filter, filterout, opencc. Invalid values
are 400 with a message; unknown parameters are ignored; equivalent requests
share one cache entry, one ETag and one self link."""

from __future__ import annotations

from pathlib import Path

import feedparser
import pytest
import requests
from lxml import etree
from readers_site import FEEDS_URL, readers_site
from support import Server

ATOM = "{http://www.w3.org/2005/Atom}"


@pytest.fixture(scope="module")
def served_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return readers_site(tmp_path_factory.mktemp("query") / "site", max_limit=50)


def titles(server: Server, path: str) -> list[str]:
    resp = server.get(path)
    assert resp.status_code == 200, resp.text
    return [e.title for e in feedparser.parse(resp.content).entries]


def self_link(resp: requests.Response) -> str:
    root = etree.fromstring(resp.content)
    return next(link.get("href") for link in root.iter(f"{ATOM}link") if link.get("rel") == "self")


def documents(server: Server) -> int:
    cache = server.get("/status").json()["cache"]
    # Documents with query options live apart from the shared ones (SECURITY.md S11).
    count: int = cache["documents"] + cache["query_variants"]
    return count


# -- limit -------------------------------------------------------------------
def test_limit_cuts_the_feed(server: Server) -> None:
    assert titles(server, "/feeds/all.atom?limit=1") == ["广告：理财产品推荐"]
    assert len(titles(server, "/feeds/all.atom?limit=50")) == 7


@pytest.mark.parametrize("value", ["0", "51", "-1", "1.5", "abc", "", "²", "１", "1e3",
                                   "9" * 5000])
def test_invalid_limit_is_400_with_a_message(server: Server, value: str) -> None:
    resp = server.get("/feeds/all.rss", params={"limit": value})
    assert resp.status_code == 400
    assert "limit must be a whole number from 1 to 50" in resp.text


def test_limit_equal_to_the_configured_one_is_the_plain_feed(server: Server) -> None:
    plain = server.get("/feeds/kunmingribao.atom")
    same = server.get("/feeds/kunmingribao.atom?limit=20")
    assert same.content == plain.content
    assert self_link(same) == f"{FEEDS_URL}/feeds/kunmingribao.atom"


def test_limit_given_twice_differently_is_400(server: Server) -> None:
    assert server.get("/feeds/all.rss?limit=2&limit=3").status_code == 400
    assert server.get("/feeds/all.rss?limit=2&limit=2").status_code == 200


# -- filter / filterout --------------------------------------------------------
def test_filter_is_case_insensitive_on_title_categories_and_tags(server: Server) -> None:
    assert titles(server, "/feeds/all.atom?filter=APPLE") == ["Apple 发布 MacBook 新品"]
    # "ai" is also in "caijing": substrings of categories count.
    assert len(titles(server, "/feeds/all.atom?filter=ai")) == 3
    assert titles(server, "/feeds/all.atom?filter=%3CTAG%3E") == [
        "Title with markup & ampersand"]   # tags stripped, as jekyll-feed does
    assert titles(server, "/feeds/all.atom?filter=科技") == ["Apple 发布 MacBook 新品"]
    assert titles(server, "/feeds/all.atom?filter=World") == ["New York morning news"]
    assert titles(server, "/feeds/all.atom?filter=banana,招商") == [
        "BANANA 价格上涨", "安宁打造招商引资强磁场"]


def test_filter_matches_full_width_letters_as_ascii(server: Server) -> None:
    assert titles(server, "/feeds/all.atom?filter=ＡＰＰＬＥ") == ["Apple 发布 MacBook 新品"]


def test_filterout_drops_matching_entries(server: Server) -> None:
    kept = titles(server, "/feeds/caijing.atom?filterout=广告,BANANA")
    assert kept == ["Apple 发布 MacBook 新品"]
    both = titles(server, "/feeds/all.atom?filter=经济&filterout=banana")
    assert both == ["安宁打造招商引资强磁场"]


def test_filter_that_matches_nothing_is_an_empty_valid_feed(server: Server) -> None:
    resp = server.get("/feeds/all.atom?filter=没有这个词")
    parsed = feedparser.parse(resp.content)
    assert resp.status_code == 200 and not parsed.bozo and parsed.entries == []


@pytest.mark.parametrize("query", ["filter=", "filter=,, ,", "filterout=",
                                   "filter=" + ",".join(f"t{i}" for i in range(21)),
                                   "filter=" + "x" * 101])
def test_invalid_filter_is_400_with_a_message(server: Server, query: str) -> None:
    resp = server.get("/feeds/all.rss?" + query)
    assert resp.status_code == 400
    assert query.split("=")[0] in resp.text


# -- opencc --------------------------------------------------------------------
def test_opencc_converts_text_but_not_urls_tags_or_categories(server: Server) -> None:
    resp = server.get("/feeds/kunmingribao.json?opencc=s2t")
    item = resp.json()["items"][0]
    assert item["title"] == "簡體中文測試：漢字與發展"
    assert "這裏是簡體字正文" in item["content_html"]
    # The link inside the content keeps its Simplified characters: it is a URL.
    assert 'href="https://news.example.com/汉字"' in item["content_html"]
    assert ">漢字鏈接</a>" in item["content_html"]
    assert item["tags"] == ["kunmingribao", "昆明"]
    assert item["url"] == "https://news.example.com/kunmingribao/2022/03/22/simplified-chinese-title.html"
    assert resp.json()["title"] == "昆明日報新聞"


def test_opencc_t2s_converts_back(server: Server) -> None:
    assert titles(server, "/feeds/kunmingribao.atom?opencc=t2s")[0] == "简体中文测试：汉字与发展"
    resp = server.get("/feeds/kunmingribao.atom?opencc=t2s")
    assert feedparser.parse(resp.content).feed.title == "昆明日报新闻"


@pytest.mark.parametrize("value", ["", "x2y", "s2tw", "tw2s", "1"])
def test_invalid_opencc_is_400_with_a_message(server: Server, value: str) -> None:
    resp = server.get("/feeds/all.rss", params={"opencc": value})
    assert resp.status_code == 400
    assert "opencc must be s2t" in resp.text


# -- normalisation and the cache ------------------------------------------------
def test_unknown_parameters_are_ignored_and_left_out_of_the_self_link(server: Server) -> None:
    plain = server.get("/feeds/caijing.atom")
    tracked = server.get("/feeds/caijing.atom?utm_source=x&utm_medium=rss&fbclid=1&LIMIT=1")
    assert tracked.content == plain.content
    assert tracked.headers["ETag"] == plain.headers["ETag"]
    assert self_link(tracked) == f"{FEEDS_URL}/feeds/caijing.atom"


def test_self_link_names_the_exact_representation(server: Server) -> None:
    resp = server.get("/feeds/all.atom?opencc=S2T&utm_source=x&limit=3&filterout=Banana"
                      "&filter=經濟,Apple")
    assert self_link(resp) == (f"{FEEDS_URL}/feeds/all.atom?filter=apple,%E7%B6%93%E6%BF%9F"
                               "&filterout=banana&limit=3&opencc=s2t")
    again = server.get(self_link(resp)[len(FEEDS_URL):])
    assert again.content == resp.content


def test_equivalent_requests_share_one_cache_entry_and_etag(server: Server) -> None:
    server.get("/status")                       # its own documents first
    first = server.get("/feeds/all.rss?filter=Apple,banana&limit=5")
    stored = documents(server)
    equivalents = [
        "/feeds/all.rss?filter=BANANA,apple&limit=5&utm_campaign=spring",
        "/feeds/all.rss?limit=05&filter=banana&filter=APPLE",
        "/feeds/all.rss?filter=%20apple%20,banana,,&limit=5",
        "/feeds/all.rss?filter=apple,banana,bananas,Apple%20MacBook&limit=5",
    ]
    for path in equivalents:
        resp = server.get(path)
        assert resp.headers["ETag"] == first.headers["ETag"], path
        assert resp.content == first.content, path
    assert documents(server) == stored
    server.get("/feeds/all.rss?filter=apple&limit=5")
    assert documents(server) == stored + 1
