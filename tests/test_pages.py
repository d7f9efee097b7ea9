"""The index page and OPML are rendered once per index version, without Flask."""

from __future__ import annotations

from pathlib import Path

from readers_site import readers_site
from support import post

from feedsvc.config import load_config
from feedsvc.feeds import FeedKey
from feedsvc.pages import Pages, wants_page
from feedsvc.service import FeedService


def test_index_is_rendered_once_per_index_version(tmp_path: Path) -> None:
    config = readers_site(tmp_path / "site")
    service = FeedService(load_config(config))
    service.start()
    pages = Pages(service)
    first = pages.index()
    assert pages.index() is first
    assert pages.opml() is pages.opml()
    (config.parent / "_posts" / "2022-03-26-new-post.md").write_text(
        post("新的一篇", "2022-03-26 08:00:00 +0800"), encoding="utf-8")
    service.index.scan()
    fresh = pages.index()
    assert fresh is not first and "新的一篇" in fresh.body.decode()
    assert fresh.etag != first.etag
    # OPML lists categories only: a new post leaves its bytes alone.
    assert pages.opml().body == Pages(service).opml().body


def test_browser_view_is_cached_per_feed_and_options(tmp_path: Path) -> None:
    service = FeedService(load_config(readers_site(tmp_path / "site")))
    service.start()
    pages = Pages(service)
    plain = pages.feed_view(FeedKey("category", "kunmingribao", "rss"))
    assert pages.feed_view(FeedKey("category", "kunmingribao", "rss")) is plain
    converted = pages.feed_view(FeedKey("category", "kunmingribao", "rss", opencc="s2t"))
    assert converted.etag != plain.etag
    assert "簡體中文測試" in converted.body.decode()


def test_only_document_navigations_want_the_page() -> None:
    assert wants_page("document") and wants_page("Document ")
    assert not any(wants_page(v) for v in (None, "", "empty", "iframe", "image", "documents"))
