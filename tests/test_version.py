"""One version of the served state (feedsvc/version.py): a config reload that
only moves posts_dir to another folder is a new version for every cache —
feeds, the index page, OPML, the browser view and the WebSub publisher — even
when the new folder's index happens to be at the old one's generation."""

from __future__ import annotations

import datetime as dt
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import make_site, post
from upstream_support import Upstream, upstream

from feedsvc.app import create_app
from feedsvc.config import Config, load_config
from feedsvc.schedule import Scheduler
from feedsvc.service import FeedService
from feedsvc.upstream.fetch import Fetcher, Limits

OLD_MTIME = dt.datetime(2020, 1, 1, tzinfo=dt.UTC).timestamp()
FEEDS = ("/feeds/kunmingribao.rss", "/feeds/kunmingribao.atom", "/feeds/kunmingribao.json",
         "/feeds/all.rss")


def two_folders(root: Path, **overrides: object) -> tuple[Config, Config]:
    """Two configs alike but for posts_dir: `old/` holds 旧文章, `new/` holds 新文章
    (edited later than it), and neither config file is newer than either post."""
    base = {"posts_dir": "old", "categories": {"kunmingribao": {"title": "昆明日报新闻"}},
            **overrides}
    old_cfg = make_site(root, config=base)
    new_cfg = root / "new.yaml"
    new_cfg.write_text(old_cfg.read_text(encoding="utf-8").replace("posts_dir: old",
                                                                   "posts_dir: new"),
                       encoding="utf-8")
    for folder, title, mtime in (("old", "旧文章", "2022-04-01"), ("new", "新文章", "2022-06-01")):
        path = root / folder / "_posts" / "2022-03-21-story.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(post(title, "2022-03-21 06:00:08 +0800"), encoding="utf-8")
        stamp = dt.datetime.fromisoformat(mtime).replace(tzinfo=dt.UTC).timestamp()
        os.utime(path, (stamp, stamp))
    for cfg in (old_cfg, new_cfg):
        os.utime(cfg, (OLD_MTIME, OLD_MTIME))
    return load_config(old_cfg), load_config(new_cfg)


def reload_at_same_generation(service: FeedService, config: Config) -> None:
    """Reload `config`, another posts_dir. (The generation lives in the index's
    database and moves with every change; what this pins is that the version
    moves with the folder whatever the generation does: the index's id.)"""
    service.reload_config(config)
    assert service.index.config.posts_dir == config.posts_dir


def test_a_posts_dir_reload_shows_the_new_folder_everywhere(tmp_path: Path) -> None:
    old, new = two_folders(tmp_path / "site")
    app = create_app(old, watch=False)
    service: FeedService = app.extensions["feedsvc"]
    browser = {"Sec-Fetch-Dest": "document"}
    with app.test_client() as client:
        def pages() -> dict[str, tuple[str, str]]:
            got = {url: client.get(url) for url in (*FEEDS, "/", "/opml.xml")}
            got["view"] = client.get(FEEDS[0], headers=browser)
            assert all(r.status_code == 200 for r in got.values()), got
            return {url: (r.get_data(as_text=True), r.headers["Last-Modified"])
                    for url, r in got.items()}

        before = pages()
        assert all("旧文章" in before[url][0] for url in (*FEEDS, "/", "view"))
        reload_at_same_generation(service, new)
        after = pages()
    for url in (*FEEDS, "/", "view"):
        assert "新文章" in after[url][0] and "旧文章" not in after[url][0], url
    # OPML lists the categories only; its Last-Modified is the newest post change.
    assert after["/opml.xml"][0] == before["/opml.xml"][0]
    assert after["/opml.xml"][1] == "Wed, 01 Jun 2022 00:00:00 GMT"
    assert before["/opml.xml"][1] == "Fri, 01 Apr 2022 00:00:00 GMT"


@pytest.fixture
def hub() -> Iterator[Upstream]:
    with upstream() as server:
        yield server


def test_a_posts_dir_reload_is_announced_to_the_hub(tmp_path: Path, hub: Upstream) -> None:
    old, new = two_folders(tmp_path / "site", websub={"hub": hub.url + "/hub"})
    service = FeedService(old)
    service.start()
    fast = Limits(connect_timeout=2, read_timeout=2, deadline=5, retries=1, backoff=0)
    scheduler = Scheduler(service, is_leader=lambda: True,
                          fetcher_factory=lambda c: Fetcher(fast))
    scheduler.publish()          # the baseline: nothing announced yet
    scheduler.publish()
    assert not hub.seen("/hub", "POST")
    reload_at_same_generation(service, new)
    scheduler.publish()
    pinged = Counter(s.path for s in hub.seen("/hub", "POST") if s.status == 204)
    assert pinged == {"/hub": 6}   # kunmingribao and all, in three formats
