"""A response is made of one version of the index (issue 15, item 7): the
posts selected and the bodies rendered come from the same snapshot, so a post
file rewritten or deleted after it was indexed, and before its feed is first
rendered, can neither raise a 500 nor tear the document (entries of one
version, feed-level <updated> of another)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import feedparser
from support import make_site, post

from feedsvc.app import create_app
from feedsvc.config import load_config

POSTS = {
    "2022-03-21-older.md": post("Older", "2022-03-21 10:00:00 +0800", body="<p>旧文。</p>"),
    "2022-03-22-newest.md": post("Newest", "2022-03-22 10:00:00 +0800", body="<p>新文。</p>"),
}


def indexed_app(tmp_path: Path):  # type: ignore[no-untyped-def]
    config = load_config(make_site(tmp_path / "site", POSTS))
    # watch=False: the index is read once here and not again until asked, so the
    # file changes below stand for changes that the watcher has not seen yet.
    return config, create_app(config, watch=False)


def test_post_rewritten_half_written_after_indexing_is_served_as_indexed(tmp_path: Path) -> None:
    config, app = indexed_app(tmp_path)
    # A non-atomic rewrite caught halfway: the front matter is not even closed.
    (config.posts_dir / "2022-03-22-newest.md").write_text("---\ntitle: New", encoding="utf-8")
    resp = app.test_client().get("/feeds/kunmingribao.atom")
    assert resp.status_code == 200, resp.get_data(as_text=True)
    feed = feedparser.parse(resp.data)
    assert [e.title for e in feed.entries] == ["Newest", "Older"]
    assert "新文" in feed.entries[0].content[0].value


def test_post_deleted_after_indexing_does_not_tear_the_document(tmp_path: Path) -> None:
    config, app = indexed_app(tmp_path)
    (config.posts_dir / "2022-03-22-newest.md").unlink()
    feed = feedparser.parse(app.test_client().get("/feeds/kunmingribao.atom").data)
    entries = [(e.title, e.updated) for e in feed.entries]
    # One version: the post is still in it, and the feed's <updated> is its entries' newest.
    assert [t for t, _ in entries] == ["Newest", "Older"]
    assert feed.feed.updated == max(u for _, u in entries)


def test_after_the_change_is_indexed_the_next_version_is_whole_too(tmp_path: Path) -> None:
    config, app = indexed_app(tmp_path)
    service = app.extensions["feedsvc"]
    (config.posts_dir / "2022-03-22-newest.md").unlink()
    service.index.scan()
    feed = feedparser.parse(app.test_client().get("/feeds/kunmingribao.atom").data)
    assert [e.title for e in feed.entries] == ["Older"]
    updated = dt.datetime.fromisoformat(feed.feed.updated)
    assert updated == dt.datetime.fromisoformat(feed.entries[0].updated)
