"""Replayed feed responses (replay.py) are the responses Flask would make, and
never outlive the version of the feed they were made from."""

from __future__ import annotations

import datetime as dt
from email.utils import parsedate_to_datetime
from pathlib import Path

from flask import Flask
from support import FakeClock, post

from feedsvc.app import create_app
from feedsvc.config import load_config

FEED = "/feeds/kunmingribao.rss"


def make_app(site: Path, clock: FakeClock | None = None) -> Flask:
    if clock is None:
        return create_app(load_config(site), watch=False)
    return create_app(load_config(site), watch=False, clock=clock)


def answer(app: Flask, method: str = "GET", path: str = FEED,
           **headers: str) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body; Date is checked to be now, then left out."""
    resp = app.test_client().open(path, method=method, headers=headers)
    got = dict(resp.headers)
    if "Date" in got:
        age = dt.datetime.now(dt.UTC) - parsedate_to_datetime(got.pop("Date"))
        assert abs(age.total_seconds()) < 5
    return resp.status_code, got, resp.get_data()


def test_a_replayed_answer_is_the_answer_flask_makes(site: Path) -> None:
    etag = answer(make_app(site), **{"Accept-Encoding": "gzip"})[1]["ETag"].strip('"')
    requests = [
        ("GET", {}), ("GET", {"Accept-Encoding": "gzip"}), ("HEAD", {}),
        ("GET", {"Accept-Encoding": "gzip", "If-None-Match": f'"{etag}"'}),
        ("GET", {"If-None-Match": f'"{etag}"'}),
        ("GET", {"If-Modified-Since": "Sat, 01 Jan 2000 00:00:00 GMT"}),
    ]
    for method, headers in requests:
        fresh = answer(make_app(site), method, **headers)
        app = make_app(site)
        first = answer(app, method, **headers)
        replayed = answer(app, method, **headers)
        assert first == fresh
        assert replayed == fresh, (method, headers)


def test_a_new_post_ends_the_replay(site: Path) -> None:
    app = make_app(site)
    before = answer(app)[2]
    (site.parent / "_posts" / "2022-04-01-replay-new.md").write_text(
        post("重播之后的新文章", "2022-04-01 08:00:00 +0800"), encoding="utf-8")
    app.extensions["feedsvc"].index.scan()  # what the watcher does on the change
    after = answer(app)[2]
    assert "重播之后的新文章".encode() in after
    assert after != before


def test_a_future_post_appears_when_its_time_comes(site: Path, clock: FakeClock) -> None:
    clock.now = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    app = make_app(site, clock)
    assert b"From the future" not in answer(app)[2]
    clock.now = dt.datetime(2099, 1, 2, tzinfo=dt.UTC)
    assert b"From the future" in answer(app)[2]


def test_a_config_reload_ends_the_replay(site: Path) -> None:
    app = make_app(site)
    assert "昆明日报新闻".encode() in answer(app)[2]
    config = site.read_text(encoding="utf-8").replace("title: 昆明日报新闻", "title: 昆明新闻")
    site.write_text(config, encoding="utf-8")
    app.extensions["feedsvc"].reload_config(load_config(site))
    assert "<title>昆明新闻</title>".encode() in answer(app)[2]


def test_a_tag_feed_appears_with_its_first_post(site: Path) -> None:
    app = make_app(site)
    assert answer(app, path="/tags/重播.rss")[0] == 404
    (site.parent / "_posts" / "2022-04-02-first-of-its-tag.md").write_text(
        post("First of its tag", "2022-04-02 08:00:00 +0800", tags="重播"), encoding="utf-8")
    app.extensions["feedsvc"].index.scan()
    assert answer(app, path="/tags/重播.rss")[0] == 200
