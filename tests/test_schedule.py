"""The background scheduler: only the leader polls, due sources only, failures isolated."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import make_site, wait_for
from upstream_support import Route, Upstream, upstream

from feedsvc.config import Config, load_config
from feedsvc.leader import Leader
from feedsvc.schedule import Scheduler
from feedsvc.service import FeedService
from feedsvc.upstream.fetch import Fetcher, Limits
from feedsvc.upstream.state import source_status

FAST = Limits(connect_timeout=2, read_timeout=1, deadline=5, retries=0)


@pytest.fixture
def up() -> Iterator[Upstream]:
    with upstream() as server:
        server.routes["/rss.xml"] = Route.fixture("rss.xml")
        server.routes["/down.xml"] = Route(status=503)
        yield server


def polled_site(tmp_path: Path, up: Upstream) -> Config:
    cfg = make_site(tmp_path / "site", config={"categories": {
        "kunmingribao": {"title": "昆明日报新闻", "sources": [
            {"url": up.url + "/rss.xml", "every": "1h"},
            {"url": up.url + "/down.xml", "every": "1h"}]}}})
    return load_config(cfg)


def scheduler(config: Config, leader: bool) -> Scheduler:
    service = FeedService(config)
    service.start()
    return Scheduler(service, is_leader=lambda: leader, tick=0.2,
                     fetcher_factory=lambda c: Fetcher(FAST))


def test_only_the_leader_polls_and_each_source_once_per_interval(
        tmp_path: Path, up: Upstream) -> None:
    config = polled_site(tmp_path, up)
    follower = scheduler(config, leader=False).start()
    try:
        assert not follower.leading()
        leader = scheduler(config, leader=True).start()
        try:
            wait_for(lambda: len(leader.service.index.views().categories.get(
                "kunmingribao", [])) == 3)
            wait_for(lambda: up.seen("/down.xml"))
            # Both sources were tried once; the next try is an hour away.
            assert [len(up.seen(p)) for p in ("/rss.xml", "/down.xml")] == [1, 1]
            status = source_status(leader.service.config)
        finally:
            leader.stop()
    finally:
        follower.stop()
    by_url = {s["url"].rsplit("/", 1)[-1]: s for s in status}
    assert by_url["rss.xml"]["last_error"] is None
    assert by_url["down.xml"]["last_error"] == "HTTP 503 Service Unavailable"
    assert by_url["down.xml"]["failures"] == 1 and by_url["down.xml"]["next_attempt"]


def test_nothing_to_do_takes_no_lock(tmp_path: Path) -> None:
    config = load_config(make_site(tmp_path / "site"))
    asked: list[bool] = []
    sched = Scheduler(FeedService(config), is_leader=lambda: asked.append(True) or True)
    assert not sched.leading() and asked == []


def test_the_default_leader_is_held_by_one_holder_until_it_goes(tmp_path: Path) -> None:
    first, second = Leader(tmp_path / "s.lock"), Leader(tmp_path / "s.lock")
    assert first.acquire() and first.acquire()
    assert not second.acquire()
    assert first._fd is not None
    os.close(first._fd)   # what the kernel does when the leading process dies
    assert second.acquire()


def test_a_failing_background_step_is_logged_and_its_thread_lives_on(
        tmp_path: Path, up: Upstream, caplog: pytest.LogCaptureFixture) -> None:
    service = FeedService(polled_site(tmp_path, up))
    service.start()

    def broken(config: Config) -> Fetcher:
        raise RuntimeError("no fetcher today")

    sched = Scheduler(service, is_leader=lambda: True, tick=0.2, fetcher_factory=broken).start()
    try:
        wait_for(lambda: "background task failed" in caplog.text, timeout=10)
        assert "no fetcher today" in caplog.text
        assert all(t.is_alive() for t in sched.threads)
    finally:
        sched.stop()
