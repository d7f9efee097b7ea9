"""Start and first indexing (issue 12): until a first indexing is done, feeds
answer 503 with Retry-After (never a partial feed), /healthz stays 200 and
/readyz says not ready; a start with an existing index answers at once, from
what the index holds, and catches up without reading unchanged files."""

from __future__ import annotations

from pathlib import Path

import feedparser
import pytest
from support import make_site, post, running, wait_for

from feedsvc.app import create_app
from feedsvc.config import load_config
from feedsvc.index import reading
from feedsvc.service import FeedService

POSTS = {f"2022-03-{d:02d}-p{d}.md": post(f"P{d}", f"2022-03-{d:02d} 10:00:00 +0800")
         for d in range(1, 6)}


def test_before_a_first_indexing_feeds_are_503_and_readyz_says_why(tmp_path: Path) -> None:
    config = load_config(make_site(tmp_path / "site", POSTS))
    # A service that indexes in the background, with nobody indexing yet.
    service = FeedService(config, background=True)
    app = create_app(config, watch=False, service=service)
    client = app.test_client()
    for url in ("/feeds/kunmingribao.rss", "/feeds/all.atom", "/"):
        resp = client.get(url)
        assert resp.status_code == 503, url
        assert resp.headers["Retry-After"] == "5"
        assert "no-store" in resp.headers["Cache-Control"]
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 503 and "not ready" in ready.get_data(as_text=True)
    assert client.get("/status").get_json()["index"]["ready"] is False

    service.index.scan()
    assert client.get("/readyz").status_code == 200
    feed = feedparser.parse(client.get("/feeds/kunmingribao.rss").data)
    assert [e.title for e in feed.entries] == ["P5", "P4", "P3", "P2", "P1"]


def test_a_start_with_an_index_answers_at_once_and_catches_up(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = make_site(tmp_path / "site", POSTS)
    config = load_config(site)
    FeedService(config).start()          # an earlier run indexed the posts
    added = config.posts_dir / "2022-03-06-p6.md"
    added.write_text(post("P6", "2022-03-06 10:00:00 +0800"), encoding="utf-8")
    reads: list[str] = []
    real = reading.read_post_text
    monkeypatch.setattr(reading, "read_post_text",
                        lambda d, rel, c: reads.append(rel) or real(d, rel, c))

    service = FeedService(config, background=True)
    service.start()                       # returns at once: the leader catches up
    client = create_app(config, watch=False, service=service).test_client()
    assert client.get("/readyz").status_code == 200
    titles = [e.title for e in feedparser.parse(client.get("/feeds/kunmingribao.rss").data).entries]
    assert titles == ["P5", "P4", "P3", "P2", "P1"] and reads == []
    service.index.scan()                  # what the leader's watcher does first
    titles = [e.title for e in feedparser.parse(client.get("/feeds/kunmingribao.rss").data).entries]
    assert titles[0] == "P6" and reads == ["2022-03-06-p6.md"]


def test_serve_becomes_ready_and_every_worker_serves_the_same_bytes(tmp_path: Path) -> None:
    site = make_site(tmp_path / "site", {
        f"2022-{m:02d}-{d:02d}-p{m}-{d}.md": post(f"P{m}-{d}", f"2022-{m:02d}-{d:02d} 10:00:00 +0800")
        for m in range(1, 13) for d in range(1, 29)})
    with running(site, workers=2) as server:   # waits for /readyz
        assert server.get("/healthz").status_code == 200
        # The leader says when its first scan is over (the bench waits for it to idle).
        wait_for(lambda: "caught up with posts_dir in" in server.output(), timeout=20)
        etags = {server.get("/feeds/kunmingribao.atom").headers["ETag"] for _ in range(8)}
        assert len(etags) == 1
        (site.parent / "_posts" / "2023-01-01-new.md").write_text(
            post("New", "2023-01-01 10:00:00 +0800"), encoding="utf-8")
        wait_for(lambda: all(b"New" in server.get("/feeds/kunmingribao.atom").content
                             for _ in range(6)), timeout=20)
