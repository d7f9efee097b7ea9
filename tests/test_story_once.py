"""The same story once (issue 13): three copies of one wire story in three
categories (tests/fixtures/stories) — each category feed keeps its copy, the
site-wide feed and a shared tag carry the story once, as its earliest-dated
copy (a tie: the category first in the config), with the other copies as
related links in RSS, Atom and JSON Feed. Over HTTP from `feedsvc serve`, on
the SQLite and the PostgreSQL index; the watcher moves the story as copies
are deleted and dates edited."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import lxml.html
import pytest
import yaml
from lxml import etree
from support import Serve, Server, make_site, wait_for
from test_feedcheck import feedcheck  # noqa: F401 - the fixture

from feedsvc.check import check
from feedsvc.config import ConfigError, load_config
from feedsvc.export import exporter

ATOM = "{http://www.w3.org/2005/Atom}"
FEEDS_URL = "https://feeds.example.com"
COFFEE = "/tags/" + quote("咖啡")
KMRB, YNRB, XINHUA = ("https://kmrb.example/coffee.html", "https://ynrb.example/coffee.html",
                      "https://xinhua.example/coffee.html")
# The titles of the story's copies and of the other posts.
K, Y, X = "云南咖啡出口量创历史新高", "云南咖啡出口创新高", "一季度云南咖啡出口三万吨"
PLANTING, METRO = "云南咖啡种植面积扩大", "昆明地铁五号线试运行"
TOURISM, SCHOOLS = "昆明春季旅游升温", "云南新建一百所乡村学校"


def site(tmp_path: Path, edit: Callable[[dict[str, Any]], None] | None = None) -> Path:
    config = make_site(tmp_path / "site", fixture="stories")
    if edit:
        data = yaml.safe_load(config.read_text(encoding="utf-8"))
        edit(data)
        config.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return config


def copy_path(config: Path, name: str) -> Path:
    return config.parent / "_posts" / f"2022-03-21-coffee-exports-{name}.md"


def redate(config: Path, name: str, date: str) -> None:
    path = copy_path(config, name)
    text = path.read_text(encoding="utf-8")
    path.write_text(re.sub(r"(?m)^date: .*$", f"date: {date}", text), encoding="utf-8")


def items(server: Server, path: str, query: str = "") -> list[dict[str, Any]]:
    resp = server.get(path + ".json" + query)
    assert resp.status_code == 200, resp.text
    found: list[dict[str, Any]] = resp.json()["items"]
    return found


def titles(server: Server, path: str, query: str = "") -> list[str]:
    return [i["title"] for i in items(server, path, query)]


def copies(server: Server, path: str) -> dict[str, list[str]]:
    """Per entry title: the links of the story's other copies (JSON Feed)."""
    return {i["title"]: i["_feedsvc"]["copies"] for i in items(server, path) if "_feedsvc" in i}


def related(server: Server, path: str, fmt: str) -> dict[str, list[str]]:
    root = etree.fromstring(server.get(f"{path}.{fmt}").content)
    entries = root.iter(f"{ATOM}entry") if fmt == "atom" else root.iter("item")
    title = f"{ATOM}title" if fmt == "atom" else "title"
    out = {}
    for entry in entries:
        links = [a.get("href") for a in entry.iter(f"{ATOM}link") if a.get("rel") == "related"]
        if links:
            out[str(entry.findtext(title))] = links
    return out


def archive_titles(server: Server, path: str) -> list[list[str]]:
    """Titles of each archive of a feed (1 the oldest), following prev-archive."""
    first = server.get(path + ".json").json()
    url = first.get("_rfc5005", {}).get("prev_archive")
    out: list[list[str]] = []
    while url:
        doc = server.get(url.removeprefix(FEEDS_URL)).json()
        out.insert(0, [i["title"] for i in doc["items"]])
        url = doc["_rfc5005"].get("prev_archive")
    return out


def test_categories_keep_every_copy_site_wide_and_tags_show_the_earliest_once(
        tmp_path: Path, serve: Serve) -> None:
    server = serve(site(tmp_path))
    assert titles(server, "/feeds/kunmingribao") == [PLANTING, K, TOURISM]
    assert titles(server, "/feeds/yunnanribao") == [Y, METRO, SCHOOLS]
    assert titles(server, "/feeds/xinhua") == [X]
    # Xinhua's copy (08:00) is the earliest; two items that merely share an
    # upstream id ("100"), with no reprint among them, are two stories.
    assert titles(server, "/feeds/all") == [PLANTING, X, METRO, SCHOOLS, TOURISM]
    assert titles(server, COFFEE) == [PLANTING, X]
    # A tag only one copy has is that copy's: 昆明日报新闻 keeps the Kunming copy.
    assert titles(server, "/tags/" + quote("昆明日报新闻")) == [PLANTING, K, TOURISM]
    # The other copies, in date order, in every format; none in category feeds.
    for path in ("/feeds/all", COFFEE):
        assert copies(server, path) == {X: [YNRB, KMRB]}
        assert related(server, path, "atom") == {X: [YNRB, KMRB]}
        assert related(server, path, "rss") == {X: [YNRB, KMRB]}
    for slug in ("kunmingribao", "yunnanribao", "xinhua"):
        assert copies(server, f"/feeds/{slug}") == {}
        assert related(server, f"/feeds/{slug}", "atom") == {}
    # A browser's view of the feed lists them too.
    view = lxml.html.fromstring(server.get("/feeds/all.atom",
                                           headers={"Sec-Fetch-Dest": "document"}).content)
    assert [a.get("href") for a in view.find_class("copies")[0].iter("a")] == [YNRB, KMRB]
    # Filters work on what the feed shows: the story once.
    assert titles(server, "/feeds/all", "?filter=" + quote("咖啡")) == [PLANTING, X]
    assert titles(server, "/feeds/all", "?filter_title=" + quote("出口")) == [X]


def test_counts_and_archives_count_each_story_once(tmp_path: Path, serve: Serve) -> None:
    server = serve(site(tmp_path))
    page = lxml.html.fromstring(server.get("/").content)
    counts = {card.find(".//h3").text_content(): card.find_class("newest")[0].text_content()
              for card in page.find_class("card")}
    assert "共 5 篇" in counts["云南新闻汇总 · 全部"]
    assert "共 3 篇" in counts["昆明日报新闻"] and "共 1 篇" in counts["新华社云南"]
    tags = {li.find("a").text_content(): li.find_class("count")[0].text_content()
            for li in page.find_class("tags")[0].findall("li")}
    assert tags["咖啡"] == "2" and tags["云南日报"] == "3" and tags["新华社"] == "1"
    # /status counts every post some feed carries: each copy is in its category's.
    assert server.get("/status").json()["posts"] == 7
    # archive_size 2: the five stories shown number 1…5, the hidden copies none.
    assert archive_titles(server, "/feeds/all") == [[SCHOOLS, TOURISM], [X, METRO], [PLANTING]]
    assert server.get("/feeds/all/archive/4.json").status_code == 404
    assert archive_titles(server, COFFEE) == [[PLANTING, X]]


def test_a_story_dated_in_the_future_is_counted_nowhere_yet(tmp_path: Path,
                                                           serve: Serve) -> None:
    config = site(tmp_path)
    for name, cat, guid in (("a", "kunmingribao", "future-1"), ("b", "xinhua", "future-2")):
        (config.parent / "_posts" / f"2099-01-01-future-{name}.md").write_text(
            f"---\ntitle: 未来的新闻 {name}\ndate: 2099-01-01 08:00:00 +0800\n"
            f"categories: {cat}\ntags: [咖啡]\nsource_guid: {guid}\n"
            + ("story: future-1\n" if name == "b" else "") + "---\n<p>还没有发生。</p>\n",
            encoding="utf-8")
    server = serve(config)
    assert titles(server, "/feeds/all") == [PLANTING, X, METRO, SCHOOLS, TOURISM]
    page = lxml.html.fromstring(server.get("/").content)
    tags = {li.find("a").text_content(): li.find_class("count")[0].text_content()
            for li in page.find_class("tags")[0].findall("li")}
    assert tags["咖啡"] == "2"
    assert "共 5 篇" in page.get_element_by_id("all").text_content()
    assert server.get("/status").json()["posts"] == 7
    assert server.get("/status").json()["categories"]["kunmingribao"]["posts"] == 3


def test_deleting_the_shown_copy_promotes_the_next_and_dates_move_it(
        tmp_path: Path, serve: Serve) -> None:
    config = site(tmp_path)
    server = serve(config)
    copy_path(config, "xinhua").unlink()
    wait_for(lambda: titles(server, "/feeds/all") == [PLANTING, Y, METRO, SCHOOLS, TOURISM])
    assert copies(server, "/feeds/all") == {Y: [KMRB]}
    assert titles(server, COFFEE) == [PLANTING, Y]
    assert related(server, COFFEE, "rss") == {Y: [KMRB]}
    assert titles(server, "/feeds/xinhua") == []
    # The Kunming copy dated earlier than the others: it stands for the story now.
    redate(config, "kmrb", "2022-03-21 07:00:00 +0800")
    wait_for(lambda: titles(server, "/feeds/all") == [PLANTING, K, METRO, SCHOOLS, TOURISM])
    assert copies(server, "/feeds/all") == {K: [YNRB]}
    assert titles(server, COFFEE) == [PLANTING, K]
    assert titles(server, "/feeds/yunnanribao") == [Y, METRO, SCHOOLS]
    # Dated later again: back to the Yunnan copy, and the counts never moved.
    redate(config, "kmrb", "2022-03-21 12:00:00 +0800")
    wait_for(lambda: titles(server, "/feeds/all") == [PLANTING, Y, METRO, SCHOOLS, TOURISM])
    assert copies(server, COFFEE) == {Y: [KMRB]}
    assert server.get("/status").json()["posts"] == 6


def test_a_tie_goes_to_the_category_first_in_the_config(tmp_path: Path, serve: Serve) -> None:
    config = site(tmp_path)
    # Same instant for the Yunnan and the Xinhua copy: yunnanribao comes first in
    # the config, though the Xinhua file's name sorts first.
    redate(config, "xinhua", "2022-03-21 09:00:00 +0800")
    server = serve(config)
    assert titles(server, "/feeds/all") == [PLANTING, Y, METRO, SCHOOLS, TOURISM]
    assert copies(server, "/feeds/all") == {Y: [XINHUA, KMRB]}
    assert titles(server, COFFEE) == [PLANTING, Y]
    # xinhua moved before yunnanribao in the config: the tie goes the other way.
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    cats = data["categories"]
    data["categories"] = {s: cats[s] for s in ("kunmingribao", "xinhua", "yunnanribao")}
    config.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False),
                      encoding="utf-8")
    wait_for(lambda: titles(server, "/feeds/all") == [PLANTING, X, METRO, SCHOOLS, TOURISM])
    assert copies(server, "/feeds/all") == {X: [YNRB, KMRB]}
    assert titles(server, COFFEE) == [PLANTING, X]


def test_switched_off_every_copy_is_shown_everywhere(tmp_path: Path, serve: Serve) -> None:
    def off(data: dict[str, Any]) -> None:
        data["near_duplicates"] = {"show_once": False}

    server = serve(site(tmp_path, off))
    assert titles(server, "/feeds/all") == [PLANTING, K, Y, X, METRO, SCHOOLS, TOURISM]
    assert titles(server, COFFEE) == [PLANTING, K, Y, X]
    assert copies(server, "/feeds/all") == {} and related(server, COFFEE, "rss") == {}
    assert server.get("/status").json()["posts"] == 7
    assert len(archive_titles(server, "/feeds/all")) == 4


def test_a_new_copy_rewrites_the_archive_of_the_shown_one_in_an_incremental_build(
        tmp_path: Path) -> None:
    config = site(tmp_path)
    out = tmp_path / "out"
    exporter(load_config(config), out).build()
    late = "https://late.example/coffee.html"
    (config.parent / "_posts" / "2022-03-22-coffee-exports-late.md").write_text(
        copy_path(config, "ynrb").read_text(encoding="utf-8")
        .replace("2022-03-21 09:00:00", "2022-03-22 09:00:00")
        .replace("ynrb-7", "late-1").replace(YNRB, late), encoding="utf-8")
    report = exporter(load_config(config), out).build()
    written = {p.relative_to(out).as_posix() for p in report.written}
    # Xinhua's copy is still the one shown, in archive 2, which now lists the late copy.
    assert "feeds/all/archive/2.json" in written and "feeds/all/archive/1.json" not in written
    archived = json.loads((out / "feeds/all/archive/2.json").read_bytes())["items"]
    assert [i["_feedsvc"]["copies"] for i in archived if "_feedsvc" in i] == \
        [[YNRB, KMRB, late]]
    fresh = tmp_path / "fresh"
    exporter(load_config(config), fresh).build()
    assert {p.relative_to(fresh): p.read_bytes() for p in fresh.rglob("*.json")} == \
        {p.relative_to(out): p.read_bytes() for p in out.rglob("*.json")}


def test_check_counts_every_copy_in_feeds(tmp_path: Path) -> None:
    # Every copy is in a feed (its category's), even when the site-wide feed shows another.
    assert check(load_config(site(tmp_path))).counts["in feeds"] == 7


def test_show_once_is_validated_by_name(tmp_path: Path) -> None:
    config = site(tmp_path, lambda data: data.update(near_duplicates={"show_once": "yes"}))
    with pytest.raises(ConfigError, match=r"near_duplicates\.show_once: must be true or false"):
        load_config(config)
    config = site(tmp_path / "b", lambda data: data.update(near_duplicates=False))
    settings = load_config(config).near_duplicates
    assert (settings.enabled, settings.show_once) == (False, False)


@pytest.mark.timeout(600)
def test_the_site_wide_feed_with_copies_passes_feedcheck(
        tmp_path: Path, serve: Serve, feedcheck: Path) -> None:  # noqa: F811
    server = serve(site(tmp_path))
    files = []
    for fmt in ("rss", "atom", "json"):
        body = server.get(f"/feeds/all.{fmt}").content
        assert YNRB.encode() in body and KMRB.encode() in body   # the copies' links
        path = tmp_path / f"all.{fmt}"
        path.write_bytes(body)
        files.append(str(path))
    assert json.loads((tmp_path / "all.json").read_bytes())["items"][1]["_feedsvc"]
    run = subprocess.run([str(feedcheck), *files], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "3 file(s), 3 passed, 0 failed" in run.stdout
