"""One collector and one pinger per cluster (issues 12, 13): two `feedsvc
serve` instances, each with a state_dir of its own as on two machines, on one
shared PostgreSQL index (a database of the test's own) and one posts folder,
against a real upstream on loopback that counts its hits and a real WebSub
hub receiver that counts pings.

- each source is fetched once per interval, by one instance;
- both serve what the leader collected, with the same bytes and ETags;
- the hub gets one ping per feed change, from one instance;
- the leader killed with SIGKILL, the other takes over within seconds and
  neither collects again a post an admin deleted nor pings again for a feed
  that did not change (the upstream state is in the index, not in either
  state_dir)."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import feedparser
import yaml
from support import Server, make_site, new_pg_database, running, wait_for
from upstream_support import Route, Upstream, upstream

EVERY = 2                           # seconds between two fetches of the source
CATEGORY = "kunmingribao"
FEEDS = (f"/feeds/{CATEGORY}.atom", f"/feeds/{CATEGORY}.rss", "/feeds/all.json")
FEEDS_URL = "https://feeds.example"
TOPICS = {f"{FEEDS_URL}/feeds/{name}.{fmt}" for name in (CATEGORY, "all")
          for fmt in ("rss", "atom", "json")}


def rss(items: list[tuple[str, str, str]]) -> bytes:
    entries = "".join(
        f"<item><guid isPermaLink=\"false\">{guid}</guid><title>{title}</title>"
        f"<link>https://paper.example/{guid}.html</link><pubDate>{date}</pubDate>"
        f"<description><![CDATA[<p>{title}。正文。</p>]]></description></item>"
        for guid, title, date in items)
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
            f"<title>昆明日报</title><link>https://paper.example/</link>"
            f"<description>d</description>{entries}</channel></rss>").encode()


ITEMS = [("km-1", "安宁打造招商引资强磁场", "Mon, 21 Mar 2022 06:00:08 +0800"),
         ("km-2", "滇池治理取得新进展", "Mon, 21 Mar 2022 08:30:00 +0800"),
         ("km-3", "春城花开", "Mon, 21 Mar 2022 09:00:00 +0800")]


def instance(root: Path, name: str, site: Path, index_url: str, hub: str) -> Path:
    """Another machine's config: its own state_dir; the shared index and posts."""
    folder = root / name
    folder.mkdir()
    data = yaml.safe_load((site / "config.yaml").read_text(encoding="utf-8"))
    data.update(posts_dir=str(site / "_posts"), state_dir=str(folder / "state"),
                index={"type": "postgres", "url": index_url}, websub={"hub": hub},
                feeds_url=FEEDS_URL)
    cfg = folder / "config.yaml"
    cfg.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return cfg


def titles(server: Server) -> set[str]:
    return {e.title for e in feedparser.parse(server.get(FEEDS[0]).content).entries}


def pings(hub: Upstream) -> Counter[str]:
    return Counter(url for form in hub.pings() for url in form["hub.url"])


def gaps(up: Upstream) -> list[float]:
    times = [s.at for s in up.seen("/feed.xml", "GET")]
    return [b - a for a, b in zip(times, times[1:], strict=False)]


def same_everywhere(servers: tuple[Server, ...]) -> None:
    for path in FEEDS:
        answers = [s.get(path) for s in servers]
        assert {r.status_code for r in answers} == {200}
        assert len({r.content for r in answers}) == 1, path
        assert len({r.headers["ETag"] for r in answers}) == 1, path


def test_two_instances_collect_once_ping_once_and_a_new_leader_repeats_nothing(
        tmp_path: Path) -> None:
    with upstream() as up, upstream() as hub:
        # No validators: every fetch reads every item again, so only the seen
        # ids in the shared index keep a deleted post from coming back.
        up.routes["/feed.xml"] = Route(rss(ITEMS[:2]), etag=False, last_modified=None)
        hub.routes["/hub"] = Route(status=204)
        site = make_site(tmp_path / "site", config={"categories": {CATEGORY: {
            "title": "昆明日报新闻", "sources": [{"url": up.url + "/feed.xml",
                                              "every": f"{EVERY}s"}]}}})
        url = new_pg_database()
        first = instance(tmp_path, "a", site.parent, url, hub.url + "/hub")
        second = instance(tmp_path, "b", site.parent, url, hub.url + "/hub")
        posts = site.parent / "_posts"
        with running(first) as a:
            wait_for(lambda: a.leads(), timeout=20)
            wait_for(lambda: titles(a) == {t for _, t, _ in ITEMS[:2]}, timeout=30)
            with running(second) as b:
                assert not b.leads()
                # Both serve what the leader collected, byte for byte.
                same_everywhere((a, b))
                # One ping per feed for the change the collection made, none more.
                wait_for(lambda: set(pings(hub)) == TOPICS, timeout=20)
                hits = len(up.seen("/feed.xml"))
                wait_for(lambda: len(up.seen("/feed.xml")) >= hits + 3, timeout=6 * EVERY + 20)
                assert pings(hub) == Counter(dict.fromkeys(TOPICS, 1)), pings(hub)
                # The admin deletes a collected post: one change, one ping per feed.
                [victim] = [p for p in posts.rglob("*.md")
                            if "km-1" in p.read_text(encoding="utf-8")]
                victim.unlink()
                wait_for(lambda: titles(b) == {ITEMS[1][1]}, timeout=20)
                wait_for(lambda: pings(hub) == Counter(dict.fromkeys(TOPICS, 2)), timeout=20)
                same_everywhere((a, b))
                a.die()
                # The other instance takes over within seconds …
                wait_for(lambda: b.leads(), timeout=15)
                hits = len(up.seen("/feed.xml"))
                # … and polls on (several intervals), with the validators, seen ids
                # and announced ETags that the old leader left in the index:
                wait_for(lambda: len(up.seen("/feed.xml")) >= hits + 3, timeout=6 * EVERY + 20)
                assert not victim.exists()                       # not collected again
                assert titles(b) == {ITEMS[1][1]}
                assert pings(hub) == Counter(dict.fromkeys(TOPICS, 2)), pings(hub)
                assert "km-1" not in " ".join(p.read_text(encoding="utf-8")
                                              for p in posts.rglob("*.md"))
                # A new item upstream: collected once, by the new leader, pinged once.
                up.routes["/feed.xml"] = Route(rss(ITEMS), etag=False, last_modified=None)
                wait_for(lambda: titles(b) == {ITEMS[1][1], ITEMS[2][1]}, timeout=30)
                wait_for(lambda: pings(hub) == Counter(dict.fromkeys(TOPICS, 3)), timeout=20)
                assert len([p for p in posts.rglob("*.md")]) == 2
                # Over the whole run, never two fetches within one interval: one
                # collector at a time, and the new one kept the old one's schedule.
                assert min(gaps(up)) >= EVERY * 0.5, gaps(up)
        # Neither state_dir holds upstream or WebSub state: it is the index's.
        for name in ("a", "b"):
            state = tmp_path / name / "state"
            assert not (state / "sources").exists() and not (state / "websub.json").exists()


def test_collect_by_hand_on_another_machine_says_the_cluster_s_leader_collects(
        tmp_path: Path) -> None:
    with upstream() as up:
        up.routes["/feed.xml"] = Route(rss(ITEMS[:2]))          # with validators
        site = make_site(tmp_path / "site", config={"categories": {CATEGORY: {
            "title": "昆明日报新闻", "sources": [up.url + "/feed.xml"]}}})
        url = new_pg_database()
        first = instance(tmp_path, "a", site.parent, url, up.url + "/hub")
        other = instance(tmp_path, "b", site.parent, url, up.url + "/hub")
        with running(first) as a:
            wait_for(lambda: a.leads(), timeout=20)
            wait_for(lambda: len(titles(a)) == 2, timeout=30)
            # By hand, on the other machine (its own state_dir, no lock file of a's).
            run = subprocess.run([sys.executable, "-m", "feedsvc", "collect", "--config",
                                  str(other)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "note: feedsvc serve (" in run.stdout and "is collecting these sources" in run.stdout
    assert "PostgreSQL advisory lock" in run.stdout, run.stdout
    line = next(x for x in run.stdout.splitlines() if "/feed.xml" in x)
    # The validators the server stored in the index: a 304, and what it stored.
    assert "not modified" in line and "the server last stored 2 post(s) at" in line, line
    assert len(list((site.parent / "_posts").rglob("*.md"))) == 2
