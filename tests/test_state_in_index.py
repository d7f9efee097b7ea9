"""Upstream, WebSub and near-duplicate state live in the index (issues 12,
13: index/sources.py), on both backends: the files of older versions are
imported once and kept renamed, and the state survives a rebuild of the posts'
tables (an INDEX_FORMAT bump), so that a post an admin deleted is never
collected again."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from test_upstream import FAST, NOW, collect, site_with, stored
from test_websub import TOPICS, one_category_site, pinged
from upstream_support import Route, Upstream, upstream

from feedsvc import index as index_module
from feedsvc.index.sources import IMPORTED, store_for
from feedsvc.service import FeedService
from feedsvc.upstream.collector import Collector, load_state, parse_feed
from feedsvc.upstream.fetch import Fetcher
from feedsvc.websub import Publisher, feed_etags


@pytest.fixture
def up() -> Iterator[Upstream]:
    with upstream() as server:
        # No validators: every pass reads every item again, as a new leader would.
        server.routes["/rss.xml"] = Route(Route.fixture("rss.xml").body, etag=False,
                                          last_modified=None)
        yield server


def _guids_and_files(config: object, up: Upstream) -> tuple[dict[str, Path], str]:
    posts = stored(config)  # type: ignore[arg-type]
    return {g: p.path for g, p in posts.items()}, up.url + "/rss.xml"


def test_a_deleted_post_is_not_collected_again_after_the_posts_are_reindexed(
        tmp_path: Path, up: Upstream, monkeypatch: pytest.MonkeyPatch,
        index_backend: str) -> None:
    config = site_with(tmp_path, {"kunmingribao": [up.url + "/rss.xml"]})
    assert collect(config)["rss.xml"].new == 3
    files, url = _guids_and_files(config, up)
    victim = sorted(files)[0]
    Path(files[victim]).unlink()                      # an admin deletes one
    # New post reading rules: the posts' tables are built again from nothing …
    monkeypatch.setattr(index_module, "INDEX_FORMAT", index_module.INDEX_FORMAT + 1000)
    assert victim not in stored(config)
    # … but what was collected is remembered: the deleted post stays deleted.
    again = collect(config)["rss.xml"]
    assert (again.new, again.error) == (0, None)
    assert victim not in stored(config) and len(stored(config)) == 2
    assert victim in load_state(config, "kunmingribao", url).seen
    assert not (config.state_dir / "sources").exists()


def test_old_state_files_are_imported_once_and_kept_renamed(
        tmp_path: Path, up: Upstream, index_backend: str) -> None:
    config = site_with(tmp_path, {"kunmingribao": [up.url + "/rss.xml"]})
    url = up.url + "/rss.xml"
    # What an older feedsvc left in state_dir: a source that had stored every
    # item, one of them since deleted by the admin (so in no post).
    items = [it.guid for it in parse_feed(Route.fixture("rss.xml").body, "application/rss+xml",
                                          url, ZoneInfo("UTC")).items]
    assert len(items) == 3
    folder = config.state_dir / "sources"
    folder.mkdir(parents=True)
    old = {"format": 1, "category": "kunmingribao", "url": url, "etag": None,
           "last_modified": None, "last_success": "2026-01-09T12:00:00+00:00",
           "failures": 0, "seen": items, "written": {}, "next_attempt": None}
    (folder / "kunmingribao-0123456789abcdef.json").write_text(json.dumps(old),
                                                                encoding="utf-8")
    (config.state_dir / "websub.json").write_text(
        json.dumps({"announced": {"https://feeds.example/feeds/x.rss": '"abc"'}}),
        encoding="utf-8")
    result = collect(config)["rss.xml"]
    # Seen before the upgrade: nothing collected again.
    assert (result.new, result.unchanged, result.error) == (0, 3, None)
    assert stored(config) == {}
    assert not folder.exists() and (config.state_dir / ("sources" + IMPORTED)).is_dir()
    assert (config.state_dir / ("websub.json" + IMPORTED)).is_file()
    assert not (config.state_dir / "websub.json").exists()
    store = store_for(config)
    assert store.announced() == {"https://feeds.example/feeds/x.rss": '"abc"'}
    assert load_state(config, "kunmingribao", url).seen == items
    # A second import (another process, a restart) finds nothing more to do.
    assert store.import_files(config.state_dir) == []


def test_an_import_merges_with_what_the_index_already_has(
        tmp_path: Path, up: Upstream, index_backend: str) -> None:
    config = site_with(tmp_path, {"kunmingribao": [up.url + "/rss.xml"]})
    url = up.url + "/rss.xml"
    assert collect(config)["rss.xml"].new == 3
    before = load_state(config, "kunmingribao", url)
    # Another machine's state_dir, from before the upgrade, with an id of its own.
    other = tmp_path / "other-state" / "sources"
    other.mkdir(parents=True)
    (other / "kunmingribao-x.json").write_text(json.dumps(
        {"format": 1, "category": "kunmingribao", "url": url, "seen": ["from-the-other"],
         "etag": "stale", "written": {}}), encoding="utf-8")
    assert store_for(config).import_files(other.parent)
    merged = load_state(config, "kunmingribao", url)
    assert merged.seen == ["from-the-other", *before.seen]     # no id lost …
    assert merged.etag == before.etag                          # … and the index's state wins
    assert merged.written == before.written


def test_the_hub_is_not_pinged_again_by_a_publisher_with_another_state_dir(
        tmp_path: Path, index_backend: str) -> None:
    with upstream() as hub:
        hub.routes["/hub"] = Route(status=204)
        config = one_category_site(tmp_path, hub.url + "/hub")
        service = FeedService(config)
        service.start()
        hub_url = hub.url + "/hub"
        first = Publisher(store_for(config), Fetcher(FAST), clock=lambda: NOW)
        assert first.check(hub_url, feed_etags(service)) == 0          # baseline
        (config.posts_dir / "2022-03-22-second.md").write_text(
            "---\ntitle: 第二条\ndate: 2022-03-22 10:00:00 +0800\ncategories: kunmingribao\n"
            "---\n<p>正文</p>\n", encoding="utf-8")
        service.index.scan()
        assert first.check(hub_url, feed_etags(service)) == len(TOPICS)
        # Another instance takes over: on PostgreSQL one with its own, empty
        # state_dir (another machine); on SQLite the same machine after a restart.
        other = config
        if index_backend == "postgres":
            other = dataclasses.replace(config, state_dir=tmp_path / "elsewhere")
        second = Publisher(store_for(other), Fetcher(FAST), clock=lambda: NOW)
        assert second.check(hub_url, feed_etags(service)) == 0
        assert pinged(hub) == Counter(dict.fromkeys(TOPICS, 1))


def test_stories_are_remembered_in_the_index_across_passes(
        tmp_path: Path, index_backend: str) -> None:
    body = "".join(f"<p>滇池治理第{i}阶段完成，水质明显改善，湖滨生态带恢复良好。</p>"
                   for i in range(6))

    def rss(guid: str, head: str) -> bytes:
        return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
                f"<title>{guid}</title><link>https://x.example/</link><description>d"
                f"</description><item><guid isPermaLink=\"false\">{guid}</guid><title>滇池治理</title>"
                f"<link>https://x.example/{guid}</link>"
                f"<pubDate>Mon, 21 Mar 2022 06:00:08 +0800</pubDate>"
                f"<description><![CDATA[<p>{head}</p>{body}]]></description></item>"
                f"</channel></rss>").encode()

    with upstream() as up:
        up.routes["/a.xml"] = Route(rss("a-1", "本报讯"))
        up.routes["/b.xml"] = Route(rss("b-1", "新华社昆明3月21日电"))
        config = site_with(tmp_path, {"kunmingribao": [up.url + "/a.xml", up.url + "/b.xml"]})
        first = Collector(config, fetcher=Fetcher(FAST), clock=lambda: NOW)
        assert [r.new for r in first.run(first.sources()[:1])] == [1]
        # The second source in a later pass (another Collector, as in another
        # process): its reprint is found from the signatures the first stored.
        second = Collector(config, fetcher=Fetcher(FAST), clock=lambda: NOW)
        assert [r.new for r in second.run(second.sources()[1:])] == [1]
        posts = stored(config)
        assert posts["b-1"].story == "a-1" and posts["a-1"].story is None
