"""WebSub: hub links, and publish pings to a real hub receiver on loopback."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs

import feedparser
import pytest
from support import make_site, post, running, wait_for
from upstream_support import Route, Upstream, upstream

from feedsvc.app import create_app
from feedsvc.config import Config, load_config
from feedsvc.index.sources import store_for
from feedsvc.schedule import Scheduler
from feedsvc.service import FeedService
from feedsvc.upstream.fetch import Fetcher, Limits
from feedsvc.websub import Publisher, feed_etags

FAST = Limits(connect_timeout=2, read_timeout=2, deadline=5, retries=1, backoff=0)
NOW = dt.datetime(2026, 1, 10, 12, 0, tzinfo=dt.UTC)
FEEDS = "https://feeds.example.com"
ADMIN_TOKEN = "admin-token-of-the-websub-tests"
TOPICS = {f"{FEEDS}/feeds/{name}.{fmt}" for name in ("kunmingribao", "all")
          for fmt in ("rss", "atom", "json")}


@pytest.fixture
def hub() -> Iterator[Upstream]:
    with upstream() as server:
        yield server


def one_category_site(tmp_path: Path, hub_url: str) -> Config:
    first = post("第一条", "2022-03-21 06:00:08 +0800")
    cfg = make_site(tmp_path / "site", {"2022-03-21-first.md": first},
                    config={"categories": {"kunmingribao": {"title": "昆明日报新闻"}},
                            "websub": {"hub": hub_url}})
    return load_config(cfg)


def add_post(config: Config, name: str, title: str) -> None:
    (config.posts_dir / name).write_text(post(title, "2022-03-22 08:00:00 +0800"), encoding="utf-8")


def pinged(hub: Upstream) -> Counter[str]:
    """Feed URL → number of accepted publish pings."""
    return Counter(url for s in hub.seen("/hub", "POST") if s.status == 204
                   for url in _form(s.body)["hub.url"])


def _form(body: bytes) -> dict[str, list[str]]:
    form = parse_qs(body.decode())
    assert form["hub.mode"] == ["publish"]
    return form


def test_one_ping_per_feed_change_and_none_without_change(tmp_path: Path, hub: Upstream) -> None:
    config = one_category_site(tmp_path, hub.url + "/hub")
    service = FeedService(config)
    service.start()
    publisher = Publisher(store_for(config), Fetcher(FAST), clock=lambda: NOW)
    hub_url = hub.url + "/hub"
    assert publisher.check(hub_url, feed_etags(service)) == 0      # first sight: baseline
    assert publisher.check(hub_url, feed_etags(service)) == 0
    add_post(config, "2022-03-22-second.md", "第二条")
    service.index.scan()
    assert publisher.check(hub_url, feed_etags(service)) == 6
    assert publisher.check(hub_url, feed_etags(service)) == 0
    assert pinged(hub) == Counter(dict.fromkeys(TOPICS, 1))
    # A restart remembers what the hub was told.
    again = Publisher(store_for(config), Fetcher(FAST), clock=lambda: NOW)
    assert again.check(hub_url, feed_etags(service)) == 0
    add_post(config, "2022-03-22-third.md", "第三条")
    service.index.scan()
    assert again.check(hub_url, feed_etags(service)) == 6
    assert pinged(hub) == Counter(dict.fromkeys(TOPICS, 2))


def test_a_hub_error_is_retried(tmp_path: Path, hub: Upstream) -> None:
    config = one_category_site(tmp_path, hub.url + "/hub")
    service = FeedService(config)
    service.start()
    clock = [NOW]
    publisher = Publisher(store_for(config), Fetcher(FAST), clock=lambda: clock[0], retry_base=2)
    hub_url = hub.url + "/hub"
    publisher.check(hub_url, feed_etags(service))
    hub.routes["/hub"] = Route(status=204, fail_first=1)       # the hub answers 500 once
    add_post(config, "2022-03-22-second.md", "第二条")
    service.index.scan()
    publisher.check(hub_url, feed_etags(service))
    assert [s.status for s in hub.seen("/hub")][:2] == [500, 204]
    assert pinged(hub) == Counter(dict.fromkeys(TOPICS, 1))
    # A hub that stays down: each ping fails (with its retry); later passes try again
    # only after a backoff, then announce each feed once.
    hub.routes["/hub"] = Route(status=204, fail_first=12)
    add_post(config, "2022-03-22-third.md", "第三条")
    service.index.scan()
    assert publisher.check(hub_url, feed_etags(service)) == 6
    assert publisher.check(hub_url, feed_etags(service)) == 0     # backing off
    clock[0] += dt.timedelta(seconds=2)
    assert publisher.check(hub_url, feed_etags(service)) == 6
    assert publisher.check(hub_url, feed_etags(service)) == 0
    assert pinged(hub) == Counter(dict.fromkeys(TOPICS, 2))
    assert len(hub.seen("/hub")) == 7 + 12 + 6


def test_feeds_carry_hub_and_self_links(tmp_path: Path, hub: Upstream) -> None:
    config = one_category_site(tmp_path, "https://hub.example/")
    with create_app(config, watch=False).test_client() as client:
        for fmt in ("rss", "atom", "json"):
            resp = client.get(f"/feeds/kunmingribao.{fmt}?limit=5")
            self_url = f"{FEEDS}/feeds/kunmingribao.{fmt}?limit=5"
            assert resp.headers["Link"] == \
                f'<https://hub.example/>; rel="hub", <{self_url}>; rel="self"'
            if fmt == "json":
                assert resp.get_json()["hubs"] == [{"type": "WebSub",
                                                    "url": "https://hub.example/"}]
            else:
                links = feedparser.parse(resp.data).feed.links
                assert {"rel": "hub", "href": "https://hub.example/"} in [
                    {"rel": x.get("rel"), "href": x.get("href")} for x in links]
        assert "Link" not in create_app(
            load_config(make_site(tmp_path / "plain")), watch=False
        ).test_client().get("/feeds/kunmingribao.rss").headers


def test_serve_collects_in_the_background_and_pings_once(tmp_path: Path, hub: Upstream) -> None:
    """Two gunicorn workers: sources polled and hubs pinged by one of them only."""
    hub.routes["/rss.xml"] = Route.fixture("rss.xml")
    cfg = make_site(tmp_path / "site", config={
        "categories": {"kunmingribao": {"title": "昆明日报新闻", "sources": [
            {"url": hub.url + "/rss.xml", "every": "1s"}]}},
        "websub": {"hub": hub.url + "/hub"}, "admin_token": ADMIN_TOKEN})
    with running(cfg, workers=2) as server:
        feed = wait_for(lambda: (f := feedparser.parse(server.get(
            "/feeds/kunmingribao.atom").content)) and len(f.entries) == 3 and f, timeout=20)
        assert feed.entries[0].title == "Dianchi Lake clean-up & more"
        wait_for(lambda: pinged(hub) == Counter(dict.fromkeys(TOPICS, 1)), timeout=10)
        hub.routes["/rss.xml"] = Route.fixture("rss-later.xml")
        wait_for(lambda: len(feedparser.parse(
            server.get("/feeds/kunmingribao.atom").content).entries) == 4, timeout=20)
        wait_for(lambda: pinged(hub) == Counter(dict.fromkeys(TOPICS, 2)), timeout=10)
        polls = len(hub.seen("/rss.xml"))
        wait_for(lambda: len(hub.seen("/rss.xml")) >= polls + 2, timeout=10)
        status = server.get("/status", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).json()
    assert pinged(hub) == Counter(dict.fromkeys(TOPICS, 2))       # nothing more
    answers = Counter(s.status for s in hub.seen("/rss.xml"))
    assert answers[200] == 2 and answers[304] >= 2 and set(answers) == {200, 304}
    [source] = status["sources"]
    assert source["url"] == hub.url + "/rss.xml" and source["last_error"] is None
    assert source["next_attempt"] and source["last_success"]


def test_what_the_first_collection_brings_is_announced_even_if_the_publisher_came_first(
        tmp_path: Path, hub: Upstream) -> None:
    """The publish thread can make the Publisher before the index is ready; the
    collector must still take the hub's baseline before collecting (it used to
    skip it whenever a Publisher existed, so the first collection became the
    baseline and was never announced)."""
    hub.routes["/rss.xml"] = Route.fixture("rss.xml")
    cfg = make_site(tmp_path / "site", config={
        "categories": {"kunmingribao": {"title": "昆明日报新闻", "sources": [
            {"url": hub.url + "/rss.xml", "every": "1h"}]}},
        "websub": {"hub": hub.url + "/hub"}})
    service = FeedService(load_config(cfg))
    sched = Scheduler(service, is_leader=lambda: True, tick=0.2,
                      fetcher_factory=lambda c: Fetcher(FAST))
    sched.publish()                       # the publish thread, before any indexing
    assert sched.publisher is not None and not sched.publisher.checked
    service.start()                       # the first indexing is done
    sched.collect_due()
    assert service.index.views().categories["kunmingribao"]
    sched.publish()
    assert pinged(hub) == Counter(dict.fromkeys(TOPICS, 1))
