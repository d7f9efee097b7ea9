"""Replayed feed responses (replay.py) are the responses Flask would make, and
never outlive the version of the feed they were made from."""

from __future__ import annotations

import datetime as dt
import sys
import time
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from flask import Flask
from support import FakeClock, post

from feedsvc.app import create_app
from feedsvc.config import load_config
from feedsvc.replay import find_replay
from feedsvc.version import take

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


def test_memory_is_bounded_in_bytes_whatever_the_headers_and_queries(site: Path) -> None:
    """Issue 15, finding 5: HEAD and 304 answers weigh next to nothing in body
    bytes, so a cap on bodies alone let unique `?utm_x=` values and large
    headers grow the cache without bound (3,000 HEADs of 7 KB: +146 MiB)."""
    app = make_app(site)
    replay = find_replay(app.wsgi_app)
    assert replay is not None
    cap = replay._queried.max_bytes = 256 * 2**10       # small, so that the test is quick
    etag = answer(app)[1]["ETag"]
    client = app.test_client()
    for i in range(150):
        # A unique 7 KB query; a 304 with a large If-None-Match; a HEAD.
        client.open(f"{FEED}?utm_x={i:06d}{'x' * 7000}", method="HEAD",
                    headers={"If-None-Match": f'{etag}, "{"y" * 3000}"'})
        client.get(f"{FEED}?utm_y={i}", headers={"If-None-Match": etag})
    assert 0 < replay._queried.bytes <= cap
    # What the cache counts is not less than what its entries take in memory.
    assert deep_size(replay._queried._items) <= replay._queried.bytes
    # Plain URLs have their own budget: the crowd of queries did not evict them.
    plain = {"REQUEST_METHOD": "GET", "PATH_INFO": FEED, "QUERY_STRING": ""}
    assert replay.lookup(plain) is not None


def test_plain_urls_are_bounded_too(site: Path) -> None:
    app = make_app(site)
    replay = find_replay(app.wsgi_app)
    assert replay is not None
    cap = replay._plain.max_bytes = 64 * 2**10
    for i in range(100):
        # The If-None-Match values a client makes up are part of the key.
        answer(app, "HEAD", **{"If-None-Match": f'"{i}{"z" * 2000}"'})
    assert 0 < replay._plain.bytes <= cap
    assert len(replay._plain) < 100
    assert deep_size(replay._plain._items) <= replay._plain.bytes


def deep_size(items: dict[object, object]) -> int:
    """Bytes of every entry's objects (keys, answers, headers, strings, bodies),
    each object counted once; without the dict itself."""
    seen: set[int] = set()

    def size(obj: object) -> int:
        if id(obj) in seen or obj is None or isinstance(obj, bool | int):
            return 0
        seen.add(id(obj))
        total = sys.getsizeof(obj)
        if isinstance(obj, tuple | list):
            total += sum(size(x) for x in obj)
        return total

    return sum(size(k) + size(v) for k, v in items.items())


def test_the_loop_reuses_a_version_for_a_moment_only(site: Path, monkeypatch: Any) -> None:
    """The event loop reads the version once per VERSION_REUSE seconds (a burst of
    polls costs one read of the index); a change written by another process (here
    another Index on the same database, as the leader is to a worker) ends the
    replay once that moment is over, and this process's own writes at once."""
    import feedsvc.replay as replay_module
    from feedsvc.index import Index

    app = make_app(site)
    replay = find_replay(app.wsgi_app)
    assert replay is not None
    answer(app)
    plain = {"REQUEST_METHOD": "GET", "PATH_INFO": FEED, "QUERY_STRING": ""}
    assert replay.lookup(plain) is not None
    service = app.extensions["feedsvc"]
    reads: list[int] = []

    def counting_take(state: Any) -> Any:
        reads.append(1)
        return take(state)

    monkeypatch.setattr(replay_module, "take", counting_take)
    time.sleep(replay_module.VERSION_REUSE)
    for _ in range(50):
        assert replay.lookup(plain) is not None
    assert 1 <= len(reads) < 50          # not one read per poll
    leader = Index(service.config)        # another writer of the same database
    try:
        (site.parent / "_posts" / "2022-04-02-reuse.md").write_text(
            post("另一进程写的文章", "2022-04-02 08:00:00 +0800"), encoding="utf-8")
        leader.scan()
    finally:
        leader.close()
    time.sleep(replay_module.VERSION_REUSE * 2)
    assert replay.lookup(plain) is None   # the new version is seen
    answer(app)
    assert replay.lookup(plain) is not None
    (site.parent / "_posts" / "2022-04-03-own.md").write_text(
        post("本进程写的文章", "2022-04-03 08:00:00 +0800"), encoding="utf-8")
    service.index.scan()                  # this process's own write: seen at once
    assert replay.lookup(plain) is None
