"""Issue 15, findings 2 and 8: a full or read-only state_dir — real ones, a
small tmpfs of our own (tests/disk_support.py) — against `feedsvc collect` and
`feedsvc serve` with a real upstream on loopback."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import feedparser
import pytest
from disk_support import fill, leftovers, remount, small_tmpfs
from support import make_site, running, statuses, wait_for
from upstream_support import Route, Upstream, upstream

TOKEN = "admin-token-of-the-disk-tests"
TITLES = {"安宁打造招商引资强磁场", "Dianchi Lake clean-up & more", "春城花开"}


@pytest.fixture
def up() -> Iterator[Upstream]:
    with upstream() as server:
        # No validators: every pass reads the items again, as after a restart.
        rss = Route.fixture("rss.xml")
        rss.etag, rss.last_modified = False, None
        server.routes["/rss.xml"] = rss
        yield server


@pytest.fixture
def state(tmp_path: Path) -> Iterator[Path]:
    # Room for two SQLite databases in WAL mode (index and durable state) and
    # their -shm/-wal files once space returns; fill() takes all of it anyway.
    with small_tmpfs(tmp_path / "state", "1m") as folder:
        yield folder


def site(tmp_path: Path, up: Upstream, state: Path, every: str = "15m", **extra: object) -> Path:
    cats = {"kunmingribao": {"title": "昆明日报新闻",
                             "sources": [{"url": up.url + "/rss.xml", "every": every}]}}
    return make_site(tmp_path / "site", config={"categories": cats, "state_dir": str(state),
                                                **extra})


def collect(cfg: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "feedsvc", "collect", "--config", str(cfg)],
                          capture_output=True, text=True, timeout=120)


def posts(cfg: Path) -> list[Path]:
    return sorted((cfg.parent / "_posts").rglob("*.md"))


def test_collect_with_a_full_state_dir_fails_and_stores_nothing(tmp_path: Path, up: Upstream,
                                                               state: Path) -> None:
    cfg = site(tmp_path, up, state)
    filler = fill(state)
    full = collect(cfg)
    assert full.returncode == 1, full.stdout + full.stderr
    # The state is a database now: on a full disk it cannot even be opened,
    # so the source fails before anything is fetched.
    assert re.search(r"cannot (read|save) the source state: No space left on device",
                     full.stdout), full.stdout
    assert posts(cfg) == []                 # nothing stored that would not be remembered
    assert leftovers(state) == []            # and no partial .tmp eating the last space
    filler.unlink()
    ok = collect(cfg)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "3 new post(s)" in ok.stdout and len(posts(cfg)) == 3


def test_a_deleted_post_never_comes_back_whatever_the_disk(tmp_path: Path, up: Upstream,
                                                          state: Path) -> None:
    cfg = site(tmp_path, up, state)
    assert collect(cfg).returncode == 0
    deleted = posts(cfg)[0]
    deleted.unlink()                          # the admin deletes a collected post
    filler = fill(state)
    assert collect(cfg).returncode == 1       # state_dir full: an error, not a quiet 0
    assert deleted not in posts(cfg)
    filler.unlink()
    remount(state, read_only=True)
    ro = collect(cfg)
    assert ro.returncode == 1 and "Read-only file system" in ro.stdout
    remount(state, read_only=False)
    again = collect(cfg)
    assert again.returncode == 0 and "0 new post(s)" in again.stdout
    assert deleted not in posts(cfg) and len(posts(cfg)) == 2
    assert leftovers(state) == []


def feed_titles(server: object) -> set[str]:
    resp = server.get("/feeds/kunmingribao.atom")  # type: ignore[attr-defined]
    return {e.title for e in feedparser.parse(resp.content).entries}


def test_serve_with_a_full_state_dir_recovers_when_space_returns(tmp_path: Path, up: Upstream,
                                                                 state: Path) -> None:
    cfg = site(tmp_path, up, state, every="1s", websub={"hub": up.url + "/hub"},
               admin_token=TOKEN)
    filler = fill(state)
    with running(cfg, workers=2) as server:
        status = wait_for(lambda: (s := server.get("/status").json()) and
                          not s["state_writes"]["ok"] and s, timeout=30)
        assert all("/" not in f["file"] for f in status["state_writes"]["failing"])
        assert any(f["error"] == "No space left on device"
                   for f in status["state_writes"]["failing"]), status["state_writes"]
        time.sleep(3)
        polls_while_full = len(up.seen("/rss.xml"))
        assert feed_titles(server) == set()    # nothing stored while it cannot be remembered
        filler.unlink()
        # The leader (its lock taken while the disk was full) polls again …
        wait_for(lambda: feed_titles(server) == TITLES, timeout=30)
        # … pings the hub, and /status turns healthy.
        wait_for(lambda: up.seen("/hub", "POST"), timeout=30)
        wait_for(lambda: server.get("/status").json()["state_writes"]["ok"], timeout=30)
        log = server.output()
    # Backing off while full: not a fetch per second per worker.
    assert polls_while_full <= 8
    assert log.count("No space left on device") <= 12, log
    assert leftovers(state) == []


def test_status_tells_the_same_failure_whichever_worker_answers(
        tmp_path: Path, up: Upstream, state: Path) -> None:
    """The leader's failed writes are the machine's (health.py's shared record):
    a monitor polling /status of two workers gets the failure every time, then
    the recovery every time, never one answer per worker."""
    cfg = site(tmp_path, up, state, every="1s", admin_token=TOKEN)
    filler = fill(state)
    with running(cfg, workers=2) as server:
        workers = server.worker_pids()
        assert len(workers) == 2
        wait_for(lambda: not server.get("/status").json()["state_writes"]["ok"], timeout=30)
        full = statuses(server)
        assert all(not s["state_writes"]["ok"] for s in full), [s["worker"] for s in full]
        assert all(any(f["error"] == "No space left on device"
                       for f in s["state_writes"]["failing"]) for s in full)
        assert {s["worker"]["pid"] for s in full} == workers     # both workers answered
        filler.unlink()
        # The upstream state is tried again after a back-off of 30 s.
        wait_for(lambda: feed_titles(server) == TITLES, timeout=60)
        wait_for(lambda: all(s["state_writes"]["ok"] for s in statuses(server, 4)), timeout=30)
        healthy = statuses(server)
        assert all(s["state_writes"] == {"ok": True, "failing": []} for s in healthy), \
            [s["state_writes"] for s in healthy]
        assert {s["worker"]["pid"] for s in healthy} == workers
        log = server.output()
    assert "Traceback" not in log


def test_serve_with_a_read_only_state_dir_recovers_and_does_not_flood_the_log(
        tmp_path: Path, up: Upstream, state: Path) -> None:
    cfg = site(tmp_path, up, state, every="1s")
    remount(state, read_only=True)
    with running(cfg, workers=2) as server:
        time.sleep(5)
        assert feed_titles(server) == set()
        log = server.output()
        assert log.count("Read-only file system") <= 8, log   # was 4 a second
        remount(state, read_only=False)
        wait_for(lambda: feed_titles(server) == TITLES, timeout=30)
    assert (state / "leader.lock").exists()


def test_subscriber_counts_on_a_full_state_dir_lose_only_that_interval(
        tmp_path: Path, state: Path) -> None:
    """The counts live in state.sqlite3 (issue 14): a full state_dir costs the
    counts of the intervals it lasts, named in /status, never a 500 or a
    worker that stops counting."""
    from test_subscribers import RSS, get, stats_of

    feedly = "Feedly/1.0 (+http://www.feedly.com/fetcher.html; {} subscribers)"
    cfg = make_site(tmp_path / "site", fixture="site", config={
        "state_dir": str(state), "admin_token": TOKEN, "trusted_proxies": ["127.0.0.1"]})
    with running(cfg, workers=2) as server:
        assert get(server, RSS, feedly.format(50)) == 200
        wait_for(lambda: stats_of(cfg).get(RSS, {}).get("Feedly") == "50", 30, 0.5)
        filler = fill(state)
        assert get(server, RSS, feedly.format(60)) == 200
        assert get(server, RSS, "Reeder/5.0", xff="203.0.113.7") == 200

        def failing() -> list[dict[str, str]]:
            writes = server.get("/status").json()["state_writes"]
            return [f for f in writes["failing"] if f["file"] == "state.sqlite3"]

        assert wait_for(failing, 30, 0.5)[0]["error"] == "No space left on device"
        time.sleep(3)                     # another write of the same outage
        filler.unlink()
        assert get(server, RSS, feedly.format(70)) == 200
        wait_for(lambda: stats_of(cfg).get(RSS, {}).get("Feedly") == "70", 30, 0.5)
        assert stats_of(cfg)[RSS]["direct readers"] == "0"      # the full disk's reader, lost
        wait_for(lambda: not failing(), 30, 0.5)
        log = server.output()
    # Once per worker that counted during the outage, however many intervals it lasted.
    assert 1 <= log.count("subscriber counts not written (") <= 2, log
    assert "Traceback" not in log
