"""Web-page sources: news list pages (UTF-8 and GBK, CSS and XPath) read by
selectors from a real HTTP upstream on loopback, and each way a page or a
selector can fail costing one item or one source, with the reason."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import BASE_CONFIG, FIXTURES, make_site, running, wait_for
from test_feedcheck import feedcheck  # noqa: F401,F811 - the fixture
from test_upstream import FAST, NOW, site_with, stored
from upstream_support import Route, Upstream, upstream

from feedsvc.config import Config, load_config
from feedsvc.errors import ConfigError
from feedsvc.upstream.collector import Collector, SourceResult
from feedsvc.upstream.fetch import Fetcher

PAGES = FIXTURES / "pages"
UTF8_CSS = {"items": "ul.news li", "title": "a.t", "link": "a.t", "date": "span.date",
            "date_format": "%Y年%m月%d日 %H:%M", "summary": "p.summary"}
GBK_XPATH = {"items": "//table[@id='list']/tr", "title": "./td[1]/a", "link": "./td[1]/a/@href",
             "date": "./td[2]", "date_format": "%Y-%m-%d %H:%M"}
GBK_TIME = {"items": "div.item", "title": "h3 a", "link": "h3 a", "date": "time"}


def page(name: str, content_type: str = "text/html") -> Route:
    return Route(PAGES.joinpath(name).read_bytes(), content_type)


@pytest.fixture
def up() -> Iterator[Upstream]:
    with upstream() as server:
        server.routes["/chengcheng/list.html"] = page("list-utf8-css.html",
                                                      "text/html; charset=utf-8")
        server.routes["/kmrb/list.html"] = page("list-gbk-meta-xpath.html")
        server.routes["/yuxi/list.html"] = page("list-gbk-http-charset.html",
                                                "text/html; charset=GBK")
        yield server


def collect(config: Config) -> dict[str, SourceResult]:
    """One pass, results by the source's path (every list page is list.html)."""
    collector = Collector(config, fetcher=Fetcher(FAST), clock=lambda: NOW)
    return {r.url.split("/", 3)[3]: r for r in collector.run(collector.sources())}


def source(up: Upstream, path: str, rules: dict[str, str]) -> dict[str, Any]:
    return {"url": up.url + path, "page": rules}


def front_matter(path: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(Path(path).read_text(encoding="utf-8").split("---\n")[1])
    return data


def test_utf8_list_page_by_css(tmp_path: Path, up: Upstream) -> None:
    config = site_with(tmp_path, {"kunmingribao": [source(up, "/chengcheng/list.html", UTF8_CSS)]})
    result = collect(config)["chengcheng/list.html"]
    assert result.error is None and result.new == 3
    # The advert without a link and the item dated 昨天 cost one item each, with the reason.
    assert result.warning is not None
    assert "1 item(s) skipped: page.link 'a.t' found no http(s) link" in result.warning
    assert "page.date '昨天' does not parse" in result.warning
    posts = {p.title: p for p in stored(config).values()}
    assert set(posts) == {"滇池绿道全线贯通", "昆明地铁五号线试运行", "云南咖啡出口创新高"}
    lake = posts["滇池绿道全线贯通"]
    assert lake.date.isoformat() == "2022-03-21T08:30:00+08:00"    # the category's zone
    assert lake.source_url == up.url + "/local/2022/0321/1001.html"
    assert lake.source_guid == lake.source_url
    assert posts["云南咖啡出口创新高"].source_url == "https://other.example/xinhua/3003.html"
    assert "全长 130 公里的滇池绿道今日全线贯通。" in Path(lake.path).read_text(encoding="utf-8")
    meta = front_matter(lake.path)
    # A page is no feed: no RSS <source>, but source_url gives via / external_url.
    assert "source_feed" not in meta and meta["source_url"] == lake.source_url


def test_gbk_page_declared_in_meta_by_xpath(tmp_path: Path, up: Upstream) -> None:
    config = site_with(tmp_path, {"kunmingribao": [source(up, "/kmrb/list.html", GBK_XPATH)]})
    result = collect(config)["kmrb/list.html"]
    assert (result.new, result.error, result.warning) == (3, None, None)
    posts = {p.title: p for p in stored(config).values()}
    # 镕 is not in GB2312, which the page claims: it is read as GBK/GB18030.
    assert set(posts) == {"安宁打造招商引资强磁场", "呈贡新区高校毕业生就业率超九成",
                          "镕基金会助学项目启动"}
    assert posts["安宁打造招商引资强磁场"].source_url == up.url + "/kmrb/a/0321-01.html"
    assert posts["镕基金会助学项目启动"].date.isoformat() == "2022-03-20T16:40:00+08:00"


def test_gbk_page_declared_in_http_only_with_time_elements(tmp_path: Path, up: Upstream) -> None:
    config = site_with(tmp_path, {"world": [source(up, "/yuxi/list.html", GBK_TIME)]})
    result = collect(config)["yuxi/list.html"]
    assert (result.new, result.error) == (2, None)
    posts = {p.title: p for p in stored(config).values()}
    # <time datetime> with an offset keeps it, whatever the category's zone (New York).
    assert posts["玉溪高原湖泊保护条例施行"].date.isoformat() == "2022-03-21T09:00:00+08:00"


def test_a_page_seen_again_adds_nothing(tmp_path: Path, up: Upstream) -> None:
    config = site_with(tmp_path, {"kunmingribao": [source(up, "/kmrb/list.html", GBK_XPATH)]})
    collect(config)
    up.routes["/kmrb/list.html"].etag = False
    up.routes["/kmrb/list.html"].last_modified = None
    again = collect(config)["kmrb/list.html"]
    assert (again.new, again.unchanged, again.error) == (0, 3, None)


@pytest.mark.parametrize(("route", "rules", "reason"), [
    ("/kmrb/list.html", {**GBK_XPATH, "items": "div.nothing-here"},
     "page.items: 'div.nothing-here' matched nothing on the page"),
    ("/kmrb/list.html", {**GBK_XPATH, "title": "./td[9]"},
     "no item could be read from 3 matched by page.items: 3 item(s) skipped: page.title"),
    ("/kmrb/list.html", {**GBK_XPATH, "date_format": "%d/%m/%Y"},
     "page.date '2022-03-21 06:00' does not parse"),
    ("/png", GBK_XPATH, "not an HTML page (Content-Type image/png)"),
    ("/empty", GBK_XPATH, "not an HTML page (no markup)"),
])
def test_a_page_that_cannot_be_read_fails_its_source_only(
        tmp_path: Path, up: Upstream, route: str, rules: dict[str, str], reason: str) -> None:
    up.routes["/png"] = Route(b"\x89PNG\r\n\x1a\n" + b"\0" * 100, "image/png")
    up.routes["/empty"] = Route(b"   ", "text/html")
    config = site_with(tmp_path, {"kunmingribao": [source(up, route, rules)],
                                  "world": [source(up, "/yuxi/list.html", GBK_TIME)]})
    results = list(collect(config).values())
    failed = next(r for r in results if r.category == "kunmingribao")
    assert failed.error is not None and reason in failed.error, failed.error
    assert next(r for r in results if r.category == "world").new == 2
    assert all(p.categories == ("world",) for p in stored(config).values())


@pytest.mark.parametrize(("rules", "message"), [
    ({**UTF8_CSS, "items": "ul..news"}, "page.items: invalid CSS selector 'ul..news'"),
    ({**UTF8_CSS, "link": "//a[@href"}, "page.link: invalid XPath"),
    ({k: v for k, v in UTF8_CSS.items() if k != "title"}, "page.title: is required"),
    ({**UTF8_CSS, "date_format": "YYYY-MM-DD"}, "page.date_format: must be a strptime format"),
    ({**UTF8_CSS, "selector": "li"}, "page.selector: unknown key"),
])
def test_bad_page_rules_are_config_errors(tmp_path: Path, rules: dict[str, str],
                                          message: str) -> None:
    cats = {"kunmingribao": {"title": "昆明", "sources": [
        {"url": "https://paper.example/list.html", "page": rules}]}}
    with pytest.raises(ConfigError) as e:
        load_config(make_site(tmp_path / "site", config={**BASE_CONFIG, "categories": cats}))
    assert "categories.kunmingribao.sources.0." + message.split(":")[0] in str(e.value)
    assert message.split(": ", 1)[1] in str(e.value)


@pytest.mark.timeout(600)
def test_feeds_of_page_sources_are_served_and_pass_feedcheck(
        tmp_path: Path, up: Upstream, feedcheck: Path) -> None:  # noqa: F811
    config = site_with(tmp_path, {"kunmingribao": [source(up, "/chengcheng/list.html", UTF8_CSS),
                                                   source(up, "/kmrb/list.html", GBK_XPATH)],
                                  "world": [source(up, "/yuxi/list.html", GBK_TIME)]})
    collect(config)
    with running(config.path) as server:
        wait_for(lambda: len(server.get("/feeds/kunmingribao.json").json().get("items", [])) == 6,
                 timeout=30)
        items = server.get("/feeds/kunmingribao.json").json()["items"]
        assert len(items) == 6
        assert {i["external_url"] for i in items} >= {up.url + "/kmrb/a/0321-01.html"}
        assert "镕基金会助学项目启动" in server.get("/feeds/kunmingribao.rss").text
    out = tmp_path / "out"
    subprocess.run([sys.executable, "-m", "feedsvc", "build", "--config", str(config.path),
                    "--out", str(out)], check=True, capture_output=True, timeout=120)
    files = [str(out / "feeds" / f"{slug}.{fmt}") for slug in ("kunmingribao", "world")
             for fmt in ("rss", "atom", "json")]
    run = subprocess.run([str(feedcheck), *files], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
