"""Subscriber counts moved into the index (issues 12, 14): an older
feedsvc's `state_dir/subscribers.sqlite3` (tests/fixtures/subscribers/
older-version.sql) is imported once by a real `feedsvc serve`, merged with
what the index already has without counting anything twice, and kept
renamed `*.imported`; a file that cannot be read is left where it is and
named in the log. On the SQLite and the PostgreSQL index."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import FIXTURES, make_site, running, wait_for
from test_subscribers import RSS, TOKEN, get, stats_of

from feedsvc.config import load_config
from feedsvc.index.sources import IMPORTED, StateStore
from feedsvc.subscriber_store import DayCount, SubscriberStore

OLD = FIXTURES / "subscribers" / "older-version.sql"
ATOM, TAG = "/feeds/kunmingribao.atom", "/tags/昆明.rss"
EVER = 3650          # `feedsvc stats --days`: the fixture's days, whenever the test runs
FEEDLY = "Feedly/1.0 (+http://www.feedly.com/fetcher.html; {} subscribers; like FeedFetcher-Google)"
# Every day of the fixture, as the index must give it back.
EXPECTED = [
    DayCount("2026-11-20", RSS, {"Feedly": 120}, 4),
    DayCount("2026-11-20", TAG, {}, 2),
    DayCount("2026-11-21", ATOM, {"NewsBlur": 10}, 1),
    DayCount("2026-11-21", RSS, {"Feedly": 125, "Feedbin": 22}, 3),
]


@pytest.fixture
def site(tmp_path: Path) -> Path:
    return make_site(tmp_path / "site", fixture="site", config={
        "admin_token": TOKEN, "trusted_proxies": ["127.0.0.1"]})


def write_older(site: Path) -> tuple[Path, sqlite3.Connection]:
    """The fixture as an older feedsvc left it: a WAL database, its rows still
    in the `-wal` file beside it (a connection of that version still open)."""
    state = load_config(site).state_dir
    state.mkdir(parents=True, exist_ok=True)
    path = state / "subscribers.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.executescript(OLD.read_text(encoding="utf-8"))
    assert Path(f"{path}-wal").stat().st_size > 0
    return path, conn


@pytest.fixture
def older(site: Path) -> Iterator[tuple[Path, sqlite3.Connection]]:
    path, conn = write_older(site)
    yield path, conn
    conn.close()


def old_days(config: Path) -> list[DayCount]:
    return [c for c in SubscriberStore(load_config(config)).days("2026-01-01")
            if c.day < "2026-12-01"]


def test_an_older_file_is_imported_once_and_kept_renamed(
        site: Path, older: tuple[Path, sqlite3.Connection], index_backend: str) -> None:
    path, conn = older
    with running(site, workers=2) as server:
        wait_for(lambda: not path.exists(), 30)
        table = stats_of(site, EVER)
        assert {p: (r["day"], r["total"]) for p, r in table.items()} == {
            RSS: ("2026-11-21", "150"), ATOM: ("2026-11-21", "11"), TAG: ("2026-11-20", "2")}
        assert (table[RSS]["Feedly"], table[RSS]["Feedbin"], table[RSS]["direct readers"]) == \
            ("125", "22", "3")
        assert old_days(site) == EXPECTED
        # Counting goes on beside what was imported.
        assert get(server, RSS, FEEDLY.format(131)) == 200
        wait_for(lambda: stats_of(site).get(RSS, {}).get("Feedly") == "131", 30, 0.5)
        assert "imported subscribers.sqlite3" in server.output()
    # Kept, with its write-ahead log beside it: nothing the user had is gone.
    state = path.parent
    kept = state / ("subscribers.sqlite3" + IMPORTED)
    assert Path(f"{kept}-wal").exists() and not Path(f"{path}-wal").exists()
    conn.close()
    with sqlite3.connect(kept) as again:
        assert again.execute("SELECT SUM(subscribers) FROM aggregators").fetchone() == (277,)
        assert again.execute("SELECT COUNT(*) FROM readers").fetchone() == (4,)
    # Another start imports nothing again, and loses nothing.
    with running(site) as server:
        assert old_days(site) == EXPECTED
        assert "imported subscribers" not in server.output()
    assert StateStore(load_config(site)).import_files(state) == []
    assert sorted(p.name for p in state.glob("subscribers*")) == [
        kept.name, kept.name + "-shm", kept.name + "-wal"]


def test_an_import_merges_with_the_index_and_counts_nothing_twice(
        site: Path, index_backend: str) -> None:
    config = load_config(site)
    # Another machine of the cluster wrote counts of the same day already: a
    # later Feedly count, and one reader the old file also has.
    SubscriberStore(config).add({("2026-11-21", "Feedly", "", RSS): (128, 1763712100.0),
                                 ("2026-11-21", "Feedly", "", ATOM): (1, 1763712100.0)},
                                [("2026-11-21", RSS, "0a1b2c3d4e5f60718293a4b5"),
                                 ("2026-11-21", RSS, "ffffffffffffffffffffffff")])
    path, conn = write_older(site)
    conn.close()
    copy = path.with_name("copy.sqlite3")
    shutil.copy(path, copy)
    with running(site):
        wait_for(lambda: not path.exists(), 30)
        merged = old_days(site)
    rss = {c.day: c for c in merged if c.path == RSS}["2026-11-21"]
    atom = {c.day: c for c in merged if c.path == ATOM}["2026-11-21"]
    # The later count wins; the shared reader is one reader.
    assert (dict(rss.aggregators), rss.readers) == ({"Feedly": 128, "Feedbin": 22}, 4)
    assert (dict(atom.aggregators), atom.readers) == ({"NewsBlur": 10, "Feedly": 1}, 1)
    # The same file once more (two processes importing at once, a copy put
    # back): `feedsvc stats` imports it, and the counts do not change.
    shutil.copy(copy, path)
    assert stats_of(site, EVER)[RSS]["total"] == str(rss.total)
    assert not path.exists()
    assert old_days(site) == merged
    assert len(list(path.parent.glob("subscribers.sqlite3" + IMPORTED + "*"))) == 2


def test_an_unreadable_older_file_is_left_in_place_and_named(
        site: Path, index_backend: str) -> None:
    state = load_config(site).state_dir
    state.mkdir(parents=True, exist_ok=True)
    path = state / "subscribers.sqlite3"
    junk = b"not a database at all\n" * 300
    path.write_bytes(junk)
    with running(site) as server:
        assert get(server, RSS, FEEDLY.format(7)) == 200
        wait_for(lambda: stats_of(site).get(RSS, {}).get("Feedly") == "7", 30, 0.5)
        assert server.get(RSS).status_code == 200
        log = server.output()
    assert f"not importing the subscriber counts of {path}" in log
    assert "file is not a database" in log
    assert path.read_bytes() == junk
