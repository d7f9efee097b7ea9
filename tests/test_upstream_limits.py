"""Issue 15, findings 1, 3, 10 and 12 (collector side): dates out of range,
items too big to be posts, too many categories, too many items, a "seen" list
without a byte bound — each against a real upstream server on loopback."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import make_site
from upstream_support import Route, Upstream, upstream

from feedsvc import dates
from feedsvc.app import create_app
from feedsvc.config import Config, load_config
from feedsvc.errors import PostError
from feedsvc.index import Index
from feedsvc.index.sources import store_for
from feedsvc.posts import MAX_TERMS, Post, parse_post
from feedsvc.upstream import collector as collector_module
from feedsvc.upstream.collector import (
    MAX_ITEM_TAGS,
    SEEN_MAX_BYTES,
    Collector,
    SourceResult,
    load_state,
)
from feedsvc.upstream.fetch import Fetcher, Limits

FAST = Limits(connect_timeout=2, read_timeout=5, deadline=20, max_bytes=10 * 2**20,
              retries=0, backoff=0)
NOW = dt.datetime(2026, 1, 10, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def up() -> Iterator[Upstream]:
    with upstream() as server:
        yield server


def site(tmp_path: Path, *urls: str) -> Config:
    cats = {"kunmingribao": {"title": "昆明日报新闻", "sources": list(urls)}}
    return load_config(make_site(tmp_path / "site", config={"categories": cats}))


def collect(config: Config) -> list[SourceResult]:
    collector = Collector(config, fetcher=Fetcher(FAST), clock=lambda: NOW)
    return collector.run(collector.sources())


def stored(config: Config) -> dict[str, Post]:
    index = Index(config, lambda: NOW)
    index.scan()
    assert index.problem_list() == []          # every stored post is one the reader takes
    return {p.source_guid: p for p in index.posts.values() if p.source_guid}


def rss(items: list[str]) -> bytes:
    return ('<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>t</title>'
            + "".join(items) + "</channel></rss>").encode()


def item(guid: str, title: str = "t", extra: str = "") -> str:
    return (f"<item><title>{title}</title><guid isPermaLink=\"false\">{guid}</guid>"
            f"<pubDate>Mon, 21 Mar 2022 06:00:08 +0800</pubDate>{extra}</item>")


# -- finding 1: dates out of range ------------------------------------------------
@pytest.mark.parametrize(("fixture", "ordinary", "undated"), [
    ("rss-date-out-of-range.xml", "range-ordinary", ["range-9999", "range-0001", "range-0001-est"]),
    ("json-date-out-of-range.json", "json-ordinary", ["json-9999", "json-0001"]),
])
def test_an_item_dated_out_of_range_costs_no_other_item(
        tmp_path: Path, up: Upstream, fixture: str, ordinary: str, undated: list[str]) -> None:
    up.routes["/feed"] = Route.fixture(fixture)
    config = site(tmp_path, up.url + "/feed")
    [result] = collect(config)
    assert result.error is None and result.new == len(undated) + 1
    assert result.warning and "stored with the time they were collected" in result.warning
    posts = stored(config)
    assert posts[ordinary].date.isoformat() == "2022-03-21T06:00:08+08:00"
    for guid in undated:
        # Never year 2001 (dateutil and feedparser read "0001" as a two-digit year).
        assert posts[guid].date == NOW, guid
    [again] = collect(config)
    assert again.error is None and again.new == 0


@pytest.mark.parametrize(("text", "error"), [
    ("Fri, 31 Dec 9999 23:59:59 +0000", "out of range"),
    ("9999-12-31T23:59:59-12:00", "out of range"),
    ("Mon, 01 Jan 0001 00:00:00 +0000", "out of range"),
    ("Jan 1 0001", "out of range"),
    ("0001-01-01 00:00:00 +0800", "out of range"),
])
def test_the_normaliser_refuses_every_spelling_of_an_out_of_range_date(text: str,
                                                                      error: str) -> None:
    with pytest.raises(dates.DateRangeError, match=error):
        dates.normalise(text, dates.zone("Asia/Shanghai"))


def test_a_year_written_in_full_is_that_year() -> None:
    sh = dates.zone("Asia/Shanghai")
    assert dates.normalise("1 Jan 0050 10:00 +0000", sh).year == 50
    assert dates.normalise("Mon, 21 Mar 2022 06:00:08 +0800", sh).year == 2022
    assert dates.normalise("21 Mar 22 06:00 +0800", sh).year == 2022   # two digits: as written
    assert dates.jekyll(dates.normalise("0050-01-01 10:00 +0000", sh)) == "0050-01-01 10:00:00 +0000"


# -- finding 3: a 1 MB title or guid ----------------------------------------------------
def test_items_with_huge_fields_become_posts_that_are_served(tmp_path: Path, up: Upstream) -> None:
    huge = "长" * (2**20 // 3)                     # 1 MB of UTF-8
    up.routes["/feed.xml"] = Route(rss([
        item("huge-title", title=huge),
        item("g" * 2**20),
        item("huge-link", extra=f"<link>https://upstream.example/{'x' * 2**20}</link>"),
        item("huge-tag", extra=f"<category>{'t' * 2**20}</category><category>ok</category>"),
        item("plain"),
    ]), etag=False, last_modified=None)        # no validators: the next poll reads it all again
    config = site(tmp_path, up.url + "/feed.xml")
    [result] = collect(config)
    assert result.error is None and result.new == 5
    posts = stored(config)
    assert len(posts) == 5
    assert len(posts["huge-title"].title.encode()) <= 1024 and posts["huge-title"].title.endswith("…")
    hashed = [g for g in posts if g.startswith("urn:feedsvc:sha256:")]
    assert len(hashed) == 1
    assert posts["huge-link"].source_url is None
    assert "ok" in posts["huge-tag"].tags and all(len(t) <= 100 for t in posts["huge-tag"].tags)
    with create_app(config, watch=False).test_client() as client:
        feed = client.get("/feeds/kunmingribao.json").get_json()
    assert len(feed["items"]) == 5
    # And the next poll knows them all: nothing stored twice.
    [again] = collect(config)
    assert again.new == 0 and again.unchanged == 5


def test_nothing_is_marked_seen_that_was_not_stored(tmp_path: Path, up: Upstream,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # A post text the reader refuses, whatever makes it so: here a front-matter
    # limit lowered under the collector's caps.
    monkeypatch.setattr("feedsvc.posts.MAX_FRONT_MATTER", 300)
    up.routes["/feed.xml"] = Route(rss([item("small"), item("big", title="b" * 600)]),
                                   etag=False, last_modified=None)
    config = site(tmp_path, up.url + "/feed.xml")
    [result] = collect(config)
    assert result.new == 1 and result.warning and "1 item(s) not stored" in result.warning
    state = load_state(config, "kunmingribao", up.url + "/feed.xml")
    assert state.seen == ["small"]
    monkeypatch.undo()
    [later] = collect(config)                  # the limit is back: the item is still there
    assert later.new == 1 and set(stored(config)) == {"small", "big"}


# -- finding 10: categories per item, terms per post ---------------------------------
def test_an_item_with_3000_categories_keeps_a_bounded_number(tmp_path: Path, up: Upstream) -> None:
    cats = "".join(f"<category>c{i}</category>" for i in range(3000))
    up.routes["/feed.xml"] = Route(rss([item("many", extra=cats)]))
    config = site(tmp_path, up.url + "/feed.xml")
    [result] = collect(config)
    assert result.new == 1
    [post] = stored(config).values()
    assert len(post.tags) == MAX_ITEM_TAGS + 1          # the category's title + 30 of the item's
    with create_app(config, watch=False).test_client() as client:
        assert len(client.get("/").data) < 64 * 1024
        assert client.get("/tags/c0.atom").status_code == 200


def test_a_post_with_more_terms_than_the_limit_is_reported(tmp_path: Path) -> None:
    config = load_config(make_site(tmp_path / "site"))
    tags = " ".join(f"t{i}" for i in range(MAX_TERMS + 1))
    raw = f"---\ntitle: x\ndate: 2022-03-21\ntags: {tags}\n---\nbody\n".encode()
    fake = Path(config.posts_dir / "x.md")
    fake.write_bytes(raw)
    with pytest.raises(PostError, match=f"'tags': {MAX_TERMS + 1} values; at most {MAX_TERMS}"):
        parse_post("2022-03-21-x.md", raw, fake.stat(), config)


# -- finding 12: the seen list in bytes, items per poll -------------------------------
def test_the_seen_list_is_bounded_in_bytes(tmp_path: Path, up: Upstream) -> None:
    up.routes["/feed.xml"] = Route(rss([item(f"{i}" + "g" * 2**20) for i in range(6)]))
    config = site(tmp_path, up.url + "/feed.xml")
    [result] = collect(config)
    assert result.new == 6
    store, url = store_for(config), up.url + "/feed.xml"
    assert store.source_bytes("kunmingribao", url) < 4096   # was 5.7 MiB, rewritten every poll
    for n in range(3):
        up.routes["/feed.xml"] = Route(rss([item(f"poll{n}-{i}-" + "x" * 900) for i in range(500)]))
        collect(config)
    assert store.source_bytes("kunmingribao", url) <= SEEN_MAX_BYTES + 4096
    seen = (store.source("kunmingribao", url) or {})["seen"]
    assert seen[-1].startswith("poll2-499-")            # the newest are the ones kept


def test_new_items_per_poll_are_capped_and_the_rest_wait(tmp_path: Path, up: Upstream,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(collector_module, "MAX_NEW_PER_POLL", 40)
    up.routes["/feed.xml"] = Route(rss([item(f"i{i}") for i in range(100)]))
    config = site(tmp_path, up.url + "/feed.xml")
    counts: list[Any] = []
    for _ in range(4):
        [r] = collect(config)
        counts.append((r.new, bool(r.warning and "left for the next poll" in r.warning)))
    assert counts == [(40, True), (40, True), (20, False), (0, False)]
    assert len(stored(config)) == 100
    # The validators were kept back until the last item was in: the last poll was a 304.
    answers = [s.status for s in up.seen("/feed.xml")]
    assert answers == [200, 200, 200, 304]
