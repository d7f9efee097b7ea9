"""Live reload: post files and config.yaml edited under a running
`feedsvc serve` (two workers, each with its own watcher) show up within a few
seconds; only the affected feeds change; a bad config edit changes nothing."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import pytest
import yaml
from support import FakeClock, Serve, Server, make_site, post, wait_for
from wire import fetch, fetch_all

from feedsvc.app import create_app
from feedsvc.config import load_config
from feedsvc.index import reading
from feedsvc.service import FeedService
from feedsvc.watch import SETTLE as WATCH_SETTLE
from feedsvc.watch import Watcher

PLAIN = {"Accept-Encoding": "identity"}
FEEDS = ["/feeds/kunmingribao.rss", "/feeds/caijing.atom", "/feeds/world.json"]
SETTLE = 8.0   # "within a few seconds", with room for a loaded test machine


def etag(server: Server, path: str) -> str:
    reply = fetch(server.url, path, PLAIN)
    assert reply.status == 200, (path, reply.status)
    return reply.etag


def etags(server: Server) -> dict[str, str]:
    return {p: etag(server, p) for p in FEEDS}


def status(server: Server) -> dict:  # type: ignore[type-arg]
    return json.loads(fetch(server.url, "/status", PLAIN).body)  # type: ignore[no-any-return]


def all_workers_agree(server: Server, path: str, check: object, polls: int = 40) -> bool:
    """Every worker process has answered `path` and passed `check`, and no answer
    failed it. Each poll asks /status and then `path` on one connection, so it
    knows which worker answered: new connections alone may all reach one worker
    while another still serves the old version."""
    workers, passed = server.worker_pids(), set()
    for _ in range(polls):
        who, reply = fetch_all(server.url, ["/status", path], PLAIN)
        if not check(reply):  # type: ignore[operator]
            return False
        passed.add(json.loads(who.body)["worker"]["pid"])
        if workers <= passed:
            return True
    return False


@pytest.fixture
def site(tmp_path: Path) -> Path:
    return make_site(tmp_path / "site", {
        "kunmingribao/2022-03-21-first.md": post("第一条", "2022-03-21 06:00:08 +0800"),
        "2022-03-22-caijing.md": post("财经一", "2022-03-22 09:00:00 +0800", categories="caijing"),
        "2022-03-22-world.md": post("World one", "2022-03-22 09:00:00", categories="world"),
    })


@pytest.fixture
def server(site: Path, serve: Serve) -> Server:
    """A fresh server per test: each test edits its site."""
    return serve(site, workers=2, threads=4)


def test_new_post_changes_only_its_feeds(site: Path, server: Server) -> None:
    before = etags(server)
    (site.parent / "_posts" / "2022-03-23-new.md").write_text(
        post("新的一条", "2022-03-23 10:00:00 +0800"), encoding="utf-8")
    path = "/feeds/kunmingribao.rss"
    wait_for(lambda: all_workers_agree(
        server, path, lambda r: r.etag != before[path] and "新的一条" in r.body.decode()),
        timeout=SETTLE)
    after = etags(server)
    assert after["/feeds/caijing.atom"] == before["/feeds/caijing.atom"]
    assert after["/feeds/world.json"] == before["/feeds/world.json"]
    # The client holding the old version gets the new one, not a 304.
    assert fetch(server.url, path, {**PLAIN, "If-None-Match": before[path]}).status == 200


def test_edited_post_moves_etag_and_last_modified(site: Path, server: Server) -> None:
    path = "/feeds/caijing.rss"
    old = fetch(server.url, path, PLAIN)
    target = site.parent / "_posts" / "2022-03-22-caijing.md"
    time.sleep(1.1)  # Last-Modified has one-second resolution
    target.write_text(post("财经一（更正）", "2022-03-22 09:00:00 +0800", categories="caijing"),
                      encoding="utf-8")
    wait_for(lambda: all_workers_agree(server, path, lambda r: "更正" in r.body.decode()),
             timeout=SETTLE)
    new = fetch(server.url, path, PLAIN)
    assert new.etag != old.etag
    assert new.headers["last-modified"] != old.headers["last-modified"]
    ims = fetch(server.url, path, {**PLAIN, "If-Modified-Since": old.headers["last-modified"]})
    assert ims.status == 200


def test_deleted_post_leaves_its_feed(site: Path, server: Server) -> None:
    path = "/feeds/world.json"
    assert "World one" in fetch(server.url, path, PLAIN).body.decode()
    (site.parent / "_posts" / "2022-03-22-world.md").unlink()
    wait_for(lambda: all_workers_agree(server, path, lambda r: "World one" not in r.body.decode()),
             timeout=SETTLE)


def test_config_edit_adds_a_category_and_changes_a_title(site: Path, server: Server) -> None:
    assert fetch(server.url, "/feeds/keji.rss", PLAIN).status == 404
    before = etags(server)
    (site.parent / "_posts" / "2022-03-24-keji.md").write_text(
        post("科技一", "2022-03-24 09:00:00 +0800", categories="keji"), encoding="utf-8")
    data = yaml.safe_load(site.read_text(encoding="utf-8"))
    data["categories"]["keji"] = {"title": "科技新闻"}
    data["categories"]["world"]["title"] = "World (edited)"
    site.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")

    wait_for(lambda: all_workers_agree(
        server, "/feeds/keji.rss", lambda r: r.status == 200 and "科技一" in r.body.decode()),
        timeout=SETTLE)
    wait_for(lambda: all_workers_agree(
        server, "/feeds/world.json", lambda r: "World (edited)" in r.body.decode()),
        timeout=SETTLE)
    assert etag(server, "/feeds/world.json") != before["/feeds/world.json"]


def test_invalid_config_edit_keeps_serving_and_is_reported(site: Path, server: Server) -> None:
    before = {p: fetch(server.url, p, PLAIN).body for p in FEEDS}
    good = site.read_text(encoding="utf-8")
    site.write_text(good.replace("timezone: America/New_York", "timezone: America/New_Yrok"),
                    encoding="utf-8")

    def reported() -> bool:
        return all(status(server)["config_error"] for _ in range(6))
    wait_for(reported, timeout=SETTLE)
    error = status(server)["config_error"]
    assert "America/New_Yrok" in error and "categories.world.timezone" in error
    assert {p: fetch(server.url, p, PLAIN).body for p in FEEDS} == before
    assert "config not reloaded" in server.output()

    site.write_text(good.replace("title: World", "title: World again"), encoding="utf-8")
    wait_for(lambda: all(status(server)["config_error"] is None for _ in range(6)),
             timeout=SETTLE)
    assert "World again" in fetch(server.url, "/feeds/world.rss", PLAIN).body.decode()


def test_future_post_appears_when_its_time_comes_over_http(site: Path, server: Server) -> None:
    path = "/feeds/kunmingribao.atom"
    soon = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=4)
    (site.parent / "_posts" / "2022-03-23-soon.md").write_text(
        post("即将发布", soon.strftime("%Y-%m-%d %H:%M:%S +0000")), encoding="utf-8")
    time.sleep(1.5)  # the watcher has read it by now
    assert "即将发布" not in fetch(server.url, path, PLAIN).body.decode()
    wait_for(lambda: all_workers_agree(server, path, lambda r: "即将发布" in r.body.decode()),
             timeout=SETTLE + 4)


def test_future_post_appears_without_any_file_change(tmp_path: Path, clock: FakeClock) -> None:
    site = make_site(tmp_path / "site", {
        "2022-03-21-now.md": post("现在", "2022-03-21 06:00:00 +0800"),
        "2022-03-21-later.md": post("稍后", "2022-03-21 12:00:00 +0800"),
    })
    clock.now = dt.datetime(2022, 3, 21, 3, 0, tzinfo=dt.UTC)  # 11:00 in +08:00
    app = create_app(load_config(site), clock=clock, watch=False)
    client = app.test_client()
    before = client.get("/feeds/kunmingribao.rss")
    assert "稍后" not in before.text and "现在" in before.text
    assert client.get("/feeds/kunmingribao.rss",
                      headers={"If-None-Match": before.headers["ETag"]}).status_code == 304

    clock.advance(3600 + 1)
    after = client.get("/feeds/kunmingribao.rss", headers={"If-None-Match": before.headers["ETag"]})
    assert after.status_code == 200 and "稍后" in after.text
    assert after.headers["ETag"] != before.headers["ETag"]


def test_a_change_rereads_only_the_changed_file(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    site = make_site(tmp_path / "site", {
        f"2022-03-{day:02d}-post.md": post(f"新闻{day}", f"2022-03-{day:02d} 06:00:00 +0800")
        for day in range(1, 11)
    })
    service = FeedService(load_config(site))
    service.start()
    watcher = Watcher(service)   # not started: handle() is called as the watch thread would
    reads: list[str] = []
    real = reading.read_post_text
    monkeypatch.setattr(reading, "read_post_text",
                        lambda d, rel, c: reads.append(rel) or real(d, rel, c))
    changed = site.parent / "_posts" / "2022-03-05-post.md"
    changed.write_text(post("改了", "2022-03-05 06:00:00 +0800"), encoding="utf-8")
    added = site.parent / "_posts" / "2022-03-11-post.md"
    added.write_text(post("新的", "2022-03-11 06:00:00 +0800"), encoding="utf-8")
    watcher.handle([changed, added, site.parent / "_posts" / "notes.txt"])
    # A changed post is read once it has settled (watch.py), as the watch thread does.
    time.sleep(WATCH_SETTLE + 0.1)
    watcher.flush_settling()

    after = service.index.posts
    assert after["2022-03-05-post.md"].title == "改了"
    assert after["2022-03-11-post.md"].title == "新的"
    # No other post was read again.
    assert sorted(reads) == ["2022-03-05-post.md", "2022-03-11-post.md"]


def test_a_moved_folder_is_noticed(tmp_path: Path) -> None:
    site = make_site(tmp_path / "site", {
        "kunmingribao/2022-03-01-a.md": post("甲", "2022-03-01 06:00:00 +0800"),
        "kunmingribao/2022-03-02-b.md": post("乙", "2022-03-02 06:00:00 +0800"),
    })
    service = FeedService(load_config(site))
    service.start()
    watcher = Watcher(service)
    folder = site.parent / "_posts" / "kunmingribao"
    folder.rename(tmp_path / "elsewhere")
    watcher.handle([folder])
    assert service.index.posts == {}



def test_changes_before_the_watch_is_set_up_are_caught_up(tmp_path: Path) -> None:
    site = make_site(tmp_path / "site", {"2022-03-01-a.md": post("甲", "2022-03-01 06:00:00 +0800")})
    service = FeedService(load_config(site))
    service.start()
    # Between the first reading and the watch (a worker booting): no event reports these.
    (site.parent / "_posts" / "2022-03-02-b.md").write_text(
        post("乙", "2022-03-02 06:00:00 +0800"), encoding="utf-8")
    data = yaml.safe_load(site.read_text(encoding="utf-8"))
    data["categories"]["keji"] = {"title": "科技"}
    site.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")

    watcher = Watcher(service).start()
    try:
        wait_for(lambda: "2022-03-02-b.md" in service.index.posts, timeout=SETTLE)
        wait_for(lambda: "keji" in service.config.categories, timeout=SETTLE)
    finally:
        watcher.stop()
