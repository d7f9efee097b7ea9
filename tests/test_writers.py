"""RSS 2.0, Atom 1.0 and JSON Feed 1.1 from one model (DESIGN.md "Feed output").

Golden files: tests/golden/site/ holds every feed of tests/fixtures/site as
`feedsvc build` writes it. After an intended change of the output, regenerate
them with `FEEDSVC_REGEN_GOLDEN=1 make test PYTEST_ARGS=tests/test_writers.py`
and review the diff.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import os
import re
from pathlib import Path
from typing import Any

import feedparser
import pytest
from lxml import etree
from support import make_site, post

from feedsvc import content, dates, writers
from feedsvc.config import Config, load_config
from feedsvc.export import export
from feedsvc.feeds import FeedKey
from feedsvc.model import FORMATS, Entry, Feed, Person
from feedsvc.service import FeedService

GOLDEN = Path(__file__).parent / "golden" / "site"
REGEN = os.environ.get("FEEDSVC_REGEN_GOLDEN") == "1"
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
NS = {"a": "http://www.w3.org/2005/Atom", "content": "http://purl.org/rss/1.0/modules/content/"}
SAMPLE_URL = "https://news.example.com/kunmingribao/2022/03/21/anning-industrial-park.html"


def clock() -> dt.datetime:
    return NOW


def feed_files(root: Path) -> dict[str, bytes]:
    """The feed documents of a built tree (index page and OPML belong to other tests)."""
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for top in ("feeds", "tags") if (root / top).is_dir()
            for p in sorted((root / top).rglob("*")) if p.is_file()}


@pytest.fixture
def built(config: Config, tmp_path: Path) -> dict[str, bytes]:
    export(config, tmp_path / "out", clock=clock)
    return feed_files(tmp_path / "out")


@pytest.fixture
def service(config: Config) -> FeedService:
    svc = FeedService(config, clock=clock)
    svc.start()
    return svc


def doc(service: FeedService, name: str, fmt: str, archive: int = 0) -> bytes:
    return service.document(FeedKey("category", name, fmt, archive)).body


# -- golden files ---------------------------------------------------------------

def test_golden_feeds(built: dict[str, bytes]) -> None:
    if REGEN:
        for old in feed_files(GOLDEN):
            (GOLDEN / old).unlink()
        for rel, body in built.items():
            (GOLDEN / rel).parent.mkdir(parents=True, exist_ok=True)
            (GOLDEN / rel).write_bytes(body)
    golden = feed_files(GOLDEN)
    assert golden, f"no golden files in {GOLDEN}; run with FEEDSVC_REGEN_GOLDEN=1"
    assert sorted(built) == sorted(golden)
    for rel, body in built.items():
        assert body == golden[rel], f"{rel} differs from its golden file"


def test_golden_tree_covers_every_category_and_format(built: dict[str, bytes]) -> None:
    for slug in ("kunmingribao", "world", "empty", "all"):
        for fmt in FORMATS:
            assert f"feeds/{slug}.{fmt}" in built
    assert "feeds/kunmingribao/archive/2.rss" in built  # limit 3: a second archive
    # No paged feeds (RFC 5005 §3) any more: archives do not shift.
    assert not any(re.search(r"/[0-9]+\.[a-z]+$", rel) and "/archive/" not in rel
                   for rel in built)


# -- round trip through feedparser, structure through lxml -----------------------

def expected_entries(service: FeedService, name: str, page: int = 1) -> list[Any]:
    views = service.index.views()
    posts = views.categories.get(name, []) if name != "all" else views.all
    limit = service.config.category_limit(name) if name != "all" else service.config.limit
    return posts[(page - 1) * limit: page * limit]


@pytest.mark.parametrize("name", ["kunmingribao", "world", "empty"])
@pytest.mark.parametrize("fmt", ["rss", "atom"])
def test_feedparser_round_trip(service: FeedService, name: str, fmt: str) -> None:
    parsed = feedparser.parse(doc(service, name, fmt))
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert parsed.version == ("rss20" if fmt == "rss" else "atom10")
    posts = expected_entries(service, name)
    assert [e.id for e in parsed.entries] == [p.guid for p in posts]
    assert [e.title for e in parsed.entries] == [content.title_text(p.title) for p in posts]
    assert [e.link for e in parsed.entries] == [p.url for p in posts]
    write = dates.rfc822 if fmt == "rss" else dates.rfc3339
    for entry, p in zip(parsed.entries, posts, strict=True):
        # The raw string keeps the offset; *_parsed is UTC and must be the same instant.
        assert entry.published == write(p.date)
        assert dt.datetime(*entry.published_parsed[:6], tzinfo=dt.UTC) == p.date
        if fmt == "atom":
            assert entry.updated == write(p.updated)
    assert parsed.feed.title == service.config.categories[name].title


def test_every_feed_round_trips_with_the_same_entries_in_all_formats(
        built: dict[str, bytes]) -> None:
    """Every built feed (categories, all, tags, pages): RSS and Atom parse without
    bozo and say what the JSON Feed says: ids, titles, links, instants and offsets."""
    stems = sorted({rel.rsplit(".", 1)[0] for rel in built})
    assert len(stems) >= 9
    for stem in stems:
        items = json.loads(built[f"{stem}.json"])["items"]
        want = [(i["id"], i["title"], i["url"], dt.datetime.fromisoformat(i["date_published"]))
                for i in items]
        for fmt in ("rss", "atom"):
            parsed = feedparser.parse(built[f"{stem}.{fmt}"])
            assert not parsed.bozo, (stem, fmt, parsed.get("bozo_exception"))
            read = (email.utils.parsedate_to_datetime if fmt == "rss"
                    else dt.datetime.fromisoformat)
            got = [(e.id, e.title, e.link, read(e.published)) for e in parsed.entries]
            assert got == want, (stem, fmt)
            assert [g[3].utcoffset() for g in got] == [w[3].utcoffset() for w in want]


def test_atom_structure(service: FeedService) -> None:
    root = etree.fromstring(doc(service, "kunmingribao", "atom"))
    assert root.tag == "{http://www.w3.org/2005/Atom}feed"
    assert root.get("{http://www.w3.org/XML/1998/namespace}lang") == "zh-CN"
    links = {link.get("rel"): link.get("href") for link in root.findall("a:link", NS)}
    assert links["self"] == "https://feeds.example.com/feeds/kunmingribao.atom"
    assert links["alternate"] == "https://news.example.com/category/kunmingribao.html"
    first_link = root.find("a:link", NS)
    assert first_link is not None and first_link.get("rel") == "alternate"
    # The newest archive (RFC 5005 §4; 5 posts, 3 per archive).
    assert links["prev-archive"] == "https://feeds.example.com/feeds/kunmingribao/archive/2.atom"
    assert root.findtext("a:updated", namespaces=NS) == "2022-03-24T00:00:00+08:00"
    assert root.findtext("a:author/a:name", namespaces=NS) == "测试编辑部"
    entries = root.findall("a:entry", NS)
    assert len(entries) == 3
    for entry in entries:
        body = entry.find("a:content", NS)
        assert body is not None and body.get("type") == "html"
        assert entry.findtext("a:summary", namespaces=NS)
        assert entry.find("a:link", NS) is not None
        assert entry.findtext("a:published", namespaces=NS)
        assert [c.get("term") for c in entry.findall("a:category", NS)][0] == "kunmingribao"


def test_rss_structure(service: FeedService) -> None:
    root = etree.fromstring(doc(service, "kunmingribao", "rss"))
    channel = root.find("channel")
    assert root.get("version") == "2.0" and channel is not None
    assert channel.findtext("link") == "https://news.example.com/category/kunmingribao.html"
    self_links = [link for link in channel.findall("a:link", NS) if link.get("rel") == "self"]
    assert [link.get("href") for link in self_links] == [
        "https://feeds.example.com/feeds/kunmingribao.rss"]
    assert channel.findtext("language") == "zh-CN"
    assert channel.findtext("lastBuildDate") == "Thu, 24 Mar 2022 00:00:00 +0800"
    assert channel.findtext("ttl") == "5"
    items = channel.findall("item")
    assert len(items) == 3
    for item in items:
        assert item.findtext("content:encoded", namespaces=NS).startswith("<p>")
        assert item.findtext("description")
        guid = item.find("guid")
        assert guid is not None and guid.get("isPermaLink") == "true"
        assert guid.text == item.findtext("link")
    naive = items[2]
    assert naive.findtext("title") == "无时区的日期"
    assert [c.text for c in naive.findall("category")] == ["kunmingribao", "昆明", "经济"]


def test_json_feed_1_1(service: FeedService) -> None:
    data = json.loads(doc(service, "kunmingribao", "json"))
    assert data["version"] == "https://jsonfeed.org/version/1.1"
    assert data["title"] == "昆明日报新闻"
    assert data["home_page_url"] == "https://news.example.com/category/kunmingribao.html"
    assert data["feed_url"] == "https://feeds.example.com/feeds/kunmingribao.json"
    assert data["_rfc5005"]["prev_archive"] == (
        "https://feeds.example.com/feeds/kunmingribao/archive/2.json")
    assert "next_url" not in data   # JSON Feed's next_url is paging, which archives replace
    assert data["language"] == "zh-CN"
    assert data["authors"] == [{"name": "测试编辑部"}]
    posts = expected_entries(service, "kunmingribao")
    assert [i["id"] for i in data["items"]] == [p.guid for p in posts]
    for item, p in zip(data["items"], posts, strict=True):
        assert item["url"] == p.url and item["title"] == content.title_text(p.title)
        assert item["content_html"] and item["summary"]
        assert item["date_published"] == dates.rfc3339(p.date)
        assert item["date_modified"] == dates.rfc3339(p.updated)
    assert data["items"][2]["tags"] == ["kunmingribao", "昆明", "经济"]


def test_the_sample_post_reads_with_its_offset_and_absolute_links(service: FeedService) -> None:
    # The sample is in whichever archive its arrival gave it (archive numbers, not dates).
    number = next(n for n in (1, 2) if SAMPLE_URL.encode() in doc(service, "kunmingribao",
                                                                   "rss", n))
    rss = etree.fromstring(doc(service, "kunmingribao", "rss", number))
    item = next(i for i in rss.iter("item") if i.findtext("link") == SAMPLE_URL)
    assert item.findtext("pubDate") == "Mon, 21 Mar 2022 06:00:08 +0800"
    atom = etree.fromstring(doc(service, "kunmingribao", "atom", number))
    entry = next(e for e in atom.findall("a:entry", NS) if e.findtext("a:id", namespaces=NS)
                 == SAMPLE_URL)
    assert entry.findtext("a:published", namespaces=NS) == "2022-03-21T06:00:08+08:00"
    for body in (item.findtext("content:encoded", namespaces=NS),
                 entry.findtext("a:content", namespaces=NS)):
        hrefs = etree.fromstring(f"<div>{body}</div>", etree.HTMLParser()).xpath("//a/@href")
        assert hrefs == [
            "http://finews.zning.xyz/html_News/NewsShare.html?infoCode=NW202203212316365110",
            "https://finews.withounder.com/category/kunmingribao.html",
            "https://finews.withounder.com/",
        ]
    data = json.loads(doc(service, "kunmingribao", "json", number))
    item = next(i for i in data["items"] if i["url"] == SAMPLE_URL)
    assert item["date_published"] == "2022-03-21T06:00:08+08:00"


# -- determinism, order, limit, feed-level updated -------------------------------

def test_same_posts_same_bytes(config: Config) -> None:
    def every_doc() -> list[bytes]:
        svc = FeedService(config, clock=clock)
        svc.start()
        return [doc(svc, name, fmt) for name in config.categories for fmt in FORMATS]

    assert every_doc() == every_doc()


def test_builder_is_pure() -> None:
    when = dt.datetime(2022, 3, 21, 6, 0, 8, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    entry = Entry(id="https://e.com/a.html", title="A", link="https://e.com/a.html",
                  published=when, updated=when, summary="s", content_html="<p>s</p>")
    feed = Feed(id="https://f.com/feeds/a.atom", title="F", description="d",
                link="https://e.com/", self_url="https://f.com/feeds/a.rss", updated=when,
                author=Person("Ed"), entries=(entry,), language="zh-CN")
    for fmt in FORMATS:
        assert writers.build(feed, fmt) == writers.build(feed, fmt)
    assert b"<lastBuildDate>Mon, 21 Mar 2022 06:00:08 +0800</lastBuildDate>" in writers.rss(feed)


def site_with(tmp_path: Path, posts: dict[str, str], **config: Any) -> FeedService:
    svc = FeedService(load_config(make_site(tmp_path / "site", posts, config=config or None)),
                      clock=clock)
    svc.start()
    return svc


def test_newest_first_ties_by_ascending_id(tmp_path: Path) -> None:
    svc = site_with(tmp_path, {
        "2022-03-21-b.md": post("B", "2022-03-21 10:00:00 +0800"),
        "2022-03-21-a.md": post("A", "2022-03-21 03:00:00 +0100"),     # the same instant
        "2022-03-20-old.md": post("Old", "2022-03-20 10:00:00 +0800"),
        "2022-03-22-new.md": post("New", "2022-03-22 10:00:00 +0800"),
    })
    expected = ["New", "A", "B", "Old"]
    assert [e.title for e in feedparser.parse(doc(svc, "kunmingribao", "rss")).entries] == expected
    assert [e.title for e in feedparser.parse(doc(svc, "kunmingribao", "atom")).entries] == expected
    items = json.loads(doc(svc, "kunmingribao", "json"))["items"]
    assert [i["title"] for i in items] == expected


def test_limit_per_site_and_per_category(tmp_path: Path) -> None:
    posts = {f"2022-03-{d:02d}-p{d}.md": post(f"P{d}", f"2022-03-{d:02d} 10:00:00 +0800",
                                               "kunmingribao caijing") for d in range(1, 8)}
    categories = {"kunmingribao": {"title": "K", "limit": 2}, "caijing": {"title": "C"}}
    svc = site_with(tmp_path, posts, limit=5, categories=categories)
    assert len(json.loads(doc(svc, "kunmingribao", "json"))["items"]) == 2
    caijing = json.loads(doc(svc, "caijing", "json"))["items"]
    assert [i["title"] for i in caijing] == ["P7", "P6", "P5", "P4", "P3"]
    # Archives hold limit posts each, the oldest first: P1…P5, then P6 and P7.
    assert [i["title"] for i in json.loads(doc(svc, "caijing", "json", 1))["items"]] == [
        "P5", "P4", "P3", "P2", "P1"]
    assert [i["title"] for i in json.loads(doc(svc, "caijing", "json", 2))["items"]] == ["P7", "P6"]


def test_feed_updated_is_the_newest_entry_updated(tmp_path: Path) -> None:
    svc = site_with(tmp_path, {
        "2022-03-21-edited.md": post("Edited", "2022-03-21 10:00:00 +0800",
                                     updated="2022-03-30 10:00:00 +0800"),
        "2022-03-25-newer.md": post("Newer", "2022-03-25 10:00:00 +0800"),
        "2022-04-09-other.md": post("Elsewhere", "2022-04-09 10:00:00 +0800", "world"),
    })
    assert b"<updated>2022-03-30T10:00:00+08:00</updated>" in doc(svc, "kunmingribao", "atom")
    assert (b"<lastBuildDate>Wed, 30 Mar 2022 10:00:00 +0800</lastBuildDate>"
            in doc(svc, "kunmingribao", "rss"))
    # An empty feed takes the newest updated of the whole site, never "now".
    assert b"<updated>2022-04-09T10:00:00+08:00</updated>" in doc(svc, "empty", "atom")
    assert (b"<lastBuildDate>Sat, 09 Apr 2022 10:00:00 +0800</lastBuildDate>"
            in doc(svc, "empty", "rss"))


def test_empty_site_feed_is_dated_at_the_epoch(tmp_path: Path) -> None:
    svc = site_with(tmp_path, {})
    assert b"<updated>1970-01-01T00:00:00+00:00</updated>" in doc(svc, "empty", "atom")
    assert (b"<lastBuildDate>Thu, 01 Jan 1970 00:00:00 +0000</lastBuildDate>"
            in doc(svc, "empty", "rss"))
    for fmt in ("rss", "atom"):
        assert not feedparser.parse(doc(svc, "empty", fmt)).bozo
    assert json.loads(doc(svc, "empty", "json"))["items"] == []


def test_guid_override_is_the_id_everywhere(tmp_path: Path) -> None:
    svc = site_with(tmp_path, {"2022-03-21-g.md": post("G", "2022-03-21 10:00:00 +0800",
                                                       guid="urn:uuid:1234")})
    rss = etree.fromstring(doc(svc, "kunmingribao", "rss"))
    guid = rss.find("channel/item/guid")
    assert guid is not None and guid.text == "urn:uuid:1234" and guid.get("isPermaLink") == "false"
    assert feedparser.parse(doc(svc, "kunmingribao", "atom")).entries[0].id == "urn:uuid:1234"
    assert json.loads(doc(svc, "kunmingribao", "json"))["items"][0]["id"] == "urn:uuid:1234"


def test_media_types(service: FeedService) -> None:
    assert {fmt: service.document(FeedKey("category", "kunmingribao", fmt)).mimetype
            for fmt in FORMATS} == {
        "rss": "application/rss+xml; charset=utf-8",
        "atom": "application/atom+xml; charset=utf-8",
        "json": "application/feed+json; charset=utf-8",
    }
