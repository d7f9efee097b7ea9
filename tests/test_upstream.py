"""Upstream sources collected into post files, against a real HTTP upstream on loopback."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import struct
import subprocess
import sys
import termios
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import feedparser
import pytest
import yaml
from support import REPO, make_site
from test_feedcheck import feedcheck  # noqa: F401  (the fixture)
from upstream_support import Route, Upstream, upstream

from feedsvc.app import create_app
from feedsvc.config import Config, load_config
from feedsvc.index import Index
from feedsvc.index.sources import store_for
from feedsvc.posts import Post, read_body
from feedsvc.upstream.collector import Collector, SourceResult, load_state, retry_delay
from feedsvc.upstream.fetch import Fetcher, Limits

FAST = Limits(connect_timeout=2, read_timeout=0.5, deadline=5, max_bytes=64 * 1024,
              retries=1, backoff=0)
NOW = dt.datetime(2026, 1, 10, 12, 0, tzinfo=dt.UTC)
ADMIN_TOKEN = "admin-token-of-the-upstream-tests"


@pytest.fixture
def up() -> Iterator[Upstream]:
    with upstream() as server:
        server.routes["/rss.xml"] = Route.fixture("rss.xml")
        server.routes["/atom.xml"] = Route.fixture("atom.xml")
        server.routes["/feed.json"] = Route.fixture("feed.json")
        yield server


def site_with(tmp_path: Path, sources: dict[str, list[Any]], **extra: Any) -> Config:
    cats = {
        "kunmingribao": {"title": "昆明日报新闻"},
        "world": {"title": "World", "timezone": "America/New_York"},
    }
    for slug, srcs in sources.items():
        cats[slug]["sources"] = srcs  # type: ignore[assignment]
    return load_config(make_site(tmp_path / "site", config={"categories": cats, **extra}))


def collect(config: Config, clock: Any = lambda: NOW) -> dict[str, SourceResult]:
    fetcher = Fetcher(FAST, allow_private=config.allow_private_sources)
    collector = Collector(config, fetcher=fetcher, clock=clock)
    return {r.url.rsplit("/", 1)[-1]: r for r in collector.run(collector.sources())}


def stored(config: Config) -> dict[str, Post]:
    """The collected posts, by upstream guid, as the normal collector reads them."""
    index = Index(config, lambda: NOW)
    index.scan()
    return {p.source_guid: p for p in index.posts.values() if p.source_guid}


def post_files(config: Config) -> dict[str, bytes]:
    return {p.relative_to(config.posts_dir).as_posix(): p.read_bytes()
            for p in sorted(config.posts_dir.rglob("*")) if p.is_file()}


def front_matter(path: str) -> dict[str, Any]:
    text = Path(path).read_text(encoding="utf-8")
    data: dict[str, Any] = yaml.safe_load(text.split("---\n")[1])
    return data


def test_rss_items_become_posts_with_their_own_offsets(tmp_path: Path, up: Upstream) -> None:
    config = site_with(tmp_path, {"kunmingribao": [{"url": up.url + "/rss.xml", "tags": ["云南"]}]})
    result = collect(config)["rss.xml"]
    assert (result.new, result.unchanged, result.error) == (3, 0, None)
    posts = stored(config)
    anning = posts["kmrb-2022-0321-001"]
    assert anning.date.isoformat() == "2022-03-21T06:00:08+08:00"
    assert posts["https://upstream.example/kunming/dianchi.html"].date.isoformat() == \
        "2022-03-20T22:30:00+00:00"
    assert anning.title == "安宁打造招商引资强磁场"
    assert anning.categories == ("kunmingribao",)
    assert anning.tags == ("昆明日报新闻", "云南", "工业")
    assert anning.source_url == "https://upstream.example/kunming/anning.html"
    assert anning.url.startswith("https://news.example.com/kunmingribao/2022/03/21/")
    assert anning.rel.startswith("kunmingribao/2022-03-21-") and anning.rel.endswith(".md")
    meta = front_matter(anning.path)
    assert list(meta) == ["layout", "title", "date", "categories", "tags", "source_guid",
                          "source_url", "source_feed", "source_title"]
    assert meta["source_feed"] == up.url + "/rss.xml" and meta["source_title"] == "昆明日报 上游"
    assert meta["layout"] == "post" and meta["date"] == "2022-03-21 06:00:08 +0800"


def test_stored_bodies_are_sanitised_and_end_with_the_source_link(
        tmp_path: Path, up: Upstream) -> None:
    config = site_with(tmp_path, {"kunmingribao": [up.url + "/rss.xml"]})
    collect(config)
    posts = stored(config)
    body = read_body(posts["kmrb-2022-0321-001"].path)
    assert "<script" not in body and "onclick" not in body
    assert f'<img src="{up.url}/img/anning.jpg">' in body   # relative to the feed, as xml:base
    assert body.rstrip().endswith("<https://upstream.example/kunming/anning.html>")
    # A blank line inside <pre> must not end the HTML block: the feed shows it intact.
    with create_app(config, watch=False).test_client() as client:
        feed = feedparser.parse(client.get("/feeds/kunmingribao.atom").data)
    dianchi = next(e for e in feed.entries if e.title == "Dianchi Lake clean-up & more")
    html = dianchi.content[0].value
    assert "<pre>line one\n \nline three</pre>" in html
    assert 'href="https://upstream.example/kunming/dianchi.html"' in html


def test_atom_and_json_feed_items_keep_their_dates(tmp_path: Path, up: Upstream) -> None:
    config = site_with(tmp_path, {"kunmingribao": [up.url + "/atom.xml"],
                                  "world": [up.url + "/feed.json"]})
    results = collect(config)
    assert (results["atom.xml"].new, results["feed.json"].new) == (2, 2)
    posts = stored(config)
    markets = posts["tag:upstream.example,2022:tokyo/markets"]
    assert markets.date.isoformat() == "2022-03-21T09:00:00+09:00"
    assert markets.title == "Markets open higher"          # HTML title as text
    assert f'<a href="{up.url}/report.html">' in read_body(markets.path)
    assert posts["tag:upstream.example,2022:tokyo/weather"].date.isoformat() == \
        "2022-03-20T23:45:00+00:00"                       # updated only, 'Z'
    bridge = posts["ny-1001"]
    assert bridge.date.isoformat() == "2022-03-21T07:30:00-04:00"
    assert bridge.rel.startswith("world/") and bridge.tags == ("World", "transport")
    parade = posts["ny-1000"]
    # No offset upstream: the category's zone; 02:30 falls in New York's DST gap (fold=0).
    assert parade.date.isoformat() == "2022-03-13T02:30:00-05:00"
    assert parade.source_url == up.url + "/ny/parade.html"
    assert "<p>Plain text, with &lt;angle&gt; brackets.</p>" in read_body(parade.path)


def test_posts_go_under_a_posts_folder_of_the_category(tmp_path: Path, up: Upstream) -> None:
    root = tmp_path / "site"
    cfg = make_site(root, config={"posts_dir": "content", "categories": {
        "kunmingribao": {"title": "昆明", "sources": [up.url + "/rss.xml"]}}})
    config = load_config(cfg)
    collect(config)
    files = sorted(p.relative_to(root).as_posix() for p in (root / "content").rglob("*.md"))
    assert len(files) == 3
    assert all(f.startswith("content/kunmingribao/_posts/2022-03-") for f in files)
    assert all(f.isascii() and "%" not in f for f in files)
    assert {(root / f).stat().st_mode & 0o777 for f in files} == {0o644}
    assert len(stored(config)) == 3


def test_second_pass_stores_nothing_and_asks_conditionally(tmp_path: Path, up: Upstream) -> None:
    up.routes["/lm.xml"] = Route(Route.fixture("rss.xml").body, etag=False)
    config = site_with(tmp_path, {"kunmingribao": [up.url + "/rss.xml", up.url + "/lm.xml"]})
    collect(config)
    before = post_files(config)
    second = collect(config)
    assert post_files(config) == before
    assert second["rss.xml"].not_modified and second["lm.xml"].not_modified
    etag_req = up.seen("/rss.xml")[-1]
    assert etag_req.headers["If-None-Match"] and etag_req.status == 304
    lm_req = up.seen("/lm.xml")[-1]
    assert lm_req.headers["If-Modified-Since"] == "Mon, 21 Mar 2022 00:00:00 GMT"
    assert "If-None-Match" not in lm_req.headers and lm_req.status == 304


def test_the_same_items_again_without_validators_are_not_stored_twice(
        tmp_path: Path, up: Upstream) -> None:
    up.routes["/plain.xml"] = Route(Route.fixture("rss.xml").body, etag=False,
                                    last_modified=None)
    config = site_with(tmp_path, {"kunmingribao": [up.url + "/plain.xml"]})
    assert collect(config)["plain.xml"].new == 3
    before = post_files(config)
    again = collect(config)["plain.xml"]
    assert (again.new, again.unchanged, again.not_modified) == (0, 3, False)
    assert post_files(config) == before
    # Not even when the source's state is lost: the guids are in the posts themselves.
    store = store_for(config)
    with store.database().write() as tx:
        tx.run("DELETE FROM upstream_sources")
    assert collect(config)["plain.xml"].new == 0
    assert post_files(config) == before


def test_dropped_items_stay_and_admin_edits_survive(tmp_path: Path, up: Upstream) -> None:
    config = site_with(tmp_path, {"kunmingribao": [up.url + "/rss.xml"]})
    collect(config)
    anning = Path(stored(config)["kmrb-2022-0321-001"].path)
    edited = anning.read_text(encoding="utf-8").replace("第二段", "编辑改过的第二段")
    anning.write_text(edited, encoding="utf-8")
    up.routes["/rss.xml"] = Route.fixture("rss-later.xml")   # two old items gone, one new
    result = collect(config)["rss.xml"]
    # Anning changed upstream too, but the hand edit wins (test_corrections.py).
    assert (result.new, result.unchanged, result.kept) == (1, 0, 1)
    assert anning.read_text(encoding="utf-8") == edited
    with create_app(config, watch=False).test_client() as client:
        feed = feedparser.parse(client.get("/feeds/kunmingribao.rss").data)
    # Dianchi (22:30 UTC) is 06:30 in Kunming, after Anning's 06:00:08.
    assert [e.title for e in feed.entries] == [
        "地铁五号线开通", "Dianchi Lake clean-up & more", "安宁打造招商引资强磁场", "春城花开"]
    assert "编辑改过的第二段" in feed.entries[2].content[0].value


FAILURES = {
    "timeout": (Route(b"<rss/>", delay=1.5), "timed out"),
    "server-error": (Route(status=500), "HTTP 500"),
    "not-found": (Route(status=404), "HTTP 404"),
    "invalid-xml": (Route.fixture("invalid.xml"), "invalid XML"),
    "not-a-feed": (Route(b"<html><body>hello</body></html>", "text/html"), "not an RSS"),
    "bad-json": (Route(b'{"version": "https://jsonfeed.org/version/1.1", "items": [',
                       "application/feed+json"), "invalid JSON"),
    "deep-json": (Route(b"[" * 30_000 + b"]" * 30_000, "application/feed+json"),
                  "nested too deeply"),
    "huge": (Route(b"<rss>" + b" " * 200_000 + b"</rss>"), "byte limit"),
    "huge-unannounced": (Route(b"<rss>" + b" " * 200_000 + b"</rss>", no_length=True),
                         "body is over the 65536-byte limit"),
    "loop": (Route(status=302, location="/loop"), "more than 5 redirects"),
    "to-file": (Route(status=301, location="file:///etc/passwd"), "only http and https"),
    "to-ftp": (Route(status=302, location="ftp://127.0.0.1/feed.xml"), "only http and https"),
}


@pytest.mark.parametrize("case", sorted(FAILURES))
def test_a_failing_source_is_reported_and_others_still_work(
        tmp_path: Path, up: Upstream, case: str) -> None:
    route, reason = FAILURES[case]
    up.routes["/" + case if case != "loop" else "/loop"] = route
    bad = up.url + ("/" + case if case != "loop" else "/loop")
    config = site_with(tmp_path, {"kunmingribao": [{"url": bad, "every": "10m"}],
                                  "world": [up.url + "/feed.json"]}, admin_token=ADMIN_TOKEN)
    results = collect(config)
    failed = results[bad.rsplit("/", 1)[-1]]
    assert failed.error and reason in failed.error
    assert results["feed.json"].new == 2 and results["feed.json"].error is None
    state = load_state(config, "kunmingribao", bad)
    assert state.last_error == failed.error and state.failures == 1
    assert state.next_attempt == (NOW + dt.timedelta(minutes=10)).isoformat()
    assert [p.source_guid for p in stored(config).values()
            if "kunmingribao" in p.categories] == []
    with create_app(config, watch=False).test_client() as client:
        status = client.get("/status", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
                            ).get_json()
        assert client.get("/feeds/world.json").status_code == 200
    [source] = [s for s in status["sources"] if s["url"] == bad]
    assert reason in source["last_error"] and source["next_attempt"]


def test_failures_back_off_and_a_success_resets(tmp_path: Path, up: Upstream) -> None:
    up.routes["/flaky.xml"] = Route(status=503)
    config = site_with(tmp_path, {"kunmingribao": [{"url": up.url + "/flaky.xml",
                                                    "every": "15m"}]})
    clock = [NOW]
    for n in (1, 2, 3):
        collect(config, clock=lambda: clock[0])
        state = load_state(config, "kunmingribao", up.url + "/flaky.xml")
        wait = dt.datetime.fromisoformat(state.next_attempt or "") - clock[0]
        assert (state.failures, wait) == (n, dt.timedelta(minutes=15 * 2 ** (n - 1)))
        clock[0] += wait
    up.routes["/flaky.xml"] = Route.fixture("rss.xml")
    assert collect(config, clock=lambda: clock[0])["flaky.xml"].new == 3
    state = load_state(config, "kunmingribao", up.url + "/flaky.xml")
    assert (state.failures, state.last_error) == (0, None)
    assert retry_delay(60, 50) == 6 * 3600


def test_one_server_error_is_retried_within_the_fetch(tmp_path: Path, up: Upstream) -> None:
    up.routes["/rss.xml"].fail_first = 1
    config = site_with(tmp_path, {"kunmingribao": [up.url + "/rss.xml"]})
    assert collect(config)["rss.xml"].new == 3
    assert [s.status for s in up.seen("/rss.xml")] == [500, 200]


def test_redirects_are_followed_to_http(tmp_path: Path, up: Upstream) -> None:
    up.routes["/moved"] = Route(status=301, location="/rss.xml")
    config = site_with(tmp_path, {"kunmingribao": [up.url + "/moved"]})
    assert collect(config)["moved"].new == 3


def test_private_addresses_refused_when_not_allowed(tmp_path: Path, up: Upstream) -> None:
    config = site_with(tmp_path, {"kunmingribao": [up.url + "/rss.xml"]},
                       allow_private_sources=False)
    result = collect(config)["rss.xml"]
    assert result.error and "private, loopback or link-local" in result.error
    assert up.seen() == []


def test_user_agent_names_feedsvc_and_the_site(tmp_path: Path, up: Upstream) -> None:
    config = site_with(tmp_path, {"kunmingribao": [up.url + "/rss.xml"]})
    Collector(config).run(Collector(config).sources())
    assert up.seen("/rss.xml")[0].headers["User-Agent"].startswith("feedsvc/")
    assert "+https://news.example.com" in up.seen("/rss.xml")[0].headers["User-Agent"]


# -- the command -------------------------------------------------------------------
def feedsvc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "feedsvc", *args], capture_output=True,
                          text=True, timeout=60)


def test_collect_command_on_the_sample_config_works_offline() -> None:
    run = feedsvc("collect", "--config", str(REPO / "config.yaml"))
    assert run.returncode == 0, run.stderr
    assert "no upstream sources configured" in run.stdout


def test_collect_command_summary_and_exit_codes(tmp_path: Path, up: Upstream) -> None:
    up.routes["/down.xml"] = Route(status=404)
    config = site_with(tmp_path, {"kunmingribao": [up.url + "/rss.xml", up.url + "/down.xml"],
                                  "world": [up.url + "/feed.json"]})
    run = feedsvc("collect", "--config", str(config.path))
    assert run.returncode == 1, run.stderr
    lines = run.stdout.splitlines()
    assert f"kunmingribao {up.url}/rss.xml: 3 new, 0 unchanged" in lines
    assert f"kunmingribao {up.url}/down.xml: failed: HTTP 404 Not Found" in lines
    assert f"world {up.url}/feed.json: 2 new, 0 unchanged" in lines
    assert lines[-1] == "3 source(s): 2 answered, 1 failed, 5 new post(s)"
    assert "\r" not in run.stderr   # no progress bar when not on a terminal
    only = feedsvc("collect", "--config", str(config.path), "--category", "world")
    assert only.returncode == 0
    first, last = only.stdout.splitlines()
    # A "not modified" says what the pass that stored the source's posts stored.
    assert first.startswith(f"world {up.url}/feed.json: not modified (last stored 2 post(s) at ")
    assert first.endswith("world/2022-03-13-parade-route-ff86e34ba5.md)")
    assert last == "1 source(s): 1 answered, 0 failed, 0 new post(s)"
    assert feedsvc("collect", "--config", str(config.path), "--category", "nope").returncode == 2


def test_collect_command_rejects_a_bad_source_config(tmp_path: Path) -> None:
    cfg = make_site(tmp_path / "site", config={"categories": {
        "kunmingribao": {"title": "x", "sources": [{"url": "ftp://x/feed", "every": "5 min"}]}}})
    run = feedsvc("collect", "--config", str(cfg))
    assert run.returncode == 2
    assert "categories.kunmingribao.sources.0" in run.stderr


def test_source_state_is_in_the_index_not_in_files(tmp_path: Path, up: Upstream) -> None:
    config = site_with(tmp_path, {"kunmingribao": [up.url + "/rss.xml"]})
    collect(config)
    assert not (config.state_dir / "sources").exists()
    data = store_for(config).source("kunmingribao", up.url + "/rss.xml")
    assert data is not None
    assert data["url"] == up.url + "/rss.xml" and data["etag"]
    assert data["last_modified"] == "Mon, 21 Mar 2022 00:00:00 GMT"
    assert len(data["seen"]) == 3 and data["last_error"] is None
    assert not [p for p in config.state_dir.rglob("*.tmp")]


def test_collect_command_shows_a_progress_bar_on_a_terminal(tmp_path: Path, up: Upstream) -> None:
    config = site_with(tmp_path, {"kunmingribao": [up.url + "/rss.xml"]})
    main, child = os.openpty()
    # A terminal of 80×24 (a fresh pty has no size, and tqdm draws nothing in 0 columns).
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    try:
        proc = subprocess.Popen([sys.executable, "-m", "feedsvc", "collect", "--config",
                                 str(config.path)], stdout=subprocess.PIPE, stderr=child,
                                text=True)
        os.close(child)
        screen = b""
        with contextlib.suppress(OSError):  # EIO once the child side is closed and drained
            while chunk := os.read(main, 4096):
                screen += chunk
        stdout, _ = proc.communicate(timeout=60)
    finally:
        os.close(main)
    assert proc.returncode == 0
    assert "0/1 [" in screen.decode(errors="replace")
    assert "INFO" not in screen.decode(errors="replace")   # the summary says it all
    assert stdout.splitlines()[-1] == "1 source(s): 1 answered, 0 failed, 3 new post(s)"


def test_an_item_without_title_is_titled_by_its_text(tmp_path: Path, up: Upstream) -> None:
    up.routes["/untitled.json"] = Route(json.dumps({
        "version": "https://jsonfeed.org/version/1.1", "title": "t",
        "items": [{"id": "u-1", "content_html": "<p>只有正文的快讯，没有标题。</p>",
                   "date_published": "2022-03-21T10:00:00+08:00"}]}).encode(),
        "application/feed+json")
    config = site_with(tmp_path, {"kunmingribao": [up.url + "/untitled.json"]})
    assert collect(config)["untitled.json"].new == 1
    post = stored(config)["u-1"]
    assert post.title == "只有正文的快讯，没有标题。"
    assert post.source_url is None
    assert len(post.slug) == 10 and post.slug.isalnum() and post.slug.isascii()  # a hash
    assert read_body(post.path).rstrip().endswith("</div>")   # no link to end with


def test_a_not_quite_well_formed_feed_is_read_and_reported(tmp_path: Path, up: Upstream) -> None:
    up.routes["/lenient.xml"] = Route.fixture("lenient.xml")
    config = site_with(tmp_path, {"kunmingribao": [up.url + "/lenient.xml"]})
    result = collect(config)["lenient.xml"]
    assert result.new == 1 and result.error is None
    assert result.warning and "not well-formed XML (" in result.warning
    assert "(warning: not well-formed XML" in result.line()
    assert load_state(config, "kunmingribao", up.url + "/lenient.xml").last_warning == \
        result.warning
    assert stored(config)["lenient-1"].title == "Spaces everywhere"


def test_collected_posts_make_feeds_every_reader_accepts(
        tmp_path: Path, up: Upstream, feedcheck: Path) -> None:  # noqa: F811
    config = site_with(tmp_path, {"kunmingribao": [up.url + "/rss.xml", up.url + "/atom.xml"],
                                  "world": [up.url + "/feed.json"]})
    collect(config)
    out = tmp_path / "out"
    feedsvc("build", "--config", str(config.path), "--out", str(out))
    files = [str(out / "feeds" / f"{slug}.{fmt}") for slug in ("kunmingribao", "world")
             for fmt in ("rss", "atom", "json")]
    run = subprocess.run([str(feedcheck), *files], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "6 file(s), 6 passed, 0 failed" in run.stdout
