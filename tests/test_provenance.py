"""Collected posts say where they came from (RSS <source>, Atom rel="via" and
<source>, JSON Feed external_url), and link to our permalink or the original
article as the category (or the site) says."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import feedparser
import pytest
from lxml import etree
from support import BASE_CONFIG, Server, make_site, post, running, wait_for
from test_feedcheck import feedcheck  # noqa: F401,F811 - the fixture
from test_upstream import collect
from upstream_support import Route, Upstream, upstream

from feedsvc.config import load_config
from feedsvc.errors import ConfigError

ATOM = "{http://www.w3.org/2005/Atom}"
HAND_WRITTEN = {"caijing/2022-03-01-hand-written.md": post(
    "编辑部原创", "2022-03-01 08:00:00 +0800", categories="caijing")}


@pytest.fixture(scope="module")
def up() -> Iterator[Upstream]:
    with upstream() as server:
        server.routes["/rss.xml"] = Route.fixture("rss.xml")
        server.routes["/feed.json"] = Route.fixture("feed.json")
        yield server


def site(root: Path, up: Upstream, **extra: Any) -> Path:
    cats = {
        "kunmingribao": {"title": "昆明日报新闻", "sources": [up.url + "/rss.xml"],
                         **extra.pop("kunmingribao", {})},
        "world": {"title": "World", "timezone": "America/New_York",
                  "sources": [up.url + "/feed.json"]},
        "caijing": {"title": "财经"},
    }
    path = make_site(root, HAND_WRITTEN, config={**BASE_CONFIG, "categories": cats, **extra})
    collect(load_config(path))
    return path


@pytest.fixture(scope="module")
def default(tmp_path_factory: pytest.TempPathFactory, up: Upstream) -> Iterator[Server]:
    with running(site(tmp_path_factory.mktemp("prov") / "site", up)) as s:
        yield settled(s)


def settled(server: Server) -> Server:
    """The server's index caught up with what was collected before it started."""
    wait_for(lambda: len(server.get("/feeds/all.json").json().get("items", [])) == 6, timeout=30)
    return server


def rss_items(server: Server, path: str) -> list[Any]:
    root = etree.fromstring(server.get(path).content)
    return list(root.iter("item"))


def test_rss_source_names_the_upstream_feed(default: Server, up: Upstream) -> None:
    items = {i.findtext("title"): i for i in rss_items(default, "/feeds/kunmingribao.rss")}
    source = items["安宁打造招商引资强磁场"].find("source")
    assert source is not None
    assert source.get("url") == up.url + "/rss.xml" and source.text == "昆明日报 上游"


def test_json_feed_title_is_the_source_name(default: Server, up: Upstream) -> None:
    sources = [i.find("source") for i in rss_items(default, "/feeds/world.rss")]
    assert {(s.get("url"), s.text) for s in sources if s is not None} == {
        (up.url + "/feed.json", "New York desk")}


def test_a_feed_without_a_title_is_named_by_its_host(tmp_path: Path, up: Upstream) -> None:
    untitled = json.loads(Route.fixture("feed.json").body)
    del untitled["title"]
    up.routes["/untitled.json"] = Route(json.dumps(untitled).encode(), "application/feed+json")
    cats = {"world": {"title": "World", "sources": [up.url + "/untitled.json"]}}
    config = load_config(make_site(tmp_path / "site", config={**BASE_CONFIG, "categories": cats}))
    collect(config)
    with running(config.path) as server:
        wait_for(lambda: len(rss_items(server, "/feeds/world.rss")) == 2, timeout=30)
        sources = [i.find("source") for i in rss_items(server, "/feeds/world.rss")]
        assert {s.text for s in sources if s is not None} == {up.url.split("//")[1]}


def test_atom_has_via_and_source(default: Server, up: Upstream) -> None:
    root = etree.fromstring(default.get("/feeds/kunmingribao.atom").content)
    entry = next(e for e in root.iter(f"{ATOM}entry")
                 if e.findtext(f"{ATOM}title") == "安宁打造招商引资强磁场")
    links = {(link.get("rel") or "alternate"): link.get("href")
             for link in entry.findall(f"{ATOM}link")}
    assert links["via"] == "https://upstream.example/kunming/anning.html"
    assert links["alternate"].startswith("https://news.example.com/kunmingribao/2022/03/21/")
    source = entry.find(f"{ATOM}source")
    assert source is not None
    assert source.findtext(f"{ATOM}id") == up.url + "/rss.xml"
    assert source.findtext(f"{ATOM}title") == "昆明日报 上游"
    assert source.find(f"{ATOM}link").get("rel") == "self"  # type: ignore[union-attr]
    # Readers still take our permalink as the entry's link.
    parsed = feedparser.parse(default.get("/feeds/kunmingribao.atom").content)
    assert all(e.link.startswith("https://news.example.com/") for e in parsed.entries)


def test_json_has_external_url(default: Server) -> None:
    items = default.get("/feeds/kunmingribao.json").json()["items"]
    anning = next(i for i in items if i["title"] == "安宁打造招商引资强磁场")
    assert anning["external_url"] == "https://upstream.example/kunming/anning.html"
    assert anning["url"].startswith("https://news.example.com/")


def test_hand_written_posts_carry_no_provenance(default: Server) -> None:
    assert rss_items(default, "/feeds/caijing.rss")[0].find("source") is None
    item = default.get("/feeds/caijing.json").json()["items"][0]
    assert "external_url" not in item
    root = etree.fromstring(default.get("/feeds/caijing.atom").content)
    assert root.find(f"{ATOM}entry/{ATOM}source") is None
    assert [link.get("rel") for link in root.iter(f"{ATOM}link")
            if link.getparent().tag == f"{ATOM}entry"] == [None]  # type: ignore[union-attr]


def test_category_links_to_the_original_article(tmp_path: Path, up: Upstream) -> None:
    config = site(tmp_path / "site", up, kunmingribao={"entry_link": "source"})
    with running(config) as server:
        settled(server)
        items = server.get("/feeds/kunmingribao.json").json()["items"]
        anning = next(i for i in items if i["title"] == "安宁打造招商引资强磁场")
        assert anning["url"] == "https://upstream.example/kunming/anning.html"
        assert anning["id"].startswith("https://news.example.com/")   # the id never moves
        # Other categories keep our permalink; the site-wide feed follows each post's category.
        world = server.get("/feeds/world.json").json()["items"]
        assert all(i["url"].startswith("https://news.example.com/") for i in world)
        every = {i["id"]: i["url"] for i in server.get("/feeds/all.json").json()["items"]}
        assert every[anning["id"]] == anning["url"]
        rss = {i.findtext("title"): i for i in rss_items(server, "/feeds/kunmingribao.rss")}
        item = rss["安宁打造招商引资强磁场"]
        assert item.findtext("link") == "https://upstream.example/kunming/anning.html"
        assert item.find("guid").get("isPermaLink") == "false"  # type: ignore[union-attr]


def test_site_wide_setting_and_category_override(tmp_path: Path, up: Upstream) -> None:
    config = site(tmp_path / "site", up, entry_link="source",
                  kunmingribao={"entry_link": "permalink"})
    with running(config) as server:
        settled(server)
        world = server.get("/feeds/world.json").json()["items"]
        assert all(not i["url"].startswith("https://news.example.com/") for i in world)
        kunming = server.get("/feeds/kunmingribao.json").json()["items"]
        assert all(i["url"].startswith("https://news.example.com/") for i in kunming)
        # A post without a source links to our page whatever the setting.
        assert server.get("/feeds/caijing.json").json()["items"][0]["url"].startswith(
            "https://news.example.com/caijing/")


def test_bad_entry_link_is_a_config_error(tmp_path: Path) -> None:
    path = make_site(tmp_path / "site", config={**BASE_CONFIG, "entry_link": "original"})
    with pytest.raises(ConfigError, match="entry_link.*'permalink'.*'source'"):
        load_config(path)


@pytest.mark.timeout(600)
def test_feeds_with_provenance_pass_feedcheck(tmp_path: Path, up: Upstream,
                                              feedcheck: Path) -> None:  # noqa: F811
    config = site(tmp_path / "site", up, kunmingribao={"entry_link": "source"})
    out = tmp_path / "out"
    subprocess.run([sys.executable, "-m", "feedsvc", "build", "--config", str(config), "--out", str(out)],
                   check=True, capture_output=True, timeout=120)
    files = [str(out / "feeds" / f"{slug}.{fmt}") for slug in ("kunmingribao", "world", "all")
             for fmt in ("rss", "atom", "json")]
    run = subprocess.run([str(feedcheck), *files], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
